//! The corpus on heads: fields as sent, heads that are not well-formed, hop-by-hop fields, Host and
//! absolute-form targets, and the limits on heads and bodies.

use super::case::*;

/// Header fields both ways: order, case, repeats and values as sent; line ends.
pub fn header_cases() -> Vec<Case> {
    vec![
        same(
            "request headers keep order, case and repeats; values lose surrounding blanks",
            "GET / HTTP/1.1\r\nhost: x\r\nX-Mixed-CASE: A b\r\nx-pad:   padded  \r\n\
             X-Tight:tight\r\nX-Tab:\t tabbed\t\r\nAccept: a\r\naccept: b\r\n\r\n",
            &fwd(
                "GET / HTTP/1.1\r\nhost: x\r\nX-Mixed-CASE: A b\r\nx-pad: padded\r\n\
                  X-Tight: tight\r\nX-Tab: tabbed\r\nAccept: a\r\naccept: b\r\n",
            ),
            OK,
        ),
        same(
            "answer headers keep order, case and repeats",
            GET,
            &get_fwd(),
            "HTTP/1.1 200 OK\r\nX-B: 1\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\nx-a: 2\r\n\
             Content-Length: 2\r\n\r\nok",
        ),
        same(
            "an answer of 300 header fields is relayed whole (nginx limits only the head's size)",
            GET,
            &get_fwd(),
            &format!(
                "HTTP/1.1 200 OK\r\n{}Content-Length: 2\r\n\r\nok",
                (0..300)
                    .map(|i| format!("X-H{i}: v\r\n"))
                    .collect::<String>()
            ),
        ),
        same(
            "an answer's reason phrase is kept as sent",
            GET,
            &get_fwd(),
            "HTTP/1.1 299 Whatever You Say\r\nContent-Length: 0\r\n\r\n",
        ),
        same(
            "a request head with bare LF line ends is accepted; the app gets CRLF",
            "GET /lf HTTP/1.1\nHost: x\nX-A: 1\n\n",
            &fwd("GET /lf HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n"),
            OK,
        ),
        same(
            "a request head mixing CRLF and bare LF; the app gets CRLF",
            "GET /lf HTTP/1.1\r\nHost: x\nX-A: 1\r\n\n",
            &fwd("GET /lf HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n"),
            OK,
        ),
        Case::new("a request head arriving in pieces").with([
            send("GET /sl"),
            send("ow HTTP/1.1\r\nHo"),
            send("st: x\r\n"),
            send("\r\n"),
            app_gets(fwd("GET /slow HTTP/1.1\r\nHost: x\r\n")),
            app_sends(OK),
            client_gets(OK),
        ]),
    ]
}

/// RFC 9112 §2.2, §3, §5: request heads that are not well-formed are refused.
pub fn head_syntax_cases() -> Vec<Case> {
    let with = |line: &str| format!("GET / HTTP/1.1\r\nHost: x\r\n{line}\r\n\r\n");
    vec![
        refusal(
            "obs-fold in a request (space): 400",
            &with("X-Folded: a\r\n b"),
            400,
        ),
        refusal(
            "obs-fold in a request (tab): 400",
            &with("X-Folded: a\r\n\tb"),
            400,
        ),
        refusal("a NUL in a header value: 400", &with("X-A: a\x00b"), 400),
        refusal(
            "HTTP/1.0 with Transfer-Encoding: faulty framing (RFC 9112 §6.1), 400",
            "POST / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            400,
        ),
        refusal(
            "a control byte in a header value: 400",
            &with("X-A: a\x01b"),
            400,
        ),
        refusal("DEL in a header value: 400", &with("X-A: a\x7fb"), 400),
        refusal("a bare CR in a header value: 400", &with("X-A: a\rb"), 400),
        refusal("a space inside a header name: 400", &with("X A: 1"), 400),
        refusal(
            "a delimiter inside a header name: 400",
            &with("X(A): 1"),
            400,
        ),
        refusal(
            "a control byte inside a header name: 400",
            &with("X\x01A: 1"),
            400,
        ),
        refusal("a space before the colon: 400", &with("X-A : 1"), 400),
        refusal("an empty header name: 400", &with(": v"), 400),
        refusal(
            "HTTP/2.0 in the request line: 400",
            "GET / HTTP/2.0\r\nHost: x\r\n\r\n",
            400,
        ),
        refusal(
            "a protocol other than HTTP: 400",
            "GET / FTP/1.1\r\nHost: x\r\n\r\n",
            400,
        ),
        refusal("an HTTP/0.9 request line: 400", "GET /\r\n\r\n", 400),
        refusal(
            "a TLS hello on the plain port: 400",
            "\x16\x03\x01\x02\x00\x01\x00\x01\x7c\x03\x03\r\n\r\n",
            400,
        ),
    ]
}

/// RFC 9110 §7.6.1: hop-by-hop request fields stop at understudy; X-Forwarded-For grows.
pub fn hop_by_hop_request_cases() -> Vec<Case> {
    vec![
        same(
            "Connection, Keep-Alive, Proxy-Connection and TE are not forwarded",
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
             Proxy-Connection: keep-alive\r\nTE: trailers\r\nAccept: */*\r\n\r\n",
            &fwd("GET / HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n"),
            OK,
        ),
        same(
            "two Connection lines, each naming a header: both named headers go",
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: X-One\r\nX-One: 1\r\nX-Keep: k\r\n\
             Connection: x-two\r\nX-Two: 2\r\n\r\n",
            &fwd("GET / HTTP/1.1\r\nHost: x\r\nX-Keep: k\r\n"),
            OK,
        ),
        same(
            "one Connection line naming two headers, in another case",
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: X-A, x-b\r\nx-a: 1\r\nX-B: 2\r\n\
             X-C: 3\r\n\r\n",
            &fwd("GET / HTTP/1.1\r\nHost: x\r\nX-C: 3\r\n"),
            OK,
        ),
        same(
            "Upgrade without Connection: upgrade is not forwarded",
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nX-A: a\r\n\r\n",
            &fwd("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n"),
            OK,
        ),
        same(
            "X-Forwarded-For lines are joined, the peer last, written last",
            "GET / HTTP/1.1\r\nX-Forwarded-For: 10.0.0.1\r\nHost: x\r\n\
             x-forwarded-for: 10.0.0.2, 10.0.0.3\r\nAccept: */*\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\
             x-forwarded-for: 10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1\r\n\r\n",
            OK,
        ),
        same(
            "X_Forwarded_For and X_Understudy_Mirror (what CGI-style servers read as the dashed \
             names) are not forwarded; other underscored names are",
            "GET / HTTP/1.1\r\nHost: x\r\nX_Forwarded_For: 6.6.6.6\r\nx-understudy_mirror: 1\r\n\
             X_Replay_Id: 7\r\n\r\n",
            &fwd("GET / HTTP/1.1\r\nHost: x\r\nX_Replay_Id: 7\r\n"),
            OK,
        ),
        same(
            "an upgrade request keeps Upgrade; connection: upgrade goes before x-forwarded-for",
            "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Key: k\r\n\r\n",
            &format!(
                "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\
                 connection: upgrade\r\n{XFF}\r\n"
            ),
            OK,
        ),
        Case::new("an offer of h2c (Java's HttpClient) is an ordinary request: the offer goes")
            .with(exchange(
                "GET /a HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nHost: x\r\n\
                 HTTP2-Settings: AAEAAEAAAAIAAAABAAMAAABkAAQBAAAAAAUAAEAA\r\nUpgrade: h2c\r\n\
                 User-Agent: Java-http-client/17\r\n\r\n",
                &fwd("GET /a HTTP/1.1\r\nHost: x\r\nUser-Agent: Java-http-client/17\r\n"),
                OK,
                OK,
            ))
            .with(follow_up()),
        Case::new("Connection: close from the client: the answer says so and the client closes")
            .with([
                send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
                app_gets(get_fwd()),
                app_sends(OK),
                client_gets("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nconnection: close\r\n\r\nok"),
                Step::Closed,
            ]),
    ]
}

/// RFC 9110 §7.6.1: hop-by-hop answer fields stop at understudy; Trailer is not one of them.
pub fn hop_by_hop_answer_cases() -> Vec<Case> {
    vec![
        relayed(
            "an answer's Connection, Keep-Alive, Proxy-Connection, TE and Upgrade go",
            GET,
            &get_fwd(),
            "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
             Proxy-Connection: keep-alive\r\nTE: trailers\r\nUpgrade: h2c\r\n\
             Content-Length: 2\r\n\r\nok",
            OK,
        ),
        relayed(
            "an answer's two Connection lines, each naming a header: both named headers go",
            GET,
            &get_fwd(),
            "HTTP/1.1 200 OK\r\nConnection: X-One\r\nX-One: 1\r\nConnection: x-two\r\nX-Two: 2\r\n\
             X-Keep: k\r\nContent-Length: 2\r\n\r\nok",
            "HTTP/1.1 200 OK\r\nX-Keep: k\r\nContent-Length: 2\r\n\r\nok",
        ),
        relayed(
            "an answer's Connection: close stays with the app; the client keeps its connection",
            GET,
            &get_fwd(),
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            OK,
        )
        .with([Step::AppCloses])
        .with(follow_up()),
    ]
}

/// RFC 9112 §3.2: Host, absolute-form targets, CONNECT.
pub fn host_cases() -> Vec<Case> {
    vec![
        refusal(
            "HTTP/1.1 without Host: 400",
            "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n",
            400,
        ),
        refusal(
            "HEAD without Host: 400, no text",
            "HEAD / HTTP/1.1\r\nAccept: */*\r\n\r\n",
            400,
        ),
        refusal(
            "two Host lines: 400",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            400,
        ),
        refusal(
            "two equal Host lines: 400",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
            400,
        ),
        refusal(
            "a Host with a blank: 400",
            "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            400,
        ),
        refusal(
            "a Host with a slash: 400",
            "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
            400,
        ),
        refusal(
            "a Host with markup in it: 400",
            "GET / HTTP/1.1\r\nHost: a\"<script>\r\n\r\n",
            400,
        ),
        refusal(
            "a Host with userinfo: 400",
            "GET / HTTP/1.1\r\nHost: a@evil\r\n\r\n",
            400,
        ),
        refusal(
            "a Host with an unclosed IPv6 bracket: 400",
            "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
            400,
        ),
        refusal(
            "a Host with a port over 65535: 400",
            "GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n",
            400,
        ),
        refusal(
            "an absolute-form target whose authority is no host: 400",
            "GET http://a\"b/ HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
        ),
        same(
            "a Host that is an IPv6 literal with a port: forwarded",
            "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
            &fwd("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n"),
            OK,
        ),
        same(
            "a Host that is a name with an underscore and a port: forwarded",
            "GET / HTTP/1.1\r\nHost: a_b.example:80\r\n\r\n",
            &fwd("GET / HTTP/1.1\r\nHost: a_b.example:80\r\n"),
            OK,
        ),
        refusal(
            "the target * with GET: 400 (it is for OPTIONS only)",
            "GET * HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
        ),
        same(
            "OPTIONS * is forwarded",
            "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
            &fwd("OPTIONS * HTTP/1.1\r\nHost: x\r\n"),
            OK,
        ),
        same(
            "absolute-form: origin-form for the app, its authority as Host, first",
            "GET http://example.com:8080/p?q=1 HTTP/1.1\r\nAccept: */*\r\nHost: other\r\n\r\n",
            &fwd("GET /p?q=1 HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\n"),
            OK,
        ),
        same(
            "absolute-form without a path: /",
            "GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n",
            &fwd("GET / HTTP/1.1\r\nHost: example.com\r\n"),
            OK,
        ),
        refusal(
            "CONNECT: 405, closed (a tunnel's bytes would follow)",
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
            405,
        ),
    ]
}

/// MAX_HEADER_BYTES, MAX_HEADERS and MAX_REQUEST_BODY (16 KiB, 50 and 64 KiB here).
pub fn limit_cases() -> Vec<Case> {
    let many: String = (0..60).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    let chunk = format!("8000\r\n{}\r\n", filler(0x8000));
    vec![
        refusal(
            "a request head over MAX_HEADER_BYTES: 431",
            &format!(
                "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                filler(20 * 1024)
            ),
            431,
        ),
        refusal(
            "a request line over MAX_HEADER_BYTES: 414",
            &format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", filler(20 * 1024)),
            414,
        ),
        refusal(
            "more header fields than MAX_HEADERS: 431",
            &format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n"),
            431,
        ),
        refusal(
            "a declared body over MAX_REQUEST_BODY: 413",
            "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc",
            413,
        ),
        // The body is read before running is asked (it is within REQUEST_BUFFER): nothing of
        // it reaches the app.
        Case::new("a chunked body passing MAX_REQUEST_BODY: 413, nothing forwarded").with([
            send(format!(
                "POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
                chunk.repeat(3)
            )),
            Step::Refused {
                status: 413,
                close: true,
                head: false,
            },
            Step::Closed,
        ]),
    ]
}
