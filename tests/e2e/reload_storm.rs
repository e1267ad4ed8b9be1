//! A reload racing with traffic: clients connect to a service as fast as they can while
//! the service is replaced again and again. Every connect must either be refused before
//! it is accepted or be served; none may be reset after it was accepted.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::assert_eventually;
use crate::support::{free_port, spawn_app_with};

/// What the clients saw.
#[derive(Default)]
struct Tally {
    served: AtomicUsize,
    /// Connects the kernel refused: no connection was ever accepted.
    refused: AtomicUsize,
    /// Connections that were accepted and then reset or closed unanswered.
    lost: AtomicUsize,
}

/// Connects, sends a few bytes and reads them back, until `stop`.
fn client(
    addr: SocketAddr,
    stop: &AtomicBool,
    tally: &Tally,
    errors: &std::sync::Mutex<Vec<String>>,
) {
    while !stop.load(Ordering::Relaxed) {
        let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => s,
            Err(_) => {
                tally.refused.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0; 8];
        match s
            .write_all(b"12345678")
            .and_then(|()| s.read_exact(&mut buf))
        {
            Ok(()) if &buf == b"12345678" => {
                tally.served.fetch_add(1, Ordering::Relaxed);
            }
            outcome => {
                tally.lost.fetch_add(1, Ordering::Relaxed);
                let kind = outcome.err().map_or(ErrorKind::InvalidData, |e| e.kind());
                errors.lock().unwrap().push(format!("{kind:?}"));
            }
        }
    }
}

#[test]
fn a_connection_storm_during_reloads_of_its_service_loses_no_accepted_connection() {
    let port = free_port();
    let app = spawn_app_with(|_| {
        format!(
            "\n[[service]]\nname = \"storm\"\nkind = \"echo\"\n\
             listen = \"tcp:{port}:interface=127.0.0.1\"\nidle_timeout = \"60s\"\n\
             max_connections_per_peer = 0\n"
        )
    });
    assert_eventually!(app.get("/readyz").status == 200, "ready\n{}", app.log());
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let (stop, tally, errors) = (stop.clone(), tally.clone(), errors.clone());
            std::thread::spawn(move || client(addr, &stop, &tally, &errors))
        })
        .collect();
    assert_eventually!(
        tally.served.load(Ordering::Relaxed) > 100,
        "the storm is under way"
    );

    const RELOADS: u32 = 20;
    let mut served_during = Vec::new();
    for i in 1..=RELOADS {
        let before = tally.served.load(Ordering::Relaxed);
        // Each reload changes the service, so each replaces it.
        app.edit_config(|text| {
            let old = format!("idle_timeout = \"{}s\"", 60 + i - 1);
            let new = format!("idle_timeout = \"{}s\"", 60 + i);
            assert!(text.contains(&old));
            text.replace(&old, &new)
        });
        app.reload_by_signal("ok");
        served_during.push(tally.served.load(Ordering::Relaxed) - before);
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let (served, refused, lost) = (
        tally.served.load(Ordering::Relaxed),
        tally.refused.load(Ordering::Relaxed),
        tally.lost.load(Ordering::Relaxed),
    );
    println!("served {served}, refused {refused}, lost {lost}; per reload {served_during:?}");
    assert_eq!(
        lost,
        0,
        "accepted connections lost: {:?}\n{}",
        errors.lock().unwrap(),
        app.log()
    );
    assert_eq!(refused, 0, "the socket never closed");
    assert!(
        served_during.iter().all(|&n| n > 0),
        "served through every reload: {served_during:?}"
    );
    let service = app.service("storm").unwrap();
    assert_eq!(
        service["config"]["idle_timeout_ms"],
        u64::from(60 + RELOADS) * 1000,
        "{service}"
    );
    assert_eq!(app.reloads("ok"), Some(f64::from(RELOADS)));
}
