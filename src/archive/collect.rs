//! The collection's budget: which old archives and rejected builds go so that the base dir stays
//! within `MAX_BASE_SIZE` and the disk keeps `MIN_FREE_DISK` free. Deleting only helps when what
//! may be deleted can get there: when the rest of the base dir alone is over (an app's own logs,
//! the live versions, `.understudy/`), every archive is kept, since deleting them would lose each
//! rollback target and leave the base dir over all the same, and the collection says what takes
//! the room instead. `rejected/` keeps its newest [`KEEP_REJECTED`] builds. Only understudy's own
//! archives (`<identifier>-<version>.zip`, `…~unserved.zip`) are deleted: anything else put in
//! `archive/` stays.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use semver::Version;

use super::dir_size;
use crate::layout::Layout;

/// How many rejected (or refused) builds `rejected/` keeps; older ones go at the next collection.
pub const KEEP_REJECTED: usize = 20;

/// Something the collection may delete: an archive understudy wrote in `archive/`, or an entry
/// of `rejected/` whose rejection is complete (its `reason.json` written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    /// When it left service: its modification time (a rejected build's `reason.json`'s).
    pub modified: SystemTime,
    /// The bytes it holds.
    pub len: u64,
    /// In `rejected/`, else in `archive/`.
    pub rejected: bool,
}

/// Why the collection deletes an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// `rejected/` keeps its newest [`KEEP_REJECTED`] builds only.
    Count,
    /// The base dir was `base` bytes, over `MAX_BASE_SIZE`.
    Size { base: u64 },
    /// `free` bytes were free on its disk, under `MIN_FREE_DISK`.
    Disk { free: u64 },
}

/// The two budgets the collection keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `MAX_BASE_SIZE`.
    pub max_base_size: u64,
    /// `MIN_FREE_DISK`.
    pub min_free_disk: u64,
}

/// What the collection decided ([`plan`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Items to delete (their index in the input, and why), in the order they go.
    pub delete: Vec<(usize, Why)>,
    /// By how much the base dir stays over `MAX_BASE_SIZE`, when deleting everything it may
    /// would not bring it under (then nothing goes for it).
    pub over_size: Option<u64>,
    /// By how much free disk stays under `MIN_FREE_DISK`, likewise.
    pub short_disk: Option<u64>,
}

/// Decide what goes, given the base dir's size `base` and the free disk `free` (unknown: no
/// disk budget): rejected builds beyond the newest [`KEEP_REJECTED`] always; then rejected
/// builds and after them archives (the rollback targets), each oldest first, as many as it takes
/// to bring the base dir under `MAX_BASE_SIZE` and free disk over `MIN_FREE_DISK`, but for each
/// budget only when deleting everything that may go would get there. Pure.
pub fn plan(items: &[Item], base: u64, free: Option<u64>, limits: Limits) -> Plan {
    let mut order: Vec<usize> = (0..items.len()).collect();
    // Rejected builds before archives (rollback targets), each oldest first.
    order.sort_by_key(|&i| (!items[i].rejected, items[i].modified, i));
    let rejected = order.iter().filter(|&&i| items[i].rejected).count();
    let mut extra = rejected.saturating_sub(KEEP_REJECTED);
    let mut delete = Vec::new();
    let mut rest = Vec::new();
    for i in order {
        if items[i].rejected && extra > 0 {
            extra -= 1;
            delete.push((i, Why::Count));
        } else {
            rest.push(i);
        }
    }
    let pruned: u64 = delete.iter().map(|&(i, _)| items[i].len).sum();
    let base = base.saturating_sub(pruned);
    let free = free.map(|f| f.saturating_add(pruned));
    let deletable: u64 = rest.iter().map(|&i| items[i].len).sum();
    let over = base.saturating_sub(limits.max_base_size);
    let short = free.map_or(0, |f| limits.min_free_disk.saturating_sub(f));
    // A budget that deleting everything cannot meet deletes nothing.
    let need_size = if over <= deletable { over } else { 0 };
    let need_disk = if short <= deletable { short } else { 0 };
    let mut freed = 0u64;
    for i in rest {
        if freed >= need_size && freed >= need_disk {
            break;
        }
        let why = if freed < need_size {
            Why::Size { base: base - freed }
        } else {
            Why::Disk {
                free: free.unwrap_or(0).saturating_add(freed),
            }
        };
        delete.push((i, why));
        freed += items[i].len;
    }
    Plan {
        delete,
        over_size: (over > deletable).then(|| over - freed),
        short_disk: (short > deletable).then(|| short - freed),
    }
}

impl Why {
    /// What the log and the event say.
    fn say(self, limits: Limits) -> String {
        match self {
            Why::Count => format!("rejected/ keeps the newest {KEEP_REJECTED} rejected builds"),
            Why::Size { base } => format!(
                "base dir is {base} bytes, over MAX_BASE_SIZE {}",
                limits.max_base_size
            ),
            Why::Disk { free } => format!(
                "free disk {free} bytes is under MIN_FREE_DISK {}",
                limits.min_free_disk
            ),
        }
    }
}

/// An archive or a rejected build deleted by [`collect_garbage`], and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// The archive removed from `archive/` (a zip) or the entry of `rejected/` (a folder).
    pub path: PathBuf,
    /// It was in `rejected/`.
    pub rejected: bool,
    /// Which budget it was removed for.
    pub reason: String,
}

/// What one collection did, for `decide` to tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collection {
    /// What it deleted, in order.
    pub deleted: Vec<Deleted>,
    /// Why the base dir stays over `MAX_BASE_SIZE` or the disk short of `MIN_FREE_DISK` though
    /// the archives are kept: by how much, and what takes the room.
    pub over_budget: Option<String>,
    /// The pass did not get to measure (it failed): it says nothing of the budget.
    pub failed: bool,
}

/// One collection pass: rotate instance logs past their bound, then delete what [`plan`] says,
/// logging a deletion that fails and going on. Blocking; one pass at a time (the timer's and a
/// filing's may overlap), and never while a version folder is archived or rejected, so none
/// measures or rotates what another is deleting, rotating or zipping.
pub fn collect_garbage(layout: &Layout, limits: Limits) -> Collection {
    let _turn = super::one_at_a_time();
    super::stray::remove_deleting_leftovers(layout);
    super::rotate::rotate_instance_logs(layout, super::rotate::log_cap(limits.max_base_size));
    super::instances::prune_instance_folders(layout, super::instances::KEPT_INSTANCE_FOLDERS);
    let mut parts = Parts::measure(layout);
    let found = candidates(layout);
    let items: Vec<Item> = found.iter().map(|(_, item)| *item).collect();
    let free = crate::layout::free_disk(layout.base());
    let plan = plan(&items, parts.total(), free, limits);
    let mut deleted = Vec::new();
    for (i, why) in plan.delete {
        let (path, item) = &found[i];
        if !unchanged(path, item) {
            continue; // filed again under its name since it was measured: not what was chosen
        }
        if let Err(e) = delete(path, item.rejected) {
            tracing::warn!("{e}");
            continue;
        }
        match item.rejected {
            true => parts.rejected = parts.rejected.saturating_sub(item.len),
            false => parts.archive = parts.archive.saturating_sub(item.len),
        }
        deleted.push(Deleted {
            path: path.clone(),
            rejected: item.rejected,
            reason: why.say(limits),
        });
    }
    let over_budget = over_budget(&plan.over_size, &plan.short_disk, &parts, limits);
    Collection {
        deleted,
        over_budget,
        failed: false,
    }
}

/// Delete what the collection chose: an archive (a file) at once; a rejected build (a folder)
/// renamed aside first (`rejected/.<name>.deleting-<pid>`), so a kill half-way never leaves a part of it under its
/// name, no longer a rejection (its `reason.json` gone) yet weighing on the budget for good.
fn delete(path: &Path, rejected: bool) -> Result<(), String> {
    let gone = |r: io::Result<()>| match r {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    };
    if !rejected {
        return gone(fs::remove_file(path)).map_err(|e| {
            format!(
                "cannot delete {} for the collection: {e}; delete it by hand",
                path.display()
            )
        });
    }
    let aside = super::stray::deleting_path(path);
    gone(fs::rename(path, &aside)).map_err(|e| {
        format!(
            "cannot move {} aside to {} to delete it for the collection: {e}; delete it by hand",
            path.display(),
            aside.display()
        )
    })?;
    gone(fs::remove_dir_all(&aside)).map_err(|e| {
        format!(
            "cannot delete {} (moved aside from {}) for the collection: {e}; it is tried again \
             at the next collection, or delete it by hand",
            aside.display(),
            path.display()
        )
    })
}

/// What the event says when a budget is out of reach.
fn over_budget(
    over_size: &Option<u64>,
    short_disk: &Option<u64>,
    parts: &Parts,
    limits: Limits,
) -> Option<String> {
    let mut said = Vec::new();
    if let Some(over) = over_size {
        said.push(format!(
            "the base dir is {} and stays over MAX_BASE_SIZE {} by {}: deleting every archive \
             and older rejected build would not bring it under, so they are kept; it holds {}; \
             free room there (an app's own logs, in each instance folder's logs/, are the app's \
             to rotate; understudy's own log counts too if LOG_DIR is in the base dir) or raise \
             MAX_BASE_SIZE",
            human(parts.total()),
            human(limits.max_base_size),
            human(*over),
            parts.say()
        ));
    }
    if let Some(short) = short_disk {
        said.push(format!(
            "free disk stays under MIN_FREE_DISK {} by {}: deleting every archive and older \
             rejected build would not free that much, so they are kept; free disk space or lower \
             MIN_FREE_DISK",
            human(limits.min_free_disk),
            human(*short)
        ));
    }
    (!said.is_empty()).then(|| said.join("; "))
}

/// What the base dir holds, by kind, in bytes.
#[derive(Debug, Default)]
struct Parts {
    versions: u64,
    rejected: u64,
    archive: u64,
    /// Files in `archive/` that are not understudy's archives: never deleted by the collection.
    not_archives: u64,
    state: u64,
    other: u64,
}

impl Parts {
    fn measure(layout: &Layout) -> Parts {
        let mut parts = Parts::default();
        let Ok(rd) = fs::read_dir(layout.base()) else {
            return parts;
        };
        let prefix = format!("{}-", layout.identifier());
        for entry in rd.filter_map(|e| e.ok()) {
            let size = dir_size(&entry.path());
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let part = match &*name {
                "archive" => {
                    let own: u64 = own_archives(layout).iter().map(|p| dir_size(p)).sum();
                    parts.archive += own.min(size);
                    parts.not_archives += size.saturating_sub(own);
                    continue;
                }
                "rejected" => &mut parts.rejected,
                ".understudy" => &mut parts.state,
                n if n
                    .strip_prefix(&prefix)
                    .is_some_and(|v| Version::parse(v).is_ok()) =>
                {
                    &mut parts.versions
                }
                _ => &mut parts.other,
            };
            *part += size;
        }
        parts
    }

    fn total(&self) -> u64 {
        self.versions + self.rejected + self.archive + self.not_archives + self.state + self.other
    }

    fn say(&self) -> String {
        let not_archives = match self.not_archives {
            0 => String::new(),
            n => format!(
                ", files in archive/ that are not understudy's archives (it never deletes them) {}",
                human(n)
            ),
        };
        format!(
            "version folders (builds and instance logs) {}, rejected/ {}, archive/ {}{not_archives}, \
             .understudy/ {}, other files {}",
            human(self.versions),
            human(self.rejected),
            human(self.archive),
            human(self.state),
            human(self.other)
        )
    }
}

/// Whether `path` is one of the archives understudy writes: a regular file in `archive/` named
/// `<identifier>-<version>.zip` (or `<identifier>-<version>~unserved.zip`). Nothing else there is
/// understudy's to delete (an operator's notes or backups put beside the archives, a zip being
/// written, a link).
fn is_own_archive(layout: &Layout, path: &Path) -> bool {
    let version = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix(layout.identifier())?.strip_prefix('-'))
        .and_then(|n| n.strip_suffix(".zip"))
        .map(|n| n.strip_suffix("~unserved").unwrap_or(n))
        .and_then(|v| Version::parse(v).ok());
    version.is_some_and(|v| layout.archive_zip(&v) == path || layout.unserved_zip(&v) == path)
        && fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
}

/// The archives understudy wrote in `archive/` ([`is_own_archive`]).
fn own_archives(layout: &Layout) -> Vec<PathBuf> {
    entries(&layout.archive_dir())
        .into_iter()
        .filter(|p| is_own_archive(layout, p))
        .collect()
}

/// The entries of `dir` (none if it does not exist; a failure to read it is logged).
fn entries(dir: &Path) -> Vec<PathBuf> {
    match fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            tracing::warn!("cannot read {} for the collection: {e}", dir.display());
            Vec::new()
        }
    }
}

/// Every archive understudy wrote in `archive/` ([`is_own_archive`]), and every complete rejected
/// build in `rejected/` (one still being moved there has no `reason.json` yet and is left alone).
fn candidates(layout: &Layout) -> Vec<(PathBuf, Item)> {
    let archives = own_archives(layout).into_iter().map(|p| (p, false));
    // A rejected build being deleted (renamed aside) is no longer one.
    let rejected = entries(&layout.rejected_dir())
        .into_iter()
        .filter(|p| {
            super::stray::deleting_pid(&p.file_name().unwrap_or_default().to_string_lossy())
                .is_none()
        })
        .map(|p| (p, true));
    archives
        .chain(rejected)
        .filter_map(|(path, rejected)| {
            let modified = left_service(&path, rejected)?;
            let len = dir_size(&path);
            Some((
                path,
                Item {
                    modified,
                    len,
                    rejected,
                },
            ))
        })
        .collect()
}

/// When `path` left service: an archive's modification time, a rejected build's `reason.json`'s
/// (none while that is still being written).
fn left_service(path: &Path, rejected: bool) -> Option<SystemTime> {
    let at = if rejected {
        path.join("reason.json")
    } else {
        path.to_path_buf()
    };
    fs::symlink_metadata(at).and_then(|m| m.modified()).ok()
}

/// Whether `path` is still what was measured: a filing may have put a fresh rejection (or
/// archive) of the same version under the same name since, and that one is not to be deleted.
fn unchanged(path: &Path, item: &Item) -> bool {
    left_service(path, item.rejected) == Some(item.modified)
}

/// Bytes as people read them: `512 B`, `40.0 MiB`.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests;
