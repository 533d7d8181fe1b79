//! The per-instance watchdog: a tiny process (understudy's own program, hidden subcommand
//! `watchdog`) that SIGKILLs an instance's whole process group when understudy dies, even by
//! SIGKILL.
//!
//! Why it exists: `PR_SET_PDEATHSIG` on a child covers that child only. A build started through a
//! wrapper script that does not `exec` (`#!/bin/sh` + `java -jar …`) would leave the real server,
//! a grandchild, running and answering on its port after a hard kill of understudy. No code of a
//! dead process runs, so the group must be killed from another process: the watchdog, whose own
//! parent-death signal (SIGTERM) wakes it when understudy is gone.
//!
//! What it does not cover: a process that leaves the group (`setsid()`, `setpgid()`) escapes, and
//! so does anything once the group was recycled; no cgroup is used.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, SigSet, SigmaskHow, Signal};
use nix::unistd::{getpgid, getpgrp, getppid, Pid};

/// The path that names the running program itself (Linux). Understudy's `main` hands it to the
/// library as the watchdog program: the watchdog is then the very same build, even if the file
/// was replaced or deleted since understudy started.
pub const SELF_EXE: &str = "/proc/self/exe";

/// The subcommand that runs [`main`]; must match the hidden variant in `src/main.rs`.
const SUBCOMMAND: &str = "watchdog";

/// How often the watchdog checks, without a signal, whether its group is gone (then it exits) or
/// understudy is (then it kills the group): a backstop to the parent-death signal.
const POLL: Duration = Duration::from_secs(1);

/// The signals that wake the watchdog. SIGTERM is its parent-death signal; SIGINT and SIGHUP are
/// blocked too so that no stray one kills it by default action and leaves the group unguarded.
/// Whatever the signal, the group is killed only if understudy is really gone.
const WAKE: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];

fn wake_set() -> SigSet {
    let mut set = SigSet::empty();
    for s in WAKE {
        set.add(s);
    }
    set
}

/// The watchdog's command line, parsed by clap in `src/main.rs` (hidden subcommand `watchdog`);
/// built by [`Watchdog::spawn`], so both ends live here.
#[derive(Debug, clap::Args)]
pub struct WatchdogArgs {
    /// The process group to kill when understudy dies (the instance's leader pid).
    #[arg(long, value_parser = clap::value_parser!(i32).range(2..))]
    pub pgid: i32,
    /// Understudy's pid: once the watchdog's parent is another process, understudy is gone.
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    pub parent: i32,
    /// The instance folder it guards; only so that `ps` shows which instance this is.
    #[arg(long)]
    pub instance: Option<PathBuf>,
}

/// Why the watchdog process cannot do its job.
#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    /// The group is understudy's own, or the watchdog's: killing it would kill the wrong processes.
    #[error("refusing to guard process group {pgid}: it is understudy's or the watchdog's own")]
    OwnGroup {
        /// The group asked for.
        pgid: i32,
    },
    /// The wake-up signals could not be blocked, so they could not be waited for.
    #[error("cannot block SIGTERM, SIGINT and SIGHUP: {0}")]
    Mask(Errno),
    /// Waiting for a signal failed.
    #[error("cannot wait for a signal: {0}")]
    Wait(Errno),
    /// The thread that polls the group and the parent could not be started.
    #[error("cannot start the polling thread: {0}")]
    Thread(io::Error),
}

/// A running watchdog, owned by the task that owns its instance. Dismiss it with
/// [`Watchdog::dismiss`] once the instance's group is gone; a handle that is merely dropped
/// leaves the watchdog armed (it exits by itself once the group is gone).
#[derive(Debug)]
pub struct Watchdog {
    child: tokio::process::Child,
    pid: u32,
}

impl Watchdog {
    /// Start `program` (understudy's own executable) as the watchdog of process group `pgid`.
    /// Must run on the spawner thread of `instance`, like the child it guards: the parent-
    /// death signal fires when the *thread* that forked the watchdog ends.
    pub fn spawn(program: &Path, pgid: u32, instance: &Path) -> io::Result<Watchdog> {
        let parent = nix::unistd::getpid();
        let mut cmd = tokio::process::Command::new(program);
        cmd.arg0("understudy")
            .arg(SUBCOMMAND)
            .arg("--pgid")
            .arg(pgid.to_string())
            .arg("--parent")
            .arg(parent.to_string())
            .arg("--instance")
            .arg(instance)
            // Pins no folder of the base dir.
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group: a Ctrl-C to understudy's terminal group must not reach it.
            .process_group(0)
            // Dropped without dismissal it stays armed; see `Watchdog`.
            .kill_on_drop(false);
        let wake = wake_set();
        // SAFETY: `pre_exec` runs in the forked child before exec, where only async-signal-safe
        // work is allowed. The closure makes two raw syscalls through nix (sigprocmask on a
        // `SigSet` built before the fork and copied in, and prctl) and may build an `io::Error`
        // from an errno code, which does not allocate; it takes no locks and touches no state
        // shared with other threads of the parent.
        unsafe {
            cmd.pre_exec(move || {
                // Blocked, a death signal that arrives before the watchdog waits for it stays
                // pending instead of killing it by default action; the mask survives exec.
                nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&wake), None)?;
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
                // No `getppid()` check here: if understudy died before the prctl, the watchdog
                // must still run; it sees a parent other than `--parent` and kills the group.
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        let pid = child
            .id()
            .expect("a just-spawned, unreaped child has a pid");
        Ok(Watchdog { child, pid })
    }

    /// Its pid, for `instance.json`.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// SIGKILL the watchdog (it cannot catch that, so it never touches the group) and reap it.
    /// Call it once the instance's group is gone, so a watchdog never outlives its instance and
    /// never kills a group whose id was recycled.
    pub async fn dismiss(mut self) {
        if let Err(e) = self.child.start_kill() {
            tracing::warn!("cannot kill watchdog {}: {e}", self.pid);
        }
        if let Err(e) = self.child.wait().await {
            tracing::warn!("cannot reap watchdog {}: {e}", self.pid);
        }
    }
}

/// The watchdog process's body (`understudy watchdog`): wait for a wake-up signal or the next
/// poll; once understudy is gone (the parent is no longer `--parent`) SIGKILL the group and exit
/// 0; once the group is gone, exit 0. Never returns `Ok` otherwise.
pub fn main(args: WatchdogArgs) -> Result<(), WatchdogError> {
    let (pgid, parent) = (Pid::from_raw(args.pgid), Pid::from_raw(args.parent));
    if pgid == getpgrp() || getpgid(Some(parent)) == Ok(pgid) {
        return Err(WatchdogError::OwnGroup { pgid: args.pgid });
    }
    // Started as `/proc/self/exe`, it would show as `exe` in `ps -e` and `top`.
    let _ = nix::sys::prctl::set_name(c"understudy-wdog");
    let wake = wake_set();
    // Blocked since the fork already; again in case it was started some other way. Threads
    // started below inherit the mask, so no thread takes a wake-up signal by default action.
    wake.thread_block().map_err(WatchdogError::Mask)?;
    std::thread::Builder::new()
        .name("poll".into())
        .spawn(move || loop {
            check(pgid, parent);
            std::thread::sleep(POLL);
        })
        .map_err(WatchdogError::Thread)?;
    loop {
        wake.wait().map_err(WatchdogError::Wait)?;
        check(pgid, parent);
    }
}

/// Kill the group and exit if understudy is gone; exit if the group is gone; else return.
fn check(pgid: Pid, parent: Pid) {
    if getppid() != parent {
        // Reparented: understudy is gone (a death signal from a mere thread of understudy that
        // ended leaves the parent as it was, and is ignored).
        let _ = killpg(pgid, Signal::SIGKILL);
        std::process::exit(0);
    }
    // EPERM means a member exists that may not be signalled; only ESRCH means none is left.
    if killpg(pgid, None) == Err(Errno::ESRCH) {
        std::process::exit(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_refuses_to_guard_its_own_group_or_its_parents() {
        let own = WatchdogArgs {
            pgid: getpgrp().as_raw(),
            parent: getppid().as_raw(),
            instance: None,
        };
        assert!(matches!(main(own), Err(WatchdogError::OwnGroup { .. })));
        let parents = WatchdogArgs {
            pgid: getpgid(Some(getppid())).unwrap().as_raw(),
            parent: getppid().as_raw(),
            instance: None,
        };
        assert!(matches!(main(parents), Err(WatchdogError::OwnGroup { .. })));
    }
}
