//! A chain that has not finished shows the steps it has not run yet and the one it waits
//! at, on its page and in its JSON, live from the hub and from history.

use weft::defer::Deferred;

use super::*;

#[test]
fn a_live_chain_shows_its_queued_steps_and_the_step_it_waits_at() {
    let reactor = weft::Reactor::new().unwrap();
    let hub = Hub::new(HubConfig::default()).unwrap();
    hub.install(&reactor);
    let app = router(DashboardState::new(hub));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let detail = |id: u64| {
        let app = app.clone();
        runtime.block_on(async move {
            let json = get(app.clone(), &format!("/api/deferreds/{id}")).await;
            assert_eq!(json.status, StatusCode::OK, "{}", json.body);
            let page = get(app, &format!("/deferreds/{id}")).await;
            assert_eq!(page.status, StatusCode::OK);
            (json.json(), page.body)
        })
    };
    let steps = |json: &serde_json::Value| -> Vec<(i64, String)> {
        json["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["idx"].as_i64().unwrap(),
                    s["outcome"].as_str().unwrap().into(),
                )
            })
            .collect()
    };

    let (resolver, d) = Deferred::<u32>::labeled("fetch user");
    let id = d.id().0;
    let (child_resolver, child) = Deferred::<u32>::new();
    let first = line!() + 1;
    let d = d.add_callback(|n| n + 1);
    let second = line!() + 1;
    let d = d.and_then(move |n| child.add_callback(move |c| n + c));
    let d = d.add_callback(|n| n * 2);
    let site = |line: u32| format!("{}:{line}", file!());

    // Not fired: three steps queued, stuck before the first.
    let (json, page) = detail(id);
    assert_eq!(
        steps(&json),
        [
            (0, "queued".into()),
            (1, "queued".into()),
            (2, "queued".into())
        ]
    );
    assert_eq!(json["steps"][0]["duration_us"], serde_json::Value::Null);
    assert_eq!(json["steps"][0]["site"], site(first));
    assert_eq!(json["waiting_at"], 0);
    let said = format!(
        r#"<p class="waiting-at" id="waiting-at">Not fired yet: waiting before step 1 of 3 (callback added at {})</p>"#,
        site(first)
    );
    assert!(page.contains(&said), "{page}");
    assert!(page.contains(r#"<tr data-idx="0" class="queued here" aria-current="step">"#));
    assert!(page.contains(r#"<tr data-idx="2" class="queued">"#));
    assert!(page.contains(r#"<span class="bar queued""#));
    assert!(page.contains(
        r#"<span class="pill queued">queued</span> <span class="pill warn">waiting here</span>"#
    ));

    // Fired: the first step ran, the second returned a child not fired yet; the chain
    // waits there and the third is still queued.
    resolver.callback(1);
    let (json, page) = detail(id);
    assert_eq!(
        steps(&json),
        [
            (0, "ok".into()),
            (1, "waiting".into()),
            (2, "queued".into())
        ]
    );
    assert_eq!(json["state"], "waiting");
    assert_eq!(json["waiting_at"], 1);
    let child_id = json["waiting_on"].as_i64().unwrap();
    let said = format!(
        "Waiting on Deferred {child_id} at step 2 of 3 (callback added at {})",
        site(second)
    );
    assert!(page.contains(&said), "{page}");
    assert!(page.contains(r#"<tr data-idx="1" class="here" aria-current="step">"#));
    assert!(page.contains(r#"<tr data-idx="2" class="queued">"#));
    assert!(
        !page.contains(r#"<tr data-idx="0" class"#),
        "a step that ran is plain"
    );

    child_resolver.callback(10);
    let mut d = d;
    assert_eq!(d.try_take().unwrap().unwrap(), 24);
}

#[tokio::test]
async fn a_chain_from_history_shows_the_steps_it_had_not_run() {
    let mut queued = step(5, 1, "queued", None);
    queued.duration_us = None;
    let (_dir, store) = store_with(vec![
        deferred(5, "paused").into(),
        step(5, 0, "ok", None).into(),
        queued.into(),
    ])
    .await;
    let app = router(state().with_store(store));
    let json = get(app.clone(), "/api/deferreds/5").await.json();
    assert_eq!(json["waiting_at"], 1);
    assert_eq!(json["steps"][1]["outcome"], "queued");
    let page = get(app.clone(), "/deferreds/5").await.body;
    assert!(
        page.contains("Paused before step 2 of 2 (callback added at src/proto.rs:51)"),
        "{page}"
    );
    assert!(page.contains(r#"<tr data-idx="1" class="queued here" aria-current="step">"#));

    // A chain that ended waits nowhere.
    let (_dir, store) = store_with(vec![
        deferred(6, "succeeded").into(),
        step(6, 0, "ok", None).into(),
    ])
    .await;
    let app = router(state().with_store(store));
    assert_eq!(
        get(app.clone(), "/api/deferreds/6").await.json()["waiting_at"],
        serde_json::Value::Null
    );
    assert!(!get(app, "/deferreds/6").await.body.contains("waiting-at"));
}
