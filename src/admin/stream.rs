//! The event stream (`GET /api/events`, server-sent events) and its backlog as JSON. A stream
//! holds its connection for as long as it is read, so each listener serves at most half its
//! connections as streams: the other half is always there for status, verdict, gate, metrics
//! and steering.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{AdminState, Sight};

/// How often an idle event stream sends a comment: a client that hears nothing for several of
/// these (`understudy events --follow`) knows the server stopped answering.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The event streams one listener may hold at once, and what that bound comes from (named when
/// a stream is refused).
#[derive(Clone, Debug)]
pub(super) struct StreamSlots {
    permits: Arc<Semaphore>,
    /// How many streams at most.
    bound: usize,
    /// The listener's connection bound, as an operator would look it up.
    of: &'static str,
    /// That bound's value.
    connections: usize,
}

impl StreamSlots {
    /// Half of a listener's `connections` (rounded down), named `of` in a refusal: the rest stay
    /// for short calls, whatever the streams do. With one connection there is no room for a
    /// stream at all.
    pub(super) fn half_of(connections: usize, of: &'static str) -> StreamSlots {
        let bound = connections / 2;
        StreamSlots {
            permits: Arc::new(Semaphore::new(bound)),
            bound,
            of,
            connections,
        }
    }

    /// A slot for one more stream, held until the stream ends; `None` when all are taken.
    fn take(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// The 503 a stream past the bound gets, saying why and what to do.
    fn refusal(&self) -> Response {
        let (bound, connections, of) = (self.bound, self.connections, self.of);
        let raise = match of {
            "MAX_ADMIN_CONNECTIONS" => ", or raise MAX_ADMIN_CONNECTIONS",
            _ => "",
        };
        let error = format!(
            "this admin listener serves at most {bound} event streams at once, half of its \
             {connections} connections ({of}), so that other calls always find one: close a \
             stream (a dashboard tab, an `understudy events --follow`) and try again{raise}"
        );
        (
            StatusCode::SERVICE_UNAVAILABLE,
            // The refused client must not keep the connection idle: it is a slot too.
            [(header::CONNECTION, "close")],
            Json(json!({ "ok": false, "error": error })),
        )
            .into_response()
    }
}

/// `?after=<seq>`: resume after this event (as the `Last-Event-ID` header does).
#[derive(Debug, serde::Deserialize)]
pub(super) struct EventsQuery {
    after: Option<u64>,
}

/// Server-sent events: every decision as it happens, each with its sequence number as the SSE id,
/// so a client that reconnects with `Last-Event-ID` (or `?after=`) gets what it missed, as far as
/// the backlog reaches, as the caller may see them ([`Sight`]). Past the listener's stream slots,
/// 503.
pub(super) async fn events(
    State(s): State<AdminState>,
    Extension(slots): Extension<StreamSlots>,
    Extension(sight): Extension<Sight>,
    headers: axum::http::HeaderMap,
    q: Result<axum::extract::Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match q {
        Ok(axum::extract::Query(q)) => q,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({
                    "ok": false,
                    "error": format!(
                        "{}: resume with ?after=<event number> once, or with the \
                         Last-Event-ID header",
                        e.body_text()
                    ),
                })),
            )
                .into_response()
        }
    };
    use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
    use tokio::sync::broadcast::error::RecvError;
    let Some(slot) = slots.take() else {
        return slots.refusal();
    };
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or(q.after);
    let (missed, rx) = match last {
        Some(last) => s.events.subscribe_after(last),
        None => (Vec::new(), s.events.subscribe()),
    };
    let sse = move |e: &crate::events::Stamped| {
        SseEvent::default()
            .id(e.seq.to_string())
            .event(e.name())
            .data(sight.json(&*sight.event(e)).to_string())
    };
    let queue: std::collections::VecDeque<_> = missed.into();
    // The slot travels with the stream and is given back when it is dropped.
    let stream = futures_util::stream::unfold(
        (queue, rx, s.stop.clone(), slot),
        move |(mut queue, mut rx, stop, slot)| async move {
            if let Some(e) = queue.pop_front() {
                return Some((
                    Ok::<_, std::convert::Infallible>(sse(&e)),
                    (queue, rx, stop, slot),
                ));
            }
            let item = tokio::select! {
                _ = stop.cancelled() => return None,
                r = rx.recv() => match r {
                    Ok(e) => sse(&e),
                    Err(RecvError::Lagged(n)) => SseEvent::default()
                        .comment(format!("this client fell behind: {n} events were dropped")),
                    Err(RecvError::Closed) => return None,
                },
            };
            Some((Ok(item), (queue, rx, stop, slot)))
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// `?skip=<name>[,<name>...]`: event names left out of the recent events (`scored`, which comes
/// every EVALUATE_EVERY and would push every decision out of the last 100).
#[derive(Debug, serde::Deserialize)]
pub(super) struct RecentQuery {
    skip: Option<String>,
}

/// The last 100 events, oldest first, as JSON, as the caller may see them (the dashboard's first
/// paint).
pub(super) async fn recent_events(
    State(s): State<AdminState>,
    Extension(sight): Extension<Sight>,
) -> Response {
    recent_answer(&s, &sight, "")
}

/// `GET /api/events/recent` (`understudy events`): [`recent_events`], but with `?skip=`, the
/// last 100 of the other events, as far as the backlog reaches.
pub(super) async fn recent_events_skipping(
    State(s): State<AdminState>,
    Extension(sight): Extension<Sight>,
    q: Result<axum::extract::Query<RecentQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match q {
        Ok(axum::extract::Query(q)) => recent_answer(&s, &sight, q.skip.as_deref().unwrap_or("")),
        Err(e) => {
            let error = format!("{}: ?skip=<event name>[,<event name>...]", e.body_text());
            (
                StatusCode::BAD_REQUEST,
                Json(json!({ "ok": false, "error": error })),
            )
                .into_response()
        }
    }
}

/// The last 100 events not named in `skip`, as the caller may see them.
fn recent_answer(s: &AdminState, sight: &Sight, skip: &str) -> Response {
    let recent = recent_except(&s.events, skip, 100);
    let list: Vec<_> = recent.iter().map(|e| sight.event(e)).collect();
    Json(sight.json(&json!({ "events": list }))).into_response()
}

/// The last `n` kept events whose name is not in the comma-separated `skip`, oldest first.
fn recent_except(
    events: &crate::events::Events,
    skip: &str,
    n: usize,
) -> Vec<std::sync::Arc<crate::events::Stamped>> {
    let skip: Vec<&str> = skip
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    let mut kept: Vec<_> = events
        .recent(crate::events::EVENT_BACKLOG)
        .into_iter()
        .rev()
        .filter(|e| !skip.contains(&e.name().as_str()))
        .take(n)
        .collect();
    kept.reverse();
    kept
}

/// Why the build `version` being installed waits, when its latest build event says it does (a
/// disk too short to unpack it, an earlier build of its version still leaving): status says it
/// beside `installing`, where an operator once saw only the version.
pub(super) fn install_waiting(
    events: &crate::events::Events,
    version: &semver::Version,
) -> Option<String> {
    use crate::events::Event as E;
    let latest = events
        .recent(crate::events::EVENT_BACKLOG)
        .into_iter()
        .rev()
        .find(|e| match &e.event {
            E::BuildFound { version: v, .. }
            | E::BuildWaiting { version: v, .. }
            | E::Installed { version: v }
            | E::Rejected { version: v, .. } => v == version,
            _ => false,
        })?;
    match &latest.event {
        E::BuildWaiting { reason, .. } => Some(reason.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::events::{Event, Events};

    /// Decisions stay in reach however many skipped events came after them.
    #[test]
    fn recent_events_skip_the_named_ones_and_still_give_the_last_n_others() {
        let events = Events::default();
        events.emit(Event::Resumed);
        for _ in 0..150 {
            events.emit(Event::Paused);
        }
        let names = |skip: &str| -> Vec<String> {
            super::recent_except(&events, skip, 100)
                .iter()
                .map(|e| e.name())
                .collect()
        };
        assert_eq!(names("paused"), ["resumed"]);
        let all = names("");
        assert_eq!(all.len(), 100);
        assert!(all.iter().all(|n| n == "paused"), "{all:?}");
    }

    /// The build being installed shows why it waits while its latest build event is a wait
    /// (a disk too short, say), and nothing once it was installed after all.
    #[test]
    fn an_install_waits_for_the_reason_of_its_latest_build_event() {
        let events = Events::default();
        let v = semver::Version::new(1, 6, 0);
        let other = semver::Version::new(1, 5, 0);
        let waiting = |reason: &str, version: &semver::Version| Event::BuildWaiting {
            file: format!("app-{version}"),
            version: version.clone(),
            reason: reason.into(),
        };
        assert_eq!(super::install_waiting(&events, &v), None);
        events.emit(waiting("disk short", &v));
        events.emit(waiting("another", &other));
        assert_eq!(
            super::install_waiting(&events, &v).as_deref(),
            Some("disk short")
        );
        events.emit(Event::Installed { version: v.clone() });
        assert_eq!(super::install_waiting(&events, &v), None);
    }
}
