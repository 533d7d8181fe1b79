//! The bodies part of the score: where testing's answers differ from running's, per endpoint and
//! path, each difference judged against its noise (the rate at which running differs from itself)
//! and listed in the differences table ([`DiffRow`]).

use std::collections::BTreeMap;

use serde::Serialize;

use super::judging::{Judging, ScorePart};
use super::scorecard::Summary;
use super::stats::{self, RateCheck};
use crate::config::ScoreConfig;
use crate::diff::{DiffKind, Difference, EndpointDiffs};

/// Rows of the differences table kept in an evaluation (status, events, dashboard).
pub const MAX_DIFF_ROWS: usize = 20;
/// Pairs with a secondary answer an endpoint needs before its noise is known.
pub const MIN_NOISE_PAIRS: u64 = 10;

/// How one difference (endpoint, path, kind) is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffJudgement {
    /// Clearly above its noise (or noise unknown and judged by `MAX_BODY_DIFF`): it counts.
    Counts,
    /// Not clearly above the rate at which running differs from itself: it does not count.
    Noise,
    /// Only the versions differ: it never counts.
    Expected,
    /// Answers over `DIFF_MAX_BODY` that differ by length or hash: reported, never counted.
    TooLarge,
    /// No secondary measured this endpoint's noise (`NOISE_CANCEL=off`, or not yet).
    NoiseUnknown,
    /// Not enough pairs yet to tell it from noise.
    Unsure,
}

/// One row of the differences table: where answers differ, how often, and an example.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiffRow {
    /// `GET /items/{n}`.
    pub endpoint: String,
    /// `$.items[*].price`.
    pub path: String,
    /// What kind of difference.
    pub kind: DiffKind,
    /// Pairs with this difference.
    pub pairs: u64,
    /// Pairs of this endpoint compared.
    pub of: u64,
    /// `pairs / of`.
    pub rate: f64,
    /// How often running differed from itself here, when measured.
    pub noise_rate: Option<f64>,
    /// How it is judged.
    pub judgement: DiffJudgement,
    /// Running's value in one pair (at most 200 bytes).
    pub running: String,
    /// Testing's value in the same pair.
    pub testing: String,
}

impl DiffRow {
    /// Replace both example values (users' data) by [`crate::private::HIDDEN`], for a reader
    /// without the token; where, how often and how it is judged stay.
    pub fn hide_values(&mut self) {
        for v in [&mut self.running, &mut self.testing] {
            if !v.is_empty() {
                *v = crate::private::HIDDEN.to_string();
            }
        }
    }
}

/// Answers (where statuses agree), judged per endpoint and path: a difference counts when it is
/// clearly above its noise (the rate at which running differs from its own secondary) and then
/// rejects above `MAX_BODY_DIFF`; without noise measured (no secondary, or it was given up) it is
/// reported, and judged only when `MAX_BODY_DIFF` is a number. Endpoints with too few pairs to be
/// judged alone are judged together ([`Pool`]).
pub(super) fn bodies_part(
    s: &Summary,
    cfg: &ScoreConfig,
    j: &mut Judging,
) -> (ScorePart, Vec<DiffRow>) {
    let mut rows = Vec::new();
    let mut pool = Pool::default();
    for (endpoint, e) in &s.diffs.endpoints {
        let noise = s.noise.endpoints.get(endpoint);
        if e.pairs < cfg.min_endpoint_pairs {
            pool.add(endpoint, e, noise);
        }
        let noise = noise.filter(|n| n.pairs >= MIN_NOISE_PAIRS);
        for ((path, kind), ps) in &e.paths {
            let noise = noise.map(|n| (noise_pairs(n, path, *kind), n.pairs));
            let seen = Seen {
                pairs: ps.pairs,
                of: e.pairs,
                noise,
                example: &ps.example,
            };
            rows.push(row(s, cfg, endpoint.clone(), (path, *kind), seen));
        }
    }
    rows.extend(pool.rows(s, cfg));
    let mut tally = Tally::default();
    for row in &rows {
        weigh(s, cfg, j, row, &mut tally);
    }
    sort_rows(&mut rows);
    rows.truncate(MAX_DIFF_ROWS);
    (tally.part(s, cfg), rows)
}

/// How often one difference was seen where it is judged: in `pairs` of `of` compared pairs, with
/// its noise (pairs, of the secondary's) when measured, and one example.
struct Seen<'a> {
    pairs: u64,
    of: u64,
    noise: Option<(u64, u64)>,
    example: &'a Difference,
}

/// The row of one difference (`path`, `kind`) on `endpoint`, judged against its noise.
fn row(
    s: &Summary,
    cfg: &ScoreConfig,
    endpoint: String,
    (path, kind): (&str, DiffKind),
    seen: Seen,
) -> DiffRow {
    DiffRow {
        endpoint,
        path: path.to_string(),
        kind,
        pairs: seen.pairs,
        of: seen.of,
        rate: seen.pairs as f64 / seen.of.max(1) as f64,
        noise_rate: seen.noise.map(|(k, n)| k as f64 / n as f64),
        judgement: judge(s, cfg, kind, (seen.pairs, seen.of), seen.noise),
        running: seen.example.running.clone(),
        testing: seen.example.testing.clone(),
    }
}

/// The endpoints with fewer than `MIN_ENDPOINT_PAIRS` compared pairs, too few to be judged one
/// by one, pooled per (path, kind): a regression spread thinly over many of them (a page per
/// product slug, each asked once or twice) is judged together, by the same noise rule and
/// thresholds as one endpoint's row, instead of never.
#[derive(Default)]
struct Pool<'a> {
    /// Endpoints pooled.
    endpoints: u64,
    /// Their compared pairs.
    pairs: u64,
    /// Their pairs with a secondary answer (the noise's base).
    noise_pairs: u64,
    /// Per (path, kind), pairs where running differed so from its secondary (as [`noise_pairs`]).
    noise: BTreeMap<(&'a str, DiffKind), u64>,
    /// Per (path, kind): pairs with that difference, the first endpoint it was seen on and its
    /// example.
    paths: BTreeMap<(&'a str, DiffKind), (u64, &'a str, &'a Difference)>,
}

impl<'a> Pool<'a> {
    /// Pool one endpoint's differences and noise.
    fn add(&mut self, endpoint: &'a str, e: &'a EndpointDiffs, noise: Option<&'a EndpointDiffs>) {
        self.endpoints += 1;
        self.pairs += e.pairs;
        for ((path, kind), ps) in &e.paths {
            let seen = self
                .paths
                .entry((path, *kind))
                .or_insert((0, endpoint, &ps.example));
            seen.0 += ps.pairs;
        }
        let Some(n) = noise else {
            return;
        };
        self.noise_pairs += n.pairs;
        for (path, kind) in n.paths.keys() {
            *self.noise.entry((path, *kind)).or_default() += noise_pairs(n, path, *kind);
        }
    }

    /// The pooled rows, named by how many endpoints they pool and one of them; none for a single
    /// endpoint (its own row says it all).
    fn rows(&self, s: &Summary, cfg: &ScoreConfig) -> Vec<DiffRow> {
        if self.endpoints < 2 {
            return Vec::new();
        }
        let measured = self.noise_pairs >= MIN_NOISE_PAIRS;
        let rows = self
            .paths
            .iter()
            .map(|(&(path, kind), &(pairs, first, example))| {
                let endpoint = format!(
                    "{} endpoints with fewer than {} compared pairs each, together (e.g. {first})",
                    self.endpoints, cfg.min_endpoint_pairs
                );
                let noise = measured.then(|| {
                    let k = self.noise.get(&(path, kind)).copied().unwrap_or(0);
                    (k, self.noise_pairs)
                });
                let seen = Seen {
                    pairs,
                    of: self.pairs,
                    noise,
                    example,
                };
                row(s, cfg, endpoint, (path, kind), seen)
            });
        rows.collect()
    }
}

/// Pairs in which running differed from its secondary at `path` by the same `kind`, at most the
/// endpoint's noise pairs. Per kind: a field whose value varies is no cover for testing dropping
/// it or changing its type, while one running itself sometimes omits is noise for "missing".
fn noise_pairs(noise: &EndpointDiffs, path: &str, kind: DiffKind) -> u64 {
    // A lookup by borrowed parts would need a custom key type: the paths are few per endpoint.
    noise
        .paths
        .iter()
        .filter(|((p, k), _)| *k == kind && k.counts() && p == path)
        .map(|(_, x)| x.pairs)
        .sum::<u64>()
        .min(noise.pairs)
}

/// How a difference of `kind` in `pairs` of `of` is judged, against `noise` (pairs with the same
/// difference between running and its secondary, of the secondary's pairs) when measured.
fn judge(
    s: &Summary,
    cfg: &ScoreConfig,
    kind: DiffKind,
    (pairs, of): (u64, u64),
    noise: Option<(u64, u64)>,
) -> DiffJudgement {
    let rate = pairs as f64 / of.max(1) as f64;
    if kind == DiffKind::Uncompared {
        DiffJudgement::TooLarge
    } else if !kind.counts() {
        DiffJudgement::Expected
    } else if let Some((nk, n)) = noise {
        let nr = nk as f64 / n as f64;
        let margin = cfg.diff_absolute.max(nr * cfg.diff_relative);
        match stats::compare_rates(pairs, of, nk, n, margin, cfg.confidence) {
            RateCheck::Worse { .. } => DiffJudgement::Counts,
            RateCheck::Fine { .. } => DiffJudgement::Noise,
            RateCheck::Undecided { .. } => {
                if rate - nr > margin {
                    DiffJudgement::Unsure
                } else {
                    DiffJudgement::Noise
                }
            }
        }
    } else if s.noise_expected {
        DiffJudgement::Unsure
    } else {
        DiffJudgement::NoiseUnknown
    }
}

/// What the bodies part counted while judging its rows.
#[derive(Default)]
struct Tally {
    /// The worst judged rate as a share of twice its ceiling (1 scores 0).
    worst: f64,
    /// Paths whose difference counts.
    counted: usize,
    /// Paths whose difference is noise.
    noise_paths: usize,
    /// Paths where only the versions differ.
    expected: usize,
    /// DIFF_IGNORE was named in a reason (for an added field): once is enough.
    named_ignore: bool,
    /// DIFF_IGNORE_HEADERS was named in a reason (for an added header).
    named_ignore_headers: bool,
}

impl Tally {
    /// The part, from what was counted.
    fn part(&self, s: &Summary, cfg: &ScoreConfig) -> ScorePart {
        let compared: u64 = s.diffs.endpoints.values().map(|e| e.pairs).sum();
        let uncompared: u64 = s.diffs.endpoints.values().map(|e| e.uncompared).sum();
        let differ: u64 = s.endpoints.values().map(|e| e.bodies_differ).sum();
        // Pairs over DIFF_MAX_BODY had their status and headers compared, not their bodies.
        let too_large = match (uncompared, cfg.diff_max_body) {
            (0, _) => String::new(),
            (_, 0) => " (bodies not compared: DIFF_MAX_BODY=0)".to_string(),
            (n, _) => format!(" ({n} of them with bodies too large to compare)"),
        };
        ScorePart {
            name: "bodies",
            score: (100.0 * (1.0 - self.worst.min(1.0))) as u32,
            detail: format!(
                "{differ} of {compared} compared answers differ{too_large}; {} paths count, {} noise, {} version only{}",
                self.counted,
                self.noise_paths,
                self.expected,
                match (s.noise_expected, cfg.max_body_diff.ceiling(false)) {
                    (false, None) => ", noise unknown, reported only",
                    (false, Some(_)) => ", noise unknown",
                    _ => "",
                }
            ),
        }
    }
}

/// Count one row, and judge it: a difference that counts rejects over `MAX_BODY_DIFF`, and one
/// whose noise is unknown only over a number set for it (with `auto` it is reported: a field
/// that differs naturally cannot be told from a regression); an unsure one over it waits. An
/// endpoint seen too seldom is reported, not judged alone (as its 5xx rate is not): the pooled
/// row of all such endpoints judges it.
fn weigh(s: &Summary, cfg: &ScoreConfig, j: &mut Judging, row: &DiffRow, t: &mut Tally) {
    let said = (j.reasons.len(), j.unsure.len());
    judge_row(s, cfg, j, row, t);
    let pushed = if j.reasons.len() > said.0 {
        j.reasons.last_mut()
    } else if j.unsure.len() > said.1 {
        j.unsure.last_mut()
    } else {
        None
    };
    if let Some(reason) = pushed {
        reason.push_str(&remedy(row, t));
    }
}

/// How to keep a difference testing adds on purpose from counting, named in the first reason of
/// an evaluation about an added JSON field (DIFF_IGNORE) or header (DIFF_IGNORE_HEADERS).
fn remedy(row: &DiffRow, t: &mut Tally) -> String {
    if row.kind != DiffKind::Added {
        return String::new();
    }
    let field = row.path.starts_with("$.") || row.path.starts_with("$[");
    match row.path.strip_prefix("$header.") {
        Some(name) if !std::mem::replace(&mut t.named_ignore_headers, true) => format!(
            "; if testing adds the header {name} on purpose, list it in DIFF_IGNORE_HEADERS"
        ),
        None if field && !std::mem::replace(&mut t.named_ignore, true) => format!(
            "; if testing adds {} on purpose, list it in DIFF_IGNORE to ignore it (in .env, \
             single-quoted: DIFF_IGNORE='{}')",
            row.path, row.path
        ),
        _ => String::new(),
    }
}

/// [`weigh`] itself: count the row and push its reason or doubt, if any.
fn judge_row(s: &Summary, cfg: &ScoreConfig, j: &mut Judging, row: &DiffRow, t: &mut Tally) {
    let judgement = row.judgement;
    if judgement == DiffJudgement::Expected {
        t.expected += 1;
    }
    let few = row.of < cfg.min_endpoint_pairs;
    match judgement {
        _ if few => {}
        DiffJudgement::Counts | DiffJudgement::NoiseUnknown => {
            if judgement == DiffJudgement::Counts {
                t.counted += 1;
            }
            // NoiseUnknown comes only without a secondary (judge() says Unsure while one runs).
            let measured = judgement == DiffJudgement::Counts;
            if let Some(max) = cfg.max_body_diff.ceiling(measured) {
                t.worst = t.worst.max(row.rate / max.max(1e-9) / 2.0);
                j.rate(
                    stats::compare_rate_to(row.pairs, row.of, max, cfg.confidence),
                    row.rate > max,
                    cfg.confidence,
                    differ_reason(row),
                );
            }
        }
        DiffJudgement::Unsure => {
            // Noise is being measured (a secondary runs) or was, but not enough yet.
            if cfg
                .max_body_diff
                .ceiling(true)
                .is_some_and(|max| row.rate > max)
            {
                j.unsure.push(format!(
                    "{} (noise not measured yet{})",
                    differ_reason(row),
                    if s.noise_expected {
                        ": waiting for the secondary's answers"
                    } else {
                        ""
                    }
                ));
            }
        }
        DiffJudgement::Noise => t.noise_paths += 1,
        DiffJudgement::Expected | DiffJudgement::TooLarge => {}
    }
    if few && judgement == DiffJudgement::Noise {
        t.noise_paths += 1;
    }
}

/// A row as a reason: where, how often, the noise, and an example.
fn differ_reason(row: &DiffRow) -> String {
    format!(
        "answers differ on {} at {} ({}): {} of {} pairs ({:.1}%){}; e.g. running {} vs testing {}",
        row.endpoint,
        row.path,
        row.kind.as_str(),
        row.pairs,
        row.of,
        row.rate * 100.0,
        row.noise_rate.map_or(String::new(), |n| format!(
            ", running differs from itself in {:.1}%",
            n * 100.0
        )),
        show_example(&row.running),
        show_example(&row.testing),
    )
}

/// Worst first: what counts, then doubts, then the unjudged, then noise; by rate within each.
fn sort_rows(rows: &mut [DiffRow]) {
    let order = |r: &DiffRow| match r.judgement {
        DiffJudgement::Counts => 0,
        DiffJudgement::Unsure => 1,
        DiffJudgement::NoiseUnknown => 2,
        DiffJudgement::Noise => 3,
        DiffJudgement::Expected => 4,
        DiffJudgement::TooLarge => 5,
    };
    rows.sort_by(|a, b| {
        order(a)
            .cmp(&order(b))
            .then(b.rate.total_cmp(&a.rate))
            .then_with(|| a.endpoint.cmp(&b.endpoint))
    });
}

/// An example value for a reason: quoted as captured (a user's data: hidden from readers without
/// the token), or "(none)".
fn show_example(v: &str) -> String {
    if v.is_empty() {
        "(none)".to_string()
    } else {
        crate::private::quote(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MaxBodyDiff;
    use crate::score::test_support::{cfg, pair, summarised_capped, summary};
    use crate::score::{evaluate, Pair, Verdict};

    fn difference(path: &str, kind: DiffKind) -> crate::diff::Difference {
        crate::diff::Difference {
            path: path.to_string(),
            kind,
            running: "3".to_string(),
            testing: "6".to_string(),
        }
    }

    /// `n` pairs of `GET /a`, `k` of them with `diff` (and `noise_k` of `n` noise pairs).
    fn with_diffs(
        n: u64,
        k: u64,
        diff: &crate::diff::Difference,
        noise: Option<(u64, u64)>,
    ) -> Summary {
        let mut s = summary(n, 600);
        for i in 0..n {
            let d = if i < k { vec![diff.clone()] } else { vec![] };
            s.diffs.record("GET /a", &d);
        }
        if let Some((nn, nk)) = noise {
            for i in 0..nn {
                let d = if i < nk { vec![diff.clone()] } else { vec![] };
                s.noise.record("GET /a", &d);
            }
        }
        s
    }

    #[test]
    fn differences_without_noise_are_reported_and_judged_only_with_a_ceiling() {
        let price = difference("$.items[*].price", DiffKind::Changed);
        let s = with_diffs(200, 150, &price, None);
        let e = evaluate(&s, &cfg());
        assert_eq!(e.verdict, Verdict::Promote);
        assert_eq!(e.diffs[0].judgement, DiffJudgement::NoiseUnknown);
        let strict = ScoreConfig {
            max_body_diff: MaxBodyDiff::Fixed(0.1),
            ..cfg()
        };
        let Verdict::Reject(r) = evaluate(&s, &strict).verdict else {
            panic!()
        };
        assert!(
            r[0].contains("150 of 200")
                && r[0].contains("GET /a")
                && r[0].contains("$.items[*].price")
                && r[0].contains("running ‹3› vs testing ‹6›")
                && !r[0].contains("DIFF_IGNORE"),
            "{r:?}"
        );
    }

    /// A field or header testing adds rejects naming how to ignore it, once: the reason once said
    /// only `$.trace (added)`, and the operator had to find DIFF_IGNORE alone.
    #[test]
    fn an_added_field_rejects_naming_diff_ignore_once() {
        let strict = ScoreConfig {
            max_body_diff: MaxBodyDiff::Fixed(0.1),
            ..cfg()
        };
        let mut s = summary(200, 600);
        let added = [
            difference("$.trace", DiffKind::Added),
            difference("$.span", DiffKind::Added),
            difference("$header.x-trace", DiffKind::Added),
        ];
        for i in 0..200 {
            let d = if i < 150 { added.to_vec() } else { vec![] };
            s.diffs.record("GET /a", &d);
        }
        let Verdict::Reject(r) = evaluate(&s, &strict).verdict else {
            panic!()
        };
        let all = r.join("\n");
        assert_eq!(
            all.matches("list it in DIFF_IGNORE to ignore it").count(),
            1,
            "{all}"
        );
        assert!(all.contains("DIFF_IGNORE='$."), "{all}");
        let header =
            "if testing adds the header x-trace on purpose, list it in DIFF_IGNORE_HEADERS";
        assert!(all.contains(header), "{all}");
    }

    #[test]
    fn noise_cancels_what_running_does_to_itself() {
        let on = ScoreConfig {
            max_body_diff: MaxBodyDiff::Auto,
            noise_cancel: true,
            ..cfg()
        };
        let ts = difference("$.ts", DiffKind::Changed);
        // Every pair differs, and so does running from itself: noise, promoted.
        let mut s = with_diffs(200, 200, &ts, Some((190, 190)));
        s.noise_expected = true;
        let e = evaluate(&s, &on);
        assert_eq!(e.verdict, Verdict::Promote, "{e:?}");
        assert_eq!(e.diffs[0].judgement, DiffJudgement::Noise);
        assert_eq!(e.diffs[0].noise_rate, Some(1.0));
        // The same rate where running agrees with itself: a regression.
        let mut s = with_diffs(200, 200, &ts, Some((190, 0)));
        s.noise_expected = true;
        assert!(matches!(evaluate(&s, &on).verdict, Verdict::Reject(_)));
        // A rate clearly above a partial noise rate counts too.
        let mut s = with_diffs(400, 300, &ts, Some((400, 100)));
        s.noise_expected = true;
        assert!(matches!(evaluate(&s, &on).verdict, Verdict::Reject(_)));
        // Noise not measured yet: wait and say so, never reject.
        let mut s = with_diffs(200, 200, &ts, Some((3, 3)));
        s.noise_expected = true;
        let e = evaluate(&s, &on);
        assert!(
            matches!(&e.verdict, Verdict::Wait(w) if w.contains("noise not measured")),
            "{e:?}"
        );
        // An endpoint seen only a few times is reported, not judged.
        let mut s = with_diffs(200, 200, &ts, Some((3, 3)));
        s.noise_expected = true;
        for _ in 0..3 {
            s.diffs
                .record("GET /rare", &[difference("$.x", DiffKind::Changed)]);
        }
        s.diffs.endpoints.remove("GET /a");
        assert_eq!(evaluate(&s, &on).verdict, Verdict::Promote);
        // Version-only differences never count.
        let v = difference("$.version", DiffKind::Expected);
        let s = with_diffs(200, 200, &v, None);
        let strict = ScoreConfig {
            max_body_diff: MaxBodyDiff::Fixed(0.01),
            ..cfg()
        };
        let e = evaluate(&s, &strict);
        assert_eq!(e.verdict, Verdict::Promote);
        assert_eq!(e.diffs[0].judgement, DiffJudgement::Expected);
    }

    /// `GET /a`: 200 pairs, each with `testing`, and 190 noise pairs, each with `noise`.
    fn against_noise(
        testing: &[crate::diff::Difference],
        noise: &[crate::diff::Difference],
    ) -> Summary {
        let mut s = summary(200, 600);
        for _ in 0..200 {
            s.diffs.record("GET /a", testing);
        }
        for _ in 0..190 {
            s.noise.record("GET /a", noise);
        }
        s.noise_expected = true;
        s
    }

    /// A field whose value running varies (a random request id) is noise for "changed" only:
    /// testing dropping it or changing its type is a regression (review cases drop-rid and
    /// rid-type), while a field running itself sometimes omits is noise for "missing".
    #[test]
    fn noise_cancels_only_the_kind_of_difference_running_makes() {
        let on = measured();
        let rid = |kind| difference("$.rid", kind);
        let header = |kind| difference("$header.x-request-id", kind);
        for (name, testing, noise, rejects) in [
            (
                "drop-rid",
                rid(DiffKind::Missing),
                rid(DiffKind::Changed),
                true,
            ),
            (
                "rid-type",
                rid(DiffKind::TypeChanged),
                rid(DiffKind::Changed),
                true,
            ),
            (
                "header dropped",
                header(DiffKind::Missing),
                header(DiffKind::Changed),
                true,
            ),
            (
                "rid varies",
                rid(DiffKind::Changed),
                rid(DiffKind::Changed),
                false,
            ),
            (
                "rid omitted by running too",
                rid(DiffKind::Missing),
                rid(DiffKind::Missing),
                false,
            ),
        ] {
            let e = evaluate(
                &against_noise(std::slice::from_ref(&testing), &[noise]),
                &on,
            );
            match &e.verdict {
                Verdict::Reject(r) if rejects => assert!(
                    r[0].contains(&testing.path) && r[0].contains(testing.kind.as_str()),
                    "{name}: {r:?}"
                ),
                Verdict::Promote if !rejects => {}
                v => panic!("{name}: {v:?}"),
            }
        }
        // Pooled endpoints (too rare to be judged alone) keep their noise per kind too.
        let mut s = summary(200, 600);
        for i in 0..100 {
            let endpoint = format!("GET /p/{}", ["a", "b", "c", "d"][i % 4].repeat(i / 4 + 1));
            s.diffs.record(&endpoint, &[rid(DiffKind::Missing)]);
            s.noise.record(&endpoint, &[rid(DiffKind::Changed)]);
        }
        s.noise_expected = true;
        let e = evaluate(&s, &on);
        let Verdict::Reject(r) = &e.verdict else {
            panic!("{e:?}")
        };
        assert!(
            r[0].contains("together") && r[0].contains("$.rid (missing)"),
            "{r:?}"
        );
    }

    #[test]
    fn with_auto_a_difference_whose_noise_was_never_measured_is_reported_not_judged() {
        // The secondary was given up: the scorer no longer expects noise. A timestamp differs in
        // every pair, as it does between any two instances.
        let ts = difference("$.ts", DiffKind::Changed);
        let auto = ScoreConfig {
            max_body_diff: MaxBodyDiff::Auto,
            noise_cancel: true,
            ..cfg()
        };
        for noise in [None, Some((3, 3))] {
            let s = with_diffs(200, 200, &ts, noise);
            assert!(!s.noise_expected);
            let e = evaluate(&s, &auto);
            assert_eq!(e.verdict, Verdict::Promote, "{noise:?}: {e:?}");
            assert_eq!(e.diffs[0].judgement, DiffJudgement::NoiseUnknown);
            assert_eq!((e.diffs[0].pairs, e.diffs[0].of), (200, 200), "reported");
            let bodies = e.parts.iter().find(|p| p.name == "bodies").unwrap();
            assert!(bodies.detail.contains("reported only"), "{bodies:?}");
        }
        // A number set for MAX_BODY_DIFF still applies without a noise measurement.
        let fixed = ScoreConfig {
            max_body_diff: MaxBodyDiff::Fixed(0.05),
            ..auto
        };
        let s = with_diffs(200, 200, &ts, None);
        assert!(matches!(evaluate(&s, &fixed).verdict, Verdict::Reject(_)));
    }

    /// `GET /products/<slug>` for slugs `from..to` (words, so none is folded into another), 1–3
    /// pairs each; running and the secondary answer `"price": 3`, testing `"price": price`.
    fn slugs(from: usize, to: usize, price: &str) -> Vec<Pair> {
        let word = |i: usize| {
            i.to_string()
                .bytes()
                .map(|d| (d - b'0' + b'a') as char)
                .collect::<String>()
        };
        let diffs = match price {
            "3" => vec![],
            _ => vec![crate::diff::Difference {
                testing: price.to_string(),
                ..difference("$.price", DiffKind::Changed)
            }],
        };
        let one = |i: usize| Pair {
            secondary_status: Some(200),
            diffs: Some(diffs.clone()),
            noise: Some(vec![]),
            ..pair(&format!("/products/widget-{}", word(i)))
        };
        (from..to).flat_map(|i| vec![one(i); i % 3 + 1]).collect()
    }

    /// Noise measured, `MAX_BODY_DIFF=auto`.
    fn measured() -> ScoreConfig {
        ScoreConfig {
            max_body_diff: MaxBodyDiff::Auto,
            noise_cancel: true,
            ..cfg()
        }
    }

    /// A wrong price on every product page, each page asked once to three times: no endpoint has
    /// the pairs to be judged alone, together they are judged and reject naming the field.
    #[test]
    fn endpoints_too_rare_to_judge_alone_are_judged_together() {
        let mut s = summarised_capped(&slugs(0, 90, "0"), 600, 256);
        s.noise_expected = true;
        let e = evaluate(&s, &measured());
        let Verdict::Reject(r) = &e.verdict else {
            panic!("{e:?}")
        };
        assert!(
            r[0].contains("answers differ on 90 endpoints with fewer than 5 compared pairs each, together (e.g. GET /products/widget-a)")
                && r[0].contains("at $.price (changed): 180 of 180 pairs (100.0%)")
                && r[0].contains("running ‹3› vs testing ‹0›"),
            "{r:?}"
        );
        let mut s = summarised_capped(&slugs(0, 90, "3"), 600, 256);
        s.noise_expected = true;
        assert_eq!(evaluate(&s, &measured()).verdict, Verdict::Promote);
    }

    /// Past `MAX_ENDPOINTS`, the endpoints' differences are kept in the "(other endpoints)" row
    /// and judged there.
    #[test]
    fn differences_past_max_endpoints_are_judged_in_the_shared_row() {
        for (price, rejects) in [("0", true), ("3", false)] {
            let pairs = [slugs(0, 8, "3"), slugs(8, 68, price)].concat();
            let mut s = summarised_capped(&pairs, 600, 8);
            s.noise_expected = true;
            let e = evaluate(&s, &measured());
            match &e.verdict {
                Verdict::Reject(r) if rejects => assert!(
                    r[0].contains("answers differ on (other endpoints) at $.price (changed): 120 of 120 pairs"),
                    "{r:?}"
                ),
                Verdict::Promote if !rejects => {}
                _ => panic!("price {price}: {e:?}"),
            }
        }
    }
}
