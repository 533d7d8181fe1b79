//! What a crash leaves behind in the base dir, cleared at start: the temp files understudy's own
//! writers use, each only once its writer is gone when its name carries the writer's pid (during
//! an upgrade the previous understudy may be writing its own right now), and a log rotation cut
//! short, finished rather than deleted.

use std::fs;
use std::path::{Path, PathBuf};

use semver::Version;

use crate::layout::Layout;

/// Whether the process whose pid ends a temp file's name (`write_atomic`'s `*.tmp-<pid>`) is gone:
/// during an upgrade the previous understudy may be writing its own right now.
pub(super) fn written_by_no_live_process(pid: &str) -> bool {
    match pid.parse::<u32>() {
        Ok(pid) => pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists(),
        Err(_) => true,
    }
}

/// Whether `name` is `<prefix><pid>` for a pid whose process is gone.
fn stale(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(written_by_no_live_process)
}

/// Whether `name` is a protected copy's temp, `.<file>.copy-<pid>`, of a process gone.
fn stale_copy(name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|n| n.rsplit_once(".copy-"))
        .is_some_and(|(file, pid)| !file.is_empty() && written_by_no_live_process(pid))
}

/// The entries of `dir` with their names (none if it cannot be read).
fn files_in(dir: &Path) -> Vec<(PathBuf, String)> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| Some((e.path(), e.file_name().to_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The subfolders of `dir` (not symlinks to folders) with their names.
fn folders_in(dir: &Path) -> Vec<(PathBuf, String)> {
    files_in(dir)
        .into_iter()
        .filter(|(p, _)| fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()))
        .collect()
}

/// Remove temp files a crash left behind (a half-written archive, state file, `instance.json`,
/// `reason.json`, seal or symlink, a half-made protected copy, a half-unpacked rollback), logging
/// each, so they neither fill the disk nor confuse a reader. Only names that understudy's own
/// writers use are touched, those ending in a pid only once that process is gone:
/// `archive/*.zip.tmp`, `.understudy/{state,events,status}.tmp-<pid>`,
/// `.{running,testing,secondary}.tmp-<pid>`, `rejected/*/reason.tmp-<pid>`,
/// `.understudy/store/*/{seal.tmp-<pid>,.<file>.copy-<pid>}`, in each version folder
/// `.<file>.copy-<pid>` and `<n>/instance.tmp-<pid>`, and the folders `.understudy/restore.tmp-*`
/// and `rejected/.<name>.deleting-<pid>` (a rejected build whose deletion was cut short). A
/// rotation cut short is finished ([`finish_rotations`]). Call at start, before anything is
/// written, while the base dir lock is held. Blocking. Returns what was removed.
pub fn remove_stray_temps(layout: &Layout) -> Vec<PathBuf> {
    let mut stray = Vec::new();
    for (path, name) in files_in(&layout.archive_dir()) {
        if name.ends_with(".zip.tmp") {
            stray.push(path);
        }
    }
    let mut folders = Vec::new();
    for (path, name) in files_in(&layout.state_dir()) {
        if ["state.tmp-", "events.tmp-", "status.tmp-"]
            .iter()
            .any(|p| stale(&name, p))
        {
            stray.push(path);
        } else if name.starts_with("restore.tmp-") {
            folders.push(path);
        }
    }
    for (entry, _) in folders_in(&layout.state_dir().join("store")) {
        for (path, name) in files_in(&entry) {
            if stale(&name, "seal.tmp-") || stale_copy(&name) {
                stray.push(path);
            }
        }
    }
    for (entry, _) in folders_in(&layout.rejected_dir()) {
        for (path, name) in files_in(&entry) {
            if stale(&name, "reason.tmp-") {
                stray.push(path);
            }
        }
    }
    stray.extend(in_base_and_version_folders(layout));
    stray.retain(|p| remove_stray(p, false));
    folders.retain(|p| remove_stray(p, true));
    stray.extend(folders);
    stray.extend(remove_deleting_leftovers(layout));
    finish_rotations(layout);
    stray
}

/// The temps of [`remove_stray_temps`] in the base dir itself and in the version folders.
fn in_base_and_version_folders(layout: &Layout) -> Vec<PathBuf> {
    let mut stray = Vec::new();
    for (path, name) in files_in(layout.base()) {
        if [".running.tmp-", ".testing.tmp-", ".secondary.tmp-"]
            .iter()
            .any(|p| stale(&name, p))
        {
            stray.push(path);
        }
    }
    for (vdir, _) in version_folders(layout) {
        for (path, name) in files_in(&vdir) {
            if stale_copy(&name) {
                stray.push(path);
            }
        }
        for (inst, _) in instance_folders(&vdir) {
            for (p, n) in files_in(&inst) {
                if stale(&n, "instance.tmp-") {
                    stray.push(p);
                }
            }
        }
    }
    stray
}

/// The version folders in the base dir, `<identifier>-<version>/`.
pub(super) fn version_folders(layout: &Layout) -> Vec<(PathBuf, String)> {
    let prefix = format!("{}-", layout.identifier());
    folders_in(layout.base())
        .into_iter()
        .filter(|(_, name)| {
            name.strip_prefix(&prefix)
                .is_some_and(|v| Version::parse(v).is_ok())
        })
        .collect()
}

/// The instance folders (`<n>/`) of a version folder.
pub(super) fn instance_folders(vdir: &Path) -> Vec<(PathBuf, String)> {
    folders_in(vdir)
        .into_iter()
        .filter(|(_, n)| crate::layout::instance_number(n).is_some())
        .collect()
}

/// Finish the log rotations a kill cut short: an instance's `stdout.1.tmp` (or `stderr.1.tmp`)
/// takes its name `stdout.1`, logging each. Killed after the file was emptied, the rotated tail
/// is only there, where `understudy logs` never looks; killed before, the file still holds all
/// of it and, past its bound, is rotated again at the next collection, replacing the copy
/// anyway. Blocking. Returns the copies given their names.
pub(super) fn finish_rotations(layout: &Layout) -> Vec<PathBuf> {
    let mut done = Vec::new();
    for (vdir, _) in version_folders(layout) {
        for (inst, _) in instance_folders(&vdir) {
            for log in ["stdout", "stderr"] {
                let tmp = inst.join(format!("{log}.1.tmp"));
                if !fs::symlink_metadata(&tmp).is_ok_and(|m| m.is_file()) {
                    continue;
                }
                let kept = inst.join(format!("{log}.1"));
                match fs::rename(&tmp, &kept) {
                    Ok(()) => {
                        tracing::info!(
                            "{} is now {}: the rotation an earlier crash cut short is finished",
                            tmp.display(),
                            kept.display()
                        );
                        done.push(kept);
                    }
                    Err(e) => tracing::warn!(
                        "cannot move {} to {}, a rotation an earlier crash cut short: {e}; move \
                         it by hand",
                        tmp.display(),
                        kept.display()
                    ),
                }
            }
        }
    }
    done
}

/// Where a rejected build is moved to be deleted: `rejected/.<name>.deleting-<pid>`, its name
/// cut so the whole stays within a file name's 255 bytes (a build's name may take up to 241).
pub(super) fn deleting_path(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let suffix = format!(".deleting-{}", std::process::id());
    let mut keep = name.len().min(255 - 1 - suffix.len());
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    path.with_file_name(format!(".{}{suffix}", &name[..keep]))
}

/// The pid in a name [`deleting_path`] made, if `name` is one.
pub(super) fn deleting_pid(name: &str) -> Option<u32> {
    let (_, pid) = name.strip_prefix('.')?.rsplit_once(".deleting-")?;
    pid.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| pid.parse().ok())
        .flatten()
}

/// Finish the deletions of rejected builds that a kill (or a failure) cut short: every
/// `rejected/.<name>.deleting-<pid>` of this process or of one gone (during an upgrade the other
/// understudy may be deleting its own), logging each. Called at start and by each collection
/// (one at a time, so none of this process's is under way). Blocking. Returns what was removed.
pub(super) fn remove_deleting_leftovers(layout: &Layout) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for (path, name) in files_in(&layout.rejected_dir()) {
        let Some(pid) = deleting_pid(&name) else {
            continue;
        };
        let ours = pid == std::process::id();
        if !ours && !written_by_no_live_process(&pid.to_string()) {
            continue;
        }
        if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        match fs::remove_dir_all(&path) {
            Ok(()) => {
                tracing::info!(
                    "removed {}, a rejected build whose deletion was cut short",
                    path.display()
                );
                removed.push(path);
            }
            Err(e) => tracing::warn!(
                "cannot remove {}, a rejected build whose deletion was cut short: {e}; delete it \
                 by hand",
                path.display()
            ),
        }
    }
    removed
}

/// Remove one temp a crash left behind, saying so; a folder only if `folder` (a symlink is
/// removed, never followed). Whether it was removed.
fn remove_stray(p: &Path, folder: bool) -> bool {
    let removed = match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() && !folder => return false,
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(_) => return false,
    };
    match removed {
        Ok(()) => {
            tracing::info!("removed {}, a temp left by an earlier crash", p.display());
            true
        }
        Err(e) => {
            tracing::warn!(
                "cannot remove {}, a temp left by an earlier crash: {e}; delete it by hand",
                p.display()
            );
            false
        }
    }
}
