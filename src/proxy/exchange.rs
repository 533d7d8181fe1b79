//! Upstream phase: a request written to an instance and its answer head read back, within
//! `UPSTREAM_TIMEOUT`; for users' requests and mirrored copies alike. Here is the one retry rule:
//! a request without a body and with an idempotent method, sent on a *reused* connection that
//! failed before any byte of the answer came back, goes once more on a fresh connection (the
//! instance may have closed it while idle); never after an answer byte, never twice.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::answer::{self, Answer, Asker};
use super::pool::{self, Pool, UpstreamError};
use super::Upstream;

/// First size of the buffer an instance's answer is read into.
pub const ANSWER_READ: usize = 8 * 1024;

/// Whether a request may be sent again after its connection failed (RFC 9110 §9.2.2; `PUT` and
/// `DELETE` are idempotent too, but a retried write is never worth the risk).
pub fn retryable(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// A connection to `to`: an idle one (`true`) unless `fresh`, else a new one.
pub async fn connection(
    pool: &Pool,
    to: &Arc<Upstream>,
    fresh: bool,
) -> Result<(TcpStream, bool), UpstreamError> {
    if !fresh {
        if let Some(c) = pool.take(to) {
            return Ok((c, true));
        }
    }
    // Boxed: connecting is rare, and its state would otherwise enlarge every request's future.
    Ok((Box::pin(pool::open(to)).await?, false))
}

/// Write `request` (head and any body) to `to` and wait for the first bytes of its answer (into
/// `answer`, cleared first), retrying once as the module says when `retry`.
pub async fn send(
    pool: &Pool,
    to: &Arc<Upstream>,
    request: &[u8],
    retry: bool,
    answer: &mut Vec<u8>,
    timeout: Duration,
) -> Result<TcpStream, UpstreamError> {
    let mut fresh = false;
    loop {
        let (mut conn, reused) = connection(pool, to, fresh).await?;
        answer.clear();
        // An empty Vec would be read into 64 bytes at a time.
        answer.reserve(ANSWER_READ);
        let exchanged = async {
            conn.write_all(request).await?;
            conn.read_buf(answer).await
        };
        match tokio::time::timeout(timeout, exchanged).await {
            Err(_) => return Err(UpstreamError::Timeout(timeout)),
            Ok(Ok(1..)) => return Ok(conn),
            Ok(_) if reused && retry && !fresh => fresh = true,
            Ok(Ok(_)) => return Err(UpstreamError::Closed),
            Ok(Err(e)) => return Err(UpstreamError::Io(e)),
        }
    }
}

/// Read on until `answer` holds a whole answer head, and parse it (rewritten for the user into
/// `out`). Interim answers are returned like any other: the caller relays them and reads on.
pub async fn read_head(
    conn: &mut TcpStream,
    answer: &mut Vec<u8>,
    asker: Asker,
    out: &mut Vec<u8>,
    timeout: Duration,
) -> Result<Answer, UpstreamError> {
    loop {
        if let Some(a) = answer::parse(answer, asker, out)? {
            return Ok(a);
        }
        if answer.capacity() == answer.len() {
            answer.reserve(ANSWER_READ);
        }
        match tokio::time::timeout(timeout, conn.read_buf(answer)).await {
            Err(_) => return Err(UpstreamError::Timeout(timeout)),
            Ok(Ok(1..)) => {}
            Ok(Ok(_)) => return Err(UpstreamError::Closed),
            Ok(Err(e)) => return Err(UpstreamError::Io(e)),
        }
    }
}
