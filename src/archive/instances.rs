//! Bounding a version folder's instance folders: each start makes one (`<n>/`, with its logs),
//! and a build that crashes or hangs for days behind the backoff's 30 s would pile up thousands
//! while its version is live, where no archive or budget reaches them. The newest are kept,
//! and any an instance may still use, whatever its age.

use std::fs;
use std::path::{Path, PathBuf};

use crate::layout::{Layout, Role};

/// Instance folders kept per version folder besides those in use: enough to read the last
/// restarts' logs (a crash loop's first and latest), few enough to bound a loop's disk.
pub const KEPT_INSTANCE_FOLDERS: usize = 20;

/// Delete the instance folders of every version folder past the newest `keep` by number, except
/// one a role's symlink points into or whose `instance.json` names a live process. Blocking.
/// Returns what was deleted, each logged.
pub fn prune_instance_folders(layout: &Layout, keep: usize) -> Vec<PathBuf> {
    let linked: Vec<PathBuf> = [Role::Running, Role::Testing, Role::Secondary]
        .into_iter()
        .filter_map(|r| fs::canonicalize(layout.link(r)).ok())
        .collect();
    let mut deleted = Vec::new();
    for (vdir, _) in super::stray::version_folders(layout) {
        let mut numbered: Vec<(u32, PathBuf)> = super::stray::instance_folders(&vdir)
            .into_iter()
            .filter_map(|(p, n)| Some((crate::layout::instance_number(&n)?, p)))
            .collect();
        numbered.sort_unstable_by_key(|(n, _)| std::cmp::Reverse(*n));
        for (_, dir) in numbered.into_iter().skip(keep) {
            if in_use(&dir, &linked) {
                continue;
            }
            match fs::remove_dir_all(&dir) {
                Ok(()) => deleted.push(dir),
                Err(e) => tracing::warn!(
                    "cannot delete the old instance folder {}: {e}; it is tried again at the next collection",
                    dir.display()
                ),
            }
        }
    }
    if let Some(first) = deleted.first() {
        tracing::info!(
            "deleted {} old instance folders (the newest {keep} of each version are kept), {} the first",
            deleted.len(),
            first.display()
        );
    }
    deleted
}

/// Whether an instance may still use `dir`: a role's symlink points into it, or the process its
/// `instance.json` names is alive (a pid taken again keeps a folder a while longer, no more).
fn in_use(dir: &Path, linked: &[PathBuf]) -> bool {
    let canonical = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    if linked.iter().any(|l| l.starts_with(&canonical)) {
        return true;
    }
    let Ok(text) = fs::read_to_string(dir.join("instance.json")) else {
        return false;
    };
    let pid = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["pid"].as_u64());
    pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists())
}

#[cfg(test)]
mod tests {
    use super::*;
    use semver::Version;

    /// Thirty starts of 1.0.0: the newest 20 stay, and so do an old one the `running` symlink
    /// points into and an old one whose process lives; the rest go. A version folder's other
    /// files are never touched.
    #[test]
    fn the_newest_instance_folders_and_those_in_use_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path(), "app");
        let v = Version::parse("1.0.0").unwrap();
        for n in 1..=30 {
            let i = l.instance_dir(&v, n);
            fs::create_dir_all(i.join("logs/json")).unwrap();
            let pid = if n == 3 {
                std::process::id()
            } else {
                999_999_999
            };
            fs::write(i.join("instance.json"), format!(r#"{{"pid": {pid}}}"#)).unwrap();
            fs::write(i.join("stdout"), "crashed\n").unwrap();
        }
        fs::write(l.version_dir(&v).join("app-1.0.0"), "#!/bin/sh\n").unwrap();
        std::os::unix::fs::symlink(l.instance_dir(&v, 2), l.link(Role::Running)).unwrap();

        let deleted = prune_instance_folders(&l, KEPT_INSTANCE_FOLDERS);
        let mut gone: Vec<u32> = deleted
            .iter()
            .filter_map(|p| crate::layout::instance_number(p.file_name()?.to_str()?))
            .collect();
        gone.sort_unstable();
        assert_eq!(gone, [1, 4, 5, 6, 7, 8, 9, 10]);
        for n in [2, 3, 11, 30] {
            assert!(l.instance_dir(&v, n).join("stdout").is_file(), "#{n} kept");
        }
        assert!(!l.instance_dir(&v, 1).exists());
        assert!(l.version_dir(&v).join("app-1.0.0").is_file());
        assert!(prune_instance_folders(&l, KEPT_INSTANCE_FOLDERS).is_empty());
    }
}
