//! Latency judged like with like: testing against the secondary over the very same copies, pair
//! by pair, significance tested over moments so one stall of a process is one observation.

use super::judging::{Judging, MorePairs, ScorePart};
use std::time::Duration;

use super::scorecard::{Summary, LATENCY_MOMENT, OTHER_ENDPOINTS};
use super::stats;
use crate::config::ScoreConfig;

/// Paired copies the latency judgement waits for before it may reject.
const MIN_LATENCY_PAIRS: usize = 30;

/// Each endpoint's first paired copies, left out when it is judged alone: a fresh process (a JVM
/// still compiling a rarely asked handler) beside a secondary kept warm from the build tested
/// before is slower there for a while, which the pooled judgement dilutes and one endpoint alone
/// would not.
const WARM_UP_PAIRS: usize = 20;

/// Times replay may send one request of an endpoint the verdict waits on: four times the copies
/// the endpoint needs to be judged alone on latency (`MIN_ENDPOINT_PAIRS`, at least
/// [`MIN_LATENCY_PAIRS`], past its first [`WARM_UP_PAIRS`]), so that one URL can also bring them
/// over the moments the test needs (8–10 of 250 ms: 200 copies at 20 a second span 10 s).
pub fn replays_to_judge_alone(min_endpoint_pairs: u64) -> u64 {
    min_endpoint_pairs
        .max(MIN_LATENCY_PAIRS as u64)
        .saturating_add(WARM_UP_PAIRS as u64)
        .saturating_mul(4)
}

/// Latency, judged like with like: testing against the secondary (running's version), pair by
/// pair over the very same copies on the very same path (Wilcoxon signed-rank). Rejects only
/// when testing's p95 exceeds the secondary's by `MAX_P95_RATIO` *and* the shift is significant
/// at `CONFIDENCE`, over all copies pooled or over one endpoint's alone (see [`endpoints_alone`]).
/// Running's user-path p95 is shown beside it for information; without a secondary, latency is
/// reported and never judged. An endpoint too rare to be judged alone that looks slow so far
/// makes the verdict wait for its copies (see [`too_rare_and_slow`]).
pub(super) fn latency_part(
    s: &Summary,
    cfg: &ScoreConfig,
    more: &MorePairs,
    j: &mut Judging,
) -> Option<ScorePart> {
    let reasons = &mut j.reasons;
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
            false => format!("reported, not judged: no secondary to compare with on the same path (NOISE_CANCEL=off, or it was given up){user_path}"),
        };
        return (s.testing_p95.is_some()).then_some(ScorePart {
            name: "latency",
            score: 100,
            detail,
        });
    };
    let alpha = 1.0 - cfg.confidence;
    let pooled = Paired::judge(&s.latency_pairs, (t, sec), cfg, alpha, MIN_LATENCY_PAIRS);
    let test_text = pooled.test_text();
    if pooled.over {
        reasons.push(format!(
            "latency: testing p95 {t:?} is {:.1}× the secondary's {sec:?} on the same copies{}{test_text}",
            pooled.ratio,
            slowest_endpoint(s)
        ));
    }
    // A build slow everywhere is said once, by the pooled reason; endpoints alone add theirs
    // only where the pooled judgement let them through.
    let mut alone_reasons = Vec::new();
    let (alone_over, alone) = endpoints_alone(s, cfg, &mut alone_reasons);
    if !pooled.over {
        reasons.append(&mut alone_reasons);
    }
    if !pooled.over && !alone_over {
        too_rare_and_slow(s, cfg, more, j);
    }
    Some(ScorePart {
        name: "latency",
        score: if pooled.over || alone_over { 0 } else { 100 },
        detail: format!(
            "p95 testing {t:?} vs secondary {sec:?} ({:.2}×){test_text}{alone}{user_path}",
            pooled.ratio
        ),
    })
}

/// One paired judgement of testing against the secondary over the same copies (all of them, or
/// one endpoint's): the rule both the pooled and the per-endpoint judgement follow.
struct Paired {
    /// Testing's p95 over the secondary's.
    ratio: f64,
    /// `MAX_P95_RATIO` (1 when report-only).
    max: f64,
    /// The signed-rank test over copies, for the record.
    copies: Option<stats::Wilcoxon>,
    /// The same over moments: what significance is decided on.
    moments: Option<stats::Wilcoxon>,
    /// Over `MAX_P95_RATIO`, significantly (p below `alpha`), from at least the minimum pairs.
    over: bool,
}

impl Paired {
    /// Judge `pairs` (testing, secondary, moment) whose p95s are `(t, sec)`, significant when
    /// the moments' p is below `alpha`, never with fewer than `min_pairs` copies.
    fn judge(
        pairs: &[(f64, f64, u32)],
        (t, sec): (Duration, Duration),
        cfg: &ScoreConfig,
        alpha: f64,
        min_pairs: usize,
    ) -> Paired {
        let ratio = t.as_secs_f64() / sec.as_secs_f64().max(1e-6);
        // The test is of the factor itself: is testing, copy by copy, more than `max` times
        // slower than the secondary? A tail spike alone, or a small steady shift, is not a
        // regression.
        let max = cfg.max_p95_ratio.unwrap_or(1.0);
        let scaled: Vec<(f64, f64)> = pairs.iter().map(|&(t, s, _)| (t, s * max)).collect();
        let copies = stats::wilcoxon_signed_rank(&scaled);
        // Significance is tested over moments, not copies: copies in flight together share any
        // stall of either process (descheduled on a busy machine, a pause), so they are one
        // observation.
        let moments = stats::wilcoxon_signed_rank(&per_moment(pairs, max));
        let significant = pairs.len() >= min_pairs && moments.is_some_and(|w| w.p_slower < alpha);
        let over = cfg.max_p95_ratio.is_some_and(|max| ratio > max) && significant;
        Paired {
            ratio,
            max,
            copies,
            moments,
            over,
        }
    }

    /// "; Wilcoxon signed-rank: testing over 2× the secondary on 97% of 412 paired copies, and
    /// in 95% of 300 moments of 250ms, p 1.20e-20".
    fn test_text(&self) -> String {
        self.copies.map_or(String::new(), |w| {
            format!(
                "; Wilcoxon signed-rank: testing over {}× the secondary on {:.0}% of {} paired copies, {}",
                self.max,
                w.slower_share * 100.0,
                w.n,
                self.moments.map_or(format!("too few moments of {LATENCY_MOMENT:?} yet"), |m| format!(
                    "and in {:.0}% of {} moments of {LATENCY_MOMENT:?}, p {:.2e}",
                    m.slower_share * 100.0,
                    m.n,
                    m.p_slower
                ))
            )
        })
    }
}

/// Each endpoint with enough paired copies past its first [`WARM_UP_PAIRS`] (`MIN_ENDPOINT_PAIRS`,
/// and never fewer than the pooled judgement's minimum) judged alone by the pooled rule, so one slow endpoint among many
/// fast ones cannot hide in the pooled p95. The significance level `1 − CONFIDENCE` is shared
/// among the endpoints judged (Bonferroni): with twenty endpoints of identical builds one would
/// otherwise look slower by chance. Endpoints with fewer copies, and those past `MAX_ENDPOINTS`,
/// count only in the pooled judgement. Returns whether one rejects, and the text for the detail.
fn endpoints_alone(s: &Summary, cfg: &ScoreConfig, reasons: &mut Vec<String>) -> (bool, String) {
    // One endpoint alone is the pooled judgement again, at a stricter level.
    if s.endpoint_latency_pairs.len() < 2 {
        return (false, String::new());
    }
    let min = usize::try_from(cfg.min_endpoint_pairs)
        .unwrap_or(usize::MAX)
        .max(MIN_LATENCY_PAIRS);
    let judged: Vec<_> = s
        .endpoint_latency_pairs
        .iter()
        .map(|(k, v)| (k, &v[WARM_UP_PAIRS.min(v.len())..]))
        .filter(|(k, v)| k.as_str() != OTHER_ENDPOINTS && v.len() >= min)
        .collect();
    if judged.is_empty() {
        return (
            false,
            format!(
                "; no endpoint has {min} paired copies past its first {WARM_UP_PAIRS} to be judged alone yet"
            ),
        );
    }
    let n = judged.len();
    let alpha = (1.0 - cfg.confidence) / n as f64;
    let ends = if n == 1 { "endpoint" } else { "endpoints" };
    let mut over = false;
    let mut slowest: Option<(&String, Duration, Duration, Paired)> = None;
    for (k, pairs) in judged {
        let (t, sec) = (
            p95(pairs.iter().map(|p| p.0)),
            p95(pairs.iter().map(|p| p.1)),
        );
        let p = Paired::judge(pairs, (t, sec), cfg, alpha, min);
        if p.over {
            over = true;
            reasons.push(format!(
                "latency: {k}: testing p95 {t:?} is {:.1}× the secondary's {sec:?} on the same copies{} (below {alpha:.1e}: CONFIDENCE shared by the {n} {ends} judged alone)",
                p.ratio,
                p.test_text()
            ));
        }
        if slowest.as_ref().is_none_or(|w| p.ratio > w.3.ratio) {
            slowest = Some((k, t, sec, p));
        }
    }
    let text = slowest.map_or(String::new(), |(k, t, sec, p)| {
        let pv = p.moments.map_or("too few moments".to_string(), |m| {
            format!("p {:.2e}", m.p_slower)
        });
        format!(
            "; {n} {ends} judged alone at p < {alpha:.1e}, slowest {k}: p95 testing {t:?} vs secondary {sec:?} ({:.2}×, {pv})",
            p.ratio
        )
    });
    (over, text)
}

/// Endpoints that cannot be judged alone yet (too few copies past their first
/// [`WARM_UP_PAIRS`], or over too few moments for the signed-rank test to tell a shift at the
/// level the endpoints judged alone share) whose copies so far are over `MAX_P95_RATIO` times
/// the secondary's at p95 and in most pairs: the pooled p95 hides one, so each is a doubt the
/// verdict waits on, as a rare endpoint's 5xx are, while replay can bring its copies (where it
/// cannot, it would wait for ever: the pooled judgement is all there is then).
fn too_rare_and_slow(s: &Summary, cfg: &ScoreConfig, more: &MorePairs, j: &mut Judging) {
    // One endpoint alone is the pooled judgement, which waits for its copies by MIN_MIRRORED.
    let Some(max) = cfg
        .max_p95_ratio
        .filter(|_| s.endpoint_latency_pairs.len() >= 2)
    else {
        return;
    };
    let min = usize::try_from(cfg.min_endpoint_pairs)
        .unwrap_or(usize::MAX)
        .max(MIN_LATENCY_PAIRS);
    let past = |v: &[(f64, f64, u32)]| v.len().saturating_sub(WARM_UP_PAIRS);
    let judged = s.endpoint_latency_pairs.iter();
    let judged = judged.filter(|(k, v)| k.as_str() != OTHER_ENDPOINTS && past(v) >= min);
    let alpha = (1.0 - cfg.confidence) / judged.count().max(1) as f64;
    let Some(moments) = stats::fewest_to_tell(alpha) else {
        return;
    };
    for (k, pairs) in &s.endpoint_latency_pairs {
        let seen = per_moment(&pairs[WARM_UP_PAIRS.min(pairs.len())..], max).len();
        let can_tell = past(pairs) >= min && seen >= moments;
        if k == OTHER_ENDPOINTS || can_tell || !more.can_replay(k) {
            continue;
        }
        let (t, sec) = (
            p95(pairs.iter().map(|p| p.0)),
            p95(pairs.iter().map(|p| p.1)),
        );
        let ratio = t.as_secs_f64() / sec.as_secs_f64().max(1e-6);
        // Most copies over the ratio, as the judgement alone will test: one stalled copy among
        // twenty makes a p95, not a slow endpoint.
        let over = pairs.iter().filter(|p| p.0 > p.1 * max).count();
        if ratio > max && over * 2 > pairs.len() {
            let what = format!(
                "latency on {k}: testing p95 {t:?} is {ratio:.1}× the secondary's {sec:?}, over {max}× on {over} of {} paired copies",
                pairs.len()
            );
            let minimum = format!(
                "too few to judge alone, it needs {min} past its first {WARM_UP_PAIRS} (MIN_ENDPOINT_PAIRS, at least {MIN_LATENCY_PAIRS}) over {moments} moments of {LATENCY_MOMENT:?} (has {} over {seen})",
                past(pairs)
            );
            j.wait_for_pairs(&what, k, more, &minimum, "");
        }
    }
}

/// The p95 of latencies in seconds, taken as the scorecard takes it.
fn p95(v: impl Iterator<Item = f64>) -> Duration {
    let mut v: Vec<f64> = v.collect();
    v.sort_unstable_by(f64::total_cmp);
    let i = (v.len() * 95 / 100).min(v.len().saturating_sub(1));
    Duration::from_secs_f64(v.get(i).copied().unwrap_or(0.0).max(0.0))
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
    use crate::score::test_support::cfg;

    /// The default `MAX_P95_RATIO` (2) and `CONFIDENCE` (0.99).
    fn two() -> ScoreConfig {
        ScoreConfig {
            max_p95_ratio: Some(2.0),
            confidence: 0.99,
            ..cfg()
        }
    }

    /// The latency part as the evaluation takes it, with replay off (so no endpoint waits on
    /// its copies): `reasons` gets the regressions.
    fn latency_part(
        s: &Summary,
        cfg: &ScoreConfig,
        reasons: &mut Vec<String>,
    ) -> Option<ScorePart> {
        let (part, mut j) = judged(s, cfg, false);
        reasons.append(&mut j.reasons);
        part
    }

    /// The latency part and what it added to the judging, replay on or off.
    fn judged(s: &Summary, cfg: &ScoreConfig, replay: bool) -> (Option<ScorePart>, Judging) {
        let none = std::collections::BTreeSet::new();
        let more = MorePairs {
            replay,
            secondary: true,
            unreplayable: &none,
            min_pairs: cfg.min_endpoint_pairs,
        };
        let mut j = Judging::default();
        (super::latency_part(s, cfg, &more, &mut j), j)
    }

    /// A small deterministic generator (xorshift), so the jitter is the same on every run.
    struct Jitter(u64);

    impl Jitter {
        /// Uniform in [0, 1).
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }

        /// `ms` milliseconds scattered as on a loaded machine: ×0.5–2 (log-uniform), and one
        /// copy in fifty stalled ten times longer.
        fn latency(&mut self, ms: f64) -> f64 {
            let stall = if self.next() < 0.02 { 10.0 } else { 1.0 };
            ms / 1000.0 * (2f64.ln() * (2.0 * self.next() - 1.0)).exp() * stall
        }
    }

    /// A summary of paired copies, `endpoints` as (name, testing's factor over the secondary,
    /// copies per moment, moments): each endpoint's copies of one moment complete in it, and in
    /// one moment in twenty all of testing's are stalled.
    fn summary(endpoints: &[(&str, f64, usize, u32)], seed: u64) -> Summary {
        let mut j = Jitter(seed.max(1));
        let mut s = Summary {
            noise_expected: true,
            ..Default::default()
        };
        let moments = endpoints.iter().map(|e| e.3).max().unwrap_or(0);
        for m in 0..moments {
            // One moment in twenty, testing's process is stalled: every copy in flight waits.
            let stalled = if j.next() < 0.05 { 10.0 } else { 1.0 };
            for &(k, factor, per, _) in endpoints.iter().filter(|e| m < e.3) {
                for _ in 0..per {
                    let pair = (j.latency(20.0) * factor * stalled, j.latency(20.0), m);
                    s.latency_pairs.push(pair);
                    s.endpoint_latency_pairs
                        .entry(k.to_string())
                        .or_default()
                        .push(pair);
                }
            }
        }
        s.testing_paired_p95 = Some(p95(s.latency_pairs.iter().map(|p| p.0)));
        s.secondary_p95 = Some(p95(s.latency_pairs.iter().map(|p| p.1)));
        s
    }

    #[test]
    fn one_slow_endpoint_among_fast_ones_rejects_naming_it_with_both_p95s() {
        // Nine copies of fast endpoints and one of /api/search in each moment, search 5× slower:
        // pooled, each moment's median copy is a fast one, so the pooled test cannot see it.
        let fast = |k| (k, 1.0, 3, 200);
        let s = summary(
            &[
                fast("GET /a"),
                fast("GET /b"),
                fast("GET /c"),
                ("GET /api/search", 5.0, 1, 200),
            ],
            7,
        );
        let mut reasons = Vec::new();
        let part = latency_part(&s, &two(), &mut reasons).unwrap();
        assert_eq!(part.score, 0, "{}", part.detail);
        assert_eq!(reasons.len(), 1, "only the endpoint rejects: {reasons:?}");
        let search = &s.endpoint_latency_pairs["GET /api/search"][WARM_UP_PAIRS..];
        let (t, sec) = (
            p95(search.iter().map(|p| p.0)),
            p95(search.iter().map(|p| p.1)),
        );
        let r = &reasons[0];
        assert!(
            r.starts_with("latency: GET /api/search: testing p95 ")
                && r.contains(&format!("{t:?}"))
                && r.contains(&format!("the secondary's {sec:?}"))
                && r.contains("the 4 endpoints judged alone"),
            "{r}"
        );
        assert!(
            part.detail
                .contains("4 endpoints judged alone at p < 2.5e-3, slowest GET /api/search"),
            "{}",
            part.detail
        );
    }

    /// A build slow on every endpoint is one reason, the pooled one, not one per endpoint too.
    #[test]
    fn a_build_slow_everywhere_is_said_once() {
        let slow = |k| (k, 5.0, 3, 200);
        let s = summary(&[slow("GET /a"), slow("GET /b"), slow("GET /c")], 7);
        let mut reasons = Vec::new();
        let part = latency_part(&s, &two(), &mut reasons).unwrap();
        assert_eq!(part.score, 0, "{}", part.detail);
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(
            reasons[0].starts_with("latency: testing p95 "),
            "{reasons:?}"
        );
    }

    /// A rarely asked endpoint slow only in its first copies (a fresh JVM warming up beside a
    /// warm secondary) is not judged on them; slow throughout, it still rejects.
    #[test]
    fn an_endpoint_slow_only_while_warming_up_does_not_reject() {
        // 34 copies, the first 20 far slower: judged on all, most are slow and it rejects.
        for (total, cold, rejects) in [(34, WARM_UP_PAIRS, false), (60, 60, true)] {
            let fast = |k| (k, 1.0, 3, 200);
            let mut s = summary(&[fast("GET /a"), fast("GET /b")], 7);
            let mut j = Jitter(3);
            for i in 0..total {
                let factor = if (i as usize) < cold { 20.0 } else { 1.0 };
                let pair = (j.latency(20.0) * factor, j.latency(20.0), i * 3);
                s.latency_pairs.push(pair);
                let rare = s.endpoint_latency_pairs.entry("GET /rare".into());
                rare.or_default().push(pair);
            }
            let mut reasons = Vec::new();
            latency_part(&s, &two(), &mut reasons).unwrap();
            let named = reasons.iter().any(|r| r.contains("GET /rare"));
            assert_eq!(named, rejects, "{cold} cold copies: {reasons:?}");
        }
    }

    #[test]
    fn an_endpoint_slower_within_the_ratio_does_not_reject() {
        let fast = |k| (k, 1.0, 3, 200);
        let s = summary(
            &[
                fast("GET /a"),
                fast("GET /b"),
                ("GET /api/search", 1.5, 1, 200),
            ],
            11,
        );
        let mut reasons = Vec::new();
        let part = latency_part(&s, &two(), &mut reasons).unwrap();
        assert!(reasons.is_empty(), "{reasons:?}");
        assert_eq!(part.score, 100);
        assert!(
            part.detail
                .contains("3 endpoints judged alone at p < 3.3e-3, slowest GET /api/search"),
            "{}",
            part.detail
        );
    }

    /// An endpoint too rare to be judged alone that is slow so far makes the verdict wait and
    /// asks replay for its copies; as fast as the secondary, or where replay cannot bring its
    /// copies, it waits for nothing.
    #[test]
    fn a_rare_endpoint_slow_so_far_waits_for_its_copies_while_replay_can_bring_them() {
        let fast = |k| (k, 1.0, 3, 200);
        for (factor, replay, waits) in [(5.0, true, true), (5.0, false, false), (1.0, true, false)]
        {
            let rare = ("GET /api/search", factor, 1, 20);
            let s = summary(&[fast("GET /a"), fast("GET /b"), rare], 3);
            let (part, j) = judged(&s, &two(), replay);
            assert!(j.reasons.is_empty(), "{:?}", j.reasons);
            assert_eq!(part.unwrap().score, 100);
            let doubt = j.unsure.iter().find(|u| u.contains("GET /api/search"));
            assert_eq!(
                doubt.is_some(),
                waits,
                "{factor}×, replay {replay}: {:?}",
                j.unsure
            );
            assert_eq!(
                j.waiting_on == ["GET /api/search"],
                waits,
                "{:?}",
                j.waiting_on
            );
            if let Some(d) = doubt {
                assert!(
                    d.starts_with("latency on GET /api/search: testing p95 ")
                        && d.contains("× the secondary's ")
                        && d.contains(", over 2× on ")
                        && d.contains(" paired copies: too few to judge alone, it needs 30 past its first 20 (MIN_ENDPOINT_PAIRS, at least 30) over 9 moments of 250ms (has 0 over 0); replaying its recorded requests"),
                    "{d}"
                );
            }
        }
    }

    #[test]
    fn an_endpoint_with_too_few_pairs_is_not_judged_alone() {
        // 20 copies 5× slower, each in its own moment: significant, but under the 30 pairs an
        // endpoint needs, it only counts in the pooled judgement (where it does not reject).
        let fast = |k| (k, 1.0, 3, 200);
        let rare = ("GET /api/search", 5.0, 1, 20);
        let s = summary(&[fast("GET /a"), fast("GET /b"), rare], 3);
        let mut reasons = Vec::new();
        let part = latency_part(&s, &two(), &mut reasons).unwrap();
        assert!(reasons.is_empty(), "{reasons:?}");
        assert!(
            part.detail.contains("2 endpoints judged alone"),
            "{}",
            part.detail
        );
        assert!(!part.detail.contains("GET /api/search"), "{}", part.detail);
        // A higher MIN_ENDPOINT_PAIRS raises the bar: none is judged alone yet.
        let strict = ScoreConfig {
            min_endpoint_pairs: 1000,
            ..two()
        };
        let part = latency_part(&s, &strict, &mut reasons).unwrap();
        assert!(reasons.is_empty(), "{reasons:?}");
        assert!(
            part.detail.contains(
                "no endpoint has 1000 paired copies past its first 20 to be judged alone yet"
            ),
            "{}",
            part.detail
        );
        // With 60 (40 past the first 20) it is judged alone, and rejects.
        let s = summary(
            &[
                fast("GET /a"),
                fast("GET /b"),
                ("GET /api/search", 5.0, 1, 60),
            ],
            3,
        );
        let part = latency_part(&s, &two(), &mut reasons).unwrap();
        assert!(
            reasons
                .first()
                .is_some_and(|r| r.starts_with("latency: GET /api/search:")),
            "{reasons:?} {}",
            part.detail
        );
    }

    #[test]
    fn many_endpoints_of_identical_builds_with_jitter_never_reject() {
        // Thirty endpoints, 60 to 180 copies each, latencies scattered ×0.5–2 with stalls, over
        // many seeds: identical builds on a loaded machine are never rejected for one of them.
        let names: Vec<String> = (0..30).map(|i| format!("GET /e{i}")).collect();
        for seed in 1..=200u64 {
            let eps: Vec<(&str, f64, usize, u32)> = names
                .iter()
                .enumerate()
                .map(|(i, k)| (k.as_str(), 1.0, 1 + i % 3, 60))
                .collect();
            let s = summary(&eps, seed);
            let mut reasons = Vec::new();
            let part = latency_part(&s, &two(), &mut reasons).unwrap();
            assert!(reasons.is_empty(), "seed {seed}: {reasons:?}");
            assert!(
                part.detail.contains("30 endpoints judged alone"),
                "{}",
                part.detail
            );
        }
    }

    #[test]
    fn per_moment_takes_each_moments_median_of_the_scaled_difference() {
        let pairs = [(3.0, 1.0, 0), (1.0, 1.0, 0), (9.0, 1.0, 0), (1.0, 1.0, 7)];
        assert_eq!(per_moment(&pairs, 2.0), vec![(1.0, 0.0), (-1.0, 0.0)]);
        assert!(per_moment(&[], 2.0).is_empty());
    }
}
