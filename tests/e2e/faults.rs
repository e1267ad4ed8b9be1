//! The history file made unwritable while the gateway runs: services go on, the error is
//! counted on /metrics, and writing resumes once the file is writable again.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;

use crate::assert_eventually;
use crate::support::{App, spawn_app};

/// Sets or clears the immutable attribute: tests run as root, and root ignores permission
/// bits but not this.
fn chattr(flag: &str, paths: &[PathBuf]) {
    let out = Command::new("chattr")
        .arg(flag)
        .args(paths)
        .output()
        .expect("chattr runs");
    assert!(
        out.status.success(),
        "chattr {flag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Clears the attribute even when an assertion fails, so the temp dir can be removed.
struct Mutable(Vec<PathBuf>);

impl Drop for Mutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").args(&self.0).status();
    }
}

fn echo(addr: std::net::SocketAddr) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"ping").unwrap();
    let mut buf = [0; 4];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
}

#[test]
fn an_unwritable_history_file_is_counted_and_echo_keeps_working() {
    let app = spawn_app();
    echo(app.echo);
    assert_eventually!(
        app.metric("weft_store_records_written_total")
            .unwrap_or(0.0)
            > 0.0,
        "history is written"
    );
    let mut wal = app.db.clone().into_os_string();
    wal.push("-wal");
    let files = vec![app.db.clone(), PathBuf::from(wal)];
    chattr("+i", &files);
    let guard = Mutable(files);

    assert_eventually!(
        {
            echo(app.echo);
            app.metric("weft_store_write_errors_total").unwrap_or(0.0) > 0.0
        },
        "the write error is counted\n{}",
        app.log()
    );
    assert!(app.metric("weft_store_events_dropped_total").unwrap() > 0.0);
    let written = app.metric("weft_store_records_written_total").unwrap();
    // The process is alive, and /healthz says since when history is not being kept.
    let failing = |app: &App| {
        let health: serde_json::Value = serde_json::from_str(&app.get("/healthz").body).unwrap();
        assert_eq!(health["status"], "ok");
        health["store"]["failing_since_ms"].as_u64()
    };
    assert_eventually!(failing(&app).is_some(), "failing, on /healthz");

    drop(guard);
    assert_eventually!(
        {
            echo(app.echo);
            app.metric("weft_store_records_written_total").unwrap() > written
        },
        "writing resumes\n{}",
        app.log()
    );
    assert_eventually!(failing(&app).is_none(), "no longer failing, on /healthz");
}
