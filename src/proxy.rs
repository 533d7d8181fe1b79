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
//! docs/http1.md): `accept` (the listener, the connection limit, the drain at stop), `conn` (one
//! user connection: read head, refuse or route), `head` (parse and rewrite a request head),
//! `exchange` (upstream: send it, get an answer head, the retry rule), `answer` (parse and rewrite
//! an answer head), `fields` (both heads' header names, read once, and the lines that go on
//! unchanged copied whole), `framing` (where a body ends), `forward` (the request body, the
//! mirror's tee), `relay` (the answer's body, read ahead of slow users into memory and `spill`
//! files), `upgrade` (splices), `reply` (understudy's own answers), `pool` (keep-alive connections
//! to the instances), `upstream` (the instances and routes) and `stats` (what is counted).

mod accept;
pub mod affinity;
mod answer;
mod budget;
mod bufs;
pub mod canary;
mod coarse;
mod conn;
mod exchange;
mod fields;
mod forward;
pub mod framing;
mod head;
pub mod mirror;
pub mod pool;
mod relay;
pub mod replay;
mod reply;
mod spill;
mod stats;
mod timer;
mod upgrade;
mod upload;
mod upstream;
mod wait;

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use semver::Version;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use mirror::MirrorQueue;

pub use accept::Connections;
use accept::{Calls, Counted};
pub use spill::MinFreeDisk;
pub use stats::{Answers, LatencyReading, ProxyStats, LATENCY_BUCKETS_US, NO_ANSWER};
pub use upstream::{Hold, InflightGuard, Routes, Upstream, RESTART_HOLD};

/// Settings of the users' proxy.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Proxy threads, each with its own event loop (0 counts as 1).
    pub threads: usize,
    /// Keep each thread on a CPU of its own when they are one per CPU it may use ([`affinity`]).
    pub pin: bool,
    /// Accept only once this is cancelled (`None`: at once). An understudy started by an
    /// upgrade shares its listener with the old one, which serves until running is adopted here.
    pub open: Option<CancellationToken>,
    /// `CANARY_STICKY`: what places a user in a canary step.
    pub canary_sticky: crate::config::Sticky,
    /// Where answers served during a canary step are counted (the scorer); None: nowhere.
    pub served: Option<canary::ServedTx>,
    /// Body of the 503 answered while nothing runs: says what to drop where.
    pub no_running_hint: String,
    /// How long requests in flight at stop may take to finish before their connections are cut.
    pub drain_grace: Duration,
    /// How long a client may take to send a whole request head (slowloris clients are cut off).
    pub header_timeout: Duration,
    /// `BODY_TIMEOUT`: how long a client may send nothing of a request body.
    pub body_timeout: Duration,
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
    /// `REQUEST_BUFFER`: how much of one request body is read before running is asked.
    pub request_buffer: usize,
    /// `ANSWER_MEMORY`: how much all answers read ahead may hold together.
    pub answer_memory: usize,
    /// Where answers past those spill (`.understudy/`).
    pub spill_dir: std::path::PathBuf,
    /// `ANSWER_SPILL`: how much all spilled answers may hold on disk together.
    pub answer_spill: u64,
    /// `MIN_FREE_DISK`, as last reloaded: spilling never leaves less free.
    pub min_free_disk: MinFreeDisk,
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

/// The proxy's shared state, one per proxy thread, shared (as an `Arc`) by its connections.
struct Proxy {
    routes: watch::Receiver<Arc<Routes>>,
    /// `CANARY_STICKY`: what places a user in a canary step.
    sticky: crate::config::Sticky,
    /// Served answers of both sides during a canary step, to the scorer.
    served: Option<canary::ServedTx>,
    /// This thread's connections to the instances.
    pool: pool::Pool,
    mirror: MirrorQueue,
    stats: Arc<ProxyStats>,
    no_running_hint: Bytes,
    header_timeout: Duration,
    /// `BODY_TIMEOUT`: how long a user may send nothing of a request body.
    body_timeout: Duration,
    /// At a stop (or an upgrade's handover), how long a body still being read ahead may take to
    /// come: three quarters of `SHUTDOWN_GRACE`, the rest for its answer (requests in flight are
    /// cut at the end of it); then it is told 503, to send it again.
    upload_grace: Duration,
    /// `UPSTREAM_TIMEOUT`: how long running may send nothing while understudy waits for it.
    upstream_timeout: Duration,
    /// `SEND_TIMEOUT`: how long a user may take no byte of an answer.
    send_timeout: Duration,
    /// `ANSWER_BUFFER`: how much of one answer is read ahead of a slow user.
    answer_buffer: usize,
    /// `REQUEST_BUFFER`: how much of one request body is read before running is asked.
    request_buffer: usize,
    /// `ANSWER_MEMORY` left, for all threads.
    answer_memory: Arc<budget::AnswerMemory>,
    /// `ANSWER_SPILL` left, and where, for all threads.
    spills: Arc<spill::Spills>,
    limits: Limits,
    /// This thread's calls to its connections: make room at the connection limit, stop.
    calls: Calls,
    /// When this thread last let a waiting request go (see [`wait`]).
    released: std::sync::Mutex<tokio::time::Instant>,
}

/// The upstreams chosen for one request; the guard counts it on running (and names running).
struct Route {
    running: InflightGuard,
    testing: Option<Arc<Upstream>>,
    secondary: Option<Arc<Upstream>>,
    /// During a canary step: which side serves this user (`running` is then that side), and
    /// the user's place.
    side: Option<(canary::Side, u32)>,
}

impl Proxy {
    fn new(
        settings: &ProxySettings,
        routes: watch::Receiver<Arc<Routes>>,
        mirror: MirrorQueue,
        stats: Arc<ProxyStats>,
        answer_memory: Arc<budget::AnswerMemory>,
        spills: Arc<spill::Spills>,
    ) -> Proxy {
        Proxy {
            routes,
            sticky: settings.canary_sticky.clone(),
            served: settings.served.clone(),
            pool: pool::Pool::default(),
            mirror,
            stats,
            no_running_hint: Bytes::from(settings.no_running_hint.clone()),
            header_timeout: settings.header_timeout,
            body_timeout: settings.body_timeout,
            upload_grace: settings.drain_grace - settings.drain_grace / 4,
            upstream_timeout: settings.upstream_timeout,
            send_timeout: settings.send_timeout,
            answer_buffer: settings.answer_buffer,
            request_buffer: settings.request_buffer,
            answer_memory,
            spills,
            limits: settings.limits,
            calls: Calls::default(),
            released: std::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// Whether nothing serves users now, nor is held for (a restart started at once, a guard's
    /// rollback): a request gets understudy's 503 at once, a crash loop's backoff included, and
    /// its body is not asked for first.
    fn serves_nothing(&self) -> bool {
        let routes = self.routes.borrow();
        routes.running.is_none() && routes.hold.is_none()
    }

    /// Choose running (counting the request on it) and testing; with nothing running, the
    /// version being restarted, if any. During a canary step, a user whose place (by the sticky
    /// key in `head`, or the address `peer` gives) is under the share is served by testing.
    fn route(
        &self,
        head: &[u8],
        peer: impl FnOnce() -> Option<std::net::IpAddr>,
    ) -> Result<Route, Option<Version>> {
        // Take the in-flight count while the routes are borrowed: a swap waits for this borrow, so
        // a drain that starts after the swap sees every request that chose the old upstream.
        let routes = self.routes.borrow();
        let Some(running) = &routes.running else {
            return Err(routes.restarting.clone());
        };
        // Running's users keep their place too (PLACES without the key): one place with nearly
        // all answers tells the scorer every user comes through one front proxy.
        let mut running_place = canary::PLACES;
        if let Some(testing) = routes.testing.as_ref().filter(|_| routes.canary > 0) {
            let place = canary::place(&self.sticky, head, peer());
            if let Some(place) = place.filter(|&p| p < routes.canary) {
                return Ok(Route {
                    running: InflightGuard::new(testing),
                    testing: None,
                    secondary: None,
                    side: Some((canary::Side::Testing, place)),
                });
            }
            running_place = place.unwrap_or(canary::PLACES);
        }
        Ok(Route {
            running: InflightGuard::new(running),
            testing: routes.testing.clone(),
            secondary: routes.secondary.clone(),
            side: (routes.canary > 0).then_some((canary::Side::Running, running_place)),
        })
    }

    /// During a canary step, the record of this request's answer (its side, method and path
    /// from the request head `head`), to be completed by [`Proxy::served`].
    fn serving(&self, route: &Route, method: &http::Method, head: &[u8]) -> Option<canary::Served> {
        let (side, place) = route.side.filter(|_| self.served.is_some())?;
        Some(canary::Served {
            side,
            place,
            method: method.clone(),
            path: canary::path_of(head).to_string(),
            status: 0,
            latency: Duration::ZERO,
        })
    }

    /// Count an answer served during a canary step for the scorer (dropped when it lags).
    fn served(&self, record: Option<canary::Served>, status: u16, latency: Duration) {
        if let (Some(tx), Some(mut r)) = (&self.served, record) {
            (r.status, r.latency) = (status, latency);
            let _ = tx.try_send(r);
        }
    }

    /// The words of a 502 or 504 (logged here): which instance failed, on which request (from
    /// `head`, the request head sent to it), how, and what the user got.
    fn failure_text(&self, running: &Upstream, e: &pool::UpstreamError, head: &[u8]) -> String {
        tracing::warn!("{}", failure_log(running, e, head));
        format!(
            "understudy: the running instance ({} at {}) did not answer: {e}\n",
            running.version, running.authority
        )
    }
}

/// The log line of a request running did not answer: built only when one failed.
fn failure_log(running: &Upstream, e: &pool::UpstreamError, head: &[u8]) -> String {
    let got = if e.is_timeout() {
        "504 Gateway Timeout"
    } else {
        "502 Bad Gateway"
    };
    let request = match request_of(head) {
        Some((method, path)) => format!(" {method} {path}"),
        None => String::new(),
    };
    format!(
        "running {} at {} did not answer{request}: {e}; the user got {got}",
        running.version, running.authority
    )
}

/// The method and path (without its query, cut to 200 bytes) of the request head `head`; None
/// once the buffer holds something else (an interim answer rewritten over it).
fn request_of(head: &[u8]) -> Option<(&str, &str)> {
    let end = head.iter().position(|&b| b == b' ')?;
    let method = std::str::from_utf8(&head[..end]).ok()?;
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if method.is_empty() || !method.bytes().all(token) {
        return None;
    }
    let path = canary::path_of(head);
    let mut cut = path.len().min(200);
    while !path.is_char_boundary(cut) {
        cut -= 1;
    }
    Some((method, &path[..cut]))
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
    let (answer_memory, spills) = answer_bounds(&settings);
    let count = settings.threads.max(1);
    let cores = cores(settings.pin, count);
    let (conns, queues) = Connections::new(settings.max_connections, count);
    let conns = Arc::new(conns);
    let _ = stats.connections.set(conns.clone());
    let mut threads = Vec::with_capacity(count);
    for (index, handed) in queues.into_iter().enumerate() {
        let core = cores.as_ref().map(|c| c[index]);
        let proxy = Proxy::new(
            &settings,
            routes.clone(),
            mirror.clone(),
            stats.clone(),
            answer_memory.clone(),
            spills.clone(),
        );
        let spawned = listener
            .try_clone()
            .map_err(|source| ProxyError::ListenerClone {
                thread: index,
                source,
            })
            .map(|listener| (listener, handed))
            .and_then(|(listener, handed)| {
                let (done_tx, done) = oneshot::channel();
                let life = Life::of(&settings, &started);
                let (fatal, conns) = (fatal.clone(), conns.clone());
                std::thread::Builder::new()
                    .name(format!("understudy-proxy-{index}"))
                    .spawn(move || {
                        pin(index, core);
                        let ended = std::panic::catch_unwind(AssertUnwindSafe(|| {
                            proxy_thread(index, (listener, handed), proxy, conns, life)
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

/// What all proxy threads' buffered answers share: `ANSWER_MEMORY`, and the spill files past it.
fn answer_bounds(settings: &ProxySettings) -> (Arc<budget::AnswerMemory>, Arc<spill::Spills>) {
    let memory = Arc::new(budget::AnswerMemory::new(settings.answer_memory));
    let spills = Arc::new(spill::Spills::new(
        settings.spill_dir.clone(),
        settings.answer_spill,
        settings.min_free_disk.clone(),
    ));
    (memory, spills)
}

/// The CPU for each of `count` proxy threads when `pin` (`CPU_AFFINITY=auto`) and they are one
/// per CPU this process may use ([`affinity::placement`]); `None` leaves them to the scheduler.
/// Says which, once.
fn cores(pin: bool, count: usize) -> Option<Vec<usize>> {
    if !pin {
        return None;
    }
    let allowed = match affinity::allowed_cpus() {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!("{e}");
            return None;
        }
    };
    let usable = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cores = affinity::placement(&allowed, usable, count);
    match &cores {
        Some(c) => {
            tracing::info!("pinning the proxy threads to CPUs {c:?}, one each (CPU_AFFINITY)")
        }
        None => tracing::info!(
            "proxy threads not pinned (CPU_AFFINITY): {count} threads, {} CPUs in the affinity \
             mask, {usable} usable; they are pinned when the three agree",
            allowed.len()
        ),
    }
    cores
}

/// Keep proxy thread `index` on `core`, if it has one; a refusal is said and changes nothing else.
fn pin(index: usize, core: Option<usize>) {
    if let Some(cpu) = core {
        if let Err(e) = affinity::pin_current(index, cpu) {
            tracing::warn!("{e}");
        }
    }
}

/// The body of one proxy thread: its own runtime, serving until `stop` and the drain are over.
/// The runtime is built and dropped here, never on the caller's (async) thread.
fn proxy_thread(
    index: usize,
    (listener, handed): (std::net::TcpListener, mpsc::Receiver<accept::Handed>),
    proxy: Proxy,
    conns: Arc<Connections>,
    life: Life,
) -> Result<(), ProxyError> {
    let Life {
        stop,
        open,
        drain_grace,
    } = life;
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
        let intake = accept::Intake {
            listener,
            index,
            handed,
        };
        let proxy = Arc::new(proxy);
        if let Some(open) = open {
            // Stopped before it opened: `serve` stops at once, serving only what another
            // thread, opened already, handed to this one.
            tokio::select! {
                () = open.cancelled() => {}
                () = stop.cancelled() => {}
            }
        }
        tokio::select! {
            () = accept::serve(intake, proxy.clone(), conns, stop, drain_grace) => {}
            () = keep_a_timer_due(&proxy) => {}
        }
        Ok(())
    })
}

/// When a proxy thread starts accepting and when it stops.
struct Life {
    /// Stops accepting; the connections then drain.
    stop: CancellationToken,
    /// Accept only once cancelled; `None` at once.
    open: Option<CancellationToken>,
    /// How long connections may drain after `stop`.
    drain_grace: Duration,
}

impl Life {
    fn of(settings: &ProxySettings, stop: &CancellationToken) -> Life {
        Life {
            stop: stop.clone(),
            open: settings.open.clone(),
            drain_grace: settings.drain_grace,
        }
    }
}

/// Keep a timer of this thread's event loop due within `header_timeout` (and a second), for ever.
/// Every request arms a header timer `HEADER_TIMEOUT` from now; when it is the earliest timer,
/// tokio wakes its own event loop through an eventfd to re-plan its sleep: a `write(2)` and an
/// extra `epoll_wait` for about one request in six under load (measured, docs/benchmarks.md).
/// With this tick always due sooner, arming a header timer never is the earliest. Each tick also
/// drops the thread's pooled connections that instances closed (stopped ones), even while no
/// request gives one back.
async fn keep_a_timer_due(proxy: &Proxy) {
    let period = proxy
        .header_timeout
        .min(Duration::from_secs(1))
        .max(Duration::from_millis(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        proxy.pool.sweep();
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".to_string())
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
