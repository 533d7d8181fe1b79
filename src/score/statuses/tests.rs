use super::*;
use crate::config::{MaxBodyDiff, ScoreConfig};
use crate::score::test_support::{cfg, pair, statuses, summarised};
use crate::score::{evaluate, Evaluation, Verdict};

/// 200 healthy pairs of `GET /a` (running, the secondary and testing answer 200) and `more`.
fn judged(more: Vec<Pair>) -> Evaluation {
    let healthy = statuses("/a", 200, 200, Some(200), 200);
    evaluate(&summarised(&[healthy, more].concat(), 600), &cfg())
}

/// As [`judged`], by `cfg`, with a secondary running and `REPLAY=auto`: where replay can bring a
/// rare endpoint its pairs.
fn judged_with(more: Vec<Pair>, cfg: &ScoreConfig, replay: bool) -> Evaluation {
    let healthy = statuses("/a", 200, 200, Some(200), 200);
    let mut s = summarised(&[healthy, more].concat(), 600);
    s.noise_expected = replay;
    evaluate(
        &s,
        &ScoreConfig {
            replay,
            ..cfg.clone()
        },
    )
}

/// The reasons of a rejection, or a panic saying what the verdict was.
fn rejected(e: &Evaluation) -> String {
    match &e.verdict {
        Verdict::Reject(r) => r.join("\n"),
        _ => panic!("not rejected: {e:?}"),
    }
}

/// Running and its secondary answer 401 on `/admin`; testing answers 200: its authentication is
/// gone. Rejected, naming the endpoint and both statuses, and listed as a `$status` row.
#[test]
fn an_endpoint_that_stopped_asking_for_credentials_rejects() {
    let e = judged(statuses("/admin", 20, 401, Some(401), 200));
    let r = rejected(&e);
    assert!(
        r.contains("status changed on GET /admin: 20 of 20 pairs (100.0%): running 401, testing 200 (20 pairs)")
            && r.contains("running's secondary answers it otherwise in 0 of 20 (0.0%)"),
        "{r}"
    );
    let row = &e.diffs[0];
    assert_eq!(
        (row.endpoint.as_str(), row.path.as_str(), row.judgement),
        ("GET /admin", "$status", DiffJudgement::Counts)
    );
    assert_eq!((row.running.as_str(), row.testing.as_str()), ("401", "200"));
    let part = e.parts.iter().find(|p| p.name == "statuses").unwrap();
    assert_eq!(part.score, 0, "{part:?}");
}

/// A JSON answer that became a redirect on 60 % of its pairs, or a 204 on all of them, where
/// running's version answers 200 every time.
#[test]
fn a_success_that_became_a_redirect_or_no_content_rejects() {
    let redirect = [
        statuses("/api/item", 60, 200, Some(200), 302),
        statuses("/api/item", 40, 200, Some(200), 200),
    ]
    .concat();
    let r = rejected(&judged(redirect));
    assert!(
        r.contains("status changed on GET /api/item: 60 of 100 pairs (60.0%): running 200, testing 302 (60 pairs)"),
        "{r}"
    );
    let r = rejected(&judged(statuses("/api/item", 30, 200, Some(200), 204)));
    assert!(r.contains("running 200, testing 204 (30 pairs)"), "{r}");
}

/// An endpoint asked rarely (8 of 258 pairs, 3 %: under `MAX_CLIENT_ERROR_DELTA` overall) that
/// answers 403 every time on testing is judged alone and rejects by name.
#[test]
fn a_rare_endpoint_that_always_answers_403_rejects_by_name() {
    let e = judged(statuses("/rare", 8, 200, Some(200), 403));
    let r = rejected(&e);
    assert!(
        r.contains("status changed on GET /rare: 8 of 8 pairs (100.0%): running 200, testing 403"),
        "{r}"
    );
    // Seen fewer than MIN_ENDPOINT_PAIRS times: listed, and the verdict waits for its pairs
    // (replayed), never promoting over it.
    let e = judged_with(statuses("/rare", 4, 200, Some(200), 403), &cfg(), true);
    assert!(
        matches!(&e.verdict, Verdict::Wait(w) if w.contains("status changed on GET /rare: 4 of 4 pairs: too few to judge")),
        "{e:?}"
    );
    assert_eq!(e.waiting_on, ["GET /rare"]);
    assert_eq!(e.diffs[0].path, "$status");
}

/// `n` pairs of `path` whose statuses are 302 at random, independently on running and the
/// secondary (in `share` of 100) and on testing (in `testing_share`), else 200: an endpoint
/// running's version answers either way.
fn flaky(path: &str, n: u64, share: u64, testing_share: u64) -> Vec<Pair> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % 100
    };
    let status = |roll: u64, share: u64| if roll < share { 302 } else { 200 };
    (0..n)
        .map(|_| Pair {
            running_status: status(next(), share),
            secondary_status: Some(status(next(), share)),
            testing_status: Some(status(next(), testing_share)),
            ..pair(path)
        })
        .collect()
}

/// Where running's version itself redirects one request in ten at random, a build doing the
/// same is noise and promoted; one that always redirects there is not.
#[test]
fn a_status_that_varies_as_much_on_the_secondary_is_noise() {
    let e = judged(flaky("/flaky", 300, 10, 10));
    assert_eq!(e.verdict, Verdict::Promote, "{e:?}");
    let row = e.diffs.iter().find(|d| d.path == "$status").unwrap();
    assert_eq!(row.judgement, DiffJudgement::Noise, "{row:?}");
    assert!(row.noise_rate.is_some_and(|n| n > 0.1), "{row:?}");
    let r = rejected(&judged(flaky("/flaky", 300, 10, 100)));
    assert!(
        r.contains("status changed on GET /flaky") && r.contains("running 200, testing 302"),
        "{r}"
    );
}

/// A one-time link: running consumed it (302), both copies then answer 403 alike; a cached copy
/// revalidated (304 on running's version) that the new build answers whole (200). Neither is a
/// change; a redirect where both answer 200 still is.
#[test]
fn a_status_testing_shares_with_the_secondary_or_a_fresh_200_is_no_change() {
    let token = statuses("/confirm/ab12cd34ef", 20, 302, Some(403), 403);
    let fresh = statuses("/app.js", 20, 304, Some(304), 200);
    let e = judged([token.clone(), fresh.clone()].concat());
    assert_eq!(e.verdict, Verdict::Promote, "{e:?}");
    assert!(e.diffs.is_empty(), "{:?}", e.diffs);
    let moved = statuses("/login", 20, 200, Some(200), 302);
    let r = rejected(&judged([token, fresh, moved].concat()));
    assert!(
        r.contains("status changed on GET /login")
            && !r.contains("/confirm")
            && !r.contains("/app.js"),
        "{r}"
    );
}

/// Without a secondary, a consistent change is judged by `MAX_BODY_DIFF` set to a number: it
/// rejects, and the reason says the noise is unmeasured.
#[test]
fn without_a_secondary_a_consistent_change_rejects_by_a_number() {
    let fixed = ScoreConfig {
        max_body_diff: MaxBodyDiff::Fixed(0.05),
        ..cfg()
    };
    let e = judged_with(statuses("/admin", 20, 401, None, 200), &fixed, false);
    let r = rejected(&e);
    assert!(
        r.contains("status changed on GET /admin")
            && r.contains("no secondary answered it to measure its noise, so it is held against MAX_BODY_DIFF (5.0%)"),
        "{r}"
    );
}

/// Running answers the user first: a one-time link it consumed redirects the copy to a login
/// (302), a per-peer rate limit answers 429 to every copy. With no noise measured (no secondary, or one that gave
/// no answer), `MAX_BODY_DIFF=auto` or empty reports the change, never rejects nor waits on it.
#[test]
fn without_measured_noise_a_change_is_reported_only_under_auto() {
    let consumed = statuses("/verify", 20, 200, None, 302);
    let limited = statuses("/api/search", 20, 200, Some(NO_ANSWER), 429);
    let rare = statuses("/rare", 3, 200, None, 302);
    for max_body_diff in [MaxBodyDiff::Auto, MaxBodyDiff::Off] {
        let c = ScoreConfig {
            max_body_diff,
            ..cfg()
        };
        for replay in [false, true] {
            let more = [consumed.clone(), limited.clone(), rare.clone()].concat();
            let e = judged_with(more, &c, replay);
            assert_eq!(e.verdict, Verdict::Promote, "{max_body_diff:?}: {e:?}");
            let rows: Vec<_> = e
                .diffs
                .iter()
                .map(|d| (d.endpoint.as_str(), d.judgement))
                .collect();
            assert_eq!(
                rows,
                [
                    ("GET /api/search", DiffJudgement::NoiseUnknown),
                    ("GET /rare", DiffJudgement::NoiseUnknown),
                    ("GET /verify", DiffJudgement::NoiseUnknown)
                ],
                "{e:?}"
            );
        }
    }
}

/// Where replay cannot bring a rare endpoint its pairs (`REPLAY` off, no secondary, or nothing
/// of it recorded), a status change or 5xx there does not hold the verdict for ever: the
/// `$status` row is listed and the build promoted, as before these rules.
#[test]
fn a_rare_endpoint_replay_cannot_help_does_not_wait() {
    let changed = statuses("/rare", 4, 200, Some(200), 403);
    let failing = statuses("/rarer", 3, 200, Some(200), 500);
    // Healthy pairs enough that 3 errors stay well under MAX_5XX_DELTA overall.
    let busy = statuses("/b", 400, 200, Some(200), 200);
    let e = judged([busy.clone(), changed.clone(), failing.clone()].concat());
    assert_eq!(e.verdict, Verdict::Promote, "{e:?}");
    assert_eq!(e.diffs[0].endpoint, "GET /rare");
    assert_eq!(e.diffs[0].path, "$status");
    // Replay on and a secondary, but nothing of them recorded to replay.
    let healthy = statuses("/a", 200, 200, Some(200), 200);
    let mut s = summarised(&[healthy, busy, changed, failing].concat(), 600);
    s.noise_expected = true;
    s.unreplayable = ["GET /rare".to_string(), "GET /rarer".to_string()].into();
    let e = evaluate(
        &s,
        &ScoreConfig {
            replay: true,
            ..cfg()
        },
    );
    assert_eq!(e.verdict, Verdict::Promote, "{e:?}");
}

/// An endpoint with its pairs, most of them 5xx on both sides (the 5xx rule's, alike), has few
/// judged pairs: replay would bring more 5xx, not judged pairs, so its change is listed only.
#[test]
fn an_endpoint_with_its_pairs_but_few_judged_does_not_wait() {
    let more = [
        statuses("/flaky", 30, 503, Some(503), 503),
        statuses("/flaky", 2, 200, Some(200), 403),
    ]
    .concat();
    let e = judged_with(more, &cfg(), true);
    assert_eq!(e.verdict, Verdict::Promote, "{e:?}");
    assert_eq!(e.diffs[0].path, "$status");
}

/// Testing's missing answers (the mirror's timeouts) on a rare endpoint are no 5xx of the app's:
/// the rare-5xx rule does not wait over them (the overall 5xx rate still counts them).
#[test]
fn a_rare_endpoints_missing_answers_do_not_wait() {
    let timed_out = Pair {
        testing_status: None,
        testing_error: Some("timed out".to_string()),
        ..pair("/rare")
    };
    let busy = statuses("/b", 400, 200, Some(200), 200);
    let e = judged_with([busy, vec![timed_out; 2]].concat(), &cfg(), true);
    assert_eq!(e.verdict, Verdict::Promote, "{e:?}");
}

/// Server errors are the 5xx rule's and a vanished endpoint the endpoints rule's: no status
/// reason repeats them, while a 404 on a minority of an endpoint's pairs is a status change.
#[test]
fn errors_and_vanished_endpoints_are_left_to_their_own_rules() {
    let gone = statuses("/api/items/7", 20, 200, Some(200), 404);
    let broke = statuses("/pay", 30, 200, Some(200), 503);
    let some = [
        statuses("/shop", 8, 200, Some(200), 404),
        statuses("/shop", 12, 200, Some(200), 200),
    ];
    let r = rejected(&judged([gone, broke, some.concat()].concat()));
    assert!(
        r.contains("endpoint regression") && r.contains("5xx rate"),
        "{r}"
    );
    let changed: Vec<_> = r.lines().filter(|l| l.contains("status changed")).collect();
    assert!(
        changed.len() == 1 && changed[0].contains("GET /shop: 8 of 20 pairs"),
        "{r}"
    );
}

/// The scorecard's tally: changes against running and the secondary, examples by kind, and
/// replayed pairs (whose "running" is the secondary itself) left out of the noise.
#[test]
fn the_tally_counts_changes_noise_and_examples() {
    let p = |r, s: Option<u16>, t: Option<u16>| Pair {
        running_status: r,
        secondary_status: s,
        testing_status: t,
        ..pair("/x")
    };
    let mut pairs = vec![
        p(200, Some(200), Some(302)),
        p(200, Some(200), Some(302)),
        p(200, Some(401), Some(204)),
        p(200, Some(401), Some(401)),
        p(200, Some(200), Some(500)),
        p(200, Some(200), None),
        p(503, Some(200), Some(200)),
        p(200, Some(NO_ANSWER), Some(201)),
        Pair {
            replayed: Some(1),
            ..p(200, Some(200), Some(200))
        },
    ];
    let c = summarised(&pairs, 600).endpoints["GET /x"].statuses;
    assert_eq!(
        (c.judged, c.changed, c.noise_of, c.noise),
        (6, 4, 6, 2),
        "{c:?}"
    );
    assert_eq!(
        c.described(),
        "running 200, testing 302 (2 pairs); running 200, testing 204 (1 pair); running 200, testing 201 (1 pair)"
    );
    pairs.push(p(200, None, Some(418)));
    let c = summarised(&pairs, 600).endpoints["GET /x"].statuses;
    assert!(c.described().ends_with("other changes (1 pair)"), "{c:?}");
}

/// A build that adds a route (or a method) answers 2xx where running's version answered 404, 405
/// or 501: that is what a release is for, not a change to judge; a route it now refuses still is.
#[test]
fn a_route_new_on_testing_is_no_change() {
    let added = statuses("/api/v2/orders", 20, 404, Some(404), 200);
    let method = statuses("/api/items", 20, 405, Some(405), 204);
    let e = judged([added.clone(), method.clone()].concat());
    assert_eq!(e.verdict, Verdict::Promote, "{e:?}");
    let refused = statuses("/api/v1/orders", 20, 200, Some(200), 403);
    let r = rejected(&judged([added, method, refused].concat()));
    assert!(r.contains("status changed on GET /api/v1/orders"), "{r}");
}

/// A route new on testing behind authentication answers 401 or 403 to a caller without the
/// rights yet, where running's version answered 404, 405 or 501: still a new route, no change.
#[test]
fn a_new_route_behind_authentication_is_no_change() {
    let guarded = [
        statuses("/api/v2/admin", 20, 404, Some(404), 401),
        statuses("/api/v2/audit", 20, 405, Some(405), 403),
        statuses("/api/v2/export", 20, 501, Some(501), 403),
    ]
    .concat();
    let e = judged(guarded);
    assert_eq!(e.verdict, Verdict::Promote, "{e:?}");
    assert!(e.diffs.is_empty(), "{:?}", e.diffs);
}

/// The review's `once3-500`: a rare endpoint answering 500 on each of its 3 pairs (1 % overall,
/// under `MAX_5XX_DELTA`) is not promoted over: the verdict waits for its pairs, replayed.
#[test]
fn a_rare_endpoint_failing_on_its_few_pairs_waits_for_more() {
    let e = judged_with(statuses("/rare", 3, 200, Some(200), 500), &cfg(), true);
    assert!(
        matches!(&e.verdict, Verdict::Wait(w) if w.contains("5xx on GET /rare: testing 3 of 3 pairs")
            && w.contains("too few to judge")),
        "{e:?}"
    );
    assert_eq!(e.waiting_on, ["GET /rare"]);
}
