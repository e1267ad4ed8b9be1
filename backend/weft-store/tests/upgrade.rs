//! Upgrades: a history file written by a released version opens with this build, gets the
//! migrations added since, and serves every row it held.

mod common;

use std::path::{Path, PathBuf};

use sqlx::{ConnectOptions, Connection, SqliteConnection};
use weft_store::{
    ConnectionRecord, DeferredRecord, EventRecord, ListFilter, MAX_LIMIT, ServiceRecord,
    StepRecord, Store,
};

/// The file `weft 0.1.0` wrote (see `tests/data/README.md`).
fn released_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/history-v0.1.0.db")
}

/// The file as it is, read with plain SQL and no migrations: what the store must serve.
struct Rows {
    services: Vec<ServiceRecord>,
    connections: Vec<ConnectionRecord>,
    deferreds: Vec<DeferredRecord>,
    steps: Vec<StepRecord>,
    events: Vec<EventRecord>,
}

/// Reads a copy: even a read-only connection to a WAL file writes its `-shm` beside it.
async fn raw_rows(path: &Path) -> Rows {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("released.db");
    std::fs::copy(path, &copy).unwrap();
    let mut conn: SqliteConnection = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&copy)
        .connect()
        .await
        .expect("the released file opens");
    let rows = Rows {
        services: sqlx::query_as("SELECT * FROM services ORDER BY name")
            .fetch_all(&mut conn)
            .await
            .unwrap(),
        connections: sqlx::query_as("SELECT * FROM connections ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .unwrap(),
        deferreds: sqlx::query_as("SELECT * FROM deferreds ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .unwrap(),
        steps: sqlx::query_as("SELECT * FROM deferred_steps ORDER BY deferred_id, idx")
            .fetch_all(&mut conn)
            .await
            .unwrap(),
        events: sqlx::query_as("SELECT * FROM events ORDER BY seq")
            .fetch_all(&mut conn)
            .await
            .unwrap(),
    };
    conn.close().await.ok();
    rows
}

#[tokio::test]
async fn a_history_file_written_by_0_1_0_opens_and_serves_every_row() {
    let released = raw_rows(&released_file()).await;
    // What the file holds (its README): the comparisons below are not over empty tables.
    assert_eq!(released.services.len(), 4);
    assert_eq!(released.connections.len(), 64);
    assert_eq!(released.deferreds.len(), 16);
    assert_eq!(released.steps.len(), 8);
    assert!(!released.events.is_empty());

    let dir = tempfile::tempdir().unwrap();
    let mut options = common::options(dir.path());
    std::fs::copy(released_file(), &options.path).unwrap();
    // Its rows are older than any retention window by the time this runs.
    options.retention = std::time::Duration::from_secs(100 * 365 * 24 * 3600);
    let store = Store::open_with(options.clone())
        .await
        .expect("this build opens a file 0.1.0 wrote, migrating it");

    assert_eq!(store.services().await.unwrap(), released.services);

    let mut connections = store.connections(None, None, MAX_LIMIT).await.unwrap();
    connections.sort_by_key(|c| c.id);
    assert_eq!(connections, released.connections);
    let closed = store
        .connections(Some("closed".parse().unwrap()), Some("echo"), MAX_LIMIT)
        .await
        .unwrap();
    let echo_closed = released
        .connections
        .iter()
        .filter(|c| c.service == "echo" && !c.is_open())
        .count();
    assert_eq!(closed.len(), echo_closed);

    let mut deferreds = store.deferreds(None, None, MAX_LIMIT).await.unwrap();
    deferreds.sort_by_key(|d| d.id);
    assert_eq!(deferreds, released.deferreds);
    // 0.1.0 did not keep the reactor: its rows read as of no known reactor, and a list of
    // one reactor's rows holds none of them.
    assert!(connections.iter().all(|c| c.reactor.is_none()));
    assert!(deferreds.iter().all(|d| d.reactor.is_none()));
    let reactor_zero = ListFilter {
        reactor: Some(0),
        ..ListFilter::default()
    };
    let of_zero = store.connections_where(None, reactor_zero, MAX_LIMIT);
    assert_eq!(of_zero.await.unwrap(), []);
    let of_zero = store.deferreds_where(None, reactor_zero, MAX_LIMIT);
    assert_eq!(of_zero.await.unwrap(), []);
    let stalled = store
        .deferreds(Some("stalled".parse().unwrap()), None, MAX_LIMIT)
        .await
        .unwrap();
    assert_eq!(
        stalled.len(),
        released.deferreds.iter().filter(|d| d.stalled).count()
    );
    for d in &released.deferreds {
        let detail = store.deferred(d.id).await.unwrap().expect("each chain");
        let steps: Vec<StepRecord> = released
            .steps
            .iter()
            .filter(|s| s.deferred_id == d.id)
            .cloned()
            .collect();
        assert_eq!(detail.steps, steps, "the steps of chain {}", d.id);
    }

    let events = store.events_after(0, MAX_LIMIT).await.unwrap();
    for e in &released.events {
        assert!(events.contains(e), "event {} is served", e.seq);
    }
    let (last_id, last_seq) = store.last_ids().await.unwrap();
    let ids = released.connections.iter().map(|c| c.id);
    assert_eq!(
        Some(last_id),
        ids.chain(released.deferreds.iter().map(|d| d.id)).max()
    );
    assert!(last_seq >= released.events.last().unwrap().seq);

    // It goes on recording where 0.1.0 left off.
    let next = common::connection(
        last_id + 1,
        "echo",
        1_800_000_000_000,
        Some(1_800_000_000_500),
    );
    let next = ConnectionRecord {
        reactor: Some(1),
        ..next
    };
    store.try_send(next.clone());
    store.flush().await.unwrap();
    assert_eq!(store.connection(next.id).await.unwrap(), Some(next));
    let of_one = ListFilter {
        reactor: Some(1),
        ..ListFilter::default()
    };
    let of_one = store.connections_where(None, of_one, MAX_LIMIT).await;
    assert_eq!(of_one.unwrap().len(), 1, "the new row keeps its reactor");
    store.shutdown().await.unwrap();
    assert_eq!(common::integrity(&options.path).await, "ok");
}
