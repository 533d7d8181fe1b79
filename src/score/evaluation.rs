//! The evaluation: [`evaluate`] is a pure function from a scorecard's [`Summary`] to a
//! [`Verdict`] (`Wait`, `Promote` or `Reject(reasons)`) and a 0–100 score with its parts.

use serde::Serialize;

use super::bodies::{bodies_part, DiffJudgement, DiffRow};
use super::judging::{Judging, MorePairs, ScorePart};
use super::latency::latency_part;
use super::limits::{size_text, DIFF_HELD, FINGERPRINTED};
use super::scorecard::{EndpointStats, Summary};
use super::stats::{self, RateCheck};
use super::statuses::{looks_missing, statuses_part};
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
    /// Endpoints a waiting verdict waits on for pairs (gone-looking, fewer than
    /// `MIN_ENDPOINT_PAIRS`): what replay asks first. Empty unless the verdict is `Wait`.
    #[serde(skip)]
    pub waiting_on: Vec<String>,
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
    let (bodies, body_rows) = bodies_part(s, cfg, &mut j);
    let (statuses, status_rows) = statuses_part(s, cfg, &more_pairs(s, cfg), &mut j);
    let diffs = with_status_rows(status_rows, body_rows);
    let mut parts = vec![
        endpoints_part(s, cfg, &mut j),
        server_error_part(s, cfg, &mut j),
        client_error_part(s, cfg, &mut j),
        statuses,
        log_lines_part(s, cfg, &mut j, Lines::Errors),
        log_lines_part(s, cfg, &mut j, Lines::Warns),
        bodies,
    ];
    parts.extend(latency_part(s, cfg, &more_pairs(s, cfg), &mut j));
    parts.extend(resources_part(s, cfg, &mut j.reasons));
    let score = parts.iter().map(|p| p.score).min().unwrap_or(100);
    let mut waiting_on = std::mem::take(&mut j.waiting_on);
    let verdict = verdict(s, cfg, j);
    if !matches!(verdict, Verdict::Wait(_)) {
        waiting_on.clear();
    }
    Evaluation {
        verdict,
        score,
        parts,
        pairs: s.pairs,
        diffs,
        evidence: Evidence::of(s),
        waiting_on,
    }
}

/// The differences table: status changes that count or wait first (a changed status outweighs
/// any field), then the bodies' rows (worst first), then the other status rows; at most
/// [`MAX_DIFF_ROWS`](super::MAX_DIFF_ROWS).
fn with_status_rows(statuses: Vec<DiffRow>, bodies: Vec<DiffRow>) -> Vec<DiffRow> {
    let first = |r: &DiffRow| matches!(r.judgement, DiffJudgement::Counts | DiffJudgement::Unsure);
    let (mut rows, rest): (Vec<_>, Vec<_>) = statuses.into_iter().partition(first);
    rows.sort_by(|a, b| b.rate.total_cmp(&a.rate));
    rows.extend(bodies);
    rows.extend(rest);
    rows.truncate(super::MAX_DIFF_ROWS);
    rows
}

/// Pairs as a divisor: never zero.
fn pairs_divisor(s: &Summary) -> f64 {
    s.pairs.max(1) as f64
}

/// Endpoints that exist on running's version and are gone on testing (most of their pairs), each
/// judged once it has `MIN_ENDPOINT_PAIRS` pairs (the rule every per-endpoint rate follows); one
/// seen fewer times waits, says so and where its pairs will come from, as one unlucky pair is
/// not a vanished endpoint.
fn endpoints_part(s: &Summary, cfg: &ScoreConfig, j: &mut Judging) -> ScorePart {
    let mut missing = 0;
    for (k, e) in &s.endpoints {
        if !looks_missing(e) {
            continue;
        }
        let what = format!(
            "{k} answers 404/405/501 on testing but not on {} ({} of {} pairs)",
            baseline(e.status_vs_secondary, e.pairs),
            e.missing_on_testing,
            e.pairs
        );
        if e.pairs < cfg.min_endpoint_pairs {
            j.too_few(&what, k, &more_pairs(s, cfg));
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

/// Where the endpoints short of `MIN_ENDPOINT_PAIRS` get their pairs.
pub(super) fn more_pairs<'a>(s: &'a Summary, cfg: &ScoreConfig) -> MorePairs<'a> {
    MorePairs {
        replay: cfg.replay,
        secondary: s.noise_expected,
        unreplayable: &s.unreplayable,
        min_pairs: cfg.min_endpoint_pairs,
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

/// "; most on GET /api/user/{n} (198 of its 198 pairs)": the endpoint whose 5xx testing answered
/// most over its baseline, so a rejection on the overall rate says where to look.
fn most_5xx_on(s: &Summary) -> String {
    let excess = |e: &super::scorecard::EndpointStats| e.testing_5xx.saturating_sub(e.baseline_5xx);
    s.endpoints
        .iter()
        .filter(|(_, e)| excess(e) > 0)
        .max_by_key(|(_, e)| excess(e))
        .map_or(String::new(), |(k, e)| {
            format!("; most on {k} ({} of its {} pairs)", e.testing_5xx, e.pairs)
        })
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
            "5xx rate{}: testing {:.1}% vs {vs} {:.1}% overall ({test5} and {run5} of {} pairs){}{}",
            counting_no_answer(s.endpoints.values()),
            pct(test5, s.pairs),
            pct(run5, s.pairs),
            s.pairs,
            most_5xx_on(s),
            no_answers(s.endpoints.values()),
        ),
    );
    for (k, e) in &s.endpoints {
        if e.pairs < cfg.min_endpoint_pairs {
            // A rare endpoint failing on testing: the overall rate would hide it, so it waits
            // for its pairs (replayed) and is judged on its own then. Only where replay can
            // bring them (else it would wait for ever), and only over the 5xx testing answered
            // (a mirror's timeout is no answer of the app's).
            let more = more_pairs(s, cfg);
            if e.testing_5xx_answered > e.baseline_5xx && more.can_replay(k) {
                let what = format!(
                    "5xx on {k}: testing {} of {} pairs vs {} {}",
                    e.testing_5xx_answered,
                    e.pairs,
                    baseline(e.status_vs_secondary, e.pairs),
                    e.baseline_5xx
                );
                j.too_few(&what, k, &more);
            }
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
                "5xx rate on {k}{}: testing {:.1}% vs {} {:.1}% of {} pairs{}",
                counting_no_answer([e]),
                pct(e.testing_5xx, e.pairs),
                baseline(e.status_vs_secondary, e.pairs),
                pct(e.baseline_5xx, e.pairs),
                e.pairs,
                no_answers([e]),
            ),
        );
    }
    ScorePart {
        name: "5xx",
        score: ratio_score(worst, cfg.max_5xx_delta),
        detail: format!("testing {test5} vs {vs} {run5} of {} pairs", s.pairs),
    }
}

/// ", counting no answer as 5xx" when testing left any copy of these rows unanswered.
fn counting_no_answer<'a>(rows: impl IntoIterator<Item = &'a EndpointStats>) -> &'static str {
    match rows.into_iter().any(|e| e.testing_unanswered() > 0) {
        true => ", counting no answer as 5xx",
        false => "",
    }
}

/// How testing's share splits into copies it gave no answer to (and why: a hang reads as a hang,
/// not as a server error) and 5xx it answered; empty when it answered every copy.
fn no_answers<'a>(rows: impl IntoIterator<Item = &'a EndpointStats>) -> String {
    let (mut none, mut answered, mut why) = (0, 0, None);
    for e in rows {
        none += e.testing_unanswered();
        answered += e.testing_5xx_answered;
        if e.testing_unanswered() > 0 {
            why = why.or(e.testing_no_answer_why.as_deref());
        }
    }
    match none {
        0 => String::new(),
        _ => format!(
            "; testing gave no answer to {none} ({}) and answered 5xx to {answered}",
            why.unwrap_or("no answer")
        ),
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
        format!(
            "log {word}s: testing {t} {word} lines for {asked} requests vs {base} {b} for {base_n} requests{}",
            match (&lines, &s.testing_last_error) {
                (Lines::Errors, Some((line, file))) =>
                    format!("; the last, in {file}: {}", crate::private::quote(line)),
                _ => String::new(),
            }
        ),
    );
    ScorePart {
        name,
        score: ratio_score(delta, max),
        detail: format!("testing {t} vs {base} {b}"),
    }
}

/// Testing's memory and CPU per request against running's, each judged only with its ceiling;
/// unjudged, the score still falls with the ratio, so a blow-up is seen on the scorecard.
fn resources_part(s: &Summary, cfg: &ScoreConfig, reasons: &mut Vec<String>) -> Option<ScorePart> {
    let r = s.resources?;
    let other = r.other;
    let mib = |b: u64| b as f64 / 1048576.0;
    let rss_ratio = r.testing_rss as f64 / (r.other_rss.max(1)) as f64;
    let other_per = r.other_cpu / r.other_requests.max(1) as f64;
    let test_per = r.testing_cpu / r.testing_requests.max(1) as f64;
    let cpu_ratio = test_per / other_per.max(1e-9);
    let mut over = false;
    if let Some(max) = cfg.max_rss_ratio.filter(|m| rss_ratio > *m) {
        over = true;
        reasons.push(format!(
            "memory: testing uses {:.1} MiB, {rss_ratio:.1}× the {other}'s {:.1} MiB (MAX_RSS_RATIO {max})",
            mib(r.testing_rss),
            mib(r.other_rss)
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
    let measured_cpu = r.other_cpu > 0.05 && r.testing_cpu > 0.0;
    let mut score = resource_score(rss_ratio);
    if enough && measured_cpu {
        score = score.min(resource_score(cpu_ratio));
    }
    let unjudged = |max: Option<f64>, key: &str| match max {
        Some(_) => String::new(),
        None => format!(" (not judged: {key} unset)"),
    };
    let cpu = if measured_cpu {
        format!(
            "CPU per request testing {:.0} µs vs {other} {:.0} µs ({cpu_ratio:.2}×){}",
            test_per * 1e6,
            other_per * 1e6,
            unjudged(cfg.max_cpu_ratio, "MAX_CPU_RATIO")
        )
    } else {
        "CPU per request: too little CPU time used yet to compare".to_string()
    };
    Some(ScorePart {
        name: "resources",
        score: if over { 0 } else { score },
        detail: format!(
            "RSS testing {:.1} MiB vs {other} {:.1} MiB ({rss_ratio:.2}×){}; {cpu}",
            mib(r.testing_rss),
            mib(r.other_rss),
            unjudged(cfg.max_rss_ratio, "MAX_RSS_RATIO")
        ),
    })
}

/// A resource ratio's score, judged or not: 100 up to using as much as running's version,
/// falling to 0 at 5× (75 at 2×, 50 at 3×).
fn resource_score(ratio: f64) -> u32 {
    ratio_score(ratio - 1.0, 2.0)
}

/// Answers compared so far against those needed before a promotion: `DIFF_SAMPLE` of
/// `MIN_MIRRORED`. Diffing sheds load when busy, and a build must not pass because its answers
/// went unread; an answer over `DIFF_MAX_BODY` (fingerprinted only) is no evidence either. With
/// `DIFF_MAX_BODY=0` no body is ever compared, by the operator's choice: none is waited for.
fn too_few_compared(s: &Summary, cfg: &ScoreConfig) -> Option<String> {
    // Only pairs with the same status on both sides can be compared.
    let comparable: u64 = s.endpoints.values().map(|e| e.same_status).sum();
    if cfg.diff_max_body == 0 {
        return None;
    }
    let needed = (cfg.min_mirrored.min(comparable) as f64 * cfg.diff_sample).ceil() as u64;
    let compared: u64 = s
        .diffs
        .endpoints
        .values()
        .map(|e| e.bodies_compared())
        .sum();
    let uncompared: u64 = s.diffs.endpoints.values().map(|e| e.uncompared).sum();
    if compared >= needed {
        return None;
    }
    let why_not = "(a sampled copy goes uncompared while 16 others are in flight or the diff threads are busy, and so does an answer still streaming 5 s after its head or paced by a slow reader; DIFF_SAMPLE lowers the need)";
    if uncompared == 0 {
        return Some(format!(
            "too few answers compared: {compared} of {needed} needed {why_not}"
        ));
    }
    let (max, held, print) = (
        size_text(cfg.diff_max_body),
        size_text(DIFF_HELD),
        size_text(FINGERPRINTED),
    );
    let large = format!(
        "the bodies of {uncompared} more answers are not compared: they were over DIFF_MAX_BODY ({max}) or came while the {held} held for diffing was full, and a fingerprint of their length and first {print} cannot tell a regression from a version string. A DIFF_MAX_BODY above their size (a body over {held} is never held) compares them, DIFF_MAX_BODY=0 judges answers by status and headers alone; else `understudy promote` (`understudy abort` rejects) decides"
    );
    // When the large answers are what is missing, more time will not help: that comes first.
    Some(if compared + uncompared >= needed {
        format!("too few answers compared: {compared} of {needed} needed; {large}")
    } else {
        format!("too few answers compared: {compared} of {needed} needed {why_not}; {large}")
    })
}

/// When most users' requests cannot be mirrored (their method is not in `MIRROR_METHODS`: writes
/// are never copied; nor are WebSocket handshakes), the wait is no matter of time: say so, and
/// what decides instead.
fn unmirrorable(s: &Summary) -> String {
    let users = s.running_requests.max(s.not_mirrorable);
    if s.not_mirrorable == 0 || s.not_mirrorable * 2 < users {
        return String::new();
    }
    format!(
        "; users' traffic is there, but {} of their {users} requests since testing started were not mirrorable: MIRROR_METHODS leaves their method out (writes are never copied), or they opened a WebSocket (never copied). More time will not bring the pairs: `understudy promote` or `understudy abort` decides, or a lower MIN_MIRRORED lets the shadow verdict judge what is mirrored, and then CANARY_STEPS tries the writes on a share of real users before the full switch",
        s.not_mirrorable
    )
}

/// When replay has nothing more to offer (every recorded request replayed `REPLAY_REPEAT`
/// times), the wait lasts until users bring new requests: say so, and the ways forward.
fn replay_spent(s: &Summary) -> String {
    if !s.replay_exhausted {
        return String::new();
    }
    format!(
        "; replay has nothing more to offer: every request recorded was replayed as often as REPLAY_REPEAT allows ({} pairs from {} of them), so only new users' requests bring more. More traffic, a lower MIN_MIRRORED, or `understudy promote` (`understudy abort` rejects) ends the wait",
        s.replayed, s.recorded
    )
}

/// Never judge on no evidence, in either direction; then any reason rejects; then doubts wait;
/// then the window.
fn verdict(s: &Summary, cfg: &ScoreConfig, j: Judging) -> Verdict {
    if s.pairs < cfg.min_mirrored {
        Verdict::Wait(format!(
            "too little traffic: {} of {} mirrored pairs needed{}{}",
            s.pairs,
            cfg.min_mirrored,
            unmirrorable(s),
            replay_spent(s)
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
mod tests;
