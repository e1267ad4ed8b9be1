//! `deploy/weft.service`: systemd's own checker accepts it, and the command it runs tells
//! systemd `READY=1` only once every service accepts (the moment `/readyz` says ready),
//! then `STOPPING=1` at SIGTERM.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{free_port, repo_root, weft_bin};

/// `deploy/weft.service`: its text and the values of each `[Service]` key.
struct Unit {
    text: String,
    service: Vec<(String, String)>,
}

fn unit() -> Unit {
    let text = std::fs::read_to_string(repo_root().join("deploy/weft.service")).unwrap();
    let mut section = "";
    let mut service = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[') {
            section = name.trim_end_matches(']');
        } else if section == "Service" {
            let (key, value) = line.split_once('=').unwrap();
            service.push((key.to_owned(), value.to_owned()));
        }
    }
    Unit { text, service }
}

impl Unit {
    fn get(&self, key: &str) -> &str {
        self.service
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("weft.service sets no {key}"))
    }

    /// `ExecStart`'s words, with the binary of this build and `config` in place of the
    /// installed ones.
    fn exec_start(&self, config: &Path) -> Vec<String> {
        let words: Vec<&str> = self.get("ExecStart").split_whitespace().collect();
        let config_at = words.iter().position(|w| *w == "--config").unwrap() + 1;
        words
            .iter()
            .enumerate()
            .map(|(i, w)| match i {
                0 => weft_bin().display().to_string(),
                i if i == config_at => config.display().to_string(),
                _ => (*w).to_owned(),
            })
            .collect()
    }
}

#[test]
fn the_unit_passes_systemd_analyze_verify_and_keeps_history_where_it_may_write() {
    let unit = unit();
    assert_eq!(unit.get("Type"), "notify");
    assert_eq!(unit.get("ExecReload"), "/bin/kill -HUP $MAINPID");
    // ProtectSystem=strict leaves only the StateDirectory writable: the history file of
    // the configuration the unit runs must be there.
    assert_eq!(unit.get("ProtectSystem"), "strict");
    let state = format!("/var/lib/{}/", unit.get("StateDirectory"));
    let config: toml::Table = std::fs::read_to_string(repo_root().join("deploy/weft.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let db = config["store"]["path"].as_str().unwrap();
    assert!(db.starts_with(&state), "{db} is not under {state}");

    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("note: systemd-analyze is not installed; weft.service not verified by it");
        return;
    };
    eprintln!(
        "{}",
        String::from_utf8_lossy(&version.stdout)
            .lines()
            .next()
            .unwrap_or_default()
    );
    // The same unit, starting the binary of this build (verify checks it is executable).
    let dir = tempfile::tempdir().unwrap();
    let installed = unit.get("ExecStart").split_whitespace().next().unwrap();
    let copy = dir.path().join("weft.service");
    let text = unit
        .text
        .replace(installed, &weft_bin().display().to_string());
    std::fs::write(&copy, text).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    // Unknown keys and bad values are only warnings to systemd: any word from it fails.
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {}\n{said}",
        out.status
    );
}

/// Kills the process when the test ends, passed or not (waking it first if stopped).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        signal(&self.0, "CONT");
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status();
}

/// The next datagram on `socket`, waiting up to `secs`.
fn next_message(socket: &UnixDatagram, secs: u64) -> Option<String> {
    socket
        .set_read_timeout(Some(Duration::from_secs(secs)))
        .unwrap();
    let mut buf = [0; 4096];
    let n = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn ready_is_sent_once_every_service_accepts_and_stopping_at_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (echo, discard, dashboard) = (free_port(), free_port(), free_port());
    let config = dir.path().join("weft.toml");
    std::fs::write(
        &config,
        format!(
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
        ),
    )
    .unwrap();
    let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let (echo, discard, dashboard) = (at(echo), at(discard), at(dashboard));
    let notify_path = dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();

    let command = unit().exec_start(&config);
    let log = dir.path().join("weft.log");
    let started = Instant::now();
    let mut weft = Running(
        Command::new(&command[0])
            .args(&command[1..])
            .env("NOTIFY_SOCKET", &notify_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let said = || std::fs::read_to_string(&log).unwrap_or_default();

    let ready = next_message(&notify, 20).unwrap_or_else(|| panic!("no message\n{}", said()));
    // Frozen the moment READY arrives, the process can bind nothing more: whatever
    // accepts now was listening when it said READY.
    signal(&weft.0, "STOP");
    let took = started.elapsed();
    assert!(ready.starts_with("READY=1\n"), "first message: {ready:?}");
    let mut tcp_echo = TcpStream::connect_timeout(&echo, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("echo TCP at READY: {e}"));
    tcp_echo.write_all(b"ready?").unwrap();
    let udp_echo = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp_echo.connect(echo).unwrap();
    udp_echo.send(b"ready?").unwrap();
    TcpStream::connect_timeout(&discard, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("discard at READY: {e}"));
    let mut readyz = TcpStream::connect_timeout(&dashboard, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("dashboard at READY: {e}"));
    write!(
        readyz,
        "GET /readyz HTTP/1.1\r\nHost: {dashboard}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    signal(&weft.0, "CONT");

    // Woken, each answers what was sent while it was frozen.
    let mut buf = [0; 6];
    tcp_echo
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    tcp_echo.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ready?");
    udp_echo
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let n = udp_echo
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("UDP echo bound at READY: {e}"));
    assert_eq!(&buf[..n], b"ready?");
    let mut answer = String::new();
    readyz
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    readyz.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "/readyz agrees with READY=1: {answer}"
    );
    eprintln!("READY=1 {took:?} after start");

    signal(&weft.0, "TERM");
    let stopping =
        next_message(&notify, 10).unwrap_or_else(|| panic!("no message after SIGTERM\n{}", said()));
    assert!(stopping.starts_with("STOPPING=1\n"), "{stopping:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = weft.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "weft did not exit\n{}", said());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}\n{}", said());
    notify.set_nonblocking(true).unwrap();
    let mut rest = [0; 4096];
    let more = notify
        .recv(&mut rest)
        .map(|n| String::from_utf8_lossy(&rest[..n]).into_owned());
    assert!(
        more.is_err(),
        "nothing more than READY and STOPPING: {more:?}"
    );
}
