//! One child process: started in its own process group, in its own numbered instance folder, with
//! its port injected, guarded by a [`Watchdog`] that kills the group if understudy dies; probed for
//! readiness; stopped with SIGTERM to the group, then SIGKILL to the group after the grace period;
//! always reaped. Knows nothing of proxies, scores or port pools.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use semver::Version;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::artifact::{Installed, Kind};
use crate::layout::{Layout, Role};
use crate::watchdog::Watchdog;

/// How often readiness is probed while an instance starts.
const READY_POLL: Duration = Duration::from_millis(50);
/// The longest one readiness attempt may take, so a hung attempt cannot eat the whole timeout.
const PROBE_ATTEMPT: Duration = Duration::from_secs(2);
/// How much of a ready path's body is read: enough to prove a whole answer, bounded for safety.
const PROBE_BODY_MAX: usize = 64 * 1024;
/// How often a stopping process group is checked for members left.
const GROUP_POLL: Duration = Duration::from_millis(20);
/// How long SIGKILLed group members may take to vanish before stop gives up waiting for them.
const KILL_WAIT: Duration = Duration::from_secs(1);
/// How much of stderr a rejection reason quotes.
const STDERR_TAIL: u64 = 4096;

/// Identifies one started child across events, so late events of a replaced instance are ignored.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct InstanceId(pub u64);

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
    #[error("cannot start {command:?} in {dir}: {source}")]
    Spawn {
        /// The command line, as run.
        command: String,
        /// The instance folder it was run in.
        dir: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The installed program was changed or removed and could not be restored.
    #[error("{0}")]
    Build(#[from] crate::store::StoreError),
    /// The child's watchdog could not be started; the child was killed, since a hard kill of
    /// understudy would have left its group running.
    #[error("cannot start the watchdog {program} for process group {pgid}: {source}")]
    Watchdog {
        /// The watchdog program (understudy's own executable).
        program: PathBuf,
        /// The child's process group.
        pgid: u32,
        /// The OS error.
        source: io::Error,
    },
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
    /// Understudy's own program, started as the child's [`Watchdog`] so that a hard kill of
    /// understudy kills the child's whole group, not only the child. `None` starts none: the
    /// library's unit tests run in an executable that is not understudy.
    pub watchdog: Option<PathBuf>,
}

/// How readiness is probed: the port accepts connections, and `path` (if any) answers 2xx.
#[derive(Debug, Clone)]
pub struct ProbeSpec {
    /// Where the child listens: IPv4, IPv6 without brackets, or a host name.
    pub host: String,
    /// Path that must answer 2xx; `None` means accepting a connection is enough.
    pub path: Option<String>,
    /// How long the child may take to become ready.
    pub timeout: Duration,
    /// Path a ready child must answer 2xx on each heartbeat; `None` means the port accepting.
    pub health_path: Option<String>,
    /// Time between heartbeats once ready; zero means none.
    pub heartbeat_every: Duration,
    /// Misses in a row reported as [`InstanceEventKind::Unresponsive`].
    pub heartbeat_misses: u32,
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
    /// Its pid (and process group id).
    pub pid: u32,
    /// When it was started.
    pub started: Instant,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
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
        link_artifact(&dir, &spec.installed.program)?;
        let with_properties = match &spec.properties {
            Some(src) => write_properties(layout.base(), src, &dir, &spec.port_key, spec.port)?,
            None => false,
        };
        let argv = build_argv(&spec, &dir, with_properties);
        let stdio = open_stdio(&dir)?;
        let stderr_path = stdio.stderr_path.clone();
        let child = spawn_child(&argv, &dir, &spec, stdio)?;
        let pid = child
            .id()
            .expect("a just-spawned, unreaped child has a pid");
        let watchdog = match &spec.watchdog {
            None => None,
            Some(program) => match Watchdog::spawn(program, pid, &dir) {
                Ok(w) => Some(w),
                Err(source) => {
                    // Unguarded, the group could outlive a hard kill of understudy: not started.
                    // Dropping `child` lets tokio reap the leader (`kill_on_drop`).
                    signal_group(Pid::from_raw(pid as i32), Signal::SIGKILL);
                    return Err(InstanceError::Watchdog {
                        program: program.clone(),
                        pgid: pid,
                        source,
                    });
                }
            },
        };
        let command_line = argv.join(" ");
        let watchdog_pid = watchdog.as_ref().map(Watchdog::pid);
        write_instance_json(&dir, &spec, number, pid, watchdog_pid, &command_line);
        tracing::info!(
            "started {} {version} #{number} (pid {pid}, port {}): {command_line}",
            spec.role,
            spec.port
        );

        let stop = CancellationToken::new();
        let owner = Owner {
            id: spec.id,
            pid,
            grace: spec.grace,
            stderr_path,
            stop: stop.clone(),
            events,
        };
        let probe = Probe::new(spec.probe, spec.port);
        let task = tokio::spawn(owner.run(child, watchdog, probe));
        Ok(Instance {
            id: spec.id,
            role: spec.role,
            version,
            number,
            dir,
            port: spec.port,
            pid,
            started: Instant::now(),
            stop,
            task,
        })
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

/// Link the program into the instance folder, as Vili keeps one, so the folder says what ran.
fn link_artifact(dir: &Path, program: &Path) -> Result<(), InstanceError> {
    let name = program
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("artifact"));
    let link = dir.join(name);
    let _ = std::fs::remove_file(&link);
    // Relative (`../app-1.2.0.jar`), so the base dir can be moved and archives stay readable.
    let target = dir
        .parent()
        .and_then(|vdir| program.strip_prefix(vdir).ok())
        .map(|rel| Path::new("..").join(rel))
        .unwrap_or_else(|| program.to_path_buf());
    std::os::unix::fs::symlink(&target, &link).map_err(io_err("cannot link artifact as", &link))
}

/// Copy the properties file into `dir` (same file name) with the port rewritten. Returns whether
/// it was written; an unreadable source is logged and the port is passed without it.
fn write_properties(
    base: &Path,
    src: &Path,
    dir: &Path,
    key: &str,
    port: u16,
) -> Result<bool, InstanceError> {
    let src = base.join(src); // an absolute `src` stays as it is
    let Some(name) = src.file_name() else {
        tracing::warn!(
            "properties file {} has no file name; passing the port without it",
            src.display()
        );
        return Ok(false);
    };
    let dst = dir.join(name);
    let text = match std::fs::read_to_string(&src) {
        Ok(text) => text,
        Err(e) => {
            tracing::warn!(
                "properties file {} not readable ({e}); passing the port without it",
                src.display()
            );
            return Ok(false);
        }
    };
    std::fs::write(&dst, rewrite_property(&text, key, port))
        .map_err(io_err("cannot write properties", &dst))?;
    Ok(true)
}

/// The command's words with placeholders replaced; a `java` jar start without a properties file
/// gets `-D<key>=<port>`, as Vili does.
fn build_argv(spec: &LaunchSpec, dir: &Path, with_properties: bool) -> Vec<String> {
    let program = spec.installed.program.to_string_lossy();
    let port = spec.port.to_string();
    let dir = dir.to_string_lossy();
    let mut argv: Vec<String> = spec
        .command
        .iter()
        .map(|w| {
            w.replace("{artifact}", &program)
                .replace("{port}", &port)
                .replace("{dir}", &dir)
        })
        .collect();
    if spec.installed.kind == Kind::Jar
        && !with_properties
        && argv.first().is_some_and(|p| Path::new(p).ends_with("java"))
    {
        argv.insert(1, format!("-D{}={}", spec.port_key, spec.port));
    }
    argv
}

/// The child's stdout and stderr files in its instance folder.
struct ChildStdio {
    stdout: std::fs::File,
    stderr: std::fs::File,
    stderr_path: PathBuf,
}

fn open_stdio(dir: &Path) -> Result<ChildStdio, InstanceError> {
    let stdout_path = dir.join("stdout");
    let stderr_path = dir.join("stderr");
    Ok(ChildStdio {
        stdout: std::fs::File::create(&stdout_path)
            .map_err(io_err("cannot create", &stdout_path))?,
        stderr: std::fs::File::create(&stderr_path)
            .map_err(io_err("cannot create", &stderr_path))?,
        stderr_path,
    })
}

/// Spawn the child as the leader of its own process group, killed by the kernel if the spawning
/// thread (the [`Spawner`]) or understudy dies.
fn spawn_child(
    argv: &[String],
    dir: &Path,
    spec: &LaunchSpec,
    stdio: ChildStdio,
) -> Result<tokio::process::Child, InstanceError> {
    let spawn_err = |source| InstanceError::Spawn {
        command: argv.join(" "),
        dir: dir.to_path_buf(),
        source,
    };
    let Some((program, args)) = argv.split_first() else {
        return Err(spawn_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the start command is empty: set JAR_COMMAND or EXEC_COMMAND",
        )));
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .env("PORT", spec.port.to_string())
        .env("UNDERSTUDY_ROLE", spec.role.as_str())
        .env("UNDERSTUDY_VERSION", spec.installed.version.to_string())
        .stdin(Stdio::null())
        .stdout(stdio.stdout)
        .stderr(stdio.stderr)
        .process_group(0)
        .kill_on_drop(true);
    let parent = nix::unistd::getpid();
    // SAFETY: `pre_exec` runs in the forked child before exec, where only async-signal-safe work
    // is allowed. The closure only makes two raw syscalls through nix (prctl, getppid), compares
    // integers and builds an `io::Error` from an errno code, which does not allocate; it takes no
    // locks and touches no state shared with other threads of the parent.
    unsafe {
        cmd.pre_exec(move || {
            // If the spawning thread or understudy dies, even by SIGKILL, the kernel kills the child.
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // Understudy died between fork and prctl: the signal will never come, so do not run.
            if nix::unistd::getppid() != parent {
                return Err(Errno::ESRCH.into());
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(spawn_err)
}

/// Record what runs in the folder; a failure only loses information, so it is logged.
fn write_instance_json(
    dir: &Path,
    spec: &LaunchSpec,
    number: u32,
    pid: u32,
    watchdog: Option<u32>,
    command: &str,
) {
    let info = serde_json::json!({
        "version": spec.installed.version.to_string(),
        "role": spec.role,
        "number": number,
        "port": spec.port,
        "pid": pid,
        "watchdog_pid": watchdog,
        "command": command,
        "started_unix_ms": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    });
    let path = dir.join("instance.json");
    let bytes = serde_json::to_vec_pretty(&info).unwrap_or_default();
    if let Err(e) = crate::layout::write_atomic(&path, &bytes) {
        tracing::warn!("cannot write {}: {e}", path.display());
    }
}

/// Whether nobody is bound to `port` right now, on 0.0.0.0 or on [::] (any address of either
/// family, so a child listening on 127.0.0.1 or ::1 only also counts as bound).
pub fn port_is_free(port: u16) -> bool {
    let v4 = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok();
    // Without IPv6 on the host, nobody can be bound there.
    let v6 = match TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)) {
        Ok(_) => true,
        Err(e) => e.kind() != io::ErrorKind::AddrInUse,
    };
    v4 && v6
}

/// Runs jobs (child spawns) on one long-lived thread: `PR_SET_PDEATHSIG` fires when the *thread*
/// that forked a child exits, so children must never be spawned from a short-lived thread.
#[derive(Debug, Clone)]
pub struct Spawner {
    jobs: std::sync::mpsc::Sender<Job>,
}

type Job = Box<dyn FnOnce() + Send>;

/// The spawner thread has ended (every handle was dropped) or the job panicked.
#[derive(Debug, thiserror::Error)]
#[error("the spawner thread is gone or the job panicked: no child was started")]
pub struct SpawnerGone;

impl Spawner {
    /// Start the thread; `rt` is entered on it so `tokio::process` and `tokio::spawn` work there.
    /// The thread ends when every `Spawner` clone is dropped, which kills the children it forked.
    pub fn new(rt: tokio::runtime::Handle) -> io::Result<(Spawner, std::thread::JoinHandle<()>)> {
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("understudy-spawner".into())
            .spawn(move || {
                let _rt = rt.enter();
                for job in rx {
                    // A panicking job must not end the thread: that would kill every child.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                        tracing::error!("a job on the spawner thread panicked; the thread goes on");
                    }
                }
            })?;
        Ok((Spawner { jobs }, thread))
    }

    /// Run `f` on the spawner thread and return its result.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, SpawnerGone> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| SpawnerGone)?;
        rx.await.map_err(|_| SpawnerGone)
    }
}

/// The task that owns one child: readiness, exit watch, stop.
struct Owner {
    id: InstanceId,
    pid: u32,
    grace: Duration,
    stderr_path: PathBuf,
    stop: CancellationToken,
    events: mpsc::UnboundedSender<InstanceEvent>,
}

impl Owner {
    fn pgid(&self) -> Pid {
        Pid::from_raw(self.pid as i32)
    }

    fn send(&self, kind: InstanceEventKind) {
        let _ = self.events.send(InstanceEvent { id: self.id, kind });
    }

    /// Own the child until it is reaped and its group is gone or killed, then dismiss its
    /// watchdog: never before (a hard kill of understudy in between would leave the group
    /// unguarded), never later (the watchdog could kill a group whose id was recycled).
    async fn run(self, child: tokio::process::Child, watchdog: Option<Watchdog>, probe: Probe) {
        self.supervise(child, probe).await;
        if let Some(w) = watchdog {
            w.dismiss().await;
        }
    }

    async fn supervise(&self, mut child: tokio::process::Child, probe: Probe) {
        let ready = probe.wait_ready();
        tokio::pin!(ready);
        let mut probing = true;
        // Heartbeats start once ready; a beat runs inside the select so an exit is never missed.
        let every = probe.heartbeat_every;
        let mut next_beat: Option<tokio::time::Instant> = None;
        let mut misses = 0u32;
        loop {
            let beat_due = async {
                match next_beat {
                    Some(at) => {
                        tokio::time::sleep_until(at).await;
                        probe.beat().await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => {
                    self.stop_group(&mut child).await;
                    return;
                }
                status = child.wait() => {
                    // The leader is gone; anything it left in its group goes too.
                    signal_group(self.pgid(), Signal::SIGKILL);
                    if !self.stop.is_cancelled() {
                        let status = status
                            .map(|s| s.to_string())
                            .unwrap_or_else(|e| format!("unknown ({e})"));
                        let stderr_tail = tail(&self.stderr_path, STDERR_TAIL);
                        self.send(InstanceEventKind::Exited { status, stderr_tail });
                    }
                    return;
                }
                r = &mut ready, if probing => {
                    probing = false;
                    match r {
                        Ok(()) => {
                            self.send(InstanceEventKind::Ready);
                            if !every.is_zero() {
                                next_beat = Some(tokio::time::Instant::now() + every);
                            }
                        }
                        Err(e) => self.send(InstanceEventKind::NotReady { reason: e.to_string() }),
                    }
                }
                r = beat_due => {
                    next_beat = Some(tokio::time::Instant::now() + every);
                    match r {
                        Ok(()) => {
                            misses = 0;
                            self.send(InstanceEventKind::Heartbeat);
                        }
                        Err(e @ ProbeError::Unmade { .. }) => {
                            // Not the child's fault: neither a miss nor an answer.
                            tracing::warn!("{e}");
                        }
                        Err(e) => {
                            misses += 1;
                            if misses >= probe.heartbeat_misses {
                                // Said once per run of misses; the supervisor stops it.
                                if misses == probe.heartbeat_misses {
                                    self.send(InstanceEventKind::Unresponsive {
                                        misses,
                                        reason: e.to_string(),
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// SIGTERM the group, wait up to the grace for the leader and then every member to be gone,
    /// SIGKILL the group if any is left, reap the leader.
    async fn stop_group(&self, child: &mut tokio::process::Child) {
        let (pid, pgid, grace) = (self.pid, self.pgid(), self.grace);
        let deadline = tokio::time::Instant::now() + grace;
        signal_group(pgid, Signal::SIGTERM);
        // The leader must be reaped first: as a zombie it would keep the group alive.
        let gone = match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(_) => wait_group_gone(pgid, deadline).await,
            Err(_) => false,
        };
        if gone {
            return;
        }
        tracing::warn!(
            "pid {pid} or a process in its group did not stop within {grace:?} of SIGTERM; sending SIGKILL"
        );
        signal_group(pgid, Signal::SIGKILL);
        let _ = child.wait().await;
        if !wait_group_gone(pgid, tokio::time::Instant::now() + KILL_WAIT).await {
            tracing::warn!(
                "process group {pgid} still has members {KILL_WAIT:?} after SIGKILL (zombies nobody reaps?)"
            );
        }
    }
}

/// Send `sig` to the process group; a group already gone is not an error.
fn signal_group(pgid: Pid, sig: Signal) {
    match killpg(pgid, sig) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::warn!("cannot send {sig} to process group {pgid}: {e}"),
    }
}

/// Whether a live process is left in the group. `killpg(0)` also counts zombies (a SIGKILLed
/// grandchild waits for init to reap it), so a "yes" is confirmed from `/proc` when readable.
fn group_exists(pgid: Pid) -> bool {
    // EPERM means a member exists that we may not signal.
    if !matches!(killpg(pgid, None), Ok(()) | Err(Errno::EPERM)) {
        return false;
    }
    live_member_in_proc(pgid).unwrap_or(true)
}

/// Whether `/proc` lists a process of group `pgid` that is not a zombie; `None` if unreadable.
fn live_member_in_proc(pgid: Pid) -> Option<bool> {
    let pgid = pgid.as_raw().to_string();
    let live = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .as_encoded_bytes()
                .iter()
                .all(u8::is_ascii_digit)
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .any(|stat| {
            // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
            let mut fields = stat
                .rsplit_once(')')
                .map_or("", |(_, r)| r)
                .split_whitespace();
            let state = fields.next();
            let pgrp = fields.nth(1);
            pgrp == Some(pgid.as_str()) && !matches!(state, Some("Z") | Some("X"))
        });
    Some(live)
}

/// Poll until the group has no members, or `deadline`; returns whether it is gone.
async fn wait_group_gone(pgid: Pid, deadline: tokio::time::Instant) -> bool {
    loop {
        if !group_exists(pgid) {
            return true;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return false;
        }
        tokio::time::sleep(GROUP_POLL.min(deadline - now)).await;
    }
}

/// Why one readiness attempt failed.
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    /// Nothing accepts connections on the port yet.
    #[error("connecting to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    /// The attempt (connect, or request and answer) took too long.
    #[error("{what} on {addr} took longer than {limit:?}")]
    Timeout {
        what: String,
        addr: String,
        limit: Duration,
    },
    /// The ready path's URI cannot be formed from the host and path.
    #[error("http://{addr}{path} is not a valid URI for the ready check: {source}")]
    Uri {
        addr: String,
        path: String,
        source: http::uri::InvalidUri,
    },
    /// The request failed before a whole response head arrived.
    #[error("GET {path} on {addr} failed: {}", chain(source))]
    Request {
        path: String,
        addr: String,
        source: hyper_util::client::legacy::Error,
    },
    /// The response body broke off.
    #[error("GET {path} on {addr}: reading the answer failed: {source}")]
    Body {
        path: String,
        addr: String,
        source: hyper::Error,
    },
    /// A whole response arrived, but not 2xx.
    #[error("{path} answered {status} on {addr}")]
    Status {
        path: String,
        addr: String,
        status: http::StatusCode,
    },
    /// understudy itself ran out of descriptors or memory: the probe was never made, which says
    /// nothing about the child.
    #[error("could not probe {addr}: understudy is out of {what}; raise `ulimit -n` (LimitNOFILE=) or lower MAX_CONNECTIONS / MAX_ADMIN_CONNECTIONS")]
    Unmade { addr: String, what: &'static str },
}

impl ProbeError {
    /// `Connect`, unless the failure was understudy's own resources.
    fn connect(addr: &str, source: io::Error) -> ProbeError {
        match own_shortage(&source) {
            Some(what) => ProbeError::Unmade {
                addr: addr.to_string(),
                what,
            },
            None => ProbeError::Connect {
                addr: addr.to_string(),
                source,
            },
        }
    }
}

/// Which of understudy's own resources an error (or one of its causes) says ran out: a socket
/// that could not be made is not a child that stopped answering.
fn own_shortage(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        let io = err.downcast_ref::<io::Error>();
        // A wrapping io::Error's `source()` skips what it wraps: look inside it too.
        let inner = io.and_then(io::Error::get_ref);
        let inner = inner.and_then(|i| i.downcast_ref::<io::Error>());
        let code = io.and_then(io::Error::raw_os_error);
        if let Some(code) = code.or_else(|| inner.and_then(io::Error::raw_os_error)) {
            match code {
                libc::EMFILE | libc::ENFILE => return Some("file descriptors"),
                libc::ENOBUFS | libc::ENOMEM => return Some("memory"),
                _ => {}
            }
        }
        cur = err.source();
    }
    None
}

/// The instance never became ready; says what the last attempt got.
#[derive(Debug, thiserror::Error)]
#[error("not ready on {addr} within {timeout:?} (last attempt: {last})")]
struct NotReady {
    addr: String,
    timeout: Duration,
    last: ProbeError,
}

/// An error and its sources, on one line (hyper's errors say little at the top level).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The readiness check of one instance.
struct Probe {
    host: String,
    port: u16,
    /// `host:port`, with brackets around an IPv6 address.
    addr: String,
    path: Option<String>,
    timeout: Duration,
    health_path: Option<String>,
    heartbeat_every: Duration,
    heartbeat_misses: u32,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Probe {
    fn new(spec: ProbeSpec, port: u16) -> Probe {
        let addr = match spec.host.parse::<Ipv6Addr>() {
            Ok(v6) => SocketAddr::from((v6, port)).to_string(),
            Err(_) => format!("{}:{port}", spec.host),
        };
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(PROBE_ATTEMPT));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        Probe {
            host: spec.host,
            port,
            addr,
            path: spec.path.map(|p| {
                if p.starts_with('/') {
                    p
                } else {
                    format!("/{p}")
                }
            }),
            timeout: spec.timeout,
            health_path: spec.health_path.map(|p| {
                if p.starts_with('/') {
                    p
                } else {
                    format!("/{p}")
                }
            }),
            heartbeat_every: spec.heartbeat_every,
            heartbeat_misses: spec.heartbeat_misses.max(1),
            client,
        }
    }

    /// One heartbeat, bounded by the period: `HEALTH_PATH` answers 2xx, or the port accepts.
    async fn beat(&self) -> Result<(), ProbeError> {
        let limit = self.heartbeat_every.clamp(READY_POLL, PROBE_ATTEMPT);
        match &self.health_path {
            Some(path) => tokio::time::timeout(limit, self.get(path))
                .await
                .map_err(|_| ProbeError::Timeout {
                    what: format!("GET {path}"),
                    addr: self.addr.clone(),
                    limit,
                })?,
            None => {
                tokio::time::timeout(
                    limit,
                    tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
                )
                .await
                .map_err(|_| ProbeError::Timeout {
                    what: "connecting".to_string(),
                    addr: self.addr.clone(),
                    limit,
                })?
                .map_err(|source| ProbeError::connect(&self.addr, source))?;
                Ok(())
            }
        }
    }

    /// Poll until an attempt succeeds or the timeout passes; at least one attempt is made.
    async fn wait_ready(&self) -> Result<(), NotReady> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let limit = PROBE_ATTEMPT.min(left).max(READY_POLL);
            let last = match self.check(limit).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(NotReady {
                    addr: self.addr.clone(),
                    timeout: self.timeout,
                    last,
                });
            }
            tokio::time::sleep(READY_POLL.min(deadline - now)).await;
        }
    }

    /// One attempt, bounded by `limit`.
    async fn check(&self, limit: Duration) -> Result<(), ProbeError> {
        let timeout = |what: &str| ProbeError::Timeout {
            what: what.to_string(),
            addr: self.addr.clone(),
            limit,
        };
        let Some(path) = &self.path else {
            tokio::time::timeout(
                limit,
                tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
            )
            .await
            .map_err(|_| timeout("connecting"))?
            .map_err(|source| ProbeError::connect(&self.addr, source))?;
            return Ok(());
        };
        tokio::time::timeout(limit, self.get(path))
            .await
            .map_err(|_| timeout(&format!("GET {path}")))?
    }

    /// GET the ready path and read the whole answer (the body up to a bound): 2xx is ready.
    async fn get(&self, path: &str) -> Result<(), ProbeError> {
        let uri: http::Uri = format!("http://{}{path}", self.addr)
            .parse()
            .map_err(|source| ProbeError::Uri {
                addr: self.addr.clone(),
                path: path.to_string(),
                source,
            })?;
        let resp = self
            .client
            .get(uri)
            .await
            .map_err(|source| match source.is_connect() {
                _ if own_shortage(&source).is_some() => ProbeError::Unmade {
                    addr: self.addr.clone(),
                    what: own_shortage(&source).unwrap_or("resources"),
                },
                true => ProbeError::Connect {
                    addr: self.addr.clone(),
                    source: io::Error::new(io::ErrorKind::ConnectionRefused, chain(&source)),
                },
                false => ProbeError::Request {
                    path: path.to_string(),
                    addr: self.addr.clone(),
                    source,
                },
            })?;
        let status = resp.status();
        let mut body = resp.into_body();
        let mut read = 0;
        while read < PROBE_BODY_MAX {
            match body.frame().await {
                None => break,
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
                Some(Err(source)) => {
                    return Err(ProbeError::Body {
                        path: path.to_string(),
                        addr: self.addr.clone(),
                        source,
                    })
                }
            }
        }
        if status.is_success() {
            Ok(())
        } else {
            Err(ProbeError::Status {
                path: path.to_string(),
                addr: self.addr.clone(),
                status,
            })
        }
    }
}

/// The last `max` bytes of a file, as text (for rejection reasons).
pub fn tail(path: &Path, max: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Set `key` to `port` in properties text (`key=value` or `key: value`), appending it if absent.
fn rewrite_property(text: &str, key: &str, port: u16) -> String {
    let mut found = false;
    let mut out: Vec<String> = text
        .lines()
        .map(|line| {
            let t = line.trim_start();
            let is_key = t.strip_prefix(key).is_some_and(|rest| {
                let rest = rest.trim_start();
                rest.starts_with('=') || rest.starts_with(':')
            });
            if is_key && !t.starts_with('#') {
                found = true;
                format!("{key}={port}")
            } else {
                line.to_string()
            }
        })
        .collect();
    if !found {
        out.push(format!("{key}={port}"));
    }
    out.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::{Read, Write};

    #[test]
    fn property_is_rewritten_or_added() {
        assert_eq!(
            rewrite_property("a=1\nserver.port = 80\n", "server.port", 9000),
            "a=1\nserver.port=9000\n"
        );
        assert_eq!(
            rewrite_property("a=1\n", "server.port", 9000),
            "a=1\nserver.port=9000\n"
        );
        assert_eq!(
            rewrite_property("# server.port=1\n", "server.port", 9),
            "# server.port=1\nserver.port=9\n"
        );
    }

    #[test]
    fn tail_keeps_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("stderr");
        std::fs::write(&f, "0123456789").unwrap();
        assert_eq!(tail(&f, 4), "6789");
        assert_eq!(tail(&f, 100), "0123456789");
        assert_eq!(tail(&dir.path().join("none"), 4), "");
    }

    #[test]
    fn a_port_bound_on_either_loopback_is_not_free() {
        let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = v4.local_addr().unwrap().port();
        assert!(!port_is_free(p), "bound on 127.0.0.1");
        drop(v4);
        assert!(port_is_free(p), "free once closed");
        if let Ok(v6) = TcpListener::bind("[::1]:0") {
            let p = v6.local_addr().unwrap().port();
            assert!(!port_is_free(p), "bound on ::1");
        }
    }

    fn installed(vdir: &Path, kind: Kind) -> Installed {
        let program = vdir.join(match kind {
            Kind::Jar => "app-1.0.0.jar",
            _ => "app-1.0.0",
        });
        std::fs::write(&program, "#!/bin/sh\n").unwrap();
        Installed {
            version: Version::new(1, 0, 0),
            program,
            kind,
        }
    }

    fn spec(installed: Installed, port: u16, command: &[&str]) -> LaunchSpec {
        LaunchSpec {
            id: InstanceId(1),
            role: Role::Testing,
            installed,
            port,
            command: command.iter().map(|w| w.to_string()).collect(),
            port_key: "server.port".into(),
            properties: None,
            probe: ProbeSpec {
                host: "127.0.0.1".into(),
                path: None,
                timeout: Duration::from_millis(200),
                health_path: None,
                heartbeat_every: Duration::ZERO,
                heartbeat_misses: 3,
            },
            grace: Duration::from_millis(300),
            watchdog: None,
        }
    }

    #[test]
    fn argv_fills_placeholders_and_gives_a_bare_jar_its_port() {
        let base = tempfile::tempdir().unwrap();
        let jar = installed(base.path(), Kind::Jar);
        let dir = base.path().join("1");
        let s = spec(
            jar.clone(),
            9000,
            &["/usr/bin/java", "-jar", "{artifact}", "--dir={dir}"],
        );
        let argv = build_argv(&s, &dir, false);
        assert_eq!(
            argv,
            [
                "/usr/bin/java".to_string(),
                "-Dserver.port=9000".into(),
                "-jar".into(),
                jar.program.to_string_lossy().into_owned(),
                format!("--dir={}", dir.display()),
            ]
        );
        assert!(
            !build_argv(&s, &dir, true)
                .iter()
                .any(|w| w.starts_with("-D")),
            "a properties file carries the port instead"
        );
        let exe = spec(
            installed(base.path(), Kind::Executable),
            7,
            &["{artifact}", "--port", "{port}"],
        );
        assert_eq!(build_argv(&exe, &dir, false)[1..], ["--port", "7"]);
    }

    #[test]
    fn properties_are_copied_and_the_source_is_never_modified() {
        let base = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let src = elsewhere.path().join("application.properties");
        std::fs::write(&src, "server.port=80\nname=x\n").unwrap();
        let dir = base.path().join("1");
        std::fs::create_dir(&dir).unwrap();
        // Absolute source outside the base dir.
        assert!(write_properties(base.path(), &src, &dir, "server.port", 9000).unwrap());
        assert_eq!(
            std::fs::read_to_string(dir.join("application.properties")).unwrap(),
            "server.port=9000\nname=x\n"
        );
        assert_eq!(
            std::fs::read_to_string(&src).unwrap(),
            "server.port=80\nname=x\n"
        );
        // Relative source, taken from the base dir.
        std::fs::write(base.path().join("app.properties"), "a=1\n").unwrap();
        assert!(write_properties(base.path(), Path::new("app.properties"), &dir, "k", 5).unwrap());
        assert_eq!(
            std::fs::read_to_string(dir.join("app.properties")).unwrap(),
            "a=1\nk=5\n"
        );
        assert_eq!(
            std::fs::read_to_string(base.path().join("app.properties")).unwrap(),
            "a=1\n"
        );
        // Missing source: started without it.
        assert!(!write_properties(base.path(), Path::new("none"), &dir, "k", 5).unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_spawner_runs_every_job_on_its_one_thread_until_dropped() {
        let (spawner, thread) = Spawner::new(tokio::runtime::Handle::current()).unwrap();
        let a = spawner.run(|| std::thread::current().id()).await.unwrap();
        let b = spawner
            .clone()
            .run(|| std::thread::current().id())
            .await
            .unwrap();
        assert_eq!(a, b);
        assert_ne!(a, std::thread::current().id());
        let inside = spawner.run(|| tokio::spawn(async { 7 })).await.unwrap();
        assert_eq!(
            inside.await.unwrap(),
            7,
            "the runtime is entered on the thread"
        );
        assert!(spawner.run(|| panic!("a job that panics")).await.is_err());
        assert_eq!(
            spawner.run(|| 1).await.unwrap(),
            1,
            "a panic does not end the thread"
        );
        drop(spawner);
        tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
    }

    /// A base dir with the version folder of app 1.0.0, and a spawner.
    struct Rig {
        base: tempfile::TempDir,
        layout: Layout,
        spawner: Spawner,
        events: mpsc::UnboundedReceiver<InstanceEvent>,
        tx: mpsc::UnboundedSender<InstanceEvent>,
    }

    impl Rig {
        fn new() -> Rig {
            let base = tempfile::tempdir().unwrap();
            let layout = Layout::new(base.path(), "app");
            std::fs::create_dir_all(layout.version_dir(&Version::new(1, 0, 0))).unwrap();
            let (spawner, _thread) = Spawner::new(tokio::runtime::Handle::current()).unwrap();
            let (tx, events) = mpsc::unbounded_channel();
            Rig {
                base,
                layout,
                spawner,
                events,
                tx,
            }
        }

        fn spec(&self, port: u16, command: &[&str]) -> LaunchSpec {
            let vdir = self.layout.version_dir(&Version::new(1, 0, 0));
            spec(installed(&vdir, Kind::Executable), port, command)
        }

        async fn start(&self, spec: LaunchSpec) -> Result<Instance, InstanceError> {
            let (layout, tx) = (self.layout.clone(), self.tx.clone());
            self.spawner
                .run(move || Instance::start(&layout, spec, tx))
                .await
                .unwrap()
        }

        async fn next_event(&mut self) -> InstanceEventKind {
            tokio::time::timeout(Duration::from_secs(10), self.events.recv())
                .await
                .expect("an instance event within 10 s")
                .expect("the channel stays open")
                .kind
        }
    }

    /// A free port below the kernel's ephemeral range (32768+), so no outgoing connection of a
    /// parallel test takes it between the check and the start; each call gets a new one.
    fn free_port() -> u16 {
        use std::sync::atomic::{AtomicU16, Ordering};
        static NEXT: AtomicU16 = AtomicU16::new(0);
        let start = 24000 + (std::process::id() % 40) as u16 * 100;
        loop {
            let p = start + NEXT.fetch_add(1, Ordering::Relaxed) % 100;
            if port_is_free(p) {
                return p;
            }
        }
    }

    /// Alive and not a zombie (a zombie has been killed; it only waits for its parent).
    fn running(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_string()))
            .is_some_and(|r| !r.starts_with('Z') && !r.starts_with('X'))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stop_kills_a_grandchild_that_ignores_sigterm() {
        let mut rig = Rig::new();
        // The leader dies on SIGTERM; its background child ignores it (ignored stays across exec)
        // and writes its pid only once it does.
        let script = r#"sh -c "trap '' TERM; echo \$\$ > grandchild.pid; exec sleep 30" & wait"#;
        let inst = rig
            .start(rig.spec(free_port(), &["/bin/sh", "-c", script]))
            .await
            .unwrap();
        assert!(inst.dir.join("stdout").is_file() && inst.dir.join("app-1.0.0").is_symlink());
        let pidfile = inst.dir.join("grandchild.pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        let grandchild: u32 = loop {
            if let Some(p) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                break p;
            }
            assert!(Instant::now() < deadline, "no grandchild.pid within 10 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let leader = inst.pid;
        assert!(running(grandchild) && running(leader));
        let t = Instant::now();
        inst.stop().await;
        assert!(
            t.elapsed() >= Duration::from_millis(300),
            "the grace was waited out"
        );
        assert!(!running(leader), "the leader is reaped");
        assert!(!running(grandchild), "the grandchild got SIGKILL");
        assert!(!group_exists(Pid::from_raw(leader as i32)));
        while let Ok(e) = rig.events.try_recv() {
            assert!(
                matches!(e.kind, InstanceEventKind::NotReady { .. }),
                "a requested stop reports no exit: {e:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_that_obeys_sigterm_stops_without_waiting_the_grace() {
        let rig = Rig::new();
        let mut s = rig.spec(free_port(), &["/bin/sh", "-c", "sleep 30 & wait"]);
        s.grace = Duration::from_secs(10);
        let inst = rig.start(s).await.unwrap();
        let t = Instant::now();
        inst.stop().await;
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "took {:?}",
            t.elapsed()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_exit_on_its_own_is_reported_and_its_group_killed() {
        let mut rig = Rig::new();
        let script =
            "(trap '' TERM; exec sleep 30) & echo $! > grandchild.pid; echo boom >&2; exit 3";
        let inst = rig
            .start(rig.spec(free_port(), &["/bin/sh", "-c", script]))
            .await
            .unwrap();
        let kind = loop {
            match rig.next_event().await {
                InstanceEventKind::NotReady { .. } => continue,
                k => break k,
            }
        };
        let InstanceEventKind::Exited {
            status,
            stderr_tail,
        } = kind
        else {
            panic!("expected Exited, got {kind:?}");
        };
        assert!(status.contains('3'), "{status}");
        assert!(stderr_tail.contains("boom"), "{stderr_tail}");
        let grandchild: u32 = std::fs::read_to_string(inst.dir.join("grandchild.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while running(grandchild) {
            assert!(
                Instant::now() < deadline,
                "grandchild {grandchild} still runs"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        inst.stop().await; // stopping an exited instance returns at once
    }

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

    /// Answer every connection on `listener` with `status`, as a whole HTTP/1.1 response.
    fn canned_server(listener: TcpListener, status: &'static str) {
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
            }
        });
    }

    #[test]
    fn a_probe_understudy_could_not_make_is_not_the_childs_fault() {
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        assert!(matches!(
            ProbeError::connect("127.0.0.1:1", emfile),
            ProbeError::Unmade {
                what: "file descriptors",
                ..
            }
        ));
        let wrapped = io::Error::other(io::Error::from_raw_os_error(libc::ENFILE));
        assert_eq!(own_shortage(&wrapped), Some("file descriptors"));
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert!(matches!(
            ProbeError::connect("127.0.0.1:1", refused),
            ProbeError::Connect { .. }
        ));
    }

    fn probe(host: &str, port: u16, path: Option<&str>) -> Probe {
        Probe::new(
            ProbeSpec {
                host: host.into(),
                path: path.map(String::from),
                // Long enough for a loaded machine to answer a local GET.
                timeout: Duration::from_secs(1),
                health_path: None,
                heartbeat_every: Duration::ZERO,
                heartbeat_misses: 3,
            },
            port,
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readiness_needs_a_whole_2xx_answer_on_the_path() {
        let ok = TcpListener::bind("127.0.0.1:0").unwrap();
        let okp = ok.local_addr().unwrap().port();
        canned_server(ok, "200 OK");
        let nf = TcpListener::bind("127.0.0.1:0").unwrap();
        let nfp = nf.local_addr().unwrap().port();
        canned_server(nf, "404 Not Found");

        probe("127.0.0.1", okp, Some("/health"))
            .wait_ready()
            .await
            .unwrap();
        probe("localhost", okp, Some("health"))
            .wait_ready()
            .await
            .unwrap();
        let e = probe("127.0.0.1", nfp, Some("/health"))
            .wait_ready()
            .await
            .unwrap_err();
        assert!(e.to_string().contains("/health answered 404"), "{e}");
        probe("127.0.0.1", nfp, None).wait_ready().await.unwrap();

        let closed = free_port();
        let e = probe("127.0.0.1", closed, None)
            .wait_ready()
            .await
            .unwrap_err();
        assert!(matches!(e.last, ProbeError::Connect { .. }), "{e}");
        assert!(
            e.to_string().contains(&format!("127.0.0.1:{closed}")),
            "{e}"
        );
        let e = probe("127.0.0.1", closed, Some("/health"))
            .wait_ready()
            .await
            .unwrap_err();
        assert!(matches!(e.last, ProbeError::Connect { .. }), "{e}");

        if let Ok(v6) = TcpListener::bind("[::1]:0") {
            let p = v6.local_addr().unwrap().port();
            canned_server(v6, "204 No Content");
            probe("::1", p, Some("/health")).wait_ready().await.unwrap();
            probe("::1", p, None).wait_ready().await.unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_half_answer_is_not_ready() {
        // Accepts and sends a status line but never finishes the head.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for mut s in l.incoming().flatten() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\n");
                held.push(s);
            }
        });
        let e = probe("127.0.0.1", p, Some("/"))
            .wait_ready()
            .await
            .unwrap_err();
        assert!(matches!(e.last, ProbeError::Timeout { .. }), "{e}");
    }
}
