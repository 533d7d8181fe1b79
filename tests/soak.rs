//! Soak: steady user traffic while build after build arrives, half of them bad. Not part of
//! `cargo test` (ignored: it takes the machine for its whole run, and what it judges needs a
//! release build): `bash benches/soak.sh` runs it for ten minutes in the `dist` profile and judges
//! memory and descriptors (docs/benchmarks.md). Run on its own, it lasts `UNDERSTUDY_SOAK_SECS`
//! (30 s by default).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// How a build of the soak ends.
#[derive(Debug, PartialEq)]
enum Outcome {
    Promoted,
    Rejected(String),
}

#[test]
#[ignore = "a benchmark, not a check for every change: bash benches/soak.sh"]
fn soak_builds_under_steady_load_fail_no_user_request() {
    let seconds: u64 = std::env::var("UNDERSTUDY_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let base = Base::new("soak");
    base.write_env("STABLE_WINDOW=1s\nMIN_MIRRORED=5\nEVALUATE_EVERY=200ms\nLOG_LEVEL=warn");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "--quiet");
    u.wait_serving();

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = steady_load(u.addr, &stop, &ok, &failed);

    let started = Instant::now();
    let mut outcomes = Vec::new();
    let mut baseline = None;
    let mut minor: u32 = 1;
    while started.elapsed() < Duration::from_secs(seconds) {
        let (version, outcome) = drop_and_decide(&base, minor);
        outcomes.push((version, outcome));
        // The baseline: the end of the first minute (a third of a shorter run).
        let at = if seconds >= 120 { 60 } else { seconds / 3 };
        if baseline.is_none() && started.elapsed() >= Duration::from_secs(at) {
            baseline = Some((rss_kib(u.pid()), open_fds(u.pid())));
        }
        minor += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    let (rss0, fds0) = baseline.unwrap_or((rss_kib(u.pid()), open_fds(u.pid())));
    let (rss1, fds1) = (rss_kib(u.pid()), open_fds(u.pid()));
    let promoted = outcomes
        .iter()
        .filter(|(_, o)| *o == Outcome::Promoted)
        .count();
    let rejected_by = |why: &str| {
        outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Rejected(r) if r.contains(why)))
            .count()
    };
    eprintln!(
        "soak {seconds}s: {} builds ({promoted} good promoted, {} bad rejected: {} for an endpoint regression, {} for the 5xx rate), {} user requests answered, {} failed; RSS {rss0} → {rss1} KiB ({:+.1}%), fds {fds0} → {fds1}",
        outcomes.len(),
        outcomes.len() - promoted,
        rejected_by("endpoint regression"),
        rejected_by("5xx rate"),
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        (rss1 as f64 / rss0.max(1) as f64 - 1.0) * 100.0
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no user request may fail"
    );
    assert!(
        outcomes.len() >= 4,
        "enough builds went through: {outcomes:?}"
    );
    // Pooled connections to instances stopped at the last decision are dropped by the pools'
    // sweep, once a second: the count must come back within a few.
    wait_until(
        &format!("the descriptors to settle ({fds0} at a third, {fds1} at the end)"),
        Duration::from_secs(5),
        || (open_fds(u.pid()) <= fds0 + 16).then_some(()),
    );
    u.stop(); // asserts a clean exit and no process left in the base dir
}

/// Two users asking without pause, half the time the same page, half a new one; each answer
/// counted in `ok` or `failed` until `stop`.
fn steady_load(
    addr: std::net::SocketAddr,
    stop: &Arc<AtomicBool>,
    ok: &Arc<AtomicU64>,
    failed: &Arc<AtomicU64>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..2)
        .map(|t| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let path = if i.is_multiple_of(2) {
                        "/api/items".to_string()
                    } else {
                        format!("/api/items/{t}{i}")
                    };
                    match http(addr, "GET", &path) {
                        Ok((200, _)) => ok.fetch_add(1, Ordering::Relaxed),
                        other => {
                            eprintln!("user request {path} failed: {other:?}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect()
}

/// Drop build `1.<minor>.0` (every other one broken) and wait for its verdict, which must be
/// the right one.
fn drop_and_decide(base: &Base, minor: u32) -> (String, Outcome) {
    let version = format!("1.{minor}.0");
    let bad = minor.is_multiple_of(2);
    let faults = match (bad, minor % 4) {
        (false, _) => "--quiet",
        (true, 0) => "--quiet --fail-path /api/items",
        (true, _) => "--quiet --not-found /api/items",
    };
    base.drop_fixture(&version, faults);
    let outcome = wait_until(
        &format!("{version} to be decided"),
        Duration::from_secs(30),
        || {
            let reason = base
                .path
                .join(format!("rejected/app-{version}/reason.json"));
            if let Ok(r) = std::fs::read_to_string(&reason) {
                return Some(Outcome::Rejected(r));
            }
            (base.version_of("running")? == format!("app-{version}")).then_some(Outcome::Promoted)
        },
    );
    match (&outcome, bad) {
        (Outcome::Promoted, false) => {}
        (Outcome::Rejected(r), true) => assert!(
            r.contains("endpoint regression") || r.contains("5xx rate"),
            "{version} rejected with a reason: {r}"
        ),
        _ => panic!("{version} (bad: {bad}) ended {outcome:?}"),
    }
    (version, outcome)
}
