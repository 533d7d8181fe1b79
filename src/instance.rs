//! One child process: started in its own process group, in its own instance folder, with its
//! port injected; probed for readiness; stopped with SIGTERM to the group, then SIGKILL after the
//! grace period; always reaped. Knows nothing of proxies or scores.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use semver::Version;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::artifact::{Installed, Kind};
use crate::config::Config;
use crate::layout::Role;

/// How often readiness is probed while an instance starts.
const READY_POLL: Duration = Duration::from_millis(50);
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

/// The things that happen to a child.
#[derive(Debug, Clone)]
pub enum InstanceEventKind {
    /// It answers on its port (and `READY_PATH`).
    Ready,
    /// It did not become ready in time; it is still running until stopped.
    NotReady { reason: String },
    /// It exited on its own (not asked to stop).
    Exited { status: String, stderr_tail: String },
    /// It was stopped on request and reaped.
    Stopped,
}

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// No free port in `PORT_RANGE`.
    #[error("no free port in PORT_RANGE {0}-{1}: widen the range or free ports")]
    NoPort(u16, u16),
    /// A file step in the instance folder failed.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The command could not be executed.
    #[error("cannot start {command:?} in {dir}: {source}")]
    Spawn {
        command: String,
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// Ports handed to children; a port is taken only if free and not already handed out.
#[derive(Debug, Clone)]
pub struct PortPool {
    range: (u16, u16),
    taken: Arc<Mutex<HashSet<u16>>>,
}

impl PortPool {
    /// A pool over the inclusive `range`.
    pub fn new(range: (u16, u16)) -> PortPool {
        PortPool {
            range,
            taken: Arc::default(),
        }
    }

    /// Take a port that nobody is bound to; it is returned by [`PortPool::release`].
    pub fn take(&self) -> Option<u16> {
        let mut taken = self
            .taken
            .lock()
            .expect("port pool lock is never poisoned: no panics while held");
        (self.range.0..=self.range.1)
            .find(|p| !taken.contains(p) && TcpListener::bind(("0.0.0.0", *p)).is_ok())
            .inspect(|p| {
                taken.insert(*p);
            })
    }

    /// Give a port back once its child is reaped.
    pub fn release(&self, port: u16) {
        self.taken
            .lock()
            .expect("port pool lock is never poisoned")
            .remove(&port);
    }
}

/// A started child: the supervisor's handle to it.
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
    task: JoinHandle<()>,
}

/// Everything needed to start one child.
#[derive(Debug, Clone)]
pub struct StartSpec {
    /// Event identity.
    pub id: InstanceId,
    /// The part it plays.
    pub role: Role,
    /// What to run.
    pub installed: Installed,
    /// Instance folder number.
    pub number: u32,
    /// Instance folder (already created with `logs/json/`).
    pub dir: PathBuf,
}

impl Instance {
    /// Start the child and its owner task, which reports on `events` until the child is reaped.
    pub fn start(
        cfg: &Config,
        ports: &PortPool,
        spec: StartSpec,
        events: mpsc::UnboundedSender<InstanceEvent>,
    ) -> Result<Instance, InstanceError> {
        let port = ports
            .take()
            .ok_or(InstanceError::NoPort(cfg.port_range.0, cfg.port_range.1))?;
        match Self::spawn(cfg, ports, port, spec, events) {
            Ok(i) => Ok(i),
            Err(e) => {
                ports.release(port);
                Err(e)
            }
        }
    }

    fn spawn(
        cfg: &Config,
        ports: &PortPool,
        port: u16,
        spec: StartSpec,
        events: mpsc::UnboundedSender<InstanceEvent>,
    ) -> Result<Instance, InstanceError> {
        let dir = spec.dir.clone();
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| InstanceError::Io { what, path, source }
        };
        // A link to the program, as Vili keeps one, so the folder says what ran.
        let link_name = spec
            .installed
            .program
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("artifact"));
        let link = dir.join(&link_name);
        let _ = std::fs::remove_file(&link);
        // Relative (`../app-1.2.0.jar`), so the base dir can be moved and archives stay readable.
        let target = dir
            .parent()
            .and_then(|vdir| spec.installed.program.strip_prefix(vdir).ok())
            .map(|rel| Path::new("..").join(rel))
            .unwrap_or_else(|| spec.installed.program.clone());
        std::os::unix::fs::symlink(&target, &link)
            .map_err(io("cannot link artifact into", &dir))?;

        let properties = match &cfg.properties_file {
            Some(name) => {
                let src = cfg.base.join(name);
                match std::fs::read_to_string(&src) {
                    Ok(text) => {
                        let dst = dir.join(name);
                        std::fs::write(&dst, rewrite_property(&text, &cfg.port_key, port))
                            .map_err(io("cannot write", &dst))?;
                        true
                    }
                    Err(e) => {
                        tracing::warn!(
                            "properties file {} not readable ({e}); passing the port without it",
                            src.display()
                        );
                        false
                    }
                }
            }
            None => false,
        };

        let template = match spec.installed.kind {
            Kind::Jar => &cfg.jar_command,
            _ => &cfg.exec_command,
        };
        let mut argv: Vec<String> = template
            .split_whitespace()
            .map(|w| {
                w.replace("{artifact}", &spec.installed.program.to_string_lossy())
                    .replace("{port}", &port.to_string())
                    .replace("{dir}", &dir.to_string_lossy())
            })
            .collect();
        if spec.installed.kind == Kind::Jar
            && !properties
            && argv.first().is_some_and(|p| Path::new(p).ends_with("java"))
        {
            argv.insert(1, format!("-D{}={}", cfg.port_key, port));
        }
        let command_line = argv.join(" ");

        let stdout_path = dir.join("stdout");
        let stderr_path = dir.join("stderr");
        let stdout =
            std::fs::File::create(&stdout_path).map_err(io("cannot create", &stdout_path))?;
        let stderr =
            std::fs::File::create(&stderr_path).map_err(io("cannot create", &stderr_path))?;

        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .current_dir(&dir)
            .env("PORT", port.to_string())
            .env("UNDERSTUDY_ROLE", spec.role.as_str())
            .env("UNDERSTUDY_VERSION", spec.installed.version.to_string())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(true);
        let parent = std::process::id();
        // SAFETY: the closure only calls async-signal-safe libc functions between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // If understudy is killed hard, the kernel kills the child: no orphans.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() as u32 != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|source| InstanceError::Spawn {
            command: command_line.clone(),
            dir: dir.clone(),
            source,
        })?;
        let pid = child.id().expect("a just-spawned child has a pid");

        let info = serde_json::json!({
            "version": spec.installed.version.to_string(),
            "role": spec.role,
            "number": spec.number,
            "port": port,
            "pid": pid,
            "command": command_line,
            "started_unix_ms": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
        });
        let _ = crate::layout::write_atomic(
            &dir.join("instance.json"),
            &serde_json::to_vec_pretty(&info).unwrap_or_default(),
        );
        tracing::info!(
            "started {} {} #{} (pid {pid}, port {port}): {command_line}",
            spec.role,
            spec.installed.version,
            spec.number
        );

        let stop = CancellationToken::new();
        let id = spec.id;
        let grace = cfg.shutdown_grace;
        let probe = Probe {
            host: cfg.upstream_host.clone(),
            port,
            path: cfg.ready_path.clone(),
            timeout: cfg.ready_timeout,
        };
        let task = tokio::spawn(supervise_child(
            id,
            child,
            pid,
            probe,
            grace,
            stderr_path,
            stop.clone(),
            events,
            ports.clone(),
            port,
        ));
        Ok(Instance {
            id,
            role: spec.role,
            version: spec.installed.version,
            number: spec.number,
            dir,
            port,
            pid,
            started: Instant::now(),
            stop,
            task,
        })
    }

    /// Ask the child to stop (SIGTERM, grace, SIGKILL) and wait until it is reaped.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

struct Probe {
    host: String,
    port: u16,
    path: Option<String>,
    timeout: Duration,
}

impl Probe {
    /// Poll until the port answers (and the path answers 2xx), or the deadline passes.
    async fn wait_ready(&self) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut last = String::from("no answer yet");
        while tokio::time::Instant::now() < deadline {
            match self.check().await {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            tokio::time::sleep(READY_POLL).await;
        }
        Err(format!(
            "not ready on port {} within {:?} (last: {last})",
            self.port, self.timeout
        ))
    }

    async fn check(&self) -> Result<(), String> {
        let mut s = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let Some(path) = &self.path else {
            return Ok(());
        };
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\n\r\n",
            self.host, self.port
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = [0u8; 32];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .map_err(|_| format!("{path} did not answer in 2s"))?
            .map_err(|e| format!("read: {e}"))?;
        let head = String::from_utf8_lossy(&buf[..n]);
        match head.split_whitespace().nth(1) {
            Some(code) if code.starts_with('2') => Ok(()),
            Some(code) => Err(format!("{path} answered {code}")),
            None => Err(format!("{path} answered no status line")),
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn supervise_child(
    id: InstanceId,
    mut child: tokio::process::Child,
    pid: u32,
    probe: Probe,
    grace: Duration,
    stderr_path: PathBuf,
    stop: CancellationToken,
    events: mpsc::UnboundedSender<InstanceEvent>,
    ports: PortPool,
    port: u16,
) {
    let send = |kind| {
        let _ = events.send(InstanceEvent { id, kind });
    };
    let ready = probe.wait_ready();
    tokio::pin!(ready);
    let mut probing = true;
    loop {
        tokio::select! {
            status = child.wait() => {
                // The leader is gone; anything it left in its group goes too.
                killpg(pid, libc::SIGKILL);
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| format!("unknown ({e})"));
                if stop.is_cancelled() {
                    send(InstanceEventKind::Stopped);
                } else {
                    send(InstanceEventKind::Exited { status, stderr_tail: tail(&stderr_path, STDERR_TAIL) });
                }
                break;
            }
            r = &mut ready, if probing => {
                probing = false;
                match r {
                    Ok(()) => send(InstanceEventKind::Ready),
                    Err(reason) => send(InstanceEventKind::NotReady { reason }),
                }
            }
            _ = stop.cancelled() => {
                killpg(pid, libc::SIGTERM);
                if tokio::time::timeout(grace, child.wait()).await.is_err() {
                    tracing::warn!("pid {pid} did not stop within {grace:?} of SIGTERM; sending SIGKILL");
                    killpg(pid, libc::SIGKILL);
                    let _ = child.wait().await;
                }
                killpg(pid, libc::SIGKILL);
                send(InstanceEventKind::Stopped);
                break;
            }
        }
    }
    ports.release(port);
}

fn killpg(pgid: u32, sig: libc::c_int) {
    // SAFETY: killpg has no memory-safety preconditions; a stale group id only yields ESRCH.
    unsafe {
        libc::killpg(pgid as libc::pid_t, sig);
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
    fn ports_skip_bound_ones() {
        // A one-port range, so no neighbouring port (busy or not) can decide the outcome.
        let held = TcpListener::bind("0.0.0.0:0").unwrap();
        let p = held.local_addr().unwrap().port();
        let pool = PortPool::new((p, p));
        assert_eq!(pool.take(), None, "a bound port is skipped");
        drop(held);
        assert_eq!(pool.take(), Some(p), "a free port is handed out");
        assert_eq!(pool.take(), None, "and not twice");
        pool.release(p);
        assert_eq!(pool.take(), Some(p), "a released port comes back");
    }
}
