//! Rows a killed process left open are closed when the file is opened again.

mod common;

use common::{connection, deferred, event, options, step};
use weft_store::{ConnectionState, DeferredFilter, MAX_LIMIT, Store};

#[tokio::test]
async fn connections_and_chains_a_killed_process_left_open_are_closed_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(options(dir.path())).await.unwrap();
    // As a process leaves them when it is killed: open, pending, and one chain that fired
    // and waits on a child. The last thing it recorded happened at 5 000.
    store.try_send(connection(1, "echo", 1_000, None));
    store.try_send(connection(2, "echo", 1_200, Some(1_300)));
    store.try_send(deferred(3, "pending", 2_000));
    store.try_send(step(3, 0, 2_000_000));
    let waiting = weft_store::DeferredRecord {
        fired_at_ms: Some(2_600),
        waiting_on: Some(3),
        ..deferred(4, "waiting", 2_500)
    };
    store.try_send(waiting);
    store.try_send(weft_store::EventRecord {
        at_ms: 5_000,
        ..event(2)
    });
    store.flush().await.unwrap();
    store.shutdown().await.unwrap();

    let store = Store::open_with(options(dir.path())).await.unwrap();
    assert!(
        store
            .connections(Some(ConnectionState::Open), None, MAX_LIMIT)
            .await
            .unwrap()
            .is_empty()
    );
    let closed = store.connection(1).await.unwrap().unwrap();
    assert_eq!(closed.close_reason.as_deref(), Some("process_ended"));
    assert_eq!(
        closed.closed_at_ms,
        Some(5_000),
        "when it was last seen alive"
    );
    assert!(
        closed
            .close_detail
            .is_some_and(|d| d.contains("the process ended")),
    );
    let listed = store
        .connections(Some(ConnectionState::Closed), Some("echo"), MAX_LIMIT)
        .await
        .unwrap();
    assert_eq!(listed.iter().map(|c| c.id).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(
        store
            .connection(2)
            .await
            .unwrap()
            .unwrap()
            .close_reason
            .as_deref(),
        Some("eof"),
        "a closed one is left as it was"
    );

    assert!(
        store
            .deferreds(Some(DeferredFilter::Pending), None, MAX_LIMIT)
            .await
            .unwrap()
            .is_empty()
    );
    let pending = store.deferred(3).await.unwrap().unwrap();
    assert_eq!(pending.deferred.state, "cancelled");
    assert_eq!(pending.deferred.fired_at_ms, Some(5_000));
    assert!(
        pending
            .deferred
            .failure
            .is_some_and(|f| f.starts_with("ProcessEnded:"))
    );
    assert_eq!(pending.steps.len(), 1, "its steps stay with it");
    let waiting = store.deferred(4).await.unwrap().unwrap().deferred;
    assert_eq!(
        (
            waiting.state.as_str(),
            waiting.fired_at_ms,
            waiting.waiting_on
        ),
        ("cancelled", Some(2_600), None)
    );

    // Finished now, so retention prunes them like any other finished row.
    store.prune_before(10_000).await.unwrap();
    assert!(
        store
            .connections(None, None, MAX_LIMIT)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .deferreds(None, None, MAX_LIMIT)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.deferred(3).await.unwrap().is_none());
    store.shutdown().await.unwrap();
}
