// TEMPORARY placeholder until the real lock module lands.
use crate::errors::{Error, Result};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
pub struct Holder {
    pub pid: u32,
    pub command: Option<String>,
}
pub enum Holders {
    Known(Vec<Holder>),
    Unknown(String),
}
impl fmt::Debug for Holders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}
impl fmt::Display for Holders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Holders::Unknown(s) => write!(f, "holder unknown: {s}"),
            Holders::Known(_) => write!(f, "known"),
        }
    }
}
pub struct LockGuard {
    _f: std::fs::File,
}
pub fn lock_path_for(target: &Path) -> Result<PathBuf> {
    Ok(target.with_extension("lock"))
}
pub fn acquire<E: From<Error>>(
    lock_path: &Path,
    _owner: u64,
    _timeout: Option<Duration>,
    _check: &mut dyn FnMut() -> Result<(), E>,
) -> Result<LockGuard, E> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)
        .map_err(|e| Error::io(crate::errors::Step::OpenLock, lock_path, e))?;
    f.lock()
        .map_err(|e| Error::io(crate::errors::Step::Lock, lock_path, e))?;
    Ok(LockGuard { _f: f })
}
pub fn lock_holders(_p: &Path) -> Holders {
    Holders::Unknown("placeholder".into())
}
pub fn forget_all_after_fork() {}
pub fn current_thread_owner() -> u64 {
    0
}
