//! A write fault is logged once when it starts and once when it ends, however many batches it
//! spans. Its own test binary: tracing caches per-callsite interest process-wide, so capturing
//! logs while other tests hit the same callsites without a subscriber would be racy.

mod common;

use common::{event, open};
use sqlx::{ConnectOptions, Connection};

#[tokio::test]
async fn each_burst_of_write_errors_logs_one_warning_and_one_recovery() {
    // Captured from this thread: the single-threaded test runtime runs the writer here too.
    let logs = weft_test_support::Logs::default();
    let _logging = tracing::subscriber::set_default(logs.subscriber());
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let path = store.options().path.clone();
    let mut rival = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .unwrap();
    let mut seq = 0;
    for burst in 1..=2 {
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut rival)
            .await
            .unwrap();
        for _ in 0..3 {
            seq += 1;
            store.try_send(event(seq));
            store.flush().await.unwrap();
        }
        sqlx::query("COMMIT").execute(&mut rival).await.unwrap();
        seq += 1;
        store.try_send(event(seq));
        store.flush().await.unwrap();
        assert_eq!(logs.count("cannot write history"), burst);
        assert_eq!(logs.count("history writes resumed"), burst);
    }
    let stats = store.stats().snapshot();
    assert_eq!(
        (stats.write_errors, stats.dropped, stats.written),
        (6, 6, 2)
    );
    rival.close().await.unwrap();
    store.shutdown().await.unwrap();
}
