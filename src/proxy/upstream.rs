//! The instances as the proxy sees them: where each listens, how many user requests it is
//! serving (drained before it is stopped), and the routes the supervisor publishes.

use std::net::Ipv6Addr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderValue;
use http::uri::Authority;
use semver::Version;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::ProxyError;
use crate::instance::{Answers, InstanceId};

/// One instance as the proxy sees it: where it listens and how many user requests it is serving.
#[derive(Debug)]
pub struct Upstream {
    /// The instance behind it.
    pub id: InstanceId,
    /// Its version, for messages.
    pub version: Version,
    /// `host:port`, with an IPv6 literal in brackets.
    pub authority: Authority,
    /// The same as a `Host` header, for requests that came without one.
    pub(crate) host: HeaderValue,
    /// User requests in flight, including their response bodies; see [`Upstream::drain`].
    pub(super) inflight: AtomicUsize,
    /// Set once someone drains: only then does the last request out pay for a wake-up.
    pub(super) draining: AtomicBool,
    /// Signalled when `inflight` drops to zero while draining.
    pub(super) idle: Notify,
    /// Cancelled when a drain's grace is over: upgraded connections still spliced are closed.
    pub(super) closed: CancellationToken,
    /// Set once the instance is being stopped: a mirrored copy it fails is not testing's fault.
    retired: AtomicBool,
    /// Answers it began (users' and mirrored copies'), shared with its heartbeat.
    pub(super) answers: Answers,
}

impl Upstream {
    /// An upstream for the instance listening on `host:port`; `host` is an IP address (IPv6 with or
    /// without brackets) or a name the connector resolves.
    pub fn new(
        id: InstanceId,
        version: Version,
        host: &str,
        port: u16,
    ) -> Result<Upstream, ProxyError> {
        let authority = upstream_authority(host, port)?;
        Ok(Upstream {
            id,
            version,
            host: HeaderValue::from_str(authority.as_str())
                .expect("an authority is a valid header value"),
            authority,
            inflight: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            idle: Notify::new(),
            closed: CancellationToken::new(),
            retired: AtomicBool::new(false),
            answers: Answers::default(),
        })
    }

    /// Count its answers into `answers`, the instance's own count, which its heartbeat reads.
    pub fn with_answers(mut self, answers: Answers) -> Upstream {
        self.answers = answers;
        self
    }

    /// Mark the instance as being stopped (promoted past, rejected, replaced): copies still queued
    /// for it are not sent, and one it fails from now on is not counted against it.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    /// Whether [`Upstream::retire`] was called.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// User requests in flight now (response bodies included), for status and logs.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }

    /// Resolves once no user request (its response body included) is in flight here, or when
    /// `grace` is over; returns how many were left. Woken by the last request out, never polled.
    pub async fn drain(&self, grace: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + grace;
        // SeqCst pairs with the guard's decrement and flag read: either this load sees zero, or
        // the guard that brings the count to zero sees the flag and wakes the waiter below.
        self.draining.store(true, Ordering::SeqCst);
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.inflight.load(Ordering::SeqCst) == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                // The grace is over: what is still spliced (WebSockets) is closed now.
                self.closed.cancel();
                return self.inflight.load(Ordering::SeqCst);
            }
        }
    }
}

/// `host:port` as an authority: IPv6 literals are bracketed, names kept for the connector.
pub(super) fn upstream_authority(host: &str, port: u16) -> Result<Authority, ProxyError> {
    let bad = |reason: &str| ProxyError::BadUpstream {
        host: host.to_string(),
        port,
        reason: reason.to_string(),
    };
    if host.is_empty() {
        return Err(bad("the host is empty"));
    }
    if host.contains(['@', '/', '?', '#']) || host.chars().any(char::is_whitespace) {
        return Err(bad("expected an IP address or a host name, nothing more"));
    }
    let text = match host.parse::<Ipv6Addr>() {
        Ok(ip) => format!("[{ip}]:{port}"),
        Err(_) => format!("{host}:{port}"),
    };
    let authority: Authority = text
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    if authority.host().is_empty() || authority.port_u16() != Some(port) {
        return Err(bad("expected an IP address or a host name without a port"));
    }
    Ok(authority)
}

/// Where traffic goes now; published by the supervisor, read by the proxy on every request.
#[derive(Debug, Default, Clone)]
pub struct Routes {
    /// Gets every user request.
    pub running: Option<Arc<Upstream>>,
    /// Gets mirrored copies.
    pub testing: Option<Arc<Upstream>>,
    /// Gets the diffed copies too: a second instance of running's version, whose differences
    /// from running are noise (`NOISE_CANCEL`).
    pub secondary: Option<Arc<Upstream>>,
    /// Running's version while it is being restarted (with `running` empty): users are told to
    /// retry shortly instead of being told to drop a build.
    pub restarting: Option<Version>,
    /// With `restarting`: when running is started again, after a crash loop's backoff; users
    /// are told to retry then (`Retry-After`) rather than in a second.
    pub restart_at: Option<tokio::time::Instant>,
    /// With `running` empty: a request waits for the version coming back (up to
    /// `UPSTREAM_TIMEOUT`) rather than get a 503, and why.
    pub hold: Option<Hold>,
    /// In a canary step, the share of users (of [`super::canary::PLACES`]) testing serves,
    /// writes included; 0 outside one.
    pub canary: u32,
}

/// The longest a request waits for running started again at once after a crash (within
/// `UPSTREAM_TIMEOUT`); it is then told running is restarting. Status says it too.
pub const RESTART_HOLD: std::time::Duration = std::time::Duration::from_secs(10);

/// Why requests wait while nothing serves, which is what they are told if it lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Running is started again: at once after a crash (not a crash loop, which backs off), or
    /// resumed at understudy's start.
    Restart,
    /// The guard rolls back from a running that crashed.
    Rollback,
}

impl Routes {
    /// The routes until the supervisor's first decision: a request waits for it (as for a
    /// running restarted, up to [`RESTART_HOLD`]), since a running resumed at start is being
    /// started again, and only that decision says whether there is one.
    pub fn at_start() -> Routes {
        Routes {
            hold: Some(Hold::Restart),
            ..Routes::default()
        }
    }

    /// Whether users are still sent to `up` (as running, or as testing in a canary step).
    pub(super) fn serves(&self, up: &Arc<Upstream>) -> bool {
        let is = |u: &Option<Arc<Upstream>>| u.as_ref().is_some_and(|u| Arc::ptr_eq(u, up));
        is(&self.running) || (self.canary > 0 && is(&self.testing))
    }
}

/// Counts a user request against its upstream until the response body is done.
pub struct InflightGuard(Arc<Upstream>);

impl InflightGuard {
    pub(super) fn new(u: &Arc<Upstream>) -> InflightGuard {
        u.inflight.fetch_add(1, Ordering::AcqRel);
        InflightGuard(u.clone())
    }

    pub(super) fn upstream(&self) -> &Upstream {
        &self.0
    }

    pub(super) fn shared(&self) -> &Arc<Upstream> {
        &self.0
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        let up = &self.0;
        if up.inflight.fetch_sub(1, Ordering::SeqCst) == 1 && up.draining.load(Ordering::SeqCst) {
            up.idle.notify_waiters();
        }
    }
}
