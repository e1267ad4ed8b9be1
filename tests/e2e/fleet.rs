//! A fleet: two gateways keeping their history in one PostgreSQL (a throwaway cluster of
//! Debian's server, see `weft_test_support::postgres`), each dashboard listing both,
//! filtered by instance; and the server stopped mid-run, then back.

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use weft_test_support::postgres::Postgres;

use crate::assert_eventually;
use crate::support::{App, echo_once, spawn_app_on_postgres};

/// `(instance, id)` of the closed connections `app`'s dashboard lists at `query`.
fn closed(app: &App, query: &str) -> BTreeSet<(String, i64)> {
    let path = format!("/api/connections?state=closed&limit=1000{query}");
    let Some(body) = app.curl(&path) else {
        return BTreeSet::new();
    };
    let page: Value = serde_json::from_str(&body).unwrap();
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["instance"].as_str().unwrap().to_owned(),
                c["id"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn instances(rows: &BTreeSet<(String, i64)>) -> BTreeSet<&str> {
    rows.iter().map(|(i, _)| i.as_str()).collect()
}

#[test]
fn two_gateways_share_history_and_each_dashboard_filters_it_by_instance() {
    let pg = Postgres::start();
    let url = pg.create_database("fleet");
    let a = spawn_app_on_postgres(&url, "edge-a");
    let b = spawn_app_on_postgres(&url, "edge-b");
    echo_once(a.echo);
    echo_once(b.echo);

    assert_eventually!(
        instances(&closed(&a, "")) == BTreeSet::from(["edge-a", "edge-b"]),
        "edge-a's dashboard lists both gateways' connections: {:?}\n{}",
        closed(&a, ""),
        a.log()
    );
    let only_b = closed(&a, "&instance=edge-b");
    assert_eq!(instances(&only_b), BTreeSet::from(["edge-b"]), "{only_b:?}");
    let from_b = closed(&b, "&instance=edge-a");
    assert_eq!(instances(&from_b), BTreeSet::from(["edge-a"]), "{from_b:?}");
    // Both number their connections alike: the rows are told apart by instance alone.
    let ids = |rows: &BTreeSet<(String, i64)>| rows.iter().map(|r| r.1).collect::<BTreeSet<_>>();
    assert_eq!(ids(&only_b), ids(&from_b));

    // Live data stays per gateway: an open connection on edge-b is listed by edge-b, as
    // its own, and never by edge-a.
    let held = TcpStream::connect(b.echo).unwrap();
    let open = |app: &App, query: &str| -> Vec<String> {
        let body = app
            .curl(&format!("/api/connections?state=open{query}"))
            .unwrap_or_default();
        let page: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        page["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["instance"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eventually!(
        open(&b, "").contains(&"edge-b".to_owned()),
        "edge-b lists its open connection: {:?}",
        open(&b, "")
    );
    assert!(!open(&a, "").contains(&"edge-b".to_owned()));
    assert!(open(&a, "&instance=edge-b").is_empty());
    drop(held);
    pages_offer_the_instances_and_name_each_rows(&a, &only_b);
}

/// The list pages offer each instance as a filter; a row of another gateway links to its
/// page with its instance, and that page (and its JSON) names it.
fn pages_offer_the_instances_and_name_each_rows(a: &App, of_b: &BTreeSet<(String, i64)>) {
    let offered = |html: &str| {
        html.contains("<select name=\"instance\">")
            && html.contains("<option value=\"edge-a\" >edge-a</option>")
            && html.contains("<option value=\"edge-b\" >edge-b</option>")
    };
    for path in ["/connections?state=closed", "/deferreds?state=failed"] {
        let html = a.curl(path).unwrap();
        assert!(offered(&html), "{path}: {html}");
    }
    let html = a.curl("/connections?state=closed&instance=edge-b").unwrap();
    assert!(
        html.contains("<option value=\"edge-b\" selected>edge-b</option>"),
        "{html}"
    );
    let (_, id) = of_b.first().expect("a connection of edge-b");
    let link = format!("href=\"/connections/{id}?instance=edge-b\"");
    assert!(html.contains(&link), "{link} in {html}");
    let page = a
        .curl(&format!("/connections/{id}?instance=edge-b"))
        .unwrap();
    assert!(page.contains("<dd id=\"instance\">edge-b</dd>"), "{page}");
    let api = a
        .curl(&format!("/api/connections/{id}?instance=edge-b"))
        .unwrap();
    let detail: Value = serde_json::from_str(&api).unwrap();
    assert_eq!(detail["instance"], "edge-b", "{detail}");
    let own = a
        .curl(&format!("/api/connections/{id}"))
        .unwrap_or_default();
    assert!(
        !own.contains("\"edge-b\""),
        "without an instance, edge-a's own: {own}"
    );
}

#[test]
fn a_postgres_stopped_mid_run_drops_and_counts_then_history_resumes() {
    let pg = Postgres::start();
    let url = pg.create_database("faults");
    let app = spawn_app_on_postgres(&url, "edge-a");
    echo_once(app.echo);
    assert_eventually!(closed(&app, "").len() == 1, "{}", app.log());

    pg.stop();
    echo_once(app.echo);
    assert_eventually!(
        app.metric("weft_store_write_errors_total").unwrap_or(0.0) >= 1.0
            && app.metric("weft_store_events_dropped_total").unwrap_or(0.0) >= 1.0,
        "a failed write is counted, its records as dropped\n{}",
        app.log()
    );
    // History cannot be read either: the list says so and still answers.
    let body = app.curl("/api/connections?state=closed").unwrap();
    assert!(body.contains("history_error"), "{body}");
    assert!(!body.contains("locked"), "no file to lock: {body}");
    let written = app.metric("weft_store_records_written_total").unwrap();

    pg.start_again();
    echo_once(app.echo);
    // The connection closed while the server was down may be among the dropped records.
    assert_eventually!(
        closed(&app, "").len() >= 2,
        "writes resume once the server is back: {:?}\n{}",
        closed(&app, ""),
        app.log()
    );
    assert!(app.metric("weft_store_records_written_total").unwrap() > written);
    assert!(
        app.log().contains("history writes resumed"),
        "{}",
        app.log()
    );
}

/// A server out of reach when the gateway starts does not stop it: it serves, counts what
/// it cannot write, and writes history once the server answers, numbered above what an
/// earlier run wrote (which it could not read at start) and leaving those rows as they were.
#[test]
fn a_postgres_out_of_reach_at_start_is_served_without_history_until_it_answers() {
    let pg = Postgres::start();
    let url = pg.create_database("late");
    let first = spawn_app_on_postgres(&url, "edge-a");
    echo_once(first.echo);
    assert_eventually!(closed(&first, "").len() == 1, "{}", first.log());
    let before = closed(&first, "");
    drop(first);

    pg.stop();
    let app = spawn_app_on_postgres(&url, "edge-a");
    echo_once(app.echo);
    assert!(
        app.log()
            .contains("the history database cannot be reached; serving without writing history"),
        "{}",
        app.log()
    );
    assert_eventually!(
        app.metric("weft_store_write_errors_total").unwrap_or(0.0) >= 1.0,
        "what cannot be written is counted\n{}",
        app.log()
    );

    pg.start_again();
    echo_once(app.echo);
    let earlier_max = before.iter().map(|r| r.1).max().unwrap();
    assert_eventually!(
        {
            let rows = closed(&app, "");
            before.is_subset(&rows) && rows.iter().any(|r| r.1 > earlier_max)
        },
        "history resumes above the earlier run's rows, which are kept: {:?} after {before:?}\n{}",
        closed(&app, ""),
        app.log()
    );
    assert!(
        app.log()
            .contains("the history database answers; writing history"),
        "{}",
        app.log()
    );
}

/// A server that stops answering (frozen, as behind a network partition: no error, no
/// answer) does not hold the gateway's exit: SIGTERM stops it within its limits (the
/// drain's, then 10 s for history's last writes), saying what it could not write.
#[test]
fn a_postgres_that_stops_answering_does_not_hold_the_exit() {
    let pg = Postgres::start();
    let url = pg.create_database("paused");
    let mut app = spawn_app_on_postgres(&url, "edge-a");
    echo_once(app.echo);
    assert_eventually!(closed(&app, "").len() == 1, "{}", app.log());
    let paused = pg.pause();
    // Fifty connections opened and closed: a batch of their records goes out to the
    // frozen server and waits on it.
    for _ in 0..50 {
        drop(echo_once(app.echo));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let since = Instant::now();
    app.signal("TERM");
    let status = app.wait_exit();
    drop(paused);
    assert!(status.success(), "{status:?}\n{}", app.log());
    assert!(
        since.elapsed() < Duration::from_secs(19),
        "{:?}",
        since.elapsed()
    );
    let log = app.log();
    assert!(log.contains("history not fully flushed at exit"), "{log}");
    // What it says it could not write counts the batch the server holds, not only what
    // queued behind it (none here).
    let unwritten: u64 = log
        .split("unwritten=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {log}"));
    assert!(
        unwritten >= 50,
        "the connections' records: {unwritten}\n{log}"
    );
}

/// A fleet upgrades one gateway at a time: a gateway goes on, and starts again, beside a
/// database a later release migrated further (here, a migration it does not know recorded
/// as applied), writing as before.
#[test]
fn a_gateway_starts_on_a_database_a_later_release_migrated() {
    let pg = Postgres::start();
    let url = pg.create_database("later");
    let mut app = spawn_app_on_postgres(&url, "edge-a");
    echo_once(app.echo);
    assert_eventually!(closed(&app, "").len() == 1, "{}", app.log());
    pg.sql(
        "later",
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from a later release', true, '\\x00', 1)",
    );
    assert!(app.signal_and_wait("TERM").success(), "{}", app.log());
    app.restart();
    echo_once(app.echo);
    assert_eventually!(closed(&app, "").len() == 2, "{}", app.log());
}

/// A migration that has to wait for a table another session holds (a long search of an
/// earlier gateway's) does not hold the start, nor make that table's users queue behind
/// it: it gives up within seconds, the gateway serves, and it migrates with the first
/// batch that finds the table free.
#[test]
fn a_migration_kept_waiting_by_a_lock_does_not_hold_the_start() {
    let pg = Postgres::start();
    let url = pg.create_database("locked");
    let mut app = spawn_app_on_postgres(&url, "edge-a");
    assert!(app.signal_and_wait("TERM").success(), "{}", app.log());
    // The database as the release before left it: without the last migration.
    pg.sql(
        "locked",
        "DELETE FROM _sqlx_migrations WHERE version = 3; \
         ALTER TABLE deferreds DROP COLUMN ended_at_ms",
    );
    let mut holder = pg.sql_in_background(
        "locked",
        "BEGIN; LOCK TABLE deferreds IN ACCESS SHARE MODE; SELECT pg_sleep(12); COMMIT;",
    );
    pg.wait_for_lock("locked", "deferreds");
    let since = Instant::now();
    app.restart();
    assert!(
        since.elapsed() < Duration::from_secs(10),
        "served in {:?}\n{}",
        since.elapsed(),
        app.log()
    );
    holder.wait().unwrap();
    echo_once(app.echo);
    assert_eventually!(
        app.log()
            .contains("the history database answers; writing history"),
        "migrated once the lock went\n{}",
        app.log()
    );
}

/// A database recreated empty under a running gateway (restored, failed over to a fresh
/// server) gets its schema back with the next batch, and history goes on in it.
#[test]
fn a_database_recreated_empty_gets_its_schema_back() {
    let pg = Postgres::start();
    let url = pg.create_database("again");
    let app = spawn_app_on_postgres(&url, "edge-a");
    echo_once(app.echo);
    assert_eventually!(closed(&app, "").len() == 1, "{}", app.log());
    pg.sql("postgres", "DROP DATABASE again WITH (FORCE)");
    pg.sql("postgres", "CREATE DATABASE again OWNER weft");
    assert_eventually!(
        {
            echo_once(app.echo);
            !closed(&app, "").is_empty()
        },
        "history written into the new database\n{}",
        app.log()
    );
}

/// `weft check` refuses what `weft run` would refuse at start on a PostgreSQL history: a
/// database that does not exist, a role that may not create the history's tables; and,
/// like `run`, passes a server out of reach (the gateway would serve, and write once it
/// answers).
#[test]
fn check_refuses_a_database_run_would_refuse_and_passes_one_out_of_reach() {
    let pg = Postgres::start();
    let url = pg.create_database("checked");
    pg.sql("checked", "CREATE ROLE reader LOGIN");
    let dir = tempfile::tempdir().unwrap();
    let check = |url: &str| {
        let path = dir.path().join("weft.toml");
        std::fs::write(
            &path,
            format!(
                "[dashboard]\nlisten = \"tcp:{}:interface=127.0.0.1\"\n\n[store]\nurl = \"{url}\"\n\n\
                 [[service]]\nname = \"e\"\nkind = \"echo\"\nlisten = \"tcp:{}:interface=127.0.0.1\"\n",
                crate::support::free_port(),
                crate::support::free_port()
            ),
        )
        .unwrap();
        let out = std::process::Command::new(crate::support::weft_bin())
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, said) = check(&url);
    assert_eq!(code, Some(0), "{said}");
    let (code, said) = check(&url.replace("/checked", "/nope"));
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("store.url") && said.contains("nope"),
        "{said}"
    );
    let (code, said) = check(&url.replace("weft@", "reader@"));
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("may not create tables"), "{said}");
    let away = format!(
        "postgres://weft@127.0.0.1:{}/checked",
        crate::support::free_port()
    );
    let (code, said) = check(&away);
    assert_eq!(code, Some(0), "out of reach is no refusal: {said}");
}

/// The time `curl` takes to get any answer from `path` on `app`'s dashboard.
fn answer_time(app: &App, path: &str) -> Duration {
    let since = Instant::now();
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--max-time", "20"])
        .arg(format!("http://{}{path}", app.dashboard))
        .output()
        .unwrap();
    assert!(out.status.success(), "{path}: {out:?}");
    since.elapsed()
}

/// A page that reads history more than once (its rows and its filters' choices) reads
/// them together: with the server frozen, it answers after one read's timeout (2 s), not
/// after one for each read.
#[test]
fn a_page_over_a_frozen_postgres_waits_for_one_timeout_not_one_per_read() {
    let pg = Postgres::start();
    let url = pg.create_database("frozen_pages");
    let app = spawn_app_on_postgres(&url, "edge-a");
    echo_once(app.echo);
    assert_eventually!(closed(&app, "").len() == 1, "{}", app.log());
    let _paused = pg.pause();
    for path in [
        "/connections?state=closed",
        "/deferreds?state=failed",
        "/connections/1",
    ] {
        let took = answer_time(&app, path);
        // Two reads' timeouts would be 4 s.
        assert!(took < Duration::from_millis(3900), "{path}: {took:?}");
    }
}

/// A session holding a table of history locked (an operator's `LOCK TABLE`, a long
/// maintenance) does not hold the dashboard's reads of it: each waits at most the busy
/// timeout for the lock, then is answered without its history, counted `busy`, as with
/// SQLite, and the read pool's connections go back to it. Waiting, six reads held every
/// connection of the pool for as long as the lock was held.
#[test]
fn a_table_locked_in_postgres_makes_the_dashboard_s_reads_busy_not_stuck() {
    let pg = Postgres::start();
    let url = pg.create_database("held");
    let app = spawn_app_on_postgres(&url, "edge-a");
    echo_once(app.echo);
    assert_eventually!(closed(&app, "").len() == 1, "{}", app.log());
    let busy = r#"weft_dashboard_history_errors_total{reason="busy"}"#;
    let busy_before = app.metric(busy).unwrap_or(0.0);
    let mut holder = pg.sql_in_background(
        "held",
        "BEGIN; LOCK TABLE connections IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(12); COMMIT;",
    );
    pg.wait_for_lock("held", "connections");
    let since = Instant::now();
    let reads: Vec<_> = (0..6)
        .map(|_| {
            let url = format!("http://{}/api/connections", app.dashboard);
            std::thread::spawn(move || {
                let out = std::process::Command::new("curl")
                    .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
                    .args(["--max-time", "20"])
                    .arg(url)
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).into_owned()
            })
        })
        .collect();
    let codes: Vec<String> = reads.into_iter().map(|r| r.join().unwrap()).collect();
    let took = since.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "answered in {took:?}: {codes:?}\n{}",
        app.log()
    );
    assert!(codes.iter().all(|c| c == "200"), "{codes:?}");
    // The note says what holds history, not that the server is down.
    let listed = app.curl("/api/connections").unwrap_or_default();
    assert!(
        listed.contains("another session of the history database holds a table locked"),
        "{listed}"
    );
    let busy_after = app.metric(busy).unwrap_or(0.0);
    assert!(
        busy_after - busy_before >= 6.0,
        "{busy_before} -> {busy_after}"
    );
    // Once the lock goes, history reads as before.
    holder.wait().unwrap();
    assert_eventually!(closed(&app, "").len() == 1, "{}", app.log());
}
