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
    let missing = get(app.clone(), "/deferreds/999").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.kind.starts_with("text/html"));
    // A page's bad parameter gets a page naming it, as the API's gets JSON.
    for path in [
        "/connections?limit=abc",
        "/deferreds?limit=-1",
        "/profile?limit=x",
    ] {
        let bad = get(app.clone(), path).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(bad.kind.starts_with("text/html"), "{path}: {}", bad.kind);
        assert!(bad.body.contains("limit"), "{path}: {}", bad.body);
    }
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

/// Where `needle` first appears in `page`.
fn at(page: &str, needle: &str) -> usize {
    page.find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the page:\n{page}"))
}

#[tokio::test]
async fn the_connections_page_is_sorted_on_the_server_with_header_links() {
    let conn = |id, bytes_in| {
        let mut c = closed_connection(id, "echo", &format!("10.0.0.{id}:5000"));
        c.bytes_in = bytes_in;
        c.into()
    };
    let (_dir, store) = store_with(vec![conn(1, 300), conn(2, 20), conn(3, 1_000)]).await;
    let app = router(state().with_store(store));

    let page = get(app.clone(), "/connections?sort=bytes_in&dir=asc")
        .await
        .body;
    let rows: Vec<usize> = [2, 1, 3]
        .iter()
        .map(|id| at(&page, &format!(r#"<tr data-id="{id}""#)))
        .collect();
    assert!(rows.is_sorted(), "rows 2, 1, 3 in that order:\n{page}");
    // The sorted column says so and links to the other direction; the others start from
    // the top; each link is a plain URL that works without the script.
    assert!(
        page.contains(
            r#"<th data-sort="bytes_in" data-type="num" class="num" data-dir="asc" aria-sort="ascending"><a href="/connections?sort=bytes_in">in</a></th>"#
        ),
        "{page}"
    );
    assert!(
        page.contains(r#"<th data-sort="peer"><a href="/connections?sort=peer">peer</a></th>"#),
        "{page}"
    );
    // Filtering keeps the order.
    assert!(page.contains(r#"<input type="hidden" name="sort" value="bytes_in">"#));
    assert!(page.contains(r#"<input type="hidden" name="dir" value="asc">"#));

    // The default: newest first, the id header marked, links keeping the filters.
    let page = get(app.clone(), "/connections?service=echo&peer=10.0.0")
        .await
        .body;
    assert!(at(&page, r#"<tr data-id="3""#) < at(&page, r#"<tr data-id="1""#));
    assert!(
        page.contains(
            r#"data-dir="desc" aria-sort="descending"><a href="/connections?service=echo&#38;peer=10.0.0&#38;dir=asc">id</a>"#
        ),
        "{page}"
    );
    assert!(
        !page.contains(r#"name="sort""#),
        "no hidden field for the default"
    );

    // A key the page does not know: a 400 page naming the ones it does, escaped.
    let bad = get(
        app.clone(),
        &format!("/connections?sort={}", crate::fmt::url(EVIL)),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.kind.starts_with("text/html"));
    assert!(
        bad.body.contains("age_ms, bytes_in, bytes_out"),
        "{}",
        bad.body
    );
    assert_inert("/connections?sort=EVIL", &bad.body);

    // Text from the query string in the header links is encoded, not markup.
    let page = get(app, &format!("/connections?peer={}", crate::fmt::url(EVIL)))
        .await
        .body;
    assert!(page.contains("peer=%3Cscript%3Ealert%28%27pwned%27%29%3C%2Fscript%3E"));
    assert!(!page.contains("<script>alert"), "{page}");
}

#[tokio::test]
async fn overview_sparklines_are_drawn_on_the_server_and_read_out_their_figures() {
    let state = state();
    // Three samples a second apart: 2 then 5 connections a second, 1 KiB/s in, one
    // Deferred pending throughout, one stalled at the end; the service name is markup.
    for (i, (opened, bytes_in, stalled)) in [(0, 0, 0), (2, 1024, 0), (7, 2048, 1)]
        .into_iter()
        .enumerate()
    {
        state.series.record(
            EVIL,
            crate::series::Point {
                at_ms: 10_000 + 1_000 * i as i64,
                opened,
                active: 3,
                bytes_in,
                pending: 1,
                stalled,
                ..Default::default()
            },
        );
    }
    let page = get(router(state), "/").await;
    assert_eq!(page.status, StatusCode::OK);
    let page = page.body;
    assert_inert("/", &page);
    for title in [
        "<title>conn/s: latest 5.0, min 2.0, max 5.0 over the last 2.0s</title>",
        "<title>in/s: latest 1.0 KiB/s, min 1.0 KiB/s, max 1.0 KiB/s over the last 2.0s</title>",
        "<title>out/s: latest 0 B/s, min 0 B/s, max 0 B/s over the last 2.0s</title>",
        "<title>pending: latest 1, min 1, max 1 over the last 2.0s</title>",
        "<title>stalled: latest 1, min 0, max 1 over the last 2.0s</title>",
    ] {
        assert!(page.contains(title), "{title} in\n{page}");
    }
    // The lines are drawn without the script: conn/s from 2 up to 5 across the box.
    assert!(
        page.contains(r#"<polyline fill="none" points="0.0,16.4 120.0,2.0"></polyline>"#),
        "{page}"
    );
    assert!(page.contains(r#"aria-label="stalled: latest 1, min 0, max 1"#));
    assert!(page.contains(r#"<svg class="spark warn" data-k="stalled""#));
    assert!(
        page.contains(r#"<article class="card alert""#),
        "a stall outlines the card"
    );
    assert!(page.contains(r#"<dd data-k="conn_rate">5.0</dd>"#));
    assert!(page.contains(r#"<dd data-k="in_rate">1.0 KiB/s</dd>"#));
}

#[tokio::test]
async fn the_overview_shows_the_process_with_its_limits_from_a_sample() {
    let state = state();
    let page = get(router(state.clone()), "/").await.body;
    assert!(!page.contains("This process"), "no sample yet, no card");
    state.series.sample(&state.hub, crate::data::now_ms());
    let page = get(router(state), "/").await.body;
    assert!(page.contains("<h2>This process</h2>"), "{page}");
    // This test process has read `/proc`: its memory, files and connections are figures.
    for key in ["cpu", "memory", "files", "connections", "up"] {
        assert!(
            page.contains(&format!(r#"<dd data-k="{key}">"#)),
            "{key} in\n{page}"
        );
    }
    assert!(
        page.contains(r#"<svg class="spark" data-k="memory""#),
        "{page}"
    );
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

#[tokio::test]
async fn named_steps_show_where_a_chain_waits_with_a_link_to_its_connection() {
    let mut d = deferred(11, "pending");
    d.label = Some("http request".into());
    d.step_name = Some("response head".into());
    d.step_detail = Some(EVIL.into());
    d.waiting_on_connection = Some(12);
    d.named_steps_json = Some(
        serde_json::json!([
            { "index": 0, "name": "route", "detail": "/api/", "waiting_on_connection": null,
              "waiting_on_deferred": null, "started_at_ms": 1_000, "duration_ms": 0 },
            { "index": 1, "name": "response head", "detail": EVIL, "waiting_on_connection": 12,
              "waiting_on_deferred": null, "started_at_ms": 1_000, "duration_ms": null },
        ])
        .to_string(),
    );
    let (_dir, store) = store_with(vec![d.into()]).await;
    let app = router(state().with_store(store));
    let page = get(app.clone(), "/deferreds/11").await.body;
    assert_inert("/deferreds/11", &page);
    assert!(page.contains(r#"href="/connections/12""#), "{page}");
    let here = at(&page, r#"aria-current="step""#);
    assert!(
        here > at(&page, "<td>route</td>") && page[here..].contains("<td>response head</td>"),
        "the current named step is marked:\n{page}"
    );
    let api = get(app, "/api/deferreds/11").await.json();
    assert_eq!(api["step_name"], "response head");
    assert_eq!(api["step_detail"], EVIL, "data, not markup");
    assert_eq!(api["waiting_on_connection"], 12);
    assert_eq!(api["named_steps"][1]["waiting_on_connection"], 12);
    assert_eq!(api["named_steps"][0]["name"], "route");
    assert!(api.get("named_steps_json").is_none());
}

/// The table row of `id` in a list page.
fn row_of(page: &str, id: i64) -> &str {
    let start = at(page, &format!(r#"<tr data-id="{id}""#));
    let len = page[start..].find("</tr>").expect("the row ends");
    &page[start..start + len]
}

#[tokio::test]
async fn the_lists_show_and_filter_by_reactor_once_there_is_more_than_one() {
    let on = |id, reactor| {
        let mut c = closed_connection(id, "echo", &format!("10.0.0.{id}:5000"));
        c.reactor = reactor;
        c.into()
    };
    let chain = |id, reactor| {
        let mut d = deferred(id, "failed");
        d.reactor = reactor;
        d.into()
    };
    // One reactor: the lists look as they always did.
    let (_one, store) = store_with(vec![on(1, Some(0)), on(2, None), chain(8, Some(0))]).await;
    let app = router(state().with_store(store));
    for path in ["/connections", "/deferreds?state=failed"] {
        let page = get(app.clone(), path).await.body;
        assert!(!page.contains("<th>reactor</th>"), "{path}: {page}");
        assert!(!page.contains(r#"name="reactor""#), "{path}: {page}");
    }

    // History of a run with two reactors, and a row from before history kept them.
    let (_two, store) = store_with(vec![
        on(1, Some(0)),
        on(2, Some(1)),
        on(3, None),
        chain(8, Some(0)),
        chain(9, Some(1)),
    ])
    .await;
    let app = router(state().with_store(store));
    let page = get(app.clone(), "/connections").await.body;
    assert!(page.contains("<th>reactor</th>"), "{page}");
    assert!(row_of(&page, 2).contains(r#"<td class="reactor">1</td>"#));
    assert!(row_of(&page, 3).contains(r#"<td class="reactor"></td>"#));
    let page = get(app.clone(), "/connections?reactor=1").await.body;
    assert!(page.contains(r#"<tr data-id="2""#) && !page.contains(r#"<tr data-id="1""#));
    assert!(
        !page.contains(r#"<tr data-id="3""#),
        "an unknown reactor is none of them"
    );
    assert!(
        page.contains(r#"<option value="1" selected>1</option>"#),
        "{page}"
    );
    assert!(
        page.contains(r#"<a href="/connections?reactor=1&#38;dir=asc">id</a>"#),
        "sorting keeps the filter: {page}"
    );
    // The form's "all" sends an empty value: no filter.
    let page = get(app.clone(), "/connections?reactor=").await.body;
    for id in [1, 2, 3] {
        row_of(&page, id);
    }

    let page = get(app.clone(), "/deferreds?state=failed&reactor=1")
        .await
        .body;
    assert!(row_of(&page, 9).contains(r#"<td class="reactor">1</td>"#));
    assert!(!page.contains(r#"<tr data-id="8""#), "{page}");
    assert!(
        page.contains(r#"href="/deferreds?state=pending&amp;reactor=1""#),
        "the tabs keep the filter: {page}"
    );
    let detail = get(app.clone(), "/deferreds/9").await.body;
    assert!(
        detail.contains(
            r#"<dd id="reactor"><a href="/deferreds?state=pending&amp;reactor=1">1</a></dd>"#
        ),
        "the chain's page names its reactor: {detail}"
    );
    let api = get(app.clone(), "/api/deferreds?state=failed&reactor=0").await;
    let items = api.json()["items"].clone();
    assert_eq!(items.as_array().map(Vec::len), Some(1), "{items}");
    assert_eq!(
        (items[0]["id"].clone(), items[0]["reactor"].clone()),
        (8.into(), 0.into())
    );

    let bad = get(app, "/api/connections?reactor=first").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("reactor"), "{}", bad.body);
}
