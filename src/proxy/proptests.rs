//! Property tests of the engine's three parsers of outside bytes: `head` (users' request heads),
//! `answer` (instances' answer heads) and `framing` (bodies both ways).
//!
//! Unit tests (in each module) pin the cases docs/http1.md names; these check what must hold for
//! every input, since a user or an app may send any bytes and split them anywhere: no input makes
//! a parser panic, where a read boundary falls changes nothing, and what the engine writes is the
//! message it read, less only what the contract says it drops, in a form it would read the same
//! way again, and that its peer frames as the engine relays. Bounded for `cargo test` (256 cases
//! each, a few seconds in all); `benches/proptest-long.sh` runs the same properties far longer.
//!
//! A property that found a bug in the engine is `#[ignore]`d with the reason, and the smallest
//! input it found is a test of its own in [`found`], ignored too: fixing the engine is its
//! author's, and the suite stays green meanwhile.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};

use super::answer::{self, Asker};
use super::fields;
use super::framing::{BadChunk, Chunk, Framing};
use super::head::{self, Parsed};

/// Cases per property: `PROPTEST_CASES` when set (the long run), else 256. No failure file:
/// a counterexample is written down as a named test instead, so a work tree's hidden file never
/// changes what `cargo test` runs.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The user's address the tests forward for, and another for a second pass.
const PEER: &[u8] = b"192.0.2.1";
const PEER2: &[u8] = b"198.51.100.2";

/// Names the engine treats specially (framing, hop-by-hop, `Host`, `X-Forwarded-For`): the
/// generators of ordinary headers leave them out, so that what is expected of an ordinary header
/// holds for every one generated. `close` too: to the engine it is a `Connection` option, not a
/// name, so a header called `Close` tests nothing of hop-by-hop naming.
const SPECIAL: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
    "transfer-encoding",
    "content-length",
    "host",
    "x-forwarded-for",
    "close",
];

// ---------------------------------------------------------------------------------------------
// Generators of valid messages.

/// One header line as rendered: the value without blanks, and the blanks around it (which the
/// engine does not forward).
#[derive(Debug, Clone)]
struct Field {
    name: String,
    value: String,
    before: String,
    after: String,
}

impl Field {
    fn new(name: &str, value: &str) -> Field {
        Field {
            name: name.to_string(),
            value: value.to_string(),
            before: " ".to_string(),
            after: String::new(),
        }
    }

    fn named(&self, lower: &str) -> bool {
        self.name.eq_ignore_ascii_case(lower)
    }

    fn pair(&self) -> (String, String) {
        (self.name.clone(), self.value.clone())
    }
}

/// A token (RFC 9110 §5.6.2) that is none of [`SPECIAL`].
fn free_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}".prop_filter("a name the engine treats specially", |n| {
        !SPECIAL.contains(&n.to_ascii_lowercase().as_str())
    })
}

/// A field named by `name`, its value visible ASCII with blanks inside (possibly empty), and
/// optional blanks around it.
fn field(name: impl Strategy<Value = String>) -> impl Strategy<Value = Field> {
    (
        name,
        "([!-~]([ \t!-~]{0,16}[!-~])?)?",
        "[ \t]{0,2}",
        "[ \t]{0,2}",
    )
        .prop_map(|(name, value, before, after)| Field {
            name,
            value,
            before,
            after,
        })
}

/// A field with one of `names` and a value from `value`.
fn field_of(names: &'static [&'static str], value: &'static str) -> impl Strategy<Value = Field> {
    field(select(names).prop_map(str::to_string))
        .prop_flat_map(move |f| value.prop_map(move |value| Field { value, ..f.clone() }))
}

/// A framing header: a `Content-Length` or `Transfer-Encoding: chunked`.
fn framing_field() -> impl Strategy<Value = Field> {
    prop_oneof![
        field_of(&["Content-Length", "content-length"], "[0-9]{1,6}"),
        field_of(
            &["Transfer-Encoding", "transfer-encoding"],
            "chunked|Chunked"
        ),
    ]
}

/// Put each of `extra` into `fields` at its place (an index into the list as it grows).
fn insert_all(mut fields: Vec<Field>, extra: Vec<(Index, Field)>) -> Vec<Field> {
    for (at, f) in extra {
        let i = at.index(fields.len() + 1);
        fields.insert(i, f);
    }
    fields
}

/// Header lines, each ended by `nl`, and the blank line.
fn render_fields(s: &mut String, fields: &[Field], nl: &str) {
    for f in fields {
        s.push_str(&format!(
            "{}:{}{}{}{nl}",
            f.name, f.before, f.value, f.after
        ));
    }
    s.push_str(nl);
}

/// A request head a user may send.
#[derive(Debug, Clone)]
struct Request {
    method: &'static str,
    target: String,
    version: &'static str,
    nl: &'static str,
    fields: Vec<Field>,
}

impl Request {
    fn render(&self) -> Vec<u8> {
        let nl = self.nl;
        let mut s = format!("{} {} {}{nl}", self.method, self.target, self.version);
        render_fields(&mut s, &self.fields, nl);
        s.into_bytes()
    }
}

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE",
];

/// An origin-form target: a path of characters no layer escapes, and maybe a query.
fn origin_target() -> impl Strategy<Value = String> {
    "/[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,24}(\\?[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{0,16})?"
}

/// A `Host` value: a name or an address, maybe a port.
fn host_value() -> &'static str {
    "[a-z0-9][a-z0-9.-]{0,15}(:[0-9]{1,5})?"
}

prop_compose! {
    /// A valid request in origin form: one `Host` somewhere, ordinary headers, maybe a framing
    /// header and `X-Forwarded-For` lines, CRLF or bare-LF lines, HTTP/1.1 or 1.0.
    fn request()(
        method in select(METHODS),
        target in origin_target(),
        version in select(&["HTTP/1.1", "HTTP/1.0"][..]),
        nl in select(&["\r\n", "\n"][..]),
        fields in vec(field(free_name()), 0..8),
        host in field_of(&["Host", "host", "HOST"], host_value()),
        host_at in any::<Index>(),
        xffs in vec((any::<Index>(), field_of(
            &["X-Forwarded-For", "x-forwarded-for"],
            "[0-9]{1,3}(\\.[0-9]{1,3}){3}",
        )), 0..3),
        framing in proptest::option::of((any::<Index>(), framing_field())),
    ) -> Request {
        let mut extra = vec![(host_at, host)];
        extra.extend(xffs);
        extra.extend(framing);
        Request { method, target, version, nl, fields: insert_all(fields, extra) }
    }
}

/// An answer head an app may send.
#[derive(Debug, Clone)]
struct Reply {
    version: &'static str,
    status: u16,
    reason: String,
    nl: &'static str,
    fields: Vec<Field>,
}

impl Reply {
    fn render(&self) -> Vec<u8> {
        let nl = self.nl;
        let mut s = format!("{} {} {}{nl}", self.version, self.status, self.reason);
        render_fields(&mut s, &self.fields, nl);
        s.into_bytes()
    }
}

prop_compose! {
    /// A valid final answer: status 200–599, a reason of visible words, ordinary headers and a
    /// `Content-Length` or `Transfer-Encoding: chunked` somewhere.
    fn reply()(
        version in select(&["HTTP/1.1", "HTTP/1.0"][..]),
        status in 200u16..600,
        reason in "([!-~]{1,8}( [!-~]{1,8}){0,3})?",
        nl in select(&["\r\n", "\n"][..]),
        fields in vec(field(free_name()), 0..8),
        framing in (any::<Index>(), framing_field()),
    ) -> Reply {
        Reply { version, status, reason, nl, fields: insert_all(fields, vec![framing]) }
    }
}

/// The user's side of an answer, any combination.
fn asker() -> impl Strategy<Value = Asker> {
    any::<[bool; 4]>().prop_map(|[head, http10, close, upgrade]| Asker {
        head,
        http10,
        close,
        upgrade,
    })
}

// ---------------------------------------------------------------------------------------------
// Generators of wild input: the words that steer the parsers, put together any way.

/// Strings that steer the request parser, for request lines and headers.
const WILD_METHODS: &[&str] = &[
    "GET", "POST", "HEAD", "OPTIONS", "CONNECT", "get", "G@T", "",
];
const WILD_TARGETS: &[&str] = &[
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
const WILD_VERSIONS: &[&str] = &["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "http/1.1", ""];
const WILD_NAMES: &[&str] = &[
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
const WILD_VALUES: &[&str] = &[
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
const WILD_NLS: &[&str] = &["\r\n", "\r\n", "\r\n", "\n", "\r"];

/// Whole header lines that steer the parsers: framing (valid and not), `Connection` options and
/// names, upgrades, forwarding.
const WILD_LINES: &[&str] = &[
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
fn wild_line() -> impl Strategy<Value = String> {
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
const REQUEST_LINES: &[&str] = &[
    "GET / HTTP/1.1",
    "POST /a?b=1 HTTP/1.1",
    "PUT /x HTTP/1.0",
    "OPTIONS * HTTP/1.1",
    "GET http://h:8080 HTTP/1.1",
    "GET HTTP://h?q HTTP/1.1",
    "HEAD https://h/x?y HTTP/1.0",
];

/// A request line of steering words, put together any way.
fn wild_request_line() -> impl Strategy<Value = String> {
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
fn wild_request() -> impl Strategy<Value = Vec<u8>> {
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
fn wild_answer() -> impl Strategy<Value = Vec<u8>> {
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
fn mutated(bytes: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
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
struct Raw(Vec<u8>);

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
fn any_request_bytes() -> impl Strategy<Value = Raw> {
    prop_oneof![
        vec(any::<u8>(), 0..256).prop_map(Raw),
        wild_request().prop_map(Raw),
        mutated(wild_request()).prop_map(Raw),
        mutated(request().prop_map(|r| r.render())).prop_map(Raw),
        request_naming_any(),
    ]
}

/// The same for what an app may send.
fn any_answer_bytes() -> impl Strategy<Value = Raw> {
    prop_oneof![
        vec(any::<u8>(), 0..256).prop_map(Raw),
        wild_answer().prop_map(Raw),
        mutated(wild_answer()).prop_map(Raw),
        mutated(reply().prop_map(|r| r.render())).prop_map(Raw),
        reply_naming_any(),
    ]
}

// ---------------------------------------------------------------------------------------------
// Reading back what the engine wrote, with httparse alone.

/// A head as httparse reads it: the start line's two words (method and path, or status and
/// reason) and the headers, in order.
#[derive(Debug, PartialEq, Eq)]
struct Reread {
    first: String,
    second: String,
    headers: Vec<(String, String)>,
}

fn pairs(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            let v = String::from_utf8_lossy(h.value).into_owned();
            (h.name.to_string(), v)
        })
        .collect()
}

/// `out` read as one whole HTTP/1.1 request head, nothing before or after it.
fn reread_request(out: &[u8]) -> Result<Reread, TestCaseError> {
    let mut headers = [httparse::EMPTY_HEADER; 256];
    let mut req = httparse::Request::new(&mut headers);
    let text = String::from_utf8_lossy(out);
    match req.parse(out) {
        Ok(httparse::Status::Complete(n)) if n == out.len() => {}
        other => return Err(TestCaseError::fail(format!("{other:?}: {text:?}"))),
    }
    prop_assert_eq!(req.version, Some(1), "{:?}", text);
    Ok(Reread {
        first: req.method.unwrap_or_default().to_string(),
        second: req.path.unwrap_or_default().to_string(),
        headers: pairs(req.headers),
    })
}

/// `out` read as one whole HTTP/1.1 answer head, nothing before or after it.
fn reread_answer(out: &[u8]) -> Result<Reread, TestCaseError> {
    let mut headers = [httparse::EMPTY_HEADER; 256];
    let mut res = httparse::Response::new(&mut headers);
    let text = String::from_utf8_lossy(out);
    match res.parse(out) {
        Ok(httparse::Status::Complete(n)) if n == out.len() => {}
        other => return Err(TestCaseError::fail(format!("{other:?}: {text:?}"))),
    }
    prop_assert_eq!(res.version, Some(1), "{:?}", text);
    Ok(Reread {
        first: res.code.unwrap_or_default().to_string(),
        second: res.reason.unwrap_or_default().to_string(),
        headers: pairs(res.headers),
    })
}

/// `head::parse` with the usual bounds and [`PEER`]; the rewritten head as text.
fn parse_request(raw: &[u8], peer: &[u8]) -> (Parsed, Vec<u8>) {
    let mut out = Vec::new();
    let parsed = head::parse(raw, head::SLOTS, peer, &mut out);
    (parsed, out)
}

/// The request [`head::parse`] forwards, or the test fails with what it said instead.
fn forwarded(raw: &[u8], peer: &[u8]) -> Result<(head::RequestHead, Vec<u8>), TestCaseError> {
    match parse_request(raw, peer) {
        (Parsed::Request(r), out) => Ok((r, out)),
        (other, _) => Err(TestCaseError::fail(format!(
            "{other:?} for {:?}",
            String::from_utf8_lossy(raw)
        ))),
    }
}

/// The answer [`answer::parse`] relays, or the test fails with what it said instead.
fn relayed(raw: &[u8], asker: Asker) -> Result<(answer::Answer, Vec<u8>), TestCaseError> {
    let mut out = Vec::new();
    match answer::parse(raw, asker, &mut out) {
        Ok(Some(a)) => Ok((a, out)),
        other => Err(TestCaseError::fail(format!(
            "{other:?} for {:?}",
            String::from_utf8_lossy(raw)
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Bodies.

/// Bytes a chunk extension or a trailer line may hold (framing.rs's `text_byte`).
fn text_byte() -> impl Strategy<Value = u8> {
    prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff]
}

/// One chunk as sent: its data, how its size is written and its extension.
#[derive(Debug, Clone)]
struct ChunkPart {
    data: Vec<u8>,
    zeros: usize,
    upper: bool,
    ext: Vec<u8>,
}

/// A chunk extension: blanks, `;`, then any text; or none.
fn extension() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        ("[ \t]{0,2}", vec(text_byte(), 0..12)).prop_map(|(blanks, text)| {
            let mut e = blanks.into_bytes();
            e.push(b';');
            e.extend(text);
            e
        }),
    ]
}

fn chunk_part(data: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = ChunkPart> {
    (data, 0usize..4, any::<bool>(), extension()).prop_map(|(data, zeros, upper, ext)| ChunkPart {
        data,
        zeros,
        upper,
        ext,
    })
}

/// A valid chunked body: chunks of any bytes, a last chunk, trailer lines.
#[derive(Debug, Clone)]
struct Chunked {
    chunks: Vec<ChunkPart>,
    last: ChunkPart,
    trailers: Vec<Vec<u8>>,
}

impl Chunked {
    fn render(&self) -> Vec<u8> {
        let mut b = Vec::new();
        for c in self.chunks.iter().chain([&self.last]) {
            let hex = if c.upper {
                format!("{:X}", c.data.len())
            } else {
                format!("{:x}", c.data.len())
            };
            // At most 15 digits, leading zeros included: the decoder's bound.
            let zeros = c.zeros.min(15 - hex.len());
            b.extend(std::iter::repeat_n(b'0', zeros));
            b.extend(hex.bytes());
            b.extend(&c.ext);
            b.extend(b"\r\n");
            if !c.data.is_empty() {
                b.extend(&c.data);
                b.extend(b"\r\n");
            }
        }
        for t in &self.trailers {
            b.extend(t);
            b.extend(b"\r\n");
        }
        b.extend(b"\r\n");
        b
    }

    fn data(&self) -> Vec<u8> {
        self.chunks.iter().flat_map(|c| c.data.clone()).collect()
    }
}

fn chunked() -> impl Strategy<Value = Chunked> {
    (
        vec(chunk_part(vec(any::<u8>(), 1..200)), 0..6),
        chunk_part(Just(Vec::new())),
        vec(vec(text_byte(), 1..24), 0..3),
    )
        .prop_map(|(chunks, last, trailers)| Chunked {
            chunks,
            last,
            trailers,
        })
}

/// A decoder state the engine can be in (its invariant kept: a size of `digits` hex digits is
/// below 16^digits, and at most 15 digits are ever read).
fn chunk_state() -> impl Strategy<Value = Chunk> {
    prop_oneof![
        (0u32..=15, any::<u64>()).prop_map(|(digits, n)| Chunk::Size {
            n: n % 16u64.pow(digits),
            digits: digits as u8,
        }),
        any::<u64>().prop_map(Chunk::Ext),
        any::<u64>().prop_map(Chunk::SizeLf),
        any::<u64>().prop_map(Chunk::Data),
        Just(Chunk::DataCr),
        Just(Chunk::DataLf),
        Just(Chunk::TrailerStart),
        Just(Chunk::TrailerLine),
        Just(Chunk::TrailerLineLf),
        Just(Chunk::TrailerLf),
        Just(Chunk::Done),
    ]
}

fn framing_state() -> impl Strategy<Value = Framing> {
    prop_oneof![
        1 => Just(Framing::Empty),
        1 => Just(Framing::Close),
        1 => any::<u64>().prop_map(Framing::Length),
        4 => chunk_state().prop_map(Framing::Chunked),
    ]
}

/// `bytes` cut at the given places (empty pieces included).
fn pieces<'a>(bytes: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    at.sort_unstable();
    let mut out = Vec::new();
    let mut from = 0;
    for a in at {
        out.push(&bytes[from..a]);
        from = a;
    }
    out.push(&bytes[from..]);
    out
}

/// What feeding `pieces` one after the other does: bytes taken in all (or the error), the data
/// handed on, the state left.
fn feed_pieces(mut f: Framing, pieces: &[&[u8]]) -> (Result<usize, BadChunk>, Vec<u8>, Framing) {
    let mut data = Vec::new();
    let mut took = 0;
    for p in pieces {
        match f.feed(p, &mut |d| data.extend_from_slice(d)) {
            Ok(n) => took += n,
            Err(e) => return (Err(e), data, f),
        }
    }
    (Ok(took), data, f)
}

/// The same through [`Chunk::feed`] directly.
fn feed_chunk_pieces(mut c: Chunk, pieces: &[&[u8]]) -> (Result<usize, BadChunk>, Vec<u8>, Chunk) {
    let mut data = Vec::new();
    let mut took = 0;
    for p in pieces {
        match c.feed(p, &mut |d| data.extend_from_slice(d)) {
            Ok(n) => took += n,
            Err(e) => return (Err(e), data, c),
        }
    }
    (Ok(took), data, c)
}

/// Any bytes, a valid chunked body with a few edits, or one with anything after it.
fn any_body_bytes() -> impl Strategy<Value = Raw> {
    prop_oneof![
        vec(any::<u8>(), 0..256).prop_map(Raw),
        mutated(chunked().prop_map(|c| c.render())).prop_map(Raw),
        (chunked(), vec(any::<u8>(), 0..16)).prop_map(|(c, tail)| Raw([c.render(), tail].concat())),
    ]
}

/// Bytes as text, for readable failures.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Expectations.

/// How `head::parse` frames the body of a request with `fields` (none, or one framing header).
fn expected_body(fields: &[Field]) -> Framing {
    let mut body = Framing::Empty;
    for f in fields {
        if f.named("transfer-encoding") {
            body = Framing::Chunked(Chunk::START);
        } else if f.named("content-length") {
            let n: u64 = f.value.parse().unwrap_or(0);
            body = if n > 0 {
                Framing::Length(n)
            } else {
                Framing::Empty
            };
        }
    }
    body
}

/// The headers the app receives for a request with `fields` (none hop-by-hop): all but
/// `X-Forwarded-For` in order, then one `x-forwarded-for` with the user's values and `peer`.
fn expected_request_headers(fields: &[Field], peer: &[u8]) -> Vec<(String, String)> {
    let mut addresses: Vec<&str> = fields
        .iter()
        .filter(|f| f.named("x-forwarded-for"))
        .map(|f| f.value.as_str())
        .collect();
    let peer = text(peer);
    addresses.push(&peer);
    let mut headers: Vec<(String, String)> = fields
        .iter()
        .filter(|f| !f.named("x-forwarded-for"))
        .map(Field::pair)
        .collect();
    headers.push(("x-forwarded-for".to_string(), addresses.join(", ")));
    headers
}

/// The mirror's copy of a forwarded head has its path and, name by name, its header values in
/// order.
fn check_copy(out: &[u8], path: &str, headers: &[(String, String)]) -> Result<(), TestCaseError> {
    let Some((p, map)) = head::copy_of(out) else {
        return Err(TestCaseError::fail(format!("no copy of {:?}", text(out))));
    };
    prop_assert_eq!(p.as_str(), path);
    prop_assert_eq!(map.len(), headers.len());
    for (name, _) in headers {
        let got: Vec<&[u8]> = map
            .get_all(name.as_str())
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        let want: Vec<&[u8]> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
            .collect();
        prop_assert_eq!(got, want, "{}", name);
    }
    Ok(())
}

/// A token of a generated `Connection` line: a header of the message, another name, or one of
/// the options that name no header.
#[derive(Debug, Clone)]
enum Tok {
    Field(Index),
    Other(String),
    Option(&'static str),
}

fn tok() -> impl Strategy<Value = Tok> {
    prop_oneof![
        3 => any::<Index>().prop_map(Tok::Field),
        1 => free_name().prop_map(Tok::Other),
        1 => select(&["close", "keep-alive", "upgrade"][..]).prop_map(Tok::Option),
    ]
}

/// Ordinary headers with `Connection` lines among them, and the headers those lines do not name.
#[derive(Debug, Clone)]
struct Named {
    fields: Vec<Field>,
    kept: Vec<Field>,
}

/// What may stand between two tokens of a `Connection` line.
const SEPARATORS: &[&str] = &[",", ", ", " ,", ",,", " , \t"];

/// A `Connection` line as rendered (tokens in any case) and the names it gives.
type ConnectionLine = (Index, Vec<(Tok, bool, &'static str)>, &'static str);

fn render_connection(fields: &[Field], line: &ConnectionLine) -> (Field, Vec<String>) {
    let (_, toks, name) = line;
    let mut value = String::new();
    let mut named = Vec::new();
    for (k, (tok, upper, sep)) in toks.iter().enumerate() {
        let t = match tok {
            Tok::Field(i) if !fields.is_empty() => fields[i.index(fields.len())].name.clone(),
            Tok::Field(_) => "x-none".to_string(),
            Tok::Other(n) => n.clone(),
            Tok::Option(o) => o.to_string(),
        };
        if !matches!(tok, Tok::Option(_)) {
            named.push(t.to_ascii_lowercase());
        }
        if k > 0 {
            value.push_str(sep);
        }
        value.push_str(&if *upper { t.to_ascii_uppercase() } else { t });
    }
    (Field::new(name, &value), named)
}

/// One to three `Connection` lines (in any case) put among `fields`, naming some of them, other
/// names and options, in any case, with any separators.
fn connection_lines(fields: Vec<Field>) -> impl Strategy<Value = Named> {
    let line = (
        any::<Index>(),
        vec((tok(), any::<bool>(), select(SEPARATORS)), 1..4),
        select(&["Connection", "connection", "CONNECTION"][..]),
    );
    vec(line, 1..3).prop_map(move |lines| {
        let mut named = Vec::new();
        let mut extra = Vec::new();
        for line in &lines {
            let (f, names) = render_connection(&fields, line);
            named.extend(names);
            extra.push((line.0, f));
        }
        let kept = fields
            .iter()
            .filter(|f| !named.contains(&f.name.to_ascii_lowercase()))
            .cloned()
            .collect();
        Named {
            fields: insert_all(fields.clone(), extra),
            kept,
        }
    })
}

/// One to eight ordinary headers with `Connection` lines among them.
fn connection_named() -> impl Strategy<Value = Named> {
    vec(field(free_name()), 1..8).prop_flat_map(connection_lines)
}

/// A valid request with `Connection` lines that may name any of its headers, `Host`, framing and
/// `X-Forwarded-For` included (a user may send that; RFC 9110 §7.6.1 says such a sender is
/// wrong, not what a proxy then does to the message's framing).
fn request_naming_any() -> impl Strategy<Value = Raw> {
    request().prop_flat_map(|req| {
        connection_lines(req.fields.clone()).prop_map(move |named| {
            Raw(Request {
                fields: named.fields,
                ..req.clone()
            }
            .render())
        })
    })
}

/// The same for answers.
fn reply_naming_any() -> impl Strategy<Value = Raw> {
    reply().prop_flat_map(|reply| {
        connection_lines(reply.fields.clone()).prop_map(move |named| {
            Raw(Reply {
                fields: named.fields,
                ..reply.clone()
            }
            .render())
        })
    })
}

prop_compose! {
    /// A valid request whose target is in absolute form (any scheme case, maybe no path, maybe
    /// a query), with what the app should see: the authority and the origin form.
    fn absolute_request()(
        req in request(),
        scheme in select(&["http://", "HTTP://", "https://"][..]),
        authority in host_value(),
        path in "(/[A-Za-z0-9._~-]{0,12})?",
        query in "(\\?[A-Za-z0-9=&]{0,8})?",
    ) -> (Request, String, String) {
        let origin = format!("{}{query}", if path.is_empty() { "/" } else { &path });
        let target = format!("{scheme}{authority}{path}{query}");
        (Request { target, ..req }, authority, origin)
    }
}

// ---------------------------------------------------------------------------------------------
// No input makes a parser panic.

proptest! {
    #![proptest_config(config())]

    /// Whatever a user sends, with any bounds and any address, `head::parse` answers; a head it
    /// forwards lies within what was read, and what it writes ends with the blank line.
    #[test]
    fn request_heads_never_panic(
        raw in any_request_bytes(),
        max_headers in 0usize..=120,
        peer in vec(any::<u8>(), 0..24),
    ) {
        let mut out = Vec::new();
        if let Parsed::Request(r) = head::parse(&raw, max_headers, &peer, &mut out) {
            prop_assert!(r.len <= raw.len());
            prop_assert!(out.ends_with(b"\r\n\r\n"), "{:?}", text(&out));
        }
    }

    /// What `head::parse` forwards is one whole HTTP/1.1 head (httparse reads it to its last
    /// byte), of the method it read, `x-forwarded-for` last.
    #[test]
    fn forwarded_heads_are_whole_heads(raw in any_request_bytes()) {
        if let (Parsed::Request(r), out) = parse_request(&raw, PEER) {
            let again = reread_request(&out)?;
            prop_assert_eq!(again.first.as_str(), r.method.as_str());
            let last = again.headers.last().map(|h| h.0.as_str());
            prop_assert_eq!(last, Some("x-forwarded-for"));
        }
    }

    /// Whatever an app sends, for any user, `answer::parse` answers; what it relays is one whole
    /// HTTP/1.1 head of the status it read; only a head past the bound is too large.
    #[test]
    fn answer_heads_never_panic(raw in any_answer_bytes(), asker in asker()) {
        let mut out = Vec::new();
        match answer::parse(&raw, asker, &mut out) {
            Ok(Some(a)) => {
                prop_assert!(a.len <= raw.len());
                let again = reread_answer(&out)?;
                prop_assert_eq!(again.first, a.status.to_string());
            }
            Err(answer::BadAnswer::TooLarge) => {
                prop_assert!(raw.len() >= answer::MAX_ANSWER_HEAD);
            }
            Ok(None) | Err(_) => {}
        }
    }

    /// A body decoder in any state it can be in, fed any bytes in any pieces, answers: it takes
    /// no more than it is given and hands on no more data than it took; `Chunk::feed` directly
    /// takes what `Framing::feed` does.
    #[test]
    fn body_decoders_never_panic(
        state in framing_state(),
        bytes in any_body_bytes(),
        cuts in vec(any::<Index>(), 0..4),
    ) {
        let mut f = state;
        for p in pieces(&bytes, &cuts) {
            let mut handed = 0;
            match f.feed(p, &mut |d| handed += d.len()) {
                Ok(n) => prop_assert!(n <= p.len() && handed <= n, "{} {} {}", n, handed, p.len()),
                Err(_) => break,
            }
        }
        if let Framing::Chunked(c) = state {
            let direct = feed_chunk_pieces(c, &pieces(&bytes, &cuts));
            let framed = feed_pieces(state, &pieces(&bytes, &cuts));
            prop_assert_eq!(direct.0, framed.0);
            prop_assert_eq!(direct.1, framed.1);
        }
    }

    /// `copy_of` reads any bytes (and any head `head::parse` wrote) without panicking; a path it
    /// gives is one the mirror can send.
    #[test]
    fn copies_never_panic(raw in prop_oneof![
        any_request_bytes(),
        any_request_bytes().prop_map(|raw| Raw(parse_request(&raw, PEER).1)),
    ]) {
        if let Some((path, _)) = head::copy_of(&raw) {
            prop_assert!(path.as_str().starts_with('/'), "{}", path);
        }
    }

    /// `content_length` reads any bytes; it takes exactly 1 to 19 digits with blanks around,
    /// and gives their number.
    #[test]
    fn content_lengths_are_digits_alone(raw in prop_oneof![
        vec(any::<u8>(), 0..24).prop_map(Raw),
        "[ \t]{0,2}[0-9]{1,21}[ \t]{0,2}".prop_map(|s| Raw(s.into_bytes())),
        "[ \t]{0,2}[-+0-9, ]{1,6}[ \t]{0,2}".prop_map(|s| Raw(s.into_bytes())),
    ]) {
        let v = raw.trim_ascii();
        let digits = !v.is_empty() && v.len() <= 19 && v.iter().all(u8::is_ascii_digit);
        let n = digits.then(|| v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')));
        prop_assert_eq!(fields::content_length(&raw), n, "{:?}", text(&raw));
    }

    /// `tokens` of any value are non-empty, trimmed and comma-free, one per non-blank item.
    #[test]
    fn tokens_are_the_items_of_a_list(raw in vec(prop_oneof![
        Just(b','), Just(b' '), Just(b'\t'), any::<u8>(),
    ], 0..40).prop_map(Raw)) {
        let items = raw.split(|&b| b == b',').filter(|i| !i.trim_ascii().is_empty()).count();
        let tokens: Vec<&[u8]> = fields::tokens(&raw).collect();
        prop_assert_eq!(tokens.len(), items);
        for t in tokens {
            prop_assert!(!t.is_empty() && !t.contains(&b',') && t.trim_ascii() == t);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Where a read boundary falls changes nothing.

proptest! {
    #![proptest_config(config())]

    /// A valid chunked body, then anything, in any pieces: the decoder takes exactly the body,
    /// hands on exactly the chunks' data and ends `Done`, as when fed all at once (through
    /// `Chunk::feed` and `Framing::feed` alike).
    #[test]
    fn chunked_bodies_end_where_they_end_however_split(
        body in chunked(),
        tail in vec(any::<u8>(), 0..32),
        cuts in vec(any::<Index>(), 0..6),
    ) {
        let raw = body.render();
        let input = [raw.clone(), tail].concat();
        let whole = feed_chunk_pieces(Chunk::START, &[&input]);
        prop_assert_eq!(&whole, &(Ok(raw.len()), body.data(), Chunk::Done), "{:?}", text(&raw));
        let split = feed_chunk_pieces(Chunk::START, &pieces(&input, &cuts));
        prop_assert_eq!(&split, &whole);
        let framed = feed_pieces(Framing::Chunked(Chunk::START), &pieces(&input, &cuts));
        prop_assert_eq!(framed, (Ok(raw.len()), body.data(), Framing::Empty));
    }

    /// `Length(n)` takes exactly n bytes and hands them on, however they are split.
    #[test]
    fn lengths_take_what_they_say_however_split(
        body in vec(any::<u8>(), 0..600),
        tail in vec(any::<u8>(), 0..32),
        cuts in vec(any::<Index>(), 0..6),
    ) {
        let input = [body.clone(), tail].concat();
        let n = body.len() as u64;
        let expected = (Ok(body.len()), body, Framing::Empty);
        prop_assert_eq!(&feed_pieces(Framing::Length(n), &[&input]), &expected);
        prop_assert_eq!(&feed_pieces(Framing::Length(n), &pieces(&input, &cuts)), &expected);
    }

    /// Any bytes (broken bodies mostly), from any state of the decoder, in any pieces: the same
    /// outcome as all at once, the same error or the same count, with the same data and state.
    #[test]
    fn any_bytes_decode_the_same_however_split(
        state in framing_state(),
        bytes in any_body_bytes(),
        cuts in vec(any::<Index>(), 0..6),
    ) {
        let whole = feed_pieces(state, &[&bytes]);
        let split = feed_pieces(state, &pieces(&bytes, &cuts));
        prop_assert_eq!(split, whole, "{:?}", text(&bytes));
    }

    /// A request head arriving byte by byte is `Partial` until its blank line; whole, with any
    /// bytes after it, it reads as it does alone, its length the head's.
    #[test]
    fn request_heads_wait_for_their_blank_line(req in request(), tail in vec(any::<u8>(), 0..32)) {
        let raw = req.render();
        for end in 0..raw.len() {
            let (p, _) = parse_request(&raw[..end], PEER);
            prop_assert_eq!(p, Parsed::Partial, "{} of {:?}", end, text(&raw));
        }
        let (alone, out) = forwarded(&raw, PEER)?;
        prop_assert_eq!(alone.len, raw.len());
        let (p, out_with_tail) = parse_request(&[raw, tail].concat(), PEER);
        prop_assert_eq!(p, Parsed::Request(alone));
        prop_assert_eq!(text(&out_with_tail), text(&out));
    }

    /// The same for answer heads, for any user: not whole (`None`) until the blank line, and
    /// what follows changes nothing.
    #[test]
    fn answer_heads_wait_for_their_blank_line(
        reply in reply(),
        asker in asker(),
        tail in vec(any::<u8>(), 0..32),
    ) {
        let raw = reply.render();
        let mut out = Vec::new();
        for end in 0..raw.len() {
            let p = answer::parse(&raw[..end], asker, &mut out);
            prop_assert_eq!(p, Ok(None), "{} of {:?}", end, text(&raw));
        }
        let (alone, out) = relayed(&raw, asker)?;
        prop_assert_eq!(alone.len, raw.len());
        let (with_tail, out_with_tail) = relayed(&[raw, tail].concat(), asker)?;
        prop_assert_eq!(with_tail, alone);
        prop_assert_eq!(text(&out_with_tail), text(&out));
    }
}

// ---------------------------------------------------------------------------------------------
// What the engine writes is the message it read, less what the contract drops.

proptest! {
    #![proptest_config(config())]

    /// A valid request, parsed and rewritten, reads back (httparse alone) as the same method,
    /// path and headers in the same order, `X-Forwarded-For` folded into one last line; the
    /// mirror's copy has the same path and headers.
    #[test]
    fn requests_are_forwarded_as_sent(req in request()) {
        let (r, out) = forwarded(&req.render(), PEER)?;
        prop_assert_eq!(r.method.as_str(), req.method);
        prop_assert_eq!(r.http10, req.version == "HTTP/1.0");
        prop_assert_eq!(r.body, expected_body(&req.fields));
        let headers = expected_request_headers(&req.fields, PEER);
        let again = reread_request(&out)?;
        prop_assert_eq!(&again.first, req.method);
        prop_assert_eq!(&again.second, &req.target);
        prop_assert_eq!(&again.headers, &headers);
        check_copy(&out, &req.target, &headers)?;
    }

    /// The head the app receives, read by `head::parse` again, is rewritten to the same bytes
    /// but for one more address at the end of `x-forwarded-for`, and framed the same.
    #[test]
    fn rewriting_a_rewritten_request_adds_only_an_address(req in request()) {
        let (r, out) = forwarded(&req.render(), PEER)?;
        let (r2, out2) = forwarded(&out, PEER2)?;
        let expected = [&out[..out.len() - 4], b", ", PEER2, b"\r\n\r\n"].concat();
        prop_assert_eq!(text(&out2), text(&expected));
        prop_assert_eq!((r2.method, r2.body, r2.len), (r.method, r.body, out.len()));
    }

    /// An absolute-form target is forwarded in origin form (RFC 9112 §3.2.1: `/` for an empty
    /// path), its authority the first header, the user's `Host` lines dropped.
    #[test]
    fn absolute_targets_are_forwarded_in_origin_form(
        (req, authority, origin) in absolute_request(),
    ) {
        let (_, out) = forwarded(&req.render(), PEER)?;
        let others: Vec<Field> = req.fields.iter().filter(|f| !f.named("host")).cloned().collect();
        let mut headers = vec![("Host".to_string(), authority)];
        headers.extend(expected_request_headers(&others, PEER));
        let again = reread_request(&out)?;
        prop_assert_eq!(&again.second, &origin);
        prop_assert_eq!(&again.headers, &headers);
    }

    /// A valid answer, parsed and rewritten for an HTTP/1.1 user, reads back as the same status,
    /// reason and headers in the same order; rewritten for any user and then again, it does not
    /// change.
    #[test]
    fn answers_are_relayed_as_sent(reply in reply(), asker in asker()) {
        let (a, out) = relayed(&reply.render(), Asker::default())?;
        prop_assert_eq!(a.status, reply.status);
        let again = reread_answer(&out)?;
        prop_assert_eq!(again.first, reply.status.to_string());
        prop_assert_eq!(&again.second, &reply.reason);
        let headers: Vec<(String, String)> = reply.fields.iter().map(Field::pair).collect();
        prop_assert_eq!(&again.headers, &headers);
        let (_, out) = relayed(&reply.render(), asker)?;
        let (_, out2) = relayed(&out, asker)?;
        prop_assert_eq!(text(&out2), text(&out));
    }

    /// Every header a `Connection` line names (any line, any case) is missing from the head the
    /// app receives, and every other header is there, in order.
    #[test]
    fn requests_lose_the_headers_connection_names(named in connection_named()) {
        let host = Field::new("Host", "h");
        let fields = [vec![host.clone()], named.fields].concat();
        let req = Request { method: "GET", target: "/".into(), version: "HTTP/1.1", nl: "\r\n", fields };
        let (_, out) = forwarded(&req.render(), PEER)?;
        let kept = [vec![host], named.kept].concat();
        prop_assert_eq!(reread_request(&out)?.headers, expected_request_headers(&kept, PEER));
    }

    /// The same for answers.
    #[test]
    fn answers_lose_the_headers_connection_names(named in connection_named()) {
        let length = Field::new("Content-Length", "0");
        let fields = [vec![length.clone()], named.fields].concat();
        let reply = Reply { version: "HTTP/1.1", status: 200, reason: "OK".into(), nl: "\r\n", fields };
        let (_, out) = relayed(&reply.render(), Asker::default())?;
        let kept: Vec<(String, String)> =
            [vec![length], named.kept].concat().iter().map(Field::pair).collect();
        prop_assert_eq!(reread_answer(&out)?.headers, kept);
    }
}

// ---------------------------------------------------------------------------------------------
// The peer reads what the engine wrote as the engine relays it.

proptest! {
    #![proptest_config(config())]

    /// The app frames a forwarded request's body as understudy relays it: the head the app
    /// receives, read by the same rules, says the same length or chunking (else the bytes of one
    /// body are read as another request: request smuggling).
    #[test]
    fn apps_frame_forwarded_bodies_as_relayed(raw in any_request_bytes()) {
        if let (Parsed::Request(r), mut out) = parse_request(&raw, PEER) {
            head::supply_host(&r, b"127.0.0.1:9", &mut out);
            if let (Parsed::Request(again), _) = parse_request(&out, PEER) {
                prop_assert_eq!(again.body, r.body, "{:?} -> {:?}", text(&raw), text(&out));
            }
        }
    }

    /// The app can read every head understudy forwards: by the same rules, it is a request.
    #[test]
    fn apps_accept_forwarded_heads(raw in any_request_bytes()) {
        if let (Parsed::Request(r), mut out) = parse_request(&raw, PEER) {
            head::supply_host(&r, b"127.0.0.1:9", &mut out);
            let (again, _) = parse_request(&out, PEER);
            prop_assert!(
                matches!(again, Parsed::Request(_)),
                "{:?} -> {:?}: {:?}", text(&raw), text(&out), again
            );
        }
    }

    /// The user frames a relayed answer's body as understudy relays it: the head it receives,
    /// read by the same rules, says the same (close-delimited for an answer understudy
    /// dechunks).
    #[test]
    fn users_frame_relayed_bodies_as_relayed(raw in any_answer_bytes(), asker in asker()) {
        let mut out = Vec::new();
        if let Ok(Some(a)) = answer::parse(&raw, asker, &mut out) {
            let sent = if a.dechunk { Framing::Close } else { a.framing };
            let again = answer::parse(&out, asker, &mut Vec::new()).map(|a| a.map(|a| a.framing));
            prop_assert_eq!(again, Ok(Some(sent)), "{:?} -> {:?}", text(&raw), text(&out));
        }
    }
}

/// The smallest inputs the properties above found against the first version of the engine, byte
/// for byte, kept as tests of their own (each failed before its fix).
mod found {
    use super::*;

    /// RFC 9112 §3.2.1: an empty path is sent as `/`, so `http://a?q` is `/?q`. The app got
    /// `GET ?q HTTP/1.1` (which understudy itself refuses as a target) and the mirror's
    /// `copy_of` gave no copy.
    #[test]
    fn absolute_form_without_a_path() {
        let (_, out) = parse_request(b"GET http://a?q HTTP/1.1\r\n\r\n", PEER);
        assert_eq!(
            text(&out),
            "GET /?q HTTP/1.1\r\nHost: a\r\nx-forwarded-for: 192.0.2.1\r\n\r\n"
        );
    }

    /// `Connection: host` made understudy drop the only `Host` of an HTTP/1.1 request it
    /// accepted: the app got a head RFC 9112 §3.2 says it must refuse.
    #[test]
    fn connection_naming_host() {
        let (_, out) = parse_request(
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: host\r\n\r\n",
            PEER,
        );
        assert!(
            matches!(parse_request(&out, PEER).0, Parsed::Request(_)),
            "{}",
            text(&out)
        );
    }

    /// Request smuggling: the framing header went, the body was relayed as framed, and the app
    /// read the body's bytes as its next request.
    #[test]
    fn connection_naming_request_framing() {
        for raw in [
            &b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nConnection: content-length\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: transfer-encoding\r\n\r\n",
        ] {
            let (Parsed::Request(r), out) = parse_request(raw, PEER) else {
                panic!("{}", text(raw));
            };
            let (Parsed::Request(again), _) = parse_request(&out, PEER) else {
                panic!("{}", text(&out));
            };
            assert_eq!(again.body, r.body, "{} -> {}", text(raw), text(&out));
        }
    }

    /// The same for answers: the user was told neither length nor chunking while understudy
    /// relayed a length- or chunk-delimited body and kept the connection open.
    #[test]
    fn connection_naming_answer_framing() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: content-length\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: transfer-encoding\r\n\r\n",
        ] {
            let mut out = Vec::new();
            let a = answer::parse(raw, Asker::default(), &mut out).unwrap().unwrap();
            let again = answer::parse(&out, Asker::default(), &mut Vec::new()).unwrap().unwrap();
            assert_eq!(again.framing, a.framing, "{} -> {}", text(raw), text(&out));
        }
    }
}
