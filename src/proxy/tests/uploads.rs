//! A request's body on its way in: read ahead before an instance is chosen (in memory, then
//! spilled), `Expect: 100-continue` answered, streamed past `REQUEST_BUFFER`, cut short, paused,
//! or still coming when understudy stops.

use super::*;

/// A user who leaves partway through a body streamed to running (past `REQUEST_BUFFER`, here 0):
/// running's connection is reset, not closed, so an app never takes the part it got for a whole
/// request (an end of file after 3 of 10 bytes was run as an order of 3 bytes).
#[tokio::test]
async fn a_body_cut_short_by_its_user_resets_runnings_connection() {
    let p = start_proxy_with(1, Duration::from_secs(5), |s| s.request_buffer = 0);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    route_to(&p.routes, &upstream("127.0.0.1", port));
    let app = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        loop {
            let mut chunk = [0u8; 1024];
            match s.read(&mut chunk).await {
                Ok(0) => return Ok(got),
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e.kind()),
            }
        }
    });
    let mut user = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    user.write_all(b"POST /order HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        .await
        .unwrap();
    // Once the app has the head and the 3 bytes, the user goes.
    eventually("the request sent on", Duration::from_secs(5), || {
        p.stats.requests.load(Ordering::SeqCst) == 1
    })
    .await;
    drop(user);
    let ended = tokio::time::timeout(Duration::from_secs(5), app)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended, Err(std::io::ErrorKind::ConnectionReset), "{ended:?}");
    p.stop.cancel();
    p.handle.join().await.unwrap();
}

/// Within `REQUEST_BUFFER`, a body is read whole before running is asked (understudy answers
/// `Expect: 100-continue` itself): a user who leaves partway through it never reaches running at
/// all, and the next user's request is the first running gets.
#[tokio::test]
async fn a_body_cut_short_within_the_request_buffer_never_reaches_running() {
    let p = start_proxy(1, Duration::from_secs(5));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    route_to(&p.routes, &upstream("127.0.0.1", port));
    let mut user = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let head =
        "POST /order HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n";
    user.write_all(head.as_bytes()).await.unwrap();
    // understudy, not running, asks for the body.
    let go_on = interim(&mut user).await;
    assert_eq!(&go_on, b"HTTP/1.1 100 Continue\r\n\r\n");
    user.write_all(b"abc").await.unwrap();
    drop(user);
    let whole =
        "POST /order HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: close\r\n\r\nxyz";
    let next = tokio::spawn(send(p.addr, whole));
    let (mut s, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut got = Vec::new();
    while !got.ends_with(b"xyz") {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "running's first connection ended: {got:?}");
        got.extend_from_slice(&chunk[..n]);
    }
    let got = String::from_utf8_lossy(&got);
    assert!(
        !got.contains("abc"),
        "the cut-short body reached running: {got}"
    );
    s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), next)
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    p.stop.cancel();
    p.handle.join().await.unwrap();
}

/// The review's case: an upload begun under one running went, once whole, to the instance chosen
/// before it began, though that version was retired meanwhile (and a build under test had taken
/// its port). The instance is chosen once the body is in: here running changes while the body
/// comes, and the new one gets the request; the old one never hears of it.
#[tokio::test]
async fn an_upload_goes_to_what_runs_once_its_body_is_whole() {
    let p = start_proxy(1, Duration::from_secs(5));
    let old = old_running(&p);
    let mut user = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let head = "POST /len HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n";
    user.write_all(head.as_bytes()).await.unwrap();
    // understudy asks for the body: the request is on its way in.
    interim(&mut user).await;
    user.write_all(b"abc").await.unwrap();
    let (new, _, heads) = scripted_upstream().await;
    route_to(&p.routes, &new);
    user.write_all(b"def").await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), user.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(
        heads.lock().unwrap().len(),
        1,
        "the new running got the request"
    );
    never_asked(&old, "the retired running was asked");
    p.stop.cancel();
    p.handle.join().await.unwrap();
}

/// One request as running reads it: its head and `body` bytes after it, within 5 s each read.
async fn read_request(app: &mut tokio::net::TcpStream, body: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let end = got.windows(4).position(|w| w == b"\r\n\r\n").map(|e| e + 4);
        if end.is_some_and(|end| got.len() >= end + body) {
            return got;
        }
        let n = tokio::time::timeout(Duration::from_secs(5), app.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "running's connection ended at {} bytes", got.len());
        got.extend_from_slice(&chunk[..n]);
    }
}

/// Past `ANSWER_MEMORY` (none here), a body read ahead spills to disk (`ANSWER_SPILL`) rather than
/// stream at the user's pace: users trickling big bodies cannot hog the memory budget and make
/// everyone else's upload hold one of running's connections. The body, read back, reaches what
/// runs once it is whole, byte for byte, with a pipelined request behind it answered next.
#[tokio::test]
async fn a_body_past_the_memory_budget_is_read_ahead_onto_disk() {
    let dir = std::env::temp_dir().join(format!("us-spill-body-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let spill_dir = dir.clone();
    let p = start_proxy_with(1, Duration::from_secs(5), move |s| {
        s.answer_memory = 0;
        s.answer_spill = 4 << 20;
        s.spill_dir = spill_dir;
    });
    let old = old_running(&p);
    let body: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut user = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let head = format!(
        "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    user.write_all(head.as_bytes()).await.unwrap();
    interim(&mut user).await;
    user.write_all(&body[..150_000]).await.unwrap();
    let new = TcpListener::bind("127.0.0.1:0").await.unwrap();
    route_to(
        &p.routes,
        &upstream("127.0.0.1", new.local_addr().unwrap().port()),
    );
    user.write_all(&body[150_000..]).await.unwrap();
    user.write_all(b"GET /next HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (mut app, _) = tokio::time::timeout(Duration::from_secs(5), new.accept())
        .await
        .unwrap()
        .unwrap();
    let got = read_request(&mut app, body.len()).await;
    let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(&got[end..], &body[..], "the body as sent");
    app.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        .await
        .unwrap();
    let next = read_request(&mut app, 0).await;
    let next = String::from_utf8_lossy(&next);
    assert!(next.starts_with("GET /next "), "{next}");
    app.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")
        .await
        .unwrap();
    let mut answers = String::new();
    tokio::time::timeout(Duration::from_secs(5), user.read_to_string(&mut answers))
        .await
        .unwrap()
        .unwrap();
    assert!(
        answers.contains("\r\n\r\nok") && answers.ends_with("next"),
        "{answers}"
    );
    never_asked(&old, "the retired running was asked");
    p.stop.cancel();
    p.handle.join().await.unwrap();
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(left.is_empty(), "spill files left: {left:?}");
    std::fs::remove_dir(&dir).unwrap();
}

/// The code review's case: a body read ahead past `ANSWER_MEMORY` spilled, and the rest of it came
/// while the request waited for running to be back (read then into the user's buffer, behind the
/// spill). It was sent after the spill only once the user sent more, which it never would: the
/// request hung for `HEADER_TIMEOUT` and was lost. What is already read goes first now.
#[tokio::test]
async fn a_spilled_body_whose_rest_came_while_it_waited_is_sent_whole() {
    let dir = std::env::temp_dir().join(format!("us-spill-tail-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let spill_dir = dir.clone();
    let p = start_proxy_with(1, Duration::from_secs(5), move |s| {
        s.answer_memory = 64 << 10;
        s.answer_spill = 4 << 20;
        s.spill_dir = spill_dir;
        s.request_buffer = 200_000;
        s.upstream_timeout = Duration::from_secs(30);
    });
    p.routes.send_replace(Arc::new(Routes {
        restarting: Some(Version::new(1, 0, 0)),
        hold: Some(Hold::Restart),
        ..Routes::default()
    }));
    let body: Vec<u8> = (0..210_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut user = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let head = format!(
        "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    user.write_all(head.as_bytes()).await.unwrap();
    user.write_all(&body).await.unwrap();
    // Everything the user sent is in understudy (read ahead, spilled, or read while waiting).
    let me = user.local_addr().unwrap();
    eventually("understudy to read all", Duration::from_secs(5), || {
        unread_by(p.addr, me) == Some(0)
    })
    .await;
    let new = TcpListener::bind("127.0.0.1:0").await.unwrap();
    route_to(
        &p.routes,
        &upstream("127.0.0.1", new.local_addr().unwrap().port()),
    );
    let (mut app, _) = tokio::time::timeout(Duration::from_secs(5), new.accept())
        .await
        .unwrap()
        .unwrap();
    let got = read_request(&mut app, body.len()).await;
    let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(
        got[end..] == body[..],
        "the body as sent, {} bytes",
        got.len() - end
    );
    app.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), user.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    p.stop.cancel();
    p.handle.join().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Bytes waiting unread in the receive queue of `server`'s side of its connection from `client`
/// (IPv4, from `/proc/net/tcp`): 0 once the server has read all the client sent.
fn unread_by(server: SocketAddr, client: SocketAddr) -> Option<u64> {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => format!("{:08X}:{:04X}", u32::from(*v4.ip()).swap_bytes(), v4.port()),
        SocketAddr::V6(_) => String::new(),
    };
    let (local, remote) = (hex(server), hex(client));
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(1) == Some(&local.as_str()) && f.get(2) == Some(&remote.as_str()))
            .then(|| u64::from_str_radix(f.get(4)?.split(':').nth(1)?, 16).ok())?
    })
}

/// The code review's case: a declared length took its whole size of the memory budget at the
/// first read, however little had come, so a few uploads trickling after their first bytes held
/// all of it, and every other upload streamed at its user's pace (no disk here). The budget held
/// grows with what was sent now: two such uploads leave room for a third to be read ahead.
#[tokio::test]
async fn uploads_that_stall_hold_only_what_they_sent_of_the_budget() {
    let p = start_proxy_with(1, Duration::from_secs(5), |s| {
        s.answer_memory = 1 << 20;
        s.answer_spill = 0;
    });
    let old = old_running(&p);
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
        let head = "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 900000\r\n\r\n";
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&[b'x'; 10_000]).await.unwrap();
        let me = s.local_addr().unwrap();
        eventually("the stalled upload read", Duration::from_secs(5), || {
            unread_by(p.addr, me) == Some(0)
        })
        .await;
        stalled.push(s);
    }
    // A third upload, half sent before running changes: read ahead whole, it goes to the new one.
    let body = vec![b'y'; 300_000];
    let mut user = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let head =
        "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 300000\r\nConnection: close\r\n\r\n";
    user.write_all(head.as_bytes()).await.unwrap();
    user.write_all(&body[..150_000]).await.unwrap();
    let me = user.local_addr().unwrap();
    eventually("the first half read", Duration::from_secs(5), || {
        unread_by(p.addr, me) == Some(0)
    })
    .await;
    let new = TcpListener::bind("127.0.0.1:0").await.unwrap();
    route_to(
        &p.routes,
        &upstream("127.0.0.1", new.local_addr().unwrap().port()),
    );
    user.write_all(&body[150_000..]).await.unwrap();
    let (mut app, _) = tokio::time::timeout(Duration::from_secs(5), new.accept())
        .await
        .expect("the new running asked")
        .unwrap();
    let got = read_request(&mut app, body.len()).await;
    assert!(got.ends_with(&body), "{} bytes", got.len());
    never_asked(&old, "the third upload streamed to the old running");
    app.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        .await
        .unwrap();
    let mut answer = String::new();
    user.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(stalled);
    p.stop.cancel();
    p.handle.join().await.unwrap();
}

/// With `REQUEST_BUFFER=0` bodies stream to running as they come, so `Expect: 100-continue` is
/// running's to answer (it may refuse before the body is sent): it goes on, and running's `100`
/// comes back; understudy sends none of its own.
#[tokio::test]
async fn with_no_request_buffer_expect_goes_on_to_running() {
    let p = start_proxy_with(1, Duration::from_secs(5), |s| s.request_buffer = 0);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    route_to(
        &p.routes,
        &upstream("127.0.0.1", listener.local_addr().unwrap().port()),
    );
    let mut user = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let head = "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n";
    user.write_all(head.as_bytes()).await.unwrap();
    let (mut app, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .unwrap()
        .unwrap();
    let got = read_request(&mut app, 0).await;
    let got = String::from_utf8_lossy(&got).into_owned();
    assert!(got.contains("Expect: 100-continue\r\n"), "{got}");
    app.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
        .await
        .unwrap();
    let go_on = interim(&mut user).await;
    assert_eq!(&go_on, b"HTTP/1.1 100 Continue\r\n\r\n");
    user.write_all(b"hi").await.unwrap();
    let mut body = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(5), app.read_exact(&mut body))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&body, b"hi");
    app.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        .await
        .unwrap();
    let mut answer = String::new();
    user.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    p.stop.cancel();
    p.handle.join().await.unwrap();
}

/// The client review's case: in a crash loop's backoff the 503 is decided before any body byte,
/// yet understudy answered `100 Continue`, took up to a MiB of upload, then said 503 (and asked
/// for it again in a second). Nothing held for, the 503 comes first, the body not asked for.
#[tokio::test]
async fn in_a_crash_loops_backoff_an_upload_is_told_503_before_its_body() {
    let p = start_proxy(1, Duration::from_secs(5));
    p.routes.send_replace(Arc::new(Routes {
        restarting: Some(Version::new(1, 0, 0)),
        restart_at: Some(tokio::time::Instant::now() + Duration::from_secs(30)),
        ..Routes::default()
    }));
    let mut user = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let head = "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
    user.write_all(head.as_bytes()).await.unwrap();
    let mut first = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), user.read_exact(&mut first))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        &first,
        b"HTTP/1.1 503",
        "{}",
        String::from_utf8_lossy(&first)
    );
    p.stop.cancel();
    p.handle.join().await.unwrap();
}

/// The client review's case: a phone's upload that paused 11 s was cut off with no answer, the
/// body's silence bound to `HEADER_TIMEOUT` (10 s), which also guards against slowloris heads.
/// A body has `BODY_TIMEOUT` of its own (nginx's `client_body_timeout`): here the head must come
/// within 200 ms and the body may pause for 5 s.
#[tokio::test]
async fn an_upload_may_pause_longer_than_a_head_may_take() {
    let p = start_proxy_with(1, Duration::from_secs(5), |s| {
        s.header_timeout = Duration::from_millis(200);
        s.body_timeout = Duration::from_secs(5);
    });
    let (up, _, heads) = scripted_upstream().await;
    route_to(&p.routes, &up);
    let mut user = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let head = "POST /len HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nConnection: close\r\n\r\nabc";
    user.write_all(head.as_bytes()).await.unwrap();
    // The user's pause (the case itself, not a wait for understudy): three times HEADER_TIMEOUT.
    tokio::time::sleep(Duration::from_millis(600)).await;
    user.write_all(b"def").await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), user.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(heads.lock().unwrap().len(), 1);
    p.stop.cancel();
    p.handle.join().await.unwrap();
}

/// A stop while a body is read ahead: the user has three quarters of `SHUTDOWN_GRACE` to finish
/// it, then gets a 503 with `Retry-After` and `Connection: close` (it reached no instance, so it may be
/// sent again, whatever its method), not a bare close.
#[tokio::test]
async fn an_upload_unfinished_at_a_stop_gets_a_503_to_send_again() {
    let p = start_proxy(1, Duration::from_secs(5));
    let (mut user, heads) = upload_begun(&p).await;
    p.stop.cancel();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), user.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1\r\n"), "{answer}");
    assert!(answer.contains("connection: close\r\n"), "{answer}");
    assert!(heads.lock().unwrap().is_empty(), "running was asked");
    p.handle.join().await.unwrap();
}

/// An upload still coming when understudy stops (an `understudy upgrade`, a restart), and done
/// three seconds later (`SHUTDOWN_GRACE` is 5 s here), is served: the read-ahead first had half a
/// second, then half the grace, and such an upload got a 503 that streaming it to running (as
/// before the read-ahead) would not have given.
#[tokio::test]
async fn an_upload_done_three_seconds_after_a_stop_is_served() {
    let p = start_proxy(1, Duration::from_secs(5));
    let (mut user, heads) = upload_begun(&p).await;
    p.stop.cancel();
    // The user's own pace (the case, not a wait for understudy): three seconds to the body's end.
    tokio::time::sleep(Duration::from_secs(3)).await;
    user.write_all(b"def").await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), user.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("connection: close\r\n"), "{answer}");
    assert_eq!(heads.lock().unwrap().len(), 1);
    p.handle.join().await.unwrap();
}

/// An upload begun through `p` to a scripted running: its head with `Expect` sent, understudy's
/// `100` read, and 3 of its 6 bytes sent; the user's connection and the heads running has read.
async fn upload_begun(p: &Running) -> (tokio::net::TcpStream, Arc<std::sync::Mutex<Vec<String>>>) {
    let (up, _, heads) = scripted_upstream().await;
    route_to(&p.routes, &up);
    let mut user = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let head = "POST /len HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nExpect: 100-continue\r\n\r\n";
    user.write_all(head.as_bytes()).await.unwrap();
    let go_on = interim(&mut user).await;
    assert_eq!(&go_on, b"HTTP/1.1 100 Continue\r\n\r\n");
    user.write_all(b"abc").await.unwrap();
    (user, heads)
}

/// A running that must never be asked: a listener that accepts nothing, routed to by `p`.
fn old_running(p: &Running) -> std::net::TcpListener {
    let old = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    old.set_nonblocking(true).unwrap();
    route_to(
        &p.routes,
        &upstream("127.0.0.1", old.local_addr().unwrap().port()),
    );
    old
}

/// `old` (see [`old_running`]) got no connection; `why` names what it would mean.
fn never_asked(old: &std::net::TcpListener, why: &str) {
    let asked_old = old.accept();
    assert!(
        matches!(&asked_old, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "{why}: {asked_old:?}"
    );
}

/// The interim answer the user reads next (25 bytes: `HTTP/1.1 100 Continue` and its CRLFs),
/// within 5 s.
async fn interim(user: &mut tokio::net::TcpStream) -> [u8; 25] {
    let mut go_on = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(5), user.read_exact(&mut go_on))
        .await
        .unwrap()
        .unwrap();
    go_on
}
