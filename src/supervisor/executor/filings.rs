//! The executor's blocking work on the base dir: filings (archive, reject), restores and the
//! collection, each run off the supervisor's task and reported back as a completion.

use super::done::{file_away, Done};
use super::Executor;
use crate::archive;
use crate::artifact;
use crate::supervisor::{Action, RestoreFailure};

impl Executor {
    /// Run blocking `work` off the supervisor's task and send its result back as a completion.
    /// Should the work panic, `failed` reports it as the same completion, so `decide` never
    /// waits for ever on an install or a filing that will not come back.
    pub(super) fn blocking(
        &self,
        work: impl FnOnce() -> Done + Send + 'static,
        failed: impl FnOnce(String) -> Done + Send + 'static,
    ) {
        let done = self.done_tx.clone();
        self.tasks.spawn(async move {
            let d = tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
                let why =
                    format!("understudy's own work failed ({e}); this is a bug, please report it");
                tracing::error!("{why}");
                failed(why)
            });
            let _ = done.send(d);
        });
    }

    /// Rotate the instances' `stdout` and `stderr` past their bound, each heartbeat, unless one
    /// rotation (or a collection, which rotates them too) is still under way: between the
    /// minute's collections a chatty app wrote 66 MB past a 40 MiB budget's 1.25 MiB bound.
    pub(super) fn rotate_logs(&self) {
        use std::sync::atomic::Ordering;
        if self.rotating.swap(true, Ordering::AcqRel) {
            return;
        }
        let (layout, max) = (self.layout.clone(), self.cfg.max_base_size);
        let rotating = self.rotating.clone();
        self.tasks.spawn(async move {
            let _ =
                tokio::task::spawn_blocking(move || archive::rotate_if_free(&layout, max)).await;
            rotating.store(false, Ordering::Release);
        });
    }

    /// Bring a version back into its folder: from its protected copy if its program is gone, from
    /// the archive if its folder is.
    pub(super) fn restore(&self, version: semver::Version) {
        let layout = self.layout.clone();
        let limits = artifact::InstallLimits {
            max_unpacked: self.cfg.max_unpacked_size,
            min_free_disk: self.cfg.min_free_disk,
        };
        let failed_version = version.clone();
        self.blocking(
            move || {
                let restored = crate::store::restore_version(&layout, &version, limits);
                let result = restored.map_err(|e| match e.is_missing() {
                    true => RestoreFailure::Missing,
                    false => RestoreFailure::Failed(e.to_string()),
                });
                if let Err(RestoreFailure::Failed(why)) = &result {
                    tracing::error!("{why}");
                }
                Done::Restored { version, result }
            },
            move |why| Done::Restored {
                version: failed_version,
                result: Err(RestoreFailure::Failed(why)),
            },
        );
    }

    /// Carry out an [`Action::Archive`] or [`Action::Reject`] off the supervisor's task.
    pub(super) fn file(&self, filing: Action) {
        let layout = self.layout.clone();
        let again = filing.clone();
        let (Action::Archive(version) | Action::Reject { version, .. }) = filing.clone() else {
            tracing::error!("not a filing: {filing:?}");
            return;
        };
        self.blocking(
            move || file_away(&layout, filing),
            move |why| Done::Filed {
                version,
                result: Err(why),
                filing: Some(Box::new(again)),
            },
        );
    }

    /// Run a collection (the budget, the disk, log rotation) off the supervisor's task.
    pub(super) fn collect(&self) {
        let layout = self.layout.clone();
        let limits = archive::Limits {
            max_base_size: self.cfg.max_base_size,
            min_free_disk: self.cfg.min_free_disk,
        };
        self.blocking(
            move || Done::Collected(archive::collect_garbage(&layout, limits)),
            |_| {
                Done::Collected(archive::Collection {
                    failed: true,
                    ..Default::default()
                })
            },
        );
    }
}
