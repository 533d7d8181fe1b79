//! understudy under systemd, with systemd's part played by the test: a real datagram socket as
//! `NOTIFY_SOCKET`, real listeners passed from fd 3 on as socket activation passes them, and the
//! variables systemd sets, in the real binary's environment.

use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;

/// The shell line that starts understudy as systemd would: `LISTEN_PID` is the pid that runs
/// understudy (the shell's, which `exec` keeps).
const AS_SYSTEMD: &str = r#"LISTEN_PID=$$ exec "$0" run --base "$1""#;

/// systemd's end of `NOTIFY_SOCKET`: every datagram understudy sent, in order.
struct Manager {
    socket: UnixDatagram,
    /// What `NOTIFY_SOCKET` is set to.
    address: String,
    /// Every datagram received.
    seen: Vec<String>,
    /// How far [`Manager::wait_for`] has looked.
    read: usize,
    _dir: tempfile::TempDir,
}

impl Manager {
    /// A socket bound at a path in a temp dir.
    fn at_path() -> Manager {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        Manager::new(socket, path.to_str().unwrap().to_string(), dir)
    }

    /// A socket in the abstract namespace (`@name`), as systemd's own is.
    fn abstract_namespace() -> Manager {
        use std::os::linux::net::SocketAddrExt;
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("understudy-test-{}-{n}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        Manager::new(socket, format!("@{name}"), tempfile::tempdir().unwrap())
    }

    fn new(socket: UnixDatagram, address: String, dir: tempfile::TempDir) -> Manager {
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        Manager {
            socket,
            address,
            seen: Vec::new(),
            read: 0,
            _dir: dir,
        }
    }

    /// Every datagram that arrives within `limit`.
    fn receive(&mut self, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let first = self.seen.len();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                self.seen
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        self.seen[first..].to_vec()
    }

    /// The first datagram not yet looked at that satisfies `f`, waited for up to `limit`.
    fn wait_for(&mut self, what: &str, limit: Duration, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(i) = self.seen[self.read..].iter().position(|m| f(m)) {
                self.read += i + 1;
                return self.seen[self.read - 1].clone();
            }
            self.read = self.seen.len();
            assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}; got {:?}",
                self.seen
            );
            self.receive(Duration::from_millis(50));
        }
    }
}

/// The environment `pid` was started with (understudy's own, read there, would still show what
/// it removed: only what it passes on tells).
fn environ(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap()
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// Assert that `pid` inherited none of systemd's variables.
fn assert_no_systemd_vars(pid: i32) {
    let env = environ(pid);
    for k in SYSTEMD_VARS {
        assert!(
            !env.iter().any(|v| v.starts_with(&format!("{k}="))),
            "{pid} inherited {k}: {env:?}"
        );
    }
}

/// Whether `pid` holds an open descriptor of `socket`.
fn holds(pid: u32, socket: &impl AsRawFd) -> bool {
    // SAFETY: fstat writes into the zeroed struct only.
    let inode = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        assert_eq!(libc::fstat(socket.as_raw_fd(), &mut st), 0);
        st.st_ino
    };
    let wanted = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .any(|l| l.to_string_lossy() == wanted)
}

/// Give the child `fds` as its descriptors 3, 4, … (inheritable), as systemd passes sockets.
fn pass_fds(cmd: &mut Command, fds: Vec<RawFd>) {
    // SAFETY: only fcntl, dup2 and close run between fork and exec; all are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            // First out of the way (above 100), so that no dup2 overwrites a descriptor to come.
            let high: Vec<RawFd> = fds
                .iter()
                .map(|fd| libc::fcntl(*fd, libc::F_DUPFD, 100))
                .collect();
            for (i, fd) in high.iter().enumerate() {
                if *fd < 0 || libc::dup2(*fd, 3 + i as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(*fd);
            }
            Ok(())
        });
    }
}

/// `sh -c AS_SYSTEMD` for `base`, with none of the variables the test runner may have.
fn as_systemd(base: &Base) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(AS_SYSTEMD).arg(BIN).arg(&base.path);
    for k in SYSTEMD_VARS {
        cmd.env_remove(k);
    }
    cmd
}

#[test]
fn ready_at_once_without_a_build_then_status_as_it_changes_and_stopping_at_shutdown() {
    let base = Base::new("sd-notify");
    base.write_env("EVALUATE_EVERY=1s");
    let mut sd = Manager::at_path();
    let mut u = Understudy::start_with_env(&base, &[("NOTIFY_SOCKET", &sd.address)]);
    let ready = sd.wait_for("READY=1", Duration::from_secs(10), |m| {
        m.contains("READY=1")
    });
    assert!(ready.starts_with("READY=1"), "{ready}");
    assert!(
        sd.seen
            .iter()
            .any(|m| m.ends_with("STATUS=no running build")),
        "{:?}",
        sd.seen
    );
    assert_eq!(u.get("/").0, 503, "ready means listening");
    base.drop_fixture("1.0.0", "");
    sd.wait_for("running's status", Duration::from_secs(10), |m| {
        m == "STATUS=running 1.0.0"
    });
    base.drop_fixture("1.1.0", "");
    base.wait_testing();
    for i in 0..20 {
        u.get(&format!("/item/{i}"));
    }
    let verdict = sd.wait_for("a verdict in the status", Duration::from_secs(15), |m| {
        m.starts_with("STATUS=running 1.0.0; testing 1.1.0: wait (score ")
    });
    assert!(verdict.ends_with(" pairs)"), "{verdict}");
    let (_, testing) = base.wait_instance_info("testing");
    assert_no_systemd_vars(testing);
    u.sigterm();
    sd.wait_for("STOPPING=1", Duration::from_secs(10), |m| {
        m.starts_with("STOPPING=1\nSTATUS=stopping")
    });
    assert_eq!(u.wait_exit(Duration::from_secs(15)), Some(0));
    let readies = sd.seen.iter().filter(|m| m.contains("READY=1")).count();
    assert_eq!(readies, 1, "{:?}", sd.seen);
    assert!(processes_under(&base.path).is_empty());
}

/// The script of a build that takes a second before its server starts.
fn slow_start_script(version: &str) -> String {
    format!("#!/bin/sh\nsleep 1\nexec '{BIN}' fixture-app --version {version}\n")
}

#[test]
fn ready_waits_until_the_resumed_running_serves() {
    let base = Base::new("sd-resume");
    base.write_env("");
    let mut first = Understudy::start(&base);
    let tmp = base.path.join(".app-1.0.0.tmp");
    std::fs::write(&tmp, slow_start_script("1.0.0")).unwrap();
    std::fs::rename(&tmp, base.path.join("app-1.0.0")).unwrap();
    first.wait_serving();
    first.stop();
    let mut sd = Manager::at_path();
    let mut u = Understudy::start_with_env(&base, &[("NOTIFY_SOCKET", &sd.address)]);
    sd.wait_for("READY=1", Duration::from_secs(15), |m| {
        m.contains("READY=1")
    });
    // The moment systemd hears READY=1, users are served by the resumed build.
    let (code, body) = u.get("/");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("hello from 1.0.0"), "{body}");
    let starting = sd
        .seen
        .iter()
        .position(|m| m == "STATUS=running 1.0.0 (starting)");
    let ready = sd.seen.iter().position(|m| m.contains("READY=1"));
    assert!(starting < ready && starting.is_some(), "{:?}", sd.seen);
    u.stop();
}

#[test]
fn socket_activation_serves_on_the_passed_listeners() {
    let base = Base::new("sd-activation");
    base.write_env("");
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let admin_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cmd = as_systemd(&base);
    cmd.env("LISTEN_FDS", "2")
        .env("LISTEN_FDNAMES", "proxy:admin");
    pass_fds(
        &mut cmd,
        vec![proxy.as_raw_fd(), admin_listener.as_raw_fd()],
    );
    let mut u = Understudy::start_command(&base, cmd);
    assert_eq!(u.addr, proxy.local_addr().unwrap(), "{}", u.log_text());
    let (admin_addr, _) = admin(&base);
    assert_eq!(admin_addr, admin_listener.local_addr().unwrap());
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    let (code, status) = api(admin_addr, "GET", "/api/status", None, "");
    assert_eq!(code, 200, "{status}");
    assert_eq!(status["running"]["version"], "1.0.0");
    // understudy holds both sockets; its child holds neither and inherits no variable.
    let (_, child) = base.wait_instance_info("running");
    assert!(holds(u.pid(), &proxy) && holds(u.pid(), &admin_listener));
    assert!(!holds(child as u32, &proxy) && !holds(child as u32, &admin_listener));
    assert_no_systemd_vars(child);
    u.stop();
}

#[test]
fn sockets_passed_to_another_process_are_left_alone() {
    let base = Base::new("sd-other-pid");
    base.write_env("");
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--base"])
        .arg(&base.path)
        .env("LISTEN_FDS", "1")
        .env("LISTEN_PID", "1")
        .env("UNDERSTUDY_ADMIN_LISTEN", "127.0.0.1:0");
    pass_fds(&mut cmd, vec![proxy.as_raw_fd()]);
    let mut u = Understudy::start_command(&base, cmd);
    assert_ne!(
        u.addr,
        proxy.local_addr().unwrap(),
        "LISTEN is bound instead"
    );
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    // Removed all the same, so no child takes them for its own.
    let (_, child) = base.wait_instance_info("running");
    assert_no_systemd_vars(child);
    u.stop();
}

/// Run understudy with `env` (through `cmd`) to its exit; its code and stderr.
fn exit_of(mut cmd: Command, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = cmd.envs(env.iter().copied()).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_values_from_systemd_exit_64_naming_variable_and_value() {
    let base = Base::new("sd-bad");
    base.write_env("");
    let file = std::fs::File::open(base.path.join(".env")).unwrap();
    let mut cmd = as_systemd(&base);
    pass_fds(&mut cmd, vec![file.as_raw_fd()]);
    let (code, err) = exit_of(cmd, &[("LISTEN_FDS", "1")]);
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("LISTEN_FDS") && err.contains("descriptor 3"),
        "{err}"
    );
    for (key, value) in [
        ("LISTEN_FDS", "7"),
        ("WATCHDOG_USEC", "soon"),
        ("NOTIFY_SOCKET", "relative/notify"),
        ("UNDERSTUDY_LOG_FORMAT", "xml"),
    ] {
        let (code, err) = exit_of(as_systemd(&base), &[(key, value)]);
        assert_eq!(code, Some(64), "{key}={value}: {err}");
        let key = key.trim_start_matches("UNDERSTUDY_");
        assert!(err.contains(key) && err.contains(value), "{err}");
    }
    assert!(processes_under(&base.path).is_empty());
}

#[test]
fn the_watchdog_is_petted_while_the_supervisor_beats_and_not_once_it_hangs() {
    let base = Base::new("sd-watchdog");
    base.write_env("HEARTBEAT_EVERY=100ms");
    let mut sd = Manager::abstract_namespace();
    let mut u = Understudy::start_with_env(
        &base,
        &[
            ("NOTIFY_SOCKET", &sd.address),
            ("WATCHDOG_USEC", "200000"),
            ("UNDERSTUDY_INJECT_HANG", "supervisor"),
        ],
    );
    sd.wait_for("READY=1", Duration::from_secs(10), |m| {
        m.contains("READY=1")
    });
    // Every half WATCHDOG_USEC (100 ms) while the supervisor beats: about 20 in two seconds.
    let pets = sd.receive(Duration::from_secs(2));
    let n = pets.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!((5..=24).contains(&n), "{n} pets in two seconds: {pets:?}");
    // Once running is ready, the (injected) hang stops the supervisor's loop.
    base.drop_fixture("1.0.0", "");
    sd.wait_for("running's status", Duration::from_secs(10), |m| {
        m == "STATUS=running 1.0.0"
    });
    wait_until(
        "a second without WATCHDOG=1",
        Duration::from_secs(10),
        || {
            let got = sd.receive(Duration::from_secs(1));
            got.iter().all(|m| m != "WATCHDOG=1").then_some(())
        },
    );
    u.sigterm();
    assert_eq!(u.wait_exit(Duration::from_secs(15)), Some(0));
    assert!(processes_under(&base.path).is_empty());
}

#[test]
fn log_format_json_writes_one_object_per_line_with_the_events_fields() {
    let base = Base::new("sd-json-log");
    base.write_env("LOG_FORMAT=json");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    u.stop();
    let log = u.log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() > 3, "{log}");
    for l in &lines {
        assert!(
            l["timestamp"].is_string() && l["level"].is_string() && l["message"].is_string(),
            "{l}"
        );
    }
    let ready = lines
        .iter()
        .find(|l| l["message"] == "ready")
        .unwrap_or_else(|| panic!("no ready event: {log}"));
    assert_eq!(ready["role"], "running");
    assert_eq!(ready["version"], "1.0.0");
    assert!(ready["port"].is_u64(), "{ready}");
}

/// Issue 25: an upgrade hands the service to the new process: systemd is told its `MAINPID=`,
/// and the new process goes on notifying (ready, watchdog) the same socket.
#[test]
fn an_upgrade_makes_the_new_process_the_main_one_and_it_goes_on_notifying() {
    use crate::self_upgrade::{admin_pid, successor_of, Successor};
    let base = Base::new("sd-upgrade");
    base.write_env("NOISE_CANCEL=off");
    let mut sd = Manager::at_path();
    let mut u = Understudy::start_with_env(
        &base,
        &[("NOTIFY_SOCKET", &sd.address), ("WATCHDOG_USEC", "2000000")],
    );
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    sd.wait_for(
        "WATCHDOG=1 from the first process",
        Duration::from_secs(10),
        |m| m == "WATCHDOG=1",
    );
    let old = u.pid();
    let (code, out, err) = cli(&base, &["upgrade"]);
    let named_at_once = admin_pid(&base);
    let _taken_over = named_at_once
        .filter(|p| *p != old)
        .map(|p| Successor(p as i32));
    assert_eq!(code, 0, "{out}{err}");
    let new = successor_of(&base, old);
    let _successor = Successor(new as i32);
    assert_eq!(
        named_at_once,
        Some(new),
        "admin.json names the new understudy"
    );
    assert_eq!(
        u.wait_exit(Duration::from_secs(20)),
        Some(0),
        "{}",
        u.log_text()
    );
    sd.wait_for("MAINPID of the new process", Duration::from_secs(10), |m| {
        m == format!("MAINPID={new}")
    });
    // What the new one said before it was the main one, systemd (NotifyAccess=main) dropped.
    let again = sd.wait_for(
        "STATUS= again once the new process is the main one",
        Duration::from_secs(10),
        |m| m.contains("STATUS="),
    );
    assert!(again.starts_with("READY=1\n"), "{again}");
    // The old process is gone: what it sent is all queued by now; what comes next is the new one's.
    sd.receive(Duration::from_millis(200));
    sd.read = sd.seen.len();
    sd.wait_for(
        "WATCHDOG=1 from the new process",
        Duration::from_secs(10),
        |m| m == "WATCHDOG=1",
    );
    let (_, running) = base.wait_instance_info("running");
    assert_no_systemd_vars(running);
    unsafe {
        libc::kill(new as i32, libc::SIGTERM);
    }
    sd.wait_for(
        "STOPPING=1 from the new process",
        Duration::from_secs(10),
        |m| m.starts_with("STOPPING=1"),
    );
    wait_until("no process left", Duration::from_secs(15), || {
        leftovers(&base.path).is_empty().then_some(())
    });
}

/// A reload (SIGHUP) that slows `HEARTBEAT_EVERY` slows the supervisor's beats: the watchdog's
/// limit (three heartbeats) follows, so systemd is still petted, not left to kill understudy.
#[test]
fn the_watchdog_follows_a_reloaded_heartbeat_every() {
    let base = Base::new("sd-heartbeat-reload");
    base.write_env("HEARTBEAT_EVERY=100ms");
    let mut sd = Manager::abstract_namespace();
    let mut u = Understudy::start_with_env(
        &base,
        &[("NOTIFY_SOCKET", &sd.address), ("WATCHDOG_USEC", "400000")],
    );
    sd.wait_for("READY=1", Duration::from_secs(10), |m| {
        m.contains("READY=1")
    });
    base.write_env("HEARTBEAT_EVERY=1s");
    unsafe { libc::kill(u.pid() as i32, libc::SIGHUP) };
    wait_until("the reload", Duration::from_secs(10), || {
        let log = u.log_text();
        log.contains("follows HEARTBEAT_EVERY at once")
            .then_some(())
    });
    // Beats every second, three of them the limit: a pet every 200 ms all along (a limit left at
    // 300 ms would leave most of each second unpetted).
    let pets = sd.receive(Duration::from_secs(3));
    let n = pets.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(n >= 10, "{n} pets in three seconds: {pets:?}");
    u.sigterm();
    assert_eq!(u.wait_exit(Duration::from_secs(15)), Some(0));
}
