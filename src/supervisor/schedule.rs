//! Effective-dated promotions: "promote 1.4.0 at 03:00". A schedule is kept in the state file
//! from the moment it is accepted and fires at most once: it is `promoting` from the write that
//! starts its promotion, and `fired` in the write that journals the switch of users. A promotion
//! undone at start (killed before the switch) re-opens it; one that failed ends it `failed`. One
//! that came due while understudy was down fires at start if it is still within
//! `MISSED_SCHEDULE_GRACE`, or is recorded as missed, never silently dropped.

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

    /// The wall-clock time of the monotonic instant `t`, before or after `mono` alike: status
    /// shows deadlines (the guard's watch, schedules) ahead as well as moments past.
    pub fn wall_of(&self, t: Instant) -> SystemTime {
        // Checked: an instant past what `SystemTime` can hold reads as the reading, not a panic.
        let wall = if t >= self.mono {
            self.wall.checked_add(t - self.mono)
        } else {
            self.wall.checked_sub(self.mono - t)
        };
        wall.unwrap_or(self.wall)
    }

    /// `read` if the wall clock was set since `anchor` was read (more than a second off what
    /// `anchor` projects), else `anchor`: so the same instant converts to the same wall time
    /// publish after publish, not one nanoseconds apart each time both clocks are read.
    pub fn keep_anchor(anchor: Now, read: Now) -> Now {
        let projected = anchor.wall_of(read.mono);
        let off = match read.wall.duration_since(projected) {
            Ok(ahead) => ahead,
            Err(behind) => behind.duration(),
        };
        if off > Duration::from_secs(1) {
            read
        } else {
            anchor
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
    /// Due, and the promotion it started is under way: not fired until users are switched, so a
    /// promotion undone at start re-opens it.
    Promoting {
        /// When its promotion began, RFC 3339.
        started_at: String,
        /// The version being promoted.
        promoting: Version,
    },
    /// Its promotion switched users to its build.
    Fired {
        /// When users were switched, RFC 3339.
        fired_at: String,
        /// The version it promoted.
        promoted: Version,
    },
    /// It came due but could not fire within the grace.
    Missed {
        /// Why.
        reason: String,
    },
    /// The promotion it started failed (`PRE_PROMOTE` refused it, the new instance failed); it
    /// is not retried on its own: an operator's promote, or a new schedule, tries again.
    Failed {
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

    /// Waiting for its time (or, due, for its build): it has not started a promotion.
    pub fn is_pending(&self) -> bool {
        self.outcome == Outcome::Pending
    }

    /// Not ended yet: pending, or its promotion under way.
    pub fn is_open(&self) -> bool {
        matches!(self.outcome, Outcome::Pending | Outcome::Promoting { .. })
    }

    /// The name of its state and the reason it ended, as `schedule_ended` says them.
    pub fn ending(&self) -> (&'static str, String) {
        match &self.outcome {
            Outcome::Pending => ("pending", String::new()),
            Outcome::Promoting { promoting, .. } => ("promoting", format!("promoting {promoting}")),
            Outcome::Fired { promoted, .. } => ("fired", format!("users switched to {promoted}")),
            Outcome::Failed { reason } => ("failed", reason.clone()),
            Outcome::Missed { reason } => ("missed", reason.clone()),
            Outcome::Cancelled { reason } => ("cancelled", reason.clone()),
        }
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
    let finished = schedules.iter().filter(|s| !s.is_open()).count();
    let mut excess = finished.saturating_sub(KEEP_FINISHED);
    schedules.retain(|s| {
        if excess > 0 && !s.is_open() {
            excess -= 1;
            false
        } else {
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Instants after the clocks were read are deadlines ahead, not "now"; those before are past.
    #[test]
    fn wall_of_places_instants_before_and_after_the_reading() {
        let now = Now::read();
        let min = Duration::from_secs(60);
        assert_eq!(now.wall_of(now.mono), now.wall);
        assert_eq!(now.wall_of(now.mono + min), now.wall + min);
        let past = now.mono.checked_sub(min).expect("an instant a minute back");
        assert_eq!(now.wall_of(past), now.wall - min);
    }

    /// The anchor is kept while the clocks agree with it, so conversions do not jitter; a wall
    /// clock set since (NTP step, an operator) takes over.
    #[test]
    fn keep_anchor_holds_until_the_wall_clock_is_set() {
        let anchor = Now::read();
        let later = Duration::from_secs(30);
        let drifted = Now {
            mono: anchor.mono + later,
            wall: anchor.wall + later + Duration::from_micros(3),
        };
        assert_eq!(Now::keep_anchor(anchor, drifted).wall, anchor.wall);
        let set = Now {
            mono: anchor.mono + later,
            wall: anchor.wall + later + Duration::from_secs(3600),
        };
        assert_eq!(Now::keep_anchor(anchor, set).wall, set.wall);
    }
}
