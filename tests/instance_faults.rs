//! Instance faults: a child's whole process group is stopped (a grandchild that ignores SIGTERM
//! included), and readiness on `READY_PATH` is decided by a whole HTTP answer.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn a_grandchild_that_ignores_sigterm_is_killed_with_its_group() {
    let base = Base::new("grandchild");
    base.write_env("SHUTDOWN_GRACE=1s");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "--spawn-grandchild");
    u.wait_serving();
    let (_, leader) = base.wait_instance_info("running");
    let grandchild = wait_until("grandchild.pid", Duration::from_secs(10), || {
        read_pid_file(&base, "running", "grandchild.pid")
    });
    assert_ne!(grandchild, leader);
    assert!(
        process_running(grandchild),
        "the grandchild runs beside the app"
    );

    let started = Instant::now();
    u.stop(); // asserts a clean exit and that no process is left in the base dir
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the leader stopped on SIGTERM but its grandchild did not, so the grace was waited out"
    );
    assert!(!process_running(leader), "the leader is gone");
    assert!(
        !process_running(grandchild),
        "the grandchild got SIGKILL with its group"
    );
    assert!(
        u.log_text()
            .contains("did not stop within 1s of SIGTERM; sending SIGKILL"),
        "the escalation is logged"
    );
}

#[test]
fn ready_path_is_judged_by_a_whole_answer_through_a_host_name() {
    // `localhost` may resolve to ::1 first; the fixture listens on both loopbacks.
    let base = Base::new("ready-path-host");
    // Long enough for a loaded machine to start the fixture (1.0.0 must become ready within it,
    // and 1.1.0's last probe must see its 404), as in faults::ready_path_must_answer_2xx.
    base.write_env("READY_PATH=/health\nREADY_TIMEOUT=4s\nUPSTREAM_HOST=localhost");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    assert!(
        u.get("/").1.contains("1.0.0"),
        "/health answered 200: ready"
    );

    base.drop_fixture("1.1.0", "--not-found /health");
    let path = base.path.join("rejected/app-1.1.0/reason.json");
    let r = wait_until("1.1.0 rejected", Duration::from_secs(15), || {
        std::fs::read_to_string(&path).ok()
    });
    assert!(
        r.contains("/health answered 404"),
        "the reason says what the check got: {r}"
    );
    assert!(
        base.link("testing").is_none(),
        "a build that is never ready is not tested"
    );
    assert!(u.get("/").1.contains("1.0.0"), "running keeps serving");
    u.stop();
}

/// A running whose health check fails (its port answers users) is replaced by a fresh instance
/// started beside it, without a failed request. The fresh one fails it too at once: that is a
/// second failure in a row, restarted with the backoff as a crash is (it was replaced every
/// half second for ever, never `crash_looping`).
#[test]
fn a_running_that_fails_its_health_check_is_replaced_without_a_failed_request() {
    let base = Base::new("heal-start-first");
    base.write_env("HEALTH_PATH=/health\nHEARTBEAT_EVERY=200ms\nHEARTBEAT_MISSES=2\n");
    let mut u = Understudy::start(&base);
    // Its port answers users; its health check answers 500: alive, but failing the check.
    base.drop_fixture("1.0.0", "--fail-path /health");
    u.wait_serving();
    let (_, first) = base.wait_instance_info("running");
    let mut failed = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    // Every user request while running is replaced by the instance started beside it.
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "never replaced\n{}",
            u.log_text()
        );
        match http(u.addr, "GET", "/api/items") {
            Ok((200, _)) => {}
            other => failed.push(format!("{other:?}")),
        }
        if base
            .instance_info("running")
            .is_some_and(|(_, pid)| pid != first)
        {
            break;
        }
    }
    assert!(
        failed.is_empty(),
        "{} failed requests: {failed:?}",
        failed.len()
    );
    let backoff = wait_until(
        "the second failure's restart",
        Duration::from_secs(20),
        || {
            let (_, out, _) = cli(&base, &["events"]);
            out.lines()
                .find(|l| l.contains("restart_scheduled attempt=2"))
                .map(str::to_string)
        },
    );
    assert!(backoff.contains("delay_ms=1000"), "{backoff}");
    u.stop();
}

/// A running whose health check times out while it answers users is busy, not hung: it keeps
/// serving, unreplaced, as long as its answers grow between heartbeats. Once users stop coming,
/// the same timed-out checks are misses again and it is replaced.
#[test]
fn a_busy_running_whose_health_check_times_out_is_not_replaced() {
    let base = Base::new("busy-not-hung");
    base.write_env("HEALTH_PATH=/health\nHEARTBEAT_EVERY=200ms\nHEARTBEAT_MISSES=2\n");
    let mut u = Understudy::start(&base);
    // Every check of /health outlasts its heartbeat (200 ms); users' pages answer at once.
    base.drop_fixture("1.0.0", "--slow-ms 2000 --slow-path /health");
    u.wait_serving();
    let (_, first) = base.wait_instance_info("running");
    // Two seconds of users: ten heartbeats, five times the misses that replace a hung one.
    let until = std::time::Instant::now() + Duration::from_secs(2);
    let mut answered = 0;
    while std::time::Instant::now() < until {
        if let Ok((200, _)) = http(u.addr, "GET", "/api/items") {
            answered += 1;
        }
        assert_eq!(
            base.instance_info("running").map(|(_, pid)| pid),
            Some(first),
            "a busy running was replaced\n{}",
            u.log_text()
        );
    }
    assert!(answered > 20, "only {answered} answers");
    let log = u.log_text();
    assert!(
        log.contains("taken as busy, not hung"),
        "the log says why it is kept\n{log}"
    );
    let (_, events, _) = cli(&base, &["events"]);
    assert!(!events.contains("heartbeat_lost"), "{events}");
    // No users: its checks time out with no answer meanwhile, and it is replaced.
    wait_until("the idle one replaced", Duration::from_secs(20), || {
        base.instance_info("running")
            .filter(|(_, pid)| *pid != first)
    });
    u.stop();
}

/// Running crashes once (after serving for a while) and is started again at once: users' requests
/// wait for it rather than get 503 "restarting" for the whole restart. Only a request it had in
/// hand as it died may fail (a POST may have been read; one per user at most).
#[test]
fn users_wait_for_running_started_again_at_once_after_a_crash() {
    let base = Base::new("restart-hold");
    base.write_env("");
    let mut u = Understudy::start(&base);
    // Crashes once the test says so (the crash file), then serves on (the marker), taking half a
    // second to start each time. Both beside the base dir, where no drop is looked for.
    let (marker, crash) = (
        base.path.with_extension("crashed"),
        base.path.with_extension("crash"),
    );
    let _ = (std::fs::remove_file(&marker), std::fs::remove_file(&crash));
    let bin = env!("CARGO_BIN_EXE_understudy");
    base.drop_script(
        "1.0.0",
        &format!(
            "#!/bin/sh\nsleep 0.5\nif [ ! -e '{m}' ]; then touch '{m}'; crash='--exit-on-file {c}'; fi\nexec '{bin}' fixture-app --version 1.0.0 $crash\n",
            m = marker.display(),
            c = crash.display()
        ),
    );
    u.wait_serving();
    let addr = u.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let users: Vec<_> = ["GET", "POST"]
        .into_iter()
        .map(|method| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    answers.push(http(addr, method, "/").unwrap_or((0, String::new())));
                    std::thread::sleep(Duration::from_millis(5));
                }
                answers
            })
        })
        .collect();
    // The users ask for a while before the crash.
    wait_until("users served", Duration::from_secs(10), || {
        let served = base.fixture_stats("running")?["requests"].as_u64()?;
        (served > 20).then_some(())
    });
    let (admin, _) = admin(&base);
    std::fs::write(&crash, "").unwrap();
    // Status says why running is `starting`: users wait for it (half a second at least).
    let held = wait_until("status to say users wait", Duration::from_secs(20), || {
        let (_, status) = api(admin, "GET", "/api/status", None, "");
        (status["restart_held"]["version"] == "1.0.0").then_some(status)
    });
    assert_eq!(held["restart_held"]["held_up_to_secs"], 10.0, "{held}");
    wait_until("running restarted", Duration::from_secs(20), || {
        u.log_text().contains("restart_scheduled").then_some(())
    });
    wait_until("running serving again", Duration::from_secs(20), || {
        let link = base.link("running")?;
        link.to_string_lossy()
            .ends_with("app-1.0.0/2")
            .then_some(())
    });
    let again = Instant::now();
    wait_until(
        "users served by the restarted one",
        Duration::from_secs(5),
        || (again.elapsed() >= Duration::from_millis(500)).then_some(()),
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers: Vec<(u16, String)> = users.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let failed: Vec<&(u16, String)> = answers.iter().filter(|(s, _)| *s != 200).collect();
    let unavailable = failed.iter().filter(|(s, _)| *s == 503).count();
    assert!(
        unavailable == 0 && failed.len() <= 2,
        "{} of {} failed: {failed:?}",
        failed.len(),
        answers.len()
    );
    u.stop();
    let _ = (std::fs::remove_file(&marker), std::fs::remove_file(&crash));
}

/// Running closed its port and connections but lives on (wedged): a request it refuses waits for
/// where users go next. understudy stopping meanwhile answers it 503 with `Retry-After`, closing
/// the connection: it reached no instance, so asking again is safe. It was a 502 "cannot
/// connect", as if the service had failed it.
#[test]
fn a_request_waiting_for_an_instance_when_understudy_stops_is_told_to_retry() {
    let base = Base::new("stop-while-waiting");
    base.write_env("UPSTREAM_TIMEOUT=30s");
    let mut u = Understudy::start(&base);
    // Beside the base dir, where no drop is looked for.
    let close = base.path.with_extension("close");
    let _ = std::fs::remove_file(&close);
    base.drop_fixture("1.0.0", &format!("--close-on-file {}", close.display()));
    u.wait_serving();
    let (port, _) = base.wait_instance_info("running");
    std::fs::write(&close, "").unwrap();
    wait_until("running's port closed", Duration::from_secs(10), || {
        (!port_answers(port)).then_some(())
    });
    let addr = u.addr;
    let user = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(b"POST /orders HTTP/1.1\r\nHost: shop\r\nContent-Length: 3\r\n\r\nx=1")
            .unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        String::from_utf8_lossy(&got).into_owned()
    });
    let (admin, _) = admin(&base);
    wait_until("the request waiting", Duration::from_secs(10), || {
        let scraped = crate::metrics::scrape(admin);
        let waiting = crate::metrics::value(&scraped, "understudy_requests_waiting", &[]);
        waiting.is_some_and(|n| n >= 1.0).then_some(())
    });
    u.sigterm();
    let answer = user.join().unwrap();
    // Each header line with its CRLF.
    let head = answer.split("\r\n\r\n").next().unwrap_or_default();
    let head = format!("{}\r\n", head.to_ascii_lowercase());
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(head.contains("\r\nretry-after: 1\r\n"), "{answer}");
    assert!(head.contains("\r\nconnection: close\r\n"), "{answer}");
    assert!(answer.contains("reached no instance"), "{answer}");
    u.stop();
    let _ = std::fs::remove_file(&close);
}

/// understudy started again (after a SIGTERM) starts running anew, and a user's request that
/// came meanwhile was told 503 "no running instance yet: drop a build", as if the service had
/// none (the review: 54 of 136 requests failed over a 3 s start). It waits for running now, as
/// after a crash, and status says so.
#[test]
fn users_wait_for_running_while_understudy_starts_it_again() {
    let base = Base::new("start-hold");
    base.write_env("");
    let mut u = Understudy::start(&base);
    // A second to start, as a small JVM.
    let bin = env!("CARGO_BIN_EXE_understudy");
    base.drop_script(
        "1.0.0",
        &format!("#!/bin/sh\nsleep 1\nexec '{bin}' fixture-app --version 1.0.0\n"),
    );
    u.wait_serving();
    u.stop();
    let mut u = Understudy::start(&base);
    let asked = Instant::now();
    let (status, body) = http(u.addr, "GET", "/").unwrap();
    let waited = asked.elapsed();
    assert_eq!((status, body.contains("1.0.0")), (200, true), "{body}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    // Status follows the decision that routed the request, a moment later.
    let (admin, _) = admin(&base);
    wait_for(
        "status to say running serves",
        Duration::from_secs(5),
        || {
            let (_, status) = api(admin, "GET", "/api/status", None, "");
            match status["restart_held"].is_null() {
                true => Ok(()),
                false => Err(status.to_string()),
            }
        },
    );
    u.stop();
}

/// A running that hangs 1.5 s after each start: each hang counts toward the failures in a row as
/// a crash does, so the restarts back off (at once, 1 s, 2 s, ...) instead of coming every two
/// seconds for ever as `attempt=1 delay_ms=0` (a reviewer's scenario).
#[test]
fn a_running_that_hangs_after_each_start_is_restarted_with_backoff() {
    let base = Base::new("hang-loop");
    base.write_env("HEARTBEAT_EVERY=300ms\nHEARTBEAT_MISSES=2");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "--hang-after-ms 1500");
    u.wait_serving();
    let restarts = || -> Vec<(u64, u64)> {
        let (_, out, _) = cli(&base, &["events", "--json"]);
        out.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["event"] == "restart_scheduled")
            .map(|e| {
                (
                    e["attempt"].as_u64().unwrap_or(0),
                    e["delay_ms"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    let seen = wait_until("a third restart in a row", Duration::from_secs(40), || {
        let seen = restarts();
        (seen.len() >= 3).then_some(seen)
    });
    assert_eq!(
        seen[..3],
        [(1, 0), (2, 1000), (3, 2000)],
        "{seen:?}\n{}",
        u.log_text()
    );
    u.stop();
}

/// A hostile review's case: running frozen (SIGSTOP) with users' GETs held on it. Its fresh
/// instance was ready within seconds, but the frozen one was drained for `SHUTDOWN_GRACE`, then
/// given another on SIGTERM (pending while it was stopped) before its SIGKILL: the GETs waited
/// both, over 30 s. Now its SIGTERM comes with SIGCONT, so it stops at the drain's end; the GETs,
/// broken off before any answer byte, go to the fresh instance. (The drain stays: an instance
/// that missed its heartbeats for load may still finish what it holds.)
#[test]
fn gets_held_on_a_frozen_running_are_answered_by_its_fresh_instance_without_the_graces() {
    let base = Base::new("frozen-running");
    base.write_env(
        "HEALTH_PATH=/health\nHEARTBEAT_EVERY=200ms\nHEARTBEAT_MISSES=3\nSHUTDOWN_GRACE=8s\n",
    );
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    let (_, frozen) = base.wait_instance_info("running");
    // SAFETY: kill(2) on the running instance this test's understudy started.
    assert_eq!(unsafe { libc::kill(frozen, libc::SIGSTOP) }, 0);
    let asked = Instant::now();
    let addr = u.addr;
    let users: Vec<_> = (0..3)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                let req = format!("GET /item/{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                s.write_all(req.as_bytes()).unwrap();
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer);
                answer
            })
        })
        .collect();
    for user in users {
        let answer = user.join().unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let took = asked.elapsed();
    // The drain's SHUTDOWN_GRACE and the detection, never a drain's and a stop's both (16 s).
    assert!(took < Duration::from_secs(14), "the GETs took {took:?}");
    // Continued with its SIGTERM, it may answer what it held before it exits: its exit follows.
    wait_until("the frozen instance gone", Duration::from_secs(5), || {
        (!process_running(frozen)).then_some(())
    });
    u.stop();
}

/// A hostile review's case: a build binds its port seconds after it starts (a JVM), and in the
/// meantime another process takes the port (a client's ephemeral port, when PORT_RANGE overlaps
/// the kernel's range). The app exits with "Address already in use": not the build's fault. It
/// was rejected; now it is started again on another port and tested.
#[test]
fn a_build_whose_port_is_taken_before_it_binds_is_started_again_not_rejected() {
    let base = Base::new("port-taken");
    base.write_env("STABLE_WINDOW=1h");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    base.drop_fixture("1.1.0", "--bind-after-ms 1500");
    let port: u16 = wait_until("testing to be started", Duration::from_secs(10), || {
        u.log_text().lines().find_map(|l| {
            let rest = l.split("started role=testing version=1.1.0").nth(1)?;
            rest.split("port=").nth(1)?.trim().parse().ok()
        })
    });
    // Taken before the app binds it, and held, by a client's connection from that port (as an
    // ephemeral port is), not a listener: a listener would answer the readiness probe itself.
    let far = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let thief = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(([127, 0, 0, 1], port).into()).unwrap();
        socket.connect(far.local_addr().unwrap()).await.unwrap()
    });
    wait_until("testing to serve", Duration::from_secs(20), || {
        base.link("testing")
    });
    let log = u.log_text();
    assert!(log.contains("port_taken"), "{log}");
    let (again, _) = base.wait_instance_info("testing");
    assert_ne!(again, port);
    assert!(!base.path.join("rejected/app-1.1.0").exists());
    drop(thief);
    u.stop();
}
