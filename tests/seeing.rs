//! Seeing what understudy sees: the event stream (SSE) and `understudy events`.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// An SSE client over plain TCP (HTTP/1.0, so the body is the raw event stream).
struct Sse {
    reader: BufReader<TcpStream>,
}

impl Sse {
    fn connect(addr: SocketAddr, last_event_id: Option<u64>) -> Sse {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut head =
            format!("GET /api/events HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        if let Some(id) = last_event_id {
            head.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        write!(s, "{head}\r\n").unwrap();
        let mut reader = BufReader::new(s);
        let mut status = String::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while status.is_empty() && Instant::now() < deadline {
            let _ = reader.read_line(&mut status);
        }
        assert!(status.contains(" 200 "), "{status}");
        Sse { reader }
    }

    /// Events (the JSON of `data:` lines) until `done` says so, or panic after `limit`.
    fn until(&mut self, limit: Duration, mut done: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        let mut line = String::new();
        while !done(&seen) {
            assert!(Instant::now() < deadline, "timed out; saw {seen:#?}");
            line.clear();
            match self.reader.read_line(&mut line) {
                Ok(0) => panic!("the stream ended; saw {seen:#?}"),
                Ok(_) => {
                    if let Some(data) = line.trim_end().strip_prefix("data:") {
                        seen.push(serde_json::from_str(data.trim()).unwrap());
                    }
                }
                Err(_) => {} // read timeout: poll again
            }
        }
        seen
    }
}

fn named<'a>(events: &'a [Value], name: &str, version: &str) -> Option<&'a Value> {
    events
        .iter()
        .find(|e| e["event"] == name && (e["version"] == version || e["to"] == version))
}

/// The reviewer's reproduction: a client that read up to event N of one run and reconnected to
/// the next with `Last-Event-ID: N` lost the new run's first events (numbers began at 1 again).
#[test]
fn event_numbers_go_on_across_a_restart_and_a_resuming_client_misses_nothing() {
    let base = Base::new("sse-restart");
    base.write_env("");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    let (admin_addr, _) = admin(&base);
    let before = Sse::connect(admin_addr, Some(0)).until(Duration::from_secs(20), |e| {
        named(e, "ready", "1.0.0").is_some()
    });
    let last = before
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .max()
        .unwrap();
    // A number that is not one is a JSON error saying how to resume.
    let (code, answer) = api(admin_addr, "GET", "/api/events?after=x", None, "");
    assert_eq!(code, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("?after=")),
        "{answer}"
    );
    u.stop();

    let mut u = Understudy::start(&base);
    u.wait_serving();
    let (admin_addr, _) = admin(&base);
    let after = Sse::connect(admin_addr, Some(last)).until(Duration::from_secs(20), |e| {
        named(e, "ready", "1.0.0").is_some()
    });
    let seqs: Vec<u64> = after.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(
        seqs.iter().all(|&s| s > last),
        "numbered on past {last}: {seqs:?}"
    );
    assert!(
        named(&after, "started", "1.0.0").is_some(),
        "the new run's first events reach the resuming client: {after:#?}"
    );
    u.stop();
}

#[test]
fn an_sse_client_sees_a_promotion_in_order_and_a_reconnect_misses_nothing() {
    let base = Base::new("sse");
    base.write_env("STABLE_WINDOW=1s\nMIN_MIRRORED=5\nEVALUATE_EVERY=200ms");
    let mut u = Understudy::start(&base);
    let (admin_addr, _) = admin(&base);
    let mut a = Sse::connect(admin_addr, None);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (stop, addr) = (stop.clone(), u.addr);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = http(addr, "GET", "/api/items");
            }
        })
    };
    base.drop_fixture("1.1.0", "");
    let seen = a.until(Duration::from_secs(30), |e| {
        named(e, "promoted", "1.1.0").is_some()
    });
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    let seqs: Vec<u64> = seen.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "consecutive: {seqs:?}"
    );
    let at = |name| {
        let e = named(&seen, name, "1.1.0").unwrap_or_else(|| panic!("no {name}: {seen:#?}"));
        e["seq"].as_u64().unwrap()
    };
    let order = [
        at("build_found"),
        at("started"),
        at("ready"),
        at("scored"),
        at("promoted"),
    ];
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "found → started → ready → scored → promoted: {order:?}"
    );
    assert!(seen
        .iter()
        .all(|e| e["at"].as_str().is_some_and(|t| t.contains('T'))));

    // A client that was away since 1.1.0 became ready gets exactly what followed.
    let ready = at("ready");
    let mut b = Sse::connect(admin_addr, Some(ready));
    let last = *seqs.last().unwrap();
    let resumed = b.until(Duration::from_secs(10), |e| {
        e.last().is_some_and(|e| e["seq"].as_u64() >= Some(last))
    });
    let expected: Vec<u64> = (ready + 1..=last).collect();
    let got: Vec<u64> = resumed.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(got, expected);

    // `understudy events` prints the same story.
    let (code, out, err) = cli(&base, &["events"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.contains(" promoted ") && l.contains("to=1.1.0")),
        "{out}"
    );
    u.stop();
}

/// Poll the instance's stdout until the fixture says it hangs; when the test saw it.
fn wait_for_hang(base: &Base, role: &str) -> Instant {
    wait_until("the fixture to hang", Duration::from_secs(10), || {
        let out = std::fs::read_to_string(base.path.join(role).join("stdout")).ok()?;
        out.contains("fixture: hanging").then(Instant::now)
    })
}

#[test]
fn a_testing_build_that_stops_answering_is_rejected_within_the_heartbeat_bound() {
    let base = Base::new("heartbeat-testing");
    base.write_env("HEARTBEAT_EVERY=300ms\nHEARTBEAT_MISSES=3");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    base.drop_fixture("1.1.0", "--hang-after-ms 1500");
    base.wait_testing();
    let hung = wait_for_hang(&base, "testing");
    let reason = base.path.join("rejected/app-1.1.0/reason.json");
    let text = wait_until("1.1.0 rejected", Duration::from_secs(10), || {
        std::fs::read_to_string(&reason).ok()
    });
    let took = hung.elapsed();
    // HEARTBEAT_EVERY × (HEARTBEAT_MISSES + 1) = 1.2 s, plus stopping it and filing it away
    // (1 s), plus 3 s of room for a loaded machine: timed across processes, this bound only
    // tells the configured pace from a wrong one (the default 2 s pace would take 8 s); the
    // count of misses is held by the reason's "3 heartbeats" below. No unit test holds the exact
    // bound yet: the misses are counted in src/instance/owner.rs (`heartbeat`), and no test
    // there runs it on a paused clock.
    assert!(
        took < Duration::from_millis(1200 + 1000 + 3000),
        "took {took:?}"
    );
    assert!(
        text.contains("stopped answering") && text.contains("3 heartbeats"),
        "{text}"
    );
    assert!(u.log_text().contains("heartbeat_lost"));
    // Running never noticed.
    assert_eq!(u.get("/").0, 200);
    u.stop();
}

#[test]
fn a_running_build_that_stops_answering_is_restarted_and_presence_is_published() {
    let base = Base::new("heartbeat-running");
    base.write_env("HEARTBEAT_EVERY=300ms\nHEARTBEAT_MISSES=3");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "--hang-after-ms 2500");
    u.wait_serving();
    // Presence: status.json is rewritten every HEARTBEAT_EVERY and shows the last heartbeat.
    let read = || -> Option<Value> {
        serde_json::from_str(
            &std::fs::read_to_string(base.path.join(".understudy/status.json")).ok()?,
        )
        .ok()
    };
    let first = wait_until("a heartbeat in status.json", Duration::from_secs(5), || {
        read().filter(|s| s["status"]["running"]["last_heartbeat"].is_string())
    });
    let t0 = first["written_unix_ms"].as_u64().unwrap();
    wait_until("status.json rewritten", Duration::from_secs(5), || {
        read().filter(|s| s["written_unix_ms"].as_u64() > Some(t0 + 250))
    });
    wait_for_hang(&base, "running");
    // Users wait at most for the heartbeats to find the hang (a request the closed port refuses
    // waits for the next route), and running is restarted as a new instance.
    wait_until(
        "running restarted as instance 2",
        Duration::from_secs(10),
        || {
            let started = Instant::now();
            let (code, _) = u.get("/");
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "a user waited {:?}",
                started.elapsed()
            );
            // 503 with Retry-After while it restarts, 200 again after; never a 502 for the port
            // closed before the hang was known.
            assert!(matches!(code, 200 | 503), "{code}");
            let link = base.link("running")?;
            link.to_string_lossy()
                .ends_with("app-1.0.0/2")
                .then_some(())
        },
    );
    assert!(
        u.log_text().contains("stopped answering"),
        "{}",
        u.log_text()
    );
    u.stop();
}

#[test]
fn logs_follow_goes_on_across_a_promotion_and_marks_the_switch() {
    let (base, mut u) = start_with_testing("logs-follow", "");
    let (code, out, err) = cli(&base, &["logs", "running"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("fixture 1.0.0 listening"), "{out}");
    let mut follower = KillOnDrop::new(
        std::process::Command::new(BIN)
            .args(["logs", "running", "--follow", "--base"])
            .arg(&base.path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let seen = Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let (seen, stdout) = (seen.clone(), follower.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut s = seen.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        })
    };
    wait_until(
        "the follower prints 1.0.0's log",
        Duration::from_secs(10),
        || {
            seen.lock()
                .unwrap()
                .contains("fixture 1.0.0 listening")
                .then_some(())
        },
    );
    // Truncated in place (shorter than what was read), then rotated away and made anew: the
    // follower reads each from its start.
    let stdout = std::fs::canonicalize(base.path.join("running"))
        .unwrap()
        .join("stdout");
    let printed = |what: &'static str| {
        wait_until(what, Duration::from_secs(10), || {
            seen.lock().unwrap().contains(what).then_some(())
        })
    };
    std::fs::write(&stdout, "after truncation\n").unwrap();
    printed("after truncation");
    std::fs::rename(&stdout, stdout.with_file_name("stdout.1")).unwrap();
    std::fs::write(&stdout, "after rotation\n").unwrap();
    printed("after rotation");
    assert_eq!(cli(&base, &["promote"]).0, 0);
    wait_until(
        "the follower moves to 1.1.0",
        Duration::from_secs(20),
        || {
            let s = seen.lock().unwrap();
            (s.contains("app-1.1.0") && s.contains("fixture 1.1.0 listening")).then_some(())
        },
    );
    let text = seen.lock().unwrap().clone();
    assert!(
        text.matches("is now").count() >= 2,
        "the switch is marked: {text}"
    );
    follower.kill().unwrap();
    follower.wait().unwrap();
    reader.join().unwrap();
    u.stop();
}

/// A webhook receiver on a loopback port: answers 200 and records each body, or (`hang`) accepts
/// and never answers.
fn receiver(hang: bool) -> (SocketAddr, Arc<std::sync::Mutex<Vec<Value>>>) {
    paced_receiver(hang, Duration::ZERO)
}

/// [`receiver`], taking `pace` to answer each delivery (a receiver slower than a burst of events).
fn paced_receiver(hang: bool, pace: Duration) -> (SocketAddr, Arc<std::sync::Mutex<Vec<Value>>>) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            if hang {
                held.push(s); // never read, never answered
                continue;
            }
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head, then the body by Content-Length.
            let body = loop {
                let n = match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                    let len = content_length(head);
                    if rest.len() >= len {
                        break Some(rest[..len].to_string());
                    }
                }
            };
            std::thread::sleep(pace);
            if let Some(body) = body {
                if let Ok(v) = serde_json::from_str(&body) {
                    sink.lock().unwrap().push(v);
                }
            }
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (addr, got)
}

#[test]
fn a_hanging_webhook_delays_nothing_and_a_good_one_gets_every_event_in_order() {
    let (good, got) = receiver(false);
    let (hang, _) = receiver(true);
    let base = Base::new("webhooks");
    base.write_env(&format!(
        "STABLE_WINDOW=1s\nMIN_MIRRORED=5\nEVALUATE_EVERY=200ms\nWEBHOOK_URLS=http://{hang}/stuck,http://{good}/hooks"
    ));
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    base.drop_fixture("1.1.0", "");
    let started = Instant::now();
    wait_until("1.1.0 promoted on time", Duration::from_secs(15), || {
        let t = Instant::now();
        assert_eq!(u.get("/api/items").0, 200);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "the proxy was held up: {:?}",
            t.elapsed()
        );
        (base.version_of("running").as_deref() == Some("app-1.1.0")).then_some(())
    });
    assert!(started.elapsed() < Duration::from_secs(15));
    let events = wait_until(
        "the promotion at the good webhook",
        Duration::from_secs(10),
        || {
            let g = got.lock().unwrap();
            g.iter()
                .any(|e| e["event"] == "promoted")
                .then(|| g.clone())
        },
    );
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    assert_eq!(seqs[0], 1, "from the first event on: {seqs:?}");
    u.stop();
}

/// The reviewer's case: events still queued for a slow receiver when understudy stops (a
/// `systemctl restart` just after a rejection) were lost without a word. They are sent at the
/// stop (one attempt each, within a bound); the rejection reaches the receiver.
#[test]
fn events_queued_for_a_webhook_at_a_stop_are_delivered_before_it_ends() {
    let (hook, got) = paced_receiver(false, Duration::from_millis(150));
    let base = Base::new("webhook-flush");
    base.write_env(&format!("WEBHOOK_URLS=http://{hook}/hooks"));
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    base.drop_fixture("1.1.0", "--crash-at-start");
    let (addr, _) = admin(&base);
    // A burst: the build found, installed, started, exited, rejected, while each delivery
    // takes 150 ms.
    let emitted = wait_until("1.1.0 rejected", Duration::from_secs(15), || {
        let (_, recent) = api(addr, "GET", "/api/events/recent", None, "");
        let events = recent["events"].as_array()?.clone();
        events
            .iter()
            .any(|e| e["event"] == "rejected")
            .then_some(events)
    });
    u.sigterm();
    assert_eq!(u.wait_exit(Duration::from_secs(20)), Some(0));
    let seqs = |events: &[Value]| -> Vec<u64> {
        events.iter().filter_map(|e| e["seq"].as_u64()).collect()
    };
    let delivered = seqs(&got.lock().unwrap());
    let missing: Vec<u64> = seqs(&emitted)
        .into_iter()
        .filter(|s| !delivered.contains(s))
        .collect();
    assert!(
        missing.is_empty(),
        "events emitted before the stop never reached the receiver: {missing:?} (got {delivered:?})"
    );
}

#[test]
fn a_refusing_webhook_is_counted_per_url_in_metrics_and_its_secrets_shown_nowhere() {
    let dead = free_addr();
    let base = Base::new("webhook-dropped");
    // Slack's form, whose path is the secret, and credentials; the second receiver is the dead one.
    base.write_env(&format!(
        "WEBHOOK_URLS=http://{dead}/services/T000/B000/XXXXSECRETXXXX?k=QUERYSECRET,\
         http://ops:hunter2secret@{dead}/api/webhooks/1/PATHSECRET"
    ));
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    let (addr, _) = admin(&base);
    let shown = format!("http://{dead} (#2)");
    // Five attempts with backoff (0.5 + 1 + 2 + 4 s) before the first event is given up.
    let text = wait_until(
        "a dropped event in /metrics",
        Duration::from_secs(30),
        || {
            let (_, text) = http(addr, "GET", "/metrics").ok()?;
            text.lines()
                .any(|l| {
                    l.starts_with("understudy_webhook_dropped_total{")
                        && l.contains(&format!("url=\"{shown}\""))
                        && !l.ends_with(" 0")
                })
                .then_some(text)
        },
    );
    let secrets = ["hunter2", "SECRET", "/services", "/api/webhooks"];
    let seen = |text: &str| secrets.iter().any(|s| text.contains(s));
    assert!(!seen(&text), "{text}");
    assert!(
        text.contains(&format!(
            "understudy_webhook_delivered_total{{url=\"http://{dead} (#1)\"}}"
        )),
        "{text}"
    );
    let log = u.log_text();
    assert!(
        log.contains(&shown),
        "the given-up warning names the receiver: {log}"
    );
    assert!(!seen(&log), "{log}");
    u.stop();
}

/// A symlink dropped into the base dir as a build (`ln -s /elsewhere/app-5.0.0 base/`) is not
/// taken; it was only a line in understudy's log, while a name meant as a build is told to the
/// operator as a `build_ignored` event, as every other one is.
#[test]
fn a_symlink_dropped_as_a_build_is_told_as_ignored() {
    let base = Base::new("symlink-drop");
    base.write_env("");
    let elsewhere = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let target = elsewhere.path().join("app-5.0.0");
    std::fs::write(&target, Base::fixture_script("5.0.0", "")).unwrap();
    let mut u = Understudy::start(&base);
    std::os::unix::fs::symlink(&target, base.path.join("app-5.0.0")).unwrap();
    let (addr, _) = admin(&base);
    let events = wait_until(
        "build_ignored for the symlink",
        Duration::from_secs(10),
        || {
            let (_, events) = api(addr, "GET", "/api/events/recent", None, "");
            let events = events.to_string();
            events.contains("build_ignored").then_some(events)
        },
    );
    assert!(
        events.contains("app-5.0.0") && events.contains("it is a symlink"),
        "{events}"
    );
    let (code, out, err) = cli(&base, &["events"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.contains("build_ignored") && l.contains("app-5.0.0")),
        "{out}"
    );
    assert_eq!(
        base.version_of("running"),
        None,
        "the symlink is not installed"
    );
    u.stop();
}

/// understudy's own log under `LOG_DIR` is rotated by renaming it (logrotate's default `create`
/// mode): understudy writes a new `understudy.log` at its next lines. Before, every later line
/// went into the renamed file, and `understudy.log` was never made again.
#[test]
fn understudys_own_log_renamed_away_is_written_anew() {
    let base = Base::new("own-log-rotate");
    base.write_env("LOG_DIR=logs");
    let mut u = Understudy::start(&base);
    let log = base.path.join("logs/understudy.log");
    let rotated = base.path.join("logs/understudy.log.2");
    wait_until("understudy.log to start", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("listening").then_some(())
    });
    std::fs::rename(&log, &rotated).unwrap();
    // Each SIGHUP logs a line; one every 200 ms until they land in a new understudy.log.
    let mut hup = Instant::now() - Duration::from_secs(1);
    let fresh = wait_until("a new understudy.log", Duration::from_secs(10), || {
        if hup.elapsed() >= Duration::from_millis(200) {
            // SAFETY: kill(2) on the understudy this test started.
            unsafe { libc::kill(u.pid() as i32, libc::SIGHUP) };
            hup = Instant::now();
        }
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("SIGHUP: re-reading").then_some(text)
    });
    assert!(!fresh.contains("listening"), "a new file: {fresh}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("listening"), "{old}");
    // Lines go to the new file from then on.
    let written = old.len();
    unsafe { libc::kill(u.pid() as i32, libc::SIGHUP) };
    wait_until(
        "the next line in the new file",
        Duration::from_secs(10),
        || {
            let text = std::fs::read_to_string(&log).ok()?;
            (text.matches("SIGHUP: re-reading").count()
                > fresh.matches("SIGHUP: re-reading").count())
            .then_some(())
        },
    );
    assert_eq!(std::fs::read_to_string(&rotated).unwrap().len(), written);
    u.stop();
}

/// The reviewer's case: after a restart the last rejection vanished from status and the
/// dashboard, leaving the why only in `rejected/`. It is read back from there at start.
#[test]
fn the_last_rejection_is_still_in_status_after_a_restart() {
    let base = Base::new("last-rejected-restart");
    base.write_env("");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    base.drop_fixture("1.1.0", "--crash-at-start");
    let (addr, _) = admin(&base);
    let before = wait_until("1.1.0 rejected", Duration::from_secs(15), || {
        let (_, s) = api(addr, "GET", "/api/status", None, "");
        (s["last_rejected"]["version"] == "1.1.0").then(|| s["last_rejected"].clone())
    });
    u.stop();
    let mut u = Understudy::start(&base);
    u.wait_serving();
    let (addr, _) = admin(&base);
    let (_, s) = api(addr, "GET", "/api/status", None, "");
    let after = &s["last_rejected"];
    assert_eq!(after["version"], "1.1.0", "{s}");
    assert_eq!(after["reasons"], before["reasons"], "{s}");
    let when = |v: &Value| understudy::instant::parse(v["at"].as_str().unwrap()).unwrap();
    let (b, a) = (when(&before), when(after));
    let apart = a.duration_since(b).unwrap_or_else(|e| e.duration());
    assert!(
        apart < Duration::from_secs(2),
        "the same moment: {before} and {after}"
    );
    let (code, out, _) = cli(&base, &["status"]);
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("rejected") && l.contains("1.1.0")),
        "{out}"
    );
    u.stop();
}
