//! The deadlock detector's search: in the wait-for graph ([`waits`](super::waits)), the
//! chains none of which can go on because each waits on a lock that only such chains
//! hold, grouped into cycles; and how a member is described.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::events::{DeferredId, Site, Subject};
use super::waits::{LockKind, LockWaits, Party, WaitGraph};

impl LockWaits {
    /// Whether its holders are all known, so that "every holder is stuck" can be proved:
    /// never for a queue, whose next item may come from anyone.
    fn holders_known(&self) -> bool {
        self.kind != LockKind::Queue && self.unrecorded_holders == 0 && !self.holders.is_empty()
    }
}

/// One chain of a deadlock: what it waits on and who holds that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlockMember {
    /// The chain and where it waits (its `acquire` call).
    pub chain: Party,
    /// The lock it waits on.
    pub lock: u64,
    /// Its kind.
    pub lock_kind: LockKind,
    /// Its label.
    pub lock_label: Option<&'static str>,
    /// The line that created it.
    pub lock_site: Site,
    /// The members of the cycle that hold it.
    pub held_by: Vec<DeferredId>,
}

/// Detector: a chain waits, through locks, on chains that wait on it.
#[derive(Debug, Clone)]
pub struct Deadlock {
    /// The member this report is about (one report per member).
    pub subject: Subject,
    /// Every member of the cycle, this one included.
    pub cycle: Arc<[DeadlockMember]>,
}

impl WaitGraph {
    /// Finds the deadlocks: the chains whose every wait is on a lock all of whose holders
    /// are themselves stuck, grouped into cycles (a chain stuck only behind a cycle is not
    /// a member of it).
    pub(super) fn find_deadlocks(&mut self) {
        // Each waiting chain's waits: (lock index, the waiter's party).
        let mut waits: HashMap<DeferredId, Vec<(usize, &Party)>> = HashMap::new();
        for (i, lock) in self.locks.iter().enumerate() {
            for w in &lock.waiters {
                waits.entry(w.chain).or_default().push((i, w));
            }
        }
        // Whittle down to the stuck: a chain goes on if any of its waits can be served
        // by a holder outside the set (a chain waiting on two may be racing them).
        let mut stuck: HashSet<DeferredId> = waits.keys().copied().collect();
        loop {
            let free: Vec<DeferredId> = stuck
                .iter()
                .copied()
                .filter(|c| {
                    waits[c].iter().any(|(i, _)| {
                        let lock = &self.locks[*i];
                        !lock.holders_known()
                            || lock.holders.iter().any(|h| !stuck.contains(&h.chain))
                    })
                })
                .collect();
            if free.is_empty() {
                break;
            }
            for c in free {
                stuck.remove(&c);
            }
        }
        if stuck.is_empty() {
            return;
        }
        let mut nodes: Vec<DeferredId> = stuck.into_iter().collect();
        nodes.sort();
        let index: HashMap<DeferredId, usize> =
            nodes.iter().enumerate().map(|(i, c)| (*c, i)).collect();
        let edges: Vec<Vec<usize>> = nodes
            .iter()
            .map(|c| {
                let mut out: Vec<usize> = waits[c]
                    .iter()
                    .flat_map(|(i, _)| self.locks[*i].holders.iter().map(|h| index[&h.chain]))
                    .collect();
                out.sort_unstable();
                out.dedup();
                out
            })
            .collect();
        for component in strongly_connected(&edges) {
            let cyclic = component.len() > 1 || edges[component[0]].contains(&component[0]);
            if !cyclic {
                continue;
            }
            let members: HashSet<DeferredId> = component.iter().map(|&n| nodes[n]).collect();
            let mut cycle: Vec<DeadlockMember> = component
                .iter()
                .map(|&n| {
                    let chain = nodes[n];
                    // The wait that keeps it in the cycle: its lock's holders are members.
                    let (i, party) = waits[&chain]
                        .iter()
                        .find(|(i, _)| {
                            self.locks[*i]
                                .holders
                                .iter()
                                .any(|h| members.contains(&h.chain))
                        })
                        .copied()
                        .unwrap_or(waits[&chain][0]);
                    let lock = &self.locks[i];
                    DeadlockMember {
                        chain: party.clone(),
                        lock: lock.id,
                        lock_kind: lock.kind,
                        lock_label: lock.label,
                        lock_site: lock.site,
                        held_by: lock
                            .holders
                            .iter()
                            .map(|h| h.chain)
                            .filter(|c| members.contains(c))
                            .collect(),
                    }
                })
                .collect();
            cycle.sort_by_key(|m| m.chain.chain);
            self.deadlocks.push(cycle);
        }
        self.deadlocks.sort_by_key(|c| c[0].chain.chain);
    }
}

/// The strongly connected components of a graph given as adjacency lists (Kosaraju,
/// iterative, so a long line of waiters cannot overflow the stack).
pub(super) fn strongly_connected(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    let mut order = Vec::with_capacity(n);
    let mut seen = vec![false; n];
    for start in 0..n {
        if seen[start] {
            continue;
        }
        seen[start] = true;
        let mut stack = vec![(start, 0usize)];
        while let Some((node, next)) = stack.last_mut() {
            if let Some(&to) = edges[*node].get(*next) {
                *next += 1;
                if !seen[to] {
                    seen[to] = true;
                    stack.push((to, 0));
                }
            } else {
                order.push(*node);
                stack.pop();
            }
        }
    }
    let mut reverse = vec![Vec::new(); n];
    for (from, tos) in edges.iter().enumerate() {
        for &to in tos {
            reverse[to].push(from);
        }
    }
    let mut component_of = vec![usize::MAX; n];
    let mut components = Vec::new();
    for &start in order.iter().rev() {
        if component_of[start] != usize::MAX {
            continue;
        }
        let id = components.len();
        let mut members = vec![start];
        component_of[start] = id;
        let mut stack = vec![start];
        while let Some(node) = stack.pop() {
            for &from in &reverse[node] {
                if component_of[from] == usize::MAX {
                    component_of[from] = id;
                    members.push(from);
                    stack.push(from);
                }
            }
        }
        members.sort_unstable();
        components.push(members);
    }
    components
}

/// One member in words: `chain 12 "transfer" (created at a.rs:3) waits at a.rs:9 for lock 7
/// "accounts" (a.rs:1), held by 14`.
pub fn describe_member(m: &DeadlockMember) -> String {
    let label = m.chain.label.map(|l| format!(" {l:?}")).unwrap_or_default();
    let created = m
        .chain
        .site
        .map(|s| format!(" (created at {s})"))
        .unwrap_or_default();
    let lock_label = m.lock_label.map(|l| format!(" {l:?}")).unwrap_or_default();
    let held: Vec<String> = m.held_by.iter().map(ToString::to_string).collect();
    format!(
        "chain {}{label}{created} waits at {} for {} {}{lock_label} ({}), held by {}",
        m.chain.chain,
        m.chain.at,
        m.lock_kind.as_str(),
        m.lock,
        m.lock_site,
        held.join(", ")
    )
}
