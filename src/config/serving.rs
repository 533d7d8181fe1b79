//! The keys for serving users and running the children: who understudy is and where it
//! listens (identity), how children are started and watched, how requests are mirrored to
//! testing, what a user may send, and how long each side may stay silent.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::Method;

use super::parse::{
    auto_or_off, command_shown, invalid, parse_number, Raw, MAX_COMMAND_LEN, MAX_MIRROR_BODY,
    MAX_MIRROR_CONCURRENCY, MAX_MIRROR_QUEUE, MAX_SHORT_DURATION, MAX_SIZE, MAX_WORKER_THREADS,
};
use super::ConfigError;

/// Who understudy is and where it and the children are reached.
pub(super) struct Identity {
    pub(super) identifier: String,
    pub(super) listen: SocketAddr,
    pub(super) port_range: (u16, u16),
    pub(super) upstream_host: String,
}

/// IDENTIFIER, SCHEME, UPSTREAM_HOST, LISTEN, PORT_RANGE.
pub(super) fn identity(raw: &Raw) -> Result<Identity, ConfigError> {
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
pub(super) struct Children {
    pub(super) properties_file: Option<String>,
    pub(super) port_key: String,
    pub(super) jar_command: Vec<String>,
    pub(super) exec_command: Vec<String>,
    pub(super) ready_path: Option<String>,
    pub(super) health_path: Option<String>,
    pub(super) heartbeat_every: Duration,
    pub(super) heartbeat_misses: u32,
    pub(super) ready_timeout: Duration,
    pub(super) shutdown_grace: Duration,
    pub(super) settle_time: Duration,
}

/// PROPERTIES_FILE_NAME, PORT_KEY, JAR_COMMAND, EXEC_COMMAND, READY_*, SHUTDOWN_GRACE,
/// SETTLE_TIME.
pub(super) fn children(raw: &Raw) -> Result<Children, ConfigError> {
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
pub(super) struct Mirror {
    pub(super) methods: Vec<Method>,
    pub(super) max_body: u64,
    pub(super) queue: usize,
    pub(super) concurrency: usize,
    pub(super) timeout: Duration,
    pub(super) worker_threads: Option<usize>,
    pub(super) cpu_affinity: bool,
}

/// MIRROR_*, WORKER_THREADS, CPU_AFFINITY.
pub(super) fn mirror(raw: &Raw) -> Result<Mirror, ConfigError> {
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
        cpu_affinity: auto_or_off(raw, "CPU_AFFINITY")?,
    })
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

/// The most header fields `MAX_HEADERS` may allow: the proxy parses a head into this many slots
/// on its stack, so a larger setting could not be kept (hyper's default is the same).
pub const MOST_HEADERS: usize = 100;

/// MAX_HEADER_BYTES, MAX_HEADERS, MAX_REQUEST_BODY, MAX_CONNECTIONS.
pub(super) fn user_limits(raw: &Raw) -> Result<UserLimits, ConfigError> {
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
        headers: raw.count_usize("MAX_HEADERS", MOST_HEADERS as u64)?,
        request_body: raw.size("MAX_REQUEST_BODY", MAX_SIZE)?,
        connections: raw.count_usize("MAX_CONNECTIONS", 10_000_000)?,
    })
}

/// How long each side may stay silent, and how far answers are read ahead of a slow user.
pub(super) struct Pacing {
    pub(super) header_timeout: Duration,
    pub(super) body_timeout: Duration,
    pub(super) upstream_timeout: Duration,
    pub(super) send_timeout: Duration,
    pub(super) answer_buffer: u64,
    pub(super) request_buffer: u64,
    pub(super) answer_memory: u64,
    pub(super) answer_spill: u64,
}

/// HEADER_TIMEOUT, BODY_TIMEOUT, UPSTREAM_TIMEOUT, SEND_TIMEOUT, ANSWER_BUFFER, REQUEST_BUFFER, ANSWER_MEMORY,
/// ANSWER_SPILL.
pub(super) fn pacing(raw: &Raw) -> Result<Pacing, ConfigError> {
    Ok(Pacing {
        header_timeout: raw.duration(
            "HEADER_TIMEOUT",
            Duration::from_millis(100),
            MAX_SHORT_DURATION,
        )?,
        body_timeout: raw.duration(
            "BODY_TIMEOUT",
            Duration::from_millis(100),
            MAX_SHORT_DURATION,
        )?,
        upstream_timeout: raw.duration(
            "UPSTREAM_TIMEOUT",
            Duration::from_millis(100),
            MAX_SHORT_DURATION,
        )?,
        send_timeout: raw.duration(
            "SEND_TIMEOUT",
            Duration::from_millis(100),
            MAX_SHORT_DURATION,
        )?,
        answer_buffer: raw.size("ANSWER_BUFFER", 1 << 30)?,
        request_buffer: raw.size("REQUEST_BUFFER", 1 << 30)?,
        answer_memory: raw.size("ANSWER_MEMORY", 64 << 30)?,
        answer_spill: raw.size("ANSWER_SPILL", MAX_SIZE)?,
    })
}

/// LISTEN: `host:port`, `localhost:port`, or a bare port (all interfaces).
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

/// A start command template, split into words by shell rules; one word must hold `{artifact}`.
fn parse_command(key: &str, v: &str) -> Result<Vec<String>, ConfigError> {
    if v.len() > MAX_COMMAND_LEN {
        return Err(invalid(
            key,
            &command_shown(v),
            &format!("a command of at most {MAX_COMMAND_LEN} bytes"),
        ));
    }
    let words = shell_words::split(v).map_err(|e| {
        invalid(
            key,
            &command_shown(v),
            &format!("words split as a shell would ({e}), such as `java \"-Dname=a b\" -jar {{artifact}}`"),
        )
    })?;
    if words.is_empty() {
        return Err(invalid(
            key,
            &command_shown(v),
            "a non-empty command containing {artifact}, such as `java -jar {artifact}`",
        ));
    }
    if !words.iter().any(|w| w.contains("{artifact}")) {
        return Err(invalid(
            key,
            &command_shown(v),
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

#[cfg(test)]
mod tests {
    use crate::config::test_support::{invalid_key, load_set};

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
            ("JAR_COMMAND", "java", "containing {artifact}"),
        ] {
            let (k, v, expected) = invalid_key(load_set("IDENTIFIER=a\n", &[(key, bad)]));
            let shown = crate::config::parse::command_shown(bad);
            assert_eq!((k.as_str(), v.as_str()), (key, shown.as_str()));
            assert!(expected.contains(why), "{bad:?}: {expected}");
        }
    }

    /// A refused command line reaches the journal: its program names it, its arguments (where a
    /// password on a `curl -u` lives) are hidden.
    #[test]
    fn a_refused_command_line_shows_its_program_and_hides_its_arguments() {
        for (key, bad) in [
            ("EXEC_COMMAND", "./run --password Sup3rSecret \"{artifact}"),
            ("JAR_COMMAND", "java -Dpass=Sup3rSecret -jar app.jar"),
            ("PRE_PROMOTE", "curl -u deploy:Sup3rSecret 'https://x/"),
            ("POST_ROLLBACK", "curl -u deploy:Sup3rSecret 'https://x/"),
            ("PRE_START", "TOKEN=Sup3rSecret ./check 'x"),
        ] {
            let err = load_set("IDENTIFIER=a\n", &[(key, bad)]).unwrap_err();
            let shown = err.to_string();
            assert!(shown.contains(key), "{shown}");
            let program = bad.split(' ').next().unwrap();
            let shown_as = match program.contains('=') {
                true => "\"… (".to_string(),
                false => format!("\"{program} … ("),
            };
            assert!(shown.contains(&shown_as), "{shown}");
            assert!(!shown.contains("Sup3rSecret"), "{shown}");
        }
        let long = format!("ADMIN_TOKEN={}\n", "S".repeat(2000));
        let shown = load_set(&format!("IDENTIFIER=a\n{long}"), &[])
            .unwrap_err()
            .to_string();
        assert!(
            shown.contains("ADMIN_TOKEN") && !shown.contains("SSSS"),
            "{shown}"
        );
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

    /// The proxy keeps at most `MOST_HEADERS` header slots: a larger `MAX_HEADERS` is refused at
    /// start, never silently lowered.
    #[test]
    fn max_headers_above_the_slots_is_refused() {
        let cfg = load_set("IDENTIFIER=a\n", &[("MAX_HEADERS", "100")]).unwrap();
        assert_eq!(cfg.limits.headers, super::MOST_HEADERS);
        let (k, v, expected) = invalid_key(load_set("IDENTIFIER=a\n", &[("MAX_HEADERS", "200")]));
        assert_eq!((k.as_str(), v.as_str()), ("MAX_HEADERS", "200"));
        assert!(expected.contains("100"), "{expected}");
    }
}
