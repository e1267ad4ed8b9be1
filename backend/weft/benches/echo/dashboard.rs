//! The echo load beside the inspector's own load: paced connection churn making about
//! 10,000 events a second, and 20 live `/ws` clients on the gateway's dashboard. The
//! same client load runs against weft with no observer (where the churn makes no events
//! and there is no dashboard), so the ratio is what the inspector costs the service.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::{MESSAGE, Server, echo_clients, load_runtime, median, p99_us};

const WS_CLIENTS: usize = 20;
/// Connections opened and closed per second; each makes two events.
const CHURN_PER_S: u64 = 5_000;

/// Load-generator side: echo, paced churn and, when `rest[0]` names a dashboard port,
/// 20 `/ws` clients; prints `messages p99_us churned ws_events`.
pub(crate) fn load(port: u16, window: Duration, rest: &[String]) {
    let ws_port: u16 = rest.first().and_then(|p| p.parse().ok()).unwrap_or(0);
    load_runtime().block_on(async move {
        let deadline = Instant::now() + window;
        let ws_events = Arc::new(AtomicU64::new(0));
        let mut watchers = Vec::new();
        if ws_port != 0 {
            for _ in 0..WS_CLIENTS {
                watchers.push(tokio::spawn(watch(ws_port, deadline, ws_events.clone())));
            }
        }
        let churned = Arc::new(AtomicU64::new(0));
        let churn = tokio::spawn(churn(port, deadline, churned.clone()));
        let latencies = echo_clients(port, deadline).await;
        churn.await.unwrap();
        for w in watchers {
            w.await.unwrap();
        }
        println!(
            "{} {} {} {}",
            latencies.len(),
            p99_us(&latencies),
            churned.load(Relaxed),
            ws_events.load(Relaxed)
        );
    });
}

/// Opens and closes `CHURN_PER_S` connections a second, each echoing one message.
async fn churn(port: u16, deadline: Instant, done: Arc<AtomicU64>) {
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while Instant::now() < deadline {
        tick.tick().await;
        for _ in 0..CHURN_PER_S / 1000 {
            let done = done.clone();
            tokio::spawn(async move {
                let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                    return;
                };
                let mut back = [0u8; MESSAGE];
                if s.write_all(&[b'c'; MESSAGE]).await.is_ok()
                    && s.read_exact(&mut back).await.is_ok()
                {
                    done.fetch_add(1, Relaxed);
                }
                // Reset instead of FIN so client ports don't pile up in TIME_WAIT.
                let _ = s.set_zero_linger();
            });
        }
    }
}

/// One dashboard client: counts the connection events the live feed delivers.
async fn watch(port: u16, deadline: Instant, events: Arc<AtomicU64>) {
    let mut request = format!("ws://127.0.0.1:{port}/ws")
        .into_client_request()
        .unwrap();
    // The dashboard takes /ws only from its own pages.
    let origin = format!("http://127.0.0.1:{port}").parse().unwrap();
    request.headers_mut().insert("origin", origin);
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the dashboard accepts a /ws client");
    let remaining = deadline.saturating_duration_since(Instant::now());
    let _ = tokio::time::timeout(remaining, async {
        while let Some(Ok(message)) = ws.next().await {
            if let Ok(text) = message.to_text() {
                let n = text.matches("\"type\":\"connection_").count() as u64;
                events.fetch_add(n, Relaxed);
            }
        }
    })
    .await;
}

/// Runs the loaded comparison and prints it. Rounds here vary far more than the plain
/// echo rounds (connection churn, twenty browsers' worth of sockets), so this runs three
/// times as many, each a pair of back-to-back runs.
pub(crate) fn compare(window: Duration, rounds: usize) {
    let rounds = 3 * rounds;
    let secs = window.as_secs_f64();
    let mut plain = (Vec::new(), Vec::new());
    let mut inspected = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        eprintln!("loaded round {}/{rounds}", r + 1);
        let order = if r % 2 == 0 {
            ["weft", "weft-inspected"]
        } else {
            ["weft-inspected", "weft"]
        };
        for kind in order {
            let server = Server::start(kind);
            let ws = server.dashboard.unwrap_or(0);
            let out = super::load(&[
                "loaded".into(),
                server.port.to_string(),
                secs.to_string(),
                ws.to_string(),
            ]);
            let f: Vec<f64> = out.split_whitespace().map(|v| v.parse().unwrap()).collect();
            if kind == "weft" {
                plain.0.push(f[0] / secs);
                plain.1.push(f[2] / secs);
            } else {
                inspected.0.push(f[0] / secs);
                inspected.1.push(f[2] / secs);
                inspected.2.push(f[3] / secs / WS_CLIENTS as f64);
                inspected.3.push(f[1]);
            }
        }
    }
    println!(
        "\nunder dashboard load: churn paced at {CHURN_PER_S} connections/s (two events each), \
         {WS_CLIENTS} /ws clients on the gateway; medians of {rounds} rounds of {window:?}"
    );
    println!(
        "  weft, no observer:  {:>9.0} msgs/s, churn {:>6.0} conns/s",
        median(&plain.0),
        median(&plain.1)
    );
    println!(
        "  weft-inspected:     {:>9.0} msgs/s, churn {:>6.0} conns/s = {:>6.0} events/s, \
         each /ws client received {:>6.0} connection events/s, p99 {:.0} us",
        median(&inspected.0),
        median(&inspected.1),
        2.0 * median(&inspected.1),
        median(&inspected.2),
        median(&inspected.3),
    );
    // The machine is shared and drifts over a run: each round's two servers ran back to
    // back, so the ratio within a round is the steadier figure.
    let paired: Vec<f64> = inspected
        .0
        .iter()
        .zip(&plain.0)
        .map(|(i, p)| i / p)
        .collect();
    println!(
        "  echo ratio, inspected under load / no observer under the same load: {:.3} \
         (median of per-round ratios; {:.3} as a ratio of medians; target >= 0.95)",
        median(&paired),
        median(&inspected.0) / median(&plain.0)
    );
}
