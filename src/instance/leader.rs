//! The leader of an instance's process group as its owner task sees it: a child understudy forked
//! itself and reaps, or one forked by its [watchdog](crate::watchdog), whose exit the watchdog
//! says on the link; only the latter can be handed to another understudy.

use std::os::fd::OwnedFd;

use tokio::io::AsyncReadExt;

use crate::watchdog;

/// What its owner waits on for the leader's exit.
#[derive(Debug)]
pub(super) enum Leader {
    /// Forked by understudy (no watchdog: the library's own tests): reaped here.
    Child(tokio::process::Child),
    /// Forked by its watchdog, which holds the other end of the link.
    Watched(Watched),
}

/// The link to a watchdog, the watchdog process when this understudy started it, and what the
/// link said so far.
#[derive(Debug)]
pub(super) struct Watched {
    link: tokio::net::UnixStream,
    watchdog: Option<tokio::process::Child>,
    /// Bytes of a line not yet complete; at most [`watchdog::MAX_LINE`].
    partial: Vec<u8>,
    exit: Option<String>,
}

impl Leader {
    /// A leader forked by a watchdog: `link` is understudy's end; `watchdog` is the process when
    /// this understudy started it (`None` once adopted from another one). Needs a runtime.
    pub(super) fn watched(
        link: OwnedFd,
        watchdog: Option<tokio::process::Child>,
    ) -> std::io::Result<Leader> {
        let link = std::os::unix::net::UnixStream::from(link);
        link.set_nonblocking(true)?;
        Ok(Leader::Watched(Watched {
            link: tokio::net::UnixStream::from_std(link)?,
            watchdog,
            partial: Vec::new(),
            exit: None,
        }))
    }

    /// Resolves once the leader has exited, with its status as text. Cancel-safe; once resolved
    /// it resolves again at once with the same status.
    pub(super) async fn wait(&mut self) -> String {
        match self {
            Leader::Child(child) => child
                .wait()
                .await
                .map(|s| s.to_string())
                .unwrap_or_else(|e| format!("unknown ({e})")),
            Leader::Watched(w) => w.wait().await,
        }
    }

    /// Once the leader is gone and its group stopped: tell the watchdog, which then reaps the
    /// leader and exits, and reap the watchdog if it is ours.
    pub(super) async fn finish(self) {
        use tokio::io::AsyncWriteExt;
        if let Leader::Watched(mut w) = self {
            let _ = w.link.write_all(&[watchdog::DONE]).await;
            if let Some(mut process) = w.watchdog {
                let _ = process.wait().await;
            }
        }
    }

    /// Let go of a running leader without stopping it: understudy's end of the link, for the
    /// understudy that takes over (`None` for a child forked without a watchdog).
    pub(super) fn release(self) -> Option<OwnedFd> {
        match self {
            Leader::Child(_) => None,
            // The watchdog process, if ours, is reaped by tokio once it exits, whenever.
            Leader::Watched(w) => w.link.into_std().ok().map(OwnedFd::from),
        }
    }
}

impl Watched {
    async fn wait(&mut self) -> String {
        loop {
            if let Some(status) = &self.exit {
                return status.clone();
            }
            let mut chunk = [0u8; 256];
            // `read` is cancel-safe: bytes read are kept in `partial` before the next await.
            match self.link.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    self.exit = Some("unknown (its watchdog ended without saying)".into());
                }
                Ok(n) => self.take(&chunk[..n]),
            }
        }
    }

    /// Keep `bytes`, and note the exit if a complete line says it.
    fn take(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b != b'\n' {
                if self.partial.len() < watchdog::MAX_LINE {
                    self.partial.push(b);
                }
                continue;
            }
            let line = String::from_utf8_lossy(&self.partial).into_owned();
            self.partial.clear();
            if let Some(status) = watchdog::parse_exit(&line) {
                self.exit.get_or_insert_with(|| status.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[tokio::test]
    async fn the_exit_line_is_found_across_reads_and_an_end_without_it_is_unknown() {
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut leader = Leader::watched(ours.into(), None).unwrap();
        theirs.write_all(b"junk\nexit exit st").unwrap();
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), leader.wait());
        assert!(waiting.await.is_err(), "no exit line yet");
        theirs.write_all(b"atus: 3\n").unwrap();
        assert_eq!(leader.wait().await, "exit status: 3");
        assert_eq!(leader.wait().await, "exit status: 3", "again at once");

        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut leader = Leader::watched(ours.into(), None).unwrap();
        drop(theirs);
        assert!(leader.wait().await.starts_with("unknown"));
    }

    #[tokio::test]
    async fn a_released_link_is_still_open_for_the_watchdog() {
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let leader = Leader::watched(ours.into(), None).unwrap();
        let fd = leader
            .release()
            .expect("a watched leader gives its link back");
        theirs
            .set_read_timeout(Some(std::time::Duration::from_millis(50)))
            .unwrap();
        let mut buf = [0u8; 1];
        let r = std::io::Read::read(&mut theirs, &mut buf);
        assert!(r.is_err(), "no end-of-file while the link is held: {r:?}");
        drop(fd);
        assert_eq!(std::io::Read::read(&mut theirs, &mut buf).unwrap(), 0);
    }
}
