//! The supervisor's decisions: [`decide()`] takes the [`State`], an [`Input`] and the time and
//! answers with [`Action`]s. Pure: no I/O, no clock, no logging; what an operator must hear goes
//! out as [`Action::Emit`]. Its steps live by what they own: `install` (a dropped build until it
//! is placed), `ports`, `lifecycle` (an instance from start to reaped), `secondary`, `promotion`
//! (verdicts, transactions, the guard, rollbacks), `commands` (an operator's, and schedules) and
//! `filing` (archives and the disk).

mod canary;
mod commands;
mod filing;
mod install;
mod lifecycle;
mod ports;
mod promotion;
mod resume;
mod secondary;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use semver::Version;
use tokio::time::Instant;

use super::control::{Command, CommandError};
use super::schedule::Now;
use super::state::{Persisted, Phase, Resumed, Slot, State};
use crate::artifact::Installed;
use crate::events::Event;
use crate::history::SwitchWhy;
use crate::hooks::Hook;
use crate::instance::{InstanceEvent, InstanceId};
use crate::layout::Role;
use crate::score::{Scored, ScorerControl};
use crate::watcher::Dropped;

#[cfg(test)]
pub(super) use install::refusal;

/// How often archives are checked against the size and disk budgets between filings.
pub(super) const GC_EVERY: Duration = Duration::from_secs(60);
/// A running instance that stayed up and answering this long counts as a good start: its next
/// failure (a crash or a hang) counts from one again.
pub(super) const RESTART_STABLE: Duration = Duration::from_secs(10);
/// Delay before the second restart in a row; doubled for each further one up to the cap.
pub(super) const RESTART_BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest wait between restarts of a failing running version.
pub(super) const RESTART_BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Failures in a row past which (at the next one) understudy says loudly that running is
/// crash-looping, keeps retrying at the cap, and lets a newly dropped build replace it.
pub(super) const MAX_RUNNING_RESTARTS: u32 = 5;
/// Attempts at filing a version away (a full disk, say) before understudy gives up on it.
pub(super) const MAX_FILING_ATTEMPTS: u32 = 10;
/// Requests the new running must have answered since a switch before its 5xx rate is judged
/// (and then only a rate worse with `CONFIDENCE` rolls it back).
pub(super) const GUARD_MIN_REQUESTS: u64 = 20;
/// What the guard's reasons for a rejection start with: made by `guard_rollback`, taken off
/// again by a resume that finds only the rollback's journaled entry.
const GUARD_REJECTION: &str = "rolled back by the guard: ";
/// How far back the traffic before a switch is looked at, for the guard's baseline.
pub(super) const GUARD_BASELINE: Duration = Duration::from_secs(60);
/// How long a port found bound by another program is left alone before it is tried again.
pub(super) const BUSY_PORT_RETRY: Duration = Duration::from_secs(1);

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

/// Why the executor gave a drop's turn back instead of installing or refusing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawn {
    /// It is no longer in the base dir (taken away, or installed from an earlier report of it).
    Gone,
    /// It is being written again: the watcher reports it once it is complete.
    BeingWritten,
}

/// Everything the supervisor reacts to.
#[derive(Debug)]
pub enum Input {
    /// At start: what was running and testing before (boxed: it is large, and once).
    Resume(Box<Resumed>),
    /// The watcher found a complete build.
    Dropped(Dropped),
    /// The watcher found a file named like a build that is not one (said, nothing done).
    Ignored { file: String, reason: String },
    /// A drop given its turn ([`Action::Install`] if `install`, else [`Action::Refuse`]) was
    /// neither installed nor refused, for the reason `why`.
    Withdrawn {
        dropped: Dropped,
        why: Withdrawn,
        install: bool,
    },
    /// An install finished.
    Installed {
        version: Version,
        result: Result<Installed, String>,
    },
    /// An installed build waits for its protected copy, which failed for a reason of
    /// understudy's own (a full disk): it is tried again, and the build is not rejected.
    InstallWaiting {
        version: Version,
        file: String,
        reason: String,
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
    /// Archiving or rejecting a version finished. `filing` is the [`Action::Archive`] or
    /// [`Action::Reject`] it reports on, so a queued retry ends when it succeeds and is made
    /// again when it fails; `None` for a refused drop, which is not retried.
    Filed {
        version: Version,
        result: Result<Filed, String>,
        filing: Option<Action>,
    },
    /// A collection finished: what it deleted, and whether the base dir stays over budget.
    Collected(crate::archive::Collection),
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
    /// This understudy, started by an upgrade, serves now (the old one was told): what waited
    /// for it (schedules, the guard, collections, retried filings, commands) goes on.
    Serving,
    /// A reload (SIGHUP) changed the scoring thresholds: the guard judges by the same
    /// `MAX_5XX_DELTA` and `CONFIDENCE` the scorer now does, from the next traffic sample on.
    Reloaded { max_5xx_delta: f64, confidence: f64 },
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
    /// With `restarting` and nothing serving: when running is started again (a crash loop's
    /// backoff), which users are told to wait for (`Retry-After`).
    pub restart_at: Option<Instant>,
    /// Users' requests wait (bounded) instead of being told to retry, as at a switch: running
    /// crashed and the guard brings back the version it replaced, or it is started again at
    /// once.
    pub hold: Option<crate::proxy::Hold>,
    /// In a canary step, the share of users testing serves (basis points); 0 outside one.
    pub canary: u32,
}

/// What the executor is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Move a dropped build into its version folder; reports [`Input::Installed`].
    Install(Dropped),
    /// The install under way was aborted by an operator: one waiting for room for its protected
    /// copy stops waiting and reports [`Input::Installed`] as failed.
    AbortInstall,
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
    /// Rotate instance logs, prune `rejected/`, delete old archives over budget; reports
    /// [`Input::Collected`].
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
    /// Append a canary step's share of users (or its end, at 0 %) to the history, so it says
    /// which build answered a user at any instant, not only which one ran.
    RecordShare {
        /// The version serving the rest of the users.
        running: Version,
        /// The build under test and its share.
        share: crate::history::Share,
    },
    /// Write the state file (boxed: it is large).
    Persist(Box<Persisted>),
    /// Tell the scorer what to score.
    Score(ScorerControl),
    /// Announce a decision.
    Emit(Event),
    /// Answer the command with this `id`.
    Reply {
        id: u64,
        result: Result<String, CommandError>,
    },
    /// Hand the listeners, the base dir and these children (by part name) to a new understudy
    /// started from `binary`, and answer the command `reply` when it serves or failed.
    Upgrade {
        reply: u64,
        binary: Option<PathBuf>,
        children: Vec<(&'static str, InstanceId)>,
    },
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
        Input::Resume(r) => d.resume(*r),
        Input::Dropped(dropped) => d.dropped(dropped),
        Input::Ignored { file, reason } => d.emit(Event::BuildIgnored { file, reason }),
        Input::Withdrawn {
            dropped,
            why,
            install,
        } => d.withdrawn(dropped, why, install),
        Input::Installed { version, result } => d.installed(version, result),
        Input::InstallWaiting {
            version,
            file,
            reason,
        } => d.emit(Event::BuildWaiting {
            file,
            version,
            reason,
        }),
        Input::Started { id, result } => d.started(id, result),
        Input::Instance(e) => d.instance(e),
        Input::Stopped { id } => d.stopped(id),
        Input::Scored(s) => d.scored(s),
        Input::Filed {
            version,
            result,
            filing,
        } => d.filed(version, result, filing),
        Input::Collected(c) => d.collected(c),
        Input::Tick => d.tick(),
        Input::Restored { version, result } => d.restored(version, result),
        Input::Traffic { requests, errors } => d.traffic(requests, errors),
        Input::HookDone {
            hook,
            id,
            version,
            result,
        } => d.hook_done(hook, id, version, result),
        // Still taking over: the old understudy may yet go on without hearing of it.
        Input::Command { id, .. } if d.s.taking_over => {
            reply = Some(Action::Reply {
                id,
                result: Err(CommandError::TakingOver),
            });
        }
        Input::Command { id, command } => {
            reply = d
                .command(id, command)
                .map(|result| Action::Reply { id, result });
        }
        Input::Serving => d.now_serving(),
        Input::Disk { failing } => d.disk(failing),
        Input::Reloaded {
            max_5xx_delta,
            confidence,
        } => {
            d.s.guard_max_delta = max_5xx_delta;
            d.s.guard_confidence = confidence;
        }
    }
    d.admit_drops();
    d.run_schedules();
    d.fit_secondary();
    d.assign_ports();
    d.end_stale_share();
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
            port_retries: 0,
        }
    }

    fn slot_ref(&self, part: SlotKey) -> Option<&Slot> {
        match part {
            SlotKey::Running => self.s.running.as_ref(),
            SlotKey::Testing => self.s.testing.as_ref(),
            SlotKey::Next => self.s.next.as_ref(),
            SlotKey::Spare => self.s.spare.as_ref(),
            SlotKey::Secondary => self.s.secondary.as_ref(),
            SlotKey::CanaryOut => self.s.canary_out.as_ref().map(|(s, _)| s),
        }
    }

    fn slot_mut(&mut self, part: SlotKey) -> Option<&mut Slot> {
        match part {
            SlotKey::Running => self.s.running.as_mut(),
            SlotKey::Testing => self.s.testing.as_mut(),
            SlotKey::Next => self.s.next.as_mut(),
            SlotKey::Spare => self.s.spare.as_mut(),
            SlotKey::Secondary => self.s.secondary.as_mut(),
            SlotKey::CanaryOut => self.s.canary_out.as_mut().map(|(s, _)| s),
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
        } else if self.s.canary_out.as_ref().is_some_and(|(s, _)| s.id == id) {
            Some(SlotKey::CanaryOut)
        } else {
            None
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
            pending: s.pending.as_ref().map(|p| p.version.clone()),
            promoting: s.next.as_ref().map(|n| n.version().clone()),
            schedules: s.schedules.clone(),
            txn: s.txn.clone(),
            canary: s.canary.as_ref().zip(s.testing.as_ref()).map(|(c, t)| {
                super::state::JournaledCanary {
                    version: t.version().clone(),
                    step: c.step,
                }
            }),
            guard: s
                .guard
                .as_ref()
                .map(super::state::Guard::journaled)
                .or_else(|| s.held_guard.clone())
                .or_else(|| s.tripped_guard.clone()),
            filings: self.journaled_filings(),
            guard_failed: s.guard_failed.clone(),
            paused: s.paused,
            hook_block: s.hook_block.clone(),
        };
        if s.persisted.as_ref() != Some(&now) {
            self.s.persisted = Some(now.clone());
            self.out.push(Action::Persist(Box::new(now)));
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
    /// The build that served a canary share, serving it still while its promotion starts.
    CanaryOut,
}

impl SlotKey {
    /// Its name in a handover to a new understudy.
    fn name(self) -> &'static str {
        match self {
            SlotKey::Running => "running",
            SlotKey::Testing => "testing",
            SlotKey::Next => "next",
            SlotKey::Secondary => "secondary",
            SlotKey::Spare => "spare",
            SlotKey::CanaryOut => "canary",
        }
    }
}
