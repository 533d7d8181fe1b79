//! Answers spilled to disk, as nginx's `proxy_temp_path` does: when an answer read ahead of a slow
//! user no longer fits in `ANSWER_BUFFER` / `ANSWER_MEMORY`, the rest goes to an unnamed
//! temporary file under `.understudy/` (gone with its descriptor, so nothing is ever left behind),
//! bounded for the whole process by `ANSWER_SPILL` and by `MIN_FREE_DISK`. Writes and reads are
//! plain blocking calls on the proxy thread, as nginx's workers make them: they reach the page
//! cache, not the disk, at these sizes.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Free disk a spill file must leave beyond `MIN_FREE_DISK` when it is opened.
const MARGIN: u64 = 16 << 20;

/// Where answers spill and how much may be on disk at once.
#[derive(Debug)]
pub struct Spills {
    dir: PathBuf,
    left: AtomicU64,
    min_free_disk: u64,
}

impl Spills {
    /// Spill files in `dir`, at most `bytes` on disk together, never below `min_free_disk` free.
    pub fn new(dir: PathBuf, bytes: u64, min_free_disk: u64) -> Spills {
        Spills {
            dir,
            left: AtomicU64::new(bytes),
            min_free_disk,
        }
    }

    /// A new spill file, when the budget has room and the disk has `MIN_FREE_DISK` to spare.
    pub fn open(self: &Arc<Self>) -> Option<Spill> {
        if self.left.load(Ordering::Acquire) == 0 {
            return None;
        }
        let free = crate::layout::free_disk(&self.dir)?;
        if free < self.min_free_disk.saturating_add(MARGIN) {
            return None;
        }
        let file = unnamed_file(&self.dir)
            .map_err(|e| {
                tracing::warn!(
                    "cannot spill an answer to {}: {e}; it streams at the user's pace",
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

    fn take(&self, n: u64) -> bool {
        self.left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(n)
            })
            .is_ok()
    }

    fn give_back(&self, n: u64) {
        self.left.fetch_add(n, Ordering::AcqRel);
    }
}

/// A file with no name in `dir` (`O_TMPFILE`), or, where the filesystem has none, one that is
/// unlinked as soon as it is open.
fn unnamed_file(dir: &std::path::Path) -> io::Result<File> {
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
            return Err(io::Error::other("ANSWER_SPILL is used up"));
        }
        self.file.write_all_at(bytes, self.written)?;
        self.written += n;
        self.reserved -= n;
        self.held += n;
        Ok(())
    }

    /// Give back what was reserved and not written.
    pub fn unreserve(&mut self) {
        self.spills.give_back(std::mem::take(&mut self.reserved));
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_come_back_in_order_and_the_budget_with_them() {
        let dir = tempfile::tempdir().unwrap();
        let spills = Arc::new(Spills::new(dir.path().to_path_buf(), 10, 0));
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
        let none = Arc::new(Spills::new(dir.path().to_path_buf(), 0, 0));
        assert!(none.open().is_none());
        let full = Arc::new(Spills::new(dir.path().to_path_buf(), 1 << 30, u64::MAX / 2));
        assert!(full.open().is_none());
    }
}
