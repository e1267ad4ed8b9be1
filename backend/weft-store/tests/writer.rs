//! The writer: batching by count and by age, drop counting, flush and shutdown.

mod common;

use std::time::Duration;

use common::{event, options};
use weft_store::Store;
use weft_test_support::eventually_async as eventually;

#[tokio::test]
async fn a_full_batch_commits_at_once_and_the_rest_waits_for_its_age() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.batch_size = 100;
    opts.flush_interval = Duration::from_secs(3600);
    let store = Store::open_with(opts).await.unwrap();
    for seq in 1..=250 {
        assert!(store.try_send(event(seq)));
    }
    eventually("two full batches", || store.stats().written() == 200).await;
    // The last 50 are not a full batch and are an hour from their deadline.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(store.stats().written(), 200);
    assert_eq!(store.events_after(0, 1000).await.unwrap().len(), 200);

    store.flush().await.unwrap();
    assert_eq!(store.stats().written(), 250);
    assert_eq!(store.events_after(0, 1000).await.unwrap().len(), 250);
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_partial_batch_commits_after_the_flush_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.batch_size = 1_000;
    opts.flush_interval = Duration::from_millis(50);
    let store = Store::open_with(opts).await.unwrap();
    for seq in 1..=10 {
        store.try_send(event(seq));
    }
    eventually("the interval to commit a partial batch", || {
        store.stats().written() == 10
    })
    .await;
    assert_eq!(store.events_after(0, 100).await.unwrap().len(), 10);
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.queue_capacity = 8;
    let store = Store::open_with(opts).await.unwrap();
    // On this single-threaded runtime the writer cannot run until we await, so the queue stays full.
    let accepted = (1..=100).filter(|&seq| store.try_send(event(seq))).count();
    assert_eq!(accepted, 8);
    assert_eq!(store.writer().queue_len(), 8);
    let stats = store.stats().snapshot();
    assert_eq!((stats.queued, stats.dropped, stats.written), (8, 92, 0));

    store.flush().await.unwrap();
    let stats = store.stats().snapshot();
    assert_eq!(
        (
            stats.queued,
            stats.dropped,
            stats.written,
            stats.write_errors
        ),
        (8, 92, 8, 0)
    );
    let seqs: Vec<i64> = store
        .events_after(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, (1..=8).collect::<Vec<_>>());
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_commits_everything_queued_then_refuses_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.flush_interval = Duration::from_secs(3600);
    let path = opts.path.clone();
    let store = Store::open_with(opts).await.unwrap();
    let writer = store.writer();
    for seq in 1..=1_000 {
        assert!(writer.try_send(event(seq)));
    }
    store.shutdown().await.unwrap();
    assert_eq!(store.stats().written(), 1_000);
    assert!(
        !writer.try_send(event(1_001)),
        "a stopped writer refuses records"
    );
    assert_eq!(store.stats().dropped(), 1);
    assert!(writer.flush().await.is_err());
    store.shutdown().await.unwrap();

    let reopened = Store::open(&path).await.unwrap();
    assert_eq!(reopened.events_after(0, 5_000).await.unwrap().len(), 1_000);
    reopened.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_producers_batches_of_every_record_kind() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.batch_size = 64;
    opts.rows_per_statement = 16;
    let store = Store::open_with(opts).await.unwrap();
    let mut producers = Vec::new();
    for p in 0..4_i64 {
        let writer = store.writer();
        producers.push(tokio::spawn(async move {
            for i in 0..500_i64 {
                let id = p * 1_000 + i;
                assert!(writer.try_send(common::connection(id, "echo", id, None)));
                assert!(writer.try_send(common::deferred(id, "pending", id)));
                assert!(writer.try_send(common::step(id, 0, id)));
                assert!(writer.try_send(event(id)));
                if i % 100 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for p in producers {
        p.await.unwrap();
    }
    store.flush().await.unwrap();
    let stats = store.stats().snapshot();
    assert_eq!(
        (stats.queued, stats.written, stats.dropped),
        (8_000, 8_000, 0)
    );
    assert_eq!(
        store.connections(None, None, 5_000).await.unwrap().len(),
        2_000
    );
    assert_eq!(
        store.deferreds(None, None, 5_000).await.unwrap().len(),
        2_000
    );
    assert_eq!(store.events_after(-1, 5_000).await.unwrap().len(), 2_000);
    store.shutdown().await.unwrap();
}
