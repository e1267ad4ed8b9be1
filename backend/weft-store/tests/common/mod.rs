//! Fixtures shared by the integration tests.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::time::{Duration, Instant};

use weft_store::{
    ConnectionRecord, ConnectionState, DeferredFilter, DeferredRecord, EventRecord, ListFilter,
    StepRecord, Store, StoreOptions,
};

/// Options for a store in `dir` that flushes quickly and never prunes on its own.
pub fn options(dir: &Path) -> StoreOptions {
    let mut options = StoreOptions::new(dir.join("history.db"));
    options.flush_interval = Duration::from_millis(20);
    options.busy_timeout = Duration::from_millis(200);
    options.prune_interval = Duration::from_secs(3600);
    options
}

pub async fn open(dir: &Path) -> Store {
    Store::open_with(options(dir)).await.expect("store opens")
}

pub fn event(seq: i64) -> EventRecord {
    EventRecord {
        seq,
        at_ms: 1_700_000_000_000 + seq,
        kind: "connection_opened".into(),
        payload_json: format!(r#"{{"connection":{seq}}}"#),
    }
}

pub fn connection(
    id: i64,
    service: &str,
    opened_at_ms: i64,
    closed_at_ms: Option<i64>,
) -> ConnectionRecord {
    ConnectionRecord {
        id,
        service: service.into(),
        transport: "tcp".into(),
        peer: "127.0.0.1:50000".into(),
        local: "127.0.0.1:8000".into(),
        opened_at_ms,
        closed_at_ms,
        bytes_in: 10,
        bytes_out: 20,
        reads: 1,
        writes: 2,
        close_reason: closed_at_ms.map(|_| "eof".into()),
        close_detail: None,
        opened_seq: None,
        closed_seq: None,
        reactor: Some(0),
        instance: weft_store::default_instance(),
    }
}

pub fn deferred(id: i64, state: &str, created_at_ms: i64) -> DeferredRecord {
    let fired = matches!(state, "succeeded" | "failed" | "cancelled");
    DeferredRecord {
        id,
        parent_id: None,
        label: None,
        site: "src/echo.rs:42".into(),
        connection_id: None,
        service: Some("echo".into()),
        state: state.into(),
        created_at_ms,
        fired_at_ms: fired.then_some(created_at_ms + 5),
        current_step: None,
        waiting_on: None,
        failure: (state == "failed").then(|| "ConnectionLost".into()),
        stalled: false,
        slow: false,
        unhandled: false,
        leaked: false,
        deadlock: false,
        step_name: None,
        step_detail: None,
        waiting_on_connection: None,
        named_steps_json: None,
        kind: None,
        task_json: None,
        reactor: Some(0),
        ended_at_ms: fired.then_some(created_at_ms + 5),
        instance: weft_store::default_instance(),
    }
}

pub fn step(deferred_id: i64, idx: i64, started_at_us: i64) -> StepRecord {
    StepRecord {
        deferred_id,
        idx,
        kind: "callback".into(),
        site: format!("src/echo.rs:{}", 50 + idx),
        started_at_us,
        duration_us: Some(120),
        outcome: "ok".into(),
        child_id: None,
    }
}

/// `PRAGMA integrity_check` on a fresh connection to the file.
pub async fn integrity(path: &Path) -> String {
    use sqlx::{ConnectOptions, Connection};
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .expect("file opens");
    let (result,): (String,) = sqlx::query_as("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .expect("integrity_check runs");
    conn.close().await.ok();
    result
}

/// Options for a store of `instance` in the PostgreSQL database at `url`, flushing quickly
/// and never pruning on its own.
pub fn pg_options(url: &str, instance: &str) -> StoreOptions {
    let mut options = StoreOptions::postgres(url);
    options.instance = instance.into();
    options.flush_interval = Duration::from_millis(20);
    options.busy_timeout = Duration::from_millis(500);
    options.prune_interval = Duration::from_secs(3600);
    options
}

/// Sends `range` and asserts no send waited, whatever state the database is in.
pub fn send_all(store: &Store, range: std::ops::RangeInclusive<i64>) {
    let start = Instant::now();
    for seq in range {
        store.try_send(event(seq));
    }
    // Under the busy timeout of `options` (200 ms), which a send that waited would take.
    assert!(
        start.elapsed() < Duration::from_millis(190),
        "try_send must never wait: {:?}",
        start.elapsed()
    );
}

/// Rows of reactors 0 and 1 and a row that does not know its reactor (as written before
/// history kept it): each reads back with its reactor, `reactor` filters the lists (of
/// connections, and of chains and tasks), and a later write that does not know the reactor
/// keeps the stored one.
pub async fn reactors_are_kept_and_filtered(store: &Store) {
    let on = |reactor: Option<i64>, c: ConnectionRecord| ConnectionRecord { reactor, ..c };
    store.try_send(on(Some(0), connection(1, "echo", 1_000, Some(1_100))));
    store.try_send(on(Some(1), connection(2, "echo", 1_200, Some(1_300))));
    store.try_send(on(None, connection(3, "echo", 1_400, Some(1_500))));
    store.try_send(on(Some(1), connection(4, "web", 1_600, None)));
    for (id, reactor) in [(5, Some(0)), (6, Some(1)), (7, None)] {
        store.try_send(DeferredRecord {
            reactor,
            ..deferred(id, "failed", 2_000 + id)
        });
    }
    store.try_send(DeferredRecord {
        reactor: Some(1),
        kind: Some("task".into()),
        ..deferred(8, "pending", 2_100)
    });
    store.flush().await.unwrap();
    // A snapshot that does not know the reactor (a detection after the chain was forgotten).
    store.try_send(DeferredRecord {
        reactor: None,
        unhandled: true,
        ..deferred(6, "failed", 2_006)
    });
    store.flush().await.unwrap();

    let of = |reactor| ListFilter {
        reactor: Some(reactor),
        ..ListFilter::default()
    };
    let ids = |rows: Vec<ConnectionRecord>| rows.iter().map(|c| (c.id, c.reactor)).collect();
    let closed = Some(ConnectionState::Closed);
    let on_one: Vec<_> = ids(store.connections_where(closed, of(1), 100).await.unwrap());
    assert_eq!(on_one, [(2, Some(1))]);
    let all_on_one: Vec<_> = ids(store.connections_where(None, of(1), 100).await.unwrap());
    assert_eq!(all_on_one, [(4, Some(1)), (2, Some(1))]);
    let on_zero: Vec<_> = ids(store.connections_where(closed, of(0), 100).await.unwrap());
    assert_eq!(on_zero, [(1, Some(0))]);
    let unknown = store.connection(3).await.unwrap().expect("connection 3");
    assert_eq!(
        unknown.reactor, None,
        "a row without a reactor reads as unknown"
    );

    let chains = |rows: Vec<DeferredRecord>| -> Vec<(i64, Option<i64>)> {
        rows.iter().map(|d| (d.id, d.reactor)).collect()
    };
    let failed = Some(DeferredFilter::Failed);
    let on_one = chains(store.deferreds_where(failed, of(1), 100).await.unwrap());
    assert_eq!(on_one, [(6, Some(1))], "the stored reactor stays");
    let on_one = chains(store.deferreds_where(None, of(1), 100).await.unwrap());
    assert_eq!(on_one, [(8, Some(1)), (6, Some(1))], "tasks too");
    let on_zero = chains(store.deferreds_where(None, of(0), 100).await.unwrap());
    assert_eq!(on_zero, [(5, Some(0))]);
    let seven = store.deferred(7).await.unwrap().expect("chain 7");
    assert_eq!(seven.deferred.reactor, None);
}

/// `peer` filters the connections list in the query, so an old closed connection of a
/// peer is found however many others closed since, and the text is matched as it is (`_`
/// and `%` are not wildcards).
pub async fn closed_connections_filter_by_peer(store: &Store) {
    let from = |peer: &str, c: ConnectionRecord| ConnectionRecord {
        peer: peer.into(),
        ..c
    };
    store.try_send(from(
        "192.0.2.7:4000",
        connection(1, "echo", 1_000, Some(1_100)),
    ));
    for id in 2..50 {
        store.try_send(from(
            "198.51.100.1:5000",
            connection(id, "echo", 1_000 + id, Some(2_000 + id)),
        ));
    }
    store.try_send(from("a_b%c", connection(50, "echo", 3_000, Some(3_100))));
    store.flush().await.unwrap();
    let ids = |peer| async move {
        let filter = ListFilter {
            peer: Some(peer),
            ..ListFilter::default()
        };
        store
            .connections_where(Some(ConnectionState::Closed), filter, 5)
            .await
            .unwrap()
            .iter()
            .map(|c| c.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids("192.0.2.7").await, [1], "the oldest row, 49 rows back");
    assert_eq!(ids("_b%").await, [50]);
    assert_eq!(ids("%").await, [50], "% is matched as it is");
    assert_eq!(ids("198.51.100.1:5000").await.len(), 5, "the limit holds");
}
