//! Builds a stop (SIGTERM, `kill -9`, an upgrade) cut short on their way in, found at start so
//! that nothing dropped is lost. The drop leaves the base dir at once (to
//! `.understudy/incoming/`, then into its version folder), and `state.json` names a build only
//! once it has a part: so a file left in `incoming/` goes back into the base dir, to be installed
//! again; a version folder whose install did not finish (no seal yet) gives its build back the
//! same way; and one whose install finished but that `state.json` does not name is handed to
//! `decide` (`Resumed.found`), which places it as if just installed or files it away. Blocking.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use semver::Version;

use crate::artifact::{self, Installed};
use crate::layout::Layout;
use crate::store;
use crate::supervisor::{Persisted, Resumed};

/// Every version `state.json` (or, lacking it, the symlinks) gives a part or a way out: their
/// folders are `decide`'s already.
pub(super) fn accounted(r: &Resumed, p: &Persisted) -> BTreeSet<Version> {
    let installed = [&r.running, &r.testing, &r.promoting, &r.pending];
    let named = [&p.running, &p.testing, &p.promoting, &p.pending];
    let mut out: BTreeSet<Version> = installed
        .into_iter()
        .flatten()
        .map(|i| i.version.clone())
        .chain(named.into_iter().flatten().cloned())
        .collect();
    if let Some(t) = &p.txn {
        out.extend(
            [Some(t.version.clone()), t.from.clone()]
                .into_iter()
                .flatten(),
        );
    }
    if let Some(g) = &p.guard {
        out.extend([g.version.clone(), g.from.clone()]);
    }
    out.extend(p.canary.as_ref().map(|c| c.version.clone()));
    out.extend(p.filings.iter().map(|f| f.version.clone()));
    out
}

/// Put back what was on its way in, and return the installed builds nothing accounts for.
pub(super) fn recover(layout: &Layout, accounted: &BTreeSet<Version>) -> Vec<Installed> {
    let mut found = Vec::new();
    for (version, dir) in version_folders(layout) {
        if accounted.contains(&version) {
            continue;
        }
        if let Some(installed) = store::sealed(layout, &version) {
            found.push(installed);
        } else if let Some(files) = unfinished_install(layout, &version, &dir) {
            give_back(layout, &version, &dir, &files);
        } else if let Some(installed) = artifact::find_installed(layout, &version) {
            // Installed before the store kept seals: decide whether it takes a turn.
            found.push(installed);
        } else {
            tracing::warn!(
                "{} holds no startable build and nothing names it: left as it is; remove it, or \
                 drop its build again",
                dir.display()
            );
        }
    }
    put_back_incoming(layout);
    found
}

/// The version folders in the base dir (`<identifier>-<semver>`, real directories).
fn version_folders(layout: &Layout) -> Vec<(Version, PathBuf)> {
    let prefix = format!("{}-", layout.identifier());
    let Ok(entries) = fs::read_dir(layout.base()) else {
        return Vec::new();
    };
    let mut out: Vec<(Version, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let v = Version::parse(name.strip_prefix(&prefix)?).ok()?;
            Some((v, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// The dropped files in a version folder whose install a stop cut short: it holds nothing but
/// builds of its version, their checksums and a (partial) `bundle/`, and never ran (no instance
/// folder). `None` for any other folder, which is not understudy's to take apart.
pub(super) fn unfinished_install(
    layout: &Layout,
    version: &Version,
    dir: &Path,
) -> Option<Vec<PathBuf>> {
    let id = layout.identifier();
    let mut files = Vec::new();
    for e in fs::read_dir(dir).ok()? {
        let e = e.ok()?;
        let name = e.file_name().into_string().ok()?;
        let is_dir = e.file_type().ok()?.is_dir();
        let build = artifact::parse_name(&name, id)
            .ok()
            .or_else(|| artifact::checksum_of(&name, id));
        match build {
            Some(b) if !is_dir && b.version == *version => files.push(e.path()),
            _ if is_dir && name == "bundle" => {}
            _ => return None,
        }
    }
    Some(files)
}

/// Move an unfinished install's dropped files to `incoming/` (an executable has its folder's
/// name, so the folder goes first), then remove the folder with what was unpacked.
fn give_back(layout: &Layout, version: &Version, dir: &Path, files: &[PathBuf]) {
    let incoming = layout.incoming_dir();
    let moved = fs::create_dir_all(&incoming).is_ok()
        && files.iter().all(|f| {
            let to = incoming.join(f.file_name().unwrap_or_default());
            artifact::move_file(f, &to)
                .inspect_err(|e| tracing::error!("{e}; move it back into the base dir by hand"))
                .is_ok()
        });
    if !moved {
        return;
    }
    match fs::remove_dir_all(dir) {
        Ok(()) => {
            store::forget(layout, version);
            tracing::warn!(
                "the install of {version} into {} was cut short by a stop: its build goes back \
                 into the base dir, to be installed again",
                dir.display()
            );
        }
        Err(e) => tracing::error!(
            "cannot remove {}, whose install was cut short: {e}; remove it by hand",
            dir.display()
        ),
    }
}

/// Move every file left in `incoming/` back into the base dir, where the watcher finds it as a
/// drop; one whose name is back there already (a copy across filesystems cut short) is an
/// unfinished copy, and goes.
fn put_back_incoming(layout: &Layout) {
    let incoming = layout.incoming_dir();
    let Ok(entries) = fs::read_dir(&incoming) else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let (from, to) = (e.path(), layout.base().join(e.file_name()));
        if fs::symlink_metadata(&to).is_ok() {
            match fs::remove_file(&from) {
                Ok(()) => tracing::warn!(
                    "{} was an unfinished copy of {}, which is still in the base dir: removed",
                    from.display(),
                    to.display()
                ),
                Err(e) => tracing::error!("cannot remove {}: {e}", from.display()),
            }
            continue;
        }
        match artifact::move_file(&from, &to) {
            Ok(()) => tracing::warn!(
                "{} was on its way into its version folder when understudy stopped: put back \
                 as {}, to be installed again",
                from.display(),
                to.display()
            ),
            Err(e) => tracing::error!("{e}; move {} into the base dir by hand", from.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::InstallLimits;

    const LIMITS: InstallLimits = InstallLimits {
        max_unpacked: u64::MAX,
        min_free_disk: 0,
    };
    const SCRIPT: &[u8] = b"#!/bin/sh\nexit 0\n";

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    /// Install an executable `app-<version>` as understudy does, sealed or not.
    fn install(layout: &Layout, version: &str, seal: bool) {
        let file = format!("app-{version}");
        std::fs::write(layout.base().join(&file), SCRIPT).unwrap();
        let name = artifact::parse_name(&file, "app").unwrap();
        let installed =
            artifact::install(layout, &layout.base().join(&file), &name, LIMITS).unwrap();
        if seal {
            store::seal(layout, &installed).unwrap();
        }
    }

    #[test]
    fn what_a_stop_cut_short_on_its_way_in_goes_back_or_is_found_and_the_rest_is_left() {
        let base = tempfile::tempdir().unwrap();
        let layout = Layout::new(base.path(), "app");
        let incoming = layout.incoming_dir();
        // Running's folder, named by state.json: nothing to do with it.
        install(&layout, "1.0.0", true);
        // Installed and sealed, then the stop: found.
        install(&layout, "1.2.0", true);
        // In its folder with its checksum, not sealed yet: goes back to be installed again.
        install(&layout, "1.1.0", false);
        std::fs::write(
            layout.version_dir(&v("1.1.0")).join("app-1.1.0.sha256"),
            "x",
        )
        .unwrap();
        // Still in incoming/: goes back. A copy cut short whose drop is still there: goes.
        std::fs::create_dir_all(&incoming).unwrap();
        std::fs::write(incoming.join("app-1.3.0.jar"), b"jar").unwrap();
        std::fs::write(incoming.join("app-1.4.0.jar"), b"ja").unwrap();
        std::fs::write(base.path().join("app-1.4.0.jar"), b"jar").unwrap();
        // A folder that ran (an instance folder) and holds no build: not understudy's to take.
        std::fs::create_dir_all(layout.version_dir(&v("0.9.0")).join("1")).unwrap();

        let found = recover(&layout, &BTreeSet::from([v("1.0.0")]));

        let found: Vec<Version> = found.into_iter().map(|i| i.version).collect();
        assert_eq!(found, vec![v("1.2.0")]);
        let back = |name: &str| base.path().join(name).is_file();
        assert!(back("app-1.1.0") && back("app-1.1.0.sha256") && back("app-1.3.0.jar"));
        assert_eq!(
            std::fs::read(base.path().join("app-1.4.0.jar")).unwrap(),
            b"jar",
            "the drop itself is kept"
        );
        assert_eq!(std::fs::read_dir(&incoming).unwrap().count(), 0);
        assert!(layout.version_dir(&v("1.0.0")).is_dir());
        assert!(layout.version_dir(&v("0.9.0")).join("1").is_dir());
        assert!(store::sealed(&layout, &v("1.2.0")).is_some());
    }

    #[test]
    fn a_folder_whose_program_is_not_the_sealed_one_is_not_taken_as_installed() {
        let base = tempfile::tempdir().unwrap();
        let layout = Layout::new(base.path(), "app");
        install(&layout, "1.2.0", true);
        let program = layout.version_dir(&v("1.2.0")).join("app-1.2.0");
        std::fs::write(&program, b"#!/bin/sh\nexit 1\n").unwrap();
        assert!(store::sealed(&layout, &v("1.2.0")).is_none());
    }
}
