//! `understudy status | promote | abort | pause | resume | rollback | verdict`: the admin API's
//! client. It talks to `<base>/.understudy/admin.sock`, so it needs no token and no address:
//! whoever may open the socket (understudy's own user) may steer.

use std::io::Write;
use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::Method;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use crate::layout::Layout;

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

/// How often `logs --follow` looks for new lines and for a switch of the symlink.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_millis(200);
/// How much of a log file `logs` holds at once.
const LOG_CHUNK: usize = 64 * 1024;

/// `understudy logs running|testing|secondary [--follow]`: the files behind the role's symlink,
/// read directly (the CLI runs on the host that owns the base dir). A closed pipe (`| head`) ends
/// it quietly.
async fn logs(link: &Path, follow: bool) -> u8 {
    match copy_logs(link, follow, &mut std::io::stdout()).await {
        Ok(code) => code,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!(
                "understudy: cannot write {}'s logs to stdout: {e}",
                link.display()
            );
            EXIT_REFUSED
        }
    }
}

/// Stream the role's files to `out`, never holding one whole; following, read each on from where
/// it was left, marking each switch of the symlink. An error only when writing to `out` failed.
async fn copy_logs(link: &Path, follow: bool, out: &mut impl Write) -> std::io::Result<u8> {
    let mut current: Option<PathBuf> = None;
    let mut read_to: std::collections::BTreeMap<PathBuf, ReadTo> = Default::default();
    loop {
        let target = std::fs::canonicalize(link).ok();
        if target != current {
            match (&current, &target) {
                (None, None) if !follow => {
                    eprintln!(
                        "understudy: {} does not exist: nothing plays that part now",
                        link.display()
                    );
                    return Ok(EXIT_REFUSED);
                }
                (_, Some(dir)) => {
                    if current.is_some() || follow {
                        writeln!(out, "==> {} is now {} <==", link.display(), dir.display())?;
                    }
                    read_to.clear();
                }
                (Some(_), None) => writeln!(out, "==> {} is gone <==", link.display())?,
                (None, None) => {}
            }
            current = target;
        }
        if let Some(dir) = &current {
            for file in log_files(dir) {
                let was = read_to.get(&file).copied();
                if let Some(now) = copy_new(&file, was, out)? {
                    read_to.insert(file, now);
                }
            }
        }
        out.flush()?;
        if !follow {
            return Ok(0);
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

/// How far `logs --follow` has read one file, and which file that was (device and inode): a log
/// rotated away and created anew under the same name is another file, read from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReadTo {
    dev: u64,
    ino: u64,
    offset: u64,
}

/// Copy what `file` holds past `was` to `out`, a chunk at a time; from its start when `was` is
/// `None`, names another file (rotated) or lies past its end (truncated). Where it now stands, or
/// `None` when the file cannot be opened now (not there yet, or gone); an error only when
/// writing to `out` failed.
fn copy_new(
    file: &Path,
    was: Option<ReadTo>,
    out: &mut impl Write,
) -> std::io::Result<Option<ReadTo>> {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::MetadataExt;
    let Ok(mut f) = std::fs::File::open(file) else {
        return Ok(None);
    };
    let Ok(meta) = f.metadata() else {
        return Ok(None);
    };
    let mut to = ReadTo {
        dev: meta.dev(),
        ino: meta.ino(),
        offset: 0,
    };
    if let Some(w) = was.filter(|w| (w.dev, w.ino) == (to.dev, to.ino) && w.offset <= meta.len()) {
        if f.seek(SeekFrom::Start(w.offset)).is_err() {
            return Ok(was);
        }
        to.offset = w.offset;
    }
    let mut chunk = vec![0u8; LOG_CHUNK];
    loop {
        match f.read(&mut chunk) {
            Ok(0) => return Ok(Some(to)),
            Ok(n) => {
                out.write_all(&chunk[..n])?;
                to.offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A file that stops reading (a directory under logs/json, an I/O error) is left there.
            Err(_) => return Ok(Some(to)),
        }
    }
}

/// `stdout`, then every file under `logs/json/`, of an instance folder.
fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = vec![dir.join("stdout")];
    if let Ok(rd) = std::fs::read_dir(dir.join("logs/json")) {
        let mut json: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        json.sort();
        files.extend(json);
    }
    files
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

fn instance_line(part: &str, v: &Value) -> String {
    if v.is_null() {
        return format!("{part:<10}none\n");
    }
    let mut line = format!("{part:<10}{}", v["version"].as_str().unwrap_or("?"));
    if let Some(n) = v["instance"].as_u64() {
        line.push_str(&format!("  #{n}"));
    }
    if let Some(p) = v["port"].as_u64() {
        line.push_str(&format!("  port {p}"));
    }
    if let Some(p) = v["pid"].as_u64() {
        line.push_str(&format!("  pid {p}"));
    }
    match v["since"].as_str() {
        Some(since) => line.push_str(&format!("  ready since {since}")),
        None if v["ready"] == json!(true) => line.push_str("  ready"),
        None => line.push_str("  starting"),
    }
    line.push('\n');
    line
}

fn verdict_text(v: &Value) -> String {
    let mut s = format!(
        "{} (score {})",
        v["verdict"].as_str().unwrap_or("?"),
        v["score"].as_u64().unwrap_or(0)
    );
    match v["evidence"]["text"].as_str() {
        Some(evidence) => s.push_str(&format!(", {evidence}")),
        None => {
            if let Some(pairs) = v["pairs"].as_u64() {
                s.push_str(&format!(", {pairs} pairs"));
            }
        }
    }
    let reasons: Vec<&str> = v["reasons"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !reasons.is_empty() {
        s.push_str(": ");
        s.push_str(&reasons.join("; "));
    }
    s
}

fn schedule_text(v: &Value) -> String {
    let list = v["schedules"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "no scheduled promotions\n".to_string();
    }
    let mut out = String::new();
    for s in list {
        let what = s["version"].as_str().unwrap_or("the build under test");
        let mut line = format!(
            "#{}  {}  {what}  {}",
            s["id"],
            s["at"].as_str().unwrap_or("?"),
            s["state"].as_str().unwrap_or("?")
        );
        if let Some(r) = s["reason"].as_str() {
            line.push_str(&format!(": {r}"));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn history_text(v: &Value) -> String {
    let mut out = String::new();
    for s in v["switches"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{}  {} -> {}  ({})\n",
            s["at"].as_str().unwrap_or("?"),
            s["from"].as_str().unwrap_or("nothing"),
            s["to"].as_str().unwrap_or("?"),
            s["why"].as_str().unwrap_or("?")
        ));
    }
    out.push_str(&format!(
        "at {}: {} served users\n",
        v["at"].as_str().unwrap_or("?"),
        v["serving"].as_str().unwrap_or("nothing")
    ));
    out
}

/// The status as a few aligned lines for a terminal.
/// "25 % (step 2 of 3), 40 s of 120 s, 312 answers".
fn canary_text(c: &Value) -> String {
    let elapsed = c["since"]
        .as_str()
        .and_then(|s| crate::instant::parse(s).ok())
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .map_or(String::new(), |d| format!("{} s of ", d.as_secs()));
    format!(
        "{} % (step {} of {}), {elapsed}{:.0} s, {} answers{}",
        c["weight"].as_f64().unwrap_or(0.0),
        c["step"],
        c["steps"],
        c["window_secs"].as_f64().unwrap_or(0.0),
        c["answers"],
        if c["held"] == true {
            "; holds: too little evidence (promote or abort)"
        } else {
            ""
        }
    )
}

fn status_text(v: &Value) -> String {
    let mut out = instance_line("running", &v["running"]);
    if let Some(r) = v["restarting"].as_str() {
        out.push_str(&format!("{:<10}{r} is restarting\n", ""));
    }
    out.push_str(&instance_line("testing", &v["testing"]));
    if !v["promoting"].is_null() {
        out.push_str(&instance_line("promoting", &v["promoting"]));
    }
    if !v["secondary"].is_null() {
        out.push_str(&instance_line("secondary", &v["secondary"]));
    }
    for key in ["installing", "pending"] {
        if let Some(x) = v[key].as_str() {
            out.push_str(&format!("{key:<10}{x}\n"));
        }
    }
    if let Some(pid) = v["understudy"]["pid"].as_u64() {
        out.push_str(&format!(
            "{:<10}{} (pid {pid}, since {})\n",
            "itself",
            v["understudy"]["version"].as_str().unwrap_or("?"),
            v["understudy"]["started"].as_str().unwrap_or("?")
        ));
    }
    if !v["canary"].is_null() {
        out.push_str(&format!("{:<10}{}\n", "canary", canary_text(&v["canary"])));
    }
    if !v["verdict"].is_null() {
        out.push_str(&format!(
            "{:<10}{}\n",
            "verdict",
            verdict_text(&v["verdict"])
        ));
        out.push_str(&differs_text(&v["verdict"]));
    }
    out.push_str(&steering_text(v));
    let c = &v["counters"];
    out.push_str(&format!(
        "{:<10}{} requests, {} mirrored, {} copies dropped\n",
        "traffic",
        c["requests"].as_u64().unwrap_or(0),
        c["mirrored"].as_u64().unwrap_or(0),
        c["dropped_copies"].as_u64().unwrap_or(0)
    ));
    out
}

/// What steers the switches, one line each and only when there is something to say: the
/// transaction under way, the `PRE_PROMOTE` refusal that keeps a build testing (else an operator
/// who asked to promote sees nothing), pending schedules, pause, a full disk.
fn steering_text(v: &Value) -> String {
    let mut out = String::new();
    let t = &v["transaction"];
    if !t.is_null() {
        let from = t["from"]
            .as_str()
            .map_or(String::new(), |f| format!(" from {f}"));
        out.push_str(&format!(
            "{:<10}{} to {}{from} under way: {} ({})\n",
            "switch",
            t["kind"].as_str().unwrap_or("?"),
            t["version"].as_str().unwrap_or("?"),
            t["step"].as_str().unwrap_or("?").replace('_', " "),
            t["why"].as_str().unwrap_or("?")
        ));
    }
    if let Some(why) = v["hook_failure"].as_str() {
        out.push_str(&format!(
            "{:<10}{why}; it stays testing: promote again once fixed, or abort\n",
            "refused"
        ));
    }
    for sch in v["schedules"].as_array().into_iter().flatten() {
        if sch["state"] == "pending" {
            out.push_str(&format!(
                "{:<10}#{} promotes {} at {}\n",
                "scheduled",
                sch["id"],
                sch["version"].as_str().unwrap_or("the build under test"),
                sch["at"].as_str().unwrap_or("?")
            ));
        }
    }
    if v["paused"] == json!(true) {
        out.push_str(&format!(
            "{:<10}yes: no automatic promotion or rejection (understudy resume)\n",
            "paused"
        ));
    }
    if let Some(why) = v["disk_full"].as_str() {
        out.push_str(&format!(
            "{:<10}{why}; still serving, retrying every heartbeat\n",
            "disk full"
        ));
    }
    out
}

/// One line per answer difference that counts (or is not yet told from noise), for `status`.
fn differs_text(verdict: &Value) -> String {
    let mut out = String::new();
    for d in verdict["diffs"].as_array().into_iter().flatten() {
        let judged = d["judgement"].as_str().unwrap_or("?");
        if judged != "counts" && judged != "unsure" {
            continue;
        }
        out.push_str(&format!(
            "{:<10}{} {} {}: {:.1}% of {} ({}); running {} vs testing {}\n",
            "differs",
            d["endpoint"].as_str().unwrap_or("?"),
            d["path"].as_str().unwrap_or("?"),
            d["kind"].as_str().unwrap_or("?"),
            d["rate"].as_f64().unwrap_or(0.0) * 100.0,
            d["of"],
            judged,
            d["running"].as_str().unwrap_or(""),
            d["testing"].as_str().unwrap_or("")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_shows_a_pre_promote_refusal_and_the_transaction_only_when_present() {
        let quiet = json!({"running": {"version": "1.0.0"}, "testing": {"version": "1.1.0"},
                           "hook_failure": null, "transaction": null, "counters": {}});
        let text = status_text(&quiet);
        assert!(
            !text.contains("refused") && !text.contains("switch"),
            "{text}"
        );
        let mut refused = quiet.clone();
        refused["hook_failure"] = json!("1.1.0: PRE_PROMOTE refused it: exited with 1");
        let text = status_text(&refused);
        let line = "refused   1.1.0: PRE_PROMOTE refused it: exited with 1; it stays testing: promote again once fixed, or abort";
        assert!(text.lines().any(|l| l == line), "{text}");
        let mut switching = quiet;
        switching["transaction"] = json!({"kind": "promotion", "version": "1.1.0",
            "from": "1.0.0", "step": "pre_promote", "why": "operator"});
        let text = status_text(&switching);
        let line = "switch    promotion to 1.1.0 from 1.0.0 under way: pre promote (operator)";
        assert!(text.lines().any(|l| l == line), "{text}");
    }

    #[test]
    fn following_a_log_reads_on_and_starts_over_when_it_is_truncated_or_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stdout");
        let mut out = Vec::new();
        assert_eq!(
            copy_new(&file, None, &mut out).unwrap(),
            None,
            "not there yet"
        );
        std::fs::write(&file, "one\ntwo\n").unwrap();
        let at = copy_new(&file, None, &mut out).unwrap();
        assert_eq!(at.unwrap().offset, 8);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .and_then(|mut f| f.write_all(b"three\n"))
            .unwrap();
        let at = copy_new(&file, at, &mut out).unwrap();
        assert_eq!(String::from_utf8_lossy(&out), "one\ntwo\nthree\n");
        // Truncated, then shorter than what was read: from the start.
        std::fs::write(&file, "four\n").unwrap();
        let at = copy_new(&file, at, &mut out).unwrap();
        // Rotated: another file under the name, even one longer than what was read.
        std::fs::rename(&file, dir.path().join("stdout.1")).unwrap();
        std::fs::write(&file, "five and more than before\n").unwrap();
        let at = copy_new(&file, at, &mut out).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out),
            "one\ntwo\nthree\nfour\nfive and more than before\n"
        );
        assert_eq!(copy_new(&file, at, &mut out).unwrap(), at, "nothing new");
    }

    #[test]
    fn query_values_are_percent_encoded_but_unreserved_characters() {
        assert_eq!(
            query_value("2026-12-01 03:00:00+02:00"),
            "2026-12-01%2003%3A00%3A00%2B02%3A00"
        );
        assert_eq!(query_value("aZ09-._~"), "aZ09-._~");
        assert_eq!(query_value("é&#%"), "%C3%A9%26%23%25");
    }

    #[test]
    fn status_names_the_differences_that_count_or_are_unsure_and_no_others() {
        let row = |path: &str, judgement: &str| {
            json!({"endpoint": "GET /items", "path": path, "kind": "value", "rate": 0.25,
                   "of": 40, "judgement": judgement, "running": "1", "testing": "2"})
        };
        let verdict = json!({"diffs": [
            row("$.price", "counts"), row("$.stock", "unsure"),
            row("$.at", "noise"), row("$.version", "expected"),
        ]});
        let text = differs_text(&verdict);
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                "differs   GET /items $.price value: 25.0% of 40 (counts); running 1 vs testing 2",
                "differs   GET /items $.stock value: 25.0% of 40 (unsure); running 1 vs testing 2",
            ]
        );
        assert_eq!(differs_text(&json!({})), "");
    }
}
