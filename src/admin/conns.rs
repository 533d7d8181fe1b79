//! The admin API's connections: at most `MAX_ADMIN_CONNECTIONS` at once (SSE streams counted),
//! each held to `HEADER_TIMEOUT` for a request head and for idling between requests, so the admin
//! side can never use up the descriptors the proxy and the children's heartbeats need.

use std::net::IpAddr;
use std::sync::Arc;
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
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a connection's call in flight may take to finish once understudy stops.
const DRAIN: Duration = Duration::from_secs(10);

/// Serve `router` on `listener` until `stop`: a connection is accepted only with a permit from
/// `permits` (past the bound, new ones wait in the listen backlog), then its calls in flight
/// finish (up to [`DRAIN`]) and every connection task is joined.
pub(super) async fn serve<L: Listener>(
    mut listener: L,
    router: Router,
    permits: Arc<Semaphore>,
    header_timeout: Duration,
    stop: CancellationToken,
) {
    let tasks = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let io = tokio::select! {
            _ = stop.cancelled() => break,
            (io, _) = listener.accept() => io,
        };
        let service = TowerToHyperService::new(router.clone());
        let stop = stop.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let mut builder = http1::Builder::new();
            // The head timer also runs while a kept-alive connection waits for its next request.
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
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
