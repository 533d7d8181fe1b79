//! The reverse proxy users talk to. Every request goes to `running` and its answer streams back
//! unchanged; a copy of eligible requests is handed to the mirror (see [`mirror`]) without
//! waiting, so testing is never on the user's path.

pub mod mirror;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use semver::Version;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::instance::InstanceId;
use mirror::{MirrorJob, MirrorQueue};

/// How long open user connections get to finish when understudy shuts down.
const CONNECTION_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// One instance as the proxy sees it: where it listens and how many user requests it is serving.
#[derive(Debug)]
pub struct Upstream {
    /// The instance behind it.
    pub id: InstanceId,
    /// Its version, for messages.
    pub version: Version,
    /// `host:port`.
    pub authority: http::uri::Authority,
    /// User requests in flight, including their response bodies; drained before a stop.
    pub inflight: AtomicUsize,
}

impl Upstream {
    /// An upstream for the instance listening on `host:port`.
    pub fn new(id: InstanceId, version: Version, host: &str, port: u16) -> Upstream {
        let authority = format!("{host}:{port}")
            .parse()
            .expect("host from config and a u16 port form a valid authority");
        Upstream {
            id,
            version,
            authority,
            inflight: AtomicUsize::new(0),
        }
    }
}

/// Where traffic goes now; published by the supervisor, read by the proxy on every request.
#[derive(Debug, Default, Clone)]
pub struct Routes {
    /// Gets every user request.
    pub running: Option<Arc<Upstream>>,
    /// Gets mirrored copies.
    pub testing: Option<Arc<Upstream>>,
}

/// Counters shown in status and metrics; relaxed atomics, never a lock on the request path.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// User requests received.
    pub requests: AtomicU64,
    /// User requests answered 502 (running unreachable).
    pub bad_gateway: AtomicU64,
    /// User requests answered 503 (nothing running).
    pub unavailable: AtomicU64,
    /// Copies handed to the mirror queue.
    pub mirrored: AtomicU64,
    /// Copies dropped because the mirror queue was full.
    pub mirror_dropped: AtomicU64,
    /// Eligible requests not mirrored because their body was too large or unsized.
    pub mirror_skipped_body: AtomicU64,
}

/// Counts a user request against its upstream until the response body is done.
pub struct InflightGuard(Arc<Upstream>);

impl InflightGuard {
    fn new(u: &Arc<Upstream>) -> InflightGuard {
        u.inflight.fetch_add(1, Ordering::AcqRel);
        InflightGuard(u.clone())
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A body that is either small and whole, or streamed from the other side (holding its
/// upstream's in-flight count while it streams).
pub enum ProxyBody {
    /// A body known in full (error pages, mirrored copies).
    Full(Option<Bytes>),
    /// A streamed body; running's answer to a mirrored request also feeds a [`mirror::Tee`].
    Stream(Incoming, Option<InflightGuard>, Option<Box<mirror::Tee>>),
}

impl ProxyBody {
    fn text(s: String) -> ProxyBody {
        ProxyBody::Full(Some(Bytes::from(s)))
    }
}

impl hyper::body::Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Full(b) => Poll::Ready(
                b.take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            ProxyBody::Stream(inner, _, tee) => {
                let r = Pin::new(&mut *inner).poll_frame(cx);
                if let Some(t) = tee.as_mut() {
                    let ended = match &r {
                        Poll::Ready(Some(Ok(frame))) => {
                            if let Some(d) = frame.data_ref() {
                                t.feed(d);
                            }
                            inner.is_end_stream().then_some(true)
                        }
                        Poll::Ready(None) => Some(true),
                        Poll::Ready(Some(Err(_))) => Some(false),
                        Poll::Pending => None,
                    };
                    if let Some(complete) = ended {
                        t.finish(complete);
                        *tee = None;
                    }
                }
                r
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(b) => b.as_ref().is_none_or(|b| b.is_empty()),
            ProxyBody::Stream(inner, ..) => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ProxyBody::Stream(inner, ..) => inner.size_hint(),
        }
    }
}

/// The HTTP client used for upstream requests.
pub type UpstreamClient = Client<HttpConnector, ProxyBody>;

/// A pooled keep-alive client to the children.
pub fn upstream_client() -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector)
}

/// The proxy's shared state, cloned (as an `Arc`) into every connection.
pub struct Proxy {
    routes: watch::Receiver<Arc<Routes>>,
    client: UpstreamClient,
    mirror: MirrorQueue,
    stats: Arc<ProxyStats>,
    no_running_hint: String,
}

impl Proxy {
    /// A proxy reading routes from `routes` and handing copies to `mirror`.
    pub fn new(
        routes: watch::Receiver<Arc<Routes>>,
        mirror: MirrorQueue,
        stats: Arc<ProxyStats>,
        no_running_hint: String,
    ) -> Proxy {
        Proxy {
            routes,
            client: upstream_client(),
            mirror,
            stats,
            no_running_hint,
        }
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Response<ProxyBody>, Infallible> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        // Take the in-flight count while the routes are borrowed: a swap waits for this borrow, so
        // a drain that starts after the swap sees every request that chose the old upstream.
        let (running, guard, testing) = {
            let routes = self.routes.borrow();
            match &routes.running {
                Some(r) => (r.clone(), InflightGuard::new(r), routes.testing.clone()),
                None => {
                    drop(routes);
                    self.stats.unavailable.fetch_add(1, Ordering::Relaxed);
                    return Ok(error_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        self.no_running_hint.clone(),
                    ));
                }
            }
        };
        let (mut parts, body) = req.into_parts();
        let mirror_to = testing.filter(|_| self.mirror.wants(&parts.method));

        let (body, copy_body) = match &mirror_to {
            Some(_) => match request_body_len(&parts.headers) {
                Some(0) => (ProxyBody::Full(None), Some(Bytes::new())),
                Some(n) if n <= self.mirror.max_body() => {
                    match http_body_util::Limited::new(body, n as usize)
                        .collect()
                        .await
                    {
                        Ok(c) => {
                            let b = c.to_bytes();
                            (ProxyBody::Full(Some(b.clone())), Some(b))
                        }
                        Err(e) => {
                            return Ok(error_response(
                                StatusCode::BAD_REQUEST,
                                format!("understudy: could not read the request body: {e}\n"),
                            ))
                        }
                    }
                }
                _ => {
                    self.stats
                        .mirror_skipped_body
                        .fetch_add(1, Ordering::Relaxed);
                    (ProxyBody::Stream(body, None, None), None)
                }
            },
            None => (ProxyBody::Stream(body, None, None), None),
        };

        let path_and_query = parts.uri.path_and_query().cloned();
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(http::uri::Scheme::HTTP);
        uri.authority = Some(running.authority.clone());
        uri.path_and_query = path_and_query
            .clone()
            .or_else(|| Some(http::uri::PathAndQuery::from_static("/")));
        parts.uri = Uri::from_parts(uri).expect("scheme, authority and path form a valid URI");
        strip_hop_by_hop(&mut parts.headers);
        append_forwarded_for(&mut parts.headers, peer);

        // Only a mirrored request pays for copying its head. The copy is deep: hyper's header
        // values are slices of the connection's 8 KiB read buffer, and a queued copy must not keep
        // that buffer alive.
        let copy = copy_body.map(|b| {
            (
                parts.method.clone(),
                path_and_query.map(detach_path),
                detach_headers(&parts.headers),
                b,
            )
        });

        let started = Instant::now();
        let result = self.client.request(Request::from_parts(parts, body)).await;
        let latency = started.elapsed();
        match result {
            Ok(resp) => {
                let (mut rparts, rbody) = resp.into_parts();
                let tee = match (mirror_to, copy) {
                    (Some(target), Some((method, pq, headers, body))) => {
                        let job = MirrorJob {
                            target,
                            method,
                            path_and_query: pq,
                            headers,
                            body,
                            running_status: rparts.status,
                            running_latency: latency,
                            running_body: None,
                        };
                        let mut tee =
                            mirror::Tee::new(job, self.mirror.clone(), self.stats.clone());
                        if hyper::body::Body::is_end_stream(&rbody) {
                            // No body will be polled (HEAD, 204, 304): offer the copy now.
                            tee.finish(true);
                            None
                        } else {
                            Some(Box::new(tee))
                        }
                    }
                    _ => None,
                };
                strip_hop_by_hop(&mut rparts.headers);
                Ok(Response::from_parts(
                    rparts,
                    ProxyBody::Stream(rbody, Some(guard), tee),
                ))
            }
            Err(e) => {
                self.stats.bad_gateway.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "running {} at {} failed: {e:?}",
                    running.version,
                    running.authority
                );
                Ok(error_response(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "understudy: the running instance ({} at {}) did not answer: {e}\n",
                        running.version, running.authority
                    ),
                ))
            }
        }
    }
}

/// Accept users on `listener` until `cancel`, then let open connections finish (bounded).
pub async fn serve(listener: TcpListener, proxy: Arc<Proxy>, cancel: CancellationToken) {
    let tracker = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let svc = hyper::service::service_fn(move |req| proxy.clone().handle(req, peer));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(CONNECTION_CLOSE_GRACE, tracker.wait()).await;
}

fn detach_headers(h: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(h.len());
    for (k, v) in h {
        let mut copy = HeaderValue::from_bytes(v.as_bytes())
            .expect("a valid header value stays valid when copied");
        copy.set_sensitive(v.is_sensitive());
        out.append(k.clone(), copy);
    }
    out
}

fn detach_path(p: http::uri::PathAndQuery) -> http::uri::PathAndQuery {
    http::uri::PathAndQuery::from_maybe_shared(Bytes::copy_from_slice(p.as_str().as_bytes()))
        .expect("a valid path stays valid when copied")
}

fn error_response(status: StatusCode, text: String) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::text(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The request body length: `Some(0)` when the request has no body, `None` when unsized.
fn request_body_len(h: &HeaderMap) -> Option<u64> {
    if h.contains_key(header::TRANSFER_ENCODING) {
        return None;
    }
    match h.get(header::CONTENT_LENGTH) {
        None => Some(0),
        Some(v) => v.to_str().ok()?.trim().parse().ok(),
    }
}

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1).
static HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn strip_hop_by_hop(h: &mut HeaderMap) {
    if let Some(conn) = h.get(header::CONNECTION) {
        if let Ok(s) = conn.to_str() {
            let named: Vec<HeaderName> = s
                .split(',')
                .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
                .collect();
            for n in named {
                h.remove(n);
            }
        }
    }
    for n in &HOP_BY_HOP {
        h.remove(n);
    }
}

fn append_forwarded_for(h: &mut HeaderMap, peer: SocketAddr) {
    static XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    let ip = peer.ip().to_string();
    let value = match h.get(&XFF).and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(&XFF, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn no_running_is_503_and_unreachable_running_is_502_never_an_empty_200() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(Arc::new(Routes::default()));
        let (queue, _mirror_rx) = MirrorQueue::new(4, vec![http::Method::GET], 1024);
        let proxy = Arc::new(Proxy::new(
            rx,
            queue,
            Arc::default(),
            "no running instance\n".into(),
        ));
        let cancel = CancellationToken::new();
        let server = tokio::spawn(serve(listener, proxy, cancel.clone()));

        let answer = get(addr).await;
        assert!(
            answer.starts_with("HTTP/1.1 503") && answer.ends_with("no running instance\n"),
            "{answer}"
        );

        // A port nobody listens on: bind one, then close it.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let up = Arc::new(Upstream::new(
            InstanceId(1),
            Version::new(1, 0, 0),
            "127.0.0.1",
            closed,
        ));
        tx.send_replace(Arc::new(Routes {
            running: Some(up.clone()),
            testing: None,
        }));
        let answer = get(addr).await;
        assert!(
            answer.starts_with("HTTP/1.1 502") && answer.contains("did not answer"),
            "{answer}"
        );
        assert_eq!(
            up.inflight.load(Ordering::Acquire),
            0,
            "a failed request leaves no in-flight count"
        );

        cancel.cancel();
        server.await.unwrap();
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::CONTENT_TYPE));
    }

    #[test]
    fn body_length() {
        let mut h = HeaderMap::new();
        assert_eq!(request_body_len(&h), Some(0));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert_eq!(request_body_len(&h), Some(12));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        assert_eq!(request_body_len(&h), None);
    }
}
