//! The scorecard: what the scorer tallies for one testing instance (pairs per endpoint, latency
//! samples, log lines, resource use) and the plain [`Summary`] it hands to
//! [`evaluate`](super::evaluate).

use std::collections::BTreeMap;
use std::time::Duration;

use http::Method;
use serde::Serialize;
use tokio::time::Instant;

use super::logs::{LevelRules, LogTail};
use super::pair::Pair;
use crate::diff::{fold_id, DiffStats};
use crate::instance::InstanceId;

/// Latency samples kept per side; older ones are overwritten so memory stays bounded.
const LATENCY_SAMPLES: usize = 8192;

/// Paired latencies are judged per moment of this length (see `score::evaluation`): copies in
/// flight together share a stall of either process, so one moment is one piece of evidence.
pub const LATENCY_MOMENT: Duration = Duration::from_millis(250);
/// `MAX_ENDPOINTS` until the scorer says otherwise.
const MAX_ENDPOINTS_DEFAULT: usize = 256;
/// The row that counts every endpoint past `MAX_ENDPOINTS`: the same row as the differences'
/// tally, so the two always agree on what it holds.
pub use crate::diff::OTHER_ENDPOINTS;

/// Counts for one endpoint (method + folded path).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointStats {
    /// Pairs seen.
    pub pairs: u64,
    /// Of those, pairs whose statuses were judged against the secondary's answer to the same
    /// copy (the rest against running's), so a reason can say what testing was compared with.
    pub status_vs_secondary: u64,
    /// Running's version answered 5xx: the secondary where it answered the copy, else running.
    pub baseline_5xx: u64,
    /// Testing answered 5xx or gave no answer.
    pub testing_5xx: u64,
    /// Of those, the 5xx testing answered: its missing answers (the mirror's timeouts and
    /// errors) left out, so a rare endpoint waits for its pairs only over what the app said.
    pub testing_5xx_answered: u64,
    /// Why testing's last missing answer here was missing (the mirror's error: a timeout, a
    /// refused connection), so a reason tells a hang from a server error.
    pub testing_no_answer_why: Option<String>,
    /// Running's version (as for `baseline_5xx`) answered non-404 and testing 404/405/501: the
    /// endpoint is gone on testing.
    pub missing_on_testing: u64,
    /// Running's version answered 2xx and testing 4xx (other than the missing-endpoint codes).
    pub ok_to_client_error: u64,
    /// Pairs where both answered the same status (those whose answers can be compared).
    pub same_status: u64,
    /// Pairs with the same status that were diffed: status and headers always, bodies unless
    /// they were over `DIFF_MAX_BODY` (see `EndpointDiffs::bodies_compared` for those).
    pub bodies_compared: u64,
    /// Of those, bodies that differed.
    pub bodies_differ: u64,
    /// Copies both testing and the secondary answered (their latencies are paired).
    pub latency_paired: u64,
    /// Sum over those of ln(testing's latency / the secondary's): divided by `latency_paired`,
    /// the log of the typical factor by which testing is slower here.
    pub latency_log_ratio: f64,
    /// Pairs whose status changed on testing, and the noise they are judged against.
    pub statuses: super::statuses::StatusChanges,
}

impl EndpointStats {
    /// Copies testing gave no answer to (timed out, refused, broke off): counted with its 5xx.
    pub fn testing_unanswered(&self) -> u64 {
        self.testing_5xx - self.testing_5xx_answered
    }

    /// The typical (geometric mean) factor by which testing answered slower than the secondary.
    pub fn latency_shift(&self) -> Option<f64> {
        (self.latency_paired > 0)
            .then(|| (self.latency_log_ratio / self.latency_paired as f64).exp())
    }
}

/// What the verdict is computed from; plain data, built by [`Scorecard::summary`].
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Time since testing became ready.
    pub elapsed: Duration,
    /// Mirrored pairs.
    pub pairs: u64,
    /// Per endpoint.
    pub endpoints: BTreeMap<String, EndpointStats>,
    /// User requests running served in the window (the denominator for its log lines); in a
    /// canary phase, without those testing served.
    pub running_requests: u64,
    /// User requests testing served in canary steps: its log lines count for them too.
    pub canary_served: u64,
    /// Error lines in testing's logs since it started (startup errors count).
    pub testing_errors: u64,
    /// The last of them, and the file (in its instance folder) it was in: the example a
    /// rejection on them shows.
    pub testing_last_error: Option<(String, String)>,
    /// Warn lines in testing's logs since it started.
    pub testing_warns: u64,
    /// Error lines in running's logs during the window (its startup errors do not count).
    pub running_errors: u64,
    /// Warn lines in running's logs during the window.
    pub running_warns: u64,
    /// The secondary's log lines from its start and the copies it answered since it is followed
    /// (`None` without one): what testing's lines are judged against when it answered any.
    pub secondary_logs: Option<LogCounts>,
    /// Running's p95 latency over the pairs.
    pub running_p95: Option<Duration>,
    /// Testing's p95 latency over the pairs.
    pub testing_p95: Option<Duration>,
    /// Running's latency samples, in seconds (for Mann-Whitney U).
    pub running_latencies: Vec<f64>,
    /// Replay was wanted for traffic and has nothing more to offer: every recorded request was
    /// replayed its `REPLAY_REPEAT` times (set by the scorer from the replay task's answer).
    pub replay_exhausted: bool,
    /// User requests in the window not mirrored because `MIRROR_METHODS` leaves their method out
    /// or they open a WebSocket (set by the scorer from the proxy's count).
    pub not_mirrorable: u64,
    /// Pairs counted under [`OTHER_ENDPOINTS`] because `MAX_ENDPOINTS` were already kept.
    pub endpoint_overflow: u64,
    /// The secondary's p95 over the copies it answered with testing.
    pub secondary_p95: Option<Duration>,
    /// Testing's p95 over those same copies.
    pub testing_paired_p95: Option<Duration>,
    /// (testing, secondary) latency of the same copy, in seconds, and the [`LATENCY_MOMENT`] in
    /// which the pair completed, oldest first: the paired comparison.
    pub latency_pairs: Vec<(f64, f64, u32)>,
    /// Testing's latency samples, in seconds.
    pub testing_latencies: Vec<f64>,
    /// `latency_pairs` split by endpoint (those past `MAX_ENDPOINTS` under [`OTHER_ENDPOINTS`]):
    /// one slow endpoint among many fast ones is judged on its own copies.
    pub endpoint_latency_pairs: BTreeMap<String, Vec<(f64, f64, u32)>>,
    /// Differences between testing's and running's answers.
    pub diffs: DiffStats,
    /// Differences between the secondary's and running's answers (the noise).
    pub noise: DiffStats,
    /// Whether a secondary is expected to measure noise (`NOISE_CANCEL=on`).
    pub noise_expected: bool,
    /// Resource use of both instances, when sampled.
    pub resources: Option<Resources>,
    /// Of `pairs`, those replayed from recorded requests (judged against the secondary).
    pub replayed: u64,
    /// Distinct recorded requests those came from.
    pub recorded: u64,
    /// Endpoints the verdict waited on of which the replay task holds no recorded request left
    /// to replay (it says so; the scorer copies it in before each evaluation).
    pub unreplayable: std::collections::BTreeSet<String>,
}

/// CPU and memory of testing and of what it is compared with, each instance's whole process
/// group, over the scoring window: the secondary (same copies, same path) when one runs, else
/// running (which also serves users).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Resources {
    /// What testing is compared with: `secondary` or `running`.
    pub other: &'static str,
    /// Its resident memory, bytes.
    pub other_rss: u64,
    /// Testing's resident memory, bytes.
    pub testing_rss: u64,
    /// Its CPU seconds since scoring began.
    pub other_cpu: f64,
    /// Testing's CPU seconds since scoring began.
    pub testing_cpu: f64,
    /// Requests it answered over the same time.
    pub other_requests: u64,
    /// Mirrored requests testing answered over the same time.
    pub testing_requests: u64,
}

/// Fold `/users/42/orders/9f1c…` into `/users/{n}/orders/{id}` so one endpoint is one key.
pub fn endpoint_key(method: &Method, path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 8);
    endpoint_key_into(&mut out, method, path);
    out
}

/// [`endpoint_key`] written into `out` (cleared first), so a caller looking a row up per answer
/// reuses one buffer and allocates only for a new row.
pub fn endpoint_key_into(out: &mut String, method: &Method, path: &str) {
    out.clear();
    out.push_str(method.as_str());
    out.push(' ');
    let mut first = true;
    for seg in path.split('/') {
        if !first {
            out.push('/');
        }
        first = false;
        out.push_str(fold_id(seg));
    }
    if path.is_empty() {
        out.push('/');
    }
}

/// FNV-1a's start and prime: a hash that streams, so a key hashed whole and hashed piece by piece
/// as [`endpoint_hash`] makes it agree.
const FNV: (u64, u64) = (0xcbf2_9ce4_8422_2325, 0x0100_0000_01b3);

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV.1);
    }
    h
}

/// A hash of an endpoint key ([`endpoint_key`]'s form), never 0 (an empty slot).
pub fn key_hash(key: &str) -> u64 {
    fnv(FNV.0, key.as_bytes()).max(1)
}

/// [`key_hash`] of `endpoint_key(method, path)` without building the key: the user path asks it
/// while the verdict waits on an endpoint with nothing to replay, with no allocation and no lock.
pub fn endpoint_hash(method: &Method, path: &str) -> u64 {
    let mut h = fnv(fnv(FNV.0, method.as_str().as_bytes()), b" ");
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            h = fnv(h, b"/");
        }
        h = fnv(h, fold_id(seg).as_bytes());
    }
    if path.is_empty() {
        h = fnv(h, b"/");
    }
    h.max(1)
}

/// Whether a request for `method` `path` is of the endpoint `key` ([`endpoint_key`]'s form),
/// without building its key: the user path asks this of every request while the verdict waits
/// on an endpoint with nothing recorded to replay.
pub fn endpoint_is(method: &Method, path: &str, key: &str) -> bool {
    let Some(folded) = key
        .strip_prefix(method.as_str())
        .and_then(|k| k.strip_prefix(' '))
    else {
        return false;
    };
    if path.is_empty() {
        return folded == "/";
    }
    let mut want = folded.split('/');
    path.split('/').all(|seg| want.next() == Some(fold_id(seg))) && want.next().is_none()
}

/// What to score: the testing instance against the running one.
#[derive(Debug, Clone, PartialEq)]
pub struct Watch {
    /// The testing instance.
    pub testing: InstanceId,
    /// Its instance folder (logs counted from its start).
    pub testing_dir: std::path::PathBuf,
    /// Its process, for memory and CPU.
    pub testing_pid: u32,
    /// Running's instance folder (logs counted from now).
    pub running_dir: std::path::PathBuf,
    /// Running's process.
    pub running_pid: Option<u32>,
    /// Whether a secondary measures noise for this build (`NOISE_CANCEL=on` and one could run).
    pub noise: bool,
    /// The secondary, when it is already serving: testing's resources and log lines are
    /// compared with its (later ones arrive as [`super::ScorerControl::Secondary`]).
    pub secondary: Option<SecondaryWatch>,
}

/// A secondary the scorer follows: its process group for resources, its folder for log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecondaryWatch {
    /// Its pid, also its process group's id.
    pub pid: u32,
    /// Its instance folder (logs counted from its start, as testing's are).
    pub dir: std::path::PathBuf,
}

/// Error and warn lines an instance logged, and the requests it answered meanwhile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogCounts {
    /// Error lines.
    pub errors: u64,
    /// Warn lines.
    pub warns: u64,
    /// Requests it answered.
    pub requests: u64,
}

/// Running tallies for the current testing instance.
pub struct Scorecard {
    /// The testing instance scored; pairs for any other are ignored.
    pub(super) testing: InstanceId,
    since: Instant,
    pairs: u64,
    endpoints: BTreeMap<String, EndpointStats>,
    /// `MAX_ENDPOINTS`: endpoints tallied alone before the rest share [`OTHER_ENDPOINTS`].
    max_endpoints: usize,
    /// Pairs counted under [`OTHER_ENDPOINTS`].
    endpoint_overflow: u64,
    running_latency: Vec<Duration>,
    testing_latency: Vec<Duration>,
    /// (testing, secondary) latencies of copies both answered, the moment each completed and
    /// its row's index in `latency_rows`, ring-buffered like the others.
    paired_latency: Vec<(Duration, Duration, u32, u32)>,
    /// The rows (endpoints) `paired_latency` refers to by index: at most `MAX_ENDPOINTS` + 1.
    latency_rows: Vec<String>,
    /// Each row's index in `latency_rows`, by its key: a pair finds its row without a search.
    latency_index: std::collections::HashMap<String, u32>,
    paired: u64,
    requests_at_start: u64,
    /// The proxy's count of requests not mirrored for their method when this card began.
    not_mirrored_at_start: u64,
    testing_log: LogTail,
    running_log: LogTail,
    /// The secondary's pid, its log lines, and `secondary_answered` when they began to be counted.
    secondary_log: Option<(u32, LogTail, u64)>,
    diffs: DiffStats,
    noise_diffs: DiffStats,
    /// Whether a secondary measures noise for this build.
    pub(super) noise: bool,
    /// The answers of the current canary step, while one runs.
    pub(super) canary: Option<super::canary::CanaryCard>,
    /// User requests testing served in all canary steps so far.
    pub(super) canary_served: u64,
    /// Testing's and running's pids, with their CPU seconds and the request count when first
    /// sampled (CPU per request is measured from there).
    testing_cpu: CpuBase,
    running_cpu: CpuBase,
    /// The secondary's process group, once it runs (the fairer comparator).
    secondary_cpu: CpuBase,
    /// Copies the secondary answered.
    secondary_answered: u64,
    /// Pairs replayed from recorded requests.
    replayed: u64,
    /// Serials of the recorded requests replayed (at most [`MAX_RECORDED_SEEN`]).
    recorded: std::collections::HashSet<u64>,
}

/// Distinct recorded requests a scorecard tells apart; past it the count is a floor.
const MAX_RECORDED_SEEN: usize = 100_000;

/// A process's CPU at the first sample, to measure what it used since.
#[derive(Debug, Clone, Copy, Default)]
struct CpuBase {
    pid: u32,
    first: Option<(f64, u64)>,
}

impl Scorecard {
    /// A fresh scorecard for `testing`, logs counted from testing's start and from running's now.
    pub fn new(watch: Watch, requests_now: u64, now: Instant) -> Scorecard {
        Scorecard {
            testing: watch.testing,
            since: now,
            pairs: 0,
            endpoints: BTreeMap::new(),
            max_endpoints: MAX_ENDPOINTS_DEFAULT,
            endpoint_overflow: 0,
            running_latency: Vec::new(),
            testing_latency: Vec::new(),
            paired_latency: Vec::new(),
            latency_rows: Vec::new(),
            latency_index: std::collections::HashMap::new(),
            paired: 0,
            requests_at_start: requests_now,
            not_mirrored_at_start: 0,
            testing_log: LogTail::from_start(watch.testing_dir),
            running_log: LogTail::from_now(watch.running_dir),
            diffs: DiffStats::default(),
            noise_diffs: DiffStats::default(),
            noise: watch.noise,
            canary: None,
            canary_served: 0,
            testing_cpu: CpuBase {
                pid: watch.testing_pid,
                first: None,
            },
            running_cpu: CpuBase {
                pid: watch.running_pid.unwrap_or(0),
                first: None,
            },
            secondary_cpu: CpuBase {
                pid: watch.secondary.as_ref().map_or(0, |s| s.pid),
                first: None,
            },
            secondary_log: watch
                .secondary
                .map(|s| (s.pid, LogTail::from_start(s.dir), 0)),
            secondary_answered: 0,
            replayed: 0,
            recorded: std::collections::HashSet::new(),
        }
    }

    /// Running was restarted: follow its new logs and process.
    pub(super) fn follow_running(&mut self, dir: std::path::PathBuf, pid: Option<u32>) {
        self.running_log.follow(dir);
        self.running_cpu = CpuBase {
            pid: pid.unwrap_or(0),
            first: None,
        };
    }

    /// The secondary runs (or stopped: `None`): its process group and its log lines (from its
    /// start, over the copies it answers from now) become the comparator.
    pub(super) fn follow_secondary(&mut self, secondary: Option<SecondaryWatch>) {
        self.secondary_cpu = CpuBase {
            pid: secondary.as_ref().map_or(0, |s| s.pid),
            first: None,
        };
        if secondary.as_ref().map(|s| s.pid) == self.secondary_pid() {
            return;
        }
        let answered = self.secondary_answered;
        self.secondary_log = secondary.map(|s| (s.pid, LogTail::from_start(s.dir), answered));
    }

    /// The secondary whose log lines are counted, if any.
    pub(super) fn secondary_pid(&self) -> Option<u32> {
        self.secondary_log.as_ref().map(|s| s.0)
    }

    /// The secondary was kept from the build tested before: what it logged and answered then is
    /// not this build's baseline, so its lines are counted from now, as its copies are (its
    /// startup lines no longer cancel testing's).
    pub(super) fn secondary_kept(&mut self) {
        if let Some((_, tail, since)) = self.secondary_log.as_mut() {
            *tail = LogTail::from_now(tail.dir().to_path_buf());
            *since = self.secondary_answered;
        }
    }

    /// Sample testing's process group and the comparator's (the secondary's when it runs, else
    /// running's); `None` until both can be read.
    fn resources(&mut self, running_requests: u64) -> Option<Resources> {
        let secondary = self.secondary_cpu.pid != 0;
        let (other, other_requests) = match secondary {
            true => ("secondary", self.secondary_answered),
            false => ("running", running_requests),
        };
        let (t, o) = match secondary {
            true => (self.testing_cpu.pid, self.secondary_cpu.pid),
            false => (self.testing_cpu.pid, self.running_cpu.pid),
        };
        if t == 0 || o == 0 {
            return None;
        }
        let usage = crate::usage::of_groups(&[t, o]);
        let (tu, ou) = (usage.first().copied()??, usage.get(1).copied()??);
        let tb = *self
            .testing_cpu
            .first
            .get_or_insert((tu.cpu_seconds, self.pairs));
        let base = match secondary {
            true => &mut self.secondary_cpu,
            false => &mut self.running_cpu,
        };
        let ob = *base.first.get_or_insert((ou.cpu_seconds, other_requests));
        Some(Resources {
            other,
            other_rss: ou.resident_bytes,
            testing_rss: tu.resident_bytes,
            other_cpu: ou.cpu_seconds - ob.0,
            testing_cpu: tu.cpu_seconds - tb.0,
            other_requests: other_requests.saturating_sub(ob.1),
            testing_requests: self.pairs.saturating_sub(tb.1),
        })
    }

    /// Use `MAX_ENDPOINTS` from now on (from the scorer's configuration).
    pub(super) fn limit_endpoints(&mut self, max: usize) {
        self.max_endpoints = max.max(1);
        self.diffs = DiffStats::with_limits(self.max_endpoints, self.max_endpoints);
        self.noise_diffs = DiffStats::with_limits(self.max_endpoints, self.max_endpoints);
    }

    /// The row a pair is tallied under: its endpoint, or [`OTHER_ENDPOINTS`] once
    /// `MAX_ENDPOINTS` are kept.
    fn row(&mut self, p: &Pair) -> String {
        let key = endpoint_key(&p.method, &p.path);
        if self.endpoints.contains_key(&key) || self.endpoints.len() < self.max_endpoints {
            return key;
        }
        self.endpoint_overflow += 1;
        OTHER_ENDPOINTS.to_string()
    }

    /// Count an answer served to a user in a canary step (ignored outside one).
    pub fn record_served(&mut self, s: &super::canary::Served) {
        if let Some(k) = self.canary.as_mut() {
            k.record(s);
            self.canary_served += u64::from(s.side == super::canary::Side::Testing);
        }
    }

    /// Fold one pair in.
    pub fn record(&mut self, p: &Pair, now: Instant) {
        if p.testing != self.testing {
            return;
        }
        self.pairs += 1;
        let key = self.row(p);
        let e = self.endpoints.entry(key.clone()).or_default();
        tally_statuses(e, p);
        e.statuses.record(p);
        if let Some(diffs) = &p.diffs {
            e.bodies_compared += 1;
            if diffs.iter().any(|d| d.kind.counts()) {
                e.bodies_differ += 1;
            }
            self.diffs.record(&key, diffs);
            if let Some(noise) = &p.noise {
                self.noise_diffs.record(&key, noise);
            }
        }
        if let (Some(t), Some(s)) = (p.testing_latency, p.secondary_latency) {
            e.latency_paired += 1;
            // Floored at a microsecond, so a zero reading cannot make an infinite factor.
            let floor = |d: Duration| d.as_secs_f64().max(1e-6);
            e.latency_log_ratio += (floor(t) / floor(s)).ln();
            let slot = (self.paired % LATENCY_SAMPLES as u64) as usize;
            self.paired += 1;
            let moment =
                now.saturating_duration_since(self.since).as_millis() / LATENCY_MOMENT.as_millis();
            let moment = u32::try_from(moment).unwrap_or(u32::MAX);
            let row = self.latency_row(&key);
            if self.paired_latency.len() < LATENCY_SAMPLES {
                self.paired_latency.push((t, s, moment, row));
            } else {
                self.paired_latency[slot] = (t, s, moment, row);
            }
        }
        if p.secondary_latency.is_some() {
            self.secondary_answered += 1;
        }
        if let Some(serial) = p.replayed {
            // The secondary answered it twice (the second answer measures the noise).
            self.secondary_answered += 1;
            self.replayed += 1;
            if self.recorded.len() < MAX_RECORDED_SEEN {
                self.recorded.insert(serial);
            }
        }
        let slot = (self.pairs as usize - 1) % LATENCY_SAMPLES;
        // A replayed pair has no answer of running's (its "running" side is the secondary's).
        if p.replayed.is_none() {
            push_sample(&mut self.running_latency, slot, p.running_latency);
        }
        if let Some(l) = p.testing_latency {
            push_sample(&mut self.testing_latency, slot, l);
        }
    }

    /// `key`'s index in `latency_rows`, added there when first seen.
    fn latency_row(&mut self, key: &str) -> u32 {
        if let Some(&i) = self.latency_index.get(key) {
            return i;
        }
        let i = u32::try_from(self.latency_rows.len()).unwrap_or(u32::MAX);
        self.latency_rows.push(key.to_string());
        self.latency_index.insert(key.to_string(), i);
        i
    }

    /// The kept latency pairs of each endpoint, oldest first.
    fn latency_by_endpoint(
        &self,
        pairs: &[(f64, f64, u32, u32)],
    ) -> BTreeMap<String, Vec<(f64, f64, u32)>> {
        let mut rows: Vec<Vec<(f64, f64, u32)>> = vec![Vec::new(); self.latency_rows.len()];
        for &(t, s, m, row) in pairs {
            if let Some(r) = rows.get_mut(row as usize) {
                r.push((t, s, m));
            }
        }
        let named = self.latency_rows.iter().cloned().zip(rows);
        named.filter(|(_, v)| !v.is_empty()).collect()
    }

    /// The kept (testing, secondary) latencies in seconds with their moments and rows, oldest first: the ring's oldest entry
    /// is at the next slot to be overwritten once it is full. The judge splits them by time.
    fn chronological_pairs(&self) -> Vec<(f64, f64, u32, u32)> {
        let n = self.paired_latency.len();
        let start = if n < LATENCY_SAMPLES {
            0
        } else {
            (self.paired % LATENCY_SAMPLES as u64) as usize
        };
        (0..n)
            .map(|i| self.paired_latency[(start + i) % n])
            .map(|(t, s, m, row)| (t.as_secs_f64(), s.as_secs_f64(), m, row))
            .collect()
    }

    /// Count requests not mirrored for their method from the proxy's count `now` on.
    pub fn count_not_mirrored_from(&mut self, now: u64) {
        self.not_mirrored_at_start = now;
    }

    /// Requests not mirrored for their method since this card began, the proxy's count being `now`.
    pub fn not_mirrored_since(&self, now: u64) -> u64 {
        now.saturating_sub(self.not_mirrored_at_start)
    }

    /// Read new log lines, sample both processes and summarise.
    pub fn summary(
        &mut self,
        rules: &LevelRules,
        running_requests_now: u64,
        now: Instant,
        noise_expected: bool,
    ) -> Summary {
        let (te, tw) = self.testing_log.poll(rules);
        let (re, rw) = self.running_log.poll(rules);
        let answered = self.secondary_answered;
        let secondary_logs = self.secondary_log.as_mut().map(|(_, tail, since)| {
            let (errors, warns) = tail.poll(rules);
            LogCounts {
                errors,
                warns,
                requests: answered - *since,
            }
        });
        let secs = |v: &[Duration]| v.iter().map(Duration::as_secs_f64).collect::<Vec<_>>();
        let chronological = self.chronological_pairs();
        Summary {
            latency_pairs: chronological
                .iter()
                .map(|&(t, s, m, _)| (t, s, m))
                .collect(),
            endpoint_latency_pairs: self.latency_by_endpoint(&chronological),
            secondary_p95: p95(&self.paired_latency.iter().map(|p| p.1).collect::<Vec<_>>()),
            testing_paired_p95: p95(&self.paired_latency.iter().map(|p| p.0).collect::<Vec<_>>()),
            running_latencies: secs(&self.running_latency),
            testing_latencies: secs(&self.testing_latency),
            diffs: self.diffs.clone(),
            noise: self.noise_diffs.clone(),
            noise_expected,
            resources: self.resources(running_requests_now),
            elapsed: now.duration_since(self.since),
            pairs: self.pairs,
            endpoints: self.endpoints.clone(),
            endpoint_overflow: self.endpoint_overflow,
            not_mirrorable: 0,
            replay_exhausted: false,
            running_requests: running_requests_now
                .saturating_sub(self.requests_at_start)
                .saturating_sub(self.canary_served),
            canary_served: self.canary_served,
            testing_errors: te,
            testing_last_error: self.testing_log.last_error().cloned(),
            testing_warns: tw,
            running_errors: re,
            running_warns: rw,
            secondary_logs,
            running_p95: p95(&self.running_latency),
            testing_p95: p95(&self.testing_latency),
            replayed: self.replayed,
            recorded: self.recorded.len() as u64,
            unreplayable: Default::default(),
        }
    }
}

/// Count a pair's statuses into its endpoint's row. Testing's status is judged against the
/// secondary's answer to the very same copy where there is one (same copy, same moment, same
/// path: running answered the user first, and what that changed, a one-time token consumed,
/// shows on both copies alike), and against running's only without one.
fn tally_statuses(e: &mut EndpointStats, p: &Pair) {
    e.pairs += 1;
    e.status_vs_secondary += u64::from(p.secondary_status.is_some());
    let base = p.secondary_status.unwrap_or(p.running_status);
    // A secondary that gave no answer failed there as testing does when it gives none.
    if base >= 500 || base == super::NO_ANSWER {
        e.baseline_5xx += 1;
    }
    match p.testing_status {
        None => {
            e.testing_5xx += 1;
            let why = p.testing_error.as_deref().unwrap_or("no answer");
            if e.testing_no_answer_why.as_deref() != Some(why) {
                e.testing_no_answer_why = Some(why.to_string());
            }
        }
        Some(t) if t >= 500 && t != 501 => {
            e.testing_5xx += 1;
            e.testing_5xx_answered += 1;
        }
        // Nothing on the secondary to hold a 4xx against.
        Some(_) if base == super::NO_ANSWER => {}
        Some(t) if matches!(t, 404 | 405 | 501) && base != 404 && base != t => {
            e.missing_on_testing += 1
        }
        Some(t) if (400..500).contains(&t) && (200..300).contains(&base) => {
            e.ok_to_client_error += 1
        }
        _ => {}
    }
    // Bodies are diffed against running's answer, so this one stays running's.
    if p.testing_status == Some(p.running_status) {
        e.same_status += 1;
    }
}

fn push_sample(v: &mut Vec<Duration>, slot: usize, d: Duration) {
    if v.len() < LATENCY_SAMPLES {
        v.push(d);
    } else {
        v[slot] = d;
    }
}

fn p95(v: &[Duration]) -> Option<Duration> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    Some(s[(s.len() * 95 / 100).min(s.len() - 1)])
}

#[cfg(test)]
mod tests;
