//! The wait-for graph as the dashboard shows it: the latest [`WaitGraph`] each reactor's
//! scan handed over (only when it changed), in owned form and merged into one, and what it
//! says about one chain.
//!
//! A reactor thread replaces its snapshot, and rebuilds the union, under a short lock at
//! most once per stall scan; readers clone an `Arc`.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use weft::defer::{Deadlock, DeadlockMember, LockKind, LockWaits, Party, WaitGraph};

use crate::chains::now_ms;

/// A chain's part in the graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartySnapshot {
    /// The chain's id.
    pub chain: u64,
    /// Its label.
    pub label: Option<String>,
    /// The line that created it; `None` once it has ended (a guard kept past its chain).
    pub site: Option<String>,
    /// Its connection.
    pub connection: Option<u64>,
    /// Where it asked for the lock (`acquire`, `get`).
    pub at: String,
}

impl PartySnapshot {
    fn of(p: &Party) -> Self {
        Self {
            chain: p.chain.0,
            label: p.label.map(str::to_owned),
            site: p.site.map(|s| s.to_string()),
            connection: p.connection.map(|c| c.0),
            at: p.at.to_string(),
        }
    }
}

/// A lock, semaphore or queue, without its line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockRef {
    /// Its id.
    pub id: u64,
    /// `lock`, `semaphore` or `queue`.
    pub kind: LockKind,
    /// Its label.
    pub label: Option<String>,
    /// The line that created it.
    pub site: String,
}

impl LockRef {
    /// What to call it on a page: its label, else its kind and id.
    pub fn name(&self) -> String {
        match &self.label {
            Some(label) => format!("{} {label}", self.kind.as_str()),
            None => format!("{} {}", self.kind.as_str(), self.id),
        }
    }
}

/// A lock with its holders and waiters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockSnapshot {
    /// Which lock.
    #[serde(flatten)]
    pub lock: LockRef,
    /// Its tokens (1 for a lock); `None` for a queue.
    pub limit: Option<u64>,
    /// Who holds its tokens.
    pub holders: Vec<PartySnapshot>,
    /// Tokens held beyond those recorded (`weft::defer::MAX_HOLDERS`).
    pub unrecorded_holders: u64,
    /// Who waits, first in line first.
    pub waiters: Vec<PartySnapshot>,
    /// The reactor whose chains hold and wait on it.
    pub reactor: u16,
}

impl LockSnapshot {
    fn of(l: &LockWaits) -> Self {
        Self {
            lock: LockRef {
                id: l.id,
                kind: l.kind,
                label: l.label.map(str::to_owned),
                site: l.site.to_string(),
            },
            limit: l.limit.map(|n| n as u64),
            holders: l.holders.iter().map(PartySnapshot::of).collect(),
            unrecorded_holders: l.unrecorded_holders as u64,
            waiters: l.waiters.iter().map(PartySnapshot::of).collect(),
            reactor: 0,
        }
    }
}

/// One member of a deadlock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberSnapshot {
    /// The chain and where it waits.
    pub chain: PartySnapshot,
    /// The lock it waits on.
    pub lock: LockRef,
    /// The members that hold that lock.
    pub held_by: Vec<u64>,
}

impl MemberSnapshot {
    fn of(m: &DeadlockMember) -> Self {
        Self {
            chain: PartySnapshot::of(&m.chain),
            lock: LockRef {
                id: m.lock,
                kind: m.lock_kind,
                label: m.lock_label.map(str::to_owned),
                site: m.lock_site.to_string(),
            },
            held_by: m.held_by.iter().map(|c| c.0).collect(),
        }
    }
}

/// An edge of the graph: `waiter` waits on `lock`, which `holder` holds (`None`: nobody
/// the graph knows, as for a queue).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaitEdge {
    /// The waiting chain.
    pub waiter: u64,
    /// The lock.
    pub lock: u64,
    /// A chain holding it.
    pub holder: Option<u64>,
}

/// The wait-for graph at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WaitsSnapshot {
    /// When the reactor handed it over, unix milliseconds (0: never).
    pub at_ms: i64,
    /// Every lock, semaphore and queue with a line.
    pub locks: Vec<LockSnapshot>,
    /// Each deadlock: the members of one cycle.
    pub deadlocks: Vec<Vec<MemberSnapshot>>,
}

/// What the graph says about one chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChainWaits {
    /// The locks it waits on, each with where it asked and who holds it.
    pub waits_for: Vec<WaitFor>,
    /// The locks it holds that others wait on, with where it took each.
    pub holds: Vec<Held>,
    /// The other members of its deadlock, if it is in one (itself included).
    pub deadlock: Option<Vec<MemberSnapshot>>,
}

/// A lock a chain waits on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaitFor {
    /// The lock.
    pub lock: LockRef,
    /// Where the chain asked.
    pub at: String,
    /// Who holds it.
    pub holders: Vec<PartySnapshot>,
}

/// A lock a chain holds while others wait.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Held {
    /// The lock.
    pub lock: LockRef,
    /// Where the chain took it.
    pub at: String,
    /// Who waits for it.
    pub waiters: Vec<PartySnapshot>,
}

impl WaitsSnapshot {
    /// The owned form of `graph`.
    pub fn of(graph: &WaitGraph) -> Self {
        Self {
            at_ms: now_ms(),
            locks: graph.locks.iter().map(LockSnapshot::of).collect(),
            deadlocks: graph
                .deadlocks
                .iter()
                .map(|c| c.iter().map(MemberSnapshot::of).collect())
                .collect(),
        }
    }

    /// Every waiter-to-holder edge, by lock.
    pub fn edges(&self) -> Vec<WaitEdge> {
        let mut out = Vec::new();
        for l in &self.locks {
            for w in &l.waiters {
                if l.holders.is_empty() {
                    out.push(WaitEdge {
                        waiter: w.chain,
                        lock: l.lock.id,
                        holder: None,
                    });
                }
                for h in &l.holders {
                    out.push(WaitEdge {
                        waiter: w.chain,
                        lock: l.lock.id,
                        holder: Some(h.chain),
                    });
                }
            }
        }
        out
    }

    /// Whether `chain` is a member of a deadlock now.
    pub fn deadlocked(&self, chain: u64) -> bool {
        self.deadlocks
            .iter()
            .any(|c| c.iter().any(|m| m.chain.chain == chain))
    }

    /// What `chain` waits on and holds; `None` when it is not in the graph.
    pub fn chain(&self, chain: u64) -> Option<ChainWaits> {
        let mut waits = ChainWaits::default();
        for l in &self.locks {
            for w in l.waiters.iter().filter(|w| w.chain == chain) {
                waits.waits_for.push(WaitFor {
                    lock: l.lock.clone(),
                    at: w.at.clone(),
                    holders: l.holders.clone(),
                });
            }
            for h in l.holders.iter().filter(|h| h.chain == chain) {
                waits.holds.push(Held {
                    lock: l.lock.clone(),
                    at: h.at.clone(),
                    waiters: l.waiters.clone(),
                });
            }
        }
        waits.deadlock = self
            .deadlocks
            .iter()
            .find(|c| c.iter().any(|m| m.chain.chain == chain))
            .cloned();
        (!waits.waits_for.is_empty() || !waits.holds.is_empty()).then_some(waits)
    }
}

/// The latest graph each reactor handed over, and their union: each reactor of a
/// [`ReactorPool`](weft::ReactorPool) scans its own chains and locks, and hands over its
/// graph when it changes, so one reactor's empty graph must not hide another's deadlock.
#[derive(Debug, Default)]
pub struct Waits {
    latest: Mutex<ByReactor>,
}

#[derive(Debug, Default)]
struct ByReactor {
    /// Each reactor's latest graph, by index: one entry per reactor the hub heard from.
    graphs: Vec<WaitsSnapshot>,
    /// Their union, rebuilt when one of them is replaced.
    union: Arc<WaitsSnapshot>,
}

impl Waits {
    /// Replaces the graph of the reactor this thread runs.
    pub(crate) fn set(&self, graph: &WaitGraph) {
        self.put(weft::reactor::current_index(), WaitsSnapshot::of(graph));
    }

    /// Replaces reactor `reactor`'s graph with `graph`.
    pub(crate) fn put(&self, reactor: u16, mut graph: WaitsSnapshot) {
        for lock in &mut graph.locks {
            lock.reactor = reactor;
        }
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        let index = usize::from(reactor);
        if latest.graphs.len() <= index {
            latest.graphs.resize_with(index + 1, WaitsSnapshot::default);
        }
        latest.graphs[index] = graph;
        latest.union = Arc::new(union(&latest.graphs));
    }

    /// The graph now: every reactor's.
    pub fn get(&self) -> Arc<WaitsSnapshot> {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .union
            .clone()
    }
}

/// One graph of several reactors' (ids are process-wide, so none is in two of them): the
/// locks and deadlocks of each, as of the latest hand-over.
fn union(graphs: &[WaitsSnapshot]) -> WaitsSnapshot {
    let mut out = WaitsSnapshot::default();
    for g in graphs {
        out.at_ms = out.at_ms.max(g.at_ms);
        // A lock belongs to the reactor that made it: no lock is in two graphs.
        out.locks.extend(g.locks.iter().cloned());
        out.deadlocks.extend(g.deadlocks.iter().cloned());
    }
    out
}

/// What the deadlock detector says: every member, where it was created, where it waits,
/// on which lock and who holds it.
pub(crate) fn deadlock_detail(d: &Deadlock) -> String {
    let members: Vec<String> = d.cycle.iter().map(weft::defer::describe_member).collect();
    format!(
        "deadlock of {} chains: {}",
        d.cycle.len(),
        members.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use weft::defer::LockKind;

    use super::*;

    fn party(chain: u64) -> PartySnapshot {
        PartySnapshot {
            chain,
            label: None,
            site: Some("src/bank.rs:10".into()),
            connection: None,
            at: "src/bank.rs:12".into(),
        }
    }

    fn lock_ref(id: u64) -> LockRef {
        LockRef {
            id,
            kind: LockKind::Lock,
            label: None,
            site: "src/bank.rs:5".into(),
        }
    }

    fn lock(id: u64, holder: u64, waiter: u64) -> LockSnapshot {
        LockSnapshot {
            lock: lock_ref(id),
            limit: Some(1),
            holders: vec![party(holder)],
            unrecorded_holders: 0,
            waiters: vec![party(waiter)],
            reactor: 0,
        }
    }

    /// Chains `a` and `b` each hold one of locks `l` and `m` and wait on the other.
    fn deadlock(a: u64, b: u64, l: u64, m: u64) -> WaitsSnapshot {
        let member = |chain, on, held_by| MemberSnapshot {
            chain: party(chain),
            lock: lock_ref(on),
            held_by: vec![held_by],
        };
        WaitsSnapshot {
            at_ms: now_ms(),
            locks: vec![lock(l, a, b), lock(m, b, a)],
            deadlocks: vec![vec![member(a, m, b), member(b, l, a)]],
        }
    }

    fn locks(waits: &Waits) -> Vec<(u64, u16)> {
        let graph = waits.get();
        graph.locks.iter().map(|l| (l.lock.id, l.reactor)).collect()
    }

    #[test]
    fn a_deadlock_on_reactor_1_stays_in_the_graph_while_reactor_0_hands_over_an_empty_one() {
        let waits = Waits::default();
        waits.put(1, deadlock(10, 11, 1, 2));
        let empty = WaitsSnapshot {
            at_ms: now_ms(),
            ..WaitsSnapshot::default()
        };
        waits.put(0, empty.clone());
        assert_eq!(locks(&waits), [(1, 1), (2, 1)]);
        let graph = waits.get();
        assert!(graph.deadlocked(10) && graph.deadlocked(11));
        assert!(graph.chain(10).is_some_and(|c| c.deadlock.is_some()));
        assert_eq!(graph.edges().len(), 2);

        // Reactor 0's own locks join reactor 1's.
        waits.put(0, deadlock(20, 21, 3, 4));
        assert_eq!(locks(&waits), [(3, 0), (4, 0), (1, 1), (2, 1)]);
        assert_eq!(waits.get().deadlocks.len(), 2);

        // Reactor 1's graph empties: only reactor 0's is left.
        waits.put(1, empty);
        assert_eq!(locks(&waits), [(3, 0), (4, 0)]);
        assert!(!waits.get().deadlocked(10));
    }
}
