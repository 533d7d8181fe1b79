//! The proxy as a whole on loopback: real upstreams (hyper's server, or raw bytes), real users.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Instant;

use std::sync::atomic::Ordering;

use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::upstream::upstream_authority;
use super::*;
use crate::instance::InstanceId;

use std::sync::atomic::AtomicUsize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod routes;
mod uploads;

/// Send a raw request on a fresh connection and read the whole answer.
async fn send(addr: SocketAddr, raw: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

async fn get(addr: SocketAddr) -> String {
    send(
        addr,
        "GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await
}

/// Poll `f` until it holds, failing after `limit`.
async fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A tiny upstream answering `hello` to every request, after `delay` for paths under /slow;
/// counts the requests it received.
async fn tiny_upstream(bind: &str, delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let hits = counted.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    hits.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if req.uri().path().starts_with("/slow") {
                            // The upstream's own latency, not a synchronisation.
                            tokio::time::sleep(delay).await;
                        }
                        Ok::<_, Infallible>(Response::new(http_body_util::Full::new(
                            Bytes::from_static(b"hello"),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, hits)
}

struct Running {
    addr: SocketAddr,
    stats: Arc<ProxyStats>,
    routes: watch::Sender<Arc<Routes>>,
    handle: ProxyHandle,
    stop: CancellationToken,
    fatal: CancellationToken,
}

/// The proxy through [`start`], on a loopback port, with `threads` threads.
fn start_proxy(threads: usize, drain_grace: Duration) -> Running {
    start_proxy_with(threads, drain_grace, |_| {})
}

/// As [`start_proxy`], with some settings changed first.
fn start_proxy_with(
    threads: usize,
    drain_grace: Duration,
    change: impl FnOnce(&mut ProxySettings),
) -> Running {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (routes, rx) = watch::channel(Arc::new(Routes::default()));
    let (queue, _mirror_rx) = MirrorQueue::new(4, vec![http::Method::GET], 1024, 0, 0.0);
    let (stop, fatal) = (CancellationToken::new(), CancellationToken::new());
    let mut settings = ProxySettings {
        canary_sticky: crate::config::Sticky::Ip,
        served: None,
        threads,
        pin: false,
        open: None,
        no_running_hint: "no running instance\n".into(),
        drain_grace,
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(10),
        limits: Limits {
            header_bytes: 64 << 10,
            headers: 100,
            body: 1 << 20,
        },
        max_connections: 100,
        upstream_timeout: Duration::from_secs(10),
        send_timeout: Duration::from_secs(10),
        answer_buffer: 1 << 20,
        request_buffer: 1 << 20,
        answer_memory: 64 << 20,
        spill_dir: std::env::temp_dir(),
        answer_spill: 0,
        min_free_disk: super::MinFreeDisk::Fixed(0),
    };
    change(&mut settings);
    let stats: Arc<ProxyStats> = Arc::default();
    let handle = start(
        listener,
        settings,
        rx,
        queue,
        stats.clone(),
        stop.clone(),
        fatal.clone(),
    )
    .unwrap();
    Running {
        addr,
        stats,
        routes,
        handle,
        stop,
        fatal,
    }
}

fn upstream(host: &str, port: u16) -> Arc<Upstream> {
    Arc::new(Upstream::new(InstanceId(1), Version::new(1, 0, 0), host, port).unwrap())
}

fn route_to(routes: &watch::Sender<Arc<Routes>>, up: &Arc<Upstream>) {
    routes.send_replace(Arc::new(Routes {
        running: Some(up.clone()),
        ..Routes::default()
    }));
}

/// An upstream speaking raw HTTP/1.1 by path: `/len` (a length), `/big` (300 000 bytes),
/// `/chunked`, `/eof` (ended by closing), `/broken` (closes mid-body), `/bye` (a length, then
/// closes without saying), `/bighead` (a 20 000-byte header, then 100 000 bytes, in one write). Keeps every request head it read; counts connections.
async fn scripted_upstream() -> (
    Arc<Upstream>,
    Arc<AtomicUsize>,
    Arc<std::sync::Mutex<Vec<String>>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (a, h) = (accepted.clone(), heads.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            let heads = h.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end);
                    // A body by Content-Length (the tests send no chunked ones).
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    while buf.len() < len {
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..len);
                    let path = head.split(' ').nth(1).unwrap_or("").to_string();
                    let is_head = head.starts_with("HEAD ");
                    heads.lock().unwrap().push(head);
                    let big: Vec<u8>;
                    let (answer, close): (&[u8], bool) = match path.as_str() {
                        _ if is_head => (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nkeep-alive: timeout=5\r\n\r\n", false),
                        "/big" => {
                            big = [&b"HTTP/1.1 200 OK\r\ncontent-length: 300000\r\n\r\n"[..], &[b'x'; 300_000]].concat();
                            (&big, false)
                        }
                        "/bighead" => {
                            let pad = "a".repeat(20_000);
                            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: 100000\r\nx-pad: {pad}\r\n\r\n");
                            big = [head.as_bytes(), &[b'y'; 100_000]].concat();
                            (&big, false)
                        }
                        "/chunked" => (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", false),
                        "/eof" => (b"HTTP/1.1 200 OK\r\n\r\nuntil close", true),
                        "/broken" => (b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhello", true),
                        "/bye" => (b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nbye", true),
                        _ => (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nkeep-alive: timeout=5\r\n\r\nhello", false),
                    };
                    if s.write_all(answer).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (upstream("127.0.0.1", port), accepted, heads)
}

/// One user connection through the proxy, as hyper's client (a real, independent client).
async fn user(
    addr: SocketAddr,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn ask(
    sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>,
    method: &str,
    path: &str,
    body: &'static str,
) -> (StatusCode, HeaderMap, String) {
    sender.ready().await.unwrap();
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "t")
        .header("te", "trailers")
        .header("keep-alive", "timeout=5")
        .header("x-forwarded-for", "192.0.2.1")
        .body(http_body_util::Full::new(Bytes::from_static(
            body.as_bytes(),
        )))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn requests_with_and_without_bodies_share_one_upstream_connection() {
    let (up, accepted, heads) = scripted_upstream().await;
    let proxy = start_proxy(1, Duration::from_secs(5));
    route_to(&proxy.routes, &up);
    let mut u = user(proxy.addr).await;
    assert_eq!(ask(&mut u, "GET", "/len", "").await.2, "hello");
    assert_eq!(ask(&mut u, "GET", "/chunked", "").await.2, "hello world");
    assert_eq!(ask(&mut u, "GET", "/big", "").await.2, "x".repeat(300_000));
    let (status, headers, body) = ask(&mut u, "HEAD", "/len", "").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    assert_eq!(headers["content-length"], "5");
    assert!(!headers.contains_key("keep-alive"), "{headers:?}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "plain requests share a connection"
    );
    // A request with a body takes the same engine and the same upstream connection.
    assert_eq!(ask(&mut u, "POST", "/len", "x").await.2, "hello");
    assert_eq!(ask(&mut u, "GET", "/len", "").await.2, "hello");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 6);
    for h in &heads {
        let lower = h.to_ascii_lowercase();
        assert!(
            lower.contains("x-forwarded-for: 192.0.2.1, 127.0.0.1\r\n"),
            "{h}"
        );
        assert!(
            !lower.contains("\r\nte:") && !lower.contains("\r\nkeep-alive:"),
            "{h}"
        );
    }
    assert!(
        heads[0].starts_with("GET /len HTTP/1.1\r\n"),
        "{}",
        heads[0]
    );
    assert!(
        heads[4].starts_with("POST /len HTTP/1.1\r\n"),
        "{}",
        heads[4]
    );
    proxy.stop.cancel();
    proxy.handle.join().await.unwrap();
}

#[tokio::test]
async fn a_connection_running_closed_while_idle_is_replaced_unseen() {
    let (up, accepted, _) = scripted_upstream().await;
    let proxy = start_proxy(1, Duration::from_secs(5));
    route_to(&proxy.routes, &up);
    let mut u = user(proxy.addr).await;
    for _ in 0..3 {
        let (status, _, body) = ask(&mut u, "GET", "/bye", "").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "bye"));
    }
    assert!(accepted.load(Ordering::SeqCst) >= 3);
    proxy.stop.cancel();
    proxy.handle.join().await.unwrap();
}

#[tokio::test]
async fn an_answer_ended_by_close_closes_the_user_connection_after_it() {
    let (up, _, _) = scripted_upstream().await;
    let proxy = start_proxy(1, Duration::from_secs(5));
    route_to(&proxy.routes, &up);
    // No `Connection: close` from the user: the proxy closes because the answer needs it.
    let answer = send(proxy.addr, "GET /eof HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("connection: close\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nuntil close"), "{answer}");
    proxy.stop.cancel();
    proxy.handle.join().await.unwrap();
}

#[tokio::test]
async fn an_answer_broken_off_closes_only_its_user_connection() {
    let (up, _, _) = scripted_upstream().await;
    let proxy = start_proxy(1, Duration::from_secs(5));
    route_to(&proxy.routes, &up);
    let before = proxy.stats.upstream_broken.load(Ordering::Relaxed);
    let answer = send(proxy.addr, "GET /broken HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.ends_with("\r\n\r\nhello"),
        "cut where running broke off: {answer}"
    );
    assert!(proxy.stats.upstream_broken.load(Ordering::Relaxed) > before);
    let mut u = user(proxy.addr).await;
    assert_eq!(ask(&mut u, "GET", "/len", "").await.2, "hello");
    proxy.stop.cancel();
    proxy.handle.join().await.unwrap();
}

#[tokio::test]
async fn stop_lets_requests_in_flight_finish_and_closes_idle_connections() {
    let (up_addr, hits) = tiny_upstream("127.0.0.1:0", Duration::from_millis(500)).await;
    let p = start_proxy(2, Duration::from_secs(10));
    let up = upstream("127.0.0.1", up_addr.port());
    route_to(&p.routes, &up);

    // An idle keep-alive connection: one request answered, then nothing.
    let mut idle = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    idle.write_all(b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    while !seen.ends_with(b"hello") {
        let mut buf = [0u8; 512];
        let n = idle.read(&mut buf).await.unwrap();
        assert!(n > 0, "the keep-alive answer was cut short");
        seen.extend_from_slice(&buf[..n]);
    }

    let clients: Vec<_> = (0..20)
        .map(|_| {
            let addr = p.addr;
            tokio::spawn(async move {
                send(
                    addr,
                    "GET /slow HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                )
                .await
            })
        })
        .collect();
    eventually(
        "20 requests in flight upstream",
        Duration::from_secs(5),
        || hits.load(Ordering::SeqCst) == 21,
    )
    .await;
    assert_eq!(up.inflight(), 20);

    p.stop.cancel();
    let stopped = Instant::now();
    p.handle.join().await.unwrap();
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "join waited {took:?}, not just for the requests in flight"
    );
    for c in clients {
        let answer = c.await.unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello"),
            "{answer}"
        );
    }
    assert_eq!(up.inflight(), 0);
    let mut rest = [0u8; 16];
    assert_eq!(
        idle.read(&mut rest).await.unwrap_or(0),
        0,
        "the idle connection is closed"
    );
    assert!(
        tokio::net::TcpStream::connect(p.addr).await.is_err(),
        "nothing accepts after stop"
    );
    assert!(!p.fatal.is_cancelled());
}

/// A kept-alive request still in flight when understudy stops is answered with `Connection:
/// close`, so its user sends no next request into a drain that would cut it off (the hostile
/// review's `/second`, sent after an answer that said nothing, waited out the grace for nothing).
#[tokio::test]
async fn an_answer_relayed_after_stop_says_the_connection_closes() {
    let (up_addr, hits) = tiny_upstream("127.0.0.1:0", Duration::from_millis(300)).await;
    let p = start_proxy(1, Duration::from_secs(10));
    route_to(&p.routes, &upstream("127.0.0.1", up_addr.port()));
    let mut user = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    user.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    eventually("the request in flight", Duration::from_secs(5), || {
        hits.load(Ordering::SeqCst) == 1
    })
    .await;
    p.stop.cancel();
    let mut seen = Vec::new();
    while !seen.ends_with(b"hello") {
        let mut buf = [0u8; 512];
        let n = user.read(&mut buf).await.unwrap();
        assert!(n > 0, "the answer was cut short");
        seen.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&seen).to_ascii_lowercase();
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    p.handle.join().await.unwrap();
}

/// Poll `f` once: `true` when it is done.
async fn poll_once(f: Pin<&mut impl std::future::Future>) -> bool {
    tokio::select! {
        biased;
        _ = f => true,
        _ = std::future::ready(()) => false,
    }
}

#[tokio::test]
async fn drain_resolves_when_the_last_request_ends_or_at_grace() {
    let up = upstream("127.0.0.1", 1);
    assert_eq!(up.drain(Duration::from_secs(5)).await, 0, "idle: at once");

    let (first, second) = (InflightGuard::new(&up), InflightGuard::new(&up));
    let started = Instant::now();
    let drain = up.drain(Duration::from_secs(10));
    tokio::pin!(drain);
    assert!(!poll_once(drain.as_mut()).await, "two requests in flight");
    drop(first);
    assert!(!poll_once(drain.as_mut()).await, "one request in flight");
    drop(second);
    let left = tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .expect("the last request out wakes the drain");
    assert_eq!(left, 0);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woken, not at grace"
    );

    let _stuck = InflightGuard::new(&up);
    let started = Instant::now();
    assert_eq!(up.drain(Duration::from_millis(200)).await, 1);
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn drain_counts_a_streaming_body_until_it_ends() {
    // An upstream that sends its head and half its body, then holds until released.
    let held = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_port = held.local_addr().unwrap().port();
    let (release, released) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut s, _) = held.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await.unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
            .await
            .unwrap();
        let _ = released.await;
        s.write_all(b"world").await.unwrap();
    });
    let p = start_proxy(1, Duration::from_secs(5));
    let up = upstream("127.0.0.1", up_port);
    route_to(&p.routes, &up);

    let mut user = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    user.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    while !seen.ends_with(b"hello") {
        let mut buf = [0u8; 512];
        let n = user.read(&mut buf).await.unwrap();
        assert!(n > 0, "the answer was cut short");
        seen.extend_from_slice(&buf[..n]);
    }
    let drain = up.drain(Duration::from_secs(10));
    tokio::pin!(drain);
    assert!(
        !poll_once(drain.as_mut()).await,
        "the body is still streaming"
    );
    assert_eq!(up.inflight(), 1);

    release.send(()).unwrap();
    let mut rest = String::new();
    user.read_to_string(&mut rest).await.unwrap();
    assert_eq!(rest, "world");
    let left = tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .expect("the end of the body wakes the drain");
    assert_eq!(left, 0);
    p.stop.cancel();
    p.handle.join().await.unwrap();
}

#[test]
fn upstream_authorities() {
    let a = |host: &str| upstream_authority(host, 20001).map(|a| a.to_string());
    assert_eq!(a("127.0.0.1").unwrap(), "127.0.0.1:20001");
    assert_eq!(a("::1").unwrap(), "[::1]:20001");
    assert_eq!(a("[::1]").unwrap(), "[::1]:20001");
    assert_eq!(a("fe80::1:2").unwrap(), "[fe80::1:2]:20001");
    assert_eq!(a("localhost").unwrap(), "localhost:20001");
    for bad in ["", "user@host", "a b", "host/x", "127.0.0.1:80", "::1]"] {
        let e = a(bad).expect_err(bad);
        assert!(matches!(e, ProxyError::BadUpstream { .. }), "{bad}: {e}");
    }
}

#[tokio::test]
async fn proxies_to_an_ipv6_upstream_given_without_brackets() {
    let (up_addr, hits) = tiny_upstream("[::1]:0", Duration::ZERO).await;
    let p = start_proxy(1, Duration::from_secs(5));
    route_to(&p.routes, &upstream("::1", up_addr.port()));
    let answer = get(p.addr).await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello"),
        "{answer}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    p.stop.cancel();
    p.handle.join().await.unwrap();
}

#[tokio::test]
async fn connect_is_405_and_never_forwarded() {
    let (up_addr, hits) = tiny_upstream("127.0.0.1:0", Duration::ZERO).await;
    let p = start_proxy(1, Duration::from_secs(5));
    route_to(&p.routes, &upstream("127.0.0.1", up_addr.port()));
    let answer = send(
        p.addr,
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "CONNECT reached running");
    p.stop.cancel();
    p.handle.join().await.unwrap();
}

/// A long answer head grows the read buffer past a small `ANSWER_BUFFER`, or past what an
/// exhausted `ANSWER_MEMORY` allows without a spill: the body still comes whole, at the user's
/// pace, and the connection serves the next request.
#[tokio::test]
async fn a_long_answer_head_past_every_answer_bound_still_brings_the_whole_body() {
    let tight: [fn(&mut ProxySettings); 2] = [
        |s| s.answer_buffer = 0,
        |s| {
            s.answer_memory = 0;
            s.answer_spill = 0;
        },
    ];
    for (case, change) in tight.into_iter().enumerate() {
        let p = start_proxy_with(1, Duration::from_secs(5), change);
        let (up, _, _) = scripted_upstream().await;
        route_to(&p.routes, &up);
        let mut u = user(p.addr).await;
        for round in 0..2 {
            let (status, headers, body) = ask(&mut u, "GET", "/bighead", "").await;
            assert_eq!(status, 200, "case {case}, round {round}");
            assert_eq!(headers["x-pad"].len(), 20_000);
            assert!(
                body.len() == 100_000 && body.bytes().all(|b| b == b'y'),
                "case {case}, round {round}: {} bytes",
                body.len()
            );
        }
        let (status, _, body) = ask(&mut u, "GET", "/len", "").await;
        assert_eq!(
            (status.as_u16(), body.as_str()),
            (200, "hello"),
            "case {case}"
        );
        p.stop.cancel();
    }
}

/// An app that answers a request as soon as it has its head, then closes (`close`, with the
/// body unread: a reset) or keeps the connection and reads no more.
async fn early_answering_upstream(close: bool) -> Arc<Upstream> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    if !matches!(s.read_buf(&mut buf).await, Ok(1..)) {
                        return;
                    }
                }
                let answer = b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\nconnection: close\r\n\r\ntoo big\n";
                let _ = s.write_all(answer).await;
                if !close {
                    std::future::pending::<()>().await;
                }
            });
        }
    });
    upstream("127.0.0.1", port)
}

/// An upload the app refuses at once (as Go's net/http does): the user gets the app's answer,
/// whether the app then closes or just stops reading, never a 502 or a 504.
#[tokio::test]
async fn an_app_that_answers_an_upload_early_is_heard_whether_it_closes_or_stops_reading() {
    for close in [true, false] {
        let p = start_proxy_with(1, Duration::from_secs(5), |s| s.limits.body = 1 << 30);
        route_to(&p.routes, &early_answering_upstream(close).await);
        let (mut rd, mut wr) = tokio::net::TcpStream::connect(p.addr)
            .await
            .unwrap()
            .into_split();
        let body_len: usize = 32 << 20;
        let sender = tokio::spawn(async move {
            let head =
                format!("POST /up HTTP/1.1\r\nhost: t\r\ncontent-length: {body_len}\r\n\r\n");
            wr.write_all(head.as_bytes()).await?;
            let chunk = vec![b'b'; 64 << 10];
            let mut sent = 0;
            while sent < body_len {
                sent += wr.write(&chunk[..chunk.len().min(body_len - sent)]).await?;
            }
            Ok::<_, std::io::Error>(sent)
        });
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(8), rd.read_to_end(&mut answer)).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with("HTTP/1.1 413") && text.ends_with("too big\n"),
            "close={close}: {read:?}, {text:.300}"
        );
        sender.abort();
        p.stop.cancel();
    }
}

/// The log of a request running did not answer says in words how, which request and what the
/// user got: it once printed Rust's `Io(Os { code: 104, kind: ConnectionReset, .. })`.
#[test]
fn a_failure_is_logged_in_words_with_its_request_and_the_users_status() {
    let running = Upstream::new(InstanceId(1), Version::new(3, 5, 0), "127.0.0.1", 41013).unwrap();
    let reset = std::io::Error::from_raw_os_error(104);
    let head = b"GET /orders/7?token=s3cret HTTP/1.1\r\nHost: x\r\n\r\n";
    let log = failure_log(&running, &pool::UpstreamError::Io(reset), head);
    assert_eq!(
        log,
        "running 3.5.0 at 127.0.0.1:41013 did not answer GET /orders/7: the connection failed: \
         Connection reset by peer (os error 104); the user got 502 Bad Gateway"
    );
    let timeout = pool::UpstreamError::Timeout(Duration::from_secs(60));
    let log = failure_log(&running, &timeout, b"HTTP/1.1 100 Continue\r\n\r\n");
    assert_eq!(
        log,
        "running 3.5.0 at 127.0.0.1:41013 did not answer: it sent nothing for 60s \
         (UPSTREAM_TIMEOUT); the user got 504 Gateway Timeout"
    );
}
