//! Shutdown as a protocol, tasks that die, and a supervisor that is never held up: the real
//! binary, real children, real signals.

use std::io::Write;
use std::time::Duration;

use crate::support::*;

#[test]
fn sigterm_lets_requests_in_flight_finish() {
    let base = Base::new("sigterm-inflight");
    base.write_env("SHUTDOWN_GRACE=5s");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "--slow-ms 1000");
    u.wait_serving();
    let before = base.fixture_stats("running").unwrap()["requests"]
        .as_u64()
        .unwrap();
    let addr = u.addr;
    let clients: Vec<_> = (0..20)
        .map(|i| std::thread::spawn(move || http(addr, "GET", &format!("/slow/{i}"))))
        .collect();
    // All 20 have reached the app (it counts a request before it sleeps) when SIGTERM arrives.
    wait_until("20 requests in flight", Duration::from_secs(5), || {
        let n = base.fixture_stats("running")?["requests"].as_u64()?;
        (n >= before + 20).then_some(())
    });
    u.sigterm();
    let answers: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    for (i, a) in answers.iter().enumerate() {
        match a {
            Ok((200, body)) => assert!(body.contains("hello from 1.0.0"), "{body}"),
            other => panic!("request {i} in flight at SIGTERM got {other:?}"),
        }
    }
    assert_eq!(
        u.wait_exit(Duration::from_secs(15)),
        Some(0),
        "{}",
        u.log_text()
    );
    assert!(
        processes_under(&base.path).is_empty(),
        "children are stopped after the requests finished"
    );
}

/// A stop that hands nothing on stops listening at once: a user who comes while the requests in
/// flight finish is refused, and may go elsewhere. It used to be accepted into the kernel's
/// backlog (a copy of the listener was kept for a successor) and reset when understudy exited.
#[test]
fn users_who_come_during_the_drain_are_refused_at_once() {
    let base = Base::new("sigterm-refuse");
    base.write_env("SHUTDOWN_GRACE=10s");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "--slow-ms 4000");
    u.wait_serving();
    let before = base.fixture_stats("running").unwrap()["requests"]
        .as_u64()
        .unwrap();
    let addr = u.addr;
    let in_flight = std::thread::spawn(move || http(addr, "GET", "/slow/1"));
    wait_until("a request in flight", Duration::from_secs(5), || {
        let n = base.fixture_stats("running")?["requests"].as_u64()?;
        (n > before).then_some(())
    });
    u.sigterm();
    // Well before the request in flight ends (4 s), and so before understudy exits.
    wait_until("new users refused", Duration::from_secs(2), || {
        let tried = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200));
        matches!(tried, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused).then_some(())
    });
    match in_flight.join().unwrap() {
        Ok((200, body)) => assert!(body.contains("hello from 1.0.0"), "{body}"),
        other => panic!("the request in flight got {other:?}"),
    }
    assert_eq!(u.wait_exit(Duration::from_secs(15)), Some(0));
}

#[test]
fn a_task_that_panics_stops_the_children_and_exits_non_zero() {
    let base = Base::new("panic");
    base.write_env("");
    let mut u = Understudy::start_with_env(&base, &[("UNDERSTUDY_INJECT_PANIC", "supervisor")]);
    base.drop_fixture("1.0.0", "");
    let code = u.wait_exit(Duration::from_secs(20));
    let log = u.log_text();
    assert!(
        matches!(code, Some(c) if c != 0),
        "exit code {code:?}; log:\n{log}"
    );
    assert!(
        log.contains("panic") && log.contains("injected"),
        "the panic is in the log:\n{log}"
    );
    assert!(log.contains("supervisor"), "the log names the task:\n{log}");
    wait_until("no child left", Duration::from_secs(5), || {
        processes_under(&base.path).is_empty().then_some(())
    });
}

#[test]
fn upstream_host_may_be_ipv6_or_a_host_name() {
    for host in ["::1", "[::1]", "localhost"] {
        let name = format!("upstream-{}", host.replace([':', '[', ']'], "x"));
        let base = Base::new(&name);
        base.write_env(&format!("UPSTREAM_HOST={host}\nMIN_MIRRORED=1000"));
        let mut u = Understudy::start(&base);
        base.drop_fixture("1.0.0", "");
        u.wait_serving();
        assert!(u.get("/x").1.contains("hello from 1.0.0"), "{host}");
        base.drop_fixture("1.1.0", "");
        base.wait_testing();
        wait_until(
            &format!("a copy mirrored through {host}"),
            Duration::from_secs(10),
            || {
                u.get("/copy");
                base.fixture_stats("testing")
                    .filter(|s| s["mirrored"].as_u64() > Some(0))
            },
        );
        u.stop();
    }
}

/// A zip bundle of `size` bytes of incompressible data plus the fixture program.
fn big_bundle(path: &std::path::Path, version: &str, size: usize) {
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let exec = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
    zip.start_file(format!("app-{version}"), exec).unwrap();
    zip.write_all(Base::fixture_script(version, "").as_bytes())
        .unwrap();
    let stored = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    // One megabyte of noise, written over and over: stored, so its bytes cost the unpacking the
    // same whatever they are, and made once (made afresh for each megabyte, they took most of the
    // test's CPU in a debug build).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let chunk_len = 1 << 20;
    let mut chunk = vec![0u8; chunk_len];
    for b in chunk.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b.copy_from_slice(&x.to_le_bytes());
    }
    for f in 0..(size / (8 * chunk_len)) {
        zip.start_file(format!("data/blob-{f}"), stored).unwrap();
        for _ in 0..8 {
            zip.write_all(&chunk).unwrap();
        }
    }
    zip.finish().unwrap();
}

#[test]
fn a_crash_of_running_is_handled_while_a_large_bundle_unpacks() {
    // 200 MiB written, as much again unpacked: not beside a test that measures free disk.
    let _disk = disk_lock();
    let base = Base::new("slow-install");
    base.write_env("");
    let u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    let staged = base.path.join(".app-2.0.0.zip.part");
    big_bundle(&staged, "2.0.0", 200 << 20);
    std::fs::rename(&staged, base.path.join("app-2.0.0.zip")).unwrap();
    // 2.0.0's own line: 1.0.0's `installing` is in the log from the start.
    wait_until("the install to begin", Duration::from_secs(10), || {
        u.log_text()
            .lines()
            .any(|l| l.contains("installing") && l.contains("app-2.0.0.zip"))
            .then_some(())
    });
    let (_, pid) = base.wait_instance_info("running");
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    wait_until("2.0.0 to be installed", Duration::from_secs(30), || {
        u.log_text().contains("installed 2.0.0").then_some(())
    });
    let log = u.log_text();
    let restart = log
        .find("restart_scheduled")
        .unwrap_or_else(|| panic!("no restart in the log:\n{log}"));
    let installed = log.find("installed 2.0.0").unwrap();
    let bundle = base.path.join("app-2.0.0.zip");
    let installing = log
        .find(&format!("installing {}", bundle.display()))
        .unwrap();
    assert!(
        installing < restart && restart < installed,
        "the crash was handled while the bundle unpacked:\n{log}"
    );
    wait_until("running back", Duration::from_secs(10), || {
        (u.get("/").0 == 200).then_some(())
    });
}

#[test]
fn sigterm_kills_a_hook_still_running_instead_of_waiting_out_its_timeout() {
    let base = Base::new("sigterm-hook");
    base.write_env(
        "PRE_START='/bin/sh -c \"echo started; exec sleep 3000\"'\nHOOK_TIMEOUT=1h\nSHUTDOWN_GRACE=2s",
    );
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    wait_until("PRE_START running", Duration::from_secs(20), || {
        processes_under(&base.path)
            .iter()
            .any(|(_, cmd)| cmd.contains("sleep 3000"))
            .then_some(())
    });
    let asked = std::time::Instant::now();
    u.sigterm();
    assert_eq!(
        u.wait_exit(Duration::from_secs(15)),
        Some(0),
        "{}",
        u.log_text()
    );
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "stopping took {:?}",
        asked.elapsed()
    );
    assert!(
        processes_under(&base.path).is_empty(),
        "the hook is killed: {:?}",
        processes_under(&base.path)
    );
    let log = std::fs::read_to_string(base.path.join("app-1.0.0/hooks.log")).unwrap_or_default();
    assert!(
        log.contains("killed: understudy is stopping"),
        "hooks.log says why the hook ended:\n{log}"
    );
}
