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
