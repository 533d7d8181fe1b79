//! Notices builds dropped into the base dir, whether they arrive by `cp` (written in place) or by
//! an atomic `mv`, and reports each once it is complete: unchanged for `SETTLE_TIME` and not being
//! written ([`Writes`]: inotify, whoever the writer runs as, and `/proc`). inotify pokes a
//! rescan; a periodic rescan is the backstop.

mod writes;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use notify::Watcher as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::artifact::{checksum_name, checksum_of, parse_name, ArtifactName, NameError};
pub use writes::{Writes, QUIET_WRITER_LIMIT};

/// How often the base dir is rescanned even without an inotify event.
const RESCAN_EVERY: Duration = Duration::from_millis(250);

/// A complete build in the base dir, ready to be installed.
#[derive(Debug, Clone, PartialEq)]
pub struct Dropped {
    /// Where it lies now.
    pub path: PathBuf,
    /// Its parsed name.
    pub name: ArtifactName,
}

/// What the watcher tells the supervisor.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// A complete build.
    Build(Dropped),
    /// A file named like a build that is not one understudy takes (see
    /// [`crate::events::Event::BuildIgnored`]), once per name while it lies there.
    Ignored { file: String, reason: String },
}

struct Candidate {
    len: u64,
    mtime: Option<SystemTime>,
    since: Instant,
    reported: bool,
}

/// Watch `base` for builds of `identifier` and send each complete one on `tx`, until `cancel`.
/// `ignore` names files in the base dir that are not builds (the properties file); `writes`
/// learns from inotify which files are being written.
pub async fn run(
    base: PathBuf,
    identifier: String,
    ignore: Vec<String>,
    settle: Duration,
    writes: Writes,
    tx: mpsc::Sender<Found>,
    cancel: CancellationToken,
) {
    let (poke_tx, mut poke_rx) = mpsc::channel::<()>(1);
    let seen = writes.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        use notify::event::{AccessKind, AccessMode, EventKind};
        // Opening or reading files (our own rescan opens the dir) is no news; a write that
        // closes is. Anything else (create, modify, rename, remove) may be a build.
        if let Ok(ev) = &res {
            if ev.need_rescan() {
                seen.forget_all(); // events were lost: what was open may have closed unseen
            }
            seen.note(ev.kind, &ev.paths, Instant::now());
            if matches!(ev.kind, EventKind::Access(k) if k != AccessKind::Close(AccessMode::Write))
            {
                return;
            }
        }
        // Never block inotify's thread: one pending poke is enough to trigger a rescan.
        let _ = poke_tx.try_send(());
    })
    .and_then(|mut w| {
        w.watch(&base, notify::RecursiveMode::NonRecursive)
            .map(|()| w)
    });
    let watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(
                "cannot watch {} ({e}); rescanning every {RESCAN_EVERY:?} instead",
                base.display()
            );
            None
        }
    };

    let mut candidates: HashMap<PathBuf, Candidate> = HashMap::new();
    let mut logged: HashSet<String> = HashSet::new();
    let mut tick = tokio::time::interval(RESCAN_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
            Some(()) = poke_rx.recv() => {}
        }
        let settings = Settings {
            identifier: &identifier,
            ignore: &ignore,
            settle,
            writes: &writes,
        };
        for d in scan(&base, &settings, &mut candidates, &mut logged) {
            if tx.send(d).await.is_err() {
                return;
            }
        }
    }
    drop(watcher);
}

/// Whether a name understudy cannot take was most likely meant as a build, so an operator is
/// told (an event), not only the log: ours with a version that is not x.y.z, or a `.jar` or
/// `.zip` of another name. Notes and other files in the base dir stay a line in the log.
fn looks_like_a_build(e: &NameError, file_name: &str) -> bool {
    let archive = |ext: &str| {
        let (name, ext) = (file_name.as_bytes(), ext.as_bytes());
        name.len() > ext.len() && name[name.len() - ext.len()..].eq_ignore_ascii_case(ext)
    };
    match e {
        NameError::BadVersion { .. } | NameError::OtherKind { .. } => true,
        NameError::OtherIdentifier(..) => archive(".jar") || archive(".zip"),
        NameError::InProgress(_) => false,
    }
}

/// What a [`scan`] looks for, and how it tells a build is complete.
struct Settings<'a> {
    identifier: &'a str,
    /// Files in the base dir that are not builds.
    ignore: &'a [String],
    settle: Duration,
    writes: &'a Writes,
}

/// One pass over the base dir: the builds complete now, each reported once. Files that are gone
/// are forgotten, with what was logged about them.
fn scan(
    base: &Path,
    settings: &Settings,
    candidates: &mut HashMap<PathBuf, Candidate>,
    logged: &mut HashSet<String>,
) -> Vec<Found> {
    let mut ready = Vec::new();
    let Ok(entries) = std::fs::read_dir(base) else {
        return ready;
    };
    let mut pass = Scan {
        identifier: settings.identifier,
        ignore: settings.ignore,
        settle: settings.settle,
        writes: settings.writes,
        candidates,
        logged,
        seen: HashSet::new(),
        ignored: Vec::new(),
    };
    let mut present = HashSet::new();
    for entry in entries.filter_map(|e| e.ok()) {
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        let Some(file_name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        present.insert(file_name.clone());
        if let Some(name) = pass.build_name(&entry.path(), &file_name, &meta) {
            ready.extend(pass.complete(entry.path(), name, &meta).map(Found::Build));
        }
    }
    let Scan {
        candidates,
        logged,
        seen,
        ignored,
        ..
    } = pass;
    // Builds found together (those waiting at start, above all) go oldest first: the older
    // serves and the newer is tested against it, whatever order the directory lists them in.
    ready.sort_by(|a, b| match (a, b) {
        (Found::Build(a), Found::Build(b)) => a.name.version.cmp(&b.name.version),
        _ => std::cmp::Ordering::Equal,
    });
    ready.extend(ignored);
    candidates.retain(|p, _| seen.contains(p));
    // Forget what was said about files that are gone (a key is a file name, or a checksum's
    // name and why its build waits), or every build that waited for its checksum would stay here.
    logged.retain(|k| k.split('\0').next().is_some_and(|f| present.contains(f)));
    ready
}

/// What one [`scan`] works with: its settings, the state kept between passes, and what it saw.
struct Scan<'a> {
    identifier: &'a str,
    ignore: &'a [String],
    settle: Duration,
    writes: &'a Writes,
    candidates: &'a mut HashMap<PathBuf, Candidate>,
    logged: &'a mut HashSet<String>,
    /// The files tracked in this pass; the candidates not seen are forgotten.
    seen: HashSet<PathBuf>,
    /// Files named like builds that are not, first seen in this pass.
    ignored: Vec<Found>,
}

impl Scan<'_> {
    /// The parsed name of a build of ours at `path`. A checksum is tracked instead; a symlink,
    /// an ignored file or a stray name is skipped, and a stray name is logged once.
    fn build_name(
        &mut self,
        path: &Path,
        file_name: &str,
        meta: &std::fs::Metadata,
    ) -> Option<ArtifactName> {
        if checksum_of(file_name, self.identifier).is_some() {
            // A build's `.sha256` travels with its build: never a build, never a stray name.
            if meta.is_symlink() {
                if self.logged.insert(file_name.to_string()) {
                    tracing::warn!(
                        "ignoring {}: it is a symlink, and a checksum must be a regular file; cp or mv the checksum itself",
                        path.display()
                    );
                }
            } else if meta.is_file() {
                self.seen.insert(path.to_path_buf());
                track(self.candidates, path.to_path_buf(), meta, Instant::now());
            }
            return None;
        }
        if meta.is_symlink() && parse_name(file_name, self.identifier).is_ok() {
            if self.logged.insert(file_name.to_string()) {
                let why = "it is a symlink, and a build must be a regular file; cp or mv the build itself";
                tracing::warn!("ignoring {}: {why}", path.display());
                // Named as a build, so meant as one: the operator is told, not only the log.
                self.ignored.push(Found::Ignored {
                    file: file_name.to_string(),
                    reason: format!("{why}; it is left where it is"),
                });
            }
            return None;
        }
        if !meta.is_file() || self.ignore.iter().any(|i| i == file_name) {
            return None;
        }
        match parse_name(file_name, self.identifier) {
            Ok(n) => Some(n),
            Err(NameError::InProgress(_)) => None,
            Err(e) => {
                if self.logged.insert(file_name.to_string()) {
                    tracing::warn!("ignoring {}: {e}", path.display());
                    if looks_like_a_build(&e, file_name) {
                        self.ignored.push(Found::Ignored {
                            file: file_name.to_string(),
                            reason: format!("{e}; it is left where it is"),
                        });
                    }
                }
                None
            }
        }
    }

    /// The build at `path`, once it is complete and not yet reported (or asked for again):
    /// unchanged for the settle time, not being written, and its checksum (if one lies beside
    /// it) complete too.
    fn complete(
        &mut self,
        path: PathBuf,
        name: ArtifactName,
        meta: &std::fs::Metadata,
    ) -> Option<Dropped> {
        self.seen.insert(path.clone());
        let (len, mtime) = (meta.len(), meta.modified().ok());
        let now = Instant::now();
        let c = self.candidates.entry(path.clone()).or_insert(Candidate {
            len,
            mtime,
            since: now,
            reported: false,
        });
        if c.len != len || c.mtime != mtime {
            *c = Candidate {
                len,
                mtime,
                since: now,
                reported: false,
            };
            return None;
        }
        if self.writes.take_report_again(&path) {
            (c.reported, c.since) = (false, now);
        }
        if c.reported || now.duration_since(c.since) < self.settle {
            return None;
        }
        let writing = format!("{}\0writing", name.file_name);
        if self.writes.being_written(&path, now) {
            c.since = now;
            if self.logged.insert(writing) {
                tracing::info!(
                    "{} is still being written: it is installed once its writer closes it",
                    path.display()
                );
            }
            return None;
        }
        // A checksum dropped together with the build must be complete too, or a build would be
        // judged against half a digest.
        let sum = path.with_file_name(checksum_name(&name.file_name));
        let sum_waits = checksum_incomplete(&sum, self.candidates, self.settle, self.writes, now);
        if let Some(waiting) = sum_waits {
            if self
                .logged
                .insert(format!("{}\0waiting", checksum_name(&name.file_name)))
            {
                tracing::info!(
                    "{} waits for its checksum {}: {waiting}",
                    path.display(),
                    sum.display()
                );
            }
            return None;
        }
        let c = self.candidates.get_mut(&path)?;
        c.reported = true;
        // Written again later, it is news again.
        self.logged.remove(&writing);
        tracing::info!("build {} is complete ({} bytes)", path.display(), len);
        Some(Dropped { path, name })
    }
}

/// Note `path`'s size and mtime; a change restarts its settle time.
fn track(
    candidates: &mut HashMap<PathBuf, Candidate>,
    path: PathBuf,
    meta: &std::fs::Metadata,
    now: Instant,
) {
    let (len, mtime) = (meta.len(), meta.modified().ok());
    let c = candidates.entry(path).or_insert(Candidate {
        len,
        mtime,
        since: now,
        reported: false,
    });
    if c.len != len || c.mtime != mtime {
        *c = Candidate {
            len,
            mtime,
            since: now,
            reported: false,
        };
    }
}

/// Why the checksum file at `sum` is not complete yet, if one lies there: it changed lately, or
/// is still being written. `None` when there is none or it is complete.
fn checksum_incomplete(
    sum: &Path,
    candidates: &mut HashMap<PathBuf, Candidate>,
    settle: Duration,
    writes: &Writes,
    now: Instant,
) -> Option<&'static str> {
    let meta = std::fs::symlink_metadata(sum)
        .ok()
        .filter(|m| m.is_file())?;
    track(candidates, sum.to_path_buf(), &meta, now);
    let c = candidates.get(sum)?;
    if now.duration_since(c.since) < settle {
        return Some("it changed less than SETTLE_TIME ago");
    }
    if writes.being_written(sum, now) {
        return Some("it is still being written");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn what_was_logged_about_a_file_is_forgotten_once_it_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        let (mut candidates, mut logged) = (HashMap::new(), HashSet::new());
        let writes = Writes::default();
        let settings = Settings {
            identifier: "app",
            ignore: &[],
            settle: Duration::ZERO,
            writes: &writes,
        };
        for minor in 0..3 {
            // A stray name, and a build whose checksum is still being written: each logged once.
            let build = format!("app-1.{minor}.0");
            let stray = format!("app-stray{minor}");
            std::fs::write(base.join(&stray), b"x").unwrap();
            std::fs::write(base.join(&build), b"build").unwrap();
            let sum_path = base.join(checksum_name(&build));
            let mut sum = std::fs::File::create(&sum_path).unwrap();
            sum.write_all(b"ab").unwrap();
            let found = scan(base, &settings, &mut candidates, &mut logged);
            let told = |found: &[Found]| {
                let ignored =
                    |f: &Found| matches!(f, Found::Ignored { file, .. } if *file == stray);
                found.len() == 1 && ignored(&found[0])
            };
            assert!(told(&found), "the stray is told once: {found:?}");
            assert!(scan(base, &settings, &mut candidates, &mut logged).is_empty());
            assert_eq!(logged.len(), 2, "{logged:?}");
            // The build and its checksum are taken away, the stray is removed.
            drop(sum);
            for p in [base.join(&stray), base.join(&build), sum_path] {
                std::fs::remove_file(p).unwrap();
            }
            assert!(scan(base, &settings, &mut candidates, &mut logged).is_empty());
            assert!(
                logged.is_empty(),
                "kept after the files are gone: {logged:?}"
            );
        }
    }

    #[test]
    fn only_names_meant_as_builds_are_told() {
        let told = |name: &str| {
            let e = parse_name(name, "app").unwrap_err();
            looks_like_a_build(&e, name)
        };
        for meant in [
            "app-v1.2.0.jar",
            "app-1.9",
            "app-latest",
            "other-1.0.0.JAR",
            "app.zip",
            "приложение.jar",
        ] {
            assert!(told(meant), "{meant}");
        }
        for not in [
            "notes.txt",
            "README",
            "other-1.0.0",
            "backup.tar.gz",
            ".app-1.0.0.tmp",
            "zip",
            "я",
        ] {
            assert!(!told(not), "{not}");
        }
    }
}
