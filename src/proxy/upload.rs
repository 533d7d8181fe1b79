//! The request phase between the head and running: a user's body read into understudy before
//! running is asked, up to `REQUEST_BUFFER` per request within `ANSWER_MEMORY` for all (nginx's
//! `proxy_request_buffering`), so a slow upload holds one of understudy's connections, never one
//! of running's (a thread-per-connection app's worker). `Expect: 100-continue` is answered here,
//! by understudy: running gets the head and the body together and never sees the expectation.

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::bufs::Bufs;
use super::framing::BadChunk;
use super::head::RequestHead;
use super::relay::Held;
use super::reply;
use super::Proxy;

/// How much more room the user's buffer gets at a time (doubling past it), counted in the budget.
const GROW: usize = 16 * 1024;

/// Why a body read ahead goes no further.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Unread {
    /// A chunked body that is not one (400).
    BadBody,
    /// A body past `MAX_REQUEST_BODY` (413).
    TooLarge,
    /// The user went away, or sent nothing for `HEADER_TIMEOUT`.
    ClientGone,
}

/// Read `req`'s body into `bufs.buf`, behind what is there, until it is whole, `REQUEST_BUFFER`
/// of it is there, or the memory budget is spent (the rest then streams at the user's pace);
/// a `100 Continue` first when the user waits for one. Nothing is consumed: the body is sent
/// from `bufs.buf` as if it had come with the head. What it holds of the budget is returned.
pub(super) async fn read_ahead<'p>(
    client: &mut TcpStream,
    proxy: &'p Proxy,
    req: &RequestHead,
    bufs: &mut Bufs,
) -> Result<Held<'p>, Unread> {
    let mut held = Held::new(&proxy.answer_memory);
    if req.expect && !req.http10 && bufs.buf.is_empty() {
        reply::write_timed(client, reply::CONTINUE, proxy.send_timeout)
            .await
            .map_err(|_| Unread::ClientGone)?;
    }
    let (mut framing, mut at) = (req.body, 0usize);
    loop {
        at += framing
            .feed(&bufs.buf[at..], &mut |_| {})
            .map_err(|BadChunk| Unread::BadBody)?;
        if at as u64 > proxy.limits.body {
            return Err(Unread::TooLarge);
        }
        if framing.done() || at >= proxy.request_buffer {
            return Ok(held);
        }
        if bufs.buf.len() == bufs.buf.capacity() {
            let more = bufs
                .buf
                .capacity()
                .clamp(GROW, proxy.request_buffer.max(GROW));
            if !held.take(more) {
                return Ok(held);
            }
            bufs.buf.reserve_exact(more);
        }
        match bufs.head_timer.bound(client.read_buf(&mut bufs.buf)).await {
            Some(Ok(1..)) => {}
            _ => return Err(Unread::ClientGone),
        }
    }
}
