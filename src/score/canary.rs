//! A canary step judged on real answers: per endpoint, the answers testing served to its share of
//! users against those running served to the rest in the same step, with the shadow verdict's
//! statistics (`CONFIDENCE`, `MAX_5XX_DELTA`, `MAX_CLIENT_ERROR_DELTA`).

use std::collections::BTreeMap;
use std::time::Duration;

use http::Method;

use serde::Serialize;

use super::scorecard::endpoint_key_into;
use super::stats::{self, RateCheck};
use crate::config::ScoreConfig;

/// Endpoints tallied one by one in a step; the rest share one row, so memory stays bounded.
const MAX_ROWS: usize = 256;
/// The row of endpoints past [`MAX_ROWS`].
const OTHER: &str = "(other endpoints)";

/// Which side served a user during a canary step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Running's version, as before.
    Running,
    /// The build in its canary step.
    Testing,
}

/// One answer served to a user during a canary step.
#[derive(Debug, Clone)]
pub struct Served {
    /// Who served it.
    pub side: Side,
    /// The user's place (`PLACES` without the sticky key): distinct places on testing's side
    /// count the users who met the build; one place with nearly all answers is one address.
    pub place: u32,
    /// The request's method.
    pub method: Method,
    /// Its path, without the query.
    pub path: String,
    /// The status answered (502/504 when the side did not answer).
    pub status: u16,
    /// Time to the answer's head.
    pub latency: Duration,
}

/// One side's answers on one endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SideTally {
    /// Answers served.
    pub answers: u64,
    /// Of which 5xx (502/504 when the side did not answer).
    pub server_errors: u64,
    /// Of which 4xx.
    pub client_errors: u64,
    /// Sum of their latencies in microseconds: with `answers`, the endpoint's mean, so the
    /// latency reason can name the endpoint that slowed most.
    pub latency_us: u64,
}

/// Latencies kept per side in a step (the most recent), for its p95 and rank test.
const LATENCY_SAMPLES: usize = 4096;
/// Latencies kept per side per endpoint row (the most recent), for the endpoint judged alone:
/// at most [`MAX_ROWS`] rows × 2 sides × 512 × 8 bytes = 2 MiB a step, allocated at a row's
/// first answer on a side; the [`OTHER`] row keeps none, as it is never judged alone.
const ENDPOINT_LATENCY_SAMPLES: usize = 512;
/// Answers each side needs before latency is judged.
const MIN_LATENCY_SAMPLES: usize = 30;

/// One side's most recent latencies in seconds, up to a bound the caller fixes.
#[derive(Debug, Clone, Default)]
struct Ring {
    kept: Vec<f64>,
    /// Latencies offered so far, kept or since overwritten.
    seen: usize,
}

impl Ring {
    /// Keep `v`, over the oldest once `cap` are kept; allocates once, at the first.
    fn push(&mut self, v: f64, cap: usize) {
        if self.kept.len() < cap {
            if self.kept.is_empty() {
                self.kept.reserve_exact(cap);
            }
            self.kept.push(v);
        } else if let Some(slot) = self.kept.get_mut(self.seen % cap) {
            *slot = v;
        }
        self.seen += 1;
    }
}

/// One endpoint's answers in the step: (running, testing) each.
#[derive(Debug, Clone, Default)]
struct Row {
    sides: [SideTally; 2],
    /// Latencies, for the endpoint judged alone (none in the [`OTHER`] row).
    latencies: [Ring; 2],
}

/// The step's answers so far, per endpoint and side, and each side's latencies.
#[derive(Debug, Clone, Default)]
pub struct CanaryCard {
    rows: BTreeMap<String, Row>,
    /// (running, testing) latencies of all endpoints pooled.
    latencies: [Ring; 2],
    /// The key of the answer being recorded: one buffer, so a row's key is allocated only when
    /// the row is new.
    key: String,
    /// The places testing served, one bit each (allocated at its first answer).
    met: Vec<u64>,
    /// Answers per place, both sides (allocated at the first answer with a place): one place
    /// with nearly all of them is one address behind a front proxy, not many users.
    per_place: Vec<u32>,
}

/// Places a user can take (`proxy::canary::PLACES`).
const PLACES: usize = 10_000;

impl CanaryCard {
    /// Count one served answer.
    pub fn record(&mut self, s: &Served) {
        endpoint_key_into(&mut self.key, &s.method, &s.path);
        if !self.rows.contains_key(self.key.as_str()) {
            if self.rows.len() >= MAX_ROWS {
                self.key.clear();
                self.key.push_str(OTHER);
            }
            if !self.rows.contains_key(self.key.as_str()) {
                self.rows.insert(self.key.clone(), Row::default());
            }
        }
        let side = usize::from(s.side == Side::Testing);
        let secs = s.latency.as_secs_f64();
        self.latencies[side].push(secs, LATENCY_SAMPLES);
        if s.side == Side::Testing && (s.place as usize) < PLACES {
            if self.met.is_empty() {
                self.met = vec![0; PLACES.div_ceil(64)];
            }
            self.met[s.place as usize / 64] |= 1 << (s.place % 64);
        }
        if (s.place as usize) < PLACES {
            if self.per_place.is_empty() {
                self.per_place = vec![0; PLACES];
            }
            let n = &mut self.per_place[s.place as usize];
            *n = n.saturating_add(1);
        }
        let Some(row) = self.rows.get_mut(self.key.as_str()) else {
            return;
        };
        if self.key != OTHER {
            row.latencies[side].push(secs, ENDPOINT_LATENCY_SAMPLES);
        }
        let t = &mut row.sides[side];
        t.answers += 1;
        t.server_errors += u64::from(s.status >= 500);
        t.client_errors += u64::from((400..500).contains(&s.status));
        let us = u64::try_from(s.latency.as_micros()).unwrap_or(u64::MAX);
        t.latency_us = t.latency_us.saturating_add(us);
    }

    /// Answers served by (testing, running) in this step.
    pub fn answers(&self) -> (u64, u64) {
        self.rows.values().fold((0, 0), |(t, r), row| {
            (t + row.sides[1].answers, r + row.sides[0].answers)
        })
    }
}

/// What a step's answers say so far.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CanaryEvaluation {
    /// Answers testing served in this step.
    pub testing_answers: u64,
    /// Answers running served in this step.
    pub running_answers: u64,
    /// Of which 5xx, (testing's, running's).
    pub server_errors: (u64, u64),
    /// Users (distinct places of the sticky key) testing served in this step.
    pub users: u64,
    /// The first regression found, in words with its figures; None while there is none.
    pub regression: Option<String>,
    /// Enough answers to move on: `MIN_MIRRORED` from testing, and both sides served (a step
    /// whose users all land on one side is not a share of users).
    pub enough: bool,
    /// Why it is not enough yet, in words with the figures (None when enough).
    pub waiting: Option<String>,
    /// Testing served every answer of the step, `MIN_MIRRORED` of them or more: the users are
    /// one place on its side (behind a front proxy with `CANARY_STICKY=ip`), not a share.
    pub all_on_testing: bool,
}

/// Judge a step's answers: any endpoint (with `MIN_ENDPOINT_PAIRS` answers on testing's side)
/// whose 5xx or 4xx rate is surely worse than running's by more than its margin is a regression,
/// and so is latency over `MAX_P95_RATIO`, pooled or on one endpoint alone ([`slower`]).
pub fn evaluate(card: &CanaryCard, cfg: &ScoreConfig) -> CanaryEvaluation {
    let (testing_answers, running_answers) = card.answers();
    let mut regression = None;
    for (key, row) in &card.rows {
        let [running, testing] = &row.sides;
        if testing.answers < cfg.min_endpoint_pairs || regression.is_some() {
            continue;
        }
        let checks = [
            ("5xx", testing.server_errors, cfg.max_5xx_delta),
            ("4xx", testing.client_errors, cfg.max_client_error_delta),
        ];
        regression = checks.into_iter().find_map(|(what, tk, margin)| {
            let base = baseline(card, running, what, cfg);
            worse(key, what, (tk, testing.answers), base, margin, cfg)
        });
    }
    let server_errors = card.rows.values().fold((0, 0), |(t, r), row| {
        (
            t + row.sides[1].server_errors,
            r + row.sides[0].server_errors,
        )
    });
    let users = card.met.iter().map(|w| u64::from(w.count_ones())).sum();
    let waiting = waiting(card, cfg);
    let all_on_testing = running_answers == 0 && testing_answers >= cfg.min_mirrored;
    CanaryEvaluation {
        all_on_testing,
        testing_answers,
        running_answers,
        server_errors,
        users,
        enough: waiting.is_none(),
        waiting,
        regression: regression.or_else(|| slower(card, cfg)),
    }
}

/// What testing's rate on an endpoint is judged against.
#[derive(Debug, Clone, Copy)]
enum Baseline {
    /// Running's own answers on the endpoint: (bad, answers).
    Own(u64, u64),
    /// Running answered the endpoint too few times to compare with (one only the new build's
    /// pages call, or every user on testing): its rate over all its answers in the step as a
    /// fixed ceiling, (bad, answers); (0, 0), a ceiling of the margin alone, when it has too few.
    Pooled(u64, u64),
}

/// The baseline of `what` ("5xx" or "4xx") for the endpoint `running` answered.
fn baseline(card: &CanaryCard, running: &SideTally, what: &str, cfg: &ScoreConfig) -> Baseline {
    let bad = |t: &SideTally| match what {
        "5xx" => t.server_errors,
        _ => t.client_errors,
    };
    if running.answers >= cfg.min_endpoint_pairs {
        return Baseline::Own(bad(running), running.answers);
    }
    let (k, n) = card.rows.values().fold((0, 0), |(k, n), row| {
        let r = &row.sides[0];
        (k + bad(r), n + r.answers)
    });
    match n >= cfg.min_endpoint_pairs {
        true => Baseline::Pooled(k, n),
        false => Baseline::Pooled(0, 0),
    }
}

/// The regression, in words with its figures, when testing's rate `tk / tn` is surely worse than
/// the baseline by more than `margin`.
fn worse(
    key: &str,
    what: &str,
    (tk, tn): (u64, u64),
    base: Baseline,
    margin: f64,
    cfg: &ScoreConfig,
) -> Option<String> {
    let rate = |k: u64, n: u64| k as f64 / n.max(1) as f64;
    let check = match base {
        Baseline::Own(bk, bn) => stats::compare_rates(tk, tn, bk, bn, margin, cfg.confidence),
        Baseline::Pooled(bk, bn) => {
            stats::compare_rate_to(tk, tn, rate(bk, bn) + margin, cfg.confidence)
        }
    };
    let RateCheck::Worse { .. } = check else {
        return None;
    };
    let (t, c) = (rate(tk, tn) * 100.0, cfg.confidence * 100.0);
    Some(match base {
        Baseline::Own(bk, bn) => format!(
            "{key} {what} {t:.1} % vs running {:.1} % over {tn} and {bn} answers ({c:.0} %)",
            rate(bk, bn) * 100.0
        ),
        Baseline::Pooled(bk, bn) => format!(
            "{key} {what} {t:.1} % over {tn} answers, which running answered too few times to compare: vs running's {:.1} % over all {bn} of its answers in the step ({c:.0} %)",
            rate(bk, bn) * 100.0
        ),
    })
}

/// Share of a step's answers one place may carry before it is one address, not many users.
const ONE_PLACE: f64 = 0.9;

/// Why the step's answers are not enough evidence yet, said with the figures; None when enough:
/// too few from testing, or every answer from one side (the step's split is then not a share of
/// users: behind a front proxy with `CANARY_STICKY=ip`, everyone is one place). An endpoint that
/// running answered too few times never holds the step: it is judged against running's rate over
/// the step ([`Baseline::Pooled`]).
fn waiting(card: &CanaryCard, cfg: &ScoreConfig) -> Option<String> {
    let (testing, running) = card.answers();
    let hint = one_sided(card, cfg);
    if testing < cfg.min_mirrored {
        return Some(format!(
            "{testing} answers from testing of MIN_MIRRORED {}{hint}",
            cfg.min_mirrored
        ));
    }
    if running == 0 {
        return Some(format!("running served none of the step's answers{hint}"));
    }
    too_rare_and_slow(card, cfg)
}

/// Answers each side needs on an endpoint before its latency so far is a doubt the step waits on.
const MIN_DOUBT_ANSWERS: usize = 5;

/// An endpoint too rarely asked to be judged alone yet (fewer than [`slower_alone`] needs on a
/// side) whose answers so far are over `MAX_P95_RATIO` × running's at the median and at p95: a
/// rare write slower on testing passed a step unsaid, the pooled latency hiding it. The step
/// waits for its answers, saying so (writes cannot be replayed), and holds after its windows.
fn too_rare_and_slow(card: &CanaryCard, cfg: &ScoreConfig) -> Option<String> {
    let max = cfg.max_p95_ratio?;
    let min = usize::try_from(cfg.min_endpoint_pairs)
        .unwrap_or(usize::MAX)
        .max(MIN_LATENCY_SAMPLES);
    card.rows.iter().find_map(|(key, row)| {
        let [running, testing] = &row.latencies;
        let rare = running.seen < min || testing.seen < min;
        let enough = running.kept.len().min(testing.kept.len()) >= MIN_DOUBT_ANSWERS;
        if key.as_str() == OTHER || !rare || !enough {
            return None;
        }
        let (t, r) = (p95(&testing.kept), p95(&running.kept));
        let slower = median(&testing.kept) > max * median(&running.kept) && t > max * r;
        slower.then(|| {
            format!(
                "latency on {key}: testing p95 {:.1} ms vs running {:.1} ms over {} and {} answers, over MAX_P95_RATIO {max}: too few to judge alone (it needs {min} on each side), so the step waits for more of its answers",
                t * 1e3,
                r * 1e3,
                testing.seen,
                running.seen
            )
        })
    })
}

/// The median of latencies in seconds.
fn median(v: &[f64]) -> f64 {
    quantile(v, 50)
}

/// "; …users all land on one side…" when one place (or one side) carries nearly all of the
/// step's answers: behind a front proxy every user has its address, and `ip` places them as one.
fn one_sided(card: &CanaryCard, cfg: &ScoreConfig) -> String {
    let (testing, running) = card.answers();
    let all = testing + running;
    let top = card.per_place.iter().copied().max().map_or(0, u64::from);
    let why = if all >= cfg.min_endpoint_pairs && top as f64 >= all as f64 * ONE_PLACE {
        format!("{top} of the {all} answers came from one user's place")
    } else if testing == 0 && running >= cfg.min_mirrored {
        format!("running served all {running} answers")
    } else if running == 0 && testing >= cfg.min_mirrored {
        format!("testing served all {testing} answers")
    } else {
        return String::new();
    };
    format!(
        "; {why}: users all land on one side, as when a front proxy or TLS terminator gives every request one address; behind one set CANARY_STICKY=header:X-Real-IP (or cookie:NAME)"
    )
}

/// Testing's user-path p95 over `MAX_P95_RATIO` × running's in the same step, and its answers
/// surely slower than that factor (Mann-Whitney at `CONFIDENCE`): all answers pooled, then each
/// endpoint alone ([`slower_alone`]) where the pooled judgement let the build through, so a build
/// slow everywhere is said once.
fn slower(card: &CanaryCard, cfg: &ScoreConfig) -> Option<String> {
    let max = cfg.max_p95_ratio?;
    let [running, testing] = &card.latencies;
    let pooled = Judged::of(&running.kept, &testing.kept, max, MIN_LATENCY_SAMPLES)
        .filter(|j| j.over(max, 1.0 - cfg.confidence));
    match pooled {
        Some(j) => Some(format!(
            "latency {} (Mann-Whitney p {:.1e}){}",
            j.figures(max),
            j.p,
            slowest(card, cfg)
        )),
        None => slower_alone(card, cfg, max),
    }
}

/// Each endpoint with enough answers on both sides (`MIN_ENDPOINT_PAIRS`, never fewer than the
/// pooled minimum) judged alone by the pooled rule, so a slow write among many fast reads cannot
/// hide in the pooled p95 (writes are tested only here). `1 − CONFIDENCE` is shared among the
/// endpoints so judged (Bonferroni): with twenty endpoints of equal builds one would otherwise
/// look slower by chance. The [`OTHER`] row is not judged alone, nor is a lone endpoint (the
/// pooled judgement is its own). The reason names the endpoint most over, with both p95s.
fn slower_alone(card: &CanaryCard, cfg: &ScoreConfig, max: f64) -> Option<String> {
    if card.rows.len() < 2 {
        return None;
    }
    let min = usize::try_from(cfg.min_endpoint_pairs)
        .unwrap_or(usize::MAX)
        .max(MIN_LATENCY_SAMPLES);
    let judged: Vec<_> = card
        .rows
        .iter()
        .filter(|(k, row)| k.as_str() != OTHER && row.latencies.iter().all(|r| r.seen >= min))
        .collect();
    let n = judged.len();
    let alpha = (1.0 - cfg.confidence) / n.max(1) as f64;
    let ends = if n == 1 { "endpoint" } else { "endpoints" };
    let (key, j) = judged
        .into_iter()
        .filter_map(|(k, row)| {
            let [running, testing] = &row.latencies;
            let j = Judged::of(&running.kept, &testing.kept, max, 1)?;
            j.over(max, alpha).then_some((k, j))
        })
        .max_by(|a, b| a.1.ratio().total_cmp(&b.1.ratio()))?;
    Some(format!(
        "latency on {key}: {} (Mann-Whitney p {:.1e} < {alpha:.1e}; CONFIDENCE shared by the {n} {ends} judged alone)",
        j.figures(max),
        j.p
    ))
}

/// Testing's latencies against running's, by the one rule the pooled judgement and an endpoint
/// alone share.
struct Judged {
    /// p95s in seconds, (testing, running).
    t: f64,
    r: f64,
    /// Mann-Whitney's p that testing is slower than `MAX_P95_RATIO` × running.
    p: f64,
    /// Latencies judged, (testing, running).
    counts: (usize, usize),
}

impl Judged {
    /// None with fewer than `min` latencies on either side, or too few for the test.
    fn of(running: &[f64], testing: &[f64], max: f64, min: usize) -> Option<Judged> {
        if running.len() < min || testing.len() < min {
            return None;
        }
        let scaled: Vec<f64> = running.iter().map(|x| x * max).collect();
        let test = stats::mann_whitney(&scaled, testing)?;
        Some(Judged {
            t: p95(testing),
            r: p95(running),
            p: test.p_slower,
            counts: (testing.len(), running.len()),
        })
    }

    /// Testing's p95 over `max` × running's, and its answers surely slower at level `alpha`.
    fn over(&self, max: f64, alpha: f64) -> bool {
        self.t > self.r * max && self.p < alpha
    }

    /// Testing's p95 over running's.
    fn ratio(&self) -> f64 {
        self.t / self.r.max(1e-9)
    }

    /// "p95 88.0 ms vs running 24.0 ms (3.7×, over MAX_P95_RATIO 2) over 99 and 194 answers".
    fn figures(&self, max: f64) -> String {
        format!(
            "p95 {:.1} ms vs running {:.1} ms ({:.1}×, over MAX_P95_RATIO {max}) over {} and {} answers",
            self.t * 1e3,
            self.r * 1e3,
            self.ratio(),
            self.counts.0,
            self.counts.1
        )
    }
}

/// The 95th percentile of `v` (0 when empty).
fn p95(v: &[f64]) -> f64 {
    quantile(v, 95)
}

/// The `percent` percentile of `v` (the value at index ⌊len × percent / 100⌋, as the scorecard
/// takes its p95); 0 for none.
fn quantile(v: &[f64], percent: usize) -> f64 {
    let mut v = v.to_vec();
    v.sort_unstable_by(f64::total_cmp);
    let i = (v.len() * percent / 100).min(v.len().saturating_sub(1));
    v.get(i).copied().unwrap_or(0.0)
}

/// "; slowest: GET /a (5.0× running's mean)", the endpoint whose mean latency on testing is the
/// largest multiple of running's, among those with `MIN_ENDPOINT_PAIRS` answers on each side.
fn slowest(card: &CanaryCard, cfg: &ScoreConfig) -> String {
    let mean = |t: &SideTally| t.latency_us as f64 / t.answers.max(1) as f64;
    card.rows
        .iter()
        .filter(|(_, row)| {
            row.sides
                .iter()
                .all(|s| s.answers >= cfg.min_endpoint_pairs)
        })
        .map(|(k, Row { sides: [r, t], .. })| (k, mean(t) / mean(r).max(1.0)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(String::new(), |(k, f)| {
            format!("; slowest: {k} ({f:.1}× running's mean)")
        })
}

#[cfg(test)]
mod tests;
