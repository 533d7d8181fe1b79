//! The per-instance watchdog: a tiny process (understudy's own program, hidden subcommand
//! `watchdog`) that is the parent of one instance's child, as containerd's shim and podman's
//! conmon are, so that understudy itself can be replaced while its children keep running.
//!
//! Understudy holds one end of a socket pair, the *link*; the watchdog holds the other as fd 3.
//! The watchdog forks the child (the leader of its own process group) and says `pid N` on the
//! link; when the child exits it says `exit <status>` and keeps it unreaped (the zombie holds the
//! group id) until understudy, having stopped the rest of the group, writes [`DONE`]; it then
//! SIGKILLs what is left, reaps the child and exits. When the link reads end-of-file, no understudy holds it any more (understudy
//! died, even by SIGKILL, and did not hand it over): the watchdog SIGKILLs the whole group at once.
//! An upgrade hands the link's descriptor to the new understudy before the old one exits, so the
//! link never reads end-of-file and the child never notices the change.
//!
//! What it does not cover: a process that leaves the group (`setsid()`, `setpgid()`) escapes, and
//! so does anything once the group was recycled; no cgroup is used.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;

/// The path that names the running program itself (Linux). Understudy's `main` hands it to the
/// library as the watchdog program: the watchdog is then the very same build, even if the file
/// was replaced or deleted since understudy started.
pub const SELF_EXE: &str = "/proc/self/exe";

/// The subcommand that runs [`main`]; must match the hidden variant in `src/main.rs`.
const SUBCOMMAND: &str = "watchdog";

/// The descriptor the watchdog finds its end of the link on.
const LINK_FD: RawFd = 3;

/// How long understudy waits for the watchdog to say the child's pid (or why it has none).
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest line either side writes on the link; a longer one is cut.
pub const MAX_LINE: usize = 512;

/// What understudy writes on the link once the group of an exited leader is stopped: the
/// watchdog then kills what is left, reaps the leader and exits.
pub const DONE: u8 = b'.';

/// The signals a stray sender could kill the watchdog with by default action, leaving the group
/// unguarded (`systemctl kill` signals every process of the unit, the terminal its group):
/// blocked in the watchdog, unblocked again in the child before its exec.
const BLOCKED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

fn blocked_set() -> SigSet {
    let mut set = SigSet::empty();
    for s in BLOCKED {
        set.add(s);
    }
    set
}

/// The watchdog's command line, parsed by clap in `src/main.rs` (hidden subcommand `watchdog`);
/// built by [`spawn`], so both ends live here.
#[derive(Debug, clap::Args)]
pub struct WatchdogArgs {
    /// The instance folder: the child's working directory (the watchdog's own is `/`, so that it
    /// pins nothing and is not counted as working in the base dir).
    #[arg(long)]
    pub instance: PathBuf,
    /// The child's program and arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<OsString>,
}

/// Why the watchdog process cannot do its job.
#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    /// Fd 3 is not a socket: the watchdog was not started by understudy.
    #[error("fd 3 is not understudy's link ({0}); the watchdog is started by understudy only")]
    NoLink(io::Error),
    /// The stray signals could not be blocked.
    #[error("cannot block SIGTERM, SIGINT and SIGHUP: {0}")]
    Mask(Errno),
    /// The thread that reads the link could not be started.
    #[error("cannot start the link thread: {0}")]
    Thread(io::Error),
}

/// What the watchdog tells understudy first: the child's pid, or why it could not start.
#[derive(Debug, PartialEq, Eq)]
pub enum Hello {
    /// The child runs with this pid (and process group id).
    Pid(u32),
    /// The child could not be started; the OS error, as text.
    Failed(String),
}

/// A watchdog just started, with its child: understudy's end of the link and the watchdog process.
#[derive(Debug)]
pub struct Started {
    /// The child's pid, also its process group id.
    pub pid: u32,
    /// Understudy's end of the link.
    pub link: OwnedFd,
    /// The watchdog process, to be reaped once it has said the child's exit.
    pub watchdog: tokio::process::Child,
}

/// Blocking: start `program` (understudy's own executable) as the watchdog of `command`, which it
/// forks in `cmd`'s environment and stdio, in folder `instance`; returns once the watchdog said
/// the child's pid. `Err` with kind `Other` carries the child's start failure as the watchdog saw it.
pub fn spawn(
    program: &Path,
    instance: &Path,
    command: &[String],
    configure: impl FnOnce(&mut tokio::process::Command),
) -> io::Result<Started> {
    let (ours, theirs) = UnixStream::pair()?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg0("understudy")
        .arg(SUBCOMMAND)
        .arg("--instance")
        .arg(instance)
        .arg("--")
        .args(command);
    configure(&mut cmd);
    // Pins no folder of the base dir; its own group, so a Ctrl-C to understudy's terminal group
    // does not reach it; it is reaped by whoever holds the handle, or by tokio once dropped.
    cmd.current_dir("/").process_group(0).kill_on_drop(false);
    let theirs_fd = theirs.as_raw_fd();
    // SAFETY: `pre_exec` runs in the forked child before exec, where only async-signal-safe work
    // is allowed: `dup2` and `sigprocmask` are raw syscalls on values copied in before the fork,
    // and an `io::Error` from an errno code does not allocate.
    unsafe {
        let blocked = blocked_set();
        cmd.pre_exec(move || {
            // dup2 clears close-on-exec on the copy: the watchdog inherits the link as fd 3.
            if libc::dup2(theirs_fd, LINK_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            // Blocked before exec, a stray signal stays pending instead of killing it.
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None)?;
            Ok(())
        });
    }
    let watchdog = cmd.spawn()?;
    drop(theirs);
    match read_hello(&ours)? {
        Hello::Pid(pid) => Ok(Started {
            pid,
            link: ours.into(),
            watchdog,
        }),
        Hello::Failed(why) => Err(io::Error::other(why)),
    }
}

/// Read the watchdog's first line from the link, waiting at most [`HELLO_TIMEOUT`]; byte by
/// byte, so that nothing after it (an `exit` line of a child that ended at once) is read here.
fn read_hello(mut link: &UnixStream) -> io::Result<Hello> {
    link.set_read_timeout(Some(HELLO_TIMEOUT))?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < MAX_LINE && line.last() != Some(&b'\n') {
        match link.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    link.set_read_timeout(None)?;
    parse_hello(&String::from_utf8_lossy(&line)).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the watchdog ended without saying the child's pid",
        )
    })
}

/// The first line a watchdog writes, parsed (pure).
pub fn parse_hello(line: &str) -> Option<Hello> {
    let line = line.strip_suffix('\n')?;
    if let Some(pid) = line.strip_prefix("pid ") {
        return pid.parse().ok().filter(|p| *p > 1).map(Hello::Pid);
    }
    line.strip_prefix("error ")
        .map(|why| Hello::Failed(why.to_string()))
}

/// The child's exit status in a line the watchdog wrote after its hello (pure); `None` for a line
/// that is not one.
pub fn parse_exit(line: &str) -> Option<&str> {
    line.strip_prefix("exit ")
}

/// The watchdog process's body (`understudy watchdog`): fork the child, say its pid, then wait
/// for whichever comes first: the child's exit (say it, exit 0) or the link's end (kill the
/// group, reap the child, exit 0).
pub fn main(args: WatchdogArgs) -> Result<(), WatchdogError> {
    // SAFETY: fd 3 was handed to us by `spawn` and nothing else in this process owns it.
    let link = unsafe { OwnedFd::from_raw_fd(LINK_FD) };
    let link = UnixStream::from(link);
    link.peer_addr().map_err(WatchdogError::NoLink)?;
    // Started as `/proc/self/exe`, it would show as `exe` in `ps -e` and `top`.
    let _ = nix::sys::prctl::set_name(c"understudy-wdog");
    blocked_set().thread_block().map_err(WatchdogError::Mask)?;
    // The child must not inherit the link: it would hold it open for ever.
    let _ = nix::fcntl::fcntl(
        &link,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    let mut writer = &link;
    let mut child = match start_child(&args) {
        Ok(c) => c,
        Err(e) => {
            let _ = writer.write_all(format!("error {}\n", one_line(&e.to_string())).as_bytes());
            return Ok(());
        }
    };
    let pgid = Pid::from_raw(child.id() as i32);
    let _ = writer.write_all(format!("pid {}\n", child.id()).as_bytes());
    let reader = link.try_clone().map_err(WatchdogError::Thread)?;
    let (done_tx, done) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("link".into())
        .spawn(move || {
            watch_link(reader);
            // Understudy is done with the group, or gone: nothing of it may live on.
            let _ = killpg(pgid, Signal::SIGKILL);
            let _ = done_tx.send(());
        })
        .map_err(WatchdogError::Thread)?;
    // Wait without reaping: as a zombie the leader keeps the group id from being reused while
    // understudy lets the rest of the group stop (within its grace) or kills it.
    let status = loop {
        match waitid(Id::Pid(pgid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Err(Errno::EINTR) => continue,
            r => break status_text(r),
        }
    };
    let _ = writer.write_all(format!("exit {}\n", one_line(&status)).as_bytes());
    let _ = done.recv();
    let _ = child.wait();
    Ok(())
}

/// A `waitid` result as `std`'s `ExitStatus` shows it (`exit status: 3`, `signal: 9 (SIGKILL)`).
fn status_text(r: nix::Result<nix::sys::wait::WaitStatus>) -> String {
    use nix::sys::wait::WaitStatus;
    use std::os::unix::process::ExitStatusExt;
    let raw = match r {
        Ok(WaitStatus::Exited(_, code)) => (code & 0xff) << 8,
        Ok(WaitStatus::Signaled(_, sig, core)) => sig as i32 | if core { 0x80 } else { 0 },
        other => return format!("unknown ({other:?})"),
    };
    std::process::ExitStatus::from_raw(raw).to_string()
}

/// Fork the child in its folder, the leader of its own group, killed by the kernel if the
/// watchdog dies.
fn start_child(args: &WatchdogArgs) -> io::Result<std::process::Child> {
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no command"))?;
    let parent = nix::unistd::getpid();
    let mut cmd = std::process::Command::new(program);
    cmd.args(rest)
        .current_dir(&args.instance)
        .stdin(Stdio::null())
        .process_group(0);
    let blocked = blocked_set();
    // SAFETY: as in `spawn`: raw syscalls (sigprocmask, prctl, getppid) on values copied
    // in before the fork, and an integer comparison.
    unsafe {
        cmd.pre_exec(move || {
            // The child starts as a child of understudy did: no signal blocked (the mask
            // survives exec). SIGPIPE stays ignored, as before and as systemd starts services.
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&blocked), None)?;
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            if nix::unistd::getppid() != parent {
                return Err(Errno::ESRCH.into());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Read the link until understudy says `done` (the group is stopped, the leader may be reaped)
/// or the link ends (no understudy holds it any more); any other byte is ignored.
fn watch_link(mut link: UnixStream) {
    let mut buf = [0u8; 64];
    loop {
        match link.read(&mut buf) {
            Ok(0) => return,
            Ok(n) if buf[..n].contains(&DONE) => return,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

/// `text` on one line, cut to fit the link's line limit.
fn one_line(text: &str) -> String {
    let mut s: String = text
        .chars()
        .map(|c| if c == '\n' { ' ' } else { c })
        .collect();
    if s.len() > MAX_LINE - 16 {
        let mut cut = MAX_LINE - 16;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    #[test]
    fn hello_and_exit_lines_parse_and_junk_does_not() {
        assert_eq!(parse_hello("pid 1234\n"), Some(Hello::Pid(1234)));
        assert_eq!(
            parse_hello("error No such file or directory (os error 2)\n"),
            Some(Hello::Failed(
                "No such file or directory (os error 2)".into()
            ))
        );
        for junk in ["pid 1234", "pid 1\n", "pid x\n", "", "hello\n"] {
            assert_eq!(parse_hello(junk), None, "{junk:?}");
        }
        assert_eq!(parse_exit("exit exit status: 3"), Some("exit status: 3"));
        assert_eq!(parse_exit("pid 3"), None);
        let three = std::process::ExitStatus::from_raw(3 << 8).to_string();
        assert_eq!(parse_exit(&format!("exit {three}")), Some("exit status: 3"));
    }

    #[test]
    fn the_hello_leaves_an_exit_line_that_came_with_it_on_the_link() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        // A child that ended at once: both lines in one write, read by one read.
        theirs
            .write_all(b"pid 4242\nexit exit status: 1\n")
            .unwrap();
        assert_eq!(read_hello(&ours).unwrap(), Hello::Pid(4242));
        let mut rest = String::new();
        drop(theirs);
        (&ours).read_to_string(&mut rest).unwrap();
        assert_eq!(
            rest, "exit exit status: 1\n",
            "the exit line is still for the owner"
        );
    }

    #[test]
    fn exit_statuses_read_as_std_shows_them() {
        use nix::sys::wait::WaitStatus;
        let pid = Pid::from_raw(42);
        assert_eq!(
            status_text(Ok(WaitStatus::Exited(pid, 3))),
            "exit status: 3"
        );
        assert_eq!(
            status_text(Ok(WaitStatus::Signaled(pid, Signal::SIGKILL, false))),
            "signal: 9 (SIGKILL)"
        );
        assert!(status_text(Err(Errno::ECHILD)).starts_with("unknown"));
    }

    #[test]
    fn one_line_has_no_newline_and_fits() {
        let long = "é\n".repeat(1000);
        let l = one_line(&long);
        assert!(!l.contains('\n') && l.len() <= MAX_LINE - 16);
    }
}
