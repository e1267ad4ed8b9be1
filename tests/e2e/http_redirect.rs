//! `https_redirect` on the real binary with curl: a request over plain HTTP (HTTP/1.1 or
//! h2c) is sent to the same URL over HTTPS, keeping its method where it must, while ACME's
//! HTTP-01 challenges are served over plain HTTP and requests over TLS as ever.

use std::path::PathBuf;
use std::process::Command;

use crate::http_tls::write_pair;
use crate::support::{App, free_port, spawn_app_with};

struct Site {
    app: App,
    plain: u16,
    tls: u16,
    cert: PathBuf,
}

fn start() -> Site {
    let (plain, tls) = (free_port(), free_port());
    let mut cert = PathBuf::new();
    let app = spawn_app_with(|dir| {
        let root = dir.join("public");
        std::fs::create_dir_all(root.join(".well-known/acme-challenge")).unwrap();
        std::fs::write(root.join("index.html"), "home\n").unwrap();
        std::fs::write(
            root.join(".well-known/acme-challenge/t0k"),
            "t0k.thumbprint",
        )
        .unwrap();
        let (c, key) = write_pair(dir, "site", "weft site", &["site.example"]);
        cert = c.clone();
        format!(
            r#"
[[service]]
name = "web"
kind = "http"
listen = ["tcp:{plain}:interface=127.0.0.1",
          "ssl:{tls}:interface=127.0.0.1:privateKey={key}:certKey={c}"]
root = "{root}"
https_redirect = true
hsts_max_age = "1d"
"#,
            key = key.display(),
            c = c.display(),
            root = root.display(),
        )
    });
    Site {
        app,
        plain,
        tls,
        cert,
    }
}

/// curl's status, the URL it was sent to (or ended at, with `-L`) and body, for `url`,
/// with `site.example` at loopback on both ports.
fn curl(site: &Site, args: &[&str], url: &str) -> (u16, String, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code} %{redirect_url}",
        ])
        .arg("--resolve")
        .arg(format!("site.example:{}:127.0.0.1", site.plain))
        .arg("--resolve")
        .arg(format!("site.example:{}:127.0.0.1", site.tls))
        .arg("--cacert")
        .arg(&site.cert)
        .args(args)
        .arg(url)
        .output()
        .expect("curl must be installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, last) = text.rsplit_once('\n').unwrap_or(("", &text));
    let (code, location) = last.split_once(' ').unwrap_or((last, ""));
    (
        code.parse().unwrap_or(0),
        location.to_owned(),
        body.to_owned(),
    )
}

fn head_of(site: &Site, args: &[&str], url: &str) -> String {
    let mut all = vec!["-D", "-", "-o", "/dev/null"];
    all.extend_from_slice(args);
    let (_, _, head) = curl(site, &all, url);
    head.to_ascii_lowercase()
}

#[test]
fn plain_requests_go_to_https_and_acme_challenges_and_tls_requests_are_served() {
    let site = start();
    let plain = format!("http://site.example:{}", site.plain);
    let https = format!("https://site.example:{}", site.tls);

    // A GET over plain HTTP: 301 to the same path and query on the ssl: listener's port.
    let (code, location, _) = curl(&site, &[], &format!("{plain}/index.html?x=1"));
    assert_eq!(
        (code, location.as_str()),
        (301, &*format!("{https}/index.html?x=1"))
    );
    // Any other method: 308, which a client must follow with the same method and body.
    let (code, location, _) = curl(
        &site,
        &["-X", "POST", "-d", "a=1"],
        &format!("{plain}/form"),
    );
    assert_eq!((code, location.as_str()), (308, &*format!("{https}/form")));
    // Over h2c too.
    let (code, location, _) = curl(&site, &["--http2-prior-knowledge"], &format!("{plain}/"));
    assert_eq!((code, location.as_str()), (301, &*format!("{https}/")));
    // Followed, the client gets the page over TLS, with HSTS there and not before.
    let (code, _, body) = curl(&site, &["-L"], &format!("{plain}/"));
    assert_eq!((code, body.as_str()), (200, "home\n"));
    let redirect = head_of(&site, &[], &format!("{plain}/"));
    assert!(
        !redirect.contains("strict-transport-security"),
        "{redirect}"
    );
    let served = head_of(&site, &[], &format!("{https}/"));
    assert!(
        served.contains("strict-transport-security: max-age=86400"),
        "{served}"
    );

    // ACME's HTTP-01 challenge is served over plain HTTP, as the CA fetches it.
    let (code, _, body) = curl(
        &site,
        &[],
        &format!("{plain}/.well-known/acme-challenge/t0k"),
    );
    assert_eq!((code, body.as_str()), (200, "t0k.thumbprint"));

    // Counted as answers, and logged.
    let app = &site.app;
    let redirected = app
        .metric(r#"weft_http_requests_total{code="3xx",method="GET",service="web"}"#)
        .unwrap_or(0.0);
    assert!(redirected >= 4.0, "{redirected}");
    crate::assert_eventually!(
        app.log().contains("\"POST /form HTTP/1.1\" 308"),
        "{}",
        app.log()
    );
}
