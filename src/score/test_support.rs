//! What the score's unit tests share: thresholds, a healthy summary, and a testing instance to
//! watch.

use std::collections::BTreeMap;
use std::time::Duration;

use super::logs::LevelRules;
use super::scorecard::{EndpointStats, Scorecard, Summary, Watch};
use super::Pair;
use crate::config::{MaxBodyDiff, ScoreConfig};
use crate::instance::InstanceId;

/// Thresholds the tests judge by: a 60 s window, 100 pairs, no optional ceilings.
pub(super) fn cfg() -> ScoreConfig {
    ScoreConfig {
        stable_window: Duration::from_secs(60),
        min_mirrored: 100,
        max_5xx_delta: 0.01,
        max_client_error_delta: 0.05,
        max_log_error_delta: 0.05,
        max_log_warn_delta: 0.5,
        min_endpoint_pairs: 5,
        max_endpoints: 256,
        max_p95_ratio: None,
        max_body_diff: MaxBodyDiff::Off,
        diff_relative: 0.2,
        diff_absolute: 0.03,
        confidence: 0.99,
        max_rss_ratio: None,
        max_cpu_ratio: None,
        noise_cancel: false,
        diff_sample: 0.0,
        diff_max_body: 256 << 10,
        plain_error_regex: String::new(),
        plain_warn_regex: String::new(),
        evaluate_every: Duration::from_secs(1),
        replay: false,
    }
}

/// `pairs` healthy pairs of `GET /a`, `elapsed` seconds into the window.
pub(super) fn summary(pairs: u64, elapsed: u64) -> Summary {
    let mut endpoints = BTreeMap::new();
    endpoints.insert(
        "GET /a".to_string(),
        EndpointStats {
            pairs,
            ..Default::default()
        },
    );
    Summary {
        elapsed: Duration::from_secs(elapsed),
        pairs,
        endpoints,
        running_requests: pairs,
        ..Default::default()
    }
}

/// Scoring testing instance 1, with no log folders and no processes.
pub(super) fn watch_instance_1() -> Watch {
    Watch {
        testing: InstanceId(1),
        testing_dir: "/nonexistent".into(),
        testing_pid: 0,
        running_dir: "/nonexistent".into(),
        running_pid: None,
        noise: false,
        secondary: None,
    }
}

/// A healthy pair of `GET path` for testing instance 1: both answered 200 in a millisecond, no
/// secondary, nothing diffed; tests change the fields they are about.
pub(super) fn pair(path: &str) -> Pair {
    Pair {
        testing: InstanceId(1),
        method: http::Method::GET,
        path: path.to_string(),
        running_status: 200,
        running_latency: Duration::from_millis(1),
        testing_status: Some(200),
        testing_latency: Some(Duration::from_millis(1)),
        secondary_latency: None,
        secondary_status: None,
        testing_error: None,
        diffs: None,
        noise: None,
        replayed: None,
    }
}

/// `n` pairs of `path`: running answered `running`, the secondary `secondary` (none: `None`)
/// and testing `testing`.
pub(super) fn statuses(
    path: &str,
    n: usize,
    running: u16,
    secondary: Option<u16>,
    testing: u16,
) -> Vec<Pair> {
    let p = Pair {
        running_status: running,
        secondary_status: secondary,
        testing_status: Some(testing),
        ..pair(path)
    };
    vec![p; n]
}

/// The summary a scorecard of testing instance 1 gives after recording `pairs`, `elapsed`
/// seconds into the window: what the scorer would judge had the mirror sent exactly these.
pub(super) fn summarised(pairs: &[Pair], elapsed: u64) -> Summary {
    summarised_capped(pairs, elapsed, 256)
}

/// As [`summarised`], with `MAX_ENDPOINTS` at `max_endpoints`.
pub(super) fn summarised_capped(pairs: &[Pair], elapsed: u64, max_endpoints: usize) -> Summary {
    let start = tokio::time::Instant::now();
    let mut card = Scorecard::new(watch_instance_1(), 0, start);
    card.limit_endpoints(max_endpoints);
    for p in pairs {
        card.record(p, start);
    }
    let end = start + Duration::from_secs(elapsed);
    card.summary(&LevelRules::new("", ""), pairs.len() as u64, end, false)
}
