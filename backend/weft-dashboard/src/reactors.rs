//! The reactor column and filter of the connection and Deferred lists (`[gateway] reactors`).
//!
//! The column and the filter are shown when there is more than one reactor to tell apart:
//! the hub is installed on several, a listed row ran on a reactor other than 0 (history
//! written by an earlier run with more reactors), or a `?reactor=` filter is given. With
//! one reactor every row would say 0, so the lists look as they always did.

use serde::{Deserialize, Deserializer};
use weft_telemetry::Hub;

/// Reactors a filter offers at most: `[gateway] reactors` is at most 256.
const MAX_CHOICES: usize = 256;

/// `?reactor=`: a reactor's index; empty (the filter form's "all") is no filter.
pub(crate) fn param<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => crate::data::parse_id(s).map(Some).ok_or_else(|| {
            serde::de::Error::custom("expected a reactor's index, a whole number from 0 to 65535")
        }),
    }
}

/// Whether a list shows its reactor column and filter, and which reactors the filter offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ReactorColumn {
    /// The column and the filter are shown.
    pub(crate) shown: bool,
    /// The reactors the filter offers, from 0.
    pub(crate) choices: Vec<u16>,
    /// The reactor filtered on.
    pub(crate) selected: Option<u16>,
}

impl ReactorColumn {
    /// For a list of rows of the reactors in `listed`, filtered on `selected`.
    pub(crate) fn new(
        hub: &Hub,
        listed: impl IntoIterator<Item = Option<u16>>,
        selected: Option<u16>,
    ) -> Self {
        let highest = listed
            .into_iter()
            .flatten()
            .chain(selected)
            .max()
            .map_or(0, |r| usize::from(r) + 1);
        let count = hub.reactor_count().max(highest).min(MAX_CHOICES);
        let shown = count > 1 || selected.is_some();
        let choices = (0..count).filter_map(|r| u16::try_from(r).ok()).collect();
        Self {
            shown,
            choices: if shown { choices } else { Vec::new() },
            selected,
        }
    }

    /// Whether the filter is on reactor `r`.
    pub(crate) fn is(&self, r: &u16) -> bool {
        self.selected == Some(*r)
    }
}

/// A stored reactor index as the lists show it.
pub(crate) fn of_record(reactor: Option<i64>) -> Option<u16> {
    reactor.and_then(|r| u16::try_from(r).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_reactor_hides_the_column_and_a_second_or_a_filter_shows_it() {
        let hub = Hub::new(weft_telemetry::HubConfig::default()).unwrap();
        let one = ReactorColumn::new(&hub, [Some(0), None], None);
        assert!(!one.shown && one.choices.is_empty());
        let two = ReactorColumn::new(&hub, [Some(0), Some(1)], None);
        assert_eq!((two.shown, two.choices), (true, vec![0, 1]));
        let filtered = ReactorColumn::new(&hub, [], Some(0));
        assert_eq!((filtered.shown, filtered.choices), (true, vec![0]));
        let huge = ReactorColumn::new(&hub, [Some(u16::MAX)], None);
        assert_eq!(huge.choices.len(), MAX_CHOICES, "the choices are bounded");
    }
}
