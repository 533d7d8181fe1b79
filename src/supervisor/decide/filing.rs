//! Filing versions away (archive or `rejected/`) with retries, the collection timer, and the disk
//! the state files are written to.

use semver::Version;

use super::{Action, Decision, Filed, GC_EVERY, MAX_FILING_ATTEMPTS};
use crate::events::Event;
use crate::supervisor::state::AfterStop;

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

    pub(super) fn tick(&mut self) {
        self.restart_if_due();
        if self.now >= self.s.next_gc {
            self.s.next_gc = self.now + GC_EVERY;
            self.out.push(Action::Collect);
            for (action, _) in &self.s.refile {
                self.out.push(action.clone());
            }
        }
    }

    pub(super) fn archive_if_unused(&mut self, version: Version) {
        // An instance of it still stopping files it away once it is reaped.
        for r in self.s.retiring.values_mut() {
            if r.version == version && r.after == AfterStop::Keep {
                r.after = AfterStop::ArchiveIfUnused;
            }
        }
        let s = &*self.s;
        let in_slot = [&s.running, &s.testing, &s.next, &s.secondary, &s.spare]
            .into_iter()
            .flatten()
            .any(|slot| *slot.version() == version);
        let in_use = in_slot
            || s.pending.as_ref().is_some_and(|p| p.version == version)
            || s.restart
                .as_ref()
                .is_some_and(|r| r.installed.version == version)
            || s.retiring.values().any(|r| r.version == version);
        if !in_use {
            self.out.push(Action::Archive(version));
        }
    }

    pub(super) fn filed(
        &mut self,
        version: Version,
        result: Result<Filed, String>,
        filing: Option<Action>,
    ) {
        // Done either way: a retry that succeeded is not made again.
        let earlier = self
            .s
            .refile
            .iter()
            .position(|(a, _)| Some(a) == filing.as_ref());
        let attempts = earlier.map_or(0, |i| self.s.refile.remove(i).1) + 1;
        match result {
            Ok(Filed::Archived(zip)) => self.emit(Event::Archived { version, zip }),
            Ok(Filed::Rejected(reasons)) => self.emit(Event::Rejected { version, reasons }),
            Err(error) => {
                let retrying = filing.is_some() && attempts < MAX_FILING_ATTEMPTS;
                self.emit(Event::FilingFailed {
                    version,
                    attempt: attempts,
                    error,
                    retrying,
                });
                if let Some(action) = filing.filter(|_| retrying) {
                    self.s.refile.push((action, attempts));
                }
            }
        }
        self.out.push(Action::Collect);
    }
}
