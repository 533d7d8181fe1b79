//! The reverse proxy users talk to. Every request goes to `running` and its answer streams back
//! unchanged; a copy of eligible requests is handed to the mirror (see [`mirror`]) without
//! waiting, so testing is never on the user's path.
//!
//! It runs thread-per-core, as nginx's workers do ([`start`]): each thread has its own
//! current-thread runtime, accepts on a clone of the one listener and keeps its connections and
//! their upstream connections to itself, so a request never wakes another thread. On stop, each
//! thread stops accepting and lets the requests in flight finish (bounded), then ends.
//!
//! Every request crosses one HTTP/1.1 engine, named by its phases as pingora's is (contract in
//! docs/http1.md): `conn` (accept's connection, read head, route), `head` (parse and rewrite a
//! request head), `exchange` (upstream: send it, get an answer head, the retry rule), `answer`
//! (parse and rewrite an answer head), `framing` (where a body ends), `forward` (bodies both ways,
//! the read-ahead for slow users, the mirror's tee), `upgrade` (splices), `reply` (understudy's own
//! answers) and `pool` (keep-alive connections to the instances).

mod answer;
mod bufs;
mod conn;
mod exchange;
mod forward;
pub mod framing;
mod head;
pub mod mirror;
pub mod pool;
mod reply;
mod upgrade;

use std::any::Any;
use std::net::Ipv6Addr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderValue;
use http::uri::Authority;
use http::StatusCode;
use semver::Version;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::instance::InstanceId;
use mirror::MirrorQueue;

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
    /// `UPSTREAM_TIMEOUT`: how long running may send nothing while an answer is awaited (504).
    pub upstream_timeout: Duration,
    /// `SEND_TIMEOUT`: how long a user may take no byte of an answer before being closed.
    pub send_timeout: Duration,
    /// `ANSWER_BUFFER`: how much of one answer is read ahead of a slow user.
    pub answer_buffer: usize,
    /// `ANSWER_MEMORY`: how much all answers read ahead may hold together.
    pub answer_memory: usize,
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
    /// User requests answered 504 (running sent nothing for `UPSTREAM_TIMEOUT`).
    pub gateway_timeout: AtomicU64,
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

/// The proxy's shared state, one per proxy thread, shared (as an `Arc`) by its connections.
struct Proxy {
    routes: watch::Receiver<Arc<Routes>>,
    /// This thread's connections to the instances.
    pool: pool::Pool,
    mirror: MirrorQueue,
    stats: Arc<ProxyStats>,
    no_running_hint: Bytes,
    header_timeout: Duration,
    /// `UPSTREAM_TIMEOUT`: how long running may send nothing while understudy waits for it.
    upstream_timeout: Duration,
    /// `SEND_TIMEOUT`: how long a user may take no byte of an answer.
    send_timeout: Duration,
    /// `ANSWER_BUFFER`: how much of one answer is read ahead of a slow user.
    answer_buffer: usize,
    /// `ANSWER_MEMORY` left, for all threads.
    answer_memory: Arc<forward::AnswerMemory>,
    limits: Limits,
    /// This thread's connections asked to make room at the connection limit.
    room: Room,
}

/// The upstreams chosen for one request; the guard counts it on running (and names running).
struct Route {
    running: InflightGuard,
    testing: Option<Arc<Upstream>>,
    secondary: Option<Arc<Upstream>>,
}

impl Proxy {
    fn new(
        settings: &ProxySettings,
        routes: watch::Receiver<Arc<Routes>>,
        mirror: MirrorQueue,
        stats: Arc<ProxyStats>,
        answer_memory: Arc<forward::AnswerMemory>,
    ) -> Proxy {
        Proxy {
            routes,
            pool: pool::Pool::default(),
            mirror,
            stats,
            no_running_hint: Bytes::from(settings.no_running_hint.clone()),
            header_timeout: settings.header_timeout,
            upstream_timeout: settings.upstream_timeout,
            send_timeout: settings.send_timeout,
            answer_buffer: settings.answer_buffer,
            answer_memory,
            limits: settings.limits,
            room: Room::default(),
        }
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

    /// The words of a 502 or 504 (logged here): which instance failed, and how.
    fn failure_text(&self, running: &Upstream, e: &pool::UpstreamError) -> String {
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
    let answer_memory = Arc::new(forward::AnswerMemory::new(settings.answer_memory));
    let count = settings.threads.max(1);
    let conns = Arc::new(Connections::new(settings.max_connections));
    let mut threads = Vec::with_capacity(count);
    for index in 0..count {
        let proxy = Proxy::new(
            &settings,
            routes.clone(),
            mirror.clone(),
            stats.clone(),
            answer_memory.clone(),
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
        connections.spawn(conn::serve(
            stream,
            peer,
            proxy.clone(),
            stop.clone(),
            counted,
        ));
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(drain_grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} user connections still busy {drain_grace:?} after stop; closing them",
            connections.len()
        );
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
