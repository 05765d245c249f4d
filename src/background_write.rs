//! A temp file written by a background thread while its data is still being produced.
//!
//! A large document takes longer to encode than to write, and a durable write's final fsync
//! costs time in proportion to the data it writes back (and, with some volatile disk caches,
//! to the data it flushes). The producer hands finished parts to a thread that writes them
//! into the temp file while the producer goes on; for a durable file the disk takes each part
//! as it is written, so that when the last part arrives little is left for the final fsync.
//! The producer never waits for the disk: parts queue up (at most the whole document, what a
//! one-shot write holds anyway).
//!
//! Parts may hold deferred floats (`format::DEFERRED_FLOAT`): the thread writes their text,
//! so a producer that holds the GIL leaves float formatting, a sixth of encoding a large
//! numeric document, to a thread that does not.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};

use crate::atomic_write::{CompleteTemp, TempFile};
use crate::errors::{Error, Result, Step};
use crate::format;

/// The size a producer's parts are aimed at: big enough that a part's system calls cost little
/// next to its bytes, small enough that the part left to flush at the end is short.
pub const PART_SIZE: usize = 256 << 10;

/// The capacity of a fresh part buffer: a part ends between items, past `PART_SIZE`.
const PART_CAPACITY: usize = PART_SIZE + PART_SIZE / 4;
/// How many part buffers a producing thread keeps between writes (5 MiB): a 4 MB write's
/// producer otherwise faulted in ~400 fresh pages per call, 10% of its time.
const KEEP_PARTS: usize = 16;

thread_local! {
    /// Part buffers of this thread's earlier writes, their pages already mapped.
    static SPARE_PARTS: std::cell::RefCell<Vec<Vec<u8>>> = const {
        std::cell::RefCell::new(Vec::new())
    };
}

/// The producer's side of a temp file written by a background thread; see the module docs.
/// Dropped without [`BackgroundWrite::finish`], the temp file is removed.
pub struct BackgroundWrite {
    parts: Arc<Parts>,
    /// Buffers the writer is done with, to be filled again (no page faults on fresh memory).
    spent: Receiver<Vec<u8>>,
    /// Set when the producer gives up: the writer then removes the temp file, without the
    /// final fsync.
    cancelled: Arc<AtomicBool>,
    worker: Option<JoinHandle<Result<Option<CompleteTemp>>>>,
}

impl BackgroundWrite {
    /// Starts the writer thread, which creates the temp file for `target` (as
    /// [`TempFile::create`]; its errors come out of [`BackgroundWrite::finish`]).
    pub fn start(target: &Path, durable: bool) -> Result<BackgroundWrite> {
        let parts = Arc::new(Parts::default());
        let (give_back, spent) = mpsc::channel();
        let cancelled = Arc::new(AtomicBool::new(false));
        let worker = {
            let (owned, incoming, cancelled) =
                (target.to_path_buf(), parts.clone(), cancelled.clone());
            thread::Builder::new()
                .name("atomicjson-write".into())
                .spawn(move || {
                    let _stop = StopWhenDone(&incoming);
                    write_parts(&owned, durable, &incoming, give_back, &cancelled)
                })
                .map_err(|err| Error::io(Step::CreateTemp, target, err))?
        };
        Ok(BackgroundWrite {
            parts,
            spent,
            cancelled,
            worker: Some(worker),
        })
    }

    /// Queues `part` for writing; returns an empty buffer to fill next. Once the writer has
    /// failed, parts are dropped: the error comes out of `finish`.
    pub fn send(&mut self, part: Vec<u8>) -> Vec<u8> {
        if let Err(part) = self.parts.push(part) {
            return reuse(part);
        }
        next_part_buffer(&self.spent)
    }

    /// Queues the last part and waits for the writer: the temp file is then complete (and
    /// fsynced if durable), ready to replace its target. Meanwhile this thread formats parts
    /// the writer has not reached, from the last one back: the writer lags the producer by a
    /// few parts, and this thread has nothing else to do.
    pub fn finish(mut self, last: Vec<u8>) -> Result<CompleteTemp> {
        if !last.is_empty() {
            // (`send` would also fetch a buffer to fill next.) Refused when the writer has
            // stopped: its error comes out of the join below.
            let _ = self.parts.push(last);
        }
        self.parts.close();
        self.parts.help();
        let worker = self.worker.take().expect("finish runs once");
        let complete = worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        // All the buffers the writer gave back.
        keep_part_buffers(self.spent.try_iter());
        Ok(complete.expect("only a cancelled writer stops without a complete file"))
    }
}

/// The parts on their way from the producer to the writer thread, numbered in order. `raw`
/// holds the parts nobody has taken: a run whose first is the writer's next. The writer takes
/// parts from its front; at the end the producer formats parts from its back
/// ([`Parts::help`]), and the writer writes what it formatted in turn.
#[derive(Default)]
struct Parts {
    queue: Mutex<Queue>,
    changed: Condvar,
}

#[derive(Default)]
struct Queue {
    raw: VecDeque<Vec<u8>>,
    /// The number of the writer's next part (the first of `raw` when there is one).
    next: u64,
    /// Parts the producer formatted, by number, and the number of the one it is formatting.
    formatted: BTreeMap<u64, Vec<u8>>,
    formatting: Option<u64>,
    /// No part comes after those queued.
    closed: bool,
    /// The writer has stopped: parts are dropped.
    stopped: bool,
}

/// What the writer does next.
enum Next {
    Format(Vec<u8>),
    Write(Vec<u8>),
    End,
}

impl Parts {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Only this module's code runs under the lock, and none of it panics.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `part`; gives it back when the writer has stopped.
    fn push(&self, part: Vec<u8>) -> std::result::Result<(), Vec<u8>> {
        let mut queue = self.lock();
        if queue.stopped {
            return Err(part);
        }
        queue.raw.push_back(part);
        drop(queue);
        self.changed.notify_all();
        Ok(())
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// Stops the queue (the writer's end): later parts are dropped, queued ones freed.
    fn stop(&self) {
        let mut queue = self.lock();
        queue.stopped = true;
        queue.raw.clear();
        drop(queue);
        self.changed.notify_all();
    }

    /// The writer's next part, raw or formatted; waits for it.
    fn next(&self) -> Next {
        let mut queue = self.lock();
        loop {
            if let Some(part) = queue.raw.pop_front() {
                queue.next += 1;
                return Next::Format(part);
            }
            let next = queue.next;
            if let Some(text) = queue.formatted.remove(&next) {
                queue.next += 1;
                return Next::Write(text);
            }
            if queue.closed && queue.formatting.is_none() {
                return Next::End;
            }
            queue = self
                .changed
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Formats queued parts from the last one back until none is left or the writer stopped.
    /// Runs once the parts are closed. It takes the first part too: the writer is then busy
    /// with the one before (an idle writer would have taken it), and the two work at once
    /// instead of the writer formatting the last two or three parts alone.
    fn help(&self) {
        loop {
            let mut queue = self.lock();
            if queue.stopped || queue.raw.is_empty() {
                return;
            }
            let number = queue.next + queue.raw.len() as u64 - 1;
            let part = queue.raw.pop_back().expect("a part is queued");
            queue.formatting = Some(number);
            drop(queue);
            let mut text = spare_part_buffer();
            format::expand_deferred_floats(&part, &mut text);
            keep_part_buffers([reuse(part)]);
            let mut queue = self.lock();
            queue.formatting = None;
            queue.formatted.insert(number, text);
            drop(queue);
            self.changed.notify_all();
        }
    }
}

/// Stops the parts when the writer thread ends, however it ends.
struct StopWhenDone<'a>(&'a Parts);

impl Drop for StopWhenDone<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// A buffer for the producer's next part: one the writer is done with, else one kept from
/// this thread's earlier writes, else a fresh one.
fn next_part_buffer(spent: &Receiver<Vec<u8>>) -> Vec<u8> {
    spent.try_recv().unwrap_or_else(|_| spare_part_buffer())
}

/// One of this thread's kept part buffers, else a fresh one.
fn spare_part_buffer() -> Vec<u8> {
    SPARE_PARTS
        .try_with(|spare| spare.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_else(|| Vec::with_capacity(PART_CAPACITY))
}

/// Keeps `buffers` (empty) for this thread's next write, up to `KEEP_PARTS` of a part's size.
fn keep_part_buffers(buffers: impl IntoIterator<Item = Vec<u8>>) {
    let _ = SPARE_PARTS.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        for buffer in buffers {
            if spare.len() < KEEP_PARTS && buffer.capacity() <= PART_CAPACITY {
                spare.push(buffer);
            }
        }
    });
}

impl Drop for BackgroundWrite {
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::Release);
        self.parts.close();
        if let Some(worker) = self.worker.take() {
            // The writer stops at its next part and drops its temp file (removing it).
            let _ = worker.join();
        }
    }
}

/// Closes `file` on a short-lived thread: closing the last descriptor of a replaced file frees
/// its blocks (see `CompleteTemp::replace_target`), work the writer need not wait for. Should
/// the thread not start, the file is closed here; at process exit the kernel closes it.
pub fn close_in_background(file: File) {
    let _ = thread::Builder::new()
        .name("atomicjson-close".into())
        .spawn(move || drop(file));
}

fn reuse(mut buffer: Vec<u8>) -> Vec<u8> {
    buffer.clear();
    buffer
}

/// The writer thread: formats and writes parts as they come. For a durable file it starts the
/// writeback of each part as it goes ([`EarlySyncs`]), so that the final fsync (`complete`)
/// has little left to do. `None` when the producer cancelled (the temp file is removed on
/// return).
fn write_parts(
    target: &Path,
    durable: bool,
    parts: &Parts,
    give_back: Sender<Vec<u8>>,
    cancelled: &AtomicBool,
) -> Result<Option<CompleteTemp>> {
    let mut temp = TempFile::create(target, durable)?;
    let mut early = match durable {
        true => Some(EarlySyncs::new(temp.sync_handle()?)),
        false => None,
    };
    let mut text = Vec::new();
    let mut length = 0;
    let written = loop {
        let next = parts.next();
        if cancelled.load(Ordering::Acquire) {
            break Ok(());
        }
        let formatted = match next {
            Next::Format(part) => {
                text.clear();
                format::expand_deferred_floats(&part, &mut text);
                let _ = give_back.send(reuse(part));
                None
            }
            Next::Write(formatted) => Some(formatted),
            Next::End => break Ok(()),
        };
        let bytes = formatted.as_deref().unwrap_or(&text);
        if let Err(err) = temp.write(bytes) {
            break Err(err);
        }
        length += bytes.len() as u64;
        if let Some(formatted) = formatted {
            let _ = give_back.send(reuse(formatted));
        }
        if let Some(Err(err)) = early.as_mut().map(|early| early.written(length)) {
            break Err(Error::io(Step::SyncTemp, target, err));
        }
    };
    // The final fsync waits for an early flush to end: started during an early sync it took
    // longer (measured when a thread wrote back and waited: a durable 4 MB write 6.2-6.4 ms
    // against 5.5-5.6 ms).
    let synced = early.map_or(Ok(()), EarlySyncs::finish);
    written?;
    // An early sync's error is reported to it alone (the descriptors share one open file).
    synced.map_err(|err| Error::io(Step::SyncTemp, target, err))?;
    if cancelled.load(Ordering::Acquire) {
        return Ok(None);
    }
    temp.complete().map(Some)
}

/// The early syncs of a durable file being written, which leave the final fsync little to
/// do. After each part the writer starts the writeback of what it wrote without waiting for it
/// (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`): the disk takes the data while the next
/// parts are formatted. Every `FLUSH_EVERY` bytes a thread of its own also flushes the disk's
/// cache (`fdatasync`), started at the first. Where the system has no `sync_file_range` that
/// thread syncs after every part instead (once for any number of parts written meanwhile).
struct EarlySyncs {
    file: File,
    flusher: Option<Syncer>,
    /// The length written when the flusher was last woken.
    flushed: u64,
}

/// Bytes written between the early flushes of [`EarlySyncs`]. A flush made early saves time
/// where its cost grows with the data flushed (stop 12's virtual disk: 8.4-8.9 ms for 4 MB,
/// 0.2 ms after an early `fdatasync`) and costs time where it does not (this disk since:
/// 0.3-1.1 ms whatever it flushes; one per MiB made a durable 4 MB write 1.02-1.05x slower).
/// Every 4 MiB bounds what the final fsync of a large file flushes on the first kind of disk;
/// a 4 MB document flushes once, at the end.
const FLUSH_EVERY: u64 = 4 << 20;

impl EarlySyncs {
    fn new(file: File) -> EarlySyncs {
        EarlySyncs {
            file,
            flusher: None,
            flushed: 0,
        }
    }

    /// `length` bytes are written.
    fn written(&mut self, length: u64) -> io::Result<()> {
        let started = start_write_back(&self.file)?;
        if !started || length - self.flushed >= FLUSH_EVERY {
            self.flushed = length;
            if self.flusher.is_none() {
                self.flusher = Syncer::start(self.file.try_clone()?);
            }
            if let Some(flusher) = &self.flusher {
                flusher.wake();
            }
        }
        Ok(())
    }

    /// Waits for the flusher; the first error.
    fn finish(self) -> io::Result<()> {
        self.flusher.map_or(Ok(()), Syncer::finish)
    }
}

/// A thread that `fdatasync`s a file each time it is woken (once for any number of wake-ups
/// that arrived during a sync), until told to finish.
struct Syncer {
    wake: Sender<()>,
    thread: JoinHandle<io::Result<()>>,
}

impl Syncer {
    /// `None` when no thread can be started: the syncs are only ahead of time, the final
    /// fsync makes the file durable all the same.
    fn start(file: File) -> Option<Syncer> {
        let (wake, woken) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("atomicjson-sync".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    while woken.try_recv().is_ok() {}
                    file.sync_data()?;
                }
                Ok(())
            })
            .ok()?;
        Some(Syncer { wake, thread })
    }

    fn wake(&self) {
        // After a failed sync the thread is gone: its error comes out of `finish`.
        let _ = self.wake.send(());
    }

    /// Lets the thread sync once more if it was woken since its last sync, then stop; its
    /// first error.
    fn finish(self) -> io::Result<()> {
        let Syncer { wake, thread } = self;
        drop(wake);
        thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// Starts writing the file's dirty pages back to the disk, without waiting for them (a failed
/// writeback shows at the final fsync). `false` where the system has no such call.
#[cfg(target_os = "linux")]
fn start_write_back(file: &File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain system call on a descriptor `file` owns.
    match unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) } {
        0 => Ok(true),
        _ => Err(io::Error::last_os_error()),
    }
}

#[cfg(not(target_os = "linux"))]
fn start_write_back(_: &File) -> io::Result<bool> {
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TempDir;
    use std::fs;

    #[test]
    fn parts_arrive_in_order_and_replace_the_target() {
        let dir = TempDir::new("order");
        let target = dir.path("a.json");
        fs::write(&target, b"old").unwrap();
        let mut write = BackgroundWrite::start(&target, true).unwrap();
        let mut expected = Vec::new();
        let mut buffer = Vec::new();
        for i in 0..50u32 {
            buffer.extend(std::iter::repeat_n(
                b'a' + (i % 26) as u8,
                1000 + i as usize * 37,
            ));
            expected.extend_from_slice(&buffer);
            buffer = write.send(buffer);
            assert!(buffer.is_empty());
            // The target is not touched while parts are written.
            assert_eq!(fs::read(&target).unwrap(), b"old");
        }
        buffer.extend_from_slice(b"end\n");
        expected.extend_from_slice(b"end\n");
        write.finish(buffer).unwrap().replace_target().unwrap();
        assert_eq!(fs::read(&target).unwrap(), expected);
        assert_eq!(dir.names().len(), 1);
    }

    #[test]
    fn a_thread_keeps_part_buffers_for_its_next_write() {
        let (give_back, spent) = mpsc::channel();
        for capacity in [10 * PART_CAPACITY]
            .into_iter()
            .chain([PART_CAPACITY; KEEP_PARTS + 3])
        {
            give_back.send(Vec::with_capacity(capacity)).unwrap();
        }
        keep_part_buffers(spent.try_iter());
        // At most KEEP_PARTS, none larger than a part needs.
        let kept = SPARE_PARTS.with(|spare| spare.take());
        assert_eq!(kept.len(), KEEP_PARTS);
        assert!(kept.iter().all(|b| b.capacity() == PART_CAPACITY));
        // The producer takes a buffer the writer gave back first, then a kept one, then a new
        // one.
        SPARE_PARTS.with(|spare| spare.replace(vec![vec![7; 10]; 1]));
        give_back.send(vec![1; 3]).unwrap();
        assert_eq!(next_part_buffer(&spent), vec![1; 3]);
        assert_eq!(next_part_buffer(&spent), vec![7; 10]);
        let fresh = next_part_buffer(&spent);
        assert!(fresh.is_empty() && fresh.capacity() == PART_CAPACITY);
    }

    #[test]
    fn a_streamed_write_leaves_its_part_buffers_to_its_thread() {
        let dir = TempDir::new("spare");
        let target = dir.path("a.json");
        SPARE_PARTS.with(|spare| spare.take());
        let mut write = BackgroundWrite::start(&target, false).unwrap();
        let mut buffer = Vec::new();
        for _ in 0..4 {
            buffer.resize(PART_SIZE, b' ');
            buffer = write.send(buffer);
        }
        write
            .finish(b"1".to_vec())
            .unwrap()
            .replace_target()
            .unwrap();
        assert!(SPARE_PARTS.with(|spare| !spare.borrow().is_empty()));
        assert_eq!(fs::read(&target).unwrap().len(), 4 * PART_SIZE + 1);
    }

    fn part(i: u8) -> Vec<u8> {
        let mut part = vec![b'a' + i; 3];
        format::write_float_deferred(&mut part, f64::from(i) + 0.5);
        part
    }

    fn text(i: u8) -> Vec<u8> {
        let mut text = vec![b'a' + i; 3];
        format::write_float(&mut text, f64::from(i) + 0.5);
        text
    }

    #[test]
    fn the_producer_formats_from_the_back_and_the_writer_takes_all_in_order() {
        let parts = Parts::default();
        for i in 0..5 {
            parts.push(part(i)).unwrap();
        }
        parts.close();
        parts.help();
        // All come formatted, in order.
        for i in 0..5 {
            assert!(matches!(parts.next(), Next::Write(t) if t == text(i)));
        }
        assert!(matches!(parts.next(), Next::End));
    }

    #[test]
    fn a_writer_and_a_helping_producer_keep_the_order() {
        for _ in 0..50 {
            let parts = Arc::new(Parts::default());
            for i in 0..20 {
                parts.push(part(i)).unwrap();
            }
            let writer = {
                let parts = parts.clone();
                thread::spawn(move || {
                    let mut out = Vec::new();
                    loop {
                        match parts.next() {
                            Next::Format(p) => format::expand_deferred_floats(&p, &mut out),
                            Next::Write(t) => out.extend_from_slice(&t),
                            Next::End => return out,
                        }
                    }
                })
            };
            parts.close();
            parts.help();
            let expected: Vec<u8> = (0..20).flat_map(text).collect();
            assert_eq!(writer.join().unwrap(), expected);
        }
    }

    #[test]
    fn once_stopped_the_parts_are_dropped_and_nobody_waits() {
        let parts = Parts::default();
        parts.push(part(0)).unwrap();
        parts.push(part(1)).unwrap();
        parts.stop();
        assert_eq!(parts.push(part(2)), Err(part(2)));
        parts.help();
        parts.close();
        assert!(matches!(parts.next(), Next::End));
    }

    #[test]
    fn deferred_floats_are_written_as_text() {
        let dir = TempDir::new("floats");
        let target = dir.path("a.json");
        let mut write = BackgroundWrite::start(&target, false).unwrap();
        let mut part = b"[".to_vec();
        format::write_float_deferred(&mut part, 0.1);
        part.extend_from_slice(b", ");
        write.send(part);
        let mut last = Vec::new();
        format::write_float_deferred(&mut last, 1e16);
        last.extend_from_slice(b", \"\xc3\xa4\"]");
        write.finish(last).unwrap().replace_target().unwrap();
        assert_eq!(fs::read(&target).unwrap(), "[0.1, 1e+16, \"ä\"]".as_bytes());
    }

    #[test]
    fn dropping_it_removes_the_temp_file() {
        let dir = TempDir::new("drop");
        let target = dir.path("a.json");
        let mut write = BackgroundWrite::start(&target, false).unwrap();
        write.send(vec![b'x'; 10_000]);
        drop(write);
        assert_eq!(dir.names().len(), 0);
        // Finished but never renamed: removed as well.
        let mut write = BackgroundWrite::start(&target, true).unwrap();
        write.send(vec![b'x'; 10_000]);
        drop(write.finish(b"y".to_vec()).unwrap());
        assert_eq!(dir.names().len(), 0);
    }

    #[test]
    fn a_failing_writer_reports_its_error_at_finish() {
        let dir = TempDir::new("fail");
        let file = dir.path("file");
        fs::write(&file, b"keep").unwrap();
        // The parent is a file: the temp file cannot be created.
        let mut write = BackgroundWrite::start(&file.join("a.json"), true).unwrap();
        for _ in 0..10 {
            write.send(vec![b'x'; 1000]);
        }
        match write.finish(b"end".to_vec()) {
            Err(Error::Io { step, source, .. }) => {
                assert_eq!(step, crate::errors::Step::CreateTemp);
                assert_eq!(source.raw_os_error(), Some(libc::ENOTDIR));
            }
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("the write succeeded"),
        }
        assert_eq!(fs::read(&file).unwrap(), b"keep");
    }
}
