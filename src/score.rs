//! Scoring testing against running. Mirrored [`Pair`]s and both instances' log lines fold into a
//! [`Scorecard`]; [`evaluate`] is a pure function from a scorecard's [`Summary`] to a verdict
//! (`Wait`, `Promote` or `Reject(reasons)`) and a 0–100 score with its parts.

pub mod logs;
mod pair;

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
use crate::instance::InstanceId;
use logs::{LevelRules, LogTail};
pub use pair::Pair;

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
        format!("score {} [{}] → {verdict}", self.score, parts.join(", "))
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
    let mut reasons = Vec::new();
    let mut parts = vec![
        endpoints_part(s, &mut reasons),
        server_error_part(s, cfg, &mut reasons),
        client_error_part(s, cfg, &mut reasons),
        log_errors_part(s, cfg, &mut reasons),
        log_warns_part(s, cfg, &mut reasons),
        bodies_part(s, cfg, &mut reasons),
    ];
    parts.extend(latency_part(s, cfg, &mut reasons));
    let score = parts.iter().map(|p| p.score).min().unwrap_or(100);
    Evaluation {
        verdict: verdict(s, cfg, reasons),
        score,
        parts,
        pairs: s.pairs,
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

/// 5xx (and no answer) rate, overall and per endpoint with enough pairs; an endpoint is named
/// only when the overall rate is within bounds.
fn server_error_part(s: &Summary, cfg: &ScoreConfig, reasons: &mut Vec<String>) -> ScorePart {
    let run5: u64 = s.endpoints.values().map(|e| e.running_5xx).sum();
    let test5: u64 = s.endpoints.values().map(|e| e.testing_5xx).sum();
    let delta = (test5 as f64 - run5 as f64) / pairs_divisor(s);
    let mut worst = delta;
    if delta > cfg.max_5xx_delta {
        reasons.push(format!(
            "5xx rate: testing {:.1}% vs running {:.1}% overall",
            pct(test5, s.pairs),
            pct(run5, s.pairs)
        ));
    }
    for (k, e) in &s.endpoints {
        if e.pairs < cfg.min_endpoint_pairs {
            continue;
        }
        let d = (e.testing_5xx as f64 - e.running_5xx as f64) / e.pairs as f64;
        worst = worst.max(d);
        if d > cfg.max_5xx_delta && delta <= cfg.max_5xx_delta {
            reasons.push(format!(
                "5xx rate on {k}: testing {:.1}% vs running {:.1}%",
                pct(e.testing_5xx, e.pairs),
                pct(e.running_5xx, e.pairs)
            ));
        }
    }
    ScorePart {
        name: "5xx",
        score: ratio_score(worst, cfg.max_5xx_delta),
        detail: format!("testing {test5} vs running {run5} of {} pairs", s.pairs),
    }
}

/// Requests running answers 2xx and testing 4xx.
fn client_error_part(s: &Summary, cfg: &ScoreConfig, reasons: &mut Vec<String>) -> ScorePart {
    let ok4: u64 = s.endpoints.values().map(|e| e.ok_to_client_error).sum();
    let share = ok4 as f64 / pairs_divisor(s);
    if share > cfg.max_client_error_delta {
        reasons.push(format!(
            "client errors: {ok4} of {} pairs answered 2xx on running but 4xx on testing",
            s.pairs
        ));
    }
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

/// Error log lines per request.
fn log_errors_part(s: &Summary, cfg: &ScoreConfig, reasons: &mut Vec<String>) -> ScorePart {
    let err_delta = log_line_delta(s, s.testing_errors, s.running_errors);
    if err_delta > cfg.max_log_error_delta {
        reasons.push(format!(
            "log errors: testing {} error lines for {} mirrored requests vs running {} for {} requests",
            s.testing_errors, s.pairs, s.running_errors, s.running_requests
        ));
    }
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

/// Bodies (where statuses agree), reported; judged only when a ceiling is set, since a new
/// version may rightly answer differently.
fn bodies_part(s: &Summary, cfg: &ScoreConfig, reasons: &mut Vec<String>) -> ScorePart {
    let compared: u64 = s.endpoints.values().map(|e| e.bodies_compared).sum();
    let differ: u64 = s.endpoints.values().map(|e| e.bodies_differ).sum();
    let body_share = differ as f64 / compared.max(1) as f64;
    let body_over = cfg
        .max_body_diff
        .is_some_and(|max| compared > 0 && body_share > max);
    if body_over {
        let worst = s
            .endpoints
            .iter()
            .filter(|(_, e)| e.bodies_differ > 0)
            .max_by_key(|(_, e)| e.bodies_differ)
            .map(|(k, _)| k.as_str())
            .unwrap_or("?");
        reasons.push(format!("bodies: {differ} of {compared} same-status answers differ from running's (most on {worst})"));
    }
    ScorePart {
        name: "bodies",
        score: cfg
            .max_body_diff
            .map_or(100, |max| ratio_score(body_share, max)),
        detail: format!(
            "{differ} of {compared} differ{}",
            if cfg.max_body_diff.is_none() {
                ", reported only"
            } else {
                ""
            }
        ),
    }
}

/// p95 latency, reported once both sides have samples; judged only when a ceiling is set.
fn latency_part(s: &Summary, cfg: &ScoreConfig, reasons: &mut Vec<String>) -> Option<ScorePart> {
    let (r, t) = (s.running_p95?, s.testing_p95?);
    let ratio = t.as_secs_f64() / r.as_secs_f64().max(1e-6);
    let over = cfg.max_p95_ratio.is_some_and(|max| ratio > max);
    if over {
        reasons.push(format!(
            "latency: testing p95 {:?} is {ratio:.1}× running's {:?}",
            t, r
        ));
    }
    Some(ScorePart {
        name: "latency",
        score: if over { 0 } else { 100 },
        detail: format!("p95 testing {:?} vs running {:?} ({ratio:.2}×)", t, r),
    })
}

/// Never judge on no evidence, in either direction; then any reason rejects; then the window.
fn verdict(s: &Summary, cfg: &ScoreConfig, reasons: Vec<String>) -> Verdict {
    if s.pairs < cfg.min_mirrored {
        Verdict::Wait(format!(
            "too little traffic: {} of {} mirrored pairs needed",
            s.pairs, cfg.min_mirrored
        ))
    } else if !reasons.is_empty() {
        Verdict::Reject(reasons)
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
}

impl Scorecard {
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
        if let Some(same) = p.body_same {
            e.bodies_compared += 1;
            if !same {
                e.bodies_differ += 1;
            }
        }
        let slot = (self.pairs as usize - 1) % LATENCY_SAMPLES;
        push_sample(&mut self.running_latency, slot, p.running_latency);
        if let Some(l) = p.testing_latency {
            push_sample(&mut self.testing_latency, slot, l);
        }
    }

    /// Read new log lines and summarise.
    pub fn summary(
        &mut self,
        rules: &LevelRules,
        running_requests_now: u64,
        now: Instant,
    ) -> Summary {
        let (te, tw) = self.testing_log.poll(rules);
        let (re, rw) = self.running_log.poll(rules);
        Summary {
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
    Watch {
        /// The testing instance.
        testing: InstanceId,
        /// Its instance folder (logs counted from its start).
        testing_dir: std::path::PathBuf,
        /// Running's instance folder (logs counted from now).
        running_dir: std::path::PathBuf,
    },
    /// Running was restarted: count its logs from the new instance folder, keeping the score.
    Running {
        /// The new running instance folder.
        running_dir: std::path::PathBuf,
    },
    /// No testing instance: stop scoring.
    Clear,
    /// New thresholds from a reloaded `.env` (SIGHUP); the scorecard is kept.
    Config(ScoreConfig),
}

/// A verdict about one testing instance, sent to the supervisor.
#[derive(Debug, Clone)]
pub struct Scored {
    /// The testing instance.
    pub testing: InstanceId,
    /// The evaluation.
    pub evaluation: Evaluation,
}

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
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(p) = pairs.recv() => if let Some(c) = card.as_mut() { c.record(&p) },
            Some(c) = control.recv() => {
                card = match c {
                    ScorerControl::Watch { testing, testing_dir, running_dir } => Some(Scorecard {
                        testing,
                        since: Instant::now(),
                        pairs: 0,
                        endpoints: BTreeMap::new(),
                        running_latency: Vec::new(),
                        testing_latency: Vec::new(),
                        requests_at_start: requests.load(Ordering::Relaxed),
                        testing_log: LogTail::from_start(testing_dir),
                        running_log: LogTail::from_now(running_dir),
                    }),
                    ScorerControl::Running { running_dir } => {
                        if let Some(c) = card.as_mut() {
                            c.running_log.follow(running_dir);
                        }
                        continue;
                    }
                    ScorerControl::Clear => None,
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
                    let s = c.summary(&rules, requests.load(Ordering::Relaxed), Instant::now());
                    let evaluation = evaluate(&s, &cfg);
                    // A supervisor that lags skips a verdict; the next evaluation follows soon.
                    if let Err(mpsc::error::TrySendError::Closed(_)) = verdicts.try_send(Scored { testing: c.testing, evaluation }) {
                        break;
                    }
                }
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

    #[test]
    fn bodies_are_reported_and_judged_only_with_a_ceiling() {
        let mut s = summary(200, 600);
        let e = s.endpoints.get_mut("GET /a").unwrap();
        e.bodies_compared = 200;
        e.bodies_differ = 150;
        assert_eq!(evaluate(&s, &cfg()).verdict, Verdict::Promote);
        let strict = ScoreConfig {
            max_body_diff: Some(0.1),
            ..cfg()
        };
        let Verdict::Reject(r) = evaluate(&s, &strict).verdict else {
            panic!()
        };
        assert!(
            r[0].contains("150 of 200") && r[0].contains("GET /a"),
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

    #[test]
    fn record_classifies_pairs() {
        let mut c = Scorecard {
            testing: InstanceId(1),
            since: Instant::now(),
            pairs: 0,
            endpoints: BTreeMap::new(),
            running_latency: vec![],
            testing_latency: vec![],
            requests_at_start: 0,
            testing_log: LogTail::from_start("/nonexistent".into()),
            running_log: LogTail::from_start("/nonexistent".into()),
        };
        let p = |path: &str, r, t| Pair {
            testing: InstanceId(1),
            method: Method::GET,
            path: path.to_string(),
            running_status: r,
            running_latency: Duration::from_millis(1),
            testing_status: t,
            testing_latency: Some(Duration::from_millis(1)),
            testing_error: None,
            body_same: None,
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
