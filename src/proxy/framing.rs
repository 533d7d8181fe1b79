//! Request smuggling guard. hyper frames a request that carries both `Content-Length` and
//! `Transfer-Encoding` by the latter and drops the former before the service sees it (RFC 9112
//! §6.3 allows that), so the service cannot tell such a request from an honest chunked one. nginx
//! and HAProxy refuse it instead, and so does understudy: [`Sniffed`] watches the bytes hyper
//! reads for a header block naming both, and raises a per-connection flag the service checks
//! before forwarding anything.
//!
//! The scan looks at the first bytes of every line (no allocation, a few comparisons per line); a
//! body line that happens to look like a header block with both names would also raise the flag:
//! the cost of that false alarm is one refused request on a connection that is then closed.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes of a line kept for matching: the longest name looked for, with its colon.
const PREFIX: usize = 18;

/// A stream whose incoming bytes are watched for a header block with both framing headers; it
/// first gives back the bytes the plain path (`fast`) already read from it, watched the same way.
pub struct Sniffed<S> {
    inner: S,
    /// Read before hyper had the stream, given to it first; `pos` of them given so far.
    pre: Vec<u8>,
    pos: usize,
    scan: Scan,
    flag: Arc<AtomicBool>,
}

/// Where the scan is: the start of the current line, and what the current block named.
#[derive(Default)]
struct Scan {
    line: [u8; PREFIX],
    len: usize,
    content_length: bool,
    transfer_encoding: bool,
}

impl Scan {
    /// Scan the next bytes read; whether a header block naming both just ended. Jumps from line
    /// end to line end (memchr), looking only at the first bytes of each line.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        let mut both = false;
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', bytes) {
            self.take(&bytes[start..nl]);
            both |= self.end_line();
            start = nl + 1;
        }
        self.take(&bytes[start..]);
        both
    }

    /// Keep the start of the current line, lower-cased.
    fn take(&mut self, part: &[u8]) {
        let n = part.len().min(PREFIX - self.len);
        for (slot, b) in self.line[self.len..self.len + n].iter_mut().zip(part) {
            *slot = b.to_ascii_lowercase();
        }
        self.len += n;
    }

    fn end_line(&mut self) -> bool {
        let line = &self.line[..self.len];
        let mut both = false;
        if line.is_empty() || line == b"\r" {
            // A blank line ends a header block.
            both = self.content_length && self.transfer_encoding;
            self.content_length = false;
            self.transfer_encoding = false;
        } else if line.starts_with(b"content-length:") {
            self.content_length = true;
        } else if line.starts_with(b"transfer-encoding:") {
            self.transfer_encoding = true;
        }
        self.len = 0;
        both
    }
}

impl<S> Sniffed<S> {
    /// Watch `pre`, then `inner`; the flag is raised (and stays raised) once a block names both
    /// headers.
    pub fn new(pre: Vec<u8>, inner: S) -> (Sniffed<S>, Arc<AtomicBool>) {
        let flag = Arc::new(AtomicBool::new(false));
        (
            Sniffed {
                inner,
                pre,
                pos: 0,
                scan: Scan::default(),
                flag: flag.clone(),
            },
            flag,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Sniffed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        if this.pos < this.pre.len() {
            let n = (this.pre.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.pre[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.pre.len() {
                this.pre = Vec::new();
                this.pos = 0;
            }
            if this.scan.feed(&buf.filled()[before..]) {
                this.flag.store(true, Ordering::Relaxed);
            }
            return Poll::Ready(Ok(()));
        }
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let this = &mut *self;
            if this.scan.feed(&buf.filled()[before..]) {
                this.flag.store(true, Ordering::Relaxed);
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Sniffed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_read_before_come_first_and_are_watched_too() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut a, b) = tokio::io::duplex(256);
        a.write_all(b"Transfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        drop(a);
        let pre = b"POST / HTTP/1.1\r\nContent-Length: 4\r\n".to_vec();
        let (mut s, flag) = Sniffed::new(pre, b);
        let mut all = String::new();
        s.read_to_string(&mut all).await.unwrap();
        assert_eq!(
            all,
            "POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        assert!(flag.load(Ordering::Relaxed));
    }

    fn both(chunks: &[&str]) -> bool {
        let mut s = Scan::default();
        chunks.iter().any(|c| s.feed(c.as_bytes()))
    }

    #[test]
    fn a_block_naming_both_is_found_across_reads_in_any_case_and_order() {
        assert!(both(&[
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        ]));
        assert!(both(&[
            "POST / HTTP/1.1\r\nTRANSFER-ENCODING: chunked\r\nhost: x\r\ncontent-LENGTH: 4\r\n\r\n"
        ]));
        assert!(both(&[
            "POST / HTTP/1.1\r\nContent-Le",
            "ngth: 4\r\nTransfer-Enc",
            "oding: chunked\r\n",
            "\r\n"
        ]));
    }

    #[test]
    fn honest_requests_and_separate_blocks_are_not() {
        assert!(!both(&["POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd"]));
        assert!(!both(&[
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ]));
        // One request with each, one after the other: no block has both.
        assert!(!both(&[
            "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ]));
        // A header value mentioning the other name is not that header.
        assert!(!both(&[
            "GET / HTTP/1.1\r\nX-Note: content-length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ]));
    }
}
