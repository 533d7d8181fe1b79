//! Which archive a retired build goes to. `archive/<identifier>-<version>.zip` is what a rollback
//! to that version brings back, and a rollback goes only to a version that served: a build of a
//! version that served before, dropped again and retired without serving itself, must not take
//! that name, or a rollback would put a build no user ever got in front of every user. It is
//! archived apart instead ([`Layout::unserved_zip`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use semver::Version;

use crate::layout::Layout;

/// Where version `v`'s folder `dir` is archived: its rollback archive, unless `v` served here
/// (as the history says) but the build in `dir` never did, when it is its unserved archive. An
/// unreadable history keeps the rollback archive, as before the history was looked at.
pub(super) fn archive_for(layout: &Layout, v: &Version, dir: &Path) -> PathBuf {
    let served = layout.archive_zip(v);
    let switches = match crate::history::read(&layout.history_file()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(
                "cannot read {} to tell whether the build of {v} served: {e}; archiving it as \
                 {}",
                layout.history_file().display(),
                served.display()
            );
            return served;
        }
    };
    if !crate::history::served_since(&switches, v, None) {
        return served; // no rollback goes to it: nothing to keep apart from
    }
    let this_build = match first_start(dir) {
        Start::Never => false,
        Start::Unknown => true,
        Start::At(t) => crate::history::served_since(&switches, v, Some(t)),
    };
    if this_build {
        return served;
    }
    let apart = layout.unserved_zip(v);
    tracing::info!(
        "the build of {v} in {} never served users (an earlier build of {v} did): archived as \
         {}, apart from {}, which a rollback to {v} brings back",
        dir.display(),
        apart.display(),
        served.display()
    );
    apart
}

/// When the first instance of a version folder started.
enum Start {
    /// No instance folder: the build never started.
    Never,
    /// Instance folders that do not say when they started (written by an older understudy).
    Unknown,
    At(SystemTime),
}

/// When the first instance in version folder `dir` started, from its `instance.json`s.
fn first_start(dir: &Path) -> Start {
    let Ok(rd) = fs::read_dir(dir) else {
        return Start::Never;
    };
    let mut any = false;
    let mut first: Option<u64> = None;
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name();
        let is_instance = name
            .to_str()
            .is_some_and(|n| crate::layout::instance_number(n).is_some());
        if !is_instance || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        any = true;
        let started = fs::read(e.path().join("instance.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|j| j["started_unix_ms"].as_u64());
        if let Some(ms) = started {
            first = Some(first.map_or(ms, |f| f.min(ms)));
        }
    }
    match (any, first) {
        (false, _) => Start::Never,
        (true, None) => Start::Unknown,
        (true, Some(ms)) => Start::At(UNIX_EPOCH + Duration::from_millis(ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Switch, SwitchWhy};

    fn build(l: &Layout, v: &Version, program: &str, started_unix_ms: u64) {
        let idir = l.instance_dir(v, 1);
        fs::create_dir_all(&idir).unwrap();
        fs::write(l.version_dir(v).join("app-1.1.0"), program).unwrap();
        let info = serde_json::json!({ "role": "testing", "started_unix_ms": started_unix_ms });
        fs::write(idir.join("instance.json"), info.to_string()).unwrap();
    }

    fn switch(l: &Layout, to: &str, at: &str) {
        let sw = Switch {
            at: at.into(),
            from: None,
            to: Version::parse(to).unwrap(),
            why: SwitchWhy::Operator,
            share: None,
        };
        crate::history::append(&l.history_file(), &sw).unwrap();
    }

    fn program_in(zip: &Path) -> String {
        let mut a = zip::ZipArchive::new(fs::File::open(zip).unwrap()).unwrap();
        let mut s = String::new();
        std::io::Read::read_to_string(&mut a.by_name("app-1.1.0/app-1.1.0").unwrap(), &mut s)
            .unwrap();
        s
    }

    /// 1.1.0 served and was archived; a later build of 1.1.0, tested and superseded, never
    /// served: it is archived apart, and the archive a rollback to 1.1.0 brings back is still
    /// the build that served.
    #[test]
    fn a_build_that_never_served_is_archived_apart_from_the_one_that_did() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path(), "app");
        let v = Version::parse("1.1.0").unwrap();
        // 2026-12-01T01:00:00Z and a minute before it.
        let one = 1_796_086_800_000u64;
        build(&l, &v, "served", one - 60_000);
        switch(&l, "1.1.0", "2026-12-01T01:00:00Z");
        switch(&l, "1.0.0", "2026-12-01T02:00:00Z");
        assert_eq!(
            crate::archive::archive_version(&l, &v).unwrap(),
            l.archive_zip(&v)
        );
        // Dropped again at 03:00, never switched to.
        build(&l, &v, "never served", one + 2 * 3_600_000);
        assert_eq!(
            crate::archive::archive_version(&l, &v).unwrap(),
            l.unserved_zip(&v)
        );
        assert_eq!(program_in(&l.archive_zip(&v)), "served");
        assert_eq!(program_in(&l.unserved_zip(&v)), "never served");
        // Dropped again, switched to at 05:00: it served, and is now what a rollback brings.
        build(&l, &v, "served later", one + 3 * 3_600_000);
        switch(&l, "1.1.0", "2026-12-01T05:00:00Z");
        assert_eq!(
            crate::archive::archive_version(&l, &v).unwrap(),
            l.archive_zip(&v)
        );
        assert_eq!(program_in(&l.archive_zip(&v)), "served later");
        // A version that never served at all keeps its usual archive name, as before.
        let w = Version::parse("2.0.0").unwrap();
        fs::create_dir_all(l.version_dir(&w)).unwrap();
        assert_eq!(
            crate::archive::archive_version(&l, &w).unwrap(),
            l.archive_zip(&w)
        );
    }

    /// An unserved archive weighs on the budget like any archive and goes like one; a name that
    /// only looks like it stays.
    #[test]
    fn the_collection_deletes_an_unserved_archive_as_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path(), "app");
        let v = Version::parse("1.1.0").unwrap();
        fs::create_dir_all(l.archive_dir()).unwrap();
        fs::write(l.unserved_zip(&v), vec![0u8; 4096]).unwrap();
        let foreign = l.archive_dir().join("app-1.1.0~mine.zip");
        fs::write(&foreign, b"notes").unwrap();
        let limits = crate::archive::Limits {
            max_base_size: 100,
            min_free_disk: 0,
        };
        let c = crate::archive::collect_garbage(&l, limits);
        let deleted: Vec<&Path> = c.deleted.iter().map(|d| d.path.as_path()).collect();
        assert_eq!(deleted, vec![l.unserved_zip(&v).as_path()]);
        assert!(foreign.is_file());
    }
}
