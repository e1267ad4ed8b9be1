//! TLS termination of the `http` kind: several certificates on one `ssl:` listener,
//! chosen by the name the client sends (SNI), the endpoint's own for the rest; checked
//! with curl verifying against one certificate at a time and with `openssl s_client`
//! reading the served subject.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::{free_port, spawn_app_with, www};

/// A self-signed certificate with `cn` as its subject and `names` as its alt names; PEM
/// certificate and key.
fn certificate(cn: &str, names: &[&str], until: Option<(i32, u8, u8)>) -> (String, String) {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    if let Some((year, month, day)) = until {
        params.not_after = rcgen::date_time_ymd(year, month, day);
    }
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

pub(crate) fn write_pair(dir: &Path, stem: &str, cn: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    write_pair_until(dir, stem, cn, names, None)
}

/// [`write_pair`], its certificate valid until `until` (year, month, day).
fn write_pair_until(
    dir: &Path,
    stem: &str,
    cn: &str,
    names: &[&str],
    until: Option<(i32, u8, u8)>,
) -> (PathBuf, PathBuf) {
    let (cert, key) = certificate(cn, names, until);
    let (cert_path, key_path) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    (cert_path, key_path)
}

/// The status curl got for `https://{host}:{port}/`, verifying against `ca` only; 0 when
/// the handshake or verification failed.
fn curl_as(host: &str, addr: SocketAddr, ca: &Path) -> u16 {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "--max-time",
            "10",
            "-w",
            "%{http_code}",
        ])
        .arg("--resolve")
        .arg(format!("{host}:{}:127.0.0.1", addr.port()))
        .arg("--cacert")
        .arg(ca)
        .arg(format!("https://{host}:{}/", addr.port()))
        .output()
        .expect("curl must be installed (scripts/test installs it)");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// The subject of the certificate served for `servername` (`None`: no SNI at all).
fn served_subject(addr: SocketAddr, servername: Option<&str>) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &addr.to_string()]);
    match servername {
        Some(name) => cmd.args(["-servername", name]),
        None => cmd.arg("-noservername"),
    };
    let hello = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("openssl must be installed");
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-subject"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    x509.stdin.take().unwrap().write_all(&hello.stdout).unwrap();
    let out = x509.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// An `http` service on `ssl:` at `tls` with the certificate `default.pem` ("weft
/// default", for localhost and 127.0.0.1) and, by SNI, one entry per `(stem, subject,
/// the certificate's names, the names as the entry lists them)`.
fn sni_app(tls: SocketAddr, entries: &[(&str, &str, &[&str], &str)]) -> crate::support::App {
    spawn_app_with(|dir| {
        let root = dir.join("public");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("index.html"), "<h1>weft</h1>\n").unwrap();
        let (dc, dk) = write_pair(dir, "default", "weft default", &["localhost", "127.0.0.1"]);
        let listed: Vec<String> = entries
            .iter()
            .map(|(stem, cn, names, listed)| {
                let (cert, key) = write_pair(dir, stem, cn, names);
                format!(
                    "{{ names = [{listed}], cert = \"{}\", key = \"{}\" }}",
                    cert.display(),
                    key.display()
                )
            })
            .collect();
        format!(
            r#"
[[service]]
name = "web"
kind = "http"
listen = "ssl:{port}:interface=127.0.0.1:privateKey={dk}:certKey={dc}"
root = "{root}"
tls_certificates = [{listed}]
"#,
            port = tls.port(),
            root = root.display(),
            dc = dc.display(),
            dk = dk.display(),
            listed = listed.join(", "),
        )
    })
}

#[test]
fn https_chooses_the_certificate_by_sni_and_serves_the_default_otherwise() {
    let tls: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let app = sni_app(
        tls,
        &[
            ("a", "weft a", &["a.example"], "\"a.example\""),
            (
                "b",
                "weft b",
                &["b.example", "www.b.example"],
                "\"B.example\", \"www.b.example\"",
            ),
        ],
    );
    let dir = app.dir.path();
    let (a, b, default) = (
        dir.join("a.pem"),
        dir.join("b.pem"),
        dir.join("default.pem"),
    );

    assert_eq!(
        curl_as("a.example", tls, &a),
        200,
        "a.example gets certificate A"
    );
    assert_eq!(
        curl_as("a.example", tls, &default),
        0,
        "and not the default"
    );
    assert_eq!(
        curl_as("b.example", tls, &b),
        200,
        "names match regardless of case"
    );
    assert_eq!(
        curl_as("www.b.example", tls, &b),
        200,
        "every name of an entry"
    );
    assert_eq!(curl_as("b.example", tls, &a), 0);
    assert_eq!(
        curl_as("localhost", tls, &default),
        200,
        "an unlisted name: the default"
    );

    assert!(served_subject(tls, Some("a.example")).contains("weft a"));
    assert!(served_subject(tls, Some("b.example")).contains("weft b"));
    assert!(served_subject(tls, Some("c.example")).contains("weft default"));
    let none = served_subject(tls, None);
    assert!(
        none.contains("weft default"),
        "no SNI: the default, got {none:?}"
    );
}

/// A certificate renewed in place (the same paths, as certbot leaves them) is served
/// after a reload: the listener's own and an SNI entry's; a reload with nothing renewed
/// leaves the service running as it was.
#[test]
fn certificates_renewed_in_place_are_served_after_a_reload() {
    let tls: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let app = sni_app(tls, &[("a", "weft a", &["a.example"], "\"a.example\"")]);
    let dir = app.dir.path();
    assert!(served_subject(tls, Some("a.example")).contains("weft a"));
    app.reload_by_signal("ok");
    assert!(
        app.log().contains("configuration reloaded: 2 unchanged"),
        "nothing renewed, nothing changed:\n{}",
        app.log()
    );

    write_pair(
        dir,
        "default",
        "weft default renewed",
        &["localhost", "127.0.0.1"],
    );
    // Renewed until 2099-01-02: the expiry gauge follows what is served.
    let expiry = |stem: &str| {
        let series = format!(
            "weft_tls_certificate_expiry_timestamp_seconds{{certificate=\"{}\",service=\"web\"}}",
            dir.join(format!("{stem}.pem")).display()
        );
        app.metric(&series)
    };
    let far = expiry("a").expect("the SNI entry's certificate is on /metrics");
    assert!(far > 4_000_000_000.0, "rcgen's default, 4096: {far}");
    assert!(expiry("default").is_some(), "the listener's own");
    write_pair_until(
        dir,
        "a",
        "weft a renewed",
        &["a.example"],
        Some((2099, 1, 2)),
    );
    app.reload_by_signal("ok");
    assert_eq!(expiry("a"), Some(4_070_995_200.0), "2099-01-02T00:00:00Z");
    assert!(
        app.log().contains("configuration reloaded: changed web"),
        "{}",
        app.log()
    );
    let a = served_subject(tls, Some("a.example"));
    assert!(
        a.contains("weft a renewed"),
        "the SNI entry's renewal: {a:?}"
    );
    let default = served_subject(tls, Some("other.example"));
    assert!(
        default.contains("weft default renewed"),
        "the listener's renewal: {default:?}"
    );
    assert_eq!(curl_as("a.example", tls, &dir.join("a.pem")), 200);
}

#[test]
fn https_certificates_are_checked_like_listening_loads_them() {
    let dir = tempfile::tempdir().unwrap();
    let (dc, dk) = write_pair(dir.path(), "default", "weft default", &["localhost"]);
    let (ac, _) = write_pair(dir.path(), "a", "weft a", &["a.example"]);
    let config = |listen: &str, key: &Path| {
        format!(
            "[[service]]\nname = \"web\"\nkind = \"http\"\nlisten = \"{listen}\"\nroot = \"{root}\"\n\
             tls_certificates = [{{ names = [\"a.example\"], cert = \"{ac}\", key = \"{key}\" }}]\n",
            root = dir.path().display(),
            ac = ac.display(),
            key = key.display(),
        )
    };
    let ssl = format!(
        "ssl:8443:privateKey={}:certKey={}",
        dk.display(),
        dc.display()
    );
    let check = |config: String| {
        let (code, _, stderr) = crate::check::check(&config);
        (code, stderr)
    };
    // The key of another certificate does not match A's.
    let (code, err) = check(config(&ssl, &dk));
    assert_eq!(code, Some(1));
    assert!(
        err.contains("service[0].tls_certificates[0].key: cannot load it"),
        "{err}"
    );
    let (code, err) = check(config(&ssl, &dir.path().join("missing.key")));
    assert_eq!(code, Some(1));
    assert!(err.contains("service[0].tls_certificates[0].key"), "{err}");
    assert!(err.contains("missing.key"), "{err}");
    let (code, err) = check(config("tcp:8080", &dk));
    assert_eq!(code, Some(1));
    assert!(
        err.contains("service[0].tls_certificates: is served on ssl: listeners"),
        "{err}"
    );
}

/// An http service `web` on an `ssl:` listener at `tls` (a certificate for `localhost`
/// made now) serving the test's directory, with `extra` after its keys.
fn tls_web(tls: u16, extra: &str) -> crate::support::App {
    spawn_app_with(|dir| {
        let (cert, key) = write_pair(dir, "web", "localhost", &["localhost"]);
        format!(
            "\n[[service]]\nname = \"web\"\nkind = \"http\"\n\
             listen = \"ssl:{tls}:interface=127.0.0.1:privateKey={}:certKey={}\"\n\
             root = \"{}\"\n{extra}",
            key.display(),
            cert.display(),
            www(dir).display(),
        )
    })
}

/// A plain HTTP request sent to the HTTPS port is answered 400 saying so (as nginx
/// answers it), not closed in silence, and counted as a failed handshake.
#[test]
fn plain_http_sent_to_the_https_port_is_told_so() {
    let tls = free_port();
    let app = tls_web(tls, "");
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "5", "-w", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:{tls}/"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n400"), "{text}");
    assert!(text.contains("this port speaks HTTPS"), "{text}");
    crate::assert_eventually!(
        app.metric(r#"weft_errors_total{kind="tls_handshake",service="web"}"#) == Some(1.0),
        "counted as a failed handshake\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
}

/// A flood of peers that each fail the same way (a plaintext client on the TLS port, an
/// idle connection timing out) is counted whole and logged within the budget of
/// handled errors: 20 lines a second for one service and kind, not one line each.
#[test]
fn a_flood_of_failed_handshakes_and_idle_peers_is_counted_whole_and_logged_within_budget() {
    let (tls, plain) = (free_port(), free_port());
    let app = spawn_app_with(|dir| {
        let (cert, key) = write_pair(dir, "web", "localhost", &["localhost"]);
        format!(
            "\n[[service]]\nname = \"web\"\nkind = \"http\"\n\
             listen = [\"ssl:{tls}:interface=127.0.0.1:privateKey={}:certKey={}\", \
             \"tcp:{plain}:interface=127.0.0.1\"]\nroot = \"{}\"\nidle_timeout = \"1s\"\n\
             max_connections_per_peer = 0\n",
            key.display(),
            cert.display(),
            www(dir).display(),
        )
    });
    const PEERS: usize = 60;
    let count = |needle: &str| app.log().lines().filter(|l| l.contains(needle)).count();
    for _ in 0..PEERS {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", tls)).unwrap();
        let _ = conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    crate::assert_eventually!(
        app.metric(r#"weft_errors_total{kind="tls_handshake",service="web"}"#)
            == Some(PEERS as f64),
        "each failed handshake is counted\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    let lines = count("TLS handshake failed");
    assert!(
        (1..=40).contains(&lines),
        "{lines} lines for {PEERS} failed handshakes\n{}",
        app.log()
    );

    // Idle peers, all cut at the idle timeout together.
    let idle: Vec<_> = (0..PEERS)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", plain)).unwrap())
        .collect();
    crate::assert_eventually!(
        app.metric(
            r#"weft_connections_closed_total{reason="timeout",service="web",transport="tcp"}"#
        ) == Some(PEERS as f64),
        "each idle peer is cut and counted\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    drop(idle);
    let lines = count("connection timed out");
    assert!(
        (1..=40).contains(&lines),
        "{lines} lines for {PEERS} idle peers timed out\n{}",
        app.log()
    );
}

/// The CA bundle a route's `https://` upstreams are verified against, rotated in place,
/// changes the service: a reload starts it again with the new roots (with nothing
/// rotated, it is left running).
#[test]
fn a_ca_bundle_rotated_in_place_changes_its_service_on_reload() {
    let web: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let app = spawn_app_with(|dir| {
        let (ca, _) = write_pair(dir, "ca", "upstream ca", &["localhost"]);
        format!(
            r#"
[[service]]
name = "web"
kind = "http"
listen = "tcp:{port}:interface=127.0.0.1"
[[service.route]]
prefix = "/api/"
upstream = "https://localhost:1"
ca = "{ca}"
"#,
            port = web.port(),
            ca = ca.display(),
        )
    });
    app.reload_by_signal("ok");
    assert!(
        app.log().contains("configuration reloaded: 2 unchanged"),
        "{}",
        app.log()
    );
    write_pair(app.dir.path(), "ca", "upstream ca, rotated", &["localhost"]);
    app.reload_by_signal("ok");
    assert!(
        app.log().contains("configuration reloaded: changed web"),
        "{}",
        app.log()
    );
}

/// Whether `s`'s peer ended the connection within `within`: a read gives the end of the
/// stream or an error (a reset) rather than timing out.
fn ended_within(s: &mut std::net::TcpStream, within: std::time::Duration) -> bool {
    use std::io::Read;
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// A peer that connects to an `ssl:` listener and never finishes its handshake is a
/// connection like any other while it holds its place: listed on the dashboard and in
/// `weft_connections_active` and `weft_process_connections`, closed from the dashboard
/// at once, and cut when a reload removes its service (not ten seconds later, when the
/// handshake would time out). The process cap and its count are on `/metrics`.
#[test]
fn a_peer_in_its_tls_handshake_is_listed_counted_closable_and_cut_with_its_service() {
    use std::time::{Duration, Instant};

    let tls = free_port();
    let app = tls_web(
        tls,
        "idle_timeout = \"60s\"\n\n[gateway]\nmax_connections = 40",
    );
    assert_eq!(app.metric("weft_process_connections_limit"), Some(40.0));
    let before = app.metric("weft_process_connections").unwrap();

    let connected = Instant::now();
    let mut peers: Vec<_> = (0..3)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", tls)).unwrap())
        .collect();
    let names: Vec<String> = peers
        .iter()
        .map(|s| s.local_addr().unwrap().to_string())
        .collect();
    let listed = || -> Vec<u64> {
        let list: serde_json::Value =
            serde_json::from_str(&app.get("/api/connections?state=open&service=web").body)
                .unwrap_or_default();
        let items = list["items"].as_array().cloned().unwrap_or_default();
        names
            .iter()
            .filter_map(|n| items.iter().find(|c| c["peer"] == n.as_str()))
            .filter(|c| c["transport"] == "tls")
            .filter_map(|c| c["id"].as_u64())
            .collect()
    };
    crate::assert_eventually!(
        listed().len() == 3,
        "three peers in their handshake listed\n{}",
        app.get("/api/connections?state=open").body
    );
    assert_eq!(
        app.metric(r#"weft_connections_active{service="web",transport="tls"}"#),
        Some(3.0)
    );
    assert_eq!(app.metric("weft_process_connections"), Some(before + 3.0));

    // Closed from the dashboard: at once, as asked.
    let id = listed()[0];
    let closed = app.close_from_dashboard(id);
    assert_eq!(closed.status, 202, "{closed:?}");
    assert!(
        ended_within(&mut peers[0], Duration::from_secs(3)),
        "the connection closed from the dashboard ended"
    );
    crate::assert_eventually!(
        app.metric(
            r#"weft_connections_closed_total{reason="aborted",service="web",transport="tls"}"#
        ) == Some(1.0),
        "its close counted\n{}",
        app.curl("/metrics").unwrap_or_default()
    );

    // Its service removed by a reload: the others are cut with it.
    app.edit_config(|text| {
        let start = text.find("\n[[service]]\nname = \"web\"").unwrap();
        let end = text.find("\n[gateway]").unwrap();
        format!("{}{}", &text[..start], &text[end..])
    });
    app.reload_by_signal("ok");
    for peer in &mut peers[1..] {
        assert!(
            ended_within(peer, Duration::from_secs(5)),
            "a peer in its handshake is cut when its service goes\n{}",
            app.log()
        );
    }
    // Not by the handshake's own timeout of 10 s.
    assert!(
        connected.elapsed() < Duration::from_secs(9),
        "{:?}",
        connected.elapsed()
    );
    crate::assert_eventually!(
        app.metric(
            r#"weft_connections_closed_total{reason="service_stopped",service="web",transport="tls"}"#
        ) == Some(2.0),
        "cut as their service stopped\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    crate::assert_eventually!(
        app.metric("weft_process_connections") == Some(before),
        "their places given back\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
}
