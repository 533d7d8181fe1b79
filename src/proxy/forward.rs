//! Upstream and answer phases of one user request: its head (and body, as the user framed it)
//! to running, running's interim answers and final answer back, its body read at running's pace
//! into understudy's buffers (up to `ANSWER_BUFFER` per answer, `ANSWER_MEMORY` in all) so a slow
//! reader never holds running's connection, and the copy handed to the mirror when it ends.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use super::answer::{Answer, Asker};
use super::bufs::{Bufs, Next};
use super::exchange::{self, ANSWER_READ};
use super::framing::{BadChunk, Framing};
use super::head::{self, RequestHead};
use super::mirror::{self, MirrorJob, Tee};
use super::pool::UpstreamError;
use super::reply::{self, Ending};
use super::{InflightGuard, Proxy, Route, BROKEN_ANSWERS};

/// Bytes every answer may hold before it counts against `ANSWER_MEMORY`.
const FREE_ANSWER: usize = 16 * 1024;

/// Answer memory left for the whole process (`ANSWER_MEMORY`), shared by every proxy thread.
#[derive(Debug)]
pub struct AnswerMemory(AtomicUsize);

impl AnswerMemory {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> AnswerMemory {
        AnswerMemory(AtomicUsize::new(bytes))
    }

    fn take(&self, n: usize) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(n)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.0.fetch_add(n, Ordering::AcqRel);
    }
}

/// Why a request got no answer from running.
enum Failure {
    /// Running failed (502) or timed out (504).
    Upstream(UpstreamError),
    /// The user's chunked body is not one (400).
    BadBody,
    /// The user's chunked body passed `MAX_REQUEST_BODY` (413).
    TooLarge,
    /// The user went away mid-body.
    ClientGone,
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

/// Forward `req` (its rewritten head in `bufs.out`, its body first in `bufs.buf`) to running and
/// relay the answer.
pub(super) async fn forward(
    client: &mut TcpStream,
    proxy: &Proxy,
    req: RequestHead,
    route: Route,
    bufs: &mut Bufs,
    stop: &CancellationToken,
) -> Next {
    let running = route.running.shared().clone();
    head::supply_host(&req, running.host.as_bytes(), &mut bufs.out);
    let copy = route
        .testing
        .clone()
        .filter(|_| !req.upgrade && proxy.mirror.wants(&req.method))
        .map(|target| Copy {
            target,
            method: req.method.clone(),
            head: bufs.out.clone(),
            body: Some(Vec::new()),
        });
    let asker = Asker {
        head: req.method == Method::HEAD,
        http10: req.http10,
        close: req.close || stop.is_cancelled(),
        upgrade: req.upgrade,
    };
    let mut body = BodyIn {
        framing: req.body,
        seen: 0,
        limit: proxy.limits.body,
        copy_limit: proxy.mirror.max_body(),
        copy,
    };
    let started = Instant::now();
    let answered = upstream(client, proxy, &req, &running, asker, bufs, &mut body).await;
    let latency = started.elapsed();
    let (conn, a) = match answered {
        Ok(x) => x,
        Err(f) => {
            // A request read whole keeps its connection; a body left half-read cannot.
            let close = asker.close || !body.framing.done();
            return failed(client, proxy, &running, f, asker, close, bufs).await;
        }
    };
    proxy.stats.running.answered(
        StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_GATEWAY),
        latency,
    );
    if a.switching {
        return Box::pin(super::upgrade::splice(client, conn, a, route.running, bufs)).await;
    }
    let tee = body
        .copy
        .take()
        .and_then(|c| tee(proxy, c, &route, &a, &bufs.answer, latency));
    let close = a.close;
    let relayed = relay(client, proxy, conn, a, route.running, tee, bufs).await;
    if relayed && !close {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

/// The upstream phase: the request (and its body) to running, running's final answer head back.
async fn upstream(
    client: &mut TcpStream,
    proxy: &Proxy,
    req: &RequestHead,
    running: &Arc<super::Upstream>,
    asker: Asker,
    bufs: &mut Bufs,
    body: &mut BodyIn,
) -> Result<(TcpStream, Answer), Failure> {
    let (mut conn, body_done) = if req.body == Framing::Empty {
        let (retry, timeout) = (exchange::retryable(&req.method), proxy.upstream_timeout);
        let answer = &mut bufs.answer;
        let conn = exchange::send(&proxy.pool, running, &bufs.out, retry, answer, timeout).await?;
        (conn, true)
    } else {
        send_with_body(client, proxy, req, running, bufs, body).await?
    };
    let asker = Asker {
        close: asker.close || !body_done,
        ..asker
    };
    let a = final_head(client, proxy, &mut conn, asker, bufs).await?;
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
    loop {
        let a = exchange::read_head(
            conn,
            &mut bufs.answer,
            asker,
            &mut bufs.out,
            proxy.upstream_timeout,
        )
        .await?;
        if !a.interim {
            return Ok(a);
        }
        if !asker.http10 {
            write_timed(client, &bufs.out, proxy.send_timeout)
                .await
                .map_err(|_| Failure::ClientGone)?;
        }
        bufs.answer.drain(..a.len);
    }
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
    let took = body.take(&bufs.buf)?;
    bufs.out.extend_from_slice(&bufs.buf[..took]);
    bufs.buf.drain(..took);
    let upstream_timeout = proxy.upstream_timeout;
    write_timed(&mut conn, &bufs.out, upstream_timeout).await?;
    bufs.answer.clear();
    bufs.answer.reserve(ANSWER_READ);
    while !body.framing.done() {
        tokio::select! {
            biased;
            r = conn.read_buf(&mut bufs.answer) => {
                match r {
                    Ok(1..) => {}
                    Ok(_) => return Err(UpstreamError::Closed.into()),
                    Err(e) => return Err(UpstreamError::Io(e).into()),
                }
                if early_answer(client, proxy, req, bufs).await? {
                    return Ok((conn, false));
                }
            }
            r = tokio::time::timeout(proxy.header_timeout, client.read_buf(&mut bufs.buf)) => {
                if !matches!(r, Ok(Ok(1..))) {
                    return Err(Failure::ClientGone);
                }
                let took = body.take(&bufs.buf)?;
                write_timed(&mut conn, &bufs.buf[..took], upstream_timeout).await?;
                bufs.buf.drain(..took);
            }
        }
    }
    Ok((conn, true))
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
        if !req.http10 {
            write_timed(client, &bufs.out, proxy.send_timeout)
                .await
                .map_err(|_| Failure::ClientGone)?;
        }
        bufs.answer.drain(..a.len);
    }
}

/// A user's body on its way: framing, bytes so far, bounds, and the mirror's copy of it.
struct BodyIn {
    framing: Framing,
    seen: u64,
    limit: u64,
    copy_limit: u64,
    copy: Option<Copy>,
}

impl BodyIn {
    /// How many of `bytes` belong to the body (checked, counted, copied for the mirror).
    fn take(&mut self, bytes: &[u8]) -> Result<usize, Failure> {
        let mut seen = self.seen;
        let mut keep = self.copy.as_mut().and_then(|c| c.body.as_mut());
        let mut over_copy = false;
        let copy_limit = self.copy_limit;
        let took = self
            .framing
            .feed(bytes, &mut |d| {
                seen += d.len() as u64;
                if let Some(k) = keep.as_mut() {
                    if (k.len() + d.len()) as u64 <= copy_limit {
                        k.extend_from_slice(d);
                    } else {
                        over_copy = true;
                    }
                }
            })
            .map_err(|BadChunk| Failure::BadBody)?;
        self.seen = seen;
        if over_copy {
            if let Some(c) = self.copy.as_mut() {
                c.body = None;
            }
        }
        if self.seen > self.limit {
            return Err(Failure::TooLarge);
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
        retry: false,
    };
    let (status, text): (StatusCode, std::borrow::Cow<'static, str>) = match f {
        Failure::ClientGone => return Next::Close,
        Failure::TooLarge => {
            proxy.stats.refused.fetch_add(1, Ordering::Relaxed);
            (StatusCode::PAYLOAD_TOO_LARGE, reply::TOO_LARGE.into())
        }
        Failure::BadBody => {
            proxy.stats.refused.fetch_add(1, Ordering::Relaxed);
            let why =
                "understudy: the chunked request body is not well-formed (RFC 9112 section 7.1)\n";
            (StatusCode::BAD_REQUEST, why.into())
        }
        Failure::Upstream(e) => {
            proxy.stats.running.unanswered();
            let status = if e.is_timeout() {
                proxy.stats.gateway_timeout.fetch_add(1, Ordering::Relaxed);
                StatusCode::GATEWAY_TIMEOUT
            } else {
                proxy.stats.bad_gateway.fetch_add(1, Ordering::Relaxed);
                StatusCode::BAD_GATEWAY
            };
            (status, proxy.failure_text(running, &e).into())
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
/// sampled copy, running's headers.
fn tee(
    proxy: &Proxy,
    copy: Copy,
    route: &Route,
    a: &Answer,
    answer: &[u8],
    latency: Duration,
) -> Option<Box<Tee>> {
    let Some(body) = copy.body else {
        proxy
            .stats
            .mirror_skipped_body
            .fetch_add(1, Ordering::Relaxed);
        return None;
    };
    let (path_and_query, headers) = head::copy_of(&copy.head)?;
    let diff = match proxy.mirror.sample() {
        mirror::Sampled::Yes(slot) => Some(Box::new(mirror::DiffJob {
            slot,
            running: route.running.shared().clone(),
            headers: super::answer::header_map(&answer[..a.len]),
            secondary: route.secondary.clone(),
        })),
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
    };
    Some(Box::new(Tee::new(
        job,
        proxy.mirror.clone(),
        proxy.stats.clone(),
    )))
}

/// Write all of `bytes` within `timeout` of no progress... as a whole write, bounded.
async fn write_timed(
    stream: &mut TcpStream,
    bytes: &[u8],
    timeout: Duration,
) -> Result<(), UpstreamError> {
    match tokio::time::timeout(timeout, stream.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(UpstreamError::Io(e)),
        Err(_) => Err(UpstreamError::Timeout(timeout)),
    }
}

/// The answer's body on its way, and what is left to do with running's connection.
struct Upstream<'a> {
    conn: Option<TcpStream>,
    running: Option<InflightGuard>,
    framing: Framing,
    dechunk: bool,
    reusable: bool,
    extra: bool,
    broken: bool,
    tee: Option<Box<Tee>>,
    proxy: &'a Proxy,
}

impl Upstream<'_> {
    /// Take `bytes` read from running into `out` (as they are, or their data for a dechunked
    /// answer), feeding the tee; bytes past the body's end mark the connection unusable.
    fn take(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let dechunk = self.dechunk;
        let tee = &mut self.tee;
        let took = self.framing.feed(bytes, &mut |d| {
            if dechunk {
                out.extend_from_slice(d);
            }
            if let Some(t) = tee.as_mut() {
                t.feed(d);
            }
        });
        match took {
            Ok(n) => {
                if !dechunk {
                    out.extend_from_slice(&bytes[..n]);
                }
                self.extra |= n < bytes.len();
            }
            Err(BadChunk) => self.broken = true,
        }
    }

    fn done(&self) -> bool {
        self.conn.is_none()
    }

    /// The body was read to its end, or broke: running's connection goes back to the pool (or is
    /// closed), its in-flight count is released and the copy offered, before the user has it all.
    fn finish(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let complete = !self.broken;
        if let Some(mut t) = self.tee.take() {
            t.finish(complete);
        }
        if let Some(running) = self.running.take() {
            if complete && self.reusable && !self.extra {
                self.proxy.pool.put(running.shared().clone(), conn);
            }
        }
        if self.broken {
            BROKEN_ANSWERS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Relay the answer (its head in `bufs.out`, its first bytes in `bufs.answer`) to the user; running
/// is read at its own pace into `bufs.out` while the user takes it at theirs. Whether the user
/// got the whole answer.
async fn relay(
    client: &mut TcpStream,
    proxy: &Proxy,
    conn: TcpStream,
    a: Answer,
    running: InflightGuard,
    tee: Option<Box<Tee>>,
    bufs: &mut Bufs,
) -> bool {
    let mut up = Upstream {
        conn: Some(conn),
        running: Some(running),
        framing: a.framing,
        dechunk: a.dechunk,
        reusable: a.reusable,
        extra: false,
        broken: false,
        tee,
        proxy,
    };
    let Bufs { out, answer, .. } = bufs;
    up.take(&answer[a.len..], out);
    let mut sent = 0;
    let mut held = 0;
    let mut clock = Clock::default();
    let complete = loop {
        if up.broken || up.framing.done() {
            up.finish();
        }
        if sent < out.len() {
            match client.try_write(&out[sent..]) {
                Ok(n) => {
                    sent += n;
                    clock.wrote();
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => break false,
            }
        }
        if sent == out.len() {
            out.clear();
            sent = 0;
            if up.done() {
                break !up.broken;
            }
        }
        let can_read = !up.done() && room_to_read(proxy, out, &mut sent, &mut held);
        let can_write = sent < out.len();
        let (read_by, write_by) = clock.deadlines(proxy, can_read, can_write);
        tokio::select! {
            r = read_some(&mut up.conn, answer), if can_read => match r {
                Ok(0) if up.framing == Framing::Close => up.framing = Framing::Empty,
                Ok(0) | Err(_) => up.broken = true,
                Ok(_) => {
                    up.take(answer, out);
                    clock.read();
                }
            },
            r = client.writable(), if can_write => if r.is_err() {
                break false;
            },
            () = read_by, if can_read => up.broken = true,
            () = write_by, if can_write => break false,
        }
    };
    up.broken |= !complete && !up.done();
    up.finish();
    proxy.answer_memory.give_back(held);
    complete
}

/// The relay's two deadlines: running must send something within `UPSTREAM_TIMEOUT` of the last
/// bytes (counted only while understudy is reading), the user must take something within
/// `SEND_TIMEOUT` (counted only while there is something to take). Created on first need: most
/// answers never wait.
#[derive(Default)]
struct Clock {
    timers: Option<Pin<Box<Sleep>>>,
    send: Option<Pin<Box<Sleep>>>,
    reading: bool,
    writing: bool,
    read_progress: bool,
    write_progress: bool,
}

impl Clock {
    fn read(&mut self) {
        self.read_progress = true;
    }

    fn wrote(&mut self) {
        self.write_progress = true;
    }

    /// The two timers, each moved on when its side made progress or just started waiting.
    fn deadlines(
        &mut self,
        proxy: &Proxy,
        can_read: bool,
        can_write: bool,
    ) -> (Pin<&mut Sleep>, Pin<&mut Sleep>) {
        let now = tokio::time::Instant::now();
        let restart_read = can_read && (!self.reading || self.read_progress);
        let restart_write = can_write && (!self.writing || self.write_progress);
        (self.reading, self.writing) = (can_read, can_write);
        (self.read_progress, self.write_progress) = (false, false);
        let read = self
            .timers
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(proxy.upstream_timeout)));
        if restart_read {
            read.as_mut().reset(now + proxy.upstream_timeout);
        }
        let write = self
            .send
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(proxy.send_timeout)));
        if restart_write {
            write.as_mut().reset(now + proxy.send_timeout);
        }
        (read.as_mut(), write.as_mut())
    }
}

/// Read from running's connection into `answer` (cleared first).
async fn read_some(conn: &mut Option<TcpStream>, answer: &mut Vec<u8>) -> std::io::Result<usize> {
    answer.clear();
    if answer.capacity() < ANSWER_READ {
        answer.reserve(ANSWER_READ);
    }
    match conn.as_mut() {
        Some(c) => c.read_buf(answer).await,
        None => std::future::pending().await,
    }
}

/// Whether one more read from running fits: within `ANSWER_BUFFER` for this answer, and past its
/// free part, within `ANSWER_MEMORY` (`held` counts what this answer took of it).
fn room_to_read(proxy: &Proxy, out: &mut Vec<u8>, sent: &mut usize, held: &mut usize) -> bool {
    if out.capacity() - out.len() >= ANSWER_READ {
        return true;
    }
    if *sent > 0 {
        out.drain(..*sent);
        *sent = 0;
        if out.capacity() - out.len() >= ANSWER_READ {
            return true;
        }
    }
    let grow = out.capacity().max(ANSWER_READ);
    if out.capacity() + grow > proxy.answer_buffer.max(FREE_ANSWER) {
        return false;
    }
    let counted = (out.capacity() + grow).saturating_sub(FREE_ANSWER.max(*held + FREE_ANSWER));
    if counted > 0 && !proxy.answer_memory.take(counted) {
        return false;
    }
    *held += counted;
    out.reserve(grow);
    true
}
