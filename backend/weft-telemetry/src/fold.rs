//! Connections that open and close within one batch of bus events.
//!
//! Both readers of the bus take it in batches, and both fold such a brief connection into
//! its closing: the closing carries everything the opening did (id, service, peer, local
//! address, when it opened) plus the final counters. History writes it as one row; the
//! live feed sends it as one event. [`fold`] is that rule, for both.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use weft::observe::CloseKind;

use crate::bus::{EventKind, TelemetryEvent};

/// An event of a batch after folding.
#[derive(Debug, Clone, Copy)]
pub enum Folded<'a> {
    /// An event as it was: anything but the two halves of a brief connection.
    Event(&'a TelemetryEvent),
    /// The closing of a connection whose opening, event number `opened_seq`, is in the
    /// same batch and was left out.
    Brief {
        /// The `connection_closed` event.
        closing: &'a TelemetryEvent,
        /// The event number of the opening folded into it.
        opened_seq: u64,
        /// Why it closed.
        reason: CloseKind,
    },
}

/// The events of `batch` in order, each connection that opened and closed within it
/// reduced to its closing ([`Folded::Brief`]).
pub fn fold(batch: &[Arc<TelemetryEvent>]) -> impl Iterator<Item = Folded<'_>> {
    let opened: HashMap<u64, u64> = batch
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ConnectionOpened { connection } => Some((connection.id, e.seq)),
            _ => None,
        })
        .collect();
    let closed: HashSet<u64> = batch
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ConnectionClosed { connection, .. } => Some(connection.id),
            _ => None,
        })
        .collect();
    batch.iter().filter_map(move |e| match &e.kind {
        EventKind::ConnectionOpened { connection } if closed.contains(&connection.id) => None,
        EventKind::ConnectionClosed {
            connection, reason, ..
        } => Some(match opened.get(&connection.id) {
            Some(&opened_seq) => Folded::Brief {
                closing: e,
                opened_seq,
                reason: *reason,
            },
            None => Folded::Event(e),
        }),
        _ => Some(Folded::Event(e)),
    })
}
