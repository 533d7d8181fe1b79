//! What may be secret stays behind the token: users' answer values (the differences' examples)
//! and a hook's output are shown over TCP only with `Authorization: Bearer <token>` and on the
//! unix socket (the CLI); without the token every read shows the structure with the values
//! hidden. Real binary, real fixture children, a real failing PRE_PROMOTE script.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;

/// Running's answers carry this user's address...
const RUNNING_VALUE: &str = "alice.liddell@example.com";
/// ...and testing's another one: the difference's example values.
const TESTING_VALUE: &str = "mallory.private@example.com";
/// What the smoke script prints before it fails (not on its command line).
const HOOK_SECRET: &str = "password=hunter2-s3cr3t";
/// An argument on the hook's command line (`curl -u user:password` is common).
const CMD_SECRET: &str = "--api-key=cmdline-k3y";
/// What a hidden value reads as.
const HIDDEN: &str = "(hidden: send the token)";

#[test]
fn answer_values_and_hook_output_need_the_token_over_tcp() {
    let base = Base::new("secrets");
    let smoke = base.path.join("smoke.sh");
    std::fs::write(
        &smoke,
        format!("#!/bin/sh\necho \"smoke test: login with {HOOK_SECRET} refused\"\nexit 3\n"),
    )
    .unwrap();
    std::fs::set_permissions(&smoke, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    base.write_env(&format!(
        "STABLE_WINDOW=2s\nMIN_MIRRORED=30\nEVALUATE_EVERY=250ms\nROLLBACK_WINDOW=0\nPRE_PROMOTE='{} {CMD_SECRET}'",
        smoke.display()
    ));
    let u = Understudy::start(&base);
    base.drop_fixture("1.0.0", &format!("--owner {RUNNING_VALUE}"));
    u.wait_serving();
    // Paused, the rejected build stays under test, so an operator's promote runs PRE_PROMOTE.
    assert_eq!(cli(&base, &["pause"]).0, 0);
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (stop, addr) = (stop.clone(), u.addr);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = http(addr, "GET", "/api/items");
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    base.drop_fixture("1.1.0", &format!("--owner {TESTING_VALUE}"));
    let (addr, token) = admin(&base);
    wait_until("1.1.0 judged a reject", Duration::from_secs(40), || {
        let (_, v) = api(addr, "GET", "/api/verdict", Some(&token), "");
        (v["verdict"] == "reject").then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    let (code, _, err) = cli(&base, &["promote"]);
    assert_ne!(code, 2, "{err}");
    wait_until("PRE_PROMOTE to fail", Duration::from_secs(20), || {
        let (_, st) = api(addr, "GET", "/api/status", Some(&token), "");
        st["hook_failure"].as_str().map(|_| ())
    });

    without_the_token_nothing_shows_the_values(addr);
    with_the_token_or_on_the_socket_everything_shows(addr, &token, &base);
    drop(u);
}

/// Without the token (or with a wrong one): where, how often, that the hook failed; never the
/// values, on every read route.
fn without_the_token_nothing_shows_the_values(addr: SocketAddr) {
    // Without the token: where, how often, that the hook failed; never the values.
    for path in [
        "/api/verdict",
        "/api/status",
        "/api/events/recent",
        "/api/schedule",
    ] {
        let (code, body) = api(addr, "GET", path, None, "");
        assert_eq!(code, 200, "{path}: {body}");
        hidden(path, &body.to_string());
    }
    let (_, verdict) = api(addr, "GET", "/api/verdict", None, "");
    assert!(verdict.to_string().contains(HIDDEN), "{verdict}");
    let (_, st) = api(addr, "GET", "/api/status", None, "");
    let row = st["verdict"]["diffs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["path"] == "$.owner")
        .unwrap_or_else(|| panic!("the $.owner row is public: {st}"));
    assert_eq!(
        (&row["running"], &row["testing"]),
        (&HIDDEN.into(), &HIDDEN.into())
    );
    assert!(row["pairs"].as_u64() > Some(0), "{row}");
    let hook = st["hook_failure"].as_str().unwrap();
    assert!(
        hook.contains("PRE_PROMOTE") && hook.contains("exit status: 3"),
        "{hook}"
    );
    assert!(hook.contains(HIDDEN), "{hook}");
    let (_, recent) = api(addr, "GET", "/api/events/recent", None, "");
    let ran = recent["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "hook_ran" && e["ok"] == false)
        .unwrap_or_else(|| panic!("the failed hook is public: {recent}"));
    assert!(ran["detail"].as_str().unwrap().contains(HIDDEN), "{ran}");
    let (_, gate) = api(addr, "POST", "/api/gate", None, "");
    hidden("/api/gate", &gate.to_string());
    hidden("/api/events", &event_stream(addr, None));
    hidden("/", &http(addr, "GET", "/").unwrap().1);
    hidden("/metrics", &http(addr, "GET", "/metrics").unwrap().1);
    // A wrong token is no token.
    let (_, st) = api(addr, "GET", "/api/status", Some("not-the-token"), "");
    hidden("/api/status with a wrong token", &st.to_string());
}

/// With the token over TCP, and on the unix socket (the CLI) without one: everything, as before.
fn with_the_token_or_on_the_socket_everything_shows(addr: SocketAddr, token: &str, base: &Base) {
    // With the token, as today.
    let (_, verdict) = api(addr, "GET", "/api/verdict", Some(token), "");
    shown("/api/verdict", &verdict.to_string(), false);
    let (_, st) = api(addr, "GET", "/api/status", Some(token), "");
    shown("/api/status", &st.to_string(), true);
    let (_, recent) = api(addr, "GET", "/api/events/recent", Some(token), "");
    shown("/api/events/recent", &recent.to_string(), true);
    shown("/api/events", &event_stream(addr, Some(token)), true);

    // On the unix socket (the CLI), no token needed.
    let (code, out, err) = cli(base, &["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    shown("understudy status --json", &out, true);
    // The values are in the `scored` events, which `events` shows only with --all.
    let (code, out, err) = cli(base, &["events", "--all", "--json"]);
    assert_eq!(code, 0, "{err}");
    shown("understudy events --all --json", &out, true);
}

/// Neither value nor the hook's secret in what `what` answered.
fn hidden(what: &str, text: &str) {
    for secret in [RUNNING_VALUE, TESTING_VALUE, HOOK_SECRET, CMD_SECRET] {
        assert!(
            !text.contains(secret),
            "{what} shows {secret} without the token: {text}"
        );
    }
}

/// The values (and, with `hook`, the hook's secret) in what `what` answered.
fn shown(what: &str, text: &str, hook: bool) {
    assert!(
        text.contains(TESTING_VALUE) && text.contains(RUNNING_VALUE),
        "{what}: {text}"
    );
    assert!(!hook || text.contains(HOOK_SECRET), "{what}: {text}");
    assert!(!hook || text.contains(CMD_SECRET), "{what}: {text}");
    assert!(
        !text.contains(HIDDEN),
        "{what} hides with the token: {text}"
    );
}

/// The event stream from its start until the failed promotion's event, read over TCP.
fn event_stream(addr: SocketAddr, token: Option<&str>) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET /api/events?after=0 HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}\r\n"
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    let mut buf = [0u8; 16384];
    while !String::from_utf8_lossy(&got).contains("event: promotion_failed") {
        assert!(
            Instant::now() < deadline,
            "no promotion_failed on the stream: {}",
            String::from_utf8_lossy(&got)
        );
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}
