//! Bounding what an instance writes to its `stdout` and `stderr` files. The child writes them
//! itself, through descriptors it inherited (opened `O_APPEND`), so renaming a file would not
//! shrink anything: the child would go on writing into the renamed one. Instead, at each
//! collection, a file past [`log_cap`] has its last `log_cap` bytes copied to `<file>.1` (the
//! one older copy kept, replacing the last) and is truncated in place; the child's next write,
//! appending, lands at its new start. A line written during the copy itself may be lost. Only an
//! instance whose `instance.json` says its files append (`"stdio": "append"`) is rotated: a child
//! started by an older understudy and kept across an upgrade writes at its own offset, and
//! truncating its file would only leave a hole up to there.

use std::fs;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use semver::Version;

use crate::layout::Layout;

/// The least an instance's `stdout` or `stderr` may hold before it is rotated.
const LOG_CAP_MIN: u64 = 1 << 20;
/// The most.
const LOG_CAP_MAX: u64 = 1 << 30;
/// How far into the kept tail a rotation looks for the end of the line it cut.
const LINE_SEARCH: u64 = 64 * 1024;

/// How large an instance's `stdout` or `stderr` may grow before it is rotated: 1/32 of
/// `MAX_BASE_SIZE`, within 1 MiB and 1 GiB, so a few instances' logs fit the budget.
pub fn log_cap(max_base_size: u64) -> u64 {
    (max_base_size / 32).clamp(LOG_CAP_MIN, LOG_CAP_MAX)
}

/// Rotate every `stdout` and `stderr` of every instance folder (`<identifier>-<version>/<n>/`)
/// that is past `cap`, logging each rotation and each failure. Blocking. Returns what was rotated.
pub fn rotate_instance_logs(layout: &Layout, cap: u64) -> Vec<PathBuf> {
    let dirs = |p: &Path| -> Vec<(PathBuf, String)> {
        fs::read_dir(p)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .filter_map(|e| Some((e.path(), e.file_name().to_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    };
    let prefix = format!("{}-", layout.identifier());
    let mut rotated = Vec::new();
    for (vdir, name) in dirs(layout.base()) {
        let is_version = name
            .strip_prefix(&prefix)
            .is_some_and(|v| Version::parse(v).is_ok());
        if !is_version {
            continue;
        }
        for (idir, n) in dirs(&vdir) {
            if crate::layout::instance_number(&n).is_none() || !appends(&idir) {
                continue;
            }
            for file in [idir.join("stdout"), idir.join("stderr")] {
                let len = match fs::symlink_metadata(&file) {
                    Ok(m) if m.is_file() => m.len(),
                    _ => continue,
                };
                if len <= cap {
                    continue;
                }
                match rotate(&file, cap) {
                    Ok(kept) => {
                        tracing::info!(
                            "{} passed {cap} bytes ({len}): its last {kept} bytes are in {}.1, \
                             and it starts afresh",
                            file.display(),
                            file.display()
                        );
                        rotated.push(file);
                    }
                    Err(e) => tracing::warn!(
                        "cannot rotate {} ({len} bytes, over {cap}): {e}; it keeps growing until \
                         it can be",
                        file.display()
                    ),
                }
            }
        }
    }
    rotated
}

/// Whether the instance in `dir` was given stdout and stderr files to append to.
fn appends(dir: &Path) -> bool {
    fs::read(dir.join("instance.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v["stdio"] == "append")
}

/// Copy the last `cap` bytes of `path` (from the first line start in them) to `<path>.1`, then
/// truncate `path`. Returns how many bytes were kept.
pub(super) fn rotate(path: &Path, cap: u64) -> io::Result<u64> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let kept = path.with_file_name(format!("{name}.1"));
    let tmp = path.with_file_name(format!("{name}.1.tmp"));
    let copied = copy_tail(path, &tmp, cap).and_then(|(n, at)| {
        // What the child wrote during the copy and its sync joins the copy just before the
        // file is emptied: a line is lost only if written between that read and the truncation.
        let mut out = fs::OpenOptions::new().append(true).open(&tmp)?;
        let mut file = fs::OpenOptions::new().read(true).write(true).open(path)?;
        file.seek(SeekFrom::Start(at))?;
        let late = io::copy(&mut (&mut file).take(cap), &mut out)?;
        Ok((n + late, file, out))
    });
    let (n, file, out) = match copied {
        Ok(c) => c,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    // The child appends: from here on, it writes from the start. The copy is kept whatever
    // follows (as `.1.tmp` if it cannot take its name).
    file.set_len(0)?;
    out.sync_data()?;
    fs::rename(&tmp, &kept)?;
    Ok(n)
}

/// Write the last `cap` bytes of `path` to `to`, starting after the first line end in them when
/// one is near (so the copy starts with a whole line), with what is appended meanwhile up to
/// another `cap`. Returns the bytes written and the offset in `path` read up to.
fn copy_tail(path: &Path, to: &Path, cap: u64) -> io::Result<(u64, u64)> {
    let mut src = fs::File::open(path)?;
    let len = src.metadata()?.len();
    let start = len.saturating_sub(cap);
    src.seek(SeekFrom::Start(start))?;
    let mut src = BufReader::new(src);
    let mut out = BufWriter::new(fs::File::create(to)?);
    let (mut written, mut read) = (0u64, 0u64);
    if start > 0 {
        let mut cut = Vec::new();
        (&mut src).take(LINE_SEARCH).read_until(b'\n', &mut cut)?;
        read += cut.len() as u64;
        if cut.last() != Some(&b'\n') {
            // No line end near: keep what was read.
            out.write_all(&cut)?;
            written += cut.len() as u64;
        }
    }
    let copied = io::copy(&mut (&mut src).take(cap.saturating_mul(2)), &mut out)?;
    out.into_inner().map_err(|e| e.into_error())?.sync_data()?;
    Ok((written + copied, start + read + copied))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn the_cap_is_a_thirty_second_of_the_budget_within_bounds() {
        assert_eq!(log_cap(10 << 30), 320 << 20);
        assert_eq!(log_cap(0), 1 << 20);
        assert_eq!(log_cap(1 << 40), 1 << 30);
    }

    #[test]
    fn a_long_log_keeps_its_last_whole_lines_and_its_appending_writer_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path(), "app");
        let idir = dir.path().join("app-1.0.0/1");
        fs::create_dir_all(&idir).unwrap();
        let out = idir.join("stdout");
        // The child's descriptor, as `spawn` opens it.
        let mut child = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&out)
            .unwrap();
        for i in 0..1000 {
            writeln!(child, "line {i:04} {}", "x".repeat(90)).unwrap();
        }
        fs::write(idir.join("stderr"), "short\n").unwrap();
        fs::write(idir.join("instance.json"), r#"{"stdio": "append"}"#).unwrap();
        // Started by an older understudy: its child writes at its own offset, left alone.
        let older = dir.path().join("app-1.0.0/2");
        fs::create_dir_all(&older).unwrap();
        fs::write(older.join("instance.json"), r#"{"pid": 7}"#).unwrap();
        fs::write(older.join("stdout"), vec![b'z'; 100_000]).unwrap();
        // Not an instance folder: never touched.
        let other = dir.path().join("app-1.0.0/logs");
        fs::create_dir_all(&other).unwrap();
        fs::write(other.join("stdout"), vec![b'y'; 100_000]).unwrap();

        let rotated = rotate_instance_logs(&l, 50_000);
        assert_eq!(rotated, std::slice::from_ref(&out));
        let kept = fs::read_to_string(idir.join("stdout.1")).unwrap();
        assert!(
            kept.len() <= 50_000 && kept.len() > 49_000,
            "{}",
            kept.len()
        );
        assert!(kept.starts_with("line "), "starts with a whole line");
        assert!(kept.ends_with(&format!("line 0999 {}\n", "x".repeat(90))));
        assert_eq!(fs::metadata(&out).unwrap().len(), 0);
        writeln!(child, "after").unwrap();
        assert_eq!(
            fs::read(&out).unwrap(),
            b"after\n",
            "the child writes at the new start, leaving no hole"
        );
        assert_eq!(fs::read_to_string(idir.join("stderr")).unwrap(), "short\n");
        assert_eq!(fs::metadata(other.join("stdout")).unwrap().len(), 100_000);
        assert_eq!(fs::metadata(older.join("stdout")).unwrap().len(), 100_000);
        assert!(!idir.join("stdout.1.tmp").exists());
    }
}
