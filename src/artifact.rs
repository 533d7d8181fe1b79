//! A build: its name (`<identifier>-<semver>` as `.jar`, executable or `.zip`), and moving it
//! into its version folder (a zip is unpacked there) so it can be started.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use semver::Version;

use crate::layout::Layout;

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
    let version = Version::parse(version).map_err(|_| NameError::BadVersion {
        name: file_name.to_string(),
        version: version.to_string(),
    })?;
    Ok(ArtifactName {
        file_name: file_name.to_string(),
        version,
        kind,
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
    /// The zip cannot be read.
    #[error("{path} is not a readable zip: {source}")]
    Zip {
        path: PathBuf,
        source: zip::result::ZipError,
    },
    /// An executable build that is neither an ELF binary nor a script with a `#!` line.
    #[error("{path} is not a program: an executable build must start with an ELF header or a #! line, but it starts with {start}; drop the real build (a .jar or .zip if it is one)")]
    NotAProgram { path: PathBuf, start: String },
    /// The zip holds nothing startable.
    #[error("{path} holds no {identifier}-<version>.jar, jar or executable file at its top level: put the program there")]
    NothingToStart { path: PathBuf, identifier: String },
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

/// Move a dropped build into its version folder and find what to start.
/// Blocking: call from `spawn_blocking`.
pub fn install(
    layout: &Layout,
    dropped: &Path,
    name: &ArtifactName,
) -> Result<Installed, InstallError> {
    let vdir = layout.version_dir(&name.version);
    // An executable build has the version folder's own name: move it out of the way first.
    let incoming = layout.state_dir().join("incoming");
    fs::create_dir_all(&incoming).map_err(io_err("cannot create", &incoming))?;
    let staged = incoming.join(&name.file_name);
    move_file(dropped, &staged)?;
    fs::create_dir_all(&vdir).map_err(io_err("cannot create version folder", &vdir))?;
    let dest = vdir.join(&name.file_name);
    move_file(&staged, &dest)?;
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
            unzip(&dest, &bundle)?;
            let (program, kind) = find_program(&bundle, layout.identifier(), &name.version)
                .ok_or_else(|| InstallError::NothingToStart {
                    path: dest.clone(),
                    identifier: layout.identifier().to_string(),
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

/// Find an already installed build in its version folder (after a restart).
pub fn find_installed(layout: &Layout, version: &Version) -> Option<Installed> {
    let vdir = layout.version_dir(version);
    let bundle = vdir.join("bundle");
    if bundle.is_dir() {
        let (program, kind) = find_program(&bundle, layout.identifier(), version)?;
        return Some(Installed {
            version: version.clone(),
            program,
            kind,
        });
    }
    let (program, kind) = find_program(&vdir, layout.identifier(), version)?;
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
    use std::io::Read;
    let mut head = [0u8; 4];
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
    let start = if head.is_empty() {
        "nothing (the file is empty)".to_string()
    } else {
        format!("{:02x?}", head)
    };
    Err(InstallError::NotAProgram {
        path: path.to_path_buf(),
        start,
    })
}

fn make_executable(path: &Path) -> Result<(), InstallError> {
    let meta = fs::metadata(path).map_err(io_err("cannot read", path))?;
    let mut perm = meta.permissions();
    perm.set_mode(perm.mode() | 0o755);
    fs::set_permissions(path, perm).map_err(io_err("cannot make executable", path))
}

fn unzip(zip_path: &Path, into: &Path) -> Result<(), InstallError> {
    let file = fs::File::open(zip_path).map_err(io_err("cannot open", zip_path))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|source| InstallError::Zip {
        path: zip_path.to_path_buf(),
        source,
    })?;
    archive.extract(into).map_err(|source| InstallError::Zip {
        path: zip_path.to_path_buf(),
        source,
    })
}

/// The program in `dir`: `<id>-<v>.jar`, `<id>-<v>`, `<id>.jar`, `<id>`, then the only jar,
/// then the only executable file.
fn find_program(dir: &Path, identifier: &str, version: &Version) -> Option<(PathBuf, Kind)> {
    let named = [
        (format!("{identifier}-{version}.jar"), Kind::Jar),
        (format!("{identifier}-{version}"), Kind::Executable),
        (format!("{identifier}.jar"), Kind::Jar),
        (identifier.to_string(), Kind::Executable),
    ];
    for (n, kind) in named {
        let p = dir.join(&n);
        if p.is_file() {
            return Some((p, kind));
        }
    }
    let files: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    let jars: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "jar"))
        .collect();
    if jars.len() == 1 {
        return Some((jars[0].clone(), Kind::Jar));
    }
    let exes: Vec<&PathBuf> = files
        .iter()
        .filter(|p| {
            p.extension().is_none_or(|e| e != "zip")
                && fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
        })
        .collect();
    if exes.len() == 1 {
        return Some((exes[0].clone(), Kind::Executable));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(matches!(
            parse_name("app-1.0.0.jar.part", "app"),
            Err(NameError::InProgress(_))
        ));
        assert!(matches!(
            parse_name(".app-1.0.0.jar", "app"),
            Err(NameError::InProgress(_))
        ));
    }
}
