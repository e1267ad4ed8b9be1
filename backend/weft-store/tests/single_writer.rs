//! One writer per history file: a store opened on a file another store writes is refused
//! before it reads or writes a row, so it cannot take the other's open rows for a killed
//! process's.

mod common;

use common::{connection, deferred, options};
use weft_store::{ConnectionState, DeferredFilter, MAX_LIMIT, Store, StoreError};

#[tokio::test]
async fn a_second_store_on_a_file_in_use_is_refused_and_leaves_the_first_ones_rows() {
    let dir = tempfile::tempdir().unwrap();
    let first = Store::open_with(options(dir.path())).await.unwrap();
    first.try_send(connection(1, "echo", 1_000, None));
    first.try_send(deferred(2, "pending", 1_000));
    first.flush().await.unwrap();

    let refused = Store::open_with(options(dir.path()))
        .await
        .expect_err("a second writer on the same file is refused");
    assert!(matches!(refused, StoreError::InUse { .. }), "{refused:?}");
    let message = refused.to_string();
    let path = dir.path().join("history.db");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        message.contains(&format!("process {}", std::process::id())),
        "names the process holding it: {message}"
    );

    // The first store's rows are as it wrote them, and its own close is kept.
    let open = first
        .connections(Some(ConnectionState::Open), None, MAX_LIMIT)
        .await
        .unwrap();
    assert_eq!(open.iter().map(|c| c.id).collect::<Vec<_>>(), [1]);
    let pending = first
        .deferreds(Some(DeferredFilter::Pending), None, MAX_LIMIT)
        .await
        .unwrap();
    assert_eq!(pending.iter().map(|d| d.id).collect::<Vec<_>>(), [2]);
    first.try_send(connection(1, "echo", 1_000, Some(3_000)));
    first.flush().await.unwrap();
    let closed = first.connection(1).await.unwrap().unwrap();
    assert_eq!(
        (closed.close_reason.as_deref(), closed.closed_at_ms),
        (Some("eof"), Some(3_000))
    );
    first.shutdown().await.unwrap();

    // Once the first has stopped, the file is free again.
    let next = Store::open_with(options(dir.path())).await.unwrap();
    assert_eq!(
        next.deferred(2).await.unwrap().unwrap().deferred.state,
        "cancelled",
        "what the first left pending is closed by the next writer"
    );
    next.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_store_dropped_without_shutdown_frees_the_file_when_its_writer_ends() {
    let dir = tempfile::tempdir().unwrap();
    let first = Store::open_with(options(dir.path())).await.unwrap();
    first.try_send(connection(1, "echo", 1_000, None));
    drop(first);
    // The writer commits what was queued, then lets go of the file.
    let mut reopened = None;
    for _ in 0..200 {
        match Store::open_with(options(dir.path())).await {
            Ok(store) => {
                reopened = Some(store);
                break;
            }
            Err(StoreError::InUse { .. }) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let store = reopened.expect("the file is free within 2 s");
    assert_eq!(
        store
            .connection(1)
            .await
            .unwrap()
            .unwrap()
            .close_reason
            .as_deref(),
        Some("process_ended")
    );
    store.shutdown().await.unwrap();
}

/// A writer whose lock file was deleted under it (`rm weft.db.lock`) holds the deleted
/// file until it takes a new one: a second store is refused meanwhile, naming it, rather
/// than taking the first one's open rows for a killed process's.
#[tokio::test]
async fn a_writer_holding_a_deleted_lock_file_keeps_a_second_store_out() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("history.db.lock");
    let ready = dir.path().join("ready");
    // Another process holding the lock, whose file is then deleted.
    let mut holder = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec 9>'{}' && flock -n 9 && rm '{}' && touch '{}' && exec sleep 30",
            lock.display(),
            lock.display(),
            ready.display()
        ))
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !ready.exists() {
        assert!(start.elapsed().as_secs() < 10, "the holder never got ready");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // Given as most are, relative to the working directory: the kernel names the held
    // file by its absolute path.
    let mut relative = options(dir.path());
    relative.path = std::path::PathBuf::from("history.db");
    let cwd = std::env::current_dir().unwrap();
    std::env::set_current_dir(dir.path()).unwrap();
    let refused = Store::open_with(relative).await;
    std::env::set_current_dir(cwd).unwrap();
    holder.kill().unwrap();
    holder.wait().unwrap();
    let refused = refused.expect_err("refused while another writer holds the deleted lock");
    assert!(
        matches!(refused, StoreError::InUse { holder: Some(pid), .. } if pid == holder.id()),
        "{refused:?}"
    );
    // Once it is gone, the file is free.
    Store::open_with(options(dir.path()))
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
}
