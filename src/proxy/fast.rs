//! The plain path: a well-formed HTTP/1.1 `GET` or `HEAD` without a body, that is not mirrored,
//! relayed to running without hyper. Its request head is parsed in place (httparse, as hyper
//! does), rewritten into one buffer (hop-by-hop headers dropped, `X-Forwarded-For` appended) and
//! sent on a keep-alive connection of this thread; running's answer head is parsed and rewritten
//! the same way, and its body copied as it comes, framed as running framed it.
//!
//! Anything else (a body, another method, an upgrade, a smuggling attempt, an oversized or
//! malformed head, a request to mirror, nothing running) hands the connection to hyper from that
//! request on, bytes already read included (`framing::Sniffed` gives them first): the plain path
//! never answers what it does not fully understand. Measured in docs/benchmarks.md.

use std::mem::MaybeUninit;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::pool::{self, UpstreamError, IDLE_TIMEOUT, MAX_IDLE};
use super::{Proxy, Upstream, BROKEN_ANSWERS};

/// Header slots parsed on the stack, for a request head and for an answer head (hyper's bound).
const SLOTS: usize = 100;

/// Largest answer head taken from running (hyper's client allows about as much).
const MAX_ANSWER_HEAD: usize = 64 * 1024;

/// First size of the buffer running's answers are read into.
const ANSWER_BUFFER: usize = 8 * 1024;

/// Largest that buffer grows to while a large body is copied through it.
const MAX_BODY_READ: usize = 64 * 1024;

/// What the plain path did with a connection.
pub(super) enum Outcome {
    /// The connection is done (closed by either side, timed out, or stopped).
    Closed,
    /// A request the plain path does not take: these bytes, from that request's first byte on,
    /// and the rest of the connection are hyper's.
    Hyper(Vec<u8>),
}

/// A request head the plain path takes (its rewritten form is in the output buffer).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Plain {
    /// Bytes of the head, the whole request.
    len: usize,
    /// A `HEAD` request: its answer has no body whatever its headers say.
    head: bool,
    /// The user asked to close after this answer.
    close: bool,
}

/// What a user's buffered bytes are.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Head {
    /// Not a whole head yet.
    Partial,
    /// A plain request, rewritten.
    Plain(Plain),
    /// Something for hyper to answer.
    Hyper,
}

/// Whether `name` is `lower` (ASCII, any case); `lower` is lower case.
fn is(name: &[u8], lower: &[u8]) -> bool {
    name.len() == lower.len() && name.eq_ignore_ascii_case(lower)
}

/// The comma-separated tokens of a header value, trimmed, empty ones left out.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Parse the user's request head in `buf` and, if the plain path takes it, write running's form of
/// it into `out`: same request line and headers, less the hop-by-hop ones, with the user's address
/// appended to `X-Forwarded-For`.
pub(super) fn prepare(buf: &[u8], max_headers: usize, forwarded: &[u8], out: &mut Vec<u8>) -> Head {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; SLOTS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        buf,
        &mut slots[..max_headers.min(SLOTS)],
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Hyper,
    };
    let (Some(method), Some(path), Some(1)) = (req.method, req.path, req.version) else {
        return Head::Hyper;
    };
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Head::Hyper,
    };
    // Origin form only, bytes that hyper's URI parser takes as they are; the rest is hyper's.
    if !path.starts_with('/') || !path.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'#') {
        return Head::Hyper;
    }
    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let (mut host, mut close, mut forwarded_for) = (false, false, None);
    for h in req.headers.iter() {
        let (name, value) = (h.name.as_bytes(), h.value);
        match name.len() {
            2 if is(name, b"te") => continue,
            4 if is(name, b"host") => host = true,
            6 if is(name, b"expect") => return Head::Hyper,
            7 if is(name, b"upgrade") => return Head::Hyper,
            7 if is(name, b"trailer") => continue,
            10 if is(name, b"keep-alive") => continue,
            10 if is(name, b"connection") => {
                for t in tokens(value) {
                    if is(t, b"close") {
                        close = true;
                    } else if !is(t, b"keep-alive") {
                        // An upgrade, or headers named as hop-by-hop: hyper's path strips those.
                        return Head::Hyper;
                    }
                }
                continue;
            }
            14 if is(name, b"content-length") && value.trim_ascii() != b"0" => return Head::Hyper,
            15 if is(name, b"x-forwarded-for") => {
                if forwarded_for.replace(value).is_some() {
                    return Head::Hyper;
                }
                continue;
            }
            16 if is(name, b"proxy-connection") => continue,
            17 if is(name, b"transfer-encoding") => return Head::Hyper,
            _ => {}
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if !host {
        return Head::Hyper;
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if let Some(prev) = forwarded_for {
        out.extend_from_slice(prev);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(forwarded);
    out.extend_from_slice(b"\r\n\r\n");
    Head::Plain(Plain { len, head, close })
}

/// How the body of an answer ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body (or its end reached).
    Empty,
    /// This many more bytes.
    Length(u64),
    /// Chunked, relayed as it is: where the parser is.
    Chunked(Chunk),
    /// Until running closes the connection.
    Close,
}

/// Where a chunked body's parser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunk {
    /// In a chunk-size line's digits.
    Size { n: u64, digits: u8 },
    /// In a chunk extension.
    Ext(u64),
    /// After the size line's CR.
    SizeLf(u64),
    /// In a chunk's data, this many bytes left.
    Data(u64),
    /// After a chunk's data.
    DataCr,
    /// After a chunk's data and CR.
    DataLf,
    /// At the start of a trailer line (or the final blank line).
    TrailerStart,
    /// In a trailer line.
    TrailerLine,
    /// After the final CR.
    TrailerLf,
    /// Past the final blank line.
    Done,
}

/// A chunked body that is not one.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct BadChunk;

impl Chunk {
    const START: Chunk = Chunk::Size { n: 0, digits: 0 };

    fn after_size(n: u64) -> Chunk {
        if n == 0 {
            Chunk::TrailerStart
        } else {
            Chunk::Data(n)
        }
    }

    /// Read on through `bytes`; how many of them belong to the body.
    fn feed(&mut self, bytes: &[u8]) -> Result<usize, BadChunk> {
        let mut i = 0;
        while i < bytes.len() {
            match *self {
                Chunk::Done => return Ok(i),
                Chunk::Data(n) => {
                    let take = n.min((bytes.len() - i) as u64);
                    i += take as usize;
                    *self = if take == n {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(n - take)
                    };
                    continue;
                }
                _ => {}
            }
            let b = bytes[i];
            i += 1;
            *self = match (*self, b) {
                (Chunk::Size { n, digits }, b) if b.is_ascii_hexdigit() => {
                    if digits >= 15 {
                        return Err(BadChunk);
                    }
                    let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                    Chunk::Size {
                        n: n * 16 + d,
                        digits: digits + 1,
                    }
                }
                (Chunk::Size { n, digits: 1.. }, b';' | b' ' | b'\t') => Chunk::Ext(n),
                (Chunk::Size { n, digits: 1.. } | Chunk::Ext(n), b'\r') => Chunk::SizeLf(n),
                (Chunk::Size { n, digits: 1.. } | Chunk::Ext(n) | Chunk::SizeLf(n), b'\n') => {
                    Chunk::after_size(n)
                }
                (Chunk::Ext(n), _) => Chunk::Ext(n),
                (Chunk::DataCr, b'\r') => Chunk::DataLf,
                (Chunk::DataCr | Chunk::DataLf, b'\n') => Chunk::START,
                (Chunk::TrailerStart, b'\r') => Chunk::TrailerLf,
                (Chunk::TrailerStart | Chunk::TrailerLf, b'\n') => Chunk::Done,
                (Chunk::TrailerLine, b'\n') => Chunk::TrailerStart,
                (Chunk::TrailerStart | Chunk::TrailerLine, _) => Chunk::TrailerLine,
                _ => return Err(BadChunk),
            };
        }
        Ok(i)
    }
}

impl Framing {
    /// Read on through `bytes`; how many of them belong to the body.
    fn feed(&mut self, bytes: &[u8]) -> Result<usize, BadChunk> {
        match self {
            Framing::Empty => Ok(0),
            Framing::Close => Ok(bytes.len()),
            Framing::Length(n) => {
                let take = (*n).min(bytes.len() as u64);
                *n -= take;
                if *n == 0 {
                    *self = Framing::Empty;
                }
                Ok(take as usize)
            }
            Framing::Chunked(c) => {
                let took = c.feed(bytes)?;
                if *c == Chunk::Done {
                    *self = Framing::Empty;
                }
                Ok(took)
            }
        }
    }

    fn done(&self) -> bool {
        *self == Framing::Empty
    }
}

/// Running's answer head, rewritten for the user.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Answer {
    /// Bytes of the head in running's buffer.
    len: usize,
    /// Its status code.
    status: u16,
    /// An interim answer (1xx): dropped, the real one follows.
    interim: bool,
    /// How its body ends.
    framing: Framing,
    /// Whether running's connection can carry another request after this answer.
    reusable: bool,
    /// Whether the user's connection is closed after it.
    close: bool,
}

/// Parse running's answer head in `buf` (`None`: not whole yet) and write the user's form of it
/// into `out`: status line as HTTP/1.1, headers less the hop-by-hop ones, `Connection: close`
/// when the user's connection ends with it.
pub(super) fn answer_head(
    buf: &[u8],
    to_head: bool,
    close: bool,
    out: &mut Vec<u8>,
) -> Result<Option<Answer>, String> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; SLOTS];
    let mut res = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut res, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("an answer head that is not HTTP/1.x ({e})")),
    };
    let (Some(version), Some(status)) = (res.version, res.code) else {
        return Err("an answer head without a status".to_string());
    };
    if status == 101 {
        return Err("101 Switching Protocols to a request that asked for no upgrade".to_string());
    }
    if (100..200).contains(&status) {
        return Ok(Some(Answer {
            len,
            status,
            interim: true,
            framing: Framing::Empty,
            reusable: false,
            close,
        }));
    }
    let (mut keep_alive, mut named, mut chunked, mut coded) = (version == 1, false, false, false);
    let mut length: Option<u64> = None;
    for h in res.headers.iter() {
        let name = h.name.as_bytes();
        if is(name, b"connection") {
            for t in tokens(h.value) {
                if is(t, b"close") {
                    keep_alive = false;
                } else if is(t, b"keep-alive") {
                    keep_alive = true;
                } else {
                    named = true;
                }
            }
        } else if is(name, b"transfer-encoding") {
            coded = true;
            chunked = tokens(h.value).last().is_some_and(|t| is(t, b"chunked"));
        } else if is(name, b"content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| "an answer with an invalid Content-Length".to_string())?;
            if length.is_some_and(|m| m != n) {
                return Err("an answer with two different Content-Lengths".to_string());
            }
            length = Some(n);
        }
    }
    let framing = if to_head || status == 204 || status == 304 {
        Framing::Empty
    } else if coded {
        if chunked {
            Framing::Chunked(Chunk::START)
        } else {
            Framing::Close
        }
    } else {
        match length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    };
    let close = close || framing == Framing::Close;
    // Headers named by running's `Connection` are hop-by-hop too.
    let connection_names: &[u8] = if named {
        res.headers
            .iter()
            .find(|h| is(h.name.as_bytes(), b"connection"))
            .map_or(&[], |h| h.value)
    } else {
        &[]
    };
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa3(status).as_slice());
    out.push(b' ');
    out.extend_from_slice(res.reason.unwrap_or_default().as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in res.headers.iter() {
        let name = h.name.as_bytes();
        let hop = match name.len() {
            2 => is(name, b"te"),
            7 => is(name, b"trailer") || is(name, b"upgrade"),
            10 => is(name, b"connection") || is(name, b"keep-alive"),
            14 => coded && is(name, b"content-length"),
            16 => is(name, b"proxy-connection"),
            _ => false,
        };
        if hop || (named && tokens(connection_names).any(|t| t.eq_ignore_ascii_case(name))) {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Some(Answer {
        len,
        status,
        interim: false,
        framing,
        reusable: keep_alive && framing != Framing::Close,
        close,
    }))
}

/// A status code's three digits.
fn itoa3(status: u16) -> [u8; 3] {
    let s = status.min(999);
    [
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]
}

/// An idle connection to an instance and when it went idle.
struct Idle {
    upstream: Arc<Upstream>,
    stream: TcpStream,
    since: Instant,
}

/// One proxy thread's idle keep-alive connections for the plain path, newest last.
#[derive(Default)]
pub(super) struct Pool {
    idle: Mutex<Vec<Idle>>,
}

impl Pool {
    /// The newest idle connection to `upstream`; stale ones on the way are closed.
    fn take(&self, upstream: &Arc<Upstream>) -> Option<TcpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            if Arc::ptr_eq(&idle[i].upstream, upstream) {
                let c = idle.remove(i);
                if c.since.elapsed() < IDLE_TIMEOUT {
                    return Some(c.stream);
                }
            }
        }
        None
    }

    fn put(&self, upstream: Arc<Upstream>, stream: TcpStream) {
        let since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        // The plain path only ever talks to running: a connection to another instance is to a
        // former running (promoted away, stopped), so it goes, as do stale ones and the oldest
        // over the bound. Oldest first, so this is rarely more than a look at the first.
        while idle.first().is_some_and(|c| {
            idle.len() >= MAX_IDLE
                || !Arc::ptr_eq(&c.upstream, &upstream)
                || since.duration_since(c.since) >= IDLE_TIMEOUT
        }) {
            idle.remove(0);
        }
        idle.push(Idle {
            upstream,
            stream,
            since,
        });
    }
}

/// Send `request` to `upstream` and wait for the first bytes of its answer (into `answer`), on an
/// idle connection or a new one. A `GET` or `HEAD` that an idle connection closed before any
/// answer is sent again on another: running may have closed it while idle.
async fn exchange(
    pool: &Pool,
    upstream: &Arc<Upstream>,
    request: &[u8],
    answer: &mut Vec<u8>,
) -> Result<TcpStream, UpstreamError> {
    loop {
        let (mut conn, reused) = match pool.take(upstream) {
            Some(c) => (c, true),
            None => (Box::pin(pool::open(upstream)).await?, false),
        };
        answer.clear();
        // An empty Vec would be read into 64 bytes at a time.
        answer.reserve(ANSWER_BUFFER);
        let got = match conn.write_all(request).await {
            Ok(()) => conn.read_buf(answer).await,
            Err(e) => Err(e),
        };
        match got {
            Ok(1..) => return Ok(conn),
            _ if reused => continue,
            Ok(_) => return Err(UpstreamError::Closed),
            Err(e) => return Err(UpstreamError::Io(e)),
        }
    }
}

/// Serve `client` on the plain path until it closes, or until a request is hyper's.
pub(super) async fn serve(
    client: &mut TcpStream,
    proxy: &Proxy,
    forwarded: &[u8],
    stop: &CancellationToken,
) -> Outcome {
    // A connection that never sends a request costs its 4 KiB read buffer only; the others are
    // sized by their first use.
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut out: Vec<u8> = Vec::new();
    let mut answer: Vec<u8> = Vec::new();
    let header_timeout = proxy.header_timeout;
    let max_head = proxy.limits.header_bytes;
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    let mut room = Box::pin(proxy.room.make_room.notified());
    let timer = tokio::time::sleep(header_timeout);
    tokio::pin!(timer);
    loop {
        // A whole request head, within HEADER_TIMEOUT (which also bounds an idle keep-alive).
        timer
            .as_mut()
            .reset(tokio::time::Instant::now() + header_timeout);
        let plain = loop {
            if !buf.is_empty() {
                match prepare(&buf, proxy.limits.headers, forwarded, &mut out) {
                    Head::Plain(p) => break p,
                    Head::Hyper => return Outcome::Hyper(buf),
                    Head::Partial if buf.len() >= max_head => return Outcome::Hyper(buf),
                    Head::Partial => {}
                }
            }
            tokio::select! {
                biased;
                r = client.read_buf(&mut buf) => match r {
                    Ok(1..) => {}
                    _ => return Outcome::Closed,
                },
                () = &mut timer => return Outcome::Closed,
                () = &mut stopped => return Outcome::Closed,
                () = &mut room => {
                    if proxy.room.chosen() {
                        return Outcome::Closed;
                    }
                    room.set(proxy.room.make_room.notified());
                }
            }
        };
        let route = match proxy.route() {
            Ok(r) => r,
            Err(_) => return Outcome::Hyper(buf),
        };
        let method = if plain.head {
            http::Method::HEAD
        } else {
            http::Method::GET
        };
        if route.testing.is_some() && proxy.mirror.wants(&method) {
            return Outcome::Hyper(buf);
        }
        proxy.stats.requests.fetch_add(1, Ordering::Relaxed);
        let running = route.running.shared();
        let started = Instant::now();
        let sent = exchange(&proxy.fast_pool, running, &out, &mut answer).await;
        let close = plain.close || stop.is_cancelled();
        // Running's answer head (interim ones dropped), rewritten into `out`.
        let head = match sent {
            Ok(mut conn) => loop {
                match answer_head(&answer, plain.head, close, &mut out) {
                    Ok(Some(a)) if a.interim => {
                        answer.drain(..a.len);
                    }
                    Ok(Some(a)) => break Ok((conn, a)),
                    Ok(None) if answer.len() < MAX_ANSWER_HEAD => {
                        match conn.read_buf(&mut answer).await {
                            Ok(1..) => {}
                            Ok(_) => break Err(UpstreamError::Closed),
                            Err(e) => break Err(UpstreamError::Io(e)),
                        }
                    }
                    Ok(None) => {
                        break Err(UpstreamError::BadAnswer(
                            "an answer head larger than 64 KiB".to_string(),
                        ))
                    }
                    Err(why) => break Err(UpstreamError::BadAnswer(why)),
                }
            },
            Err(e) => Err(e),
        };
        let latency = started.elapsed();
        let (mut conn, a) = match head {
            Ok(x) => x,
            Err(e) => {
                proxy.stats.running.unanswered();
                let text = proxy.bad_gateway_text(route.running.upstream(), &e);
                bad_gateway_answer(&text, close, &mut out);
                if client.write_all(&out).await.is_err() || close {
                    return Outcome::Closed;
                }
                buf.drain(..plain.len);
                continue;
            }
        };
        proxy.stats.running.answered(
            StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_GATEWAY),
            latency,
        );
        // The head and what came with it of the body, in one write.
        let mut framing = a.framing;
        let mut broken = false;
        let took = match framing.feed(&answer[a.len..]) {
            Ok(n) => n,
            Err(BadChunk) => {
                broken = true;
                0
            }
        };
        let mut extra = a.len + took < answer.len();
        out.extend_from_slice(&answer[a.len..a.len + took]);
        if client.write_all(&out).await.is_err() {
            return Outcome::Closed;
        }
        while !broken && !framing.done() {
            if answer.len() == answer.capacity() && answer.capacity() < MAX_BODY_READ {
                // A large body: read it in larger pieces (fewer system calls), up to a bound.
                answer.reserve(answer.capacity());
            }
            answer.clear();
            match conn.read_buf(&mut answer).await {
                Ok(0) if framing == Framing::Close => break,
                Ok(1..) => {}
                _ => {
                    broken = true;
                    break;
                }
            }
            let took = match framing.feed(&answer) {
                Ok(n) => n,
                Err(BadChunk) => {
                    broken = true;
                    break;
                }
            };
            extra = took < answer.len();
            if client.write_all(&answer[..took]).await.is_err() {
                return Outcome::Closed;
            }
        }
        if broken {
            // The user got a head and part of a body: closing is the only honest end.
            BROKEN_ANSWERS.fetch_add(1, Ordering::Relaxed);
            return Outcome::Closed;
        }
        if a.reusable && !extra {
            proxy.fast_pool.put(running.clone(), conn);
        } else {
            let _ = conn.shutdown().await;
        }
        drop(route);
        if a.close {
            let _ = client.shutdown().await;
            return Outcome::Closed;
        }
        if plain.len == buf.len() {
            buf.clear();
        } else {
            buf.drain(..plain.len);
        }
    }
}

/// A 502 as the plain path writes it: the same words as hyper's path.
fn bad_gateway_answer(text: &str, close: bool, out: &mut Vec<u8>) {
    use std::io::Write;
    out.clear();
    let _ = write!(
        out,
        "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n{}\r\n{text}",
        text.len(),
        if close { "connection: close\r\n" } else { "" }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(raw: &str) -> (Head, String) {
        let mut out = Vec::new();
        let head = prepare(raw.as_bytes(), 100, b"10.0.0.9", &mut out);
        (head, String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_plain_get_is_rewritten_for_running() {
        let raw = "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\nTE: trailers\r\nAccept: */*\r\n\r\nGET /next";
        let (head, out) = prepared(raw);
        assert_eq!(
            head,
            Head::Plain(Plain {
                len: raw.len() - "GET /next".len(),
                head: false,
                close: false
            })
        );
        assert_eq!(
            out,
            "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nx-forwarded-for: 10.0.0.9\r\n\r\n"
        );
    }

    #[test]
    fn forwarded_for_is_appended_and_close_is_noted() {
        let raw =
            "HEAD / HTTP/1.1\r\nhost: x\r\nX-Forwarded-For: 1.2.3.4\r\nconnection: close\r\n\r\n";
        let (head, out) = prepared(raw);
        assert_eq!(
            head,
            Head::Plain(Plain {
                len: raw.len(),
                head: true,
                close: true
            })
        );
        assert_eq!(
            out,
            "HEAD / HTTP/1.1\r\nhost: x\r\nx-forwarded-for: 1.2.3.4, 10.0.0.9\r\n\r\n"
        );
    }

    #[test]
    fn a_partial_head_waits_for_more() {
        assert_eq!(prepared("GET / HTTP/1.1\r\nHost: x\r\n").0, Head::Partial);
    }

    #[test]
    fn anything_but_a_plain_request_is_hyper_s() {
        for raw in [
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
            "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
            "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: x\r\n\r\n",
            "GET http://other.host/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
            "CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: x-secret\r\nX-Secret: 1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: a\r\nX-Forwarded-For: b\r\n\r\n",
            "GET /a#frag HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHo st: x\r\n\r\n",
        ] {
            assert_eq!(prepared(raw).0, Head::Hyper, "{raw:?}");
        }
    }

    #[test]
    fn more_headers_than_allowed_are_hyper_s_to_refuse() {
        let raw = "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n";
        let mut out = Vec::new();
        assert_eq!(prepare(raw.as_bytes(), 2, b"ip", &mut out), Head::Hyper);
        assert!(matches!(
            prepare(raw.as_bytes(), 3, b"ip", &mut out),
            Head::Plain(_)
        ));
    }

    fn answered(raw: &str, to_head: bool, close: bool) -> (Answer, String) {
        let mut out = Vec::new();
        let a = answer_head(raw.as_bytes(), to_head, close, &mut out)
            .unwrap()
            .expect("a whole head");
        (a, String::from_utf8(out).unwrap())
    }

    #[test]
    fn an_answer_head_is_rewritten_and_framed() {
        let (a, out) = answered(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\nhi",
            false,
            false,
        );
        assert_eq!(
            (a.status, a.framing, a.reusable, a.close),
            (200, Framing::Length(2), true, false)
        );
        assert_eq!(out, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
        assert_eq!(
            a.len,
            out.len() + "Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n".len()
        );

        let (a, out) = answered(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\nConnection: close, X-Private\r\nX-Private: 1\r\n\r\n",
            false,
            true,
        );
        assert_eq!(
            (a.framing, a.reusable, a.close),
            (Framing::Chunked(Chunk::START), false, true)
        );
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn answers_without_a_length_end_with_their_connection() {
        let (a, out) = answered("HTTP/1.0 200 OK\r\nServer: old\r\n\r\n", false, false);
        assert_eq!(
            (a.framing, a.reusable, a.close),
            (Framing::Close, false, true)
        );
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nServer: old\r\nconnection: close\r\n\r\n"
        );
        // An HTTP/1.0 answer with a length and keep-alive keeps its connection.
        let (a, _) = answered(
            "HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n",
            false,
            false,
        );
        assert_eq!((a.framing, a.reusable), (Framing::Length(1), true));
    }

    #[test]
    fn head_204_304_and_interim_answers_have_no_body() {
        let (a, _) = answered("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, false);
        assert_eq!((a.framing, a.reusable), (Framing::Empty, true));
        let (a, _) = answered("HTTP/1.1 204 No Content\r\n\r\n", false, false);
        assert_eq!(a.framing, Framing::Empty);
        let (a, _) = answered(
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            false,
            false,
        );
        assert_eq!(a.framing, Framing::Empty);
        let (a, _) = answered(
            "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
            false,
            false,
        );
        assert!(a.interim);
    }

    #[test]
    fn broken_answer_heads_are_errors() {
        let mut out = Vec::new();
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
            "SSH-2.0-OpenSSH\r\n\r\n",
        ] {
            assert!(
                answer_head(raw.as_bytes(), false, false, &mut out).is_err(),
                "{raw:?}"
            );
        }
        assert_eq!(
            answer_head(b"HTTP/1.1 200 OK\r\n", false, false, &mut out),
            Ok(None)
        );
    }

    #[test]
    fn a_chunked_body_ends_where_it_ends_however_it_is_split() {
        let body =
            b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nTrailer: x\r\n\r\n";
        let mut input = body.to_vec();
        input.extend_from_slice(b"NEXT");
        for split in 0..input.len() {
            let mut c = Chunk::START;
            let first = c.feed(&input[..split]).unwrap();
            assert_eq!(first, split.min(body.len()), "split at {split}");
            let second = c.feed(&input[split..]).unwrap();
            assert_eq!(first + second, body.len(), "split at {split}");
            assert_eq!(c, Chunk::Done);
        }
        let mut c = Chunk::START;
        assert_eq!(c.feed(b"0\r\n\r\n"), Ok(5));
        assert_eq!(c, Chunk::Done);
    }

    #[test]
    fn a_chunked_body_that_is_not_one_is_an_error() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"2\r\nabX",
            b"0\r\n\rX",
            b"1000000000000000\r\n",
        ] {
            let mut c = Chunk::START;
            assert_eq!(
                c.feed(bad),
                Err(BadChunk),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_length_takes_what_it_says() {
        let mut f = Framing::Length(5);
        assert_eq!(f.feed(b"abc"), Ok(3));
        assert!(!f.done());
        assert_eq!(f.feed(b"deNEXT"), Ok(2));
        assert!(f.done());
    }
}
