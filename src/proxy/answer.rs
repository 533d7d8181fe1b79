//! Answer phase, the head: an instance's answer head parsed in place, framed by RFC 9112 §6.3 and
//! rewritten for the user (status line as HTTP/1.1, hop-by-hop headers dropped, `Connection`
//! saying what understudy does with the user's connection). The one parser of answer heads, for
//! users' answers and for mirrored copies alike.

use std::mem::MaybeUninit;

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::fields::{content_length, is, named_by_connection, tokens};
use super::fields::{ConnectionTokens, Copier, Name, NO_NAMES};
use super::framing::{Chunk, Framing};
use super::head::SLOTS;

/// Largest answer head taken from an instance (hyper's client allows about as much).
pub const MAX_ANSWER_HEAD: usize = 64 * 1024;

/// Most header fields in an answer head. The first parse has room for [`SLOTS`] on the stack;
/// a head with more (a chatty framework's, many `Set-Cookie`s) is parsed again with this many.
pub const MOST_ANSWER_FIELDS: usize = 1024;

/// What the user's side needs to know to frame an answer for it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Asker {
    /// The request was `HEAD`: no body whatever the answer says.
    pub head: bool,
    /// The request was HTTP/1.0: no interim answers, no chunked answer.
    pub http10: bool,
    /// The user's connection closes after this answer anyway.
    pub close: bool,
    /// The request asked for an upgrade: a `101` is welcome.
    pub upgrade: bool,
}

/// An instance's answer head, rewritten for the user.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    /// Bytes of the head in the instance's buffer.
    pub len: usize,
    /// Its status code.
    pub status: u16,
    /// An interim answer (1xx but 101): relayed (to HTTP/1.1 users), the final one follows.
    pub interim: bool,
    /// `101 Switching Protocols` to an upgrade request: from here on, bytes both ways.
    pub switching: bool,
    /// How its body ends, as the instance sends it.
    pub framing: Framing,
    /// The body is chunked but the user speaks HTTP/1.0: relay its data only.
    pub dechunk: bool,
    /// Whether the instance's connection can carry another request after this answer.
    pub reusable: bool,
    /// Whether the user's connection is closed after it.
    pub close: bool,
}

/// Why an answer head cannot be relayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadAnswer {
    /// Not HTTP/1.x.
    #[error("an answer head that is not HTTP/1.x ({0})")]
    NotHttp(String),
    /// `Content-Length` not a number, or two different ones.
    #[error("a Content-Length that is not a number, or two different ones")]
    Length,
    /// A `101` to a request that asked for no upgrade.
    #[error("101 Switching Protocols to a request that asked for no upgrade")]
    Switching,
    /// Over [`MAX_ANSWER_HEAD`].
    #[error("an answer head larger than 64 KiB")]
    TooLarge,
    /// Over [`MOST_ANSWER_FIELDS`].
    #[error("an answer head of more than 1024 header fields")]
    TooManyFields,
}

/// What an answer's headers say, read in one pass with each one's [`Name`]: what its
/// `Connection` lines say and how its body is framed.
struct Read {
    conn: ConnectionTokens,
    coded: bool,
    chunked: bool,
    length: Option<u64>,
}

impl Read {
    /// Read the headers once, their names into `names` (two different `Content-Length`s are an
    /// error).
    fn of(headers: &[httparse::Header<'_>], names: &mut [Name]) -> Result<Read, BadAnswer> {
        let mut r = Read {
            conn: ConnectionTokens::default(),
            coded: false,
            chunked: false,
            length: None,
        };
        for (h, slot) in headers.iter().zip(names.iter_mut()) {
            let name = Name::of(h.name.as_bytes());
            *slot = name;
            match name {
                Name::TransferEncoding => {
                    r.coded = true;
                    if let Some(last) = tokens(h.value).last() {
                        r.chunked = is(last, b"chunked");
                    }
                }
                Name::ContentLength => {
                    let n = content_length(h.value).ok_or(BadAnswer::Length)?;
                    if r.length.is_some_and(|m| m != n) {
                        return Err(BadAnswer::Length);
                    }
                    r.length = Some(n);
                }
                Name::Connection => r.conn.read(h.value),
                _ => {}
            }
        }
        Ok(r)
    }

    /// How the body ends (RFC 9112 §6.3), for an answer that may have one.
    fn framing(&self) -> Framing {
        if self.coded {
            if self.chunked {
                Framing::Chunked(Chunk::START)
            } else {
                Framing::Close
            }
        } else {
            match self.length {
                Some(0) => Framing::Empty,
                Some(n) => Framing::Length(n),
                None => Framing::Close,
            }
        }
    }
}

/// Parse the instance's answer head in `buf` (`None`: not whole yet) and write the user's form of
/// it into `out`.
pub fn parse(buf: &[u8], asker: Asker, out: &mut Vec<u8>) -> Result<Option<Answer>, BadAnswer> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; SLOTS];
    let mut names = NO_NAMES;
    match parse_in(buf, asker, out, &mut slots, &mut names) {
        Err(BadAnswer::TooManyFields) => {
            // Rare: room for more fields on the heap, bounded by MOST_ANSWER_FIELDS.
            let mut slots = heap_slots();
            let mut names = vec![Name::Other; MOST_ANSWER_FIELDS];
            parse_in(buf, asker, out, &mut slots, &mut names)
        }
        parsed => parsed,
    }
}

/// Room for [`MOST_ANSWER_FIELDS`] fields, for a head with more than the stack's [`SLOTS`].
fn heap_slots<'b>() -> Vec<MaybeUninit<httparse::Header<'b>>> {
    let mut slots = Vec::with_capacity(MOST_ANSWER_FIELDS);
    slots.resize_with(MOST_ANSWER_FIELDS, MaybeUninit::uninit);
    slots
}

/// [`parse`] with room for `slots.len()` fields (`names` as long).
fn parse_in<'b>(
    buf: &'b [u8],
    asker: Asker,
    out: &mut Vec<u8>,
    slots: &mut [MaybeUninit<httparse::Header<'b>>],
    names: &mut [Name],
) -> Result<Option<Answer>, BadAnswer> {
    let mut res = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut res, buf, slots)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_ANSWER_HEAD => {
            return Err(BadAnswer::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(BadAnswer::TooManyFields),
        Err(e) => return Err(BadAnswer::NotHttp(e.to_string())),
    };
    let (Some(version), Some(status)) = (res.version, res.code) else {
        return Err(BadAnswer::NotHttp("no status".to_string()));
    };
    let headers = &*res.headers;
    let switching = status == 101;
    if switching && !asker.upgrade {
        return Err(BadAnswer::Switching);
    }
    let interim = (100..200).contains(&status) && !switching;
    let read = Read::of(headers, names)?;
    let framing = if asker.head || interim || switching || status == 204 || status == 304 {
        Framing::Empty
    } else {
        read.framing()
    };
    let dechunk = asker.http10 && matches!(framing, Framing::Chunked(_));
    let close = !interim && !switching && (asker.close || framing == Framing::Close || dechunk);
    let keep_alive = if version == 1 {
        !read.conn.close
    } else {
        read.conn.keep_alive
    };
    out.clear();
    let mut copier = Copier::new(buf);
    status_line(&mut copier, status, res.reason.unwrap_or_default(), out);
    // RFC 9112 §6.1, §6.2: a 1xx or 204 carries no framing fields, whatever the app sent.
    let unframed = interim || status == 204;
    let drops = Drops {
        dechunk,
        switching,
        unframed,
    };
    write_headers(headers, names, &read, drops, &mut copier, out);
    copier.flush(out);
    if switching {
        out.extend_from_slice(b"connection: upgrade\r\n");
    } else if close && !interim {
        out.extend_from_slice(b"connection: close\r\n");
    } else if asker.http10 && !interim {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Some(Answer {
        len,
        status,
        interim,
        switching,
        framing,
        dechunk,
        reusable: keep_alive && framing != Framing::Close && !switching,
        close,
    }))
}

/// `HTTP/1.1 <status> <reason>` and CRLF: taken from the head as it stands when it is that.
fn status_line(copier: &mut Copier<'_>, status: u16, reason: &str, out: &mut Vec<u8>) {
    let digits = status_digits(status);
    let end = 13 + reason.len();
    if copier.has(0, b"HTTP/1.1 ")
        && copier.has(9, &digits)
        && copier.has(12, b" ")
        && copier.at(reason.as_bytes()) == Some(13)
        && copier.has(end, b"\r\n")
    {
        copier.take(0, end + 2, out);
        return;
    }
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&digits);
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Which of an answer's fields the user's form of it leaves out besides the hop-by-hop ones.
#[derive(Clone, Copy)]
struct Drops {
    /// `Transfer-Encoding`: the body is dechunked for an HTTP/1.0 user.
    dechunk: bool,
    /// Not `Upgrade` (and its `Connection` line is understudy's own): a `101`.
    switching: bool,
    /// `Content-Length` and `Transfer-Encoding`: a 1xx or 204, which has no body to frame.
    unframed: bool,
}

/// The instance's headers that go on to the user, in their order.
fn write_headers(
    headers: &[httparse::Header<'_>],
    names: &[Name],
    read: &Read,
    drops: Drops,
    copier: &mut Copier<'_>,
    out: &mut Vec<u8>,
) {
    let Drops {
        dechunk,
        switching,
        unframed,
    } = drops;
    let mut length_written = false;
    for (h, &class) in headers.iter().zip(names) {
        let name = h.name.as_bytes();
        let named = || read.conn.names && named_by_connection(headers, names, name, class);
        let drop = match class {
            Name::Connection | Name::HopByHop => true,
            Name::Upgrade => !switching || named(),
            // A coded body drops its length (RFC 9112 §6.3); equal duplicates go once.
            Name::ContentLength => {
                let dup = length_written;
                length_written = true;
                read.coded || dup || unframed
            }
            Name::TransferEncoding => dechunk || unframed,
            Name::Host | Name::Close => false,
            Name::Other | Name::XForwardedFor | Name::Mark | Name::Forged | Name::Expect => named(),
        };
        if !drop {
            copier.field(name, h.value, out);
        }
    }
}

/// A status code's three digits.
fn status_digits(status: u16) -> [u8; 3] {
    let s = status.min(999);
    [
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]
}

/// The headers of a whole answer head in `buf` as a map (for the diff of a sampled copy; the
/// head was parsed once already, so this cannot fail but on a head that changed).
pub fn header_map(buf: &[u8]) -> HeaderMap {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; SLOTS];
    let mut map = HeaderMap::new();
    if let Err(httparse::Error::TooManyHeaders) = fill_map(buf, &mut slots, &mut map) {
        let mut slots = heap_slots();
        let _ = fill_map(buf, &mut slots, &mut map);
    }
    map
}

/// [`header_map`] with room for `slots.len()` fields.
fn fill_map<'b>(
    buf: &'b [u8],
    slots: &mut [MaybeUninit<httparse::Header<'b>>],
    map: &mut HeaderMap,
) -> Result<(), httparse::Error> {
    let mut res = httparse::Response::new(&mut []);
    httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut res, buf, slots)?;
    for h in res.headers.iter() {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) {
            map.append(k, v);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(raw: &str, asker: Asker) -> (Answer, String) {
        let mut out = Vec::new();
        let a = parse(raw.as_bytes(), asker, &mut out)
            .unwrap()
            .expect("a whole head");
        (a, String::from_utf8(out).unwrap())
    }

    const PLAIN: Asker = Asker {
        head: false,
        http10: false,
        close: false,
        upgrade: false,
    };

    #[test]
    fn an_answer_head_is_rewritten_and_framed() {
        let (a, out) = answered(
            "HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\nhi",
            PLAIN,
        );
        assert_eq!(
            (a.status, a.framing, a.reusable, a.close),
            (200, Framing::Length(2), true, false)
        );
        assert_eq!(out, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
    }

    #[test]
    fn a_length_beside_chunked_is_dropped_and_every_connection_line_counts() {
        let (a, out) = answered(
            "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: X-A\r\nConnection: close, X-B\r\nX-A: 1\r\nX-B: 2\r\nTrailer: X-T\r\n\r\n",
            PLAIN,
        );
        assert_eq!(
            (a.framing, a.reusable, a.close),
            (Framing::Chunked(Chunk::START), false, false)
        );
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n"
        );
    }

    #[test]
    fn lines_not_as_they_go_on_are_rewritten_around_the_ones_copied() {
        let (_, out) = answered(
            "HTTP/1.0 200 OK\r\nA:1\r\nB: 2 \r\nConnection: close\r\nC: 3\r\nD: 4\r\nContent-Length: 0\r\n\r\n",
            PLAIN,
        );
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nContent-Length: 0\r\n\r\n"
        );
        let (_, out) = answered("HTTP/1.1 404 \r\nA: 1\nB: 2\r\n\r\n", PLAIN);
        assert_eq!(
            out,
            "HTTP/1.1 404 \r\nA: 1\r\nB: 2\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn http10_users_get_no_chunks_and_explicit_keep_alive() {
        let asker = Asker {
            http10: true,
            ..PLAIN
        };
        let (a, out) = answered(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            asker,
        );
        assert!(a.dechunk && a.close);
        assert_eq!(out, "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n");
        let (a, out) = answered("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n", asker);
        assert!(!a.close);
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nconnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn head_204_304_and_interim_answers_have_no_body() {
        let head = Asker {
            head: true,
            ..PLAIN
        };
        let (a, _) = answered("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", head);
        assert_eq!((a.framing, a.reusable), (Framing::Empty, true));
        let (a, _) = answered("HTTP/1.1 204 No Content\r\n\r\n", PLAIN);
        assert_eq!(a.framing, Framing::Empty);
        let (a, out) = answered(
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\nContent-Length: 9\r\n\r\n",
            PLAIN,
        );
        assert_eq!(a.framing, Framing::Empty);
        assert_eq!(
            out,
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"
        );
        let (a, out) = answered("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", PLAIN);
        assert!(a.interim && !a.close);
        assert_eq!(out, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n");
    }

    #[test]
    fn broken_answer_heads_are_errors() {
        let mut out = Vec::new();
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
            "SSH-2.0-OpenSSH\r\n\r\n",
        ] {
            assert!(parse(raw.as_bytes(), PLAIN, &mut out).is_err(), "{raw:?}");
        }
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\n", PLAIN, &mut out), Ok(None));
        let upgrade = Asker {
            upgrade: true,
            ..PLAIN
        };
        let (a, out) = answered(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            upgrade,
        );
        assert!(a.switching && !a.reusable);
        assert_eq!(
            out,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nconnection: upgrade\r\n\r\n"
        );
    }
}
