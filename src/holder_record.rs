//! A small note of who holds a lock, written into the lock file once the lock is held.
//!
//! `/proc/locks` names the holder only on the holder's own machine. On a shared file system the
//! waiter may run elsewhere, so the holder also writes pid, host, program and time into the
//! sidecar. It is information, never relied on for correctness: a legacy writer opening the
//! file with `open(path, 'w')` wipes it, and a read-only lock file gets none.

use std::fmt;
use std::fs::File;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

/// Records longer than this are not ours (or were cut by a legacy `open('w')` race).
const MAX_RECORD: u64 = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub pid: u32,
    pub host: String,
    pub argv: Vec<String>,
    /// When the lock was taken, RFC 3339 in UTC.
    pub acquired: String,
}

impl Record {
    /// This process's record, its command line shortened so that the record stays readable
    /// (at most `MAX_RECORD` bytes): `python -c SCRIPT` would otherwise write the whole script
    /// into the lock file at every acquisition, and no reader would accept it.
    pub fn of_this_process() -> Record {
        Record {
            pid: std::process::id(),
            host: host_name(),
            argv: std::env::args_os()
                .map(|a| shorten(&a.to_string_lossy()))
                .collect(),
            acquired: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
        .fitted()
    }

    /// Drops arguments from the end until the record fits in `MAX_RECORD` bytes.
    fn fitted(mut self) -> Record {
        while self.to_json().len() as u64 > MAX_RECORD && self.argv.pop().is_some() {}
        self
    }

    pub fn to_json(&self) -> Vec<u8> {
        let value = serde_json::json!({
            "pid": self.pid,
            "host": self.host,
            "argv": self.argv,
            "acquired": self.acquired,
        });
        let mut out = serde_json::to_vec(&value).expect("a JSON value always serializes");
        out.push(b'\n');
        out
    }

    pub fn from_json(bytes: &[u8]) -> Option<Record> {
        let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        Some(Record {
            pid: u32::try_from(value.get("pid")?.as_u64()?).ok()?,
            host: value.get("host")?.as_str()?.to_owned(),
            argv: value
                .get("argv")?
                .as_array()?
                .iter()
                .map(|a| a.as_str().map(str::to_owned))
                .collect::<Option<_>>()?,
            acquired: value.get("acquired")?.as_str()?.to_owned(),
        })
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pid {} on {} ({}) since {}, recorded by the holder",
            self.pid,
            self.host,
            self.argv.join(" "),
            self.acquired
        )
    }
}

/// How every record starts (serde_json writes the keys sorted).
const RECORD_START: &[u8] = b"{\"acquired\":";

/// Replace the lock file's content with this process's record. Best effort: a read-only
/// descriptor or a full disk only means no record.
///
/// Only content that is ours to replace is replaced: an empty file, an earlier record, or the
/// NUL bytes a legacy `open('w')` racing with `set_len` leaves. A lock file with other content
/// or more than one link (`O_NOFOLLOW` stops symlinks, not hard links to some other file) is
/// left as it is, so that a planted `.lock` can never be used to overwrite another file.
pub fn write(fd: RawFd) {
    // SAFETY: the descriptor stays owned by the lock registry; ManuallyDrop never closes it.
    let file = ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
    let Some(old_len) = replaceable_len(&file) else {
        return;
    };
    let record = Record::of_this_process().to_json();
    let len = record.len() as u64;
    let _ = file.write_all_at(&record, 0).and_then(|()| {
        // A record of the same length (the usual case) leaves nothing to cut: ftruncate is
        // one of the dearer calls of an acquisition on ext4.
        if old_len == len {
            Ok(())
        } else {
            file.set_len(len)
        }
    });
}

/// The length of a lock file whose content is ours to replace, or `None`.
fn replaceable_len(file: &File) -> Option<u64> {
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.nlink() != 1 || meta.len() > MAX_RECORD {
        return None;
    }
    let mut start = [0u8; RECORD_START.len()];
    let n = file.read_at(&mut start, 0).ok()?;
    let head = &start[..n];
    (head == &RECORD_START[..n] || head.iter().all(|&b| b == 0)).then_some(meta.len())
}

/// The record in a lock file, if there is a valid one.
pub fn read(lock_path: &Path) -> Option<Record> {
    let file = File::open(lock_path).ok()?;
    if file.metadata().ok()?.len() > MAX_RECORD {
        return None;
    }
    let mut buf = Vec::new();
    io::Read::read_to_end(&mut &file, &mut buf).ok()?;
    Record::from_json(&buf)
}

/// The first `MAX_ARG_CHARS` characters of `arg`, with `…` if it was longer.
fn shorten(arg: &str) -> String {
    const MAX_ARG_CHARS: usize = 200;
    match arg.char_indices().nth(MAX_ARG_CHARS) {
        Some((end, _)) => format!("{}…", &arg[..end]),
        None => arg.to_owned(),
    }
}

/// This machine's host name, as records carry it.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its whole length.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    if ok {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "unknown host".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn lock_file(tag: &str, content: &[u8]) -> (std::path::PathBuf, File) {
        let path =
            std::env::temp_dir().join(format!("aj-record-{tag}-{}.lock", std::process::id()));
        std::fs::write(&path, content).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        (path, file)
    }

    #[test]
    fn record_round_trips_and_replaces_old_records_and_nuls() {
        let old = Record {
            pid: 1,
            host: "h".repeat(300),
            argv: vec!["a".into()],
            acquired: "then".into(),
        };
        for (tag, content) in [
            ("empty", Vec::new()),
            ("old", old.to_json()),
            ("cut", old.to_json()[..5].to_vec()),
            ("nuls", vec![0; 40]),
        ] {
            let (path, file) = lock_file(tag, &content);
            write(file.as_raw_fd());
            let record = read(&path).expect("a record");
            assert_eq!(record.pid, std::process::id());
            assert!(!record.host.is_empty());
            assert!(record.to_string().contains("recorded by the holder"));
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn other_content_and_hard_links_are_never_overwritten() {
        let (path, file) = lock_file("other", b"someone's data\n");
        write(file.as_raw_fd());
        assert_eq!(std::fs::read(&path).unwrap(), b"someone's data\n");
        std::fs::remove_file(&path).unwrap();

        let (path, file) = lock_file("linked", b"");
        let link = path.with_extension("link");
        let _ = std::fs::remove_file(&link);
        std::fs::hard_link(&path, &link).unwrap();
        write(file.as_raw_fd());
        assert_eq!(std::fs::read(&link).unwrap(), b"");
        std::fs::remove_file(&path).unwrap();
        std::fs::remove_file(&link).unwrap();
    }

    #[test]
    fn long_command_lines_are_shortened_to_fit() {
        assert_eq!(shorten("short"), "short");
        let long = "é".repeat(300);
        assert_eq!(shorten(&long), format!("{}…", "é".repeat(200)));
        let mut record = Record::of_this_process();
        record.argv = vec!["\u{1}".repeat(200); 100]; // escaped 6 times over
        let record = record.fitted();
        assert!(!record.argv.is_empty() && record.to_json().len() as u64 <= MAX_RECORD);
    }

    #[test]
    fn garbage_is_no_record() {
        assert_eq!(Record::from_json(b"not json"), None);
        assert_eq!(Record::from_json(b"{\"pid\": -1}"), None);
    }
}
