//! Asking an instance a copy: the request written for it, its answer read whole (a part of the
//! body kept for diffing) within the mirror's timeout, and testing and the secondary asked alike.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::HeaderMap;
use http::{Method, StatusCode};
use tokio::io::AsyncReadExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{BodyCapture, CaptureBudget, MirrorError, MirrorJob, SampleSlot, MIRROR_HEADER};
use crate::proxy::answer::{self, Asker};
use crate::proxy::exchange;
use crate::proxy::framing::Framing;
use crate::proxy::pool::Pool;
use crate::proxy::timer::Timer;
use crate::proxy::{ProxyStats, Upstream};

/// What an instance answered to a copy: status, headers, time to the end of its body, body.
pub(super) struct Answered {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) latency: Duration,
    pub(super) body: BodyCapture,
}

/// Which of testing and the secondary is asked first, alternating (see [`send_copy`]).
static ORDER: AtomicU64 = AtomicU64::new(0);

/// A copy's places: one of testing's `MIRROR_CONCURRENCY`, held until testing has answered, and
/// the pool of the secondary's (twice as many), one held until the secondary has answered.
pub(super) struct Places {
    pub(super) testing: OwnedSemaphorePermit,
    pub(super) secondary: Arc<Semaphore>,
}

/// One of the secondary's places (see [`Places`]), or none (counted): the copy then goes to
/// testing alone.
pub(super) fn secondary_place(
    pool: Arc<Semaphore>,
    stats: &ProxyStats,
) -> Option<OwnedSemaphorePermit> {
    let place = pool.try_acquire_owned().ok();
    if place.is_none() {
        stats.secondary_skipped.fetch_add(1, Ordering::Relaxed);
    }
    place
}

/// Asking testing and the secondary the same copy, each on a task of its own, alike: in one
/// joined future whichever answer is looked at second has its time stamped late (measured:
/// testing 1.3–1.6× the secondary for identical builds), and latency is judged on exactly this.
pub(super) struct Both<'a> {
    pub(super) client: &'a Arc<Pool>,
    pub(super) method: &'a Method,
    pub(super) timeout: Duration,
    pub(super) max: Option<usize>,
}

impl Both<'_> {
    /// Testing's outcome and the secondary's answer. Testing's place is given back once it has
    /// answered; the secondary's answer is awaited on a place of its own (see [`Places`]).
    pub(super) async fn ask(
        &self,
        testing: (Arc<Upstream>, Vec<u8>),
        secondary: (Arc<Upstream>, Vec<u8>),
        budget: CaptureBudget,
        (place, sampled, slot): (
            OwnedSemaphorePermit,
            Option<SampleSlot>,
            Option<OwnedSemaphorePermit>,
        ),
    ) -> (Result<Answered, MirrorError>, Option<Answered>) {
        let (timeout, max) = (self.timeout, self.max);
        let ask = |(to, req): (Arc<Upstream>, Vec<u8>), budget: CaptureBudget| {
            let (client, method) = (self.client.clone(), self.method.clone());
            tokio::spawn(
                async move { fetch(&client, &to, &method, req, timeout, max, budget).await },
            )
        };
        // Counterbalanced: on a busy machine the request sent first is often served first and
        // the other waits for a core, so the order alternates from copy to copy.
        let (t, s) = if ORDER.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) {
            let t = ask(testing, budget.clone());
            (t, ask(secondary, budget))
        } else {
            let s = ask(secondary, budget.clone());
            (ask(testing, budget), s)
        };
        let t = t.await.unwrap_or(Err(MirrorError::Timeout(timeout)));
        drop((place, sampled));
        let s = s.await;
        drop(slot);
        (t, s.ok().and_then(Result::ok))
    }
}

/// The request to `to`: the copied head (less its framing: the body goes whole, with its length),
/// marked with [`MIRROR_HEADER`], then the body.
pub(super) fn copy_request(job: &MirrorJob, to: &Upstream) -> Vec<u8> {
    let path = job.path_and_query.as_ref().map_or("/", |p| p.as_str());
    let mut out = Vec::with_capacity(256 + job.body.len());
    out.extend_from_slice(job.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    // The user's `Host`, as running got it; a request that came without one gets the instance's.
    if !job.headers.contains_key(http::header::HOST) {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(to.host.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (k, v) in &job.headers {
        if k == http::header::CONTENT_LENGTH || k == http::header::TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(MIRROR_HEADER.as_str().as_bytes());
    out.extend_from_slice(b": 1\r\n");
    if job.replay.is_some() {
        out.extend_from_slice(crate::proxy::replay::REPLAY_HEADER.as_str().as_bytes());
        out.extend_from_slice(b": 1\r\n");
    }
    if !job.body.is_empty() {
        let _ = write!(out, "content-length: {}\r\n", job.body.len());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&job.body);
    out
}

/// Send the copy and read the whole answer (so the connection goes back to the pool), keeping,
/// when it is to be diffed (`max` is some), its headers and up to `max` bytes of its body (none
/// at `DIFF_MAX_BODY=0`: headers are still compared), all within `timeout`; a broken body is a
/// failure.
pub(super) async fn fetch(
    client: &Pool,
    to: &Arc<Upstream>,
    method: &Method,
    req: Vec<u8>,
    timeout: Duration,
    max: Option<usize>,
    budget: CaptureBudget,
) -> Result<Answered, MirrorError> {
    let started = Instant::now();
    let answer = async {
        let mut answer = Vec::new();
        let mut out = Vec::new();
        let retry = exchange::retryable(method);
        // The whole copy is bounded below; this timer only serves the exchange's own waits.
        let mut timer = Timer::new(timeout);
        let mut conn = exchange::send(client, to, &req, retry, &mut answer, &mut timer).await?;
        let asker = Asker {
            head: method == Method::HEAD,
            ..Asker::default()
        };
        let a = loop {
            let a =
                exchange::read_head(&mut conn, &mut answer, asker, &mut out, &mut timer).await?;
            if !a.interim {
                break a;
            }
            answer.drain(..a.len);
        };
        to.answers.seen();
        let status = StatusCode::from_u16(a.status).map_err(|_| MirrorError::Status(a.status))?;
        let headers = match max {
            Some(_) => answer::header_map(&answer[..a.len]),
            None => HeaderMap::new(),
        };
        let mut capture = BodyCapture::new(max.unwrap_or(0), budget);
        let mut framing = a.framing;
        let mut extra = false;
        let mut from = a.len;
        loop {
            let took = framing
                .feed(&answer[from..], &mut |d| capture.feed(d))
                .map_err(|_| MirrorError::Body("a chunked body that is not well-formed"))?;
            extra |= from + took < answer.len();
            if framing.done() {
                break;
            }
            answer.clear();
            from = 0;
            match conn.read_buf(&mut answer).await {
                Ok(0) if framing == Framing::Close => break,
                Ok(1..) => {}
                _ => return Err(MirrorError::Body("the body broke off")),
            }
        }
        // To the end of the body: a build that sends its head at once and then streams slowly
        // is as slow to its users as one that waits to answer.
        let latency = started.elapsed();
        if a.reusable && !extra {
            client.put(to.clone(), conn);
        }
        Ok(Answered {
            status,
            headers,
            latency,
            body: capture,
        })
    };
    tokio::time::timeout(timeout, answer)
        .await
        .unwrap_or(Err(MirrorError::Timeout(timeout)))
}
