//! The understudy process's own setup, apart from what it supervises: its open-files limit, its
//! blocking threads, its log, and the signals that stop it.

use crate::{config, jsonlog, Config};

mod logfile;

/// Raise the open-files soft limit to the hard limit, as servers do: every user connection, every
/// upstream connection and every child's files count against it, and the common default soft
/// limit (1024, or 512) is reached by a few hundred idle keep-alive clients. Returns (old, new).
pub fn raise_fd_limit() -> Option<(u64, u64)> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft >= hard {
        return Some((soft, soft));
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).ok()?;
    Some((soft, hard))
}

/// Add write-for-others to the umask (`umask |= 002`), for understudy and what it starts: under
/// umask 000 every folder it makes (version folders, `.understudy/incoming`, the store) would let
/// any local user put a program there. Group write, which shared setups use, is kept. Call while
/// the process has one thread: the umask is the process's.
pub fn mask_write_for_others() {
    use nix::sys::stat::{umask, Mode};
    let old = umask(Mode::S_IWOTH);
    umask(old | Mode::S_IWOTH);
}

/// At most this many threads for blocking work (installs, archives, collection, file writes).
/// Each thread the allocator serves keeps pages of its own: tokio starts one whenever the others
/// are busy and, as idle ones are woken in turn, rarely lets one go, so with its default of 512
/// the count crept up over a long soak and resident memory by 1.5–2.5 MiB with each (see
/// docs/benchmarks.md). Four covers an install, an archive, a collection and a file write at once.
pub const MAX_BLOCKING_THREADS: usize = 4;

/// Send understudy's own log to stderr, or to `LOG_DIR/understudy.log` when set (reopened within
/// a second of a line once renamed away), as text or as JSON lines (`LOG_FORMAT`).
pub fn init_logging(cfg: &Config) -> std::io::Result<()> {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let writer = match &cfg.log_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            // Reopened once renamed or deleted: logrotate's `create` mode works, as `copytruncate`.
            let f = logfile::LogFile::open(dir.join("understudy.log"))?;
            BoxMakeWriter::new(std::sync::Mutex::new(f))
        }
        None => BoxMakeWriter::new(std::io::stderr),
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(cfg.log_level)
        .with_writer(writer);
    let _ = match cfg.log_format {
        config::LogFormat::Text => builder.with_target(false).try_init(),
        config::LogFormat::Json => builder.event_format(jsonlog::JsonLines).try_init(),
    };
    // A panic anywhere goes to understudy's log, wherever that is.
    std::panic::set_hook(Box::new(|info| tracing::error!("panic: {info}")));
    Ok(())
}

/// Installs the SIGTERM and SIGINT handlers now and returns the wait for either: installed
/// inside a task, a signal sent before that task first ran took the default (an exit that stops
/// no child) or, inherited as ignored, was lost and understudy never stopped.
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// A SIGHUP asks for a reload; until its handler is installed (with the runtime), one sent is
/// ignored rather than take the default, an exit: a reload asked for before the configuration
/// was first read has nothing to reload. The handler replaces this; children never inherit it.
pub fn ignore_hangup_until_handled() {
    // SAFETY: signal(2) with SIG_IGN installs no handler code; called while understudy is one
    // thread, before any other signal setup.
    unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
}

/// The warning for a `PORT_RANGE` that overlaps the kernel's ephemeral ports
/// (`ip_local_port_range`), if it does: any outgoing connection may take one of its ports while an
/// instance starts (a JVM binds seconds after it starts), and that start must then be retried.
pub fn ephemeral_overlap(range: (u16, u16)) -> Option<String> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    overlap_with(range, &text)
}

/// [`ephemeral_overlap`] with the kernel's range as `ip_local_port_range` reads (`from\tto`).
fn overlap_with((lo, hi): (u16, u16), text: &str) -> Option<String> {
    let mut words = text.split_whitespace().map(str::parse::<u16>);
    let (Some(Ok(from)), Some(Ok(to))) = (words.next(), words.next()) else {
        return None;
    };
    (lo <= to && from <= hi).then(|| {
        format!(
            "PORT_RANGE={lo}-{hi} overlaps the kernel's ephemeral ports ({from}-{to}, \
             net.ipv4.ip_local_port_range): any outgoing connection may take one of its ports \
             while an instance starts, which is then started again on another (port_taken); \
             choose a PORT_RANGE outside it, or reserve it with net.ipv4.ip_local_reserved_ports"
        )
    })
}

/// Mark every descriptor understudy was started with, past stdin, stdout and stderr,
/// close-on-exec: a shell's `7>file` or a CI step's pipe would otherwise reach every watchdog and
/// build, which could write into it or keep its reader from ever seeing its end. What understudy
/// takes from them (systemd's listeners, an upgrade's plan) it owns, and hands on deliberately.
/// Call while understudy is one thread.
pub fn close_inherited_on_exec() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: fcntl on a descriptor number; one closed meanwhile (the listing's own) fails
        // with EBADF and is left alone.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

#[cfg(test)]
mod ephemeral_tests {
    use super::overlap_with;

    #[test]
    fn a_port_range_inside_the_ephemeral_ports_is_warned_about_and_one_below_is_not() {
        let kernel = "32768\t60999\n";
        let warning = overlap_with((41000, 41299), kernel).unwrap();
        assert!(warning.contains("PORT_RANGE=41000-41299"), "{warning}");
        assert!(warning.contains("32768-60999"), "{warning}");
        assert!(overlap_with((60999, 61010), kernel).is_some());
        assert!(overlap_with((20000, 20099), kernel).is_none());
        assert!(overlap_with((20000, 20099), "garbage").is_none());
    }
}
