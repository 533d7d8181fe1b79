//! Answers spilled to disk, as nginx's `proxy_temp_path` does: when an answer read ahead of a slow
//! user no longer fits in `ANSWER_BUFFER` / `ANSWER_MEMORY`, the rest goes to an unnamed
//! temporary file under `.understudy/` (gone with its descriptor, so nothing is ever left behind),
//! bounded for the whole process by `ANSWER_SPILL` and by `MIN_FREE_DISK` (as last reloaded,
//! looked at again every [`CHECK_EVERY`] reserved). Writes and reads are plain blocking calls on
//! the proxy thread, as nginx's workers make them: they reach the page cache, not the disk, at
//! these sizes.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::Config;

/// Free disk spilling leaves beyond `MIN_FREE_DISK`: room for what was granted before something
/// else took the disk (at most [`CHECK_EVERY`]).
const MARGIN: u64 = 16 << 20;

/// Bytes reserved between two looks at the free disk (a `statvfs`): far from `MIN_FREE_DISK` a
/// look per MiB spilled, never one per piece.
const CHECK_EVERY: u64 = 1 << 20;

/// After a look found no room, how long reservations are refused before the next look.
const RELOOK: Duration = Duration::from_millis(100);

/// `MIN_FREE_DISK` as spilling reads it: the configuration in force, reloads included, or a
/// fixed value.
#[derive(Debug, Clone)]
pub enum MinFreeDisk {
    /// A value that never changes (the proxy's own tests).
    Fixed(u64),
    /// The configuration published at each reload (SIGHUP): `MIN_FREE_DISK` is a live key.
    Live(watch::Receiver<Arc<Config>>),
}

impl MinFreeDisk {
    fn get(&self) -> u64 {
        match self {
            MinFreeDisk::Fixed(n) => *n,
            MinFreeDisk::Live(config) => config.borrow().min_free_disk,
        }
    }
}

/// Where answers spill and how much may be on disk at once.
#[derive(Debug)]
pub struct Spills {
    dir: PathBuf,
    left: AtomicU64,
    min_free_disk: MinFreeDisk,
    /// What may still be reserved before the free disk is looked at again.
    unchecked: AtomicU64,
    /// Reserved and not written yet: not in what the free disk shows, so a look deducts it.
    outstanding: AtomicU64,
    /// Held while the free disk is looked at (one thread at a time, so grants never stack):
    /// when the last look found no room, no new look before this instant.
    look: Mutex<Option<Instant>>,
    /// How the free disk is looked at ([`crate::layout::free_disk`]; a fake in unit tests).
    free_disk: fn(&Path) -> Option<u64>,
}

impl Spills {
    /// Spill files in `dir`, at most `bytes` on disk together, never below `min_free_disk` free.
    pub fn new(dir: PathBuf, bytes: u64, min_free_disk: MinFreeDisk) -> Spills {
        Spills {
            dir,
            left: AtomicU64::new(bytes),
            min_free_disk,
            unchecked: AtomicU64::new(0),
            outstanding: AtomicU64::new(0),
            look: Mutex::new(None),
            free_disk: crate::layout::free_disk,
        }
    }

    /// A new spill file, when the budget has room and the disk has `MIN_FREE_DISK` to spare.
    pub fn open(self: &Arc<Self>) -> Option<Spill> {
        if self.left.load(Ordering::Acquire) == 0 || !self.disk_allows(0) {
            return None;
        }
        let file = unnamed_file(&self.dir)
            .map_err(|e| {
                tracing::warn!(
                    "cannot spill an answer or a request body to {}: {e}; it streams at the user's pace",
                    self.dir.display()
                )
            })
            .ok()?;
        Some(Spill {
            file,
            written: 0,
            read: 0,
            held: 0,
            reserved: 0,
            spills: self.clone(),
        })
    }

    /// Take `n` bytes of `ANSWER_SPILL`, if both it and the free disk allow them.
    fn take(&self, n: u64) -> bool {
        let taken = self
            .left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(n)
            })
            .is_ok();
        if !taken {
            return false;
        }
        if !self.disk_allows(n) {
            self.give_back(n);
            return false;
        }
        self.outstanding.fetch_add(n, Ordering::AcqRel);
        true
    }

    /// Whether `n` more bytes (0: any) may go to disk: from what the last look granted, else
    /// after a new look, which grants at most [`CHECK_EVERY`] beyond them. Looks are one at a
    /// time and deduct what is reserved, so spilling passes the line by at most `CHECK_EVERY`
    /// (when something else filled the disk meanwhile), well within [`MARGIN`]. After a look
    /// that found no room, the next waits [`RELOOK`]: at the line, no `statvfs` per piece.
    fn disk_allows(&self, n: u64) -> bool {
        if self.grant(n) {
            return true;
        }
        let mut next_look = self.look.lock().unwrap_or_else(PoisonError::into_inner);
        // Another thread may have looked while this one waited.
        if self.grant(n) {
            return true;
        }
        let now = Instant::now();
        if next_look.is_some_and(|at| now < at) {
            return false;
        }
        let keep = self.min_free_disk.get().saturating_add(MARGIN);
        let room = (self.free_disk)(&self.dir).map_or(0, |free| {
            free.saturating_sub(keep)
                .saturating_sub(self.outstanding.load(Ordering::Acquire))
        });
        let allowed = room > 0 && room >= n;
        *next_look = (!allowed).then(|| now + RELOOK);
        let more = if allowed { room - n } else { 0 };
        self.unchecked
            .store(more.min(CHECK_EVERY), Ordering::Release);
        allowed
    }

    /// Take `n` (0: nothing, when any is left) from what the last look granted.
    fn grant(&self, n: u64) -> bool {
        self.unchecked
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u > 0 && u >= n).then(|| u - n)
            })
            .is_ok()
    }

    /// `n` reserved bytes were written (the free disk shows them now) or given up.
    fn settle(&self, n: u64) {
        self.outstanding.fetch_sub(n, Ordering::AcqRel);
    }

    fn give_back(&self, n: u64) {
        self.left.fetch_add(n, Ordering::AcqRel);
    }
}

/// A file with no name in `dir` (`O_TMPFILE`), or, where the filesystem has none, one that is
/// unlinked as soon as it is open.
fn unnamed_file(dir: &Path) -> io::Result<File> {
    let unnamed = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir);
    match unnamed {
        Ok(f) => Ok(f),
        Err(_) => {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("answer-{}-{n}.spill", std::process::id()));
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            std::fs::remove_file(&path)?;
            Ok(f)
        }
    }
}

/// One answer's bytes on disk, written at the end and read from the front.
#[derive(Debug)]
pub struct Spill {
    file: File,
    written: u64,
    read: u64,
    /// Budget taken for what is on disk and not read back yet.
    held: u64,
    /// Budget taken for a write to come.
    reserved: u64,
    spills: Arc<Spills>,
}

impl Spill {
    /// Make sure `n` bytes may be written next (taken from the budget when they may).
    pub fn reserve(&mut self, n: usize) -> bool {
        let more = (n as u64).saturating_sub(self.reserved);
        if more == 0 {
            return true;
        }
        let ok = self.spills.take(more);
        if ok {
            self.reserved += more;
        }
        ok
    }

    /// Write `bytes` after what is there, within the budget.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let n = bytes.len() as u64;
        if !self.reserve(bytes.len()) {
            return Err(io::Error::other(
                "ANSWER_SPILL is used up or the disk is down to MIN_FREE_DISK",
            ));
        }
        self.file.write_all_at(bytes, self.written)?;
        self.written += n;
        self.reserved -= n;
        self.held += n;
        self.spills.settle(n);
        Ok(())
    }

    /// Give back what was reserved and not written.
    pub fn unreserve(&mut self) {
        let reserved = std::mem::take(&mut self.reserved);
        self.spills.give_back(reserved);
        self.spills.settle(reserved);
    }

    /// Bytes waiting on disk.
    pub fn waiting(&self) -> u64 {
        self.written - self.read
    }

    /// Whether bytes wait on disk.
    pub fn pending(&self) -> bool {
        self.read < self.written
    }

    /// Read up to `max` waiting bytes onto the end of `out`; once all is read back, the file
    /// starts over and its budget is given back.
    pub fn refill(&mut self, out: &mut Vec<u8>, max: usize) -> io::Result<()> {
        let n = (self.written - self.read).min(max as u64) as usize;
        let start = out.len();
        out.resize(start + n, 0);
        self.file.read_exact_at(&mut out[start..], self.read)?;
        self.read += n as u64;
        if self.read == self.written {
            self.file.set_len(0)?;
            (self.read, self.written) = (0, 0);
            self.spills.give_back(std::mem::take(&mut self.held));
        }
        Ok(())
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        self.spills.give_back(self.held + self.reserved);
        self.spills.settle(self.reserved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_come_back_in_order_and_the_budget_with_them() {
        let dir = tempfile::tempdir().unwrap();
        let spills = Arc::new(Spills::new(
            dir.path().to_path_buf(),
            10,
            MinFreeDisk::Fixed(0),
        ));
        let mut s = spills.open().expect("a spill file");
        assert!(s.reserve(6));
        s.write(b"abcdef").unwrap();
        assert!(!s.reserve(6), "over the budget");
        assert!(s.reserve(4));
        s.write(b"gh").unwrap();
        s.unreserve();
        assert!(s.write(b"ijk").is_err(), "over the budget");
        let mut out = b"<".to_vec();
        s.refill(&mut out, 5).unwrap();
        assert_eq!(out, b"<abcde");
        assert!(s.pending());
        s.refill(&mut out, 64).unwrap();
        assert_eq!(out, b"<abcdefgh");
        assert!(!s.pending());
        assert_eq!(spills.left.load(Ordering::Acquire), 10);
        assert!(s.reserve(10));
        drop(s);
        assert_eq!(spills.left.load(Ordering::Acquire), 10);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no file is left"
        );
    }

    #[test]
    fn no_spill_without_budget_or_free_disk() {
        let dir = tempfile::tempdir().unwrap();
        let none = Arc::new(Spills::new(
            dir.path().to_path_buf(),
            0,
            MinFreeDisk::Fixed(0),
        ));
        assert!(none.open().is_none());
        let full = MinFreeDisk::Fixed(u64::MAX / 2);
        let full = Arc::new(Spills::new(dir.path().to_path_buf(), 1 << 30, full));
        assert!(full.open().is_none());
    }

    std::thread_local! {
        /// The fake disk's free bytes, and how often it was looked at (each test has its thread).
        static FREE: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
    }

    fn fake_free_disk(_: &Path) -> Option<u64> {
        let (free, looks) = FREE.get();
        FREE.set((free, looks + 1));
        Some(free)
    }

    /// Spills in `dir` on a fake disk with `free` bytes free, within 1 GiB of `ANSWER_SPILL`.
    fn on_fake_disk(dir: &Path, free: u64, min_free_disk: MinFreeDisk) -> Arc<Spills> {
        FREE.set((free, 0));
        Arc::new(Spills {
            free_disk: fake_free_disk,
            ..Spills::new(dir.to_path_buf(), 1 << 30, min_free_disk)
        })
    }

    /// Write 64 KiB pieces as the relay does (reserve, write, unreserve), each taking its bytes
    /// off the fake disk, until a reservation is refused or `most` are written; what was written.
    fn spill_until_refused(s: &mut Spill, most: u64) -> u64 {
        let piece = vec![b'x'; 64 << 10];
        let mut written = 0;
        while written < most && s.reserve(piece.len()) {
            s.write(&piece).unwrap();
            s.unreserve();
            written += piece.len() as u64;
            let (free, looks) = FREE.get();
            FREE.set((free - piece.len() as u64, looks));
        }
        written
    }

    /// Free disk is looked at as the spill grows, not only when its file opens: spilling stops
    /// where it would leave less than `MIN_FREE_DISK` (and the margin) free, and far from that
    /// line it looks once per `CHECK_EVERY`, not once per piece.
    #[test]
    fn spilling_stops_at_min_free_disk_as_the_spill_grows() {
        let dir = tempfile::tempdir().unwrap();
        let min = 100 << 20;
        let spills = on_fake_disk(
            dir.path(),
            min + MARGIN + (5 << 20),
            MinFreeDisk::Fixed(min),
        );
        let mut s = spills.open().expect("room for 5 MiB");
        let written = spill_until_refused(&mut s, 64 << 20);
        assert_eq!(written, 5 << 20, "spilled up to the line, never past it");
        assert_eq!(FREE.get().0, min + MARGIN);
        let looks = FREE.get().1;
        assert!(looks <= 5 + 3, "{looks} looks at the free disk for 5 MiB");
        assert!(spills.open().is_none(), "no new spill file past the line");
        // Bytes read back free the disk again: spilling resumes.
        let mut out = Vec::new();
        while s.pending() {
            out.clear();
            s.refill(&mut out, 1 << 20).unwrap();
        }
        FREE.set((min + MARGIN + (5 << 20), 0));
        *spills.look.lock().unwrap() = None; // as after `RELOOK`
        assert_eq!(spill_until_refused(&mut s, 64 << 20), 5 << 20);
        assert_eq!(spills.outstanding.load(Ordering::Acquire), 0);
    }

    /// Reservations not written yet count against the room (another answer may not take it
    /// too), and at the line reservations are refused without a `statvfs` each.
    #[test]
    fn reserved_bytes_count_and_the_line_is_not_looked_at_per_piece() {
        let dir = tempfile::tempdir().unwrap();
        let spills = on_fake_disk(dir.path(), MARGIN + (1 << 20), MinFreeDisk::Fixed(0));
        let (mut a, mut b) = (spills.open().unwrap(), spills.open().unwrap());
        assert!(a.reserve(768 << 10));
        assert!(!b.reserve(768 << 10), "a's reservation holds that room");
        let looks = FREE.get().1;
        for _ in 0..100 {
            assert!(!b.reserve(768 << 10));
        }
        assert_eq!(
            FREE.get().1,
            looks,
            "no look within RELOOK of one that found no room"
        );
        a.unreserve();
        *spills.look.lock().unwrap() = None; // as after `RELOOK`
        assert!(b.reserve(768 << 10), "given back");
    }

    /// A reloaded `MIN_FREE_DISK` reaches spilling: raised above the free disk, a spilling answer
    /// stops within `CHECK_EVERY` and no new spill file opens.
    #[test]
    fn a_reloaded_min_free_disk_reaches_spilling() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = |extra: &str| {
            std::fs::write(dir.path().join(".env"), format!("IDENTIFIER=app\n{extra}")).unwrap();
            let env = std::collections::BTreeMap::new();
            Arc::new(Config::load(dir.path(), &env, &[]).unwrap())
        };
        let (config, rx) = watch::channel(cfg("MIN_FREE_DISK=0"));
        let spills = on_fake_disk(dir.path(), 1 << 40, MinFreeDisk::Live(rx));
        let mut s = spills.open().expect("room");
        assert_eq!(spill_until_refused(&mut s, 4 << 20), 4 << 20);
        config.send_replace(cfg("MIN_FREE_DISK=2TiB"));
        let more = spill_until_refused(&mut s, 64 << 20);
        assert!(
            more <= CHECK_EVERY,
            "{more} bytes spilled past the reloaded MIN_FREE_DISK"
        );
        assert!(spills.open().is_none(), "a new answer does not spill");
    }
}
