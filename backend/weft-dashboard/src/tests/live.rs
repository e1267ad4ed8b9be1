//! The live session over in-memory channels, and once over a real socket.

use std::sync::Arc;
use std::time::Duration;

use futures_channel::mpsc;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::*;
use crate::live::session::{Ended, Incoming, Violation, serve};
use crate::live::{FRAMES, Fanout, Frame, FrameKind};

fn events(seq: u64) -> Frame {
    Frame {
        kind: FrameKind::Events { last_seq: seq },
        json: format!(r#"{{"type":"events","seq":{seq}}}"#).into(),
    }
}

fn snapshot(seq: u64) -> Utf8Bytes {
    format!(r#"{{"type":"snapshot","seq":{seq}}}"#).into()
}

async fn next(rx: &mut mpsc::Receiver<Utf8Bytes>) -> serde_json::Value {
    let text = tokio::time::timeout(Duration::from_secs(5), rx.next())
        .await
        .expect("a message in time")
        .expect("the session is still sending");
    serde_json::from_str(text.as_str()).unwrap()
}

type Ending = Ended<mpsc::SendError>;

/// A session on its own task; the returned sender closes the client when dropped.
fn start(
    fanout: &Arc<Fanout>,
    sink: mpsc::Sender<Utf8Bytes>,
) -> (
    mpsc::UnboundedSender<Incoming>,
    tokio::task::JoinHandle<Ending>,
) {
    let (client, incoming) = mpsc::unbounded();
    let frames = fanout.subscribe();
    let fanout = fanout.clone();
    let task = tokio::spawn(async move { serve(sink, incoming, &fanout, frames, snapshot).await });
    (client, task)
}

async fn ended(task: tokio::task::JoinHandle<Ending>) -> Ending {
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the session ends")
        .unwrap()
}

#[tokio::test]
async fn a_client_gets_a_snapshot_then_only_newer_events() {
    let fanout = Arc::new(Fanout::default());
    fanout.publish(events(4)); // before the client: covered by its snapshot
    let (sink, mut rx) = mpsc::channel(64);
    let (client, task) = start(&fanout, sink);
    let first = next(&mut rx).await;
    assert_eq!(first["type"], "snapshot");
    assert_eq!(first["seq"], 4);
    fanout.publish(events(5));
    fanout.publish(Frame {
        kind: FrameKind::Stats,
        json: r#"{"type":"stats"}"#.into(),
    });
    assert_eq!(next(&mut rx).await["seq"], 5);
    assert_eq!(next(&mut rx).await["type"], "stats");
    client.unbounded_send(Incoming::Close).unwrap();
    assert!(matches!(ended(task).await, Ended::ClientClosed));
}

#[tokio::test]
async fn a_client_joining_as_a_batch_was_encoded_for_nobody_gets_its_events_in_a_snapshot() {
    let fanout = Arc::new(Fanout::default());
    let (sink, mut rx) = mpsc::channel(64);
    let (client, task) = start(&fanout, sink);
    assert_eq!(next(&mut rx).await["seq"], 0);
    // The encoder saw no client yet and skipped the text of events 1 to 3.
    fanout.publish(Frame {
        kind: FrameKind::Events { last_seq: 3 },
        json: Utf8Bytes::default(),
    });
    let caught_up = next(&mut rx).await;
    assert_eq!(caught_up["type"], "snapshot", "{caught_up}");
    assert_eq!(caught_up["seq"], 3);
    fanout.publish(events(4));
    assert_eq!(next(&mut rx).await["seq"], 4);
    client.unbounded_send(Incoming::Close).unwrap();
    assert!(matches!(ended(task).await, Ended::ClientClosed));
}

#[tokio::test]
async fn a_protocol_violation_ends_the_session_with_its_close_code() {
    let fanout = Arc::new(Fanout::default());
    let (sink, mut rx) = mpsc::channel(64);
    let (client, task) = start(&fanout, sink);
    assert_eq!(next(&mut rx).await["type"], "snapshot");
    client.unbounded_send(Incoming::Other).unwrap();
    client
        .unbounded_send(Incoming::Violation(Violation::TooBig))
        .unwrap();
    match ended(task).await {
        Ended::Violation(v) => assert_eq!((v.code(), v.reason()), (1009, "message too big")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn shutting_down_ends_every_session_even_one_stuck_sending() {
    let fanout = Arc::new(Fanout::default());
    // Nobody reads: the snapshot fills the channel and the next send blocks.
    let (sink, _rx) = mpsc::channel(0);
    let (_client, task) = start(&fanout, sink);
    fanout.publish(events(1));
    fanout.publish(events(2));
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(!task.is_finished());
    fanout.shut_down();
    assert!(matches!(ended(task).await, Ended::ShuttingDown));
}

#[tokio::test]
async fn a_lagging_client_is_told_what_it_missed_and_resynced() {
    let fanout = Arc::new(Fanout::default());
    // Room for the snapshot only: the session blocks on the next send until read.
    let (sink, mut rx) = mpsc::channel(0);
    let (_client, task) = start(&fanout, sink);
    assert_eq!(next(&mut rx).await["type"], "snapshot");
    // Frame 1 fills the channel; the session then blocks sending frame 2.
    fanout.publish(events(1));
    fanout.publish(events(2));
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    let total = FRAMES as u64 + 50;
    // The publisher never waits on the slow client.
    let published = tokio::time::Instant::now();
    for seq in 3..=total {
        fanout.publish(events(seq));
    }
    assert!(published.elapsed() < Duration::from_secs(1));
    // What it had taken before falling behind arrives, then the news that it lagged.
    let mut delivered = 0;
    let lagged = loop {
        let m = next(&mut rx).await;
        if m["type"] == "lagged" {
            break m;
        }
        delivered = m["seq"].as_u64().unwrap();
    };
    assert!((1..=2).contains(&delivered), "{delivered}");
    assert_eq!(lagged["missed"], total - delivered);
    let resync = next(&mut rx).await;
    assert_eq!(resync["type"], "snapshot");
    assert_eq!(resync["seq"], total);
    // Frames already covered by the new snapshot are not sent again.
    fanout.publish(events(total + 1));
    let after = next(&mut rx).await;
    assert_eq!(after["seq"], total + 1, "{after}");
    task.abort();
}

#[tokio::test]
async fn the_encoder_losing_events_resyncs_every_client() {
    let fanout = Arc::new(Fanout::default());
    let (sink, mut rx) = mpsc::channel(64);
    let (_client, task) = start(&fanout, sink);
    assert_eq!(next(&mut rx).await["type"], "snapshot");
    fanout.publish(Frame {
        kind: FrameKind::Resync(17),
        json: crate::live::lagged(17),
    });
    let lagged = next(&mut rx).await;
    assert_eq!(
        (lagged["type"].as_str(), lagged["missed"].as_u64()),
        (Some("lagged"), Some(17))
    );
    assert_eq!(next(&mut rx).await["type"], "snapshot");
    task.abort();
}

#[tokio::test]
async fn a_closed_socket_ends_the_session() {
    let fanout = Arc::new(Fanout::default());
    let (sink, rx) = mpsc::channel(0);
    drop(rx);
    let (_client, task) = start(&fanout, sink);
    assert!(matches!(ended(task).await, Ended::SendFailed(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_websocket_client_gets_the_snapshot_and_the_stats() {
    let state = state();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let background = tokio::spawn(crate::background(state.clone(), std::future::pending()));
    let server = tokio::spawn(async move {
        axum::serve(listener, router(state)).await.unwrap();
    });
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a message in time")
            .unwrap()
            .unwrap();
        let value: serde_json::Value = serde_json::from_str(message.to_text().unwrap()).unwrap();
        kinds.push(value["type"].as_str().unwrap().to_owned());
        if kinds.len() == 1 {
            assert!(value["connections"].is_array() && value["alerts"].is_object());
        }
    }
    assert_eq!(kinds, ["snapshot", "stats"]);
    background.abort();
    server.abort();
}
