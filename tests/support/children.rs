//! Child processes a test starts itself (the CLI, an `understudy run` expected to fail or started
//! another way): bounded by deadlines, and killed when the test ends, failed or not.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Base, BIN};

/// `understudy <args> --base <base>`: exit code, stdout, stderr.
pub fn cli(base: &Base, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--base")
        .arg(&base.path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A child the test started, SIGKILLed and reaped when dropped: a test that fails between its
/// start and its planned end leaves nothing running (an `understudy run` left so would keep its
/// builds running too). Derefs to the [`Child`].
pub struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    /// Guard `child` from here on.
    pub fn new(child: Child) -> KillOnDrop {
        KillOnDrop(Some(child))
    }

    /// The child, no longer guarded: for a function that takes it over and ends it itself.
    pub fn into_inner(mut self) -> Child {
        self.0.take().expect("the child is there until dropped")
    }
}

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.0.as_ref().expect("the child is there until dropped")
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("the child is there until dropped")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            // Either fails only for a child already reaped: nothing left to do then.
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `understudy run --base <base> <args>`, expected to exit on its own: its exit code (`None`
/// when it still ran after 10 s, and was killed) and stderr. Bounded, so an understudy that
/// serves instead of failing fails the test rather than hanging it.
pub fn run_briefly(base: &Base, args: &[&str]) -> (Option<i32>, String) {
    use std::io::Seek;
    let mut stderr = tempfile::tempfile_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut child = KillOnDrop::new(
        Command::new(BIN)
            .args(["run", "--base"])
            .arg(&base.path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr.try_clone().unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut text = String::new();
    stderr.rewind().unwrap();
    stderr.read_to_string(&mut text).unwrap();
    (code, text)
}

/// `understudy <args> --base <base>`, started: its output piped, for [`cli_finished`].
pub fn spawn_cli(base: &Base, args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .arg("--base")
        .arg(&base.path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait up to `limit` for a command from [`spawn_cli`]: its exit code (`None` when it was still
/// running then, and was killed), stdout and stderr. Nothing is left running either way.
pub fn cli_finished(mut child: Child, limit: Duration) -> (Option<i32>, String, String) {
    let deadline = Instant::now() + limit;
    let mut status = child.try_wait().unwrap();
    while status.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        status = child.try_wait().unwrap();
    }
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    (
        status.and_then(|s| s.code()),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The lines `child` prints on stdout, as they come (its stdout taken), from a thread that ends
/// with the stream: for a command that follows (`events --follow`).
pub fn stdout_lines(
    child: &mut Child,
) -> (
    std::sync::mpsc::Receiver<String>,
    std::thread::JoinHandle<()>,
) {
    use std::io::BufRead;
    let lines = std::io::BufReader::new(child.stdout.take().expect("stdout piped"));
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in lines.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (rx, reader)
}

/// Lines from `rx` until one contains `want`, within `limit` (a panic naming `what` after it);
/// every line seen, that one last.
pub fn lines_until(
    rx: &std::sync::mpsc::Receiver<String>,
    want: &str,
    limit: Duration,
    what: &str,
) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut seen: Vec<String> = Vec::new();
    while !seen.iter().any(|l| l.contains(want)) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("{what} within {limit:?}: {seen:?}"),
        }
    }
    seen
}
