//! Switching the version that serves: verdicts, the promotion (and rollback) transaction from
//! `PRE_PROMOTE` to `POST_*`, what is resolved of one at start, and the guard that watches a
//! promoted version and rolls it back.

use std::time::Duration;

use semver::Version;

use super::{
    Action, Decision, RestoreFailure, SlotKey, GUARD_BASELINE, GUARD_MIN_REQUESTS, GUARD_REJECTION,
};
use crate::artifact::Installed;
use crate::events::{Event, VerdictKind};
use crate::history::SwitchWhy;
use crate::hooks::Hook;
use crate::instance::InstanceId;
use crate::layout::Role;
use crate::score::stats::RateCheck;
use crate::score::{server_error_check, Scored, ScorerControl, Verdict};
use crate::supervisor::control::CommandError;
use crate::supervisor::state::{AfterStop, Guard, Restart, Slot, Txn, TxnKind, TxnStep};

impl Decision<'_> {
    pub(super) fn scored(&mut self, s: Scored) {
        let Some(testing) = self.s.testing.as_ref().filter(|t| t.id == s.testing) else {
            return;
        };
        if !testing.is_ready() {
            return;
        }
        let version = testing.version().clone();
        self.s.verdict = Some((s.testing, s.evaluation.clone()));
        let ev = &s.evaluation;
        let verdict = match &ev.verdict {
            Verdict::Wait(_) => VerdictKind::Wait,
            Verdict::Promote => VerdictKind::Promote,
            Verdict::Reject(_) => VerdictKind::Reject,
        };
        self.emit(Event::Scored {
            version: version.clone(),
            verdict,
            score: ev.score,
            pairs: ev.pairs,
            summary: ev.summary(),
            diffs: ev.diffs.clone(),
            evidence: Box::new(ev.evidence.clone()),
        });
        if let (Some(c), Some(ev)) = (self.s.canary.as_mut(), s.canary.as_ref()) {
            // Kept even while paused: a due schedule must not promote over it.
            c.regression = ev.regression.clone();
        }
        if self.s.paused {
            return; // scored and shown, not acted on
        }
        if self.s.canary.is_some() {
            // In a canary step the shadow goes on: its rejection still rejects; its promote
            // waits for the steps.
            match s.evaluation.verdict {
                Verdict::Reject(reasons) => self.reject_testing(reasons),
                _ => self.canary_scored(s.canary),
            }
            return;
        }
        match s.evaluation.verdict {
            Verdict::Wait(_) => {}
            Verdict::Reject(reasons) => self.reject_testing(reasons),
            Verdict::Promote => {
                if self.pre_promote_refused() {
                    // Scored says it passed; the refusal said so when it came.
                } else if !self.s.canary_steps.is_empty() {
                    // A schedule holds the canary's last step, not its first: the steps test
                    // the build on users while the schedule waits.
                    self.start_canary(0);
                } else if !self.automatic_promotion_held() {
                    self.begin_promotion(SwitchWhy::Automatic);
                }
            }
        }
    }

    /// Whether the automatic paths to a promotion of the build under test (a passing verdict,
    /// the canary's last step) must wait: `PRE_PROMOTE` refused it, or a pending schedule names
    /// it (`promote --at`: it is promoted at that time, not before). One rule for both paths, so
    /// a canary cannot promote what a plain verdict would hold.
    pub(super) fn automatic_promotion_held(&self) -> bool {
        let Some(testing) = self.s.testing.as_ref() else {
            return true;
        };
        self.pre_promote_refused() || self.held_by_schedule(testing.version())
    }

    /// `PRE_PROMOTE` refused the build under test: no automatic path (a passing verdict, the
    /// canary's last step) asks it again on its own, or every evaluation would rerun the hook
    /// and announce a failed promotion; an operator's promote (which clears it) does.
    pub(super) fn pre_promote_refused(&self) -> bool {
        let testing = self.s.testing.as_ref().map(Slot::version);
        self.s
            .hook_block
            .as_ref()
            .is_some_and(|(v, _)| Some(v) == testing)
    }

    pub(super) fn unroute_testing(&mut self, old: &Slot) {
        // A refusal was of this build: a later one of its version is asked afresh.
        if self
            .s
            .hook_block
            .as_ref()
            .is_some_and(|(v, _)| v == old.version())
        {
            self.s.hook_block = None;
        }
        // Users in a canary step go back to running with the same routes (unless a promotion
        // keeps them on the build until its switch, which the history records).
        if self.s.canary.take().is_some() && self.s.canary_out.is_none() {
            self.record_share(old.version().clone(), 0);
        }
        if old.is_ready() {
            self.out.push(Action::Score(ScorerControl::Clear));
        }
        self.out.push(Action::Unpoint(Role::Testing));
        self.publish_routes();
    }

    pub(super) fn reject_testing(&mut self, reasons: Vec<String>) {
        // Users a canary step sent to it finish their requests: it is drained, not cut.
        let drain = self.canary_weight() > 0;
        let Some(testing) = self.s.testing.take() else {
            return;
        };
        self.emit(Event::Rejecting {
            version: testing.version().clone(),
            reasons: reasons.clone(),
        });
        let why = format!("{} was rejected: {}", testing.version(), reasons.join("; "));
        self.cancel_schedules_of(testing.version(), &why);
        self.unroute_testing(&testing);
        self.retire(testing, drain, AfterStop::Reject(reasons));
        self.start_pending();
    }

    /// Promotion, step 1: stop testing and start a fresh running instance of its version.
    /// Returns whether it began (with its `PRE_PROMOTE`, if any): not while another switch is
    /// under way (restoring, starting, draining or in its `POST_*` hook), so a caller that must say
    /// "promoting" (a schedule) says it only when it is true.
    pub(super) fn begin_promotion(&mut self, why: SwitchWhy) -> bool {
        // A rollback still bringing its version back (from the archive) is a switch under way.
        if self.s.next.is_some() || self.s.txn.is_some() || self.s.restoring.is_some() {
            return false;
        }
        let Some(testing) = self.s.testing.as_ref() else {
            return false;
        };
        if self.s.hooks.pre_promote {
            let version = testing.version().clone();
            let (dir, port) = (
                testing.phase.child().map(|c| c.dir.clone()),
                testing.phase.port(),
            );
            let id = testing.id;
            let from = self.running_version().cloned();
            self.s.txn = Some(Txn {
                kind: TxnKind::Promotion,
                version: version.clone(),
                from: from.clone(),
                step: TxnStep::PrePromote,
                why,
                reject_from: None,
            });
            self.out.push(Action::RunHook {
                hook: Hook::PrePromote,
                id: Some(id),
                version,
                previous: from,
                dir,
                port,
            });
            return true;
        }
        self.promote_testing(why);
        true
    }

    /// Promotion, step 1 proper: stop testing and start a fresh running instance of its version.
    pub(super) fn promote_testing(&mut self, why: SwitchWhy) {
        let weight = self.canary_weight();
        let Some(testing) = self.s.testing.take() else {
            return;
        };
        let installed = testing.installed.clone();
        if weight > 0 {
            // The canary's users stay on it until the switch (an operator's promote skips the
            // steps left); it is drained then.
            self.s.canary_out = Some((testing.clone(), weight));
            self.unroute_testing(&testing);
        } else {
            self.unroute_testing(&testing);
            self.retire(testing, false, AfterStop::ArchiveIfUnused);
        }
        self.begin_promotion_of(installed, why);
    }

    pub(super) fn begin_promotion_of(&mut self, installed: Installed, why: SwitchWhy) {
        self.s.switch_why = Some(why);
        self.s.txn = Some(Txn {
            kind: if why == SwitchWhy::Rollback {
                TxnKind::Rollback
            } else {
                TxnKind::Promotion
            },
            version: installed.version.clone(),
            from: self.running_version().cloned(),
            step: TxnStep::Starting,
            why,
            reject_from: None,
        });
        if why == SwitchWhy::Rollback {
            // The guard's: the version it rolls back from is rejected, journaled with the switch.
            let from = self.running_version().cloned();
            let tripped = self.s.tripped.take();
            let reasons = tripped
                .filter(|(v, _)| Some(v) == from.as_ref())
                .map(|t| t.1);
            if let Some(t) = self.s.txn.as_mut() {
                t.reject_from = reasons;
            }
        }
        self.emit(Event::Promoting {
            version: installed.version.clone(),
        });
        let slot = self.new_slot(Role::Running, installed, false);
        self.s.next = Some(slot);
    }

    /// Promotion, step 2: the new instance is ready; swap routes atomically, drain and stop the old.
    pub(super) fn finish_promotion(&mut self) {
        let mut next = self.s.next.take().expect("called for next");
        next.proven = true;
        let to = next.version().clone();
        let old = self.s.running.replace(next);
        let restarting = self.s.restart.take();
        self.s.failures = 0;
        // Another version serves: the guard's note was about the last one.
        self.s.guard_failed = None;
        // Write-ahead: the switch is journaled before the route, symlink or history show it.
        if let Some(t) = self.s.txn.as_mut() {
            t.step = TxnStep::Switched;
        }
        // In the same write: a schedule that started this promotion has fired, and a watch that
        // tripped is over (resumed, it would watch a version that no longer serves).
        self.schedule_switched(&to);
        if self
            .s
            .txn
            .as_ref()
            .is_some_and(|t| t.why == SwitchWhy::Rollback)
        {
            self.s.tripped_guard = None;
        }
        self.persist();
        self.s.txn_old = old.as_ref().map(|o| o.id);
        self.serve(SlotKey::Running);
        if let Some((canary, _)) = self.s.canary_out.take() {
            self.publish_routes();
            self.retire(canary, true, AfterStop::Keep);
        }
        // `serve` announced the switch (`Promoted`); a rollback is announced as one too.
        let from = old
            .as_ref()
            .map(|o| o.version().clone())
            .or(restarting.as_ref().map(|r| r.installed.version.clone()));
        let why = self.s.txn.as_ref().map_or(SwitchWhy::Automatic, |t| t.why);
        if why == SwitchWhy::Rollback {
            self.emit(Event::RolledBack { from, to });
            self.end_guard_at_rollback();
        }
        self.file_replaced(old, restarting);
        self.score_against_new_running();
        self.start_pending();
    }

    /// The instance a switch replaced (or the running version that was restarting) retired,
    /// and its version kept for the guard, archived, or, when the guard rolled back from it,
    /// rejected with its reason: here, or once `POST_ROLLBACK` has run (`hook_done`), which may
    /// still look at its folder.
    fn file_replaced(&mut self, old: Option<Slot>, restarting: Option<Restart>) {
        let tripped = self
            .s
            .txn
            .as_ref()
            .filter(|_| !self.s.hooks.has(Hook::PostRollback))
            .and_then(|t| Some((t.from.clone()?, t.reject_from.clone()?)));
        let guarded = self.s.guard_window > Duration::ZERO
            && self
                .s
                .txn
                .as_ref()
                .is_some_and(|t| t.kind == TxnKind::Promotion);
        if let Some(old) = old {
            // Guarded, the replaced version's folder stays until the window ends: a rollback
            // then starts it straight away.
            let after = if guarded {
                let running = self.s.running.as_ref().expect("just placed");
                let version = running.version().clone();
                self.start_guard(version, old.version().clone());
                AfterStop::Keep
            } else {
                match tripped {
                    Some((v, reasons)) if v == *old.version() => AfterStop::Reject(reasons),
                    _ => AfterStop::ArchiveIfUnused,
                }
            };
            self.retire(old, true, after);
            return;
        }
        // The POST_* hook first: the version it replaced is filed once it has run.
        self.after_switch();
        if let Some(r) = restarting {
            match tripped {
                Some((version, reasons)) if version == r.installed.version => {
                    self.file_away(Action::Reject { version, reasons }, 0);
                }
                _ => self.archive_if_unused(r.installed.version),
            }
        }
    }

    /// A rollback leaves testing in place: it is scored afresh against the version now serving,
    /// since what it was scored on so far compared it with another (its stable window starts
    /// again).
    fn score_against_new_running(&mut self) {
        let testing = self.s.testing.as_ref().filter(|t| t.is_ready());
        if let Some(child) = testing.and_then(|t| t.phase.child()).cloned() {
            self.watch_testing(child);
        }
    }

    pub(super) fn abort_promotion(&mut self, reasons: Vec<String>) {
        let next = self.s.next.take().expect("called for next");
        self.emit(Event::PromotionFailed {
            version: next.version().clone(),
            reasons: reasons.clone(),
        });
        self.schedule_failed(next.version(), &reasons.join("; "), true);
        self.s.txn = None;
        let gave_up = self.guard_rolls_back_from();
        let failure = format!("failed ({})", reasons.join("; "));
        self.s.tripped = None;
        self.s.tripped_guard = None;
        if let Some((canary, _)) = self.s.canary_out.take() {
            self.publish_routes();
            self.record_share(canary.version().clone(), 0);
            self.retire(canary, true, AfterStop::Keep);
        }
        // A version brought back by a rollback had served before: it goes back to the archive.
        let after = match self.s.switch_why.take() {
            Some(SwitchWhy::Rollback) => AfterStop::ArchiveIfUnused,
            _ => AfterStop::Reject(reasons),
        };
        let to = next.version().clone();
        self.retire(next, false, after);
        // The guard's rollback (from a running that crashed, say): that version serves again.
        if let Some(from) = gave_up {
            self.guard_gave_up(&from, &to, &failure);
        }
        self.start_pending();
    }

    /// The version the guard's rollback under way rolls back from (or holds stopped for it).
    fn guard_rolls_back_from(&self) -> Option<Version> {
        let held = self.s.restart.as_ref().filter(|r| r.held);
        self.s
            .tripped_guard
            .as_ref()
            .map(|g| g.version.clone())
            .or_else(|| held.map(|r| r.installed.version.clone()))
    }

    /// The switch is done and the old instance drained and stopped: run the `POST_*` hook, or
    /// close the transaction.
    pub(super) fn after_switch(&mut self) {
        let Some(t) = &self.s.txn else {
            return;
        };
        let hook = match t.kind {
            TxnKind::Promotion => Hook::PostPromote,
            TxnKind::Rollback => Hook::PostRollback,
        };
        if !self.s.hooks.has(hook) {
            self.s.txn = None;
            return;
        }
        let running = self.s.running.as_ref();
        self.out.push(Action::RunHook {
            hook,
            id: running.map(|r| r.id),
            version: t.version.clone(),
            previous: t.from.clone(),
            dir: running.and_then(|r| r.phase.child()).map(|c| c.dir.clone()),
            port: running.and_then(|r| r.phase.port()),
        });
    }

    pub(super) fn hook_done(
        &mut self,
        hook: Hook,
        id: Option<InstanceId>,
        version: Version,
        result: Result<(), String>,
    ) {
        self.emit(Event::HookRan {
            hook: hook.key().to_string(),
            version: version.clone(),
            ok: result.is_ok(),
            detail: result.clone().err().unwrap_or_default(),
        });
        match hook {
            Hook::PreStart => self.pre_start_done(id, result),
            Hook::PrePromote => {
                let current = self
                    .s
                    .txn
                    .as_ref()
                    .is_some_and(|t| t.step == TxnStep::PrePromote && t.version == version);
                if !current {
                    self.abandoned_pre_promote(&version);
                    return;
                }
                let txn = self.s.txn.take().expect("checked above");
                let still_testing = self
                    .s
                    .testing
                    .as_ref()
                    .is_some_and(|t| *t.version() == version && t.is_ready());
                match result {
                    Ok(()) if still_testing => self.promote_testing(txn.why),
                    // It left testing while PRE_PROMOTE ran (what took it out said so): no promotion.
                    Ok(()) => {
                        let why = format!("{version} left testing while PRE_PROMOTE ran");
                        self.schedule_failed(&version, &why, false);
                    }
                    Err(e) => {
                        let reason = format!("PRE_PROMOTE refused it: {e}");
                        self.schedule_failed(&version, &reason, true);
                        self.emit(Event::PromotionFailed {
                            version: version.clone(),
                            reasons: vec![reason.clone()],
                        });
                        // The canary's users go back to running: the hook refused the build, which
                        // serves none of them until an operator promotes it (or aborts it).
                        if self.s.canary.take().is_some() {
                            self.record_share(version.clone(), 0);
                            self.publish_routes();
                        }
                        self.s.hook_block = Some((version, reason));
                        self.persist();
                    }
                }
                // A build dropped while the hook ran waited for it: it is tested now, unless
                // the promotion goes on (it is then tested once that is done).
                self.start_pending();
            }
            Hook::PostPromote | Hook::PostRollback => {
                // A failure was announced by HookRan above; the switch stands either way, and
                // the version it replaced, kept while the hook ran, is filed away now.
                if self.s.txn.as_ref().is_some_and(|t| t.version == version) {
                    let txn = self.s.txn.take();
                    match txn.and_then(|t| Some((t.from?, t.reject_from))) {
                        Some((version, Some(reasons))) => {
                            self.file_away(Action::Reject { version, reasons }, 0)
                        }
                        Some((from, None)) => self.archive_if_unused(from),
                        None => {}
                    }
                }
            }
        }
    }

    /// Rollback, step 2: the version is back in its folder; promote it like any other.
    pub(super) fn restored(&mut self, version: Version, result: Result<Installed, RestoreFailure>) {
        let Some((wanted, id)) = self.s.restoring.take() else {
            return;
        };
        if wanted != version {
            self.s.restoring = Some((wanted, id));
            return;
        }
        if self.s.collecting == (false, true) {
            self.collect(); // a pass that waited for the restore
        }
        let result = match result {
            Err(RestoreFailure::Missing) => Err(CommandError::UnknownVersion(version.to_string())),
            Err(RestoreFailure::Failed(why)) => Err(CommandError::Refused(format!(
                "cannot bring back {version}: {why}"
            ))),
            Ok(_) if self.s.next.is_some() => Err(CommandError::Refused(
                "a promotion started meanwhile; try again once it is done".into(),
            )),
            Ok(installed) => {
                let from = self.running_version().map(Version::to_string);
                self.begin_promotion_of(installed, SwitchWhy::Rollback);
                Ok(format!(
                    "rolling back from {} to {version}: it starts, and takes over once ready",
                    from.as_deref().unwrap_or("nothing")
                ))
            }
        };
        let mut reason = result.as_ref().err().map(ToString::to_string);
        if let (Some(why), Some(from)) = (&reason, self.guard_rolls_back_from()) {
            let failure = format!("could not start ({why})");
            reason = Some(format!("{why}; {}", self.after_guard(&from)));
            self.guard_gave_up(&from, &version, &failure);
        }
        if reason.is_some() {
            self.s.tripped = None; // no rollback: the version the guard left is filed as it was
            self.s.tripped_guard = None;
        }
        match (id, result) {
            (Some(id), result) => self.out.push(Action::Reply { id, result }),
            (None, Err(e)) => self.emit(Event::RollbackFailed {
                version,
                reason: reason.unwrap_or_else(|| e.to_string()),
            }),
            // Promoting says it.
            (None, Ok(_)) => {}
        }
        // A build dropped while a PRE_PROMOTE this rollback cut short ran waits no longer.
        self.start_pending();
    }

    /// A traffic sample: keep a minute of them, and judge the promoted version under watch.
    pub(super) fn traffic(&mut self, requests: u64, errors: u64) {
        if self.s.taking_over {
            return;
        }
        let now = self.now;
        self.s.traffic.push_back((now, requests, errors));
        while self.s.traffic.len() > 1
            && self
                .s
                .traffic
                .front()
                .is_some_and(|(t, ..)| now.saturating_duration_since(*t) > GUARD_BASELINE)
        {
            self.s.traffic.pop_front();
        }
        let Some(g) = self.s.guard.as_mut() else {
            return;
        };
        let Some((r0, e0)) = g.start else {
            g.start = Some((requests, errors));
            return;
        };
        if now >= g.until {
            let g = self.s.guard.take().expect("checked above");
            self.emit(Event::GuardEnded {
                version: g.version.clone(),
                from: g.from.clone(),
            });
            self.archive_if_unused(g.from);
            return;
        }
        let (dr, de) = (requests.saturating_sub(r0), errors.saturating_sub(e0));
        if dr < GUARD_MIN_REQUESTS {
            return;
        }
        // The scorer's 5xx rule: only a rate worse with CONFIDENCE rolls back.
        let (max, confidence) = (self.s.guard_max_delta, self.s.guard_confidence);
        let check = server_error_check((de, dr), g.before, max, confidence);
        if matches!(check, RateCheck::Worse { .. }) {
            let (be, br) = g.before;
            let why = format!(
                "5xx rate {:.1}% ({de} of {dr} requests) since the switch, against {:.1}% ({be} of {br}) before it: worse by more than MAX_5XX_DELTA ({:.1} points) at {:.0}% confidence",
                de as f64 * 100.0 / dr as f64,
                be as f64 * 100.0 / br.max(1) as f64,
                max * 100.0,
                confidence * 100.0
            );
            self.guard_rollback(why);
        }
    }

    /// Start watching `version`, just promoted over `from`.
    pub(super) fn start_guard(&mut self, version: Version, from: Version) {
        if let Some(earlier) = self.s.guard.take() {
            // A newer promotion ends the earlier watch: its kept version is filed away.
            self.archive_if_unused(earlier.from);
        }
        let (first, last) = (self.s.traffic.front(), self.s.traffic.back());
        let before = match (first, last) {
            (Some(&(_, r0, e0)), Some(&(_, r1, e1))) if r1 > r0 => (e1.saturating_sub(e0), r1 - r0),
            _ => (0, 0),
        };
        self.s.guard = Some(Guard {
            version,
            from,
            until: self.now + self.s.guard_window,
            until_wall: self.wall + self.s.guard_window,
            start: last.map(|&(_, r, e)| (r, e)),
            before,
        });
    }

    /// A rollback switched users: the guard watched the version it replaced (with that one's
    /// counts) and would bring back the one it kept, which nobody asked for. It ends; the kept
    /// version is filed away, as at the guard's normal end (unless the rollback went to it).
    fn end_guard_at_rollback(&mut self) {
        self.s.tripped_guard = None;
        if let Some(g) = self.s.guard.take() {
            self.archive_if_unused(g.from);
        }
    }

    /// Started by an upgrade, this understudy serves now: the old one is on its way out, so
    /// what waited for that is decided (the schedules right after, by `decide`), as at a start.
    pub(super) fn now_serving(&mut self) {
        if !std::mem::take(&mut self.s.taking_over) {
            return;
        }
        let guard = self.s.held_guard.take();
        self.resume_guard(guard);
        for (filing, attempts) in std::mem::take(&mut self.s.refile) {
            self.file_away(filing, attempts);
        }
    }

    /// The promoted version does worse than the one it replaced: bring that one back. Returns
    /// whether the rollback began.
    pub(super) fn guard_rollback(&mut self, why: String) -> bool {
        let Some(g) = self.s.guard.take() else {
            return false;
        };
        self.emit(Event::GuardTripped {
            version: g.version.clone(),
            to: g.from.clone(),
            reason: why.clone(),
        });
        if self.s.next.is_some() || self.s.restoring.is_some() {
            let failure = "could not start (another switch is under way)";
            let note = self.guard_note(&g.version, &g.from, failure);
            self.s.guard_failed = Some(note.clone());
            self.emit(Event::RollbackFailed {
                version: g.from.clone(),
                reason: note,
            });
            self.archive_if_unused(g.from);
            return false;
        }
        // The promotion's own tail (draining, POST_PROMOTE) gives way to the rollback; so does a
        // next promotion still in PRE_PROMOTE, and the schedule that started it says so.
        if let Some(t) = self
            .s
            .txn
            .as_ref()
            .filter(|t| t.step == TxnStep::PrePromote)
        {
            let version = t.version.clone();
            let why = "the guard rolled running back while PRE_PROMOTE ran";
            self.schedule_failed(&version, why, true);
        }
        self.s.txn = None;
        self.s.txn_old = None;
        let reason = format!("{GUARD_REJECTION}{why}");
        // Journaled as tripped: a restart before the switch finishes this rollback.
        let mut journaled = g.journaled();
        journaled.tripped = Some(why);
        self.s.tripped_guard = Some(journaled);
        self.s.tripped = Some((g.version, vec![reason]));
        self.restore(g.from, None);
        true
    }
}

impl Decision<'_> {
    /// A `PRE_PROMOTE` ended whose promotion is no longer under way (something took its
    /// transaction over): a schedule that started it must not stay `promoting` for ever.
    fn abandoned_pre_promote(&mut self, version: &Version) {
        let still = self.s.txn.as_ref().is_some_and(|t| t.version == *version)
            || self.s.next.as_ref().is_some_and(|n| n.version() == version);
        if !still {
            let why = "its promotion was given up while PRE_PROMOTE ran";
            self.schedule_failed(version, why, true);
        }
        self.start_pending();
    }
}
