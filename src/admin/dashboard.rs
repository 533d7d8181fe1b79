//! `GET /`: the operators' dashboard, one HTML page (inline CSS and JavaScript) compiled into the
//! binary. It only reads; its buttons call the same token-guarded API as any other client.
//!
//! The page arrives with the status and the recent events already in it (what `GET /api/status`
//! and `GET /api/events/recent` answer at that moment), so it shows the truth on first paint,
//! before any request of its own; then it keeps itself current with those calls and the SSE
//! stream.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::{AdminState, Sight};

/// The page; it loads nothing but the admin API of the server it came from.
const PAGE: &str = include_str!("dashboard.html");

/// Where the page expects its first data (a JavaScript expression).
const SLOT: &str = "/*INITIAL*/null";

/// What the browser may do with the page: talk to this origin only, never be framed (so the
/// buttons cannot be clickjacked), never load anything from elsewhere.
const POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                      connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                      form-action 'none'; frame-ancestors 'none'";

/// Serve the dashboard; no token needed, as it shows only what the read-only calls show to the
/// same caller (a browser sends no token for the page itself: users' values come hidden, until
/// the page's own calls send the token it was given).
pub(super) async fn page(State(s): State<AdminState>, sight: Extension<Sight>) -> Response {
    let status = json_of(super::status(State(s.clone()), sight).await).await;
    let recent = json_of(super::stream::recent_events(State(s), sight).await).await;
    let initial = format!(r#"{{"status":{status},"recent":{recent}}}"#);
    // JSON is a JavaScript expression; with every `<` escaped no string in it (a build's name, a
    // hook's output) can end the script element.
    let html = PAGE.replacen(SLOT, &initial.replace('<', "\\u003c"), 1);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        html,
    )
        .into_response()
}

/// The JSON body of one of the API's own answers, as it was written (`null` if it is not JSON).
async fn json_of(r: Response) -> String {
    match axum::body::to_bytes(r.into_body(), 64 << 20).await {
        Ok(b) if serde_json::from_slice::<serde::de::IgnoredAny>(&b).is_ok() => {
            String::from_utf8_lossy(&b).into_owned()
        }
        _ => "null".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_one_slot_for_its_first_data_and_loads_nothing_from_elsewhere() {
        assert_eq!(PAGE.matches(SLOT).count(), 1);
        for outside in ["https:", "src=", "href=", "url(", "@import"] {
            assert!(!PAGE.contains(outside), "the page refers to {outside}");
        }
        let svg = "http://www.w3.org/2000/svg";
        assert_eq!(PAGE.matches("http:").count(), PAGE.matches(svg).count());
    }
}
