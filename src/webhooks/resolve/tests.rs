//! Lookups that hang stay off tokio's blocking pool; a delivery still times out.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Condvar;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tower_service::Service;

use super::*;
use crate::webhooks::client::Poster;

/// A lookup that hangs until [`Gate::open`], as getaddrinfo does when no DNS server answers.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
    calls: AtomicUsize,
}

impl Gate {
    fn lookup(self: &Arc<Self>) -> Lookup {
        let gate = self.clone();
        Arc::new(move |_host: &str| {
            gate.calls.fetch_add(1, Ordering::SeqCst);
            let open = gate.open.lock().unwrap();
            drop(gate.opened.wait_while(open, |open| !*open).unwrap());
            Err(io::Error::other("released"))
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Lets every hung lookup end, so no thread outlives its test.
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    /// Waits (in real time, whatever tokio's clock does) until `n` lookups have started.
    fn started(&self, n: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.calls() < n {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

/// What the supervisor's installs and state writes need: one blocking thread (understudy has 4,
/// one per receiver's host would be enough to take them all), free while lookups hang.
#[test]
fn hung_lookups_leave_the_blocking_pool_free() {
    const HOSTS: usize = 4;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let gate = Arc::new(Gate::default());
    let resolver = ThreadResolver::with_lookup(gate.lookup());
    let (started, work) = rt.block_on(async {
        for i in 0..HOSTS {
            let target = format!("http://hung-{i}.test:9/hook");
            let poster = Poster::new(&target, None, resolver.clone()).unwrap();
            tokio::spawn(async move { poster.post("test", 1, Bytes::new()).await });
        }
        let started = gate.started(1);
        let work =
            tokio::time::timeout(Duration::from_secs(2), tokio::task::spawn_blocking(|| 42)).await;
        (started && gate.started(HOSTS), work)
    });
    let calls = gate.calls();
    gate.open();
    rt.shutdown_timeout(Duration::from_secs(1));
    assert!(
        matches!(work, Ok(Ok(42))),
        "blocking work waited behind the lookups: {work:?}"
    );
    assert!(
        started,
        "each host's lookup runs at once: {calls} of {HOSTS}"
    );
}

/// Five seconds of tokio's paused clock, which moves on its own only while no blocking task runs:
/// on a thread of its own, with a real-time deadline, so a lookup on the blocking pool fails the
/// test rather than hanging it.
#[test]
fn a_delivery_whose_lookup_hangs_times_out_and_its_retry_joins_the_same_lookup() {
    let gate = Arc::new(Gate::default());
    let resolver = ThreadResolver::with_lookup(gate.lookup());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let poster = Poster::new("http://hung.test:9/hook", None, resolver).unwrap();
        for attempt in 1..=2 {
            let answer = rt.block_on(poster.post("test", attempt, Bytes::new()));
            let _ = tx.send(answer);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let answers: Vec<_> = (0..2)
        .map(|_| rx.recv_timeout(deadline.saturating_duration_since(Instant::now())))
        .collect();
    let started = gate.started(1);
    let calls = gate.calls();
    gate.open();
    for answer in answers {
        let why = answer.expect("the delivery ended").unwrap_err();
        assert!(why.contains("no answer within"), "{why}");
    }
    assert!(
        started && calls == 1,
        "one lookup at a time per host: {calls}"
    );
}

#[test]
fn an_answer_reaches_every_caller_and_is_not_kept() {
    let gate = Arc::new(Gate::default());
    let resolver = ThreadResolver::with_lookup(gate.lookup());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (first, second) = rt.block_on(async {
        let (mut a, mut b) = (resolver.clone(), resolver.clone());
        let first = a.call("h.test".parse().unwrap());
        let second = b.call("h.test".parse().unwrap());
        assert!(gate.started(1));
        gate.open();
        (first.await, second.await)
    });
    for answer in [first, second] {
        assert_eq!(answer.unwrap_err().to_string(), "released");
    }
    assert_eq!(
        gate.calls(),
        1,
        "the second caller waited on the first lookup"
    );
    let third = rt.block_on(resolver.clone().call("h.test".parse().unwrap()));
    assert!(third.is_err());
    assert_eq!(gate.calls(), 2, "a later caller looks up afresh");
}

#[tokio::test]
async fn a_looked_up_address_is_connected_to_on_the_url_s_port() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let answering = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        s.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            .unwrap();
        String::from_utf8_lossy(&head).to_string()
    });
    let lookup: Lookup = Arc::new(|host: &str| {
        assert_eq!(host, "receiver.test");
        Ok(vec![SocketAddr::from(([127, 0, 0, 1], 0))])
    });
    let target = format!("http://receiver.test:{port}/hook");
    let poster = Poster::new(&target, None, ThreadResolver::with_lookup(lookup)).unwrap();
    let status = poster.post("test", 1, Bytes::new()).await.unwrap();
    assert_eq!(status, http::StatusCode::NO_CONTENT);
    let head = answering.join().unwrap();
    assert!(head.starts_with("POST /hook HTTP/1.1"), "{head}");
}
