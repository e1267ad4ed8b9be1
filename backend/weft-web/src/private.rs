//! Files of the process's own that no root serves under any name: the configuration, the
//! history file and those SQLite keeps beside it, TLS keys, zone files, access logs. The
//! configuration's check refuses a root that holds one (by its path, or a hard link found
//! inside the root), but a hard link made after the check, or a bind mount, gives one a
//! name inside a root that no path says; so a file a request resolves to is compared with
//! them too, as the file it is (device and inode), before anything of it is served.
//!
//! The gateway names the files ([`keep_private`]) at the start and at each reload; which
//! file each path is, is looked up again at most once a second, as a file may be replaced
//! (a configuration written whole and renamed into place, a history file recreated), and
//! every file a path has named stays private for the life of the process.

use std::path::PathBuf;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// How long the files' identities are taken as looked up.
const LOOKED_UP_FOR: Duration = Duration::from_secs(1);

struct Private {
    paths: Vec<PathBuf>,
    /// The device and inode of every file those paths have named since the start, kept
    /// for the life of the process: a configuration edited by rename, a zone rewritten,
    /// a log rotated, a key a reload no longer uses leave their old file with the
    /// secrets it held, under whatever name a root may give it.
    ids: Vec<(u64, u64)>,
    looked_up: Instant,
}

impl Private {
    /// Adds the files `paths` name now to those kept.
    fn look_up(&mut self) {
        use std::os::unix::fs::MetadataExt;
        for meta in self.paths.iter().filter_map(|p| std::fs::metadata(p).ok()) {
            let id = (meta.dev(), meta.ino());
            if !self.ids.contains(&id) {
                self.ids.push(id);
            }
        }
        self.looked_up = Instant::now();
    }
}

static PRIVATE: RwLock<Option<Private>> = RwLock::new(None);

/// Adds `paths` to the process's private files (those named before stay private).
pub fn keep_private(paths: Vec<PathBuf>) {
    let mut private = PRIVATE.write().unwrap_or_else(|e| e.into_inner());
    let private = private.get_or_insert_with(|| Private {
        paths: Vec::new(),
        ids: Vec::new(),
        looked_up: Instant::now(),
    });
    for path in paths {
        if !private.paths.contains(&path) {
            private.paths.push(path);
        }
    }
    private.look_up();
}

/// Whether the file of device `dev` and inode `ino` is one of the private files.
pub(crate) fn is_private(dev: u64, ino: u64) -> bool {
    {
        let private = PRIVATE.read().unwrap_or_else(|e| e.into_inner());
        match &*private {
            None => return false,
            Some(p) if p.looked_up.elapsed() < LOOKED_UP_FOR => return p.ids.contains(&(dev, ino)),
            Some(_) => {}
        }
    }
    let mut private = PRIVATE.write().unwrap_or_else(|e| e.into_inner());
    let Some(p) = private.as_mut() else {
        return false;
    };
    if p.looked_up.elapsed() >= LOOKED_UP_FOR {
        p.look_up();
    }
    p.ids.contains(&(dev, ino))
}

/// Whether the file `meta` describes is one of the private files.
pub(crate) fn is_private_file(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.is_file() && is_private(meta.dev(), meta.ino())
}

/// Whether a line about a request for a private file is logged now: requests are a
/// peer's to make, so at most [`weft::observe::LOG_BURST`] lines a second (`Some` with
/// how many were left out since the last, for its `suppressed` field).
pub(crate) fn log_budget() -> Option<Option<u64>> {
    static TOPIC: std::sync::OnceLock<std::sync::Arc<str>> = std::sync::OnceLock::new();
    let service = TOPIC.get_or_init(|| std::sync::Arc::from("http"));
    weft::observe::log_line_budget(service, "a private file asked for")
}
