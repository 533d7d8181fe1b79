use super::*;

#[test]
fn archive_holds_logs_and_folder_goes() {
    let base = std::env::temp_dir().join(format!("understudy-archive-{}", std::process::id()));
    let l = Layout::new(&base, "app");
    let v = Version::parse("1.0.0").unwrap();
    fs::create_dir_all(l.instance_dir(&v, 1).join("logs/json")).unwrap();
    fs::write(l.version_dir(&v).join("app-1.0.0.jar"), b"jar").unwrap();
    fs::write(
        l.instance_dir(&v, 1).join("logs/json/app.log"),
        b"{\"level\":\"info\"}\n",
    )
    .unwrap();
    let zip = archive_version(&l, &v).unwrap();
    assert!(!l.version_dir(&v).exists());
    let mut a = zip::ZipArchive::new(fs::File::open(&zip).unwrap()).unwrap();
    let names: Vec<String> = a.file_names().map(|n| n.unwrap().into_owned()).collect();
    assert!(
        names.contains(&"app-1.0.0/1/logs/json/app.log".to_string()),
        "{names:?}"
    );
    let mut s = String::new();
    io::Read::read_to_string(&mut a.by_name("app-1.0.0/app-1.0.0.jar").unwrap(), &mut s).unwrap();
    assert_eq!(s, "jar");
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_failed_archive_leaves_no_temp_and_keeps_the_folder() {
    let base = std::env::temp_dir().join(format!("understudy-archfail-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    let l = Layout::new(&base, "app");
    let v = Version::parse("1.0.0").unwrap();
    fs::create_dir_all(l.version_dir(&v)).unwrap();
    fs::write(l.version_dir(&v).join("app-1.0.0.jar"), b"jar").unwrap();
    // The archive's place is taken by a folder: the rename fails after the zip was written.
    fs::create_dir_all(l.archive_zip(&v).join("x")).unwrap();
    assert!(archive_version(&l, &v).is_err());
    assert!(!l.archive_zip(&v).with_extension("zip.tmp").exists());
    assert!(l.version_dir(&v).join("app-1.0.0.jar").is_file());
    fs::remove_dir_all(&base).unwrap();
}

/// A version folder replaced by a symlink to someone's directory: that directory is neither
/// zipped into the archive nor deleted, and the error says why.
#[test]
fn a_version_folder_replaced_by_a_symlink_is_not_followed() {
    let base = std::env::temp_dir().join(format!("understudy-archlink-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    let l = Layout::new(&base, "app");
    let v = Version::parse("1.0.0").unwrap();
    let user = base.with_extension("userdir");
    let _ = fs::remove_dir_all(&user);
    fs::create_dir_all(user.join("bundle")).unwrap();
    fs::write(user.join("bundle/precious.txt"), b"precious").unwrap();
    fs::create_dir_all(&base).unwrap();
    std::os::unix::fs::symlink(&user, l.version_dir(&v)).unwrap();
    for _ in 0..2 {
        let e = archive_version(&l, &v).unwrap_err().to_string();
        assert!(
            e.contains("is a symlink to") && e.contains("not archived"),
            "{e}"
        );
    }
    assert_eq!(
        fs::read(user.join("bundle/precious.txt")).unwrap(),
        b"precious"
    );
    assert!(!l.archive_zip(&v).exists());
    assert!(!l.archive_zip(&v).with_extension("zip.tmp").exists());
    let out = base.join("direct.zip");
    assert!(zip_dir(&l.version_dir(&v), "app-1.0.0", &out).is_err());
    assert!(!out.exists());
    fs::remove_dir_all(&base).unwrap();
    fs::remove_dir_all(&user).unwrap();
}

#[test]
fn a_rejection_retried_after_its_move_keeps_the_quarantined_build() {
    let base = tempfile::tempdir().unwrap();
    let l = Layout::new(base.path(), "app");
    let v = Version::parse("1.1.0").unwrap();
    fs::create_dir_all(l.instance_dir(&v, 1).join("logs")).unwrap();
    fs::write(l.version_dir(&v).join("app-1.1.0.jar"), b"jar").unwrap();
    fs::write(l.instance_dir(&v, 1).join("logs/app.log"), b"boom").unwrap();
    // reason.json cannot be written (a folder holds its name): the move succeeds, the
    // rejection fails after it.
    fs::create_dir_all(l.version_dir(&v).join("reason.json/x")).unwrap();
    let reasons = vec!["testing exited".to_string()];
    assert!(reject_version(&l, &v, &reasons).is_err());
    let dest = l.rejected_dir().join("app-1.1.0");
    assert!(
        dest.join("app-1.1.0.jar").is_file(),
        "moved before the failure"
    );
    fs::remove_dir_all(dest.join("reason.json")).unwrap();
    // The retry finishes the job on what is there.
    assert_eq!(reject_version(&l, &v, &reasons).unwrap(), dest);
    assert_eq!(fs::read(dest.join("app-1.1.0.jar")).unwrap(), b"jar");
    assert_eq!(fs::read(dest.join("1/logs/app.log")).unwrap(), b"boom");
    let reason: serde_json::Value =
        serde_json::from_slice(&fs::read(dest.join("reason.json")).unwrap()).unwrap();
    assert_eq!(reason["reasons"][0], "testing exited");
}

/// A folder whose entries cannot be removed until dropped: read-only, and immutable for
/// root (whom modes do not stop). Held open, so it is found again wherever it is moved.
struct Stuck(fs::File);

const FS_IMMUTABLE_FL: libc::c_int = 0x10;

impl Stuck {
    /// `None` when this file system or user cannot make it so.
    fn new(dir: &Path) -> Option<Stuck> {
        let stuck = Stuck(fs::File::open(dir).unwrap());
        stuck.set(true);
        fs::write(dir.join("probe"), b"").is_err().then_some(stuck)
    }

    fn set(&self, on: bool) {
        use std::os::fd::AsRawFd;
        let mode = if on { 0o555 } else { 0o755 };
        let _ = self.0.set_permissions(fs::Permissions::from_mode(mode));
        let fd = self.0.as_raw_fd();
        let mut flags: libc::c_int = 0;
        // SAFETY: FS_IOC_[GS]ETFLAGS read or write one int through a valid pointer, on an
        // open descriptor.
        unsafe {
            if libc::ioctl(fd, libc::FS_IOC_GETFLAGS, &mut flags) != 0 {
                return;
            }
            flags = if on {
                flags | FS_IMMUTABLE_FL
            } else {
                flags & !FS_IMMUTABLE_FL
            };
            libc::ioctl(fd, libc::FS_IOC_SETFLAGS, &flags);
        }
    }
}

impl Drop for Stuck {
    fn drop(&mut self) {
        self.set(false);
    }
}

#[test]
fn a_rejection_never_moves_a_file_under_the_version_folders_name() {
    let base = tempfile::tempdir().unwrap();
    let l = Layout::new(base.path(), "app");
    let v = Version::parse("1.3.0").unwrap();
    // An executable build of 1.3.0 still being dropped, while another build of it is rejected.
    fs::write(l.version_dir(&v), b"#!/bin/sh\n").unwrap();
    let reasons = vec!["cannot install".to_string()];
    let dest = reject_version(&l, &v, &reasons).unwrap();
    assert_eq!(fs::read(l.version_dir(&v)).unwrap(), b"#!/bin/sh\n");
    assert!(dest.is_dir() && dest.join("reason.json").is_file());
}

fn zip_names(zip: &Path) -> Vec<String> {
    let a = zip::ZipArchive::new(fs::File::open(zip).unwrap()).unwrap();
    let mut names: Vec<String> = a.file_names().map(|n| n.unwrap().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn an_archive_retried_after_a_failed_removal_keeps_the_complete_archive() {
    let base = tempfile::tempdir().unwrap();
    let l = Layout::new(base.path(), "app");
    let v = Version::parse("1.0.0").unwrap();
    let vdir = l.version_dir(&v);
    for i in 1..=8 {
        fs::create_dir_all(vdir.join(format!("{i}/logs"))).unwrap();
        fs::write(vdir.join(format!("{i}/logs/app.log")), b"log").unwrap();
    }
    // The folder removed last cannot be emptied: every other one is gone when it fails.
    let last = fs::read_dir(&vdir).unwrap().last().unwrap().unwrap().path();
    let Some(stuck) = Stuck::new(&last.join("logs")) else {
        eprintln!("skipped: cannot make a folder that resists removal here");
        return;
    };
    let err = archive_version(&l, &v).unwrap_err();
    assert!(err.to_string().contains("remove"), "{err}");
    let complete = zip_names(&l.archive_zip(&v));
    assert_eq!(
        complete.iter().filter(|n| n.ends_with("app.log")).count(),
        8
    );
    // Still stuck: the retry fails again, and the archive stays whole.
    assert!(archive_version(&l, &v).is_err());
    assert_eq!(zip_names(&l.archive_zip(&v)), complete);
    assert!(
        !vdir.exists(),
        "no half-removed folder is left under the version's name for a rollback to find"
    );
    drop(stuck);
    assert_eq!(archive_version(&l, &v).unwrap(), l.archive_zip(&v));
    assert_eq!(zip_names(&l.archive_zip(&v)), complete);
    let left: Vec<_> = fs::read_dir(base.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("archive")],
        "nothing else is left"
    );
}

#[test]
fn a_bundle_with_symlinks_comes_back_from_its_archive_and_starts() {
    use std::io::Write as _;
    let base = tempfile::tempdir().unwrap();
    let l = Layout::new(base.path(), "app");
    let v = Version::parse("1.0.0").unwrap();
    let mut z = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
    let exe = SimpleFileOptions::default().unix_permissions(0o755);
    z.start_file("bin/server", exe).unwrap();
    z.write_all(b"#!/bin/sh\necho server\n").unwrap();
    z.add_symlink("app", "bin/server", SimpleFileOptions::default())
        .unwrap();
    let dropped = base.path().join("app-1.0.0.zip");
    fs::write(&dropped, z.finish().unwrap().into_inner()).unwrap();
    let name = crate::artifact::parse_name("app-1.0.0.zip", "app").unwrap();
    let limits = crate::artifact::InstallLimits {
        max_unpacked: u64::MAX,
        min_free_disk: 0,
    };
    let installed = crate::artifact::install(&l, &dropped, &name, limits).unwrap();
    assert!(installed.program.ends_with("bundle/app"), "{installed:?}");
    // A link an instance left pointing out of the version folder is not kept.
    fs::create_dir_all(l.instance_dir(&v, 1)).unwrap();
    std::os::unix::fs::symlink("../../elsewhere", l.instance_dir(&v, 1).join("out")).unwrap();
    let zip = archive_version(&l, &v).unwrap();
    assert!(!l.version_dir(&v).exists());
    let names = zip_names(&zip);
    assert!(
        names.contains(&"app-1.0.0/bundle/app".to_string()),
        "{names:?}"
    );
    assert!(!names.contains(&"app-1.0.0/1/out".to_string()), "{names:?}");
    let restored = crate::artifact::restore(&l, &v, limits).unwrap();
    assert_eq!(restored.program, installed.program);
    let link = l.version_dir(&v).join("bundle/app");
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("bin/server"));
    let out = std::process::Command::new(&restored.program)
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"server\n", "{out:?}");
}

#[test]
fn a_restored_link_may_not_lead_out_of_its_version_folder() {
    use std::io::Write as _;
    let base = tempfile::tempdir().unwrap();
    let l = Layout::new(base.path(), "app");
    let v = Version::parse("1.0.0").unwrap();
    // Inside the archive's top folder by its text, but that folder becomes the version
    // folder: `x -> ..` would be the base dir.
    let mut z = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
    let exe = SimpleFileOptions::default().unix_permissions(0o755);
    z.start_file("app-1.0.0/app", exe).unwrap();
    z.write_all(b"#!/bin/sh\n").unwrap();
    z.add_symlink("app-1.0.0/x", "..", SimpleFileOptions::default())
        .unwrap();
    fs::create_dir_all(l.archive_dir()).unwrap();
    fs::write(l.archive_zip(&v), z.finish().unwrap().into_inner()).unwrap();
    let limits = crate::artifact::InstallLimits {
        max_unpacked: u64::MAX,
        min_free_disk: 0,
    };
    let err = crate::artifact::restore(&l, &v, limits).unwrap_err();
    assert!(err.to_string().contains("\"app-1.0.0/x\""), "{err}");
    assert!(!l.version_dir(&v).exists(), "nothing is restored");
}

#[test]
fn a_version_that_logged_past_max_unpacked_size_comes_back_but_its_build_is_still_bounded() {
    use crate::artifact::{install, parse_name, restore, InstallLimits};
    let base = tempfile::tempdir().unwrap();
    let l = Layout::new(base.path(), "app");
    let limits = InstallLimits {
        max_unpacked: 1 << 20,
        min_free_disk: 0,
    };
    // 2 MB, twice the bound.
    let log = "GET / 200\n".repeat(200_000).into_bytes();
    // A small build whose instances wrote more than MAX_UNPACKED_SIZE: it comes back whole.
    let v = Version::parse("1.0.0").unwrap();
    let dropped = base.path().join("app-1.0.0");
    fs::write(&dropped, b"#!/bin/sh\necho hi\n").unwrap();
    let name = parse_name("app-1.0.0", "app").unwrap();
    let installed = install(&l, &dropped, &name, limits).unwrap();
    for n in [1, 2] {
        let logs = l.instance_dir(&v, n).join("logs/json");
        fs::create_dir_all(&logs).unwrap();
        fs::write(logs.join("app.log"), &log).unwrap();
    }
    archive_version(&l, &v).unwrap();
    assert_eq!(restore(&l, &v, limits).unwrap(), installed);
    for n in [1, 2] {
        let restored = fs::read(l.instance_dir(&v, n).join("logs/json/app.log")).unwrap();
        assert!(restored == log, "instance {n}'s log is back whole");
    }
    // A build bigger than MAX_UNPACKED_SIZE is still refused, whatever its logs.
    let bounded = |v: &Version| {
        let err = restore(&l, v, limits).unwrap_err();
        assert!(
            err.to_string()
                .contains("MAX_UNPACKED_SIZE (1048576 bytes)"),
            "{err}"
        );
        assert!(!l.version_dir(v).exists(), "nothing is restored");
    };
    let v = Version::parse("1.1.0").unwrap();
    fs::create_dir_all(l.instance_dir(&v, 1)).unwrap();
    fs::write(l.version_dir(&v).join("app-1.1.0.jar"), &log).unwrap();
    fs::write(l.instance_dir(&v, 1).join("stdout"), b"started\n").unwrap();
    archive_version(&l, &v).unwrap();
    bounded(&v);
    // Only a number as understudy names an instance folder counts as one, on a plain path.
    use std::io::Write as _;
    for (n, big) in [(2, "01/big.log"), (3, "1/../big.log"), (4, "+1/big.log")] {
        let v = Version::new(1, n, 0);
        let mut z = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let exe = SimpleFileOptions::default().unix_permissions(0o755);
        z.start_file(format!("app-{v}/app-{v}"), exe).unwrap();
        z.write_all(b"#!/bin/sh\n").unwrap();
        z.start_file(format!("app-{v}/{big}"), exe).unwrap();
        z.write_all(&log).unwrap();
        fs::create_dir_all(l.archive_dir()).unwrap();
        fs::write(l.archive_zip(&v), z.finish().unwrap().into_inner()).unwrap();
        bounded(&v);
    }
}

#[test]
fn folders_left_aside_after_archiving_go_at_start_and_nothing_else() {
    let base = tempfile::tempdir().unwrap();
    let l = Layout::new(base.path(), "app");
    let v = Version::parse("1.0.0").unwrap();
    let vdir = l.version_dir(&v);
    fs::create_dir_all(vdir.join("1/logs")).unwrap();
    fs::write(vdir.join("1/logs/app.log"), b"log").unwrap();
    // Archived, but the folder moved aside could not be deleted (what is left of it is made
    // here by hand), and the retry was lost with a restart.
    archive_version(&l, &v).unwrap();
    let aside = base.path().join(".app-1.0.0.archived");
    assert_eq!(aside, aside_path(&l, &v));
    fs::create_dir_all(aside.join("1/logs")).unwrap();
    fs::write(aside.join("1/logs/app.log"), b"log").unwrap();
    let keep = [".other-1.0.0.archived", ".app-latest.archived", "app-2.0.0"];
    for k in keep {
        fs::create_dir_all(base.path().join(k)).unwrap();
    }
    fs::write(base.path().join(".app-3.0.0.archived"), b"a file").unwrap();
    assert_eq!(remove_archived_leftovers(&l), vec![aside.clone()]);
    assert!(!aside.exists());
    assert!(keep.iter().all(|k| base.path().join(k).is_dir()));
    assert!(base.path().join(".app-3.0.0.archived").is_file());
    assert!(l.archive_zip(&v).is_file(), "the archive stays");
}

#[test]
fn a_build_named_too_long_is_refused_into_a_shortened_folder() {
    let base = tempfile::tempdir().unwrap();
    let l = Layout::new(base.path(), "app");
    // Two 250-byte names that share their first 245 bytes.
    let head = format!("app-1.0.0-{}", "a".repeat(235));
    let names = [format!("{head}a.jar"), format!("{head}b.jar")];
    let mut folders = Vec::new();
    for name in &names {
        assert_eq!(name.len(), 250);
        let why = crate::artifact::name_refusal(name).unwrap();
        let dropped = base.path().join(name);
        fs::write(&dropped, b"jar").unwrap();
        let v = crate::artifact::parse_name(name, "app").unwrap().version;
        let dest = refuse_file(&l, &dropped, name, &v, &[why]).unwrap();
        let folder = dest.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            folder.len() <= 255 && folder.ends_with(".refused"),
            "{folder}"
        );
        assert!(!dropped.exists(), "the build left the base dir");
        assert!(dest.join(name).is_file() && dest.join("reason.json").is_file());
        let reason = fs::read_to_string(dest.join("reason.json")).unwrap();
        assert!(reason.contains("250 bytes"), "{reason}");
        folders.push(folder);
    }
    assert_ne!(folders[0], folders[1]);
    // A name that fits keeps the plain folder name.
    assert_eq!(refused_name("app-1.0.0.jar"), "app-1.0.0.jar.refused");
}

#[test]
fn a_build_named_as_long_as_understudy_handles_goes_all_the_way() {
    use crate::artifact::{name_refusal, parse_name, MAX_BUILD_NAME};
    let base = tempfile::tempdir().unwrap();
    let l = Layout::new(base.path(), "app");
    // An executable: its version folder, and so its archive, have its whole name.
    let name = format!("app-1.0.0-{}", "a".repeat(MAX_BUILD_NAME - 10));
    assert_eq!(name.len(), MAX_BUILD_NAME);
    assert!(name_refusal(&name).is_none());
    let parsed = parse_name(&name, "app").unwrap();
    let v = parsed.version.clone();
    let limits = crate::artifact::InstallLimits {
        max_unpacked: u64::MAX,
        min_free_disk: 0,
    };
    let dropped = base.path().join(&name);
    fs::write(&dropped, b"#!/bin/sh\necho hi\n").unwrap();
    let installed = crate::artifact::install(&l, &dropped, &parsed, limits).unwrap();
    crate::store::seal(&l, &installed).unwrap();
    fs::remove_file(&installed.program).unwrap();
    let repaired = crate::store::ensure(&l, &installed, limits).unwrap();
    assert!(repaired.is_some() && installed.program.is_file());
    archive_version(&l, &v).unwrap();
    assert_eq!(crate::artifact::restore(&l, &v, limits).unwrap(), installed);
    // An older build of a name as long is refused under its own name.
    let older = name.replacen("1.0.0", "0.9.0", 1);
    let dropped = base.path().join(&older);
    fs::write(&dropped, b"#!/bin/sh\n").unwrap();
    let dest = refuse_file(&l, &dropped, &older, &v, &["older".to_string()]).unwrap();
    assert!(
        dest.ends_with(format!("{older}.refused")),
        "{}",
        dest.display()
    );
}

#[test]
fn stray_temps_go_and_nothing_else() {
    let base = std::env::temp_dir().join(format!("understudy-stray-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    let l = Layout::new(&base, "app");
    // Past any pid the kernel gives: the writer is gone.
    let stray = [
        "archive/app-1.0.0.zip.tmp",
        "app-1.0.0/3/instance.tmp-4294967",
        ".understudy/state.tmp-4294967",
        ".understudy/events.tmp-4294967",
        ".understudy/status.tmp-4294967",
        ".running.tmp-4294967",
        ".testing.tmp-4294967",
        ".secondary.tmp-4294967",
        "rejected/app-0.9.0/reason.tmp-4294967",
        ".understudy/store/app-1.0.0/seal.tmp-4294967",
        ".understudy/store/app-1.0.0/.app-1.0.0.copy-4294967",
        "app-1.0.0/.app-1.0.0.copy-4294967",
    ];
    // A live process's (an upgrade's other understudy, here init) is being written now.
    let live = [
        ".understudy/events.tmp-1",
        ".understudy/state.tmp-1",
        ".running.tmp-1",
        ".secondary.tmp-1",
        "app-1.0.0/3/instance.tmp-1",
        "rejected/app-0.9.0/reason.tmp-1",
        ".understudy/store/app-1.0.0/seal.tmp-1",
        ".understudy/store/app-1.0.0/.app-1.0.0.copy-1",
        "app-1.0.0/.app-1.0.0.copy-1",
    ];
    let keep = [
        "archive/app-0.1.0.zip",
        "app-1.0.0/3/instance.json",
        ".understudy/state.json",
        ".understudy/store/app-1.0.0/seal.json",
        ".understudy/store/app-1.0.0/app-1.0.0",
        "rejected/app-0.9.0/reason.json",
        "app-1.0.0/app-1.0.0",
        "app-1.0.0/.copy-4294967",
        "other/instance.tmp-4294967",
        "other/.app.copy-4294967",
        "app-1.0.0.tmp",
    ];
    let keep: Vec<&str> = keep.iter().chain(&live).copied().collect();
    for p in stray.iter().chain(&keep) {
        let p = base.join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, b"x").unwrap();
    }
    let mut removed = remove_stray_temps(&l);
    removed.sort();
    let mut want: Vec<PathBuf> = stray.iter().map(|p| base.join(p)).collect();
    want.sort();
    assert_eq!(removed, want);
    assert!(keep.iter().all(|p| base.join(p).is_file()));
    fs::remove_dir_all(&base).unwrap();
}

/// Only the archives understudy writes (`<identifier>-<version>.zip`, regular files) are the
/// collection's to delete: an operator's files and folders in `archive/` stay, and when they are
/// what keeps the base dir over budget, `over_budget` names them.
/// A kill between a rotation's emptying of `stdout` and its copy taking the name `stdout.1` left
/// the rotated tail in `stdout.1.tmp`, which `understudy logs` never reads: the rename is
/// finished at start, replacing the older copy.
#[test]
fn a_rotation_cut_short_is_finished_at_start() {
    let base = std::env::temp_dir().join(format!("understudy-rotcut-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    let l = Layout::new(&base, "app");
    let inst = base.join("app-1.0.0/2");
    fs::create_dir_all(&inst).unwrap();
    fs::write(inst.join("stdout"), b"").unwrap();
    fs::write(inst.join("stdout.1"), b"older\n").unwrap();
    fs::write(inst.join("stdout.1.tmp"), b"the rotated tail\n").unwrap();
    fs::write(inst.join("stderr.1.tmp"), b"err tail\n").unwrap();
    // Not an instance folder: not understudy's.
    let other = base.join("app-1.0.0/logs");
    fs::create_dir_all(&other).unwrap();
    fs::write(other.join("stdout.1.tmp"), b"x").unwrap();
    remove_stray_temps(&l);
    assert_eq!(
        fs::read(inst.join("stdout.1")).unwrap(),
        b"the rotated tail\n"
    );
    assert_eq!(fs::read(inst.join("stderr.1")).unwrap(), b"err tail\n");
    assert!(!inst.join("stdout.1.tmp").exists() && !inst.join("stderr.1.tmp").exists());
    assert!(other.join("stdout.1.tmp").is_file());
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn collection_deletes_only_its_own_archives_and_names_the_rest() {
    let base = std::env::temp_dir().join(format!("understudy-gc-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    let l = Layout::new(&base, "app");
    let adir = l.archive_dir();
    fs::create_dir_all(adir.join("operator-backups")).unwrap();
    fs::create_dir_all(adir.join("app-0.8.0.zip")).unwrap();
    fs::write(adir.join("operator-backups/dump.sql"), vec![0u8; 4096]).unwrap();
    fs::write(adir.join("app-0.8.0.zip/inside"), vec![0u8; 4096]).unwrap();
    let foreign = [
        "NOTES.txt",
        "app-0.9.0.zip.bak",
        "other-1.0.0.zip",
        "app-01.0.0.zip",
    ];
    for name in foreign {
        fs::write(adir.join(name), vec![0u8; 4096]).unwrap();
    }
    std::os::unix::fs::symlink("NOTES.txt", adir.join("app-0.7.0.zip")).unwrap();
    fs::write(adir.join("app-1.0.0.zip"), vec![0u8; 4096]).unwrap();
    let limits = Limits {
        max_base_size: 1024,
        min_free_disk: 0,
    };
    // Deleting app-1.0.0.zip cannot bring the base dir under 1 KiB: it is kept, and the rest said.
    let c = collect_garbage(&l, limits);
    assert!(c.deleted.is_empty(), "{c:?}");
    let said = c.over_budget.unwrap_or_default();
    assert!(
        said.contains(
            "files in archive/ that are not understudy's archives (it never deletes them) 24.0 KiB"
        ),
        "{said}"
    );
    // Within reach once the budget leaves room for the rest: only the archive goes.
    let limits = Limits {
        max_base_size: 6 * 4096 + 100,
        min_free_disk: 0,
    };
    let c = collect_garbage(&l, limits);
    let deleted: Vec<&Path> = c.deleted.iter().map(|d| d.path.as_path()).collect();
    assert_eq!(deleted, vec![adir.join("app-1.0.0.zip").as_path()]);
    assert!(c.deleted[0].reason.contains("MAX_BASE_SIZE"));
    assert!(foreign.iter().all(|n| adir.join(n).is_file()));
    assert!(adir.join("operator-backups/dump.sql").is_file());
    assert!(adir.join("app-0.8.0.zip/inside").is_file());
    assert!(fs::symlink_metadata(adir.join("app-0.7.0.zip")).is_ok());
    fs::remove_dir_all(&base).unwrap();
}

/// A kill while a rollback unpacks leaves `.understudy/restore.tmp-<v>`, a whole folder: it goes
/// at start, as the other temps do (a folder of that name elsewhere stays).
#[test]
fn a_half_unpacked_restore_goes_at_start() {
    let base = std::env::temp_dir().join(format!("understudy-restore-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    let l = Layout::new(&base, "app");
    let tmp = l.state_dir().join("restore.tmp-1.0.0");
    fs::create_dir_all(tmp.join("3")).unwrap();
    fs::write(tmp.join("app-1.0.0"), b"half a build").unwrap();
    fs::write(tmp.join("3/app.log"), b"x").unwrap();
    let other = base.join("app-1.0.0/restore.tmp-1.0.0");
    fs::create_dir_all(&other).unwrap();
    assert_eq!(remove_stray_temps(&l), vec![tmp.clone()]);
    assert!(!tmp.exists());
    assert!(other.is_dir());
    fs::remove_dir_all(&base).unwrap();
}

/// A kill while the collection deletes a rejected build leaves it renamed aside,
/// `rejected/.<name>.deleting-<pid>`: it goes at start (or at the next collection of the same
/// process), unless another process deleting it still runs; a rejection under its name stays.
#[test]
fn a_rejected_build_half_deleted_goes_at_start() {
    let base = std::env::temp_dir().join(format!("understudy-halfdel-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    let l = Layout::new(&base, "app");
    let rdir = l.rejected_dir();
    // Past any pid the kernel gives: the process is gone. Its reason.json already went.
    let dead = rdir.join(".app-1.0.0.deleting-4294967");
    let live = rdir.join(".app-2.0.0.deleting-1");
    let ours = rdir.join(format!(".app-4.0.0.deleting-{}", std::process::id()));
    let kept = rdir.join("app-3.0.0");
    for d in [&dead, &live, &ours, &kept] {
        fs::create_dir_all(d.join("1")).unwrap();
        fs::write(d.join("1/stdout"), vec![0u8; 4096]).unwrap();
    }
    fs::write(kept.join("reason.json"), b"{}").unwrap();
    fs::write(ours.join("reason.json"), b"{}").unwrap();
    let mut removed = remove_stray_temps(&l);
    removed.sort();
    assert_eq!(removed, vec![dead.clone(), ours.clone()]);
    assert!(!dead.exists());
    assert!(live.join("1/stdout").is_file() && kept.join("1/stdout").is_file());
    // The collection finishes this process's own, and never takes one aside for a rejection.
    fs::create_dir_all(ours.join("1")).unwrap();
    fs::write(ours.join("reason.json"), b"{}").unwrap();
    let limits = Limits {
        max_base_size: u64::MAX,
        min_free_disk: 0,
    };
    assert!(collect_garbage(&l, limits).deleted.is_empty());
    assert!(!ours.exists());
    assert!(live.is_dir() && kept.join("reason.json").is_file());
    fs::remove_dir_all(&base).unwrap();
}

/// Archiving takes the collection's turn: a collection under way (holding it) is waited for, so
/// it never rotates an instance's logs while its folder is zipped and removed.
#[test]
fn archiving_waits_for_a_collection_under_way() {
    let base = std::env::temp_dir().join(format!("understudy-archturn-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    let l = Layout::new(&base, "app");
    let v = Version::parse("1.0.0").unwrap();
    fs::create_dir_all(l.instance_dir(&v, 1)).unwrap();
    fs::write(l.instance_dir(&v, 1).join("stdout"), b"x").unwrap();
    let turn = one_at_a_time();
    let (tx, rx) = std::sync::mpsc::channel();
    let archiver = {
        let l = l.clone();
        let v = v.clone();
        std::thread::spawn(move || tx.send(archive_version(&l, &v).is_ok()).unwrap())
    };
    assert!(
        rx.recv_timeout(std::time::Duration::from_millis(300))
            .is_err(),
        "archived while a collection held its turn"
    );
    assert!(l.instance_dir(&v, 1).join("stdout").is_file());
    drop(turn);
    assert!(rx.recv().unwrap());
    archiver.join().unwrap();
    assert!(l.archive_zip(&v).is_file() && !l.version_dir(&v).exists());
    fs::remove_dir_all(&base).unwrap();
}

/// A build refused for its long name is filed under a name of up to 255 bytes: the name it is
/// moved aside to for deletion still fits, so the collection can delete it (it could not, once).
#[test]
fn a_rejected_build_with_a_long_name_is_moved_aside_within_a_file_names_bytes() {
    let base = tempfile::tempdir().unwrap();
    let long = base.path().join(format!("app-{}.refused", "é".repeat(120)));
    fs::create_dir_all(long.join("1")).unwrap();
    let aside = super::stray::deleting_path(&long);
    let name = aside.file_name().unwrap().to_str().unwrap();
    assert!(name.len() <= 255, "{} bytes", name.len());
    assert_eq!(
        super::stray::deleting_pid(name),
        Some(std::process::id()),
        "{name}"
    );
    fs::rename(&long, &aside).expect("the aside name fits");
}

/// 1.1.0 rejected, dropped again and rejected again, twice: every rejection is kept (the newest
/// under the version's name, the earlier ones as `~1`, `~2`), each with its own build and reason,
/// and they count among the newest rejected builds kept, the oldest deleted first. A file refused
/// twice keeps both refusals too.
#[test]
fn a_version_rejected_again_keeps_its_earlier_rejections() {
    let base = tempfile::tempdir().unwrap();
    let l = Layout::new(base.path(), "app");
    let v = Version::parse("1.1.0").unwrap();
    let rejected = l.rejected_dir();
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for (i, why) in ["crashed at start", "lost /api", "never ready"]
        .iter()
        .enumerate()
    {
        fs::create_dir_all(l.version_dir(&v)).unwrap();
        fs::write(l.version_dir(&v).join("app-1.1.0"), format!("build {i}")).unwrap();
        let dest = reject_version(&l, &v, &[why.to_string()]).unwrap();
        assert_eq!(dest, rejected.join("app-1.1.0"));
        // Rejected in turn, a minute apart, an hour ago.
        fs::File::options()
            .write(true)
            .open(dest.join("reason.json"))
            .unwrap()
            .set_modified(long_ago + std::time::Duration::from_secs(60 * i as u64))
            .unwrap();
    }
    for (name, build, why) in [
        ("app-1.1.0~1", "build 0", "crashed at start"),
        ("app-1.1.0~2", "build 1", "lost /api"),
        ("app-1.1.0", "build 2", "never ready"),
    ] {
        let dir = rejected.join(name);
        assert_eq!(fs::read_to_string(dir.join("app-1.1.0")).unwrap(), build);
        let reason = fs::read_to_string(dir.join("reason.json")).unwrap();
        assert!(reason.contains(why), "{name}: {reason}");
    }
    let dropped = base.path().join("app-0.9.0");
    for i in 0..2 {
        fs::write(&dropped, format!("refused {i}")).unwrap();
        refuse_file(&l, &dropped, "app-0.9.0", &v, &["older".into()]).unwrap();
    }
    let refused = |n: &str| fs::read_to_string(rejected.join(n).join("app-0.9.0")).unwrap();
    assert_eq!(refused("app-0.9.0.refused~1"), "refused 0");
    assert_eq!(refused("app-0.9.0.refused"), "refused 1");
    // 5 here and 16 other rejected builds, newer: the oldest rejection of 1.1.0 goes.
    for i in 0..16 {
        let other = Version::parse(&format!("2.0.{i}")).unwrap();
        fs::create_dir_all(l.version_dir(&other)).unwrap();
        reject_version(&l, &other, &["bad".into()]).unwrap();
    }
    let limits = Limits {
        max_base_size: u64::MAX,
        min_free_disk: 0,
    };
    let c = collect_garbage(&l, limits);
    let deleted: Vec<&Path> = c.deleted.iter().map(|d| d.path.as_path()).collect();
    assert_eq!(deleted, vec![rejected.join("app-1.1.0~1").as_path()]);
    assert!(rejected.join("app-1.1.0~2").is_dir());
}
