//! The canary phase (`CANARY_STEPS`): after the shadow verdict says promote, a growing share of
//! users is served by testing, each step judged on real answers, rolled back at the first
//! regression, promoted after the last step.

use super::Decision;
use crate::events::Event;
use crate::history::SwitchWhy;
use crate::score::canary::CanaryEvaluation;
use crate::score::ScorerControl;
use crate::supervisor::state::{AfterStop, CanaryStep, HistoryShare, Slot};

/// A step that has not gathered enough evidence after this many windows holds.
const HOLD_AFTER_WINDOWS: u32 = 3;

/// "20 %" for a share in basis points.
pub(crate) fn share_text(weight: u32) -> String {
    let pct = f64::from(weight) / 100.0;
    if weight.is_multiple_of(100) {
        format!("{pct:.0} %")
    } else {
        format!("{pct} %")
    }
}

impl Decision<'_> {
    /// Begin step `step` (0-based): its share of users goes to testing from now on.
    pub(super) fn start_canary(&mut self, step: usize) {
        let (Some(testing), Some(&weight)) = (&self.s.testing, self.s.canary_steps.get(step))
        else {
            return;
        };
        let version = testing.version().clone();
        self.s.canary = Some(CanaryStep {
            step,
            since: self.now,
            since_wall: self.wall,
            held: false,
            answers: (0, 0),
            server_errors: (0, 0),
            users: 0,
            regression: None,
            passed: false,
            waiting: None,
            withdrawn: false,
        });
        self.out
            .push(crate::supervisor::Action::Score(ScorerControl::Canary(
                true,
            )));
        self.emit(Event::CanaryStep {
            version: version.clone(),
            step: step + 1,
            steps: self.s.canary_steps.len(),
            share: share_text(weight),
        });
        self.publish_routes();
        self.record_share(version, weight);
        self.persist();
    }

    /// Have the history say that `version` serves `weight` (basis points) of users from now on;
    /// 0 once they are all back on running.
    /// Nothing is recorded when the history says so already (a step resumed after a restart).
    pub(super) fn record_share(&mut self, version: semver::Version, weight: u32) {
        let shared = (weight > 0).then(|| (version.clone(), weight));
        if self.s.shared == shared {
            return;
        }
        if let Some(running) = self.running_version().cloned() {
            let percent = f64::from(weight) / 100.0;
            let share = crate::history::Share { version, percent };
            self.out
                .push(crate::supervisor::Action::RecordShare { running, share });
            self.s.shared = shared;
        }
    }

    /// After a switch line, which ends any share in the history: a canary step under way when
    /// another version starts to serve (a rollback mid-step) ends too, its users back on the
    /// version now serving. The build is scored afresh against that version, and its steps begin
    /// again once it passes: a step carried on froze (its scorecard begins afresh), the build
    /// kept its share, and what it answered those users was judged no more.
    pub(super) fn share_after_switch(&mut self) {
        self.s.shared = None;
        if self.s.canary_out.is_none() && self.s.canary.take().is_some() {
            self.publish_routes();
            self.persist();
        }
    }

    /// At start, once the parts are resumed: no user is on a canary until its build is ready
    /// again, so a share the history says is in force is ended now (0 %), and the journaled
    /// step is recorded when it resumes and users are routed to it. An unreadable history is
    /// left alone (nothing to end that is known), and so is the history while taking over from
    /// an upgrade (the old understudy still serves the share).
    pub(super) fn resume_share(&mut self, history: HistoryShare) {
        if history == HistoryShare::Unknown {
            self.s.shared = None;
            return;
        }
        // Taking over from an upgrade, the old understudy still routes users to the canary: the
        // share stays in force, and the step resumed here records nothing new.
        if self.s.taking_over {
            return;
        }
        // `shared` holds the history's share since the start of the resume, unless a switch
        // the history missed was recorded since and ended it.
        if let Some((version, _)) = self.s.shared.clone() {
            self.record_share(version, 0);
        }
    }

    /// The step journaled before a restart that resumes once its build is ready: the build and
    /// its share.
    fn resumable_step(&self) -> Option<(semver::Version, u32)> {
        let j = self.s.canary_resume.as_ref()?;
        let weight = self.s.canary_steps.get(j.step).copied()?;
        let is = |v: Option<&semver::Version>| v == Some(&j.version);
        let waits = is(self.s.testing.as_ref().map(|t| t.version()))
            || is(self.s.pending.as_ref().map(|p| &p.version));
        waits.then(|| (j.version.clone(), weight))
    }

    /// After every input: a share the history says is in force that no step keeps any more
    /// (its build gone before its journaled step resumed, say) is ended (0 %).
    pub(super) fn end_stale_share(&mut self) {
        let Some((version, _)) = self.s.shared.clone() else {
            return;
        };
        let on = |slot: Option<&Slot>| slot.is_some_and(|s| *s.version() == version);
        let kept = (self.s.canary.is_some() && on(self.s.testing.as_ref()))
            || on(self.s.canary_out.as_ref().map(|(s, _)| s))
            || self.resumable_step().is_some_and(|(v, _)| v == version);
        if !kept {
            self.record_share(version, 0);
        }
    }

    /// A canary step's answers judged: roll back at a regression, move on after a window with
    /// enough evidence, hold (and say so) after three windows without.
    pub(super) fn canary_scored(&mut self, ev: Option<CanaryEvaluation>) {
        let (Some(ev), Some(c)) = (ev, self.s.canary.as_mut()) else {
            return;
        };
        if c.withdrawn {
            return; // held at 0 %, its figures as they were: they say why
        }
        c.answers = (ev.testing_answers, ev.running_answers);
        c.server_errors = ev.server_errors;
        c.users = ev.users;
        c.waiting = ev.waiting.clone();
        let (step, since, held) = (c.step, c.since, c.held);
        let weight = self.s.canary_steps.get(step).copied().unwrap_or(0);
        if let Some(r) = ev.regression {
            let reason = format!(
                "canary at {}: {r}; {} answers to about {} users came from it",
                share_text(weight),
                ev.testing_answers,
                ev.users
            );
            self.reject_testing(vec![reason]);
            return;
        }
        let elapsed = self.now.saturating_duration_since(since);
        let window = self.s.canary_window;
        if elapsed >= window && ev.enough {
            if step + 1 < self.s.canary_steps.len() {
                self.start_canary(step + 1);
                return;
            }
            if let Some(c) = self.s.canary.as_mut() {
                c.passed = true; // a due schedule fires now (run after every input)
            }
            if !self.automatic_promotion_held() {
                // Held (PRE_PROMOTE refused it, or a schedule names it), the last step keeps its
                // share until the schedule fires or an operator promotes or aborts.
                self.begin_promotion(SwitchWhy::Canary);
            }
        } else if elapsed >= window * HOLD_AFTER_WINDOWS && !held {
            if ev.all_on_testing {
                return self.withdraw_step(weight, ev.testing_answers);
            }
            if let Some(c) = self.s.canary.as_mut() {
                c.held = true;
            }
            let version = self.s.testing.as_ref().map(|t| t.version().clone());
            if let Some(version) = version {
                self.emit(Event::CanaryHeld {
                    version,
                    step: step + 1,
                    why: format!(
                        "too little evidence at {} after {:?}: {}; it holds until promote or abort",
                        share_text(weight),
                        elapsed,
                        ev.waiting.unwrap_or_else(|| format!(
                            "{} answers from testing",
                            ev.testing_answers
                        ))
                    ),
                });
            }
        }
    }

    /// Every answer of the step came from testing, its windows over: its users are one place,
    /// all on its side (behind a front proxy with `CANARY_STICKY=ip`), so a "20 %" step was
    /// every user's. They go back to running (a regression found meanwhile rejected the build),
    /// and the step holds, saying why, until promote or abort.
    fn withdraw_step(&mut self, weight: u32, answers: u64) {
        let Some(c) = self.s.canary.as_mut().filter(|c| !c.withdrawn) else {
            return;
        };
        (c.withdrawn, c.held) = (true, true);
        let (step, version) = (c.step, self.s.testing.as_ref().map(|t| t.version().clone()));
        let Some(version) = version else {
            return;
        };
        self.record_share(version.clone(), 0);
        self.publish_routes();
        self.emit(Event::CanaryHeld {
            version,
            step: step + 1,
            why: format!(
                "all {answers} answers of the step at {} came from testing: its users are one place (every user has one address behind a front proxy or TLS terminator), so it served every user, not a share; they are back on running, and it holds until promote or abort; set CANARY_STICKY=header:X-Real-IP (or cookie:NAME)",
                share_text(weight)
            ),
        });
    }

    /// Testing is ready: if it was in a canary step before a restart, that step begins again
    /// (a user's place is a hash of its key, so the same users are on each side).
    pub(super) fn resume_canary(&mut self) {
        let Some(j) = self.s.canary_resume.take() else {
            return;
        };
        let same = self
            .s
            .testing
            .as_ref()
            .is_some_and(|t| *t.version() == j.version);
        if same && j.step < self.s.canary_steps.len() {
            self.start_canary(j.step);
        }
    }

    /// The build that served a canary share failed while its promotion starts: its users go
    /// back to running at once, and the failure counts against the build as a crash in a canary
    /// step does: the promotion fails, and the build is rejected when its instances are stopped.
    pub(super) fn canary_out_failed(&mut self, why: String) {
        let Some((canary, weight)) = self.s.canary_out.take() else {
            return;
        };
        self.publish_routes();
        self.record_share(canary.version().clone(), 0);
        let reason = format!(
            "canary at {}: the build serving it {why}, while its promotion started",
            share_text(weight)
        );
        self.retire(canary, false, AfterStop::Reject(vec![reason.clone()]));
        if self.s.next.is_some() {
            self.abort_promotion(vec![reason]);
        }
    }

    /// The share of users testing serves now (basis points; 0 outside a canary step).
    pub(super) fn canary_weight(&self) -> u32 {
        if let Some((_, weight)) = &self.s.canary_out {
            return *weight;
        }
        let ready = self.s.testing.as_ref().is_some_and(|t| t.is_ready());
        match &self.s.canary {
            Some(c) if ready && !c.withdrawn => {
                self.s.canary_steps.get(c.step).copied().unwrap_or(0)
            }
            _ => 0,
        }
    }
}
