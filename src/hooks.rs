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
    #[error("{hook} `{command}` could not be started: {source}")]
    Spawn {
        /// Which hook.
        hook: Hook,
        /// Its command line.
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
    #[error("{hook} `{command}` failed ({status}); its output ends with: {tail}")]
    Failed {
        /// Which hook.
        hook: Hook,
        /// Its command line.
        command: String,
        /// How it ended.
        status: String,
        /// The end of its output.
        tail: String,
    },
    /// It ran too long and was killed.
    #[error("{hook} `{command}` did not finish within HOOK_TIMEOUT ({timeout:?}) and was killed")]
    TimedOut {
        /// Which hook.
        hook: Hook,
        /// Its command line.
        command: String,
        /// The bound.
        timeout: Duration,
    },
}

/// Run `argv` for `hook` from `base`, with the release in its environment, bounded by `timeout`
/// (its whole process group is killed past it).
pub async fn run(
    hook: Hook,
    argv: &[String],
    base: &Path,
    env: &HookEnv,
    timeout: Duration,
) -> Result<(), HookError> {
    use std::io::Write;
    let command = argv.join(" ");
    let log_path = env.dir.join("hooks.log");
    let log_err = |source| HookError::Log {
        hook,
        path: log_path.clone(),
        source,
    };
    let _ = std::fs::create_dir_all(&env.dir);
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(log_err)?;
    let _ = writeln!(
        log,
        "== {hook} for {} at {}: {command}",
        env.version,
        time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    );
    let start_len = log.metadata().map(|m| m.len()).unwrap_or(0);
    let Some((program, args)) = argv.split_first() else {
        return Ok(());
    };
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
        .stdout(log.try_clone().map_err(log_err)?)
        .stderr(log.try_clone().map_err(log_err)?)
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| HookError::Spawn {
        hook,
        command: command.clone(),
        source,
    })?;
    let pgid = child.id().map(|p| nix::unistd::Pid::from_raw(p as i32));
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            if let Some(pgid) = pgid {
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            }
            let _ = child.wait().await;
            let _ = writeln!(log, "== killed after HOOK_TIMEOUT ({timeout:?})");
            return Err(HookError::TimedOut {
                hook,
                command,
                timeout,
            });
        }
    };
    match status {
        Ok(s) if s.success() => Ok(()),
        other => {
            let status = match other {
                Ok(s) => s.to_string(),
                Err(e) => format!("unknown ({e})"),
            };
            let _ = writeln!(log, "== {status}");
            Err(HookError::Failed {
                hook,
                command,
                status,
                tail: output_tail(&log_path, start_len),
            })
        }
    }
}

/// The last few hundred bytes a hook wrote, on one line.
fn output_tail(path: &Path, from: u64) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let mine = &text[(from as usize).min(text.len())..];
    let start = mine.len().saturating_sub(400);
    let tail = String::from_utf8_lossy(&mine[start..]);
    let tail = tail
        .lines()
        .filter(|l| !l.starts_with("== "))
        .collect::<Vec<_>>()
        .join(" | ");
    if tail.trim().is_empty() {
        "(no output)".to_string()
    } else {
        tail
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
        )
        .await
        .unwrap_err();
        assert!(matches!(e, HookError::TimedOut { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
