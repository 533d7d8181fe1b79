use std::time::Duration;

use super::*;
use crate::diff::DiffStats;
use crate::score::scorecard::{EndpointStats, LogCounts, Resources};
use crate::score::test_support::{cfg, pair, statuses, summarised, summary};
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
    s.testing_last_error = Some(("ERROR boom".into(), "stderr".into()));
    let e = evaluate(&s, &cfg());
    let Verdict::Reject(r) = e.verdict else {
        panic!("{e:?}")
    };
    assert!(
        r.iter().any(|r| r.contains("5xx")) && r.iter().any(|r| r.contains("log errors")),
        "{r:?}"
    );
    assert!(
        r.iter()
            .any(|r| r.contains("log errors") && r.contains("; the last, in stderr: ‹ERROR boom›")),
        "{r:?}"
    );
    // The overall rate names where to look.
    assert!(
        r.iter()
            .any(|r| r.contains("overall") && r.contains("most on GET /a (200 of its")),
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

/// The wait for bodies too large to compare names the sizes in force: `DIFF_MAX_BODY` as set,
/// and the proxy's own limits (what is held for diffing at once, what a fingerprint covers),
/// not copies written into the text; and a `DIFF_MAX_BODY` above the held limit is not offered
/// as the cure for bodies over it.
#[test]
fn the_wait_for_large_bodies_names_the_sizes_in_force() {
    use crate::score::limits::{size_text, DIFF_HELD, FINGERPRINTED};
    let large = crate::diff::Difference {
        path: "$body".to_string(),
        kind: crate::diff::DiffKind::Uncompared,
        running: "<3000000 bytes, over DIFF_MAX_BODY>".to_string(),
        testing: "<3000000 bytes, over DIFF_MAX_BODY>".to_string(),
    };
    let pairs: Vec<Pair> = (0..100)
        .map(|_| Pair {
            diffs: Some(vec![large.clone()]),
            ..pair("/big")
        })
        .collect();
    for max in [1 << 20, 3 << 10, 1000] {
        let c = ScoreConfig {
            diff_sample: 1.0,
            diff_max_body: max,
            ..cfg()
        };
        let e = evaluate(&summarised(&pairs, 600), &c);
        let Verdict::Wait(w) = &e.verdict else {
            panic!("bodies never compared must wait: {e:?}")
        };
        let held = size_text(DIFF_HELD);
        for said in [
            format!("over DIFF_MAX_BODY ({})", size_text(max)),
            format!("while the {held} held for diffing was full"),
            format!("first {} cannot tell", size_text(FINGERPRINTED)),
            format!("above their size (a body over {held} is never held)"),
        ] {
            assert!(w.contains(&said), "{said:?} in {w}");
        }
    }
}

/// Answers over `DIFF_MAX_BODY` are fingerprinted only: a build whose every answer is so large
/// waits, saying why and which key helps, and is never promoted on bodies nobody compared
/// (issue: such pairs counted toward the answers compared, and the build passed).
#[test]
fn answers_whose_bodies_were_not_compared_are_no_evidence() {
    let large = |alike: &str| crate::diff::Difference {
        path: "$body".to_string(),
        kind: crate::diff::DiffKind::Uncompared,
        running: format!("<300000 bytes, over DIFF_MAX_BODY{alike}>"),
        testing: format!("<300000 bytes, over DIFF_MAX_BODY{alike}>"),
    };
    let p = |d| Pair {
        diffs: Some(vec![d]),
        ..pair("/big")
    };
    let mut pairs: Vec<Pair> = (0..100).map(|_| p(large(""))).collect();
    pairs.extend((0..100).map(|_| p(large(", alike by length and first 64 KiB"))));
    let every = ScoreConfig {
        diff_sample: 1.0,
        ..cfg()
    };
    let e = evaluate(&summarised(&pairs, 600), &every);
    let Verdict::Wait(w) = &e.verdict else {
        panic!("bodies never compared must wait: {e:?}")
    };
    assert!(
        w.starts_with("too few answers compared: 0 of 100 needed; the bodies"),
        "{w}"
    );
    assert!(w.contains("over DIFF_MAX_BODY (256KiB)"), "{w}");
    assert!(
        w.contains("200 more answers are not compared") && w.contains("DIFF_MAX_BODY"),
        "{w}"
    );
    // With enough answers compared besides, they are waited for no more.
    pairs.extend((0..100).map(|_| Pair {
        diffs: Some(Vec::new()),
        ..pair("/small")
    }));
    // DIFF_MAX_BODY=0: the operator judges by status and headers alone, and nothing is waited for.
    let headers_only = ScoreConfig {
        diff_max_body: 0,
        ..every.clone()
    };
    let e = evaluate(&summarised(&pairs[..200], 600), &headers_only);
    assert_eq!(e.verdict, Verdict::Promote);
    let bodies = e.parts.iter().find(|p| p.name == "bodies").unwrap();
    assert!(
        bodies
            .detail
            .contains("(bodies not compared: DIFF_MAX_BODY=0)"),
        "{}",
        bodies.detail
    );
    let e = evaluate(&summarised(&pairs, 600), &every);
    assert_eq!(e.verdict, Verdict::Promote);
    // The bodies line says how many of the compared answers had their bodies left out.
    let bodies = e.parts.iter().find(|p| p.name == "bodies").unwrap();
    assert!(
        bodies
            .detail
            .starts_with("0 of 300 compared answers differ (200 of them with bodies too large"),
        "{}",
        bodies.detail
    );
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
    let Verdict::Reject(r) = evaluate(&summarised(&[healthy, alone].concat(), 600), &cfg()).verdict
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
    // Both copies timed out (no answer on either side): an outage both versions share.
    let timed_out = |n| {
        let p = Pair {
            testing_status: None,
            secondary_status: Some(crate::score::NO_ANSWER),
            ..pair("/pay")
        };
        vec![p; n]
    };
    let s = summarised(&[healthy.clone(), timed_out(30)].concat(), 600);
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

/// A verdict waiting on an endpoint's pairs names it for replay, and its reason says where the
/// pairs will come from: replay, or (REPLAY off, no secondary, nothing recorded of it left, as
/// for a POST) what the operator can do.
#[test]
fn a_wait_on_an_endpoints_pairs_says_where_they_will_come_from() {
    let healthy = statuses("/a", 200, 200, Some(200), 200);
    let once = statuses("/api/items/7", 1, 200, Some(200), 404);
    let mut s = summarised(&[healthy.clone(), once].concat(), 600);
    let key = "GET /api/items/{n}";
    let reason = |s: &Summary, cfg: &ScoreConfig| {
        let e = evaluate(s, cfg);
        assert_eq!(e.waiting_on, [key], "{e:?}");
        let Verdict::Wait(w) = e.verdict else {
            panic!("{e:?}")
        };
        w
    };
    let operator = "`understudy abort` rejects the build, `understudy promote` promotes it, or a lower MIN_ENDPOINT_PAIRS judges it";
    let off = reason(&s, &cfg());
    assert!(
        off.contains(&format!(
            "MIN_ENDPOINT_PAIRS is 5; REPLAY is off: {operator}"
        )),
        "{off}"
    );
    let on = ScoreConfig {
        replay: true,
        ..cfg()
    };
    let alone = reason(&s, &on);
    assert!(
        alone.contains(&format!(
            "no secondary runs to replay it against: {operator}"
        )),
        "{alone}"
    );
    s.noise_expected = true;
    let replaying = reason(&s, &on);
    assert!(
        replaying.ends_with("MIN_ENDPOINT_PAIRS is 5; replaying its recorded requests"),
        "{replaying}"
    );
    s.unreplayable.insert(key.to_string());
    let none = reason(&s, &on);
    assert!(
        none.contains("no recorded request of it is left to replay") && none.contains(operator),
        "{none}"
    );
    // Judged (here rejected), nothing is waited on.
    let gone = statuses("/api/items/7", 5, 200, Some(200), 404);
    let e = evaluate(&summarised(&[healthy, gone].concat(), 600), &on);
    assert!(
        matches!(e.verdict, Verdict::Reject(_)) && e.waiting_on.is_empty(),
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

/// A hung endpoint is judged as strictly as a failing one, but its reason says testing gave no
/// answer (and why), apart from the 5xx it answered: a hang is not read as a server error.
#[test]
fn a_hang_is_reported_as_unanswered_copies_not_as_5xx() {
    let healthy = statuses("/a", 200, 200, Some(200), 200);
    let hung = Pair {
        testing_status: None,
        secondary_status: Some(200),
        testing_error: Some("no answer within MIRROR_TIMEOUT (10s)".into()),
        ..pair("/api/search")
    };
    let failed = statuses("/api/search", 10, 200, Some(200), 500);
    let s = summarised(&[healthy, vec![hung; 50], failed].concat(), 600);
    let Verdict::Reject(r) = evaluate(&s, &cfg()).verdict else {
        panic!("rejected as strictly as 5xx")
    };
    let r = r.join("\n");
    assert!(r.contains("counting no answer as 5xx"), "{r}");
    assert!(
        r.contains("testing gave no answer to 50 (no answer within MIRROR_TIMEOUT (10s)) and answered 5xx to 10"),
        "{r}"
    );
    // Answered 5xx alone say nothing of missing answers.
    let s = summarised(&statuses("/b", 200, 200, Some(200), 500), 600);
    let Verdict::Reject(r) = evaluate(&s, &cfg()).verdict else {
        panic!()
    };
    assert!(!r.join("\n").contains("no answer"), "{r:?}");
}

/// Users' traffic that is mostly writes (never mirrored) waits for ever on "too little traffic":
/// the wait says the traffic is there but not mirrorable, and what decides instead.
#[test]
fn a_wait_for_pairs_says_when_most_requests_are_not_mirrorable() {
    let mut s = summary(3, 100);
    s.running_requests = 703;
    s.not_mirrorable = 700;
    let Verdict::Wait(w) = evaluate(&s, &cfg()).verdict else {
        panic!()
    };
    assert!(w.contains("too little traffic: 3 of"), "{w}");
    assert!(w.contains("700 of their 703 requests"), "{w}");
    assert!(w.contains("MIRROR_METHODS"), "{w}");
    assert!(
        w.contains("`understudy promote` or `understudy abort` decides"),
        "{w}"
    );
    // A few writes among mirrored reads: only time is short.
    s.not_mirrorable = 10;
    let Verdict::Wait(w) = evaluate(&s, &cfg()).verdict else {
        panic!()
    };
    assert!(!w.contains("MIRROR_METHODS"), "{w}");
}

/// Unjudged (`MAX_RSS_RATIO` unset, the default), a 5× memory blow-up still promotes, but its
/// score falls with the ratio and the line says it was not judged.
#[test]
fn an_unjudged_memory_blow_up_shows_in_the_score() {
    let mut s = summary(200, 600);
    let with_rss = |testing_rss: u64| Resources {
        other: "secondary",
        other_rss: 87 << 20,
        testing_rss,
        other_cpu: 0.0,
        testing_cpu: 0.0,
        other_requests: 1000,
        testing_requests: 1000,
    };
    s.resources = Some(with_rss(432 << 20));
    let e = evaluate(&s, &cfg());
    assert_eq!(e.verdict, Verdict::Promote, "report-only by default");
    let part = e.parts.iter().find(|p| p.name == "resources").unwrap();
    assert!(part.score <= 5, "{part:?}");
    assert!(
        part.detail.contains("(not judged: MAX_RSS_RATIO unset)"),
        "{part:?}"
    );
    assert!(e.score <= 5, "the lowest part: {}", e.score);
    s.resources = Some(with_rss(174 << 20));
    let part = evaluate(&s, &cfg())
        .parts
        .into_iter()
        .find(|p| p.name == "resources");
    assert_eq!(part.unwrap().score, 75, "2× memory");
    s.resources = Some(with_rss(80 << 20));
    let part = evaluate(&s, &cfg())
        .parts
        .into_iter()
        .find(|p| p.name == "resources");
    assert_eq!(part.unwrap().score, 100, "less memory");
}

/// A slow service whose recorded requests were all replayed `REPLAY_REPEAT` times waits on
/// users alone: the wait says replay has nothing more to offer, and the ways forward.
#[test]
fn a_wait_for_pairs_says_when_replay_has_nothing_more_to_offer() {
    let mut s = summary(75, 170);
    s.replayed = 21;
    s.recorded = 7;
    let wait = |s: &Summary| match evaluate(s, &cfg()).verdict {
        Verdict::Wait(w) => w,
        v => panic!("{v:?}"),
    };
    assert!(!wait(&s).contains("nothing more"), "replay still has some");
    s.replay_exhausted = true;
    let w = wait(&s);
    assert!(w.contains("too little traffic: 75 of"), "{w}");
    assert!(w.contains("replay has nothing more to offer: every request recorded was replayed as often as REPLAY_REPEAT allows (21 pairs from 7 of them)"), "{w}");
    assert!(
        w.contains("a lower MIN_MIRRORED, or `understudy promote`"),
        "{w}"
    );
}
