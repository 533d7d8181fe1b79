//! What a child instance costs, as `/proc` tells it (via sysinfo): read by the metrics endpoint and
//! by the scorer, which compares testing's memory and CPU per request with the secondary's. An
//! instance is its whole process group: a start script that does not `exec` is a shell waiting on
//! the server, and the server is what costs.

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// One process's (or process group's) CPU time and resident memory.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Usage {
    /// User and system CPU time since the process started, in seconds.
    pub cpu_seconds: f64,
    /// Resident memory, in bytes.
    pub resident_bytes: u64,
    /// Processes counted (1 for a single process).
    pub processes: u32,
}

/// The usage of each pid (the instance's leader process: for a start script that does not
/// `exec`, the shell), in order; `None` for a process gone meanwhile.
pub fn of(pids: &[u32]) -> Vec<Option<Usage>> {
    if pids.is_empty() {
        return Vec::new();
    }
    let Ok(mut sys) = System::new() else {
        return vec![None; pids.len()];
    };
    let pids: Vec<Pid> = pids.iter().map(|p| Pid::from_u32(*p)).collect();
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&pids),
        true,
        ProcessRefreshKind::nothing()
            .with_cpu()
            .with_memory()
            .without_tasks(),
    );
    pids.iter()
        .map(|pid| {
            let p = sys.process(*pid)?;
            Some(Usage {
                cpu_seconds: p.accumulated_cpu_time() as f64 / 1000.0,
                resident_bytes: p.memory(),
                processes: 1,
            })
        })
        .collect()
}

/// The summed usage of each process group (an instance's leader pid is its group's id, since every
/// instance starts in a group of its own), in order; `None` for a group with no process left.
pub fn of_groups(pgids: &[u32]) -> Vec<Option<Usage>> {
    if pgids.is_empty() {
        return Vec::new();
    }
    let Ok(mut sys) = System::new() else {
        return vec![None; pgids.len()];
    };
    sys.refresh_processes_specifics(
        ProcessesToUpdate::All,
        true,
        ProcessRefreshKind::nothing()
            .with_cpu()
            .with_memory()
            .without_tasks(),
    );
    let mut out: Vec<Option<Usage>> = vec![None; pgids.len()];
    for (pid, p) in sys.processes() {
        let raw = nix::unistd::Pid::from_raw(pid.as_u32() as i32);
        let Ok(group) = nix::unistd::getpgid(Some(raw)) else {
            continue; // gone meanwhile
        };
        let Some(i) = pgids.iter().position(|g| *g as i32 == group.as_raw()) else {
            continue;
        };
        let u = out[i].get_or_insert_with(Usage::default);
        u.cpu_seconds += p.accumulated_cpu_time() as f64 / 1000.0;
        u.resident_bytes += p.memory();
        u.processes += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_counts_the_shell_and_the_servers_it_waits_on() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let group = loop {
            let g = of_groups(&[pid, u32::MAX - 1])[0];
            if g.is_some_and(|g| g.processes == 3) {
                break g.unwrap();
            }
            assert!(std::time::Instant::now() < deadline, "{g:?}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let leader = of(&[pid])[0].unwrap();
        assert!(
            group.resident_bytes > leader.resident_bytes,
            "{group:?} {leader:?}"
        );
        assert_eq!(of_groups(&[u32::MAX - 1]), vec![None]);
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
    }
}
