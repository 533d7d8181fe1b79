//! A load generator that reports latency per second, so the second of a promotion can be compared
//! with the steady seconds around it (wrk reports only whole-run percentiles).
//!
//!   cargo bench --profile dist --bench switch -- 127.0.0.1:18210 128 12 /api/items
//!
//! Prints one line per second: `SECOND <unix-second> <requests> <errors> <p50-µs> <p99-µs>`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let addr = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let conns: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(128);
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let path = args.get(3).cloned().unwrap_or_else(|| "/".into());
    let until = Instant::now() + Duration::from_secs(secs);

    let clients: Vec<_> = (0..conns)
        .map(|_| tokio::spawn(client(addr.clone(), path.clone(), until)))
        .collect();
    // unix second → (latencies in µs, errors)
    let mut buckets: BTreeMap<u64, (Vec<u64>, u64)> = BTreeMap::new();
    for c in clients {
        for (second, latency, ok) in c.await.unwrap_or_default() {
            let b = buckets.entry(second).or_default();
            if ok {
                b.0.push(latency);
            } else {
                b.1 += 1;
            }
        }
    }
    for (second, (mut lat, errors)) in buckets {
        lat.sort_unstable();
        let pct = |p: usize| {
            lat.get((lat.len() * p / 100).min(lat.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        };
        println!(
            "SECOND {second} {} {errors} {} {}",
            lat.len() as u64 + errors,
            pct(50),
            pct(99)
        );
    }
}

/// One keep-alive connection sending GETs back to back; reconnects after an error.
async fn client(addr: String, path: String, until: Instant) -> Vec<(u64, u64, bool)> {
    let mut seen = Vec::new();
    while Instant::now() < until {
        let Ok(stream) = tokio::net::TcpStream::connect(&addr).await else {
            seen.push((unix_second(), 0, false));
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok((mut send, conn)) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await
        else {
            seen.push((unix_second(), 0, false));
            continue;
        };
        tokio::spawn(conn);
        while Instant::now() < until {
            let req = hyper::Request::get(path.as_str())
                .header("host", addr.as_str())
                .body(Empty::new())
                .expect("a static request builds");
            let started = Instant::now();
            let ok = match send.send_request(req).await {
                Ok(resp) => resp.status().is_success() && resp.into_body().collect().await.is_ok(),
                Err(_) => false,
            };
            seen.push((unix_second(), started.elapsed().as_micros() as u64, ok));
            if !ok {
                break;
            }
        }
    }
    seen
}

fn unix_second() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
