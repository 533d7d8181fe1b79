//! Carries out the supervisor's [`Action`]s and turns each completion into an [`Input`]. Slow
//! work never runs on the supervisor's task: installs, filing and collection run on blocking
//! threads, children are spawned on the long-lived spawner thread, symlinks and the state file
//! are written in order by one file task, and drains and stops run as tasks of their own.

mod done;
mod drops;
mod filings;
mod upgrade;

use super::live::LiveGroups;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::files::{write_files, FileJob};
use super::resume;
use super::{decide, Action, Input, Now, Routing, State};

use crate::artifact::{self, Installed, Kind};
use crate::config::Config;
use crate::events::Events;
use crate::history::SwitchWhy;
use crate::instance::{Instance, InstanceEvent, InstanceId, LaunchSpec, ProbeSpec, Spawner};
use crate::layout::{Layout, Role};
use crate::proxy::{Routes, Upstream};
use crate::score::{Scored, ScorerControl};
use crate::watcher::{Found, Writes};
use done::Done;

/// How often the proxy's counters are handed to the supervisor (the guard's samples).
const TRAFFIC_EVERY: Duration = Duration::from_secs(1);
/// Fault injection for the tests: `UNDERSTUDY_INJECT_PANIC=supervisor` makes the supervisor
/// panic once running is ready, to prove a dying task stops every child.
const INJECT_PANIC: &str = "UNDERSTUDY_INJECT_PANIC";
/// Fault injection for the tests: `UNDERSTUDY_INJECT_HANG=supervisor` makes the supervisor's loop
/// stop deciding (until shutdown) once running is ready, to prove a hung supervisor stops
/// petting systemd's watchdog; `=after-handover` makes it wait, once it handed over to a new
/// understudy, until the rest of this one has begun to stop (the order a loaded machine may give).
const INJECT_HANG: &str = "UNDERSTUDY_INJECT_HANG";

/// Everything the supervisor needs from the rest of understudy.
pub struct Wiring {
    /// Where the proxy reads routes.
    pub routes: watch::Sender<Arc<Routes>>,
    /// Complete builds, and names that are not builds, from the watcher.
    pub dropped: mpsc::Receiver<Found>,
    /// Verdicts from the scorer.
    pub verdicts: mpsc::Receiver<Scored>,
    /// Tells the scorer what to score.
    pub scorer: mpsc::UnboundedSender<ScorerControl>,
    /// Where decisions are announced.
    pub events: Events,
    /// Operators' commands (admin API, CLI).
    pub commands: mpsc::Receiver<super::CommandRequest>,
    /// Where the status is published after every decision.
    pub status: watch::Sender<Arc<super::Status>>,
    /// Beaten with the time at every presence heartbeat of the loop: a supervisor that stops
    /// beating is hung (systemd's watchdog is then no longer petted).
    pub pulse: watch::Sender<Instant>,
    /// The proxy's counters, sampled every second for the guard.
    pub traffic: Arc<crate::proxy::ProxyStats>,
    /// What an upgrade handed this understudy, and what it needs to hand on.
    pub succession: crate::upgrade::Succession,
    /// The writes under way in the base dir, as the watcher sees them: a drop is checked again
    /// right before it is installed.
    pub writes: Writes,
}

/// Run the supervisor until `cancel`: resume from the state file, decide on every input, carry
/// out every action; then stop every child and wait for all work to finish.
/// `config` carries reloaded configurations (SIGHUP): the supervisor uses the new values from
/// its next action on, and hands the scorer its new thresholds.
pub async fn run(
    mut config: watch::Receiver<Arc<Config>>,
    wiring: Wiring,
    live: LiveGroups,
    cancel: CancellationToken,
) {
    let cfg = config.borrow_and_update().clone();
    let (spawner, spawner_thread) = match Spawner::new(tokio::runtime::Handle::current()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot start the spawner thread: {e}; no build can be started");
            return;
        }
    };
    let parts = Parts {
        spawner,
        routes: wiring.routes,
        scorer: wiring.scorer,
        events: wiring.events,
        live,
        succession: wiring.succession,
        writes: wiring.writes,
    };
    let (mut dropped, mut verdicts, mut commands) =
        (wiring.dropped, wiring.verdicts, wiring.commands);
    let (status, pulse, traffic) = (wiring.status, wiring.pulse, wiring.traffic);
    let (mut presence, mut sample) = (every(cfg.heartbeat_every), every(TRAFFIC_EVERY));
    let layout = Layout::new(&cfg.base, &cfg.identifier);
    let (mut exec, mut done_rx, mut inst_rx, files) = Executor::new(cfg.clone(), layout, parts);
    let mut state = State::new(cfg.port_range, Instant::now());
    exec.resume(&mut state, &cfg).await;
    // The clocks status converts instants with, read again only if the wall clock is set.
    let mut clock = Now::read();
    publish_status(&status, &state, &mut clock);
    let serving = exec.succession.serving.clone();
    loop {
        // Taking over: no timer, verdict or traffic sample until this one serves (see `decide`).
        let (deadline, held) = (state.deadline(), state.taking_over);
        let input = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = serving.cancelled(), if held => Input::Serving,
            Some(d) = done_rx.recv() => exec.complete(d),
            Some(e) = inst_rx.recv() => Input::Instance(e),
            Some(s) = verdicts.recv(), if !held => Input::Scored(s),
            Some(f) = dropped.recv() => found(f),
            _ = tokio::time::sleep_until(deadline), if !held => Input::Tick,
            _ = sample.tick(), if !held => traffic_sample(&traffic),
            _ = presence.tick() => {
                exec.write_presence(&status);
                exec.rotate_logs();
                pulse.send_replace(Instant::now());
                continue;
            }
            Ok(()) = config.changed() => {
                let new = config.borrow_and_update().clone();
                match exec.reconfigure(new, &mut presence) {
                    Some(reloaded) => reloaded,
                    None => continue,
                }
            }
            Some(req) = commands.recv() => exec.command(req),
        };
        exec.perform_all(decide(&mut state, input, Now::read()));
        publish_status(&status, &state, &mut clock);
        if let Some(due) = exec.upgrade_due.take() {
            if exec.upgrade(due, &mut presence, &pulse).await {
                exec.after_handover(&cancel).await;
                break;
            }
        }
        if exec.hang {
            cancel.cancelled().await;
        }
    }
    exec.shutdown(done_rx, files).await;
    // Every clone of the spawner is gone once its tasks are joined; its thread ends with them.
    let _ = tokio::task::spawn_blocking(move || spawner_thread.join()).await;
}

/// A ticker that skips the ticks it missed.
/// What the watcher found, as the supervisor's input.
fn found(f: Found) -> Input {
    match f {
        Found::Build(d) => Input::Dropped(d),
        Found::Ignored { file, reason } => Input::Ignored { file, reason },
    }
}

fn every(period: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// The proxy's counters as the guard reads them: user requests, and 5xx answers from running
/// with the requests running never answered (502s).
fn traffic_sample(traffic: &crate::proxy::ProxyStats) -> Input {
    use std::sync::atomic::Ordering::Relaxed;
    let classes = traffic.running.classes();
    Input::Traffic {
        requests: traffic.requests.load(Relaxed),
        errors: classes[4] + classes[crate::proxy::NO_ANSWER],
    }
}

/// Publish the state's status if it changed, its instants (past and future) turned into wall-clock
/// time by `clock`, kept while the wall clock is not set so the same instant reads the same.
fn publish_status(status: &watch::Sender<Arc<super::Status>>, state: &State, clock: &mut Now) {
    *clock = Now::keep_anchor(*clock, Now::read());
    let new = state.status(|t| clock.wall_of(t));
    status.send_if_modified(|old| {
        let changed = **old != new;
        if changed {
            *old = Arc::new(new);
        }
        changed
    });
}

/// What `decide` is told of a reload from `old` to `new`: the thresholds, when the scorer's
/// changed (it gets them at the same moment), since the guard judges by the scorer's 5xx rule.
pub(super) fn reloaded(old: &Config, new: &Config) -> Option<Input> {
    (new.score != old.score).then(|| Input::Reloaded {
        max_5xx_delta: new.score.max_5xx_delta,
        confidence: new.score.confidence,
    })
}

/// Fault injection for the tests: with `UNDERSTUDY_INJECT_CRASH` set to `step`, understudy kills
/// itself (SIGKILL) there: `install-unsealed` once a build is in its version folder, before its
/// seal; `install-sealed` once sealed, before `decide` hears of it. `install-panic` panics
/// where `install-unsealed` kills, standing in for a bug in the blocking work.
fn crash_if_injected(step: &str) {
    if std::env::var(super::files::INJECT_CRASH).is_ok_and(|v| v == step) {
        if step.ends_with("-panic") {
            panic!("{}={step}", super::files::INJECT_CRASH);
        }
        tracing::error!("{}={step}: dying by SIGKILL", super::files::INJECT_CRASH);
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// The hands of the supervisor: owns the child handles and the upstreams, and the channels
/// that carry completions back.
struct Executor {
    cfg: Arc<Config>,
    layout: Layout,
    spawner: Spawner,
    instances: HashMap<InstanceId, Instance>,
    upstreams: HashMap<InstanceId, Arc<Upstream>>,
    routes: watch::Sender<Arc<Routes>>,
    scorer: mpsc::UnboundedSender<ScorerControl>,
    events: Events,
    inst_tx: mpsc::UnboundedSender<InstanceEvent>,
    done_tx: mpsc::UnboundedSender<Done>,
    files_tx: mpsc::UnboundedSender<FileJob>,
    live: LiveGroups,
    tasks: TaskTracker,
    /// Cancelled when shutdown begins: a hook still running is then killed, and a build waiting
    /// for room for its protected copy stops waiting; neither is waited for.
    stopping: CancellationToken,
    inject_panic: bool,
    /// `INJECT_HANG` is set.
    inject_hang: bool,
    /// The injected hang is due: the loop waits for shutdown.
    hang: bool,
    /// Operators waiting for an answer, by the id their command was decided under.
    replies: HashMap<u64, tokio::sync::oneshot::Sender<Result<String, super::CommandError>>>,
    last_reply: u64,
    /// What this understudy can hand on to a new one.
    succession: crate::upgrade::Succession,
    /// Children handed over by the previous understudy, by port, until a start adopts them.
    adoptable: HashMap<u16, (crate::upgrade::Child, std::os::fd::OwnedFd)>,
    /// An upgrade decided, carried out once the current actions are.
    upgrade_due: Option<upgrade::Due>,
    /// The instances adopted from the previous understudy.
    adopted_ids: std::collections::HashSet<InstanceId>,
    /// The writes under way in the base dir (shared with the watcher).
    writes: Writes,
    /// `MIN_FREE_DISK` as last reloaded, for a build waiting for room for its protected copy.
    min_free_disk: watch::Sender<u64>,
    /// Cancelled when an operator aborts the install under way (one at a time).
    install_abort: CancellationToken,
    /// A rotation of the instances' logs is under way (at most one at a time).
    rotating: Arc<std::sync::atomic::AtomicBool>,
}

/// What [`Executor::new`] is handed from [`run`]'s wiring.
struct Parts {
    spawner: Spawner,
    routes: watch::Sender<Arc<Routes>>,
    scorer: mpsc::UnboundedSender<ScorerControl>,
    events: Events,
    live: LiveGroups,
    succession: crate::upgrade::Succession,
    writes: Writes,
}

impl Executor {
    /// An executor, the receivers its completions and instance news come back on, and the file
    /// task (started here, writing under `layout`).
    fn new(
        cfg: Arc<Config>,
        layout: Layout,
        parts: Parts,
    ) -> (
        Executor,
        mpsc::UnboundedReceiver<Done>,
        mpsc::UnboundedReceiver<InstanceEvent>,
        JoinHandle<()>,
    ) {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (inst_tx, inst_rx) = mpsc::unbounded_channel();
        let (files_tx, files_rx) = mpsc::unbounded_channel();
        let disk_tx = done_tx.clone();
        let files = tokio::spawn(write_files(layout.clone(), files_rx, move |why| {
            let _ = disk_tx.send(Done::Disk(why));
        }));
        let mut succession = parts.succession;
        let taken = std::mem::take(&mut succession.taken);
        let adoptable = upgrade::adoptable(taken, &succession.serving, &done_tx);
        let min_free_disk = watch::Sender::new(cfg.min_free_disk);
        let exec = Executor {
            min_free_disk,
            cfg,
            layout,
            spawner: parts.spawner,
            instances: HashMap::new(),
            upstreams: HashMap::new(),
            routes: parts.routes,
            scorer: parts.scorer,
            events: parts.events,
            inst_tx,
            done_tx,
            files_tx,
            live: parts.live,
            tasks: TaskTracker::new(),
            stopping: CancellationToken::new(),
            inject_panic: std::env::var(INJECT_PANIC).is_ok_and(|v| v == "supervisor"),
            inject_hang: std::env::var(INJECT_HANG).is_ok_and(|v| v == "supervisor"),
            hang: false,
            replies: HashMap::new(),
            last_reply: 0,
            succession,
            adoptable,
            upgrade_due: None,
            adopted_ids: Default::default(),
            writes: parts.writes,
            install_abort: CancellationToken::new(),
            rotating: Default::default(),
        };
        (exec, done_rx, inst_rx, files)
    }

    /// An operator's command as an input, its reply kept until the decision answers it.
    fn command(&mut self, req: super::control::CommandRequest) -> Input {
        self.last_reply += 1;
        self.replies.insert(self.last_reply, req.reply);
        Input::Command {
            id: self.last_reply,
            command: req.command,
        }
    }

    /// Resume what ran before (the children an upgrade handed over included) and act on it.
    async fn resume(&mut self, state: &mut State, cfg: &Config) {
        let mut resumed = resume::resume(self.layout.clone(), cfg).await;
        resumed.handed = self.handed_ports();
        resumed.taking_over = !self.succession.serving.is_cancelled();
        self.perform_all(decide(state, Input::Resume(Box::new(resumed)), Now::read()));
    }

    fn perform_all(&mut self, actions: Vec<Action>) {
        for a in actions {
            self.perform(a);
        }
    }

    fn perform(&mut self, action: Action) {
        match action {
            Action::Install(d) => self.install(d),
            Action::AbortInstall => self.install_abort.cancel(),
            Action::Refuse { dropped, reason } => self.refuse(dropped, reason),
            Action::Start {
                id,
                role,
                installed,
                port,
            } => self.start(id, role, installed, port),
            Action::Route(r) => self.route(r),
            Action::Point { role, dir } => {
                let _ = self.files_tx.send(FileJob::Point(role, dir));
            }
            Action::Unpoint(role) => {
                let _ = self.files_tx.send(FileJob::Unpoint(role));
            }
            Action::Persist(p) => {
                let _ = self.files_tx.send(FileJob::Persist(p));
            }
            Action::Retire { id, drain } => self.retire(id, drain),
            filing @ (Action::Archive(_) | Action::Reject { .. }) => self.file(filing),
            Action::Collect => self.collect(),
            Action::Score(c) => {
                let _ = self.scorer.send(c);
            }
            Action::Reply { id, result } => {
                if let Some(reply) = self.replies.remove(&id) {
                    let _ = self.files_tx.send(FileJob::Reply((reply, result)));
                }
            }
            Action::Record { from, to, why } => self.record(from, to, why, None),
            Action::RecordShare { running, share } => self.record(
                Some(running.clone()),
                running,
                SwitchWhy::Canary,
                Some(share),
            ),
            Action::Restore(version) => self.restore(version),
            Action::RunHook {
                hook,
                id,
                version,
                previous,
                dir,
                port,
            } => self.run_hook(hook, id, version, previous, dir, port),
            Action::Upgrade {
                reply,
                binary,
                children,
            } => {
                self.upgrade_due = Some(upgrade::Due {
                    reply,
                    binary,
                    children,
                })
            }
            Action::Emit(e) => {
                let ready = matches!(
                    e,
                    crate::events::Event::Ready {
                        role: Role::Running,
                        ..
                    }
                );
                self.events.emit(e);
                if ready && self.inject_panic {
                    panic!("injected panic ({INJECT_PANIC}=supervisor)");
                }
                self.hang |= ready && self.inject_hang;
            }
        }
    }

    /// Append a switch of the version serving users (or a canary step's share) to the history,
    /// in order with the files.
    fn record(
        &self,
        from: Option<semver::Version>,
        to: semver::Version,
        why: SwitchWhy,
        share: Option<crate::history::Share>,
    ) {
        let switch = crate::history::Switch {
            at: super::control::rfc3339(std::time::SystemTime::now()),
            from,
            to,
            why,
            share,
        };
        let file = self.layout.history_file();
        match &switch.share {
            None => tracing::info!(
                "{} serves users from now on ({}), recorded in {}",
                switch.to,
                switch.why,
                file.display()
            ),
            Some(s) => tracing::info!(
                "{} serves {} % of users from now on, {} the rest, recorded in {}",
                s.version,
                s.percent,
                switch.to,
                file.display()
            ),
        }
        let _ = self.files_tx.send(FileJob::Record(switch));
    }

    /// Rewrite `.understudy/status.json` from the loop itself: if the supervisor is stuck, the
    /// file goes stale, which is what a monitor watches for.
    fn write_presence(&self, status: &watch::Sender<Arc<super::Status>>) {
        let now = std::time::SystemTime::now();
        let body = serde_json::json!({
            "written_at": super::control::rfc3339(now),
            "written_unix_ms": now.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
            "pid": std::process::id(),
            "heartbeat_every_ms": self.cfg.heartbeat_every.as_millis() as u64,
            "status": &**status.borrow(),
        });
        let _ = self.files_tx.send(FileJob::Status(
            serde_json::to_vec_pretty(&body).unwrap_or_default(),
        ));
    }

    /// Run a hook as a task of its own and report how it went.
    fn run_hook(
        &self,
        hook: crate::hooks::Hook,
        id: Option<InstanceId>,
        version: semver::Version,
        previous: Option<semver::Version>,
        dir: Option<PathBuf>,
        port: Option<u16>,
    ) {
        use crate::hooks::Hook;
        let h = &self.cfg.hooks;
        let argv = match hook {
            Hook::PreStart => h.pre_start.clone(),
            Hook::PrePromote => h.pre_promote.clone(),
            Hook::PostPromote => h.post_promote.clone(),
            Hook::PostRollback => h.post_rollback.clone(),
        }
        .unwrap_or_default();
        let env = crate::hooks::HookEnv {
            dir: dir.unwrap_or_else(|| self.layout.version_dir(&version)),
            version: version.clone(),
            previous,
            port,
        };
        let (base, timeout, log_max, done, stop) = (
            self.layout.base().to_path_buf(),
            self.cfg.hook_timeout,
            self.cfg.hook_log_max,
            self.done_tx.clone(),
            self.stopping.clone(),
        );
        tracing::info!("running {hook} for {version}: {}", argv.join(" "));
        self.tasks.spawn(async move {
            let result = crate::hooks::run(hook, &argv, &base, &env, timeout, log_max, &stop)
                .await
                .map_err(|e| e.to_string());
            let _ = done.send(Done::Hook {
                hook,
                id,
                version,
                result,
            });
        });
    }

    fn start(&mut self, id: InstanceId, role: Role, installed: Installed, port: u16) {
        if self.adopt(id, role, &installed, port) {
            return;
        }
        let cfg = &self.cfg;
        let command = match installed.kind {
            Kind::Jar => cfg.jar_command.clone(),
            _ => cfg.exec_command.clone(),
        };
        let spec = LaunchSpec {
            id,
            role,
            installed,
            port,
            command,
            port_key: cfg.port_key.clone(),
            properties: cfg.properties_file.as_ref().map(|p| cfg.base.join(p)),
            probe: self.probe_spec(),
            grace: cfg.shutdown_grace,
            watchdog: cfg.watchdog.clone(),
        };
        let (spawner, layout, events, done) = (
            self.spawner.clone(),
            self.layout.clone(),
            self.inst_tx.clone(),
            self.done_tx.clone(),
        );
        let limits = artifact::InstallLimits {
            max_unpacked: self.cfg.max_unpacked_size,
            min_free_disk: self.cfg.min_free_disk,
        };
        self.tasks.spawn(async move {
            let result = spawner
                .run(move || {
                    // Only the bytes that were installed and scored are ever started.
                    if let Some(repaired) = crate::store::ensure(&layout, &spec.installed, limits)?
                    {
                        tracing::warn!("{repaired}");
                    }
                    Instance::start(&layout, spec, events)
                })
                .await;
            let result = match result {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("cannot start instance {id:?}: {e}");
                    return;
                }
            };
            let _ = done.send(Done::Started { id, result });
        });
    }

    /// How instances are probed for readiness and heartbeats.
    fn probe_spec(&self) -> ProbeSpec {
        let cfg = &self.cfg;
        ProbeSpec {
            host: cfg.upstream_host.clone(),
            path: cfg.ready_path.clone(),
            timeout: cfg.ready_timeout,
            health_path: cfg.health_path.clone(),
            heartbeat_every: cfg.heartbeat_every,
            heartbeat_misses: cfg.heartbeat_misses,
        }
    }

    fn route(&mut self, r: Routing) {
        let mut upstream = |t: &Option<super::Target>| -> Option<Arc<Upstream>> {
            let t = t.as_ref()?;
            if let Some(u) = self.upstreams.get(&t.id) {
                return Some(u.clone());
            }
            // Reached on the host it was started (and probed) on, whatever a reload says since.
            let host = self
                .instances
                .get(&t.id)
                .map_or(&self.cfg.upstream_host, |i| &i.host);
            match Upstream::new(t.id, t.version.clone(), host, t.port) {
                Ok(u) => {
                    let answers = self.instances.get(&t.id).map(|i| i.answers.clone());
                    let u = Arc::new(match answers {
                        Some(a) => u.with_answers(a),
                        None => u,
                    });
                    self.upstreams.insert(t.id, u.clone());
                    Some(u)
                }
                Err(e) => {
                    tracing::error!("cannot route to {} on port {}: {e}", t.version, t.port);
                    None
                }
            }
        };
        let routes = Routes {
            running: upstream(&r.running),
            testing: upstream(&r.testing),
            secondary: upstream(&r.secondary),
            restarting: r.restarting,
            restart_at: r.restart_at,
            hold: r.hold,
            canary: r.canary,
        };
        self.routes.send_replace(Arc::new(routes));
    }

    fn retire(&mut self, id: InstanceId, drain: bool) {
        let instance = self.instances.remove(&id);
        if let Some(up) = self.upstreams.get(&id) {
            up.retire();
        }
        let upstream = self.upstreams.get(&id).cloned().filter(|_| drain);
        let grace = self.cfg.shutdown_grace;
        let done = self.done_tx.clone();
        // Still taking over: an adopted child this one gives up on is the old one's to keep,
        // and the takeover has failed.
        let give_back = self.adopted_ids.contains(&id) && !self.succession.serving.is_cancelled();
        if let (true, Some(i)) = (give_back, &instance) {
            let why = format!(
                "{} {} (pid {}), handed over, did not serve here; see this understudy's log",
                i.role, i.version, i.pid
            );
            let _ = self.succession.given_up.set(why);
            self.succession.giving_up.cancel();
            // Its group is the old one's again: never this process's to kill on the way out.
            self.live.remove(id);
        }
        self.tasks.spawn(async move {
            if let Some(up) = upstream {
                let left = up.drain(grace).await;
                if left > 0 {
                    tracing::warn!(
                        "{left} requests still in flight on {} after {grace:?}; stopping it anyway",
                        up.version
                    );
                }
            }
            match instance {
                Some(i) if give_back => drop(i.release().await),
                Some(i) => i.stop().await,
                None => {}
            }
            let _ = done.send(Done::Stopped { id });
        });
    }

    /// Use a reloaded configuration from now on; the scorer gets new thresholds if they changed,
    /// and so does `decide` (the guard's 5xx rule is the scorer's): the input returned. Keys
    /// that need a restart (the hooks among them) already hold their old values
    /// ([`crate::config::merge`]). A new `HEARTBEAT_EVERY` paces the `presence` tick at once.
    fn reconfigure(
        &mut self,
        new: Arc<Config>,
        presence: &mut tokio::time::Interval,
    ) -> Option<Input> {
        if new.heartbeat_every != self.cfg.heartbeat_every {
            // Understudy's own heartbeat follows a reload at once (a first beat now).
            *presence = every(new.heartbeat_every);
        }
        self.min_free_disk.send_replace(new.min_free_disk);
        let reloaded = reloaded(&self.cfg, &new);
        if reloaded.is_some() {
            let _ = self.scorer.send(ScorerControl::Config(new.score.clone()));
        }
        self.cfg = new;
        reloaded
    }

    /// Stop every child at once, wait for all work (stopping children whose start was still
    /// under way), then let the file task write what is queued.
    async fn shutdown(mut self, mut done_rx: mpsc::UnboundedReceiver<Done>, files: JoinHandle<()>) {
        // Started by an upgrade that is not done: the old understudy takes its children back.
        let give_back = !self.succession.serving.is_cancelled();
        self.stopping.cancel();
        for (id, instance) in self.instances.drain() {
            let live = self.live.clone();
            let adopted = self.adopted_ids.contains(&id);
            self.tasks.spawn(async move {
                if give_back && adopted {
                    drop(instance.release().await);
                } else {
                    instance.stop().await;
                }
                live.remove(id);
            });
        }
        self.tasks.close();
        let stop_late = |d: Done, tasks: &TaskTracker, live: &LiveGroups| {
            match d {
            Done::Started {
                id,
                result: Ok(instance),
            } => {
                let live = live.clone();
                live.insert(id, instance.pid);
                tasks.spawn(async move {
                    instance.stop().await;
                    live.remove(id);
                });
            }
            // Not lost: the next start finds it in its version folder (resume's `recover`).
            Done::Installed {
                version,
                result: Ok(_),
            } => tracing::info!(
                "{version} was installed while understudy stopped: it takes its turn at the next start"
            ),
            _ => {}
        }
        };
        // A closed tracker still tracks tasks spawned later; `wait` ends once it is empty.
        loop {
            tokio::select! {
                Some(d) = done_rx.recv() => stop_late(d, &self.tasks, &self.live),
                _ = self.tasks.wait() => break,
            }
        }
        while let Ok(d) = done_rx.try_recv() {
            stop_late(d, &self.tasks, &self.live);
        }
        self.tasks.wait().await;
        drop(self.files_tx);
        let _ = files.await;
    }
}

#[cfg(test)]
mod tests;
