//! What a user connection holds between its requests: three buffers and two timers, reused by
//! each request, and what the connection does after one.

use std::time::Duration;

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
    /// `HEADER_TIMEOUT`: for a request head, and between the reads of a request body.
    pub head_timer: Timer,
    /// `UPSTREAM_TIMEOUT`: for running's answer head.
    pub upstream_timer: Timer,
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
        }
    }

    /// Between requests: a buffer grown by a large answer or head goes, so an idle connection
    /// holds little.
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
