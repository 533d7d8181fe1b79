//! Low traffic: a service with a request every few seconds never reaches `MIN_MIRRORED` within
//! `STABLE_WINDOW`. The proxy records a bounded sample of what users asked ([`Recorder`]: the most
//! recent `REPLAY_KEEP` safe requests without a body, distinct by method, path and query, at most
//! one per [`RECORD_EVERY`] but at once for an endpoint the verdict waits on with nothing to
//! replay, in memory only since they may carry credentials), and while the
//! scorer wants it ([`ReplayWant`]: live pairs come too slowly, or the verdict waits on an
//! endpoint's pairs), [`run`] sends them through the mirror to testing and the secondary (never
//! running) at `REPLAY_RATE`, each at most `REPLAY_REPEAT` times per testing instance, or
//! `MIN_ENDPOINT_PAIRS` times for an endpoint the verdict waits on ([`repeat_cap`]). Testing is
//! judged against the secondary for those pairs.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName};
use http::uri::PathAndQuery;
use http::{Method, StatusCode};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::mirror::{MirrorJob, MirrorQueue};
use super::Routes;
use crate::config::Config;
use crate::instance::InstanceId;
use crate::score::{ReplayLink, ReplayWant, Unreplayable};

/// Marks a replayed copy (besides the mirror's own mark), so the app and its logs can tell it
/// from a copy of a live request.
pub static REPLAY_HEADER: HeaderName = HeaderName::from_static("x-understudy-replay");

/// At most one request is recorded per this interval: at high traffic the user path pays one
/// coarse clock read and one atomic load, and the sample still follows what users ask.
pub const RECORD_EVERY: Duration = Duration::from_millis(50);

/// One recorded request, as the proxy sent it to running (less hop-by-hop headers).
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Stable while the same method, path and query is recorded again: what `REPLAY_REPEAT`
    /// counts, and how the verdict counts distinct recorded requests.
    pub serial: u64,
    /// GET or HEAD.
    pub method: Method,
    /// Path and query.
    pub path_and_query: PathAndQuery,
    /// The user's headers.
    pub headers: HeaderMap,
    /// Its endpoint as the scorer names it (method and folded path): how the requests of an
    /// endpoint the verdict waits on are found.
    endpoint: String,
    /// Times replayed to the testing instance in `Kept::uses_for`.
    uses: u32,
}

/// What [`Recorder::pick`] found.
#[derive(Debug)]
pub struct Picked {
    /// The next request to replay, counted as used; `None` when none is left for what is wanted.
    pub request: Option<Recorded>,
    /// The wanted endpoints with no kept request left under its cap (before this pick).
    pub unreplayable: BTreeSet<String>,
}

/// Times one recorded request may be replayed to one testing instance: `REPLAY_REPEAT`, so a
/// single URL cannot make the evidence; for an endpoint the verdict waits on, at least
/// `MIN_ENDPOINT_PAIRS`, so even one URL asked once gets that endpoint the pairs it needs.
pub fn repeat_cap(repeat: u32, min_endpoint_pairs: u64, waited_on: bool) -> u32 {
    if waited_on {
        repeat.max(u32::try_from(min_endpoint_pairs).unwrap_or(u32::MAX))
    } else {
        repeat
    }
}

/// The recorded requests, newest last.
#[derive(Default)]
struct Kept {
    requests: VecDeque<Recorded>,
    /// At most this many are kept (`REPLAY_KEEP`, at least 1; changed by a reload).
    keep: usize,
    next_serial: u64,
    /// The testing instance the `uses` counts are for; another one starts them afresh.
    uses_for: Option<InstanceId>,
}

/// The bounded in-memory sample of recent safe requests (never written to disk).
pub struct Recorder {
    /// `REPLAY` is not `off`: with it off nothing is kept (requests may carry credentials).
    on: AtomicBool,
    /// Milliseconds on the coarse clock before which nothing more is recorded.
    next_ms: AtomicU64,
    /// `kept.requests.len()`, set under the lock: read by metrics without taking it.
    len: AtomicUsize,
    kept: Mutex<Kept>,
    /// Endpoints the verdict waits on with nothing left to replay: a user's request to one is
    /// kept at once, whatever [`RECORD_EVERY`] says, since on a busy service a rare endpoint's
    /// request would otherwise almost never be the one recorded.
    missing: Mutex<BTreeSet<String>>,
    /// `missing` is not empty: all the user path reads while nothing is missing.
    wanting: AtomicBool,
    /// [`crate::score::key_hash`] of each missing endpoint (0: none), read by the user path
    /// without the lock; only a request whose endpoint hashes to one takes it.
    hashes: [AtomicU64; MISSING_SLOTS],
}

/// Endpoints at most recorded at once for the verdict's waiting (the first, in key order).
const MISSING_SLOTS: usize = 8;

impl Recorder {
    /// A recorder keeping the `keep` most recent distinct requests.
    pub fn new(keep: usize) -> Recorder {
        Recorder {
            on: AtomicBool::new(true),
            next_ms: AtomicU64::new(0),
            len: AtomicUsize::new(0),
            kept: Mutex::new(Kept {
                keep: keep.max(1),
                ..Kept::default()
            }),
            missing: Mutex::new(BTreeSet::new()),
            wanting: AtomicBool::new(false),
            hashes: Default::default(),
        }
    }

    /// The endpoints the verdict waits on with nothing left to replay ([`Picked::unreplayable`]),
    /// whose next request is recorded whatever [`RECORD_EVERY`] says: only GET and HEAD ones
    /// (nothing else is recorded), at most [`MISSING_SLOTS`].
    pub fn set_missing(&self, endpoints: &BTreeSet<String>) {
        let recordable = |k: &&String| k.starts_with("GET /") || k.starts_with("HEAD /");
        let wanted: BTreeSet<String> = endpoints
            .iter()
            .filter(recordable)
            .take(MISSING_SLOTS)
            .cloned()
            .collect();
        let mut missing = self.missing.lock().unwrap_or_else(|p| p.into_inner());
        if *missing != wanted {
            *missing = wanted;
            self.publish(&missing);
        }
    }

    /// Show `missing` to the user path: its hashes, and whether there is any.
    fn publish(&self, missing: &BTreeSet<String>) {
        let mut keys = missing.iter();
        for slot in &self.hashes {
            let h = keys.next().map_or(0, |k| crate::score::key_hash(k));
            slot.store(h, Ordering::Relaxed);
        }
        self.wanting.store(!missing.is_empty(), Ordering::Relaxed);
    }

    /// Whether some endpoint is missing: all a request pays to ask [`Recorder::wanted`] while none is.
    pub fn wanting(&self) -> bool {
        self.wanting.load(Ordering::Relaxed)
    }

    /// Whether a `method` request for `path` is of an endpoint the verdict waits on with nothing
    /// left to replay; it is then no longer missing (the replay loop names it again while it
    /// still is). Other requests pay a hash of their endpoint and a few atomic loads, no lock.
    pub fn wanted(&self, method: &Method, path: &str) -> bool {
        if !self.wanting.load(Ordering::Relaxed) || !self.on.load(Ordering::Relaxed) {
            return false;
        }
        let h = crate::score::endpoint_hash(method, path);
        if !self.hashes.iter().any(|s| s.load(Ordering::Relaxed) == h) {
            return false;
        }
        let mut missing = self.missing.lock().unwrap_or_else(|p| p.into_inner());
        let before = missing.len();
        missing.retain(|key| !crate::score::endpoint_is(method, path, key));
        if missing.len() == before {
            return false; // another endpoint with the same hash
        }
        self.publish(&missing);
        true
    }

    /// Keep at most `keep` (`REPLAY_KEEP` after a reload): shrinking forgets the oldest and gives
    /// their memory back, the most recent stay with their serials and use counts.
    pub fn set_keep(&self, keep: usize) {
        let keep = keep.max(1);
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.keep == keep {
            return;
        }
        kept.keep = keep;
        let over = kept.requests.len().saturating_sub(keep);
        if over > 0 {
            kept.requests.drain(..over);
            kept.requests.shrink_to(keep);
        }
        self.len.store(kept.requests.len(), Ordering::Relaxed);
    }

    /// Whether a request may be recorded now (at most one per [`RECORD_EVERY`]); cheap when not.
    pub fn due(&self) -> bool {
        if !self.on.load(Ordering::Relaxed) {
            return false;
        }
        let now = u64::try_from(super::coarse::now().as_millis()).unwrap_or(u64::MAX);
        let next = self.next_ms.load(Ordering::Relaxed);
        now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now + RECORD_EVERY.as_millis() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// Keep a request (only call when [`Recorder::due`] said so); the same method, path and
    /// query seen again moves to the newest place, keeping its serial and use count.
    pub fn record(&self, method: Method, path_and_query: PathAndQuery, headers: HeaderMap) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let same = kept
            .requests
            .iter()
            .position(|r| r.method == method && r.path_and_query == path_and_query);
        let (serial, uses, endpoint) = match same.and_then(|i| kept.requests.remove(i)) {
            Some(old) => (old.serial, old.uses, old.endpoint),
            None => {
                kept.next_serial += 1;
                let endpoint = crate::score::endpoint_key(&method, path_and_query.path());
                (kept.next_serial, 0, endpoint)
            }
        };
        while kept.requests.len() >= kept.keep {
            kept.requests.pop_front();
        }
        kept.requests.push_back(Recorded {
            serial,
            method,
            path_and_query,
            headers,
            endpoint,
            uses,
        });
        self.len.store(kept.requests.len(), Ordering::Relaxed);
    }

    /// Record (`REPLAY=auto`) or not (`off`: what was kept is forgotten at once).
    pub fn set_on(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
        if !on {
            let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            kept.requests = VecDeque::new();
            self.len.store(0, Ordering::Relaxed);
        }
    }

    /// Requests kept now; takes no lock (metrics read it at every scrape).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next request to replay to `want.testing`: among those of the endpoints the verdict
    /// waits on, else (only when `want.traffic`) among all, the least replayed one (newest first
    /// among equals) still under its [`repeat_cap`], counted as used.
    pub fn pick(&self, want: &ReplayWant, repeat: u32, min_endpoint_pairs: u64) -> Picked {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.uses_for != Some(want.testing) {
            kept.uses_for = Some(want.testing);
            kept.requests.iter_mut().for_each(|r| r.uses = 0);
        }
        let waited = |r: &Recorded| want.endpoints.contains(&r.endpoint);
        let left = |r: &Recorded| r.uses < repeat_cap(repeat, min_endpoint_pairs, waited(r));
        let mut unreplayable = want.endpoints.clone();
        for r in kept.requests.iter().filter(|r| left(r)) {
            unreplayable.remove(&r.endpoint);
        }
        let least_used = |only_waited: bool| {
            let candidates = kept.requests.iter().enumerate().rev();
            candidates
                .filter(|(_, r)| left(r) && (!only_waited || waited(r)))
                .min_by_key(|(_, r)| r.uses)
                .map(|(i, _)| i)
        };
        let next = least_used(true).or_else(|| want.traffic.then(|| least_used(false))?);
        let request = next.map(|i| {
            let r = &mut kept.requests[i];
            r.uses += 1;
            r.clone()
        });
        Picked {
            request,
            unreplayable,
        }
    }
}

/// Send recorded requests to testing and the secondary while the scorer wants it (`link.want`)
/// for the testing instance now routed and a secondary runs, at `REPLAY_RATE` (read live from
/// `config`), telling the scorer which endpoints it waits on have nothing left to replay
/// (`link.unreplayable`). Copies go through the mirror's queue; a full queue drops the replay,
/// never a user's copy. Runs until `cancel`.
pub async fn run(
    recorder: Arc<Recorder>,
    queue: MirrorQueue,
    stats: Arc<super::ProxyStats>,
    routes: watch::Receiver<Arc<Routes>>,
    link: ReplayLink,
    mut config: watch::Receiver<Arc<Config>>,
    cancel: CancellationToken,
) {
    let ReplayLink {
        want: mut wanted,
        unreplayable,
    } = link;
    let mut keep = None;
    loop {
        let (replay, min_endpoint_pairs) = {
            let c = config.borrow_and_update();
            (c.diff.replay, c.score.min_endpoint_pairs)
        };
        recorder.set_on(replay.on);
        // A reloaded `REPLAY_KEEP` takes effect here, within a pause (at most a second); the
        // recorder's lock is taken only when it changed.
        if keep != Some(replay.keep) {
            recorder.set_keep(replay.keep);
            keep = Some(replay.keep);
        }
        let Some(want) = wanted.borrow_and_update().clone() else {
            recorder.set_missing(&BTreeSet::new());
            unreplayable.send_if_modified(|u| std::mem::take(u) != Unreplayable::default());
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = wanted.changed() => if changed.is_err() { return } else { continue },
                changed = config.changed() => if changed.is_err() { return } else { continue },
            }
        };
        let next = next_job(&recorder, &routes, &want, replay.repeat, min_endpoint_pairs);
        if next.is_none() {
            recorder.set_missing(&BTreeSet::new()); // not for the testing routed now
        }
        if let Some((job, none_left)) = next {
            recorder.set_missing(&none_left.endpoints);
            unreplayable.send_if_modified(|u| {
                let changed = *u != none_left;
                *u = none_left;
                changed
            });
            // A full queue drops this replay; it was counted as used, which only bounds it more.
            if job.is_some_and(|job| queue.offer(job)) {
                stats.replayed.fetch_add(1, Ordering::Relaxed);
            }
        }
        let pause = Duration::from_secs(1) / replay.rate.max(1);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// The copy of the next recorded request for `want.testing` (if any is left) and the wanted
/// endpoints with nothing left to replay, when that testing instance and a secondary are routed.
fn next_job(
    recorder: &Recorder,
    routes: &watch::Receiver<Arc<Routes>>,
    want: &ReplayWant,
    repeat: u32,
    min_endpoint_pairs: u64,
) -> Option<(Option<MirrorJob>, Unreplayable)> {
    let (target, secondary) = {
        let r = routes.borrow();
        (r.testing.clone()?, r.secondary.clone()?)
    };
    if target.id != want.testing {
        return None;
    }
    let picked = recorder.pick(want, repeat, min_endpoint_pairs);
    let job = picked.request.map(|r| MirrorJob {
        target,
        method: r.method,
        path_and_query: Some(r.path_and_query),
        headers: r.headers,
        body: Bytes::new(),
        running_status: StatusCode::OK,
        running_latency: Duration::ZERO,
        running_body: None,
        diff: None,
        secondary: Some(secondary),
        replay: Some(r.serial),
    });
    let none_left = Unreplayable {
        testing: Some(want.testing),
        endpoints: picked.unreplayable,
    };
    Some((job, none_left))
}

#[cfg(test)]
mod tests {
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
        let n4 = ("/p?n=4".to_string(), newest.serial - 1);
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
    fn the_requests_of_endpoints_the_verdict_waits_on_go_first_up_to_min_endpoint_pairs() {
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
            picked, ["/shop/rare?id=1"; 5],
            "MIN_ENDPOINT_PAIRS, not REPLAY_REPEAT"
        );
        // Traffic wanted too: the others follow, at REPLAY_REPEAT each.
        let both = want(1, true, &["GET /shop/rare"]);
        let others = std::iter::from_fn(|| r.pick(&both, 3, 5).request).count();
        assert_eq!(others, 6, "two other URLs, 3 times each");
        // A larger REPLAY_REPEAT stands for waited endpoints too; a new testing starts afresh.
        let rare = want(2, false, &["GET /shop/rare"]);
        let n = std::iter::from_fn(|| r.pick(&rare, 7, 5).request).count();
        assert_eq!(n, 7);
        assert_eq!(repeat_cap(3, 5, false), 3);
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
            .map(|x| x.path_and_query.to_string())
            .collect();
        assert_eq!(
            picked,
            ["/items/8", "/items/7?x=1", "/items/8", "/items/7?x=1"]
        );
    }
}
