//! The README's tour: its first screen shows the dashboard and says to `cargo run
//! --release`, which the image runs too, and its pictures are small.
//!
//! The pictures: the built-in demo in headless Chromium, photographed once it has run
//! long enough for the sparklines to have a shape. Ignored (it takes a minute, and its
//! product is pictures); `scripts/screenshots` runs it and copies them to `docs/`:
//!
//! ```text
//! cargo test -p weft-e2e --test e2e tour -- --ignored --nocapture
//! ```
//!
//! `WEFT_TOUR_WARMUP` (seconds, default 45) sets how long the demo runs first.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use crate::chrome::{Browser, artifacts};
use crate::demo::{BareDemo, DASHBOARD, curl, wait_for};
use crate::support::demo_ports;

const LIVE: &str = "return document.getElementById('live-state').textContent === 'live'";

/// A chain of the demo's traffic that is stalled and still waiting: its id.
fn stalled_and_waiting() -> Option<u64> {
    let body = curl(&format!(
        "http://{DASHBOARD}/api/deferreds?state=stalled&limit=50"
    ))?;
    let v: Value = serde_json::from_str(&body).ok()?;
    v["items"].as_array()?.iter().find_map(|d| {
        let waiting = d["state"] == "pending" || d["state"] == "waiting";
        (d["label"] == "demo GET /api/slow" && waiting)
            .then(|| d["id"].as_u64())
            .flatten()
    })
}

#[test]
#[ignore = "takes pictures for the README: scripts/screenshots"]
fn tour_screenshots_of_the_demo() {
    let _ports = demo_ports();
    let demo = BareDemo::spawn();
    let warmup = std::env::var("WEFT_TOUR_WARMUP")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(45);
    std::thread::sleep(Duration::from_secs(warmup));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(photograph());
    drop(demo);
    println!("tour: screenshots in {}", artifacts().display());
}

async fn photograph() {
    let dashboard: SocketAddr = DASHBOARD.parse().unwrap();
    let b = Browser::start().await;

    b.open(dashboard, "/").await;
    b.until(10, "the overview is live", LIVE).await;
    b.until(
        10,
        "every service has a card",
        "return document.querySelectorAll('#services article[data-service]').length >= 8",
    )
    .await;
    // Let a render or two of live figures land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    b.screenshot("tour-overview").await;

    b.open(dashboard, "/connections?state=open").await;
    b.until(10, "the connections page is live", LIVE).await;
    b.until(
        10,
        "open connections are listed",
        "return document.querySelectorAll('#connections tbody tr[data-id]').length >= 6",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    b.screenshot("tour-connections").await;

    // A stalled chain while it still waits: the waterfall shows where.
    let id = tokio::task::spawn_blocking(move || {
        wait_for(
            45,
            "a slow request's chain is stalled and still waiting",
            stalled_and_waiting,
            String::new,
        )
    })
    .await
    .unwrap();
    b.open(dashboard, &format!("/deferreds/{id}")).await;
    b.until(
        5,
        "the waterfall shows the step it waits at",
        "return !!document.getElementById('waiting-at') && !!document.querySelector('.waterfall tr[aria-current=\"step\"]')",
    )
    .await;
    b.screenshot("tour-deferred").await;
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

/// `cargo run --release` from the root runs the gateway with no arguments, the demo; the
/// README's first command says so, the image runs the same, and the README's pictures
/// are there and small.
#[test]
fn the_readme_and_the_image_run_what_cargo_run_runs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();
    let workspace = read("Cargo.toml");
    assert!(
        workspace.contains(r#"default-members = ["backend/weft-gateway"]"#),
        "cargo run builds the gateway"
    );
    let gateway = read("backend/weft-gateway/Cargo.toml");
    assert_eq!(gateway.matches("[[bin]]").count(), 1, "one binary to run");

    let docker = read("Dockerfile");
    let last_stage = &docker[docker.rfind("FROM ").unwrap()..];
    assert!(
        last_stage.contains(r#"ENTRYPOINT ["weft"]"#),
        "{last_stage}"
    );
    assert!(
        !last_stage.lines().any(|l| l.starts_with("CMD")),
        "the image runs `weft` with no arguments, as `cargo run` does: {last_stage}"
    );

    let readme = read("README.md");
    let commands = &readme[readme.find("## Two commands").unwrap()..];
    let commands = &commands[..commands[3..].find("\n## ").unwrap()];
    assert!(
        commands.contains("\n    cargo run --release\n"),
        "{commands}"
    );
    assert!(commands.contains("demo"), "{commands}");
    let first_screen = &readme[..readme.find("## Two commands").unwrap()];
    assert!(
        first_screen.contains("](docs/"),
        "a picture before the commands"
    );
    let (mut count, mut total) = (0, 0);
    for (i, _) in readme.match_indices("](docs/") {
        let path = &readme[i + 2..i + 2 + readme[i + 2..].find(')').unwrap()];
        let size = std::fs::metadata(root.join(path))
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .len();
        // A picture a reader downloads with the page: small enough for a slow link.
        assert!(size < 150 * 1024, "{path} takes {size} bytes");
        count += 1;
        total += size;
    }
    assert!(count >= 3, "overview, connections and a stalled Deferred");
    assert!(total < 400 * 1024, "the pictures take {total} bytes");
}
