//! The recorder's bounds (requests, bytes, uses per testing instance) and its picking order.

use super::*;

fn pq(s: &str) -> PathAndQuery {
    PathAndQuery::try_from(s).unwrap()
}

/// Replay wanted for `testing` because live pairs come too slowly, and for the verdict's
/// waiting on `endpoints`.
fn want(testing: u64, traffic: bool, endpoints: &[&str]) -> ReplayWant {
    ReplayWant {
        testing: InstanceId(testing),
        traffic,
        endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
    }
}

/// The next pick for traffic alone (no endpoint waited on), at `repeat`.
fn pick(r: &Recorder, testing: u64, repeat: u32) -> Option<Recorded> {
    r.pick(&want(testing, true, &[]), repeat, 5).request
}

/// The newest distinct requests are kept, a repeated one keeps its serial, and each is
/// picked at most `repeat` times per testing instance (afresh for the next one).
#[test]
fn recorder_keeps_distinct_recent_requests_and_bounds_their_use() {
    let r = Recorder::new(3);
    for p in ["/a?n=1", "/b?n=2", "/a?n=1", "/c?n=3", "/d?n=4"] {
        r.record(Method::GET, pq(p), HeaderMap::new());
    }
    assert_eq!(r.len(), 3, "bounded by REPLAY_KEEP");
    let mut picked = Vec::new();
    while let Some(x) = pick(&r, 1, 2) {
        picked.push(x.path_and_query.to_string());
    }
    assert_eq!(picked.len(), 6, "3 requests × REPLAY_REPEAT 2: {picked:?}");
    assert!(!picked.iter().any(|p| p == "/b?n=2"), "the oldest went");
    assert!(pick(&r, 2, 2).is_some(), "a new testing starts afresh");
}

/// A smaller REPLAY_KEEP keeps the most recent requests with their serials and use counts
/// (a larger one then lets more in); the count metrics read follows.
#[test]
fn resizing_keeps_the_most_recent_requests() {
    let r = Recorder::new(5);
    for n in 1..=5 {
        r.record(Method::GET, pq(&format!("/p?n={n}")), HeaderMap::new());
    }
    let newest = pick(&r, 1, 9).unwrap();
    assert_eq!(newest.path_and_query, "/p?n=5");
    r.set_keep(2);
    assert_eq!(r.len(), 2);
    let mut left = Vec::new();
    while let Some(x) = pick(&r, 1, 2) {
        left.push((x.path_and_query.to_string(), x.serial));
    }
    left.sort();
    let n5 = ("/p?n=5".to_string(), newest.serial);
    let n4 = ("/p?n=4".to_string(), serial_of(&Method::GET, &pq("/p?n=4")));
    assert_eq!(
        left,
        [n4.clone(), n4, n5],
        "the two newest stay, with their serials; /p?n=5 keeps its use"
    );
    r.set_keep(0);
    assert_eq!(r.len(), 1, "at least one is kept");
    r.set_keep(3);
    for n in 6..=9 {
        r.record(Method::GET, pq(&format!("/p?n={n}")), HeaderMap::new());
    }
    assert_eq!(r.len(), 3, "grown again, bounded by the new size");
    r.set_on(false);
    assert_eq!(r.len(), 0);
}

/// At most one request per RECORD_EVERY is due; with REPLAY=off none, and what was kept is
/// forgotten.
#[test]
fn recording_is_rate_limited_and_off_keeps_nothing() {
    let r = Recorder::new(10);
    assert!(r.due());
    assert!(!r.due(), "the second at once is not due");
    r.record(Method::GET, pq("/a?token=x"), HeaderMap::new());
    r.set_on(false);
    assert!(r.is_empty(), "forgotten");
    r.next_ms.store(0, Ordering::Relaxed);
    assert!(!r.due(), "off records nothing, even when one would be due");
}

/// On a busy service the one request per RECORD_EVERY is rarely a rare endpoint's: one the
/// verdict waits on with nothing to replay is recorded at its next request, once per time
/// it is named missing; nothing is wanted with REPLAY=off or once nothing is missing.
#[test]
fn a_request_of_an_endpoint_missing_for_the_verdict_is_recorded_at_once() {
    let r = Recorder::new(10);
    assert!(r.due(), "a busy service's request took this RECORD_EVERY");
    assert!(!r.wanting());
    assert!(!r.wanted(&Method::GET, "/shop/rare"), "nothing missing");
    let missing: BTreeSet<String> = ["GET /shop/rare".to_string()].into();
    r.set_missing(&missing);
    assert!(r.wanting());
    assert!(!r.wanted(&Method::GET, "/shop/books"), "another endpoint");
    assert!(!r.wanted(&Method::HEAD, "/shop/rare"), "another method");
    assert!(r.wanted(&Method::GET, "/shop/rare"));
    assert!(!r.wanting(), "taken: once per time it is named");
    assert!(!r.wanted(&Method::GET, "/shop/rare"));
    r.set_missing(&missing);
    r.set_on(false);
    assert!(
        !r.wanted(&Method::GET, "/shop/rare"),
        "REPLAY=off keeps nothing"
    );
    r.set_on(true);
    r.set_missing(&BTreeSet::new());
    assert!(!r.wanting());
    // Endpoints no request is ever recorded for never make the user path look.
    let never: BTreeSet<String> = ["OPTIONS /x", "POST /shop/cart", "(other endpoints)"]
        .map(String::from)
        .into();
    r.set_missing(&never);
    assert!(!r.wanting(), "nothing recordable is missing");
}

/// The requests of an endpoint the verdict waits on go first, each up to MIN_ENDPOINT_PAIRS
/// times (REPLAY_REPEAT when larger); with live traffic enough nothing else is replayed, and
/// a waited endpoint with nothing recorded (a POST) or nothing left is said unreplayable.
#[test]
fn the_requests_of_endpoints_the_verdict_waits_on_go_first_up_to_the_pairs_they_need() {
    let r = Recorder::new(10);
    for p in ["/shop/rare?id=1", "/shop/books?n=1", "/shop/books?n=2"] {
        r.record(Method::GET, pq(p), HeaderMap::new());
    }
    let rare = want(1, false, &["GET /shop/rare", "POST /shop/cart"]);
    let mut picked = Vec::new();
    loop {
        let p = r.pick(&rare, 3, 5);
        let Some(x) = p.request else {
            let none_left = p.unreplayable.into_iter().collect::<Vec<_>>();
            assert_eq!(none_left, ["GET /shop/rare", "POST /shop/cart"]);
            break;
        };
        assert_eq!(
            p.unreplayable.into_iter().collect::<Vec<_>>(),
            ["POST /shop/cart"],
            "never recorded"
        );
        picked.push(x.path_and_query.to_string());
    }
    assert_eq!(
        picked, ["/shop/rare?id=1"; 200],
        "as many as its latency judged alone needs, not REPLAY_REPEAT"
    );
    // Traffic wanted too: the others follow, at REPLAY_REPEAT each.
    let both = want(1, true, &["GET /shop/rare"]);
    let others = std::iter::from_fn(|| r.pick(&both, 3, 5).request).count();
    assert_eq!(others, 6, "two other URLs, 3 times each");
    // A larger REPLAY_REPEAT stands for waited endpoints too; a new testing starts afresh.
    let rare = want(2, false, &["GET /shop/rare"]);
    let n = std::iter::from_fn(|| r.pick(&rare, 300, 5).request).count();
    assert_eq!(n, 300);
    assert_eq!(repeat_cap(3, 5, false), 3);
    assert_eq!(repeat_cap(3, 5, true), 200, "4 × (30 past its first 20)");
    let past = "4 × (MIN_ENDPOINT_PAIRS past its first 20)";
    assert_eq!(repeat_cap(3, 40, true), 240, "{past}");
    assert_eq!(repeat_cap(3, u64::MAX, true), u32::MAX);
}

/// A waited endpoint's URLs are picked in turn (least replayed first), and the endpoint is
/// matched by its folded path whatever the query.
#[test]
fn a_waited_endpoints_urls_are_replayed_in_turn() {
    let r = Recorder::new(10);
    for p in ["/items/7?x=1", "/items/8", "/other"] {
        r.record(Method::GET, pq(p), HeaderMap::new());
    }
    let items = want(1, false, &["GET /items/{n}"]);
    let picked: Vec<String> = std::iter::from_fn(|| r.pick(&items, 1, 2).request)
        .take(4)
        .map(|x| x.path_and_query.to_string())
        .collect();
    assert_eq!(
        picked,
        ["/items/8", "/items/7?x=1", "/items/8", "/items/7?x=1"]
    );
    let rest = std::iter::from_fn(|| r.pick(&items, 1, 2).request).count();
    assert_eq!(
        rest,
        2 * 200 - 4,
        "each URL up to the pairs a wait may need"
    );
}

/// Headers of about `bytes` bytes in all, in headers of 1000 bytes (the review's client).
fn padded(bytes: usize) -> HeaderMap {
    let mut h = HeaderMap::new();
    for i in 0..bytes.div_ceil(1000) {
        let name = HeaderName::try_from(format!("x-pad-{i}")).unwrap();
        h.insert(name, "a".repeat(1000).parse().unwrap());
    }
    h
}

/// Memory is bounded by bytes, not only by REPLAY_KEEP: requests with large heads fill at most
/// MAX_RECORDED_BYTES (the oldest forgotten past it), and one over MAX_RECORDED_REQUEST (the
/// review's 60 KiB of headers) is not recorded at all.
#[test]
fn the_recorder_is_bounded_by_bytes_and_a_huge_head_is_not_recorded() {
    let r = Recorder::new(100_000);
    for n in 0..1000 {
        r.record(Method::GET, pq(&format!("/r/{n}")), padded(60_000));
    }
    assert_eq!(r.len(), 0, "60 KiB of headers is over MAX_RECORDED_REQUEST");
    assert_eq!(r.bytes(), 0);
    let head = padded(12_000);
    let one = recorded_size(&pq("/r/1000"), &head);
    assert!(one <= MAX_RECORDED_REQUEST, "{one}");
    for n in 0..2000 {
        r.record(Method::GET, pq(&format!("/r/{n}")), head.clone());
    }
    assert!(r.bytes() <= MAX_RECORDED_BYTES, "{} bytes", r.bytes());
    assert_eq!(r.len(), MAX_RECORDED_BYTES / one, "as many as fit");
    let newest = pick(&r, 1, 1).unwrap();
    assert_eq!(newest.path_and_query, "/r/1999", "the newest stay");
    // Small requests take the places of the oldest large ones, and the count follows.
    for n in 0..10 {
        r.record(Method::GET, pq(&format!("/s/{n}")), HeaderMap::new());
    }
    assert!(r.bytes() <= MAX_RECORDED_BYTES);
    r.set_keep(3);
    assert_eq!(r.len(), 3);
    let three = 3 * recorded_size(&pq("/s/0"), &HeaderMap::new());
    assert_eq!(r.bytes(), three, "what is forgotten is no longer counted");
    r.set_on(false);
    assert_eq!(r.bytes(), 0);
}

/// REPLAY_REPEAT follows the request, not its place in the recorder: with REPLAY_KEEP=2 and users
/// cycling /a /b /c /d (each forgotten and recorded again), each is replayed at most REPLAY_REPEAT
/// times to one testing instance, keeps its serial, and a new testing instance starts afresh.
#[test]
fn replay_repeat_holds_for_a_request_forgotten_and_recorded_again() {
    let r = Recorder::new(2);
    let mut replays: HashMap<String, u32> = HashMap::new();
    let mut serials: HashMap<String, BTreeSet<u64>> = HashMap::new();
    for _ in 0..15 {
        for p in ["/a", "/b", "/c", "/d"] {
            r.record(Method::GET, pq(p), HeaderMap::new());
            while let Some(x) = pick(&r, 1, 3) {
                let p = x.path_and_query.to_string();
                *replays.entry(p.clone()).or_default() += 1;
                serials.entry(p).or_default().insert(x.serial);
            }
        }
    }
    for p in ["/a", "/b", "/c", "/d"] {
        assert_eq!(replays[p], 3, "REPLAY_REPEAT=3 for {p}: {replays:?}");
        assert_eq!(serials[p].len(), 1, "one serial for {p}: {serials:?}");
    }
    r.record(Method::GET, pq("/a"), HeaderMap::new());
    assert!(pick(&r, 2, 3).is_some(), "a new testing starts afresh");
}

/// Requests counted for one testing instance are bounded (MAX_COUNTED): past it, a request not
/// counted yet is not replayed (its count could not be kept), while counted ones still are.
#[test]
fn uses_are_counted_in_bounded_memory() {
    let r = Recorder::new(10);
    r.record(Method::GET, pq("/counted"), HeaderMap::new());
    assert!(pick(&r, 1, 3).is_some());
    {
        let mut kept = r.kept.lock().unwrap();
        for n in 0..MAX_COUNTED as u64 {
            kept.uses.insert(n.wrapping_mul(0x9e37_79b9_7f4a_7c15), 1);
        }
    }
    r.record(Method::GET, pq("/new"), HeaderMap::new());
    let left: Vec<String> = std::iter::from_fn(|| pick(&r, 1, 3))
        .map(|x| x.path_and_query.to_string())
        .collect();
    assert_eq!(left, ["/counted", "/counted"]);
    assert!(r.kept.lock().unwrap().uses.len() <= MAX_COUNTED + 1);
}

/// Replays take at most a quarter of MIRROR_CONCURRENCY places (at least one).
#[test]
fn replays_take_a_quarter_of_the_mirrors_places() {
    assert_eq!(replays_in_flight(1), 1);
    assert_eq!(replays_in_flight(4), 1);
    assert_eq!(replays_in_flight(64), 16);
}

/// A mirror with no room for replays for BUSY_GIVES_UP makes the waited endpoints unreplayable
/// (the verdict then judges what it has): a moment of room starts the count again.
#[tokio::test(start_paused = true)]
async fn a_mirror_busy_for_long_gives_the_replays_up_and_room_starts_again() {
    let mut since = None;
    assert!(!busy_for_long(&mut since, true));
    tokio::time::advance(BUSY_GIVES_UP - Duration::from_millis(1)).await;
    assert!(!busy_for_long(&mut since, true));
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(busy_for_long(&mut since, true));
    assert!(!busy_for_long(&mut since, false), "room: not busy");
    assert!(!busy_for_long(&mut since, true), "counted again from now");
}

/// Once every recorded request was replayed its `REPLAY_REPEAT` times, the scorer is told replay
/// has nothing more to offer for traffic (so its wait can say so); not before, nor for another
/// testing instance.
#[test]
fn the_scorer_is_told_when_replay_for_traffic_has_run_out() {
    use crate::proxy::upstream::{Routes, Upstream};
    let up = |id: u64| {
        let v = semver::Version::new(1, 0, 0);
        Arc::new(Upstream::new(InstanceId(id), v, "127.0.0.1", 9).unwrap())
    };
    let routes = Routes {
        testing: Some(up(1)),
        secondary: Some(up(2)),
        ..Default::default()
    };
    let (_tx, routes) = watch::channel(Arc::new(routes));
    let slot = || ReplaySlot(Arc::new(AtomicUsize::new(0)));
    let traffic = want(1, true, &[]);
    // Nothing recorded yet (a fresh start): nothing is spent either.
    let empty = Recorder::new(10);
    let (job, told) = next_job(&empty, &routes, &traffic, (2, 5), slot()).unwrap();
    assert!(job.is_none() && !told.traffic_exhausted, "{told:?}");
    let r = Recorder::new(10);
    r.record(Method::GET, pq("/a"), HeaderMap::new());
    let next = |w: &ReplayWant| next_job(&r, &routes, w, (2, 5), slot()).unwrap();
    for _ in 0..2 {
        let (job, told) = next(&traffic);
        assert!(job.is_some() && !told.traffic_exhausted);
    }
    let (job, told) = next(&traffic);
    assert!(job.is_none());
    assert!(told.exhausted_for(InstanceId(1)), "{told:?}");
    assert!(!told.exhausted_for(InstanceId(3)));
}
