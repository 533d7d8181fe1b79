//! understudy: a shadow-traffic canary supervisor. A new build of an HTTP service is started as
//! *testing* beside the *running* one, receives a copy of live traffic, is scored against running,
//! and is promoted with zero downtime or rejected with its reasons.
//!
//! # Layout
//! - [`config`]: `.env` + `UNDERSTUDY_*` + CLI, validated before anything binds.
//! - [`layout`]: every path in the base dir; atomic `running`/`testing` symlinks.
//! - [`artifact`]: build names (`<identifier>-<semver>`) and installing into version folders.
//! - [`watcher`]: notices complete builds (`cp` or `mv`) in the base dir.
//! - [`instance`]: one child process: launch spec, spawner thread, process group, readiness,
//!   SIGTERM→SIGKILL to the group, reaping.
//! - [`watchdog`]: the per-instance process that kills a child's whole group if understudy dies.
//! - [`proxy`]: the users' reverse proxy; [`proxy::mirror`] copies requests to testing.
//! - [`diff`]: names how testing's answer differs from running's (pure), aggregated per endpoint.
//! - [`score`]: pairs and log lines → verdict and score (pure [`score::evaluate`]).
//! - [`supervisor`]: the one owner of state; the pure [`supervisor::decide()`] answers every input
//!   with actions, which [`supervisor::executor`] carries out and reports back.
//! - [`archive`]: zips retired versions, deletes old archives over budget.
//! - [`events`]: decisions, logged and broadcast.
//! - [`hooks`]: the operator's PRE_START / PRE_PROMOTE / POST_PROMOTE / POST_ROLLBACK commands.
//! - [`history`]: `history.jsonl`, the fsynced record of which version served users when.
//! - [`admin`]: the operators' HTTP API (TCP and unix socket): status, steering, verdicts.
//! - [`private`]: users' answer values and hooks' output quoted in messages, hidden from readers
//!   without the token.
//! - [`metrics`]: `GET /metrics` (Prometheus text): traffic, decisions, score, children's usage.
//! - [`cli`]: `understudy status|promote|...`, the admin API's client over the unix socket.
//! - [`systemd`]: `Type=notify` (ready, status, stopping, watchdog) and socket activation.
//! - [`jsonlog`]: understudy's own log as JSON lines (`LOG_FORMAT=json`).
//! - [`demo`]: the self-contained demo behind `understudy demo`.

pub mod admin;
pub mod archive;
pub mod artifact;
pub mod cli;
pub mod config;
pub mod demo;
pub mod diff;
pub mod events;
pub mod history;
pub mod hooks;
pub mod instance;
pub mod instant;
pub mod jsonlog;
pub mod layout;
pub mod metrics;
pub mod private;
pub mod process;
pub mod proxy;
pub mod score;
pub mod store;
mod succession;
pub mod supervisor;
pub mod systemd;
pub mod upgrade;
pub mod usage;
pub mod watchdog;
pub mod watcher;
pub mod webhooks;

/// The fixture app used by the tests and the demo (hidden subcommand `fixture-app`).
#[doc(hidden)]
#[path = "../fixtures/app.rs"]
pub mod fixture;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;

use succession::{farewell, handing, spawn_restatement, spawn_succession, Handing};

pub use config::Config;
pub use events::{Event, Events};
pub use process::{
    close_inherited_on_exec, ephemeral_overlap, ignore_hangup_until_handled, init_logging,
    mask_write_for_others, raise_fd_limit, shutdown_signal, MAX_BLOCKING_THREADS,
};

/// Verdicts waiting for the supervisor; a stale one is skipped when full.
const VERDICT_QUEUE: usize = 16;
/// Capacity of the pair channel from the mirror to the scorer; pairs beyond it are dropped.
const PAIR_QUEUE: usize = 4096;
/// Complete builds waiting for the supervisor; the watcher waits when it is full.
const DROPPED_QUEUE: usize = 16;
/// Heartbeats the supervisor's loop may miss before it counts as hung and systemd's watchdog is
/// no longer petted (one late beat is not a hang).
const STALE_BEATS: u32 = 3;

/// Why understudy stopped other than by a shutdown signal.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A task died; every child was stopped before returning.
    #[error("the {task} task failed: {message}; every child was stopped")]
    TaskFailed {
        /// Which task.
        task: &'static str,
        /// Its panic message, or how it ended.
        message: String,
    },
    /// The users' proxy could not start or one of its threads died.
    #[error("proxy: {0}")]
    Proxy(#[from] proxy::ProxyError),
    /// The admin API could not be set up.
    #[error("admin API: {0}")]
    Admin(#[from] admin::AdminError),
    /// The listener could not be handed to the proxy threads.
    #[error("cannot use the listening socket: {0}")]
    Listener(std::io::Error),
    /// Started by an upgrade, it could not serve a child handed over; the children went back
    /// to the old understudy, which serves on.
    #[error("gave up taking over from the previous understudy: {0}; it keeps the children and serves on")]
    GaveUp(String),
}

/// The control tasks (mirror, scorer, watcher, supervisor) by name, so a death can be named.
struct Tasks {
    set: JoinSet<()>,
    names: Vec<(Id, &'static str)>,
}

impl Tasks {
    fn new() -> Tasks {
        Tasks {
            set: JoinSet::new(),
            names: Vec::new(),
        }
    }

    fn spawn(
        &mut self,
        name: &'static str,
        f: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let id = self.set.spawn(f).id();
        self.names.push((id, name));
    }

    fn name(&self, id: Id) -> &'static str {
        self.names
            .iter()
            .find(|(i, _)| *i == id)
            .map_or("unknown", |(_, n)| n)
    }

    /// Wait for the next task to end; `Some` names it and says why when it died (a panic).
    async fn next_end(&mut self) -> Option<(&'static str, Option<String>)> {
        let res = self.set.join_next_with_id().await?;
        Some(match res {
            Ok((id, ())) => (self.name(id), None),
            Err(e) => {
                let name = self.name(e.id());
                let message = if e.is_panic() {
                    panic_message(e.into_panic())
                } else {
                    "cancelled".to_string()
                };
                (name, Some(message))
            }
        })
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-text payload".to_string())
}

/// The cancellation tokens of the shutdown sequence, in the order they are cancelled.
#[derive(Default)]
struct Stops {
    /// Cancelled by a proxy thread that dies.
    fatal: CancellationToken,
    /// Stops the proxy from accepting; it then drains.
    proxy: CancellationToken,
    /// Stops the mirror, scorer, watcher and supervisor (which stops the children).
    control: CancellationToken,
}

/// A task that died: its name and why.
type Failure = (&'static str, String);

/// The listeners understudy serves on, bound by `main` or passed by systemd.
pub struct Listeners {
    /// The users' proxy (`LISTEN`).
    pub proxy: TcpListener,
    /// The admin API's TCP listener when systemd passed one; `None` binds `ADMIN_LISTEN`.
    pub admin: Option<std::net::TcpListener>,
    /// The admin API's unix socket listener, when the previous understudy handed it over.
    pub socket: Option<std::os::unix::net::UnixListener>,
}

/// Run understudy on already bound `listeners` until `shutdown` (or until a task dies), then
/// shut down in order: stop accepting, let in-flight user requests finish (bounded by
/// `SHUTDOWN_GRACE`), stop every child, join every task. `notifier` tells systemd (if understudy
/// runs under it) when it is ready, how it is doing, and when it stops.
///
/// Each configuration received on `reload` (a re-read `.env`, already validated) is applied: the
/// keys in [`config::LIVE_KEYS`] take effect at once, those in [`config::NEW_INSTANCE_KEYS`] for
/// instances started from now on, any other changed key keeps its old value and is named in the
/// log as needing a restart.
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    events: Events,
    shutdown: CancellationToken,
    reload: mpsc::Receiver<Config>,
    notifier: systemd::Notifier,
    mut succession: upgrade::Succession,
) -> Result<(), RunError> {
    let cfg = Arc::new(cfg);
    // The address actually bound: with `LISTEN=…:0` only the listener knows the port.
    let listen = listeners.proxy.local_addr().map_err(RunError::Listener)?;
    let layout = layout::Layout::new(&cfg.base, &cfg.identifier);
    let mut admin = admin::bind(&cfg, &layout, listen, listeners.admin, listeners.socket)?;
    let mut handing = handing(
        &shutdown,
        &mut succession,
        &listeners.proxy,
        &mut admin,
        &notifier,
    )?;
    let (config_tx, config_rx) = watch::channel(cfg.clone());
    let stops = Stops::default();
    let (routes_tx, routes_rx) = watch::channel(Arc::new(proxy::Routes::at_start()));
    let stats = Arc::new(proxy::ProxyStats::default());
    let gate = handing.ready.as_ref().map(|r| r.open.clone());
    let StartedProxy { proxy, feeds } = start_proxy(
        &cfg,
        listeners.proxy,
        routes_rx,
        &stats,
        &stops,
        gate,
        &config_tx,
    )?;
    let live = supervisor::LiveGroups::default();
    let (commands_tx, commands_rx) = mpsc::channel(supervisor::control::COMMAND_QUEUE);
    let (status_tx, status_rx) = watch::channel(Arc::new(supervisor::Status::default()));
    let (pulse_tx, pulse_rx) = watch::channel(tokio::time::Instant::now());
    let handle = supervisor::SupervisorHandle::new(commands_tx, status_rx);
    let webhook_stats = webhook_stats(&cfg);
    let (metrics, counters) = metrics::Metrics::new(
        stats.clone(),
        feeds.replay_queue.recorder().clone(),
        handle.clone(),
        webhook_stats.clone(),
    );
    let parts = (handle, metrics, listen);
    let admin_state = admin_state(&cfg, parts, &stats, &events, &stops, &handing);
    // Spawned (so subscribed) before the supervisor starts, so the counters and every webhook see
    // its first event (a task subscribing once it first runs may do so after the supervisor's).
    let mut tasks = Tasks::new();
    spawn_admin(&mut tasks, (admin, admin_state.clone()), counters, &stops);
    spawn_webhooks(&mut tasks, &cfg, &webhook_stats, &events, &stops.control);
    let control = Control {
        commands: commands_rx,
        status: status_tx,
        pulse: pulse_tx,
        cfg: cfg.clone(),
        config: config_rx,
        feeds,
        routes: routes_tx,
        stats,
        events: events.clone(),
        live: live.clone(),
        stop: stops.control.clone(),
        succession,
    };
    control.spawn(&mut tasks);
    spawn_succession(&mut tasks, handing.ready.take(), &admin_state);
    let watched = watched(config_tx.subscribe(), &admin_state.handle, pulse_rx);
    spawn_notifier(&mut tasks, &notifier, watched, &stops.control);
    let status = admin_state.handle.watch();
    spawn_restatement(&mut tasks, &notifier, &handing, status, &stops.control);
    let ends = [&shutdown, &handing.handed];
    let failure = first_failure(ends, &stops.fatal, &mut tasks, reload, config_tx).await;
    farewell(&notifier, &handing);
    let result = shut_down(&cfg, stops, proxy, tasks, live, failure).await;
    handing.outcome(result)
}

/// The admin API, and the counting of events for its metrics.
fn spawn_admin(
    tasks: &mut Tasks,
    (bound, state): (admin::Bound, admin::AdminState),
    counters: metrics::EventCounters,
    stops: &Stops,
) {
    let (events, stop) = (state.events.subscribe(), &stops.control);
    tasks.spawn(
        "metrics",
        metrics::count_events(events, counters, stop.clone()),
    );
    tasks.spawn("admin", admin::serve(bound, state, stop.clone()));
}

/// The running proxy and the receiving end of the mirror queue its threads feed.
struct StartedProxy {
    /// The proxy threads, joined at shutdown.
    proxy: proxy::ProxyHandle,
    /// What its threads feed the control tasks.
    feeds: ProxyFeeds,
}

/// The receiving ends of what the proxy threads feed the mirror, replay and scorer tasks.
struct ProxyFeeds {
    /// The mirror task's end of the queue.
    mirror_rx: mpsc::Receiver<proxy::mirror::MirrorJob>,
    /// The memory the queued copies may hold, shared with the mirror task.
    capture_budget: proxy::mirror::CaptureBudget,
    /// The queue (and its recorder of recent requests) the replay task sends through.
    replay_queue: proxy::mirror::MirrorQueue,
    /// Answers served during a canary step, for the scorer.
    served_rx: mpsc::Receiver<proxy::canary::Served>,
}

/// Start the proxy threads on `listener`, with the mirror queue they offer copies to; a dying
/// proxy thread cancels `stops.fatal`, and `stops.proxy` stops them accepting. Spilling reads
/// `MIN_FREE_DISK` from `config` as reloaded.
fn start_proxy(
    cfg: &Config,
    listener: TcpListener,
    routes: watch::Receiver<Arc<proxy::Routes>>,
    stats: &Arc<proxy::ProxyStats>,
    stops: &Stops,
    open: Option<CancellationToken>,
    config: &watch::Sender<Arc<Config>>,
) -> Result<StartedProxy, RunError> {
    let (mirror_queue, mirror_rx) = proxy::mirror::MirrorQueue::new(
        cfg.mirror_queue,
        cfg.mirror_methods.clone(),
        cfg.mirror_max_body,
        cfg.diff.max_body,
        cfg.diff.sample,
    );
    let mirror_queue = mirror_queue.keeping(cfg.diff.replay.keep);
    mirror_queue.recorder().set_on(cfg.diff.replay.on);
    let capture_budget = mirror_queue.budget();
    let replay_queue = mirror_queue.clone();
    let listener = listener.into_std().map_err(RunError::Listener)?;
    // Only with canary steps configured do the proxy threads count served answers at all.
    let (served_tx, served_rx) = mpsc::channel(proxy::canary::SERVED_QUEUE);
    let settings = proxy::ProxySettings {
        served: (!cfg.canary.steps.is_empty()).then_some(served_tx),
        open,
        min_free_disk: proxy::MinFreeDisk::Live(config.subscribe()),
        ..proxy_settings(cfg)
    };
    let proxy = proxy::start(
        listener,
        settings,
        routes,
        mirror_queue,
        stats.clone(),
        stops.proxy.clone(),
        stops.fatal.clone(),
    )?;
    Ok(StartedProxy {
        proxy,
        feeds: ProxyFeeds {
            mirror_rx,
            capture_budget,
            replay_queue,
            served_rx,
        },
    })
}

/// What the systemd notifier watches: the supervisor's status and its pulse, which may be
/// `STALE_BEATS` heartbeats (of the configuration in force, reloads included) old before the
/// supervisor counts as hung.
fn watched(
    config: watch::Receiver<Arc<Config>>,
    supervisor: &supervisor::SupervisorHandle,
    pulse: watch::Receiver<tokio::time::Instant>,
) -> systemd::Watched {
    systemd::Watched {
        status: supervisor.watch(),
        pulse,
        stale_after: Box::new(move || config.borrow().heartbeat_every.saturating_mul(STALE_BEATS)),
    }
}

/// Under systemd, a task that notifies it of readiness, status and the supervisor's pulse (its
/// watchdog) until `stop`; nothing otherwise.
fn spawn_notifier(
    tasks: &mut Tasks,
    notifier: &systemd::Notifier,
    watched: systemd::Watched,
    stop: &CancellationToken,
) {
    if notifier.is_on() {
        tasks.spawn(
            "systemd",
            systemd::run(notifier.clone(), watched, stop.clone()),
        );
    }
}

/// The admin API's state: the supervisor's handle, the metrics and the proxy's address in
/// `parts`, the rest shared with the other tasks.
fn admin_state(
    cfg: &Config,
    parts: (
        supervisor::SupervisorHandle,
        metrics::Metrics,
        std::net::SocketAddr,
    ),
    stats: &Arc<proxy::ProxyStats>,
    events: &Events,
    stops: &Stops,
    handing: &Handing,
) -> admin::AdminState {
    let (handle, metrics, listen) = parts;
    admin::AdminState {
        handle,
        stats: stats.clone(),
        history: layout::Layout::new(&cfg.base, &cfg.identifier).history_file(),
        events: events.clone(),
        stop: stops.control.clone(),
        metrics,
        listen,
        started: supervisor::control::rfc3339(std::time::SystemTime::now()),
        handed: handing.handed.clone(),
        serving: handing.serving.clone(),
    }
}

/// One delivery record per webhook URL, written by its task and read by `/metrics`.
fn webhook_stats(cfg: &Config) -> Arc<[Arc<webhooks::WebhookStats>]> {
    cfg.webhook_urls
        .iter()
        .enumerate()
        .map(|(i, u)| Arc::new(webhooks::WebhookStats::new(i + 1, u)))
        .collect()
}

/// One task per webhook URL, posting the events (one receiver each, subscribed by the caller
/// before any event) to it until `stop`.
fn spawn_webhooks(
    tasks: &mut Tasks,
    cfg: &Config,
    stats: &[Arc<webhooks::WebhookStats>],
    events: &Events,
    stop: &CancellationToken,
) {
    let delivery = Arc::new(webhooks::Delivery::of(cfg));
    for (url, stats) in cfg.webhook_urls.iter().zip(stats.iter()) {
        let rx = events.subscribe();
        tasks.spawn(
            "webhook",
            webhooks::run(
                url.clone(),
                delivery.clone(),
                rx,
                stats.clone(),
                stop.clone(),
            ),
        );
    }
}

fn proxy_settings(cfg: &Config) -> proxy::ProxySettings {
    proxy::ProxySettings {
        canary_sticky: cfg.canary.sticky.clone(),
        served: None,
        open: None,
        threads: cfg
            .worker_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        pin: cfg.cpu_affinity,
        no_running_hint: format!(
            "understudy: no running instance yet: drop a build named {}-<version>[.jar|.zip] into {}\n",
            cfg.identifier,
            cfg.base.display()
        ),
        drain_grace: cfg.shutdown_grace,
        header_timeout: cfg.header_timeout,
        body_timeout: cfg.body_timeout,
        limits: proxy::Limits {
            header_bytes: cfg.limits.header_bytes,
            headers: cfg.limits.headers,
            body: cfg.limits.request_body,
        },
        max_connections: max_connections(cfg),
        upstream_timeout: cfg.upstream_timeout,
        send_timeout: cfg.send_timeout,
        answer_buffer: usize::try_from(cfg.answer_buffer).unwrap_or(usize::MAX),
        request_buffer: usize::try_from(cfg.request_buffer).unwrap_or(usize::MAX),
        answer_memory: usize::try_from(cfg.answer_memory).unwrap_or(usize::MAX),
        spill_dir: cfg.base.join(".understudy"),
        answer_spill: cfg.answer_spill,
        min_free_disk: proxy::MinFreeDisk::Fixed(cfg.min_free_disk),
    }
}

/// Open files understudy keeps for itself beyond its users and the mirror: state, logs, the
/// admin API, the watcher, pipes to the children.
const FD_RESERVE: u64 = 128;

/// `MAX_CONNECTIONS`, lowered to what the open-files limit can hold: each user connection may
/// need a second descriptor to running, the mirror holds up to two per copy in flight (testing
/// and the secondary), and the admin API up to `MAX_ADMIN_CONNECTIONS`; running out of
/// descriptors must never stop the proxy accepting.
fn max_connections(cfg: &Config) -> usize {
    use nix::sys::resource::{getrlimit, Resource};
    let configured = cfg.limits.connections;
    let Ok((soft, _)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return configured;
    };
    let others = 2 * cfg.mirror_concurrency as u64 + cfg.admin_connections as u64;
    let (max, lowered) = connections_room(configured, cfg.max_connections_set, soft, others);
    match lowered {
        Some((tracing::Level::WARN, text)) => tracing::warn!("{text}"),
        Some((_, text)) => tracing::info!("{text}"),
        None => {}
    }
    max
}

/// The user connections the open-files limit `soft` leaves room for, beside `others` descriptors
/// (the mirror's, the admin API's), and, when that is under `configured`, what to say: a warning
/// when the user set MAX_CONNECTIONS (`set`), information when it is only the default.
fn connections_room(
    configured: usize,
    set: bool,
    soft: u64,
    others: u64,
) -> (usize, Option<(tracing::Level, String)>) {
    let room = (soft.saturating_sub(FD_RESERVE.saturating_add(others)) / 2).max(16);
    let max = configured.min(usize::try_from(room).unwrap_or(usize::MAX));
    if max >= configured {
        return (max, None);
    }
    let (level, setting) = if set {
        (tracing::Level::WARN, "MAX_CONNECTIONS")
    } else {
        (tracing::Level::INFO, "the default MAX_CONNECTIONS")
    };
    let text = format!(
        "at most {max} user connections at once: the open-files limit is {soft} (raise it with \
         `ulimit -n` or LimitNOFILE= to allow {setting}={configured})"
    );
    (max, Some((level, text)))
}

/// What the control tasks (mirror, scorer, watcher, supervisor) are started with.
struct Control {
    cfg: Arc<Config>,
    config: watch::Receiver<Arc<Config>>,
    feeds: ProxyFeeds,
    routes: watch::Sender<Arc<proxy::Routes>>,
    stats: Arc<proxy::ProxyStats>,
    events: Events,
    live: supervisor::LiveGroups,
    commands: mpsc::Receiver<supervisor::CommandRequest>,
    status: watch::Sender<Arc<supervisor::Status>>,
    pulse: watch::Sender<tokio::time::Instant>,
    stop: CancellationToken,
    succession: upgrade::Succession,
}

impl Control {
    fn spawn(self, tasks: &mut Tasks) {
        let cfg = self.cfg;
        let (pairs_tx, pairs_rx) = mpsc::channel(PAIR_QUEUE);
        let (scorer_tx, scorer_rx) = mpsc::unbounded_channel();
        let (verdict_tx, verdict_rx) = mpsc::channel(VERDICT_QUEUE);
        let (dropped_tx, dropped_rx) = mpsc::channel(DROPPED_QUEUE);
        let (scorer_replay, replay_link) = score::replay_link();
        tasks.spawn(
            "replay",
            proxy::replay::run(
                self.feeds.replay_queue.recorder().clone(),
                self.feeds.replay_queue.clone(),
                self.stats.clone(),
                self.routes.subscribe(),
                replay_link,
                self.config.clone(),
                self.stop.clone(),
            ),
        );
        tasks.spawn(
            "mirror",
            proxy::mirror::run(
                self.feeds.mirror_rx,
                proxy::mirror::MirrorSettings {
                    concurrency: cfg.mirror_concurrency,
                    timeout: cfg.mirror_timeout,
                    config: self.config.clone(),
                    budget: self.feeds.capture_budget,
                },
                pairs_tx,
                self.stats.clone(),
                self.stop.clone(),
            ),
        );
        tasks.spawn(
            "scorer",
            score::run(
                cfg.score.clone(),
                user_requests(&self.stats),
                score::Feeds {
                    pairs: pairs_rx,
                    served: self.feeds.served_rx,
                },
                scorer_rx,
                verdict_tx,
                scorer_replay,
                self.stop.clone(),
            ),
        );
        // Shared: the supervisor checks a drop again right before it installs it.
        let writes = watcher::Writes::default();
        spawn_watcher(
            tasks,
            &cfg,
            (writes.clone(), self.succession.serving.clone()),
            dropped_tx,
            self.stop.clone(),
        );
        let wiring = supervisor::Wiring {
            routes: self.routes,
            dropped: dropped_rx,
            verdicts: verdict_rx,
            scorer: scorer_tx,
            events: self.events,
            commands: self.commands,
            status: self.status,
            pulse: self.pulse,
            traffic: self.stats.clone(),
            succession: self.succession,
            writes,
        };
        tasks.spawn(
            "supervisor",
            supervisor::run(self.config, wiring, self.live, self.stop),
        );
    }
}

/// The proxy's counters of user requests the scorer reads.
fn user_requests(stats: &proxy::ProxyStats) -> score::UserRequests {
    score::UserRequests {
        all: stats.requests.clone(),
        not_mirrorable: stats.not_mirrorable.clone(),
    }
}

/// The watcher of the base dir, which reports complete drops to the supervisor once this process
/// serves: an understudy still taking over leaves drops where they are, since the old one goes
/// on (and installs them) if the takeover fails; its first scan finds them once it serves.
fn spawn_watcher(
    tasks: &mut Tasks,
    cfg: &Config,
    (writes, serving): (watcher::Writes, CancellationToken),
    dropped: mpsc::Sender<watcher::Found>,
    stop: CancellationToken,
) {
    let watch = watcher::run(
        cfg.base.clone(),
        cfg.identifier.clone(),
        not_builds(cfg),
        cfg.settle_time,
        writes,
        dropped,
        stop.clone(),
    );
    tasks.spawn("watcher", async move {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = serving.cancelled() => watch.await,
        }
    });
}

/// Files in the base dir that are not builds, so the watcher does not warn about their names:
/// `.env`, the properties file, a webhook CA kept there.
fn not_builds(cfg: &Config) -> Vec<String> {
    let mut ignore = vec![".env".to_string()];
    ignore.extend(cfg.properties_file.clone());
    ignore.extend(
        cfg.webhook_ca
            .as_ref()
            .filter(|ca| ca.path.parent() == Some(cfg.base.as_path()))
            .and_then(|ca| ca.path.file_name())
            .map(|n| n.to_string_lossy().into_owned()),
    );
    ignore
}

/// Wait for the shutdown signal or a handover to a new understudy, or for the first task or
/// proxy thread to die; meanwhile apply
/// reloaded configurations.
async fn first_failure(
    [shutdown, handed]: [&CancellationToken; 2],
    fatal: &CancellationToken,
    tasks: &mut Tasks,
    mut reload: mpsc::Receiver<Config>,
    config: watch::Sender<Arc<Config>>,
) -> Option<Failure> {
    let failure = loop {
        tokio::select! {
            // In this order: after a handover the supervisor's task ends, and that is no failure.
            biased;
            _ = shutdown.cancelled() => break None,
            _ = handed.cancelled() => break None,
            _ = fatal.cancelled() => break Some(("proxy thread", "a proxy thread died".to_string())),
            Some((task, why)) = tasks.next_end() => {
                break Some((task, why.unwrap_or_else(|| "ended on its own".into())))
            }
            Some(new) = reload.recv() => apply_reload(&config, new),
        }
    };
    if let Some((task, message)) = &failure {
        tracing::error!("the {task} task failed ({message}); stopping everything");
    }
    failure
}

/// Publish a reloaded configuration (keys that need a restart keep their old values, see
/// [`config::merge`]) and say what it changed and when each change applies.
fn apply_reload(config: &watch::Sender<Arc<Config>>, new: Config) {
    let path = new.base.join(".env");
    for warning in config::unknown_key_warnings(&path, &new.unknown_keys) {
        tracing::warn!("{warning}");
    }
    let r = config::merge(&config.borrow(), new);
    if r.applied.is_empty() && r.new_instances.is_empty() && r.restart.is_empty() {
        tracing::info!("reloaded {}: nothing changed", path.display());
        return;
    }
    if !r.applied.is_empty() {
        tracing::info!("reloaded configuration: applied {}", r.applied.join(", "));
    }
    if !r.new_instances.is_empty() {
        tracing::info!("{}", config::new_instances_note(&r.new_instances));
        if r.new_instances.contains(&"HEARTBEAT_EVERY") {
            tracing::info!(
                "reloaded configuration: understudy's own heartbeat (.understudy/status.json, the systemd watchdog's limit) follows HEARTBEAT_EVERY at once"
            );
        }
    }
    if !r.restart.is_empty() {
        tracing::warn!("{}", config::restart_note(&r.restart));
    }
    if !r.applied.is_empty() || !r.new_instances.is_empty() {
        config.send_replace(Arc::new(r.config));
    }
}

/// The shutdown sequence; returns the first failure, if any.
async fn shut_down(
    cfg: &Config,
    stops: Stops,
    proxy: proxy::ProxyHandle,
    mut tasks: Tasks,
    live: supervisor::LiveGroups,
    mut failure: Option<Failure>,
) -> Result<(), RunError> {
    // 1. Stop accepting users and let the requests in flight finish.
    stops.proxy.cancel();
    let proxy_result = proxy.join().await;
    // 2. Stop the children and every control task.
    stops.control.cancel();
    while let Some((task, why)) = tasks.next_end().await {
        if let (Some(message), None) = (why, &failure) {
            failure = Some((task, message));
        }
    }
    // 3. A task that died may have left children: stop them the hard way.
    if !live.is_empty() {
        let grace = cfg.shutdown_grace;
        let _ = tokio::task::spawn_blocking(move || live.kill_all(grace)).await;
    }
    match failure {
        Some((task, message)) => Err(RunError::TaskFailed { task, message }),
        None => proxy_result.map_err(RunError::from),
    }
}

#[cfg(test)]
mod tests;
