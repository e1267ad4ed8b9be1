//! The connection rows: open ones from the hub, closed ones from history, listed in the
//! order asked for ([`connections`]) or one at a time ([`connection`]).

use serde::{Deserialize, Serialize};
use weft::observe::ConnectionId;
use weft_store::{Column, ConnectionRecord, ConnectionState, ListFilter};
use weft_telemetry::ConnectionSnapshot;

use super::{DEFAULT_LIMIT, Page, non_empty, now_ms};
use crate::error::ApiError;
use crate::history;
use crate::sort::ConnectionOrder;
use crate::state::DashboardState;

/// One connection, open (from the hub) or closed (from history).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionView {
    /// The reactor's connection id.
    pub id: u64,
    /// Its service.
    pub service: String,
    /// `tcp`, `udp`, `unix`, `tls`.
    pub transport: String,
    /// The remote address (peer-controlled text: always escaped).
    pub peer: String,
    /// The local address.
    pub local: String,
    /// `open` or `closed`.
    pub state: &'static str,
    /// When it opened, unix milliseconds.
    pub opened_at_ms: i64,
    /// When it closed, unix milliseconds.
    pub closed_at_ms: Option<i64>,
    /// How long it has been (or was) open, milliseconds.
    pub age_ms: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Reads.
    pub reads: u64,
    /// Writes.
    pub writes: u64,
    /// Why it closed.
    pub close_reason: Option<String>,
    /// The index of the reactor that owns (or owned) it; `None` in history written before
    /// the reactor was kept.
    pub reactor: Option<u16>,
    /// The gateway that served it (`[gateway] instance`).
    pub instance: String,
}

impl From<ConnectionSnapshot> for ConnectionView {
    fn from(c: ConnectionSnapshot) -> Self {
        Self {
            id: c.id,
            service: c.service.to_string(),
            transport: c.transport.column(),
            peer: c.peer.to_string(),
            local: c.local.to_string(),
            state: "open",
            opened_at_ms: c.opened_at_ms,
            closed_at_ms: None,
            age_ms: c.age_ms,
            bytes_in: c.bytes_in,
            bytes_out: c.bytes_out,
            reads: c.reads,
            writes: c.writes,
            close_reason: None,
            reactor: Some(c.reactor),
            instance: String::new(),
        }
    }
}

impl ConnectionView {
    /// A row from history; its age runs to its close, or to `now_ms` if it never closed
    /// (a connection the last run left open).
    pub fn from_record(r: ConnectionRecord, now_ms: i64) -> Self {
        let u = |v: i64| u64::try_from(v).unwrap_or(0);
        Self {
            id: u(r.id),
            state: if r.is_open() { "open" } else { "closed" },
            age_ms: u(r.closed_at_ms.unwrap_or(now_ms) - r.opened_at_ms),
            service: r.service,
            transport: r.transport,
            peer: r.peer,
            local: r.local,
            opened_at_ms: r.opened_at_ms,
            closed_at_ms: r.closed_at_ms,
            bytes_in: u(r.bytes_in),
            bytes_out: u(r.bytes_out),
            reads: u(r.reads),
            writes: u(r.writes),
            close_reason: r.close_reason,
            reactor: crate::reactors::of_record(r.reactor),
            instance: r.instance,
        }
    }
}

/// The longest `peer` filter: a Unix socket path (108 bytes) and more.
pub(crate) const MAX_PEER_FILTER: usize = 256;

/// `?state=&service=&peer=&reactor=&sort=&dir=&limit=` of the connection lists.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConnectionQuery {
    /// `open`, `closed`, or empty for both.
    pub state: Option<String>,
    /// Only this service.
    pub service: Option<String>,
    /// Only peers containing this text.
    pub peer: Option<String>,
    /// Only connections of this reactor.
    #[serde(default, deserialize_with = "crate::reactors::param")]
    pub reactor: Option<u16>,
    /// Only those of this gateway (`[gateway] instance`) of a fleet sharing history.
    pub instance: Option<String>,
    /// The column to sort by ([`SortKey`](crate::sort::SortKey)); the id when empty.
    pub sort: Option<String>,
    /// `asc` or `desc` (the default).
    pub dir: Option<String>,
    /// At most this many rows.
    pub limit: Option<u32>,
}

impl ConnectionQuery {
    /// The order asked for, or a 400 naming the accepted values.
    pub fn order(&self) -> Result<ConnectionOrder, ApiError> {
        ConnectionOrder::parse(non_empty(&self.sort), non_empty(&self.dir))
    }
}

/// The connections `q` asks for: open ones from the hub (always current), closed ones
/// from history (the most recently closed, as many as the limit), in the order asked for;
/// the limit then keeps the first rows of that order.
pub async fn connections(
    state: &DashboardState,
    q: &ConnectionQuery,
) -> Result<Page<ConnectionView>, ApiError> {
    let which = non_empty(&q.state)
        .map(|s| s.parse::<ConnectionState>())
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let order = q.order()?;
    let service = non_empty(&q.service);
    let peer = non_empty(&q.peer);
    if let Some(peer) = peer
        && peer.len() > MAX_PEER_FILTER
    {
        // A pattern that long is no address, and costs history a search it may refuse.
        return Err(ApiError::BadRequest(format!(
            "peer: at most {MAX_PEER_FILTER} bytes (an address with its port is far \
             shorter), got {}",
            peer.len()
        )));
    }
    let instance = non_empty(&q.instance);
    let own = history::own_instance(state);
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(weft_store::MAX_LIMIT) as usize;
    let keep = |c: &ConnectionView| {
        service.is_none_or(|s| c.service == s)
            && peer.is_none_or(|p| c.peer.contains(p))
            && q.reactor.is_none_or(|r| c.reactor == Some(r))
    };
    let mut rows: Vec<ConnectionView> = Vec::new();
    let mut history_error = None;
    // Live connections are this gateway's own.
    if which != Some(ConnectionState::Closed) && instance.is_none_or(|i| i == own) {
        rows.extend(
            state
                .hub
                .connections()
                .into_iter()
                .map(|c| ConnectionView {
                    instance: own.to_owned(),
                    ..ConnectionView::from(c)
                })
                .filter(keep),
        );
    }
    if which != Some(ConnectionState::Open)
        && let Some(store) = &state.store
    {
        let now = now_ms();
        // One more than needed tells whether the cap hid something.
        let want = u32::try_from(limit + 1).unwrap_or(u32::MAX);
        let (closed, error) = history::or_note(
            state,
            store
                .connections_where(
                    Some(ConnectionState::Closed),
                    ListFilter {
                        service,
                        instance,
                        reactor: q.reactor,
                        peer,
                    },
                    want,
                )
                .await,
            Vec::new(),
        );
        history_error = error;
        rows.extend(
            closed
                .into_iter()
                .map(|r| ConnectionView::from_record(r, now))
                .filter(keep),
        );
    }
    order.sort(&mut rows);
    let hidden = rows.len().saturating_sub(limit);
    rows.truncate(limit);
    Ok(Page {
        items: rows,
        hidden,
        history_error,
    })
}

/// One connection of this gateway, live if open, else from history, or of `instance`
/// from history (`503` if history cannot be read).
pub async fn connection(
    state: &DashboardState,
    id: u64,
    instance: Option<&str>,
) -> Result<Option<ConnectionView>, ApiError> {
    let other = crate::instances::other(state, instance);
    if other.is_none()
        && let Some(c) = state.hub.connection(ConnectionId(id))
    {
        return Ok(Some(ConnectionView {
            instance: history::own_instance(state).to_owned(),
            ..c.into()
        }));
    }
    // Closed a moment ago: history may not have its close yet, and would say it is open.
    if other.is_none()
        && let Some(event) = state.hub.recent().closed_connection(id)
        && let weft_telemetry::EventKind::ConnectionClosed {
            connection, reason, ..
        } = &event.kind
    {
        use weft_store::Column as _;
        return Ok(Some(ConnectionView {
            state: "closed",
            closed_at_ms: Some(event.at_ms),
            close_reason: Some(reason.column()),
            instance: history::own_instance(state).to_owned(),
            ..connection.clone().into()
        }));
    }
    let Some(store) = &state.store else {
        return Ok(None);
    };
    let id = i64::try_from(id).map_err(|_| ApiError::NotFound("connection"))?;
    let record = store
        .connection_of(id, other)
        .await
        .map_err(|e| ApiError::HistoryUnavailable(history::unavailable(state, &e)))?;
    Ok(record.map(|r| ConnectionView::from_record(r, now_ms())))
}
