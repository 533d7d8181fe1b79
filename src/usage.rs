//! What a child process costs, as `/proc` tells it (via sysinfo): read by the metrics endpoint and
//! by the scorer, which compares testing's memory and CPU per request with running's.

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// One process's CPU time and resident memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// User and system CPU time since the process started, in seconds.
    pub cpu_seconds: f64,
    /// Resident memory, in bytes.
    pub resident_bytes: u64,
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
            })
        })
        .collect()
}
