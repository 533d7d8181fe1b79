//! What the proxy counts: per-instance answers by status class with a latency histogram, and the
//! proxy's own counters; relaxed atomics read by status and metrics, never a lock on the request
//! path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

/// Counters shown in status and metrics; relaxed atomics, never a lock on the request path.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// User requests received; shared with the scorer, for which it is running's denominator.
    pub requests: Arc<AtomicU64>,
    /// User requests answered 502 (running unreachable).
    pub bad_gateway: AtomicU64,
    /// Answers whose body broke off after their head was sent (running reset or closed early):
    /// the user's connection was closed, the next request is served.
    pub upstream_broken: AtomicU64,
    /// User requests answered 504 (running sent nothing for `UPSTREAM_TIMEOUT`).
    pub gateway_timeout: AtomicU64,
    /// User requests answered 503 (nothing running).
    pub unavailable: AtomicU64,
    /// User requests whose instance refused the connection (it had just gone): they waited for
    /// where users go next rather than get a 502 at once.
    pub rerouted: AtomicU64,
    /// User requests whose user closed its connection while they waited: never sent (nginx's
    /// 499).
    pub left_waiting: AtomicU64,
    /// User requests waiting now for an instance (held for the guard's rollback, or after a
    /// refusal), so an operator sees users held while status may still show running ready.
    pub waiting: AtomicU64,
    /// User requests refused before anything was forwarded: smuggling attempts (400) and bodies
    /// over `MAX_REQUEST_BODY` (413).
    pub refused: AtomicU64,
    /// Copies handed to the mirror queue.
    pub mirrored: AtomicU64,
    /// User requests not copied while a build was tested because `MIRROR_METHODS` leaves their
    /// method out (writes) or they open a WebSocket; shared with the scorer, so a wait can say
    /// traffic is there, unmirrorable.
    pub not_mirrorable: Arc<AtomicU64>,
    /// Copies dropped because the mirror queue was full.
    pub mirror_dropped: AtomicU64,
    /// Recorded requests replayed to testing and the secondary (low traffic, `REPLAY`).
    pub replayed: AtomicU64,
    /// Eligible requests not mirrored because their body was too large, unsized, or not read
    /// whole (running answered first).
    pub mirror_skipped_body: AtomicU64,
    /// Copies not sent, or whose failure was not counted, because their testing instance was
    /// being stopped meanwhile (promoted past, rejected, replaced).
    pub mirror_retired: AtomicU64,
    /// Copies sent to testing without the secondary, because twice `MIRROR_CONCURRENCY` of the
    /// secondary's answers were already awaited (a stalled secondary never slows testing's).
    pub secondary_skipped: AtomicU64,
    /// Sampled copies not compared because diffing was at its bound.
    pub diff_skipped: AtomicU64,
    /// What running answered to user requests.
    pub running: Answers,
    /// What testing answered to copies of live user requests.
    pub testing: Answers,
    /// What testing answered to replayed recorded requests (of `replayed`), kept apart so live
    /// and replayed answers are never mixed in metrics.
    pub testing_replayed: Answers,
    /// What testing answered to the users a canary step sent to it (served, not copies).
    pub testing_canary: Answers,
    /// Users' open connections, per proxy thread; set once the proxy starts.
    pub connections: std::sync::OnceLock<Arc<super::Connections>>,
}

/// Upper bounds of the latency buckets, in microseconds: 1 ms to 10 s, the range in which an
/// HTTP service's answers are told apart (slower ones land in the overflow bucket).
pub const LATENCY_BUCKETS_US: [u64; 13] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

/// Index of [`Answers::classes`] counting requests that got no answer at all.
pub const NO_ANSWER: usize = 5;

/// What one instance answered: a count per status class and a latency histogram (time to the
/// response head). Plain relaxed atomics, so recording an answer costs three atomic adds on the
/// request path, never a lock, an allocation or a wake-up; the metrics module reads them at
/// scrape time.
#[derive(Debug, Default)]
pub struct Answers {
    /// Per status class: 1xx, 2xx, 3xx, 4xx, 5xx, then no answer ([`NO_ANSWER`]).
    classes: [AtomicU64; 6],
    /// Answers per latency bucket (not cumulative), the last one past [`LATENCY_BUCKETS_US`].
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    /// Sum of the latencies, in nanoseconds (wraps after 584 years of waiting).
    latency_sum_ns: AtomicU64,
}

/// A reading of [`Answers`]' latency histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyReading {
    /// Answers per bucket of [`LATENCY_BUCKETS_US`] (not cumulative), then the overflow.
    pub buckets: [u64; LATENCY_BUCKETS_US.len() + 1],
    /// Sum of the latencies.
    pub sum: Duration,
}

impl Answers {
    /// An answer with `status` after `latency`.
    pub fn answered(&self, status: StatusCode, latency: Duration) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.classes[class].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BUCKETS_US.partition_point(|&bound| bound * 1_000 < ns);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// A request that got no answer (refused, reset, timed out).
    pub fn unanswered(&self) {
        self.classes[NO_ANSWER].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts per status class, indexed as [`Answers::answered`] fills them (then [`NO_ANSWER`]).
    pub fn classes(&self) -> [u64; 6] {
        std::array::from_fn(|i| self.classes[i].load(Ordering::Relaxed))
    }

    /// The latency histogram as it stands.
    pub fn latency(&self) -> LatencyReading {
        LatencyReading {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum: Duration::from_nanos(self.latency_sum_ns.load(Ordering::Relaxed)),
        }
    }
}
