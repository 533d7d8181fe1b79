//! Unpacking a zip bundle safely: every byte written, and a fixed cost for every file, folder and
//! link created, is held against `MIN_FREE_DISK` and, when it is the build's, `MAX_UNPACKED_SIZE`
//! (never the sizes the zip claims); a zip of more than [`MAX_ENTRIES`] entries is refused before
//! it is read; and no entry may lead out of the bundle's folder, by its path, through a symlink on
//! the way, or as a symlink pointing out.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::{io_err, InstallError, InstallLimits};

/// How much free disk may be used before it is asked again, even if we think we have more:
/// other writers (the running version's logs) share the disk.
const RECHECK_DISK_EVERY: u64 = 16 << 20;

/// What every file, folder and symlink that unpacking creates costs against `MIN_FREE_DISK` (and
/// `MAX_UNPACKED_SIZE` when it is the build's), besides its bytes: an inode and a filesystem
/// block. Without it a zip of a million empty folders would cost nothing while filling the disk's
/// inodes and blocks.
pub(crate) const ENTRY_COST: u64 = 4096;

/// Most entries one zip may hold (a bundle, or an archive a rollback restores). The zip's own
/// count is checked before its central directory is read, which the zip crate holds in memory
/// whole (a few hundred bytes an entry): a small zip of millions of empty entries would otherwise
/// cost gigabytes of memory before the first byte is unpacked.
pub(crate) const MAX_ENTRIES: u64 = 100_000;

/// Most entries an archive understudy wrote itself may hold when a rollback restores it: the
/// bundle's unpacked tree with an entry per folder, the dropped file and the instances' logs, so
/// a bundle within [`MAX_ENTRIES`] always comes back.
pub(crate) const MAX_ARCHIVE_ENTRIES: u64 = 3 * MAX_ENTRIES;

/// What a zip is: which of it is unpacked, how many entries it may hold, and which of them are
/// the build, held to `MAX_UNPACKED_SIZE`.
#[derive(Debug, Clone, Copy)]
pub(super) enum Source<'a> {
    /// A dropped bundle: all of it is the build.
    Bundle,
    /// An archive understudy wrote of a version folder, named like it inside the zip. Its
    /// instance folders hold what the instances wrote, their logs above all, as much as ran: a
    /// rollback must bring them back whatever their size, so only free disk bounds them.
    Archive(&'a str),
}

impl Source<'_> {
    /// The zip's folder that is unpacked (empty: the whole zip).
    fn folder(&self) -> &str {
        match self {
            Source::Bundle => "",
            Source::Archive(folder) => folder,
        }
    }

    fn max_entries(&self) -> u64 {
        match self {
            Source::Bundle => MAX_ENTRIES,
            Source::Archive(_) => MAX_ARCHIVE_ENTRIES,
        }
    }

    /// Whether what lands at `rel` (inside the folder unpacked into) is the build's, held to
    /// `MAX_UNPACKED_SIZE`: everything but an archive's instance folders, each a number at the
    /// top of the version folder ([`crate::layout::instance_number`]) on a path without `..`.
    fn is_build(&self, rel: &Path) -> bool {
        use std::path::Component;
        let mut parts = rel.components();
        let first = parts.next().and_then(|c| c.as_os_str().to_str());
        let instance = matches!(self, Source::Archive(_))
            && first.and_then(crate::layout::instance_number).is_some()
            && parts.all(|c| matches!(c, Component::Normal(_)));
        !instance
    }
}

/// Bytes written while unpacking, held against `MIN_FREE_DISK`, and those of the build against
/// `MAX_UNPACKED_SIZE` too. The sizes a zip's directory claims are never trusted: only bytes
/// actually written count, and [`ENTRY_COST`] for everything created.
struct Budget<'a> {
    zip: &'a Path,
    disk: &'a Path,
    limits: InstallLimits,
    /// The build's bytes written so far, held to `MAX_UNPACKED_SIZE`.
    build_written: u64,
    /// Bytes we may still write before free disk must be asked again (`None`: cannot be asked).
    disk_allowance: Option<u64>,
    since_check: u64,
}

impl Budget<'_> {
    /// Count `n` more bytes against free disk, and against `MAX_UNPACKED_SIZE` when they are the
    /// `build`'s; an error when either bound would be passed.
    fn take(&mut self, n: u64, build: bool) -> Result<(), InstallError> {
        if build && self.build_written.saturating_add(n) > self.limits.max_unpacked {
            return Err(InstallError::TooBig {
                path: self.zip.to_path_buf(),
                bound: format!("MAX_UNPACKED_SIZE ({} bytes)", self.limits.max_unpacked),
                advice: "raise MAX_UNPACKED_SIZE if the bundle is really that big (every file, \
                         folder and link counts 4 KiB besides its bytes)",
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
        if build {
            self.build_written += n;
        }
        self.since_check += n;
        Ok(())
    }
}

/// Unpack the entries of `zip_path` under `source`'s folder (all of a bundle) into `into`,
/// without that leading folder, counting every byte written and every file, folder and link
/// created against `limits` (those of an archive's instance folders against free disk only).
/// Entries must stay inside `into`, which is also the folder links are held to: absolute paths,
/// `..` that climbs out, entries outside the folder, writing through a symlink and symlinks
/// pointing out are refused.
pub(super) fn unzip(
    zip_path: &Path,
    source: Source<'_>,
    into: &Path,
    limits: InstallLimits,
    disk: &Path,
) -> Result<(), InstallError> {
    let mut archive = open(zip_path, source.max_entries())?;
    fs::create_dir_all(into).map_err(io_err("cannot create", into))?;
    let mut unpacker = Unpacker {
        zip: zip_path,
        source,
        into,
        budget: Budget {
            zip: zip_path,
            disk,
            limits,
            build_written: 0,
            disk_allowance: None,
            since_check: u64::MAX / 2,
        },
        buf: vec![0u8; 64 * 1024],
    };
    for i in 0..archive.len() {
        let entry = archive.by_index(i).map_err(zip_error(zip_path))?;
        unpacker.entry(entry)?;
    }
    Ok(())
}

fn zip_error(path: &Path) -> impl FnOnce(zip::result::ZipError) -> InstallError + '_ {
    move |source| InstallError::Zip {
        path: path.to_path_buf(),
        source,
    }
}

/// Open a zip for unpacking, refusing one of more than `max` entries: by the count its end
/// record states, before the zip crate reads the central directory into memory, and by the count
/// it read (for a zip whose end records are not where zip tools put them).
fn open(zip_path: &Path, max: u64) -> Result<zip::ZipArchive<fs::File>, InstallError> {
    let mut file = fs::File::open(zip_path).map_err(io_err("cannot open", zip_path))?;
    let declared = declared_entries(&mut file).map_err(io_err("cannot read", zip_path))?;
    let too_many = |entries: u64| InstallError::TooManyEntries {
        path: zip_path.to_path_buf(),
        entries,
        max,
    };
    if declared > max {
        return Err(too_many(declared));
    }
    let archive = zip::ZipArchive::new(file).map_err(zip_error(zip_path))?;
    if archive.len() as u64 > max {
        return Err(too_many(archive.len() as u64));
    }
    Ok(archive)
}

/// The most entries any end-of-central-directory record in the last 64 KiB of a zip states
/// (following a zip64 locator to the zip64 record where it says); 0 when there is none. The most,
/// so that whichever of these records the zip crate settles on, it reads no more entries than
/// this; a zip64 record only found by searching is caught by the count the crate read.
fn declared_entries(file: &mut fs::File) -> io::Result<u64> {
    const EOCD: &[u8] = b"PK\x05\x06";
    let len = file.seek(SeekFrom::End(0))?;
    let start = len.saturating_sub(22 + (1 << 16));
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    (&mut *file).take(len - start).read_to_end(&mut tail)?;
    let u16_at = |b: &[u8], i: usize| u64::from(u16::from_le_bytes([b[i], b[i + 1]]));
    let u64_at = |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let mut most = 0;
    for at in (0..tail.len().saturating_sub(21)).filter(|&i| tail[i..].starts_with(EOCD)) {
        most = most.max(u16_at(&tail, at + 10));
        let locator = at.checked_sub(20).map(|l| &tail[l..at]);
        if let Some(loc) = locator.filter(|l| l.starts_with(b"PK\x06\x07")) {
            let mut record = [0u8; 40];
            file.seek(SeekFrom::Start(u64_at(loc, 8)))?;
            if file.read_exact(&mut record).is_ok() && record.starts_with(b"PK\x06\x06") {
                most = most.max(u64_at(&record, 32));
            }
        }
    }
    Ok(most)
}

/// Unpacks one zip's entries into `into`, within its budget.
struct Unpacker<'a> {
    zip: &'a Path,
    /// What the zip is: the folder of it unpacked, and what of it is the build.
    source: Source<'a>,
    into: &'a Path,
    budget: Budget<'a>,
    buf: Vec<u8>,
}

impl Unpacker<'_> {
    fn unsafe_entry(&self, name: &str) -> InstallError {
        InstallError::UnsafeEntry {
            path: self.zip.to_path_buf(),
            entry: name.to_string(),
        }
    }

    /// Unpack one entry: a folder, a symlink or a file, with the folders on its way.
    fn entry(&mut self, mut entry: zip::read::ZipFile<'_, fs::File>) -> Result<(), InstallError> {
        let raw_name = entry.name().map(|n| n.into_owned()).unwrap_or_default();
        let rel = entry
            .enclosed_name()
            .and_then(|p| Some(p.strip_prefix(self.source.folder()).ok()?.to_path_buf()))
            .ok_or_else(|| self.unsafe_entry(&raw_name))?;
        let build = self.source.is_build(&rel);
        if entry.is_dir() {
            return self.make_dirs(&rel, &raw_name, build);
        }
        if let Some(parent) = rel.parent() {
            self.make_dirs(parent, &raw_name, build)?;
        }
        let out = self.into.join(&rel);
        self.budget.take(ENTRY_COST, build)?;
        if entry.is_symlink() {
            let mut target = Vec::new();
            (&mut entry)
                .take(4096)
                .read_to_end(&mut target)
                .map_err(io_err("cannot read zip entry from", self.zip))?;
            let target = String::from_utf8(target).map_err(|_| self.unsafe_entry(&raw_name))?;
            if !stays_inside(&rel, Path::new(&target)) {
                return Err(self.unsafe_entry(&raw_name));
            }
            let _ = fs::remove_file(&out);
            return std::os::unix::fs::symlink(&target, &out)
                .map_err(io_err("cannot create symlink", &out));
        }
        self.file(&mut entry, &out, build)
    }

    /// Create the folder `rel` and those on its way that are not there yet, each charged
    /// [`ENTRY_COST`] (to the `build` or not, as the entry). One that is a symlink (which could
    /// lead out) refuses the entry.
    fn make_dirs(&mut self, rel: &Path, raw_name: &str, build: bool) -> Result<(), InstallError> {
        let mut at = self.into.to_path_buf();
        for c in rel.components() {
            at.push(c);
            match fs::symlink_metadata(&at) {
                Ok(m) if m.is_symlink() => return Err(self.unsafe_entry(raw_name)),
                Ok(m) if m.is_dir() => {}
                _ => {
                    self.budget.take(ENTRY_COST, build)?;
                    fs::create_dir(&at).map_err(io_err("cannot create", &at))?;
                }
            }
        }
        Ok(())
    }

    /// Write a file entry to `out`, every byte held against the budget (as the `build`'s or
    /// not), with its mode.
    fn file(
        &mut self,
        entry: &mut zip::read::ZipFile<'_, fs::File>,
        out: &Path,
        build: bool,
    ) -> Result<(), InstallError> {
        let _ = fs::remove_file(out);
        let mut f = fs::File::create(out).map_err(io_err("cannot create", out))?;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err("cannot unpack entry of", self.zip)(e)),
            };
            self.budget.take(n as u64, build)?;
            f.write_all(&self.buf[..n])
                .map_err(io_err("cannot write", out))?;
        }
        if let Some(mode) = entry.unix_mode() {
            fs::set_permissions(out, fs::Permissions::from_mode(mode & 0o777))
                .map_err(io_err("cannot set permissions of", out))?;
        }
        Ok(())
    }
}

/// Whether a symlink at `link` (relative to the folder unpacked into) pointing at `target` stays
/// inside that folder: the one rule for links, at install, at a rollback's restore and when a
/// version folder is archived (so what is archived can be restored).
///
/// Checked as text, without looking at the disk, so the order of a zip's entries cannot matter:
/// the target is relative, and its `..` may only lead it, climbing no higher than the folder.
/// A `..` after a name is refused because the name may be another link: `b -> a/..` with
/// `a -> .` is the folder's parent, though `a/..` reads as the folder. Leading `..` climb from
/// the link's own folder, a real one (nothing is unpacked through a symlink); the names after
/// them only descend, and each link met on the way is held to this same rule, so no chain of
/// links leads out.
pub(crate) fn stays_inside(link: &Path, target: &Path) -> bool {
    use std::path::Component;
    let mut climb = link.components().count().saturating_sub(1);
    let mut named = false;
    for c in target.components() {
        match c {
            Component::Normal(_) => named = true,
            Component::CurDir => {}
            Component::ParentDir if !named && climb > 0 => climb -= 1,
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io;
    use std::path::Path;

    use super::{
        declared_entries, open, stays_inside, unzip, Source, ENTRY_COST, MAX_ARCHIVE_ENTRIES,
        MAX_ENTRIES,
    };
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

    /// A zip of `n` empty folders `d0/`, `d1/`, ...
    fn zip_of_dirs(n: u64) -> Vec<u8> {
        let mut z = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default();
        for i in 0..n {
            z.add_directory(format!("d{i}"), opts).unwrap();
        }
        z.finish().unwrap().into_inner()
    }

    #[test]
    fn a_zip_of_too_many_entries_is_refused_before_anything_is_unpacked() {
        let base = tempfile::tempdir().unwrap();
        let zip = base.path().join("app-1.0.0.zip");
        fs::write(&zip, zip_of_dirs(MAX_ENTRIES + 1)).unwrap();
        // The count is the zip's own, read from its end record before its directory is read.
        let declared = declared_entries(&mut fs::File::open(&zip).unwrap()).unwrap();
        assert_eq!(declared, MAX_ENTRIES + 1);
        let into = base.path().join("bundle");
        let err = unzip(&zip, Source::Bundle, &into, NO_LIMITS, base.path()).unwrap_err();
        assert!(
            matches!(err, InstallError::TooManyEntries { entries, .. } if entries == MAX_ENTRIES + 1),
            "{err}"
        );
        assert!(err.to_string().contains("pack fewer files"), "{err}");
        assert!(!into.exists(), "nothing is unpacked");
        // An archive understudy wrote holds more (a folder entry each, logs): a rollback opens it.
        assert!(open(&zip, MAX_ARCHIVE_ENTRIES).is_ok());
        // Through install, the bundle is refused like any other bad one.
        let l = Layout::new(base.path(), "app");
        let name = parse_name("app-1.0.0.zip", "app").unwrap();
        let err = install(&l, &zip, &name, NO_LIMITS).unwrap_err();
        assert!(matches!(err, InstallError::TooManyEntries { .. }), "{err}");
        assert!(!base.path().join("app-1.0.0/bundle").exists());
    }

    #[test]
    fn every_file_folder_and_link_costs_a_block_of_the_budget() {
        let base = tempfile::tempdir().unwrap();
        let limits = InstallLimits {
            max_unpacked: 256 * ENTRY_COST,
            min_free_disk: 0,
        };
        let unpack = |name: &str, bytes: Vec<u8>| {
            let zip = base.path().join(format!("{name}.zip"));
            fs::write(&zip, bytes).unwrap();
            unzip(
                &zip,
                Source::Bundle,
                &base.path().join(name),
                limits,
                base.path(),
            )
        };
        let over = |r: Result<(), InstallError>| {
            let err = r.unwrap_err();
            assert!(err.to_string().contains("MAX_UNPACKED_SIZE"), "{err}");
        };
        // Empty folders, empty files, and the folders a deep path implies, all without a byte.
        assert!(unpack("fits", zip_of_dirs(255)).is_ok());
        over(unpack("dirs", zip_of_dirs(257)));
        let empty: Vec<String> = (0..257).map(|i| format!("f{i}")).collect();
        let files: Vec<(&str, &[u8])> = empty.iter().map(|n| (n.as_str(), &b""[..])).collect();
        over(unpack("files", zip_of(&files)));
        let deep = format!("{}f", "d/".repeat(256));
        over(unpack("deep", zip_of(&[(deep.as_str(), b"")])));
    }

    #[test]
    fn a_chain_of_symlinks_cannot_lead_out_of_the_bundle() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempfile::tempdir().unwrap();
        let l = Layout::new(base.path(), "app");
        // A file of the base dir, outside every version folder, that install must not chmod.
        let outside = base.path().join("outside.sh");
        fs::write(&outside, b"#!/bin/sh\n").unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o644)).unwrap();
        // Each link stays inside by its text; resolved, `b` is the version folder, `c` the base dir.
        let mut z = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default();
        for (link, target) in [
            ("a", "."),
            ("b", "a/.."),
            ("c", "b/.."),
            ("app", "c/outside.sh"),
        ] {
            z.add_symlink(link, target, opts).unwrap();
        }
        let dropped = base.path().join("app-1.0.0.zip");
        fs::write(&dropped, z.finish().unwrap().into_inner()).unwrap();
        let name = parse_name("app-1.0.0.zip", "app").unwrap();
        let err = install(&l, &dropped, &name, NO_LIMITS).unwrap_err();
        assert!(
            matches!(&err, InstallError::UnsafeEntry { entry, .. } if entry == "b"),
            "{err}"
        );
        let mode = fs::metadata(&outside).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "the file outside was not touched");
        assert!(!base.path().join("app-1.0.0/bundle").exists());
    }

    #[test]
    fn entries_leading_out_of_the_bundle_are_refused() {
        assert!(stays_inside(Path::new("lib/a.so"), Path::new("a.so.1")));
        assert!(stays_inside(Path::new("lib/a"), Path::new("../bin/x")));
        assert!(stays_inside(
            Path::new("lib/x/a"),
            Path::new("./../../bin/x")
        ));
        assert!(stays_inside(Path::new("a"), Path::new(".")));
        assert!(!stays_inside(Path::new("b"), Path::new("a/..")));
        assert!(!stays_inside(Path::new("lib/a"), Path::new("x/../../y")));
        assert!(!stays_inside(Path::new("x"), Path::new("..")));
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
