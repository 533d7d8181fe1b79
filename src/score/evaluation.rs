//! The evaluation: [`evaluate`] is a pure function from a scorecard's [`Summary`] to a
//! [`Verdict`] (`Wait`, `Promote` or `Reject(reasons)`) and a 0–100 score with its parts.

use serde::Serialize;

use super::bodies::{bodies_part, DiffJudgement, DiffRow};
use super::judging::{Judging, ScorePart};
use super::latency::latency_part;
use super::scorecard::Summary;
use super::stats::{self, RateCheck};
use crate::config::ScoreConfig;

/// The scorer's decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", content = "reasons")]
pub enum Verdict {
    /// Not enough evidence yet (too few pairs, or the window is not over); the reason says which.
    Wait(String),
    /// Stable for the window with enough traffic: promote.
    Promote,
    /// A real regression; each reason names what and where.
    Reject(Vec<String>),
}

/// A verdict with its score and parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// What to do.
    pub verdict: Verdict,
    /// 0–100; the lowest part.
    pub score: u32,
    /// The parts.
    pub parts: Vec<ScorePart>,
    /// Mirrored pairs seen.
    pub pairs: u64,
    /// The differences in answers, worst first (at most [`MAX_DIFF_ROWS`](super::MAX_DIFF_ROWS)).
    pub diffs: Vec<DiffRow>,
    /// What the pairs are: live copies or replayed recorded requests.
    pub evidence: Evidence,
}

/// What a verdict rests on, so an operator can tell a verdict from live traffic from one made
/// mostly of replayed requests (judged against the secondary): "320 pairs: 41 live, 279
/// replayed from 112 recorded requests".
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Evidence {
    /// Copies of live user requests.
    pub live: u64,
    /// Replayed recorded requests.
    pub replayed: u64,
    /// Distinct recorded requests those came from.
    pub recorded: u64,
    /// The same in words.
    pub text: String,
}

impl Evidence {
    /// The evidence of a summary.
    pub fn of(s: &Summary) -> Evidence {
        let live = s.pairs.saturating_sub(s.replayed);
        let text = if s.replayed == 0 {
            format!("{} pairs, all live", s.pairs)
        } else {
            format!(
                "{} pairs: {live} live, {} replayed from {} recorded requests",
                s.pairs, s.replayed, s.recorded
            )
        };
        Evidence {
            live,
            replayed: s.replayed,
            recorded: s.recorded,
            text,
        }
    }
}

impl Evaluation {
    /// One line for the log: verdict, score and each part.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .parts
            .iter()
            .map(|p| format!("{}={} ({})", p.name, p.score, p.detail))
            .collect();
        let verdict = match &self.verdict {
            Verdict::Wait(why) => format!("wait: {why}"),
            Verdict::Promote => "promote".to_string(),
            Verdict::Reject(r) => format!("reject: {}", r.join("; ")),
        };
        let diffs: Vec<String> = self
            .diffs
            .iter()
            .filter(|d| d.judgement != DiffJudgement::Expected)
            .take(3)
            .map(|d| {
                format!(
                    "{} {} {} {}/{}{} ({:?})",
                    d.endpoint,
                    d.path,
                    d.kind.as_str(),
                    d.pairs,
                    d.of,
                    d.noise_rate
                        .map_or(String::new(), |n| format!(" noise {:.0}%", n * 100.0)),
                    d.judgement
                )
            })
            .collect();
        let diffs = if diffs.is_empty() {
            String::new()
        } else {
            format!(" differences: {}", diffs.join("; "))
        };
        format!(
            "score {} ({}) [{}] → {verdict}{diffs}",
            self.score,
            self.evidence.text,
            parts.join(", ")
        )
    }
}

/// Pure verdict: too little data waits; any real regression rejects with its reasons; otherwise
/// promote once the stable window is over.
pub fn evaluate(s: &Summary, cfg: &ScoreConfig) -> Evaluation {
    let mut j = Judging::default();
    let (bodies, diffs) = bodies_part(s, cfg, &mut j);
    let mut parts = vec![
        endpoints_part(s, cfg, &mut j),
        server_error_part(s, cfg, &mut j),
        client_error_part(s, cfg, &mut j),
        log_lines_part(s, cfg, &mut j, Lines::Errors),
        log_lines_part(s, cfg, &mut j, Lines::Warns),
        bodies,
    ];
    parts.extend(latency_part(s, cfg, &mut j.reasons));
    parts.extend(resources_part(s, cfg, &mut j.reasons));
    let score = parts.iter().map(|p| p.score).min().unwrap_or(100);
    Evaluation {
        verdict: verdict(s, cfg, j),
        score,
        parts,
        pairs: s.pairs,
        diffs,
        evidence: Evidence::of(s),
    }
}

/// Pairs as a divisor: never zero.
fn pairs_divisor(s: &Summary) -> f64 {
    s.pairs.max(1) as f64
}

/// Endpoints that exist on running's version and are gone on testing (most of their pairs), each
/// judged once it has `MIN_ENDPOINT_PAIRS` pairs (the rule every per-endpoint rate follows); one
/// seen fewer times waits and says so, as one unlucky pair is not a vanished endpoint.
fn endpoints_part(s: &Summary, cfg: &ScoreConfig, j: &mut Judging) -> ScorePart {
    let mut missing = 0;
    for (k, e) in &s.endpoints {
        if e.missing_on_testing == 0 || e.missing_on_testing * 2 <= e.pairs {
            continue;
        }
        let what = format!(
            "{k} answers 404/405/501 on testing but not on {} ({} of {} pairs)",
            baseline(e.status_vs_secondary, e.pairs),
            e.missing_on_testing,
            e.pairs
        );
        if e.pairs < cfg.min_endpoint_pairs {
            j.unsure.push(format!(
                "{what}: too few to judge, MIN_ENDPOINT_PAIRS is {}",
                cfg.min_endpoint_pairs
            ));
            continue;
        }
        missing += 1;
        j.reasons.push(format!("endpoint regression: {what}"));
    }
    ScorePart {
        name: "endpoints",
        score: if missing == 0 { 100 } else { 0 },
        detail: format!(
            "{} endpoints, {missing} missing on testing{}",
            s.endpoints.len(),
            match s.endpoint_overflow {
                0 => String::new(),
                n => format!(
                    "; MAX_ENDPOINTS reached: {n} pairs of further endpoints counted as {}",
                    crate::score::scorecard::OTHER_ENDPOINTS
                ),
            }
        ),
    }
}

/// What testing's statuses were judged against, in words: the secondary (the same copy at the
/// same moment on the same path) for the pairs it answered, running for the rest.
fn baseline(secondary: u64, pairs: u64) -> String {
    match secondary {
        0 => "running".to_string(),
        n if n >= pairs => "the secondary".to_string(),
        n => format!(
            "running's version (the secondary in {n} of {pairs} pairs, running in the rest)"
        ),
    }
}

/// The 5xx rule, one for the scorer (testing against running on the same copies) and for the
/// post-promotion guard (the new running against the traffic before its switch): `new` (5xx,
/// requests) is worse than `before` only when its rate exceeds it by more than `max_delta`
/// (`MAX_5XX_DELTA`) with `confidence` (Newcombe's interval), so a single unlucky error in a
/// small sample never rejects nor rolls back. With no requests before, there is nothing to
/// compare with: `new` is judged against `max_delta` alone (Wilson's interval).
pub fn server_error_check(
    new: (u64, u64),
    before: (u64, u64),
    max_delta: f64,
    confidence: f64,
) -> RateCheck {
    let ((new_k, new_n), (before_k, before_n)) = (new, before);
    if before_n == 0 {
        return stats::compare_rate_to(new_k, new_n, max_delta, confidence);
    }
    stats::compare_rates(new_k, new_n, before_k, before_n, max_delta, confidence)
}

/// 5xx (and no answer) rate, overall and per endpoint with enough pairs, compared with running's
/// version's (the secondary's answers to the same copies, running's without one) at
/// `CONFIDENCE`; an endpoint is named only when the overall rate is within bounds.
fn server_error_part(s: &Summary, cfg: &ScoreConfig, j: &mut Judging) -> ScorePart {
    let run5: u64 = s.endpoints.values().map(|e| e.baseline_5xx).sum();
    let test5: u64 = s.endpoints.values().map(|e| e.testing_5xx).sum();
    let vs = baseline(secondary_judged(s), s.pairs);
    let delta = (test5 as f64 - run5 as f64) / pairs_divisor(s);
    let mut worst = delta;
    let check = server_error_check(
        (test5, s.pairs),
        (run5, s.pairs),
        cfg.max_5xx_delta,
        cfg.confidence,
    );
    let overall_worse = matches!(check, RateCheck::Worse { .. });
    j.rate(
        check,
        delta > cfg.max_5xx_delta,
        cfg.confidence,
        format!(
            "5xx rate: testing {:.1}% vs {vs} {:.1}% overall ({test5} and {run5} of {} pairs)",
            pct(test5, s.pairs),
            pct(run5, s.pairs),
            s.pairs
        ),
    );
    for (k, e) in &s.endpoints {
        if e.pairs < cfg.min_endpoint_pairs {
            continue;
        }
        let d = (e.testing_5xx as f64 - e.baseline_5xx as f64) / e.pairs as f64;
        worst = worst.max(d);
        if overall_worse {
            continue;
        }
        let check = server_error_check(
            (e.testing_5xx, e.pairs),
            (e.baseline_5xx, e.pairs),
            cfg.max_5xx_delta,
            cfg.confidence,
        );
        j.rate(
            check,
            d > cfg.max_5xx_delta,
            cfg.confidence,
            format!(
                "5xx rate on {k}: testing {:.1}% vs {} {:.1}% of {} pairs",
                pct(e.testing_5xx, e.pairs),
                baseline(e.status_vs_secondary, e.pairs),
                pct(e.baseline_5xx, e.pairs),
                e.pairs
            ),
        );
    }
    ScorePart {
        name: "5xx",
        score: ratio_score(worst, cfg.max_5xx_delta),
        detail: format!("testing {test5} vs {vs} {run5} of {} pairs", s.pairs),
    }
}

/// Pairs whose statuses were judged against the secondary's, over all endpoints.
fn secondary_judged(s: &Summary) -> u64 {
    s.endpoints.values().map(|e| e.status_vs_secondary).sum()
}

/// Requests running's version (the secondary, else running) answers 2xx and testing 4xx, at
/// `CONFIDENCE`.
fn client_error_part(s: &Summary, cfg: &ScoreConfig, j: &mut Judging) -> ScorePart {
    let ok4: u64 = s.endpoints.values().map(|e| e.ok_to_client_error).sum();
    let share = ok4 as f64 / pairs_divisor(s);
    j.rate(
        stats::compare_rate_to(ok4, s.pairs, cfg.max_client_error_delta, cfg.confidence),
        share > cfg.max_client_error_delta,
        cfg.confidence,
        format!(
            "client errors: {ok4} of {} pairs answered 2xx on {} but 4xx on testing",
            s.pairs,
            baseline(secondary_judged(s), s.pairs)
        ),
    );
    ScorePart {
        name: "4xx",
        score: ratio_score(share, cfg.max_client_error_delta),
        detail: format!("{ok4} pairs 2xx→4xx"),
    }
}

/// Requests testing got: mirrored copies and, in canary steps, users' requests.
fn testing_requests(s: &Summary) -> u64 {
    s.pairs + s.canary_served
}

/// Which log lines a part counts.
#[derive(Debug, Clone, Copy)]
enum Lines {
    Errors,
    Warns,
}

/// Log lines of one level per request: testing's share of requests with such a line against its
/// baseline's, at `CONFIDENCE` (a request logging several lines counts once: the bound needs a
/// proportion; more lines than requests is an excess whatever the bound says). The baseline is
/// the secondary once it answered copies: it got the very same copies (replays too) and is
/// counted from its own start as testing is, so lines every build of the app logs (at startup,
/// for an expired token in a replayed request) cancel out. Else running, over its users'
/// requests in the window.
fn log_lines_part(s: &Summary, cfg: &ScoreConfig, j: &mut Judging, lines: Lines) -> ScorePart {
    let (name, word, max) = match lines {
        Lines::Errors => ("log_errors", "error", cfg.max_log_error_delta),
        Lines::Warns => ("log_warns", "warn", cfg.max_log_warn_delta),
    };
    let of = |errors: u64, warns: u64| match lines {
        Lines::Errors => errors,
        Lines::Warns => warns,
    };
    let (t, asked) = (of(s.testing_errors, s.testing_warns), testing_requests(s));
    let (base, b, base_n) = match s.secondary_logs.filter(|c| c.requests > 0) {
        Some(c) => ("the secondary", of(c.errors, c.warns), c.requests),
        None => (
            "running",
            of(s.running_errors, s.running_warns),
            s.running_requests,
        ),
    };
    let delta = t as f64 / asked.max(1) as f64 - b as f64 / base_n.max(1) as f64;
    let base_n = base_n.max(1);
    let check = stats::compare_rates(
        t.min(asked),
        asked,
        b.min(base_n),
        base_n,
        max.min(1.0),
        cfg.confidence,
    );
    let check = match check {
        _ if delta > max && t > asked => RateCheck::Worse {
            low: 1.0,
            high: 1.0,
        },
        c => c,
    };
    j.rate(
        check,
        delta > max,
        cfg.confidence,
        format!("log {word}s: testing {t} {word} lines for {asked} requests vs {base} {b} for {base_n} requests"),
    );
    ScorePart {
        name,
        score: ratio_score(delta, max),
        detail: format!("testing {t} vs {base} {b}"),
    }
}

/// Testing's memory and CPU per request against running's, each judged only with its ceiling.
fn resources_part(s: &Summary, cfg: &ScoreConfig, reasons: &mut Vec<String>) -> Option<ScorePart> {
    let r = s.resources?;
    let other = r.other;
    let rss_ratio = r.testing_rss as f64 / (r.other_rss.max(1)) as f64;
    let other_per = r.other_cpu / r.other_requests.max(1) as f64;
    let test_per = r.testing_cpu / r.testing_requests.max(1) as f64;
    let cpu_ratio = test_per / other_per.max(1e-9);
    let mut over = false;
    if let Some(max) = cfg.max_rss_ratio.filter(|m| rss_ratio > *m) {
        over = true;
        reasons.push(format!(
            "memory: testing uses {:.1} MiB, {rss_ratio:.1}× the {other}'s {:.1} MiB (MAX_RSS_RATIO {max})",
            r.testing_rss as f64 / 1048576.0,
            r.other_rss as f64 / 1048576.0
        ));
    }
    let enough = r.testing_requests >= cfg.min_mirrored && r.other_cpu > 0.05;
    if let Some(max) = cfg.max_cpu_ratio.filter(|m| enough && cpu_ratio > *m) {
        over = true;
        reasons.push(format!(
            "CPU: testing uses {:.0} µs per request, {cpu_ratio:.1}× the {other}'s {:.0} µs (MAX_CPU_RATIO {max})",
            test_per * 1e6,
            other_per * 1e6
        ));
    }
    Some(ScorePart {
        name: "resources",
        score: if over { 0 } else { 100 },
        detail: format!(
            "RSS testing {:.1} MiB vs {other} {:.1} MiB ({rss_ratio:.2}×); {}",
            r.testing_rss as f64 / 1048576.0,
            r.other_rss as f64 / 1048576.0,
            if r.other_cpu > 0.05 && r.testing_cpu > 0.0 {
                format!(
                    "CPU per request testing {:.0} µs vs {other} {:.0} µs ({cpu_ratio:.2}×)",
                    test_per * 1e6,
                    other_per * 1e6
                )
            } else {
                "CPU per request: too little CPU time used yet to compare".to_string()
            }
        ),
    })
}

/// Answers compared so far against those needed before a promotion: `DIFF_SAMPLE` of
/// `MIN_MIRRORED`. Diffing sheds load when busy, and a build must not pass because its answers
/// went unread.
fn too_few_compared(s: &Summary, cfg: &ScoreConfig) -> Option<String> {
    // Only pairs with the same status on both sides can be compared.
    let comparable: u64 = s.endpoints.values().map(|e| e.same_status).sum();
    let needed = (cfg.min_mirrored.min(comparable) as f64 * cfg.diff_sample).ceil() as u64;
    let compared: u64 = s.diffs.endpoints.values().map(|e| e.pairs).sum();
    (compared < needed).then(|| {
        format!(
            "too few answers compared: {compared} of {needed} needed (diffing sheds load when the machine is busy; DIFF_SAMPLE lowers the need)"
        )
    })
}

/// Never judge on no evidence, in either direction; then any reason rejects; then doubts wait;
/// then the window.
fn verdict(s: &Summary, cfg: &ScoreConfig, j: Judging) -> Verdict {
    if s.pairs < cfg.min_mirrored {
        Verdict::Wait(format!(
            "too little traffic: {} of {} mirrored pairs needed",
            s.pairs, cfg.min_mirrored
        ))
    } else if !j.reasons.is_empty() {
        Verdict::Reject(j.reasons)
    } else if let Some(why) = too_few_compared(s, cfg) {
        Verdict::Wait(why)
    } else if !j.unsure.is_empty() {
        Verdict::Wait(format!("more evidence needed: {}", j.unsure.join("; ")))
    } else if s.elapsed < cfg.stable_window {
        Verdict::Wait(format!(
            "stable for {}s of {}s",
            s.elapsed.as_secs(),
            cfg.stable_window.as_secs()
        ))
    } else {
        Verdict::Promote
    }
}

fn pct(n: u64, of: u64) -> f64 {
    100.0 * n as f64 / of.max(1) as f64
}

/// 100 at or below zero excess, falling to 0 at twice the allowed excess.
fn ratio_score(value: f64, limit: f64) -> u32 {
    if value <= 0.0 {
        return 100;
    }
    let limit = limit.max(1e-9);
    (100.0 * (1.0 - value / (2.0 * limit))).clamp(0.0, 100.0) as u32
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::diff::DiffStats;
    use crate::score::scorecard::{EndpointStats, LogCounts, Resources};
    use crate::score::test_support::{cfg, pair, summarised, summary};
    use crate::score::Pair;

    #[test]
    fn the_5xx_rule_needs_confidence_with_or_without_a_baseline() {
        let worse = |new, before| {
            matches!(
                server_error_check(new, before, 0.01, 0.99),
                RateCheck::Worse { .. }
            )
        };
        assert!(!worse((1, 30), (5, 1000)), "one unlucky error");
        assert!(worse((25, 30), (5, 1000)));
        // Nothing before to compare with: judged against MAX_5XX_DELTA alone.
        assert!(!worse((1, 30), (0, 0)));
        assert!(worse((25, 30), (0, 0)));
    }

    #[test]
    fn too_little_data_waits_even_with_regressions() {
        let mut s = summary(10, 3600);
        s.testing_errors = 1000;
        assert!(
            matches!(evaluate(&s, &cfg()).verdict, Verdict::Wait(w) if w.contains("too little traffic"))
        );
    }

    #[test]
    fn healthy_waits_for_window_then_promotes() {
        assert!(
            matches!(evaluate(&summary(200, 10), &cfg()).verdict, Verdict::Wait(w) if w.contains("stable"))
        );
        assert_eq!(
            evaluate(&summary(200, 60), &cfg()).verdict,
            Verdict::Promote
        );
        assert_eq!(evaluate(&summary(200, 60), &cfg()).score, 100);
    }

    #[test]
    fn errors_and_5xx_reject_never_promote() {
        // Vili's inverted check promoted exactly this build.
        let mut s = summary(200, 600);
        s.endpoints.get_mut("GET /a").unwrap().testing_5xx = 200;
        s.testing_errors = 200;
        let e = evaluate(&s, &cfg());
        let Verdict::Reject(r) = e.verdict else {
            panic!("{e:?}")
        };
        assert!(
            r.iter().any(|r| r.contains("5xx")) && r.iter().any(|r| r.contains("log errors")),
            "{r:?}"
        );
        assert_eq!(e.score, 0);
    }

    #[test]
    fn promotion_waits_for_enough_compared_answers() {
        let sampled = ScoreConfig {
            diff_sample: 0.5,
            ..cfg()
        };
        let mut s = summary(200, 600);
        s.endpoints.get_mut("GET /a").unwrap().same_status = 200;
        // 100 mirrored pairs needed, half of them compared: 49 is not enough.
        for _ in 0..49 {
            s.diffs.record("GET /a", &[]);
        }
        let e = evaluate(&s, &sampled);
        assert!(
            matches!(&e.verdict, Verdict::Wait(w) if w.contains("49 of 50")),
            "{e:?}"
        );
        s.diffs.record("GET /a", &[]);
        assert_eq!(evaluate(&s, &sampled).verdict, Verdict::Promote);
        // Pairs whose statuses differ cannot be compared, and are not waited for.
        s.endpoints.get_mut("GET /a").unwrap().same_status = 40;
        s.diffs = DiffStats::default();
        for _ in 0..20 {
            s.diffs.record("GET /a", &[]);
        }
        assert_eq!(evaluate(&s, &sampled).verdict, Verdict::Promote);
    }

    #[test]
    fn a_handful_of_unlucky_requests_waits_a_real_shift_rejects() {
        // 3 5xx in 120 pairs against none: 2.5 % is over the 1-point margin, but not surely.
        let mut s = summary(120, 600);
        s.endpoints.get_mut("GET /a").unwrap().testing_5xx = 3;
        let e = evaluate(&s, &cfg());
        assert!(
            matches!(&e.verdict, Verdict::Wait(w) if w.contains("not yet sure at 99%")),
            "{e:?}"
        );
        // 30 in 300: surely worse.
        let mut s = summary(300, 600);
        s.endpoints.get_mut("GET /a").unwrap().testing_5xx = 30;
        let Verdict::Reject(r) = evaluate(&s, &cfg()).verdict else {
            panic!()
        };
        assert!(r[0].contains("at 99% confidence"), "{r:?}");
        // 1 in 1000: within the margin, promoted.
        let mut s = summary(1000, 600);
        s.endpoints.get_mut("GET /a").unwrap().testing_5xx = 1;
        assert_eq!(evaluate(&s, &cfg()).verdict, Verdict::Promote);
    }

    /// A summary with `n` paired copies, testing `factor`× the secondary on `GET /a`.
    fn with_paired_latency(n: u64, factor: f64) -> Summary {
        let mut s = summary(n, 600);
        s.noise_expected = true;
        s.latency_pairs = (0..n)
            .map(|i| {
                let sec = 0.001 + (i % 10) as f64 * 1e-4;
                // Five copies complete in each moment.
                (sec * factor, sec, (i / 5) as u32)
            })
            .collect();
        let e = s.endpoints.get_mut("GET /a").unwrap();
        e.latency_paired = n;
        e.latency_log_ratio = n as f64 * factor.ln();
        s.secondary_p95 = Some(Duration::from_micros(1900));
        s.testing_paired_p95 = Some(Duration::from_secs_f64(0.0019 * factor));
        s.running_p95 = Some(Duration::from_micros(900));
        s.testing_p95 = Some(Duration::from_secs_f64(0.0019 * factor));
        s
    }

    #[test]
    fn latency_rejects_a_significant_shift_over_the_ceiling_against_the_secondary() {
        let two = ScoreConfig {
            max_p95_ratio: Some(2.0),
            ..cfg()
        };
        let Verdict::Reject(r) = evaluate(&with_paired_latency(200, 3.0), &two).verdict else {
            panic!()
        };
        assert!(
            r[0].contains("the secondary's")
                && r[0].contains("Wilcoxon")
                && r[0].contains("slowest: GET /a (3.0×)"),
            "{r:?}"
        );
        // Testing 2.5× slower than running's user path but equal to the secondary: promoted.
        let mut fair = with_paired_latency(200, 1.0);
        fair.running_p95 = Some(Duration::from_micros(700));
        assert_eq!(evaluate(&fair, &two).verdict, Verdict::Promote);
        // A handful of pairs: not significant yet, no rejection.
        let mut few = with_paired_latency(200, 3.0);
        few.latency_pairs.truncate(12);
        assert_eq!(evaluate(&few, &two).verdict, Verdict::Promote);
    }

    #[test]
    fn a_stall_slowing_a_burst_of_copies_is_not_a_regression() {
        let two = ScoreConfig {
            max_p95_ratio: Some(2.0),
            ..cfg()
        };
        // Identical builds, but testing was stopped for a moment: the 64 copies in flight then
        // all took 300 ms against the secondary's 1 ms, and completed together when it resumed.
        // Over copies that is 64 of 100 slower (significant); over moments it is one in 8.
        let mut s = with_paired_latency(100, 1.0);
        let (before, after) = (
            s.latency_pairs[..18].to_vec(),
            s.latency_pairs[82..].to_vec(),
        );
        let stalled = (0..64).map(|_| (0.3, 0.001, 4));
        s.latency_pairs = before.into_iter().chain(stalled).chain(after).collect();
        s.testing_paired_p95 = Some(Duration::from_millis(300));
        let e = evaluate(&s, &two);
        assert_eq!(e.verdict, Verdict::Promote, "{e:?}");
        let part = e.parts.iter().find(|p| p.name == "latency").unwrap();
        assert!(
            part.detail.contains("on 64% of 100 paired copies"),
            "{}",
            part.detail
        );
        // A build that is 3× slower in every moment is rejected.
        let slow = with_paired_latency(100, 3.0);
        assert!(matches!(evaluate(&slow, &two).verdict, Verdict::Reject(_)));
    }

    #[test]
    fn without_a_secondary_latency_is_reported_never_judged() {
        let two = ScoreConfig {
            max_p95_ratio: Some(2.0),
            ..cfg()
        };
        let mut s = with_paired_latency(200, 3.0);
        s.noise_expected = false;
        s.latency_pairs.clear();
        s.secondary_p95 = None;
        s.testing_paired_p95 = None;
        let e = evaluate(&s, &two);
        assert_eq!(e.verdict, Verdict::Promote);
        let part = e.parts.iter().find(|p| p.name == "latency").unwrap();
        assert!(part.detail.contains("not judged"), "{}", part.detail);
    }

    #[test]
    fn resources_are_reported_and_judged_with_a_ceiling() {
        let mut s = summary(200, 600);
        s.resources = Some(Resources {
            other: "secondary",
            other_rss: 10 << 20,
            testing_rss: 40 << 20,
            other_cpu: 1.0,
            testing_cpu: 8.0,
            other_requests: 1000,
            testing_requests: 1000,
        });
        let e = evaluate(&s, &cfg());
        assert_eq!(e.verdict, Verdict::Promote);
        assert!(e.parts.iter().any(|p| p.name == "resources"
            && p.detail.contains("4.00×")
            && p.detail.contains("8.00×")));
        let strict = ScoreConfig {
            max_rss_ratio: Some(2.0),
            max_cpu_ratio: Some(2.0),
            ..cfg()
        };
        let Verdict::Reject(r) = evaluate(&s, &strict).verdict else {
            panic!()
        };
        assert!(
            r.iter().any(|r| r.contains("memory")
                && r.contains("40.0 MiB")
                && r.contains("the secondary's")),
            "{r:?}"
        );
        assert!(
            r.iter().any(|r| r.contains("CPU") && r.contains("8000 µs")),
            "{r:?}"
        );
    }

    /// The evaluation says what its pairs are: all live, or how many were replayed from how
    /// many recorded requests.
    #[test]
    fn the_evidence_is_stated() {
        let mut s = summary(320, 70);
        assert_eq!(evaluate(&s, &cfg()).evidence.text, "320 pairs, all live");
        s.replayed = 279;
        s.recorded = 112;
        let e = evaluate(&s, &cfg());
        assert_eq!(
            e.evidence.text,
            "320 pairs: 41 live, 279 replayed from 112 recorded requests"
        );
        assert_eq!((e.evidence.live, e.evidence.replayed), (41, 279));
        assert!(e
            .summary()
            .contains("279 replayed from 112 recorded requests"));
    }

    #[test]
    fn missing_endpoint_is_named() {
        let mut s = summary(200, 600);
        s.endpoints.insert(
            "GET /api/items".to_string(),
            EndpointStats {
                pairs: 20,
                missing_on_testing: 20,
                ..Default::default()
            },
        );
        let Verdict::Reject(r) = evaluate(&s, &cfg()).verdict else {
            panic!()
        };
        assert!(r[0].contains("GET /api/items"), "{r:?}");
    }

    /// `n` pairs of `path`: running answered `running`, the secondary `secondary` (none: `None`)
    /// and testing `testing`.
    fn statuses(
        path: &str,
        n: usize,
        running: u16,
        secondary: Option<u16>,
        testing: u16,
    ) -> Vec<Pair> {
        let p = Pair {
            running_status: running,
            secondary_status: secondary,
            testing_status: Some(testing),
            ..pair(path)
        };
        vec![p; n]
    }

    /// A one-time link: running consumed the token and redirected; the copies reach testing and
    /// the secondary afterwards and both answer 404. Testing answers as running's version does to
    /// the same copy: no regression, however often it happens.
    #[test]
    fn statuses_are_judged_against_the_secondarys_answer_to_the_same_copy() {
        let healthy = statuses("/a", 200, 200, Some(200), 200);
        for n in [1, 20] {
            let token = statuses("/confirm/ab12cd34ef", n, 302, Some(404), 404);
            let s = summarised(&[healthy.clone(), token].concat(), 600);
            let e = evaluate(&s, &cfg());
            assert_eq!(e.verdict, Verdict::Promote, "{n} tokens: {e:?}");
        }
        // Testing 404 where running and the secondary both answer 200: a real regression.
        let gone = statuses("/api/items/7", 20, 200, Some(200), 404);
        let e = evaluate(&summarised(&[healthy.clone(), gone].concat(), 600), &cfg());
        let Verdict::Reject(r) = e.verdict else {
            panic!("{e:?}")
        };
        assert!(
            r[0].contains("endpoint regression: GET /api/items/{n}")
                && r[0].contains("not on the secondary (20 of 20 pairs)"),
            "{r:?}"
        );
        // Without a secondary answer, running's status is all there is to compare with.
        let alone = statuses("/confirm/ab12cd34ef", 20, 302, None, 404);
        let Verdict::Reject(r) =
            evaluate(&summarised(&[healthy, alone].concat(), 600), &cfg()).verdict
        else {
            panic!()
        };
        assert!(r[0].contains("not on running (20 of 20 pairs)"), "{r:?}");
    }

    /// The 5xx and 2xx→4xx rates are judged against the secondary's statuses too.
    #[test]
    fn error_rates_are_judged_against_the_secondary() {
        let healthy = statuses("/a", 200, 200, Some(200), 200);
        // Running answered before a dependency broke; both copies then met it.
        let broke = statuses("/pay", 30, 200, Some(503), 503);
        let conflict = statuses("/book", 30, 201, Some(409), 409);
        let s = summarised(&[healthy.clone(), broke, conflict].concat(), 600);
        assert_eq!(evaluate(&s, &cfg()).verdict, Verdict::Promote);
        let broke = statuses("/pay", 30, 200, Some(200), 503);
        let s = summarised(&[healthy, broke].concat(), 600);
        let Verdict::Reject(r) = evaluate(&s, &cfg()).verdict else {
            panic!()
        };
        assert!(
            r[0].contains("testing 13.0% vs the secondary 0.0%"),
            "{r:?}"
        );
    }

    /// An endpoint seen fewer than `MIN_ENDPOINT_PAIRS` times is not judged gone on one pair:
    /// the verdict waits and says why.
    #[test]
    fn a_missing_endpoint_needs_min_endpoint_pairs_before_it_rejects() {
        let healthy = statuses("/a", 200, 200, Some(200), 200);
        let once = statuses("/api/items/7", 1, 200, Some(200), 404);
        let e = evaluate(&summarised(&[healthy, once].concat(), 600), &cfg());
        assert!(
            matches!(&e.verdict, Verdict::Wait(w) if w.contains("GET /api/items/{n} answers 404/405/501 on testing but not on the secondary (1 of 1 pairs): too few to judge, MIN_ENDPOINT_PAIRS is 5")),
            "{e:?}"
        );
    }

    /// Log lines are judged like with like: against the secondary's over the very same copies,
    /// counted from its start as testing's are, so lines every build of the app logs cancel out;
    /// against running's only without a secondary.
    #[test]
    fn log_lines_are_judged_against_the_secondary_when_it_answered_copies() {
        let counts = |errors, warns| {
            Some(LogCounts {
                errors,
                warns,
                requests: 200,
            })
        };
        // Replayed requests with an expired token warn on both; startup errors on both.
        let mut s = summary(200, 600);
        (s.testing_warns, s.testing_errors) = (180, 40);
        s.secondary_logs = counts(40, 180);
        assert_eq!(evaluate(&s, &cfg()).verdict, Verdict::Promote);
        // Testing alone logs them: rejected, against the secondary.
        s.secondary_logs = counts(0, 0);
        let Verdict::Reject(r) = evaluate(&s, &cfg()).verdict else {
            panic!("rejected")
        };
        let has = |t: &str| r.iter().any(|r| r.contains(t));
        assert!(
            has("log warns: testing 180 warn lines for 200 requests vs the secondary 0 for 200")
                && has("log errors: testing 40 error lines"),
            "{r:?}"
        );
        // No secondary (or none of its answers yet): running's users, as before.
        for secondary in [None, Some(LogCounts::default())] {
            s.secondary_logs = secondary;
            let Verdict::Reject(r) = evaluate(&s, &cfg()).verdict else {
                panic!("rejected")
            };
            assert!(
                r.iter().any(|r| r.contains("vs running 0 for 200")),
                "{r:?}"
            );
        }
    }
}
