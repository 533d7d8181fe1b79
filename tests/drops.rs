//! Noticing drops: a build is installed only once its writer is done with it, even when the
//! writer is another user's process, which understudy cannot see in `/proc` (scp, curl and CI
//! deploys rarely run as understudy's user).
//!
//! The other user's test needs root and a user 65534 that can run the binary; where it cannot
//! run, it is skipped loudly, unless `UNDERSTUDY_REQUIRE_OTHER_USER` is set: then it fails.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

/// The user understudy runs as in these tests (`nobody`): not the test's own, root.
const OTHER: u32 = 65534;

/// A bundle whose program is the fixture announcing `version`.
fn bundle(version: &str) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
    z.start_file("app", opts).unwrap();
    z.write_all(Base::fixture_script(version, "").as_bytes())
        .unwrap();
    // Enough that the first part is no zip at all.
    z.start_file("README.txt", opts).unwrap();
    z.write_all(&[b'x'; 64 * 1024]).unwrap();
    z.finish().unwrap().into_inner()
}

/// Why understudy, run as [`OTHER`], would see this test's own open files, if it would: then
/// no writer is hidden from its `/proc` scan here.
fn writer_visible() -> Option<String> {
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return Some(
            "the tests do not run as root, so understudy cannot run as another user".into(),
        );
    }
    let run = |program: &str, arg: &str| {
        Command::new(program)
            .arg(arg)
            .uid(OTHER)
            .gid(OTHER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
    };
    if !run(BIN, "--version").is_ok_and(|s| s.success()) {
        return Some(format!("user {OTHER} cannot run {BIN}"));
    }
    let fds = format!("/proc/{}/fd", std::process::id());
    if run("ls", &fds).is_ok_and(|s| s.success()) {
        return Some(format!("user {OTHER} may list {fds}"));
    }
    None
}

/// Hand `path` to [`OTHER`], as a build dropped by another user is handed to understudy's.
fn give(path: &Path) {
    std::os::unix::fs::chown(path, Some(OTHER), Some(OTHER)).unwrap();
}

#[test]
fn a_build_written_by_another_user_with_a_pause_is_installed_whole() {
    if let Some(why) = writer_visible() {
        skip_or_fail(
            "a_build_written_by_another_user_with_a_pause_is_installed_whole",
            "UNDERSTUDY_REQUIRE_OTHER_USER",
            &format!("cannot hide a writer from understudy's /proc scan: {why}"),
        );
        return;
    }
    let base = Base::new("hidden-writer");
    base.write_env("SETTLE_TIME=300ms");
    give(&base.path);
    give(&base.path.join(".env"));
    let mut u = Understudy::start_as(&base, OTHER);
    let tmp = base.path.join(".app-1.0.0.tmp");
    std::fs::write(&tmp, Base::fixture_script("1.0.0", "")).unwrap();
    give(&tmp);
    std::fs::rename(&tmp, base.path.join("app-1.0.0")).unwrap();
    u.wait_serving();

    // `(head -c N app.zip; sleep 2; tail -c +N+1 app.zip) > base/app-1.1.0.zip`, by root.
    let bytes = bundle("1.1.0");
    let dest = base.path.join("app-1.1.0.zip");
    let mut f = std::fs::File::create(&dest).unwrap();
    std::os::unix::fs::fchown(&f, Some(OTHER), Some(OTHER)).unwrap();
    let half = bytes.len() / 2;
    f.write_all(&bytes[..half]).unwrap();
    f.flush().unwrap();
    // The writer pausing (not a wait for understudy): many times SETTLE_TIME with nothing new.
    std::thread::sleep(Duration::from_secs(2));
    f.write_all(&bytes[half..]).unwrap();
    drop(f);

    let rejected = base.path.join("rejected/app-1.1.0");
    wait_until(
        "1.1.0 to be tested or rejected",
        Duration::from_secs(15),
        || (base.version_of("testing").is_some() || rejected.exists()).then_some(()),
    );
    assert!(
        !rejected.exists(),
        "the build was taken half-written: {}\nlog:\n{}",
        std::fs::read_to_string(rejected.join("reason.json")).unwrap_or_default(),
        u.log_text()
    );
    assert_eq!(base.version_of("testing").as_deref(), Some("app-1.1.0"));
    assert!(
        base.wait_testing()["version"]
            .as_str()
            .is_some_and(|v| v == "1.1.0"),
        "testing does not serve 1.1.0"
    );
    u.stop();
}

/// Running 1.0.0, and 1.1.0 aborted while its instance, deaf to SIGTERM, takes `SHUTDOWN_GRACE`
/// to stop: a fresh drop of `app-1.1.0` waits its turn until then (`build_waiting`). Returns
/// that instance's pid: while it lives, the turn has not come. The drop is a bundle: an
/// executable would have its version folder's name, which is taken until then.
fn drop_waiting_its_turn(name: &str) -> (Base, Understudy, i32) {
    let base = Base::new(name);
    base.write_env("SHUTDOWN_GRACE=5s");
    let u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    base.drop_fixture("1.1.0", "--ignore-sigterm");
    base.wait_testing();
    let (_, stopping) = base.wait_instance_info("testing");
    let (code, out, err) = cli(&base, &["abort"]);
    assert_eq!(code, 0, "abort: {out}{err}");
    let tmp = base.path.join(".app-1.1.0.zip.tmp");
    std::fs::write(&tmp, bundle("1.1.0")).unwrap();
    std::fs::rename(&tmp, base.path.join("app-1.1.0.zip")).unwrap();
    wait_until("the drop to wait its turn", Duration::from_secs(10), || {
        u.log_text().contains("build_waiting").then_some(())
    });
    (base, u, stopping)
}

#[test]
fn a_drop_taken_away_while_it_waits_is_passed_over_quietly() {
    let (base, mut u, stopping) = drop_waiting_its_turn("gone-at-turn");
    std::fs::remove_file(base.path.join("app-1.1.0.zip")).unwrap();
    assert!(
        pid_alive(stopping),
        "its turn came before it was taken away"
    );
    let (gone, failed, rejected) = (
        "no longer in the base dir",
        "filing_failed",
        "cannot install",
    );
    wait_until("its turn", Duration::from_secs(20), || {
        let log = u.log_text();
        [gone, failed, rejected]
            .iter()
            .any(|s| log.contains(s))
            .then_some(())
    });
    let log = u.log_text();
    assert!(
        !log.contains(failed) && !log.contains(rejected),
        "a drop that was no longer there was filed as a failure:\n{log}"
    );
    // The turn passed on: the next build is installed and tested.
    base.drop_fixture("1.2.0", "");
    wait_until("1.2.0 under test", Duration::from_secs(10), || {
        (base.fixture_stats("testing")?["version"] == "1.2.0").then_some(())
    });
    u.stop();
}

#[test]
fn a_drop_being_written_again_when_its_turn_comes_waits_for_its_writer() {
    let (base, mut u, stopping) = drop_waiting_its_turn("rewritten-at-turn");
    // A second copy of it starts while it waits, and pauses half-way.
    let bytes = bundle("1.1.0");
    let path = base.path.join("app-1.1.0.zip");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&bytes[..bytes.len() / 2]).unwrap();
    assert!(pid_alive(stopping), "its turn came before the copy began");
    wait_until("its turn", Duration::from_secs(20), || {
        (u.log_text().contains("being written again") || !path.exists()).then_some(())
    });
    assert!(
        path.exists(),
        "half a copy was installed:\n{}",
        u.log_text()
    );
    f.write_all(&bytes[bytes.len() / 2..]).unwrap();
    drop(f);
    wait_until("1.1.0 under test", Duration::from_secs(10), || {
        (base.fixture_stats("testing")?["version"] == "1.1.0").then_some(())
    });
    u.stop();
}

#[test]
fn a_drop_touched_while_it_waits_is_installed_once_and_never_refused() {
    let (base, mut u, stopping) = drop_waiting_its_turn("touched-at-turn");
    let path = base.path.join("app-1.1.0.zip");
    let complete = format!("build {} is complete", path.display());
    let ok = Command::new("touch").arg(&path).status().unwrap();
    assert!(ok.success(), "touch {}", path.display());
    wait_until(
        "the touched drop to be reported again",
        Duration::from_secs(10),
        || (u.log_text().matches(&complete).count() == 2).then_some(()),
    );
    assert!(
        pid_alive(stopping),
        "its turn came before it was reported again"
    );
    wait_until("1.1.0 under test", Duration::from_secs(20), || {
        (base.fixture_stats("testing")?["version"] == "1.1.0").then_some(())
    });
    let log = u.log_text();
    assert!(
        !log.contains("refusing") && !log.contains("filing_failed"),
        "the second report of one file was refused:\n{log}"
    );
    u.stop();
}

/// A build named with a `v` before its version (`app-v1.3.0.jar`, as a CI job might) is not
/// taken: the operator is told by an event naming the file and the rule, once, and the file is
/// left where it is. Before, only understudy's own log said so.
#[test]
fn a_build_named_v_version_is_told_as_ignored_and_left_in_place() {
    let base = Base::new("misnamed");
    base.write_env("");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    let misnamed = base.path.join("app-v1.3.0.jar");
    std::fs::write(&misnamed, b"PK").unwrap();
    std::fs::write(base.path.join("notes.txt"), b"not a build").unwrap();
    let (addr, _) = admin(&base);
    let told = |file: &'static str| {
        wait_until(file, Duration::from_secs(10), || {
            let (_, events) = api(addr, "GET", "/api/events/recent", None, "");
            let events = events.to_string();
            events.contains(file).then_some(events)
        })
    };
    let first = told("app-v1.3.0.jar");
    assert!(first.contains("is not a semantic version"), "{first}");
    let (code, out, _) = cli(&base, &["events"]);
    assert_eq!(code, 0);
    assert!(out.contains("app-v1.3.0.jar"), "{out}");
    // Said once, about the builds only (a later one is told after more rescans, which repeat
    // nothing); the file stays where it was put.
    std::fs::write(base.path.join("other-1.3.0.zip"), b"PK").unwrap();
    let events = told("other-1.3.0.zip");
    assert_eq!(events.matches("build_ignored").count(), 2, "{events}");
    assert!(!events.contains("notes.txt"), "{events}");
    assert!(misnamed.is_file());
    u.stop();
}

/// Hold the base dir's lock from this process, as an understudy killed a moment ago still holds
/// it while the kernel tears it down; the lock file still names that understudy.
fn hold_lock_as_the_dead_one(base: &Base) -> nix::fcntl::Flock<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(base.path.join(".understudy/lock"))
        .unwrap();
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .expect("the killed understudy's lock is free")
}

#[test]
fn a_start_right_after_a_kill_9_waits_for_the_dead_ones_lock_and_serves() {
    let base = Base::new("restart-after-kill");
    base.write_env("");
    base.drop_fixture("1.0.0", "");
    let mut u = Understudy::start(&base);
    u.wait_serving();
    let dead = u.pid();
    u.kill_hard();
    // The lock is taken here again before the new understudy starts and let go a second after.
    let held = hold_lock_as_the_dead_one(&base);
    let lock_file = base.path.join(".understudy/lock");
    assert_eq!(
        std::fs::read_to_string(&lock_file).unwrap().trim(),
        dead.to_string()
    );
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        drop(held);
    });
    let mut again = Understudy::start(&base);
    again.wait_serving();
    release.join().unwrap();
    assert_eq!(
        std::fs::read_to_string(&lock_file).unwrap().trim(),
        again.pid().to_string(),
        "the new understudy holds the lock"
    );
    again.stop();
}

#[test]
fn a_lock_held_on_after_its_understudy_died_names_what_holds_it() {
    let base = Base::new("orphaned-lock");
    base.write_env("");
    std::fs::create_dir_all(base.path.join(".understudy")).unwrap();
    // A pid that was an understudy's and is gone: a process that ended, reaped.
    let gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    let _ = { gone }.wait();
    std::fs::write(base.path.join(".understudy/lock"), format!("{gone_pid}\n")).unwrap();
    let _held = hold_lock_as_the_dead_one(&base);
    let (code, stderr) = run_briefly(&base, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    let me = format!("held open by pid {} (", std::process::id());
    assert!(
        stderr.contains(&format!("(pid {gone_pid}) ended")) && stderr.contains(&me),
        "the refusal names the dead understudy and what holds its lock: {stderr}"
    );
}
