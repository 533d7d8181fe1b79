//! Which core each proxy thread runs on (`CPU_AFFINITY`). Each thread keeps its connections to
//! itself, so one that stays on its core keeps their sockets and buffers in that core's cache and
//! is woken there; left to the scheduler it was moved between the cores under load. Pinned, the
//! plain path took 0.91× the CPU per request at 32 connections and 0.93× at 128, in paired
//! rounds (docs/benchmarks.md, December (10)), as nginx's `worker_cpu_affinity` offers.

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

/// The CPU for each of `threads` proxy threads, from the CPUs this process may run on (in
/// order); `None` when there are fewer such CPUs than threads: two threads sharing a core they
/// cannot leave would be worse than none pinned.
pub fn placement(allowed: &[usize], threads: usize) -> Option<Vec<usize>> {
    (threads > 0 && allowed.len() >= threads).then(|| allowed[..threads].to_vec())
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
        assert_eq!(placement(&[0, 1], 2), Some(vec![0, 1]));
        assert_eq!(placement(&[2, 5, 7], 2), Some(vec![2, 5]));
        assert_eq!(placement(&[3], 1), Some(vec![3]));
        assert_eq!(placement(&[0, 1], 3), None, "more threads than CPUs");
        assert_eq!(placement(&[], 1), None);
        assert_eq!(placement(&[0, 1], 0), None);
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
