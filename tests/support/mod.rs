//! Test support: a temp base dir, fixture builds, the real understudy binary as a child process
//! (SIGTERM and reap on drop), a tiny HTTP client, polling with deadlines, and the orphan check;
//! the children a test starts itself in `children`, the shared disk in `machine`, background
//! traffic in `traffic`.

#![allow(dead_code)]

mod children;
mod machine;
mod traffic;

pub use children::*;
pub use machine::*;
pub use traffic::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_understudy");

/// Each base dir gets its own slice of ports for children, so parallel tests never compete.
static NEXT_RANGE: AtomicU16 = AtomicU16::new(0);

/// The variables systemd sets for its services' main process.
pub const SYSTEMD_VARS: [&str; 6] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
];

/// The proxy variables the webhook client reads: a developer's or CI's own would send the tests'
/// loopback receivers through a proxy; only the test that means to set them (tests/webhooks_tls.rs)
/// does.
pub const PROXY_VARS: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// A temp base dir under cargo's target tmp dir, removed on drop.
pub struct Base {
    pub path: PathBuf,
    pub port_range: (u16, u16),
    _dir: tempfile::TempDir,
    _ports: nix::fcntl::Flock<std::fs::File>,
}

/// Ports for children come in slices of this many, below the kernel's ephemeral range (32768+)
/// so that outgoing connections never take them.
const PORT_SLICE: u16 = 20;
const PORT_SLICES: std::ops::Range<u16> = 21000..32000;

/// Claim a slice of ports no other test holds, in this process or any other running at the same
/// time: a `flock` per slice, held as long as the base dir lives.
fn claim_ports() -> (u16, nix::fcntl::Flock<std::fs::File>) {
    use nix::fcntl::{Flock, FlockArg};
    let dir = std::env::temp_dir().join("understudy-test-ports");
    std::fs::create_dir_all(&dir).unwrap();
    let first = NEXT_RANGE.fetch_add(1, Ordering::Relaxed);
    let slices = (PORT_SLICES.end - PORT_SLICES.start) / PORT_SLICE;
    for i in 0..slices {
        let start = PORT_SLICES.start + ((first + i) % slices) * PORT_SLICE;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(start.to_string()))
            .unwrap();
        if let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            return (start, lock);
        }
    }
    panic!("every port slice in {PORT_SLICES:?} is held by other tests");
}

impl Base {
    pub fn new(name: &str) -> Base {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let (start, lock) = claim_ports();
        Base {
            path: std::fs::canonicalize(dir.path()).unwrap(),
            port_range: (start, start + PORT_SLICE - 1),
            _dir: dir,
            _ports: lock,
        }
    }

    /// `.env` with the basics plus `extra` lines. Replay is off unless `extra` says `REPLAY=auto`:
    /// the tests that count pairs or wait on purpose mean live pairs only. The proxy takes a port the kernel picks
    /// (`LISTEN=127.0.0.1:0`), read back from `admin.json`: a port chosen beforehand could be
    /// taken by another test before understudy binds it.
    pub fn write_env(&self, extra: &str) {
        let text = format!(
            "IDENTIFIER=app\nLISTEN=127.0.0.1:0\nPORT_RANGE={}-{}\nSETTLE_TIME=200ms\nSHUTDOWN_GRACE=2s\nREADY_TIMEOUT=10s\nLOG_LEVEL=info\nREPLAY=off\n{extra}\n",
            self.port_range.0, self.port_range.1
        );
        std::fs::write(self.path.join(".env"), text).unwrap();
    }

    /// The script a fixture build consists of.
    pub fn fixture_script(version: &str, faults: &str) -> String {
        format!("#!/bin/sh\nexec '{BIN}' fixture-app --version {version} {faults}\n")
    }

    /// Drop a fixture build the way a deploy tool does: written elsewhere, then `mv`ed in.
    pub fn drop_fixture(&self, version: &str, faults: &str) {
        self.drop_script(version, &Self::fixture_script(version, faults));
    }

    /// Drop a fixture build that passes as testing and, started as running, runs with the
    /// faults `as_running` (a build that fails in production only: a crash, a hang).
    pub fn drop_fixture_as_running(&self, version: &str, as_running: &str) {
        self.drop_script(
            version,
            &format!(
                "#!/bin/sh\nif [ \"$UNDERSTUDY_ROLE\" = running ]; then faults='{as_running}'; fi\nexec '{BIN}' fixture-app --version {version} $faults\n"
            ),
        );
    }

    /// Drop `app-<version>` holding `script`, written beside it and `mv`ed in whole.
    pub fn drop_script(&self, version: &str, script: &str) {
        let tmp = self.path.join(format!(".app-{version}.tmp"));
        std::fs::write(&tmp, script).unwrap();
        std::fs::rename(&tmp, self.path.join(format!("app-{version}"))).unwrap();
    }

    /// Drop a fixture build whose start script runs the server *without* `exec` (then says how it
    /// ended, so no shell can turn the last command into an `exec`): the shell is the instance's
    /// leader and the server its child, a grandchild of understudy.
    pub fn drop_wrapped_fixture(&self, version: &str, faults: &str) {
        let script = format!(
            "#!/bin/sh\n'{BIN}' fixture-app --version {version} {faults}\necho \"wrapper: the server exited with $?\" >&2\n"
        );
        self.drop_script(version, &script);
    }

    /// Drop a fixture build the way `cp` does: written in place.
    pub fn copy_fixture(&self, version: &str, faults: &str) {
        std::fs::write(
            self.path.join(format!("app-{version}")),
            Self::fixture_script(version, faults),
        )
        .unwrap();
    }

    pub fn link(&self, role: &str) -> Option<PathBuf> {
        std::fs::read_link(self.path.join(role)).ok()
    }

    /// The version folder name a role's symlink points into (`app-1.0.0`), if any.
    pub fn version_of(&self, role: &str) -> Option<String> {
        self.link(role).and_then(|l| {
            l.components()
                .next()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
        })
    }

    /// Port and pid of the instance a role's symlink points at.
    pub fn instance_info(&self, role: &str) -> Option<(u16, i32)> {
        let text = std::fs::read_to_string(self.path.join(role).join("instance.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        Some((v["port"].as_u64()? as u16, v["pid"].as_i64()? as i32))
    }

    /// [`Base::instance_info`] once the role's symlink and its `instance.json` are there: the
    /// symlink follows the route by a moment, so a build can serve before it appears.
    pub fn wait_instance_info(&self, role: &str) -> (u16, i32) {
        wait_until(
            &format!("{role}'s instance.json"),
            Duration::from_secs(10),
            || self.instance_info(role),
        )
    }

    /// The pid of the watchdog guarding the instance a role's symlink points at, if it has one.
    pub fn watchdog_pid(&self, role: &str) -> Option<i32> {
        let text = std::fs::read_to_string(self.path.join(role).join("instance.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        Some(v["watchdog_pid"].as_i64()? as i32)
    }

    /// Wait until the testing instance is up and routed (its symlink appears only then).
    pub fn wait_testing(&self) -> serde_json::Value {
        wait_until("testing to be ready", Duration::from_secs(10), || {
            self.fixture_stats("testing")
        })
    }

    /// A fixture's own request counters, asked directly (not through the proxy).
    pub fn fixture_stats(&self, role: &str) -> Option<serde_json::Value> {
        let (port, _) = self.instance_info(role)?;
        let (status, body) = http(
            SocketAddr::from(([127, 0, 0, 1], port)),
            "GET",
            "/__fixture/stats",
        )
        .ok()?;
        (status == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten()
    }
}

impl Drop for Base {
    fn drop(&mut self) {
        // Children first; the folder goes with the TempDir afterwards.
        kill_leftovers(&self.path);
    }
}

/// A base dir with `extra_env`, understudy started, v1.0.0 running and v1.1.0 testing.
pub fn start_with_testing(name: &str, extra_env: &str) -> (Base, Understudy) {
    let base = Base::new(name);
    base.write_env(extra_env);
    let u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    base.drop_fixture("1.1.0", "");
    base.wait_testing();
    (base, u)
}

/// A loopback address nobody listens on right now (and may take any moment): only for an address
/// that must refuse, such as a dead webhook. understudy's own `LISTEN` is always port 0.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The real understudy binary, supervising a base dir.
pub struct Understudy {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub log: PathBuf,
    base: PathBuf,
}

impl Understudy {
    pub fn start(base: &Base) -> Understudy {
        Self::start_with_env(base, &[])
    }

    /// Start with extra environment variables (fault injection, `UNDERSTUDY_<KEY>` overrides).
    pub fn start_with_env(base: &Base, env: &[(&str, &str)]) -> Understudy {
        Self::start_limited(base, env, None)
    }

    /// Start with the open-files limit (soft and hard) set to `nofile`, as `ulimit -n` would.
    pub fn start_limited(base: &Base, env: &[(&str, &str)], nofile: Option<u64>) -> Understudy {
        let mut cmd = Self::command(base, env);
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        Self::start_command(base, cmd)
    }

    /// Start with writes past `bytes` into any one file refused, as a disk that fills up
    /// mid-copy refuses them: `ulimit -f`, with `SIGXFSZ` ignored so a write fails (`EFBIG`)
    /// rather than kills. [`Understudy::set_file_size_limit`] lifts it.
    pub fn start_file_size_limited(base: &Base, bytes: u64) -> Understudy {
        use std::os::unix::process::CommandExt;
        let mut cmd = Self::command(base, &[]);
        // SAFETY: setrlimit and signal are async-signal-safe; nothing else runs between fork
        // and exec, and an ignored signal stays ignored across exec.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: bytes,
                    rlim_max: libc::RLIM_INFINITY,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                Ok(())
            });
        }
        Self::start_command(base, cmd)
    }

    /// Set the largest file understudy may write (`RLIM_INFINITY`: no limit), as freeing disk
    /// space lets a copy that failed go through.
    pub fn set_file_size_limit(&self, bytes: u64) {
        let lim = libc::rlimit {
            rlim_cur: bytes,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: prlimit reads `lim` only; the pid is understudy's, still running.
        let rc = unsafe {
            libc::prlimit(
                self.pid() as libc::pid_t,
                libc::RLIMIT_FSIZE,
                &lim,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    }

    /// Start as user and group `id` (the test must run as root, and `base` belong to `id`), as
    /// under the shipped systemd unit, where understudy is not the user who drops builds.
    pub fn start_as(base: &Base, id: u32) -> Understudy {
        use std::os::unix::process::CommandExt;
        let mut cmd = Self::command(base, &[]);
        // std drops the supplementary groups too when root changes the user.
        cmd.uid(id).gid(id);
        Self::start_command(base, cmd)
    }

    /// `understudy run` on `base` with `env`, and none of the runner's own systemd or proxy
    /// variables.
    pub fn command(base: &Base, env: &[(&str, &str)]) -> Command {
        // The admin API's default port would be shared by every test running at once: unless a
        // test chooses, each understudy takes an ephemeral one (written to admin.json).
        let env_file = std::fs::read_to_string(base.path.join(".env")).unwrap_or_default();
        let admin_default = (!env_file.contains("ADMIN_LISTEN")
            && !env.iter().any(|(k, _)| k.contains("ADMIN_LISTEN")))
        .then_some(("UNDERSTUDY_ADMIN_LISTEN", "127.0.0.1:0"));
        let mut cmd = Command::new(BIN);
        // A test runner under systemd must not lend its manager's variables to understudy: only
        // the tests that mean to set them (tests/systemd.rs) do.
        for k in SYSTEMD_VARS.iter().chain(&PROXY_VARS) {
            cmd.env_remove(k);
        }
        cmd.args(["run", "--base"])
            .arg(&base.path)
            .envs(admin_default)
            .envs(env.iter().copied());
        cmd
    }

    /// Start understudy through `cmd`, which names the program and its arguments (understudy
    /// itself, or a shell that `exec`s it) and any environment; its stderr goes to the log.
    /// Returns once it listens.
    pub fn start_command(base: &Base, mut cmd: Command) -> Understudy {
        let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "{}.log",
            base.path.file_name().unwrap().to_string_lossy()
        ));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut u = Understudy {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            base: base.path.clone(),
        };
        let child = u.child.as_mut().unwrap();
        let pid = child.id();
        u.addr = wait_until("understudy to listen", Duration::from_secs(10), || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "understudy exited ({status}) before listening; log:\n{}",
                    std::fs::read_to_string(&u.log).unwrap_or_default()
                );
            }
            proxy_addr(base, pid)
        });
        u
    }

    /// Wait until a build serves through the proxy.
    /// Until a running build serves `/` and its `running` link is in place (the link follows the
    /// switch that made it serve, so tests that read `running/` wait for both).
    pub fn wait_serving(&self) {
        let link = self.base.join("running");
        wait_until("a running build to serve", Duration::from_secs(10), || {
            (self.get("/").0 == 200 && std::fs::canonicalize(&link).is_ok()).then_some(())
        });
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http(self.addr, "GET", path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("understudy is running").id()
    }

    /// SIGKILL understudy itself, as a crash or an OOM kill would.
    pub fn kill_hard(&mut self) {
        let mut c = self.child.take().expect("understudy is running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// Wait for understudy to exit on its own and return its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let child = self.child.as_mut().expect("understudy is running");
        let status = wait_until("understudy to exit", limit, || child.try_wait().unwrap());
        self.child = None;
        status.code()
    }

    /// Send SIGTERM without waiting.
    pub fn sigterm(&self) {
        unsafe {
            libc::kill(self.pid() as i32, libc::SIGTERM);
        }
    }

    /// SIGHUP (a reload), then its log once it holds `marker` (within 10 s).
    pub fn reload_until(&self, marker: &str) -> String {
        // SAFETY: kill(2) on the understudy this test started.
        unsafe { libc::kill(self.pid() as i32, libc::SIGHUP) };
        wait_until(
            &format!("the reload to log {marker:?}"),
            Duration::from_secs(10),
            || {
                let log = self.log_text();
                log.contains(marker).then_some(log)
            },
        )
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, wait for exit, then check that no process of the base dir is left ([`leftovers`]:
    /// instances and their watchdogs).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "understudy exited with {status}; log:\n{}",
                    self.log_text()
                );
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("understudy did not stop within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // `leftovers`, not `processes_under`: a watchdog works in `/`, and only its arguments
        // name the base dir.
        let left = leftovers(&self.base);
        assert!(
            left.is_empty(),
            "processes left behind after understudy stopped: {left:?}"
        );
    }
}

impl Drop for Understudy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            kill_leftovers(&self.base);
        }
    }
}

/// Poll `f` every 20 ms until it yields, or panic naming `what` after `limit`.
pub fn wait_until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`wait_until`] whose timeout says what was last seen: `f` gives `Err(seen)` while it waits.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match f() {
            Ok(v) => return v,
            Err(seen) if Instant::now() > deadline => {
                panic!("timed out after {limit:?} waiting for {what}; last seen: {seen}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns status and body.
pub fn http(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    http_with_body(
        addr,
        method,
        path,
        if method == "POST" { "x=1" } else { "" },
    )
}

/// One HTTP/1.1 request with a body and `Connection: close`; returns status and body.
pub fn http_with_body(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    http_request(addr, method, path, &[], body)
}

/// One HTTP/1.1 request with extra headers and a body, `Connection: close`; status and body.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    write!(s, "{head}\r\n{body}")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Processes whose working directory is inside `dir` (every instance's cwd is its folder).
pub fn processes_under(dir: &Path) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cwd) = std::fs::read_link(e.path().join("cwd")) else {
            continue;
        };
        if cwd.starts_with(dir) {
            let cmd = std::fs::read_to_string(e.path().join("cmdline"))
                .unwrap_or_default()
                .replace('\0', " ");
            // A zombie has no cwd link; one we can still read is alive.
            out.push((pid, cmd));
        }
    }
    out
}

/// Live processes of a base dir in the widest sense: those working inside it (every instance's
/// cwd is its folder) and those with an argument inside it (a watchdog names its instance folder,
/// understudy its base dir). A zombie has neither a cwd link nor a command line.
pub fn leftovers(dir: &Path) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cwd_inside = std::fs::read_link(e.path().join("cwd")).is_ok_and(|c| c.starts_with(dir));
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if cwd_inside || args.iter().any(|a| Path::new(a).starts_with(dir)) {
            out.push((pid, args.join(" ")));
        }
    }
    out
}

/// The live watchdogs guarding instances of a base dir.
pub fn watchdogs(dir: &Path) -> Vec<(i32, String)> {
    leftovers(dir)
        .into_iter()
        .filter(|(_, cmd)| cmd.split(' ').nth(1) == Some("watchdog"))
        .collect()
}

/// The parent pid of a live process, from `/proc/<pid>/stat`.
pub fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Whether something accepts connections on a loopback port.
pub fn port_answers(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// SIGKILL every process of `dir` ([`leftovers`]: watchdogs too, and an understudy a test
/// started itself).
fn kill_leftovers(dir: &Path) {
    for (pid, _) in leftovers(dir) {
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

pub fn pid_alive(pid: i32) -> bool {
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Whether `pid` exists and is not a zombie (a killed process whose parent has not reaped it yet
/// is gone for every purpose but its pid).
pub fn process_running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_string()))
        .is_some_and(|r| !r.starts_with('Z') && !r.starts_with('X'))
}

/// The pid a fixture wrote to `file` in the instance folder a role's symlink points at.
pub fn read_pid_file(base: &Base, role: &str, file: &str) -> Option<i32> {
    std::fs::read_to_string(base.path.join(role).join(file))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The admin address and token understudy wrote for tools to find (`.understudy/admin.json`,
/// `.understudy/admin.token`).
pub fn admin(base: &Base) -> (SocketAddr, String) {
    let info = wait_until("admin.json", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(base.path.join(".understudy/admin.json")).ok()?;
        serde_json::from_str::<serde_json::Value>(&text).ok()
    });
    let addr = info["listen"]
        .as_str()
        .expect("a TCP listener")
        .parse()
        .unwrap();
    let token = std::fs::read_to_string(base.path.join(".understudy/admin.token")).unwrap();
    (addr, token.trim().to_string())
}

/// Where the understudy with `pid` bound its proxy, once its `admin.json` says so (an older
/// `admin.json`, left by an understudy before it, names another pid). An address on every
/// interface is reached on loopback.
pub fn proxy_addr(base: &Base, pid: u32) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(base.path.join(".understudy/admin.json")).ok()?;
    let info: serde_json::Value = serde_json::from_str(&text).ok()?;
    if info["pid"].as_u64() != Some(u64::from(pid)) {
        return None;
    }
    let mut addr: SocketAddr = info["proxy"].as_str()?.parse().ok()?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Some(addr)
}

/// [`proxy_addr`], waited for: understudy started another way than [`Understudy::start`].
pub fn wait_proxy_addr(base: &Base, pid: u32) -> SocketAddr {
    wait_until("understudy to listen", Duration::from_secs(10), || {
        proxy_addr(base, pid)
    })
}

/// One admin API call with a JSON body and, when given, the bearer token; status and the answer
/// as JSON (a body that is not JSON comes back as a JSON string).
pub fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    let (code, text) = http_request(addr, method, path, &headers, body).unwrap();
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (code, json)
}

/// The `Content-Length` a message head (request or answer, as text) declares; 0 without one.
/// Every head parsed here comes from understudy: a value that is not a number fails the test.
pub fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then(|| {
                v.trim()
                    .parse::<usize>()
                    .unwrap_or_else(|_| panic!("a Content-Length that is no number in {head:?}"))
            })
        })
        .unwrap_or(0)
}

/// Read one answer's head and its `Content-Length` body from a kept-alive connection.
pub fn read_answer(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before a whole answer");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            if body.len() >= content_length(head) {
                return head.to_string();
            }
        }
    }
}
