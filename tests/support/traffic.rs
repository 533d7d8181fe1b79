//! Background traffic for the tests that need a build judged on evidence.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::http_request;

/// Each traffic client's pause between requests.
pub const PACE: Duration = Duration::from_millis(2);

/// GET `/api/items` (and one text endpoint) from two clients until stopped, each pausing 2 ms
/// between requests: evidence enough for every judgement here (40 pairs, moments of 250 ms), and
/// not the two cores of the whole suite (without the pause, the noise test alone took 19 s of CPU,
/// with it 10 s).
pub struct Traffic {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    clients: Vec<std::thread::JoinHandle<()>>,
}

impl Traffic {
    /// Traffic asking the judging tests' mix: `/api/items` twice, then `/hello`.
    pub fn start(addr: SocketAddr) -> Traffic {
        Traffic::on(addr, |i| ["/api/items", "/api/items", "/hello"][i % 3])
    }

    /// Traffic asking `path(i)` for i counting up from each client's start (0 and 1).
    pub fn on(addr: SocketAddr, path: fn(usize) -> &'static str) -> Traffic {
        Traffic::with_headers(addr, path, &[])
    }

    /// As [`Traffic::on`], each request carrying `headers`.
    pub fn with_headers(
        addr: SocketAddr,
        path: fn(usize) -> &'static str,
        headers: &'static [(&'static str, &'static str)],
    ) -> Traffic {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients = (0..2)
            .map(|t| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut i = t;
                    while !stop.load(Ordering::Relaxed) {
                        let _ = http_request(addr, "GET", path(i), headers, "");
                        std::thread::sleep(PACE);
                        i += 1;
                    }
                })
            })
            .collect();
        Traffic { stop, clients }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for c in self.clients.drain(..) {
            let _ = c.join();
        }
    }
}
