//! Which CPU each proxy thread runs on (`CPU_AFFINITY`). Each thread keeps its connections to
//! itself, so one that stays on its CPU keeps their sockets and buffers in that CPU's cache and
//! is woken there; left to the scheduler it was moved between them under load. Pinned, the plain
//! path took 0.91× the CPU per request at 32 connections and 0.93× at 128, in paired rounds
//! (docs/benchmarks.md, December (10)). nginx offers the same as `worker_cpu_affinity`, off
//! unless set; here it is on, but only where it cannot crowd: one thread on each CPU of the
//! process's affinity mask, and no CPU quota below that (a container limited to 2 CPUs of 64
//! would otherwise put every such understudy on CPUs 0 and 1). Blocking threads a pinned thread's
//! runtime starts (a name lookup of `UPSTREAM_HOST`) share its CPU; a CPU taken offline, or a
//! cpuset changed later, widens the mask again.

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// Why a thread could not be pinned; it then runs where the scheduler puts it.
#[derive(Debug, thiserror::Error)]
pub enum AffinityError {
    /// The CPUs this process may run on could not be read.
    #[error("cannot read the CPUs this process may run on: {0}; proxy threads are not pinned (set CPU_AFFINITY=off to skip this)")]
    Read(#[source] nix::Error),
    /// The OS refused to pin the thread (a container's policy, say).
    #[error("cannot pin proxy thread {thread} to CPU {cpu}: {source}; it runs unpinned (set CPU_AFFINITY=off to skip this)")]
    Pin {
        /// The thread's index.
        thread: usize,
        /// The CPU it was to run on.
        cpu: usize,
        /// The OS error.
        source: nix::Error,
    },
}

/// The CPU for each of `threads` proxy threads: the CPUs this process may run on (`allowed`, in
/// order), one each, when the threads are exactly one per such CPU and no quota lets the process
/// use fewer (`usable`, as `available_parallelism` counts them); otherwise `None`. Fewer threads
/// would all crowd onto the lowest CPUs; more would share CPUs they cannot leave.
pub fn placement(allowed: &[usize], usable: usize, threads: usize) -> Option<Vec<usize>> {
    (threads > 0 && allowed.len() == threads && usable == threads).then(|| allowed.to_vec())
}

/// The CPUs the calling thread may run on now (a cpuset or `taskset` narrows them), in order.
pub fn allowed_cpus() -> Result<Vec<usize>, AffinityError> {
    let set = sched_getaffinity(Pid::from_raw(0)).map_err(AffinityError::Read)?;
    Ok((0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect())
}

/// Keep the calling thread (proxy thread `thread`) on `cpu` from now on.
pub fn pin_current(thread: usize, cpu: usize) -> Result<(), AffinityError> {
    let mut set = CpuSet::new();
    set.set(cpu)
        .and_then(|()| sched_setaffinity(Pid::from_raw(0), &set))
        .map_err(|source| AffinityError::Pin {
            thread,
            cpu,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_thread_gets_its_own_allowed_cpu_or_none_is_pinned() {
        assert_eq!(placement(&[0, 1], 2, 2), Some(vec![0, 1]));
        assert_eq!(placement(&[2, 5, 7], 3, 3), Some(vec![2, 5, 7]), "a cpuset");
        assert_eq!(placement(&[3], 1, 1), Some(vec![3]));
        assert_eq!(placement(&[0, 1], 2, 3), None, "more threads than CPUs");
        assert_eq!(
            placement(&[0, 1, 2, 3], 4, 2),
            None,
            "fewer: all on CPUs 0 and 1"
        );
        assert_eq!(placement(&[0, 1, 2, 3], 2, 4), None, "a quota of 2 CPUs");
        assert_eq!(
            placement(&[0, 1, 2, 3], 2, 2),
            None,
            "a quota, threads as it allows"
        );
        assert_eq!(placement(&[], 0, 1), None);
        assert_eq!(placement(&[0, 1], 2, 0), None);
    }

    #[test]
    fn a_thread_pinned_runs_only_on_its_cpu() {
        let allowed = allowed_cpus().unwrap();
        assert!(!allowed.is_empty());
        let last = *allowed.last().unwrap();
        // In a thread of its own, so the test's thread keeps every CPU.
        let seen = std::thread::spawn(move || {
            pin_current(0, last).unwrap();
            allowed_cpus().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(seen, vec![last]);
        assert_eq!(
            allowed_cpus().unwrap(),
            allowed,
            "only that thread was pinned"
        );
    }
}
