//! Faults: understudy killed hard, restarted, a running instance that dies, an idle understudy.

use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn killed_hard_it_leaves_no_orphans() {
    let (base, mut u) = start_with_testing("kill-9", "");
    wait_until(
        "running, testing and running's secondary (noise) up",
        Duration::from_secs(10),
        || (processes_under(&base.path).len() == 3).then_some(()),
    );
    u.kill_hard();
    wait_until(
        "children gone after kill -9",
        Duration::from_secs(5),
        || processes_under(&base.path).is_empty().then_some(()),
    );
}

/// Issue 8: a build started through a wrapper script that does not `exec` runs its server as
/// understudy's grandchild, out of reach of the parent-death signal. After `kill -9` of
/// understudy, each instance's watchdog must take its whole group down within a second.
#[test]
fn killed_hard_it_leaves_no_grandchild_of_a_wrapper_script() {
    let base = Base::new("kill-9-wrapper");
    // Two instances exactly: no secondary to count.
    base.write_env("NOISE_CANCEL=off");
    let mut u = Understudy::start(&base);
    base.drop_wrapped_fixture("1.0.0", "");
    u.wait_serving();
    base.drop_wrapped_fixture("1.1.0", "--spawn-grandchild");
    base.wait_testing();
    let mut ports = Vec::new();
    for role in ["running", "testing"] {
        let (port, leader) = base.wait_instance_info(role);
        let server = processes_under(&base.path)
            .into_iter()
            .find(|(pid, cmd)| parent_of(*pid) == Some(leader) && cmd.contains("fixture-app"));
        assert!(
            server.is_some(),
            "{role}: the server is a child of the wrapper {leader}, not the leader itself: {:?}",
            processes_under(&base.path)
        );
        assert!(port_answers(port), "{role} answers on {port}");
        ports.push(port);
    }
    let grandchild = read_pid_file(&base, "testing", "grandchild.pid").unwrap();
    assert_eq!(
        watchdogs(&base.path).len(),
        2,
        "one watchdog per instance: {:?}",
        leftovers(&base.path)
    );

    u.kill_hard();
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(1);
    loop {
        let left = leftovers(&base.path);
        let answering: Vec<u16> = ports.iter().copied().filter(|p| port_answers(*p)).collect();
        if left.is_empty() && answering.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "1 s after kill -9 of understudy, processes survive: {left:?}; ports still answering: {answering:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !process_running(grandchild),
        "the fixture's own helper (ignoring SIGTERM) is gone too"
    );
}

/// A watchdog never outlives its instance: not when the instance dies and is restarted, not when
/// understudy stops normally, and a reload (SIGHUP) keeps new instances guarded.
#[test]
fn watchdogs_end_with_their_instances_and_a_normal_stop_leaves_none() {
    let base = Base::new("watchdog-stop");
    base.write_env("");
    let mut u = Understudy::start(&base);
    base.write_env("MIN_MIRRORED=1000");
    unsafe {
        libc::kill(u.pid() as i32, libc::SIGHUP);
    }
    wait_until("the reload", Duration::from_secs(5), || {
        u.log_text()
            .contains("reloaded configuration: applied MIN_MIRRORED")
            .then_some(())
    });
    base.drop_wrapped_fixture("1.0.0", "");
    u.wait_serving();
    // Users are routed to it a moment before its `running` link is written.
    let first = wait_until(
        "instance.json to name a watchdog",
        Duration::from_secs(10),
        || base.watchdog_pid("running"),
    );
    assert_eq!(
        watchdogs(&base.path)
            .iter()
            .map(|(p, _)| *p)
            .collect::<Vec<_>>(),
        [first]
    );

    // The instance dies on its own (its wrapper is killed): its watchdog goes with it.
    let (_, leader) = base.wait_instance_info("running");
    unsafe {
        libc::kill(leader, libc::SIGKILL);
    }
    wait_until("a new running instance", Duration::from_secs(10), || {
        (base.link("running")? == std::path::Path::new("app-1.0.0/2")).then_some(())
    });
    u.wait_serving();
    let second = wait_until(
        "the new instance to be guarded",
        Duration::from_secs(10),
        || base.watchdog_pid("running").filter(|p| *p != first),
    );
    wait_until("the old watchdog gone", Duration::from_secs(5), || {
        (!process_running(first)).then_some(())
    });
    assert_eq!(
        watchdogs(&base.path)
            .iter()
            .map(|(p, _)| *p)
            .collect::<Vec<_>>(),
        [second]
    );

    u.stop(); // SIGTERM; asserts no process works in the base dir any more
    let left = leftovers(&base.path);
    assert!(left.is_empty(), "left after a normal stop: {left:?}");
    assert!(
        !process_running(second),
        "watchdog {second} outlived understudy"
    );
}

#[test]
fn restarted_it_resumes_running_and_testing() {
    let (base, mut u) = start_with_testing("resume", "STABLE_WINDOW=10m");
    let before = base.link("running").unwrap();
    u.stop();

    let mut u = Understudy::start(&base);
    wait_until("running resumed", Duration::from_secs(10), || {
        u.get("/").1.contains("1.0.0").then_some(())
    });
    wait_until("testing resumed", Duration::from_secs(10), || {
        (base.link("testing")? == std::path::Path::new("app-1.1.0/2")).then_some(())
    });
    let after = base.link("running").unwrap();
    assert!(
        after.starts_with("app-1.0.0") && after != before,
        "a new instance folder per start: {} then {}",
        before.display(),
        after.display()
    );
    wait_until("mirroring resumed", Duration::from_secs(5), || {
        u.get("/again");
        base.fixture_stats("testing")
            .filter(|s| s["mirrored"].as_u64() > Some(0) && s["version"] == "1.1.0")
    });
    u.stop();
}

#[test]
fn a_build_whose_install_a_kill_9_cut_short_is_tested_after_the_restart() {
    let base = Base::new("kill-install");
    base.write_env("STABLE_WINDOW=10m");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    u.stop();
    // Killed once the build is in its version folder before its seal (unpacked, its install not
    // finished), then once it is sealed (installed, but no part given yet).
    for (step, version) in [("install-unsealed", "1.1.0"), ("install-sealed", "1.2.0")] {
        let mut u = Understudy::start_with_env(&base, &[("UNDERSTUDY_INJECT_CRASH", step)]);
        u.wait_serving();
        base.drop_fixture(version, "");
        let exit = u.wait_exit(Duration::from_secs(20));
        assert_eq!(exit, None, "killed by SIGKILL at {step}:\n{}", u.log_text());
        let folder = format!("app-{version}");
        assert!(
            base.path.join(&folder).is_dir(),
            "the drop left the base dir"
        );
        wait_until(
            "no process of any build left",
            Duration::from_secs(5),
            || leftovers(&base.path).is_empty().then_some(()),
        );
        let mut u = Understudy::start(&base);
        u.wait_serving();
        wait_until(
            &format!("{version} tested after a kill at {step}"),
            Duration::from_secs(20),
            || (base.version_of("testing")? == folder).then_some(()),
        );
        let stats = base.wait_testing();
        assert_eq!(stats["version"], version, "{stats}");
        let log = u.log_text();
        let said = match step {
            "install-unsealed" => "its build goes back into the base dir",
            _ => "build_recovered",
        };
        assert!(log.contains(said), "the log says what was found:\n{log}");
        u.stop();
    }
}

/// A bug that panics in an install must not leave understudy waiting for ever on it: the build
/// is rejected with the reason and the next drop is installed in its turn.
#[test]
fn an_install_that_panics_is_rejected_and_the_next_drop_takes_its_turn() {
    let base = Base::new("install-panic");
    base.write_env("");
    let mut u = Understudy::start_with_env(&base, &[("UNDERSTUDY_INJECT_CRASH", "install-panic")]);
    for version in ["1.0.0", "1.0.1"] {
        base.drop_fixture(version, "");
        let reason = base
            .path
            .join(format!("rejected/app-{version}/reason.json"));
        let text = wait_until(
            &format!("{version} rejected"),
            Duration::from_secs(20),
            || std::fs::read_to_string(&reason).ok(),
        );
        assert!(text.contains("this is a bug"), "{text}");
    }
    u.stop();
}

#[test]
fn a_running_instance_that_dies_is_restarted() {
    let base = Base::new("running-dies");
    base.write_env("");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    let (_, pid) = base.wait_instance_info("running");
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    wait_until("a new running instance", Duration::from_secs(10), || {
        (base.link("running")? == std::path::Path::new("app-1.0.0/2")).then_some(())
    });
    assert_eq!(u.get("/").0, 200);
    u.stop();
}

#[test]
fn a_child_that_ignores_sigterm_gets_sigkill_after_the_grace() {
    let base = Base::new("ignore-sigterm");
    base.write_env("SHUTDOWN_GRACE=1s");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "--ignore-sigterm");
    u.wait_serving();
    let started = std::time::Instant::now();
    u.stop(); // asserts that nothing is left in the base dir
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "SIGTERM alone did not stop it, so the grace was waited out ({took:?})"
    );
    assert!(
        u.log_text()
            .contains("did not stop within 1s of SIGTERM; sending SIGKILL"),
        "the escalation is logged"
    );
}

#[test]
fn ready_path_must_answer_2xx() {
    let base = Base::new("ready-path");
    // Long enough for a loaded machine to start the fixture, so the last probe sees its 404.
    base.write_env("READY_PATH=/health\nREADY_TIMEOUT=3s");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    wait_until("v1 ready on /health", Duration::from_secs(10), || {
        (u.get("/").0 == 200).then_some(())
    });
    base.drop_fixture("1.1.0", "--not-found /health");
    let path = base.path.join("rejected/app-1.1.0/reason.json");
    let r = wait_until("1.1.0 rejected", Duration::from_secs(10), || {
        std::fs::read_to_string(&path).ok()
    });
    assert!(
        r.contains("never became ready") && r.contains("/health answered 404"),
        "{r}"
    );
    u.stop();
}

/// 1.1.0 crashes at start and is rejected; a different 1.1.0 dropped again is rejected too: the
/// first rejection (build and reason) is kept as `rejected/app-1.1.0~1/`, not replaced.
#[test]
fn a_version_rejected_again_keeps_its_earlier_rejection() {
    let base = Base::new("rejected-again");
    base.write_env("READY_PATH=/health\nREADY_TIMEOUT=3s");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    base.drop_fixture("1.1.0", "--crash-at-start");
    let path = base.path.join("rejected/app-1.1.0/reason.json");
    wait_until("the first 1.1.0 rejected", Duration::from_secs(10), || {
        let r = std::fs::read_to_string(&path).ok()?;
        r.contains("fatal: cannot load configuration").then_some(())
    });
    // Testing is empty again, and the verdict says no build is tested: status says what became
    // of the last one.
    let (code, out, err) = cli(&base, &["status"]);
    assert_eq!(code, 0, "{err}");
    let said = out.lines().find(|l| l.starts_with("rejected"));
    assert!(
        said.is_some_and(|l| l.contains("1.1.0 at ") && l.contains("fatal: cannot load")),
        "{out}"
    );
    base.drop_fixture("1.1.0", "--not-found /health");
    wait_until("the second 1.1.0 rejected", Duration::from_secs(15), || {
        let r = std::fs::read_to_string(&path).ok()?;
        r.contains("never became ready").then_some(())
    });
    let earlier = base.path.join("rejected/app-1.1.0~1");
    let reason = std::fs::read_to_string(earlier.join("reason.json")).unwrap_or_default();
    assert!(
        reason.contains("fatal: cannot load configuration"),
        "the first rejection is kept beside the second: {reason:?}"
    );
    let build = std::fs::read_to_string(earlier.join("app-1.1.0")).unwrap();
    assert!(build.contains("--crash-at-start"), "{build}");
    let build = std::fs::read_to_string(base.path.join("rejected/app-1.1.0/app-1.1.0")).unwrap();
    assert!(build.contains("--not-found /health"), "{build}");
    u.stop();
}

#[test]
fn a_first_build_that_crashes_is_rejected_and_the_next_one_serves() {
    let base = Base::new("first-crash");
    base.write_env("");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "--crash-at-start");
    let path = base.path.join("rejected/app-1.0.0/reason.json");
    let r = wait_until("1.0.0 rejected", Duration::from_secs(10), || {
        std::fs::read_to_string(&path).ok()
    });
    assert!(r.contains("fatal: cannot load configuration"), "{r}");
    assert_eq!(u.get("/").0, 503, "nothing runs yet, and the proxy says so");
    assert!(base.link("running").is_none(), "no dangling running link");
    base.drop_fixture("1.0.1", "");
    u.wait_serving();
    assert!(u.get("/").1.contains("1.0.1"));
    u.stop();
}

/// One GET with its raw answer head, to see headers such as `Retry-After`.
fn raw_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn a_crash_looping_running_backs_off_and_users_are_told_to_retry() {
    let base = Base::new("crash-loop");
    base.write_env("");
    let u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "--exit-after-ms 300");
    u.wait_serving();
    // The first restart is immediate; the second waits 1 s, the third 2 s.
    wait_until("the third failure", Duration::from_secs(20), || {
        let log = u.log_text();
        (log.contains("attempt=2 delay_ms=1000") && log.contains("attempt=3 delay_ms=2000"))
            .then_some(())
    });
    // While running waits for its restart, users get 503 with Retry-After, not "drop a build".
    let answer = wait_until("a 503 while restarting", Duration::from_secs(10), || {
        let a = raw_get(u.addr, "/");
        a.starts_with("HTTP/1.1 503").then_some(a)
    });
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("retry-after: "), "{answer}");
    // Starting again, or waiting out its backoff (then saying when, as Retry-After does).
    assert!(
        answer.contains("running 1.0.0 is restarting")
            || answer.contains("running 1.0.0 keeps failing and is started again in "),
        "{answer}"
    );
    assert!(
        !std::fs::read_dir(base.path.join("rejected"))
            .map(|mut d| d.next().is_some())
            .unwrap_or(false),
        "a version that served is never rejected for crashing"
    );
}

#[test]
fn two_ports_are_enough_to_promote_and_test_the_next_build() {
    let base = Base::new("two-ports");
    let lo = base.port_range.0;
    base.write_env(&format!(
        "PORT_RANGE={lo}-{}\nSTABLE_WINDOW=1s\nMIN_MIRRORED=5\nEVALUATE_EVERY=200ms",
        lo + 1
    ));
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    base.drop_fixture("1.1.0", "");
    wait_until("1.1.0 promoted", Duration::from_secs(20), || {
        u.get("/").1.contains("1.1.0").then_some(())
    });
    base.drop_fixture("1.2.0", "");
    wait_until("1.2.0 promoted too", Duration::from_secs(20), || {
        u.get("/").1.contains("1.2.0").then_some(())
    });
    assert!(
        !base.path.join("rejected/app-1.1.0").exists()
            && !base.path.join("rejected/app-1.2.0").exists(),
        "no build lost to the port range"
    );
    u.stop();
}

#[test]
fn with_no_space_left_understudy_keeps_serving_says_disk_full_and_saves_once_it_can() {
    let base = Base::new("disk-full");
    base.write_env("HEARTBEAT_EVERY=200ms\n");
    let flag = base.path.join("disk-is-full");
    let flag_text = flag.to_string_lossy().to_string();
    let mut u = Understudy::start_with_env(&base, &[("UNDERSTUDY_INJECT_DISK_FULL", &flag_text)]);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    let (addr, _) = admin(&base);
    std::fs::write(&flag, "").unwrap();
    // A new build changes the state while nothing can be saved.
    base.drop_fixture("1.1.0", "");
    let status = wait_until("disk_full in status", Duration::from_secs(10), || {
        let (_, s) = api(addr, "GET", "/api/status", None, "");
        s["disk_full"].is_string().then_some(s)
    });
    assert!(
        status["disk_full"]
            .as_str()
            .unwrap()
            .contains("No space left"),
        "{status}"
    );
    assert_eq!(u.get("/").0, 200, "users are served while the disk is full");
    let (_, metrics) = http(addr, "GET", "/metrics").unwrap();
    assert!(metrics.contains("understudy_disk_full 1"), "{metrics}");
    let (_, events) = api(addr, "GET", "/api/events/recent", None, "");
    assert!(events.to_string().contains("\"disk_full\""), "{events}");
    let (code, out, _) = cli(&base, &["status"]);
    assert_eq!(code, 0);
    assert!(out.contains("disk full"), "{out}");
    let stale = std::fs::read_to_string(base.path.join(".understudy/state.json")).unwrap();

    std::fs::remove_file(&flag).unwrap();
    wait_until(
        "the state to be saved again",
        Duration::from_secs(10),
        || {
            let (_, s) = api(addr, "GET", "/api/status", None, "");
            let saved = std::fs::read_to_string(base.path.join(".understudy/state.json")).ok()?;
            (s["disk_full"].is_null() && saved != stale).then_some(())
        },
    );
    let (_, metrics) = http(addr, "GET", "/metrics").unwrap();
    assert!(metrics.contains("understudy_disk_full 0"), "{metrics}");
    let (_, events) = api(addr, "GET", "/api/events/recent", None, "");
    assert!(
        events.to_string().contains("\"disk_recovered\""),
        "{events}"
    );
    u.stop();
}

/// The files under `dir` whose names hold `part`, as paths relative to it.
fn files_named(dir: &std::path::Path, part: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if e.file_name().to_string_lossy().contains(part) {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out
}

#[test]
fn a_build_whose_protected_copy_cannot_be_written_waits_and_is_never_rejected() {
    let base = Base::new("store-full");
    base.write_env("");
    // Writes past 1 MiB into a file fail, as on a disk that fills up mid-copy.
    let mut u = Understudy::start_file_size_limited(&base, 1 << 20);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    // A 2 MiB build: it is moved in (no write), but its protected copy fails half-way.
    let build = format!(
        "{}{}",
        Base::fixture_script("1.1.0", ""),
        "# padding a real build would carry\n".repeat(60_000)
    );
    base.drop_script("1.1.0", &build);
    let line = wait_until("the build to wait", Duration::from_secs(10), || {
        let log = u.log_text();
        let line = log.lines().find(|l| l.contains("build_waiting"))?;
        Some(line.to_string())
    });
    assert!(
        line.contains("protected copy cannot be kept") && line.contains("not rejected"),
        "{line}"
    );
    let store = base.path.join(".understudy/store");
    assert_eq!(
        files_named(&store, ".copy-"),
        Vec::<String>::new(),
        "no partial copy is left"
    );
    assert!(
        !base.path.join("rejected/app-1.1.0").exists(),
        "never rejected"
    );
    let installed = base.path.join("app-1.1.0/app-1.1.0");
    assert_eq!(std::fs::read_to_string(&installed).unwrap(), build);
    assert!(u.get("/").1.contains("hello from 1.0.0"), "still served");

    // The disk has room again: the copy is tried again, kept, and the build is tested.
    u.set_file_size_limit(libc::RLIM_INFINITY);
    wait_until("1.1.0 to be tested", Duration::from_secs(30), || {
        let at = |role| base.version_of(role).as_deref() == Some("app-1.1.0");
        (at("testing") || at("running")).then_some(())
    });
    assert!(store.join("app-1.1.0/seal.json").is_file());
    assert!(!base.path.join("rejected/app-1.1.0").exists());
    u.stop();
}

/// A build waiting for room for its protected copy is tried again with `MIN_FREE_DISK` as last
/// reloaded: lowering it is a way out of the wait (the waiting copy kept the value it started
/// with, so it waited for ever).
#[test]
fn a_build_waiting_for_room_follows_a_reloaded_min_free_disk() {
    let base = Base::new("store-room-reload");
    base.write_env("MIN_FREE_DISK=0");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    // More free disk asked for than any machine here has: the next build waits for room.
    base.write_env("MIN_FREE_DISK=100TiB");
    unsafe {
        libc::kill(u.pid() as i32, libc::SIGHUP);
    }
    wait_until("the reload", Duration::from_secs(10), || {
        u.log_text().contains("MIN_FREE_DISK").then_some(())
    });
    base.drop_fixture("1.1.0", "");
    wait_until("the build to wait", Duration::from_secs(10), || {
        u.log_text().contains("build_waiting").then_some(())
    });
    base.write_env("MIN_FREE_DISK=0");
    unsafe {
        libc::kill(u.pid() as i32, libc::SIGHUP);
    }
    wait_until("1.1.0 to be tested", Duration::from_secs(40), || {
        let at = |role| base.version_of(role).as_deref() == Some("app-1.1.0");
        (at("testing") || at("running")).then_some(())
    });
    assert!(!base.path.join("rejected/app-1.1.0").exists());
    u.stop();
}

/// `understudy abort` while a build waits for room for its protected copy (which may never come):
/// the build is rejected, naming the abort and the wait, and running serves on. Before, abort
/// said there was nothing to abort, and the build waited for ever.
#[test]
fn a_build_waiting_for_room_is_rejected_by_abort() {
    let base = Base::new("store-room-abort");
    base.write_env("MIN_FREE_DISK=0");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    base.write_env("MIN_FREE_DISK=100TiB");
    u.reload_until("MIN_FREE_DISK");
    base.drop_fixture("1.1.0", "");
    wait_until("the build to wait", Duration::from_secs(10), || {
        u.log_text().contains("build_waiting").then_some(())
    });
    let (code, out, err) = cli(&base, &["abort"]);
    assert_eq!(code, 0, "abort: {out}{err}");
    assert!(out.contains("rejecting 1.1.0"), "{out}");
    let reason = wait_until("1.1.0 rejected", Duration::from_secs(10), || {
        std::fs::read_to_string(base.path.join("rejected/app-1.1.0/reason.json")).ok()
    });
    assert!(
        reason.contains("aborted by operator while it waited for room"),
        "{reason}"
    );
    assert_eq!(u.get("/").0, 200);
    assert_eq!(base.version_of("running").as_deref(), Some("app-1.0.0"));
    u.stop();
}
