//! Retention deletes finished rows older than the window, and never live ones.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{connection, deferred, options, step};
use weft_store::{EventRecord, QueryRecord, Store};
use weft_test_support::eventually_async as eventually;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

const HOUR: i64 = 3_600_000;

/// Ten of each finished kind two hours old, live rows just as old, and finished rows a minute old.
async fn fill(store: &Store) {
    let old = now_ms() - 2 * HOUR;
    let recent = now_ms() - 60_000;
    for i in 0..10 {
        store.try_send(connection(i, "echo", old, Some(old + 1)));
        store.try_send(deferred(i, "succeeded", old));
        store.try_send(step(i, 0, old * 1_000));
        store.try_send(step(i, 1, old * 1_000 + 10));
        store.try_send(EventRecord {
            seq: i,
            at_ms: old,
            kind: "old".into(),
            payload_json: "{}".into(),
        });
    }
    // A step whose Deferred was never stored.
    store.try_send(step(500, 0, old * 1_000));
    // Dropped without firing: finished, though its state stays pending.
    let mut leaked = deferred(300, "pending", old);
    leaked.leaked = true;
    store.try_send(leaked);
    store.try_send(step(300, 0, old * 1_000));
    // Old but still live.
    store.try_send(connection(100, "echo", old, None));
    store.try_send(deferred(100, "paused", old));
    store.try_send(step(100, 0, old * 1_000));
    // Finished, but inside the window.
    store.try_send(connection(200, "echo", recent, Some(recent + 1)));
    store.try_send(deferred(200, "failed", recent));
    store.try_send(EventRecord {
        seq: 200,
        at_ms: recent,
        kind: "recent".into(),
        payload_json: "{}".into(),
    });
    store.flush().await.unwrap();
}

async fn assert_only_live_and_recent_rows_remain(store: &Store) {
    let conns: Vec<i64> = store
        .connections(None, None, 100)
        .await
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(conns, [200, 100]);
    let deferreds: Vec<i64> = store
        .deferreds(None, None, 100)
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(deferreds, [200, 100]);
    assert_eq!(store.deferred(100).await.unwrap().unwrap().steps.len(), 1);
    let events: Vec<i64> = store
        .events_after(-1, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(events, [200]);
    let (steps,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM deferred_steps")
        .fetch_one(&store.sqlite_pool().unwrap())
        .await
        .unwrap();
    assert_eq!(
        steps, 1,
        "steps of pruned Deferreds and orphan steps are gone"
    );
}

#[tokio::test]
async fn prune_deletes_old_finished_rows_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.prune_chunk = 3;
    let store = Store::open_with(opts).await.unwrap();
    fill(&store).await;

    // 10 connections + 10 events + 11 Deferreds with 21 steps + 1 orphan step.
    assert_eq!(store.prune_before(now_ms() - HOUR).await.unwrap(), 53);
    assert_only_live_and_recent_rows_remain(&store).await;
    assert_eq!(store.prune_before(now_ms() - HOUR).await.unwrap(), 0);
    assert_eq!(store.stats().pruned(), 53);
    store.shutdown().await.unwrap();
}

/// Pages freed and not yet handed back (a pass that failed part way, deletions by hand)
/// are handed back by the next pass, even one that deletes nothing: a full disk gets its
/// space back.
#[tokio::test]
async fn free_pages_are_handed_back_by_a_pass_that_deletes_nothing() {
    use sqlx::{ConnectOptions, Connection};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(options(dir.path())).await.unwrap();
    for id in 0..2_000 {
        store.try_send(connection(id, "echo", now_ms(), None));
    }
    store.flush().await.unwrap();
    let path = store.options().path.clone();
    let mut other = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .unwrap();
    sqlx::query("DELETE FROM connections")
        .execute(&mut other)
        .await
        .unwrap();
    let free = "PRAGMA freelist_count";
    let freed: i64 = sqlx::query_scalar(free)
        .fetch_one(&mut other)
        .await
        .unwrap();
    assert!(freed > 10, "pages freed by the delete: {freed}");
    assert_eq!(store.prune_before(now_ms() - HOUR).await.unwrap(), 0);
    let left: i64 = sqlx::query_scalar(free)
        .fetch_one(&mut other)
        .await
        .unwrap();
    assert_eq!(left, 0, "handed back");
    other.close().await.unwrap();
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_background_task_prunes_on_its_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.retention = Duration::from_secs(3600);
    opts.prune_interval = Duration::from_millis(50);
    opts.prune_chunk = 4;
    let store = Store::open_with(opts).await.unwrap();
    fill(&store).await;
    eventually("the background prune", || store.stats().pruned() == 53).await;
    assert_only_live_and_recent_rows_remain(&store).await;
    store.shutdown().await.unwrap();
}

fn logged(service: &str, at_ms: i64, name: &str) -> QueryRecord {
    QueryRecord {
        service: service.into(),
        at_ms,
        client: "127.0.0.1:5000".into(),
        name: name.into(),
        qtype: "A".into(),
        rcode: "NOERROR".into(),
        latency_us: 40,
        source: "zone".into(),
        failed: false,
        weight: 1,
    }
}

#[tokio::test]
async fn the_query_log_is_read_back_newest_first_and_pruned_with_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(options(dir.path())).await.unwrap();
    let (old, recent) = (now_ms() - 2 * HOUR, now_ms() - 60_000);
    for i in 0..5 {
        store.try_send(logged("dns", old + i, &format!("old{i}.test.")));
    }
    store.try_send(logged("dns", recent, "a.test."));
    store.try_send(logged("dns", recent + 1, "b.test."));
    store.try_send(logged("other", recent + 2, "c.test."));
    store.flush().await.unwrap();

    let names = |rows: Vec<QueryRecord>| rows.into_iter().map(|r| r.name).collect::<Vec<_>>();
    let all = store.recent_queries("dns", now_ms(), 3).await.unwrap();
    assert_eq!(names(all), ["b.test.", "a.test.", "old4.test."]);
    let before = store.recent_queries("dns", recent + 1, 10).await.unwrap();
    assert_eq!(before.len(), 6, "only those before the given time");

    assert_eq!(store.prune_before(now_ms() - HOUR).await.unwrap(), 5);
    let kept = store.recent_queries("dns", now_ms(), 10).await.unwrap();
    assert_eq!(names(kept), ["b.test.", "a.test."]);
    store.shutdown().await.unwrap();
}
