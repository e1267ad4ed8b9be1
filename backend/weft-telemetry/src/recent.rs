//! [`Recent`]: the last chains that ended or were flagged, kept in memory so the API lists
//! a detection the moment it happens rather than once the store has committed it (about a
//! second later).
//!
//! The hub appends every `deferred_detected` and `deferred_ended` event it publishes (the
//! chains history keeps: failed, flagged or sampled; a successful chain the sampler leaves
//! out never enters). The ring holds the same `Arc` the bus carries, so keeping it costs a
//! reference count and a slot of a ring allocated once; past [`RECENT_CAPACITY`] the oldest
//! is let go. Readers (the dashboard) copy out what they need under a short lock and merge
//! it with history, newest first, by chain id and by sequence number.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::bus::{EventKind, TelemetryEvent};
use crate::chains::DeferredSnapshot;

/// Events the ring keeps: the last thousand chains ended or flagged (a few hundred KiB with
/// their steps).
pub const RECENT_CAPACITY: usize = 1000;

/// Connection closes kept besides: the last thousand, more than history's writer leaves
/// unwritten between two of its commits but in a close-everything burst (a few hundred KiB
/// at most, each event shared with the bus).
pub const CLOSED_CAPACITY: usize = 1000;

/// The last [`RECENT_CAPACITY`] chains that ended or were flagged, as bus events.
#[derive(Debug)]
pub struct Recent {
    /// Oldest first; with several reactors two appends may land out of sequence order, so
    /// readers sort.
    events: Mutex<VecDeque<Arc<TelemetryEvent>>>,
    capacity: usize,
    /// The last connections closed ([`CLOSED_CAPACITY`]), oldest first: a connection that
    /// leaves the live registry is read from here until history has its close (its row
    /// would say it is open for up to a second).
    closed: Mutex<VecDeque<Arc<TelemetryEvent>>>,
}

impl Default for Recent {
    fn default() -> Self {
        Self::with_capacity(RECENT_CAPACITY)
    }
}

impl Recent {
    /// A ring of at most `capacity` events (at least one), allocated now.
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            events: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity,
            closed: Mutex::new(VecDeque::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Arc<TelemetryEvent>>> {
        // Nothing panics while holding it; a poisoned ring is still a valid ring.
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `event` if it is about a chain (detected or ended) or a connection's close;
    /// drops the oldest of its kind when full.
    pub(crate) fn keep(&self, event: Arc<TelemetryEvent>) {
        if matches!(event.kind, EventKind::ConnectionClosed { .. }) {
            let mut closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
            if closed.len() == CLOSED_CAPACITY {
                closed.pop_front();
            }
            closed.push_back(event);
            return;
        }
        if !matches!(
            event.kind,
            EventKind::DeferredDetected { .. } | EventKind::DeferredEnded { .. }
        ) {
            return;
        }
        let mut events = self.lock();
        if events.len() == self.capacity {
            events.pop_front();
        }
        events.push_back(event);
    }

    /// The close of connection `id`, if it is among the last kept: a `connection_closed`
    /// event, with the connection's final counters.
    pub fn closed_connection(&self, id: u64) -> Option<Arc<TelemetryEvent>> {
        let closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        closed
            .iter()
            .rev()
            .find(|e| matches!(&e.kind, EventKind::ConnectionClosed { connection, .. } if connection.id == id))
            .cloned()
    }

    /// How many chain events it holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The events numbered above `after`, in sequence order.
    pub fn events_after(&self, after: u64) -> Vec<Arc<TelemetryEvent>> {
        let mut out: Vec<_> = self
            .lock()
            .iter()
            .filter(|e| e.seq > after)
            .cloned()
            .collect();
        out.sort_unstable_by_key(|e| e.seq);
        out
    }

    /// Each chain the ring knows, as last seen (see `merge`).
    pub fn deferreds(&self) -> Vec<DeferredSnapshot> {
        self.chains(|_| true)
            .into_values()
            .map(|(c, _)| c)
            .collect()
    }

    /// One chain as last seen, if the ring still holds it.
    pub fn deferred(&self, id: u64) -> Option<DeferredSnapshot> {
        self.chains(|c| c.id == id).remove(&id).map(|(c, _)| c)
    }

    /// The chains `wanted` picks, each its events merged in order, and whether it ended.
    fn chains(
        &self,
        wanted: impl Fn(&DeferredSnapshot) -> bool,
    ) -> HashMap<u64, (DeferredSnapshot, bool)> {
        let mut events: Vec<_> = self
            .lock()
            .iter()
            .filter(|e| chain_of(e).is_some_and(&wanted))
            .cloned()
            .collect();
        events.sort_unstable_by_key(|e| e.seq);
        let mut chains: HashMap<u64, (DeferredSnapshot, bool)> = HashMap::new();
        for event in &events {
            let Some(chain) = chain_of(event) else {
                continue;
            };
            let ended = matches!(event.kind, EventKind::DeferredEnded { .. });
            let merged = match chains.remove(&chain.id) {
                Some(before) => merge(before, chain, ended),
                None => (chain.clone(), ended),
            };
            chains.insert(chain.id, merged);
        }
        chains
    }
}

/// A chain's record after `newer`, as history merges it: a detection reported after the
/// chain ended (an unhandled failure at drop time) adds its flags and failure to the
/// record the chain ended with, which has its steps; otherwise the newer record wins,
/// keeping every flag and the steps it was published without.
fn merge(
    (older, older_ended): (DeferredSnapshot, bool),
    newer: &DeferredSnapshot,
    newer_ended: bool,
) -> (DeferredSnapshot, bool) {
    if older_ended && !newer_ended {
        let mut chain = older;
        merge_flags(&mut chain, newer);
        if newer.failure.is_some() {
            chain.failure.clone_from(&newer.failure);
        }
        return (chain, true);
    }
    let mut chain = newer.clone();
    merge_flags(&mut chain, &older);
    if chain.steps.is_empty() && chain.queued.is_empty() {
        chain.steps = older.steps;
        chain.queued = older.queued;
    }
    if chain.named_steps.is_empty() {
        chain.named_steps = older.named_steps;
    }
    (chain, older_ended || newer_ended)
}

fn chain_of(event: &TelemetryEvent) -> Option<&DeferredSnapshot> {
    match &event.kind {
        EventKind::DeferredDetected { deferred, .. } | EventKind::DeferredEnded { deferred } => {
            Some(deferred)
        }
        _ => None,
    }
}

/// Flags stick: once flagged, a chain stays flagged.
fn merge_flags(into: &mut DeferredSnapshot, from: &DeferredSnapshot) {
    into.stalled |= from.stalled;
    into.slow |= from.slow;
    into.unhandled |= from.unhandled;
    into.leaked |= from.leaked;
    into.deadlock |= from.deadlock;
}

#[cfg(test)]
mod tests {
    use weft::defer::{DeferredId, DeferredState, Detector};

    use super::*;
    use crate::deferred::blank_snapshot;

    fn chain(id: u64) -> DeferredSnapshot {
        let mut chain = blank_snapshot(DeferredId(id), None, 1, DeferredState::Failed);
        chain.site = "here.rs:1".into();
        chain
    }

    fn event(seq: u64, kind: EventKind) -> Arc<TelemetryEvent> {
        Arc::new(TelemetryEvent {
            seq,
            at_ms: 0,
            kind,
        })
    }

    #[test]
    fn keeps_the_last_chains_up_to_its_capacity_in_sequence_order() {
        let recent = Recent::with_capacity(3);
        for seq in [1, 3, 2, 4] {
            recent.keep(event(
                seq,
                EventKind::DeferredEnded {
                    deferred: chain(seq),
                },
            ));
        }
        let seqs: Vec<u64> = recent.events_after(0).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [2, 3, 4], "the oldest appended went first");
        assert_eq!(recent.events_after(3).len(), 1);
    }

    #[test]
    fn a_closed_connection_is_found_among_the_last_closes_and_not_among_the_chains() {
        let recent = Recent::with_capacity(2);
        let closed = |id: u64| EventKind::ConnectionClosed {
            connection: crate::ConnectionSnapshot {
                id,
                service: "echo".into(),
                transport: weft::observe::TransportKind::Tcp,
                peer: weft::Address::Unix(None),
                local: weft::Address::Unix(None),
                opened_at_ms: 1,
                age_ms: 2,
                idle_ms: 0,
                bytes_in: 3,
                bytes_out: 4,
                reads: 1,
                writes: 1,
                reactor: 0,
            },
            reason: weft::observe::CloseKind::Done,
            detail: "closed".into(),
        };
        for id in 1..=CLOSED_CAPACITY as u64 + 1 {
            recent.keep(event(id, closed(id)));
        }
        assert!(recent.is_empty(), "no chain among them");
        assert!(
            recent.closed_connection(1).is_none(),
            "the oldest went first"
        );
        let last = recent
            .closed_connection(CLOSED_CAPACITY as u64 + 1)
            .unwrap();
        assert!(
            matches!(&last.kind, EventKind::ConnectionClosed { connection, .. } if connection.bytes_out == 4)
        );
    }

    #[test]
    fn a_chain_is_its_newest_record_with_every_flag_it_had() {
        let recent = Recent::default();
        let mut slow = chain(7);
        slow.slow = true;
        recent.keep(event(
            1,
            EventKind::DeferredDetected {
                detector: Detector::Slow,
                deferred: slow,
                detail: String::new(),
            },
        ));
        let mut ended = chain(7);
        ended.failure = Some("boom".into());
        recent.keep(event(2, EventKind::DeferredEnded { deferred: ended }));
        let got = recent.deferred(7).unwrap();
        assert!(got.slow);
        assert_eq!(got.failure.as_deref(), Some("boom"));
        let all = recent.deferreds();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0], got);
        assert!(recent.deferred(8).is_none());
    }

    #[test]
    fn a_late_detection_keeps_the_steps_the_chain_ended_with() {
        let recent = Recent::default();
        let mut ended = chain(9);
        ended.steps.push(crate::StepSnapshot {
            index: 0,
            kind: weft::defer::StepKind::Callback,
            site: "here.rs:2".into(),
            at_ms: 1,
            duration_us: 1,
            outcome: weft::defer::StepStatus::Err,
            failure: None,
            child: None,
        });
        recent.keep(event(3, EventKind::DeferredEnded { deferred: ended }));
        let mut late = chain(9);
        late.unhandled = true;
        late.created_at_ms = 99;
        recent.keep(event(
            4,
            EventKind::DeferredDetected {
                detector: Detector::Unhandled,
                deferred: late,
                detail: String::new(),
            },
        ));
        let got = recent.deferred(9).unwrap();
        assert!(got.unhandled);
        assert_eq!((got.steps.len(), got.created_at_ms), (1, 1));
    }

    #[test]
    fn other_events_are_not_kept() {
        let recent = Recent::default();
        recent.keep(event(
            1,
            EventKind::ListenerStopped {
                service: "s".into(),
                endpoint: "tcp:1".into(),
                transport: weft::observe::TransportKind::Tcp,
                local: "127.0.0.1:1".into(),
            },
        ));
        assert!(recent.is_empty());
    }
}
