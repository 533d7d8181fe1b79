//! `understudy logs`: the files behind a role's symlink, streamed, and followed through
//! truncation, rotation and a switch of the symlink: every file the scorer reads, `stdout` and
//! `logs/json/` as they are, `stderr` and the other files of `logs/` each line marked with its
//! file (a traceback on stderr is where a failing build says why).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{EXIT_REFUSED, EXIT_UNREACHABLE};

/// How often `logs --follow` looks for new lines and for a switch of the symlink.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_millis(200);
/// How much of a log file `logs` holds at once.
const LOG_CHUNK: usize = 64 * 1024;

/// `understudy logs running|testing|secondary [--follow]`: the files behind the role's symlink
/// under `base`, read directly (the CLI runs on the host that owns the base dir). A base dir that
/// cannot be read is exit 2 (nothing to reach), no instance in the role exit 1 (unless
/// following: it waits for one); a closed pipe (`| head`) ends it quietly.
pub(super) async fn logs(base: &Path, role: &str, follow: bool) -> u8 {
    match std::fs::metadata(base) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return no_base(base, "it is not a directory"),
        Err(e) => return no_base(base, &e.to_string()),
    }
    let link = base.join(role);
    if !follow && std::fs::canonicalize(&link).is_err() {
        eprintln!(
            "understudy: there is no {role} instance: {} does not exist, nothing plays that \
             part now (`understudy status` shows what runs; --follow waits for one)",
            link.display()
        );
        return EXIT_REFUSED;
    }
    // Buffered: stdout alone flushes at every line, a system call per line of a large log.
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout());
    match copy_logs(&link, follow, &mut out).await {
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

/// The base dir `logs` was given cannot be read (`why`): exit 2, naming it.
fn no_base(base: &Path, why: &str) -> u8 {
    eprintln!(
        "understudy: cannot read the base dir {}: {why}; pass the directory understudy \
         supervises with --base",
        base.display()
    );
    EXIT_UNREACHABLE
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
            for (file, mark) in log_files(dir) {
                let was = read_to.get(&file).copied();
                let now = match mark {
                    None => copy_new(&file, was, out)?,
                    Some(mark) => copy_marked(&file, was, &mark, !follow, out)?,
                };
                if let Some(now) = now {
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
    use std::io::Read;
    let Some((mut f, mut to)) = open_at(file, was) else {
        return Ok(None);
    };
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

/// `file` opened where `was` left it: from its start when `was` is `None`, names another file
/// (rotated) or lies past its end (truncated); `None` when it cannot be opened or positioned.
fn open_at(file: &Path, was: Option<ReadTo>) -> Option<(std::fs::File, ReadTo)> {
    use std::io::{Seek, SeekFrom};
    use std::os::unix::fs::MetadataExt;
    let mut f = std::fs::File::open(file).ok()?;
    let meta = f.metadata().ok()?;
    let mut to = ReadTo {
        dev: meta.dev(),
        ino: meta.ino(),
        offset: 0,
    };
    if let Some(w) = was.filter(|w| (w.dev, w.ino) == (to.dev, to.ino) && w.offset <= meta.len()) {
        f.seek(SeekFrom::Start(w.offset)).ok()?;
        to.offset = w.offset;
    }
    Some((f, to))
}

/// [`copy_new`] with each line written after `mark` (`[stderr] `), whole lines only, so lines of
/// other files never land inside one: a line not ended yet is left for the next read, unless
/// `last` (nothing will be read after) or it fills a whole chunk.
pub(super) fn copy_marked(
    file: &Path,
    was: Option<ReadTo>,
    mark: &str,
    last: bool,
    out: &mut impl Write,
) -> std::io::Result<Option<ReadTo>> {
    use std::io::Read;
    let Some((mut f, mut to)) = open_at(file, was) else {
        return Ok(None);
    };
    let mut chunk = vec![0u8; LOG_CHUNK];
    let mut line: Vec<u8> = Vec::new();
    loop {
        let n = match f.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        line.extend_from_slice(&chunk[..n]);
        // Whole lines are written from an index and dropped once per read (draining each line
        // moved the rest of the chunk: 64 MiB of stderr took 1.9 s).
        let mut start = 0;
        while let Some(end) = line[start..].iter().position(|&b| b == b'\n') {
            let end = start + end;
            out.write_all(mark.as_bytes())?;
            out.write_all(&line[start..=end])?;
            start = end + 1;
        }
        to.offset += start as u64;
        line.drain(..start);
        if line.len() >= LOG_CHUNK {
            write_unended(mark, &mut line, &mut to, out)?;
        }
    }
    if last && !line.is_empty() {
        write_unended(mark, &mut line, &mut to, out)?;
    }
    Ok(Some(to))
}

/// Write a line not ended (yet) after `mark`, ended, and count its bytes as read.
fn write_unended(
    mark: &str,
    line: &mut Vec<u8>,
    to: &mut ReadTo,
    out: &mut impl Write,
) -> std::io::Result<()> {
    out.write_all(mark.as_bytes())?;
    out.write_all(line)?;
    out.write_all(b"\n")?;
    to.offset += line.len() as u64;
    line.clear();
    Ok(())
}

/// Every file of an instance folder the scorer reads, each with the mark its lines get: `stdout`
/// and the files under `logs/json/` as they are (no mark: JSON lines stay JSON), then `stderr`
/// and the files directly under `logs/`, marked `[stderr] `, `[logs/app.log] `.
fn log_files(dir: &Path) -> Vec<(PathBuf, Option<String>)> {
    let files_in = |sub: &str| -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(sub))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        files
    };
    let mut files = vec![(dir.join("stdout"), None)];
    files.extend(files_in("logs/json").into_iter().map(|f| (f, None)));
    files.push((dir.join("stderr"), Some("[stderr] ".to_string())));
    for f in files_in("logs") {
        let name = f.file_name().unwrap_or_default().to_string_lossy();
        let mark = format!("[logs/{name}] ");
        files.push((f, Some(mark)));
    }
    files
}
