//! Reloading the configuration against the real binary, by SIGHUP and by
//! `POST /api/reload`: services added, removed, changed and moved while an echo connection
//! opened before the first reload keeps echoing; zones and routes reloaded; broken files
//! (bad TOML, a bad key, a port in use, a file that cannot be read) change nothing and are
//! counted; a history file locked by another process does not hold a reload up.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::assert_eventually;
use crate::dns::dig;
use crate::http::curl;
use crate::http_peers::Upstream;
use crate::support::{App, Locked, Reply, free_port, http, query, spawn_app_args, spawn_app_with};

/// An echo connection that has echoed once.
pub(crate) fn open_echo(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(echoes(&mut s), "{addr} echoes");
    s
}

/// Whether `s` sends back what it is sent.
pub(crate) fn echoes(s: &mut TcpStream) -> bool {
    let mut buf = [0; 5];
    s.write_all(b"again").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"again"
}

/// Whether something accepts connections on `addr`.
pub(crate) fn listens(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

fn loopback(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

impl App {
    /// The configuration file the process was started with.
    pub(crate) fn config_path(&self) -> std::path::PathBuf {
        self.dir.path().join("weft.toml")
    }

    /// Rewrites the configuration file through `edit`.
    pub(crate) fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let path = self.config_path();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, edit(text)).unwrap();
    }

    /// Sends SIGHUP.
    pub(crate) fn hangup(&self) {
        let ok = Command::new("kill")
            .arg("-HUP")
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -HUP failed");
    }

    /// `weft_config_reloads_total{result}` now (`None` before the process reports it).
    pub(crate) fn reloads(&self, result: &str) -> Option<f64> {
        self.metric(&format!("weft_config_reloads_total{{result=\"{result}\"}}"))
    }

    /// Sends SIGHUP and waits until the reload is counted under `result`.
    pub(crate) fn reload_by_signal(&self, result: &str) {
        let before = self.reloads(result).unwrap_or(0.0);
        self.hangup();
        assert_eventually!(
            self.reloads(result) == Some(before + 1.0),
            "a reload counted as {result}\n{}",
            self.log()
        );
    }

    /// `POST /api/reload` from the dashboard's own pages.
    pub(crate) fn reload_by_post(&self) -> Reply {
        let host = self.dashboard.to_string();
        http(
            self.dashboard,
            &format!("POST /api/reload HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n"),
            "",
        )
    }

    /// `/api/services`, by name.
    pub(crate) fn services(&self) -> Vec<Value> {
        let reply = self.get("/api/services");
        assert_eq!(reply.status, 200, "{reply:?}");
        let list: Value = serde_json::from_str(&reply.body).unwrap();
        list.as_array().unwrap().clone()
    }

    pub(crate) fn service(&self, name: &str) -> Option<Value> {
        self.services().into_iter().find(|s| s["name"] == name)
    }
}

fn body(r: &Reply) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {r:?}"))
}

const ZONE: &str = "$ORIGIN example.test.
$TTL 60
@       IN SOA ns1 hostmaster ( 1 2h 15m 2w 5m )
        IN NS  ns1
ns1     IN A   192.0.2.53
www     IN A   192.0.2.10
";

#[test]
fn sighup_adds_removes_changes_and_moves_services_while_an_echo_connection_keeps_echoing() {
    let (a, b) = (Upstream::start(), Upstream::start());
    let (gone, dns, web, first, second, late) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let app = spawn_app_with(|dir| {
        let zone = dir.join("example.test.zone");
        std::fs::write(&zone, ZONE).unwrap();
        format!(
            r#"
[[service]]
name = "gone"
kind = "discard"
listen = "tcp:{gone}:interface=127.0.0.1"

[[service]]
name = "dns"
kind = "dns"
listen = ["udp:{dns}:interface=127.0.0.1", "tcp:{dns}:interface=127.0.0.1"]
zones = ["{zone}"]

[[service]]
name = "web"
kind = "http"
listen = "tcp:{web}:interface=127.0.0.1"
[[service.route]]
prefix = "/api/"
upstream = "http://{a}"

[[service]]
name = "moving"
kind = "echo"
listen = "tcp:{first}:interface=127.0.0.1"
"#,
            a = a.addr,
            zone = zone.display()
        )
    });
    assert_eventually!(
        app.get("/readyz").status == 200,
        "every service listens\n{}",
        app.log()
    );
    assert_eq!(app.reloads("ok"), Some(0.0), "counted from zero");
    let mut held = open_echo(app.echo);

    // A service added.
    app.edit_config(|text| {
        text + &format!(
            "\n[[service]]\nname = \"late\"\nkind = \"echo\"\nlisten = \"tcp:{late}:interface=127.0.0.1\"\n"
        )
    });
    app.reload_by_signal("ok");
    let mut fresh = open_echo(loopback(late));
    let listed = app.service("late").expect("the new service is listed");
    assert_eq!(listed["kind"], "echo");
    assert_eq!(
        listed["endpoints"][0],
        format!("tcp:{late}:interface=127.0.0.1")
    );
    assert!(echoes(&mut held));

    // A service removed: it stops accepting, and its connections are closed.
    let mut draining = TcpStream::connect(loopback(gone)).unwrap();
    draining
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    draining.write_all(b"into the void").unwrap();
    app.edit_config(|text| {
        let start = text.find("[[service]]\nname = \"gone\"").unwrap();
        let end = start + text[start..].find("\n\n").unwrap() + 2;
        format!("{}{}", &text[..start], &text[end..])
    });
    app.reload_by_signal("ok");
    assert_eq!(draining.read(&mut [0; 16]).unwrap(), 0, "drained, cleanly");
    assert_eventually!(!listens(loopback(gone)), "the removed service stops");
    assert!(app.service("gone").is_none(), "{:?}", app.services());
    assert!(echoes(&mut held) && echoes(&mut fresh));

    // A zone and a route changed.
    assert_eq!(
        dig(dns, &["www.example.test", "A", "+short"]).trim(),
        "192.0.2.10"
    );
    std::fs::write(
        app.dir.path().join("example.test.zone"),
        ZONE.replace("192.0.2.10", "192.0.2.99"),
    )
    .unwrap();
    app.edit_config(|text| text.replace(&a.addr.to_string(), &b.addr.to_string()));
    app.reload_by_signal("ok");
    assert_eq!(
        dig(dns, &["www.example.test", "A", "+short"]).trim(),
        "192.0.2.99"
    );
    assert_eq!(
        dig(dns, &["www.example.test", "A", "+short", "+tcp"]).trim(),
        "192.0.2.99"
    );
    let (to_a, to_b) = (a.received(), b.received());
    let (status, _) = curl(loopback(web), &[], "/api/x");
    assert_eq!(status, 200);
    assert_eq!(
        (a.received(), b.received()),
        (to_a, to_b + 1),
        "the new upstream"
    );
    let routes = &app.service("web").unwrap()["config"]["routes"];
    assert_eq!(
        routes[0]["upstream"],
        format!("http://{}", b.addr),
        "{routes}"
    );
    assert!(echoes(&mut held));

    // A service moved: the new endpoint serves, the old one stops accepting, and the
    // connection it had goes on.
    let mut before_move = open_echo(loopback(first));
    app.edit_config(|text| {
        text.replace(
            &format!("tcp:{first}:interface"),
            &format!("tcp:{second}:interface"),
        )
    });
    app.reload_by_signal("ok");
    open_echo(loopback(second));
    assert_eventually!(!listens(loopback(first)), "the old endpoint stops");
    assert!(echoes(&mut before_move), "established on the old endpoint");
    assert_eq!(
        app.service("moving").unwrap()["endpoints"][0],
        format!("tcp:{second}:interface=127.0.0.1")
    );
    assert_eq!(app.reloads("ok"), Some(4.0));
    assert!(echoes(&mut held));

    // The unchanged echo service was never touched: its two listeners started once.
    assert_eventually!(
        started_listeners(&app, "moving") == 2,
        "the history has the moved listener"
    );
    assert_eq!(started_listeners(&app, "echo"), 2);
    assert!(
        app.log().contains("configuration reloaded"),
        "{}",
        app.log()
    );
}

/// How many `listener_started` events the history has for `service`.
fn started_listeners(app: &App, service: &str) -> usize {
    let events: Value = serde_json::from_str(&app.get("/api/events?limit=1000").body).unwrap();
    events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "listener_started" && e["data"]["service"] == service)
        .count()
}

#[test]
fn a_broken_config_changes_nothing_and_is_reported_to_the_post_the_metrics_and_the_banner() {
    let app = spawn_app_with(|_| String::new());
    assert_eventually!(app.get("/readyz").status == 200, "ready\n{}", app.log());
    let mut held = open_echo(app.echo);
    let good = std::fs::read_to_string(app.config_path()).unwrap();

    // Like every action, a reload needs the token or a request from the dashboard itself.
    let host = app.dashboard.to_string();
    let forged = http(
        app.dashboard,
        &format!("POST /api/reload HTTP/1.1\r\nHost: {host}\r\nOrigin: http://evil.example\r\n"),
        "",
    );
    assert_eq!(forged.status, 403, "{forged:?}");

    // TOML that does not parse.
    std::fs::write(
        app.config_path(),
        good.clone() + "\n[[service]\nname = \"x\"\n",
    )
    .unwrap();
    let reply = app.reload_by_post();
    assert_eq!(reply.status, 422, "{reply:?}");
    let answer = body(&reply);
    assert_eq!(answer["result"], "invalid");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("weft.toml:"),
        "names the file and line: {error}"
    );
    assert!(
        error.ends_with("; nothing changed"),
        "says the running configuration is untouched: {error}"
    );
    assert_eq!(app.reloads("invalid"), Some(1.0));
    assert!(
        app.log().contains(error),
        "the log names the reason\n{}",
        app.log()
    );

    // A key that does not exist.
    let late = free_port();
    std::fs::write(
        app.config_path(),
        good.clone()
            + &format!("\n[[service]]\nname = \"late\"\nkind = \"echo\"\nlisen = \"tcp:{late}\"\n"),
    )
    .unwrap();
    refused_as_invalid(&app, "service[1].lisen");
    assert_eq!(app.reloads("invalid"), Some(2.0));

    // An empty file (one being written, say) would stop every service: refused.
    std::fs::write(app.config_path(), "").unwrap();
    refused_as_invalid(&app, "declares no service");
    assert_eq!(app.reloads("invalid"), Some(3.0));
    assert!(echoes(&mut held));

    // A port in use: the service that could bind is rolled back with it.
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let free = free_port();
    std::fs::write(
        app.config_path(),
        good.clone()
            + &format!(
                "\n[[service]]\nname = \"fits\"\nkind = \"echo\"\nlisten = \"tcp:{free}:interface=127.0.0.1\"\n\
                 \n[[service]]\nname = \"clash\"\nkind = \"echo\"\nlisten = \"tcp:{busy_port}:interface=127.0.0.1\"\n"
            ),
    )
    .unwrap();
    let reply = app.reload_by_post();
    assert_eq!(reply.status, 409, "{reply:?}");
    let answer = body(&reply);
    assert_eq!(answer["result"], "failed");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("clash") && error.contains(&format!("tcp:{busy_port}")),
        "names the service and the endpoint: {error}"
    );
    // And the file, and who holds the port, as `weft check` would.
    let holder = format!(
        "TCP port {busy_port} on 127.0.0.1 is in use by process {} (",
        std::process::id()
    );
    assert!(error.contains(&holder), "{error}");
    let file = app.config_path().display().to_string();
    assert!(error.starts_with(&format!("{file}: ")), "{error}");
    assert_eq!(app.reloads("failed"), Some(1.0));
    assert!(!listens(loopback(free)), "rolled back");
    let names: Vec<Value> = app.services().iter().map(|s| s["name"].clone()).collect();
    assert_eq!(names, ["echo"], "nothing changed");
    let log = app.log();
    assert!(
        !log.contains("service=fits"),
        "the rolled-back service was never said to serve:\n{log}"
    );
    assert_eq!(
        log.lines()
            .find(|l| l.contains("configuration reload failed"))
            .map(|l| l.matches("nothing changed").count()),
        Some(1),
        "{log}"
    );
    assert_eq!(app.reloads("ok"), Some(0.0));
    let alert = last_reload_alert(&app);
    assert_eq!(alert["result"], "failed", "{alert}");
    assert!(
        alert["message"].as_str().unwrap().contains("clash"),
        "{alert}"
    );
    assert!(echoes(&mut held));

    // Fixed: it applies, and the banner's alert clears.
    drop(busy);
    let reply = app.reload_by_post();
    assert_eq!(reply.status, 200, "{reply:?}");
    let answer = body(&reply);
    assert_eq!(answer["result"], "ok");
    assert_eq!(answer["added"], serde_json::json!(["fits", "clash"]));
    open_echo(loopback(free));
    open_echo(loopback(busy_port));
    assert_eq!(last_reload_alert(&app)["result"], "ok");
    assert!(echoes(&mut held));
}

/// A reload asked by POST is refused as invalid (422), its error saying `says`.
fn refused_as_invalid(app: &App, says: &str) {
    let reply = app.reload_by_post();
    assert_eq!(reply.status, 422, "{reply:?}");
    assert!(
        body(&reply)["error"].as_str().unwrap().contains(says),
        "{reply:?}"
    );
}

/// The last reload the banner shows, as a page sees it: the snapshot's alert, updated by
/// the `config_reloaded` events that follow it.
fn last_reload_alert(app: &App) -> Value {
    use futures_util::StreamExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", app.dashboard))
            .await
            .expect("the feed accepts");
        let mut alert = Value::Null;
        // Events after the snapshot come within the feed's batching interval.
        let until = tokio::time::Instant::now() + Duration::from_millis(1500);
        while let Ok(Some(Ok(message))) = tokio::time::timeout_at(until, ws.next()).await {
            let Ok(text) = message.to_text() else {
                continue;
            };
            let message: Value = serde_json::from_str(text).unwrap();
            match message["type"].as_str() {
                Some("snapshot") => alert = message["alerts"]["last_reload"].clone(),
                Some("events") => {
                    for e in message["events"].as_array().unwrap() {
                        if e["type"] == "config_reloaded" {
                            alert = e.clone();
                        }
                    }
                }
                _ => {}
            }
        }
        alert
    })
}

#[test]
fn a_reload_while_another_process_holds_the_history_file_locked_still_applies() {
    let keep = free_port();
    let app = spawn_app_with(|_| {
        format!(
            "\n[[service]]\nname = \"kept\"\nkind = \"discard\"\nlisten = \"tcp:{keep}:interface=127.0.0.1\"\n"
        )
    });
    assert_eventually!(app.get("/readyz").status == 200, "ready\n{}", app.log());
    let stored = |app: &App| -> Vec<String> {
        query(&app.db, async |c| {
            sqlx::query_as::<_, (String,)>("SELECT name FROM services ORDER BY name")
                .fetch_all(c)
                .await
                .unwrap()
                .into_iter()
                .map(|(n,)| n)
                .collect()
        })
    };
    assert_eventually!(
        stored(&app) == ["echo", "kept"],
        "the services reach the file"
    );
    let mut held = open_echo(app.echo);
    let lock = Locked::hold(&app.db);

    let late = free_port();
    app.edit_config(|text| {
        let start = text.find("[[service]]\nname = \"kept\"").unwrap();
        text[..start].to_owned()
            + &format!(
                "[[service]]\nname = \"late\"\nkind = \"echo\"\nlisten = \"tcp:{late}:interface=127.0.0.1\"\n"
            )
    });
    app.reload_by_signal("ok");
    open_echo(loopback(late));
    assert_eventually!(!listens(loopback(keep)), "the removed service stops");
    let names: Vec<Value> = app.services().iter().map(|s| s["name"].clone()).collect();
    assert_eq!(names, ["echo", "late"]);
    assert!(echoes(&mut held));

    // Once the lock is gone, the file catches up.
    drop(lock);
    assert_eventually!(
        stored(&app) == ["echo", "late"],
        "the file's services table follows the reload"
    );
}

#[test]
fn an_unreadable_config_file_on_sighup_is_reported_and_the_process_keeps_serving() {
    let app = spawn_app_with(|_| String::new());
    assert_eventually!(app.get("/readyz").status == 200, "ready\n{}", app.log());
    let mut held = open_echo(app.echo);
    let path = app.config_path();
    let good = std::fs::read_to_string(&path).unwrap();
    // A directory in its place: unreadable even for root.
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    app.reload_by_signal("failed");
    let line = app
        .log()
        .lines()
        .find(|l| l.contains("cannot read the configuration"))
        .map(str::to_owned);
    assert!(
        line.as_deref()
            .is_some_and(|l| l.ends_with("; nothing changed")),
        "{line:?}\n{}",
        app.log()
    );
    assert!(echoes(&mut held));
    open_echo(app.echo);
    assert_eq!(app.get("/readyz").status, 200);

    // A named pipe nobody writes to: read, it would hold this reload, every one after
    // it, and the shutdown. Nor is a device read (`/dev/zero` would fill memory).
    std::fs::remove_dir(&path).unwrap();
    let made = std::process::Command::new("mkfifo").arg(&path).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    app.reload_by_signal("failed");
    assert!(
        app.log()
            .contains("cannot read the configuration: not a regular file"),
        "{}",
        app.log()
    );
    assert!(echoes(&mut held));

    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, good).unwrap();
    app.reload_by_signal("ok");
    assert!(echoes(&mut held));
}

#[test]
fn a_changed_service_keeps_its_socket_and_counts_established_connections_against_its_new_cap() {
    let port = free_port();
    let app = spawn_app_with(|_| {
        format!(
            "\n[[service]]\nname = \"capped\"\nkind = \"echo\"\nlisten = \"tcp:{port}:interface=127.0.0.1\"\n\
             max_connections_per_peer = 2\nidle_timeout = \"1h\"\n"
        )
    });
    assert_eventually!(app.get("/readyz").status == 200, "ready\n{}", app.log());
    let addr = loopback(port);
    let mut established: Vec<TcpStream> = (0..2).map(|_| open_echo(addr)).collect();
    let mut over = TcpStream::connect(addr).unwrap();
    over.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(!echoes(&mut over), "a third is over the cap");

    app.edit_config(|text| {
        text.replace(
            "max_connections_per_peer = 2",
            "max_connections_per_peer = 3",
        )
    });
    app.reload_by_signal("ok");
    assert_eq!(
        app.service("capped").unwrap()["config"]["max_connections_per_peer"],
        3
    );
    for s in &mut established {
        assert!(echoes(s), "established connections go on");
    }
    let _third = open_echo(addr);
    let mut fourth = TcpStream::connect(addr).unwrap();
    fourth
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert!(
        !echoes(&mut fourth),
        "the new cap counts the connections opened before the reload"
    );
}

/// A reload that removes a service closes its UDP endpoint as its TCP connections are
/// closed, with the reason `service_stopped`: the process goes on, it is not shutting
/// down.
#[test]
fn a_removed_services_udp_endpoint_closes_as_its_service_stopped() {
    let port = free_port();
    let app = spawn_app_with(|_| {
        format!(
            "\n[[service]]\nname = \"udp-echo\"\nkind = \"echo\"\n\
             listen = \"udp:{port}:interface=127.0.0.1\"\n"
        )
    });
    assert_eventually!(app.get("/readyz").status == 200, "listening\n{}", app.log());
    app.edit_config(|text| {
        let start = text.find("\n[[service]]\nname = \"udp-echo\"").unwrap();
        text[..start].to_owned()
    });
    app.reload_by_signal("ok");
    let closed = |reason: &str| {
        app.metric(&format!(
            r#"weft_connections_closed_total{{reason="{reason}",service="udp-echo",transport="udp"}}"#
        ))
        .unwrap_or(0.0)
    };
    assert_eventually!(
        closed("service_stopped") == 1.0,
        "{}",
        app.curl("/metrics").unwrap_or_default()
    );
    assert_eq!(closed("shutdown"), 0.0);
}

/// The answer of a reload that went through: its message.
fn reloaded(app: &App) -> String {
    let reply = app.reload_by_post();
    assert_eq!(reply.status, 200, "{reply:?}");
    body(&reply)["message"].as_str().unwrap().to_owned()
}

/// A reload applies the services; a section only a restart applies is named, `[log]` and
/// `[demo]` as the others; under `--log-format`, which a restart keeps, no `[log]` is a
/// change that takes one.
#[test]
fn a_reload_says_which_changed_sections_take_a_restart() {
    let app = spawn_app_with(|_| String::new());
    assert!(!reloaded(&app).contains("restart"), "nothing changed");
    app.edit_config(|text| text + "\n[log]\nformat = \"json\"\n");
    let message = reloaded(&app);
    assert!(
        message.contains("[log] changed: restart to apply it"),
        "{message}"
    );
    app.edit_config(|text| text + "\n[inspect]\nstall_after = \"9s\"\n");
    let message = reloaded(&app);
    assert!(
        message.contains("[log] changed") && message.contains("[inspect] changed"),
        "{message}"
    );

    let pinned = spawn_app_args(&["--log-format", "json"], |_| String::new());
    assert!(!reloaded(&pinned).contains("restart"), "nothing changed");
    pinned.edit_config(|text| text + "\n[log]\nformat = \"json\"\n");
    let message = reloaded(&pinned);
    assert!(!message.contains("[log]"), "json already: {message}");
    // The flag wins after a restart too: no `[log]` the file asks for takes one.
    let pinned = spawn_app_args(&["--log-format", "json"], |_| {
        "\n[log]\nformat = \"json\"\n".into()
    });
    pinned.edit_config(|text| text.replace("format = \"json\"", "format = \"text\""));
    let message = reloaded(&pinned);
    assert!(
        !message.contains("[log]"),
        "--log-format json wins: {message}"
    );
}

/// A reload's settings serve the next request on the keep-alive connections an HTTP
/// service's older generation accepted: a route it removes is reached there no more, a
/// header and a root it changes are what those requests get. A request in flight when
/// it commits finishes under the settings it began with.
#[test]
fn an_http_reload_serves_the_next_request_on_a_connection_held_across_it() {
    use crate::http_peers::{RawClient, web_service};

    let upstream = Upstream::holding();
    let (app, web) = web_service(&format!(
        "response_headers = {{ \"X-Generation\" = \"1\" }}\n\
         [[service.route]]\nprefix = \"/api/\"\nupstream = \"http://{}\"\n",
        upstream.addr
    ));
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: web\r\n\r\n").into_bytes();
    let mut held = RawClient::connect(web);
    held.send(&get("/f.txt"));
    assert_eq!(held.read_reply().text(), "a file\n");
    held.send(&get("/api/slow"));
    assert_eventually!(upstream.received() == 1, "the request reached the upstream");

    // The reload drops the route, changes the header and serves another directory.
    let other = app.dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("f.txt"), "another file\n").unwrap();
    app.edit_config(|text| {
        let (service, _route) = text.split_once("[[service.route]]").unwrap();
        service
            .replace("\"1\"", "\"2\"")
            .replace("/public\"", "/other\"")
    });
    app.reload_by_signal("ok");

    upstream.release();
    let slow = held.read_reply();
    assert_eq!(slow.status, 200, "the request in flight finishes: {slow:?}");
    assert!(
        slow.text().starts_with("upstream: GET /api/slow"),
        "{slow:?}"
    );
    assert_eq!(slow.header("x-generation"), Some("1"));

    held.send(&get("/api/x"));
    let removed = held.read_reply();
    assert_eq!(
        removed.status, 404,
        "a route the reload removed: {removed:?}"
    );
    assert_eq!(removed.header("x-generation"), Some("2"));
    assert_eq!(upstream.received(), 1, "nothing more went upstream");
    held.send(&get("/f.txt"));
    let file = held.read_reply();
    assert_eq!(file.text(), "another file\n");
    assert_eq!(file.header("x-generation"), Some("2"));
}

/// A reload that drops a route ends its health checks, though a keep-alive connection of
/// the generation that had it is still open; a reload that makes the service another
/// kind closes the HTTP connections it had (they would go on under settings replaced).
#[test]
fn a_reload_ends_old_health_checks_and_a_new_kind_drains_the_old_connections() {
    use crate::http_peers::{RawClient, web_service};

    let upstream = Upstream::start();
    let (app, web) = web_service(&format!(
        "[[service.route]]\nprefix = \"/api/\"\nupstream = \"http://{}\"\n\
         health = {{ path = \"/healthz\", interval = \"100ms\" }}\n",
        upstream.addr
    ));
    let get = b"GET /f.txt HTTP/1.1\r\nHost: web\r\n\r\n";
    let mut held = RawClient::connect(web);
    held.send(get);
    assert_eq!(held.read_reply().status, 200);
    assert_eventually!(upstream.received() >= 2, "the route's upstream is checked");

    app.edit_config(|text| text.split_once("[[service.route]]").unwrap().0.to_owned());
    app.reload_by_signal("ok");
    // A check on its way as the reload commits may still arrive.
    std::thread::sleep(Duration::from_millis(300));
    let checked = upstream.received();
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(upstream.received(), checked, "checks after the reload");
    held.send(get);
    assert_eq!(held.read_reply().status, 200);

    app.edit_config(|text| {
        text.replace("kind = \"http\"", "kind = \"echo\"")
            .lines()
            .filter(|l| !l.starts_with("root = "))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    app.reload_by_signal("ok");
    let mut old = held.try_clone_stream();
    old.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let ended = old.read(&mut [0; 64]);
    assert!(
        matches!(ended, Ok(0)),
        "the HTTP connection is closed at once: {ended:?}"
    );
    let mut echo = TcpStream::connect(web).unwrap();
    echo.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    echo.write_all(b"hello").unwrap();
    let mut back = [0; 5];
    echo.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello");
}
