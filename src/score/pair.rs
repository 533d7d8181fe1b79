//! What the mirror hands the scorer: one mirrored request and both answers. Owned by the scorer so
//! that it depends on nothing of the proxy's.

use std::time::Duration;

use http::Method;

use crate::diff::Difference;
use crate::instance::InstanceId;

/// [`Pair::secondary_status`] of a secondary that was asked and gave no answer: counted as a
/// server error there, as testing's missing answer is on its side.
pub const NO_ANSWER: u16 = 0;

/// One mirrored request: what running, testing and (when one runs) the secondary answered.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The testing instance the copy went to.
    pub testing: InstanceId,
    /// Request method.
    pub method: Method,
    /// Request path (no query).
    pub path: String,
    /// Running's status.
    pub running_status: u16,
    /// Running's time to headers.
    pub running_latency: Duration,
    /// Testing's status; `None` when it failed or timed out.
    pub testing_status: Option<u16>,
    /// Testing's time to the end of its answer's body, on the mirror's path.
    pub testing_latency: Option<Duration>,
    /// The secondary's (running's version) time to the end of its answer to the very same copy,
    /// on the very same path: the fair comparator for testing's latency.
    pub secondary_latency: Option<Duration>,
    /// The secondary's status for that same copy; [`NO_ANSWER`] when it was asked and gave none
    /// (failed or timed out), `None` when it was not asked. Testing's status is judged against it
    /// rather than running's: running answered the user first, and state it changed (a one-time
    /// token consumed) or an outage after it makes the copies answer otherwise on both versions
    /// alike.
    pub secondary_status: Option<u16>,
    /// Why testing gave no answer, in words (the mirror's error, displayed).
    pub testing_error: Option<String>,
    /// How testing's answer differs from running's (empty: equivalent), where both statuses
    /// agreed, both bodies were read and the pair was sampled (`DIFF_SAMPLE`); else `None`.
    pub diffs: Option<Vec<Difference>>,
    /// How the secondary instance of running's version differs from running (the noise), under
    /// the same conditions; `None` without a secondary answer.
    pub noise: Option<Vec<Difference>>,
    /// Set (to the recorded request's serial) when this pair is a replayed recorded request, not
    /// a live one: "running" here is the secondary's answer, and its noise the secondary's answer
    /// to the same request sent again.
    pub replayed: Option<u64>,
}
