//! `listen_stream` and `connect_stream` on real loopback sockets: async code on a byte
//! stream gets the same registration, counters, events and close handling as protocols.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft::testing::RecordingObserver;
use weft::{InspectedStream, Reactor};
use weft_test_support::{connect, eventually, open_ids, spawn_reactor};

/// Echoes until end-of-stream, then closes.
async fn echo(mut stream: InspectedStream) {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn listen_echo(reactor: &Reactor) -> SocketAddr {
    reactor
        .listen_stream("echo", "tcp:0:interface=127.0.0.1", echo)
        .expect("listen")
        .local_addr()
        .expect("ip listener")
}

#[test]
fn a_stream_connection_is_registered_counted_and_reported() {
    let observer = RecordingObserver::new();
    let obs = observer.clone();
    let server = spawn_reactor(move |r| {
        r.set_observer(obs);
        listen_echo(r)
    });
    let mut client = connect(server.value);
    client.write_all(b"hello stream").unwrap();
    let mut buf = [0u8; 12];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello stream");
    assert_eq!(open_ids(&server.handle).len(), 1, "registered while open");
    drop(client);
    eventually("close event", || observer.count("ConnectionClosed") == 1);
    let events = observer.events();
    let closed = events
        .iter()
        .find(|e| e.contains("ConnectionClosed"))
        .unwrap();
    assert!(closed.contains("PeerClosed"), "{closed}");
    assert!(closed.contains("bytes_in: 12"), "{closed}");
    assert!(closed.contains("bytes_out: 12"), "{closed}");
    assert!(closed.contains("service: \"echo\""), "{closed}");
    assert_eq!(observer.count("ConnectionOpened"), 1);
    assert!(
        open_ids(&server.handle).is_empty(),
        "unregistered after close"
    );
    server.stop();
    assert_eq!(observer.count("ListenerStopped"), 1);
}

#[test]
fn close_connection_drops_the_handler_and_reports_an_abort() {
    let observer = RecordingObserver::new();
    let obs = observer.clone();
    let server = spawn_reactor(move |r| {
        r.set_observer(obs);
        // A handler that holds its stream and never reads: only the reactor can end it.
        r.listen_stream("stuck", "tcp:0:interface=127.0.0.1", |s| async move {
            let _held = s;
            std::future::pending::<()>().await
        })
        .unwrap()
        .local_addr()
        .unwrap()
    });
    let mut client = connect(server.value);
    eventually("registered", || open_ids(&server.handle).len() == 1);
    let id = open_ids(&server.handle)[0];
    server.handle.call_from_thread(move || {
        assert!(Reactor::current().close_connection(id));
    });
    eventually("close event", || observer.count("ConnectionClosed") == 1);
    assert!(observer.events().iter().any(|e| e.contains("Aborted")));
    // Reset, as an abort is for a connection a protocol drives: the peer learns that what
    // it got was cut short, not that it ended.
    let mut buf = [0u8; 1];
    let error = client
        .read(&mut buf)
        .expect_err("a reset, not the end of the stream");
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}");
}

#[test]
fn shutdown_ends_reads_so_handlers_finish() {
    let observer = RecordingObserver::new();
    let obs = observer.clone();
    let server = spawn_reactor(move |r| {
        r.set_observer(obs);
        listen_echo(r)
    });
    let mut client = connect(server.value);
    client.write_all(b"x").unwrap();
    let mut buf = [0u8; 1];
    client.read_exact(&mut buf).unwrap();
    let started = std::time::Instant::now();
    server.stop();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "drained before the deadline"
    );
    assert!(
        observer
            .events()
            .iter()
            .any(|e| e.contains("ConnectionClosed") && e.contains("Shutdown"))
    );
}

#[test]
fn connect_stream_counts_and_reports_the_client_side() {
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = upstream.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = upstream.accept().unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        s.write_all(b"pong").unwrap();
    });
    let observer = RecordingObserver::new();
    let obs = observer.clone();
    let server = spawn_reactor(move |r| {
        r.set_observer(obs);
        let reactor = r.clone();
        r.spawn(async move {
            let endpoint = format!("tcp:127.0.0.1:{}", addr.port());
            let mut s = reactor.connect_stream("client", &endpoint).await.unwrap();
            s.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"pong");
            assert_eq!(s.info().stats.bytes_out(), 4);
        });
    });
    peer.join().unwrap();
    eventually("close event", || observer.count("ConnectionClosed") == 1);
    let events = observer.events();
    let closed = events
        .iter()
        .find(|e| e.contains("ConnectionClosed"))
        .unwrap();
    assert!(closed.contains("service: \"client\""), "{closed}");
    assert!(closed.contains("bytes_in: 4"), "{closed}");
    server.stop();
}

#[test]
fn a_refused_connect_is_an_error_and_reported() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let observer = RecordingObserver::new();
    let obs = observer.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let server = spawn_reactor(move |r| {
        r.set_observer(obs);
        let reactor = r.clone();
        r.spawn(async move {
            let endpoint = format!("tcp:127.0.0.1:{port}:timeout=2");
            let err = reactor
                .connect_stream("client", &endpoint)
                .await
                .unwrap_err();
            tx.send(err.to_string()).unwrap();
        });
    });
    let err = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(err.contains("refused"), "{err}");
    assert_eq!(observer.count("ConnectFailed"), 1);
    server.stop();
}

/// Reads a 10-byte request, even through a graceful close, and answers `done`.
async fn finish_request(mut stream: InspectedStream) {
    stream.keep_reading_when_closing();
    let mut request = [0u8; 10];
    if stream.read_exact(&mut request).await.is_ok() {
        let _ = stream.write_all(b"done").await;
    }
}

#[test]
fn a_stream_that_keeps_reading_finishes_its_exchange_through_a_graceful_close() {
    let server = spawn_reactor(|r| {
        r.listen_stream("web", "tcp:0:interface=127.0.0.1", finish_request)
            .unwrap()
            .local_addr()
            .unwrap()
    });
    let mut client = connect(server.value);
    client.write_all(b"half-").unwrap();
    eventually("registered", || open_ids(&server.handle).len() == 1);
    server.handle.call_from_thread(|| {
        for transport in Reactor::current().connections() {
            transport.lose_connection();
        }
    });
    client.write_all(b"sent!").unwrap();
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, b"done");
}

#[test]
fn a_listen_stream_handler_is_polled_again_when_a_close_is_requested() {
    let server = spawn_reactor(|r| {
        r.listen_stream(
            "web",
            "tcp:0:interface=127.0.0.1",
            |mut stream| async move {
                stream.keep_reading_when_closing();
                let transport = stream.transport().clone();
                std::future::poll_fn(|_| {
                    if transport.is_disconnecting() {
                        std::task::Poll::Ready(())
                    } else {
                        std::task::Poll::Pending
                    }
                })
                .await;
                let _ = stream.write_all(b"bye").await;
            },
        )
        .unwrap()
        .local_addr()
        .unwrap()
    });
    let mut client = connect(server.value);
    eventually("registered", || open_ids(&server.handle).len() == 1);
    let started = std::time::Instant::now();
    server.stop();
    // Well short of the 2 s deadline, which the stop would wait out had the handler not
    // been polled again (a busy machine may take most of a second to stop a reactor).
    assert!(
        started.elapsed() < Duration::from_millis(1800),
        "not the 2 s deadline: {:?}",
        started.elapsed()
    );
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, b"bye");
}
