//! Archive and garbage collection: a version folder nothing uses any more becomes
//! `archive/<identifier>-<version>.zip` (artifact, properties, every instance's logs) and the
//! folder goes; the oldest archives are deleted when the base dir passes its size budget or the
//! disk runs short. Blocking: run on `spawn_blocking`.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use semver::Version;
use zip::write::SimpleFileOptions;

use crate::layout::Layout;

/// Why archiving or collecting failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A file step failed.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// Writing the zip failed.
    #[error("cannot write zip {path}: {source}")]
    Zip {
        path: PathBuf,
        source: zip::result::ZipError,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ArchiveError + 'a {
    move |source| ArchiveError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Zip version `v`'s folder into the archive and delete the folder. Symlinks are stored as
/// the files they point to only when those live inside the folder (they are already in the zip).
pub fn archive_version(layout: &Layout, v: &Version) -> Result<PathBuf, ArchiveError> {
    let dir = layout.version_dir(v);
    let adir = layout.archive_dir();
    fs::create_dir_all(&adir).map_err(io_err("cannot create", &adir))?;
    let dest = layout.archive_zip(v);
    let tmp = dest.with_extension("zip.tmp");
    zip_dir(&dir, &layout.version_name(v), &tmp)?;
    fs::rename(&tmp, &dest).map_err(io_err("cannot move archive into place at", &dest))?;
    fs::remove_dir_all(&dir).map_err(io_err("cannot remove archived folder", &dir))?;
    Ok(dest)
}

/// Write every regular file under `dir` into a zip at `out`, under the folder name `root`.
pub fn zip_dir(dir: &Path, root: &str, out: &Path) -> Result<(), ArchiveError> {
    let file = fs::File::create(out).map_err(io_err("cannot create", out))?;
    let mut zip = zip::ZipWriter::new(io::BufWriter::new(file));
    let opts = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    let mut stack = vec![(dir.to_path_buf(), root.to_string())];
    while let Some((d, prefix)) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(&d)
            .map_err(io_err("cannot read", &d))?
            .filter_map(|e| e.ok())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let name = format!("{prefix}/{}", e.file_name().to_string_lossy());
            let meta = fs::symlink_metadata(&path).map_err(io_err("cannot stat", &path))?;
            if meta.is_dir() {
                zip.add_directory(&name, opts)
                    .map_err(|source| ArchiveError::Zip {
                        path: out.to_path_buf(),
                        source,
                    })?;
                stack.push((path, name));
            } else if meta.is_file() {
                zip.start_file(&name, opts)
                    .map_err(|source| ArchiveError::Zip {
                        path: out.to_path_buf(),
                        source,
                    })?;
                let mut f = fs::File::open(&path).map_err(io_err("cannot open", &path))?;
                io::copy(&mut f, &mut zip).map_err(io_err("cannot write into zip", out))?;
            }
        }
    }
    let mut w = zip.finish().map_err(|source| ArchiveError::Zip {
        path: out.to_path_buf(),
        source,
    })?;
    w.flush().map_err(io_err("cannot write", out))?;
    Ok(())
}

/// Move version `v`'s folder to `rejected/<identifier>-<version>/` with a `reason.json`, so a
/// broken build is quarantined with its logs and never retried unless dropped again.
pub fn reject_version(
    layout: &Layout,
    v: &Version,
    reasons: &[String],
) -> Result<PathBuf, ArchiveError> {
    let dir = layout.version_dir(v);
    let rdir = layout.rejected_dir();
    fs::create_dir_all(&rdir).map_err(io_err("cannot create", &rdir))?;
    let dest = rdir.join(layout.version_name(v));
    let _ = fs::remove_dir_all(&dest);
    if dir.exists() {
        fs::rename(&dir, &dest).map_err(io_err("cannot move the rejected version to", &dest))?;
    } else {
        fs::create_dir_all(&dest).map_err(io_err("cannot create", &dest))?;
    }
    write_reason(&dest, v, reasons)?;
    Ok(dest)
}

/// Move a dropped build that will not be started (not newer than what runs) to
/// `rejected/<file>.refused/` with a `reason.json`, so the base dir shows it was seen.
pub fn refuse_file(
    layout: &Layout,
    dropped: &Path,
    file_name: &str,
    v: &Version,
    reasons: &[String],
) -> Result<PathBuf, ArchiveError> {
    let dest = layout.rejected_dir().join(format!("{file_name}.refused"));
    let _ = fs::remove_dir_all(&dest);
    fs::create_dir_all(&dest).map_err(io_err("cannot create", &dest))?;
    let target = dest.join(file_name);
    crate::artifact::move_file(dropped, &target).map_err(|e| ArchiveError::Io {
        what: "cannot move the refused build to",
        path: target,
        source: io::Error::other(e.to_string()),
    })?;
    write_reason(&dest, v, reasons)?;
    Ok(dest)
}

fn write_reason(dir: &Path, v: &Version, reasons: &[String]) -> Result<(), ArchiveError> {
    let body = serde_json::json!({
        "version": v.to_string(),
        "reasons": reasons,
        "rejected_unix_ms": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
    });
    let path = dir.join("reason.json");
    crate::layout::write_atomic(&path, &serde_json::to_vec_pretty(&body).unwrap_or_default())
        .map_err(io_err("cannot write", &path))
}

/// Total size of regular files under `p`, not following symlinks.
pub fn dir_size(p: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(p) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    if !meta.is_dir() {
        return 0;
    }
    fs::read_dir(p)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}

/// Free bytes for unprivileged users on the filesystem holding `p`; `None` when it cannot be
/// asked (the disk budget is then skipped rather than guessed).
pub fn free_disk(p: &Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(p).ok()?;
    let available: u64 = st.blocks_available();
    let block: u64 = st.fragment_size();
    Some(available.saturating_mul(block))
}

/// One archive deleted by [`collect_garbage`], and why.
#[derive(Debug, Clone)]
pub struct Deleted {
    /// The zip removed.
    pub zip: PathBuf,
    /// Which budget it was removed for.
    pub reason: String,
}

/// Delete the oldest archives (by modification time) while the base dir is over `max_base_size`
/// or free disk is under `min_free_disk`. Only `archive/*.zip` is ever touched, so the running and
/// testing versions (live folders) are safe by construction. Stops when no archive is left.
pub fn collect_garbage(
    layout: &Layout,
    max_base_size: u64,
    min_free_disk: u64,
) -> Result<Vec<Deleted>, ArchiveError> {
    let adir = layout.archive_dir();
    let mut zips: Vec<(std::time::SystemTime, PathBuf)> = match fs::read_dir(&adir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "zip"))
            .filter_map(|p| {
                fs::metadata(&p)
                    .and_then(|m| m.modified())
                    .ok()
                    .map(|t| (t, p))
            })
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ArchiveError::Io {
                what: "cannot read",
                path: adir,
                source,
            })
        }
    };
    zips.sort();
    let mut size = dir_size(layout.base());
    let mut deleted = Vec::new();
    for (_, zip) in zips {
        let free = free_disk(layout.base());
        let reason = if size > max_base_size {
            format!("base dir is {size} bytes, over MAX_BASE_SIZE {max_base_size}")
        } else if free.is_some_and(|f| f < min_free_disk) {
            format!(
                "free disk {} bytes is under MIN_FREE_DISK {min_free_disk}",
                free.unwrap_or(0)
            )
        } else {
            break;
        };
        let len = fs::metadata(&zip).map(|m| m.len()).unwrap_or(0);
        fs::remove_file(&zip).map_err(io_err("cannot delete archive", &zip))?;
        size = size.saturating_sub(len);
        deleted.push(Deleted { zip, reason });
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_holds_logs_and_folder_goes() {
        let base = std::env::temp_dir().join(format!("understudy-archive-{}", std::process::id()));
        let l = Layout::new(&base, "app");
        let v = Version::parse("1.0.0").unwrap();
        fs::create_dir_all(l.instance_dir(&v, 1).join("logs/json")).unwrap();
        fs::write(l.version_dir(&v).join("app-1.0.0.jar"), b"jar").unwrap();
        fs::write(
            l.instance_dir(&v, 1).join("logs/json/app.log"),
            b"{\"level\":\"info\"}\n",
        )
        .unwrap();
        let zip = archive_version(&l, &v).unwrap();
        assert!(!l.version_dir(&v).exists());
        let mut a = zip::ZipArchive::new(fs::File::open(&zip).unwrap()).unwrap();
        let names: Vec<String> = a.file_names().map(|n| n.unwrap().into_owned()).collect();
        assert!(
            names.contains(&"app-1.0.0/1/logs/json/app.log".to_string()),
            "{names:?}"
        );
        let mut s = String::new();
        io::Read::read_to_string(&mut a.by_name("app-1.0.0/app-1.0.0.jar").unwrap(), &mut s)
            .unwrap();
        assert_eq!(s, "jar");
        fs::remove_dir_all(&base).unwrap();
    }
}
