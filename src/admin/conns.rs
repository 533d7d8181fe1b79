//! The admin API's connections: at most `MAX_ADMIN_CONNECTIONS` at once (SSE streams counted),
//! each held to `HEADER_TIMEOUT` for a request head and for idling between requests, and to
//! `SEND_TIMEOUT` for writes that make no progress, so the admin side can never use up the
//! descriptors the proxy and the children's heartbeats need, nor keep a client that stopped
//! reading for ever.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::Listener;
use axum::{Json, Router};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a connection's call in flight may take to finish once understudy stops.
const DRAIN: Duration = Duration::from_secs(10);

/// The most a TCP admin connection may hold unsent in the kernel (`TCP_NOTSENT_LOWAT`). Left to
/// Linux, a connection's send buffer grows to megabytes, so a client that stops reading an
/// event stream pins them, and `SEND_TIMEOUT` starts counting only once they are full (for a
/// quiet stream, days later); bounded, its writes stall after its own receive buffer and this.
const UNSENT_LIMIT: libc::c_int = 16 * 1024;

/// The bounds on one admin connection's silence.
#[derive(Clone, Copy, Debug)]
pub(super) struct Timeouts {
    /// `HEADER_TIMEOUT`: for a request head, and for idling between requests.
    pub header: Duration,
    /// `SEND_TIMEOUT`: for a write that makes no progress (a client that stopped reading).
    pub send: Duration,
}

/// Serve `router` on `listener` until `stop`: a connection is accepted only with a permit from
/// `permits` (past the bound, new ones wait in the listen backlog), then its calls in flight
/// finish (up to [`DRAIN`]) and every connection task is joined.
pub(super) async fn serve<L: Listener>(
    mut listener: L,
    router: Router,
    permits: Arc<Semaphore>,
    timeouts: Timeouts,
    stop: CancellationToken,
) where
    L::Io: std::os::fd::AsRawFd,
    L::Addr: std::fmt::Debug,
{
    let tasks = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (io, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            (io, peer) = listener.accept() => (io, peer),
        };
        limit_unsent(&io);
        let service = TowerToHyperService::new(router.clone());
        let stop = stop.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let mut builder = http1::Builder::new();
            // The head timer also runs while a kept-alive connection waits for its next request.
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(timeouts.header);
            let io = WriteStall::new(io, timeouts.send, format!("{peer:?}"));
            let conn = builder.serve_connection(TokioIo::new(io), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(DRAIN, conn).await;
                }
            }
        });
    }
    drop(listener);
    tasks.close();
    tasks.wait().await;
}

/// Bound what the kernel holds unsent for a TCP connection ([`UNSENT_LIMIT`]); nothing for a
/// unix socket, whose buffers are small and whose clients are understudy's own user.
fn limit_unsent(io: &impl std::os::fd::AsRawFd) {
    let limit = UNSENT_LIMIT;
    // SAFETY: setsockopt on a descriptor `io` owns, reading a c_int that outlives the call; on a
    // socket that is not TCP it fails (EOPNOTSUPP), which changes nothing.
    let r = unsafe {
        libc::setsockopt(
            io.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            std::ptr::from_ref(&limit).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
            tracing::debug!("cannot bound an admin connection's unsent bytes: {e}");
        }
    }
}

/// A connection whose writes fail with `TimedOut` once one has waited `limit` without the
/// client taking a byte: hyper then drops the connection, and with it an event stream's slot
/// and anything queued for it; the log says so once. Reads are untouched (`HEADER_TIMEOUT`
/// bounds those).
pub(super) struct WriteStall<S> {
    inner: S,
    limit: Duration,
    /// Running while a write waits; cleared by any write that goes through.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The client, as the log names it; `None` once the drop was logged.
    peer: Option<String>,
}

impl<S> WriteStall<S> {
    /// `inner`, its writes bounded by `limit` of no progress; `peer` names the client in the log.
    pub(super) fn new(inner: S, limit: Duration, peer: String) -> WriteStall<S> {
        WriteStall {
            inner,
            limit,
            stalled: None,
            peer: Some(peer),
        }
    }

    /// `r`, a write's outcome, unless it is one more wait past `limit`.
    fn bounded<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.stalled = None;
            return r;
        }
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                let why = format!("the client took nothing for {limit:?} (SEND_TIMEOUT)");
                if let Some(peer) = self.peer.take() {
                    tracing::warn!(
                        "admin API: {why} while understudy had more to send (an event stream \
                         nobody reads?): closing its connection {peer}"
                    );
                }
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStall<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteStall<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.bounded(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.bounded(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.bounded(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.bounded(cx, r)
    }
}

/// `Host` names the TCP API answers to: any IP literal (a page's origin is then the address
/// itself, so no rebinding), `localhost`, and `ADMIN_HOSTS`.
#[derive(Clone, Debug)]
pub(super) struct AllowedHosts(pub Arc<[String]>);

impl AllowedHosts {
    /// Whether a `Host` value (with or without a port) may reach the API.
    pub(super) fn allows(&self, host: &str) -> bool {
        let name = strip_port(host.trim());
        if name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok() {
            return true;
        }
        if let Some(v6) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
            return v6.parse::<std::net::Ipv6Addr>().is_ok();
        }
        self.0.iter().any(|h| h.eq_ignore_ascii_case(name))
    }
}

/// `name:port` → `name`; `[v6]:port` → `[v6]`; a bare name or `[v6]` as is.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// Refuse a request whose `Host` is not one of ours with 421: a web page whose name was made to
/// resolve to this machine (DNS rebinding) must not read status, metrics or events.
pub(super) async fn require_host(
    State(hosts): State<AllowedHosts>,
    req: Request,
    next: Next,
) -> Response {
    let host = req.headers().get(header::HOST).map(|v| v.to_str());
    match host {
        None => next.run(req).await,
        Some(Ok(h)) if hosts.allows(h) => next.run(req).await,
        _ => (
            StatusCode::MISDIRECTED_REQUEST,
            Json(json!({
                "ok": false,
                "error": "this Host is not one the admin API answers to: use its address, \
                          localhost, or add the name to ADMIN_HOSTS",
            })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_write_the_client_takes_nothing_of_for_the_limit_fails_and_a_slow_reader_is_kept() {
        let limit = Duration::from_secs(60);
        // A client that never reads: the pipe fills, then the write waits until the limit.
        let (ours, _client) = tokio::io::duplex(1024);
        let mut conn = WriteStall::new(ours, limit, "test".into());
        let start = tokio::time::Instant::now();
        let write = conn.write_all(&[b'x'; 64 * 1024]);
        let e = tokio::time::timeout(limit * 3, write)
            .await
            .expect("the stalled write was given up within the limit")
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(e.to_string().contains("SEND_TIMEOUT"), "{e}");
        let waited = start.elapsed();
        assert!(waited >= limit && waited < limit * 2, "{waited:?}");

        // A client that takes a little now and then, each time within the limit, is never cut.
        let (ours, mut client) = tokio::io::duplex(1024);
        let mut conn = WriteStall::new(ours, limit, "test".into());
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let mut got = 0;
            while got < 64 * 1024 {
                tokio::time::sleep(limit / 2).await;
                got += client.read(&mut buf).await.unwrap();
            }
        });
        conn.write_all(&[b'x'; 64 * 1024]).await.unwrap();
        reader.await.unwrap();
    }

    #[test]
    fn only_addresses_localhost_and_named_hosts_pass() {
        let hosts = AllowedHosts(vec!["understudy.internal".to_string()].into());
        for ok in [
            "127.0.0.1:8081",
            "127.0.0.1",
            "localhost:8081",
            "LOCALHOST",
            "[::1]:8081",
            "[::1]",
            "10.1.2.3:80",
            "understudy.internal",
            "Understudy.Internal:8081",
        ] {
            assert!(hosts.allows(ok), "{ok} refused");
        }
        for bad in [
            "evil.example",
            "evil.example:8081",
            "localhost.evil.example",
            "127.0.0.1.nip.io:8081",
            "[::1",
            "",
            "understudy.internal.evil",
        ] {
            assert!(!hosts.allows(bad), "{bad} allowed");
        }
    }
}
