//! The process groups of every child not yet reaped, the last resort of a shutdown after a task
//! died.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::instance::InstanceId;

/// How often a panic sweep checks whether killed process groups are gone.
const SWEEP_POLL: Duration = Duration::from_millis(20);

/// The process groups of every child not yet reaped, kept outside the supervisor's task so that
/// if that task dies (a panic), [`LiveGroups::kill_all`] can still stop every child.
#[derive(Clone, Default)]
pub struct LiveGroups(Arc<Mutex<BTreeMap<InstanceId, u32>>>);

impl LiveGroups {
    pub(super) fn insert(&self, id: InstanceId, pgid: u32) {
        self.lock().insert(id, pgid);
    }

    pub(super) fn remove(&self, id: InstanceId) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<InstanceId, u32>> {
        // The map stays consistent even if a holder panicked: each operation is one insert/remove.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether any child is still known to run.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Last resort after a task died: SIGTERM every group, wait up to `grace`, SIGKILL the rest.
    /// Blocking; the orderly path stops children through their instances instead.
    pub fn kill_all(&self, grace: Duration) {
        use nix::sys::signal::{killpg, Signal};
        use nix::unistd::Pid;
        let groups: Vec<Pid> = self
            .lock()
            .values()
            .map(|p| Pid::from_raw(*p as i32))
            .collect();
        for g in &groups {
            let _ = killpg(*g, Signal::SIGTERM);
        }
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline
            && groups.iter().any(|g| killpg(*g, None).is_ok())
        {
            std::thread::sleep(SWEEP_POLL);
        }
        for g in &groups {
            let _ = killpg(*g, Signal::SIGKILL);
        }
        self.lock().clear();
    }
}
