//! What the mirror keeps of an answer going past: a fingerprint always, and the body itself while
//! it fits the diff cap and the process-wide capture budget.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::diff::encoding;

/// How much of a body is fingerprinted; longer bodies compare by this prefix and their length.
/// Defined by the scorer, which says it when bodies go uncompared.
pub const COMPARED_BODY: usize = crate::score::FINGERPRINTED as usize;

/// A cheap fingerprint of a body: FNV-1a over its first [`COMPARED_BODY`] bytes, and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyDigest {
    hash: u64,
    len: u64,
}

impl BodyDigest {
    /// The body's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the body was empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Default for BodyDigest {
    fn default() -> Self {
        BodyDigest {
            hash: 0xcbf2_9ce4_8422_2325,
            len: 0,
        }
    }
}

impl BodyDigest {
    /// Fold in the next chunk of the body.
    pub fn feed(&mut self, d: &[u8]) {
        let room = COMPARED_BODY.saturating_sub(self.len as usize).min(d.len());
        for b in &d[..room] {
            self.hash ^= u64::from(*b);
            self.hash = self.hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.len += d.len() as u64;
    }
}

/// Bytes of answer bodies held for diffing at once, across all captures: past it a body is
/// compared by length and hash only, so memory stays bounded however large or many the answers.
/// Defined by the scorer, which says it when bodies go uncompared.
pub const CAPTURE_BUDGET: usize = crate::score::DIFF_HELD as usize;

/// A shared count of captured bytes, against [`CAPTURE_BUDGET`].
#[derive(Clone, Default)]
pub struct CaptureBudget(Arc<AtomicUsize>);

impl CaptureBudget {
    pub(super) fn take(&self, n: usize) -> bool {
        let mut held = self.0.load(Ordering::Relaxed);
        loop {
            if held + n > CAPTURE_BUDGET {
                return false;
            }
            match self
                .0
                .compare_exchange_weak(held, held + n, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => held = now,
            }
        }
    }

    pub(super) fn give_back(&self, n: usize) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }

    /// Bytes held now (for tests and metrics).
    pub fn held(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// A body seen going past: its fingerprint always, and a copy of its chunks while it
/// stays within the diff cap and the capture budget.
pub struct BodyCapture {
    digest: BodyDigest,
    chunks: Vec<Bytes>,
    held: usize,
    max: usize,
    whole: bool,
    budget: CaptureBudget,
    /// The body as it says ([`BodyCapture::plain`]), once worked out.
    plain: Option<Option<Bytes>>,
}

impl BodyCapture {
    /// A capture keeping at most `max` bytes and the fingerprint of the rest (0: nothing at all).
    pub fn new(max: usize, budget: CaptureBudget) -> BodyCapture {
        BodyCapture {
            digest: BodyDigest::default(),
            chunks: Vec::new(),
            held: 0,
            max,
            whole: max > 0,
            budget,
            plain: None,
        }
    }

    /// The next chunk of the body.
    pub fn feed(&mut self, d: &[u8]) {
        if self.max == 0 {
            // Not compared at all: nothing to keep, nothing to fingerprint.
            return;
        }
        self.digest.feed(d);
        if !self.whole || d.is_empty() {
            return;
        }
        if self.held + d.len() <= self.max && self.budget.take(d.len()) {
            self.held += d.len();
            self.chunks.push(Bytes::copy_from_slice(d));
        } else {
            self.whole = false;
            self.release();
        }
    }

    fn release(&mut self) {
        self.chunks = Vec::new();
        self.budget.give_back(std::mem::take(&mut self.held));
    }

    /// The whole body when it was kept, else `None` (compare by [`BodyCapture::digest`]).
    pub(super) fn body(&mut self) -> Option<Bytes> {
        if !self.whole {
            return None;
        }
        Some(match self.chunks.len() {
            0 => Bytes::new(),
            1 => self.chunks[0].clone(),
            _ => {
                let mut all = Vec::with_capacity(self.held);
                for c in &self.chunks {
                    all.extend_from_slice(c);
                }
                // The chunks go: the budget now counts the one contiguous copy.
                let all = Bytes::from(all);
                self.chunks = vec![all.clone()];
                all
            }
        })
    }

    /// The whole body as it says, undone of the app's compression by `headers`' coding
    /// ([`encoding::plain`]), worked out once: each answer is set beside two others per copy
    /// (as one side and as the other's witness). `None` when not kept whole or not decodable.
    pub(super) fn plain(&mut self, headers: &http::HeaderMap, max: usize) -> Option<Bytes> {
        if self.plain.is_none() {
            let body = self.body();
            let plain = body.as_ref().and_then(|b| {
                Some(match encoding::plain(headers, b, max)? {
                    std::borrow::Cow::Borrowed(_) => b.clone(),
                    std::borrow::Cow::Owned(decoded) => Bytes::from(decoded),
                })
            });
            self.plain = Some(plain);
        }
        self.plain.clone().flatten()
    }

    pub(super) fn digest(&self) -> BodyDigest {
        self.digest
    }
}

impl Drop for BodyCapture {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Each answer is set beside two others per copy (as one side, then as the other's
    /// witness): its compressed body is decoded once, not once per comparison.
    #[test]
    fn a_compressed_body_is_decoded_once_however_often_it_is_compared() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"{\"price\":3}").unwrap();
        let mut c = BodyCapture::new(1024, CaptureBudget::default());
        c.feed(&gz.finish().unwrap());
        let mut gzip = http::HeaderMap::new();
        gzip.insert(http::header::CONTENT_ENCODING, "gzip".parse().unwrap());
        let first = c.plain(&gzip, 1024).unwrap();
        let again = c.plain(&gzip, 1024).unwrap();
        assert_eq!(&first[..], b"{\"price\":3}");
        assert_eq!(first.as_ptr(), again.as_ptr(), "decoded once");
        // Not coded: the body itself, never copied.
        let mut p = BodyCapture::new(1024, CaptureBudget::default());
        p.feed(b"plain");
        let plain = p.plain(&http::HeaderMap::new(), 1024).unwrap();
        assert_eq!(plain.as_ptr(), p.body().unwrap().as_ptr());
        // Not kept whole: nothing to decode.
        let mut none = BodyCapture::new(0, CaptureBudget::default());
        none.feed(b"x");
        assert_eq!(none.plain(&gzip, 1024), None);
    }
}
