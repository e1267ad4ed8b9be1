//! Coordination through Deferreds: `DeferredLock`, `DeferredSemaphore`, `DeferredQueue`.
//!
//! Waiters are Deferreds in a FIFO; cancelling one removes it from the line. A guard
//! releases its token when dropped, so a token cannot be released twice. Each records who
//! holds and who waits for the wait-for graph ([`waits`](super::waits)).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::panic::Location;
use std::rc::{Rc, Weak};

use super::core::Core;
use super::deferred::pair_from;
use super::events::DeferredId;
use super::waits::{self, Cores, LockKind, LockWaits, Waitable, Watched};
use super::{CallbackResult, Deferred, QueueOverflow, QueueUnderflow, Resolver, maybe_deferred};

/// Creates a waiter whose cancellation takes it out of `line`.
fn waiter<T: 'static>(
    site: &'static Location<'static>,
    line: Weak<RefCell<VecDeque<Resolver<T>>>>,
) -> (Resolver<T>, Deferred<T>) {
    let core = Core::new(site, None, None);
    let id: DeferredId = core.id;
    core.set_canceller(Box::new(move || {
        if let Some(line) = line.upgrade() {
            let removed: VecDeque<Resolver<T>> = {
                let mut line = line.borrow_mut();
                let (out, keep): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut *line)
                    .into_iter()
                    .partition(|r| r.id() == id);
                *line = keep;
                out
            };
            drop(removed); // cancelling: not a leak
            waits::changed();
        }
    }));
    pair_from(core)
}

/// Pops the first waiter that has not been fired (by cancellation) meanwhile, nor given
/// up on: a waiter whose Deferred was dropped with nothing waiting on it (a `get` in a
/// `select!` that timed out) would take an item nobody sees; it is cancelled, quietly.
fn next_waiter<T: 'static>(line: &RefCell<VecDeque<Resolver<T>>>) -> Option<Resolver<T>> {
    loop {
        let r = line.borrow_mut().pop_front()?;
        if r.is_called() {
            continue;
        }
        if r.core().abandoned() {
            r.core().clone().abandon(Location::caller());
            continue;
        }
        return Some(r);
    }
}

/// Takes the waiters given up on out of `line` (see [`next_waiter`]), so they hold no
/// place in a backlog.
fn prune<T: 'static>(line: &RefCell<VecDeque<Resolver<T>>>) {
    let gone: VecDeque<Resolver<T>> = {
        let mut line = line.borrow_mut();
        if !line.iter().any(|r| r.core().abandoned()) {
            return;
        }
        let (gone, keep) = std::mem::take(&mut *line)
            .into_iter()
            .partition(|r| r.core().abandoned());
        *line = keep;
        gone
    };
    for r in gone {
        r.core().clone().abandon(Location::caller());
    }
}

struct SemaphoreInner {
    /// Its identity and holders, for the wait-for graph.
    watched: Watched,
    /// Tokens free now; an acquire waits when it is zero.
    tokens: Cell<usize>,
    /// The tokens a semaphore starts with, reported by `limit()`.
    limit: usize,
    /// Shared (weakly) with each waiter's canceller, which removes the waiter when its Deferred is
    /// cancelled.
    waiting: Rc<RefCell<VecDeque<Resolver<SemaphoreGuard>>>>,
}

/// Lets at most `tokens` holders run at once (Twisted's `DeferredSemaphore`).
///
/// ```
/// use weft::defer::DeferredSemaphore;
///
/// let sem = DeferredSemaphore::new(1);
/// let mut first = sem.acquire();
/// let mut second = sem.acquire();
/// let guard = first.try_take().unwrap().unwrap();
/// assert!(second.try_take().is_none());
/// drop(guard); // releases: the second acquirer gets the token
/// assert!(second.try_take().is_some());
/// ```
#[derive(Clone)]
pub struct DeferredSemaphore {
    inner: Rc<SemaphoreInner>,
}

/// A token of a [`DeferredSemaphore`] (or the [`DeferredLock`]); released on drop.
#[must_use = "the token is released when the guard drops"]
pub struct SemaphoreGuard {
    inner: Rc<SemaphoreInner>,
    /// Its holder record in the wait-for graph.
    token: u64,
}

/// The guard of a [`DeferredLock`].
pub type LockGuard = SemaphoreGuard;

impl DeferredSemaphore {
    /// A semaphore with `tokens` tokens.
    ///
    /// # Panics
    /// When `tokens` is zero: nobody could ever acquire it.
    #[track_caller]
    pub fn new(tokens: usize) -> Self {
        Self::with(tokens, LockKind::Semaphore, None, Location::caller())
    }

    /// A semaphore named `label` in the wait-for graph.
    ///
    /// # Panics
    /// When `tokens` is zero.
    #[track_caller]
    pub fn labeled(tokens: usize, label: &'static str) -> Self {
        Self::with(tokens, LockKind::Semaphore, Some(label), Location::caller())
    }

    fn with(
        tokens: usize,
        kind: LockKind,
        label: Option<&'static str>,
        site: &'static Location<'static>,
    ) -> Self {
        assert!(tokens > 0, "a DeferredSemaphore needs at least one token");
        Self {
            inner: Rc::new(SemaphoreInner {
                watched: Watched::new(kind, label, site, tokens),
                tokens: Cell::new(tokens),
                limit: tokens,
                waiting: Rc::default(),
            }),
        }
    }

    /// Its id in the wait-for graph.
    pub fn id(&self) -> u64 {
        self.inner.watched.id()
    }

    /// Tokens free now.
    pub fn tokens(&self) -> usize {
        self.inner.tokens.get()
    }

    /// The number of tokens it was created with.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Acquirers waiting for a token.
    pub fn waiting(&self) -> usize {
        self.inner.waiting.borrow().len()
    }

    /// A Deferred that fires with a token when one is free; cancelling it gives up the
    /// place in line.
    #[track_caller]
    pub fn acquire(&self) -> Deferred<SemaphoreGuard> {
        let site = Location::caller();
        let free = self.inner.tokens.get();
        if free > 0 {
            self.inner.tokens.set(free - 1);
            let core = Core::new(site, None, None);
            let token = self.inner.watched.held_by(&core);
            let (r, d) = pair_from(core);
            r.callback(SemaphoreGuard {
                inner: self.inner.clone(),
                token,
            });
            return d;
        }
        let (r, d) = waiter(site, Rc::downgrade(&self.inner.waiting));
        self.inner.waiting.borrow_mut().push_back(r);
        let weak = Rc::downgrade(&self.inner);
        self.inner
            .watched
            .contended(move || weak as Weak<dyn Waitable>);
        d
    }

    /// Acquires, runs `f`, and releases when its result (or its Deferred) arrives
    /// (Twisted's `run`).
    #[track_caller]
    pub fn run<U: 'static, R: CallbackResult<U>>(
        &self,
        f: impl FnOnce() -> R + 'static,
    ) -> Deferred<U> {
        self.acquire().and_then(move |guard| {
            maybe_deferred(f).add_both(move |result| {
                drop(guard);
                result
            })
        })
    }
}

impl Drop for SemaphoreGuard {
    fn drop(&mut self) {
        self.inner.watched.released(self.token);
        match next_waiter(&self.inner.waiting) {
            Some(next) => {
                let token = self.inner.watched.held_by(next.core());
                next.callback(SemaphoreGuard {
                    inner: self.inner.clone(),
                    token,
                });
            }
            None => self.inner.tokens.set(self.inner.tokens.get() + 1),
        }
    }
}

impl Waitable for SemaphoreInner {
    fn watched(&self) -> &Watched {
        &self.watched
    }

    fn has_waiters(&self) -> bool {
        !self.waiting.borrow().is_empty()
    }

    fn describe(&self, cores: &Cores) -> LockWaits {
        let waiters = line(&self.waiting, cores);
        self.watched.describe(Some(self.limit), waiters, cores)
    }
}

/// The parties waiting in a line, first first.
fn line<T: 'static>(waiting: &RefCell<VecDeque<Resolver<T>>>, cores: &Cores) -> Vec<waits::Party> {
    waiting
        .borrow()
        .iter()
        .filter(|r| !r.is_called())
        .map(|r| waits::waiter_party(r.core(), cores))
        .collect()
}

impl fmt::Debug for DeferredSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeferredSemaphore")
            .field("tokens", &self.tokens())
            .field("limit", &self.limit())
            .field("waiting", &self.waiting())
            .finish()
    }
}

impl fmt::Debug for SemaphoreGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SemaphoreGuard")
    }
}

/// A lock whose acquisition is a Deferred (Twisted's `DeferredLock`).
#[derive(Clone, Debug)]
pub struct DeferredLock {
    sem: DeferredSemaphore,
}

impl Default for DeferredLock {
    #[track_caller]
    fn default() -> Self {
        Self::new()
    }
}

impl DeferredLock {
    /// An unlocked lock.
    #[track_caller]
    pub fn new() -> Self {
        Self {
            sem: DeferredSemaphore::with(1, LockKind::Lock, None, Location::caller()),
        }
    }

    /// An unlocked lock named `label` in the wait-for graph.
    #[track_caller]
    pub fn labeled(label: &'static str) -> Self {
        Self {
            sem: DeferredSemaphore::with(1, LockKind::Lock, Some(label), Location::caller()),
        }
    }

    /// Its id in the wait-for graph.
    pub fn id(&self) -> u64 {
        self.sem.id()
    }

    /// Whether someone holds it.
    pub fn locked(&self) -> bool {
        self.sem.tokens() == 0
    }

    /// A Deferred that fires with the lock's guard when it is free. The lock is held
    /// while the guard lives (there is no `release`): `acquire().add_callback(work)`
    /// written as in Twisted drops the guard when `work` returns, before a Deferred it
    /// returned fires. Use [`run`](Self::run) for that, or move the guard into the
    /// work's last callback.
    #[track_caller]
    pub fn acquire(&self) -> Deferred<LockGuard> {
        self.sem.acquire()
    }

    /// Runs `f` under the lock, released when its result arrives.
    #[track_caller]
    pub fn run<U: 'static, R: CallbackResult<U>>(
        &self,
        f: impl FnOnce() -> R + 'static,
    ) -> Deferred<U> {
        self.sem.run(f)
    }
}

struct QueueInner<T: 'static> {
    /// Its identity, for the wait-for graph (a queue has no holders).
    watched: Watched,
    /// At most this many items queued; a `put` beyond fails with an overflow.
    size: Option<usize>,
    /// At most this many `get`s waiting; one beyond fails with an underflow.
    backlog: Option<usize>,
    items: RefCell<VecDeque<T>>,
    /// Shared (weakly) with each waiter's canceller, which removes the waiter when its Deferred is
    /// cancelled.
    waiting: Rc<RefCell<VecDeque<Resolver<T>>>>,
}

/// A queue whose `get` is a Deferred (Twisted's `DeferredQueue`).
///
/// `size` bounds the items held ([`QueueOverflow`] on `put`), `backlog` the gets
/// waiting ([`QueueUnderflow`] on `get`); `None` means unbounded.
///
/// ```
/// use weft::defer::DeferredQueue;
///
/// let q = DeferredQueue::new(Some(1), None);
/// let mut got = q.get().unwrap();
/// q.put("a").unwrap();
/// assert_eq!(got.try_take().unwrap().unwrap(), "a");
/// q.put("b").unwrap();
/// assert!(q.put("c").is_err()); // full
/// ```
pub struct DeferredQueue<T: 'static> {
    inner: Rc<QueueInner<T>>,
}

impl<T: 'static> Clone for DeferredQueue<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T: 'static> DeferredQueue<T> {
    /// A queue holding at most `size` items with at most `backlog` waiting gets.
    #[track_caller]
    pub fn new(size: Option<usize>, backlog: Option<usize>) -> Self {
        Self::with(size, backlog, None, Location::caller())
    }

    /// A queue named `label` in the wait-for graph.
    #[track_caller]
    pub fn labeled(size: Option<usize>, backlog: Option<usize>, label: &'static str) -> Self {
        Self::with(size, backlog, Some(label), Location::caller())
    }

    fn with(
        size: Option<usize>,
        backlog: Option<usize>,
        label: Option<&'static str>,
        site: &'static Location<'static>,
    ) -> Self {
        Self {
            inner: Rc::new(QueueInner {
                watched: Watched::new(LockKind::Queue, label, site, 0),
                size,
                backlog,
                items: RefCell::default(),
                waiting: Rc::default(),
            }),
        }
    }

    /// Its id in the wait-for graph.
    pub fn id(&self) -> u64 {
        self.inner.watched.id()
    }

    /// Items held.
    pub fn len(&self) -> usize {
        self.inner.items.borrow().len()
    }

    /// Whether no items are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Gets waiting for an item.
    pub fn waiting(&self) -> usize {
        self.inner.waiting.borrow().len()
    }

    /// Hands `item` to the oldest waiting get, or holds it; [`QueueOverflow`], which
    /// hands the item back, when the queue is full.
    pub fn put(&self, item: T) -> Result<(), QueueOverflow<T>> {
        if let Some(waiter) = next_waiter(&self.inner.waiting) {
            waiter.callback(item);
            self.inner.watched.changed();
            return Ok(());
        }
        let mut items = self.inner.items.borrow_mut();
        if let Some(size) = self.inner.size
            && items.len() >= size
        {
            return Err(QueueOverflow { size, item });
        }
        items.push_back(item);
        Ok(())
    }

    /// A Deferred for the next item; [`QueueUnderflow`] when too many gets already wait.
    /// Cancelling the Deferred gives up its place.
    #[track_caller]
    pub fn get(&self) -> Result<Deferred<T>, QueueUnderflow> {
        let site = Location::caller();
        let item = self.inner.items.borrow_mut().pop_front();
        if let Some(item) = item {
            let (r, d) = pair_from(Core::new(site, None, None));
            r.callback(item);
            return Ok(d);
        }
        if let Some(backlog) = self.inner.backlog {
            prune(&self.inner.waiting);
            if self.waiting() >= backlog {
                return Err(QueueUnderflow { backlog });
            }
        }
        let (r, d) = waiter(site, Rc::downgrade(&self.inner.waiting));
        self.inner.waiting.borrow_mut().push_back(r);
        let weak = Rc::downgrade(&self.inner);
        self.inner
            .watched
            .contended(move || weak as Weak<dyn Waitable>);
        Ok(d)
    }
}

impl<T: 'static> Waitable for QueueInner<T> {
    fn watched(&self) -> &Watched {
        &self.watched
    }

    fn has_waiters(&self) -> bool {
        !self.waiting.borrow().is_empty()
    }

    fn describe(&self, cores: &Cores) -> LockWaits {
        let waiters = line(&self.waiting, cores);
        self.watched.describe(None, waiters, cores)
    }
}

impl<T: 'static> fmt::Debug for DeferredQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeferredQueue")
            .field("items", &self.len())
            .field("waiting", &self.waiting())
            .field("size", &self.inner.size)
            .field("backlog", &self.inner.backlog)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::defer::{CancelledError, Failure};

    #[test]
    fn a_lock_serves_acquirers_in_order_and_releases_on_drop() {
        let lock = DeferredLock::new();
        let mut first = lock.acquire();
        let mut second = lock.acquire();
        let mut third = lock.acquire();
        assert!(lock.locked());
        let guard = first.try_take().unwrap().unwrap();
        assert!(second.try_take().is_none());
        third.cancel();
        assert!(
            third
                .try_take()
                .unwrap()
                .unwrap_err()
                .check::<CancelledError>()
        );
        drop(guard);
        let guard = second.try_take().unwrap().unwrap();
        drop(guard);
        assert!(!lock.locked(), "the cancelled acquirer gave up its place");
    }

    #[test]
    fn run_holds_the_lock_until_the_functions_deferred_fires() {
        let lock = DeferredLock::new();
        let (r, inner) = Deferred::<u32>::new();
        let mut ran = lock.run(move || inner);
        assert!(lock.locked());
        let log = Rc::new(RefCell::new(Vec::new()));
        let l = log.clone();
        let mut next = lock.run(move || {
            l.borrow_mut().push("second");
            Ok::<_, Failure>(2)
        });
        assert!(log.borrow().is_empty());
        r.callback(1);
        assert_eq!(ran.try_take().unwrap().unwrap(), 1);
        assert_eq!(next.try_take().unwrap().unwrap(), 2);
        assert!(!lock.locked());
    }

    #[test]
    fn a_semaphore_lets_tokens_holders_in_at_once() {
        let sem = DeferredSemaphore::new(2);
        let mut a = sem.acquire();
        let mut b = sem.acquire();
        let mut c = sem.acquire();
        assert_eq!((sem.tokens(), sem.waiting()), (0, 1));
        let ga = a.try_take().unwrap().unwrap();
        let _gb = b.try_take().unwrap().unwrap();
        assert!(c.try_take().is_none());
        drop(ga);
        assert!(c.try_take().is_some());
        assert_eq!(sem.limit(), 2);
    }

    #[test]
    fn a_queue_hands_items_to_waiting_gets_first() {
        let q = DeferredQueue::new(None, None);
        let mut first = q.get().unwrap();
        let mut second = q.get().unwrap();
        q.put(1).unwrap();
        q.put(2).unwrap();
        q.put(3).unwrap();
        assert_eq!(first.try_take().unwrap().unwrap(), 1);
        assert_eq!(second.try_take().unwrap().unwrap(), 2);
        assert_eq!(q.len(), 1);
        assert_eq!(q.get().unwrap().try_take().unwrap().unwrap(), 3);
        assert!(q.is_empty());
    }

    #[test]
    fn a_full_queue_overflows_and_a_long_backlog_underflows() {
        let q = DeferredQueue::new(Some(2), Some(1));
        q.put('a').unwrap();
        q.put('b').unwrap();
        let full = q.put('c').unwrap_err();
        assert_eq!(full.size, 2);
        assert_eq!(full.into_item(), 'c', "the item not taken is handed back");
        let q = DeferredQueue::<char>::new(Some(2), Some(1));
        let waiting = q.get().unwrap();
        assert_eq!(q.get().unwrap_err(), QueueUnderflow { backlog: 1 });
        waiting.cancel();
        assert_eq!(q.waiting(), 0, "a cancelled get leaves the line");
        let _again = q.get().unwrap();
        drop(waiting);
    }

    #[test]
    fn a_cancelled_get_does_not_swallow_an_item() {
        let q = DeferredQueue::new(None, None);
        let cancelled = q.get().unwrap();
        let mut live = q.get().unwrap();
        cancelled.cancel();
        q.put(5).unwrap();
        assert_eq!(live.try_take().unwrap().unwrap(), 5);
        drop(cancelled);
    }

    /// A get given up on (its Deferred dropped with nothing waiting on it: a `select!`
    /// whose timeout won) neither swallows the next item nor holds a place in the
    /// backlog, and is neither a leak nor an unhandled failure. One whose Deferred a
    /// callback waits on still gets its item.
    #[test]
    fn a_get_given_up_on_takes_no_item_and_no_place() {
        let rec = crate::testing::RecordingObserver::new();
        crate::observe::set_observer(Some(rec.clone()));
        let q = DeferredQueue::new(None, Some(1));
        drop(q.get().unwrap());
        let mut live = q.get().expect("no place held by the dropped get");
        q.put(5).unwrap();
        assert_eq!(live.try_take().unwrap().unwrap(), 5);

        let seen = Rc::new(RefCell::new(None));
        let into = seen.clone();
        drop(
            q.get()
                .unwrap()
                .add_callback(move |n| *into.borrow_mut() = Some(n)),
        );
        q.put(6).unwrap();
        assert_eq!(*seen.borrow(), Some(6), "a callback still waits on it");
        let events = rec.events();
        crate::observe::set_observer(None);
        assert!(
            !events
                .iter()
                .any(|e| e.contains("Leaked") || e.contains("Unhandled")),
            "{events:#?}"
        );
    }
}
