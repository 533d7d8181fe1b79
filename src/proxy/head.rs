//! Read-head phase: a user's request head, parsed in place (httparse, as hyper and pingora do),
//! checked against the rules of RFC 9112 that keep a proxy and its app agreeing on where a message
//! ends, and rewritten into the head running receives (docs/http1.md says what changes). The one
//! place where a request head's headers are dropped, added or refused.

use std::mem::MaybeUninit;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, StatusCode};

use super::fields::{content_length, is, named_by_connection};
use super::fields::{ConnectionTokens, Copier, Name, Names, NO_NAMES};
use super::framing::{Chunk, Framing};

/// Header slots parsed on the stack, for a request head and for an answer head (hyper's bound).
pub const SLOTS: usize = crate::config::MOST_HEADERS;

/// A request head the engine forwards (its rewritten form is in the output buffer).
#[derive(Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// Bytes of the head in the user's buffer.
    pub len: usize,
    /// Its method.
    pub method: Method,
    /// How its body ends.
    pub body: Framing,
    /// The user's connection closes after this answer.
    pub close: bool,
    /// An HTTP/1.0 request: no interim answers, no chunked answer, keep-alive only when asked.
    pub http10: bool,
    /// It asked for a protocol upgrade (a WebSocket handshake).
    pub upgrade: bool,
    /// It came without `Host` (HTTP/1.0): the instance's goes at `host_at` in the rewritten head.
    pub needs_host: bool,
    /// Where, in the rewritten head, a supplied `Host` line goes (just after the request line).
    pub host_at: usize,
    /// It asked `Expect: 100-continue`: the user waits for a `100` before it sends its body.
    pub expect: bool,
}

/// A request understudy answers itself, with why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The status to answer.
    pub status: StatusCode,
    /// The line of text saying what failed and what to do.
    pub why: &'static str,
}

/// What a user's buffered bytes are.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole head yet.
    Partial,
    /// A request to forward, rewritten.
    Request(RequestHead),
    /// A request refused: nothing is forwarded and the connection closes after the answer.
    Refused(Refusal),
}

const fn refusal(status: StatusCode, why: &'static str) -> Parsed {
    Parsed::Refused(Refusal { status, why })
}

const MALFORMED: Parsed = refusal(
    StatusCode::BAD_REQUEST,
    "understudy: the request head is not valid HTTP/1.1 (RFC 9112); fix the client\n",
);
const BAD_TARGET: Parsed = refusal(
    StatusCode::BAD_REQUEST,
    "understudy: the request target is not a path (or an http:// URL); send /path?query\n",
);
const NO_HOST: Parsed = refusal(
    StatusCode::BAD_REQUEST,
    "understudy: an HTTP/1.1 request needs exactly one Host header (RFC 9112 section 3.2)\n",
);
const BAD_HOST: Parsed = refusal(
    StatusCode::BAD_REQUEST,
    "understudy: the Host is not a host name or address with an optional port (RFC 9112 section 3.2); send Host: name[:port]\n",
);
const BAD_ASTERISK: Parsed = refusal(
    StatusCode::BAD_REQUEST,
    "understudy: the target * is for OPTIONS only (RFC 9112 section 3.2.4); send /path?query\n",
);
const SMUGGLING: Parsed = refusal(
    StatusCode::BAD_REQUEST,
    "understudy: a request with both Content-Length and Transfer-Encoding is refused (request smuggling); send one of them\n",
);
const BAD_LENGTH: Parsed = refusal(
    StatusCode::BAD_REQUEST,
    "understudy: Content-Length must be one header of decimal digits\n",
);
const BAD_CODING: Parsed = refusal(
    StatusCode::BAD_REQUEST,
    "understudy: the only Transfer-Encoding accepted in a request is one `chunked`\n",
);
/// RFC 9112 §6.1: `Transfer-Encoding` in an HTTP/1.0 request is faulty framing (nginx: 400).
const HTTP10_CODING: Parsed = refusal(
    StatusCode::BAD_REQUEST,
    "understudy: an HTTP/1.0 request cannot be chunked (Transfer-Encoding); send Content-Length \
     or use HTTP/1.1\n",
);
const CONNECT: Parsed = refusal(
    StatusCode::METHOD_NOT_ALLOWED,
    "understudy: CONNECT is not supported; this is a reverse proxy\n",
);
const TOO_LARGE_HEAD: Parsed = refusal(
    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    "understudy: the request has more header fields than MAX_HEADERS allows\n",
);

/// Bytes a request target may hold as understudy forwards it: visible ASCII but `#`.
fn target_byte(b: u8) -> bool {
    (0x21..0x7f).contains(&b) && b != b'#'
}

/// Whether a `Host` value, or an absolute target's authority, is `host[:port]` (RFC 9112 §3.2,
/// RFC 3986 §3.2.2): a name of letters, digits and `-._~!$&'()*+,;=%`, or a bracketed IPv6
/// literal, then at most a colon and a port up to 65535. Empty is allowed (a target without
/// authority). A value with a blank, a slash, an `@` or a quote is refused, as nginx does: apps
/// build links and cache keys from it.
fn host_value(v: &[u8]) -> bool {
    let v = v.trim_ascii();
    if v.first() == Some(&b'[') {
        return match v.iter().position(|&b| b == b']') {
            Some(end) if end > 1 => {
                v[1..end]
                    .iter()
                    .all(|&b| HOST_BYTE[b as usize] & LITERAL != 0)
                    && port_ok(&v[end + 1..])
            }
            _ => false,
        };
    }
    let mut i = 0;
    while i < v.len() && HOST_BYTE[v[i] as usize] & NAME != 0 {
        i += 1;
    }
    port_ok(&v[i..])
}

/// What follows a `Host`'s host: nothing, or a colon and a port up to 65535 (one pass).
fn port_ok(rest: &[u8]) -> bool {
    match rest {
        [] => true,
        [b':', digits @ ..] if digits.len() <= 5 => {
            let mut n = 0u32;
            for &d in digits {
                if !d.is_ascii_digit() {
                    return false;
                }
                n = n * 10 + u32::from(d - b'0');
            }
            n <= 65535
        }
        _ => false,
    }
}

/// [`HOST_BYTE`]'s mark of a byte a host name may hold (RFC 3986 §3.2.2 reg-name).
const NAME: u8 = 1;
/// [`HOST_BYTE`]'s mark of a byte a bracketed IP literal may hold.
const LITERAL: u8 = 2;

/// What each byte may be in a `Host` value: one look-up per byte on the request path.
const HOST_BYTE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() {
            t[b] = NAME | LITERAL;
        }
        b += 1;
    }
    let names = b"-._~!$&'()*+,;=%";
    let mut i = 0;
    while i < names.len() {
        t[names[i] as usize] |= NAME;
        i += 1;
    }
    t[b'.' as usize] |= LITERAL;
    t[b':' as usize] |= LITERAL;
    t[b'%' as usize] |= LITERAL;
    t
};

/// The target of a `method` request split into its path and authority (see [`split_target`]),
/// or why it is refused: `CONNECT` (tunnels would bypass the mirror, and understudy is not a
/// forward proxy), bytes a target may not hold, or the rules of [`target_refusal`].
fn checked_target<'t>(
    method: &Method,
    target: &'t str,
) -> Result<(&'t str, Option<&'t str>), Parsed> {
    if *method == Method::CONNECT {
        return Err(CONNECT);
    }
    if !target.bytes().all(target_byte) {
        return Err(BAD_TARGET);
    }
    let (path, authority) = split_target(target).ok_or(BAD_TARGET)?;
    match target_refusal(method, path, authority) {
        Some(refused) => Err(refused),
        None => Ok((path, authority)),
    }
}

/// Why a target split into `path` and `authority` is refused: `*` but for `OPTIONS` (RFC 9112
/// §3.2.4), an authority that is no `host[:port]`.
fn target_refusal(method: &Method, path: &str, authority: Option<&str>) -> Option<Parsed> {
    if path == "*" && method != Method::OPTIONS {
        return Some(BAD_ASTERISK);
    }
    authority
        .filter(|a| !host_value(a.as_bytes()))
        .map(|_| BAD_HOST)
}

/// The target's path and query and, for an absolute form, its authority (the path may then be
/// empty or start with `?`: the origin form needs a `/` before it, RFC 9112 §3.2.1).
fn split_target(target: &str) -> Option<(&str, Option<&str>)> {
    if target.starts_with('/') || target == "*" {
        return Some((target, None));
    }
    let lower = target
        .get(..8)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let rest = if lower.starts_with("http://") {
        &target[7..]
    } else if lower.starts_with("https://") {
        &target[8..]
    } else {
        return None;
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    Some((path, Some(authority)))
}

/// What a request's headers say, read in one pass with each one's [`Name`]: what its
/// `Connection` lines say, its host and its framing.
struct Seen {
    conn: ConnectionTokens,
    hosts: usize,
    length: Option<u64>,
    chunked: bool,
    /// An `Upgrade` line offers a protocol other than `h2c`.
    upgrade: bool,
    forwarded_for: bool,
    /// An `Expect: 100-continue` line.
    expect: bool,
}

impl Seen {
    /// Read the headers, their names into `names`, refusing a framing that two parsers could
    /// read two ways.
    fn of(headers: &[httparse::Header<'_>], names: &mut Names) -> Result<Seen, Parsed> {
        let mut seen = Seen {
            conn: ConnectionTokens::default(),
            hosts: 0,
            length: None,
            chunked: false,
            upgrade: false,
            forwarded_for: false,
            expect: false,
        };
        for (h, slot) in headers.iter().zip(names.iter_mut()) {
            let (name, value) = (Name::of(h.name.as_bytes()), h.value);
            *slot = name;
            match name {
                Name::Host => {
                    if !host_value(value) {
                        return Err(BAD_HOST);
                    }
                    seen.hosts += 1;
                }
                Name::ContentLength => {
                    if seen.length.is_some() {
                        return Err(BAD_LENGTH);
                    }
                    seen.length = Some(content_length(value).ok_or(BAD_LENGTH)?);
                }
                Name::TransferEncoding => {
                    if seen.chunked || !is(value.trim_ascii(), b"chunked") {
                        return Err(BAD_CODING);
                    }
                    seen.chunked = true;
                }
                Name::Upgrade => seen.upgrade |= !h2c_only(value),
                Name::Connection => seen.conn.read(value),
                Name::XForwardedFor => seen.forwarded_for = true,
                Name::Expect => seen.expect |= is(value.trim_ascii(), b"100-continue"),
                _ => {}
            }
        }
        if seen.chunked && seen.length.is_some() {
            return Err(SMUGGLING);
        }
        Ok(seen)
    }
}

/// Whether an `Upgrade` value offers nothing but HTTP/2 over cleartext (`h2c`), as Java's
/// `HttpClient` and `curl --http2` do on every plain request: the request is then an ordinary
/// one (served, and mirrored, as such) and the offer goes no further, as nginx drops it.
fn h2c_only(value: &[u8]) -> bool {
    super::fields::tokens(value).all(|t| is(t, b"h2c"))
}

/// Parse the user's request head in `buf` and, if it is to be forwarded, write running's form of
/// it into `out`: the request line as HTTP/1.1 in origin form, the headers less the hop-by-hop
/// ones, the user's address (`forwarded`) appended to `X-Forwarded-For`. `Expect` goes on only
/// when `expect_on` (bodies stream to running as they come, `REQUEST_BUFFER=0`, and running
/// answers it); else understudy answers it.
pub fn parse(
    buf: &[u8],
    max_headers: usize,
    forwarded: &[u8],
    expect_on: bool,
    out: &mut Vec<u8>,
) -> Parsed {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; SLOTS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        buf,
        &mut slots[..max_headers.clamp(1, SLOTS)],
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return TOO_LARGE_HEAD,
        Err(_) => return MALFORMED,
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return MALFORMED;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return MALFORMED;
    };
    let (path, authority) = match checked_target(&method, target) {
        Ok(split) => split,
        Err(refused) => return refused,
    };
    let headers = &*req.headers;
    let http10 = version == 0;
    let mut names = NO_NAMES;
    let seen = match Seen::of(headers, &mut names) {
        Ok(seen) => seen,
        Err(refused) => return refused,
    };
    if http10 && seen.chunked {
        return HTTP10_CODING;
    }
    let hosts = seen.hosts;
    if hosts > 1 || (hosts == 0 && !http10 && authority.is_none()) {
        return NO_HOST;
    }
    let body = match (seen.chunked, seen.length) {
        (true, _) => Framing::Chunked(Chunk::START),
        (false, Some(n)) if n > 0 => Framing::Length(n),
        _ => Framing::Empty,
    };
    let conn = seen.conn;
    let upgrade = seen.upgrade && conn.upgrade;
    out.clear();
    let mut copier = Copier::new(buf);
    let host_at = request_line(&mut copier, &method, path, authority, out);
    let absolute = authority.is_some();
    write_headers(
        headers,
        &names,
        &seen,
        (upgrade, absolute, expect_on),
        &mut copier,
        out,
    );
    copier.flush(out);
    let ends = (seen.forwarded_for, upgrade);
    end_head(headers, &names, ends, forwarded, out);
    Parsed::Request(RequestHead {
        len,
        method,
        body,
        close: conn.close || (http10 && !conn.keep_alive),
        http10,
        upgrade,
        needs_host: hosts == 0 && authority.is_none(),
        host_at,
        expect: seen.expect,
    })
}

/// The request line in origin form as HTTP/1.1 (taken from the head as it stands when it is
/// that), then the absolute form's authority as `Host`; where that `Host` goes in `out`.
fn request_line(
    copier: &mut Copier<'_>,
    method: &Method,
    path: &str,
    authority: Option<&str>,
    out: &mut Vec<u8>,
) -> usize {
    let method = method.as_str().as_bytes();
    let at = method.len() + 1;
    let end = at + path.len();
    if authority.is_none()
        && copier.has_slice(0, method)
        && copier.has(method.len(), b" ")
        && copier.at(path.as_bytes()) == Some(at)
        && copier.has(end, b" HTTP/1.1\r\n")
    {
        copier.take(0, end + 11, out);
        return end + 11;
    }
    out.extend_from_slice(method);
    out.push(b' ');
    if !path.starts_with('/') && path != "*" {
        out.push(b'/');
    }
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let host_at = out.len();
    if let Some(a) = authority {
        out.extend_from_slice(b"Host: ");
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    host_at
}

/// The user's headers that go on, in their order.
fn write_headers(
    headers: &[httparse::Header<'_>],
    names: &Names,
    seen: &Seen,
    (upgrade, absolute, expect_on): (bool, bool, bool),
    copier: &mut Copier<'_>,
    out: &mut Vec<u8>,
) {
    for (h, &class) in headers.iter().zip(names) {
        let name = h.name.as_bytes();
        let named = || seen.conn.names && named_by_connection(headers, names, name, class);
        let drop = match class {
            Name::Connection | Name::HopByHop | Name::XForwardedFor | Name::Mark | Name::Forged => {
                true
            }
            Name::Expect => !expect_on,
            Name::Upgrade => !upgrade || named(),
            Name::Host => absolute,
            Name::ContentLength | Name::TransferEncoding | Name::Close => false,
            Name::Other => named(),
        };
        if !drop {
            copier.field(name, h.value.trim_ascii(), out);
        }
    }
}

/// The lines understudy writes last: `connection: upgrade` for an upgrade, then
/// `x-forwarded-for` (the values the user sent, if `sent`, and then its address), and the blank
/// line.
fn end_head(
    headers: &[httparse::Header<'_>],
    names: &Names,
    (sent, upgrade): (bool, bool),
    forwarded: &[u8],
    out: &mut Vec<u8>,
) {
    if upgrade {
        out.extend_from_slice(b"connection: upgrade\r\n");
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if sent {
        forwarded_for(headers, names, out);
    }
    out.extend_from_slice(forwarded);
    out.extend_from_slice(b"\r\n\r\n");
}

/// The values of the user's `X-Forwarded-For` lines (all lines, in order), each followed by `, `.
fn forwarded_for(headers: &[httparse::Header<'_>], names: &Names, out: &mut Vec<u8>) {
    for (h, _) in headers
        .iter()
        .zip(names)
        .filter(|(_, n)| **n == Name::XForwardedFor)
    {
        let v = h.value.trim_ascii();
        if !v.is_empty() {
            out.extend_from_slice(v);
            out.extend_from_slice(b", ");
        }
    }
}

/// Put `host: <authority>` where a request without `Host` needs it (rare: HTTP/1.0 only).
pub fn supply_host(head: &RequestHead, authority: &[u8], out: &mut Vec<u8>) {
    if head.needs_host {
        let line = [b"Host: ", authority, b"\r\n"].concat();
        out.splice(head.host_at..head.host_at, line);
    }
}

/// Take back what [`supply_host`] put in for `authority`: the request goes to another instance.
pub fn withdraw_host(head: &RequestHead, authority: &[u8], out: &mut Vec<u8>) {
    if head.needs_host {
        let len = b"Host: ".len() + authority.len() + 2;
        out.drain(head.host_at..head.host_at + len);
    }
}

/// The path (without its query) of a rewritten head's origin-form target, read from its request
/// line without parsing the rest: `None` for any other target.
pub fn path_of(rewritten: &[u8]) -> Option<&str> {
    let line = rewritten.split(|b| *b == b'\n').next()?;
    let mut parts = line.split(|b| *b == b' ');
    let target = parts.nth(1)?;
    let path = target.split(|b| *b == b'?').next()?;
    path.starts_with(b"/")
        .then(|| std::str::from_utf8(path).ok())?
}

/// The path and query and the headers of a rewritten head (for a mirrored copy); `None` when its
/// target is not one the mirror can send (`*`).
pub fn copy_of(rewritten: &[u8]) -> Option<(PathAndQuery, HeaderMap)> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; SLOTS];
    let mut req = httparse::Request::new(&mut []);
    httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, rewritten, &mut slots)
        .ok()?;
    let path = PathAndQuery::try_from(req.path?).ok()?;
    if !path.as_str().starts_with('/') {
        return None;
    }
    let mut map = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) {
            map.append(k, v);
        }
    }
    Some((path, map))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `host[:port]`, by RFC 3986's bytes; the reviewer's values are refused.
    #[test]
    fn host_values_are_names_or_literals_with_a_port() {
        for ok in [
            "",
            "x",
            "127.0.0.1:19200",
            "a_b.example:80",
            "[::1]",
            "[::1]:8080",
            "[fe80::1%25eth0]",
            "xn--bcher-kva.example",
            "a:",
            " a.b ",
            "a,b",
            "a:65535",
        ] {
            assert!(host_value(ok.as_bytes()), "{ok:?}");
        }
        for bad in [
            "a b",
            "a/b",
            "a\"<script>",
            "a@evil",
            "[::1",
            "[]",
            "[::1]x",
            "a:99999",
            "a:65536",
            "a:1:2",
            "a:x",
            "é",
            "a\tb",
            "[a b]",
        ] {
            assert!(!host_value(bad.as_bytes()), "{bad:?}");
        }
    }

    fn parsed(raw: &str) -> (Parsed, String) {
        let mut out = Vec::new();
        let p = parse(raw.as_bytes(), 100, b"10.0.0.9", false, &mut out);
        (p, String::from_utf8(out).unwrap())
    }

    fn request(raw: &str) -> (RequestHead, String) {
        match parsed(raw) {
            (Parsed::Request(r), out) => (r, out),
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    #[test]
    fn a_get_is_rewritten_for_running() {
        let raw = "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\nTE: trailers\r\nAccept: */*\r\n\r\nGET /next";
        let (r, out) = request(raw);
        assert_eq!(r.len, raw.len() - "GET /next".len());
        assert_eq!((r.body, r.close, r.http10), (Framing::Empty, false, false));
        assert_eq!(
            out,
            "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nx-forwarded-for: 10.0.0.9\r\n\r\n"
        );
        let (path, headers) = copy_of(out.as_bytes()).unwrap();
        assert_eq!(path.as_str(), "/a?b=1");
        assert_eq!(headers["x-forwarded-for"], "10.0.0.9");
    }

    #[test]
    fn every_connection_line_names_hop_by_hop_headers() {
        let raw = "GET / HTTP/1.1\r\nX-A: 1\r\nHost: x\r\nConnection: x-a\r\nConnection: X-B, close\r\nX-B: 2\r\nX-C: 3\r\nX-Forwarded-For: 1.2.3.4\r\nx-forwarded-for: 5.6.7.8\r\n\r\n";
        let (r, out) = request(raw);
        assert!(r.close);
        assert_eq!(
            out,
            "GET / HTTP/1.1\r\nHost: x\r\nX-C: 3\r\nx-forwarded-for: 1.2.3.4, 5.6.7.8, 10.0.0.9\r\n\r\n"
        );
    }

    #[test]
    fn bodies_are_framed_and_framing_attacks_refused() {
        let (r, _) = request("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(r.body, Framing::Length(5));
        let (r, out) = request("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(r.body, Framing::Chunked(Chunk::START));
        assert!(out.contains("Transfer-Encoding: chunked\r\n"), "{out}");
        for (raw, status) in [
            ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1,1\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHo st: x\r\n\r\n", 400),
            ("GET /a#frag HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("GET example.com HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: x\r\nA: \x01\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", 431),
        ] {
            let mut out = Vec::new();
            match parse(raw.as_bytes(), 3, b"ip", false, &mut out) {
                Parsed::Refused(r) => assert_eq!(r.status.as_u16(), status, "{raw:?}"),
                other => panic!("{raw:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn absolute_form_http10_and_upgrades() {
        let (r, out) =
            request("GET http://example.com:8080/p?q=1 HTTP/1.1\r\nHost: other\r\nA: b\r\n\r\n");
        assert!(!r.needs_host);
        assert_eq!(
            out,
            "GET /p?q=1 HTTP/1.1\r\nHost: example.com:8080\r\nA: b\r\nx-forwarded-for: 10.0.0.9\r\n\r\n"
        );
        let (r, mut out) = request("GET / HTTP/1.0\r\nA: b\r\n\r\n");
        assert!(r.http10 && r.close && r.needs_host);
        let mut bytes = std::mem::take(&mut out).into_bytes();
        supply_host(&r, b"127.0.0.1:9", &mut bytes);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:9\r\nA: b\r\nx-forwarded-for: 10.0.0.9\r\n\r\n"
        );
        let (r, _) = request("GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n");
        assert!(r.http10 && !r.close);
        let (r, out) = request(
            "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        );
        assert!(r.upgrade);
        assert_eq!(
            out,
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nconnection: upgrade\r\nx-forwarded-for: 10.0.0.9\r\n\r\n"
        );
        // Java's HttpClient on every plain request: an ordinary request, the offer dropped.
        let (r, out) = request(
            "GET /a HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nHost: x\r\nHTTP2-Settings: AAEAAEAAAAIAAAABAAMAAABkAAQBAAAAAAUAAEAA\r\nUpgrade: h2c\r\nUser-Agent: Java-http-client/17\r\n\r\n",
        );
        assert!(!r.upgrade);
        assert_eq!(
            out,
            "GET /a HTTP/1.1\r\nHost: x\r\nUser-Agent: Java-http-client/17\r\nx-forwarded-for: 10.0.0.9\r\n\r\n"
        );
        let (r, _) = request(
            "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: h2c, websocket\r\n\r\n",
        );
        assert!(r.upgrade, "another protocol offered too");
    }

    #[test]
    fn bare_lf_heads_are_read_and_forwarded_with_crlf() {
        let (_, out) = request("GET / HTTP/1.1\nHost: x\n\n");
        assert_eq!(
            out,
            "GET / HTTP/1.1\r\nHost: x\r\nx-forwarded-for: 10.0.0.9\r\n\r\n"
        );
        assert_eq!(parsed("GET / HTTP/1.1\r\nHost: x\r\n").0, Parsed::Partial);
    }

    #[test]
    fn path_of_reads_the_request_lines_origin_form_path() {
        assert_eq!(
            path_of(b"GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"),
            Some("/a/b")
        );
        assert_eq!(path_of(b"HEAD / HTTP/1.1\r\n\r\n"), Some("/"));
        assert_eq!(path_of(b"OPTIONS * HTTP/1.1\r\n\r\n"), None);
        assert_eq!(path_of(b"GET"), None);
        assert_eq!(path_of(b"GET /\xff HTTP/1.1\r\n"), None);
    }
}
