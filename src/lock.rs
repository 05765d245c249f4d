//! Exclusive inter-process locks on a sidecar lock file, with `flock(2)` (the default) or, opt-in,
//! with open-file-description record locks (`fcntl(F_OFD_SETLK)` on the whole file), see
//! [`LockMode`].
//!
//! Compatible with the legacy Python helpers (`fcntl.flock(fd, LOCK_EX | LOCK_NB)` on
//! `path.with_suffix('.lock')`), with the `flock(1)` command, Rust std's `File::lock` and fs4:
//! all of them use the same `flock(2)` locks, which belong to an *open file description*.
//!
//! # Waiting
//!
//! The legacy helpers poll every 100 ms. Here a waiter is woken by the kernel: after a failed
//! `LOCK_NB`, the descriptor is handed to a short-lived helper thread that makes a *blocking*
//! `flock(LOCK_EX)` call and reports through a `Mutex` + `Condvar`. The caller waits on the
//! condition variable until its deadline, in slices of at most [`INTERRUPT_CHECK_INTERVAL`] so it
//! can call `check_interrupt`. This gives a wake-up within microseconds of the release, a timeout
//! honoured to the scheduler's precision, no CPU use while waiting, and no starvation under a
//! tight write loop (a blocked `flock` is woken at the moment of the release and retries before
//! a looping releaser comes back; a poller would almost always miss that window).
//!
//! The same scheme serves [`LockMode::Posix`], with `F_OFD_SETLK` / `F_OFD_SETLKW` in place of
//! `LOCK_NB` / blocking `flock`: OFD locks also belong to the open file description, so
//! re-entrancy, orphans and the fork handling below apply unchanged.
//!
//! A blocking `flock` cannot be cancelled. When the caller gives up (timeout or interrupt), it
//! marks its request *abandoned* and leaves the descriptor with the helper; whenever the helper's
//! `flock` returns, it closes the descriptor, which releases the lock if it got it. The abandoned
//! request is kept as an *orphan*: the next waiter on the same lock file in this process adopts
//! it instead of starting another helper, so repeated timeouts against a hung holder do not pile
//! up blocked threads (at most one blocked helper per concurrent waiter).
//!
//! # Descriptors and `fork`
//!
//! Every descriptor this module opens is recorded in a process-global registry, together with the
//! locks held (for re-entrancy) and the orphans. A forked child inherits the descriptors and with
//! them a share of the parent's open file descriptions: if the child kept them, the parent's
//! release would not release anything while the child lives. So the child closes them all
//! without unlocking ([`forget_all_after_fork`], also installed as a `pthread_atfork` child
//! handler). To make that safe in a multi-threaded parent, descriptors are only created and
//! closed under a read lock ("gate") that the `pthread_atfork` prepare handler takes for writing:
//! no thread is half-way through opening, registering or closing at the moment of the fork, and
//! the registry mutex is free in the child.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::fs::OpenOptions;
use std::hash::{BuildHasherDefault, DefaultHasher};
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once, PoisonError, RwLock, RwLockWriteGuard};
use std::time::{Duration, Instant};

use crate::errors::{Error, Result, Step};

/// The longest time a waiter goes without calling `check_interrupt`.
pub const INTERRUPT_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// How long before its deadline a waiter reads the holders for the timeout error. Reading
/// `/proc/locks` takes the kernel's `file_rwsem` for writing, which waits for an RCU grace period:
/// 5-20 ms on the test VM. Read at the deadline, that delay would be added to every timeout.
pub const HOLDERS_LEAD: Duration = Duration::from_millis(30);

// ---------------------------------------------------------------------------------------------
// Lock file names

/// The lock file of `target`, with the semantics of Python 3.11's
/// `pathlib.Path(target).with_suffix('.lock')`: the suffix is `name[i:]` where
/// `i = name.rfind('.')` and `0 < i < len(name) - 1`; it is replaced by `.lock`, or `.lock` is
/// appended when there is none. `"a.json"` -> `"a.lock"`, `"a.tar.gz"` -> `"a.tar.lock"`,
/// `"noext"` -> `"noext.lock"`, `".bashrc"` -> `".bashrc.lock"`, `"a."` -> `"a..lock"`,
/// `".."` -> `"...lock"`. Works on the bytes of the name (any `OsStr`). Like pathlib, `.`
/// components and repeated or trailing slashes are normalized away.
///
/// A path without a name (`""`, `"/"`, `"."`) is `Error::InvalidPath`.
pub fn lock_path_for(target: &Path) -> Result<PathBuf> {
    let mut components: Vec<Component<'_>> = target.components().collect();
    let name: &OsStr = match components.pop() {
        Some(Component::Normal(name)) => name,
        // pathlib treats `..` as an ordinary name.
        Some(Component::ParentDir) => OsStr::new(".."),
        _ => {
            return Err(Error::InvalidPath {
                path: target.to_path_buf(),
                reason: "the path has an empty name, so it has no lock file",
            })
        }
    };
    let bytes = name.as_bytes();
    let stem = match bytes.iter().rposition(|&b| b == b'.') {
        Some(i) if i > 0 && i < bytes.len() - 1 => &bytes[..i],
        _ => bytes,
    };
    let mut lock_name = Vec::with_capacity(stem.len() + 5);
    lock_name.extend_from_slice(stem);
    lock_name.extend_from_slice(b".lock");
    let mut lock_path: PathBuf = components.iter().collect();
    lock_path.push(OsStr::from_bytes(&lock_name));
    Ok(lock_path)
}

// ---------------------------------------------------------------------------------------------
// Lock modes

/// Which kind of lock guards the sidecar. The two kinds do not exclude each other on Linux (a
/// process holding one never sees the other), so every process sharing a file must use the
/// same mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LockMode {
    /// `flock(2)`: what the legacy helpers, `flock(1)` and fs4 use. Node-local on some shared
    /// file systems (GPFS, Lustre with `localflock`, NFS with `local_lock=flock`).
    #[default]
    Flock,
    /// Open-file-description record locks over the whole file (`F_OFD_SETLK`, Linux >= 3.15):
    /// arbitrated by the server or cluster where the file system supports POSIX locks. They
    /// also exclude classic `fcntl`/`lockf` record locks. Needs a writable lock file.
    Posix,
}

impl LockMode {
    /// `"flock"` or `"posix"`.
    pub fn parse(name: &str) -> Option<LockMode> {
        match name {
            "flock" => Some(LockMode::Flock),
            "posix" => Some(LockMode::Posix),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LockMode::Flock => "flock",
            LockMode::Posix => "posix",
        }
    }

    /// Takes the exclusive lock on `fd`, blocking or not; retried on `EINTR`.
    fn lock(self, fd: RawFd, blocking: bool) -> io::Result<()> {
        loop {
            let done = match self {
                LockMode::Flock => {
                    let operation = if blocking {
                        libc::LOCK_EX
                    } else {
                        libc::LOCK_EX | libc::LOCK_NB
                    };
                    // SAFETY: plain system call on a descriptor owned by the caller.
                    unsafe { libc::flock(fd, operation) == 0 }
                }
                LockMode::Posix => ofd_write_lock(fd, blocking)?,
            };
            if done {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// Whether a non-blocking attempt failed because someone else holds the lock. POSIX allows
    /// `F_SETLK` to answer `EACCES` for that (some NFS and CIFS clients do).
    fn is_contention(self, err: &io::Error) -> bool {
        let errno = err.raw_os_error();
        matches!(errno, Some(e) if e == libc::EWOULDBLOCK || e == libc::EAGAIN)
            || (self == LockMode::Posix && errno == Some(libc::EACCES))
    }
}

/// One `fcntl(F_OFD_SETLK[W])` write lock over the whole file; `Ok(false)` with `errno` set on
/// failure.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn ofd_write_lock(fd: RawFd, blocking: bool) -> io::Result<bool> {
    // SAFETY: `flock` is plain data; zero is a valid start, length (to EOF) and pid (required
    // for OFD locks).
    let mut range: libc::flock = unsafe { std::mem::zeroed() };
    range.l_type = libc::F_WRLCK as libc::c_short;
    range.l_whence = libc::SEEK_SET as libc::c_short;
    let command = if blocking {
        libc::F_OFD_SETLKW
    } else {
        libc::F_OFD_SETLK
    };
    // SAFETY: `range` outlives the call, which only reads it.
    Ok(unsafe { libc::fcntl(fd, command, &range) } == 0)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn ofd_write_lock(_fd: RawFd, _blocking: bool) -> io::Result<bool> {
    Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------------------------
// Owners

/// An owner id for the calling OS thread, for callers that do not name an owner.
///
/// Unique for the life of the process (never reused, unlike OS thread ids) and with the top bit
/// set, so it cannot collide with owner tokens below 2^63 (such as object addresses).
pub fn current_thread_owner() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static OWNER: u64 = NEXT.fetch_add(1, Ordering::Relaxed) | (1 << 63);
    }
    OWNER.with(|owner| *owner)
}

// ---------------------------------------------------------------------------------------------
// The registry of descriptors, held locks and orphaned waits

/// Device and inode of a lock file.
type Key = (u64, u64);
/// A lock file and the kind of lock on it: the two kinds are independent locks.
type Slot = (Key, LockMode);
type Map<K, V> = HashMap<K, V, BuildHasherDefault<DefaultHasher>>;

struct Registry {
    /// Locks held by this process, by lock file. Normally at most one entry per file (flock
    /// excludes two descriptions); a `Vec` so that no entry is ever overwritten.
    held: Map<Slot, Vec<Held>>,
    /// Abandoned waits whose helper thread is still blocked in the lock call, for adoption.
    orphans: Map<Slot, Vec<Arc<Request>>>,
    /// Every descriptor this module has open, with the token of its `TrackedFd`.
    live: Map<RawFd, u64>,
}

struct Held {
    id: u64,
    owner: u64,
    count: usize,
    /// Kept open while held: closing it releases the lock.
    #[allow(dead_code)]
    fd: TrackedFd,
}

/// Taken for reading around every creation, registration and closing of a descriptor; taken for
/// writing by the `pthread_atfork` prepare handler. Every use of `REGISTRY` happens under it.
static GATE: RwLock<()> = RwLock::new(());
static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    held: HashMap::with_hasher(BuildHasherDefault::new()),
    orphans: HashMap::with_hasher(BuildHasherDefault::new()),
    live: HashMap::with_hasher(BuildHasherDefault::new()),
});
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `f` on the registry. `f` must not drop a `TrackedFd` (its drop takes the gate again):
/// return what is to be dropped instead.
fn with_registry<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    let _gate = GATE.read().unwrap_or_else(PoisonError::into_inner);
    f(&mut lock(&REGISTRY))
}

/// A descriptor recorded in the registry. Dropping it closes it, unless the registry has
/// forgotten it (in a forked child), in which case the number may already belong to another
/// file and is left alone.
struct TrackedFd {
    fd: ManuallyDrop<OwnedFd>,
    token: u64,
}

impl TrackedFd {
    fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for TrackedFd {
    fn drop(&mut self) {
        let _gate = GATE.read().unwrap_or_else(PoisonError::into_inner);
        let raw = self.fd.as_raw_fd();
        let ours = {
            let mut registry = lock(&REGISTRY);
            if registry.live.get(&raw) == Some(&self.token) {
                registry.live.remove(&raw);
                true
            } else {
                false
            }
        };
        // SAFETY: `self.fd` is not used again after this.
        let fd = unsafe { ManuallyDrop::take(&mut self.fd) };
        if ours {
            drop(fd); // closed while the gate is held: a fork cannot see it half-forgotten
        } else {
            std::mem::forget(fd);
        }
    }
}

/// Opens the lock file and records the descriptor.
///
/// `O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW`, mode 0666 (less the umask), never `O_TRUNC`. If
/// that fails with `EACCES` or `EROFS` and the file exists, the open is retried without
/// `O_CREAT`: in a sticky world-writable directory with `fs.protected_regular` the kernel
/// refuses `O_CREAT` on another user's file even when its mode grants writing. If writing is
/// not granted (or the file system is read-only), `Flock` mode opens it read-only (`flock` works
/// on any descriptor); `Posix` mode cannot (a write lock needs a writable descriptor) and
/// returns the error of the retry. A file that cannot be opened at all returns its error.
fn open_tracked(path: &Path, mode: LockMode) -> io::Result<TrackedFd> {
    install_fork_handlers();
    let _gate = GATE.read().unwrap_or_else(PoisonError::into_inner);
    let open = |write: bool, create: bool| {
        OpenOptions::new()
            .read(true)
            .write(write)
            .create(create)
            .truncate(false)
            .mode(0o666)
            .custom_flags(libc::O_NOFOLLOW) // std adds O_CLOEXEC
            .open(path)
    };
    let refused = |err: &io::Error| matches!(err.raw_os_error(), Some(libc::EACCES | libc::EROFS));
    let file = match open(true, true) {
        Err(err) if refused(&err) => match open(true, false) {
            Err(again) if refused(&again) && mode == LockMode::Flock => open(false, false)?,
            // The file is missing: the first error says why it could not be created.
            Err(again) if again.kind() == io::ErrorKind::NotFound => return Err(err),
            other => other?,
        },
        other => other?,
    };
    let fd = OwnedFd::from(file);
    let token = next_id();
    lock(&REGISTRY).live.insert(fd.as_raw_fd(), token);
    Ok(TrackedFd {
        fd: ManuallyDrop::new(fd),
        token,
    })
}

// ---------------------------------------------------------------------------------------------
// fork

thread_local! {
    static FORK_GATE: RefCell<Option<RwLockWriteGuard<'static, ()>>> = const { RefCell::new(None) };
}

extern "C" fn before_fork() {
    let gate = GATE.write().unwrap_or_else(PoisonError::into_inner);
    let _ = FORK_GATE.try_with(|slot| *slot.borrow_mut() = Some(gate));
}

extern "C" fn after_fork_in_parent() {
    let _ = FORK_GATE.try_with(|slot| slot.borrow_mut().take());
}

extern "C" fn after_fork_in_child() {
    let gate = FORK_GATE
        .try_with(|slot| slot.borrow_mut().take())
        .ok()
        .flatten();
    if gate.is_some() {
        // No other thread exists, and none held the registry when the parent forked.
        forget_all(&mut lock(&REGISTRY));
    }
    drop(gate);
}

fn install_fork_handlers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: the handlers are plain functions that live as long as the process (an
        // extension module is never unloaded); they do not unwind.
        unsafe {
            libc::pthread_atfork(
                Some(before_fork),
                Some(after_fork_in_parent),
                Some(after_fork_in_child),
            );
        }
    });
}

/// Closes every descriptor of the registry and forgets all locks, without unlocking.
/// Neither allocates nor frees (the maps are leaked), so it may run in an at-fork child handler.
fn forget_all(registry: &mut Registry) {
    for &fd in registry.live.keys() {
        // SAFETY: these descriptors were opened by this module and are not used again: the
        // `TrackedFd`s that own them are leaked below or, if dropped, find no registry entry.
        unsafe { libc::close(fd) };
    }
    std::mem::forget(std::mem::take(&mut registry.live));
    std::mem::forget(std::mem::take(&mut registry.held));
    std::mem::forget(std::mem::take(&mut registry.orphans));
}

/// Forgets all locks this process holds WITHOUT unlocking them: closes the descriptors inherited
/// from the parent in a forked child (an flock or OFD lock belongs to the open file
/// description the child shares with the parent; closing the child's copy leaves the parent's
/// lock intact, while keeping it would keep the lock held after the parent releases it). Guards
/// held at the fork become no-ops in the child. Idempotent.
///
/// The module also installs this as a `pthread_atfork` child handler when it first opens a lock
/// file, so calling it from Python's `os.register_at_fork(after_in_child=...)` is a safety net.
/// Only call it in a child: in the process that owns the locks it would release them.
pub fn forget_all_after_fork() {
    // In a child only the forking thread exists. If a lock were taken by a thread that is gone
    // (a fork that bypassed the at-fork handlers), waiting would hang forever: give up instead.
    let Ok(_gate) = GATE.try_write() else { return };
    let Ok(mut registry) = REGISTRY.try_lock() else {
        return;
    };
    forget_all(&mut registry);
}

// ---------------------------------------------------------------------------------------------
// Acquiring

/// A held lock. `Send`. Dropping it releases it; for a re-entrant acquisition it only decrements
/// the count, and the outermost drop unlocks and closes the descriptor.
pub struct LockGuard {
    slot: Slot,
    id: u64,
    lock_path: PathBuf,
    /// Delete the lock file when this guard's release is the last one (see `acquire_removable`).
    remove_on_release: bool,
}

impl LockGuard {
    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("lock_path", &self.lock_path)
            .field("mode", &self.slot.1)
            .finish()
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let released = with_registry(|registry| {
            let entries = registry.held.get_mut(&self.slot)?;
            let i = entries.iter().position(|e| e.id == self.id)?;
            entries[i].count -= 1;
            if entries[i].count > 0 {
                return None;
            }
            let entry = entries.swap_remove(i);
            if entries.is_empty() {
                registry.held.remove(&self.slot);
            }
            Some(entry)
        });
        // Still holding the lock: nobody else can be between opening and locking this inode
        // with the belief that it is the lock file, so unlinking now is safe (waiters that
        // opened it re-check after acquiring, see `acquire_removable`).
        if released.is_some() && self.remove_on_release {
            let _ = std::fs::remove_file(&self.lock_path);
        }
        // Closing the descriptor (outside the registry lock) releases the lock. The entry is
        // gone from `held` first, so the next holder in this process registers afresh.
        drop(released);
    }
}

/// One wait for a lock, shared by the waiting caller and the helper thread.
struct Request {
    state: Mutex<WaitState>,
    wakeup: Condvar,
}

struct WaitState {
    /// The descriptor being locked. Stays here while the helper is blocked on it, so its number
    /// stays valid; taken by the caller on success or by the helper when abandoned.
    fd: Option<TrackedFd>,
    /// The result of the helper's blocking lock call, once it has returned.
    outcome: Option<io::Result<()>>,
    /// No caller waits for it any more: the helper closes the descriptor when its call returns.
    abandoned: bool,
}

/// Acquires the exclusive lock of kind `mode` on `lock_path`.
///
/// The file is created if missing (mode 0666 less the umask), opened with
/// `O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW` (without `O_CREAT`, then for `Flock` read-only, as
/// fallbacks on `EACCES`/`EROFS`), never truncated and never deleted. A symlink as lock file is
/// refused (`ELOOP`).
///
/// `owner` is the logical owner (a thread, an asyncio task): if the same owner already holds this
/// lock file (same device and inode) in this process, the acquisition is re-entrant and returns
/// at once. Another owner in this process waits like another process would.
///
/// `timeout`: `None` waits forever, `Some(ZERO)` tries once. `check_interrupt` is called at least
/// every 50 ms while waiting, never while any internal lock is held; if it returns an error the
/// wait ends cleanly (no lock held) with that error.
///
/// Errors: `Error::LockTimeout` (with the holders found at that moment), `Error::Io` with
/// `Step::OpenLock` for any failure to open the lock file and `Step::Lock` for a lock error
/// other than contention (`ENOLCK`, `ENOSYS`, `EOPNOTSUPP`, `EINVAL`...), reported at once.
pub fn acquire<E: From<Error>>(
    lock_path: &Path,
    owner: u64,
    mode: LockMode,
    timeout: Option<Duration>,
    check_interrupt: &mut dyn FnMut() -> Result<(), E>,
) -> Result<LockGuard, E> {
    let start = Instant::now();
    let open_error = |err| Error::io(Step::OpenLock, lock_path, err);
    let fd = open_tracked(lock_path, mode).map_err(open_error)?;
    let slot = (file_key(fd.raw()).map_err(open_error)?, mode);
    let guard = |id| LockGuard {
        slot,
        id,
        lock_path: lock_path.to_path_buf(),
        remove_on_release: false,
    };

    let reentered = with_registry(|registry| {
        let entry = registry
            .held
            .get_mut(&slot)?
            .iter_mut()
            .find(|e| e.owner == owner)?;
        entry.count += 1;
        Some(entry.id)
    });
    if let Some(id) = reentered {
        drop(fd);
        return Ok(guard(id));
    }

    match mode.lock(fd.raw(), false) {
        Ok(()) => return Ok(guard(register(slot, owner, fd))),
        Err(err) if mode.is_contention(&err) => {}
        Err(err) => return Err(Error::io(Step::Lock, lock_path, err).into()),
    }
    if timeout == Some(Duration::ZERO) {
        drop(fd);
        return Err(timeout_error(lock_path, mode, Duration::ZERO).into());
    }
    // A deadline too far to represent is no deadline.
    let deadline = timeout.and_then(|t| start.checked_add(t));

    let request = match adopt_orphan(slot) {
        Some(request) => {
            drop(fd); // not locked: the adopted request has its own descriptor
            request
        }
        None => match start_helper(fd, mode) {
            Ok(request) => request,
            Err(fd) => {
                return poll(
                    lock_path,
                    slot,
                    owner,
                    fd,
                    timeout,
                    deadline,
                    check_interrupt,
                )
            }
        },
    };

    let mut holders = None;
    let waited = wait(
        &request,
        lock_path,
        mode,
        deadline,
        check_interrupt,
        &mut holders,
    );
    match waited {
        Waited::Acquired(fd) => Ok(guard(register(slot, owner, fd))),
        Waited::Failed(err, fd) => {
            drop(fd);
            Err(Error::io(Step::Lock, lock_path, err).into())
        }
        Waited::GaveUp(interrupt) => {
            // The helper may have got the lock after the caller decided to give up: at the
            // deadline it is taken (the caller wanted it); after an interrupt it is released.
            let late = abandon(slot, request);
            match (interrupt, late) {
                (None, Some((Ok(()), Some(fd)))) => Ok(guard(register(slot, owner, fd))),
                (Some(err), _) => Err(err),
                (None, _) => Err(Error::LockTimeout {
                    lock_path: lock_path.to_path_buf(),
                    timeout: timeout.unwrap_or_default(),
                    holders: holders.unwrap_or_else(|| holders_of_held_lock(lock_path, mode)),
                }
                .into()),
            }
        }
    }
}

/// Like [`acquire`], for callers that want the lock file deleted on release (opt-in).
///
/// Deleting a lock file naively breaks exclusion: a waiter that opened the old file locks it
/// after the release, while a newcomer creates and locks a new file. So after acquiring, the
/// locked descriptor's device and inode are compared with what the path names now; if the file
/// was removed or replaced in between, the lock is dropped and taken again on the new file. The
/// file is unlinked by the last release while the lock is still held.
pub fn acquire_removable<E: From<Error>>(
    lock_path: &Path,
    owner: u64,
    mode: LockMode,
    timeout: Option<Duration>,
    check_interrupt: &mut dyn FnMut() -> Result<(), E>,
) -> Result<LockGuard, E> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let mut guard = acquire(
            lock_path,
            owner,
            mode,
            remaining.or(timeout),
            check_interrupt,
        )?;
        let current = std::fs::symlink_metadata(lock_path).map(|m| (m.dev(), m.ino()));
        if matches!(current, Ok(key) if key == guard.slot.0) {
            guard.remove_on_release = true;
            return Ok(guard);
        }
        drop(guard);
    }
}

/// Device and inode of an open file.
fn file_key(fd: RawFd) -> io::Result<Key> {
    // SAFETY: `stat` is plain data, filled in by a successful fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    Ok((st.st_dev as u64, st.st_ino as u64))
}

fn timeout_error(lock_path: &Path, mode: LockMode, timeout: Duration) -> Error {
    Error::LockTimeout {
        lock_path: lock_path.to_path_buf(),
        timeout,
        holders: holders_of_held_lock(lock_path, mode),
    }
}

fn register(slot: Slot, owner: u64, fd: TrackedFd) -> u64 {
    crate::holder_record::write(fd.raw());
    let id = next_id();
    with_registry(|registry| {
        registry.held.entry(slot).or_default().push(Held {
            id,
            owner,
            count: 1,
            fd,
        })
    });
    id
}

/// Takes over an abandoned request on the same lock file whose helper is still blocked.
fn adopt_orphan(slot: Slot) -> Option<Arc<Request>> {
    with_registry(|registry| {
        let orphans = registry.orphans.get_mut(&slot)?;
        let mut adopted = None;
        while let Some(request) = orphans.pop() {
            let mut state = lock(&request.state);
            if state.abandoned && state.outcome.is_none() {
                state.abandoned = false;
                drop(state);
                adopted = Some(request);
                break;
            }
        }
        if orphans.is_empty() {
            registry.orphans.remove(&slot);
        }
        adopted
    })
}

/// Gives `fd` to a new helper thread that blocks in the lock call of `mode` on it. If no thread
/// can be started, `fd` comes back.
fn start_helper(fd: TrackedFd, mode: LockMode) -> Result<Arc<Request>, TrackedFd> {
    let raw = fd.raw();
    let request = Arc::new(Request {
        state: Mutex::new(WaitState {
            fd: Some(fd),
            outcome: None,
            abandoned: false,
        }),
        wakeup: Condvar::new(),
    });
    let for_helper = Arc::clone(&request);
    let spawned = std::thread::Builder::new()
        .name("atomicjson-lock-wait".into())
        .stack_size(64 * 1024)
        .spawn(move || helper(for_helper, raw, mode));
    match spawned {
        Ok(_) => Ok(request),
        Err(_) => {
            // The closure (and its reference) is gone: ours is the only one left.
            let fd = lock(&request.state).fd.take();
            Err(fd.expect("the descriptor of an unstarted wait"))
        }
    }
}

/// The helper thread: blocks in the lock call (the kernel wakes it at the release), then hands
/// over.
fn helper(request: Arc<Request>, fd: RawFd, mode: LockMode) {
    block_signals();
    // `fd` stays open until this thread takes it out of the state (abandoned) or reports (then
    // the caller takes it, after this call has returned).
    let outcome = mode.lock(fd, true);
    let mut state = lock(&request.state);
    state.outcome = Some(outcome);
    if state.abandoned {
        let fd = state.fd.take();
        drop(state);
        with_registry(|registry| {
            for orphans in registry.orphans.values_mut() {
                orphans.retain(|r| !Arc::ptr_eq(r, &request));
            }
            registry.orphans.retain(|_, orphans| !orphans.is_empty());
        });
        drop(fd); // releases the lock if this call got it
    } else {
        drop(state);
        request.wakeup.notify_all();
    }
}

/// Signals go to other threads (Python's handlers run in the main thread anyway).
fn block_signals() {
    // SAFETY: plain libc calls on a local signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

enum Waited<E> {
    Acquired(TrackedFd),
    Failed(io::Error, Option<TrackedFd>),
    /// Timed out (`None`) or interrupted.
    GaveUp(Option<E>),
}

/// Waits for the helper's outcome until `deadline`, calling `check_interrupt` every
/// [`INTERRUPT_CHECK_INTERVAL`]. Shortly before the deadline it reads the holders into
/// `holders` (see [`HOLDERS_LEAD`]).
fn wait<E>(
    request: &Request,
    lock_path: &Path,
    mode: LockMode,
    deadline: Option<Instant>,
    check_interrupt: &mut dyn FnMut() -> Result<(), E>,
    holders: &mut Option<Holders>,
) -> Waited<E> {
    let mut next_check = Instant::now() + INTERRUPT_CHECK_INTERVAL;
    let read_holders_at = deadline.map(|d| d.checked_sub(HOLDERS_LEAD).unwrap_or(d));
    loop {
        let now = {
            let mut state = lock(&request.state);
            loop {
                if let Some(outcome) = state.outcome.take() {
                    let fd = state.fd.take();
                    return match (outcome, fd) {
                        (Ok(()), Some(fd)) => Waited::Acquired(fd),
                        (Ok(()), None) => unreachable!("a reported lock without its descriptor"),
                        (Err(err), fd) => Waited::Failed(err, fd),
                    };
                }
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    return Waited::GaveUp(None);
                }
                let read_due = holders.is_none() && read_holders_at.is_some_and(|t| now >= t);
                if now >= next_check || read_due {
                    break now;
                }
                let mut until = next_check;
                for t in [deadline, read_holders_at.filter(|_| holders.is_none())]
                    .into_iter()
                    .flatten()
                {
                    until = until.min(t);
                }
                state = request
                    .wakeup
                    .wait_timeout(state, until - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        };
        if holders.is_none() && read_holders_at.is_some_and(|t| now >= t) {
            *holders = Some(holders_of_held_lock(lock_path, mode));
        }
        if now >= next_check {
            if let Err(err) = check_interrupt() {
                return Waited::GaveUp(Some(err));
            }
            next_check = Instant::now() + INTERRUPT_CHECK_INTERVAL;
        }
    }
}

/// The caller gives up. If the helper's lock call returned meanwhile (exactly at the deadline),
/// its outcome and descriptor are returned (dropping them releases the lock). Otherwise the
/// descriptor is left to the helper and the request is offered for adoption.
#[allow(clippy::type_complexity)]
fn abandon(slot: Slot, request: Arc<Request>) -> Option<(io::Result<()>, Option<TrackedFd>)> {
    let mut state = lock(&request.state);
    if let Some(outcome) = state.outcome.take() {
        let fd = state.fd.take();
        return Some((outcome, fd));
    }
    state.abandoned = true;
    drop(state);
    with_registry(|registry| {
        let orphans = registry.orphans.entry(slot).or_default();
        // Drop the ones that finished meanwhile (the helper may have run before this push).
        orphans.retain(|r| lock(&r.state).outcome.is_none());
        orphans.push(request);
    });
    None
}

/// Fallback when no helper thread can be started: poll with a short backoff.
fn poll<E: From<Error>>(
    lock_path: &Path,
    slot: Slot,
    owner: u64,
    fd: TrackedFd,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    check_interrupt: &mut dyn FnMut() -> Result<(), E>,
) -> Result<LockGuard, E> {
    let mut pause = Duration::from_micros(200);
    let mut next_check = Instant::now() + INTERRUPT_CHECK_INTERVAL;
    loop {
        let mode = slot.1;
        match mode.lock(fd.raw(), false) {
            Ok(()) => {
                let id = register(slot, owner, fd);
                return Ok(LockGuard {
                    slot,
                    id,
                    lock_path: lock_path.to_path_buf(),
                    remove_on_release: false,
                });
            }
            Err(err) if mode.is_contention(&err) => {}
            Err(err) => return Err(Error::io(Step::Lock, lock_path, err).into()),
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            drop(fd);
            return Err(timeout_error(lock_path, mode, timeout.unwrap_or_default()).into());
        }
        if now >= next_check {
            check_interrupt()?;
            next_check = Instant::now() + INTERRUPT_CHECK_INTERVAL;
        }
        let sleep = deadline.map_or(pause, |d| pause.min(d.saturating_duration_since(now)));
        std::thread::sleep(sleep);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------------
// Who holds a lock

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// `/proc/<pid>/cmdline`, arguments joined by spaces; `None` if unreadable.
    pub command: Option<String>,
    /// Where the pid was found.
    pub source: Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The lock's line in `/proc/locks` (`FLOCK` and classic `POSIX` locks carry the pid).
    ProcLocks,
    /// A `lock:` line in `/proc/<pid>/fdinfo/<fd>`: `/proc/locks` shows OFD locks with pid -1.
    Fdinfo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holders {
    /// The processes holding the lock, from `/proc/locks` and `/proc/<pid>/fdinfo` (may be
    /// empty).
    Known(Vec<Holder>),
    /// Why the holders cannot be known.
    Unknown(String),
    /// `/proc` could not name the holder (it runs on another machine of a shared file system,
    /// another OS, or as a user whose descriptors are hidden from this one) but it left a record
    /// in the lock file; `why` says what failed.
    Recorded {
        record: Box<crate::holder_record::Record>,
        why: String,
    },
}

impl fmt::Display for Holders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Holders::Known(holders) if holders.is_empty() => {
                write!(f, "no holder found in /proc/locks (released meanwhile?)")
            }
            Holders::Known(holders) => {
                write!(f, "held by ")?;
                for (i, holder) in holders.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "pid {}", holder.pid)?;
                    if let Some(command) = &holder.command {
                        write!(f, " ({command})")?;
                    }
                    if holder.source == Source::Fdinfo {
                        write!(f, " [found in /proc/{}/fdinfo]", holder.pid)?;
                    }
                }
                Ok(())
            }
            Holders::Unknown(why) => write!(f, "holder unknown: {why}"),
            Holders::Recorded { record, why } => write!(f, "{why}; {record}"),
        }
    }
}

/// Who holds the lock of kind `mode` on `lock_path` now.
///
/// `Flock`: the `FLOCK` lines of `/proc/locks` for the file's device and inode (waiter lines,
/// with `->`, are skipped) name the pids. `Posix`: classic `POSIX` record locks (which exclude OFD
/// locks) carry their pid there too, but OFD locks show pid -1, so their holders are found by
/// the `lock:` lines of `/proc/<pid>/fdinfo/<fd>` (readable for one's own processes, or as root).
/// Commands come from `/proc/<pid>/cmdline`. The pid is the process that took the lock, or one
/// that shares its open file description. Where `/proc` cannot answer, the holder's record in
/// the lock file is returned, marked as such.
pub fn lock_holders(lock_path: &Path, mode: LockMode) -> Holders {
    match proc_holders(lock_path, mode) {
        Holders::Unknown(why) => match crate::holder_record::read(lock_path) {
            Some(record) => Holders::Recorded {
                record: Box::new(record),
                why,
            },
            None => Holders::Unknown(why),
        },
        known => known,
    }
}

/// The holders for a timeout: the lock is held, so when `/proc/locks` names nobody the holder
/// is elsewhere and its record (if any) is the best information there is.
fn holders_of_held_lock(lock_path: &Path, mode: LockMode) -> Holders {
    match lock_holders(lock_path, mode) {
        Holders::Known(list) if list.is_empty() => match crate::holder_record::read(lock_path) {
            Some(record) => Holders::Recorded {
                record: Box::new(record),
                why: "no holder on this machine in /proc/locks".to_owned(),
            },
            None => Holders::Known(list),
        },
        other => other,
    }
}

fn proc_holders(lock_path: &Path, mode: LockMode) -> Holders {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let meta = match std::fs::metadata(lock_path) {
            Ok(meta) => meta,
            Err(err) => {
                return Holders::Unknown(format!("cannot stat {}: {err}", lock_path.display()))
            }
        };
        let dev = meta.dev();
        let file = (
            u64::from(libc::major(dev)),
            u64::from(libc::minor(dev)),
            meta.ino(),
        );
        // /proc/locks is a seq_file read a page at a time: a line can be skipped when locks
        // listed before it go away between two reads (a busy machine). Read again before
        // concluding that nobody holds this file.
        let mut text = String::new();
        for _ in 0..3 {
            text = match std::fs::read_to_string("/proc/locks") {
                Ok(text) => text,
                Err(err) => {
                    return Holders::Unknown(format!("/proc/locks is not available ({err})"))
                }
            };
            if !parse_proc_locks(&text, file).is_empty() {
                break;
            }
        }
        let entries = parse_proc_locks(&text, file);
        let holder = |pid, source| Holder {
            pid,
            command: command_line(pid),
            source,
        };
        let mut holders = Vec::new();
        let mut ofd_held = false;
        for (kind, pid) in entries {
            match (mode, kind, u32::try_from(pid)) {
                // A pid in another pid namespace shows as 0: not usable.
                (LockMode::Flock, "FLOCK", Ok(pid @ 1..))
                | (LockMode::Posix, "POSIX", Ok(pid @ 1..))
                    if !holders.iter().any(|h: &Holder| h.pid == pid) =>
                {
                    holders.push(holder(pid, Source::ProcLocks));
                }
                (LockMode::Posix, "OFDLCK", _) => ofd_held = true,
                _ => {}
            }
        }
        if ofd_held {
            let found = match recorded_ofd_holder(lock_path, file) {
                Some(pid) => vec![pid],
                None => fdinfo_ofd_holders(file),
            };
            if found.is_empty() && holders.is_empty() {
                return Holders::Unknown(
                    "an OFD lock is held (/proc/locks shows it without a pid) by a process \
                     whose /proc/<pid>/fdinfo this one cannot read"
                        .to_owned(),
                );
            }
            for pid in found {
                if !holders.iter().any(|h| h.pid == pid) {
                    holders.push(holder(pid, Source::Fdinfo));
                }
            }
        }
        Holders::Known(holders)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (lock_path, mode);
        Holders::Unknown("/proc/locks is not available on this platform".into())
    }
}

/// `(major, minor, inode)` of a file as `/proc/locks` writes it.
type ProcFileId = (u64, u64, u64);

/// The lock kinds and pids held on `file` in the text of `/proc/locks` (or of the `lock:` lines
/// of an fdinfo file), e.g. `1: FLOCK  ADVISORY  WRITE 5992 fe:00:10084381 0 EOF` (major and
/// minor in hex; waiters, `1: -> FLOCK ...`, are skipped). The pid is -1 for OFD locks.
fn parse_proc_locks(text: &str, file: ProcFileId) -> Vec<(&str, i64)> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6 || fields.contains(&"->") {
            continue;
        }
        let mut id = fields[5].split(':');
        let (Some(maj), Some(min), Some(ino), None) = (id.next(), id.next(), id.next(), id.next())
        else {
            continue;
        };
        let matches = u64::from_str_radix(maj, 16) == Ok(file.0)
            && u64::from_str_radix(min, 16) == Ok(file.1)
            && ino.parse::<u64>() == Ok(file.2);
        if let (true, Ok(pid)) = (matches, fields[4].parse::<i64>()) {
            entries.push((fields[1], pid));
        }
    }
    entries
}

/// The pid of the holder record, if that process (on this host) holds an OFD lock on `file`:
/// checking one process first spares the scan of every process's descriptors.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn recorded_ofd_holder(lock_path: &Path, file: ProcFileId) -> Option<u32> {
    let record = crate::holder_record::read(lock_path)?;
    let here = record.host == crate::holder_record::host_name();
    (here && holds_ofd_lock(record.pid, file)).then_some(record.pid)
}

/// The processes with a descriptor whose fdinfo lists an OFD lock on `file`. Reads every
/// readable `/proc/<pid>/fdinfo/<fd>`, so only for diagnostics.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn fdinfo_ofd_holders(file: ProcFileId) -> Vec<u32> {
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    processes
        .flatten()
        .filter_map(|process| process.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| holds_ofd_lock(pid, file))
        .collect()
}

/// Whether a `lock:` line of one of `pid`'s fdinfo files is an OFD lock on `file`. False where
/// the process is gone or its fdinfo is not readable (another user's process).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn holds_ofd_lock(pid: u32, file: ProcFileId) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_to_string(fd.path()).is_ok_and(|info| {
            info.lines()
                .filter_map(|line| line.strip_prefix("lock:"))
                .any(|line| parse_proc_locks(line, file).iter().any(|e| e.0 == "OFDLCK"))
        })
    })
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn command_line(pid: u32) -> Option<String> {
    const MAX: usize = 1000;
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    if args.is_empty() {
        return None; // a kernel thread or a zombie
    }
    let mut command = args.join(" ");
    if command.len() > MAX {
        let mut end = MAX;
        while !command.is_char_boundary(end) {
            end -= 1;
        }
        command.truncate(end);
        command.push_str("...");
    }
    Some(command)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TempDir;
    use std::os::unix::ffi::OsStringExt;
    use std::process::{Child, Command};
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc;

    fn no_interrupt() -> impl FnMut() -> Result<(), Error> {
        || Ok(())
    }

    fn get(path: &Path, owner: u64, timeout: Option<Duration>) -> Result<LockGuard> {
        acquire(path, owner, LockMode::Flock, timeout, &mut no_interrupt())
    }

    fn get_posix(path: &Path, owner: u64, timeout: Option<Duration>) -> Result<LockGuard> {
        acquire(path, owner, LockMode::Posix, timeout, &mut no_interrupt())
    }

    /// Runs `flock -o LOCK sleep 30` and waits until it holds the lock. (`-o`: the lock
    /// descriptor is not inherited by `sleep`, so killing flock(1) releases the lock.)
    fn flock_holder(lock_path: &Path) -> Child {
        let child = Command::new("flock")
            .arg("-o")
            .arg(lock_path)
            .args(["sleep", "30"])
            .spawn()
            .expect("the flock command");
        let start = Instant::now();
        while get(lock_path, 7, Some(Duration::ZERO)).is_ok() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "flock(1) never locked"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        child
    }

    /// Whether flock(1) (another process, the legacy protocol) gets the lock at once.
    fn flock1_gets(lock_path: &Path) -> bool {
        let status = Command::new("flock")
            .arg("-n")
            .arg(lock_path)
            .arg("true")
            .status()
            .expect("the flock command");
        match status.code() {
            Some(0) => true,
            Some(1) => false,
            other => panic!("flock(1) failed: {other:?}"),
        }
    }

    fn stop(mut child: Child) {
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn lock_path_table() {
        let cases: &[(&str, &str)] = &[
            ("a.json", "a.lock"),
            ("a.tar.gz", "a.tar.lock"),
            ("noext", "noext.lock"),
            (".bashrc", ".bashrc.lock"),
            ("a.", "a..lock"),
            ("..", "...lock"),
            ("dir/..", "dir/...lock"),
            ("/x/y/a.json", "/x/y/a.lock"),
            ("x//a.json/", "x/a.lock"),
            ("x/./a.json/.", "x/a.lock"),
            ("a.b.", "a.b..lock"),
            ("a..b", "a..lock"),
            ("a.lock", "a.lock"),
        ];
        for (target, want) in cases {
            let got = lock_path_for(Path::new(target)).unwrap();
            assert_eq!(got, Path::new(want), "{target}");
        }
        for bad in ["", "/", ".", "./"] {
            assert!(
                matches!(
                    lock_path_for(Path::new(bad)),
                    Err(Error::InvalidPath { .. })
                ),
                "{bad:?}"
            );
        }
        let raw = std::ffi::OsString::from_vec(b"d\xff/\xfe.json".to_vec());
        let want = std::ffi::OsString::from_vec(b"d\xff/\xfe.lock".to_vec());
        assert_eq!(lock_path_for(Path::new(&raw)).unwrap(), Path::new(&want));
    }

    #[test]
    fn acquire_try_once_and_timeout() {
        let dir = TempDir::new("timeout");
        let path = dir.path("a.lock");
        let held = get(&path, 1, Some(Duration::ZERO)).unwrap();
        assert_eq!(held.lock_path(), path);
        assert!(path.exists());

        let start = Instant::now();
        let err = get(&path, 2, Some(Duration::ZERO)).unwrap_err();
        assert!(start.elapsed() < Duration::from_millis(50));
        match &err {
            Error::LockTimeout { holders, .. } => match holders {
                Holders::Known(list) => {
                    assert!(
                        list.iter().any(|h| h.pid == std::process::id()),
                        "{holders}"
                    )
                }
                other => panic!("{other}"),
            },
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("held by pid"), "{err}");

        for ms in [30u64, 120] {
            let timeout = Duration::from_millis(ms);
            let start = Instant::now();
            let err = get(&path, 2, Some(timeout)).unwrap_err();
            let elapsed = start.elapsed();
            assert!(matches!(err, Error::LockTimeout { .. }), "{err}");
            assert!(elapsed >= timeout, "{elapsed:?}");
            assert!(elapsed < timeout + Duration::from_millis(30), "{elapsed:?}");
        }
        drop(held);
        // The helpers of the abandoned waits do not keep the lock for long.
        let start = Instant::now();
        while get(&path, 3, Some(Duration::ZERO)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(1));
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(get(&path, 3, Some(Duration::from_secs(1))).unwrap());
    }

    #[test]
    fn waiter_wakes_within_milliseconds_of_release() {
        let dir = TempDir::new("wake");
        let path = dir.path("a.lock");
        // A loaded machine may delay one round's wake-up; a polling waiter (the legacy 100 ms
        // poll) would rarely be this fast in most rounds.
        let mut delays = Vec::new();
        for _ in 0..7 {
            let held = get(&path, 1, None).unwrap();
            let (tx, rx) = mpsc::channel();
            let waiter = {
                let path = path.clone();
                std::thread::spawn(move || {
                    tx.send(()).unwrap();
                    let guard = get(&path, 2, Some(Duration::from_secs(10))).unwrap();
                    let at = Instant::now();
                    drop(guard);
                    at
                })
            };
            rx.recv().unwrap();
            std::thread::sleep(Duration::from_millis(30)); // let it block in flock
            let released = Instant::now();
            drop(held);
            let acquired = waiter.join().unwrap();
            delays.push(acquired.duration_since(released));
        }
        let fast = delays
            .iter()
            .filter(|d| **d < Duration::from_millis(25))
            .count();
        assert!(fast >= 5, "{delays:?}");
    }

    #[test]
    fn reentrant_for_one_owner_exclusive_between_owners() {
        let dir = TempDir::new("reentrant");
        let path = dir.path("a.lock");
        let owner = current_thread_owner();
        assert_eq!(owner, current_thread_owner());
        let outer = get(&path, owner, Some(Duration::ZERO)).unwrap();
        // Same file through another name (a hard link): same device and inode.
        let alias = dir.path("alias.lock");
        std::fs::hard_link(&path, &alias).unwrap();
        let inner = get(&alias, owner, Some(Duration::ZERO)).unwrap();

        let other = std::thread::spawn({
            let path = path.clone();
            move || get(&path, current_thread_owner(), Some(Duration::ZERO)).is_ok()
        });
        assert!(!other.join().unwrap(), "another owner got a held lock");
        drop(inner);
        assert!(
            get(&path, 99, Some(Duration::ZERO)).is_err(),
            "released by the inner drop"
        );
        drop(outer);
        drop(get(&path, 99, Some(Duration::ZERO)).unwrap());
    }

    #[test]
    fn threads_exclude_each_other() {
        let dir = TempDir::new("threads");
        let path = dir.path("a.lock");
        let inside = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (path, inside) = (path.clone(), Arc::clone(&inside));
                std::thread::spawn(move || {
                    for _ in 0..40 {
                        let guard = get(&path, current_thread_owner(), None).unwrap();
                        assert!(!inside.swap(true, Ordering::SeqCst), "two holders");
                        std::thread::sleep(Duration::from_micros(100));
                        inside.store(false, Ordering::SeqCst);
                        drop(guard);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }

    #[test]
    fn excludes_and_waits_for_flock_command() {
        let dir = TempDir::new("flock1");
        let path = dir.path("a.lock");
        let child = flock_holder(&path);
        let pid = child.id();
        match lock_holders(&path, LockMode::Flock) {
            Holders::Known(list) => {
                let holder = list.iter().find(|h| h.pid == pid).expect("flock's pid");
                let command = holder.command.as_deref().unwrap();
                assert!(command.starts_with("flock -o ") && command.ends_with("sleep 30"));
                let shown = Holders::Known(list.clone()).to_string();
                assert!(
                    shown.starts_with(&format!("held by pid {pid} (flock ")),
                    "{shown}"
                );
            }
            other => panic!("{other}"),
        }
        let err = get(&path, 1, Some(Duration::from_millis(20))).unwrap_err();
        assert!(err.to_string().contains(&format!("pid {pid}")), "{err}");

        // A waiter gets the lock right after flock(1) exits.
        let waiter = std::thread::spawn({
            let path = path.clone();
            move || {
                let guard = get(&path, 1, Some(Duration::from_secs(10))).unwrap();
                (Instant::now(), guard)
            }
        });
        std::thread::sleep(Duration::from_millis(30));
        let killed = Instant::now();
        stop(child);
        let (acquired, guard) = waiter.join().unwrap();
        assert!(acquired.duration_since(killed) < Duration::from_millis(50));

        // While we hold it, flock(1) cannot take it; after release it can.
        assert!(!flock1_gets(&path));
        drop(guard);
        assert!(flock1_gets(&path));
        assert!(matches!(
            lock_holders(&path, LockMode::Flock),
            Holders::Known(list) if list.is_empty()
        ));
        assert_eq!(
            Holders::Known(vec![]).to_string(),
            "no holder found in /proc/locks (released meanwhile?)"
        );
    }

    #[test]
    fn interrupt_ends_the_wait_without_the_lock() {
        let dir = TempDir::new("interrupt");
        let path = dir.path("a.lock");
        let held = get(&path, 1, None).unwrap();

        #[derive(Debug)]
        enum Failure {
            #[allow(dead_code)]
            Core(Error),
            Interrupted,
        }
        impl From<Error> for Failure {
            fn from(err: Error) -> Failure {
                Failure::Core(err)
            }
        }
        let start = Instant::now();
        let mut calls = Vec::new();
        let mut check = || {
            calls.push(start.elapsed());
            if start.elapsed() > Duration::from_millis(160) {
                Err(Failure::Interrupted)
            } else {
                Ok(())
            }
        };
        let result = acquire(&path, 2, LockMode::Flock, None, &mut check);
        assert!(matches!(result, Err(Failure::Interrupted)), "{result:?}");
        let mut last = Duration::ZERO;
        for at in &calls {
            assert!(*at - last < Duration::from_millis(70), "{calls:?}");
            last = *at;
        }
        assert!(calls.len() >= 3, "{calls:?}");
        drop(held);
        // Not held by the interrupted waiter (its helper lets go once it gets the lock).
        let start = Instant::now();
        while get(&path, 3, Some(Duration::ZERO)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(1));
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn abandoned_waits_are_adopted_not_piled_up() {
        let dir = TempDir::new("orphans");
        let path = dir.path("a.lock");
        let held = get(&path, 1, None).unwrap();
        for _ in 0..20 {
            assert!(get(&path, 2, Some(Duration::from_millis(2))).is_err());
        }
        let key = file_key(
            std::fs::File::open(&path).unwrap().as_raw_fd(), // closed at the end of the line
        )
        .unwrap();
        let slot = (key, LockMode::Flock);
        let orphans = with_registry(|r| r.orphans.get(&slot).map_or(0, Vec::len));
        assert_eq!(orphans, 1, "one blocked helper, adopted again and again");
        // The next waiter adopts it and gets the lock on release.
        let waiter = std::thread::spawn({
            let path = path.clone();
            move || get(&path, 2, Some(Duration::from_secs(10))).is_ok()
        });
        std::thread::sleep(Duration::from_millis(20));
        drop(held);
        assert!(waiter.join().unwrap());
    }

    #[test]
    fn open_failures_are_immediate() {
        let dir = TempDir::new("open");
        let target = dir.path("data.json");
        std::fs::write(&target, b"precious").unwrap();
        let link = dir.path("data.lock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let start = Instant::now();
        match get(&link, 1, Some(Duration::from_secs(10))) {
            Err(Error::Io { step, source, .. }) => {
                assert_eq!(step, Step::OpenLock);
                assert_eq!(source.raw_os_error(), Some(libc::ELOOP));
            }
            other => panic!("{other:?}"),
        }
        assert!(start.elapsed() < Duration::from_millis(100));
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");

        let sub = dir.path("sub");
        std::fs::create_dir(&sub).unwrap();
        let err = get(&sub, 1, Some(Duration::from_secs(10))).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Io {
                    step: Step::OpenLock,
                    ..
                }
            ),
            "{err}"
        );
        let err = get(&dir.path("missing/x.lock"), 1, None).unwrap_err();
        assert_eq!(err.errno(), Some(libc::ENOENT));
    }

    #[test]
    fn forked_child_does_not_keep_the_parents_lock() {
        let dir = TempDir::new("fork");
        let path = dir.path("a.lock");
        let guard = get(&path, 1, None).unwrap();
        // SAFETY: the child only calls async-signal-safe functions (the at-fork handler closes
        // descriptors; then nanosleep and _exit).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            unsafe {
                let ts = libc::timespec {
                    tv_sec: 3,
                    tv_nsec: 0,
                };
                libc::nanosleep(&ts, std::ptr::null_mut());
                libc::_exit(0);
            }
        }
        // The child is alive; the parent still holds the lock...
        assert!(!flock1_gets(&path));
        // ... and releasing it really releases it (the child closed its copy).
        drop(guard);
        let free = flock1_gets(&path);
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        assert!(free, "the child kept the lock");
        forget_all_after_fork_is_idempotent_in_a_child(&path);
    }

    fn forget_all_after_fork_is_idempotent_in_a_child(path: &Path) {
        let guard = get(path, 1, None).unwrap();
        // SAFETY: as above; the child also calls forget_all_after_fork, which takes
        // uncontended locks and closes descriptors.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            forget_all_after_fork();
            forget_all_after_fork();
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(status, 0);
        // The parent's lock survived the child's exit.
        assert!(!flock1_gets(path));
        drop(guard);
    }

    #[test]
    fn proc_locks_parsing() {
        let text = "\
1: FLOCK  ADVISORY  WRITE 5992 fe:00:10084381 0 EOF
1: -> FLOCK  ADVISORY  WRITE 6001 fe:00:10084381 0 EOF
2: POSIX  ADVISORY  WRITE 7000 fe:00:10084381 0 EOF
3: FLOCK  ADVISORY  WRITE 8000 fe:01:10084381 0 EOF
4: FLOCK  ADVISORY  WRITE 9000 103:0a:10084381 0 EOF
5: FLOCK  ADVISORY  WRITE 0 fe:00:10084381 0 EOF
garbage
";
        assert_eq!(
            parse_proc_locks(text, (0xfe, 0, 10084381)),
            vec![("FLOCK", 5992), ("POSIX", 7000), ("FLOCK", 0)]
        );
        assert_eq!(
            parse_proc_locks(text, (0x103, 0xa, 10084381)),
            vec![("FLOCK", 9000)]
        );
        assert_eq!(parse_proc_locks(text, (0xfe, 0, 1)), vec![]);
        let fdinfo = "lock:\t1: OFDLCK ADVISORY  WRITE -1 fe:00:10084381 0 EOF";
        assert_eq!(
            parse_proc_locks(fdinfo.strip_prefix("lock:").unwrap(), (0xfe, 0, 10084381)),
            vec![("OFDLCK", -1)]
        );
        let unknown = Holders::Unknown("/proc/locks is not available".into());
        assert_eq!(
            unknown.to_string(),
            "holder unknown: /proc/locks is not available"
        );
        let one = Holders::Known(vec![Holder {
            pid: 4242,
            command: Some("python train.py --fold 3".into()),
            source: Source::ProcLocks,
        }]);
        assert_eq!(
            one.to_string(),
            "held by pid 4242 (python train.py --fold 3)"
        );
        let ofd = Holders::Known(vec![Holder {
            pid: 4242,
            command: None,
            source: Source::Fdinfo,
        }]);
        assert_eq!(
            ofd.to_string(),
            "held by pid 4242 [found in /proc/4242/fdinfo]"
        );
    }

    #[test]
    fn posix_mode_excludes_threads_names_holders_and_is_reentrant() {
        let dir = TempDir::new("posix");
        let path = dir.path("a.lock");
        let owner = current_thread_owner();
        let held = get_posix(&path, owner, Some(Duration::ZERO)).unwrap();
        // Re-entrant for the same owner.
        drop(get_posix(&path, owner, Some(Duration::ZERO)).unwrap());
        // Another owner (same process, another open file description) is excluded, and the
        // timeout names this process, found through fdinfo since the OFD line has pid -1.
        let err = get_posix(&path, 2, Some(Duration::from_millis(40))).unwrap_err();
        match &err {
            Error::LockTimeout {
                holders: Holders::Known(list),
                ..
            } => {
                let me = list.iter().find(|h| h.pid == std::process::id());
                assert_eq!(me.map(|h| h.source), Some(Source::Fdinfo), "{err}");
            }
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("/fdinfo]"), "{err}");
        // flock and OFD locks are different locks: holding one never excludes the other.
        drop(get(&path, 2, Some(Duration::ZERO)).unwrap());

        let inside = Arc::new(AtomicBool::new(false));
        let waiter = std::thread::spawn({
            let (path, inside) = (path.clone(), Arc::clone(&inside));
            move || {
                let guard = get_posix(&path, current_thread_owner(), None).unwrap();
                assert!(
                    inside.load(Ordering::SeqCst),
                    "got the lock before the release"
                );
                drop(guard);
            }
        });
        std::thread::sleep(Duration::from_millis(30));
        inside.store(true, Ordering::SeqCst);
        drop(held);
        waiter.join().unwrap();
        assert!(matches!(
            lock_holders(&path, LockMode::Posix),
            Holders::Known(list) if list.is_empty()
        ));
    }

    #[test]
    fn posix_mode_excludes_classic_record_locks_of_other_processes() {
        let dir = TempDir::new("posix-lockf");
        let path = dir.path("a.lock");
        let mut child = Command::new("python3")
            .args([
                "-c",
                "import fcntl, sys, time\n\
                 f = open(sys.argv[1], 'a')\n\
                 fcntl.lockf(f, fcntl.LOCK_EX)\n\
                 print('locked', flush=True)\n\
                 time.sleep(30)",
            ])
            .arg(&path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        assert_eq!(line.trim(), "locked");
        let err = get_posix(&path, 1, Some(Duration::ZERO)).unwrap_err();
        assert!(
            err.to_string().contains(&format!("pid {}", child.id())),
            "{err}"
        );
        stop(child);
        drop(get_posix(&path, 1, Some(Duration::from_secs(5))).unwrap());
    }
}
