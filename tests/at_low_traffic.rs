//! Low traffic (issue 23 part 3): with a request every 2 s, `MIN_MIRRORED` is out of reach within
//! `STABLE_WINDOW`; recorded requests replayed to testing and the secondary give the judge its
//! evidence. Real binary, real fixture children on loopback.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::{histogram_count, responses, scrape, value};
use crate::support::*;

/// The settings: 60 pairs needed, a 15 s window.
const LOW: &str = "STABLE_WINDOW=15s\nMIN_MIRRORED=60\nEVALUATE_EVERY=500ms\nROLLBACK_WINDOW=0";

/// The six paths users ask, one request every 2 s.
const PATHS: [&str; 6] = [
    "/shop/books",
    "/shop/toys",
    "/shop/games",
    "/shop/music",
    "/shop/films",
    "/shop/tools",
];

/// Live traffic from a thread of its own until dropped: a GET to `path(i)` for i = 0, 1, … one
/// every `every`.
struct Traffic {
    stop: Arc<AtomicBool>,
    sent: Arc<std::sync::atomic::AtomicU64>,
    client: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(
        addr: std::net::SocketAddr,
        every: Duration,
        path: impl Fn(u64) -> String + Send + 'static,
    ) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (s, n) = (stop.clone(), sent.clone());
        let client = std::thread::spawn(move || {
            let mut i = 0u64;
            let mut next = Instant::now();
            while !s.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    let _ = http(addr, "GET", &path(i));
                    n.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                    next += every;
                }
                // The pace of the traffic itself, not a wait for understudy.
                std::thread::sleep(every.min(Duration::from_millis(50)));
            }
        });
        Traffic {
            stop,
            sent,
            client: Some(client),
        }
    }

    /// One GET every 2 s, round the six paths, each with a query of its own
    /// (`/shop/books?n=17`), so every request is a distinct recorded one.
    fn trickle(addr: std::net::SocketAddr) -> Traffic {
        Traffic::start(addr, Duration::from_secs(2), |i| {
            format!("{}?n={}", PATHS[i as usize % PATHS.len()], 17 + i)
        })
    }

    /// `/shop/books?n=…` about every millisecond, each on a new connection: a busy service, on
    /// which the one request recorded per 50 ms is nearly always one of these.
    fn busy(addr: std::net::SocketAddr) -> Traffic {
        Traffic::start(addr, Duration::from_millis(1), |i| {
            format!("/shop/books?n={i}")
        })
    }

    /// Wait until `n` requests went out (so that many are recorded).
    fn wait_sent(&self, n: u64) {
        wait_until("live requests sent", Duration::from_secs(120), || {
            (self.sent.load(Ordering::Relaxed) >= n).then_some(())
        });
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(c) = self.client.take() {
            let _ = c.join();
        }
    }
}

/// v1 serving with the trickle running for `recorded` requests, then v2 with `v2_flags` dropped;
/// returns when v2 was dropped.
fn low_traffic(
    name: &str,
    env: &str,
    v2_flags: &str,
    recorded: u64,
) -> (Base, Understudy, Traffic, Instant) {
    let base = Base::new(name);
    base.write_env(&format!("{LOW}\n{env}"));
    let u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    let trickle = Traffic::trickle(u.addr);
    trickle.wait_sent(recorded);
    base.drop_fixture("1.1.0", v2_flags);
    (base, u, trickle, Instant::now())
}

/// The verdict in `/api/status`, once v1.1.0 is scored.
fn verdict(base: &Base) -> Option<serde_json::Value> {
    let (addr, _) = admin(base);
    let (_, s) = api(addr, "GET", "/api/status", None, "");
    let v = s["verdict"].clone();
    (v["version"] == "1.1.0").then_some(v)
}

/// A healthy build is promoted within a minute on replayed evidence, while the same build with
/// `REPLAY=off` (started alongside, same trickle) is still tested, waiting for traffic.
#[test]
fn low_traffic_is_replayed_and_a_healthy_build_promoted_within_a_minute() {
    let off = std::thread::spawn(|| low_traffic("replay-off", "REPLAY=off", "", 12));
    let (base, mut u, trickle, dropped) = low_traffic("replay-ok", "REPLAY=auto", "", 12);
    let (off_base, mut off_u, off_trickle, _) = off.join().unwrap();
    let (mut last, mut fleet) = (None, None);
    let (addr, _) = admin(&base);
    wait_until("1.1.0 to be promoted", Duration::from_secs(60), || {
        if let Some(v) = verdict(&base) {
            last = Some(v);
            // What a fleet tool reads: the verdict with what it rests on.
            let (_, f) = api(addr, "GET", "/api/verdict", None, "");
            if f["version"] == "1.1.0" {
                fleet = Some(f);
            }
        }
        (base.version_of("running").as_deref() == Some("app-1.1.0")).then_some(())
    });
    let took = dropped.elapsed();
    assert!(took < Duration::from_secs(60), "promoted after {took:?}");
    // What the evidence rested on is said: live and replayed pairs, and their source.
    let log = u.log_text();
    let said = log
        .lines()
        .filter(|l| l.contains("replayed from") && l.contains("recorded requests"))
        .count();
    assert!(said > 0, "the score line says what it rests on: {last:?}");
    let v = last.expect("1.1.0 was scored");
    eprintln!(
        "promoted {took:?} after the drop on {}",
        v["evidence"]["text"]
    );
    assert!(v["evidence"]["replayed"].as_u64().unwrap() > 0, "{v}");
    assert!(v["evidence"]["live"].as_u64().is_some(), "{v}");
    let f = fleet.expect("/api/verdict answered about 1.1.0");
    let text = f["evidence"]["text"].as_str().unwrap_or_default();
    assert!(text.contains("replayed from"), "{f}");
    // The build tested without replay still waits for traffic after that time.
    assert_eq!(off_base.version_of("testing").as_deref(), Some("app-1.1.0"));
    assert_ne!(off_base.version_of("running").as_deref(), Some("app-1.1.0"));
    let w = verdict(&off_base).expect("the REPLAY=off build is scored");
    assert_eq!(w["verdict"], "wait", "{w}");
    assert!(
        w["reasons"][0]
            .as_str()
            .unwrap()
            .contains("too little traffic"),
        "{w}"
    );
    assert_eq!(w["evidence"]["replayed"], 0, "{w}");
    replayed_answers_have_their_own_series(addr);
    drop((trickle, off_trickle));
    u.stop();
    off_u.stop();
}

/// `/metrics` after replays: testing's answers to them are under `source="replay"`, at most one
/// per replay counted in `understudy_replayed_total`; its answers to live copies stay under
/// `source="live"`, at most one per mirrored copy (replays mixed in would exceed it).
fn replayed_answers_have_their_own_series(admin: std::net::SocketAddr) {
    let s = scrape(admin);
    let replay = responses(&s, "testing", "replay");
    let replayed = value(&s, "understudy_replayed_total", &[]).unwrap();
    let live = responses(&s, "testing", "live");
    let mirrored = value(&s, "understudy_mirrored_total", &[]).unwrap();
    eprintln!(
        "testing answered {replay} of {replayed} replays and {live} of {mirrored} live copies"
    );
    assert!(replay > 0.0 && replay <= replayed, "{replay} of {replayed}");
    assert!(live >= 1.0 && live <= mirrored, "{live} of {mirrored}");
    let labels = [("role", "testing"), ("source", "replay")];
    let timed = histogram_count(&s, "understudy_request_duration_seconds", &labels).unwrap();
    let unanswered = [("role", "testing"), ("source", "replay"), ("class", "none")];
    let unanswered = value(&s, "understudy_responses_total", &unanswered).unwrap();
    assert_eq!(timed, replay - unanswered, "each answered replay is timed");
    let labels = [("role", "running"), ("source", "replay"), ("class", "2xx")];
    assert_eq!(value(&s, "understudy_responses_total", &labels), None);
}

/// `understudy_replay_recorded` as `/metrics` at `admin` shows it.
fn recorded(admin: std::net::SocketAddr) -> f64 {
    value(&scrape(admin), "understudy_replay_recorded", &[]).expect("the gauge is shown")
}

/// `REPLAY_KEEP` changes on a reload, no restart: a smaller value leaves that many recorded
/// requests (not none), and recording goes on within the new bound; a larger one lets more in.
#[test]
fn a_reloaded_replay_keep_resizes_the_recorder() {
    let base = Base::new("replay-keep");
    let env = |keep: u32| format!("REPLAY=auto\nREPLAY_KEEP={keep}");
    base.write_env(&env(8));
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    let (admin, _) = admin(&base);
    let mut n = 0;
    record_until(&u, admin, &mut n, 8.0);

    base.write_env(&env(3));
    unsafe { libc::kill(u.pid() as i32, libc::SIGHUP) };
    wait_until("3 requests kept", Duration::from_secs(10), || {
        (recorded(admin) == 3.0).then_some(())
    });
    wait_until("the reload logged", Duration::from_secs(10), || {
        u.log_text().contains("applied REPLAY_KEEP").then_some(())
    });
    let log = u.log_text();
    assert!(!log.contains("REPLAY_KEEP changed but"), "{log}");
    // Distinct requests for half a second (about ten of them recorded): still three.
    let (from, sent) = (Instant::now(), n);
    while from.elapsed() < Duration::from_millis(500) || n < sent + 10 {
        n += 1;
        assert_eq!(u.get(&format!("/keep?n={n}")).0, 200);
    }
    assert_eq!(recorded(admin), 3.0, "bounded by the new REPLAY_KEEP");

    base.write_env(&env(6));
    unsafe { libc::kill(u.pid() as i32, libc::SIGHUP) };
    record_until(&u, admin, &mut n, 6.0);
    u.stop();
}

/// A build that doubles the prices of one path is rejected on replayed evidence, naming it.
#[test]
fn low_traffic_replay_rejects_a_wrong_price_on_one_path_naming_it() {
    let (base, mut u, trickle, _) = low_traffic(
        "replay-price",
        "REPLAY=auto",
        "--double-price-path /shop/games",
        12,
    );
    let path = base.path.join("rejected/app-1.1.0/reason.json");
    let r = wait_until("1.1.0 to be rejected", Duration::from_secs(60), || {
        std::fs::read_to_string(&path).ok()
    });
    drop(trickle);
    eprintln!("{r}");
    assert!(r.contains("GET /shop/games"), "the endpoint is named: {r}");
    assert!(r.contains("$.items[*].price"), "the path is named: {r}");
    assert!(!r.contains("GET /shop/books"), "only that endpoint: {r}");
    assert_eq!(base.version_of("running").unwrap(), "app-1.0.0");
    u.stop();
}

/// v1 serving, v1.1.0 testing without `/shop/rare` (404), with `replay` (`REPLAY=auto` or
/// `off`); then users ask `/shop/rare` once and `/shop/books` 20 times, twice `MIN_MIRRORED`.
/// Returns when they did.
fn rare_endpoint_lost(name: &str, replay: &str) -> (Base, Understudy) {
    rare_endpoint_changed(name, replay, "--not-found /shop/rare")
}

/// As [`rare_endpoint_lost`], v1.1.0 with `v2_flags`.
fn rare_endpoint_changed(name: &str, replay: &str, v2_flags: &str) -> (Base, Understudy) {
    let base = Base::new(name);
    base.write_env(&format!(
        "STABLE_WINDOW=2s\nMIN_MIRRORED=10\nEVALUATE_EVERY=100ms\nROLLBACK_WINDOW=0\nREPLAY={replay}\nREPLAY_RATE=50"
    ));
    let u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    base.drop_fixture("1.1.0", v2_flags);
    base.wait_testing();
    wait_until("the secondary to serve", Duration::from_secs(10), || {
        base.fixture_stats("secondary")
    });
    let (admin, _) = admin(&base);
    if replay == "off" {
        // Copies go to testing only once the proxy routes it (a moment after its symlink): the
        // one rare request must be copied, or no pair ever says it is gone (seen once under load).
        let mut n = 0;
        wait_until("copies to reach testing", Duration::from_secs(10), || {
            n += 1;
            assert_eq!(u.get(&format!("/shop/books?warm={n}")).0, 200);
            let (_, s) = api(admin, "GET", "/api/status", None, "");
            (s["counters"]["mirrored"].as_u64() > Some(0)).then_some(())
        });
    }
    let before = recorded(admin);
    // The first request through the proxy for seconds: due, so recorded (at most one per 50 ms).
    assert_eq!(u.get("/shop/rare?id=1").0, 200, "running still has it");
    if replay == "auto" {
        wait_until(
            "the rare request to be recorded",
            Duration::from_secs(10),
            || (recorded(admin) > before).then_some(()),
        );
    }
    for n in 0..20 {
        assert_eq!(u.get(&format!("/shop/books?n={n}")).0, 200);
    }
    (base, u)
}

/// A build that lost an endpoint users ask rarely (one URL, asked once) while other endpoints
/// bring `MIN_MIRRORED` live pairs at once: the verdict waits on that endpoint's pairs
/// (`MIN_ENDPOINT_PAIRS`, 5), replay supplies them from the one recorded request, and the build
/// is rejected naming the endpoint within seconds, not left waiting for ever.
#[test]
fn a_rarely_asked_endpoint_gone_on_testing_is_replayed_until_the_build_is_rejected() {
    let (base, mut u) = rare_endpoint_lost("replay-rare", "auto");
    let asked = Instant::now();
    let path = base.path.join("rejected/app-1.1.0/reason.json");
    let r = wait_until("1.1.0 to be rejected", Duration::from_secs(30), || {
        std::fs::read_to_string(&path).ok()
    });
    eprintln!("rejected {:?} after the traffic: {r}", asked.elapsed());
    assert!(
        r.contains("GET /shop/rare answers 404/405/501 on testing"),
        "named: {r}"
    );
    assert!(!r.contains("GET /shop/books"), "only that endpoint: {r}");
    assert_eq!(base.version_of("running").unwrap(), "app-1.0.0");
    u.stop();
}

/// A build 100 ms slower on an endpoint users ask rarely (one URL, asked once) while other
/// endpoints bring `MIN_MIRRORED` live pairs at once: one copy of it is too few to judge it alone
/// and the pooled p95 hides it (it was promoted). Now the verdict waits on its copies, replay
/// brings them from the one recorded request, and the build is rejected naming the endpoint.
#[test]
fn a_rarely_asked_endpoint_slow_on_testing_is_replayed_until_the_build_is_rejected() {
    let (base, mut u) = rare_endpoint_changed(
        "replay-rare-slow",
        "auto",
        "--slow-path /shop/rare --slow-ms 100",
    );
    let asked = Instant::now();
    let path = base.path.join("rejected/app-1.1.0/reason.json");
    let r = wait_until("1.1.0 to be rejected", Duration::from_secs(40), || {
        assert_ne!(
            base.version_of("running").as_deref(),
            Some("app-1.1.0"),
            "promoted with its slow endpoint unjudged"
        );
        std::fs::read_to_string(&path).ok()
    });
    eprintln!("rejected {:?} after the traffic: {r}", asked.elapsed());
    // Judged alone, or pooled once its replayed copies outnumber the rest ("slowest: …").
    assert!(
        r.contains("latency: ") && r.contains("GET /shop/rare"),
        "rejected on latency, naming it: {r}"
    );
    assert!(!r.contains("GET /shop/books"), "only that endpoint: {r}");
    let log = u.log_text();
    assert!(
        log.contains("latency on GET /shop/rare: testing p95 ")
            && log.contains("too few to judge alone"),
        "the wait said why: {log}"
    );
    assert_eq!(base.version_of("running").unwrap(), "app-1.0.0");
    u.stop();
}

/// The same build with `REPLAY=off` keeps waiting on that endpoint's pairs, and the waiting
/// reason says what the operator can do.
#[test]
fn without_replay_a_wait_on_a_rare_endpoint_says_what_the_operator_can_do() {
    let (base, mut u) = rare_endpoint_lost("replay-rare-off", "off");
    let hint = "REPLAY is off: `understudy abort` rejects the build, `understudy promote` promotes it, or a lower MIN_ENDPOINT_PAIRS judges it";
    // Under load a sampled copy may go uncompared, and "too few answers compared" then comes
    // first: a little more traffic on the common endpoint brings that count up (seen once).
    let mut more = 0;
    let v = wait_for(
        "the verdict to wait on GET /shop/rare",
        Duration::from_secs(20),
        || {
            more += 1;
            assert_eq!(u.get(&format!("/shop/books?more={more}")).0, 200);
            let v = verdict(&base).ok_or("no verdict")?;
            let reason = v["reasons"][0].as_str().unwrap_or_default();
            let waits = v["verdict"] == "wait" && reason.contains("GET /shop/rare");
            if waits {
                Ok(v)
            } else {
                Err(v.to_string())
            }
        },
    );
    let reason = v["reasons"][0].as_str().unwrap_or_default();
    assert!(
        reason.contains("too few to judge, MIN_ENDPOINT_PAIRS is 5"),
        "{v}"
    );
    assert!(reason.contains(hint), "{v}");
    assert_eq!(base.version_of("testing").as_deref(), Some("app-1.1.0"));
    u.stop();
}

/// Distinct user requests (`/keep?n=…`, counting on from `n`) until `want` are recorded (at most
/// one per 50 ms is).
fn record_until(u: &Understudy, admin: std::net::SocketAddr, n: &mut u64, want: f64) {
    wait_until("requests to be recorded", Duration::from_secs(20), || {
        *n += 1;
        assert_eq!(u.get(&format!("/keep?n={n}")).0, 200);
        (recorded(admin) == want).then_some(())
    });
}

/// On a busy service the one request recorded per 50 ms is almost never a rare endpoint's, so a
/// build that lost it waited for ever with nothing to replay. Now, once the verdict waits on it
/// with nothing recorded, the endpoint's next request is recorded at once, replayed to
/// `MIN_ENDPOINT_PAIRS`, and the build is rejected naming it.
#[test]
fn on_a_busy_service_a_rare_endpoint_the_verdict_waits_on_is_recorded_at_its_next_request() {
    let base = Base::new("replay-busy");
    base.write_env(
        "STABLE_WINDOW=60s\nMIN_MIRRORED=10\nEVALUATE_EVERY=100ms\nROLLBACK_WINDOW=0\nREPLAY=auto\nREPLAY_RATE=50",
    );
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    let busy = Traffic::busy(u.addr);
    base.drop_fixture("1.1.0", "--not-found /shop/rare");
    base.wait_testing();
    wait_until("the secondary to serve", Duration::from_secs(10), || {
        base.fixture_stats("secondary")
    });
    assert_eq!(u.get("/shop/rare?id=1").0, 200, "running still has it");
    let rejected = base.path.join("rejected/app-1.1.0/reason.json");
    let nothing = "no recorded request of it is left to replay";
    let mut last = None;
    let waited = wait_until(
        "the verdict to wait on GET /shop/rare with nothing recorded",
        Duration::from_secs(20),
        || {
            if rejected.exists() {
                // The one request happened to be the one recorded in its 50 ms: replayed already.
                return Some(false);
            }
            let v = verdict(&base)?;
            let reasons = v["reasons"].as_array().cloned().unwrap_or_default();
            last = Some(v);
            let said = |r: &serde_json::Value| {
                let r = r.as_str().unwrap_or_default();
                r.contains("GET /shop/rare") && r.contains(nothing)
            };
            reasons.iter().any(said).then_some(true)
        },
    );
    eprintln!("waited with nothing recorded: {waited}; {last:?}");
    if waited {
        assert_eq!(u.get("/shop/rare?id=2").0, 200);
    }
    let r = wait_until("1.1.0 to be rejected", Duration::from_secs(30), || {
        std::fs::read_to_string(&rejected).ok()
    });
    drop(busy);
    assert!(
        r.contains("GET /shop/rare answers 404/405/501 on testing"),
        "named: {r}"
    );
    assert_eq!(base.version_of("running").unwrap(), "app-1.0.0");
    u.stop();
}

/// Replays use only the mirror's spare capacity (review A, E6): testing answers copies in 0.5 s
/// with MIRROR_CONCURRENCY=4 (8 copies/s) and users ask 6 requests/s while replay is wanted all
/// along; no user's copy is dropped (replays at REPLAY_RATE=20 in the same queue dropped 77 of
/// 120), and replays are still sent.
#[test]
fn replays_never_crowd_out_users_copies() {
    let base = Base::new("replay-spare");
    let env =
        "REPLAY=auto\nMIN_MIRRORED=100000\nSTABLE_WINDOW=1h\nMIRROR_CONCURRENCY=4\nMIRROR_QUEUE=32";
    base.write_env(env);
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    let (admin, _) = admin(&base);
    let mut n = 0;
    record_until(&u, admin, &mut n, 10.0);
    base.drop_fixture("1.1.0", "--slow-ms 500");
    base.wait_testing();
    wait_until("the secondary to be ready", Duration::from_secs(10), || {
        base.fixture_stats("secondary")
    });
    let users = 90;
    let mut next = Instant::now();
    for i in 0..users {
        // The pace of the users themselves, not a wait for understudy.
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += Duration::from_millis(166);
        assert_eq!(u.get(&format!("/api/u?i={i}")).0, 200);
    }
    let s = scrape(admin);
    let dropped = value(&s, "understudy_mirror_dropped_total", &[]).unwrap();
    let replayed = value(&s, "understudy_replayed_total", &[]).unwrap();
    let mirrored = value(&s, "understudy_mirrored_total", &[]).unwrap();
    eprintln!("{mirrored} copies mirrored, {dropped} dropped, {replayed} replays sent");
    assert_eq!(dropped, 0.0, "users' copies dropped for replays");
    assert!(replayed > 0.0, "replay was wanted all along");
    u.stop();
}
