//! Webhooks: every event POSTed to each of `WEBHOOK_URLS` (http, or https over rustls with the
//! system's roots and `WEBHOOK_CA_FILE`), as JSON for programs or as one readable line for chat
//! (`WEBHOOK_FORMAT=slack`), so people and programs are told rather than poll. One task per URL
//! keeps its events in order and retries with backoff; the queue is the event broadcast's bounded
//! backlog, so a slow, dead or untrusted receiver only loses events (counted and logged), and
//! never holds up the supervisor or grows memory.

mod client;
mod resolve;
mod slack;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, WebhookCa, WebhookFormat};
use crate::events::Stamped;
use client::Poster;
use resolve::ThreadResolver;
pub use slack::{slack_text, Told};

/// Attempts per event before it is given up (and counted as dropped).
const ATTEMPTS: u32 = 5;
/// The first retry's delay; doubled for each further one.
const BACKOFF: Duration = Duration::from_millis(500);

/// One receiver's deliveries since start, read by `/metrics`: a receiver losing events must show
/// somewhere other than a log line.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// The receiver as [`crate::config::receiver_shown`] names it (scheme, host, port and its
    /// place in WEBHOOK_URLS): the only form that may be shown, its path and credentials being secret.
    pub url: String,
    /// Delivered with a 2xx answer.
    pub delivered: AtomicU64,
    /// Never delivered (lost to a full queue or given up after retries).
    pub dropped: AtomicU64,
}

impl WebhookStats {
    /// Counters for the receiver `target`, the `position`th of WEBHOOK_URLS (from 1), named
    /// without its path, query or credentials.
    pub fn new(position: usize, target: &str) -> WebhookStats {
        WebhookStats {
            url: crate::config::receiver_shown(position, target),
            ..WebhookStats::default()
        }
    }
}

/// How every receiver is spoken to: the same for all of `WEBHOOK_URLS`.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// `IDENTIFIER`, so a chat line says which service it is about.
    pub identifier: String,
    /// JSON or a chat line.
    pub format: WebhookFormat,
    /// A private CA trusted besides the system's roots.
    pub ca: Option<WebhookCa>,
    /// Looks receivers' hosts up off tokio's blocking pool; one for all, so a host's hung lookup
    /// is shared rather than repeated.
    resolver: ThreadResolver,
}

impl Delivery {
    /// The delivery settings of `cfg`.
    pub fn of(cfg: &Config) -> Delivery {
        Delivery {
            identifier: cfg.identifier.clone(),
            format: cfg.webhook_format,
            ca: cfg.webhook_ca.clone(),
            resolver: ThreadResolver::default(),
        }
    }

    /// What is POSTed for `e`; `None` when a chat is not told this one (see [`Told`]).
    fn body(&self, told: &mut Told, e: &Stamped) -> Option<Vec<u8>> {
        match self.format {
            WebhookFormat::Json => Some(serde_json::to_vec(e).unwrap_or_default()),
            WebhookFormat::Slack => told.worth_telling(&e.event).then(|| {
                let text = slack_text(&self.identifier, e);
                serde_json::to_vec(&serde_json::json!({ "text": text })).unwrap_or_default()
            }),
        }
    }
}

/// How long a stop waits for the events still queued (and the one being delivered) to go out,
/// one attempt each; what is left then is counted as dropped and named in a warning.
const FLUSH: Duration = Duration::from_secs(3);

/// One receiver's sending side: its client, its name as shown, its counters.
struct Outbox {
    poster: Poster,
    url: String,
    stats: Arc<WebhookStats>,
    delivery: Arc<Delivery>,
    told: Told,
}

/// Deliver the events of `rx` (subscribed before the first event) to `target` until `stop`,
/// then flush what is queued (see [`FLUSH`]).
pub async fn run(
    target: String,
    delivery: Arc<Delivery>,
    mut rx: broadcast::Receiver<Arc<Stamped>>,
    stats: Arc<WebhookStats>,
    stop: CancellationToken,
) {
    // Everything logged names the receiver without its path, query or credentials.
    let url = stats.url.clone();
    let poster = match Poster::new(&target, delivery.ca.as_ref(), delivery.resolver.clone()) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("webhook {url}: cannot build an HTTP client: {e}; no events go there");
            stop.cancelled().await;
            return;
        }
    };
    let mut out = Outbox {
        poster,
        url,
        stats,
        delivery,
        told: Told::default(),
    };
    let pending = out.deliver_until(&mut rx, &stop).await;
    out.flush(&mut rx, pending).await;
}

impl Outbox {
    /// Deliver events with retries until `stop`; the event being delivered then, if any.
    async fn deliver_until(
        &mut self,
        rx: &mut broadcast::Receiver<Arc<Stamped>>,
        stop: &CancellationToken,
    ) -> Option<(Arc<Stamped>, Bytes)> {
        let url = self.url.clone();
        loop {
            let e = tokio::select! {
                _ = stop.cancelled() => return None,
                r = rx.recv() => match r {
                    Ok(e) => e,
                    Err(RecvError::Lagged(n)) => {
                        self.stats.dropped.fetch_add(n, Ordering::Relaxed);
                        tracing::warn!("webhook {url} is too slow: {n} events dropped");
                        continue;
                    }
                    Err(RecvError::Closed) => {
                        stop.cancelled().await;
                        return None;
                    }
                },
            };
            let Some(body) = self.delivery.body(&mut self.told, &e) else {
                continue;
            };
            let body = Bytes::from(body);
            tokio::select! {
                _ = stop.cancelled() => return Some((e, body)),
                sent = deliver(&self.poster, &url, &e, body.clone()) => match sent {
                    Ok(()) => {
                        self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(last) => {
                        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            "webhook {url}: event #{} ({}) given up after {ATTEMPTS} attempts; the last: {last}",
                            e.seq,
                            e.name()
                        );
                    }
                }
            }
        }
    }

    /// At a stop: `pending` and the events queued now get one attempt each within [`FLUSH`];
    /// those that fail or are left are counted as dropped and named in one warning.
    async fn flush(
        &mut self,
        rx: &mut broadcast::Receiver<Arc<Stamped>>,
        mut pending: Option<(Arc<Stamped>, Bytes)>,
    ) {
        let deadline = tokio::time::Instant::now() + FLUSH;
        let mut lost: Vec<u64> = Vec::new();
        loop {
            let (e, body) = match pending.take() {
                Some(p) => p,
                None => match rx.try_recv() {
                    Ok(e) => match self.delivery.body(&mut self.told, &e) {
                        Some(body) => (e, Bytes::from(body)),
                        None => continue,
                    },
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        self.stats.dropped.fetch_add(n, Ordering::Relaxed);
                        continue;
                    }
                    Err(_) => break,
                },
            };
            let name = e.name();
            let posted = tokio::time::timeout_at(deadline, self.poster.post(&name, e.seq, body));
            match posted.await {
                Ok(Ok(status)) if status.is_success() => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                }
                _ => lost.push(e.seq),
            }
        }
        if let (Some(first), Some(last)) = (lost.first(), lost.last()) {
            self.stats
                .dropped
                .fetch_add(lost.len() as u64, Ordering::Relaxed);
            tracing::warn!(
                "webhook {}: {} events not delivered as understudy stopped (#{first} to #{last}); counted in understudy_webhook_dropped_total",
                self.url,
                lost.len()
            );
        }
    }
}

/// POST `body` (of event `e`) through `poster` (its receiver shown as `url`), retrying with
/// backoff, until a 2xx comes back; else why the last attempt failed.
async fn deliver(poster: &Poster, url: &str, e: &Stamped, body: Bytes) -> Result<(), String> {
    let mut delay = BACKOFF;
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        last = match poster.post(&e.name(), e.seq, body.clone()).await {
            Ok(status) if status.is_success() => return Ok(()),
            Ok(status) => format!("answered {status}"),
            Err(why) => why,
        };
        tracing::debug!("webhook {url}: #{} attempt {attempt}: {last}", e.seq);
        if attempt < ATTEMPTS {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
    Err(last)
}
