//! Unpacking a zip bundle safely: every byte written is held against `MAX_UNPACKED_SIZE` and
//! `MIN_FREE_DISK` (never the sizes the zip claims), and no entry may lead out of the bundle's
//! folder, by its path, through a symlink on the way, or as a symlink pointing out.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::{io_err, InstallError, InstallLimits};

/// How much free disk may be used before it is asked again, even if we think we have more:
/// other writers (the running version's logs) share the disk.
const RECHECK_DISK_EVERY: u64 = 16 << 20;

/// Bytes written while unpacking, held against `MAX_UNPACKED_SIZE` and `MIN_FREE_DISK`. The
/// sizes a zip's directory claims are never trusted: only bytes actually written count.
struct Budget<'a> {
    zip: &'a Path,
    disk: &'a Path,
    limits: InstallLimits,
    written: u64,
    /// Bytes we may still write before free disk must be asked again (`None`: cannot be asked).
    disk_allowance: Option<u64>,
    since_check: u64,
}

impl Budget<'_> {
    fn take(&mut self, n: u64) -> Result<(), InstallError> {
        if self.written.saturating_add(n) > self.limits.max_unpacked {
            return Err(InstallError::TooBig {
                path: self.zip.to_path_buf(),
                bound: format!("MAX_UNPACKED_SIZE ({} bytes)", self.limits.max_unpacked),
                advice: "raise MAX_UNPACKED_SIZE if the bundle is really that big",
            });
        }
        let stale = self.since_check.saturating_add(n) > RECHECK_DISK_EVERY;
        if stale || self.disk_allowance.is_some_and(|a| a < n) {
            self.disk_allowance = crate::layout::free_disk(self.disk)
                .map(|free| free.saturating_sub(self.limits.min_free_disk));
            self.since_check = 0;
        }
        if let Some(allowance) = self.disk_allowance {
            if allowance < n {
                return Err(InstallError::TooBig {
                    path: self.zip.to_path_buf(),
                    bound: format!(
                        "what leaves MIN_FREE_DISK ({} bytes) free on the disk of {}",
                        self.limits.min_free_disk,
                        self.disk.display()
                    ),
                    advice: "free disk space or lower MIN_FREE_DISK, then drop the build again",
                });
            }
            self.disk_allowance = Some(allowance - n);
        }
        self.written += n;
        self.since_check += n;
        Ok(())
    }
}

/// Unpack `zip_path` into `into`, counting every byte written against `limits`. Entries must stay
/// inside `into`: absolute paths, `..` that climbs out, writing through a symlink and symlinks
/// pointing out are refused.
pub(super) fn unzip(
    zip_path: &Path,
    into: &Path,
    limits: InstallLimits,
    disk: &Path,
) -> Result<(), InstallError> {
    let zip_err = |source| InstallError::Zip {
        path: zip_path.to_path_buf(),
        source,
    };
    let file = fs::File::open(zip_path).map_err(io_err("cannot open", zip_path))?;
    let mut archive = zip::ZipArchive::new(file).map_err(zip_err)?;
    fs::create_dir_all(into).map_err(io_err("cannot create", into))?;
    let mut budget = Budget {
        zip: zip_path,
        disk,
        limits,
        written: 0,
        disk_allowance: None,
        since_check: u64::MAX / 2,
    };
    let mut buf = vec![0u8; 64 * 1024];
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(zip_err)?;
        let unsafe_entry = |name: &str| InstallError::UnsafeEntry {
            path: zip_path.to_path_buf(),
            entry: name.to_string(),
        };
        let raw_name = entry.name().map(|n| n.into_owned()).unwrap_or_default();
        let rel = entry
            .enclosed_name()
            .ok_or_else(|| unsafe_entry(&raw_name))?;
        let out = into.join(&rel);
        if through_symlink(into, &rel) {
            return Err(unsafe_entry(&raw_name));
        }
        if entry.is_dir() {
            fs::create_dir_all(&out).map_err(io_err("cannot create", &out))?;
            continue;
        }
        if let Some(parent) = out.parent() {
            fs::create_dir_all(parent).map_err(io_err("cannot create", parent))?;
        }
        if entry.is_symlink() {
            let mut target = Vec::new();
            (&mut entry)
                .take(4096)
                .read_to_end(&mut target)
                .map_err(io_err("cannot read zip entry from", zip_path))?;
            let target = String::from_utf8(target).map_err(|_| unsafe_entry(&raw_name))?;
            if !stays_inside(&rel, Path::new(&target)) {
                return Err(unsafe_entry(&raw_name));
            }
            budget.take(target.len() as u64)?;
            let _ = fs::remove_file(&out);
            std::os::unix::fs::symlink(&target, &out)
                .map_err(io_err("cannot create symlink", &out))?;
            continue;
        }
        let _ = fs::remove_file(&out);
        let mut f = fs::File::create(&out).map_err(io_err("cannot create", &out))?;
        loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err("cannot unpack entry of", zip_path)(e)),
            };
            budget.take(n as u64)?;
            f.write_all(&buf[..n])
                .map_err(io_err("cannot write", &out))?;
        }
        if let Some(mode) = entry.unix_mode() {
            fs::set_permissions(&out, fs::Permissions::from_mode(mode & 0o777))
                .map_err(io_err("cannot set permissions of", &out))?;
        }
    }
    Ok(())
}

/// Whether any folder on the way from `root` to `root/rel` is a symlink (which could lead out).
fn through_symlink(root: &Path, rel: &Path) -> bool {
    let mut at = root.to_path_buf();
    let mut parts = rel.components().peekable();
    while let Some(c) = parts.next() {
        at.push(c);
        if parts.peek().is_none() {
            break;
        }
        if fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
            return true;
        }
    }
    false
}

/// Whether a symlink at `link` (relative to the bundle) pointing at `target` stays inside it:
/// the one rule for links, at install and when a version folder is archived.
pub(crate) fn stays_inside(link: &Path, target: &Path) -> bool {
    use std::path::Component;
    if target.is_absolute() {
        return false;
    }
    let mut depth = link.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::stays_inside;
    use crate::artifact::tests::{temp_base, zip_of, NO_LIMITS};
    use crate::artifact::{install, parse_name, InstallError, InstallLimits};
    use crate::layout::Layout;

    #[test]
    fn unpacking_stops_at_the_bound_and_leaves_no_bundle() {
        let base = temp_base("bomb");
        let l = Layout::new(&base, "app");
        let zeros = vec![0u8; 3 << 20];
        fs::write(
            base.join("app-1.0.0.zip"),
            zip_of(&[("app", b"#!/bin/sh\n"), ("z", &zeros)]),
        )
        .unwrap();
        let name = parse_name("app-1.0.0.zip", "app").unwrap();
        let limits = InstallLimits {
            max_unpacked: 1 << 20,
            min_free_disk: 0,
        };
        let err = install(&l, &base.join("app-1.0.0.zip"), &name, limits).unwrap_err();
        assert!(
            err.to_string()
                .contains("MAX_UNPACKED_SIZE (1048576 bytes)"),
            "{err}"
        );
        assert!(!base.join("app-1.0.0/bundle").exists());
        // Free disk is a bound too: asking to keep more than any disk has stops it at once.
        fs::rename(
            base.join("app-1.0.0/app-1.0.0.zip"),
            base.join("app-1.0.0.zip"),
        )
        .unwrap();
        fs::remove_dir_all(base.join("app-1.0.0")).unwrap();
        let limits = InstallLimits {
            max_unpacked: u64::MAX,
            min_free_disk: u64::MAX / 2,
        };
        let err = install(&l, &base.join("app-1.0.0.zip"), &name, limits).unwrap_err();
        assert!(err.to_string().contains("MIN_FREE_DISK"), "{err}");
        assert!(!base.join("app-1.0.0/bundle").exists());
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn entries_leading_out_of_the_bundle_are_refused() {
        assert!(stays_inside(Path::new("lib/a.so"), Path::new("a.so.1")));
        assert!(stays_inside(Path::new("lib/a"), Path::new("../bin/x")));
        assert!(!stays_inside(Path::new("a"), Path::new("../x")));
        assert!(!stays_inside(Path::new("a"), Path::new("/etc/passwd")));
        let base = temp_base("slip");
        let l = Layout::new(&base, "app");
        fs::write(
            base.join("app-1.0.0.zip"),
            zip_of(&[("app", b"#!/bin/sh\n"), ("../evil", b"x")]),
        )
        .unwrap();
        let name = parse_name("app-1.0.0.zip", "app").unwrap();
        let err = install(&l, &base.join("app-1.0.0.zip"), &name, NO_LIMITS).unwrap_err();
        assert!(matches!(err, InstallError::UnsafeEntry { .. }), "{err}");
        assert!(!base.join("evil").exists() && !base.join("app-1.0.0/evil").exists());
        fs::remove_dir_all(&base).unwrap();
    }
}
