//! Handing understudy's place to the next process and taking it from the previous one, as
//! `run` wires it: what is handed on, when a process started by an upgrade says it serves, and
//! what systemd is told when the place changes hands. The handover itself is `upgrade`'s.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{admin, supervisor, systemd, upgrade, RunError, Tasks};

/// Tell systemd the shutdown starts, or, once handed over, that the new process is the main one.
/// A shutdown that hands nothing on lets the listener's copy kept for a successor go
/// ([`upgrade::Listening`]).
pub(crate) fn farewell(notifier: &systemd::Notifier, handing: &Handing) {
    if handing.handed.is_cancelled() {
        let pid = handing.successor.load(std::sync::atomic::Ordering::SeqCst);
        tracing::info!("handed over to understudy pid {pid}: finishing the requests in flight, stopping no child");
        notifier.send(&format!("MAINPID={pid}"));
    } else {
        notifier.send(systemd::STOPPING);
        if let Some(kept) = &handing.listening {
            drop(kept.lock().unwrap_or_else(|p| p.into_inner()).take());
        }
    }
}

/// What `run` keeps of its succession once the supervisor owns the rest.
pub(crate) struct Handing {
    /// After an upgrade started this process: what tells the old one it serves.
    pub(crate) ready: Option<ReadySignal>,
    /// Cancelled once this process handed over to a new one.
    pub(crate) handed: CancellationToken,
    /// Cancelled once this process serves.
    pub(crate) serving: CancellationToken,
    /// The new process's pid, once handed over.
    pub(crate) successor: Arc<std::sync::atomic::AtomicU32>,
    /// Why this process gave up taking over, if it did.
    pub(crate) given_up: Arc<std::sync::OnceLock<String>>,
    /// The pid of the understudy this process took over from, if an upgrade started it.
    pub(crate) from: Option<u32>,
    /// The listener's copy kept for a successor, if any, for [`farewell`] to let go.
    pub(crate) listening: Option<upgrade::Listening>,
}

/// How an understudy started by an upgrade says it serves: once running (if one was handed)
/// is ready here, the proxy opens, `serving` is cancelled and the old one hears `ready`.
pub(crate) struct ReadySignal {
    pub(crate) pipe: upgrade::ReadyPipe,
    pub(crate) open: CancellationToken,
    pub(crate) adopts_running: bool,
    pub(crate) serving: CancellationToken,
    /// `admin.json` and its text, written just before `ready`.
    pub(crate) announce: Option<(std::path::PathBuf, String)>,
    /// Why it gave up taking over, once `giving_up` is cancelled.
    pub(crate) given_up: Arc<std::sync::OnceLock<String>>,
    /// Cancelled when it gives up taking over: the old one is told why, and this one stops.
    pub(crate) giving_up: CancellationToken,
    /// Stops this process (`run`'s shutdown).
    pub(crate) quit: CancellationToken,
}

impl Handing {
    /// How `run` ended: as the shutdown went, unless this process gave up taking over.
    pub(crate) fn outcome(&self, shut_down: Result<(), RunError>) -> Result<(), RunError> {
        match self.given_up.get() {
            Some(why) => Err(RunError::GaveUp(why.clone())),
            None => shut_down,
        }
    }
}

/// Fill in what this process can hand on (descriptors, systemd's variables) and take what it
/// was handed.
pub(crate) fn handing(
    shutdown: &CancellationToken,
    succession: &mut upgrade::Succession,
    proxy: &TcpListener,
    admin: &mut admin::Bound,
    notifier: &systemd::Notifier,
) -> Result<Handing, RunError> {
    succession.shared = match succession.lock {
        Some(lock) => Some(shared_fds(lock, proxy, admin).map_err(RunError::Listener)?),
        None => None,
    };
    succession.env = notifier.env();
    succession.stop_asked = shutdown.clone();
    let serving = succession.serving.clone();
    let ready = succession.ready.take().map(|pipe| ReadySignal {
        pipe,
        open: CancellationToken::new(),
        adopts_running: succession.taken.iter().any(|(c, _)| c.part == "running"),
        serving: serving.clone(),
        announce: admin.take_announcement(),
        given_up: succession.given_up.clone(),
        giving_up: succession.giving_up.clone(),
        quit: shutdown.clone(),
    });
    if ready.is_none() {
        serving.cancel();
    }
    Ok(Handing {
        listening: succession.shared.as_ref().map(|s| s.proxy.clone()),
        ready,
        handed: succession.handed.clone(),
        serving,
        successor: succession.successor.clone(),
        given_up: succession.given_up.clone(),
        from: succession.from,
    })
}

/// Copies of the listeners' descriptors, kept to hand to the next understudy.
fn shared_fds(
    lock: std::os::fd::RawFd,
    proxy: &TcpListener,
    admin: &admin::Bound,
) -> std::io::Result<upgrade::Shared> {
    use std::os::fd::{AsFd, BorrowedFd};
    let (admin_fd, socket_fd) = admin.fds();
    // SAFETY: both descriptors belong to `admin`, alive for this call.
    let borrow = |fd| unsafe { BorrowedFd::borrow_raw(fd) };
    Ok(upgrade::Shared {
        lock,
        proxy: std::sync::Arc::new(std::sync::Mutex::new(Some(
            proxy.as_fd().try_clone_to_owned()?,
        ))),
        admin: admin_fd
            .map(|fd| borrow(fd).try_clone_to_owned())
            .transpose()?,
        socket: borrow(socket_fd).try_clone_to_owned()?,
    })
}

/// The tasks of upgrades: SIGUSR2 asks for one (with the binary understudy was started from);
/// after an upgrade started this process, once running serves here the proxy opens and `ready`
/// tells the old one.
pub(crate) fn spawn_succession(
    tasks: &mut Tasks,
    ready: Option<ReadySignal>,
    admin: &admin::AdminState,
) {
    let (supervisor, stop) = (&admin.handle, &admin.stop);
    let (handle, until) = (supervisor.clone(), stop.clone());
    tasks.spawn("upgrade signal", async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut usr2) = signal(SignalKind::user_defined2()) else {
            tracing::warn!("cannot install a SIGUSR2 handler: upgrade with `understudy upgrade`");
            return until.cancelled().await;
        };
        loop {
            tokio::select! {
                _ = until.cancelled() => return,
                _ = usr2.recv() => {
                    tracing::info!("SIGUSR2: upgrading understudy");
                    match handle.send(supervisor::Command::Upgrade(None)).await {
                        Ok(done) => tracing::info!("{done}"),
                        Err(e) => tracing::error!("upgrade refused or failed: {e}"),
                    }
                }
            }
        }
    });
    let Some(ReadySignal {
        pipe,
        open,
        adopts_running,
        serving,
        announce,
        given_up,
        giving_up,
        quit,
    }) = ready
    else {
        return;
    };
    let (mut status, until) = (supervisor.watch(), stop.clone());
    tasks.spawn("handover", async move {
        // Not the status before the supervisor resumed: running handed over must serve here.
        let settled = status.wait_for(|s| match &s.running {
            Some(r) => r.ready,
            None => !adopts_running,
        });
        tokio::select! {
            _ = until.cancelled() => return,
            // This process stops; the old one takes the children back.
            _ = giving_up.cancelled() => {
                let why = given_up.get().map_or("it gave up taking over", |w| w.as_str());
                tracing::error!("giving up the takeover: {why}");
                pipe.say(&format!("error {why}"));
                quit.cancel();
            }
            r = settled => if r.is_ok() {
                open.cancel();
                // Before `ready`: once the command returns, admin.json names this process.
                if let Some((path, text)) = &announce {
                    if let Err(e) = crate::layout::write_atomic(path, text.as_bytes()) {
                        tracing::warn!("cannot write {}: {e}", path.display());
                    }
                }
                serving.cancel();
                pipe.say("ready");
            },
        }
        until.cancelled().await
    });
}

/// After an upgrade, once this process serves and the old one is gone (it told systemd
/// `MAINPID=` of this one first): say `READY=1` and `STATUS=` again, since under
/// `NotifyAccess=main` systemd dropped what this process sent before it was the main one.
pub(crate) fn spawn_restatement(
    tasks: &mut Tasks,
    notifier: &systemd::Notifier,
    handing: &Handing,
    status: tokio::sync::watch::Receiver<Arc<supervisor::Status>>,
    stop: &CancellationToken,
) {
    let Some(old) = handing.from.filter(|_| notifier.is_on()) else {
        return;
    };
    let (notifier, serving, stop) = (notifier.clone(), handing.serving.clone(), stop.clone());
    tasks.spawn("systemd restatement", async move {
        let handed = async {
            serving.cancelled().await;
            while !gone(old) {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = handed => {}
        }
        let line = systemd::summary(&status.borrow());
        let ready = systemd::settled(&status.borrow());
        let ready = if ready { "READY=1\n" } else { "" };
        notifier.send(&format!("{ready}STATUS={line}"));
        stop.cancelled().await
    });
}

/// Whether the process `pid` has ended (gone, or a zombie its parent has yet to reap).
fn gone(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return true;
    };
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
        == Err(nix::errno::Errno::ESRCH)
    {
        return true;
    }
    // "pid (comm) S ...": the state follows the last ')'.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}
