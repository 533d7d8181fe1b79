//! The operators' side door: an HTTP API (axum) on `ADMIN_LISTEN` and on the unix socket
//! `.understudy/admin.sock`, through which status is read and the supervisor is steered. Every
//! command becomes a [`Command`] for the supervisor; this module never touches the base dir's
//! builds itself, so the supervisor stays the one owner of state.
//!
//! Over TCP every mutating call needs `Authorization: Bearer <token>`; the unix socket needs none
//! (its mode 0600 lets only understudy's own user connect). Read-only calls (status, verdict,
//! gate) need no token: a fleet tool only reads; but without it, what they return has users'
//! answer values and hooks' output hidden ([`auth`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::layout::{write_atomic, Layout};
use crate::proxy::ProxyStats;
use crate::supervisor::{Command, CommandError, Status, SupervisorHandle};
use auth::Sight;
use stream::StreamSlots;

mod auth;
mod conns;
mod dashboard;
mod socket;
mod stream;
mod unknown;
mod verdict;

pub use stream::KEEP_ALIVE;

/// Connections the unix socket holds at once: the CLI's, counted in `FD_RESERVE`. Half of them
/// at most are event streams (`understudy events --follow`), so commands always find one.
const UNIX_CONNECTIONS: usize = 32;

/// Why the admin API could not be set up; understudy does not start without it.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The TCP address is taken or not ours.
    #[error("cannot listen on ADMIN_LISTEN={addr}: {source}; choose another address or set ADMIN_LISTEN=off")]
    Listen {
        /// The configured address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The listener systemd passed (named `admin`) cannot be served.
    #[error("cannot serve the admin listener passed by systemd: {source}")]
    Passed {
        /// The OS error.
        source: std::io::Error,
    },
    /// A file under `.understudy/` could not be written.
    #[error("cannot {what} {path}: {source}; check that the base dir is writable")]
    File {
        /// What was attempted.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The admin listeners, bound before anything else starts so a taken port fails fast.
pub struct Bound {
    tcp: Option<tokio::net::TcpListener>,
    unix: tokio::net::UnixListener,
    socket: PathBuf,
    token: Arc<str>,
    /// `MAX_ADMIN_CONNECTIONS`, for the TCP listener.
    connections: usize,
    /// `HEADER_TIMEOUT`, for heads and for idle connections.
    header_timeout: std::time::Duration,
    /// `SEND_TIMEOUT`: how long a connection's writes may stall before it is dropped.
    send_timeout: std::time::Duration,
    /// `ADMIN_HOSTS` and the names always allowed.
    hosts: conns::AllowedHosts,
    /// `admin.json` and its text, when an upgrade started this understudy: the takeover writes
    /// it just before it says `ready` (until then the old one's is right).
    announce: Option<(PathBuf, String)>,
}

impl Bound {
    /// `admin.json`'s path and text when an upgrade started this process: the takeover writes
    /// it just before it says `ready`, so once `understudy upgrade` returns, it names the new
    /// process.
    pub fn take_announcement(&mut self) -> Option<(PathBuf, String)> {
        self.announce.take()
    }

    /// The TCP address actually bound (a port 0 in `ADMIN_LISTEN` is resolved here).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The descriptors of the TCP listener (if any) and of the unix socket's, which an upgrade
    /// hands to the next understudy.
    pub fn fds(&self) -> (Option<std::os::fd::RawFd>, std::os::fd::RawFd) {
        use std::os::fd::AsRawFd;
        (
            self.tcp.as_ref().map(|l| l.as_raw_fd()),
            self.unix.as_raw_fd(),
        )
    }
}

/// Bind `ADMIN_LISTEN` (or take the listener systemd `passed`) and the unix socket, settle the
/// token and write `admin.json`, which also names `proxy`, the users' address actually bound (so
/// `LISTEN=127.0.0.1:0` can be found).
pub fn bind(
    cfg: &Config,
    layout: &Layout,
    proxy: SocketAddr,
    passed: Option<std::net::TcpListener>,
    socket: Option<std::os::unix::net::UnixListener>,
) -> Result<Bound, AdminError> {
    let file = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| AdminError::File { what, path, source }
    };
    let tcp = match (passed, cfg.admin_listen) {
        (Some(l), _) => Some(
            l.set_nonblocking(true)
                .and_then(|()| tokio::net::TcpListener::from_std(l))
                .map_err(|source| AdminError::Passed { source })?,
        ),
        (None, None) => None,
        (None, Some(addr)) => {
            let l = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .and_then(tokio::net::TcpListener::from_std)
                .map_err(|source| AdminError::Listen { addr, source })?;
            Some(l)
        }
    };
    let dir = layout.state_dir();
    std::fs::create_dir_all(&dir).map_err(file("create", &dir))?;
    let path = layout.admin_socket();
    let taking_over = socket.is_some();
    let unix = match socket {
        // Handed over by the previous understudy: its file is already in place.
        Some(l) => l
            .set_nonblocking(true)
            .and_then(|()| tokio::net::UnixListener::from_std(l)),
        None => socket::bind(&path),
    }
    .map_err(file("serve the admin socket", &path))?;
    let socket = path;
    let token: Arc<str> = match &cfg.admin_token {
        Some(t) => t.as_str().into(),
        None => {
            let path = layout.admin_token();
            token_file(&path)
                .map_err(file("write the admin token", &path))?
                .into()
        }
    };
    let bound = Bound {
        tcp,
        unix,
        socket,
        token,
        connections: cfg.admin_connections,
        header_timeout: cfg.header_timeout,
        send_timeout: cfg.send_timeout,
        hosts: conns::AllowedHosts(cfg.admin_hosts.clone().into()),
        announce: None,
    };
    let info = json!({
        "listen": bound.local_addr().map(|a| a.to_string()),
        "proxy": proxy.to_string(),
        "socket": bound.socket,
        "pid": std::process::id(),
        "token_file": cfg.admin_token.is_none().then(|| layout.admin_token()),
    });
    let path = layout.admin_json();
    let mut bound = bound;
    if taking_over {
        bound.announce = Some((path, info.to_string()));
    } else {
        write_atomic(&path, info.to_string().as_bytes()).map_err(file("write", &path))?;
    }
    if let Some(addr) = bound.local_addr() {
        tracing::info!("admin API on http://{addr} and {}", bound.socket.display());
    }
    Ok(bound)
}

/// The token kept in `path` (mode 0600), made on first use so scripts keep working across
/// restarts.
fn token_file(path: &Path) -> std::io::Result<String> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(t) = std::fs::read_to_string(path) {
        let t = t.trim();
        if t.len() >= 32 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(t.to_string());
        }
    }
    let mut raw = [0u8; 24];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut raw)?;
    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(format!("{token}\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(token)
}

/// What the handlers read and steer.
#[derive(Clone)]
pub struct AdminState {
    /// The supervisor's commands and status.
    pub handle: SupervisorHandle,
    /// The proxy's counters.
    pub stats: Arc<ProxyStats>,
    /// `history.jsonl`, read (never written) to answer what served when.
    pub history: PathBuf,
    /// The supervisor's events, for the SSE stream.
    pub events: crate::events::Events,
    /// Ends every event stream at shutdown, so draining the API never waits on one.
    pub stop: CancellationToken,
    /// What `GET /metrics` shows.
    pub metrics: crate::metrics::Metrics,
    /// The users' address the proxy bound (`LISTEN`, a port 0 resolved), shown in status.
    pub listen: SocketAddr,
    /// When this understudy process started (RFC 3339): with its pid and version, it tells an
    /// operator which understudy answers, e.g. after replacing the binary.
    pub started: String,
    /// Cancelled once this understudy handed over to a new one, which now serves the socket file.
    pub handed: CancellationToken,
    /// Cancelled once this understudy serves (at once, or once an upgrade it was started by is
    /// done): before, the socket file is the old understudy's.
    pub serving: CancellationToken,
}

/// Serve both listeners until `stop`, then let the calls in flight finish. TCP holds at most
/// `MAX_ADMIN_CONNECTIONS` and refuses a `Host` that is not ours (421); the unix socket, which only
/// understudy's own user can reach, has a fixed bound of its own inside the descriptor reserve.
/// On each, event streams take at most half the connections, and a connection whose writes
/// stall for `SEND_TIMEOUT` is dropped.
pub async fn serve(bound: Bound, state: AdminState, stop: CancellationToken) {
    let Bound {
        tcp,
        unix,
        socket,
        token,
        connections,
        header_timeout,
        send_timeout,
        hosts,
        announce: _,
    } = bound;
    let (handed, serving) = (state.handed.clone(), state.serving.clone());
    let timeouts = conns::Timeouts {
        header: header_timeout,
        send: send_timeout,
    };
    let local_streams = StreamSlots::half_of(UNIX_CONNECTIONS, "the unix socket's fixed bound");
    let local = router(state.clone(), None, local_streams);
    let local_permits = Arc::new(tokio::sync::Semaphore::new(UNIX_CONNECTIONS));
    let unix_task = conns::serve(unix, local, local_permits, timeouts, stop.clone());
    let tcp_task = async move {
        if let Some(tcp) = tcp {
            let streams = StreamSlots::half_of(connections, "MAX_ADMIN_CONNECTIONS");
            let remote = router(state, Some(token), streams)
                .layer(middleware::from_fn_with_state(hosts, conns::require_host));
            let permits = Arc::new(tokio::sync::Semaphore::new(connections));
            conns::serve(tcp, remote, permits, timeouts, stop).await;
        }
    };
    tokio::join!(unix_task, tcp_task);
    if serving.is_cancelled() && !handed.is_cancelled() {
        let _ = std::fs::remove_file(&socket);
    }
}

/// The API; with `token`, mutating calls need it as a bearer token; `streams` bounds the event
/// streams of the listener it serves.
fn router(state: AdminState, token: Option<Arc<str>>, streams: StreamSlots) -> Router {
    let mut steer = Router::new()
        .route("/api/promote", post(promote))
        .route("/api/abort", post(abort))
        .route("/api/pause", post(pause))
        .route("/api/resume", post(resume))
        .route("/api/rollback", post(rollback))
        // Over TCP (`token` set) the token must not stand for running any program as understudy.
        .route("/api/upgrade", {
            let tcp = token.is_some();
            post(move |s: State<AdminState>, body: Bytes| upgrade(s, body, tcp))
        })
        .route("/api/schedule/{id}", axum::routing::delete(cancel_schedule));
    if let Some(token) = token.clone() {
        steer = steer.route_layer(middleware::from_fn_with_state(token, auth::require_token));
    }
    Router::new()
        .route("/", get(dashboard::page))
        .route("/api/status", get(status))
        .route("/api/verdict", get(verdict::verdict))
        .route("/api/gate", post(verdict::gate))
        .route("/api/history", get(history))
        .route("/api/events", get(stream::events))
        .route("/api/events/recent", get(stream::recent_events_skipping))
        .route("/api/schedule", get(schedules))
        .route("/metrics", get(metrics))
        .merge(steer)
        .fallback(unknown::no_such_path)
        .method_not_allowed_fallback(unknown::wrong_method)
        .layer(axum::Extension(streams))
        .layer(middleware::from_fn_with_state(token, auth::sight))
        .with_state(state)
}

/// The counters status shows beside the supervisor's state.
#[derive(Debug, Serialize)]
struct Counters {
    requests: u64,
    mirrored: u64,
    dropped_copies: u64,
    skipped_copies: u64,
    bad_gateway: u64,
    gateway_timeout: u64,
    unavailable: u64,
}

#[derive(Serialize)]
struct StatusBody<'a> {
    #[serde(flatten)]
    status: &'a Status,
    counters: Counters,
    /// Why the build being installed waits, if it does (`build_waiting`'s reason).
    #[serde(skip_serializing_if = "Option::is_none")]
    installing_waiting: Option<String>,
    /// Where users reach the proxy.
    listen: String,
    /// This understudy process: its version, pid and start.
    understudy: Itself,
}

/// Which understudy answers.
#[derive(Debug, Serialize)]
struct Itself {
    version: &'static str,
    pid: u32,
    started: String,
}

/// `GET /metrics`: the Prometheus text exposition; read-only, so no token, as scrapers expect.
async fn metrics(State(s): State<AdminState>) -> Response {
    match s.metrics.render() {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn status(State(s): State<AdminState>, Extension(sight): Extension<Sight>) -> Response {
    let st = s.handle.status();
    let st = sight.status(&st);
    let c = &s.stats;
    let counters = Counters {
        requests: c.requests.load(Ordering::Relaxed),
        mirrored: c.mirrored.load(Ordering::Relaxed),
        dropped_copies: c.mirror_dropped.load(Ordering::Relaxed),
        skipped_copies: c.mirror_skipped_body.load(Ordering::Relaxed),
        bad_gateway: c.bad_gateway.load(Ordering::Relaxed),
        gateway_timeout: c.gateway_timeout.load(Ordering::Relaxed),
        unavailable: c.unavailable.load(Ordering::Relaxed),
    };
    let installing_waiting = st
        .installing
        .as_ref()
        .and_then(|v| stream::install_waiting(&s.events, v));
    Json(sight.json(&StatusBody {
        status: &st,
        counters,
        installing_waiting,
        listen: s.listen.to_string(),
        understudy: Itself {
            version: env!("CARGO_PKG_VERSION"),
            pid: std::process::id(),
            started: s.started.clone(),
        },
    }))
    .into_response()
}

/// `?at=<RFC 3339>`: the instant asked about.
#[derive(Debug, serde::Deserialize)]
struct HistoryQuery {
    at: Option<String>,
}

/// Which version served users at `at` (default: now), and every switch.
async fn history(
    State(s): State<AdminState>,
    q: Result<axum::extract::Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match q {
        Ok(axum::extract::Query(q)) => q,
        Err(e) => {
            return bad_request(format!(
                "{}: ask with ?at=<RFC 3339 instant> once, e.g. ?at=2026-12-01T03:00:00Z, or \
                 with no query for now",
                e.body_text()
            ))
        }
    };
    let now = SystemTime::now();
    let at = match q.at.as_deref().map(parse_instant).transpose() {
        Ok(at) => at.unwrap_or(now),
        Err(e) => return bad_request(e),
    };
    if at > now {
        // The history is a record: a future instant would be answered with a guess as a fact.
        return bad_request(format!(
            "{} is in the future: the history says what served users up to now; ask for an \
             instant up to now, or without --at for now (pending promotions: understudy schedule)",
            crate::supervisor::control::rfc3339(at)
        ));
    }
    let path = s.history.clone();
    let switches = match tokio::task::spawn_blocking(move || crate::history::read(&path)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({ "ok": false, "error": format!("cannot read {}: {e}", s.history.display()) })),
            )
                .into_response()
        }
        Err(e) => return bad_request(format!("reading the history failed: {e}")),
    };
    let (serving, share) = crate::history::serving_at(&switches, at);
    Json(json!({
        "at": crate::supervisor::control::rfc3339(at),
        "serving": serving.map(|s| s.to.to_string()),
        "canary": share,
        "switches": switches,
    }))
    .into_response()
}

impl AdminState {
    /// Ask the supervisor and answer. Once this process handed over to a new one, what was
    /// still queued here is never decided: said as an upgrade under way (retry), not a stop.
    async fn ask(&self, command: Command) -> Response {
        match self.handle.send(command).await {
            Err(CommandError::ShuttingDown) if self.handed.is_cancelled() => {
                answer(Err(CommandError::TakingOver))
            }
            r => answer(r),
        }
    }
}

/// The supervisor's answer as JSON; a process still taking over from the previous one says
/// 503 with `Retry-After`, as nothing was done and the one that serves next will answer.
fn answer(r: Result<String, CommandError>) -> Response {
    match r {
        Ok(message) => (
            StatusCode::OK,
            Json(json!({ "ok": true, "message": message })),
        )
            .into_response(),
        Err(e @ CommandError::TakingOver) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            Json(json!({ "ok": false, "error": e.to_string() })),
        )
            .into_response(),
        Err(e) => {
            let code = match e {
                CommandError::UnknownVersion(_) | CommandError::UnknownSchedule(_) => {
                    StatusCode::NOT_FOUND
                }
                CommandError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::CONFLICT,
            };
            (code, Json(json!({ "ok": false, "error": e.to_string() }))).into_response()
        }
    }
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "ok": false, "error": message })),
    )
        .into_response()
}

/// A JSON object body with no keys but `accepted`, or none at all (an empty body means no
/// options). An unknown key is refused: a misspelt `"At"` must not make a dated promote a prompt one.
fn options(
    body: &Bytes,
    accepted: &[&str],
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Default::default());
    }
    let m = match serde_json::from_slice(body) {
        Ok(serde_json::Value::Object(m)) => m,
        Ok(_) => return Err("the body must be a JSON object".to_string()),
        Err(e) => return Err(format!("the body is not JSON: {e}")),
    };
    match m.keys().find(|k| !accepted.contains(&k.as_str())) {
        None => Ok(m),
        Some(k) => Err(format!(
            "unknown option {k:?}: nothing was done; this call takes {}",
            match accepted {
                [] => "no options".to_string(),
                keys => keys
                    .iter()
                    .map(|k| format!("{k:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        )),
    }
}

/// Parse an RFC 3339 instant such as `2026-12-01T03:00:00Z` (bounded: see [`crate::instant`]).
pub fn parse_instant(s: &str) -> Result<SystemTime, String> {
    crate::instant::parse(s).map_err(|e| format!("\"at\": {e}"))
}

async fn promote(State(s): State<AdminState>, body: Bytes) -> Response {
    let opts = match options(&body, &["at"]) {
        Ok(o) => o,
        Err(e) => return bad_request(e),
    };
    let command = match opts.get("at") {
        None | Some(serde_json::Value::Null) => Command::Promote,
        Some(serde_json::Value::String(at)) => match parse_instant(at) {
            Ok(t) => Command::PromoteAt(t),
            Err(e) => return bad_request(e),
        },
        Some(other) => return bad_request(format!("\"at\" must be a string, not {other}")),
    };
    s.ask(command).await
}

/// Scheduled promotions, pending and recently finished.
async fn schedules(State(s): State<AdminState>, Extension(sight): Extension<Sight>) -> Response {
    let schedules = &s.handle.status().schedules;
    Json(sight.json(&json!({ "schedules": schedules }))).into_response()
}

async fn cancel_schedule(
    State(s): State<AdminState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    match id.trim_start_matches('#').parse::<u64>() {
        Ok(id) => s.ask(Command::CancelSchedule(id)).await,
        Err(_) => bad_request(format!("{id:?} is not a schedule id (a number)")),
    }
}

async fn abort(State(s): State<AdminState>, body: Bytes) -> Response {
    without_options(&s, &body, Command::Abort).await
}

async fn pause(State(s): State<AdminState>, body: Bytes) -> Response {
    without_options(&s, &body, Command::Pause).await
}

async fn resume(State(s): State<AdminState>, body: Bytes) -> Response {
    without_options(&s, &body, Command::Resume).await
}

/// `command`, for a call that takes no options: a body with any (`{"why": …}`) is refused and
/// nothing is done, as for the calls that take some.
async fn without_options(s: &AdminState, body: &Bytes, command: Command) -> Response {
    match options(body, &[]) {
        Ok(_) => s.ask(command).await,
        Err(e) => bad_request(e),
    }
}

/// Replace understudy itself (`{"binary": "/path"}`, default the binary it was started from);
/// answers once the new one serves, or with why it did not (409), the old one serving on. A
/// `binary` is taken only on the unix socket: over `tcp` the token would let a caller run any
/// program as understudy's user, with its listeners and lock (403).
async fn upgrade(State(s): State<AdminState>, body: Bytes, tcp: bool) -> Response {
    let opts = match options(&body, &["binary"]) {
        Ok(o) => o,
        Err(e) => return bad_request(e),
    };
    let binary = match opts.get("binary") {
        None | Some(serde_json::Value::Null) => None,
        Some(_) if tcp => {
            let why = "\"binary\" is not accepted over TCP: the token must not let a caller run any \
                       program as understudy; run `understudy upgrade --binary PATH` on the machine \
                       (it uses the unix socket), or POST without \"binary\" to restart the binary \
                       understudy was started from";
            return (
                StatusCode::FORBIDDEN,
                Json(json!({ "ok": false, "error": why })),
            )
                .into_response();
        }
        Some(serde_json::Value::String(p)) if p.starts_with('/') && p.len() <= 4096 => {
            Some(PathBuf::from(p))
        }
        Some(other) => {
            return bad_request(format!(
                "\"binary\" must be an absolute path of at most 4096 bytes, not {other}"
            ))
        }
    };
    s.ask(Command::Upgrade(binary)).await
}

async fn rollback(State(s): State<AdminState>, body: Bytes) -> Response {
    let opts = match options(&body, &["version"]) {
        Ok(o) => o,
        Err(e) => return bad_request(e),
    };
    let version = match opts.get("version") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(v)) => match semver::Version::parse(v.trim()) {
            Ok(v) => Some(v),
            Err(e) => return bad_request(format!("\"version\": {v:?} is not a version ({e})")),
        },
        Some(other) => return bad_request(format!("\"version\" must be a string, not {other}")),
    };
    if let Some(v) = &version {
        if let Err(refused) = served_before(&s, v).await {
            return refused;
        }
    }
    s.ask(Command::Rollback(version)).await
}

/// A rollback goes only to a version that served users here before, as `history.jsonl` says.
async fn served_before(s: &AdminState, v: &semver::Version) -> Result<(), Response> {
    let path = s.history.clone();
    let switches = tokio::task::spawn_blocking(move || crate::history::read(&path))
        .await
        .map_err(|e| bad_request(format!("reading the history failed: {e}")))?
        .unwrap_or_default();
    if switches.iter().any(|sw| &sw.to == v) {
        return Ok(());
    }
    let error = format!(
        "{v} never served users here ({} lists every version that did): a rollback goes to one of those",
        s.history.display()
    );
    Err((
        StatusCode::CONFLICT,
        Json(json!({ "ok": false, "error": error })),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_accept_nothing_or_an_object() {
        let at = &["at"];
        assert!(options(&Bytes::from_static(b""), at).unwrap().is_empty());
        assert!(options(&Bytes::from_static(b" \n"), at).unwrap().is_empty());
        assert_eq!(
            options(&Bytes::from_static(br#"{"at":"x"}"#), at).unwrap()["at"],
            "x"
        );
        assert!(options(&Bytes::from_static(b"[1]"), at).is_err());
        assert!(options(&Bytes::from_static(b"{"), at).is_err());
    }

    #[test]
    fn an_unknown_option_is_refused_naming_it_and_the_accepted_ones() {
        let e = options(
            &Bytes::from_static(br#"{"At":"2027-01-01T03:00:00Z"}"#),
            &["at"],
        )
        .unwrap_err();
        assert!(e.contains("\"At\"") && e.contains("takes \"at\""), "{e}");
        let e = options(&Bytes::from_static(br#"{"x":1}"#), &[]).unwrap_err();
        assert!(e.contains("no options"), "{e}");
    }

    #[test]
    fn instants_are_rfc3339() {
        let t = parse_instant("2026-12-01T03:00:00Z").unwrap();
        assert_eq!(
            crate::supervisor::control::rfc3339(t),
            "2026-12-01T03:00:00Z"
        );
        assert!(parse_instant("tomorrow").unwrap_err().contains("RFC 3339"));
    }
}
