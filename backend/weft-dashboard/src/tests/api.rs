//! The JSON API mirrors every view.

use super::*;

#[tokio::test]
async fn metrics_are_served_in_the_text_format() {
    let a = get(router(state()), "/metrics").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.kind.starts_with("text/plain; version=0.0.4"),
        "{}",
        a.kind
    );
    assert!(a.body.contains("# TYPE weft_reactor_lag_seconds histogram"));
}

#[tokio::test]
async fn healthz_reports_ok_as_json() {
    let a = get(router(state()), "/healthz").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.kind, "application/json");
    assert_eq!(a.json()["status"], "ok");
    assert_eq!(a.json()["open_connections"], 0);
}

#[tokio::test]
async fn readyz_is_503_with_what_is_missing_until_the_hub_says_ready_and_needs_no_token() {
    let hub = Hub::new(HubConfig::default()).unwrap();
    hub.expect_listener("echo", "tcp:8000");
    let app = router(DashboardState::new(hub).with_token("s3cret"));
    let a = get(app, "/readyz").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.kind, "application/json");
    assert_eq!(a.json()["status"], "starting");
    assert_eq!(a.json()["missing"], serde_json::json!(["echo tcp:8000"]));
}

#[tokio::test]
async fn connections_merge_history_and_honour_filters_and_the_cap() {
    let (_dir, store) = store_with(vec![
        closed_connection(1, "echo", "10.0.0.1:5000").into(),
        closed_connection(2, "echo", "10.0.0.2:5000").into(),
        closed_connection(3, "proxy", "10.0.0.3:5000").into(),
    ])
    .await;
    let app = router(state().with_store(store));
    let all = get(app.clone(), "/api/connections").await.json();
    assert_eq!(all["items"].as_array().unwrap().len(), 3);
    assert_eq!(all["items"][0]["state"], "closed");
    assert_eq!(all["items"][0]["age_ms"], 1500);

    let echo = get(
        app.clone(),
        "/api/connections?state=closed&service=echo&limit=1",
    )
    .await;
    let echo = echo.json();
    assert_eq!(echo["items"].as_array().unwrap().len(), 1);
    assert_eq!(echo["items"][0]["service"], "echo");
    assert_eq!(
        echo["hidden"], 1,
        "one echo connection is left out by the limit"
    );

    let peer = get(app.clone(), "/api/connections?peer=10.0.0.3")
        .await
        .json();
    assert_eq!(peer["items"][0]["id"], 3);
    // A filter that is no address is refused before history is asked (which refused so
    // long a pattern, and said history was unavailable).
    let long = get(
        app.clone(),
        &format!("/api/connections?peer={}", "9".repeat(257)),
    )
    .await;
    assert_eq!(long.status, StatusCode::BAD_REQUEST);
    assert!(
        long.json()["error"]
            .as_str()
            .unwrap()
            .contains("at most 256 bytes"),
        "{}",
        long.body
    );

    assert_eq!(
        get(app.clone(), "/api/connections?state=open").await.json()["items"],
        serde_json::json!([])
    );
    let bad = get(app.clone(), "/api/connections?state=half").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.json()["error"]
            .as_str()
            .unwrap()
            .contains("open, closed")
    );

    let one = get(app.clone(), "/api/connections/2").await;
    assert_eq!(one.json()["peer"], "10.0.0.2:5000");
    assert_eq!(
        get(app, "/api/connections/99").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn connections_are_sorted_by_the_column_and_direction_asked_for() {
    let conn = |id, service, bytes_in| {
        let mut c = closed_connection(id, service, &format!("10.0.0.{id}:5000"));
        c.bytes_in = bytes_in;
        c.into()
    };
    let (_dir, store) = store_with(vec![
        conn(1, "echo", 300),
        conn(2, "proxy", 20),
        conn(3, "echo", 1_000),
    ])
    .await;
    let app = router(state().with_store(store));
    let ids = |path: &'static str| {
        let app = app.clone();
        async move {
            let a = get(app, path).await;
            assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
            a.json()["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_i64().unwrap())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(ids("/api/connections").await, vec![3, 2, 1], "newest first");
    assert_eq!(ids("/api/connections?sort=&dir=").await, vec![3, 2, 1]);
    assert_eq!(ids("/api/connections?dir=asc").await, vec![1, 2, 3]);
    assert_eq!(ids("/api/connections?sort=bytes_in").await, vec![3, 1, 2]);
    assert_eq!(
        ids("/api/connections?sort=bytes_in&dir=asc").await,
        vec![2, 1, 3]
    );
    assert_eq!(
        ids("/api/connections?sort=service&dir=asc").await,
        vec![3, 1, 2],
        "a tie keeps the newest first"
    );
    assert_eq!(
        ids("/api/connections?sort=peer&dir=asc&service=echo").await,
        vec![1, 3]
    );
    // The limit keeps the first rows of the order asked for.
    let top = get(app.clone(), "/api/connections?sort=bytes_in&limit=1")
        .await
        .json();
    assert_eq!(top["items"][0]["id"], 3);
    assert_eq!(top["hidden"], 1);

    let bad = get(app.clone(), "/api/connections?sort=colour").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let error = bad.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("\"colour\""), "{error}");
    assert!(
        error.contains("id, service, transport, peer, age_ms, bytes_in, bytes_out, state"),
        "{error}"
    );
    let bad = get(app, "/api/connections?sort=id&dir=up").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.json()["error"].as_str().unwrap().contains("asc, desc"));
}

/// A chain that fired at once and then waited on a Deferred a step returned is as old as
/// the time to its end, not to its firing; rows written before history kept the end fall
/// back on the firing.
#[tokio::test]
async fn an_ended_chain_s_age_runs_to_its_end() {
    let mut waited = deferred(1, "succeeded");
    waited.fired_at_ms = Some(1_001);
    waited.ended_at_ms = Some(21_000);
    let mut older = deferred(2, "failed");
    older.fired_at_ms = Some(1_250);
    let (_dir, store) = store_with(vec![waited.into(), older.into()]).await;
    let app = router(state().with_store(store));
    let page = get(app.clone(), "/api/deferreds").await.json();
    let age = |id: i64| {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == id)
            .map(|d| (d["age_ms"].clone(), d["ended_at_ms"].clone()))
            .unwrap()
    };
    assert_eq!(age(1), (20_000.into(), 21_000.into()));
    assert_eq!(age(2), (250.into(), serde_json::Value::Null));
    // The one chain's answer says its age too, as the list does.
    let one = get(app.clone(), "/api/deferreds/1").await.json();
    assert_eq!(one["age_ms"], 20_000, "{one}");
    let detail = get(app, "/deferreds/1").await;
    assert!(detail.body.contains("<dt>ended</dt>"), "{}", detail.body);
}

#[tokio::test]
async fn deferreds_are_listed_by_tab_with_steps_and_children() {
    let mut stalled = deferred(1, "paused");
    stalled.stalled = true;
    stalled.waiting_on = Some(2);
    let mut child = deferred(2, "pending");
    child.parent_id = Some(1);
    let mut failed = deferred(3, "failed");
    failed.failure = Some("ConnectionRefused".into());
    failed.fired_at_ms = Some(1_250);
    let (_dir, store) = store_with(vec![
        stalled.into(),
        child.into(),
        failed.into(),
        step(1, 0, "ok", None).into(),
        step(1, 1, "paused", Some(2)).into(),
    ])
    .await;
    let app = router(state().with_store(store));
    let tab = |s: &'static str| {
        let app = app.clone();
        async move { get(app, &format!("/api/deferreds?state={s}")).await.json() }
    };
    let ids = |v: serde_json::Value| -> Vec<i64> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_i64().unwrap())
            .collect()
    };
    // Pending means pending now: live chains only; these rows are from a run that ended.
    assert_eq!(ids(tab("pending").await), Vec::<i64>::new());
    assert_eq!(
        ids(get(app.clone(), "/api/deferreds").await.json()),
        vec![3, 2, 1]
    );
    assert_eq!(ids(tab("stalled").await), vec![1]);
    assert_eq!(ids(tab("failed").await), vec![3]);
    assert_eq!(tab("failed").await["items"][0]["age_ms"], 250);
    assert_eq!(ids(tab("leaked").await), Vec::<i64>::new());
    assert_eq!(
        get(app.clone(), "/api/deferreds?state=lost").await.status,
        StatusCode::BAD_REQUEST
    );

    let detail = get(app.clone(), "/api/deferreds/1").await.json();
    assert_eq!(detail["site"], "src/proto.rs:42");
    assert_eq!(detail["steps"].as_array().unwrap().len(), 2);
    assert_eq!(detail["steps"][1]["child_id"], 2);
    assert_eq!(detail["children"][0]["id"], 2);

    let conn = get(app, "/api/connections/7").await;
    assert_eq!(conn.status, StatusCode::NOT_FOUND, "no such connection row");
}

#[tokio::test]
async fn events_page_on_by_sequence_number() {
    let events = (1..=5).map(|seq| {
        Record::Event(weft_store::EventRecord {
            seq,
            at_ms: seq * 10,
            kind: "refused".into(),
            payload_json: format!(r#"{{"type":"refused","n":{seq}}}"#),
        })
    });
    let (_dir, store) = store_with(events.collect()).await;
    let app = router(state().with_store(store));
    let page = get(app.clone(), "/api/events?after=2&limit=2").await.json();
    let seqs: Vec<_> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].clone())
        .collect();
    assert_eq!(seqs, vec![3, 4]);
    assert_eq!(page[0]["type"], "refused");
    assert_eq!(page[0]["data"]["n"], 3);
    assert_eq!(
        get(router(state()), "/api/events").await.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "without a store there are no events to page through"
    );
}

#[tokio::test]
async fn services_combine_configuration_and_figures() {
    let (_dir, store) = store_with(vec![
        weft_store::ServiceRecord {
            name: "echo".into(),
            kind: "echo".into(),
            endpoints: vec!["tcp:8000".into()],
            config_json: r#"{"max":3}"#.into(),
        }
        .into(),
    ])
    .await;
    let a = get(router(state().with_store(store)), "/api/services")
        .await
        .json();
    assert_eq!(a[0]["name"], "echo");
    assert_eq!(a[0]["endpoints"][0], "tcp:8000");
    assert_eq!(a[0]["config"]["max"], 3);
    assert_eq!(a[0]["stats"]["now"]["active"], 0);
}

#[tokio::test]
async fn static_assets_are_compiled_in() {
    let app = router(state());
    let js = get(app.clone(), "/static/app.js").await;
    assert_eq!(js.status, StatusCode::OK);
    assert!(js.kind.starts_with("text/javascript"));
    assert!(js.body.contains("import"));
    assert_eq!(
        get(app, "/static/nope.js").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn metrics_are_served_as_openmetrics_when_the_scraper_asks() {
    let request = Request::get("/metrics")
        .header(
            header::ACCEPT,
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .body(Body::empty())
        .unwrap();
    let a = send(router(state()), request).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.kind,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert_eq!(a.headers[header::VARY], "accept");
    assert!(a.body.contains("# TYPE weft_reactor_lag_seconds histogram"));
    assert!(
        a.body
            .contains("# TYPE weft_dashboard_history_errors counter\n"),
        "{}",
        a.body
    );
    assert!(a.body.ends_with("# EOF\n"));
}

#[tokio::test]
async fn a_list_cut_at_the_largest_limit_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("weft.db")).await.unwrap();
    let rows = i64::from(weft_store::MAX_LIMIT) + 2;
    for id in 1..=rows {
        let record: Record = closed_connection(id, "echo", "10.0.0.1:5000").into();
        if !store.try_send(record.clone()) {
            store.flush().await.unwrap();
            assert!(store.try_send(record));
        }
    }
    store.flush().await.unwrap();
    let app = router(state().with_store(store));
    let max = weft_store::MAX_LIMIT;
    let list = get(app, &format!("/api/connections?state=closed&limit={max}"))
        .await
        .json();
    assert_eq!(list["items"].as_array().unwrap().len(), max as usize);
    assert_eq!(
        list["hidden"], 1,
        "found past the limit: a lower bound, not 0"
    );
    drop(dir);
}

#[tokio::test]
async fn any_whole_number_is_an_id_and_one_no_history_holds_is_not_found() {
    let app = router(state());
    let past = "9223372036854775808"; // i64::MAX + 1: a u64, as connection ids are
    for kind in ["connections", "deferreds"] {
        let a = get(app.clone(), &format!("/api/{kind}/{past}")).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{kind}: {}", a.body);
        let a = get(app.clone(), &format!("/api/{kind}/nine")).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{kind}: {}", a.body);
    }
}
