//! History that cannot be read: live rows are still served, with a note saying what is
//! missing, and the failure is counted; views that are history only answer 503.

use weft::defer::Deferred;

use super::*;

/// A store that held a closed connection and can no longer be read.
async fn failed_store() -> (tempfile::TempDir, Store) {
    let (dir, store) = store_with(vec![closed_connection(1, "echo", "10.0.0.1:5000").into()]).await;
    store.shutdown().await.unwrap();
    (dir, store)
}

/// A runtime to drive requests on, and a reactor with a hub installed.
fn runtime_and_hub() -> (tokio::runtime::Runtime, weft::Reactor, std::sync::Arc<Hub>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reactor = weft::Reactor::new().unwrap();
    let hub = Hub::new(HubConfig::default()).unwrap();
    hub.install(&reactor);
    (runtime, reactor, hub)
}

/// [`runtime_and_hub`], and the dashboard on a store that can no longer be read (with the
/// directory its file was in).
fn on_a_failed_store() -> (
    tokio::runtime::Runtime,
    weft::Reactor,
    tempfile::TempDir,
    axum::Router,
) {
    let (runtime, reactor, hub) = runtime_and_hub();
    let (dir, store) = runtime.block_on(failed_store());
    let app = router(DashboardState::new(hub).with_store(store));
    (runtime, reactor, dir, app)
}

fn counted(app: &axum::Router, runtime: &tokio::runtime::Runtime) -> String {
    let metrics = runtime.block_on(get(app.clone(), "/metrics")).body;
    metrics
        .lines()
        .find(|l| l.starts_with(r#"weft_dashboard_history_errors_total{reason="failed"}"#))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn views_with_live_rows_serve_them_with_a_note_when_history_cannot_be_read() {
    let (runtime, _reactor, _dir, app) = on_a_failed_store();
    let (_resolver, pending) = Deferred::<u32>::labeled("still live");
    let live = pending.id().0;
    let get = |path: &str| runtime.block_on(get(app.clone(), path));

    // JSON: the live part, and why the rest is missing.
    for path in [
        "/api/connections",
        "/api/deferreds",
        "/api/deferreds?state=failed",
    ] {
        let a = get(path);
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
        let note = a.json()["history_error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(note.contains("could not be read"), "{path}: {}", a.body);
    }
    let pending_list = get("/api/deferreds").json();
    assert_eq!(pending_list["items"][0]["id"], live);
    let chain = get(&format!("/api/deferreds/{live}"));
    assert_eq!(chain.status, StatusCode::OK, "{}", chain.body);
    assert!(chain.json()["history_error"].is_string());
    let services = get("/api/services");
    assert_eq!(services.status, StatusCode::OK);
    assert!(
        services
            .headers
            .contains_key(crate::api::HISTORY_ERROR_HEADER)
    );

    // Pages: the same, with the note shown.
    for path in [
        "/",
        "/connections",
        "/deferreds?state=failed",
        "/services",
        &format!("/deferreds/{live}"),
    ] {
        let a = get(path);
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
        assert!(a.body.contains(r#"id="history-error""#), "{path}");
    }

    // Open connections alone never touch history: no note, nothing counted.
    let before = counted(&app, &runtime);
    for path in ["/connections?state=open", "/api/connections?state=open"] {
        let a = get(path);
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert!(!a.body.contains("history-error") && !a.body.contains("history_error"));
    }
    assert_eq!(counted(&app, &runtime), before);

    // Views that are history only say so with 503.
    for path in ["/api/events", "/api/connections/1", "/connections/1"] {
        let a = get(path);
        assert_eq!(
            a.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}: {}",
            a.body
        );
        assert!(a.body.contains("could not be read"), "{path}: {}", a.body);
    }
    assert!(
        !before.is_empty() && !before.ends_with(" 0"),
        "each view that missed its history is counted: {before:?}"
    );
}

/// Counts the events logged whose message has `needle`.
struct CountingSubscriber {
    needle: &'static str,
    seen: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl tracing::Subscriber for CountingSubscriber {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        if message.0.contains(self.needle) {
            self.seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn history_that_cannot_be_read_is_logged_once_for_many_views() {
    // A browser polls its view every second or two: while history stays unreadable, each
    // poll is counted, and the log says so once, not once a poll.
    let (runtime, _reactor, _dir, app) = on_a_failed_store();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = CountingSubscriber {
        needle: "history unavailable to the dashboard",
        seen: seen.clone(),
    };
    tracing::subscriber::with_default(counter, || {
        for _ in 0..20 {
            let a = runtime.block_on(get(app.clone(), "/api/connections?state=closed"));
            assert!(a.json()["history_error"].is_string(), "{}", a.body);
        }
    });
    let logged = seen.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(logged, 1, "logged {logged} times");
}

/// History that reads but cannot be written (a file locked, full or corrupt) serves its
/// rows with a note that it is behind: rows closed since are missing from them.
#[test]
fn views_read_from_history_while_writing_it_fails_say_it_is_behind() {
    use sqlx::{ConnectOptions, Connection};
    let (runtime, _reactor, hub) = runtime_and_hub();
    let (_dir, store) = runtime.block_on(store_with(vec![
        closed_connection(1, "echo", "10.0.0.1:5000").into(),
    ]));
    let path = store.options().path.clone();
    let app = router(DashboardState::new(hub).with_store(store.clone()));
    let get = |path: &str| runtime.block_on(get(app.clone(), path));
    let fresh = get("/api/connections?state=closed");
    assert!(fresh.json()["history_error"].is_null(), "{}", fresh.body);

    let mut rival = runtime.block_on(async {
        let mut rival = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .connect()
            .await
            .unwrap();
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut rival)
            .await
            .unwrap();
        store.try_send(closed_connection(2, "echo", "10.0.0.2:5000"));
        store.flush().await.unwrap();
        rival
    });
    let behind = get("/api/connections?state=closed");
    assert_eq!(behind.status, StatusCode::OK);
    assert_eq!(behind.json()["items"][0]["id"], 1);
    let note = behind.json()["history_error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(note.starts_with("history is behind"), "{}", behind.body);
    let events = get("/api/events");
    assert_eq!(events.status, StatusCode::OK);
    assert!(
        events.headers[crate::api::HISTORY_ERROR_HEADER]
            .to_str()
            .unwrap()
            .starts_with("history is behind"),
        "{:?}",
        events.headers
    );

    runtime.block_on(async {
        sqlx::query("COMMIT").execute(&mut rival).await.unwrap();
        rival.close().await.unwrap();
        store.flush().await.unwrap();
    });
    let caught_up = get("/api/connections?state=closed");
    assert!(
        caught_up.json()["history_error"].is_null(),
        "{}",
        caught_up.body
    );
    assert_eq!(caught_up.json()["items"][0]["id"], 2);
}
