//! The machinery that replays the corpus through the real binary: the app's side (a listener the
//! relay build connects to, and the upstream connections it opened), the client's side (one raw
//! connection to understudy per case), and the runner that plays each case's steps against both.
//!
//! Upstream connections are pooled by understudy, so the app side never assumes which connection
//! a request comes on: it holds every connection it accepted and takes the next request from
//! whichever has bytes. After each case it closes all of them, then waits until every one of them
//! is seen closed at understudy's end of the relay (see [`App::quiesce`]), so no case can get a
//! connection the previous one used: only the cases about stale pooled connections make them,
//! within the case.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use super::established::established_at;
use super::{Case, Once, Step};

/// How long any one step may wait for what it expects: more than `UPSTREAM_TIMEOUT` (2 s), so
/// the cases about it see the 504 or the close.
const PATIENCE: Duration = Duration::from_secs(5);

/// How long the end of a case watches for what must not come: bytes at the app nobody expected,
/// bytes or a close at a client that must stay open.
const SETTLE: Duration = Duration::from_millis(100);

/// How long understudy's end of the relay may take to see the app's closes between cases.
const QUIESCE: Duration = Duration::from_secs(5);

/// One upstream connection understudy opened (through the relay), as the app sees it.
struct Upstream {
    id: u64,
    stream: TcpStream,
    /// Bytes read and not yet matched by a step.
    unread: Vec<u8>,
    /// Why no more bytes will come (`closed`, or the error), once that is so.
    ended: Option<String>,
}

impl Upstream {
    /// Whether what arrived tells already whether `want` did: all of it, a byte that differs,
    /// or the end.
    fn settled(&self, want: &[u8]) -> bool {
        let n = self.unread.len().min(want.len());
        n == want.len() || self.unread[..n] != want[..n] || self.ended.is_some()
    }
}

/// The app: the listener the relay build connects to for each connection understudy opens.
pub struct App {
    listener: TcpListener,
    conns: Vec<Upstream>,
    /// The connection the last expected request came on: answers, closes and resets go there.
    current: Option<u64>,
    next_id: u64,
}

impl App {
    pub fn bind() -> App {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        listener.set_nonblocking(true).expect("a fresh socket");
        App {
            listener,
            conns: Vec::new(),
            current: None,
            next_id: 1,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener")
    }

    /// Accept whatever is waiting and read whatever arrived, without blocking. A connection that
    /// ended with nothing unread is forgotten: a probe that sent nothing, or one understudy closed.
    fn poll_now(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            let _ = stream.set_nonblocking(true);
            self.conns.push(Upstream {
                id: self.next_id,
                stream,
                unread: Vec::new(),
                ended: None,
            });
            self.next_id += 1;
        }
        for c in &mut self.conns {
            if c.ended.is_none() {
                c.ended = read_available(&mut c.stream, &mut c.unread);
            }
        }
        let current = self.current;
        self.conns
            .retain(|c| c.ended.is_none() || !c.unread.is_empty() || Some(c.id) == current);
    }

    /// Block until a connection or a byte may have arrived, `limit` at most.
    fn wait(&self, limit: Duration) {
        let mut fds = vec![self.listener.as_raw_fd()];
        fds.extend(
            self.conns
                .iter()
                .filter(|c| c.ended.is_none())
                .map(|c| c.stream.as_raw_fd()),
        );
        wait_readable(&fds, limit);
    }

    /// The connection the next request is on: the current one if it has bytes, else the first
    /// that has.
    fn arrived(&self) -> Option<usize> {
        let has = |c: &Upstream| !c.unread.is_empty();
        self.conns
            .iter()
            .position(|c| has(c) && Some(c.id) == self.current)
            .or_else(|| self.conns.iter().position(has))
    }

    /// The app must receive exactly `want` next, on whichever connection it comes.
    pub fn expect(&mut self, want: &[u8], deadline: Instant) -> Result<(), String> {
        loop {
            self.poll_now();
            let now = Instant::now();
            if let Some(i) = self.arrived() {
                if self.conns[i].settled(want) || now >= deadline {
                    return self.take(i, want);
                }
            } else if now >= deadline {
                return Err(format!("the app received nothing; expected {}", esc(want)));
            }
            self.wait(deadline.saturating_duration_since(now));
        }
    }

    /// Match `want` against connection `i`'s unread bytes and consume them.
    fn take(&mut self, i: usize, want: &[u8]) -> Result<(), String> {
        let c = &mut self.conns[i];
        self.current = Some(c.id);
        if c.unread.starts_with(want) {
            c.unread.drain(..want.len());
            return Ok(());
        }
        let got = std::mem::take(&mut c.unread);
        Err(format!(
            "the app (connection #{}) received other bytes: {}",
            c.id,
            mismatch(want, &got, &c.ended)
        ))
    }

    fn current_index(&self) -> Result<usize, String> {
        self.conns
            .iter()
            .position(|c| Some(c.id) == self.current)
            .ok_or_else(|| "no request arrived at the app to act on".to_string())
    }

    /// The app writes on the current connection. A failed write is not a failure in itself
    /// (understudy may have given up on the connection): what the client then gets says it.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        let c = &self.conns[self.current_index()?];
        let _ = write_blocking(&c.stream, bytes);
        Ok(())
    }

    /// The app closes the current connection (a FIN).
    pub fn close(&mut self) -> Result<(), String> {
        let i = self.current_index()?;
        self.conns.remove(i);
        self.current = None;
        Ok(())
    }

    /// The app resets the current connection (`SO_LINGER` 0, then close: an RST).
    pub fn reset(&mut self) -> Result<(), String> {
        let i = self.current_index()?;
        let c = self.conns.remove(i);
        set_zero_linger(c.stream.as_raw_fd());
        self.current = None;
        Ok(())
    }

    /// Read for `window` more, then fail if any connection holds bytes no step expected.
    pub fn nothing_more(&mut self, window: Duration) -> Result<(), String> {
        let until = Instant::now() + window;
        loop {
            self.poll_now();
            let now = Instant::now();
            if now >= until {
                break;
            }
            self.wait(until - now);
        }
        let stray: Vec<String> = self
            .conns
            .iter()
            .filter(|c| !c.unread.is_empty())
            .map(|c| format!("#{}: {}", c.id, esc(&c.unread)))
            .collect();
        match stray.is_empty() {
            true => Ok(()),
            false => Err(format!(
                "the app received bytes no step expected: {}",
                stray.join("; ")
            )),
        }
    }

    /// Close every upstream connection the app holds (those not accepted yet too).
    pub fn close_all(&mut self) {
        self.poll_now();
        self.conns.clear();
        self.current = None;
    }

    /// Wait until understudy's end of every connection the app closed has seen the close: the
    /// relay's side of each is then past ESTABLISHED (it passed the FIN on and understudy's
    /// kernel took it), so understudy can tell it is stale before reusing it. Connections opened
    /// since (probes, or connections understudy opens ahead) are held and may serve the next
    /// case: they are fresh.
    pub fn quiesce(&mut self, relay_port: u16) -> Result<(), String> {
        let deadline = Instant::now() + QUIESCE;
        loop {
            self.poll_now();
            let open = established_at(relay_port);
            if open <= self.conns.len() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{open} connections to the relay still open {QUIESCE:?} after the app \
                     closed its side (the app holds {})",
                    self.conns.len()
                ));
            }
            self.wait(Duration::from_millis(5));
        }
    }
}

/// The client: one raw connection to understudy.
pub struct Client {
    stream: TcpStream,
    /// Bytes received and not yet matched by a step.
    got: Vec<u8>,
    /// Why no more bytes will come (`closed`, or the error), once that is so.
    ended: Option<String>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Result<Client, String> {
        let stream = TcpStream::connect_timeout(&addr, PATIENCE)
            .map_err(|e| format!("connecting to understudy: {e}"))?;
        let _ = stream.set_nodelay(true);
        Ok(Client {
            stream,
            got: Vec::new(),
            ended: None,
        })
    }

    /// Write `bytes`. A failed write is not a failure in itself (understudy may refuse and close
    /// before reading all of it): what comes back says whether it was right to.
    pub fn send(&mut self, bytes: &[u8]) {
        let _ = write_blocking(&self.stream, bytes);
    }

    /// One read, waiting until `deadline` at most.
    fn read_once(&mut self, deadline: Instant) {
        if self.ended.is_some() {
            return;
        }
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let _ = self.stream.set_read_timeout(Some(wait));
        let mut buf = [0u8; 16384];
        match self.stream.read(&mut buf) {
            Ok(0) => self.ended = Some("closed".into()),
            Ok(n) => self.got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => self.ended = Some(format!("failed: {e}")),
        }
    }

    /// The client must receive exactly `want` next. Stops early once the bytes differ.
    pub fn receive(&mut self, want: &[u8], deadline: Instant) -> Result<(), String> {
        loop {
            let n = self.got.len().min(want.len());
            let settled = n == want.len() || self.got[..n] != want[..n] || self.ended.is_some();
            if settled || Instant::now() >= deadline {
                break;
            }
            self.read_once(deadline);
        }
        if self.got.starts_with(want) {
            self.got.drain(..want.len());
            return Ok(());
        }
        // A little more, so the report shows what came instead.
        self.read_once(Instant::now() + SETTLE);
        let got = std::mem::take(&mut self.got);
        Err(format!(
            "the client received other bytes: {}",
            mismatch(want, &got, &self.ended)
        ))
    }

    /// The client must receive one of understudy's own answers: `status`, `connection: close`
    /// exactly when `close` says (unchecked when `None`), and its text unless `head`.
    pub fn refusal(
        &mut self,
        status: u16,
        close: Option<bool>,
        head: bool,
        deadline: Instant,
    ) -> Result<(), String> {
        let end = loop {
            if let Some(at) = find(&self.got, b"\r\n\r\n") {
                break at + 4;
            }
            if self.ended.is_some() || Instant::now() >= deadline {
                return Err(format!(
                    "expected understudy's own {status} answer, the client received {}{}",
                    esc(&self.got),
                    ended_note(&self.ended)
                ));
            }
            self.read_once(deadline);
        };
        let text = String::from_utf8_lossy(&self.got[..end]).into_owned();
        let length = check_refusal_head(&text, status, close)?;
        let whole = end + if head { 0 } else { length };
        while self.got.len() < whole && self.ended.is_none() && Instant::now() < deadline {
            self.read_once(deadline);
        }
        if self.got.len() < whole {
            return Err(format!(
                "understudy's {status} answer ended short: {}{}",
                esc(&self.got),
                ended_note(&self.ended)
            ));
        }
        self.got.drain(..whole);
        Ok(())
    }

    /// The client's connection must be closed now by understudy, with nothing more on it.
    pub fn closed(&mut self, deadline: Instant) -> Result<(), String> {
        loop {
            if !self.got.is_empty() {
                self.read_once(Instant::now() + SETTLE);
                return Err(format!(
                    "expected the client's connection closed, it received more: {}",
                    esc(&self.got)
                ));
            }
            if self.ended.is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "expected the client's connection closed, still open after {PATIENCE:?}"
                ));
            }
            self.read_once(deadline);
        }
    }

    /// The client's connection must stay open with nothing more on it, for `window`.
    pub fn stays_open(&mut self, window: Duration) -> Result<(), String> {
        let until = Instant::now() + window;
        while self.got.is_empty() && self.ended.is_none() && Instant::now() < until {
            self.read_once(until);
        }
        match (&self.ended, self.got.is_empty()) {
            (_, false) => Err(format!(
                "the client received more than expected: {}",
                esc(&self.got)
            )),
            (Some(e), true) => Err(format!(
                "the client's connection {e}; it should have stayed open"
            )),
            (None, true) => Ok(()),
        }
    }

    /// Which way a [`Once`] step went, once the client has enough bytes to tell (`None` before).
    fn outcome(&self, once: &Once) -> Option<bool> {
        const BAD_GATEWAY: &[u8] = b"HTTP/1.1 502 ";
        if self.got.starts_with(BAD_GATEWAY) {
            return Some(false);
        }
        if BAD_GATEWAY.starts_with(&self.got) && self.ended.is_none() {
            return None;
        }
        let n = self.got.len().min(once.relayed.len());
        let told = n == once.relayed.len() || self.got[..n] != once.relayed[..n];
        (told || self.ended.is_some()).then_some(true)
    }
}

/// The status line and headers of understudy's own answer (`HTTP/1.1 <code> <reason>`,
/// `content-type: text/plain; charset=utf-8`, `content-length`, `connection: close` when it
/// closes); returns the length of its text.
fn check_refusal_head(text: &str, status: u16, close: Option<bool>) -> Result<usize, String> {
    let shown = text.escape_debug();
    let mut lines = text.trim_end().split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    if !status_line.starts_with(&format!("HTTP/1.1 {status} ")) {
        return Err(format!(
            "expected understudy's own {status} answer, got {shown}"
        ));
    }
    let fields: Vec<(String, &str)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim()))
        .collect();
    let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    if field("content-type") != Some("text/plain; charset=utf-8") {
        return Err(format!(
            "no `content-type: text/plain; charset=utf-8` in {shown}"
        ));
    }
    let length = field("content-length")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no content-length in {shown}"))?;
    let closes = fields
        .iter()
        .any(|(n, v)| n == "connection" && v.eq_ignore_ascii_case("close"));
    match close {
        Some(want) if want != closes => Err(format!(
            "expected {} `connection: close` in {shown}",
            if want { "a" } else { "no" }
        )),
        _ => Ok(length),
    }
}

/// Plays cases against one running understudy and its relay build.
pub struct Runner {
    /// Which mode this is, in front of each progress line (the modes' halves run at once).
    pub label: &'static str,
    pub addr: SocketAddr,
    pub relay_port: u16,
    pub app: App,
}

impl Runner {
    /// Every case in turn; each failure as a line naming the case, the step, expected and got.
    pub fn run_all(&mut self, cases: &[Case]) -> Vec<String> {
        let mut failures = Vec::new();
        if let Err(e) = self.app.quiesce(self.relay_port) {
            failures.push(format!("before the first case: {e}"));
        }
        for case in cases {
            let started = Instant::now();
            let result = self.run(case);
            self.app.close_all();
            let quiet = self.app.quiesce(self.relay_port);
            let verdict = if result.is_ok() { "ok  " } else { "FAIL" };
            let took = started.elapsed();
            eprintln!("[{}] {verdict} {} ({took:?})", self.label, case.name);
            if let Err(e) = result {
                failures.push(format!("{}: {e}", case.name));
            }
            if let Err(e) = quiet {
                failures.push(format!("{} (cleaning up after it): {e}", case.name));
            }
        }
        failures
    }

    fn run(&mut self, case: &Case) -> Result<(), String> {
        let mut client = Client::connect(self.addr)?;
        for (i, step) in case.steps.iter().enumerate() {
            self.step(&mut client, step)
                .map_err(|e| format!("step {} ({}): {e}", i + 1, step.what()))?;
        }
        let closes = matches!(case.steps.last(), Some(Step::Closed));
        if !closes {
            client.stays_open(SETTLE)?;
        }
        self.app
            .nothing_more(if closes { SETTLE } else { Duration::ZERO })?;
        Ok(())
    }

    fn step(&mut self, client: &mut Client, step: &Step) -> Result<(), String> {
        let deadline = Instant::now() + PATIENCE;
        match step {
            Step::Send(b) => {
                client.send(b);
                Ok(())
            }
            Step::AppGets(b) => self.app.expect(b, deadline),
            Step::AppSends(b) => self.app.send(b),
            Step::AppCloses => self.app.close(),
            Step::AppResets => self.app.reset(),
            Step::ClientGets(b) => client.receive(b, deadline),
            Step::Refused {
                status,
                close,
                head,
            } => client.refusal(*status, Some(*close), *head, deadline),
            Step::Closed => client.closed(deadline),
            Step::Once(once) => self.once(client, once, deadline),
        }
    }

    /// A request that may be lost but never duplicated: the app takes and answers every copy
    /// that reaches it while the client waits; then exactly one copy and the app's answer, or
    /// none and a 502.
    fn once(&mut self, client: &mut Client, once: &Once, deadline: Instant) -> Result<(), String> {
        client.send(&once.request);
        let mut copies = 0;
        let answered = loop {
            self.app.poll_now();
            if let Some(i) = self.app.arrived() {
                if self.app.conns[i].settled(&once.forwarded) {
                    self.app.take(i, &once.forwarded)?;
                    copies += 1;
                    if copies == 1 {
                        self.app.send(&once.answer)?;
                    }
                }
            }
            if let Some(answered) = client.outcome(once) {
                break answered;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no answer within {PATIENCE:?}: {}",
                    esc(&client.got)
                ));
            }
            client.read_once(Instant::now() + Duration::from_millis(5));
        };
        if answered {
            client.receive(&once.relayed, deadline)?;
        } else {
            client.refusal(502, None, false, deadline)?;
        }
        self.app
            .nothing_more(SETTLE)
            .map_err(|e| format!("a second copy? {e}"))?;
        match copies {
            0 | 1 => Ok(()),
            n => Err(format!("the app received {n} copies of the request")),
        }
    }
}

/// Read what is there without blocking; `Some(why)` once the connection has ended.
fn read_available(stream: &mut TcpStream, into: &mut Vec<u8>) -> Option<String> {
    let mut buf = [0u8; 16384];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some("closed".into()),
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Some(format!("failed: {e}")),
        }
    }
}

/// Write all of `bytes` on a socket that may be non-blocking, giving up after [`PATIENCE`].
fn write_blocking(stream: &TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let deadline = Instant::now() + PATIENCE;
    let mut left = bytes;
    let mut s = stream;
    while !left.is_empty() {
        match s.write(left) {
            Ok(n) => left = &left[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                wait_writable(stream.as_raw_fd(), Duration::from_millis(50));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `poll(2)` on `fds` for readability, `limit` at most (never longer than a second).
fn wait_readable(fds: &[RawFd], limit: Duration) {
    poll_fds(fds, libc::POLLIN, limit);
}

fn wait_writable(fd: RawFd, limit: Duration) {
    poll_fds(&[fd], libc::POLLOUT, limit);
}

fn poll_fds(fds: &[RawFd], events: libc::c_short, limit: Duration) {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events,
            revents: 0,
        })
        .collect();
    let ms = limit.as_millis().clamp(1, 1000) as libc::c_int;
    // SAFETY: `pfds` is a live array of `pollfd` of the length passed; poll only writes `revents`.
    unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
}

/// Make closing `fd` send an RST rather than a FIN.
fn set_zero_linger(fd: RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `fd` is an open socket owned by the caller; the option value is a valid `linger`
    // of the size passed.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn ended_note(ended: &Option<String>) -> String {
    ended
        .as_deref()
        .map(|e| format!(" (then the connection {e})"))
        .unwrap_or_default()
}

/// Bytes as escaped ASCII, cut after 600 characters.
fn esc(b: &[u8]) -> String {
    const MAX: usize = 600;
    let s = b.escape_ascii().to_string();
    match s.len() > MAX {
        true => format!("{}… ({} bytes)", &s[..MAX], b.len()),
        false => s,
    }
}

/// Expected and received bytes side by side, from a little before where they first differ.
fn mismatch(want: &[u8], got: &[u8], ended: &Option<String>) -> String {
    let at = want.iter().zip(got).take_while(|(a, b)| a == b).count();
    let from = at.saturating_sub(80);
    let cut = if from > 0 { "…" } else { "" };
    format!(
        "they differ at byte {at} ({} expected, {} received{})\n      \
         expected: {cut}{}\n      received: {cut}{}",
        want.len(),
        got.len(),
        ended_note(ended),
        esc(&want[from..]),
        esc(&got[from.min(got.len())..]),
    )
}
