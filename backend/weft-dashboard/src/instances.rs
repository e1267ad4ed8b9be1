//! The instance filter of the list pages and the instance a history row names, where
//! history holds rows of more than one gateway (`[gateway] instance`): a fleet sharing a
//! PostgreSQL database, or a file a renamed host wrote under both names.

use crate::fmt;
use crate::history;
use crate::state::DashboardState;

/// The instance filter of a list page, and how its rows link to their pages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct InstanceFilter {
    /// The filter is offered: history holds more than one instance, or one is asked for.
    pub(crate) shown: bool,
    /// The instances to choose from, by name.
    pub(crate) choices: Vec<String>,
    /// The instance filtered on (empty: every one).
    pub(crate) selected: String,
    /// This gateway's instance: its rows' pages need no `?instance=`.
    pub(crate) own: String,
}

impl InstanceFilter {
    /// The filter on `selected` without asking history which instances it holds: for a
    /// view that must not wait on it (the open connections, a connection's chains).
    pub(crate) fn asked(state: &DashboardState, selected: Option<&str>) -> Self {
        let selected = selected.map(str::trim).unwrap_or_default().to_owned();
        Self {
            shown: !selected.is_empty(),
            choices: Some(selected.clone())
                .filter(|s| !s.is_empty())
                .into_iter()
                .collect(),
            selected,
            own: history::own_instance(state).to_owned(),
        }
    }

    /// The filter of a list filtered on `selected`, offering the instances history holds;
    /// and the note when history could not say which.
    pub(crate) async fn new(
        state: &DashboardState,
        selected: Option<&str>,
    ) -> (Self, Option<String>) {
        let mut filter = Self::asked(state, selected);
        let (held, note) = match &state.store {
            Some(store) => history::or_note(state, store.instances().await, Vec::new()),
            None => (Vec::new(), None),
        };
        for name in held {
            if !filter.choices.contains(&name) {
                filter.choices.push(name);
            }
        }
        filter.choices.sort_unstable();
        filter.shown |= filter.choices.len() > 1;
        (filter, note)
    }

    /// Whether the filter is on `name`.
    pub(crate) fn is(&self, name: &str) -> bool {
        self.selected == name
    }

    /// What a link to the page of a row `instance` wrote adds: nothing for this gateway's.
    pub(crate) fn query(&self, instance: &str) -> String {
        if instance.is_empty() || instance == self.own {
            String::new()
        } else {
            format!("?instance={}", fmt::url(instance))
        }
    }
}

/// The instance `instance` names when it is another gateway's; `None` for this one's.
pub(crate) fn other<'a>(state: &DashboardState, instance: Option<&'a str>) -> Option<&'a str> {
    let own = history::own_instance(state);
    instance
        .map(str::trim)
        .filter(|i| !i.is_empty() && *i != own)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_of_another_instance_links_to_its_page_with_its_name_encoded() {
        let filter = InstanceFilter {
            own: "edge-a".into(),
            ..InstanceFilter::default()
        };
        assert_eq!(
            filter.query("edge-a"),
            "",
            "this gateway's rows need no name"
        );
        assert_eq!(
            filter.query(""),
            "",
            "rows written before instances were kept"
        );
        assert_eq!(filter.query("edge b/<1>"), "?instance=edge%20b%2F%3C1%3E");
    }
}
