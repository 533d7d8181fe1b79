//! Instance faults: a child's whole process group is stopped (a grandchild that ignores SIGTERM
//! included), and readiness on `READY_PATH` is decided by a whole HTTP answer.

use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn a_grandchild_that_ignores_sigterm_is_killed_with_its_group() {
    let base = Base::new("grandchild");
    base.write_env("SHUTDOWN_GRACE=1s");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "--spawn-grandchild");
    u.wait_serving();
    let (_, leader) = base.wait_instance_info("running");
    let grandchild = wait_until("grandchild.pid", Duration::from_secs(10), || {
        read_pid_file(&base, "running", "grandchild.pid")
    });
    assert_ne!(grandchild, leader);
    assert!(
        process_running(grandchild),
        "the grandchild runs beside the app"
    );

    let started = Instant::now();
    u.stop(); // asserts a clean exit and that no process is left in the base dir
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the leader stopped on SIGTERM but its grandchild did not, so the grace was waited out"
    );
    assert!(!process_running(leader), "the leader is gone");
    assert!(
        !process_running(grandchild),
        "the grandchild got SIGKILL with its group"
    );
    assert!(
        u.log_text()
            .contains("did not stop within 1s of SIGTERM; sending SIGKILL"),
        "the escalation is logged"
    );
}

#[test]
fn ready_path_is_judged_by_a_whole_answer_through_a_host_name() {
    // `localhost` may resolve to ::1 first; the fixture listens on both loopbacks.
    let base = Base::new("ready-path-host");
    // Long enough for a loaded machine to start the fixture (1.0.0 must become ready within it,
    // and 1.1.0's last probe must see its 404), as in faults::ready_path_must_answer_2xx.
    base.write_env("READY_PATH=/health\nREADY_TIMEOUT=4s\nUPSTREAM_HOST=localhost");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    assert!(
        u.get("/").1.contains("1.0.0"),
        "/health answered 200: ready"
    );

    base.drop_fixture("1.1.0", "--not-found /health");
    let path = base.path.join("rejected/app-1.1.0/reason.json");
    let r = wait_until("1.1.0 rejected", Duration::from_secs(15), || {
        std::fs::read_to_string(&path).ok()
    });
    assert!(
        r.contains("/health answered 404"),
        "the reason says what the check got: {r}"
    );
    assert!(
        base.link("testing").is_none(),
        "a build that is never ready is not tested"
    );
    assert!(u.get("/").1.contains("1.0.0"), "running keeps serving");
    u.stop();
}

#[test]
fn a_running_that_fails_its_health_check_is_replaced_without_a_failed_request() {
    let base = Base::new("heal-start-first");
    base.write_env("HEALTH_PATH=/health\nHEARTBEAT_EVERY=200ms\nHEARTBEAT_MISSES=2\n");
    let mut u = Understudy::start(&base);
    // Its port answers users; its health check answers 500: alive, but failing the check.
    base.drop_fixture("1.0.0", "--fail-path /health");
    u.wait_serving();
    let (_, first) = base.wait_instance_info("running");
    let mut pids = vec![first];
    let mut failed = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    // Every user request while running is replaced, twice over.
    while pids.len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "replaced {} times: {pids:?}\n{}",
            pids.len() - 1,
            u.log_text()
        );
        match http(u.addr, "GET", "/api/items") {
            Ok((200, _)) => {}
            other => failed.push(format!("{other:?}")),
        }
        if let Some((_, pid)) = base.instance_info("running") {
            if !pids.contains(&pid) {
                pids.push(pid);
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} failed requests: {failed:?}",
        failed.len()
    );
    u.stop();
}
