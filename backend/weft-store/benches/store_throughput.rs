//! How many events per second the writer sustains without dropping any, against baselines run on
//! the same machine in the same process.
//!
//! `cargo bench -p weft-store --bench store_throughput` (add `-- --quick` for fewer, smaller runs).
//!
//! - `autocommit`: one `INSERT` per transaction on one connection, what a naive writer does.
//! - `batched, 1 row/stmt`: the writer with one prepared single-row statement per record.
//! - `batched, 64 rows/stmt`: the writer as configured by default (multi-row statements).
//! - `paced 100k/s`: the default writer fed at 100,000 events/s for 2 s; must drop nothing.

#![allow(missing_docs)]

use std::time::{Duration, Instant};

use sqlx::{ConnectOptions, Connection};
use weft_store::{EventRecord, Store, StoreOptions};

fn event(seq: i64) -> EventRecord {
    EventRecord {
        seq,
        at_ms: 1_700_000_000_000 + seq,
        kind: "bytes_received".into(),
        payload_json: format!(r#"{{"connection":{},"bytes":512}}"#, seq % 1000),
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// One `INSERT` per autocommit transaction, with the store's own pragmas.
async fn autocommit(n: i64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("bench.db")).await.unwrap();
    let path = store.options().path.clone();
    store.shutdown().await.unwrap();
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
        .connect()
        .await
        .unwrap();
    let start = Instant::now();
    for seq in 0..n {
        let e = event(seq);
        sqlx::query("INSERT INTO events (seq, at_ms, kind, payload_json) VALUES (?, ?, ?, ?) ON CONFLICT (seq) DO NOTHING")
            .bind(e.seq)
            .bind(e.at_ms)
            .bind(e.kind)
            .bind(e.payload_json)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    conn.close().await.unwrap();
    rate
}

/// Feeds the writer as fast as it drains, never letting the queue overflow; returns events/s.
async fn writer_max(n: i64, rows_per_statement: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut options = StoreOptions::new(dir.path().join("bench.db"));
    options.rows_per_statement = rows_per_statement;
    let capacity = options.queue_capacity;
    let store = Store::open_with(options).await.unwrap();
    let writer = store.writer();
    let start = Instant::now();
    for seq in 0..n {
        while writer.queue_len() + 1 >= capacity {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        writer.try_send(event(seq));
    }
    store.flush().await.unwrap();
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let stats = store.stats().snapshot();
    assert_eq!((stats.written, stats.dropped), (n as u64, 0), "{stats:?}");
    store.shutdown().await.unwrap();
    rate
}

/// Feeds the default writer at `rate` events/s for `secs`; returns (written, dropped).
async fn writer_paced(rate: u64, secs: u64) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("bench.db")).await.unwrap();
    let writer = store.writer();
    let per_tick = rate / 1000;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut seq = 0;
    for _ in 0..secs * 1000 {
        tick.tick().await;
        for _ in 0..per_tick {
            writer.try_send(event(seq));
            seq += 1;
        }
    }
    store.flush().await.unwrap();
    let stats = store.stats().snapshot();
    store.shutdown().await.unwrap();
    (stats.written, stats.dropped)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runs = if quick { 3 } else { 5 };
    let (n_base, n_writer) = if quick {
        (5_000, 100_000)
    } else {
        (20_000, 500_000)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("weft-store writer throughput, median of {runs} runs (events/s)");
        let base = median(futures_runs(runs, || autocommit(n_base)).await);
        println!("  autocommit, 1 INSERT/transaction  ({n_base:>7} events): {base:>10.0}");
        let single = median(futures_runs(runs, || writer_max(n_writer, 1)).await);
        println!(
            "  batched, 1 row/stmt               ({n_writer:>7} events): {single:>10.0}  ({:.1}x autocommit)",
            single / base
        );
        let multi = median(futures_runs(runs, || writer_max(n_writer, 64)).await);
        println!(
            "  batched, 64 rows/stmt (default)   ({n_writer:>7} events): {multi:>10.0}  ({:.1}x autocommit, {:.2}x 1 row/stmt)",
            multi / base,
            multi / single
        );
        let (written, dropped) = writer_paced(100_000, 2).await;
        println!("  paced 100,000/s for 2 s: written {written}, dropped {dropped}");
    });
}

async fn futures_runs<F, Fut>(runs: usize, mut f: F) -> Vec<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = f64>,
{
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        out.push(f().await);
    }
    out
}
