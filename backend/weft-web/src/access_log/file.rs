//! [`AccessLogFile`]: Combined Log Format lines appended to a file by a writer thread of
//! its own, so a slow or full disk never holds up the reactor.
//!
//! The reactor appends each finished line to a shared batch and goes on; the writer is
//! woken only when a batch starts and when it holds 64 KiB, not for every line (a wake
//! per line would cost two context switches per request on a busy core). The writer
//! takes the batch and writes it out when it holds 64 KiB, when its oldest line is
//! [`FLUSH_EVERY`] old, before it reopens the file and when it stops. Nothing here is
//! fatal; what cannot be written is counted through a [`LossRecorder`] by [`LogLoss`]:
//! lines beyond [`QUEUE_BYTES`] waiting for the writer, lines whose write failed (logged
//! once, then again only after a write has succeeded), lines handed over after the file
//! was closed.
//!
//! [`reopen`](AccessLogFile::reopen) is what logrotate's `postrotate` signal asks for:
//! the lines handed over before it go to the file open until then (renamed by now), the
//! ones after it to the file at the configured path, created anew. [`AccessLogFiles`]
//! keeps a program's files together, so one signal reopens them all and one call at exit
//! writes out what they hold.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::metrics::NoRecorder;

/// Bytes of lines waiting for the writer at most; more are dropped and counted. Bytes, not
/// lines: a line carries client-chosen strings (a User-Agent may be as long as the request
/// head limit allows), so a count of lines would not bound the memory.
pub const QUEUE_BYTES: usize = 4 * 1024 * 1024;

/// The longest a line waits in the writer's buffer before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// A batch is written out when it holds this much.
const BUFFER_BYTES: usize = 64 * 1024;

/// Why an access log line was not written: the `reason` label of its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LogLoss {
    /// [`QUEUE_BYTES`] of lines were already waiting for the writer.
    QueueFull,
    /// The file refused the write (a full disk, a lost mount, a read-only file).
    Write,
    /// The file had been closed (at exit).
    Closed,
}

impl LogLoss {
    /// Every reason.
    pub const ALL: [Self; 3] = [Self::QueueFull, Self::Write, Self::Closed];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::Write => "write",
            Self::Closed => "closed",
        }
    }
}

/// Counts the lines an access log file could not write. Called from the reactor thread
/// and from the file's writer thread, so it must be quick: bump a counter, never block.
pub trait LossRecorder: Send + Sync {
    /// `lines` lines were lost for `reason`.
    fn lost(&self, reason: LogLoss, lines: u64);
}

impl LossRecorder for NoRecorder {
    fn lost(&self, _: LogLoss, _: u64) {}
}

/// What wakes the writer.
enum Message {
    /// A batch has started: take it within [`FLUSH_EVERY`].
    Lines,
    /// The batch holds [`BUFFER_BYTES`]: take it now.
    Full,
    /// The lines handed over before the reopen, and how many: write them to the file
    /// open until then, then open the path again.
    Reopen(Vec<u8>, u64),
    /// The last lines, from a file every handle of which is gone: write them.
    Last(Vec<u8>, u64),
}

/// One access log file and its writer thread. Cheap to clone; the writer ends once it has
/// been stopped (or every clone dropped) and has written what it was handed.
#[derive(Clone)]
pub struct AccessLogFile {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AccessLogFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLogFile")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

struct Shared {
    path: PathBuf,
    /// Lines not taken by the writer yet, and the way to wake it.
    batch: Mutex<Batch>,
    /// Bytes of the lines handed over and not yet written (each with its newline): in
    /// the batch, or taken by the writer and being written.
    queued: Arc<AtomicUsize>,
    /// Where lines that could not be queued are counted, by reason.
    losses: Arc<dyn LossRecorder>,
    /// Disconnected once the writer has ended.
    ended: Mutex<Receiver<()>>,
}

/// Every handle is gone: the lines still in the batch go to the writer with the last
/// message it gets.
impl Drop for Shared {
    fn drop(&mut self) {
        let batch = self.batch.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(to) = batch.to_writer.take() {
            let (bytes, lines) = batch.take(Vec::new());
            let _ = to.send(Message::Last(bytes, lines));
        }
    }
}

/// The lines handed over since the writer last took them.
struct Batch {
    /// `None` once stopped: the writer then ends after the lines already handed over.
    to_writer: Option<Sender<Message>>,
    /// The lines, each with its newline.
    bytes: Vec<u8>,
    lines: u64,
    /// Whether the writer has been told that this batch started, and that it is full.
    started: bool,
    full: bool,
}

impl Batch {
    /// Takes the lines (leaving `spare`'s allocation in their place); the next line
    /// starts a new batch.
    fn take(&mut self, spare: Vec<u8>) -> (Vec<u8>, u64) {
        self.started = false;
        self.full = false;
        let lines = std::mem::take(&mut self.lines);
        (std::mem::replace(&mut self.bytes, spare), lines)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these; the data is valid either way.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl AccessLogFile {
    /// Opens `path` for appending (creating it if missing) and starts its writer thread.
    /// Lines that cannot be written are reported to `losses`.
    pub fn open(path: impl Into<PathBuf>, losses: Arc<dyn LossRecorder>) -> io::Result<Self> {
        let path = path.into();
        let file = open_append(&path)?;
        let (to_writer, from_reactor) = mpsc::channel();
        let (writer_alive, ended) = mpsc::channel::<()>();
        let queued = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(Shared {
            path: path.clone(),
            batch: Mutex::new(Batch {
                to_writer: Some(to_writer),
                bytes: Vec::with_capacity(BUFFER_BYTES),
                lines: 0,
                started: false,
                full: false,
            }),
            queued: queued.clone(),
            losses: losses.clone(),
            ended: Mutex::new(ended),
        });
        let writer = Writer {
            path,
            file,
            shared: Arc::downgrade(&shared),
            spare: Vec::with_capacity(BUFFER_BYTES),
            failing: false,
            losses,
            queued,
        };
        std::thread::Builder::new()
            .name("weft-access-log".into())
            .spawn(move || {
                writer.run(&from_reactor);
                drop(writer_alive);
            })?;
        Ok(Self { shared })
    }

    /// The path it writes to.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Hands one line (without its newline) to the writer; never blocks.
    pub fn write_line(&self, line: String) {
        let shared = &self.shared;
        let bytes = line.len() + 1;
        if shared.queued.fetch_add(bytes, Ordering::Relaxed) + bytes > QUEUE_BYTES {
            shared.queued.fetch_sub(bytes, Ordering::Relaxed);
            shared.losses.lost(LogLoss::QueueFull, 1);
            return;
        }
        let mut batch = lock(&shared.batch);
        let Some(to) = batch.to_writer.clone() else {
            drop(batch);
            shared.queued.fetch_sub(bytes, Ordering::Relaxed);
            shared.losses.lost(LogLoss::Closed, 1);
            return;
        };
        batch.bytes.extend_from_slice(line.as_bytes());
        batch.bytes.push(b'\n');
        batch.lines += 1;
        let wake = if !batch.full && batch.bytes.len() >= BUFFER_BYTES {
            batch.full = true;
            Some(Message::Full)
        } else if !batch.started {
            batch.started = true;
            Some(Message::Lines)
        } else {
            None
        };
        // The writer ends only once every sender is gone, and the batch holds one.
        if let Some(message) = wake {
            let _ = to.send(message);
        }
    }

    /// Asks the writer to write out the lines handed over so far to the file open now,
    /// then to open the path again (creating it if it was renamed away). If the path
    /// cannot be opened, that is logged and the file open before is kept.
    pub fn reopen(&self) {
        let mut batch = lock(&self.shared.batch);
        if let Some(to) = batch.to_writer.clone() {
            let (bytes, lines) = batch.take(Vec::new());
            let _ = to.send(Message::Reopen(bytes, lines));
        }
    }

    /// Lets the writer end once it has written what it was handed; does not wait.
    fn stop(&self) {
        lock(&self.shared.batch).to_writer.take();
    }

    fn ended(&self) -> bool {
        matches!(
            lock(&self.shared.ended).try_recv(),
            Err(TryRecvError::Disconnected)
        )
    }

    /// Waits for the writer to end until `deadline`; whether it did.
    fn wait(&self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        matches!(
            lock(&self.shared.ended).recv_timeout(left),
            Err(RecvTimeoutError::Disconnected)
        )
    }

    /// Whether only `files` holds it: no service writes to it any more.
    fn unused(&self) -> bool {
        Arc::strong_count(&self.shared) == 1
    }
}

/// The writer thread's state.
struct Writer {
    path: PathBuf,
    file: File,
    /// Where batches are taken from; gone once every handle to the file is.
    shared: std::sync::Weak<Shared>,
    /// An emptied batch's allocation, handed back at the next take.
    spare: Vec<u8>,
    /// A write failed and was logged; the next success is logged too.
    failing: bool,
    losses: Arc<dyn LossRecorder>,
    /// Shared with the sender's `queued`: lowered as lines are written, to bound what waits.
    queued: Arc<AtomicUsize>,
}

impl Writer {
    fn run(mut self, from: &Receiver<Message>) {
        // When the batch that has started must be written by.
        let mut due: Option<Instant> = None;
        loop {
            let message = match due {
                None => from.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(due) => from.recv_timeout(due.saturating_duration_since(Instant::now())),
            };
            match message {
                Ok(Message::Lines) => {
                    due.get_or_insert_with(|| Instant::now() + FLUSH_EVERY);
                }
                Ok(Message::Full) | Err(RecvTimeoutError::Timeout) => {
                    self.take_and_write();
                    due = None;
                }
                Ok(Message::Reopen(bytes, lines)) => {
                    self.write(bytes, lines);
                    self.reopen();
                }
                Ok(Message::Last(bytes, lines)) => self.write(bytes, lines),
                Err(RecvTimeoutError::Disconnected) => {
                    self.take_and_write();
                    return;
                }
            }
        }
    }

    /// Writes the lines of the batch so far.
    fn take_and_write(&mut self) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let spare = std::mem::take(&mut self.spare);
        let (bytes, lines) = lock(&shared.batch).take(spare);
        drop(shared);
        self.write(bytes, lines);
    }

    fn write(&mut self, mut bytes: Vec<u8>, lines: u64) {
        if bytes.is_empty() {
            self.spare = bytes;
            return;
        }
        let path = self.path.display();
        match self.file.write_all(&bytes) {
            Ok(()) => {
                if std::mem::take(&mut self.failing) {
                    tracing::info!(path = %path, "the access log {path} is written again");
                }
            }
            Err(error) => {
                self.losses.lost(LogLoss::Write, lines);
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::error!(
                        path = %path,
                        %error,
                        "cannot write the access log {path}: {error}; its lines are dropped \
                         and counted until a write succeeds"
                    );
                }
            }
        }
        self.queued.fetch_sub(bytes.len(), Ordering::Relaxed);
        bytes.clear();
        self.spare = bytes;
    }

    fn reopen(&mut self) {
        let path = self.path.display();
        match open_append(&self.path) {
            Ok(file) => {
                self.file = file;
                tracing::info!(path = %path, "reopened the access log {path}");
            }
            Err(error) => tracing::error!(
                path = %path,
                %error,
                "cannot reopen the access log {path}: {error}; writing on to the file open before"
            ),
        }
    }
}

/// The access log files of a program: each opened through it, reopened together (on
/// SIGUSR1), and written out and closed together at exit. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct AccessLogFiles {
    /// Every file opened through it, for the reopen on SIGUSR1 and the close at exit.
    files: Arc<Mutex<Vec<AccessLogFile>>>,
}

impl AccessLogFiles {
    /// Opens `path` as [`AccessLogFile::open`] does and keeps it. Files no service holds
    /// any more are let go first: their writers end once they have written their lines.
    pub fn open(
        &self,
        path: impl Into<PathBuf>,
        losses: Arc<dyn LossRecorder>,
    ) -> io::Result<AccessLogFile> {
        let file = AccessLogFile::open(path, losses)?;
        let mut files = lock(&self.files);
        let_go_unused(&mut files);
        files.push(file.clone());
        Ok(file)
    }

    /// Reopens every file in use ([`AccessLogFile::reopen`]); returns how many.
    pub fn reopen(&self) -> usize {
        let mut files = lock(&self.files);
        let_go_unused(&mut files);
        let mut reopened = 0;
        for file in files.iter().filter(|f| !f.unused()) {
            file.reopen();
            reopened += 1;
        }
        reopened
    }

    /// Stops every writer once it has written what it was handed, and waits for them
    /// until `timeout` has passed; whether they all ended. Lines handed over afterwards
    /// are counted as [`LogLoss::Closed`].
    pub fn close(&self, timeout: Duration) -> bool {
        let files = std::mem::take(&mut *lock(&self.files));
        for file in &files {
            file.stop();
        }
        let deadline = Instant::now() + timeout;
        files.iter().filter(|f| !f.wait(deadline)).count() == 0
    }
}

fn let_go_unused(files: &mut Vec<AccessLogFile>) {
    for file in files.iter().filter(|f| f.unused()) {
        file.stop();
    }
    files.retain(|f| !(f.unused() && f.ended()));
}

#[cfg(test)]
mod tests;
