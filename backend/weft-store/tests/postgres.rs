//! History in a PostgreSQL database shared by several gateways, against a real server
//! (a throwaway cluster, see `weft_test_support::postgres`): the same queries as on a file,
//! each gateway's rows kept apart by their instance, and the server going away mid-run.

mod common;

use std::time::{Duration, Instant};

use common::{
    connection, deferred, event, pg_options, reactors_are_kept_and_filtered, send_all, step,
};
use weft_store::{
    ConnectionState, DeferredFilter, EventRecord, ListFilter, PROCESS_ENDED, ServiceRecord, Store,
};
use weft_test_support::postgres::Postgres;

async fn open(url: &str, instance: &str) -> Store {
    Store::open_with(pg_options(url, instance))
        .await
        .expect("store opens on PostgreSQL")
}

fn seqs(events: &[EventRecord]) -> Vec<i64> {
    events.iter().map(|e| e.seq).collect()
}

/// Two gateways number their rows alike; each keeps its own, the lists show both.
#[tokio::test]
async fn two_instances_share_one_database_each_with_its_own_ids() {
    let pg = Postgres::start();
    let url = pg.create_database("fleet");
    let (one, two) = (open(&url, "edge-1").await, open(&url, "edge-2").await);
    for (store, service) in [(&one, "echo"), (&two, "web")] {
        store.try_send(ServiceRecord {
            name: service.into(),
            kind: service.into(),
            endpoints: vec!["tcp:8000".into()],
            config_json: "{}".into(),
        });
        store.try_send(connection(1, service, 1_000, Some(1_500)));
        store.try_send(connection(2, service, 2_000, None));
        // Opened and closed within one batch: one row, written twice in its transaction.
        store.try_send(connection(9, service, 3_000, None));
        store.try_send(connection(9, service, 3_000, Some(3_100)));
        store.try_send(deferred(7, "failed", 1_100));
        store.try_send(step(7, 0, 1_100_000));
        store.try_send(step(7, 1, 1_100_500));
        store.try_send(event(3));
        store.flush().await.unwrap();
    }
    // A detection reported after the chain ended merges into edge-2's row only.
    let mut late = deferred(7, "pending", 1_100);
    late.unhandled = true;
    two.try_send(late);
    two.flush().await.unwrap();

    let all = one.connections(None, None, 100).await.unwrap();
    let mut rows: Vec<_> = all.iter().map(|c| (c.instance.as_str(), c.id)).collect();
    rows.sort_unstable();
    assert_eq!(
        rows,
        [
            ("edge-1", 1),
            ("edge-1", 2),
            ("edge-1", 9),
            ("edge-2", 1),
            ("edge-2", 2),
            ("edge-2", 9)
        ]
    );
    let nine = one.connection(9).await.unwrap().unwrap();
    assert_eq!(nine.closed_at_ms, Some(3_100), "the later write wins");
    let only = |instance| ListFilter {
        instance: Some(instance),
        ..ListFilter::default()
    };
    let open_two = one
        .connections_where(Some(ConnectionState::Open), only("edge-2"), 100)
        .await
        .unwrap();
    assert_eq!(
        open_two
            .iter()
            .map(|c| (c.instance.as_str(), c.id, c.service.as_str()))
            .collect::<Vec<_>>(),
        [("edge-2", 2, "web")]
    );

    let failed = two
        .deferreds_where(Some(DeferredFilter::Failed), ListFilter::default(), 100)
        .await
        .unwrap();
    assert_eq!(failed.len(), 2, "each instance's chain 7: {failed:?}");
    let unhandled = one
        .deferreds(Some(DeferredFilter::Unhandled), None, 100)
        .await
        .unwrap();
    assert_eq!(
        unhandled
            .iter()
            .map(|d| (d.instance.as_str(), d.state.as_str()))
            .collect::<Vec<_>>(),
        [("edge-2", "failed")],
        "the flag is added, the ended state kept"
    );
    let detail = one.deferred_of(7, Some("edge-2")).await.unwrap().unwrap();
    assert_eq!(
        (detail.deferred.instance.as_str(), detail.steps.len()),
        ("edge-2", 2)
    );
    assert_eq!(
        one.deferred(7).await.unwrap().unwrap().deferred.instance,
        "edge-1",
        "without an instance a detail is this gateway's"
    );

    assert_eq!(two.instances().await.unwrap(), ["edge-1", "edge-2"]);

    // What each gateway continues from, its services and its event log are its own.
    assert_eq!(one.last_ids().await.unwrap(), (9, 3));
    assert_eq!(
        one.services()
            .await
            .unwrap()
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["echo"]
    );
    assert_eq!(seqs(&two.events_after(0, 100).await.unwrap()), [3]);

    // edge-1 stops without closing what it had open; its next start closes only its own.
    drop(one);
    let again = open(&url, "edge-1").await;
    let closed = again
        .connections_where(Some(ConnectionState::Closed), ListFilter::default(), 100)
        .await
        .unwrap();
    let reasons: Vec<_> = closed
        .iter()
        .map(|c| (c.instance.as_str(), c.id, c.close_reason.as_deref()))
        .collect();
    assert!(
        reasons.contains(&("edge-1", 2, Some(PROCESS_ENDED))),
        "{reasons:?}"
    );
    assert!(
        !reasons
            .iter()
            .any(|&(instance, id, _)| (instance, id) == ("edge-2", 2)),
        "another instance's open connection is live: {reasons:?}"
    );

    // Retention deletes finished rows of every instance; open ones stay.
    let pruned = two.prune_before(2_000_000_000_000).await.unwrap();
    assert!(pruned > 0);
    let left = two.connections(None, None, 100).await.unwrap();
    assert_eq!(
        left.iter()
            .map(|c| (c.instance.as_str(), c.id))
            .collect::<Vec<_>>(),
        [("edge-2", 2)]
    );
    again.shutdown().await.unwrap();
    two.shutdown().await.unwrap();
}

#[tokio::test]
async fn each_row_keeps_its_reactor_and_lists_filter_by_it() {
    let pg = Postgres::start();
    let url = pg.create_database("reactors");
    let store = open(&url, "edge-1").await;
    reactors_are_kept_and_filtered(&store).await;
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn closed_connections_are_filtered_by_peer_in_the_query() {
    let pg = Postgres::start();
    let url = pg.create_database("peers");
    let store = open(&url, "edge-1").await;
    common::closed_connections_filter_by_peer(&store).await;
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_server_stopped_mid_run_drops_and_counts_then_writing_resumes() {
    let pg = Postgres::start();
    let url = pg.create_database("faults");
    let store = open(&url, "edge-1").await;
    send_all(&store, 1..=10);
    store.flush().await.unwrap();
    assert_eq!(store.stats().written(), 10);

    pg.stop();
    send_all(&store, 11..=20);
    store.flush().await.unwrap();
    let stats = store.stats().snapshot();
    assert_eq!(
        (stats.written, stats.dropped),
        (10, 10),
        "the batch written while the server was down is counted as dropped"
    );
    assert!(stats.write_errors >= 1 && stats.last_error.is_some());

    pg.start_again();
    send_all(&store, 21..=30);
    store.flush().await.unwrap();
    let stats = store.stats().snapshot();
    assert_eq!((stats.written, stats.dropped), (20, 10), "writes resume");
    let expected: Vec<i64> = (1..=10).chain(21..=30).collect();
    assert_eq!(seqs(&store.events_after(0, 100).await.unwrap()), expected);
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_server_is_refused_at_open_naming_it_without_the_password() {
    let pg = Postgres::start();
    let url = format!("postgres://weft:secret@127.0.0.1:{}/missing", pg.port());
    let error = Store::open_with(pg_options(&url, "edge-1"))
        .await
        .expect_err("no such database");
    let text = error.to_string();
    assert!(
        text.contains("postgres://weft@127.0.0.1") && !text.contains("secret"),
        "{text}"
    );
    // The server's own source line is not said: it reads as a line of the configuration.
    assert!(
        text.contains("does not exist") && !text.contains(" at line "),
        "{text}"
    );
}

/// A history table dropped by hand while a gateway writes: its live rows are never taken
/// for a killed process's (the writer took the missing table for a database recreated
/// empty and closed them as `process_ended`), and a start on such a database is refused
/// naming the table, where the migrator would never make it again.
#[tokio::test]
async fn a_table_dropped_by_hand_closes_no_live_row_and_a_start_names_it() {
    let pg = Postgres::start();
    let url = pg.create_database("dropped");
    let store = open(&url, "edge-1").await;
    store.try_send(connection(1, "echo", weft_now(), None));
    store.flush().await.unwrap();
    pg.sql("dropped", "DROP TABLE events");
    store.try_send(event(1));
    store.try_send(event(2));
    store.flush().await.unwrap();
    store.try_send(event(3));
    store.flush().await.unwrap();
    let live = store.connection(1).await.unwrap().unwrap();
    assert_eq!(live.closed_at_ms, None, "still open: {live:?}");
    let error = store.stats().last_error().unwrap_or_default();
    assert!(error.contains("\"events\""), "{error}");
    store.shutdown().await.unwrap();

    let refused = Store::open_with(pg_options(&url, "edge-1"))
        .await
        .expect_err("a start on a schema missing a table is refused");
    assert!(
        refused
            .to_string()
            .contains("history table \"events\" is missing"),
        "{refused}"
    );
}

/// What a killed process left open is closed once the table it is in is let go, when a
/// session held it locked as the next start tried: with a later batch, and only rows
/// begun before that start.
#[tokio::test]
async fn leftovers_a_lock_kept_from_closing_at_start_are_closed_with_a_later_batch() {
    let pg = Postgres::start();
    let url = pg.create_database("leftovers");
    let killed = open(&url, "edge-1").await;
    killed.try_send(connection(1, "echo", 1_000, None));
    killed.flush().await.unwrap();
    drop(killed);

    let mut holder = pg.sql_in_background(
        "leftovers",
        "BEGIN; LOCK TABLE connections IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(4); COMMIT;",
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let store = open(&url, "edge-1").await;
    assert_eq!(
        store
            .connection(1)
            .await
            .ok()
            .flatten()
            .and_then(|c| c.closed_at_ms),
        None,
        "the lock kept it open at the start"
    );
    holder.wait().unwrap();
    store.try_send(connection(2, "echo", weft_now(), None));
    store.flush().await.unwrap();
    let closed = closed_within(&store, 1, Duration::from_secs(10)).await;
    assert_eq!(closed.close_reason.as_deref(), Some(PROCESS_ENDED));
    let own = store.connection(2).await.unwrap().unwrap();
    assert_eq!(
        own.closed_at_ms, None,
        "this process's own row is left open"
    );
    store.shutdown().await.unwrap();
}

/// Connection `id` once history reads it closed, waiting `within` at most.
async fn closed_within(store: &Store, id: i64, within: Duration) -> weft_store::ConnectionRecord {
    let deadline = Instant::now() + within;
    loop {
        let row = store.connection(id).await.ok().flatten();
        match row {
            Some(row) if row.closed_at_ms.is_some() => return row,
            _ if Instant::now() > deadline => panic!("connection {id} still open: {row:?}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A session holding the rows a killed process left open (locked for update, not the
/// table) keeps them open, and holds nothing else: the next start tries again to close
/// them in the background while this process's batches are written at once (each batch
/// tried first and waited the read timeout), and closes them once they are let go.
#[tokio::test]
async fn leftovers_held_by_a_row_lock_do_not_hold_the_batches() {
    let pg = Postgres::start();
    let url = pg.create_database("held_rows");
    let killed = open(&url, "edge-1").await;
    killed.try_send(connection(1, "echo", 1_000, None));
    killed.flush().await.unwrap();
    drop(killed);

    let mut holder = pg.sql_in_background(
        "held_rows",
        "BEGIN; SELECT id FROM connections WHERE id = 1 FOR UPDATE; SELECT pg_sleep(8); COMMIT;",
    );
    pg.wait_for_lock("held_rows", "connections");
    // A read timeout of 2 s: a batch that waits it stands out from a busy machine's delay.
    let mut options = pg_options(&url, "edge-1");
    options.busy_timeout = Duration::from_secs(2);
    let store = Store::open_with(options).await.expect("store opens");
    // Three batches, each of which waited the read timeout before.
    let since = Instant::now();
    for id in 2..5 {
        store.try_send(connection(id, "echo", weft_now(), None));
        store.flush().await.unwrap();
    }
    let took = since.elapsed();
    assert!(
        took < Duration::from_millis(3000),
        "three batches: {took:?} (each waiting would be 6 s)"
    );
    assert_eq!(
        store.connection(1).await.unwrap().unwrap().closed_at_ms,
        None,
        "held by the lock"
    );
    holder.wait().unwrap();
    let closed = closed_within(&store, 1, Duration::from_secs(10)).await;
    assert_eq!(closed.close_reason.as_deref(), Some(PROCESS_ENDED));
    for id in 2..5 {
        let own = store.connection(id).await.unwrap().unwrap();
        assert_eq!(own.closed_at_ms, None, "this process's own row {id}");
    }
    store.shutdown().await.unwrap();
}

fn weft_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
