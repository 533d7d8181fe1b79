//! One user connection, request after request: read a head (within `HEADER_TIMEOUT`), refuse it
//! or route it, and hand it to [`forward`](super::forward); keep the connection while both sides
//! agree to. The connection's three buffers live here and are reused by every request on it.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::bufs::{Bufs, Next};
use super::forward::{self, Forwarded, Pass};
use super::framing::Framing;
use super::head::{self, Parsed, Refusal, RequestHead};
use super::reply::{self, Ending, Unserved};
use super::{wait, Counted, Hold, Proxy, Route};

/// After stop, how long a kept-alive connection may still bring its next request, which is then
/// answered with `Connection: close`: a busy client (a load balancer, a page loading) sends it
/// within this, so the end of understudy (an upgrade above all) fails none of its requests; an
/// idle one is closed after it.
const LINGER: std::time::Duration = std::time::Duration::from_millis(500);

/// After understudy closes its side of a connection, what the user still sends (a body it was
/// refused, a pipelined request) is read and dropped for up to `LINGERING_TIMEOUT` between reads
/// and `LINGERING_TIME` in all (nginx's defaults): closing with bytes unread would reset the
/// connection and could destroy the answer before the user reads it (RFC 9112 §9.6).
const LINGERING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// See [`LINGERING_TIMEOUT`].
const LINGERING_TIME: std::time::Duration = std::time::Duration::from_secs(30);
/// Largest buffer a lingering close keeps for what it reads and drops.
const LINGER_BUFFER: usize = 64 * 1024;

/// Answer to a head that never ended within the limit.
const HEAD_TOO_LARGE: Refusal = Refusal {
    status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    why: "understudy: the request head is larger than MAX_HEADER_BYTES allows; send fewer or \
          smaller headers (cookies, tokens), or raise MAX_HEADER_BYTES in understudy's config\n",
};

/// Answer to a request line that never ended within the limit (RFC 9110 §15.5.15, as nginx).
const LINE_TOO_LONG: Refusal = Refusal {
    status: StatusCode::URI_TOO_LONG,
    why: "understudy: the request line (its target) is longer than MAX_HEADER_BYTES allows; shorten the URL\n",
};

/// Serve the user on `client` until either side closes, the thread stops, or an error.
pub(super) async fn serve(
    mut client: TcpStream,
    peer: SocketAddr,
    proxy: Arc<Proxy>,
    counted: Counted,
) {
    let _counted = counted;
    let forwarded = peer.ip().to_string();
    // A connection that never sends a request costs its 4 KiB read buffer and two timers; the
    // other buffers are sized by their first use.
    let mut bufs = Bufs::new(proxy.header_timeout, proxy.upstream_timeout);
    loop {
        let Some(parsed) = read_head(&mut client, &proxy, &mut bufs, &forwarded).await else {
            return;
        };
        let next = match parsed {
            Err(r) => {
                proxy.stats.refused.fetch_add(1, Ordering::Relaxed);
                // Refused before its method was trusted: a HEAD still gets no body.
                let close = Ending {
                    head: bufs.buf.starts_with(b"HEAD "),
                    close: true,
                    ..Ending::default()
                };
                own_answer(
                    &mut client,
                    &proxy,
                    &mut bufs.out,
                    r.status,
                    r.why.as_bytes(),
                    close,
                )
                .await;
                // The rest of a refused head, and its body, may still be on their way.
                Next::Linger
            }
            Ok(req) => {
                bufs.buf.drain(..req.len);
                route(&mut client, &proxy, req, &mut bufs).await
            }
        };
        // A body read ahead that never went (refused, failed) gives back its room now.
        bufs.release_ahead();
        // Stopping: an answer that did not say `Connection: close` (stop came after its head)
        // leaves the user free to send one more request; it is read within `LINGER` and answered
        // with `close`, rather than cut off.
        match next {
            Next::KeepAlive => {}
            // Bytes already read past the request (pipelined) say the user is still sending.
            Next::Linger => return close_lingering(&mut client, &proxy, &mut bufs.buf).await,
            Next::Close if !bufs.buf.is_empty() => {
                return close_lingering(&mut client, &proxy, &mut bufs.buf).await
            }
            Next::Close => {
                let _ = client.shutdown().await;
                return;
            }
        }
        bufs.shrink();
    }
}

/// Read until `bufs.buf` starts with a whole request head (rewritten into `bufs.out`), within
/// `HEADER_TIMEOUT`, which also bounds an idle keep-alive; `None` when the connection is done.
async fn read_head(
    client: &mut TcpStream,
    proxy: &Proxy,
    bufs: &mut Bufs,
    forwarded: &str,
) -> Option<Result<RequestHead, Refusal>> {
    let max_head = proxy.limits.header_bytes;
    bufs.head_timer.arm();
    // Made before `stopping` is looked at: a call after that look still wakes it.
    let mut call = std::pin::pin!(proxy.calls.call.notified());
    let mut linger = std::pin::pin!(None::<tokio::time::Sleep>);
    loop {
        if !bufs.buf.is_empty() {
            let parsed = head::parse(
                &bufs.buf,
                proxy.limits.headers,
                forwarded.as_bytes(),
                proxy.request_buffer == 0,
                &mut bufs.out,
            );
            match parsed {
                Parsed::Partial if bufs.buf.len() >= max_head => {
                    // Blank lines before a request line are allowed (RFC 9112 section 2.2).
                    let line = bufs.buf.trim_ascii_start();
                    let line_ended = line.contains(&b'\n');
                    return Some(Err(if line_ended {
                        HEAD_TOO_LARGE
                    } else {
                        LINE_TOO_LONG
                    }));
                }
                Parsed::Partial => {}
                Parsed::Request(r) => return Some(Ok(r)),
                Parsed::Refused(r) => return Some(Err(r)),
            }
        }
        if bufs.buf.capacity() == bufs.buf.len() {
            bufs.buf.reserve(4096.min(max_head));
        }
        if linger.is_none() && proxy.calls.stopping() {
            linger.set(Some(tokio::time::sleep(LINGER)));
        }
        let lingered = async {
            match linger.as_mut().as_pin_mut() {
                Some(s) => s.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            r = client.read_buf(&mut bufs.buf) => match r {
                Ok(1..) => {}
                _ => return None,
            },
            () = bufs.head_timer.expired() => return None,
            () = lingered => return None,
            () = &mut call => {
                // At stop, the linger decides: a room request's leftover claims are not used up.
                if !proxy.calls.stopping() && proxy.calls.chosen() {
                    return None;
                }
                call.set(proxy.calls.call.notified());
            }
        }
    }
}

/// Refuse a body over the limit, answer 503 with nothing running, or forward; once more, to
/// wherever users go next, if the instance chosen refused the connection (it had just gone).
async fn route(client: &mut TcpStream, proxy: &Proxy, req: RequestHead, bufs: &mut Bufs) -> Next {
    // understudy's own answer leaves a body unread: then the connection cannot go on.
    let unread = req.body != Framing::Empty;
    let ending = Ending {
        head: req.method == Method::HEAD,
        close: req.close || unread,
        retry_after: 0,
    };
    if matches!(req.body, Framing::Length(n) if n > proxy.limits.body) {
        proxy.stats.refused.fetch_add(1, Ordering::Relaxed);
        let status = StatusCode::PAYLOAD_TOO_LARGE;
        let close = Ending {
            close: true,
            ..ending
        };
        own_answer(
            client,
            proxy,
            &mut bufs.out,
            status,
            reply::TOO_LARGE.as_bytes(),
            close,
        )
        .await;
        return Next::Linger;
    }
    // The body first: the instance is chosen once it is whole, so a slow upload goes to what
    // serves when it ends (never to a version retired meanwhile, or a build that took its port).
    // With nothing to serve it, the 503 comes at once, the body not asked for.
    if unread && !proxy.serves_nothing() {
        if let Err(u) =
            super::upload::read_ahead(client, proxy, &req, bufs, proxy.upload_grace).await
        {
            return refuse_body(client, proxy, bufs, u, ending).await;
        }
    }
    let (mut req, mut tries) = (req, 0u32);
    // One bound for all of a request's waits, set by the first.
    let mut by = None;
    loop {
        let route = match choose(client, proxy, bufs, ending, &mut by).await {
            Ok(route) => route,
            // A body left unread (answered 503) may still be on its way: read and dropped for
            // a while, or the close would reset the connection and lose the answer.
            Err(Next::Close) if unread => return Next::Linger,
            Err(next) => return next,
        };
        if tries == 0 {
            proxy.stats.requests.fetch_add(1, Ordering::Relaxed);
        }
        // No clock read on the way of a request that never waited. Stopping, no more waits.
        let last = by.is_some_and(|by| proxy.calls.stopping() || tokio::time::Instant::now() >= by);
        let pass = Pass {
            first: tries == 0,
            last,
        };
        match forward::forward(client, proxy, req, route, bufs, pass).await {
            Forwarded::Done(next) => return next,
            Forwarded::Refused(back, refused) => {
                if tries == 0 {
                    proxy.stats.rerouted.fetch_add(1, Ordering::Relaxed);
                }
                // Until the supervisor routes elsewhere, or, now and then, the same instance
                // once more: an app that closed its port for a moment may be back on it.
                let by = *by.get_or_insert_with(|| wait::bound(proxy));
                let again = tokio::time::Instant::now() + wait::recheck_after(tries);
                let _waiting = wait::Waiting::on(proxy);
                tokio::select! {
                    biased;
                    () = proxy.moved_from(&refused, by.min(again)) => {}
                    () = wait::gone(client, &mut bufs.buf, proxy) => return left(proxy),
                }
                (req, tries) = (back, tries + 1);
            }
        }
    }
}

/// understudy's answer to a request whose body was not read whole (see [`Unserved`]); it was
/// received, so it counts among the requests, as it did when its body broke off on its way to
/// running (a stop's, which reached nothing, as the 503s of waiting requests do not).
async fn refuse_body(
    client: &mut TcpStream,
    proxy: &Proxy,
    bufs: &mut Bufs,
    unserved: Unserved,
    ending: Ending,
) -> Next {
    if unserved != Unserved::Stopping {
        proxy.stats.requests.fetch_add(1, Ordering::Relaxed);
    }
    let Some((status, text)) = unserved.answer(&proxy.stats) else {
        return Next::Close;
    };
    let ending = Ending {
        close: true,
        retry_after: unserved.retry_after(),
        ..ending
    };
    own_answer(
        client,
        proxy,
        &mut bufs.out,
        status,
        text.as_bytes(),
        ending,
    )
    .await;
    // The rest of the body may still be on its way.
    Next::Linger
}

/// The route for a request (waiting, until `by`, while the guard brings a version back), or
/// understudy's 503 when nothing serves.
async fn choose(
    client: &mut TcpStream,
    proxy: &Proxy,
    bufs: &mut Bufs,
    ending: Ending,
    by: &mut Option<tokio::time::Instant>,
) -> Result<Route, Next> {
    let peer = || client.peer_addr().ok().map(|a| a.ip());
    let mut routed = proxy.route(&bufs.out, peer);
    if routed.is_err() {
        let by = *by.get_or_insert_with(|| wait::bound(proxy));
        let _waiting = wait::Waiting::on(proxy);
        let back = tokio::select! {
            // A user who asked and half-closed is answered when nothing is held for.
            biased;
            back = proxy.wait_for_running(by) => back,
            () = wait::gone(client, &mut bufs.buf, proxy) => return Err(left(proxy)),
        };
        if back {
            routed = proxy.route(&bufs.out, peer);
        }
    }
    let restarting = match routed {
        Ok(route) => return Ok(route),
        Err(restarting) => restarting,
    };
    proxy.stats.unavailable.fetch_add(1, Ordering::Relaxed);
    let status = StatusCode::SERVICE_UNAVAILABLE;
    // A crash loop's backoff: when running is started again, not in a second.
    let backoff = restarting.as_ref().and_then(|_| proxy.restart_in());
    let ending = Ending {
        retry_after: match (&restarting, backoff) {
            (None, _) => 0,
            (Some(_), None) => 1,
            (Some(_), Some(secs)) => secs,
        },
        // Stopping: the connection ends after this answer, and says so.
        close: ending.close || proxy.calls.stopping(),
        ..ending
    };
    let text = match (restarting, backoff) {
        // Waited for up to UPSTREAM_TIMEOUT already: the guard's rollback is slow.
        (Some(v), _) if proxy.holding() == Some(Hold::Rollback) => format!(
            "understudy: {v} is being brought back by a rollback and is not serving yet; retry in a moment\n"
        ),
        (Some(v), Some(secs)) => format!(
            "understudy: running {v} keeps failing and is started again in {secs} s; retry then\n"
        ),
        (Some(v), None) => format!("understudy: running {v} is restarting; retry in a moment\n"),
        (None, _) => String::from_utf8_lossy(&proxy.no_running_hint).into_owned(),
    };
    own_answer(
        client,
        proxy,
        &mut bufs.out,
        status,
        text.as_bytes(),
        ending,
    )
    .await;
    Err(next_after(ending))
}

/// The user left while its request waited: counted, and the connection closed.
fn left(proxy: &Proxy) -> Next {
    proxy.stats.left_waiting.fetch_add(1, Ordering::Relaxed);
    Next::Close
}

fn next_after(ending: Ending) -> Next {
    if ending.close {
        Next::Close
    } else {
        Next::KeepAlive
    }
}

/// Write one of understudy's own answers (within `SEND_TIMEOUT`).
async fn own_answer(
    client: &mut TcpStream,
    proxy: &Proxy,
    out: &mut Vec<u8>,
    status: StatusCode,
    text: &[u8],
    ending: Ending,
) {
    reply::send(client, out, status, text, ending, proxy.send_timeout).await;
}

/// Close the user's connection gracefully: say so (FIN), then read and drop what the user still
/// sends until it closes too, within `LINGERING_TIMEOUT`/`LINGERING_TIME`; sooner when understudy
/// stops or needs the connection's room.
async fn close_lingering(client: &mut TcpStream, proxy: &Proxy, scratch: &mut Vec<u8>) {
    let _ = client.shutdown().await;
    // What it held (a body never sent) goes: lingering needs a small buffer, for up to 30 s.
    if scratch.capacity() > LINGER_BUFFER {
        *scratch = Vec::new();
    }
    let mut end = tokio::time::Instant::now() + LINGERING_TIME;
    let mut call = std::pin::pin!(proxy.calls.call.notified());
    scratch.clear();
    scratch.reserve(4096);
    loop {
        let now = tokio::time::Instant::now();
        if proxy.calls.stopping() {
            end = end.min(now + LINGER);
        }
        let by = end.min(now + LINGERING_TIMEOUT);
        tokio::select! {
            r = tokio::time::timeout_at(by, client.read_buf(scratch)) => match r {
                Ok(Ok(1..)) => scratch.clear(),
                _ => return,
            },
            () = &mut call => return,
        }
    }
}
