use std::io::Write;

use super::*;

pub(super) fn temp_base(name: &str) -> PathBuf {
    let base = std::env::temp_dir().join(format!("understudy-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(&base).unwrap();
    base
}

pub(super) const NO_LIMITS: InstallLimits = InstallLimits {
    max_unpacked: u64::MAX,
    min_free_disk: 0,
};

pub(super) fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
    for (name, bytes) in entries {
        z.start_file(*name, opts).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap().into_inner()
}

#[test]
fn checksums_parse_as_sha256sum_writes_them() {
    let hex = "ab".repeat(32);
    assert_eq!(
        parse_checksum(&format!("{hex}  app-1.0.0.jar\n")),
        Ok(hex.clone())
    );
    assert_eq!(parse_checksum(&hex.to_uppercase()), Ok(hex.clone()));
    assert!(parse_checksum("").unwrap_err().contains("empty"));
    assert!(parse_checksum(&hex[..63])
        .unwrap_err()
        .contains("64 hex digits"));
    assert_eq!(
        checksum_of("app-1.0.0.jar.sha256", "app").map(|n| n.kind),
        Some(Kind::Jar)
    );
    assert_eq!(
        checksum_of("app-1.0.0.sha256", "app").map(|n| n.kind),
        Some(Kind::Executable)
    );
    assert!(checksum_of("app-1.0.sha256", "app").is_none());
    assert!(checksum_of("other-1.0.0.sha256", "app").is_none());
}

#[test]
fn a_mismatched_checksum_fails_the_install_and_both_stay_in_the_folder() {
    let base = temp_base("sum");
    let l = Layout::new(&base, "app");
    fs::write(base.join("app-1.0.0.jar"), b"jar").unwrap();
    fs::write(base.join("app-1.0.0.jar.sha256"), "00".repeat(32)).unwrap();
    let name = parse_name("app-1.0.0.jar", "app").unwrap();
    let err = install(&l, &base.join("app-1.0.0.jar"), &name, NO_LIMITS).unwrap_err();
    assert!(
        matches!(&err, InstallError::ChecksumMismatch { expected, .. } if *expected == "00".repeat(32)),
        "{err}"
    );
    let vdir = base.join("app-1.0.0");
    assert!(vdir.join("app-1.0.0.jar").is_file() && vdir.join("app-1.0.0.jar.sha256").is_file());
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn names() {
    let n = parse_name("app-1.10.0.jar", "app").unwrap();
    assert_eq!(
        (n.version.to_string(), n.kind),
        ("1.10.0".to_string(), Kind::Jar)
    );
    assert!(n.version > Version::parse("1.9.0").unwrap());
    assert_eq!(
        parse_name("app-2.0.0", "app").unwrap().kind,
        Kind::Executable
    );
    assert_eq!(
        parse_name("app-2.0.0-rc.1.zip", "app").unwrap().kind,
        Kind::Zip
    );
    assert!(matches!(
        parse_name("app-1.0.jar", "app"),
        Err(NameError::BadVersion { .. })
    ));
    assert!(matches!(
        parse_name("other-1.0.0.jar", "app"),
        Err(NameError::OtherIdentifier(..))
    ));
    // A reviewer's case: a Python team's `.tar.gz` was told its version is not one.
    for (name, ext) in [
        ("app-1.37.0.tar.gz", "tar.gz"),
        ("app-1.37.0.tgz", "tgz"),
        ("app-2.0.0.war", "war"),
    ] {
        let e = parse_name(name, "app").unwrap_err();
        assert_eq!(
            e,
            NameError::OtherKind {
                name: name.into(),
                ext: ext.into()
            }
        );
        assert!(e.to_string().contains("repack a .tar.gz"), "{e}");
    }
    for name in ["app-1.0.0.1", "app-v1.3.0.jar", "app-1.0.0."] {
        assert!(
            matches!(parse_name(name, "app"), Err(NameError::BadVersion { .. })),
            "{name}"
        );
    }
    assert!(matches!(
        parse_name("app-1.0.0.jar.part", "app"),
        Err(NameError::InProgress(_))
    ));
    assert!(matches!(
        parse_name(".app-1.0.0.jar", "app"),
        Err(NameError::InProgress(_))
    ));
}

#[test]
fn a_build_that_cannot_reach_its_folder_goes_to_rejected_and_the_file_in_the_way_stays() {
    let base = temp_base("name-taken");
    let l = Layout::new(&base, "app");
    // The executable build of 1.3.0 still being dropped holds the version folder's name.
    fs::write(base.join("app-1.3.0"), b"#!/bin/sh\n").unwrap();
    fs::write(base.join("app-1.3.0.jar"), b"jar").unwrap();
    fs::write(base.join("app-1.3.0.jar.sha256"), "00".repeat(32)).unwrap();
    // An earlier build of 1.3.0 was rejected: that rejection is kept beside this one.
    let earlier = base.join("rejected/app-1.3.0");
    fs::create_dir_all(&earlier).unwrap();
    fs::write(earlier.join("reason.json"), b"{}").unwrap();
    let name = parse_name("app-1.3.0.jar", "app").unwrap();
    let err = install(&l, &base.join("app-1.3.0.jar"), &name, NO_LIMITS).unwrap_err();
    assert!(matches!(err, InstallError::NameTaken { .. }), "{err}");
    assert!(base.join("rejected/app-1.3.0~1/reason.json").is_file());
    assert!(
        err.to_string().contains("drop one build per version"),
        "{err}"
    );
    assert_eq!(fs::read(base.join("app-1.3.0")).unwrap(), b"#!/bin/sh\n");
    let rejected = base.join("rejected/app-1.3.0");
    assert_eq!(fs::read(rejected.join("app-1.3.0.jar")).unwrap(), b"jar");
    assert!(rejected.join("app-1.3.0.jar.sha256").is_file());
    assert_eq!(fs::read_dir(l.incoming_dir()).unwrap().count(), 0);
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_hard_linked_build_is_installed_as_its_own_copy() {
    use std::os::unix::fs::MetadataExt;
    let base = temp_base("hard-link");
    let ci = temp_base("hard-link-ci").join("app-1.3.0.jar");
    let l = Layout::new(&base, "app");
    fs::write(&ci, b"jar as built").unwrap();
    // `ln /ci/out/app-1.3.0.jar /srv/app/`: the drop shares the CI's inode.
    fs::hard_link(&ci, base.join("app-1.3.0.jar")).unwrap();
    let name = parse_name("app-1.3.0.jar", "app").unwrap();
    let installed = install(&l, &base.join("app-1.3.0.jar"), &name, NO_LIMITS).unwrap();
    let ino = |p: &Path| fs::metadata(p).unwrap().ino();
    assert_ne!(ino(&installed.program), ino(&ci));
    assert!(
        !base.join("app-1.3.0.jar").exists(),
        "the dropped name goes"
    );
    assert_eq!(fs::metadata(&ci).unwrap().nlink(), 1);
    // The next CI build rewrites its output in place (`cp other.jar /ci/out/app-1.3.0.jar`).
    fs::write(&ci, b"another build").unwrap();
    assert_eq!(fs::read(&installed.program).unwrap(), b"jar as built");

    // A copy that would leave less than MIN_FREE_DISK free is not made.
    fs::hard_link(&ci, base.join("app-1.4.0.jar")).unwrap();
    let name = parse_name("app-1.4.0.jar", "app").unwrap();
    let full = InstallLimits {
        max_unpacked: u64::MAX,
        min_free_disk: u64::MAX,
    };
    let err = install(&l, &base.join("app-1.4.0.jar"), &name, full).unwrap_err();
    assert!(err.to_string().contains("MIN_FREE_DISK"), "{err}");
    assert!(base.join("rejected/app-1.4.0/app-1.4.0.jar").is_file());
    fs::remove_dir_all(&base).unwrap();
    fs::remove_dir_all(ci.parent().unwrap()).unwrap();
}

#[test]
fn a_checksum_file_far_over_its_bound_is_refused_unread() {
    let base = temp_base("big-sum");
    let l = Layout::new(&base, "app");
    fs::write(base.join("app-1.0.0.jar"), b"jar").unwrap();
    // The build itself copied under the checksum's name: 64 MiB, mostly a hole.
    let sum = fs::File::create(base.join("app-1.0.0.jar.sha256")).unwrap();
    sum.set_len(64 << 20).unwrap();
    drop(sum);
    let name = parse_name("app-1.0.0.jar", "app").unwrap();
    let err = install(&l, &base.join("app-1.0.0.jar"), &name, NO_LIMITS).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("app-1.0.0.jar.sha256")
            && text.contains(&format!("is {} bytes", 64 << 20))
            && text.contains(&format!("{MAX_CHECKSUM_SIZE} bytes"))
            && text.contains("holds one line"),
        "{text}"
    );
    fs::remove_dir_all(&base).unwrap();
}

/// A bundle's program: a named one in `bin/` wins over a lone script at the top (a distZip with a
/// `setup.sh` once started the setup script), and Windows' scripts beside the real one in `bin/`
/// do not make it ambiguous (a distZip whose script is not named after the identifier was
/// refused).
#[test]
fn a_bundles_program_is_the_named_one_then_the_only_one_windows_scripts_aside() {
    let mk = |name: &str, files: &[&str]| {
        let dir = temp_base(name);
        for f in files {
            let p = dir.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, b"#!/bin/sh\n").unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        dir
    };
    let v = Version::new(1, 2, 0);
    let found = |dir: &Path| {
        let (p, _) = find_bundled(dir, "shop", &v).expect("a program");
        p.strip_prefix(dir).unwrap().display().to_string()
    };
    let setup = mk(
        "bundle-setup",
        &["shop-1.2.0/setup.sh", "shop-1.2.0/bin/shop"],
    );
    assert_eq!(found(&setup), "shop-1.2.0/bin/shop");
    let other = mk(
        "bundle-bat",
        &["x/bin/server", "x/bin/server.bat", "x/lib/a.txt"],
    );
    assert_eq!(found(&other), "x/bin/server");
    let top = mk("bundle-top", &["shop", "bin/shop"]);
    assert_eq!(found(&top), "shop", "the top level first");
    let two = mk("bundle-two", &["bin/a", "bin/b"]);
    assert!(find_bundled(&two, "shop", &v).is_none(), "two: ambiguous");
    for d in [setup, other, top, two] {
        let _ = fs::remove_dir_all(d);
    }
}

/// A build that is no program is shown by its first bytes as text (`"echo hi"`), not as the hex
/// list `[65, 63, 68, 6f]` an operator had to decode.
#[test]
fn a_non_program_is_shown_by_its_first_bytes_as_text() {
    assert_eq!(shown_start(b"echo hi\n"), "\"echo hi\\n\"");
    assert_eq!(shown_start(b"\x00\x01PK"), "\"\\x00\\x01PK\"");
    assert_eq!(shown_start(b""), "nothing (the file is empty)");
    let base = temp_base("not-a-program");
    let path = base.join("app");
    fs::write(&path, b"echo hello\n").unwrap();
    let err = check_program(&path).unwrap_err().to_string();
    assert!(
        err.contains("it starts with \"echo hello\\n\"") && err.contains("#! line"),
        "{err}"
    );
    let _ = fs::remove_dir_all(&base);
}
