//! The mirror: copies of user requests wait in a bounded queue (full → dropped and counted, never
//! waited on) and are sent to testing by a worker with its own connection pool, concurrency limit
//! and timeout. Each answered copy becomes a [`Pair`] for the scorer.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName};
use http::{Method, StatusCode};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod ask;
mod capture;
mod differ;
mod judge;
mod replayed;

use ask::{copy_request, fetch, secondary_place, Both, Places};
pub use capture::{BodyCapture, BodyDigest, CaptureBudget, CAPTURE_BUDGET, COMPARED_BODY};
use differ::Differ;
pub use differ::MAX_SAMPLED_IN_FLIGHT;
use judge::{diffed_pair, pair, with_secondary, Seen};
use replayed::Replayed;

use super::pool::{Pool, UpstreamError};
use super::{ProxyStats, Upstream};
use crate::config::Config;
use crate::score::Pair;

/// Marks a mirrored copy so the app can skip side effects.
pub static MIRROR_HEADER: HeaderName = HeaderName::from_static("x-understudy-mirror");

/// Watches running's answer stream past on its way to the user and hands the copy to the mirror
/// when it ends, with running's body captured; the user's stream is never held up.
pub struct Tee {
    job: Option<MirrorJob>,
    capture: Option<BodyCapture>,
    queue: MirrorQueue,
    stats: Arc<ProxyStats>,
}

impl Tee {
    /// A tee that will offer `job` to `queue` once running's body is done.
    pub fn new(job: MirrorJob, queue: MirrorQueue, stats: Arc<ProxyStats>) -> Tee {
        let max = if job.diff.is_some() {
            queue.diff_max
        } else {
            0
        };
        Tee {
            job: Some(job),
            capture: Some(BodyCapture::new(max, queue.budget.clone())),
            queue,
            stats,
        }
    }

    /// Running's body went past.
    pub fn feed(&mut self, d: &[u8]) {
        if let Some(c) = self.capture.as_mut() {
            c.feed(d);
        }
    }

    /// Running's body ended (`complete`) or was abandoned: offer the copy, never waiting.
    pub fn finish(&mut self, complete: bool) {
        let Some(mut job) = self.job.take() else {
            return;
        };
        job.running_body = self.capture.take().filter(|_| complete);
        if job.running_body.is_none() {
            // Not compared without running's body: its sampled place is given back now, not
            // when testing has answered (a stream's copy may take MIRROR_TIMEOUT).
            job.diff = None;
        }
        if self.queue.offer(job) {
            self.stats.mirrored.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.mirror_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        self.finish(false);
    }
}

/// Whether a copy is diffed.
pub enum Sampled {
    /// Not sampled (`DIFF_SAMPLE`).
    No,
    /// Sampled, but all [`MAX_SAMPLED_IN_FLIGHT`] places are taken: mirrored without a diff.
    Busy,
    /// Sampled, with its place.
    Yes(SampleSlot),
}

/// One of the [`MAX_SAMPLED_IN_FLIGHT`] places of a sampled copy, given back when the copy is
/// done (or dropped anywhere on its way).
pub struct SampleSlot(Arc<AtomicUsize>);

impl Drop for SampleSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a sampled copy needs to be diffed: running's side of the comparison.
pub struct DiffJob {
    /// Its place among the sampled copies in flight; given back once testing has answered (a
    /// stalled secondary must not hold the few places while its answer is awaited).
    pub slot: Option<SampleSlot>,
    /// Running, for its version.
    pub running: Arc<Upstream>,
    /// Running's response headers.
    pub headers: HeaderMap,
    /// The request's `Accept-Encoding`: an answer compressed as it allows, beside one that is
    /// not, differs in how it travelled only.
    pub accept_encoding: Option<http::HeaderValue>,
}

/// A copy of one user request, with running's answer to compare against.
pub struct MirrorJob {
    /// The testing instance chosen when the request arrived.
    pub target: Arc<Upstream>,
    /// Request method.
    pub method: Method,
    /// Request path and query.
    pub path_and_query: Option<http::uri::PathAndQuery>,
    /// Request headers (hop-by-hop removed).
    pub headers: HeaderMap,
    /// Request body (bounded by `MIRROR_MAX_BODY`).
    pub body: Bytes,
    /// What running answered.
    pub running_status: StatusCode,
    /// How long running took to answer (to headers).
    pub running_latency: Duration,
    /// Running's body, when it was read to the end (captured for a diffed copy, else only its
    /// fingerprint).
    pub running_body: Option<BodyCapture>,
    /// Set when this copy's answers are compared field by field (`DIFF_SAMPLE`).
    pub diff: Option<Box<DiffJob>>,
    /// The secondary (running's version), when one runs: it gets every copy testing gets, so
    /// testing's latency and load are compared with its, like with like; its answers are diffed
    /// (as noise) only for sampled copies.
    pub secondary: Option<Arc<Upstream>>,
    /// Set for a replayed recorded request (its serial, and its place among the replays in
    /// flight): it went to testing and the secondary only, and testing is judged against the
    /// secondary's answer.
    pub replay: Option<super::replay::ReplayTicket>,
}

/// The proxy's side of the mirror: decides eligibility and offers copies without waiting.
#[derive(Clone)]
pub struct MirrorQueue {
    tx: mpsc::Sender<MirrorJob>,
    methods: Arc<[Method]>,
    max_body: u64,
    diff_max: usize,
    /// Copies sampled for diffing, out of 2^32 (`DIFF_SAMPLE`).
    sample: u64,
    seen: Arc<AtomicU64>,
    /// Sampled copies in flight (see [`MAX_SAMPLED_IN_FLIGHT`]).
    sampled_in_flight: Arc<AtomicUsize>,
    budget: CaptureBudget,
    /// Recent user requests kept for replay (`REPLAY_KEEP`).
    recorder: Arc<super::replay::Recorder>,
}

impl MirrorQueue {
    /// A queue of `capacity` copies for `methods`, with bodies up to `max_body` bytes; a share
    /// `sample` of them (0..1) has answers of up to `diff_max` bytes captured for diffing.
    pub fn new(
        capacity: usize,
        methods: Vec<Method>,
        max_body: u64,
        diff_max: usize,
        sample: f64,
    ) -> (MirrorQueue, mpsc::Receiver<MirrorJob>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            MirrorQueue {
                tx,
                methods: methods.into(),
                max_body,
                diff_max,
                sample: (sample.clamp(0.0, 1.0) * (1u64 << 32) as f64) as u64,
                seen: Arc::new(AtomicU64::new(0)),
                sampled_in_flight: Arc::new(AtomicUsize::new(0)),
                budget: CaptureBudget::default(),
                recorder: Arc::new(super::replay::Recorder::new(1000)),
            },
            rx,
        )
    }

    /// Keep the `keep` most recent distinct requests for replay (`REPLAY_KEEP`).
    pub fn keeping(mut self, keep: usize) -> MirrorQueue {
        self.recorder = Arc::new(super::replay::Recorder::new(keep));
        self
    }

    /// The recorder of recent requests, shared with the replay task.
    pub fn recorder(&self) -> &Arc<super::replay::Recorder> {
        &self.recorder
    }

    /// Whether requests with this method are copied.
    pub fn wants(&self, m: &Method) -> bool {
        self.methods.contains(m)
    }

    /// Largest body copied.
    pub fn max_body(&self) -> u64 {
        self.max_body
    }

    /// Whether the next copy is diffed (`DIFF_SAMPLE`, spread evenly: the n-th copy is sampled
    /// when `n × DIFF_SAMPLE` crosses a whole number; no random source on the request path): its
    /// place among the sampled copies in flight, or why not.
    pub fn sample(&self) -> Sampled {
        let due = if self.sample >= 1 << 32 {
            true
        } else if self.sample == 0 {
            false
        } else {
            let n = self.seen.fetch_add(1, Ordering::Relaxed);
            ((n + 1) * self.sample) >> 32 != (n * self.sample) >> 32
        };
        if !due {
            return Sampled::No;
        }
        if self.sampled_in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_SAMPLED_IN_FLIGHT {
            self.sampled_in_flight.fetch_sub(1, Ordering::AcqRel);
            return Sampled::Busy;
        }
        Sampled::Yes(SampleSlot(self.sampled_in_flight.clone()))
    }

    /// The captured-bytes budget, shared with the mirror worker.
    pub fn budget(&self) -> CaptureBudget {
        self.budget.clone()
    }

    /// Whether no copy waits in the queue: replays are offered only then, so they never take a
    /// place a user's copy waits for.
    pub fn idle(&self) -> bool {
        self.tx.capacity() == self.tx.max_capacity()
    }

    /// Hand over a copy; `false` when the queue is full and the copy was dropped.
    pub fn offer(&self, job: MirrorJob) -> bool {
        self.tx.try_send(job).is_ok()
    }
}

/// What the mirror worker needs besides its queue.
pub struct MirrorSettings {
    /// Copies in flight at once.
    pub concurrency: usize,
    /// Deadline for testing's (and the secondary's) whole answer.
    pub timeout: Duration,
    /// The live configuration: what to ignore when diffing, re-read for every pair.
    pub config: watch::Receiver<Arc<Config>>,
    /// The captured-bytes budget (the queue's).
    pub budget: CaptureBudget,
}

/// Send queued copies to testing (and, for a sampled copy with noise cancellation, to the
/// secondary), at most `concurrency` at once, each bounded by `timeout`, diff the answers, count
/// testing's answers in `stats.testing` (replays in `stats.testing_replayed`) and report every
/// pair on `pairs` (dropped if the scorer lags). Runs until `cancel`.
pub async fn run(
    mut rx: mpsc::Receiver<MirrorJob>,
    settings: MirrorSettings,
    pairs: mpsc::Sender<Pair>,
    stats: Arc<ProxyStats>,
    cancel: CancellationToken,
) {
    let MirrorSettings {
        concurrency,
        timeout,
        config,
        budget,
    } = settings;
    let client = Arc::new(Pool::default());
    let permits = Arc::new(Semaphore::new(concurrency));
    // The secondary's answers in flight, awaited past testing's too: twice testing's places, so
    // ordinary jitter (testing answering first, its place taken by the next copy) never runs
    // short, and only a secondary lagging a whole MIRROR_CONCURRENCY behind sends copies to
    // testing alone (measured: with as many as testing's, 86 of 752 copies of identical builds).
    let secondary_slots = Arc::new(Semaphore::new(concurrency.saturating_mul(2)));
    let differ = Arc::new(Differ::start());
    let tracker = TaskTracker::new();
    // Connections to instances stopped since (a rejected testing, a retired secondary) are dropped
    // within a second even while no copy is sent.
    let sweeper = cancel.child_token();
    let (sweeping, stop_sweeping) = (client.clone(), sweeper.clone());
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = stop_sweeping.cancelled() => return,
                _ = tick.tick() => sweeping.sweep(),
            }
        }
    });
    loop {
        // Wait for a free slot first: while testing is slow the queue fills and new copies are
        // dropped at the proxy, instead of piling up here.
        let permit = tokio::select! {
            _ = cancel.cancelled() => break,
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let job = tokio::select! {
            _ = cancel.cancelled() => break,
            j = rx.recv() => match j { Some(j) => j, None => break },
        };
        let client = client.clone();
        let pairs = pairs.clone();
        let stats = stats.clone();
        let cancel = cancel.clone();
        let cfg = config.borrow().clone();
        let budget = budget.clone();
        let differ = differ.clone();
        let places = Places {
            testing: permit,
            secondary: secondary_slots.clone(),
        };
        // Boxed once here: the copy's future is kilobytes, and spawning moves it several times.
        tracker.spawn(Box::pin(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                pair = send_copy(&client, job, (timeout, places), &stats, cfg, budget, &differ) => {
                    if let Some(pair) = pair {
                        let _ = pairs.try_send(pair);
                    }
                }
            }
        }));
    }
    sweeper.cancel();
    tracker.close();
    tracker.wait().await;
    if let Ok(differ) = Arc::try_unwrap(differ) {
        differ.stop().await;
    }
}

/// Why a mirrored copy got no usable answer from testing.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The request failed: connection refused or reset, or a broken response head.
    #[error("{0}")]
    Request(UpstreamError),
    /// The answer's body broke off or was not well-formed.
    #[error("body: {0}")]
    Body(&'static str),
    /// The answer's status is not a status.
    #[error("an answer with status {0}")]
    Status(u16),
    /// Testing did not answer (headers and body) within the mirror timeout.
    #[error("no answer within MIRROR_TIMEOUT ({0:?})")]
    Timeout(Duration),
}

impl From<UpstreamError> for MirrorError {
    /// A copy's exchange timed out on `MIRROR_TIMEOUT`, which is what its reason must name (an
    /// operator told `UPSTREAM_TIMEOUT` would raise a limit that does not apply to copies).
    fn from(e: UpstreamError) -> MirrorError {
        match e {
            UpstreamError::Timeout(after) => MirrorError::Timeout(after),
            e => MirrorError::Request(e),
        }
    }
}

async fn send_copy(
    client: &Arc<Pool>,
    mut job: MirrorJob,
    (timeout, places): (Duration, Places),
    stats: &ProxyStats,
    cfg: Arc<Config>,
    budget: CaptureBudget,
    differ: &Differ,
) -> Option<Pair> {
    if job.target.is_retired() {
        // Promoted past, rejected or replaced while the copy queued: nothing left to judge.
        stats.mirror_retired.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    if job.replay.is_some() {
        let copy = Replayed {
            client,
            timeout,
            budget,
        };
        let _held = places.testing;
        return copy.send(job, stats, cfg, differ).await;
    }
    let max = job.diff.as_ref().map(|_| cfg.diff.max_body);
    let slot = job
        .secondary
        .as_ref()
        .and_then(|_| secondary_place(places.secondary, stats));
    let sampled = job.diff.as_mut().and_then(|d| d.slot.take());
    let secondary = job.secondary.clone().filter(|_| slot.is_some());
    let secondary_req = secondary.as_ref().map(|s| copy_request(&job, s));
    let req = copy_request(&job, &job.target);
    job.headers = HeaderMap::new();
    let method = job.method.clone();
    let secondary_asked = secondary_req.is_some();
    let (outcome, secondary) = match (secondary_req, secondary) {
        (Some(sreq), Some(to)) => {
            let both = Both {
                client,
                method: &method,
                timeout,
                max,
            };
            both.ask(
                (job.target.clone(), req),
                (to, sreq),
                budget,
                (places.testing, sampled, slot),
            )
            .await
        }
        _ => {
            let t = fetch(client, &job.target, &method, req, timeout, max, budget);
            (t.await, None)
        }
    };
    match &outcome {
        Ok(a) => stats.testing.answered(a.status, a.latency),
        Err(_) if job.target.is_retired() => {
            stats.mirror_retired.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Err(_) => stats.testing.unanswered(),
    }
    let seen = Seen {
        asked: secondary_asked,
        answer: secondary.as_ref().map(|s| (s.latency, s.status.as_u16())),
    };
    let worth_diffing = job.diff.is_some()
        && job.running_body.is_some()
        && outcome
            .as_ref()
            .is_ok_and(|a| a.status == job.running_status);
    if !worth_diffing {
        return Some(with_secondary(pair(job, outcome, secondary, &cfg), seen));
    }
    let p = diffed_pair(job, outcome, secondary, cfg, differ, stats).await;
    Some(with_secondary(p, seen))
}
