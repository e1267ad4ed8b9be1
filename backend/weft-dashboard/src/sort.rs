//! The order of the connections list: `?sort=KEY&dir=asc|desc`, shared by the page, its
//! column headers and `/api/connections`, with the same rules as
//! `frontend/static/connections.js` (ties go to the newest id first).

use std::cmp::Ordering;

use crate::data::ConnectionView;
use crate::error::ApiError;

/// A column the connections list sorts by, named as the page's headers and the JSON fields
/// name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    /// The connection id: the order connections opened in.
    #[default]
    Id,
    /// The service's name.
    Service,
    /// `tcp`, `udp`, ...
    Transport,
    /// The remote address, as text.
    Peer,
    /// How long it has been (or was) open.
    Age,
    /// Bytes received.
    BytesIn,
    /// Bytes sent.
    BytesOut,
    /// `open` or `closed`.
    State,
}

impl SortKey {
    /// Every key, in the order the page's columns show them.
    pub const ALL: [SortKey; 8] = [
        Self::Id,
        Self::Service,
        Self::Transport,
        Self::Peer,
        Self::Age,
        Self::BytesIn,
        Self::BytesOut,
        Self::State,
    ];

    /// The accepted values of `sort`, for error messages.
    const EXPECTED: &'static str =
        "id, service, transport, peer, age_ms, bytes_in, bytes_out, state";

    /// The name in `?sort=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::Service => "service",
            Self::Transport => "transport",
            Self::Peer => "peer",
            Self::Age => "age_ms",
            Self::BytesIn => "bytes_in",
            Self::BytesOut => "bytes_out",
            Self::State => "state",
        }
    }

    /// Whether the column holds numbers (compared as numbers, not text).
    pub fn numeric(self) -> bool {
        matches!(self, Self::Id | Self::Age | Self::BytesIn | Self::BytesOut)
    }

    fn compare(self, a: &ConnectionView, b: &ConnectionView) -> Ordering {
        match self {
            Self::Id => a.id.cmp(&b.id),
            Self::Service => a.service.cmp(&b.service),
            Self::Transport => a.transport.cmp(&b.transport),
            Self::Peer => a.peer.cmp(&b.peer),
            Self::Age => a.age_ms.cmp(&b.age_ms),
            Self::BytesIn => a.bytes_in.cmp(&b.bytes_in),
            Self::BytesOut => a.bytes_out.cmp(&b.bytes_out),
            Self::State => a.state.cmp(b.state),
        }
    }
}

/// Ascending or descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortDir {
    /// Smallest first.
    Asc,
    /// Largest (or newest) first.
    #[default]
    Desc,
}

impl SortDir {
    /// The name in `?dir=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Asc => "asc",
            Self::Desc => "desc",
        }
    }
}

/// How to order the connections list; the default is the newest id first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectionOrder {
    /// The column.
    pub key: SortKey,
    /// The direction.
    pub dir: SortDir,
}

impl ConnectionOrder {
    /// Reads `?sort=` and `?dir=` (absent or blank: the default), or says which values are
    /// accepted.
    pub fn parse(sort: Option<&str>, dir: Option<&str>) -> Result<Self, ApiError> {
        let key = match sort {
            None => SortKey::default(),
            Some(s) => SortKey::ALL
                .into_iter()
                .find(|k| k.as_str() == s)
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "unknown sort key {s:?}; expected one of: {}",
                        SortKey::EXPECTED
                    ))
                })?,
        };
        let dir = match dir {
            None => SortDir::default(),
            Some("asc") => SortDir::Asc,
            Some("desc") => SortDir::Desc,
            Some(d) => {
                return Err(ApiError::BadRequest(format!(
                    "unknown sort direction {d:?}; expected one of: asc, desc"
                )));
            }
        };
        Ok(Self { key, dir })
    }

    /// Sorts `rows` in this order; equal rows keep the newest id first, whatever the
    /// direction.
    pub fn sort(self, rows: &mut [ConnectionView]) {
        rows.sort_by(|a, b| {
            let by_key = self.key.compare(a, b);
            let by_key = match self.dir {
                SortDir::Asc => by_key,
                SortDir::Desc => by_key.reverse(),
            };
            by_key.then_with(|| b.id.cmp(&a.id))
        });
    }

    /// The order a click on `key`'s header asks for: the other direction on the column
    /// sorted now, else that column from the largest down.
    pub fn toggled(self, key: SortKey) -> Self {
        let dir = if self.key == key && self.dir == SortDir::Desc {
            SortDir::Asc
        } else {
            SortDir::Desc
        };
        Self { key, dir }
    }

    /// `sort` and `dir` as query pairs, leaving out the defaults (as the page's script
    /// writes its URL).
    pub fn query_pairs(self) -> impl Iterator<Item = (&'static str, &'static str)> {
        let sort = (self.key != SortKey::default()).then_some(("sort", self.key.as_str()));
        let dir = (self.dir != SortDir::default()).then_some(("dir", self.dir.as_str()));
        sort.into_iter().chain(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(id: u64, service: &str, bytes_in: u64) -> ConnectionView {
        ConnectionView {
            id,
            service: service.into(),
            transport: "tcp".into(),
            peer: format!("10.0.0.{id}:5000"),
            local: "127.0.0.1:8000".into(),
            state: "open",
            opened_at_ms: 0,
            closed_at_ms: None,
            age_ms: 0,
            bytes_in,
            bytes_out: 0,
            reads: 0,
            writes: 0,
            close_reason: None,
            reactor: None,
            instance: String::new(),
        }
    }

    fn ids(rows: &[ConnectionView]) -> Vec<u64> {
        rows.iter().map(|c| c.id).collect()
    }

    #[test]
    fn numbers_sort_as_numbers_and_ties_keep_the_newest_first() {
        let mut rows = vec![conn(1, "b", 9), conn(2, "a", 10), conn(3, "a", 9)];
        let order = ConnectionOrder::parse(Some("bytes_in"), Some("asc")).unwrap();
        order.sort(&mut rows);
        assert_eq!(
            ids(&rows),
            vec![3, 1, 2],
            "9 < 10, and 3 before 1 on the tie"
        );
        ConnectionOrder::parse(Some("service"), None)
            .unwrap()
            .sort(&mut rows);
        assert_eq!(ids(&rows), vec![1, 3, 2]);
        ConnectionOrder::default().sort(&mut rows);
        assert_eq!(ids(&rows), vec![3, 2, 1]);
    }

    #[test]
    fn unknown_values_name_the_accepted_ones() {
        let e = ConnectionOrder::parse(Some("colour"), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown sort key \"colour\"; expected one of: id, service, transport, peer, \
             age_ms, bytes_in, bytes_out, state"
        );
        let e = ConnectionOrder::parse(None, Some("up")).unwrap_err();
        assert!(e.to_string().contains("expected one of: asc, desc"), "{e}");
    }

    #[test]
    fn a_header_click_flips_its_own_column_and_starts_others_from_the_top() {
        let by_peer = ConnectionOrder {
            key: SortKey::Peer,
            dir: SortDir::Desc,
        };
        assert_eq!(by_peer.toggled(SortKey::Peer).dir, SortDir::Asc);
        assert_eq!(
            by_peer.toggled(SortKey::Peer).toggled(SortKey::Peer).dir,
            SortDir::Desc
        );
        assert_eq!(by_peer.toggled(SortKey::Age).dir, SortDir::Desc);
        assert_eq!(ConnectionOrder::default().query_pairs().count(), 0);
        assert_eq!(
            by_peer
                .toggled(SortKey::Peer)
                .query_pairs()
                .collect::<Vec<_>>(),
            vec![("sort", "peer"), ("dir", "asc")]
        );
    }
}
