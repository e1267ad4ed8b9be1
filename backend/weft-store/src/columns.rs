//! How weft's vocabulary is kept in columns: each value of a closed set (a transport, a
//! close reason, a Deferred state, a step kind or outcome) as its label, the same text the
//! API shows, and read back into the enum here, in one place. A label this version does not
//! know (written by a newer one, or [`PROCESS_ENDED`](crate::PROCESS_ENDED)) reads as `None`.

use serde::Deserialize;
use serde::de::IntoDeserializer;
use serde::de::value::{Error as ValueError, StrDeserializer};
use weft::defer::{DeferredState, StepKind, StepStatus};
use weft::observe::{CloseKind, TransportKind};

use crate::records::{ConnectionRecord, DeferredRecord, StepRecord};

/// A closed set of weft's vocabulary, kept in a text column as its label.
pub trait Column: Copy + for<'de> Deserialize<'de> {
    /// The label the column holds (the value's `as_str`, its serde name).
    fn label(self) -> &'static str;

    /// The column's text for `self`.
    fn column(self) -> String {
        self.label().to_owned()
    }

    /// The value a column holds, if this version knows the label.
    fn parse(label: &str) -> Option<Self> {
        let text: StrDeserializer<'_, ValueError> = label.into_deserializer();
        Self::deserialize(text).ok()
    }
}

/// Each enum's label is its `as_str`, which weft keeps equal to its serde name.
macro_rules! labelled_by_as_str {
    ($($kind:ty),* $(,)?) => {$(
        impl Column for $kind {
            fn label(self) -> &'static str {
                self.as_str()
            }
        }
    )*};
}

labelled_by_as_str!(
    TransportKind,
    CloseKind,
    DeferredState,
    StepKind,
    StepStatus
);

impl ConnectionRecord {
    /// Its transport, if this version knows it.
    pub fn transport_kind(&self) -> Option<TransportKind> {
        TransportKind::parse(&self.transport)
    }

    /// Why it closed, once closed, if the reason is one of [`CloseKind`].
    pub fn close_kind(&self) -> Option<CloseKind> {
        self.close_reason.as_deref().and_then(CloseKind::parse)
    }
}

impl DeferredRecord {
    /// Its state, if this version knows it.
    pub fn deferred_state(&self) -> Option<DeferredState> {
        DeferredState::parse(&self.state)
    }
}

impl StepRecord {
    /// Its kind, if this version knows it.
    pub fn step_kind(&self) -> Option<StepKind> {
        StepKind::parse(&self.kind)
    }

    /// Its outcome, if this version knows it.
    pub fn status(&self) -> Option<StepStatus> {
        StepStatus::parse(&self.outcome)
    }
}

/// `('a', 'b', ...)`: the labels of `values`, as an SQL list (labels are identifiers: no
/// quote to escape).
fn sql_list<C: Column>(values: impl IntoIterator<Item = C>) -> String {
    let labels: Vec<String> = values
        .into_iter()
        .map(|v| format!("'{}'", v.label()))
        .collect();
    format!("({})", labels.join(", "))
}

/// `IN (...)` of the Deferred states that have not fired yet ([`DeferredState::is_pending`]):
/// the `WHERE` of the `deferreds_pending` index, word for word.
pub(crate) fn pending_states_sql() -> String {
    let pending = DeferredState::ALL.into_iter().filter(|s| s.is_pending());
    format!("IN {}", sql_list(pending))
}

/// `IN (...)` of the Deferred states that have ended: a row in one is final.
pub(crate) fn ended_states_sql() -> String {
    let ended = DeferredState::ALL.into_iter().filter(|s| !s.is_pending());
    format!("IN {}", sql_list(ended))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_reads_back_as_its_value() {
        for kind in CloseKind::ALL {
            assert_eq!(CloseKind::parse(kind.label()), Some(kind));
        }
        for state in DeferredState::ALL {
            assert_eq!(DeferredState::parse(&state.column()), Some(state));
        }
        for status in [StepStatus::Ok, StepStatus::Waiting, StepStatus::Queued] {
            assert_eq!(StepStatus::parse(status.label()), Some(status));
        }
        assert_eq!(TransportKind::parse("tls"), Some(TransportKind::Tls));
        assert_eq!(StepKind::parse("both"), Some(StepKind::Both));
        assert_eq!(CloseKind::parse(crate::PROCESS_ENDED), None);
        assert_eq!(DeferredState::parse("Pending"), None);
    }

    #[test]
    fn the_state_sets_are_those_of_the_schema() {
        assert_eq!(
            pending_states_sql(),
            "IN ('pending', 'running', 'paused', 'waiting')"
        );
        assert_eq!(
            ended_states_sql(),
            "IN ('succeeded', 'failed', 'cancelled')"
        );
    }
}
