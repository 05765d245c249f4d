//! The error type of the pure-Rust core.
//!
//! Every failure names the file it concerns and, for OS failures, the step that failed and the
//! original `io::Error` (so the Python layer can keep the errno).

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::lock::Holders;

/// The step of a locked atomic write (or a read) that an OS error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    OpenLock,
    Lock,
    CreateDir,
    CreateTemp,
    WriteTemp,
    SyncTemp,
    SetPermissions,
    CloseTemp,
    Rename,
    SyncDir,
    Read,
    Stat,
}

impl Step {
    /// A short name for programs (the `step` attribute of the Python exception).
    pub fn id(self) -> &'static str {
        match self {
            Step::OpenLock => "open_lock",
            Step::Lock => "lock",
            Step::CreateDir => "create_dir",
            Step::CreateTemp => "create_temp",
            Step::WriteTemp => "write_temp",
            Step::SyncTemp => "fsync_temp",
            Step::SetPermissions => "set_permissions",
            Step::CloseTemp => "close_temp",
            Step::Rename => "rename",
            Step::SyncDir => "fsync_dir",
            Step::Read => "read",
            Step::Stat => "stat",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Step::OpenLock => "cannot open lock file",
            Step::Lock => "cannot lock",
            Step::CreateDir => "cannot create directory",
            Step::CreateTemp => "cannot create temporary file",
            Step::WriteTemp => "cannot write temporary file",
            Step::SyncTemp => "cannot fsync temporary file",
            Step::SetPermissions => "cannot set permissions of temporary file",
            Step::CloseTemp => "cannot close temporary file",
            Step::Rename => "cannot replace",
            Step::SyncDir => "written, but cannot fsync the directory of",
            Step::Read => "cannot read",
            Step::Stat => "cannot stat",
        }
    }
}

#[derive(Debug)]
pub enum Error {
    /// An OS call failed.
    Io {
        step: Step,
        path: PathBuf,
        source: io::Error,
    },
    /// Another holder kept the lock until the timeout ran out.
    LockTimeout {
        lock_path: PathBuf,
        timeout: Duration,
        holders: Holders,
    },
    /// A path that has no lock sidecar (empty name, `/`, `..` as the whole path).
    InvalidPath { path: PathBuf, reason: &'static str },
}

impl Error {
    pub fn io(step: Step, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            step,
            path: path.into(),
            source,
        }
    }

    /// The OS error number, where there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { step, path, source } => {
                write!(f, "{} {}: {}", step.describe(), path.display(), source)?;
                if *step == Step::OpenLock && source.raw_os_error() == Some(libc::ELOOP) {
                    // O_NOFOLLOW: say why, the bare message suggests a loop of links.
                    f.write_str(" (the lock file is a symbolic link, which is never followed)")?;
                }
                Ok(())
            }
            Error::LockTimeout {
                lock_path,
                timeout,
                holders,
            } => write!(
                f,
                "could not acquire lock {} within {:.3} s; {}",
                lock_path.display(),
                timeout.as_secs_f64(),
                holders
            ),
            Error::InvalidPath { path, reason } => {
                write!(
                    f,
                    "invalid path {:?}: {}",
                    path.display().to_string(),
                    reason
                )
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
