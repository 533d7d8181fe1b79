//! `GET /metrics`: what understudy has seen, in the Prometheus text format, encoded by
//! `prometheus-client` so the exposition follows the format wherever it is subtle (escaping,
//! `+Inf`, cumulative buckets, `_total`).
//!
//! Three sources, each read where it is cheapest:
//! - **Traffic** ([`ProxyStats`]): the proxy and the mirror count with relaxed atomics they own
//!   (the request path takes no lock, allocates nothing and builds no label set); the
//!   [collector](Scrape) turns them into series at scrape time.
//! - **Decisions** ([`Event`]s): [`count_events`] follows the event stream and bumps counters
//!   whose handles ([`EventCounters`]) were made once, at start.
//! - **State** (the supervisor's [`Status`](crate::supervisor::Status) and `/proc`): the current
//!   score and each child's CPU time and resident memory are read when scraped, so they are never
//!   stale and cost nothing in between.
//!
//! Every series is named `understudy_*`; the running/testing instance is the label `role`, and
//! what an answer was to is the label `source`: `live` (a user's request, or testing's copy of
//! one) or `replay` (a recorded request replayed to testing, counted in `understudy_replayed_total`).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use semver::Version;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use crate::events::{Event, Stamped, VerdictKind};
use crate::history::SwitchWhy;
use crate::proxy::replay::Recorder;
use crate::proxy::{Answers, ProxyStats, LATENCY_BUCKETS_US, NO_ANSWER};
use crate::supervisor::SupervisorHandle;
use crate::webhooks::WebhookStats;

/// The `Content-Type` of [`Metrics::render`]'s text (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Every series' name starts with this and `_`.
const PREFIX: &str = "understudy";

/// The `class` label of [`Answers::classes`], index for index.
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

/// Label pairs of a family; built once per series (at start, or per scrape), never per request.
type Labels = Vec<(&'static str, &'static str)>;

/// One instance's answers to one source of requests: `(role, source, answers)`.
type AnswerSeries<'a> = (&'static str, &'static str, &'a Answers);

/// The registry behind `GET /metrics`. Cheap to clone: the admin API's handlers share one.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Register every series: the event counters (returned, to be fed by [`count_events`]) and
    /// the scrape-time collector that reads `stats`, `recorder`'s size and `supervisor`'s status.
    pub fn new(
        stats: Arc<ProxyStats>,
        recorder: Arc<Recorder>,
        supervisor: SupervisorHandle,
        webhooks: Arc<[Arc<WebhookStats>]>,
    ) -> (Metrics, EventCounters) {
        let mut registry = Registry::with_prefix(PREFIX);
        let counters = EventCounters::register(&mut registry);
        registry.register_collector(Box::new(Scrape {
            stats,
            recorder,
            supervisor,
            webhooks,
        }));
        let metrics = Metrics {
            registry: Arc::new(registry),
        };
        (metrics, counters)
    }

    /// The exposition, as of now. Reads a few small files under `/proc` (the children's usage).
    pub fn render(&self) -> Result<String, fmt::Error> {
        let mut out = String::with_capacity(8 * 1024);
        prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Counters of the supervisor's decisions, bumped by [`count_events`]. The families are made once
/// and every handle is kept, so each series shows (at 0) before its first event and counting one
/// is an atomic add.
#[derive(Debug)]
pub struct EventCounters {
    /// Scored verdicts, by kind: wait, promote, reject.
    verdicts: [Counter; 3],
    /// Switches that were not rollbacks, by why: first, automatic, operator, scheduled,
    /// crash_loop.
    promotions: [Counter; 6],
    /// Promotions that failed before the switch.
    promotion_failures: Counter,
    /// Builds refused or rejected.
    rejections: Counter,
    /// Completed rollbacks by trigger: guard, operator.
    rollbacks: [Counter; 2],
    /// Times the guard found a promoted version worse than the one it replaced.
    guard_trips: Counter,
    /// Restarts of running scheduled after it failed.
    restarts: Counter,
    /// Events this counter missed because it fell behind the broadcast.
    missed: Counter,
    /// The version the guard is bringing back, until the next switch (which is then its).
    guard_target: Option<Version>,
}

/// The `why` label of promotions, as [`EventCounters::promotions`] is indexed.
const PROMOTION_WHYS: [&str; 6] = [
    "first",
    "automatic",
    "operator",
    "scheduled",
    "crash_loop",
    "canary",
];
/// The `verdict` label, as [`EventCounters::verdicts`] is indexed.
const VERDICTS: [&str; 3] = ["wait", "promote", "reject"];
/// The `trigger` label of rollbacks, as [`EventCounters::rollbacks`] is indexed.
const TRIGGERS: [&str; 2] = ["guard", "operator"];

impl EventCounters {
    /// Help texts here end without a period: the registry adds one.
    fn register(registry: &mut Registry) -> EventCounters {
        let mut plain = |name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let promotion_failures = plain(
            "promotion_failures",
            "Promotions and rollbacks that failed before the switch; running stayed",
        );
        let rejections = plain("rejections", "Builds refused or rejected");
        let guard_trips = plain(
            "guard_trips",
            "Times the guard found a promoted version doing worse than the one it replaced",
        );
        let restarts = plain(
            "instance_restarts",
            "Restarts of the running instance scheduled after it failed",
        );
        let missed = plain(
            "metrics_events_missed",
            "Events the decision counters missed by falling behind; they undercount by this much",
        );
        EventCounters {
            verdicts: family(
                registry,
                "verdicts",
                "Verdicts of the scorer about the build under test, by kind",
                "verdict",
                VERDICTS,
            ),
            promotions: family(
                registry,
                "promotions",
                "Switches of running to a new version, by why (rollbacks are counted apart)",
                "why",
                PROMOTION_WHYS,
            ),
            promotion_failures,
            rejections,
            rollbacks: family(
                registry,
                "rollbacks",
                "Completed rollbacks to an earlier version, by trigger (the guard or an operator)",
                "trigger",
                TRIGGERS,
            ),
            guard_trips,
            restarts,
            missed,
            guard_target: None,
        }
    }

    /// Count one event.
    pub fn count(&mut self, event: &Event) {
        match event {
            Event::Scored { verdict, .. } => {
                let i = match verdict {
                    VerdictKind::Wait => 0,
                    VerdictKind::Promote => 1,
                    VerdictKind::Reject => 2,
                };
                self.verdicts[i].inc();
            }
            Event::Promoted { to, why, .. } => {
                // A rollback the guard asked for ends in the next switch, to the version it named.
                let guard = self.guard_target.take();
                let i = match why {
                    SwitchWhy::Rollback => {
                        let by_guard = guard.as_ref() == Some(to);
                        self.rollbacks[usize::from(!by_guard)].inc();
                        return;
                    }
                    SwitchWhy::First => 0,
                    SwitchWhy::Automatic => 1,
                    SwitchWhy::Operator => 2,
                    SwitchWhy::Scheduled => 3,
                    SwitchWhy::CrashLoop => 4,
                    SwitchWhy::Canary => 5,
                };
                self.promotions[i].inc();
            }
            Event::PromotionFailed { .. } => {
                self.guard_target = None;
                self.promotion_failures.inc();
            }
            Event::Rejected { .. } => {
                self.rejections.inc();
            }
            Event::GuardTripped { to, .. } => {
                self.guard_target = Some(to.clone());
                self.guard_trips.inc();
            }
            Event::RestartScheduled { .. } => {
                self.restarts.inc();
            }
            _ => {}
        }
    }

    /// `n` events went by unseen.
    pub fn missed(&self, n: u64) {
        self.missed.inc_by(n);
    }
}

/// Register a counter family with one label, create a series for each of `values`, and keep the
/// handles (in the order of `values`).
fn family<const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: [&'static str; N],
) -> [Counter; N] {
    let f = Family::<Labels, Counter>::default();
    registry.register(name, help, f.clone());
    values.map(|v| f.get_or_create(&vec![(label, v)]).clone())
}

/// Follow the event stream and count each event until `stop`. Falling behind skips the events
/// lost (counted in `understudy_metrics_events_missed_total`); it never slows the supervisor.
pub async fn count_events(
    mut events: broadcast::Receiver<Arc<Stamped>>,
    mut counters: EventCounters,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            next = events.recv() => match next {
                Ok(e) => counters.count(&e.event),
                Err(RecvError::Lagged(n)) => counters.missed(n),
                // Nothing more will come; a control task ends only at stop.
                Err(RecvError::Closed) => return stop.cancelled().await,
            },
        }
    }
}

/// The collector asked at every scrape: traffic counters, the current score, children's usage.
struct Scrape {
    stats: Arc<ProxyStats>,
    /// The requests kept for replay: `understudy_replay_recorded`.
    recorder: Arc<Recorder>,
    supervisor: SupervisorHandle,
    webhooks: Arc<[Arc<WebhookStats>]>,
}

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrape").finish_non_exhaustive()
    }
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), fmt::Error> {
        let s = &self.stats;
        encode_proxy_counters(&mut enc, s)?;
        let m = enc.encode_descriptor(
            "replay_recorded",
            "Recent distinct user requests kept in memory for replay now (at most REPLAY_KEEP; 0 with REPLAY=off).",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.recorder.len() as i64).encode(m)?;
        let m = enc.encode_descriptor(
            "requests_waiting",
            "User requests waiting now for an instance to serve them: held for the guard's rollback, or refused by an instance that has just gone (each up to UPSTREAM_TIMEOUT).",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(s.waiting.load(Ordering::Relaxed) as i64).encode(m)?;
        encode_connections(&mut enc, s)?;
        let series = [
            ("running", "live", &s.running),
            ("testing", "live", &s.testing),
            ("testing", "replay", &s.testing_replayed),
            ("testing", "canary", &s.testing_canary),
        ];
        encode_answers(&mut enc, &series)?;
        encode_webhooks(&mut enc, &self.webhooks)?;

        let status = self.supervisor.status();
        encode_state(&mut enc, &status)?;
        let children: Vec<(&'static str, u32)> = [
            ("running", status.running.as_ref()),
            ("testing", status.testing.as_ref()),
        ]
        .into_iter()
        .filter_map(|(role, i)| Some((role, i?.pid?)))
        .collect();
        encode_children(&mut enc, &usage(&children))
    }
}

/// The proxy's counters of user requests and of the copies made for testing, each
/// `understudy_<name>_total`: its name, its help, and where the proxy keeps it.
type ProxyCounter = (&'static str, &'static str, fn(&ProxyStats) -> &AtomicU64);

/// See [`ProxyCounter`].
const PROXY_COUNTERS: [ProxyCounter; 15] = [
            (
                "requests",
                "User requests received by the proxy.",
                |s| &*s.requests,
            ),
            (
                "unavailable",
                "User requests answered 503 by understudy because nothing was running.",
                |s| &s.unavailable,
            ),
            (
                "rerouted",
                "User requests whose instance refused the connection (it had just exited or closed its port): they waited for where users go next, up to UPSTREAM_TIMEOUT, rather than get a 502 at once (one still refused then is counted in bad_gateway).",
                |s| &s.rerouted,
            ),
            (
                "left_waiting",
                "User requests whose user closed its connection (or half-closed it, as nginx takes it too) while they waited for an instance: never sent.",
                |s| &s.left_waiting,
            ),
            (
                "refused",
                "User requests refused before anything was forwarded: malformed or smuggling heads (400), bodies over MAX_REQUEST_BODY (413), oversized heads (431), CONNECT (405).",
                |s| &s.refused,
            ),
            (
                "bad_gateway",
                "User requests answered 502 by understudy: running refused, reset or answered something that is not HTTP/1.x.",
                |s| &s.bad_gateway,
            ),
            (
                "gateway_timeout",
                "User requests answered 504 by understudy: running sent nothing for UPSTREAM_TIMEOUT.",
                |s| &s.gateway_timeout,
            ),
            (
                "upstream_broken",
                "Answers from running that broke off after their head was relayed; the user's connection was closed.",
                |s| &s.upstream_broken,
            ),
            (
                "mirrored",
                "Copies of user requests handed to the mirror queue for testing.",
                |s| &s.mirrored,
            ),
            (
                "mirror_dropped",
                "Copies dropped because the mirror queue was full (testing too slow).",
                |s| &s.mirror_dropped,
            ),
            (
                "replayed",
                "Recorded user requests replayed to testing and the secondary (never running) because live traffic was too thin to reach MIN_MIRRORED within STABLE_WINDOW (REPLAY); testing's answers to them are counted under source replay in understudy_responses_total.",
                |s| &s.replayed,
            ),
            (
                "diff_skipped",
                "Sampled copies whose answers were not compared because diffing was at its bound (16 sampled copies in flight, or the low-priority diff threads and their queue busy): diffing sheds load instead of slowing users or the mirror.",
                |s| &s.diff_skipped,
            ),
            (
                "mirror_retired",
                "Copies not sent to testing, or whose failure was not counted, because that instance was being stopped meanwhile (promoted past, rejected, replaced).",
                |s| &s.mirror_retired,
            ),
            (
                "secondary_skipped",
                "Copies sent to testing without the secondary, because twice MIRROR_CONCURRENCY of the secondary's answers were already awaited: a stalled secondary costs noise measurements, never testing's pace.",
                |s| &s.secondary_skipped,
            ),
            (
                "mirror_skipped_body",
                "Eligible requests not copied: body over MIRROR_MAX_BODY, of unknown length, or not read whole because running answered first.",
                |s| &s.mirror_skipped_body,
            ),
        ];

/// Each of [`PROXY_COUNTERS`], as it stands now.
fn encode_proxy_counters(enc: &mut DescriptorEncoder, s: &ProxyStats) -> Result<(), fmt::Error> {
    for (name, help, counter) in PROXY_COUNTERS {
        let m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
        ConstCounter::new(counter(s).load(Ordering::Relaxed)).encode(m)?;
    }
    Ok(())
}

/// Users' open connections on each proxy thread, `understudy_user_connections{thread}`.
fn encode_connections(enc: &mut DescriptorEncoder, s: &ProxyStats) -> Result<(), fmt::Error> {
    let Some(conns) = s.connections.get() else {
        return Ok(());
    };
    let mut m = enc.encode_descriptor(
        "user_connections",
        "Users' connections open now, by proxy thread (WORKER_THREADS): each new one goes to the thread with the fewest.",
        None,
        MetricType::Gauge,
    )?;
    for (thread, open) in conns.per_thread().enumerate() {
        let thread = thread.to_string();
        let labels = [("thread", thread.as_str())];
        ConstGauge::new(open as i64).encode(m.encode_family(&&labels[..])?)?;
    }
    Ok(())
}

/// What the supervisor's status says: `understudy_disk_full`, and the latest score and its parts
/// while a build is under test.
fn encode_state(
    enc: &mut DescriptorEncoder,
    status: &crate::supervisor::Status,
) -> Result<(), fmt::Error> {
    let m = enc.encode_descriptor(
            "disk_full",
            "1 while understudy cannot save its state files (a full or read-only disk; it keeps serving and retries), else 0.",
            None,
            MetricType::Gauge,
        )?;
    ConstGauge::new(i64::from(status.disk_full.is_some())).encode(m)?;
    let m = enc.encode_descriptor(
        "canary_weight",
        "Percent of users served by the build under test in its canary step (CANARY_STEPS); 0 outside one.",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(status.canary.as_ref().map_or(0.0, |c| c.weight)).encode(m)?;
    if let Some(v) = &status.verdict {
        let m = enc.encode_descriptor(
            "score",
            "The latest score of the build under test, 0-100 (the lowest part).",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(v.score)).encode(m)?;
        let mut m = enc.encode_descriptor(
            "score_part",
            "Each part of the latest score of the build under test, 0-100.",
            None,
            MetricType::Gauge,
        )?;
        for p in &v.parts {
            let labels = [("part", p.name)];
            ConstGauge::new(i64::from(p.score)).encode(m.encode_family(&&labels[..])?)?;
        }
    }
    Ok(())
}

/// `understudy_responses_total{role,source,class}` and
/// `understudy_request_duration_seconds{role,source}`.
fn encode_answers(
    enc: &mut DescriptorEncoder,
    series: &[AnswerSeries<'_>],
) -> Result<(), fmt::Error> {
    let mut m = enc.encode_descriptor(
        "responses",
        "Answers by instance (running: to users; testing: to copies), source (live: a user's \
         request or its copy; replay: a recorded request replayed to testing; canary: a user a \
         canary step sent to testing) and status class; class none: it did not answer (running: \
         the user got a 502 from understudy).",
        None,
        MetricType::Counter,
    )?;
    for (role, source, answers) in series {
        for (class, n) in CLASSES.iter().zip(answers.classes()) {
            let labels = [("role", *role), ("source", *source), ("class", *class)];
            ConstCounter::new(n).encode(m.encode_family(&&labels[..])?)?;
        }
    }
    let mut m = enc.encode_descriptor(
        "request_duration",
        "Time from sending a request to an instance to its response head (running: user \
         requests; testing: copies, source live or replay, or users in a canary step, source \
         canary).",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    for (role, source, answers) in series {
        let reading = answers.latency();
        let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_US
            .iter()
            .map(|us| *us as f64 / 1e6)
            .chain([f64::INFINITY])
            .zip(reading.buckets)
            .collect();
        // Count as the buckets add up, so `_count` always equals the `+Inf` bucket.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let labels = [("role", *role), ("source", *source)];
        m.encode_family(&&labels[..])?
            .encode_histogram::<NoLabelSet>(reading.sum.as_secs_f64(), count, &buckets, None)?;
    }
    debug_assert_eq!(CLASSES.len(), NO_ANSWER + 1);
    Ok(())
}

/// One child's usage, by role.
#[derive(Debug, Clone, PartialEq)]
struct Usage {
    role: &'static str,
    cpu_seconds: f64,
    resident_bytes: u64,
}

/// CPU time and resident memory of each `(role, pid)`; a process gone meanwhile is left out.
fn usage(children: &[(&'static str, u32)]) -> Vec<Usage> {
    let pids: Vec<u32> = children.iter().map(|(_, p)| *p).collect();
    children
        .iter()
        .zip(crate::usage::of_groups(&pids))
        .filter_map(|(&(role, _), u)| {
            let u = u?;
            Some(Usage {
                role,
                cpu_seconds: u.cpu_seconds,
                resident_bytes: u.resident_bytes,
            })
        })
        .collect()
}

/// Which of a receiver's counters a series shows.
type WebhookCounter = fn(&WebhookStats) -> &AtomicU64;

/// `understudy_webhook_delivered_total{url}` and `understudy_webhook_dropped_total{url}`, the
/// receiver named by scheme, host, port and place in WEBHOOK_URLS: `/metrics` needs no token, and
/// a chat webhook's path is its secret.
fn encode_webhooks(
    enc: &mut DescriptorEncoder,
    hooks: &[Arc<WebhookStats>],
) -> Result<(), fmt::Error> {
    if hooks.is_empty() {
        return Ok(());
    }
    let series: [(&str, &str, WebhookCounter); 2] = [
        ("webhook_delivered", "Events a webhook receiver answered 2xx to.", |w| &w.delivered),
        (
            "webhook_dropped",
            "Events a webhook receiver never got: lost while it was too slow, or given up after retries.",
            |w| &w.dropped,
        ),
    ];
    for (name, help, field) in series {
        let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
        for w in hooks {
            let labels = [("url", w.url.as_str())];
            let n = field(w).load(Ordering::Relaxed);
            ConstCounter::new(n).encode(m.encode_family(&&labels[..])?)?;
        }
    }
    Ok(())
}

/// `understudy_child_cpu_seconds_total{role}` and `understudy_child_resident_memory_bytes{role}`.
fn encode_children(enc: &mut DescriptorEncoder, children: &[Usage]) -> Result<(), fmt::Error> {
    if children.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(
        "child_cpu",
        "CPU time (user and system) used by each instance (all processes of its group, so a start script and the server it waits on count together).",
        Some(&Unit::Seconds),
        MetricType::Counter,
    )?;
    for c in children {
        let labels = [("role", c.role)];
        ConstCounter::new(c.cpu_seconds).encode(m.encode_family(&&labels[..])?)?;
    }
    let mut m = enc.encode_descriptor(
        "child_resident_memory",
        "Resident memory of each instance (all processes of its group).",
        Some(&Unit::Bytes),
        MetricType::Gauge,
    )?;
    for c in children {
        let labels = [("role", c.role)];
        ConstGauge::new(c.resident_bytes).encode(m.encode_family(&&labels[..])?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
