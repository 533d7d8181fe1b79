//! understudy's own answers to users (400, 405, 413, 431, 502, 503, 504): the one writer of them,
//! so every refusal and failure has the same shape (docs/http1.md) and none carries a body to a
//! `HEAD`, which a client would read as the next answer.

use std::io::Write;
use std::time::Duration;

use http::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Answer to a request body over the limit.
pub const TOO_LARGE: &str = "understudy: the request body is larger than MAX_REQUEST_BODY allows\n";

/// Answer to a chunked request body that is not one.
pub const BAD_BODY: &str =
    "understudy: the chunked request body is not well-formed (RFC 9112 section 7.1)\n";

/// Answer to a request whose body, read ahead, could not be kept on disk (or read back).
pub const BODY_LOST: &str = "understudy: the request body could not be kept on disk under \
     .understudy/ (its log says why); send it again\n";

/// Answer to a request still waiting for an instance when understudy stops: it reached none, so
/// asking again (of whatever serves next) is safe, even for a POST.
pub const STOPPING: &str = "understudy: stopping (or handing over to a new understudy), and the \
     request reached no instance of the service; retry in a moment\n";

/// How an own answer ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ending {
    /// The request was `HEAD`: the length is written, the body is not.
    pub head: bool,
    /// understudy closes the connection after it.
    pub close: bool,
    /// Ask the client to retry in this many seconds (`Retry-After`; running restarts, or
    /// understudy stops); 0: not asked.
    pub retry_after: u32,
}

/// Write the whole answer into `out` (cleared first).
pub fn write(out: &mut Vec<u8>, status: StatusCode, text: &[u8], ending: Ending) {
    out.clear();
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Unknown"),
        text.len(),
    );
    if ending.retry_after > 0 {
        let _ = write!(out, "retry-after: {}\r\n", ending.retry_after);
    }
    let _ = write!(
        out,
        "{}\r\n",
        if ending.close {
            "connection: close\r\n"
        } else {
            ""
        }
    );
    if !ending.head {
        out.extend_from_slice(text);
    }
}

/// Write one of understudy's own answers to `client` (within `send_timeout`), built in `out`.
pub async fn send(
    client: &mut TcpStream,
    out: &mut Vec<u8>,
    status: StatusCode,
    text: &[u8],
    ending: Ending,
    send_timeout: Duration,
) {
    write(out, status, text, ending);
    let _ = tokio::time::timeout(send_timeout, client.write_all(out)).await;
}

/// Why understudy answers a request itself that reached no instance, or whose body broke off:
/// one mapping to status, text and counter for every phase that meets one (the body read ahead,
/// the body sent on, a stop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unserved {
    /// A chunked body that is not one (400).
    BadBody,
    /// A body past `MAX_REQUEST_BODY` (413).
    TooLarge,
    /// The user went away, or sent nothing for `HEADER_TIMEOUT`: nothing to answer.
    ClientGone,
    /// understudy stops and nothing reached an instance (503 with `Retry-After`: safe to send
    /// again, whatever the method).
    Stopping,
    /// A body read ahead could not be kept on disk, or read back (500).
    Disk,
}

impl Unserved {
    /// Its answer, counted in `stats` (a stop's as unavailable, the rest as refused); `None`
    /// for a user gone.
    pub fn answer(self, stats: &super::stats::ProxyStats) -> Option<(StatusCode, &'static str)> {
        use std::sync::atomic::Ordering::Relaxed;
        let (status, text) = match self {
            Unserved::ClientGone => return None,
            Unserved::BadBody => (StatusCode::BAD_REQUEST, BAD_BODY),
            Unserved::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE),
            Unserved::Stopping => (StatusCode::SERVICE_UNAVAILABLE, STOPPING),
            Unserved::Disk => (StatusCode::INTERNAL_SERVER_ERROR, BODY_LOST),
        };
        match self {
            Unserved::Stopping => stats.unavailable.fetch_add(1, Relaxed),
            _ => stats.refused.fetch_add(1, Relaxed),
        };
        Some((status, text))
    }

    /// `Retry-After` seconds its answer asks for (0: none).
    pub fn retry_after(self) -> u32 {
        u32::from(self == Unserved::Stopping)
    }
}

/// understudy's own interim answer to `Expect: 100-continue`: go on with the body.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Write all of `bytes` within `timeout` (an interim answer, a head: small, so one bound for the
/// whole write).
pub async fn write_timed(
    stream: &mut TcpStream,
    bytes: &[u8],
    timeout: Duration,
) -> Result<(), super::pool::UpstreamError> {
    use super::pool::UpstreamError;
    match tokio::time::timeout(timeout, stream.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(UpstreamError::Io(e)),
        Err(_) => Err(UpstreamError::Timeout(timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_gets_the_length_and_no_body() {
        let mut out = Vec::new();
        let close = Ending {
            head: true,
            close: true,
            retry_after: 0,
        };
        write(&mut out, StatusCode::BAD_GATEWAY, b"gone\n", close);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 5\r\nconnection: close\r\n\r\n"
        );
        write(
            &mut out,
            StatusCode::SERVICE_UNAVAILABLE,
            b"wait\n",
            Ending {
                retry_after: 30,
                ..Ending::default()
            },
        );
        assert!(String::from_utf8(out)
            .unwrap()
            .ends_with("retry-after: 30\r\n\r\nwait\n"));
    }
}
