//! How the outside (admin API, CLI, fleet tools) steers and watches the supervisor: a
//! [`Command`] goes in with a reply channel and becomes an input to `decide`; the [`Status`] comes
//! out on a watch channel after every decision. The admin side holds a [`SupervisorHandle`] and
//! never touches the base dir itself.

use std::sync::Arc;
use std::time::SystemTime;

use semver::Version;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::events::VerdictKind;
use crate::score::ScorePart;

/// Commands waiting for the supervisor; a caller waits for room rather than being dropped.
pub const COMMAND_QUEUE: usize = 32;

/// What an operator can ask of the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Promote the build under test now, whatever its verdict.
    Promote,
    /// Reject the build under test now ("aborted by operator"); running is untouched.
    Abort,
    /// Keep scoring, but take no automatic promotion or rejection until resumed.
    Pause,
    /// Undo [`Command::Pause`].
    Resume,
    /// Promote the build under test at this instant (effective dating); stored durably, fires once.
    PromoteAt(SystemTime),
    /// Bring back the previous version (or the one named) from its archive, with zero downtime.
    Rollback(Option<Version>),
    /// Cancel a pending scheduled promotion.
    CancelSchedule(u64),
    /// Replace understudy itself by the binary at this path (default: the one it was started
    /// from), handing it the listeners and the children, which keep running.
    Upgrade(Option<std::path::PathBuf>),
}

/// Why a command was refused; the admin API answers 409 with this text (404 for an unknown
/// version or schedule, 503 while shutting down or taking over).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Promote with no ready testing instance.
    #[error("nothing to promote: {0}")]
    NothingToPromote(String),
    /// Abort with no build under test.
    #[error("nothing to abort: no build is being tested or waiting to be")]
    NothingToAbort,
    /// The supervisor is shutting down.
    #[error("understudy is shutting down")]
    ShuttingDown,
    /// An upgrade of understudy is under way: this process, started by it, does not serve yet
    /// (the old one goes on with its own state if the takeover fails), or it handed over and
    /// decides nothing more. Nothing was done; the admin API says 503 with `Retry-After`.
    #[error("an upgrade of understudy is taking over: nothing was done; retry in a moment, and the understudy that serves then answers")]
    TakingOver,
    /// A version that was never archived, or whose archive is gone.
    #[error("no archived version {0}: it was never archived here, or its archive was deleted")]
    UnknownVersion(String),
    /// No schedule has this id.
    #[error("no schedule #{0}: list them with `understudy schedule` (GET /api/schedule)")]
    UnknownSchedule(u64),
    /// The command is valid but cannot be carried out now.
    #[error("{0}")]
    Refused(String),
}

/// A command and where its answer goes.
#[derive(Debug)]
pub struct CommandRequest {
    /// What is asked.
    pub command: Command,
    /// The supervisor's answer: what it did, or why not.
    pub reply: oneshot::Sender<Result<String, CommandError>>,
}

/// One instance as status shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceStatus {
    /// Its version.
    pub version: Version,
    /// Its instance folder number, once started.
    pub instance: Option<u32>,
    /// Its port, once chosen.
    pub port: Option<u16>,
    /// Its pid, once started.
    pub pid: Option<u32>,
    /// Whether it answers and plays its part.
    pub ready: bool,
    /// When it became ready, as RFC 3339.
    pub since: Option<String>,
    /// When it last answered a heartbeat, as RFC 3339 (presence).
    pub last_heartbeat: Option<String>,
}

/// The latest verdict about the build under test.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerdictStatus {
    /// The version judged.
    pub version: Version,
    /// Wait, promote or reject.
    pub verdict: VerdictKind,
    /// 0–100, the lowest part.
    pub score: u32,
    /// Mirrored pairs seen.
    pub pairs: u64,
    /// Why it waits or would be rejected.
    pub reasons: Vec<String>,
    /// Each part of the score.
    pub parts: Vec<ScorePart>,
    /// Where answers differ (endpoint, path, kind, rate, noise rate, example), worst first.
    pub diffs: Vec<crate::score::DiffRow>,
    /// What the pairs are: live, or replayed from recorded requests.
    pub evidence: crate::score::Evidence,
}

/// What the supervisor is doing, published after every decision.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Status {
    /// Serves users.
    pub running: Option<InstanceStatus>,
    /// Is scored against running.
    pub testing: Option<InstanceStatus>,
    /// The fresh running instance of a promotion under way.
    pub promoting: Option<InstanceStatus>,
    /// The second instance of running's version that measures noise (`NOISE_CANCEL`).
    pub secondary: Option<InstanceStatus>,
    /// Running is down and being restarted.
    pub restarting: Option<Version>,
    /// With `restarting`: its failures in a row (past 5 it is crash-looping) and when it is
    /// started again (RFC 3339), as users' `Retry-After` says.
    pub restart_due: Option<RestartDue>,
    /// A build installed and waiting for its turn as testing.
    pub pending: Option<Version>,
    /// A build being installed.
    pub installing: Option<Version>,
    /// No automatic promotion or rejection while set.
    pub paused: bool,
    /// Why understudy cannot save its state right now (a full disk); it keeps serving and
    /// retries every heartbeat.
    pub disk_full: Option<String>,
    /// The latest verdict about testing, if it has been scored.
    pub verdict: Option<VerdictStatus>,
    /// Scheduled promotions, pending and recently finished.
    pub schedules: Vec<super::Schedule>,
    /// The version promoted last, while `ROLLBACK_WINDOW` watches it.
    pub guarded: Option<String>,
    /// The promotion or rollback under way, and how far it got.
    pub transaction: Option<super::Txn>,
    /// Why the last `PRE_PROMOTE` refused the build under test (it stays testing).
    pub hook_failure: Option<String>,
    /// The canary step under way (`CANARY_STEPS`).
    pub canary: Option<CanaryStatus>,
    /// `CANARY_STEPS` in all (0 without a canary phase): a build passes only once the last has.
    pub canary_steps: usize,
    /// The guard's rollback from its trip to its switch: while it brings the old version back,
    /// `running` may be empty and users' requests wait, and this says for what and why.
    pub guard_rollback: Option<GuardRollbackStatus>,
    /// Running is being started again (at once after a crash, or at understudy's start): users'
    /// requests wait for it rather than get 503, and this says for how long each may.
    pub restart_held: Option<RestartHeldStatus>,
    /// The guard's rollback could not be carried out, and what serves instead (the version it
    /// rolled back from, restarted if it had crashed): said until the next switch.
    pub guard_failed: Option<String>,
    /// The last build rejected (RFC 3339 and its reasons): after a rejection testing is empty
    /// and the verdict says no build is tested, so this says what became of the last one.
    pub last_rejected: Option<LastRejected>,
    /// Versions whose archiving or rejection failed, each with its last error, until it succeeds.
    pub filing_failed: Vec<String>,
}

/// A build rejected, as status shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastRejected {
    /// Its version.
    pub version: Version,
    /// When it was filed in `rejected/` (RFC 3339).
    pub at: String,
    /// Why, as in its `reason.json`.
    pub reasons: Vec<String>,
}

/// When running, down after failures in a row, is started again.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestartDue {
    /// Failures in a row so far.
    pub failures: u32,
    /// When it is started again (RFC 3339).
    pub at: String,
}

/// Running started again (at once after a crash, or at understudy's start), as status shows
/// it: an operator who sees it `starting` learns that users' requests wait for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestartHeldStatus {
    /// The version restarting.
    pub version: Version,
    /// How long a held request waits (the shorter of `UPSTREAM_TIMEOUT` and 10 s, in seconds)
    /// before it is answered 503.
    pub held_up_to_secs: f64,
}

/// How far the guard's rollback got before its switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackStep {
    /// The old version is being brought back into its folder (from the archive if it went).
    Restoring,
    /// Its instance is starting; users switch to it once it is ready.
    Starting,
}

/// The guard's rollback as status shows it: an operator looking at an empty `running` sees what
/// comes back, why, and that users' requests wait for it rather than fail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardRollbackStatus {
    /// The version coming back.
    pub version: Version,
    /// The version the guard rolls back from.
    pub from: Version,
    /// Why the guard tripped: a crash within `ROLLBACK_WINDOW`, or a worse 5xx rate.
    pub reason: String,
    /// How far the rollback got.
    pub step: RollbackStep,
    /// When `from` went down (RFC 3339), if it crashed: it is not restarted meanwhile.
    pub down_since: Option<String>,
    /// Nothing serves meanwhile, so users' requests are held for `version`.
    pub requests_held: bool,
    /// How long a held request waits (`UPSTREAM_TIMEOUT`, in seconds) before it is answered 503.
    pub held_up_to_secs: f64,
}

/// A canary step as status shows it: which share of users testing serves, since when, on how
/// many answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CanaryStatus {
    /// Share of users served by testing, in percent.
    pub weight: f64,
    /// 1-based step.
    pub step: usize,
    /// Steps in all.
    pub steps: usize,
    /// When the step began (RFC 3339).
    pub since: String,
    /// `CANARY_STEP_WINDOW`, in seconds.
    pub window_secs: f64,
    /// Answers served this step by testing.
    pub answers: u64,
    /// Answers served this step by running.
    pub running_answers: u64,
    /// Of testing's answers, 5xx.
    pub server_errors: u64,
    /// Of running's answers, 5xx.
    pub running_server_errors: u64,
    /// Users (distinct places of the sticky key) testing served this step.
    pub users: u64,
    /// It holds for lack of evidence.
    pub held: bool,
    /// Why the evidence is not enough yet (such as an endpoint running has too few answers on
    /// to compare with), while it is not.
    pub waiting: Option<String>,
    /// The last step has passed: the build waits only for what holds its promotion.
    pub passed: bool,
}

/// Format a wall-clock instant as RFC 3339 (UTC), as status and history show times.
pub fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "?".to_string())
}

/// The admin side's hold on the supervisor: send commands, read the status.
#[derive(Clone)]
pub struct SupervisorHandle {
    commands: mpsc::Sender<CommandRequest>,
    status: watch::Receiver<Arc<Status>>,
}

impl SupervisorHandle {
    /// A handle over the channels the supervisor listens and publishes on.
    pub fn new(
        commands: mpsc::Sender<CommandRequest>,
        status: watch::Receiver<Arc<Status>>,
    ) -> SupervisorHandle {
        SupervisorHandle { commands, status }
    }

    /// Ask the supervisor and wait for its answer.
    pub async fn send(&self, command: Command) -> Result<String, CommandError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(CommandRequest { command, reply })
            .await
            .map_err(|_| CommandError::ShuttingDown)?;
        answer.await.map_err(|_| CommandError::ShuttingDown)?
    }

    /// The latest status.
    pub fn status(&self) -> Arc<Status> {
        self.status.borrow().clone()
    }

    /// A receiver that wakes on every new status (for live views).
    pub fn watch(&self) -> watch::Receiver<Arc<Status>> {
        self.status.clone()
    }
}
