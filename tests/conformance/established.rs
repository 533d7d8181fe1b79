//! How many TCP connections on this machine are ESTABLISHED at a local port, asked of the kernel
//! through sock_diag (netlink), which filters by state itself. `/proc/net/tcp` lists every socket,
//! TIME_WAIT ones included: after the suite's floods that was 30 000 lines (45 ms of kernel time,
//! more to parse) for each call, and the harness asks after every case, so the conformance halves
//! took 40-50 s instead of 12. `/proc/net/tcp` stays the fallback where netlink is refused.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `SOCK_DIAG_BY_FAMILY` (linux/sock_diag.h): the request, and the type of each answer.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `TCP_ESTABLISHED` (linux/tcp_states.h), as a bit of `idiag_states`.
const ESTABLISHED: u32 = 1 << 1;

/// `struct inet_diag_sockid` (linux/inet_diag.h): ports and addresses in network order.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct SockId {
    sport: u16,
    dport: u16,
    src: [u32; 4],
    dst: [u32; 4],
    interface: u32,
    cookie: [u32; 2],
}

/// `struct inet_diag_req_v2`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Request {
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    id: SockId,
}

/// A netlink header and the request, as one datagram.
#[repr(C)]
struct Message {
    header: libc::nlmsghdr,
    request: Request,
}

// The kernel's sizes: `inet_diag_req_v2` is 56 bytes, with a 16-byte header before it.
const _: () = assert!(std::mem::size_of::<Request>() == 56);
const _: () = assert!(std::mem::size_of::<Message>() == 72);

/// Connections in state ESTABLISHED whose local port is `port`, on IPv4 (the relay's family).
pub fn established_at(port: u16) -> usize {
    // The relay listens on 127.0.0.1: an IPv6 socket of another test may share the port number.
    dump(libc::AF_INET as u8, port).unwrap_or_else(|e| {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| eprintln!("sock_diag refused ({e}): counting from /proc/net/tcp"));
        from_table("/proc/net/tcp", port)
    })
}

/// Ask for every ESTABLISHED TCP socket of `family` and count those at local `port`.
fn dump(family: u8, port: u16) -> std::io::Result<usize> {
    // SAFETY: plain socket(2); the descriptor is owned by `fd` at once.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let message = Message {
        header: libc::nlmsghdr {
            nlmsg_len: std::mem::size_of::<Message>() as u32,
            nlmsg_type: SOCK_DIAG_BY_FAMILY,
            nlmsg_flags: (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16,
            nlmsg_seq: 1,
            nlmsg_pid: 0,
        },
        request: Request {
            family,
            protocol: libc::IPPROTO_TCP as u8,
            ext: 0,
            pad: 0,
            states: ESTABLISHED,
            // The kernel skips sockets at other local ports itself (they are counted here too).
            id: SockId {
                sport: port.to_be(),
                ..SockId::default()
            },
        },
    };
    // SAFETY: `message` is a live repr(C) value of the size passed; send(2) only reads it. With
    // no address, a netlink socket sends to the kernel.
    let sent = unsafe {
        libc::send(
            fd.as_raw_fd(),
            (&message as *const Message).cast(),
            std::mem::size_of::<Message>(),
            0,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    count_answers(&fd, port)
}

/// Read the dump's datagrams until `NLMSG_DONE`, counting the sockets at local `port`.
fn count_answers(fd: &OwnedFd, port: u16) -> std::io::Result<usize> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut count = 0;
    loop {
        // SAFETY: `buf` is a live buffer of the length passed; recv(2) writes at most that much.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut at = 0;
        let n = n as usize;
        while at + 16 <= n {
            let word = |i: usize| u32::from_ne_bytes(buf[i..i + 4].try_into().unwrap());
            let len = word(at) as usize;
            let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
            if len < 16 || at + len > n {
                return Err(std::io::Error::other(
                    "a netlink message overruns its datagram",
                ));
            }
            match i32::from(kind) {
                // Its payload is the dump's status: negative when it stopped early.
                libc::NLMSG_DONE if len >= 20 && (word(at + 16) as i32) < 0 => {
                    return Err(std::io::Error::other("sock_diag stopped early"));
                }
                libc::NLMSG_DONE => return Ok(count),
                libc::NLMSG_ERROR => return Err(std::io::Error::other("sock_diag refused")),
                _ if kind == SOCK_DIAG_BY_FAMILY && len >= 16 + 6 => {
                    // inet_diag_msg: family, state, timer, retrans, then the sockid (sport first).
                    let sport = u16::from_be_bytes([buf[at + 20], buf[at + 21]]);
                    count += usize::from(sport == port);
                }
                _ => {}
            }
            at += (len + 3) & !3;
        }
    }
}

/// ESTABLISHED sockets at local `port` in one of `/proc/net/tcp{,6}`, for where netlink is refused.
fn from_table(path: &str, port: u16) -> usize {
    let Ok(table) = std::fs::read_to_string(path) else {
        return 0;
    };
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f.get(1).and_then(|a| a.rsplit(':').next());
            f.get(3) == Some(&"01")
                && local_port.and_then(|p| u16::from_str_radix(p, 16).ok()) == Some(port)
        })
        .count()
}

/// Counted per family: a listener on `::1` may share its port number with another test's
/// socket on `127.0.0.1` (binding port 0 only avoids ports whose addresses conflict).
#[test]
fn netlink_counts_what_proc_lists() {
    let families = [
        ("127.0.0.1", libc::AF_INET, "/proc/net/tcp"),
        ("::1", libc::AF_INET6, "/proc/net/tcp6"),
    ];
    for (host, family, table) in families {
        let Ok(listener) = std::net::TcpListener::bind((host, 0)) else {
            continue; // no IPv6 loopback here
        };
        let port = listener.local_addr().unwrap().port();
        let clients: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect((host, port)).unwrap())
            .collect();
        let accepted: Vec<_> = (0..3).map(|_| listener.accept().unwrap().0).collect();
        // The three accepted ends are at `port`; the clients' ends are at ports of their own.
        assert_eq!(from_table(table, port), 3, "{host}");
        match dump(family as u8, port) {
            Ok(n) => assert_eq!(n, 3, "{host}"),
            // Where netlink is refused, `established_at` counts from /proc, as it must.
            Err(e) => eprintln!("sock_diag refused here: {e}"),
        }
        drop((clients, accepted));
    }
}
