//! Faults at run time: a locked database, an unwritable file, a deleted file, and a killed process.
//! In each the producers never block, what cannot be written is dropped and counted, and writing
//! resumes by itself once the fault is gone.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{event, integrity, open, options, send_all};
use sqlx::{ConnectOptions, Connection};
use weft_store::Store;

/// Deletes `path` with each suffix (`""` the file itself, `"-wal"`, `"-shm"`).
fn remove_with_suffixes(path: &Path, suffixes: &[&str]) {
    for suffix in suffixes {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        std::fs::remove_file(&p).unwrap();
    }
}

/// A store in a temporary directory (kept while it lives) that wrote events 1 to 10, and
/// its file.
async fn with_ten_events() -> (tempfile::TempDir, Store, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let path = store.options().path.clone();
    send_all(&store, 1..=10);
    store.flush().await.unwrap();
    (dir, store, path)
}

/// A connection of its own to the SQLite file at `path` (made if missing), as another
/// program would open it.
async fn connect(path: &Path) -> sqlx::SqliteConnection {
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap()
}

/// [`connect`], inside a write transaction: the file locked, as a `sqlite3` shell in
/// `BEGIN EXCLUSIVE` holds it, until `COMMIT`.
async fn locked(path: &Path) -> sqlx::SqliteConnection {
    let mut rival = connect(path).await;
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut rival)
        .await
        .unwrap();
    rival
}

fn seqs(events: &[weft_store::EventRecord]) -> Vec<i64> {
    events.iter().map(|e| e.seq).collect()
}

#[tokio::test]
async fn a_locked_database_drops_and_counts_then_writing_resumes() {
    let (_dir, store, path) = with_ten_events().await;
    assert_eq!(store.stats().written(), 10);

    // A competing process holds the write lock for longer than the writer's busy timeout.
    let mut rival = locked(&path).await;

    send_all(&store, 11..=20);
    store.flush().await.unwrap();
    send_all(&store, 21..=30);
    store.flush().await.unwrap();
    let stats = store.stats().snapshot();
    assert_eq!(stats.written, 10);
    assert_eq!(
        stats.dropped, 20,
        "both batches written during the lock are counted as dropped"
    );
    assert_eq!(stats.write_errors, 2);
    let error = stats.last_error.expect("the error text is kept");
    assert!(error.contains("locked"), "{error}");

    sqlx::query("COMMIT").execute(&mut rival).await.unwrap();
    rival.close().await.unwrap();

    send_all(&store, 31..=40);
    store.flush().await.unwrap();
    assert_eq!(store.stats().written(), 20);
    assert_eq!(store.stats().write_errors(), 2);
    let expected: Vec<i64> = (1..=10).chain(31..=40).collect();
    assert_eq!(seqs(&store.events_after(0, 100).await.unwrap()), expected);
    store.shutdown().await.unwrap();
    assert_eq!(integrity(&path).await, "ok");
}

/// A connection's close or a chain's end in a batch that could not be written is kept and
/// written once writing resumes: the rows do not read open (or pending) for ever after.
#[tokio::test]
async fn the_ends_of_rows_in_a_batch_not_written_are_written_when_writing_resumes() {
    let (_dir, store, path) = with_ten_events().await;
    for id in 1..=3 {
        store.try_send(common::connection(id, "echo", 1_000, None));
    }
    store.try_send(common::deferred(7, "pending", 1_000));
    store.flush().await.unwrap();

    let mut rival = locked(&path).await;
    for id in 1..=3 {
        store.try_send(common::connection(id, "echo", 1_000, Some(2_000)));
    }
    store.try_send(common::deferred(7, "succeeded", 1_000));
    send_all(&store, 11..=12);
    store.flush().await.unwrap();
    assert_eq!(
        store.stats().dropped(),
        2,
        "the events are dropped, the ends are kept"
    );
    sqlx::query("COMMIT").execute(&mut rival).await.unwrap();
    rival.close().await.unwrap();

    store.flush().await.unwrap();
    for id in 1..=3 {
        let row = store.connection(id).await.unwrap().unwrap();
        assert_eq!(row.closed_at_ms, Some(2_000), "connection {id}: {row:?}");
    }
    let chain = store.deferred(7).await.unwrap().unwrap();
    assert_eq!(chain.deferred.state, "succeeded");
    let stats = store.stats();
    assert_eq!(stats.written(), 10 + 4 + 4);
    assert_eq!(stats.unwritten(), 0);
    store.shutdown().await.unwrap();
}

/// More ends lost than the writer keeps through an outage: at a clean stop every
/// connection is closed, so what still reads open is closed then, as `not_recorded`, not
/// left for the next start to call `process_ended`.
#[tokio::test]
async fn ends_lost_past_what_is_kept_are_closed_at_a_clean_stop() {
    let (dir, store, path) = with_ten_events().await;
    let n = 17_000;
    for id in 1..=n {
        store.try_send(common::connection(id, "echo", 1_000, None));
    }
    store.flush().await.unwrap();
    let mut rival = locked(&path).await;
    for id in 1..=n {
        store.try_send(common::connection(id, "echo", 1_000, Some(2_000)));
    }
    store.flush().await.unwrap();
    assert!(store.stats().dropped() > 0, "some were lost");
    sqlx::query("COMMIT").execute(&mut rival).await.unwrap();
    rival.close().await.unwrap();
    store.shutdown().await.unwrap();

    let store = Store::open_with(options(dir.path())).await.unwrap();
    let open = store
        .connections(Some(weft_store::ConnectionState::Open), None, 10)
        .await
        .unwrap();
    assert!(open.is_empty(), "{open:?}");
    let (mut recorded, mut unrecorded) = (0, 0);
    for id in 1..=n {
        match store
            .connection(id)
            .await
            .unwrap()
            .unwrap()
            .close_reason
            .as_deref()
        {
            Some("eof") => recorded += 1,
            Some(weft_store::NOT_RECORDED) => unrecorded += 1,
            other => panic!("connection {id}: {other:?}"),
        }
    }
    assert!(recorded >= 16_384, "kept and written: {recorded}");
    assert_eq!(recorded + unrecorded, n);
    store.shutdown().await.unwrap();
}

/// A filesystem with less free space than the writer leaves for retention takes no batch:
/// each is dropped and counted, naming the cause, and the ends of rows are kept.
#[tokio::test]
async fn a_filesystem_under_the_free_space_kept_takes_no_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.min_free_bytes = Some(u64::MAX);
    let store = Store::open_with(opts).await.unwrap();
    send_all(&store, 1..=5);
    store.try_send(common::connection(1, "echo", 1_000, Some(2_000)));
    store.flush().await.unwrap();
    let stats = store.stats().snapshot();
    assert_eq!(stats.written, 0);
    assert_eq!(stats.dropped, 5, "the events; the close is kept for later");
    let error = stats.last_error.expect("said");
    assert!(error.contains("bytes free, under the"), "{error}");
    store.shutdown().await.unwrap();
    let stats = store.stats();
    assert_eq!(
        (stats.dropped(), stats.unwritten()),
        (6, 0),
        "the close still owed at the stop is lost, and counted"
    );
}

/// Sets or clears the immutable attribute; root ignores permission bits but not this.
fn chattr(flag: &str, paths: &[PathBuf]) -> Result<(), String> {
    let out = Command::new("chattr")
        .arg(flag)
        .args(paths)
        .output()
        .map_err(|e| format!("cannot run chattr: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Clears the immutable attribute even if an assertion fails, so the temp dir can be removed.
struct Mutable(Vec<PathBuf>);

impl Drop for Mutable {
    fn drop(&mut self) {
        let _ = chattr("-i", &self.0);
    }
}

#[tokio::test]
async fn a_query_waits_for_a_busy_reader_no_longer_than_the_busy_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.max_readers = 1;
    let store = Store::open_with(opts).await.unwrap();
    let held = store.sqlite_pool().unwrap().acquire().await.unwrap();
    let asked = Instant::now();
    let e = store.services().await.unwrap_err();
    let waited = asked.elapsed();
    assert!(e.is_busy(), "{e}");
    assert!(
        waited < Duration::from_secs(2),
        "waited {waited:?} for a reader with a busy timeout of 200 ms"
    );
    drop(held);
    store
        .services()
        .await
        .expect("served once a reader is free");
}

#[tokio::test]
async fn an_unwritable_file_drops_and_counts_then_writing_resumes() {
    let (_dir, store, path) = with_ten_events().await;

    let mut wal = path.clone().into_os_string();
    wal.push("-wal");
    let files = vec![path.clone(), PathBuf::from(wal)];
    if let Err(reason) = chattr("+i", &files) {
        eprintln!("skipped: this filesystem cannot make files immutable ({reason})");
        store.shutdown().await.unwrap();
        return;
    }
    let guard = Mutable(files);

    send_all(&store, 11..=20);
    store.flush().await.unwrap();
    // The next batch reopens the connection, which now can only be read-only.
    send_all(&store, 21..=30);
    store.flush().await.unwrap();
    let stats = store.stats().snapshot();
    assert_eq!(
        (stats.written, stats.dropped, stats.write_errors),
        (10, 20, 2)
    );
    eprintln!(
        "unwritable file reported: {}",
        stats.last_error.unwrap_or_default()
    );

    drop(guard);
    send_all(&store, 31..=40);
    store.flush().await.unwrap();
    assert_eq!(store.stats().written(), 20);
    let expected: Vec<i64> = (1..=10).chain(31..=40).collect();
    assert_eq!(seqs(&store.events_after(0, 100).await.unwrap()), expected);
    store.shutdown().await.unwrap();
    assert_eq!(integrity(&path).await, "ok");
}

#[tokio::test]
async fn a_deleted_file_is_recreated_and_writing_resumes() {
    let (_dir, store, path) = with_ten_events().await;

    remove_with_suffixes(&path, &["", "-wal", "-shm"]);
    assert!(!path.exists());

    send_all(&store, 11..=20);
    store.flush().await.unwrap();
    assert!(path.exists(), "the file is recreated");
    let stats = store.stats().snapshot();
    assert_eq!(stats.reopens, 1);
    assert_eq!((stats.written, stats.dropped), (20, 0));
    // Readers are moved to the new file too; the old rows went with the old file.
    assert_eq!(
        seqs(&store.events_after(0, 100).await.unwrap()),
        (11..=20).collect::<Vec<_>>()
    );

    send_all(&store, 21..=30);
    store.flush().await.unwrap();
    assert_eq!(store.stats().reopens(), 1, "a healthy file is not reopened");
    store.shutdown().await.unwrap();
    assert_eq!(integrity(&path).await, "ok");
    let reopened = Store::open(&path).await.unwrap();
    assert_eq!(reopened.events_after(0, 100).await.unwrap().len(), 20);
    reopened.shutdown().await.unwrap();
}

/// A journal (`-wal`, `-shm`) deleted under a running store: SQLite goes on writing into
/// the deleted files, and what it writes would be lost with the process. The store saves
/// it into the database and starts a new journal.
#[tokio::test]
async fn a_deleted_journal_is_saved_into_the_database_and_a_new_one_started() {
    let (_dir, store, path) = with_ten_events().await;
    // Another program has the file open (a `sqlite3` shell, a backup): closing the store's
    // connections would then save nothing.
    let mut reader = connect(&path).await;
    let _: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut reader)
        .await
        .unwrap();
    remove_with_suffixes(&path, &["-wal", "-shm"]);
    send_all(&store, 11..=20);
    store.flush().await.unwrap();
    let stats = store.stats().snapshot();
    assert_eq!((stats.written, stats.dropped, stats.reopens), (20, 0, 1));
    let mut wal = path.clone().into_os_string();
    wal.push("-wal");
    assert!(Path::new(&wal).exists(), "a new journal");
    // The database file alone (its journal ignored, as if the process had died) holds
    // what the deleted journal held.
    let mut file = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .immutable(true)
        .connect()
        .await
        .unwrap();
    let saved: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut file)
        .await
        .unwrap();
    file.close().await.unwrap();
    assert_eq!(saved, 10);
    reader.close().await.unwrap();
    assert_eq!(
        seqs(&store.events_after(0, 100).await.unwrap()),
        (1..=20).collect::<Vec<_>>()
    );
    store.shutdown().await.unwrap();
    assert_eq!(integrity(&path).await, "ok");
}

/// A history file named through a symbolic link: SQLite keeps its journal beside the file
/// the link leads to, where the store looks for it, so it is not taken for lost.
#[tokio::test]
async fn a_history_file_behind_a_link_keeps_its_journal() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let real = dir.path().join("data").join("history.db");
    let link = dir.path().join("weft.db");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let store = Store::open(&link).await.unwrap();
    for batch in [1..=10, 11..=20, 21..=30] {
        send_all(&store, batch);
        store.flush().await.unwrap();
    }
    let stats = store.stats().snapshot();
    assert_eq!((stats.written, stats.reopens), (30, 0));
    // And there a lost journal is found, and saved.
    remove_with_suffixes(&real, &["-wal", "-shm"]);
    send_all(&store, 31..=40);
    store.flush().await.unwrap();
    let stats = store.stats().snapshot();
    assert_eq!((stats.written, stats.dropped, stats.reopens), (40, 0, 1));
    assert_eq!(
        seqs(&store.events_after(0, 100).await.unwrap()),
        (1..=40).collect::<Vec<_>>()
    );
    store.shutdown().await.unwrap();
}

/// Another program's database put in place of the history file while the store runs is
/// left as it is (a start refuses such a file too): what cannot be written is dropped and
/// counted, with the reason.
#[tokio::test]
async fn a_database_of_another_program_put_in_its_place_is_left_alone() {
    let (_dir, store, path) = with_ten_events().await;
    remove_with_suffixes(&path, &["", "-wal", "-shm"]);
    let mut other = connect(&path).await;
    sqlx::query("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('precious')")
        .execute(&mut other)
        .await
        .unwrap();
    other.close().await.unwrap();

    send_all(&store, 11..=20);
    store.flush().await.unwrap();
    let stats = store.stats().snapshot();
    assert_eq!((stats.written, stats.dropped), (10, 10));
    let error = stats.last_error.expect("the reason is kept");
    assert!(error.contains("another program's tables"), "{error}");
    let mut other = connect(&path).await;
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&mut other)
            .await
            .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut other)
        .await
        .unwrap();
    other.close().await.unwrap();
    assert_eq!(tables, ["notes"]);
    assert_eq!(mode, "delete", "its journal mode is its own");
    store.shutdown().await.unwrap();
}

/// Services are described once, when they start: a file recreated at run time gets them
/// again, or the dashboard would show services without kind or endpoints for good.
#[tokio::test]
async fn a_recreated_file_gets_the_services_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let path = store.options().path.clone();
    let echo = weft_store::ServiceRecord {
        name: "echo".into(),
        kind: "echo".into(),
        endpoints: vec!["tcp:8000".into(), "udp:8000".into()],
        config_json: "{}".into(),
    };
    store.try_send(echo.clone());
    store.flush().await.unwrap();
    remove_with_suffixes(&path, &["", "-wal", "-shm"]);
    send_all(&store, 1..=5);
    store.flush().await.unwrap();
    assert_eq!(store.stats().reopens(), 1);
    assert_eq!(store.services().await.unwrap(), std::slice::from_ref(&echo));
    store.shutdown().await.unwrap();

    // Read by a store that was never given it: it is in the new file.
    let reopened = Store::open(&path).await.unwrap();
    assert_eq!(reopened.services().await.unwrap(), [echo]);
    assert_eq!(reopened.events_after(0, 100).await.unwrap().len(), 5);
    reopened.shutdown().await.unwrap();
}

/// The `services` rows of the file itself, read past the store's catalog.
async fn stored_services(path: &Path) -> Vec<(String, String)> {
    let mut conn = connect(path).await;
    let rows = sqlx::query_as("SELECT name, endpoints_json FROM services ORDER BY name")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    conn.close().await.ok();
    rows
}

/// A reload changes and removes services while another process holds the file: they are
/// listed as they are now at once, and the file follows once the lock is gone, with no
/// other record to carry them.
#[tokio::test]
async fn services_changed_or_removed_under_a_lock_are_listed_at_once_and_reach_the_file_after() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let path = store.options().path.clone();
    let service = |name: &str, endpoint: &str| weft_store::ServiceRecord {
        name: name.into(),
        kind: "echo".into(),
        endpoints: vec![endpoint.into()],
        config_json: "{}".into(),
    };
    store.try_send(service("echo", "tcp:8000"));
    store.try_send(service("old", "tcp:8001"));
    store.flush().await.unwrap();
    assert_eq!(stored_services(&path).await.len(), 2);

    let mut rival = locked(&path).await;
    let start = Instant::now();
    store.remove_service("old");
    store.try_send(service("echo", "tcp:9000"));
    // Under the busy timeout (200 ms), which a call that waited would take.
    assert!(start.elapsed() < Duration::from_millis(190), "never waits");
    store.flush().await.unwrap();
    assert!(
        store.stats().write_errors() > 0,
        "the lock held the batch off"
    );
    assert_eq!(
        store.services().await.unwrap(),
        [service("echo", "tcp:9000")],
        "listed as they are now"
    );

    sqlx::query("COMMIT").execute(&mut rival).await.unwrap();
    rival.close().await.unwrap();
    let want = vec![("echo".to_owned(), r#"["tcp:9000"]"#.to_owned())];
    let deadline = Instant::now() + Duration::from_secs(10);
    while stored_services(&path).await != want {
        assert!(
            Instant::now() < deadline,
            "the file never followed: {:?}",
            stored_services(&path).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store.shutdown().await.unwrap();
}

const CRASH_DB: &str = "WEFT_STORE_CRASH_DB";

/// The child of `a_killed_writer_leaves_a_clean_file`: writes and flushes until killed.
#[tokio::test]
#[ignore = "runs as the child process of a_killed_writer_leaves_a_clean_file"]
async fn crash_child_writes_until_killed() {
    let path = std::env::var_os(CRASH_DB).expect("run by a_killed_writer_leaves_a_clean_file");
    let path = Path::new(&path);
    let mut opts = options(path.parent().unwrap());
    opts.path = path.to_owned();
    opts.flush_interval = Duration::from_millis(200);
    let store = Store::open_with(opts).await.unwrap();
    let mut seq = 0;
    loop {
        for _ in 0..500 {
            seq += 1;
            assert!(store.try_send(event(seq)));
            store.try_send(common::connection(seq % 50, "echo", seq, None));
        }
        store.flush().await.unwrap();
        println!("flushed {seq}");
    }
}

#[test]
fn a_killed_writer_leaves_a_clean_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child_writes_until_killed",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CRASH_DB, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut flushed = 0_i64;
    let mut flushes = 0;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        if let Some(n) = line.unwrap().strip_prefix("flushed ") {
            flushed = n.parse().unwrap();
            flushes += 1;
            if flushes == 20 {
                break;
            }
        }
    }
    assert_eq!(flushes, 20, "the child stopped before flushing 20 times");
    // Child::kill is SIGKILL: no destructors, no shutdown, mid-batch.
    child.kill().unwrap();
    child.wait().unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(integrity(&path).await, "ok");
        let mut conn = connect(&path).await;
        let (kept, max): (i64, i64) =
            sqlx::query_as("SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM events WHERE seq <= ?")
                .bind(flushed)
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(
            (kept, max),
            (flushed, flushed),
            "every flushed event survived"
        );
        conn.close().await.unwrap();
        let store = Store::open(&path).await.unwrap();
        assert!(store.events_after(flushed - 1, 1).await.unwrap().len() == 1);
        store.shutdown().await.unwrap();
    });
}

#[tokio::test]
async fn a_file_of_another_program_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    let mut other = connect(&path).await;
    sqlx::query("CREATE TABLE t (x)")
        .execute(&mut other)
        .await
        .unwrap();
    other.close().await.unwrap();
    let before = std::fs::read(&path).unwrap();

    let error = Store::open(&path).await.unwrap_err();
    assert!(
        matches!(error, weft_store::StoreError::Foreign { .. }),
        "{error}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "not migrated");
}

/// A second name for a history file a writer holds, a symlink or a hard link, does not
/// get past its lock: a link shares the lock of the file it leads to, and a file with
/// several names is refused (SQLite would keep a journal beside each).
#[tokio::test]
async fn a_link_to_a_held_history_file_is_refused_not_written_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("real.db");
    let first = Store::open(&db).await.unwrap();
    let link = dir.path().join("link.db");
    std::os::unix::fs::symlink(&db, &link).unwrap();
    let e = Store::open(&link).await.unwrap_err();
    assert!(
        matches!(e, weft_store::StoreError::InUse { .. }),
        "a symlink: {e}"
    );
    let hard = dir.path().join("hard.db");
    std::fs::hard_link(&db, &hard).unwrap();
    let e = Store::open(&hard).await.unwrap_err();
    assert!(
        matches!(e, weft_store::StoreError::HardLinked { names: 2, .. }),
        "a hard link: {e}"
    );
    first.shutdown().await.unwrap();
}
