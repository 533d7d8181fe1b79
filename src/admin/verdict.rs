//! What a fleet tool reads (`GET /api/verdict`) and a rollout gates on (`POST /api/gate`): the
//! shadow verdict, held back while this host still has a say (the canary's steps, a refusal by
//! `PRE_PROMOTE`), so a fleet never takes `promote` for a build this host would not promote.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::json;

use super::auth::Sight;
use super::AdminState;
use crate::events::VerdictKind;
use crate::supervisor::control::VerdictStatus;
use crate::supervisor::Status;

/// The verdict as a fleet tool reads it: wait, promote or reject, with a score and reasons.
#[derive(Debug, Serialize)]
struct VerdictBody {
    verdict: VerdictKind,
    score: u32,
    reasons: Vec<String>,
    version: Option<String>,
    pairs: u64,
    /// What the pairs are (live, replayed from how many recorded requests): a fleet tool
    /// deciding on this verdict must see when it rests on replays.
    evidence: crate::score::Evidence,
}

fn current_verdict(st: &Status) -> VerdictBody {
    match (&st.verdict, &st.testing) {
        (Some(v), _) if v.verdict == VerdictKind::Promote && refused_by_hook(st, v).is_some() => {
            VerdictBody {
                verdict: VerdictKind::Wait,
                score: v.score,
                reasons: refused_by_hook(st, v).into_iter().collect(),
                version: Some(v.version.to_string()),
                pairs: v.pairs,
                evidence: v.evidence.clone(),
            }
        }
        (Some(v), _) if v.verdict == VerdictKind::Promote && canary_due(st).is_some() => {
            VerdictBody {
                verdict: VerdictKind::Wait,
                score: v.score,
                reasons: canary_due(st).into_iter().collect(),
                version: Some(v.version.to_string()),
                pairs: v.pairs,
                evidence: v.evidence.clone(),
            }
        }
        (Some(v), _) => VerdictBody {
            verdict: v.verdict,
            score: v.score,
            reasons: v.reasons.clone(),
            version: Some(v.version.to_string()),
            pairs: v.pairs,
            evidence: v.evidence.clone(),
        },
        (None, Some(t)) => VerdictBody {
            verdict: VerdictKind::Wait,
            score: 0,
            reasons: vec![format!("{} is not scored yet", t.version)],
            version: Some(t.version.to_string()),
            pairs: 0,
            evidence: crate::score::Evidence::default(),
        },
        (None, None) => VerdictBody {
            verdict: VerdictKind::Wait,
            score: 0,
            reasons: vec!["no build is being tested".to_string()],
            version: None,
            pairs: 0,
            evidence: crate::score::Evidence::default(),
        },
    }
}

/// Why a build the shadow verdict passes is held by this host's `PRE_PROMOTE`, which refused it:
/// it stays testing until an operator promotes it, so a fleet must not take `promote` either.
fn refused_by_hook(st: &Status, v: &VerdictStatus) -> Option<String> {
    let why = st.hook_failure.as_ref()?;
    let why = why.strip_prefix(&format!("{}: ", v.version))?;
    Some(format!(
        "the shadow verdict passes, but {why}: the build stays testing, not promoted, until an \
         operator runs `understudy promote` (or a newer build replaces it)"
    ))
}

/// Why a build the shadow verdict passes is not passed yet: `CANARY_STEPS` tests its writes on
/// users, and until the last step has passed a fleet must not take `promote` (it did at step 1).
fn canary_due(st: &Status) -> Option<String> {
    if st.canary_steps == 0 || st.promoting.is_some() || st.transaction.is_some() {
        return None;
    }
    Some(match &st.canary {
        Some(c) if c.passed => return None,
        Some(c) => format!(
            "the shadow verdict passes; the canary (CANARY_STEPS) is at step {} of {}, and the build passes once the last step has",
            c.step, c.steps
        ),
        None => format!(
            "the shadow verdict passes; the canary's {} steps (CANARY_STEPS) have not begun (they do not while understudy is paused), and the build passes once the last step has",
            st.canary_steps
        ),
    })
}

pub(super) async fn verdict(
    State(s): State<AdminState>,
    Extension(sight): Extension<Sight>,
) -> Response {
    Json(sight.json(&current_verdict(&s.handle.status()))).into_response()
}

/// A Flagger `confirm-promotion` webhook: 200 lets the rollout go on, anything else holds it.
/// Its message quotes the reasons, so it hides what they quote as any read does.
pub(super) async fn gate(
    State(s): State<AdminState>,
    Extension(sight): Extension<Sight>,
) -> Response {
    let v = current_verdict(&s.handle.status());
    let code = if v.verdict == VerdictKind::Promote {
        StatusCode::OK
    } else {
        StatusCode::FORBIDDEN
    };
    let why = match v.verdict {
        VerdictKind::Promote => "understudy's verdict is promote".to_string(),
        other => format!("understudy's verdict is {other}: {}", v.reasons.join("; ")),
    };
    (
        code,
        Json(sight.json(&json!({ "verdict": v.verdict, "score": v.score, "message": why }))),
    )
        .into_response()
}
