//! The canary phase on the request path: which users a step's share is (a stable hash of the
//! sticky key compared with the share), and the served answers of both sides, sent to the scorer
//! so each step is judged on real answers.

use std::net::IpAddr;

use tokio::sync::mpsc;

use crate::config::Sticky;
pub use crate::score::canary::{Served, Side};

/// Places a user can take: a share is a number of them (basis points).
pub const PLACES: u32 = 10_000;

/// Served answers waiting for the scorer; when full, answers are not counted (the user is served
/// either way).
pub const SERVED_QUEUE: usize = 4096;

/// The sender the proxy threads share.
pub type ServedTx = mpsc::Sender<Served>;

/// The user's place (0..[`PLACES`]) by the sticky key in the request head `head`, or None when
/// the request lacks the key (it then goes to running).
pub fn place(sticky: &Sticky, head: &[u8], peer: Option<IpAddr>) -> Option<u32> {
    let hash = match sticky {
        Sticky::Ip => match peer? {
            IpAddr::V4(ip) => fnv1a(&ip.octets()),
            IpAddr::V6(ip) => fnv1a(&ip.octets()),
        },
        Sticky::Header(name) => fnv1a(header(head, name.as_str().as_bytes())?),
        Sticky::Cookie(name) => fnv1a(cookie(head, name.as_bytes())?),
    };
    Some((hash % u64::from(PLACES)) as u32)
}

/// The path of the request line at the start of `head`, without its query.
pub fn path_of(head: &[u8]) -> &str {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let target = line.split(|&b| b == b' ').nth(1).unwrap_or(b"/");
    let path = target.split(|&b| b == b'?').next().unwrap_or(b"/");
    std::str::from_utf8(path).unwrap_or("/")
}

/// FNV-1a: stable across runs and builds, so a user keeps its place after a restart.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The header lines of `head` (after the request line) as (name, value), value trimmed.
fn fields(head: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    head.split(|&b| b == b'\n').skip(1).filter_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        Some((&line[..colon], line[colon + 1..].trim_ascii()))
    })
}

/// The first non-empty value of header `name` (lower case).
fn header<'a>(head: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    fields(head)
        .find(|(n, v)| n.eq_ignore_ascii_case(name) && !v.is_empty())
        .map(|(_, v)| v)
}

/// The value of cookie `name` in any `Cookie` header.
fn cookie<'a>(head: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    fields(head)
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"cookie"))
        .flat_map(|(_, v)| v.split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            (&pair[..eq] == name && eq + 1 < pair.len()).then(|| &pair[eq + 1..])
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderName;

    const HEAD: &[u8] =
        b"POST /api/orders?x=1 HTTP/1.1\r\nhost: a\r\nX-User: u17\r\ncookie: a=1; sid=abc\r\n\r\n";

    #[test]
    fn the_key_is_found_and_its_place_is_stable() {
        let by_header = Sticky::Header(HeaderName::from_static("x-user"));
        let p = place(&by_header, HEAD, None).unwrap();
        assert!(p < PLACES);
        assert_eq!(
            place(&by_header, HEAD, None),
            Some(p),
            "the same user, the same place"
        );
        assert_eq!(p, (fnv1a(b"u17") % 10_000) as u32);
        let by_cookie = Sticky::Cookie("sid".into());
        assert_eq!(
            place(&by_cookie, HEAD, None),
            Some((fnv1a(b"abc") % 10_000) as u32)
        );
        assert_eq!(place(&Sticky::Cookie("none".into()), HEAD, None), None);
        assert_eq!(
            place(&Sticky::Header(HeaderName::from_static("x-no")), HEAD, None),
            None
        );
        assert_eq!(place(&Sticky::Ip, HEAD, None), None);
        assert!(place(&Sticky::Ip, HEAD, Some("10.0.0.1".parse().unwrap())).is_some());
        assert_eq!(path_of(HEAD), "/api/orders");
    }

    #[test]
    fn places_spread_evenly() {
        let by_header = Sticky::Header(HeaderName::from_static("x-user"));
        let under_20 = (0..2000)
            .filter(|i| {
                let head = format!("GET / HTTP/1.1\r\nx-user: user-{i}\r\n\r\n");
                place(&by_header, head.as_bytes(), None).unwrap() < 2000
            })
            .count();
        assert!(
            (300..500).contains(&under_20),
            "{under_20} of 2000 under 20 %"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_head_is_placed_without_a_panic(head in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let sticky = [Sticky::Ip, Sticky::Header(HeaderName::from_static("x-user")), Sticky::Cookie("sid".into())];
            for s in &sticky {
                if let Some(p) = place(s, &head, Some("::1".parse().unwrap())) {
                    proptest::prop_assert!(p < PLACES);
                }
            }
            let _ = path_of(&head);
        }
    }
}
