//! A canary step judged on real answers: per endpoint, the answers testing served to its share of
//! users against those running served to the rest in the same step, with the shadow verdict's
//! statistics (`CONFIDENCE`, `MAX_5XX_DELTA`, `MAX_CLIENT_ERROR_DELTA`).

use std::collections::BTreeMap;
use std::time::Duration;

use http::Method;

use serde::Serialize;

use super::scorecard::endpoint_key;
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
/// Answers each side needs before latency is judged.
const MIN_LATENCY_SAMPLES: usize = 30;

/// The step's answers so far, per endpoint and side, and each side's latencies.
#[derive(Debug, Clone, Default)]
pub struct CanaryCard {
    rows: BTreeMap<String, [SideTally; 2]>,
    /// (running, testing) latencies in seconds, ring-buffered.
    latencies: [Vec<f64>; 2],
    seen: [usize; 2],
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
        let mut key = endpoint_key(&s.method, &s.path);
        if !self.rows.contains_key(&key) && self.rows.len() >= MAX_ROWS {
            key = OTHER.to_string();
        }
        let side = usize::from(s.side == Side::Testing);
        let (kept, seen) = (&mut self.latencies[side], &mut self.seen[side]);
        if kept.len() < LATENCY_SAMPLES {
            kept.push(s.latency.as_secs_f64());
        } else {
            kept[*seen % LATENCY_SAMPLES] = s.latency.as_secs_f64();
        }
        *seen += 1;
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
        let row = self.rows.entry(key).or_default();
        let t = &mut row[side];
        t.answers += 1;
        t.server_errors += u64::from(s.status >= 500);
        t.client_errors += u64::from((400..500).contains(&s.status));
        let us = u64::try_from(s.latency.as_micros()).unwrap_or(u64::MAX);
        t.latency_us = t.latency_us.saturating_add(us);
    }

    /// Answers served by (testing, running) in this step.
    pub fn answers(&self) -> (u64, u64) {
        self.rows.values().fold((0, 0), |(t, r), row| {
            (t + row[1].answers, r + row[0].answers)
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
}

/// Judge a step's answers: any endpoint (with `MIN_ENDPOINT_PAIRS` answers on testing's side)
/// whose 5xx or 4xx rate is surely worse than running's by more than its margin is a regression.
pub fn evaluate(card: &CanaryCard, cfg: &ScoreConfig) -> CanaryEvaluation {
    let (testing_answers, running_answers) = card.answers();
    let mut regression = None;
    for (key, [running, testing]) in &card.rows {
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
        (t + row[1].server_errors, r + row[0].server_errors)
    });
    let users = card.met.iter().map(|w| u64::from(w.count_ones())).sum();
    let waiting = waiting(card, cfg);
    CanaryEvaluation {
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
    let (k, n) = card
        .rows
        .values()
        .fold((0, 0), |(k, n), [r, _]| (k + bad(r), n + r.answers));
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
    (running == 0).then(|| format!("running served none of the step's answers{hint}"))
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
/// surely slower than that factor (Mann-Whitney at `CONFIDENCE`).
fn slower(card: &CanaryCard, cfg: &ScoreConfig) -> Option<String> {
    let max = cfg.max_p95_ratio?;
    let [running, testing] = &card.latencies;
    if running.len() < MIN_LATENCY_SAMPLES || testing.len() < MIN_LATENCY_SAMPLES {
        return None;
    }
    let p95 = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_unstable_by(f64::total_cmp);
        v[(v.len() * 95 / 100).min(v.len() - 1)]
    };
    let (t, r) = (p95(testing), p95(running));
    let scaled: Vec<f64> = running.iter().map(|x| x * max).collect();
    let test = stats::mann_whitney(&scaled, testing)?;
    (t > r * max && test.p_slower < 1.0 - cfg.confidence).then(|| {
        format!(
            "latency p95 {:.1} ms vs running {:.1} ms ({:.1}×, over MAX_P95_RATIO {max}) over {} and {} answers (Mann-Whitney p {:.1e}){}",
            t * 1e3,
            r * 1e3,
            t / r.max(1e-9),
            testing.len(),
            running.len(),
            test.p_slower,
            slowest(card, cfg)
        )
    })
}

/// "; slowest: GET /a (5.0× running's mean)", the endpoint whose mean latency on testing is the
/// largest multiple of running's, among those with `MIN_ENDPOINT_PAIRS` answers on each side.
fn slowest(card: &CanaryCard, cfg: &ScoreConfig) -> String {
    let mean = |t: &SideTally| t.latency_us as f64 / t.answers.max(1) as f64;
    card.rows
        .iter()
        .filter(|(_, [r, t])| r.answers.min(t.answers) >= cfg.min_endpoint_pairs)
        .map(|(k, [r, t])| (k, mean(t) / mean(r).max(1.0)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(String::new(), |(k, f)| {
            format!("; slowest: {k} ({f:.1}× running's mean)")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(side: Side, method: Method, path: &str, status: u16) -> Served {
        Served {
            side,
            place: 7,
            method,
            path: path.into(),
            status,
            latency: Duration::from_millis(1),
        }
    }

    fn card(testing_500: u64) -> CanaryCard {
        let mut c = CanaryCard::default();
        for i in 0..300 {
            c.record(&served(Side::Running, Method::POST, "/api/orders", 200));
            c.record(&served(Side::Running, Method::GET, "/api/items", 200));
            let status = if i < testing_500 { 500 } else { 201 };
            if i < 100 {
                c.record(&served(Side::Testing, Method::POST, "/api/orders", status));
                c.record(&served(Side::Testing, Method::GET, "/api/items", 200));
            }
        }
        c
    }

    #[test]
    fn a_write_failing_on_testing_is_a_regression_named_with_its_figures() {
        let cfg = crate::score::test_support::cfg();
        let e = evaluate(&card(100), &cfg);
        let r = e.regression.unwrap();
        assert!(
            r.starts_with("POST /api/orders 5xx 100.0 % vs running 0.0 % over 100 and 300 answers"),
            "{r}"
        );
        assert_eq!((e.testing_answers, e.running_answers), (200, 600));
    }

    #[test]
    fn a_slower_build_on_the_user_path_is_a_regression() {
        let cfg = ScoreConfig {
            max_p95_ratio: Some(2.0),
            ..crate::score::test_support::cfg()
        };
        let mut c = CanaryCard::default();
        for i in 0..200 {
            let ms = 2 + i % 5;
            let mut r = served(Side::Running, Method::GET, "/a", 200);
            r.latency = Duration::from_millis(ms);
            c.record(&r);
            let mut t = served(Side::Testing, Method::GET, "/a", 200);
            t.latency = Duration::from_millis(ms * 5);
            c.record(&t);
        }
        let r = evaluate(&c, &cfg).regression.unwrap();
        assert!(
            r.starts_with("latency p95 30.0 ms vs running 6.0 ms (5.0×"),
            "{r}"
        );
        assert!(
            r.ends_with("; slowest: GET /a (5.0× running's mean)"),
            "{r}"
        );
        let same = card(0);
        assert_eq!(evaluate(&same, &cfg).regression, None);
    }

    #[test]
    fn an_endpoint_running_never_answered_is_judged_against_its_rate_over_the_step() {
        // Behind a front proxy every user has one address, one place: all on testing at 10 %.
        // A build failing every POST is still rolled back: against no baseline, the margin.
        let cfg = crate::score::test_support::cfg();
        let mut c = CanaryCard::default();
        for _ in 0..200 {
            c.record(&served(Side::Testing, Method::POST, "/api/orders", 500));
        }
        let e = evaluate(&c, &cfg);
        let r = e.regression.unwrap_or_default();
        assert!(
            r.starts_with("POST /api/orders 5xx 100.0 % over 200 answers, which running answered too few times to compare"),
            "{r}"
        );
        // Healthy, it holds: every answer on one side is not a share of users; the reason says
        // so and names the key to use.
        let mut c = CanaryCard::default();
        for _ in 0..200 {
            c.record(&served(Side::Testing, Method::POST, "/api/orders", 200));
        }
        let e = evaluate(&c, &cfg);
        assert_eq!(e.regression, None);
        assert!(!e.enough, "{e:?}");
        let why = e.waiting.unwrap();
        assert!(
            why.starts_with("running served none of the step's answers; 200 of the 200 answers came from one user's place: users all land on one side")
                && why.contains("CANARY_STICKY=header:X-Real-IP (or cookie:NAME)"),
            "{why}"
        );
        // At 5 % the one place is running's: testing gets nobody, and the reason says why.
        let mut c = CanaryCard::default();
        for _ in 0..200 {
            c.record(&served(Side::Running, Method::POST, "/api/orders", 200));
        }
        let why = evaluate(&c, &cfg).waiting.unwrap();
        assert!(
            why.starts_with("0 answers from testing of MIN_MIRRORED 100; 200 of the 200 answers came from one user's place"),
            "{why}"
        );
    }

    /// A new endpoint only the new build's pages call is never answered by running: judged
    /// against running's rate over the step, it neither holds the step nor passes when failing.
    #[test]
    fn an_endpoint_only_testing_serves_is_judged_against_runnings_rate_over_the_step() {
        let cfg = crate::score::test_support::cfg();
        let step = |new_status: u16| {
            let mut c = CanaryCard::default();
            for i in 0..300 {
                let side = if i % 2 == 0 {
                    Side::Running
                } else {
                    Side::Testing
                };
                c.record(&served(side, Method::GET, "/a", 200));
            }
            for _ in 0..50 {
                c.record(&served(Side::Testing, Method::GET, "/api/v2/x", new_status));
            }
            evaluate(&c, &cfg)
        };
        let healthy = step(200);
        assert_eq!(healthy.regression, None);
        assert!(
            healthy.enough,
            "a new endpoint does not hold the step: {healthy:?}"
        );
        let failing = step(500);
        assert!(
            failing
                .regression
                .as_deref()
                .is_some_and(|r| r.starts_with("GET /api/v2/x 5xx 100.0 %")),
            "{failing:?}"
        );
    }

    #[test]
    fn healthy_answers_are_enough_and_few_are_not() {
        let cfg = ScoreConfig {
            min_mirrored: 150,
            ..crate::score::test_support::cfg()
        };
        let e = evaluate(&card(0), &cfg);
        assert_eq!(e.regression, None);
        assert!(e.enough, "{e:?}");
        assert_eq!(e.waiting, None);
        let mut few = CanaryCard::default();
        few.record(&served(Side::Testing, Method::GET, "/", 200));
        assert!(!evaluate(&few, &cfg).enough);
    }
}
