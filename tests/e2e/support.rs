//! `spawn_app()`: the `weft` binary with a configuration on free ports, and helpers to
//! talk to it; `dns_service()` (dns.rs) builds the table of a `dns` service.

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use weft_test_support::assert_eventually;
pub use weft_test_support::free_port;

mod dns;
pub use dns::{DnsService, FORWARD_PORTS, dns_service, spawn_dns_app};

/// A directory `www` in `dir` to serve: the gateway's own files (its configuration and
/// history beside it) are in `dir`, which no root may serve.
pub(crate) fn www(dir: &Path) -> PathBuf {
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    www
}

/// The repository's top directory (where `docker-compose.yml` and `deploy/` are).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
}

/// The `weft` binary of this build, built first if needed.
pub fn weft_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // target/<profile>/deps/e2e-HASH -> target/<profile>/weft
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>");
        let target_dir = profile_dir.parent().expect("target dir");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        // The environment of the outer `cargo`, without what it set for this test binary:
        // a build script that watches those (ring's does) would otherwise rebuild, and
        // everything above it, on every run.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            let set_for_tests = [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_TARGET_TMPDIR",
            ]
            .iter()
            .any(|p| key.starts_with(p))
                || key == "CARGO_PRIMARY_PACKAGE";
            if set_for_tests {
                build.env_remove(&*key);
            }
        }
        build.args([
            "build",
            "-q",
            "-p",
            "weft-gateway",
            "--bin",
            "weft",
            "--target-dir",
        ]);
        build.arg(target_dir);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building the weft binary failed");
        profile_dir.join("weft")
    })
}

/// A running `weft run`.
pub struct App {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub dashboard: SocketAddr,
    pub echo: SocketAddr,
}

/// Starts `weft run` with echo on TCP and UDP, the dashboard, and a store in a temp dir;
/// returns once `/readyz` says every service listens.
pub fn spawn_app() -> App {
    spawn_app_with(|_| String::new())
}

/// Like [`spawn_app`], with more of the configuration file: `extra` gets the temp dir
/// (to write files the services read) and returns TOML appended to the file.
pub fn spawn_app_with(extra: impl FnOnce(&Path) -> String) -> App {
    spawn_app_beside_echo(|dir, _| extra(dir))
}

/// Like [`spawn_app_with`]; `extra` also gets the echo service's address, for services
/// that point at it (a proxy in front of it).
pub fn spawn_app_beside_echo(extra: impl FnOnce(&Path, SocketAddr) -> String) -> App {
    spawn(&Setup::default(), extra)
}

/// The `[[service]]` table of a tcp-proxy named `proxy` on loopback `port`, in front of
/// `upstream`.
pub fn proxy_service(port: u16, upstream: SocketAddr) -> String {
    format!(
        r#"
[[service]]
name = "proxy"
kind = "tcp-proxy"
listen = "tcp:{port}:interface=127.0.0.1"
upstream = "tcp:{upstream}"
"#
    )
}

/// Like [`spawn_app_beside_echo`], with the process's open-files limit (soft and hard, so
/// the gateway cannot raise it) set to `nofile`.
pub fn spawn_app_limited(
    nofile: Option<u64>,
    extra: impl FnOnce(&Path, SocketAddr) -> String,
) -> App {
    let setup = Setup {
        nofile: nofile.map(|n| (n, n)),
        ..Setup::default()
    };
    spawn(&setup, extra)
}

/// Like [`spawn_app`], with the open-files limit at `soft` and `hard`.
pub fn spawn_app_with_nofile(soft: u64, hard: u64) -> App {
    let setup = Setup {
        nofile: Some((soft, hard)),
        ..Setup::default()
    };
    spawn(&setup, |_, _| String::new())
}

/// Like [`spawn_app_with`], with `dashboard_keys` (TOML keys) added to the `[dashboard]`
/// table.
pub fn spawn_app_configured(dashboard_keys: &str, extra: impl FnOnce(&Path) -> String) -> App {
    let setup = Setup {
        dashboard_keys,
        ..Setup::default()
    };
    spawn(&setup, |dir, _| extra(dir))
}

/// Like [`spawn_app_with`], with `store_keys` (TOML keys) added to the `[store]` table.
pub fn spawn_app_stored(store_keys: &str, extra: impl FnOnce(&Path) -> String) -> App {
    let setup = Setup {
        store_keys,
        ..Setup::default()
    };
    spawn(&setup, |dir, _| extra(dir))
}

/// Like [`spawn_app`], with history in the PostgreSQL database at `url` (`[store] url`)
/// under the name `instance` (`[gateway] instance`) instead of a file.
pub fn spawn_app_on_postgres(url: &str, instance: &str) -> App {
    let setup = Setup {
        postgres: Some((url, instance)),
        ..Setup::default()
    };
    spawn(&setup, |_, _| String::new())
}

/// Like [`spawn_app`], with no cap on the echo connections one peer holds, for tests that
/// open thousands of them.
pub fn spawn_app_uncapped() -> App {
    let setup = Setup {
        echo_keys: "max_connections_per_peer = 0",
        ..Setup::default()
    };
    spawn(&setup, |_, _| String::new())
}

/// Like [`spawn_app_with`], with `args` after `weft run --config FILE` (such as
/// `--log-format json`).
pub fn spawn_app_args(args: &[&str], extra: impl FnOnce(&Path) -> String) -> App {
    let setup = Setup {
        args,
        ..Setup::default()
    };
    spawn(&setup, |dir, _| extra(dir))
}

/// How a test's gateway differs from the plain one.
#[derive(Clone, Copy, Default)]
struct Setup<'a> {
    /// Arguments after `weft run --config FILE`.
    args: &'a [&'a str],
    /// TOML keys added to the `[dashboard]` table.
    dashboard_keys: &'a str,
    /// TOML keys added to the `[store]` table.
    store_keys: &'a str,
    /// The open-files limit of the process: soft, hard.
    nofile: Option<(u64, u64)>,
    /// TOML keys added to the echo service.
    echo_keys: &'a str,
    /// History in this PostgreSQL database, as this instance, instead of the file.
    postgres: Option<(&'a str, &'a str)>,
}

fn spawn(setup: &Setup<'_>, extra: impl FnOnce(&Path, SocketAddr) -> String) -> App {
    let Setup {
        dashboard_keys,
        store_keys,
        nofile,
        echo_keys,
        args,
        postgres,
    } = *setup;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let (echo, dashboard) = (free_port(), free_port());
    let (store, gateway) = match postgres {
        Some((url, instance)) => (
            format!("url = \"{url}\""),
            format!("[gateway]\ninstance = \"{instance}\"\n"),
        ),
        None => (format!("path = \"{}\"", db.display()), String::new()),
    };
    let config = format!(
        r#"[dashboard]
listen = "tcp:{dashboard}:interface=127.0.0.1"
{dashboard_keys}

[store]
{store}
{store_keys}
{gateway}
[[service]]
name = "echo"
kind = "echo"
listen = ["tcp:{echo}:interface=127.0.0.1", "udp:{echo}:interface=127.0.0.1"]
{echo_keys}
"#
    ) + &extra(dir.path(), ([127, 0, 0, 1], echo).into());
    std::fs::write(dir.path().join("weft.toml"), config).unwrap();
    let child = run_in(dir.path(), nofile, args);
    let app = App {
        child,
        dir,
        db,
        dashboard: ([127, 0, 0, 1], dashboard).into(),
        echo: ([127, 0, 0, 1], echo).into(),
    };
    app.wait_ready();
    app
}

/// `weft run` with `dir`'s `weft.toml` and `args`, logging to `dir/weft.log`; under
/// `prlimit` when the open-files limit is to be set.
fn run_in(dir: &Path, nofile: Option<(u64, u64)>, args: &[&str]) -> Child {
    let mut command = match nofile {
        Some((soft, hard)) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--nofile={soft}:{hard}"))
                .arg("--")
                .arg(weft_bin());
            c
        }
        None => Command::new(weft_bin()),
    };
    command
        .args(["run", "--config"])
        .arg(dir.join("weft.toml"))
        .args(args)
        // E2E_RUST_LOG (e.g. `debug,hyper=info`) makes the log a failing test prints
        // more telling.
        .env(
            "RUST_LOG",
            std::env::var("E2E_RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("weft.log")).unwrap())
        .spawn()
        .expect("weft starts")
}

impl App {
    /// Waits for `/readyz`: every configured service listens.
    fn wait_ready(&self) {
        assert_eventually!(
            self.curl("/readyz").is_some(),
            "weft answers /readyz\n{}",
            self.log()
        );
    }

    /// Starts the same configuration again, on the same history file, once the previous
    /// process has exited. The ports are fresh: the old ones may have been handed to
    /// another test since.
    pub fn restart(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_some(),
            "stop it before restarting"
        );
        let path = self.dir.path().join("weft.toml");
        let mut config = std::fs::read_to_string(&path).unwrap();
        let (echo, dashboard) = (free_port(), free_port());
        for (old, new) in [(self.echo.port(), echo), (self.dashboard.port(), dashboard)] {
            config = config.replace(&format!(":{old}:"), &format!(":{new}:"));
        }
        std::fs::write(&path, config).unwrap();
        self.echo.set_port(echo);
        self.dashboard.set_port(dashboard);
        self.child = run_in(self.dir.path(), None, &[]);
        self.wait_ready();
    }

    /// `curl` on the dashboard; `None` unless it answered 2xx.
    pub fn curl(&self, path: &str) -> Option<String> {
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "5"])
            .arg(format!("http://{}{path}", self.dashboard))
            .output()
            .expect("curl must be installed (scripts/test installs it)");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The value of one sample of `/metrics`, e.g. `weft_connections_opened_total{service="echo",transport="tcp"}`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = self.curl("/metrics")?;
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// What the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weft.log")).unwrap_or_default()
    }

    /// Sends `signal` (e.g. `USR1`).
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} failed");
    }

    /// Sends `signal` (e.g. `TERM`, `KILL`) and waits for the exit, up to 20 s.
    pub fn signal_and_wait(&mut self, signal: &str) -> ExitStatus {
        self.signal(signal);
        self.wait_exit()
    }

    /// Waits for the exit, up to 20 s.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "weft did not exit\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the exit and asserts it was clean and came within `within` of `since`
    /// (when a drain owed nothing more than what the test waited for).
    pub fn exits_cleanly_within(&mut self, since: Instant, within: Duration) {
        let status = self.wait_exit();
        assert!(status.success(), "{status:?}\n{}", self.log());
        assert!(
            since.elapsed() < within,
            "{:?}: the drain waited on nothing else\n{}",
            since.elapsed(),
            self.log()
        );
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `f` against the history file with a fresh SQLite connection.
pub fn query<T>(db: &Path, f: impl AsyncFnOnce(&mut sqlx::SqliteConnection) -> T) -> T {
    use sqlx::{ConnectOptions, Connection};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(db)
            .connect()
            .await
            .expect("the history file opens");
        let out = f(&mut conn).await;
        conn.close().await.ok();
        out
    })
}

/// `PRAGMA integrity_check` of the history file.
pub fn integrity(db: &Path) -> String {
    query(db, async |c| {
        let (r,): (String,) = sqlx::query_as("PRAGMA integrity_check")
            .fetch_one(c)
            .await
            .unwrap();
        r
    })
}

/// An HTTP answer read off a raw socket.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `head` (request line and headers, each line ending in CRLF, without the blank
/// line) and `body` on a fresh connection to `addr`, and reads the answer until the server
/// closes (`Connection: close` is added).
pub fn http(addr: SocketAddr, head: &str, body: &str) -> Reply {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = format!(
        "{head}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

impl App {
    /// `GET path` on the dashboard with `Host: host`.
    pub fn get_as(&self, host: &str, path: &str) -> Reply {
        http(
            self.dashboard,
            &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n"),
            "",
        )
    }

    /// `GET path` on the dashboard with its own address as `Host`.
    pub fn get(&self, path: &str) -> Reply {
        self.get_as(&self.dashboard.to_string(), path)
    }

    /// The dashboard's close action on connection `id`, as its own pages send it.
    pub fn close_from_dashboard(&self, id: u64) -> Reply {
        let host = self.dashboard.to_string();
        http(
            self.dashboard,
            &format!(
                "POST /api/connections/{id}/close HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n"
            ),
            "",
        )
    }

    /// The sockets the process holds open now.
    pub fn sockets(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .unwrap()
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().starts_with("socket:"))
            .count()
    }

    /// The process's resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }
}

/// Holds the history file under an exclusive transaction on another connection until
/// dropped, as a second process (`sqlite3 weft.db 'BEGIN EXCLUSIVE;'`) would.
pub struct Locked {
    release: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Locked {
    pub fn hold(db: &Path) -> Locked {
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let db = db.to_owned();
        let thread = std::thread::spawn(move || {
            query(&db, async move |c| {
                // The gateway commits about once a second; wait out its lock.
                sqlx::query("PRAGMA busy_timeout = 10000")
                    .execute(&mut *c)
                    .await
                    .unwrap();
                sqlx::query("BEGIN EXCLUSIVE")
                    .execute(&mut *c)
                    .await
                    .unwrap();
                locked_tx.send(()).unwrap();
                let _ = release_rx.recv();
                sqlx::query("ROLLBACK").execute(&mut *c).await.unwrap();
            });
        });
        locked_rx.recv().expect("the lock is taken");
        Locked {
            release: Some(release),
            thread: Some(thread),
        }
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Held by every test that runs the built-in demo's parts on their fixed loopback ports
/// (the bare demo, `[demo] traffic = true`), so no two of them run at once.
pub fn demo_ports() -> std::sync::MutexGuard<'static, ()> {
    static PORTS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    PORTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `weft ARGS...`, a `check` of a file, run to its end. `check` tries the ports the file
/// listens on, so it holds [`demo_ports`]: a file on the demo's ports (the dashboard's
/// default 9180 among them) would otherwise be refused while a demo holds them.
pub(crate) fn weft_check<I, S>(args: I) -> std::process::Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let _ports = demo_ports();
    std::process::Command::new(weft_bin())
        .arg("check")
        .args(args)
        .output()
        .unwrap()
}

/// A connection to the echo service at `addr` that has echoed one line; still open.
pub(crate) fn echo_once(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"ping\n").unwrap();
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping\n");
    s
}
