//! Who may do and see what on the admin API. Over TCP a mutating call needs the bearer token, and
//! so do users' answer values and hooks' output in what a read returns: without it, reads show
//! structure and counts with those values replaced by [`crate::private::HIDDEN`]. The unix socket
//! (mode 0600, understudy's own user) needs no token and sees everything.

use std::borrow::Cow;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;

use crate::events::{Event, Stamped};
use crate::supervisor::Status;

/// What a read may show its caller: set on every request by [`sight`], read by the handlers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sight {
    /// The unix socket, or TCP with the token: everything, as understudy has it.
    Full,
    /// TCP without the token: users' answer values and hooks' output hidden.
    Public,
}

impl Sight {
    /// `status` as this caller may see it: the differences' example values hidden when public.
    pub(super) fn status(self, status: &Status) -> Cow<'_, Status> {
        match (self, &status.verdict) {
            (Sight::Public, Some(v)) if !v.diffs.is_empty() => {
                let mut st = status.clone();
                if let Some(v) = st.verdict.as_mut() {
                    v.diffs
                        .iter_mut()
                        .for_each(crate::score::DiffRow::hide_values);
                }
                Cow::Owned(st)
            }
            _ => Cow::Borrowed(status),
        }
    }

    /// An event as this caller may see it: a `scored` event's example values hidden when public.
    pub(super) fn event(self, e: &Stamped) -> Cow<'_, Stamped> {
        match (self, &e.event) {
            (Sight::Public, Event::Scored { .. }) => {
                let mut e = e.clone();
                if let Event::Scored { diffs, .. } = &mut e.event {
                    diffs
                        .iter_mut()
                        .for_each(crate::score::DiffRow::hide_values);
                }
                Cow::Owned(e)
            }
            _ => Cow::Borrowed(e),
        }
    }

    /// `body` as JSON this caller may see: when public, every value quoted into a message (an
    /// example in a reason, a hook's output) is hidden too. Typed parts go through
    /// [`Sight::status`] or [`Sight::event`] first.
    pub(super) fn json<T: Serialize>(self, body: &T) -> serde_json::Value {
        let mut v = serde_json::to_value(body).unwrap_or(serde_json::Value::Null);
        if self == Sight::Public {
            crate::private::hide_json(&mut v);
        }
        v
    }
}

/// Middleware: what the request's caller may see; `token` is `None` on the unix socket.
pub(super) async fn sight(
    State(token): State<Option<Arc<str>>>,
    mut req: Request,
    next: Next,
) -> Response {
    let sight = match &token {
        Some(token) if !entitled(req.headers(), token) => Sight::Public,
        _ => Sight::Full,
    };
    req.extensions_mut().insert(sight);
    next.run(req).await
}

/// Middleware for mutating calls over TCP: 401 without the token.
pub(super) async fn require_token(
    State(token): State<Arc<str>>,
    req: Request,
    next: Next,
) -> Response {
    if entitled(req.headers(), &token) {
        return next.run(req).await;
    }
    // A token that was sent but is not the one is said apart from none: the caller has the
    // scheme right and must look at which token it holds.
    let error = match req.headers().get(header::AUTHORIZATION) {
        Some(_) => {
            "this call changes what serves users, and the Authorization sent is not `Bearer` \
             with understudy's token: check it against ADMIN_TOKEN, or the file \
             .understudy/admin.token when ADMIN_TOKEN is unset, or use the unix socket"
        }
        None => {
            "this call changes what serves users: send Authorization: Bearer <token> \
             (ADMIN_TOKEN, or the file .understudy/admin.token), or use the unix socket"
        }
    };
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(json!({ "ok": false, "error": error })),
    )
        .into_response()
}

/// Whether `headers` carry `Authorization: Bearer <token>`: the one test of the token, for
/// steering and for seeing values alike.
fn entitled(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .is_some_and(|given| same(given.as_bytes(), token.as_bytes()))
}

/// The credentials of an `Authorization: Bearer <token>` value; the scheme is matched without
/// regard to case (RFC 9110 §11.1), so `bearer` from a client library is not a 401.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Compare without an early exit, so the time taken does not tell how much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_tokens_exactly() {
        assert!(same(b"abcdef", b"abcdef"));
        assert!(!same(b"abcdef", b"abcdeg"));
        assert!(!same(b"abc", b"abcdef"));
    }

    #[test]
    fn the_bearer_scheme_is_matched_in_any_case() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc "), Some("abc"));
        assert_eq!(bearer("BEARER abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearerabc"), None);
    }

    #[test]
    fn only_the_right_token_entitles() {
        let mut h = HeaderMap::new();
        assert!(!entitled(&h, "tok"));
        h.insert(header::AUTHORIZATION, "Bearer nope".parse().unwrap());
        assert!(!entitled(&h, "tok"));
        h.insert(header::AUTHORIZATION, "bearer tok".parse().unwrap());
        assert!(entitled(&h, "tok"));
    }
}
