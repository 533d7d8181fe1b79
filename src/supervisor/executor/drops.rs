//! Dropped builds given their turn: installed, or refused into `rejected/`. Each is looked at
//! again first, since it may have waited long behind other installs: one gone from the base dir
//! or being written again is given back to `decide` ([`Withdrawn`]) instead.

use std::io::ErrorKind;
use std::ops::ControlFlow;

use super::{crash_if_injected, Done, Executor};
use crate::archive;
use crate::artifact;
use crate::supervisor::{Filed, Withdrawn};
use crate::watcher::{Dropped, Writes};

impl Executor {
    pub(super) fn install(&self, d: Dropped) {
        let (layout, writes) = (self.layout.clone(), self.writes.clone());
        let limits = artifact::InstallLimits {
            max_unpacked: self.cfg.max_unpacked_size,
            min_free_disk: self.cfg.min_free_disk,
        };
        let (failed_version, failed_path) = (d.name.version.clone(), d.path.clone());
        let failed = move |why| Done::Installed {
            version: failed_version,
            result: Err(format!("cannot install {}: {why}", failed_path.display())),
        };
        self.blocking(
            move || {
                let d = match its_turn(&writes, d, true) {
                    ControlFlow::Continue(d) => d,
                    ControlFlow::Break(withdrawn) => return withdrawn,
                };
                tracing::info!("installing {}", d.path.display());
                let result = artifact::install(&layout, &d.path, &d.name, limits)
                    .map_err(|e| format!("cannot install {}: {e}", d.path.display()))
                    .and_then(|installed| {
                        crash_if_injected("install-unsealed");
                        crash_if_injected("install-panic");
                        crate::store::seal(&layout, &installed)
                            .map(|()| installed)
                            .map_err(|e| {
                                format!("cannot keep a protected copy of {}: {e}", d.path.display())
                            })
                    });
                if result.is_ok() {
                    crash_if_injected("install-sealed");
                    tracing::info!("installed {}", d.name.version);
                }
                Done::Installed {
                    version: d.name.version,
                    result,
                }
            },
            failed,
        );
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
