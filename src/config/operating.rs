//! The keys for operating understudy: its own log, the disk budgets, the admin API, the
//! lifecycle hooks, and a scheduled promotion.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::parse::{
    comma_list, command_shown, invalid, Raw, MAX_COMMAND_LEN, MAX_PATH_LEN, MAX_SHORT_DURATION,
    MAX_SIZE,
};
use super::ConfigError;

/// understudy's own log.
pub(super) struct Logging {
    pub(super) dir: Option<PathBuf>,
    pub(super) level: tracing::Level,
    pub(super) format: LogFormat,
}

/// How understudy's own log lines are written (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One line of text per event, for people.
    #[default]
    Text,
    /// One JSON object per line with the event's fields, for log shippers.
    Json,
}

/// LOG_DIR (relative to the base dir), LOG_LEVEL, LOG_FORMAT.
pub(super) fn logging(base: &Path, raw: &Raw) -> Result<Logging, ConfigError> {
    let dir_expected = "a directory (created if missing), or empty to log to stderr";
    let v = raw.text("LOG_DIR", MAX_PATH_LEN, dir_expected)?;
    let dir = Some(v).filter(|s| !s.is_empty()).map(|d| base.join(d));
    if let Some(d) = &dir {
        if std::fs::metadata(d).is_ok_and(|m| !m.is_dir()) {
            return Err(invalid(
                "LOG_DIR",
                v,
                &format!(
                    "a directory, but {} is a file: remove it or choose another LOG_DIR",
                    d.display()
                ),
            ));
        }
    }
    Ok(Logging {
        dir,
        level: parse_level(raw.get("LOG_LEVEL"))?,
        format: parse_format(raw.get("LOG_FORMAT"))?,
    })
}

/// Check that understudy can write its own log in `dir` (`LOG_DIR`, if set): create the directory
/// if missing and open `understudy.log` for appending, as logging will. Run at start, so a LOG_DIR
/// through a file or where this user may not write exits 64 naming the key and the path.
pub fn check_log_dir(dir: Option<&Path>) -> Result<(), ConfigError> {
    let Some(dir) = dir else {
        return Ok(());
    };
    let fail = |what: &'static str, path: &Path| {
        let (dir, path) = (dir.to_path_buf(), path.to_path_buf());
        move |source| ConfigError::LogDir {
            dir,
            what,
            path,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(fail("create the directory", dir))?;
    let log = dir.join("understudy.log");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(fail("open the log file", &log))?;
    Ok(())
}

/// LOG_FORMAT: text or json.
fn parse_format(v: &str) -> Result<LogFormat, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(invalid("LOG_FORMAT", v, "text or json")),
    }
}

/// LOG_LEVEL: one of error, warn, info, debug, trace.
fn parse_level(v: &str) -> Result<tracing::Level, ConfigError> {
    v.trim()
        .parse()
        .map_err(|_| invalid("LOG_LEVEL", v, "one of error, warn, info, debug, trace"))
}

/// Disk budgets for archives.
pub(super) struct Budgets {
    pub(super) max_base_size: u64,
    pub(super) min_free_disk: u64,
    pub(super) max_unpacked_size: u64,
}

/// MAX_BASE_SIZE, MIN_FREE_DISK, MAX_UNPACKED_SIZE.
pub(super) fn budgets(raw: &Raw) -> Result<Budgets, ConfigError> {
    Ok(Budgets {
        max_base_size: raw.size("MAX_BASE_SIZE", MAX_SIZE)?,
        min_free_disk: raw.size("MIN_FREE_DISK", MAX_SIZE)?,
        max_unpacked_size: raw.size("MAX_UNPACKED_SIZE", MAX_SIZE)?,
    })
}

/// Where the admin API listens and what it asks for.
pub(super) struct Admin {
    pub(super) listen: Option<SocketAddr>,
    pub(super) token: Option<String>,
    pub(super) connections: usize,
    pub(super) hosts: Vec<String>,
}

/// ADMIN_LISTEN, ADMIN_TOKEN.
pub(super) fn admin(raw: &Raw) -> Result<Admin, ConfigError> {
    let expected = "host:port such as 127.0.0.1:8081, a bare port (loopback), or off";
    let v = raw.text("ADMIN_LISTEN", 256, expected)?.trim();
    let listen = if v.eq_ignore_ascii_case("off") {
        None
    } else if let Ok(port) = v.parse::<u16>() {
        // A bare port is loopback here, never all interfaces: this API steers production.
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    } else {
        let v2 = v
            .strip_prefix("localhost:")
            .map(|p| format!("127.0.0.1:{p}"));
        Some(
            v2.as_deref()
                .unwrap_or(v)
                .parse()
                .map_err(|_| invalid("ADMIN_LISTEN", v, expected))?,
        )
    };
    let token_expected = "at least 16 visible ASCII characters without spaces, or empty";
    let token = raw.text_shown("ADMIN_TOKEN", 1024, token_expected, |_| "(hidden)".into())?;
    if !token.is_empty() && (token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic())) {
        // Never echo a secret back into a log.
        return Err(invalid("ADMIN_TOKEN", "(hidden)", token_expected));
    }
    let connections = raw.count_usize("MAX_ADMIN_CONNECTIONS", 100_000)?;
    Ok(Admin {
        listen,
        token: Some(token.to_string()).filter(|t| !t.is_empty()),
        connections,
        hosts: admin_hosts(raw)?,
    })
}

/// ADMIN_HOSTS: host names (no port, no scheme), kept lower case for comparison with `Host`.
fn admin_hosts(raw: &Raw) -> Result<Vec<String>, ConfigError> {
    let expected = "comma-separated host names such as understudy.internal,10.0.0.5, at most 64";
    let v = raw.text("ADMIN_HOSTS", 16 * 1024, expected)?;
    let hosts = comma_list(v);
    let bad = |h: &String| {
        h.len() > 253
            || !h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
    };
    if hosts.len() > 64 || hosts.iter().any(bad) {
        return Err(invalid("ADMIN_HOSTS", v, expected));
    }
    Ok(hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect())
}

/// The lifecycle hook commands, each already split into words; `None` when unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookCommands {
    /// Before a new build starts; failing rejects it.
    pub pre_start: Option<Vec<String>>,
    /// Before a promotion; failing leaves running untouched.
    pub pre_promote: Option<Vec<String>>,
    /// After a promotion's switch.
    pub post_promote: Option<Vec<String>>,
    /// After a rollback's switch.
    pub post_rollback: Option<Vec<String>>,
}

/// The lifecycle hooks, how long each may run, and how large their log may grow.
pub(super) struct Hooks {
    pub(super) commands: HookCommands,
    pub(super) timeout: Duration,
    pub(super) log_max: u64,
}

/// PRE_START, PRE_PROMOTE, POST_PROMOTE, POST_ROLLBACK, HOOK_TIMEOUT, HOOK_LOG_MAX.
pub(super) fn hooks(raw: &Raw) -> Result<Hooks, ConfigError> {
    Ok(Hooks {
        commands: HookCommands {
            pre_start: parse_hook("PRE_START", raw.get("PRE_START"))?,
            pre_promote: parse_hook("PRE_PROMOTE", raw.get("PRE_PROMOTE"))?,
            post_promote: parse_hook("POST_PROMOTE", raw.get("POST_PROMOTE"))?,
            post_rollback: parse_hook("POST_ROLLBACK", raw.get("POST_ROLLBACK"))?,
        },
        timeout: raw.duration("HOOK_TIMEOUT", Duration::from_millis(1), MAX_SHORT_DURATION)?,
        log_max: raw.size("HOOK_LOG_MAX", MAX_SIZE)?.max(4096),
    })
}

/// A hook command split into words as a shell would; empty means no hook.
fn parse_hook(key: &str, v: &str) -> Result<Option<Vec<String>>, ConfigError> {
    if v.len() > MAX_COMMAND_LEN {
        return Err(invalid(
            key,
            &command_shown(v),
            &format!("a command of at most {MAX_COMMAND_LEN} bytes, or empty"),
        ));
    }
    let words = shell_words::split(v).map_err(|e| {
        invalid(
            key,
            &command_shown(v),
            &format!(
                "words split as a shell would ({e}), such as `./hooks/check.sh --quick`, or empty"
            ),
        )
    })?;
    Ok(Some(words).filter(|w| !w.is_empty()))
}

/// PROMOTE_AT: an RFC 3339 instant, or empty.
pub(super) fn promote_at(raw: &Raw) -> Result<Option<std::time::SystemTime>, ConfigError> {
    let expected = "an RFC 3339 instant such as 2026-12-01T03:00:00Z, or empty";
    let v = raw.text("PROMOTE_AT", 64, expected)?;
    if v.is_empty() {
        return Ok(None);
    }
    let at = crate::instant::parse(v).map_err(|e| match e {
        crate::instant::InstantError::OutOfRange { .. } => invalid(
            "PROMOTE_AT",
            v,
            &format!(
                "an instant from {} to {} in UTC",
                crate::instant::EARLIEST,
                crate::instant::LATEST
            ),
        ),
        crate::instant::InstantError::NotRfc3339 { .. } => invalid("PROMOTE_AT", v, expected),
    })?;
    let ahead = at.duration_since(std::time::SystemTime::now());
    if ahead.is_ok_and(|d| d > crate::instant::MAX_AHEAD) {
        return Err(invalid(
            "PROMOTE_AT",
            v,
            "an instant at most 366 days from now (a mistyped year would hold every build from \
             automatic promotion until then)",
        ));
    }
    Ok(Some(at))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::config::test_support::invalid_key;
    use crate::config::Config;

    #[test]
    fn a_log_dir_that_cannot_be_made_is_named_with_the_os_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "").unwrap();
        let logs = dir.path().join("f/logs");
        let e = super::check_log_dir(Some(&logs)).unwrap_err().to_string();
        assert!(
            e.contains("LOG_DIR") && e.contains(&logs.display().to_string()),
            "{e}"
        );
        assert!(e.contains("Not a directory"), "{e}");
        let logs = dir.path().join("logs");
        super::check_log_dir(Some(&logs)).unwrap();
        assert!(logs.join("understudy.log").is_file());
        super::check_log_dir(None).unwrap();
    }

    #[test]
    fn log_dir_must_not_be_a_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".env"), "IDENTIFIER=a\nLOG_DIR=taken\n").unwrap();
        std::fs::write(dir.path().join("taken"), "").unwrap();
        let (k, v, expected) = invalid_key(Config::load(dir.path(), &BTreeMap::new(), &[]));
        assert_eq!((k.as_str(), v.as_str()), ("LOG_DIR", "taken"));
        assert!(
            expected.contains(&dir.path().join("taken").display().to_string()),
            "{expected}"
        );
        std::fs::remove_file(dir.path().join("taken")).unwrap();
        let cfg = Config::load(dir.path(), &BTreeMap::new(), &[]).unwrap();
        assert_eq!(cfg.log_dir, Some(dir.path().join("taken")));
    }
}
