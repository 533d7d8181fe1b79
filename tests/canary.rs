//! The canary phase (`CANARY_STEPS`): after the shadow verdict, a growing share of real users is
//! served by the build under test, writes included, sticky per user; judged on real answers,
//! rolled back at the first regression, promoted after the last step. Real binary, real fixture
//! children, real users on loopback.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// The issue's settings: two steps of 8 s, users told apart by `X-User`.
const CANARY: &str = "STABLE_WINDOW=3s\nMIN_MIRRORED=40\nEVALUATE_EVERY=250ms\nROLLBACK_WINDOW=0\nCANARY_STEPS=20%,50%\nCANARY_STEP_WINDOW=8s\nCANARY_STICKY=header:X-User";

/// Users in the tests.
const USERS: usize = 200;

/// What one user was answered: (when, method, status, version), in order.
type Seen = Vec<(Instant, &'static str, u16, String)>;

/// 200 users, each sending `POST /api/orders` and `GET /hello` in turn with its `X-User`, from
/// four threads, until dropped.
struct Users {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    seen: Arc<Mutex<BTreeMap<usize, Seen>>>,
    failed: Arc<AtomicU64>,
}

impl Users {
    fn start(addr: SocketAddr) -> Users {
        Users::start_mixed(addr, USERS / 4, 2)
    }

    /// As [`Users::start`], each thread sending `block` requests of one kind in turn, a block of
    /// POSTs in every `every` (the rest GETs): `(1, 4)` makes a quarter of the requests writes,
    /// spread over time.
    fn start_mixed(addr: SocketAddr, block: usize, every: usize) -> Users {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let failed = Arc::new(AtomicU64::new(0));
        let threads = (0..4)
            .map(|t| {
                let (stop, seen, failed) = (stop.clone(), seen.clone(), failed.clone());
                std::thread::spawn(move || {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let user = t + 4 * (n % (USERS / 4));
                        let (method, path) = if (n / block).is_multiple_of(every) {
                            ("POST", "/api/orders")
                        } else {
                            ("GET", "/hello")
                        };
                        let name = format!("u{user}");
                        let answer =
                            http_request(addr, method, path, &[("X-User", &name)], "item=1");
                        let (status, body) = answer.unwrap_or_default();
                        if !(200..300).contains(&status) {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        let version = body.split_whitespace().nth(2).unwrap_or("?").to_string();
                        seen.lock()
                            .unwrap()
                            .entry(user)
                            .or_insert_with(Vec::new)
                            .push((Instant::now(), method, status, version));
                        n += 1;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                })
            })
            .collect();
        Users {
            stop,
            threads,
            seen,
            failed,
        }
    }

    /// Users answered by `version` at least once so far.
    fn met(&self, version: &str) -> usize {
        let seen = self.seen.lock().unwrap();
        seen.values()
            .filter(|s| s.iter().any(|(_, _, _, v)| v == version))
            .count()
    }

    fn stop(mut self) -> (BTreeMap<usize, Seen>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
        let seen = std::mem::take(&mut *self.seen.lock().unwrap());
        (seen, self.failed.load(Ordering::Relaxed))
    }
}

/// The canary in `/api/status`: (weight in percent, step), if a step is under way.
fn canary(addr: SocketAddr) -> Option<(f64, u64)> {
    let (_, s) = api(addr, "GET", "/api/status", None, "");
    let c = &s["canary"];
    Some((c["weight"].as_f64()?, c["step"].as_u64()?))
}

/// 1.0.0 serving the 200 users under [`CANARY`], then `version` (with fixture `flags`) dropped;
/// returns the base, understudy, its admin address and the users.
fn canary_run(name: &str, version: &str, flags: &str) -> (Base, Understudy, SocketAddr, Users) {
    let base = Base::new(name);
    base.write_env(CANARY);
    let u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    let (addr, _) = admin(&base);
    let users = Users::start(u.addr);
    base.drop_fixture(version, flags);
    (base, u, addr, users)
}

/// A fleet asking for the verdict during step 1 waits for the steps: the shadow's promote is not
/// the build's, its writes untested on users (it said promote, and the gate let it through).
fn a_fleet_waits_for_the_steps(addr: SocketAddr) {
    let (_, v) = api(addr, "GET", "/api/verdict", None, "");
    let why = v["reasons"][0].as_str().unwrap_or_default();
    assert!(
        v["verdict"] == "wait" && why.contains("CANARY_STEPS"),
        "{v}"
    );
    let (code, gate) = api(addr, "POST", "/api/gate", None, "");
    assert!(
        code == 403
            && gate["message"]
                .as_str()
                .unwrap_or_default()
                .contains("step 1 of 2"),
        "{code} {gate}"
    );
}

#[test]
fn a_healthy_build_serves_a_fifth_then_half_of_the_users_writes_included_then_is_promoted() {
    let (base, mut u, addr, users) = canary_run("canary-ok", "1.1.0", "");
    wait_until("step 1 at 20 %", Duration::from_secs(60), || {
        canary(addr).filter(|c| *c == (20.0, 1))
    });
    a_fleet_waits_for_the_steps(addr);
    wait_until("step 2 at 50 %", Duration::from_secs(60), || {
        canary(addr).filter(|c| *c == (50.0, 2))
    });
    // Users met by 1.1.0 in step 1: about a fifth.
    let in_step_1 = users.met("1.1.0");
    // Its answers to them are counted as testing's, apart from its answers to copies.
    let m = crate::metrics::scrape(addr);
    let weight = crate::metrics::value(&m, "understudy_canary_weight", &[]);
    assert_eq!(weight, Some(50.0), "the share in /metrics");
    assert!(crate::metrics::responses(&m, "testing", "canary") > 0.0);
    // Who answers users now, as the history says it.
    let (_, h) = api(addr, "GET", "/api/history", None, "");
    assert_eq!(
        (&h["serving"], &h["canary"]),
        (
            &json!("1.0.0"),
            &json!({"version": "1.1.0", "percent": 50.0})
        ),
        "{h}"
    );
    wait_until("the steps to end", Duration::from_secs(60), || {
        canary(addr).is_none().then_some(())
    });
    let in_step_2 = users.met("1.1.0");
    wait_until("1.1.0 to be promoted", Duration::from_secs(60), || {
        (base.version_of("running").as_deref() == Some("app-1.1.0")).then_some(())
    });
    let promoted_at = Instant::now();
    // A few more answers after the switch, then the users stop.
    wait_until("answers after the switch", Duration::from_secs(10), || {
        (promoted_at.elapsed() > Duration::from_millis(500)).then_some(())
    });
    let (seen, failed) = users.stop();
    eprintln!(
        "met 1.1.0: {in_step_1} users in step 1, {in_step_2} by the end of step 2 of {USERS}"
    );
    assert_eq!(failed, 0, "no user request failed");
    assert!(
        (20..=70).contains(&in_step_1),
        "about a fifth of {USERS} users met 1.1.0 in step 1: {in_step_1}"
    );
    assert!(
        (70..=135).contains(&in_step_2) && in_step_2 > in_step_1,
        "about half of {USERS} users met 1.1.0 by step 2: {in_step_2}"
    );
    users_stayed_on_1_1_0_and_wrote_to_it(&seen, promoted_at);
    let history =
        std::fs::read_to_string(base.path.join(".understudy/history.jsonl")).unwrap_or_default();
    assert!(
        history
            .lines()
            .last()
            .is_some_and(|l| l.contains("\"canary\"")),
        "the switch is recorded with why: canary: {history}"
    );
    for percent in ["20.0", "50.0"] {
        let share = format!("\"share\":{{\"version\":\"1.1.0\",\"percent\":{percent}}}");
        assert!(history.contains(&share), "{share} in {history}");
    }
    u.stop();
}

/// Sticky: a user moved to 1.1.0 never went back to 1.0.0; and real writes reached 1.1.0 before
/// its promotion at `promoted_at`.
fn users_stayed_on_1_1_0_and_wrote_to_it(seen: &BTreeMap<usize, Seen>, promoted_at: Instant) {
    for (user, s) in seen {
        let first = s.iter().position(|(_, _, _, v)| v == "1.1.0");
        if let Some(first) = first {
            assert!(
                s[first..].iter().all(|(_, _, _, v)| v == "1.1.0"),
                "user {user} went back to 1.0.0 after 1.1.0: {:?}",
                s.iter().map(|x| &x.3).collect::<Vec<_>>()
            );
        }
    }
    // Real writes reached 1.1.0 before its promotion.
    let writes = seen
        .values()
        .flatten()
        .filter(|(at, m, _, v)| *m == "POST" && v == "1.1.0" && *at < promoted_at)
        .count();
    assert!(
        writes > 20,
        "POSTs served by 1.1.0 during the canary: {writes}"
    );
}

#[test]
fn a_build_failing_a_write_only_is_rolled_back_in_step_1_naming_the_endpoint_and_the_step() {
    // 1.2.0 answers 500 to /api/orders, which only POSTs reach: the shadow (GETs) passes.
    let (base, mut u, _, users) = canary_run("canary-bad", "1.2.0", "--fail-path /api/orders");
    let reason = wait_until("1.2.0 to be rejected", Duration::from_secs(90), || {
        std::fs::read_to_string(base.path.join("rejected/app-1.2.0/reason.json")).ok()
    });
    let rejected_at = Instant::now();
    wait_until(
        "answers after the rollback",
        Duration::from_secs(10),
        || (rejected_at.elapsed() > Duration::from_secs(1)).then_some(()),
    );
    let (seen, _) = users.stop();
    assert!(
        reason.contains("canary at 20 %"),
        "the step is named: {reason}"
    );
    assert!(
        reason.contains("POST /api/orders 5xx"),
        "the endpoint is named: {reason}"
    );
    assert_eq!(base.version_of("running").as_deref(), Some("app-1.0.0"));
    // Afterwards every user is on running (allowing for requests already in flight).
    let settled = rejected_at + Duration::from_millis(300);
    let late: Vec<_> = seen
        .values()
        .flatten()
        .filter(|(at, _, _, v)| *at > settled && v != "1.0.0")
        .collect();
    assert!(
        late.is_empty(),
        "answered by another version after the rollback: {late:?}"
    );
    // The users who met it are no more than the step's share.
    // Met it: answered by 1.2.0, or answered its 500 (running never answers one).
    let met = seen
        .values()
        .filter(|s| s.iter().any(|(_, _, st, v)| v == "1.2.0" || *st == 500))
        .count();
    eprintln!("{met} of {USERS} users met 1.2.0: {reason}");
    assert!(
        met <= 70,
        "at most about a fifth of the users met 1.2.0: {met}"
    );
    let counted: usize = regex_lite::Regex::new(r"about (\d+) users came from it")
        .unwrap()
        .captures(&reason)
        .and_then(|c| c[1].parse().ok())
        .expect("the users who met it are counted");
    assert!(counted <= met, "counted {counted}, met {met}: {reason}");
    u.stop();
}

#[test]
fn after_kill_9_in_step_2_the_step_resumes_with_each_user_on_its_side() {
    let (base, mut u, addr, users) = canary_run("canary-kill", "1.1.0", "");
    wait_until("step 2 at 50 %", Duration::from_secs(60), || {
        canary(addr).filter(|c| *c == (50.0, 2))
    });
    // Every user answered at least twice in step 2: its side is its last answer's version.
    let in_step_2 = Instant::now();
    wait_until(
        "two answers for each user in step 2",
        Duration::from_secs(30),
        || {
            let seen = users.seen.lock().unwrap();
            let each = seen.len() == USERS
                && seen
                    .values()
                    .all(|s| s.iter().filter(|x| x.0 > in_step_2).count() >= 2);
            each.then_some(())
        },
    );
    let (before, _) = users.stop();
    let side = |s: &Seen| s.last().map(|x| x.3.clone()).unwrap_or_default();
    u.kill_hard();
    let mut u = Understudy::start(&base);
    let (addr, _) = admin(&base);
    wait_until("step 2 resumed", Duration::from_secs(60), || {
        let c = canary(addr);
        assert_ne!(
            c,
            Some((20.0, 1)),
            "the canary started over instead of resuming"
        );
        c.filter(|c| *c == (50.0, 2))
    });
    let resumed = Instant::now();
    let users = Users::start(u.addr);
    wait_until(
        "two answers for each user after the resume",
        Duration::from_secs(30),
        || {
            let seen = users.seen.lock().unwrap();
            let each = seen.len() == USERS && seen.values().all(|s| s.len() >= 2);
            each.then_some(())
        },
    );
    let still = canary(addr);
    let (after, failed) = users.stop();
    assert_eq!(still, Some((50.0, 2)), "still in step 2 while compared");
    let mut on_testing = 0;
    for (user, s) in &after {
        let was = side(&before[user]);
        on_testing += usize::from(was == "1.1.0");
        let now: Vec<_> = s.iter().filter(|x| x.0 > resumed).map(|x| &x.3).collect();
        assert!(
            now.iter().all(|v| **v == was),
            "user {user} was on {was} before the kill, now {now:?}"
        );
    }
    eprintln!("{on_testing} of {USERS} users on 1.1.0 before and after the kill; {failed} failed");
    assert!((70..=135).contains(&on_testing), "about half: {on_testing}");
    assert_eq!(failed, 0, "no user request failed after the resume");
    u.stop();
}

/// Behind a front proxy every user has its address; here every user is on loopback with
/// `CANARY_STICKY=ip`, one place (637) under 10 %: all land on testing and running answers
/// nothing to compare with. A build failing every POST is still rolled back, judged against
/// running's rate; a healthy one holds, since the step is no share of users, its users back on
/// running (the step served all of them), and the reason says why and which key to use.
#[test]
fn users_behind_one_address_roll_back_a_failing_build_and_hold_a_healthy_one_naming_the_key() {
    let base = Base::new("canary-one-address");
    base.write_env("STABLE_WINDOW=3s\nMIN_MIRRORED=40\nEVALUATE_EVERY=250ms\nROLLBACK_WINDOW=0\nCANARY_STEPS=10%\nCANARY_STEP_WINDOW=2s");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    let (addr, _) = admin(&base);
    let users = Users::start(u.addr);
    base.drop_fixture("1.2.0", "--fail-path /api/orders");
    let reason = wait_until("1.2.0 rolled back", Duration::from_secs(60), || {
        std::fs::read_to_string(base.path.join("rejected/app-1.2.0/reason.json")).ok()
    });
    assert!(
        reason.contains("POST /api/orders 5xx 100.0 %")
            && reason.contains("running answered too few times to compare"),
        "{reason}"
    );
    base.drop_fixture("1.3.0", "");
    let c = wait_until("the step to hold", Duration::from_secs(60), || {
        let (_, s) = api(addr, "GET", "/api/status", None, "");
        (s["canary"]["held"] == true).then(|| s["canary"].clone())
    });
    // Held, its users are back on running: the "10 %" step served every one of them.
    let m = crate::metrics::scrape(addr);
    assert_eq!(
        crate::metrics::value(&m, "understudy_canary_weight", &[]),
        Some(0.0),
        "{c}"
    );
    wait_until("users answered by running", Duration::from_secs(20), || {
        let (_, body) = u.get("/page/after-hold");
        body.contains("1.0.0").then_some(())
    });
    users.stop();
    let why = c["waiting"].as_str().unwrap_or_default();
    assert!(
        why.contains("running served none of the step's answers")
            && why.contains("users all land on one side")
            && why.contains("CANARY_STICKY=header:X-Real-IP"),
        "{c}"
    );
    assert_eq!(base.version_of("running").as_deref(), Some("app-1.0.0"));
    u.stop();
}

/// A build whose writes take 100 ms more while its reads are as fast as running's: writes are a
/// quarter of the users' requests and never mirrored, so the shadow verdict passes and, in the
/// step, the pooled latency judgement cannot tell (most of testing's answers are fast reads). The
/// endpoint judged alone can: the build is rolled back during the canary, the endpoint named.
#[test]
fn a_build_slow_on_a_write_that_is_a_minority_of_requests_is_rolled_back_naming_it() {
    let base = Base::new("canary-slow-write");
    base.write_env(CANARY);
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    let (addr, _) = admin(&base);
    let users = Users::start_mixed(u.addr, 1, 4);
    base.drop_fixture("1.2.0", "--slow-path /api/orders --slow-ms 100");
    wait_until("step 1 at 20 %", Duration::from_secs(60), || {
        canary(addr).filter(|c| c.1 == 1)
    });
    let reason = wait_until("1.2.0 to be rejected", Duration::from_secs(90), || {
        std::fs::read_to_string(base.path.join("rejected/app-1.2.0/reason.json")).ok()
    });
    let (_, failed) = users.stop();
    eprintln!("{reason}");
    assert!(
        reason.contains("canary at ") && reason.contains("latency on POST /api/orders: p95 "),
        "rejected in a canary step, the endpoint named: {reason}"
    );
    assert_eq!(failed, 0, "no user request failed");
    assert_eq!(base.version_of("running").as_deref(), Some("app-1.0.0"));
    u.stop();
}
