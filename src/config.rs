//! Configuration: `.env` in the base dir, overridden by `UNDERSTUDY_<KEY>` environment variables,
//! overridden by CLI flags. Parsed and validated before any port is bound.
//!
//! Every key, its default and its meaning is listed once, in [`KEYS`]; `.env.example` is generated
//! from the same table, so the two cannot drift. The keys are read in groups, each in the module
//! that owns it: `serving` (users and children), `judging` (scoring and diffing), `operating`
//! (own log, budgets, admin API, hooks, schedule) and `webhooks` (where events are POSTed).

mod canary;
mod cross;
mod dotenv;
mod judging;
mod keys;
mod operating;
mod parse;
mod reload;
mod serving;
#[cfg(test)]
mod test_support;
mod webhooks;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Method;

pub use canary::{CanaryConfig, Sticky};
use dotenv::read_dotenv;
pub use judging::{DiffConfig, MaxBodyDiff, ReplayConfig, ScoreConfig, AUTO_MAX_BODY_DIFF};
use keys::canonical_key;
pub use keys::{
    closest_key, unknown_env_keys, unknown_env_warnings, unknown_key_warnings, KeyDoc, KEYS,
};
pub use operating::{check_log_dir, HookCommands, LogFormat};
pub use parse::parse_duration;
use parse::{invalid, Raw, MAX_WINDOW};
pub use reload::{
    changed_keys, merge, new_instances_note, restart_note, Reload, LIVE_KEYS, NEW_INSTANCE_KEYS,
};
pub use serving::{UserLimits, MOST_HEADERS};
pub use webhooks::{receiver_shown, redacted, WebhookCa, WebhookFormat};

/// Longest value echoed back in an error; longer ones are cut.
const MAX_ECHO: usize = 200;

/// Why the configuration could not be used; each variant names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key has a value that does not parse or is out of bounds.
    #[error("config key {key} has value {value:?}: expected {expected}")]
    Invalid {
        /// The canonical key.
        key: String,
        /// The value as given (cut if very long).
        value: String,
        /// What would be accepted, with bounds and an example.
        expected: String,
    },
    /// A required key is missing.
    #[error("config key {key} is not set: {hint}")]
    Missing {
        /// The missing key.
        key: &'static str,
        /// How to set it.
        hint: &'static str,
    },
    /// The `.env` file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The `.env` file.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// A `.env` line does not follow dotenv syntax.
    #[error(
        "{path}:{line}: cannot parse {text:?}: expected KEY=VALUE; put a value holding spaces, \
         '#', '$', '\\' or quotes in single quotes (KEY='a b')"
    )]
    Syntax {
        /// The `.env` file.
        path: PathBuf,
        /// 1-based line where the bad entry starts.
        line: usize,
        /// That line's text.
        text: String,
    },
    /// `.env` was there at start and is gone at a reload.
    #[error(
        "{path} does not exist: put it back (understudy example-env prints one with every key) \
         and reload again"
    )]
    DotenvGone {
        /// The `.env` file looked for.
        path: PathBuf,
    },
    /// A CLI `--set` that is not `KEY=VALUE`.
    #[error("--set {0:?}: expected KEY=VALUE")]
    BadOverride(String),
    /// The base directory is missing or not a directory.
    #[error(
        "base directory {path} does not exist or is not a directory: create it or pass --base"
    )]
    NoBase {
        /// The base directory as given.
        path: PathBuf,
    },
    /// understudy cannot write its state into the base directory.
    #[error(
        "cannot write in {path}: {source}; understudy keeps its state in .understudy/ in the base \
         directory: make it a writable directory for this user, or pass another --base"
    )]
    NotWritable {
        /// The path that could not be created or written.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The base dir's path is too long for the admin socket's path to fit in a unix socket
    /// address.
    #[error(
        "base directory {base} is too long for understudy's admin socket: {path} is {len} bytes, \
         and a unix socket's path holds at most {max}; move the base dir to a path of at most \
         {room} bytes and pass that as --base"
    )]
    SocketPathTooLong {
        /// The base directory, absolute.
        base: PathBuf,
        /// The admin socket's path in it.
        path: PathBuf,
        /// That path's length in bytes.
        len: usize,
        /// The longest a socket's path may be.
        max: usize,
        /// The longest the base dir's path may be.
        room: usize,
    },
    /// understudy cannot write its own log where `LOG_DIR` says: found at start, so the key is
    /// named instead of a bare OS error later.
    #[error(
        "config key LOG_DIR names {dir}: cannot {what} {path}: {source}; make LOG_DIR a \
         directory this user can create and write (no file in its way), or set it empty to log to \
         stderr"
    )]
    LogDir {
        /// LOG_DIR as resolved (a relative value is in the base dir).
        dir: PathBuf,
        /// What failed: creating the directory or opening the log file.
        what: &'static str,
        /// The path that failed.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// `v`, cut to [`MAX_ECHO`] characters so an absurd value does not flood the terminal.
fn cut(v: &str) -> String {
    match v.char_indices().nth(MAX_ECHO) {
        None => v.to_string(),
        Some((i, _)) => format!("{}… ({} bytes in all)", &v[..i], v.len()),
    }
}

/// Validated configuration; every field has been parsed and checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// The base directory understudy owns.
    pub base: PathBuf,
    /// Name prefix of the builds.
    pub identifier: String,
    /// Where users connect.
    pub listen: SocketAddr,
    /// Ports for children.
    pub port_range: (u16, u16),
    /// Host the children listen on: an IP address (IPv6 without brackets) or a host name.
    pub upstream_host: String,
    /// Properties file name in the base dir, if any.
    pub properties_file: Option<String>,
    /// Port key in the properties file.
    pub port_key: String,
    /// Start template for jars, as words; `{artifact}`, `{port}` and `{dir}` are left in them
    /// for the caller to replace.
    pub jar_command: Vec<String>,
    /// Start template for executables, as words, placeholders left in like `jar_command`.
    pub exec_command: Vec<String>,
    /// Readiness path, if any.
    pub ready_path: Option<String>,
    /// Heartbeat path, if any (else the port is probed).
    pub health_path: Option<String>,
    /// Heartbeat period (and status.json's).
    pub heartbeat_every: Duration,
    /// Misses in a row that count as "stopped answering".
    pub heartbeat_misses: u32,
    /// Readiness deadline.
    pub ready_timeout: Duration,
    /// SIGTERM → SIGKILL grace, and drain bound.
    pub shutdown_grace: Duration,
    /// How long a dropped file must stay unchanged.
    pub settle_time: Duration,
    /// How long a user may take to send a request head.
    pub header_timeout: Duration,
    /// `BODY_TIMEOUT`: a user's silence allowed between two reads of a request body.
    pub body_timeout: Duration,
    /// `UPSTREAM_TIMEOUT`: running's silence allowed while an answer is awaited.
    pub upstream_timeout: Duration,
    /// `SEND_TIMEOUT`: a user's silence allowed while an answer waits to be taken.
    pub send_timeout: Duration,
    /// `ANSWER_BUFFER`: one answer's read-ahead.
    pub answer_buffer: u64,
    /// `REQUEST_BUFFER`: one request body's read-ahead, before running is asked.
    pub request_buffer: u64,
    /// `ANSWER_MEMORY`: all answers' read-ahead in memory.
    pub answer_memory: u64,
    /// `ANSWER_SPILL`: all answers' read-ahead on disk.
    pub answer_spill: u64,
    /// Methods that are mirrored.
    pub mirror_methods: Vec<Method>,
    /// Largest mirrored body.
    pub mirror_max_body: u64,
    /// Mirror queue capacity.
    pub mirror_queue: usize,
    /// Mirror requests in flight.
    pub mirror_concurrency: usize,
    /// Mirror answer deadline.
    pub mirror_timeout: Duration,
    /// Proxy threads; `None` means one per core.
    pub worker_threads: Option<usize>,
    /// Each proxy thread kept on a core of its own (`CPU_AFFINITY=auto`), when cores allow.
    pub cpu_affinity: bool,
    /// Own log directory, if any.
    pub log_dir: Option<PathBuf>,
    /// Own log level.
    pub log_level: tracing::Level,
    /// Own log as text or JSON lines.
    pub log_format: LogFormat,
    /// Scoring thresholds.
    pub score: ScoreConfig,
    /// The canary phase after the shadow verdict (`CANARY_*`).
    pub canary: CanaryConfig,
    /// How answers are compared.
    pub diff: DiffConfig,
    /// What users may send, and how many at once.
    pub limits: UserLimits,
    /// Base dir size budget in bytes.
    pub max_base_size: u64,
    /// Free disk to keep, in bytes.
    pub min_free_disk: u64,
    /// Largest total a `.zip` bundle may unpack to, in bytes: a zip bomb is rejected, not unpacked.
    pub max_unpacked_size: u64,
    /// Lifecycle hooks (argv words), run with UNDERSTUDY_VERSION, _PREVIOUS, _DIR, _PORT.
    pub hooks: HookCommands,
    /// How long a hook may run.
    pub hook_timeout: Duration,
    /// Where every event is POSTed (http or https).
    pub webhook_urls: Vec<String>,
    /// `WEBHOOK_FORMAT`: JSON for programs, or one readable line for chat.
    pub webhook_format: WebhookFormat,
    /// `WEBHOOK_CA_FILE`: a private CA https receivers may be signed by, besides the system's.
    pub webhook_ca: Option<WebhookCa>,
    /// How long after a promotion the new running is guarded (0: not at all).
    pub rollback_window: Duration,
    /// `PROMOTE_AT`: promote whatever is under test at this instant, once.
    pub promote_at: Option<std::time::SystemTime>,
    /// How late a scheduled promotion may still fire.
    pub missed_schedule_grace: Duration,
    /// Admin API address; `None` when `ADMIN_LISTEN=off` (the unix socket is still served).
    pub admin_listen: Option<SocketAddr>,
    /// Admin bearer token from `ADMIN_TOKEN`; `None` means generate (or reuse) `admin.token`.
    pub admin_token: Option<String>,
    /// `MAX_ADMIN_CONNECTIONS`: the admin side's share of descriptors, so it cannot starve the proxy.
    pub admin_connections: usize,
    /// `ADMIN_HOSTS`: extra `Host` names (lower case, port stripped) the admin API answers to.
    pub admin_hosts: Vec<String>,
    /// `HOOK_LOG_MAX`: bytes hooks.log may grow to before its older half is dropped.
    pub hook_log_max: u64,
    /// Unknown keys seen in `.env` (logged once tracing is up, never fatal: a Vili `.env` may carry others).
    pub unknown_keys: Vec<String>,
    /// Not a key: whether MAX_CONNECTIONS was set (in `.env`, the environment or on the command
    /// line) rather than left at its default, so a default the open-files limit lowers is said
    /// at info level and only a number the user chose at warn.
    pub max_connections_set: bool,
    /// Not a key: understudy's own program, started as each instance's watchdog (see
    /// [`crate::watchdog`]). `load` leaves it `None` (no watchdog); `main` sets it, since only
    /// `main` knows the running executable is understudy. A reload keeps the value in force.
    pub watchdog: Option<PathBuf>,
}

/// Where raw values come from, so tests can feed a map instead of the process environment.
pub trait Env {
    /// The value of environment variable `name`, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl Config {
    /// Load `.env` from `base`, apply `UNDERSTUDY_<KEY>` variables from `env`, then `overrides`
    /// (CLI), and validate everything.
    pub fn load(
        base: &Path,
        env: &dyn Env,
        overrides: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        if !base.is_dir() {
            return Err(ConfigError::NoBase {
                path: base.to_path_buf(),
            });
        }
        let mut raw: BTreeMap<String, String> = BTreeMap::new();
        let mut unknown = Vec::new();
        for (key, value) in read_dotenv(&base.join(".env"))? {
            match canonical_key(&key) {
                Some(k) => {
                    raw.insert(k.to_string(), value);
                }
                None => unknown.push(key),
            }
        }
        for doc in KEYS {
            if let Some(v) = env.var(&format!("UNDERSTUDY_{}", doc.key)) {
                raw.insert(doc.key.to_string(), v);
            }
        }
        for (key, value) in overrides {
            let k = canonical_key(key).ok_or_else(|| {
                let known: Vec<&str> = KEYS.iter().map(|k| k.key).collect();
                invalid(
                    key,
                    value,
                    &format!("a known key, one of {}", known.join(", ")),
                )
            })?;
            raw.insert(k.to_string(), value.clone());
        }
        let mut cfg = Self::from_raw(base, &Raw(&raw))?;
        cross::listen_apart(&cfg)?;
        cross::properties_readable(base, &cfg)?;
        cross::commands_runnable(&raw, &cfg)?;
        cfg.unknown_keys = unknown;
        // The default written out (`understudy example-env` writes every key) is still the
        // default: its lowering is not the user's choice to be warned about.
        cfg.max_connections_set = raw.contains_key("MAX_CONNECTIONS")
            && cfg.limits.connections.to_string() != keys::default_of("MAX_CONNECTIONS");
        Ok(cfg)
    }

    /// Load again at a reload (SIGHUP): as [`Config::load`], but a `.env` that was there at
    /// start (`had_dotenv`) and is gone is refused by name; a start without one takes the keys
    /// from the environment alone, and so does its reload.
    pub fn reload(
        base: &Path,
        env: &dyn Env,
        overrides: &[(String, String)],
        had_dotenv: bool,
    ) -> Result<Config, ConfigError> {
        let path = base.join(".env");
        if had_dotenv && base.is_dir() && !path.exists() {
            return Err(ConfigError::DotenvGone { path });
        }
        Self::load(base, env, overrides)
    }

    /// Validate every key, one group at a time (in this order: the first invalid key is the one
    /// reported), and assemble the result.
    fn from_raw(base: &Path, raw: &Raw) -> Result<Config, ConfigError> {
        let groups = Groups {
            id: serving::identity(raw)?,
            children: serving::children(raw)?,
            mirror: serving::mirror(raw)?,
            logging: operating::logging(base, raw)?,
            score: judging::scoring(raw)?,
            canary: canary::canary(raw)?,
            diff: judging::diffing(raw)?,
            limits: serving::user_limits(raw)?,
            budgets: operating::budgets(raw)?,
            admin: operating::admin(raw)?,
            promote_at: operating::promote_at(raw)?,
            rollback_window: raw.duration("ROLLBACK_WINDOW", Duration::ZERO, MAX_WINDOW)?,
            webhooks: webhooks::webhooks(base, raw)?,
            pacing: serving::pacing(raw)?,
            hooks: operating::hooks(raw)?,
            missed_schedule_grace: raw.duration(
                "MISSED_SCHEDULE_GRACE",
                Duration::ZERO,
                MAX_WINDOW,
            )?,
        };
        Ok(groups.into_config(base))
    }

    /// Text of `.env.example`: every key with its default and meaning, quoted so that it reads
    /// back (by dotenv rules) as exactly the default.
    pub fn example() -> String {
        keys::example()
    }
}

/// Every group of keys, validated, before they are laid out flat in a [`Config`].
struct Groups {
    id: serving::Identity,
    children: serving::Children,
    mirror: serving::Mirror,
    logging: operating::Logging,
    score: ScoreConfig,
    canary: CanaryConfig,
    diff: DiffConfig,
    limits: UserLimits,
    budgets: operating::Budgets,
    admin: operating::Admin,
    promote_at: Option<std::time::SystemTime>,
    rollback_window: Duration,
    webhooks: webhooks::Webhooks,
    pacing: serving::Pacing,
    hooks: operating::Hooks,
    missed_schedule_grace: Duration,
}

impl Groups {
    /// The configuration, field by field; `unknown_keys` and `watchdog` are left for the caller.
    fn into_config(self, base: &Path) -> Config {
        let Groups {
            id,
            children,
            mirror,
            logging,
            admin,
            pacing,
            hooks,
            ..
        } = self;
        Config {
            base: base.to_path_buf(),
            identifier: id.identifier,
            listen: id.listen,
            port_range: id.port_range,
            upstream_host: id.upstream_host,
            properties_file: children.properties_file,
            port_key: children.port_key,
            jar_command: children.jar_command,
            exec_command: children.exec_command,
            ready_path: children.ready_path,
            health_path: children.health_path,
            heartbeat_every: children.heartbeat_every,
            heartbeat_misses: children.heartbeat_misses,
            ready_timeout: children.ready_timeout,
            shutdown_grace: children.shutdown_grace,
            settle_time: children.settle_time,
            mirror_methods: mirror.methods,
            mirror_max_body: mirror.max_body,
            mirror_queue: mirror.queue,
            mirror_concurrency: mirror.concurrency,
            mirror_timeout: mirror.timeout,
            worker_threads: mirror.worker_threads,
            cpu_affinity: mirror.cpu_affinity,
            log_dir: logging.dir,
            log_level: logging.level,
            log_format: logging.format,
            score: self.score,
            canary: self.canary,
            diff: self.diff,
            limits: self.limits,
            max_base_size: self.budgets.max_base_size,
            min_free_disk: self.budgets.min_free_disk,
            max_unpacked_size: self.budgets.max_unpacked_size,
            hooks: hooks.commands,
            hook_timeout: hooks.timeout,
            rollback_window: self.rollback_window,
            webhook_urls: self.webhooks.urls,
            webhook_format: self.webhooks.format,
            webhook_ca: self.webhooks.ca,
            header_timeout: pacing.header_timeout,
            body_timeout: pacing.body_timeout,
            upstream_timeout: pacing.upstream_timeout,
            send_timeout: pacing.send_timeout,
            answer_buffer: pacing.answer_buffer,
            request_buffer: pacing.request_buffer,
            answer_memory: pacing.answer_memory,
            answer_spill: pacing.answer_spill,
            promote_at: self.promote_at,
            missed_schedule_grace: self.missed_schedule_grace,
            admin_listen: admin.listen,
            admin_token: admin.token,
            admin_connections: admin.connections,
            admin_hosts: admin.hosts,
            hook_log_max: hooks.log_max,
            unknown_keys: Vec::new(),
            max_connections_set: false,
            watchdog: None,
        }
    }
}

/// Check that understudy can keep its state in `base`: create `.understudy/` if missing and a
/// file inside it, then remove that file. Run at start so a read-only base fails before any child.
pub fn check_base_writable(base: &Path) -> Result<(), ConfigError> {
    let dir = base.join(".understudy");
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ConfigError::NotWritable { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(fail(&dir))?;
    // What is kept here (the admin socket and token, the state) must not be replaced by others,
    // whatever the umask understudy was started with: the folder is writable by its owner only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dir)
        .map_err(fail(&dir))?
        .permissions()
        .mode();
    if mode & 0o022 != 0 {
        let private = std::fs::Permissions::from_mode(mode & 0o755);
        std::fs::set_permissions(&dir, private).map_err(fail(&dir))?;
    }
    let probe = dir.join(format!(".write-check-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(fail(&probe))?;
    std::fs::remove_file(&probe).map_err(fail(&probe))
}

/// Check that the admin socket's path in `base` (absolute, as understudy binds it) fits in a unix
/// socket address: past [`MAX_SOCKET_PATH`](crate::layout::MAX_SOCKET_PATH) bytes no socket can be
/// bound there, so a base dir that long is refused at start, saying how much shorter it must be.
pub fn check_admin_socket(base: &Path) -> Result<(), ConfigError> {
    use std::os::unix::ffi::OsStrExt;
    let path = crate::layout::Layout::new(base, "").admin_socket();
    let len = path.as_os_str().as_bytes().len();
    let max = crate::layout::MAX_SOCKET_PATH;
    if len <= max {
        return Ok(());
    }
    let base_len = base.as_os_str().as_bytes().len();
    Err(ConfigError::SocketPathTooLong {
        base: base.to_path_buf(),
        path,
        len,
        max,
        room: (max + base_len).saturating_sub(len),
    })
}

/// Parse a CLI `KEY=VALUE` override.
pub fn parse_override(s: &str) -> Result<(String, String), ConfigError> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| ConfigError::BadOverride(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::{load, load_set};

    /// A start configured by the environment alone (no `.env`) reloads from it alone; a `.env`
    /// there at start and gone since is refused by name.
    #[test]
    fn a_reload_without_dotenv_is_refused_only_where_one_was_there_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let env: BTreeMap<String, String> =
            [("UNDERSTUDY_IDENTIFIER".to_string(), "a".to_string())].into();
        let cfg = Config::reload(dir.path(), &env, &[], false).unwrap();
        assert_eq!(cfg.identifier, "a");
        let e = Config::reload(dir.path(), &env, &[], true).unwrap_err();
        assert!(matches!(e, ConfigError::DotenvGone { .. }), "{e}");
    }

    /// A reviewer's case: `understudy example-env` writes `MAX_CONNECTIONS=10000`, the default,
    /// and every start then warned about its lowering as if the user had chosen it.
    #[test]
    fn max_connections_written_at_its_default_is_not_a_choice() {
        let set = |line: &str| {
            load(&format!("IDENTIFIER=a\n{line}\n"), &[])
                .unwrap()
                .max_connections_set
        };
        assert!(!set(""));
        assert!(!set("MAX_CONNECTIONS=10000"));
        assert!(set("MAX_CONNECTIONS=5000"));
    }

    #[test]
    fn env_overrides_file() {
        let cfg = load(
            "IDENTIFIER=a\nLISTEN=127.0.0.1:1000\n",
            &[("UNDERSTUDY_LISTEN", "127.0.0.1:2000")],
        )
        .unwrap();
        assert_eq!(cfg.listen.port(), 2000);
    }

    #[test]
    fn bad_values_name_key_and_value() {
        let e = load("IDENTIFIER=a\nPORT_RANGE=abc\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("PORT_RANGE") && e.contains("abc"), "{e}");
        let e = load("IDENTIFIER=a\nSTABLE_WINDOW=10 minutes\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("STABLE_WINDOW") && e.contains("10 minutes"),
            "{e}"
        );
        let e = load("", &[]).unwrap_err().to_string();
        assert!(e.contains("IDENTIFIER"), "{e}");
    }

    /// Keys where twenty digits are a plausible value.
    const SHORT_TEXT: &[&str] = &[
        "IDENTIFIER",
        "PROPERTIES_FILE_NAME",
        "PORT_KEY",
        "MIRROR_METHODS",
        "JAR_COMMAND",
        "EXEC_COMMAND",
        "LOG_DIR",
        "PLAIN_LOG_ERROR_REGEX",
        "PLAIN_LOG_WARN_REGEX",
        "ADMIN_HOSTS",
    ];
    /// Keys where 400 characters are a plausible value.
    const LONG_TEXT: &[&str] = &[
        "PRE_START",
        "PRE_PROMOTE",
        "POST_PROMOTE",
        "POST_ROLLBACK",
        "ADMIN_TOKEN",
        "JAR_COMMAND",
        "EXEC_COMMAND",
        "LOG_DIR",
        "PLAIN_LOG_ERROR_REGEX",
        "PLAIN_LOG_WARN_REGEX",
        "DIFF_IGNORE_HEADERS",
    ];

    #[test]
    fn every_key_refuses_an_absurd_value_cleanly() {
        for doc in KEYS {
            // The default's unit (`m`, `KiB`, `-20099`, ` -jar {artifact}`) after absurd digits.
            let unit = doc
                .default
                .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
            for digits in [20, 400, 100_000] {
                let value = format!("{}{unit}", "9".repeat(digits));
                let r =
                    std::panic::catch_unwind(|| load_set("IDENTIFIER=a\n", &[(doc.key, &value)]));
                let r = r.unwrap_or_else(|_| panic!("{}={value:.40}… panicked", doc.key));
                match r {
                    Err(e) => assert!(e.to_string().contains(doc.key), "{}: {e}", doc.key),
                    // Twenty digits are a fine name; 400 a fine command, path or regex.
                    Ok(_) => assert!(
                        (digits == 20 && SHORT_TEXT.contains(&doc.key))
                            || (digits <= 400 && LONG_TEXT.contains(&doc.key)),
                        "{}={value:.40}… was accepted",
                        doc.key
                    ),
                }
            }
        }
    }

    #[test]
    fn a_base_dir_too_long_for_the_admin_socket_is_refused_saying_how_long_it_may_be() {
        let max = crate::layout::MAX_SOCKET_PATH;
        assert_eq!(max, 107, "Linux's sun_path less its NUL");
        let room = max - "/.understudy/admin.sock".len();
        let fits = PathBuf::from(format!("/{}", "b".repeat(room - 1)));
        check_admin_socket(&fits).unwrap();
        let long = PathBuf::from(format!("/{}", "b".repeat(room)));
        let e = check_admin_socket(&long).unwrap_err().to_string();
        assert!(e.contains(&long.display().to_string()), "{e}");
        assert!(e.contains("108 bytes") && e.contains("at most 107"), "{e}");
        assert!(e.contains(&format!("at most {room} bytes")), "{e}");
    }

    #[test]
    fn base_must_be_writable() {
        let dir = tempfile::tempdir().unwrap();
        check_base_writable(dir.path()).unwrap();
        let state = dir.path().join(".understudy");
        assert!(state.is_dir());
        assert_eq!(
            std::fs::read_dir(&state).unwrap().count(),
            0,
            "probe removed"
        );

        // `.understudy` a file: nothing can be created in it, even by root.
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(".understudy");
        std::fs::write(&state, "").unwrap();
        let e = check_base_writable(dir.path()).unwrap_err();
        assert!(matches!(e, ConfigError::NotWritable { .. }), "{e:?}");
        assert!(e.to_string().contains(&state.display().to_string()), "{e}");

        // A read-only file system (procfs refuses even root).
        if Path::new("/proc/self").is_dir() {
            let e = check_base_writable(Path::new("/proc/self")).unwrap_err();
            assert!(e.to_string().contains("/proc/self/.understudy"), "{e}");
        }
    }
}
