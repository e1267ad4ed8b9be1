//! Between the hub and the store: events become rows off the reactor thread, and open
//! connections and pending chains are written about once a second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::IntCounter;
use tokio_util::sync::CancellationToken;
use weft::observe::CloseKind;
use weft_store::{Column, ConnectionRecord, EventRecord, Record, Writer};
use weft_telemetry::{
    ConnectionSnapshot, DeferredSnapshot, EventKind, Feed, Folded, Hub, TelemetryEvent, fold,
};

/// How long [`convert`] lets events gather on the bus before taking them: the writer
/// commits about once a second anyway, and the reactor wakes this task once per batch.
const GATHER: Duration = Duration::from_millis(50);

/// How many short-lived connections history keeps: every one up to `per_s` a second, then
/// only those that did not close routinely ([`CloseKind::is_routine`]). Only a connection that
/// opened and closed within one batch can be left out; every other connection is always
/// kept. Metrics count every connection either way; the ones left out are counted under
/// `weft_store_connections_skipped_total`.
pub(crate) struct Budget {
    per_s: u32,
    tokens: f64,
    refilled: Instant,
    skipped: IntCounter,
}

impl Budget {
    /// `per_s == 0` keeps every connection.
    pub(crate) fn new(per_s: u32, skipped: IntCounter) -> Self {
        Self {
            per_s,
            tokens: f64::from(per_s),
            refilled: Instant::now(),
            skipped,
        }
    }

    /// Whether to keep a connection that opened and closed within one batch.
    fn keep(&mut self, reason: CloseKind) -> bool {
        if self.per_s == 0 || !reason.is_routine() {
            return true;
        }
        let now = Instant::now();
        let rate = f64::from(self.per_s);
        self.tokens =
            (self.tokens + now.duration_since(self.refilled).as_secs_f64() * rate).min(rate);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.skipped.inc();
            false
        }
    }
}

/// The open connections [`snapshots`] has written a row of: their closing is always
/// written, whatever the [`Budget`] says, or the row would stay open for ever (and the
/// next start would take it for one a killed process left). Holds connections open now.
#[derive(Default)]
pub(crate) struct Snapshotted(std::sync::Mutex<std::collections::HashSet<u64>>);

impl Snapshotted {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<u64>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The rows a batch of events becomes. A connection is one row: its opening and closing
/// are kept in it with their event numbers (the store rebuilds both events from it), and
/// when both are in the batch ([`fold`]) the row is written once, if the [`Budget`] keeps
/// it. Every other event is a row of the event log, plus the rows of the chain it carries.
pub(crate) fn records(
    events: &[Arc<TelemetryEvent>],
    budget: &mut Budget,
    snapshotted: &Snapshotted,
) -> Vec<Record> {
    let seq = |e: &TelemetryEvent| i64::try_from(e.seq).unwrap_or(i64::MAX);
    let closed_id = |e: &TelemetryEvent| match &e.kind {
        EventKind::ConnectionClosed { connection, .. } => Some(connection.id),
        _ => None,
    };
    // Taken once a batch, and held while its closings are sorted: a snapshot taken meanwhile
    // waits, and one taken before has marked what it wrote.
    let mut written = snapshotted.lock();
    let mut out = Vec::new();
    for folded in fold(events) {
        let (event, opened_seq) = match folded {
            Folded::Event(event) => {
                if let Some(id) = closed_id(event) {
                    written.remove(&id);
                }
                (event, None)
            }
            // Short-lived, nothing of it written yet (no snapshot caught it open), and over
            // the budget: left out.
            Folded::Brief {
                closing, reason, ..
            } if !closed_id(closing).is_some_and(|id| written.remove(&id))
                && !budget.keep(reason) =>
            {
                continue;
            }
            Folded::Brief {
                closing,
                opened_seq,
                ..
            } => (closing, Some(i64::try_from(opened_seq).unwrap_or(i64::MAX))),
        };
        match &event.kind {
            EventKind::ConnectionOpened { connection } => out.push(
                ConnectionRecord {
                    opened_seq: Some(seq(event)),
                    ..connection_record(connection, None)
                }
                .into(),
            ),
            EventKind::ConnectionClosed {
                connection,
                reason,
                detail,
            } => out.push(
                ConnectionRecord {
                    opened_seq,
                    closed_seq: Some(seq(event)),
                    close_detail: Some(detail.to_string()),
                    ..connection_record(connection, Some((event.at_ms, *reason)))
                }
                .into(),
            ),
            kind => {
                if let EventKind::DeferredDetected { deferred, .. }
                | EventKind::DeferredEnded { deferred } = kind
                {
                    deferred_records(deferred, &mut out);
                }
                out.push(
                    EventRecord {
                        seq: seq(event),
                        at_ms: event.at_ms,
                        kind: kind.name().to_owned(),
                        payload_json: serde_json::to_string(kind).unwrap_or_else(|_| "{}".into()),
                    }
                    .into(),
                );
            }
        }
    }
    out
}

/// A connection row; `closed` is when and why, once it has closed.
pub(crate) fn connection_record(
    c: &ConnectionSnapshot,
    closed: Option<(i64, CloseKind)>,
) -> ConnectionRecord {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    ConnectionRecord {
        id: n(c.id),
        service: c.service.to_string(),
        transport: c.transport.column(),
        peer: c.peer.to_string(),
        local: c.local.to_string(),
        opened_at_ms: c.opened_at_ms,
        closed_at_ms: closed.map(|(at, _)| at),
        bytes_in: n(c.bytes_in),
        bytes_out: n(c.bytes_out),
        reads: n(c.reads),
        writes: n(c.writes),
        close_reason: closed.map(|(_, why)| why.column()),
        close_detail: None,
        opened_seq: None,
        closed_seq: None,
        reactor: Some(i64::from(c.reactor)),
        // The writer stores its own instance.
        instance: String::new(),
    }
}

/// A chain's row and its steps' rows (the conversion the dashboard shows live chains with).
pub(crate) fn deferred_records(d: &DeferredSnapshot, out: &mut Vec<Record>) {
    out.push(weft_dashboard::data::deferred_record(d).into());
    out.extend(
        weft_dashboard::data::step_records(d)
            .into_iter()
            .map(Record::from),
    );
}

/// Turns the hub's events (read as the bus reader `store`) into rows until `stop`, then
/// takes what is left. Events lost by falling behind are counted by the hub under
/// `weft_events_dropped_total{consumer="store"}`.
///
/// The bus delivers events in sequence order, so after each batch every event up to its
/// last is queued, left out or lost: the batch's last number is marked
/// ([`Writer::mark`]), which tells `/api/events` up to where history is complete. A mark
/// the full queue refuses is owed and tried again until taken.
pub(crate) async fn convert(
    mut feed: Feed,
    writer: Writer,
    (mut budget, snapshotted): (Budget, Arc<Snapshotted>),
    stop: CancellationToken,
) {
    let mut batch = Vec::new();
    let mut owed: Option<u64> = None;
    let mut write = |batch: &mut Vec<Arc<TelemetryEvent>>, owed: &mut Option<u64>| {
        for record in records(batch, &mut budget, &snapshotted) {
            // A full store queue is counted by the store (weft_store_events_dropped_total).
            writer.try_send(record);
        }
        let last = batch.iter().map(|e| e.seq).max();
        *owed = (*owed).max(last);
        if owed.is_some_and(|seq| writer.mark(seq)) {
            *owed = None;
        }
        batch.clear();
    };
    loop {
        tokio::select! {
            // A miss was counted by the hub; what is kept is written as usual.
            taken = feed.recv_many(&mut batch, usize::MAX) => if taken == Ok(0) {
                return;
            },
            // A refused mark, tried again though no event comes.
            () = tokio::time::sleep(GATHER), if owed.is_some() => {
                write(&mut batch, &mut owed);
                continue;
            }
            () = stop.cancelled() => break,
        }
        // Let the rest of a burst gather: one wake-up per batch, not per event.
        tokio::select! {
            () = tokio::time::sleep(GATHER) => {}
            () = stop.cancelled() => {}
        }
        let _ = feed.try_recv_many(&mut batch, usize::MAX);
        write(&mut batch, &mut owed);
    }
    while !matches!(feed.try_recv_many(&mut batch, usize::MAX), Ok(0)) {}
    write(&mut batch, &mut owed);
}

/// Writes every open connection with its counters, and every pending Deferred chain with
/// its steps so far, every `interval`, until `stop`.
pub(crate) async fn snapshots(
    (hub, snapshotted): (Arc<Hub>, Arc<Snapshotted>),
    writer: Writer,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        {
            // Held from the listing to the last row: a batch that closes one of these
            // sees it marked.
            let mut written = snapshotted.lock();
            for c in hub.connections() {
                written.insert(c.id);
                writer.try_send(connection_record(&c, None));
            }
        }
        let mut rows = Vec::new();
        // A live task is kept once a detector flags it: one per connection would double
        // what every snapshot writes, for rows that say little. Each chain written here
        // has its end published, so its row does not stay pending.
        for d in hub.deferreds().pending_for_history() {
            deferred_records(&d, &mut rows);
        }
        for row in rows {
            writer.try_send(row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(id: u64) -> ConnectionSnapshot {
        ConnectionSnapshot {
            id,
            service: "echo".into(),
            transport: weft::observe::TransportKind::Tcp,
            peer: weft::Address::Ip("127.0.0.1:5000".parse().unwrap()),
            local: weft::Address::Ip("127.0.0.1:8000".parse().unwrap()),
            opened_at_ms: 1_000,
            age_ms: 0,
            idle_ms: 0,
            bytes_in: 4,
            bytes_out: 4,
            reads: 1,
            writes: 1,
            reactor: 0,
        }
    }

    fn opened(seq: u64, id: u64) -> Arc<TelemetryEvent> {
        Arc::new(TelemetryEvent {
            seq,
            at_ms: 1_000,
            kind: EventKind::ConnectionOpened {
                connection: connection(id),
            },
        })
    }

    fn closed(seq: u64, id: u64, reason: CloseKind) -> Arc<TelemetryEvent> {
        Arc::new(TelemetryEvent {
            seq,
            at_ms: 1_500,
            kind: EventKind::ConnectionClosed {
                connection: connection(id),
                reason,
                detail: format!("{reason} in words").into(),
            },
        })
    }

    fn rows(records: &[Record]) -> Vec<&ConnectionRecord> {
        records
            .iter()
            .filter_map(|r| match r {
                Record::Connection(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_connection_opened_and_closed_in_one_batch_is_one_row_and_no_log_rows() {
        let mut budget = Budget::new(0, IntCounter::new("skipped", "skipped").unwrap());
        let out = records(
            &[opened(10, 1), closed(11, 1, CloseKind::Done)],
            &mut budget,
            &Snapshotted::default(),
        );
        assert_eq!(out.len(), 1, "{out:?}");
        let row = rows(&out)[0];
        assert_eq!((row.opened_seq, row.closed_seq), (Some(10), Some(11)));
        assert_eq!(row.closed_at_ms, Some(1_500));
        assert_eq!(row.close_detail.as_deref(), Some("done in words"));
        assert_eq!(row.reactor, Some(0));
        let on_one = ConnectionSnapshot {
            reactor: 1,
            ..connection(2)
        };
        assert_eq!(connection_record(&on_one, None).reactor, Some(1));
    }

    #[test]
    fn over_the_budget_only_clean_short_connections_are_left_out_and_counted() {
        let skipped = IntCounter::new("skipped", "skipped").unwrap();
        let mut budget = Budget::new(1, skipped.clone());
        let out = records(
            &[
                opened(1, 1),
                closed(2, 1, CloseKind::Done),
                // Over the budget of one a second, and clean: left out.
                opened(3, 2),
                closed(4, 2, CloseKind::Reset),
                // Over the budget, but it timed out: kept.
                opened(5, 3),
                closed(6, 3, CloseKind::TimedOut),
                // Its opening was written by an earlier batch: its closing is kept.
                closed(7, 4, CloseKind::Done),
            ],
            &mut budget,
            &Snapshotted::default(),
        );
        let ids: Vec<i64> = rows(&out).iter().map(|r| r.id).collect();
        assert_eq!(ids, [1, 3, 4]);
        assert_eq!(skipped.get(), 1);
    }

    /// A connection a snapshot wrote as open while it lived has its closing written even
    /// when its opening and closing fall in one batch over the budget: its row would stay
    /// open for ever, and the next start would say the last one did not stop cleanly.
    #[test]
    fn a_connection_a_snapshot_wrote_open_gets_its_closing_over_the_budget() {
        let skipped = IntCounter::new("skipped", "skipped").unwrap();
        let mut budget = Budget::new(1, skipped.clone());
        let snapshotted = Snapshotted::default();
        snapshotted.lock().insert(2);
        let out = records(
            &[
                opened(1, 1),
                closed(2, 1, CloseKind::Done),
                // Over the budget, clean, but written open by a snapshot: kept.
                opened(3, 2),
                closed(4, 2, CloseKind::Done),
                // Over the budget, clean, never written: left out.
                opened(5, 3),
                closed(6, 3, CloseKind::Done),
            ],
            &mut budget,
            &snapshotted,
        );
        let ids: Vec<i64> = rows(&out).iter().map(|r| r.id).collect();
        assert_eq!(ids, [1, 2]);
        assert_eq!(skipped.get(), 1);
        assert!(snapshotted.lock().is_empty(), "forgotten once closed");
    }
}
