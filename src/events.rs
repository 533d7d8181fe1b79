//! What understudy tells the outside world: each decision the supervisor makes becomes an
//! [`Event`], logged and broadcast to whoever listens (the demo today; SSE and webhooks later).

use serde::Serialize;
use tokio::sync::broadcast;

/// Something worth telling an operator.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A complete build was found in the base dir.
    BuildFound { file: String, version: String },
    /// A build was refused or rejected; its files are in `rejected/`.
    Rejected {
        version: String,
        reasons: Vec<String>,
    },
    /// An instance was started.
    Started {
        role: String,
        version: String,
        number: u32,
        port: u16,
    },
    /// An instance answers and now plays its role.
    Ready {
        role: String,
        version: String,
        number: u32,
        port: u16,
    },
    /// An instance exited on its own.
    Exited {
        role: String,
        version: String,
        status: String,
    },
    /// An instance was stopped.
    Stopped { version: String, number: u32 },
    /// The scorer evaluated testing.
    Scored {
        version: String,
        verdict: String,
        score: u32,
        pairs: u64,
        summary: String,
    },
    /// Traffic now goes to a new running version.
    Promoted { from: Option<String>, to: String },
    /// A version folder was zipped into the archive.
    Archived { version: String, zip: String },
    /// An old archive was deleted to stay within the size or disk budget.
    ArchiveDeleted { zip: String, reason: String },
}

/// The broadcast side; cheap to clone, never blocks (slow listeners lose old events).
#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(256).0,
        }
    }
}

impl Events {
    /// Log `e` and send it to every subscriber.
    pub fn emit(&self, e: Event) {
        tracing::info!(target: "understudy::events", "{}", serde_json::to_string(&e).unwrap_or_default());
        let _ = self.tx.send(e);
    }

    /// A new listener, seeing events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
