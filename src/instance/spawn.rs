//! Starting a child: its instance folder made ready (the artifact linked, the properties file
//! copied with the port rewritten), its argv and stdio, the fork into its own process group, and
//! the one long-lived [`Spawner`] thread every child must be forked from.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::leader::Leader;
use super::owner::signal_group;
use super::{io_err, InstanceError, LaunchSpec};
use crate::artifact::Kind;
use crate::watchdog;

/// A child just forked in its instance folder, guarded by its watchdog, for its owner task.
pub(super) struct Launched {
    /// The leader of the child's process group, as its owner waits on it.
    pub(super) leader: Leader,
    /// Its pid, which is also its process group id.
    pub(super) pid: u32,
}

/// Blocking: prepare `dir` (artifact link, properties), fork the child (through its watchdog
/// when one is asked for) and record it in `instance.json`. `base` is where a relative properties
/// path starts.
pub(super) fn launch(
    base: &Path,
    spec: &LaunchSpec,
    dir: &Path,
    number: u32,
) -> Result<Launched, InstanceError> {
    link_artifact(dir, &spec.installed.program)?;
    let with_properties = match &spec.properties {
        Some(src) => write_properties(base, src, dir, &spec.port_key, spec.port)?,
        None => false,
    };
    let argv = build_argv(spec, dir, with_properties);
    let stdio = open_stdio(dir)?;
    let spawn_err = |source| InstanceError::Spawn {
        command: argv.join(" "),
        dir: dir.to_path_buf(),
        source,
    };
    if argv.is_empty() {
        return Err(spawn_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the start command is empty: set JAR_COMMAND or EXEC_COMMAND",
        )));
    }
    let (leader, pid, watchdog_pid) = match &spec.watchdog {
        Some(program) => {
            let started = watchdog::spawn(program, dir, &argv, |cmd| child_env(cmd, spec, stdio))
                .map_err(spawn_err)?;
            let watchdog_pid = started.watchdog.id();
            let pid = started.pid;
            let leader = Leader::watched(started.link, Some(started.watchdog)).map_err(|e| {
                // Unwatched, the group would outlive a hard kill of understudy: not started.
                signal_group(Pid::from_raw(pid as i32), Signal::SIGKILL);
                spawn_err(e)
            })?;
            (leader, pid, watchdog_pid)
        }
        None => {
            let child = spawn_child(&argv, dir, spec, stdio).map_err(spawn_err)?;
            let pid = child
                .id()
                .expect("a just-spawned, unreaped child has a pid");
            (Leader::Child(child), pid, None)
        }
    };
    let command_line = argv.join(" ");
    write_instance_json(dir, spec, number, pid, watchdog_pid, &command_line);
    tracing::info!(
        "started {} {} #{number} (pid {pid}, port {}): {command_line}",
        spec.role,
        spec.installed.version,
        spec.port
    );
    Ok(Launched { leader, pid })
}

/// Link the program into the instance folder, as Vili keeps one, so the folder says what ran.
fn link_artifact(dir: &Path, program: &Path) -> Result<(), InstanceError> {
    let name = program
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("artifact"));
    let link = dir.join(name);
    let _ = std::fs::remove_file(&link);
    // Relative (`../app-1.2.0.jar`), so the base dir can be moved and archives stay readable.
    let target = dir
        .parent()
        .and_then(|vdir| program.strip_prefix(vdir).ok())
        .map(|rel| Path::new("..").join(rel))
        .unwrap_or_else(|| program.to_path_buf());
    std::os::unix::fs::symlink(&target, &link).map_err(io_err("cannot link artifact as", &link))
}

/// Copy the properties file into `dir` (same file name) with the port rewritten. Returns whether
/// it was written; an unreadable source is logged and the port is passed without it.
fn write_properties(
    base: &Path,
    src: &Path,
    dir: &Path,
    key: &str,
    port: u16,
) -> Result<bool, InstanceError> {
    let src = base.join(src); // an absolute `src` stays as it is
    let Some(name) = src.file_name() else {
        tracing::warn!(
            "properties file {} has no file name; passing the port without it",
            src.display()
        );
        return Ok(false);
    };
    let dst = dir.join(name);
    let text = match std::fs::read_to_string(&src) {
        Ok(text) => text,
        Err(e) => {
            tracing::warn!(
                "properties file {} not readable ({e}); passing the port without it",
                src.display()
            );
            return Ok(false);
        }
    };
    std::fs::write(&dst, rewrite_property(&text, key, port))
        .map_err(io_err("cannot write properties", &dst))?;
    Ok(true)
}

/// The command's words with placeholders replaced; a `java` jar start without a properties file
/// gets `-D<key>=<port>`, as Vili does, right after the first word naming `java` (so a wrapper
/// such as `nice -n 5 java -jar …` or `/usr/bin/env java …` passes it to the JVM too).
fn build_argv(spec: &LaunchSpec, dir: &Path, with_properties: bool) -> Vec<String> {
    let program = spec.installed.program.to_string_lossy();
    let port = spec.port.to_string();
    let dir = dir.to_string_lossy();
    let mut argv: Vec<String> = spec
        .command
        .iter()
        .map(|w| {
            w.replace("{artifact}", &program)
                .replace("{port}", &port)
                .replace("{dir}", &dir)
        })
        .collect();
    let java = argv.iter().position(|w| Path::new(w).ends_with("java"));
    if let Some(at) = java.filter(|_| spec.installed.kind == Kind::Jar && !with_properties) {
        argv.insert(at + 1, format!("-D{}={}", spec.port_key, spec.port));
    }
    argv
}

/// The child's stdout and stderr files in its instance folder.
struct ChildStdio {
    stdout: std::fs::File,
    stderr: std::fs::File,
}

/// Open (empty) the child's `stdout` and `stderr`, appending (`O_APPEND`): the collection bounds
/// them by copying a file's tail aside and truncating it (`archive::rotate`), and only an
/// appending writer then goes on at the new start instead of leaving a hole up to where it was.
fn open_stdio(dir: &Path) -> Result<ChildStdio, InstanceError> {
    let open = |name: &str| {
        let path = dir.join(name);
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .and_then(|f| f.set_len(0).map(|()| f))
            .map_err(io_err("cannot create", &path))
    };
    Ok(ChildStdio {
        stdout: open("stdout")?,
        stderr: open("stderr")?,
    })
}

/// What the child gets from understudy whoever forks it: its port and role in the environment,
/// no stdin, its stdout and stderr files.
fn child_env(cmd: &mut tokio::process::Command, spec: &LaunchSpec, stdio: ChildStdio) {
    cmd.env("PORT", spec.port.to_string())
        .env("UNDERSTUDY_ROLE", spec.role.as_str())
        .env("UNDERSTUDY_VERSION", spec.installed.version.to_string())
        .stdin(Stdio::null())
        .stdout(stdio.stdout)
        .stderr(stdio.stderr);
}

/// Spawn the child directly (no watchdog: the library's own tests) as the leader of its own
/// process group, killed by the kernel if the spawning thread (the [`Spawner`]) or understudy dies.
fn spawn_child(
    argv: &[String],
    dir: &Path,
    spec: &LaunchSpec,
    stdio: ChildStdio,
) -> io::Result<tokio::process::Child> {
    let (program, args) = argv.split_first().expect("checked non-empty by launch");
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).current_dir(dir);
    child_env(&mut cmd, spec, stdio);
    cmd.process_group(0).kill_on_drop(true);
    let parent = nix::unistd::getpid();
    // SAFETY: `pre_exec` runs in the forked child before exec, where only async-signal-safe work
    // is allowed. The closure only makes two raw syscalls through nix (prctl, getppid), compares
    // integers and builds an `io::Error` from an errno code, which does not allocate; it takes no
    // locks and touches no state shared with other threads of the parent.
    unsafe {
        cmd.pre_exec(move || {
            // If the spawning thread or understudy dies, even by SIGKILL, the kernel kills the child.
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // Understudy died between fork and prctl: the signal will never come, so do not run.
            if nix::unistd::getppid() != parent {
                return Err(Errno::ESRCH.into());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Record what runs in the folder; a failure only loses information, so it is logged.
fn write_instance_json(
    dir: &Path,
    spec: &LaunchSpec,
    number: u32,
    pid: u32,
    watchdog: Option<u32>,
    command: &str,
) {
    let info = serde_json::json!({
        "version": spec.installed.version.to_string(),
        "role": spec.role,
        "number": number,
        "port": spec.port,
        "pid": pid,
        "watchdog_pid": watchdog,
        "command": command,
        // Its stdout and stderr append: the collection may rotate them (an older understudy's
        // children, kept across an upgrade, write at their own offsets and are left alone).
        "stdio": "append",
        "started_unix_ms": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    });
    let path = dir.join("instance.json");
    let bytes = serde_json::to_vec_pretty(&info).unwrap_or_default();
    if let Err(e) = crate::layout::write_atomic(&path, &bytes) {
        tracing::warn!("cannot write {}: {e}", path.display());
    }
}

/// Whether nobody is bound to `port` right now, on 0.0.0.0 or on [::] (any address of either
/// family, so a child listening on 127.0.0.1 or ::1 only also counts as bound).
pub fn port_is_free(port: u16) -> bool {
    let v4 = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok();
    // Without IPv6 on the host, nobody can be bound there.
    let v6 = match TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)) {
        Ok(_) => true,
        Err(e) => e.kind() != io::ErrorKind::AddrInUse,
    };
    v4 && v6
}

/// Runs jobs (child spawns) on one long-lived thread: `PR_SET_PDEATHSIG` fires when the *thread*
/// that forked a child exits, so children must never be spawned from a short-lived thread.
#[derive(Debug, Clone)]
pub struct Spawner {
    jobs: std::sync::mpsc::Sender<Job>,
}

type Job = Box<dyn FnOnce() + Send>;

/// The spawner thread has ended (every handle was dropped) or the job panicked.
#[derive(Debug, thiserror::Error)]
#[error("the spawner thread is gone or the job panicked: no child was started")]
pub struct SpawnerGone;

impl Spawner {
    /// Start the thread; `rt` is entered on it so `tokio::process` and `tokio::spawn` work there.
    /// The thread ends when every `Spawner` clone is dropped, which kills the children it forked.
    pub fn new(rt: tokio::runtime::Handle) -> io::Result<(Spawner, std::thread::JoinHandle<()>)> {
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("understudy-spawner".into())
            .spawn(move || {
                let _rt = rt.enter();
                for job in rx {
                    // A panicking job must not end the thread: that would kill every child.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                        tracing::error!("a job on the spawner thread panicked; the thread goes on");
                    }
                }
            })?;
        Ok((Spawner { jobs }, thread))
    }

    /// Run `f` on the spawner thread and return its result.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, SpawnerGone> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| SpawnerGone)?;
        rx.await.map_err(|_| SpawnerGone)
    }
}

/// Set `key` to `port` in properties text (`key=value` or `key: value`), appending it if absent.
fn rewrite_property(text: &str, key: &str, port: u16) -> String {
    let mut found = false;
    let mut out: Vec<String> = text
        .lines()
        .map(|line| {
            let t = line.trim_start();
            let is_key = t.strip_prefix(key).is_some_and(|rest| {
                let rest = rest.trim_start();
                rest.starts_with('=') || rest.starts_with(':')
            });
            if is_key && !t.starts_with('#') {
                found = true;
                format!("{key}={port}")
            } else {
                line.to_string()
            }
        })
        .collect();
    if !found {
        out.push(format!("{key}={port}"));
    }
    out.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::path::Path;

    use super::*;
    use crate::instance::test_support::{installed, spec};

    #[test]
    fn property_is_rewritten_or_added() {
        assert_eq!(
            rewrite_property("a=1\nserver.port = 80\n", "server.port", 9000),
            "a=1\nserver.port=9000\n"
        );
        assert_eq!(
            rewrite_property("a=1\n", "server.port", 9000),
            "a=1\nserver.port=9000\n"
        );
        assert_eq!(
            rewrite_property("# server.port=1\n", "server.port", 9),
            "# server.port=1\nserver.port=9\n"
        );
    }

    #[test]
    fn a_port_bound_on_either_loopback_is_not_free() {
        let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = v4.local_addr().unwrap().port();
        assert!(!port_is_free(p), "bound on 127.0.0.1");
        drop(v4);
        assert!(port_is_free(p), "free once closed");
        if let Ok(v6) = TcpListener::bind("[::1]:0") {
            let p = v6.local_addr().unwrap().port();
            assert!(!port_is_free(p), "bound on ::1");
        }
    }

    #[test]
    fn argv_fills_placeholders_and_gives_a_bare_jar_its_port() {
        let base = tempfile::tempdir().unwrap();
        let jar = installed(base.path(), Kind::Jar);
        let dir = base.path().join("1");
        let s = spec(
            jar.clone(),
            9000,
            &["/usr/bin/java", "-jar", "{artifact}", "--dir={dir}"],
        );
        let argv = build_argv(&s, &dir, false);
        assert_eq!(
            argv,
            [
                "/usr/bin/java".to_string(),
                "-Dserver.port=9000".into(),
                "-jar".into(),
                jar.program.to_string_lossy().into_owned(),
                format!("--dir={}", dir.display()),
            ]
        );
        assert!(
            !build_argv(&s, &dir, true)
                .iter()
                .any(|w| w.starts_with("-D")),
            "a properties file carries the port instead"
        );
        let exe = spec(
            installed(base.path(), Kind::Executable),
            7,
            &["{artifact}", "--port", "{port}"],
        );
        assert_eq!(build_argv(&exe, &dir, false)[1..], ["--port", "7"]);
        // A wrapper before java: the JVM still gets the port.
        for wrapped in [
            &["nice", "-n", "5", "java", "-jar", "{artifact}"][..],
            &["/usr/bin/env", "java", "-Xmx1g", "-jar", "{artifact}"][..],
        ] {
            let argv = build_argv(&spec(jar.clone(), 9000, wrapped), &dir, false);
            let at = argv.iter().position(|w| w == "-Dserver.port=9000");
            let java = argv.iter().position(|w| w.ends_with("java"));
            assert_eq!(at, java.map(|j| j + 1), "{argv:?}");
        }
    }

    #[test]
    fn properties_are_copied_and_the_source_is_never_modified() {
        let base = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let src = elsewhere.path().join("application.properties");
        std::fs::write(&src, "server.port=80\nname=x\n").unwrap();
        let dir = base.path().join("1");
        std::fs::create_dir(&dir).unwrap();
        // Absolute source outside the base dir.
        assert!(write_properties(base.path(), &src, &dir, "server.port", 9000).unwrap());
        assert_eq!(
            std::fs::read_to_string(dir.join("application.properties")).unwrap(),
            "server.port=9000\nname=x\n"
        );
        assert_eq!(
            std::fs::read_to_string(&src).unwrap(),
            "server.port=80\nname=x\n"
        );
        // Relative source, taken from the base dir.
        std::fs::write(base.path().join("app.properties"), "a=1\n").unwrap();
        assert!(write_properties(base.path(), Path::new("app.properties"), &dir, "k", 5).unwrap());
        assert_eq!(
            std::fs::read_to_string(dir.join("app.properties")).unwrap(),
            "a=1\nk=5\n"
        );
        assert_eq!(
            std::fs::read_to_string(base.path().join("app.properties")).unwrap(),
            "a=1\n"
        );
        // Missing source: started without it.
        assert!(!write_properties(base.path(), Path::new("none"), &dir, "k", 5).unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_spawner_runs_every_job_on_its_one_thread_until_dropped() {
        let (spawner, thread) = Spawner::new(tokio::runtime::Handle::current()).unwrap();
        let a = spawner.run(|| std::thread::current().id()).await.unwrap();
        let b = spawner
            .clone()
            .run(|| std::thread::current().id())
            .await
            .unwrap();
        assert_eq!(a, b);
        assert_ne!(a, std::thread::current().id());
        let inside = spawner.run(|| tokio::spawn(async { 7 })).await.unwrap();
        assert_eq!(
            inside.await.unwrap(),
            7,
            "the runtime is entered on the thread"
        );
        assert!(spawner.run(|| panic!("a job that panics")).await.is_err());
        assert_eq!(
            spawner.run(|| 1).await.unwrap(),
            1,
            "a panic does not end the thread"
        );
        drop(spawner);
        tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
    }
}
