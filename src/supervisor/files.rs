//! The supervisor's small files, written by one task in the order they were decided: the role
//! symlinks, the state file, the history, the presence file. A write the disk refuses (full,
//! read-only) is kept and retried at every heartbeat, newer versions of the same file replacing
//! older ones, and the supervisor is told once when writing fails and once when it works again,
//! so status, events and metrics can say `disk_full` while users keep being served.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use super::{Persisted, TxnStep};
use crate::layout::{write_atomic, Layout, Role};

/// Fault injection for the tests: `UNDERSTUDY_INJECT_CRASH=before-switch` makes understudy kill
/// itself (SIGKILL) once a promotion's fresh instance is ready and journaled, before the switch.
pub(super) const INJECT_CRASH: &str = "UNDERSTUDY_INJECT_CRASH";
/// Fault injection for the tests: while the file this names exists, every write here fails as
/// on a full disk (ENOSPC), since a test cannot fill a real disk.
const INJECT_DISK_FULL: &str = "UNDERSTUDY_INJECT_DISK_FULL";

/// An operator's answer, sent once the file writes decided before it are done.
pub(super) type Reply = (
    tokio::sync::oneshot::Sender<Result<String, super::CommandError>>,
    Result<String, super::CommandError>,
);

/// Small file writes that must happen in the order they were decided.
pub(super) enum FileJob {
    Point(Role, PathBuf),
    Unpoint(Role),
    Persist(Box<Persisted>),
    Record(crate::history::Switch),
    /// The presence file, already serialised; also the heartbeat at which failed writes are
    /// retried and the role symlinks checked.
    Status(Vec<u8>),
    /// Not a write: an answer that must not overtake the writes before it (a schedule is
    /// stored before the operator hears it is).
    Reply(Reply),
}

impl FileJob {
    /// Whether `self` makes an earlier failed `other` pointless (it writes the same file anew).
    fn supersedes(&self, other: &FileJob) -> bool {
        use FileJob::{Persist, Point, Status, Unpoint};
        match (self, other) {
            (Persist(_), Persist(_)) | (Status(_), Status(_)) => true,
            (Point(a, _) | Unpoint(a), Point(b, _) | Unpoint(b)) => a == b,
            _ => false,
        }
    }
}

/// The writer's end: what failed and is waiting for a retry, and what the supervisor was told.
struct Writer {
    layout: Layout,
    failing: Vec<FileJob>,
    /// The error the supervisor last heard about (`None`: writing works).
    told: Option<String>,
    /// The latest write error.
    last_error: Option<String>,
    /// Where `Some(error)` / `None` go when writing starts or stops failing.
    report: Box<dyn Fn(Option<String>) + Send>,
    /// What each role's symlink was last pointed at, to repair it if someone removes or moves it.
    pointed: HashMap<Role, PathBuf>,
    disk_full_flag: Option<PathBuf>,
}

/// Write the jobs one after the other, in the order decided, until the channel closes.
/// `report` hears `Some(why)` when a write starts failing and `None` once all succeed again.
pub(super) async fn write_files(
    layout: Layout,
    mut rx: mpsc::UnboundedReceiver<FileJob>,
    report: impl Fn(Option<String>) + Send + 'static,
) {
    // Fault injection for the tests: die hard right after journaling "ready", before the switch.
    let crash_before_switch = std::env::var(INJECT_CRASH).is_ok_and(|v| v == "before-switch");
    let mut w = Writer {
        layout,
        failing: Vec::new(),
        told: None,
        last_error: None,
        report: Box::new(report),
        pointed: HashMap::new(),
        disk_full_flag: std::env::var_os(INJECT_DISK_FULL).map(PathBuf::from),
    };
    while let Some(job) = rx.recv().await {
        let crash = crash_before_switch
            && matches!(&job, FileJob::Persist(p)
                if p.txn.as_ref().is_some_and(|t| t.step == TxnStep::Ready));
        let job = match job {
            FileJob::Reply((reply, result)) => {
                let _ = reply.send(result);
                continue;
            }
            job => job,
        };
        w.remember(&job);
        if matches!(job, FileJob::Status(_)) {
            w.heartbeat().await;
        }
        w.attempt(job).await;
        w.tell();
        if crash {
            tracing::error!("{INJECT_CRASH}=before-switch: dying by SIGKILL");
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Writer {
    fn remember(&mut self, job: &FileJob) {
        match job {
            FileJob::Point(role, dir) => {
                self.pointed.insert(*role, dir.clone());
            }
            FileJob::Unpoint(role) => {
                self.pointed.remove(role);
            }
            _ => {}
        }
    }

    /// Retry what failed, in order, then check the role symlinks.
    async fn heartbeat(&mut self) {
        for job in std::mem::take(&mut self.failing) {
            self.attempt(job).await;
        }
        let (layout, links) = (self.layout.clone(), self.pointed.clone());
        let _ = tokio::task::spawn_blocking(move || repair_links(&layout, &links)).await;
    }

    /// Write `job`; keep it for a retry if the disk refused it.
    async fn attempt(&mut self, job: FileJob) {
        let layout = self.layout.clone();
        let full = self.disk_full_flag.as_ref().is_some_and(|f| f.exists());
        let done = tokio::task::spawn_blocking(move || {
            let result = match full {
                true => Err(format!(
                    "cannot write in {}: {} ({INJECT_DISK_FULL})",
                    layout.state_dir().display(),
                    std::io::Error::from_raw_os_error(libc::ENOSPC)
                )),
                false => write(&layout, &job),
            };
            (job, result)
        })
        .await;
        let Ok((job, result)) = done else {
            tracing::error!("the file task failed");
            return;
        };
        self.failing.retain(|old| !job.supersedes(old));
        if let Err(e) = result {
            if self.told.is_none() && self.last_error.is_none() {
                tracing::error!("{e}; keeping it and retrying at every heartbeat");
            }
            self.failing.push(job);
            self.last_error = Some(e);
        }
    }

    /// Tell the supervisor when writing starts or stops failing (once each way).
    fn tell(&mut self) {
        let now = match self.failing.is_empty() {
            true => None,
            false => self.last_error.clone(),
        };
        if now.is_none() {
            self.last_error = None;
        }
        if now.is_some() != self.told.is_some() {
            if now.is_none() {
                tracing::info!("the base dir takes writes again: every kept write is saved");
            }
            (self.report)(now.clone());
            self.told = now;
        }
    }
}

/// One write, blocking; the error says what failed on which path.
fn write(layout: &Layout, job: &FileJob) -> Result<(), String> {
    match job {
        FileJob::Point(role, dir) => layout.point(*role, dir).map_err(|e| {
            format!(
                "cannot point {} at {}: {e}",
                layout.link(*role).display(),
                dir.display()
            )
        }),
        FileJob::Unpoint(role) => layout
            .unpoint(*role)
            .map_err(|e| format!("cannot remove {}: {e}", layout.link(*role).display())),
        FileJob::Persist(p) => {
            let path = layout.state_file();
            std::fs::create_dir_all(layout.state_dir())
                .and_then(|()| {
                    let bytes = serde_json::to_vec_pretty(p).map_err(std::io::Error::other)?;
                    write_atomic(&path, &bytes)
                })
                .map_err(|e| format!("cannot save {}: {e}", path.display()))
        }
        FileJob::Record(switch) => {
            let path = layout.history_file();
            crate::history::append(&path, switch).map_err(|e| {
                format!(
                    "cannot record the switch to {} in {}: {e}",
                    switch.to,
                    path.display()
                )
            })
        }
        FileJob::Status(bytes) => {
            let path = layout.status_file();
            write_atomic(&path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
        }
        FileJob::Reply(_) => Ok(()),
    }
}

/// Point back any role symlink that was deleted or pointed elsewhere since understudy set it (a
/// user's `running` must lead to what serves), and say so. Blocking.
fn repair_links(layout: &Layout, pointed: &HashMap<Role, PathBuf>) {
    for (role, dir) in pointed {
        let link = layout.link(*role);
        let want: &Path = dir.strip_prefix(layout.base()).unwrap_or(dir);
        let found = std::fs::read_link(&link).ok();
        if found.as_deref() == Some(want) {
            continue;
        }
        let was = match &found {
            None => "missing".to_string(),
            Some(t) => format!("pointing at {}", t.display()),
        };
        match layout.point(*role, dir) {
            Ok(()) => tracing::warn!(
                "{} was {was}: pointed it back at {}",
                link.display(),
                want.display()
            ),
            Err(e) => tracing::error!("{} was {was} and cannot be repaired: {e}", link.display()),
        }
    }
}
