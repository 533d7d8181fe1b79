//! Upstream phase: a request written to an instance and its answer head read back, within
//! `UPSTREAM_TIMEOUT`; for users' requests and mirrored copies alike. Here is the one retry rule:
//! a request without a body and with an idempotent method, sent on a *reused* connection that
//! failed before any byte of the answer came back, goes once more on a fresh connection (the
//! instance may have closed it while idle); never after an answer byte, never twice. And one
//! rule for an instance gone mid-request: such a request, failed before any answer byte on a
//! fresh connection, is given back as refused if the instance now refuses connections (it
//! crashed, or closed its port), so it goes where users go next rather than fail with a 502.

use std::sync::Arc;

use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::answer::{self, Answer, Asker};
use super::pool::{self, Pool, UpstreamError};
use super::timer::Timer;
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
    timer: &mut Timer,
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
        let failed = match timer.bound(exchanged).await {
            None => return Err(UpstreamError::Timeout(timer.after())),
            Some(Ok(1..)) => return Ok(conn),
            Some(_) if reused && retry && !fresh => {
                fresh = true;
                continue;
            }
            Some(Ok(_)) => UpstreamError::Closed,
            Some(Err(e)) => UpstreamError::Io(e),
        };
        return Err(if retry {
            gone_or(to, failed).await
        } else {
            failed
        });
    }
}

/// `failed`, unless `to` now refuses connections: then it has gone (its process exited, or it
/// closed its port: an answer it had not begun will never come) and the refusal is returned,
/// which hands the request back to be routed where users go next. An instance still listening
/// keeps `failed` (it may have acted on the request; a 502 says it broke off).
async fn gone_or(to: &Arc<Upstream>, failed: UpstreamError) -> UpstreamError {
    // A gone instance refuses at once; one that does not answer the connect is not gone.
    match tokio::time::timeout(GONE_PROBE, Box::pin(pool::open(to))).await {
        Ok(Err(refused)) if refused.is_refused() => refused,
        _ => failed,
    }
}

/// How long [`gone_or`] waits for its connect: a refusal comes at once on loopback, and the
/// 502 of an instance that accepts nothing is not held back for `CONNECT_TIMEOUT`.
const GONE_PROBE: std::time::Duration = std::time::Duration::from_millis(250);

/// Read on until `answer` holds a whole answer head, and parse it (rewritten for the user into
/// `out`). Interim answers are returned like any other: the caller relays them and reads on.
pub async fn read_head(
    conn: &mut TcpStream,
    answer: &mut Vec<u8>,
    asker: Asker,
    out: &mut Vec<u8>,
    timer: &mut Timer,
) -> Result<Answer, UpstreamError> {
    loop {
        if let Some(a) = answer::parse(answer, asker, out)? {
            return Ok(a);
        }
        if answer.capacity() == answer.len() {
            answer.reserve(ANSWER_READ);
        }
        match timer.bound(conn.read_buf(answer)).await {
            None => return Err(UpstreamError::Timeout(timer.after())),
            Some(Ok(1..)) => {}
            Some(Ok(_)) => return Err(UpstreamError::Closed),
            Some(Err(e)) => return Err(UpstreamError::Io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use std::time::Duration;

    use semver::Version;
    use tokio::net::TcpListener;

    use super::*;
    use crate::instance::InstanceId;

    /// An instance that reads each request head and then resets its connection (as an app that
    /// resets on a timeout), or, with `answer_fresh`, answers on every connection but the first
    /// `resets` ones. Counts the request heads it read.
    async fn resetting(resets: usize, answer_fresh: bool) -> (Arc<Upstream>, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(AtomicUsize::new(0));
        let counted = seen.clone();
        tokio::spawn(async move {
            let mut accepted = 0;
            while let Ok((mut s, _)) = listener.accept().await {
                accepted += 1;
                let (counted, reset) = (counted.clone(), !answer_fresh || accepted <= resets);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        if !matches!(s.read_buf(&mut buf).await, Ok(1..)) {
                            return;
                        }
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    if reset {
                        let _ = s.set_zero_linger();
                        return;
                    }
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                });
            }
        });
        let up = Upstream::new(InstanceId(1), Version::new(1, 0, 0), "127.0.0.1", port).unwrap();
        (Arc::new(up), seen)
    }

    async fn pooled(pool: &Pool, up: &Arc<Upstream>, n: usize) {
        for _ in 0..n {
            pool.put(up.clone(), pool::open(up).await.unwrap());
        }
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";
    const SECOND: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_get_failing_on_a_reused_connection_is_sent_once_more_on_a_fresh_one_only() {
        let (up, seen) = resetting(0, false).await;
        let pool = Pool::default();
        pooled(&pool, &up, 3).await;
        let mut answer = Vec::new();
        let sent = send(&pool, &up, GET, true, &mut answer, &mut Timer::new(SECOND)).await;
        assert!(sent.is_err(), "every connection resets");
        assert_eq!(
            seen.load(Ordering::SeqCst),
            2,
            "once reused, once fresh: never the pool"
        );
        assert_eq!(pool.idle(), 2, "the other idle connections were not walked");
    }

    #[tokio::test]
    async fn the_retry_answers_when_the_fresh_connection_does() {
        let (up, seen) = resetting(1, true).await;
        let pool = Pool::default();
        pooled(&pool, &up, 1).await;
        let mut answer = Vec::new();
        let conn = send(&pool, &up, GET, true, &mut answer, &mut Timer::new(SECOND)).await;
        assert!(conn.is_ok(), "{:?}", conn.err());
        assert!(answer.starts_with(b"HTTP/1.1 200 OK"));
        assert_eq!(seen.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_request_that_may_not_be_retried_is_sent_once() {
        let (up, seen) = resetting(1, true).await;
        let pool = Pool::default();
        pooled(&pool, &up, 1).await;
        let mut answer = Vec::new();
        let post = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n";
        let retry = retryable(&Method::POST);
        let mut timer = Timer::new(SECOND);
        let sent = send(&pool, &up, post, retry, &mut answer, &mut timer).await;
        assert!(sent.is_err());
        assert_eq!(
            seen.load(Ordering::SeqCst),
            1,
            "a POST reached the app twice"
        );
        for m in [Method::PUT, Method::PATCH, Method::DELETE, Method::POST] {
            assert!(!retryable(&m), "{m}");
        }
    }

    /// An instance that reads the first request head, then closes its port and resets the
    /// connection (as a process that exits mid-request does).
    async fn dying() -> Arc<Upstream> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                if !matches!(s.read_buf(&mut buf).await, Ok(1..)) {
                    return;
                }
            }
            drop(listener);
            let _ = s.set_zero_linger();
        });
        let up = Upstream::new(InstanceId(1), Version::new(1, 0, 0), "127.0.0.1", port).unwrap();
        Arc::new(up)
    }

    /// A GET the instance broke off as it went away is given back as refused (to go where users
    /// go next); a POST is not (it may have been acted on).
    #[tokio::test]
    async fn a_request_that_may_be_sent_again_is_given_back_when_its_instance_is_gone() {
        for (retry, given_back) in [(true, true), (false, false)] {
            let up = dying().await;
            let mut answer = Vec::new();
            let mut timer = Timer::new(SECOND);
            let sent = send(&Pool::default(), &up, GET, retry, &mut answer, &mut timer).await;
            let e = sent.expect_err("never answered");
            assert_eq!(
                e.is_refused(),
                given_back,
                "may be sent again: {retry}: {e}"
            );
        }
    }

    #[tokio::test]
    async fn an_instance_that_never_answers_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = tokio::spawn(async move { listener.accept().await });
        let up = Arc::new(
            Upstream::new(InstanceId(1), Version::new(1, 0, 0), "127.0.0.1", port).unwrap(),
        );
        let mut answer = Vec::new();
        let mut t = Timer::new(Duration::from_millis(200));
        let sent = send(&Pool::default(), &up, GET, true, &mut answer, &mut t).await;
        assert!(
            matches!(sent, Err(UpstreamError::Timeout(_))),
            "{:?}",
            sent.err()
        );
        drop(held);
    }
}
