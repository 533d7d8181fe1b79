//! Answers for a path the API does not serve, or a method a path does not take: JSON errors as
//! every other refusal is (README: `{ok:false, error}`), where axum answers with an empty body.

use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// 404 for a path no route serves, saying where the API's paths are listed.
pub(super) async fn no_such_path(method: Method, uri: Uri) -> Response {
    let error = format!(
        "no such API path: {method} {}; the paths served are /api/status, /api/verdict, \
         /api/history, /api/events, /api/schedule, /metrics and the steering calls (POST \
         /api/promote, /api/abort, ...) listed in README's admin API section",
        uri.path()
    );
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "ok": false, "error": error })),
    )
        .into_response()
}

/// 405 for a served path asked with a method it does not take.
pub(super) async fn wrong_method(method: Method, uri: Uri) -> Response {
    let error = format!(
        "{} does not take {method}: status-like paths take GET, steering calls take POST (and \
         DELETE /api/schedule/<id>)",
        uri.path()
    );
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({ "ok": false, "error": error })),
    )
        .into_response()
}
