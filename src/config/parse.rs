//! Typed reading of the raw values: [`Raw`] turns each key's text into a duration, size, count,
//! number or bounded text, and every refusal names the key, the value and what would do. The
//! bounds are here too: beyond them a value is a typo, and none may panic.

use std::collections::BTreeMap;
use std::time::Duration;

use super::keys::default_of;
use super::{cut, ConfigError};

/// Longest timeout, grace, settle time or evaluation period: beyond an hour a value is a typo.
pub(super) const MAX_SHORT_DURATION: Duration = Duration::from_secs(3600);
/// Longest stable window: a canary scored for more than 30 days is never going to be promoted.
pub(super) const MAX_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);
/// Largest size budget: far beyond any disk understudy will run on.
pub(super) const MAX_SIZE: u64 = 1 << 50;
/// Largest mirrored body: every queued copy holds up to this much memory.
pub(super) const MAX_MIRROR_BODY: u64 = 1 << 30;
/// Largest pair count: more mirrored pairs than a service sees in months.
pub(super) const MAX_COUNT: u64 = 1_000_000_000;
/// Largest mirror queue: each slot may hold a body, so memory bounds it.
pub(super) const MAX_MIRROR_QUEUE: u64 = 1_000_000;
/// Most mirrored requests in flight: each holds a connection to testing.
pub(super) const MAX_MIRROR_CONCURRENCY: u64 = 10_000;
/// Most proxy threads: far more than cores on any machine understudy serves from.
pub(super) const MAX_WORKER_THREADS: u64 = 256;
/// Largest allowed log-line excess per mirrored request.
pub(super) const MAX_LOG_DELTA: f64 = 1000.0;
/// Largest p95 latency factor.
pub(super) const MAX_P95_FACTOR: f64 = 1000.0;
/// Longest start command, in bytes (Linux caps one argument at 128 KiB).
pub(super) const MAX_COMMAND_LEN: usize = 32 * 1024;
/// Longest path (PATH_MAX).
pub(super) const MAX_PATH_LEN: usize = 4096;

/// The raw values after layering, with defaults from [`KEYS`](super::KEYS) for keys nobody set.
pub(super) struct Raw<'a>(pub(super) &'a BTreeMap<String, String>);

impl Raw<'_> {
    /// The value of `key`, or its default.
    pub(super) fn get(&self, key: &'static str) -> &str {
        self.0
            .get(key)
            .map(String::as_str)
            .unwrap_or_else(|| default_of(key))
    }

    /// The trimmed value of `key`, refused beyond `max_len` bytes.
    pub(super) fn text(
        &self,
        key: &'static str,
        max_len: usize,
        expected: &str,
    ) -> Result<&str, ConfigError> {
        self.text_shown(key, max_len, expected, str::to_string)
    }

    /// [`Raw::text`] for a value that may hold secrets: a refusal shows it through `show`.
    pub(super) fn text_shown(
        &self,
        key: &'static str,
        max_len: usize,
        expected: &str,
        show: impl Fn(&str) -> String,
    ) -> Result<&str, ConfigError> {
        let v = self.get(key).trim();
        if v.len() > max_len {
            return Err(invalid(
                key,
                &show(v),
                &format!("{expected}, at most {max_len} bytes"),
            ));
        }
        Ok(v)
    }

    /// A duration between `min` and `max`.
    pub(super) fn duration(
        &self,
        key: &'static str,
        min: Duration,
        max: Duration,
    ) -> Result<Duration, ConfigError> {
        let v = self.get(key);
        let expected = format!(
            "a duration between {} and {}, such as {}",
            show_duration(min),
            show_duration(max),
            default_of(key)
        );
        match parse_duration(key, v) {
            Ok(d) if d >= min && d <= max => Ok(d),
            _ => Err(invalid(key, v, &expected)),
        }
    }

    /// A size in bytes, at most `max`.
    pub(super) fn size(&self, key: &'static str, max: u64) -> Result<u64, ConfigError> {
        let v = self.get(key);
        let expected = format!(
            "a size between 0 and {}, such as {}",
            show_size(max),
            default_of(key)
        );
        parse_size(v, max).ok_or_else(|| invalid(key, v, &expected))
    }

    /// A whole number between `min` and `max`; `why` is appended to the error.
    pub(super) fn count(
        &self,
        key: &'static str,
        min: u64,
        max: u64,
        why: &str,
    ) -> Result<u64, ConfigError> {
        let v = self.get(key);
        match v.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(invalid(
                key,
                v,
                &format!(
                    "a whole number between {min} and {max}, such as {}{why}",
                    default_of(key)
                ),
            )),
        }
    }

    /// Like [`Raw::count`], for in-memory sizes.
    pub(super) fn count_usize(&self, key: &'static str, max: u64) -> Result<usize, ConfigError> {
        let n = self.count(key, 1, max, "")?;
        usize::try_from(n).map_err(|_| invalid(key, self.get(key), "a smaller number"))
    }

    /// A number between `min` and `max`; `what` describes it (`a fraction`).
    pub(super) fn number(
        &self,
        key: &'static str,
        min: f64,
        max: f64,
        what: &str,
    ) -> Result<f64, ConfigError> {
        let v = self.get(key);
        parse_number(v, min, max).ok_or_else(|| {
            invalid(
                key,
                v,
                &format!(
                    "{what} between {min} and {max}, such as {}",
                    default_of(key)
                ),
            )
        })
    }

    /// Like [`Raw::number`], where empty means "not set"; `example` shows a value.
    pub(super) fn optional_number(
        &self,
        key: &'static str,
        min: f64,
        max: f64,
        what: &str,
        example: &str,
    ) -> Result<Option<f64>, ConfigError> {
        let v = self.get(key);
        if v.trim().is_empty() {
            return Ok(None);
        }
        parse_number(v, min, max).map(Some).ok_or_else(|| {
            invalid(
                key,
                v,
                &format!(
                    "{what} between {min} and {max}, such as {example}, or empty to only report"
                ),
            )
        })
    }
}

/// A command line as a refusal shows it: its program, with the rest hidden, since arguments often
/// carry a password (`curl -u deploy:pass`) and refusals reach the journal and LOG_DIR.
pub(super) fn command_shown(v: &str) -> String {
    match v.trim().split_once(char::is_whitespace) {
        // `TOKEN=s3cret ./run`: not a program, and likely a secret.
        Some((program, rest)) if program.contains('=') => format!(
            "… ({} characters hidden: a command line may hold a secret)",
            program.chars().count() + 1 + rest.trim().chars().count()
        ),
        Some((program, rest)) if !rest.trim().is_empty() => format!(
            "{program} … ({} more characters hidden: a command line may hold a secret)",
            rest.trim().chars().count()
        ),
        _ => v.to_string(),
    }
}

/// The error for `key`: `value` (cut if long) is not `expected`.
pub(super) fn invalid(key: &str, value: &str, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: cut(value),
        expected: expected.to_string(),
    }
}

/// A switch: on or off (also true/false, yes/no, 1/0).
pub(super) fn on_off(raw: &Raw, key: &'static str) -> Result<bool, ConfigError> {
    let v = raw.get(key);
    match v.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(invalid(key, v, "on or off")),
    }
}

/// A switch whose default does the right thing for the machine: auto (also on) or off.
pub(super) fn auto_or_off(raw: &Raw, key: &'static str) -> Result<bool, ConfigError> {
    let v = raw.get(key);
    match v.trim().to_ascii_lowercase().as_str() {
        "auto" | "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(invalid(key, v, "auto or off")),
    }
}

/// The non-empty, trimmed items of a comma-separated value.
pub(super) fn comma_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// Parse `500ms`, `30s`, `10m`, `1h` without bounds (but never panicking: a value too large for
/// a [`Duration`] is an error).
pub fn parse_duration(key: &str, v: &str) -> Result<Duration, ConfigError> {
    let t = v.trim();
    let expected = "a duration such as 500ms, 30s, 10m or 1h";
    // Zero needs no unit.
    if t == "0" {
        return Ok(Duration::ZERO);
    }
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
    Duration::try_from_secs_f64(secs).map_err(|_| invalid(key, v, expected))
}

/// `d` in the units durations are written in.
fn show_duration(d: Duration) -> String {
    let (s, ms) = (d.as_secs(), d.subsec_millis());
    match (s, ms) {
        (0, 0) => "0s".to_string(),
        (0, ms) => format!("{ms}ms"),
        (s, 0) if s.is_multiple_of(86_400) && s > 86_400 => {
            format!("{}h ({} days)", s / 3600, s / 86_400)
        }
        (s, 0) if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        (s, 0) if s.is_multiple_of(60) => format!("{}m", s / 60),
        (s, 0) => format!("{s}s"),
        (s, ms) => format!("{}ms", s * 1000 + u64::from(ms)),
    }
}

/// Parse sizes `1024`, `512KiB`, `10MB`, `1GiB`, `1G`, `1PiB` (binary units) up to `max` bytes.
fn parse_size(v: &str, max: u64) -> Option<u64> {
    let t = v.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let power = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 1,
        "m" | "mb" | "mib" => 2,
        "g" | "gb" | "gib" => 3,
        "t" | "tb" | "tib" => 4,
        "p" | "pb" | "pib" => 5,
        _ => return None,
    };
    let bytes = n * 1024f64.powi(power);
    // `max` is at most 2^50, exact in an f64, so the comparison is exact too.
    (bytes.is_finite() && bytes <= max as f64).then_some(bytes as u64)
}

/// `n` bytes in the largest binary unit that divides it.
fn show_size(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut i = 0;
    let mut v = n;
    while i + 1 < units.len() && v >= 1024 && v.is_multiple_of(1024) {
        v /= 1024;
        i += 1;
    }
    format!("{v}{}", units[i])
}

/// A finite number between `min` and `max`.
pub(super) fn parse_number(v: &str, min: f64, max: f64) -> Option<f64> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && (min..=max).contains(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::{invalid_key, load_set};

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
        assert_eq!(parse_size("1MiB", MAX_SIZE), Some(1 << 20));
        assert_eq!(parse_size("2048", MAX_SIZE), Some(2048));
        assert_eq!(parse_size("1PiB", MAX_SIZE), Some(MAX_SIZE));
        assert_eq!(parse_size("1025TiB", MAX_SIZE), None);
        assert_eq!(show_size(MAX_SIZE), "1PiB");
        assert_eq!(show_duration(MAX_WINDOW), "720h (30 days)");
        assert_eq!(show_duration(Duration::from_millis(10)), "10ms");
    }

    #[test]
    fn huge_durations_are_errors_not_panics() {
        for key in [
            "STABLE_WINDOW",
            "READY_TIMEOUT",
            "EVALUATE_EVERY",
            "SETTLE_TIME",
        ] {
            let (k, v, expected) = invalid_key(load_set(
                "IDENTIFIER=a\n",
                &[(key, "99999999999999999999h")],
            ));
            assert_eq!((k.as_str(), v.as_str()), (key, "99999999999999999999h"));
            assert!(expected.contains("a duration between"), "{expected}");
        }
        let (_, _, expected) = invalid_key(load_set("IDENTIFIER=a\n", &[("STABLE_WINDOW", "31d")]));
        assert!(expected.contains("720h (30 days)"), "{expected}");
        assert!(load_set("IDENTIFIER=a\n", &[("STABLE_WINDOW", "720h")]).is_ok());
        assert!(load_set("IDENTIFIER=a\n", &[("STABLE_WINDOW", "721h")]).is_err());
    }

    #[test]
    fn counts_have_bounds() {
        for (key, value) in [
            ("WORKER_THREADS", "100000"),
            ("WORKER_THREADS", "0"),
            ("MIRROR_QUEUE", "18446744073709551615"),
            ("MIRROR_QUEUE", "1000001"),
            ("MIRROR_CONCURRENCY", "10001"),
            ("MIN_ENDPOINT_PAIRS", "1000000001"),
            ("MAX_P95_RATIO", "0.5"),
            ("MAX_LOG_WARN_DELTA", "1e300"),
            ("MAX_BASE_SIZE", "2PiB"),
            ("MIRROR_MAX_BODY", "2GiB"),
        ] {
            let (k, v, _) = invalid_key(load_set("IDENTIFIER=a\n", &[(key, value)]));
            assert_eq!((k.as_str(), v.as_str()), (key, value));
        }
        let cfg = load_set(
            "IDENTIFIER=a\n",
            &[
                ("WORKER_THREADS", "256"),
                ("MIRROR_QUEUE", "1000000"),
                ("MAX_BASE_SIZE", "1PiB"),
                ("MAX_P95_RATIO", "1"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.worker_threads, Some(256));
        assert_eq!(cfg.mirror_queue, 1_000_000);
        assert_eq!(cfg.score.max_p95_ratio, Some(1.0));
    }

    #[test]
    fn cpu_affinity_is_auto_or_off() {
        assert!(load_set("IDENTIFIER=a\n", &[]).unwrap().cpu_affinity);
        let off = load_set("IDENTIFIER=a\n", &[("CPU_AFFINITY", "OFF")]).unwrap();
        assert!(!off.cpu_affinity);
        let (k, v, expected) = invalid_key(load_set("IDENTIFIER=a\n", &[("CPU_AFFINITY", "0-3")]));
        assert_eq!((k.as_str(), v.as_str()), ("CPU_AFFINITY", "0-3"));
        assert!(expected.contains("auto or off"), "{expected}");
    }
}
