//! `[gateway] reactors = 2`: both reactors accept on every port (SO_REUSEPORT), each
//! answers echo, HTTP and DNS, the dashboard closes a connection the second reactor owns,
//! history keeps each connection's and chain's reactor (listed, filtered and shown in a
//! column), and a reload and the shutdown reach both.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;

use serde_json::Value;

use crate::assert_eventually;
use crate::support::{App, echo_once, free_port, http, spawn_app_with};

/// Connections opened per port: the kernel hashes each over the two reactors, so all of
/// them landing on one reactor has a chance of 2^-31.
const SPREAD: usize = 32;

const ZONE: &str = "$ORIGIN example.test.
$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 86400 300
@ IN NS ns1
ns1 IN A 192.0.2.1
www IN A 192.0.2.10
";

/// Two reactors, with an HTTP service serving `dir/site` and a DNS service; every chain
/// that succeeds is kept in history.
fn spawn_two(web: u16, dns: u16) -> App {
    spawn_app_with(|dir| {
        let site = dir.join("site");
        std::fs::create_dir_all(&site).unwrap();
        std::fs::write(site.join("index.html"), "hello from weft\n").unwrap();
        let zone = dir.join("example.test.zone");
        std::fs::write(&zone, ZONE).unwrap();
        format!(
            r#"
[[service]]
name = "web"
kind = "http"
listen = "tcp:{web}:interface=127.0.0.1"
root = "{site}"

[[service]]
name = "dns"
kind = "dns"
listen = ["udp:{dns}:interface=127.0.0.1", "tcp:{dns}:interface=127.0.0.1"]
zones = ["{zone}"]

[gateway]
reactors = 2

[inspect]
sample = 1.0
"#,
            site = site.display(),
            zone = zone.display()
        )
    })
}

/// The open connections of `service`, as `/api/connections` lists them.
fn open_connections(app: &App, service: &str, reactor: Option<u16>) -> Vec<Value> {
    let filter = reactor.map_or_else(String::new, |r| format!("&reactor={r}"));
    let body = app
        .curl(&format!(
            "/api/connections?state=open&service={service}&limit=1000{filter}"
        ))
        .expect("/api/connections answers");
    let page: Value = serde_json::from_str(&body).unwrap();
    page["items"].as_array().unwrap().clone()
}

fn reactors_of(items: &[Value]) -> BTreeSet<u64> {
    items
        .iter()
        .map(|c| {
            c["reactor"]
                .as_u64()
                .expect("a live connection names its reactor")
        })
        .collect()
}

fn dig_short(port: u16, args: &[&str]) -> String {
    let out = std::process::Command::new("dig")
        .arg("@127.0.0.1")
        .args(["-p", &port.to_string(), "+time=3", "+tries=1", "+short"])
        .args(args)
        .output()
        .expect("dig must be installed (scripts/test installs dnsutils)");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn connections_to_one_port_spread_over_both_reactors_and_each_answers() {
    let (web, dns) = (free_port(), free_port());
    let app = spawn_two(web, dns);

    let held: Vec<TcpStream> = (0..SPREAD).map(|_| echo_once(app.echo)).collect();
    assert_eventually!(
        open_connections(&app, "echo", None)
            .iter()
            .filter(|c| c["transport"] == "tcp")
            .count()
            >= SPREAD,
        "every echo connection listed"
    );
    let tcp: Vec<Value> = open_connections(&app, "echo", None)
        .into_iter()
        .filter(|c| c["transport"] == "tcp")
        .collect();
    assert_eq!(
        reactors_of(&tcp),
        BTreeSet::from([0, 1]),
        "both reactors accept on the echo port: {tcp:?}"
    );
    // The API filters by reactor, and the per-reactor gauge counts the same.
    let on_one = open_connections(&app, "echo", Some(1));
    assert!(!on_one.is_empty() && on_one.iter().all(|c| c["reactor"] == 1));
    for reactor in ["0", "1"] {
        let gauge = app.metric(&format!(
            "weft_reactor_connections{{reactor=\"{reactor}\"}}"
        ));
        assert!(gauge >= Some(1.0), "reactor {reactor}: {gauge:?}");
        let lag = app.metric(&format!(
            "weft_reactor_lag_seconds_count{{reactor=\"{reactor}\"}}"
        ));
        assert!(lag.is_some(), "reactor {reactor} measures its lag");
    }
    // The UDP port is bound once per reactor: one endpoint each.
    let udp: Vec<Value> = open_connections(&app, "echo", None)
        .into_iter()
        .filter(|c| c["transport"] == "udp")
        .collect();
    assert_eq!(reactors_of(&udp), BTreeSet::from([0, 1]), "{udp:?}");
    drop(held);

    // HTTP on fresh connections, answered whichever reactor takes each.
    let web_addr: SocketAddr = ([127, 0, 0, 1], web).into();
    for _ in 0..SPREAD {
        let reply = http(web_addr, "GET / HTTP/1.1\r\nHost: example\r\n", "");
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.body, "hello from weft\n");
    }
    // One series per label set, summed over the reactors.
    assert_eventually!(
        app.metric(r#"weft_http_requests_total{code="2xx",method="GET",service="web"}"#)
            == Some(SPREAD as f64),
        "{:?}",
        app.curl("/metrics")
    );

    // DNS over UDP and TCP from many source ports.
    for i in 0..8 {
        let tcp = if i % 2 == 0 { "+notcp" } else { "+tcp" };
        assert_eq!(
            dig_short(dns, &["www.example.test", "A", tcp]),
            "192.0.2.10"
        );
    }
    let metrics = app.curl("/metrics").unwrap();
    assert!(!metrics.contains("reactor=\"2\""), "{metrics}");
}

/// Takes out of `held` an echo TCP connection reactor 1 owns: its id and its stream.
fn one_on_reactor_1(app: &App, held: &mut Vec<TcpStream>) -> (u64, TcpStream) {
    let on_one = open_connections(app, "echo", Some(1));
    let target = on_one
        .iter()
        .find(|c| c["transport"] == "tcp")
        .unwrap_or_else(|| panic!("a TCP connection on reactor 1: {on_one:?}"));
    let peer = target["peer"].as_str().unwrap();
    let index = held
        .iter()
        .position(|s| s.local_addr().unwrap().to_string() == peer)
        .expect("the listed peer is one of ours");
    (target["id"].as_u64().unwrap(), held.swap_remove(index))
}

#[test]
fn the_dashboard_closes_a_connection_the_second_reactor_owns() {
    let (web, dns) = (free_port(), free_port());
    let app = spawn_two(web, dns);
    let mut held: Vec<TcpStream> = (0..SPREAD).map(|_| echo_once(app.echo)).collect();
    let (id, mut conn) = one_on_reactor_1(&app, &mut held);

    let reply = app.close_from_dashboard(id);
    assert_eq!(reply.status, 202, "{reply:?}");
    let mut buf = [0u8; 1];
    let read = conn.read(&mut buf);
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the connection on reactor 1 was closed: {read:?}"
    );
    assert_eventually!(
        app.curl(&format!("/api/connections/{id}"))
            .is_some_and(|b| b.contains("\"closed\"")),
        "listed as closed"
    );
    // The others, on both reactors, still echo.
    for s in &mut held {
        s.write_all(b"more\n").unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"more\n");
    }
}

fn json(app: &App, path: &str) -> Value {
    let body = app.curl(path).unwrap_or_else(|| panic!("{path} answers"));
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// The ids and reactors of a list's items.
fn listed(page: &Value) -> Vec<(u64, u64)> {
    let items = page["items"].as_array().expect("a list");
    let pair = |v: &Value| {
        (
            v["id"].as_u64().unwrap(),
            v["reactor"].as_u64().unwrap_or(99),
        )
    };
    items.iter().map(pair).collect()
}

/// The table row of the connection `id` in a list page.
fn page_row(html: &str, id: u64) -> &str {
    let start = html
        .find(&format!("<tr data-id=\"{id}\""))
        .unwrap_or_else(|| panic!("row {id} listed: {html}"));
    let len = html[start..].find("</tr>").expect("the row ends");
    &html[start..start + len]
}

#[test]
fn history_keeps_the_reactor_of_each_connection_and_chain_and_the_lists_filter_by_it() {
    let (web, dns) = (free_port(), free_port());
    let app = spawn_two(web, dns);
    let mut held: Vec<TcpStream> = (0..SPREAD).map(|_| echo_once(app.echo)).collect();
    let (id, conn) = one_on_reactor_1(&app, &mut held);
    // Closed by the client: from then on it is history's.
    drop(conn);

    let path = format!("/api/connections/{id}");
    assert_eventually!(
        app.curl(&path)
            .is_some_and(|b| b.contains("\"closed\"") && b.contains("\"reactor\":1")),
        "closed, on reactor 1: {:?}",
        app.curl(&path)
    );
    // The lists read history, which has the close within a second or so.
    let closed_list = || listed(&json(&app, "/api/connections?state=closed&reactor=1"));
    assert_eventually!(closed_list().contains(&(id, 1)), "{:?}", closed_list());
    let closed_on_one = closed_list();
    assert!(
        closed_on_one.iter().all(|&(_, r)| r == 1),
        "{closed_on_one:?}"
    );
    let closed_on_zero = listed(&json(&app, "/api/connections?state=closed&reactor=0"));
    assert!(closed_on_zero.iter().all(|&(i, r)| r == 0 && i != id));
    let stored: Option<i64> = crate::support::query(&app.db, async |c| {
        let (r,): (Option<i64>,) = sqlx::query_as("SELECT reactor FROM connections WHERE id = ?")
            .bind(id as i64)
            .fetch_one(c)
            .await
            .unwrap();
        r
    });
    assert_eq!(stored, Some(1), "the history file keeps the reactor");

    // The list page: a reactor column and filter, with two reactors.
    let html = app.curl("/connections?state=closed&reactor=1").unwrap();
    assert!(
        html.contains("<th>reactor</th>") && html.contains(" data-reactors"),
        "{html}"
    );
    assert!(
        html.contains("<option value=\"1\" selected>1</option>"),
        "{html}"
    );
    assert!(
        page_row(&html, id).contains("<td class=\"reactor\">1</td>"),
        "{html}"
    );

    // HTTP on fresh connections: the kernel spreads them, every chain is kept.
    let web_addr: SocketAddr = ([127, 0, 0, 1], web).into();
    for _ in 0..SPREAD {
        let reply = http(web_addr, "GET / HTTP/1.1\r\nHost: example\r\n", "");
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    let chain_reactors = || -> BTreeSet<Option<i64>> {
        crate::support::query(&app.db, async |c| {
            let rows: Vec<(Option<i64>,)> = sqlx::query_as(
                "SELECT DISTINCT reactor FROM deferreds WHERE label = 'http request'",
            )
            .fetch_all(c)
            .await
            .unwrap();
            rows.into_iter().map(|(r,)| r).collect()
        })
    };
    assert_eventually!(
        chain_reactors() == BTreeSet::from([Some(0), Some(1)]),
        "the requests' chains in history, with the reactor of each: {:?}",
        chain_reactors()
    );
    for reactor in [0, 1] {
        let chains = listed(&json(
            &app,
            &format!("/api/deferreds?reactor={reactor}&limit=1000"),
        ));
        assert!(!chains.is_empty(), "reactor {reactor}'s chains listed");
        assert!(chains.iter().all(|&(_, r)| r == reactor), "{chains:?}");
        let html = app.curl(&format!("/deferreds?reactor={reactor}")).unwrap();
        assert!(html.contains("<th>reactor</th>"), "{html}");
    }
    let html = app.curl("/deferreds").unwrap();
    assert!(html.contains("<select name=\"reactor\">"), "{html}");
    // A reactor that is not a number is refused, naming the parameter.
    let reply = http(
        app.dashboard,
        &format!(
            "GET /api/connections?reactor=one HTTP/1.1\r\nHost: {}\r\n",
            app.dashboard
        ),
        "",
    );
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(reply.body.contains("reactor"), "{reply:?}");
}

#[test]
fn a_reload_and_the_shutdown_reach_both_reactors() {
    let (web, dns) = (free_port(), free_port());
    let mut app = spawn_two(web, dns);
    let held: Vec<TcpStream> = (0..SPREAD).map(|_| echo_once(app.echo)).collect();

    // A reload that adds a service: both reactors start it.
    let added = free_port();
    let path = app.dir.path().join("weft.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    let config = config.replace(
        "[gateway]",
        &format!(
            "[[service]]\nname = \"echo2\"\nkind = \"echo\"\nlisten = \"tcp:{added}:interface=127.0.0.1\"\n\n[gateway]"
        ),
    );
    std::fs::write(&path, config).unwrap();
    let reply = app.reload_by_post();
    assert_eq!(reply.status, 200, "{reply:?}\n{}", app.log());
    let added_addr: SocketAddr = ([127, 0, 0, 1], added).into();
    let more: Vec<TcpStream> = (0..SPREAD).map(|_| echo_once(added_addr)).collect();
    assert_eventually!(
        reactors_of(&open_connections(&app, "echo2", None)) == BTreeSet::from([0, 1]),
        "both reactors serve the service the reload added"
    );

    // SIGTERM: every connection, on both reactors, is closed, and the process exits.
    let status = app.signal_and_wait("TERM");
    assert!(status.success(), "{status:?}\n{}", app.log());
    for mut s in held.into_iter().chain(more) {
        let mut buf = [0u8; 1];
        assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
    }
    assert!(app.log().contains("stopped"), "{}", app.log());
}

#[test]
fn weft_check_refuses_a_bad_reactor_count_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (value, says) in [
        ("0", "between 1 and 256"),
        ("300", "between 1 and 256"),
        ("\"many\"", "\"auto\""),
        ("1.5", "\"auto\""),
    ] {
        let file = write_config(dir.path(), &format!("[gateway]\nreactors = {value}\n"));
        let out = crate::support::weft_check([&file]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{value}: {err}");
        assert!(
            err.contains("gateway.reactors") && err.contains(says),
            "{value}: {err}"
        );
    }
    for value in ["1", "2", "\"auto\""] {
        let file = write_config(dir.path(), &format!("[gateway]\nreactors = {value}\n"));
        let out = crate::support::weft_check([&file]);
        assert!(
            out.status.success(),
            "{value}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn write_config(dir: &Path, gateway: &str) -> std::path::PathBuf {
    let file = dir.join("weft.toml");
    let (echo, dashboard) = (free_port(), free_port());
    std::fs::write(
        &file,
        format!(
            "[dashboard]\nlisten = \"tcp:{dashboard}:interface=127.0.0.1\"\n\n[store]\npath = \"{}\"\n\n\
             [[service]]\nname = \"echo\"\nkind = \"echo\"\nlisten = \"tcp:{echo}:interface=127.0.0.1\"\n\n{gateway}",
            dir.join("h.db").display()
        ),
    )
    .unwrap();
    file
}

/// Several reactors bind each port with `SO_REUSEPORT`, which would share a port with
/// another process that set it too, splitting its traffic without a word: the first
/// reactor makes sure no other process holds the port, and `run` refuses one that does.
#[test]
fn a_port_another_process_shares_out_with_so_reuseport_is_refused_not_shared() {
    use socket2::{Domain, Socket, Type};
    let dir = tempfile::tempdir().unwrap();
    let shared = |kind: Type| {
        let s = Socket::new(Domain::IPV4, kind, None).unwrap();
        s.set_reuse_port(true).unwrap();
        s.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        s
    };
    let tcp = shared(Type::STREAM);
    tcp.listen(16).unwrap();
    let udp = shared(Type::DGRAM);
    for (socket, transport) in [(&tcp, "tcp"), (&udp, "udp")] {
        let port = socket.local_addr().unwrap().as_socket().unwrap().port();
        let file = write_config(
            dir.path(),
            &format!(
                "[gateway]\nreactors = 2\n[[service]]\nname = \"e\"\nkind = \"echo\"\n\
                 listen = \"{transport}:{port}:interface=127.0.0.1\"\n"
            ),
        );
        let log = dir.path().join("run.log");
        let mut run = std::process::Command::new(crate::support::weft_bin())
            .args(["run", "--config"])
            .arg(&file)
            .stdin(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = run.try_wait().unwrap() {
                break Some(status);
            }
            if started.elapsed() > std::time::Duration::from_secs(20) {
                let _ = run.kill();
                let _ = run.wait();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let stderr = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(1),
            "{transport}: still serving, sharing the port: {stderr}"
        );
        // Refused before anything binds, naming the process that holds it.
        assert!(
            stderr.contains(&format!(
                "cannot listen: {} port {port} on 127.0.0.1 is in use by process {}",
                transport.to_uppercase(),
                std::process::id()
            )),
            "{transport}: {stderr}"
        );
    }
}

/// Echoes one line through the unix socket at `path`.
fn echo_unix(path: &Path) -> std::io::Result<String> {
    let mut s = std::os::unix::net::UnixStream::connect(path)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    s.write_all(b"ping\n")?;
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[test]
fn a_unix_socket_moved_away_and_back_by_two_reloads_is_bound_again_for_both_reactors() {
    let app = spawn_app_with(|dir| {
        format!(
            "[[service]]\nname = \"sock\"\nkind = \"echo\"\nlisten = \"unix:{}\"\n\n[gateway]\nreactors = 2\n",
            dir.join("a.sock").display()
        )
    });
    let (a, q) = (app.dir.path().join("a.sock"), app.dir.path().join("q.sock"));
    assert_eq!(echo_unix(&a).unwrap(), "ping\n");
    let path = app.dir.path().join("weft.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    for (to, other) in [(&q, &a), (&a, &q)] {
        let moved = config.replace(&a.display().to_string(), &to.display().to_string());
        std::fs::write(&path, moved).unwrap();
        let reply = app.reload_by_post();
        assert_eq!(reply.status, 200, "{reply:?}\n{}", app.log());
        assert_eventually!(!other.exists(), "the old socket file goes");
        for _ in 0..SPREAD {
            assert_eq!(
                echo_unix(to).map_err(|e| e.to_string()),
                Ok("ping\n".to_owned()),
                "{}",
                to.display()
            );
        }
    }
}

#[test]
fn a_unix_socket_whose_file_was_removed_outside_weft_stops_listening_when_its_service_moves() {
    // The reactors share one listener per socket file: the port that lets it go must
    // drop it too when the file is already gone, or it listens on, unreachable, for ever.
    let app = spawn_app_with(|dir| {
        format!(
            "[[service]]\nname = \"sock\"\nkind = \"echo\"\nlisten = \"unix:{}\"\n\n[gateway]\nreactors = 2\n",
            dir.join("a.sock").display()
        )
    });
    let (a, b) = (app.dir.path().join("a.sock"), app.dir.path().join("b.sock"));
    assert_eq!(echo_unix(&a).unwrap(), "ping\n");
    let listening_at = |path: &std::path::Path| {
        let table = std::fs::read_to_string("/proc/net/unix").unwrap();
        let path = path.display().to_string();
        table.lines().filter(|l| l.ends_with(&path)).count()
    };
    assert!(
        listening_at(&a) > 0,
        "the kernel lists the listener by its path"
    );
    std::fs::remove_file(&a).unwrap();
    let path = app.dir.path().join("weft.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        config.replace(&a.display().to_string(), &b.display().to_string()),
    )
    .unwrap();
    let reply = app.reload_by_post();
    assert_eq!(reply.status, 200, "{reply:?}\n{}", app.log());
    assert_eq!(echo_unix(&b).unwrap(), "ping\n");
    assert_eventually!(
        listening_at(&a) == 0,
        "a socket still listens at {}",
        a.display()
    );
}
