//! Wait phase: a request with no instance to serve it yet waits rather than fail, within
//! `UPSTREAM_TIMEOUT` for all its waits: for the version the guard's rollback brings back
//! (`Routes::hold`), or, refused by an instance that has just gone, for where users go next
//! (trying that one again now and then). A user who leaves meanwhile is let go; the requests a
//! route change lets go together leave paced, so a version just started is not met by all of
//! them in one burst (an app with a small listen backlog resets what overflows it).

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{Proxy, Upstream, RESTART_HOLD};

/// Requests let go together by a route change leave this far apart on each proxy thread (a
/// thousand a second): a hundred held ones reach the version that came back over 100 ms...
const RELEASE_GAP: Duration = Duration::from_millis(1);
/// ... but closer when more wait, so that the last is let go within this of the first (a busy
/// service's thousands held for a rollback are not kept seconds more).
const RELEASE_SPREAD: Duration = Duration::from_millis(250);

/// What a waiting request reads of its user at a time (see [`gone`]).
const READ_AHEAD: usize = 16 * 1024;

/// How often a waiting request's user, who sent more than understudy may read ahead, is looked
/// at for a close (see [`gone`]).
const GONE_EVERY: Duration = Duration::from_millis(250);

/// A refused request tries the same instance again after this, then after twice as long, up
/// to [`RECHECK_MOST`] (see [`recheck_after`]).
const RECHECK_FIRST: Duration = Duration::from_millis(50);
/// See [`RECHECK_FIRST`].
const RECHECK_MOST: Duration = Duration::from_secs(1);

/// After a request's `tries`-th refusal, when to try the same instance again if the routes have
/// not moved: 50 ms, doubling up to a second.
pub(super) fn recheck_after(tries: u32) -> Duration {
    RECHECK_FIRST
        .saturating_mul(1 << tries.min(5))
        .min(RECHECK_MOST)
}

/// A request counted as waiting (`understudy_requests_waiting`) while this lives.
pub(super) struct Waiting<'a>(&'a AtomicU64);

impl<'a> Waiting<'a> {
    pub(super) fn on(proxy: &'a Proxy) -> Waiting<'a> {
        proxy.stats.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(&proxy.stats.waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `UPSTREAM_TIMEOUT` from now: how long a request may wait for an instance, in all.
pub(super) fn bound(proxy: &Proxy) -> Instant {
    Instant::now() + proxy.upstream_timeout
}

impl Proxy {
    /// Why requests are held, if they are: for a version the guard brings back, or restarted (see
    /// [`Proxy::wait_for_running`]); read only on the way to a 503.
    pub(super) fn holding(&self) -> Option<super::Hold> {
        self.routes.borrow().hold
    }

    /// In how many whole seconds (at least one, at most an hour) running is started again after
    /// a crash loop's backoff, if it waits for one; read only on the way to a 503.
    pub(super) fn restart_in(&self) -> Option<u32> {
        let at = self.routes.borrow().restart_at?;
        let left = at.saturating_duration_since(Instant::now());
        Some(left.as_secs_f64().ceil().clamp(1.0, 3600.0) as u32)
    }

    /// Nothing serves while a version comes back (`hold`: the guard's rollback, or a restart at
    /// once after a crash): wait for it, until `by`
    /// (`UPSTREAM_TIMEOUT`, as for a slow running) or until understudy stops, so users see a
    /// slow answer, not a 503. Whether something serves now.
    pub(super) async fn wait_for_running(&self, by: Instant) -> bool {
        let mut routes = self.routes.clone();
        // A restart that takes longer than a JVM's is told sooner (each waiting user holds a
        // connection meanwhile); a rollback is worth the whole wait.
        let restart = routes.borrow().hold == Some(super::Hold::Restart);
        let by = if restart {
            by.min(Instant::now() + RESTART_HOLD)
        } else {
            by
        };
        let back = tokio::time::timeout_at(
            by,
            routes.wait_for(|r| r.running.is_some() || r.hold.is_none()),
        );
        let back = tokio::select! {
            // The routes' lock is let go at once: the supervisor's next change waits for it.
            r = back => matches!(r, Ok(Ok(r)) if r.running.is_some()),
            () = self.stopped() => false,
        };
        if back {
            self.paced().await;
        }
        back
    }

    /// `gone` refused a connection: nothing listens there any more (it crashed, or is on its
    /// way out), and the supervisor routes elsewhere once it hears. Wait for that, until `by`
    /// or a stop, so the request goes where users go next.
    pub(super) async fn moved_from(&self, gone: &Arc<Upstream>, by: Instant) {
        let mut routes = self.routes.clone();
        let moved = tokio::time::timeout_at(by, routes.wait_for(|r| !r.serves(gone)));
        let moved = tokio::select! {
            r = moved => match r {
                Ok(Ok(_)) => Some(true),
                Ok(Err(_)) => None,
                Err(_) => Some(false),
            },
            () = self.stopped() => Some(false),
        };
        let Some(moved) = moved else {
            // The supervisor is gone, so nothing will move: wait out the bound (or a stop).
            tokio::select! {
                () = tokio::time::sleep_until(by) => {}
                () = self.stopped() => {}
            }
            return;
        };
        if moved {
            self.paced().await;
        }
    }

    /// Resolves once understudy stops.
    async fn stopped(&self) {
        self.calls.stopped().await;
    }

    /// Let a request go once those this thread let go before it are [`RELEASE_GAP`] apart (or
    /// less, see [`RELEASE_SPREAD`]).
    async fn paced(&self) {
        let now = Instant::now();
        let waiting = self
            .stats
            .waiting
            .load(Ordering::Relaxed)
            .clamp(1, u64::from(u32::MAX));
        let gap = RELEASE_GAP.min(RELEASE_SPREAD / waiting as u32);
        let at = {
            let mut last = self.released.lock().unwrap_or_else(|p| p.into_inner());
            *last = (*last + gap).max(now);
            *last
        };
        if at > now {
            tokio::time::sleep_until(at).await;
        }
    }
}

/// Resolves once the user has closed its connection (or it failed) while its request waits for
/// an instance: then it is never sent, as nginx aborts on a user gone. What the user sends
/// meanwhile (the rest of a body, its next request) is read into `buf`, as if it had come with
/// the head, up to `ANSWER_BUFFER` and within `ANSWER_MEMORY`: a close comes behind it, and a
/// user gone with a large body unread would otherwise look as if it still waited.
pub(super) async fn gone(client: &TcpStream, buf: &mut Vec<u8>, proxy: &Proxy) {
    let mut held = super::budget::Held::new(&proxy.answer_memory);
    loop {
        if client.readable().await.is_err() {
            return;
        }
        if buf.len() == buf.capacity() {
            // Bounded per request (what earlier waits read stays in `buf`), and in all.
            if buf.len() >= proxy.answer_buffer || !held.take(READ_AHEAD) {
                break;
            }
            buf.reserve_exact(READ_AHEAD);
        }
        match client.try_read_buf(buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
    // Held all it may: look for the user's close behind the rest now and then.
    let mut every = tokio::time::interval(GONE_EVERY);
    while !hung_up(client) {
        every.tick().await;
    }
}

/// Whether the user has closed its side (FIN) or its connection failed, whatever it sent before.
fn hung_up(client: &TcpStream) -> bool {
    let mut fd = libc::pollfd {
        fd: client.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one pollfd, for a descriptor this stream owns, that outlives the call; a timeout
    // of 0 never blocks.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    n > 0 && fd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}
