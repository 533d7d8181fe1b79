//! Scoring and what follows from it: promotion with zero failed requests, rejection with the
//! reason, a newer build replacing testing, archives and their size budget.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::support::*;

/// Fast scoring for tests: a short window, few pairs, frequent evaluation.
const FAST: &str = "STABLE_WINDOW=2s\nMIN_MIRRORED=30\nEVALUATE_EVERY=250ms";

/// Send GETs without pause from `threads` clients until `stop`; returns each client's answers.
fn steady_traffic(
    addr: std::net::SocketAddr,
    threads: usize,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<(u16, String)>>> {
    (0..threads)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let path = ["/api/items", "/api/items/7", "/health"][(i + t) % 3];
                    seen.push(http(addr, "GET", path).unwrap_or((0, String::new())));
                    i += 1;
                }
                seen
            })
        })
        .collect()
}

fn start_with_v1(name: &str, extra: &str) -> (Base, Understudy) {
    let base = Base::new(name);
    // No guard window: the replaced version is archived as soon as it is stopped.
    base.write_env(&format!("{FAST}\nROLLBACK_WINDOW=0\n{extra}"));
    let u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    (base, u)
}

/// v1 serves under steady traffic; v2 with `faults` is dropped and must be rejected. Returns the
/// reason, after checking that users only ever saw v1 and that v1 still runs.
fn rejected_under_traffic(name: &str, extra_env: &str, faults: &str) -> String {
    let (base, mut u) = start_with_v1(name, extra_env);
    let stop = Arc::new(AtomicBool::new(false));
    let clients = steady_traffic(u.addr, 2, stop.clone());
    base.drop_fixture("1.1.0", faults);
    let r = reason(&base, "1.1.0");
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let answers = c.join().unwrap();
        assert!(
            answers
                .iter()
                .all(|(s, b)| *s == 200 && b.contains("1.0.0")),
            "users only ever saw v1"
        );
    }
    assert_eq!(base.version_of("running").unwrap(), "app-1.0.0");
    assert!(
        !base.path.join("app-1.1.0").exists(),
        "the rejected version moved aside"
    );
    u.stop();
    r
}

fn reason(base: &Base, version: &str) -> String {
    let path = base
        .path
        .join(format!("rejected/app-{version}/reason.json"));
    wait_until(
        &format!("{} to appear", path.display()),
        Duration::from_secs(20),
        || std::fs::read_to_string(&path).ok(),
    )
}

#[test]
fn healthy_build_is_promoted_with_zero_failed_requests() {
    let (base, mut u) = start_with_v1("promote", "");
    let stop = Arc::new(AtomicBool::new(false));
    let clients = steady_traffic(u.addr, 4, stop.clone());
    base.drop_fixture("1.1.0", "");
    wait_until("promotion to 1.1.0", Duration::from_secs(30), || {
        (base.version_of("running")? == "app-1.1.0").then_some(())
    });
    wait_until("a v2 answer", Duration::from_secs(5), || {
        u.get("/").1.contains("1.1.0").then_some(())
    });
    // Keep the load on through draining and the old instance's stop.
    let zip = base.path.join("archive/app-1.0.0.zip");
    wait_until(
        "v1 archived and its folder gone",
        Duration::from_secs(20),
        || (zip.is_file() && !base.path.join("app-1.0.0").exists()).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);

    let mut total = 0;
    for c in clients {
        let answers = c.join().unwrap();
        total += answers.len();
        let failed: Vec<_> = answers.iter().filter(|(s, _)| *s != 200).collect();
        assert!(
            failed.is_empty(),
            "{} of {} requests failed: {:?}",
            failed.len(),
            answers.len(),
            &failed[..failed.len().min(3)]
        );
        let first_v2 = answers
            .iter()
            .position(|(_, b)| b.contains("1.1.0"))
            .expect("every client saw v2");
        assert!(
            answers[first_v2..].iter().all(|(_, b)| b.contains("1.1.0")),
            "after the switch every answer is v2's"
        );
    }
    assert!(total > 100, "steady traffic ({total} requests)");

    // The old version's folder is a zip with its logs inside.
    let mut a = zip::ZipArchive::new(std::fs::File::open(&zip).unwrap()).unwrap();
    let mut log = String::new();
    a.by_name("app-1.0.0/1/logs/json/app.log")
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("\"version\":\"1.0.0\""), "{log:.200}");
    assert!(
        a.by_name("app-1.0.0/app-1.0.0").is_ok(),
        "the artifact is archived"
    );
    assert!(
        base.link("testing").is_none(),
        "no testing link after promotion"
    );

    // The score and its parts were logged at each evaluation.
    let log = u.log_text();
    assert!(
        log.contains(" scored ")
            && log.contains("verdict=wait")
            && log.contains("5xx=")
            && log.contains("log_errors="),
        "score parts logged as structured fields"
    );
    assert!(
        log.contains("too little traffic") || log.contains("stable for"),
        "waiting is explained"
    );
    u.stop();
}

#[test]
fn endpoint_that_404s_only_on_testing_is_rejected_and_named() {
    let r = rejected_under_traffic("reject-404", "", "--not-found /api/items");
    assert!(
        r.contains("endpoint regression") && r.contains("GET /api/items"),
        "{r}"
    );
}

#[test]
fn extra_5xx_on_one_endpoint_is_rejected() {
    let r = rejected_under_traffic("reject-5xx", "", "--fail-path /health");
    assert!(r.contains("5xx rate"), "{r}");
}

#[test]
fn error_logs_per_request_are_rejected() {
    let r = rejected_under_traffic("reject-logs", "", "--log-errors");
    assert!(r.contains("log errors"), "{r}");
}

/// Most apps log to the console by default (Spring Boot, Node, twelve-factor apps): error lines
/// on stdout count as those on stderr or in `logs/` do.
#[test]
fn error_lines_on_stdout_per_request_are_rejected() {
    let r = rejected_under_traffic("reject-stdout-logs", "", "--stdout-errors");
    assert!(r.contains("log errors"), "{r}");
}

#[test]
fn build_that_crashes_at_start_is_rejected_with_its_stderr() {
    let (base, mut u) = start_with_v1("reject-crash", "");
    base.drop_fixture("1.1.0", "--crash-at-start");
    let r = reason(&base, "1.1.0");
    assert!(
        r.contains("fatal: cannot load configuration"),
        "stderr tail in the reason: {r}"
    );
    assert_eq!(u.get("/").0, 200);
    assert_eq!(base.version_of("running").unwrap(), "app-1.0.0");
    // A build's stderr may hold secrets: over TCP it needs the token, as answers' values do.
    let (addr, token) = admin(&base);
    let (_, hidden) = api(addr, "GET", "/api/events/recent", None, "");
    let (_, shown) = api(addr, "GET", "/api/events/recent", Some(&token), "");
    assert!(
        shown
            .to_string()
            .contains("fatal: cannot load configuration"),
        "{shown}"
    );
    assert!(
        !hidden.to_string().contains("fatal: cannot load"),
        "{hidden}"
    );
    assert!(
        hidden.to_string().contains("hidden: send the token"),
        "{hidden}"
    );
    u.stop();
}

/// An app that logs only to stdout dies with an empty stderr: the reason quotes stdout's end.
#[test]
fn build_that_crashes_saying_why_on_stdout_only_is_rejected_with_its_stdout() {
    let (base, mut u) = start_with_v1("reject-crash-stdout", "");
    base.drop_fixture("1.1.0", "--crash-on-stdout");
    let r = reason(&base, "1.1.0");
    assert!(
        r.contains("shutting down, bye"),
        "stdout tail in the reason: {r}"
    );
    assert!(r.contains("stderr is empty"), "{r}");
    u.stop();
}

#[test]
fn build_that_never_gets_ready_is_rejected() {
    let (base, mut u) = start_with_v1("reject-never-ready", "READY_TIMEOUT=1s");
    base.drop_fixture("1.1.0", "--never-ready");
    let r = reason(&base, "1.1.0");
    assert!(r.contains("never became ready"), "{r}");
    assert!(u.get("/").1.contains("1.0.0"));
    u.stop();
}

#[test]
fn newer_build_replaces_testing_and_the_old_one_is_archived() {
    // A long window: nothing is promoted while this test runs.
    let (base, mut u) = start_with_v1("replace-testing", "STABLE_WINDOW=10m");
    base.drop_fixture("1.1.0", "");
    wait_until("v2 testing", Duration::from_secs(10), || {
        (base.version_of("testing")? == "app-1.1.0").then_some(())
    });
    base.drop_fixture("1.2.0", "");
    wait_until("v3 testing", Duration::from_secs(10), || {
        base.fixture_stats("testing")
            .filter(|s| s["version"] == "1.2.0")
    });
    wait_until(
        "v2 archived and its folder gone",
        Duration::from_secs(10),
        || {
            let zipped = base.path.join("archive/app-1.1.0.zip").is_file();
            (zipped && !base.path.join("app-1.1.0").exists()).then_some(())
        },
    );
    for _ in 0..5 {
        assert!(u.get("/x").1.contains("1.0.0"));
    }
    wait_until("v3 gets the copies", Duration::from_secs(5), || {
        base.fixture_stats("testing").filter(|s| s["mirrored"] == 5)
    });

    // Older than or equal to running: refused, with a reason.
    base.drop_fixture("0.9.0", "");
    let refused = base.path.join("rejected/app-0.9.0.refused/reason.json");
    let r = wait_until("0.9.0 refused", Duration::from_secs(10), || {
        std::fs::read_to_string(&refused).ok()
    });
    assert!(r.contains("not newer than running 1.0.0"), "{r}");
    u.stop();
}

fn fake_archive(dir: &Path, name: &str, age_secs: u64) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, vec![0u8; 1 << 20]).unwrap();
    let f = std::fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(age_secs))
        .unwrap();
    p
}

#[test]
fn archives_over_the_size_budget_go_oldest_first() {
    let base = Base::new("gc");
    let adir = base.path.join("archive");
    std::fs::create_dir_all(&adir).unwrap();
    let oldest = fake_archive(&adir, "app-0.1.0.zip", 3000);
    let middle = fake_archive(&adir, "app-0.2.0.zip", 2000);
    let newest = fake_archive(&adir, "app-0.3.0.zip", 1000);
    // Room for about two of the three 1 MiB archives plus the live folders.
    base.write_env(&format!("{FAST}\nMAX_BASE_SIZE=2500KiB"));
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    base.drop_fixture("1.1.0", "");
    base.wait_testing();
    // A refused build triggers collection too; so does every archive.
    base.drop_fixture("0.5.0", "");
    wait_until(
        "the oldest archive deleted",
        Duration::from_secs(10),
        || (!oldest.exists()).then_some(()),
    );
    assert!(
        middle.exists() && newest.exists(),
        "only as many as needed go, oldest first"
    );
    assert!(
        base.path.join("app-1.0.0/1/stdout").is_file()
            && base.path.join("app-1.1.0/1/stdout").is_file(),
        "live versions untouched"
    );
    assert_eq!(u.get("/").0, 200);
    assert!(u.log_text().contains("archive_deleted"));
    u.stop();
}

#[test]
fn differing_bodies_are_rejected_with_a_ceiling_when_noise_is_unknown() {
    // Without noise cancellation a difference is judged only against MAX_BODY_DIFF; the
    // fixture's version in every answer is expected, so only the doubled price is.
    let r = rejected_under_traffic(
        "reject-bodies",
        "NOISE_CANCEL=off\nMAX_BODY_DIFF=0.5",
        "--double-price",
    );
    assert!(
        r.contains("answers differ on GET /api/items at $.items[*].price"),
        "{r}"
    );
    assert!(!r.contains("$.version") && !r.contains("line[*]"), "{r}");
}

#[test]
fn startup_errors_count_for_testing_not_for_running() {
    // Running logged 500 errors at its start: that is not testing's fault, so v2 is promoted.
    let base = Base::new("startup-errors");
    base.write_env(FAST);
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "--startup-errors 500");
    u.wait_serving();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = steady_traffic(u.addr, 2, stop.clone());
    base.drop_fixture("1.1.0", "");
    wait_until("promotion to 1.1.0", Duration::from_secs(30), || {
        (base.version_of("running")? == "app-1.1.0").then_some(())
    });
    // Testing logging 500 errors at its own start is rejected.
    base.drop_fixture("1.2.0", "--startup-errors 500");
    let r = reason(&base, "1.2.0");
    stop.store(true, Ordering::Relaxed);
    clients.into_iter().for_each(|c| drop(c.join()));
    assert!(r.contains("log errors: testing 500 error lines"), "{r}");
    u.stop();
}

#[test]
fn a_rollback_restores_a_kept_version_whose_program_was_removed_from_its_protected_copy() {
    let (base, mut u) = start_with_testing("rollback-no-program", "");
    let (code, _, err) = cli(&base, &["promote"]);
    assert_eq!(code, 0, "{err}");
    wait_until("1.1.0 running", Duration::from_secs(20), || {
        (base.version_of("running").as_deref() == Some("app-1.1.0")).then_some(())
    });
    // 1.0.0 is kept through ROLLBACK_WINDOW, with its protected copy; its program is removed.
    let program = base.path.join("app-1.0.0/app-1.0.0");
    assert!(base
        .path
        .join(".understudy/store/app-1.0.0/seal.json")
        .is_file());
    std::fs::remove_file(&program).unwrap();
    let (code, out, err) = cli(&base, &["rollback"]);
    assert_eq!(code, 0, "{out}{err}");
    wait_until("1.0.0 running again", Duration::from_secs(30), || {
        let linked = base.version_of("running").as_deref() == Some("app-1.0.0");
        (linked && u.get("/").1.contains("hello from 1.0.0")).then_some(())
    });
    assert_eq!(
        std::fs::read_to_string(&program).unwrap(),
        Base::fixture_script("1.0.0", "")
    );
    let log = u.log_text();
    assert!(log.contains("restored from the protected copy"), "{log}");
    u.stop();
}

/// While the guard brings 1.0.0 back after 1.1.0 crashed, nothing serves and users' requests
/// wait: `understudy status` said only `running none`. It now says what comes back, from what
/// and why, and that requests are held (each up to `UPSTREAM_TIMEOUT`); the JSON says the same.
#[test]
fn status_shows_the_guards_rollback_and_the_requests_held_for_it() {
    let base = Base::new("guard-status");
    base.write_env("ROLLBACK_WINDOW=2m\nUPSTREAM_TIMEOUT=3s");
    let mut u = Understudy::start(&base);
    // Beside the base dir (inside it, it would be taken for a drop): while it is there, 1.0.0
    // waits before it starts, so the rollback stays under way until the test has looked.
    let hold = base.path.with_extension("hold-start");
    let hold_text = hold.display();
    base.drop_script(
        "1.0.0",
        &format!(
            "#!/bin/sh\nwhile [ -e '{hold_text}' ]; do sleep 0.1; done\nexec '{BIN}' fixture-app --version 1.0.0\n"
        ),
    );
    u.wait_serving();
    std::fs::write(&hold, "").unwrap();
    // Passes as testing; as running it exits 1.5 s after it listens.
    base.drop_fixture_as_running("1.1.0", "--exit-after-ms 1500");
    base.wait_testing();
    let (code, _, err) = cli(&base, &["promote"]);
    assert_eq!(code, 0, "{err}");
    let status = wait_until(
        "status to show requests held for the guard's rollback",
        Duration::from_secs(30),
        || {
            let (_, out, _) = cli(&base, &["status", "--json"]);
            let status: serde_json::Value = serde_json::from_str(&out).ok()?;
            (status["guard_rollback"]["requests_held"] == true).then_some(status)
        },
    );
    let r = &status["guard_rollback"];
    assert!(status["running"].is_null(), "{status}");
    assert_eq!(
        (&r["version"], &r["from"]),
        (&json!("1.0.0"), &json!("1.1.0"))
    );
    assert!(
        r["reason"]
            .as_str()
            .is_some_and(|w| w.starts_with("failed within ROLLBACK_WINDOW: exited")),
        "{status}"
    );
    assert_eq!(
        r["held_up_to_secs"],
        json!(3.0),
        "UPSTREAM_TIMEOUT: {status}"
    );
    assert!(r["down_since"].is_string(), "{status}");
    let (code, text, err) = cli(&base, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        text.contains("guard     rolling back from 1.1.0 to 1.0.0 (1.0.0 is")
            && text.contains("held      users' requests wait for 1.0.0, each up to 3 s (UPSTREAM_TIMEOUT), then 503; 1.1.0 crashed at"),
        "{text}"
    );
    std::fs::remove_file(&hold).unwrap();
    wait_until("1.0.0 to serve", Duration::from_secs(30), || {
        let (status, body) = u.get("/");
        (status == 200 && body.contains("1.0.0")).then_some(())
    });
    let (_, out, _) = cli(&base, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(status["guard_rollback"].is_null(), "switched: {status}");
    u.stop();
}

/// The guard's rollback cannot start (the old version's folder is gone, and it was never
/// archived): 1.1.0, which crashed, is restarted as documented, and status said only that it was
/// restarting. It now says the guard gave up, why, and that 1.1.0 crashed since its promotion;
/// so does the restart's log line.
#[test]
fn status_says_when_the_guards_rollback_could_not_start() {
    let base = Base::new("guard-gave-up");
    base.write_env("ROLLBACK_WINDOW=2m");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    // Passes as testing; as running it exits once the test has taken 1.0.0 away. Beside the
    // base dir: inside it, the file would be taken for a drop.
    let crash = base.path.with_extension("crash");
    let _ = std::fs::remove_file(&crash);
    let as_running = format!("--exit-on-file {}", crash.display());
    base.drop_fixture_as_running("1.1.0", &as_running);
    base.wait_testing();
    let (code, _, err) = cli(&base, &["promote"]);
    assert_eq!(code, 0, "{err}");
    wait_until(
        "1.1.0 promoted and guarded",
        Duration::from_secs(20),
        || {
            let (_, out, _) = cli(&base, &["status", "--json"]);
            let status: serde_json::Value = serde_json::from_str(&out).ok()?;
            status["guarded"].is_string().then_some(())
        },
    );
    // Gone, with its protected copy: nothing to bring it back from.
    std::fs::remove_dir_all(base.path.join("app-1.0.0")).unwrap();
    std::fs::remove_dir_all(base.path.join(".understudy/store/app-1.0.0")).unwrap();
    std::fs::write(&crash, "").unwrap();
    let status = wait_until(
        "status to say the guard gave up",
        Duration::from_secs(30),
        || {
            let (_, out, _) = cli(&base, &["status", "--json"]);
            let status: serde_json::Value = serde_json::from_str(&out).ok()?;
            status["guard_failed"].is_string().then_some(status)
        },
    );
    let said = status["guard_failed"].as_str().unwrap();
    assert!(
        said.starts_with(
            "the guard's rollback from 1.1.0 to 1.0.0 could not start (no archived version 1.0.0"
        ) && said.contains("its watch of 1.1.0 is over, and 1.1.0, which crashed at"),
        "{status}"
    );
    assert!(status["guard_rollback"].is_null(), "{status}");
    let (_, text, _) = cli(&base, &["status"]);
    assert!(
        text.contains("guard     the guard's rollback from 1.1.0 to 1.0.0 could not start"),
        "{text}"
    );
    let log = u.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("restart_scheduled") && l.contains("its watch of 1.1.0 is over")),
        "{log}"
    );
    u.stop();
    let _ = std::fs::remove_file(&crash);
}

/// A build dropped while an operator's promotion waits on `PRE_PROMOTE` waits as pending: the
/// promotion is finished (it used to be dropped without a word, the promoted build archived)
/// and the new build is tested after it.
#[test]
fn a_build_dropped_during_pre_promote_is_tested_after_the_promotion() {
    let flags = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (started, go) = (flags.path().join("started"), flags.path().join("go"));
    let hook = format!(
        r#"PRE_PROMOTE='/bin/sh -c "touch {}; while [ ! -e {} ]; do sleep 0.05; done"'"#,
        started.display(),
        go.display()
    );
    let base = Base::new("pre-promote-drop");
    // Never promoted on its own: only the operator's promote switches.
    base.write_env(&format!(
        "STABLE_WINDOW=10m\nMIN_MIRRORED=1000\nROLLBACK_WINDOW=0\n{hook}"
    ));
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    base.drop_fixture("1.1.0", "");
    base.wait_testing();
    let (code, out, err) = cli(&base, &["promote"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1.1.0"), "{out}");
    wait_until("PRE_PROMOTE to run", Duration::from_secs(20), || {
        started.exists().then_some(())
    });
    base.drop_fixture("1.2.0", "");
    let (addr, token) = admin(&base);
    wait_until("1.2.0 to wait as pending", Duration::from_secs(20), || {
        let (_, s) = api(addr, "GET", "/api/status", Some(&token), "");
        (s["pending"] == "1.2.0").then_some(())
    });
    assert_eq!(base.version_of("testing").as_deref(), Some("app-1.1.0"));
    std::fs::write(&go, "").unwrap();
    wait_until("1.1.0 to serve", Duration::from_secs(30), || {
        (base.version_of("running").as_deref() == Some("app-1.1.0")).then_some(())
    });
    wait_until("1.2.0 under test", Duration::from_secs(30), || {
        (base.version_of("testing").as_deref() == Some("app-1.2.0")).then_some(())
    });
    let history =
        std::fs::read_to_string(base.path.join(".understudy/history.jsonl")).unwrap_or_default();
    assert!(
        history
            .lines()
            .any(|l| l.contains("\"to\":\"1.1.0\"") && l.contains("operator")),
        "{history}"
    );
    u.stop();
}
