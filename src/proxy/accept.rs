//! Accept phase: users' connections taken from the listener, counted across the proxy threads
//! against `MAX_CONNECTIONS` (at the limit, accepting pauses and idle keep-alive connections are
//! asked to close), each served by its own task ([`conn`](super::conn)), all drained at stop.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{conn, Proxy};

/// Idle keep-alive connections asked to close per round when the connection limit is reached
/// (as nginx frees up to 32 reusable connections when it runs short).
const ROOM_BATCH: usize = 32;

/// User connections open across all proxy threads, against their limit: at the limit the accept
/// loops stop accepting (new users wait in the kernel's backlog, not in a spin of failed
/// accepts) and ask idle keep-alive connections to close.
#[derive(Debug)]
pub struct Connections {
    open: AtomicUsize,
    max: usize,
    /// Woken when a connection closes, for accept loops waiting at the limit.
    freed: Notify,
}

impl Connections {
    pub(super) fn new(max: usize) -> Connections {
        Connections {
            open: AtomicUsize::new(0),
            max: max.max(1),
            freed: Notify::new(),
        }
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
}

/// One open user connection, counted while it lives.
pub(super) struct Counted(Arc<Connections>);

impl Counted {
    fn new(c: &Arc<Connections>) -> Counted {
        c.open.fetch_add(1, Ordering::AcqRel);
        Counted(c.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.notify_waiters();
    }
}

/// Accept users on `listener` until `stop`; then stop accepting and give the connections up to
/// `drain_grace` to finish what they are answering. Returns as soon as they are all closed.
pub(super) async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    conns: Arc<Connections>,
    stop: CancellationToken,
    drain_grace: Duration,
) {
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
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        let (stream, peer) = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
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
        let counted = Counted::new(&conns);
        connections.spawn(conn::serve(stream, peer, proxy.clone(), counted));
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
