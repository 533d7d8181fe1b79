//! The supervisor: the one owner of what runs. Every input (a complete build, an instance's
//! readiness or exit, a verdict, a finished piece of work, a timer) goes through [`decide`], a pure
//! function of the [`State`], the input and the time, which answers with [`Action`]s. The
//! [`executor`] carries the actions out off the supervisor's task and reports each completion back
//! as an input, so nothing slow ever holds a decision up and every decision can be tested without
//! processes, files or sleeps.

pub mod control;
pub mod executor;
mod files;
pub mod schedule;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use semver::Version;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::artifact::Installed;
use crate::events::{Event, VerdictKind};
use crate::history::SwitchWhy;
use crate::hooks::{Hook, HookSet};
use crate::instance::{InstanceEvent, InstanceEventKind, InstanceId};
use crate::layout::Role;
use crate::score::{Evaluation, Scored, ScorerControl, Verdict};
use crate::watcher::Dropped;

pub use control::{Command, CommandError, CommandRequest, Status, SupervisorHandle};
pub use executor::{run, LiveGroups, Wiring};
pub use schedule::{Now, Schedule};

use schedule::{Origin, Outcome};

/// How often archives are checked against the size and disk budgets between filings.
const GC_EVERY: Duration = Duration::from_secs(60);
/// A running instance that stayed up this long counts as a good start: its failure count resets.
const RESTART_STABLE: Duration = Duration::from_secs(10);
/// Delay before the second restart in a row; doubled for each further one up to the cap.
const RESTART_BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest wait between restarts of a failing running version.
const RESTART_BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Failures in a row after which understudy says loudly that running is crash-looping, keeps
/// retrying at the cap, and lets a newly dropped build replace it.
const MAX_RUNNING_RESTARTS: u32 = 5;
/// Attempts at filing a version away (a full disk, say) before understudy gives up on it.
const MAX_FILING_ATTEMPTS: u32 = 10;
/// Requests the new running must have answered since a switch before its 5xx rate is judged.
const GUARD_MIN_REQUESTS: u64 = 20;
/// How far back the traffic before a switch is looked at, for the guard's baseline.
const GUARD_BASELINE: Duration = Duration::from_secs(60);
/// How long a port found bound by another program is left alone before it is tried again.
const BUSY_PORT_RETRY: Duration = Duration::from_secs(1);

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
}

/// What survives a restart: which versions play which part.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persisted {
    /// The version serving users (or restarting to serve them).
    pub running: Option<Version>,
    /// The version being scored, or waiting to be.
    pub testing: Option<Version>,
    /// A version that passed and whose fresh running instance was starting (mid-promotion).
    #[serde(default)]
    pub promoting: Option<Version>,
    /// Scheduled promotions, pending and recently finished: saved before the operator is told.
    #[serde(default)]
    pub schedules: Vec<Schedule>,
    /// The promotion or rollback under way, written before each of its steps.
    #[serde(default)]
    pub txn: Option<Txn>,
}

/// What the executor found on disk at start, for [`Input::Resume`].
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
    /// `NOISE_CANCEL`: run a secondary of running's version while a build is tested.
    pub noise_cancel: bool,
}

/// A started child as the supervisor knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launched {
    /// Process (and process group) id.
    pub pid: u32,
    /// Instance folder number.
    pub number: u32,
    /// Instance folder.
    pub dir: PathBuf,
}

/// Why a start did not produce a child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartFailure {
    /// Another program holds the port: try another one.
    PortBusy(u16),
    /// The start itself failed; the reason is recorded with the version.
    Failed(String),
}

/// Why a version could not be brought back for a rollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreFailure {
    /// Neither its folder nor its archive is there.
    Missing,
    /// It is there but could not be unpacked or holds no startable build.
    Failed(String),
}

/// What the executor filed away, reported back in [`Input::Filed`].
#[derive(Debug, Clone, PartialEq)]
pub enum Filed {
    /// The version folder is now this zip.
    Archived(PathBuf),
    /// The version folder (or the refused file) is in `rejected/`, with these reasons.
    Rejected(Vec<String>),
}

/// Everything the supervisor reacts to.
#[derive(Debug)]
pub enum Input {
    /// At start: what was running and testing before.
    Resume(Resumed),
    /// The watcher found a complete build.
    Dropped(Dropped),
    /// An install finished.
    Installed {
        version: Version,
        result: Result<Installed, String>,
    },
    /// A start finished: the child runs, or why not.
    Started {
        id: InstanceId,
        result: Result<Launched, StartFailure>,
    },
    /// A child became ready, did not, or exited.
    Instance(InstanceEvent),
    /// A retired child is stopped and reaped.
    Stopped { id: InstanceId },
    /// The scorer judged testing.
    Scored(Scored),
    /// Archiving or rejecting a version finished; a failed one carries the action to retry.
    Filed {
        version: Version,
        result: Result<Filed, String>,
        retry: Option<Action>,
    },
    /// Garbage collection deleted these archives (zip, reason).
    Collected(Vec<(PathBuf, String)>),
    /// A deadline from [`State::deadline`] passed.
    Tick,
    /// The proxy's counters, sampled every second: user requests and 5xx answers (cumulative).
    Traffic { requests: u64, errors: u64 },
    /// A hook finished; `id` is the instance a `PRE_START` was for.
    HookDone {
        hook: Hook,
        id: Option<InstanceId>,
        version: Version,
        result: Result<(), String>,
    },
    /// A version asked for by a rollback is back in its folder, or why not.
    Restored {
        version: Version,
        result: Result<Installed, RestoreFailure>,
    },
    /// An operator's command; the answer goes out as [`Action::Reply`] with the same `id`.
    Command { id: u64, command: Command },
    /// The state files stopped being written (why: a full or read-only disk), or are again
    /// (`None`); understudy keeps serving either way.
    Disk { failing: Option<String> },
}

/// Where users and mirrored copies go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The instance.
    pub id: InstanceId,
    /// Its version.
    pub version: Version,
    /// Its port.
    pub port: u16,
}

/// The whole routing table, published at once so the proxy never sees half a change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    /// Serves users.
    pub running: Option<Target>,
    /// Gets mirrored copies.
    pub testing: Option<Target>,
    /// Gets the diffed copies too, to measure noise.
    pub secondary: Option<Target>,
    /// Running is down and being restarted (users are told to retry).
    pub restarting: Option<Version>,
}

/// What the executor is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Move a dropped build into its version folder; reports [`Input::Installed`].
    Install(Dropped),
    /// Move a build that will not be started into `rejected/`; reports [`Input::Filed`].
    Refuse { dropped: Dropped, reason: String },
    /// Start an instance on `port`; reports [`Input::Started`], then instance events.
    Start {
        id: InstanceId,
        role: Role,
        installed: Installed,
        port: u16,
    },
    /// Publish a new routing table to the proxy.
    Route(Routing),
    /// Point the role's symlink at an instance folder (after its route is live).
    Point { role: Role, dir: PathBuf },
    /// Remove the role's symlink.
    Unpoint(Role),
    /// Drain user requests (if `drain`), stop and reap an instance; reports [`Input::Stopped`].
    Retire { id: InstanceId, drain: bool },
    /// Zip a version folder into the archive; reports [`Input::Filed`].
    Archive(Version),
    /// Move a version folder into `rejected/` with reasons; reports [`Input::Filed`].
    Reject {
        version: Version,
        reasons: Vec<String>,
    },
    /// Delete old archives over budget; reports [`Input::Collected`].
    Collect,
    /// Bring a version back into its folder from its archive (a rollback); reports
    /// [`Input::Restored`].
    Restore(Version),
    /// Run a hook; reports [`Input::HookDone`]. `dir` `None` means the version folder.
    RunHook {
        hook: Hook,
        id: Option<InstanceId>,
        version: Version,
        previous: Option<Version>,
        dir: Option<PathBuf>,
        port: Option<u16>,
    },
    /// Append a switch of the version serving users to the history (after its symlink).
    Record {
        from: Option<Version>,
        to: Version,
        why: SwitchWhy,
    },
    /// Write the state file.
    Persist(Persisted),
    /// Tell the scorer what to score.
    Score(ScorerControl),
    /// Announce a decision.
    Emit(Event),
    /// Answer the command with this `id`.
    Reply {
        id: u64,
        result: Result<String, CommandError>,
    },
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
    fn port(&self) -> Option<u16> {
        match self {
            Phase::NeedsPort => None,
            Phase::PreStart { port }
            | Phase::Starting { port }
            | Phase::Up { port, .. }
            | Phase::Ready { port, .. } => Some(*port),
        }
    }

    fn child(&self) -> Option<&Launched> {
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
}

impl Slot {
    fn version(&self) -> &Version {
        &self.installed.version
    }
    fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready { .. })
    }
    fn target(&self) -> Option<Target> {
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
enum AfterStop {
    /// The version goes on (a restart): leave the folder.
    Keep,
    /// Zip it into the archive unless another part still uses the version.
    ArchiveIfUnused,
    /// Move it to `rejected/` with these reasons.
    Reject(Vec<String>),
}

/// An instance on its way out: its port stays taken until it is reaped.
#[derive(Debug, Clone, PartialEq)]
struct Retiring {
    version: Version,
    number: Option<u32>,
    port: Option<u16>,
    after: AfterStop,
    /// Its start is still under way: it is stopped as soon as it reports.
    awaiting_start: bool,
}

/// A promoted version watched for `ROLLBACK_WINDOW` against the traffic before its switch.
#[derive(Debug, Clone, PartialEq)]
struct Guard {
    /// The promoted version.
    version: Version,
    /// The version it replaced, kept in its folder until the window ends.
    from: Version,
    /// When the watch ends.
    until: Instant,
    /// The counters at the switch (the first sample after it, if none came before).
    start: Option<(u64, u64)>,
    /// The 5xx share of user requests in the minute before the switch.
    baseline: f64,
}

/// Running is down and will be started again at `at`.
#[derive(Debug, Clone, PartialEq)]
struct Restart {
    installed: Installed,
    at: Instant,
}

/// Everything the supervisor knows; only [`decide`] changes it.
#[derive(Debug)]
pub struct State {
    ports: (u16, u16),
    /// Ports handed to instances that are not yet reaped.
    taken: BTreeSet<u16>,
    /// Ports another program was found holding, left alone until `busy_retry`.
    busy: BTreeSet<u16>,
    busy_retry: Option<Instant>,
    last_id: u64,
    running: Option<Slot>,
    testing: Option<Slot>,
    /// A fresh running instance of the version being promoted, until it is ready.
    next: Option<Slot>,
    /// A fresh instance of running's version, started because running stopped answering its
    /// heartbeats while its process lives: it takes over once ready (start, switch, then stop).
    spare: Option<Slot>,
    /// Why the state files cannot be written right now (a full disk), while it lasts.
    disk_full: Option<String>,
    /// A second instance of running's version while a build is tested (`NOISE_CANCEL`).
    secondary: Option<Slot>,
    /// Whether to run one.
    noise_cancel: bool,
    /// The testing instance whose secondary failed: noise stays unknown for it.
    secondary_off: Option<InstanceId>,
    /// An installed build waiting for running to be ready before it is tested.
    pending: Option<Installed>,
    /// The build being installed; later drops wait in `drops`.
    installing: Option<Version>,
    drops: VecDeque<Dropped>,
    restart: Option<Restart>,
    /// Running failures in a row.
    failures: u32,
    /// The promotion or rollback under way.
    txn: Option<Txn>,
    /// The old running instance of a switched transaction, until it is stopped.
    txn_old: Option<InstanceId>,
    /// A transaction completed at start: its `POST_*` hook runs once running is ready.
    txn_post_due: bool,
    /// Which hooks are configured.
    hooks: HookSet,
    /// The version whose `PRE_PROMOTE` failed: not promoted automatically again (an operator's
    /// promote tries again), and the failure, for status.
    hook_block: Option<(Version, String)>,
    retiring: BTreeMap<InstanceId, Retiring>,
    /// Filings that failed, retried at each collection, with the attempts so far.
    refile: Vec<(Action, u32)>,
    /// Scoring goes on, but verdicts are not acted on.
    paused: bool,
    /// The latest evaluation of the testing instance, for status.
    verdict: Option<(InstanceId, Evaluation)>,
    /// The version the history last recorded as serving users.
    serving: Option<Version>,
    /// The version that served before it: what a plain rollback brings back.
    previous: Option<Version>,
    /// Why the promotion under way happens, recorded when it switches.
    switch_why: Option<SwitchWhy>,
    /// A rollback waiting for its version to be restored, and the command to answer (none for
    /// the guard's own).
    restoring: Option<(Version, Option<u64>)>,
    /// Traffic samples of the last minute: (when, requests, 5xx answers).
    traffic: VecDeque<(Instant, u64, u64)>,
    /// The promoted version under watch.
    guard: Option<Guard>,
    guard_window: Duration,
    guard_max_delta: f64,
    /// Instance news that arrived before the instance's start completion, replayed after it.
    early: Vec<InstanceEvent>,
    /// Scheduled promotions, pending and recently finished.
    schedules: Vec<Schedule>,
    last_schedule_id: u64,
    /// How late a due schedule may still fire.
    schedule_grace: Duration,
    /// When a pending schedule next needs a look.
    schedule_check: Option<Instant>,
    persisted: Option<Persisted>,
    next_gc: Instant,
}

impl State {
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
            secondary: None,
            noise_cancel: false,
            secondary_off: None,
            pending: None,
            installing: None,
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
            paused: false,
            verdict: None,
            serving: None,
            previous: None,
            switch_why: None,
            restoring: None,
            traffic: VecDeque::new(),
            guard: None,
            guard_window: Duration::ZERO,
            guard_max_delta: 0.01,
            early: Vec::new(),
            schedules: Vec::new(),
            last_schedule_id: 0,
            schedule_grace: Duration::from_secs(3600),
            schedule_check: None,
            persisted: None,
            next_gc: now,
        }
    }

    /// When the supervisor next needs an [`Input::Tick`]: a restart, a garbage collection, or a
    /// retry of ports that were busy.
    pub fn deadline(&self) -> Instant {
        [
            self.restart.as_ref().map(|r| r.at),
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

    /// What status shows, with `wall` turning the monotonic clock into wall-clock time.
    pub fn status(&self, wall: impl Fn(Instant) -> std::time::SystemTime) -> Status {
        let slot = |s: &Option<Slot>| {
            s.as_ref().map(|s| {
                let child = s.phase.child();
                control::InstanceStatus {
                    version: s.version().clone(),
                    instance: child.map(|c| c.number),
                    port: s.phase.port(),
                    pid: child.map(|c| c.pid),
                    ready: s.is_ready(),
                    since: match s.phase {
                        Phase::Ready { since, .. } => Some(control::rfc3339(wall(since))),
                        _ => None,
                    },
                    last_heartbeat: s.last_heartbeat.map(|t| control::rfc3339(wall(t))),
                }
            })
        };
        let verdict = self.verdict.as_ref().and_then(|(id, ev)| {
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
            })
        });
        Status {
            running: slot(&self.running),
            testing: slot(&self.testing),
            promoting: slot(&self.next),
            secondary: slot(&self.secondary),
            restarting: match &self.running {
                None => self.restart.as_ref().map(|r| r.installed.version.clone()),
                Some(_) => None,
            },
            pending: self.pending.as_ref().map(|p| p.version.clone()),
            installing: self.installing.clone(),
            paused: self.paused,
            disk_full: self.disk_full.clone(),
            verdict,
            schedules: self.schedules.clone(),
            transaction: self.txn.clone(),
            guarded: self.guard.as_ref().map(|g| {
                format!(
                    "{} is watched until {} against {:.1}% 5xx before its switch; {} is kept to roll back to",
                    g.version,
                    control::rfc3339(wall(g.until)),
                    g.baseline * 100.0,
                    g.from
                )
            }),
            hook_failure: self
                .hook_block
                .as_ref()
                .map(|(v, why)| format!("{v}: {why}")),
        }
    }
}

/// Decide what to do about `input` at `now`: update `state` and return the actions, in order.
/// Pure: no I/O, no clock, no await; the executor does the rest.
pub fn decide(state: &mut State, input: Input, now: Now) -> Vec<Action> {
    let mut d = Decision {
        s: state,
        out: Vec::new(),
        now: now.mono,
        wall: now.wall,
    };
    let mut reply = None;
    match input {
        Input::Resume(r) => d.resume(r),
        Input::Dropped(dropped) => d.dropped(dropped),
        Input::Installed { version, result } => d.installed(version, result),
        Input::Started { id, result } => d.started(id, result),
        Input::Instance(e) => d.instance(e),
        Input::Stopped { id } => d.stopped(id),
        Input::Scored(s) => d.scored(s),
        Input::Filed {
            version,
            result,
            retry,
        } => d.filed(version, result, retry),
        Input::Collected(deleted) => {
            for (zip, reason) in deleted {
                d.emit(Event::ArchiveDeleted { zip, reason });
            }
        }
        Input::Tick => d.tick(),
        Input::Restored { version, result } => d.restored(version, result),
        Input::Traffic { requests, errors } => d.traffic(requests, errors),
        Input::HookDone {
            hook,
            id,
            version,
            result,
        } => d.hook_done(hook, id, version, result),
        Input::Command { id, command } => {
            reply = d
                .command(id, command)
                .map(|result| Action::Reply { id, result });
        }
        Input::Disk { failing } => d.disk(failing),
    }
    d.run_schedules();
    d.fit_secondary();
    d.assign_ports();
    d.persist();
    // After the state write: an operator told "scheduled" can rely on it surviving a crash.
    d.out.extend(reply);
    d.out
}

/// One call of [`decide`]: the state, the actions so far, and the time.
struct Decision<'a> {
    s: &'a mut State,
    out: Vec<Action>,
    now: Instant,
    wall: SystemTime,
}

impl Decision<'_> {
    /// The state files could not be written (or can again): say so once each way.
    fn disk(&mut self, failing: Option<String>) {
        let was = std::mem::replace(&mut self.s.disk_full, failing.clone());
        match (was, failing) {
            (None, Some(why)) => self.emit(Event::DiskFull { why }),
            (Some(_), None) => self.emit(Event::DiskRecovered),
            _ => {}
        }
    }

    fn emit(&mut self, e: Event) {
        self.out.push(Action::Emit(e));
    }

    fn new_slot(&mut self, role: Role, installed: Installed, proven: bool) -> Slot {
        self.s.last_id += 1;
        Slot {
            id: InstanceId(self.s.last_id),
            role,
            installed,
            phase: Phase::NeedsPort,
            proven,
            last_heartbeat: None,
        }
    }

    fn resume(&mut self, r: Resumed) {
        self.s.serving = r.running.as_ref().map(|i| i.version.clone());
        self.s.previous = r.previous;
        self.s.schedule_grace = r.schedule_grace;
        self.s.hooks = r.hooks;
        self.s.guard_window = r.rollback_window;
        self.s.guard_max_delta = r.max_5xx_delta;
        self.s.noise_cancel = r.noise_cancel;
        self.resume_schedules(r.schedules, r.promote_at);
        let switched = r.txn.as_ref().is_some_and(|t| t.step >= TxnStep::Switched);
        if switched {
            // Users were already served by the new version: complete the transaction.
            let t = r.txn.clone().expect("checked above");
            self.emit(Event::SwitchCompleted {
                kind: t.kind.name().to_string(),
                version: t.version.clone(),
                from: t.from.clone(),
            });
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
            self.s.pending = r.testing;
            return;
        }
        self.s.pending = r.testing;
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
            self.archive_if_unused(undone.version);
        }
    }

    /// The version that serves or is about to: the one being promoted, else running's.
    fn running_version(&self) -> Option<&Version> {
        self.s
            .next
            .as_ref()
            .or(self.s.running.as_ref())
            .map(Slot::version)
            .or(self.s.restart.as_ref().map(|r| &r.installed.version))
    }

    /// The newest build on its way to testing.
    fn candidate_version(&self) -> Option<&Version> {
        [
            self.s.testing.as_ref().map(Slot::version),
            self.s.pending.as_ref().map(|p| &p.version),
            self.s.installing.as_ref(),
        ]
        .into_iter()
        .flatten()
        .max()
    }

    fn dropped(&mut self, dropped: Dropped) {
        let version = dropped.name.version.clone();
        self.emit(Event::BuildFound {
            file: dropped.name.file_name.clone(),
            version: version.clone(),
        });
        if self.s.installing.is_some() {
            // One install at a time; the refusal rule is applied when its turn comes.
            self.s.drops.push_back(dropped);
            return;
        }
        self.consider(dropped);
    }

    fn consider(&mut self, dropped: Dropped) {
        let version = &dropped.name.version;
        match refusal(version, self.running_version(), self.candidate_version()) {
            Some(reason) => self.out.push(Action::Refuse { dropped, reason }),
            None => {
                self.s.installing = Some(version.clone());
                self.out.push(Action::Install(dropped));
            }
        }
    }

    fn installed(&mut self, version: Version, result: Result<Installed, String>) {
        if self.s.installing.as_ref() == Some(&version) {
            self.s.installing = None;
        }
        match result {
            Err(reason) => self.out.push(Action::Reject {
                version,
                reasons: vec![reason],
            }),
            Ok(installed) => {
                self.emit(Event::Installed {
                    version: installed.version.clone(),
                });
                self.place(installed)
            }
        }
        while self.s.installing.is_none() {
            let Some(next) = self.s.drops.pop_front() else {
                break;
            };
            self.consider(next);
        }
    }

    /// An installed build: the first one serves; later ones are tested once running is ready.
    fn place(&mut self, installed: Installed) {
        let nothing_serves =
            self.s.running.is_none() && self.s.next.is_none() && self.s.restart.is_none();
        if nothing_serves {
            let slot = self.new_slot(Role::Running, installed, false);
            self.s.running = Some(slot);
            return;
        }
        if self.s.failures > MAX_RUNNING_RESTARTS && self.s.running.is_none() {
            if let Some(r) = self.s.restart.take() {
                // Running is crash-looping: the new build is the way out, as the log promised.
                self.emit(Event::CrashLoopReplaced {
                    version: installed.version.clone(),
                    replaced: r.installed.version.clone(),
                    failures: self.s.failures,
                });
                self.s.failures = 0;
                self.archive_if_unused(r.installed.version);
                self.s.switch_why = Some(SwitchWhy::CrashLoop);
                let slot = self.new_slot(Role::Running, installed, false);
                self.s.running = Some(slot);
                self.publish_routes();
                return;
            }
        }
        if let Some(old) = self.s.pending.replace(installed) {
            // A newer build supersedes one that never started.
            self.archive_if_unused(old.version);
        }
        self.start_pending();
    }

    /// Start the pending build as testing once running is ready and no promotion is under way.
    fn start_pending(&mut self) {
        let running_ready = self.s.running.as_ref().is_some_and(Slot::is_ready);
        if !running_ready || self.s.next.is_some() {
            return;
        }
        let Some(installed) = self.s.pending.take() else {
            return;
        };
        if let Some(old) = self.s.testing.take() {
            self.unroute_testing(&old);
            self.retire(old, false, AfterStop::ArchiveIfUnused);
        }
        let slot = self.new_slot(Role::Testing, installed, false);
        self.s.testing = Some(slot);
    }

    /// Give a port to every slot waiting for one: running first, then a promotion, then testing.
    fn assign_ports(&mut self) {
        if self.s.busy_retry.is_some_and(|t| self.now >= t) {
            self.s.busy.clear();
            self.s.busy_retry = None;
        }
        for part in [
            SlotKey::Running,
            SlotKey::Spare,
            SlotKey::Next,
            SlotKey::Testing,
            SlotKey::Secondary,
        ] {
            let waiting = self
                .slot_mut(part)
                .is_some_and(|s| s.phase == Phase::NeedsPort);
            if !waiting {
                continue;
            }
            let (lo, hi) = self.s.ports;
            let free = (lo..=hi).find(|p| !self.s.taken.contains(p) && !self.s.busy.contains(p));
            let Some(port) = free else {
                if part == SlotKey::Secondary && self.s.busy.is_empty() {
                    // No port to spare in PORT_RANGE: noise stays unknown rather than have the
                    // verdict wait for an instance that cannot start.
                    if let Some(slot) = self.s.secondary.take() {
                        self.give_up_secondary(slot, "no free port in PORT_RANGE".into());
                    }
                    continue;
                }
                if !self.s.busy.is_empty() && self.s.busy_retry.is_none() {
                    self.s.busy_retry = Some(self.now + BUSY_PORT_RETRY);
                }
                continue;
            };
            self.s.taken.insert(port);
            let pre_start = self.s.hooks.pre_start;
            let previous = self.running_version().cloned();
            let slot = self.slot_mut(part).expect("checked above");
            let new_build =
                slot.role == Role::Testing || (part == SlotKey::Running && !slot.proven);
            if pre_start && new_build {
                slot.phase = Phase::PreStart { port };
                let action = Action::RunHook {
                    hook: Hook::PreStart,
                    id: Some(slot.id),
                    version: slot.version().clone(),
                    previous: previous.filter(|p| p != slot.version()),
                    dir: None,
                    port: Some(port),
                };
                self.out.push(action);
                continue;
            }
            slot.phase = Phase::Starting { port };
            let action = Action::Start {
                id: slot.id,
                role: slot.role,
                installed: slot.installed.clone(),
                port,
            };
            self.out.push(action);
        }
    }

    fn slot_mut(&mut self, part: SlotKey) -> Option<&mut Slot> {
        match part {
            SlotKey::Running => self.s.running.as_mut(),
            SlotKey::Testing => self.s.testing.as_mut(),
            SlotKey::Next => self.s.next.as_mut(),
            SlotKey::Spare => self.s.spare.as_mut(),
            SlotKey::Secondary => self.s.secondary.as_mut(),
        }
    }

    fn part_of(&self, id: InstanceId) -> Option<SlotKey> {
        let is = |s: &Option<Slot>| s.as_ref().is_some_and(|s| s.id == id);
        if is(&self.s.running) {
            Some(SlotKey::Running)
        } else if is(&self.s.testing) {
            Some(SlotKey::Testing)
        } else if is(&self.s.next) {
            Some(SlotKey::Next)
        } else if is(&self.s.spare) {
            Some(SlotKey::Spare)
        } else if is(&self.s.secondary) {
            Some(SlotKey::Secondary)
        } else {
            None
        }
    }

    fn started(&mut self, id: InstanceId, result: Result<Launched, StartFailure>) {
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
    fn started_after_retire(&mut self, id: InstanceId, result: Result<Launched, StartFailure>) {
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

    fn instance(&mut self, e: InstanceEvent) {
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
            } => {
                let slot = self.slot_mut(part).expect("part_of found it");
                let event = Event::Exited {
                    role: slot.role,
                    version: slot.version().clone(),
                    status: status.clone(),
                };
                self.emit(event);
                self.failed(
                    part,
                    format!("exited ({status}); stderr ends with:\n{stderr_tail}"),
                );
            }
        }
    }

    fn ready(&mut self, part: SlotKey) {
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
                // Users are routed to the fresh one first; then the old one drains and stops.
                if let Some(old) = old {
                    self.retire(old, true, AfterStop::Keep);
                }
            }
            SlotKey::Running => self.running_ready(child),
            SlotKey::Testing => {
                self.serve(SlotKey::Testing);
                let running = self.s.running.as_ref().and_then(|r| r.phase.child());
                let running_dir = running.map(|c| c.dir.clone()).unwrap_or_default();
                let running_pid = running.map(|c| c.pid);
                let testing = self.s.testing.as_ref().expect("serving testing");
                let noise = self.s.noise_cancel && self.s.secondary_off != Some(testing.id);
                self.out
                    .push(Action::Score(ScorerControl::Watch(crate::score::Watch {
                        testing: testing.id,
                        testing_dir: child.dir,
                        testing_pid: child.pid,
                        running_dir,
                        running_pid,
                        noise,
                    })));
            }
            SlotKey::Secondary => self.serve(SlotKey::Secondary),
            SlotKey::Next => {
                // Journal "ready" on its own, before the switch is even decided.
                if let Some(t) = self.s.txn.as_mut() {
                    t.step = TxnStep::Ready;
                }
                self.persist();
                self.finish_promotion()
            }
        }
    }

    /// Running is ready (first start, restart or a spare that took over): serve it, keep testing
    /// scored against it, finish a transaction resumed at start, and test what waits.
    fn running_ready(&mut self, child: Launched) {
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
            if let Some(from) = self.s.txn.as_ref().and_then(|t| t.from.clone()) {
                self.archive_if_unused(from);
            }
            self.after_switch();
        }
        self.start_pending();
    }

    /// Running stopped answering its heartbeats while its process lives: start a fresh instance
    /// of the same version beside it and switch once that one is ready, as a promotion does, so
    /// users are served all along. Stop-then-start only when that cannot be done (a promotion
    /// under way, a spare already starting, a running never proven or still guarded).
    fn running_unresponsive(&mut self, why: String) {
        let guarded = |r: &Slot| {
            self.s
                .guard
                .as_ref()
                .is_some_and(|g| g.version == *r.version())
        };
        // Within ROLLBACK_WINDOW a failing new running is rolled back instead (running_failed).
        let can_heal = self.s.spare.is_none()
            && self.s.next.is_none()
            && self
                .s
                .running
                .as_ref()
                .is_some_and(|r| r.proven && r.is_ready() && !guarded(r));
        if !can_heal {
            return self.running_failed(why);
        }
        let installed = self.s.running.as_ref().expect("checked").installed.clone();
        self.emit(Event::RestartScheduled {
            version: installed.version.clone(),
            attempt: self.s.failures + 1,
            delay_ms: 0,
            reason: format!("{why}; a fresh instance starts beside it and takes over once ready"),
        });
        let slot = self.new_slot(Role::Running, installed, true);
        self.s.spare = Some(slot);
    }

    /// The spare is ready: it becomes running; the unresponsive one is returned, to be stopped.
    fn swap_in_spare(&mut self) -> Option<Slot> {
        let spare = self.s.spare.take().expect("called for the spare");
        self.s.failures = 0;
        self.s.running.replace(spare)
    }

    /// The spare failed to start or get ready: running, still unresponsive, is restarted the
    /// plain way (stop, then start, with backoff).
    fn spare_failed(&mut self, why: String) {
        let Some(spare) = self.s.spare.take() else {
            return;
        };
        self.retire(spare, false, AfterStop::Keep);
        if self.s.running.is_some() {
            self.running_failed(format!(
                "stopped answering its heartbeats, and the fresh instance started beside it {why}"
            ));
        }
    }

    /// Put a ready instance into service: route to it first, then point its symlink and announce
    /// it, so whoever sees the symlink can rely on the route.
    fn serve(&mut self, part: SlotKey) {
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
                self.s.previous = from.clone();
            }
            self.out.push(Action::Record {
                from,
                to: version,
                why,
            });
        }
    }

    fn publish_routes(&mut self) {
        let routing = Routing {
            running: self.s.running.as_ref().and_then(Slot::target),
            testing: self.s.testing.as_ref().and_then(Slot::target),
            secondary: self.s.secondary.as_ref().and_then(Slot::target),
            restarting: match &self.s.running {
                Some(r) if r.proven && !r.is_ready() => Some(r.version().clone()),
                None => self.s.restart.as_ref().map(|r| r.installed.version.clone()),
                _ => None,
            },
        };
        self.out.push(Action::Route(routing));
    }

    /// An instance failed to start, to get ready, or to stay up.
    fn failed(&mut self, part: SlotKey, why: String) {
        match part {
            SlotKey::Testing => self.reject_testing(vec![format!("testing {why}")]),
            SlotKey::Next => self.abort_promotion(vec![format!(
                "the new running instance of the promoted version {why}"
            )]),
            SlotKey::Running => self.running_failed(why),
            SlotKey::Spare => self.spare_failed(why),
            SlotKey::Secondary => self.secondary_failed(why),
        }
    }

    /// The noise instance failed: testing is judged without it ("noise unknown"); never a
    /// reason to reject testing or to touch running.
    fn secondary_failed(&mut self, why: String) {
        let Some(slot) = self.s.secondary.take() else {
            return;
        };
        self.give_up_secondary(slot, why);
    }

    /// No secondary for the build under test: it is judged with noise unknown.
    fn give_up_secondary(&mut self, slot: Slot, reason: String) {
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

    fn drop_secondary(&mut self, slot: Slot) {
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
        }
    }

    /// Run a secondary of running's version exactly while a build is tested against a ready
    /// running and no promotion is under way; replace it when running's version changes.
    fn fit_secondary(&mut self) {
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

    fn running_failed(&mut self, why: String) {
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
            }
            return;
        }
        let stayed_up = match slot.phase {
            Phase::Ready { since, .. } => self.now.saturating_duration_since(since),
            _ => Duration::ZERO,
        };
        self.retire(slot, false, AfterStop::Keep);
        self.s.failures = if stayed_up >= RESTART_STABLE {
            1
        } else {
            self.s.failures + 1
        };
        let delay = restart_delay(self.s.failures);
        if self.s.failures > MAX_RUNNING_RESTARTS {
            self.emit(Event::CrashLooping {
                version: version.clone(),
                failures: self.s.failures,
                retry_every_ms: RESTART_BACKOFF_CAP.as_millis() as u64,
            });
        }
        let why_short = why.lines().next().unwrap_or_default().to_string();
        self.emit(Event::RestartScheduled {
            version: version.clone(),
            attempt: self.s.failures,
            delay_ms: delay.as_millis() as u64,
            reason: why,
        });
        self.s.restart = Some(Restart {
            installed,
            at: self.now + delay,
        });
        self.restart_if_due();
        self.publish_routes();
        if self.s.guard.as_ref().is_some_and(|g| g.version == version) {
            self.guard_rollback(format!("failed within ROLLBACK_WINDOW: {why_short}"));
        }
    }

    fn restart_if_due(&mut self) {
        let due = self.s.restart.as_ref().is_some_and(|r| self.now >= r.at);
        if !due || self.s.running.is_some() {
            return;
        }
        let r = self.s.restart.take().expect("checked above");
        let slot = self.new_slot(Role::Running, r.installed, true);
        self.s.running = Some(slot);
    }

    fn tick(&mut self) {
        self.restart_if_due();
        if self.now >= self.s.next_gc {
            self.s.next_gc = self.now + GC_EVERY;
            self.out.push(Action::Collect);
            for (action, _) in &self.s.refile {
                self.out.push(action.clone());
            }
        }
    }

    fn scored(&mut self, s: Scored) {
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
        });
        if self.s.paused {
            return; // scored and shown, not acted on
        }
        match s.evaluation.verdict {
            Verdict::Wait(_) => {}
            Verdict::Reject(reasons) => self.reject_testing(reasons),
            Verdict::Promote => {
                if self
                    .s
                    .hook_block
                    .as_ref()
                    .is_some_and(|(v, _)| *v == version)
                {
                    // PRE_PROMOTE said no: an operator's promote may try again.
                } else if self.held_by_schedule(&version) {
                    // Scored says it passed, Scheduled said when it will be promoted.
                } else {
                    self.begin_promotion(SwitchWhy::Automatic)
                }
            }
        }
    }

    fn unroute_testing(&mut self, old: &Slot) {
        if old.is_ready() {
            self.out.push(Action::Score(ScorerControl::Clear));
        }
        self.out.push(Action::Unpoint(Role::Testing));
        self.publish_routes();
    }

    fn reject_testing(&mut self, reasons: Vec<String>) {
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
        self.retire(testing, false, AfterStop::Reject(reasons));
        self.start_pending();
    }

    /// Promotion, step 1: stop testing and start a fresh running instance of its version.
    fn begin_promotion(&mut self, why: SwitchWhy) {
        if self.s.next.is_some() || self.s.txn.is_some() {
            return;
        }
        let Some(testing) = self.s.testing.as_ref() else {
            return;
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
            });
            self.out.push(Action::RunHook {
                hook: Hook::PrePromote,
                id: Some(id),
                version,
                previous: from,
                dir,
                port,
            });
            return;
        }
        self.promote_testing(why);
    }

    /// Promotion, step 1 proper: stop testing and start a fresh running instance of its version.
    fn promote_testing(&mut self, why: SwitchWhy) {
        let Some(testing) = self.s.testing.take() else {
            return;
        };
        self.unroute_testing(&testing);
        let installed = testing.installed.clone();
        self.retire(testing, false, AfterStop::ArchiveIfUnused);
        self.begin_promotion_of(installed, why);
    }

    fn begin_promotion_of(&mut self, installed: Installed, why: SwitchWhy) {
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
        });
        self.emit(Event::Promoting {
            version: installed.version.clone(),
        });
        let slot = self.new_slot(Role::Running, installed, false);
        self.s.next = Some(slot);
    }

    /// Promotion, step 2: the new instance is ready; swap routes atomically, drain and stop the old.
    fn finish_promotion(&mut self) {
        let mut next = self.s.next.take().expect("called for next");
        next.proven = true;
        let to = next.version().clone();
        let old = self.s.running.replace(next);
        let restarting = self.s.restart.take();
        self.s.failures = 0;
        // Write-ahead: the switch is journaled before the route, symlink or history show it.
        if let Some(t) = self.s.txn.as_mut() {
            t.step = TxnStep::Switched;
        }
        self.persist();
        self.s.txn_old = old.as_ref().map(|o| o.id);
        self.serve(SlotKey::Running);
        let from = old
            .as_ref()
            .map(|o| o.version().clone())
            .or(restarting.as_ref().map(|r| r.installed.version.clone()));
        let why = self.s.txn.as_ref().map_or(SwitchWhy::Automatic, |t| t.why);
        self.emit(Event::Promoted {
            from: from.clone(),
            to: to.clone(),
            why,
        });
        if why == SwitchWhy::Rollback {
            self.emit(Event::RolledBack { from, to });
        }
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
                let version = self
                    .s
                    .running
                    .as_ref()
                    .expect("just placed")
                    .version()
                    .clone();
                self.start_guard(version, old.version().clone());
                AfterStop::Keep
            } else {
                AfterStop::ArchiveIfUnused
            };
            self.retire(old, true, after);
        } else {
            if let Some(r) = restarting {
                self.archive_if_unused(r.installed.version);
            }
            self.after_switch();
        }
        // A rollback leaves testing in place: it is scored against the new running from now on.
        let running = self
            .s
            .running
            .as_ref()
            .and_then(|r| r.phase.child())
            .map(|c| (c.dir.clone(), c.pid));
        if let (Some((running_dir, pid)), true) =
            (running, self.s.testing.as_ref().is_some_and(Slot::is_ready))
        {
            self.out.push(Action::Score(ScorerControl::Running {
                running_dir,
                running_pid: Some(pid),
            }));
        }
        self.start_pending();
    }

    fn abort_promotion(&mut self, reasons: Vec<String>) {
        let next = self.s.next.take().expect("called for next");
        self.emit(Event::PromotionFailed {
            version: next.version().clone(),
            reasons: reasons.clone(),
        });
        self.s.txn = None;
        // A version brought back by a rollback had served before: it goes back to the archive.
        let after = match self.s.switch_why.take() {
            Some(SwitchWhy::Rollback) => AfterStop::ArchiveIfUnused,
            _ => AfterStop::Reject(reasons),
        };
        self.retire(next, false, after);
        self.start_pending();
    }

    /// Take an instance out of its part: stop it (draining first if `drain`) and file its
    /// version away afterwards as `after` says.
    fn retire(&mut self, slot: Slot, drain: bool, after: AfterStop) {
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

    /// The switch is done and the old instance drained and stopped: run the `POST_*` hook, or
    /// close the transaction.
    fn after_switch(&mut self) {
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

    fn hook_done(
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
                    Ok(()) => {}
                    Err(e) => {
                        let reason = format!("PRE_PROMOTE refused it: {e}");
                        self.emit(Event::PromotionFailed {
                            version: version.clone(),
                            reasons: vec![reason.clone()],
                        });
                        self.s.hook_block = Some((version, reason));
                    }
                }
            }
            Hook::PostPromote | Hook::PostRollback => {
                // A failure was announced by HookRan above; the switch stands either way.
                if self.s.txn.as_ref().is_some_and(|t| t.version == version) {
                    self.s.txn = None;
                }
            }
        }
    }

    fn pre_start_done(&mut self, id: Option<InstanceId>, result: Result<(), String>) {
        let Some(id) = id else {
            return;
        };
        let Some(part) = self.part_of(id) else {
            return; // retired meanwhile
        };
        let slot = self.slot_mut(part).expect("part_of found it");
        let Phase::PreStart { port } = slot.phase else {
            return;
        };
        match result {
            Ok(()) => {
                slot.phase = Phase::Starting { port };
                let action = Action::Start {
                    id,
                    role: slot.role,
                    installed: slot.installed.clone(),
                    port,
                };
                self.out.push(action);
            }
            Err(e) => {
                slot.phase = Phase::NeedsPort;
                self.s.taken.remove(&port);
                self.failed(part, format!("was refused by PRE_START: {e}"));
            }
        }
    }

    /// A retired instance is gone: free its port and file its version away.
    fn stopped(&mut self, id: InstanceId) {
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
            AfterStop::Reject(reasons) => self.out.push(Action::Reject {
                version: r.version,
                reasons,
            }),
        }
    }

    fn archive_if_unused(&mut self, version: Version) {
        // An instance of it still stopping files it away once it is reaped.
        for r in self.s.retiring.values_mut() {
            if r.version == version && r.after == AfterStop::Keep {
                r.after = AfterStop::ArchiveIfUnused;
            }
        }
        let s = &*self.s;
        let in_slot = [&s.running, &s.testing, &s.next, &s.secondary, &s.spare]
            .into_iter()
            .flatten()
            .any(|slot| *slot.version() == version);
        let in_use = in_slot
            || s.pending.as_ref().is_some_and(|p| p.version == version)
            || s.restart
                .as_ref()
                .is_some_and(|r| r.installed.version == version)
            || s.retiring.values().any(|r| r.version == version);
        if !in_use {
            self.out.push(Action::Archive(version));
        }
    }

    fn filed(&mut self, version: Version, result: Result<Filed, String>, retry: Option<Action>) {
        let earlier = self
            .s
            .refile
            .iter()
            .position(|(a, _)| Some(a) == retry.as_ref());
        let attempts = earlier.map_or(0, |i| self.s.refile.remove(i).1) + 1;
        match result {
            Ok(Filed::Archived(zip)) => self.emit(Event::Archived { version, zip }),
            Ok(Filed::Rejected(reasons)) => self.emit(Event::Rejected { version, reasons }),
            Err(error) => {
                let retrying = retry.is_some() && attempts < MAX_FILING_ATTEMPTS;
                self.emit(Event::FilingFailed {
                    version,
                    attempt: attempts,
                    error,
                    retrying,
                });
                if let Some(action) = retry.filter(|_| retrying) {
                    self.s.refile.push((action, attempts));
                }
            }
        }
        self.out.push(Action::Collect);
    }

    /// Carry out an operator's command; `None` means the answer comes later (a rollback waits
    /// for its version to be restored).
    fn command(&mut self, id: u64, command: Command) -> Option<Result<String, CommandError>> {
        Some(match command {
            Command::Promote => {
                if let Some(next) = &self.s.next {
                    return Some(Err(CommandError::NothingToPromote(format!(
                        "the promotion of {} is already under way",
                        next.version()
                    ))));
                }
                let Some(testing) = self.s.testing.as_ref() else {
                    return Some(Err(CommandError::NothingToPromote(
                        "no build is being tested".into(),
                    )));
                };
                if !testing.is_ready() {
                    return Some(Err(CommandError::NothingToPromote(format!(
                        "{} is not ready yet",
                        testing.version()
                    ))));
                }
                if let Some(t) = &self.s.txn {
                    return Some(Err(CommandError::NothingToPromote(format!(
                        "the {:?} of {} is already under way",
                        t.kind, t.version
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
                    return Some(Err(CommandError::NothingToAbort));
                };
                let version = pending.version;
                self.out.push(Action::Reject {
                    version: version.clone(),
                    reasons,
                });
                Ok(format!("rejected {version}"))
            }
            Command::Pause => {
                self.s.paused = true;
                self.emit(Event::Paused);
                Ok("paused: testing is still scored, but nothing is promoted or rejected until resumed".into())
            }
            Command::Resume => {
                self.s.paused = false;
                self.emit(Event::Resumed);
                Ok("resumed: verdicts are acted on again".into())
            }
            Command::PromoteAt(at) => self.schedule(at),
            Command::CancelSchedule(sid) => self.cancel_schedule(sid),
            Command::Rollback(version) => return self.rollback(id, version),
        })
    }

    /// Rollback, step 1: check it makes sense, then have the version restored.
    fn rollback(
        &mut self,
        id: u64,
        version: Option<Version>,
    ) -> Option<Result<String, CommandError>> {
        let refuse = |why: String| Some(Err(CommandError::Refused(why)));
        if let Some(next) = &self.s.next {
            return refuse(format!(
                "the promotion of {} is under way; roll back once it is done",
                next.version()
            ));
        }
        if let Some((v, _)) = &self.s.restoring {
            return refuse(format!("a rollback to {v} is already under way"));
        }
        if let Some(t) = &self.s.txn {
            return refuse(format!(
                "the {:?} of {} is still under way; roll back once it is done",
                t.kind, t.version
            ));
        }
        let running = self.running_version().cloned();
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
                "{target} is the build under test and never served: promote it or abort it; a \
                 rollback goes to a version that served before"
            ));
        }
        self.s.restoring = Some((target.clone(), Some(id)));
        self.out.push(Action::Restore(target));
        None
    }

    /// Rollback, step 2: the version is back in its folder; promote it like any other.
    fn restored(&mut self, version: Version, result: Result<Installed, RestoreFailure>) {
        let Some((wanted, id)) = self.s.restoring.take() else {
            return;
        };
        if wanted != version {
            self.s.restoring = Some((wanted, id));
            return;
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
        match (id, result) {
            (Some(id), result) => self.out.push(Action::Reply { id, result }),
            (None, Err(e)) => self.emit(Event::RollbackFailed {
                version,
                reason: e.to_string(),
            }),
            // Promoting says it.
            (None, Ok(_)) => {}
        }
    }

    /// A traffic sample: keep a minute of them, and judge the promoted version under watch.
    fn traffic(&mut self, requests: u64, errors: u64) {
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
        let rate = de as f64 / dr as f64;
        if rate > g.baseline + self.s.guard_max_delta {
            let why = format!(
                "5xx rate {:.1}% over {dr} requests since the switch, against {:.1}% before it (MAX_5XX_DELTA {:.1} points)",
                rate * 100.0,
                g.baseline * 100.0,
                self.s.guard_max_delta * 100.0
            );
            self.guard_rollback(why);
        }
    }

    /// Start watching `version`, just promoted over `from`.
    fn start_guard(&mut self, version: Version, from: Version) {
        if let Some(earlier) = self.s.guard.take() {
            // A newer promotion ends the earlier watch: its kept version is filed away.
            self.archive_if_unused(earlier.from);
        }
        let (first, last) = (self.s.traffic.front(), self.s.traffic.back());
        let baseline = match (first, last) {
            (Some(&(_, r0, e0)), Some(&(_, r1, e1))) if r1 > r0 => {
                e1.saturating_sub(e0) as f64 / (r1 - r0) as f64
            }
            _ => 0.0,
        };
        self.s.guard = Some(Guard {
            version,
            from,
            until: self.now + self.s.guard_window,
            start: last.map(|&(_, r, e)| (r, e)),
            baseline,
        });
    }

    /// The promoted version does worse than the one it replaced: bring that one back.
    fn guard_rollback(&mut self, why: String) {
        let Some(g) = self.s.guard.take() else {
            return;
        };
        self.emit(Event::GuardTripped {
            version: g.version.clone(),
            to: g.from.clone(),
            reason: why,
        });
        if self.s.next.is_some() || self.s.restoring.is_some() {
            self.emit(Event::RollbackFailed {
                version: g.from.clone(),
                reason: "another switch is under way".into(),
            });
            self.archive_if_unused(g.from);
            return;
        }
        // The promotion's own tail (draining, POST_PROMOTE) gives way to the rollback.
        self.s.txn = None;
        self.s.txn_old = None;
        self.s.restoring = Some((g.from.clone(), None));
        self.out.push(Action::Restore(g.from));
    }

    /// Take back the schedules of the state file, and add `PROMOTE_AT`'s unless it is there.
    fn resume_schedules(&mut self, schedules: Vec<Schedule>, promote_at: Option<SystemTime>) {
        self.s.last_schedule_id = schedules.iter().map(|s| s.id).max().unwrap_or(0);
        self.s.schedules = schedules;
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
    fn schedule(&mut self, at: SystemTime) -> Result<String, CommandError> {
        if at <= self.wall {
            return Err(CommandError::Refused(format!(
                "{} is not in the future: promote now without \"at\"",
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
        let replaced = format!("replaced by schedule #{id}");
        for s in &mut self.s.schedules {
            if s.is_pending() && s.version.as_ref() == Some(&version) {
                s.outcome = Outcome::Cancelled {
                    reason: replaced.clone(),
                };
            }
        }
        let sch = Schedule::new(id, Some(version.clone()), at, Origin::Operator);
        let message = format!(
            "schedule #{id}: {version} will be promoted at {} (until then it is scored, but not promoted automatically)",
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

    fn cancel_schedule(&mut self, id: u64) -> Result<String, CommandError> {
        let Some(s) = self.s.schedules.iter_mut().find(|s| s.id == id) else {
            return Err(CommandError::UnknownSchedule(id));
        };
        if !s.is_pending() {
            return Err(CommandError::Refused(format!(
                "schedule #{id} is no longer pending ({:?})",
                s.outcome
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

    /// A pending operator schedule names this version: it is promoted at its time, not before.
    fn held_by_schedule(&self, version: &Version) -> bool {
        self.s
            .schedules
            .iter()
            .any(|s| s.is_pending() && s.version.as_ref() == Some(version))
    }

    fn cancel_schedules_of(&mut self, version: &Version, reason: &str) {
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
    fn run_schedules(&mut self) {
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
                Some(outcome) => {
                    let (name, reason) = match &outcome {
                        Outcome::Fired { promoted, .. } => {
                            ("fired", format!("promoting {promoted}"))
                        }
                        Outcome::Missed { reason } => ("missed", reason.clone()),
                        Outcome::Cancelled { reason } => ("cancelled", reason.clone()),
                        Outcome::Pending => ("pending", String::new()),
                    };
                    self.emit(Event::ScheduleEnded {
                        id: sch.id,
                        outcome: name.into(),
                        reason,
                    });
                    self.s.schedules[i].outcome = outcome;
                }
                None => {
                    let check = schedule::next_check(&sch, now, grace);
                    next = Some(next.map_or(check, |n| n.min(check)));
                }
            }
        }
        self.s.schedule_check = next;
        schedule::prune(&mut self.s.schedules);
    }

    /// A due schedule: promote its build if it is ready, wait for it within the grace, or give up.
    fn fire(&mut self, sch: &Schedule, grace: Duration) -> Option<Outcome> {
        let late = self.wall.duration_since(sch.instant()).unwrap_or_default();
        let ready = self
            .s
            .testing
            .as_ref()
            .filter(|t| t.is_ready() && sch.version.as_ref().is_none_or(|v| t.version() == v))
            .map(|t| t.version().clone());
        match ready {
            Some(version) if self.s.next.is_none() => {
                self.begin_promotion(SwitchWhy::Scheduled);
                Some(Outcome::Fired {
                    fired_at: control::rfc3339(self.wall),
                    promoted: version,
                })
            }
            _ if late > grace => Some(Outcome::Missed {
                reason: format!(
                    "due at {}, but {} could not be promoted within MISSED_SCHEDULE_GRACE ({grace:?})",
                    sch.at,
                    sch.version
                        .as_ref()
                        .map_or("the build under test".to_string(), Version::to_string)
                ),
            }),
            _ if sch.version.is_none()
                && self.s.testing.is_none()
                && self.s.pending.is_none() =>
            {
                Some(Outcome::Cancelled {
                    reason: format!("nothing was under test at {}", sch.at),
                })
            }
            // Due, but its build is not ready yet (starting after a restart): wait for it.
            _ => None,
        }
    }

    fn persist(&mut self) {
        let s = &*self.s;
        let now = Persisted {
            running: s
                .running
                .as_ref()
                .map(|r| r.version().clone())
                .or(s.restart.as_ref().map(|r| r.installed.version.clone())),
            testing: s
                .testing
                .as_ref()
                .map(|t| t.version().clone())
                .or(s.pending.as_ref().map(|p| p.version.clone())),
            promoting: s.next.as_ref().map(|n| n.version().clone()),
            schedules: s.schedules.clone(),
            txn: s.txn.clone(),
        };
        if s.persisted.as_ref() != Some(&now) {
            self.s.persisted = Some(now.clone());
            self.out.push(Action::Persist(now));
        }
    }
}

/// Which of the three slots an instance sits in (running, testing, or the next running).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotKey {
    Running,
    Testing,
    Next,
    Secondary,
    /// A fresh instance of running's version replacing an unresponsive one.
    Spare,
}

/// How long to wait before restarting running after `failures` failures in a row: at once the
/// first time, then 1 s, 2 s, 4 s … up to the cap.
fn restart_delay(failures: u32) -> Duration {
    if failures <= 1 {
        return Duration::ZERO;
    }
    let doublings = (failures - 2).min(16);
    (RESTART_BACKOFF_BASE * 2u32.pow(doublings)).min(RESTART_BACKOFF_CAP)
}

/// Why a build is not started: it must be newer than running and than the build being tested.
fn refusal(v: &Version, running: Option<&Version>, candidate: Option<&Version>) -> Option<String> {
    match (running, candidate) {
        (Some(r), _) if v <= r => Some(format!(
            "{v} is not newer than running {r}: drop a higher version"
        )),
        (_, Some(t)) if v <= t => Some(format!(
            "{v} is not newer than {t}, which is being tested: drop a higher version"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
