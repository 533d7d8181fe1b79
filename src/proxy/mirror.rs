//! The mirror: copies of user requests wait in a bounded queue (full → dropped and counted, never
//! waited on) and are sent to testing by a worker with its own connection pool, concurrency limit
//! and timeout. Each answered copy becomes a [`Pair`] for the scorer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::BodyExt;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use std::sync::atomic::Ordering;

use super::{upstream_client, ProxyBody, ProxyStats, Upstream};
use crate::score::Pair;

/// Marks a mirrored copy so the app can skip side effects.
pub static MIRROR_HEADER: HeaderName = HeaderName::from_static("x-understudy-mirror");

/// How much of a body is fingerprinted; longer bodies compare by this prefix and their length.
pub const COMPARED_BODY: usize = 64 * 1024;

/// A cheap fingerprint of a body: FNV-1a over its first [`COMPARED_BODY`] bytes, and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyDigest {
    hash: u64,
    len: u64,
}

impl Default for BodyDigest {
    fn default() -> Self {
        BodyDigest {
            hash: 0xcbf2_9ce4_8422_2325,
            len: 0,
        }
    }
}

impl BodyDigest {
    /// Fold in the next chunk of the body.
    pub fn feed(&mut self, d: &[u8]) {
        let room = COMPARED_BODY.saturating_sub(self.len as usize).min(d.len());
        for b in &d[..room] {
            self.hash ^= u64::from(*b);
            self.hash = self.hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.len += d.len() as u64;
    }
}

/// Watches running's answer stream past on its way to the user and hands the copy to the mirror
/// when it ends, with running's body fingerprint; the user's stream is never held up.
pub struct Tee {
    job: Option<MirrorJob>,
    digest: BodyDigest,
    queue: MirrorQueue,
    stats: Arc<ProxyStats>,
}

impl Tee {
    /// A tee that will offer `job` to `queue` once running's body is done.
    pub fn new(job: MirrorJob, queue: MirrorQueue, stats: Arc<ProxyStats>) -> Tee {
        Tee {
            job: Some(job),
            digest: BodyDigest::default(),
            queue,
            stats,
        }
    }

    /// Running's body went past.
    pub fn feed(&mut self, d: &[u8]) {
        self.digest.feed(d);
    }

    /// Running's body ended (`complete`) or was abandoned: offer the copy, never waiting.
    pub fn finish(&mut self, complete: bool) {
        let Some(mut job) = self.job.take() else {
            return;
        };
        job.running_body = complete.then_some(self.digest);
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
    /// Running's body fingerprint, when its body was read to the end.
    pub running_body: Option<BodyDigest>,
}

/// The proxy's side of the mirror: decides eligibility and offers copies without waiting.
#[derive(Clone)]
pub struct MirrorQueue {
    tx: mpsc::Sender<MirrorJob>,
    methods: Arc<[Method]>,
    max_body: u64,
}

impl MirrorQueue {
    /// A queue of `capacity` copies for `methods`, with bodies up to `max_body` bytes.
    pub fn new(
        capacity: usize,
        methods: Vec<Method>,
        max_body: u64,
    ) -> (MirrorQueue, mpsc::Receiver<MirrorJob>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            MirrorQueue {
                tx,
                methods: methods.into(),
                max_body,
            },
            rx,
        )
    }

    /// Whether requests with this method are copied.
    pub fn wants(&self, m: &Method) -> bool {
        self.methods.contains(m)
    }

    /// Largest body copied.
    pub fn max_body(&self) -> u64 {
        self.max_body
    }

    /// Hand over a copy; `false` when the queue is full and the copy was dropped.
    pub fn offer(&self, job: MirrorJob) -> bool {
        self.tx.try_send(job).is_ok()
    }
}

/// Send queued copies to testing, at most `concurrency` at once, each bounded by `timeout`,
/// count testing's answers in `stats.testing` and report every pair on `pairs` (dropped if the
/// scorer lags). Runs until `cancel`.
pub async fn run(
    mut rx: mpsc::Receiver<MirrorJob>,
    concurrency: usize,
    timeout: Duration,
    pairs: mpsc::Sender<Pair>,
    stats: Arc<ProxyStats>,
    cancel: CancellationToken,
) {
    let client = upstream_client();
    let permits = Arc::new(Semaphore::new(concurrency));
    let tracker = TaskTracker::new();
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
        tracker.spawn(async move {
            let _permit = permit;
            tokio::select! {
                _ = cancel.cancelled() => {}
                pair = send_copy(&client, job, timeout, &stats) => { let _ = pairs.try_send(pair); }
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// Why a mirrored copy got no usable answer from testing.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The request failed: connection refused or reset, or a broken response head.
    #[error("{0}")]
    Request(#[from] hyper_util::client::legacy::Error),
    /// The response body broke off.
    #[error("body: {0}")]
    Body(#[from] hyper::Error),
    /// Testing did not answer (headers and body) within the mirror timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// What testing answered: status, time to the end of its body, and its body fingerprint.
type TestingAnswer = (StatusCode, Duration, BodyDigest);

async fn send_copy(
    client: &super::UpstreamClient,
    mut job: MirrorJob,
    timeout: Duration,
    stats: &ProxyStats,
) -> Pair {
    let req = copy_request(&mut job);
    let outcome = fetch(client, req, timeout).await;
    match &outcome {
        Ok((status, latency, _)) => stats.testing.answered(*status, *latency),
        Err(_) => stats.testing.unanswered(),
    }
    pair(job, outcome)
}

/// The request to testing: the copied head, marked with [`MIRROR_HEADER`], and the body (both
/// moved out of `job`, which keeps what the pair needs).
fn copy_request(job: &mut MirrorJob) -> Request<ProxyBody> {
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(http::uri::Scheme::HTTP);
    uri.authority = Some(job.target.authority.clone());
    uri.path_and_query = job
        .path_and_query
        .clone()
        .or_else(|| Some(http::uri::PathAndQuery::from_static("/")));
    let uri = Uri::from_parts(uri).expect("scheme, authority and path form a valid URI");
    let mut req = Request::new(ProxyBody::Full(Some(std::mem::take(&mut job.body))));
    *req.method_mut() = job.method.clone();
    *req.uri_mut() = uri;
    *req.headers_mut() = std::mem::take(&mut job.headers);
    req.headers_mut()
        .insert(&MIRROR_HEADER, HeaderValue::from_static("1"));
    req
}

/// Send the copy and read testing's whole body (so the connection goes back to the pool), all
/// within `timeout`; a broken body is a failure.
async fn fetch(
    client: &super::UpstreamClient,
    req: Request<ProxyBody>,
    timeout: Duration,
) -> Result<TestingAnswer, MirrorError> {
    let started = Instant::now();
    let answer = async {
        let resp = client.request(req).await?;
        let status = resp.status();
        let latency = started.elapsed();
        let mut body = resp.into_body();
        let mut digest = BodyDigest::default();
        while let Some(frame) = body.frame().await {
            if let Some(d) = frame?.data_ref() {
                digest.feed(d);
            }
        }
        Ok((status, latency, digest))
    };
    tokio::time::timeout(timeout, answer)
        .await
        .unwrap_or(Err(MirrorError::Timeout(timeout)))
}

/// The pair for the scorer. Bodies are compared only where the statuses agree: a different
/// status is judged on its own.
fn pair(job: MirrorJob, outcome: Result<TestingAnswer, MirrorError>) -> Pair {
    let (testing_status, testing_latency, testing_error, body_same) = match outcome {
        Ok((s, l, digest)) => {
            let same = job
                .running_body
                .filter(|_| s == job.running_status)
                .map(|r| r == digest);
            (Some(s.as_u16()), Some(l), None, same)
        }
        Err(e) => (None, None, Some(e.to_string()), None),
    };
    Pair {
        testing: job.target.id,
        method: job.method,
        path: job
            .path_and_query
            .as_ref()
            .map(|p| p.path().to_string())
            .unwrap_or_else(|| "/".to_string()),
        running_status: job.running_status.as_u16(),
        running_latency: job.running_latency,
        testing_status,
        testing_latency,
        testing_error,
        body_same,
    }
}
