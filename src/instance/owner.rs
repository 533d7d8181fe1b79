//! The owner task of one started child: it reports readiness, heartbeats and an exit of its own,
//! and on a stop signals the child's whole process group (SIGTERM, then SIGKILL after the grace)
//! until the leader is reaped and no member is left.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::leader::Leader;
use super::probe::{Probe, ProbeError};
use super::{Answers, InstanceEvent, InstanceEventKind, InstanceId, Readiness, Released};

/// How much of stderr (or of stdout, when stderr is empty) a rejection reason quotes.
const STDERR_TAIL: u64 = 4096;

/// How often a stopping process group is checked for members left.
const GROUP_POLL: Duration = Duration::from_millis(20);
/// How long SIGKILLed group members may take to vanish before stop gives up waiting for them.
const KILL_WAIT: Duration = Duration::from_secs(1);

/// How an owner's watch ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The leader was reaped (on its own or stopped).
    Gone,
    /// The child was handed over, still running, in this phase.
    Released(Readiness),
}

/// What the heartbeats of one child have seen so far.
struct Beats {
    /// Checks missed in a row.
    misses: u32,
    /// Its answers as counted at the last beat.
    answers: u64,
    /// Whether a timed-out check taken as busy was logged since the last one answered in time.
    busy_said: bool,
}

/// The task that owns one child: readiness, exit watch, stop.
pub(super) struct Owner {
    /// The instance its events name.
    pub(super) id: InstanceId,
    /// The child's pid, which is also its process group id.
    pub(super) pid: u32,
    /// Time between SIGTERM and SIGKILL when stopping.
    pub(super) grace: Duration,
    /// The child's stderr file, quoted when it exits on its own.
    pub(super) stderr_path: PathBuf,
    /// Cancelled when the supervisor asks for a stop.
    pub(super) stop: CancellationToken,
    /// Cancelled when the child is handed to another understudy: let go, stop nothing.
    pub(super) release: CancellationToken,
    /// How far the child got (taken back after a failed handover: as it was released).
    pub(super) readiness: Readiness,
    /// Its answers as the proxy counts them: a heartbeat that times out while they grow is a
    /// busy child's, not a hung one's.
    pub(super) answers: Answers,
    /// Where its events go.
    pub(super) events: mpsc::UnboundedSender<InstanceEvent>,
}

impl Owner {
    fn pgid(&self) -> Pid {
        Pid::from_raw(self.pid as i32)
    }

    fn send(&self, kind: InstanceEventKind) {
        let _ = self.events.send(InstanceEvent { id: self.id, kind });
    }

    /// Own the child until it is reaped and its group is gone or killed, then reap its watchdog;
    /// or, once released, let go of it running and return the link to its watchdog.
    pub(super) async fn run(self, mut leader: Leader, probe: Probe) -> Option<Released> {
        if let Ended::Released(readiness) = self.supervise(&mut leader, probe).await {
            let link: Option<OwnedFd> = leader.release();
            return link.map(|link| Released { link, readiness });
        }
        leader.finish().await;
        None
    }

    async fn supervise(&self, child: &mut Leader, probe: Probe) -> Ended {
        let until = match self.readiness {
            Readiness::Starting { until } => until,
            _ => tokio::time::Instant::now() + probe.timeout(),
        };
        let ready = probe.wait_ready_until(until);
        tokio::pin!(ready);
        let mut phase = match self.readiness {
            Readiness::Unknown => Readiness::Starting { until },
            known => known,
        };
        // Heartbeats start once ready; a beat runs inside the select so an exit is never missed.
        let every = probe.heartbeat_every;
        let mut next_beat: Option<tokio::time::Instant> = (phase == Readiness::Ready
            && !every.is_zero())
        .then(|| tokio::time::Instant::now() + every);
        let mut beats = Beats {
            misses: 0,
            answers: self.answers.count(),
            busy_said: false,
        };
        loop {
            let beat_due = async {
                match next_beat {
                    Some(at) => {
                        tokio::time::sleep_until(at).await;
                        probe.beat().await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => {
                    self.stop_group(child).await;
                    return Ended::Gone;
                }
                _ = self.release.cancelled() => return Ended::Released(phase),
                status = child.wait() => {
                    // The leader is gone; anything it left in its group goes too.
                    signal_group(self.pgid(), Signal::SIGKILL);
                    if !self.stop.is_cancelled() {
                        let stderr_tail = tail(&self.stderr_path, STDERR_TAIL);
                        let stdout = self.stderr_path.with_file_name("stdout");
                        let stdout_tail = tail(&stdout, STDERR_TAIL);
                        let kind = InstanceEventKind::Exited { status, stderr_tail, stdout_tail };
                        self.send(kind);
                    }
                    return Ended::Gone;
                }
                r = &mut ready, if matches!(phase, Readiness::Starting { .. }) => {
                    match r {
                        Ok(()) => {
                            phase = Readiness::Ready;
                            self.send(InstanceEventKind::Ready);
                            if !every.is_zero() {
                                next_beat = Some(tokio::time::Instant::now() + every);
                            }
                        }
                        Err(e) => {
                            phase = Readiness::Unready;
                            self.send(InstanceEventKind::NotReady { reason: e.to_string() });
                        }
                    }
                }
                r = beat_due => {
                    next_beat = Some(tokio::time::Instant::now() + every);
                    self.heartbeat(r, &mut beats, probe.heartbeat_misses);
                }
            }
        }
    }

    /// Report one heartbeat: an answer resets the misses; `limit` misses in a row are reported
    /// once as unresponsive; a probe understudy could not make counts as neither. A check that
    /// timed out while the child began answers (users' or mirrored copies') since the last beat
    /// counts as answered: under load a health check waits in the same queue as users, and
    /// replacing a busy instance with a cold one would make the load worse.
    fn heartbeat(&self, r: Result<(), ProbeError>, beats: &mut Beats, limit: u32) {
        let answers = self.answers.count();
        let busy = answers != beats.answers;
        let since = answers.wrapping_sub(beats.answers);
        beats.answers = answers;
        match r {
            Ok(()) => {
                beats.misses = 0;
                beats.busy_said = false;
                self.send(InstanceEventKind::Heartbeat);
            }
            Err(e @ ProbeError::Unmade { .. }) => {
                // Not the child's fault: neither a miss nor an answer.
                tracing::warn!("{e}");
            }
            Err(e @ ProbeError::Timeout { .. }) if busy => {
                if !beats.busy_said {
                    tracing::warn!(
                        "heartbeat of pid {}: {e}, but it began {since} answers meanwhile: taken as busy, not hung (said once until a check answers in time)",
                        self.pid
                    );
                    beats.busy_said = true;
                }
                beats.misses = 0;
                self.send(InstanceEventKind::Heartbeat);
            }
            Err(e) => {
                beats.misses += 1;
                // Said once per run of misses; the supervisor stops it.
                if beats.misses == limit {
                    self.send(InstanceEventKind::Unresponsive {
                        misses: beats.misses,
                        reason: e.to_string(),
                    });
                }
            }
        }
    }

    /// SIGTERM the group, wait up to the grace for the leader and then every member to be gone,
    /// SIGKILL the group if any is left, reap the leader.
    async fn stop_group(&self, child: &mut Leader) {
        let (pid, pgid, grace) = (self.pid, self.pgid(), self.grace);
        let deadline = tokio::time::Instant::now() + grace;
        signal_group(pgid, Signal::SIGTERM);
        // As systemd does: a stopped process (SIGSTOP, or frozen by a debugger's tool) handles
        // its SIGTERM only once continued, else it waits out the grace to its SIGKILL.
        signal_group(pgid, Signal::SIGCONT);
        // The leader must be reaped first: as a zombie it would keep the group alive.
        let gone = match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(_) => wait_group_gone(pgid, deadline).await,
            Err(_) => false,
        };
        if gone {
            return;
        }
        tracing::warn!(
            "pid {pid} or a process in its group did not stop within {grace:?} of SIGTERM; sending SIGKILL"
        );
        signal_group(pgid, Signal::SIGKILL);
        // Bounded: a watchdog whose word on the exit was lost (a failed handover) must not hang
        // the stop; the group is SIGKILLed either way and the watchdog is told to finish.
        if tokio::time::timeout(KILL_WAIT, child.wait()).await.is_err() {
            tracing::warn!("pid {pid}: no word of its exit {KILL_WAIT:?} after SIGKILL; going on");
        }
        if !wait_group_gone(pgid, tokio::time::Instant::now() + KILL_WAIT).await {
            tracing::warn!(
                "process group {pgid} still has members {KILL_WAIT:?} after SIGKILL (zombies nobody reaps?)"
            );
        }
    }
}

/// Send `sig` to the process group; a group already gone is not an error.
pub(super) fn signal_group(pgid: Pid, sig: Signal) {
    match killpg(pgid, sig) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::warn!("cannot send {sig} to process group {pgid}: {e}"),
    }
}

/// Whether a live process is left in the group. `killpg(0)` also counts zombies (a SIGKILLed
/// grandchild waits for init to reap it), so a "yes" is confirmed from `/proc` when readable.
fn group_exists(pgid: Pid) -> bool {
    // EPERM means a member exists that we may not signal.
    if !matches!(killpg(pgid, None), Ok(()) | Err(Errno::EPERM)) {
        return false;
    }
    live_member_in_proc(pgid).unwrap_or(true)
}

/// Whether `/proc` lists a process of group `pgid` that is not a zombie; `None` if unreadable.
fn live_member_in_proc(pgid: Pid) -> Option<bool> {
    let pgid = pgid.as_raw().to_string();
    let live = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .as_encoded_bytes()
                .iter()
                .all(u8::is_ascii_digit)
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .any(|stat| {
            // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
            let mut fields = stat
                .rsplit_once(')')
                .map_or("", |(_, r)| r)
                .split_whitespace();
            let state = fields.next();
            let pgrp = fields.nth(1);
            pgrp == Some(pgid.as_str()) && !matches!(state, Some("Z") | Some("X"))
        });
    Some(live)
}

/// Poll until the group has no members, or `deadline`; returns whether it is gone.
async fn wait_group_gone(pgid: Pid, deadline: tokio::time::Instant) -> bool {
    loop {
        if !group_exists(pgid) {
            return true;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return false;
        }
        tokio::time::sleep(GROUP_POLL.min(deadline - now)).await;
    }
}

/// The last `max` bytes of a file, as text (for rejection reasons).
pub fn tail(path: &Path, max: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::instance::test_support::{free_port, running, Rig};

    #[test]
    fn tail_keeps_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("stderr");
        std::fs::write(&f, "0123456789").unwrap();
        assert_eq!(tail(&f, 4), "6789");
        assert_eq!(tail(&f, 100), "0123456789");
        assert_eq!(tail(&dir.path().join("none"), 4), "");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stop_kills_a_grandchild_that_ignores_sigterm() {
        let mut rig = Rig::new();
        // The leader dies on SIGTERM; its background child ignores it (ignored stays across exec)
        // and writes its pid only once it does.
        let script = r#"sh -c "trap '' TERM; echo \$\$ > grandchild.pid; exec sleep 30" & wait"#;
        let inst = rig
            .start(rig.spec(free_port(), &["/bin/sh", "-c", script]))
            .await
            .unwrap();
        assert!(inst.dir.join("stdout").is_file() && inst.dir.join("app-1.0.0").is_symlink());
        let pidfile = inst.dir.join("grandchild.pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        let grandchild: u32 = loop {
            if let Some(p) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                break p;
            }
            assert!(Instant::now() < deadline, "no grandchild.pid within 10 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let leader = inst.pid;
        assert!(running(grandchild) && running(leader));
        let t = Instant::now();
        inst.stop().await;
        assert!(
            t.elapsed() >= Duration::from_millis(300),
            "the grace was waited out"
        );
        assert!(!running(leader), "the leader is reaped");
        assert!(!running(grandchild), "the grandchild got SIGKILL");
        assert!(!group_exists(Pid::from_raw(leader as i32)));
        while let Ok(e) = rig.events.try_recv() {
            assert!(
                matches!(e.kind, InstanceEventKind::NotReady { .. }),
                "a requested stop reports no exit: {e:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_that_obeys_sigterm_stops_without_waiting_the_grace() {
        let rig = Rig::new();
        let mut s = rig.spec(free_port(), &["/bin/sh", "-c", "sleep 30 & wait"]);
        s.grace = Duration::from_secs(10);
        let inst = rig.start(s).await.unwrap();
        let t = Instant::now();
        inst.stop().await;
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "took {:?}",
            t.elapsed()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_exit_on_its_own_is_reported_and_its_group_killed() {
        let mut rig = Rig::new();
        let script =
            "(trap '' TERM; exec sleep 30) & echo $! > grandchild.pid; echo boom >&2; exit 3";
        let inst = rig
            .start(rig.spec(free_port(), &["/bin/sh", "-c", script]))
            .await
            .unwrap();
        let kind = loop {
            match rig.next_event().await {
                InstanceEventKind::NotReady { .. } => continue,
                k => break k,
            }
        };
        let InstanceEventKind::Exited {
            status,
            stderr_tail,
            ..
        } = kind
        else {
            panic!("expected Exited, got {kind:?}");
        };
        assert!(status.contains('3'), "{status}");
        assert!(stderr_tail.contains("boom"), "{stderr_tail}");
        let grandchild: u32 = std::fs::read_to_string(inst.dir.join("grandchild.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while running(grandchild) {
            assert!(
                Instant::now() < deadline,
                "grandchild {grandchild} still runs"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        inst.stop().await; // stopping an exited instance returns at once
    }
}
