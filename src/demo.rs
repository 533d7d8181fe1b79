//! `understudy demo`: the whole story in one command, needing nothing but this binary. A temp
//! base dir, the fixture app as builds 1.0.0 (served), 1.1.0 (mirrored, scored, promoted) and
//! 1.2.0 (loses an endpoint, rejected), with a little traffic and a narration of each event.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ProcessEnv};
use semver::Version;

use crate::events::{Event, Events};

/// Why the demo stopped early.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DemoError(String);

fn err(e: impl std::fmt::Display) -> DemoError {
    DemoError(e.to_string())
}

/// Run the demo; `keep` leaves the temp base dir in place for a look around.
pub fn run(keep: bool) -> Result<(), DemoError> {
    let base = std::env::temp_dir().join(format!("understudy-demo-{}", std::process::id()));
    std::fs::create_dir_all(&base).map_err(err)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(err)?;
    let result = rt.block_on(story(&base));
    drop(rt);
    if keep {
        println!("\nthe base dir is kept at {}", base.display());
    } else {
        let _ = std::fs::remove_dir_all(&base);
    }
    result
}

/// The demo's subscription to understudy's events.
type EventRx = broadcast::Receiver<std::sync::Arc<crate::events::Stamped>>;

/// Start understudy on a fresh base dir and play the acts against it, then shut it down.
async fn story(base: &Path) -> Result<(), DemoError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(err)?;
    let addr = listener.local_addr().map_err(err)?;
    let cfg = demo_config(base, addr)?;
    let _ = crate::init_logging(&cfg);
    let exe = std::env::current_exe().map_err(err)?;
    println!(
        "understudy demo: base dir {}, proxy on http://{addr}\n",
        base.display()
    );

    let events = Events::default();
    let mut rx = events.subscribe();
    let cancel = CancellationToken::new();
    let (_reload_tx, reload) = tokio::sync::mpsc::channel(1);
    let listeners = crate::Listeners {
        proxy: listener,
        admin: None,
        socket: None,
    };
    let server = tokio::spawn(crate::run(
        cfg,
        listeners,
        events,
        cancel.clone(),
        reload,
        crate::systemd::Notifier::default(),
        crate::upgrade::Succession::default(),
    ));

    let outcome = acts(base, &exe, addr, &mut rx).await;
    cancel.cancel();
    let _ = server.await;
    outcome
}

/// The demo's `.env`, written into `base` and loaded as understudy would.
fn demo_config(base: &Path, addr: SocketAddr) -> Result<Config, DemoError> {
    std::fs::write(
        base.join(".env"),
        format!(
            "IDENTIFIER=demo-app\nLISTEN={addr}\nPORT_RANGE=24000-24999\nSTABLE_WINDOW=3s\nMIN_MIRRORED=40\nEVALUATE_EVERY=1s\nSHUTDOWN_GRACE=2s\nLOG_LEVEL=error\nADMIN_LISTEN=off\n"
        ),
    )
    .map_err(err)?;
    let mut cfg = Config::load(base, &ProcessEnv, &[]).map_err(err)?;
    // The demo runs only inside understudy's own binary.
    cfg.watchdog = Some(PathBuf::from(crate::watchdog::SELF_EXE));
    Ok(cfg)
}

/// The acts in order, each ending on the event it waits for; the history and the tree last.
async fn acts(
    base: &Path,
    exe: &Path,
    addr: SocketAddr,
    rx: &mut EventRx,
) -> Result<(), DemoError> {
    let traffic = serve_and_promote(base, exe, addr, rx).await?;
    turn_away_bad_builds(base, exe, addr, rx).await?;
    let socket = crate::layout::Layout::new(base, "demo-app").admin_socket();
    roll_back(base, &socket, addr, rx).await?;
    traffic.abort();
    wait_for(rx, |e| matches!(e, Event::Archived { .. }))
        .await
        .ok();
    show_history(&socket).await?;
    println!("\nthe base dir now holds:");
    print_tree(base, 1);
    Ok(())
}

/// Acts 1 and 2: 1.0.0 serves, 1.1.0 is mirrored under traffic and promoted; returns the
/// traffic task, which goes on until the rollback is done.
async fn serve_and_promote(
    base: &Path,
    exe: &Path,
    addr: SocketAddr,
    rx: &mut EventRx,
) -> Result<tokio::task::JoinHandle<()>, DemoError> {
    println!("1. dropping demo-app-1.0.0 into the base dir");
    drop_build(base, exe, "1.0.0", "--noisy")?;
    // Announced once users are switched to it (after `ready`), as every switch is.
    wait_for(
        rx,
        |e| matches!(e, Event::Promoted { to, .. } if *to == Version::new(1, 0, 0)),
    )
    .await?;
    show_answer(addr, "").await?;

    println!("\n2. dropping demo-app-1.1.0: it starts as testing and gets a copy of each GET;");
    println!("   a second 1.0.0 (the secondary) gets them too, so the timestamp and request id");
    println!("   that differ in every answer are known as noise, and the version as expected");
    drop_build(base, exe, "1.1.0", "--noisy")?;
    let traffic = tokio::spawn(traffic(addr));
    // 1.0.0's own switch (the first build) was announced as promoted too.
    wait_for(
        rx,
        |e| matches!(e, Event::Promoted { to, .. } if *to == Version::new(1, 1, 0)),
    )
    .await?;
    show_answer(addr, "").await?;
    Ok(traffic)
}

/// Acts 3 and 4: a build that lost an endpoint and one that doubles prices are turned away.
async fn turn_away_bad_builds(
    base: &Path,
    exe: &Path,
    addr: SocketAddr,
    rx: &mut EventRx,
) -> Result<(), DemoError> {
    println!("\n3. dropping demo-app-1.2.0, which lost /api/items: it is scored and turned away");
    drop_build(base, exe, "1.2.0", "--noisy --not-found /api/items")?;
    wait_for(
        rx,
        |e| matches!(e, Event::Rejected { version, .. } if *version == Version::new(1, 2, 0)),
    )
    .await?;
    show_answer(addr, "  (users never noticed)").await?;

    println!(
        "\n4. dropping demo-app-1.3.0, which doubles every price behind a 200: its answers are turned away"
    );
    drop_build(base, exe, "1.3.0", "--noisy --double-price")?;
    wait_for(
        rx,
        |e| matches!(e, Event::Rejected { version, .. } if *version == Version::new(1, 3, 0)),
    )
    .await?;
    show_answer(addr, "  (users never noticed)").await?;
    Ok(())
}

/// Act 5: the operator rolls back through the admin socket, and 1.0.0 serves again.
async fn roll_back(
    base: &Path,
    socket: &Path,
    addr: SocketAddr,
    rx: &mut EventRx,
) -> Result<(), DemoError> {
    println!(
        "\n5. the operator changes their mind: `understudy rollback --base {}`",
        base.display()
    );
    let (code, answer) = crate::cli::call(
        socket,
        hyper::Method::POST,
        "/api/rollback",
        None,
        crate::cli::ROLLBACK_WITHIN,
    )
    .await
    .map_err(err)?;
    println!(
        "   understudy answers {code}: {}",
        answer["message"]
            .as_str()
            .or(answer["error"].as_str())
            .unwrap_or("?")
    );
    wait_for(
        rx,
        |e| matches!(e, Event::Promoted { to, .. } if *to == Version::new(1, 0, 0)),
    )
    .await?;
    show_answer(addr, "  (back, with zero downtime)").await
}

/// Print what `understudy history` would: who served when, and why.
async fn show_history(socket: &Path) -> Result<(), DemoError> {
    let (_, history) = crate::cli::call(
        socket,
        hyper::Method::GET,
        "/api/history",
        None,
        crate::cli::READ_WITHIN,
    )
    .await
    .map_err(err)?;
    println!("\n`understudy history` says who served when:");
    for s in history["switches"].as_array().into_iter().flatten() {
        println!(
            "   {}  {} → {}  ({})",
            s["at"].as_str().unwrap_or("?"),
            s["from"].as_str().unwrap_or("nothing"),
            s["to"].as_str().unwrap_or("?"),
            s["why"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

/// Write a build as an executable script that starts the fixture app, the way a deploy tool
/// would: written under a temp name, then moved into place atomically.
fn drop_build(base: &Path, exe: &Path, version: &str, faults: &str) -> Result<(), DemoError> {
    let script = format!(
        "#!/bin/sh\nexec '{}' fixture-app --version {version} {faults}\n",
        exe.display()
    );
    let tmp = base.join(format!(".demo-app-{version}.tmp"));
    std::fs::write(&tmp, script).map_err(err)?;
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(err)?;
    std::fs::rename(&tmp, base.join(format!("demo-app-{version}"))).map_err(err)
}

async fn wait_for(
    rx: &mut broadcast::Receiver<std::sync::Arc<crate::events::Stamped>>,
    want: impl Fn(&Event) -> bool,
) -> Result<(), DemoError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let e = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => return Err(DemoError("nothing happened for 60 s".into())),
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(e)) => return Err(err(e)),
            Ok(Ok(e)) => e.event.clone(),
        };
        narrate(&e);
        if want(&e) {
            return Ok(());
        }
    }
}

fn narrate(e: &Event) {
    let line = match e {
        Event::BuildFound { file, .. } => format!("found build {file}"),
        Event::Installed { version } => format!("installed {version} in its version folder"),
        Event::RolledBack { to, .. } => format!("ROLLED BACK to {to}"),
        Event::Started {
            role,
            version,
            number,
            port,
        } => format!("started {version} as {role} (instance {number}, port {port})"),
        Event::Ready { role, version, .. } => {
            format!("{version} is ready: `{role}` now points at it")
        }
        Event::Scored {
            version, summary, ..
        } => format!("scored {version}: {summary}"),
        Event::Promoting { version } => {
            format!("{version} passed: starting a fresh running instance of it")
        }
        Event::Promoted { from: None, to, .. } => format!("{to} SERVES USERS (the first build)"),
        Event::Promoted {
            from: Some(from),
            to,
            ..
        } => format!("PROMOTED {to} (was {from})"),
        Event::PromotionFailed { version, reasons } => {
            format!("promotion of {version} failed: {}", reasons.join("; "))
        }
        Event::Rejected { version, reasons } => {
            format!("REJECTED {version}: {}", reasons.join("; "))
        }
        Event::Archived { version, zip } => format!("archived {version} as {}", zip.display()),
        Event::Stopped { version, number } => format!("stopped {version} instance {number}"),
        Event::Exited {
            role,
            version,
            status,
        } => format!("{role} {version} exited: {status}"),
        Event::RestartScheduled {
            version, delay_ms, ..
        } => format!("running {version} failed; restarting in {delay_ms} ms"),
        Event::ArchiveDeleted { zip, reason } => format!("deleted {}: {reason}", zip.display()),
        Event::DiskFull { why } => format!("cannot save state, still serving: {why}"),
        Event::DiskRecovered => "state is saved again".to_string(),
        Event::Paused => "paused by the operator".to_string(),
        Event::Resumed => "resumed by the operator".to_string(),
        Event::Scheduled { id, version, at } => format!(
            "schedule #{id}: {} will be promoted at {at}",
            version
                .as_ref()
                .map_or("the build under test".to_string(), Version::to_string)
        ),
        Event::GuardTripped {
            version,
            to,
            reason,
        } => format!("ROLLING BACK {version} to {to}: {reason}"),
        Event::HeartbeatLost { role, version, .. } => {
            format!("{role} {version} stopped answering its heartbeats")
        }
        Event::HookRan {
            hook, version, ok, ..
        } => format!(
            "{hook} for {version} {}",
            if *ok { "succeeded" } else { "FAILED" }
        ),
        Event::ScheduleHeld { id, reason } => format!("schedule #{id} holds: {reason}"),
        Event::ScheduleEnded {
            id,
            outcome,
            reason,
        } => format!("schedule #{id} {outcome}: {reason}"),
        other => supervision_line(other),
    };
    println!("   · {line}");
}

/// The line for what the supervisor decided that no other event says.
fn supervision_line(e: &Event) -> String {
    match e {
        Event::Rejecting { version, reasons } => {
            format!("rejecting {version}: {}", reasons.join("; "))
        }
        Event::SwitchCompleted { kind, version, .. } => {
            format!("completed the interrupted {kind} of {version}")
        }
        Event::SwitchUndone { kind, version, .. } => {
            format!("undid the interrupted {kind} of {version}")
        }
        Event::CrashLooping {
            version, failures, ..
        } => format!("running {version} CRASH-LOOPS ({failures} failures in a row)"),
        Event::CrashLoopReplaced {
            version, replaced, ..
        } => format!("{version} replaces crash-looping {replaced}"),
        Event::SecondaryGivenUp { version, reason } => {
            format!("secondary {version} given up ({reason}): noise unknown")
        }
        Event::SecondaryRestarted { version, .. } => {
            format!("secondary {version} failed: started again")
        }
        Event::FilingFailed {
            version,
            error,
            retrying,
            ..
        } => format!(
            "cannot file away {version}: {error}{}",
            if *retrying {
                "; retrying"
            } else {
                "; giving up"
            }
        ),
        Event::RollbackFailed { version, reason } => {
            format!("rollback to {version} failed: {reason}")
        }
        Event::GuardEnded { version, from } => {
            format!("{version} held through the rollback window; {from} is filed away")
        }
        other => format!("{other:?}"),
    }
}

async fn traffic(addr: SocketAddr) {
    let paths = ["/api/items", "/api/items/42", "/health", "/"];
    for i in 0.. {
        let _ = get(addr, paths[i % paths.len()]).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a user gets from the proxy right now.
async fn show_answer(addr: SocketAddr, remark: &str) -> Result<(), DemoError> {
    println!(
        "   GET /api/items → {}{remark}",
        get(addr, "/api/items").await?.1.trim()
    );
    Ok(())
}

/// A minimal HTTP/1.1 GET, so the demo needs no client library.
async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), DemoError> {
    let mut s = tokio::net::TcpStream::connect(addr).await.map_err(err)?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .map_err(err)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.map_err(err)?;
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

fn print_tree(dir: &Path, depth: usize) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.sort();
    for p in entries {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let meta = std::fs::symlink_metadata(&p);
        let indent = "   ".repeat(depth);
        if meta.as_ref().is_ok_and(|m| m.file_type().is_symlink()) {
            let target = std::fs::read_link(&p)
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            println!("{indent}{name} -> {target}");
        } else if meta.as_ref().is_ok_and(|m| m.is_dir()) {
            println!("{indent}{name}/");
            if depth < 3 && name != "logs" {
                print_tree(&p, depth + 1);
            }
        } else {
            println!("{indent}{name}");
        }
    }
}
