//! Which files in the base dir are being written. inotify sees every writer, whatever user it runs
//! as (scp, curl or a CI deploy rarely runs as understudy's user); `/proc` shows only the
//! processes understudy may inspect, so it is an extra signal, never the only one.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RenameMode};

/// A file written to and not closed since is taken as still being written until it has been
/// quiet this long: a writer that leaked its descriptor then no longer holds the build back.
pub const QUIET_WRITER_LIMIT: Duration = Duration::from_secs(5 * 60);

/// A write inotify saw begin and not end (no close of a file open for writing yet).
struct Write {
    /// When its last event came.
    last: Instant,
    /// Whether data was written, not only the file created: a hard link is created whole.
    wrote: bool,
    /// Whether [`QUIET_WRITER_LIMIT`] passing was logged.
    told: bool,
}

#[derive(Default)]
struct Inner {
    open: HashMap<PathBuf, Write>,
    /// A write whose file was just renamed, until the rename's other half names where it went.
    moving: Option<(PathBuf, Write)>,
    /// Builds found being written when their turn to be installed came: reported again.
    again: HashSet<PathBuf>,
}

/// The writes under way in the base dir, shared by the watcher (which reports a build once
/// nobody writes it) and the executor (which checks again right before installing it).
#[derive(Clone, Default)]
pub struct Writes(Arc<Mutex<Inner>>);

impl Writes {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing here can be left half-changed by a panic: the map is still usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forget every write seen: inotify's queue overflowed, so a close or a removal may have been
    /// lost, and a build would otherwise wait [`QUIET_WRITER_LIMIT`] for a writer long gone (the
    /// `/proc` check and `SETTLE_TIME` still hold a writer that is really there).
    pub fn forget_all(&self) {
        let mut w = self.lock();
        w.open.clear();
        w.moving = None;
    }

    /// Take in what an inotify event of the base dir says about writes: a file created or
    /// written to is being written until a close of it for writing, its removal or a rename.
    pub fn note(&self, kind: EventKind, paths: &[PathBuf], now: Instant) {
        let mut w = self.lock();
        match (kind, paths) {
            (EventKind::Create(k), [p, ..]) if k != CreateKind::Folder => {
                let write = Write {
                    last: now,
                    wrote: false,
                    told: false,
                };
                w.open.insert(p.clone(), write);
            }
            (EventKind::Modify(ModifyKind::Data(_)), [p, ..]) => {
                let write = w.open.entry(p.clone()).or_insert(Write {
                    last: now,
                    wrote: true,
                    told: false,
                });
                (write.last, write.wrote, write.told) = (now, true, false);
            }
            (EventKind::Access(AccessKind::Close(AccessMode::Write)), [p, ..])
            | (EventKind::Remove(_), [p, ..]) => {
                w.open.remove(p);
            }
            (EventKind::Modify(ModifyKind::Name(RenameMode::From)), [p, ..]) => {
                w.moving = w.open.remove(p).map(|write| (p.clone(), write));
            }
            // Moved in whole; if it was being written under another name, `Both` says so next.
            (EventKind::Modify(ModifyKind::Name(RenameMode::To)), [p, ..]) => {
                w.open.remove(p);
            }
            (EventKind::Modify(ModifyKind::Name(RenameMode::Both)), [from, to, ..]) => {
                if let Some((_, write)) = w.moving.take().filter(|(p, _)| p == from) {
                    w.open.insert(to.clone(), write);
                }
            }
            _ => {}
        }
    }

    /// Whether `path` is being written at `now`: inotify saw it written (or created, and it is
    /// still empty) and not closed since, less than [`QUIET_WRITER_LIMIT`] ago; or a process
    /// understudy may inspect holds it open for writing.
    pub fn being_written(&self, path: &Path, now: Instant) -> bool {
        self.seen_writing(path, now) || open_for_writing(path)
    }

    fn seen_writing(&self, path: &Path, now: Instant) -> bool {
        // Read before taking the lock, which inotify's thread waits for.
        let empty = std::fs::symlink_metadata(path).is_ok_and(|m| m.len() == 0);
        let mut w = self.lock();
        let Some(write) = w.open.get_mut(path) else {
            return false;
        };
        if !write.wrote && !empty {
            // Created with its content and never written: a hard link, whole from the start.
            return false;
        }
        if now.saturating_duration_since(write.last) < QUIET_WRITER_LIMIT {
            return true;
        }
        if !write.told {
            write.told = true;
            tracing::warn!(
                "{} has been open for writing with nothing written for over {QUIET_WRITER_LIMIT:?}: \
                 taking it as complete; if its writer is still at work, drop the build again once \
                 it is done",
                path.display()
            );
        }
        false
    }

    /// Have the watcher report `path` again once it is complete: it was being written when its
    /// turn to be installed came, and its earlier report was used up.
    pub fn report_again(&self, path: &Path) {
        self.lock().again.insert(path.to_path_buf());
    }

    /// Whether `path` is to be reported again; the request is used up.
    pub(super) fn take_report_again(&self, path: &Path) -> bool {
        self.lock().again.remove(path)
    }
}

/// Whether any process we can see holds `path` open for writing (a `cp` still copying, or a
/// writer that paused). Processes we may not inspect are skipped: inotify still sees them.
fn open_for_writing(path: &Path) -> bool {
    let Ok(target) = std::fs::canonicalize(path) else {
        return false;
    };
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    for p in procs.filter_map(|e| e.ok()) {
        let pid = p.file_name();
        if !pid
            .to_str()
            .is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.filter_map(|e| e.ok()) {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l == target) {
                let info = p.path().join("fdinfo").join(fd.file_name());
                let flags = std::fs::read_to_string(info).ok().and_then(|t| {
                    t.lines()
                        .find_map(|l| l.strip_prefix("flags:"))
                        .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
                });
                // O_WRONLY = 1, O_RDWR = 2; unknown flags count as writing, to be safe.
                if flags.is_none_or(|f| f & 0o3 != 0) {
                    return true;
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{DataChange, RemoveKind};
    use std::io::Write as _;

    const CLOSE_WRITE: EventKind = EventKind::Access(AccessKind::Close(AccessMode::Write));
    const DATA: EventKind = EventKind::Modify(ModifyKind::Data(DataChange::Any));

    #[test]
    fn a_file_held_open_for_writing_is_not_complete() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("app-1.0.0");
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(b"half").unwrap();
        assert!(open_for_writing(&p));
        drop(f);
        assert!(!open_for_writing(&p));
    }

    #[test]
    fn an_overflow_forgets_every_write_seen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("app-1.0.0");
        std::fs::write(&p, b"half").unwrap();
        let (writes, t0) = (Writes::default(), Instant::now());
        writes.note(DATA, std::slice::from_ref(&p), t0);
        assert!(writes.seen_writing(&p, t0));
        writes.forget_all();
        assert!(!writes.seen_writing(&p, t0), "its close may have been lost");
    }

    #[test]
    fn a_write_lasts_from_its_first_event_to_its_close_or_the_quiet_limit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("app-1.0.0");
        std::fs::write(&p, b"half").unwrap();
        let (writes, t0) = (Writes::default(), Instant::now());
        assert!(!writes.seen_writing(&p, t0), "no event seen: today's rule");
        writes.note(DATA, std::slice::from_ref(&p), t0);
        let later = t0 + QUIET_WRITER_LIMIT - Duration::from_secs(1);
        assert!(writes.seen_writing(&p, later), "quiet, but not closed");
        assert!(
            !writes.seen_writing(&p, t0 + QUIET_WRITER_LIMIT),
            "a leaked writer"
        );
        writes.note(DATA, std::slice::from_ref(&p), later);
        assert!(
            writes.seen_writing(&p, t0 + QUIET_WRITER_LIMIT),
            "it wrote again"
        );
        writes.note(CLOSE_WRITE, std::slice::from_ref(&p), later);
        assert!(!writes.seen_writing(&p, later));
        writes.note(DATA, std::slice::from_ref(&p), later);
        writes.note(
            EventKind::Remove(RemoveKind::File),
            std::slice::from_ref(&p),
            later,
        );
        assert!(!writes.seen_writing(&p, later));
    }

    #[test]
    fn a_created_file_is_being_written_while_empty_or_written_to() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("app-1.0.0");
        let create = EventKind::Create(CreateKind::File);
        let (writes, now) = (Writes::default(), Instant::now());
        std::fs::write(&p, b"").unwrap();
        writes.note(create, std::slice::from_ref(&p), now);
        assert!(writes.seen_writing(&p, now), "created, nothing written yet");
        // A hard link appears with its content and no write.
        std::fs::write(&p, b"whole").unwrap();
        assert!(!writes.seen_writing(&p, now));
        writes.note(DATA, std::slice::from_ref(&p), now);
        assert!(writes.seen_writing(&p, now));
    }

    #[test]
    fn a_rename_takes_the_write_along() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("app-1.0.0"));
        std::fs::write(&b, b"half").unwrap();
        let (writes, now) = (Writes::default(), Instant::now());
        let name = |m| EventKind::Modify(ModifyKind::Name(m));
        writes.note(DATA, std::slice::from_ref(&a), now);
        writes.note(name(RenameMode::From), std::slice::from_ref(&a), now);
        writes.note(name(RenameMode::To), std::slice::from_ref(&b), now);
        writes.note(name(RenameMode::Both), &[a.clone(), b.clone()], now);
        assert!(
            writes.seen_writing(&b, now),
            "still open under its new name"
        );
        assert!(!writes.seen_writing(&a, now));
        // Another file moved over it from elsewhere comes whole.
        writes.note(name(RenameMode::To), std::slice::from_ref(&b), now);
        assert!(!writes.seen_writing(&b, now));
    }
}
