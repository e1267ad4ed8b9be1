//! What a request path led to, kept so a hot file costs at most one `stat` instead of
//! the path walk, the open and the read.
//!
//! A lookup that found a file or a directory under the root is kept under the request
//! path, with the file's bytes once they have been read (files up to [`HOLD_MAX`]). A
//! later request for that path revalidates it with one `stat` of the same joined path:
//! when the file's identity and version (device, inode, size, and modification and
//! status-change times to the nanosecond) are what they were, the kept path, facts and
//! bytes are used; anything else (a write, a rename over it, a symlink changed to lead
//! elsewhere, a removal) and the path is resolved afresh, as it would have been without
//! the cache.
//!
//! A path is revalidated by every request unless it is hot: requested at least
//! [`HOT_REQUESTS`] times within the last [`REVALIDATE_EVERY`], and its answer whole in
//! memory (a directory, or a file whose bytes are kept). A hot path is
//! revalidated once per [`REVALIDATE_EVERY`], by the first request after that much time
//! since the last `stat`: under load a change on disk is seen by every request that
//! starts that long after it, and a path asked for now and then (a page being edited and
//! reloaded) sees a change by the very next request. The `stat` that would otherwise be
//! made per request is most of the cost of a kept 1 KiB file.
//!
//! The status-change time (ctime) is set by the kernel on every write and cannot be set
//! back, so a file rewritten in place with its size and modification time restored (`cp
//! -p`) is still seen to have changed. Timestamps have a coarse granularity, though: a
//! write in the same tick as the read before it could leave them all as they were. So a
//! file's bytes are kept only once its ctime is [`SETTLED`] in the past (as git does
//! for its index); a file changed just now is read on every request until then.
//!
//! Paths that lead nowhere are not kept (a scan of random paths cannot fill the cache).
//! The cache is bounded in entries ([`MAX_ENTRIES`]) and bytes ([`MAX_BYTES`], kept file
//! contents and paths); over either bound the entries kept longest are dropped first.

use std::collections::{HashMap, VecDeque};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::Facts;
use crate::path::{PathError, Resolved, resolve, segments};

/// Entries kept at most, per service.
pub(crate) const MAX_ENTRIES: usize = 1024;

/// Bytes kept at most, per service: file contents and the paths that lead to them.
pub(crate) const MAX_BYTES: usize = 32 * 1024 * 1024;

/// Files up to this size are kept in memory once read.
pub(crate) const HOLD_MAX: u64 = 1024 * 1024;

/// How long ago a file's last change must be for its bytes to be kept.
pub(crate) const SETTLED: Duration = Duration::from_secs(1);

/// How long a hot path goes without a `stat`: a change on disk is seen by every request
/// that starts this long after it.
pub const REVALIDATE_EVERY: Duration = Duration::from_millis(10);

/// Requests within one [`REVALIDATE_EVERY`] that make a path hot.
pub const HOT_REQUESTS: u32 = 16;

/// A file's identity and version: when any of it changes, the file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
    ctime: i64,
    ctime_nsec: i64,
    dir: bool,
}

impl Stamp {
    /// The length it was found with.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Whether it is a directory.
    pub(crate) fn is_dir(&self) -> bool {
        self.dir
    }

    pub(crate) fn of(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
            dir: meta.is_dir(),
        }
    }

    /// Whether the last change is at least [`SETTLED`] before `now`.
    fn settled(&self, now: SystemTime) -> bool {
        let changed = u64::try_from(self.ctime).map_or(UNIX_EPOCH, |secs| {
            UNIX_EPOCH + Duration::new(secs, u32::try_from(self.ctime_nsec).unwrap_or(0))
        });
        now.duration_since(changed).is_ok_and(|ago| ago >= SETTLED)
    }
}

/// What a lookup found: the canonical path (shared with the cache, not copied), its
/// stamp (whether it is a directory, its length), a file's header facts, and its bytes
/// when they are kept.
pub(crate) struct Known {
    pub(crate) path: Arc<Path>,
    /// `None` for anything but a regular file.
    pub(crate) facts: Option<Arc<Facts>>,
    pub(crate) held: Option<Bytes>,
    /// What to give [`Cache::hold`] the bytes with, once read.
    pub(crate) stamp: Stamp,
}

/// The lookups of one root.
#[derive(Default)]
pub(crate) struct Cache {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("Cache")
            .field("entries", &inner.map.len())
            .field("bytes", &inner.bytes)
            .finish()
    }
}

#[derive(Default)]
struct Inner {
    /// Keyed by request path, hashed with foldhash rather than SipHash (a lookup a
    /// request): only paths that lead to a file or directory are kept, as many as the
    /// cache's size allows, and the hasher is seeded at random per map, so a client can
    /// neither grow the map at will nor choose keys that collide.
    map: HashMap<String, Slot, foldhash::fast::RandomState>,
    /// Keys in the order they were (re)filled, with the generation they were filled
    /// at: an item whose generation is no longer its slot's is stale and skipped.
    order: VecDeque<(String, u64)>,
    /// What the slots account for (see [`Slot::size`]).
    bytes: usize,
    generation: u64,
}

struct Slot {
    /// The root joined with the request path's segments, not canonicalized: what a
    /// revalidation `stat`s, so a symlink on the way is followed as the request would.
    joined: PathBuf,
    path: Arc<Path>,
    stamp: Stamp,
    facts: Option<Arc<Facts>>,
    held: Option<Bytes>,
    generation: u64,
    /// When the path was last found to be what the slot says (its last `stat`).
    checked: Instant,
    /// Requests are counted in windows of [`REVALIDATE_EVERY`]: when the current one
    /// began, and how many it has had.
    window_start: Instant,
    in_window: u32,
    /// Whether the window before the current one had [`HOT_REQUESTS`].
    hot: bool,
}

impl Slot {
    /// Whether this lookup, at `now`, may use the slot without a `stat`: the path is hot,
    /// its last check recent, and the answer whole in memory (bytes read from disk now
    /// could be of a newer version than the kept length and tags). Counts the request.
    fn fresh_enough(&mut self, now: Instant) -> bool {
        let window = now.saturating_duration_since(self.window_start);
        if window >= REVALIDATE_EVERY {
            // A window that stretched (no request for a while) says nothing of the rate.
            self.hot = self.in_window >= HOT_REQUESTS && window < 2 * REVALIDATE_EVERY;
            self.window_start = now;
            self.in_window = 0;
        }
        self.in_window = self.in_window.saturating_add(1);
        let hot = self.hot || self.in_window >= HOT_REQUESTS;
        let recent = now.saturating_duration_since(self.checked) < REVALIDATE_EVERY;
        let whole = self.held.is_some() || self.facts.is_none();
        hot && recent && whole
    }

    fn known(&self) -> Known {
        Known {
            path: self.path.clone(),
            facts: self.facts.clone(),
            held: self.held.clone(),
            stamp: self.stamp,
        }
    }

    fn size(&self, key: &str) -> usize {
        key.len()
            + self.joined.as_os_str().len()
            + self.path.as_os_str().len()
            + self.held.as_ref().map_or(0, Bytes::len)
            + self.facts.as_ref().map_or(0, |f| f.size())
    }
}

impl Cache {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What `raw` leads to under the canonical `root`: from memory when a `stat` says the
    /// file is the one kept, else resolved (and kept) as [`resolve`] does.
    pub(crate) fn lookup(&self, root: &Path, raw: &str) -> Result<Known, PathError> {
        let now = Instant::now();
        let kept = {
            let mut inner = self.lock();
            match inner.map.get_mut(raw) {
                Some(slot) => {
                    if slot.fresh_enough(now) {
                        return Ok(slot.known());
                    }
                    Some((slot.joined.clone(), slot.stamp))
                }
                None => None,
            }
        };
        if let Some((joined, stamp)) = kept {
            // Outside the lock: a stat may wait on the disk.
            if let Ok(meta) = std::fs::metadata(&joined)
                && Stamp::of(&meta) == stamp
                && !crate::private::is_private_file(&meta)
            {
                let mut inner = self.lock();
                let inner = &mut *inner;
                if let Some(slot) = inner.map.get_mut(raw)
                    && slot.stamp == stamp
                {
                    slot.checked = now;
                    // A file dated in the future, now past its date: its facts are made
                    // again, with the `Last-Modified` they could not have then.
                    if slot
                        .facts
                        .as_ref()
                        .and_then(|f| f.dated_ahead)
                        .is_some_and(|at| at <= SystemTime::now())
                    {
                        let before = slot.size(raw);
                        slot.facts = Some(Arc::new(Facts::of_disk(&slot.path, &meta)));
                        inner.bytes = inner.bytes.saturating_sub(before) + slot.size(raw);
                    }
                    return Ok(slot.known());
                }
            }
        }
        let Resolved { path, meta } = resolve(root, raw)?;
        let path: Arc<Path> = path.into();
        let mut joined = root.to_path_buf();
        joined.extend(segments(raw)?);
        let stamp = Stamp::of(&meta);
        let facts = meta
            .is_file()
            .then(|| Arc::new(Facts::of_disk(&path, &meta)));
        let slot = Slot {
            joined,
            path: path.clone(),
            stamp,
            facts: facts.clone(),
            held: None,
            generation: 0,
            checked: now,
            window_start: now,
            in_window: 0,
            hot: false,
        };
        self.lock().insert(raw.to_owned(), slot);
        Ok(Known {
            path,
            facts,
            held: None,
            stamp,
        })
    }

    /// Keeps `bytes` as the contents of what `raw` led to, if that is still the version
    /// `stamp` names, it is small enough, and it has settled.
    pub(crate) fn hold(&self, raw: &str, stamp: Stamp, bytes: &Bytes) {
        self.hold_at(raw, stamp, bytes, SystemTime::now());
    }

    /// [`hold`](Self::hold), with the time it is now.
    fn hold_at(&self, raw: &str, stamp: Stamp, bytes: &Bytes, now: SystemTime) {
        let len = bytes.len() as u64;
        if len > HOLD_MAX || len != stamp.len || !stamp.settled(now) {
            return;
        }
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(slot) = inner.map.get_mut(raw) else {
            return;
        };
        if slot.stamp != stamp || slot.held.is_some() {
            return;
        }
        slot.held = Some(bytes.clone());
        inner.bytes += bytes.len();
        inner.shrink();
    }
}

impl Inner {
    fn insert(&mut self, key: String, mut slot: Slot) {
        self.generation += 1;
        slot.generation = self.generation;
        self.bytes += slot.size(&key);
        self.order.push_back((key.clone(), self.generation));
        if let Some(old) = self.map.insert(key.clone(), slot) {
            self.bytes -= old.size(&key);
        }
        self.shrink();
        // Refills leave stale items behind; a path refilled again and again (a file
        // rewritten all the time) must not grow the queue without end.
        if self.order.len() > 2 * MAX_ENTRIES {
            let map = &self.map;
            self.order.retain(|(key, generation)| {
                map.get(key).is_some_and(|s| s.generation == *generation)
            });
        }
    }

    /// Drops the entries kept longest until both bounds hold.
    fn shrink(&mut self) {
        while self.map.len() > MAX_ENTRIES || self.bytes > MAX_BYTES {
            let Some((key, generation)) = self.order.pop_front() else {
                break;
            };
            if self
                .map
                .get(&key)
                .is_some_and(|s| s.generation == generation)
                && let Some(old) = self.map.remove(&key)
            {
                self.bytes -= old.size(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        (dir, root)
    }

    #[test]
    fn a_kept_file_is_revalidated_by_every_lookup() {
        let (_dir, root) = root();
        std::fs::write(root.join("a.txt"), "one").unwrap();
        let cache = Cache::default();
        let first = cache.lookup(&root, "/a.txt").unwrap();
        assert!(first.held.is_none());
        cache.hold("/a.txt", first.stamp, &Bytes::from_static(b"one"));
        let again = cache.lookup(&root, "/a.txt").unwrap();
        assert!(again.held.is_none(), "a file changed just now is not kept");
        let settled = Stamp {
            ctime: again.stamp.ctime - 2,
            ..again.stamp
        };
        cache.lock().map.get_mut("/a.txt").unwrap().stamp = settled;
        cache.hold("/a.txt", settled, &Bytes::from_static(b"one"));
        assert_eq!(
            cache.lock().map["/a.txt"].held.as_deref(),
            Some(&b"one"[..])
        );
        std::fs::write(root.join("a.txt"), "three").unwrap();
        let fresh = cache.lookup(&root, "/a.txt").unwrap();
        assert!(fresh.held.is_none(), "a changed file is read again");
        assert_eq!(fresh.stamp.len(), 5);
        std::fs::remove_file(root.join("a.txt")).unwrap();
        assert_eq!(
            cache.lookup(&root, "/a.txt").err(),
            Some(PathError::NotFound)
        );
    }

    /// Keeps `bytes` for `raw`, as it will be once the file has settled.
    fn hold_settled(cache: &Cache, root: &Path, raw: &str, bytes: &'static [u8]) {
        let known = cache.lookup(root, raw).unwrap();
        let later = SystemTime::now() + 2 * SETTLED;
        cache.hold_at(raw, known.stamp, &Bytes::from_static(bytes), later);
        assert!(cache.lock().map[raw].held.is_some());
    }

    /// As if `time` went by since `raw` was last looked up.
    fn go_by(cache: &Cache, raw: &str, time: Duration) {
        let mut inner = cache.lock();
        let slot = inner.map.get_mut(raw).unwrap();
        slot.checked -= time;
        slot.window_start -= time;
    }

    #[test]
    fn a_hot_path_is_revalidated_once_per_interval() {
        let (_dir, root) = root();
        std::fs::write(root.join("a.txt"), "one").unwrap();
        let cache = Cache::default();
        hold_settled(&cache, &root, "/a.txt", b"one");
        // Hot: its requests come faster than HOT_REQUESTS an interval.
        for _ in 0..HOT_REQUESTS {
            cache.lookup(&root, "/a.txt").unwrap();
        }
        std::fs::write(root.join("a.txt"), "three").unwrap();
        let within = cache.lookup(&root, "/a.txt").unwrap();
        assert_eq!(
            within.held.as_deref(),
            Some(&b"one"[..]),
            "within the interval the kept answer stands"
        );
        // The interval has gone by since the last check: the next lookup sees the change.
        go_by(&cache, "/a.txt", REVALIDATE_EVERY);
        let after = cache.lookup(&root, "/a.txt").unwrap();
        assert!(after.held.is_none(), "a changed file is read again");
        assert_eq!(after.stamp.len(), 5);
    }

    #[test]
    fn a_path_asked_for_now_and_then_is_revalidated_by_every_request() {
        let (_dir, root) = root();
        std::fs::write(root.join("a.txt"), "one").unwrap();
        let cache = Cache::default();
        hold_settled(&cache, &root, "/a.txt", b"one");
        for _ in 0..3 * HOT_REQUESTS {
            // Each request comes an interval after the one before.
            go_by(&cache, "/a.txt", 2 * REVALIDATE_EVERY);
            assert!(cache.lookup(&root, "/a.txt").unwrap().held.is_some());
        }
        std::fs::write(root.join("a.txt"), "three").unwrap();
        assert!(cache.lookup(&root, "/a.txt").unwrap().held.is_none());

        // A hot file whose bytes are not kept (changed just now) is checked every time.
        for _ in 0..2 * HOT_REQUESTS {
            cache.lookup(&root, "/a.txt").unwrap();
        }
        std::fs::write(root.join("a.txt"), "four!!").unwrap();
        assert_eq!(cache.lookup(&root, "/a.txt").unwrap().stamp.len(), 6);
    }

    #[test]
    fn the_cache_holds_its_bounds() {
        let (_dir, root) = root();
        let cache = Cache::default();
        for i in 0..MAX_ENTRIES + 10 {
            std::fs::write(root.join(format!("{i}.txt")), "x").unwrap();
            cache.lookup(&root, &format!("/{i}.txt")).unwrap();
        }
        assert_eq!(cache.lock().map.len(), MAX_ENTRIES);
        assert!(
            !cache.lock().map.contains_key("/0.txt"),
            "the oldest went first"
        );

        let cache = Cache::default();
        let big = Bytes::from(vec![b'x'; usize::try_from(HOLD_MAX).unwrap()]);
        let files = MAX_BYTES / big.len() + 2;
        for i in 0..files {
            let raw = format!("/big{i}.bin");
            std::fs::write(root.join(&raw[1..]), &big).unwrap();
            let known = cache.lookup(&root, &raw).unwrap();
            let settled = Stamp {
                ctime: known.stamp.ctime - 2,
                ..known.stamp
            };
            cache.lock().map.get_mut(&raw).unwrap().stamp = settled;
            cache.hold(&raw, settled, &big);
        }
        {
            let inner = cache.lock();
            assert!(inner.bytes <= MAX_BYTES, "{} bytes kept", inner.bytes);
            let held = inner.map.values().filter(|s| s.held.is_some()).count();
            assert!(held > 0 && held < files, "{held} of {files} held");
        }
        // A path refilled again and again (its file keeps changing) is one entry, and
        // its stale places in the queue are dropped.
        for _ in 0..3 * MAX_ENTRIES {
            if let Some(slot) = cache.lock().map.get_mut("/big0.bin") {
                slot.stamp.len += 1;
            }
            cache.lookup(&root, "/big0.bin").unwrap();
        }
        assert!(cache.lock().order.len() <= 2 * MAX_ENTRIES + 1);
    }
}
