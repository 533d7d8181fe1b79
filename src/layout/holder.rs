//! Who holds the base dir's lock when it cannot be taken: the understudy whose pid the lock file
//! names, if it lives, or whatever process has the lock file open. An understudy killed with
//! `kill -9` still holds its lock for a moment after the signal (the kernel closes its files only
//! once its memory is torn down), so a start right after it waits for the lock instead of
//! refusing at once.

use std::path::Path;
use std::time::Duration;

/// How long a start waits for a lock whose named holder is dead or dying.
pub const DEAD_HOLDER_WAIT: Duration = Duration::from_secs(5);

/// How long a start waits for a lock whose named holder looks alive: it may have been sent
/// SIGKILL a moment ago and not show it yet.
pub const LIVE_HOLDER_WAIT: Duration = Duration::from_millis(500);

/// How often the lock is tried again meanwhile.
pub const POLL: Duration = Duration::from_millis(50);

/// Whether process `pid` (as the lock file says it) runs and is not on its way out: it exists, is
/// no zombie, and has no SIGKILL pending.
pub fn alive(pid: &str) -> bool {
    let Ok(pid) = pid.trim().parse::<u32>() else {
        return false;
    };
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    !dying(&status)
}

/// Whether a `/proc/<pid>/status` text is a process's that ended or is ending (pure).
fn dying(status: &str) -> bool {
    const SIGKILL_BIT: u64 = 1 << (libc::SIGKILL - 1);
    status.lines().any(|line| {
        let Some((key, value)) = line.split_once(':') else {
            return false;
        };
        let value = value.trim();
        match key {
            "State" => value.starts_with('Z') || value.starts_with('X'),
            "SigPnd" | "ShdPnd" => {
                u64::from_str_radix(value, 16).is_ok_and(|mask| mask & SIGKILL_BIT != 0)
            }
            _ => false,
        }
    })
}

/// The processes but `me` that have `lock` open, as `pid N (command)`, comma-separated; those
/// this user may not look into are not seen. At most a few are named.
pub fn openers(lock: &Path, me: u32) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(target) = std::fs::metadata(lock) else {
        return String::new();
    };
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return String::new();
    };
    let mut found = Vec::new();
    for pid in procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    {
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::metadata(fd.path())
                .is_ok_and(|m| m.dev() == target.dev() && m.ino() == target.ino())
        });
        if holds {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let comm = comm.replace('\0', " ");
            found.push(format!("pid {pid} ({})", comm.trim()));
            if found.len() == 4 {
                break;
            }
        }
    }
    found.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_or_a_process_sent_sigkill_is_dying_and_others_are_not() {
        assert!(dying("Name:\tx\nState:\tZ (zombie)\n"));
        assert!(dying(
            "State:\tR (running)\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000100\n"
        ));
        assert!(!dying(
            "State:\tS (sleeping)\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000004000\n"
        ));
        assert!(alive(&std::process::id().to_string()));
        assert!(!alive("") && !alive("not a pid"));
    }

    #[test]
    fn the_openers_of_a_file_include_this_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let _open = std::fs::File::create(&path).unwrap();
        let me = format!("pid {} (", std::process::id());
        assert!(openers(&path, 0).contains(&me), "{}", openers(&path, 0));
        assert!(!openers(&path, std::process::id()).contains(&me));
    }
}
