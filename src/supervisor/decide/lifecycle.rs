//! An instance's life as the supervisor sees it: started, ready and served, failed (restarted
//! with backoff, replaced by a spare, or turned away), retired, and stopped.

use crate::proxy::Hold;
use std::time::Duration;

use super::{
    Action, Decision, Launched, Routing, SlotKey, StartFailure, MAX_RUNNING_RESTARTS,
    RESTART_BACKOFF_BASE, RESTART_BACKOFF_CAP, RESTART_STABLE,
};
use crate::artifact::Installed;
use crate::events::Event;
use crate::history::SwitchWhy;
use crate::instance::{InstanceEvent, InstanceEventKind, InstanceId};
use crate::layout::Role;
use crate::score::ScorerControl;
use crate::supervisor::state::{AfterStop, Phase, Restart, Retiring, Slot, TxnStep};

impl Decision<'_> {
    pub(super) fn started(&mut self, id: InstanceId, result: Result<Launched, StartFailure>) {
        let Some(part) = self.part_of(id) else {
            self.started_after_retire(id, result);
            return;
        };
        let slot = self.slot_mut(part).expect("part_of found it");
        let Phase::Starting { port } = slot.phase else {
            return;
        };
        match result {
            Ok(child) => {
                let event = Event::Started {
                    role: slot.role,
                    version: slot.version().clone(),
                    number: child.number,
                    port,
                };
                slot.phase = Phase::Up { port, child };
                self.emit(event);
                let (early, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.s.early)
                    .into_iter()
                    .partition(|e| e.id == id);
                self.s.early = rest;
                for e in early {
                    self.instance(e);
                }
            }
            Err(StartFailure::PortBusy(p)) => {
                self.s.early.retain(|e| e.id != id);
                let slot = self.slot_mut(part).expect("part_of found it");
                slot.phase = Phase::NeedsPort;
                self.s.taken.remove(&p);
                self.s.busy.insert(p);
            }
            Err(StartFailure::Failed(reason)) => {
                self.s.early.retain(|e| e.id != id);
                let slot = self.slot_mut(part).expect("part_of found it");
                slot.phase = Phase::NeedsPort;
                self.s.taken.remove(&port);
                self.failed(part, format!("could not be started: {reason}"));
            }
        }
    }

    /// A start that finished after its instance was retired: stop what it started.
    pub(super) fn started_after_retire(
        &mut self,
        id: InstanceId,
        result: Result<Launched, StartFailure>,
    ) {
        let Some(r) = self.s.retiring.get_mut(&id) else {
            return;
        };
        if !r.awaiting_start {
            return;
        }
        r.awaiting_start = false;
        match result {
            Ok(child) => {
                r.number = Some(child.number);
                self.out.push(Action::Retire { id, drain: false });
            }
            Err(_) => self.stopped(id),
        }
    }

    pub(super) fn instance(&mut self, e: InstanceEvent) {
        let Some(part) = self.part_of(e.id) else {
            return; // a retired instance: its stop is already under way
        };
        let slot = self.slot_mut(part).expect("part_of found it");
        if matches!(slot.phase, Phase::Starting { .. }) {
            // The child's owner reported before its start completion arrived (a fast child):
            // keep the news until the start is known, or readiness would be lost.
            self.s.early.push(e);
            return;
        }
        match e.kind {
            InstanceEventKind::Ready => self.ready(part),
            InstanceEventKind::Heartbeat => {
                let now = self.now;
                let slot = self.slot_mut(part).expect("part_of found it");
                slot.last_heartbeat = Some(now);
            }
            InstanceEventKind::Unresponsive { misses, reason } => {
                let slot = self.slot_mut(part).expect("part_of found it");
                let event = Event::HeartbeatLost {
                    role: slot.role,
                    version: slot.version().clone(),
                    misses,
                    reason: reason.clone(),
                };
                self.emit(event);
                let why =
                    format!("stopped answering: {misses} heartbeats missed in a row ({reason})");
                match part {
                    SlotKey::Running => self.running_unresponsive(why),
                    _ => self.failed(part, why),
                }
            }
            InstanceEventKind::NotReady { reason } => {
                self.failed(part, format!("never became ready: {reason}"))
            }
            InstanceEventKind::Exited {
                status,
                stderr_tail,
                stdout_tail,
            } => {
                let slot = self.slot_mut(part).expect("part_of found it");
                let event = Event::Exited {
                    role: slot.role,
                    version: slot.version().clone(),
                    status: status.clone(),
                };
                self.emit(event);
                if !self.port_taken_before_ready(part, [&stderr_tail, &stdout_tail]) {
                    self.failed(part, exit_reason(&status, &stderr_tail, &stdout_tail));
                }
            }
        }
    }

    /// An instance that exited before it was ready saying its port was taken, by a client's
    /// ephemeral port or another program between understudy's pick and the app's bind (a JVM
    /// binds seconds after it starts): the machine's fault, not the build's, so it is started
    /// again on another port, up to [`MAX_PORT_RETRIES`] times. Whether it was.
    fn port_taken_before_ready(&mut self, part: SlotKey, tails: [&str; 2]) -> bool {
        if !tails.iter().any(|t| says_port_taken(t)) {
            return false;
        }
        self.s.last_id += 1;
        let fresh = InstanceId(self.s.last_id);
        let Some(slot) = self.slot_mut(part) else {
            return false;
        };
        let Phase::Up { port, .. } = slot.phase else {
            return false;
        };
        if slot.port_retries >= MAX_PORT_RETRIES {
            return false;
        }
        let old = slot.clone();
        (slot.id, slot.phase, slot.port_retries) = (fresh, Phase::NeedsPort, slot.port_retries + 1);
        let (role, version) = (slot.role, slot.version().clone());
        self.s.busy.insert(port);
        self.retire(old, false, AfterStop::Keep);
        self.emit(Event::PortTaken {
            role,
            version,
            port,
        });
        true
    }

    pub(super) fn ready(&mut self, part: SlotKey) {
        let now = self.now;
        let slot = self.slot_mut(part).expect("part_of found it");
        let Phase::Up { port, child } = slot.phase.clone() else {
            return;
        };
        slot.phase = Phase::Ready {
            port,
            child: child.clone(),
            since: now,
        };
        slot.proven |= slot.role == Role::Running;
        match part {
            SlotKey::Spare => {
                let old = self.swap_in_spare();
                self.running_ready(child);
                // Users are routed to the fresh one first; then the old one drains and stops: one
                // that missed its heartbeats for load may still finish what it holds (a frozen
                // one is continued with its SIGTERM, so it stops within the drain's grace).
                if let Some(old) = old {
                    self.retire(old, true, AfterStop::Keep);
                }
            }
            SlotKey::Running => self.running_ready(child),
            SlotKey::Testing => {
                self.serve(SlotKey::Testing);
                self.watch_testing(child);
                self.resume_canary();
            }
            SlotKey::Secondary => {
                self.serve(SlotKey::Secondary);
                // It gets exactly testing's copies: testing's resources are compared with its.
                if self.s.testing.as_ref().is_some_and(Slot::is_ready) {
                    let secondary = crate::score::SecondaryWatch {
                        pid: child.pid,
                        dir: child.dir.clone(),
                    };
                    let control = ScorerControl::Secondary(Some(secondary));
                    self.out.push(Action::Score(control));
                }
            }
            SlotKey::Next => {
                // Journal "ready" on its own, before the switch is even decided.
                if let Some(t) = self.s.txn.as_mut() {
                    t.step = TxnStep::Ready;
                }
                self.persist();
                self.finish_promotion()
            }
            SlotKey::CanaryOut => {} // ready before it left testing
        }
    }

    /// Score testing (ready, on `child`) from now on, with a fresh scorecard, against running and
    /// the secondary as they are (a secondary of another version than running's joins later).
    pub(super) fn watch_testing(&mut self, child: Launched) {
        let running = self.s.running.as_ref();
        let serving = running.map(|r| r.version().clone());
        let running = running.and_then(|r| r.phase.child());
        let running_dir = running.map(|c| c.dir.clone()).unwrap_or_default();
        let running_pid = running.map(|c| c.pid);
        let testing = self.s.testing.as_ref().expect("watching testing");
        let noise = self.s.noise_cancel && self.s.secondary_off != Some(testing.id);
        let secondary = self
            .s
            .secondary
            .as_ref()
            .filter(|s| s.is_ready() && Some(s.version()) == serving.as_ref())
            .and_then(|s| s.phase.child())
            .map(|c| crate::score::SecondaryWatch {
                pid: c.pid,
                dir: c.dir.clone(),
            });
        self.out
            .push(Action::Score(ScorerControl::Watch(crate::score::Watch {
                testing: testing.id,
                testing_dir: child.dir,
                testing_pid: child.pid,
                running_dir,
                running_pid,
                noise,
                secondary,
            })));
    }

    /// Running is ready (first start, restart or a spare that took over): serve it, keep testing
    /// scored against it, finish a transaction resumed at start, and test what waits.
    pub(super) fn running_ready(&mut self, child: Launched) {
        self.s.restart = None;
        self.serve(SlotKey::Running);
        if self.s.testing.as_ref().is_some_and(Slot::is_ready) {
            // A restarted running: testing is still scored against it.
            self.out.push(Action::Score(ScorerControl::Running {
                running_dir: child.dir.clone(),
                running_pid: Some(child.pid),
            }));
        }
        if std::mem::take(&mut self.s.txn_post_due) {
            let txn = self.s.txn.as_ref();
            let from = txn.and_then(|t| Some((t.from.clone()?, t.reject_from.clone())));
            // The POST_* hook first: the old version is filed once it has run (at once without one).
            self.after_switch();
            match from {
                // The guard's rollback, completed at start: the version it left is rejected.
                Some((version, Some(reasons))) if self.s.txn.is_none() => {
                    self.file_away(Action::Reject { version, reasons }, 0)
                }
                Some((from, _)) => self.archive_if_unused(from),
                None => {}
            }
        }
        self.start_pending();
    }

    /// Running stopped answering its heartbeats while its process lives: start a fresh instance
    /// of the same version beside it and switch once that one is ready, as a promotion does, so
    /// users are served all along. Stop-then-start only when that cannot be done (a promotion
    /// under way, a spare already starting, a running never proven or still guarded) or when it
    /// is not its first failure in a row: a hang counts as a crash does (`failures_with`), with
    /// the same backoff and `crash_looping`, or a build that hangs soon after each start would
    /// be started beside itself every few seconds for ever.
    pub(super) fn running_unresponsive(&mut self, why: String) {
        let guarded = |r: &Slot| {
            self.s
                .guard
                .as_ref()
                .is_some_and(|g| g.version == *r.version())
                || self.rolled_back_from(r.version())
        };
        // Within ROLLBACK_WINDOW a failing new running is rolled back instead (running_failed),
        // and one the guard already rolls back from is not healed beside the rollback.
        let first = |r: &Slot| self.failures_with(r, true) <= 1;
        let can_heal = self.s.spare.is_none()
            && self.s.next.is_none()
            && self
                .s
                .running
                .as_ref()
                .is_some_and(|r| r.proven && r.is_ready() && !guarded(r) && first(r));
        if !can_heal {
            let failures = self.s.running.as_ref().map(|r| self.failures_with(r, true));
            return self.running_down(why, failures.unwrap_or(self.s.failures + 1));
        }
        let installed = self.s.running.as_ref().expect("checked").installed.clone();
        self.s.failures = 1;
        self.emit(Event::RestartScheduled {
            version: installed.version.clone(),
            attempt: self.s.failures,
            delay_ms: 0,
            reason: format!("{why}; a fresh instance starts beside it and takes over once ready"),
        });
        let slot = self.new_slot(Role::Running, installed, true);
        self.s.spare = Some(slot);
    }

    /// Whether the guard tripped on `version` and its rollback has not switched yet: from the
    /// trip to the switch, however far the restore and the start have come.
    fn rolled_back_from(&self, version: &semver::Version) -> bool {
        self.s
            .tripped_guard
            .as_ref()
            .is_some_and(|g| g.version == *version)
    }

    /// The spare is ready: it becomes running; the unresponsive one is returned, to be stopped.
    pub(super) fn swap_in_spare(&mut self) -> Option<Slot> {
        // The hang it replaces stays counted: only a good start of the spare resets the count.
        let spare = self.s.spare.take().expect("called for the spare");
        self.s.running.replace(spare)
    }

    /// The spare failed to start or get ready: running, still unresponsive, is restarted the
    /// plain way (stop, then start, with backoff).
    pub(super) fn spare_failed(&mut self, why: String) {
        let Some(spare) = self.s.spare.take() else {
            return;
        };
        self.retire(spare, false, AfterStop::Keep);
        if self.s.running.is_some() {
            // The hang was counted when the spare started: this is one more failure in a row.
            let why = format!(
                "stopped answering its heartbeats, and the fresh instance started beside it {why}"
            );
            self.running_down(why, self.s.failures + 1);
        }
    }

    /// Put a ready instance into service: route to it first, then point its symlink and announce
    /// it, so whoever sees the symlink can rely on the route.
    pub(super) fn serve(&mut self, part: SlotKey) {
        self.publish_routes();
        let slot = self.slot_mut(part).expect("serving a slot");
        let Phase::Ready { port, child, .. } = &slot.phase else {
            return;
        };
        let (role, dir) = (slot.role, child.dir.clone());
        let version = slot.version().clone();
        let event = Event::Ready {
            role,
            version: version.clone(),
            number: child.number,
            port: *port,
        };
        self.out.push(Action::Point { role, dir });
        self.emit(event);
        if role == Role::Running && self.s.serving.as_ref() != Some(&version) {
            let from = self.s.serving.replace(version.clone());
            let why = self.s.switch_why.take().unwrap_or(if from.is_none() {
                SwitchWhy::First
            } else {
                SwitchWhy::Automatic
            });
            if from.is_some() {
                (self.s.previous, self.s.rolled_back_from) =
                    crate::history::after_switch(from.clone(), why);
            }
            self.out.push(Action::Record {
                from: from.clone(),
                to: version.clone(),
                why,
            });
            // Every switch the history records is announced, the first build's and a crash
            // loop's replacement included (webhooks, SSE, `understudy_promotions_total`).
            self.emit(Event::Promoted {
                from,
                to: version,
                why,
            });
            self.share_after_switch();
        }
    }

    pub(super) fn publish_routes(&mut self) {
        let routing = Routing {
            running: self.s.running.as_ref().and_then(Slot::target),
            testing: self
                .s
                .testing
                .as_ref()
                .or(self.s.canary_out.as_ref().map(|(s, _)| s))
                .and_then(Slot::target),
            secondary: self.s.secondary.as_ref().and_then(Slot::target),
            restarting: match &self.s.running {
                Some(r) if !r.is_ready() => Some(r.version().clone()),
                None => self.coming_back(),
                _ => None,
            },
            restart_at: self
                .s
                .restart
                .as_ref()
                .filter(|r| self.s.running.is_none() && !r.held && r.at > self.now)
                .map(|r| r.at),
            hold: self.hold(),
            canary: self.canary_weight(),
        };
        self.out.push(Action::Route(routing));
    }

    /// Whether users' requests wait while nothing serves: for the guard's rollback, or for a
    /// running started again at once after a crash (a crash loop, restarted after a backoff,
    /// is told to retry at once).
    fn hold(&self) -> Option<Hold> {
        if self.s.holding() {
            return Some(Hold::Rollback);
        }
        self.s.restart_held().then_some(Hold::Restart)
    }

    /// The version users are told is coming back while nothing serves: the one restarting, or,
    /// held for the guard's rollback, the version that rollback brings back.
    fn coming_back(&self) -> Option<semver::Version> {
        let r = self.s.restart.as_ref()?;
        let back = self.s.next.as_ref().map(Slot::version);
        let back = back.or(self.s.restoring.as_ref().map(|(v, _)| v));
        Some(
            back.filter(|_| r.held)
                .unwrap_or(&r.installed.version)
                .clone(),
        )
    }

    /// An instance failed to start, to get ready, or to stay up.
    pub(super) fn failed(&mut self, part: SlotKey, why: String) {
        match part {
            SlotKey::Testing => self.reject_testing(vec![format!("testing {why}")]),
            SlotKey::Next => self.abort_promotion(vec![format!(
                "the new running instance of the promoted version {why}"
            )]),
            SlotKey::Running => self.running_failed(why),
            SlotKey::Spare => self.spare_failed(why),
            SlotKey::Secondary => self.secondary_failed(why),
            SlotKey::CanaryOut => self.canary_out_failed(why),
        }
    }

    pub(super) fn running_failed(&mut self, why: String) {
        let failures = self
            .s
            .running
            .as_ref()
            .map(|r| self.failures_with(r, false));
        self.running_down(why, failures.unwrap_or(self.s.failures + 1))
    }

    /// Failures in a row once `running` fails: one more, or a fresh count of 1 after a good
    /// start, `RESTART_STABLE` up and answering. A hang (`hung`) answered only until its last
    /// heartbeat, not until its misses were noticed (`HEARTBEAT_MISSES` × `HEARTBEAT_EVERY`
    /// later), so a build that hangs soon after each start never counts as a good start.
    fn failures_with(&self, running: &Slot, hung: bool) -> u32 {
        let Phase::Ready { since, .. } = running.phase else {
            return self.s.failures + 1;
        };
        let until = if hung {
            running
                .last_heartbeat
                .filter(|h| *h >= since)
                .unwrap_or(since)
        } else {
            self.now
        };
        if until.saturating_duration_since(since) >= RESTART_STABLE {
            1
        } else {
            self.s.failures + 1
        }
    }

    /// Running failed, its `failures` in a row counting this one: a spare on its way takes
    /// over, a first build is turned away, else it is restarted with the backoff they call for.
    fn running_down(&mut self, why: String, failures: u32) {
        if let Some(spare) = self.s.spare.take() {
            // A fresh instance is already on its way: it takes over as soon as it is ready.
            let old = self.s.running.replace(spare).expect("called for running");
            self.retire(old, false, AfterStop::Keep);
            self.publish_routes();
            return;
        }
        let slot = self.s.running.take().expect("called for running");
        let version = slot.version().clone();
        let installed = slot.installed.clone();
        if !slot.proven {
            // A first build that never worked is turned away, like a failing testing build.
            self.publish_routes();
            self.out.push(Action::Unpoint(Role::Running));
            self.retire(
                slot,
                false,
                AfterStop::Reject(vec![format!("running {why}")]),
            );
            if let Some(next) = self.s.pending.take() {
                let slot = self.new_slot(Role::Running, next, false);
                self.s.running = Some(slot);
                self.publish_routes();
            }
            return;
        }
        self.s.failures = failures;
        self.retire(slot, false, AfterStop::Keep);
        let held = Restart {
            installed: installed.clone(),
            at: self.now,
            held: true,
            crashed: Some(self.wall),
        };
        if self.rolled_back_from(&version) {
            // The guard already rolls back from it (on its 5xx rate): not restarted either, and
            // its rejection says it crashed too: kept with the trip until the restore reports,
            // with the switch's journal after.
            let then = format!("then it failed: {why}");
            match (self.s.tripped.as_mut(), self.s.txn.as_mut()) {
                (Some((v, reasons)), _) if *v == version => reasons.push(then),
                (_, Some(t)) if t.why == SwitchWhy::Rollback => {
                    t.reject_from.get_or_insert_with(Vec::new).push(then)
                }
                _ => {}
            }
            self.s.restart = Some(held);
            self.publish_routes();
            return;
        }
        if self.s.guard.as_ref().is_some_and(|g| g.version == version) {
            // Not restarted: the guard brings back the version it replaced, and users wait for
            // that one, not for a build being thrown out (unless the rollback cannot begin).
            self.s.restart = Some(held);
            // Whole, with the tail it quotes: the guard's reason is what a rejection keeps.
            if self.guard_rollback(format!("failed within ROLLBACK_WINDOW: {why}")) {
                self.publish_routes();
                return;
            }
            // It could not begin: the restart says so, as status does.
            let note = self.s.guard_failed.clone();
            self.schedule_restart(installed, note.unwrap_or(why));
            return;
        }
        self.schedule_restart(installed, why);
    }

    /// Running is down: start it again, at once or after the backoff its failures call for.
    fn schedule_restart(&mut self, installed: Installed, why: String) {
        let version = installed.version.clone();
        let delay = restart_delay(self.s.failures);
        if self.s.failures > MAX_RUNNING_RESTARTS {
            self.emit(Event::CrashLooping {
                version: version.clone(),
                failures: self.s.failures,
                retry_every_ms: RESTART_BACKOFF_CAP.as_millis() as u64,
            });
        }
        self.emit(Event::RestartScheduled {
            version,
            attempt: self.s.failures,
            delay_ms: delay.as_millis() as u64,
            reason: why,
        });
        self.s.restart = Some(Restart {
            installed,
            at: self.now + delay,
            held: false,
            crashed: None,
        });
        self.restart_if_due();
        self.publish_routes();
    }

    /// The guard's rollback from `from` to `to` could not be carried out (`failure`): its watch
    /// is over, and `from` is all there is to serve, so one that crashed (held meanwhile) is
    /// restarted after all. Status says so until the next switch, and so does the restart.
    pub(super) fn guard_gave_up(
        &mut self,
        from: &semver::Version,
        to: &semver::Version,
        failure: &str,
    ) {
        self.s.tripped = None; // no rollback: the version the guard left is filed as it was
        self.s.tripped_guard = None;
        let note = self.guard_note(from, to, failure);
        self.s.guard_failed = Some(note.clone());
        if let Some(r) = self.s.restart.take_if(|r| r.held) {
            self.schedule_restart(r.installed, note);
        }
    }

    /// What status and the log say when the guard's rollback from `from` to `to` fails
    /// (`failure`), and what follows.
    pub(super) fn guard_note(
        &self,
        from: &semver::Version,
        to: &semver::Version,
        failure: &str,
    ) -> String {
        let after = self.after_guard(from);
        format!("the guard's rollback from {from} to {to} {failure}; {after}")
    }

    /// What follows when the guard cannot roll back from `from`: the watch is over, and how
    /// `from` serves on (it may have crashed since its promotion, which a plain "restarting"
    /// would hide).
    pub(super) fn after_guard(&self, from: &semver::Version) -> String {
        let held = self
            .s
            .restart
            .as_ref()
            .filter(|r| r.held && r.installed.version == *from);
        let serves = match (held, held.and_then(|r| r.crashed)) {
            (_, Some(at)) => format!(
                "{from}, which crashed at {} since its promotion, is restarted",
                crate::supervisor::control::rfc3339(at)
            ),
            (Some(_), None) => format!("{from}, held for the rollback, is started again"),
            (None, _) => format!("{from} serves on"),
        };
        format!("its watch of {from} is over, and {serves}")
    }

    pub(super) fn restart_if_due(&mut self) {
        let due = self
            .s
            .restart
            .as_ref()
            .is_some_and(|r| !r.held && self.now >= r.at);
        if !due || self.s.running.is_some() {
            return;
        }
        let r = self.s.restart.take().expect("checked above");
        let slot = self.new_slot(Role::Running, r.installed, true);
        self.s.running = Some(slot);
        // Users are told it is starting, no longer when it will (`restart_at`).
        self.publish_routes();
    }

    /// Take an instance out of its part: stop it (draining first if `drain`) and file its
    /// version away afterwards as `after` says.
    pub(super) fn retire(&mut self, slot: Slot, drain: bool, after: AfterStop) {
        self.s.early.retain(|e| e.id != slot.id);
        let number = slot.phase.child().map(|c| c.number);
        let retiring = Retiring {
            version: slot.version().clone(),
            number,
            port: slot.phase.port(),
            after,
            awaiting_start: matches!(slot.phase, Phase::Starting { .. }),
        };
        let stop_now = matches!(slot.phase, Phase::Up { .. } | Phase::Ready { .. });
        let no_child = matches!(slot.phase, Phase::NeedsPort | Phase::PreStart { .. });
        self.s.retiring.insert(slot.id, retiring);
        if stop_now {
            self.out.push(Action::Retire { id: slot.id, drain });
        } else if no_child {
            self.stopped(slot.id);
        }
    }

    /// A retired instance is gone: free its port and file its version away.
    pub(super) fn stopped(&mut self, id: InstanceId) {
        if self.s.txn_old == Some(id) {
            self.s.txn_old = None;
            self.after_switch();
        }
        let Some(r) = self.s.retiring.remove(&id) else {
            return;
        };
        if let Some(port) = r.port {
            self.s.taken.remove(&port);
        }
        if let Some(number) = r.number {
            self.emit(Event::Stopped {
                version: r.version.clone(),
                number,
            });
        }
        match r.after {
            AfterStop::Keep => {}
            AfterStop::ArchiveIfUnused => self.archive_if_unused(r.version),
            AfterStop::Reject(reasons) => {
                let reject = Action::Reject {
                    version: r.version,
                    reasons,
                };
                self.file_away(reject, 0)
            }
        }
    }
}

/// How long to wait before restarting running after `failures` failures in a row: at once the
/// first time, then 1 s, 2 s, 4 s … up to the cap, and at the cap once it is crash-looping
/// (past [`MAX_RUNNING_RESTARTS`], as `crash_looping` says).
fn restart_delay(failures: u32) -> Duration {
    if failures <= 1 {
        return Duration::ZERO;
    }
    if failures > MAX_RUNNING_RESTARTS {
        return RESTART_BACKOFF_CAP;
    }
    let doublings = (failures - 2).min(16);
    (RESTART_BACKOFF_BASE * 2u32.pow(doublings)).min(RESTART_BACKOFF_CAP)
}

/// Why an instance that exited on its own failed, quoting its last words: stderr's end, or
/// stdout's when stderr is empty (many apps, Java ones above all, log only to stdout).
/// Starts in a row of one slot that may exit for a port taken before its app bound it.
const MAX_PORT_RETRIES: u32 = 3;

/// Whether an app's last words say its port was taken: the text of `EADDRINUSE` as the JVM,
/// Python, Go, Node and C libraries print it.
fn says_port_taken(tail: &str) -> bool {
    let tail = tail.to_ascii_lowercase();
    tail.contains("address already in use") || tail.contains("eaddrinuse")
}

pub(super) fn exit_reason(status: &str, stderr_tail: &str, stdout_tail: &str) -> String {
    use crate::private::quote;
    if !stderr_tail.trim().is_empty() {
        format!(
            "exited ({status}); stderr ends with:\n{}",
            quote(stderr_tail)
        )
    } else if !stdout_tail.trim().is_empty() {
        format!(
            "exited ({status}); stderr is empty, stdout ends with:\n{}",
            quote(stdout_tail)
        )
    } else {
        format!("exited ({status}); stderr and stdout are both empty")
    }
}
