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

use super::{upstream_client, ProxyBody, Upstream};
use crate::score::Pair;

/// Marks a mirrored copy so the app can skip side effects.
pub static MIRROR_HEADER: HeaderName = HeaderName::from_static("x-understudy-mirror");

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
/// and report every pair on `pairs` (dropped if the scorer lags). Runs until `cancel`.
pub async fn run(
    mut rx: mpsc::Receiver<MirrorJob>,
    concurrency: usize,
    timeout: Duration,
    pairs: mpsc::Sender<Pair>,
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
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let _permit = permit;
            tokio::select! {
                _ = cancel.cancelled() => {}
                pair = send_copy(&client, job, timeout) => { let _ = pairs.try_send(pair); }
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

async fn send_copy(client: &super::UpstreamClient, job: MirrorJob, timeout: Duration) -> Pair {
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(http::uri::Scheme::HTTP);
    uri.authority = Some(job.target.authority.clone());
    uri.path_and_query = job
        .path_and_query
        .clone()
        .or_else(|| Some(http::uri::PathAndQuery::from_static("/")));
    let uri = Uri::from_parts(uri).expect("scheme, authority and path form a valid URI");
    let mut req = Request::new(ProxyBody::Full(Some(job.body)));
    *req.method_mut() = job.method.clone();
    *req.uri_mut() = uri;
    *req.headers_mut() = job.headers;
    req.headers_mut()
        .insert(&MIRROR_HEADER, HeaderValue::from_static("1"));

    let started = Instant::now();
    let outcome = tokio::time::timeout(timeout, async {
        let resp = client.request(req).await.map_err(|e| format!("{e}"))?;
        let status = resp.status();
        let latency = started.elapsed();
        // Drain the body so the connection goes back to the pool; a broken body is a failure.
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            frame.map_err(|e| format!("body: {e}"))?;
        }
        Ok::<_, String>((status, latency))
    })
    .await;
    let (testing_status, testing_latency, testing_error) = match outcome {
        Ok(Ok((s, l))) => (Some(s.as_u16()), Some(l), None),
        Ok(Err(e)) => (None, None, Some(e)),
        Err(_) => (None, None, Some(format!("no answer within {timeout:?}"))),
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
    }
}
