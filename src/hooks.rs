//! Lifecycle hooks: the operator's own commands at the edges of a release (`PRE_START`,
//! `PRE_PROMOTE`, `POST_PROMOTE`, `POST_ROLLBACK`), so a smoke test, a cache warm-up or a
//! notification can veto or follow a switch. Each runs with `UNDERSTUDY_VERSION`,
//! `UNDERSTUDY_PREVIOUS`, `UNDERSTUDY_DIR` and `UNDERSTUDY_PORT` in its environment, from the base
//! dir, bounded by `HOOK_TIMEOUT`; its output is appended to `hooks.log` in the instance folder.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use semver::Version;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// Which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Hook {
    /// Before a new build starts; failing rejects it.
    PreStart,
    /// Before a promotion; failing leaves running untouched.
    PrePromote,
    /// After a promotion's switch.
    PostPromote,
    /// After a rollback's switch.
    PostRollback,
}

impl Hook {
    /// The config key that holds its command.
    pub fn key(self) -> &'static str {
        match self {
            Hook::PreStart => "PRE_START",
            Hook::PrePromote => "PRE_PROMOTE",
            Hook::PostPromote => "POST_PROMOTE",
            Hook::PostRollback => "POST_ROLLBACK",
        }
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

/// Which hooks are configured: the supervisor plans a step for a hook only when there is one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HookSet {
    /// `PRE_START` is set.
    pub pre_start: bool,
    /// `PRE_PROMOTE` is set.
    pub pre_promote: bool,
    /// `POST_PROMOTE` is set.
    pub post_promote: bool,
    /// `POST_ROLLBACK` is set.
    pub post_rollback: bool,
}

impl HookSet {
    /// Whether `hook` has a command.
    pub fn has(&self, hook: Hook) -> bool {
        match hook {
            Hook::PreStart => self.pre_start,
            Hook::PrePromote => self.pre_promote,
            Hook::PostPromote => self.post_promote,
            Hook::PostRollback => self.post_rollback,
        }
    }
}

/// What a hook is told about the release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookEnv {
    /// `UNDERSTUDY_VERSION`: the version the step is about.
    pub version: Version,
    /// `UNDERSTUDY_PREVIOUS`: the version serving before (empty when none).
    pub previous: Option<Version>,
    /// `UNDERSTUDY_DIR`: the instance folder (the version folder before a first start); the
    /// hook's output goes to `hooks.log` there.
    pub dir: PathBuf,
    /// `UNDERSTUDY_PORT`: the instance's port, when it has one.
    pub port: Option<u16>,
}

/// Why a hook did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The command could not be started.
    #[error("{hook} {command} could not be started: {source}")]
    Spawn {
        /// Which hook.
        hook: Hook,
        /// Its command line, quoted ([`crate::private::quote`]).
        command: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Its log file could not be opened.
    #[error("{hook}: cannot write its output to {path}: {source}")]
    Log {
        /// Which hook.
        hook: Hook,
        /// The log file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// It ran and failed.
    #[error("{hook} {command} failed ({status}); its output ends with: {tail}")]
    Failed {
        /// Which hook.
        hook: Hook,
        /// Its command line, quoted ([`crate::private::quote`]).
        command: String,
        /// How it ended.
        status: String,
        /// The end of its output, quoted ([`crate::private::quote`]).
        tail: String,
    },
    /// It ran too long and was killed.
    #[error("{hook} {command} did not finish within HOOK_TIMEOUT ({timeout:?}) and was killed")]
    TimedOut {
        /// Which hook.
        hook: Hook,
        /// Its command line, quoted ([`crate::private::quote`]).
        command: String,
        /// The bound.
        timeout: Duration,
    },
    /// understudy began to stop while it ran, and killed it.
    #[error("{hook} {command} was killed because understudy is stopping")]
    Stopped {
        /// Which hook.
        hook: Hook,
        /// Its command line, quoted ([`crate::private::quote`]).
        command: String,
    },
}

/// Run `argv` for `hook` from `base`, with the release in its environment, bounded by `timeout`.
/// Its output goes to `hooks.log`, capped at `log_max`; its whole process group is killed when it
/// ends, times out, or `stop` is cancelled (understudy stopping), so nothing it started in the
/// background outlives it and shutdown never waits out `HOOK_TIMEOUT`.
pub async fn run(
    hook: Hook,
    argv: &[String],
    base: &Path,
    env: &HookEnv,
    timeout: Duration,
    log_max: u64,
    stop: &CancellationToken,
) -> Result<(), HookError> {
    // Quoted: a command line may hold a secret (`curl -u user:password`), shown only with the token.
    let line = argv.join(" ");
    let command = crate::private::quote(&line);
    let log_path = env.dir.join("hooks.log");
    let log_err = |source| HookError::Log {
        hook,
        path: log_path.clone(),
        source,
    };
    let mut log = open_log(hook, env, &log_path, log_max, &line).map_err(log_err)?;
    let Some((program, args)) = argv.split_first() else {
        return Ok(());
    };
    let (reader, writer) = std::io::pipe().map_err(log_err)?;
    let mut cmd = command_for(hook, program, args, base, env);
    cmd.stdout(writer.try_clone().map_err(log_err)?)
        .stderr(writer);
    let mut child = cmd.spawn().map_err(|source| HookError::Spawn {
        hook,
        command: command.clone(),
        source,
    })?;
    // Our copy of the writer went into `cmd`: drop it, so the pipe ends with the hook's group.
    drop(cmd);
    let group = child.id().map(Group::new);
    let output = tokio::net::unix::pipe::Receiver::from_owned_fd(reader.into()).map_err(log_err)?;
    let waited = tokio::select! {
        w = tokio::time::timeout(
            timeout,
            wait_and_pump(&mut child, group.as_ref(), &mut log, output),
        ) => w.ok(),
        () = stop.cancelled() => None,
    };
    let Some(status) = waited else {
        // Killed and reaped here, whichever bound cut it short.
        drop(group);
        let _ = child.wait().await;
        if stop.is_cancelled() {
            log.line("== killed: understudy is stopping");
            return Err(HookError::Stopped { hook, command });
        }
        log.line(&format!("== killed after HOOK_TIMEOUT ({timeout:?})"));
        return Err(HookError::TimedOut {
            hook,
            command,
            timeout,
        });
    };
    match status {
        Ok(s) if s.success() => Ok(()),
        other => {
            let status = match other {
                Ok(s) => s.to_string(),
                Err(e) => format!("unknown ({e})"),
            };
            log.line(&format!("== {status}"));
            Err(HookError::Failed {
                hook,
                command,
                status,
                tail: log.tail(),
            })
        }
    }
}

/// Open `hooks.log` in the release's folder and write the hook's header line; what follows the
/// header is this run's output.
fn open_log(
    hook: Hook,
    env: &HookEnv,
    path: &Path,
    log_max: u64,
    command: &str,
) -> std::io::Result<CappedLog> {
    let _ = std::fs::create_dir_all(&env.dir);
    let mut log = CappedLog::open(path, log_max)?;
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    log.line(&format!(
        "== {hook} for {} at {now}: {command}",
        env.version
    ));
    log.mark_start();
    Ok(log)
}

/// Wait for the hook to exit while its output goes to the log; then kill whatever it left running
/// in its group and give the output still in the pipe `OUTPUT_LINGER` to arrive.
async fn wait_and_pump(
    child: &mut tokio::process::Child,
    group: Option<&Group>,
    log: &mut CappedLog,
    output: tokio::net::unix::pipe::Receiver,
) -> std::io::Result<std::process::ExitStatus> {
    let pump = log.pump(output);
    tokio::pin!(pump);
    let mut pumped = false;
    let status = tokio::select! {
        status = child.wait() => status,
        () = &mut pump => {
            pumped = true;
            child.wait().await
        }
    };
    // The hook is done: whatever it left running in its group goes too.
    if let Some(g) = group {
        g.kill();
    }
    if !pumped {
        let _ = tokio::time::timeout(OUTPUT_LINGER, pump).await;
    }
    status
}

/// The hook's command: its environment, its own process group, no stdin.
fn command_for(
    hook: Hook,
    program: &str,
    args: &[String],
    base: &Path,
    env: &HookEnv,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(base)
        .env("UNDERSTUDY_VERSION", env.version.to_string())
        .env(
            "UNDERSTUDY_PREVIOUS",
            env.previous
                .as_ref()
                .map(Version::to_string)
                .unwrap_or_default(),
        )
        .env("UNDERSTUDY_DIR", &env.dir)
        .env(
            "UNDERSTUDY_PORT",
            env.port.map(|p| p.to_string()).unwrap_or_default(),
        )
        .env("UNDERSTUDY_HOOK", hook.key())
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    cmd
}

/// A hook's process group, SIGKILLed when this is dropped: when the hook ends (a background
/// grandchild goes with it), when it times out, and when understudy stops mid-hook.
struct Group(nix::unistd::Pid);

impl Group {
    fn new(pid: u32) -> Group {
        Group(nix::unistd::Pid::from_raw(pid as i32))
    }

    fn kill(&self) {
        let _ = nix::sys::signal::killpg(self.0, nix::sys::signal::Signal::SIGKILL);
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How long the output may keep coming after the hook itself exited (from what it left behind).
const OUTPUT_LINGER: Duration = Duration::from_millis(200);

/// `hooks.log`, never larger than its cap: past it, the older half is dropped with a marker.
struct CappedLog {
    path: PathBuf,
    file: std::fs::File,
    len: u64,
    max: u64,
    /// Where this hook's own output starts, for the failure's tail.
    start: u64,
}

impl CappedLog {
    fn open(path: &Path, max: u64) -> std::io::Result<CappedLog> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let len = file.metadata()?.len();
        let mut log = CappedLog {
            path: path.to_path_buf(),
            file,
            len,
            max: max.max(1024),
            start: len,
        };
        if log.len > log.max {
            log.trim()?;
        }
        Ok(log)
    }

    fn mark_start(&mut self) {
        self.start = self.len;
    }

    /// Append a line of understudy's own (errors are ignored: the log is for reading).
    fn line(&mut self, text: &str) {
        let _ = self.append(format!("{text}\n").as_bytes());
    }

    fn append(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        let keep = self.max / 2;
        if bytes.len() as u64 > keep {
            bytes = &bytes[bytes.len() - keep as usize..];
        }
        if self.len + bytes.len() as u64 > self.max {
            self.trim()?;
        }
        self.file.write_all(bytes)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Keep the newest half, after a marker saying how much went; copied through a bounded
    /// buffer into a new file that replaces the old one.
    fn trim(&mut self) -> std::io::Result<()> {
        use std::io::{Read, Seek, SeekFrom, Write};
        let keep = (self.max / 2).min(self.len);
        let dropped = self.len - keep;
        let tmp = self.path.with_extension("log.trim");
        let mut out = std::fs::File::create(&tmp)?;
        let marker = format!(
            "== {dropped} older bytes dropped (HOOK_LOG_MAX={})\n",
            self.max
        );
        out.write_all(marker.as_bytes())?;
        let mut old = std::fs::File::open(&self.path)?;
        old.seek(SeekFrom::Start(dropped))?;
        std::io::copy(&mut old.take(keep), &mut out)?;
        std::fs::rename(&tmp, &self.path)?;
        self.file = std::fs::OpenOptions::new().append(true).open(&self.path)?;
        self.len = self.file.metadata()?.len();
        self.start = self.start.saturating_sub(dropped).max(marker.len() as u64);
        Ok(())
    }

    /// Copy the hook's output into the log until the pipe ends (the hook's group is gone) or,
    /// once the hook is gone, it falls silent.
    async fn pump(&mut self, mut output: tokio::net::unix::pipe::Receiver) {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match output.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if self.append(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// The last few hundred bytes this hook wrote, on one line, read from the end of the file,
    /// quoted ([`crate::private::quote`]).
    fn tail(&self) -> String {
        use std::io::{Read, Seek, SeekFrom};
        let from = self.start.max(self.len.saturating_sub(400));
        let mut mine = Vec::new();
        if let Ok(mut f) = std::fs::File::open(&self.path) {
            let _ = f.seek(SeekFrom::Start(from));
            let _ = f.take(400).read_to_end(&mut mine);
        }
        let tail = String::from_utf8_lossy(&mine);
        let tail = tail
            .lines()
            .filter(|l| !l.starts_with("== "))
            .collect::<Vec<_>>()
            .join(" | ");
        if tail.trim().is_empty() {
            "(no output)".to_string()
        } else {
            // It may hold what the hook should not have printed: hidden from readers without the
            // token, wherever the failure is quoted.
            crate::private::quote(&tail)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(dir: &Path) -> HookEnv {
        HookEnv {
            version: Version::parse("1.2.0").unwrap(),
            previous: Some(Version::parse("1.1.0").unwrap()),
            dir: dir.to_path_buf(),
            port: Some(20001),
        }
    }

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn a_hook_sees_the_release_and_its_output_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let argv =
            sh("echo \"v=$UNDERSTUDY_VERSION p=$UNDERSTUDY_PREVIOUS port=$UNDERSTUDY_PORT\"");
        run(
            Hook::PrePromote,
            &argv,
            dir.path(),
            &env(dir.path()),
            Duration::from_secs(10),
            1 << 20,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        let log = std::fs::read_to_string(dir.path().join("hooks.log")).unwrap();
        assert!(log.contains("v=1.2.0 p=1.1.0 port=20001"), "{log}");
        assert!(log.contains("== PRE_PROMOTE for 1.2.0"), "{log}");
    }

    #[tokio::test]
    async fn a_failing_hook_says_how_and_what_it_printed() {
        let dir = tempfile::tempdir().unwrap();
        let argv = sh("echo database is locked >&2; exit 3");
        let e = run(
            Hook::PreStart,
            &argv,
            dir.path(),
            &env(dir.path()),
            Duration::from_secs(10),
            1 << 20,
            &CancellationToken::new(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("PRE_START") && e.contains("3") && e.contains("database is locked"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_hook_past_its_timeout_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let argv = sh("sleep 30 & sleep 30");
        let started = std::time::Instant::now();
        let e = run(
            Hook::PostPromote,
            &argv,
            dir.path(),
            &env(dir.path()),
            Duration::from_millis(300),
            1 << 20,
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, HookError::TimedOut { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    fn alive(pid: i32) -> bool {
        // A zombie is dead for our purposes: its group can no longer act.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|st| !st.contains(") Z "))
            .unwrap_or(false)
    }

    async fn gone(pid_file: &Path) {
        let pid: i32 = std::fs::read_to_string(pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while alive(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "pid {pid} outlived its hook"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn what_a_hook_leaves_running_in_the_background_is_killed_when_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("bg.pid");
        let argv = sh(&format!(
            "sleep 30 & echo $! > {}; echo started",
            pid_file.display()
        ));
        let started = std::time::Instant::now();
        run(
            Hook::PostPromote,
            &argv,
            dir.path(),
            &env(dir.path()),
            Duration::from_secs(20),
            1 << 20,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waited for the background job"
        );
        gone(&pid_file).await;
        let log = std::fs::read_to_string(dir.path().join("hooks.log")).unwrap();
        assert!(log.contains("started"), "{log}");
    }

    #[tokio::test]
    async fn a_hook_cut_short_by_understudy_stopping_takes_its_group_along() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("bg.pid");
        let argv = sh(&format!(
            "sleep 30 & echo $! > {}; sleep 30",
            pid_file.display()
        ));
        let release = env(dir.path());
        let stop = CancellationToken::new();
        let (cancel, written) = (stop.clone(), pid_file.clone());
        // Stopped once the background job is there to take along (on a fixed timer, a loaded
        // machine could stop the hook before its shell had started the job and written its pid).
        tokio::spawn(async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::fs::read_to_string(&written)
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok())
                .is_none()
                && std::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            cancel.cancel();
        });
        let started = std::time::Instant::now();
        let e = run(
            Hook::PreStart,
            &argv,
            dir.path(),
            &release,
            Duration::from_secs(60),
            1 << 20,
            &stop,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, HookError::Stopped { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
        gone(&pid_file).await;
        let log = std::fs::read_to_string(dir.path().join("hooks.log")).unwrap();
        assert!(log.contains("killed: understudy is stopping"), "{log}");
    }

    #[tokio::test]
    async fn a_chatty_hook_keeps_hooks_log_under_its_cap_and_fails_with_a_short_tail() {
        let dir = tempfile::tempdir().unwrap();
        let cap = 64 * 1024;
        // 5 MB of output, then a last word and a failure.
        let argv = sh("head -c 5000000 /dev/zero | tr '\\0' x; echo; echo the last word; exit 4");
        let e = run(
            Hook::PreStart,
            &argv,
            dir.path(),
            &env(dir.path()),
            Duration::from_secs(20),
            cap,
            &CancellationToken::new(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("the last word") && e.len() < 1000, "{e:.2000}");
        let log = std::fs::read_to_string(dir.path().join("hooks.log")).unwrap();
        assert!(log.len() as u64 <= cap, "hooks.log is {} bytes", log.len());
        assert!(
            log.starts_with("== ") && log.contains("older bytes dropped (HOOK_LOG_MAX=65536)"),
            "{:.200}",
            log
        );
        assert!(
            log.contains("the last word") && log.contains("== exit status: 4"),
            "{}",
            &log[log.len() - 200..]
        );
        // A second run starts from the capped log and keeps it capped.
        run(
            Hook::PostPromote,
            &sh("head -c 100000 /dev/zero | tr '\\0' y"),
            dir.path(),
            &env(dir.path()),
            Duration::from_secs(20),
            cap,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        let len = std::fs::metadata(dir.path().join("hooks.log"))
            .unwrap()
            .len();
        assert!(len <= cap, "hooks.log is {len} bytes");
    }
}
