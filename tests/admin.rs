//! The admin API and the CLI as an operator meets them: status, promote, abort, pause, resume,
//! verdict and gate, over TCP with a token and over the unix socket without one.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

#[test]
fn every_mutating_call_needs_the_token_over_tcp_and_nothing_changes_without_it() {
    let (base, mut u) = start_with_testing("admin-token", "");
    let (addr, token) = admin(&base);
    token_and_socket_are_private(&base);
    mutating_calls_are_refused_without_the_token(addr);
    nothing_changed_and_status_names_the_understudy(addr, &u);
    pause_resume_and_a_bad_body_with_the_token(addr, &token, &base);
    promote_with_the_token_then_nothing_is_left(addr, &token, &base);
    u.stop();
}

/// The token file and the unix socket are the keys to understudy: readable by its user only.
fn token_and_socket_are_private(base: &Base) {
    for f in ["admin.token", "admin.sock"] {
        let mode = std::fs::metadata(base.path.join(".understudy").join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f} is private to understudy's user");
    }
}

/// Every mutating call over TCP without the token, or with a wrong one: 401 naming `Bearer`.
fn mutating_calls_are_refused_without_the_token(addr: std::net::SocketAddr) {
    for path in [
        "/api/promote",
        "/api/abort",
        "/api/pause",
        "/api/resume",
        "/api/rollback",
    ] {
        let (code, body) = api(addr, "POST", path, None, "");
        assert_eq!(code, 401, "{path} without a token: {body}");
        assert!(body["error"].as_str().unwrap().contains("Bearer"), "{body}");
        let (code, body) = api(addr, "POST", path, Some("wrong-token-wrong-token"), "");
        assert_eq!(code, 401, "{path} with a wrong token");
        // Said apart from none: the caller must look at which token it holds.
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("is not `Bearer` with understudy's token"),
            "{body}"
        );
    }
    let (code, _) = api(addr, "DELETE", "/api/schedule/1", None, "");
    assert_eq!(code, 401, "cancelling a schedule needs the token too");
}

/// After the refusals: testing, running and the pause as they were; status says who answers.
fn nothing_changed_and_status_names_the_understudy(addr: std::net::SocketAddr, u: &Understudy) {
    // Nothing changed: 1.1.0 is still testing, 1.0.0 running, not paused.
    let (code, status) = api(addr, "GET", "/api/status", None, "");
    assert_eq!(code, 200);
    assert_eq!(status["running"]["version"], "1.0.0", "{status}");
    assert_eq!(status["testing"]["version"], "1.1.0", "{status}");
    assert_eq!(status["paused"], false);
    assert!(status["counters"]["requests"].is_u64(), "{status}");
    assert_eq!(
        status["listen"],
        u.addr.to_string(),
        "where users reach the proxy"
    );
    // Which understudy answers: its version, pid and start.
    assert_eq!(status["understudy"]["pid"], u.pid(), "{status}");
    assert_eq!(status["understudy"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        status["understudy"]["started"]
            .as_str()
            .is_some_and(|t| t.starts_with("20") && t.ends_with('Z')),
        "{status}"
    );
}

/// With the token, pause and resume take effect; a bad body is a 400 that changes nothing.
fn pause_resume_and_a_bad_body_with_the_token(
    addr: std::net::SocketAddr,
    token: &str,
    base: &Base,
) {
    // With the token: pause, resume.
    let (code, body) = api(addr, "POST", "/api/pause", Some(token), "");
    assert_eq!(code, 200, "{body}");
    let (_, status) = api(addr, "GET", "/api/status", None, "");
    assert_eq!(status["paused"], true, "{status}");
    let (code, _) = api(addr, "POST", "/api/resume", Some(token), "");
    assert_eq!(code, 200);
    let (_, status) = api(addr, "GET", "/api/status", None, "");
    assert_eq!(status["paused"], false, "{status}");
    // A bad body is a 400 naming the problem, and changes nothing.
    let (code, body) = api(
        addr,
        "POST",
        "/api/promote",
        Some(token),
        r#"{"at":"tomorrow"}"#,
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("RFC 3339"),
        "{body}"
    );
    assert_eq!(base.version_of("running").as_deref(), Some("app-1.0.0"));
}

/// The operator's promote overrules the wait; a second one finds nothing to promote (409).
fn promote_with_the_token_then_nothing_is_left(
    addr: std::net::SocketAddr,
    token: &str,
    base: &Base,
) {
    // Promote now, with the token: the operator overrules the wait.
    let (code, body) = api(addr, "POST", "/api/promote", Some(token), "");
    assert_eq!(code, 200, "{body}");
    wait_until("1.1.0 running", Duration::from_secs(20), || {
        (base.version_of("running").as_deref() == Some("app-1.1.0")).then_some(())
    });
    // Nothing left to promote: 409 with the reason.
    let (code, body) = api(addr, "POST", "/api/promote", Some(token), "");
    assert_eq!(code, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("nothing to promote"),
        "{body}"
    );
}

/// The reviewer's reproduction: a misspelt `"At"` once made "promote next year" a promote now.
#[test]
fn a_misspelt_option_is_refused_naming_it_and_nothing_changes() {
    let (base, mut u) = start_with_testing("admin-misspelt", "");
    let (addr, token) = admin(&base);
    for (path, body, key, accepted) in [
        (
            "/api/promote",
            r#"{"At":"2027-01-01T03:00:00Z"}"#,
            "At",
            "\"at\"",
        ),
        (
            "/api/rollback",
            r#"{"Version":"1.0.0"}"#,
            "Version",
            "\"version\"",
        ),
        // The calls that take no options refuse one too: an abort "with a reason" rejected.
        ("/api/abort", r#"{"why":"x"}"#, "why", "no options"),
        ("/api/pause", r#"{"At":"x"}"#, "At", "no options"),
        ("/api/resume", r#"{"now":true}"#, "now", "no options"),
    ] {
        let (code, answer) = api(addr, "POST", path, Some(&token), body);
        assert_eq!(code, 400, "{path} {body}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.contains(&format!("{key:?}")) && error.contains(accepted),
            "{error}"
        );
    }
    let (_, status) = api(addr, "GET", "/api/status", None, "");
    assert_eq!(status["running"]["version"], "1.0.0", "{status}");
    assert_eq!(status["testing"]["version"], "1.1.0", "{status}");
    assert_eq!(status["paused"], false, "{status}");
    let (_, schedules) = api(addr, "GET", "/api/schedule", None, "");
    assert_eq!(
        schedules["schedules"].as_array().map(Vec::len),
        Some(0),
        "{schedules}"
    );
    let history = std::fs::read_to_string(base.path.join(".understudy/history.jsonl")).unwrap();
    assert!(!history.contains("operator"), "{history}");
    u.stop();
}

/// The socket is private to understudy's user: another user is told so, not that understudy is
/// not running.
#[test]
fn the_cli_run_by_another_user_is_told_whose_socket_it_is() {
    use std::os::unix::process::CommandExt;
    let base = Base::new("admin-other-user");
    base.write_env("ADMIN_LISTEN=off");
    let mut u = Understudy::start(&base);
    let out = Command::new(BIN)
        .args(["status", "--base"])
        .arg(&base.path)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("private to the user understudy runs as (uid 0)")
            && !err.contains("is `understudy run` running"),
        "{err}"
    );
    u.stop();
}

#[test]
fn verdict_and_gate_answer_as_fleet_tools_expect() {
    let (base, mut u) = start_with_testing("admin-verdict", "");
    let (addr, _) = admin(&base);
    // Too little evidence: wait, and say why.
    let (code, v) = api(addr, "GET", "/api/verdict", None, "");
    assert_eq!(code, 200);
    assert_eq!(v["verdict"], "wait", "{v}");
    assert!(!v["reasons"].as_array().unwrap().is_empty(), "{v}");
    // Flagger's confirm-promotion webhook payload: held (403) with the reason.
    let flagger = r#"{"name":"app","namespace":"default","phase":"Progressing","metadata":{}}"#;
    let (code, body) = api(addr, "POST", "/api/gate", None, flagger);
    assert_eq!(code, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("wait"), "{body}");
    u.stop();
}

#[test]
fn the_cli_steers_through_the_unix_socket() {
    let (base, mut u) = start_with_testing("admin-cli", "ADMIN_LISTEN=off");
    let (code, out, err) = cli(&base, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("running") && out.contains("1.0.0"), "{out}");
    assert!(out.contains("testing") && out.contains("1.1.0"), "{out}");
    let (code, out, _) = cli(&base, &["status", "--json"]);
    assert_eq!(code, 0);
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["testing"]["version"], "1.1.0");

    let (code, out, err) = cli(&base, &["pause"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.is_empty());
    let (_, out, _) = cli(&base, &["status"]);
    assert!(out.contains("paused"), "{out}");
    assert_eq!(cli(&base, &["resume"]).0, 0);

    // Abort: testing is rejected with the operator's reason, running untouched.
    let (code, _, err) = cli(&base, &["abort"]);
    assert_eq!(code, 0, "{err}");
    wait_until("testing gone", Duration::from_secs(20), || {
        base.link("testing").is_none().then_some(())
    });
    assert_eq!(base.version_of("running").as_deref(), Some("app-1.0.0"));
    assert!(
        u.log_text().contains("aborted by operator"),
        "{}",
        u.log_text()
    );

    // Refused: exit 1 with the reason on stderr.
    let (code, _, err) = cli(&base, &["promote"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nothing to promote"), "{err}");
    let (code, _, err) = cli(&base, &["abort"]);
    assert_eq!(code, 1, "{err}");
    u.stop();
    // Nobody there: exit 2, saying so.
    let (code, _, err) = cli(&base, &["status"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot reach understudy"), "{err}");
}

/// Sends SIGCONT to a process when dropped: a stopped understudy is woken even when the test
/// fails, so it can be stopped and reaped.
struct Continue(i32);

impl Drop for Continue {
    fn drop(&mut self) {
        // SAFETY: a plain syscall.
        unsafe {
            libc::kill(self.0, libc::SIGCONT);
        }
    }
}

#[test]
fn a_stopped_understudy_is_reported_by_the_cli_within_its_deadline() {
    let base = Base::new("admin-stopped");
    base.write_env("ADMIN_LISTEN=off");
    let mut u = Understudy::start(&base);
    assert_eq!(cli(&base, &["status"]).0, 0);
    let pid = u.pid() as i32;
    // SAFETY: a plain syscall, on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let woken = Continue(pid);
    // A signal is delivered when its target is next scheduled: wait until the kernel says it is
    // stopped, so a busy machine cannot let the pause through before the stop.
    wait_until(
        "understudy to show as stopped in /proc",
        Duration::from_secs(10),
        || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            stat.rsplit(") ").next()?.starts_with('T').then_some(())
        },
    );
    // A read, and a steering command whose answer may rightly take long: both give up at once.
    let started = Instant::now();
    let status = spawn_cli(&base, &["status"]);
    let pause = spawn_cli(&base, &["pause"]);
    let socket = base.path.join(".understudy/admin.sock");
    // Both finished (or killed) before anything is asserted: none is left behind.
    let finished = [("status", status), ("pause", pause)]
        .map(|(what, child)| (what, cli_finished(child, Duration::from_secs(30))));
    for (what, (code, _, err)) in finished {
        assert_eq!(
            code,
            Some(2),
            "understudy {what} against a stopped server: {err}"
        );
        for part in [
            socket.display().to_string(),
            "did not answer GET /api/status within 10s".to_string(),
            "stopped (SIGSTOP".to_string(),
        ] {
            assert!(err.contains(&part), "{what}: {part:?} missing from {err}");
        }
    }
    assert!(
        // The CLI's own deadline is 10 s; the rest is room for starting two CLIs on a busy machine.
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    drop(woken);
    // Woken, it answers again, and the pause never reached it.
    let (code, out, err) = cli(&base, &["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["paused"], false, "{status}");
    u.stop();
}

/// The unix sockets in `dir` and in its directories.
fn sockets_under(dir: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_socket() => found.push(e.path()),
                Ok(t) if t.is_dir() && d == dir => dirs.push(e.path()),
                _ => {}
            }
        }
    }
    found
}

/// Whether a user other than the owner could connect to the socket `sock` below `from`: for the
/// group or for others, every directory from `from` down searchable and the socket writable.
/// What lies above `from` (the base dir, a test's private temp dir) is taken as open to all.
fn reachable_by_others(from: &Path, sock: &Path) -> bool {
    let mode = |p: &Path| {
        std::fs::symlink_metadata(p)
            .map(|m| m.permissions().mode())
            .unwrap_or(0)
    };
    let dirs: Vec<&Path> = sock
        .ancestors()
        .skip(1)
        .take_while(|d| d.starts_with(from))
        .collect();
    [0o070, 0o007].into_iter().any(|class: u32| {
        let (search, write) = (class & 0o111, class & 0o222);
        dirs.iter().all(|d| mode(d) & search != 0) && mode(sock) & write != 0
    })
}

#[test]
fn under_umask_000_the_admin_socket_is_never_reachable_by_other_users() {
    use std::os::unix::process::CommandExt;
    let base = Base::new("admin-umask");
    base.write_env("ADMIN_LISTEN=off");
    let state = base.path.join(".understudy");
    // While this file exists, understudy holds between binding the socket and making it 0600.
    let hold = base.path.with_extension("hold");
    std::fs::write(&hold, "").unwrap();
    let mut cmd = Command::new(BIN);
    for k in SYSTEMD_VARS.iter().chain(&PROXY_VARS) {
        cmd.env_remove(k);
    }
    cmd.args(["run", "--base"])
        .arg(&base.path)
        .env("UNDERSTUDY_INJECT_HOLD_SOCKET", &hold);
    // SAFETY: umask is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    // Held there, where is the socket, and who could connect to it?
    let (dir, flag) = (state.clone(), hold.clone());
    let held = std::thread::spawn(move || {
        let bound = (0..500).find_map(|_| {
            std::thread::sleep(Duration::from_millis(20));
            sockets_under(&dir).pop()
        });
        let seen = bound.map(|s| (reachable_by_others(&dir, &s), s));
        let _ = std::fs::remove_file(&flag);
        seen
    });
    let mut u = Understudy::start_command(&base, cmd);
    let (reachable, bound) = held.join().unwrap().expect("a socket bound within 10 s");
    assert_ne!(
        bound,
        state.join("admin.sock"),
        "understudy did not hold between binding the socket and making it private"
    );
    assert!(
        !reachable,
        "{} could be connected to by other users while it was being bound",
        bound.display()
    );
    // In place: 0600, and nothing of the binding left.
    let mode = std::fs::metadata(state.join("admin.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let left: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".s"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(sockets_under(&state), [state.join("admin.sock")]);
    // Nor can others replace what understudy keeps beside it.
    for kept in [state.clone(), state.join("lock"), state.join("status.json")] {
        let meta = wait_until("written", Duration::from_secs(10), || {
            std::fs::metadata(&kept).ok()
        });
        let mode = meta.permissions().mode();
        assert_eq!(mode & 0o022, 0, "{} is {mode:o}", kept.display());
    }
    let (code, _, err) = cli(&base, &["status"]);
    assert_eq!(code, 0, "{err}");
    // Nor what it makes for a build: its version folder and the store's copy.
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    for made in [base.path.join("app-1.0.0"), state.join("store")] {
        let mode = std::fs::metadata(&made).unwrap().permissions().mode();
        assert_eq!(mode & 0o002, 0, "{} is {mode:o}", made.display());
    }
    u.stop();
}

#[test]
fn a_bare_admin_port_is_loopback_and_a_taken_one_is_a_clear_error() {
    let base = Base::new("admin-bare");
    // A port of the base dir's own slice, which no other test takes: no build runs here to use it.
    let port = base.port_range.1;
    base.write_env(&format!("ADMIN_LISTEN={port}"));
    let mut u = Understudy::start(&base);
    let (addr, _) = admin(&base);
    assert_eq!(addr, SocketAddr::from(([127, 0, 0, 1], port)));
    // A second base dir asking for the same admin port is refused, naming the key.
    let other = Base::new("admin-taken");
    other.write_env(&format!("ADMIN_LISTEN=127.0.0.1:{port}"));
    let (code, log) = run_briefly(&other, &[]);
    assert!(
        code.is_some_and(|c| c != 0),
        "exits non-zero within 10 s, not {code:?}: {log}"
    );
    assert!(
        log.contains("ADMIN_LISTEN") && log.contains(&port.to_string()),
        "{log}"
    );
    // The last word says it once: what failed, the OS's reason, and what to do.
    let last = log
        .lines()
        .rfind(|l| l.starts_with("understudy: "))
        .unwrap_or_else(|| panic!("no closing error line in {log}"));
    for part in [
        "on ADMIN_LISTEN=",
        "already in use",
        "or set ADMIN_LISTEN=off",
    ] {
        assert_eq!(
            last.matches(part).count(),
            1,
            "{part:?} not said once: {last}"
        );
    }
    u.stop();
}

#[test]
fn rollback_under_steady_traffic_fails_no_request_and_is_recorded() {
    // No guard window: 1.0.0 is zipped at once, so the rollback restores it from its archive.
    let (base, mut u) = start_with_testing("admin-rollback", "ROLLBACK_WINDOW=0");
    // Operator promotes 1.1.0; 1.0.0 is archived.
    let (code, _, err) = cli(&base, &["promote"]);
    assert_eq!(code, 0, "{err}");
    wait_until("1.0.0 archived", Duration::from_secs(30), || {
        let zip = base.path.join("archive/app-1.0.0.zip");
        (zip.is_file() && !base.path.join("app-1.0.0").exists()).then_some(())
    });
    // Polled: on a loaded machine running may be between a missed heartbeat's restart and its
    // symlink again; it must be 1.1.0 once it serves.
    wait_until("1.1.0 running", Duration::from_secs(20), || {
        (base.version_of("running").as_deref() == Some("app-1.1.0")).then_some(())
    });

    // Steady traffic while rolling back.
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let answered = std::sync::Arc::new(AtomicU32::new(0));
    let traffic = {
        let (stop, answered, addr) = (stop.clone(), answered.clone(), u.addr);
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match http(addr, "GET", "/") {
                    Ok((200, _)) => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
                answered.fetch_add(1, Ordering::Relaxed);
            }
            (ok, failed)
        })
    };
    // Traffic before, during and after the switch.
    let at_least = |n: u32| {
        wait_until("traffic", Duration::from_secs(10), || {
            (answered.load(Ordering::Relaxed) >= n).then_some(())
        })
    };
    at_least(10);
    let (code, out, err) = cli(&base, &["rollback"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1.0.0"), "{out}");
    wait_until("1.0.0 running again", Duration::from_secs(30), || {
        (base.version_of("running").as_deref() == Some("app-1.0.0")).then_some(())
    });
    // Let the old instance drain under traffic before judging.
    wait_until("1.1.0 archived", Duration::from_secs(30), || {
        base.path
            .join("archive/app-1.1.0.zip")
            .is_file()
            .then_some(())
    });
    at_least(answered.load(Ordering::Relaxed) + 10);
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = traffic.join().unwrap();
    assert!(ok >= 20, "traffic flowed: {ok}");
    assert!(
        failed.is_empty(),
        "{} failed of {}: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(u.get("/").1.contains("1.0.0"));

    the_history_says_what_served_when_and_why(&base);
    a_version_that_never_served_is_refused(&base);
    u.stop();
}

/// After promote and rollback: the history's switches, what served at an instant (also written
/// with a space for the T), and nothing before anything served.
fn the_history_says_what_served_when_and_why(base: &Base) {
    // The history says what served when, and why.
    let (code, out, _) = cli(base, &["history", "--json"]);
    assert_eq!(code, 0);
    let h: Value = serde_json::from_str(&out).unwrap();
    let switches = h["switches"].as_array().unwrap();
    let whys: Vec<(&str, &str)> = switches
        .iter()
        .map(|s| (s["to"].as_str().unwrap(), s["why"].as_str().unwrap()))
        .collect();
    assert_eq!(
        whys,
        vec![
            ("1.0.0", "first"),
            ("1.1.0", "operator"),
            ("1.0.0", "rollback")
        ]
    );
    assert_eq!(h["serving"], "1.0.0");
    // At the instant of the operator's promotion, 1.1.0 served.
    let at = switches[1]["at"].as_str().unwrap();
    let (_, out, _) = cli(base, &["history", "--json", "--at", at]);
    let h: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(h["serving"], "1.1.0", "{h}");
    // Written with a space instead of the T, as `promote --at` takes it too.
    let spaced = at.replacen('T', " ", 1);
    let (code, out, err) = cli(base, &["history", "--json", "--at", &spaced]);
    assert_eq!(code, 0, "{spaced}: {err}");
    let h: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(h["serving"], "1.1.0", "{h}");
    // Before anything served: nothing.
    let (_, out, _) = cli(base, &["history", "--json", "--at", "2000-01-01T00:00:00Z"]);
    let h: Value = serde_json::from_str(&out).unwrap();
    assert!(h["serving"].is_null(), "{h}");
}

/// A rollback to a version that never served here: 409 naming it (issue 22), exit 1 from the
/// CLI, and running stays.
fn a_version_that_never_served_is_refused(base: &Base) {
    // A version that never served here: 409 naming it (issue 22: a rollback goes only to a
    // version that served before), exit 1, nothing changes.
    let (addr, token) = admin(base);
    let (code, body) = api(
        addr,
        "POST",
        "/api/rollback",
        Some(&token),
        r#"{"version":"9.9.9"}"#,
    );
    assert_eq!(code, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("9.9.9"), "{body}");
    let (code, _, err) = cli(base, &["rollback", "9.9.9"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("9.9.9") && err.contains("never served"),
        "{err}"
    );
    assert_eq!(base.version_of("running").as_deref(), Some("app-1.0.0"));
}

#[test]
fn a_rollback_brings_back_a_version_that_logged_past_max_unpacked_size() {
    // The build is a few bytes; its instance logged twice MAX_UNPACKED_SIZE before it was archived.
    let env = "ROLLBACK_WINDOW=0\nMAX_UNPACKED_SIZE=1MiB";
    let (base, mut u) = start_with_testing("admin-rollback-logs", env);
    let instance = base.link("running").unwrap();
    let log = "GET / 200\n".repeat(200_000);
    std::fs::create_dir_all(base.path.join(&instance).join("logs")).unwrap();
    std::fs::write(base.path.join(&instance).join("logs/app.log"), &log).unwrap();
    let (code, _, err) = cli(&base, &["promote"]);
    assert_eq!(code, 0, "{err}");
    wait_until("1.0.0 archived", Duration::from_secs(30), || {
        let zip = base.path.join("archive/app-1.0.0.zip");
        (zip.is_file() && !base.path.join("app-1.0.0").exists()).then_some(())
    });
    // The restore is part of the rollback's answer: a refused one fails the command.
    let (code, _, err) = cli(&base, &["rollback"]);
    assert_eq!(code, 0, "{err}");
    wait_until("1.0.0 running again", Duration::from_secs(30), || {
        (base.version_of("running").as_deref() == Some("app-1.0.0")).then_some(())
    });
    let restored = std::fs::read_to_string(base.path.join(&instance).join("logs/app.log"));
    assert!(restored.unwrap() == log, "the log is back whole");
    u.stop();
}

/// The program inside `archive/app-<version>.zip` (or another archive of it), as text.
fn archived_program(zip: &Path, version: &str) -> String {
    let mut a = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
    let mut s = String::new();
    let name = format!("app-{version}/app-{version}");
    std::io::Read::read_to_string(&mut a.by_name(&name).unwrap(), &mut s).unwrap();
    s
}

/// 1.1.0 served and went back to its archive; a different 1.1.0 dropped later is tested and
/// superseded by 1.2.0 without ever serving. It is archived apart, never over the archive of the
/// 1.1.0 that served, and `rollback 1.1.0` brings back the build that served.
#[test]
fn a_rollback_target_is_never_replaced_by_a_build_of_its_version_that_never_served() {
    let (base, mut u) = start_with_testing("admin-archive-unserved", "ROLLBACK_WINDOW=0");
    let (code, _, err) = cli(&base, &["promote"]);
    assert_eq!(code, 0, "{err}");
    wait_until("1.0.0 archived", Duration::from_secs(30), || {
        let zip = base.path.join("archive/app-1.0.0.zip");
        (zip.is_file() && !base.path.join("app-1.0.0").exists()).then_some(())
    });
    let (code, _, err) = cli(&base, &["rollback", "1.0.0"]);
    assert_eq!(code, 0, "{err}");
    let served = base.path.join("archive/app-1.1.0.zip");
    wait_until(
        "the 1.1.0 that served archived",
        Duration::from_secs(30),
        || (served.is_file() && !base.path.join("app-1.1.0").exists()).then_some(()),
    );
    let good = Base::fixture_script("1.1.0", "");
    assert_eq!(archived_program(&served, "1.1.0"), good);

    // Another 1.1.0, which would fail users, is tested, then 1.2.0 replaces it under test.
    base.drop_fixture("1.1.0", "--fail-as-running");
    wait_until("the new 1.1.0 under test", Duration::from_secs(20), || {
        (base.version_of("testing").as_deref() == Some("app-1.1.0")).then_some(())
    });
    base.drop_fixture("1.2.0", "");
    let apart = base.path.join("archive/app-1.1.0~unserved.zip");
    wait_until("the new 1.1.0 archived", Duration::from_secs(30), || {
        let gone = !base.path.join("app-1.1.0").exists();
        (gone && base.version_of("testing").as_deref() == Some("app-1.2.0")).then_some(())
    });
    assert_eq!(
        archived_program(&served, "1.1.0"),
        good,
        "the archive of the 1.1.0 that served is kept"
    );
    assert!(
        archived_program(&apart, "1.1.0").contains("--fail-as-running"),
        "the 1.1.0 that never served is archived apart"
    );

    let (code, _, err) = cli(&base, &["rollback", "1.1.0"]);
    assert_eq!(code, 0, "{err}");
    wait_until("1.1.0 running again", Duration::from_secs(30), || {
        (base.version_of("running").as_deref() == Some("app-1.1.0")).then_some(())
    });
    for _ in 0..5 {
        let (status, body) = u.get("/");
        assert_eq!(status, 200, "users get the 1.1.0 that served: {body}");
    }
    u.stop();
}

/// A pause holds across a restart of understudy: it was lost, and the build the operator meant
/// to check by hand was then promoted automatically.
#[test]
fn a_pause_holds_across_a_restart_of_understudy() {
    let (base, mut u) = start_with_testing(
        "pause-restart",
        "STABLE_WINDOW=1s\nMIN_MIRRORED=1\nEVALUATE_EVERY=250ms",
    );
    let (code, _, err) = cli(&base, &["pause"]);
    assert_eq!(code, 0, "{err}");
    u.stop();
    let mut u = Understudy::start(&base);
    // Once it has resumed what it ran (status before that shows nothing running yet).
    let status = wait_for(
        "status to show running resumed",
        Duration::from_secs(10),
        || {
            let (code, out, err) = cli(&base, &["status", "--json"]);
            let status: Value =
                serde_json::from_str(&out).map_err(|e| format!("{code} {e}: {err}"))?;
            (!status["running"].is_null())
                .then_some(status.clone())
                .ok_or(status.to_string())
        },
    );
    assert_eq!(status["paused"], true, "{status}");
    // Verdicts come (a window of 1 s, one pair), and nothing is promoted while paused.
    base.wait_testing();
    let mut n = 0;
    wait_until("a verdict to promote", Duration::from_secs(20), || {
        n += 1;
        assert_eq!(u.get(&format!("/items/{n}")).0, 200);
        u.log_text().contains("verdict=promote").then_some(())
    });
    assert_eq!(base.version_of("running").as_deref(), Some("app-1.0.0"));
    u.stop();
}

/// A path the API does not serve, or a method a path does not take, is answered with a JSON
/// error as every other refusal (README: `{ok:false, error}`): it was once an empty body.
#[test]
fn unknown_paths_and_wrong_methods_answer_json_errors() {
    let base = Base::new("admin-unknown");
    base.write_env("");
    let mut u = Understudy::start(&base);
    let (addr, _) = admin(&base);
    let (code, v) = api(addr, "GET", "/api/nonexistent", None, "");
    assert_eq!(code, 404, "{v}");
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("/api/nonexistent"),
        "{v}"
    );
    let (code, v) = api(addr, "DELETE", "/api/status", None, "");
    assert_eq!(code, 405, "{v}");
    assert_eq!(v["ok"], false, "{v}");
    assert!(v["error"].as_str().unwrap().contains("DELETE"), "{v}");
    u.stop();
}

/// `history --at` a future instant is refused, saying why: the history records what served, and
/// answered "1.0.0 served users" for 2999 as a fact.
#[test]
fn history_at_a_future_instant_is_refused() {
    let base = Base::new("history-future");
    base.write_env("");
    let mut u = Understudy::start(&base);
    let (code, out, err) = cli(&base, &["history", "--at", "2999-01-01T00:00:00Z"]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("2999-01-01T00:00:00Z is in the future") && !out.contains("served users"),
        "{out}{err}"
    );
    let (code, out, err) = cli(&base, &["history", "--at", "2001-01-01T00:00:00Z"]);
    assert_eq!(code, 0, "a past instant is answered: {out}{err}");
    u.stop();
}

/// A build waiting to be installed while the disk is short shows why in status (its JSON's
/// `installing_waiting`, and the text beside `installing`): status once showed the version alone.
#[test]
fn status_says_why_an_install_waits_for_disk() {
    let base = Base::new("install-waits");
    base.write_env("MIN_FREE_DISK=100TiB");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.6.0", "");
    let json = wait_until("installing_waiting", Duration::from_secs(15), || {
        let (_, out, _) = cli(&base, &["status", "--json"]);
        out.contains("installing_waiting").then_some(out)
    });
    assert!(json.contains("MIN_FREE_DISK"), "{json}");
    let (_, text, _) = cli(&base, &["status"]);
    assert!(text.contains("installing 1.6.0 (waiting: "), "{text}");
    u.stop();
}
