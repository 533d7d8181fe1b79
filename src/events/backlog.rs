//! The broadcast side of events: each is numbered (on across runs, from a reservation in
//! `.understudy/events.seq`), kept in a bounded backlog for listeners that reconnect, and sent to
//! whoever listens; a slow listener loses old events, the supervisor never waits.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::{Event, Stamped, EVENT_BACKLOG};

/// The broadcast side; cheap to clone, never blocks (slow listeners lose old events).
#[derive(Clone)]
pub struct Events {
    inner: Arc<Mutex<Backlog>>,
    tx: broadcast::Sender<Arc<Stamped>>,
}

/// How many event numbers one write of the reservation file covers: the most a restart can skip.
pub const SEQ_BLOCK: u64 = 1000;

/// The last [`EVENT_BACKLOG`] events and the next number.
struct Backlog {
    next: u64,
    kept: VecDeque<Arc<Stamped>>,
    /// Where numbers are reserved, and up to which one (inclusive); none for a run that keeps no
    /// base dir (tests).
    reserved: Option<(PathBuf, u64)>,
}

impl Backlog {
    /// Extend the reservation past `next` before `next` is given out. A write that fails is
    /// logged, and numbers go on from memory (a later run may then give some again).
    fn reserve(&mut self) {
        let Some((path, upto)) = &mut self.reserved else {
            return;
        };
        if self.next <= *upto {
            return;
        }
        // Another process of this base dir (an upgrade's successor, given up or still taking
        // over) may have reserved past ours: number on past its numbers, never among them.
        self.next = self.next.max(read_reservation(path).saturating_add(1));
        *upto = self.next.saturating_add(SEQ_BLOCK - 1);
        if let Err(e) = crate::layout::write_atomic(path, format!("{upto}\n").as_bytes()) {
            tracing::warn!(
                "cannot reserve event numbers in {}: {e}; after a restart, events may be \
                 numbered again from an earlier number",
                path.display()
            );
        }
    }
}

impl Default for Events {
    fn default() -> Self {
        Events::numbered_from(1, None)
    }
}

impl Events {
    /// Events numbered on from where the last run's reservation in `path` (`.understudy/
    /// events.seq`) ends, so an SSE client's `Last-Event-ID` or a webhook receiver's last number
    /// from before a restart or an upgrade still orders and tells apart what comes after it.
    pub fn continuing(path: PathBuf) -> Events {
        let last = read_reservation(&path);
        Events::numbered_from(last.saturating_add(1), Some((path, last)))
    }

    /// Number on past whatever another process of this base dir reserved meanwhile: called when
    /// an upgrade's successor gave up, after numbering its own events from past ours.
    pub fn catch_up(&self) {
        let mut b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((path, _)) = &b.reserved {
            b.next = b.next.max(read_reservation(path).saturating_add(1));
            b.reserve();
        }
    }

    fn numbered_from(next: u64, reserved: Option<(PathBuf, u64)>) -> Events {
        let mut backlog = Backlog {
            next,
            kept: VecDeque::with_capacity(EVENT_BACKLOG),
            reserved,
        };
        backlog.reserve();
        Events {
            inner: Arc::new(Mutex::new(backlog)),
            tx: broadcast::channel(EVENT_BACKLOG).0,
        }
    }

    /// Stamp `e`, log it, keep it in the backlog and send it to every subscriber.
    pub fn emit(&self, e: Event) {
        e.log();
        let at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        b.reserve();
        let stamped = Arc::new(Stamped {
            seq: b.next,
            at,
            event: e,
        });
        b.next = b.next.saturating_add(1);
        if b.kept.len() == EVENT_BACKLOG {
            b.kept.pop_front();
        }
        b.kept.push_back(stamped.clone());
        // Sent under the lock, so a subscriber's backlog and its receiver never overlap or gap.
        let _ = self.tx.send(stamped);
    }

    /// A new listener, seeing events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Stamped>> {
        self.tx.subscribe()
    }

    /// A listener resuming after event `last`: the kept events after it, then everything new.
    /// Events older than the backlog are gone; the first one returned says where it resumes.
    pub fn subscribe_after(
        &self,
        last: u64,
    ) -> (Vec<Arc<Stamped>>, broadcast::Receiver<Arc<Stamped>>) {
        let b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let missed = b.kept.iter().filter(|e| e.seq > last).cloned().collect();
        (missed, self.tx.subscribe())
    }

    /// The most recent events, oldest first, at most `n`.
    pub fn recent(&self, n: usize) -> Vec<Arc<Stamped>> {
        let b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        b.kept.iter().rev().take(n).rev().cloned().collect()
    }
}

/// The last reserved number in `path`: 0 when there is none yet; a file that is not one number
/// (read no further than 64 bytes) is logged and taken as none.
fn read_reservation(path: &std::path::Path) -> u64 {
    use std::io::Read;
    let mut text = String::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(64).read_to_string(&mut text));
    match read {
        // Past 2^52 is no number this file was given (and would near JavaScript's exact range).
        Ok(_) => text
            .trim()
            .parse()
            .ok()
            .filter(|&n: &u64| n < 1 << 52)
            .unwrap_or_else(|| {
                tracing::warn!(
                "{} does not hold an event number ({text:?}): numbering events from 1; delete it \
                 to silence this",
                path.display()
            );
                0
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => {
            tracing::warn!(
                "cannot read {}: {e}: numbering events from 1",
                path.display()
            );
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_go_on_across_runs_and_past_a_reservation() {
        let dir = std::env::temp_dir().join(format!("understudy-seq-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.seq");
        let _ = std::fs::remove_file(&path);
        let first = Events::continuing(path.clone());
        for _ in 0..SEQ_BLOCK + 5 {
            first.emit(Event::Paused);
        }
        let last = first.recent(1)[0].seq;
        assert_eq!(last, SEQ_BLOCK + 5, "from 1, past the first reservation");
        // The next run (a restart, or the new process of an upgrade) numbers on past them all.
        let second = Events::continuing(path.clone());
        second.emit(Event::Resumed);
        let next = second.recent(1)[0].seq;
        assert!(
            next > last && next <= last + SEQ_BLOCK,
            "{last} then {next}"
        );
        // A resuming client that saw the first run's last event gets the second run's.
        let (missed, _) = second.subscribe_after(last);
        assert_eq!(missed.len(), 1);
        // A successor that gave up numbered its events past ours: we go on past them.
        let ours = Events::continuing(path.clone());
        let theirs = Events::continuing(path.clone());
        theirs.emit(Event::Paused);
        ours.catch_up();
        ours.emit(Event::Resumed);
        assert!(ours.recent(1)[0].seq > theirs.recent(1)[0].seq);
        // One that reserved past ours while ours drained: our next block starts past theirs.
        let ours = Events::continuing(path.clone());
        let theirs = Events::continuing(path.clone());
        for _ in 0..SEQ_BLOCK {
            ours.emit(Event::Paused);
        }
        theirs.emit(Event::Resumed);
        ours.emit(Event::Paused);
        assert!(ours.recent(1)[0].seq > theirs.recent(1)[0].seq);
        // A file that holds no number, or one past any this file was given: from 1 again,
        // without a panic or an overflow.
        for text in ["not a number", "18446744073709551615"] {
            std::fs::write(&path, text).unwrap();
            let third = Events::continuing(path.clone());
            third.emit(Event::Paused);
            assert_eq!(third.recent(1)[0].seq, 1);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_listener_resuming_after_an_event_gets_exactly_what_followed() {
        let events = Events::default();
        for _ in 0..5 {
            events.emit(Event::Paused);
        }
        let (missed, mut rx) = events.subscribe_after(3);
        assert_eq!(missed.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 5]);
        events.emit(Event::Resumed);
        let next = rx.try_recv().unwrap();
        assert_eq!((next.seq, next.name().as_str()), (6, "resumed"));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn the_backlog_is_bounded() {
        let events = Events::default();
        for _ in 0..EVENT_BACKLOG + 10 {
            events.emit(Event::Paused);
        }
        let (missed, _) = events.subscribe_after(0);
        assert_eq!(missed.len(), EVENT_BACKLOG);
        assert_eq!(missed[0].seq, 11);
    }
}
