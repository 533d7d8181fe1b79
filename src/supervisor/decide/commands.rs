//! An operator's commands (promote, abort, pause, resume, roll back, schedule) and the scheduled
//! promotions they set, fired at their time.

use std::time::{Duration, SystemTime};

use semver::Version;
use tokio::time::Instant;

use super::{Action, Decision, SlotKey};
use crate::events::Event;
use crate::history::SwitchWhy;
use crate::score::Verdict;
use crate::supervisor::control::{self, Command, CommandError};
use crate::supervisor::schedule::{self, Now, Origin, Outcome, Schedule};
use crate::supervisor::state::{AfterStop, Phase};

impl Decision<'_> {
    /// With no build under test, the one on its way to be tested, if any, and when to `verb`
    /// it: an operator who just dropped a build learns it is coming, not that there is none (a
    /// schedule takes it at once: [`Decision::candidate_version`]).
    fn on_its_way(&self, verb: &str) -> String {
        let next = self
            .s
            .installing
            .as_ref()
            .map(|v| (v, "is being installed"));
        let next = next.or(self
            .s
            .pending
            .as_ref()
            .map(|p| (&p.version, "waits its turn")));
        next.map_or(String::new(), |(v, state)| {
            format!(": {v} {state} and is tested next; {verb} it once it is under test")
        })
    }

    /// Carry out an operator's command; `None` means the answer comes later (a rollback waits
    /// for its version to be restored).
    pub(super) fn command(
        &mut self,
        id: u64,
        command: Command,
    ) -> Option<Result<String, CommandError>> {
        Some(match command {
            Command::Promote => {
                if let Some(next) = self.next_switch() {
                    return Some(Err(CommandError::NothingToPromote(format!(
                        "{next} is already under way"
                    ))));
                }
                if let Some((v, _)) = &self.s.restoring {
                    return Some(Err(CommandError::NothingToPromote(format!(
                        "a rollback to {v} is under way; promote once it is done"
                    ))));
                }
                let Some(testing) = self.s.testing.as_ref() else {
                    let why = format!("no build is being tested{}", self.on_its_way("promote"));
                    return Some(Err(CommandError::NothingToPromote(why)));
                };
                if !testing.is_ready() {
                    return Some(Err(CommandError::NothingToPromote(format!(
                        "{} is not ready yet",
                        testing.version()
                    ))));
                }
                if let Some(t) = &self.s.txn {
                    return Some(Err(CommandError::NothingToPromote(format!(
                        "the {} of {} is already under way",
                        t.kind.name(),
                        t.version
                    ))));
                }
                let version = testing.version().clone();
                self.s.hook_block = None;
                self.begin_promotion(SwitchWhy::Operator);
                Ok(format!("promoting {version}"))
            }
            Command::Abort => {
                let reasons = vec!["aborted by operator".to_string()];
                if let Some(testing) = &self.s.testing {
                    let version = testing.version().clone();
                    self.reject_testing(reasons);
                    return Some(Ok(format!("rejected {version}")));
                }
                let Some(pending) = self.s.pending.take() else {
                    return Some(self.abort_install());
                };
                let version = pending.version;
                let reject = Action::Reject {
                    version: version.clone(),
                    reasons,
                };
                self.file_away(reject, 0);
                Ok(format!("rejected {version}"))
            }
            Command::Pause => Ok(self.pause(true)),
            Command::Resume => Ok(self.pause(false)),
            Command::PromoteAt(at) => self.schedule(at),
            Command::CancelSchedule(sid) => self.cancel_schedule(sid),
            Command::Rollback(version) => return self.rollback(id, version),
            Command::Upgrade(binary) => return self.upgrade(id, binary),
        })
    }

    /// Pause (`on`) or resume acting on verdicts. Said as it is when nothing changes: an
    /// operator told "paused" of a pause already in force may think it began now.
    fn pause(&mut self, on: bool) -> String {
        match (on, self.s.paused) {
            (true, true) => {
                "already paused: nothing changed; `understudy resume` acts on verdicts again".into()
            }
            (false, false) => {
                "not paused: nothing changed; verdicts are acted on as they come".into()
            }
            (true, false) => {
                self.s.paused = true;
                self.emit(Event::Paused);
                "paused: testing is still scored, but nothing is promoted or rejected until resumed"
                    .into()
            }
            (false, true) => {
                self.s.paused = false;
                self.emit(Event::Resumed);
                "resumed: verdicts are acted on again".into()
            }
        }
    }

    /// Abort the build being installed, if one is: it is rejected as its install ends, at once
    /// if it waits for room for its protected copy (which may never come).
    fn abort_install(&mut self) -> Result<String, CommandError> {
        let Some(version) = self.s.installing.clone() else {
            return Err(CommandError::NothingToAbort);
        };
        self.s.aborting_install = true;
        self.out.push(Action::AbortInstall);
        Ok(format!(
            "rejecting {version}: it is being installed, and is rejected as soon as its install \
             ends (at once if it waits for room for its protected copy)"
        ))
    }

    /// Hand everything to a new understudy, unless a switch is under way: the children that
    /// run go with it, ready or not; the new one adopts each, and probes one still starting for
    /// readiness (with a whole READY_TIMEOUT: the plan does not say what it had left; taken
    /// back after a failed takeover, it keeps what it had left). A slot whose child is not
    /// launched yet is not handed: the new one starts it.
    fn upgrade(
        &mut self,
        id: u64,
        binary: Option<std::path::PathBuf>,
    ) -> Option<Result<String, CommandError>> {
        let refuse = |why: String| Some(Err(CommandError::Refused(why)));
        if let Some(t) = &self.s.txn {
            return refuse(format!(
                "the {} of {} is under way; upgrade understudy once it is done",
                t.kind.name(),
                t.version
            ));
        }
        if let Some(slot) = self.s.next.as_ref().or(self.s.spare.as_ref()) {
            return refuse(format!(
                "a fresh running instance of {} is starting; upgrade understudy once it serves",
                slot.version()
            ));
        }
        if let Some(r) = self.s.running.as_ref().filter(|r| !r.is_ready()) {
            // Users' requests wait for it in this process, which would hand over before it is
            // ready and have to answer them 503.
            return refuse(format!(
                "running {} is starting; upgrade understudy once it serves",
                r.version()
            ));
        }
        if let Some(work) = self.folder_work() {
            return refuse(format!(
                "{work}; upgrade understudy once it is done (the new one would find the folder \
                 half-way, while this one still works on it)"
            ));
        }
        let children = [SlotKey::Running, SlotKey::Secondary, SlotKey::Testing]
            .into_iter()
            .filter_map(|part| {
                let slot = self.slot_ref(part)?;
                let up = matches!(slot.phase, Phase::Up { .. } | Phase::Ready { .. });
                up.then_some((part.name(), slot.id))
            })
            .collect();
        self.out.push(Action::Upgrade {
            reply: id,
            binary,
            children,
        });
        None
    }

    /// Work on a version folder that this understudy does off its task and would finish after
    /// handing over, if any: an install, a filing sent or due once an instance is reaped, a
    /// rollback's restore.
    fn folder_work(&self) -> Option<String> {
        let s = &*self.s;
        if let Some(v) = &s.installing {
            return Some(format!("the install of {v} is under way"));
        }
        if let Some((a, _)) = s.filing.first() {
            let v = super::filing::filing_version(a).map_or(String::new(), Version::to_string);
            return Some(format!("the folder of {v} is being filed away"));
        }
        if let Some((v, _)) = &s.restoring {
            return Some(format!("{v} is being restored for a rollback"));
        }
        let leaving = s.retiring.values().find(|r| r.after != AfterStop::Keep);
        leaving.map(|r| {
            format!(
                "an instance of {} is stopping, and its folder is filed away then",
                r.version
            )
        })
    }

    /// The switch whose new instance is starting, as a user would name it: "the promotion of
    /// 1.1.0" or "the rollback to 1.0.0".
    fn next_switch(&self) -> Option<String> {
        let next = self.s.next.as_ref()?.version();
        Some(match self.s.switch_why {
            Some(SwitchWhy::Rollback) => format!("the rollback to {next}"),
            _ => format!("the promotion of {next}"),
        })
    }

    /// Rollback, step 1: check it makes sense, then have the version restored.
    pub(super) fn rollback(
        &mut self,
        id: u64,
        version: Option<Version>,
    ) -> Option<Result<String, CommandError>> {
        let refuse = |why: String| Some(Err(CommandError::Refused(why)));
        if let Some(next) = self.next_switch() {
            return refuse(format!("{next} is under way; roll back once it is done"));
        }
        if let Some((v, _)) = &self.s.restoring {
            return refuse(format!("a rollback to {v} is already under way"));
        }
        if let Some(t) = &self.s.txn {
            return refuse(format!(
                "the {} of {} is still under way; roll back once it is done",
                t.kind.name(),
                t.version
            ));
        }
        let running = self.running_version().cloned();
        if let (None, Some(from)) = (&version, &self.s.rolled_back_from) {
            return refuse(format!(
                "the last switch rolled back from {from}, and a plain rollback would bring it \
                 back: name the version to roll back to (`understudy rollback {from}` if that \
                 is what you want)"
            ));
        }
        let Some(target) = version.or_else(|| self.s.previous.clone()) else {
            return refuse(
                "no earlier version served here: name the version to roll back to".into(),
            );
        };
        if running.as_ref() == Some(&target) {
            return refuse(format!("{target} is already running"));
        }
        let under_test = [self.s.testing(), self.s.next()]
            .into_iter()
            .flatten()
            .any(|slot| slot.version() == &target);
        if under_test || self.s.pending().is_some_and(|p| p.version == target) {
            // Rolling back to a build that never served would put untested code in front of users
            // (and a later abort would move the folder running lives in).
            return refuse(format!(
                "{target} is the build under test (this build of it has not served users): \
                 promote it or abort it; a rollback brings back a build that served"
            ));
        }
        self.restore(target, Some(id));
        None
    }

    /// Take back the schedules of the state file (resolving one whose promotion was under way:
    /// `switched` names the version the journal says users were switched to), and add
    /// `PROMOTE_AT`'s unless it is there.
    pub(super) fn resume_schedules(
        &mut self,
        schedules: Vec<Schedule>,
        promote_at: Option<SystemTime>,
        switched: Option<&Version>,
    ) {
        self.s.last_schedule_id = schedules.iter().map(|s| s.id).max().unwrap_or(0);
        self.s.schedules = schedules;
        self.resume_promoting_schedules(switched);
        let wanted = promote_at.map(control::rfc3339);
        for s in &mut self.s.schedules {
            if s.origin == Origin::Config && s.is_pending() && Some(&s.at) != wanted.as_ref() {
                s.outcome = Outcome::Cancelled {
                    reason: "PROMOTE_AT no longer asks for it".into(),
                };
            }
        }
        if let (Some(at), Some(text)) = (promote_at, wanted) {
            let known = self
                .s
                .schedules
                .iter()
                .any(|s| s.origin == Origin::Config && s.at == text);
            if !known {
                self.s.last_schedule_id += 1;
                let sch = Schedule::new(self.s.last_schedule_id, None, at, Origin::Config);
                self.emit(Event::Scheduled {
                    id: sch.id,
                    version: None,
                    at: sch.at.clone(),
                });
                self.s.schedules.push(sch);
            }
        }
    }

    /// `PromoteAt`: schedule the build under test; stored before the answer goes out.
    /// Refused past [`crate::instant::MAX_AHEAD`]: a mistyped year would hold the build for ever.
    pub(super) fn schedule(&mut self, at: SystemTime) -> Result<String, CommandError> {
        if at <= self.wall {
            return Err(CommandError::Refused(format!(
                "{} is not in the future: promote now without \"at\"",
                control::rfc3339(at)
            )));
        }
        if at.duration_since(self.wall).unwrap_or_default() > crate::instant::MAX_AHEAD {
            return Err(CommandError::Refused(format!(
                "{} is more than a year ahead (a typo?): until then the build would be held from \
                 automatic promotion; schedule at most 366 days ahead, or `understudy pause` to \
                 hold it",
                control::rfc3339(at)
            )));
        }
        let Some(version) = self.candidate_version().cloned() else {
            return Err(CommandError::NothingToPromote(
                "no build is being tested, so there is nothing to schedule".into(),
            ));
        };
        self.s.last_schedule_id += 1;
        let id = self.s.last_schedule_id;
        let replaces: Vec<String> = (self.s.schedules.iter())
            .filter(|s| s.is_pending() && s.version.as_ref() == Some(&version))
            .map(|s| format!("#{}", s.id))
            .collect();
        // Ended as a cancel is, event included: a webhook consumer must not wait on it for ever.
        self.cancel_schedules_of(&version, &format!("replaced by schedule #{id}"));
        let sch = Schedule::new(id, Some(version.clone()), at, Origin::Operator);
        let replacing = match replaces.is_empty() {
            true => String::new(),
            false => format!("; it replaces schedule {}", replaces.join(", ")),
        };
        let message = format!(
            "schedule #{id}: {version} will be promoted at {} (until then it is scored, but not promoted automatically){replacing}",
            sch.at
        );
        self.emit(Event::Scheduled {
            id,
            version: Some(version),
            at: sch.at.clone(),
        });
        self.s.schedules.push(sch);
        schedule::prune(&mut self.s.schedules);
        Ok(message)
    }

    pub(super) fn cancel_schedule(&mut self, id: u64) -> Result<String, CommandError> {
        let Some(s) = self.s.schedules.iter_mut().find(|s| s.id == id) else {
            return Err(CommandError::UnknownSchedule(id));
        };
        if let Outcome::Promoting { promoting, .. } = &s.outcome {
            return Err(CommandError::Refused(format!(
                "schedule #{id} has started the promotion of {promoting}, which is under way: \
                 it can no longer be cancelled; roll back once it is done"
            )));
        }
        if !s.is_pending() {
            let (state, reason) = s.ending();
            return Err(CommandError::Refused(format!(
                "schedule #{id} is no longer pending ({state}: {reason})"
            )));
        }
        s.outcome = Outcome::Cancelled {
            reason: "cancelled by operator".into(),
        };
        self.emit(Event::ScheduleEnded {
            id,
            outcome: "cancelled".into(),
            reason: "cancelled by operator".into(),
        });
        Ok(format!("schedule #{id} cancelled"))
    }

    /// A pending schedule names this version (`promote --at`), or names none (`PROMOTE_AT`:
    /// whatever is under test then): it is promoted at that time, not before.
    pub(super) fn held_by_schedule(&self, version: &Version) -> bool {
        self.s
            .schedules
            .iter()
            .any(|s| s.is_pending() && s.version.as_ref().is_none_or(|v| v == version))
    }

    pub(super) fn cancel_schedules_of(&mut self, version: &Version, reason: &str) {
        let mut ended = Vec::new();
        for s in &mut self.s.schedules {
            if s.is_pending() && s.version.as_ref() == Some(version) {
                s.outcome = Outcome::Cancelled {
                    reason: reason.to_string(),
                };
                ended.push(s.id);
            }
        }
        for id in ended {
            self.emit(Event::ScheduleEnded {
                id,
                outcome: "cancelled".into(),
                reason: reason.to_string(),
            });
        }
    }

    /// Fire what is due, record what can no longer fire, and plan the next look.
    pub(super) fn run_schedules(&mut self) {
        // Due or missed, a schedule is the old understudy's to act on until this one serves.
        if self.s.taking_over {
            return;
        }
        let now = Now {
            mono: self.now,
            wall: self.wall,
        };
        let grace = self.s.schedule_grace;
        let mut next: Option<Instant> = None;
        for i in 0..self.s.schedules.len() {
            let sch = self.s.schedules[i].clone();
            if !sch.is_pending() {
                continue;
            }
            let under_test = |v: &Version| {
                self.s.testing.as_ref().is_some_and(|t| t.version() == v)
                    || self.s.pending.as_ref().is_some_and(|p| p.version == *v)
                    || self.s.installing.as_ref() == Some(v)
            };
            let ended = match &sch.version {
                Some(v) if !under_test(v) => Some(Outcome::Cancelled {
                    reason: format!("{v} is no longer under test (promoted, rejected or replaced)"),
                }),
                _ if self.wall < sch.instant() => None,
                _ => self.fire(&sch, grace),
            };
            match ended {
                Some(outcome @ Outcome::Promoting { .. }) => self.s.schedules[i].outcome = outcome,
                Some(outcome) => self.end_schedule(i, outcome),
                None => {
                    let check = schedule::next_check(&sch, now, grace);
                    next = Some(next.map_or(check, |n| n.min(check)));
                }
            }
        }
        self.s.schedule_check = next;
        schedule::prune(&mut self.s.schedules);
    }

    /// A due schedule: promote its build if it is ready and no other switch is under way, wait
    /// for both within the grace, or give up.
    pub(super) fn fire(&mut self, sch: &Schedule, grace: Duration) -> Option<Outcome> {
        let late = self.wall.duration_since(sch.instant()).unwrap_or_default();
        let ready = self
            .s
            .testing
            .as_ref()
            .filter(|t| t.is_ready() && sch.version.as_ref().is_none_or(|v| t.version() == v))
            .map(|t| t.version().clone());
        let mut held = None;
        if let Some(version) = ready {
            held = self.schedule_hold(&version);
            if held.is_none() && self.canary_not_begun() {
                // Due before the shadow verdict began the steps: they begin now, not skipped.
                self.start_canary(0);
                held = Some(format!(
                    "{version}'s canary steps (CANARY_STEPS) begin now: a schedule does not \
                     skip them, and fires once the last step has passed"
                ));
            }
            // Another switch still under way (draining, POST_PROMOTE) holds it, within the grace.
            if held.is_none() && self.begin_promotion(SwitchWhy::Scheduled) {
                self.s.schedule_held = None;
                // Fired once users are switched (`schedule_switched`), not now: an undo at start
                // re-opens it, a failure ends it `failed`.
                return Some(Outcome::Promoting {
                    started_at: control::rfc3339(self.wall),
                    promoting: version,
                });
            }
        }
        if late > grace {
            let what = sch
                .version
                .as_ref()
                .map_or("the build under test".to_string(), Version::to_string);
            let why = held.map_or(String::new(), |h| format!(": it held, {h}"));
            return Some(Outcome::Missed {
                reason: format!(
                    "due at {}, but {what} could not be promoted within MISSED_SCHEDULE_GRACE ({grace:?}){why}",
                    sch.at
                ),
            });
        }
        if let Some(why) = held {
            let said = Some((sch.id, why.clone()));
            if self.s.schedule_held != said {
                self.s.schedule_held = said;
                self.emit(Event::ScheduleHeld {
                    id: sch.id,
                    reason: why,
                });
            }
            return None;
        }
        if sch.version.is_none() && self.s.testing.is_none() && self.s.pending.is_none() {
            return Some(Outcome::Cancelled {
                reason: format!("nothing was under test at {}", sch.at),
            });
        }
        // Due, but its build is not ready yet (starting after a restart) or another switch is
        // finishing: wait for it.
        None
    }

    /// Why a due schedule whose build is ready must wait, if it must: a pause holds it as it
    /// holds every automatic decision; it never promotes over a failing latest evaluation (one
    /// that came while paused, not acted on yet); and it holds the canary's last step, so the
    /// steps before it are not skipped.
    fn schedule_hold(&self, version: &Version) -> Option<String> {
        if self.s.paused {
            return Some("understudy is paused; it fires once resumed".into());
        }
        let testing = self.s.testing.as_ref().map(|t| t.id);
        if let Some((id, ev)) = &self.s.verdict {
            if let (true, Verdict::Reject(reasons)) = (Some(*id) == testing, &ev.verdict) {
                return Some(format!(
                    "the latest evaluation of {version} rejects it: {}",
                    reasons.join("; ")
                ));
            }
        }
        let c = self.s.canary.as_ref()?;
        if let Some(r) = &c.regression {
            return Some(format!("{version}'s canary regresses: {r}"));
        }
        (!c.passed).then(|| {
            format!(
                "{version}'s canary is at step {} of {}; a schedule holds the last step, so it \
                 fires once the last step has passed",
                c.step + 1,
                self.s.canary_steps.len()
            )
        })
    }

    /// Whether canary steps are configured and the build under test has not begun them.
    fn canary_not_begun(&self) -> bool {
        !self.s.canary_steps.is_empty() && self.s.canary.is_none() && self.s.canary_out.is_none()
    }

    /// End schedule `i` with `outcome`, and say so (`schedule_ended`).
    fn end_schedule(&mut self, i: usize, outcome: Outcome) {
        let sch = &mut self.s.schedules[i];
        sch.outcome = outcome;
        let (name, reason) = sch.ending();
        let id = sch.id;
        self.emit(Event::ScheduleEnded {
            id,
            outcome: name.into(),
            reason,
        });
    }

    /// The schedules whose promotion of `version` is under way, by index.
    fn promoting_schedules(&self, version: &Version) -> Vec<usize> {
        let of =
            |o: &Outcome| matches!(o, Outcome::Promoting { promoting, .. } if promoting == version);
        (0..self.s.schedules.len())
            .filter(|&i| of(&self.s.schedules[i].outcome))
            .collect()
    }

    /// Users were switched to `version`: a schedule that started its promotion has fired (saved
    /// in the same write as the switch).
    pub(super) fn schedule_switched(&mut self, version: &Version) {
        for i in self.promoting_schedules(version) {
            let fired = Outcome::Fired {
                fired_at: control::rfc3339(self.wall),
                promoted: version.clone(),
            };
            self.end_schedule(i, fired);
        }
    }

    /// The promotion of `version` ended without switching users: a schedule that started it
    /// ends `failed` with the reason (or as `cancelled`, when the build left testing for
    /// another reason). Not retried on its own: a maintenance window is not silently moved.
    pub(super) fn schedule_failed(&mut self, version: &Version, reason: &str, failed: bool) {
        for i in self.promoting_schedules(version) {
            let reason = format!("its promotion of {version} did not switch users: {reason}");
            let outcome = if failed {
                Outcome::Failed { reason }
            } else {
                Outcome::Cancelled { reason }
            };
            self.end_schedule(i, outcome);
        }
    }

    /// At start, a schedule whose promotion was under way when understudy stopped: fired if the
    /// journal says users were switched; undone (stopped before the switch), it is re-opened and
    /// fires again within `MISSED_SCHEDULE_GRACE` of its time, or is recorded as missed.
    fn resume_promoting_schedules(&mut self, switched: Option<&Version>) {
        let grace = self.s.schedule_grace;
        for i in 0..self.s.schedules.len() {
            let sch = &self.s.schedules[i];
            let Outcome::Promoting {
                started_at,
                promoting,
            } = &sch.outcome
            else {
                continue;
            };
            let undone = format!(
                "its promotion of {promoting}, begun at {started_at}, was cut short before users \
                 were switched (understudy stopped) and undone at start"
            );
            if switched == Some(promoting) {
                self.schedule_switched(&promoting.clone());
            } else if self.wall.duration_since(sch.instant()).unwrap_or_default() > grace {
                let reason = format!(
                    "{undone}, later than MISSED_SCHEDULE_GRACE ({grace:?}) after {}",
                    sch.at
                );
                self.end_schedule(i, Outcome::Missed { reason });
            } else {
                let id = sch.id;
                self.s.schedules[i].outcome = Outcome::Pending;
                self.emit(Event::ScheduleHeld {
                    id,
                    reason: format!("{undone}: it fires again once the build is ready, within MISSED_SCHEDULE_GRACE ({grace:?})"),
                });
            }
        }
    }
}
