//! The protected copies of installed builds, so what starts is always what was installed and
//! scored. A version folder is the user's to look into, and a `mv` or `cp` of a build with the
//! folder's name lands inside it; `.understudy/store/` is understudy's own. Before every start the
//! program is checked against the digest taken at install: a program replaced or removed, or a
//! whole version folder deleted, is restored from the copy (or, lacking one, from the archive),
//! and the log says so.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use semver::Version;
use serde::{Deserialize, Serialize};

use crate::artifact::{self, InstallLimits, Installed, Kind};
use crate::layout::{write_atomic, Layout};

/// Why a build's bytes could not be kept or brought back; the start is refused with it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file of the store or of the version folder could not be read or written.
    #[error("{what} {path}: {source}; check the base dir's disk and permissions")]
    Io {
        /// What was attempted.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The protected copy itself no longer matches: nothing trustworthy is left to start.
    #[error(
        "the protected copy {path} of {version} does not match its digest: drop the build again"
    )]
    Corrupt {
        /// The version.
        version: Version,
        /// The stored copy.
        path: PathBuf,
    },
    /// The version folder's name is held by a symbolic link (or a file): it is neither followed
    /// nor changed, so what it leads to is never deleted or written over.
    #[error("{path} is not the version folder of {version} but a symbolic link or a file: understudy does not start {version} through it, nor delete or write anything it leads to; put the real folder back there, or move {path} away so that {version} is restored from its protected copy at the next start")]
    NotAFolder {
        /// The version.
        version: Version,
        /// Where the version folder belongs.
        path: PathBuf,
    },
    /// A new build's protected copy would leave less than `MIN_FREE_DISK` free: nothing was
    /// written, and the build waits for room rather than being rejected for it.
    #[error("a protected copy of {path} ({size} bytes) would leave less than MIN_FREE_DISK ({min_free_disk} bytes) free on the disk of {disk} ({free} bytes free): free disk space, or lower MIN_FREE_DISK")]
    NoRoom {
        /// The build file to copy.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// Free bytes on the store's disk.
        free: u64,
        /// `MIN_FREE_DISK`.
        min_free_disk: u64,
        /// The store's folder.
        disk: PathBuf,
    },
    /// Neither the version folder nor its protected copy could bring the version back, and its
    /// archive could not either (or there is none: [`artifact::RestoreError::Missing`]).
    #[error(transparent)]
    Archive(Box<artifact::RestoreError>),
    /// The bundle could not be unpacked again.
    #[error("cannot restore {version}: {source}")]
    Restore {
        /// The version.
        version: Version,
        /// Why.
        source: Box<artifact::InstallError>,
    },
}

impl StoreError {
    /// Whether the version is nowhere to be brought back from: no folder, no protected copy, no
    /// archive (a rollback to it is refused as never archived here).
    pub fn is_missing(&self) -> bool {
        matches!(self, StoreError::Archive(e) if matches!(**e, artifact::RestoreError::Missing { .. }))
    }

    /// Whether this is a failure of understudy's own files (its store: a full, failing or
    /// unwritable disk), not of the build: a new build then waits and its seal is tried again.
    pub fn is_own(&self, layout: &Layout) -> bool {
        match self {
            StoreError::NoRoom { .. } => true,
            StoreError::Io { path, .. } => path.starts_with(store_dir(layout)),
            StoreError::Corrupt { .. }
            | StoreError::Restore { .. }
            | StoreError::NotAFolder { .. }
            | StoreError::Archive(_) => false,
        }
    }
}

/// What was installed, as digests: kept beside the copy in `seal.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Seal {
    /// File name of the copy: the build as dropped (the jar, the executable or the zip).
    artifact: String,
    /// SHA-256 of the copy.
    artifact_sha256: String,
    /// The program that is started, relative to the version folder.
    program: PathBuf,
    /// SHA-256 of that program as installed.
    program_sha256: String,
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// `.understudy/store/`.
fn store_dir(layout: &Layout) -> PathBuf {
    layout.state_dir().join("store")
}

/// `.understudy/store/<identifier>-<version>/`.
fn entry(layout: &Layout, v: &Version) -> PathBuf {
    store_dir(layout).join(layout.version_name(v))
}

/// The build file a version was installed from: the zip for a bundle, else the program itself.
fn artifact_of(layout: &Layout, installed: &Installed) -> PathBuf {
    let vdir = layout.version_dir(&installed.version);
    if installed.program.starts_with(vdir.join("bundle")) {
        vdir.join(format!("{}.zip", layout.version_name(&installed.version)))
    } else {
        installed.program.clone()
    }
}

/// Check that the protected copy of a new build leaves `MIN_FREE_DISK` free, before it is
/// made: a copy that fills the disk would stop state, logs and restarts too. Blocking.
pub fn check_room(
    layout: &Layout,
    installed: &Installed,
    min_free_disk: u64,
) -> Result<(), StoreError> {
    let artifact = artifact_of(layout, installed);
    let size = fs::metadata(&artifact)
        .map_err(io_err("cannot read", &artifact))?
        .len();
    let disk = layout.state_dir();
    match crate::layout::free_disk(&disk) {
        Some(free) if free < size.saturating_add(min_free_disk) => Err(StoreError::NoRoom {
            path: artifact,
            size,
            free,
            min_free_disk,
            disk: store_dir(layout),
        }),
        _ => Ok(()),
    }
}

/// Keep a copy of what was just installed, with its digests. Blocking. On an error nothing of
/// the copy is left behind: one cut short by a full disk must not keep the disk full.
pub fn seal(layout: &Layout, installed: &Installed) -> Result<(), StoreError> {
    let dir = entry(layout, &installed.version);
    let sealed = seal_into(layout, installed, &dir);
    if sealed.is_err() {
        let _ = fs::remove_dir_all(&dir);
    }
    sealed
}

fn seal_into(layout: &Layout, installed: &Installed, dir: &Path) -> Result<(), StoreError> {
    fs::create_dir_all(dir).map_err(io_err("cannot create", dir))?;
    let artifact = artifact_of(layout, installed);
    let name = artifact
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "artifact".to_string());
    let copy = dir.join(&name);
    copy_atomic(&artifact, &copy)?;
    let vdir = layout.version_dir(&installed.version);
    let seal = Seal {
        artifact: name,
        artifact_sha256: digest(&copy)?,
        program: installed
            .program
            .strip_prefix(&vdir)
            .unwrap_or(&installed.program)
            .to_path_buf(),
        program_sha256: digest(&installed.program)?,
    };
    let path = dir.join("seal.json");
    let bytes = serde_json::to_vec_pretty(&seal).map_err(io::Error::other);
    bytes
        .and_then(|b| write_atomic(&path, &b))
        .map_err(io_err("cannot write", &path))
}

/// Make sure the program about to start is the one installed: restore it from the copy when it
/// was changed or removed. `Ok(Some(what))` says what was repaired, for the log. Blocking.
pub fn ensure(
    layout: &Layout,
    installed: &Installed,
    limits: InstallLimits,
) -> Result<Option<String>, StoreError> {
    // A folder the operator moved elsewhere and linked back starts as it is when it holds the
    // build; only a repair, which writes into it, refuses to go through a link.
    let dir = entry(layout, &installed.version);
    let Some(seal) = read_seal(&dir) else {
        if !installed.program.exists() {
            real_folder(layout, &installed.version)?;
            // Installed before the store existed, and since deleted: the archive may have it.
            let restored = artifact::restore(layout, &installed.version, limits).ok();
            if let Some(r) = restored {
                seal(layout, &r)?;
                return Ok(Some(format!(
                    "{} was missing: restored from the archive",
                    installed.program.display()
                )));
            }
            return Ok(None);
        }
        // Installed before the store existed: keep what is there from now on.
        seal(layout, installed)?;
        return Ok(None);
    };
    let vdir = layout.version_dir(&installed.version);
    let program = vdir.join(&seal.program);
    let found = digest(&program).ok();
    if found.as_deref() == Some(seal.program_sha256.as_str()) {
        return Ok(None);
    }
    let why = match &found {
        None => "missing",
        Some(_) => "not the build that was installed and scored",
    };
    real_folder(layout, &installed.version)?;
    restore(layout, installed, &dir, &seal, limits)?;
    Ok(Some(format!(
        "{} was {why}: restored from the protected copy in {}",
        program.display(),
        dir.display()
    )))
}

/// Bring `version` back into its folder for a rollback: as it is when it holds the sealed
/// program; else from its protected copy while one is kept (the folder kept through
/// `ROLLBACK_WINDOW`, its program removed or changed); else from its archive. Blocking.
pub fn restore_version(
    layout: &Layout,
    version: &Version,
    limits: InstallLimits,
) -> Result<Installed, StoreError> {
    if let Some(installed) = sealed(layout, version) {
        return Ok(installed);
    }
    let archive = |copy_failed: Option<StoreError>| match artifact::restore(layout, version, limits)
    {
        Ok(installed) => Ok(installed),
        Err(artifact::RestoreError::Missing { .. }) if copy_failed.is_some() => {
            Err(copy_failed.expect("checked"))
        }
        Err(e) => Err(StoreError::Archive(Box::new(e))),
    };
    let dir = entry(layout, version);
    let Some(seal) = read_seal(&dir) else {
        return archive(None);
    };
    let jar = seal.program.extension().is_some_and(|e| e == "jar");
    let installed = Installed {
        version: version.clone(),
        program: layout.version_dir(version).join(&seal.program),
        kind: if jar { Kind::Jar } else { Kind::Executable },
    };
    real_folder(layout, version)?;
    match restore(layout, &installed, &dir, &seal, limits) {
        Ok(()) => {
            tracing::warn!(
                "{} was missing or not the build that was installed: restored from the \
                 protected copy in {} for the rollback",
                installed.program.display(),
                dir.display()
            );
            Ok(installed)
        }
        Err(e) => {
            tracing::warn!("{e}; trying the archive of {version}");
            archive(Some(e))
        }
    }
}

/// Refuse a version folder that is a symbolic link or a file (one missing is fine: it is made
/// again): following it would delete and write what it leads to, the user's own files.
fn real_folder(layout: &Layout, version: &Version) -> Result<(), StoreError> {
    let vdir = layout.version_dir(version);
    match fs::symlink_metadata(&vdir) {
        Ok(meta) if !meta.is_dir() => Err(StoreError::NotAFolder {
            version: version.clone(),
            path: vdir,
        }),
        _ => Ok(()),
    }
}

/// Put the copy back into the version folder (unpacking a bundle again) and check the result.
fn restore(
    layout: &Layout,
    installed: &Installed,
    dir: &Path,
    seal: &Seal,
    limits: InstallLimits,
) -> Result<(), StoreError> {
    let version = &installed.version;
    let copy = dir.join(&seal.artifact);
    if digest(&copy).ok().as_deref() != Some(seal.artifact_sha256.as_str()) {
        return Err(StoreError::Corrupt {
            version: version.clone(),
            path: copy,
        });
    }
    let vdir = layout.version_dir(version);
    real_folder(layout, version)?;
    fs::create_dir_all(&vdir).map_err(io_err("cannot create", &vdir))?;
    let program = vdir.join(&seal.program);
    if seal.program.starts_with("bundle") {
        let bundle = vdir.join("bundle");
        let _ = fs::remove_dir_all(&bundle);
        let zip = vdir.join(&seal.artifact);
        copy_atomic(&copy, &zip)?;
        artifact::unpack_bundle(&zip, &bundle, limits, layout.base()).map_err(|e| {
            StoreError::Restore {
                version: version.clone(),
                source: Box::new(e),
            }
        })?;
    } else {
        // A folder where the program belongs (a `mv` of a directory) is moved out of the way.
        if program.is_dir() {
            let aside = vdir.join(format!(".displaced-{}", std::process::id()));
            fs::rename(&program, &aside).map_err(io_err("cannot move aside", &program))?;
        }
        copy_atomic(&copy, &program)?;
    }
    if installed.kind == Kind::Executable {
        artifact::mark_executable(&program).map_err(|e| StoreError::Restore {
            version: version.clone(),
            source: Box::new(e),
        })?;
    }
    if digest(&program).ok().as_deref() != Some(seal.program_sha256.as_str()) {
        return Err(StoreError::Corrupt {
            version: version.clone(),
            path: program,
        });
    }
    Ok(())
}

/// The build in `version`'s folder if its install finished: sealed, and the program the seal
/// names is there with the digest taken at install. `None` for a folder whose install a stop
/// cut short (no seal yet), so that one is installed again rather than started half unpacked.
/// Blocking: reads the program once.
pub fn sealed(layout: &Layout, version: &Version) -> Option<Installed> {
    let seal = read_seal(&entry(layout, version))?;
    let installed = artifact::find_installed(layout, version)?;
    let program = layout.version_dir(version).join(&seal.program);
    let same = installed.program == program
        && digest(&program).ok().as_deref() == Some(seal.program_sha256.as_str());
    same.then_some(installed)
}

/// Drop a version's copy once its folder is archived or rejected (a rollback restores from the
/// archive and seals again). Blocking; a failure only leaves a stale copy.
pub fn forget(layout: &Layout, version: &Version) {
    let _ = fs::remove_dir_all(entry(layout, version));
}

fn read_seal(dir: &Path) -> Option<Seal> {
    let text = fs::read(dir.join("seal.json")).ok()?;
    serde_json::from_slice(&text).ok()
}

fn digest(path: &Path) -> Result<String, StoreError> {
    artifact::sha256_file(path).map_err(io_err("cannot read", path))
}

/// Copy through a temp file renamed into place: a reader sees the old file or the whole new one.
/// The temp file is removed on any error: a copy cut short by a full disk must not keep it full.
fn copy_atomic(from: &Path, to: &Path) -> Result<(), StoreError> {
    let tmp = to.with_file_name(format!(
        ".{}.copy-{}",
        to.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let _ = fs::remove_file(&tmp);
    // Opened first, so a source that is gone is told as such, not as a failure to write.
    let mut source = fs::File::open(from).map_err(io_err("cannot read", from))?;
    let mode = source.metadata().map_err(io_err("cannot read", from))?;
    let copied = (|| {
        let mut file = fs::File::create(&tmp).map_err(io_err("cannot create", &tmp))?;
        io::copy(&mut source, &mut file).map_err(io_err("cannot copy to", &tmp))?;
        file.set_permissions(mode.permissions())
            .map_err(io_err("cannot set the mode of", &tmp))?;
        file.sync_all().map_err(io_err("cannot sync", &tmp))?;
        fs::rename(&tmp, to).map_err(io_err("cannot move into place", to))
    })();
    if copied.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    copied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_that_would_fill_the_disk_is_not_made_and_is_understudys_own_fault() {
        let base = tempfile::tempdir().unwrap();
        let l = Layout::new(base.path(), "app");
        fs::create_dir_all(l.state_dir()).unwrap();
        let dropped = base.path().join("app-1.0.0");
        fs::write(&dropped, b"#!/bin/sh\necho hi\n").unwrap();
        let name = artifact::parse_name("app-1.0.0", "app").unwrap();
        let limits = InstallLimits {
            max_unpacked: u64::MAX,
            min_free_disk: 0,
        };
        let installed = artifact::install(&l, &dropped, &name, limits).unwrap();
        let e = check_room(&l, &installed, u64::MAX / 2).unwrap_err();
        assert!(matches!(e, StoreError::NoRoom { .. }), "{e}");
        assert!(
            e.is_own(&l) && e.to_string().contains("MIN_FREE_DISK"),
            "{e}"
        );
        assert!(!entry(&l, &installed.version).exists(), "nothing written");
        check_room(&l, &installed, 0).unwrap();
        // The build's own file missing is no fault of the store's.
        fs::remove_file(&installed.program).unwrap();
        let e = seal(&l, &installed).unwrap_err();
        assert!(!e.is_own(&l), "{e}");
        assert!(
            !entry(&l, &installed.version).exists(),
            "no partial copy left"
        );
    }
}
