//! What the instance tests share: an installed build, a launch spec, a rig that starts instances
//! on a spawner, free ports and a liveness check.

use std::path::Path;
use std::time::Duration;

use semver::Version;
use tokio::sync::mpsc;

use super::*;
use crate::artifact::{Installed, Kind};
use crate::layout::{Layout, Role};

pub(super) fn installed(vdir: &Path, kind: Kind) -> Installed {
    let program = vdir.join(match kind {
        Kind::Jar => "app-1.0.0.jar",
        _ => "app-1.0.0",
    });
    std::fs::write(&program, "#!/bin/sh\n").unwrap();
    Installed {
        version: Version::new(1, 0, 0),
        program,
        kind,
    }
}

pub(super) fn spec(installed: Installed, port: u16, command: &[&str]) -> LaunchSpec {
    LaunchSpec {
        id: InstanceId(1),
        role: Role::Testing,
        installed,
        port,
        command: command.iter().map(|w| w.to_string()).collect(),
        port_key: "server.port".into(),
        properties: None,
        probe: ProbeSpec {
            host: "127.0.0.1".into(),
            path: None,
            timeout: Duration::from_millis(200),
            health_path: None,
            heartbeat_every: Duration::ZERO,
            heartbeat_misses: 3,
        },
        grace: Duration::from_millis(300),
        watchdog: None,
    }
}

/// A base dir with the version folder of app 1.0.0, and a spawner.
pub(super) struct Rig {
    pub(super) base: tempfile::TempDir,
    layout: Layout,
    spawner: Spawner,
    pub(super) events: mpsc::UnboundedReceiver<InstanceEvent>,
    tx: mpsc::UnboundedSender<InstanceEvent>,
}

impl Rig {
    pub(super) fn new() -> Rig {
        let base = tempfile::tempdir().unwrap();
        let layout = Layout::new(base.path(), "app");
        std::fs::create_dir_all(layout.version_dir(&Version::new(1, 0, 0))).unwrap();
        let (spawner, _thread) = Spawner::new(tokio::runtime::Handle::current()).unwrap();
        let (tx, events) = mpsc::unbounded_channel();
        Rig {
            base,
            layout,
            spawner,
            events,
            tx,
        }
    }

    pub(super) fn spec(&self, port: u16, command: &[&str]) -> LaunchSpec {
        let vdir = self.layout.version_dir(&Version::new(1, 0, 0));
        spec(installed(&vdir, Kind::Executable), port, command)
    }

    pub(super) async fn start(&self, spec: LaunchSpec) -> Result<Instance, InstanceError> {
        let (layout, tx) = (self.layout.clone(), self.tx.clone());
        self.spawner
            .run(move || Instance::start(&layout, spec, tx))
            .await
            .unwrap()
    }

    pub(super) async fn next_event(&mut self) -> InstanceEventKind {
        tokio::time::timeout(Duration::from_secs(10), self.events.recv())
            .await
            .expect("an instance event within 10 s")
            .expect("the channel stays open")
            .kind
    }
}

/// A free port below the kernel's ephemeral range (32768+), so no outgoing connection of a
/// parallel test takes it between the check and the start; each call gets a new one. Within
/// 20100-20999: clear of the slices the integration tests give their children (21000-31999) and
/// of the demo's range (24000-24999), either of which may run beside these tests.
pub(super) fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = 20100 + (std::process::id() % 9) as u16 * 100;
    loop {
        let p = start + NEXT.fetch_add(1, Ordering::Relaxed) % 100;
        if port_is_free(p) {
            return p;
        }
    }
}

/// Alive and not a zombie (a zombie has been killed; it only waits for its parent).
pub(super) fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_string()))
        .is_some_and(|r| !r.starts_with('Z') && !r.starts_with('X'))
}
