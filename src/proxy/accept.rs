//! Accept phase: users' connections taken from the listener, counted across the proxy threads
//! against `MAX_CONNECTIONS` (at the limit, accepting pauses and idle keep-alive connections are
//! asked to close), each served by its own task ([`conn`](super::conn)) on the proxy thread that
//! has the fewest, all drained at stop.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{conn, Proxy};

/// Idle keep-alive connections asked to close per round when the connection limit is reached
/// (as nginx frees up to 32 reusable connections when it runs short).
const ROOM_BATCH: usize = 32;

/// Connections that may wait for the proxy thread they were handed to; past it, the thread that
/// accepted them serves them itself.
const HANDOFF_QUEUE: usize = 256;

/// A user connection accepted by one proxy thread for another, already counted as the other's.
pub(super) type Handed = (std::net::TcpStream, SocketAddr, Counted);

/// User connections open across all proxy threads, against their limit: at the limit the accept
/// loops stop accepting (new users wait in the kernel's backlog, not in a spin of failed
/// accepts) and ask idle keep-alive connections to close.
#[derive(Debug)]
pub struct Connections {
    open: AtomicUsize,
    max: usize,
    /// Woken when a connection closes, for accept loops waiting at the limit.
    freed: Notify,
    /// Each proxy thread's share: a listener shared by all threads gives a burst of new
    /// connections to whichever thread wakes first (all 32 of a load test's, measured), leaving
    /// the other cores idle; so each connection goes to the thread with the fewest.
    threads: Box<[Share]>,
}

/// One proxy thread's open connections, and the way to hand it one. Aligned to a cache line of
/// its own, so counting one thread's connections never slows another's.
#[derive(Debug)]
#[repr(align(64))]
struct Share {
    open: AtomicUsize,
    to: mpsc::Sender<Handed>,
}

impl Connections {
    /// The connection limit for `threads` proxy threads, and the queue each thread takes the
    /// connections handed to it from (in thread order).
    pub(super) fn new(max: usize, threads: usize) -> (Connections, Vec<mpsc::Receiver<Handed>>) {
        let (shares, queues) = (0..threads.max(1))
            .map(|_| {
                let (to, from) = mpsc::channel(HANDOFF_QUEUE);
                let share = Share {
                    open: AtomicUsize::new(0),
                    to,
                };
                (share, from)
            })
            .unzip::<_, _, Vec<_>, Vec<_>>();
        let conns = Connections {
            open: AtomicUsize::new(0),
            max: max.max(1),
            freed: Notify::new(),
            threads: shares.into(),
        };
        (conns, queues)
    }

    /// Users' connections open on each proxy thread now, in thread order: the spread shows the
    /// connections balanced across the cores.
    pub fn per_thread(&self) -> impl Iterator<Item = usize> + '_ {
        self.threads.iter().map(|s| s.open.load(Ordering::Relaxed))
    }

    /// The proxy thread with the fewest open connections; `me` when none has fewer than it.
    fn fewest(&self, me: usize) -> usize {
        let count = |i: usize| {
            self.threads
                .get(i)
                .map_or(0, |s| s.open.load(Ordering::Relaxed))
        };
        let mut best = (me, count(me));
        for i in 0..self.threads.len() {
            let n = count(i);
            if n < best.1 {
                best = (i, n);
            }
        }
        best.0
    }

    /// User connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn full(&self) -> bool {
        self.open.load(Ordering::Acquire) >= self.max
    }
}

/// One proxy thread's calls to its idle connections: close to make room at the connection limit,
/// or stop. One `Notify` carries both, so a connection waiting for its next request registers
/// once, and `stopping` is a plain load (a `CancellationToken` locks a mutex for each look).
/// Per thread, so a connection's wake-ups never touch another thread's lock.
#[derive(Debug, Default)]
pub(super) struct Calls {
    to_close: AtomicUsize,
    stopping: AtomicBool,
    pub(super) call: Notify,
}

impl Calls {
    /// Ask up to `n` of this thread's connections to close once idle.
    pub(super) fn ask(&self, n: usize) {
        self.to_close.store(n, Ordering::Release);
        self.call.notify_waiters();
    }

    /// Whether this connection is one of those asked to close.
    pub(super) fn chosen(&self) -> bool {
        self.to_close
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    /// The thread stopped accepting: its connections finish what they answer, say
    /// `Connection: close`, and end.
    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.call.notify_waiters();
    }

    /// Whether [`Calls::stop`] was called.
    pub(super) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Resolves once [`Calls::stop`] is called.
    pub(super) async fn stopped(&self) {
        loop {
            // Made before the look: a stop after it still wakes this (`notify_waiters`).
            let call = self.call.notified();
            if self.stopping() {
                return;
            }
            call.await;
        }
    }

    /// Resolves `linger` after [`Calls::stop`]: what a connection in the middle of something that
    /// reached no instance yet (a body read ahead) still gets to finish it.
    pub(super) async fn stopped_then(&self, linger: std::time::Duration) {
        self.stopped().await;
        tokio::time::sleep(linger).await;
    }
}

/// One open user connection, counted while it lives, in all and as its proxy thread's.
#[derive(Debug)]
pub(super) struct Counted(Arc<Connections>, usize);

impl Counted {
    fn new(c: &Arc<Connections>, thread: usize) -> Counted {
        c.open.fetch_add(1, Ordering::AcqRel);
        if let Some(s) = c.threads.get(thread) {
            s.open.fetch_add(1, Ordering::Relaxed);
        }
        Counted(c.clone(), thread)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(s) = self.0.threads.get(self.1) {
            s.open.fetch_sub(1, Ordering::Relaxed);
        }
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.notify_waiters();
    }
}

/// Where a proxy thread takes its users from: the listener all threads share, and the
/// connections other threads accepted for it.
pub(super) struct Intake {
    /// The listener, shared by every proxy thread.
    pub(super) listener: TcpListener,
    /// Which proxy thread this is, in the order of [`Connections::new`]'s queues.
    pub(super) index: usize,
    /// Connections handed to this thread.
    pub(super) handed: mpsc::Receiver<Handed>,
}

/// Accept users on the intake's listener until `stop`, serving each on the proxy thread with the
/// fewest connections; then stop accepting and give the connections up to `drain_grace` to
/// finish what they are answering. Returns as soon as they are all closed.
pub(super) async fn serve(
    intake: Intake,
    proxy: Arc<Proxy>,
    conns: Arc<Connections>,
    stop: CancellationToken,
    drain_grace: Duration,
) {
    let Intake {
        listener,
        index,
        mut handed,
    } = intake;
    let connections = TaskTracker::new();
    'accept: loop {
        while conns.full() {
            // At the limit: make room by closing idle keep-alive connections, and wait for one
            // to go (or look again shortly: another thread may have taken the room).
            let freed = conns.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if !conns.full() {
                break;
            }
            proxy.calls.ask(ROOM_BATCH);
            tokio::select! {
                _ = stop.cancelled() => break 'accept,
                _ = freed => {}
                Some(h) = handed.recv() => take(h, &proxy, &connections),
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        let (stream, peer) = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            Some(h) = handed.recv() => {
                take(h, &proxy, &connections);
                continue;
            }
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        if let Some((stream, peer, counted)) = hand_over(stream, peer, &conns, index) {
            connections.spawn(conn::serve(stream, peer, proxy.clone(), counted));
        }
    }
    // Connections handed over before the stop are served (and told to close) like the others:
    // `recv` ends only once no other thread is still in the middle of handing one over.
    handed.close();
    while let Some(h) = handed.recv().await {
        take(h, &proxy, &connections);
    }
    drop(listener);
    proxy.calls.stop();
    connections.close();
    if tokio::time::timeout(drain_grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} user connections still busy {drain_grace:?} after stop; closing them",
            connections.len()
        );
    }
}

/// Give a connection `me` accepted to the proxy thread with the fewest; `None` once given, or
/// the connection to serve here (counted as this thread's) when `me` has the fewest or the other
/// thread cannot take it now.
fn hand_over(
    stream: TcpStream,
    peer: SocketAddr,
    conns: &Arc<Connections>,
    me: usize,
) -> Option<(TcpStream, SocketAddr, Counted)> {
    let to = conns.fewest(me);
    let Some(share) = conns.threads.get(to).filter(|_| to != me) else {
        return Some((stream, peer, Counted::new(conns, me)));
    };
    let std = match stream.into_std() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot hand a user connection to another proxy thread: {e}");
            return None;
        }
    };
    let handed = (std, peer, Counted::new(conns, to));
    let (std, peer, counted) = match share.to.try_send(handed) {
        Ok(()) => return None,
        Err(e) => e.into_inner(),
    };
    drop(counted);
    match TcpStream::from_std(std) {
        Ok(stream) => Some((stream, peer, Counted::new(conns, me))),
        Err(e) => {
            tracing::warn!("cannot serve a user connection on this proxy thread: {e}");
            None
        }
    }
}

/// Serve a connection another proxy thread accepted for this one.
fn take(handed: Handed, proxy: &Arc<Proxy>, connections: &TaskTracker) {
    let (std, peer, counted) = handed;
    match TcpStream::from_std(std) {
        Ok(stream) => {
            connections.spawn(conn::serve(stream, peer, proxy.clone(), counted));
        }
        Err(e) => tracing::warn!("cannot serve a user connection handed to this proxy thread: {e}"),
    }
}
