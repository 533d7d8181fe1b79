//! The admin socket `.understudy/admin.sock`, bound so that no other user can ever connect to
//! it: its mode (0600) is its only guard, as the CLI sends no token. A socket is bound with the
//! umask's mode, so it is bound where nobody else can reach it, in a directory made for it alone
//! (0700), made 0600 there, and only then moved into place.

use std::io;
use std::path::{Path, PathBuf};

/// Fault injection for the tests: while the file this names exists, [`bind`] waits (up to a
/// minute) between binding the socket and making it 0600, so a test can see who could reach it.
const INJECT_HOLD_SOCKET: &str = "UNDERSTUDY_INJECT_HOLD_SOCKET";

/// How many names [`private_dir`] tries before it gives up.
const ATTEMPTS: u32 = 16;

/// Bind the socket at `path` inside a fresh private directory next to it, make it 0600, then
/// move it into place and remove the directory. We hold the base dir's lock, so an old socket
/// file at `path` is stale and replaced.
pub(super) fn bind(path: &Path) -> io::Result<tokio::net::UnixListener> {
    let dir = private_dir(path)?;
    let bound = bind_in(&dir, path);
    // Empty once the socket moved; else it holds what failed, which goes with it.
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        tracing::warn!(
            "cannot remove {}, where the admin socket was bound: {e}; remove it by hand",
            dir.display()
        );
    }
    bound
}

/// Bind as `s` in `dir`, make it 0600, move it to `path`.
fn bind_in(dir: &Path, path: &Path) -> io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = dir.join("s");
    let listener = std::os::unix::net::UnixListener::bind(&tmp)?;
    hold_for_tests();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, path)?;
    listener.set_nonblocking(true)?;
    tokio::net::UnixListener::from_std(listener)
}

/// A new directory next to `path`, mode 0700 whatever the umask: `mkdir` makes it or fails, so
/// nothing that was there before (a stale one, or one put there by someone else) is used.
fn private_dir(path: &Path) -> io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let pid = std::process::id();
    for attempt in 0..ATTEMPTS {
        let dir = temporary_dir(path, pid, attempt);
        // The umask can only take bits away from 0700; set it afterwards so it keeps ours.
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "{} temporary directories for the socket (.s<hex>) already exist in {}; remove them",
            ATTEMPTS,
            path.parent().unwrap_or(path).display()
        ),
    ))
}

/// The directory the socket at `path` (`admin.sock`) is first bound in, by process `pid` at its
/// `attempt`: next to it (the move into place is a rename), and with the socket's name `s` in it
/// no longer than `admin.sock`, so it fits in a unix socket address wherever the final path does.
fn temporary_dir(path: &Path, pid: u32, attempt: u32) -> PathBuf {
    // Six hex digits at most: `.s` + 6 + `/s` is the 10 bytes of `admin.sock`.
    let n = pid.wrapping_add(attempt) % 0x100_0000;
    path.with_file_name(format!(".s{n:x}"))
}

/// See [`INJECT_HOLD_SOCKET`].
fn hold_for_tests() {
    let Some(flag) = std::env::var_os(INJECT_HOLD_SOCKET) else {
        return;
    };
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while Path::new(&flag).exists() && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_temporary_socket_path_is_no_longer_than_the_final_one() {
        let path = Path::new("/base/.understudy/admin.sock");
        for pid in [1, 4_194_304, u32::MAX] {
            for attempt in [0, ATTEMPTS - 1] {
                let tmp = temporary_dir(path, pid, attempt).join("s");
                assert_eq!(tmp.parent().unwrap().parent(), path.parent(), "{tmp:?}");
                assert!(tmp.as_os_str().len() <= path.as_os_str().len(), "{tmp:?}");
            }
        }
        assert_ne!(temporary_dir(path, 1, 0), temporary_dir(path, 2, 0));
        assert_ne!(temporary_dir(path, 1, 0), temporary_dir(path, 1, 1));
    }

    #[test]
    fn the_socket_ends_up_0600_and_its_directory_is_gone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        std::fs::write(&path, "stale").unwrap();
        // A directory in the way (stale, or someone else's) is not used.
        let taken = temporary_dir(&path, std::process::id(), 0);
        std::fs::create_dir(&taken).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _listener = rt.block_on(async { bind(&path) }).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let taken = taken.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(left, [taken, "admin.sock".to_string()]);
    }
}
