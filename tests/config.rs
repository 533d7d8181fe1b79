//! Configuration as a user meets it: a Vili `.env` works; a bad value names its key and value.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

#[test]
fn vili_env_is_accepted_unchanged() {
    let base = Base::new("vili-env");
    std::fs::write(
        base.path.join(".env"),
        format!(
            "port=0\nscheme=http\nendpoint=localhost\nport_range={}-{}\nidentifier=app\nlog_dir=\nproperties_file_name=\nport_identifier=server.port\n",
            base.port_range.0,
            base.port_range.1
        ),
    )
    .unwrap();
    // A Vili port means all interfaces (the harness reaches it on loopback).
    let mut u = Understudy::start(&base);
    let info: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(base.path.join(".understudy/admin.json")).unwrap(),
    )
    .unwrap();
    let bound: std::net::SocketAddr = info["proxy"].as_str().unwrap().parse().unwrap();
    assert!(bound.ip().is_unspecified(), "all interfaces: {info}");
    assert_eq!(bound.port(), u.addr.port());
    let (status, body) = u.get("/");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("app-<version>"),
        "503 says what to do: {body}"
    );
    u.stop();
}

#[test]
fn bad_values_fail_at_start_naming_key_and_value() {
    let cases = [
        ("PORT_RANGE", "20000"),
        ("LISTEN", "not-an-address"),
        ("READY_TIMEOUT", "5 minutes"),
        ("MIRROR_METHODS", "GET,B@D"),
        ("MAX_5XX_DELTA", "2"),
        ("scheme", "https"),
        ("MIRROR_MAX_BODY", "lots"),
    ];
    for (key, value) in cases {
        let base = Base::new("bad-env");
        // Quoted, as dotenv wants values with spaces.
        base.write_env(&format!("{key}='{value}'"));
        let (code, err) = run_briefly(&base, &[]);
        assert_eq!(code, Some(64), "{key}={value} should fail: {err}");
        assert!(
            err.contains(&key.to_ascii_uppercase()) && err.contains(value),
            "{key}={value}: {err}"
        );
        assert!(err.contains("expected"), "says what is expected: {err}");
    }
    // A missing identifier is named too.
    let base = Base::new("no-identifier");
    std::fs::write(base.path.join(".env"), "LISTEN=127.0.0.1:0\n").unwrap();
    let (code, err) = run_briefly(&base, &[]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("IDENTIFIER"), "{err}");
}

#[test]
fn env_and_cli_override_the_file() {
    let base = Base::new("override");
    base.write_env("");
    // Three loopback addresses (all of 127/8 is loopback): the file says 127.0.0.1, the
    // environment 127.0.0.2, the CLI 127.0.0.3; the proxy must be where the CLI says.
    let mut child = KillOnDrop::new(
        Command::new(BIN)
            .args(["run", "--base"])
            .arg(&base.path)
            .env("UNDERSTUDY_LISTEN", "127.0.0.2:0")
            .env("UNDERSTUDY_ADMIN_LISTEN", "127.0.0.1:0")
            .args(["--listen", "127.0.0.3:0"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr = wait_proxy_addr(&base, child.id());
    assert_eq!(
        addr.ip(),
        std::net::Ipv4Addr::new(127, 0, 0, 3),
        "the CLI's address"
    );
    wait_until(
        "understudy on the CLI address",
        Duration::from_secs(10),
        || http(addr, "GET", "/").ok(),
    );
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_log_dir_that_cannot_be_created_fails_at_start_naming_key_value_and_os_error() {
    let base = Base::new("log-dir-through-a-file");
    // A path through a file: no user, root included, can create it.
    base.write_env("LOG_DIR=f/logs");
    std::fs::write(base.path.join("f"), "").unwrap();
    let (code, err) = run_briefly(&base, &[]);
    assert_eq!(code, Some(64), "{err}");
    let dir = base.path.join("f/logs").display().to_string();
    assert!(err.contains("LOG_DIR") && err.contains(&dir), "{err}");
    assert!(err.contains("Not a directory"), "the OS error: {err}");
}

#[test]
fn a_long_base_dir_serves_the_admin_socket_while_its_path_fits_and_is_refused_past_it() {
    // Linux's sun_path (108 bytes) less its NUL.
    const MAX_SOCKET_PATH: usize = 107;
    let suffix = "/.understudy/admin.sock".len();
    // A base dir under the tests' temp dir whose socket path is `socket_len` bytes long.
    let long_base = |name: &str, socket_len: usize| {
        let mut base = Base::new(name);
        let taken = base.path.as_os_str().len() + 1 + suffix;
        assert!(
            taken < socket_len,
            "{} is too long a temp dir for this test",
            base.path.display()
        );
        base.path = base.path.join("d".repeat(socket_len - taken));
        std::fs::create_dir(&base.path).unwrap();
        base.write_env("");
        base
    };
    // The longest that fits: understudy serves the socket, and the CLI steers through it.
    let base = long_base("long-base", MAX_SOCKET_PATH);
    let mut u = Understudy::start(&base);
    let (code, out, err) = cli(&base, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("running"), "{out}");
    u.stop();
    // One byte longer: refused at start, saying why and how long the base dir may be.
    let base = long_base("too-long-base", MAX_SOCKET_PATH + 1);
    let (code, err) = run_briefly(&base, &["--set", "ADMIN_LISTEN=127.0.0.1:0"]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains(&base.path.display().to_string()), "{err}");
    assert!(
        err.contains("108 bytes") && err.contains("at most 107"),
        "{err}"
    );
    let room = MAX_SOCKET_PATH - suffix;
    assert!(err.contains(&format!("at most {room} bytes")), "{err}");
}

#[test]
fn out_of_bounds_values_fail_at_start_without_panicking() {
    let cases = [
        ("STABLE_WINDOW", "99999999999999999999h"),
        ("READY_TIMEOUT", "99999999999999999999h"),
        ("SHUTDOWN_GRACE", "2h"),
        ("WORKER_THREADS", "100000"),
        ("MIRROR_QUEUE", "18446744073709551615"),
        ("MIRROR_CONCURRENCY", "0"),
        ("MIN_MIRRORED", "0"),
        ("MAX_BASE_SIZE", "99999999999999999999PiB"),
        ("MAX_P95_RATIO", "0.5"),
        ("UPSTREAM_HOST", "localhost:8080"),
        ("UPSTREAM_HOST", "[::1"),
        ("JAR_COMMAND", "java '-Dname=a b -jar {artifact}"),
        ("JAR_COMMAND", "   "),
        ("EXEC_COMMAND", "./start.sh --port {port}"),
        // Valid RFC 3339, but year 10000 in UTC: converting it panicked and stopped understudy.
        ("PROMOTE_AT", "9999-12-31T23:59:59-23:59"),
        // A mistyped year held every build from automatic promotion until then.
        ("PROMOTE_AT", "2062-01-01T03:00:00Z"),
        // A port past 65535 was accepted at start. Shown without its path, which may be secret.
        ("WEBHOOK_URLS", "http://127.0.0.1:99999/hooks/s3cret"),
    ];
    for (key, value) in cases {
        let base = Base::new("bounds");
        base.write_env("");
        let (code, err) = run_briefly(&base, &["--set", &format!("{key}={value}")]);
        assert_eq!(code, Some(64), "{key}={value} should fail cleanly: {err}");
        let shown = match key {
            "WEBHOOK_URLS" => "\"http://127.0.0.1:99999 (#1)\"",
            // A command line's program only: its arguments may hold a secret.
            k if k.ends_with("_COMMAND") && value.trim().contains(' ') => {
                value.split(' ').next().unwrap()
            }
            _ => value,
        };
        assert!(
            err.contains(key) && err.contains(shown) && err.contains("expected"),
            "{key}={value}: {err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
        if key.ends_with("_COMMAND") && value.trim().contains(' ') {
            assert!(err.contains("more characters hidden"), "{err}");
        }
    }
    let base = Base::new("bounds-min-mirrored");
    base.write_env("MIN_MIRRORED=0");
    let (code, err) = run_briefly(&base, &[]);
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("promote command"),
        "says what to do instead: {err}"
    );
}

#[test]
fn dotenv_comments_after_values_are_dropped() {
    let base = Base::new("env-comments");
    base.write_env(
        "STABLE_WINDOW=1s # one second\nexport MIRROR_METHODS=GET   # GETs only\nJAR_COMMAND='java \"-Dname=a b\" -jar {artifact}'",
    );
    let mut u = Understudy::start(&base);
    let (status, _) = u.get("/");
    assert_eq!(status, 503);
    u.stop();

    // A line that is not KEY=VALUE names the file and the line.
    let base = Base::new("env-syntax");
    base.write_env("READY_TIMEOUT=5 minutes");
    let (code, err) = run_briefly(&base, &[]);
    assert_eq!(code, Some(64), "{err}");
    let line = std::fs::read_to_string(base.path.join(".env"))
        .unwrap()
        .lines()
        .position(|l| l.starts_with("READY_TIMEOUT=5"))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!("{}:{line}:", base.path.join(".env").display())),
        "{err}"
    );
}

#[test]
fn log_dir_that_is_a_file_fails_at_start() {
    let base = Base::new("log-dir-file");
    let file = base.path.join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    base.write_env(&format!("LOG_DIR={}", file.display()));
    let (code, err) = run_briefly(&base, &[]);
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("LOG_DIR") && err.contains(&file.display().to_string()),
        "{err}"
    );
}

#[test]
fn unwritable_base_fails_at_start_naming_the_path() {
    // Tests run as root, which chmod does not stop: make `.understudy` a file instead, so nothing
    // can be created inside it.
    let base = Base::new("unwritable");
    base.write_env("");
    let state = base.path.join(".understudy");
    std::fs::write(&state, "").unwrap();
    let (code, err) = run_briefly(&base, &[]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains(&state.display().to_string()), "{err}");
}

/// The CPUs in a `Cpus_allowed_list` line of `/proc/<pid>/task/<tid>/status` ("0-2,5").
fn cpu_list(status: &str) -> Option<Vec<usize>> {
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
    let mut cpus = Vec::new();
    for part in list.trim().split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        cpus.extend(a.parse::<usize>().ok()?..=b.parse::<usize>().ok()?);
    }
    Some(cpus)
}

/// The CPUs each proxy thread of process `pid` may run on.
fn proxy_thread_cpus(pid: u32) -> Vec<Vec<usize>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim_end() == "understudy-prox")
        })
        .filter_map(|t| cpu_list(&std::fs::read_to_string(t.path().join("status")).ok()?))
        .collect()
}

#[test]
fn each_proxy_thread_runs_on_a_cpu_of_its_own_unless_cpu_affinity_is_off() {
    // What understudy will see: its affinity mask (online CPUs only) and its usable CPUs (which
    // a quota lowers); the proxy threads are one per usable CPU (WORKER_THREADS=auto).
    let allowed = understudy::proxy::affinity::allowed_cpus().unwrap();
    let usable = std::thread::available_parallelism().unwrap().get();
    // Each thread pins itself as it starts: the lists are read once every thread has (a thread
    // seen before its own start would show the whole mask), or at the deadline, failing.
    let run = |name: &str, env: &[(&str, &str)], threads: usize, pins: bool| {
        let base = Base::new(name);
        base.write_env("");
        let mut u = Understudy::start_with_env(&base, env);
        let cpus = wait_until(
            "every proxy thread started",
            Duration::from_secs(10),
            || {
                let cpus = proxy_thread_cpus(u.pid());
                let settled = !pins || cpus.iter().all(|c| c.len() == 1);
                (cpus.len() == threads && settled).then_some(cpus)
            },
        );
        // Served (503: no build yet).
        assert_eq!(u.get("/").0, 503);
        u.stop();
        cpus
    };
    let pinned = run("affinity-auto", &[], usable, allowed.len() == usable);
    if allowed.len() == usable {
        let mut each: Vec<usize> = pinned.iter().flatten().copied().collect();
        each.sort_unstable();
        assert_eq!(
            each, allowed,
            "one CPU each, every CPU of the mask: {pinned:?}"
        );
    } else {
        // A quota below the mask: pinning would crowd the threads onto the lowest CPUs.
        assert!(pinned.iter().all(|c| c.len() > 1), "{pinned:?}");
    }
    // Off, or more threads than CPUs: every thread may run where this process may (as /proc
    // lists it, which may name CPUs that are offline).
    let whole = cpu_list(&std::fs::read_to_string("/proc/self/status").unwrap()).unwrap();
    let off = run(
        "affinity-off",
        &[("UNDERSTUDY_CPU_AFFINITY", "off")],
        usable,
        false,
    );
    assert!(off.iter().all(|c| *c == whole), "{off:?}");
    let more = (allowed.len() + 1).to_string();
    let crowded = run(
        "affinity-more",
        &[("UNDERSTUDY_WORKER_THREADS", &more)],
        allowed.len() + 1,
        false,
    );
    assert!(crowded.iter().all(|c| *c == whole), "{crowded:?}");
}

/// The presence file's writes seen within `limit`: each distinct `written_unix_ms` whose
/// `heartbeat_every_ms` is `every_ms`, polled every 20 ms.
fn presence_writes(base: &Base, every_ms: u64, want: usize, limit: Duration) -> Vec<u64> {
    let path = base.path.join(".understudy/status.json");
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + limit;
    while seen.len() < want && std::time::Instant::now() < deadline {
        let read = std::fs::read_to_string(&path).unwrap_or_default();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&read) {
            let at = v["written_unix_ms"].as_u64().unwrap_or(0);
            if v["heartbeat_every_ms"] == every_ms && !seen.contains(&at) {
                seen.push(at);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    seen
}

/// `HEARTBEAT_EVERY` changed by a reload (SIGHUP) paces understudy's own presence file at once,
/// not only the probes of instances started since: a monitor told the new pace must not find
/// the file stale (nor, under systemd, the watchdog's limit be the old pace's).
#[test]
fn a_reloaded_heartbeat_every_paces_the_presence_file_at_once() {
    let base = Base::new("heartbeat-reload");
    base.write_env("HEARTBEAT_EVERY=60s");
    let mut u = Understudy::start(&base);
    let first = presence_writes(&base, 60_000, 1, Duration::from_secs(10));
    assert_eq!(first.len(), 1, "the first write, at start");
    base.write_env("HEARTBEAT_EVERY=200ms");
    unsafe { libc::kill(u.pid() as i32, libc::SIGHUP) };
    // At 200 ms, five writes come within a second or so; at the old pace, one a minute.
    let writes = presence_writes(&base, 200, 5, Duration::from_secs(15));
    assert_eq!(
        writes.len(),
        5,
        "status.json rewritten {} times in 15 s after the reload: {writes:?}; log:\n{}",
        writes.len(),
        u.log_text()
    );
    let pace = (writes[4] - writes[0]) / 4;
    assert!(pace < 2_000, "one write every {pace} ms: {writes:?}");
    u.stop();
}

/// A misspelt key, in `.env` or as an `UNDERSTUDY_` variable, is named at start with the key it
/// was most likely meant as: the variable was once ignored without a word, and the default ran.
#[test]
fn misspelt_keys_are_named_at_start_with_the_key_meant() {
    let base = Base::new("misspelt");
    base.write_env("STABLE_WINDOWS=5m\n");
    let mut u = Understudy::start_with_env(&base, &[("UNDERSTUDY_MIN_MIRORED", "10")]);
    let log = wait_until("both warnings", Duration::from_secs(10), || {
        let log = u.log_text();
        log.contains("UNDERSTUDY_MIN_MIRORED").then_some(log)
    });
    assert!(
        log.contains("ignoring the environment variable UNDERSTUDY_MIN_MIRORED")
            && log.contains("did you mean MIN_MIRRORED?"),
        "{log}"
    );
    assert!(
        log.contains("\"STABLE_WINDOWS\"") && log.contains("did you mean STABLE_WINDOW?"),
        "{log}"
    );
    u.stop();
}

/// A misspelt key added to `.env` later is named at the reload (SIGHUP) as at start: the reload
/// once said only "nothing changed", and the operator believed the key applied.
#[test]
fn a_misspelt_key_is_named_at_a_reload_with_the_key_meant() {
    let base = Base::new("misspelt-reload");
    base.write_env("");
    let mut u = Understudy::start(&base);
    let env = base.path.join(".env");
    let text = std::fs::read_to_string(&env).unwrap();
    std::fs::write(&env, format!("{text}STABLE_WINDOWS=5m\n")).unwrap();
    let log = u.reload_until("reloaded");
    assert!(
        log.contains("ignoring unknown key \"STABLE_WINDOWS\"")
            && log.contains("did you mean STABLE_WINDOW?"),
        "{log}"
    );
    u.stop();
}

/// A `PROPERTIES_FILE_NAME` naming no file stops understudy at start, naming the key, the value
/// and the path looked at: it once started, and instances ran without their configuration. At a
/// reload the same value is refused and the old configuration stays.
#[test]
fn a_properties_file_that_is_not_there_is_refused_at_start_and_at_a_reload() {
    let base = Base::new("props-missing");
    base.write_env("PROPERTIES_FILE_NAME=application.properties");
    let (code, err) = run_briefly(&base, &[]);
    assert_eq!(code, Some(64), "{err}");
    let path = base.path.join("application.properties");
    assert!(
        err.contains("PROPERTIES_FILE_NAME")
            && err.contains("application.properties")
            && err.contains(&path.display().to_string())
            && err.contains("put the file there"),
        "{err}"
    );

    let base = Base::new("props-missing-reload");
    base.write_env("");
    let mut u = Understudy::start(&base);
    base.write_env("PROPERTIES_FILE_NAME=application.properties");
    let log = u.reload_until("refusing the new configuration");
    assert!(
        log.contains("PROPERTIES_FILE_NAME") && log.contains("the old one stays"),
        "{log}"
    );
    u.stop();
}

/// `ADMIN_LISTEN` on `LISTEN`'s address (or a wildcard covering it) is refused at start naming
/// both keys and the value: it once failed later with a bare "Address already in use".
#[test]
fn admin_listen_on_the_listen_address_is_refused_naming_both_keys() {
    for (listen, admin) in [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1")] {
        let base = Base::new("admin-clash");
        let port = base.port_range.0;
        base.write_env(&format!(
            "LISTEN={listen}:{port}\nADMIN_LISTEN={admin}:{port}"
        ));
        let (code, err) = run_briefly(&base, &[]);
        assert_eq!(code, Some(64), "{listen} and {admin}: {err}");
        assert!(
            err.contains("ADMIN_LISTEN")
                && err.contains("LISTEN's")
                && err.contains(&format!("{admin}:{port}")),
            "{err}"
        );
    }
}

/// `.env` deleted and then a reload (SIGHUP): the refusal names the missing file, where it once
/// said only that IDENTIFIER is not set. The old configuration stays.
#[test]
fn a_reload_without_dotenv_names_the_missing_file() {
    let base = Base::new("dotenv-gone");
    base.write_env("");
    let mut u = Understudy::start(&base);
    let env = base.path.join(".env");
    std::fs::remove_file(&env).unwrap();
    let log = u.reload_until("refusing the new configuration");
    assert!(
        log.contains(&format!("{} does not exist", env.display())),
        "{log}"
    );
    u.stop();
}

/// A `JAR_COMMAND` or `EXEC_COMMAND` whose program is not there stops understudy at start, naming
/// the key, the program and what to do: it once started, and each build dropped was rejected for
/// a "No such file or directory" that was the configuration's fault. At a reload the same value is
/// refused and the old configuration stays: a build dropped afterwards still starts.
#[test]
fn a_command_whose_program_is_not_there_is_refused_at_start_and_at_a_reload() {
    let base = Base::new("command-missing");
    base.write_env("JAR_COMMAND='javaa -Xmx128m -jar {artifact}'");
    let (code, err) = run_briefly(&base, &[]);
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("JAR_COMMAND")
            && err.contains("javaa is in no directory of PATH")
            && err.contains("install it"),
        "{err}"
    );

    let base = Base::new("command-missing-reload");
    base.write_env("");
    let mut u = Understudy::start(&base);
    base.write_env("EXEC_COMMAND='/no/such/launcher {artifact}'");
    let log = u.reload_until("refusing the new configuration");
    assert!(
        log.contains("EXEC_COMMAND")
            && log.contains("/no/such/launcher cannot be run")
            && log.contains("the old one stays"),
        "{log}"
    );
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    let (status, body) = u.get("/");
    assert_eq!(status, 200, "the old EXEC_COMMAND starts the build: {body}");
    u.stop();
}

/// A hostile review's case: `LOG_DIR` in the base dir counted toward `MAX_BASE_SIZE` unsaid, and
/// as understudy.log grew, rollback archives went to make room (45 in one collection). Said at
/// start now.
#[test]
fn a_log_dir_in_the_base_dir_is_warned_about_at_start() {
    let base = Base::new("log-dir-inside");
    base.write_env("LOG_DIR=own-logs");
    let mut u = Understudy::start(&base);
    let log = base.path.join("own-logs/understudy.log");
    let text = wait_until("the warning", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("is in the base dir").then_some(text)
    });
    assert!(text.contains("counts toward MAX_BASE_SIZE"), "{text}");
    u.stop();
}
