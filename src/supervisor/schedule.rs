//! Effective-dated promotions: "promote 1.4.0 at 03:00". A schedule is kept in the state file
//! from the moment it is accepted, fires at most once (its outcome is saved in the same write as
//! the promotion it starts), and one that came due while understudy was down fires at start if
//! it is still within `MISSED_SCHEDULE_GRACE`, or is recorded as missed, never silently dropped.

use std::time::{Duration, SystemTime};

use semver::Version;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::supervisor::control::rfc3339;

/// Finished schedules kept for status and the state file; older ones are forgotten.
pub const KEEP_FINISHED: usize = 20;

/// The two clocks read together: `decide` plans with the monotonic one and dates with the wall
/// one. Read once per input by the executor, never inside `decide`.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// For timers and durations.
    pub mono: Instant,
    /// For effective dates.
    pub wall: SystemTime,
}

impl Now {
    /// Both clocks, now.
    pub fn read() -> Now {
        Now {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// Who asked for the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// `POST /api/promote {"at": ...}` or `understudy promote --at`.
    Operator,
    /// `PROMOTE_AT` in the configuration.
    Config,
}

/// Where a schedule stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Outcome {
    /// Not yet due, or due and waiting for its build to be ready (within the grace).
    Pending,
    /// The promotion began at `at`.
    Fired {
        /// When it fired, RFC 3339.
        fired_at: String,
        /// The version it promoted.
        promoted: Version,
    },
    /// It came due but could not fire within the grace.
    Missed {
        /// Why.
        reason: String,
    },
    /// It will never fire.
    Cancelled {
        /// Why.
        reason: String,
    },
}

/// One scheduled promotion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// For listing and cancelling.
    pub id: u64,
    /// The build to promote; `None` (from `PROMOTE_AT`) means whichever is under test then.
    pub version: Option<Version>,
    /// The effective instant, RFC 3339 (UTC).
    pub at: String,
    /// Who asked.
    pub origin: Origin,
    /// Where it stands.
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl Schedule {
    /// A pending schedule for `at`.
    pub fn new(id: u64, version: Option<Version>, at: SystemTime, origin: Origin) -> Schedule {
        Schedule {
            id,
            version,
            at: rfc3339(at),
            origin,
            outcome: Outcome::Pending,
        }
    }

    /// The effective instant; an unreadable one (a hand-edited state file) counts as long past.
    pub fn instant(&self) -> SystemTime {
        crate::history::parse_rfc3339(&self.at).unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// Not fired, missed or cancelled yet.
    pub fn is_pending(&self) -> bool {
        self.outcome == Outcome::Pending
    }
}

/// When a pending schedule next needs a look: at its instant, or (once due) when its grace
/// ends, mapped onto the monotonic clock.
pub fn next_check(s: &Schedule, now: Now, grace: Duration) -> Instant {
    let at = s.instant();
    let target = if now.wall < at { at } else { at + grace };
    let ahead = target
        .duration_since(now.wall)
        .unwrap_or(Duration::ZERO)
        // Clocks drift: never spin, look again a little later at the latest.
        .max(Duration::from_millis(10));
    now.mono + ahead
}

/// Drop the oldest finished schedules beyond [`KEEP_FINISHED`].
pub fn prune(schedules: &mut Vec<Schedule>) {
    let finished = schedules.iter().filter(|s| !s.is_pending()).count();
    let mut excess = finished.saturating_sub(KEEP_FINISHED);
    schedules.retain(|s| {
        if excess > 0 && !s.is_pending() {
            excess -= 1;
            false
        } else {
            true
        }
    });
}
