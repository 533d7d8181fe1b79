//! Replayed recorded requests (`REPLAY`): sent to testing and twice to the secondary, never to
//! running; testing is judged against the secondary's first answer, the second gives the noise.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::ask::{copy_request, fetch, Answered};
use super::judge::{judge, Running};
use super::{CaptureBudget, Differ, MirrorError, MirrorJob};
use crate::config::Config;
use crate::proxy::pool::Pool;
use crate::proxy::{ProxyStats, Upstream};
use crate::score::Pair;

/// How a replayed recorded request is sent: to testing and twice to the secondary, all at once.
pub(super) struct Replayed<'a> {
    pub(super) client: &'a Arc<Pool>,
    pub(super) timeout: Duration,
    pub(super) budget: CaptureBudget,
}

impl Replayed<'_> {
    /// Send the replay and judge testing's answer against the secondary's (running is never
    /// asked); the secondary's second answer to the same request measures the noise. No pair
    /// when the secondary did not answer: there is nothing to judge against.
    pub(super) async fn send(
        &self,
        job: MirrorJob,
        stats: &ProxyStats,
        cfg: Arc<Config>,
        differ: &Differ,
    ) -> Option<Pair> {
        let secondary = job.secondary.clone()?;
        let max = Some(cfg.diff.max_body);
        let ask = |to: &Arc<Upstream>| {
            let req = copy_request(&job, to);
            let (to, method) = (to.clone(), job.method.clone());
            let (client, timeout, budget) = (self.client, self.timeout, self.budget.clone());
            async move { fetch(client, &to, &method, req, timeout, max, budget).await }
        };
        let (testing, reference, again) =
            tokio::join!(ask(&job.target), ask(&secondary), ask(&secondary));
        match &testing {
            Ok(a) => stats.testing_replayed.answered(a.status, a.latency),
            Err(_) => stats.testing_replayed.unanswered(),
        }
        let reference = reference.ok()?;
        let (target, method, path, serial) = (
            job.target.clone(),
            job.method.clone(),
            job.path_and_query.clone(),
            job.replay.as_ref().map(|r| r.serial),
        );
        let (testing_status, testing_latency) = match &testing {
            Ok(a) => (Some(a.status.as_u16()), Some(a.latency)),
            Err(_) => (None, None),
        };
        let (ref_status, ref_latency) = (reference.status.as_u16(), reference.latency);
        let versions = (secondary.version.to_string(), target.version.to_string());
        let judged = differ
            .run(move || replay_pair(&job, testing, reference, again.ok(), versions, &cfg))
            .await;
        Some(judged.unwrap_or_else(|| {
            stats.diff_skipped.fetch_add(1, Ordering::Relaxed);
            Pair {
                testing: target.id,
                method,
                path: path.as_ref().map_or("/", |p| p.path()).to_string(),
                running_status: ref_status,
                running_latency: ref_latency,
                testing_status,
                testing_latency,
                secondary_latency: Some(ref_latency),
                secondary_status: Some(ref_status),
                testing_error: None,
                diffs: None,
                noise: None,
                replayed: serial,
            }
        }))
    }
}

/// The pair of a replayed request: the secondary's first answer stands where running's would,
/// testing's is compared with it, and the secondary's second answer gives the noise.
fn replay_pair(
    job: &MirrorJob,
    testing: Result<Answered, MirrorError>,
    mut reference: Answered,
    again: Option<Answered>,
    (secondary_version, testing_version): (String, String),
    cfg: &Config,
) -> Pair {
    let status = reference.status;
    // Each side's witness is the other's answer to the same request (see `judge`).
    let accepted = crate::diff::encoding::accept_encoding(&job.headers);
    let mut running = Running {
        status,
        headers: &reference.headers,
        body: &mut reference.body,
        version: &secondary_version,
        accepted: accepted.as_ref().map(|v| v.as_bytes()),
    };
    let mut against = |other: &mut Answered, version: &str, witness: Option<&mut Answered>| {
        judge(&mut running, (other, version), witness, cfg)
    };
    let (testing_status, testing_latency, testing_error, mut answer) = match testing {
        Ok(a) => (Some(a.status.as_u16()), Some(a.latency), None, Some(a)),
        Err(e) => (None, None, Some(e.to_string()), None),
    };
    let mut again = again;
    let diffs = answer
        .as_mut()
        .and_then(|a| against(a, &testing_version, again.as_mut()));
    let noise = again
        .as_mut()
        .and_then(|s| against(s, &secondary_version, answer.as_mut()));
    Pair {
        testing: job.target.id,
        method: job.method.clone(),
        path: job
            .path_and_query
            .as_ref()
            .map_or("/", |p| p.path())
            .to_string(),
        running_status: status.as_u16(),
        running_latency: reference.latency,
        testing_status,
        testing_latency,
        secondary_latency: Some(reference.latency),
        // The secondary's answer is the reference itself: testing's status is judged against it.
        secondary_status: Some(status.as_u16()),
        testing_error,
        diffs,
        noise,
        replayed: job.replay.as_ref().map(|r| r.serial),
    }
}
