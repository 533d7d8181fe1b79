//! Protocol upgrades through the proxy: a real WebSocket client (tungstenite) talks through
//! understudy to a real WebSocket server, reached through the running build (a fixture that relays
//! its port to the server, as an app would serve it itself).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tungstenite::Message;

use crate::support::*;

/// A WebSocket echo server answering each text message with `<name>:<message>`; counts the
/// handshakes it completed (port probes of the relay in front of it are not handshakes).
fn echo_server(name: &'static str) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let count = count.clone();
            std::thread::spawn(move || {
                let Ok(mut ws) = tungstenite::accept(stream) else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                while let Ok(msg) = ws.read() {
                    let answered = match msg {
                        Message::Text(t) => ws.send(Message::text(format!("{name}:{t}"))).is_ok(),
                        Message::Close(_) => false,
                        _ => true,
                    };
                    if !answered {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

type Socket = tungstenite::WebSocket<TcpStream>;

fn open(proxy: SocketAddr) -> Socket {
    let stream = TcpStream::connect(proxy).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let (ws, resp) = tungstenite::client(format!("ws://{proxy}/chat"), stream).unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

fn echo(ws: &mut Socket, text: &str) -> String {
    ws.send(Message::text(text)).unwrap();
    match ws.read().unwrap() {
        Message::Text(t) => t.to_string(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn websockets_are_spliced_to_running_and_follow_a_promotion() {
    let (a, _) = echo_server("v1");
    let (b, b_accepted) = echo_server("v2");
    let base = Base::new("upgrade-ws");
    base.write_env("STABLE_WINDOW=1h\nROLLBACK_WINDOW=0\nSHUTDOWN_GRACE=3s");
    let mut u = Understudy::start(&base);
    // v1 ignores SIGTERM, so only understudy closing the splice ends the socket at the grace
    // (stopping v1 would take a second grace before its SIGKILL).
    base.drop_fixture("1.0.0", &format!("--relay-to {a} --ignore-sigterm"));
    wait_until("running", Duration::from_secs(10), || base.link("running"));

    let mut ws = open(u.addr);
    for i in 0..3 {
        assert_eq!(
            echo(&mut ws, &format!("hello {i}")),
            format!("v1:hello {i}")
        );
    }

    base.drop_fixture("1.1.0", &format!("--relay-to {b}"));
    wait_until("testing", Duration::from_secs(10), || base.link("testing"));
    let mut second = open(u.addr);
    assert_eq!(echo(&mut second, "again"), "v1:again");
    assert_eq!(
        b_accepted.load(Ordering::SeqCst),
        0,
        "a handshake is never mirrored to testing"
    );
    drop(second);

    let (addr, token) = admin(&base);
    // No later than the switch: the route switches after this, the symlink a moment after that.
    let promoting = Instant::now();
    let (code, body) = api(addr, "POST", "/api/promote", Some(&token), "");
    assert_eq!(code, 200, "{body}");
    // The open socket stays up while the promotion drains it, then ends when the grace is over.
    let asked = Instant::now();
    let mut switched = None;
    let ended = loop {
        match ws
            .send(Message::text("still there?"))
            .and_then(|_| ws.read())
        {
            Ok(Message::Text(t)) => assert_eq!(t.as_str(), "v1:still there?"),
            Ok(_) => {}
            Err(_) => break Instant::now(),
        }
        if switched.is_none() && base.version_of("running").as_deref() == Some("app-1.1.0") {
            switched = Some(Instant::now());
        }
        assert!(
            asked.elapsed() < Duration::from_secs(20),
            "the socket never ended"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let switched = switched.expect("users were switched to 1.1.0 while the socket was open");
    // Each bound is measured from the side that cannot make it fail on a slow machine: the
    // socket outlives the switch (cut at the switch, it would end well under 2 s after the promote
    // was asked), measured from before the switch; it ends within one grace (two, 6 s, if v1's
    // SIGKILL ended it), measured from the symlink, which follows the switch.
    let since_asked = ended.duration_since(promoting);
    let after = ended.duration_since(switched);
    assert!(
        since_asked >= Duration::from_secs(2) && after < Duration::from_millis(5500),
        "the socket ended {since_asked:?} after the promote was asked and {after:?} after the \
         symlink switched; SHUTDOWN_GRACE is 3 s"
    );
    wait_until("1.1.0 running", Duration::from_secs(20), || {
        (base.version_of("running").as_deref() == Some("app-1.1.0")).then_some(())
    });
    let mut fresh = open(u.addr);
    assert_eq!(echo(&mut fresh, "hello"), "v2:hello");
    let _ = fresh.close(None);
    u.stop();
}

#[test]
fn a_refused_upgrade_is_relayed_as_an_answer() {
    let base = Base::new("upgrade-refused");
    base.write_env("");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    // The fixture is a plain HTTP server: it answers the handshake with a 200, which is relayed.
    let (status, body) = http_request(
        u.addr,
        "GET",
        "/chat",
        &[("Connection", "Upgrade"), ("Upgrade", "websocket")],
        "",
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("hello from 1.0.0"), "{body}");
    assert_eq!(u.get("/after").0, 200);
    u.stop();
}

/// A service whose users only open WebSockets mirrors nothing (a handshake is never copied): the
/// wait counts the handshakes among the requests not mirrorable and says what decides instead,
/// rather than "too little traffic" alone for ever.
#[test]
fn a_websocket_only_service_is_told_its_handshakes_are_not_mirrorable() {
    let (a, _) = echo_server("v1");
    let (b, _) = echo_server("v2");
    let base = Base::new("upgrade-ws-wait");
    base.write_env("EVALUATE_EVERY=100ms\nSTABLE_WINDOW=1h");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", &format!("--relay-to {a}"));
    wait_until("running", Duration::from_secs(10), || base.link("running"));
    base.drop_fixture("1.1.0", &format!("--relay-to {b}"));
    wait_until("testing", Duration::from_secs(10), || base.link("testing"));
    let (addr, _) = admin(&base);
    wait_for(
        "the wait to name the handshakes",
        Duration::from_secs(20),
        || {
            let mut ws = open(u.addr);
            assert_eq!(echo(&mut ws, "hi"), "v1:hi");
            let (_, s) = api(addr, "GET", "/api/status", None, "");
            let why = s["verdict"]["reasons"][0].as_str().unwrap_or_default();
            if s["verdict"]["version"] == "1.1.0" && why.contains("not mirrorable") {
                assert!(why.contains("opened a WebSocket"), "{why}");
                return Ok(());
            }
            Err(s.to_string())
        },
    );
    u.stop();
}
