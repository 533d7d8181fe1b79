//! What ran before a restart, read from disk at start for [`Input::Resume`](super::Input::Resume):
//! the state file, or where it is missing or wrong, the symlinks. Blocking reads, on a blocking
//! thread; the decisions about what was read are [`decide()`](super::decide())'s.

use std::path::Path;
use std::time::Duration;

use semver::Version;

mod recover;

use super::{HistoryShare, Persisted, Resumed};
use crate::archive;
use crate::artifact::{self, Installed};
use crate::config::Config;
use crate::hooks::HookSet;
use crate::layout::{Layout, Role};
use crate::store;

/// What was running before, with the configuration's part of [`Resumed`] filled in.
pub(super) async fn resume(layout: Layout, cfg: &Config) -> Resumed {
    let mut resumed = tokio::task::spawn_blocking(move || {
        archive::remove_stray_temps(&layout);
        archive::remove_archived_leftovers(&layout);
        let mut r = resume_from_disk(&layout);
        r.last_rejected = archive::last_rejection(&layout);
        r
    })
    .await
    .unwrap_or_default();
    resumed.promote_at = cfg.promote_at;
    resumed.schedule_grace = cfg.missed_schedule_grace;
    resumed.rollback_window = cfg.rollback_window;
    resumed.noise_cancel = cfg.diff.noise_cancel;
    resumed.canary_steps = cfg.canary.steps.clone();
    resumed.canary_window = cfg.canary.step_window;
    resumed.max_5xx_delta = cfg.score.max_5xx_delta;
    resumed.confidence = cfg.score.confidence;
    resumed.upstream_timeout = cfg.upstream_timeout;
    resumed.hooks = HookSet {
        pre_start: cfg.hooks.pre_start.is_some(),
        pre_promote: cfg.hooks.pre_promote.is_some(),
        post_promote: cfg.hooks.post_promote.is_some(),
        post_rollback: cfg.hooks.post_rollback.is_some(),
    };
    resumed
}

/// The guard's rollback journaled with the reasons its version is rejected for, and a kill
/// after that version's folder had moved into `rejected/` but before its `reason.json` was
/// written: the folder is gone, so nothing would file it again, and the rejection said no why.
/// Its reasons are written now. Blocking.
fn finish_cut_rejection(layout: &Layout, persisted: &super::state::Persisted) {
    let Some(t) = persisted.txn.as_ref() else {
        return;
    };
    let (Some(from), Some(reasons)) = (t.from.as_ref(), t.reject_from.as_ref()) else {
        return;
    };
    let moved = layout.rejected_dir().join(layout.version_name(from));
    let cut =
        !layout.version_dir(from).exists() && moved.is_dir() && !moved.join("reason.json").exists();
    if !cut {
        return;
    }
    match archive::reject_version(layout, from, reasons) {
        Ok(dir) => tracing::warn!(
            "{} was moved there by the guard's rollback, and understudy was killed before its reason.json was written: written now",
            dir.display()
        ),
        Err(e) => tracing::warn!("cannot finish the rejection of {from} a kill cut short: {e}"),
    }
}

/// Read which versions ran before a restart. Blocking. The state file says; where it is
/// missing, unreadable or names a version that is gone, the `running` and `testing` symlinks and
/// the version folders they point into say instead (with a warning), and running, lacking its
/// symlink, is the version the history's last switch names, else the `secondary` symlink's. Builds
/// a stop cut short on their way in are found too (`recover`).
fn resume_from_disk(layout: &Layout) -> Resumed {
    let path = layout.state_file();
    let persisted = read_persisted(&path);
    let had_state = persisted.is_some();
    let persisted = persisted.unwrap_or_default();
    finish_cut_rejection(layout, &persisted);
    let history = crate::history::read(&layout.history_file());
    let switches = history.as_deref().unwrap_or_default();
    let disk = Disk {
        layout,
        path: &path,
        had_state,
    };
    let running = disk
        .find(&persisted.running, Some(Role::Running))
        .or_else(|| disk.rebuilt_running(&persisted.running, switches));
    // What served before running, for a plain rollback; or what running's switch rolled back
    // from, which a plain rollback must not bring back.
    let (previous, rolled_back_from) = running
        .as_ref()
        .map(|r| before(switches, &r.version))
        .unwrap_or_default();
    // Unreadable, the history is not known to lack the switch: nothing is recorded again.
    let history_last = match &history {
        Ok(h) => h.last().map(|s| s.to.clone()),
        Err(_) => persisted.txn.as_ref().map(|t| t.version.clone()),
    };
    let history_share = match &history {
        Ok(h) => share_in_force(h),
        Err(_) => HistoryShare::Unknown,
    };
    // A `testing` symlink left from before running's promotion names running.
    let serving = running.as_ref().map(|r| &r.version);
    let testing = disk
        .find(&persisted.testing, Some(Role::Testing))
        .filter(|t| Some(&t.version) != serving);
    let tested = testing.as_ref().map(|t| &t.version);
    let mut resumed = Resumed {
        running,
        testing: testing.clone(),
        promoting: disk.find(&persisted.promoting, None),
        previous,
        rolled_back_from,
        history_last,
        history_share,
        pending: disk
            .find(&persisted.pending, None)
            .filter(|p| Some(&p.version) != tested),
        ..journaled(&persisted)
    };
    resumed.found = recover::recover(layout, &recover::accounted(&resumed, &persisted));
    if had_state && resumed == Resumed::default() {
        tracing::warn!(
            "nothing to resume: neither {} nor the symlinks name an installed build; drop a build to start",
            path.display()
        );
    }
    resumed
}

/// The parts of [`Resumed`] the state file keeps as they are; the rest at their defaults.
fn journaled(persisted: &Persisted) -> Resumed {
    Resumed {
        schedules: persisted.schedules.clone(),
        txn: persisted.txn.clone(),
        canary_window: Duration::from_secs(120),
        canary: persisted.canary.clone(),
        guard: persisted.guard.clone(),
        filings: persisted.filings.clone(),
        guard_failed: persisted.guard_failed.clone(),
        paused: persisted.paused,
        hook_block: persisted.hook_block.clone(),
        ..Resumed::default()
    }
}

/// The state file at `path`, if there is one and it reads; a warning if it is there but does
/// not.
fn read_persisted(path: &Path) -> Option<Persisted> {
    match std::fs::read_to_string(path) {
        Ok(text) => match serde_json::from_str::<Persisted>(&text) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(
                    "{} is unreadable ({e}); rebuilding state from the symlinks",
                    path.display()
                );
                None
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::warn!(
                "cannot read {} ({e}); rebuilding state from the symlinks",
                path.display()
            );
            None
        }
    }
}

/// Where the versions found at start are looked for: the state file, else the symlinks.
struct Disk<'a> {
    layout: &'a Layout,
    /// The state file.
    path: &'a Path,
    /// Whether the state file was there and read: then it alone says which versions play a part
    /// (a symlink left behind by a stop must not bring back what it no longer names).
    had_state: bool,
}

impl Disk<'_> {
    /// The installed build of the version the state file names, else (the state file lost, or
    /// naming a version that is gone) of the version `role`'s symlink points into.
    fn find(&self, named: &Option<Version>, role: Option<Role>) -> Option<Installed> {
        if let Some(v) = named {
            match artifact::find_installed(self.layout, v) {
                Some(found) => {
                    tracing::info!("resuming {v} from {}", self.path.display());
                    return Some(found);
                }
                None => {
                    // A rejection that the stop cut short, or done before the state was saved.
                    let name = self.layout.version_name(v);
                    let rejected = self.layout.rejected_dir().join(&name);
                    let there = match rejected.is_dir() {
                        true => format!(" (it is in {}: rejected)", rejected.display()),
                        false => String::new(),
                    };
                    tracing::warn!(
                        "{} names {v}, but {} holds no startable build{there}",
                        self.path.display(),
                        self.layout.version_dir(v).display()
                    )
                }
            }
        }
        let role = role.filter(|_| self.state_lacks(named))?;
        let v = linked_version(self.layout, role)?;
        let link = self.layout.link(role);
        let found = self.finished(&v, role, &format!("the {} symlink", link.display()));
        if found.is_none() {
            self.remove_link(role, &v);
        }
        found
    }

    /// Whether the state file does not say for a role: it is lost, or names a version gone.
    fn state_lacks(&self, named: &Option<Version>) -> bool {
        !self.had_state || named.is_some()
    }

    /// Running, lost with its symlink: the version the history's last switch made serve, else
    /// the one running's `secondary` symlink points into. Never a build left half-installed.
    fn rebuilt_running(
        &self,
        named: &Option<Version>,
        switches: &[crate::history::Switch],
    ) -> Option<Installed> {
        if !self.state_lacks(named) {
            return None;
        }
        let history = self.layout.history_file();
        let last = switches.iter().rev().find(|s| !s.is_share());
        let from_history = last.and_then(|s| {
            let source = format!("the last switch in {}", history.display());
            self.finished(&s.to, Role::Running, &source)
        });
        from_history.or_else(|| {
            let v = linked_version(self.layout, Role::Secondary)?;
            let link = self.layout.link(Role::Secondary);
            let source = format!("the {} symlink (running's second instance)", link.display());
            self.finished(&v, Role::Running, &source)
        })
    }

    /// The build of `v`, named by `source` (not the state file) as `role`'s, if its install finished: a
    /// folder whose install a stop cut short is not started half unpacked (`recover` gives its
    /// build back, to be installed again).
    fn finished(&self, v: &Version, role: Role, source: &str) -> Option<Installed> {
        let dir = self.layout.version_dir(v);
        let found = store::sealed(self.layout, v).or_else(|| {
            let unfinished = recover::unfinished_install(self.layout, v, &dir).is_some();
            (!unfinished)
                .then(|| artifact::find_installed(self.layout, v))
                .flatten()
        });
        match &found {
            Some(_) => tracing::warn!("rebuilt state: {role} is {v}, from {source}"),
            None => tracing::warn!(
                "{source} points into {}, which holds no startable build, or one whose install \
                 was cut short",
                dir.display()
            ),
        }
        found
    }

    /// Remove `role`'s symlink, which points into `v`'s folder, whose build is not to start: a
    /// later start must not take it for one.
    fn remove_link(&self, role: Role, v: &Version) {
        let link = self.layout.link(role);
        match self.layout.unpoint(role) {
            Ok(()) => tracing::warn!("removed {}: {v} is not resumed as {role}", link.display()),
            Err(e) => tracing::error!("cannot remove {}: {e}; remove it by hand", link.display()),
        }
    }
}

/// The version whose folder the role's symlink points into (`app-1.0.0/2` → 1.0.0).
fn linked_version(layout: &Layout, role: Role) -> Option<Version> {
    let target = std::fs::read_link(layout.link(role)).ok()?;
    let folder = target
        .strip_prefix(layout.base())
        .unwrap_or(&target)
        .components()
        .next()?
        .as_os_str()
        .to_str()?
        .to_string();
    let v = folder.strip_prefix(&format!("{}-", layout.identifier()))?;
    Version::parse(v).ok()
}

/// From the history, what a plain rollback brings back while `running` serves (the version its
/// last switch came from), or, when that switch was a rollback, the version it rolled back from
/// (which a plain rollback must not bring back): `(previous, rolled_back_from)`.
pub(super) fn before(
    switches: &[crate::history::Switch],
    running: &Version,
) -> (Option<Version>, Option<Version>) {
    let Some(last) = switches
        .iter()
        .rev()
        .find(|s| s.to == *running && !s.is_share())
    else {
        return (None, None);
    };
    crate::history::after_switch(last.from.clone(), last.why)
}

/// The canary share the history's last line leaves in force (a share line above 0 %; a switch
/// ends any share).
pub(super) fn share_in_force(switches: &[crate::history::Switch]) -> HistoryShare {
    match switches.last().and_then(|s| s.share.as_ref()) {
        Some(s) if s.percent.is_finite() && s.percent > 0.0 => {
            // Basis points, as `CANARY_STEPS` holds them.
            let weight = (s.percent * 100.0).round().min(10_000.0) as u32;
            HistoryShare::Share(s.version.clone(), weight)
        }
        _ => HistoryShare::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::InstallLimits;
    use crate::history::{Switch, SwitchWhy};

    const LIMITS: InstallLimits = InstallLimits {
        max_unpacked: u64::MAX,
        min_free_disk: 0,
    };

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    /// Install an executable `app-<version>` as understudy does, sealed or not (an install a
    /// stop cut short), and give it an instance folder `1` when it ran.
    fn install(layout: &Layout, version: &str, seal: bool) {
        let file = format!("app-{version}");
        std::fs::write(layout.base().join(&file), b"#!/bin/sh\nexit 0\n").unwrap();
        let name = artifact::parse_name(&file, "app").unwrap();
        let installed =
            artifact::install(layout, &layout.base().join(&file), &name, LIMITS).unwrap();
        if seal {
            store::seal(layout, &installed).unwrap();
            std::fs::create_dir_all(layout.instance_dir(&v(version), 1)).unwrap();
        }
    }

    fn point(layout: &Layout, role: Role, version: &str) {
        layout
            .point(role, &layout.instance_dir(&v(version), 1))
            .unwrap();
    }

    fn version(i: &Option<Installed>) -> Option<String> {
        i.as_ref().map(|i| i.version.to_string())
    }

    /// The state file and the `running` symlink lost: running is what the history's last switch
    /// made serve, else what the `secondary` symlink points into; never a build to test, which
    /// would be archived as older than the one under test.
    #[test]
    fn running_lost_with_its_symlink_is_rebuilt_from_the_history_else_the_secondary() {
        for history in [true, false] {
            let base = tempfile::tempdir().unwrap();
            let layout = Layout::new(base.path(), "app");
            install(&layout, "1.0.0", true);
            install(&layout, "1.1.0", true);
            point(&layout, Role::Testing, "1.1.0");
            point(&layout, Role::Secondary, "1.0.0");
            if history {
                let switch = Switch {
                    at: "2026-12-01T00:00:00Z".to_string(),
                    from: None,
                    to: v("1.0.0"),
                    why: SwitchWhy::First,
                    share: None,
                };
                crate::history::append(&layout.history_file(), &switch).unwrap();
                // The secondary's symlink says nothing when the history does.
                point(&layout, Role::Secondary, "1.1.0");
            }
            let r = resume_from_disk(&layout);
            let parts = (version(&r.running), version(&r.testing));
            let want = (Some("1.0.0".to_string()), Some("1.1.0".to_string()));
            assert_eq!(parts, want, "history: {history}");
            assert!(r.found.is_empty(), "{:?}", r.found);
        }
    }

    /// A `testing` symlink left behind into a folder whose install a stop cut short: never taken
    /// for the build under test, whether the state file is there (it names no build under test)
    /// or lost; the build goes back into the base dir to be installed again, and with the state
    /// file lost, the symlink is removed.
    #[test]
    fn a_symlink_into_an_install_cut_short_brings_nothing_back_and_the_build_goes_back() {
        for state in [true, false] {
            let base = tempfile::tempdir().unwrap();
            let layout = Layout::new(base.path(), "app");
            install(&layout, "1.0.0", true);
            point(&layout, Role::Running, "1.0.0");
            install(&layout, "2.0.0", false);
            point(&layout, Role::Testing, "2.0.0");
            if state {
                std::fs::create_dir_all(layout.state_dir()).unwrap();
                let text = r#"{"running":"1.0.0","testing":null}"#;
                std::fs::write(layout.state_file(), text).unwrap();
            }
            let r = resume_from_disk(&layout);
            assert_eq!(version(&r.running), Some("1.0.0".to_string()));
            assert_eq!(version(&r.testing), None, "state file: {state}");
            assert!(
                base.path().join("app-2.0.0").is_file(),
                "given back, its folder gone"
            );
            assert!(!layout.version_dir(&v("2.0.0")).is_dir());
            let link = std::fs::symlink_metadata(layout.link(Role::Testing));
            assert_eq!(
                link.is_ok(),
                state,
                "the symlink removed with the state file lost"
            );
        }
    }

    /// A symlink into a version with no startable build (its folder removed) is removed.
    #[test]
    fn a_symlink_into_a_version_with_no_startable_build_is_removed() {
        let base = tempfile::tempdir().unwrap();
        let layout = Layout::new(base.path(), "app");
        install(&layout, "1.0.0", true);
        point(&layout, Role::Running, "1.0.0");
        point(&layout, Role::Testing, "2.0.0");
        std::fs::create_dir_all(layout.state_dir()).unwrap();
        let text = r#"{"running":"1.0.0","testing":"2.0.0"}"#;
        std::fs::write(layout.state_file(), text).unwrap();
        let r = resume_from_disk(&layout);
        assert_eq!(version(&r.testing), None);
        assert!(std::fs::symlink_metadata(layout.link(Role::Testing)).is_err());
        assert!(std::fs::symlink_metadata(layout.link(Role::Running)).is_ok());
    }
}

#[cfg(test)]
mod cut_rejection_tests {
    use super::*;
    use crate::history::SwitchWhy;
    use crate::supervisor::state::{Txn, TxnKind, TxnStep};

    /// Killed after the guard's rollback moved 1.1.0 into `rejected/`, before its reason.json:
    /// the start writes it, with the reasons the journal kept. A whole rejection is left alone.
    #[test]
    fn a_rejection_cut_short_by_a_kill_gets_its_reasons_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path(), "app");
        let v = Version::parse("1.1.0").unwrap();
        let moved = layout.rejected_dir().join("app-1.1.0");
        std::fs::create_dir_all(&moved).unwrap();
        std::fs::write(moved.join("app-1.1.0"), "#!/bin/sh\n").unwrap();
        let persisted = Persisted {
            txn: Some(Txn {
                kind: TxnKind::Rollback,
                version: Version::parse("1.0.0").unwrap(),
                from: Some(v),
                step: TxnStep::Ready,
                why: SwitchWhy::Rollback,
                reject_from: Some(vec!["rolled back by the guard: 5xx rate 100.0%".into()]),
            }),
            ..Persisted::default()
        };
        finish_cut_rejection(&layout, &persisted);
        let reason = std::fs::read_to_string(moved.join("reason.json")).unwrap();
        assert!(reason.contains("rolled back by the guard"), "{reason}");
        assert!(moved.join("app-1.1.0").is_file(), "the build stays");
        std::fs::write(moved.join("reason.json"), "{\"kept\":1}").unwrap();
        finish_cut_rejection(&layout, &persisted);
        let kept = std::fs::read_to_string(moved.join("reason.json")).unwrap();
        assert_eq!(kept, "{\"kept\":1}");
    }
}
