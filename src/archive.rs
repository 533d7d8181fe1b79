//! Archive and garbage collection: a version folder nothing uses any more becomes
//! `archive/<identifier>-<version>.zip` (artifact, properties, every instance's logs) and the
//! folder goes; a broken build goes to `rejected/`. The collection ([`collect_garbage`]) keeps
//! the base dir within its budget: instance logs rotated, old rejected builds and archives deleted
//! as far as that helps. Blocking: run on `spawn_blocking`.

mod collect;
mod instances;
mod rotate;
mod served;
mod stray;

pub use collect::{
    collect_garbage, plan, Collection, Deleted, Item, Limits, Plan, Why, KEEP_REJECTED,
};
pub use rotate::{log_cap, rotate_instance_logs};
pub use stray::remove_stray_temps;

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
    /// The version folder was replaced by a symlink: what it leads to is not understudy's to zip
    /// or delete.
    #[error(
        "{path} is a symlink to {target}, not the version folder understudy made: it is not \
         archived, and nothing it leads to is read or deleted; put the version's folder back in \
         its place or remove the link"
    )]
    Symlink { path: PathBuf, target: PathBuf },
    /// Writing the zip failed.
    #[error("cannot write zip {path}: {source}")]
    Zip {
        path: PathBuf,
        source: zip::result::ZipError,
    },
}

/// A turn at the base dir's retired versions: a collection pass, or the archiving or rejection of
/// a version folder. Taken for the whole of each, so a collection never rotates the logs of an
/// instance whose folder is being zipped and removed, nor measures it half gone.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// See [`one_at_a_time`].
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Rotate the instances' `stdout` and `stderr` past their bound now, unless a collection (which
/// rotates them too) or a filing is under way. Blocking; called every heartbeat, as a chatty app
/// writes far past its bound in the minute between collections. Returns what was rotated.
pub fn rotate_if_free(layout: &Layout, max_base_size: u64) -> Vec<std::path::PathBuf> {
    let _turn = match ONE_AT_A_TIME.try_lock() {
        Ok(turn) => turn,
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return Vec::new(),
    };
    rotate::rotate_instance_logs(layout, rotate::log_cap(max_base_size))
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ArchiveError + 'a {
    move |source| ArchiveError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Zip version `v`'s folder into the archive and delete the folder. Symlinks are stored as
/// symlinks when they stay inside the folder (see [`zip_dir`]). A build of a version that served
/// here, which itself never served, is archived apart ([`Layout::unserved_zip`]), so it never
/// replaces the archive a rollback to that version brings back.
///
/// No collection runs meanwhile ([`collect_garbage`] waits its turn), so none rotates the logs
/// being zipped. The zip is synced before it takes its name and `archive/` after, so the folder is deleted only
/// once its archive would outlast a power cut.
///
/// Once the archive is complete the folder leaves its name in one step (renamed aside in the
/// base dir, then deleted), so it is whole or gone: a rollback never finds it half deleted, and a
/// retry after a failed deletion finds no folder and only deletes what is left aside; it never
/// zips the leftovers over the complete archive.
pub fn archive_version(layout: &Layout, v: &Version) -> Result<PathBuf, ArchiveError> {
    let _turn = one_at_a_time();
    let dir = layout.version_dir(v);
    refuse_symlink(&dir)?;
    let whole = fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir());
    let dest = if whole {
        served::archive_for(layout, v, &dir)
    } else {
        // A retry after the folder was moved aside: its archive is complete, under either name.
        let apart = layout.unserved_zip(v);
        match apart.is_file() && !layout.archive_zip(v).is_file() {
            true => apart,
            false => layout.archive_zip(v),
        }
    };
    let aside = aside_path(layout, v);
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
        // The zip's name must outlast a power cut before the folder goes.
        sync_dir(&adir)?;
        fs::rename(&dir, &aside).map_err(io_err("cannot move the archived folder to", &aside))?;
    }
    remove_aside(&aside, &dest)?;
    Ok(dest)
}

/// Make the names in folder `dir` durable (a rename into it survives a power cut). A file system
/// that cannot sync a folder (`EINVAL`) is taken as it is.
fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    match fs::File::open(dir).and_then(|d| d.sync_all()) {
        Err(e) if e.kind() != io::ErrorKind::InvalidInput => Err(ArchiveError::Io {
            what: "cannot sync",
            path: dir.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// A version folder replaced by a symlink (to a user's directory, say) is never followed: not
/// zipped into an archive, nor deleted through.
fn refuse_symlink(dir: &Path) -> Result<(), ArchiveError> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_symlink() => Err(ArchiveError::Symlink {
            path: dir.to_path_buf(),
            target: fs::read_link(dir).unwrap_or_default(),
        }),
        _ => Ok(()),
    }
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
/// bundles are unpacked by; one leading out is left out, with a warning. `dir` itself must be a
/// folder, not a symlink to one.
pub fn zip_dir(dir: &Path, root: &str, out: &Path) -> Result<(), ArchiveError> {
    refuse_symlink(dir)?;
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
    // On disk before it takes its name: the folder it archives is deleted once it has.
    w.get_ref().sync_all().map_err(io_err("cannot sync", out))?;
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
/// broken build is quarantined with its logs and never retried unless dropped again. An earlier
/// rejection of the version there is kept, renamed `<identifier>-<version>~<n>`. A retry
/// after the move succeeded (its `reason.json` failed) finds no folder: it finishes the job in
/// `rejected/` and keeps what the first attempt moved there, as it does after an install that
/// failed before its folder existed and moved the build there itself. Only a folder is moved: a
/// file under the folder's name (a build of the version still being dropped) is not understudy's.
pub fn reject_version(
    layout: &Layout,
    v: &Version,
    reasons: &[String],
) -> Result<PathBuf, ArchiveError> {
    let _turn = one_at_a_time();
    let dir = layout.version_dir(v);
    let rdir = layout.rejected_dir();
    fs::create_dir_all(&rdir).map_err(io_err("cannot create", &rdir))?;
    let dest = rdir.join(layout.version_name(v));
    if fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
        // An earlier rejection of the same version (dropped again since) is kept beside it.
        set_aside(&dest)?;
        fs::rename(&dir, &dest).map_err(io_err("cannot move the rejected version to", &dest))?;
    } else {
        fs::create_dir_all(&dest).map_err(io_err("cannot create", &dest))?;
    }
    write_reason(&dest, v, reasons)?;
    Ok(dest)
}

/// Keep an earlier rejection at `dest` beside the one about to take its name
/// ([`crate::layout::set_aside_rejection`]), logging where it went.
fn set_aside(dest: &Path) -> Result<(), ArchiveError> {
    let aside = crate::layout::set_aside_rejection(dest).map_err(|source| ArchiveError::Io {
        what: "cannot move the earlier rejection aside to make room at",
        path: dest.to_path_buf(),
        source,
    })?;
    if let Some(aside) = aside {
        tracing::info!(
            "the earlier rejection in {} is kept as {}",
            dest.display(),
            aside.display()
        );
    }
    Ok(())
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
    set_aside(&dest)?;
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

/// The newest rejection filed in `rejected/`, as its `reason.json` says it: version, when,
/// reasons. Files that cannot be read, or are over 1 MiB, are passed over.
pub fn last_rejection(layout: &Layout) -> Option<(Version, std::time::SystemTime, Vec<String>)> {
    use std::io::Read;
    let mut newest: Option<(u64, Version, Vec<String>)> = None;
    for entry in std::fs::read_dir(layout.rejected_dir()).ok()?.flatten() {
        let mut text = String::new();
        let read = std::fs::File::open(entry.path().join("reason.json"))
            .and_then(|f| f.take(1 << 20).read_to_string(&mut text));
        let Ok(v) = read.map(|_| serde_json::from_str::<serde_json::Value>(&text)) else {
            continue;
        };
        let Ok(v) = v else { continue };
        let (Some(version), Some(ms)) = (
            v["version"].as_str().and_then(|s| Version::parse(s).ok()),
            v["rejected_unix_ms"].as_u64(),
        ) else {
            continue;
        };
        let reasons = (v["reasons"].as_array().into_iter().flatten())
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect();
        if newest.as_ref().is_none_or(|(t, ..)| ms > *t) {
            newest = Some((ms, version, reasons));
        }
    }
    let (ms, version, reasons) = newest?;
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    Some((version, at, reasons))
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

#[cfg(test)]
mod tests;
