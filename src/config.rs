//! Configuration: `.env` in the base dir, overridden by `UNDERSTUDY_<KEY>` environment variables,
//! overridden by CLI flags. Parsed and validated before any port is bound.
//!
//! Every key, its default and its meaning is listed once, in [`KEYS`]; `.env.example` is generated
//! from the same table, so the two cannot drift.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Method;

/// A config key, its default and a one-line description, as shown in `.env.example`.
pub struct KeyDoc {
    /// Upper-case key as written in `.env`.
    pub key: &'static str,
    /// Default value, as text; empty means "unset".
    pub default: &'static str,
    /// What the key controls.
    pub doc: &'static str,
}

/// Every config key understudy reads, in the order `.env.example` lists them.
pub const KEYS: &[KeyDoc] = &[
    KeyDoc { key: "IDENTIFIER", default: "", doc: "Name prefix of your builds: myapp for myapp-1.2.3.jar (required)." },
    KeyDoc { key: "LISTEN", default: "127.0.0.1:8080", doc: "Address the proxy listens on for users; a bare port means 0.0.0.0:<port>." },
    KeyDoc { key: "PORT_RANGE", default: "20000-20099", doc: "Ports handed to child instances; ports already bound are skipped." },
    KeyDoc { key: "SCHEME", default: "http", doc: "Scheme used to reach the children; only http is supported." },
    KeyDoc { key: "UPSTREAM_HOST", default: "127.0.0.1", doc: "Host the children listen on, as the proxy reaches them." },
    KeyDoc { key: "PROPERTIES_FILE_NAME", default: "", doc: "Properties file in the base dir copied into each instance folder with the port key rewritten." },
    KeyDoc { key: "PORT_KEY", default: "server.port", doc: "Key holding the port in the properties file (or -D<key>=<port> for a jar without one)." },
    KeyDoc { key: "JAR_COMMAND", default: "java -jar {artifact}", doc: "How a .jar is started; {artifact}, {port} and {dir} are replaced." },
    KeyDoc { key: "EXEC_COMMAND", default: "{artifact}", doc: "How an executable build is started; {artifact}, {port} and {dir} are replaced." },
    KeyDoc { key: "READY_PATH", default: "", doc: "Path that must answer 2xx before an instance is ready; empty means the port accepting connections is enough." },
    KeyDoc { key: "READY_TIMEOUT", default: "60s", doc: "How long an instance may take to become ready before it is rejected." },
    KeyDoc { key: "SHUTDOWN_GRACE", default: "10s", doc: "Time between SIGTERM and SIGKILL when stopping an instance; also bounds draining." },
    KeyDoc { key: "SETTLE_TIME", default: "500ms", doc: "How long a dropped build must stay unchanged (and closed) before it is picked up." },
    KeyDoc { key: "MIRROR_METHODS", default: "GET,HEAD,OPTIONS", doc: "Methods copied to the testing instance; others go to running only." },
    KeyDoc { key: "MIRROR_MAX_BODY", default: "64KiB", doc: "Largest request body copied to testing; larger requests are not mirrored. Queued copies hold at most MIRROR_QUEUE × this." },
    KeyDoc { key: "MIRROR_QUEUE", default: "1024", doc: "Mirrored copies waiting for testing; when full, copies are dropped and counted." },
    KeyDoc { key: "MIRROR_CONCURRENCY", default: "64", doc: "Mirrored requests in flight to testing at once." },
    KeyDoc { key: "MIRROR_TIMEOUT", default: "10s", doc: "How long testing may take to answer a mirrored copy before it counts as failed." },
    KeyDoc { key: "WORKER_THREADS", default: "auto", doc: "Proxy threads, each with its own event loop (as nginx's workers); auto means one per core." },
    KeyDoc { key: "LOG_DIR", default: "", doc: "Directory for understudy's own log (understudy.log); empty logs to stderr." },
    KeyDoc { key: "LOG_LEVEL", default: "info", doc: "understudy's own log level: error, warn, info, debug or trace." },
    KeyDoc { key: "STABLE_WINDOW", default: "10m", doc: "How long testing must be scored without a regression before it is promoted." },
    KeyDoc { key: "MIN_MIRRORED", default: "100", doc: "Mirrored pairs needed before any verdict; below it understudy waits and says so." },
    KeyDoc { key: "MAX_5XX_DELTA", default: "0.01", doc: "Largest allowed excess of testing's 5xx rate over running's, overall and per endpoint (0.01 = 1 point)." },
    KeyDoc { key: "MAX_CLIENT_ERROR_DELTA", default: "0.05", doc: "Largest allowed share of requests that running answers 2xx and testing answers 4xx." },
    KeyDoc { key: "MAX_LOG_ERROR_DELTA", default: "0.05", doc: "Largest allowed excess of testing's error log lines per mirrored request over running's." },
    KeyDoc { key: "MAX_LOG_WARN_DELTA", default: "0.5", doc: "Largest allowed excess of testing's warn log lines per mirrored request over running's." },
    KeyDoc { key: "MIN_ENDPOINT_PAIRS", default: "5", doc: "Pairs an endpoint needs before its own rates are judged." },
    KeyDoc { key: "MAX_P95_RATIO", default: "", doc: "Reject when testing's p95 latency exceeds running's by this factor (e.g. 2.0); empty reports only." },
    KeyDoc { key: "MAX_BODY_DIFF", default: "", doc: "Reject when more than this share of same-status answers differ in body (e.g. 0.05); empty reports only." },
    KeyDoc { key: "PLAIN_LOG_ERROR_REGEX", default: "(?i)\\b(error|fatal|panic|exception)\\b", doc: "Regex marking a non-JSON log line as an error." },
    KeyDoc { key: "PLAIN_LOG_WARN_REGEX", default: "(?i)\\bwarn(ing)?\\b", doc: "Regex marking a non-JSON log line as a warning." },
    KeyDoc { key: "EVALUATE_EVERY", default: "5s", doc: "How often the scorer evaluates testing and logs the score." },
    KeyDoc { key: "MAX_BASE_SIZE", default: "10GiB", doc: "Base dir size budget; past it the oldest archives are deleted." },
    KeyDoc { key: "MIN_FREE_DISK", default: "1GiB", doc: "Free disk to keep; below it the oldest archives are deleted." },
];

/// Vili's lower-case `.env` keys and the keys they mean here, so a Vili `.env` works unchanged.
const VILI_ALIASES: &[(&str, &str)] = &[
    ("port", "LISTEN"),
    ("scheme", "SCHEME"),
    ("endpoint", "UPSTREAM_HOST"),
    ("port_range", "PORT_RANGE"),
    ("identifier", "IDENTIFIER"),
    ("log_dir", "LOG_DIR"),
    ("properties_file_name", "PROPERTIES_FILE_NAME"),
    ("port_identifier", "PORT_KEY"),
];

/// Why the configuration could not be used; each variant names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key has a value that does not parse.
    #[error("config key {key} has value {value:?}: expected {expected}")]
    Invalid {
        key: String,
        value: String,
        expected: String,
    },
    /// A required key is missing.
    #[error("config key {key} is not set: {hint}")]
    Missing {
        key: &'static str,
        hint: &'static str,
    },
    /// The `.env` file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A `.env` line is not `KEY=VALUE`.
    #[error("{path}:{line}: expected KEY=VALUE, found {text:?}")]
    Syntax {
        path: PathBuf,
        line: usize,
        text: String,
    },
    /// A CLI `--set` that is not `KEY=VALUE`.
    #[error("--set {0:?}: expected KEY=VALUE")]
    BadOverride(String),
    /// The base directory is missing or not a directory.
    #[error(
        "base directory {path} does not exist or is not a directory: create it or pass --base"
    )]
    NoBase { path: PathBuf },
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
    /// Host the children listen on.
    pub upstream_host: String,
    /// Properties file name in the base dir, if any.
    pub properties_file: Option<String>,
    /// Port key in the properties file.
    pub port_key: String,
    /// Start template for jars.
    pub jar_command: String,
    /// Start template for executables.
    pub exec_command: String,
    /// Readiness path, if any.
    pub ready_path: Option<String>,
    /// Readiness deadline.
    pub ready_timeout: Duration,
    /// SIGTERM → SIGKILL grace, and drain bound.
    pub shutdown_grace: Duration,
    /// How long a dropped file must stay unchanged.
    pub settle_time: Duration,
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
    /// Base dir size budget in bytes.
    pub max_base_size: u64,
    /// Free disk to keep, in bytes.
    pub min_free_disk: u64,
    /// Unknown keys seen in `.env` (logged once tracing is up, never fatal: a Vili `.env` may carry others).
    pub unknown_keys: Vec<String>,
}

/// Thresholds the scorer judges testing by.
#[derive(Debug, Clone)]
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
    /// Optional ceiling on the share of differing bodies.
    pub max_body_diff: Option<f64>,
    /// Plain-text error line regex.
    pub plain_error_regex: String,
    /// Plain-text warn line regex.
    pub plain_warn_regex: String,
    /// Evaluation period.
    pub evaluate_every: Duration,
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
        let env_path = base.join(".env");
        match std::fs::read_to_string(&env_path) {
            Ok(text) => {
                for (key, value) in parse_dotenv(&env_path, &text)? {
                    match canonical_key(&key) {
                        Some(k) => {
                            raw.insert(k.to_string(), value);
                        }
                        None => unknown.push(key),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ConfigError::Read {
                    path: env_path,
                    source,
                })
            }
        }
        for doc in KEYS {
            if let Some(v) = env.var(&format!("UNDERSTUDY_{}", doc.key)) {
                raw.insert(doc.key.to_string(), v);
            }
        }
        for (key, value) in overrides {
            let k = canonical_key(key).ok_or_else(|| ConfigError::Invalid {
                key: key.clone(),
                value: value.clone(),
                expected: format!(
                    "a known key, one of {}",
                    KEYS.iter().map(|k| k.key).collect::<Vec<_>>().join(", ")
                ),
            })?;
            raw.insert(k.to_string(), value.clone());
        }
        let mut cfg = Self::from_raw(base, &raw)?;
        cfg.unknown_keys = unknown;
        Ok(cfg)
    }

    fn from_raw(base: &Path, raw: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        let get = |key: &'static str| -> &str {
            raw.get(key).map(String::as_str).unwrap_or_else(|| {
                KEYS.iter()
                    .find(|k| k.key == key)
                    .expect("every key read is in KEYS")
                    .default
            })
        };
        let identifier = get("IDENTIFIER").trim().to_string();
        if identifier.is_empty() {
            return Err(ConfigError::Missing {
                key: "IDENTIFIER",
                hint:
                    "set it in .env to the name prefix of your builds (myapp for myapp-1.2.3.jar)",
            });
        }
        if identifier.contains('/') || identifier.starts_with('.') {
            return Err(invalid(
                "IDENTIFIER",
                &identifier,
                "a plain file-name prefix without '/' or a leading '.'",
            ));
        }
        let scheme = get("SCHEME").trim().to_ascii_lowercase();
        if scheme != "http" {
            return Err(invalid(
                "SCHEME",
                &scheme,
                "http (children are reached over plain HTTP on loopback)",
            ));
        }
        let upstream_host = get("UPSTREAM_HOST").trim();
        let upstream_host = match upstream_host {
            "" | "localhost" => "127.0.0.1".to_string(),
            h => h
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string(),
        };
        let properties_file =
            Some(get("PROPERTIES_FILE_NAME").trim().to_string()).filter(|s| !s.is_empty());
        let port_key = get("PORT_KEY").trim().to_string();
        if port_key.is_empty() {
            return Err(invalid(
                "PORT_KEY",
                &port_key,
                "a non-empty properties key such as server.port",
            ));
        }
        let ready_path = Some(get("READY_PATH").trim().to_string()).filter(|s| !s.is_empty());
        if let Some(p) = &ready_path {
            if !p.starts_with('/') {
                return Err(invalid(
                    "READY_PATH",
                    p,
                    "a path starting with '/', such as /health",
                ));
            }
        }
        let log_dir = Some(get("LOG_DIR").trim())
            .filter(|s| !s.is_empty())
            .map(|d| {
                let p = PathBuf::from(d);
                if p.is_absolute() {
                    p
                } else {
                    base.join(p)
                }
            });
        let score = ScoreConfig {
            stable_window: parse_duration("STABLE_WINDOW", get("STABLE_WINDOW"))?,
            min_mirrored: parse_num("MIN_MIRRORED", get("MIN_MIRRORED"))?,
            max_5xx_delta: parse_ratio("MAX_5XX_DELTA", get("MAX_5XX_DELTA"))?,
            max_client_error_delta: parse_ratio(
                "MAX_CLIENT_ERROR_DELTA",
                get("MAX_CLIENT_ERROR_DELTA"),
            )?,
            max_log_error_delta: parse_float("MAX_LOG_ERROR_DELTA", get("MAX_LOG_ERROR_DELTA"))?,
            max_log_warn_delta: parse_float("MAX_LOG_WARN_DELTA", get("MAX_LOG_WARN_DELTA"))?,
            min_endpoint_pairs: parse_num("MIN_ENDPOINT_PAIRS", get("MIN_ENDPOINT_PAIRS"))?,
            max_p95_ratio: match get("MAX_P95_RATIO").trim() {
                "" => None,
                v => Some(parse_float("MAX_P95_RATIO", v)?),
            },
            max_body_diff: match get("MAX_BODY_DIFF").trim() {
                "" => None,
                v => Some(parse_ratio("MAX_BODY_DIFF", v)?),
            },
            plain_error_regex: parse_regex("PLAIN_LOG_ERROR_REGEX", get("PLAIN_LOG_ERROR_REGEX"))?,
            plain_warn_regex: parse_regex("PLAIN_LOG_WARN_REGEX", get("PLAIN_LOG_WARN_REGEX"))?,
            evaluate_every: parse_duration("EVALUATE_EVERY", get("EVALUATE_EVERY"))?,
        };
        if score.evaluate_every.is_zero() {
            return Err(invalid(
                "EVALUATE_EVERY",
                get("EVALUATE_EVERY"),
                "a duration above zero",
            ));
        }
        let cfg = Config {
            base: base.to_path_buf(),
            identifier,
            listen: parse_listen(get("LISTEN"))?,
            port_range: parse_port_range(get("PORT_RANGE"))?,
            upstream_host,
            properties_file,
            port_key,
            jar_command: parse_template("JAR_COMMAND", get("JAR_COMMAND"))?,
            exec_command: parse_template("EXEC_COMMAND", get("EXEC_COMMAND"))?,
            ready_path,
            ready_timeout: parse_duration("READY_TIMEOUT", get("READY_TIMEOUT"))?,
            shutdown_grace: parse_duration("SHUTDOWN_GRACE", get("SHUTDOWN_GRACE"))?,
            settle_time: parse_duration("SETTLE_TIME", get("SETTLE_TIME"))?,
            mirror_methods: parse_methods(get("MIRROR_METHODS"))?,
            mirror_max_body: parse_size("MIRROR_MAX_BODY", get("MIRROR_MAX_BODY"))?,
            mirror_queue: parse_positive("MIRROR_QUEUE", get("MIRROR_QUEUE"))?,
            mirror_concurrency: parse_positive("MIRROR_CONCURRENCY", get("MIRROR_CONCURRENCY"))?,
            mirror_timeout: parse_duration("MIRROR_TIMEOUT", get("MIRROR_TIMEOUT"))?,
            worker_threads: match get("WORKER_THREADS").trim() {
                "" | "auto" => None,
                v => Some(parse_positive("WORKER_THREADS", v)?),
            },
            log_dir,
            log_level: parse_level(get("LOG_LEVEL"))?,
            score,
            max_base_size: parse_size("MAX_BASE_SIZE", get("MAX_BASE_SIZE"))?,
            min_free_disk: parse_size("MIN_FREE_DISK", get("MIN_FREE_DISK"))?,
            unknown_keys: Vec::new(),
        };
        Ok(cfg)
    }

    /// Text of `.env.example`: every key with its default and meaning.
    pub fn example() -> String {
        let mut out = String::from(
            "# understudy configuration: copy to <base dir>/.env and edit.\n\
             # Environment variables UNDERSTUDY_<KEY> override this file; CLI flags override both.\n\
             # Durations: 500ms, 30s, 10m, 1h. Sizes: 512KiB, 10MiB, 1GiB (or plain bytes).\n\
             # Vili's keys (port, scheme, endpoint, port_range, identifier, log_dir,\n\
             # properties_file_name, port_identifier) are accepted too.\n\n",
        );
        for k in KEYS {
            out.push_str(&format!("# {}\n", k.doc));
            if k.key == "IDENTIFIER" {
                out.push_str("IDENTIFIER=myapp\n\n");
            } else {
                out.push_str(&format!("{}={}\n\n", k.key, k.default));
            }
        }
        out
    }
}

/// Map a key as written (upper case, or a Vili lower-case key) to the canonical key.
fn canonical_key(key: &str) -> Option<&'static str> {
    if let Some((_, k)) = VILI_ALIASES.iter().find(|(alias, _)| *alias == key) {
        return Some(k);
    }
    let upper = key.to_ascii_uppercase();
    let upper = upper.strip_prefix("UNDERSTUDY_").unwrap_or(&upper);
    KEYS.iter().find(|k| k.key == upper).map(|k| k.key)
}

/// Parse `KEY=VALUE` lines; `#` comments, blank lines, `export ` prefixes and quotes are allowed.
fn parse_dotenv(path: &Path, text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            return Err(ConfigError::Syntax {
                path: path.to_path_buf(),
                line: i + 1,
                text: line.to_string(),
            });
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(ConfigError::Syntax {
                path: path.to_path_buf(),
                line: i + 1,
                text: line.to_string(),
            });
        }
        let v = v.trim();
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            &v[1..v.len() - 1]
        } else {
            v
        };
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Parse a CLI `KEY=VALUE` override.
pub fn parse_override(s: &str) -> Result<(String, String), ConfigError> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| ConfigError::BadOverride(s.to_string()))
}

fn invalid(key: &str, value: &str, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        expected: expected.to_string(),
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

/// Parse `500ms`, `30s`, `10m`, `1h`.
pub fn parse_duration(key: &str, v: &str) -> Result<Duration, ConfigError> {
    let t = v.trim();
    let expected = "a duration such as 500ms, 30s, 10m or 1h";
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(|| invalid(key, v, expected))?;
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| invalid(key, v, expected))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(invalid(key, v, expected)),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// Parse sizes: `1024`, `512KiB`, `10MB`, `1GiB`, `1G`.
fn parse_size(key: &str, v: &str) -> Result<u64, ConfigError> {
    let t = v.trim();
    let expected = "a size such as 1048576, 512KiB, 10MiB or 1GiB";
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| invalid(key, v, expected))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(invalid(key, v, expected)),
    };
    Ok((n * mult) as u64)
}

fn parse_num(key: &str, v: &str) -> Result<u64, ConfigError> {
    v.trim()
        .parse()
        .map_err(|_| invalid(key, v, "a whole number such as 100"))
}

fn parse_positive(key: &str, v: &str) -> Result<usize, ConfigError> {
    match v.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(invalid(key, v, "a whole number above zero")),
    }
}

fn parse_float(key: &str, v: &str) -> Result<f64, ConfigError> {
    match v.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(n),
        _ => Err(invalid(key, v, "a non-negative number such as 0.05")),
    }
}

fn parse_ratio(key: &str, v: &str) -> Result<f64, ConfigError> {
    match parse_float(key, v) {
        Ok(n) if n <= 1.0 => Ok(n),
        _ => Err(invalid(key, v, "a fraction between 0 and 1 such as 0.01")),
    }
}

fn parse_regex(key: &str, v: &str) -> Result<String, ConfigError> {
    regex_lite::Regex::new(v)
        .map(|_| v.to_string())
        .map_err(|e| invalid(key, v, &format!("a valid regex ({e})")))
}

fn parse_template(key: &str, v: &str) -> Result<String, ConfigError> {
    if !v.contains("{artifact}") {
        return Err(invalid(
            key,
            v,
            "a command containing {artifact}, such as `java -jar {artifact}`",
        ));
    }
    Ok(v.trim().to_string())
}

fn parse_methods(v: &str) -> Result<Vec<Method>, ConfigError> {
    let mut out = Vec::new();
    for m in v.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let upper = m.to_ascii_uppercase();
        let method = Method::from_bytes(upper.as_bytes()).map_err(|_| {
            invalid(
                "MIRROR_METHODS",
                v,
                "a comma-separated list of HTTP methods such as GET,HEAD,OPTIONS",
            )
        })?;
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

    fn load(env_text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!(
            "understudy-config-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(".env"), env_text).unwrap();
        let env: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let r = Config::load(&dir, &env, &[]);
        std::fs::remove_dir_all(&dir).unwrap();
        r
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    #[test]
    fn vili_env_is_accepted() {
        let cfg = load(
            "port=8081\nscheme=http\nendpoint=localhost\nport_range=9000-9010\nidentifier=app\nlog_dir=\nproperties_file_name=local_override.properties\nport_identifier=server.port\n",
            &[],
        )
        .unwrap();
        assert_eq!(cfg.listen.port(), 8081);
        assert_eq!(cfg.port_range, (9000, 9010));
        assert_eq!(cfg.identifier, "app");
        assert_eq!(
            cfg.properties_file.as_deref(),
            Some("local_override.properties")
        );
        assert_eq!(cfg.upstream_host, "127.0.0.1");
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
    fn env_example_is_current() {
        let committed = include_str!("../.env.example");
        assert_eq!(
            committed,
            Config::example(),
            "regenerate with: cargo run -- example-env > .env.example"
        );
    }

    #[test]
    fn readme_documents_every_key() {
        let readme = include_str!("../README.md");
        for k in KEYS {
            assert!(
                readme.contains(&format!("| `{}` |", k.key)),
                "README.md's config table lacks {}",
                k.key
            );
        }
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(
            parse_duration("K", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            parse_duration("K", "10m").unwrap(),
            Duration::from_secs(600)
        );
        assert!(parse_duration("K", "10").is_err());
        assert_eq!(parse_size("K", "1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("K", "2048").unwrap(), 2048);
    }
}
