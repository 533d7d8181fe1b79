//! What a user connection holds between its requests: three buffers and two timers, reused by
//! each request, and what the connection does after one.

use std::time::Duration;

use super::budget::Held;
use super::spill::Spill;
use super::timer::Timer;

/// Buffers kept between requests up to this size; a larger one (after a large answer) goes.
const KEPT_BUFFER: usize = 64 * 1024;

/// A user connection's buffers and timers, reused by each of its requests.
pub struct Bufs {
    /// What the user sent and is not handled yet (the next head, the rest of a body).
    pub buf: Vec<u8>,
    /// What goes out next: a rewritten head (to the instance) or an answer (to the user).
    pub out: Vec<u8>,
    /// What the instance sent and is not relayed yet.
    pub answer: Vec<u8>,
    /// `HEADER_TIMEOUT`: for a request head (and, for `BODY_TIMEOUT`, between the reads of a
    /// request body: idle then).
    pub head_timer: Timer,
    /// `UPSTREAM_TIMEOUT`: for running's answer head.
    pub upstream_timer: Timer,
    /// What `buf`'s growth for a request body read ahead holds of `ANSWER_MEMORY`: it goes with
    /// that growth ([`Bufs::release_ahead`]), or with the connection.
    pub ahead: Option<Held>,
    /// The rest of a body read ahead once `ANSWER_MEMORY` had no more room: on disk, after the
    /// body's first bytes in `buf` (how many: the `usize`; what follows them there is the next
    /// request's).
    pub spilled: Option<(Spill, usize)>,
}

impl Bufs {
    /// Empty buffers (the read buffer with room for a small head) and the two timers.
    pub fn new(header_timeout: Duration, upstream_timeout: Duration) -> Bufs {
        Bufs {
            buf: Vec::with_capacity(4096),
            out: Vec::new(),
            answer: Vec::new(),
            head_timer: Timer::new(header_timeout),
            upstream_timer: Timer::new(upstream_timeout),
            ahead: None,
            spilled: None,
        }
    }

    /// A body read ahead has gone to running (or will never go): `buf`'s growth for it goes, and
    /// with it what that held of the budget, before the answer is relayed at the user's pace.
    pub fn release_ahead(&mut self) {
        self.spilled = None;
        if self.ahead.take().is_some() {
            self.buf.shrink_to(KEPT_BUFFER.max(self.buf.len()));
        }
    }

    /// Between requests: a buffer grown by a large answer or head goes, so an idle connection
    /// holds little (a body read ahead was released after its request, [`Bufs::release_ahead`]).
    pub fn shrink(&mut self) {
        if self.out.capacity() > KEPT_BUFFER {
            self.out = Vec::new();
        }
        if self.answer.capacity() > KEPT_BUFFER {
            self.answer = Vec::new();
        }
        if self.buf.capacity() > KEPT_BUFFER && self.buf.len() < KEPT_BUFFER {
            self.buf.shrink_to(KEPT_BUFFER);
        }
    }
}

/// What the user's connection does after a request.
pub enum Next {
    /// Read the next request.
    KeepAlive,
    /// Close it.
    Close,
    /// Close it, though the user may still be sending (a body or head left unread): what comes
    /// is read and dropped for a while so the answer is not lost to a reset.
    Linger,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::proxy::budget::AnswerMemory;

    /// The review's case: a body read ahead left its megabyte in the user's buffer, and its share
    /// of the budget given back, while a slow user took the answer: memory the budget no longer
    /// counted. Released, the buffer shrinks and the budget comes back together.
    #[tokio::test]
    async fn a_body_read_ahead_gives_back_its_room_and_its_budget_together() {
        let memory = Arc::new(AnswerMemory::new(2 << 20));
        let mut bufs = Bufs::new(Duration::from_secs(1), Duration::from_secs(1));
        let mut held = Held::new(&memory);
        assert!(held.take(1 << 20));
        bufs.buf.reserve_exact(1 << 20);
        bufs.ahead = Some(held);
        assert!(!memory.take(2 << 20), "the body's share is held");
        bufs.buf.extend_from_slice(b"GET / HTTP/1.1\r\n");
        bufs.release_ahead();
        assert!(
            bufs.buf.capacity() <= KEPT_BUFFER,
            "{}",
            bufs.buf.capacity()
        );
        assert_eq!(
            bufs.buf, b"GET / HTTP/1.1\r\n",
            "what follows the body stays"
        );
        assert!(memory.take(2 << 20), "the whole budget is back");
    }
}
