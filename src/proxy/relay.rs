//! Answer phase, the body: running's answer relayed to the user, read at running's pace ahead of
//! the user's into memory (`ANSWER_BUFFER` per answer, `ANSWER_MEMORY` in all) and past that onto
//! disk (`spill`), so a slow reader never holds running's connection; running's connection goes
//! back to the pool, its in-flight count drops and the mirror's copy is offered as soon as the
//! body is read, before the user has it all. `UPSTREAM_TIMEOUT` bounds running's silence and
//! `SEND_TIMEOUT` the user's. A copy sampled for diffing holds one of few places until then, so
//! it gives its place up (offered uncompared) once the rest of the body waits on the user, or
//! running is still sending it [`SAMPLE_HOLD`] after the head: a stream or a slow reader never
//! keeps the comparison of other copies waiting.

use std::pin::Pin;
use std::sync::atomic::Ordering;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::answer::Answer;
use super::bufs::Bufs;
use super::exchange::ANSWER_READ;
use super::framing::{BadChunk, Framing};
use super::mirror::Tee;
use super::spill::Spill;
use super::{InflightGuard, Proxy};

/// Largest piece read back from a spill file at once.
const REFILL: usize = 64 * 1024;

/// Bytes every answer may hold before it counts against `ANSWER_MEMORY`.
const FREE_ANSWER: usize = 16 * 1024;

/// How long running's body may take, after the relay first waits for it, while its copy holds
/// a place among the sampled ones: an ordinary answer's body follows its head at once, and one
/// still coming after this is a stream or a long poll, which must not hold the place for ever.
pub const SAMPLE_HOLD: std::time::Duration = std::time::Duration::from_secs(5);

/// The mirror's tee of an answer, and whether its copy holds a place among the sampled ones.
pub(super) struct Teed {
    pub(super) tee: Box<Tee>,
    pub(super) sampled: bool,
}

/// The answer's body on its way, and what is left to do with running's connection.
struct Upstream<'a> {
    conn: Option<TcpStream>,
    running: Option<InflightGuard>,
    framing: Framing,
    dechunk: bool,
    reusable: bool,
    extra: bool,
    broken: bool,
    tee: Option<Box<Tee>>,
    /// The tee's copy holds a place among the sampled ones.
    sampled: bool,
    proxy: &'a Proxy,
}

impl Upstream<'_> {
    /// Take `bytes` read from running into `out` (as they are, or their data for a dechunked
    /// answer), feeding the tee; bytes past the body's end mark the connection unusable.
    fn take(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let dechunk = self.dechunk;
        let tee = &mut self.tee;
        let took = self.framing.feed(bytes, &mut |d| {
            if dechunk {
                out.extend_from_slice(d);
            }
            if let Some(t) = tee.as_mut() {
                t.feed(d);
            }
        });
        match took {
            Ok(n) => {
                if !dechunk {
                    out.extend_from_slice(&bytes[..n]);
                }
                self.extra |= n < bytes.len();
            }
            Err(BadChunk) => self.broken = true,
        }
    }

    fn done(&self) -> bool {
        self.conn.is_none()
    }

    /// The body was read to its end, or broke: running's connection goes back to the pool (or is
    /// closed), its in-flight count is released and the copy offered, before the user has it all.
    fn finish(&mut self) {
        if self.broken && self.conn.is_some() {
            self.proxy
                .stats
                .upstream_broken
                .fetch_add(1, Ordering::Relaxed);
        }
        self.end(!self.broken);
    }

    /// The user went away before running's body was read: running's connection is closed (it is
    /// in the middle of an answer), which is not running's fault, so it is not counted as broken.
    fn abandon(&mut self) {
        self.end(false);
    }

    /// The copy gives its place among the sampled ones back, offered now without running's body
    /// (so not compared), rather than holding it for as long as the user or running takes.
    fn give_up_sample(&mut self) {
        if std::mem::take(&mut self.sampled) {
            if let Some(mut t) = self.tee.take() {
                t.finish(false);
            }
        }
    }

    fn end(&mut self, complete: bool) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if let Some(mut t) = self.tee.take() {
            t.finish(complete);
        }
        self.sampled = false;
        if let Some(running) = self.running.take() {
            if complete && self.reusable && !self.extra {
                self.proxy.pool.put(running.shared().clone(), conn);
            }
        }
    }
}

/// Relay the answer (its head in `bufs.out`, its first bytes in `bufs.answer`) to the user; running
/// is read at its own pace while the user takes it at theirs. Whether the user got it all.
pub(super) async fn relay(
    client: &mut TcpStream,
    proxy: &Proxy,
    conn: TcpStream,
    a: Answer,
    running: InflightGuard,
    tee: Option<Teed>,
    bufs: &mut Bufs,
) -> bool {
    let sampled = tee.as_ref().is_some_and(|t| t.sampled);
    let mut up = Upstream {
        conn: Some(conn),
        running: Some(running),
        framing: a.framing,
        dechunk: a.dechunk,
        reusable: a.reusable,
        extra: false,
        broken: false,
        tee: tee.map(|t| t.tee),
        sampled,
        proxy,
    };
    let Bufs { out, answer, .. } = bufs;
    up.take(&answer[a.len..], out);
    let mut ahead = ReadAhead::default();
    let mut clock = Clock::default();
    let complete = loop {
        if up.broken || up.framing.done() {
            up.finish();
        }
        match ahead.send(client, out, &mut clock) {
            Ok(true) if up.done() => break !up.broken,
            Ok(_) => {}
            Err(()) => break false,
        }
        let read = answer.capacity().max(ANSWER_READ);
        let (target, read) = match up.done() {
            true => (None, None),
            false => ahead.target(proxy, out, read).unzip(),
        };
        if target.is_none() && !up.done() {
            // The rest of running's body now comes at the user's pace.
            up.give_up_sample();
        }
        let read = read.unwrap_or(0);
        let can_write = ahead.sent < out.len();
        let (read_by, write_by) = clock.deadlines(proxy, target.is_some(), can_write, up.sampled);
        tokio::select! {
            r = read_some(&mut up.conn, answer, read), if target.is_some() => match r {
                Ok(0) if up.framing == Framing::Close => up.framing = Framing::Empty,
                Ok(0) | Err(_) => up.broken = true,
                Ok(_) => {
                    ahead.took(target, &mut up, answer, out);
                    clock.read();
                }
            },
            r = client.writable(), if can_write => if r.is_err() {
                break false;
            },
            () = read_by, if target.is_some() => match clock.sample_due(up.sampled) {
                true => up.give_up_sample(),
                false => up.broken = true,
            },
            () = write_by, if can_write => break false,
            // Nothing to read or write can only mean a rule above is wrong: end this answer
            // rather than panic (`target` always allows a read when nothing waits).
            else => break false,
        }
    };
    up.abandon();
    ahead.release(proxy);
    complete
}

/// Where the next bytes read from running go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// After what waits in memory.
    Memory,
    /// After what waits on disk (memory is full, or bytes already wait there).
    Disk,
}

/// What of the answer is read ahead of the user: `out[sent..]` in memory (`held` of it counted
/// against `ANSWER_MEMORY`), then what waits in `spill`.
#[derive(Default)]
struct ReadAhead {
    sent: usize,
    held: usize,
    spill: Option<Spill>,
    /// The piece on its way to disk (its capacity is reused).
    to_disk: Vec<u8>,
}

impl ReadAhead {
    /// Write what the user can take now without waiting; `Ok(true)` once nothing waits at all.
    fn send(
        &mut self,
        client: &TcpStream,
        out: &mut Vec<u8>,
        clock: &mut Clock,
    ) -> Result<bool, ()> {
        if self.sent < out.len() {
            match client.try_write(&out[self.sent..]) {
                Ok(n) => {
                    self.sent += n;
                    clock.wrote();
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return Err(()),
            }
        }
        if self.sent < out.len() {
            return Ok(false);
        }
        out.clear();
        self.sent = 0;
        match self.spill.as_mut().filter(|s| s.pending()) {
            Some(s) => match s.refill(out, REFILL) {
                Ok(()) => Ok(false),
                Err(e) => {
                    tracing::warn!("an answer spilled to disk could not be read back: {e}");
                    Err(())
                }
            },
            None => Ok(true),
        }
    }

    /// Where one more read of up to `read` bytes from running can go, and how many bytes it may
    /// take, if anywhere: nowhere once this answer has `ANSWER_BUFFER` waiting for the user; else
    /// memory while `ANSWER_MEMORY` has room and nothing waits on disk; else disk while
    /// `ANSWER_SPILL` and the free disk allow. When nothing waits at all, a read is always allowed
    /// (within the free part of memory): past every bound the answer streams at the user's pace.
    fn target(&mut self, proxy: &Proxy, out: &mut Vec<u8>, read: usize) -> Option<(Target, usize)> {
        let on_disk = self.spill.as_ref().map_or(0, Spill::waiting);
        let waiting = (out.len() - self.sent) as u64 + on_disk;
        let bound = proxy.answer_buffer.max(FREE_ANSWER);
        // The read buffer may have grown past the bound (a long head): one read never exceeds it.
        let read = read.min(bound);
        if waiting + read as u64 > bound as u64 {
            return None;
        }
        if on_disk == 0 && memory_room(proxy, out, &mut self.sent, &mut self.held) {
            return Some((Target::Memory, read));
        }
        if self.spill.is_none() {
            self.spill = proxy.spills.open();
        }
        if self.spill.as_mut().is_some_and(|s| s.reserve(read)) {
            return Some((Target::Disk, read));
        }
        (waiting == 0).then_some((Target::Memory, read.min(FREE_ANSWER)))
    }

    /// Bytes read from running into `answer` go where `target` said.
    fn took(
        &mut self,
        target: Option<Target>,
        up: &mut Upstream<'_>,
        answer: &[u8],
        out: &mut Vec<u8>,
    ) {
        if target != Some(Target::Disk) {
            up.take(answer, out);
            return;
        }
        self.to_disk.clear();
        up.take(answer, &mut self.to_disk);
        let Some(spill) = self.spill.as_mut() else {
            up.broken = true;
            return;
        };
        if let Err(e) = spill.write(&self.to_disk) {
            // Bytes already taken from running cannot be lost or reordered: the answer breaks.
            tracing::warn!("an answer could not be spilled to disk: {e}");
            up.broken = true;
        }
        spill.unreserve();
    }

    /// Give back what this answer took of the memory and disk budgets.
    fn release(self, proxy: &Proxy) {
        proxy.answer_memory.give_back(self.held);
        // The spill file goes with its descriptor, and its budget with the `Spill`.
    }
}

/// The relay's two deadlines: running must send something within `UPSTREAM_TIMEOUT` of the last
/// bytes (counted only while understudy is reading), the user must take something within
/// `SEND_TIMEOUT` (counted only while there is something to take). Created on first need: most
/// answers never wait.
#[derive(Default)]
struct Clock {
    read: Option<Pin<Box<Sleep>>>,
    send: Option<Pin<Box<Sleep>>>,
    reading: bool,
    writing: bool,
    read_progress: bool,
    write_progress: bool,
    /// When running's silence is really too long (the read timer may be set earlier, below).
    read_due: Option<Instant>,
    /// When a sampled copy gives its place up ([`SAMPLE_HOLD`] after the first wait).
    sample_due: Option<Instant>,
}

impl Clock {
    fn read(&mut self) {
        self.read_progress = true;
    }

    fn wrote(&mut self) {
        self.write_progress = true;
    }

    /// Whether the read timer went off for a sampled copy's [`SAMPLE_HOLD`], not for running's
    /// silence.
    fn sample_due(&self, sampled: bool) -> bool {
        sampled && self.read_due.is_some_and(|due| Instant::now() < due)
    }

    /// The two timers, each moved on when its side made progress or just started waiting; the
    /// read timer goes off at a sampled copy's [`SAMPLE_HOLD`] too, if that comes first.
    fn deadlines(
        &mut self,
        proxy: &Proxy,
        can_read: bool,
        can_write: bool,
        sampled: bool,
    ) -> (Pin<&mut Sleep>, Pin<&mut Sleep>) {
        let now = Instant::now();
        let restart_read = can_read && (!self.reading || self.read_progress);
        let restart_write = can_write && (!self.writing || self.write_progress);
        (self.reading, self.writing) = (can_read, can_write);
        (self.read_progress, self.write_progress) = (false, false);
        if restart_read {
            self.read_due = Some(now + proxy.upstream_timeout);
        }
        if sampled && self.sample_due.is_none() {
            self.sample_due = Some(now + SAMPLE_HOLD);
        }
        let due = self.read_due.unwrap_or(now + proxy.upstream_timeout);
        let due = match self.sample_due.filter(|_| sampled) {
            Some(hold) => due.min(hold),
            None => due,
        };
        let read = self
            .read
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        if can_read && read.deadline() != due {
            read.as_mut().reset(due);
        }
        let write = self
            .send
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(proxy.send_timeout)));
        if restart_write {
            write.as_mut().reset(now + proxy.send_timeout);
        }
        (read.as_mut(), write.as_mut())
    }
}

/// Read from running's connection into `answer` (cleared first).
async fn read_some(
    conn: &mut Option<TcpStream>,
    answer: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<usize> {
    answer.clear();
    if answer.capacity() < ANSWER_READ {
        answer.reserve(ANSWER_READ);
    }
    match conn.as_mut() {
        Some(c) if answer.capacity() <= limit => c.read_buf(answer).await,
        Some(c) => AsyncReadExt::take(c, limit as u64).read_buf(answer).await,
        None => std::future::pending().await,
    }
}

/// Whether one more read from running fits in memory: `out` has room, or may grow within
/// `ANSWER_MEMORY` past its free part (`held` counts what this answer took of it).
fn memory_room(proxy: &Proxy, out: &mut Vec<u8>, sent: &mut usize, held: &mut usize) -> bool {
    if out.capacity() - out.len() >= ANSWER_READ {
        return true;
    }
    if *sent > 0 {
        out.drain(..*sent);
        *sent = 0;
        if out.capacity() - out.len() >= ANSWER_READ {
            return true;
        }
    }
    let grow = out.capacity().max(ANSWER_READ);
    let counted = (out.capacity() + grow).saturating_sub(*held + FREE_ANSWER);
    if counted > 0 && !proxy.answer_memory.take(counted) {
        return false;
    }
    *held += counted;
    out.reserve(grow);
    true
}
