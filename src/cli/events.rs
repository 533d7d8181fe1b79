//! `understudy events [--follow] [--all]`: the backlog of events, then (following) the live SSE
//! stream, one line each; `scored` (one per evaluation, every EVALUATE_EVERY) is left out unless
//! `--all`, else it buries every decision. A follow that hears nothing, not even the keep-alive
//! the server sends every [`KEEP_ALIVE`], for [`FOLLOW_SILENCE`] ends with exit 2: the server
//! stopped answering. A stream that ends (understudy upgraded itself, or restarted) is asked
//! for again after the last event printed, for up to [`RESUME_WITHIN`]; if no understudy answers
//! by then, the follow ends with exit 2, saying so, so a script can tell a stop from its own end.

use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::Method;
use serde_json::Value;

use super::{
    call, connect, say, CliError, Driver, Target, EXIT_REFUSED, EXIT_UNREACHABLE, READ_WITHIN,
    STOPPED,
};
use crate::admin::KEEP_ALIVE;
use crate::layout::Layout;

/// How long a follow may hear nothing at all before it gives up on the server: four of its
/// keep-alives missed.
const FOLLOW_SILENCE: Duration = Duration::from_secs(KEEP_ALIVE.as_secs() * 4);
/// How long a follow whose stream ended waits for an understudy to answer again (an upgrade
/// hands the socket over within seconds; a `systemctl restart` takes about as long).
const RESUME_WITHIN: Duration = Duration::from_secs(10);
/// How often it asks meanwhile.
const RESUME_EVERY: Duration = Duration::from_millis(200);
/// The longest line of the event stream kept: a `data:` line is one event's JSON, far shorter.
const MAX_LINE: usize = 1024 * 1024;
/// The event left out without `--all`: one per evaluation of the build under test.
const SCORED: &str = "scored";

/// Whole lines out of a byte stream cut anywhere (a character's bytes may straddle two reads):
/// bytes are kept until their `\n`, then decoded as one line. A line longer than `max` bytes is
/// dropped up to its end and counted, so a peer cannot make the buffer grow without bound.
#[derive(Debug)]
pub(super) struct Lines {
    pending: Vec<u8>,
    max: usize,
    /// Inside a line already too long, dropped up to its `\n`.
    skipping: bool,
    /// How many lines were too long.
    pub(super) skipped: u64,
}

impl Lines {
    /// No bytes yet; lines of at most `max` bytes.
    pub(super) fn new(max: usize) -> Lines {
        Lines {
            pending: Vec::new(),
            max,
            skipping: false,
            skipped: 0,
        }
    }

    /// The lines `chunk` completes, each without its `\n` (or `\r\n`).
    pub(super) fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            if self.keep(&rest[..end]) {
                let line = self.pending.strip_suffix(b"\r").unwrap_or(&self.pending);
                lines.push(String::from_utf8_lossy(line).into_owned());
            }
            self.pending.clear();
            self.skipping = false;
            rest = &rest[end + 1..];
        }
        self.keep(rest);
        lines
    }

    /// Add `bytes` to the line under way, unless that makes it too long (it is then dropped);
    /// whether it is kept.
    fn keep(&mut self, bytes: &[u8]) -> bool {
        if self.skipping {
            return false;
        }
        if self.pending.len() + bytes.len() > self.max {
            self.pending = Vec::new();
            self.skipping = true;
            self.skipped += 1;
            return false;
        }
        self.pending.extend_from_slice(bytes);
        true
    }
}

/// `understudy events [--follow] [--all]`: the backlog, then (following) the live stream, one
/// line each; without `all`, no `scored` event (the server leaves them out of the backlog it
/// sends, so it is still the latest 100 others).
pub(super) async fn events(target: &Target, follow: bool, all: bool) -> u8 {
    let base = target.base.clone().unwrap_or_else(|| ".".into());
    let socket = Layout::new(&base, "").admin_socket();
    let path = if all {
        "/api/events/recent".to_string()
    } else {
        format!("/api/events/recent?skip={SCORED}")
    };
    let recent = call(&socket, Method::GET, &path, None, READ_WITHIN).await;
    let (code, answer) = match recent {
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
    let mut text = String::new();
    for e in answer["events"].as_array().into_iter().flatten() {
        last = e["seq"].as_u64().unwrap_or(last);
        if all || e["event"] != SCORED {
            text.push_str(&event_line(e, target.json));
            text.push('\n');
        }
    }
    if let Err(closed) = say(&text) {
        return closed.exit_code();
    }
    if !follow {
        return 0;
    }
    match follow_events(&socket, last, target.json, all).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("understudy: {e}");
            EXIT_UNREACHABLE
        }
    }
}

/// Print the SSE stream after event `last` until stdout is closed, asking for it again after
/// the last event printed when it ends (an upgrade or a restart of understudy); the exit code:
/// 1 when the stream was refused (every stream slot of the socket taken), 2 when it ended and
/// no understudy answered within [`RESUME_WITHIN`].
async fn follow_events(
    socket: &Path,
    mut last: u64,
    json: bool,
    all: bool,
) -> Result<u8, CliError> {
    let mut stream = match open_stream(socket, &format!("/api/events?after={last}")).await {
        Ok(stream) => stream,
        // Gone between the events printed and the stream (killed, or stopping): followed on.
        Err(_) => match reopen(socket, last).await {
            Some(stream) => {
                following_on(last);
                stream
            }
            None => return Ok(ended(last)),
        },
    };
    loop {
        let (res, conn) = stream;
        if !res.status().is_success() {
            print_refusal(res).await;
            return Ok(EXIT_REFUSED);
        }
        let printed = print_stream(socket, res.into_body(), json, all, &mut last).await;
        drop(conn);
        if let Some(code) = printed? {
            return Ok(code);
        }
        let Some(again) = reopen(socket, last).await else {
            return Ok(ended(last));
        };
        following_on(last);
        stream = again;
    }
}

/// The event stream after `last`, asked for every [`RESUME_EVERY`] until an understudy answers,
/// for at most [`RESUME_WITHIN`].
async fn reopen(socket: &Path, last: u64) -> Option<(hyper::Response<Incoming>, Driver)> {
    let deadline = tokio::time::Instant::now() + RESUME_WITHIN;
    loop {
        if let Ok(stream) = open_stream(socket, &format!("/api/events?after={last}")).await {
            return Some(stream);
        }
        if tokio::time::Instant::now() + RESUME_EVERY > deadline {
            return None;
        }
        tokio::time::sleep(RESUME_EVERY).await;
    }
}

/// The stream ended and another understudy answered: say so.
fn following_on(last: u64) {
    eprintln!("understudy: the event stream ended (an upgrade or a restart of understudy); following on after event #{last}");
}

/// The stream ended and nothing answered again: say so, and exit 2.
fn ended(last: u64) -> u8 {
    eprintln!(
        "understudy: the event stream ended after event #{last} and no understudy answered on the socket within {RESUME_WITHIN:?}: it stopped"
    );
    EXIT_UNREACHABLE
}

/// Ask for the event stream at `path`; its answer head (within [`READ_WITHIN`], connecting
/// included) and the connection's driver.
async fn open_stream(
    socket: &Path,
    path: &str,
) -> Result<(hyper::Response<Incoming>, Driver), CliError> {
    let protocol = |message: String| CliError::Protocol {
        path: socket.to_path_buf(),
        message,
    };
    let ask = async {
        let (mut sender, conn) = connect(socket).await?;
        let req = hyper::Request::builder()
            .uri(path)
            .header(hyper::header::HOST, "understudy")
            .header(hyper::header::ACCEPT, "text/event-stream")
            .body(Full::new(bytes::Bytes::new()))
            .map_err(|e| protocol(e.to_string()))?;
        let res = sender.send_request(req).await;
        Ok((res.map_err(|e| protocol(e.to_string()))?, conn))
    };
    tokio::time::timeout(READ_WITHIN, ask)
        .await
        .map_err(|_| CliError::Timeout {
            path: socket.to_path_buf(),
            what: format!("GET {path}"),
            within: READ_WITHIN,
            hint: STOPPED,
        })?
}

/// Print why the event stream was refused (its JSON `error`, as far as it comes in time).
async fn print_refusal(res: hyper::Response<Incoming>) {
    let code = res.status().as_u16();
    let body = tokio::time::timeout(READ_WITHIN, res.into_body().collect()).await;
    let answer: Value = body
        .ok()
        .and_then(Result::ok)
        .and_then(|b| serde_json::from_slice(&b.to_bytes()).ok())
        .unwrap_or_default();
    let why = answer["error"].as_str().unwrap_or("refused");
    eprintln!("understudy: refused ({code}): {why}");
}

/// Print each event of the stream `body` as it comes (`scored` only with `all`), `last` the
/// newest one's number, until it ends (`None`) or stdout is closed (the exit code); an error
/// when it broke, or when nothing came for [`FOLLOW_SILENCE`].
async fn print_stream(
    socket: &Path,
    mut body: Incoming,
    json: bool,
    all: bool,
    last: &mut u64,
) -> Result<Option<u8>, CliError> {
    let mut lines = Lines::new(MAX_LINE);
    loop {
        let frame = tokio::time::timeout(FOLLOW_SILENCE, body.frame())
            .await
            .map_err(|_| CliError::Timeout {
                path: socket.to_path_buf(),
                what: format!(
                    "anything on the event stream (a keep-alive comes every {KEEP_ALIVE:?})"
                ),
                within: FOLLOW_SILENCE,
                hint: STOPPED,
            })?;
        let Some(frame) = frame else {
            return Ok(None);
        };
        // Broken off (understudy killed, `kill -9` or the OOM killer): as a stream that ended,
        // it is asked for again after the last event printed.
        let Ok(frame) = frame else {
            return Ok(None);
        };
        let Some(data) = frame.data_ref() else {
            continue;
        };
        let skipped = lines.skipped;
        let mut text = String::new();
        for line in lines.push(data) {
            if let Some(data) = line.strip_prefix("data:") {
                if let Ok(v) = serde_json::from_str::<Value>(data.trim()) {
                    *last = v["seq"].as_u64().unwrap_or(*last);
                    if all || v["event"] != SCORED {
                        text.push_str(&event_line(&v, json));
                        text.push('\n');
                    }
                }
            }
        }
        if let Err(closed) = say(&text) {
            return Ok(Some(closed.exit_code()));
        }
        if lines.skipped > skipped {
            eprintln!(
                "understudy: skipped a line of the event stream longer than {MAX_LINE} bytes"
            );
        }
    }
}

/// `s` onto `line` with its control characters escaped (a newline as `\n`): a reason quoting an
/// app's output keeps its event on one line, for `grep` and line-based shippers.
fn one_line(s: &str, line: &mut String) {
    for c in s.chars() {
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
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
            line.push_str(&format!(" {k}="));
            match v {
                Value::String(s) => one_line(s, &mut line),
                other => line.push_str(&other.to_string()),
            }
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reviewer's case: a restart's reason quoting the app's stdout spread one event over
    /// several lines of `understudy events`.
    #[test]
    fn an_event_quoting_an_apps_output_stays_on_one_line() {
        let e = serde_json::json!({
            "seq": 7, "at": "2026-12-07T10:25:47Z", "event": "restart_scheduled",
            "reason": "exited: signal 9; stdout ends with:\nGET /a 200\r\nGET /b 500\tslow",
            "attempt": 2,
        });
        let line = event_line(&e, false);
        assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
        assert!(
            line.contains(r"stdout ends with:\nGET /a 200\r\nGET /b 500\tslow"),
            "{line}"
        );
        assert!(
            line.starts_with("#7 2026-12-07T10:25:47Z restart_scheduled"),
            "{line}"
        );
    }
}
