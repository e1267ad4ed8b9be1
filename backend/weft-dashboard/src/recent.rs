//! The hub's ring of chains that ended or were flagged lately, merged into the lists and
//! the event log ahead of history: a detection is listed the moment it happens, and
//! history, committed about a second later, adds what the ring no longer holds. A chain
//! or an event is listed once (by id, by sequence number), its newest record first.

use std::collections::HashSet;

use weft_store::{DeferredRecord, EventRecord};
use weft_telemetry::Hub;

use crate::data::deferred_record;

/// Adds to `rows` (the live chains) those of the hub's ring that are not live, then those of
/// `stored` in neither; `keep` is the list's filter, applied to what the ring adds (history
/// was filtered by its query). A stored row's flags are kept on the ring's newer record.
///
/// Live and ring records are this gateway's (`own`); history shared by a fleet also holds
/// other gateways' chains under the same ids, which are always kept.
pub(crate) fn add_ended(
    hub: &Hub,
    own: &str,
    rows: &mut Vec<DeferredRecord>,
    stored: Vec<DeferredRecord>,
    keep: impl Fn(&DeferredRecord) -> bool,
) {
    let mut seen: HashSet<i64> = rows.iter().map(|d| d.id).collect();
    let mut recent: Vec<DeferredRecord> = hub
        .recent()
        .deferreds()
        .iter()
        .map(|d| crate::history::own_record(deferred_record(d), own))
        .filter(|d| !seen.contains(&d.id))
        .collect();
    for record in &mut recent {
        if let Some(older) = stored
            .iter()
            .find(|s| s.id == record.id && s.instance == own)
        {
            keep_flags(record, older);
        }
    }
    seen.extend(recent.iter().map(|d| d.id));
    rows.extend(recent.into_iter().filter(|d| keep(d)));
    rows.extend(
        stored
            .into_iter()
            .filter(|d| d.instance != own || !seen.contains(&d.id)),
    );
}

/// Flags stick: what `older` was flagged with, `record` is too.
pub(crate) fn keep_flags(record: &mut DeferredRecord, older: &DeferredRecord) {
    record.stalled |= older.stalled;
    record.slow |= older.slow;
    record.unhandled |= older.unhandled;
    record.leaked |= older.leaked;
    record.deadlock |= older.deadlock;
}

/// The events numbered above `after`, at most `limit`, in order: `stored` (history's,
/// already so limited) with the ring's events history has not committed yet. Those above
/// where history is complete are listed as pending by the caller, so a client paging on
/// the last event that is not pending misses none history commits later.
pub(crate) fn events(
    hub: &Hub,
    stored: Vec<EventRecord>,
    after: i64,
    limit: usize,
) -> Vec<EventRecord> {
    let mut seqs: HashSet<i64> = stored.iter().map(|e| e.seq).collect();
    let mut out = stored;
    let after = u64::try_from(after).unwrap_or(0);
    for event in hub.recent().events_after(after) {
        let seq = i64::try_from(event.seq).unwrap_or(i64::MAX);
        if seqs.insert(seq) {
            out.push(EventRecord {
                seq,
                at_ms: event.at_ms,
                kind: event.kind.name().to_owned(),
                payload_json: serde_json::to_string(&event.kind).unwrap_or_else(|_| "{}".into()),
            });
        }
    }
    out.sort_unstable_by_key(|e| e.seq);
    out.truncate(limit);
    out
}
