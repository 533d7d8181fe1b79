//! The users' proxy against odd requests and shutdown: the real binary, real children.

use std::time::{Duration, Instant};

use crate::support::*;

fn requests_seen(base: &Base) -> u64 {
    // The `running` symlink follows the route by a moment: poll for it.
    let stats = wait_until("running's stats", Duration::from_secs(10), || {
        base.fixture_stats("running")
    });
    stats["requests"].as_u64().unwrap()
}

#[test]
fn connect_is_405_and_never_reaches_running() {
    let base = Base::new("proxy-connect");
    base.write_env("");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();

    let before = requests_seen(&base);
    let (status, body) = http(u.addr, "CONNECT", "example.com:443").unwrap();
    assert_eq!(status, 405, "{body}");
    assert!(body.contains("CONNECT"), "{body}");
    assert_eq!(requests_seen(&base), before, "CONNECT was forwarded");
    u.stop();
}

#[test]
fn a_request_in_flight_at_sigterm_is_answered() {
    let base = Base::new("proxy-drain-at-stop");
    base.write_env("");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "--slow-ms 1000");
    wait_until("running to be up", Duration::from_secs(10), || {
        base.fixture_stats("running")
    });

    let addr = u.addr;
    let user = std::thread::spawn(move || http(addr, "GET", "/slow"));
    wait_until(
        "the request to reach running",
        Duration::from_secs(5),
        || (requests_seen(&base) == 1).then_some(()),
    );
    let stopping = Instant::now();
    u.stop();
    let (status, body) = user.join().unwrap().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("1.0.0"), "{body}");
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "stop waited for more than the request in flight"
    );
}
