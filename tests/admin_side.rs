//! The admin side must not take the service down: its connections are bounded and timed out,
//! understudy's own descriptor shortage is never blamed on running, and a page reached through
//! DNS rebinding cannot read the API (issue 22, items 3 and 4).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::support::*;

/// Raise this test process's own open-files limit, so it can hold the attack's connections.
fn raise_own_nofile(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = want.min(lim.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
}

/// Open `n` connections to `addr` at once (those the backlog cannot take time out and are left
/// out); every 22nd asks for the SSE stream, the rest send nothing.
fn flood(addr: SocketAddr, n: usize) -> Vec<tokio::net::TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use tokio::io::AsyncWriteExt;
        let tries = (0..n).map(|i| async move {
            let connect = tokio::net::TcpStream::connect(addr);
            let mut s = tokio::time::timeout(Duration::from_millis(500), connect)
                .await
                .ok()?
                .ok()?;
            if i % 22 == 0 {
                let head = format!("GET /api/events HTTP/1.1\r\nHost: {addr}\r\n\r\n");
                s.write_all(head.as_bytes()).await.ok()?;
            }
            Some(s)
        });
        futures_util::future::join_all(tries)
            .await
            .into_iter()
            .flatten()
            .collect()
    })
}

#[test]
fn eleven_hundred_admin_connections_under_ulimit_1024_never_cost_running_a_heartbeat() {
    raise_own_nofile(8192);
    let base = Base::new("admin-fds");
    base.write_env("HEARTBEAT_EVERY=200ms\nHEARTBEAT_MISSES=2\nHEADER_TIMEOUT=2s\n");
    let mut u = Understudy::start_limited(&base, &[], Some(1024));
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    let (_, pid) = base.wait_instance_info("running");
    let (addr, _) = admin(&base);

    let held = flood(addr, 1100);
    assert!(
        held.len() > 300,
        "only {} connections were made",
        held.len()
    );
    // understudy holds at most MAX_ADMIN_CONNECTIONS of them: its descriptors stay in budget.
    let fds = std::fs::read_dir(format!("/proc/{}/fd", u.pid()))
        .unwrap()
        .count();
    assert!(
        fds < 256 + 200,
        "understudy holds {fds} descriptors of 1024"
    );
    // Ten heartbeat periods and more: every user is served, running keeps its process.
    let until = Instant::now() + Duration::from_secs(3);
    let mut served = 0;
    while Instant::now() < until {
        let (code, body) = u.get("/");
        assert_eq!(
            code,
            200,
            "a user got {code} {body}; log:\n{}",
            u.log_text()
        );
        served += 1;
    }
    assert!(served > 10);
    assert_eq!(
        base.wait_instance_info("running").1,
        pid,
        "running was restarted"
    );
    let log = u.log_text();
    assert!(!log.contains("stopped answering"), "{log}");
    // The API answers again once the idle ones are timed out.
    drop(held);
    wait_until("the admin API to answer", Duration::from_secs(10), || {
        http(addr, "GET", "/api/status").ok().filter(|r| r.0 == 200)
    });
    u.stop();
}

/// Read until the peer closes; how long that took, or `None` if it stayed open past `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(start.elapsed())
            }
            Err(_) => {}
        }
    }
    None
}

#[test]
fn a_half_sent_head_a_silent_and_a_kept_alive_connection_are_closed_after_header_timeout() {
    let base = Base::new("admin-timeouts");
    base.write_env("HEADER_TIMEOUT=1s\n");
    let mut u = Understudy::start(&base);
    let (addr, _) = admin(&base);

    let mut half = TcpStream::connect(addr).unwrap();
    half.write_all(b"GET /api/status HTTP/1.1\r\nHo").unwrap();
    let mut silent = TcpStream::connect(addr).unwrap();
    let mut kept = TcpStream::connect(addr).unwrap();
    write!(kept, "GET /api/status HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let head = read_answer(&mut kept);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    for (what, s) in [
        ("half-sent head", &mut half),
        ("silent", &mut silent),
        ("kept-alive idle", &mut kept),
    ] {
        let took = closed_within(s, Duration::from_secs(6));
        assert!(
            took.is_some(),
            "the {what} connection was still open after 6 s"
        );
    }
    u.stop();
}

/// Ask for the event stream on `s` (a TCP or unix connection, its read timeout set): the status
/// code and, for a refusal (which closes the connection), the answer's body.
fn ask_for_stream(s: &mut (impl Read + Write), host: &str) -> (u16, String) {
    write!(s, "GET /api/events HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let head = loop {
        let n = s
            .read(&mut buf)
            .expect("an answer head within the read timeout");
        assert!(n > 0, "closed before an answer head");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, _)) = text.split_once("\r\n\r\n") {
            break head.to_string();
        }
    };
    let code: u16 = head[9..12].parse().unwrap();
    if code == 200 {
        return (code, String::new());
    }
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got).to_string();
    (code, text.split_once("\r\n\r\n").unwrap().1.to_string())
}

/// Ask for the event stream over TCP; the connection and the answer's status and refusal.
fn sse(addr: SocketAddr) -> (TcpStream, u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (code, body) = ask_for_stream(&mut s, &addr.to_string());
    (s, code, body)
}

#[test]
fn event_streams_take_at_most_half_the_admin_connections_and_outlive_the_idle_timeout() {
    let base = Base::new("admin-bound");
    base.write_env("HEADER_TIMEOUT=1s\nMAX_ADMIN_CONNECTIONS=4\n");
    let mut u = Understudy::start(&base);
    let (addr, _) = admin(&base);
    // As many streams as connections: two are served, the others refused at once, saying why.
    let (mut streams, refused): (Vec<_>, Vec<_>) = (0..4)
        .map(|_| sse(addr))
        .partition(|(_, code, _)| *code == 200);
    assert_eq!(streams.len(), 2, "{refused:?}");
    for (_, code, body) in &refused {
        assert_eq!(*code, 503, "{body}");
        assert!(
            body.contains("at most 2 event streams") && body.contains("MAX_ADMIN_CONNECTIONS"),
            "{body}"
        );
    }
    // Every other call still finds a connection, promptly.
    for (method, path, want) in [
        ("GET", "/api/verdict", 200),
        ("POST", "/api/gate", 403),
        ("GET", "/metrics", 200),
        ("GET", "/", 200),
        ("GET", "/api/status", 200),
    ] {
        let started = Instant::now();
        let (code, body) = http(addr, method, path).unwrap();
        assert_eq!(code, want, "{path}: {body}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{path} took {:?}",
            started.elapsed()
        );
    }
    // Past HEADER_TIMEOUT the streams are still open.
    for (s, _, _) in &mut streams {
        assert!(
            closed_within(s, Duration::from_millis(1500)).is_none(),
            "an event stream was timed out"
        );
    }
    // One stream ends: its slot is given back, and a new stream is served.
    streams.pop();
    wait_until(
        "a stream's slot to be given back",
        Duration::from_secs(40),
        || {
            let (s, code, _) = sse(addr);
            (code == 200).then_some(s)
        },
    );
    drop(streams);
    u.stop();
}

#[test]
fn follow_streams_on_the_unix_socket_leave_the_cli_room_for_commands() {
    let base = Base::new("admin-unix-streams");
    base.write_env("ADMIN_LISTEN=off\n");
    let mut u = Understudy::start(&base);
    let socket = base.path.join(".understudy/admin.sock");
    // As many streams as the socket's 32 connections: half are served, the rest refused.
    let mut served = Vec::new();
    for _ in 0..32 {
        let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (code, body) = ask_for_stream(&mut s, "understudy");
        match code {
            200 => served.push(s),
            _ => {
                assert_eq!(code, 503, "{body}");
                assert!(body.contains("at most 16 event streams"), "{body}");
            }
        }
    }
    assert_eq!(served.len(), 16);
    // A command still gets through at once.
    let (code, _, err) = cli_finished(spawn_cli(&base, &["status"]), Duration::from_secs(5));
    assert_eq!(code, Some(0), "understudy status within 5 s: {err}");
    // A further `events --follow` is refused, saying why: exit 1, not a silent end.
    let follow = spawn_cli(&base, &["events", "--follow"]);
    let (code, _, err) = cli_finished(follow, Duration::from_secs(20));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("refused (503)") && err.contains("at most 16 event streams"),
        "{err}"
    );
    drop(served);
    u.stop();
}

/// A GET with the given `Host` header; the status code.
fn get_with_host(addr: SocketAddr, path: &str, host: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    String::from_utf8_lossy(&head[9..12]).parse().unwrap()
}

#[test]
fn a_host_that_is_not_ours_gets_421_so_dns_rebinding_reads_nothing() {
    let base = Base::new("admin-rebinding");
    base.write_env("ADMIN_HOSTS=understudy.internal\n");
    let mut u = Understudy::start(&base);
    let (addr, token) = admin(&base);
    let port = addr.port();
    for path in [
        "/api/status",
        "/metrics",
        "/api/events",
        "/",
        "/api/verdict",
    ] {
        assert_eq!(
            get_with_host(addr, path, &format!("rebind.evil.example:{port}")),
            421,
            "{path}"
        );
        assert_eq!(get_with_host(addr, path, "127.0.0.1.nip.io"), 421, "{path}");
    }
    // A steering call with the right token but a foreign Host is refused too.
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /api/pause HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 421"), "{answer}");
    let (_, status) = api(addr, "GET", "/api/status", None, "");
    assert_eq!(status["paused"], false, "a refused call changed something");
    // Ours: the address, localhost, ADMIN_HOSTS.
    for host in [
        addr.to_string(),
        format!("localhost:{port}"),
        "understudy.internal".to_string(),
    ] {
        assert_eq!(get_with_host(addr, "/api/status", &host), 200, "{host}");
    }
    // The unix socket (the CLI) is not a browser's to reach: unaffected.
    let (code, out, err) = cli(&base, &["status"]);
    assert_eq!(code, 0, "{out}{err}");
    u.stop();
}

/// A TCP connection to `addr` whose receive buffer is 4 KiB (set before connecting, as a
/// client may): how many events fill it then depends on nothing the host tunes.
fn small_buffered(addr: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    let std::net::SocketAddr::V4(v4) = addr else {
        panic!("the admin API listens on IPv4 loopback in the tests: {addr}")
    };
    // SAFETY: plain socket calls on a descriptor made here and owned by the TcpStream after.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
        let size: libc::c_int = 4096;
        let set = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            std::ptr::from_ref(&size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let r = libc::connect(
            fd,
            std::ptr::from_ref(&sin).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
        TcpStream::from_raw_fd(fd)
    }
}

/// A client that subscribes to the event stream and never reads again, while events keep
/// coming: understudy holds little for it (16 KiB unsent besides the client's own buffer), so
/// its writes stall soon and it is closed `SEND_TIMEOUT` later, logged once; its slot serves
/// another stream. Left to the kernel's megabytes of send buffer, that took ~40 000 events.
#[test]
fn an_event_stream_nobody_reads_is_closed_soon_after_events_wait_for_it() {
    let base = Base::new("admin-unread-stream");
    base.write_env("SEND_TIMEOUT=1s\nMAX_ADMIN_CONNECTIONS=2\n");
    let mut u = Understudy::start(&base);
    let (addr, token) = admin(&base);
    let mut unread = small_buffered(addr);
    unread
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(ask_for_stream(&mut unread, &addr.to_string()).0, 200);
    assert_eq!(sse(addr).1, 503, "the one stream slot is taken");
    // Events, until the server gives up on the client (or 20 s pass).
    let closed = "while understudy had more to send";
    let started = Instant::now();
    let mut events = 0;
    let took = wait_until(
        "the unread stream to be closed",
        Duration::from_secs(20),
        || {
            for path in ["/api/pause", "/api/resume"] {
                let (code, body) = api(addr, "POST", path, Some(&token), "");
                assert_eq!(code, 200, "{path}: {body}");
                events += 1;
            }
            u.log_text().contains(closed).then(|| started.elapsed())
        },
    );
    eprintln!("closed after {events} events, {took:?}");
    // Its slot is free again, the log said it once, and the connection is closed.
    wait_until("its slot", Duration::from_secs(5), || {
        let (s, code, _) = sse(addr);
        (code == 200).then_some(s)
    });
    assert_eq!(u.log_text().matches(closed).count(), 1, "{}", u.log_text());
    let mut rest = Vec::new();
    unread
        .read_to_end(&mut rest)
        .expect("the server closed it: what was buffered, then the end");
    u.stop();
}
