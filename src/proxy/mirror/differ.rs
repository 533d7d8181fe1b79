//! The threads that diff pairs, off the proxy's and the mirror's runtime.

use std::sync::Arc;

/// Threads that diff pairs. Parsing two large JSON answers is CPU work: it runs on these threads
/// only, at a lower scheduling priority (nice +10), so it uses what the proxy leaves of the cores
/// and never competes with users; their transient memory is bounded by their number.
const DIFF_THREADS: usize = 2;

/// Pairs waiting for a diff thread; when full, a pair is not compared (counted) rather than
/// waited for, so diffing sheds load by itself.
const DIFF_QUEUE: usize = 4;

/// Sampled copies (captured answers, a copy to the secondary) in flight at once; past it a copy
/// is mirrored without being diffed, so the diffing's extra work stays bounded under load.
pub const MAX_SAMPLED_IN_FLIGHT: usize = 16;

/// One pair's comparison, run on a diff thread.
type DiffWork = Box<dyn FnOnce() + Send>;

/// The low-priority diff threads and the queue to them.
pub(super) struct Differ {
    tx: std::sync::mpsc::SyncSender<DiffWork>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Differ {
    pub(super) fn start() -> Differ {
        let (tx, rx) = std::sync::mpsc::sync_channel::<DiffWork>(DIFF_QUEUE);
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let threads = (0..DIFF_THREADS)
            .filter_map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("understudy-diff-{i}"))
                    .spawn(move || {
                        lower_priority();
                        loop {
                            // The lock is held only to take the next item, never while diffing.
                            let next = rx.lock().map(|r| r.recv());
                            match next {
                                Ok(Ok(work)) => work(),
                                _ => return,
                            }
                        }
                    })
                    .ok()
            })
            .collect();
        Differ { tx, threads }
    }

    /// Run `f` on a diff thread and await its result; `None` when the threads are all busy and
    /// their queue is full (the caller then does without).
    pub(super) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let work: DiffWork = Box::new(move || {
            // A bug in one comparison costs that pair, not the thread.
            if let Ok(out) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                let _ = tx.send(out);
            }
        });
        self.tx.try_send(work).ok()?;
        rx.await.ok()
    }

    /// Close the queue and wait for the threads to finish what they hold.
    pub(super) async fn stop(self) {
        drop(self.tx);
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// Make the calling thread yield the CPU to understudy's other threads (nice +10, this thread
/// only: Linux keeps a nice value per thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority only read and set this thread's scheduling priority.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}
