//! Filing versions away (archive or `rejected/`) with retries, the collection timer, and the disk
//! the state files are written to.

use std::collections::BTreeMap;

use semver::Version;

use super::{Action, Decision, Filed, GC_EVERY, MAX_FILING_ATTEMPTS};
use crate::events::Event;
use crate::supervisor::state::{AfterStop, JournaledFiling, Slot, TxnStep};

impl Decision<'_> {
    /// The state files could not be written (or can again): say so once each way.
    pub(super) fn disk(&mut self, failing: Option<String>) {
        let was = std::mem::replace(&mut self.s.disk_full, failing.clone());
        match (was, failing) {
            (None, Some(why)) => self.emit(Event::DiskFull { why }),
            (Some(_), None) => self.emit(Event::DiskRecovered),
            _ => {}
        }
    }

    /// A collection finished: tell what it deleted, and that the base dir stays over budget
    /// once when it starts to (not at every collection while it lasts), and when it stops.
    pub(super) fn collected(&mut self, c: crate::archive::Collection) {
        let (_, again) = std::mem::take(&mut self.s.collecting);
        self.restore_if_clear();
        if again {
            self.collect();
        }
        for d in c.deleted {
            self.emit(match d.rejected {
                true => Event::RejectedDeleted {
                    dir: d.path,
                    reason: d.reason,
                },
                false => Event::ArchiveDeleted {
                    zip: d.path,
                    reason: d.reason,
                },
            });
        }
        if c.failed {
            return; // nothing measured: the budget stands as last said
        }
        let over = c.over_budget.is_some();
        match (
            std::mem::replace(&mut self.s.over_budget, over),
            c.over_budget,
        ) {
            (false, Some(why)) => self.emit(Event::OverBudget { why }),
            (true, None) => self.emit(Event::WithinBudget),
            _ => {}
        }
    }

    /// Ask for a collection pass, or for one more once the pass under way is done, or once a
    /// rollback's restore is done: a pass could delete the archive the restore unpacks.
    pub(super) fn collect(&mut self) {
        if self.s.restoring.is_some() && !self.s.collecting.0 {
            self.s.collecting.1 = true;
            return;
        }
        match self.s.collecting {
            (false, _) => {
                self.s.collecting = (true, false);
                self.out.push(Action::Collect);
            }
            (true, _) => self.s.collecting.1 = true,
        }
    }

    pub(super) fn tick(&mut self) {
        if self.s.taking_over {
            return;
        }
        self.restart_if_due();
        if self.now >= self.s.next_gc {
            self.s.next_gc = self.now + GC_EVERY;
            self.collect();
            // Each retry is decided again now: the version may be in use again since it failed.
            for (action, attempts) in std::mem::take(&mut self.s.refile) {
                self.file_away(action, attempts);
            }
        }
    }

    pub(super) fn archive_if_unused(&mut self, version: Version) {
        self.file_away(Action::Archive(version), 0);
    }

    /// What `version` is still used as (its folder must stay), if anything: a part an instance
    /// plays or is about to, a build on its way in, a rollback's.
    pub(super) fn in_use(&self, version: &Version) -> Option<&'static str> {
        let s = &*self.s;
        let slot = |x: &Option<Slot>| x.as_ref().is_some_and(|x| x.version() == version);
        let uses = [
            (slot(&s.running) || slot(&s.spare), "running"),
            (
                s.restart
                    .as_ref()
                    .is_some_and(|r| r.installed.version == *version),
                "running (restarting)",
            ),
            (slot(&s.secondary), "running's secondary"),
            (
                slot(&s.next)
                    || s.canary_out
                        .as_ref()
                        .is_some_and(|(c, _)| c.version() == version),
                "being promoted",
            ),
            (slot(&s.testing), "under test"),
            (
                s.pending.as_ref().is_some_and(|p| p.version == *version),
                "waiting to be tested",
            ),
            (s.installing.as_ref() == Some(version), "being installed"),
            (
                s.restoring.as_ref().is_some_and(|(v, _)| v == version),
                "being restored for a rollback",
            ),
            (
                s.guard.as_ref().is_some_and(|g| g.from == *version),
                "kept for a rollback until ROLLBACK_WINDOW ends",
            ),
            (
                // Hook first, then archive: the switch's POST_* hook may still look at it.
                s.txn.as_ref().is_some_and(|t| {
                    t.step >= TxnStep::Switched && t.from.as_ref() == Some(version)
                }),
                "replaced by the switch under way, kept until its POST_* hook has run",
            ),
        ];
        uses.into_iter()
            .find(|(used, _)| *used)
            .map(|(_, what)| what)
    }

    /// The version folders on their way out, for `state.json`: once an instance of them is
    /// reaped, sent and not yet reported, or waiting for a retry; a rejection outranks an
    /// archive, and an archive of a version in use again is no longer due.
    pub(super) fn journaled_filings(&self) -> Vec<JournaledFiling> {
        let s = &*self.s;
        let leaving = s.retiring.values().map(|r| (&r.version, &r.after));
        let filings = s
            .filing
            .iter()
            .chain(&s.refile)
            .filter_map(|(a, _)| match a {
                Action::Archive(v) => Some((v, AfterStop::ArchiveIfUnused)),
                Action::Reject { version, reasons } => {
                    Some((version, AfterStop::Reject(reasons.clone())))
                }
                _ => None,
            });
        let mut by_version: BTreeMap<&Version, AfterStop> = BTreeMap::new();
        for (v, after) in leaving.map(|(v, a)| (v, a.clone())).chain(filings) {
            let kept = by_version.entry(v).or_insert(AfterStop::Keep);
            if rank(&after) > rank(kept) {
                *kept = after;
            }
        }
        by_version
            .into_iter()
            .filter_map(|(v, after)| match after {
                AfterStop::Keep => None,
                AfterStop::ArchiveIfUnused if self.in_use(v).is_some() => None,
                AfterStop::ArchiveIfUnused => Some(JournaledFiling {
                    version: v.clone(),
                    reject: None,
                }),
                AfterStop::Reject(reasons) => Some(JournaledFiling {
                    version: v.clone(),
                    reject: Some(reasons),
                }),
            })
            .collect()
    }

    /// At start: file away what a stop cut short on its way out (unless it is in use again).
    pub(super) fn resume_filings(&mut self, filings: Vec<JournaledFiling>) {
        for f in filings {
            let action = match f.reject {
                Some(reasons) => Action::Reject {
                    version: f.version,
                    reasons,
                },
                None => Action::Archive(f.version),
            };
            if self.s.taking_over {
                // The old understudy may go on and file it itself: sent once this one serves.
                self.s.refile.push((action, 0));
                continue;
            }
            self.file_away(action, 0);
        }
    }

    /// Whether an archive or rejection of `version` is under way (sent, not yet reported).
    pub(super) fn being_filed(&self, version: &Version) -> bool {
        self.s
            .filing
            .iter()
            .any(|(a, _)| filing_version(a) == Some(version))
    }

    /// Send an archive or rejection (`attempts` made before) now that it is due, unless its
    /// version is in use again: then it is called off (the folder stays, and is filed once the
    /// version is retired again). An instance of it still stopping files it once it is reaped.
    pub(super) fn file_away(&mut self, action: Action, attempts: u32) {
        let Some(version) = filing_version(&action).cloned() else {
            return;
        };
        let (what, after) = match &action {
            Action::Reject { reasons, .. } => ("rejection", AfterStop::Reject(reasons.clone())),
            _ => ("archive", AfterStop::ArchiveIfUnused),
        };
        let mut stopping = false;
        for r in self.s.retiring.values_mut() {
            if r.version == version {
                stopping = true;
                // A rejection outranks an archive, which outranks keeping the folder.
                if rank(&after) > rank(&r.after) {
                    r.after = after.clone();
                }
            }
        }
        if let Some(used) = self.in_use(&version) {
            // An archive of a version in use is the everyday case (asked at every retirement).
            if what == "rejection" || attempts > 0 {
                self.emit(Event::FilingCalledOff {
                    reason: format!(
                        "{version} is {used}: its folder stays, and is filed away once nothing uses it"
                    ),
                    version,
                    what: what.into(),
                });
            }
        } else if !stopping {
            self.s.filing.push((action.clone(), attempts));
            self.out.push(action);
        }
    }

    pub(super) fn filed(
        &mut self,
        version: Version,
        result: Result<Filed, String>,
        filing: Option<Action>,
    ) {
        let sent = self
            .s
            .filing
            .iter()
            .position(|(a, _)| Some(a) == filing.as_ref());
        let attempts = sent.map_or(0, |i| self.s.filing.remove(i).1) + 1;
        if result.is_ok() {
            self.s.filing_failed.remove(&version);
        }
        match result {
            Ok(Filed::Archived(zip)) => self.emit(Event::Archived {
                version: version.clone(),
                zip,
            }),
            Ok(Filed::Rejected(reasons)) => {
                self.s.last_rejected = Some((version.clone(), self.now, reasons.clone()));
                self.emit(Event::Rejected {
                    version: version.clone(),
                    reasons,
                })
            }
            Err(error) => {
                let retrying = filing.is_some() && attempts < MAX_FILING_ATTEMPTS;
                let said = match retrying {
                    true => format!("{error} (attempt {attempts}; tried again every minute)"),
                    false => format!("{error} (attempt {attempts}; given up: see the log)"),
                };
                self.s.filing_failed.insert(version.clone(), said);
                self.emit(Event::FilingFailed {
                    version: version.clone(),
                    attempt: attempts,
                    error,
                    retrying,
                });
                if let Some(action) = filing.filter(|_| retrying) {
                    self.s.refile.push((action, attempts));
                }
            }
        }
        // A rollback to it waited for the folder to be whole or archived.
        self.restore_if_clear();
        self.collect();
    }

    /// Bring `version` back for a rollback (answering command `id` once it is back): at once,
    /// or once an archive or rejection of it under way, or a collection pass (which could delete
    /// its archive), is done; so the restore never meets a folder being zipped and deleted, nor
    /// an archive being deleted. Collections wait for the restore in turn ([`Self::collect`]).
    pub(super) fn restore(&mut self, version: Version, id: Option<u64>) {
        self.s.restoring = Some((version, id));
        self.s.restore_waits = true;
        self.restore_if_clear();
    }

    /// The restore that waits, once nothing it waited for is under way.
    fn restore_if_clear(&mut self) {
        let Some((version, _)) = self.s.restoring.as_ref().filter(|_| self.s.restore_waits) else {
            return;
        };
        if !self.being_filed(version) && !self.s.collecting.0 {
            self.s.restore_waits = false;
            self.out.push(Action::Restore(version.clone()));
        }
    }
}

/// The version an archive or rejection files away.
pub(super) fn filing_version(action: &Action) -> Option<&Version> {
    match action {
        Action::Archive(v) | Action::Reject { version: v, .. } => Some(v),
        _ => None,
    }
}

/// How much of a version folder goes once an instance is reaped.
fn rank(after: &AfterStop) -> u8 {
    match after {
        AfterStop::Keep => 0,
        AfterStop::ArchiveIfUnused => 1,
        AfterStop::Reject(_) => 2,
    }
}
