//! understudy as a systemd service: `Type=notify` (`READY=1`, `STATUS=`, `STOPPING=1` and
//! `WATCHDOG=1`, datagrams to the socket in `NOTIFY_SOCKET`) and socket activation (listeners
//! passed in `LISTEN_FDS`). What systemd hands over is read once, before any thread starts, and
//! removed from the environment so that no child or hook inherits it. Without systemd (no
//! `NOTIFY_SOCKET`, no `LISTEN_FDS`) nothing here does anything.
//!
//! The protocol is a few lines over [`std::os::unix::net::UnixDatagram`], so no crate is added.

mod activation;

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use activation::Passed;

use crate::supervisor::Status;

/// The variables systemd sets for its service; all are removed from the environment at start.
const VARS: [&str; 6] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
];
/// The longest watchdog period taken (systemd's own are seconds to minutes); a longer one, or
/// `infinity`, is a mistake in the unit.
const MAX_WATCHDOG: Duration = Duration::from_secs(24 * 3600);
/// The longest `STATUS=` line sent (systemctl shows one line).
const MAX_STATUS: usize = 200;
/// Sent once users can be served: the proxy listens and running is resumed (or there is none).
const READY: &str = "READY=1";
/// Sent when the shutdown begins.
pub const STOPPING: &str = "STOPPING=1\nSTATUS=stopping: draining users, then stopping every child";

/// Why what systemd handed over cannot be used; understudy exits 64 naming the variable.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    /// A variable holds a value that does not parse or is out of bounds.
    #[error("environment variable {key} has value {value:?}: expected {expected}")]
    Invalid {
        /// The variable.
        key: &'static str,
        /// Its value (cut if very long).
        value: String,
        /// What would be accepted.
        expected: String,
    },
    /// A descriptor passed in `LISTEN_FDS` is not a listening TCP socket.
    #[error("LISTEN_FDS: descriptor {fd} is {what}; pass TCP listeners (ListenStream= with an address or port in the .socket unit)")]
    Socket {
        /// The descriptor.
        fd: i32,
        /// What it is instead.
        what: String,
    },
}

fn invalid(key: &'static str, value: &str, expected: &str) -> SystemdError {
    SystemdError::Invalid {
        key,
        value: value.chars().take(200).collect(),
        expected: expected.to_string(),
    }
}

/// Everything systemd handed over at start: where to notify, and the listeners it passed.
#[derive(Debug, Default)]
pub struct Handover {
    /// Where `READY=1`, `STATUS=` and the rest go; off without `NOTIFY_SOCKET`.
    pub notifier: Notifier,
    /// The listeners passed in `LISTEN_FDS` (when `LISTEN_PID` is ours).
    pub passed: Passed,
}

/// Guards the passed descriptors: they are taken over at most once per process.
static TAKEN: AtomicBool = AtomicBool::new(false);

impl Handover {
    /// Read systemd's variables and remove them from the environment, then take over the passed
    /// listeners. Call it before any thread starts (removing variables is only sound then);
    /// calls after the first find nothing.
    pub fn take_from_env() -> Result<Handover, SystemdError> {
        if TAKEN.swap(true, Ordering::SeqCst) {
            return Ok(Handover::default());
        }
        let [notify, wd_usec, wd_pid, listen_pid, fds, names] = VARS.map(|k| std::env::var(k).ok());
        for k in VARS {
            std::env::remove_var(k);
        }
        let pid = std::process::id();
        let ours = |p: &Option<String>| p.as_deref().map(str::trim) == Some(&pid.to_string());
        let watchdog = match wd_usec {
            Some(usec) if wd_pid.is_none() || ours(&wd_pid) => Some(watchdog_period(&usec)?),
            _ => None,
        };
        let notifier = match notify.filter(|s| !s.is_empty()) {
            Some(path) => Notifier::to(&path, watchdog)?,
            None => Notifier::default(),
        };
        let passed = match fds {
            Some(fds) if ours(&listen_pid) => {
                let plan = activation::plan(&fds, names.as_deref())?;
                // SAFETY: LISTEN_PID names this process, so systemd passed these descriptors to
                // it, and TAKEN makes this the only time they are taken over.
                unsafe { activation::take(&plan)? }
            }
            _ => Passed::default(),
        };
        Ok(Handover { notifier, passed })
    }
}

/// `WATCHDOG_USEC`: microseconds, more than 0 and at most a day.
fn watchdog_period(usec: &str) -> Result<Duration, SystemdError> {
    match usec.trim().parse::<u64>().map(Duration::from_micros) {
        Ok(d) if !d.is_zero() && d <= MAX_WATCHDOG => Ok(d),
        _ => Err(invalid(
            "WATCHDOG_USEC",
            usec,
            "microseconds above 0 and at most a day (WatchdogSec= in the unit)",
        )),
    }
}

/// Where notifications go: the manager's datagram socket, if understudy runs under one.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    target: Option<Arc<Target>>,
    /// `WATCHDOG_USEC`, when the manager wants `WATCHDOG=1`.
    watchdog: Option<Duration>,
}

#[derive(Debug)]
struct Target {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// `NOTIFY_SOCKET` as it was given, for the understudy an upgrade starts.
    path: String,
    /// A failed send is warned about once, then only at debug level.
    warned: AtomicBool,
}

impl Notifier {
    /// A notifier to the socket at `path` (a leading `@` means the abstract namespace).
    fn to(path: &str, watchdog: Option<Duration>) -> Result<Notifier, SystemdError> {
        let expected = "an absolute path or an @abstract name of a datagram socket";
        let bad = |why: String| invalid("NOTIFY_SOCKET", path, &format!("{expected} ({why})"));
        let addr = if let Some(name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())
        } else if path.starts_with('/') {
            SocketAddr::from_pathname(path)
        } else {
            return Err(bad("neither".into()));
        }
        .map_err(|e| bad(e.to_string()))?;
        let socket = UnixDatagram::unbound()
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .map_err(|e| bad(e.to_string()))?;
        Ok(Notifier {
            target: Some(Arc::new(Target {
                socket,
                addr,
                path: path.to_string(),
                warned: AtomicBool::new(false),
            })),
            watchdog,
        })
    }

    /// The variables that let the understudy an upgrade starts notify the same manager (which
    /// follows it as the main process once told `MAINPID=`): empty without a manager.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let Some(t) = &self.target else {
            return Vec::new();
        };
        let mut env = vec![("NOTIFY_SOCKET", t.path.clone())];
        if let Some(period) = self.watchdog {
            env.push(("WATCHDOG_USEC", period.as_micros().to_string()));
        }
        env
    }

    /// Whether a manager listens for notifications.
    pub fn is_on(&self) -> bool {
        self.target.is_some()
    }

    /// Send one notification (`KEY=value` lines); nothing without a manager. Never blocks: a
    /// manager too busy to take it loses it.
    pub fn send(&self, state: &str) {
        let Some(t) = &self.target else {
            return;
        };
        if let Err(e) = t.socket.send_to_addr(state.as_bytes(), &t.addr) {
            if t.warned.swap(true, Ordering::Relaxed) {
                tracing::debug!("cannot notify systemd: {e}");
            } else {
                tracing::warn!("cannot notify systemd through NOTIFY_SOCKET: {e}");
            }
        }
    }
}

/// What the notifying task watches.
pub struct Watched {
    /// The supervisor's status, for `READY=1` and `STATUS=`.
    pub status: watch::Receiver<Arc<Status>>,
    /// When the supervisor's loop last beat (its presence heartbeat); the first beat says it has
    /// resumed.
    pub pulse: watch::Receiver<Instant>,
    /// How old the last beat may be while the supervisor still counts as alive; asked at each
    /// pet, since a reload may change the heartbeat's pace.
    pub stale_after: Box<dyn Fn() -> Duration + Send>,
}

/// Notify systemd until `stop`: `STATUS=` whenever the summary changes, `READY=1` once the
/// supervisor has resumed and running is ready (or there is none), and `WATCHDOG=1` every half
/// `WATCHDOG_USEC` while the supervisor's loop beats, so a hung supervisor gets restarted.
pub async fn run(notifier: Notifier, mut w: Watched, stop: CancellationToken) {
    let mut pet = notifier.watchdog.map(|period| {
        let mut i = tokio::time::interval(period / 2);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    let (mut status_open, mut pulse_open) = (true, true);
    let (mut resumed, mut ready, mut said) = (false, false, String::new());
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            r = w.status.changed(), if status_open => status_open = r.is_ok(),
            r = w.pulse.changed(), if pulse_open => {
                pulse_open = r.is_ok();
                resumed |= pulse_open;
            }
            now = tick(&mut pet) => {
                if fresh(*w.pulse.borrow(), now, (w.stale_after)()) {
                    notifier.send("WATCHDOG=1");
                }
                continue;
            }
        }
        let status = w.status.borrow().clone();
        let line = summary(&status);
        let mut message = Vec::new();
        if resumed && !ready && settled(&status) {
            ready = true;
            message.push(READY.to_string());
        }
        if line != said {
            message.push(format!("STATUS={line}"));
            said = line;
        }
        if !message.is_empty() {
            notifier.send(&message.join("\n"));
        }
    }
}

/// The next tick of the watchdog's interval; never without one.
async fn tick(pet: &mut Option<tokio::time::Interval>) -> Instant {
    match pet {
        Some(i) => i.tick().await,
        None => std::future::pending().await,
    }
}

/// Whether the supervisor beat recently enough (`last` no more than `stale_after` before `now`).
fn fresh(last: Instant, now: Instant, stale_after: Duration) -> bool {
    now.saturating_duration_since(last) <= stale_after
}

/// Whether running has settled enough for `READY=1`: it is ready, or there is none starting (no
/// build yet, or it failed and is being restarted, which may take long: understudy itself
/// serves, and `STATUS=` says what is wrong).
pub(crate) fn settled(s: &Status) -> bool {
    s.running.as_ref().is_none_or(|r| r.ready)
}

/// The status as one line for `systemctl status`: running, testing and its verdict, what waits.
pub fn summary(s: &Status) -> String {
    let mut parts = Vec::new();
    parts.push(match (&s.running, &s.restarting) {
        (Some(r), _) if r.ready => format!("running {}", r.version),
        (Some(r), _) => format!("running {} (starting)", r.version),
        (None, Some(v)) => format!("running {v} (restarting)"),
        (None, None) => "no running build".to_string(),
    });
    if let Some(p) = &s.promoting {
        parts.push(format!("promoting {}", p.version));
    }
    if let Some(t) = &s.testing {
        let mut part = format!("testing {}", t.version);
        match &s.verdict {
            Some(v) if v.version == t.version => part.push_str(&format!(
                ": {} (score {}, {} pairs)",
                v.verdict, v.score, v.pairs
            )),
            _ if !t.ready => part.push_str(" (starting)"),
            _ => {}
        }
        parts.push(part);
    }
    if let Some(v) = &s.installing {
        parts.push(format!("installing {v}"));
    }
    if let Some(v) = &s.pending {
        parts.push(format!("{v} waits"));
    }
    if s.paused {
        parts.push("paused".to_string());
    }
    if s.disk_full.is_some() {
        parts.push("disk full".to_string());
    }
    parts
        .join("; ")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_STATUS)
        .collect()
}

#[cfg(test)]
mod tests;
