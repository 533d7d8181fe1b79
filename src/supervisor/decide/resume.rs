//! What is resolved at start of what ran before a stop: the parts the versions found play, the
//! transaction under way undone or completed, the guard's watch resumed, and a rollback the
//! guard had decided finished.

use super::install::refusal;
use super::{Action, Decision, GUARD_REJECTION};
use crate::artifact::Installed;
use crate::events::Event;
use crate::layout::Role;
use crate::supervisor::state::{
    Guard, HistoryShare, JournaledGuard, Restart, Resumed, Slot, Txn, TxnKind, TxnStep,
};
use semver::Version;

/// Why the guard rolled back, when the journal says it had decided a rollback that had not
/// switched yet: marked on the guard, or (a state file written before the mark) named by the
/// rollback's own entry. An operator's rollback carries no reasons: it is undone (the operator
/// was there to see it, and may have stopped understudy to call it off).
fn guards_rollback(r: &Resumed, guard: Option<&JournaledGuard>) -> Option<String> {
    let g = guard?;
    let serving = r.running.as_ref().is_none_or(|i| i.version == g.version);
    if r.taking_over || !serving {
        return None;
    }
    let txn = r.txn.as_ref();
    if txn.is_some_and(|t| t.step >= TxnStep::Switched) {
        return None; // switched: completed as any other, rejecting what it left
    }
    if let Some(why) = &g.tripped {
        return Some(why.clone());
    }
    let t = txn.filter(|t| t.kind == TxnKind::Rollback && t.from.as_ref() == Some(&g.version))?;
    let reason = t.reject_from.as_ref()?.first()?;
    Some(
        reason
            .strip_prefix(GUARD_REJECTION)
            .unwrap_or(reason)
            .to_string(),
    )
}

impl Decision<'_> {
    pub(super) fn resume(&mut self, mut r: Resumed) {
        self.s.taking_over = r.taking_over;
        serve_last_switched(&mut r);
        // What users were switched to: running, unless the history has no switch at all (a
        // first build stopped before it got ready), which is then announced and recorded when
        // it does get ready.
        self.s.serving = r
            .running
            .as_ref()
            .map(|i| i.version.clone())
            .filter(|_| r.history_last.is_some());
        self.s.previous = r.previous.take();
        self.s.rolled_back_from = r.rolled_back_from.take();
        self.s.schedule_grace = r.schedule_grace;
        self.s.hooks = r.hooks;
        self.s.guard_window = r.rollback_window;
        self.s.guard_max_delta = r.max_5xx_delta;
        self.s.guard_confidence = r.confidence;
        if !r.upstream_timeout.is_zero() {
            self.s.hold_up_to = r.upstream_timeout;
        }
        self.s.noise_cancel = r.noise_cancel;
        self.s.canary_steps = r.canary_steps.clone();
        self.s.canary_window = r.canary_window;
        self.s.canary_resume = r.canary.clone();
        self.s.handed = r.handed.clone();
        self.s.guard_failed = r.guard_failed.take();
        self.s.paused = r.paused;
        self.s.hook_block = r.hook_block.take();
        self.s.last_rejected = r.last_rejected.take().map(|(v, at, reasons)| {
            let ago = self.wall.duration_since(at).unwrap_or_default();
            (v, self.now.checked_sub(ago).unwrap_or(self.now), reasons)
        });
        let history_share = std::mem::take(&mut r.history_share);
        if let HistoryShare::Share(version, weight) = &history_share {
            // In force until a switch the history missed, recorded on resuming, ends it.
            self.s.shared = Some((version.clone(), *weight));
        }
        let switched = r.txn.as_ref().filter(|t| t.step >= TxnStep::Switched);
        let switched = switched.map(|t| t.version.clone());
        self.resume_schedules(
            std::mem::take(&mut r.schedules),
            r.promote_at,
            switched.as_ref(),
        );
        let guard = r.guard.take();
        let tripped = guards_rollback(&r, guard.as_ref());
        let pre_promote = promotion_in_pre_promote(&r);
        let (pending, found) = (r.pending.take(), std::mem::take(&mut r.found));
        let filings = std::mem::take(&mut r.filings);
        match (guard, tripped) {
            (Some(g), Some(why)) => {
                self.hold_for_rollback(r, &g.version);
                self.finish_guards_rollback(g, why);
            }
            (guard, _) => {
                self.resume_parts(r);
                self.resume_guard(guard);
            }
        }
        self.resume_filings(filings);
        self.resume_found(pending, found);
        if let Some(v) = pre_promote {
            self.undone_in_pre_promote(v);
        }
        self.resume_share(history_share);
        // Ends the proxy's wait for this first decision (`Routes::at_start`): users wait for a
        // running resumed as for one restarted, or are told at once there is none.
        self.publish_routes();
    }

    /// A promotion stopped while its `PRE_PROMOTE` ran is undone as one stopped later is: said,
    /// and its build back to testing, or replaced there by a newer build dropped meanwhile (said
    /// too: else the operator's promotion would seem lost without a word).
    fn undone_in_pre_promote(&mut self, version: Version) {
        self.emit(Event::SwitchUndone {
            kind: TxnKind::Promotion.name().to_string(),
            version: version.clone(),
            serving: self.s.running.as_ref().map(|r| r.version().clone()),
        });
        let next = self
            .s
            .pending
            .as_ref()
            .or(self.s.testing.as_ref().map(|t| &t.installed));
        if let Some(newer) = next.filter(|n| n.version > version) {
            let outcome = format!(
                "its promotion was undone at start (understudy stopped while PRE_PROMOTE ran), so \
                 it went back to testing, and {}, dropped while it was being promoted, is newer \
                 and replaces it (as a newer drop replaces the build under test)",
                newer.version
            );
            self.emit(Event::BuildRecovered { version, outcome });
        }
    }

    /// A switch the journal says happened but the history lacks (killed between the state
    /// write and the history's): recorded now, and a plain rollback's target follows it.
    fn record_missed_switch(&mut self, t: &Txn) {
        (self.s.previous, self.s.rolled_back_from) =
            crate::history::after_switch(t.from.clone(), t.why);
        self.out.push(Action::Record {
            from: t.from.clone(),
            to: t.version.clone(),
            why: t.why,
        });
        self.s.serving = Some(t.version.clone());
        self.s.shared = None;
    }

    /// At start: which parts the versions found play, and the transaction under way undone or
    /// completed.
    fn resume_parts(&mut self, r: Resumed) {
        let switched = r.txn.as_ref().is_some_and(|t| t.step >= TxnStep::Switched);
        if switched {
            // Users were already served by the new version: complete the transaction.
            let t = r.txn.clone().expect("checked above");
            self.emit(Event::SwitchCompleted {
                kind: t.kind.name().to_string(),
                version: t.version.clone(),
                from: t.from.clone(),
            });
            if r.history_last.as_ref() != Some(&t.version) {
                self.record_missed_switch(&t);
            }
            self.s.txn = Some(t);
            self.s.txn_post_due = true;
        }
        let undone = if switched { None } else { r.promoting.clone() };
        if let Some(running) = r.running {
            let slot = self.new_slot(Role::Running, running, true);
            self.s.running = Some(slot);
        } else if let (Some(promoting), None) = (&undone, &r.txn) {
            // Nothing else to serve: the version that passed its scoring serves.
            let slot = self.new_slot(Role::Running, promoting.clone(), true);
            self.s.running = Some(slot);
            self.resume_testing(r.testing);
            return;
        }
        self.resume_testing(r.testing);
        let Some(undone) = undone else {
            return;
        };
        // Interrupted before its switch: undo it. The old version serves; a promoted build is
        // tested again (unless a newer one waits), a restored one goes back to the archive.
        let kind = r.txn.as_ref().map_or(TxnKind::Promotion, |t| t.kind);
        self.emit(Event::SwitchUndone {
            kind: kind.name().to_string(),
            version: undone.version.clone(),
            serving: self.s.running.as_ref().map(|r| r.version().clone()),
        });
        let newer_waits = self
            .s
            .pending
            .as_ref()
            .is_some_and(|p| p.version > undone.version);
        if kind == TxnKind::Promotion && !newer_waits {
            if let Some(old) = self.s.pending.replace(undone) {
                self.archive_if_unused(old.version);
            }
        } else {
            let promoted = kind == TxnKind::Promotion;
            if let Some(newer) = self.s.pending.as_ref().filter(|_| promoted) {
                // Back to testing, where the newer build replaces it as a newer drop would: said,
                // or the promoted build would seem to be archived for no reason.
                let outcome = format!(
                    "its promotion was undone at start, so it went back to testing, and {}, \
                     dropped while it was being promoted, is newer and replaces it (as a newer \
                     drop replaces the build under test): its folder is archived",
                    newer.version
                );
                let version = undone.version.clone();
                self.emit(Event::BuildRecovered { version, outcome });
            }
            self.archive_if_unused(undone.version);
        }
    }

    /// At start: the guard journaled before a restart (or an upgrade) watches on until its
    /// deadline (no later than `ROLLBACK_WINDOW` from now, which may have been shortened or set
    /// to 0 meanwhile) against its baseline; the requests since the switch are counted afresh.
    /// One whose deadline passed while understudy was down ends now: its kept version is filed
    /// away, as it would have been.
    pub(super) fn resume_guard(&mut self, journaled: Option<JournaledGuard>) {
        let Some(j) = journaled else {
            return;
        };
        if self.s.taking_over {
            // Its window may end, and its kept version be filed, only where it serves.
            self.s.held_guard = Some(j);
            return;
        }
        let serving = self.running_version() == Some(&j.version);
        let left = self.time_left(&j).min(self.s.guard_window);
        if !serving || left.is_zero() {
            if serving {
                self.emit(Event::GuardEnded {
                    version: j.version,
                    from: j.from.clone(),
                });
            }
            // A switch completed at start files its old version once running is ready.
            let txn_files_it = self.s.txn_post_due
                && self.s.txn.as_ref().and_then(|t| t.from.as_ref()) == Some(&j.from);
            if !txn_files_it {
                self.archive_if_unused(j.from);
            }
            return;
        }
        self.watch_again(j, left);
    }

    /// What is left of a journaled watch's window, by the wall clock (none once past).
    fn time_left(&self, j: &JournaledGuard) -> std::time::Duration {
        let until_wall = crate::history::parse_rfc3339(&j.until).unwrap_or(self.wall);
        until_wall.duration_since(self.wall).unwrap_or_default()
    }

    /// The journaled watch `j` watches again for `left`, against its baseline, counting the
    /// requests afresh.
    fn watch_again(&mut self, j: JournaledGuard, left: std::time::Duration) {
        self.s.guard = Some(Guard {
            version: j.version,
            from: j.from,
            until: self.now + left,
            until_wall: self.wall + left,
            start: None,
            before: (j.before_errors, j.before_requests),
        });
    }

    /// At start, with the guard's rollback to finish: the version it threw out is not started
    /// again (users served by it, then cut over once more): it is held, as after a crash within
    /// the window, and started only if the rollback cannot be finished. Users' requests wait
    /// for the version coming back.
    fn hold_for_rollback(&mut self, r: Resumed, from: &semver::Version) {
        match r.running {
            Some(running) if running.version == *from => {
                self.s.restart = Some(Restart {
                    installed: running,
                    at: self.now,
                    held: true,
                    crashed: None,
                });
            }
            Some(running) => {
                let slot = self.new_slot(Role::Running, running, true);
                self.s.running = Some(slot);
            }
            None => {}
        }
        self.resume_testing(r.testing);
    }

    /// At start: the build that was under test waits to be tested again, unless it is not
    /// newer than what serves (a symlink left behind, or running rebuilt from the history, can
    /// make it so): tested against a newer running, its promotion would be a downgrade. It is
    /// archived then, saying why.
    fn resume_testing(&mut self, testing: Option<Installed>) {
        let restarting = self.s.restart.as_ref().map(|r| &r.installed.version);
        let serving = self.s.running.as_ref().map(Slot::version).or(restarting);
        let refused = testing
            .as_ref()
            .and_then(|t| refusal(&t.version, serving, None));
        match (testing, refused) {
            (Some(t), Some(why)) => {
                let outcome = format!(
                    "it was under test before the stop, but {why}, so it is not tested again: \
                     its folder is archived"
                );
                let version = t.version;
                self.emit(Event::BuildRecovered {
                    version: version.clone(),
                    outcome,
                });
                self.archive_if_unused(version);
            }
            (testing, _) => self.s.pending = testing,
        }
    }

    /// At start: the guard had tripped and its rollback had not switched when understudy
    /// stopped. Decided on traffic that may not come again, it is not undone: the guard trips
    /// again at once with its journaled reason, so the version it left is restored and takes
    /// over, and the one it threw out is rejected with that reason.
    fn finish_guards_rollback(&mut self, j: JournaledGuard, why: String) {
        let left = self.time_left(&j);
        self.watch_again(j, left);
        self.guard_rollback(why);
    }
}

/// Running lost with the state file and its symlink, and the build the history's last switch
/// made serve found installed: it serves again. Taken for a build to test, it would be archived
/// as older than the one under test, and nothing would serve until a drop.
fn serve_last_switched(r: &mut Resumed) {
    if r.running.is_some() || r.promoting.is_some() || r.txn.is_some() {
        return;
    }
    let Some(last) = &r.history_last else {
        return;
    };
    if let Some(i) = r.found.iter().position(|f| f.version == *last) {
        r.running = Some(r.found.remove(i));
    }
}

/// The version of a promotion the journal says was stopped in its `PRE_PROMOTE` step (before
/// any new instance: nothing else names it), with its build still the one under test.
fn promotion_in_pre_promote(r: &Resumed) -> Option<Version> {
    let t = r.txn.as_ref()?;
    let pre = t.kind == TxnKind::Promotion && t.step == TxnStep::PrePromote;
    let tested = r.testing.as_ref().is_some_and(|i| i.version == t.version);
    (pre && tested && r.promoting.is_none()).then(|| t.version.clone())
}
