//! Moving a dropped build (and its checksum) into its version folder, through `incoming/`, and
//! where it goes when a step of that fails: to `rejected/`, never left hidden in `incoming/`.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{checksum_name, io_err, move_file, ArtifactName, InstallError, InstallLimits};
use crate::layout::Layout;

/// Where a drop's files are now: the build, and its checksum if one came with it; and what a
/// copy of a hard-linked one must leave free on the base dir's disk.
struct Files<'a> {
    build: PathBuf,
    sum: Option<PathBuf>,
    limits: InstallLimits,
    disk: &'a Path,
}

impl Files<'_> {
    fn all(&self) -> impl Iterator<Item = &PathBuf> {
        std::iter::once(&self.build).chain(&self.sum)
    }

    /// Move each file into `dir` under its own name; each path follows its file.
    fn move_into(&mut self, dir: &Path) -> Result<(), InstallError> {
        for f in std::iter::once(&mut self.build).chain(self.sum.as_mut()) {
            let to = dir.join(f.file_name().unwrap_or_default());
            take(f, &to, self.limits, self.disk)?;
            *f = to;
        }
        Ok(())
    }
}

/// Move the build dropped at `dropped` (and its `.sha256`, if one lies beside it) into `vdir`,
/// its version folder, through `incoming/` (an executable build has the folder's own name); the
/// paths of both there. A hard-linked file is copied rather than moved ([`take`]). Should a step fail, what was moved so far goes with the rest to
/// `rejected/<identifier>-<version>/` ([`rescue`]), where the version's rejection adds its reason.
pub(super) fn place(
    layout: &Layout,
    dropped: &Path,
    name: &ArtifactName,
    vdir: &Path,
    limits: InstallLimits,
) -> Result<(PathBuf, Option<PathBuf>), InstallError> {
    let sum = dropped.with_file_name(checksum_name(&name.file_name));
    let has_sum = fs::symlink_metadata(&sum).is_ok_and(|m| m.is_file());
    let mut files = Files {
        build: dropped.to_path_buf(),
        sum: has_sum.then_some(sum),
        limits,
        disk: layout.base(),
    };
    match steps(layout, name, vdir, &mut files) {
        Ok(()) => Ok((files.build, files.sum)),
        Err(e) => {
            rescue(layout, name, vdir, &files, &e);
            Err(e)
        }
    }
}

fn steps(
    layout: &Layout,
    name: &ArtifactName,
    vdir: &Path,
    files: &mut Files,
) -> Result<(), InstallError> {
    let incoming = layout.incoming_dir();
    fs::create_dir_all(&incoming).map_err(io_err("cannot create", &incoming))?;
    files.move_into(&incoming)?;
    // Not the version folder: the executable twin of this build still being written, say.
    if fs::symlink_metadata(vdir).is_ok_and(|m| !m.is_dir()) {
        return Err(InstallError::NameTaken {
            path: vdir.to_path_buf(),
            version: name.version.clone(),
            file: name.file_name.clone(),
        });
    }
    fs::create_dir_all(vdir).map_err(io_err("cannot create version folder", vdir))?;
    files.move_into(vdir)
}

/// Move the dropped file `from` to `to` as [`move_file`] does, unless other hard links share its
/// file (`ln /ci/out/app-1.3.0.jar /srv/app/`): a rename keeps it, and a write through another
/// link (the next CI build) would change the installed build under the running program, which
/// only an executable's `ETXTBSY` stops. So it is copied into a fresh file, leaving
/// `MIN_FREE_DISK` free, and the dropped name is removed.
fn take(from: &Path, to: &Path, limits: InstallLimits, disk: &Path) -> Result<(), InstallError> {
    let meta = fs::symlink_metadata(from).map_err(io_err("cannot read", from))?;
    if meta.nlink() <= 1 {
        return move_file(from, to);
    }
    let free = crate::layout::free_disk(disk);
    if free.is_some_and(|f| f.saturating_sub(limits.min_free_disk) < meta.len()) {
        return Err(InstallError::NoRoomToCopy {
            path: from.to_path_buf(),
            size: meta.len(),
            min_free_disk: limits.min_free_disk,
            disk: disk.to_path_buf(),
        });
    }
    let copied = fs::copy(from, to)
        .map_err(io_err("cannot copy hard-linked build to", to))
        .and_then(|_| fs::remove_file(from).map_err(io_err("cannot remove dropped build", from)));
    if let Err(e) = copied {
        // The dropped file is where it was: the copy, whole or not, is no second build.
        let _ = fs::remove_file(to);
        return Err(e);
    }
    tracing::info!(
        "{} has other hard links: copied to {} rather than moved, so that none of them can change \
         the installed build",
        from.display(),
        to.display()
    );
    Ok(())
}

/// After a failed [`place`]: the version folder, if one is there, and every file of the drop not
/// in it go to `rejected/<identifier>-<version>/` (an earlier rejection of the version is kept,
/// renamed `<identifier>-<version>~<n>`),
/// where rejecting the version, as a failed install is, writes the reason beside them. So the
/// rejection never has to move a file it does not know, and nothing hides in `incoming/`; should
/// this fail too, what is in `incoming/` goes back into the base dir at the next start.
fn rescue(layout: &Layout, name: &ArtifactName, vdir: &Path, files: &Files, error: &InstallError) {
    let dest = layout
        .rejected_dir()
        .join(layout.version_name(&name.version));
    match reject_files(vdir, files, &dest) {
        Ok(()) => tracing::warn!(
            "{} was not installed ({error}): moved to {}",
            name.file_name,
            dest.display()
        ),
        Err(e) => tracing::error!(
            "{} was not installed ({error}), and cannot be moved to {}: {e}; what is left in {} \
             goes back into the base dir at understudy's next start",
            name.file_name,
            dest.display(),
            layout.incoming_dir().display()
        ),
    }
}

fn reject_files(vdir: &Path, files: &Files, dest: &Path) -> Result<(), InstallError> {
    // An earlier rejection of the version is kept beside this one.
    crate::layout::set_aside_rejection(dest).map_err(io_err(
        "cannot move the earlier rejection aside to make room at",
        dest,
    ))?;
    if fs::symlink_metadata(vdir).is_ok_and(|m| m.is_dir()) {
        fs::rename(vdir, dest).map_err(io_err("cannot move the version folder to", dest))?;
    } else {
        fs::create_dir_all(dest).map_err(io_err("cannot create", dest))?;
    }
    for f in files.all() {
        let moved_along = f.parent() == Some(vdir);
        if moved_along || fs::symlink_metadata(f).is_err() {
            continue;
        }
        move_file(f, &dest.join(f.file_name().unwrap_or_default()))?;
    }
    Ok(())
}
