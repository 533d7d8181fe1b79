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

/// What was running before, with the configuration's part of [`Resumed`] filled in.
pub(super) async fn resume(layout: Layout, cfg: &Config) -> Resumed {
    let mut resumed = tokio::task::spawn_blocking(move || {
        archive::remove_stray_temps(&layout);
        archive::remove_archived_leftovers(&layout);
        resume_from_disk(&layout)
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

/// Read which versions ran before a restart. Blocking. The state file says; where it is
/// missing, unreadable or names a version that is gone, the `running` and `testing` symlinks and
/// the version folders they point into say instead (with a warning). Builds a stop cut short on
/// their way in are found too (`recover`).
fn resume_from_disk(layout: &Layout) -> Resumed {
    let path = layout.state_file();
    let persisted = read_persisted(&path);
    let had_state = persisted.is_some();
    let persisted = persisted.unwrap_or_default();
    let find = |named: &Option<Version>, role| find_installed(layout, &path, named, role);
    let running = find(&persisted.running, Some(Role::Running));
    // What served before running, for a plain rollback; or what running's switch rolled back
    // from, which a plain rollback must not bring back.
    let history = crate::history::read(&layout.history_file());
    let switches = history.as_deref().unwrap_or_default();
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
    let testing = find(&persisted.testing, Some(Role::Testing));
    let tested = testing.as_ref().map(|t| &t.version);
    let mut resumed = Resumed {
        running,
        testing: testing.clone(),
        promoting: find(&persisted.promoting, None),
        previous,
        rolled_back_from,
        history_last,
        history_share,
        schedules: persisted.schedules.clone(),
        promote_at: None,
        schedule_grace: Duration::ZERO,
        txn: persisted.txn.clone(),
        hooks: Default::default(),
        rollback_window: Duration::ZERO,
        max_5xx_delta: 0.0,
        confidence: 0.0,
        upstream_timeout: Duration::ZERO,
        noise_cancel: false,
        canary_steps: Vec::new(),
        canary_window: Duration::from_secs(120),
        canary: persisted.canary.clone(),
        guard: persisted.guard.clone(),
        pending: find(&persisted.pending, None).filter(|p| Some(&p.version) != tested),
        filings: persisted.filings.clone(),
        guard_failed: persisted.guard_failed.clone(),
        paused: persisted.paused,
        found: Vec::new(),
        handed: Vec::new(),
        taking_over: false,
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

/// The installed build of the version the state file (at `path`) names, else of the version
/// `role`'s symlink points into.
fn find_installed(
    layout: &Layout,
    path: &Path,
    named: &Option<Version>,
    role: Option<Role>,
) -> Option<Installed> {
    if let Some(v) = named {
        match artifact::find_installed(layout, v) {
            Some(found) => {
                tracing::info!("resuming {v} from {}", path.display());
                return Some(found);
            }
            None => tracing::warn!(
                "{} names {v}, but {} holds no startable build",
                path.display(),
                layout.version_dir(v).display()
            ),
        }
    }
    let role = role?;
    let v = linked_version(layout, role)?;
    let found = artifact::find_installed(layout, &v);
    match &found {
        Some(_) => tracing::warn!(
            "rebuilt state: {role} is {v}, from the {} symlink",
            layout.link(role).display()
        ),
        None => tracing::warn!(
            "the {} symlink points into {}, which holds no startable build",
            layout.link(role).display(),
            layout.version_dir(&v).display()
        ),
    }
    found
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
