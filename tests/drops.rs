//! Noticing drops: a build is installed only once its writer is done with it, even when the
//! writer is another user's process, which understudy cannot see in `/proc` (scp, curl and CI
//! deploys rarely run as understudy's user).

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
        eprintln!("skipped: cannot hide a writer from understudy's /proc scan: {why}");
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
