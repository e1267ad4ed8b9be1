//! The wait-for graph of [`DeferredLock`](super::DeferredLock),
//! [`DeferredSemaphore`](super::DeferredSemaphore) and [`DeferredQueue`](super::DeferredQueue):
//! which chains hold each one and which wait on it, and the deadlock detector that finds
//! chains waiting on each other in a cycle.
//!
//! A lock that is only ever taken when free costs its holder record (a slot written in a
//! vector sized once, at most [`MAX_HOLDERS`]) and nothing else: it enters the thread's
//! table of contended locks when the first acquirer has to wait, and leaves it once its
//! line is empty. The stall scan ([`scan_for_stalls`](super::scan_for_stalls)) builds the
//! graph from that table only when it is not empty, reports each new cycle as a
//! [`Deadlock`] per member, and hands the graph to the observer when it changed.
//!
//! Which chain holds or waits: the one whose callback asked for the lock (the acquiring
//! Deferred's parent) while it is pending, else the acquiring Deferred itself (a
//! `lock.run(f)` outside any chain, or a chain that went on without waiting).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::panic::Location;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use super::core::{Core, DEADLOCK_REPORTED};
use super::deadlock::{Deadlock, DeadlockMember, describe_member};
use super::events::{self, DeferredEvent, DeferredId, Site, Subject};
use super::registry;
use crate::observe::ConnectionId;

/// Holders recorded per semaphore; tokens held beyond are counted, not named.
pub const MAX_HOLDERS: usize = 64;

/// What kind of primitive a node of the graph is; serialised as [`as_str`](Self::as_str).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LockKind {
    /// A [`DeferredLock`](super::DeferredLock).
    Lock,
    /// A [`DeferredSemaphore`](super::DeferredSemaphore).
    Semaphore,
    /// A [`DeferredQueue`](super::DeferredQueue): its gets wait for an item.
    Queue,
}

impl LockKind {
    /// The label, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lock => "lock",
            Self::Semaphore => "semaphore",
            Self::Queue => "queue",
        }
    }
}

/// A holder of a token, as recorded when the token was handed out.
#[derive(Clone, Copy)]
pub(crate) struct Hold {
    /// Matches the guard that releases it.
    token: u64,
    /// The chain whose callback asked (the acquiring Deferred's parent), else the acquirer.
    owner: DeferredId,
    /// The acquiring Deferred.
    acquirer: DeferredId,
    /// The `acquire` call.
    at: &'static Location<'static>,
}

/// What every lock, semaphore and queue carries for the graph: its identity, its holders,
/// and whether it is in the thread's table of contended locks.
pub(crate) struct Watched {
    id: u64,
    kind: LockKind,
    label: Option<&'static str>,
    site: &'static Location<'static>,
    /// Tokens held now, up to [`MAX_HOLDERS`]; sized once, so handing out a token allocates
    /// nothing.
    holders: RefCell<Vec<Hold>>,
    /// Tokens held beyond [`MAX_HOLDERS`].
    unrecorded: Cell<usize>,
    next_token: Cell<u64>,
    /// In the thread's table of contended locks.
    registered: Cell<bool>,
}

impl Watched {
    pub(crate) fn new(
        kind: LockKind,
        label: Option<&'static str>,
        site: &'static Location<'static>,
        tokens: usize,
    ) -> Self {
        Self {
            id: crate::observe::next_id(),
            kind,
            label,
            site,
            holders: RefCell::new(Vec::with_capacity(tokens.min(MAX_HOLDERS))),
            unrecorded: Cell::new(0),
            next_token: Cell::new(1),
            registered: Cell::new(false),
        }
    }

    /// Its id.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Records `acquirer` (a Deferred being handed a token) as a holder; the token to
    /// give back to [`released`](Self::released).
    pub(crate) fn held_by(&self, acquirer: &Core) -> u64 {
        let mut holders = self.holders.borrow_mut();
        let token = if holders.len() < MAX_HOLDERS {
            let token = self.next_token.get();
            self.next_token.set(token + 1);
            holders.push(Hold {
                token,
                owner: acquirer.parent.unwrap_or(acquirer.id),
                acquirer: acquirer.id,
                at: acquirer.site,
            });
            token
        } else {
            self.unrecorded.set(self.unrecorded.get() + 1);
            0
        };
        drop(holders);
        self.changed();
        token
    }

    /// The holder with `token` gave its token back.
    pub(crate) fn released(&self, token: u64) {
        if token == 0 {
            self.unrecorded.set(self.unrecorded.get().saturating_sub(1));
        } else {
            let mut holders = self.holders.borrow_mut();
            if let Some(i) = holders.iter().position(|h| h.token == token) {
                holders.swap_remove(i);
            }
        }
        self.changed();
    }

    /// Someone has to wait: the lock enters the table of contended locks.
    pub(crate) fn contended(&self, me: impl FnOnce() -> Weak<dyn Waitable>) {
        if !self.registered.replace(true) {
            let me = me();
            table(|t| t.locks.push(me));
        }
        changed();
    }

    /// Holders or waiters changed; only a lock in the graph says so.
    #[inline]
    pub(crate) fn changed(&self) {
        if self.registered.get() {
            changed();
        }
    }

    pub(crate) fn describe(
        &self,
        limit: Option<usize>,
        waiters: Vec<Party>,
        cores: &Cores,
    ) -> LockWaits {
        LockWaits {
            id: self.id,
            kind: self.kind,
            label: self.label,
            site: Site(self.site),
            limit,
            holders: self
                .holders
                .borrow()
                .iter()
                .map(|h| party(cores, h.owner, h.acquirer, h.at))
                .collect(),
            unrecorded_holders: self.unrecorded.get(),
            waiters,
        }
    }
}

/// The waiter behind a place in a lock's line, as a party of the graph.
pub(crate) fn waiter_party(waiter: &Core, cores: &Cores) -> Party {
    party(
        cores,
        waiter.parent.unwrap_or(waiter.id),
        waiter.id,
        waiter.site,
    )
}

/// A lock, semaphore or queue as the table of contended locks sees it.
pub(crate) trait Waitable {
    /// The identity and holders every primitive shares.
    fn watched(&self) -> &Watched;
    /// Whether anyone waits in its line now.
    fn has_waiters(&self) -> bool;
    /// Its holders and waiters now.
    fn describe(&self, cores: &Cores) -> LockWaits;
}

/// The thread's contended locks; one per thread, in the thread's context.
pub(crate) struct WaitTable {
    /// Locks that had a waiter when last looked at; weak, so the table keeps none alive.
    locks: Vec<Weak<dyn Waitable>>,
    /// Bumped whenever a contended lock's holders or waiters change.
    generation: u64,
    /// The generation the observer last got the graph of.
    shown: u64,
}

impl WaitTable {
    pub(crate) const fn new() -> Self {
        Self {
            locks: Vec::new(),
            generation: 0,
            shown: 0,
        }
    }
}

fn table<R>(f: impl FnOnce(&mut WaitTable) -> R) -> R {
    crate::context::with(|cx| f(&mut cx.waits.borrow_mut()))
}

/// The graph changed (a waiter joined, left or was served).
pub(crate) fn changed() {
    let _ = crate::context::try_with(|cx| cx.waits.borrow_mut().generation += 1);
}

/// Pending chains by id, for naming the parties.
pub(crate) type Cores = HashMap<DeferredId, Rc<Core>>;

/// A chain's part in the graph: the chain, and where it asked for the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    /// The chain: the one whose callback asked while it is pending, else the acquiring
    /// Deferred.
    pub chain: DeferredId,
    /// Its label.
    pub label: Option<&'static str>,
    /// The line that created it; `None` when it has ended (a guard kept past its chain).
    pub site: Option<Site>,
    /// Its connection.
    pub connection: Option<ConnectionId>,
    /// The `acquire` (or `get`) call.
    pub at: Site,
}

fn party(
    cores: &Cores,
    owner: DeferredId,
    acquirer: DeferredId,
    at: &'static Location<'static>,
) -> Party {
    let core = cores.get(&owner).or_else(|| cores.get(&acquirer));
    Party {
        chain: core.map_or(owner, |c| c.id),
        label: core.and_then(|c| c.label),
        site: core.map(|c| Site(c.site)),
        connection: core.and_then(|c| c.connection),
        at: Site(at),
    }
}

/// One lock, semaphore or queue with a line, as the graph shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockWaits {
    /// Its id (from the sequence connection and Deferred ids come from).
    pub id: u64,
    /// Lock, semaphore or queue.
    pub kind: LockKind,
    /// Its label, if it was given one.
    pub label: Option<&'static str>,
    /// The line that created it.
    pub site: Site,
    /// Its tokens (1 for a lock); `None` for a queue.
    pub limit: Option<usize>,
    /// Who holds its tokens, in the order they got them.
    pub holders: Vec<Party>,
    /// Tokens held beyond [`MAX_HOLDERS`], not named.
    pub unrecorded_holders: usize,
    /// Who waits, first in line first.
    pub waiters: Vec<Party>,
}

/// The current wait-for graph: every lock with a line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WaitGraph {
    /// The locks, semaphores and queues someone waits on.
    pub locks: Vec<LockWaits>,
    /// The deadlocks in it: each a cycle of chains, none of which can go on.
    pub deadlocks: Vec<Vec<DeadlockMember>>,
}

/// The pending chains, and the contended locks still alive with someone in line (the
/// others leave the table).
fn contended() -> Option<(Cores, Vec<Rc<dyn Waitable>>)> {
    let locks: Vec<Rc<dyn Waitable>> = table(|t| {
        let mut live = Vec::new();
        t.locks.retain(|weak| match weak.upgrade() {
            Some(lock) if lock.has_waiters() => {
                live.push(lock);
                true
            }
            Some(lock) => {
                lock.watched().registered.set(false);
                false
            }
            None => false,
        });
        live
    });
    if locks.is_empty() {
        return None;
    }
    let mut cores = Cores::new();
    registry::for_each_pending(|core| {
        cores.insert(core.id, core.clone());
    });
    Some((cores, locks))
}

fn build(cores: &Cores, locks: &[Rc<dyn Waitable>]) -> WaitGraph {
    let mut graph = WaitGraph {
        locks: locks.iter().map(|l| l.describe(cores)).collect(),
        deadlocks: Vec::new(),
    };
    graph.locks.sort_by_key(|l| l.id);
    graph.find_deadlocks();
    graph
}

/// The wait-for graph of this thread (the reactor's) now, with its deadlocks.
///
/// Cheap when no lock has a line: nothing is walked.
pub fn wait_graph() -> WaitGraph {
    match contended() {
        Some((cores, locks)) => build(&cores, &locks),
        None => WaitGraph::default(),
    }
}

/// Reports each new deadlock (once per member) and hands the graph to the observer when it
/// changed; run by the stall scan.
pub(crate) fn scan_for_deadlocks() {
    let (generation, shown) = table(|t| (t.generation, t.shown));
    let Some((cores, locks)) = contended() else {
        if generation != shown {
            table(|t| t.shown = generation);
            events::emit(|| DeferredEvent::Waits(Arc::new(WaitGraph::default())));
        }
        return;
    };
    let graph = build(&cores, &locks);
    for cycle in &graph.deadlocks {
        let members: Vec<&Rc<Core>> = cycle
            .iter()
            .filter_map(|m| cores.get(&m.chain.chain))
            .collect();
        if members.iter().all(|c| c.flags_has(DEADLOCK_REPORTED)) {
            continue;
        }
        for core in &members {
            core.set_flag(DEADLOCK_REPORTED, true);
            core.announce();
        }
        tracing::warn!(
            members = %cycle.iter().map(describe_member).collect::<Vec<_>>().join("; "),
            "Deferred chains are deadlocked: each waits on a lock another holds"
        );
        let shared: Arc<[DeadlockMember]> = cycle.clone().into();
        for core in members {
            events::emit(|| {
                DeferredEvent::Deadlock(Deadlock {
                    subject: Subject {
                        id: core.id,
                        label: core.label,
                        site: Site(core.site),
                        connection: core.connection,
                    },
                    cycle: shared.clone(),
                })
            });
        }
    }
    if generation != shown {
        table(|t| t.shown = generation);
        events::emit(|| DeferredEvent::Waits(Arc::new(graph)));
    }
}

#[cfg(test)]
#[path = "waits_tests.rs"]
mod tests;
