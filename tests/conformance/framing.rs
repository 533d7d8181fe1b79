//! The corpus on framing: bodies by Content-Length, chunked and close-delimited, interim answers,
//! answers without a body, and requests or answers framed ambiguously (RFC 9112 §6, §7).

use super::case::*;

/// RFC 9112 §6.2, §6.3: bodies framed by Content-Length, both ways.
pub fn content_length_cases() -> Vec<Case> {
    let big = filler(256 * 1024);
    let big_request = filler(60_000);
    vec![
        same(
            "a GET and a Content-Length answer",
            "GET /a?b=c HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
            &fwd("GET /a?b=c HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n"),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
        ),
        same(
            "a POST body framed by Content-Length",
            "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
            &(fwd("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n") + "hello"),
            "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
        ),
        Case::new("a Content-Length body sent in three writes after the head").with([
            send("PUT /p HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n"),
            send("hello"),
            send(" wor"),
            send("ld"),
            app_gets(fwd("PUT /p HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n") + "hello world"),
            app_sends(OK),
            client_gets(OK),
        ]),
        same(
            "a POST with Content-Length: 0",
            "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            &fwd("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"),
            OK,
        ),
        same(
            "an answer with Content-Length: 0",
            GET,
            &get_fwd(),
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ),
        same("a 256 KiB answer, whole", GET, &get_fwd(), &ok_with(&big)),
        same(
            "a 60 000-byte request body, whole",
            &format!("PUT /big HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n{big_request}"),
            &(fwd("PUT /big HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n") + &big_request),
            OK,
        ),
        Case::new("a Content-Length answer in three app writes").with([
            send(GET),
            app_gets(get_fwd()),
            app_sends("HTTP/1.1 200 OK\r\nContent-Len"),
            app_sends("gth: 11\r\n\r\nhel"),
            app_sends("lo world"),
            client_gets(ok_with("hello world")),
        ]),
        Case::new("two requests in turn on one keep-alive connection")
            .with(exchange(GET, &get_fwd(), OK, OK))
            .with(follow_up()),
        same(
            "a method understudy does not know is relayed",
            "PURGE /cache HTTP/1.1\r\nHost: x\r\n\r\n",
            &fwd("PURGE /cache HTTP/1.1\r\nHost: x\r\n"),
            OK,
        ),
    ]
}

/// A chunked request to `/c` with `body`: relayed as the client framed it.
fn chunked_post(name: &'static str, body: &str) -> Case {
    let head = "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n";
    same(name, &format!("{head}\r\n{body}"), &(fwd(head) + body), OK)
}

/// A chunked request to `/c` whose body is not well-formed: 400 and close, and nothing reaches
/// the app (the body is read before it is asked).
fn chunked_refused(name: &'static str, body: &str) -> Case {
    let request =
        format!("POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
    refusal(name, &request, 400)
}

/// RFC 9112 §7.1: chunked requests, relayed as framed, or refused when malformed.
pub fn chunked_request_cases() -> Vec<Case> {
    let head = "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n";
    vec![
        chunked_post(
            "a chunked request body is relayed as sent",
            "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        ),
        chunked_post(
            "chunk extensions are kept",
            "5;a=b\r\nhello\r\n3;x;y=\"q\"\r\nabc\r\n0;end\r\n\r\n",
        ),
        chunked_post(
            "request trailers are kept",
            "5\r\nhello\r\n0\r\nX-Sum: 5\r\nX-Other: o\r\n\r\n",
        ),
        chunked_post(
            "upper-case hex and leading zeros in chunk sizes are kept",
            "000A\r\n0123456789\r\n0\r\n\r\n",
        ),
        Case::new("a chunked request body in pieces").with([
            send(format!("{head}\r\n5\r\nhel")),
            send("lo\r\n"),
            send("0\r\n"),
            send("\r\n"),
            app_gets(fwd(head) + "5\r\nhello\r\n0\r\n\r\n"),
            app_sends(OK),
            client_gets(OK),
        ]),
        chunked_refused(
            "a chunk size that is not hex: 400",
            "zz\r\nhello\r\n0\r\n\r\n",
        ),
        chunked_refused(
            "chunk data not followed by CRLF: 400",
            "5\r\nhelloXX0\r\n\r\n",
        ),
        chunked_refused(
            "a chunk size line without CRLF: 400",
            "5\nhello\r\n0\r\n\r\n",
        ),
    ]
}

/// RFC 9112 §7.1: chunked answers, relayed as framed; broken ones close the client.
pub fn chunked_answer_cases() -> Vec<Case> {
    let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    let first = format!("{chunked}5\r\nhello\r\n");
    vec![
        Case::new("a chunked answer is relayed as sent and the connection kept")
            .with(exchange(
                GET,
                &get_fwd(),
                &format!("{chunked}5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
                &format!("{chunked}5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            ))
            .with(follow_up()),
        same(
            "a chunked answer's extensions and trailers are kept",
            GET,
            &get_fwd(),
            "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n\
             3;ext=1\r\nabc\r\n0\r\nX-Sum: 3\r\n\r\n",
        ),
        Case::new("a chunked answer in pieces, a chunk's data split between writes").with([
            send(GET),
            app_gets(get_fwd()),
            app_sends(format!("{chunked}4\r\nab")),
            app_sends("cd\r\n"),
            app_sends("0\r\n\r\n"),
            client_gets(format!("{chunked}4\r\nabcd\r\n0\r\n\r\n")),
        ]),
        same(
            "Transfer-Encoding: gzip, chunked is framed by chunked",
            GET,
            &get_fwd(),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4\r\nGZIP\r\n0\r\n\r\n",
        ),
        Case::new("a chunked answer that goes bad after a chunk closes the client").with([
            send(GET),
            app_gets(get_fwd()),
            app_sends(&first),
            client_gets(&first),
            app_sends("zz\r\nxx\r\n"),
            Step::Closed,
        ]),
        Case::new("an app closing before the last chunk closes the client").with([
            send(GET),
            app_gets(get_fwd()),
            app_sends(&first),
            client_gets(&first),
            Step::AppCloses,
            Step::Closed,
        ]),
    ]
}

/// A GET whose answer has no length: read until the app closes, the client closed after it.
fn close_delimited(name: &'static str, answer: &str, relayed: &str) -> Case {
    Case::new(name).with([
        send(GET),
        app_gets(get_fwd()),
        app_sends(answer),
        Step::AppCloses,
        client_gets(relayed),
        Step::Closed,
    ])
}

/// RFC 9112 §6.3 item 8: answers that end when the app closes.
pub fn close_delimited_cases() -> Vec<Case> {
    let big = filler(100 * 1024);
    vec![
        Case::new("an answer without a length ends when the app closes").with([
            send(GET),
            app_gets(get_fwd()),
            app_sends("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil "),
            app_sends("the end"),
            Step::AppCloses,
            client_gets(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nconnection: close\r\n\r\n\
                 until the end",
            ),
            Step::Closed,
        ]),
        close_delimited(
            "a Transfer-Encoding other than chunked is read until the app closes",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nGZIPDATA",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nconnection: close\r\n\r\nGZIPDATA",
        ),
        close_delimited(
            "an HTTP/1.0 answer without a length: HTTP/1.1 status line, read until close",
            "HTTP/1.0 200 OK\r\nServer: old\r\n\r\nold body",
            "HTTP/1.1 200 OK\r\nServer: old\r\nconnection: close\r\n\r\nold body",
        ),
        close_delimited(
            "the app's Connection: close goes; understudy's is written last",
            "HTTP/1.1 200 OK\r\nConnection: close\r\nX-A: a\r\n\r\nbye",
            "HTTP/1.1 200 OK\r\nX-A: a\r\nconnection: close\r\n\r\nbye",
        ),
        close_delimited(
            "a 100 KiB answer without a length, whole",
            &format!("HTTP/1.1 200 OK\r\n\r\n{big}"),
            &format!("HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n{big}"),
        ),
    ]
}

/// RFC 9110 §15.2: interim answers relayed to HTTP/1.1 clients only; `Expect: 100-continue`
/// answered by understudy, which reads the body before running is asked (as nginx does).
pub fn interim_cases() -> Vec<Case> {
    let expect = "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n";
    let forwarded = fwd("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n") + "hello";
    let hints = "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n";
    let unauthorized = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n";
    vec![
        Case::new("Expect: 100-continue: understudy's 100, then head and body go together, without Expect")
            .with([
                send(format!("{expect}\r\n")),
                client_gets("HTTP/1.1 100 Continue\r\n\r\n"),
                send("hello"),
                app_gets(&forwarded),
                app_sends(OK),
                client_gets(OK),
            ]),
        Case::new("Expect: 100-continue with the body already sent: no 100").with([
            send(format!("{expect}\r\nhello")),
            app_gets(&forwarded),
            app_sends(OK),
            client_gets(OK),
        ]),
        Case::new("Expect: 100-continue, then refused by the app: the connection stays").with([
            send(format!("{expect}\r\n")),
            client_gets("HTTP/1.1 100 Continue\r\n\r\n"),
            send("hello"),
            app_gets(&forwarded),
            app_sends(unauthorized),
            client_gets(unauthorized),
        ]),
        Case::new("an HTTP/1.0 client gets no 100 Continue").with([
            send(
                "POST /up HTTP/1.0\r\nHost: x\r\nContent-Length: 5\r\n\
                 Expect: 100-continue\r\n\r\nhello",
            ),
            app_gets(&forwarded),
            app_sends(format!("HTTP/1.1 100 Continue\r\n\r\n{OK}")),
            client_gets("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nconnection: close\r\n\r\nok"),
            Step::Closed,
        ]),
        same(
            "103 Early Hints reaches an HTTP/1.1 client before the answer",
            GET,
            &get_fwd(),
            &format!("{hints}{OK}"),
        ),
        Case::new("103 Early Hints is relayed as soon as it comes").with([
            send(GET),
            app_gets(get_fwd()),
            app_sends(hints),
            client_gets(hints),
            app_sends(OK),
            client_gets(OK),
        ]),
        Case::new("103 Early Hints is not relayed to an HTTP/1.0 client").with([
            send("GET / HTTP/1.0\r\nHost: x\r\n\r\n"),
            app_gets(get_fwd()),
            app_sends(format!("{hints}{OK}")),
            client_gets("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nconnection: close\r\n\r\nok"),
            Step::Closed,
        ]),
        same(
            "102 Processing, then 100 and 103, each relayed in order",
            GET,
            &get_fwd(),
            &format!("HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n{hints}{OK}"),
        ),
        bad_answer(
            "a 101 to a request that asked for no upgrade: 502",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        ),
    ]
}

/// RFC 9112 §6.3 items 1-2: no body after HEAD, 204 and 304, whatever the headers say.
pub fn no_body_cases() -> Vec<Case> {
    let head = "HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n";
    let head_fwd = fwd("HEAD /h HTTP/1.1\r\nHost: x\r\n");
    let with_follow_up = |name, request: &str, forwarded: &str, answer: &str| {
        same(name, request, forwarded, answer).with(follow_up())
    };
    // RFC 9112 §6.1, §6.2: a 204 (or 1xx) carries neither framing field; understudy drops them.
    let no_content = "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n";
    vec![
        relayed(
            "204 with a stray Content-Length: no body, no length, the next answer intact",
            GET,
            &get_fwd(),
            "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nX-A: 1\r\n\r\n",
            no_content,
        )
        .with(follow_up()),
        relayed(
            "204 with Transfer-Encoding: chunked and a body: neither reaches the client",
            GET,
            &get_fwd(),
            "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n",
            no_content,
        )
        .with(follow_up()),
        relayed(
            "a 103 with a Content-Length: relayed without it",
            GET,
            &get_fwd(),
            &format!("HTTP/1.1 103 Early Hints\r\nContent-Length: 0\r\nLink: </a>\r\n\r\n{OK}"),
            &format!("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n{OK}"),
        ),
        with_follow_up(
            "304 with a Content-Length: no body, the next answer intact",
            GET,
            &get_fwd(),
            "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 100\r\n\r\n",
        ),
        with_follow_up(
            "304 without a length is not read until close",
            GET,
            &get_fwd(),
            "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n",
        ),
        with_follow_up(
            "HEAD: the Content-Length is relayed, no body",
            head,
            &head_fwd,
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 1234\r\n\r\n",
        ),
        with_follow_up(
            "HEAD: a chunked answer's head, no body",
            head,
            &head_fwd,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        ),
        with_follow_up(
            "HEAD: an answer without a length is not read until close",
            head,
            &head_fwd,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n",
        ),
    ]
}

/// RFC 9112 §6.3 items 3-5, §11.2: requests framed ambiguously are refused.
pub fn smuggling_cases() -> Vec<Case> {
    let post = |framing: &str| format!("POST /p HTTP/1.1\r\nHost: x\r\n{framing}\r\nhello");
    vec![
        // Found by the property tests: a Connection line naming a framing header must not drop it
        // while the body is relayed as framed (the app would read the body as a request).
        same(
            "Connection: content-length keeps the request's Content-Length",
            "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: content-length\r\n\r\nhello",
            &(fwd("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n") + "hello"),
            OK,
        ),
        same(
            "Connection: transfer-encoding, host keeps the request's framing and Host",
            "POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: transfer-encoding, host\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            &(fwd("POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n") + "5\r\nhello\r\n0\r\n\r\n"),
            OK,
        ),
        relayed(
            "an answer's Connection: content-length keeps its Content-Length",
            GET,
            &get_fwd(),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: content-length\r\n\r\nok",
            OK,
        ),
        refusal(
            "a request with Content-Length and Transfer-Encoding: 400",
            &post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
            400,
        ),
        refusal(
            "a request with Transfer-Encoding, then Content-Length: 400",
            &post("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"),
            400,
        ),
        refusal(
            "two equal Content-Length lines in a request: 400",
            &post("Content-Length: 5\r\nContent-Length: 5\r\n"),
            400,
        ),
        refusal(
            "two different Content-Length lines in a request: 400",
            &post("Content-Length: 5\r\nContent-Length: 4\r\n"),
            400,
        ),
        refusal(
            "Content-Length: +5 in a request: 400",
            &post("Content-Length: +5\r\n"),
            400,
        ),
        refusal(
            "Content-Length: -1 in a request: 400",
            &post("Content-Length: -1\r\n"),
            400,
        ),
        refusal(
            "Content-Length: 5, 5 in a request: 400",
            &post("Content-Length: 5, 5\r\n"),
            400,
        ),
        refusal(
            "an empty Content-Length in a request: 400",
            &post("Content-Length:\r\n"),
            400,
        ),
        refusal(
            "Transfer-Encoding: gzip in a request: 400",
            &post("Transfer-Encoding: gzip\r\n"),
            400,
        ),
        refusal(
            "Transfer-Encoding: gzip, chunked in a request: 400",
            &post("Transfer-Encoding: gzip, chunked\r\n"),
            400,
        ),
    ]
}

/// RFC 9112 §6.3: how answers are framed when their headers disagree.
pub fn answer_framing_cases() -> Vec<Case> {
    let chunked = "5\r\nAAAAA\r\n0\r\n\r\n";
    vec![
        relayed(
            "an answer with Content-Length and chunked: chunked frames it, the length goes",
            GET,
            &get_fwd(),
            &format!(
                "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
                 {chunked}"
            ),
            &format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}"),
        )
        .with(follow_up()),
        relayed(
            "an answer with chunked, then Content-Length: the length goes",
            GET,
            &get_fwd(),
            &format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: a\r\n\
                 Content-Length: 100\r\n\r\n{chunked}"
            ),
            &format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: a\r\n\r\n{chunked}"),
        ),
        relayed(
            "two equal Content-Lengths in an answer are relayed once",
            GET,
            &get_fwd(),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: a\r\nContent-Length: 2\r\n\r\nok",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: a\r\n\r\nok",
        ),
        bad_answer(
            "two different Content-Lengths in an answer: 502",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
        ),
        bad_answer(
            "Content-Length: +2 in an answer: 502",
            "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok",
        ),
        bad_answer(
            "Content-Length: 2, 2 in an answer: 502",
            "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok",
        ),
        bad_answer(
            "Content-Length: two in an answer: 502",
            "HTTP/1.1 200 OK\r\nContent-Length: two\r\n\r\nok",
        ),
    ]
}
