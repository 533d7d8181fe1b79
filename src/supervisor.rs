//! The supervisor: the one owner of what runs. It receives every input (a complete build, an
//! instance's readiness or exit, a verdict) on channels and decides in one `match`; slow work
//! (stopping, draining, archiving) runs in background tasks that report back as inputs.
//! Routes are published to the proxy on a `watch` channel; state is persisted after each change
//! so a restart resumes where it was.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use semver::Version;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::archive;
use crate::artifact::{self, Installed};
use crate::config::Config;
use crate::events::{Event, Events};
use crate::instance::{
    Instance, InstanceEvent, InstanceEventKind, InstanceId, PortPool, StartSpec,
};
use crate::layout::{write_atomic, Layout, Role};
use crate::proxy::{Routes, Upstream};
use crate::score::{Scored, ScorerControl, Verdict};
use crate::watcher::Dropped;

/// How often a draining instance's in-flight count is checked.
const DRAIN_POLL: Duration = Duration::from_millis(10);
/// How often archives are checked against the size and disk budgets between archivings.
const GC_EVERY: Duration = Duration::from_secs(60);
/// Consecutive failed restarts of a running version before understudy stops trying.
const MAX_RUNNING_RESTARTS: u32 = 5;

/// What survives a restart: which versions play which part.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersistedState {
    /// The version serving users.
    pub running: Option<String>,
    /// The version being scored.
    pub testing: Option<String>,
}

/// One instance in a part, with its installed build; `upstream` is set once it is ready.
struct Slot {
    instance: Instance,
    installed: Installed,
    upstream: Option<Arc<Upstream>>,
}

impl Slot {
    fn id(&self) -> InstanceId {
        self.instance.id
    }
    fn version(&self) -> &Version {
        &self.installed.version
    }
}

/// What happens to a version's folder once its instance is stopped.
enum AfterStop {
    /// Another part still uses the folder (or it may be used again): leave it.
    Keep,
    /// Nothing uses the version any more: zip it into the archive.
    Archive,
    /// Move it to `rejected/` with these reasons.
    Reject(Vec<String>),
}

/// Everything a supervisor needs from the rest of understudy.
pub struct Wiring {
    /// Where the proxy reads routes.
    pub routes: watch::Sender<Arc<Routes>>,
    /// Complete builds from the watcher.
    pub dropped: mpsc::Receiver<Dropped>,
    /// Verdicts from the scorer.
    pub verdicts: mpsc::Receiver<Scored>,
    /// Tells the scorer what to score.
    pub scorer: mpsc::UnboundedSender<ScorerControl>,
    /// Where decisions are announced.
    pub events: Events,
}

/// The state machine's owner. Its fields are the only record of what runs.
///
/// The parts are independent `Option`s rather than one phase enum because they overlap: running
/// may be restarting while testing is scored, and a build may be pending during a promotion. Each
/// input is decided in one `match` on (which part the instance plays, what happened).
pub struct Supervisor {
    cfg: Arc<Config>,
    layout: Layout,
    ports: PortPool,
    wiring: Wiring,
    inst_tx: mpsc::UnboundedSender<InstanceEvent>,
    inst_rx: mpsc::UnboundedReceiver<InstanceEvent>,
    next_id: u64,
    /// Serves users (routed once ready).
    running: Option<Slot>,
    /// Receives mirrored copies (routed once ready).
    testing: Option<Slot>,
    /// A fresh running instance of the promoted version, until it is ready and swapped in.
    next: Option<Slot>,
    /// A build that arrived while running was not ready; it becomes testing when it is.
    pending: Option<Installed>,
    /// Failed restarts of the running version since it was last ready.
    restarts: u32,
    background: TaskTracker,
    persisted: PersistedState,
}

impl Supervisor {
    /// A supervisor for `cfg`, talking to the rest through `wiring`.
    pub fn new(cfg: Arc<Config>, wiring: Wiring) -> Supervisor {
        let (inst_tx, inst_rx) = mpsc::unbounded_channel();
        Supervisor {
            layout: Layout::new(&cfg.base, &cfg.identifier),
            ports: PortPool::new(cfg.port_range),
            cfg,
            wiring,
            inst_tx,
            inst_rx,
            next_id: 0,
            running: None,
            testing: None,
            next: None,
            pending: None,
            restarts: 0,
            background: TaskTracker::new(),
            persisted: PersistedState::default(),
        }
    }

    /// Resume from the state file, then decide on every input until `cancel`; then stop every
    /// child and wait for background work. State on disk is kept so the next start resumes.
    pub async fn run(mut self, cancel: CancellationToken) {
        self.resume();
        let mut gc = tokio::time::interval(GC_EVERY);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = gc.tick() => { self.background.spawn(self.filing().collect()); }
                Some(d) = self.wiring.dropped.recv() => self.on_dropped(d).await,
                Some(e) = self.inst_rx.recv() => self.on_instance(e),
                Some(s) = self.wiring.verdicts.recv() => self.on_scored(s),
            }
            self.persist();
        }
        self.shutdown().await;
    }

    fn resume(&mut self) {
        let text = match std::fs::read_to_string(self.layout.state_file()) {
            Ok(t) => t,
            Err(_) => return,
        };
        let state: PersistedState = match serde_json::from_str(&text) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(
                    "ignoring unreadable {}: {e}",
                    self.layout.state_file().display()
                );
                return;
            }
        };
        self.persisted = state.clone();
        let find = |v: &Option<String>| {
            v.as_deref()
                .and_then(|v| Version::parse(v).ok())
                .and_then(|v| artifact::find_installed(&self.layout, &v))
        };
        let (running, testing) = (find(&state.running), find(&state.testing));
        if let Some(r) = running {
            tracing::info!("resuming: running {}", r.version);
            self.start_running(r);
        }
        if let Some(t) = testing {
            tracing::info!("resuming: testing {}", t.version);
            self.pending = Some(t);
            self.start_pending();
        }
    }

    fn persist(&mut self) {
        let now = PersistedState {
            running: self
                .next
                .as_ref()
                .or(self.running.as_ref())
                .map(|s| s.version().to_string()),
            testing: self
                .testing
                .as_ref()
                .map(|s| s.version().to_string())
                .or_else(|| self.pending.as_ref().map(|p| p.version.to_string())),
        };
        if now == self.persisted {
            return;
        }
        let _ = std::fs::create_dir_all(self.layout.state_dir());
        match serde_json::to_vec_pretty(&now)
            .map_err(std::io::Error::other)
            .and_then(|b| write_atomic(&self.layout.state_file(), &b))
        {
            Ok(()) => self.persisted = now,
            Err(e) => tracing::error!("cannot save {}: {e}", self.layout.state_file().display()),
        }
    }

    /// The newest version that is or is about to be running.
    fn running_version(&self) -> Option<&Version> {
        self.next
            .as_ref()
            .or(self.running.as_ref())
            .map(Slot::version)
    }

    async fn on_dropped(&mut self, d: Dropped) {
        let v = d.name.version.clone();
        self.wiring.events.emit(Event::BuildFound {
            file: d.name.file_name.clone(),
            version: v.to_string(),
        });
        let candidate = self
            .testing
            .as_ref()
            .map(Slot::version)
            .or(self.pending.as_ref().map(|p| &p.version));
        let refusal = refusal(&v, self.running_version(), candidate);
        if let Some(reason) = refusal {
            self.background.spawn(self.filing().refuse(d, reason));
            return;
        }
        let layout = self.layout.clone();
        let (path, name) = (d.path.clone(), d.name.clone());
        let installed =
            tokio::task::spawn_blocking(move || artifact::install(&layout, &path, &name)).await;
        let installed = match installed {
            Ok(Ok(i)) => i,
            Ok(Err(e)) => {
                let reason = format!("cannot install {}: {e}", d.path.display());
                self.filing()
                    .finish(v, AfterStop::Reject(vec![reason]))
                    .await;
                return;
            }
            Err(e) => {
                tracing::error!("install task failed: {e}");
                return;
            }
        };
        if self.running.is_none() && self.next.is_none() {
            self.start_running(installed);
            return;
        }
        if let Some(old) = self.pending.replace(installed) {
            // A newer build supersedes one that never started.
            self.archive_in_background(old.version);
        }
        self.start_pending();
    }

    /// Start the pending build as testing once running is ready and no promotion is under way.
    fn start_pending(&mut self) {
        let running_ready = self.running.as_ref().is_some_and(|r| r.upstream.is_some());
        if !running_ready || self.next.is_some() {
            return;
        }
        let Some(installed) = self.pending.take() else {
            return;
        };
        if let Some(old) = self.testing.take() {
            tracing::info!(
                "{} replaces {} as testing",
                installed.version,
                old.version()
            );
            self.clear_testing_route();
            let after = self.after_stop_for(old.version());
            self.retire(old, false, after);
        }
        match self.start(Role::Testing, installed.clone()) {
            Ok(slot) => self.testing = Some(slot),
            Err(e) => self.reject_in_background(installed.version, vec![e]),
        }
    }

    fn start_running(&mut self, installed: Installed) {
        match self.start(Role::Running, installed.clone()) {
            Ok(slot) => self.running = Some(slot),
            Err(e) => self.reject_in_background(installed.version, vec![e]),
        }
    }

    fn start(&mut self, role: Role, installed: Installed) -> Result<Slot, String> {
        self.next_id += 1;
        let id = InstanceId(self.next_id);
        let (number, dir) = self
            .layout
            .create_instance_dir(&installed.version)
            .map_err(|e| {
                format!(
                    "cannot create an instance folder for {}: {e}",
                    installed.version
                )
            })?;
        let spec = StartSpec {
            id,
            role,
            installed: installed.clone(),
            number,
            dir,
        };
        let instance = Instance::start(&self.cfg, &self.ports, spec, self.inst_tx.clone())
            .map_err(|e| e.to_string())?;
        self.wiring.events.emit(Event::Started {
            role: role.to_string(),
            version: installed.version.to_string(),
            number,
            port: instance.port,
        });
        Ok(Slot {
            instance,
            installed,
            upstream: None,
        })
    }

    fn on_instance(&mut self, e: InstanceEvent) {
        let id = e.id;
        let is = |s: &Option<Slot>| s.as_ref().is_some_and(|s| s.id() == id);
        let part = if is(&self.running) {
            Part::Running
        } else if is(&self.testing) {
            Part::Testing
        } else if is(&self.next) {
            Part::Next
        } else {
            return; // a retired instance: its stop is already handled
        };
        match (part, e.kind) {
            (_, InstanceEventKind::Stopped) => {}
            (Part::Running, InstanceEventKind::Ready) => {
                let mut slot = self.running.take().expect("matched above");
                self.serve(&mut slot, Role::Running);
                if self.testing.as_ref().is_some_and(|t| t.upstream.is_some()) {
                    // A restarted running: testing is still being scored against it.
                    let running_dir = slot.instance.dir.clone();
                    let _ = self
                        .wiring
                        .scorer
                        .send(ScorerControl::Running { running_dir });
                }
                self.running = Some(slot);
                self.restarts = 0;
                self.start_pending();
            }
            (Part::Testing, InstanceEventKind::Ready) => {
                let mut slot = self.testing.take().expect("matched above");
                self.serve(&mut slot, Role::Testing);
                let testing_dir = slot.instance.dir.clone();
                self.testing = Some(slot);
                let running_dir = self
                    .running
                    .as_ref()
                    .map(|r| r.instance.dir.clone())
                    .unwrap_or_default();
                let _ = self.wiring.scorer.send(ScorerControl::Watch {
                    testing: id,
                    testing_dir,
                    running_dir,
                });
            }
            (Part::Next, InstanceEventKind::Ready) => self.finish_promotion(),
            (Part::Testing, InstanceEventKind::NotReady { reason }) => {
                self.reject_testing(vec![format!("never became ready: {reason}")])
            }
            (
                Part::Testing,
                InstanceEventKind::Exited {
                    status,
                    stderr_tail,
                },
            ) => {
                self.emit_exit(Role::Testing, id, &status);
                self.reject_testing(vec![format!(
                    "testing exited ({status}); stderr ends with:\n{stderr_tail}"
                )]);
            }
            (Part::Next, InstanceEventKind::NotReady { reason }) => {
                self.abort_promotion(vec![format!(
                    "the new running instance never became ready: {reason}"
                )])
            }
            (
                Part::Next,
                InstanceEventKind::Exited {
                    status,
                    stderr_tail,
                },
            ) => self.abort_promotion(vec![format!(
                "the new running instance exited ({status}); stderr ends with:\n{stderr_tail}"
            )]),
            (Part::Running, InstanceEventKind::NotReady { reason }) => {
                self.running_failed(format!("never became ready: {reason}"))
            }
            (
                Part::Running,
                InstanceEventKind::Exited {
                    status,
                    stderr_tail,
                },
            ) => {
                self.emit_exit(Role::Running, id, &status);
                self.running_failed(format!(
                    "exited ({status}); stderr ends with:\n{stderr_tail}"
                ));
            }
        }
    }

    fn emit_exit(&self, role: Role, id: InstanceId, status: &str) {
        let slot = match role {
            Role::Running => &self.running,
            Role::Testing => &self.testing,
        };
        if let Some(s) = slot.as_ref().filter(|s| s.id() == id) {
            self.wiring.events.emit(Event::Exited {
                role: role.to_string(),
                version: s.version().to_string(),
                status: status.to_string(),
            });
        }
    }

    /// Put a ready instance into service: route to it first, then point its symlink and announce
    /// it, so whoever sees the symlink can rely on the route.
    fn serve(&self, slot: &mut Slot, role: Role) {
        let up = Arc::new(Upstream::new(
            slot.id(),
            slot.version().clone(),
            &self.cfg.upstream_host,
            slot.instance.port,
        ));
        slot.upstream = Some(up.clone());
        self.publish(|r| match role {
            Role::Running => r.running = Some(up),
            Role::Testing => r.testing = Some(up),
        });
        if let Err(e) = self.layout.point(role, &slot.instance.dir) {
            tracing::error!(
                "cannot point {} at {}: {e}",
                self.layout.link(role).display(),
                slot.instance.dir.display()
            );
        }
        self.wiring.events.emit(Event::Ready {
            role: role.to_string(),
            version: slot.version().to_string(),
            number: slot.instance.number,
            port: slot.instance.port,
        });
    }

    fn publish(&self, change: impl FnOnce(&mut Routes)) {
        self.wiring.routes.send_modify(|r| {
            let mut next = (**r).clone();
            change(&mut next);
            *r = Arc::new(next);
        });
    }

    fn clear_testing_route(&self) {
        self.publish(|r| r.testing = None);
        let _ = self.wiring.scorer.send(ScorerControl::Clear);
        if let Err(e) = self.layout.unpoint(Role::Testing) {
            tracing::warn!("cannot remove the testing link: {e}");
        }
    }

    fn running_failed(&mut self, why: String) {
        let slot = self.running.take().expect("called for the running slot");
        let was_serving = slot.upstream.is_some();
        self.publish(|r| r.running = None);
        let ever_ready = was_serving || self.restarts > 0;
        tracing::error!("running {} {why}", slot.version());
        let installed = slot.installed.clone();
        if !ever_ready {
            // A first build that never worked is turned away, like a failing testing build.
            let _ = self.layout.unpoint(Role::Running);
            self.retire(
                slot,
                false,
                AfterStop::Reject(vec![format!("running {why}")]),
            );
            if let Some(p) = self.pending.take() {
                self.start_running(p);
            }
            return;
        }
        self.retire(slot, false, AfterStop::Keep);
        self.restarts += 1;
        if self.restarts > MAX_RUNNING_RESTARTS {
            tracing::error!("running {} failed {} times in a row; not restarting it. Drop a new build to recover.", installed.version, self.restarts - 1);
            return;
        }
        tracing::info!(
            "restarting running {} (attempt {})",
            installed.version,
            self.restarts
        );
        self.start_running(installed);
    }

    fn on_scored(&mut self, s: Scored) {
        let Some(testing) = self
            .testing
            .as_ref()
            .filter(|t| t.id() == s.testing && t.upstream.is_some())
        else {
            return;
        };
        let ev = &s.evaluation;
        self.wiring.events.emit(Event::Scored {
            version: testing.version().to_string(),
            verdict: match &ev.verdict {
                Verdict::Wait(_) => "wait",
                Verdict::Promote => "promote",
                Verdict::Reject(_) => "reject",
            }
            .to_string(),
            score: ev.score,
            pairs: ev.pairs,
            summary: ev.summary(),
        });
        match &ev.verdict {
            Verdict::Wait(_) => {}
            Verdict::Reject(reasons) => self.reject_testing(reasons.clone()),
            Verdict::Promote => self.begin_promotion(),
        }
    }

    /// Promotion, step 1: stop testing and start a fresh running instance of its version.
    fn begin_promotion(&mut self) {
        if self.next.is_some() {
            return;
        }
        let Some(testing) = self.testing.take() else {
            return;
        };
        self.clear_testing_route();
        let installed = testing.installed.clone();
        tracing::info!(
            "promoting {}: starting a fresh running instance",
            installed.version
        );
        self.retire(testing, false, AfterStop::Keep);
        match self.start(Role::Running, installed.clone()) {
            Ok(slot) => self.next = Some(slot),
            Err(e) => {
                self.reject_in_background(installed.version, vec![format!("promotion failed: {e}")])
            }
        }
    }

    /// Promotion, step 2: the new instance is ready; swap routes atomically, drain and stop the old.
    fn finish_promotion(&mut self) {
        let mut next = self.next.take().expect("called for the next slot");
        self.serve(&mut next, Role::Running);
        let old = self.running.replace(next);
        let to = self
            .running
            .as_ref()
            .map(|s| s.version().to_string())
            .unwrap_or_default();
        self.wiring.events.emit(Event::Promoted {
            from: old.as_ref().map(|o| o.version().to_string()),
            to,
        });
        self.restarts = 0;
        if let Some(old) = old {
            let after = self.after_stop_for(old.version());
            self.retire(old, true, after);
        }
        self.start_pending();
    }

    fn abort_promotion(&mut self, reasons: Vec<String>) {
        let next = self.next.take().expect("called for the next slot");
        tracing::error!(
            "promotion of {} failed; {} keeps serving",
            next.version(),
            self.running
                .as_ref()
                .map(|r| r.version().to_string())
                .unwrap_or_default()
        );
        self.retire(next, false, AfterStop::Reject(reasons));
        self.start_pending();
    }

    fn reject_testing(&mut self, reasons: Vec<String>) {
        let Some(testing) = self.testing.take() else {
            return;
        };
        tracing::warn!("rejecting {}: {}", testing.version(), reasons.join("; "));
        self.clear_testing_route();
        self.retire(testing, false, AfterStop::Reject(reasons));
        self.start_pending();
    }

    /// Archive a version's folder after its stop only if no part still uses it.
    fn after_stop_for(&self, v: &Version) -> AfterStop {
        let used = [&self.running, &self.testing, &self.next]
            .iter()
            .any(|s| s.as_ref().is_some_and(|s| s.version() == v))
            || self.pending.as_ref().is_some_and(|p| p.version == *v);
        if used {
            AfterStop::Keep
        } else {
            AfterStop::Archive
        }
    }

    /// Stop an instance in the background (draining user requests first if `drain`), then
    /// archive or reject its version folder.
    fn retire(&self, slot: Slot, drain: bool, after: AfterStop) {
        let grace = self.cfg.shutdown_grace;
        let filing = self.filing();
        self.background.spawn(async move {
            if let (true, Some(up)) = (drain, slot.upstream.as_ref()) {
                let deadline = tokio::time::Instant::now() + grace;
                while up.inflight.load(Ordering::Acquire) > 0
                    && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(DRAIN_POLL).await;
                }
                let left = up.inflight.load(Ordering::Acquire);
                if left > 0 {
                    tracing::warn!(
                        "{} requests still in flight on {} after {grace:?}; stopping it anyway",
                        left,
                        up.version
                    );
                }
            }
            let (version, number) = (slot.version().clone(), slot.instance.number);
            slot.instance.stop().await;
            filing.events.emit(Event::Stopped {
                version: version.to_string(),
                number,
            });
            filing.finish(version, after).await;
        });
    }

    fn filing(&self) -> Filing {
        Filing {
            layout: self.layout.clone(),
            events: self.wiring.events.clone(),
            max_base_size: self.cfg.max_base_size,
            min_free_disk: self.cfg.min_free_disk,
        }
    }

    fn archive_in_background(&self, v: Version) {
        self.background
            .spawn(self.filing().finish(v, AfterStop::Archive));
    }

    fn reject_in_background(&self, v: Version, reasons: Vec<String>) {
        self.background
            .spawn(self.filing().finish(v, AfterStop::Reject(reasons)));
    }

    async fn shutdown(mut self) {
        let slots: Vec<Slot> = [self.running.take(), self.testing.take(), self.next.take()]
            .into_iter()
            .flatten()
            .collect();
        // Stop every child at once, then wait for each to be reaped.
        let stops: Vec<_> = slots
            .into_iter()
            .map(|s| tokio::spawn(s.instance.stop()))
            .collect();
        for stop in stops {
            let _ = stop.await;
        }
        self.background.close();
        self.background.wait().await;
    }
}

/// Why a build is not started: it must be newer than running and than the build being tested.
fn refusal(v: &Version, running: Option<&Version>, candidate: Option<&Version>) -> Option<String> {
    match (running, candidate) {
        (Some(r), _) if v <= r => Some(format!("{v} is not newer than running {r}")),
        (_, Some(t)) if v <= t => Some(format!("{v} is not newer than {t}, which is being tested")),
        _ => None,
    }
}

#[derive(Clone, Copy)]
enum Part {
    Running,
    Testing,
    Next,
}

/// Files version folders away off the supervisor's task (blocking work on blocking threads):
/// archive, reject, refuse, and keep the archives within their budgets.
#[derive(Clone)]
struct Filing {
    layout: Layout,
    events: Events,
    max_base_size: u64,
    min_free_disk: u64,
}

impl Filing {
    /// Archive or reject a version folder after its instance is stopped, then collect garbage.
    async fn finish(self, v: Version, after: AfterStop) {
        let layout = self.layout.clone();
        let (v2, after2) = (v.clone(), after);
        let res = tokio::task::spawn_blocking(move || match &after2 {
            AfterStop::Keep => Ok(None),
            AfterStop::Archive => archive::archive_version(&layout, &v2).map(|zip| {
                Some(Event::Archived {
                    version: v2.to_string(),
                    zip: zip.display().to_string(),
                })
            }),
            AfterStop::Reject(reasons) => {
                archive::reject_version(&layout, &v2, reasons).map(|_| {
                    Some(Event::Rejected {
                        version: v2.to_string(),
                        reasons: reasons.clone(),
                    })
                })
            }
        })
        .await;
        match res {
            Ok(Ok(None)) => return,
            Ok(Ok(Some(event))) => self.events.emit(event),
            Ok(Err(e)) => tracing::error!("cannot file away version {v}: {e}"),
            Err(e) => tracing::error!("filing task failed for {v}: {e}"),
        }
        self.collect().await;
    }

    /// Move a build that will not be started aside, with the reason.
    async fn refuse(self, d: Dropped, reason: String) {
        tracing::warn!("refusing {}: {reason}", d.path.display());
        let layout = self.layout.clone();
        let reasons = vec![reason];
        let (r2, v) = (reasons.clone(), d.name.version.clone());
        let res = tokio::task::spawn_blocking(move || {
            archive::refuse_file(&layout, &d.path, &d.name.file_name, &d.name.version, &r2)
        })
        .await;
        if let Ok(Err(e)) = res {
            tracing::error!("cannot move the refused build aside: {e}");
        }
        self.events.emit(Event::Rejected {
            version: v.to_string(),
            reasons,
        });
        self.collect().await;
    }

    /// Delete the oldest archives while over the size budget or short of disk.
    async fn collect(self) {
        let (layout, max, min_free) = (self.layout.clone(), self.max_base_size, self.min_free_disk);
        match tokio::task::spawn_blocking(move || archive::collect_garbage(&layout, max, min_free))
            .await
        {
            Ok(Ok(deleted)) => {
                for d in deleted {
                    self.events.emit(Event::ArchiveDeleted {
                        zip: d.zip.display().to_string(),
                        reason: d.reason,
                    });
                }
            }
            Ok(Err(e)) => tracing::error!("archive cleanup failed: {e}"),
            Err(e) => tracing::error!("archive cleanup task failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn only_newer_builds_are_started() {
        assert_eq!(
            refusal(&v("1.0.0"), None, None),
            None,
            "the first build runs"
        );
        assert!(refusal(&v("1.0.0"), Some(&v("1.0.0")), None)
            .unwrap()
            .contains("not newer than running 1.0.0"));
        assert!(
            refusal(&v("1.9.0"), Some(&v("1.10.0")), None).is_some(),
            "semver order, not text order"
        );
        assert_eq!(refusal(&v("1.10.0"), Some(&v("1.9.0")), None), None);
        assert!(refusal(&v("1.1.0"), Some(&v("1.0.0")), Some(&v("1.1.0")))
            .unwrap()
            .contains("being tested"));
        assert_eq!(
            refusal(&v("1.2.0"), Some(&v("1.0.0")), Some(&v("1.1.0"))),
            None,
            "a newer build replaces testing"
        );
    }
}
