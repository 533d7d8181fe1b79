//! `understudy status | promote | abort | pause | resume | rollback | verdict`: the admin API's
//! client. It talks to `<base>/.understudy/admin.sock`, so it needs no token and no address:
//! whoever may open the socket (understudy's own user) may steer.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::Method;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use crate::layout::Layout;

mod logs;
mod text;

use logs::logs;
use text::{history_text, schedule_text, status_text, verdict_text};

/// Exit code when understudy answered and refused (409, 404, 400, ...).
pub const EXIT_REFUSED: u8 = 1;
/// Exit code when understudy could not be reached at all.
pub const EXIT_UNREACHABLE: u8 = 2;

/// Where the running understudy is found and how its answer is shown.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The base directory understudy supervises (default: the current directory).
    #[arg(long, short)]
    pub base: Option<PathBuf>,
    /// Print the API's JSON answer instead of text, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// The operator commands, each one admin API call.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ControlCommand {
    /// What runs, what is tested, the verdict and the counters.
    Status(Target),
    /// Promote the build under test now, or at an instant (--at 2026-12-01T03:00:00Z).
    Promote {
        /// Promote at this RFC 3339 instant instead of now.
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Reject the build under test now; running is untouched.
    Abort(Target),
    /// Keep scoring but take no automatic promotion or rejection.
    Pause(Target),
    /// Undo pause.
    Resume(Target),
    /// Bring back the previous version (or VERSION) from its archive.
    Rollback {
        /// The version to bring back (default: the one before running).
        version: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// The verdict about the build under test: wait, promote or reject.
    Verdict(Target),
    /// The latest events (decisions), one per line; --follow keeps printing them as they happen.
    Events {
        /// Keep following until understudy stops or you interrupt.
        #[arg(long, short)]
        follow: bool,
        #[command(flatten)]
        target: Target,
    },
    /// An instance's stdout and JSON logs (`running`, `testing` or `secondary`); --follow goes on
    /// across promotions and restarts, marking each switch.
    Logs {
        /// `running`, `testing` or `secondary` (running's twin that measures noise).
        #[arg(value_parser = ["running", "testing", "secondary"])]
        role: String,
        /// Keep following until interrupted.
        #[arg(long, short)]
        follow: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Scheduled promotions; `schedule cancel ID` cancels one.
    Schedule {
        #[command(subcommand)]
        action: Option<ScheduleAction>,
        #[command(flatten)]
        target: Target,
    },
    /// Replace understudy itself by a new binary (default: the file it was started from)
    /// without a dropped request: the builds keep running; exits 1 with the reason if the new
    /// one fails, the old one serving on.
    Upgrade {
        /// The new understudy binary.
        #[arg(long, value_name = "PATH")]
        binary: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// Which version served users when (--at T: at that instant), and every switch.
    History {
        /// The instant asked about (RFC 3339); default now.
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        target: Target,
    },
}

/// What to do with schedules.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ScheduleAction {
    /// Cancel a pending scheduled promotion.
    Cancel {
        /// Its id, as `understudy schedule` lists it.
        id: u64,
        #[command(flatten)]
        target: Target,
    },
}

/// Why a call did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No socket, or nobody listening on it.
    #[error("cannot reach understudy at {path}: {source}; is `understudy run` running on this base dir (--base)?")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The connection broke or the answer was not HTTP.
    #[error("talking to understudy at {path} failed: {message}")]
    Protocol {
        /// The socket path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Run one operator command; returns the process exit code (0, [`EXIT_REFUSED`],
/// [`EXIT_UNREACHABLE`]).
pub fn main(command: ControlCommand) -> u8 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("understudy: cannot start the async runtime: {e}");
            return EXIT_UNREACHABLE;
        }
    };
    rt.block_on(run(command))
}

/// Run one command: the two that read the base dir directly, or a call to the admin API.
async fn run(command: ControlCommand) -> u8 {
    use ControlCommand as C;
    if let C::Events { follow, target } = &command {
        return events(target, *follow).await;
    }
    if let C::Logs {
        role,
        follow,
        target,
    } = &command
    {
        let base = target.base.clone().unwrap_or_else(|| PathBuf::from("."));
        return logs(&base.join(role), *follow).await;
    }
    let ApiRequest {
        target,
        method,
        path,
        body,
    } = api_request(command);
    let base = target.base.clone().unwrap_or_else(|| PathBuf::from("."));
    // The identifier does not matter for the state dir.
    let socket = Layout::new(&base, "").admin_socket();
    let (code, answer) = match call(&socket, method, &path, body).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("understudy: {e}");
            return EXIT_UNREACHABLE;
        }
    };
    print_answer(target.json, code, &path, &answer)
}

/// The admin API call an operator command stands for.
struct ApiRequest {
    /// Where the admin socket is and how to print.
    target: Target,
    /// The HTTP method.
    method: Method,
    /// The path, with its query.
    path: String,
    /// The JSON body, if the command has one.
    body: Option<Value>,
}

/// The admin API call of a command other than `events` and `logs`.
fn api_request(command: ControlCommand) -> ApiRequest {
    use ControlCommand as C;
    let (target, method, path, body) = match command {
        C::Status(t) => (t, Method::GET, "/api/status".to_string(), None),
        C::Verdict(t) => (t, Method::GET, "/api/verdict".to_string(), None),
        C::Promote { at, target } => (
            target,
            Method::POST,
            "/api/promote".to_string(),
            at.map(|at| json!({ "at": at })),
        ),
        C::History { at, target } => {
            let path = match at {
                Some(at) => format!("/api/history?at={}", query_value(&at)),
                None => "/api/history".to_string(),
            };
            (target, Method::GET, path, None)
        }
        C::Events { .. } | C::Logs { .. } => unreachable!("handled by run"),
        C::Schedule {
            action: None,
            target,
        } => (target, Method::GET, "/api/schedule".to_string(), None),
        C::Schedule {
            action: Some(ScheduleAction::Cancel { id, target: inner }),
            target,
        } => {
            let target = Target {
                base: inner.base.or(target.base),
                json: inner.json || target.json,
            };
            (target, Method::DELETE, format!("/api/schedule/{id}"), None)
        }
        C::Abort(t) => (t, Method::POST, "/api/abort".to_string(), None),
        C::Upgrade { binary, target } => {
            // The API takes an absolute path: a relative one is the caller's, not understudy's.
            let binary = binary.map(|b| std::path::absolute(&b).unwrap_or(b));
            (
                target,
                Method::POST,
                "/api/upgrade".to_string(),
                binary.map(|b| json!({ "binary": b })),
            )
        }
        C::Pause(t) => (t, Method::POST, "/api/pause".to_string(), None),
        C::Resume(t) => (t, Method::POST, "/api/resume".to_string(), None),
        C::Rollback { version, target } => (
            target,
            Method::POST,
            "/api/rollback".to_string(),
            version.map(|v| json!({ "version": v })),
        ),
    };
    ApiRequest {
        target,
        method,
        path,
        body,
    }
}

/// Every byte but RFC 3986's unreserved characters (letters, digits, `-._~`) is escaped in a query
/// value: a space or `+` in an instant, or anything else a user types, then reaches the API as
/// typed instead of making the URI invalid or turning into a space.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `v` percent-encoded for a URI's query (`?at=...`).
fn query_value(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, QUERY_VALUE).to_string()
}

/// Print the answer to `path`: as it came with `--json`, else as text (a refusal on stderr);
/// returns the exit code.
fn print_answer(json: bool, code: u16, path: &str, answer: &Value) -> u8 {
    let ok = (200..300).contains(&code);
    if json {
        println!("{answer}");
    } else if !ok {
        let why = answer["error"].as_str().unwrap_or("refused").to_string();
        eprintln!("understudy: refused ({code}): {why}");
    } else if path == "/api/status" {
        print!("{}", status_text(answer));
    } else if path == "/api/verdict" {
        println!("{}", verdict_text(answer));
    } else if path == "/api/schedule" {
        print!("{}", schedule_text(answer));
    } else if path.starts_with("/api/history") {
        print!("{}", history_text(answer));
    } else {
        println!("{}", answer["message"].as_str().unwrap_or("done"));
    }
    if ok {
        0
    } else {
        EXIT_REFUSED
    }
}

/// `understudy events [--follow]`: the backlog, then (following) the live stream, one line each.
async fn events(target: &Target, follow: bool) -> u8 {
    let base = target.base.clone().unwrap_or_else(|| PathBuf::from("."));
    let socket = Layout::new(&base, "").admin_socket();
    let (code, answer) = match call(&socket, Method::GET, "/api/events/recent", None).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("understudy: {e}");
            return EXIT_UNREACHABLE;
        }
    };
    if !(200..300).contains(&code) {
        eprintln!("understudy: refused ({code}): {answer}");
        return EXIT_REFUSED;
    }
    let mut last = 0;
    for e in answer["events"].as_array().into_iter().flatten() {
        last = e["seq"].as_u64().unwrap_or(last);
        println!("{}", event_line(e, target.json));
    }
    if !follow {
        return 0;
    }
    match follow_events(&socket, last, target.json).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("understudy: {e}");
            EXIT_UNREACHABLE
        }
    }
}

/// Print the SSE stream after event `last` until it ends (understudy stopped).
async fn follow_events(socket: &Path, last: u64, json: bool) -> Result<(), CliError> {
    let protocol = |message: String| CliError::Protocol {
        path: socket.to_path_buf(),
        message,
    };
    let (mut sender, conn) = connect(socket).await?;
    let req = hyper::Request::builder()
        .uri(format!("/api/events?after={last}"))
        .header(hyper::header::HOST, "understudy")
        .header(hyper::header::ACCEPT, "text/event-stream")
        .body(Full::new(bytes::Bytes::new()))
        .map_err(|e| protocol(e.to_string()))?;
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| protocol(e.to_string()))?;
    let mut body = res.into_body();
    let mut pending = String::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| protocol(e.to_string()))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        pending.push_str(&String::from_utf8_lossy(data));
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            if let Some(data) = line.trim_end().strip_prefix("data:") {
                if let Ok(v) = serde_json::from_str::<Value>(data.trim()) {
                    println!("{}", event_line(&v, json));
                }
            }
        }
    }
    conn.abort();
    Ok(())
}

/// One event on one line: `#seq at name key=value ...`, or its JSON.
fn event_line(e: &Value, json: bool) -> String {
    if json {
        return e.to_string();
    }
    let mut line = format!(
        "#{} {} {}",
        e["seq"],
        e["at"].as_str().unwrap_or("?"),
        e["event"].as_str().unwrap_or("?")
    );
    if let Some(fields) = e.as_object() {
        for (k, v) in fields {
            if matches!(k.as_str(), "seq" | "at" | "event") {
                continue;
            }
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            line.push_str(&format!(" {k}={v}"));
        }
    }
    line
}

/// An HTTP/1.1 connection to the admin socket, its driver running as a task.
async fn connect(
    socket: &Path,
) -> Result<
    (
        hyper::client::conn::http1::SendRequest<Full<bytes::Bytes>>,
        tokio::task::JoinHandle<Result<(), hyper::Error>>,
    ),
    CliError,
> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|source| CliError::Connect {
            path: socket.to_path_buf(),
            source,
        })?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| CliError::Protocol {
            path: socket.to_path_buf(),
            message: e.to_string(),
        })?;
    Ok((sender, tokio::spawn(conn)))
}

/// One HTTP/1.1 call over the unix socket; the status code and the JSON body.
pub async fn call(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), CliError> {
    let protocol = |message: String| CliError::Protocol {
        path: socket.to_path_buf(),
        message,
    };
    let (mut sender, conn) = connect(socket).await?;
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, "understudy")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(bytes::Bytes::from(bytes)))
        .map_err(|e| protocol(e.to_string()))?;
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| protocol(e.to_string()))?;
    let code = res.status().as_u16();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| protocol(e.to_string()))?
        .to_bytes();
    conn.abort();
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| json!({ "error": String::from_utf8_lossy(&body) }));
    Ok((code, value))
}

#[cfg(test)]
mod tests;
