use std::os::unix::net::UnixDatagram;

use semver::Version;

use super::*;
use crate::events::VerdictKind;
use crate::supervisor::control::{InstanceStatus, VerdictStatus};

fn instance(version: &str, ready: bool) -> Option<InstanceStatus> {
    Some(InstanceStatus {
        version: Version::parse(version).unwrap(),
        instance: Some(1),
        port: Some(20000),
        pid: Some(4242),
        ready,
        since: None,
        last_heartbeat: None,
    })
}

fn verdict(version: &str, verdict: VerdictKind) -> Option<VerdictStatus> {
    Some(VerdictStatus {
        version: Version::parse(version).unwrap(),
        verdict,
        score: 42,
        pairs: 120,
        reasons: vec!["only 120 of 200 pairs".into()],
        parts: Vec::new(),
        diffs: Vec::new(),
        evidence: Default::default(),
    })
}

#[test]
fn the_summary_names_running_testing_and_the_verdict_on_one_line() {
    let mut s = Status::default();
    assert_eq!(summary(&s), "no running build");
    s.restarting = Some(Version::new(1, 0, 0));
    assert_eq!(summary(&s), "running 1.0.0 (restarting)");
    s.restarting = None;
    s.running = instance("1.0.0", false);
    assert_eq!(summary(&s), "running 1.0.0 (starting)");
    s.running = instance("1.0.0", true);
    s.testing = instance("1.1.0", false);
    assert_eq!(summary(&s), "running 1.0.0; testing 1.1.0 (starting)");
    s.testing = instance("1.1.0", true);
    s.verdict = verdict("1.1.0", VerdictKind::Wait);
    s.pending = Some(Version::new(1, 2, 0));
    s.paused = true;
    s.disk_full = Some("no space left\non device".into());
    assert_eq!(
        summary(&s),
        "running 1.0.0; testing 1.1.0: wait (score 42, 120 pairs); 1.2.0 waits; paused; disk full"
    );
    s.promoting = instance("1.1.0", false);
    s.verdict = verdict("1.1.0", VerdictKind::Promote);
    assert!(summary(&s).contains("promoting 1.1.0; testing 1.1.0: promote"));
}

#[test]
fn the_summary_is_one_bounded_line() {
    let mut s = Status::default();
    s.running = instance(
        "1.0.0-a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z",
        true,
    );
    s.testing = s.running.clone();
    s.pending = Some(s.running.as_ref().unwrap().version.clone());
    s.installing = s.pending.clone();
    let line = summary(&s);
    assert_eq!(line.chars().count(), MAX_STATUS);
    assert!(!line.contains('\n'));
}

#[test]
fn ready_waits_for_running_unless_there_is_none() {
    let mut s = Status::default();
    assert!(settled(&s), "no build yet: understudy itself is up");
    s.running = instance("1.0.0", false);
    assert!(!settled(&s));
    s.running = instance("1.0.0", true);
    assert!(settled(&s));
    s.running = None;
    s.restarting = Some(Version::new(1, 0, 0));
    assert!(
        settled(&s),
        "a crash-looping build does not hold understudy's start"
    );
}

#[test]
fn the_watchdog_period_is_bounded() {
    assert_eq!(
        watchdog_period("500000").unwrap(),
        Duration::from_millis(500)
    );
    for bad in [
        "0",
        "",
        "-1",
        "infinity",
        "86400000001",
        "18446744073709551616",
    ] {
        let e = watchdog_period(bad).unwrap_err().to_string();
        assert!(e.contains("WATCHDOG_USEC") && e.contains(bad), "{e}");
    }
}

#[test]
fn a_notify_socket_must_be_absolute_or_abstract() {
    for bad in [
        "relative/notify",
        "vsock:2:1234",
        &format!("/{}", "x".repeat(200)),
    ] {
        let e = Notifier::to(bad, None).unwrap_err().to_string();
        assert!(e.contains("NOTIFY_SOCKET"), "{e}");
    }
    assert!(!Notifier::default().is_on());
    Notifier::default().send(READY); // nothing to send to: nothing happens
}

#[test]
fn notifications_reach_a_path_socket_and_an_abstract_one() {
    use std::os::linux::net::SocketAddrExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let by_path = UnixDatagram::bind(&path).unwrap();
    Notifier::to(path.to_str().unwrap(), None)
        .unwrap()
        .send(READY);
    let name = format!("understudy-test-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let abstract_ = UnixDatagram::bind_addr(&addr).unwrap();
    Notifier::to(&format!("@{name}"), None)
        .unwrap()
        .send("STATUS=x");
    let mut buf = [0u8; 64];
    let n = by_path.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1");
    let n = abstract_.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STATUS=x");
}

#[test]
fn a_beat_is_fresh_up_to_stale_after() {
    let t = Instant::now();
    let stale = Duration::from_secs(6);
    assert!(fresh(t, t, stale));
    assert!(fresh(t, t + stale, stale));
    assert!(!fresh(t, t + stale + Duration::from_millis(1), stale));
    assert!(fresh(t + stale, t, stale), "a beat after now is fresh");
}

/// Every datagram waiting on `socket`, without waiting.
fn drain(socket: &UnixDatagram) -> Vec<String> {
    socket.set_nonblocking(true).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(n) = socket.recv(&mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out
}

#[tokio::test(start_paused = true)]
async fn ready_after_the_first_beat_and_the_watchdog_only_while_beats_come() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    let notifier = Notifier::to(path.to_str().unwrap(), Some(Duration::from_millis(200))).unwrap();
    let (status_tx, status) = watch::channel(Arc::new(Status::default()));
    let (pulse_tx, pulse) = watch::channel(Instant::now());
    let watched = Watched {
        status,
        pulse,
        stale_after: Box::new(|| Duration::from_millis(300)),
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(notifier, watched, stop.clone()));
    let settle = || tokio::time::sleep(Duration::from_millis(1));
    let mut s = Status {
        running: instance("1.0.0", false),
        ..Status::default()
    };
    status_tx.send_replace(Arc::new(s.clone()));
    settle().await;
    let got = drain(&socket);
    assert!(
        got.iter().all(|m| !m.contains("READY")),
        "not resumed yet: {got:?}"
    );
    assert!(
        got.contains(&"STATUS=running 1.0.0 (starting)".to_string()),
        "{got:?}"
    );
    pulse_tx.send_replace(Instant::now());
    settle().await;
    assert!(
        drain(&socket).iter().all(|m| m == "WATCHDOG=1"),
        "running is not ready"
    );
    s.running = instance("1.0.0", true);
    status_tx.send_replace(Arc::new(s));
    settle().await;
    let got = drain(&socket);
    assert!(
        got.contains(&"READY=1\nSTATUS=running 1.0.0".to_string()),
        "{got:?}"
    );
    // Beats every 100 ms keep the watchdog petted every 100 ms (half of 200 ms).
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        pulse_tx.send_replace(Instant::now());
    }
    settle().await;
    let pets = drain(&socket);
    assert!(
        pets.len() >= 9 && pets.iter().all(|m| m == "WATCHDOG=1"),
        "{pets:?}"
    );
    // No beat for 300 ms: the supervisor is hung, and the watchdog goes unpetted.
    tokio::time::sleep(Duration::from_millis(350)).await;
    drain(&socket);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(drain(&socket), Vec::<String>::new());
    stop.cancel();
    task.await.unwrap();
}
