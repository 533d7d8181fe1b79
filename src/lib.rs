//! understudy: a shadow-traffic canary supervisor. A new build of an HTTP service is started as
//! *testing* beside the *running* one, receives a copy of live traffic, is scored against running,
//! and is promoted with zero downtime or rejected with its reasons.
//!
//! # Layout
//! - [`config`]: `.env` + `UNDERSTUDY_*` + CLI, validated before anything binds.
//! - [`layout`]: every path in the base dir; atomic `running`/`testing` symlinks.
//! - [`artifact`]: build names (`<identifier>-<semver>`) and installing into version folders.
//! - [`watcher`]: notices complete builds (`cp` or `mv`) in the base dir.
//! - [`instance`]: one child process: port, process group, readiness, SIGTERM→SIGKILL, reaping.
//! - [`proxy`]: the users' reverse proxy; [`proxy::mirror`] copies requests to testing.
//! - [`score`]: pairs and log lines → verdict and score (pure [`score::evaluate`]).
//! - [`supervisor`]: the one owner of state; decides on every input.
//! - [`archive`]: zips retired versions, deletes old archives over budget.
//! - [`events`]: decisions, logged and broadcast.
//! - [`demo`]: the self-contained demo behind `understudy demo`.

pub mod archive;
pub mod artifact;
pub mod config;
pub mod demo;
pub mod events;
pub mod instance;
pub mod layout;
pub mod proxy;
pub mod score;
pub mod supervisor;
pub mod watcher;

/// The fixture app used by the tests and the demo (hidden subcommand `fixture-app`).
#[doc(hidden)]
#[path = "../fixtures/app.rs"]
pub mod fixture;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;
pub use events::{Event, Events};

/// Verdicts waiting for the supervisor; a stale one is skipped when full.
const VERDICT_QUEUE: usize = 16;
/// Capacity of the pair channel from the mirror to the scorer; pairs beyond it are dropped.
const PAIR_QUEUE: usize = 4096;

/// Run understudy on an already bound `listener` until `cancel`; then stop every child and join
/// every task before returning.
pub async fn run(cfg: Config, listener: TcpListener, events: Events, cancel: CancellationToken) {
    let cfg = Arc::new(cfg);
    let (routes_tx, routes_rx) = watch::channel(Arc::new(proxy::Routes::default()));
    let stats = Arc::new(proxy::ProxyStats::default());
    let (mirror_queue, mirror_rx) = proxy::mirror::MirrorQueue::new(
        cfg.mirror_queue,
        cfg.mirror_methods.clone(),
        cfg.mirror_max_body,
    );
    let (pairs_tx, pairs_rx) = mpsc::channel(PAIR_QUEUE);
    let (scorer_tx, scorer_rx) = mpsc::unbounded_channel();
    let (verdict_tx, verdict_rx) = mpsc::channel(VERDICT_QUEUE);
    let (dropped_tx, dropped_rx) = mpsc::channel(16);
    let hint = format!(
        "understudy: no running instance yet: drop a build named {}-<version>[.jar|.zip] into {}\n",
        cfg.identifier,
        cfg.base.display()
    );
    // The proxy runs thread-per-core, as nginx does: each thread has its own single-threaded
    // runtime, accepts on a clone of the listener, and keeps its connections and their upstream
    // connections to itself, so a request never wakes another thread.
    let threads = cfg
        .worker_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let listener = listener
        .into_std()
        .expect("a tokio listener converts back to std");
    let mut proxy_threads = Vec::with_capacity(threads);
    for i in 0..threads {
        let listener = listener
            .try_clone()
            .expect("cloning a listening socket only fails when out of descriptors");
        let proxy = proxy::Proxy::new(
            routes_rx.clone(),
            mirror_queue.clone(),
            stats.clone(),
            hint.clone(),
        );
        let cancel = cancel.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("understudy-proxy-{i}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a current-thread runtime builds");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener)
                        .expect("registering the listener with this thread's runtime");
                    proxy::serve(listener, Arc::new(proxy), cancel).await;
                });
            });
        match spawned {
            Ok(h) => proxy_threads.push(h),
            Err(e) => tracing::error!("cannot start proxy thread {i}: {e}"),
        }
    }
    drop(listener);

    let tasks = TaskTracker::new();
    tasks.spawn(async move {
        let _ = tokio::task::spawn_blocking(move || {
            proxy_threads.into_iter().for_each(|h| drop(h.join()))
        })
        .await;
    });
    tasks.spawn(proxy::mirror::run(
        mirror_rx,
        cfg.mirror_concurrency,
        cfg.mirror_timeout,
        pairs_tx,
        cancel.clone(),
    ));
    tasks.spawn(score::run(
        cfg.score.clone(),
        stats,
        pairs_rx,
        scorer_rx,
        verdict_tx,
        cancel.clone(),
    ));
    let mut ignore = vec![".env".to_string()];
    ignore.extend(cfg.properties_file.clone());
    tasks.spawn(watcher::run(
        cfg.base.clone(),
        cfg.identifier.clone(),
        ignore,
        cfg.settle_time,
        dropped_tx,
        cancel.clone(),
    ));
    let wiring = supervisor::Wiring {
        routes: routes_tx,
        dropped: dropped_rx,
        verdicts: verdict_rx,
        scorer: scorer_tx,
        events,
    };
    tasks.spawn(supervisor::Supervisor::new(cfg, wiring).run(cancel));
    tasks.close();
    tasks.wait().await;
}

/// Send understudy's own log to stderr, or to `LOG_DIR/understudy.log` when set.
pub fn init_logging(cfg: &Config) -> std::io::Result<()> {
    let builder = tracing_subscriber::fmt()
        .with_max_level(cfg.log_level)
        .with_target(false);
    match &cfg.log_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("understudy.log"))?;
            let _ = builder.with_writer(std::sync::Mutex::new(f)).try_init();
        }
        None => {
            let _ = builder.with_writer(std::io::stderr).try_init();
        }
    }
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())
        .expect("installing a SIGTERM handler only fails outside a runtime");
    let mut int = signal(SignalKind::interrupt())
        .expect("installing a SIGINT handler only fails outside a runtime");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
