//! The services on real loopback sockets, with the telemetry hub watching.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use weft::{Address, Reactor};
use weft_gateway::config::ServiceConfig;
use weft_gateway::services::{self, ServiceKind, ServiceLimits, tcp_proxy::TcpProxyConfig};
use weft_telemetry::{Hub, HubConfig};
use weft_test_support::run_with_client;

fn addr(a: &Address) -> SocketAddr {
    a.socket_addr().expect("an IP listener")
}

fn service(name: &str, listen: &[&str], kind: ServiceKind) -> ServiceConfig {
    ServiceConfig {
        name: name.into(),
        listen: listen.iter().map(|s| s.to_string()).collect(),
        limits: ServiceLimits::default_for(&kind),
        kind,
        tls_files: Default::default(),
        certificates: Vec::new(),
    }
}

#[test]
fn echo_answers_over_tcp_and_udp_and_discard_says_nothing() {
    let reactor = Reactor::new().unwrap();
    let echo = services::start(
        &reactor,
        &service(
            "echo",
            &["tcp:0:interface=127.0.0.1", "udp:0:interface=127.0.0.1"],
            ServiceKind::Echo,
        ),
    )
    .unwrap();
    let discard = services::start(
        &reactor,
        &service(
            "discard",
            &["tcp:0:interface=127.0.0.1"],
            ServiceKind::Discard,
        ),
    )
    .unwrap();
    let (tcp, udp, sink) = (addr(&echo[0]), addr(&echo[1]), addr(&discard[0]));
    run_with_client(&reactor, move || {
        let mut s = TcpStream::connect(tcp).unwrap();
        s.write_all(b"round trip").unwrap();
        let mut buf = [0; 10];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"round trip");

        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        u.send_to(b"datagram", udp).unwrap();
        let (n, from) = u.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"datagram"[..], udp));

        let mut d = TcpStream::connect(sink).unwrap();
        d.write_all(b"gone").unwrap();
        d.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        assert!(d.read(&mut buf).is_err(), "discard sends nothing back");
    });
}

#[test]
fn the_proxy_forwards_a_large_stream_both_ways_with_bounded_buffers() {
    let reactor = Reactor::new().unwrap();
    let hub = Hub::new(HubConfig::default()).unwrap();
    hub.install(&reactor);
    let upstream = services::start(
        &reactor,
        &service("backend", &["tcp:0:interface=127.0.0.1"], ServiceKind::Echo),
    )
    .unwrap();
    let proxy = services::start(
        &reactor,
        &service(
            "proxy",
            &["tcp:0:interface=127.0.0.1"],
            ServiceKind::TcpProxy(TcpProxyConfig {
                upstream: format!("tcp:127.0.0.1:{}", addr(&upstream[0]).port()),
            }),
        ),
    )
    .unwrap();
    let proxy = addr(&proxy[0]);
    // Well beyond what the kernel's socket buffers on the way can hold.
    const TOTAL: usize = 64 * 1024 * 1024;
    let h = hub.clone();
    run_with_client(&reactor, move || {
        let mut s = TcpStream::connect(proxy).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut writer = s.try_clone().unwrap();
        // Write everything first and read only after a pause: without back-pressure the
        // proxy would buffer the whole stream.
        let sender = std::thread::spawn(move || {
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..TOTAL / chunk.len() {
                writer.write_all(&chunk).unwrap();
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        let stalled_in: u64 = h
            .connections()
            .iter()
            .filter(|c| &*c.service == "proxy")
            .map(|c| c.bytes_in)
            .sum();
        assert!(
            stalled_in < (TOTAL / 2) as u64,
            "with a reader that does not read, reading stops early ({stalled_in} bytes taken in)"
        );
        let mut got = 0;
        let mut buf = vec![0; 64 * 1024];
        while got < TOTAL {
            let n = s.read(&mut buf).unwrap_or_else(|e| {
                panic!("{e} after {got} bytes; connections: {:#?}", h.connections())
            });
            assert!(n > 0, "closed after {got} bytes");
            assert!(buf[..n].iter().all(|b| *b == b'x'));
            got += n;
        }
        sender.join().unwrap();
        drop(s);
        let start = Instant::now();
        while h.open_connections() > 0 {
            assert!(start.elapsed() < Duration::from_secs(5), "both sides close");
            std::thread::sleep(Duration::from_millis(5));
        }
    });
}

#[test]
fn the_proxy_closes_the_client_when_the_upstream_is_unreachable() {
    let reactor = Reactor::new().unwrap();
    // A port that was free a moment ago: nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = services::start(
        &reactor,
        &service(
            "proxy",
            &["tcp:0:interface=127.0.0.1"],
            ServiceKind::TcpProxy(TcpProxyConfig {
                upstream: format!("tcp:127.0.0.1:{}", dead.port()),
            }),
        ),
    )
    .unwrap();
    let proxy = addr(&proxy[0]);
    run_with_client(&reactor, move || {
        let mut s = TcpStream::connect(proxy).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0; 1];
        assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "the client is closed");
    });
}

/// An HTTP `root` is checked with the configuration: a missing one is a configuration
/// error naming `service[N].root`, and a service whose root was checked starts from it
/// without checking it again, so a root removed in between is never a listening error.
#[test]
fn an_http_root_is_a_configuration_error_never_a_listening_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("public");
    let text = format!(
        "[[service]]\nname = \"web\"\nkind = \"http\"\nlisten = \"tcp:0:interface=127.0.0.1\"\n\
         root = {:?}\n",
        root.display().to_string()
    );
    let e = weft_gateway::Config::parse("weft.toml", &text).unwrap_err();
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(5), Some("service[0].root")),
        "{e}"
    );

    std::fs::create_dir(&root).unwrap();
    let config = weft_gateway::Config::parse("weft.toml", &text).unwrap();
    std::fs::remove_dir(&root).unwrap();
    let reactor = Reactor::new().unwrap();
    let bound = services::start(&reactor, &config.services[0])
        .expect("a root checked with the configuration is not checked again when listening");
    let web = addr(&bound[0]);
    run_with_client(&reactor, move || {
        let mut s = TcpStream::connect(web).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
    });
}

#[test]
fn an_access_log_that_cannot_be_opened_when_the_service_starts_is_named_by_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let (root, logs) = (dir.path().join("public"), dir.path().join("logs"));
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir(&logs).unwrap();
    let log = logs.join("access.log");
    let text = format!(
        "[[service]]\nname = \"web\"\nkind = \"http\"\nlisten = \"tcp:0:interface=127.0.0.1\"\n\
         root = {:?}\naccess_log = {:?}\n",
        root.display().to_string(),
        log.display().to_string()
    );
    let config = weft_gateway::Config::parse("weft.toml", &text).unwrap();
    // Its directory goes between the check and the start.
    std::fs::remove_dir(&logs).unwrap();
    let e = services::start(&Reactor::new().unwrap(), &config.services[0]).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "access_log: cannot open {}: No such file or directory (os error 2)",
            log.display()
        )
    );
}
