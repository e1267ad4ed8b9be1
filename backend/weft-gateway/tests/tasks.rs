//! Async tasks through the inspector, in a program written against the public API only:
//! a task whose poll blocks the reactor and a task stalled on a Deferred nobody fires are
//! each detected, and shown by the JSON API and the page with their spawn site, label and
//! connection, within their threshold plus a second.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use weft::defer::Deferred;
use weft::{Reactor, ReactorConfig};
use weft_inspector::{Inspector, InspectorConfig};
use weft_store::StoreOptions;
use weft_test_support::{eventually, run_with_client};

use common::{get, get_text};

mod common;

const SLOW: Duration = Duration::from_millis(100);
const STALL: Duration = Duration::from_millis(1000);
const BLOCK: Duration = Duration::from_millis(300);

/// The item labelled `label` in the `/api/deferreds?state=` list.
fn listed(addr: SocketAddr, state: &str, label: &str) -> Option<Value> {
    get(addr, &format!("/api/deferreds?state={state}"))?["items"]
        .as_array()?
        .iter()
        .find(|d| d["label"] == label)
        .cloned()
}

#[test]
fn a_blocking_poll_and_a_stalled_task_are_detected_with_site_label_and_connection() {
    let dir = tempfile::tempdir().unwrap();
    let reactor = Reactor::with_config(ReactorConfig {
        slow_callback: SLOW,
        stall_after: STALL,
        handle_signals: false,
        // The stuck task never ends: shutdown gives up on it soon.
        shutdown_deadline: Duration::from_millis(300),
        ..ReactorConfig::default()
    })
    .unwrap();
    let mut store = StoreOptions::new(dir.path().join("history.db"));
    store.flush_interval = Duration::from_millis(20);
    let mut config = InspectorConfig::default();
    config.store = Some(store);
    config.dashboard = Some("tcp:0:interface=127.0.0.1".into());
    let inspector = Inspector::start(&reactor, config).unwrap();
    let dashboard = inspector.dashboard_addr().unwrap();

    // Each line a client sends spawns one task from inside its connection's handler.
    let port = reactor
        .listen_stream("tasks", "tcp:0:interface=127.0.0.1", |stream| async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let reactor = Reactor::current();
                match line.as_str() {
                    "block" => reactor.spawn_labeled("cruncher", async {
                        // CPU-bound work done on the reactor thread.
                        std::thread::sleep(BLOCK);
                    }),
                    "stall" => {
                        let (resolver, answer) = Deferred::<()>::labeled("never answered");
                        reactor.spawn_labeled("stuck", async move {
                            let _kept = resolver;
                            let _ = answer.await;
                        });
                    }
                    _ => {}
                }
            }
        })
        .unwrap();
    let service = port.local_addr().unwrap();

    run_with_client(&reactor, move || {
        let mut client = TcpStream::connect(service).unwrap();
        let local = client.local_addr().unwrap().to_string();
        let sent = Instant::now();
        client.write_all(b"block\nstall\n").unwrap();

        let connection = eventually("the client's connection is listed", || {
            get(dashboard, "/api/connections?state=open")?["items"]
                .as_array()?
                .iter()
                .find(|c| c["peer"] == local.as_str())?["id"]
                .as_i64()
        });

        let slow = eventually("the blocking task is detected slow", || {
            listed(dashboard, "slow", "cruncher")
        });
        assert!(
            sent.elapsed() < BLOCK + SLOW + Duration::from_secs(1),
            "slow shown after {:?}",
            sent.elapsed()
        );
        assert_eq!(slow["kind"], "task", "{slow}");
        assert_eq!(slow["task"]["kind"], "spawned", "{slow}");
        assert!(
            slow["site"]
                .as_str()
                .is_some_and(|s| s.contains("tests/tasks.rs")),
            "its spawn site: {slow}"
        );
        assert_eq!(slow["connection_id"], connection, "{slow}");
        assert_eq!(slow["service"], "tasks", "{slow}");
        // Its busy time counts the blocking poll once the poll has ended: the watchdog may
        // name it slow while it still blocks.
        eventually("the blocking poll counted in its busy time", || {
            let slow = listed(dashboard, "slow", "cruncher")?;
            (slow["task"]["busy_us"].as_u64()? >= BLOCK.as_micros() as u64).then_some(())
        });

        let stalled = eventually("the stuck task is detected stalled", || {
            listed(dashboard, "stalled", "stuck")
        });
        assert!(
            sent.elapsed() < STALL + Duration::from_secs(1),
            "stalled shown after {:?}",
            sent.elapsed()
        );
        assert_eq!(stalled["kind"], "task", "{stalled}");
        assert_eq!(stalled["connection_id"], connection, "{stalled}");
        assert!(
            stalled["site"]
                .as_str()
                .is_some_and(|s| s.contains("tests/tasks.rs")),
            "{stalled}"
        );
        let awaited = listed(dashboard, "pending", "never answered").expect("its Deferred");
        assert_eq!(stalled["task"]["awaiting"], awaited["id"], "{stalled}");
        assert_eq!(stalled["waiting_on"], awaited["id"], "{stalled}");

        // The connection's own task waits on its peer: listed, never stalled.
        let own = get(dashboard, "/api/deferreds?state=pending").unwrap()["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["task"]["kind"] == "connection" && d["connection_id"] == connection)
            .cloned()
            .expect("the connection's task is listed");
        assert_eq!(own["stalled"], false, "{own}");
        assert_eq!(own["task"]["waiting_on_peer"], true, "{own}");

        // The page shows the task, where it was spawned and what it awaits.
        let id = stalled["id"].as_i64().unwrap();
        let page = get_text(dashboard, &format!("/deferreds/{id}")).expect("the task's page");
        assert!(page.contains(&format!("Task {id}")), "{page}");
        assert!(page.contains("spawned at"), "{page}");
        assert!(page.contains("tests/tasks.rs"), "{page}");
        assert!(
            page.contains(&format!("href=\"/deferreds/{}\"", awaited["id"])),
            "{page}"
        );
        let list = get_text(dashboard, "/deferreds?state=stalled").unwrap();
        assert!(
            list.contains("stuck") && list.contains("pill task"),
            "{list}"
        );
        drop(client);
    });
    inspector.join();
}
