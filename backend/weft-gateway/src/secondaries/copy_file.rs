//! The file a secondary zone's copy is kept in: written whole (through a partial file
//! of its own, synced and renamed into place), and its modification time, which says when
//! a primary last confirmed the copy.

use std::path::Path;
use std::time::SystemTime;

/// Writes `bytes` to `file` through a file beside it, synced and renamed into place,
/// so a reader (a reload, a restart, a power cut) finds the old copy or the new one,
/// whole. The file beside it is this write's own (a write a stopped task finishes never
/// shares it with its successor's).
pub(super) fn write_whole(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    static WRITES: AtomicU64 = AtomicU64::new(0);
    // A symlink is written through: the file it leads to is replaced, the link kept.
    let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_owned());
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    remove_partials(&file);
    let mut partial = file.as_os_str().to_owned();
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    partial.push(format!(".{}.{n}.partial", std::process::id()));
    let partial = std::path::PathBuf::from(partial);
    let written = std::fs::File::create(&partial).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    let renamed = written.and_then(|()| std::fs::rename(&partial, &file));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    renamed?;
    sync_dir_of(&file)
}

/// Syncs the directory holding `path`, so a file made, renamed or removed there stays so
/// after a power cut.
fn sync_dir_of(path: &Path) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    std::fs::File::open(dir.unwrap_or(Path::new("."))).and_then(|d| d.sync_all())
}

/// Removes the partial files of `file` another process left (killed while it wrote):
/// `FILE.PID.N.partial`, of a PID other than this one's (this process's own are its
/// writes under way).
fn remove_partials(file: &Path) {
    let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let entry_name = entry.file_name();
        // `.PID.N.partial` after the file's name, as `write_whole` names them.
        let pid = entry_name
            .to_str()
            .and_then(|n| n.strip_prefix(name.to_str()?))
            .and_then(|rest| rest.strip_prefix('.')?.strip_suffix(".partial"))
            .and_then(|rest| rest.split_once('.'))
            .filter(|(_, n)| n.parse::<u64>().is_ok())
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        if pid.is_some_and(|pid| pid != std::process::id()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The serial of the copy in `file`, read from its first lines (its SOA follows its
/// comment); `None` when there is no copy or its beginning is not a copy's.
fn copy_serial(file: &Path) -> std::io::Result<Option<u32>> {
    use std::io::Read as _;
    let mut head = Vec::with_capacity(4096);
    match std::fs::File::open(file) {
        Ok(f) => f.take(4096).read_to_end(&mut head)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(weft_names::transfer::journal::copy_serial(
        &String::from_utf8_lossy(&head),
    ))
}

/// Appends `entry`, the journal's entry of an IXFR from serial `held` (the zone served
/// now), to the journal of the copy in `file` (of zone `origin`), synced: `Ok(true)`.
/// `Ok(false)` when the copy is to be written whole instead: copy and journal together
/// are not at `held` (the journal follows another serial of the copy, or ends at
/// another; with none, the copy is not at `held`), the journal is not one of the zone
/// (never written over), or it would grow past a quarter of the copy's size, where
/// reading it at a start costs more than it saved. An entry a killed process cut short
/// is cut off first.
pub(super) fn append_journal(
    file: &Path,
    origin: &hickory_proto::rr::Name,
    held: u32,
    entry: &str,
) -> std::io::Result<bool> {
    use std::io::{Seek as _, Write as _};
    use weft_names::transfer::journal::{self, State};
    let (Some(copy), Ok(meta)) = (copy_serial(file)?, std::fs::metadata(file)) else {
        return Ok(false);
    };
    let most = meta.len() / 4;
    let path = journal::path_of(file);
    let in_the_way = |what: &str| {
        tracing::warn!(journal = %path.display(), "{what}: never written over; the copy is written whole at each change");
        Ok(false)
    };
    // Written only in the copy's own directory: a symlink there is not followed.
    let found = match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_symlink() => return in_the_way("a symlink"),
        Ok(meta) if !meta.is_file() => return in_the_way("not a regular file"),
        Ok(meta) => Some(meta.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    // None, or made and never written (a kill between the two): begun here.
    if found.is_none_or(|len| len == 0) {
        if copy != held {
            return Ok(false);
        }
        let mut text = journal::header(origin, held);
        text.push_str(entry);
        if text.len() as u64 > most {
            return Ok(false);
        }
        let mut f = std::fs::File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        return sync_dir_of(&path).map(|()| true);
    }
    if found.is_some_and(|len| len > most) {
        return Ok(false);
    }
    let mut journal = std::fs::File::options()
        .read(true)
        .write(true)
        .open(&path)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut journal, &mut bytes)?;
    let (text, _) = journal::text_of(&bytes);
    let len = match journal::state(text, origin) {
        State::Journal { base, last, len } if base == copy && last == held => len,
        State::Journal { .. } => return Ok(false),
        State::Foreign => return in_the_way("not a journal of the zone"),
    };
    if (len + entry.len()) as u64 > most {
        return Ok(false);
    }
    journal.set_len(len as u64)?;
    journal.seek(std::io::SeekFrom::Start(len as u64))?;
    journal.write_all(entry.as_bytes())?;
    journal.sync_data()?;
    Ok(true)
}

/// Removes the journal of the copy in `file` (of zone `origin`), the copy written whole
/// since; a file there that is not a journal of the zone is left alone.
pub(super) fn remove_journal(file: &Path, origin: &hickory_proto::rr::Name) {
    use std::io::BufRead as _;
    use weft_names::transfer::journal;
    let path = journal::path_of(file);
    let mut first = String::new();
    let read = std::fs::File::open(&path)
        .map(std::io::BufReader::new)
        .and_then(|mut f| f.read_line(&mut first));
    if read.is_ok()
        && journal::state(&first, origin) != journal::State::Foreign
        && std::fs::remove_file(&path).is_ok()
    {
        // Gone for good before the copy's next change: one left by a power cut would
        // be left out at the next start (it follows an older serial of the copy).
        let _ = sync_dir_of(&path);
    }
}

/// When `file` was last modified: when a primary last confirmed the copy it holds.
pub(super) fn modified(file: &Path) -> Option<SystemTime> {
    std::fs::metadata(file).and_then(|m| m.modified()).ok()
}

/// Marks `file` confirmed now (its modification time).
pub(super) fn touch(file: &Path) {
    let touched = std::fs::File::options()
        .append(true)
        .open(file)
        .and_then(|f| f.set_modified(SystemTime::now()));
    if let Err(error) = touched {
        tracing::warn!(file = %file.display(), %error, "cannot mark the zone's copy confirmed (its modification time): a restart may find it expired");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_written_whole_through_a_symlink_and_partial_files_left_by_a_kill_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real.zone");
        let link = dir.path().join("link.zone");
        std::fs::write(&target, "old").unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let left = dir.path().join("real.zone.4242.7.partial");
        let ours = dir
            .path()
            .join(format!("real.zone.{}.1.partial", std::process::id()));
        let others = [
            dir.path().join("real.zone.x.partial"),
            dir.path().join("other.zone.4242.7.partial"),
        ];
        for f in [&left, &ours].into_iter().chain(&others) {
            std::fs::write(f, "").unwrap();
        }
        write_whole(&link, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink(),
            "the link kept"
        );
        assert!(!left.exists(), "another process's partial file removed");
        assert!(ours.exists(), "this process's own left alone");
        assert!(
            others.iter().all(|f| f.exists()),
            "files not ours left alone"
        );
    }
}
