//! A build: its name (`<identifier>-<semver>` as `.jar`, executable or `.zip`), and moving it
//! into its version folder (a zip is unpacked there) so it can be started.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use semver::Version;

use crate::layout::Layout;

mod place;
mod unzip;
/// Whether a symlink at a path relative to a folder, pointing at a target, stays inside that
/// folder: the rule a bundle is unpacked by, which archiving keeps too.
pub(crate) use unzip::stays_inside as link_stays_inside;
use unzip::{unzip, Source};

/// How a build is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `java -jar`.
    Jar,
    /// Run directly.
    Executable,
    /// A bundle holding a jar or an executable; unpacked into the version folder.
    Zip,
}

/// A dropped file's parsed name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactName {
    /// The file name as dropped.
    pub file_name: String,
    /// Parsed semver.
    pub version: Version,
    /// How it is started.
    pub kind: Kind,
}

/// Why a file name is not a build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not `<identifier>-…`.
    #[error("{0:?} is not named {1}-<version>[.jar|.zip]")]
    OtherIdentifier(String, String),
    /// The part after the identifier is not semver.
    #[error("{name:?}: {version:?} is not a semantic version (x.y.z): rename it to <identifier>-<x.y.z>[.jar|.zip]")]
    BadVersion { name: String, version: String },
    /// A version, then a kind of file understudy does not start (`.tar.gz`, `.war`, `.py`).
    #[error("{name:?}: a .{ext} build is not one understudy starts: drop a .jar, a .zip bundle, or an executable (a program, or a script with a #! line) named <identifier>-<x.y.z>; repack a .tar.gz or .tgz as a .zip")]
    OtherKind {
        /// The file name as dropped.
        name: String,
        /// What follows the version (`tar.gz`).
        ext: String,
    },
    /// A temporary or partial name that will change when complete.
    #[error("{0:?} looks like a file still being written")]
    InProgress(String),
}

/// Parse `file_name` as a build of `identifier`.
pub fn parse_name(file_name: &str, identifier: &str) -> Result<ArtifactName, NameError> {
    if is_temp_name(file_name) {
        return Err(NameError::InProgress(file_name.to_string()));
    }
    let rest = file_name
        .strip_prefix(identifier)
        .and_then(|r| r.strip_prefix('-'))
        .ok_or_else(|| NameError::OtherIdentifier(file_name.to_string(), identifier.to_string()))?;
    let (version, kind) = if let Some(v) = rest.strip_suffix(".jar") {
        (v, Kind::Jar)
    } else if let Some(v) = rest.strip_suffix(".zip") {
        (v, Kind::Zip)
    } else {
        (rest, Kind::Executable)
    };
    let version = Version::parse(version).map_err(|_| bad_version(file_name, version))?;
    Ok(ArtifactName {
        file_name: file_name.to_string(),
        version,
        kind,
    })
}

/// Why `version` (of the file `name`) is not a build's: a version followed by a kind of file
/// understudy does not start (`1.2.0.tar.gz`), or no version at all.
fn bad_version(name: &str, version: &str) -> NameError {
    let split = (version.char_indices())
        .filter(|&(_, c)| c == '.')
        .map(|(i, _)| (&version[..i], &version[i + 1..]))
        .find(|(v, ext)| {
            Version::parse(v).is_ok()
                && !ext.is_empty()
                && ext.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
                && !ext.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        });
    match split {
        Some((_, ext)) => NameError::OtherKind {
            name: name.to_string(),
            ext: ext.to_string(),
        },
        None => NameError::BadVersion {
            name: name.to_string(),
            version: version.to_string(),
        },
    }
}

/// The longest file name, in bytes, that Linux file systems take.
pub const NAME_MAX: usize = 255;

/// The longest build file name understudy handles, in bytes: [`NAME_MAX`] less the most that a
/// name it makes from a build's adds, 14 bytes (`.<build>.copy-<pid>`, the temp name of its
/// protected copy, with a pid of up to 7 digits). A longer build would be found, then fail
/// half-way with "File name too long"; it is refused instead ([`name_refusal`]).
pub const MAX_BUILD_NAME: usize = NAME_MAX - 14;

/// Why a build's file name is too long for understudy to handle, if it is: such a build is
/// refused into `rejected/` as soon as it is found, so it neither fails half-way nor stays.
pub fn name_refusal(file_name: &str) -> Option<String> {
    (file_name.len() > MAX_BUILD_NAME).then(|| {
        format!(
            "its name is {} bytes, longer than the {MAX_BUILD_NAME} understudy can handle (the \
             names it makes from a build's must fit in {NAME_MAX} bytes): drop it again under a \
             shorter name, with a shorter pre-release or build tag",
            file_name.len()
        )
    })
}

/// Names that download tools, editors and copy utilities use while a file is incomplete.
pub fn is_temp_name(name: &str) -> bool {
    const SUFFIXES: &[&str] = &[
        ".part",
        ".partial",
        ".tmp",
        ".temp",
        ".crdownload",
        ".download",
        ".swp",
        "~",
    ];
    name.starts_with('.') || SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Why a build could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A filesystem step failed.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The version folder's name is held by something that is not a folder, such as an
    /// executable build of the same version still being written: two builds of one version.
    #[error("{path} is not a folder, yet it has the name of the version folder of {version} (an executable build of {version} still being written, or a file or link put there): {file} was not installed; drop one build per version, or move {path} away and drop {file} again")]
    NameTaken {
        path: PathBuf,
        version: Version,
        file: String,
    },
    /// A hard-linked build must be copied into a fresh file, but the copy would leave less than
    /// `MIN_FREE_DISK` free.
    #[error("{path} has other hard links, so it is copied rather than moved (a write through one of them would change the installed build), but its {size} bytes would leave less than MIN_FREE_DISK ({min_free_disk} bytes) free on the disk of {disk}: free disk space or lower MIN_FREE_DISK, or drop the build with cp or mv instead of ln")]
    NoRoomToCopy {
        path: PathBuf,
        size: u64,
        min_free_disk: u64,
        disk: PathBuf,
    },
    /// The zip cannot be read.
    #[error("{path} is not a readable zip: {source}")]
    Zip {
        path: PathBuf,
        source: zip::result::ZipError,
    },
    /// An executable build that is neither an ELF binary nor a script with a `#!` line.
    #[error("{path} is not a program: an executable build must start with an ELF header or a #! line, but it starts with {start}; drop the real build (a .jar or .zip if it is one), or start a script with its interpreter's #! line (#!/bin/sh)")]
    NotAProgram { path: PathBuf, start: String },
    /// The build's `.sha256` names another digest: the copy is truncated or corrupt.
    #[error("{path} does not match its checksum {checksum}: expected sha256 {expected}, actual sha256 {actual}; the copy is incomplete or corrupt: drop the build again")]
    ChecksumMismatch {
        path: PathBuf,
        checksum: PathBuf,
        expected: String,
        actual: String,
    },
    /// The `.sha256` beside the build holds no digest.
    #[error("{path} is not a sha256 checksum ({why}): write it with `sha256sum <build> > <build>.sha256`")]
    BadChecksum { path: PathBuf, why: String },
    /// Unpacking the zip went past a bound; the partial `bundle/` was removed.
    #[error("{path} unpacks to more than {bound}: unpacking stopped and the partial bundle was removed; {advice}")]
    TooBig {
        path: PathBuf,
        bound: String,
        advice: &'static str,
    },
    /// A zip of more entries than understudy unpacks from one zip; nothing was unpacked.
    #[error("{path} holds {entries} entries, more than the {max} understudy unpacks from one zip: nothing was unpacked; pack fewer files (many small files can travel in a jar or an inner archive)")]
    TooManyEntries {
        path: PathBuf,
        entries: u64,
        max: u64,
    },
    /// A zip entry that would land outside `bundle/` (an absolute path, `..`, a symlink out, a
    /// chain of links out, an archive's entry outside its version folder).
    #[error("{path} holds {entry:?}, which would land or point outside the folder it is unpacked into: rebuild the zip with relative paths only, and symlinks whose target stays inside, with any `..` at its start")]
    UnsafeEntry { path: PathBuf, entry: String },
    /// The zip holds nothing startable.
    #[error("{path} holds no {identifier}-<version>.jar, jar or executable file at its top level or in its bin/ (or in those of its one top folder): put the program there")]
    NothingToStart { path: PathBuf, identifier: String },
    /// The zip holds no named program and more than one jar or executable where one is looked
    /// for: which to start is a guess, so none is.
    #[error("{path} holds several programs and none is named: {candidates}; name the one to start {identifier}-<version>.jar, {identifier}-<version>, {identifier}.jar or {identifier} (at the top level or in bin/), or leave only one jar or one executable file there")]
    SeveralToStart {
        path: PathBuf,
        identifier: String,
        candidates: String,
    },
}

/// An installed build: what an instance starts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Installed {
    /// The version.
    pub version: Version,
    /// The program to start, inside the version folder.
    pub program: PathBuf,
    /// Jar or executable (a zip resolves to one of the two).
    pub kind: Kind,
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> InstallError + 'a {
    move |source| InstallError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Bounds on what installing one build may write, so a zip bomb cannot fill the disk that the
/// running version and its logs live on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstallLimits {
    /// Largest total a `.zip` bundle may unpack to, counted as it is written (`MAX_UNPACKED_SIZE`).
    pub max_unpacked: u64,
    /// Free disk that unpacking must leave on the base dir's filesystem (`MIN_FREE_DISK`).
    pub min_free_disk: u64,
}

/// The suffix of a build's checksum file: `app-1.2.0.jar.sha256` guards `app-1.2.0.jar`.
pub const CHECKSUM_SUFFIX: &str = ".sha256";

/// The most a checksum file is read of, in bytes: a `sha256sum` line is under 300 even with a
/// long file name, so a bigger one is something else (the build copied under its name).
pub const MAX_CHECKSUM_SIZE: u64 = 4096;

/// The name of the checksum file that guards `build_file` (`<build file>.sha256`).
pub fn checksum_name(build_file: &str) -> String {
    format!("{build_file}{CHECKSUM_SUFFIX}")
}

/// The build a checksum file guards, if `file_name` is `<a build's name>.sha256`: such a file is
/// a companion that travels with its build, not a build nor a stray name.
pub fn checksum_of(file_name: &str, identifier: &str) -> Option<ArtifactName> {
    let build = file_name.strip_suffix(CHECKSUM_SUFFIX)?;
    parse_name(build, identifier).ok()
}

/// The hex digest in a `sha256sum`-style line: 64 hex digits, optionally followed by whitespace
/// and a file name. Lower-cased, so either case compares equal.
pub fn parse_checksum(text: &str) -> Result<String, String> {
    let first = text
        .split_whitespace()
        .next()
        .ok_or_else(|| "it is empty".to_string())?;
    if first.len() != 64 || !first.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "it starts with {:?}, not 64 hex digits",
            first.chars().take(80).collect::<String>()
        ));
    }
    Ok(first.to_ascii_lowercase())
}

/// The SHA-256 of a file's content, in lower-case hex. Blocking.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    use sha2::Digest;
    let mut f = fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The text of a checksum file, read no further than [`MAX_CHECKSUM_SIZE`]: a build copied under
/// the checksum's name is refused, never read into memory.
fn read_checksum(checksum: &Path) -> Result<String, InstallError> {
    let bad = |why: String| InstallError::BadChecksum {
        path: checksum.to_path_buf(),
        why,
    };
    let mut f = fs::File::open(checksum).map_err(|e| bad(format!("cannot open it: {e}")))?;
    let mut bytes = Vec::new();
    Read::by_ref(&mut f)
        .take(MAX_CHECKSUM_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(format!("cannot read it: {e}")))?;
    if bytes.len() as u64 > MAX_CHECKSUM_SIZE {
        let size = f.metadata().map_or(bytes.len() as u64, |m| m.len());
        return Err(bad(format!(
            "it is {size} bytes, more than the {MAX_CHECKSUM_SIZE} bytes understudy reads of one; \
             a .sha256 file holds one line: `<64 hex>  <name>`"
        )));
    }
    String::from_utf8(bytes).map_err(|e| bad(format!("it is not text: {e}")))
}

/// Check `build` against the digest in `checksum`.
fn verify_checksum(build: &Path, checksum: &Path) -> Result<(), InstallError> {
    let text = read_checksum(checksum)?;
    let expected = parse_checksum(&text).map_err(|why| InstallError::BadChecksum {
        path: checksum.to_path_buf(),
        why,
    })?;
    let actual = sha256_file(build).map_err(io_err("cannot read build to checksum", build))?;
    if actual != expected {
        return Err(InstallError::ChecksumMismatch {
            path: build.to_path_buf(),
            checksum: checksum.to_path_buf(),
            expected,
            actual,
        });
    }
    tracing::info!(
        "{} matches its checksum {}",
        build.display(),
        checksum.display()
    );
    Ok(())
}

/// Move a dropped build (and its `.sha256`, if one lies beside it) into its version folder,
/// (copied into a fresh file if it is hard-linked, within `MIN_FREE_DISK`), verify the checksum,
/// unpack a zip within `limits`, and find what to start. On an error once
/// the build is in its version folder, it stays there, for the caller to reject with it; on one
/// before, it is already in `rejected/<identifier>-<version>/`, where rejecting the version
/// writes the reason. Blocking: call from `spawn_blocking`.
pub fn install(
    layout: &Layout,
    dropped: &Path,
    name: &ArtifactName,
    limits: InstallLimits,
) -> Result<Installed, InstallError> {
    let vdir = layout.version_dir(&name.version);
    let (dest, sum) = place::place(layout, dropped, name, &vdir, limits)?;
    if let Some(sum) = sum {
        verify_checksum(&dest, &sum)?;
    }
    match name.kind {
        Kind::Jar => Ok(Installed {
            version: name.version.clone(),
            program: dest,
            kind: Kind::Jar,
        }),
        Kind::Executable => {
            check_program(&dest)?;
            make_executable(&dest)?;
            Ok(Installed {
                version: name.version.clone(),
                program: dest,
                kind: Kind::Executable,
            })
        }
        Kind::Zip => {
            let bundle = vdir.join("bundle");
            let _ = fs::remove_dir_all(&bundle);
            if let Err(e) = unzip(&dest, Source::Bundle, &bundle, limits, layout.base()) {
                // A partial bundle is never started and only fills the disk.
                let _ = fs::remove_dir_all(&bundle);
                return Err(e);
            }
            let (program, kind) = find_bundled(&bundle, layout.identifier(), &name.version)
                .ok_or_else(|| {
                    let (path, identifier) = (dest.clone(), layout.identifier().to_string());
                    match several_in(&bundle) {
                        Some(candidates) => InstallError::SeveralToStart {
                            path,
                            identifier,
                            candidates,
                        },
                        None => InstallError::NothingToStart { path, identifier },
                    }
                })?;
            if kind == Kind::Executable {
                check_program(&program)?;
                make_executable(&program)?;
            }
            Ok(Installed {
                version: name.version.clone(),
                program,
                kind,
            })
        }
    }
}

/// Why a version could not be brought back for a rollback.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Neither its folder nor its archive exists.
    #[error("{version} was never archived here, or its archive {zip} was deleted")]
    Missing {
        /// The version asked for.
        version: Version,
        /// Where its archive would be.
        zip: PathBuf,
    },
    /// Unpacking failed.
    #[error("cannot restore {version} from {zip}: {source}")]
    Unpack {
        /// The version asked for.
        version: Version,
        /// Its archive.
        zip: PathBuf,
        /// What went wrong.
        source: Box<InstallError>,
    },
    /// The folder is back but holds nothing startable.
    #[error("{dir} holds no startable build named {identifier}-{version}")]
    NothingToStart {
        /// The version folder.
        dir: PathBuf,
        /// The build name prefix.
        identifier: String,
        /// The version asked for.
        version: Version,
    },
}

/// Bring `version` back into its version folder for a rollback: as it is when the folder is still
/// there, else unpacked from its archive zip, bounded by `limits` like any bundle, except that
/// its instance folders (what the instances wrote, however long they ran) only count against
/// free disk. The archive is kept. Blocking.
pub fn restore(
    layout: &Layout,
    version: &Version,
    limits: InstallLimits,
) -> Result<Installed, RestoreError> {
    if let Some(found) = find_installed(layout, version) {
        return Ok(found);
    }
    let zip = layout.archive_zip(version);
    if !zip.is_file() {
        return Err(RestoreError::Missing {
            version: version.clone(),
            zip,
        });
    }
    let unpack = |source| RestoreError::Unpack {
        version: version.clone(),
        zip: zip.clone(),
        source: Box::new(source),
    };
    let tmp = layout.state_dir().join(format!("restore.tmp-{version}"));
    let _ = fs::remove_dir_all(&tmp);
    let vdir = layout.version_dir(version);
    // The zip holds one folder named like the version folder: what is in it is unpacked into
    // `tmp`, which becomes the version folder, so its links are held to the version folder. Its
    // instance folders' logs are bounded by free disk only: a rollback must not fail on them.
    let name = layout.version_name(version);
    let moved = unzip(&zip, Source::Archive(&name), &tmp, limits, layout.base()).and_then(|()| {
        let _ = fs::remove_dir_all(&vdir);
        fs::rename(&tmp, &vdir).map_err(io_err("cannot move restored folder to", &vdir))
    });
    let _ = fs::remove_dir_all(&tmp);
    moved.map_err(unpack)?;
    let installed =
        find_installed(layout, version).ok_or_else(|| RestoreError::NothingToStart {
            dir: vdir.clone(),
            identifier: layout.identifier().to_string(),
            version: version.clone(),
        })?;
    // Archives made before modes were kept hold no executable bit.
    if installed.kind == Kind::Executable {
        make_executable(&installed.program).map_err(unpack)?;
    }
    Ok(installed)
}

/// Find an already installed build in its version folder (after a restart).
pub fn find_installed(layout: &Layout, version: &Version) -> Option<Installed> {
    let vdir = layout.version_dir(version);
    let bundle = vdir.join("bundle");
    if bundle.is_dir() {
        let (program, kind) = find_bundled(&bundle, layout.identifier(), version)?;
        return Some(Installed {
            version: version.clone(),
            program,
            kind,
        });
    }
    let (program, kind) = program_in(&vdir, layout.identifier(), version)?;
    Some(Installed {
        version: version.clone(),
        program,
        kind,
    })
}

/// Rename, or copy then delete when the drop is on another filesystem.
pub fn move_file(from: &Path, to: &Path) -> Result<(), InstallError> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            fs::copy(from, to).map_err(io_err("cannot copy build to", to))?;
            fs::remove_file(from).map_err(io_err("cannot remove dropped build", from))
        }
        Err(source) => Err(InstallError::Io {
            what: "cannot move build",
            path: from.to_path_buf(),
            source,
        }),
    }
}

/// Refuse what `/bin/sh` would otherwise try to run: an empty file, random bytes, a fragment.
fn check_program(path: &Path) -> Result<(), InstallError> {
    let mut head = [0u8; 16];
    let mut f = fs::File::open(path).map_err(io_err("cannot open", path))?;
    let mut n = 0;
    while n < head.len() {
        match f
            .read(&mut head[n..])
            .map_err(io_err("cannot read", path))?
        {
            0 => break,
            k => n += k,
        }
    }
    let head = &head[..n];
    if head.starts_with(b"\x7fELF") || head.starts_with(b"#!") {
        return Ok(());
    }
    Err(InstallError::NotAProgram {
        path: path.to_path_buf(),
        start: shown_start(head),
    })
}

/// A file's first bytes as an operator reads them: text in quotes, other bytes escaped
/// (`"echo hi"`, `"\x00\x01"`), not a list of hex numbers.
fn shown_start(head: &[u8]) -> String {
    if head.is_empty() {
        "nothing (the file is empty)".to_string()
    } else {
        format!("\"{}\"", head.escape_ascii())
    }
}

fn make_executable(path: &Path) -> Result<(), InstallError> {
    let meta = fs::metadata(path).map_err(io_err("cannot read", path))?;
    let mut perm = meta.permissions();
    perm.set_mode(perm.mode() | 0o755);
    fs::set_permissions(path, perm).map_err(io_err("cannot make executable", path))
}

/// Unpack a bundle again (from the protected copy), within the same limits as at install.
pub fn unpack_bundle(
    zip_path: &Path,
    into: &Path,
    limits: InstallLimits,
    disk: &Path,
) -> Result<(), InstallError> {
    unzip(zip_path, Source::Bundle, into, limits, disk)
}

/// Give a restored executable its execute bits back (a copy keeps them, an archive may not).
pub fn mark_executable(path: &Path) -> Result<(), InstallError> {
    make_executable(path)
}

/// The program of the bundle unpacked in `dir`: a named one at its top level, else in its `bin/`,
/// then the only jar or executable there, in that order; a bundle whose top level is one folder
/// and nothing else (Gradle's `distZip`, sbt's `universal:packageBin`: `myapp-1.2.0/bin/myapp`)
/// is looked into the same way. A named program in `bin/` wins over a lone script beside it.
fn find_bundled(dir: &Path, identifier: &str, version: &Version) -> Option<(PathBuf, Kind)> {
    let places = places_in(dir);
    places
        .iter()
        .find_map(|d| named_in(d, identifier, version))
        .or_else(|| places.iter().find_map(|d| only_in(d)))
}

/// Where a bundle's program is looked for: its top level (or that of its one top folder), then
/// the `bin/` there.
fn places_in(dir: &Path) -> Vec<PathBuf> {
    let root = only_folder(dir).unwrap_or_else(|| dir.to_path_buf());
    let bin = root.join("bin");
    let bin = fs::symlink_metadata(&bin).is_ok_and(|m| m.is_dir());
    let mut places = vec![root.clone()];
    places.extend(bin.then(|| root.join("bin")));
    places
}

/// When no program was found: the first place holding several jars or several executables,
/// as their paths in the bundle (`run1.sh, run2.sh`), so the refusal names what to choose from.
fn several_in(dir: &Path) -> Option<String> {
    places_in(dir).iter().find_map(|d| {
        let (jars, exes) = candidates_in(d);
        let many = if jars.len() > 1 { jars } else { exes };
        let names: Vec<String> = many
            .iter()
            .map(|p| p.strip_prefix(dir).unwrap_or(p).display().to_string())
            .collect();
        (names.len() > 1).then(|| names.join(", "))
    })
}

/// The one entry of `dir`, when it is a folder (not a link to one).
fn only_folder(dir: &Path) -> Option<PathBuf> {
    let mut entries = fs::read_dir(dir).ok()?.filter_map(|e| e.ok());
    let one = entries.next()?;
    if entries.next().is_some() || !one.file_type().ok()?.is_dir() {
        return None;
    }
    Some(one.path())
}

/// The program in `dir`: `<id>-<v>.jar`, `<id>-<v>`, `<id>.jar`, `<id>`, then the only jar,
/// then the only executable file.
fn program_in(dir: &Path, identifier: &str, version: &Version) -> Option<(PathBuf, Kind)> {
    named_in(dir, identifier, version).or_else(|| only_in(dir))
}

/// `<id>-<v>.jar`, `<id>-<v>`, `<id>.jar` or `<id>` in `dir`, the first there.
fn named_in(dir: &Path, identifier: &str, version: &Version) -> Option<(PathBuf, Kind)> {
    let named = [
        (format!("{identifier}-{version}.jar"), Kind::Jar),
        (format!("{identifier}-{version}"), Kind::Executable),
        (format!("{identifier}.jar"), Kind::Jar),
        (identifier.to_string(), Kind::Executable),
    ];
    named.into_iter().find_map(|(n, kind)| {
        let p = dir.join(&n);
        p.is_file().then_some((p, kind))
    })
}

/// The only jar in `dir`, else its only executable file (Windows' `.bat`/`.cmd` scripts, which
/// `distZip` marks executable beside the real one, and zips left out).
fn only_in(dir: &Path) -> Option<(PathBuf, Kind)> {
    let (jars, exes) = candidates_in(dir);
    if jars.len() == 1 {
        return Some((jars[0].clone(), Kind::Jar));
    }
    if exes.len() == 1 {
        return Some((exes[0].clone(), Kind::Executable));
    }
    None
}

/// The jars in `dir`, and its executable files (but `.zip`, `.bat`, `.cmd`), sorted.
fn candidates_in(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return (Vec::new(), Vec::new());
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let ext = |p: &Path, e: &str| p.extension().is_some_and(|x| x.eq_ignore_ascii_case(e));
    let jars = files.iter().filter(|p| ext(p, "jar")).cloned().collect();
    let exes = files
        .into_iter()
        .filter(|p| {
            !["zip", "bat", "cmd"].iter().any(|e| ext(p, e))
                && fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
        })
        .collect();
    (jars, exes)
}

#[cfg(test)]
mod tests;
