//! The smallest inputs the properties (`properties.rs`) found against the first version of the engine, byte
//! for byte, kept as tests of their own (each failed before its fix).

use super::*;

/// RFC 9112 §3.2.1: an empty path is sent as `/`, so `http://a?q` is `/?q`. The app got
/// `GET ?q HTTP/1.1` (which understudy itself refuses as a target) and the mirror's
/// `copy_of` gave no copy.
#[test]
fn absolute_form_without_a_path() {
    let (_, out) = parse_request(b"GET http://a?q HTTP/1.1\r\n\r\n", PEER);
    assert_eq!(
        text(&out),
        "GET /?q HTTP/1.1\r\nHost: a\r\nx-forwarded-for: 192.0.2.1\r\n\r\n"
    );
}

/// `Connection: host` made understudy drop the only `Host` of an HTTP/1.1 request it
/// accepted: the app got a head RFC 9112 §3.2 says it must refuse.
#[test]
fn connection_naming_host() {
    let (_, out) = parse_request(
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: host\r\n\r\n",
        PEER,
    );
    assert!(
        matches!(parse_request(&out, PEER).0, Parsed::Request(_)),
        "{}",
        text(&out)
    );
}

/// Request smuggling: the framing header went, the body was relayed as framed, and the app
/// read the body's bytes as its next request.
#[test]
fn connection_naming_request_framing() {
    for raw in [
        &b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nConnection: content-length\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: transfer-encoding\r\n\r\n",
    ] {
        let (Parsed::Request(r), out) = parse_request(raw, PEER) else {
            panic!("{}", text(raw));
        };
        let (Parsed::Request(again), _) = parse_request(&out, PEER) else {
            panic!("{}", text(&out));
        };
        assert_eq!(again.body, r.body, "{} -> {}", text(raw), text(&out));
    }
}

/// The same for answers: the user was told neither length nor chunking while understudy
/// relayed a length- or chunk-delimited body and kept the connection open.
#[test]
fn connection_naming_answer_framing() {
    for raw in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: content-length\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: transfer-encoding\r\n\r\n",
    ] {
        let mut out = Vec::new();
        let a = answer::parse(raw, Asker::default(), &mut out)
            .unwrap()
            .unwrap();
        let again = answer::parse(&out, Asker::default(), &mut Vec::new())
            .unwrap()
            .unwrap();
        assert_eq!(again.framing, a.framing, "{} -> {}", text(raw), text(&out));
    }
}
