//! Work finished off the supervisor's task ([`Done`]) and how the executor turns it into an
//! [`Input`] for `decide`, keeping the handles it carries (instances, upstreams).

use super::Executor;
use crate::artifact::Installed;
use crate::instance::{Instance, InstanceError, InstanceId};
use crate::layout::Layout;
use crate::supervisor::{Action, Filed, Input, Launched, RestoreFailure, StartFailure, Withdrawn};
use crate::watcher::Dropped;

/// Work finished off the supervisor's task, on its way back to become an [`Input`].
pub(super) enum Done {
    /// A drop given its turn was gone or being written again, and left alone.
    Withdrawn {
        dropped: Dropped,
        why: Withdrawn,
        install: bool,
    },
    Installed {
        version: semver::Version,
        result: Result<Installed, String>,
    },
    /// A build is installed but waits for its protected copy (a full disk), for `reason`.
    InstallWaiting {
        version: semver::Version,
        file: String,
        reason: String,
    },
    Started {
        id: InstanceId,
        result: Result<Instance, InstanceError>,
    },
    Stopped {
        id: InstanceId,
    },
    Filed {
        version: semver::Version,
        result: Result<Filed, String>,
        /// The filing action reported on (none for a refused drop). Boxed: an action is large.
        filing: Option<Box<Action>>,
    },
    Collected(crate::archive::Collection),
    Restored {
        version: semver::Version,
        result: Result<Installed, RestoreFailure>,
    },
    Hook {
        hook: crate::hooks::Hook,
        id: Option<InstanceId>,
        version: semver::Version,
        result: Result<(), String>,
    },
    /// The file writer started failing (why) or works again (`None`).
    Disk(Option<String>),
    /// The time for slots to claim the children handed over is up: stop the rest.
    AdoptWindowOver,
}

impl Executor {
    /// Turn a completion into an input, keeping the handles it carries.
    pub(super) fn complete(&mut self, d: Done) -> Input {
        match d {
            Done::Withdrawn {
                dropped,
                why,
                install,
            } => Input::Withdrawn {
                dropped,
                why,
                install,
            },
            Done::Installed { version, result } => Input::Installed { version, result },
            Done::InstallWaiting {
                version,
                file,
                reason,
            } => Input::InstallWaiting {
                version,
                file,
                reason,
            },
            Done::Started { id, result } => {
                let result = match result {
                    Ok(instance) => {
                        let launched = Launched {
                            pid: instance.pid,
                            number: instance.number,
                            dir: instance.dir.clone(),
                        };
                        self.live.insert(id, instance.pid);
                        self.instances.insert(id, instance);
                        Ok(launched)
                    }
                    Err(InstanceError::PortBusy { port }) => Err(StartFailure::PortBusy(port)),
                    Err(e) => Err(StartFailure::Failed(e.to_string())),
                };
                Input::Started { id, result }
            }
            Done::Stopped { id } => {
                self.upstreams.remove(&id);
                self.live.remove(id);
                Input::Stopped { id }
            }
            Done::Filed {
                version,
                result,
                filing,
            } => Input::Filed {
                version,
                result,
                filing: filing.map(|r| *r),
            },
            Done::Collected(deleted) => Input::Collected(deleted),
            Done::Restored { version, result } => Input::Restored { version, result },
            Done::Hook {
                hook,
                id,
                version,
                result,
            } => Input::HookDone {
                hook,
                id,
                version,
                result,
            },
            Done::Disk(failing) => Input::Disk { failing },
            Done::AdoptWindowOver => {
                self.stop_unclaimed();
                Input::Tick
            }
        }
    }
}

/// Archive or reject a version folder as `filing` says (blocking), and report it with the action
/// itself, which `decide` retries if it failed and stops retrying once it succeeded.
pub(super) fn file_away(layout: &Layout, filing: Action) -> Done {
    let (version, result) = match &filing {
        Action::Archive(version) => (
            version.clone(),
            crate::archive::archive_version(layout, version).map(Filed::Archived),
        ),
        Action::Reject { version, reasons } => (
            version.clone(),
            crate::archive::reject_version(layout, version, reasons)
                .map(|_| Filed::Rejected(reasons.clone())),
        ),
        other => unreachable!("not a filing: {other:?}"),
    };
    let result = result.map_err(|e| e.to_string());
    if result.is_ok() {
        crate::store::forget(layout, &version);
    }
    Done::Filed {
        version,
        result,
        filing: Some(Box::new(filing)),
    }
}
