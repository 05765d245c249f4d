//! Atomic replacement of a file: temp file in the same directory, write, fsync, rename, fsync
//! the directory.
//!
//! Written out here rather than taken from a crate: the sequence is short, and the details that
//! matter for a drop-in of the legacy Python helpers are specific: new files get
//! `0666 & ~umask` like Python's `open()` (`tempfile`'s `NamedTempFile` makes 0600 files and
//! does not fsync), fsyncs are optional (`durable`), each failing step must be reported as a
//! `Step` with the original `io::Error`, and the temp file carries an flock while it is written
//! so that [`cleanup_temp_files`] can tell a live temp file from an orphan. `atomic-write-file`
//! comes closest but has neither the optional durability nor the flock nor our error steps.

use std::collections::hash_map::RandomState;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions, Permissions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::errors::{Error, Result, Step};

/// Hex digits of the random part of a temp file name (64 bits).
const RANDOM_HEX: usize = 16;
/// `.` + name + `.` + random + `.tmp`: the bytes added to the name.
const TEMP_OVERHEAD: usize = 1 + 1 + RANDOM_HEX + 4;
/// NAME_MAX on Linux and the BSDs; longer target names are truncated in the temp name.
const NAME_MAX: usize = 255;
/// Attempts at a fresh temp name before giving up (a collision of 64 random bits is not
/// expected; this only bounds the loop).
const MAX_ATTEMPTS: usize = 64;
/// A replaced file at least this large is kept open across the rename (see
/// [`CompleteTemp::replace_target`]), where a thread of its own (~50 µs) costs less than
/// freeing the file in the rename. Lower for non-durable writes: their files' pages are
/// usually still being written back (ext4 starts it at the rename that put them in place),
/// and freeing them waits for that. Measured: non-durable 129-184 KiB writes 0.78-0.81x the
/// time with 64 KiB against 1 MiB; durable ones 1.02-1.06x at 129 KiB, 0.89x at ~400 KiB.
const KEEP_REPLACED_FROM: u64 = 256 << 10;
const KEEP_REPLACED_FROM_NOT_DURABLE: u64 = 64 << 10;

/// Atomically replaces `target` with `data`.
///
/// 1. Missing parent directories are created (like `os.makedirs`, mode `0777 & ~umask`).
/// 2. A temp file `.{name}.{16 hex digits}.tmp` is created in the same directory with
///    `O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC` and mode 0666, so the kernel applies the umask
///    and a new file gets `0666 & ~umask` like Python's `open()` (the umask is never read: that
///    is not thread-safe). A fresh name is drawn on `EEXIST`.
/// 3. While it is written the temp file is flocked, so a cleanup tool can tell it from an
///    orphan (see [`cleanup_temp_files`]).
/// 4. If the target exists, its permission bits (`mode & 0o7777`) are copied to the temp file.
///    The decision uses `lstat`: a symlink as target is *replaced by a regular file*, like
///    `os.replace` does, and that file gets the mode of the link's target (`stat`), or
///    `0666 & ~umask` if the link dangles. Owner and group are not kept (the legacy helpers did
///    not either).
/// 5. The data is written in full, the temp file fsynced if `durable` and closed (its close is
///    checked), renamed over the target, and the directory fsynced if `durable`.
///
/// Errors before the rename remove the temp file and leave the target untouched. A failing
/// directory fsync after a successful rename is reported (`Step::SyncDir`): the data is in
/// place, its durability is not certain. Every error names `target`, except `Step::CreateDir`
/// (the directory).
pub fn write_atomic(target: &Path, data: &[u8], durable: bool) -> Result<()> {
    prepare(target, data, durable)?.replace_target().map(drop)
}

/// The steps of [`write_atomic`] before the rename: a complete temp file holding `data`.
pub fn prepare(target: &Path, data: &[u8], durable: bool) -> Result<CompleteTemp> {
    let mut temp = TempFile::create(target, durable)?;
    temp.write(data)?;
    temp.complete()
}

/// A temp file beside its target, written in parts: the steps of [`write_atomic`] one by one,
/// so that a caller can write data as it is produced and hold a lock only around
/// [`CompleteTemp::replace_target`]. Dropped before that, the temp file is removed and the
/// target is untouched.
pub struct TempFile {
    pending: Pending,
    /// A duplicate descriptor that takes the writes and whose close is checked: NFS and FUSE
    /// report write-back errors at close (every close calls the file system's flush).
    file: File,
}

/// A temp file whose data is complete (fsynced if durable), waiting to replace its target.
pub struct CompleteTemp(Pending);

/// A temp file not yet renamed over its target: removed on drop.
struct Pending {
    target: PathBuf,
    dir: PathBuf,
    destination: PathBuf,
    durable: bool,
    /// Open the target before the rename (`CompleteTemp::replace_target`).
    keep_replaced: bool,
    path: PathBuf,
    /// Holds the flock that marks the temp file as live; released after the rename (or the
    /// removal), when this drops.
    marker: File,
}

impl Pending {
    fn fail(&self, step: Step, err: io::Error) -> Error {
        Error::io(step, &self.target, err)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            // Unlinked while the marker's flock is still held (the field drops after this).
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl TempFile {
    /// Creates (and flocks) the temp file, with the target's permission bits if it exists.
    pub fn create(target: &Path, durable: bool) -> Result<TempFile> {
        let name = target.file_name().ok_or_else(|| Error::InvalidPath {
            path: target.to_path_buf(),
            reason: "the path has no file name to write to",
        })?;
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let destination = dir.join(name);
        let fail = |step, err| Error::io(step, target, err);

        let existing = existing_file(&destination).map_err(|err| fail(Step::Stat, err))?;
        let (path, marker, temp_mode) = match create_temp(dir, name) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).map_err(|err| Error::io(Step::CreateDir, dir, err))?;
                create_temp(dir, name)
            }
            other => other,
        }
        .map_err(|err| fail(Step::CreateTemp, err))?;
        let keep_from = match durable {
            true => KEEP_REPLACED_FROM,
            false => KEEP_REPLACED_FROM_NOT_DURABLE,
        };
        let keep_replaced =
            existing.is_some_and(|(_, size)| size >= keep_from) && frees_blocks_slowly(&marker);
        let pending = Pending {
            target: target.to_path_buf(),
            dir: dir.to_path_buf(),
            destination,
            durable,
            keep_replaced,
            path,
            marker,
        };
        let file = pending
            .marker
            .try_clone()
            .map_err(|err| pending.fail(Step::CreateTemp, err))?;
        // The umask often gives the new file the target's bits already: no fchmod then.
        if let Some((mode, _)) = existing.filter(|&(mode, _)| mode != temp_mode) {
            file.set_permissions(Permissions::from_mode(mode))
                .map_err(|err| pending.fail(Step::SetPermissions, err))?;
        }
        Ok(TempFile { pending, file })
    }

    /// Appends `data`.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.file
            .write_all(data)
            .map_err(|err| self.pending.fail(Step::WriteTemp, err))
    }

    /// Another descriptor of the temp file, for syncing what is written so far early (from
    /// another thread, say): the final fsync's cost grows with the data it must write back and,
    /// with some volatile disk caches, flush, and a writer that produces its data over time can
    /// move that cost into the time spent producing. Errors of a sync that waits for the disk
    /// are the caller's to report (`Step::SyncTemp`): they are not seen again through this
    /// file's descriptor.
    pub fn sync_handle(&self) -> Result<File> {
        self.file
            .try_clone()
            .map_err(|err| self.pending.fail(Step::SyncTemp, err))
    }

    /// All data is written: fsync it (if durable) and close the written descriptor, checking
    /// the close.
    pub fn complete(self) -> Result<CompleteTemp> {
        let TempFile { pending, file } = self;
        if pending.durable {
            file.sync_all()
                .map_err(|err| pending.fail(Step::SyncTemp, err))?;
        }
        close(file).map_err(|err| pending.fail(Step::CloseTemp, err))?;
        Ok(CompleteTemp(pending))
    }
}

impl CompleteTemp {
    /// Renames the temp file over the target and (if durable) fsyncs the directory.
    ///
    /// Returns the replaced file, still open, when it is large and on a local file system:
    /// freeing its blocks takes about a millisecond per megabyte on ext4 with `discard`, and
    /// that work is done by whoever drops the last reference to the file, the rename when
    /// nothing holds it open. Kept open, the cost moves to closing it, which the caller can do
    /// after releasing its lock, or on another thread.
    ///
    /// A failing directory fsync after a successful rename is reported (`Step::SyncDir`): the
    /// data is in place, its durability is not certain.
    pub fn replace_target(mut self) -> Result<Option<File>> {
        let pending = &mut self.0;
        let replaced = if pending.keep_replaced {
            OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(&pending.destination)
                .ok()
        } else {
            None
        };
        fs::rename(&pending.path, &pending.destination)
            .map_err(|err| pending.fail(Step::Rename, err))?;
        pending.path = PathBuf::new(); // renamed: nothing to remove on drop
        if pending.durable {
            sync_dir(&pending.dir).map_err(|err| pending.fail(Step::SyncDir, err))?;
        }
        Ok(replaced)
    }
}

/// Local disk file systems, where freeing a large file's blocks costs the most and holding the
/// file open across the rename has no side effect (an NFS client would "silly-rename" it).
fn frees_blocks_slowly(file: &File) -> bool {
    const EXT4: i64 = 0xEF53; // also ext2 and ext3
    const XFS: i64 = 0x5846_5342;
    const BTRFS: i64 = 0x9123_683E;
    const F2FS: i64 = 0xF2F5_2010;
    // SAFETY: fstatfs fills the zeroed struct for an open descriptor.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut stat) } != 0 {
        return false;
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets
    let kind = stat.f_type as i64;
    matches!(kind, EXT4 | XFS | BTRFS | F2FS)
}

/// The permission bits to give the new file and the size of the file it replaces: those of the
/// existing target (through a symlink), or `None` for a new file (and for a directory or special
/// file, which the rename will refuse or replace as `os.replace` would).
fn existing_file(target: &Path) -> io::Result<Option<(u32, u64)>> {
    match fs::symlink_metadata(target) {
        // The link itself is replaced: nothing large is freed.
        Ok(meta) if meta.file_type().is_symlink() => Ok(fs::metadata(target)
            .ok()
            .filter(|meta| meta.is_file())
            .map(|meta| (meta.mode() & 0o7777, 0))),
        Ok(meta) if meta.is_file() => Ok(Some((meta.mode() & 0o7777, meta.len()))),
        Ok(_) => Ok(None),
        // A missing parent directory is created later; a parent that is not a directory
        // makes the temp file's creation fail, which names the step users expect.
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(err) => Err(err),
    }
}

/// Creates and flocks a fresh temp file for `name` in `dir`; also gives its permission bits.
fn create_temp(dir: &Path, name: &OsStr) -> io::Result<(PathBuf, File, u32)> {
    create_temp_with(dir, name, random_u64)
}

/// `create_temp` with the random parts of the names drawn from `random`. Whatever exists at a
/// drawn name (a file, a symlink planted there, dangling or not) is never opened: `O_EXCL`
/// fails on it and the next name is drawn.
fn create_temp_with(
    dir: &Path,
    name: &OsStr,
    mut random: impl FnMut() -> u64,
) -> io::Result<(PathBuf, File, u32)> {
    let mut last_err = None;
    for _ in 0..MAX_ATTEMPTS {
        let path = dir.join(temp_name(name, random()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true) // O_CREAT | O_EXCL; std adds O_CLOEXEC
            .mode(0o666)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path);
        let file = match file {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                last_err = Some(err);
                continue;
            }
            Err(err) => return Err(err),
        };
        // SAFETY: plain system call on an open descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = io::Error::last_os_error();
            if matches!(err.raw_os_error(), Some(e) if e == libc::EWOULDBLOCK || e == libc::EAGAIN)
            {
                // A cleanup tool got it first and is about to delete it: draw another name.
                last_err = Some(err);
                continue;
            }
            // No flock on this file system: the marker is a convenience, not a requirement.
        }
        // Between the creation and the flock, a cleanup (with a small `older_than`) may have
        // taken the file for an orphan and removed it: then the rename would fail. Draw again.
        let mode = match (fs::symlink_metadata(&path), file.metadata()) {
            (Ok(named), Ok(locked))
                if named.dev() == locked.dev() && named.ino() == locked.ino() =>
            {
                locked.mode() & 0o7777
            }
            _ => {
                last_err = Some(io::ErrorKind::NotFound.into());
                continue;
            }
        };
        return Ok((path, file, mode));
    }
    Err(last_err.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)))
}

/// `.{name}.{random:016x}.tmp`, with `name` cut so the result fits in NAME_MAX bytes.
fn temp_name(name: &OsStr, random: u64) -> std::ffi::OsString {
    let bytes = name.as_bytes();
    let bytes = &bytes[..bytes.len().min(NAME_MAX - TEMP_OVERHEAD)];
    let mut out = Vec::with_capacity(bytes.len() + TEMP_OVERHEAD);
    out.push(b'.');
    out.extend_from_slice(bytes);
    out.extend_from_slice(format!(".{random:016x}.tmp").as_bytes());
    std::os::unix::ffi::OsStringExt::from_vec(out)
}

/// 64 bits from std's randomly keyed SipHash (`RandomState`: random keys per thread, changed on
/// every call) over the pid, the time and a process-wide counter.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// Closes `file`, reporting the error that dropping it would ignore.
fn close(file: File) -> io::Result<()> {
    // SAFETY: the descriptor is owned by `file`, which gives it up; it is closed exactly once
    // (Linux releases it even when close fails, so it is not retried).
    if unsafe { libc::close(file.into_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)?
        .sync_all()
}

/// True for names this module creates as temp files: `.{name}.{16 lowercase hex}.tmp` with a
/// non-empty name.
pub fn is_temp_file_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    if b.len() < TEMP_OVERHEAD + 1 || b[0] != b'.' || !b.ends_with(b".tmp") {
        return false;
    }
    let random = &b[b.len() - 4 - RANDOM_HEX..b.len() - 4];
    b[b.len() - 5 - RANDOM_HEX] == b'.'
        && random
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// Removes this library's temp files directly in `dir` (not in subdirectories) that are older
/// than `older_than` (by modification time) and whose flock can be taken, i.e. that no live
/// writer holds. Each file is unlinked while its flock is held and only if the name still
/// refers to the file that was locked. Returns the removed paths. (A writer whose temp file is
/// removed in the instant between its creation and its flock notices and draws another name.)
///
/// Only an unreadable `dir` is an error; a file that cannot be examined, opened (for instance a
/// temp file of another user with mode 0600), locked or removed is skipped.
pub fn cleanup_temp_files(dir: &Path, older_than: Duration) -> Result<Vec<PathBuf>> {
    let entries = fs::read_dir(dir).map_err(|err| Error::io(Step::Read, dir, err))?;
    let now = SystemTime::now();
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        if !is_temp_file_name(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        if remove_if_orphan(&path, now, older_than) {
            removed.push(path);
        }
    }
    Ok(removed)
}

fn remove_if_orphan(path: &Path, now: SystemTime, older_than: Duration) -> bool {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return false;
    };
    let age = meta
        .modified()
        .ok()
        .and_then(|modified| now.duration_since(modified).ok())
        .unwrap_or(Duration::ZERO);
    if !meta.file_type().is_file() || age < older_than {
        return false;
    }
    let Ok(file) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    else {
        return false;
    };
    // SAFETY: plain system call on an open descriptor.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return false; // a live writer (or no flock here: then nothing can be told apart)
    }
    let same = match (file.metadata(), fs::symlink_metadata(path)) {
        (Ok(locked), Ok(named)) => locked.dev() == named.dev() && locked.ino() == named.ino(),
        _ => false,
    };
    same && fs::remove_file(path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TempDir;
    use std::ffi::OsString;

    /// The umask, without calling umask(2) (tests run in parallel threads).
    fn umask() -> u32 {
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
        u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn new_file_gets_0666_less_umask_and_no_temp_is_left() {
        let dir = TempDir::new("new");
        let target = dir.path("a.json");
        for durable in [false, true] {
            let _ = fs::remove_file(&target);
            write_atomic(&target, b"{}\n", durable).unwrap();
            assert_eq!(fs::read(&target).unwrap(), b"{}\n");
            assert_eq!(mode(&target), 0o666 & !umask());
            assert_eq!(dir.names(), ["a.json"]);
        }
        // Relative target in the current directory is not tested (cwd is shared by threads).
    }

    #[test]
    fn existing_mode_is_kept() {
        let dir = TempDir::new("mode");
        let target = dir.path("a.json");
        for wanted in [0o600, 0o751, 0o644, 0o2640] {
            fs::write(&target, b"old").unwrap();
            fs::set_permissions(&target, Permissions::from_mode(wanted)).unwrap();
            write_atomic(&target, b"new", true).unwrap();
            assert_eq!(fs::read(&target).unwrap(), b"new");
            assert_eq!(mode(&target), wanted, "{wanted:o}");
        }
        assert_eq!(dir.names(), ["a.json"]);
    }

    #[test]
    fn symlink_target_is_replaced_by_a_regular_file_with_the_link_targets_mode() {
        let dir = TempDir::new("symlink");
        let real = dir.path("real.json");
        fs::write(&real, b"real").unwrap();
        fs::set_permissions(&real, Permissions::from_mode(0o640)).unwrap();
        let link = dir.path("link.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, b"via link", false).unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_file());
        assert_eq!(mode(&link), 0o640);
        assert_eq!(fs::read(&link).unwrap(), b"via link");
        assert_eq!(fs::read(&real).unwrap(), b"real");

        let dangling = dir.path("dangling.json");
        std::os::unix::fs::symlink(dir.path("nowhere"), &dangling).unwrap();
        write_atomic(&dangling, b"x", false).unwrap();
        assert_eq!(mode(&dangling), 0o666 & !umask());
        assert!(!dir.path("nowhere").exists());
    }

    #[test]
    fn parent_directories_are_created() {
        let dir = TempDir::new("parents");
        let target = dir.path("x/y/z/a.json");
        write_atomic(&target, b"deep", true).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"deep");
        assert_eq!(fs::read_dir(dir.path("x/y/z")).unwrap().count(), 1);
    }

    #[test]
    fn errors_leave_the_target_untouched_and_no_temp() {
        let dir = TempDir::new("errors");
        // A parent that is a file.
        let file = dir.path("file");
        fs::write(&file, b"keep").unwrap();
        match write_atomic(&file.join("a.json"), b"x", true) {
            Err(Error::Io { step, source, .. }) => {
                assert_eq!(step, Step::CreateTemp);
                assert_eq!(source.raw_os_error(), Some(libc::ENOTDIR));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(fs::read(&file).unwrap(), b"keep");
        // A directory as target: the rename fails, the temp file is removed.
        let sub = dir.path("sub");
        fs::create_dir(&sub).unwrap();
        fs::write(sub.join("inside"), b"in").unwrap();
        match write_atomic(&sub, b"x", true) {
            Err(Error::Io { step, .. }) => assert_eq!(step, Step::Rename),
            other => panic!("{other:?}"),
        }
        assert_eq!(fs::read(sub.join("inside")).unwrap(), b"in");
        assert_eq!(dir.names(), ["file", "sub"]);
        // No name at all.
        assert!(matches!(
            write_atomic(Path::new("/"), b"x", false),
            Err(Error::InvalidPath { .. })
        ));
    }

    #[test]
    fn long_names_fit_in_the_temp_name() {
        let dir = TempDir::new("long");
        let name = "n".repeat(250);
        let target = dir.path(&name);
        write_atomic(&target, b"long", false).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"long");
        assert_eq!(dir.names(), [name]);
    }

    #[test]
    fn temp_names() {
        for name in ["a.json", ".hidden", "x", &"n".repeat(300)] {
            let temp = temp_name(OsStr::new(name), random_u64());
            assert!(temp.len() <= NAME_MAX);
            assert!(is_temp_file_name(&temp), "{temp:?}");
        }
        assert_ne!(random_u64(), random_u64());
        let good = ".a.json.0123456789abcdef.tmp";
        assert!(is_temp_file_name(OsStr::new(good)));
        for bad in [
            "a.json",
            "a.json.0123456789abcdef.tmp",
            "..0123456789abcdef.tmp",
            ".a.json.0123456789ABCDEF.tmp",
            ".a.json.0123456789abcde.tmp",
            ".a.json.0123456789abcdefa.tmp",
            ".a.json-0123456789abcdef.tmp",
            ".a.json.0123456789abcdef.tmpx",
            "",
        ] {
            assert!(!is_temp_file_name(OsStr::new(bad)), "{bad}");
        }
        let raw: OsString =
            std::os::unix::ffi::OsStringExt::from_vec(b".\xff.0123456789abcdef.tmp".to_vec());
        assert!(is_temp_file_name(&raw));
    }

    #[test]
    fn cleanup_removes_orphans_only() {
        let dir = TempDir::new("cleanup");
        let orphan = dir.path(".a.json.00000000000000aa.tmp");
        let live = dir.path(".a.json.00000000000000bb.tmp");
        let young = dir.path(".a.json.00000000000000cc.tmp");
        let other = dir.path("a.json");
        let old = SystemTime::now() - Duration::from_secs(3600);
        for path in [&orphan, &live, &other] {
            File::create(path).unwrap().set_modified(old).unwrap();
        }
        fs::write(&young, b"").unwrap();
        let holder = File::open(&live).unwrap();
        assert_eq!(unsafe { libc::flock(holder.as_raw_fd(), libc::LOCK_EX) }, 0);

        let removed = cleanup_temp_files(&dir.0, Duration::from_secs(60)).unwrap();
        assert_eq!(removed, std::slice::from_ref(&orphan));
        assert!(!orphan.exists() && live.exists() && young.exists() && other.exists());

        drop(holder);
        let mut removed = cleanup_temp_files(&dir.0, Duration::ZERO).unwrap();
        removed.sort();
        assert_eq!(removed, [live, young]);
        assert_eq!(dir.names(), ["a.json"]);

        let err = cleanup_temp_files(&dir.path("missing"), Duration::ZERO).unwrap_err();
        assert!(matches!(
            err,
            Error::Io {
                step: Step::Read,
                ..
            }
        ));
    }

    #[test]
    fn planted_symlink_at_the_temp_name_is_skipped() {
        let dir = TempDir::new("planted");
        let victim = dir.path("victim");
        fs::write(&victim, b"victim").unwrap();
        let name = OsStr::new("a.json");
        std::os::unix::fs::symlink(&victim, dir.0.join(temp_name(name, 1))).unwrap();
        std::os::unix::fs::symlink(dir.path("nowhere"), dir.0.join(temp_name(name, 2))).unwrap();
        let mut draws = 1..;
        let (path, mut file, _) = create_temp_with(&dir.0, name, || draws.next().unwrap()).unwrap();
        assert_eq!(path, dir.0.join(temp_name(name, 3)));
        file.write_all(b"data").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"victim");
        assert!(!dir.path("nowhere").exists());
        assert!(fs::symlink_metadata(&path).unwrap().file_type().is_file());
    }

    #[test]
    fn a_writer_holds_the_flock_of_its_temp_file() {
        let dir = TempDir::new("marker");
        let (path, file, _) = create_temp(&dir.0, OsStr::new("a.json")).unwrap();
        assert!(cleanup_temp_files(&dir.0, Duration::ZERO)
            .unwrap()
            .is_empty());
        drop(file);
        assert_eq!(cleanup_temp_files(&dir.0, Duration::ZERO).unwrap(), [path]);
    }

    #[test]
    fn a_large_replaced_file_is_handed_back_open_on_local_disks() {
        let dir = TempDir::new("replaced");
        let target = dir.path("a.json");
        // Replaces the target (of `old_size` bytes) with a write of that durability; the
        // replaced file if it was handed back.
        let replace = |old_size: u64, durable: bool| {
            write_atomic(&target, &vec![b'x'; old_size as usize], false).unwrap();
            let mut temp = TempFile::create(&target, durable).unwrap();
            temp.write(b"new").unwrap();
            let local = frees_blocks_slowly(&temp.file);
            let replaced = temp.complete().unwrap().replace_target().unwrap();
            assert_eq!(fs::read(&target).unwrap(), b"new");
            (local, replaced)
        };
        for (old_size, durable) in [
            (KEEP_REPLACED_FROM, true),
            (KEEP_REPLACED_FROM_NOT_DURABLE, false),
        ] {
            match replace(old_size, durable) {
                // The old version, unlinked, still readable until closed.
                (true, Some(old)) => {
                    let meta = old.metadata().unwrap();
                    assert_eq!((meta.nlink(), meta.len()), (0, old_size));
                }
                (false, None) => {}
                (local, kept) => panic!("local {local}, kept {}", kept.is_some()),
            }
        }
        // Smaller files are not kept: a durable write keeps less than a non-durable one.
        assert!(replace(KEEP_REPLACED_FROM_NOT_DURABLE, true).1.is_none());
        assert!(replace(KEEP_REPLACED_FROM_NOT_DURABLE - 1, false)
            .1
            .is_none());
        assert_eq!(dir.names(), ["a.json"]);
    }

    #[test]
    fn concurrent_writers_never_expose_a_partial_file() {
        let dir = TempDir::new("concurrent");
        let target = dir.path("a.json");
        let payloads: Vec<Vec<u8>> = (0..4u8)
            .map(|i| vec![b'a' + i; 3000 + 100 * i as usize])
            .collect();
        write_atomic(&target, &payloads[0], false).unwrap();
        std::thread::scope(|s| {
            for payload in &payloads {
                let target = &target;
                s.spawn(move || {
                    for _ in 0..200 {
                        write_atomic(target, payload, false).unwrap();
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..500 {
                    let seen = fs::read(&target).unwrap();
                    assert!(
                        payloads.contains(&seen),
                        "partial file of {} bytes",
                        seen.len()
                    );
                }
            });
        });
        assert_eq!(dir.names(), ["a.json"]);
    }
}
