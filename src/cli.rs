//! `understudy status | promote | abort | pause | resume | rollback | verdict`: the admin API's
//! client. It talks to `<base>/.understudy/admin.sock`, so it needs no token and no address:
//! whoever may open the socket (understudy's own user) may steer. Every call has a deadline, so
//! a stopped or saturated understudy is reported (exit 2) instead of waited on for ever.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::Method;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use crate::layout::Layout;

mod events;
mod logs;
mod text;

use events::events;
use logs::logs;
use text::{history_text, schedule_text, status_text, verdict_text};

/// Exit code when understudy answered and refused (409, 404, 400, ...).
pub const EXIT_REFUSED: u8 = 1;
/// Exit code when understudy could not be reached at all, or did not answer in time.
pub const EXIT_UNREACHABLE: u8 = 2;
/// `understudy verdict`'s exit code for `wait`: a script gates on the code
/// (`understudy verdict && ship`) and tells waiting from rejection without parsing text.
pub const EXIT_WAIT: u8 = 3;
/// `understudy verdict`'s exit code for `reject` (`promote` is 0).
pub const EXIT_REJECT: u8 = 4;

/// How long a read (status, verdict, schedule, history, the events so far, the head of the
/// event stream) may take, connecting included; also how long a steering command waits for
/// understudy to answer at all before it is sent (see [`steer`]).
pub const READ_WITHIN: Duration = Duration::from_secs(10);
/// How long promote, abort, pause, resume, `schedule cancel` and upgrade may take to answer.
/// understudy answers them at once, unless it is replacing itself (`upgrade`): its decisions
/// then wait until the new one says it serves (within `READY_WITHIN`) or failed and was reaped,
/// and `upgrade` itself answers only then.
pub const STEER_WITHIN: Duration = Duration::from_secs(crate::upgrade::READY_WITHIN.as_secs() + 30);
/// How long a rollback may take to answer: once its version is restored from its archive
/// (unpacked, up to `MAX_UNPACKED_SIZE`), after any filing of that version under way.
pub const ROLLBACK_WITHIN: Duration = Duration::from_secs(600);

/// What an unanswered call says about a server that did not answer at all.
const STOPPED: &str = "it may be stopped (SIGSTOP, a debugger), overloaded, or every connection \
    of its socket taken; check its process (the pid in .understudy/admin.json) and its log, \
    then try again";
/// What an unanswered steering command says once understudy answered the probe just before.
const MAYBE_DONE: &str = "it answered a moment before, so it is busy rather than gone: the \
    command may still take effect; `understudy status` and `understudy events` show whether it did";

/// The task driving a connection to the socket, stopped when this is dropped (the call done,
/// failed or timed out), so no connection outlives its call.
struct Driver(tokio::task::JoinHandle<Result<(), hyper::Error>>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

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

/// Where `understudy logs` reads: the base dir only (it reads files, not the admin API, so it
/// has no `--json`: the JSON logs under `logs/json/` print as they are).
#[derive(Debug, Clone, clap::Args)]
pub struct BaseDir {
    /// The base directory understudy supervises (default: the current directory).
    #[arg(long, short)]
    pub base: Option<PathBuf>,
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
    /// The latest 100 events (decisions), one per line, leaving out the `scored` one each
    /// EVALUATE_EVERY brings (--all keeps them); --follow keeps printing them as they happen.
    Events {
        /// Keep following, across upgrades and restarts, until understudy stops (exit 2) or you
        /// interrupt (`scored` left out too, unless --all).
        #[arg(long, short)]
        follow: bool,
        /// Include the `scored` events (one per evaluation of the build under test).
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        target: Target,
    },
    /// An instance's logs (`running`, `testing` or `secondary`): stdout and logs/json/ as they
    /// are, then stderr and the other files of logs/, each line marked `[stderr]` or
    /// `[logs/<file>]`; --follow goes on across promotions and restarts, marking each switch.
    Logs {
        /// `running`, `testing` or `secondary` (running's twin that measures noise).
        #[arg(value_parser = ["running", "testing", "secondary"])]
        role: String,
        /// Keep following until interrupted.
        #[arg(long, short)]
        follow: bool,
        #[command(flatten)]
        target: BaseDir,
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
        /// The instant asked about (RFC 3339, up to now: a future one is refused); default now.
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
    #[error("cannot reach understudy at {path}: {source}; {}", connect_hint(.path, .source))]
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
    /// No answer in time.
    #[error("understudy at {path} did not answer {what} within {within:?}: {hint}")]
    Timeout {
        /// The socket path.
        path: PathBuf,
        /// What was asked (`GET /api/status`).
        what: String,
        /// How long it was waited for.
        within: Duration,
        /// What that may mean and what to do.
        hint: &'static str,
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
    if let C::Events {
        follow,
        all,
        target,
    } = &command
    {
        return events(target, *follow, *all).await;
    }
    if let C::Logs {
        role,
        follow,
        target,
    } = &command
    {
        let base = target.base.clone().unwrap_or_else(|| PathBuf::from("."));
        return logs(&base, role, *follow).await;
    }
    let ApiRequest {
        target,
        method,
        path,
        body,
        within,
    } = api_request(command);
    let base = target.base.clone().unwrap_or_else(|| PathBuf::from("."));
    // The identifier does not matter for the state dir.
    let socket = Layout::new(&base, "").admin_socket();
    let answered = if within > READ_WITHIN {
        steer(&socket, method, &path, body, within).await
    } else {
        call(&socket, method, &path, body, within).await
    };
    let (code, answer) = match answered {
        Ok(r) => r,
        Err(e) => {
            eprintln!("understudy: {e}");
            return EXIT_UNREACHABLE;
        }
    };
    print_answer(target.json, code, &path, &answer)
}

/// A call whose answer may rightly take long (up to `within`): first whether understudy answers
/// at all (status, within [`READ_WITHIN`]), so a stopped or saturated one is reported at once;
/// a timeout after that says the command may still take effect. A 503 with `Retry-After` (a
/// new understudy taking over, which did nothing) is asked again, saying so once, until `within`.
async fn steer(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Value>,
    within: Duration,
) -> Result<(u16, Value), CliError> {
    call(socket, Method::GET, "/api/status", None, READ_WITHIN).await?;
    let deadline = tokio::time::Instant::now() + within;
    let mut told = false;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let asked = exchange(socket, method.clone(), path, body.clone());
        let (code, answer, retry) =
            tokio::time::timeout(left, asked)
                .await
                .unwrap_or_else(|_| {
                    Err(CliError::Timeout {
                        path: socket.to_path_buf(),
                        what: format!("{method} {path}"),
                        within,
                        hint: MAYBE_DONE,
                    })
                })?;
        let Some(pause) = retry.filter(|p| tokio::time::Instant::now() + *p < deadline) else {
            return Ok((code, answer));
        };
        if !told {
            let why = answer["error"].as_str().unwrap_or("understudy is busy");
            eprintln!("understudy: {why}: asking again every {pause:?}");
            told = true;
        }
        tokio::time::sleep(pause).await;
    }
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
    /// How long its answer may take.
    within: Duration,
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
    let within = match (&method, path.as_str()) {
        (&Method::GET, _) => READ_WITHIN,
        (_, "/api/rollback") => ROLLBACK_WITHIN,
        _ => STEER_WITHIN,
    };
    ApiRequest {
        target,
        method,
        path,
        body,
        within,
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
    let text = if json {
        format!("{answer}\n")
    } else if !ok {
        let why = answer["error"].as_str().unwrap_or("refused").to_string();
        eprintln!("understudy: refused ({code}): {why}");
        return EXIT_REFUSED;
    } else if path == "/api/status" {
        status_text(answer)
    } else if path == "/api/verdict" {
        format!("{}\n", verdict_text(answer))
    } else if path == "/api/schedule" {
        schedule_text(answer)
    } else if path.starts_with("/api/history") {
        history_text(answer)
    } else {
        format!("{}\n", answer["message"].as_str().unwrap_or("done"))
    };
    // The verdict's code is the point of `verdict`: a reader gone early does not change it.
    let verdict = match answer["verdict"].as_str() {
        _ if !ok => EXIT_REFUSED,
        _ if path != "/api/verdict" => 0,
        Some("promote") => 0,
        Some("reject") => EXIT_REJECT,
        _ => EXIT_WAIT,
    };
    match say(&text) {
        Err(closed) if verdict == 0 => closed.exit_code(),
        _ => verdict,
    }
}

/// Stdout took no more: its reader is gone (`| head`, `| grep -m1`) or writing failed.
#[derive(Debug)]
struct Closed(std::io::Error);

impl Closed {
    /// The command's exit code: 0 when the reader is gone (it had what it wanted, as `head`
    /// does), else 1 with a message.
    fn exit_code(self) -> u8 {
        if self.0.kind() == std::io::ErrorKind::BrokenPipe {
            return 0;
        }
        eprintln!("understudy: cannot write to stdout: {}", self.0);
        EXIT_REFUSED
    }
}

/// How every command prints: `text` written whole and flushed, an error instead of the panic
/// of `println!` when stdout is closed, so `understudy events | head -1` ends quietly.
fn say(text: &str) -> Result<(), Closed> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(Closed)
}

/// What to do when the socket cannot be reached: it is private to understudy's user (mode 0600),
/// so a refusal means another user, not a stopped understudy.
fn connect_hint(path: &Path, e: &std::io::Error) -> String {
    use std::os::unix::fs::MetadataExt;
    match (e.kind(), std::fs::metadata(path)) {
        (std::io::ErrorKind::PermissionDenied, Ok(m)) => format!(
            "the admin socket is private to the user understudy runs as (uid {}): run this \
             command as that user",
            m.uid()
        ),
        (std::io::ErrorKind::PermissionDenied, Err(_)) => {
            "the admin socket is private to the user understudy runs as: run this command as \
             that user"
                .to_string()
        }
        _ => "is `understudy run` running on this base dir (--base)?".to_string(),
    }
}

/// An HTTP/1.1 connection to the admin socket, its driver running as a task.
async fn connect(
    socket: &Path,
) -> Result<
    (
        hyper::client::conn::http1::SendRequest<Full<bytes::Bytes>>,
        Driver,
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
    Ok((sender, Driver(tokio::spawn(conn))))
}

/// One HTTP/1.1 call over the unix socket; the status code and the JSON body, all within
/// `within` (connecting included), else [`CliError::Timeout`].
pub async fn call(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Value>,
    within: Duration,
) -> Result<(u16, Value), CliError> {
    let what = format!("{method} {path}");
    tokio::time::timeout(within, exchange(socket, method, path, body))
        .await
        .map(|r| r.map(|(code, answer, _)| (code, answer)))
        .unwrap_or_else(|_| {
            Err(CliError::Timeout {
                path: socket.to_path_buf(),
                what,
                within,
                hint: STOPPED,
            })
        })
}

/// The longest pause a `Retry-After` may ask of the CLI.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);

/// [`call`] without its deadline; also how long to wait before asking again, when a 503 says
/// (`Retry-After` in seconds, at most [`MAX_RETRY_AFTER`]).
async fn exchange(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value, Option<Duration>), CliError> {
    let protocol = |message: String| CliError::Protocol {
        path: socket.to_path_buf(),
        message,
    };
    let (mut sender, _conn) = connect(socket).await?;
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
    let retry = (code == 503)
        .then(|| res.headers().get(hyper::header::RETRY_AFTER))
        .flatten()
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).clamp(Duration::from_millis(200), MAX_RETRY_AFTER));
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| protocol(e.to_string()))?
        .to_bytes();
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| json!({ "error": String::from_utf8_lossy(&body) }));
    Ok((code, value, retry))
}

#[cfg(test)]
mod tests;
