//! TCP echo: weft (with an observer counting every event) against a hand-written tokio
//! echo server, in the same run, on the release build.
//!
//! ```text
//! cargo bench -p weft --bench echo            # full run (about a minute)
//! cargo bench -p weft --bench echo -- quick   # shorter windows
//! cargo bench -p weft --bench echo -- idle    # only the idle-memory figure
//! cargo bench -p weft --bench echo -- loaded  # only the comparison under dashboard load
//! ```
//!
//! Each server runs in its own process pinned to core 0 (`taskset`); the load generator
//! runs in another process pinned to core 1, so the two never share a core. Reported:
//! - echo: 64 connections, each sending 64 bytes and waiting for the echo, for a fixed
//!   window: messages/s, p99 latency, and server CPU time per message (from
//!   `/proc/PID/stat`), so a generator-bound run is not mistaken for a server limit;
//! - churn: connect, send 64 bytes, read the echo, close, 16 at a time: connections/s;
//! - idle: resident memory added per idle connection with 10,000 of them open.
//!
//! Servers: the tokio baseline; weft with no observer; weft with an observer counting
//! every event; and, when `target/release/weft` exists (`cargo build --release -p
//! weft-gateway`), the gateway itself with the whole inspector on (`weft-inspected`:
//! telemetry hub, Prometheus registry, SQLite history, dashboard).
//!
//! Every figure is the median of several alternating rounds; the ratios are weft over
//! tokio measured in the same run.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod dashboard;

const CONNECTIONS: usize = 64;
const MESSAGE: usize = 64;
const CHURN_CONCURRENCY: usize = 16;
const IDLE: usize = 10_000;

// ---------------------------------------------------------------- servers

/// Counts every event the reactor reports.
#[derive(Default)]
struct CountingObserver {
    events: AtomicU64,
    opened: AtomicU64,
    closed: AtomicU64,
}

impl weft::observe::Observer for CountingObserver {
    fn on_event(&self, event: &weft::observe::Event<'_>) {
        self.events.fetch_add(1, Relaxed);
        match event {
            weft::observe::Event::ConnectionOpened(_) => {
                self.opened.fetch_add(1, Relaxed);
            }
            weft::observe::Event::ConnectionClosed(_) => {
                self.closed.fetch_add(1, Relaxed);
            }
            _ => {}
        }
    }
}

struct Echo;

impl weft::Protocol for Echo {
    fn data_received(&mut self, transport: &weft::Transport, data: &[u8]) {
        transport.write(data);
    }
}

fn serve_weft(observed: bool) {
    let reactor = weft::Reactor::new().expect("reactor");
    if observed {
        reactor.set_observer(Arc::new(CountingObserver::default()));
    }
    let port = reactor
        .listen(
            "tcp:0:interface=127.0.0.1:backlog=1024",
            weft::factory(|| Echo),
        )
        .expect("listen")
        .local_addr()
        .expect("port")
        .port();
    println!("{port}");
    reactor.run().expect("run");
}

/// The tokio echo server as its README writes it, on a current-thread runtime.
fn serve_tokio() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap().port());
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0; 1024];
                loop {
                    let n = match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if socket.write_all(&buf[0..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}

// ---------------------------------------------------------------- load

fn load_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Request/response on 64 connections until `deadline`; every round trip's latency in ns.
async fn echo_clients(port: u16, deadline: Instant) -> Vec<u64> {
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        tasks.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            s.set_nodelay(true).unwrap();
            let msg = [b'm'; MESSAGE];
            let mut back = [0u8; MESSAGE];
            let mut latencies = Vec::with_capacity(1 << 16);
            while Instant::now() < deadline {
                let sent = Instant::now();
                s.write_all(&msg).await.unwrap();
                s.read_exact(&mut back).await.unwrap();
                latencies.push(sent.elapsed().as_nanos() as u64);
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    all
}

/// The 99th percentile of sorted latencies, in microseconds.
fn p99_us(sorted: &[u64]) -> u64 {
    sorted.get(sorted.len() * 99 / 100).copied().unwrap_or(0) / 1000
}

/// Request/response on 64 connections; prints `messages p99_us`.
fn load_echo(port: u16, window: Duration) {
    load_runtime().block_on(async move {
        let all = echo_clients(port, Instant::now() + window).await;
        println!("{} {}", all.len(), p99_us(&all));
    });
}

/// Connect, send, read, close, 16 at a time; prints `connections`.
fn load_churn(port: u16, window: Duration) {
    load_runtime().block_on(async move {
        let deadline = Instant::now() + window;
        let done = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..CHURN_CONCURRENCY {
            let done = done.clone();
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .unwrap();
                    s.write_all(&[b'c'; MESSAGE]).await.unwrap();
                    let mut back = [0u8; MESSAGE];
                    s.read_exact(&mut back).await.unwrap();
                    // Reset instead of FIN so thousands of client ports don't sit in TIME_WAIT.
                    s.set_zero_linger().unwrap();
                    drop(s);
                    done.fetch_add(1, Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        println!("{}", done.load(Relaxed));
    });
}

/// Opens 10,000 connections, makes each echo one byte, then holds them idle until stdin closes.
fn load_idle(port: u16) {
    load_runtime().block_on(async move {
        let mut held = Vec::with_capacity(IDLE);
        for _ in 0..IDLE {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            s.write_all(b"i").await.unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.unwrap();
            held.push(s);
        }
        println!("ready");
        let _ = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        })
        .await;
        drop(held);
    });
}

// ---------------------------------------------------------------- orchestration

struct Server {
    child: Child,
    port: u16,
    /// The gateway's dashboard port.
    dashboard: Option<u16>,
    /// The gateway's config and history file, removed on drop.
    _dir: Option<tempfile::TempDir>,
}

/// The `weft` gateway binary next to this benchmark, if it was built
/// (`cargo build --release -p weft-gateway`).
fn gateway_binary() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("weft");
    path.exists().then_some(path)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// The gateway with its inspector on: hub, metrics, history in SQLite, dashboard.
    fn start_gateway(binary: &std::path::Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (port, dashboard) = (free_port(), free_port());
        let config = dir.path().join("weft.toml");
        std::fs::write(
            &config,
            format!(
                "[dashboard]\nlisten = \"tcp:{dashboard}:interface=127.0.0.1\"\n\
                 [store]\npath = \"{}\"\n\
                 [[service]]\nname = \"echo\"\nkind = \"echo\"\n\
                 listen = \"tcp:{port}:interface=127.0.0.1:backlog=1024\"\n\
                 max_connections_per_peer = 0\n",
                dir.path().join("weft.db").display()
            ),
        )
        .unwrap();
        let child = Command::new("taskset")
            .args(["-c", "0"])
            .arg(binary)
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the gateway did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            port,
            dashboard: Some(dashboard),
            _dir: Some(dir),
        }
    }

    fn start(kind: &str) -> Self {
        if kind == "weft-inspected" {
            return Self::start_gateway(&gateway_binary().expect("checked by the caller"));
        }
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new("taskset")
            .args(["-c", "0"])
            .arg(&exe)
            .args(["serve", kind])
            .stdout(Stdio::piped())
            .spawn()
            .expect("taskset (util-linux) is needed to pin processes");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("server port");
        Self {
            child,
            port,
            dashboard: None,
            _dir: None,
        }
    }

    fn proc_field(&self, file: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/{file}", self.child.id())).unwrap()
    }

    /// User plus system CPU time so far.
    fn cpu(&self) -> Duration {
        let stat = self.proc_field("stat");
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
    }

    /// Resident memory in bytes.
    fn rss(&self) -> u64 {
        let status = self.proc_field("status");
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 1024
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn load(args: &[String]) -> String {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("taskset")
        .args(["-c", "1"])
        .arg(&exe)
        .arg("load")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "load generator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[derive(Default, Clone)]
struct Figures {
    msgs_per_s: Vec<f64>,
    p99_us: Vec<f64>,
    cpu_ns_per_msg: Vec<f64>,
    conns_per_s: Vec<f64>,
    idle_bytes: Vec<f64>,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn round(kind: &str, window: Duration, figures: &mut Figures) {
    let server = Server::start(kind);
    let secs = window.as_secs_f64().to_string();
    load(&["echo".into(), server.port.to_string(), "0.3".into()]); // warm up
    let cpu_before = server.cpu();
    let out = load(&["echo".into(), server.port.to_string(), secs.clone()]);
    let cpu = server.cpu() - cpu_before;
    let mut parts = out.split_whitespace();
    let msgs: f64 = parts.next().unwrap().parse().unwrap();
    let p99: f64 = parts.next().unwrap().parse().unwrap();
    figures.msgs_per_s.push(msgs / window.as_secs_f64());
    figures.p99_us.push(p99);
    figures.cpu_ns_per_msg.push(cpu.as_nanos() as f64 / msgs);
    let conns: f64 = load(&["churn".into(), server.port.to_string(), secs])
        .trim()
        .parse()
        .unwrap();
    figures.conns_per_s.push(conns / window.as_secs_f64());
}

fn idle_round(kind: &str, figures: &mut Figures) {
    let server = Server::start(kind);
    // One connection first, so one-time buffers are not charged to the idle ones.
    load(&["echo".into(), server.port.to_string(), "0.2".into()]);
    std::thread::sleep(Duration::from_millis(200));
    let before = server.rss();
    let exe = std::env::current_exe().unwrap();
    let mut holder = Command::new("taskset")
        .args(["-c", "1"])
        .arg(&exe)
        .args(["load", "idle", &server.port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    std::thread::sleep(Duration::from_millis(300));
    let after = server.rss();
    let _ = holder.stdin.take().unwrap().write_all(b"\n");
    let _ = holder.wait();
    figures
        .idle_bytes
        .push(after.saturating_sub(before) as f64 / IDLE as f64);
}

/// The measuring window and the number of rounds.
fn windows(quick: bool) -> (Duration, usize) {
    if quick {
        (Duration::from_secs(1), 3)
    } else {
        (Duration::from_secs(3), 7)
    }
}

fn orchestrate(quick: bool, idle_only: bool) {
    let (window, rounds) = windows(quick);
    let mut kinds = vec!["tokio", "weft", "weft-observed"];
    if gateway_binary().is_some() {
        kinds.push("weft-inspected");
    } else {
        eprintln!(
            "no gateway binary: build it with `cargo build --release -p weft-gateway` to measure weft-inspected"
        );
    }
    let mut figures = vec![Figures::default(); kinds.len()];
    for r in 0..if idle_only { 0 } else { rounds } {
        eprintln!("round {}/{rounds}", r + 1);
        // Rotate the order each round: a server measured right after a churn-heavy one
        // shares the machine with the kernel still tearing those sockets down.
        for k in 0..kinds.len() {
            let i = (k + r) % kinds.len();
            round(kinds[i], window, &mut figures[i]);
        }
    }
    for (i, kind) in kinds.iter().enumerate() {
        idle_round(kind, &mut figures[i]);
    }
    let base = &figures[0];
    println!(
        "\nTCP echo, {CONNECTIONS} connections x {MESSAGE} B request/response; server on core 0, load on core 1"
    );
    println!(
        "medians of {rounds} rounds of {:?}; ratios are against tokio in the same run\n",
        window
    );
    println!(
        "{:<16} {:>12} {:>7} {:>10} {:>7} {:>14} {:>12} {:>7} {:>14}",
        "server",
        "msgs/s",
        "ratio",
        "p99 us",
        "ratio",
        "cpu ns/msg",
        "conns/s",
        "ratio",
        "idle B/conn"
    );
    for (i, kind) in kinds.iter().enumerate() {
        let f = &figures[i];
        println!(
            "{:<16} {:>12.0} {:>7.3} {:>10.0} {:>7.3} {:>14.0} {:>12.0} {:>7.3} {:>14.0}",
            kind,
            median(&f.msgs_per_s),
            median(&f.msgs_per_s) / median(&base.msgs_per_s),
            median(&f.p99_us),
            median(&f.p99_us) / median(&base.p99_us),
            median(&f.cpu_ns_per_msg),
            median(&f.conns_per_s),
            median(&f.conns_per_s) / median(&base.conns_per_s),
            median(&f.idle_bytes),
        );
    }
    let weft = &figures[1];
    println!("\nagainst weft with no observer, same run:");
    for (i, kind) in kinds.iter().enumerate().skip(2) {
        let f = &figures[i];
        println!(
            "{:<16} msgs/s {:>6.3}   p99 {:>6.3}   conns/s {:>6.3}",
            kind,
            median(&f.msgs_per_s) / median(&weft.msgs_per_s),
            median(&f.p99_us) / median(&weft.p99_us),
            median(&f.conns_per_s) / median(&weft.conns_per_s),
        );
    }
    if kinds.contains(&"weft-inspected") && !idle_only {
        dashboard::compare(window, rounds);
    }
    println!(
        "\ntargets: weft-observed msgs/s >= 0.95 of tokio, p99 <= 1.10 of tokio, idle <= 2048 B/conn;\n\
         weft-inspected (gateway: hub, store, dashboard) msgs/s >= 0.95 of weft"
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    match (arg(0), arg(1)) {
        (Some("serve"), Some("weft")) => serve_weft(false),
        (Some("serve"), Some("weft-observed")) => serve_weft(true),
        (Some("serve"), Some("tokio")) => serve_tokio(),
        (Some("load"), Some(mode)) => {
            let port: u16 = args[2].parse().unwrap();
            let window = || Duration::from_secs_f64(args[3].parse().unwrap());
            match mode {
                "echo" => load_echo(port, window()),
                "churn" => load_churn(port, window()),
                "idle" => load_idle(port),
                "loaded" => dashboard::load(port, window(), &args[4..]),
                other => panic!("unknown load mode {other}"),
            }
        }
        _ if args.iter().any(|a| a == "loaded") => {
            assert!(
                gateway_binary().is_some(),
                "build the gateway first: cargo build --release -p weft-gateway"
            );
            let (window, rounds) = windows(args.iter().any(|a| a == "quick"));
            dashboard::compare(window, rounds);
        }
        _ => orchestrate(
            args.iter().any(|a| a == "quick"),
            args.iter().any(|a| a == "idle"),
        ),
    }
}
