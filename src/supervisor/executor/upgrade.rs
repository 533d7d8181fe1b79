//! The executor's part of an upgrade of understudy itself: handing its children (released from
//! their owner tasks, still running) to a new understudy, taking them back if it fails, and, in
//! the new one, adopting the children handed over as the slots that ran them start again.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Done, Executor};
use crate::artifact::Installed;
use crate::instance::{Adopted, Instance, InstanceId, Readiness};
use crate::layout::Role;
use crate::supervisor::files::FileJob;
use crate::supervisor::state::HandedPort;
use crate::supervisor::CommandError;
use crate::upgrade::{self, Child};

/// How long the slots of a new understudy have to claim the children handed over (running's,
/// then testing's and its secondary once running serves); the rest are then stopped.
const ADOPT_WINDOW: Duration = Duration::from_secs(30);

/// An upgrade `decide` asked for, carried out by [`Executor::upgrade`].
#[derive(Debug)]
pub(super) struct Due {
    /// The command to answer.
    pub(super) reply: u64,
    /// The new binary; `None` is the one this understudy was started from.
    pub(super) binary: Option<PathBuf>,
    /// The children to hand over, by part.
    pub(super) children: Vec<(&'static str, InstanceId)>,
}

/// The children handed to this understudy, by port; when there are any, the window in which
/// they must be claimed starts now.
pub(super) fn adoptable(
    taken: Vec<(Child, OwnedFd)>,
    serving: &tokio_util::sync::CancellationToken,
    done: &mpsc::UnboundedSender<Done>,
) -> HashMap<u16, (Child, OwnedFd)> {
    if !taken.is_empty() {
        let (done, serving) = (done.clone(), serving.clone());
        // From the moment this one serves: until then, the old one may route to any of them.
        tokio::spawn(async move {
            serving.cancelled().await;
            tokio::time::sleep(ADOPT_WINDOW).await;
            let _ = done.send(Done::AdoptWindowOver);
        });
    }
    taken.into_iter().map(|(c, fd)| (c.port, (c, fd))).collect()
}

impl Executor {
    /// The children handed over, as `decide` matches them to its slots.
    pub(super) fn handed_ports(&self) -> Vec<HandedPort> {
        self.adoptable
            .values()
            .map(|(c, _)| HandedPort {
                part: c.part.clone(),
                version: c.version.clone(),
                port: c.port,
            })
            .collect()
    }

    /// Start the slot `id` by adopting the child handed over on `port`, if there is one of that
    /// version; returns whether it did (its `Started` is then on its way).
    pub(super) fn adopt(
        &mut self,
        id: InstanceId,
        role: Role,
        installed: &Installed,
        port: u16,
    ) -> bool {
        let handed = self.adoptable.get(&port);
        if handed.is_none_or(|(c, _)| c.version != installed.version) {
            return false;
        }
        let (child, link) = self.adoptable.remove(&port).expect("checked above");
        tracing::info!(
            "adopted {} {} #{} (pid {}, port {port}) from the previous understudy",
            child.part,
            child.version,
            child.number,
            child.pid
        );
        // Still starting when handed over: it keeps what was left of its READY_TIMEOUT.
        let readiness = match child.ready_left(self.cfg.ready_timeout) {
            Some(left) => Readiness::Starting {
                until: tokio::time::Instant::now() + left,
            },
            None => Readiness::Unknown,
        };
        let adopted = self.adopted(id, role, child, link, readiness);
        self.adopted_ids.insert(id);
        let result = Instance::adopt(adopted, self.inst_tx.clone());
        let _ = self.done_tx.send(Done::Started { id, result });
        true
    }

    fn adopted(
        &self,
        id: InstanceId,
        role: Role,
        child: Child,
        link: OwnedFd,
        readiness: Readiness,
    ) -> Adopted {
        Adopted {
            id,
            role,
            child,
            link,
            probe: self.probe_spec(),
            grace: self.cfg.shutdown_grace,
            readiness,
        }
    }

    /// Stop the children handed over that no slot claimed in time (their build is no longer
    /// wanted, or another one started in their place).
    pub(super) fn stop_unclaimed(&mut self) {
        let unclaimed: Vec<_> = self.adoptable.drain().map(|(_, c)| c).collect();
        for (n, (child, link)) in unclaimed.into_iter().enumerate() {
            tracing::warn!(
                "stopping {} {} (pid {}), handed over but not wanted here",
                child.part,
                child.version,
                child.pid
            );
            let role = if child.part == "testing" {
                Role::Testing
            } else {
                Role::Running
            };
            // Ids from the top: decide counts its own from 1, and ignores events of these.
            let id = InstanceId(u64::MAX - n as u64);
            // Only stopped: not probed, so nothing is reported of it meanwhile.
            let adopted = self.adopted(id, role, child, link, Readiness::Unready);
            match Instance::adopt(adopted, self.inst_tx.clone()) {
                Ok(instance) => {
                    self.tasks.spawn(instance.stop());
                }
                Err(e) => tracing::error!("{e}; its watchdog stops it when the link closes"),
            }
        }
    }

    /// Carry out an upgrade and answer it, beating `pulse` at every `presence` tick meanwhile
    /// (decisions wait for the handover; systemd's watchdog must not); returns whether this
    /// understudy handed over (it then stops deciding and exits, stopping no child it handed).
    pub(super) async fn upgrade(
        &mut self,
        due: Due,
        presence: &mut tokio::time::Interval,
        pulse: &tokio::sync::watch::Sender<tokio::time::Instant>,
    ) -> bool {
        let handing = self.answer_upgrade(due);
        tokio::pin!(handing);
        loop {
            tokio::select! {
                handed = &mut handing => return handed,
                _ = presence.tick() => {
                    pulse.send_replace(tokio::time::Instant::now());
                }
            }
        }
    }

    /// Handed over: a stop asked for meanwhile (SIGTERM, SIGINT) is passed on to the new
    /// understudy; the stop of this process that any handover brings is not.
    pub(super) async fn after_handover(&self, cancel: &tokio_util::sync::CancellationToken) {
        if std::env::var(super::INJECT_HANG).is_ok_and(|v| v == "after-handover") {
            cancel.cancelled().await;
        }
        if self.succession.stop_asked.is_cancelled() {
            self.stop_successor();
        }
    }

    /// A stop (SIGTERM) came while the handover ran, and the new understudy took over: it is
    /// told to stop too (it stops the children it now owns, as this one would have), so a stop
    /// during an upgrade stops understudy rather than leave the new one serving unasked.
    pub(super) fn stop_successor(&self) {
        let pid = self
            .succession
            .successor
            .load(std::sync::atomic::Ordering::SeqCst);
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return;
        };
        if pid <= 0 {
            return;
        }
        tracing::warn!(
            "understudy was asked to stop during the upgrade: the new understudy (pid {pid}) took over and is told to stop too"
        );
        // SAFETY: kill(2) on the pid of the process this understudy started and handed over to.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }

    async fn answer_upgrade(&mut self, due: Due) -> bool {
        let result = if self.succession.serving.is_cancelled() {
            self.hand_over(due.binary, due.children).await
        } else {
            Err("this understudy is still taking over from the previous one; try again once it serves".to_string())
        };
        let handed = result.is_ok();
        if let Some(reply) = self.replies.remove(&due.reply) {
            let _ = reply.send(result.map_err(CommandError::Refused));
        }
        handed
    }

    async fn hand_over(
        &mut self,
        binary: Option<PathBuf>,
        parts: Vec<(&'static str, InstanceId)>,
    ) -> Result<String, String> {
        let Some(shared) = &self.succession.shared else {
            return Err("this understudy holds no base dir lock to hand on (not started by `understudy run`)".into());
        };
        let binary = binary.unwrap_or_else(upgrade::own_binary);
        self.flush_files().await;
        let (mut handed, mut whose) = (Vec::new(), Vec::new());
        for (part, id) in parts {
            let Some(instance) = self.instances.remove(&id) else {
                continue;
            };
            let mut child = Child {
                part: part.to_string(),
                version: instance.version.clone(),
                number: instance.number,
                dir: instance.dir.clone(),
                port: instance.port,
                pid: instance.pid,
                ready_by: None,
            };
            let role = instance.role;
            // A child that exited meanwhile is not handed; its exit is reported as usual.
            if let Some(released) = instance.release().await {
                // One still starting keeps the end of its READY_TIMEOUT in the new understudy.
                match released.readiness {
                    Readiness::Starting { until } => child.starting_until(until),
                    Readiness::Unready => child.starting_until(tokio::time::Instant::now()),
                    Readiness::Unknown | Readiness::Ready => {}
                }
                handed.push((child, released.link));
                whose.push((role, id, released.readiness));
            }
        }
        let args: Vec<_> = std::env::args_os().skip(1).collect();
        let to = upgrade::Successor {
            binary: &binary,
            args: &args,
            env: &self.succession.env,
        };
        let within = (upgrade::READY_WITHIN, &self.succession.stop_asked);
        let result = upgrade::hand_over(to, shared, &handed, within).await;
        match result {
            Ok(pid) => {
                let kept: Vec<String> = handed
                    .iter()
                    .map(|(c, _)| format!("{} {} (pid {})", c.part, c.version, c.pid))
                    .collect();
                for (_, id, _) in &whose {
                    self.live.remove(*id);
                }
                self.succession
                    .successor
                    .store(pid, std::sync::atomic::Ordering::SeqCst);
                self.succession.handed.cancel();
                Ok(format!(
                    "understudy pid {pid} ({}) took over from pid {}; kept running: {}",
                    binary.display(),
                    std::process::id(),
                    if kept.is_empty() {
                        "nothing".to_string()
                    } else {
                        kept.join(", ")
                    }
                ))
            }
            Err(e) => {
                tracing::error!("{e}");
                self.take_back(handed, whose);
                Err(e.to_string())
            }
        }
    }

    /// The successor gave up: this understudy goes on as before, with its children back.
    fn take_back(
        &mut self,
        handed: Vec<(Child, OwnedFd)>,
        whose: Vec<(Role, InstanceId, Readiness)>,
    ) {
        // The successor numbered its events past ours (and receivers may have them).
        self.events.catch_up();
        let admin_json = self.layout.admin_json();
        if let Err(e) = upgrade::reclaim_admin_json(&admin_json) {
            tracing::warn!("cannot write {}: {e}", admin_json.display());
        }
        // Each in the phase it was released in: one still starting is not heartbeated as if
        // ready, and keeps the end of its READY_TIMEOUT.
        for ((child, link), (role, id, readiness)) in handed.into_iter().zip(whose) {
            let adopted = self.adopted(id, role, child, link, readiness);
            match Instance::adopt(adopted, self.inst_tx.clone()) {
                Ok(instance) => {
                    self.instances.insert(id, instance);
                }
                Err(e) => tracing::error!("cannot take a child back: {e}"),
            }
        }
    }

    /// Wait until the file task has written everything queued so far (the state file first of
    /// all), so the new understudy reads what this one decided.
    async fn flush_files(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        // A reply is never overtaken by the writes queued before it; this one only signals.
        let _ = self.files_tx.send(FileJob::Reply((tx, Ok(String::new()))));
        let _ = rx.await;
    }
}
