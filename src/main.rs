//! understudy's command line: parse, validate config, then hand over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use understudy::config::{
    check_admin_socket, check_base_writable, check_log_dir, parse_override, Config, ProcessEnv,
};

/// mimalloc instead of glibc's malloc: the proxy threads allocate what the mirror frees, and
/// glibc's per-arena locks made that cross-thread traffic a futex storm (docs/benchmarks.md).
/// Its arenas are committed as used (`.cargo/config.toml`), which keeps resident memory down.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc v3's option numbers (`mimalloc.h` of libmimalloc-sys 0.1.49): `page_reclaim_on_free`
/// and, to check that numbering before writing, its neighbours.
const MI_GENERIC_COLLECT: i32 = 34;
const MI_PAGE_RECLAIM_ON_FREE: i32 = 35;
const MI_PAGE_FULL_RETAIN: i32 = 36;

/// Let any thread take back the pages a finished thread left behind when it frees into them.
/// By default only their (gone) owner could, so a blocking thread that tokio retires after idling
/// leaves its half-used pages resident for good; with the blocking-thread cap the soak's
/// memory oscillated around a level instead of climbing (docs/benchmarks.md, "Soak memory").
/// A value the user set (`MIMALLOC_PAGE_RECLAIM_ON_FREE`) is kept. False when the numbering
/// cannot be confirmed (the neighbours do not hold their defaults: another mimalloc, or
/// `MIMALLOC_*` set): nothing written.
fn reclaim_abandoned_pages() -> bool {
    use libmimalloc_sys::{mi_option_get, mi_option_set};
    // SAFETY: plain option reads and one write; mimalloc allows both at any time, from any thread.
    unsafe {
        let numbering_holds =
            mi_option_get(MI_GENERIC_COLLECT) == 10_000 && mi_option_get(MI_PAGE_FULL_RETAIN) == 2;
        if numbering_holds && mi_option_get(MI_PAGE_RECLAIM_ON_FREE) == 0 {
            mi_option_set(MI_PAGE_RECLAIM_ON_FREE, 1);
        }
        numbering_holds
    }
}

/// Exit code for bad configuration (EX_USAGE), as linkerd2-proxy does.
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "understudy",
    version,
    about = "Shadow-traffic canary: new builds watch the lead play to real traffic, then take over"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Supervise the base dir: start builds dropped there, proxy users, mirror, score, promote.
    Run {
        /// The base directory (default: the current directory).
        #[arg(long, short)]
        base: Option<PathBuf>,
        /// Proxy listen address (LISTEN).
        #[arg(long)]
        listen: Option<String>,
        /// Build name prefix (IDENTIFIER).
        #[arg(long)]
        identifier: Option<String>,
        /// Child port range (PORT_RANGE).
        #[arg(long)]
        port_range: Option<String>,
        /// Any config key: --set STABLE_WINDOW=5m (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// A self-contained demo in a temporary base dir: v1 serves, v2 is mirrored and promoted,
    /// v3 with a lost endpoint is rejected.
    Demo {
        /// Keep the temporary base dir afterwards for a look around.
        #[arg(long)]
        keep: bool,
    },
    /// Print a documented .env with every key and its default.
    ExampleEnv,
    /// Print a shell's completion script to stdout (`cli_command` names the shells in the help).
    Completions {
        /// The shell the script is for.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to stdout: `understudy man > understudy.1`; with --dir, write
    /// it and one page per command (understudy-run.1, ...) into that directory.
    Man {
        /// Write understudy.1 and a page per command here instead of printing understudy.1.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    #[command(flatten)]
    Control(understudy::cli::ControlCommand),
    #[command(hide = true)]
    FixtureApp(Box<understudy::fixture::FixtureArgs>),
    /// Started by understudy beside each child: kills the child's process group if understudy dies.
    #[command(hide = true)]
    Watchdog(understudy::watchdog::WatchdogArgs),
}

fn main() -> ExitCode {
    let cli = Cli::from_arg_matches(&cli_command().get_matches()).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Run {
            base,
            listen,
            identifier,
            port_range,
            set,
        } => {
            // While understudy is one thread: nothing it makes is writable by every user.
            understudy::mask_write_for_others();
            understudy::ignore_hangup_until_handled();
            understudy::close_inherited_on_exec();
            // First, while understudy is one thread: the variables are removed from the
            // environment, so no child or hook inherits them.
            // Started by `understudy upgrade`: what the old understudy hands over.
            let mut takeover = match understudy::upgrade::Takeover::from_env() {
                Ok(t) => t,
                Err(e) => return fail_config(e),
            };
            let handover = match understudy::systemd::Handover::take_from_env() {
                Ok(h) => h,
                Err(e) => return fail_told(e, &mut takeover),
            };
            let flags = [
                ("LISTEN", listen),
                ("IDENTIFIER", identifier),
                ("PORT_RANGE", port_range),
            ];
            let overrides = match overrides(flags, &set) {
                Ok(o) => o,
                Err(e) => return fail_told(e, &mut takeover),
            };
            let base = base.unwrap_or_else(|| PathBuf::from("."));
            let base = std::fs::canonicalize(&base).unwrap_or(base);
            let mut cfg = match Config::load(&base, &ProcessEnv, &overrides) {
                Ok(c) => c,
                Err(e) => return fail_told(e, &mut takeover),
            };
            // This executable is understudy: it guards each child as its watchdog. Under
            // valgrind (benches/instructions.sh) `/proc/self/exe` names valgrind's own tool, so
            // the bench names understudy's file in UNDERSTUDY_WATCHDOG_EXE.
            let watchdog = std::env::var_os("UNDERSTUDY_WATCHDOG_EXE")
                .unwrap_or_else(|| understudy::watchdog::SELF_EXE.into());
            cfg.watchdog = Some(PathBuf::from(watchdog));
            if let Err(e) = check_base_writable(&cfg.base) {
                return fail_told(e, &mut takeover);
            }
            if let Err(e) = check_log_dir(cfg.log_dir.as_deref()) {
                return fail_told(e, &mut takeover);
            }
            if let Err(e) = check_admin_socket(&cfg.base) {
                return fail_told(e, &mut takeover);
            }
            report(run(cfg, overrides, handover, takeover))
        }
        Command::Demo { keep } => report(understudy::demo::run(keep).context("demo failed")),
        Command::ExampleEnv => {
            print!("{}", Config::example());
            ExitCode::SUCCESS
        }
        Command::Completions { shell } => print_generated("completion script", |out| {
            clap_complete::generate(shell, &mut visible_command(), "understudy", out);
            Ok(())
        }),
        Command::Man { dir: None } => print_generated("manual page", |out| {
            clap_mangen::Man::new(man_command()).render(out)
        }),
        Command::Man { dir: Some(dir) } => write_man_pages(&dir),
        Command::Control(c) => ExitCode::from(understudy::cli::main(c)),
        Command::FixtureApp(args) => {
            report(understudy::fixture::main(*args).context("fixture app failed"))
        }
        Command::Watchdog(args) => report(understudy::watchdog::main(args).context("watchdog")),
    }
}

/// The settings `run` was given as flags and `--set KEY=VALUE`, as overrides of the `.env`.
fn overrides(
    flags: [(&str, Option<String>); 3],
    set: &[String],
) -> Result<Vec<(String, String)>, understudy::config::ConfigError> {
    let named = flags
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_string(), v?)));
    named
        .map(Ok)
        .chain(set.iter().map(|s| parse_override(s)))
        .collect()
}

/// The command line, with `completions`' help naming every shell its argument accepts (taken from
/// the same list clap parses it with), so a shell added to clap_complete is never left unsaid.
fn cli_command() -> clap::Command {
    let shells: Vec<String> = clap_complete::Shell::value_variants()
        .iter()
        .filter_map(|s| s.to_possible_value())
        .map(|v| v.get_name().to_string())
        .collect();
    let listed = match shells.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => "a shell".to_string(),
    };
    Cli::command().mut_subcommand("completions", |c| {
        c.about(format!(
            "Print the shell completion script for {listed} to stdout"
        ))
    })
}

/// The command line without its hidden commands (`watchdog`, `fixture-app`): clap_complete's bash
/// script would offer them, and they are understudy's own, not a user's.
fn visible_command() -> clap::Command {
    let full = cli_command();
    let visible: Vec<clap::Command> = full
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .cloned()
        .collect();
    clap::Command::new("understudy")
        .version(env!("CARGO_PKG_VERSION"))
        .about(full.get_about().cloned().unwrap_or_default())
        .subcommand_required(true)
        .subcommands(visible)
}

/// The command line the manual describes: no `help` command, whose page would not exist (as
/// clap_mangen's `generate_to` does for the pages it writes).
fn man_command() -> clap::Command {
    cli_command().disable_help_subcommand(true)
}

/// Generate into memory, then write to stdout: clap_complete panics on a failed write, and a
/// closed pipe (`understudy man | head`) must end in a message, not a panic.
fn print_generated(
    what: &str,
    generate: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>,
) -> ExitCode {
    use std::io::Write;
    let mut text = Vec::new();
    let written = generate(&mut text).and_then(|()| {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&text).and_then(|()| stdout.flush())
    });
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("understudy: cannot write the {what} to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Every manual page into `dir` (made if missing), so the `understudy-<command>(1)` pages the
/// main page lists exist once installed.
fn write_man_pages(dir: &std::path::Path) -> ExitCode {
    let written =
        std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(man_command(), dir));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "understudy: cannot write the manual pages into {}: {e}; pass a writable --dir",
                dir.display()
            );
            ExitCode::FAILURE
        }
    }
}

fn fail_config(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("understudy: bad configuration: {e}");
    ExitCode::from(EXIT_CONFIG)
}

/// A bad configuration in an understudy started by an upgrade: the old one is told why first.
fn fail_told(
    e: impl std::fmt::Display,
    takeover: &mut Option<understudy::upgrade::Takeover>,
) -> ExitCode {
    if let Some(t) = takeover.take() {
        t.ready.say(&format!("error bad configuration: {e}"));
    }
    fail_config(e)
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("understudy: {}", said_once(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by ": ", a cause left out when the message before it already
/// says it: our error types put their source in their own message, so `{:#}` said it twice.
fn said_once(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !out.contains(&cause) {
            out.push_str(": ");
            out.push_str(&cause);
        }
    }
    out
}

fn run(
    cfg: Config,
    overrides: Vec<(String, String)>,
    handover: understudy::systemd::Handover,
    takeover: Option<understudy::upgrade::Takeover>,
) -> anyhow::Result<()> {
    let understudy::systemd::Handover {
        notifier,
        mut passed,
    } = handover;
    let (lock, succession, socket) = take_base(&cfg, takeover, &mut passed)?;
    let handed = succession.handed.clone();
    understudy::init_logging(&cfg).context("cannot set up logging")?;
    set_up_process(&cfg);
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cfg.worker_threads {
        rt.worker_threads(n);
    }
    rt.max_blocking_threads(understudy::MAX_BLOCKING_THREADS);
    let rt = rt
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = rt.block_on(async {
        // Before the listener: from the moment users (or systemd) can see understudy, a stop
        // asked for is a stop carried out.
        let signalled = understudy::shutdown_signal()
            .context("cannot install the SIGTERM and SIGINT handlers")?;
        let reload = reload_on_sighup(cfg.base.clone(), overrides)?;
        let listener = proxy_listener(&cfg, passed.proxy).await?;
        tracing::info!(
            "understudy {} listening on {}{} for {}-<version> in {}",
            env!("CARGO_PKG_VERSION"),
            listener.local_addr().unwrap_or(cfg.listen),
            if notifier.is_on() {
                " (under systemd)"
            } else {
                ""
            },
            cfg.identifier,
            cfg.base.display()
        );
        let cancel = tokio_util::sync::CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            signalled.await;
            tracing::info!(
                "shutting down: no new users, the requests in flight drain, then every child stops"
            );
            stop.cancel();
        });
        let listeners = understudy::Listeners {
            proxy: listener,
            admin: passed.admin,
            socket,
        };
        let events = understudy::Events::continuing(
            understudy::layout::Layout::new(&cfg.base, &cfg.identifier).events_seq_file(),
        );
        let result =
            understudy::run(cfg, listeners, events, cancel, reload, notifier, succession).await;
        match &result {
            Ok(()) => tracing::info!("stopped"),
            Err(e) => tracing::error!("stopped: {e}"),
        }
        result.map_err(anyhow::Error::from)
    });
    stop_runtime(rt);
    if handed.is_cancelled() {
        // The new understudy holds the same lock; unlocking would release it for both.
        lock.hand_on();
    }
    result
}

/// Every task was joined by the stop; a blocking call still in flight (a file system that
/// stopped answering) must not keep understudy from exiting, and its lock from others.
fn stop_runtime(rt: tokio::runtime::Runtime) {
    let began = std::time::Instant::now();
    rt.shutdown_timeout(RUNTIME_STOP_LIMIT);
    if began.elapsed() >= RUNTIME_STOP_LIMIT {
        tracing::warn!(
            "a blocking call was still running {}s after the stop; exiting without it",
            RUNTIME_STOP_LIMIT.as_secs()
        );
    }
}

/// How long a stopped runtime waits for blocking calls still running before understudy exits.
const RUNTIME_STOP_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Take the base dir: its lock (handed over with the rest by the previous understudy when an
/// upgrade started this one, which then also hands the listeners and the children).
fn take_base(
    cfg: &Config,
    takeover: Option<understudy::upgrade::Takeover>,
    passed: &mut understudy::systemd::Passed,
) -> anyhow::Result<(
    understudy::layout::BaseLock,
    understudy::upgrade::Succession,
    Option<std::os::unix::net::UnixListener>,
)> {
    let layout = understudy::layout::Layout::new(&cfg.base, &cfg.identifier);
    let mut succession = understudy::upgrade::Succession::default();
    let mut socket = None;
    let lock = match takeover {
        Some(t) => {
            passed.proxy = Some(t.proxy);
            passed.admin = t.admin;
            socket = Some(t.socket);
            succession.taken = t.children;
            succession.ready = Some(t.ready);
            succession.from = Some(t.from);
            layout.take_lock(t.lock)?
        }
        None => layout.lock()?,
    };
    succession.lock = Some(lock.fd());
    Ok((lock, succession, socket))
}

/// The process's own limits and allocator, and what the configuration did not know.
fn set_up_process(cfg: &Config) {
    match understudy::raise_fd_limit() {
        Some((old, new)) if new > old => {
            tracing::info!("open files limit raised from {old} to {new}")
        }
        Some(_) => {}
        None => tracing::warn!("cannot read or raise the open files limit (RLIMIT_NOFILE)"),
    }
    if !reclaim_abandoned_pages() {
        tracing::warn!(
            "cannot confirm mimalloc's option numbering (MIMALLOC_* set?): pages left by finished threads are reclaimed only by their owner, and resident memory may creep up build by build"
        );
    }
    if let Some(warning) = understudy::ephemeral_overlap(cfg.port_range) {
        tracing::warn!("{warning}");
    }
    if let Some(dir) = cfg.log_dir.as_ref().filter(|d| d.starts_with(&cfg.base)) {
        tracing::warn!(
            "LOG_DIR={} is in the base dir: understudy.log counts toward MAX_BASE_SIZE, and as it grows rollback archives are deleted to make room; put it elsewhere (such as /var/log/understudy), or rotate it",
            dir.display()
        );
    }
    let env_file = cfg.base.join(".env");
    for warning in understudy::config::unknown_key_warnings(&env_file, &cfg.unknown_keys) {
        tracing::warn!("{warning}");
    }
    let names: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect();
    for warning in understudy::config::unknown_env_warnings(names.iter().map(String::as_str)) {
        tracing::warn!("{warning}");
    }
}

/// The users' listener: the one systemd passed (socket activation), else `LISTEN` bound here.
async fn proxy_listener(
    cfg: &Config,
    passed: Option<std::net::TcpListener>,
) -> anyhow::Result<tokio::net::TcpListener> {
    match passed {
        Some(l) => {
            tracing::info!("serving users on the listener passed by systemd or the previous understudy (LISTEN is not bound)");
            l.set_nonblocking(true)
                .and_then(|()| tokio::net::TcpListener::from_std(l))
                .context("cannot serve the proxy listener passed by systemd")
        }
        None => tokio::net::TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("cannot listen on LISTEN={}", cfg.listen)),
    }
}

/// SIGHUP re-reads `.env` (with the same environment and CLI overrides): a valid configuration is
/// handed to understudy, an invalid one is refused in the log and the old one stays.
fn reload_on_sighup(
    base: PathBuf,
    overrides: Vec<(String, String)>,
) -> anyhow::Result<tokio::sync::mpsc::Receiver<Config>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("cannot install a SIGHUP handler")?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let had_dotenv = base.join(".env").exists();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: re-reading {}", base.join(".env").display());
            match Config::reload(&base, &ProcessEnv, &overrides, had_dotenv) {
                Ok(cfg) => {
                    if tx.send(cfg).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::error!(
                    "SIGHUP: refusing the new configuration ({e}); the old one stays in force"
                ),
            }
        }
    });
    Ok(rx)
}
