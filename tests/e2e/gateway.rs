//! The gateway serving, measured, stopped: what an operator sees.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use crate::assert_eventually;
use crate::support::{integrity, query, spawn_app};

/// service, transport, closed_at_ms, bytes_in, bytes_out, close_reason
type Row = (String, String, Option<i64>, i64, i64, Option<String>);

fn echo_tcp(addr: std::net::SocketAddr, payload: &[u8]) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(payload).unwrap();
    let mut buf = vec![0; payload.len()];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(buf, payload);
}

#[test]
fn echo_metrics_health_then_sigterm_exits_zero_with_history_flushed() {
    let mut app = spawn_app();
    echo_tcp(app.echo, b"hello, weft\n");
    echo_tcp(app.echo, b"again\n");
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    udp.send_to(b"datagram", app.echo).unwrap();
    let mut buf = [0; 64];
    let (n, _) = udp.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"datagram");

    let tcp = r#"{service="echo",transport="tcp"}"#;
    let udp_labels = r#"{service="echo",transport="udp"}"#;
    assert_eventually!(
        app.metric(
            r#"weft_connections_closed_total{reason="peer_closed",service="echo",transport="tcp"}"#
        ) == Some(2.0),
        "both TCP connections counted closed\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    assert_eq!(
        app.metric(&format!("weft_connections_opened_total{tcp}")),
        Some(2.0)
    );
    assert_eq!(
        app.metric(&format!("weft_connections_active{tcp}")),
        Some(0.0)
    );
    assert_eq!(
        app.metric(&format!("weft_received_bytes_total{tcp}")),
        Some(18.0)
    );
    assert_eq!(
        app.metric(&format!("weft_sent_bytes_total{tcp}")),
        Some(18.0)
    );
    assert_eq!(
        app.metric(&format!("weft_received_bytes_total{udp_labels}")),
        Some(8.0)
    );
    assert_eq!(
        app.metric(&format!("weft_connections_active{udp_labels}")),
        Some(1.0)
    );
    assert_eq!(
        app.metric(r#"weft_events_dropped_total{consumer="store"}"#),
        Some(0.0)
    );

    let health: serde_json::Value = serde_json::from_str(&app.curl("/healthz").unwrap()).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["open_connections"], 1, "the UDP endpoint");

    // A connection left open is drained by the shutdown, and recorded as such.
    let mut open = TcpStream::connect(app.echo).unwrap();
    open.write_all(b"x").unwrap();
    open.read_exact(&mut buf[..1]).unwrap();

    let status = app.signal_and_wait("TERM");
    assert_eq!(
        status.code(),
        Some(0),
        "clean exit on SIGTERM\n{}",
        app.log()
    );
    let mut rest = Vec::new();
    let _ = open.read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "the open connection was closed at shutdown"
    );

    assert_eq!(integrity(&app.db), "ok");
    let rows: Vec<Row> = query(&app.db, async |c| {
        sqlx::query_as("SELECT service, transport, closed_at_ms, bytes_in, bytes_out, close_reason FROM connections ORDER BY id")
            .fetch_all(c)
            .await
            .unwrap()
    });
    let tcp_rows: Vec<_> = rows.iter().filter(|r| r.1 == "tcp").collect();
    assert_eq!(tcp_rows.len(), 3, "{rows:?}");
    assert!(
        tcp_rows.iter().all(|r| r.2.is_some()),
        "every connection closed: {rows:?}"
    );
    assert_eq!(tcp_rows[0].3, 12);
    assert_eq!(tcp_rows[2].5.as_deref(), Some("shutdown"));
    let udp_row = rows
        .iter()
        .find(|r| r.1 == "udp")
        .expect("the UDP endpoint row");
    assert_eq!((udp_row.3, udp_row.4), (8, 8));
    let (events, services): (i64, i64) = query(&app.db, async |c| {
        // The log, plus the openings and closings kept in connection rows.
        let (e,): (i64,) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM events) + COUNT(opened_seq) + COUNT(closed_seq) \
             FROM connections",
        )
        .fetch_one(&mut *c)
        .await
        .unwrap();
        let (s,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM services")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        (e, s)
    });
    assert!(events >= 8, "opens, closes and listener events: {events}");
    assert_eq!(services, 1);
}

#[test]
fn after_kill_9_the_history_opens_clean_and_kept_the_open_connection() {
    let mut app = spawn_app();
    let mut open = TcpStream::connect(app.echo).unwrap();
    open.write_all(b"still here").unwrap();
    let mut buf = [0; 10];
    open.read_exact(&mut buf).unwrap();
    echo_tcp(app.echo, b"closed one");
    // The periodic snapshot writes the open connection's counters about once a second.
    assert_eventually!(
        query(&app.db, async |c| {
            sqlx::query_as::<_, (i64,)>(
                "SELECT bytes_in FROM connections WHERE closed_at_ms IS NULL AND transport = 'tcp'",
            )
            .fetch_optional(c)
            .await
            .ok()
            .flatten()
        }) == Some((10,)),
        "the open connection's counters reach the store"
    );
    let status = app.signal_and_wait("KILL");
    assert_eq!(status.code(), None, "killed by a signal");
    assert_eq!(integrity(&app.db), "ok");
    let closed: (i64,) = query(&app.db, async |c| {
        sqlx::query_as(
            "SELECT COUNT(*) FROM connections WHERE closed_at_ms IS NOT NULL AND transport = 'tcp'",
        )
        .fetch_one(c)
        .await
        .unwrap()
    });
    assert_eq!(closed, (1,));

    // The same file, a new process: its ids and event numbers continue above the old ones,
    // so the old rows stay as they were.
    let last: (i64, i64) = query(&app.db, async |c| {
        sqlx::query_as("SELECT max(id), max(closed_seq) FROM connections")
            .fetch_one(c)
            .await
            .unwrap()
    });
    app.restart();
    echo_tcp(app.echo, b"next run");
    assert_eventually!(
        query(&app.db, async |c| {
            sqlx::query_as::<_, (i64, i64)>(
                "SELECT id, closed_seq FROM connections WHERE bytes_in = 8 AND closed_seq IS NOT NULL",
            )
            .fetch_optional(c)
            .await
            .ok()
            .flatten()
        })
        .is_some_and(|(id, seq)| id > last.0 && seq > last.1),
        "the next run's connection is numbered after the old ones"
    );
    let old: Vec<(i64,)> = query(&app.db, async |c| {
        sqlx::query_as("SELECT bytes_in FROM connections WHERE id <= ? ORDER BY id")
            .bind(last.0)
            .fetch_all(c)
            .await
            .unwrap()
    });
    assert!(old.contains(&(10,)) && old.len() >= 2, "{old:?}");
    let events: serde_json::Value =
        serde_json::from_str(&app.curl(&format!("/api/events?after={}", last.1)).unwrap()).unwrap();
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "connection_closed" && e["data"]["connection"]["bytes_in"] == 8),
        "{events}"
    );
}

/// UDP echo does not answer a datagram from a port whose service would answer the echo in
/// turn (chargen, here): one forged datagram would otherwise start a loop between them.
/// It is counted, and other senders are echoed as ever. Binding port 19 takes root (as
/// the test command runs); without it that half is skipped.
#[test]
fn udp_echo_does_not_answer_a_service_that_would_answer_back() {
    let app = spawn_app();
    let dropped = || {
        app.metric(r#"weft_errors_total{kind="datagram_dropped",service="echo"}"#)
            .unwrap_or(0.0)
    };
    match UdpSocket::bind("127.0.0.7:19") {
        Ok(chargen) => {
            chargen
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            // A flood of them: each counted, the log taking a few lines a second.
            // (Paced, so that the socket's buffer never drops any before weft reads them.)
            for _ in 0..500 {
                chargen.send_to(b"loop?", app.echo).unwrap();
                std::thread::sleep(Duration::from_micros(500));
            }
            let mut buf = [0; 64];
            assert!(
                chargen.recv_from(&mut buf).is_err(),
                "nothing goes back to port 19"
            );
            // Each counted: as not echoed, or (a reactor kept from its core for a
            // while) as dropped by the kernel on the way in.
            let queue_full = || {
                app.metric(r#"weft_errors_total{kind="receive_queue_full",service="echo"}"#)
                    .unwrap_or(0.0)
            };
            assert_eventually!(
                dropped() + queue_full() == 500.0,
                "each counted: {} not echoed, {} lost to a full queue",
                dropped(),
                queue_full()
            );
            let lines = app.log().matches("not echoed").count();
            assert!((1..=40).contains(&lines), "{lines} log lines for 500 drops");
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!("skipped the port-19 half: binding it takes root");
        }
        Err(e) => panic!("binding 127.0.0.7:19: {e}"),
    }
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.send_to(b"hello", app.echo).unwrap();
    let mut buf = [0; 64];
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello");
}

/// UDP echo answers one address at most 1,000 times a second (after a burst of as many):
/// an address forged to aim its answers at a victim, or an echo on another host set
/// against this one, gets no more. The rest are dropped and counted, and another address
/// is echoed as ever meanwhile.
#[test]
fn udp_echo_answers_one_address_at_most_its_echoes_a_second() {
    let app = spawn_app();
    let dropped = || {
        app.metric(r#"weft_errors_total{kind="datagram_dropped",service="echo"}"#)
            .unwrap_or(0.0)
    };
    let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
    flood
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let reader = flood.try_clone().unwrap();
    let answers = std::thread::spawn(move || {
        let mut buf = [0; 64];
        let mut n = 0;
        while reader.recv_from(&mut buf).is_ok() {
            n += 1;
        }
        n
    });
    // 4,000 in about 0.4 s, paced so that no socket buffer drops any: the budget allows
    // 1,000 at once and 1,000 a second more.
    let started = std::time::Instant::now();
    for i in 0..4_000 {
        flood.send_to(b"aimed", app.echo).unwrap();
        if i % 40 == 0 {
            std::thread::sleep(Duration::from_millis(4));
        }
    }
    let took = started.elapsed();
    // Meanwhile another address is echoed.
    let other = UdpSocket::bind("127.0.0.2:0").unwrap();
    other
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    other.send_to(b"hello", app.echo).unwrap();
    let mut buf = [0; 64];
    let (n, _) = other.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello");

    let answered = answers.join().unwrap();
    let allowed = 1_000 + (took.as_secs_f64() * 1_000.0).ceil() as usize + 50;
    // What the gateway echoed, by its own count (5 bytes each, the hello besides): the
    // kernel may drop echoes on their way to a test thread that falls behind, or
    // datagrams on their way in while the reactor waits for a core, so the test's own
    // count only bounds it from below.
    let sent = || {
        app.metric(r#"weft_sent_bytes_total{service="echo",transport="udp"}"#)
            .unwrap_or(0.0) as usize
    };
    let queue_full = || {
        app.metric(r#"weft_errors_total{kind="receive_queue_full",service="echo"}"#)
            .unwrap_or(0.0) as usize
    };
    assert_eventually!(sent() >= 5 * (answered + 1), "{} bytes echoed", sent());
    let echoed = sent() / 5 - 1;
    assert!(
        (1_000_usize.saturating_sub(queue_full())..=allowed).contains(&echoed),
        "{echoed} echoes ({answered} read) in {took:?}, at most {allowed} allowed, \
         {} dropped by the kernel on the way in",
        queue_full()
    );
    assert_eventually!(
        dropped() as usize + echoed + queue_full() == 4_000,
        "every datagram not echoed is counted: {} dropped, {echoed} echoed, {} lost to a full queue",
        dropped(),
        queue_full()
    );
}

/// A reload or a log rotation signalled while the gateway is still reading its
/// configuration (here a zone of 200,000 records, a second or more) does not end it:
/// SIGHUP and SIGUSR1 end a process that has no handler for them yet.
#[test]
fn a_reload_or_reopen_signalled_while_starting_does_not_end_the_gateway() {
    use std::fmt::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let mut zone = String::from(
        "$ORIGIN big.test.\n$TTL 300\n@ IN SOA ns1 admin 1 3600 600 86400 300\n\
         @ IN NS ns1\nns1 IN A 192.0.2.1\n",
    );
    for i in 0..200_000 {
        writeln!(zone, "h{i} IN A 192.0.2.{}", i % 250 + 1).unwrap();
    }
    std::fs::write(dir.path().join("big.zone"), zone).unwrap();
    let (dashboard, dns) = (crate::support::free_port(), crate::support::free_port());
    let config = format!(
        "[dashboard]\nlisten = \"tcp:{dashboard}:interface=127.0.0.1\"\n[store]\npath = \"{}\"\n\
         [[service]]\nname = \"dns\"\nkind = \"dns\"\nlisten = \"udp:{dns}:interface=127.0.0.1\"\n\
         zones = [\"{}\"]\n",
        dir.path().join("h.db").display(),
        dir.path().join("big.zone").display()
    );
    std::fs::write(dir.path().join("weft.toml"), config).unwrap();
    let mut child = std::process::Command::new(crate::support::weft_bin())
        .arg("run")
        .arg("--config")
        .arg(dir.path().join("weft.toml"))
        .stderr(std::fs::File::create(dir.path().join("weft.log")).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    for signal in ["-HUP", "-USR1"] {
        std::thread::sleep(Duration::from_millis(150));
        let sent = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(sent.success());
    }
    let ready = || {
        let url = format!("http://127.0.0.1:{dashboard}/readyz");
        std::process::Command::new("curl")
            .args(["-sf", "--max-time", "2", &url])
            .status()
            .is_ok_and(|s| s.success())
    };
    let started = std::time::Instant::now();
    while !ready() && started.elapsed() < Duration::from_secs(60) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the gateway ended while starting: {status}\n{}",
                std::fs::read_to_string(dir.path().join("weft.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(child.try_wait().unwrap().is_none(), "still running");
    assert!(ready(), "ready after the signals");
    let _ = child.kill();
    let _ = child.wait();
}
