//! Latency judged like with like: testing against the secondary over the very same copies, pair
//! by pair, significance tested over moments so one stall of a process is one observation.

use super::judging::ScorePart;
use super::scorecard::{Summary, LATENCY_MOMENT};
use super::stats;
use crate::config::ScoreConfig;

/// Paired copies the latency judgement waits for before it may reject.
const MIN_LATENCY_PAIRS: usize = 30;

/// Latency, judged like with like: testing against the secondary (running's version), pair by
/// pair over the very same copies on the very same path (Wilcoxon signed-rank). Rejects only
/// when testing's p95 exceeds the secondary's by `MAX_P95_RATIO` *and* the shift is significant
/// at `CONFIDENCE`. Running's user-path p95 is shown beside it for information; without a
/// secondary, latency is reported and never judged.
pub(super) fn latency_part(
    s: &Summary,
    cfg: &ScoreConfig,
    reasons: &mut Vec<String>,
) -> Option<ScorePart> {
    let user_path = match (s.running_p95, s.testing_p95) {
        (Some(r), Some(t)) => {
            format!("; running serves users at p95 {r:?}, testing {t:?} on the mirror")
        }
        (Some(r), None) => format!("; running serves users at p95 {r:?}"),
        _ => String::new(),
    };
    let (Some(t), Some(sec)) = (s.testing_paired_p95, s.secondary_p95) else {
        let detail = match s.noise_expected {
            true => format!("waiting for copies answered by both testing and the secondary{user_path}"),
            false => format!("reported, not judged: no secondary (NOISE_CANCEL=off) to compare with on the same path{user_path}"),
        };
        return (s.testing_p95.is_some()).then_some(ScorePart {
            name: "latency",
            score: 100,
            detail,
        });
    };
    let ratio = t.as_secs_f64() / sec.as_secs_f64().max(1e-6);
    // The test is of the factor itself: is testing, copy by copy, more than `max` times slower
    // than the secondary? A tail spike alone, or a small steady shift, is not a regression.
    let max = cfg.max_p95_ratio.unwrap_or(1.0);
    let scaled: Vec<(f64, f64)> = s
        .latency_pairs
        .iter()
        .map(|&(t, s, _)| (t, s * max))
        .collect();
    let w = stats::wilcoxon_signed_rank(&scaled);
    // Significance is tested over moments, not copies: copies in flight together share any stall
    // of either process (descheduled on a busy machine, a pause), so they are one observation.
    let moments = per_moment(&s.latency_pairs, max);
    let wm = stats::wilcoxon_signed_rank(&moments);
    let enough = s.latency_pairs.len() >= MIN_LATENCY_PAIRS;
    let significant = enough && wm.is_some_and(|w| w.p_slower < 1.0 - cfg.confidence);
    let over = cfg.max_p95_ratio.is_some_and(|max| ratio > max) && significant;
    let test_text = w.map_or(String::new(), |w| {
        format!(
            "; Wilcoxon signed-rank: testing over {max}× the secondary on {:.0}% of {} paired copies, {}",
            w.slower_share * 100.0,
            w.n,
            wm.map_or(format!("too few moments of {LATENCY_MOMENT:?} yet"), |m| format!(
                "and in {:.0}% of {} moments of {LATENCY_MOMENT:?}, p {:.2e}",
                m.slower_share * 100.0,
                m.n,
                m.p_slower
            ))
        )
    });
    if over {
        reasons.push(format!(
            "latency: testing p95 {t:?} is {ratio:.1}× the secondary's {sec:?} on the same copies{}{test_text}",
            slowest_endpoint(s)
        ));
    }
    Some(ScorePart {
        name: "latency",
        score: if over { 0 } else { 100 },
        detail: format!(
            "p95 testing {t:?} vs secondary {sec:?} ({ratio:.2}×){test_text}{user_path}"
        ),
    })
}

/// Per [`LATENCY_MOMENT`], the median of testing's latency minus `max` × the secondary's over
/// the copies completed in it, as (median, 0) pairs for the signed-rank test: a burst slowed by
/// one stall weighs one moment, a slow build is slow in every moment.
fn per_moment(pairs: &[(f64, f64, u32)], max: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut diffs: Vec<f64> = Vec::new();
    for (i, &(t, s, m)) in pairs.iter().enumerate() {
        diffs.push(t - s * max);
        if pairs.get(i + 1).is_none_or(|next| next.2 != m) {
            diffs.sort_unstable_by(f64::total_cmp);
            let n = diffs.len();
            out.push(((diffs[(n - 1) / 2] + diffs[n / 2]) / 2.0, 0.0));
            diffs.clear();
        }
    }
    out
}

/// "; slowest: GET /api/items (3.1×)", the endpoint whose paired copies shifted most.
fn slowest_endpoint(s: &Summary) -> String {
    s.endpoints
        .iter()
        .filter(|(_, e)| e.latency_paired >= 8)
        .filter_map(|(k, e)| Some((k, e.latency_shift()?)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(String::new(), |(k, f)| format!("; slowest: {k} ({f:.1}×)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_moment_takes_each_moments_median_of_the_scaled_difference() {
        let pairs = [(3.0, 1.0, 0), (1.0, 1.0, 0), (9.0, 1.0, 0), (1.0, 1.0, 7)];
        assert_eq!(per_moment(&pairs, 2.0), vec![(1.0, 0.0), (-1.0, 0.0)]);
        assert!(per_moment(&[], 2.0).is_empty());
    }
}
