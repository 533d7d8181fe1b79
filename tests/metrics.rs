//! `GET /metrics` as Prometheus scrapes it: the real binary with a running and a testing build,
//! real traffic, and the exposition read by a Prometheus text parser.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use prometheus_parse::{Scrape, Value};

use crate::support::*;

/// Scoring often and early, so a verdict (and its score) comes within the test; promotion only
/// when asked (the stable window is the default 10 minutes).
const FAST_SCORING: &str = "EVALUATE_EVERY=200ms\nMIN_MIRRORED=5";

/// `GET /metrics` over the admin TCP listener, without a token: the Content-Type and the body.
fn scrape_raw(addr: SocketAddr) -> (String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a whole answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (content_type, body.to_string())
}

/// The exposition at `addr` (an admin listener), parsed.
pub(crate) fn scrape(addr: SocketAddr) -> Scrape {
    let (_, body) = scrape_raw(addr);
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("a parsable exposition")
}

/// The value of the counter, gauge or untyped sample `name` whose labels include `labels`.
pub(crate) fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .find(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .and_then(|x| match x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
            _ => None,
        })
}

/// A histogram's `+Inf` bucket (its count) for the series with `labels`, and its `_count`, which
/// must agree.
pub(crate) fn histogram_count(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let sample = s
        .samples
        .iter()
        .filter(|x| x.metric == name)
        .find(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))?;
    let Value::Histogram(buckets) = &sample.value else {
        panic!("{name} is not a histogram: {sample:?}");
    };
    let inf = buckets.iter().find(|b| b.less_than.is_infinite())?.count;
    let count = value(s, &format!("{name}_count"), labels)?;
    assert_eq!(inf, count, "{name}{labels:?}: +Inf bucket and _count");
    Some(count)
}

/// The sum over status classes of `understudy_responses_total` for `role` and `source`.
pub(crate) fn responses(s: &Scrape, role: &str, source: &str) -> f64 {
    ["1xx", "2xx", "3xx", "4xx", "5xx", "none"]
        .iter()
        .map(|class| {
            let labels = [("role", role), ("source", source), ("class", class)];
            value(s, "understudy_responses_total", &labels)
                .unwrap_or_else(|| panic!("no understudy_responses_total{labels:?}"))
        })
        .sum()
}

#[test]
fn metrics_show_traffic_score_decisions_and_children() {
    let (base, mut u) = start_with_testing("metrics", FAST_SCORING);
    let (addr, token) = admin(&base);
    u.wait_serving();
    const SENT: usize = 40;
    for i in 0..SENT {
        let (code, _) = u.get(&format!("/hello/{i}"));
        assert_eq!(code, 200);
    }

    let (content_type, _) = scrape_raw(addr);
    assert!(
        content_type.starts_with("text/plain") && content_type.contains("version=0.0.4"),
        "{content_type}"
    );
    // The copies reach testing and the scorer evaluates asynchronously, and its verdicts are
    // counted from the event stream, after the score shows: wait for all three.
    let s = wait_until(
        "testing's answers, a score and a verdict in /metrics",
        Duration::from_secs(20),
        || {
            let s = scrape(addr);
            let testing = [("role", "testing"), ("source", "live")];
            let waits = [("verdict", "wait")];
            (histogram_count(&s, "understudy_request_duration_seconds", &testing)? > 0.0
                && value(&s, "understudy_score", &[]).is_some()
                && value(&s, "understudy_verdicts_total", &waits)? >= 1.0)
                .then_some(s)
        },
    );

    traffic_is_counted(&s, SENT);
    the_score_children_and_untaken_decisions_show(&s);

    // An operator's promotion is counted from the event stream.
    let (code, body) = api(addr, "POST", "/api/promote", Some(&token), "");
    assert_eq!(code, 200, "{body}");
    let s = wait_until("the promotion counted", Duration::from_secs(20), || {
        let s = scrape(addr);
        (value(&s, "understudy_promotions_total", &[("why", "operator")]) == Some(1.0)).then_some(s)
    });
    assert_eq!(
        value(&s, "understudy_rollbacks_total", &[("trigger", "operator")]),
        Some(0.0)
    );
    // The first build's switch counts too (it was never announced, so 0 whatever served).
    assert_eq!(
        value(&s, "understudy_promotions_total", &[("why", "first")]),
        Some(1.0)
    );
    u.stop();
}

/// Running's answers to the `sent` user requests, testing's to the copies, and the replay series
/// at zero (REPLAY=off).
fn traffic_is_counted(s: &Scrape, sent: usize) {
    let requests = value(s, "understudy_requests_total", &[]).unwrap();
    assert!(requests >= sent as f64, "requests {requests} < {sent}");
    let running_2xx = value(
        s,
        "understudy_responses_total",
        &[("role", "running"), ("class", "2xx")],
    )
    .unwrap();
    assert!(running_2xx >= sent as f64, "running 2xx {running_2xx}");
    for class in ["1xx", "3xx", "4xx", "5xx", "none"] {
        let labels = [("role", "running"), ("class", class)];
        assert_eq!(
            value(s, "understudy_responses_total", &labels),
            Some(0.0),
            "{class}"
        );
    }
    let running = [("role", "running"), ("source", "live")];
    let running_latency =
        histogram_count(s, "understudy_request_duration_seconds", &running).unwrap();
    assert!(running_latency >= sent as f64, "{running_latency}");
    let mirrored = value(s, "understudy_mirrored_total", &[]).unwrap();
    assert!(mirrored >= 1.0, "mirrored {mirrored}");
    assert_eq!(value(s, "understudy_mirror_dropped_total", &[]), Some(0.0));
    let testing_2xx = value(
        s,
        "understudy_responses_total",
        &[("role", "testing"), ("source", "live"), ("class", "2xx")],
    )
    .unwrap();
    assert!(
        testing_2xx >= 1.0 && testing_2xx <= mirrored,
        "{testing_2xx}"
    );
    // With REPLAY=off nothing is kept or replayed, and the replay series show, at zero.
    assert_eq!(responses(s, "testing", "replay"), 0.0);
    let replay = [("role", "testing"), ("source", "replay")];
    assert_eq!(
        histogram_count(s, "understudy_request_duration_seconds", &replay),
        Some(0.0)
    );
    assert_eq!(value(s, "understudy_replayed_total", &[]), Some(0.0));
    assert_eq!(value(s, "understudy_replay_recorded", &[]), Some(0.0));
}

/// The score and its parts, the children's memory and CPU, and decisions not taken yet, at zero.
fn the_score_children_and_untaken_decisions_show(s: &Scrape) {
    let score = value(s, "understudy_score", &[]).unwrap();
    assert!((0.0..=100.0).contains(&score), "score {score}");
    let parts: Vec<_> = s
        .samples
        .iter()
        .filter(|x| x.metric == "understudy_score_part")
        .collect();
    assert!(!parts.is_empty(), "no score parts");
    for p in parts {
        assert!(p.labels.get("part").is_some(), "{p:?}");
    }
    let waits = value(s, "understudy_verdicts_total", &[("verdict", "wait")]).unwrap();
    assert!(waits >= 1.0, "verdicts wait {waits}");

    for role in ["running", "testing"] {
        let rss = value(
            s,
            "understudy_child_resident_memory_bytes",
            &[("role", role)],
        )
        .unwrap_or_else(|| panic!("no memory for {role}"));
        assert!(rss > 1024.0 * 1024.0, "{role} resident memory {rss}");
        let cpu = value(s, "understudy_child_cpu_seconds_total", &[("role", role)])
            .unwrap_or_else(|| panic!("no CPU time for {role}"));
        assert!(cpu >= 0.0, "{role} CPU {cpu}");
    }
    // Decisions not taken yet show, at zero.
    for (name, labels) in [
        ("understudy_promotions_total", [("why", "operator")]),
        ("understudy_rollbacks_total", [("trigger", "guard")]),
        ("understudy_rollbacks_total", [("trigger", "operator")]),
    ] {
        assert_eq!(value(s, name, &labels), Some(0.0), "{name}{labels:?}");
    }
    for name in [
        "understudy_rejections_total",
        "understudy_instance_restarts_total",
        "understudy_guard_trips_total",
    ] {
        assert_eq!(value(s, name, &[]), Some(0.0), "{name}");
    }
}

/// Users' connections open on each proxy thread, as `understudy_user_connections` shows them.
fn per_thread_connections(addr: SocketAddr, threads: usize) -> Option<Vec<f64>> {
    let s = scrape(addr);
    (0..threads)
        .map(|t| {
            value(
                &s,
                "understudy_user_connections",
                &[("thread", &t.to_string())],
            )
        })
        .collect()
}

/// A burst of connections is spread over the proxy threads. With one listener shared by every
/// thread, the thread that woke first took a whole burst (a load test's 32 connections, measured
/// in docs/benchmarks.md) and the other cores sat idle while it saturated its own.
#[test]
fn a_burst_of_connections_is_spread_evenly_over_the_proxy_threads() {
    const THREADS: usize = 4;
    const CONNS: usize = 24;
    let base = Base::new("spread");
    base.write_env("WORKER_THREADS=4");
    let mut u = Understudy::start(&base);
    let (addr, _) = admin(&base);
    // All connected before any is served, as a load generator opens them.
    let mut conns: Vec<TcpStream> = (0..CONNS)
        .map(|_| TcpStream::connect(u.addr).unwrap())
        .collect();
    let spread = wait_until("every connection accepted", Duration::from_secs(10), || {
        let open = per_thread_connections(addr, THREADS)?;
        (open.iter().sum::<f64>() == CONNS as f64).then_some(open)
    });
    // Two threads accepting at the same instant may both choose the same third: within 2.
    let even = (CONNS / THREADS) as f64;
    assert!(
        spread.iter().all(|n| (n - even).abs() <= 2.0),
        "{CONNS} connections over {THREADS} threads: {spread:?}"
    );
    // Each is served where it was sent (503: nothing runs yet).
    for c in &mut conns {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        let mut head = [0u8; 12];
        c.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 503");
    }
    drop(conns);
    wait_until(
        "every connection counted out",
        Duration::from_secs(10),
        || {
            let open = per_thread_connections(addr, THREADS)?;
            (open.iter().sum::<f64>() == 0.0).then_some(())
        },
    );
    u.stop();
}

/// Copies still queued or in flight for testing when it is promoted go to an instance being
/// stopped: they are counted as retired, never as testing's failures (`class="none"` once rose by
/// dozens at each promotion, answers testing never owed).
#[test]
fn copies_caught_by_a_promotion_are_not_testings_failures() {
    let base = Base::new("metrics-retired");
    base.write_env("MIRROR_CONCURRENCY=64");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    base.drop_fixture("1.1.0", "--slow-ms 300");
    base.wait_testing();
    let (addr, token) = admin(&base);
    let traffic = Traffic::on(u.addr, |_| "/hello");
    wait_until("copies in flight", Duration::from_secs(20), || {
        let s = scrape(addr);
        (value(&s, "understudy_mirrored_total", &[])? > 100.0).then_some(())
    });
    let (code, body) = api(addr, "POST", "/api/promote", Some(&token), "");
    assert_eq!(code, 200, "{body}");
    let none = [("role", "testing"), ("source", "live"), ("class", "none")];
    let s = wait_until(
        "copies caught by the promotion",
        Duration::from_secs(20),
        || {
            let s = scrape(addr);
            let retired = value(&s, "understudy_mirror_retired_total", &[])?;
            let failed = value(&s, "understudy_responses_total", &none)?;
            (retired + failed > 0.0).then_some(s)
        },
    );
    drop(traffic);
    assert_eq!(value(&s, "understudy_responses_total", &none), Some(0.0));
    wait_until("1.1.0 to serve", Duration::from_secs(20), || {
        (base.version_of("running").as_deref() == Some("app-1.1.0")).then_some(())
    });
    let s = scrape(addr);
    assert_eq!(value(&s, "understudy_responses_total", &none), Some(0.0));
    u.stop();
}
