//! Upgrading understudy itself without a dropped request, as nginx does on SIGUSR2 and HAProxy by
//! passing its listeners: the old understudy starts the new binary with its listening sockets,
//! the base dir's lock and the links to its children's watchdogs as inherited descriptors (named
//! in [`ENV`]); the new one adopts the children (they keep their pids), serves, and says `ready`
//! on a pipe; only then does the old one stop accepting, finish its requests and exit. A new
//! binary that fails first leaves the old one serving, its children re-adopted.
//!
//! Both ends live here: [`hand_over`] in the old process, [`Takeover::from_env`] in the new.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use semver::Version;
use serde::{Deserialize, Serialize};

/// The variable that tells a starting understudy it takes over from another, and what it is
/// handed: a JSON [`Plan`].
pub const ENV: &str = "UNDERSTUDY_HANDOVER";

/// The longest a handover plan may be (a few children's worth of JSON).
const MAX_PLAN: usize = 64 * 1024;

/// The most the new process may write on the ready pipe.
const MAX_READY: u64 = 4096;

/// The descriptors of the old process that are handed over as they are: the lock file's is
/// borrowed from `main`'s guard, which outlives every upgrade; the listeners are copies kept for
/// this, since the proxy and the admin API close theirs when they stop.
#[derive(Debug)]
pub struct Shared {
    /// The base dir's lock file, holding the `flock`.
    pub lock: RawFd,
    /// The users' listener, until a shutdown that hands nothing on lets it go ([`Listening`]).
    pub proxy: Listening,
    /// The admin API's TCP listener, if it has one.
    pub admin: Option<OwnedFd>,
    /// The admin API's unix socket listener.
    pub socket: OwnedFd,
}

/// The copy of the users' listener kept for a successor. A shutdown that hands nothing on takes
/// it away at once, so the socket stops listening with the proxy's own copies (unless a successor
/// holds one): users who come during the drain are refused, not left in the kernel's backlog to
/// be reset at exit.
pub type Listening = std::sync::Arc<std::sync::Mutex<Option<OwnedFd>>>;

/// One child handed over: what the new understudy needs to own it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Child {
    /// The part it plays in the supervisor (`running`, `secondary`, `testing`).
    pub part: String,
    /// The version it runs.
    pub version: Version,
    /// Its instance folder number.
    pub number: u32,
    /// Its instance folder.
    pub dir: PathBuf,
    /// Its port.
    pub port: u16,
    /// Its pid, also its process group id.
    pub pid: u32,
    /// If it was still starting: when its READY_TIMEOUT ends, in milliseconds of the boot-time
    /// monotonic clock both understudies read, so the new one keeps the old deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_by: Option<u64>,
}

impl Child {
    /// Hand it over still starting, to be reported not ready at `until` unless it answers.
    pub fn starting_until(&mut self, until: tokio::time::Instant) {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        let by = since_boot().saturating_add(left).as_millis();
        self.ready_by = Some(u64::try_from(by).unwrap_or(u64::MAX));
    }

    /// What is left of its READY_TIMEOUT, at most `max`, if it was handed over still starting.
    pub fn ready_left(&self, max: Duration) -> Option<Duration> {
        let by = Duration::from_millis(self.ready_by?);
        Some(by.saturating_sub(since_boot()).min(max))
    }
}

/// CLOCK_MONOTONIC, the clock `Instant` reads, as time since boot: the same in every process.
pub fn since_boot() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into a valid local; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(ts.tv_nsec).unwrap_or(0).min(999_999_999);
    Duration::new(secs, nanos)
}

/// What [`ENV`] says: which inherited descriptor is what.
#[derive(Debug, Serialize, Deserialize)]
struct Plan {
    from: u32,
    lock: RawFd,
    proxy: RawFd,
    admin: Option<RawFd>,
    socket: RawFd,
    ready: RawFd,
    /// Each child with the descriptor of understudy's end of its link.
    children: Vec<(Child, RawFd)>,
}

/// How long a new understudy has to say it serves before it is killed and the old one goes on.
pub const READY_WITHIN: Duration = Duration::from_secs(30);

/// What one understudy process needs for upgrades, both ways: what it was handed (if an upgrade
/// started it) and what it can hand on.
#[derive(Debug, Default)]
pub struct Succession {
    /// The base dir lock's descriptor (held by `main`'s guard), to hand on.
    pub lock: Option<RawFd>,
    /// The children handed to this process, to adopt.
    pub taken: Vec<(Child, OwnedFd)>,
    /// Where to say this process serves, when an upgrade started it.
    pub ready: Option<ReadyPipe>,
    /// The old understudy's pid, when an upgrade started this process: once it is gone, systemd
    /// has been told `MAINPID=` of this one and takes its notifications.
    pub from: Option<u32>,
    /// Cancelled once this process handed over to a new one: it then exits, stopping no child.
    pub handed: tokio_util::sync::CancellationToken,
    /// Cancelled once this process serves as the base dir's understudy: at once when started
    /// plainly, once it said `ready` when an upgrade started it. Before, it stops no child it
    /// adopted (the old one takes them back), keeps the socket file and starts no upgrade.
    pub serving: tokio_util::sync::CancellationToken,
    /// The new process's pid, once handed over (for systemd's `MAINPID=`).
    pub successor: std::sync::Arc<std::sync::atomic::AtomicU32>,
    /// The descriptors to hand on, filled in by `run` once everything is bound.
    pub shared: Option<Shared>,
    /// Variables the next understudy needs that this one removed from its own environment
    /// (systemd's `NOTIFY_SOCKET`, `WATCHDOG_USEC`).
    pub env: Vec<(&'static str, String)>,
    /// Why this process, started by an upgrade, gave up taking over (it gave back a child it
    /// could not keep): said to the old one at once, rather than after its whole wait.
    pub given_up: std::sync::Arc<std::sync::OnceLock<String>>,
    /// Cancelled once `given_up` is set.
    pub giving_up: tokio_util::sync::CancellationToken,
    /// Cancelled by SIGTERM or SIGINT: a stop asked for while a handover runs is passed on to
    /// the new understudy, unlike this process's own stop once it handed over.
    pub stop_asked: tokio_util::sync::CancellationToken,
}

/// The program this understudy runs, as a path: the default binary of an upgrade. The file may
/// have been replaced since (that is the point): the link then ends in " (deleted)".
pub fn own_binary() -> PathBuf {
    let exe = std::fs::read_link("/proc/self/exe").unwrap_or_else(|_| PathBuf::from("understudy"));
    let text = exe.as_os_str().as_encoded_bytes();
    match text.strip_suffix(b" (deleted)") {
        // SAFETY: cutting an ASCII suffix off keeps the bytes valid for an OsStr.
        Some(path) => PathBuf::from(unsafe { std::ffi::OsStr::from_encoded_bytes_unchecked(path) }),
        None => exe,
    }
}

/// Why an upgrade did not happen; the old understudy goes on serving.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// This understudy is shutting down and no longer listens for users.
    #[error("this understudy is shutting down; start the new one with `understudy run` instead")]
    Stopping,
    /// The new binary could not be started at all.
    #[error("cannot start the new understudy {binary}: {source}")]
    Spawn {
        /// The binary asked for.
        binary: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A descriptor could not be prepared for handing over.
    #[error("cannot hand over descriptor {fd}: {source}")]
    Descriptor {
        /// The descriptor.
        fd: RawFd,
        /// The OS error.
        source: std::io::Error,
    },
    /// The new understudy ended, or said why, before it was ready.
    #[error("the new understudy {binary} (pid {pid}) failed before it was ready: {why}; this understudy goes on serving")]
    Failed {
        /// The binary asked for.
        binary: PathBuf,
        /// Its pid.
        pid: u32,
        /// Its own message, or its exit status.
        why: String,
    },
    /// The new understudy was not ready in time and was killed.
    #[error("the new understudy {binary} (pid {pid}) was not ready within {timeout:?} and was killed; this understudy goes on serving")]
    Timeout {
        /// The binary asked for.
        binary: PathBuf,
        /// Its pid.
        pid: u32,
        /// How long it had.
        timeout: Duration,
    },
    /// understudy was asked to stop (SIGTERM, SIGINT) while the new one got ready: the new one
    /// was killed, and this one stops as asked, with its children.
    #[error("understudy was asked to stop while the new understudy {binary} (pid {pid}) got ready: it was killed, and this understudy stops as asked")]
    Stopped {
        /// The binary asked for.
        binary: PathBuf,
        /// Its pid.
        pid: u32,
    },
}

/// The new understudy's program, arguments and the variables it needs besides the plan.
#[derive(Debug, Clone, Copy)]
pub struct Successor<'a> {
    /// The binary to start.
    pub binary: &'a Path,
    /// Its arguments (the old one's own).
    pub args: &'a [OsString],
    /// Variables the old one removed from its own environment but the new one needs.
    pub env: &'a [(&'static str, String)],
}

/// Start the new understudy and hand it `shared` and `children` (each with understudy's end of
/// its link); returns its pid once it said it is ready. On an error the new process is gone
/// (killed if it still ran) and every descriptor is still ours.
pub async fn hand_over(
    to: Successor<'_>,
    shared: &Shared,
    children: &[(Child, OwnedFd)],
    (timeout, stop): (Duration, &tokio_util::sync::CancellationToken),
) -> Result<u32, UpgradeError> {
    let (ready_r, ready_w) =
        std::io::pipe().map_err(|source| UpgradeError::Descriptor { fd: -1, source })?;
    let (plan, high) = plan(shared, children, &ready_w)?;
    let spawned = command(to, &plan, &high).spawn();
    drop((high, ready_w));
    let child = spawned.map_err(|source| UpgradeError::Spawn {
        binary: to.binary.to_path_buf(),
        source,
    })?;
    await_ready(child, ready_r, (timeout, stop), to.binary).await
}

/// The plan the new process reads, and the copies of the descriptors it names (in plan order:
/// lock, proxy, socket, ready, admin, children), to become its descriptors 3, 4, ...
fn plan(
    shared: &Shared,
    children: &[(Child, OwnedFd)],
    ready: &std::io::PipeWriter,
) -> Result<(String, Vec<OwnedFd>), UpgradeError> {
    let proxy = shared.proxy.lock().unwrap_or_else(|p| p.into_inner());
    let proxy = proxy.as_ref().ok_or(UpgradeError::Stopping)?;
    let mut sources = vec![
        shared.lock,
        proxy.as_raw_fd(),
        shared.socket.as_raw_fd(),
        ready.as_raw_fd(),
    ];
    sources.extend(shared.admin.as_ref().map(|fd| fd.as_raw_fd()));
    sources.extend(children.iter().map(|(_, fd)| fd.as_raw_fd()));
    let high = lift(&sources)?;
    let at = |i: usize| 3 + i as RawFd;
    let first_child = 4 + usize::from(shared.admin.is_some());
    let plan = Plan {
        from: std::process::id(),
        lock: at(0),
        proxy: at(1),
        socket: at(2),
        ready: at(3),
        admin: shared.admin.as_ref().map(|_| at(4)),
        children: children
            .iter()
            .enumerate()
            .map(|(i, (c, _))| (c.clone(), at(first_child + i)))
            .collect(),
    };
    let plan = serde_json::to_string(&plan).map_err(|e| UpgradeError::Descriptor {
        fd: -1,
        source: std::io::Error::other(format!("cannot write the handover plan: {e}")),
    })?;
    Ok((plan, high))
}

/// The new understudy's command: `high[i]` becomes its descriptor `3 + i`.
fn command(to: Successor<'_>, plan: &str, high: &[OwnedFd]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(to.binary);
    cmd.args(to.args)
        .envs(to.env.iter().map(|(k, v)| (*k, v.as_str())))
        .env(ENV, plan)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(false);
    let targets: Vec<(RawFd, RawFd)> = high
        .iter()
        .enumerate()
        .map(|(i, fd)| (fd.as_raw_fd(), 3 + i as RawFd))
        .collect();
    // SAFETY: `pre_exec` runs in the forked child before exec, where only async-signal-safe work
    // is allowed: `dup2` on integers copied in before the fork. Every source is above the
    // highest target (see `lift`), so no dup2 overwrites a source not yet copied.
    unsafe {
        cmd.pre_exec(move || {
            for &(from, to) in &targets {
                if libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd
}

/// Wait for the new process to say `ready` within `timeout`, or until a stop is asked for (a
/// word already said wins); otherwise why not, with it gone.
async fn await_ready(
    mut child: tokio::process::Child,
    ready: std::io::PipeReader,
    (timeout, stop): (Duration, &tokio_util::sync::CancellationToken),
    binary: &Path,
) -> Result<u32, UpgradeError> {
    let pid = child.id().unwrap_or(0);
    let said = tokio::select! {
        biased;
        said = tokio::time::timeout(timeout, read_ready(ready)) => said.ok(),
        () = stop.cancelled() => None,
    };
    let Some(text) = said else {
        // SIGKILL: it must not stop the children it may have adopted (the old one's, not its
        // descendants). What it started itself goes with it: a wrapper script's own children.
        let descendants = descendants(pid);
        let _ = child.start_kill();
        for d in descendants {
            // SAFETY: kill(2) on a pid read from /proc just before; no memory is touched.
            unsafe { libc::kill(d as libc::pid_t, libc::SIGKILL) };
        }
        let _ = child.wait().await;
        let binary = binary.to_path_buf();
        return Err(match stop.is_cancelled() {
            true => UpgradeError::Stopped { binary, pid },
            false => UpgradeError::Timeout {
                binary,
                pid,
                timeout,
            },
        });
    };
    if text.trim_end() == "ready" {
        return Ok(pid);
    }
    let status = match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
        Ok(Ok(s)) => s.to_string(),
        _ => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            "still running without saying it is ready; killed".to_string()
        }
    };
    let why = text.trim().strip_prefix("error ").unwrap_or(text.trim());
    Err(UpgradeError::Failed {
        binary: binary.to_path_buf(),
        pid,
        why: if why.is_empty() {
            format!("it exited ({status})")
        } else {
            format!("{why} ({status})")
        },
    })
}

/// Every process below `pid` (children, theirs, ...), read from `/proc/<pid>/task/*/children`;
/// empty where that is not there.
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut next = vec![pid];
    while let Some(p) = next.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for c in text
                .split_whitespace()
                .filter_map(|w| w.parse::<u32>().ok())
            {
                // Bounded: a pid is taken once, however the tree changes meanwhile.
                if c != pid && !found.contains(&c) && found.len() < 4096 {
                    found.push(c);
                    next.push(c);
                }
            }
        }
    }
    found
}

/// Copies of `fds` numbered above the highest target (`3 + fds.len()`), close-on-exec.
fn lift(fds: &[RawFd]) -> Result<Vec<OwnedFd>, UpgradeError> {
    let floor = 3 + fds.len() as RawFd;
    fds.iter()
        .map(|&fd| {
            // SAFETY: F_DUPFD_CLOEXEC only reads `fd` (kept open by its owner) and returns a new
            // descriptor, which the OwnedFd then owns.
            let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, floor) };
            if copy < 0 {
                return Err(UpgradeError::Descriptor {
                    fd,
                    source: std::io::Error::last_os_error(),
                });
            }
            Ok(unsafe { OwnedFd::from_raw_fd(copy) })
        })
        .collect()
}

/// What the new process wrote on the ready pipe before closing it or ending.
async fn read_ready(pipe: std::io::PipeReader) -> String {
    tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        let _ = pipe.take(MAX_READY).read_to_string(&mut text);
        text
    })
    .await
    .unwrap_or_default()
}

/// What a new understudy was handed by the old one.
#[derive(Debug)]
pub struct Takeover {
    /// The old understudy's pid.
    pub from: u32,
    /// The base dir's lock file, still locked.
    pub lock: OwnedFd,
    /// The users' listener.
    pub proxy: std::net::TcpListener,
    /// The admin API's TCP listener, if the old one had one.
    pub admin: Option<std::net::TcpListener>,
    /// The admin API's unix socket listener.
    pub socket: std::os::unix::net::UnixListener,
    /// Where to say `ready` (or `error …`).
    pub ready: ReadyPipe,
    /// The children, each with understudy's end of its link.
    pub children: Vec<(Child, OwnedFd)>,
}

/// The pipe on which the new understudy tells the old one it serves, or why it cannot.
#[derive(Debug)]
pub struct ReadyPipe(OwnedFd);

impl ReadyPipe {
    /// Say `line` (`ready`, or `error <why>`) and close the pipe.
    pub fn say(self, line: &str) {
        let mut f = std::fs::File::from(self.0);
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}

/// Why a handover plan cannot be taken.
#[derive(Debug, thiserror::Error)]
#[error("{ENV}: {0}; this variable is set by `understudy upgrade` only")]
pub struct TakeoverError(String);

impl Takeover {
    /// Read and remove [`ENV`] and take over the descriptors it names. Call it before any thread
    /// starts. `Ok(None)` when understudy was not started by an upgrade.
    pub fn from_env() -> Result<Option<Takeover>, TakeoverError> {
        let Some(text) = std::env::var_os(ENV) else {
            return Ok(None);
        };
        std::env::remove_var(ENV);
        let text = text.to_string_lossy();
        if text.len() > MAX_PLAN {
            return Err(TakeoverError(format!("longer than {MAX_PLAN} bytes")));
        }
        let plan: Plan = serde_json::from_str(&text).map_err(|e| TakeoverError(e.to_string()))?;
        check(&plan)?;
        // SAFETY: each descriptor is open, above stdio, named once, and was handed to this
        // process by the old understudy for it alone; each is owned once from here on and made
        // close-on-exec, so no child or hook inherits it.
        let own = |fd: RawFd| unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            OwnedFd::from_raw_fd(fd)
        };
        Ok(Some(Takeover {
            from: plan.from,
            lock: own(plan.lock),
            proxy: own(plan.proxy).into(),
            admin: plan.admin.map(|fd| own(fd).into()),
            socket: own(plan.socket).into(),
            ready: ReadyPipe(own(plan.ready)),
            children: plan
                .children
                .into_iter()
                .map(|(c, fd)| (c, own(fd)))
                .collect(),
        }))
    }
}

/// Every descriptor the plan names is open, above stdio, named once and of its kind; every
/// child's pid could be one (a pid of 0 or 1 would make a stop signal the wrong group).
fn check(plan: &Plan) -> Result<(), TakeoverError> {
    let mut fds = vec![
        (plan.lock, libc::S_IFREG),
        (plan.proxy, libc::S_IFSOCK),
        (plan.socket, libc::S_IFSOCK),
        (plan.ready, libc::S_IFIFO),
    ];
    fds.extend(plan.admin.map(|fd| (fd, libc::S_IFSOCK)));
    fds.extend(plan.children.iter().map(|(_, fd)| (*fd, libc::S_IFSOCK)));
    let mut seen = std::collections::BTreeSet::new();
    for (fd, kind) in fds {
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fstat writes a whole `stat` into the buffer when it returns 0.
        let ok = fd >= 3
            && seen.insert(fd)
            && unsafe { libc::fstat(fd, st.as_mut_ptr()) } == 0
            && unsafe { st.assume_init() }.st_mode & libc::S_IFMT == kind;
        if !ok {
            return Err(TakeoverError(format!(
                "descriptor {fd} is not an open inherited one of the kind it is named for"
            )));
        }
    }
    match plan
        .children
        .iter()
        .find(|(c, _)| c.pid < 2 || c.pid > i32::MAX as u32)
    {
        Some((c, _)) => Err(TakeoverError(format!("{} cannot be a child's pid", c.pid))),
        None => Ok(()),
    }
}

/// After a failed upgrade, name this process in `admin.json` again if the new one wrote its own
/// there (it does just before it says `ready`, and may have died in between). Nothing to do when
/// the file names this process, or is missing or not JSON.
pub fn reclaim_admin_json(path: &Path) -> std::io::Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let Ok(mut info) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Ok(());
    };
    let me = std::process::id();
    if info["pid"].as_u64() == Some(u64::from(me)) {
        return Ok(());
    }
    info["pid"] = me.into();
    crate::layout::write_atomic(path, info.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new binary that never says ready is killed with what it started (a wrapper script's
    /// `sleep` survived it): its descendants are found, grandchildren included.
    #[test]
    fn the_descendants_of_a_process_are_found_to_the_grandchildren() {
        let mut sh = std::process::Command::new("sh")
            .args(["-c", "sh -c 'sleep 30 & wait' & sleep 30 & wait"])
            .spawn()
            .unwrap();
        let pid = sh.id();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut found = descendants(pid);
        while found.len() < 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            found = descendants(pid);
        }
        for d in &found {
            // SAFETY: kill(2) on processes this test started.
            unsafe { libc::kill(*d as libc::pid_t, libc::SIGKILL) };
        }
        sh.kill().unwrap();
        sh.wait().unwrap();
        assert_eq!(found.len(), 3, "a shell and two sleeps below it: {found:?}");
        assert!(!found.contains(&pid));
    }

    #[test]
    fn lifted_copies_are_above_every_target_and_close_on_exec() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let fds = [a.as_raw_fd(), b.as_raw_fd(), 0];
        let high = lift(&fds).unwrap();
        for fd in &high {
            assert!(fd.as_raw_fd() >= 3 + fds.len() as RawFd);
            let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
            assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        }
    }

    #[test]
    fn a_plan_naming_the_wrong_descriptors_or_pids_is_refused() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (_r, w) = std::io::pipe().unwrap();
        let lock = tempfile::tempfile().unwrap();
        let child = Child {
            part: "running".into(),
            version: Version::new(1, 0, 0),
            number: 1,
            dir: "/b/app-1.0.0/1".into(),
            port: 9000,
            pid: 42,
            ready_by: None,
        };
        let (c, d) = std::os::unix::net::UnixStream::pair().unwrap();
        let plan = |lock: RawFd, proxy: RawFd, pid: u32| Plan {
            from: 7,
            lock,
            proxy,
            admin: None,
            socket: b.as_raw_fd(),
            ready: w.as_raw_fd(),
            children: vec![(
                Child {
                    pid,
                    ..child.clone()
                },
                c.as_raw_fd(),
            )],
        };
        check(&plan(lock.as_raw_fd(), a.as_raw_fd(), 42)).unwrap();
        for (bad, what) in [
            (plan(a.as_raw_fd(), lock.as_raw_fd(), 42), "kinds swapped"),
            (
                plan(lock.as_raw_fd(), b.as_raw_fd(), 42),
                "one descriptor named twice",
            ),
            (plan(lock.as_raw_fd(), 1, 42), "stdout"),
            (plan(lock.as_raw_fd(), 100_000, 42), "not open"),
            (plan(lock.as_raw_fd(), a.as_raw_fd(), 1), "pid 1"),
            (plan(lock.as_raw_fd(), a.as_raw_fd(), 0), "pid 0"),
        ] {
            assert!(check(&bad).is_err(), "{what}");
        }
        drop(d);
    }

    #[test]
    fn a_plan_round_trips() {
        let plan = Plan {
            from: 7,
            lock: 3,
            proxy: 4,
            admin: None,
            socket: 5,
            ready: 6,
            children: vec![(
                Child {
                    part: "running".into(),
                    version: Version::new(1, 0, 0),
                    number: 2,
                    dir: "/b/app-1.0.0/2".into(),
                    port: 9000,
                    pid: 42,
                    ready_by: Some(123),
                },
                7,
            )],
        };
        let text = serde_json::to_string(&plan).unwrap();
        let back: Plan = serde_json::from_str(&text).unwrap();
        assert_eq!(back.children, plan.children);
        assert_eq!((back.lock, back.ready, back.admin), (3, 6, None));
    }

    #[test]
    fn a_failed_upgrade_names_this_process_in_admin_json_again() {
        let dir = std::env::temp_dir().join(format!("us-reclaim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("admin.json");
        std::fs::write(
            &path,
            r#"{"pid":4194000,"listen":"127.0.0.1:9","socket":"/x"}"#,
        )
        .unwrap();
        reclaim_admin_json(&path).unwrap();
        let info: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(info["pid"], std::process::id());
        assert_eq!(info["listen"], "127.0.0.1:9", "the rest is kept");
        std::fs::remove_file(&path).unwrap();
        reclaim_admin_json(&path).expect("a missing file is left missing");
        assert!(!path.exists());
        std::fs::remove_dir(&dir).unwrap();
    }
}
