//! Archive and garbage collection: a version folder nothing uses any more becomes
//! `archive/<identifier>-<version>.zip` (artifact, properties, every instance's logs) and the
//! folder goes; the oldest archives are deleted when the base dir passes its size budget or the
//! disk runs short. Blocking: run on `spawn_blocking`.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
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
    /// The folder is archived but what is left of it could not be deleted.
    #[error(
        "archived as {zip}, but cannot remove the archived folder, moved aside to {path}: \
         {source}; it is tried again later and at understudy's next start, or delete it by hand"
    )]
    Leftover {
        path: PathBuf,
        zip: PathBuf,
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
/// symlinks when they stay inside the folder (see [`zip_dir`]).
///
/// Once the archive is complete the folder leaves its name in one step (renamed aside in the
/// base dir, then deleted), so it is whole or gone: a rollback never finds it half deleted, and a
/// retry after a failed deletion finds no folder and only deletes what is left aside; it never
/// zips the leftovers over the complete archive.
pub fn archive_version(layout: &Layout, v: &Version) -> Result<PathBuf, ArchiveError> {
    let dir = layout.version_dir(v);
    let dest = layout.archive_zip(v);
    let aside = aside_path(layout, v);
    let whole = fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir());
    if whole || !dest.is_file() {
        // Leftovers of an earlier archiving of this version (restored since) go first.
        remove_aside(&aside, &dest)?;
        let adir = layout.archive_dir();
        fs::create_dir_all(&adir).map_err(io_err("cannot create", &adir))?;
        let tmp = dest.with_extension("zip.tmp");
        let written = zip_dir(&dir, &layout.version_name(v), &tmp).and_then(|()| {
            fs::rename(&tmp, &dest).map_err(io_err("cannot move archive into place at", &dest))
        });
        if let Err(e) = written {
            // A half-written zip is no archive; the folder stays, so nothing is lost.
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        fs::rename(&dir, &aside).map_err(io_err("cannot move the archived folder to", &aside))?;
    }
    remove_aside(&aside, &dest)?;
    Ok(dest)
}

/// Where version `v`'s folder is moved once its archive is complete, to be deleted:
/// `.<identifier>-<version>.archived` in the base dir.
fn aside_path(layout: &Layout, v: &Version) -> PathBuf {
    layout
        .base()
        .join(format!(".{}.archived", layout.version_name(v)))
}

/// Delete the version folders that were archived and moved aside but whose deletion failed
/// (`.<identifier>-<version>.archived`), logging each. Their retry is not kept across a restart,
/// and their archive is complete by construction (a folder is moved aside only after its zip is
/// in place), so nothing is lost; left, they would weigh on `MAX_BASE_SIZE` for good. Call at
/// start, while the base dir lock is held. Blocking. Returns what was removed.
pub fn remove_archived_leftovers(layout: &Layout) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(layout.base()) else {
        return Vec::new();
    };
    let prefix = format!(".{}-", layout.identifier());
    let mut removed = Vec::new();
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name();
        let version = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix)?.strip_suffix(".archived"))
            .and_then(|v| Version::parse(v).ok());
        let Some(v) = version else { continue };
        let path = aside_path(layout, &v);
        let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        if path != entry.path() || !is_dir {
            continue;
        }
        let zip = layout.archive_zip(&v);
        match remove_aside(&path, &zip) {
            Ok(()) => {
                tracing::info!(
                    "removed {}, the folder of {v} left over after it was archived as {}",
                    path.display(),
                    zip.display()
                );
                removed.push(path);
            }
            Err(e) => tracing::warn!("{e}"),
        }
    }
    removed
}

/// Delete an archived folder moved aside, if one is there.
fn remove_aside(aside: &Path, zip: &Path) -> Result<(), ArchiveError> {
    match fs::remove_dir_all(aside) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(ArchiveError::Leftover {
            path: aside.to_path_buf(),
            zip: zip.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Write every folder, regular file and symlink under `dir` into a zip at `out`, under the
/// folder name `root`. A symlink is stored as a symlink (a bundle's `app -> bin/server` must
/// still lead to its program when a rollback restores it) if it stays inside `dir` by the rule
/// bundles are unpacked by; one leading out is left out, with a warning.
pub fn zip_dir(dir: &Path, root: &str, out: &Path) -> Result<(), ArchiveError> {
    let file = fs::File::create(out).map_err(io_err("cannot create", out))?;
    let mut zip = zip::ZipWriter::new(io::BufWriter::new(file));
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
            let rel = path.strip_prefix(dir).unwrap_or(&path);
            if add_entry(&mut zip, &path, rel, &name, out)? {
                stack.push((path, name));
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

/// Add `path` (at `rel` inside the folder being zipped) to `zip` as `name`; whether it is a
/// folder to descend into.
fn add_entry(
    zip: &mut zip::ZipWriter<io::BufWriter<fs::File>>,
    path: &Path,
    rel: &Path,
    name: &str,
    out: &Path,
) -> Result<bool, ArchiveError> {
    let zip_err = |source| ArchiveError::Zip {
        path: out.to_path_buf(),
        source,
    };
    let opts = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    let meta = fs::symlink_metadata(path).map_err(io_err("cannot stat", path))?;
    if meta.is_dir() {
        zip.add_directory(name, opts).map_err(zip_err)?;
        return Ok(true);
    }
    if meta.is_symlink() {
        let target = fs::read_link(path).map_err(io_err("cannot read symlink", path))?;
        match target.to_str() {
            Some(t) if crate::artifact::link_stays_inside(rel, &target) => {
                zip.add_symlink(name, t, opts).map_err(zip_err)?;
            }
            _ => tracing::warn!(
                "not archiving the symlink {} -> {}: it leads out of its version folder",
                path.display(),
                target.display()
            ),
        }
    } else if meta.is_file() {
        // Keep the mode: an executable must still be one when a rollback restores it.
        let opts = opts.unix_permissions(meta.permissions().mode() & 0o777);
        zip.start_file(name, opts).map_err(zip_err)?;
        let mut f = fs::File::open(path).map_err(io_err("cannot open", path))?;
        io::copy(&mut f, zip).map_err(io_err("cannot write into zip", out))?;
    }
    Ok(false)
}

/// Move version `v`'s folder to `rejected/<identifier>-<version>/` with a `reason.json`, so a
/// broken build is quarantined with its logs and never retried unless dropped again. A retry
/// after the move succeeded (its `reason.json` failed) finds no folder: it finishes the job in
/// `rejected/` and keeps what the first attempt moved there.
pub fn reject_version(
    layout: &Layout,
    v: &Version,
    reasons: &[String],
) -> Result<PathBuf, ArchiveError> {
    let dir = layout.version_dir(v);
    let rdir = layout.rejected_dir();
    fs::create_dir_all(&rdir).map_err(io_err("cannot create", &rdir))?;
    let dest = rdir.join(layout.version_name(v));
    if dir.exists() {
        // An earlier rejection of the same version (dropped again since) gives way to this one.
        let _ = fs::remove_dir_all(&dest);
        fs::rename(&dir, &dest).map_err(io_err("cannot move the rejected version to", &dest))?;
    } else {
        fs::create_dir_all(&dest).map_err(io_err("cannot create", &dest))?;
    }
    write_reason(&dest, v, reasons)?;
    Ok(dest)
}

/// Move a dropped build that will not be started (not newer than what runs, or named too long)
/// to `rejected/<file>.refused/` with a `reason.json`, so the base dir shows it was seen. Where
/// that folder's name would be too long, it is the file's name cut short with a hash of it
/// ([`refused_name`]); the file inside keeps its name.
pub fn refuse_file(
    layout: &Layout,
    dropped: &Path,
    file_name: &str,
    v: &Version,
    reasons: &[String],
) -> Result<PathBuf, ArchiveError> {
    let dest = layout.rejected_dir().join(refused_name(file_name));
    let _ = fs::remove_dir_all(&dest);
    fs::create_dir_all(&dest).map_err(io_err("cannot create", &dest))?;
    let target = dest.join(file_name);
    crate::artifact::move_file(dropped, &target).map_err(|e| ArchiveError::Io {
        what: "cannot move the refused build to",
        path: target,
        source: io::Error::other(e.to_string()),
    })?;
    let sum_name = crate::artifact::checksum_name(file_name);
    let sum = dropped.with_file_name(&sum_name);
    if fs::symlink_metadata(&sum).is_ok_and(|m| m.is_file()) {
        let target = dest.join(&sum_name);
        crate::artifact::move_file(&sum, &target).map_err(|e| ArchiveError::Io {
            what: "cannot move the refused build's checksum to",
            path: target,
            source: io::Error::other(e.to_string()),
        })?;
    }
    write_reason(&dest, v, reasons)?;
    Ok(dest)
}

/// The name of the folder a refused build goes to: `<file>.refused`, or when that is longer than
/// a file name may be, the file's name cut short, a hash of the whole name and `.refused`, so two
/// long names sharing their start do not share a folder.
fn refused_name(file_name: &str) -> String {
    use sha2::Digest;
    const SUFFIX: &str = ".refused";
    let name = format!("{file_name}{SUFFIX}");
    if name.len() <= crate::artifact::NAME_MAX {
        return name;
    }
    let hash: String = sha2::Sha256::digest(file_name.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut keep = crate::artifact::NAME_MAX - SUFFIX.len() - hash.len() - 1;
    while !file_name.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}-{hash}{SUFFIX}", &file_name[..keep])
}

/// Remove temp files a crash left behind (a half-written archive, state file, `instance.json` or
/// symlink), logging each, so they neither fill the disk nor confuse a reader. Only names that
/// understudy's own writers use are touched: `archive/*.zip.tmp`, `<version>/<n>/instance.tmp-*`,
/// `.understudy/state.tmp-*`, `.running.tmp-*` and `.testing.tmp-*`. Call at start, before
/// anything is written, while the base dir lock is held. Blocking. Returns what was removed.
pub fn remove_stray_temps(layout: &Layout) -> Vec<PathBuf> {
    let files_in = |dir: &Path| -> Vec<(PathBuf, String)> {
        fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| Some((e.path(), e.file_name().to_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut stray = Vec::new();
    for (path, name) in files_in(&layout.archive_dir()) {
        if name.ends_with(".zip.tmp") {
            stray.push(path);
        }
    }
    for (path, name) in files_in(&layout.state_dir()) {
        if name.starts_with("state.tmp-") {
            stray.push(path);
        }
    }
    let prefix = format!("{}-", layout.identifier());
    for (path, name) in files_in(layout.base()) {
        if name.starts_with(".running.tmp-") || name.starts_with(".testing.tmp-") {
            stray.push(path);
            continue;
        }
        let is_version = name
            .strip_prefix(&prefix)
            .is_some_and(|v| Version::parse(v).is_ok());
        if !is_version || !fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        for (inst, n) in files_in(&path) {
            if n.parse::<u32>().is_err() || !inst.is_dir() {
                continue;
            }
            for (p, n) in files_in(&inst) {
                if n.starts_with("instance.tmp-") {
                    stray.push(p);
                }
            }
        }
    }
    stray.retain(|p| match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => false,
        Ok(_) => match fs::remove_file(p) {
            Ok(()) => {
                tracing::info!("removed {}, a temp file left by an earlier crash", p.display());
                true
            }
            Err(e) => {
                tracing::warn!(
                    "cannot remove {}, a temp file left by an earlier crash: {e}; delete it by hand",
                    p.display()
                );
                false
            }
        },
        Err(_) => false,
    });
    stray
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

/// One archive deleted by [`collect_garbage`], and why.
#[derive(Debug, Clone)]
pub struct Deleted {
    /// The file (usually a zip) removed from `archive/`.
    pub zip: PathBuf,
    /// Which budget it was removed for.
    pub reason: String,
}

/// Delete the oldest files in `archive/` (by modification time) while the base dir is over
/// `max_base_size` or free disk is under `min_free_disk`. Everything in `archive/` counts and may
/// go, whatever its name (a copy someone left there weighs as much as a zip); nothing outside it
/// is ever touched, so the running and testing versions (live folders) are safe by construction.
/// Stops when `archive/` is empty.
pub fn collect_garbage(
    layout: &Layout,
    max_base_size: u64,
    min_free_disk: u64,
) -> Result<Vec<Deleted>, ArchiveError> {
    let adir = layout.archive_dir();
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = match fs::read_dir(&adir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter_map(|p| {
                fs::symlink_metadata(&p)
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
    files.sort();
    let mut size = dir_size(layout.base());
    let mut deleted = Vec::new();
    for (_, path) in files {
        let free = crate::layout::free_disk(layout.base());
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
        let len = dir_size(&path);
        let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        if is_dir {
            fs::remove_dir_all(&path).map_err(io_err("cannot delete from archive", &path))?;
        } else {
            fs::remove_file(&path).map_err(io_err("cannot delete archive", &path))?;
        }
        size = size.saturating_sub(len);
        deleted.push(Deleted { zip: path, reason });
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

    #[test]
    fn a_failed_archive_leaves_no_temp_and_keeps_the_folder() {
        let base = std::env::temp_dir().join(format!("understudy-archfail-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let l = Layout::new(&base, "app");
        let v = Version::parse("1.0.0").unwrap();
        fs::create_dir_all(l.version_dir(&v)).unwrap();
        fs::write(l.version_dir(&v).join("app-1.0.0.jar"), b"jar").unwrap();
        // The archive's place is taken by a folder: the rename fails after the zip was written.
        fs::create_dir_all(l.archive_zip(&v).join("x")).unwrap();
        assert!(archive_version(&l, &v).is_err());
        assert!(!l.archive_zip(&v).with_extension("zip.tmp").exists());
        assert!(l.version_dir(&v).join("app-1.0.0.jar").is_file());
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_rejection_retried_after_its_move_keeps_the_quarantined_build() {
        let base = tempfile::tempdir().unwrap();
        let l = Layout::new(base.path(), "app");
        let v = Version::parse("1.1.0").unwrap();
        fs::create_dir_all(l.instance_dir(&v, 1).join("logs")).unwrap();
        fs::write(l.version_dir(&v).join("app-1.1.0.jar"), b"jar").unwrap();
        fs::write(l.instance_dir(&v, 1).join("logs/app.log"), b"boom").unwrap();
        // reason.json cannot be written (a folder holds its name): the move succeeds, the
        // rejection fails after it.
        fs::create_dir_all(l.version_dir(&v).join("reason.json/x")).unwrap();
        let reasons = vec!["testing exited".to_string()];
        assert!(reject_version(&l, &v, &reasons).is_err());
        let dest = l.rejected_dir().join("app-1.1.0");
        assert!(
            dest.join("app-1.1.0.jar").is_file(),
            "moved before the failure"
        );
        fs::remove_dir_all(dest.join("reason.json")).unwrap();
        // The retry finishes the job on what is there.
        assert_eq!(reject_version(&l, &v, &reasons).unwrap(), dest);
        assert_eq!(fs::read(dest.join("app-1.1.0.jar")).unwrap(), b"jar");
        assert_eq!(fs::read(dest.join("1/logs/app.log")).unwrap(), b"boom");
        let reason: serde_json::Value =
            serde_json::from_slice(&fs::read(dest.join("reason.json")).unwrap()).unwrap();
        assert_eq!(reason["reasons"][0], "testing exited");
    }

    /// A folder whose entries cannot be removed until dropped: read-only, and immutable for
    /// root (whom modes do not stop). Held open, so it is found again wherever it is moved.
    struct Stuck(fs::File);

    const FS_IMMUTABLE_FL: libc::c_int = 0x10;

    impl Stuck {
        /// `None` when this file system or user cannot make it so.
        fn new(dir: &Path) -> Option<Stuck> {
            let stuck = Stuck(fs::File::open(dir).unwrap());
            stuck.set(true);
            fs::write(dir.join("probe"), b"").is_err().then_some(stuck)
        }

        fn set(&self, on: bool) {
            use std::os::fd::AsRawFd;
            let mode = if on { 0o555 } else { 0o755 };
            let _ = self.0.set_permissions(fs::Permissions::from_mode(mode));
            let fd = self.0.as_raw_fd();
            let mut flags: libc::c_int = 0;
            // SAFETY: FS_IOC_[GS]ETFLAGS read or write one int through a valid pointer, on an
            // open descriptor.
            unsafe {
                if libc::ioctl(fd, libc::FS_IOC_GETFLAGS, &mut flags) != 0 {
                    return;
                }
                flags = if on {
                    flags | FS_IMMUTABLE_FL
                } else {
                    flags & !FS_IMMUTABLE_FL
                };
                libc::ioctl(fd, libc::FS_IOC_SETFLAGS, &flags);
            }
        }
    }

    impl Drop for Stuck {
        fn drop(&mut self) {
            self.set(false);
        }
    }

    fn zip_names(zip: &Path) -> Vec<String> {
        let a = zip::ZipArchive::new(fs::File::open(zip).unwrap()).unwrap();
        let mut names: Vec<String> = a.file_names().map(|n| n.unwrap().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn an_archive_retried_after_a_failed_removal_keeps_the_complete_archive() {
        let base = tempfile::tempdir().unwrap();
        let l = Layout::new(base.path(), "app");
        let v = Version::parse("1.0.0").unwrap();
        let vdir = l.version_dir(&v);
        for i in 1..=8 {
            fs::create_dir_all(vdir.join(format!("{i}/logs"))).unwrap();
            fs::write(vdir.join(format!("{i}/logs/app.log")), b"log").unwrap();
        }
        // The folder removed last cannot be emptied: every other one is gone when it fails.
        let last = fs::read_dir(&vdir).unwrap().last().unwrap().unwrap().path();
        let Some(stuck) = Stuck::new(&last.join("logs")) else {
            eprintln!("skipped: cannot make a folder that resists removal here");
            return;
        };
        let err = archive_version(&l, &v).unwrap_err();
        assert!(err.to_string().contains("remove"), "{err}");
        let complete = zip_names(&l.archive_zip(&v));
        assert_eq!(
            complete.iter().filter(|n| n.ends_with("app.log")).count(),
            8
        );
        // Still stuck: the retry fails again, and the archive stays whole.
        assert!(archive_version(&l, &v).is_err());
        assert_eq!(zip_names(&l.archive_zip(&v)), complete);
        assert!(
            !vdir.exists(),
            "no half-removed folder is left under the version's name for a rollback to find"
        );
        drop(stuck);
        assert_eq!(archive_version(&l, &v).unwrap(), l.archive_zip(&v));
        assert_eq!(zip_names(&l.archive_zip(&v)), complete);
        let left: Vec<_> = fs::read_dir(base.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("archive")],
            "nothing else is left"
        );
    }

    #[test]
    fn a_bundle_with_symlinks_comes_back_from_its_archive_and_starts() {
        use std::io::Write as _;
        let base = tempfile::tempdir().unwrap();
        let l = Layout::new(base.path(), "app");
        let v = Version::parse("1.0.0").unwrap();
        let mut z = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let exe = SimpleFileOptions::default().unix_permissions(0o755);
        z.start_file("bin/server", exe).unwrap();
        z.write_all(b"#!/bin/sh\necho server\n").unwrap();
        z.add_symlink("app", "bin/server", SimpleFileOptions::default())
            .unwrap();
        let dropped = base.path().join("app-1.0.0.zip");
        fs::write(&dropped, z.finish().unwrap().into_inner()).unwrap();
        let name = crate::artifact::parse_name("app-1.0.0.zip", "app").unwrap();
        let limits = crate::artifact::InstallLimits {
            max_unpacked: u64::MAX,
            min_free_disk: 0,
        };
        let installed = crate::artifact::install(&l, &dropped, &name, limits).unwrap();
        assert!(installed.program.ends_with("bundle/app"), "{installed:?}");
        // A link an instance left pointing out of the version folder is not kept.
        fs::create_dir_all(l.instance_dir(&v, 1)).unwrap();
        std::os::unix::fs::symlink("../../elsewhere", l.instance_dir(&v, 1).join("out")).unwrap();
        let zip = archive_version(&l, &v).unwrap();
        assert!(!l.version_dir(&v).exists());
        let names = zip_names(&zip);
        assert!(
            names.contains(&"app-1.0.0/bundle/app".to_string()),
            "{names:?}"
        );
        assert!(!names.contains(&"app-1.0.0/1/out".to_string()), "{names:?}");
        let restored = crate::artifact::restore(&l, &v, limits).unwrap();
        assert_eq!(restored.program, installed.program);
        let link = l.version_dir(&v).join("bundle/app");
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("bin/server"));
        let out = std::process::Command::new(&restored.program)
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"server\n", "{out:?}");
    }

    #[test]
    fn a_restored_link_may_not_lead_out_of_its_version_folder() {
        use std::io::Write as _;
        let base = tempfile::tempdir().unwrap();
        let l = Layout::new(base.path(), "app");
        let v = Version::parse("1.0.0").unwrap();
        // Inside the archive's top folder by its text, but that folder becomes the version
        // folder: `x -> ..` would be the base dir.
        let mut z = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let exe = SimpleFileOptions::default().unix_permissions(0o755);
        z.start_file("app-1.0.0/app", exe).unwrap();
        z.write_all(b"#!/bin/sh\n").unwrap();
        z.add_symlink("app-1.0.0/x", "..", SimpleFileOptions::default())
            .unwrap();
        fs::create_dir_all(l.archive_dir()).unwrap();
        fs::write(l.archive_zip(&v), z.finish().unwrap().into_inner()).unwrap();
        let limits = crate::artifact::InstallLimits {
            max_unpacked: u64::MAX,
            min_free_disk: 0,
        };
        let err = crate::artifact::restore(&l, &v, limits).unwrap_err();
        assert!(err.to_string().contains("\"app-1.0.0/x\""), "{err}");
        assert!(!l.version_dir(&v).exists(), "nothing is restored");
    }

    #[test]
    fn folders_left_aside_after_archiving_go_at_start_and_nothing_else() {
        let base = tempfile::tempdir().unwrap();
        let l = Layout::new(base.path(), "app");
        let v = Version::parse("1.0.0").unwrap();
        let vdir = l.version_dir(&v);
        fs::create_dir_all(vdir.join("1/logs")).unwrap();
        fs::write(vdir.join("1/logs/app.log"), b"log").unwrap();
        // Archived, but the folder moved aside could not be deleted (what is left of it is made
        // here by hand), and the retry was lost with a restart.
        archive_version(&l, &v).unwrap();
        let aside = base.path().join(".app-1.0.0.archived");
        assert_eq!(aside, aside_path(&l, &v));
        fs::create_dir_all(aside.join("1/logs")).unwrap();
        fs::write(aside.join("1/logs/app.log"), b"log").unwrap();
        let keep = [".other-1.0.0.archived", ".app-latest.archived", "app-2.0.0"];
        for k in keep {
            fs::create_dir_all(base.path().join(k)).unwrap();
        }
        fs::write(base.path().join(".app-3.0.0.archived"), b"a file").unwrap();
        assert_eq!(remove_archived_leftovers(&l), vec![aside.clone()]);
        assert!(!aside.exists());
        assert!(keep.iter().all(|k| base.path().join(k).is_dir()));
        assert!(base.path().join(".app-3.0.0.archived").is_file());
        assert!(l.archive_zip(&v).is_file(), "the archive stays");
    }

    #[test]
    fn a_build_named_too_long_is_refused_into_a_shortened_folder() {
        let base = tempfile::tempdir().unwrap();
        let l = Layout::new(base.path(), "app");
        // Two 250-byte names that share their first 245 bytes.
        let head = format!("app-1.0.0-{}", "a".repeat(235));
        let names = [format!("{head}a.jar"), format!("{head}b.jar")];
        let mut folders = Vec::new();
        for name in &names {
            assert_eq!(name.len(), 250);
            let why = crate::artifact::name_refusal(name).unwrap();
            let dropped = base.path().join(name);
            fs::write(&dropped, b"jar").unwrap();
            let v = crate::artifact::parse_name(name, "app").unwrap().version;
            let dest = refuse_file(&l, &dropped, name, &v, &[why]).unwrap();
            let folder = dest.file_name().unwrap().to_str().unwrap().to_string();
            assert!(
                folder.len() <= 255 && folder.ends_with(".refused"),
                "{folder}"
            );
            assert!(!dropped.exists(), "the build left the base dir");
            assert!(dest.join(name).is_file() && dest.join("reason.json").is_file());
            let reason = fs::read_to_string(dest.join("reason.json")).unwrap();
            assert!(reason.contains("250 bytes"), "{reason}");
            folders.push(folder);
        }
        assert_ne!(folders[0], folders[1]);
        // A name that fits keeps the plain folder name.
        assert_eq!(refused_name("app-1.0.0.jar"), "app-1.0.0.jar.refused");
    }

    #[test]
    fn a_build_named_as_long_as_understudy_handles_goes_all_the_way() {
        use crate::artifact::{name_refusal, parse_name, MAX_BUILD_NAME};
        let base = tempfile::tempdir().unwrap();
        let l = Layout::new(base.path(), "app");
        // An executable: its version folder, and so its archive, have its whole name.
        let name = format!("app-1.0.0-{}", "a".repeat(MAX_BUILD_NAME - 10));
        assert_eq!(name.len(), MAX_BUILD_NAME);
        assert!(name_refusal(&name).is_none());
        let parsed = parse_name(&name, "app").unwrap();
        let v = parsed.version.clone();
        let limits = crate::artifact::InstallLimits {
            max_unpacked: u64::MAX,
            min_free_disk: 0,
        };
        let dropped = base.path().join(&name);
        fs::write(&dropped, b"#!/bin/sh\necho hi\n").unwrap();
        let installed = crate::artifact::install(&l, &dropped, &parsed, limits).unwrap();
        crate::store::seal(&l, &installed).unwrap();
        fs::remove_file(&installed.program).unwrap();
        let repaired = crate::store::ensure(&l, &installed, limits).unwrap();
        assert!(repaired.is_some() && installed.program.is_file());
        archive_version(&l, &v).unwrap();
        assert_eq!(crate::artifact::restore(&l, &v, limits).unwrap(), installed);
        // An older build of a name as long is refused under its own name.
        let older = name.replacen("1.0.0", "0.9.0", 1);
        let dropped = base.path().join(&older);
        fs::write(&dropped, b"#!/bin/sh\n").unwrap();
        let dest = refuse_file(&l, &dropped, &older, &v, &["older".to_string()]).unwrap();
        assert!(
            dest.ends_with(format!("{older}.refused")),
            "{}",
            dest.display()
        );
    }

    #[test]
    fn stray_temps_go_and_nothing_else() {
        let base = std::env::temp_dir().join(format!("understudy-stray-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let l = Layout::new(&base, "app");
        let stray = [
            "archive/app-1.0.0.zip.tmp",
            "app-1.0.0/3/instance.tmp-1",
            ".understudy/state.tmp-1",
            ".running.tmp-1",
            ".testing.tmp-1",
        ];
        let keep = [
            "archive/app-0.1.0.zip",
            "app-1.0.0/3/instance.json",
            ".understudy/state.json",
            "other/instance.tmp-1",
            "app-1.0.0.tmp",
        ];
        for p in stray.iter().chain(&keep) {
            let p = base.join(p);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, b"x").unwrap();
        }
        let mut removed = remove_stray_temps(&l);
        removed.sort();
        let mut want: Vec<PathBuf> = stray.iter().map(|p| base.join(p)).collect();
        want.sort();
        assert_eq!(removed, want);
        assert!(keep.iter().all(|p| base.join(p).is_file()));
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn collection_counts_and_deletes_any_file_in_the_archive() {
        let base = std::env::temp_dir().join(format!("understudy-gc-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let l = Layout::new(&base, "app");
        fs::create_dir_all(l.archive_dir()).unwrap();
        fs::write(l.archive_dir().join("copy.bin"), vec![0u8; 4096]).unwrap();
        let deleted = collect_garbage(&l, 1024, 0).unwrap();
        assert_eq!(deleted.len(), 1);
        assert!(deleted[0].reason.contains("MAX_BASE_SIZE"));
        assert!(!l.archive_dir().join("copy.bin").exists());
        fs::remove_dir_all(&base).unwrap();
    }
}
