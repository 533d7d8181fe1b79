//! The statuses part of the score: an endpoint whose status changed on testing (401 → 200, a
//! 200 that became a 302 or a 204, a 200 that became a 403) is a difference like a changed
//! field, judged per endpoint against its noise (how often running's own secondary answers the
//! same copy with another status than running), and listed in the differences table as a
//! `$status` row. Server errors and missing answers stay the 5xx rule's, vanished endpoints the
//! endpoints rule's.

use serde::Serialize;

use super::bodies::{DiffJudgement, DiffRow};
use super::judging::{Judging, MorePairs, ScorePart};
use super::pair::{Pair, NO_ANSWER};
use super::scorecard::{EndpointStats, Summary};
use super::stats::{self, RateCheck};
use crate::config::ScoreConfig;
use crate::diff::DiffKind;

/// Distinct changes (running's status, testing's) an endpoint keeps as examples; later kinds are
/// counted, not named.
const EXAMPLES: usize = 3;

/// One endpoint's status changes: plain counters and a fixed array, so tallying a pair allocates
/// nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatusChanges {
    /// Pairs where running's and testing's statuses are both answers under 500 (5xx and missing
    /// answers are judged by the 5xx rule).
    pub judged: u64,
    /// Of those, pairs where testing's status differs from running's and from the secondary's
    /// answer to the same copy where it gave one (not 304 → 200: a new build's content is new).
    pub changed: u64,
    /// Live pairs where running and the secondary both answered under 500: the noise's base.
    pub noise_of: u64,
    /// Of those, pairs where the secondary's status differs from running's.
    pub noise: u64,
    /// The first kinds of change seen: (running's status, testing's, pairs).
    pub examples: [(u16, u16, u64); EXAMPLES],
}

/// Whether an answer `to` where `from` was answered is another status. A 304 answered with a
/// 200 is not: the client's cached copy is simply stale for the new build. Nor is a route or
/// method running does not know (404, 405, 501) that the new build answers 2xx, or 401/403 (a
/// new route behind authentication the caller may not use yet): new routes are what new builds
/// are for.
fn is_change(from: u16, to: u16) -> bool {
    let fresh = from == 304 && to == 200;
    let new_route =
        matches!(from, 404 | 405 | 501) && ((200..300).contains(&to) || matches!(to, 401 | 403));
    from != to && !fresh && !new_route
}

/// An answer's status, when it is one the status rule judges (under 500).
fn judged_status(status: u16) -> Option<u16> {
    (status != NO_ANSWER && status < 500).then_some(status)
}

impl StatusChanges {
    /// Count one pair. A replayed pair's "running" is the secondary's own answer, so it says
    /// nothing about the noise.
    pub(super) fn record(&mut self, p: &Pair) {
        let Some(running) = judged_status(p.running_status) else {
            return;
        };
        let secondary = p.secondary_status.and_then(judged_status);
        if let (Some(s), None) = (secondary, p.replayed) {
            self.noise_of += 1;
            self.noise += u64::from(is_change(running, s));
        }
        let Some(testing) = p.testing_status.and_then(judged_status) else {
            return;
        };
        self.judged += 1;
        if is_change(running, testing) && secondary.is_none_or(|s| is_change(s, testing)) {
            self.changed += 1;
            self.example(running, testing);
        }
    }

    /// Count one change among the examples, if it is one of theirs or there is room.
    fn example(&mut self, running: u16, testing: u16) {
        let slot = self
            .examples
            .iter()
            .position(|e| (e.0, e.1) == (running, testing))
            .or_else(|| self.examples.iter().position(|e| e.2 == 0));
        if let Some(i) = slot {
            self.examples[i] = (running, testing, self.examples[i].2 + 1);
        }
    }

    /// The changes in words, most frequent first: "running 401, testing 200 (20 pairs)".
    fn described(&self) -> String {
        let mut seen: Vec<_> = self.examples.iter().filter(|e| e.2 > 0).collect();
        seen.sort_by_key(|e| std::cmp::Reverse(e.2));
        let mut out: Vec<String> = seen
            .iter()
            .map(|(r, t, n)| format!("running {r}, testing {t} ({})", pairs(*n)))
            .collect();
        let named: u64 = seen.iter().map(|e| e.2).sum();
        if self.changed > named {
            out.push(format!("other changes ({})", pairs(self.changed - named)));
        }
        out.join("; ")
    }

    /// The most frequent change, for the table's example columns.
    fn commonest(&self) -> (u16, u16) {
        let e = self.examples.iter().max_by_key(|e| e.2).copied();
        e.map_or((0, 0), |e| (e.0, e.1))
    }
}

/// "1 pair", "20 pairs".
fn pairs(n: u64) -> String {
    match n {
        1 => "1 pair".to_string(),
        n => format!("{n} pairs"),
    }
}

/// Whether the endpoints rule judges this endpoint gone on testing (most of its pairs 404/405/501
/// where running's version answered otherwise): its reason says it, a status reason would repeat.
pub(super) fn looks_missing(e: &EndpointStats) -> bool {
    e.missing_on_testing > 0 && e.missing_on_testing * 2 > e.pairs
}

/// Endpoints whose statuses changed on testing, each with `MIN_ENDPOINT_PAIRS` judged pairs,
/// judged against their noise like a changed field (`DIFF_ABSOLUTE`, `DIFF_RELATIVE`,
/// `CONFIDENCE`); where no noise was measured, by `MAX_BODY_DIFF` as a body's difference is
/// (`auto` or empty: reported only, as running answered the user first and a consumed token or a
/// rate limit changes every copy's status). Any that counts rejects; one not yet sure waits, and
/// so does one with too few pairs where replay can bring them. Rows for the differences table
/// come back.
pub(super) fn statuses_part(
    s: &Summary,
    cfg: &ScoreConfig,
    more: &MorePairs,
    j: &mut Judging,
) -> (ScorePart, Vec<DiffRow>) {
    let (mut rows, mut worst, mut counted) = (Vec::new(), 0.0f64, 0);
    for (k, e) in &s.endpoints {
        let c = &e.statuses;
        if c.changed == 0 || looks_missing(e) {
            continue;
        }
        let judged = Judged::of(c, cfg);
        if !judged.applies {
            // Noise unmeasured and MAX_BODY_DIFF not a number: listed, never judged.
        } else if c.judged < cfg.min_endpoint_pairs {
            // Too few pairs to judge: wait for them where replay can bring them, as for an
            // endpoint gone. Where it cannot, or the endpoint has its pairs but most are 5xx
            // (the 5xx rule's), waiting would never end: listed only.
            if e.pairs < cfg.min_endpoint_pairs && more.can_replay(k) {
                j.too_few(
                    &format!("status changed on {k}: {} of {} pairs", c.changed, c.judged),
                    k,
                    more,
                );
            }
        } else {
            j.rate(
                judged.check,
                judged.over,
                cfg.confidence,
                reason(k, c, &judged),
            );
            if judged.over {
                worst = worst.max(judged.excess / (2.0 * judged.margin.max(1e-9)));
            }
            counted += usize::from(judged.judgement == DiffJudgement::Counts);
            if judged.judgement == DiffJudgement::Unsure {
                j.waiting_on.push(k.clone());
            }
        }
        rows.push(row(k, c, &judged));
    }
    let part = ScorePart {
        name: "statuses",
        score: (100.0 * (1.0 - worst.min(1.0))) as u32,
        detail: format!(
            "changed statuses on {} of {} endpoints, {counted} beyond their noise",
            rows.len(),
            s.endpoints.len()
        ),
    };
    (part, rows)
}

/// An endpoint's `$status` row for the differences table.
fn row(endpoint: &str, c: &StatusChanges, judged: &Judged) -> DiffRow {
    let (running, testing) = c.commonest();
    DiffRow {
        endpoint: endpoint.to_string(),
        path: "$status".to_string(),
        kind: DiffKind::Changed,
        pairs: c.changed,
        of: c.judged,
        rate: judged.rate,
        noise_rate: judged.noise_rate,
        judgement: judged.judgement,
        running: running.to_string(),
        testing: testing.to_string(),
    }
}

/// How one endpoint's status changes are judged.
struct Judged {
    /// Share of judged pairs with a change.
    rate: f64,
    /// Share of the secondary's answers that differ from running's, when it answered any.
    noise_rate: Option<f64>,
    /// The margin the rate must clear over the noise.
    margin: f64,
    /// `rate` less the noise rate.
    excess: f64,
    /// Whether that excess is over the margin.
    over: bool,
    /// The confidence interval's verdict.
    check: RateCheck,
    /// As shown in the table.
    judgement: DiffJudgement,
    /// Whether the change is judged at all: its noise was measured, or `MAX_BODY_DIFF` is a
    /// number to hold it against.
    applies: bool,
}

impl Judged {
    /// Judge `c` by the rule differences in answers follow.
    fn of(c: &StatusChanges, cfg: &ScoreConfig) -> Judged {
        let rate = c.changed as f64 / c.judged.max(1) as f64;
        let noise_rate = (c.noise_of > 0).then(|| c.noise as f64 / c.noise_of as f64);
        let nr = noise_rate.unwrap_or(0.0);
        // Without noise, running's own answer (given to the user first) is all there is to
        // compare with: MAX_BODY_DIFF says whether, and by what, that is judged.
        let ceiling = noise_rate.map_or(cfg.max_body_diff.ceiling(false), |_| None);
        let applies = noise_rate.is_some() || ceiling.is_some();
        let margin = ceiling.unwrap_or(cfg.diff_absolute.max(nr * cfg.diff_relative));
        let check = match noise_rate {
            Some(_) => stats::compare_rates(
                c.changed,
                c.judged,
                c.noise,
                c.noise_of,
                margin,
                cfg.confidence,
            ),
            None => stats::compare_rate_to(c.changed, c.judged, margin, cfg.confidence),
        };
        let (excess, over) = (rate - nr, rate - nr > margin);
        let judgement = match check {
            _ if !applies => DiffJudgement::NoiseUnknown,
            RateCheck::Worse { .. } => DiffJudgement::Counts,
            RateCheck::Undecided { .. } if over => DiffJudgement::Unsure,
            _ if noise_rate.is_none() => DiffJudgement::NoiseUnknown,
            _ => DiffJudgement::Noise,
        };
        Judged {
            rate,
            noise_rate,
            margin,
            excess,
            over,
            check,
            judgement,
            applies,
        }
    }
}

/// A status change as a reason: where, which statuses, how often, and the noise.
fn reason(endpoint: &str, c: &StatusChanges, j: &Judged) -> String {
    format!(
        "status changed on {endpoint}: {} of {} pairs ({:.1}%): {}; {}",
        c.changed,
        c.judged,
        j.rate * 100.0,
        c.described(),
        match j.noise_rate {
            Some(n) => format!(
                "running's secondary answers it otherwise in {} of {} ({:.1}%)",
                c.noise,
                c.noise_of,
                n * 100.0
            ),
            None => format!(
                "no secondary answered it to measure its noise, so it is held against MAX_BODY_DIFF ({:.1}%)",
                j.margin * 100.0
            ),
        }
    )
}

#[cfg(test)]
mod tests;
