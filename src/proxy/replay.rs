//! Low traffic: a service with a request every few seconds never reaches `MIN_MIRRORED` within
//! `STABLE_WINDOW`. The proxy records a bounded sample of what users asked ([`Recorder`]: the most
//! recent `REPLAY_KEEP` safe requests without a body, distinct by method, path and query, at most
//! one per [`RECORD_EVERY`], in memory only since they may carry credentials), and while the
//! scorer says live pairs come too slowly, [`run`] sends them through the mirror to testing and
//! the secondary (never running) at `REPLAY_RATE`, each at most `REPLAY_REPEAT` times per testing
//! instance. Testing is judged against the secondary for those pairs.

use std::collections::VecDeque;
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
    /// Times replayed to the testing instance in `Kept::uses_for`.
    uses: u32,
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
}

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
        }
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
        let (serial, uses) = match same.and_then(|i| kept.requests.remove(i)) {
            Some(old) => (old.serial, old.uses),
            None => {
                kept.next_serial += 1;
                (kept.next_serial, 0)
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

    /// The next request to replay to `testing`: the least replayed one (newest first among
    /// equals) still under `repeat` uses, counted as used; `None` when all are used up.
    pub fn pick(&self, testing: InstanceId, repeat: u32) -> Option<Recorded> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.uses_for != Some(testing) {
            kept.uses_for = Some(testing);
            kept.requests.iter_mut().for_each(|r| r.uses = 0);
        }
        let r = kept
            .requests
            .iter_mut()
            .rev()
            .filter(|r| r.uses < repeat)
            .min_by_key(|r| r.uses)?;
        r.uses += 1;
        Some(r.clone())
    }
}

/// Send recorded requests to testing and the secondary while `wanted` names the testing instance
/// now routed (the scorer's call) and a secondary runs, at `REPLAY_RATE` (read live from
/// `config`). Copies go through the mirror's queue; a full queue drops the replay, never a user's
/// copy. Runs until `cancel`.
pub async fn run(
    recorder: Arc<Recorder>,
    queue: MirrorQueue,
    stats: Arc<super::ProxyStats>,
    routes: watch::Receiver<Arc<Routes>>,
    mut wanted: watch::Receiver<Option<InstanceId>>,
    mut config: watch::Receiver<Arc<Config>>,
    cancel: CancellationToken,
) {
    let mut keep = None;
    loop {
        let replay = config.borrow_and_update().diff.replay;
        recorder.set_on(replay.on);
        // A reloaded `REPLAY_KEEP` takes effect here, within a pause (at most a second); the
        // recorder's lock is taken only when it changed.
        if keep != Some(replay.keep) {
            recorder.set_keep(replay.keep);
            keep = Some(replay.keep);
        }
        let Some(testing) = *wanted.borrow_and_update() else {
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = wanted.changed() => if changed.is_err() { return } else { continue },
                changed = config.changed() => if changed.is_err() { return } else { continue },
            }
        };
        if let Some(job) = next_job(&recorder, &routes, testing, replay.repeat) {
            // A full queue drops this replay; it was counted as used, which only bounds it more.
            if queue.offer(job) {
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

/// The copy of the next recorded request for `testing`, when it and a secondary are routed.
fn next_job(
    recorder: &Recorder,
    routes: &watch::Receiver<Arc<Routes>>,
    testing: InstanceId,
    repeat: u32,
) -> Option<MirrorJob> {
    let (target, secondary) = {
        let r = routes.borrow();
        (r.testing.clone()?, r.secondary.clone()?)
    };
    if target.id != testing {
        return None;
    }
    let r = recorder.pick(testing, repeat)?;
    Some(MirrorJob {
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pq(s: &str) -> PathAndQuery {
        PathAndQuery::try_from(s).unwrap()
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
        let one = InstanceId(1);
        let mut picked = Vec::new();
        while let Some(x) = r.pick(one, 2) {
            picked.push(x.path_and_query.to_string());
        }
        assert_eq!(picked.len(), 6, "3 requests × REPLAY_REPEAT 2: {picked:?}");
        assert!(!picked.iter().any(|p| p == "/b?n=2"), "the oldest went");
        assert!(
            r.pick(InstanceId(2), 2).is_some(),
            "a new testing starts afresh"
        );
    }

    /// A smaller REPLAY_KEEP keeps the most recent requests with their serials and use counts
    /// (a larger one then lets more in); the count metrics read follows.
    #[test]
    fn resizing_keeps_the_most_recent_requests() {
        let r = Recorder::new(5);
        for n in 1..=5 {
            r.record(Method::GET, pq(&format!("/p?n={n}")), HeaderMap::new());
        }
        let one = InstanceId(1);
        let newest = r.pick(one, 9).unwrap();
        assert_eq!(newest.path_and_query, "/p?n=5");
        r.set_keep(2);
        assert_eq!(r.len(), 2);
        let mut left = Vec::new();
        while let Some(x) = r.pick(one, 2) {
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
}
