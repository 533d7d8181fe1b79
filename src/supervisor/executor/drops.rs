//! Dropped builds given their turn: installed, or refused into `rejected/`. Each is looked at
//! again first, since it may have waited long behind other installs: one gone from the base dir
//! or being written again is given back to `decide` ([`Withdrawn`]) instead.

use std::io::ErrorKind;
use std::ops::ControlFlow;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{crash_if_injected, Done, Executor};
use crate::archive;
use crate::artifact::{self, InstallLimits, Installed};
use crate::layout::Layout;
use crate::store;
use crate::supervisor::{Filed, Withdrawn};
use crate::watcher::{Dropped, Writes};

impl Executor {
    /// Install a drop and keep its protected copy. A copy that fails for want of room on
    /// understudy's own disk (or its store's I/O) is not the build's fault: the build stays
    /// installed, untested, and the copy is tried again until it is kept or understudy stops.
    pub(super) fn install(&mut self, d: Dropped) {
        let (layout, writes) = (self.layout.clone(), self.writes.clone());
        self.install_abort = CancellationToken::new();
        let (done, stop) = (self.done_tx.clone(), self.stopping.clone());
        let abort = self.install_abort.clone();
        let min_free_disk = self.min_free_disk.subscribe();
        let limits = artifact::InstallLimits {
            max_unpacked: self.cfg.max_unpacked_size,
            min_free_disk: self.cfg.min_free_disk,
        };
        let (version, path) = (d.name.version.clone(), d.path.clone());
        let file = d.name.file_name.clone();
        self.tasks.spawn(async move {
            let l = layout.clone();
            let first = tokio::task::spawn_blocking(move || install_now(&l, &writes, d, limits));
            let (installed, why) = match first.await {
                Ok(Step::Done(d)) => {
                    let _ = done.send(d);
                    return;
                }
                Ok(Step::Unsealed(installed, why)) => (installed, why),
                Err(e) => {
                    let why = format!(
                        "understudy's own work failed ({e}); this is a bug, please report it"
                    );
                    tracing::error!("{why}");
                    let result = Err(format!("cannot install {}: {why}", path.display()));
                    let _ = done.send(Done::Installed { version, result });
                    return;
                }
            };
            let reason = format!(
                "its protected copy cannot be kept: {why}; it is not the build's fault, so \
                 {file} stays installed in {}, untested and not rejected, and the copy is tried \
                 again every {} s at most until it is kept",
                layout.version_dir(&version).display(),
                SEAL_RETRY_CAP.as_secs()
            );
            tracing::warn!("{version}: {reason}");
            let _ = done.send(Done::InstallWaiting {
                version,
                file,
                reason,
            });
            let waited = seal_when_room(layout, installed, why, min_free_disk, [stop, abort]);
            if let Some(d) = waited.await {
                let _ = done.send(d);
            }
        });
    }

    pub(super) fn refuse(&self, d: Dropped, reason: String) {
        let (layout, writes) = (self.layout.clone(), self.writes.clone());
        let failed_version = d.name.version.clone();
        let failed = move |why| Done::Filed {
            version: failed_version,
            result: Err(why),
            filing: None,
        };
        self.blocking(
            move || {
                let d = match its_turn(&writes, d, false) {
                    ControlFlow::Continue(d) => d,
                    ControlFlow::Break(withdrawn) => return withdrawn,
                };
                tracing::warn!("refusing {}: {reason}", d.path.display());
                let reasons = vec![reason];
                let result = archive::refuse_file(
                    &layout,
                    &d.path,
                    &d.name.file_name,
                    &d.name.version,
                    &reasons,
                )
                .map(|_| Filed::Rejected(reasons))
                .map_err(|e| format!("cannot move the refused build aside: {e}"));
                Done::Filed {
                    version: d.name.version,
                    result,
                    filing: None,
                }
            },
            failed,
        );
    }
}

/// How a drop's install went: done (installed and sealed, failed, or withdrawn), or installed
/// but its protected copy not kept, for a reason of understudy's own (why).
enum Step {
    Done(Done),
    Unsealed(Installed, String),
}

/// The first wait before a protected copy that failed is tried again; doubled each time.
const SEAL_RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between tries of a protected copy.
const SEAL_RETRY_CAP: Duration = Duration::from_secs(15);

/// Install the drop `d` and seal it, unless its turn was withdrawn. Blocking.
fn install_now(layout: &Layout, writes: &Writes, d: Dropped, limits: InstallLimits) -> Step {
    let d = match its_turn(writes, d, true) {
        ControlFlow::Continue(d) => d,
        ControlFlow::Break(withdrawn) => return Step::Done(withdrawn),
    };
    tracing::info!("installing {}", d.path.display());
    let version = d.name.version.clone();
    // A protected copy left from an earlier install of this version (its folder removed by
    // hand) would pass this one for finished, were a stop to cut it short.
    store::forget(layout, &version);
    let installed = match artifact::install(layout, &d.path, &d.name, limits) {
        Ok(installed) => installed,
        Err(e) => {
            let result = Err(format!("cannot install {}: {e}", d.path.display()));
            return Step::Done(Done::Installed { version, result });
        }
    };
    crash_if_injected("install-unsealed");
    crash_if_injected("install-panic");
    let sealed = store::check_room(layout, &installed, limits.min_free_disk)
        .and_then(|()| store::seal(layout, &installed));
    let result = match sealed {
        Ok(()) => {
            crash_if_injected("install-sealed");
            tracing::info!("installed {version}");
            Ok(installed)
        }
        Err(e) if e.is_own(layout) => return Step::Unsealed(installed, e.to_string()),
        Err(e) => Err(format!(
            "cannot keep a protected copy of {}: {e}",
            d.path.display()
        )),
    };
    Step::Done(Done::Installed { version, result })
}

/// Try the protected copy of `installed` again, waiting longer each time, until it is kept
/// (or fails for a reason of the build's own), or an operator aborts it; `None` once
/// understudy stops first: the build is then given back at the next start, as any install a
/// stop cut short.
async fn seal_when_room(
    layout: Layout,
    installed: Installed,
    mut why: String,
    min_free_disk: tokio::sync::watch::Receiver<u64>,
    [stop, abort]: [CancellationToken; 2],
) -> Option<Done> {
    let version = installed.version.clone();
    let mut delay = SEAL_RETRY_FIRST;
    loop {
        tokio::select! {
            _ = abort.cancelled() => {
                let why = format!(
                    "aborted by operator while it waited for room for its protected copy ({why})"
                );
                return Some(Done::Installed { version, result: Err(why) });
            }
            _ = stop.cancelled() => {
                tracing::warn!(
                    "{version} is still waiting for its protected copy ({why}) as understudy \
                     stops: it is installed again at the next start"
                );
                return None;
            }
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(SEAL_RETRY_CAP);
        let (l, i) = (layout.clone(), installed.clone());
        // As last reloaded: lowering MIN_FREE_DISK is one way out of the wait.
        let min_free_disk = *min_free_disk.borrow();
        let tried = tokio::task::spawn_blocking(move || {
            store::check_room(&l, &i, min_free_disk).and_then(|()| store::seal(&l, &i))
        });
        let result = match tried.await {
            Ok(Ok(())) => {
                tracing::info!("installed {version}: its protected copy is kept now");
                Ok(installed)
            }
            Ok(Err(e)) if e.is_own(&layout) => {
                let now = e.to_string();
                if now != why {
                    tracing::warn!("{version} still waits for its protected copy: {now}");
                    why = now;
                }
                continue;
            }
            Ok(Err(e)) => Err(format!("cannot keep a protected copy of {version}: {e}")),
            Err(e) => Err(format!(
                "understudy's own work failed ({e}); this is a bug, please report it"
            )),
        };
        return Some(Done::Installed { version, result });
    }
}

/// The drop `d`, still to be installed (`install`) or refused now; else its withdrawal, for
/// `decide`.
fn its_turn(writes: &Writes, d: Dropped, install: bool) -> ControlFlow<Done, Dropped> {
    match withdrawn(writes, &d) {
        None => ControlFlow::Continue(d),
        Some(why) => ControlFlow::Break(Done::Withdrawn {
            dropped: d,
            why,
            install,
        }),
    }
}

/// Why the drop `d` is not to be installed or refused now, if it is not: it is gone from the
/// base dir, or being written again (the watcher is then asked to report it once complete).
/// Blocking.
fn withdrawn(writes: &Writes, d: &Dropped) -> Option<Withdrawn> {
    let path = d.path.display();
    if let Err(e) = std::fs::symlink_metadata(&d.path) {
        if e.kind() == ErrorKind::NotFound {
            tracing::info!(
                "{path} is no longer in the base dir (taken away, or installed from an earlier \
                 report of it): nothing to install"
            );
            return Some(Withdrawn::Gone);
        }
    }
    if writes.being_written(&d.path, std::time::Instant::now()) {
        writes.report_again(&d.path);
        tracing::info!(
            "{path} is being written again: it is taken once its writer is done with it"
        );
        return Some(Withdrawn::BeingWritten);
    }
    None
}
