//! The process-wide memory budget for what understudy reads ahead (`ANSWER_MEMORY`): answers read
//! ahead of slow users, and request bodies read before running is asked. One budget, shared by
//! every proxy thread, so the memory all read-ahead holds stays bounded whatever the users do.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Read-ahead memory left for the whole process (`ANSWER_MEMORY`), shared by every proxy thread.
#[derive(Debug)]
pub struct AnswerMemory(AtomicUsize);

impl AnswerMemory {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> AnswerMemory {
        AnswerMemory(AtomicUsize::new(bytes))
    }

    /// Take `n` bytes of the budget, if that many are left.
    pub(super) fn take(&self, n: usize) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(n)
            })
            .is_ok()
    }

    /// Give back `n` bytes taken.
    pub(super) fn give_back(&self, n: usize) {
        self.0.fetch_add(n, Ordering::AcqRel);
    }
}

/// What one user's buffer holds of the budget (a body read ahead, or what came while its request
/// waited), given back when it is dropped: it lives with the buffer that holds the bytes, so the
/// budget is given back when that buffer shrinks or goes, on every path.
#[derive(Debug)]
pub(super) struct Held {
    memory: Arc<AnswerMemory>,
    bytes: usize,
}

impl Held {
    /// Nothing held yet, of `memory`.
    pub(super) fn new(memory: &Arc<AnswerMemory>) -> Held {
        Held {
            memory: memory.clone(),
            bytes: 0,
        }
    }

    /// Hold `n` more bytes, if the budget has them.
    pub(super) fn take(&mut self, n: usize) -> bool {
        let took = self.memory.take(n);
        if took {
            self.bytes += n;
        }
        took
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.memory.give_back(self.bytes);
    }
}
