//! The request phase between the head and the route: a user's body read into understudy before
//! an instance is chosen and asked, up to `REQUEST_BUFFER` per request within `ANSWER_MEMORY` for
//! all (nginx's `proxy_request_buffering`), so a slow upload holds one of understudy's
//! connections, never one of running's (a thread-per-connection app's worker), and goes to
//! whatever serves once it is whole. `Expect: 100-continue` is answered here, by understudy:
//! running gets the head and the body together and never sees the expectation.

use std::time::Duration;

use bytes::BufMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::budget::Held;
use super::bufs::Bufs;
use super::framing::{BadChunk, Framing};
use super::head::RequestHead;
use super::reply::{self, Unserved};
use super::Proxy;

/// The least room the user's buffer grows by at a time (doubling past it), counted in the budget.
const GROW: usize = 16 * 1024;

/// Read `req`'s body into `bufs.buf`, behind what is there, until it is whole or `REQUEST_BUFFER`
/// of it is in (past `ANSWER_MEMORY`, the rest of that goes to a spill file within `ANSWER_SPILL`;
/// past both, the rest streams at the user's pace); a `100 Continue` first when the user waits
/// for one. Nothing is consumed: the body is sent from `bufs.buf` (and `bufs.spilled`) as if it
/// had come with the head. At a stop the user has `linger` to finish.
pub(super) async fn read_ahead(
    client: &mut TcpStream,
    proxy: &Proxy,
    req: &RequestHead,
    bufs: &mut Bufs,
    linger: Duration,
) -> Result<(), Unserved> {
    if req.expect && !req.http10 && bufs.buf.is_empty() && proxy.request_buffer > 0 {
        reply::write_timed(client, reply::CONTINUE, proxy.send_timeout)
            .await
            .map_err(|_| Unserved::ClientGone)?;
    }
    let mut stopped = std::pin::pin!(proxy.calls.stopped_then(linger));
    let (mut framing, mut at) = (req.body, 0usize);
    // What is read while the body spills, before it goes to disk (allocated only then).
    let mut piece = Vec::new();
    loop {
        if bufs.spilled.is_none() {
            at += framing
                .feed(&bufs.buf[at..], &mut |_| {})
                .map_err(|BadChunk| Unserved::BadBody)?;
        }
        let seen = at
            + bufs
                .spilled
                .as_ref()
                .map_or(0, |(s, _)| s.waiting() as usize);
        if seen as u64 > proxy.limits.body {
            return Err(Unserved::TooLarge);
        }
        let room = proxy.request_buffer.saturating_sub(seen);
        if framing.done() || room == 0 || !make_room(proxy, bufs, (framing, at, room)) {
            return Ok(());
        }
        let spilling = bufs.spilled.is_some();
        // While spilling, at most what the spill reserved ([`make_room`]) is read at a time.
        let into = if spilling {
            piece.clear();
            piece.reserve_exact(GROW);
            (&mut piece).limit(GROW.min(room))
        } else {
            (&mut bufs.buf).limit(usize::MAX)
        };
        let mut into = into;
        tokio::select! {
            biased;
            r = bufs.head_timer.bound_for(proxy.body_timeout, client.read_buf(&mut into)) => match r {
                Some(Ok(1..)) => {}
                _ => return Err(Unserved::ClientGone),
            },
            () = &mut stopped => return Err(Unserved::Stopping),
        }
        if spilling {
            spill_piece(bufs, &mut framing, &piece)?;
        }
    }
}

/// Room for the next read of a body (`framing` as it stands, `at` of it in `bufs.buf`, `room`
/// left of `REQUEST_BUFFER`): in `bufs.buf` while the budget allows, then in a spill file (opened
/// here), whose budget is reserved for the read to come; `false` past both.
fn make_room(proxy: &Proxy, bufs: &mut Bufs, (framing, at, room): (Framing, usize, usize)) -> bool {
    if bufs.spilled.is_none() {
        if bufs.buf.len() < bufs.buf.capacity() || grow(proxy, bufs, framing, room) {
            return true;
        }
        let Some(spill) = proxy.spills.open() else {
            return false;
        };
        bufs.spilled = Some((spill, at));
    }
    bufs.spilled
        .as_mut()
        .is_some_and(|(spill, _)| spill.reserve(GROW.min(room)))
}

/// A `piece` read while the body spills: its body bytes to disk (their budget reserved), what
/// follows the body (a pipelined request) behind the body's first bytes in `bufs.buf`.
fn spill_piece(bufs: &mut Bufs, framing: &mut Framing, piece: &[u8]) -> Result<(), Unserved> {
    let took = framing
        .feed(piece, &mut |_| {})
        .map_err(|BadChunk| Unserved::BadBody)?;
    let Some((spill, _)) = bufs.spilled.as_mut() else {
        return Ok(());
    };
    spill.write(&piece[..took]).map_err(|e| {
        tracing::warn!("a request body read ahead could not be kept on disk: {e}");
        Unserved::Disk
    })?;
    spill.unreserve();
    bufs.buf.reserve_exact(piece.len() - took);
    bufs.buf.extend_from_slice(&piece[took..]);
    Ok(())
}

/// Give the full `bufs.buf` room for more of a body (`framing` as it stands, `room` left of
/// `REQUEST_BUFFER`): double, never past what a length says is still to come nor `room`, so the
/// budget held stays within twice what the user sent; `false` when the budget has none left.
fn grow(proxy: &Proxy, bufs: &mut Bufs, framing: Framing, room: usize) -> bool {
    let left = match framing {
        Framing::Length(left) => usize::try_from(left).unwrap_or(usize::MAX),
        _ => usize::MAX,
    };
    let more = bufs.buf.capacity().max(GROW).min(left).min(room);
    let held = (bufs.ahead).get_or_insert_with(|| Held::new(&proxy.answer_memory));
    if !held.take(more) {
        return false;
    }
    bufs.buf.reserve_exact(more);
    true
}
