//! A dropped build on its way in: one install at a time (later drops wait their turn, one entry
//! per file, and one whose version's earlier build is still being filed away waits for that to
//! end; one gone or being written again when its turn comes gives it up), refused
//! unless newer than what runs and what is tested, placed as running (replacing a crash-looping
//! one, and turning away builds under test no newer than it) or as the build to test, and held
//! at `PRE_START` until its hook agrees.

use semver::Version;

use super::filing::filing_version;
use super::{Action, Decision, Withdrawn, MAX_RUNNING_RESTARTS};
use crate::artifact::Installed;
use crate::events::Event;
use crate::history::SwitchWhy;
use crate::instance::InstanceId;
use crate::layout::Role;
use crate::supervisor::state::{AfterStop, Phase, Slot, TxnStep};
use crate::watcher::Dropped;

impl Decision<'_> {
    pub(super) fn dropped(&mut self, dropped: Dropped) {
        // One entry per file: a later report of it (written again, or touched) takes the place
        // of the one waiting, or the file would be installed once and refused the next time.
        if let Some(queued) = self
            .s
            .drops
            .iter_mut()
            .find(|(d, _)| d.path == dropped.path)
        {
            queued.0 = dropped;
            return;
        }
        let version = dropped.name.version.clone();
        self.emit(Event::BuildFound {
            file: dropped.name.file_name.clone(),
            version: version.clone(),
        });
        // One install at a time; the refusal rule is applied when its turn comes.
        self.s.drops.push_back((dropped, false));
    }

    /// Give the next waiting drop its turn once no install is under way. A drop that would be
    /// installed while an earlier build of its version is still being filed away waits (said
    /// once) and lets later drops by: installed into the folder on its way out, it would go to
    /// `rejected/` or the archive with it.
    pub(super) fn admit_drops(&mut self) {
        while self.s.installing.is_none() {
            let Some(i) = self.next_drop() else {
                break;
            };
            let (dropped, _) = self.s.drops.remove(i).expect("next_drop found it");
            self.consider(dropped);
        }
    }

    /// The first drop that may have its turn now (to be installed or refused), telling each one
    /// passed over why it waits.
    fn next_drop(&mut self) -> Option<usize> {
        for i in 0..self.s.drops.len() {
            let (dropped, told) = &self.s.drops[i];
            let version = dropped.name.version.clone();
            let refused = self.drop_refusal(dropped).is_some();
            let Some(reason) = self.leaving(&version).filter(|_| !refused) else {
                return Some(i);
            };
            if !*told {
                let file = dropped.name.file_name.clone();
                self.s.drops[i].1 = true;
                self.emit(Event::BuildWaiting {
                    file: file.clone(),
                    reason: format!(
                        "{reason}; {file} stays in the base dir until then, and is installed \
                         as a fresh build"
                    ),
                    version,
                });
            }
        }
        None
    }

    /// Why an earlier build of `version` is still on its way out of its folder, if it is.
    fn leaving(&self, version: &Version) -> Option<String> {
        let retiring = self.s.retiring.values().find(|r| r.version == *version);
        if let Some(r) = retiring {
            let then = match r.after {
                AfterStop::Reject(_) => "then its folder moves to rejected/",
                AfterStop::ArchiveIfUnused => "then its folder is archived",
                AfterStop::Keep => "and its folder may be filed away then",
            };
            return Some(format!(
                "an instance of {version} is still stopping, {then}"
            ));
        }
        // Sent, or failed and waiting for its retry.
        let filing = self.s.filing.iter().chain(&self.s.refile);
        let rejecting = filing
            .filter(|(a, _)| filing_version(a) == Some(version))
            .map(|(a, _)| matches!(a, Action::Reject { .. }))
            .max()?;
        Some(if rejecting {
            format!("the folder of {version} is being moved to rejected/")
        } else {
            format!("the folder of {version} is being archived")
        })
    }

    /// A drop whose turn came was gone or being written again: the turn passes on. One being
    /// written waits for the watcher to report it complete, and is then a drop like any other.
    pub(super) fn withdrawn(&mut self, dropped: Dropped, why: Withdrawn, install: bool) {
        let version = dropped.name.version;
        if install && self.s.installing.as_ref() == Some(&version) {
            self.s.installing = None;
            self.s.aborting_install = false;
        }
        if why == Withdrawn::BeingWritten {
            let file = dropped.name.file_name;
            self.emit(Event::BuildWaiting {
                reason: format!(
                    "{file} was being written again when its turn came: it is taken once its \
                     writer is done with it"
                ),
                file,
                version,
            });
        }
    }

    pub(super) fn consider(&mut self, dropped: Dropped) {
        match self.drop_refusal(&dropped) {
            Some(reason) => self.out.push(Action::Refuse { dropped, reason }),
            None => {
                self.s.installing = Some(dropped.name.version.clone());
                self.out.push(Action::Install(dropped));
            }
        }
    }

    /// Why a dropped build is turned away, if it is: a name too long to handle (it would fail
    /// half-way), or a version not newer than what runs and what is tested.
    fn drop_refusal(&self, dropped: &Dropped) -> Option<String> {
        let version = &dropped.name.version;
        crate::artifact::name_refusal(&dropped.name.file_name)
            .or_else(|| refusal(version, self.newest_serving(), self.candidate_version()))
    }

    /// The newest version that serves or is about to: during a rollback the one still serving
    /// is newer than the target, and a drop of it would be installed into the folder in use.
    fn newest_serving(&self) -> Option<&Version> {
        let serving = [self.s.next.as_ref(), self.s.running.as_ref()];
        serving
            .into_iter()
            .flatten()
            .map(Slot::version)
            .chain(self.s.restart.as_ref().map(|r| &r.installed.version))
            .max()
    }

    pub(super) fn installed(&mut self, version: Version, result: Result<Installed, String>) {
        let mut aborted = false;
        if self.s.installing.as_ref() == Some(&version) {
            self.s.installing = None;
            aborted = std::mem::take(&mut self.s.aborting_install);
        }
        let result = match result {
            Ok(_) if aborted => Err("aborted by operator".to_string()),
            other => other,
        };
        match result {
            Err(reason) => {
                let reject = Action::Reject {
                    version,
                    reasons: vec![reason],
                };
                self.file_away(reject, 0)
            }
            Ok(installed) => {
                self.emit(Event::Installed {
                    version: installed.version.clone(),
                });
                self.place(installed)
            }
        }
    }

    /// An installed build: the first one serves; later ones are tested once running is ready.
    pub(super) fn place(&mut self, installed: Installed) {
        let nothing_serves =
            self.s.running.is_none() && self.s.next.is_none() && self.s.restart.is_none();
        if nothing_serves {
            // A build waiting since before a start that found no running is not tested against
            // a newer one.
            let older = |p: &Installed| p.version <= installed.version;
            if let Some(old) = self.s.pending.take_if(|p| older(p)) {
                self.archive_if_unused(old.version);
            }
            let slot = self.new_slot(Role::Running, installed, false);
            self.s.running = Some(slot);
            // Users wait for it rather than be told to drop a build (`State::restart_held`).
            self.publish_routes();
            return;
        }
        let crash_looping = self.s.failures > MAX_RUNNING_RESTARTS && self.s.running.is_none();
        if crash_looping && self.s.restart.is_some() {
            self.replace_crash_loop(installed);
            return;
        }
        if let Some(old) = self.s.pending.replace(installed) {
            // A newer build supersedes one that never started.
            self.archive_if_unused(old.version);
        }
        self.start_pending();
    }

    /// Running is crash-looping: `installed` is the way out, as the log promised, and serves at
    /// once. A build under test or waiting that is not newer than it is turned away as the
    /// install rule would have refused it: left there, promoting it would be a downgrade. So is
    /// a promotion (or rollback) of an older build still starting: it is called off, or its
    /// switch would replace the build dropped later once it got ready.
    fn replace_crash_loop(&mut self, installed: Installed) {
        let Some(r) = self.s.restart.take() else {
            return;
        };
        let (new, old) = (installed.version.clone(), r.installed.version.clone());
        let why = |v: &Version| {
            refusal(v, Some(&new), None).map(|refused| {
                format!("{new} replaced the crash-looping {old} as running, and {refused}")
            })
        };
        self.emit(Event::CrashLoopReplaced {
            version: new.clone(),
            replaced: old.clone(),
            failures: self.s.failures,
        });
        self.s.failures = 0;
        if let Some(reason) = self.s.next.as_ref().and_then(|n| why(n.version())) {
            // Rejected like a build under test (a rollback's version goes back to the archive).
            self.abort_promotion(vec![reason]);
        }
        self.archive_if_unused(r.installed.version);
        self.s.switch_why = Some(SwitchWhy::CrashLoop);
        let slot = self.new_slot(Role::Running, installed, false);
        self.s.running = Some(slot);
        // A newer one (the install rule keeps it from happening) would go on being tested
        // against the new running.
        if let Some(reason) = self.s.testing.as_ref().and_then(|t| why(t.version())) {
            self.reject_testing(vec![reason]);
        }
        if let Some(reason) = self.s.pending.as_ref().and_then(|p| why(&p.version)) {
            let pending = self.s.pending.take().expect("checked above");
            self.emit(Event::Rejecting {
                version: pending.version.clone(),
                reasons: vec![reason.clone()],
            });
            let reject = Action::Reject {
                version: pending.version,
                reasons: vec![reason],
            };
            self.file_away(reject, 0);
        }
        self.publish_routes();
    }

    /// At start: installed builds no part holds yet, the one saved as waiting (`pending`) and
    /// those found in folders `state.json` did not name (`found`: an install, or a wait for a
    /// turn, cut short by a stop). Oldest first, each takes its turn as if just installed when
    /// the install rule takes it (newer than running and the build under test), so the newest
    /// waits; else it is archived, and the event says why.
    pub(super) fn resume_found(&mut self, pending: Option<Installed>, found: Vec<Installed>) {
        let mut builds: Vec<(Installed, bool)> = pending.map(|p| (p, false)).into_iter().collect();
        builds.extend(found.into_iter().map(|f| (f, true)));
        builds.sort_by(|a, b| a.0.version.cmp(&b.0.version));
        for (installed, found) in builds {
            let version = installed.version.clone();
            let refused = refusal(&version, self.newest_serving(), self.candidate_version());
            let outcome = match &refused {
                None => "it takes its turn as if just installed".to_string(),
                Some(why) => format!("{why}, so its folder is archived"),
            };
            let how = if found {
                "found installed in its folder, which state.json did not name (its install, or \
                 its wait for a turn, was cut short by a stop)"
            } else {
                "saved as waiting to be tested"
            };
            if found || refused.is_some() {
                self.emit(Event::BuildRecovered {
                    version: version.clone(),
                    outcome: format!("{how}: {outcome}"),
                });
            }
            match refused {
                None => self.place(installed),
                Some(_) => self.archive_if_unused(version),
            }
        }
    }

    /// Start the pending build as testing once running is ready and no promotion is under way:
    /// from the moment one is accepted (its `PRE_PROMOTE` included), or a newer drop would
    /// take the promoted build out of testing and the promotion would be lost without a word.
    pub(super) fn start_pending(&mut self) {
        let running_ready = self.s.running.as_ref().is_some_and(Slot::is_ready);
        let pre_promote = self
            .s
            .txn
            .as_ref()
            .is_some_and(|t| t.step == TxnStep::PrePromote);
        if !running_ready || self.s.next.is_some() || pre_promote {
            return;
        }
        let Some(installed) = self.s.pending.take() else {
            return;
        };
        // Users a canary step sent to the build it replaces finish their requests.
        let drain = self.canary_weight() > 0;
        if let Some(old) = self.s.testing.take() {
            self.unroute_testing(&old);
            self.retire(old, drain, AfterStop::ArchiveIfUnused);
        }
        let slot = self.new_slot(Role::Testing, installed, false);
        self.s.testing = Some(slot);
    }

    pub(super) fn pre_start_done(&mut self, id: Option<InstanceId>, result: Result<(), String>) {
        let Some(id) = id else {
            return;
        };
        let Some(part) = self.part_of(id) else {
            return; // retired meanwhile
        };
        let slot = self.slot_mut(part).expect("part_of found it");
        let Phase::PreStart { port } = slot.phase else {
            return;
        };
        match result {
            Ok(()) => {
                slot.phase = Phase::Starting { port };
                let action = Action::Start {
                    id,
                    role: slot.role,
                    installed: slot.installed.clone(),
                    port,
                };
                self.out.push(action);
            }
            Err(e) => {
                slot.phase = Phase::NeedsPort;
                self.s.taken.remove(&port);
                self.failed(part, format!("was refused by PRE_START: {e}"));
            }
        }
    }
}

/// Why a build is not started: it must be newer than running and than the build being tested.
pub(in crate::supervisor) fn refusal(
    v: &Version,
    running: Option<&Version>,
    candidate: Option<&Version>,
) -> Option<String> {
    match (running, candidate) {
        (Some(r), _) if v <= r => Some(format!(
            "{v} is not newer than running {r}: drop a higher version"
        )),
        (_, Some(t)) if v <= t => Some(format!(
            "{v} is not newer than {t}, which is being tested: drop a higher version"
        )),
        _ => None,
    }
}
