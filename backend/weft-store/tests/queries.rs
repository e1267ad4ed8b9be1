//! Every dashboard query, against a real migrated SQLite file.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{connection, deferred, event, open, reactors_are_kept_and_filtered, step};
use weft_store::{
    ConnectionRecord, ConnectionState, DeferredFilter, DeferredRecord, ListFilter, ServiceRecord,
    StoreError,
};

#[tokio::test]
async fn services_round_trip_and_upsert_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let mut echo = ServiceRecord {
        name: "echo".into(),
        kind: "echo".into(),
        endpoints: vec!["tcp:8000".into(), "udp:8000".into()],
        config_json: "{}".into(),
    };
    let dns = ServiceRecord {
        name: "dns".into(),
        kind: "dns".into(),
        endpoints: vec!["udp:5353".into()],
        config_json: r#"{"zones":["example.test"]}"#.into(),
    };
    assert!(store.try_send(echo.clone()));
    assert!(store.try_send(dns.clone()));
    echo.endpoints.push("unix:/tmp/echo.sock".into());
    assert!(store.try_send(echo.clone()));
    store.flush().await.unwrap();

    assert_eq!(store.services().await.unwrap(), vec![dns, echo]);
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn connections_by_state_and_service_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store.try_send(connection(1, "echo", 1_000, Some(1_500)));
    store.try_send(connection(2, "echo", 2_000, None));
    store.try_send(connection(3, "web", 3_000, None));
    store.try_send(connection(4, "echo", 4_000, None));
    // Counters refreshed while open, then the final write at close.
    let mut four = connection(4, "echo", 4_000, None);
    four.bytes_in = 999;
    store.try_send(four.clone());
    four.closed_at_ms = Some(4_100);
    four.close_reason = Some("reset".into());
    store.try_send(four.clone());
    store.flush().await.unwrap();

    let ids =
        |rows: Vec<weft_store::ConnectionRecord>| rows.iter().map(|c| c.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.connections(None, None, 100).await.unwrap()),
        [4, 3, 2, 1]
    );
    assert_eq!(
        ids(store
            .connections(Some(ConnectionState::Open), None, 100)
            .await
            .unwrap()),
        [3, 2]
    );
    assert_eq!(
        ids(store
            .connections(Some(ConnectionState::Closed), None, 100)
            .await
            .unwrap()),
        [4, 1]
    );
    assert_eq!(
        ids(store
            .connections(Some(ConnectionState::Open), Some("echo"), 100)
            .await
            .unwrap()),
        [2]
    );
    assert_eq!(
        ids(store.connections(None, Some("echo"), 2).await.unwrap()),
        [4, 2]
    );
    assert_eq!(
        ids(store.connections(None, Some("nope"), 10).await.unwrap()),
        Vec::<i64>::new()
    );

    assert_eq!(store.connection(4).await.unwrap(), Some(four));
    assert!(
        store
            .connection(4)
            .await
            .unwrap()
            .is_some_and(|c| !c.is_open())
    );
    assert_eq!(store.connection(99).await.unwrap(), None);
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn deferreds_by_state_flag_and_service() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let mut stalled = deferred(1, "paused", 100);
    stalled.stalled = true;
    stalled.waiting_on = Some(7);
    let failed = deferred(2, "failed", 200);
    let mut unhandled = deferred(3, "failed", 300);
    unhandled.unhandled = true;
    let mut slow = deferred(4, "succeeded", 400);
    slow.slow = true;
    let mut leaked = deferred(5, "pending", 500);
    leaked.leaked = true;
    leaked.service = Some("web".into());
    // Stalled, then cancelled: still found by the flag, its state saying it ended.
    let mut was_stalled = deferred(8, "cancelled", 50);
    was_stalled.stalled = true;
    let running = deferred(6, "running", 600);
    let mut waiting = deferred(7, "waiting", 700);
    waiting.waiting_on = Some(8);
    for d in [
        &stalled,
        &failed,
        &unhandled,
        &slow,
        &leaked,
        &running,
        &waiting,
        &was_stalled,
    ] {
        assert!(store.try_send(d.clone()));
    }
    store.flush().await.unwrap();

    let ids = |rows: Vec<weft_store::DeferredRecord>| rows.iter().map(|d| d.id).collect::<Vec<_>>();
    let by = |f| store.deferreds(Some(f), None, 100);
    assert_eq!(
        ids(by(DeferredFilter::Pending).await.unwrap()),
        [7, 6, 5, 1]
    );
    assert_eq!(ids(by(DeferredFilter::Stalled).await.unwrap()), [1, 8]);
    assert_eq!(ids(by(DeferredFilter::Failed).await.unwrap()), [3, 2]);
    assert_eq!(ids(by(DeferredFilter::Unhandled).await.unwrap()), [3]);
    assert_eq!(ids(by(DeferredFilter::Slow).await.unwrap()), [4]);
    assert_eq!(ids(by(DeferredFilter::Leaked).await.unwrap()), [5]);
    assert_eq!(
        ids(store.deferreds(None, None, 3).await.unwrap()),
        [7, 6, 5]
    );
    assert_eq!(
        ids(store
            .deferreds(Some(DeferredFilter::Pending), Some("echo"), 100)
            .await
            .unwrap()),
        [7, 6, 1]
    );
    assert_eq!(
        ids(store.deferreds(None, Some("web"), 100).await.unwrap()),
        [5]
    );

    let got = store
        .deferreds(Some(DeferredFilter::Stalled), None, 1)
        .await
        .unwrap();
    assert_eq!(got, vec![stalled]);
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn one_deferred_with_steps_and_children() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let mut parent = deferred(10, "paused", 1_000);
    parent.connection_id = Some(77);
    parent.current_step = Some("src/proxy.rs:88".into());
    parent.waiting_on = Some(12);
    let mut child_a = deferred(11, "succeeded", 1_010);
    child_a.parent_id = Some(10);
    let mut child_b = deferred(12, "pending", 1_020);
    child_b.parent_id = Some(10);
    let unrelated = deferred(13, "pending", 1_030);
    let mut paused_step = step(10, 1, 2_000);
    paused_step.outcome = "paused".into();
    paused_step.duration_us = None;
    paused_step.child_id = Some(12);
    // Steps may arrive before their Deferred and out of order.
    store.try_send(paused_step.clone());
    store.try_send(step(10, 0, 1_000));
    for d in [&parent, &child_b, &child_a, &unrelated] {
        store.try_send(d.clone());
    }
    store.try_send(step(11, 0, 1_500));
    store.flush().await.unwrap();

    let detail = store.deferred(10).await.unwrap().expect("stored");
    assert_eq!(detail.deferred, parent);
    assert_eq!(detail.steps, vec![step(10, 0, 1_000), paused_step]);
    assert_eq!(detail.children, vec![child_a, child_b]);
    let json = serde_json::to_value(&detail).unwrap();
    assert_eq!(json["id"], 10);
    assert_eq!(json["steps"][1]["child_id"], 12);
    assert_eq!(json["children"][1]["id"], 12);

    assert!(store.deferred(999).await.unwrap().is_none());
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn deferreds_of_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for (id, conn) in [(1, Some(5)), (2, Some(6)), (3, Some(5)), (4, None)] {
        let mut d = deferred(id, "succeeded", id * 10);
        d.connection_id = conn;
        store.try_send(d);
    }
    store.flush().await.unwrap();
    let ids: Vec<i64> = store
        .connection_deferreds(5, 10)
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, [3, 1]);
    assert!(store.connection_deferreds(42, 10).await.unwrap().is_empty());
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_closed_connection_stays_closed_when_an_older_open_snapshot_arrives_later() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let opened = ConnectionRecord {
        opened_seq: Some(10),
        ..connection(1, "echo", 1_000, None)
    };
    let closed = ConnectionRecord {
        closed_seq: Some(11),
        close_detail: Some("the peer closed the connection".into()),
        ..connection(1, "echo", 1_000, Some(1_500))
    };
    // The periodic snapshot read the connection open, but is written after its close.
    let late_snapshot = connection(1, "echo", 1_000, None);
    for row in [opened, closed.clone(), late_snapshot] {
        assert!(store.try_send(row));
    }
    store.flush().await.unwrap();
    let stored = store.connection(1).await.unwrap().unwrap();
    let expected = ConnectionRecord {
        opened_seq: Some(10),
        ..closed.clone()
    };
    assert_eq!(stored, expected);
    store.shutdown().await.unwrap();
}

/// The hub reports an unhandled failure when a chain's last handle goes, which may be long
/// after the chain ended and was forgotten: that record knows the flag, the failure and the
/// chain's identity, and stands in for everything else with blanks.
#[tokio::test]
async fn a_detection_written_after_its_chain_ended_adds_its_flag_and_keeps_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let ended = DeferredRecord {
        parent_id: Some(7),
        label: Some("upstream call".into()),
        connection_id: Some(3),
        current_step: Some("src/proxy.rs:88".into()),
        step_name: Some("response head".into()),
        step_detail: Some("http://backend-a".into()),
        waiting_on_connection: Some(12),
        named_steps_json: Some(r#"[{"index":0,"name":"response head","detail":"http://backend-a","waiting_on_connection":12,"waiting_on_deferred":null,"started_at_ms":1000,"duration_ms":null}]"#.into()),
        kind: None,
        task_json: None,
        ..deferred(8, "failed", 1_000)
    };
    let detected = DeferredRecord {
        parent_id: None,
        connection_id: None,
        service: None,
        created_at_ms: 9_000,
        fired_at_ms: None,
        current_step: None,
        failure: Some("ConnectionLost: upstream refused".into()),
        unhandled: true,
        step_name: None,
        step_detail: None,
        waiting_on_connection: None,
        named_steps_json: None,
        kind: None,
        task_json: None,
        ..ended.clone()
    };
    // A snapshot taken while it was still pending, written after its end.
    let stale = DeferredRecord {
        fired_at_ms: None,
        failure: None,
        ..deferred(8, "pending", 1_000)
    };
    store.try_send(ended.clone());
    store.try_send(step(8, 0, 1_000_000));
    store.flush().await.unwrap();
    store.try_send(detected);
    store.try_send(stale);
    store.flush().await.unwrap();

    let stored = store.deferred(8).await.unwrap().unwrap();
    assert_eq!(
        stored.deferred,
        DeferredRecord {
            failure: Some("ConnectionLost: upstream refused".into()),
            unhandled: true,
            ..ended
        }
    );
    assert_eq!(stored.steps.len(), 1);
    let named = &stored.named_steps;
    assert_eq!(named.len(), 1, "the named steps are read back: {stored:?}");
    assert_eq!(
        (named[0].name.as_str(), named[0].waiting_on_connection),
        ("response head", Some(12))
    );
    let unhandled = store
        .deferreds(Some(DeferredFilter::Unhandled), None, 10)
        .await
        .unwrap();
    assert_eq!(unhandled.iter().map(|d| d.id).collect::<Vec<_>>(), [8]);
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn connection_events_are_rebuilt_from_their_rows_in_sequence_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    assert_eq!(store.last_ids().await.unwrap(), (0, 0));
    let mut logged = event(12);
    logged.kind = "slow_callback".into();
    assert!(store.try_send(logged));
    assert!(store.try_send(ConnectionRecord {
        opened_seq: Some(10),
        closed_seq: Some(13),
        close_detail: Some("reset by peer".into()),
        ..connection(1, "echo", 1_000, Some(1_500))
    }));
    assert!(store.try_send(ConnectionRecord {
        opened_seq: Some(11),
        ..connection(2, "echo", 1_200, None)
    }));
    // Written by a snapshot before its opening was recorded: no event to rebuild.
    assert!(store.try_send(connection(3, "echo", 1_300, None)));
    store.flush().await.unwrap();

    let events = store.events_after(0, 100).await.unwrap();
    let kinds: Vec<(i64, &str)> = events.iter().map(|e| (e.seq, e.kind.as_str())).collect();
    assert_eq!(
        kinds,
        [
            (10, "connection_opened"),
            (11, "connection_opened"),
            (12, "slow_callback"),
            (13, "connection_closed"),
        ]
    );
    let closed: serde_json::Value = serde_json::from_str(&events[3].payload_json).unwrap();
    assert_eq!(closed["type"], "connection_closed");
    assert_eq!(closed["connection"]["id"], 1);
    assert_eq!(closed["connection"]["peer"], "127.0.0.1:50000");
    assert_eq!(closed["connection"]["bytes_out"], 20);
    assert_eq!(closed["connection"]["age_ms"], 500);
    assert_eq!(closed["reason"], "eof");
    assert_eq!(closed["detail"], "reset by peer");
    assert_eq!(events[3].at_ms, 1_500);
    let opened: serde_json::Value = serde_json::from_str(&events[0].payload_json).unwrap();
    assert_eq!(opened["connection"]["bytes_out"], 0);
    assert_eq!(events[0].at_ms, 1_000);

    assert_eq!(store.last_ids().await.unwrap(), (3, 13));

    // Paging: after 11, two at a time.
    let page: Vec<i64> = store
        .events_after(11, 2)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(page, [12, 13]);
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn events_after_a_sequence_number_keep_the_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for seq in 1..=10 {
        store.try_send(event(seq));
    }
    let mut duplicate = event(5);
    duplicate.kind = "rewritten".into();
    store.try_send(duplicate);
    store.flush().await.unwrap();

    let seqs = |rows: Vec<weft_store::EventRecord>| rows.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(store.events_after(0, 3).await.unwrap()), [1, 2, 3]);
    assert_eq!(seqs(store.events_after(7, 100).await.unwrap()), [8, 9, 10]);
    assert!(store.events_after(10, 100).await.unwrap().is_empty());
    assert_eq!(store.events_after(4, 1).await.unwrap(), vec![event(5)]);
    store.shutdown().await.unwrap();
}

#[test]
fn filters_parse_the_api_words_and_name_bad_ones() {
    assert_eq!(
        "open".parse::<ConnectionState>().unwrap(),
        ConnectionState::Open
    );
    assert_eq!(
        "closed".parse::<ConnectionState>().unwrap(),
        ConnectionState::Closed
    );
    for word in [
        "pending",
        "stalled",
        "failed",
        "unhandled",
        "slow",
        "leaked",
    ] {
        let filter: DeferredFilter = word.parse().unwrap();
        assert_eq!(filter.to_string(), word);
    }
    let err = "zombie".parse::<DeferredFilter>().unwrap_err();
    assert!(matches!(err, StoreError::BadFilter { .. }));
    assert!(err.to_string().contains("\"zombie\""), "{err}");
    assert!(err.to_string().contains("stalled"), "{err}");
}

#[tokio::test]
async fn each_row_keeps_its_reactor_and_lists_filter_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    reactors_are_kept_and_filtered(&store).await;
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn closed_connections_are_filtered_by_peer_in_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    common::closed_connections_filter_by_peer(&store).await;
    store.shutdown().await.unwrap();
}

/// A search by peer text reads every row (no index finds text within a column): however
/// many are asked for at once, they take one reader between them, and a list asked for
/// meanwhile is read at once rather than after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_searches_by_peer_leave_the_other_readers_to_other_views() {
    use sqlx::Connection;
    const ROWS: u32 = 150_000;
    const SEARCHES: usize = 12;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    {
        let url = format!("sqlite://{}", dir.path().join("history.db").display());
        let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query(
            "INSERT INTO connections (id, service, transport, peer, local, opened_at_ms, \
             closed_at_ms) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n \
             WHERE i < $1) SELECT i, 'echo', 'tcp', '198.51.100.' || (i % 250) || ':' || \
             (1024 + i % 60000), '127.0.0.1:7000', i, i + 1 FROM n",
        )
        .bind(ROWS)
        .execute(&mut db)
        .await
        .unwrap();
        db.close().await.unwrap();
    }
    let finished = Arc::new(AtomicUsize::new(0));
    let searches: Vec<_> = (0..SEARCHES)
        .map(|_| {
            let (store, finished) = (store.clone(), finished.clone());
            tokio::spawn(async move {
                let filter = ListFilter {
                    peer: Some("no such peer"),
                    ..ListFilter::default()
                };
                let found = store
                    .connections_where(Some(ConnectionState::Closed), filter, 50)
                    .await;
                finished.fetch_add(1, Ordering::SeqCst);
                found
            })
        })
        .collect();
    // Let every search ask for its reader first.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let newest = store
        .connections(Some(ConnectionState::Closed), None, 50)
        .await
        .unwrap();
    let done_before = finished.load(Ordering::SeqCst);
    assert_eq!(newest.len(), 50);
    assert_eq!(
        done_before, 0,
        "the list waited for searches to give up their readers"
    );
    let mut busy = 0;
    for search in searches {
        match search.await.unwrap() {
            Ok(found) => assert!(found.is_empty()),
            Err(e @ StoreError::SearchBusy(_)) => {
                assert!(e.is_busy(), "{e}");
                busy += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(busy < SEARCHES, "at least the first search ran");
    store.shutdown().await.unwrap();
}
