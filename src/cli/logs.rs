//! `understudy logs`: the files behind a role's symlink, streamed, and followed through
//! truncation, rotation and a switch of the symlink.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::EXIT_REFUSED;

/// How often `logs --follow` looks for new lines and for a switch of the symlink.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_millis(200);
/// How much of a log file `logs` holds at once.
const LOG_CHUNK: usize = 64 * 1024;

/// `understudy logs running|testing|secondary [--follow]`: the files behind the role's symlink,
/// read directly (the CLI runs on the host that owns the base dir). A closed pipe (`| head`) ends
/// it quietly.
pub(super) async fn logs(link: &Path, follow: bool) -> u8 {
    match copy_logs(link, follow, &mut std::io::stdout()).await {
        Ok(code) => code,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!(
                "understudy: cannot write {}'s logs to stdout: {e}",
                link.display()
            );
            EXIT_REFUSED
        }
    }
}

/// Stream the role's files to `out`, never holding one whole; following, read each on from where
/// it was left, marking each switch of the symlink. An error only when writing to `out` failed.
async fn copy_logs(link: &Path, follow: bool, out: &mut impl Write) -> std::io::Result<u8> {
    let mut current: Option<PathBuf> = None;
    let mut read_to: std::collections::BTreeMap<PathBuf, ReadTo> = Default::default();
    loop {
        let target = std::fs::canonicalize(link).ok();
        if target != current {
            match (&current, &target) {
                (None, None) if !follow => {
                    eprintln!(
                        "understudy: {} does not exist: nothing plays that part now",
                        link.display()
                    );
                    return Ok(EXIT_REFUSED);
                }
                (_, Some(dir)) => {
                    if current.is_some() || follow {
                        writeln!(out, "==> {} is now {} <==", link.display(), dir.display())?;
                    }
                    read_to.clear();
                }
                (Some(_), None) => writeln!(out, "==> {} is gone <==", link.display())?,
                (None, None) => {}
            }
            current = target;
        }
        if let Some(dir) = &current {
            for file in log_files(dir) {
                let was = read_to.get(&file).copied();
                if let Some(now) = copy_new(&file, was, out)? {
                    read_to.insert(file, now);
                }
            }
        }
        out.flush()?;
        if !follow {
            return Ok(0);
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

/// How far `logs --follow` has read one file, and which file that was (device and inode): a log
/// rotated away and created anew under the same name is another file, read from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ReadTo {
    dev: u64,
    ino: u64,
    pub(super) offset: u64,
}

/// Copy what `file` holds past `was` to `out`, a chunk at a time; from its start when `was` is
/// `None`, names another file (rotated) or lies past its end (truncated). Where it now stands, or
/// `None` when the file cannot be opened now (not there yet, or gone); an error only when
/// writing to `out` failed.
pub(super) fn copy_new(
    file: &Path,
    was: Option<ReadTo>,
    out: &mut impl Write,
) -> std::io::Result<Option<ReadTo>> {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::MetadataExt;
    let Ok(mut f) = std::fs::File::open(file) else {
        return Ok(None);
    };
    let Ok(meta) = f.metadata() else {
        return Ok(None);
    };
    let mut to = ReadTo {
        dev: meta.dev(),
        ino: meta.ino(),
        offset: 0,
    };
    if let Some(w) = was.filter(|w| (w.dev, w.ino) == (to.dev, to.ino) && w.offset <= meta.len()) {
        if f.seek(SeekFrom::Start(w.offset)).is_err() {
            return Ok(was);
        }
        to.offset = w.offset;
    }
    let mut chunk = vec![0u8; LOG_CHUNK];
    loop {
        match f.read(&mut chunk) {
            Ok(0) => return Ok(Some(to)),
            Ok(n) => {
                out.write_all(&chunk[..n])?;
                to.offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A file that stops reading (a directory under logs/json, an I/O error) is left there.
            Err(_) => return Ok(Some(to)),
        }
    }
}

/// `stdout`, then every file under `logs/json/`, of an instance folder.
fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = vec![dir.join("stdout")];
    if let Ok(rd) = std::fs::read_dir(dir.join("logs/json")) {
        let mut json: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        json.sort();
        files.extend(json);
    }
    files
}
