//! The scorecard's tests: pairs classified, replays counted, the endpoint cap and folding.

use super::*;
use crate::score::test_support::{pair, watch_instance_1};

#[test]
fn record_classifies_pairs() {
    let mut c = Scorecard::new(watch_instance_1(), 0, Instant::now());
    let p = |path: &str, r, t| Pair {
        running_status: r,
        testing_status: t,
        ..pair(path)
    };
    c.record(&p("/items/17", 200, Some(404)), Instant::now());
    c.record(&p("/items/18", 200, Some(500)), Instant::now());
    c.record(&p("/x", 404, Some(404)), Instant::now());
    c.record(&p("/y", 200, None), Instant::now());
    c.record(
        &Pair {
            testing: InstanceId(2),
            ..p("/z", 200, Some(500))
        },
        Instant::now(),
    );
    assert_eq!(c.pairs, 4);
    let items = &c.endpoints["GET /items/{n}"];
    assert_eq!(
        (items.pairs, items.missing_on_testing, items.testing_5xx),
        (2, 1, 1)
    );
    assert_eq!(c.endpoints["GET /x"].missing_on_testing, 0);
    assert_eq!(c.endpoints["GET /y"].testing_5xx, 1);
}

/// Replayed pairs are counted apart, with the distinct recorded requests they came from, and
/// add no sample of running's latency (running never answered them).
#[test]
fn replayed_pairs_are_counted_with_their_recorded_requests() {
    let mut c = Scorecard::new(watch_instance_1(), 0, Instant::now());
    let p = |replayed| Pair {
        secondary_latency: Some(Duration::from_millis(1)),
        replayed,
        ..pair("/shop/books")
    };
    for r in [None, Some(7), Some(7), Some(8)] {
        c.record(&p(r), Instant::now());
    }
    assert_eq!((c.pairs, c.replayed, c.recorded.len()), (4, 3, 2));
    assert_eq!(c.running_latency.len(), 1, "only the live pair's");
    assert_eq!(
        c.secondary_answered,
        4 + 3,
        "a replay asks the secondary twice"
    );
}

#[test]
fn endpoints_past_the_cap_share_one_row_and_known_ones_keep_counting() {
    let mut c = Scorecard::new(watch_instance_1(), 0, Instant::now());
    c.limit_endpoints(3);
    let p = |path: &str| Pair {
        testing_status: Some(500),
        diffs: Some(Vec::new()),
        ..pair(path)
    };
    for i in 0..1000 {
        c.record(&p(&format!("/random/word{i}x")), Instant::now());
        c.record(&p("/api/items"), Instant::now());
    }
    assert_eq!(c.endpoints.len(), 4, "{:?}", c.endpoints.keys());
    assert_eq!(c.endpoints["GET /api/items"].testing_5xx, 1000);
    assert_eq!(c.endpoints[OTHER_ENDPOINTS].pairs, 998);
    assert_eq!(c.endpoint_overflow, 998);
    // The differences' tally keeps the same rows, the shared one included.
    assert_eq!(c.diffs.endpoints.len(), 4);
    assert_eq!(c.diffs.endpoints[OTHER_ENDPOINTS].pairs, 998);
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

proptest::proptest! {
    /// `endpoint_is` agrees with comparing `endpoint_key`s, and `endpoint_hash` with hashing
    /// the key, for any path (segments that
    /// fold and segments that do not) and any key.
    #[test]
    fn endpoint_is_agrees_with_the_key(
        segs in proptest::collection::vec("[0-9]{1,3}|[a-z]{1,4}|[a-f0-9]{8}|3f2b8c1e-1111-2222-3333-444455556666|", 0..5),
        other in proptest::collection::vec("[0-9]{1,3}|[a-z]{1,4}|", 0..5),
        head in proptest::bool::ANY,
    ) {
        let method = if head { Method::HEAD } else { Method::GET };
        let path = segs.join("/");
        let key = endpoint_key(&method, &path);
        proptest::prop_assert!(endpoint_is(&method, &path, &key));
        proptest::prop_assert!(!endpoint_is(&Method::POST, &path, &key));
        let other_key = endpoint_key(&Method::GET, &other.join("/"));
        proptest::prop_assert_eq!(endpoint_is(&method, &path, &other_key), key == other_key);
        proptest::prop_assert_eq!(endpoint_hash(&method, &path), key_hash(&key));
    }
}
