//! Where a message body ends (RFC 9112 §6): the one framing decoder of the engine, for request
//! bodies coming from users and answer bodies coming from instances, in either direction.
//!
//! A body is relayed as its sender framed it (chunk sizes, extensions and trailers included), so
//! the decoder's job is to say how many of the bytes read belong to the body and to check them
//! strictly: a chunk line ends in CRLF, never a bare LF, so understudy and the peer behind it can
//! never disagree on where a message ends (request smuggling). The data of the chunks is handed to
//! a callback for those who need it (the mirror's capture, an HTTP/1.0 client's unchunked copy).

/// How a body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (or its end reached).
    Empty,
    /// This many more bytes.
    Length(u64),
    /// Chunked: where the parser is.
    Chunked(Chunk),
    /// Until the sender closes the connection (answers only).
    Close,
}

/// Where a chunked body's parser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// In a chunk-size line's digits.
    Size {
        /// The size so far.
        n: u64,
        /// Digits read.
        digits: u8,
    },
    /// In a chunk extension (or the blanks before it).
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
    /// After a trailer line's CR.
    TrailerLineLf,
    /// After the final CR.
    TrailerLf,
    /// Past the final blank line.
    Done,
}

/// A chunked body that is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadChunk;

impl std::fmt::Display for BadChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a chunked body that is not well-formed")
    }
}

impl std::error::Error for BadChunk {}

/// Whether `b` may appear in a chunk extension or a trailer line: visible ASCII, blanks and
/// bytes past ASCII (obs-text); never a control byte.
fn text_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

impl Chunk {
    /// A chunked body's first state.
    pub const START: Chunk = Chunk::Size { n: 0, digits: 0 };

    fn after_size(n: u64) -> Chunk {
        if n == 0 {
            Chunk::TrailerStart
        } else {
            Chunk::Data(n)
        }
    }

    /// Read on through `bytes`; how many of them belong to the body. Chunk data goes to `data`.
    pub fn feed(&mut self, bytes: &[u8], data: &mut impl FnMut(&[u8])) -> Result<usize, BadChunk> {
        let mut i = 0;
        while i < bytes.len() {
            match *self {
                Chunk::Done => return Ok(i),
                Chunk::Data(n) => {
                    let take = n.min((bytes.len() - i) as u64) as usize;
                    data(&bytes[i..i + take]);
                    i += take;
                    *self = if take as u64 == n {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(n - take as u64)
                    };
                    continue;
                }
                _ => {}
            }
            let b = bytes[i];
            i += 1;
            *self = self.step(b)?;
        }
        Ok(i)
    }

    /// One byte of a size line, a data end or a trailer.
    fn step(self, b: u8) -> Result<Chunk, BadChunk> {
        Ok(match (self, b) {
            (Chunk::Size { n, digits }, b) if b.is_ascii_hexdigit() => {
                if digits >= 15 {
                    return Err(BadChunk);
                }
                let d = u64::from((b as char).to_digit(16).unwrap_or(0));
                Chunk::Size {
                    n: n * 16 + d,
                    digits: digits + 1,
                }
            }
            (Chunk::Size { n, digits: 1.. }, b';' | b' ' | b'\t') => Chunk::Ext(n),
            (Chunk::Size { n, digits: 1.. } | Chunk::Ext(n), b'\r') => Chunk::SizeLf(n),
            (Chunk::Ext(n), b) if text_byte(b) => Chunk::Ext(n),
            (Chunk::SizeLf(n), b'\n') => Chunk::after_size(n),
            (Chunk::DataCr, b'\r') => Chunk::DataLf,
            (Chunk::DataLf, b'\n') => Chunk::START,
            (Chunk::TrailerStart, b'\r') => Chunk::TrailerLf,
            (Chunk::TrailerLf, b'\n') => Chunk::Done,
            (Chunk::TrailerLine, b'\r') => Chunk::TrailerLineLf,
            (Chunk::TrailerLineLf, b'\n') => Chunk::TrailerStart,
            (Chunk::TrailerStart | Chunk::TrailerLine, b) if text_byte(b) => Chunk::TrailerLine,
            _ => return Err(BadChunk),
        })
    }
}

impl Framing {
    /// Read on through `bytes`; how many of them belong to the body (the rest is the next
    /// message, or bytes that should not be there). The body's data goes to `data`.
    pub fn feed(&mut self, bytes: &[u8], data: &mut impl FnMut(&[u8])) -> Result<usize, BadChunk> {
        match self {
            Framing::Empty => Ok(0),
            Framing::Close => {
                data(bytes);
                Ok(bytes.len())
            }
            Framing::Length(n) => {
                let take = (*n).min(bytes.len() as u64);
                *n -= take;
                data(&bytes[..take as usize]);
                if *n == 0 {
                    *self = Framing::Empty;
                }
                Ok(take as usize)
            }
            Framing::Chunked(c) => {
                let took = c.feed(bytes, data)?;
                if *c == Chunk::Done {
                    *self = Framing::Empty;
                }
                Ok(took)
            }
        }
    }

    /// [`Framing::feed`] without looking at the data.
    pub fn skip(&mut self, bytes: &[u8]) -> Result<usize, BadChunk> {
        self.feed(bytes, &mut |_| {})
    }

    /// Whether the body has ended (a close-delimited one ends only with its connection).
    pub fn done(&self) -> bool {
        *self == Framing::Empty
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_body_ends_where_it_ends_however_it_is_split() {
        let body =
            b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nTrailer: x\r\n\r\n";
        let mut input = body.to_vec();
        input.extend_from_slice(b"NEXT");
        for split in 0..input.len() {
            let mut c = Chunk::START;
            let mut data = Vec::new();
            let first = c
                .feed(&input[..split], &mut |d| data.extend_from_slice(d))
                .unwrap();
            assert_eq!(first, split.min(body.len()), "split at {split}");
            let second = c
                .feed(&input[split..], &mut |d| data.extend_from_slice(d))
                .unwrap();
            assert_eq!(first + second, body.len(), "split at {split}");
            assert_eq!(c, Chunk::Done);
            assert_eq!(data, b"Wikipedia in\r\n\r\nchunks.");
        }
        let mut c = Chunk::START;
        assert_eq!(c.feed(b"0\r\n\r\n", &mut |_| {}), Ok(5));
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
            b"2\nab\r\n",
            b"2\r\nab\n",
            b"0\r\n\n",
            b"0\r\nTrailer: x\n",
            b"2;a\x00b\r\n",
        ] {
            let mut c = Chunk::START;
            assert_eq!(
                c.feed(bad, &mut |_| {}),
                Err(BadChunk),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_length_takes_what_it_says() {
        let mut f = Framing::Length(5);
        assert_eq!(f.skip(b"abc"), Ok(3));
        assert!(!f.done());
        assert_eq!(f.skip(b"deNEXT"), Ok(2));
        assert!(f.done());
    }
}
