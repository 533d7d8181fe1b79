//! Steering that must survive understudy itself: a scheduled promotion across hard kills.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::support::*;

/// The switches recorded in history.jsonl, as (to, why).
fn switches(base: &Base) -> Vec<(String, String, String)> {
    std::fs::read_to_string(base.path.join(".understudy/history.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|s| {
            (
                s["to"].as_str().unwrap_or("?").to_string(),
                s["why"].as_str().unwrap_or("?").to_string(),
                s["at"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

fn scheduled_switches(base: &Base) -> usize {
    switches(base)
        .iter()
        .filter(|(_, why, _)| why == "scheduled")
        .count()
}

/// Valid RFC 3339 whose UTC date is in year 10000: it used to panic the supervisor (every child
/// stopped, exit 1) through the CLI and the API, and the history handler through `?at=`.
#[test]
fn an_instant_past_year_9999_is_refused_everywhere_and_understudy_keeps_serving() {
    let (base, mut u) = start_with_testing("instant-bounds", "");
    let far = "9999-12-31T23:59:59-23:59";
    let (code, _, err) = cli(&base, &["promote", "--at", far]);
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("9999-12-31T23:59:59Z"),
        "says the range: {err}"
    );
    let (addr, token) = admin(&base);
    let body = format!("{{\"at\": \"{far}\"}}");
    let (code, answer) = api(addr, "POST", "/api/promote", Some(&token), &body);
    assert_eq!(code, 400, "{answer}");
    let (code, answer) = api(addr, "GET", &format!("/api/history?at={far}"), None, "");
    assert_eq!(code, 400, "{answer}");
    // A query the handler cannot read is a JSON error saying how to ask, as every other error.
    let twice = "/api/history?at=2026-12-01T03:00:00Z&at=2026-12-02T03:00:00Z";
    let (code, answer) = api(addr, "GET", twice, None, "");
    assert_eq!(code, 400, "{answer}");
    assert!(
        answer["error"].as_str().is_some_and(|e| e.contains("?at=")),
        "{answer}"
    );
    assert_eq!(u.get("/").0, 200, "understudy still serves");
    let (code, out, _) = cli(&base, &["status"]);
    assert_eq!(code, 0);
    assert!(out.contains("1.1.0"), "testing is still under test: {out}");
    assert!(
        out.contains(&format!("(pid {}, since 20", u.pid())),
        "which understudy answers: {out}"
    );
    u.stop();
}

#[test]
fn a_scheduled_promotion_survives_a_hard_kill_and_fires_exactly_once() {
    let (base, mut u) = start_with_testing("schedule-kill", "");
    // Far enough ahead to outlast two CLI runs, a kill and a restart on a loaded machine (6 s
    // did not always); checked below, before the time comes.
    let due = SystemTime::now() + Duration::from_secs(10);
    let at = understudy::supervisor::control::rfc3339(due);
    let (code, out, err) = cli(&base, &["promote", "--at", &at]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("schedule #1"), "{out}");
    // Saved before the answer: the state file already holds it.
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(base.path.join(".understudy/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["schedules"][0]["state"], "pending", "{state}");
    assert_eq!(state["schedules"][0]["version"], "1.1.0", "{state}");
    let (_, out, _) = cli(&base, &["status"]);
    assert!(out.contains("scheduled") && out.contains(&at), "{out}");

    u.kill_hard();
    let mut u = Understudy::start(&base);
    assert!(
        SystemTime::now() < due,
        "the restart must come before the schedule's time for this test to mean anything"
    );
    assert_eq!(
        base.version_of("running").as_deref(),
        Some("app-1.0.0"),
        "not promoted before the schedule's time"
    );
    wait_until("the scheduled promotion", Duration::from_secs(40), || {
        (base.version_of("running").as_deref() == Some("app-1.1.0")).then_some(())
    });
    // The history line follows the symlink by a moment.
    wait_until(
        "the scheduled switch in the history",
        Duration::from_secs(5),
        || (scheduled_switches(&base) == 1).then_some(()),
    );
    let (_, _, switched_at) = switches(&base).pop().unwrap();
    let switched = understudy::history::parse_rfc3339(&switched_at).unwrap();
    assert!(switched >= due, "fired at {switched_at}, before {at}");
    let (_, out, _) = cli(&base, &["schedule", "--json"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["schedules"][0]["state"], "fired", "{list}");

    // Restarted again after it fired: it does not fire again.
    u.kill_hard();
    let mut u = Understudy::start(&base);
    u.wait_serving();
    base.drop_fixture("1.2.0", "");
    base.wait_testing();
    assert_eq!(base.version_of("running").as_deref(), Some("app-1.1.0"));
    assert_eq!(scheduled_switches(&base), 1, "{:?}", switches(&base));
    let (_, out, _) = cli(&base, &["schedule"]);
    assert!(out.contains("#1") && out.contains("fired"), "{out}");
    // Cancelling a finished schedule is refused; an unknown one is 404 (exit 1).
    let (code, _, err) = cli(&base, &["schedule", "cancel", "1"]);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = cli(&base, &["schedule", "cancel", "42"]);
    assert_eq!(code, 1);
    assert!(err.contains("42"), "{err}");
    u.stop();
}

/// A schedule whose promotion `PRE_PROMOTE` refuses ends `failed` with the hook's reason, never
/// `fired`: users were not switched, and running stays.
#[test]
fn a_scheduled_promotion_refused_by_pre_promote_is_listed_failed_not_fired() {
    let (base, mut u) = start_with_testing("schedule-pre-promote", "PRE_PROMOTE=/bin/false");
    let at = understudy::supervisor::control::rfc3339(SystemTime::now() + Duration::from_secs(3));
    let (code, _, err) = cli(&base, &["promote", "--at", &at]);
    assert_eq!(code, 0, "{err}");
    let sch = wait_until("the schedule's end", Duration::from_secs(30), || {
        let (_, out, _) = cli(&base, &["schedule", "--json"]);
        let list: Value = serde_json::from_str(&out).ok()?;
        let sch = list["schedules"][0].clone();
        (sch["state"] != "pending" && sch["state"] != "promoting").then_some(sch)
    });
    assert_eq!(sch["state"], "failed", "{sch}");
    let reason = sch["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("PRE_PROMOTE"), "{sch}");
    let (_, out, _) = cli(&base, &["schedule"]);
    assert!(out.contains("#1") && out.contains("failed"), "{out}");
    assert_eq!(base.version_of("running").as_deref(), Some("app-1.0.0"));
    assert_eq!(scheduled_switches(&base), 0, "{:?}", switches(&base));
    u.stop();
}

#[test]
fn a_failing_pre_promote_leaves_running_untouched_with_the_reason_in_status() {
    // Single quotes: dotenv leaves `$UNDERSTUDY_VERSION` for the hook's shell.
    let hook =
        r#"PRE_PROMOTE='/bin/sh -c "echo smoke test failed for $UNDERSTUDY_VERSION; exit 1"'"#;
    let (base, mut u) = start_with_testing("pre-promote", hook);
    let (code, out, err) = cli(&base, &["promote"]);
    assert_eq!(code, 0, "the promotion is asked for: {err}");
    let _ = out;
    // The hook's output is shown over TCP with the token only (tests/secrets.rs).
    let (addr, token) = admin(&base);
    let status = wait_until(
        "the hook's refusal in status",
        Duration::from_secs(20),
        || {
            let (_, s) = api(addr, "GET", "/api/status", Some(&token), "");
            s["hook_failure"].is_string().then_some(s)
        },
    );
    let why = status["hook_failure"].as_str().unwrap();
    assert!(
        why.contains("PRE_PROMOTE") && why.contains("smoke test failed for 1.1.0"),
        "{why}"
    );
    assert_eq!(status["running"]["version"], "1.0.0", "{status}");
    assert_eq!(status["testing"]["version"], "1.1.0", "{status}");
    assert!(status["transaction"].is_null(), "{status}");
    // The plain-text status says it too.
    let (code, out, err) = cli(&base, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines().any(|l| l.starts_with("refused")
            && l.contains("PRE_PROMOTE")
            && l.contains("smoke test failed for 1.1.0")),
        "{out}"
    );
    assert_eq!(base.version_of("running").as_deref(), Some("app-1.0.0"));
    assert_eq!(base.version_of("testing").as_deref(), Some("app-1.1.0"));
    assert!(u.get("/").1.contains("1.0.0"));
    // Its output is kept with the instance.
    let log = std::fs::read_to_string(base.path.join("testing/hooks.log")).unwrap();
    assert!(log.contains("smoke test failed for 1.1.0"), "{log}");
    u.stop();
}

#[test]
fn killed_between_ready_and_switch_the_old_version_serves_and_the_journal_is_resolved() {
    let base = Base::new("crash-switch");
    base.write_env("");
    let mut u = Understudy::start_with_env(&base, &[("UNDERSTUDY_INJECT_CRASH", "before-switch")]);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    base.drop_fixture("1.1.0", "");
    base.wait_testing();
    let (code, _, err) = cli(&base, &["promote"]);
    assert_eq!(code, 0, "{err}");
    // It dies by SIGKILL once the fresh 1.1.0 instance is ready and journaled.
    let exit = u.wait_exit(Duration::from_secs(20));
    assert_eq!(exit, None, "killed by a signal, not an exit code");
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(base.path.join(".understudy/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["txn"]["step"], "ready", "{state}");
    // No orphan: every process of every build goes with it.
    wait_until(
        "no process of any build left",
        Duration::from_secs(2),
        || leftovers(&base.path).is_empty().then_some(()),
    );
    let mut u = Understudy::start(&base);
    u.wait_serving();
    assert!(u.get("/").1.contains("1.0.0"), "the old version serves");
    assert_eq!(base.version_of("running").as_deref(), Some("app-1.0.0"));
    base.wait_testing();
    assert_eq!(
        base.version_of("testing").as_deref(),
        Some("app-1.1.0"),
        "tested again"
    );
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(base.path.join(".understudy/state.json")).unwrap(),
    )
    .unwrap();
    assert!(state["txn"].is_null(), "the journal is resolved: {state}");
    assert_eq!(state["running"], "1.0.0");
    // decide logs nothing itself: the undoing is announced by its event.
    assert!(u.log_text().contains("switch_undone"), "{}", u.log_text());
    assert!(
        !switches(&base).iter().any(|(to, _, _)| to == "1.1.0"),
        "1.1.0 never served: {:?}",
        switches(&base)
    );
    u.stop();
}

/// 1.0.0 serving (20 requests answered, the guard's baseline), then 1.1.0, which passes as
/// testing and answers 500s once it serves users, promoted by the operator and running.
fn promote_a_build_failing_as_running(base: &Base, u: &Understudy) {
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    for _ in 0..20 {
        assert_eq!(u.get("/").0, 200);
    }
    base.drop_fixture("1.1.0", "--fail-as-running");
    base.wait_testing();
    let (code, _, err) = cli(base, &["promote"]);
    assert_eq!(code, 0, "{err}");
    wait_until("1.1.0 running", Duration::from_secs(20), || {
        (base.version_of("running").as_deref() == Some("app-1.1.0")).then_some(())
    });
}

#[test]
fn a_promoted_version_that_answers_500s_is_rolled_back_by_the_guard() {
    let base = Base::new("guard");
    base.write_env("ROLLBACK_WINDOW=2m");
    let mut u = Understudy::start(&base);
    promote_a_build_failing_as_running(&base, &u);
    let (_, out, _) = cli(&base, &["status", "--json"]);
    let status: Value = serde_json::from_str(&out).unwrap();
    assert!(
        status["guarded"]
            .as_str()
            .is_some_and(|g| g.contains("1.1.0")),
        "{status}"
    );
    // Users meet its 500s; the guard sees them and brings 1.0.0 back.
    wait_until(
        "the guard's rollback to 1.0.0",
        Duration::from_secs(30),
        || {
            let _ = u.get("/");
            (base.version_of("running").as_deref() == Some("app-1.0.0")).then_some(())
        },
    );
    wait_until("1.0.0 answering", Duration::from_secs(10), || {
        let (code, body) = u.get("/");
        (code == 200 && body.contains("1.0.0")).then_some(())
    });
    wait_until(
        "three switches in the history",
        Duration::from_secs(5),
        || (switches(&base).len() >= 3).then_some(()),
    );
    let whys: Vec<(String, String)> = switches(&base)
        .into_iter()
        .map(|(to, why, _)| (to, why))
        .collect();
    assert_eq!(
        whys,
        vec![
            ("1.0.0".to_string(), "first".to_string()),
            ("1.1.0".to_string(), "operator".to_string()),
            ("1.0.0".to_string(), "rollback".to_string()),
        ]
    );
    let log = u.log_text();
    assert!(
        log.contains("guard_tripped") && log.contains("5xx rate"),
        "{log}"
    );
    // The version rolled back from is rejected with the guard's reason, not archived as a
    // version to come back to.
    let reason = wait_until("1.1.0 rejected", Duration::from_secs(15), || {
        std::fs::read_to_string(base.path.join("rejected/app-1.1.0/reason.json")).ok()
    });
    assert!(
        reason.contains("rolled back by the guard") && reason.contains("5xx rate"),
        "{reason}"
    );
    assert!(!base.path.join("archive/app-1.1.0.zip").exists());
    u.stop();
}

/// The issue's sequence: a rollback named the build under test (200, and the never-served build
/// took over); a later abort moved the folder running lived in to `rejected/`; after a restart,
/// 503. Now the rollback is 409, and so is one to a version that never served here.
#[test]
fn a_rollback_to_the_build_under_test_or_to_a_version_that_never_served_is_409() {
    let (base, mut u) = start_with_testing("rollback-under-test", "STABLE_WINDOW=1h");
    let (addr, token) = admin(&base);
    let rollback = |v: &str| {
        let body = format!("{{\"version\": \"{v}\"}}");
        api(addr, "POST", "/api/rollback", Some(&token), &body)
    };
    let (code, body) = rollback("1.1.0");
    assert_eq!(code, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("never served"),
        "{body}"
    );
    let (code, body) = rollback("0.9.0");
    assert_eq!(code, 409, "{body}");
    assert_eq!(base.version_of("running").as_deref(), Some("app-1.0.0"));
    assert_eq!(base.version_of("testing").as_deref(), Some("app-1.1.0"));

    let (code, body) = api(addr, "POST", "/api/abort", Some(&token), "");
    assert_eq!(code, 200, "{body}");
    wait_until("1.1.0 rejected", Duration::from_secs(10), || {
        base.path.join("rejected/app-1.1.0").exists().then_some(())
    });
    assert!(
        base.path.join("app-1.0.0").exists(),
        "running's folder stays"
    );
    assert_eq!(u.get("/").0, 200);
    u.stop();
    let mut u = Understudy::start(&base);
    u.wait_serving();
    assert!(u.get("/").1.contains("1.0.0"));
    u.stop();
}

/// Until history shows the guard's rollback to 1.0.0.
fn rolled_back_to_1_0_0(base: &Base) {
    wait_until(
        "the guard's rollback to 1.0.0",
        Duration::from_secs(30),
        || {
            let rolled_back = switches(base)
                .iter()
                .any(|(to, why, _)| to == "1.0.0" && why == "rollback");
            rolled_back.then_some(())
        },
    );
}

/// Let the users ask for a second more (on the version just switched to).
fn users_for_a_second() {
    let served = std::time::Instant::now();
    wait_until("a second after the switch", Duration::from_secs(5), || {
        (served.elapsed() >= Duration::from_secs(1)).then_some(())
    });
}

/// One user's request: when it was sent, how long its answer took, its status and body.
struct Answer {
    at: std::time::Instant,
    took: Duration,
    status: u16,
    body: String,
}

/// Users asking `/` from two clients until stopped, every answer kept.
struct Users {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    clients: Vec<std::thread::JoinHandle<Vec<Answer>>>,
}

impl Users {
    fn start(addr: std::net::SocketAddr) -> Users {
        Users::asking(addr, ["GET", "GET"])
    }

    /// One client per method, each on a new connection per request.
    fn asking(addr: std::net::SocketAddr, methods: [&'static str; 2]) -> Users {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients = methods
            .into_iter()
            .map(|method| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut answers = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let at = std::time::Instant::now();
                        let (status, body) = http(addr, method, "/")
                            .unwrap_or_else(|e| (0, format!("no answer: {e}")));
                        let took = at.elapsed();
                        answers.push(Answer {
                            at,
                            took,
                            status,
                            body,
                        });
                        std::thread::sleep(PACE);
                    }
                    answers
                })
            })
            .collect();
        Users { stop, clients }
    }

    /// Stop; every answer, in the order they were asked.
    fn finish(mut self) -> Vec<Answer> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut all = Vec::new();
        for c in self.clients.drain(..) {
            all.extend(c.join().unwrap());
        }
        all.sort_by_key(|a| a.at);
        all
    }
}

/// The hostile review's run: a promoted build crashed, and while the guard brought the previous
/// version back understudy restarted the crashed one too, telling users "running 1.1.0 is
/// restarting" (503) for seconds. Now it is not restarted, and users wait for the version
/// coming back instead of being refused.
#[test]
fn users_wait_for_the_guards_rollback_from_a_crash_and_the_crashed_build_is_not_restarted() {
    let base = Base::new("guard-crash");
    base.write_env("ROLLBACK_WINDOW=2m");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    // Passes as testing; as running it exits 1.5 s after it listens.
    base.drop_fixture_as_running("1.1.0", "--exit-after-ms 1500");
    base.wait_testing();
    let users = Users::start(u.addr);
    let (code, _, err) = cli(&base, &["promote"]);
    assert_eq!(code, 0, "{err}");
    rolled_back_to_1_0_0(&base);
    users_for_a_second();
    let answers = users.finish();
    // The crash itself: a request 1.1.0 had in hand as it died, on a connection it had not
    // served before (so not retried), is 502, as at any crash of running (none in three runs
    // since requests its closed port refused wait for the rollback). Nothing after it fails.
    let at_crash = |a: &Answer| a.status == 502 && a.body.contains("(1.1.0 at");
    let crash: Vec<&Answer> = answers.iter().filter(|a| at_crash(a)).collect();
    let failed: Vec<(u16, &str)> = answers
        .iter()
        .filter(|a| a.status != 200 && !at_crash(a))
        .map(|a| (a.status, a.body.as_str()))
        .collect();
    // Measured: the requests that waited for 1.0.0 (over 10 ms), and the longest wait.
    let waited = answers
        .iter()
        .filter(|a| a.took > Duration::from_millis(10))
        .count();
    let longest = answers.iter().map(|a| a.took).max().unwrap_or_default();
    eprintln!(
        "{} requests: {} failed, {} lost with 1.1.0 as it died; {waited} took over 10 ms, the longest {longest:?}",
        answers.len(),
        failed.len(),
        crash.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        answers.len()
    );
    if let (Some(first), Some(last)) = (crash.first(), crash.last()) {
        let span = last.at.saturating_duration_since(first.at);
        assert!(span < Duration::from_secs(1), "lost over {span:?}");
    }
    assert!(
        answers.iter().any(|a| a.body.contains("1.1.0")),
        "1.1.0 served before it crashed"
    );
    assert!(answers.last().is_some_and(|a| a.body.contains("1.0.0")));
    let log = u.log_text();
    assert!(log.contains("guard_tripped"), "{log}");
    assert!(
        !log.contains("restart_scheduled"),
        "the crashed build is not restarted: {log}"
    );
    wait_until("1.1.0 rejected", Duration::from_secs(15), || {
        base.path.join("rejected/app-1.1.0").exists().then_some(())
    });
    u.stop();
}

/// A promoted build on its way out closes its port and connections first, then exits a second
/// later (a JVM's shutdown hooks). Requests in that second found its port refusing and were
/// 502 "did not answer", POSTs as well as GETs. Nothing had reached it: now they wait for where
/// users go next, here the guard's rollback, and not one request fails.
#[test]
fn requests_refused_by_a_build_on_its_way_out_wait_for_the_guards_rollback() {
    let base = Base::new("guard-closing");
    base.write_env("ROLLBACK_WINDOW=2m");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    base.drop_fixture_as_running("1.1.0", "--exit-after-ms 1500 --close-before-exit-ms 1000");
    base.wait_testing();
    let users = Users::asking(u.addr, ["GET", "POST"]);
    let (code, _, err) = cli(&base, &["promote"]);
    assert_eq!(code, 0, "{err}");
    rolled_back_to_1_0_0(&base);
    users_for_a_second();
    let answers = users.finish();
    let failed: Vec<(u16, &str)> = answers
        .iter()
        .filter(|a| a.status != 200)
        .map(|a| (a.status, a.body.as_str()))
        .collect();
    // A POST written to a kept-alive connection at the very moment 1.1.0 closed it may have
    // been read, so it is not sent again (a 502 saying the connection closed): one per
    // connection at most. None is refused.
    let refused = failed.iter().filter(|(_, b)| b.contains("refused")).count();
    assert!(
        refused == 0 && failed.len() <= 2,
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        answers.len()
    );
    assert!(answers.iter().any(|a| a.body.contains("1.1.0")));
    assert!(answers.last().is_some_and(|a| a.body.contains("1.0.0")));
    // Requests did meet the closed port, and waited for the rollback.
    let (admin, _) = admin(&base);
    let scraped = crate::metrics::scrape(admin);
    let rerouted = crate::metrics::value(&scraped, "understudy_rerouted_total", &[]);
    assert!(rerouted.is_some_and(|n| n >= 1.0), "{rerouted:?}");
    u.stop();
}

/// Killed after the guard tripped and before its rollback switched (the hostile review's
/// `systemctl restart` at the wrong moment): the next start undid the rollback, so the build
/// the guard had thrown out served again and 1.0.0 was archived. Now the rollback is finished
/// at start: 1.0.0 serves without any request having to fail again, and 1.1.0 is rejected with
/// the guard's reason.
#[test]
fn a_guard_rollback_cut_short_by_a_kill_is_finished_at_the_next_start() {
    let base = Base::new("guard-killed");
    base.write_env("ROLLBACK_WINDOW=5m");
    let mut u = Understudy::start(&base);
    promote_a_build_failing_as_running(&base, &u);
    u.stop();
    // Watching on after the restart, it trips on 1.1.0's 500s; the rollback's switch is
    // journaled as ready, and understudy dies by SIGKILL right then.
    let mut u = Understudy::start_with_env(&base, &[("UNDERSTUDY_INJECT_CRASH", "before-switch")]);
    wait_until(
        "the kill before the rollback's switch",
        Duration::from_secs(30),
        || {
            let _ = http(u.addr, "GET", "/");
            u.log_text().contains("dying by SIGKILL").then_some(())
        },
    );
    assert_eq!(
        u.wait_exit(Duration::from_secs(10)),
        None,
        "killed by a signal"
    );
    assert!(u.log_text().contains("guard_tripped"), "{}", u.log_text());
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(base.path.join(".understudy/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["txn"]["kind"], "rollback", "{state}");
    assert_eq!(state["txn"]["step"], "ready", "{state}");
    assert_eq!(state["running"], "1.1.0", "{state}");
    // No request is sent until 1.0.0 is back: the rollback must not wait for 1.1.0 to fail again.
    let mut u = Understudy::start(&base);
    wait_until("1.0.0 running again", Duration::from_secs(20), || {
        (base.version_of("running").as_deref() == Some("app-1.0.0")).then_some(())
    });
    wait_until("1.0.0 answering", Duration::from_secs(10), || {
        let (code, body) = u.get("/");
        (code == 200 && body.contains("1.0.0")).then_some(())
    });
    let reason = wait_until("1.1.0 rejected", Duration::from_secs(15), || {
        std::fs::read_to_string(base.path.join("rejected/app-1.1.0/reason.json")).ok()
    });
    assert!(
        reason.contains("rolled back by the guard") && reason.contains("5xx rate"),
        "{reason}"
    );
    let log = u.log_text();
    assert!(!log.contains("switch_undone"), "{log}");
    assert!(!base.path.join("archive/app-1.0.0.zip").exists());
    u.stop();
}

/// A rollback slower than `UPSTREAM_TIMEOUT`: a request held for it is answered 503 after that
/// long, saying the version is being brought back (not that it "is restarting"), and the
/// version serves once it is up.
#[test]
fn a_request_held_past_upstream_timeout_is_told_the_rollback_is_not_done() {
    let base = Base::new("guard-slow-back");
    base.write_env("ROLLBACK_WINDOW=2m\nUPSTREAM_TIMEOUT=1s");
    let mut u = Understudy::start(&base);
    // Beside the base dir (inside it, it would be taken for a drop): once there, 1.0.0 takes
    // 4 s to start.
    let slow = base.path.with_extension("slow-start");
    let slow_text = slow.display();
    base.drop_script(
        "1.0.0",
        &format!(
            "#!/bin/sh\nif [ -e '{slow_text}' ]; then sleep 4; fi\nexec '{BIN}' fixture-app --version 1.0.0\n"
        ),
    );
    u.wait_serving();
    std::fs::write(&slow, "").unwrap();
    base.drop_fixture_as_running("1.1.0", "--exit-after-ms 1500");
    base.wait_testing();
    let (code, _, err) = cli(&base, &["promote"]);
    assert_eq!(code, 0, "{err}");
    wait_until("the guard to trip", Duration::from_secs(30), || {
        u.log_text().contains("guard_tripped").then_some(())
    });
    let asked = std::time::Instant::now();
    let (status, body) = http(u.addr, "GET", "/").unwrap();
    let waited = asked.elapsed();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("1.0.0 is being brought back by a rollback"),
        "{body}"
    );
    assert!(waited >= Duration::from_millis(900), "held {waited:?}");
    wait_until("1.0.0 to serve", Duration::from_secs(30), || {
        let (status, body) = u.get("/");
        (status == 200 && body.contains("1.0.0")).then_some(())
    });
    let _ = std::fs::remove_file(&slow);
    u.stop();
}

/// Stopped while an operator's promotion starts (slowly) and a newer build waits behind it: at
/// the next start the promotion is undone, the promoted build goes back to testing and the newer
/// one replaces it as a newer drop would, and the log says so (it said only `archived`).
#[test]
fn a_promotion_undone_at_start_gives_way_to_the_newer_build_waiting_saying_so() {
    let base = Base::new("undone-pending");
    base.write_env("STABLE_WINDOW=10m\nMIN_MIRRORED=1000\nROLLBACK_WINDOW=0\nREADY_TIMEOUT=60s");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    // Quick as testing; started as running it takes longer than this test waits.
    base.drop_script(
        "1.1.0",
        &format!(
            "#!/bin/sh\n[ \"$UNDERSTUDY_ROLE\" = running ] && sleep 50\nexec '{BIN}' fixture-app --version 1.1.0\n"
        ),
    );
    base.wait_testing();
    let (code, out, err) = cli(&base, &["promote"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("promoting 1.1.0"), "{out}");
    base.drop_fixture("1.2.0", "");
    let (addr, token) = admin(&base);
    wait_until("1.2.0 to wait as pending", Duration::from_secs(20), || {
        let (_, s) = api(addr, "GET", "/api/status", Some(&token), "");
        (s["pending"] == "1.2.0").then_some(())
    });
    u.stop();
    let mut u = Understudy::start(&base);
    wait_until("1.2.0 under test", Duration::from_secs(20), || {
        (base.version_of("testing").as_deref() == Some("app-1.2.0")).then_some(())
    });
    assert_eq!(base.version_of("running").as_deref(), Some("app-1.0.0"));
    let log = u.log_text();
    assert!(
        log.lines().any(|l| l.contains("build_recovered")
            && l.contains("1.1.0")
            && l.contains("went back to testing")),
        "{log}"
    );
    u.stop();
}
