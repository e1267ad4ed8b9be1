//! `/readyz` from the first moment the process runs: never ready before every service
//! listens and is listed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{free_port, weft_bin};

/// `GET path` on `addr`: the status code and the body, or `None` if nothing answers.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}

fn echo_tcp(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0; 5];
    s.write_all(b"ready").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"ready"
}

fn echo_udp(addr: SocketAddr) -> bool {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0; 16];
    socket.send_to(b"ready", addr).is_ok()
        && socket
            .recv_from(&mut buf)
            .is_ok_and(|(n, _)| &buf[..n] == b"ready")
}

/// Kills the process when the test ends, passed or not.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn readyz_says_ready_only_once_every_service_listens_and_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let (echo, discard, dashboard) = (free_port(), free_port(), free_port());
    let config = format!(
        r#"[dashboard]
listen = "tcp:{dashboard}:interface=127.0.0.1"

[store]
path = "{db}"

[[service]]
name = "echo"
kind = "echo"
listen = ["tcp:{echo}:interface=127.0.0.1", "udp:{echo}:interface=127.0.0.1"]

[[service]]
name = "discard"
kind = "discard"
listen = "tcp:{discard}:interface=127.0.0.1"
"#,
        db = dir.path().join("history.db").display()
    );
    std::fs::write(dir.path().join("weft.toml"), config).unwrap();
    let dashboard: SocketAddr = ([127, 0, 0, 1], dashboard).into();
    let (echo, discard): (SocketAddr, SocketAddr) = (
        ([127, 0, 0, 1], echo).into(),
        ([127, 0, 0, 1], discard).into(),
    );
    let _weft = Running(
        Command::new(weft_bin())
            .args(["run", "--config"])
            .arg(dir.path().join("weft.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Poll from the first instant: whatever answers before ready must say why not.
    let start = Instant::now();
    let mut not_ready = Vec::new();
    let ready = loop {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never ready; answers before: {not_ready:?}"
        );
        match get(dashboard, "/readyz") {
            Some((200, body)) => break body,
            Some((503, body)) => {
                let report: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(report["ready"], false, "{report}");
                not_ready.push(report);
            }
            Some(other) => panic!("/readyz answered {other:?}"),
            None => {}
        }
        std::thread::sleep(Duration::from_millis(2));
    };

    // At the moment it says ready, every service is listed and answers.
    let services = get(dashboard, "/api/services").unwrap();
    assert_eq!(services.0, 200);
    let services: Value = serde_json::from_str(&services.1).unwrap();
    let kinds: Vec<(&str, &str, usize)> = services
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap(),
                s["kind"].as_str().unwrap(),
                s["endpoints"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("discard", "discard", 1), ("echo", "echo", 2)],
        "{ready}"
    );
    assert!(echo_tcp(echo), "echo over TCP answers once ready");
    assert!(echo_udp(echo), "echo over UDP answers once ready");
    assert!(
        TcpStream::connect(discard).is_ok(),
        "discard accepts once ready"
    );
    let report: Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(report["status"], "ready");
    assert_eq!(report["missing"], serde_json::json!([]));
    for report in &not_ready {
        assert!(
            report["status"] == "starting",
            "before ready it is starting: {report}"
        );
    }
    // /healthz stays what it was: the process is alive.
    assert_eq!(get(dashboard, "/healthz").map(|(code, _)| code), Some(200));
}
