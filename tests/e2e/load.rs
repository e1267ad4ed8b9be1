//! The inspector under load: echo throughput with the gateway's hub, history and 20 live
//! `/ws` clients while connection churn makes about 10,000 events a second, against weft
//! with no observer under the same load. Slow and machine-bound, so it only runs when asked:
//!
//! ```text
//! cargo test --release -p weft-e2e --test e2e dashboard_load -- --ignored --nocapture
//! ```
//!
//! The baseline server is the echo benchmark's `serve weft` mode (no observer at all).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::spawn_app;

const ECHO_CONNECTIONS: usize = 64;
const MESSAGE: usize = 64;
const WS_CLIENTS: usize = 20;
/// Connections opened and closed per second: two events each.
const CHURN_PER_S: u64 = 5_000;
/// Threads opening and closing connections.
const CHURN_THREADS: usize = 4;
const WINDOW: Duration = Duration::from_secs(5);
const ROUNDS: usize = 3;

/// The echo benchmark's executable, built in this profile.
fn echo_bench() -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(std::path::Path::parent).unwrap();
    let mut cmd = Command::new(cargo);
    cmd.args([
        "bench",
        "-p",
        "weft",
        "--bench",
        "echo",
        "--no-run",
        "--message-format=json",
    ]);
    cmd.arg("--target-dir").arg(profile_dir.parent().unwrap());
    let out = cmd.stderr(Stdio::null()).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|m| m["executable"].as_str().map(str::to_owned))
        .expect("the echo benchmark builds")
}

struct Baseline(Child, u16);

impl Baseline {
    fn start(bench: &str) -> Self {
        let mut child = Command::new(bench)
            .args(["serve", "weft"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        Baseline(child, line.trim().parse().unwrap())
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Echo messages per second over `WINDOW`, and the churn reached beside it (connections/s).
async fn echo_rate(addr: SocketAddr) -> (f64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    // Several threads, so one slow connect does not hold the rate down.
    let churn: Vec<_> = (0..CHURN_THREADS)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let per_thread = CHURN_PER_S as f64 / CHURN_THREADS as f64;
                let start = Instant::now();
                let mut n = 0u64;
                while !stop.load(Relaxed) {
                    let due = start + Duration::from_secs_f64(n as f64 / per_thread);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    drop(std::net::TcpStream::connect(addr));
                    n += 1;
                }
                n as f64 / start.elapsed().as_secs_f64()
            })
        })
        .collect();
    let mut tasks = Vec::new();
    for _ in 0..ECHO_CONNECTIONS {
        let (stop, count) = (stop.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            let (msg, mut buf) = ([7u8; MESSAGE], [0u8; MESSAGE]);
            while !stop.load(Relaxed) {
                s.write_all(&msg).await.unwrap();
                s.read_exact(&mut buf).await.unwrap();
                count.fetch_add(1, Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (before, start) = (count.load(Relaxed), Instant::now());
    tokio::time::sleep(WINDOW).await;
    let rate = (count.load(Relaxed) - before) as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let churned: f64 = churn.into_iter().map(|t| t.join().unwrap()).sum();
    (rate, churned)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
#[ignore = "a load measurement: run with --ignored --release"]
fn dashboard_load() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(load());
}

async fn load() {
    let bench = echo_bench();
    let app = spawn_app();
    // Twenty live clients reading everything, counting the events they are sent.
    let events = Arc::new(AtomicU64::new(0));
    let lagged = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..WS_CLIENTS {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", app.dashboard))
            .await
            .unwrap();
        let (events, lagged) = (events.clone(), lagged.clone());
        clients.push(tokio::spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                let Ok(text) = m.to_text() else { continue };
                let v: serde_json::Value = serde_json::from_str(text).unwrap();
                match v["type"].as_str() {
                    Some("events") => {
                        events.fetch_add(v["events"].as_array().unwrap().len() as u64, Relaxed);
                    }
                    Some("lagged") => {
                        lagged.fetch_add(v["missed"].as_u64().unwrap(), Relaxed);
                    }
                    _ => {}
                }
            }
        }));
    }
    let (mut base, mut inspected, mut per_client) = (Vec::new(), Vec::new(), Vec::new());
    let mut churn_rates = Vec::new();
    for _ in 0..ROUNDS {
        let server = Baseline::start(&bench);
        base.push(echo_rate(([127, 0, 0, 1], server.1).into()).await.0);
        drop(server);
        let (before, start) = (events.load(Relaxed), Instant::now());
        let (rate, churned) = echo_rate(app.echo).await;
        inspected.push(rate);
        churn_rates.push(churned);
        per_client.push(
            (events.load(Relaxed) - before) as f64
                / WS_CLIENTS as f64
                / start.elapsed().as_secs_f64(),
        );
    }
    let (base, inspected, rate) = (median(base), median(inspected), median(per_client));
    let churned = median(churn_rates);
    let ratio = inspected / base;
    println!(
        "load: echo {ECHO_CONNECTIONS} conns x {MESSAGE} B with {CHURN_PER_S} conns/s churn; \
         churn reached {churned:.0} conns/s; weft without observer {base:.0} msgs/s; gateway with hub, history and {WS_CLIENTS} /ws clients \
         {inspected:.0} msgs/s; ratio {ratio:.3}; each client received {rate:.0} events/s \
         ({} missed and resynced)",
        lagged.load(Relaxed)
    );
    for c in clients {
        c.abort();
    }
    assert!(
        ratio >= 0.95,
        "echo throughput fell to {ratio:.3} of observer-off"
    );
}
