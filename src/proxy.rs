//! The reverse proxy users talk to. Every request goes to `running` and its answer streams back
//! unchanged; a copy of eligible requests is handed to the mirror (see [`mirror`]) without
//! waiting, so testing is never on the user's path.
//!
//! It runs thread-per-core, as nginx's workers do ([`start`]): each thread has its own
//! current-thread runtime, accepts on a clone of the one listener and keeps its connections and
//! their upstream connections to itself, so a request never wakes another thread. On stop, each
//! thread stops accepting and lets the requests in flight finish (bounded), then ends.
//!
//! A plain request (HTTP/1.1 `GET` or `HEAD`, no body, not mirrored) is relayed by [`fast`]
//! without hyper; everything else, and the rest of that connection, by hyper below.

mod fast;
pub mod framing;
pub mod mirror;
pub mod pool;

use std::any::Any;
use std::convert::Infallible;
use std::net::{Ipv6Addr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use semver::Version;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::instance::InstanceId;
use mirror::{MirrorJob, MirrorQueue};

/// Answer to a request framed two ways at once.
const SMUGGLING_REFUSED: &str = "understudy: a request with both Content-Length and Transfer-Encoding is refused (request smuggling); send one of them\n";

/// Answer to a request body over the limit.
const TOO_LARGE_REFUSED: &str =
    "understudy: the request body is larger than MAX_REQUEST_BODY allows\n";

/// Answer to a `CONNECT`: understudy is not a forward proxy, and tunnels would bypass the mirror.
const CONNECT_REFUSED: &str = "understudy: CONNECT is not supported; this is a reverse proxy\n";

/// Settings of the users' proxy.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Proxy threads, each with its own event loop (0 counts as 1).
    pub threads: usize,
    /// Body of the 503 answered while nothing runs: says what to drop where.
    pub no_running_hint: String,
    /// How long requests in flight at stop may take to finish before their connections are cut.
    pub drain_grace: Duration,
    /// How long a client may take to send a whole request head (slowloris clients are cut off).
    pub header_timeout: Duration,
    /// Limits on what one request may be.
    pub limits: Limits,
    /// Most user connections open at once, across threads (`MAX_CONNECTIONS`, lowered to what
    /// the open-files limit allows).
    pub max_connections: usize,
    /// Whether plain requests take the plain path (`FAST_PATH`) or all go through hyper.
    pub fast_path: bool,
}

/// Idle keep-alive connections asked to close per round when the connection limit is reached
/// (as nginx frees up to 32 reusable connections when it runs short).
const ROOM_BATCH: usize = 32;

/// User connections open across all proxy threads, against their limit: at the limit the accept
/// loops stop accepting (new users wait in the kernel's backlog, not in a spin of failed
/// accepts) and ask idle keep-alive connections to close.
#[derive(Debug)]
pub struct Connections {
    open: AtomicUsize,
    max: usize,
    /// Woken when a connection closes, for accept loops waiting at the limit.
    freed: Notify,
}

impl Connections {
    fn new(max: usize) -> Connections {
        Connections {
            open: AtomicUsize::new(0),
            max: max.max(1),
            freed: Notify::new(),
        }
    }

    /// User connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn full(&self) -> bool {
        self.open.load(Ordering::Acquire) >= self.max
    }
}

/// One proxy thread's way to make room: its connections wait on `make_room`, and those that
/// claim one of `to_close` close once idle. Per thread, so a connection's wake-ups never touch
/// another thread's lock.
#[derive(Debug, Default)]
struct Room {
    to_close: AtomicUsize,
    make_room: Notify,
}

impl Room {
    /// Ask up to `n` of this thread's connections to close once idle.
    fn ask(&self, n: usize) {
        self.to_close.store(n, Ordering::Release);
        self.make_room.notify_waiters();
    }

    /// Whether this connection is one of those asked to close.
    fn chosen(&self) -> bool {
        self.to_close
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// One open user connection, counted while it lives.
struct Counted(Arc<Connections>);

impl Counted {
    fn new(c: &Arc<Connections>) -> Counted {
        c.open.fetch_add(1, Ordering::AcqRel);
        Counted(c.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.notify_waiters();
    }
}

/// What one request may be (`MAX_HEADER_BYTES`, `MAX_HEADERS`, `MAX_REQUEST_BODY`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request head, in bytes (at least 8 KiB); larger heads get 431.
    pub header_bytes: usize,
    /// Most header fields in a request head; more get 431.
    pub headers: usize,
    /// Largest request body; larger ones get 413 (declared) or are cut off (chunked).
    pub body: u64,
}

/// Answers whose body broke off after their head was sent (the upstream reset or closed early):
/// the user's connection is closed, the next request is served. Process-wide, read by metrics.
pub static BROKEN_ANSWERS: AtomicU64 = AtomicU64::new(0);

/// Why a body being relayed failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The other side's stream failed.
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
    /// A chunked request body went past `MAX_REQUEST_BODY`.
    #[error("the request body is larger than MAX_REQUEST_BODY ({0} bytes)")]
    TooLarge(u64),
}

/// Why the proxy could not start or an upstream could not be addressed, or how a thread ended.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// `UPSTREAM_HOST` and the port do not form an HTTP authority.
    #[error("upstream host {host:?} with port {port} is not a usable address: {reason}")]
    BadUpstream {
        /// The host as configured.
        host: String,
        /// The instance's port.
        port: u16,
        /// What is wrong with it.
        reason: String,
    },
    /// The listening socket could not be made non-blocking.
    #[error("cannot prepare the listening socket: {0}")]
    Listener(#[source] std::io::Error),
    /// A proxy thread could not get its clone of the listening socket.
    #[error("cannot give proxy thread {thread} its clone of the listening socket: {source}")]
    ListenerClone {
        /// The thread's index.
        thread: usize,
        /// The OS error (out of descriptors, usually).
        source: std::io::Error,
    },
    /// A proxy thread could not build its event loop.
    #[error("proxy thread {thread} cannot build its event loop: {source}")]
    Runtime {
        /// The thread's index.
        thread: usize,
        /// The OS error.
        source: std::io::Error,
    },
    /// The OS refused to start a proxy thread.
    #[error("cannot start proxy thread {thread}: {source}")]
    Spawn {
        /// The thread's index.
        thread: usize,
        /// The OS error.
        source: std::io::Error,
    },
    /// A proxy thread panicked.
    #[error("proxy thread {thread} panicked: {message}")]
    Panicked {
        /// The thread's index.
        thread: usize,
        /// The panic message.
        message: String,
    },
}

/// One instance as the proxy sees it: where it listens and how many user requests it is serving.
#[derive(Debug)]
pub struct Upstream {
    /// The instance behind it.
    pub id: InstanceId,
    /// Its version, for messages.
    pub version: Version,
    /// `host:port`, with an IPv6 literal in brackets.
    pub authority: Authority,
    /// The same as a `Host` header, for requests that came without one.
    pub(crate) host: HeaderValue,
    /// User requests in flight, including their response bodies; see [`Upstream::drain`].
    inflight: AtomicUsize,
    /// Set once someone drains: only then does the last request out pay for a wake-up.
    draining: AtomicBool,
    /// Signalled when `inflight` drops to zero while draining.
    idle: Notify,
    /// Cancelled when a drain's grace is over: upgraded connections still spliced are closed.
    closed: CancellationToken,
}

impl Upstream {
    /// An upstream for the instance listening on `host:port`; `host` is an IP address (IPv6 with or
    /// without brackets) or a name the connector resolves.
    pub fn new(
        id: InstanceId,
        version: Version,
        host: &str,
        port: u16,
    ) -> Result<Upstream, ProxyError> {
        let authority = upstream_authority(host, port)?;
        Ok(Upstream {
            id,
            version,
            host: HeaderValue::from_str(authority.as_str())
                .expect("an authority is a valid header value"),
            authority,
            inflight: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            idle: Notify::new(),
            closed: CancellationToken::new(),
        })
    }

    /// User requests in flight now (response bodies included), for status and logs.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }

    /// Resolves once no user request (its response body included) is in flight here, or when
    /// `grace` is over; returns how many were left. Woken by the last request out, never polled.
    pub async fn drain(&self, grace: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + grace;
        // SeqCst pairs with the guard's decrement and flag read: either this load sees zero, or
        // the guard that brings the count to zero sees the flag and wakes the waiter below.
        self.draining.store(true, Ordering::SeqCst);
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.inflight.load(Ordering::SeqCst) == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                // The grace is over: what is still spliced (WebSockets) is closed now.
                self.closed.cancel();
                return self.inflight.load(Ordering::SeqCst);
            }
        }
    }
}

/// `host:port` as an authority: IPv6 literals are bracketed, names kept for the connector.
fn upstream_authority(host: &str, port: u16) -> Result<Authority, ProxyError> {
    let bad = |reason: &str| ProxyError::BadUpstream {
        host: host.to_string(),
        port,
        reason: reason.to_string(),
    };
    if host.is_empty() {
        return Err(bad("the host is empty"));
    }
    if host.contains(['@', '/', '?', '#']) || host.chars().any(char::is_whitespace) {
        return Err(bad("expected an IP address or a host name, nothing more"));
    }
    let text = match host.parse::<Ipv6Addr>() {
        Ok(ip) => format!("[{ip}]:{port}"),
        Err(_) => format!("{host}:{port}"),
    };
    let authority: Authority = text
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    if authority.host().is_empty() || authority.port_u16() != Some(port) {
        return Err(bad("expected an IP address or a host name without a port"));
    }
    Ok(authority)
}

/// Where traffic goes now; published by the supervisor, read by the proxy on every request.
#[derive(Debug, Default, Clone)]
pub struct Routes {
    /// Gets every user request.
    pub running: Option<Arc<Upstream>>,
    /// Gets mirrored copies.
    pub testing: Option<Arc<Upstream>>,
    /// Gets the diffed copies too: a second instance of running's version, whose differences
    /// from running are noise (`NOISE_CANCEL`).
    pub secondary: Option<Arc<Upstream>>,
    /// Running's version while it is being restarted (with `running` empty): users are told to
    /// retry shortly instead of being told to drop a build.
    pub restarting: Option<Version>,
}

/// Counters shown in status and metrics; relaxed atomics, never a lock on the request path.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// User requests received; shared with the scorer, for which it is running's denominator.
    pub requests: Arc<AtomicU64>,
    /// User requests answered 502 (running unreachable).
    pub bad_gateway: AtomicU64,
    /// User requests answered 503 (nothing running).
    pub unavailable: AtomicU64,
    /// User requests refused before anything was forwarded: smuggling attempts (400) and bodies
    /// over `MAX_REQUEST_BODY` (413).
    pub refused: AtomicU64,
    /// Copies handed to the mirror queue.
    pub mirrored: AtomicU64,
    /// Copies dropped because the mirror queue was full.
    pub mirror_dropped: AtomicU64,
    /// Eligible requests not mirrored because their body was too large or unsized.
    pub mirror_skipped_body: AtomicU64,
    /// Sampled copies not compared because diffing was at its bound.
    pub diff_skipped: AtomicU64,
    /// What running answered to user requests.
    pub running: Answers,
    /// What testing answered to mirrored copies.
    pub testing: Answers,
}

/// Upper bounds of the latency buckets, in microseconds: 1 ms to 10 s, the range in which an
/// HTTP service's answers are told apart (slower ones land in the overflow bucket).
pub const LATENCY_BUCKETS_US: [u64; 13] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

/// Index of [`Answers::classes`] counting requests that got no answer at all.
pub const NO_ANSWER: usize = 5;

/// What one instance answered: a count per status class and a latency histogram (time to the
/// response head). Plain relaxed atomics, so recording an answer costs three atomic adds on the
/// request path, never a lock, an allocation or a wake-up; the metrics module reads them at
/// scrape time.
#[derive(Debug, Default)]
pub struct Answers {
    /// Per status class: 1xx, 2xx, 3xx, 4xx, 5xx, then no answer ([`NO_ANSWER`]).
    classes: [AtomicU64; 6],
    /// Answers per latency bucket (not cumulative), the last one past [`LATENCY_BUCKETS_US`].
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    /// Sum of the latencies, in nanoseconds (wraps after 584 years of waiting).
    latency_sum_ns: AtomicU64,
}

/// A reading of [`Answers`]' latency histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyReading {
    /// Answers per bucket of [`LATENCY_BUCKETS_US`] (not cumulative), then the overflow.
    pub buckets: [u64; LATENCY_BUCKETS_US.len() + 1],
    /// Sum of the latencies.
    pub sum: Duration,
}

impl Answers {
    /// An answer with `status` after `latency`.
    pub fn answered(&self, status: StatusCode, latency: Duration) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.classes[class].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BUCKETS_US.partition_point(|&bound| bound * 1_000 < ns);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// A request that got no answer (refused, reset, timed out).
    pub fn unanswered(&self) {
        self.classes[NO_ANSWER].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts per status class, indexed as [`Answers::answered`] fills them (then [`NO_ANSWER`]).
    pub fn classes(&self) -> [u64; 6] {
        std::array::from_fn(|i| self.classes[i].load(Ordering::Relaxed))
    }

    /// The latency histogram as it stands.
    pub fn latency(&self) -> LatencyReading {
        LatencyReading {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum: Duration::from_nanos(self.latency_sum_ns.load(Ordering::Relaxed)),
        }
    }
}

/// Counts a user request against its upstream until the response body is done.
pub struct InflightGuard(Arc<Upstream>);

impl InflightGuard {
    fn new(u: &Arc<Upstream>) -> InflightGuard {
        u.inflight.fetch_add(1, Ordering::AcqRel);
        InflightGuard(u.clone())
    }

    fn upstream(&self) -> &Upstream {
        &self.0
    }

    fn shared(&self) -> &Arc<Upstream> {
        &self.0
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        let up = &self.0;
        if up.inflight.fetch_sub(1, Ordering::SeqCst) == 1 && up.draining.load(Ordering::SeqCst) {
            up.idle.notify_waiters();
        }
    }
}

/// A body that is either small and whole, or streamed from the other side (holding its
/// upstream's in-flight count while it streams).
pub enum ProxyBody {
    /// A body known in full (error pages, mirrored copies).
    Full(Option<Bytes>),
    /// A streamed body; running's answer to a mirrored request also feeds a [`mirror::Tee`], and
    /// running's answer gives its connection back to the pool when it ends.
    Stream(
        Incoming,
        Option<InflightGuard>,
        Option<Box<mirror::Tee>>,
        Option<pool::Lent>,
    ),
    /// A user's request body of unknown length, cut off past this many more bytes.
    Capped(Incoming, u64),
}

impl hyper::body::Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ProxyBody::Full(b) => Poll::Ready(
                b.take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            ProxyBody::Stream(inner, _, tee, lent) => {
                let r = Pin::new(&mut *inner).poll_frame(cx);
                let ended = match &r {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let (Some(t), Some(d)) = (tee.as_mut(), frame.data_ref()) {
                            t.feed(d);
                        }
                        inner.is_end_stream().then_some(true)
                    }
                    Poll::Ready(None) => Some(true),
                    Poll::Ready(Some(Err(_))) => {
                        BROKEN_ANSWERS.fetch_add(1, Ordering::Relaxed);
                        Some(false)
                    }
                    Poll::Pending => None,
                };
                if let Some(complete) = ended {
                    if let Some(mut t) = tee.take() {
                        t.finish(complete);
                    }
                    // A connection whose answer broke off is dropped, which closes it.
                    if let Some(l) = lent.take().filter(|_| complete) {
                        l.give_back();
                    }
                }
                r.map(|f| f.map(|f| f.map_err(BodyError::from)))
            }
            ProxyBody::Capped(inner, left) => {
                let r = Pin::new(&mut *inner).poll_frame(cx);
                if let Poll::Ready(Some(Ok(frame))) = &r {
                    let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                    if n > *left {
                        return Poll::Ready(Some(Err(BodyError::TooLarge(n - *left))));
                    }
                    *left -= n;
                }
                r.map(|f| f.map(|f| f.map_err(BodyError::from)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(b) => b.as_ref().is_none_or(|b| b.is_empty()),
            ProxyBody::Stream(inner, ..) | ProxyBody::Capped(inner, _) => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ProxyBody::Stream(inner, ..) | ProxyBody::Capped(inner, _) => inner.size_hint(),
        }
    }
}

/// The proxy's shared state, cloned (as an `Arc`) into every connection of one thread.
struct Proxy {
    routes: watch::Receiver<Arc<Routes>>,
    /// This thread's connections to running.
    pool: Arc<pool::Pool>,
    mirror: MirrorQueue,
    stats: Arc<ProxyStats>,
    no_running_hint: Bytes,
    header_timeout: Duration,
    limits: Limits,
    /// Upgraded connections (WebSocket and the like) spliced to running, joined at shutdown.
    splices: TaskTracker,
    /// This thread's connections asked to make room at the connection limit.
    room: Room,
    /// Whether plain requests take the plain path ([`fast`]).
    fast_path: bool,
    /// This thread's connections to running for the plain path.
    fast_pool: fast::Pool,
}

/// One user connection as its requests see it: built once per connection, so a request pays no
/// formatting for its `X-Forwarded-For`.
struct Peer {
    addr: SocketAddr,
    /// The peer's IP as a header value.
    forwarded: HeaderValue,
    /// Raised by the framing sniffer: a header block named both framing headers.
    smuggling: Arc<AtomicBool>,
}

/// The upstreams chosen for one request; the guard counts it on running (and names running).
struct Route {
    running: InflightGuard,
    testing: Option<Arc<Upstream>>,
    secondary: Option<Arc<Upstream>>,
}

/// A mirrored request's head and body, deep-copied: hyper's header values are slices of the
/// connection's 8 KiB read buffer, and a queued copy must not keep that buffer alive.
struct RequestCopy {
    method: Method,
    path_and_query: Option<PathAndQuery>,
    headers: HeaderMap,
    body: Bytes,
}

impl Proxy {
    fn new(
        routes: watch::Receiver<Arc<Routes>>,
        mirror: MirrorQueue,
        stats: Arc<ProxyStats>,
        no_running_hint: Bytes,
        header_timeout: Duration,
        limits: Limits,
        fast_path: bool,
    ) -> Proxy {
        Proxy {
            fast_path,
            fast_pool: fast::Pool::default(),
            routes,
            pool: Arc::default(),
            mirror,
            stats,
            no_running_hint,
            header_timeout,
            limits,
            splices: TaskTracker::new(),
            room: Room::default(),
        }
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: Arc<Peer>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        if req.method() == Method::CONNECT {
            return Ok(error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                Bytes::from_static(CONNECT_REFUSED.as_bytes()),
            ));
        }
        if peer.smuggling.load(Ordering::Relaxed) {
            return Ok(self.refuse(StatusCode::BAD_REQUEST, SMUGGLING_REFUSED));
        }
        let body_len = request_body_len(req.headers());
        if body_len.is_some_and(|n| n > self.limits.body) {
            return Ok(self.refuse(StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE_REFUSED));
        }
        let route = match self.route() {
            Ok(r) => r,
            Err(restarting) => return Ok(self.unavailable(restarting)),
        };
        if wants_upgrade(req.headers()) {
            // Boxed: a rare path whose state would otherwise make every request's future larger.
            return Ok(Box::pin(self.upgrade(req, route.running, &peer)).await);
        }
        let (mut parts, body) = req.into_parts();
        let mirror_to = route.testing.filter(|_| self.mirror.wants(&parts.method));
        let (body, copy_body) = match self.request_body(mirror_to.is_some(), body_len, body).await {
            Ok(b) => b,
            Err(e) => {
                return Ok(error_response(
                    StatusCode::BAD_REQUEST,
                    format!("understudy: could not read the request body: {e}\n").into(),
                ))
            }
        };
        let path_and_query = parts.uri.path_and_query().cloned();
        point_at(
            &mut parts,
            route.running.upstream(),
            path_and_query.clone(),
            &peer,
        );
        // Only a mirrored request pays for copying its head.
        let copy = copy_body.map(|body| RequestCopy {
            method: parts.method.clone(),
            path_and_query: path_and_query.map(detach_path),
            headers: detach_headers(&parts.headers),
            body,
        });

        let started = Instant::now();
        let result = self
            .pool
            .send(route.running.shared(), Request::from_parts(parts, body))
            .await;
        let latency = started.elapsed();
        Ok(match result {
            Ok((resp, lent)) => {
                self.stats.running.answered(resp.status(), latency);
                let mirror = mirror_to.zip(copy).map(|(t, c)| (t, c, route.secondary));
                self.relay(resp, lent, route.running, mirror, latency)
            }
            Err(e) if body_too_large(&e) => {
                self.refuse(StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE_REFUSED)
            }
            Err(e) => {
                self.stats.running.unanswered();
                self.bad_gateway(route.running.upstream(), &e)
            }
        })
    }

    /// Choose running (counting the request on it) and testing; with nothing running, the
    /// version being restarted, if any.
    fn route(&self) -> Result<Route, Option<Version>> {
        // Take the in-flight count while the routes are borrowed: a swap waits for this borrow, so
        // a drain that starts after the swap sees every request that chose the old upstream.
        let routes = self.routes.borrow();
        match &routes.running {
            Some(r) => Ok(Route {
                running: InflightGuard::new(r),
                testing: routes.testing.clone(),
                secondary: routes.secondary.clone(),
            }),
            None => Err(routes.restarting.clone()),
        }
    }

    /// A request refused before anything was forwarded; the connection is closed after the
    /// answer, so whatever the client sent after it is never read as a request.
    fn refuse(&self, status: StatusCode, why: &'static str) -> Response<ProxyBody> {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        let mut r = error_response(status, Bytes::from_static(why.as_bytes()));
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        r
    }

    /// Nothing running: a 503 saying to retry shortly (running restarts) or what to drop where.
    fn unavailable(&self, restarting: Option<Version>) -> Response<ProxyBody> {
        self.stats.unavailable.fetch_add(1, Ordering::Relaxed);
        match restarting {
            Some(v) => {
                let text = format!("understudy: running {v} is restarting; retry in a moment\n");
                let mut r = error_response(StatusCode::SERVICE_UNAVAILABLE, text.into());
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
            None => error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                self.no_running_hint.clone(),
            ),
        }
    }

    /// The body to forward and, for a mirrored request whose body is small enough, the copy's
    /// body (read in full first, which can fail).
    async fn request_body(
        &self,
        mirrored: bool,
        body_len: Option<u64>,
        body: Incoming,
    ) -> Result<(ProxyBody, Option<Bytes>), Box<dyn std::error::Error + Send + Sync>> {
        let cap = self.limits.body;
        let unsized_body = move |body| match body_len {
            None => ProxyBody::Capped(body, cap),
            Some(_) => ProxyBody::Stream(body, None, None, None),
        };
        if !mirrored {
            return Ok((unsized_body(body), None));
        }
        match body_len {
            Some(0) => Ok((ProxyBody::Full(None), Some(Bytes::new()))),
            Some(n) if n <= self.mirror.max_body() => {
                match http_body_util::Limited::new(body, n as usize)
                    .collect()
                    .await
                {
                    Ok(c) => {
                        let b = c.to_bytes();
                        Ok((ProxyBody::Full(Some(b.clone())), Some(b)))
                    }
                    Err(e) => Err(e),
                }
            }
            _ => {
                self.stats
                    .mirror_skipped_body
                    .fetch_add(1, Ordering::Relaxed);
                Ok((unsized_body(body), None))
            }
        }
    }

    /// Running's answer on its way to the user, holding the in-flight count until its body ends
    /// and, for a mirrored request, teeing the body to offer the copy when it ends.
    fn relay(
        &self,
        resp: Response<Incoming>,
        lent: pool::Lent,
        running: InflightGuard,
        mirror: Option<(Arc<Upstream>, RequestCopy, Option<Arc<Upstream>>)>,
        latency: Duration,
    ) -> Response<ProxyBody> {
        let (mut parts, body) = resp.into_parts();
        let tee = mirror.and_then(|(target, copy, secondary)| {
            // Only a sampled copy pays for keeping running's headers.
            let slot = match self.mirror.sample() {
                mirror::Sampled::Yes(slot) => Some(slot),
                mirror::Sampled::No => None,
                mirror::Sampled::Busy => {
                    self.stats.diff_skipped.fetch_add(1, Ordering::Relaxed);
                    None
                }
            };
            let diff = slot.map(|slot| {
                Box::new(mirror::DiffJob {
                    slot,
                    running: running.shared().clone(),
                    headers: parts.headers.clone(),
                    secondary,
                })
            });
            let job = MirrorJob {
                target,
                method: copy.method,
                path_and_query: copy.path_and_query,
                headers: copy.headers,
                body: copy.body,
                running_status: parts.status,
                running_latency: latency,
                running_body: None,
                diff,
            };
            let mut tee = mirror::Tee::new(job, self.mirror.clone(), self.stats.clone());
            if hyper::body::Body::is_end_stream(&body) {
                // No body will be polled (HEAD, 204, 304): offer the copy now.
                tee.finish(true);
                None
            } else {
                Some(Box::new(tee))
            }
        });
        strip_hop_by_hop(&mut parts.headers);
        let lent = if hyper::body::Body::is_end_stream(&body) {
            lent.give_back();
            None
        } else {
            Some(lent)
        };
        Response::from_parts(parts, ProxyBody::Stream(body, Some(running), tee, lent))
    }

    /// A protocol upgrade (`Connection: upgrade`, as a WebSocket handshake): the handshake goes to
    /// running only, never mirrored; on `101` both connections are spliced both ways until
    /// either side closes. The splice holds running's in-flight count, so a promotion drains it
    /// up to `SHUTDOWN_GRACE`; then the old instance is stopped, which closes it (clients
    /// reconnect, to the new version).
    async fn upgrade(
        &self,
        mut req: Request<Incoming>,
        running: InflightGuard,
        peer: &Peer,
    ) -> Response<ProxyBody> {
        let user_side = hyper::upgrade::on(&mut req);
        let (mut parts, body) = req.into_parts();
        let protocol = parts.headers.get(header::UPGRADE).cloned();
        let path_and_query = parts.uri.path_and_query().cloned();
        point_at(&mut parts, running.upstream(), path_and_query, peer);
        if let Some(p) = protocol {
            parts.headers.insert(header::UPGRADE, p);
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        let started = Instant::now();
        let sent = self
            .pool
            .send(
                running.shared(),
                Request::from_parts(parts, ProxyBody::Stream(body, None, None, None)),
            )
            .await;
        let (mut resp, lent) = match sent {
            Ok(r) => r,
            Err(e) => {
                self.stats.running.unanswered();
                return self.bad_gateway(running.upstream(), &e);
            }
        };
        self.stats
            .running
            .answered(resp.status(), started.elapsed());
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            // Refused: relay the answer as any other.
            return self.relay(resp, lent, running, None, started.elapsed());
        }
        let upstream_side = hyper::upgrade::on(&mut resp);
        let addr = peer.addr;
        self.splices.spawn(async move {
            let closed = running.upstream().closed.clone();
            let _inflight = running;
            // The upstream connection is the splice's now: never back to the pool.
            let _connection = lent;
            match tokio::try_join!(user_side, upstream_side) {
                Ok((user, upstream)) => {
                    let (mut user, mut upstream) = (TokioIo::new(user), TokioIo::new(upstream));
                    // Until either side closes, or a drain's grace ends (both are then dropped).
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut user, &mut upstream) => {}
                        _ = closed.cancelled() => {}
                    }
                }
                Err(e) => tracing::debug!("an upgrade from {addr} did not complete: {e}"),
            }
        });
        let (mut parts, _) = resp.into_parts();
        // The upgrade headers are the answer itself here, not hop-by-hop noise.
        let (conn, up) = (
            parts.headers.remove(header::CONNECTION),
            parts.headers.remove(header::UPGRADE),
        );
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.extend(
            [(header::CONNECTION, conn), (header::UPGRADE, up)]
                .into_iter()
                .filter_map(|(k, v)| Some((k, v?))),
        );
        Response::from_parts(parts, ProxyBody::Full(None))
    }

    /// Running did not answer: a 502 that says which instance, never an empty 200.
    fn bad_gateway(&self, running: &Upstream, e: &pool::UpstreamError) -> Response<ProxyBody> {
        error_response(
            StatusCode::BAD_GATEWAY,
            self.bad_gateway_text(running, e).into(),
        )
    }

    /// The words of a 502 (counted and logged here), for both paths.
    fn bad_gateway_text(&self, running: &Upstream, e: &pool::UpstreamError) -> String {
        self.stats.bad_gateway.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            "running {} at {} failed: {e:?}",
            running.version,
            running.authority
        );
        format!(
            "understudy: the running instance ({} at {}) did not answer: {e}\n",
            running.version, running.authority
        )
    }
}

/// Point the request at `to` (keeping its path and query), drop hop-by-hop headers and append
/// the peer to `X-Forwarded-For`.
fn point_at(
    parts: &mut http::request::Parts,
    to: &Upstream,
    path_and_query: Option<PathAndQuery>,
    peer: &Peer,
) {
    // Origin form (`/path?query`), as a client sends to a server; an HTTP/1.0 request without a
    // `Host` gets the instance's.
    parts.uri = Uri::from(path_and_query.unwrap_or_else(|| PathAndQuery::from_static("/")));
    if !parts.headers.contains_key(header::HOST) {
        parts.headers.insert(header::HOST, to.host.clone());
    }
    strip_hop_by_hop(&mut parts.headers);
    append_forwarded_for(&mut parts.headers, &peer.forwarded);
}

/// The running proxy threads, from [`start`].
pub struct ProxyHandle {
    threads: Vec<ProxyThread>,
}

/// One proxy thread: it reports how it ended on `done` as its very last act.
struct ProxyThread {
    index: usize,
    done: oneshot::Receiver<Result<(), ProxyError>>,
}

impl ProxyHandle {
    /// Wait for every proxy thread to end (call after cancelling `stop`); Err names a thread that
    /// panicked (the first one; others are logged). Awaits without blocking the runtime.
    pub async fn join(self) -> Result<(), ProxyError> {
        let mut first = None;
        for t in self.threads {
            let ended = t.done.await.unwrap_or_else(|_| {
                Err(ProxyError::Panicked {
                    thread: t.index,
                    message: "it ended without reporting how".to_string(),
                })
            });
            if let Err(e) = ended {
                if first.is_some() {
                    tracing::error!("{e}");
                } else {
                    first = Some(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// Start `settings.threads` proxy threads on clones of `listener`; each stops accepting when
/// `stop` is cancelled, lets in-flight requests finish (bounded by `drain_grace`), then ends. If a
/// thread panics (or cannot build its event loop), it cancels `fatal`. Never blocks.
pub fn start(
    listener: std::net::TcpListener,
    settings: ProxySettings,
    routes: watch::Receiver<Arc<Routes>>,
    mirror: MirrorQueue,
    stats: Arc<ProxyStats>,
    stop: CancellationToken,
    fatal: CancellationToken,
) -> Result<ProxyHandle, ProxyError> {
    listener
        .set_nonblocking(true)
        .map_err(ProxyError::Listener)?;
    // Threads already started when a later one fails are stopped through this token.
    let started = stop.child_token();
    let hint = Bytes::from(settings.no_running_hint);
    let count = settings.threads.max(1);
    let conns = Arc::new(Connections::new(settings.max_connections));
    let mut threads = Vec::with_capacity(count);
    for index in 0..count {
        let proxy = Proxy::new(
            routes.clone(),
            mirror.clone(),
            stats.clone(),
            hint.clone(),
            settings.header_timeout,
            settings.limits,
            settings.fast_path,
        );
        let spawned = listener
            .try_clone()
            .map_err(|source| ProxyError::ListenerClone {
                thread: index,
                source,
            })
            .and_then(|listener| {
                let (done_tx, done) = oneshot::channel();
                let (stop, fatal, grace) = (started.clone(), fatal.clone(), settings.drain_grace);
                let conns = conns.clone();
                std::thread::Builder::new()
                    .name(format!("understudy-proxy-{index}"))
                    .spawn(move || {
                        let ended = std::panic::catch_unwind(AssertUnwindSafe(|| {
                            proxy_thread(index, listener, proxy, conns, stop, grace)
                        }))
                        .unwrap_or_else(|panic| {
                            Err(ProxyError::Panicked {
                                thread: index,
                                message: panic_message(panic.as_ref()),
                            })
                        });
                        if ended.is_err() {
                            fatal.cancel();
                        }
                        let _ = done_tx.send(ended);
                    })
                    .map_err(|source| ProxyError::Spawn {
                        thread: index,
                        source,
                    })?;
                Ok(ProxyThread { index, done })
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                started.cancel();
                return Err(e);
            }
        }
    }
    Ok(ProxyHandle { threads })
}

/// The body of one proxy thread: its own runtime, serving until `stop` and the drain are over.
/// The runtime is built and dropped here, never on the caller's (async) thread.
fn proxy_thread(
    index: usize,
    listener: std::net::TcpListener,
    proxy: Proxy,
    conns: Arc<Connections>,
    stop: CancellationToken,
    drain_grace: Duration,
) -> Result<(), ProxyError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ProxyError::Runtime {
            thread: index,
            source,
        })?;
    rt.block_on(async move {
        let listener =
            TcpListener::from_std(listener).map_err(|source| ProxyError::ListenerClone {
                thread: index,
                source,
            })?;
        let header_timeout = proxy.header_timeout;
        tokio::select! {
            () = serve(listener, Arc::new(proxy), conns, stop, drain_grace) => {}
            () = keep_a_timer_due(header_timeout) => {}
        }
        Ok(())
    })
}

/// Keep a timer of this thread's event loop due within `header_timeout` (and a second), for ever.
/// Every request arms a header timer `HEADER_TIMEOUT` from now; when it is the earliest timer,
/// tokio wakes its own event loop through an eventfd to re-plan its sleep: a `write(2)` and an
/// extra `epoll_wait` for about one request in six under load (measured, docs/benchmarks.md).
/// With this tick always due sooner, arming a header timer never is the earliest.
async fn keep_a_timer_due(header_timeout: Duration) {
    let period = header_timeout
        .min(Duration::from_secs(1))
        .max(Duration::from_millis(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".to_string())
}

/// Accept users on `listener` until `stop`; then stop accepting and give the connections up to
/// `drain_grace` to finish what they are answering. Returns as soon as they are all closed.
async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    conns: Arc<Connections>,
    stop: CancellationToken,
    drain_grace: Duration,
) {
    let connections = TaskTracker::new();
    'accept: loop {
        while conns.full() {
            // At the limit: make room by closing idle keep-alive connections, and wait for one
            // to go (or look again shortly: another thread may have taken the room).
            let freed = conns.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if !conns.full() {
                break;
            }
            proxy.room.ask(ROOM_BATCH);
            tokio::select! {
                _ = stop.cancelled() => break 'accept,
                _ = freed => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        let (stream, peer) = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
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
        let counted = Counted::new(&conns);
        connections.spawn(connection(
            stream,
            peer,
            proxy.clone(),
            stop.clone(),
            counted,
        ));
    }
    drop(listener);
    connections.close();
    proxy.splices.close();
    let drained = async {
        connections.wait().await;
        proxy.splices.wait().await;
    };
    if tokio::time::timeout(drain_grace, drained).await.is_err() {
        tracing::warn!(
            "{} user connections still busy {drain_grace:?} after stop; closing them",
            connections.len()
        );
    }
}

/// One user connection: the plain path ([`fast`]) while its requests are plain, then hyper with
/// the bytes already read. On `stop`, either answers the request in flight and closes the
/// connection (hyper's graceful shutdown turns keep-alive off), and closes an idle one at once.
async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    proxy: Arc<Proxy>,
    stop: CancellationToken,
    counted: Counted,
) {
    let _counted = counted;
    let forwarded = HeaderValue::from_str(&peer.ip().to_string())
        .expect("an IP address is a valid header value");
    // Plain requests first; from the first request that is not, hyper has the connection.
    let read = if proxy.fast_path {
        match fast::serve(&mut stream, &proxy, forwarded.as_bytes(), &stop).await {
            fast::Outcome::Closed => return,
            fast::Outcome::Hyper(read) => read,
        }
    } else {
        Vec::new()
    };
    let (header_timeout, limits) = (proxy.header_timeout, proxy.limits);
    let owner = proxy.clone();
    let room = &owner.room;
    let (stream, smuggling) = framing::Sniffed::new(read, stream);
    let peer = Arc::new(Peer {
        addr: peer,
        forwarded,
        smuggling,
    });
    let svc = hyper::service::service_fn(move |req| proxy.clone().handle(req, peer.clone()));
    // A client gets HEADER_TIMEOUT to send each whole request head, then the connection is closed.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_header_size(limits.header_bytes)
        .max_buf_size(limits.header_bytes.max(8192) + 8192)
        .writev(false);
    if limits.headers != HYPER_MAX_HEADERS {
        // hyper keeps its default number of header slots on the stack; any other bound costs a
        // heap allocation per request, so it is only paid for when asked.
        builder.max_headers(limits.headers);
    }
    let conn = builder
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    tokio::pin!(conn);
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = stop.cancelled() => break,
            // Asked to make room: an idle connection closes at once, a busy one after its answer.
            _ = room.make_room.notified() => if room.chosen() { break },
        }
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
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

fn detach_path(p: PathAndQuery) -> PathAndQuery {
    PathAndQuery::from_maybe_shared(Bytes::copy_from_slice(p.as_str().as_bytes()))
        .expect("a valid path stays valid when copied")
}

fn error_response(status: StatusCode, text: Bytes) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::Full(Some(text)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Whether a request asks to switch protocols (`Connection: upgrade` with an `Upgrade` header).
fn wants_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
}

/// Whether an upstream request failed because the user's chunked body went over the limit.
fn body_too_large(e: &pool::UpstreamError) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if matches!(s.downcast_ref::<BodyError>(), Some(BodyError::TooLarge(_))) {
            return true;
        }
        source = s.source();
    }
    false
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

/// hyper's own bound on header fields per request head.
const HYPER_MAX_HEADERS: usize = 100;

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
    // One pass over the names notes which of HOP_BY_HOP are present (most messages carry none,
    // or only `Connection: keep-alive`): cheaper than seven removals.
    let mut present = 0u32;
    for k in h.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|n| n == k) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    // Headers named by `Connection` go too; its usual tokens name no header.
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|t| {
            !["close", "keep-alive", "upgrade", ""]
                .iter()
                .any(|c| t.eq_ignore_ascii_case(c))
        })
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for (i, n) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            h.remove(n);
        }
    }
}

fn append_forwarded_for(h: &mut HeaderMap, ip: &HeaderValue) {
    static XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    // Most requests carry none: the connection's value is shared, nothing is formatted.
    let Some(prev) = h.get(&XFF).and_then(|v| v.to_str().ok()) else {
        h.insert(&XFF, ip.clone());
        return;
    };
    let value = format!("{prev}, {}", ip.to_str().unwrap_or_default());
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(&XFF, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_set_or_appended() {
        let ip = HeaderValue::from_static("10.0.0.7");
        let mut h = HeaderMap::new();
        append_forwarded_for(&mut h, &ip);
        assert_eq!(h["x-forwarded-for"], "10.0.0.7");
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("192.0.2.1"));
        append_forwarded_for(&mut h, &ip);
        assert_eq!(h["x-forwarded-for"], "192.0.2.1, 10.0.0.7");
    }
    use std::sync::atomic::AtomicUsize;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Send a raw request on a fresh connection and read the whole answer.
    async fn send(addr: SocketAddr, raw: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(raw.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    async fn get(addr: SocketAddr) -> String {
        send(
            addr,
            "GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await
    }

    /// Poll `f` until it holds, failing after `limit`.
    async fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        while !f() {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A tiny upstream answering `hello` to every request, after `delay` for paths under /slow;
    /// counts the requests it received.
    async fn tiny_upstream(bind: &str, delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let hits = counted.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        hits.fetch_add(1, Ordering::SeqCst);
                        async move {
                            if req.uri().path().starts_with("/slow") {
                                // The upstream's own latency, not a synchronisation.
                                tokio::time::sleep(delay).await;
                            }
                            Ok::<_, Infallible>(Response::new(http_body_util::Full::new(
                                Bytes::from_static(b"hello"),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (addr, hits)
    }

    struct Running {
        addr: SocketAddr,
        routes: watch::Sender<Arc<Routes>>,
        handle: ProxyHandle,
        stop: CancellationToken,
        fatal: CancellationToken,
    }

    /// The proxy through [`start`], on a loopback port, with `threads` threads.
    fn start_proxy(threads: usize, drain_grace: Duration) -> Running {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (routes, rx) = watch::channel(Arc::new(Routes::default()));
        let (queue, _mirror_rx) = MirrorQueue::new(4, vec![http::Method::GET], 1024, 0, 0.0);
        let (stop, fatal) = (CancellationToken::new(), CancellationToken::new());
        let settings = ProxySettings {
            threads,
            no_running_hint: "no running instance\n".into(),
            drain_grace,
            header_timeout: Duration::from_secs(10),
            limits: Limits {
                header_bytes: 64 << 10,
                headers: 100,
                body: 1 << 20,
            },
            max_connections: 100,
            fast_path: true,
        };
        let handle = start(
            listener,
            settings,
            rx,
            queue,
            Arc::default(),
            stop.clone(),
            fatal.clone(),
        )
        .unwrap();
        Running {
            addr,
            routes,
            handle,
            stop,
            fatal,
        }
    }

    fn upstream(host: &str, port: u16) -> Arc<Upstream> {
        Arc::new(Upstream::new(InstanceId(1), Version::new(1, 0, 0), host, port).unwrap())
    }

    fn route_to(routes: &watch::Sender<Arc<Routes>>, up: &Arc<Upstream>) {
        routes.send_replace(Arc::new(Routes {
            running: Some(up.clone()),
            ..Routes::default()
        }));
    }

    /// An upstream speaking raw HTTP/1.1 by path: `/len` (a length), `/big` (300 000 bytes),
    /// `/chunked`, `/eof` (ended by closing), `/broken` (closes mid-body), `/bye` (a length, then
    /// closes without saying). Keeps every request head it read; counts connections.
    async fn scripted_upstream() -> (
        Arc<Upstream>,
        Arc<AtomicUsize>,
        Arc<std::sync::Mutex<Vec<String>>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (a, h) = (accepted.clone(), heads.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let heads = h.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let end = loop {
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            let mut chunk = [0u8; 4096];
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end);
                        // A body by Content-Length (the tests send no chunked ones).
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        while buf.len() < len {
                            let mut chunk = [0u8; 4096];
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.drain(..len);
                        let path = head.split(' ').nth(1).unwrap_or("").to_string();
                        heads.lock().unwrap().push(head);
                        let big: Vec<u8>;
                        let (answer, close): (&[u8], bool) = match path.as_str() {
                            "/big" => {
                                big = [&b"HTTP/1.1 200 OK\r\ncontent-length: 300000\r\n\r\n"[..], &[b'x'; 300_000]].concat();
                                (&big, false)
                            }
                            "/chunked" => (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", false),
                            "/eof" => (b"HTTP/1.1 200 OK\r\n\r\nuntil close", true),
                            "/broken" => (b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhello", true),
                            "/bye" => (b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nbye", true),
                            _ => (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nkeep-alive: timeout=5\r\n\r\nhello", false),
                        };
                        if s.write_all(answer).await.is_err() || close {
                            return;
                        }
                    }
                });
            }
        });
        (upstream("127.0.0.1", port), accepted, heads)
    }

    /// One user connection through the proxy, as hyper's client (a real, independent client).
    async fn user(
        addr: SocketAddr,
    ) -> hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>> {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender
    }

    async fn ask(
        sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>,
        method: &str,
        path: &str,
        body: &'static str,
    ) -> (StatusCode, HeaderMap, String) {
        sender.ready().await.unwrap();
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "t")
            .header("te", "trailers")
            .header("keep-alive", "timeout=5")
            .header("x-forwarded-for", "192.0.2.1")
            .body(http_body_util::Full::new(Bytes::from_static(
                body.as_bytes(),
            )))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    #[tokio::test]
    async fn plain_requests_share_one_upstream_connection_then_a_post_goes_to_hyper() {
        let (up, accepted, heads) = scripted_upstream().await;
        let proxy = start_proxy(1, Duration::from_secs(5));
        route_to(&proxy.routes, &up);
        let mut u = user(proxy.addr).await;
        assert_eq!(ask(&mut u, "GET", "/len", "").await.2, "hello");
        assert_eq!(ask(&mut u, "GET", "/chunked", "").await.2, "hello world");
        assert_eq!(ask(&mut u, "GET", "/big", "").await.2, "x".repeat(300_000));
        let (status, headers, body) = ask(&mut u, "HEAD", "/len", "").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
        assert_eq!(headers["content-length"], "5");
        assert!(!headers.contains_key("keep-alive"), "{headers:?}");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "plain requests share a connection"
        );
        // A request with a body is hyper's, on the same user connection, and so is what follows.
        assert_eq!(ask(&mut u, "POST", "/len", "x").await.2, "hello");
        assert_eq!(ask(&mut u, "GET", "/len", "").await.2, "hello");
        // hyper's path has connections of its own: the plain path's one is not handed over.
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        let heads = heads.lock().unwrap().clone();
        assert_eq!(heads.len(), 6);
        for h in &heads {
            let lower = h.to_ascii_lowercase();
            assert!(
                lower.contains("x-forwarded-for: 192.0.2.1, 127.0.0.1\r\n"),
                "{h}"
            );
            assert!(
                !lower.contains("\r\nte:") && !lower.contains("\r\nkeep-alive:"),
                "{h}"
            );
        }
        assert!(
            heads[0].starts_with("GET /len HTTP/1.1\r\n"),
            "{}",
            heads[0]
        );
        assert!(
            heads[4].starts_with("POST /len HTTP/1.1\r\n"),
            "{}",
            heads[4]
        );
        proxy.stop.cancel();
        proxy.handle.join().await.unwrap();
    }

    #[tokio::test]
    async fn a_connection_running_closed_while_idle_is_replaced_unseen() {
        let (up, accepted, _) = scripted_upstream().await;
        let proxy = start_proxy(1, Duration::from_secs(5));
        route_to(&proxy.routes, &up);
        let mut u = user(proxy.addr).await;
        for _ in 0..3 {
            let (status, _, body) = ask(&mut u, "GET", "/bye", "").await;
            assert_eq!((status, body.as_str()), (StatusCode::OK, "bye"));
        }
        assert!(accepted.load(Ordering::SeqCst) >= 3);
        proxy.stop.cancel();
        proxy.handle.join().await.unwrap();
    }

    #[tokio::test]
    async fn an_answer_ended_by_close_closes_the_user_connection_after_it() {
        let (up, _, _) = scripted_upstream().await;
        let proxy = start_proxy(1, Duration::from_secs(5));
        route_to(&proxy.routes, &up);
        // No `Connection: close` from the user: the proxy closes because the answer needs it.
        let answer = send(proxy.addr, "GET /eof HTTP/1.1\r\nHost: t\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("connection: close\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nuntil close"), "{answer}");
        proxy.stop.cancel();
        proxy.handle.join().await.unwrap();
    }

    #[tokio::test]
    async fn an_answer_broken_off_closes_only_its_user_connection() {
        let (up, _, _) = scripted_upstream().await;
        let proxy = start_proxy(1, Duration::from_secs(5));
        route_to(&proxy.routes, &up);
        let before = BROKEN_ANSWERS.load(Ordering::Relaxed);
        let answer = send(proxy.addr, "GET /broken HTTP/1.1\r\nHost: t\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(
            answer.ends_with("\r\n\r\nhello"),
            "cut where running broke off: {answer}"
        );
        assert!(BROKEN_ANSWERS.load(Ordering::Relaxed) > before);
        let mut u = user(proxy.addr).await;
        assert_eq!(ask(&mut u, "GET", "/len", "").await.2, "hello");
        proxy.stop.cancel();
        proxy.handle.join().await.unwrap();
    }

    #[tokio::test]
    async fn no_running_is_503_and_unreachable_running_is_502_never_an_empty_200() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(Arc::new(Routes::default()));
        let (queue, _mirror_rx) = MirrorQueue::new(4, vec![http::Method::GET], 1024, 0, 0.0);
        let proxy = Arc::new(Proxy::new(
            rx,
            queue,
            Arc::default(),
            Bytes::from_static(b"no running instance\n"),
            Duration::from_secs(10),
            Limits {
                header_bytes: 64 << 10,
                headers: 100,
                body: 1 << 20,
            },
            true,
        ));
        let cancel = CancellationToken::new();
        let server = tokio::spawn(serve(
            listener,
            proxy,
            Arc::new(Connections::new(100)),
            cancel.clone(),
            Duration::from_secs(5),
        ));

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
        let up = upstream("127.0.0.1", closed);
        route_to(&tx, &up);
        let answer = get(addr).await;
        assert!(
            answer.starts_with("HTTP/1.1 502") && answer.contains("did not answer"),
            "{answer}"
        );
        assert_eq!(
            up.inflight(),
            0,
            "a failed request leaves no in-flight count"
        );

        cancel.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn stop_lets_requests_in_flight_finish_and_closes_idle_connections() {
        let (up_addr, hits) = tiny_upstream("127.0.0.1:0", Duration::from_millis(500)).await;
        let p = start_proxy(2, Duration::from_secs(10));
        let up = upstream("127.0.0.1", up_addr.port());
        route_to(&p.routes, &up);

        // An idle keep-alive connection: one request answered, then nothing.
        let mut idle = tokio::net::TcpStream::connect(p.addr).await.unwrap();
        idle.write_all(b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut seen = Vec::new();
        while !seen.ends_with(b"hello") {
            let mut buf = [0u8; 512];
            let n = idle.read(&mut buf).await.unwrap();
            assert!(n > 0, "the keep-alive answer was cut short");
            seen.extend_from_slice(&buf[..n]);
        }

        let clients: Vec<_> = (0..20)
            .map(|_| {
                let addr = p.addr;
                tokio::spawn(async move {
                    send(
                        addr,
                        "GET /slow HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                    )
                    .await
                })
            })
            .collect();
        eventually(
            "20 requests in flight upstream",
            Duration::from_secs(5),
            || hits.load(Ordering::SeqCst) == 21,
        )
        .await;
        assert_eq!(up.inflight(), 20);

        p.stop.cancel();
        let stopped = Instant::now();
        p.handle.join().await.unwrap();
        let took = stopped.elapsed();
        assert!(
            took < Duration::from_millis(1500),
            "join waited {took:?}, not just for the requests in flight"
        );
        for c in clients {
            let answer = c.await.unwrap();
            assert!(
                answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello"),
                "{answer}"
            );
        }
        assert_eq!(up.inflight(), 0);
        let mut rest = [0u8; 16];
        assert_eq!(
            idle.read(&mut rest).await.unwrap_or(0),
            0,
            "the idle connection is closed"
        );
        assert!(
            tokio::net::TcpStream::connect(p.addr).await.is_err(),
            "nothing accepts after stop"
        );
        assert!(!p.fatal.is_cancelled());
    }

    /// Poll `f` once: `true` when it is done.
    async fn poll_once(f: Pin<&mut impl std::future::Future>) -> bool {
        tokio::select! {
            biased;
            _ = f => true,
            _ = std::future::ready(()) => false,
        }
    }

    #[tokio::test]
    async fn drain_resolves_when_the_last_request_ends_or_at_grace() {
        let up = upstream("127.0.0.1", 1);
        assert_eq!(up.drain(Duration::from_secs(5)).await, 0, "idle: at once");

        let (first, second) = (InflightGuard::new(&up), InflightGuard::new(&up));
        let started = Instant::now();
        let drain = up.drain(Duration::from_secs(10));
        tokio::pin!(drain);
        assert!(!poll_once(drain.as_mut()).await, "two requests in flight");
        drop(first);
        assert!(!poll_once(drain.as_mut()).await, "one request in flight");
        drop(second);
        let left = tokio::time::timeout(Duration::from_secs(5), drain)
            .await
            .expect("the last request out wakes the drain");
        assert_eq!(left, 0);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "woken, not at grace"
        );

        let _stuck = InflightGuard::new(&up);
        let started = Instant::now();
        assert_eq!(up.drain(Duration::from_millis(200)).await, 1);
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn drain_counts_a_streaming_body_until_it_ends() {
        // An upstream that sends its head and half its body, then holds until released.
        let held = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up_port = held.local_addr().unwrap().port();
        let (release, released) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let (mut s, _) = held.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
                .await
                .unwrap();
            let _ = released.await;
            s.write_all(b"world").await.unwrap();
        });
        let p = start_proxy(1, Duration::from_secs(5));
        let up = upstream("127.0.0.1", up_port);
        route_to(&p.routes, &up);

        let mut user = tokio::net::TcpStream::connect(p.addr).await.unwrap();
        user.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut seen = Vec::new();
        while !seen.ends_with(b"hello") {
            let mut buf = [0u8; 512];
            let n = user.read(&mut buf).await.unwrap();
            assert!(n > 0, "the answer was cut short");
            seen.extend_from_slice(&buf[..n]);
        }
        let drain = up.drain(Duration::from_secs(10));
        tokio::pin!(drain);
        assert!(
            !poll_once(drain.as_mut()).await,
            "the body is still streaming"
        );
        assert_eq!(up.inflight(), 1);

        release.send(()).unwrap();
        let mut rest = String::new();
        user.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "world");
        let left = tokio::time::timeout(Duration::from_secs(5), drain)
            .await
            .expect("the end of the body wakes the drain");
        assert_eq!(left, 0);
        p.stop.cancel();
        p.handle.join().await.unwrap();
    }

    #[test]
    fn upstream_authorities() {
        let a = |host: &str| upstream_authority(host, 20001).map(|a| a.to_string());
        assert_eq!(a("127.0.0.1").unwrap(), "127.0.0.1:20001");
        assert_eq!(a("::1").unwrap(), "[::1]:20001");
        assert_eq!(a("[::1]").unwrap(), "[::1]:20001");
        assert_eq!(a("fe80::1:2").unwrap(), "[fe80::1:2]:20001");
        assert_eq!(a("localhost").unwrap(), "localhost:20001");
        for bad in ["", "user@host", "a b", "host/x", "127.0.0.1:80", "::1]"] {
            let e = a(bad).expect_err(bad);
            assert!(matches!(e, ProxyError::BadUpstream { .. }), "{bad}: {e}");
        }
    }

    #[tokio::test]
    async fn proxies_to_an_ipv6_upstream_given_without_brackets() {
        let (up_addr, hits) = tiny_upstream("[::1]:0", Duration::ZERO).await;
        let p = start_proxy(1, Duration::from_secs(5));
        route_to(&p.routes, &upstream("::1", up_addr.port()));
        let answer = get(p.addr).await;
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello"),
            "{answer}"
        );
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        p.stop.cancel();
        p.handle.join().await.unwrap();
    }

    #[tokio::test]
    async fn restarting_running_is_503_with_retry_after() {
        let p = start_proxy(1, Duration::from_secs(5));
        p.routes.send_replace(Arc::new(Routes {
            restarting: Some(Version::new(1, 4, 2)),
            ..Routes::default()
        }));
        let answer = get(p.addr).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("\r\nretry-after: 1\r\n"),
            "{answer}"
        );
        assert!(
            answer.ends_with("understudy: running 1.4.2 is restarting; retry in a moment\n"),
            "{answer}"
        );
        p.stop.cancel();
        p.handle.join().await.unwrap();
    }

    #[tokio::test]
    async fn connect_is_405_and_never_forwarded() {
        let (up_addr, hits) = tiny_upstream("127.0.0.1:0", Duration::ZERO).await;
        let p = start_proxy(1, Duration::from_secs(5));
        route_to(&p.routes, &upstream("127.0.0.1", up_addr.port()));
        let answer = send(
            p.addr,
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
        assert_eq!(hits.load(Ordering::SeqCst), 0, "CONNECT reached running");
        p.stop.cancel();
        p.handle.join().await.unwrap();
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
        // A second Connection line counts too.
        h.append(header::CONNECTION, HeaderValue::from_static("X-Other"));
        h.insert("x-other", HeaderValue::from_static("2"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::CONTENT_TYPE));

        // Nothing hop-by-hop: nothing goes.
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("a"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
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
