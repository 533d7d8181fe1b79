//! Socket activation: the listening sockets systemd passes from fd 3 on (`LISTEN_FDS`), named
//! `proxy` and `admin` in `LISTEN_FDNAMES`, taken over instead of binding `LISTEN` and
//! `ADMIN_LISTEN`.

use std::os::fd::{FromRawFd, RawFd};

use super::{invalid, SystemdError};

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

/// What a passed socket is for, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Use {
    /// The users' proxy (`LISTEN`).
    Proxy,
    /// The admin API (`ADMIN_LISTEN`).
    Admin,
}

/// The listeners systemd passed, taken over and ready for use.
#[derive(Debug, Default)]
pub struct Passed {
    /// The users' proxy listener, instead of binding `LISTEN`.
    pub proxy: Option<std::net::TcpListener>,
    /// The admin API's TCP listener, instead of binding `ADMIN_LISTEN`.
    pub admin: Option<std::net::TcpListener>,
}

/// What each passed descriptor is for, from `LISTEN_FDS` and `LISTEN_FDNAMES` (pure). One socket
/// not named `admin` is the proxy whatever its name (systemd names it after the `.socket` unit
/// unless `FileDescriptorName=` says otherwise); two must be named `proxy` and `admin`.
pub(super) fn plan(fds: &str, names: Option<&str>) -> Result<Vec<(RawFd, Use)>, SystemdError> {
    let n: usize = match fds.trim().parse() {
        Ok(n @ 1..=2) => n,
        _ => {
            return Err(invalid(
                "LISTEN_FDS",
                fds,
                "1 or 2 sockets: the proxy's and, optionally, the admin API's",
            ))
        }
    };
    let expected = "one name per socket in LISTEN_FDS, proxy or admin (FileDescriptorName= in the .socket unit)";
    let names: Vec<&str> = match names {
        Some(s) => s.split(':').collect(),
        None if n == 1 => vec![""],
        None => return Err(invalid("LISTEN_FDNAMES", "(unset)", expected)),
    };
    if names.len() != n {
        return Err(invalid(
            "LISTEN_FDNAMES",
            &names.join(":"),
            &format!("{n} names: {expected}"),
        ));
    }
    let uses: Vec<Use> = match names.as_slice() {
        ["admin"] => vec![Use::Admin],
        [_] => vec![Use::Proxy],
        ["proxy", "admin"] => vec![Use::Proxy, Use::Admin],
        ["admin", "proxy"] => vec![Use::Admin, Use::Proxy],
        _ => return Err(invalid("LISTEN_FDNAMES", &names.join(":"), expected)),
    };
    Ok((FIRST_FD..).zip(uses).collect())
}

/// Take over the planned descriptors: each must be a listening TCP socket; it is made
/// close-on-exec (systemd passes it inheritable), so no child or hook holds it.
///
/// # Safety
/// Each descriptor must be one systemd passed to this process and that nothing else owns; the
/// returned listeners own (and close) them.
pub(super) unsafe fn take(plan: &[(RawFd, Use)]) -> Result<Passed, SystemdError> {
    let mut passed = Passed::default();
    for &(fd, what) in plan {
        check_listening_tcp(fd)?;
        // SAFETY: a valid descriptor (checked above); F_SETFD only changes its flags.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            return Err(bad_fd(fd, &std::io::Error::last_os_error().to_string()));
        }
        // SAFETY: the caller hands this descriptor over to us; the listener becomes its owner.
        let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        match what {
            Use::Proxy => passed.proxy = Some(listener),
            Use::Admin => passed.admin = Some(listener),
        }
    }
    Ok(passed)
}

/// Whether `fd` is an open, listening IPv4 or IPv6 stream socket.
fn check_listening_tcp(fd: RawFd) -> Result<(), SystemdError> {
    let opt = |name| {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `value` and `len` are valid for writes of an int, as SOL_SOCKET options need.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                name,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        (r == 0).then_some(value)
    };
    match (
        opt(libc::SO_DOMAIN),
        opt(libc::SO_TYPE),
        opt(libc::SO_ACCEPTCONN),
    ) {
        (Some(libc::AF_INET | libc::AF_INET6), Some(libc::SOCK_STREAM), Some(1)) => Ok(()),
        (None, _, _) => Err(bad_fd(fd, "not an open socket")),
        (Some(libc::AF_INET | libc::AF_INET6), Some(libc::SOCK_STREAM), _) => {
            Err(bad_fd(fd, "a TCP socket that is not listening"))
        }
        _ => Err(bad_fd(fd, "not a TCP stream socket")),
    }
}

fn bad_fd(fd: RawFd, what: &str) -> SystemdError {
    SystemdError::Socket {
        fd,
        what: what.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_socket_is_the_proxy_unless_named_admin() {
        assert_eq!(plan("1", None).unwrap(), vec![(3, Use::Proxy)]);
        assert_eq!(
            plan("1", Some("understudy.socket")).unwrap(),
            vec![(3, Use::Proxy)]
        );
        assert_eq!(plan("1", Some("admin")).unwrap(), vec![(3, Use::Admin)]);
    }

    #[test]
    fn two_sockets_go_by_their_names_in_either_order() {
        assert_eq!(
            plan("2", Some("proxy:admin")).unwrap(),
            vec![(3, Use::Proxy), (4, Use::Admin)]
        );
        assert_eq!(
            plan(" 2 ", Some("admin:proxy")).unwrap(),
            vec![(3, Use::Admin), (4, Use::Proxy)]
        );
    }

    #[test]
    fn bad_counts_and_names_name_the_variable_and_value() {
        for (fds, names, key) in [
            ("0", None, "LISTEN_FDS"),
            ("3", None, "LISTEN_FDS"),
            ("x", None, "LISTEN_FDS"),
            ("99999999999999999999", None, "LISTEN_FDS"),
            ("2", None, "LISTEN_FDNAMES"),
            ("2", Some("proxy:proxy"), "LISTEN_FDNAMES"),
            ("2", Some("proxy:web"), "LISTEN_FDNAMES"),
            ("1", Some("proxy:admin"), "LISTEN_FDNAMES"),
        ] {
            let e = plan(fds, names).unwrap_err().to_string();
            assert!(e.contains(key), "{fds} {names:?}: {e}");
        }
    }

    #[test]
    fn a_descriptor_that_is_not_a_listening_tcp_socket_is_refused() {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open("/dev/null").unwrap();
        let e = check_listening_tcp(file.as_raw_fd()).unwrap_err();
        assert!(e.to_string().contains("not an open socket"), "{e}");
        let connected = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let e = check_listening_tcp(connected.as_raw_fd()).unwrap_err();
        assert!(e.to_string().contains("not a TCP stream socket"), "{e}");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        check_listening_tcp(listener.as_raw_fd()).unwrap();
    }
}
