//! Low traffic: a service with a request every few seconds never reaches `MIN_MIRRORED` within
//! `STABLE_WINDOW`. The proxy records a bounded sample of what users asked ([`Recorder`]: the most
//! recent `REPLAY_KEEP` safe requests without a body, distinct by method, path and query, at most
//! one per [`RECORD_EVERY`] but at once for an endpoint the verdict waits on with nothing to
//! replay, in memory only since they may carry credentials), and while the
//! scorer wants it ([`ReplayWant`]: live pairs come too slowly, or the verdict waits on an
//! endpoint's pairs), [`run`] sends them through the mirror to testing and the secondary (never
//! running) at `REPLAY_RATE`, each at most `REPLAY_REPEAT` times per testing instance, or as
//! many times as an endpoint the verdict waits on needs pairs ([`repeat_cap`]). Testing is
//! judged against the secondary for those pairs.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
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
use crate::score::{replays_to_judge_alone, ReplayLink, ReplayWant, Unreplayable};

/// Marks a replayed copy (besides the mirror's own mark), so the app and its logs can tell it
/// from a copy of a live request.
pub static REPLAY_HEADER: HeaderName = HeaderName::from_static("x-understudy-replay");

/// At most one request is recorded per this interval: at high traffic the user path pays one
/// coarse clock read and one atomic load, and the sample still follows what users ask.
pub const RECORD_EVERY: Duration = Duration::from_millis(50);

/// All recorded requests together are counted at most this many bytes ([`recorded_size`]): past
/// it the oldest are forgotten, whatever `REPLAY_KEEP` allows, so one client sending large heads
/// cannot grow understudy's memory by `REPLAY_KEEP` times its largest head.
pub const MAX_RECORDED_BYTES: usize = 4 << 20;

/// A request counted more than this ([`recorded_size`]: mostly its headers, such as large
/// cookies) is not recorded at all: replay is a sample, and such a head would crowd out many.
pub const MAX_RECORDED_REQUEST: usize = 16 << 10;

/// Distinct requests whose replays to one testing instance are counted for `REPLAY_REPEAT`: past
/// it no request not counted yet is replayed to that instance (the count must hold, and this many
/// distinct replays is far more evidence than any verdict waits for). About 16 bytes each.
pub const MAX_COUNTED: usize = 1 << 16;

/// Bytes a recorded request is counted for its headers besides their names and values (the map's
/// own bookkeeping), and for itself besides its path.
const HEADER_OVERHEAD: usize = 64;
const REQUEST_OVERHEAD: usize = 128;

/// The bytes `path_and_query` and `headers` are counted for against [`MAX_RECORDED_BYTES`] and
/// [`MAX_RECORDED_REQUEST`]: their text plus an estimate of the memory holding them.
pub fn recorded_size(path_and_query: &PathAndQuery, headers: &HeaderMap) -> usize {
    let heads: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + HEADER_OVERHEAD)
        .sum();
    REQUEST_OVERHEAD + path_and_query.as_str().len() + heads
}

/// What identifies a request across recordings (method, path and query): its serial, stable when
/// it is forgotten and recorded again, so `REPLAY_REPEAT` and the count of distinct recorded
/// requests follow the request, not its place in the recorder.
fn serial_of(method: &Method, path_and_query: &PathAndQuery) -> u64 {
    // Fixed keys: the same request gets the same serial for the process's life.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    method.as_str().hash(&mut h);
    path_and_query.as_str().hash(&mut h);
    h.finish()
}

/// Replays in flight at most, out of `MIRROR_CONCURRENCY` copies: a quarter (at least one), so
/// users' copies always have most of the mirror's places.
pub fn replays_in_flight(concurrency: usize) -> usize {
    (concurrency / 4).max(1)
}

/// What a replayed copy carries through the mirror: its request's serial, and its place among the
/// replays in flight, given back when the copy is done or dropped anywhere on its way.
pub struct ReplayTicket {
    /// The recorded request's [`Recorded::serial`].
    pub serial: u64,
    _slot: ReplaySlot,
}

/// One of the places counted by [`run`]'s replays in flight.
struct ReplaySlot(Arc<AtomicUsize>);

impl Drop for ReplaySlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One recorded request, as the proxy sent it to running (less hop-by-hop headers).
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The same for the same method, path and query, however often it is forgotten and recorded
    /// again: what `REPLAY_REPEAT` counts, and how the verdict counts distinct recorded requests.
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
    /// Its [`recorded_size`].
    size: usize,
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
/// single URL cannot make the evidence; for an endpoint the verdict waits on, enough for its
/// latency to be judged alone ([`replays_to_judge_alone`], 200 by default), so even one URL
/// asked once gets that endpoint the pairs any of its waits needs (a wait for fewer, such as
/// `MIN_ENDPOINT_PAIRS` of a status, ends, and with it the replays, once it has them).
pub fn repeat_cap(repeat: u32, min_endpoint_pairs: u64, waited_on: bool) -> u32 {
    if waited_on {
        let need = replays_to_judge_alone(min_endpoint_pairs);
        repeat.max(u32::try_from(need).unwrap_or(u32::MAX))
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
    /// The [`recorded_size`] of `requests` together, at most [`MAX_RECORDED_BYTES`].
    bytes: usize,
    /// The testing instance the `uses` counts are for; another one starts them afresh.
    uses_for: Option<InstanceId>,
    /// Times each request (by serial) was replayed to `uses_for`, kept when the request is
    /// forgotten and recorded again; at most [`MAX_COUNTED`] requests.
    uses: HashMap<u64, u32>,
}

impl Kept {
    /// Forget the oldest request.
    fn pop_oldest(&mut self) {
        if let Some(old) = self.requests.pop_front() {
            self.bytes -= old.size;
        }
    }

    /// Times `r` may still be replayed to `uses_for` under `cap`: none when not counted yet and
    /// no room is left to count it.
    fn left(&self, r: &Recorded, cap: u32) -> u32 {
        match self.uses.get(&r.serial) {
            Some(&n) => cap.saturating_sub(n),
            None if self.uses.len() >= MAX_COUNTED => 0,
            None => cap,
        }
    }
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
        if kept.requests.len() > keep {
            while kept.requests.len() > keep {
                kept.pop_oldest();
            }
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
    /// query seen again moves to the newest place. One over [`MAX_RECORDED_REQUEST`] is not kept;
    /// the oldest are forgotten past `REPLAY_KEEP` requests or [`MAX_RECORDED_BYTES`].
    pub fn record(&self, method: Method, path_and_query: PathAndQuery, headers: HeaderMap) {
        let size = recorded_size(&path_and_query, &headers);
        if size > MAX_RECORDED_REQUEST {
            return;
        }
        let serial = serial_of(&method, &path_and_query);
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let same = kept.requests.iter().position(|r| r.serial == serial);
        let endpoint = match same.and_then(|i| kept.requests.remove(i)) {
            Some(old) => {
                kept.bytes -= old.size;
                old.endpoint
            }
            None => crate::score::endpoint_key(&method, path_and_query.path()),
        };
        while kept.requests.len() >= kept.keep || kept.bytes + size > MAX_RECORDED_BYTES {
            kept.pop_oldest();
        }
        kept.bytes += size;
        kept.requests.push_back(Recorded {
            serial,
            method,
            path_and_query,
            headers,
            endpoint,
            size,
        });
        self.len.store(kept.requests.len(), Ordering::Relaxed);
    }

    /// The [`recorded_size`] of the requests kept now, together (at most [`MAX_RECORDED_BYTES`]).
    pub fn bytes(&self) -> usize {
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }

    /// Record (`REPLAY=auto`) or not (`off`: what was kept is forgotten at once).
    pub fn set_on(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
        if !on {
            let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            kept.requests = VecDeque::new();
            kept.bytes = 0;
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
            kept.uses = HashMap::new();
        }
        let kept = &mut *kept;
        let waited = |r: &Recorded| want.endpoints.contains(&r.endpoint);
        let left = |r: &Recorded| kept.left(r, repeat_cap(repeat, min_endpoint_pairs, waited(r)));
        let mut unreplayable = want.endpoints.clone();
        for r in kept.requests.iter().filter(|r| left(r) > 0) {
            unreplayable.remove(&r.endpoint);
        }
        let uses = |r: &Recorded| kept.uses.get(&r.serial).copied().unwrap_or(0);
        let least_used = |only_waited: bool| {
            let candidates = kept.requests.iter().enumerate().rev();
            candidates
                .filter(|(_, r)| left(r) > 0 && (!only_waited || waited(r)))
                .min_by_key(|(_, r)| uses(r))
                .map(|(i, _)| i)
        };
        let next = least_used(true).or_else(|| want.traffic.then(|| least_used(false))?);
        let request = next.map(|i| {
            let r = kept.requests[i].clone();
            *kept.uses.entry(r.serial).or_insert(0) += 1;
            r
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
/// (`link.unreplayable`). Replays use only the mirror's spare capacity ([`Spare`]), so a user's
/// copy is never dropped for one. Runs until `cancel`.
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
    let in_flight = Arc::new(AtomicUsize::new(0));
    // Since when the mirror has had no room to spare while replays were wanted.
    let mut busy_since: Option<tokio::time::Instant> = None;
    loop {
        let (replay, min_endpoint_pairs, concurrency) = {
            let c = config.borrow_and_update();
            let s = &c.score;
            (c.diff.replay, s.min_endpoint_pairs, c.mirror_concurrency)
        };
        recorder.set_on(replay.on);
        // A reloaded `REPLAY_KEEP` takes effect here, within a pause (at most a second); the
        // recorder's lock is taken only when it changed.
        if keep.replace(replay.keep) != Some(replay.keep) {
            recorder.set_keep(replay.keep);
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
        let spare = Spare {
            queue: &queue,
            in_flight: &in_flight,
            limit: replays_in_flight(concurrency),
        };
        // Nothing is picked (nor counted as used) while the mirror has no room to spare; busy for
        // long, the waited endpoints are said to have nothing to replay, so the verdict judges
        // what it has rather than waiting for replays that cannot be sent.
        let slot = spare.take();
        if busy_for_long(&mut busy_since, slot.is_none()) {
            let endpoints = want.endpoints.clone();
            let testing = Some(want.testing);
            let busy = Unreplayable {
                testing,
                endpoints,
                traffic_exhausted: false,
            };
            tell(&unreplayable, busy);
        }
        if let Some(slot) = slot {
            let caps = (replay.repeat, min_endpoint_pairs);
            let next = next_job(&recorder, &routes, &want, caps, slot);
            offer_next(next, (&recorder, &queue, &stats), &unreplayable);
        }
        let pause = Duration::from_secs(1) / replay.rate.max(1);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Offer the replay picked (if any) to the mirror, and tell the scorer what has nothing left.
fn offer_next(
    next: Option<(Option<MirrorJob>, Unreplayable)>,
    (recorder, queue, stats): (&Recorder, &MirrorQueue, &super::ProxyStats),
    unreplayable: &watch::Sender<Unreplayable>,
) {
    let Some((job, none_left)) = next else {
        recorder.set_missing(&BTreeSet::new()); // not for the testing routed now
        return;
    };
    recorder.set_missing(&none_left.endpoints);
    tell(unreplayable, none_left);
    // Only a user's copy offered since the check can fill the queue; this replay then goes (it
    // was counted as used, which only bounds it more).
    if job.is_some_and(|job| queue.offer(job)) {
        stats.replayed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Tell the scorer which waited endpoints have nothing left to replay, when that changed.
fn tell(unreplayable: &watch::Sender<Unreplayable>, none_left: Unreplayable) {
    unreplayable.send_if_modified(|u| {
        let changed = *u != none_left;
        *u = none_left;
        changed
    });
}

/// Whether the mirror has had no room for a replay (`busy` now) for [`BUSY_GIVES_UP`];
/// `since` keeps when that began.
fn busy_for_long(since: &mut Option<tokio::time::Instant>, busy: bool) -> bool {
    let now = tokio::time::Instant::now();
    *since = busy.then(|| since.unwrap_or(now));
    since.is_some_and(|t| now - t >= BUSY_GIVES_UP)
}

/// How long the mirror may have no room for a replay before the endpoints the verdict waits on
/// are said to have nothing to replay (a saturated mirror sends none).
const BUSY_GIVES_UP: Duration = Duration::from_secs(10);

/// The mirror's room for a replay: none while a copy waits in its queue (all its places are
/// busy, or about to be), nor while `limit` replays are in flight.
struct Spare<'a> {
    queue: &'a MirrorQueue,
    in_flight: &'a Arc<AtomicUsize>,
    limit: usize,
}

impl Spare<'_> {
    /// A place for one more replay, when there is room.
    fn take(&self) -> Option<ReplaySlot> {
        if !self.queue.idle() {
            return None;
        }
        let taken = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = ReplaySlot(self.in_flight.clone());
        (taken < self.limit).then_some(slot)
    }
}

/// The copy of the next recorded request for `want.testing` (if any is left) and the wanted
/// endpoints with nothing left to replay, when that testing instance and a secondary are routed;
/// the copy holds `slot` (`REPLAY_REPEAT` and `MIN_ENDPOINT_PAIRS` are `caps`).
fn next_job(
    recorder: &Recorder,
    routes: &watch::Receiver<Arc<Routes>>,
    want: &ReplayWant,
    (repeat, min_endpoint_pairs): (u32, u64),
    slot: ReplaySlot,
) -> Option<(Option<MirrorJob>, Unreplayable)> {
    let (target, secondary) = {
        let r = routes.borrow();
        (r.testing.clone()?, r.secondary.clone()?)
    };
    if target.id != want.testing {
        return None;
    }
    let picked = recorder.pick(want, repeat, min_endpoint_pairs);
    // With nothing recorded yet there is nothing spent either: users' requests bring some.
    let traffic_exhausted = want.traffic && picked.request.is_none() && !recorder.is_empty();
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
        replay: Some(ReplayTicket {
            serial: r.serial,
            _slot: slot,
        }),
    });
    let none_left = Unreplayable {
        testing: Some(want.testing),
        endpoints: picked.unreplayable,
        traffic_exhausted,
    };
    Some((job, none_left))
}

#[cfg(test)]
mod tests;
