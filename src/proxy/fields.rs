//! Header fields, for both heads the engine rewrites (`head` for requests, `answer` for answers):
//! each field's name is read once into a [`Name`] while the framing and `Connection` headers are
//! read, and the writers decide what goes on from that alone; a [`Copier`] writes what goes on,
//! copying the lines that go on unchanged from the head they came from in as few slices as it can.

/// Whether `name` is `lower` (ASCII, any case); `lower` is lower case.
pub fn is(name: &[u8], lower: &[u8]) -> bool {
    name.len() == lower.len() && name.eq_ignore_ascii_case(lower)
}

/// The comma-separated tokens of a header value, trimmed, empty ones left out.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// A `Content-Length` value: one to nineteen decimal digits, nothing else (no sign, no list).
/// Nineteen digits always fit in a `u64`.
pub fn content_length(value: &[u8]) -> Option<u64> {
    let v = value.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Whether `name` is `lower` in any ASCII case, `lower` being lower-case letters and other
/// bytes that are not letters (which must then be the same): [`is`] without a loop, for the
/// names of [`Name`] and the tokens of `Connection`. Compared a word at a time: a byte `b` of the
/// name matches a letter `l` when `b | 0x20 == l` (`l` or its upper case), any other byte when
/// `b == l`; `lower` is a constant, so its words and masks are too.
#[inline(always)]
fn eq_lower<const N: usize>(name: &[u8], lower: &[u8; N]) -> bool {
    let Ok(name) = <&[u8; N]>::try_from(name) else {
        return false;
    };
    match N {
        0..4 => (0..N).all(|i| name[i] | fold(lower[i]) == lower[i]),
        4..8 => eq_word::<4>(name, lower, 0) & eq_word::<4>(name, lower, N - 4),
        _ => {
            let mut same = eq_word::<8>(name, lower, N - 8);
            let mut at = 0;
            while at + 8 < N {
                same &= eq_word::<8>(name, lower, at);
                at += 8;
            }
            same
        }
    }
}

/// What a byte of the name is or-ed with before it is compared with `l`.
#[inline(always)]
fn fold(l: u8) -> u8 {
    if l.is_ascii_lowercase() {
        0x20
    } else {
        0
    }
}

/// [`eq_lower`] for the `W` bytes at `at`.
#[inline(always)]
fn eq_word<const W: usize>(name: &[u8], lower: &[u8], at: usize) -> bool {
    let (mut n, mut l, mut m) = ([0; 8], [0; 8], [0; 8]);
    n[..W].copy_from_slice(&name[at..at + W]);
    l[..W].copy_from_slice(&lower[at..at + W]);
    for i in 0..W {
        m[i] = fold(l[i]);
    }
    u64::from_le_bytes(n) | u64::from_le_bytes(m) == u64::from_le_bytes(l)
}

/// What a header's name makes of it, for the rewriting of a head (RFC 9110 §7.6.1, RFC 9112 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    /// Any other header: it goes on unless a `Connection` line names it.
    Other,
    /// `Host`.
    Host,
    /// `Content-Length`.
    ContentLength,
    /// `Transfer-Encoding`.
    TransferEncoding,
    /// `Connection`.
    Connection,
    /// `Upgrade`.
    Upgrade,
    /// `Keep-Alive`, `Proxy-Connection` or `TE`: hop-by-hop whatever `Connection` says.
    HopByHop,
    /// `X-Forwarded-For`.
    XForwardedFor,
    /// `Expect`: understudy answers `100-continue` itself and reads the body before running
    /// is asked (as nginx does), so a request never carries it on.
    Expect,
    /// A header named `close` (`Connection: close` names no header).
    Close,
    /// `X-Understudy-Mirror` or `X-Understudy-Replay`: understudy's marks on the copies it sends,
    /// which tell the app to skip side effects; a user's own are dropped, never forwarded.
    Mark,
    /// A name that reads as `X-Forwarded-For` or a [`Name::Mark`] once its underscores are dashes
    /// (`X_Forwarded_For`): servers that name headers CGI-style (WSGI, Rack, PHP) take the two
    /// for one, so a user could forge what understudy vouches for; dropped from requests.
    Forged,
}

impl Name {
    /// The class of a header's `name` (ASCII, any case): its length first, then one comparison.
    #[inline(always)]
    pub fn of(name: &[u8]) -> Name {
        match name.len() {
            2 if eq_lower(name, b"te") => Name::HopByHop,
            4 if eq_lower(name, b"host") => Name::Host,
            5 if eq_lower(name, b"close") => Name::Close,
            6 if eq_lower(name, b"expect") => Name::Expect,
            7 if eq_lower(name, b"upgrade") => Name::Upgrade,
            10 if eq_lower(name, b"connection") => Name::Connection,
            10 if eq_lower(name, b"keep-alive") => Name::HopByHop,
            14 if eq_lower(name, b"content-length") => Name::ContentLength,
            15 if eq_lower(name, b"x-forwarded-for") => Name::XForwardedFor,
            16 if eq_lower(name, b"proxy-connection") => Name::HopByHop,
            17 if eq_lower(name, b"transfer-encoding") => Name::TransferEncoding,
            19 if eq_lower(name, b"x-understudy-mirror") => Name::Mark,
            19 if eq_lower(name, b"x-understudy-replay") => Name::Mark,
            15 if underscored(name, b"x-forwarded-for") => Name::Forged,
            19 if underscored(name, b"x-understudy-mirror") => Name::Forged,
            19 if underscored(name, b"x-understudy-replay") => Name::Forged,
            _ => Name::Other,
        }
    }
}

/// Whether `name` is `lower` in any ASCII case with some of its dashes written as underscores
/// (reached only for a name of `lower`'s length that is not `lower` itself; most stop at the
/// first byte).
fn underscored(name: &[u8], lower: &[u8]) -> bool {
    name.iter()
        .zip(lower)
        .all(|(&b, &l)| b.to_ascii_lowercase() == l || (b == b'_' && l == b'-'))
}

/// Each header's [`Name`], by its index among the head's headers.
pub type Names = [Name; super::head::SLOTS];

/// No header read yet.
pub const NO_NAMES: Names = [Name::Other; super::head::SLOTS];

/// Whether a `Connection` line among `headers` (their classes in `names`) names the header
/// `name`, of class `class`. Framing headers and `Host` belong to the message whatever a
/// `Connection` line says: dropping them while the body is relayed as framed would let the next
/// hop read the body as another message (request smuggling). `close` names no header.
pub fn named_by_connection(
    headers: &[httparse::Header<'_>],
    names: &[Name],
    name: &[u8],
    class: Name,
) -> bool {
    if matches!(
        class,
        Name::ContentLength | Name::TransferEncoding | Name::Host | Name::Close
    ) {
        return false;
    }
    headers
        .iter()
        .zip(names)
        .filter(|(_, n)| **n == Name::Connection)
        .flat_map(|(h, _)| tokens(h.value))
        .any(|t| t.eq_ignore_ascii_case(name))
}

/// What the `Connection` lines of a head say, all lines together.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConnectionTokens {
    /// `close`.
    pub close: bool,
    /// `keep-alive`.
    pub keep_alive: bool,
    /// `upgrade`.
    pub upgrade: bool,
    /// Some other token: a header made hop-by-hop.
    pub names: bool,
}

impl ConnectionTokens {
    /// Read one `Connection` line's value.
    #[inline]
    pub fn read(&mut self, value: &[u8]) {
        // One token alone, the usual line, is read without splitting the value.
        if !self.token(value) {
            for t in tokens(value) {
                if !self.token(t) {
                    self.names = true;
                }
            }
        }
    }

    /// Take `t` if it is `close`, `keep-alive` or `upgrade` (any case).
    #[inline(always)]
    fn token(&mut self, t: &[u8]) -> bool {
        match t.len() {
            5 if eq_lower(t, b"close") => self.close = true,
            10 if eq_lower(t, b"keep-alive") => self.keep_alive = true,
            7 if eq_lower(t, b"upgrade") => self.upgrade = true,
            _ => return false,
        }
        true
    }
}

/// Writes a rewritten head into an output buffer. A line that goes on exactly as it stands in
/// the head it came from (`name: value` and CRLF) is not written but taken as a slice of that
/// head, and lines taken one after another from consecutive places are written as one slice:
/// the output is the same bytes, in fewer copies. Anything else written to the output must come
/// after a [`Copier::flush`].
pub struct Copier<'h> {
    head: &'h [u8],
    from: usize,
    to: usize,
}

impl<'h> Copier<'h> {
    /// A copier of lines from `head`, nothing taken yet.
    pub fn new(head: &'h [u8]) -> Copier<'h> {
        Copier {
            head,
            from: 0,
            to: 0,
        }
    }

    /// Where `part` starts in the head, if it is a slice of it.
    #[inline]
    pub fn at(&self, part: &[u8]) -> Option<usize> {
        let at = (part.as_ptr() as usize).checked_sub(self.head.as_ptr() as usize)?;
        (at.checked_add(part.len())? <= self.head.len()).then_some(at)
    }

    /// Whether the head has `bytes` at `at`.
    #[inline]
    pub fn has<const N: usize>(&self, at: usize, bytes: &[u8; N]) -> bool {
        self.head
            .get(at..)
            .and_then(<[u8]>::first_chunk::<N>)
            .is_some_and(|b| b == bytes)
    }

    /// Whether the head has `bytes` at `at`, their length known only when it runs.
    #[inline]
    pub fn has_slice(&self, at: usize, bytes: &[u8]) -> bool {
        let here = self.head.get(at..at.saturating_add(bytes.len()));
        here.is_some_and(|here| here.iter().zip(bytes).all(|(a, b)| a == b))
    }

    /// The head's bytes `from..to` are the next of the output.
    #[inline]
    pub fn take(&mut self, from: usize, to: usize, out: &mut Vec<u8>) {
        if from != self.to {
            self.flush(out);
            self.from = from;
        }
        self.to = to;
    }

    /// Write out what was taken and not written yet.
    #[inline]
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.head[self.from..self.to]);
        self.from = 0;
        self.to = 0;
    }

    /// The line `name: value` and CRLF is the next of the output.
    #[inline(always)]
    pub fn field(&mut self, name: &[u8], value: &[u8], out: &mut Vec<u8>) {
        match self.line(name, value) {
            Some((from, to)) => self.take(from, to, out),
            None => self.write(name, value, out),
        }
    }

    /// Where the line `name: value` and CRLF stands as such in the head, if it does: the value
    /// is in the head, the name ends two bytes before it, `: ` between them and CRLF after.
    #[inline(always)]
    fn line(&self, name: &[u8], value: &[u8]) -> Option<(usize, usize)> {
        let base = self.head.as_ptr() as usize;
        let n = (name.as_ptr() as usize).wrapping_sub(base);
        let v = (value.as_ptr() as usize).wrapping_sub(base);
        let end = v + value.len();
        let raw = v < self.head.len()
            && n <= v
            && v - n == name.len() + 2
            && self.has(v - 2, b": ")
            && self.has(end, b"\r\n");
        raw.then_some((n, end + 2))
    }

    /// Write the line `name: value` and CRLF out, after what was taken.
    #[inline(never)]
    fn write(&mut self, name: &[u8], value: &[u8], out: &mut Vec<u8>) {
        self.flush(out);
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_classified_in_any_case() {
        for (name, class) in [
            (&b"TE"[..], Name::HopByHop),
            (b"Host", Name::Host),
            (b"CLOSE", Name::Close),
            (b"upgrade", Name::Upgrade),
            (b"Connection", Name::Connection),
            (b"keep-ALIVE", Name::HopByHop),
            (b"Content-Length", Name::ContentLength),
            (b"x-forwarded-for", Name::XForwardedFor),
            (b"Proxy-Connection", Name::HopByHop),
            (b"Transfer-Encoding", Name::TransferEncoding),
            (b"X-Understudy-Mirror", Name::Mark),
            (b"x-UNDERSTUDY-replay", Name::Mark),
            (b"X_Forwarded_For", Name::Forged),
            (b"x-forwarded_for", Name::Forged),
            (b"X_UNDERSTUDY_MIRROR", Name::Forged),
            (b"x_understudy-replay", Name::Forged),
            (b"Accept-Language", Name::Other),
            (b"x_forwarded_fox", Name::Other),
            (b"x-understudy-mirrors", Name::Other),
            (b"Content-Lengths", Name::Other),
            (b"Hos", Name::Other),
            (b"Keep-Alivf", Name::Other),
            (b"", Name::Other),
        ] {
            assert_eq!(Name::of(name), class, "{:?}", String::from_utf8_lossy(name));
        }
    }

    /// [`Name::of`] and [`ConnectionTokens::read`] say what [`is`] says of every name one byte
    /// away from one they know, and of those names in any case.
    #[test]
    fn classification_agrees_with_is_byte_for_byte() {
        let known: [&[u8]; 11] = [
            b"te",
            b"host",
            b"close",
            b"upgrade",
            b"connection",
            b"keep-alive",
            b"content-length",
            b"x-forwarded-for",
            b"proxy-connection",
            b"transfer-encoding",
            b"chunked",
        ];
        let check = |name: &[u8]| {
            let lower = known.iter().copied().find(|k| is(name, k));
            let shown = name.escape_ascii().to_string();
            // `X-Forwarded-For` with an underscore for a dash reads as it to CGI-style servers.
            let dashed: Vec<u8> = name
                .iter()
                .map(|&b| if b == b'_' { b'-' } else { b })
                .collect();
            let forged = name.contains(&b'_') && is(&dashed, b"x-forwarded-for");
            let expected = match lower {
                Some(k) => Name::of(k),
                None if forged => Name::Forged,
                None => Name::Other,
            };
            assert_eq!(Name::of(name), expected, "{shown}");
            assert_eq!(
                eq_lower(name, b"chunked"),
                lower == Some(b"chunked"),
                "{shown}"
            );
            if name.trim_ascii().len() == name.len() && !name.is_empty() && !name.contains(&b',') {
                let mut c = ConnectionTokens::default();
                c.read(name);
                let said = [c.close, c.keep_alive, c.upgrade, c.names];
                let tokens: [&[u8]; 3] = [b"close", b"keep-alive", b"upgrade"];
                let mut want = tokens.map(|t| lower == Some(t)).to_vec();
                want.push(!want.contains(&true));
                assert_eq!(said.to_vec(), want, "{shown}");
            }
        };
        assert_eq!(Name::of(b"te"), Name::HopByHop);
        for k in known {
            for i in 0..k.len() {
                for b in 0..=255u8 {
                    let mut name = k.to_vec();
                    name[i] = b;
                    check(&name);
                    name.insert(i, b);
                    check(&name);
                }
                let mut upper = k.to_vec();
                upper[..=i].make_ascii_uppercase();
                check(&upper);
                check(&k[..i]);
            }
        }
    }

    #[test]
    fn lines_as_they_stand_are_copied_in_one_slice_and_others_written() {
        let head = b"A: 1\r\nB: 2\r\nC:3\r\nD: 4\r\nE: 5\r\n\r\n";
        let mut out = Vec::new();
        let mut c = Copier::new(head);
        let line =
            |at: usize, n: usize, v: usize, len: usize| (&head[at..at + n], &head[v..v + len]);
        let (a, b, c3, e) = (
            line(0, 1, 3, 1),
            line(6, 1, 9, 1),
            line(12, 1, 14, 1),
            line(23, 1, 26, 1),
        );
        c.field(a.0, a.1, &mut out);
        c.field(b.0, b.1, &mut out);
        assert!(
            out.is_empty(),
            "two consecutive lines are one slice, not written yet"
        );
        c.field(c3.0, c3.1, &mut out);
        c.field(e.0, e.1, &mut out);
        c.field(b"F", b"6", &mut out);
        c.flush(&mut out);
        assert_eq!(out, b"A: 1\r\nB: 2\r\nC: 3\r\nE: 5\r\nF: 6\r\n");
        assert_eq!(c.at(b"A: 1"), None);
    }
}
