//! The reactor profile: where each reactor thread's time went, per callback site, over
//! the last minutes.
//!
//! Every callback the reactor runs (a Deferred step, a delayed call, a protocol method,
//! a task's poll) is timed already for the slow-callback detector; [`record`] adds that
//! time to the site's row in its thread's table. A table is a fixed array of rows keyed
//! by the site's address, interned on first use and never freed, each row a ring of
//! [`BUCKETS`] buckets of [`BUCKET_SECS`] seconds: recording is a probe and two stores,
//! no allocation and no lock. Only the reactor thread writes its table, so a plain load
//! and store count exactly; other threads read [`snapshot`], which may see a bucket
//! mid-update (a profile, not a ledger). Sites beyond [`MAX_SITES`] are counted together
//! as overflow.
//!
//! Calls nest (a delayed call fires a Deferred whose callbacks run inside it), so each
//! call is charged its own time only: a [`Span`] opened before the call collects the
//! time of the calls inside it, and [`Span::exit`] subtracts it. The table also keeps
//! the call with the most own time since the lag probe last looked, so a lag spike
//! names what was running when the reactor fell behind (`take_longest`).

use std::cell::{Cell, OnceCell};
use std::panic::Location;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds per bucket of the time series.
pub const BUCKET_SECS: u64 = 10;
/// Buckets kept per site: fifteen minutes.
pub const BUCKETS: usize = 90;
/// Distinct sites a reactor thread keeps rows for; calls at sites beyond are counted as
/// overflow.
pub const MAX_SITES: usize = 256;
/// Rows probed for a free one before a new site counts as overflow.
const PROBES: usize = 16;

/// What kind of work ran at a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SiteKind {
    /// A Deferred callback or errback.
    Callback,
    /// A delayed call (`call_later`, `LoopingCall`).
    Timer,
    /// A protocol method (`data_received`, ...).
    Protocol,
    /// One poll of an async task, by its spawn site.
    Poll,
}

impl SiteKind {
    /// The label the API and the page show.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Callback => "callback",
            Self::Timer => "timer",
            Self::Protocol => "protocol",
            Self::Poll => "poll",
        }
    }
}

/// Where the reactor ran something: a source line, or a protocol's method.
#[derive(Debug, Clone, Copy)]
pub enum Site {
    /// The line that added the callback, scheduled the call or spawned the task.
    Line(&'static Location<'static>),
    /// A protocol method: its type's name and the method.
    Method {
        /// The protocol's type name.
        type_name: &'static str,
        /// `connection_made`, `data_received`, ...
        method: &'static str,
    },
}

impl Site {
    /// The identity the table is keyed by: addresses of static data, never zero.
    fn key(&self) -> usize {
        match self {
            Self::Line(location) => std::ptr::from_ref(*location) as usize,
            Self::Method { type_name, method } => {
                (type_name.as_ptr() as usize) ^ (method.as_ptr() as usize).rotate_left(29) | 1
            }
        }
    }

    fn same(&self, other: &Site) -> bool {
        match (self, other) {
            (Self::Line(a), Self::Line(b)) => std::ptr::eq(*a, *b),
            (
                Self::Method {
                    type_name: a,
                    method: m,
                },
                Self::Method {
                    type_name: b,
                    method: n,
                },
            ) => std::ptr::eq(*a, *b) && std::ptr::eq(*m, *n),
            _ => false,
        }
    }
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Line(l) => write!(f, "{}:{}", l.file(), l.line()),
            Self::Method { type_name, method } => write!(f, "{type_name}::{method}"),
        }
    }
}

/// One bucket of one row: which bucket number it holds now, and what it counted.
#[derive(Default)]
struct Bucket {
    epoch: AtomicU64,
    count: AtomicU64,
    nanos: AtomicU64,
}

impl Bucket {
    /// Only the owning thread writes, so load-then-store loses nothing.
    #[inline]
    fn add(&self, epoch: u64, nanos: u64) {
        if self.epoch.load(Relaxed) == epoch {
            self.count.store(self.count.load(Relaxed) + 1, Relaxed);
            self.nanos
                .store(self.nanos.load(Relaxed).saturating_add(nanos), Relaxed);
        } else {
            self.count.store(1, Relaxed);
            self.nanos.store(nanos, Relaxed);
            self.epoch.store(epoch, Relaxed);
        }
    }
}

struct Row {
    /// The site's key once claimed; 0 while free.
    key: AtomicUsize,
    /// Set before `key` is published, read by the snapshot.
    site: OnceLock<(Site, SiteKind)>,
    buckets: [Bucket; BUCKETS],
}

impl Default for Row {
    fn default() -> Self {
        Self {
            key: AtomicUsize::new(0),
            site: OnceLock::new(),
            buckets: std::array::from_fn(|_| Bucket::default()),
        }
    }
}

/// One reactor thread's profile.
pub(crate) struct Table {
    rows: Box<[Row]>,
    /// Calls at sites that found no free row, per bucket.
    overflow: [Bucket; BUCKETS],
    /// The current bucket number (unix seconds / `BUCKET_SECS`), advanced by [`tick`].
    epoch: AtomicU64,
    /// The longest call since [`Table::take_longest`] last looked: its nanoseconds and row.
    longest_nanos: AtomicU64,
    longest_row: AtomicUsize,
}

impl Table {
    pub(crate) fn new(now: SystemTime) -> Self {
        let table = Self {
            rows: (0..MAX_SITES).map(|_| Row::default()).collect(),
            overflow: std::array::from_fn(|_| Bucket::default()),
            epoch: AtomicU64::new(0),
            longest_nanos: AtomicU64::new(0),
            longest_row: AtomicUsize::new(usize::MAX),
        };
        table.tick(now);
        table
    }

    pub(crate) fn tick(&self, now: SystemTime) {
        self.epoch.store(epoch_of(now), Relaxed);
    }

    /// The row for `site`, claimed on first use; `None` when the table is full.
    #[inline]
    fn row(&self, site: &Site, kind: SiteKind) -> Option<usize> {
        let key = site.key();
        // Fibonacci hashing of the address: statics sit close together.
        let start = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % MAX_SITES;
        for probe in 0..PROBES {
            let i = (start + probe) % MAX_SITES;
            let row = &self.rows[i];
            match row.key.load(Relaxed) {
                0 => {
                    let _ = row.site.set((*site, kind));
                    row.key.store(key, std::sync::atomic::Ordering::Release);
                    return Some(i);
                }
                k if k == key && row.site.get().is_some_and(|(s, _)| s.same(site)) => {
                    return Some(i);
                }
                _ => {}
            }
        }
        None
    }

    #[cfg(test)]
    pub(crate) fn record(&self, site: Site, kind: SiteKind, elapsed: Duration) {
        self.record_nanos(site, kind, nanos_of(elapsed));
    }

    #[inline]
    fn record_nanos(&self, site: Site, kind: SiteKind, nanos: u64) {
        let epoch = self.epoch.load(Relaxed);
        let slot = (epoch % BUCKETS as u64) as usize;
        match self.row(&site, kind) {
            Some(i) => {
                self.rows[i].buckets[slot].add(epoch, nanos);
                if nanos > self.longest_nanos.load(Relaxed) {
                    self.longest_nanos.store(nanos, Relaxed);
                    self.longest_row.store(i, Relaxed);
                }
            }
            None => self.overflow[slot].add(epoch, nanos),
        }
    }

    /// The longest call since the last look, and forgets it.
    pub(crate) fn take_longest(&self) -> Option<Longest> {
        let nanos = self.longest_nanos.swap(0, Relaxed);
        let row = self.longest_row.swap(usize::MAX, Relaxed);
        let (site, kind) = *self.rows.get(row)?.site.get()?;
        Some(Longest {
            site,
            kind,
            took: Duration::from_nanos(nanos),
        })
    }

    /// Adds this table's rows within the window ending at `now` to `into`.
    fn collect(&self, now: u64, into: &mut Vec<SiteProfile>, overflow: &mut [u64; BUCKETS]) {
        let window = |b: &Bucket| {
            let e = b.epoch.load(Relaxed);
            (e <= now && now - e < BUCKETS as u64).then_some(e)
        };
        let index = |e: u64| (BUCKETS as u64 - 1 - (now - e)) as usize;
        for row in self.rows.iter() {
            let Some(&(site, kind)) = row.site.get() else {
                continue;
            };
            let mut series = [0_u64; BUCKETS];
            let mut counts = [0_u64; BUCKETS];
            let mut any = false;
            for b in &row.buckets {
                if let Some(e) = window(b) {
                    series[index(e)] += b.nanos.load(Relaxed);
                    counts[index(e)] += b.count.load(Relaxed);
                    any = true;
                }
            }
            if !any {
                continue;
            }
            match into
                .iter_mut()
                .find(|p| p.kind == kind && p.site.same(&site))
            {
                Some(p) => p.merge(&series, &counts),
                None => {
                    let mut p = SiteProfile {
                        site,
                        kind,
                        count: 0,
                        busy: Duration::ZERO,
                        series_nanos: vec![0; BUCKETS],
                    };
                    p.merge(&series, &counts);
                    into.push(p);
                }
            }
        }
        for b in &self.overflow {
            if let Some(e) = window(b) {
                overflow[index(e)] += b.count.load(Relaxed);
            }
        }
    }
}

fn nanos_of(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn epoch_of(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / BUCKET_SECS
}

/// The longest call seen between two looks of the lag probe.
#[derive(Debug, Clone, Copy)]
pub struct Longest {
    /// Where it was.
    pub site: Site,
    /// What kind of work it was.
    pub kind: SiteKind,
    /// How long it ran.
    pub took: Duration,
}

/// One site's time over the window.
#[derive(Debug, Clone)]
pub struct SiteProfile {
    /// Where.
    pub site: Site,
    /// What kind of work.
    pub kind: SiteKind,
    /// Calls in the window.
    pub count: u64,
    /// Reactor time they used.
    pub busy: Duration,
    /// Nanoseconds per bucket, oldest first; the last is the current bucket.
    pub series_nanos: Vec<u64>,
}

impl SiteProfile {
    fn merge(&mut self, series: &[u64; BUCKETS], counts: &[u64; BUCKETS]) {
        for (into, n) in self.series_nanos.iter_mut().zip(series) {
            *into += n;
        }
        self.count += counts.iter().sum::<u64>();
        self.busy = Duration::from_nanos(self.series_nanos.iter().sum());
    }
}

/// Every reactor thread's profile over the last [`BUCKETS`] buckets, busiest site first.
#[derive(Debug, Clone)]
pub struct ProfileSnapshot {
    /// The unix second the last (current) bucket starts at.
    pub last_bucket_start: u64,
    /// The sites, busiest first.
    pub sites: Vec<SiteProfile>,
    /// Calls per bucket at sites that found no row (more than [`MAX_SITES`] distinct
    /// sites on one thread).
    pub overflow_calls: Vec<u64>,
}

/// Every live table, for [`snapshot`]; weak so a finished reactor's table goes away.
static TABLES: Mutex<Vec<Weak<Table>>> = Mutex::new(Vec::new());

/// What a reactor thread keeps: its table, and the time of the calls inside the one
/// running now. A field of the thread's [`Context`](crate::context::Context), so a task's
/// poll reaches both with one thread-local access.
pub(crate) struct Local {
    table: OnceCell<Arc<Table>>,
    /// Nanoseconds of calls that ran inside the current span.
    inner: Cell<u64>,
}

impl Local {
    pub(crate) const fn new() -> Self {
        Self {
            table: OnceCell::new(),
            inner: Cell::new(0),
        }
    }
}

/// This thread's profile; `None` once the thread is exiting.
#[inline]
fn try_local<R>(f: impl FnOnce(&Local) -> R) -> Option<R> {
    crate::context::try_with(|c| f(&c.profile))
}

/// Gives this thread a table; the reactor calls it when it is created.
pub(crate) fn install() {
    crate::context::with(|c| {
        c.profile.table.get_or_init(|| {
            let table = Arc::new(Table::new(SystemTime::now()));
            let mut tables = TABLES.lock().unwrap_or_else(|e| e.into_inner());
            tables.retain(|w| w.strong_count() > 0);
            tables.push(Arc::downgrade(&table));
            table
        });
    });
}

fn with_table<R>(f: impl FnOnce(&Table) -> R) -> Option<R> {
    try_local(|l| l.table.get().map(|t| f(t))).flatten()
}

/// A call being timed: opened before it runs, closed with [`exit`](Self::exit).
#[must_use = "a span records its call when it exits"]
#[derive(Debug)]
pub struct Span {
    /// The enclosing span's inner time so far, restored (plus this call) on exit.
    outer_inner: u64,
}

/// Opens a span for a call about to run, so calls inside it are not charged to it too.
#[inline]
pub fn enter() -> Span {
    try_local(|l| Thread(l).enter()).unwrap_or(Span { outer_inner: 0 })
}

impl Span {
    /// Closes the span of a call at `site` that ran for `elapsed` (including what ran
    /// inside it): the call is charged `elapsed` less the time of the calls inside, on
    /// this reactor thread's profile (a thread with no reactor keeps none).
    ///
    /// Cheap enough for every callback and every poll: a probe of a fixed table and a
    /// few stores, no allocation, no lock.
    #[inline]
    pub fn exit(self, site: Site, kind: SiteKind, elapsed: Duration) {
        let nanos = nanos_of(elapsed);
        let _ = try_local(|l| Thread(l).exit(self, site, kind, nanos));
    }
}

/// This thread's profile, looked up once for calls made in a row (a chain's steps):
/// `None` while the thread exits.
#[inline]
pub(crate) fn with_thread<R>(f: impl FnOnce(Option<&Thread>) -> R) -> R {
    let mut f = Some(f);
    match try_local(|l| (f.take().expect("called once"))(Some(&Thread(l)))) {
        Some(r) => r,
        None => (f.take().expect("not called"))(None),
    }
}

/// [`enter`] and [`Span::exit`] on a thread's profile already at hand.
pub(crate) struct Thread<'a>(pub(crate) &'a Local);

impl Thread<'_> {
    /// [`enter`].
    #[inline]
    pub(crate) fn enter(&self) -> Span {
        Span {
            outer_inner: self.0.inner.replace(0),
        }
    }

    /// [`Span::exit`], for a call that ran `nanos`.
    #[inline]
    pub(crate) fn exit(&self, span: Span, site: Site, kind: SiteKind, nanos: u64) {
        let inner = self.0.inner.replace(span.outer_inner.saturating_add(nanos));
        if let Some(table) = self.0.table.get() {
            table.record_nanos(site, kind, nanos.saturating_sub(inner));
        }
    }
}

/// Records a call that was not wrapped in a [`Span`] (nothing timed ran inside it).
#[inline]
pub fn record(site: Site, kind: SiteKind, elapsed: Duration) {
    enter().exit(site, kind, elapsed);
}

/// Moves this thread's table to the bucket of `now`; the lag probe calls it.
pub(crate) fn tick(now: SystemTime) {
    with_table(|t| t.tick(now));
}

/// The longest call on this thread since the last call; the lag probe calls it.
pub(crate) fn take_longest() -> Option<Longest> {
    with_table(Table::take_longest).flatten()
}

/// Every reactor thread's profile over the window ending now.
pub fn snapshot() -> ProfileSnapshot {
    let tables: Vec<Arc<Table>> = TABLES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    snapshot_of(&tables, SystemTime::now())
}

fn snapshot_of(tables: &[Arc<Table>], now: SystemTime) -> ProfileSnapshot {
    let now = epoch_of(now);
    let mut sites = Vec::new();
    let mut overflow = [0_u64; BUCKETS];
    for table in tables {
        table.collect(now, &mut sites, &mut overflow);
    }
    sites.sort_by(|a, b| b.busy.cmp(&a.busy).then(b.count.cmp(&a.count)));
    ProfileSnapshot {
        last_bucket_start: now * BUCKET_SECS,
        sites,
        overflow_calls: overflow.to_vec(),
    }
}

#[cfg(test)]
#[path = "profile_tests.rs"]
mod tests;
