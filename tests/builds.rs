//! Build hygiene: checksums guard against truncated copies, zip bombs are stopped while they
//! unpack, temp files a crash left behind are cleaned at start, and an installed build is never
//! replaced by another drop of the same version. Each asserts files, reasons and what users got.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::support::*;

fn sha256_hex(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, bytes).unwrap();
    let out = std::process::Command::new("sha256sum")
        .arg(&p)
        .output()
        .unwrap();
    assert!(out.status.success(), "sha256sum {}", p.display());
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// Write `bytes` elsewhere and `mv` them in as `name`, as a deploy tool does.
fn drop_file(base: &Base, name: &str, bytes: &[u8]) {
    let tmp = base.path.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, base.path.join(name)).unwrap();
}

/// A bundle whose program is the fixture announcing `says`, plus `extra` entries.
fn bundle(says: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
    z.start_file("app", opts).unwrap();
    z.write_all(Base::fixture_script(says, "").as_bytes())
        .unwrap();
    for (name, bytes) in extra {
        z.start_file(*name, opts).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap().into_inner()
}

fn reason(base: &Base, folder: &str) -> String {
    wait_until(
        &format!("rejected/{folder}/reason.json"),
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(base.path.join("rejected").join(folder).join("reason.json"))
                .ok()
        },
    )
}

fn read_tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().filter_map(|e| e.ok()) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_build_that_does_not_match_its_checksum_is_rejected_and_never_starts() {
    let base = Base::new("checksum");
    base.write_env("");
    let mut u = Understudy::start(&base);

    // A full disk during `cp`: the copy lost its tail but still starts with #!.
    let full = format!(
        "{}# padding a real build would carry\n",
        Base::fixture_script("1.0.0", "")
    );
    let truncated = &full.as_bytes()[..full.len() - 10];
    let expected = sha256_hex(full.as_bytes());
    let actual = sha256_hex(truncated);
    // The checksum arrives first, as `sha256sum` writes it; the build follows.
    drop_file(
        &base,
        "app-1.0.0.sha256",
        format!("{expected}  app-1.0.0\n").as_bytes(),
    );
    drop_file(&base, "app-1.0.0", truncated);
    let why = reason(&base, "app-1.0.0");
    assert!(
        why.contains(&format!("expected sha256 {expected}"))
            && why.contains(&format!("actual sha256 {actual}")),
        "{why}"
    );
    let rejected = base.path.join("rejected/app-1.0.0");
    assert_eq!(
        std::fs::read(rejected.join("app-1.0.0")).unwrap(),
        truncated
    );
    assert!(
        rejected.join("app-1.0.0.sha256").is_file(),
        "the checksum goes with its build"
    );
    assert!(!base.path.join("app-1.0.0.sha256").exists());
    assert!(
        processes_under(&base.path).is_empty(),
        "nothing was started"
    );
    assert_eq!(u.get("/").0, 503);

    // Dropped together with its build, as `cp` writes them (upper-case hex, no file name): serves.
    let good = Base::fixture_script("1.1.0", "");
    let sum = sha256_hex(good.as_bytes()).to_uppercase();
    std::fs::write(base.path.join("app-1.1.0.sha256"), &sum).unwrap();
    std::fs::write(base.path.join("app-1.1.0"), &good).unwrap();
    wait_until("1.1.0 to serve", Duration::from_secs(10), || {
        u.get("/").1.contains("hello from 1.1.0").then_some(())
    });
    assert!(base.path.join("app-1.1.0/app-1.1.0.sha256").is_file());

    // A checksum arriving after its build was installed is not checked again, and is no stray.
    drop_file(&base, "app-1.1.0.sha256", expected.as_bytes());
    wait_until("a later scan", Duration::from_secs(5), || {
        std::fs::write(base.path.join("notes.txt"), "x").unwrap();
        u.log_text().contains("notes.txt").then_some(())
    });
    assert!(u.get("/").1.contains("hello from 1.1.0"));
    let log = u.log_text();
    assert!(
        !log.lines()
            .any(|l| l.contains("ignoring") && l.contains(".sha256")),
        "a checksum is no stray name:\n{log}"
    );
    assert!(log.contains("matches its checksum"), "{log}");
    u.stop();
}

#[test]
fn a_zip_bomb_is_stopped_while_it_unpacks() {
    let base = Base::new("zip-bomb");
    base.write_env("MAX_UNPACKED_SIZE=1MiB");
    let mut u = Understudy::start(&base);
    let zeros = vec![0u8; 4 << 20];
    let bomb = bundle("1.0.0", &[("zeros.bin", &zeros)]);
    assert!(bomb.len() < 64 << 10, "the bomb is small: {}", bomb.len());
    drop_file(&base, "app-1.0.0.zip", &bomb);
    let why = reason(&base, "app-1.0.0");
    assert!(why.contains("MAX_UNPACKED_SIZE (1048576 bytes)"), "{why}");
    let rejected = base.path.join("rejected/app-1.0.0");
    assert!(rejected.join("app-1.0.0.zip").is_file());
    assert!(
        !rejected.join("bundle").exists(),
        "the partial bundle is removed"
    );
    assert!(
        processes_under(&base.path).is_empty(),
        "nothing was started"
    );
    assert_eq!(u.get("/").0, 503);

    // Within the bound, a bundle unpacks and serves.
    drop_file(
        &base,
        "app-1.1.0.zip",
        &bundle("1.1.0", &[("data.bin", &zeros[..512 << 10])]),
    );
    wait_until("1.1.0 to serve", Duration::from_secs(10), || {
        u.get("/").1.contains("hello from 1.1.0").then_some(())
    });
    assert_eq!(
        std::fs::metadata(base.path.join("app-1.1.0/bundle/data.bin"))
            .unwrap()
            .len(),
        512 << 10
    );
    u.stop();
}

#[test]
fn temp_files_left_by_a_crash_are_removed_at_start() {
    let base = Base::new("stray-temps");
    base.write_env("MAX_BASE_SIZE=64KiB");
    // Past any pid the kernel gives: their writer is gone.
    let stray = [
        "archive/app-0.9.0.zip.tmp",
        "app-0.9.0/1/instance.tmp-4294967",
        ".understudy/state.tmp-4294967",
        ".running.tmp-4294967",
        ".testing.tmp-4294967",
    ];
    for s in stray {
        let p = base.path.join(s);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"half").unwrap();
    }
    // Not a temp: kept at start, but it counts against the budget and may be collected.
    std::fs::write(
        base.path.join("archive/app-0.8.0.zip"),
        vec![7u8; 128 << 10],
    )
    .unwrap();
    let keep = base.path.join("app-0.9.0/1/instance.json");
    std::fs::write(&keep, b"{}").unwrap();
    let mut u = Understudy::start(&base);
    wait_until(
        "the archive to be collected and logged",
        Duration::from_secs(10),
        || {
            let gone = !base.path.join("archive/app-0.8.0.zip").exists();
            (gone && u.log_text().contains("app-0.8.0.zip")).then_some(())
        },
    );
    let log = u.log_text();
    for s in stray {
        assert!(!base.path.join(s).exists(), "{s} is removed");
        let line = log
            .lines()
            .find(|l| l.contains(&base.path.join(s).display().to_string()))
            .unwrap_or_else(|| panic!("{s} is logged:\n{log}"));
        assert!(line.contains("left by an earlier crash"), "{line}");
    }
    assert!(keep.is_file(), "only temp files go");
    assert!(log.contains("app-0.8.0.zip"), "{log}");
    u.stop();
}

#[test]
fn the_same_version_again_never_replaces_the_installed_build() {
    let base = Base::new("same-version");
    base.write_env("");
    let mut u = Understudy::start(&base);
    drop_file(&base, "app-1.0.0.zip", &bundle("1.0.0", &[]));
    u.wait_serving();
    let vdir = base.path.join("app-1.0.0");
    let before = (
        std::fs::read(vdir.join("app-1.0.0.zip")).unwrap(),
        read_tree(&vdir.join("bundle")),
    );

    // The same version again, with other code inside, and its checksum.
    let other = bundle("6.6.6", &[("extra.txt", b"other")]);
    drop_file(&base, "app-1.0.0.zip.sha256", sha256_hex(&other).as_bytes());
    drop_file(&base, "app-1.0.0.zip", &other);
    let refused = base.path.join("rejected/app-1.0.0.zip.refused");
    let why = reason(&base, "app-1.0.0.zip.refused");
    assert!(why.contains("not newer than running 1.0.0"), "{why}");
    assert_eq!(std::fs::read(refused.join("app-1.0.0.zip")).unwrap(), other);
    assert!(refused.join("app-1.0.0.zip.sha256").is_file());
    assert!(!base.path.join("app-1.0.0.zip").exists());
    assert!(!base.path.join("app-1.0.0.zip.sha256").exists());
    let after = (
        std::fs::read(vdir.join("app-1.0.0.zip")).unwrap(),
        read_tree(&vdir.join("bundle")),
    );
    assert!(before == after, "the installed build is unchanged");
    assert!(u.get("/").1.contains("hello from 1.0.0"));

    u.stop();
    let mut u = Understudy::start(&base);
    wait_until(
        "1.0.0 to serve after a restart",
        Duration::from_secs(10),
        || u.get("/").1.contains("hello from 1.0.0").then_some(()),
    );
    let again = (
        std::fs::read(vdir.join("app-1.0.0.zip")).unwrap(),
        read_tree(&vdir.join("bundle")),
    );
    assert!(
        before == again,
        "the installed build is unchanged after a restart"
    );
    u.stop();
}

#[test]
fn two_kinds_of_one_version_dropped_together_lose_nothing() {
    let base = Base::new("two-kinds");
    // A "jar" here is the fixture's start script, run by sh: no JVM needed.
    base.write_env("JAR_COMMAND='sh {artifact}'");
    let mut u = Understudy::start(&base);

    // An executable build of 1.3.0 still being written (a slow `cp`), holding the version
    // folder's name, when the jar of the same version arrives.
    let exec = base.path.join("app-1.3.0");
    let mut writing = std::fs::File::create(&exec).unwrap();
    writing.write_all(b"#!/bin/sh\n").unwrap();
    let jar = Base::fixture_script("1.3.0-jar", "");
    drop_file(&base, "app-1.3.0.jar", jar.as_bytes());

    // The jar is turned away into rejected/ with its reason, the executable left where it is.
    let why = reason(&base, "app-1.3.0");
    assert!(why.contains("app-1.3.0.jar"), "{why}");
    assert!(
        why.contains("is not a folder") && why.contains("one build per version"),
        "{why}"
    );
    let rejected = base.path.join("rejected/app-1.3.0");
    assert_eq!(
        std::fs::read(rejected.join("app-1.3.0.jar")).unwrap(),
        jar.as_bytes()
    );
    assert!(exec.is_file(), "the executable being written is not moved");

    // The executable's copy ends: it is installed and serves.
    writing
        .write_all(&Base::fixture_script("1.3.0", "").as_bytes()["#!/bin/sh\n".len()..])
        .unwrap();
    drop(writing);
    wait_until(
        "the executable 1.3.0 to serve",
        Duration::from_secs(15),
        || u.get("/").1.starts_with("hello from 1.3.0 ").then_some(()),
    );
    assert!(base.path.join("app-1.3.0/app-1.3.0").is_file());
    assert_eq!(
        std::fs::read(rejected.join("app-1.3.0.jar")).unwrap(),
        jar.as_bytes(),
        "the rejected jar is kept"
    );
    let incoming = base.path.join(".understudy/incoming");
    let left: Vec<_> = std::fs::read_dir(&incoming)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "nothing stays in {}: {left:?}",
        incoming.display()
    );
    let log = u.log_text();
    assert!(!log.contains("filing_failed"), "{log}");
    u.stop();
}

#[test]
fn a_version_folder_replaced_by_a_symlink_is_never_followed_when_the_build_is_restored() {
    let base = Base::new("symlinked-folder");
    base.write_env("");
    let mut u = Understudy::start(&base);
    drop_file(&base, "app-1.0.0.zip", &bundle("1.0.0", &[]));
    u.wait_serving();
    let (_, pid) = base.wait_instance_info("running");

    // The user moves the version folder away and puts a link to a folder of their own there.
    let elsewhere = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mine = elsewhere.path().join("mine");
    std::fs::create_dir_all(mine.join("bundle")).unwrap();
    std::fs::write(mine.join("bundle/precious.txt"), "precious").unwrap();
    let vdir = base.path.join("app-1.0.0");
    std::fs::rename(&vdir, elsewhere.path().join("moved")).unwrap();
    std::os::unix::fs::symlink(&mine, &vdir).unwrap();
    // The app crashes: its restart must not go through the link.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let log = wait_until("the restart to be tried", Duration::from_secs(15), || {
        let log = u.log_text();
        let tried = [
            "is not the version folder",
            "restored from the protected copy",
        ];
        tried.iter().any(|t| log.contains(t)).then_some(log)
    });
    assert_eq!(
        read_tree(&mine),
        vec![("bundle/precious.txt".to_string(), b"precious".to_vec())],
        "the user's folder is untouched"
    );
    let line = log
        .lines()
        .find(|l| l.contains("is not the version folder"));
    let line = line.unwrap_or_else(|| panic!("the restart is refused:\n{log}"));
    assert!(line.contains(&vdir.display().to_string()), "{line}");
    assert!(vdir.is_symlink(), "the link is left as it is");

    // The link moved away: the build comes back from its protected copy and serves again.
    std::fs::remove_file(&vdir).unwrap();
    wait_until("1.0.0 to serve again", Duration::from_secs(40), || {
        u.get("/").1.contains("hello from 1.0.0").then_some(())
    });
    assert!(vdir.join("bundle").is_dir() && !vdir.is_symlink());
    assert_eq!(read_tree(&mine).len(), 1, "still untouched");

    // The operator's remedy for a full disk: the folder moved to another disk and linked back.
    // It holds the build, so running's next restart starts it as it is.
    let (_, pid) = base.wait_instance_info("running");
    let moved = elsewhere.path().join("moved-again");
    std::fs::rename(&vdir, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &vdir).unwrap();
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    wait_until(
        "1.0.0 restarted through the link",
        Duration::from_secs(40),
        || {
            let (_, again) = base.wait_instance_info("running");
            (again != pid && u.get("/").1.contains("hello from 1.0.0")).then_some(())
        },
    );
    assert!(vdir.is_symlink(), "the link is left as it is");
    u.stop();
}

/// A zip laid out as Gradle's `distZip` makes it (one top folder, the start script in its `bin/`,
/// jars in `lib/`) is installed and serves: such a zip was once rejected for holding nothing to
/// start at its top level.
#[test]
fn a_distzip_bundle_with_its_program_in_one_folders_bin_serves() {
    let base = Base::new("distzip");
    base.write_env("");
    let mut u = Understudy::start(&base);
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let exe = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
    let plain = zip::write::SimpleFileOptions::default().unix_permissions(0o644);
    z.add_directory("app-1.0.0/", plain).unwrap();
    z.start_file("app-1.0.0/bin/app", exe).unwrap();
    z.write_all(Base::fixture_script("1.0.0", "").as_bytes())
        .unwrap();
    z.start_file("app-1.0.0/bin/app.bat", plain).unwrap();
    z.write_all(b"@rem windows\r\n").unwrap();
    z.start_file("app-1.0.0/lib/app-1.0.0.txt", plain).unwrap();
    z.write_all(b"a library").unwrap();
    drop_file(&base, "app-1.0.0.zip", &z.finish().unwrap().into_inner());
    u.wait_serving();
    let (status, body) = u.get("/hello");
    assert_eq!(status, 200);
    assert!(body.contains("hello from 1.0.0"), "{body}");
    assert!(!base.path.join("rejected/app-1.0.0").exists());
    u.stop();
}

/// A zip with two executables and no named program is rejected saying it holds several, naming
/// them and how to choose: it once said it held no executable at all.
#[test]
fn a_zip_with_two_unnamed_programs_is_rejected_naming_both() {
    let base = Base::new("twoexec");
    base.write_env("");
    let mut u = Understudy::start(&base);
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let exe = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
    for name in ["run1.sh", "run2.sh"] {
        z.start_file(name, exe).unwrap();
        z.write_all(Base::fixture_script("1.0.0", "").as_bytes())
            .unwrap();
    }
    drop_file(&base, "app-1.0.0.zip", &z.finish().unwrap().into_inner());
    let why = reason(&base, "app-1.0.0");
    assert!(
        why.contains("holds several programs")
            && why.contains("run1.sh, run2.sh")
            && why.contains("app-<version>"),
        "{why}"
    );
    u.stop();
}

/// Two builds waiting in the base dir when understudy first starts: the older serves and the
/// newer is tested against it, whatever order the directory lists them in. The first one listed
/// served before, and the other, if older, was refused as not newer.
#[test]
fn builds_waiting_at_the_first_start_go_oldest_first() {
    let base = Base::new("first-start-two");
    base.write_env("STABLE_WINDOW=1h");
    // On ext4 here app-1.3.0 is listed before app-1.1.0.
    base.drop_fixture("1.3.0", "");
    base.drop_fixture("1.1.0", "");
    let mut u = Understudy::start(&base);
    u.wait_serving();
    wait_until("1.3.0 under test", Duration::from_secs(10), || {
        (base.version_of("testing").as_deref() == Some("app-1.3.0")).then_some(())
    });
    assert_eq!(base.version_of("running").as_deref(), Some("app-1.1.0"));
    assert!(!base.path.join("rejected/app-1.1.0.refused").exists());
    u.stop();
}
