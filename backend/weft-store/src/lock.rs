//! One writer per history file: an exclusive advisory lock on `PATH.lock`, held for as
//! long as the writer runs.
//!
//! SQLite serializes transactions, not writers: a second process on the same file would
//! take the first one's open connections and pending chains for what a killed process
//! left (`interrupted`), close them, and the first one's real closes would then
//! lose to those rows. So a store takes this lock before it reads or writes a row, and a
//! second store is refused.
//!
//! Why not SQLite's `locking_mode=EXCLUSIVE` on the writer's connection: it keeps out
//! readers as well (the store's own read pool, `sqlite3` on the file, a backup), and it
//! can only be had while no other connection has the file open. A lock on a file beside
//! the database leaves the database to SQLite: readers never look at it.
//!
//! `flock(2)` locks belong to the open file, so a second store in the same process is
//! refused too, and the kernel lets go when the process ends, however it ends: a
//! `kill -9` leaves no stale lock. The holder writes its process id into the lock file,
//! so a refusal can say who holds it, and clears it when it lets go cleanly.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};
use rustix::io::Errno;

use crate::StoreError;

/// The lock file of the database at `db`: the path of the file it names, through any
/// symlinks (as SQLite opens it, and names its journal), with `.lock` added. So a second
/// writer given a link to a file another holds is refused as one given its own name.
pub(crate) fn lock_path(db: &Path) -> PathBuf {
    let mut path = through_links(db).into_os_string();
    path.push(".lock");
    PathBuf::from(path)
}

/// `db` with each symlink it names replaced by the path it leads to, as many as the
/// kernel follows; `db` itself when it is no link (or none yet).
pub(crate) fn through_links(db: &Path) -> PathBuf {
    let mut path = db.to_owned();
    for _ in 0..40 {
        let Ok(target) = std::fs::read_link(&path) else {
            break;
        };
        path = match path.parent() {
            Some(dir) => dir.join(target),
            None => target,
        };
    }
    path
}

/// Refuses a history file with more than one name (hard links): SQLite keeps a journal
/// beside each name it is opened by, and a writer given another name would take a lock
/// of its own, so two writers could write one file and lose each other's rows.
pub(crate) fn one_name(db: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(db) {
        Ok(meta) if meta.is_file() && meta.nlink() > 1 => Err(StoreError::HardLinked {
            path: db.to_owned(),
            names: meta.nlink(),
        }),
        _ => Ok(()),
    }
}

/// The lock, held until dropped.
#[derive(Debug)]
pub(crate) struct WriterLock {
    /// Held open for its advisory lock: closing it releases the lock. Its modification
    /// time is the writer's heartbeat ([`beat`](Self::beat)): set after a commit, and on
    /// each idle lock check (`renew`), at most every [`BEAT`].
    file: File,
    /// When the process that held the lock before was last seen alive, unix ms: the
    /// heartbeat of one that did not let go of it cleanly (its id still in the file).
    pub(crate) previous_alive_ms: Option<i64>,
    /// When the heartbeat was last set.
    beat_at: std::time::Instant,
    /// The process id is in the file: not when a full disk refused it at first, and the
    /// heartbeat tries again, or a second writer's refusal could not name this one.
    pid_written: bool,
}

/// How often the heartbeat is set: how long before its death a killed process's rows
/// may be closed, at most.
const BEAT: std::time::Duration = std::time::Duration::from_millis(500);

impl WriterLock {
    /// Takes the lock of the database at `db` without waiting, or says who holds it.
    pub(crate) fn acquire(db: &Path) -> Result<WriterLock, StoreError> {
        one_name(db)?;
        let path = lock_path(db);
        let failed = |source: std::io::Error| StoreError::Lock {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(failed)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            // A writer whose lock file was deleted under it holds the deleted one until it
            // takes a new one (within a second): the lock got here keeps it out only then.
            Ok(()) if let Some(holder) = holding_deleted(&path) => {
                return Err(StoreError::InUse {
                    path: db.to_owned(),
                    lock: path.clone(),
                    holder: Some(holder),
                });
            }
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => {
                return Err(StoreError::InUse {
                    path: db.to_owned(),
                    lock: path.clone(),
                    holder: read_pid(&mut file),
                });
            }
            Err(errno) => return Err(failed(errno.into())),
        }
        // A holder that stopped cleanly emptied the file; one that was killed left its id,
        // and its last heartbeat in the file's time.
        let previous_alive_ms = read_pid(&mut file)
            .and_then(|_| file.metadata().ok()?.modified().ok())
            .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|since| i64::try_from(since.as_millis()).ok());
        // The process id only names the holder in another process's refusal: the lock is
        // the `flock`. On a full disk it cannot be written, and the history is then served
        // without being written (see `Store::open_with`), not refused over it.
        let pid_written = match write_pid(&mut file) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(lock = %path.display(), %error, "cannot write the process id into the history file's lock file; holding the lock without it, and trying again with each heartbeat");
                false
            }
        };
        Ok(WriterLock {
            file,
            previous_alive_ms,
            beat_at: std::time::Instant::now(),
            pid_written,
        })
    }

    /// Sets the heartbeat (the lock file's modification time) to now, unless it was set
    /// in the last [`BEAT`]: a process killed now is seen alive until about this moment
    /// (the next holder's `previous_alive_ms`), not only until the last row it wrote.
    pub(crate) fn beat(&mut self) {
        let now = std::time::Instant::now();
        if now.duration_since(self.beat_at) >= BEAT {
            self.beat_at = now;
            if !self.pid_written && write_pid(&mut self.file).is_ok() {
                self.pid_written = true;
                tracing::info!(
                    "wrote the process id into the history file's lock file, which a full disk had refused"
                );
            }
            let _ = self.file.set_modified(std::time::SystemTime::now());
        }
    }

    /// Takes the lock again when its file is no longer at its path (the history files
    /// deleted by hand, `rm weft.db*`, or the lock file replaced): a lock on a file the
    /// path no longer names keeps nobody out, and a second writer would start. Fails,
    /// keeping the old lock, when another process took the new file first.
    pub(crate) fn renew(&mut self, db: &Path) -> Result<(), StoreError> {
        use std::os::unix::fs::MetadataExt;
        let id = |m: std::fs::Metadata| (m.dev(), m.ino());
        let held = self.file.metadata().ok().map(id);
        let there = std::fs::metadata(lock_path(db)).ok().map(id);
        if held.is_some() && held == there {
            self.beat();
            return Ok(());
        }
        let previous_alive_ms = self.previous_alive_ms;
        *self = WriterLock::acquire(db)?;
        self.previous_alive_ms = previous_alive_ms;
        tracing::warn!(
            lock = %lock_path(db).display(),
            "the history file's lock file was deleted or replaced; took the lock again"
        );
        Ok(())
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        // Still held here: nobody else can have written their id yet. Closing the file
        // then releases the lock.
        let _ = self.file.set_len(0);
    }
}

/// Another process that holds open a lock file of this name that was deleted: a writer
/// of the same history file, whose lock no longer keeps anyone out. Read from `/proc`
/// (processes of other users are not seen).
fn holding_deleted(lock: &Path) -> Option<u32> {
    // The kernel names an open file by its absolute path, through the links it followed.
    let dir = match lock.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let lock = dir.canonicalize().ok()?.join(lock.file_name()?);
    let deleted = format!("{} (deleted)", lock.display());
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            if pid == me {
                return None;
            }
            let fds = std::fs::read_dir(entry.path().join("fd")).ok()?;
            fds.flatten()
                .any(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|target| target.as_os_str() == deleted.as_str())
                })
                .then_some(pid)
        })
}

/// Writes this process's id into the lock file, in place of what it held.
fn write_pid(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())
}

/// The process id a holder wrote, if the file holds one.
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// The process that seems to write the database at `db`, read without taking the lock:
/// the id its holder wrote, if a process with that id runs. A hint for tools that must
/// not take the lock (`weft check`); only [`WriterLock::acquire`] decides.
pub(crate) fn writer_pid(db: &Path) -> Option<u32> {
    let mut file = File::open(lock_path(db)).ok()?;
    let pid = read_pid(&mut file)?;
    Path::new("/proc")
        .join(pid.to_string())
        .exists()
        .then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_file_is_refused_naming_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("weft.db");
        let first = WriterLock::acquire(&db).unwrap();
        let me = std::process::id();
        assert_eq!(writer_pid(&db), Some(me));
        match WriterLock::acquire(&db) {
            Err(StoreError::InUse { holder, lock, .. }) => {
                assert_eq!((holder, lock), (Some(me), lock_path(&db)));
            }
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(first);
        assert_eq!(writer_pid(&db), None, "a clean release clears the id");
        let again = WriterLock::acquire(&db).expect("free again");
        drop(again);
    }

    /// A full disk at the start refused the id; the heartbeat writes it once there is
    /// room, so a second writer's refusal names the holder again.
    #[test]
    fn an_id_the_disk_refused_at_first_is_written_by_a_later_heartbeat() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("weft.db");
        let mut lock = WriterLock::acquire(&db).unwrap();
        // As a full disk leaves it: an empty file, the id not written.
        lock.file.set_len(0).unwrap();
        lock.pid_written = false;
        assert_eq!(writer_pid(&db), None);
        lock.beat_at -= BEAT;
        lock.beat();
        assert_eq!(writer_pid(&db), Some(std::process::id()));
        match WriterLock::acquire(&db) {
            Err(StoreError::InUse { holder, .. }) => assert_eq!(holder, Some(std::process::id())),
            other => panic!("expected InUse, got {other:?}"),
        }
    }

    #[test]
    fn a_lock_whose_file_was_deleted_is_taken_again_before_another_writer_can() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("weft.db");
        let mut lock = WriterLock::acquire(&db).unwrap();
        lock.renew(&db).expect("held: nothing to do");
        std::fs::remove_file(lock_path(&db)).unwrap();
        // Held on a file the path no longer names: nobody is kept out...
        let other = WriterLock::acquire(&db).expect("a second writer gets a new file");
        drop(other);
        std::fs::remove_file(lock_path(&db)).unwrap();
        // ... until it is taken again.
        lock.renew(&db).unwrap();
        assert_eq!(writer_pid(&db), Some(std::process::id()));
        assert!(matches!(
            WriterLock::acquire(&db),
            Err(StoreError::InUse { .. })
        ));
        // Another process that took the new file first keeps it.
        std::fs::remove_file(lock_path(&db)).unwrap();
        let first = WriterLock::acquire(&db).unwrap();
        assert!(matches!(lock.renew(&db), Err(StoreError::InUse { .. })));
        drop(first);
    }
}
