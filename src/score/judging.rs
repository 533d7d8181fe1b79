//! What every part of the score is judged in: a [`ScorePart`] to show, and the [`Judging`] the
//! parts add their regressions and doubts to. Shared by [`evaluate`](super::evaluate) and the
//! bodies part, which the evaluation calls: kept apart so that neither imports the other back.

use serde::Serialize;

use super::stats::RateCheck;

/// One part of the score, so a user can see why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScorePart {
    /// What is measured.
    pub name: &'static str,
    /// 0–100 for this part.
    pub score: u32,
    /// Measured value in words.
    pub detail: String,
}

/// What the parts found: regressions (reasons to reject) and doubts (reasons to wait).
#[derive(Default)]
pub(super) struct Judging {
    /// Regressions: any one rejects.
    pub(super) reasons: Vec<String>,
    /// Doubts: with no regression, any one waits.
    pub(super) unsure: Vec<String>,
    /// Endpoints a doubt waits on for more pairs (keys as in the summary).
    pub(super) waiting_on: Vec<String>,
}

/// Where an endpoint short of `MIN_ENDPOINT_PAIRS` gets its pairs: replayed, or, where nothing
/// can be replayed, why not and what the operator can do instead.
pub(super) struct MorePairs<'a> {
    /// `REPLAY=auto`.
    pub(super) replay: bool,
    /// A secondary runs to replay against.
    pub(super) secondary: bool,
    /// Endpoints with no recorded request left to replay.
    pub(super) unreplayable: &'a std::collections::BTreeSet<String>,
    /// `MIN_ENDPOINT_PAIRS`.
    pub(super) min_pairs: u64,
}

impl MorePairs<'_> {
    /// Whether replaying can bring `endpoint` its pairs (`REPLAY=auto`, a secondary to replay
    /// against, a recorded request of it left): a rule that waits where it cannot waits for ever.
    pub(super) fn can_replay(&self, endpoint: &str) -> bool {
        self.replay && self.secondary && !self.unreplayable.contains(endpoint)
    }
}

impl Judging {
    /// `what` on `endpoint` is a doubt until it has `MIN_ENDPOINT_PAIRS` pairs: wait, say where
    /// its pairs will come from, and ask replay for it.
    pub(super) fn too_few(&mut self, what: &str, endpoint: &str, more: &MorePairs) {
        let minimum = format!("too few to judge, MIN_ENDPOINT_PAIRS is {}", more.min_pairs);
        self.wait_for_pairs(
            what,
            endpoint,
            more,
            &minimum,
            ", or a lower MIN_ENDPOINT_PAIRS judges it",
        );
    }

    /// As [`too_few`](Self::too_few), for a judgement whose minimum is not `MIN_ENDPOINT_PAIRS`
    /// alone: `minimum` says what it is, `lower` how else (if at all) to judge sooner.
    pub(super) fn wait_for_pairs(
        &mut self,
        what: &str,
        endpoint: &str,
        more: &MorePairs,
        minimum: &str,
        lower: &str,
    ) {
        let why = if !more.replay {
            "REPLAY is off"
        } else if !more.secondary {
            "no secondary runs to replay it against"
        } else if more.unreplayable.contains(endpoint) {
            "no recorded request of it is left to replay (only GET and HEAD without a body are recorded; its next request for a URL not replayed yet is, at once)"
        } else {
            ""
        };
        let then = if why.is_empty() {
            "replaying its recorded requests".to_string()
        } else {
            format!("{why}: `understudy abort` rejects the build, `understudy promote` promotes it{lower}")
        };
        self.unsure.push(format!("{what}: {minimum}; {then}"));
        if !self.waiting_on.iter().any(|k| k == endpoint) {
            self.waiting_on.push(endpoint.to_string());
        }
    }

    /// Judge a rate by its confidence interval: `Worse` rejects with `what`, `Undecided` above
    /// the margin waits, anything else passes.
    pub(super) fn rate(
        &mut self,
        check: RateCheck,
        point_over: bool,
        confidence: f64,
        what: String,
    ) {
        match check {
            RateCheck::Worse { .. } => self.reasons.push(format!(
                "{what} (at {:.0}% confidence)",
                confidence * 100.0
            )),
            RateCheck::Undecided { low, high } if point_over => self.unsure.push(format!(
                "{what}, but not yet sure at {:.0}% confidence (excess between {:.1} and {:.1} points)",
                confidence * 100.0,
                low * 100.0,
                high * 100.0
            )),
            _ => {}
        }
    }
}
