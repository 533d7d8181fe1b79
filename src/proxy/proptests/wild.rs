//! Generators of wild input: the words that steer the parsers, put together any way.

use super::*;

/// Strings that steer the request parser, for request lines and headers.
pub(super) const WILD_METHODS: &[&str] = &[
    "GET", "POST", "HEAD", "OPTIONS", "CONNECT", "get", "G@T", "",
];
pub(super) const WILD_TARGETS: &[&str] = &[
    "/",
    "/a?b=1",
    "*",
    "http://h/p",
    "http://h:8080",
    "HTTP://h?q",
    "https://h/x?y",
    "http://u@h/",
    "http:///x",
    "a",
    "/#f",
    "//x",
];
pub(super) const WILD_VERSIONS: &[&str] = &["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "http/1.1", ""];
pub(super) const WILD_NAMES: &[&str] = &[
    "Host",
    "host",
    "Content-Length",
    "content-length",
    "Transfer-Encoding",
    "Connection",
    "connection",
    "Keep-Alive",
    "Proxy-Connection",
    "TE",
    "Upgrade",
    "X-Forwarded-For",
    "X-A",
    "x-a",
    "Trailer",
    "Expect",
    "Host ",
    "X A",
    "",
];
pub(super) const WILD_VALUES: &[&str] = &[
    "x",
    "0",
    "5",
    "+5",
    "-1",
    "1,1",
    "18446744073709551615",
    "99999999999999999999",
    "chunked",
    "Chunked",
    "gzip, chunked",
    "chunked, gzip",
    "close",
    "keep-alive",
    "upgrade",
    "Upgrade",
    "websocket",
    "content-length",
    "transfer-encoding",
    "host",
    "X-A",
    "x-a, close",
    "1.2.3.4",
    "",
    " ",
];
pub(super) const WILD_NLS: &[&str] = &["\r\n", "\r\n", "\r\n", "\n", "\r"];

/// Whole header lines that steer the parsers: framing (valid and not), `Connection` options and
/// names, upgrades, forwarding.
pub(super) const WILD_LINES: &[&str] = &[
    "Host: x",
    "host: y:8080",
    "Content-Length: 5",
    "Content-Length: 0",
    "content-length: 05",
    "Content-Length: +5",
    "Transfer-Encoding: chunked",
    "Transfer-Encoding: gzip, chunked",
    "Transfer-Encoding: chunked, gzip",
    "Connection: close",
    "Connection: keep-alive",
    "Connection: Upgrade",
    "Connection: x-a",
    "Connection: X-A, close",
    "Connection: content-length",
    "Connection: transfer-encoding",
    "Connection: host",
    "Connection: trailer",
    "Upgrade: websocket",
    "X-Forwarded-For: 1.2.3.4",
    "Keep-Alive: timeout=5",
    "Proxy-Connection: keep-alive",
    "TE: trailers",
    "Trailer: x-t",
    "X-A: 1",
    "Expect: 100-continue",
];

/// A header line of steering words, put together any way (or a folded continuation line).
pub(super) fn wild_line() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        3 => select(WILD_VALUES).prop_map(str::to_string),
        1 => "[ -~]{0,10}",
    ];
    let nl = prop_oneof![6 => Just("\r\n"), 1 => select(WILD_NLS)];
    prop_oneof![
        6 => (select(WILD_LINES), nl).prop_map(|(l, nl)| format!("{l}{nl}")),
        3 => (select(WILD_NAMES), select(&[":", ": ", ":\t"][..]), value, select(WILD_NLS))
            .prop_map(|(n, c, v, nl)| format!("{n}{c}{v}{nl}")),
        1 => select(&[" folded\r\n", "\tx\r\n"][..]).prop_map(str::to_string),
    ]
}

/// Request lines the engine forwards (origin, asterisk and absolute forms; HTTP/1.0 and 1.1).
pub(super) const REQUEST_LINES: &[&str] = &[
    "GET / HTTP/1.1",
    "POST /a?b=1 HTTP/1.1",
    "PUT /x HTTP/1.0",
    "OPTIONS * HTTP/1.1",
    "GET http://h:8080 HTTP/1.1",
    "GET HTTP://h?q HTTP/1.1",
    "HEAD https://h/x?y HTTP/1.0",
];

/// A request line of steering words, put together any way.
pub(super) fn wild_request_line() -> impl Strategy<Value = String> {
    (
        select(WILD_METHODS),
        select(&[" ", "  "][..]),
        select(WILD_TARGETS),
        select(WILD_VERSIONS),
    )
        .prop_map(|(m, sp, t, v)| format!("{m}{sp}{t} {v}"))
}

/// A request head of steering words (mostly a line the engine forwards, mostly a `Host`
/// first), then maybe some bytes.
pub(super) fn wild_request() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            3 => select(REQUEST_LINES).prop_map(str::to_string),
            1 => wild_request_line(),
        ],
        select(&["\r\nHost: h\r\n", "\r\nHost: h\r\n", "\r\n", "\n"][..]),
        vec(wild_line(), 0..8),
        select(WILD_NLS),
        vec(any::<u8>(), 0..8),
    )
        .prop_map(|(line, host, lines, nl, tail)| {
            let mut s = line + host;
            s.extend(lines);
            s.push_str(nl);
            [s.into_bytes(), tail].concat()
        })
}

/// An answer head of steering words, then maybe some bytes.
pub(super) fn wild_answer() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![3 => Just("HTTP/1.1"), 1 => select(&["HTTP/1.0", "HTTP/2", "ICY"][..])],
        prop_oneof![
            3 => select(&["200", "404"][..]),
            1 => select(&["100", "101", "103", "204", "304", "999", "000", "20"][..]),
        ],
        select(&[" OK", "", " ", " Not Modified"][..]),
        vec(wild_line(), 0..8),
        select(WILD_NLS),
        vec(any::<u8>(), 0..8),
    )
        .prop_map(|(v, code, reason, lines, nl, tail)| {
            let mut s = format!("{v} {code}{reason}\r\n");
            s.extend(lines);
            s.push_str(nl);
            [s.into_bytes(), tail].concat()
        })
}

/// `bytes` with a few bytes replaced, inserted or removed.
pub(super) fn mutated(bytes: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (bytes, vec((any::<Index>(), 0u8..3, any::<u8>()), 1..4)).prop_map(|(mut b, edits)| {
        for (at, op, byte) in edits {
            let i = at.index(b.len() + 1);
            match op {
                0 if i < b.len() => b[i] = byte,
                1 => b.insert(i, byte),
                _ if i < b.len() => {
                    b.remove(i);
                }
                _ => b.push(byte),
            }
        }
        b
    })
}

/// Bytes from outside, shown as an escaped byte string when a property fails (so a shrunk
/// counterexample can be copied into a test as it is).
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Raw(pub(super) Vec<u8>);

impl std::fmt::Debug for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

impl std::ops::Deref for Raw {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// Any bytes, steering words, a valid head with a few edits, or a valid head with `Connection`
/// lines naming any of its headers: what a user may send.
pub(super) fn any_request_bytes() -> impl Strategy<Value = Raw> {
    prop_oneof![
        vec(any::<u8>(), 0..256).prop_map(Raw),
        wild_request().prop_map(Raw),
        mutated(wild_request()).prop_map(Raw),
        mutated(request().prop_map(|r| r.render())).prop_map(Raw),
        request_naming_any(),
    ]
}

/// The same for what an app may send.
pub(super) fn any_answer_bytes() -> impl Strategy<Value = Raw> {
    prop_oneof![
        vec(any::<u8>(), 0..256).prop_map(Raw),
        wild_answer().prop_map(Raw),
        mutated(wild_answer()).prop_map(Raw),
        mutated(reply().prop_map(|r| r.render())).prop_map(Raw),
        reply_naming_any(),
    ]
}
