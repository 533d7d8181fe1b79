//! understudy's own log file (`LOG_DIR/understudy.log`), reopened once it was renamed or deleted:
//! logrotate's default (`create`) renames the file and expects the program to write a new one,
//! and a file kept open would take every later line into the rotated one.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often, at most, a write looks whether the path still names the open file: a `stat` a
/// second, whatever the rate of lines.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// The log file at a path, appended to, reopened when the path names another file or none.
pub struct LogFile {
    path: PathBuf,
    file: File,
    /// The open file's device and inode.
    id: (u64, u64),
    looked: Instant,
}

impl LogFile {
    /// Open (creating it) the file at `path` to append to.
    pub fn open(path: PathBuf) -> io::Result<LogFile> {
        let file = append_to(&path)?;
        let meta = file.metadata()?;
        Ok(LogFile {
            path,
            file,
            id: (meta.dev(), meta.ino()),
            looked: Instant::now(),
        })
    }

    /// Reopen the path if it no longer names the open file (renamed away, deleted). A failure to
    /// reopen (the folder gone too) keeps the open file: a line is better kept there than lost,
    /// and the next look tries again.
    fn follow_the_path(&mut self) {
        let now = Instant::now();
        if now.duration_since(self.looked) < LOOK_EVERY {
            return;
        }
        self.looked = now;
        let same = std::fs::metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id);
        if same {
            return;
        }
        if let Ok(file) = append_to(&self.path) {
            if let Ok(meta) = file.metadata() {
                self.id = (meta.dev(), meta.ino());
                self.file = file;
            }
        }
    }
}

fn append_to(path: &std::path::Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.follow_the_path();
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renamed_log_is_left_and_the_path_written_anew_after_a_look() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("understudy.log");
        let mut log = LogFile::open(path.clone()).unwrap();
        log.write_all(b"one\n").unwrap();
        std::fs::rename(&path, dir.path().join("understudy.log.1")).unwrap();
        log.looked -= LOOK_EVERY;
        log.write_all(b"two\n").unwrap();
        std::fs::remove_file(&path).unwrap();
        log.looked -= LOOK_EVERY;
        log.write_all(b"three\n").unwrap();
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(read("understudy.log.1"), "one\n");
        assert_eq!(read("understudy.log"), "three\n");
    }
}
