//! The corpus on connections: HTTP/1.0 on either side, pipelining, and apps that fail, stall,
//! close or reset, with pooled connections gone stale.

use super::case::*;

/// HTTP/1.0 clients: forwarded as HTTP/1.1, answered as RFC 9112 §9.3 and Appendix C.2.2 say.
pub fn http10_cases(relay_port: u16) -> Vec<Case> {
    let closing_ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nconnection: close\r\n\r\nok";
    let one = |name, request: &str, forwarded: &str| {
        relayed(name, request, forwarded, OK, closing_ok).with([Step::Closed])
    };
    vec![
        one(
            "HTTP/1.0 with Host: forwarded as HTTP/1.1, the client closed after",
            "GET /old HTTP/1.0\r\nHost: x\r\n\r\n",
            &fwd("GET /old HTTP/1.1\r\nHost: x\r\n"),
        ),
        one(
            "HTTP/1.0 without Host: the instance's host:port goes first",
            "GET /old HTTP/1.0\r\nUser-Agent: old\r\n\r\n",
            &fwd(&format!(
                "GET /old HTTP/1.1\r\nHost: 127.0.0.1:{relay_port}\r\nUser-Agent: old\r\n"
            )),
        ),
        one(
            "HTTP/1.0 POST with a body",
            "POST /p HTTP/1.0\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
            &(fwd("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n") + "abc"),
        ),
        one(
            "HTTP/1.0 with an absolute-form target and no Host",
            "GET http://example.com:8080/p HTTP/1.0\r\n\r\n",
            &fwd("GET /p HTTP/1.1\r\nHost: example.com:8080\r\n"),
        ),
        Case::new("HTTP/1.0 keep-alive: connection: keep-alive, then a second request").with([
            send("GET /a HTTP/1.0\r\nConnection: keep-alive\r\nHost: x\r\n\r\n"),
            app_gets(fwd("GET /a HTTP/1.1\r\nHost: x\r\n")),
            app_sends(OK),
            client_gets("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nconnection: keep-alive\r\n\r\nok"),
            send("GET /b HTTP/1.0\r\nHost: x\r\n\r\n"),
            app_gets(fwd("GET /b HTTP/1.1\r\nHost: x\r\n")),
            app_sends(OK),
            client_gets(closing_ok),
            Step::Closed,
        ]),
        relayed(
            "HTTP/1.0 HEAD: the head alone, then closed",
            "HEAD / HTTP/1.0\r\nHost: x\r\n\r\n",
            &fwd("HEAD / HTTP/1.1\r\nHost: x\r\n"),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nconnection: close\r\n\r\n",
        )
        .with([Step::Closed]),
    ]
}

/// HTTP/1.0 on either side: chunked answers decoded for 1.0 clients, 1.0 status lines rewritten.
pub fn http10_more_cases() -> Vec<Case> {
    let chunked =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n\
                   5\r\nhello\r\n6;e=1\r\n world\r\n0\r\nX-T: t\r\n\r\n";
    let decoded =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nconnection: close\r\n\r\nhello world";
    vec![
        relayed(
            "a chunked answer to an HTTP/1.0 client is decoded and close-delimited",
            "GET / HTTP/1.0\r\nHost: x\r\n\r\n",
            &get_fwd(),
            chunked,
            decoded,
        )
        .with([Step::Closed]),
        relayed(
            "a chunked answer to an HTTP/1.0 keep-alive client: decoded, then closed",
            "GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
            &get_fwd(),
            chunked,
            decoded,
        )
        .with([Step::Closed]),
        Case::new("an answer without a length to an HTTP/1.0 keep-alive client: closed").with([
            send("GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"),
            app_gets(get_fwd()),
            app_sends("HTTP/1.1 200 OK\r\n\r\nall"),
            Step::AppCloses,
            client_gets("HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall"),
            Step::Closed,
        ]),
        relayed(
            "an HTTP/1.0 status line from the app reaches the client as HTTP/1.1",
            GET,
            &get_fwd(),
            "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
            OK,
        )
        .with(follow_up()),
        relayed(
            "an HTTP/1.0 404 from the app: HTTP/1.1, the reason kept",
            GET,
            &get_fwd(),
            "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        ),
    ]
}

/// RFC 9112 §9.3.2: pipelined requests are answered in order.
pub fn pipelining_cases() -> Vec<Case> {
    let req = |p: &str| format!("GET /{p} HTTP/1.1\r\nHost: x\r\n\r\n");
    let got = |p: &str| fwd(&format!("GET /{p} HTTP/1.1\r\nHost: x\r\n"));
    let (one, two) = (ok_with("one"), ok_with("two"));
    vec![
        Case::new("two GETs in one write: two answers, in order").with([
            send(req("1") + &req("2")),
            app_gets(got("1")),
            app_sends(&one),
            app_gets(got("2")),
            app_sends(&two),
            client_gets(format!("{one}{two}")),
        ]),
        Case::new("a POST with a body and a GET in one write").with([
            send(format!(
                "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc{}",
                req("2")
            )),
            app_gets(fwd("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n") + "abc"),
            app_sends(&one),
            app_gets(got("2")),
            app_sends(&two),
            client_gets(format!("{one}{two}")),
        ]),
        Case::new("GET, HEAD, GET in one write").with([
            send(format!(
                "{}HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n{}",
                req("1"),
                req("3")
            )),
            app_gets(got("1")),
            app_sends(&one),
            app_gets(fwd("HEAD /h HTTP/1.1\r\nHost: x\r\n")),
            app_sends("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"),
            app_gets(got("3")),
            app_sends(&two),
            client_gets(format!(
                "{one}HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{two}"
            )),
        ]),
        Case::new("a good request and a bad one in one write: the answer, then 400").with([
            send(req("1") + "GET /2 HTTP/1.1\r\nHost: x\r\nX-F: a\r\n b\r\n\r\n"),
            app_gets(got("1")),
            app_sends(&one),
            client_gets(&one),
            Step::Refused {
                status: 400,
                close: true,
                head: false,
            },
            Step::Closed,
        ]),
        Case::new("a request after one with Connection: close is never forwarded").with([
            send(format!(
                "GET /1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n{}",
                req("2")
            )),
            app_gets(got("1")),
            app_sends(&one),
            client_gets("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nconnection: close\r\n\r\none"),
            Step::Closed,
        ]),
    ]
}

/// An app that takes the GET and then fails as `fail` says: 502, the client's connection kept.
fn fails_before_answering(name: &'static str, fail: Vec<Step>) -> Case {
    Case::new(name)
        .with([send(GET), app_gets(get_fwd())])
        .with(fail)
        .with([refused_open(502)])
}

/// Apps that break before or while answering.
pub fn upstream_failure_cases() -> Vec<Case> {
    let head = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
    let part = |answer: &str, end: Step| {
        vec![
            send(GET),
            app_gets(get_fwd()),
            app_sends(answer),
            client_gets(answer),
            end,
            Step::Closed,
        ]
    };
    vec![
        fails_before_answering(
            "an app that resets before answering: 502",
            vec![Step::AppResets],
        ),
        fails_before_answering(
            "an app that closes before answering: 502",
            vec![Step::AppCloses],
        ),
        fails_before_answering(
            "an app that closes mid-head: 502",
            vec![app_sends("HTTP/1.1 200 OK\r\nContent-Le"), Step::AppCloses],
        ),
        bad_answer("an answer that is not HTTP: 502", "ICY 200 OK\r\n\r\n"),
        bad_answer(
            "an answer head over 64 KiB: 502",
            &format!(
                "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 0\r\n\r\n",
                filler(70_000)
            ),
        ),
        bad_answer(
            "an answer head of more than 1024 header fields: 502",
            &format!(
                "HTTP/1.1 200 OK\r\n{}Content-Length: 0\r\n\r\n",
                "X: v\r\n".repeat(1100)
            ),
        ),
        Case::new("an app that resets before answering a HEAD: 502, no text").with([
            send("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"),
            app_gets(fwd("HEAD / HTTP/1.1\r\nHost: x\r\n")),
            Step::AppResets,
            Step::Refused {
                status: 502,
                close: false,
                head: true,
            },
        ]),
        Case::new("a POST the app resets before answering: 502, never sent again").with([
            send("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"),
            app_gets(fwd("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n") + "abc"),
            Step::AppResets,
            refused_open(502),
        ]),
        Case::new("an app that resets mid-body: the part, then the client closed")
            .with(part(&format!("{head}hello"), Step::AppResets)),
        Case::new("an app that closes mid-body: the part, then the client closed")
            .with(part(&format!("{head}hello"), Step::AppCloses)),
        Case::new("an app that resets mid-chunked-body: the part, then the client closed")
            .with(part(chunked, Step::AppResets)),
    ]
}

/// Apps that stop sending: UPSTREAM_TIMEOUT (2 s here).
pub fn upstream_stall_cases() -> Vec<Case> {
    let head = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello";
    vec![
        fails_before_answering("an app that never answers: 504", vec![]).with_status(504),
        fails_before_answering(
            "an app that stalls mid-head: 504",
            vec![app_sends("HTTP/1.1 200 OK\r\nContent-Le")],
        )
        .with_status(504),
        Case::new("an app that stalls mid-body: the part, then the client closed").with([
            send(GET),
            app_gets(get_fwd()),
            app_sends(head),
            client_gets(head),
            Step::Closed,
        ]),
    ]
}

/// Upstream connections answered and then closed or reset by the app, or left with bytes after
/// the answer: the next request still gets its own answer (retried once for GET, HEAD, OPTIONS).
pub fn pool_cases() -> Vec<Case> {
    let head_late = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
    vec![
        stale_run(
            "50 GETs, each answered then closed by the app: all answered",
            "GET",
            50,
            false,
        ),
        stale_run(
            "10 HEADs, each answered then closed by the app: all answered",
            "HEAD",
            10,
            false,
        ),
        stale_run(
            "10 OPTIONS, each answered then closed by the app: all answered",
            "OPTIONS",
            10,
            false,
        ),
        stale_run(
            "10 GETs, each answered then reset by the app: all answered",
            "GET",
            10,
            true,
        ),
        relayed(
            "a late body after a HEAD answer: that connection is not reused",
            "HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n",
            &fwd("HEAD /h HTTP/1.1\r\nHost: x\r\n"),
            &format!("{head_late}hello"),
            head_late,
        )
        .with(follow_up()),
        relayed(
            "a late body after a 304: that connection is not reused",
            GET,
            &get_fwd(),
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nhello",
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
        )
        .with(follow_up()),
    ]
}

/// `n` `method` requests on one client connection, the app closing (or resetting) each upstream
/// connection right after its answer, without saying so: none may fail.
fn stale_run(name: &'static str, method: &str, n: usize, reset: bool) -> Case {
    let mut case = Case::new(name);
    for i in 0..n {
        let line = format!("{method} /{i} HTTP/1.1\r\nHost: x\r\n");
        let answer = ok_with(&i.to_string());
        let relayed = match method {
            "HEAD" => format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                i.to_string().len()
            ),
            _ => answer.clone(),
        };
        let sent = if method == "HEAD" {
            relayed.clone()
        } else {
            answer
        };
        case = case.with([
            send(format!("{line}\r\n")),
            app_gets(fwd(&line)),
            app_sends(&sent),
            if reset {
                Step::AppResets
            } else {
                Step::AppCloses
            },
            client_gets(relayed),
        ]);
    }
    case
}

/// A POST after the app closed the pooled connection its keep-alive GET used: sent once or
/// answered 502, never twice.
pub fn stale_cases() -> Vec<Case> {
    let mut case = Case::new("a POST after the app closed the pooled connection: once, or a 502");
    for i in 0..10 {
        let post = format!("POST /once/{i} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n");
        let answer = ok_with(&format!("posted {i}"));
        case = case.with(exchange(GET, &get_fwd(), OK, OK)).with([
            Step::AppCloses,
            Step::Once(Box::new(Once {
                request: bytes(format!("{post}\r\nbody")),
                forwarded: bytes(fwd(&post) + "body"),
                answer: bytes(&answer),
                relayed: bytes(&answer),
            })),
        ]);
    }
    vec![case]
}
