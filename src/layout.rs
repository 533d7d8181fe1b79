//! Every path and name in the base dir, in one place: version folders, numbered instance
//! folders, the `running`/`testing` symlinks (swapped atomically), archive, rejected, state.

use std::io;
use std::path::{Path, PathBuf};

use semver::Version;

mod holder;

/// Longest path a unix socket can be bound at: `sun_path` (108 bytes on Linux) less its NUL.
pub const MAX_SOCKET_PATH: usize =
    std::mem::size_of::<libc::sockaddr_un>() - std::mem::size_of::<libc::sa_family_t>() - 1;

/// Which part an instance plays; also the name of its symlink in the base dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Serves users.
    Running,
    /// Receives mirrored copies and is scored.
    Testing,
    /// A second instance of running's version, sent the diffed copies so that the differences
    /// running has with itself are known as noise (`NOISE_CANCEL`).
    Secondary,
}

impl Role {
    /// The symlink name and the word used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Running => "running",
            Role::Testing => "testing",
            Role::Secondary => "secondary",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Paths in one base dir for one identifier.
#[derive(Debug, Clone)]
pub struct Layout {
    base: PathBuf,
    identifier: String,
}

impl Layout {
    /// A layout rooted at `base` for builds named `<identifier>-<version>`.
    pub fn new(base: &Path, identifier: &str) -> Layout {
        Layout {
            base: base.to_path_buf(),
            identifier: identifier.to_string(),
        }
    }

    /// The base dir.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The build name prefix.
    pub fn identifier(&self) -> &str {
        &self.identifier
    }

    /// `<identifier>-<version>`: the folder name and the archive stem.
    pub fn version_name(&self, v: &Version) -> String {
        format!("{}-{}", self.identifier, v)
    }

    /// Folder holding one version's artifact and its instance folders.
    pub fn version_dir(&self, v: &Version) -> PathBuf {
        self.base.join(self.version_name(v))
    }

    /// Folder of instance `n` of version `v`.
    pub fn instance_dir(&self, v: &Version, n: u32) -> PathBuf {
        self.version_dir(v).join(n.to_string())
    }

    /// Create the next numbered instance folder (with `logs/json/`) and return its number.
    /// `create_dir` fails on an existing folder, so two starts never share one.
    pub fn create_instance_dir(&self, v: &Version) -> io::Result<(u32, PathBuf)> {
        let vdir = self.version_dir(v);
        let mut n = 1 + std::fs::read_dir(&vdir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(instance_number))
            .max()
            .unwrap_or(0);
        loop {
            let dir = vdir.join(n.to_string());
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    std::fs::create_dir_all(dir.join("logs").join("json"))?;
                    return Ok((n, dir));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Where the `running` or `testing` symlink lives.
    pub fn link(&self, role: Role) -> PathBuf {
        self.base.join(role.as_str())
    }

    /// Point the role's symlink at `target` atomically: a temp link renamed over the old one,
    /// so readers see the old or the new folder, never none. The link is relative to the base.
    pub fn point(&self, role: Role, target: &Path) -> io::Result<()> {
        let rel = target.strip_prefix(&self.base).unwrap_or(target);
        let tmp = self
            .base
            .join(format!(".{}.tmp-{}", role.as_str(), std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(rel, &tmp)?;
        std::fs::rename(&tmp, self.link(role))
    }

    /// Remove the role's symlink (when nothing plays that role), so it never dangles.
    pub fn unpoint(&self, role: Role) -> io::Result<()> {
        match std::fs::remove_file(self.link(role)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Zipped version folders that nothing uses any more.
    pub fn archive_dir(&self) -> PathBuf {
        self.base.join("archive")
    }

    /// The zip of one version.
    pub fn archive_zip(&self, v: &Version) -> PathBuf {
        self.archive_dir()
            .join(format!("{}.zip", self.version_name(v)))
    }

    /// The zip of a build of `v` that never served users though an earlier build of `v` did:
    /// kept apart from [`Layout::archive_zip`], the one a rollback brings back. No version has a
    /// `~` in it, so no other version's archive has this name. A later such build replaces it.
    pub fn unserved_zip(&self, v: &Version) -> PathBuf {
        self.archive_dir()
            .join(format!("{}~unserved.zip", self.version_name(v)))
    }

    /// Version folders and files that were turned away, each with a `reason.json`.
    pub fn rejected_dir(&self) -> PathBuf {
        self.base.join("rejected")
    }

    /// understudy's own bookkeeping (state file).
    pub fn state_dir(&self) -> PathBuf {
        self.base.join(".understudy")
    }

    /// Where a drop waits between the base dir and its version folder while it is installed
    /// (an executable has its folder's name); what a stop leaves here is put back at start.
    pub fn incoming_dir(&self) -> PathBuf {
        self.state_dir().join("incoming")
    }

    /// Rewritten every `HEARTBEAT_EVERY` by the supervisor: a stale file means a stuck one.
    pub fn status_file(&self) -> PathBuf {
        self.state_dir().join("status.json")
    }

    /// The append-only record of which version served users when.
    pub fn history_file(&self) -> PathBuf {
        self.state_dir().join("history.jsonl")
    }

    /// How far event numbers are reserved: the next run numbers on past it, so an event's number is
    /// never given twice across restarts and upgrades.
    pub fn events_seq_file(&self) -> PathBuf {
        self.state_dir().join("events.seq")
    }

    /// The persisted supervisor state, so a restart resumes where it was.
    pub fn state_file(&self) -> PathBuf {
        self.state_dir().join("state.json")
    }

    /// The admin API's unix socket (mode 0600): the CLI's way in, guarded by its file mode. Its
    /// path must fit in [`MAX_SOCKET_PATH`] bytes, checked at start.
    pub fn admin_socket(&self) -> PathBuf {
        self.state_dir().join("admin.sock")
    }

    /// Where the admin API listens, written at start so tools need not know the config.
    pub fn admin_json(&self) -> PathBuf {
        self.state_dir().join("admin.json")
    }

    /// The generated admin bearer token (mode 0600) when `ADMIN_TOKEN` is unset.
    pub fn admin_token(&self) -> PathBuf {
        self.state_dir().join("admin.token")
    }

    /// Held by the one understudy supervising this base dir.
    pub fn lock_file(&self) -> PathBuf {
        self.state_dir().join("lock")
    }

    /// Take the base dir for this process: an exclusive `flock` on `.understudy/lock`, held until
    /// the returned guard is dropped (or the process dies), with our pid written inside so a second
    /// understudy can name who holds it.
    pub fn lock(&self) -> Result<BaseLock, LockError> {
        self.lock_file_as(None)
    }

    /// Take the base dir as handed over by the previous understudy: `file` is its lock file,
    /// opened there and already locked (the lock belongs to the open file, which both share).
    pub fn take_lock(&self, file: std::os::fd::OwnedFd) -> Result<BaseLock, LockError> {
        self.lock_file_as(Some(std::fs::File::from(file)))
    }

    fn lock_file_as(&self, handed: Option<std::fs::File>) -> Result<BaseLock, LockError> {
        use std::io::{Seek, Write};
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.lock_file();
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(self.state_dir()).map_err(io)?;
        let shared = handed.is_some();
        let file = match handed {
            Some(f) => f,
            None => std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(&path)
                .map_err(io)?,
        };
        let lock = self.flock(file, &path)?;
        // Shared from the start when handed over: a failed write below must not unlock it.
        let mut guard = BaseLock {
            lock: std::mem::ManuallyDrop::new(lock),
            shared,
        };
        let file: &mut std::fs::File = &mut guard.lock;
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(guard)
    }

    /// Lock `file` (at `path`), waiting while its holder is on its way out: an understudy just
    /// killed holds the lock until the kernel has torn it down, which a restart right after the
    /// kill must not take for another understudy.
    fn flock(
        &self,
        mut file: std::fs::File,
        path: &Path,
    ) -> Result<nix::fcntl::Flock<std::fs::File>, LockError> {
        use nix::fcntl::{Flock, FlockArg};
        let start = std::time::Instant::now();
        loop {
            let (back, errno) = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(l) => return Ok(l),
                Err(e) => e,
            };
            if errno != nix::errno::Errno::EWOULDBLOCK {
                return Err(LockError::Io {
                    path: path.to_path_buf(),
                    source: errno.into(),
                });
            }
            let pid = std::fs::read_to_string(path).unwrap_or_default();
            let pid = pid.trim().to_string();
            let alive = holder::alive(&pid);
            let limit = match alive {
                true => holder::LIVE_HOLDER_WAIT,
                false => holder::DEAD_HOLDER_WAIT,
            };
            if start.elapsed() >= limit {
                return Err(self.held(pid, alive, path));
            }
            file = back;
            std::thread::sleep(holder::POLL);
        }
    }

    /// Why the lock at `path` cannot be taken: its holder `pid` lives, or what else holds it.
    fn held(&self, pid: String, alive: bool, path: &Path) -> LockError {
        let base = self.base.clone();
        if alive {
            return LockError::Held { base, pid };
        }
        let openers = holder::openers(path, std::process::id());
        LockError::Orphaned {
            base,
            path: path.to_path_buf(),
            pid,
            waited: holder::DEAD_HOLDER_WAIT,
            openers: match openers.is_empty() {
                true => "a process this user cannot look into".into(),
                false => openers,
            },
        }
    }

    /// The properties file copied into each instance, if configured.
    pub fn properties_source(&self, name: &str) -> PathBuf {
        self.base.join(name)
    }
}

/// Proof that this process supervises the base dir; the lock goes with it.
pub struct BaseLock {
    lock: std::mem::ManuallyDrop<nix::fcntl::Flock<std::fs::File>>,
    /// Another process may hold the same open lock file (it was handed over, or handed on): an
    /// unlock would release it for both, so the lock is left to the closing of the file.
    shared: bool,
}

impl BaseLock {
    /// The lock file's descriptor, which an upgrade hands to the next understudy.
    pub fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.lock.as_raw_fd()
    }

    /// Exit without unlocking: the next understudy holds the same lock through its copy.
    pub fn hand_on(mut self) {
        self.shared = true;
    }
}

impl Drop for BaseLock {
    fn drop(&mut self) {
        // SAFETY: taken once, here, and never used again.
        let lock = unsafe { std::mem::ManuallyDrop::take(&mut self.lock) };
        if self.shared {
            // Its descriptor stays open until the process exits, which is next.
            std::mem::forget(lock);
        } else {
            drop(lock);
        }
    }
}

/// Why the base dir could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another understudy supervises it.
    #[error("{base} is already supervised by another understudy (pid {pid}); stop that one first or use another base dir")]
    Held { base: PathBuf, pid: String },
    /// The understudy the lock file names is gone, but something still holds its lock.
    #[error("{base} is still locked {waited:?} after the understudy that locked it (pid {pid}) ended: {path} is held open by {openers}; stop it (a process started by that understudy that kept its lock open), then start again")]
    Orphaned {
        base: PathBuf,
        path: PathBuf,
        pid: String,
        waited: std::time::Duration,
        openers: String,
    },
    /// The lock file could not be opened or written.
    #[error("cannot lock {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// The number of the instance folder named `name` ([`Layout::instance_dir`]), if it is one: the
/// number written as understudy writes it, so a `+1` or `01` someone made is not taken for one.
pub fn instance_number(name: &str) -> Option<u32> {
    name.parse::<u32>().ok().filter(|n| n.to_string() == name)
}

/// Make room in `rejected/` for a new rejection at `dest`: an earlier complete one there (its
/// `reason.json` written: the same version, or file, turned away before) is moved aside to
/// `<name>~<n>`, `n` one past the highest taken, so both are kept, counted among the newest
/// rejected builds kept and deleted oldest first; anything else there (what a rejection cut short
/// left) is removed. No version has a `~` in it, so the name is no other version's. Returns where
/// the earlier rejection went.
pub fn set_aside_rejection(dest: &Path) -> io::Result<Option<PathBuf>> {
    if !std::fs::symlink_metadata(dest.join("reason.json")).is_ok_and(|m| m.is_file()) {
        return match std::fs::remove_dir_all(dest) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(None),
        };
    }
    let (Some(dir), Some(name)) = (dest.parent(), dest.file_name().and_then(|n| n.to_str())) else {
        return Ok(None);
    };
    // Room for `~` and any u32, within a file name's 255 bytes.
    let mut keep = name.len().min(255 - 11);
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    let stem = format!("{}~", &name[..keep]);
    let taken = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix(&stem)?
                .parse::<u32>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    let aside = dir.join(format!("{stem}{}", taken.saturating_add(1)));
    std::fs::rename(dest, &aside)?;
    Ok(Some(aside))
}

/// Free bytes for unprivileged users on the filesystem holding `p`; `None` when it cannot be
/// asked (the disk budget is then skipped rather than guessed).
pub fn free_disk(p: &Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(p).ok()?;
    let available: u64 = st.blocks_available();
    let block: u64 = st.fragment_size();
    Some(available.saturating_mul(block))
}

/// Write `bytes` to `path` atomically and durably (mode 0644 at most): a temp file in the same folder, synced, then
/// renamed, then the folder synced, so a power cut leaves the old file or the new one, never an
/// empty one (ext4's `noauto_da_alloc`, XFS).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    // Readable by all as before, writable by understudy alone whatever the umask (it never
    // adds bits the umask removes).
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // The new file is in place: the folder's sync only hardens the rename, and some filesystems
    // refuse to sync a folder (EINVAL), so its failure is not the write's.
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let _ = std::fs::File::open(dir.unwrap_or(Path::new("."))).and_then(|d| d.sync_all());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_swap_is_relative_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let l = Layout::new(&base, "app");
        let v = Version::parse("1.0.0").unwrap();
        std::fs::create_dir_all(l.version_dir(&v)).unwrap();
        let (n1, d1) = l.create_instance_dir(&v).unwrap();
        let (n2, d2) = l.create_instance_dir(&v).unwrap();
        assert_eq!((n1, n2), (1, 2));
        assert!(d2.join("logs/json").is_dir());
        l.point(Role::Running, &d1).unwrap();
        l.point(Role::Running, &d2).unwrap();
        assert_eq!(
            std::fs::read_link(l.link(Role::Running)).unwrap(),
            PathBuf::from("app-1.0.0/2")
        );
        assert!(l.link(Role::Running).join("logs").is_dir());
        l.unpoint(Role::Running).unwrap();
        assert!(std::fs::symlink_metadata(l.link(Role::Running)).is_err());
    }

    #[test]
    fn one_lock_per_base_dir_and_the_refusal_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path(), "app");
        let held = l.lock().unwrap();
        match l.lock() {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, std::process::id().to_string()),
            other => panic!("a second lock must be refused, got {:?}", other.map(|_| ())),
        }
        drop(held);
        assert!(l.lock().is_ok(), "the lock goes with its holder");
    }
}
