//! [`AccessLogFile`]: Combined Log Format lines appended to a file by a writer thread of
//! its own, so a slow or full disk never holds up the reactor.
//!
//! The reactor hands each finished line over a channel and goes on. The writer gathers
//! lines in a buffer and writes it out when it holds 64 KiB, when its oldest line is
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

/// The buffer is written out when it holds this much.
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

enum Message {
    Line(String),
    Reopen,
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
    /// `None` once stopped: the writer then ends after the lines already sent.
    to_writer: Mutex<Option<Sender<Message>>>,
    /// Bytes of the lines sent and not yet taken by the writer (each with its newline).
    queued: Arc<AtomicUsize>,
    /// Where lines that could not be queued are counted, by reason.
    losses: Arc<dyn LossRecorder>,
    /// Disconnected once the writer has ended.
    ended: Mutex<Receiver<()>>,
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
        let writer = Writer {
            path: path.clone(),
            file,
            buffer: Vec::with_capacity(BUFFER_BYTES),
            lines: 0,
            oldest: None,
            failing: false,
            losses: losses.clone(),
            queued: queued.clone(),
        };
        std::thread::Builder::new()
            .name("weft-access-log".into())
            .spawn(move || {
                writer.run(&from_reactor);
                drop(writer_alive);
            })?;
        Ok(Self {
            shared: Arc::new(Shared {
                path,
                to_writer: Mutex::new(Some(to_writer)),
                queued,
                losses,
                ended: Mutex::new(ended),
            }),
        })
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
        let sent = lock(&shared.to_writer)
            .as_ref()
            .is_some_and(|to| to.send(Message::Line(line)).is_ok());
        if !sent {
            shared.queued.fetch_sub(bytes, Ordering::Relaxed);
            shared.losses.lost(LogLoss::Closed, 1);
        }
    }

    /// Asks the writer to write out the lines handed over so far to the file open now,
    /// then to open the path again (creating it if it was renamed away). If the path
    /// cannot be opened, that is logged and the file open before is kept.
    pub fn reopen(&self) {
        if let Some(to) = lock(&self.shared.to_writer).as_ref() {
            let _ = to.send(Message::Reopen);
        }
    }

    /// Lets the writer end once it has written what it was handed; does not wait.
    fn stop(&self) {
        lock(&self.shared.to_writer).take();
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
    /// Lines not written yet: written together once a second or when full.
    buffer: Vec<u8>,
    /// Lines in `buffer`.
    lines: u64,
    /// When the oldest line in `buffer` arrived.
    oldest: Option<Instant>,
    /// A write failed and was logged; the next success is logged too.
    failing: bool,
    losses: Arc<dyn LossRecorder>,
    /// Shared with the sender's `queued`: lowered as lines are taken, to bound the queue.
    queued: Arc<AtomicUsize>,
}

impl Writer {
    fn run(mut self, from: &Receiver<Message>) {
        loop {
            let message = match self.oldest {
                None => from.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(oldest) => from.recv_timeout(FLUSH_EVERY.saturating_sub(oldest.elapsed())),
            };
            match message {
                Ok(Message::Line(line)) => {
                    self.queued.fetch_sub(line.len() + 1, Ordering::Relaxed);
                    self.buffer.extend_from_slice(line.as_bytes());
                    self.buffer.push(b'\n');
                    self.lines += 1;
                    let oldest = *self.oldest.get_or_insert_with(Instant::now);
                    if self.buffer.len() >= BUFFER_BYTES || oldest.elapsed() >= FLUSH_EVERY {
                        self.flush();
                    }
                }
                Ok(Message::Reopen) => {
                    self.flush();
                    self.reopen();
                }
                Err(RecvTimeoutError::Timeout) => self.flush(),
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush();
                    return;
                }
            }
        }
    }

    fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let path = self.path.display();
        match self.file.write_all(&self.buffer) {
            Ok(()) => {
                if std::mem::take(&mut self.failing) {
                    tracing::info!(path = %path, "the access log {path} is written again");
                }
            }
            Err(error) => {
                self.losses.lost(LogLoss::Write, self.lines);
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
        self.buffer.clear();
        self.lines = 0;
        self.oldest = None;
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
