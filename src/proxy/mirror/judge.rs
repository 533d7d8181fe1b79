//! Judging a copy's answers: testing's (and the secondary's) against running's, field by field
//! where the statuses agree, into the [`Pair`] the scorer counts.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderMap;
use http::StatusCode;

use super::ask::Answered;
use super::{BodyCapture, Differ, MirrorError, MirrorJob};
use crate::config::Config;
use crate::diff::{self, encoding, DiffOptions, Difference};
use crate::proxy::ProxyStats;
use crate::score::Pair;

/// What the secondary did with the same copy: whether it was asked, and its answer's latency
/// and status if it gave one.
#[derive(Clone, Copy)]
pub(super) struct Seen {
    pub(super) asked: bool,
    pub(super) answer: Option<(Duration, u16)>,
}

/// The pair with what the secondary answered to the same copy (its latency and status, or
/// `NO_ANSWER` when it was asked and failed), which the pair's builders cannot see once the
/// answer was moved into the diff.
pub(super) fn with_secondary(mut p: Pair, seen: Seen) -> Pair {
    p.secondary_latency = seen.answer.map(|s| s.0);
    p.secondary_status = seen
        .answer
        .map(|s| s.1)
        .or(seen.asked.then_some(crate::score::NO_ANSWER));
    p
}

/// Diff the answers on the diff threads; when they are busy, the pair is not compared rather
/// than waited for, so the mirror keeps its pace and diffing sheds load by itself (counted).
pub(super) async fn diffed_pair(
    job: MirrorJob,
    outcome: Result<Answered, MirrorError>,
    secondary: Option<Answered>,
    cfg: Arc<Config>,
    differ: &Differ,
    stats: &ProxyStats,
) -> Pair {
    let (testing, method, path) = (
        job.target.id,
        job.method.clone(),
        job.path_and_query.clone(),
    );
    let (running_status, running_latency) = (job.running_status, job.running_latency);
    let (testing_status, testing_latency) = match &outcome {
        Ok(a) => (Some(a.status.as_u16()), Some(a.latency)),
        Err(_) => (None, None),
    };
    let diffed = differ
        .run(move || pair(job, outcome, secondary, &cfg))
        .await;
    diffed.unwrap_or_else(|| {
        stats.diff_skipped.fetch_add(1, Ordering::Relaxed);
        Pair {
            testing,
            method,
            path: path
                .as_ref()
                .map(|p| p.path().to_string())
                .unwrap_or_else(|| "/".to_string()),
            running_status: running_status.as_u16(),
            running_latency,
            testing_status,
            testing_latency,
            secondary_latency: None,
            secondary_status: None,
            testing_error: None,
            diffs: None,
            noise: None,
            replayed: None,
        }
    })
}

/// Running's side of a comparison: its answer (status, headers, body), its version, and the
/// request's `Accept-Encoding` (which codings an answer may differ in as asked).
pub(super) struct Running<'a> {
    pub(super) status: StatusCode,
    pub(super) headers: &'a HeaderMap,
    pub(super) body: &'a mut BodyCapture,
    pub(super) version: &'a str,
    pub(super) accepted: Option<&'a [u8]>,
}

/// Compare `other`'s answer with running's, where the statuses agree: field by field when both
/// bodies were kept, else by fingerprint (headers are compared either way). `witness` is the
/// third answer to the same copy (the secondary's for testing, testing's for the secondary):
/// text lines it differs on too are volatile in this pair ([`diff::diff_witnessed`]).
pub(super) fn judge(
    running: &mut Running<'_>,
    other: (&mut Answered, &str),
    witness: Option<&mut Answered>,
    cfg: &Config,
) -> Option<Vec<Difference>> {
    let (status, headers, version) = (running.status, running.headers, running.version);
    let (answer, other_version) = other;
    if answer.status != status {
        return None;
    }
    let opts = DiffOptions {
        ignore: &cfg.diff.ignore,
        unordered: &cfg.diff.unordered,
        ignore_headers: &cfg.diff.ignore_headers,
    };
    let content_type = |h: &HeaderMap| {
        h.get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (rct, oct) = (content_type(headers), content_type(&answer.headers));
    let (rb, ob) = (running.body.body(), answer.body.body());
    let whole = rb.is_some() && ob.is_some();
    let (rbody, obody): (&[u8], &[u8]) = match (&rb, &ob) {
        (Some(r), Some(o)) => (r, o),
        _ => (&[], &[]),
    };
    // Compressed by the app (alike, or by one side only): compared by what they say.
    let max = cfg.diff.max_body;
    let decoded = (whole && encoding::decodable(headers, &answer.headers))
        .then(|| {
            let r = running.body.plain(headers, max)?;
            Some((r, answer.body.plain(&answer.headers, max)?))
        })
        .flatten();
    let (rbody, obody) = match &decoded {
        Some((r, o)) => (&r[..], &o[..]),
        None => (rbody, obody),
    };
    let (rh, oh) = compared_headers(headers, &answer.headers, running.accepted);
    let witnessed = witness
        .filter(|w| whole && w.status == status)
        .and_then(|w| like_running(w, headers, decoded.is_some(), max));
    let witness = match &witnessed {
        Some(body) => diff::Witness::Body(body),
        None if cfg.diff.noise_cancel => diff::Witness::Missing,
        None => diff::Witness::Off,
    };
    let code = status.as_u16();
    let mut out = diff::diff_witnessed(
        &side(code, rct.as_deref(), &rh, rbody, version),
        &side(code, oct.as_deref(), &oh, obody, other_version),
        witness,
        &opts,
    );
    if !whole {
        // Marked whether the fingerprints agree or not: the scorer must never count such a pair
        // as evidence about the bodies, and a fingerprint (length, first 64 KiB) that agrees
        // says nothing of a regression further in.
        let (rd, od) = (running.body.digest(), answer.body.digest());
        let kept = if rd == od {
            ", alike by length and first 64 KiB"
        } else {
            ""
        };
        // At 0 nothing is kept or fingerprinted, so there is no length to show.
        let said = |d: super::BodyDigest| match max {
            0 => "<not compared: DIFF_MAX_BODY=0>".to_string(),
            _ => format!("<{} bytes, over DIFF_MAX_BODY{kept}>", d.len()),
        };
        out.push(Difference {
            path: "$body".to_string(),
            kind: diff::DiffKind::Uncompared,
            running: said(rd),
            testing: said(od),
        });
    }
    Some(out)
}

/// The witness's body in the form running's is compared in (`decoded`: as it says), if it can
/// be set beside it ([`encoding::witness_form`]).
fn like_running(
    w: &mut Answered,
    running: &HeaderMap,
    decoded: bool,
    max: usize,
) -> Option<bytes::Bytes> {
    match encoding::witness_form(running, decoded, &w.headers)? {
        encoding::Form::Plain => w.body.plain(&w.headers, max),
        encoding::Form::AsCame => w.body.body(),
    }
}

/// The headers compared: as they came, or without `Vary: accept-encoding` (a compression
/// middleware adds it to every answer, compressed or not, for caches) and, where the answers
/// differ in their coding only as the request's `Accept-Encoding` (`accepted`) allowed, without
/// `Content-Encoding`: they say how the answer travelled, not what it says.
fn compared_headers<'a>(
    running: &'a HeaderMap,
    other: &'a HeaderMap,
    accepted: Option<&[u8]>,
) -> (Cow<'a, HeaderMap>, Cow<'a, HeaderMap>) {
    let recoded = encoding::recoded_as_asked(running, other, accepted);
    let vary = encoding::vary_differs_in_coding_only(running, other);
    if !recoded && !vary {
        return (Cow::Borrowed(running), Cow::Borrowed(other));
    }
    (
        Cow::Owned(encoding::without_coding(running, recoded)),
        Cow::Owned(encoding::without_coding(other, recoded)),
    )
}

/// One side of a comparison, borrowed.
pub(super) fn side<'a>(
    status: u16,
    content_type: Option<&'a str>,
    headers: &'a HeaderMap,
    body: &'a [u8],
    version: &'a str,
) -> diff::Answer<'a> {
    diff::Answer {
        status,
        content_type,
        body,
        version,
        headers: Some(headers),
    }
}

/// The pair for the scorer. Answers are compared only where the statuses agree: a different
/// status is judged on its own. Without a diff job only the body fingerprints are compared.
pub(super) fn pair(
    mut job: MirrorJob,
    outcome: Result<Answered, MirrorError>,
    secondary: Option<Answered>,
    cfg: &Config,
) -> Pair {
    let (testing_status, testing_latency, testing_error, diffs, noise) = match outcome {
        Ok(mut a) => {
            let (status, latency) = (a.status, a.latency);
            let (diffs, noise) = match (job.running_body.as_mut(), job.diff.as_ref()) {
                (Some(rb), Some(d)) => {
                    let rv = d.running.version.to_string();
                    let tv = job.target.version.to_string();
                    let mut secondary = secondary;
                    let mut running = Running {
                        status: job.running_status,
                        headers: &d.headers,
                        body: rb,
                        version: &rv,
                        accepted: d.accept_encoding.as_ref().map(|v| v.as_bytes()),
                    };
                    let diffs = judge(&mut running, (&mut a, &tv), secondary.as_mut(), cfg);
                    let noise = secondary
                        .as_mut()
                        .and_then(|s| judge(&mut running, (s, &rv), Some(&mut a), cfg));
                    (diffs, noise)
                }
                // Not sampled: not compared. A fingerprint cannot tell a version string from a
                // regression, and a half-judged pair would only mislead the scorer.
                _ => (None, None),
            };
            (Some(status.as_u16()), Some(latency), None, diffs, noise)
        }
        Err(e) => (None, None, Some(e.to_string()), None, None),
    };
    Pair {
        testing: job.target.id,
        method: job.method,
        path: job
            .path_and_query
            .as_ref()
            .map(|p| p.path().to_string())
            .unwrap_or_else(|| "/".to_string()),
        running_status: job.running_status.as_u16(),
        running_latency: job.running_latency,
        testing_status,
        testing_latency,
        secondary_latency: None,
        secondary_status: None,
        testing_error,
        diffs,
        noise,
        replayed: None,
    }
}
