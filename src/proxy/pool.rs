//! Keep-alive connections from one proxy thread to the instances it forwards to.
//!
//! Measured against hyper-util's pooled client (docs/benchmarks.md): that client spawns a task per
//! request to put its connection back, passes a oneshot channel through every answer, hashes
//! `(scheme, authority)` under a mutex and rewrites each URI. Here a request takes the newest idle
//! connection of its upstream, and running's answer gives it back when its body has been read to
//! its end, on the same thread, with no task and no channel of our own.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{ProxyBody, Upstream};

/// How long an upstream connection may wait for a request before it is closed.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long connecting to an instance may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle connections kept per proxy thread, all upstreams together (more than the users'
/// concurrency of a thread rarely happens; past it the oldest is closed).
pub(super) const MAX_IDLE: usize = 1024;

/// Why a request could not be forwarded to an instance.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No TCP connection could be opened.
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        /// Where.
        authority: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Connecting took longer than allowed.
    #[error("connecting to {authority} took longer than {CONNECT_TIMEOUT:?}")]
    ConnectTimeout {
        /// Where.
        authority: String,
    },
    /// The HTTP exchange failed (the instance closed or reset the connection, or answered
    /// something that is not HTTP).
    #[error("{0}")]
    Http(#[from] hyper::Error),
    /// The connection failed while the request was sent or the answer head read.
    #[error("the connection failed: {0}")]
    Io(#[source] std::io::Error),
    /// The instance closed the connection without answering.
    #[error("the instance closed the connection without answering")]
    Closed,
    /// The instance answered something the proxy cannot relay.
    #[error("it answered {0}")]
    BadAnswer(String),
}

/// An idle connection and when it went idle.
struct Idle {
    upstream: Arc<Upstream>,
    sender: SendRequest<ProxyBody>,
    since: Instant,
}

/// One proxy thread's idle upstream connections, newest last.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<Vec<Idle>>,
}

/// A connection lent to one request: given back with [`Lent::give_back`] once running's answer
/// has been read to its end; dropped otherwise, which closes it.
pub struct Lent {
    pool: Arc<Pool>,
    upstream: Arc<Upstream>,
    sender: SendRequest<ProxyBody>,
}

impl Lent {
    /// The answer ended cleanly: the connection can carry another request.
    pub fn give_back(self) {
        let Lent {
            pool,
            upstream,
            sender,
        } = self;
        pool.put(upstream, sender);
    }
}

impl Pool {
    /// Send `req` to `upstream` on an idle connection, or a new one. A request that an idle
    /// connection closed before it was written is sent again on a new connection (as hyper-util's
    /// client does); nothing that reached the instance is ever sent twice.
    pub async fn send(
        self: &Arc<Self>,
        upstream: &Arc<Upstream>,
        mut req: Request<ProxyBody>,
    ) -> Result<(Response<Incoming>, Lent), UpstreamError> {
        while let Some(Idle {
            upstream: up,
            mut sender,
            ..
        }) = self.take(upstream)
        {
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, self.lend(up, sender))),
                Err(mut e) => match e.take_message() {
                    Some(r) => req = r,
                    None => return Err(e.into_error().into()),
                },
            }
        }
        // Boxed: connecting is rare, and its state would otherwise enlarge every request's future.
        let mut sender = Box::pin(connect(upstream)).await?;
        let resp = sender.send_request(req).await?;
        Ok((resp, self.lend(upstream.clone(), sender)))
    }

    fn lend(self: &Arc<Self>, upstream: Arc<Upstream>, sender: SendRequest<ProxyBody>) -> Lent {
        Lent {
            pool: self.clone(),
            upstream,
            sender,
        }
    }

    /// The newest idle connection to `upstream` that is ready for a request. One still busy
    /// (running answered before the user's request body was all sent) stays for later: taking
    /// it would make this request wait on another user's upload.
    fn take(&self, upstream: &Arc<Upstream>) -> Option<Idle> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            let c = &idle[i];
            if !Arc::ptr_eq(&c.upstream, upstream) {
                continue;
            }
            if c.sender.is_closed() || now.duration_since(c.since) >= IDLE_TIMEOUT {
                idle.remove(i);
            } else if c.sender.is_ready() {
                return Some(idle.remove(i));
            }
        }
        None
    }

    fn put(&self, upstream: Arc<Upstream>, sender: SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        let since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        // Amortised sweep: the oldest goes when it is closed (its instance stopped), stale, or
        // over the bound.
        if idle.first().is_some_and(|c| {
            idle.len() >= MAX_IDLE
                || c.sender.is_closed()
                || since.duration_since(c.since) >= IDLE_TIMEOUT
        }) {
            idle.remove(0);
        }
        idle.push(Idle {
            upstream,
            sender,
            since,
        });
    }
}

/// A new connection to `upstream`, its driving task spawned on this thread.
async fn connect(upstream: &Upstream) -> Result<SendRequest<ProxyBody>, UpstreamError> {
    let stream = open(upstream).await?;
    // One buffer per message, written with send(2): cheaper here than writev(2) (see
    // docs/benchmarks.md).
    let (sender, conn) = http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("an upstream connection ended: {e}");
        }
    });
    Ok(sender)
}

/// A TCP connection to `upstream` (no delay on), within `CONNECT_TIMEOUT`; for both paths.
pub(super) async fn open(upstream: &Upstream) -> Result<TcpStream, UpstreamError> {
    let authority = upstream.authority.as_str();
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(authority)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(source)) => Err(UpstreamError::Connect {
            authority: authority.to_string(),
            source,
        }),
        Err(_) => Err(UpstreamError::ConnectTimeout {
            authority: authority.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use semver::Version;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::instance::InstanceId;

    /// An upstream that answers `hi` to each request head it reads; with `close_after_answer` it
    /// closes the connection after each answer without saying so (as servers with a short
    /// keep-alive timeout do). Counts the connections it accepted.
    async fn raw_upstream(close_after_answer: bool) -> (Arc<Upstream>, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.clear();
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi";
                        if s.write_all(answer).await.is_err() || close_after_answer {
                            return;
                        }
                    }
                });
            }
        });
        (upstream_at(port), accepted)
    }

    fn upstream_at(port: u16) -> Arc<Upstream> {
        let up = Upstream::new(InstanceId(1), Version::new(1, 0, 0), "127.0.0.1", port).unwrap();
        Arc::new(up)
    }

    async fn get(pool: &Arc<Pool>, up: &Arc<Upstream>) -> String {
        let req = Request::builder()
            .uri("/")
            .header("host", "x")
            .body(ProxyBody::Full(None))
            .unwrap();
        let (resp, lent) = pool.send(up, req).await.expect("the upstream answers");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        lent.give_back();
        String::from_utf8_lossy(&body).into_owned()
    }

    /// Connections the upstream accepted for five requests in a row, each answer read.
    async fn connections_for_five_gets(close_after_answer: bool) -> usize {
        let (up, accepted) = raw_upstream(close_after_answer).await;
        let pool = Arc::new(Pool::default());
        for _ in 0..5 {
            assert_eq!(get(&pool, &up).await, "hi");
        }
        accepted.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_answer_was_read() {
        assert_eq!(connections_for_five_gets(false).await, 1);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_while_idle_is_never_used() {
        assert_eq!(connections_for_five_gets(true).await, 5);
    }

    #[tokio::test]
    async fn an_answer_not_read_to_its_end_closes_its_connection() {
        let (up, accepted) = raw_upstream(false).await;
        let pool = Arc::new(Pool::default());
        let req = Request::new(ProxyBody::Full(None));
        let (resp, lent) = pool.send(&up, req).await.unwrap();
        drop((resp, lent));
        assert_eq!(get(&pool, &up).await, "hi");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_error_naming_the_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let up = upstream_at(port);
        let pool = Arc::new(Pool::default());
        let err = pool
            .send(&up, Request::new(ProxyBody::Full(None)))
            .await
            .err()
            .expect("nothing listens there");
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    }
}
