//! One child process: started in its own process group, in its own numbered instance folder, with
//! its port injected, forked by its [watchdog](crate::watchdog) that kills the group if no
//! understudy holds its link any more; probed for readiness; stopped with SIGTERM to the group, then SIGKILL to the
//! group after the grace period; always reaped. Knows nothing of proxies, scores or port pools.
//!
//! Its parts: `spawn` prepares the instance folder and forks the child (on the [`Spawner`]
//! thread), `probe` decides readiness and heartbeats, `owner` is the task that owns a started
//! child until it and its process group are gone.

mod leader;
mod owner;
mod probe;
mod spawn;
#[cfg(test)]
mod test_support;

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use semver::Version;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::artifact::Installed;
use crate::layout::{Layout, Role};

pub use owner::tail;
use owner::Owner;
use probe::Probe;
pub use probe::ProbeSpec;
pub use spawn::{port_is_free, Spawner, SpawnerGone};

/// Identifies one started child across events, so late events of a replaced instance are ignored.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct InstanceId(pub u64);

/// How many answers a child has begun, for users or mirrored copies: counted by the proxy, read
/// by the heartbeat, so that a busy child whose health check times out is not taken for a hung one.
#[derive(Debug, Clone, Default)]
pub struct Answers(Arc<AtomicU64>);

impl Answers {
    /// One answer's first bytes came back.
    pub fn seen(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Answers begun so far.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What an instance reports to the supervisor.
#[derive(Debug, Clone)]
pub struct InstanceEvent {
    /// Which instance.
    pub id: InstanceId,
    /// What happened.
    pub kind: InstanceEventKind,
}

/// The things that happen to a child on its own; a requested stop is known when `stop()` returns.
#[derive(Debug, Clone)]
pub enum InstanceEventKind {
    /// It answers on its port (and `READY_PATH` answered 2xx).
    Ready,
    /// It did not become ready in time; it is still running until stopped.
    NotReady {
        /// What the last readiness attempt got.
        reason: String,
    },
    /// A heartbeat after readiness was answered.
    Heartbeat,
    /// `misses` heartbeats in a row went unanswered; the process may still be there.
    Unresponsive {
        /// How many in a row.
        misses: u32,
        /// What the last one got.
        reason: String,
    },
    /// It exited on its own (not asked to stop); what was left in its group was SIGKILLed.
    Exited {
        /// Its exit status, as the OS reports it.
        status: String,
        /// The end of its stderr, for the rejection reason.
        stderr_tail: String,
        /// The end of its stdout: quoted instead when stderr is empty (apps that log only to
        /// stdout, as many Java ones do, say why they died there).
        stdout_tail: String,
    },
}

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// Someone else is bound to the port chosen for the child.
    #[error(
        "port {port} is already bound by another process: choose another port for the instance"
    )]
    PortBusy {
        /// The port that was chosen.
        port: u16,
    },
    /// A file step in the instance folder failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// The step that failed.
        what: &'static str,
        /// The file or folder it failed on.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The command could not be executed.
    #[error("cannot start {} in {dir}: {source}", crate::private::quote(command))]
    Spawn {
        /// The command line, as run (quoted where shown: it may hold a secret).
        command: String,
        /// The instance folder it was run in.
        dir: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The installed program was changed or removed and could not be restored.
    #[error("{0}")]
    Build(#[from] crate::store::StoreError),
}

/// Everything needed to start one child; built by the supervisor's executor from `Config`.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// Event identity.
    pub id: InstanceId,
    /// The part it plays.
    pub role: Role,
    /// What to run.
    pub installed: Installed,
    /// The port the child must listen on; chosen by the supervisor.
    pub port: u16,
    /// Argv words, already shell-split, with `{artifact}`, `{port}` and `{dir}` placeholders.
    pub command: Vec<String>,
    /// Properties key holding the port (or `-D<key>=<port>` for a jar without properties).
    pub port_key: String,
    /// Properties file copied (same file name) into the instance folder with the port rewritten;
    /// a relative path is taken from the base dir. The source is never modified.
    pub properties: Option<PathBuf>,
    /// How readiness is decided.
    pub probe: ProbeSpec,
    /// Time between SIGTERM and SIGKILL when stopping.
    pub grace: Duration,
    /// Understudy's own program, started as the child's [watchdog](crate::watchdog) (its parent)
    /// so that a hard kill of understudy kills the child's whole group, and an upgrade of
    /// understudy keeps it. `None` forks the child directly: the library's unit tests run in an
    /// executable that is not understudy.
    pub watchdog: Option<PathBuf>,
}

/// A started child: the supervisor's handle to it. Stop it with [`Instance::stop`].
#[derive(Debug)]
pub struct Instance {
    /// Event identity.
    pub id: InstanceId,
    /// The part it was started for.
    pub role: Role,
    /// The version it runs.
    pub version: Version,
    /// Its instance folder number.
    pub number: u32,
    /// Its instance folder.
    pub dir: PathBuf,
    /// Its port.
    pub port: u16,
    /// The host it was started to be reached on (`UPSTREAM_HOST` then): a reload changes the
    /// host of instances started afterwards, never this one's.
    pub host: String,
    /// Its pid (and process group id).
    pub pid: u32,
    /// When it was started.
    pub started: Instant,
    /// Its answers, counted by the proxy's upstream for it (see [`Answers`]).
    pub answers: Answers,
    stop: CancellationToken,
    release: CancellationToken,
    task: tokio::task::JoinHandle<Option<Released>>,
}

/// A child another understudy started and handed over, still running under its watchdog.
#[derive(Debug)]
pub struct Adopted {
    /// Event identity in this understudy.
    pub id: InstanceId,
    /// The part it plays.
    pub role: Role,
    /// What the previous understudy said of it: version, folder, port, pid.
    pub child: crate::upgrade::Child,
    /// Understudy's end of the link to its watchdog.
    pub link: OwnedFd,
    /// How readiness and heartbeats are probed.
    pub probe: ProbeSpec,
    /// Time between SIGTERM and SIGKILL when stopping.
    pub grace: Duration,
    /// How far it got: a child taken back after a failed handover resumes as it was released.
    pub readiness: Readiness,
}

/// How far a child got towards serving, kept across a handover that failed so a child still
/// starting is not heartbeated as if ready, and keeps the end of its READY_TIMEOUT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Not known here (handed over ready, or by an older release): probed with a whole
    /// READY_TIMEOUT.
    Unknown,
    /// Still starting: probed for readiness until `until`, the end of its READY_TIMEOUT.
    Starting {
        /// When it is reported not ready if it has not answered.
        until: tokio::time::Instant,
    },
    /// Ready: heartbeated at once, and no second `Ready` reported.
    Ready,
    /// Reported not ready in time: neither probed nor heartbeated (the supervisor stops it).
    Unready,
}

/// A child let go for a handover: the link to its watchdog, and how far it had got.
#[derive(Debug)]
pub struct Released {
    /// Understudy's end of the link to its watchdog.
    pub link: OwnedFd,
    /// Its phase when released.
    pub readiness: Readiness,
}

/// What an owner task and a handle are made of, whoever forked the child.
struct Parts {
    id: InstanceId,
    role: Role,
    version: Version,
    number: u32,
    dir: PathBuf,
    port: u16,
    pid: u32,
    probe: ProbeSpec,
    grace: Duration,
    readiness: Readiness,
}

impl Instance {
    /// Blocking: create the next numbered instance folder, link the artifact, copy properties,
    /// spawn the child and its owner task, which reports on `events` until the child is reaped.
    /// Must run on the [`Spawner`] thread: `PR_SET_PDEATHSIG` fires when the forking thread ends.
    pub fn start(
        layout: &Layout,
        spec: LaunchSpec,
        events: mpsc::UnboundedSender<InstanceEvent>,
    ) -> Result<Instance, InstanceError> {
        if !port_is_free(spec.port) {
            return Err(InstanceError::PortBusy { port: spec.port });
        }
        let version = spec.installed.version.clone();
        let (number, dir) = layout.create_instance_dir(&version).map_err(io_err(
            "cannot create an instance folder in",
            &layout.version_dir(&version),
        ))?;
        let launched = spawn::launch(layout.base(), &spec, &dir, number)?;
        let parts = Parts {
            id: spec.id,
            role: spec.role,
            version,
            number,
            dir,
            port: spec.port,
            pid: launched.pid,
            probe: spec.probe,
            grace: spec.grace,
            readiness: Readiness::Unknown,
        };
        Ok(Instance::own(parts, launched.leader, events))
    }

    /// Own a child handed over by another understudy (or taken back from one): probed as
    /// `a.readiness` says, then watched, stopped and reported like any other.
    pub fn adopt(
        a: Adopted,
        events: mpsc::UnboundedSender<InstanceEvent>,
    ) -> Result<Instance, InstanceError> {
        let leader = leader::Leader::watched(a.link, None)
            .map_err(io_err("cannot watch the handed-over link of", &a.child.dir))?;
        let parts = Parts {
            id: a.id,
            role: a.role,
            version: a.child.version,
            number: a.child.number,
            dir: a.child.dir,
            port: a.child.port,
            pid: a.child.pid,
            probe: a.probe,
            grace: a.grace,
            readiness: a.readiness,
        };
        Ok(Instance::own(parts, leader, events))
    }

    /// The handle of a running child, whose owner task starts here.
    fn own(
        p: Parts,
        leader: leader::Leader,
        events: mpsc::UnboundedSender<InstanceEvent>,
    ) -> Instance {
        let (stop, release) = (CancellationToken::new(), CancellationToken::new());
        let answers = Answers::default();
        let owner = Owner {
            id: p.id,
            pid: p.pid,
            grace: p.grace,
            stderr_path: p.dir.join("stderr"),
            stop: stop.clone(),
            release: release.clone(),
            readiness: p.readiness,
            answers: answers.clone(),
            events,
        };
        let host = p.probe.host.clone();
        let task = tokio::spawn(owner.run(leader, Probe::new(p.probe, p.port)));
        Instance {
            id: p.id,
            role: p.role,
            version: p.version,
            number: p.number,
            dir: p.dir,
            port: p.port,
            host,
            pid: p.pid,
            started: Instant::now(),
            answers,
            stop,
            release,
            task,
        }
    }

    /// Let go of the child without stopping it: the link to its watchdog, which the next
    /// understudy adopts it by, and its phase. `None` if it is gone already or has no watchdog.
    pub async fn release(self) -> Option<Released> {
        self.release.cancel();
        self.task.await.ok().flatten()
    }

    /// SIGTERM to the whole process group, wait up to the grace for the whole group to be gone,
    /// SIGKILL the group, reap. Returns once the child and its watchdog are reaped.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> InstanceError {
    let path = path.to_path_buf();
    move |source| InstanceError::Io { what, path, source }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    use super::test_support::{free_port, Rig};
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_port_is_refused_and_a_bad_command_says_what_failed() {
        let rig = Rig::new();
        let p = free_port();
        let held = TcpListener::bind(("127.0.0.1", p)).unwrap();
        let e = rig.start(rig.spec(p, &["/bin/true"])).await.unwrap_err();
        assert!(
            matches!(e, InstanceError::PortBusy { port } if port == p),
            "{e}"
        );
        drop(held);
        // A child forked by a parallel test holds a copy of `held` until its exec.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !port_is_free(p) {
            assert!(
                Instant::now() < deadline,
                "port {p} not free 5 s after close"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let e = rig
            .start(rig.spec(p, &["/nonexistent/program", "{port}"]))
            .await
            .unwrap_err();
        assert!(matches!(e, InstanceError::Spawn { .. }), "{e}");
        assert!(e.to_string().contains("/nonexistent/program"), "{e}");
        let dir = rig.base.path().join("app-1.0.0");
        assert!(
            dir.join("1").is_dir(),
            "the failed spawn kept its folder, for its files"
        );
        assert!(
            !dir.join("2").exists(),
            "a busy port is refused before any folder"
        );
    }
}
