//! The names asked most, within a bound whatever a peer asks.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use super::TOP_NAMES;

/// A tracked name: its text, estimated count, and how much of that may belong to the
/// names it replaced (space-saving's error bound).
pub(super) struct Tracked {
    name: String,
    count: u64,
}

/// The names asked most, by the space-saving algorithm (Metwally et al.): at most
/// [`TOP_NAMES`] names are tracked; a new one takes the place of the least counted, and
/// inherits its count, so a name asked more than 1/[`TOP_NAMES`] of the time is always
/// in the list. The least counted is found through a min-heap of the tracked names.
pub(super) struct TopNames {
    pub(super) tracked: Vec<Tracked>,
    /// Tracked names by the hash of their text.
    pub(super) index: HashMap<u64, usize>,
    hasher: RandomState,
    /// Indexes of `tracked`, a min-heap by count.
    heap: Vec<usize>,
    /// Where each tracked name is in `heap`.
    position: Vec<usize>,
}

impl Default for TopNames {
    fn default() -> Self {
        Self {
            tracked: Vec::with_capacity(TOP_NAMES),
            index: HashMap::with_capacity(TOP_NAMES),
            hasher: RandomState::new(),
            heap: Vec::with_capacity(TOP_NAMES),
            position: Vec::with_capacity(TOP_NAMES),
        }
    }
}

impl TopNames {
    pub(super) fn count(&mut self, name: &str, weight: u64) {
        let hash = self.hasher.hash_one(name);
        if let Some(&i) = self.index.get(&hash) {
            self.tracked[i].count += weight;
            self.sift_down(self.position[i]);
            return;
        }
        if self.tracked.len() < TOP_NAMES {
            let i = self.tracked.len();
            self.tracked.push(Tracked {
                name: name.to_owned(),
                count: weight,
            });
            self.index.insert(hash, i);
            self.heap.push(i);
            self.position.push(self.heap.len() - 1);
            self.sift_up(self.heap.len() - 1);
            return;
        }
        // Full: the least counted name gives its place (and its count) to this one.
        let i = self.heap[0];
        let old = self.hasher.hash_one(self.tracked[i].name.as_str());
        self.index.remove(&old);
        let t = &mut self.tracked[i];
        t.name.clear();
        t.name.push_str(name);
        t.count += weight;
        self.index.insert(hash, i);
        self.sift_down(0);
    }

    fn key(&self, at: usize) -> u64 {
        self.tracked[self.heap[at]].count
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.position[self.heap[a]] = a;
        self.position[self.heap[b]] = b;
    }

    fn sift_up(&mut self, mut at: usize) {
        while at > 0 {
            let parent = (at - 1) / 2;
            if self.key(parent) <= self.key(at) {
                break;
            }
            self.swap(parent, at);
            at = parent;
        }
    }

    fn sift_down(&mut self, mut at: usize) {
        loop {
            let (l, r) = (2 * at + 1, 2 * at + 2);
            let mut least = at;
            if l < self.heap.len() && self.key(l) < self.key(least) {
                least = l;
            }
            if r < self.heap.len() && self.key(r) < self.key(least) {
                least = r;
            }
            if least == at {
                return;
            }
            self.swap(at, least);
            at = least;
        }
    }

    /// The tracked names, most counted first (ties by name).
    pub(super) fn top(&self) -> Vec<(String, u64)> {
        let mut all: Vec<_> = self
            .tracked
            .iter()
            .map(|t| (t.name.clone(), t.count))
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all
    }
}
