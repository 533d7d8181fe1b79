//! The secondary: a second instance of running's version, run exactly while a build is tested
//! (`NOISE_CANCEL`), to measure noise; never a reason to reject or restart anything else.

use super::{Action, Decision};
use crate::events::Event;
use crate::layout::Role;
use crate::score::ScorerControl;
use crate::supervisor::state::{AfterStop, Slot};

/// Failures of the secondary while one build is tested after which it is given up (testing is
/// then judged with noise unknown): an instance killed once (the OOM killer, an operator's
/// `kill`) is started again, so the noise it measures, and the verdict, are not lost to it.
pub(super) const MAX_SECONDARY_FAILURES: u32 = 3;

impl Decision<'_> {
    /// The noise instance failed: it is started again, up to [`MAX_SECONDARY_FAILURES`] times
    /// for one build under test (meanwhile differences wait for the noise it measures), then
    /// testing is judged without it ("noise unknown"); never a reason to reject testing or to
    /// touch running.
    pub(super) fn secondary_failed(&mut self, why: String) {
        let Some(slot) = self.s.secondary.take() else {
            return;
        };
        let testing = self.s.testing.as_ref().map(|t| t.id);
        let failures = match self.s.secondary_failures {
            Some((id, n)) if Some(id) == testing => n + 1,
            _ => 1,
        };
        self.s.secondary_failures = testing.map(|id| (id, failures));
        if failures >= MAX_SECONDARY_FAILURES {
            let reason = format!("{why}; it failed {failures} times while this build was tested");
            return self.give_up_secondary(slot, reason);
        }
        self.emit(Event::SecondaryRestarted {
            version: slot.version().clone(),
            failures,
            reason: why,
        });
        // Started again by `fit_secondary`, at the end of this decision.
        self.drop_secondary(slot);
    }

    /// No secondary for the build under test: it is judged with noise unknown.
    pub(super) fn give_up_secondary(&mut self, slot: Slot, reason: String) {
        self.emit(Event::SecondaryGivenUp {
            version: slot.version().clone(),
            reason,
        });
        self.s.secondary_off = self.s.testing.as_ref().map(|t| t.id);
        if self.s.testing.as_ref().is_some_and(Slot::is_ready) {
            self.out.push(Action::Score(ScorerControl::NoNoise));
        }
        self.drop_secondary(slot);
    }

    pub(super) fn drop_secondary(&mut self, slot: Slot) {
        let was_ready = slot.is_ready();
        let kept_for_rollback = self
            .s
            .guard
            .as_ref()
            .is_some_and(|g| g.from == *slot.version());
        let after = if kept_for_rollback {
            AfterStop::Keep
        } else {
            AfterStop::ArchiveIfUnused
        };
        self.retire(slot, false, after);
        if was_ready {
            self.out.push(Action::Unpoint(Role::Secondary));
            self.publish_routes();
            if self.s.testing.as_ref().is_some_and(Slot::is_ready) {
                self.out.push(Action::Score(ScorerControl::Secondary(None)));
            }
        }
    }

    /// Run a secondary of running's version exactly while a build is tested against a ready
    /// running and no promotion is under way; replace it when running's version changes.
    pub(super) fn fit_secondary(&mut self) {
        let running = self
            .s
            .running
            .as_ref()
            .filter(|r| r.is_ready())
            .map(|r| r.installed.clone());
        let testing = self.s.testing.as_ref().map(|t| t.id);
        let wanted = running.filter(|_| {
            self.s.noise_cancel
                && testing.is_some()
                && testing != self.s.secondary_off
                && self.s.next.is_none()
        });
        let fits = match (&self.s.secondary, &wanted) {
            (Some(sec), Some(w)) => *sec.version() == w.version,
            (None, None) => true,
            _ => false,
        };
        if fits {
            return;
        }
        if let Some(old) = self.s.secondary.take() {
            self.drop_secondary(old);
        }
        if let Some(installed) = wanted {
            let slot = self.new_slot(Role::Secondary, installed, true);
            self.s.secondary = Some(slot);
        }
    }
}
