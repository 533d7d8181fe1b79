//! What understudy tells the outside world: each decision the supervisor makes becomes a typed
//! [`Event`], stamped with a sequence number and the time, logged with structured fields, kept in
//! a bounded backlog (so a listener that reconnects with the last number it saw misses nothing)
//! and broadcast to whoever listens (the admin API's SSE stream, the demo). A slow listener loses
//! old events; the supervisor never waits.

use std::path::PathBuf;

use semver::Version;
use serde::Serialize;

use crate::history::SwitchWhy;
use crate::layout::Role;

mod backlog;
pub use backlog::{Events, SEQ_BLOCK};

/// Events kept for a listener that falls behind before it starts losing the oldest, and for one
/// that reconnects with `Last-Event-ID`.
pub const EVENT_BACKLOG: usize = 1024;

/// The scorer's verdict without its reasons, as events and metrics show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    /// Too little evidence yet.
    Wait,
    /// Good to promote.
    Promote,
    /// A regression: turn it away.
    Reject,
}

impl std::fmt::Display for VerdictKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VerdictKind::Wait => "wait",
            VerdictKind::Promote => "promote",
            VerdictKind::Reject => "reject",
        })
    }
}

/// An event as it went out: its place in the sequence and when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stamped {
    /// 1, 2, 3 … in the order emitted, numbering on across restarts and upgrades (with a gap of
    /// at most [`SEQ_BLOCK`]), so resuming or deduplicating by number holds across them.
    pub seq: u64,
    /// When it was emitted, RFC 3339 (UTC).
    pub at: String,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

impl Stamped {
    /// The event's name (`promoted`, `rejected`, ...), as SSE's `event:` field carries it.
    pub fn name(&self) -> String {
        serde_json::to_value(&self.event)
            .ok()
            .and_then(|v| v["event"].as_str().map(str::to_string))
            .unwrap_or_else(|| "event".to_string())
    }
}

/// Something worth telling an operator. Its fields sit beside the envelope's (`seq`, `at`,
/// `event`) in one JSON object, so none may be named so: it would hide the envelope's.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A complete build was found in the base dir.
    BuildFound { file: String, version: Version },
    /// A build dropped while an earlier build of its version is being filed away (still
    /// stopping, or moving to `rejected/` or the archive) stays in the base dir until that is
    /// done, then is installed as a fresh build: it never lands in the folder on its way out.
    /// Also a build found being written again when its turn came: it waits for its writer.
    BuildWaiting {
        file: String,
        version: Version,
        reason: String,
    },
    /// A file in the base dir named like a build but not one understudy can take (a version
    /// that is not x.y.z, such as `myapp-v1.2.0.jar`, or a `.jar`/`.zip` of another identifier):
    /// left where it is, said once per name so a deploy that renamed wrongly is not silent.
    BuildIgnored { file: String, reason: String },
    /// At start, an installed build no part holds yet, found in a folder `state.json` did not
    /// name (its install, or its wait for a turn, was cut short by a stop) or saved as waiting:
    /// `outcome` says which, and whether it takes its turn as if just installed or is filed
    /// away, and why.
    BuildRecovered { version: Version, outcome: String },
    /// A build was refused or rejected; its files are in `rejected/`.
    Rejected {
        version: Version,
        reasons: Vec<String>,
    },
    /// A build is in its version folder (and unpacked), ready to be started.
    Installed { version: Version },
    /// A rollback switched users back to an earlier version (after its `promoted`).
    RolledBack { from: Option<Version>, to: Version },
    /// An instance was started.
    Started {
        role: Role,
        version: Version,
        number: u32,
        port: u16,
    },
    /// An instance answers and now plays its role.
    Ready {
        role: Role,
        version: Version,
        number: u32,
        port: u16,
    },
    /// An instance exited on its own.
    Exited {
        role: Role,
        version: Version,
        status: String,
    },
    /// An instance exited before it was ready because its port was taken meanwhile (not the
    /// build's fault): it is started again on another port.
    PortTaken {
        role: Role,
        version: Version,
        port: u16,
    },
    /// An instance was stopped and reaped.
    Stopped { version: Version, number: u32 },
    /// Running failed; it is started again after `delay_ms`.
    RestartScheduled {
        version: Version,
        attempt: u32,
        delay_ms: u64,
        reason: String,
    },
    /// The scorer evaluated testing.
    Scored {
        version: Version,
        verdict: VerdictKind,
        score: u32,
        pairs: u64,
        summary: String,
        /// Where answers differ, worst first, with noise rates and examples.
        diffs: Vec<crate::score::DiffRow>,
        /// What the pairs are: live, or replayed from recorded requests (boxed: events travel
        /// in actions, which are kept small).
        evidence: Box<crate::score::Evidence>,
    },
    /// Testing passed; a fresh running instance of its version is starting.
    Promoting { version: Version },
    /// A canary step began: `share` of users are served by testing, writes included.
    CanaryStep {
        version: Version,
        /// 1-based.
        step: usize,
        steps: usize,
        /// "20 %".
        share: String,
    },
    /// A canary step had too little evidence after three windows: it holds (the operator may
    /// promote or abort).
    CanaryHeld {
        version: Version,
        step: usize,
        why: String,
    },
    /// Traffic now goes to a new running version; `why` tells a promotion from a rollback.
    Promoted {
        from: Option<Version>,
        to: Version,
        why: SwitchWhy,
    },
    /// A promotion failed before the switch; running is untouched.
    PromotionFailed {
        version: Version,
        reasons: Vec<String>,
    },
    /// An operator paused automatic decisions.
    Paused,
    /// An operator resumed automatic decisions.
    Resumed,
    /// A promoted version did worse than the one it replaced within `ROLLBACK_WINDOW`.
    GuardTripped {
        version: Version,
        to: Version,
        reason: String,
    },
    /// A ready instance stopped answering its heartbeats (its process may still be there).
    HeartbeatLost {
        role: Role,
        version: Version,
        misses: u32,
        reason: String,
    },
    /// A lifecycle hook finished.
    HookRan {
        hook: String,
        version: Version,
        ok: bool,
        detail: String,
    },
    /// A promotion was scheduled to fire at `fires_at` (RFC 3339); the envelope's `at` stays
    /// when it was scheduled.
    Scheduled {
        id: u64,
        version: Option<Version>,
        #[serde(rename = "fires_at")]
        at: String,
    },
    /// A scheduled promotion is due but holds: understudy is paused, the build's latest
    /// evaluation fails, or its canary has steps left. It fires once that ends, within the grace.
    ScheduleHeld { id: u64, reason: String },
    /// A scheduled promotion fired (users were switched), failed, was missed, or was cancelled.
    ScheduleEnded {
        id: u64,
        outcome: String,
        reason: String,
    },
    /// A version folder was zipped into the archive.
    Archived { version: Version, zip: PathBuf },
    /// An old archive was deleted to stay within the size or disk budget.
    ArchiveDeleted { zip: PathBuf, reason: String },
    /// A rejected build was deleted from `rejected/`: past the newest 20, or for the budget.
    RejectedDeleted { dir: PathBuf, reason: String },
    /// The base dir is over `MAX_BASE_SIZE` (or free disk under `MIN_FREE_DISK`) by more than
    /// deleting the archives could fix, so they are kept; `why` says what takes the room. Said
    /// once, until [`Event::WithinBudget`].
    OverBudget { why: String },
    /// The base dir is within its budget again.
    WithinBudget,
    /// understudy cannot save its state (a full or read-only disk); it keeps serving and retries.
    DiskFull { why: String },
    /// Its state is saved again.
    DiskRecovered,
    /// Testing is turned away now (a reject verdict, a failure, an operator's abort); its files
    /// follow to `rejected/` once it is stopped, then `rejected` says so.
    Rejecting {
        version: Version,
        reasons: Vec<String>,
    },
    /// At start, a promotion or rollback interrupted after its switch was completed: `version`
    /// serves, `from` is filed away.
    SwitchCompleted {
        kind: String,
        version: Version,
        from: Option<Version>,
    },
    /// At start, a promotion or rollback interrupted before its switch was undone: `serving`
    /// keeps serving users.
    SwitchUndone {
        kind: String,
        version: Version,
        serving: Option<Version>,
    },
    /// Running failed `failures` times in a row: it is retried every `retry_every_ms`, and a
    /// newer build dropped now replaces it.
    CrashLooping {
        version: Version,
        failures: u32,
        retry_every_ms: u64,
    },
    /// A newly installed build replaced a crash-looping running version.
    CrashLoopReplaced {
        version: Version,
        replaced: Version,
        failures: u32,
    },
    /// The secondary instance of running's version is given up on for this build: its
    /// differences are judged without noise cancellation.
    SecondaryGivenUp { version: Version, reason: String },
    /// The secondary failed while a build is tested and is started again (given up after its
    /// third failure for that build).
    SecondaryRestarted {
        version: Version,
        failures: u32,
        reason: String,
    },
    /// Filing a version away (archive or `rejected/`) failed; `retrying` says whether it is tried
    /// again at the next collection or given up on (its folder stays).
    FilingFailed {
        version: Version,
        attempt: u32,
        error: String,
        retrying: bool,
    },
    /// Filing a version away (`what`: an archive or a rejection) was called off when it was due,
    /// because the version is in use (a rollback brought it back, say): its folder stays.
    FilingCalledOff {
        version: Version,
        what: String,
        reason: String,
    },
    /// The guard's rollback to `version` did not happen; the promoted version keeps serving.
    RollbackFailed { version: Version, reason: String },
    /// A promoted version held through `ROLLBACK_WINDOW`; the one it replaced is filed away.
    GuardEnded { version: Version, from: Version },
}

/// The families of events, as [`Event::topic`] sorts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// A build's way in and out: found, installed, rejected, rolled back, archived.
    Build,
    /// An instance's life: started, ready, exited, restarted, hooks.
    Instance,
    /// Scores, promotions, canary steps, pauses, schedules.
    Verdict,
    /// The disk holding the state files.
    Disk,
    /// The supervisor's own moves: transactions, crash loops, filing, the guard.
    Supervision,
}

/// Where the events are written in understudy's log, so a filter can select them.
const LOG_TARGET: &str = "understudy::events";

impl Event {
    /// Write the event to understudy's log as structured fields, named by what happened; each
    /// family of events is written by its own fn.
    fn log(&self) {
        match self.topic() {
            Topic::Build => self.log_build(),
            Topic::Instance => self.log_instance(),
            Topic::Verdict => self.log_verdict(),
            Topic::Disk => self.log_disk(),
            Topic::Supervision => self.log_supervision(),
        }
    }

    /// The family the event belongs to: one list, which the log and each webhook format write
    /// family by family.
    pub fn topic(&self) -> Topic {
        match self {
            Event::BuildFound { .. }
            | Event::BuildIgnored { .. }
            | Event::BuildWaiting { .. }
            | Event::BuildRecovered { .. }
            | Event::Installed { .. }
            | Event::RolledBack { .. }
            | Event::Rejected { .. }
            | Event::Archived { .. }
            | Event::ArchiveDeleted { .. }
            | Event::RejectedDeleted { .. } => Topic::Build,
            Event::Started { .. }
            | Event::Ready { .. }
            | Event::Exited { .. }
            | Event::PortTaken { .. }
            | Event::Stopped { .. }
            | Event::RestartScheduled { .. }
            | Event::HeartbeatLost { .. }
            | Event::HookRan { .. } => Topic::Instance,
            Event::Scored { .. }
            | Event::Promoting { .. }
            | Event::CanaryStep { .. }
            | Event::CanaryHeld { .. }
            | Event::Promoted { .. }
            | Event::PromotionFailed { .. }
            | Event::GuardTripped { .. }
            | Event::Paused
            | Event::Resumed
            | Event::Scheduled { .. }
            | Event::ScheduleHeld { .. }
            | Event::ScheduleEnded { .. } => Topic::Verdict,
            Event::DiskFull { .. }
            | Event::DiskRecovered
            | Event::OverBudget { .. }
            | Event::WithinBudget => Topic::Disk,
            Event::Rejecting { .. }
            | Event::SwitchCompleted { .. }
            | Event::SwitchUndone { .. }
            | Event::CrashLooping { .. }
            | Event::CrashLoopReplaced { .. }
            | Event::SecondaryGivenUp { .. }
            | Event::SecondaryRestarted { .. }
            | Event::FilingFailed { .. }
            | Event::FilingCalledOff { .. }
            | Event::RollbackFailed { .. }
            | Event::GuardEnded { .. } => Topic::Supervision,
        }
    }

    /// A build's way in and out: found, installed, rejected, rolled back, archived.
    fn log_build(&self) {
        match self {
            Event::BuildFound { file, version } => {
                tracing::info!(target: LOG_TARGET, %version, file, "build_found")
            }
            Event::BuildWaiting {
                file,
                version,
                reason,
            } => tracing::warn!(target: LOG_TARGET, %version, file, reason, "build_waiting"),
            Event::BuildIgnored { file, reason } => {
                tracing::warn!(target: LOG_TARGET, file, reason, "build_ignored")
            }
            Event::BuildRecovered { version, outcome } => {
                tracing::warn!(target: LOG_TARGET, %version, outcome, "build_recovered")
            }
            Event::Installed { version } => {
                tracing::info!(target: LOG_TARGET, %version, "installed")
            }
            Event::RolledBack { from, to } => {
                let from = from.as_ref().map(Version::to_string).unwrap_or_default();
                tracing::warn!(target: LOG_TARGET, from, %to, "rolled_back")
            }
            Event::Rejected { version, reasons } => {
                tracing::warn!(target: LOG_TARGET, %version, reasons = %reasons.join("; "), "rejected")
            }
            Event::Archived { version, zip } => {
                tracing::info!(target: LOG_TARGET, %version, zip = %zip.display(), "archived")
            }
            Event::ArchiveDeleted { zip, reason } => {
                tracing::info!(target: LOG_TARGET, zip = %zip.display(), reason, "archive_deleted")
            }
            Event::RejectedDeleted { dir, reason } => {
                tracing::info!(target: LOG_TARGET, dir = %dir.display(), reason, "rejected_deleted")
            }
            _ => {} // another family
        }
    }

    /// An instance's life: started, ready, exited, stopped, restarted, unresponsive, a hook.
    fn log_instance(&self) {
        match self {
            Event::Started {
                role,
                version,
                number,
                port,
            } => tracing::info!(target: LOG_TARGET, %role, %version, number, port, "started"),
            Event::Ready {
                role,
                version,
                number,
                port,
            } => tracing::info!(target: LOG_TARGET, %role, %version, number, port, "ready"),
            Event::Exited {
                role,
                version,
                status,
            } => tracing::warn!(target: LOG_TARGET, %role, %version, status, "exited"),
            Event::PortTaken {
                role,
                version,
                port,
            } => tracing::warn!(
                target: LOG_TARGET,
                %role,
                %version,
                port,
                reason = "its port was taken by another process before it bound it (a client's ephemeral port, if PORT_RANGE overlaps the kernel's ip_local_port_range); started again on another port",
                "port_taken"
            ),
            Event::Stopped { version, number } => {
                tracing::info!(target: LOG_TARGET, %version, number, "stopped")
            }
            Event::RestartScheduled {
                version,
                attempt,
                delay_ms,
                reason,
            } => {
                tracing::warn!(target: LOG_TARGET, %version, attempt, delay_ms, reason, "restart_scheduled")
            }
            Event::HeartbeatLost {
                role,
                version,
                misses,
                reason,
            } => {
                tracing::warn!(target: LOG_TARGET, %role, %version, misses, reason, "heartbeat_lost")
            }
            Event::HookRan {
                hook,
                version,
                ok,
                detail,
            } => {
                if *ok {
                    tracing::info!(target: LOG_TARGET, hook, %version, "hook_ran")
                } else {
                    tracing::warn!(target: LOG_TARGET, hook, %version, detail, "hook_failed")
                }
            }
            _ => {} // another family
        }
    }

    /// A verdict and what follows it: scores, promotions, the guard, the operator's pause and schedule.
    fn log_verdict(&self) {
        match self {
            Event::Scored {
                version,
                verdict,
                score,
                pairs,
                summary,
                ..
            } => {
                tracing::info!(target: LOG_TARGET, %version, %verdict, score, pairs, summary, "scored")
            }
            Event::Promoting { version } => {
                tracing::info!(target: LOG_TARGET, %version, "promoting")
            }
            Event::CanaryStep {
                version,
                step,
                steps,
                share,
            } => {
                tracing::info!(target: LOG_TARGET, %version, step, steps, share, "canary_step")
            }
            Event::CanaryHeld { version, step, why } => {
                tracing::warn!(target: LOG_TARGET, %version, step, why, "canary_held")
            }
            Event::Promoted { from, to, why } => {
                let from = from.as_ref().map(Version::to_string).unwrap_or_default();
                tracing::info!(target: LOG_TARGET, from, %to, %why, "promoted")
            }
            Event::PromotionFailed { version, reasons } => {
                tracing::error!(target: LOG_TARGET, %version, reasons = %reasons.join("; "), "promotion_failed")
            }
            Event::GuardTripped {
                version,
                to,
                reason,
            } => tracing::error!(target: LOG_TARGET, %version, %to, reason, "guard_tripped"),
            Event::Paused => tracing::info!(target: LOG_TARGET, "paused"),
            Event::Resumed => tracing::info!(target: LOG_TARGET, "resumed"),
            Event::Scheduled { id, version, at } => {
                let version = version.as_ref().map(Version::to_string).unwrap_or_default();
                tracing::info!(target: LOG_TARGET, id, version, fires_at = at, "scheduled")
            }
            Event::ScheduleHeld { id, reason } => {
                tracing::warn!(target: LOG_TARGET, id, reason, "schedule_held")
            }
            Event::ScheduleEnded {
                id,
                outcome,
                reason,
            } => {
                if outcome == "missed" || outcome == "failed" {
                    tracing::error!(target: LOG_TARGET, id, outcome, reason, "schedule_ended")
                } else {
                    tracing::info!(target: LOG_TARGET, id, outcome, reason, "schedule_ended")
                }
            }
            _ => {} // another family
        }
    }

    /// Whether understudy can save its state, and whether the base dir keeps its budget.
    fn log_disk(&self) {
        match self {
            Event::DiskFull { why } => tracing::error!(target: LOG_TARGET, why, "disk_full"),
            Event::DiskRecovered => tracing::info!(target: LOG_TARGET, "disk_recovered"),
            Event::OverBudget { why } => tracing::warn!(target: LOG_TARGET, why, "over_budget"),
            Event::WithinBudget => tracing::info!(target: LOG_TARGET, "within_budget"),
            _ => {} // another family
        }
    }

    /// What the supervisor decided that no other event says: a rejection under way, a switch
    /// resolved at start, a crash loop, a secondary given up, filing or a rollback that failed.
    fn log_supervision(&self) {
        const T: &str = LOG_TARGET;
        match self {
            Event::Rejecting { version, reasons } => {
                tracing::warn!(target: T, %version, reasons = %reasons.join("; "), "rejecting")
            }
            Event::SwitchCompleted {
                kind,
                version,
                from,
            } => {
                let from = from.as_ref().map(Version::to_string).unwrap_or_default();
                tracing::warn!(target: T, kind, %version, from, "switch_completed")
            }
            Event::SwitchUndone {
                kind,
                version,
                serving,
            } => {
                let serving = serving.as_ref().map(Version::to_string).unwrap_or_default();
                tracing::warn!(target: T, kind, %version, serving, "switch_undone")
            }
            Event::CrashLooping {
                version,
                failures,
                retry_every_ms,
            } => tracing::error!(target: T, %version, failures, retry_every_ms, "crash_looping"),
            Event::CrashLoopReplaced {
                version,
                replaced,
                failures,
            } => tracing::warn!(target: T, %version, %replaced, failures, "crash_loop_replaced"),
            Event::SecondaryGivenUp { version, reason } => {
                tracing::warn!(target: T, %version, reason, "secondary_given_up")
            }
            Event::SecondaryRestarted {
                version,
                failures,
                reason,
            } => tracing::warn!(target: T, %version, failures, reason, "secondary_restarted"),
            Event::FilingFailed {
                version,
                attempt,
                error,
                retrying,
            } => tracing::error!(target: T, %version, attempt, error, retrying, "filing_failed"),
            Event::FilingCalledOff {
                version,
                what,
                reason,
            } => tracing::warn!(target: T, %version, what, reason, "filing_called_off"),
            Event::RollbackFailed { version, reason } => {
                tracing::error!(target: T, %version, reason, "rollback_failed")
            }
            Event::GuardEnded { version, from } => {
                tracing::info!(target: T, %version, %from, "guard_ended")
            }
            _ => {} // another family
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `scheduled`'s own instant once came out as `at`, hiding the envelope's (when the event
    /// happened): events looked out of order and webhooks never learnt when it was scheduled.
    #[test]
    fn a_scheduled_event_keeps_the_envelope_at_and_says_when_it_fires() {
        let stamped = Stamped {
            seq: 7,
            at: "2026-12-07T02:00:00Z".to_string(),
            event: Event::Scheduled {
                id: 3,
                version: Some(Version::new(1, 4, 0)),
                at: "2026-12-07T03:00:00Z".to_string(),
            },
        };
        let v = serde_json::to_value(&stamped).unwrap();
        assert_eq!(v["at"], "2026-12-07T02:00:00Z", "{v}");
        assert_eq!(v["fires_at"], "2026-12-07T03:00:00Z", "{v}");
        assert_eq!(v["event"], "scheduled", "{v}");
    }
}
