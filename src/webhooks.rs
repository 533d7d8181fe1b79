//! Webhooks: every event POSTed as JSON to each of `WEBHOOK_URLS`, so other programs are told
//! rather than poll. One task per URL keeps its events in order and retries with backoff; the
//! queue is the event broadcast's bounded backlog, so a slow or dead receiver only loses events
//! (counted and logged), and never holds up the supervisor or grows memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::events::{Events, Stamped};

/// How long one POST may take before it counts as failed.
const POST_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per event before it is given up (and counted as dropped).
const ATTEMPTS: u32 = 5;
/// The first retry's delay; doubled for each further one.
const BACKOFF: Duration = Duration::from_millis(500);

/// One receiver's deliveries since start, read by `/metrics`: a receiver losing events must show
/// somewhere other than a log line.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// The receiver's URL with credentials redacted: the only form that may be shown.
    pub url: String,
    /// Delivered with a 2xx answer.
    pub delivered: AtomicU64,
    /// Never delivered (lost to a full queue or given up after retries).
    pub dropped: AtomicU64,
}

impl WebhookStats {
    /// Counters for the receiver `target`, named without its credentials.
    pub fn new(target: &str) -> WebhookStats {
        WebhookStats {
            url: crate::config::redacted(target),
            ..WebhookStats::default()
        }
    }
}

/// Deliver events to `target` until `stop`.
pub async fn run(
    target: String,
    events: Events,
    stats: Arc<WebhookStats>,
    stop: CancellationToken,
) {
    // Everything logged names the receiver without its credentials.
    let url = stats.url.clone();
    let client = match reqwest::Client::builder().timeout(POST_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("webhook {url}: cannot build an HTTP client ({e}); no events go there");
            stop.cancelled().await;
            return;
        }
    };
    let mut rx = events.subscribe();
    loop {
        let e = tokio::select! {
            _ = stop.cancelled() => return,
            r = rx.recv() => match r {
                Ok(e) => e,
                Err(RecvError::Lagged(n)) => {
                    stats.dropped.fetch_add(n, Ordering::Relaxed);
                    tracing::warn!("webhook {url} is too slow: {n} events dropped");
                    continue;
                }
                Err(RecvError::Closed) => {
                    stop.cancelled().await;
                    return;
                }
            },
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            ok = deliver(&client, &target, &url, &e) => {
                if ok {
                    stats.delivered.fetch_add(1, Ordering::Relaxed);
                } else {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        "webhook {url}: event #{} ({}) given up after {ATTEMPTS} attempts",
                        e.seq,
                        e.name()
                    );
                }
            }
        }
    }
}

/// POST one event to `target` (shown as `url`), retrying with backoff; whether a 2xx came back.
async fn deliver(client: &reqwest::Client, target: &str, url: &str, e: &Stamped) -> bool {
    let body = serde_json::to_vec(e).unwrap_or_default();
    let mut delay = BACKOFF;
    for attempt in 1..=ATTEMPTS {
        let sent = client
            .post(target)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Understudy-Event", e.name())
            .header("X-Understudy-Seq", e.seq.to_string())
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) => tracing::debug!("webhook {url}: #{} answered {}", e.seq, r.status()),
            Err(err) => tracing::debug!("webhook {url}: #{} failed: {err}", e.seq),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
    false
}
