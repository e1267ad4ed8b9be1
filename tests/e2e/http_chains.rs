//! A proxied request as the inspector explains it: the chain names the step it is at,
//! the upstream and the upstream connection it waits on, and a cancel from the dashboard
//! ends the exchange with a 503 and closes that connection.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::assert_eventually;
use crate::support::{App, Reply, free_port, http, spawn_app_with};

/// An upstream that accepts and never answers; counts the connections it saw closed.
struct Silent {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    /// What the gateway sent on each connection.
    received: Arc<Mutex<Vec<u8>>>,
}

impl Silent {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (a, c, r) = (accepted.clone(), closed.clone(), received.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                a.fetch_add(1, Ordering::SeqCst);
                let (c, r) = (c.clone(), r.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    // Read what comes and never answer, until the gateway closes.
                    while let Ok(n @ 1..) = stream.read(&mut buf) {
                        r.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    c.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            addr,
            accepted,
            closed,
            received,
        }
    }
}

fn json(app: &App, path: &str) -> Value {
    let body = app.curl(path).unwrap_or_else(|| panic!("{path} answers"));
    serde_json::from_str(&body).unwrap()
}

/// Asks the dashboard, as its own page would, to cancel Deferred `id`.
fn cancel(app: &App, id: impl std::fmt::Display) -> Reply {
    let host = app.dashboard.to_string();
    http(
        app.dashboard,
        &format!(
            "POST /api/deferreds/{id}/cancel HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n\
             Content-Type: application/json\r\n"
        ),
        "{}",
    )
}

/// The pending `http request` chain waiting at the named step `step`, if there is one.
fn request_at(app: &App, step: &str) -> Option<Value> {
    let list = json(app, "/api/deferreds?state=pending");
    let id = list["items"].as_array()?.iter().find_map(|d| {
        (d["label"] == "http request" && d["step_name"] == step).then(|| d["id"].as_i64())?
    })?;
    Some(json(app, &format!("/api/deferreds/{id}")))
}

#[test]
fn a_request_stuck_on_its_upstream_names_the_step_and_connection_and_is_cancelled_with_503() {
    let upstream = Silent::start();
    let web: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let app = spawn_app_with(|_| {
        format!(
            r#"
[[service]]
name = "web"
kind = "http"
listen = "tcp:{port}:interface=127.0.0.1"
limits = {{ upstream_timeout = "60s" }}
[[service.route]]
prefix = "/api/"
upstream = "http://{up}"

[inspect]
stall_after = "300ms"
"#,
            port = web.port(),
            up = upstream.addr,
        )
    });
    let client = std::thread::spawn(move || {
        http(web, "GET /api/never HTTP/1.1\r\nHost: web.example\r\n", "")
    });

    let seen = std::cell::RefCell::new(Value::Null);
    assert_eventually!(
        {
            *seen.borrow_mut() = request_at(&app, "response head").unwrap_or(Value::Null);
            seen.borrow()["stalled"] == true
        },
        "a stalled request waits for the response head: {}\n{}",
        seen.borrow(),
        app.log()
    );
    let chain = seen.into_inner();
    let id = chain["id"].as_i64().unwrap();
    let up = chain["waiting_on_connection"]
        .as_i64()
        .unwrap_or_else(|| panic!("the chain names the upstream connection: {chain}"));
    assert_eq!(
        chain["step_detail"],
        format!("http://{}", upstream.addr),
        "{chain}"
    );
    let named: Vec<&str> = chain["named_steps"]
        .as_array()
        .unwrap_or_else(|| panic!("the named steps are listed: {chain}"))
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        named,
        ["route", "connect upstream", "response head"],
        "{chain}"
    );
    assert_eq!(chain["named_steps"][0]["detail"], "/api/", "{chain}");
    assert!(
        String::from_utf8_lossy(&upstream.received.lock().unwrap()).starts_with("GET /api/never"),
        "the request reached the upstream"
    );
    let open = json(&app, "/api/connections?state=open&service=web");
    assert!(
        open["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"].as_i64() == Some(up)),
        "connection {up} is open: {open}"
    );
    // The other way: the upstream connection's API and page name the request waiting on
    // it, with its step.
    let upstream_conn = json(&app, &format!("/api/connections/{up}"));
    let waiting = upstream_conn["waited_on_by"]
        .as_array()
        .unwrap_or_else(|| panic!("{upstream_conn}"));
    assert!(
        waiting
            .iter()
            .any(|d| d["id"].as_i64() == Some(id) && d["step_name"] == "response head"),
        "{upstream_conn}"
    );
    let upstream_page = app.get(&format!("/connections/{up}"));
    assert!(
        upstream_page.body.contains("Waiting on this connection")
            && upstream_page
                .body
                .contains(&format!("<a href=\"/deferreds/{id}\">{id}</a>")),
        "the upstream connection's page links the request: {}",
        upstream_page.body
    );

    // The client connection's page lists what is pending on it now: the request's chain
    // and the connection's own async task, which history is not told of while pending.
    let client_conn = chain["connection_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("the chain names its connection: {chain}"));
    let pending = json(&app, "/api/deferreds?state=pending&limit=500");
    let task = pending["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["connection_id"].as_i64() == Some(client_conn) && d["kind"] == "task")
        .unwrap_or_else(|| panic!("the connection's task is pending: {pending}"))["id"]
        .clone();
    let listed = json(&app, &format!("/api/connections/{client_conn}"));
    let ids: Vec<&Value> = listed["deferreds"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"))
        .iter()
        .map(|d| &d["id"])
        .collect();
    assert!(ids.contains(&&task), "its task {task}: {listed}");

    let page = app.get(&format!("/deferreds/{id}"));
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(&format!("href=\"/connections/{up}\"")),
        "the page links the upstream connection: {}",
        page.body
    );
    assert!(page.body.contains("response head"), "{}", page.body);
    let list = app.get("/deferreds?state=pending");
    assert!(
        list.body.contains("<strong>response head</strong>"),
        "the list shows the step: {}",
        list.body
    );

    let cancel = cancel(&app, id);
    assert_eq!(cancel.status, 202, "{cancel:?}");
    let answer: Reply = client.join().unwrap();
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eventually!(
        upstream.closed.load(Ordering::SeqCst) == 1,
        "the upstream connection is closed, not kept"
    );
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 1);
    assert_eventually!(
        app.metric(r#"weft_http_requests_refused_total{reason="cancelled",service="web"}"#)
            == Some(1.0),
        "the cancelled request is counted\n{}",
        app.log()
    );
    let ended = assert_eventually!(
        Some(json(&app, &format!("/api/deferreds/{id}"))).filter(|d| d["state"] == "cancelled"),
        "the chain ends cancelled\n{}",
        app.log()
    );
    assert_cancelled_by_the_dashboard(&ended);
}

/// A chain cancelled from the dashboard says so, as Twisted's `CancelledError` would, and
/// where: the dashboard's cancel action.
pub(crate) fn assert_cancelled_by_the_dashboard(chain: &Value) {
    let failure = chain["failure"].as_str().unwrap_or_default();
    assert!(
        failure.starts_with("CancelledError: ") && failure.contains("actions.rs:"),
        "its failure names the cancel and its site: {chain}"
    );
}

#[test]
fn a_busy_service_keeps_at_most_its_sample_cap_of_successful_chains_a_second() {
    let web: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let app = spawn_app_with(|dir| {
        std::fs::create_dir(dir.join("www")).unwrap();
        std::fs::write(dir.join("www/a.txt"), "a").unwrap();
        format!(
            r#"
[[service]]
name = "web"
kind = "http"
listen = "tcp:{port}:interface=127.0.0.1"
root = "{root}"

[inspect]
sample = 1.0
sample_per_second = 5
"#,
            port = web.port(),
            root = dir.join("www").display(),
        )
    });
    // 300 requests on one kept-alive connection (curl's URL range), in well under the
    // few seconds it would take the cap to let them all through.
    let out = std::process::Command::new("curl")
        .args(["-sf", "-o", "/dev/null", "-w", "%{http_code}\n"])
        .arg(format!("http://{web}/a.txt?[1-300]"))
        .output()
        .unwrap();
    let codes = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        codes.lines().filter(|c| *c == "200").count(),
        300,
        "{codes}"
    );

    // Every one of them was picked (sample = 1.0); what the cap left out is counted.
    let skipped = || {
        app.metric("weft_deferred_samples_skipped_total")
            .unwrap_or(0.0)
    };
    assert_eventually!(skipped() >= 200.0, "skipped {}", skipped());
    let stored = || {
        crate::support::query(&app.db, async |c| {
            sqlx::query_as::<_, (i64,)>(
                "SELECT COUNT(*) FROM deferreds WHERE label = 'http request'",
            )
            .fetch_one(c)
            .await
            .unwrap()
            .0
        })
    };
    assert_eventually!(stored() + skipped() as i64 == 300, "stored {}", stored());
    assert!(
        stored() >= 5,
        "the cap's worth of chains is kept: {}",
        stored()
    );
}

#[test]
fn an_async_task_is_not_claimed_cancelled() {
    let app = crate::support::spawn_app();
    let mut task = None;
    assert_eventually!(
        {
            let list = json(&app, "/api/deferreds?state=pending&limit=10000");
            task = list["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["kind"] == "task")
                .and_then(|d| d["id"].as_i64());
            task.is_some()
        },
        "a live task is listed"
    );
    let cancel = cancel(&app, task.unwrap());
    assert_eq!(cancel.status, 409, "{cancel:?}");
    assert!(cancel.body.contains("cannot be cancelled"), "{cancel:?}");
}
