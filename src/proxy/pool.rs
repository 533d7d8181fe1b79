//! Keep-alive connections to the instances: one pool per proxy thread for users' requests, and
//! one for the mirror's copies, of the same kind. A connection goes back only after an answer was
//! read to its end with nothing after it; before it is used again it is checked without blocking,
//! so a connection the instance closed while idle, or one with bytes nobody asked for (a late
//! body after a `HEAD`), is never handed to the next request.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpStream;

use super::answer::BadAnswer;
use super::coarse;
use super::Upstream;

/// How long an upstream connection may wait for a request before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long connecting to an instance may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle connections kept per pool, all upstreams together (more than the users' concurrency of a
/// thread rarely happens; past it the oldest is closed).
pub const MAX_IDLE: usize = 1024;

/// Why a request could not be forwarded to an instance, or its answer relayed.
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
    /// The connection failed while the request was sent or the answer read.
    #[error("the connection failed: {0}")]
    Io(#[source] std::io::Error),
    /// The instance closed the connection without answering (or before its answer ended).
    #[error("the instance closed the connection without answering")]
    Closed,
    /// The instance answered something the proxy cannot relay.
    #[error("it answered {0}")]
    BadAnswer(#[from] BadAnswer),
    /// The instance sent nothing for longer than `UPSTREAM_TIMEOUT`.
    #[error("it sent nothing for {0:?} (UPSTREAM_TIMEOUT)")]
    Timeout(Duration),
}

impl UpstreamError {
    /// Whether this is a timeout (answered 504 rather than 502).
    pub fn is_timeout(&self) -> bool {
        matches!(self, UpstreamError::Timeout(_))
    }

    /// Whether no connection could be made because nothing listens (the instance has gone, or
    /// is going): then the request never reached it, whatever its method, and may go elsewhere.
    pub fn is_refused(&self) -> bool {
        matches!(self, UpstreamError::Connect { source, .. }
            if source.kind() == std::io::ErrorKind::ConnectionRefused)
    }
}

/// An idle connection to an instance and when it went idle.
struct Idle {
    upstream: Arc<Upstream>,
    stream: TcpStream,
    since: Duration,
}

/// How often every idle connection is looked at (and the closed ones dropped), at most.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Idle keep-alive connections, newest last.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<Vec<Idle>>,
    /// When every idle connection was last looked at.
    swept: Mutex<Option<Duration>>,
}

impl Pool {
    /// The newest idle connection to `upstream` that is still quiet; stale, closed or noisy ones
    /// on the way are closed.
    pub fn take(&self, upstream: &Arc<Upstream>) -> Option<TcpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            if Arc::ptr_eq(&idle[i].upstream, upstream) {
                let c = idle.remove(i);
                if coarse::now().saturating_sub(c.since) < IDLE_TIMEOUT && quiet(&c.stream) {
                    return Some(c.stream);
                }
            }
        }
        None
    }

    /// Give back a connection whose answer was read to its end.
    pub fn put(&self, upstream: Arc<Upstream>, stream: TcpStream) {
        let since = coarse::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        // Amortised sweep, oldest first: over the bound, stale, or to another instance that closed
        // it (a stopped one: its connections are the oldest). The newest are to the instance
        // being served, so in steady state this is one look at the first.
        while idle.first().is_some_and(|c| {
            idle.len() >= MAX_IDLE
                || since.saturating_sub(c.since) >= IDLE_TIMEOUT
                || (!Arc::ptr_eq(&c.upstream, &upstream) && !quiet(&c.stream))
        }) {
            idle.remove(0);
        }
        idle.push(Idle {
            upstream,
            stream,
            since,
        });
    }

    /// Drop every idle connection that is stale or closed, at most once per `SWEEP_EVERY`; called
    /// by a tick (each proxy thread's, the mirror's sweeper), never on the request path.
    pub fn sweep(&self) {
        self.sweep_at(coarse::now());
    }

    /// Once per `SWEEP_EVERY`, drop every idle connection that is stale or closed (an instance
    /// stopped since): the amortised sweep above stops at the first live connection, and closed
    /// ones behind it would hold their descriptors until they reach the front.
    fn sweep_at(&self, now: Duration) {
        {
            let mut swept = self.swept.lock().unwrap_or_else(PoisonError::into_inner);
            if swept.is_some_and(|at| now.saturating_sub(at) < SWEEP_EVERY) {
                return;
            }
            *swept = Some(now);
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|c| now.saturating_sub(c.since) < IDLE_TIMEOUT && quiet(&c.stream));
    }

    /// Idle connections held now (for tests).
    pub fn idle(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Whether nothing waits to be read on `stream`: no EOF, no reset, no stray bytes. One
/// non-blocking `recv(MSG_PEEK)`: tokio's own readiness may not have seen bytes or a FIN that
/// came since its last wait for events, and under load the connection is taken before that.
fn quiet(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    // SAFETY: recv on a descriptor this stream owns, into a one-byte buffer that outlives the
    // call; MSG_PEEK leaves the socket's data as it was, MSG_DONTWAIT never blocks.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            byte.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && {
        let e = std::io::Error::last_os_error().raw_os_error();
        e == Some(libc::EAGAIN) || e == Some(libc::EWOULDBLOCK)
    }
}

/// A TCP connection to `upstream` (no delay on), within `CONNECT_TIMEOUT`.
pub async fn open(upstream: &Upstream) -> Result<TcpStream, UpstreamError> {
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
    use semver::Version;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::instance::InstanceId;

    async fn pair() -> (Arc<Upstream>, TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(
            Upstream::new(InstanceId(1), Version::new(1, 0, 0), "127.0.0.1", port).unwrap(),
        );
        let ours = open(&up).await.unwrap();
        let (theirs, _) = listener.accept().await.unwrap();
        (up, ours, theirs)
    }

    #[tokio::test]
    async fn a_quiet_connection_is_reused() {
        let (up, ours, _theirs) = pair().await;
        let pool = Pool::default();
        pool.put(up.clone(), ours);
        assert!(pool.take(&up).is_some());
        assert!(pool.take(&up).is_none());
    }

    #[tokio::test]
    async fn a_connection_closed_or_with_stray_bytes_is_never_reused() {
        let pool = Pool::default();
        let (up, ours, theirs) = pair().await;
        drop(theirs);
        ours.readable().await.unwrap();
        pool.put(up.clone(), ours);
        assert!(
            pool.take(&up).is_none(),
            "a connection closed while idle was reused"
        );

        let (up, ours, mut theirs) = pair().await;
        theirs.write_all(b"late body").await.unwrap();
        ours.readable().await.unwrap();
        pool.put(up.clone(), ours);
        assert!(
            pool.take(&up).is_none(),
            "a connection with stray bytes was reused"
        );
        assert_eq!(pool.idle(), 0);
        let mut rest = Vec::new();
        let _ = theirs.read_to_end(&mut rest).await;
    }

    /// A late body or a close that comes just after the answer, before the event loop waits
    /// again: under load another request takes the connection in that instant. The kernel has
    /// it (on loopback, once the write or close returned); tokio's readiness would not yet, and
    /// the answer's short read cleared it. (Tried and reverted: docs/benchmarks.md, December (10).)
    #[tokio::test]
    async fn what_comes_just_after_the_answer_keeps_the_connection_from_reuse() {
        for close in [false, true] {
            let pool = Pool::default();
            let (up, mut ours, mut theirs) = pair().await;
            theirs
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            let mut answer = Vec::with_capacity(4096);
            while answer.len() < 38 {
                assert!(ours.read_buf(&mut answer).await.unwrap() > 0);
            }
            pool.put(up.clone(), ours);
            // No await from here to `take`: the event loop does not run in between.
            if close {
                drop(theirs);
            } else {
                std::io::Write::write_all(&mut theirs.into_std().unwrap(), b"late body").unwrap();
            }
            assert!(
                pool.take(&up).is_none(),
                "a connection was reused though {} came just after its answer",
                if close { "a close" } else { "a late body" }
            );
        }
    }

    /// Bytes or a close that come while the connection waits in the pool keep it from reuse.
    #[tokio::test]
    async fn what_comes_while_a_connection_is_idle_keeps_it_from_reuse() {
        for close in [false, true] {
            let pool = Pool::default();
            let (up, ours, mut theirs) = pair().await;
            pool.put(up.clone(), ours);
            if close {
                drop(theirs);
            } else {
                theirs.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
            }
            // Let the event loop wait for events once, as an idle connection's thread does.
            let (_, probe, mut peer) = pair().await;
            peer.write_all(b"x").await.unwrap();
            probe.readable().await.unwrap();
            assert!(
                pool.take(&up).is_none(),
                "a connection that was {} while idle was reused",
                if close { "closed" } else { "sent stray bytes" }
            );
        }
    }
}
