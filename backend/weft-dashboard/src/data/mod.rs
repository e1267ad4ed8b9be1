//! The dashboard's view of the world: live figures from the hub merged with history from
//! the store, as plain serializable rows shared by the pages, the JSON API and `/ws`.
//!
//! Live rows come from the hub's memory and never wait on the store. When history cannot
//! be read, a view that has live rows answers with them and a note (`history_error`); one
//! that is history only answers `503` ([`ApiError::HistoryUnavailable`]).
//!
//! This file holds what every list and detail shares (limits, ids, [`Page`]); the rows of
//! each are beside it: `connections.rs` ([`ConnectionView`]), `deferreds.rs`
//! ([`DeferredView`], and a live chain as the store would keep it), `services.rs`
//! ([`ServiceView`]).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

mod connections;
mod deferreds;
mod services;

pub use connections::{ConnectionQuery, ConnectionView, connection, connections};
pub use deferreds::{
    DeferredQuery, DeferredView, chain_waits, connection_deferreds, deferred, deferred_filter,
    deferred_record, deferreds, deferreds_waiting_on, named_step_records, step_records, waiting_at,
};
pub use services::{ServiceView, live_service_names, services};

/// Rows a list returns when no `limit` is given.
pub const DEFAULT_LIMIT: u32 = 500;

/// Now, unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// An id from a path: digits only (no sign, no spaces) and within range, else `None`.
pub fn parse_id<T: std::str::FromStr>(raw: &str) -> Option<T> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

/// [`parse_id`] for the JSON API: a `400` naming what `raw` should have been (and not
/// repeating it); a whole number too large to be an id is one no `what` has, `404`.
pub fn api_id<T: std::str::FromStr>(raw: &str, what: &'static str) -> Result<T, ApiError> {
    parse_id(raw).ok_or_else(
        || match !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
            true => ApiError::NotFound(what),
            false => ApiError::BadRequest(format!("a {what} id is a whole number")),
        },
    )
}

/// A capped list and how many rows the cap hid.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    /// The rows, newest first unless another order was asked for.
    pub items: Vec<T>,
    /// Rows that matched but were left out by the limit (a lower bound for history).
    pub hidden: usize,
    /// Set when history could not be read: the rows are the live ones only, and this
    /// says why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_error: Option<String>,
}

/// A query parameter that says something: `None` when absent or blank.
fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// `?instance=` of a detail page: the gateway whose row of that id it shows (this one's
/// when empty).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DetailQuery {
    /// The instance (`[gateway] instance`) that wrote the row.
    pub instance: Option<String>,
}
