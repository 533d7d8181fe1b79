//! Scoring testing against running. Mirrored [`Pair`]s and both instances' log lines fold into a
//! [`Scorecard`]; [`evaluate`] is a pure function from a scorecard's [`Summary`] to a verdict
//! (`Wait`, `Promote` or `Reject(reasons)`) and a 0–100 score with its parts.

pub mod logs;
mod pair;
pub mod stats;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::ScoreConfig;
use crate::diff::{DiffKind, DiffStats};
use crate::instance::InstanceId;
use logs::{LevelRules, LogTail};
pub use pair::Pair;
use stats::RateCheck;

/// Latency samples kept per side; older ones are overwritten so memory stays bounded.
const LATENCY_SAMPLES: usize = 8192;

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
    /// The differences in answers, worst first (at most [`MAX_DIFF_ROWS`]).
    pub diffs: Vec<DiffRow>,
}

/// Rows of the differences table kept in an evaluation (status, events, dashboard).
pub const MAX_DIFF_ROWS: usize = 20;
/// Pairs with a secondary answer an endpoint needs before its noise is known.
pub const MIN_NOISE_PAIRS: u64 = 10;

/// How one difference (endpoint, path, kind) is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffJudgement {
    /// Clearly above its noise (or noise unknown and judged by `MAX_BODY_DIFF`): it counts.
    Counts,
    /// Not clearly above the rate at which running differs from itself: it does not count.
    Noise,
    /// Only the versions differ: it never counts.
    Expected,
    /// Answers over `DIFF_MAX_BODY` that differ by length or hash: reported, never counted.
    TooLarge,
    /// No secondary measured this endpoint's noise (`NOISE_CANCEL=off`, or not yet).
    NoiseUnknown,
    /// Not enough pairs yet to tell it from noise.
    Unsure,
}

/// One row of the differences table: where answers differ, how often, and an example.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiffRow {
    /// `GET /items/{n}`.
    pub endpoint: String,
    /// `$.items[*].price`.
    pub path: String,
    /// What kind of difference.
    pub kind: DiffKind,
    /// Pairs with this difference.
    pub pairs: u64,
    /// Pairs of this endpoint compared.
    pub of: u64,
    /// `pairs / of`.
    pub rate: f64,
    /// How often running differed from itself here, when measured.
    pub noise_rate: Option<f64>,
    /// How it is judged.
    pub judgement: DiffJudgement,
    /// Running's value in one pair (at most 200 bytes).
    pub running: String,
    /// Testing's value in the same pair.
    pub testing: String,
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
            "score {} [{}] → {verdict}{diffs}",
            self.score,
            parts.join(", ")
        )
    }
}

/// Counts for one endpoint (method + folded path).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointStats {
    /// Pairs seen.
    pub pairs: u64,
    /// Running answered 5xx.
    pub running_5xx: u64,
    /// Testing answered 5xx or gave no answer.
    pub testing_5xx: u64,
    /// Running answered non-404 and testing 404/405/501: the endpoint is gone on testing.
    pub missing_on_testing: u64,
    /// Running answered 2xx and testing 4xx (other than the missing-endpoint codes).
    pub ok_to_client_error: u64,
    /// Pairs where both answered the same status (those whose answers can be compared).
    pub same_status: u64,
    /// Pairs with the same status whose bodies were compared.
    pub bodies_compared: u64,
    /// Of those, bodies that differed.
    pub bodies_differ: u64,
}

/// What the verdict is computed from; plain data, built by [`Scorecard::summary`].
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Time since testing became ready.
    pub elapsed: Duration,
    /// Mirrored pairs.
    pub pairs: u64,
    /// Per endpoint.
    pub endpoints: BTreeMap<String, EndpointStats>,
    /// User requests running served in the window (the denominator for its log lines).
    pub running_requests: u64,
    /// Error lines in testing's logs since it started (startup errors count).
    pub testing_errors: u64,
    /// Warn lines in testing's logs since it started.
    pub testing_warns: u64,
    /// Error lines in running's logs during the window (its startup errors do not count).
    pub running_errors: u64,
    /// Warn lines in running's logs during the window.
    pub running_warns: u64,
    /// Running's p95 latency over the pairs.
    pub running_p95: Option<Duration>,
    /// Testing's p95 latency over the pairs.
    pub testing_p95: Option<Duration>,
    /// Running's latency samples, in seconds (for Mann-Whitney U).
    pub running_latencies: Vec<f64>,
    /// Testing's latency samples, in seconds.
    pub testing_latencies: Vec<f64>,
    /// Differences between testing's and running's answers.
    pub diffs: DiffStats,
    /// Differences between the secondary's and running's answers (the noise).
    pub noise: DiffStats,
    /// Whether a secondary is expected to measure noise (`NOISE_CANCEL=on`).
    pub noise_expected: bool,
    /// Resource use of both instances, when sampled.
    pub resources: Option<Resources>,
}

/// CPU and memory of both instances over the scoring window, sampled with sysinfo.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Resources {
    /// Running's resident memory, bytes.
    pub running_rss: u64,
    /// Testing's resident memory, bytes.
    pub testing_rss: u64,
    /// Running's CPU seconds since scoring began.
    pub running_cpu: f64,
    /// Testing's CPU seconds since scoring began.
    pub testing_cpu: f64,
    /// User requests running served over the same time.
    pub running_requests: u64,
    /// Mirrored requests testing answered over the same time.
    pub testing_requests: u64,
}

/// Fold `/users/42/orders/9f1c…` into `/users/{n}/orders/{id}` so one endpoint is one key.
pub fn endpoint_key(method: &Method, path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 8);
    out.push_str(method.as_str());
    out.push(' ');
    let mut first = true;
    for seg in path.split('/') {
        if !first {
            out.push('/');
        }
        first = false;
        out.push_str(fold_segment(seg));
    }
    if path.is_empty() {
        out.push('/');
    }
    out
}

fn fold_segment(seg: &str) -> &str {
    if seg.is_empty() {
        return seg;
    }
    if seg.bytes().all(|b| b.is_ascii_digit()) {
        return "{n}";
    }
    let is_hexish = |b: u8| b.is_ascii_hexdigit() || b == b'-';
    if seg.len() == 36
        && seg.bytes().all(is_hexish)
        && seg.bytes().filter(|b| *b == b'-').count() == 4
    {
        return "{uuid}";
    }
    let has_digit = seg.bytes().any(|b| b.is_ascii_digit());
    if seg.len() >= 8
        && has_digit
        && seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return "{id}";
    }
    seg
}

/// Pure verdict: too little data waits; any real regression rejects with its reasons; otherwise
/// promote once the stable window is over.
pub fn evaluate(s: &Summary, cfg: &ScoreConfig) -> Evaluation {
    let mut j = Judging::default();
    let (bodies, diffs) = bodies_part(s, cfg, &mut j);
    let mut parts = vec![
        endpoints_part(s, &mut j.reasons),
        server_error_part(s, cfg, &mut j),
        client_error_part(s, cfg, &mut j),
        log_errors_part(s, cfg, &mut j),
        log_warns_part(s, cfg, &mut j.reasons),
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
    }
}

/// What the parts found: regressions (reasons to reject) and doubts (reasons to wait).
#[derive(Default)]
struct Judging {
    reasons: Vec<String>,
    unsure: Vec<String>,
}

impl Judging {
    /// Judge a rate by its confidence interval: `Worse` rejects with `what`, `Undecided` above
    /// the margin waits, anything else passes.
    fn rate(&mut self, check: RateCheck, point_over: bool, confidence: f64, what: String) {
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

/// Pairs as a divisor: never zero.
fn pairs_divisor(s: &Summary) -> f64 {
    s.pairs.max(1) as f64
}

/// Endpoints that exist on running and are gone on testing (most of their pairs).
fn endpoints_part(s: &Summary, reasons: &mut Vec<String>) -> ScorePart {
    let missing: Vec<&String> = s
        .endpoints
        .iter()
        .filter(|(_, e)| e.missing_on_testing > 0 && e.missing_on_testing * 2 > e.pairs)
        .map(|(k, _)| k)
        .collect();
    for k in &missing {
        let e = &s.endpoints[*k];
        reasons.push(format!("endpoint regression: {k} answers 404/405/501 on testing but not on running ({} of {} pairs)", e.missing_on_testing, e.pairs));
    }
    ScorePart {
        name: "endpoints",
        score: if missing.is_empty() { 100 } else { 0 },
        detail: format!(
            "{} endpoints, {} missing on testing",
            s.endpoints.len(),
            missing.len()
        ),
    }
}

/// 5xx (and no answer) rate, overall and per endpoint with enough pairs, compared with running's
/// at `CONFIDENCE`; an endpoint is named only when the overall rate is within bounds.
fn server_error_part(s: &Summary, cfg: &ScoreConfig, j: &mut Judging) -> ScorePart {
    let run5: u64 = s.endpoints.values().map(|e| e.running_5xx).sum();
    let test5: u64 = s.endpoints.values().map(|e| e.testing_5xx).sum();
    let delta = (test5 as f64 - run5 as f64) / pairs_divisor(s);
    let mut worst = delta;
    let check = stats::compare_rates(
        test5,
        s.pairs,
        run5,
        s.pairs,
        cfg.max_5xx_delta,
        cfg.confidence,
    );
    let overall_worse = matches!(check, RateCheck::Worse { .. });
    j.rate(
        check,
        delta > cfg.max_5xx_delta,
        cfg.confidence,
        format!(
            "5xx rate: testing {:.1}% vs running {:.1}% overall ({test5} and {run5} of {} pairs)",
            pct(test5, s.pairs),
            pct(run5, s.pairs),
            s.pairs
        ),
    );
    for (k, e) in &s.endpoints {
        if e.pairs < cfg.min_endpoint_pairs {
            continue;
        }
        let d = (e.testing_5xx as f64 - e.running_5xx as f64) / e.pairs as f64;
        worst = worst.max(d);
        if overall_worse {
            continue;
        }
        let check = stats::compare_rates(
            e.testing_5xx,
            e.pairs,
            e.running_5xx,
            e.pairs,
            cfg.max_5xx_delta,
            cfg.confidence,
        );
        j.rate(
            check,
            d > cfg.max_5xx_delta,
            cfg.confidence,
            format!(
                "5xx rate on {k}: testing {:.1}% vs running {:.1}% of {} pairs",
                pct(e.testing_5xx, e.pairs),
                pct(e.running_5xx, e.pairs),
                e.pairs
            ),
        );
    }
    ScorePart {
        name: "5xx",
        score: ratio_score(worst, cfg.max_5xx_delta),
        detail: format!("testing {test5} vs running {run5} of {} pairs", s.pairs),
    }
}

/// Requests running answers 2xx and testing 4xx, at `CONFIDENCE`.
fn client_error_part(s: &Summary, cfg: &ScoreConfig, j: &mut Judging) -> ScorePart {
    let ok4: u64 = s.endpoints.values().map(|e| e.ok_to_client_error).sum();
    let share = ok4 as f64 / pairs_divisor(s);
    j.rate(
        stats::compare_rate_to(ok4, s.pairs, cfg.max_client_error_delta, cfg.confidence),
        share > cfg.max_client_error_delta,
        cfg.confidence,
        format!(
            "client errors: {ok4} of {} pairs answered 2xx on running but 4xx on testing",
            s.pairs
        ),
    );
    ScorePart {
        name: "4xx",
        score: ratio_score(share, cfg.max_client_error_delta),
        detail: format!("{ok4} pairs 2xx→4xx"),
    }
}

/// Excess of testing's log lines per mirrored request over running's per user request.
fn log_line_delta(s: &Summary, testing: u64, running: u64) -> f64 {
    testing as f64 / pairs_divisor(s) - running as f64 / s.running_requests.max(1) as f64
}

/// Error log lines per request: testing's share of requests with an error line against running's,
/// at `CONFIDENCE` (a request logging several lines counts once: the bound needs a proportion).
fn log_errors_part(s: &Summary, cfg: &ScoreConfig, j: &mut Judging) -> ScorePart {
    let err_delta = log_line_delta(s, s.testing_errors, s.running_errors);
    let running_n = s.running_requests.max(1);
    let check = stats::compare_rates(
        s.testing_errors.min(s.pairs),
        s.pairs,
        s.running_errors.min(running_n),
        running_n,
        cfg.max_log_error_delta.min(1.0),
        cfg.confidence,
    );
    let check = match check {
        // More lines than requests is an excess whatever the bound says.
        _ if err_delta > cfg.max_log_error_delta && s.testing_errors > s.pairs => {
            RateCheck::Worse {
                low: 1.0,
                high: 1.0,
            }
        }
        c => c,
    };
    j.rate(
        check,
        err_delta > cfg.max_log_error_delta,
        cfg.confidence,
        format!(
            "log errors: testing {} error lines for {} mirrored requests vs running {} for {} requests",
            s.testing_errors, s.pairs, s.running_errors, s.running_requests
        ),
    );
    ScorePart {
        name: "log_errors",
        score: ratio_score(err_delta, cfg.max_log_error_delta),
        detail: format!(
            "testing {} vs running {}",
            s.testing_errors, s.running_errors
        ),
    }
}

/// Warn log lines per request.
fn log_warns_part(s: &Summary, cfg: &ScoreConfig, reasons: &mut Vec<String>) -> ScorePart {
    let warn_delta = log_line_delta(s, s.testing_warns, s.running_warns);
    if warn_delta > cfg.max_log_warn_delta {
        reasons.push(format!(
            "log warnings: testing {} warn lines for {} mirrored requests vs running {} for {} requests",
            s.testing_warns, s.pairs, s.running_warns, s.running_requests
        ));
    }
    ScorePart {
        name: "log_warns",
        score: ratio_score(warn_delta, cfg.max_log_warn_delta),
        detail: format!("testing {} vs running {}", s.testing_warns, s.running_warns),
    }
}

/// Answers (where statuses agree), judged per endpoint and path: a difference counts when it is
/// clearly above its noise (the rate at which running differs from its own secondary) and then
/// rejects above `MAX_BODY_DIFF`; without noise measured it is reported, and judged only when
/// noise cancellation is off and `MAX_BODY_DIFF` is set.
fn bodies_part(s: &Summary, cfg: &ScoreConfig, j: &mut Judging) -> (ScorePart, Vec<DiffRow>) {
    let mut rows = Vec::new();
    let mut worst = 0.0f64;
    let (mut counted, mut noise_paths, mut expected) = (0usize, 0usize, 0usize);
    for (endpoint, e) in &s.diffs.endpoints {
        let noise = s
            .noise
            .endpoints
            .get(endpoint)
            .filter(|n| n.pairs >= MIN_NOISE_PAIRS);
        for ((path, kind), ps) in &e.paths {
            let rate = ps.pairs as f64 / e.pairs.max(1) as f64;
            let noise_k = noise.map(|n| {
                n.paths
                    .iter()
                    .filter(|((p, k), _)| p == path && k.counts())
                    .map(|(_, x)| x.pairs)
                    .sum::<u64>()
                    .min(n.pairs)
            });
            let noise_rate = noise.zip(noise_k).map(|(n, k)| k as f64 / n.pairs as f64);
            let judgement = if *kind == DiffKind::Uncompared {
                DiffJudgement::TooLarge
            } else if !kind.counts() {
                expected += 1;
                DiffJudgement::Expected
            } else if let (Some(n), Some(nk), Some(nr)) = (noise, noise_k, noise_rate) {
                let margin = cfg.diff_absolute.max(nr * cfg.diff_relative);
                match stats::compare_rates(ps.pairs, e.pairs, nk, n.pairs, margin, cfg.confidence) {
                    RateCheck::Worse { .. } => DiffJudgement::Counts,
                    RateCheck::Fine { .. } => DiffJudgement::Noise,
                    RateCheck::Undecided { .. } => {
                        if rate - nr > margin {
                            DiffJudgement::Unsure
                        } else {
                            DiffJudgement::Noise
                        }
                    }
                }
            } else if s.noise_expected {
                DiffJudgement::Unsure
            } else {
                DiffJudgement::NoiseUnknown
            };
            let row = DiffRow {
                endpoint: endpoint.clone(),
                path: path.clone(),
                kind: *kind,
                pairs: ps.pairs,
                of: e.pairs,
                rate,
                noise_rate,
                judgement,
                running: ps.example.running.clone(),
                testing: ps.example.testing.clone(),
            };
            let what = || {
                format!(
                    "answers differ on {endpoint} at {path} ({}): {} of {} pairs ({:.1}%){}; e.g. running {} vs testing {}",
                    kind.as_str(),
                    ps.pairs,
                    e.pairs,
                    rate * 100.0,
                    noise_rate.map_or(String::new(), |n| format!(", running differs from itself in {:.1}%", n * 100.0)),
                    show_example(&row.running),
                    show_example(&row.testing),
                )
            };
            // An endpoint seen too seldom is reported, never judged (as its 5xx rate is not).
            let few = e.pairs < cfg.min_endpoint_pairs;
            match judgement {
                _ if few => {}
                DiffJudgement::Counts | DiffJudgement::NoiseUnknown => {
                    if judgement == DiffJudgement::Counts {
                        counted += 1;
                    }
                    let judged = cfg
                        .max_body_diff
                        .filter(|_| judgement == DiffJudgement::Counts || !s.noise_expected);
                    if let Some(max) = judged {
                        worst = worst.max(rate / max.max(1e-9) / 2.0);
                        j.rate(
                            stats::compare_rate_to(ps.pairs, e.pairs, max, cfg.confidence),
                            rate > max,
                            cfg.confidence,
                            what(),
                        );
                    }
                }
                DiffJudgement::Unsure => {
                    if cfg.max_body_diff.is_some_and(|max| rate > max) {
                        j.unsure.push(format!(
                            "{} (noise not measured yet{})",
                            what(),
                            if s.noise_expected {
                                ": waiting for the secondary's answers"
                            } else {
                                ""
                            }
                        ));
                    }
                }
                DiffJudgement::Noise => noise_paths += 1,
                DiffJudgement::Expected | DiffJudgement::TooLarge => {}
            }
            if few && judgement == DiffJudgement::Noise {
                noise_paths += 1;
            }
            rows.push(row);
        }
    }
    let order = |r: &DiffRow| match r.judgement {
        DiffJudgement::Counts => 0,
        DiffJudgement::Unsure => 1,
        DiffJudgement::NoiseUnknown => 2,
        DiffJudgement::Noise => 3,
        DiffJudgement::Expected => 4,
        DiffJudgement::TooLarge => 5,
    };
    rows.sort_by(|a, b| {
        order(a)
            .cmp(&order(b))
            .then(b.rate.total_cmp(&a.rate))
            .then_with(|| a.endpoint.cmp(&b.endpoint))
    });
    rows.truncate(MAX_DIFF_ROWS);
    let compared: u64 = s.diffs.endpoints.values().map(|e| e.pairs).sum();
    let differ: u64 = s.endpoints.values().map(|e| e.bodies_differ).sum();
    let part = ScorePart {
        name: "bodies",
        score: (100.0 * (1.0 - worst.min(1.0))) as u32,
        detail: format!(
            "{differ} of {compared} compared answers differ; {counted} paths count, {noise_paths} noise, {expected} version only{}",
            match (s.noise_expected, cfg.max_body_diff) {
                (false, None) => ", noise unknown, reported only",
                (false, Some(_)) => ", noise unknown",
                _ => "",
            }
        ),
    };
    (part, rows)
}

/// An example value for a reason: quoted as captured, or "(none)".
fn show_example(v: &str) -> String {
    if v.is_empty() {
        "(none)".to_string()
    } else {
        v.to_string()
    }
}

/// Testing's memory and CPU per request against running's, each judged only with its ceiling.
fn resources_part(s: &Summary, cfg: &ScoreConfig, reasons: &mut Vec<String>) -> Option<ScorePart> {
    let r = s.resources?;
    let rss_ratio = r.testing_rss as f64 / (r.running_rss.max(1)) as f64;
    let run_per = r.running_cpu / r.running_requests.max(1) as f64;
    let test_per = r.testing_cpu / r.testing_requests.max(1) as f64;
    let cpu_ratio = test_per / run_per.max(1e-9);
    let mut over = false;
    if let Some(max) = cfg.max_rss_ratio.filter(|m| rss_ratio > *m) {
        over = true;
        reasons.push(format!(
            "memory: testing uses {:.1} MiB, {rss_ratio:.1}× running's {:.1} MiB (MAX_RSS_RATIO {max})",
            r.testing_rss as f64 / 1048576.0,
            r.running_rss as f64 / 1048576.0
        ));
    }
    let enough = r.testing_requests >= cfg.min_mirrored && r.running_cpu > 0.05;
    if let Some(max) = cfg.max_cpu_ratio.filter(|m| enough && cpu_ratio > *m) {
        over = true;
        reasons.push(format!(
            "CPU: testing uses {:.0} µs per request, {cpu_ratio:.1}× running's {:.0} µs (MAX_CPU_RATIO {max})",
            test_per * 1e6,
            run_per * 1e6
        ));
    }
    Some(ScorePart {
        name: "resources",
        score: if over { 0 } else { 100 },
        detail: format!(
            "RSS testing {:.1} MiB vs running {:.1} MiB ({rss_ratio:.2}×); {}",
            r.testing_rss as f64 / 1048576.0,
            r.running_rss as f64 / 1048576.0,
            if r.running_cpu > 0.05 && r.testing_cpu > 0.0 {
                format!(
                    "CPU per request testing {:.0} µs vs running {:.0} µs ({cpu_ratio:.2}×)",
                    test_per * 1e6,
                    run_per * 1e6
                )
            } else {
                "CPU per request: too little CPU time used yet to compare".to_string()
            }
        ),
    })
}

/// p95 latency, reported once both sides have samples, with Mann-Whitney U's verdict on whether
/// testing is slower; judged only when a ceiling is set, and then only a shift that is both
/// over the ceiling and significant at `CONFIDENCE` rejects.
fn latency_part(s: &Summary, cfg: &ScoreConfig, reasons: &mut Vec<String>) -> Option<ScorePart> {
    let (r, t) = (s.running_p95?, s.testing_p95?);
    let ratio = t.as_secs_f64() / r.as_secs_f64().max(1e-6);
    let mw = stats::mann_whitney(&s.running_latencies, &s.testing_latencies);
    let significant = mw.is_some_and(|m| m.p_slower < 1.0 - cfg.confidence);
    let over = cfg.max_p95_ratio.is_some_and(|max| ratio > max) && significant;
    let mw_text = mw.map_or(String::new(), |m| {
        format!(
            "; Mann-Whitney: P(testing slower) {:.2}, p {:.2e} over {} and {} samples",
            m.effect,
            m.p_slower,
            s.running_latencies.len(),
            s.testing_latencies.len()
        )
    });
    if over {
        reasons.push(format!(
            "latency: testing p95 {:?} is {ratio:.1}× running's {:?}{mw_text}",
            t, r
        ));
    }
    Some(ScorePart {
        name: "latency",
        score: if over { 0 } else { 100 },
        detail: format!(
            "p95 testing {:?} vs running {:?} ({ratio:.2}×){mw_text}",
            t, r
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

/// Running tallies for the current testing instance.
pub struct Scorecard {
    testing: InstanceId,
    since: Instant,
    pairs: u64,
    endpoints: BTreeMap<String, EndpointStats>,
    running_latency: Vec<Duration>,
    testing_latency: Vec<Duration>,
    requests_at_start: u64,
    testing_log: LogTail,
    running_log: LogTail,
    diffs: DiffStats,
    noise_diffs: DiffStats,
    /// Whether a secondary measures noise for this build.
    noise: bool,
    /// Testing's and running's pids, with their CPU seconds and the request count when first
    /// sampled (CPU per request is measured from there).
    testing_cpu: CpuBase,
    running_cpu: CpuBase,
}

/// A process's CPU at the first sample, to measure what it used since.
#[derive(Debug, Clone, Copy, Default)]
struct CpuBase {
    pid: u32,
    first: Option<(f64, u64)>,
}

impl Scorecard {
    /// A fresh scorecard for `testing`, logs counted from testing's start and from running's now.
    pub fn new(watch: Watch, requests_now: u64, now: Instant) -> Scorecard {
        Scorecard {
            testing: watch.testing,
            since: now,
            pairs: 0,
            endpoints: BTreeMap::new(),
            running_latency: Vec::new(),
            testing_latency: Vec::new(),
            requests_at_start: requests_now,
            testing_log: LogTail::from_start(watch.testing_dir),
            running_log: LogTail::from_now(watch.running_dir),
            diffs: DiffStats::default(),
            noise_diffs: DiffStats::default(),
            noise: watch.noise,
            testing_cpu: CpuBase {
                pid: watch.testing_pid,
                first: None,
            },
            running_cpu: CpuBase {
                pid: watch.running_pid.unwrap_or(0),
                first: None,
            },
        }
    }

    /// Running was restarted: follow its new logs and process.
    fn follow_running(&mut self, dir: std::path::PathBuf, pid: Option<u32>) {
        self.running_log.follow(dir);
        self.running_cpu = CpuBase {
            pid: pid.unwrap_or(0),
            first: None,
        };
    }

    /// Sample both processes; `None` until both have two samples apart.
    fn resources(&mut self, running_requests: u64) -> Option<Resources> {
        let (t, r) = (self.testing_cpu.pid, self.running_cpu.pid);
        if t == 0 || r == 0 {
            return None;
        }
        let usage = crate::usage::of(&[t, r]);
        let (tu, ru) = (usage.first().copied()??, usage.get(1).copied()??);
        let tb = *self
            .testing_cpu
            .first
            .get_or_insert((tu.cpu_seconds, self.pairs));
        let rb = *self
            .running_cpu
            .first
            .get_or_insert((ru.cpu_seconds, running_requests));
        Some(Resources {
            running_rss: ru.resident_bytes,
            testing_rss: tu.resident_bytes,
            running_cpu: ru.cpu_seconds - rb.0,
            testing_cpu: tu.cpu_seconds - tb.0,
            running_requests: running_requests.saturating_sub(rb.1),
            testing_requests: self.pairs.saturating_sub(tb.1),
        })
    }

    /// Fold one pair in.
    pub fn record(&mut self, p: &Pair) {
        if p.testing != self.testing {
            return;
        }
        self.pairs += 1;
        let e = self
            .endpoints
            .entry(endpoint_key(&p.method, &p.path))
            .or_default();
        e.pairs += 1;
        let run = p.running_status;
        if run >= 500 {
            e.running_5xx += 1;
        }
        match p.testing_status {
            None => e.testing_5xx += 1,
            Some(t) if t >= 500 && t != 501 => e.testing_5xx += 1,
            Some(t) if matches!(t, 404 | 405 | 501) && run != 404 && run != t => {
                e.missing_on_testing += 1
            }
            Some(t) if (400..500).contains(&t) && (200..300).contains(&run) => {
                e.ok_to_client_error += 1
            }
            _ => {}
        }
        if p.testing_status == Some(run) {
            e.same_status += 1;
        }
        if let Some(diffs) = &p.diffs {
            e.bodies_compared += 1;
            if diffs.iter().any(|d| d.kind.counts()) {
                e.bodies_differ += 1;
            }
            let key = endpoint_key(&p.method, &p.path);
            self.diffs.record(&key, diffs);
            if let Some(noise) = &p.noise {
                self.noise_diffs.record(&key, noise);
            }
        }
        let slot = (self.pairs as usize - 1) % LATENCY_SAMPLES;
        push_sample(&mut self.running_latency, slot, p.running_latency);
        if let Some(l) = p.testing_latency {
            push_sample(&mut self.testing_latency, slot, l);
        }
    }

    /// Read new log lines, sample both processes and summarise.
    pub fn summary(
        &mut self,
        rules: &LevelRules,
        running_requests_now: u64,
        now: Instant,
        noise_expected: bool,
    ) -> Summary {
        let (te, tw) = self.testing_log.poll(rules);
        let (re, rw) = self.running_log.poll(rules);
        let secs = |v: &[Duration]| v.iter().map(Duration::as_secs_f64).collect::<Vec<_>>();
        Summary {
            running_latencies: secs(&self.running_latency),
            testing_latencies: secs(&self.testing_latency),
            diffs: self.diffs.clone(),
            noise: self.noise_diffs.clone(),
            noise_expected,
            resources: self.resources(running_requests_now),
            elapsed: now.duration_since(self.since),
            pairs: self.pairs,
            endpoints: self.endpoints.clone(),
            running_requests: running_requests_now.saturating_sub(self.requests_at_start),
            testing_errors: te,
            testing_warns: tw,
            running_errors: re,
            running_warns: rw,
            running_p95: p95(&self.running_latency),
            testing_p95: p95(&self.testing_latency),
        }
    }
}

fn push_sample(v: &mut Vec<Duration>, slot: usize, d: Duration) {
    if v.len() < LATENCY_SAMPLES {
        v.push(d);
    } else {
        v[slot] = d;
    }
}

fn p95(v: &[Duration]) -> Option<Duration> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    Some(s[(s.len() * 95 / 100).min(s.len() - 1)])
}

/// What the supervisor tells the scorer.
#[derive(Debug, Clone, PartialEq)]
pub enum ScorerControl {
    /// Score this testing instance from now on (a fresh scorecard).
    Watch(Watch),
    /// Running was restarted: count its logs from the new instance folder, keeping the score.
    Running {
        /// The new running instance folder.
        running_dir: std::path::PathBuf,
        /// Its process.
        running_pid: Option<u32>,
    },
    /// No testing instance: stop scoring.
    Clear,
    /// The secondary was given up for this build: noise stays unknown.
    NoNoise,
    /// New thresholds from a reloaded `.env` (SIGHUP); the scorecard is kept.
    Config(ScoreConfig),
}

/// What to score: the testing instance against the running one.
#[derive(Debug, Clone, PartialEq)]
pub struct Watch {
    /// The testing instance.
    pub testing: InstanceId,
    /// Its instance folder (logs counted from its start).
    pub testing_dir: std::path::PathBuf,
    /// Its process, for memory and CPU.
    pub testing_pid: u32,
    /// Running's instance folder (logs counted from now).
    pub running_dir: std::path::PathBuf,
    /// Running's process.
    pub running_pid: Option<u32>,
    /// Whether a secondary measures noise for this build (`NOISE_CANCEL=on` and one could run).
    pub noise: bool,
}

/// A verdict about one testing instance, sent to the supervisor.
#[derive(Debug, Clone)]
pub struct Scored {
    /// The testing instance.
    pub testing: InstanceId,
    /// The evaluation.
    pub evaluation: Evaluation,
}

/// How long the scorer lets mirrored pairs gather after taking a batch (see [`run`]).
const PAIR_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// Most pairs the scorer takes at once before pausing.
const PAIR_BATCH: usize = 1024;

/// The scorer task: folds pairs, evaluates every `EVALUATE_EVERY`, and reports to the supervisor.
/// `requests` counts user requests (the proxy's counter, shared), the denominator for running's logs.
pub async fn run(
    cfg: ScoreConfig,
    requests: Arc<AtomicU64>,
    mut pairs: mpsc::Receiver<Pair>,
    mut control: mpsc::UnboundedReceiver<ScorerControl>,
    verdicts: mpsc::Sender<Scored>,
    cancel: CancellationToken,
) {
    let mut cfg = cfg;
    let mut rules = LevelRules::new(&cfg.plain_error_regex, &cfg.plain_warn_regex);
    let mut card: Option<Scorecard> = None;
    let mut tick = tokio::time::interval(cfg.evaluate_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // In this order: a new testing instance (or none) is known before the pairs queued
        // behind it are counted, and pairs arriving without pause never delay an evaluation.
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            Some(c) = control.recv() => {
                card = match c {
                    ScorerControl::Watch(w) => Some(Scorecard::new(w, requests.load(Ordering::Relaxed), Instant::now())),
                    ScorerControl::Running { running_dir, running_pid } => {
                        if let Some(c) = card.as_mut() {
                            c.follow_running(running_dir, running_pid);
                        }
                        continue;
                    }
                    ScorerControl::Clear => None,
                    ScorerControl::NoNoise => {
                        if let Some(c) = card.as_mut() {
                            c.noise = false;
                        }
                        continue;
                    }
                    ScorerControl::Config(new) => {
                        if new.evaluate_every != cfg.evaluate_every {
                            tick = tokio::time::interval(new.evaluate_every);
                            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        }
                        rules = LevelRules::new(&new.plain_error_regex, &new.plain_warn_regex);
                        cfg = new;
                        continue;
                    }
                };
            }
            _ = tick.tick() => {
                if let Some(c) = card.as_mut() {
                    let noise = c.noise;
                    let s = c.summary(&rules, requests.load(Ordering::Relaxed), Instant::now(), noise);
                    let evaluation = evaluate(&s, &cfg);
                    // A supervisor that lags skips a verdict; the next evaluation follows soon.
                    if let Err(mpsc::error::TrySendError::Closed(_)) = verdicts.try_send(Scored { testing: c.testing, evaluation }) {
                        break;
                    }
                }
            }
            Some(p) = pairs.recv() => {
                if let Some(c) = card.as_mut() { c.record(&p) }
                // Take what has queued, then let the next pairs gather: under load this task is
                // woken once per PAIR_PAUSE, not once per mirrored request (each the wake-up of a
                // parked runtime thread; measured in docs/benchmarks.md).
                for _ in 0..PAIR_BATCH {
                    let Ok(p) = pairs.try_recv() else { break };
                    if let Some(c) = card.as_mut() { c.record(&p) }
                }
                tokio::time::sleep(PAIR_PAUSE).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ScoreConfig {
        ScoreConfig {
            stable_window: Duration::from_secs(60),
            min_mirrored: 100,
            max_5xx_delta: 0.01,
            max_client_error_delta: 0.05,
            max_log_error_delta: 0.05,
            max_log_warn_delta: 0.5,
            min_endpoint_pairs: 5,
            max_p95_ratio: None,
            max_body_diff: None,
            diff_relative: 0.2,
            diff_absolute: 0.03,
            confidence: 0.99,
            max_rss_ratio: None,
            max_cpu_ratio: None,
            noise_cancel: false,
            diff_sample: 0.0,
            plain_error_regex: String::new(),
            plain_warn_regex: String::new(),
            evaluate_every: Duration::from_secs(1),
        }
    }

    fn summary(pairs: u64, elapsed: u64) -> Summary {
        let mut endpoints = BTreeMap::new();
        endpoints.insert(
            "GET /a".to_string(),
            EndpointStats {
                pairs,
                ..Default::default()
            },
        );
        Summary {
            elapsed: Duration::from_secs(elapsed),
            pairs,
            endpoints,
            running_requests: pairs,
            ..Default::default()
        }
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

    fn difference(path: &str, kind: DiffKind) -> crate::diff::Difference {
        crate::diff::Difference {
            path: path.to_string(),
            kind,
            running: "3".to_string(),
            testing: "6".to_string(),
        }
    }

    /// `n` pairs of `GET /a`, `k` of them with `diff` (and `noise_k` of `n` noise pairs).
    fn with_diffs(
        n: u64,
        k: u64,
        diff: &crate::diff::Difference,
        noise: Option<(u64, u64)>,
    ) -> Summary {
        let mut s = summary(n, 600);
        for i in 0..n {
            let d = if i < k { vec![diff.clone()] } else { vec![] };
            s.diffs.record("GET /a", &d);
        }
        if let Some((nn, nk)) = noise {
            for i in 0..nn {
                let d = if i < nk { vec![diff.clone()] } else { vec![] };
                s.noise.record("GET /a", &d);
            }
        }
        s
    }

    #[test]
    fn differences_without_noise_are_reported_and_judged_only_with_a_ceiling() {
        let price = difference("$.items[*].price", DiffKind::Changed);
        let s = with_diffs(200, 150, &price, None);
        let e = evaluate(&s, &cfg());
        assert_eq!(e.verdict, Verdict::Promote);
        assert_eq!(e.diffs[0].judgement, DiffJudgement::NoiseUnknown);
        let strict = ScoreConfig {
            max_body_diff: Some(0.1),
            ..cfg()
        };
        let Verdict::Reject(r) = evaluate(&s, &strict).verdict else {
            panic!()
        };
        assert!(
            r[0].contains("150 of 200")
                && r[0].contains("GET /a")
                && r[0].contains("$.items[*].price")
                && r[0].contains("running 3 vs testing 6"),
            "{r:?}"
        );
    }

    #[test]
    fn noise_cancels_what_running_does_to_itself() {
        let on = ScoreConfig {
            max_body_diff: Some(0.05),
            noise_cancel: true,
            ..cfg()
        };
        let ts = difference("$.ts", DiffKind::Changed);
        // Every pair differs, and so does running from itself: noise, promoted.
        let mut s = with_diffs(200, 200, &ts, Some((190, 190)));
        s.noise_expected = true;
        let e = evaluate(&s, &on);
        assert_eq!(e.verdict, Verdict::Promote, "{e:?}");
        assert_eq!(e.diffs[0].judgement, DiffJudgement::Noise);
        assert_eq!(e.diffs[0].noise_rate, Some(1.0));
        // The same rate where running agrees with itself: a regression.
        let mut s = with_diffs(200, 200, &ts, Some((190, 0)));
        s.noise_expected = true;
        assert!(matches!(evaluate(&s, &on).verdict, Verdict::Reject(_)));
        // A rate clearly above a partial noise rate counts too.
        let mut s = with_diffs(400, 300, &ts, Some((400, 100)));
        s.noise_expected = true;
        assert!(matches!(evaluate(&s, &on).verdict, Verdict::Reject(_)));
        // Noise not measured yet: wait and say so, never reject.
        let mut s = with_diffs(200, 200, &ts, Some((3, 3)));
        s.noise_expected = true;
        let e = evaluate(&s, &on);
        assert!(
            matches!(&e.verdict, Verdict::Wait(w) if w.contains("noise not measured")),
            "{e:?}"
        );
        // An endpoint seen only a few times is reported, not judged.
        let mut s = with_diffs(200, 200, &ts, Some((3, 3)));
        s.noise_expected = true;
        for _ in 0..3 {
            s.diffs
                .record("GET /rare", &[difference("$.x", DiffKind::Changed)]);
        }
        s.diffs.endpoints.remove("GET /a");
        assert_eq!(evaluate(&s, &on).verdict, Verdict::Promote);
        // Version-only differences never count.
        let v = difference("$.version", DiffKind::Expected);
        let s = with_diffs(200, 200, &v, None);
        let strict = ScoreConfig {
            max_body_diff: Some(0.01),
            ..cfg()
        };
        let e = evaluate(&s, &strict);
        assert_eq!(e.verdict, Verdict::Promote);
        assert_eq!(e.diffs[0].judgement, DiffJudgement::Expected);
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

    #[test]
    fn latency_rejects_only_a_significant_shift_over_the_ceiling() {
        let strict = ScoreConfig {
            max_p95_ratio: Some(1.5),
            ..cfg()
        };
        let mut s = summary(200, 600);
        s.running_latencies = (0..200).map(|i| 0.001 + (i % 10) as f64 * 1e-4).collect();
        s.testing_latencies = s.running_latencies.iter().map(|l| l * 3.0).collect();
        s.running_p95 = Some(Duration::from_micros(1900));
        s.testing_p95 = Some(Duration::from_micros(5700));
        let Verdict::Reject(r) = evaluate(&s, &strict).verdict else {
            panic!()
        };
        assert!(r[0].contains("Mann-Whitney"), "{r:?}");
        // Same p95s from a handful of samples: not significant, no rejection.
        s.running_latencies.truncate(4);
        s.testing_latencies.truncate(4);
        assert_eq!(evaluate(&s, &strict).verdict, Verdict::Promote);
    }

    #[test]
    fn resources_are_reported_and_judged_with_a_ceiling() {
        let mut s = summary(200, 600);
        s.resources = Some(Resources {
            running_rss: 10 << 20,
            testing_rss: 40 << 20,
            running_cpu: 1.0,
            testing_cpu: 8.0,
            running_requests: 1000,
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
            r.iter()
                .any(|r| r.contains("memory") && r.contains("40.0 MiB")),
            "{r:?}"
        );
        assert!(
            r.iter().any(|r| r.contains("CPU") && r.contains("8000 µs")),
            "{r:?}"
        );
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

    /// Scoring testing instance 1, with no log folders and no processes.
    fn watch_instance_1() -> Watch {
        Watch {
            testing: InstanceId(1),
            testing_dir: "/nonexistent".into(),
            testing_pid: 0,
            running_dir: "/nonexistent".into(),
            running_pid: None,
            noise: false,
        }
    }

    #[test]
    fn record_classifies_pairs() {
        let mut c = Scorecard::new(watch_instance_1(), 0, Instant::now());
        let p = |path: &str, r, t| Pair {
            testing: InstanceId(1),
            method: Method::GET,
            path: path.to_string(),
            running_status: r,
            running_latency: Duration::from_millis(1),
            testing_status: t,
            testing_latency: Some(Duration::from_millis(1)),
            testing_error: None,
            diffs: None,
            noise: None,
        };
        c.record(&p("/items/17", 200, Some(404)));
        c.record(&p("/items/18", 200, Some(500)));
        c.record(&p("/x", 404, Some(404)));
        c.record(&p("/y", 200, None));
        c.record(&Pair {
            testing: InstanceId(2),
            ..p("/z", 200, Some(500))
        });
        assert_eq!(c.pairs, 4);
        let items = &c.endpoints["GET /items/{n}"];
        assert_eq!(
            (items.pairs, items.missing_on_testing, items.testing_5xx),
            (2, 1, 1)
        );
        assert_eq!(c.endpoints["GET /x"].missing_on_testing, 0);
        assert_eq!(c.endpoints["GET /y"].testing_5xx, 1);
    }

    /// The scorer takes pairs in batches and pauses between them: a burst larger than one batch,
    /// sent while it pauses, is counted in full, and the evaluation after it says so.
    #[tokio::test(start_paused = true)]
    async fn the_scorer_counts_every_pair_of_a_burst() {
        let (pairs_tx, pairs_rx) = mpsc::channel(4 * PAIR_BATCH);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (verdict_tx, mut verdicts) = mpsc::channel(4);
        let cancel = CancellationToken::new();
        let scorer = tokio::spawn(run(
            cfg(),
            Arc::new(AtomicU64::new(0)),
            pairs_rx,
            control_rx,
            verdict_tx,
            cancel.clone(),
        ));
        control_tx
            .send(ScorerControl::Watch(watch_instance_1()))
            .unwrap();
        let pair = Pair {
            testing: InstanceId(1),
            method: Method::GET,
            path: "/a".to_string(),
            running_status: 200,
            running_latency: Duration::from_millis(1),
            testing_status: Some(200),
            testing_latency: Some(Duration::from_millis(1)),
            testing_error: None,
            diffs: None,
            noise: None,
        };
        let burst = 3 * PAIR_BATCH as u64 + 7;
        for _ in 0..burst {
            pairs_tx.send(pair.clone()).await.unwrap();
        }
        // Evaluations come every second (paused time runs ahead while all tasks wait).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut seen = 0;
        while seen < burst && tokio::time::Instant::now() < deadline {
            seen = verdicts.recv().await.unwrap().evaluation.pairs;
        }
        assert_eq!(seen, burst, "every pair of the burst is counted");
        cancel.cancel();
        scorer.await.unwrap();
    }

    #[test]
    fn endpoint_folding() {
        assert_eq!(
            endpoint_key(&Method::GET, "/users/42/orders"),
            "GET /users/{n}/orders"
        );
        assert_eq!(
            endpoint_key(&Method::GET, "/o/3f2b8c1e-1111-2222-3333-444455556666"),
            "GET /o/{uuid}"
        );
        assert_eq!(endpoint_key(&Method::POST, "/a/ab12cd34ef"), "POST /a/{id}");
        assert_eq!(endpoint_key(&Method::GET, "/health"), "GET /health");
    }
}
