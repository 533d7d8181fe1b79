//! The canary card's judgement: rates per endpoint, latency pooled and per endpoint alone, and
//! when a step's answers are enough.

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

/// xorshift64*: jitter that repeats per seed.
struct Jitter(u64);

impl Jitter {
    /// A latency uniform in 16–24 ms, one in a hundred a spike of 5× (a pause, a busy core).
    fn latency(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let u = (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
        let ms = 16.0 + 8.0 * u;
        let spike = ((u * 1000.0) as u64).is_multiple_of(100);
        (if spike { ms * 5.0 } else { ms }) / 1e3
    }
}

/// One endpoint's answers in a step: (method, path, running's, testing's, testing's factor).
type Traffic<'a> = (Method, &'a str, usize, usize, f64);

/// A step's answers with jittered latencies, testing's on each endpoint × its factor.
fn timed_step(seed: u64, traffic: &[Traffic]) -> CanaryCard {
    let mut jitter = Jitter(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut c = CanaryCard::default();
    for (method, path, running, testing, factor) in traffic {
        for (side, n, f) in [
            (Side::Running, running, 1.0),
            (Side::Testing, testing, *factor),
        ] {
            for _ in 0..*n {
                let mut s = served(side, method.clone(), path, 200);
                s.latency = Duration::from_secs_f64(jitter.latency() * f);
                c.record(&s);
            }
        }
    }
    c
}

fn judging_latency() -> ScoreConfig {
    ScoreConfig {
        max_p95_ratio: Some(2.0),
        ..crate::score::test_support::cfg()
    }
}

/// The review's case: `POST /api/order` 4× slower on testing, a third of its answers; the GETs
/// (the rest) equal. The pooled p95 is over 2× running's, but most of testing's answers are fast,
/// so the pooled rank test cannot tell: the endpoint judged alone rejects, named with its p95s.
#[test]
fn one_endpoint_slower_among_fast_ones_is_a_regression_named_with_its_p95s() {
    let cfg = judging_latency();
    for seed in 1..=5 {
        let c = timed_step(
            seed,
            &[
                (Method::GET, "/api/items", 250, 120, 1.0),
                (Method::GET, "/hello", 150, 80, 1.0),
                (Method::POST, "/api/order", 194, 99, 4.0),
            ],
        );
        let r = evaluate(&c, &cfg).regression.unwrap_or_default();
        assert!(
            r.starts_with("latency on POST /api/order: p95 "),
            "seed {seed}: {r}"
        );
        assert!(
            r.contains("over MAX_P95_RATIO 2) over 99 and 194 answers (Mann-Whitney p ")
                && r.ends_with("; CONFIDENCE shared by the 3 endpoints judged alone)"),
            "seed {seed}: {r}"
        );
    }
}

/// Equal builds with jitter and spikes (and one endpoint 1.5×, within `MAX_P95_RATIO`) are not
/// rejected, over seeds; the same traffic with that endpoint 3× slower is (the judgement has the
/// power to see it at these counts).
#[test]
fn equal_builds_with_jitter_are_not_rejected_and_a_slow_endpoint_among_them_is() {
    let cfg = judging_latency();
    let traffic = |factor| {
        [
            (Method::GET, "/a", 300, 150, 1.0),
            (Method::GET, "/b", 200, 100, 1.0),
            (Method::PUT, "/c", 80, 40, 1.0),
            (Method::POST, "/d", 100, 50, factor),
        ]
    };
    for seed in 1..=20 {
        for factor in [1.0, 1.5] {
            let e = evaluate(&timed_step(seed, &traffic(factor)), &cfg);
            assert_eq!(e.regression, None, "seed {seed}, POST /d × {factor}");
        }
        let r = evaluate(&timed_step(seed, &traffic(3.0)), &cfg).regression;
        assert!(
            r.as_deref()
                .is_some_and(|r| r.starts_with("latency on POST /d: p95 ")),
            "seed {seed}: {r:?}"
        );
    }
}

/// An endpoint with fewer answers than the pooled minimum (30) or `MIN_ENDPOINT_PAIRS` on either
/// side is not judged alone, however slow it looks: with 30 on each side (the minimum) it is.
#[test]
fn an_endpoint_with_too_few_answers_is_not_judged_alone() {
    let cfg = judging_latency();
    let step = |running, testing| {
        timed_step(
            3,
            &[
                (Method::GET, "/hello", 400, 400, 1.0),
                (Method::POST, "/api/order", running, testing, 4.0),
            ],
        )
    };
    assert_eq!(evaluate(&step(200, 29), &cfg).regression, None);
    assert_eq!(evaluate(&step(29, 200), &cfg).regression, None);
    let r = evaluate(&step(30, 30), &cfg).regression.unwrap_or_default();
    assert!(
        r.starts_with("latency on POST /api/order: p95 ")
            && r.ends_with("CONFIDENCE shared by the 2 endpoints judged alone)"),
        "{r}"
    );
    let stricter = ScoreConfig {
        min_endpoint_pairs: 50,
        ..judging_latency()
    };
    assert_eq!(evaluate(&step(49, 49), &stricter).regression, None);
    let r = evaluate(&step(50, 50), &stricter)
        .regression
        .unwrap_or_default();
    assert!(r.starts_with("latency on POST /api/order: p95 "), "{r}");
}

/// An endpoint keeps its most recent 512 latencies a side; the row of endpoints past
/// `MAX_ROWS` keeps none (it is never judged alone).
#[test]
fn an_endpoints_latencies_are_bounded_and_the_other_row_keeps_none() {
    let mut c = CanaryCard::default();
    for i in 0..MAX_ROWS + 10 {
        for _ in 0..3 {
            c.record(&served(Side::Testing, Method::GET, &format!("/p{i}x"), 200));
        }
    }
    for _ in 0..2000 {
        c.record(&served(Side::Running, Method::GET, "/p0x", 200));
    }
    let row = &c.rows["GET /p0x"];
    assert_eq!(row.latencies[0].kept.len(), ENDPOINT_LATENCY_SAMPLES);
    assert_eq!(row.latencies[0].seen, 2000);
    assert_eq!(row.sides[0].answers, 2000);
    assert_eq!(c.rows.len(), MAX_ROWS + 1);
    let other = &c.rows[OTHER];
    assert_eq!(other.sides[1].answers, 30);
    assert!(other.latencies.iter().all(|r| r.kept.is_empty()));
}

/// A hostile review's case: a rare write (5 % of the traffic) 430× slower on testing, about 15
/// answers a side in the step: too few to judge alone, the pooled latency hid it, and the build
/// was promoted unsaid. The step waits for its answers now, naming it; equal builds with the
/// same few answers, over seeds, do not wait.
#[test]
fn a_rare_endpoint_slow_so_far_makes_the_step_wait_naming_it() {
    let cfg = judging_latency();
    let step = |seed, factor| {
        timed_step(
            seed,
            &[
                (Method::GET, "/items", 300, 300, 1.0),
                (Method::POST, "/refunds", 15, 15, factor),
            ],
        )
    };
    let e = evaluate(&step(1, 430.0), &cfg);
    assert!(!e.enough, "{e:?}");
    let w = e.waiting.unwrap_or_default();
    assert!(
        w.starts_with("latency on POST /refunds: testing p95 ")
            && w.contains("over 15 and 15 answers")
            && w.ends_with("too few to judge alone (it needs 30 on each side), so the step waits for more of its answers"),
        "{w}"
    );
    for seed in 1..=20 {
        let e = evaluate(&step(seed, 1.0), &cfg);
        assert!(e.enough, "seed {seed}: {:?}", e.waiting);
    }
}
