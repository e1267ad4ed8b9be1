//! Pages render from the same data as the API, and text others control stays text.

use super::*;

fn assert_inert(path: &str, page: &str) {
    assert!(
        !page.contains("<script>"),
        "{path}: raw markup in the page:\n{page}"
    );
    assert!(
        page.contains("&lt;script&gt;") || page.contains("&#60;script&#62;"),
        "{path}: the text should still be shown, escaped:\n{page}"
    );
}

#[tokio::test]
async fn every_page_renders() {
    let (_dir, store) = store_with(vec![
        closed_connection(1, "echo", "10.0.0.1:5000").into(),
        deferred(5, "pending").into(),
        step(5, 0, "ok", None).into(),
    ])
    .await;
    let app = router(state().with_store(store));
    for path in [
        "/",
        "/connections",
        "/connections?state=closed&service=echo&peer=10.0",
        "/connections/1",
        "/deferreds",
        "/deferreds?state=stalled",
        "/deferreds/5",
        "/services",
    ] {
        let a = get(app.clone(), path).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
        assert!(a.kind.starts_with("text/html"), "{path}");
        assert!(a.body.contains("/static/app.js"), "{path}");
    }
    let detail = get(app.clone(), "/deferreds/5").await.body;
    assert!(
        detail.contains(r#"id="creation-site">src/proto.rs:42<"#),
        "{detail}"
    );
    assert!(detail.contains(r#"href="/connections/7""#));
    let missing = get(app, "/deferreds/999").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.kind.starts_with("text/html"));
}

#[tokio::test]
async fn text_from_peers_and_programs_is_escaped_in_every_page() {
    let mut d = deferred(9, "failed");
    d.label = Some(EVIL.into());
    d.failure = Some(format!("Failure: bad request {EVIL}"));
    d.site = format!("src/{EVIL}.rs:1");
    d.connection_id = Some(3);
    let mut c = closed_connection(3, "echo", EVIL);
    c.close_reason = Some(EVIL.into());
    let (_dir, store) = store_with(vec![
        c.into(),
        d.into(),
        weft_store::ServiceRecord {
            name: "echo".into(),
            kind: "echo".into(),
            endpoints: vec![format!("tcp:8000:{EVIL}")],
            config_json: serde_json::json!({ "motd": EVIL }).to_string(),
        }
        .into(),
    ])
    .await;
    let app = router(state().with_store(store));
    for path in [
        "/connections",
        "/connections/3",
        "/deferreds?state=failed",
        "/deferreds/9",
        "/services",
    ] {
        let a = get(app.clone(), path).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert_inert(path, &a.body);
    }
    // The JSON API carries the text as data: a JSON string, never markup the page parses.
    let api = get(app, "/api/deferreds/9").await;
    assert_eq!(api.json()["label"], EVIL);
}

#[test]
fn the_waterfall_lays_steps_on_one_axis() {
    let bars =
        crate::pages::tests_waterfall(vec![step(1, 0, "ok", None), step(1, 1, "paused", Some(2))]);
    // 0..1.5ms and 2..3.5ms over 3.5ms.
    assert_eq!(
        bars,
        vec![
            ("0.00".into(), "42.86".into()),
            ("57.14".into(), "42.86".into())
        ]
    );
}
