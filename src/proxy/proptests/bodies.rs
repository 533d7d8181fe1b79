//! Bodies: generators of framed bodies and what a peer makes of them.

use super::*;

/// Bytes a chunk extension or a trailer line may hold (framing.rs's `text_byte`).
pub(super) fn text_byte() -> impl Strategy<Value = u8> {
    prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff]
}

/// One chunk as sent: its data, how its size is written and its extension.
#[derive(Debug, Clone)]
pub(super) struct ChunkPart {
    pub(super) data: Vec<u8>,
    pub(super) zeros: usize,
    pub(super) upper: bool,
    pub(super) ext: Vec<u8>,
}

/// A chunk extension: blanks, `;`, then any text; or none.
pub(super) fn extension() -> impl Strategy<Value = Vec<u8>> {
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

pub(super) fn chunk_part(data: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = ChunkPart> {
    (data, 0usize..4, any::<bool>(), extension()).prop_map(|(data, zeros, upper, ext)| ChunkPart {
        data,
        zeros,
        upper,
        ext,
    })
}

/// A valid chunked body: chunks of any bytes, a last chunk, trailer lines.
#[derive(Debug, Clone)]
pub(super) struct Chunked {
    pub(super) chunks: Vec<ChunkPart>,
    pub(super) last: ChunkPart,
    pub(super) trailers: Vec<Vec<u8>>,
}

impl Chunked {
    pub(super) fn render(&self) -> Vec<u8> {
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

    pub(super) fn data(&self) -> Vec<u8> {
        self.chunks.iter().flat_map(|c| c.data.clone()).collect()
    }
}

pub(super) fn chunked() -> impl Strategy<Value = Chunked> {
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
pub(super) fn chunk_state() -> impl Strategy<Value = Chunk> {
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

pub(super) fn framing_state() -> impl Strategy<Value = Framing> {
    prop_oneof![
        1 => Just(Framing::Empty),
        1 => Just(Framing::Close),
        1 => any::<u64>().prop_map(Framing::Length),
        4 => chunk_state().prop_map(Framing::Chunked),
    ]
}

/// `bytes` cut at the given places (empty pieces included).
pub(super) fn pieces<'a>(bytes: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
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
pub(super) fn feed_pieces(
    mut f: Framing,
    pieces: &[&[u8]],
) -> (Result<usize, BadChunk>, Vec<u8>, Framing) {
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
pub(super) fn feed_chunk_pieces(
    mut c: Chunk,
    pieces: &[&[u8]],
) -> (Result<usize, BadChunk>, Vec<u8>, Chunk) {
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
pub(super) fn any_body_bytes() -> impl Strategy<Value = Raw> {
    prop_oneof![
        vec(any::<u8>(), 0..256).prop_map(Raw),
        mutated(chunked().prop_map(|c| c.render())).prop_map(Raw),
        (chunked(), vec(any::<u8>(), 0..16)).prop_map(|(c, tail)| Raw([c.render(), tail].concat())),
    ]
}

/// Bytes as text, for readable failures.
pub(super) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
