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

impl Judging {
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
