//! Configuration: `.env` in the base dir, overridden by `UNDERSTUDY_<KEY>` environment variables,
//! overridden by CLI flags. Parsed and validated before any port is bound.
//!
//! Every key, its default and its meaning is listed once, in [`KEYS`]; `.env.example` is generated
//! from the same table, so the two cannot drift.

mod dotenv;
mod keys;
mod parse;
mod reload;
#[cfg(test)]
mod test_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Method;

use dotenv::read_dotenv;
use keys::canonical_key;
pub use keys::{KeyDoc, KEYS};
pub use parse::parse_duration;
use parse::{
    comma_list, invalid, on_off, parse_number, Raw, MAX_COMMAND_LEN, MAX_COUNT, MAX_LOG_DELTA,
    MAX_MIRROR_BODY, MAX_MIRROR_CONCURRENCY, MAX_MIRROR_QUEUE, MAX_P95_FACTOR, MAX_PATH_LEN,
    MAX_SHORT_DURATION, MAX_SIZE, MAX_WINDOW, MAX_WORKER_THREADS,
};
pub use reload::{changed_keys, LIVE_KEYS};

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
    /// `UPSTREAM_TIMEOUT`: running's silence allowed while an answer is awaited.
    pub upstream_timeout: Duration,
    /// `SEND_TIMEOUT`: a user's silence allowed while an answer waits to be taken.
    pub send_timeout: Duration,
    /// `ANSWER_BUFFER`: one answer's read-ahead.
    pub answer_buffer: u64,
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
    /// Own log directory, if any.
    pub log_dir: Option<PathBuf>,
    /// Own log level.
    pub log_level: tracing::Level,
    /// Scoring thresholds.
    pub score: ScoreConfig,
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
    /// Where every event is POSTed.
    pub webhook_urls: Vec<String>,
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
    /// Not a key: understudy's own program, started as each instance's watchdog (see
    /// [`crate::watchdog`]). `load` leaves it `None` (no watchdog); `main` sets it, since only
    /// `main` knows the running executable is understudy. A reload keeps the value in force.
    pub watchdog: Option<PathBuf>,
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

/// Thresholds the scorer judges testing by.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreConfig {
    /// Time testing must be scored before promotion.
    pub stable_window: Duration,
    /// Pairs needed before any verdict.
    pub min_mirrored: u64,
    /// Allowed 5xx-rate excess.
    pub max_5xx_delta: f64,
    /// Allowed share of 2xx→4xx pairs.
    pub max_client_error_delta: f64,
    /// Allowed error-lines-per-request excess.
    pub max_log_error_delta: f64,
    /// Allowed warn-lines-per-request excess.
    pub max_log_warn_delta: f64,
    /// Pairs an endpoint needs before it is judged alone.
    pub min_endpoint_pairs: u64,
    /// Optional p95 latency ceiling as a ratio to running.
    pub max_p95_ratio: Option<f64>,
    /// Optional ceiling on the share of pairs with one (non-noise) difference.
    pub max_body_diff: Option<f64>,
    /// Relative margin a difference rate needs over its noise rate to count.
    pub diff_relative: f64,
    /// Absolute margin a difference rate needs over its noise rate to count.
    pub diff_absolute: f64,
    /// Confidence a rate comparison needs before it decides.
    pub confidence: f64,
    /// Optional ceiling on testing's RSS over running's.
    pub max_rss_ratio: Option<f64>,
    /// Optional ceiling on testing's CPU per request over running's.
    pub max_cpu_ratio: Option<f64>,
    /// `NOISE_CANCEL`: a secondary measures noise, so differences wait for it.
    pub noise_cancel: bool,
    /// `DIFF_SAMPLE`: the share of pairs meant to be compared; promotion waits for that share of
    /// `MIN_MIRRORED` to have been compared.
    pub diff_sample: f64,
    /// Plain-text error line regex.
    pub plain_error_regex: String,
    /// Plain-text warn line regex.
    pub plain_warn_regex: String,
    /// Evaluation period.
    pub evaluate_every: Duration,
}

/// What one user may send and how many may be connected (the proxy's limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserLimits {
    /// Largest request head, bytes.
    pub header_bytes: usize,
    /// Most header fields per request.
    pub headers: usize,
    /// Largest request body, bytes.
    pub request_body: u64,
    /// Most user connections at once.
    pub connections: usize,
}

/// MAX_HEADER_BYTES, MAX_HEADERS, MAX_REQUEST_BODY, MAX_CONNECTIONS.
fn user_limits(raw: &Raw) -> Result<UserLimits, ConfigError> {
    let header_bytes = raw.size("MAX_HEADER_BYTES", 16 << 20)?;
    if header_bytes < 1024 {
        return Err(invalid(
            "MAX_HEADER_BYTES",
            raw.get("MAX_HEADER_BYTES"),
            "a size between 1KiB and 16MiB, such as 64KiB",
        ));
    }
    Ok(UserLimits {
        header_bytes: header_bytes as usize,
        headers: raw.count_usize("MAX_HEADERS", 10_000)?,
        request_body: raw.size("MAX_REQUEST_BODY", MAX_SIZE)?,
        connections: raw.count_usize("MAX_CONNECTIONS", 10_000_000)?,
    })
}

/// How answers are captured and compared (the mirror's side of judging answers).
#[derive(Debug, Clone, PartialEq)]
pub struct DiffConfig {
    /// Largest body compared in full, in bytes.
    pub max_body: usize,
    /// Share of mirrored requests compared.
    pub sample: f64,
    /// Whether a second instance of running measures noise.
    pub noise_cancel: bool,
    /// JSON paths that are noise.
    pub ignore: Vec<String>,
    /// JSON array paths compared as multisets.
    pub unordered: Vec<String>,
    /// Header names (lower case) not compared.
    pub ignore_headers: Vec<String>,
}

/// NOISE_CANCEL: on or off.
fn noise_cancel(raw: &Raw) -> Result<bool, ConfigError> {
    on_off(raw, "NOISE_CANCEL")
}

/// A comma-separated list of JSON paths, each starting with `$`.
fn json_paths(raw: &Raw, key: &'static str) -> Result<Vec<String>, ConfigError> {
    let expected = "comma-separated JSON paths starting with $, such as $.meta.request_id,$.items[*].updated_at";
    let v = raw.text(key, 16 * 1024, expected)?;
    let paths = comma_list(v);
    if paths.len() > 256 || paths.iter().any(|p| !p.starts_with('$')) {
        return Err(invalid(key, v, &format!("{expected}, at most 256")));
    }
    Ok(paths)
}

/// The DIFF_* keys and NOISE_CANCEL.
fn diffing(raw: &Raw) -> Result<DiffConfig, ConfigError> {
    let max_body = raw.size("DIFF_MAX_BODY", 64 << 20)?;
    let headers = raw.text(
        "DIFF_IGNORE_HEADERS",
        16 * 1024,
        "comma-separated header names such as Date,Server",
    )?;
    let ignore_headers = headers
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| match http::HeaderName::from_bytes(h.as_bytes()) {
            Ok(n) => Ok(n.as_str().to_string()),
            Err(_) => Err(invalid(
                "DIFF_IGNORE_HEADERS",
                headers,
                "comma-separated header names such as Date,Server",
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(DiffConfig {
        max_body: usize::try_from(max_body)
            .map_err(|_| invalid("DIFF_MAX_BODY", raw.get("DIFF_MAX_BODY"), "a smaller size"))?,
        sample: raw.number("DIFF_SAMPLE", 0.0, 1.0, "a fraction")?,
        noise_cancel: noise_cancel(raw)?,
        ignore: json_paths(raw, "DIFF_IGNORE")?,
        unordered: json_paths(raw, "DIFF_UNORDERED")?,
        ignore_headers,
    })
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
        cfg.unknown_keys = unknown;
        Ok(cfg)
    }

    /// Validate every key, one group at a time, and assemble the result.
    fn from_raw(base: &Path, raw: &Raw) -> Result<Config, ConfigError> {
        let id = identity(raw)?;
        let children = children(raw)?;
        let mirror = mirror(raw)?;
        let logging = logging(base, raw)?;
        let score = scoring(raw)?;
        let diff = diffing(raw)?;
        let limits = user_limits(raw)?;
        let budgets = budgets(raw)?;
        let admin = admin(raw)?;
        let promote_at = promote_at(raw)?;
        let rollback_window = raw.duration("ROLLBACK_WINDOW", Duration::ZERO, MAX_WINDOW)?;
        let webhook_urls = webhook_urls(raw)?;
        let header_timeout = raw.duration(
            "HEADER_TIMEOUT",
            Duration::from_millis(100),
            MAX_SHORT_DURATION,
        )?;
        let upstream_timeout = raw.duration(
            "UPSTREAM_TIMEOUT",
            Duration::from_millis(100),
            MAX_SHORT_DURATION,
        )?;
        let send_timeout = raw.duration(
            "SEND_TIMEOUT",
            Duration::from_millis(100),
            MAX_SHORT_DURATION,
        )?;
        let answer_buffer = raw.size("ANSWER_BUFFER", 1 << 30)?;
        let answer_memory = raw.size("ANSWER_MEMORY", 64 << 30)?;
        let answer_spill = raw.size("ANSWER_SPILL", MAX_SIZE)?;
        let hooks = HookCommands {
            pre_start: parse_hook("PRE_START", raw.get("PRE_START"))?,
            pre_promote: parse_hook("PRE_PROMOTE", raw.get("PRE_PROMOTE"))?,
            post_promote: parse_hook("POST_PROMOTE", raw.get("POST_PROMOTE"))?,
            post_rollback: parse_hook("POST_ROLLBACK", raw.get("POST_ROLLBACK"))?,
        };
        let hook_timeout =
            raw.duration("HOOK_TIMEOUT", Duration::from_millis(1), MAX_SHORT_DURATION)?;
        let hook_log_max = raw.size("HOOK_LOG_MAX", MAX_SIZE)?.max(4096);
        let missed_schedule_grace =
            raw.duration("MISSED_SCHEDULE_GRACE", Duration::ZERO, MAX_WINDOW)?;
        Ok(Config {
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
            log_dir: logging.dir,
            log_level: logging.level,
            score,
            diff,
            limits,
            max_base_size: budgets.max_base_size,
            min_free_disk: budgets.min_free_disk,
            max_unpacked_size: budgets.max_unpacked_size,
            hooks,
            hook_timeout,
            rollback_window,
            webhook_urls,
            header_timeout,
            upstream_timeout,
            send_timeout,
            answer_buffer,
            answer_memory,
            answer_spill,
            promote_at,
            missed_schedule_grace,
            admin_listen: admin.listen,
            admin_token: admin.token,
            admin_connections: admin.connections,
            admin_hosts: admin.hosts,
            hook_log_max,
            unknown_keys: Vec::new(),
            watchdog: None,
        })
    }

    /// Text of `.env.example`: every key with its default and meaning, quoted so that it reads
    /// back (by dotenv rules) as exactly the default.
    pub fn example() -> String {
        keys::example()
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
    let probe = dir.join(format!(".write-check-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(fail(&probe))?;
    std::fs::remove_file(&probe).map_err(fail(&probe))
}

/// Who understudy is and where it and the children are reached.
struct Identity {
    identifier: String,
    listen: SocketAddr,
    port_range: (u16, u16),
    upstream_host: String,
}

/// IDENTIFIER, SCHEME, UPSTREAM_HOST, LISTEN, PORT_RANGE.
fn identity(raw: &Raw) -> Result<Identity, ConfigError> {
    let identifier = raw.text(
        "IDENTIFIER",
        128,
        "a plain file-name prefix without '/' or a leading '.'",
    )?;
    if identifier.is_empty() {
        return Err(ConfigError::Missing {
            key: "IDENTIFIER",
            hint: "set it in .env to the name prefix of your builds (myapp for myapp-1.2.3.jar)",
        });
    }
    if identifier.contains('/') || identifier.starts_with('.') {
        return Err(invalid(
            "IDENTIFIER",
            identifier,
            "a plain file-name prefix without '/' or a leading '.'",
        ));
    }
    let scheme = raw.get("SCHEME").trim().to_ascii_lowercase();
    if scheme != "http" {
        return Err(invalid(
            "SCHEME",
            &scheme,
            "http (children are reached over plain HTTP on loopback)",
        ));
    }
    Ok(Identity {
        identifier: identifier.to_string(),
        listen: parse_listen(raw.get("LISTEN"))?,
        port_range: parse_port_range(raw.get("PORT_RANGE"))?,
        upstream_host: parse_upstream_host(raw.get("UPSTREAM_HOST"))?,
    })
}

/// How children are started, made ready and stopped.
struct Children {
    properties_file: Option<String>,
    port_key: String,
    jar_command: Vec<String>,
    exec_command: Vec<String>,
    ready_path: Option<String>,
    health_path: Option<String>,
    heartbeat_every: Duration,
    heartbeat_misses: u32,
    ready_timeout: Duration,
    shutdown_grace: Duration,
    settle_time: Duration,
}

/// PROPERTIES_FILE_NAME, PORT_KEY, JAR_COMMAND, EXEC_COMMAND, READY_*, SHUTDOWN_GRACE,
/// SETTLE_TIME.
fn children(raw: &Raw) -> Result<Children, ConfigError> {
    let file_expected =
        "a file name in the base dir such as application.properties, or an absolute path to a file";
    let properties_file = raw.text("PROPERTIES_FILE_NAME", 4096, file_expected)?;
    let named = Path::new(properties_file)
        .file_name()
        .is_some_and(|n| n != "." && n != "..");
    let relative_path = !properties_file.starts_with('/') && properties_file.contains('/');
    // A file name can be 255 bytes long; only an absolute path may be longer.
    let too_long = !properties_file.starts_with('/') && properties_file.len() > 255;
    if !properties_file.is_empty() && (!named || relative_path || too_long) {
        return Err(invalid(
            "PROPERTIES_FILE_NAME",
            properties_file,
            file_expected,
        ));
    }
    let key_expected = "a non-empty properties key without spaces or '=', such as server.port";
    let port_key = raw.text("PORT_KEY", 256, key_expected)?;
    if port_key.is_empty() || port_key.contains(|c: char| c.is_whitespace() || c == '=') {
        return Err(invalid("PORT_KEY", port_key, key_expected));
    }
    let path_expected = "a path starting with '/' without spaces, such as /health, or empty";
    let ready_path = raw.text("READY_PATH", 2048, path_expected)?;
    if !ready_path.is_empty()
        && (!ready_path.starts_with('/') || ready_path.contains(|c: char| c.is_whitespace()))
    {
        return Err(invalid("READY_PATH", ready_path, path_expected));
    }
    let health_path = raw.text("HEALTH_PATH", 2048, path_expected)?;
    if !health_path.is_empty()
        && (!health_path.starts_with('/') || health_path.contains(|c: char| c.is_whitespace()))
    {
        return Err(invalid("HEALTH_PATH", health_path, path_expected));
    }
    let ms = Duration::from_millis(1);
    Ok(Children {
        health_path: Some(health_path.to_string()).filter(|s| !s.is_empty()),
        heartbeat_every: raw.duration(
            "HEARTBEAT_EVERY",
            Duration::from_millis(100),
            MAX_SHORT_DURATION,
        )?,
        heartbeat_misses: raw.count("HEARTBEAT_MISSES", 1, 1000, "")? as u32,
        properties_file: Some(properties_file.to_string()).filter(|s| !s.is_empty()),
        port_key: port_key.to_string(),
        jar_command: parse_command("JAR_COMMAND", raw.get("JAR_COMMAND"))?,
        exec_command: parse_command("EXEC_COMMAND", raw.get("EXEC_COMMAND"))?,
        ready_path: Some(ready_path.to_string()).filter(|s| !s.is_empty()),
        ready_timeout: raw.duration("READY_TIMEOUT", ms, MAX_SHORT_DURATION)?,
        shutdown_grace: raw.duration("SHUTDOWN_GRACE", Duration::ZERO, MAX_SHORT_DURATION)?,
        settle_time: raw.duration("SETTLE_TIME", Duration::ZERO, MAX_SHORT_DURATION)?,
    })
}

/// How copies of user requests reach testing.
struct Mirror {
    methods: Vec<Method>,
    max_body: u64,
    queue: usize,
    concurrency: usize,
    timeout: Duration,
    worker_threads: Option<usize>,
}

/// MIRROR_*, WORKER_THREADS.
fn mirror(raw: &Raw) -> Result<Mirror, ConfigError> {
    let worker_threads = match raw.get("WORKER_THREADS").trim() {
        "" | "auto" => None,
        v => Some(
            parse_number(v, 1.0, MAX_WORKER_THREADS as f64)
                .filter(|n| n.fract() == 0.0)
                .map(|n| n as usize)
                .ok_or_else(|| {
                    invalid(
                        "WORKER_THREADS",
                        v,
                        &format!(
                            "auto or a whole number between 1 and {MAX_WORKER_THREADS}, such as 4"
                        ),
                    )
                })?,
        ),
    };
    Ok(Mirror {
        methods: parse_methods(raw.get("MIRROR_METHODS"))?,
        max_body: raw.size("MIRROR_MAX_BODY", MAX_MIRROR_BODY)?,
        queue: raw.count_usize("MIRROR_QUEUE", MAX_MIRROR_QUEUE)?,
        concurrency: raw.count_usize("MIRROR_CONCURRENCY", MAX_MIRROR_CONCURRENCY)?,
        timeout: raw.duration(
            "MIRROR_TIMEOUT",
            Duration::from_millis(1),
            MAX_SHORT_DURATION,
        )?,
        worker_threads,
    })
}

/// understudy's own log.
struct Logging {
    dir: Option<PathBuf>,
    level: tracing::Level,
}

/// LOG_DIR (relative to the base dir), LOG_LEVEL.
fn logging(base: &Path, raw: &Raw) -> Result<Logging, ConfigError> {
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
    })
}

/// The thresholds testing is judged by.
fn scoring(raw: &Raw) -> Result<ScoreConfig, ConfigError> {
    let fraction = "a fraction";
    let lines = "a number of log lines per mirrored request";
    Ok(ScoreConfig {
        stable_window: raw.duration("STABLE_WINDOW", Duration::ZERO, MAX_WINDOW)?,
        min_mirrored: raw.count(
            "MIN_MIRRORED",
            1,
            MAX_COUNT,
            " (promoting with no evidence is what the operator's promote command is for)",
        )?,
        max_5xx_delta: raw.number("MAX_5XX_DELTA", 0.0, 1.0, fraction)?,
        max_client_error_delta: raw.number("MAX_CLIENT_ERROR_DELTA", 0.0, 1.0, fraction)?,
        max_log_error_delta: raw.number("MAX_LOG_ERROR_DELTA", 0.0, MAX_LOG_DELTA, lines)?,
        max_log_warn_delta: raw.number("MAX_LOG_WARN_DELTA", 0.0, MAX_LOG_DELTA, lines)?,
        min_endpoint_pairs: raw.count("MIN_ENDPOINT_PAIRS", 1, MAX_COUNT, "")?,
        max_p95_ratio: raw.optional_number(
            "MAX_P95_RATIO",
            1.0,
            MAX_P95_FACTOR,
            "a factor (testing's p95 over running's)",
            "2.0",
        )?,
        max_body_diff: if raw.get("MAX_BODY_DIFF").trim().eq_ignore_ascii_case("auto") {
            noise_cancel(raw)?.then_some(0.05)
        } else {
            raw.optional_number("MAX_BODY_DIFF", 0.0, 1.0, fraction, "0.05")?
        },
        diff_relative: raw.number("DIFF_RELATIVE", 0.0, 100.0, "a share over the noise rate")?,
        diff_absolute: raw.number("DIFF_ABSOLUTE", 0.0, 1.0, fraction)?,
        confidence: raw.number("CONFIDENCE", 0.5, 0.9999, "a confidence")?,
        max_rss_ratio: raw.optional_number(
            "MAX_RSS_RATIO",
            1.0,
            MAX_P95_FACTOR,
            "a factor (testing's RSS over running's)",
            "2.0",
        )?,
        max_cpu_ratio: raw.optional_number(
            "MAX_CPU_RATIO",
            1.0,
            MAX_P95_FACTOR,
            "a factor (testing's CPU per request over running's)",
            "2.0",
        )?,
        noise_cancel: noise_cancel(raw)?,
        diff_sample: raw.number("DIFF_SAMPLE", 0.0, 1.0, "a fraction")?,
        plain_error_regex: parse_regex(raw, "PLAIN_LOG_ERROR_REGEX")?,
        plain_warn_regex: parse_regex(raw, "PLAIN_LOG_WARN_REGEX")?,
        evaluate_every: raw.duration(
            "EVALUATE_EVERY",
            Duration::from_millis(10),
            MAX_SHORT_DURATION,
        )?,
    })
}

/// Disk budgets for archives.
struct Budgets {
    max_base_size: u64,
    min_free_disk: u64,
    max_unpacked_size: u64,
}

/// MAX_BASE_SIZE, MIN_FREE_DISK, MAX_UNPACKED_SIZE.
fn budgets(raw: &Raw) -> Result<Budgets, ConfigError> {
    Ok(Budgets {
        max_base_size: raw.size("MAX_BASE_SIZE", MAX_SIZE)?,
        min_free_disk: raw.size("MIN_FREE_DISK", MAX_SIZE)?,
        max_unpacked_size: raw.size("MAX_UNPACKED_SIZE", MAX_SIZE)?,
    })
}

/// WEBHOOK_URLS: comma-separated `http://host[:port]/path` URLs.
fn webhook_urls(raw: &Raw) -> Result<Vec<String>, ConfigError> {
    let expected = "comma-separated http:// URLs such as http://127.0.0.1:9000/hooks (https needs a local relay: this build carries no TLS), at most 16";
    let v = raw.text("WEBHOOK_URLS", 16 * 1024, expected)?;
    let urls = comma_list(v);
    let bad = urls.iter().find(|u| {
        u.parse::<http::Uri>()
            .map(|uri| {
                // A port past 65535 parses as an authority but names no port at all.
                let written = uri.authority().map_or("", |a| a.as_str());
                let after_host = written.rsplit_once(']').map_or(written, |(_, p)| p);
                let bad_port = after_host.contains(':') && uri.port_u16().is_none();
                uri.scheme_str() != Some("http") || uri.host().is_none() || bad_port
            })
            .unwrap_or(true)
    });
    if let Some(u) = bad {
        return Err(invalid("WEBHOOK_URLS", &redacted(u), expected));
    }
    if urls.len() > 16 {
        return Err(invalid("WEBHOOK_URLS", v, expected));
    }
    Ok(urls)
}

/// A webhook `url` as logs and errors may show it: credentials (`user:pass@`) replaced by `***@`.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// PROMOTE_AT: an RFC 3339 instant, or empty.
fn promote_at(raw: &Raw) -> Result<Option<std::time::SystemTime>, ConfigError> {
    let expected = "an RFC 3339 instant such as 2026-12-01T03:00:00Z, or empty";
    let v = raw.text("PROMOTE_AT", 64, expected)?;
    if v.is_empty() {
        return Ok(None);
    }
    crate::instant::parse(v).map(Some).map_err(|e| match e {
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
    })
}

/// Where the admin API listens and what it asks for.
struct Admin {
    listen: Option<SocketAddr>,
    token: Option<String>,
    connections: usize,
    hosts: Vec<String>,
}

/// ADMIN_LISTEN, ADMIN_TOKEN.
fn admin(raw: &Raw) -> Result<Admin, ConfigError> {
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
    let token = raw.text("ADMIN_TOKEN", 1024, token_expected)?;
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

/// Parse a CLI `KEY=VALUE` override.
pub fn parse_override(s: &str) -> Result<(String, String), ConfigError> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| ConfigError::BadOverride(s.to_string()))
}

/// `v`, cut to [`MAX_ECHO`] characters so an absurd value does not flood the terminal.
fn cut(v: &str) -> String {
    match v.char_indices().nth(MAX_ECHO) {
        None => v.to_string(),
        Some((i, _)) => format!("{}… ({} bytes in all)", &v[..i], v.len()),
    }
}

fn parse_listen(v: &str) -> Result<SocketAddr, ConfigError> {
    let v = v.trim();
    let expected = "host:port such as 127.0.0.1:8080, or a bare port such as 8080";
    if let Ok(port) = v.parse::<u16>() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    let v = if let Some(rest) = v.strip_prefix("localhost:") {
        format!("127.0.0.1:{rest}")
    } else {
        v.to_string()
    };
    v.parse().map_err(|_| invalid("LISTEN", &v, expected))
}

/// Parse `a-b` (also `a:b`, `a..b`) into an inclusive port range.
fn parse_port_range(v: &str) -> Result<(u16, u16), ConfigError> {
    let t = v.trim();
    let expected = "an inclusive range of ports such as 20000-20099 (low-high, 1..65535)";
    let parts = t
        .split_once("..")
        .or_else(|| t.split_once('-'))
        .or_else(|| t.split_once(':'));
    let (a, b) = parts.ok_or_else(|| invalid("PORT_RANGE", v, expected))?;
    let a: u16 = a
        .trim()
        .parse()
        .map_err(|_| invalid("PORT_RANGE", v, expected))?;
    let b: u16 = b
        .trim()
        .parse()
        .map_err(|_| invalid("PORT_RANGE", v, expected))?;
    if a == 0 || b < a {
        return Err(invalid("PORT_RANGE", v, expected));
    }
    if b - a < 1 {
        return Err(invalid(
            "PORT_RANGE",
            v,
            "at least two ports (running and testing need one each)",
        ));
    }
    Ok((a, b))
}

/// Parse UPSTREAM_HOST: an IPv4 address, an IPv6 address (brackets optional, stored without),
/// or an RFC 1123 host name, as written; Vili's `http://host/` form is accepted; empty means
/// 127.0.0.1.
fn parse_upstream_host(v: &str) -> Result<String, ConfigError> {
    let expected = "an IPv4 address such as 127.0.0.1, an IPv6 address such as ::1 or [::1], \
                    or a host name of letters, digits, hyphens and dots, such as localhost";
    let host = v.trim();
    let host = host.strip_prefix("http://").unwrap_or(host);
    let host = host.trim_end_matches('/');
    if host.is_empty() {
        return Ok("127.0.0.1".to_string());
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match inner.parse::<std::net::Ipv6Addr>() {
            Ok(_) => Ok(inner.to_string()),
            Err(_) => Err(invalid("UPSTREAM_HOST", v, expected)),
        };
    }
    if host.parse::<std::net::IpAddr>().is_ok() || is_host_name(host) {
        Ok(host.to_string())
    } else {
        Err(invalid("UPSTREAM_HOST", v, expected))
    }
}

/// RFC 1123 host name: dot-separated labels of 1–63 letters, digits and inner hyphens, at most
/// 253 bytes, and a last label that is not all digits (that would be a mistyped IPv4 address).
fn is_host_name(h: &str) -> bool {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    h.len() <= 253
        && h.split('.').all(label_ok)
        && !h
            .rsplit('.')
            .next()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

/// A regex of at most 4 KiB that compiles.
fn parse_regex(raw: &Raw, key: &'static str) -> Result<String, ConfigError> {
    let v = raw.get(key);
    if v.len() > 4096 {
        return Err(invalid(key, v, "a regex of at most 4096 bytes"));
    }
    regex::Regex::new(v).map(|_| v.to_string()).map_err(|e| {
        let reason = regex_reason(&e);
        invalid(key, v, &format!("a valid regex ({reason})"))
    })
}

/// Why a regex did not compile, on one line. The `regex` crate's syntax errors repeat the whole
/// pattern with a caret under the fault over several lines; the value is already echoed (cut).
fn regex_reason(e: &regex::Error) -> String {
    let s = e.to_string();
    s.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| l.strip_prefix("error: ").unwrap_or(l).to_string())
        .unwrap_or(s)
}

/// A start command template, split into words by shell rules; one word must hold `{artifact}`.
/// A hook command split into words as a shell would; empty means no hook.
fn parse_hook(key: &str, v: &str) -> Result<Option<Vec<String>>, ConfigError> {
    if v.len() > MAX_COMMAND_LEN {
        return Err(invalid(
            key,
            v,
            &format!("a command of at most {MAX_COMMAND_LEN} bytes, or empty"),
        ));
    }
    let words = shell_words::split(v).map_err(|e| {
        invalid(
            key,
            v,
            &format!(
                "words split as a shell would ({e}), such as `./hooks/check.sh --quick`, or empty"
            ),
        )
    })?;
    Ok(Some(words).filter(|w| !w.is_empty()))
}

fn parse_command(key: &str, v: &str) -> Result<Vec<String>, ConfigError> {
    if v.len() > MAX_COMMAND_LEN {
        return Err(invalid(
            key,
            v,
            &format!("a command of at most {MAX_COMMAND_LEN} bytes"),
        ));
    }
    let words = shell_words::split(v).map_err(|e| {
        invalid(
            key,
            v,
            &format!("words split as a shell would ({e}), such as `java \"-Dname=a b\" -jar {{artifact}}`"),
        )
    })?;
    if words.is_empty() {
        return Err(invalid(
            key,
            v,
            "a non-empty command containing {artifact}, such as `java -jar {artifact}`",
        ));
    }
    if !words.iter().any(|w| w.contains("{artifact}")) {
        return Err(invalid(
            key,
            v,
            "a command containing {artifact}, such as `java -jar {artifact}`",
        ));
    }
    Ok(words)
}

/// At most 32 methods of at most 32 bytes each, comma-separated.
fn parse_methods(v: &str) -> Result<Vec<Method>, ConfigError> {
    let expected = "a comma-separated list of at most 32 HTTP methods such as GET,HEAD,OPTIONS";
    let mut out = Vec::new();
    for m in v.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let upper = m.to_ascii_uppercase();
        if upper.len() > 32 || out.len() >= 32 {
            return Err(invalid("MIRROR_METHODS", v, expected));
        }
        let method = Method::from_bytes(upper.as_bytes())
            .map_err(|_| invalid("MIRROR_METHODS", v, expected))?;
        out.push(method);
    }
    Ok(out)
}

fn parse_level(v: &str) -> Result<tracing::Level, ConfigError> {
    v.trim()
        .parse()
        .map_err(|_| invalid("LOG_LEVEL", v, "one of error, warn, info, debug, trace"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::{invalid_key, load, load_set};

    #[test]
    fn credentials_never_show() {
        assert_eq!(
            redacted("http://user:secret@hooks.example:9000/in?x=1"),
            "http://***@hooks.example:9000/in?x=1"
        );
        assert_eq!(redacted("http://a@b@h/p"), "http://***@h/p");
        assert_eq!(redacted("http://h/p?mail=a@b"), "http://h/p?mail=a@b");
        assert_eq!(redacted("http://127.0.0.1:9000/"), "http://127.0.0.1:9000/");
        assert_eq!(redacted("not a url"), "not a url");
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

    #[test]
    fn a_bad_regex_is_named_on_one_line() {
        let (key, value, expected) = invalid_key(load_set(
            "IDENTIFIER=a\n",
            &[("PLAIN_LOG_WARN_REGEX", "(?i)warn(")],
        ));
        assert_eq!(
            (key.as_str(), value.as_str(), expected.as_str()),
            (
                "PLAIN_LOG_WARN_REGEX",
                "(?i)warn(",
                "a valid regex (unclosed group)"
            )
        );
        let cfg = load("IDENTIFIER=a\n", &[]).unwrap();
        assert_eq!(
            cfg.score.plain_error_regex,
            r"(?i)\b(error|fatal|panic|exception)\b"
        );
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
    fn start_commands_are_split_into_shell_words() {
        let cfg = load_set(
            "IDENTIFIER=a\nJAR_COMMAND='java \"-Dname=a b\" -jar {artifact}'\n",
            &[("EXEC_COMMAND", "{dir}/run --port={port} {artifact}")],
        )
        .unwrap();
        assert_eq!(
            cfg.jar_command,
            ["java", "-Dname=a b", "-jar", "{artifact}"]
        );
        assert_eq!(
            cfg.exec_command,
            ["{dir}/run", "--port={port}", "{artifact}"]
        );
        let cfg = load_set("IDENTIFIER=a\n", &[]).unwrap();
        assert_eq!(cfg.jar_command, ["java", "-jar", "{artifact}"]);
        assert_eq!(cfg.exec_command, ["{artifact}"]);
        for (key, bad, why) in [
            (
                "JAR_COMMAND",
                "java \"-Dname=a b -jar {artifact}",
                "missing closing quote",
            ),
            ("EXEC_COMMAND", "", "non-empty"),
            ("EXEC_COMMAND", "  ", "non-empty"),
            ("JAR_COMMAND", "java -jar app.jar", "containing {artifact}"),
        ] {
            let (k, v, expected) = invalid_key(load_set("IDENTIFIER=a\n", &[(key, bad)]));
            assert_eq!((k.as_str(), v.as_str()), (key, bad));
            assert!(expected.contains(why), "{bad:?}: {expected}");
        }
    }

    #[test]
    fn upstream_host_is_an_address_or_a_host_name() {
        for (written, stored) in [
            ("", "127.0.0.1"),
            ("localhost", "localhost"),
            ("http://localhost/", "localhost"),
            ("10.0.0.7", "10.0.0.7"),
            ("::1", "::1"),
            ("[::1]", "::1"),
            ("http://[fe80::1]/", "fe80::1"),
            ("app-1.internal.example", "app-1.internal.example"),
        ] {
            let cfg = load_set("IDENTIFIER=a\n", &[("UPSTREAM_HOST", written)]).unwrap();
            assert_eq!(cfg.upstream_host, stored, "{written:?}");
        }
        for bad in [
            "localhost:8080",
            "[::1",
            "[localhost]",
            "exa mple",
            "-bad.example",
            "999.1.1.1",
            "under_score",
            "https://x",
        ] {
            let (k, v, _) = invalid_key(load_set("IDENTIFIER=a\n", &[("UPSTREAM_HOST", bad)]));
            assert_eq!((k.as_str(), v.as_str()), ("UPSTREAM_HOST", bad));
        }
    }

    #[test]
    fn min_mirrored_zero_is_refused() {
        let (k, v, expected) = invalid_key(load_set("IDENTIFIER=a\nMIN_MIRRORED=0\n", &[]));
        assert_eq!((k.as_str(), v.as_str()), ("MIN_MIRRORED", "0"));
        assert!(expected.contains("promote command"), "{expected}");
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
