//! What the scorer keeps of the differences: per endpoint and (path, kind), how many pairs
//! differed and one example, in bounded memory however varied the answers are.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{DiffKind, Difference, MAX_ENDPOINTS, MAX_PATHS_PER_ENDPOINT, OTHER_ENDPOINTS};

/// How often one difference was seen on one endpoint, with one example.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathStats {
    /// Pairs that had this difference.
    pub pairs: u64,
    /// The first such difference, so the operator sees what it looks like.
    pub example: Difference,
}

/// The differences seen on one endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EndpointDiffs {
    /// Pairs compared on this endpoint (with or without differences), so a count has a base.
    pub pairs: u64,
    /// Per (path, kind), at most the stats' path bound.
    pub paths: BTreeMap<(String, DiffKind), PathStats>,
    /// Differences not kept because `paths` was full: the bound is visible, not silent.
    pub overflow: u64,
    /// Of `pairs`, those whose bodies were not compared (a [`DiffKind::Uncompared`] difference:
    /// over `DIFF_MAX_BODY`): their status and headers were, but they are no evidence that the
    /// bodies agree, so they never count toward the answers a verdict needs compared.
    pub uncompared: u64,
}

impl EndpointDiffs {
    /// Pairs whose bodies were compared: the evidence about the bodies.
    pub fn bodies_compared(&self) -> u64 {
        self.pairs - self.uncompared
    }
}

/// What the scorer holds: per endpoint and (path, kind), how many pairs differed, with bounded
/// memory however varied the answers are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffStats {
    /// Per endpoint key (`GET /users/{n}`).
    pub endpoints: BTreeMap<String, EndpointDiffs>,
    /// Pairs of endpoints not kept apart because `endpoints` was full: counted under
    /// [`OTHER_ENDPOINTS`], which comes on top of the bound.
    pub endpoint_overflow: u64,
    pub(super) max_endpoints: usize,
    pub(super) max_paths: usize,
}

impl Default for DiffStats {
    fn default() -> Self {
        DiffStats::with_limits(MAX_ENDPOINTS, MAX_PATHS_PER_ENDPOINT)
    }
}

impl DiffStats {
    /// Stats keeping at most `max_endpoints` endpoints and `max_paths` (path, kind) per endpoint.
    pub fn with_limits(max_endpoints: usize, max_paths: usize) -> Self {
        DiffStats {
            endpoints: BTreeMap::new(),
            endpoint_overflow: 0,
            max_endpoints,
            max_paths,
        }
    }

    /// Count one compared pair of `endpoint` with its differences (as [`diff`] returned them; a
    /// (path, kind) repeated in `diffs` counts once). Past the endpoint bound, under
    /// [`OTHER_ENDPOINTS`]: a difference is never thrown away, or a regression on endpoints
    /// beyond the bound could never be judged.
    pub fn record(&mut self, endpoint: &str, diffs: &[Difference]) {
        let mut endpoint = endpoint;
        if !self.endpoints.contains_key(endpoint) {
            if self.endpoints.len() >= self.max_endpoints {
                self.endpoint_overflow += 1;
                endpoint = OTHER_ENDPOINTS;
            }
            self.endpoints.entry(endpoint.to_string()).or_default();
        }
        let Some(e) = self.endpoints.get_mut(endpoint) else {
            return;
        };
        e.pairs += 1;
        if diffs.iter().any(|d| d.kind == DiffKind::Uncompared) {
            e.uncompared += 1;
        }
        for (i, d) in diffs.iter().enumerate() {
            if diffs[..i]
                .iter()
                .any(|p| p.kind == d.kind && p.path == d.path)
            {
                continue;
            }
            // The key is built once per difference; a lookup by borrowed parts would need a
            // custom key type for little gain at these sizes.
            let key = (d.path.clone(), d.kind);
            if let Some(p) = e.paths.get_mut(&key) {
                p.pairs += 1;
            } else if e.paths.len() < self.max_paths {
                e.paths.insert(
                    key,
                    PathStats {
                        pairs: 1,
                        example: d.clone(),
                    },
                );
            } else {
                e.overflow += 1;
            }
        }
    }
}
