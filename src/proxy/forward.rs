//! Upstream and answer phases of one user request: its head (and body, as the user framed it)
//! to running, running's interim answers and final answer back, its body read at running's pace
//! into understudy's buffers (up to `ANSWER_BUFFER` per answer, `ANSWER_MEMORY` in all) so a slow
//! reader never holds running's connection, and the copy handed to the mirror when it ends.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::answer::{Answer, Asker};
use super::bufs::{Bufs, Next};
use super::exchange::{self, ANSWER_READ};
use super::framing::{BadChunk, Framing};
use super::head::{self, RequestHead};
use super::mirror::{self, MirrorJob, Tee};
use super::pool::UpstreamError;
use super::relay::Teed;
use super::reply::{self, Ending, Unserved};
use super::{Proxy, Route};

/// Why a request got no answer from running.
enum Failure {
    /// Running failed (502) or timed out (504).
    Upstream(UpstreamError),
    /// understudy answers itself: the user's body broke off (bad, too large, gone, not read
    /// back from disk), or, while understudy stops, an instance that has gone refused it
    /// (nothing reached it, and nothing will serve here again).
    Own(Unserved),
}

impl From<UpstreamError> for Failure {
    fn from(e: UpstreamError) -> Failure {
        Failure::Upstream(e)
    }
}

/// A request's copy for the mirror, its body captured while it goes to running.
struct Copy {
    target: Arc<super::Upstream>,
    method: Method,
    head: Vec<u8>,
    body: Option<Vec<u8>>,
}

/// What became of a request given to [`forward`].
pub(super) enum Forwarded {
    /// Answered, by running or by understudy: what the connection does next.
    Done(Next),
    /// The instance refused the connection: nothing reached it and nothing was written to the
    /// user, so the request (given back, its head as it came) may be routed again.
    Refused(RequestHead, Arc<super::Upstream>),
}

/// Which of a request's passes through [`forward`] this is: only the first is recorded, counted
/// and retried on a fresh connection (a later one may follow a send that reached an instance);
/// on the last, a refused connection is told to the user rather than given back.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pass {
    /// The request's first pass.
    pub(super) first: bool,
    /// Its last: its waits are over.
    pub(super) last: bool,
}

/// Forward `req` (its rewritten head in `bufs.out`, its body first in `bufs.buf`) to running and
/// relay the answer; a refused connection gives the request back but on the `last` [`Pass`].
pub(super) async fn forward(
    client: &mut TcpStream,
    proxy: &Proxy,
    req: RequestHead,
    route: Route,
    bufs: &mut Bufs,
    pass: Pass,
) -> Forwarded {
    let running = route.running.shared().clone();
    head::supply_host(&req, running.host.as_bytes(), &mut bufs.out);
    if pass.first {
        record(proxy, &req, &bufs.out);
    }
    let serving = proxy.serving(&route, &req.method, &bufs.out);
    let (asker, mut body) = asker_and_body(proxy, &req, (&route, pass.first), &bufs.out);
    let started = Instant::now();
    // Routed once more, it may have reached an instance once already: never a third time.
    let asked = (&req, exchange::retryable(&req.method) && pass.first);
    let answered = upstream(client, proxy, asked, &running, asker, bufs, &mut body).await;
    let latency = started.elapsed();
    // A user a canary step sent to testing is answered (or not) by testing.
    let answers = match route.side {
        Some((super::canary::Side::Testing, _)) => &proxy.stats.testing_canary,
        _ => &proxy.stats.running,
    };
    let (conn, a) = match answered {
        Ok(x) => x,
        Err(Failure::Upstream(e)) if e.is_refused() && !pass.last => {
            head::withdraw_host(&req, running.host.as_bytes(), &mut bufs.out);
            return Forwarded::Refused(req, running);
        }
        Err(f) => {
            let f = match f {
                Failure::Upstream(e) if e.is_refused() && proxy.calls.stopping() => {
                    Failure::Own(Unserved::Stopping)
                }
                f => f,
            };
            // Only the side's own failures count against it; a user's broken body does not.
            if let Failure::Upstream(e) = &f {
                answers.unanswered();
                proxy.served(serving, if e.is_timeout() { 504 } else { 502 }, latency);
            }
            // A request read whole keeps its connection; a body left half-read cannot.
            let unread = !body.framing.done();
            let close = asker.close || unread || proxy.calls.stopping();
            let next = failed(client, proxy, &running, f, asker, close, bufs).await;
            return Forwarded::Done(match next {
                Next::Close if unread => Next::Linger,
                next => next,
            });
        }
    };
    answers.answered(
        StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_GATEWAY),
        latency,
    );
    proxy.served(serving, a.status, latency);
    if a.switching {
        let spliced = super::upgrade::splice(client, conn, a, route.running, bufs);
        return Forwarded::Done(Box::pin(spliced).await);
    }
    let tee = body.copy.take().and_then(|mut c| {
        // Answered before the body was all read: a copy must carry what the user sent, or none.
        if !body.framing.done() {
            c.body = None;
        }
        tee(proxy, c, &route, &a, &bufs.answer, latency)
    });
    let close = a.close;
    let relayed = super::relay::relay(client, proxy, conn, a, route.running, tee, bufs).await;
    Forwarded::Done(match (relayed && !close, body.framing.done()) {
        (true, _) => Next::KeepAlive,
        // Answered early: the rest of the body may still be on its way.
        (false, false) => Next::Linger,
        (false, true) => Next::Close,
    })
}

/// Who asks (what the answer must suit) and the request's body as it will be read: counted
/// against `MAX_REQUEST_BODY`, and copied for the mirror when testing wants this request (counted
/// when it does not, on its `first` pass only).
fn asker_and_body(
    proxy: &Proxy,
    req: &RequestHead,
    (route, first): (&Route, bool),
    head: &[u8],
) -> (Asker, BodyIn) {
    let testing = route.testing.as_ref().filter(|_| !req.upgrade);
    let wanted = testing.is_some() && proxy.mirror.wants(&req.method);
    // A WebSocket's handshake is never copied either: counted as a write is.
    if route.testing.is_some() && !wanted && first {
        let not_mirrored = &proxy.stats.not_mirrorable;
        not_mirrored.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let copy = testing.filter(|_| wanted).cloned().map(|target| Copy {
        target,
        method: req.method.clone(),
        head: head.to_vec(),
        body: Some(Vec::new()),
    });
    let asker = Asker {
        head: req.method == Method::HEAD,
        http10: req.http10,
        // Stopping is looked at once the answer comes ([`final_head`]), or on a failure.
        close: req.close,
        upgrade: req.upgrade,
    };
    let body = BodyIn {
        framing: req.body,
        seen: 0,
        limit: proxy.limits.body,
        copy_limit: proxy.mirror.max_body(),
        copy,
    };
    (asker, body)
}

/// The upstream phase: the request (and its body) to running, running's final answer head back.
async fn upstream(
    client: &mut TcpStream,
    proxy: &Proxy,
    (req, retry): (&RequestHead, bool),
    running: &Arc<super::Upstream>,
    asker: Asker,
    bufs: &mut Bufs,
    body: &mut BodyIn,
) -> Result<(TcpStream, Answer), Failure> {
    let (mut conn, body_done) = if req.body == Framing::Empty {
        let (answer, timer) = (&mut bufs.answer, &mut bufs.upstream_timer);
        let conn = exchange::send(&proxy.pool, running, &bufs.out, retry, answer, timer).await?;
        (conn, true)
    } else {
        send_with_body(client, proxy, req, running, bufs, body).await?
    };
    let asker = Asker {
        close: asker.close || !body_done,
        ..asker
    };
    let a = final_head(client, proxy, &mut conn, asker, bufs).await?;
    running.answers.seen();
    // A body left half-sent leaves running's connection in the middle of a request.
    let reusable = a.reusable && body_done;
    Ok((conn, Answer { reusable, ..a }))
}

/// Read running's answer head, relaying interim ones (to HTTP/1.1 users), until the final one.
async fn final_head(
    client: &mut TcpStream,
    proxy: &Proxy,
    conn: &mut TcpStream,
    asker: Asker,
    bufs: &mut Bufs,
) -> Result<Answer, Failure> {
    // Stopped while running answered: the user is told the connection ends with this answer,
    // rather than send a next request into the drain.
    let asker = Asker {
        close: asker.close || proxy.calls.stopping(),
        ..asker
    };
    loop {
        let a = exchange::read_head(
            conn,
            &mut bufs.answer,
            asker,
            &mut bufs.out,
            &mut bufs.upstream_timer,
        )
        .await?;
        if !a.interim {
            return Ok(a);
        }
        pass_interim(client, proxy, asker.http10, a.len, bufs).await?;
    }
}

/// An interim answer (rewritten in `bufs.out`) goes to an HTTP/1.1 user (an HTTP/1.0 one gets
/// none), and leaves `bufs.answer`.
async fn pass_interim(
    client: &mut TcpStream,
    proxy: &Proxy,
    http10: bool,
    len: usize,
    bufs: &mut Bufs,
) -> Result<(), Failure> {
    if !http10 {
        reply::write_timed(client, &bufs.out, proxy.send_timeout)
            .await
            .map_err(|_| Failure::Own(Unserved::ClientGone))?;
    }
    bufs.answer.drain(..len);
    Ok(())
}

/// Send the head and the user's body to running as the user framed it, checking its framing and
/// bound, while watching for an early answer (`100 Continue`, relayed; or a final one, after which
/// the rest of the body is not sent: `false`).
async fn send_with_body(
    client: &mut TcpStream,
    proxy: &Proxy,
    req: &RequestHead,
    running: &Arc<super::Upstream>,
    bufs: &mut Bufs,
    body: &mut BodyIn,
) -> Result<(TcpStream, bool), Failure> {
    let (mut conn, _) = exchange::connection(&proxy.pool, running, false).await?;
    match send_body(client, proxy, req, &mut conn, bufs, body).await {
        Ok(done) => Ok((conn, done)),
        Err(f) => {
            // Reset, not closed: an end of file would read as the whole body to an app that
            // does not check its length, and it would act on a part.
            let _ = conn.set_zero_linger();
            Err(f)
        }
    }
}

/// Up to this much of a body goes in the head's write (copied behind it); more is written from
/// the user's buffer, not copied.
const JOIN_BODY: usize = 16 * 1024;

/// [`send_with_body`] once connected: `Ok(false)` when running answered before the body was
/// all sent.
async fn send_body(
    client: &mut TcpStream,
    proxy: &Proxy,
    req: &RequestHead,
    conn: &mut TcpStream,
    bufs: &mut Bufs,
    body: &mut BodyIn,
) -> Result<bool, Failure> {
    // A body partly spilled has its first bytes in `buf`, then the spill; what follows them in
    // `buf` is the next request's.
    let first = bufs.spilled.as_ref().map_or(bufs.buf.len(), |(_, n)| *n);
    let took = body.take(&bufs.buf[..first])?;
    // A small body goes in one write with the head; a large one (read ahead) from where it is.
    let joined = took <= JOIN_BODY;
    if joined {
        bufs.out.extend_from_slice(&bufs.buf[..took]);
    }
    bufs.answer.clear();
    bufs.answer.reserve(ANSWER_READ);
    // The head goes from a buffer of its own: an interim answer is rewritten into `bufs.out`.
    let head = std::mem::take(&mut bufs.out);
    let mut sent = send_watching(client, proxy, req, conn, &head, bufs).await;
    bufs.out = head;
    if !joined && matches!(sent, Ok(true)) {
        let part = std::mem::take(&mut bufs.buf);
        sent = send_watching(client, proxy, req, conn, &part[..took], bufs).await;
        bufs.buf = part;
    }
    bufs.buf.drain(..took);
    if let (Some((spill, _)), Ok(true)) = (bufs.spilled.take(), &sent) {
        sent = send_spilled(client, proxy, req, conn, bufs, body, spill).await;
    }
    // What was read ahead is running's now: its room goes before the answer is relayed.
    bufs.release_ahead();
    if !sent? {
        return Ok(false);
    }
    while !body.framing.done() {
        // What is already here (the rest of a body that came while the request waited, behind
        // a spill) goes before anything more is read.
        if !bufs.buf.is_empty() {
            let took = body.take(&bufs.buf)?;
            let part = std::mem::take(&mut bufs.buf);
            let sent = send_watching(client, proxy, req, conn, &part[..took], bufs).await;
            bufs.buf = part;
            bufs.buf.drain(..took);
            if !sent? {
                return Ok(false);
            }
            continue;
        }
        tokio::select! {
            biased;
            r = conn.read_buf(&mut bufs.answer) => {
                match r {
                    Ok(1..) => {}
                    Ok(_) => return Err(UpstreamError::Closed.into()),
                    Err(e) => return Err(UpstreamError::Io(e).into()),
                }
                if early_answer(client, proxy, req, bufs).await? {
                    return Ok(false);
                }
            }
            r = bufs.head_timer.bound_for(proxy.body_timeout, client.read_buf(&mut bufs.buf)) => {
                if !matches!(r, Some(Ok(1..))) {
                    return Err(Failure::Own(Unserved::ClientGone));
                }
            }
        }
    }
    Ok(true)
}

/// The part of a body read ahead that spilled to disk, read back and sent to running a piece at a
/// time (through the body's count and the mirror's copy, as if it came from the user): `Ok(false)`
/// once running answered early.
async fn send_spilled(
    client: &mut TcpStream,
    proxy: &Proxy,
    req: &RequestHead,
    conn: &TcpStream,
    bufs: &mut Bufs,
    body: &mut BodyIn,
    mut spill: super::spill::Spill,
) -> Result<bool, Failure> {
    let mut piece = Vec::with_capacity(JOIN_BODY);
    while spill.pending() {
        piece.clear();
        spill.refill(&mut piece, JOIN_BODY).map_err(|e| {
            tracing::warn!("a request body kept on disk could not be read back: {e}");
            Failure::Own(Unserved::Disk)
        })?;
        let took = body.take(&piece)?;
        if !send_watching(client, proxy, req, conn, &piece[..took], bufs).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Write `bytes` to running while relaying what running says meanwhile: `Ok(false)` once running
/// gave its final answer early (it stays in `bufs.answer`, and the rest of the body is not sent),
/// even if running then closed or stopped reading.
async fn send_watching(
    client: &mut TcpStream,
    proxy: &Proxy,
    req: &RequestHead,
    conn: &TcpStream,
    bytes: &[u8],
    bufs: &mut Bufs,
) -> Result<bool, Failure> {
    let mut written = 0;
    while written < bytes.len() {
        let timeout = proxy.upstream_timeout;
        written += write_watching(conn, &bytes[written..], &mut bufs.answer, timeout).await?;
        if written < bytes.len() && early_answer(client, proxy, req, bufs).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Write `bytes` to running within `timeout` of each progress, reading into `answer` whatever
/// running sends meanwhile: how many bytes went, fewer than all once something came back.
async fn write_watching(
    conn: &TcpStream,
    bytes: &[u8],
    answer: &mut Vec<u8>,
    timeout: Duration,
) -> Result<usize, UpstreamError> {
    let mut written = 0;
    let mut deadline = std::pin::pin!(tokio::time::sleep(timeout));
    while written < bytes.len() {
        if answer.len() == answer.capacity() {
            answer.reserve(ANSWER_READ);
        }
        tokio::select! {
            biased;
            r = conn.readable() => {
                r.map_err(UpstreamError::Io)?;
                match conn.try_read_buf(answer) {
                    Ok(0) => return Err(UpstreamError::Closed),
                    Ok(_) => return Ok(written),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(UpstreamError::Io(e)),
                }
            }
            r = conn.writable() => {
                r.map_err(UpstreamError::Io)?;
                match conn.try_write(&bytes[written..]) {
                    Ok(n) => {
                        written += n;
                        deadline.as_mut().reset(tokio::time::Instant::now() + timeout);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    // Running may have answered, then closed: what it said is still to be read.
                    Err(e) => {
                        return match tokio::time::timeout(timeout, read_after(conn, answer)).await {
                            Ok(Ok(1..)) => Ok(written),
                            _ => Err(UpstreamError::Io(e)),
                        }
                    }
                }
            }
            () = &mut deadline => return Err(UpstreamError::Timeout(timeout)),
        }
    }
    Ok(written)
}

/// Read what waits on `conn` once the event loop has seen it (a reset or close makes the socket
/// readable, so this ends at once; `try_read_buf` alone would not look before then).
async fn read_after(conn: &TcpStream, answer: &mut Vec<u8>) -> std::io::Result<usize> {
    loop {
        conn.readable().await?;
        match conn.try_read_buf(answer) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            r => return r,
        }
    }
}

/// Running answered before the body was all sent: relay interim answers (and return `false`), or
/// say a final one came (`true`; it stays in `bufs.answer`).
async fn early_answer(
    client: &mut TcpStream,
    proxy: &Proxy,
    req: &RequestHead,
    bufs: &mut Bufs,
) -> Result<bool, Failure> {
    let asker = Asker {
        http10: req.http10,
        ..Asker::default()
    };
    loop {
        let Some(a) = super::answer::parse(&bufs.answer, asker, &mut bufs.out)
            .map_err(|e| Failure::Upstream(e.into()))?
        else {
            return Ok(false);
        };
        if !a.interim {
            return Ok(true);
        }
        pass_interim(client, proxy, req.http10, a.len, bufs).await?;
    }
}

/// A user's body on its way: framing, bytes so far, bounds, and the mirror's copy of it.
struct BodyIn {
    framing: Framing,
    /// Bytes of the body as sent: a chunked one's sizes, extensions and trailers count too, so
    /// `MAX_REQUEST_BODY` bounds everything a user can stream through to running.
    seen: u64,
    limit: u64,
    copy_limit: u64,
    copy: Option<Copy>,
}

impl BodyIn {
    /// How many of `bytes` belong to the body (checked, counted, copied for the mirror).
    fn take(&mut self, bytes: &[u8]) -> Result<usize, Failure> {
        let mut keep = self.copy.as_mut().and_then(|c| c.body.as_mut());
        let mut over_copy = false;
        let copy_limit = self.copy_limit;
        let took = self
            .framing
            .feed(bytes, &mut |d| {
                if let Some(k) = keep.as_mut() {
                    if (k.len() + d.len()) as u64 <= copy_limit {
                        k.extend_from_slice(d);
                    } else {
                        over_copy = true;
                    }
                }
            })
            .map_err(|BadChunk| Failure::Own(Unserved::BadBody))?;
        self.seen += took as u64;
        if over_copy {
            if let Some(c) = self.copy.as_mut() {
                c.body = None;
            }
        }
        if self.seen > self.limit {
            return Err(Failure::Own(Unserved::TooLarge));
        }
        Ok(took)
    }
}

/// The user gets understudy's answer for a request that running did not answer.
async fn failed(
    client: &mut TcpStream,
    proxy: &Proxy,
    running: &super::Upstream,
    f: Failure,
    asker: Asker,
    close: bool,
    bufs: &mut Bufs,
) -> Next {
    // A request without a body whose instance merely failed keeps its connection; one whose body
    // may be half-read cannot.
    let ending = Ending {
        head: asker.head,
        close,
        retry_after: match f {
            Failure::Own(u) => u.retry_after(),
            Failure::Upstream(_) => 0,
        },
    };
    let (status, text): (StatusCode, std::borrow::Cow<'static, str>) = match f {
        Failure::Own(u) => match u.answer(&proxy.stats) {
            Some((status, text)) => (status, text.into()),
            None => return Next::Close,
        },
        Failure::Upstream(e) => {
            let status = if e.is_timeout() {
                proxy.stats.gateway_timeout.fetch_add(1, Ordering::Relaxed);
                StatusCode::GATEWAY_TIMEOUT
            } else {
                proxy.stats.bad_gateway.fetch_add(1, Ordering::Relaxed);
                StatusCode::BAD_GATEWAY
            };
            (status, proxy.failure_text(running, &e, &bufs.out).into())
        }
    };
    let (text, timeout) = (text.as_bytes(), proxy.send_timeout);
    reply::send(client, &mut bufs.out, status, text, ending, timeout).await;
    if ending.close {
        Next::Close
    } else {
        Next::KeepAlive
    }
}

/// The mirror's tee for this answer: the copy's head and body, running's status and, for a
/// sampled copy, running's headers. None when the copy lacks the user's whole body (counted).
fn tee(
    proxy: &Proxy,
    copy: Copy,
    route: &Route,
    a: &Answer,
    answer: &[u8],
    latency: Duration,
) -> Option<Teed> {
    let Some(body) = copy.body else {
        proxy
            .stats
            .mirror_skipped_body
            .fetch_add(1, Ordering::Relaxed);
        return None;
    };
    let (path_and_query, headers) = head::copy_of(&copy.head)?;
    let diff = match proxy.mirror.sample() {
        mirror::Sampled::Yes(slot) => {
            let answered = super::answer::header_map(&answer[..a.len]);
            // An event stream has no end to compare, and would hold its place until the user
            // leaves: its copy goes uncompared (its place is given back here).
            (!event_stream(&answered)).then(|| {
                Box::new(mirror::DiffJob {
                    slot: Some(slot),
                    running: route.running.shared().clone(),
                    headers: answered,
                    accept_encoding: crate::diff::encoding::accept_encoding(&headers),
                })
            })
        }
        mirror::Sampled::No => None,
        mirror::Sampled::Busy => {
            proxy.stats.diff_skipped.fetch_add(1, Ordering::Relaxed);
            None
        }
    };
    let job = MirrorJob {
        target: copy.target,
        method: copy.method,
        path_and_query: Some(path_and_query),
        headers,
        body: Bytes::from(body),
        running_status: StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_GATEWAY),
        running_latency: latency,
        running_body: None,
        diff,
        secondary: route.secondary.clone(),
        replay: None,
    };
    Some(Teed {
        sampled: job.diff.is_some(),
        tee: Box::new(Tee::new(job, proxy.mirror.clone(), proxy.stats.clone())),
    })
}

/// Whether running's answer is a `text/event-stream` (server-sent events).
fn event_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"))
}

/// Keep a safe request without a body for replay, at most one per `RECORD_EVERY` (the check
/// first: at high traffic this is all a request pays) or one of an endpoint the verdict waits on
/// with nothing to replay, whether or not a build is tested; only methods the operator lets the
/// mirror copy (`MIRROR_METHODS`).
fn record(proxy: &Proxy, req: &RequestHead, rewritten: &[u8]) {
    let safe = req.method == Method::GET || req.method == Method::HEAD;
    if !safe || req.upgrade || req.body != Framing::Empty || !proxy.mirror.wants(&req.method) {
        return;
    }
    let recorder = proxy.mirror.recorder();
    let wanted = || {
        recorder.wanting()
            && head::path_of(rewritten).is_some_and(|p| recorder.wanted(&req.method, p))
    };
    if !recorder.due() && !wanted() {
        return;
    }
    if let Some((path_and_query, headers)) = head::copy_of(rewritten) {
        recorder.record(req.method.clone(), path_and_query, headers);
    }
}
