//! How much evidence the judge needs: for understudy's default settings, the fewest mirrored
//! pairs at which `evaluate` rejects a build whose 5xx rate is 2, 5 or 20 points above running's,
//! or whose latency is 1.5× or 3× the secondary's, and how long gathering them takes at 10, 100
//! and 1 000 requests per second. The judge is the library's own `evaluate`, fed summaries of the
//! shape the scorecard builds; the defaults are read from `config::KEYS`.
//!
//! Run: `cargo bench --profile dist --bench verdict`. Never part of `cargo test`.

use std::collections::BTreeMap;
use std::time::Duration;

use understudy::config::{Config, ScoreConfig};
use understudy::score::{evaluate, EndpointStats, Summary, Verdict};

/// Running's own 5xx rate in the 5xx scenarios.
const RUNNING_5XX: f64 = 0.01;
/// Rates of traffic the times are shown for.
const RATES: [f64; 3] = [10.0, 100.0, 1000.0];
/// The judge's moment (`score::scorecard::LATENCY_MOMENT`), in seconds.
const MOMENT: f64 = 0.25;
/// Most pairs tried before a scenario is called "never".
const MAX_PAIRS: u64 = 200_000;

/// The default thresholds, as a base dir with only `IDENTIFIER` set would have them.
fn defaults() -> ScoreConfig {
    let dir = std::env::temp_dir().join(format!("understudy-verdict-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(".env"), "IDENTIFIER=app\n").unwrap();
    let cfg = Config::load(&dir, &BTreeMap::new(), &[]).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    cfg.score
}

/// `n` pairs of one endpoint, past the stable window, with exact 5xx counts.
fn with_5xx(n: u64, cfg: &ScoreConfig, testing_rate: f64) -> Summary {
    let mut endpoints = BTreeMap::new();
    endpoints.insert(
        "GET /a".to_string(),
        EndpointStats {
            pairs: n,
            baseline_5xx: (n as f64 * RUNNING_5XX).round() as u64,
            testing_5xx: (n as f64 * testing_rate).round() as u64,
            ..Default::default()
        },
    );
    Summary {
        elapsed: cfg.stable_window,
        pairs: n,
        endpoints,
        running_requests: n,
        ..Default::default()
    }
}

/// `n` paired copies where testing takes `factor`× the secondary's time, each copy's own cost
/// spread over 1–10 ms and the factor jittered by ±20 % (a deterministic sequence), arriving at
/// `rate` per second (the judge tests significance over moments of 250 ms).
fn with_latency(n: u64, cfg: &ScoreConfig, factor: f64, rate: f64) -> Summary {
    let mut s = with_5xx(n, cfg, RUNNING_5XX);
    s.endpoints.get_mut("GET /a").unwrap().baseline_5xx = 0;
    s.endpoints.get_mut("GET /a").unwrap().testing_5xx = 0;
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 10_000) as f64 / 10_000.0
    };
    s.latency_pairs = (0..n)
        .map(|i| {
            let sec = 0.001 + 0.009 * next();
            let moment = (i as f64 / rate / MOMENT) as u32;
            (sec * factor * (0.8 + 0.4 * next()), sec, moment)
        })
        .collect();
    let p95 = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        Duration::from_secs_f64(v[(v.len() * 95 / 100).min(v.len() - 1)])
    };
    s.testing_paired_p95 = Some(p95(s.latency_pairs.iter().map(|p| p.0).collect()));
    s.secondary_p95 = Some(p95(s.latency_pairs.iter().map(|p| p.1).collect()));
    s.noise_expected = true;
    s
}

/// The fewest pairs (to 1 %) at which `make(n)` is rejected, if any up to [`MAX_PAIRS`].
fn fewest(cfg: &ScoreConfig, make: impl Fn(u64) -> Summary) -> Option<u64> {
    let rejected = |n| matches!(evaluate(&make(n), cfg).verdict, Verdict::Reject(_));
    let mut n = cfg.min_mirrored.max(1);
    while !rejected(n) {
        n += (n / 100).max(1);
        if n > MAX_PAIRS {
            return None;
        }
    }
    Some(n)
}

fn row(what: &str, n: Option<u64>) {
    let Some(n) = n else {
        println!("| {what} | never (up to {MAX_PAIRS} pairs) | | | |");
        return;
    };
    let times: Vec<String> = RATES
        .iter()
        .map(|r| format!("{:.0} s", n as f64 / r))
        .collect();
    println!("| {what} | {n} | {} |", times.join(" | "));
}

fn main() {
    let cfg = defaults();
    println!(
        "defaults: CONFIDENCE {}, MAX_5XX_DELTA {}, MIN_MIRRORED {}, MAX_P95_RATIO {:?}; running's 5xx rate {RUNNING_5XX}",
        cfg.confidence, cfg.max_5xx_delta, cfg.min_mirrored, cfg.max_p95_ratio
    );
    println!("| build | pairs to reject | at 10/s | at 100/s | at 1 000/s |");
    println!("|---|---|---|---|---|");
    for points in [0.02, 0.05, 0.20] {
        let n = fewest(&cfg, |n| with_5xx(n, &cfg, RUNNING_5XX + points));
        row(
            &format!("5xx {:.0} points above running's", points * 100.0),
            n,
        );
    }
    // Latency is judged over moments, so the pairs needed depend on the rate.
    for factor in [1.5, 3.0] {
        let cells: Vec<String> = RATES
            .iter()
            .map(
                |&r| match fewest(&cfg, |n| with_latency(n, &cfg, factor, r)) {
                    Some(n) => format!("{n} pairs, {:.1} s", n as f64 / r),
                    None => format!("never (up to {MAX_PAIRS} pairs)"),
                },
            )
            .collect();
        println!(
            "| latency {factor}× the secondary's | | {} |",
            cells.join(" | ")
        );
    }
}
