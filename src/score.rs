//! Scoring testing against running. Mirrored [`Pair`]s and both instances' log lines fold into a
//! [`Scorecard`]; [`evaluate`] is a pure function from a scorecard's [`Summary`] to a verdict
//! (`Wait`, `Promote` or `Reject(reasons)`) and a 0–100 score with its parts; [`run`] is the task
//! that does both as pairs arrive.

mod bodies;
pub mod canary;
mod evaluation;
mod judging;
mod latency;
mod limits;
pub mod logs;
mod pair;
mod replaying;
mod scorecard;
mod scorer;
pub mod stats;
mod statuses;
#[cfg(test)]
mod test_support;

pub use bodies::{DiffJudgement, DiffRow, MAX_DIFF_ROWS, MIN_NOISE_PAIRS};
pub use evaluation::{evaluate, server_error_check, Evaluation, Evidence, Verdict};
pub use judging::ScorePart;
pub use latency::replays_to_judge_alone;
pub use limits::{DIFF_HELD, FINGERPRINTED};
pub use pair::{Pair, NO_ANSWER};
pub use replaying::{replay_link, ReplayLink, ReplayWant, ScorerReplay, Unreplayable};
pub use scorecard::{
    endpoint_hash, endpoint_is, endpoint_key, key_hash, EndpointStats, LogCounts, Resources,
    Scorecard, SecondaryWatch, Summary, Watch,
};
pub use scorer::{run, Feeds, Scored, ScorerControl, UserRequests};
pub use statuses::StatusChanges;
