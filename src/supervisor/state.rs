//! What the supervisor knows: the [`State`] that only [`decide()`](super::decide()) changes, the
//! parts instances play in it ([`Slot`], [`Phase`]), what survives a restart ([`Persisted`],
//! [`Txn`]) and what is found on disk at start ([`Resumed`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, SystemTime};

use semver::Version;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::control;
use super::decide::{Action, Launched, Target};
use super::schedule::Schedule;
use crate::artifact::Installed;
use crate::history::SwitchWhy;
use crate::hooks::HookSet;
use crate::instance::{InstanceEvent, InstanceId};
use crate::layout::Role;
use crate::score::Evaluation;
use crate::watcher::Dropped;

mod status;

/// A promotion or a rollback is a transaction: journaled (in the state file) before each step,
/// so that a crash in the middle is resolved at the next start, never left half done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnKind {
    /// Testing (or a scheduled or operator-chosen build) becomes running.
    Promotion,
    /// An earlier version comes back from its archive.
    Rollback,
}

impl TxnKind {
    /// Its name in events and logs, as the state file spells it.
    pub fn name(self) -> &'static str {
        match self {
            TxnKind::Promotion => "promotion",
            TxnKind::Rollback => "rollback",
        }
    }
}

/// How far a transaction got. Before [`TxnStep::Switched`] a crash undoes it (the old version
/// serves); from it on a crash completes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnStep {
    /// `PRE_PROMOTE` is running; nothing has changed yet.
    PrePromote,
    /// The fresh running instance is starting.
    Starting,
    /// It is ready; the switch comes next.
    Ready,
    /// Users are served by the new version; draining the old one and `POST_*` remain.
    Switched,
}

/// The journal entry of a promotion or rollback under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    /// Promotion or rollback.
    pub kind: TxnKind,
    /// The version that takes over.
    pub version: Version,
    /// The version serving before.
    pub from: Option<Version>,
    /// How far it got.
    pub step: TxnStep,
    /// Why it happens, for the history.
    pub why: SwitchWhy,
    /// For the guard's rollback: the reasons the version rolled back from (`from`) is rejected
    /// with once the switch and its `POST_ROLLBACK` are done, rather than archived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_from: Option<Vec<String>>,
}

/// What survives a restart: which versions play which part.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persisted {
    /// The version serving users (or restarting to serve them).
    pub running: Option<Version>,
    /// The version being scored, or waiting to be.
    pub testing: Option<Version>,
    /// An installed build waiting to be tested (behind the one under test, or for running to
    /// be ready): resumed as such after a restart, never lost because `testing` names another.
    #[serde(default)]
    pub pending: Option<Version>,
    /// A version that passed and whose fresh running instance was starting (mid-promotion).
    #[serde(default)]
    pub promoting: Option<Version>,
    /// Scheduled promotions, pending and recently finished: saved before the operator is told.
    #[serde(default)]
    pub schedules: Vec<Schedule>,
    /// The promotion or rollback under way, written before each of its steps.
    #[serde(default)]
    pub txn: Option<Txn>,
    /// The canary step under way: resumed after a restart, with the same users on each side.
    #[serde(default)]
    pub canary: Option<JournaledCanary>,
    /// The promoted version under watch for `ROLLBACK_WINDOW`: resumed after a restart or an
    /// upgrade, so the watch goes on to its deadline and the kept version is filed away then.
    #[serde(default)]
    pub guard: Option<JournaledGuard>,
    /// Version folders on their way out, by version.
    #[serde(default)]
    pub filings: Vec<JournaledFiling>,
    /// The guard's rollback could not be carried out, and what serves instead: said in status
    /// until the next switch, a restart included.
    #[serde(default)]
    pub guard_failed: Option<String>,
    /// The operator paused automatic decisions (`understudy pause`): kept until `resume`, a
    /// restart or an upgrade of understudy included.
    #[serde(default)]
    pub paused: bool,
    /// `PRE_PROMOTE` refused the build under test (its version, why): no automatic path asks it
    /// again, a restart included, until an operator promotes it.
    #[serde(default)]
    pub hook_block: Option<(Version, String)>,
}

/// A version folder on its way out as `state.json` keeps it: filed at the next start if a stop
/// came first (the instance still stopping, or the filing still under way), so a rejected build
/// is never taken for one still to test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournaledFiling {
    /// The version whose folder goes.
    pub version: Version,
    /// Into `rejected/` with these reasons; `None`: into the archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject: Option<Vec<String>>,
}

/// The post-promotion guard as `state.json` keeps it: what a restart needs to watch on until the
/// same deadline against the same baseline (the counts since the switch start again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournaledGuard {
    /// The promoted version under watch.
    pub version: Version,
    /// The version it replaced, kept in its folder to roll back to.
    pub from: Version,
    /// When the watch ends, RFC 3339 (wall-clock time: the monotonic clock does not survive a
    /// restart).
    pub until: String,
    /// 5xx answers in the minute before the switch.
    pub before_errors: u64,
    /// User requests in the minute before the switch.
    pub before_requests: u64,
    /// Set once the guard tripped (why): its rollback was decided, so a restart before the
    /// switch finishes it rather than watching again for a failure that may not repeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tripped: Option<String>,
}

/// A canary step as `state.json` keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JournaledCanary {
    /// The build in its canary phase.
    pub version: Version,
    /// 0-based index into `CANARY_STEPS`.
    pub step: usize,
}

/// What the executor found on disk at start, for [`Input::Resume`](super::Input::Resume).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Resumed {
    /// The running version, installed and startable.
    pub running: Option<Installed>,
    /// The version that was under test.
    pub testing: Option<Installed>,
    /// The version that was being promoted when understudy stopped.
    pub promoting: Option<Installed>,
    /// The version that served before running, from the history: what a rollback brings back.
    pub previous: Option<Version>,
    /// The version running's switch rolled back from, when it was a rollback.
    pub rolled_back_from: Option<Version>,
    /// The version the history's last line says took over: a switch the state file says
    /// happened but the history lacks (a kill between the two writes) is recorded at start.
    pub history_last: Option<Version>,
    /// The canary share the history's last line leaves in force: one the state file does not
    /// account for (a kill between the two writes) is set right at start.
    pub history_share: HistoryShare,
    /// Scheduled promotions from the state file.
    pub schedules: Vec<Schedule>,
    /// `PROMOTE_AT`: a promotion of whatever is under test at that instant.
    pub promote_at: Option<SystemTime>,
    /// `MISSED_SCHEDULE_GRACE`: how late a schedule may still fire.
    pub schedule_grace: Duration,
    /// The transaction that was under way, to be undone or completed.
    pub txn: Option<Txn>,
    /// Which hooks are configured.
    pub hooks: HookSet,
    /// `ROLLBACK_WINDOW`: how long a promoted version is guarded (zero: not at all).
    pub rollback_window: Duration,
    /// `MAX_5XX_DELTA`: how much worse than before the switch its 5xx rate may be.
    pub max_5xx_delta: f64,
    /// `CONFIDENCE`: how sure the guard must be that the 5xx rate is worse before it rolls back.
    pub confidence: f64,
    /// `UPSTREAM_TIMEOUT`: how long a request held for the guard's rollback waits, for status
    /// (zero: left as it was).
    pub upstream_timeout: Duration,
    /// `NOISE_CANCEL`: run a secondary of running's version while a build is tested.
    pub noise_cancel: bool,
    /// `CANARY_STEPS`: shares of users (basis points) testing serves after the shadow verdict.
    pub canary_steps: Vec<u32>,
    /// `CANARY_STEP_WINDOW`: how long each step is judged.
    pub canary_window: Duration,
    /// The canary step journaled before the restart.
    pub canary: Option<JournaledCanary>,
    /// The post-promotion guard journaled before the restart.
    pub guard: Option<JournaledGuard>,
    /// The installed build that waited to be tested.
    pub pending: Option<Installed>,
    /// Version folders that were on their way out, filed now.
    pub filings: Vec<JournaledFiling>,
    /// Installed builds that `state.json` does not name, found in their version folders: an
    /// install, or the wait for a turn, cut short by a stop. Placed as if just installed, or
    /// filed when the install rule would not take them.
    pub found: Vec<Installed>,
    /// The children an upgrade handed over: each slot of that part and version adopts one.
    pub handed: Vec<HandedPort>,
    /// The guard's rollback that could not be carried out, as status said before the stop.
    pub guard_failed: Option<String>,
    /// Paused by the operator before the stop.
    pub paused: bool,
    /// `PRE_PROMOTE`'s refusal of the build under test before the stop.
    pub hook_block: Option<(Version, String)>,
    /// The newest rejection in `rejected/` (version, when, reasons): status keeps saying why
    /// across a restart, as it did before it.
    pub last_rejected: Option<(Version, SystemTime, Vec<String>)>,
    /// Started by an upgrade that is not done: the old understudy may yet go on with its own
    /// state, so nothing timer-driven is decided here until [`Input::Serving`](super::Input::Serving).
    pub taking_over: bool,
}

/// What the history's last line says of canary shares, read at start.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum HistoryShare {
    /// The history could not be read: taken to say what the state file does, so that nothing
    /// is recorded twice.
    #[default]
    Unknown,
    /// Every user is on running (no share line, or a switch or a 0 % line came last).
    None,
    /// This build serves this share of users (basis points).
    Share(Version, u32),
}

/// A child handed over by the previous understudy, as `decide` needs it: which slot takes it
/// (part and version) and on which port it already listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandedPort {
    /// `running`, `secondary` or `testing`.
    pub part: String,
    /// The version it runs.
    pub version: Version,
    /// Its port.
    pub port: u16,
}

/// The canary step under way.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct CanaryStep {
    /// 0-based index into `CANARY_STEPS`.
    pub(super) step: usize,
    pub(super) since: Instant,
    pub(super) since_wall: SystemTime,
    /// Told that it holds for lack of evidence.
    pub(super) held: bool,
    /// Answers served this step by (testing, running), and of those the 5xx.
    pub(super) answers: (u64, u64),
    pub(super) server_errors: (u64, u64),
    /// Users testing served this step.
    pub(super) users: u64,
    /// The regression the latest evaluation found (kept while paused, when it is not acted on):
    /// a due schedule does not promote over it.
    pub(super) regression: Option<String>,
    /// The last step passed its window with enough evidence: a due schedule may fire.
    pub(super) passed: bool,
    /// Why its evidence is not enough yet (the scorer's words), if it is not.
    pub(super) waiting: Option<String>,
    /// Every answer of the step came from testing (its users are one place on its side): its
    /// share is given back to running, and the step holds until promote or abort.
    pub(super) withdrawn: bool,
}

/// Where an instance is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a free port in `PORT_RANGE`.
    NeedsPort,
    /// Has its port; `PRE_START` runs before it is started.
    PreStart { port: u16 },
    /// Asked to start on this port; no child yet.
    Starting { port: u16 },
    /// The child runs; not ready yet.
    Up { port: u16, child: Launched },
    /// Ready and routed since `since`.
    Ready {
        port: u16,
        child: Launched,
        since: Instant,
    },
}

impl Phase {
    pub(super) fn port(&self) -> Option<u16> {
        match self {
            Phase::NeedsPort => None,
            Phase::PreStart { port }
            | Phase::Starting { port }
            | Phase::Up { port, .. }
            | Phase::Ready { port, .. } => Some(*port),
        }
    }

    pub(super) fn child(&self) -> Option<&Launched> {
        match self {
            Phase::Up { child, .. } | Phase::Ready { child, .. } => Some(child),
            _ => None,
        }
    }
}

/// One instance playing (or about to play) a part.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    /// Identity across inputs; a late input about another id is ignored.
    pub id: InstanceId,
    /// The role it will play once ready.
    pub role: Role,
    /// What it runs.
    pub installed: Installed,
    /// Where it is.
    pub phase: Phase,
    /// The version worked before (resumed, restarted or promoted): a failure restarts it rather
    /// than rejecting it.
    pub proven: bool,
    /// When it last answered a heartbeat (presence), once ready.
    pub last_heartbeat: Option<Instant>,
    /// Starts of this slot that exited before ready because their port was taken meanwhile.
    pub port_retries: u32,
}

impl Slot {
    /// What status says of this slot's instance, its instants on the wall clock `wall` gives.
    fn status(&self, wall: &impl Fn(Instant) -> std::time::SystemTime) -> control::InstanceStatus {
        let child = self.phase.child();
        control::InstanceStatus {
            version: self.version().clone(),
            instance: child.map(|c| c.number),
            port: self.phase.port(),
            pid: child.map(|c| c.pid),
            ready: self.is_ready(),
            since: match self.phase {
                Phase::Ready { since, .. } => Some(control::rfc3339(wall(since))),
                _ => None,
            },
            last_heartbeat: self.last_heartbeat.map(|t| control::rfc3339(wall(t))),
        }
    }

    pub(super) fn version(&self) -> &Version {
        &self.installed.version
    }
    pub(super) fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready { .. })
    }
    pub(super) fn target(&self) -> Option<Target> {
        match &self.phase {
            Phase::Ready { port, .. } => Some(Target {
                id: self.id,
                version: self.version().clone(),
                port: *port,
            }),
            _ => None,
        }
    }
}

/// What happens to a version folder once a retired instance is stopped.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum AfterStop {
    /// The version goes on (a restart): leave the folder.
    Keep,
    /// Zip it into the archive unless another part still uses the version.
    ArchiveIfUnused,
    /// Move it to `rejected/` with these reasons.
    Reject(Vec<String>),
}

/// An instance on its way out: its port stays taken until it is reaped.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Retiring {
    pub(super) version: Version,
    pub(super) number: Option<u32>,
    pub(super) port: Option<u16>,
    pub(super) after: AfterStop,
    /// Its start is still under way: it is stopped as soon as it reports.
    pub(super) awaiting_start: bool,
}

/// A promoted version watched for `ROLLBACK_WINDOW` against the traffic before its switch.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Guard {
    /// The promoted version.
    pub(super) version: Version,
    /// The version it replaced, kept in its folder until the window ends.
    pub(super) from: Version,
    /// When the watch ends.
    pub(super) until: Instant,
    /// The same, as wall-clock time: what `state.json` keeps.
    pub(super) until_wall: SystemTime,
    /// The counters at the switch (the first sample after it, if none came before).
    pub(super) start: Option<(u64, u64)>,
    /// 5xx answers and user requests in the minute before the switch: what it is compared with.
    pub(super) before: (u64, u64),
}

impl Guard {
    /// As `state.json` keeps it.
    pub(super) fn journaled(&self) -> JournaledGuard {
        JournaledGuard {
            version: self.version.clone(),
            from: self.from.clone(),
            until: super::control::rfc3339(self.until_wall),
            before_errors: self.before.0,
            before_requests: self.before.1,
            tripped: None,
        }
    }
}

/// Running is down and will be started again at `at`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Restart {
    pub(super) installed: Installed,
    pub(super) at: Instant,
    /// The guard rolls back from it: it is not started again (users would wait on a build
    /// being thrown out) unless the rollback fails.
    pub(super) held: bool,
    /// When it crashed (wall-clock time); `None` when held at start, not down on its own.
    pub(super) crashed: Option<SystemTime>,
}

/// Everything the supervisor knows; only [`decide()`](super::decide()) changes it.
#[derive(Debug)]
pub struct State {
    pub(super) ports: (u16, u16),
    /// Ports handed to instances that are not yet reaped.
    pub(super) taken: BTreeSet<u16>,
    /// Ports another program was found holding, left alone until `busy_retry`.
    pub(super) busy: BTreeSet<u16>,
    pub(super) busy_retry: Option<Instant>,
    pub(super) last_id: u64,
    pub(super) running: Option<Slot>,
    pub(super) testing: Option<Slot>,
    /// A fresh running instance of the version being promoted, until it is ready.
    pub(super) next: Option<Slot>,
    /// A fresh instance of running's version, started because running stopped answering its
    /// heartbeats while its process lives: it takes over once ready (start, switch, then stop).
    pub(super) spare: Option<Slot>,
    /// Why the state files cannot be written right now (a full disk), while it lasts.
    pub(super) disk_full: Option<String>,
    /// The last collection found the base dir over budget beyond what deleting archives could
    /// fix (said once, by [`Event::OverBudget`](crate::events::Event::OverBudget)).
    pub(super) over_budget: bool,
    /// A collection pass is under way, and whether another was asked for meanwhile: one runs at
    /// a time and at most one waits, so slow passes never pile up on the blocking threads.
    pub(super) collecting: (bool, bool),
    /// A second instance of running's version while a build is tested (`NOISE_CANCEL`).
    pub(super) secondary: Option<Slot>,
    /// Whether to run one.
    pub(super) noise_cancel: bool,
    pub(super) canary_steps: Vec<u32>,
    pub(super) canary_window: Duration,
    /// The canary step under way, if any.
    pub(super) canary: Option<CanaryStep>,
    /// The build that served a canary share, still serving it (the share) while its promotion
    /// starts a fresh instance: drained at the switch.
    pub(super) canary_out: Option<(Slot, u32)>,
    /// The step journaled before a restart, resumed once its build is ready again.
    pub(super) canary_resume: Option<JournaledCanary>,
    /// The canary share the history says is in force (build, basis points): a share is
    /// recorded only when it changes, and one no step keeps in force any more is ended (0 %).
    pub(super) shared: Option<(Version, u32)>,
    /// Children handed over by the previous understudy, not yet claimed by a slot.
    pub(super) handed: Vec<HandedPort>,
    /// Started by an upgrade that is not done: schedules, the guard, collections and retried
    /// filings wait, and commands are refused, until this understudy serves.
    pub(super) taking_over: bool,
    /// The guard journaled before the upgrade, resumed once this understudy serves (kept in
    /// the state file as it was meanwhile).
    pub(super) held_guard: Option<JournaledGuard>,
    /// The testing instance whose secondary failed: noise stays unknown for it.
    pub(super) secondary_off: Option<InstanceId>,
    /// The testing instance whose secondary failed, and how many times: it is started again
    /// until it has failed `MAX_SECONDARY_FAILURES` times.
    pub(super) secondary_failures: Option<(InstanceId, u32)>,
    /// An installed build waiting for running to be ready before it is tested.
    pub(super) pending: Option<Installed>,
    /// The build being installed; later drops wait in `drops`.
    pub(super) installing: Option<Version>,
    /// An operator aborted the build being installed: it is rejected as its install ends.
    pub(super) aborting_install: bool,
    /// Drops waiting for their turn, and whether they were told they wait for an earlier build
    /// of their version to be filed away.
    pub(super) drops: VecDeque<(Dropped, bool)>,
    pub(super) restart: Option<Restart>,
    /// Running failures in a row.
    pub(super) failures: u32,
    /// The promotion or rollback under way.
    pub(super) txn: Option<Txn>,
    /// The old running instance of a switched transaction, until it is stopped.
    pub(super) txn_old: Option<InstanceId>,
    /// A transaction completed at start: its `POST_*` hook runs once running is ready.
    pub(super) txn_post_due: bool,
    /// Which hooks are configured.
    pub(super) hooks: HookSet,
    /// The version whose `PRE_PROMOTE` failed: not promoted automatically again (an operator's
    /// promote tries again), and the failure, for status.
    pub(super) hook_block: Option<(Version, String)>,
    pub(super) retiring: BTreeMap<InstanceId, Retiring>,
    /// Filings that failed, retried at each collection, with the attempts so far.
    pub(super) refile: Vec<(Action, u32)>,
    /// Filings sent and not yet reported, with the attempts made before.
    pub(super) filing: Vec<(Action, u32)>,
    /// Scoring goes on, but verdicts are not acted on.
    pub(super) paused: bool,
    /// The latest evaluation of the testing instance, for status.
    pub(super) verdict: Option<(InstanceId, Evaluation)>,
    /// The version the history last recorded as serving users.
    pub(super) serving: Option<Version>,
    /// The version that served before it: what a plain rollback brings back.
    pub(super) previous: Option<Version>,
    /// The version the last switch rolled back from (by the guard or an operator): a plain
    /// rollback would bring back what was just thrown out, so it is refused, naming it.
    pub(super) rolled_back_from: Option<Version>,
    /// Why the promotion under way happens, recorded when it switches.
    pub(super) switch_why: Option<SwitchWhy>,
    /// A rollback waiting for its version to be restored, and the command to answer (none for
    /// the guard's own).
    pub(super) restoring: Option<(Version, Option<u64>)>,
    /// The version the guard rolled back from, and why: once the rollback switches, it is
    /// filed in `rejected/` with that reason, not archived as a version to come back to.
    pub(super) tripped: Option<(Version, Vec<String>)>,
    /// The watch that tripped (with why), journaled until its rollback switches: a restart
    /// before then finishes the rollback instead of forgetting it.
    pub(super) tripped_guard: Option<JournaledGuard>,
    /// Its `Restore` waits for an archive or rejection of the version under way to report.
    pub(super) restore_waits: bool,
    /// The guard's rollback could not be carried out, and what serves instead: for status,
    /// until the next switch begins.
    pub(super) guard_failed: Option<String>,
    /// Filings of a version that failed, their last error, until one of its filings succeeds:
    /// status says them (a read-only `archive/` was in the log alone).
    pub(super) filing_failed: std::collections::BTreeMap<Version, String>,
    /// The last build rejected, when, and why: status says it once testing is empty again.
    pub(super) last_rejected: Option<(Version, Instant, Vec<String>)>,
    /// `UPSTREAM_TIMEOUT`: how long the proxy holds a request while nothing serves, for status.
    pub(super) hold_up_to: Duration,
    /// Traffic samples of the last minute: (when, requests, 5xx answers).
    pub(super) traffic: VecDeque<(Instant, u64, u64)>,
    /// The promoted version under watch.
    pub(super) guard: Option<Guard>,
    pub(super) guard_window: Duration,
    pub(super) guard_max_delta: f64,
    /// `CONFIDENCE`, for the guard's 5xx comparison (the scorer's rule).
    pub(super) guard_confidence: f64,
    /// Instance news that arrived before the instance's start completion, replayed after it.
    pub(super) early: Vec<InstanceEvent>,
    /// Scheduled promotions, pending and recently finished.
    pub(super) schedules: Vec<Schedule>,
    pub(super) last_schedule_id: u64,
    /// How late a due schedule may still fire.
    pub(super) schedule_grace: Duration,
    /// When a pending schedule next needs a look.
    pub(super) schedule_check: Option<Instant>,
    /// A due schedule held (paused, a failing verdict, canary steps left) and why, said once
    /// per reason by [`Event::ScheduleHeld`](crate::events::Event::ScheduleHeld).
    pub(super) schedule_held: Option<(u64, String)>,
    pub(super) persisted: Option<Persisted>,
    pub(super) next_gc: Instant,
}

impl State {
    /// Whether users' requests are held for the guard's rollback: nothing serves, and the
    /// version that crashed waits for the rollback rather than a restart. One rule for the
    /// routes (`Hold::Rollback`; a restart at once holds too, `Hold::Restart`) and for status.
    pub(crate) fn holding(&self) -> bool {
        self.running.is_none() && self.restart.as_ref().is_some_and(|r| r.held)
    }

    /// Whether users' requests wait for running while it starts: started again at once after a
    /// crash, resumed at understudy's start, or a build starting as running (the first one, or
    /// one replacing a crash loop); a running that keeps failing, started again after a
    /// backoff, is told to retry at once instead. One rule for the routes (`Hold::Restart`) and
    /// for status.
    pub(crate) fn restart_held(&self) -> bool {
        !self.holding()
            && self
                .running
                .as_ref()
                .is_some_and(|r| !r.is_ready() && (!r.proven || self.failures <= 1))
    }

    /// A supervisor with nothing running, handing out ports from the inclusive range `ports`.
    pub fn new(ports: (u16, u16), now: Instant) -> State {
        State {
            ports,
            taken: BTreeSet::new(),
            busy: BTreeSet::new(),
            busy_retry: None,
            last_id: 0,
            running: None,
            testing: None,
            next: None,
            spare: None,
            disk_full: None,
            over_budget: false,
            collecting: (false, false),
            secondary: None,
            noise_cancel: false,
            canary_steps: Vec::new(),
            canary_window: Duration::from_secs(120),
            canary: None,
            canary_out: None,
            canary_resume: None,
            shared: None,
            handed: Vec::new(),
            taking_over: false,
            held_guard: None,
            secondary_off: None,
            secondary_failures: None,
            pending: None,
            installing: None,
            aborting_install: false,
            drops: VecDeque::new(),
            restart: None,
            failures: 0,
            txn: None,
            txn_old: None,
            txn_post_due: false,
            hooks: HookSet::default(),
            hook_block: None,
            retiring: BTreeMap::new(),
            refile: Vec::new(),
            filing: Vec::new(),
            paused: false,
            verdict: None,
            serving: None,
            previous: None,
            rolled_back_from: None,
            switch_why: None,
            restoring: None,
            tripped: None,
            tripped_guard: None,
            restore_waits: false,
            guard_failed: None,
            last_rejected: None,
            filing_failed: Default::default(),
            hold_up_to: Duration::from_secs(60),
            traffic: VecDeque::new(),
            guard: None,
            guard_window: Duration::ZERO,
            guard_max_delta: 0.01,
            guard_confidence: 0.99,
            early: Vec::new(),
            schedules: Vec::new(),
            last_schedule_id: 0,
            schedule_grace: Duration::from_secs(3600),
            schedule_check: None,
            schedule_held: None,
            persisted: None,
            next_gc: now,
        }
    }

    /// When the supervisor next needs an [`Input::Tick`](super::Input::Tick): a restart, a garbage collection, or a
    /// retry of ports that were busy.
    pub fn deadline(&self) -> Instant {
        [
            self.restart.as_ref().filter(|r| !r.held).map(|r| r.at),
            self.busy_retry,
            self.schedule_check,
            Some(self.next_gc),
        ]
        .into_iter()
        .flatten()
        .min()
        .expect("next_gc is always set")
    }

    /// The instance serving users, if any.
    pub fn running(&self) -> Option<&Slot> {
        self.running.as_ref()
    }

    /// The instance being scored, if any.
    pub fn testing(&self) -> Option<&Slot> {
        self.testing.as_ref()
    }

    /// The fresh running instance of a promotion under way, if any.
    pub fn next(&self) -> Option<&Slot> {
        self.next.as_ref()
    }

    /// The second instance of running's version that measures noise, if any.
    pub fn secondary(&self) -> Option<&Slot> {
        self.secondary.as_ref()
    }

    /// The installed build waiting to be tested, if any.
    pub fn pending(&self) -> Option<&Installed> {
        self.pending.as_ref()
    }

    /// Ports held by instances that are not yet reaped.
    pub fn ports_taken(&self) -> &BTreeSet<u16> {
        &self.taken
    }
}
