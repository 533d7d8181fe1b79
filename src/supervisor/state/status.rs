//! What status shows of the [`State`]: built after every decision, with the monotonic clock
//! turned into wall-clock time.

use std::time::SystemTime;

use tokio::time::Instant;

use super::{Slot, State};
use crate::events::VerdictKind;
use crate::score::Verdict;
use crate::supervisor::control::{
    self, GuardRollbackStatus, RestartHeldStatus, RollbackStep, Status,
};

impl State {
    /// What status shows, with `wall` turning the monotonic clock into wall-clock time.
    pub fn status(&self, wall: impl Fn(Instant) -> SystemTime) -> Status {
        let slot = |s: &Option<Slot>| s.as_ref().map(|s| s.status(&wall));
        // Running down, to be started again (not held for the guard's rollback).
        let restart = (self.restart.as_ref()).filter(|r| !r.held && self.running.is_none());
        Status {
            running: slot(&self.running),
            testing: slot(&self.testing),
            promoting: slot(&self.next),
            secondary: slot(&self.secondary),
            restarting: restart.map(|r| r.installed.version.clone()),
            restart_due: restart.map(|r| control::RestartDue {
                failures: self.failures,
                at: control::rfc3339(wall(r.at)),
            }),
            pending: self.pending.as_ref().map(|p| p.version.clone()),
            installing: self.installing.clone(),
            paused: self.paused,
            disk_full: self.disk_full.clone(),
            verdict: self.verdict_status(),
            schedules: self.schedules.clone(),
            transaction: self.txn.clone(),
            guarded: self.guard.as_ref().map(|g| {
                format!(
                    "{} is watched until {} against {:.1}% 5xx before its switch; {} is kept to roll back to",
                    g.version,
                    control::rfc3339(wall(g.until)),
                    g.before.0 as f64 * 100.0 / g.before.1.max(1) as f64,
                    g.from
                )
            }),
            hook_failure: self
                .hook_block
                .as_ref()
                .map(|(v, why)| format!("{v}: {why}")),
            canary: self.canary_status(),
            canary_steps: self.canary_steps.len(),
            guard_rollback: self.guard_rollback_status(),
            guard_failed: self.guard_failed.clone(),
            filing_failed: (self.filing_failed.iter())
                .map(|(v, why)| format!("{v}: {why}"))
                .collect(),
            last_rejected: self.last_rejected.as_ref().map(|(version, at, reasons)| {
                control::LastRejected {
                    version: version.clone(),
                    at: control::rfc3339(wall(*at)),
                    reasons: reasons.clone(),
                }
            }),
            restart_held: self.restart_held_status(),
        }
    }

    /// The latest verdict, while the instance it is about is still testing.
    fn verdict_status(&self) -> Option<control::VerdictStatus> {
        let (id, ev) = self.verdict.as_ref()?;
        let testing = self.testing.as_ref().filter(|t| t.id == *id)?;
        let (verdict, reasons) = match &ev.verdict {
            Verdict::Wait(why) => (VerdictKind::Wait, vec![why.clone()]),
            Verdict::Promote => (VerdictKind::Promote, Vec::new()),
            Verdict::Reject(r) => (VerdictKind::Reject, r.clone()),
        };
        Some(control::VerdictStatus {
            version: testing.version().clone(),
            verdict,
            score: ev.score,
            pairs: ev.pairs,
            reasons,
            parts: ev.parts.clone(),
            diffs: ev.diffs.clone(),
            evidence: ev.evidence.clone(),
        })
    }

    fn canary_status(&self) -> Option<control::CanaryStatus> {
        let c = self.canary.as_ref()?;
        Some(control::CanaryStatus {
            // Withdrawn, its share is running's again.
            weight: match c.withdrawn {
                true => 0.0,
                false => f64::from(self.canary_steps.get(c.step).copied().unwrap_or(0)) / 100.0,
            },
            step: c.step + 1,
            steps: self.canary_steps.len(),
            since: control::rfc3339(c.since_wall),
            window_secs: self.canary_window.as_secs_f64(),
            answers: c.answers.0,
            running_answers: c.answers.1,
            server_errors: c.server_errors.0,
            running_server_errors: c.server_errors.1,
            users: c.users,
            held: c.held,
            waiting: c.waiting.clone(),
            passed: c.passed,
        })
    }

    /// Running started again (after a crash, or at understudy's start), while users' requests
    /// wait for it.
    fn restart_held_status(&self) -> Option<RestartHeldStatus> {
        let running = self.running.as_ref().filter(|_| self.restart_held())?;
        Some(RestartHeldStatus {
            version: running.version().clone(),
            held_up_to_secs: self
                .hold_up_to
                .min(crate::proxy::RESTART_HOLD)
                .as_secs_f64(),
        })
    }

    /// The guard's rollback from its trip to its switch: what comes back, from what and why,
    /// and whether users' requests wait for it (nothing serves: the version it rolls back from
    /// crashed, and is not restarted meanwhile).
    fn guard_rollback_status(&self) -> Option<GuardRollbackStatus> {
        let g = self.tripped_guard.as_ref()?;
        let restoring = self.restoring.as_ref().is_some_and(|(v, _)| *v == g.from);
        let step = if restoring || self.next.is_none() {
            RollbackStep::Restoring
        } else {
            RollbackStep::Starting
        };
        let held = self
            .restart
            .as_ref()
            .filter(|r| r.held && r.installed.version == g.version);
        Some(GuardRollbackStatus {
            version: g.from.clone(),
            from: g.version.clone(),
            reason: g.tripped.clone().unwrap_or_default(),
            step,
            down_since: held.and_then(|r| r.crashed).map(control::rfc3339),
            requests_held: self.holding() && held.is_some(),
            held_up_to_secs: self.hold_up_to.as_secs_f64(),
        })
    }
}
