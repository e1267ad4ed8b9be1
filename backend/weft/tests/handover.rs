//! Replacing listeners on real sockets: a [`Handover`] gives a port's socket to the
//! listener that replaces it, so connections queued during the switch are accepted, not
//! reset; a handover dropped without a commit changes nothing; draining one service's
//! connections leaves the others alone.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::time::Duration;

use weft::testing::RecordingObserver;
use weft::{
    CloseReason, DatagramProtocol, DatagramTransport, ListeningPort, Protocol, Reactor, Transport,
    factory,
};
use weft_test_support::{self as support, connect, eventually, free_port, spawn_reactor};

/// Greets each connection with its tag, then echoes.
struct Tagged(&'static str);

impl Protocol for Tagged {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write(self.0.as_bytes());
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        transport.write(data);
    }
}

/// Answers each datagram with its tag.
struct TaggedUdp(&'static str);

impl DatagramProtocol for TaggedUdp {
    fn datagram_received(&mut self, t: &DatagramTransport, _data: &[u8], from: SocketAddr) {
        t.write(self.0.as_bytes(), from);
    }
}

fn greeting(s: &mut TcpStream) -> String {
    let mut buf = [0; 3];
    s.read_exact(&mut buf).expect("a greeting");
    String::from_utf8_lossy(&buf).into_owned()
}

/// Runs `f` on the reactor thread and waits for its answer.
fn on_reactor<T: Send + 'static>(
    handle: &weft::ReactorHandle,
    f: impl FnOnce(&Reactor) -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    handle.call_from_thread(move || {
        tx.send(f(&Reactor::current())).unwrap();
    });
    rx.recv().unwrap()
}

fn ports_of(reactor: &Reactor, service: &str) -> Vec<ListeningPort> {
    reactor
        .listening_ports()
        .into_iter()
        .filter(|p| &*p.info().service == service)
        .collect()
}

#[test]
fn the_new_listener_accepts_what_queued_during_the_switch_and_the_old_connections_go_on() {
    let port = free_port();
    let endpoint = format!("tcp:{port}:interface=127.0.0.1");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let observer = RecordingObserver::new();
    let obs = observer.clone();
    let first = endpoint.clone();
    let server = spawn_reactor(move |r| {
        r.set_observer(obs);
        r.listen_as("svc", &first, factory(|| Tagged("old")))
            .unwrap();
    });
    let mut established = connect(addr);
    assert_eq!(greeting(&mut established), "old");

    // The reactor is held inside the switch while clients connect: the kernel queues them.
    let (queued_tx, queued_rx) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let switch = {
        let endpoint = endpoint.clone();
        let handle = server.handle.clone();
        std::thread::spawn(move || {
            on_reactor(&handle, move |r| {
                let handover = r.handover(ports_of(r, "svc"));
                r.listen_as("svc", &endpoint, factory(|| Tagged("new")))
                    .expect("takes the socket instead of binding");
                ready_tx.send(()).unwrap();
                queued_rx.recv().unwrap();
                handover.commit()
            })
        })
    };
    ready_rx.recv().unwrap();
    let mut queued: Vec<TcpStream> = (0..8).map(|_| connect(addr)).collect();
    queued_tx.send(()).unwrap();
    let kept = switch.join().unwrap();
    assert!(kept.is_empty(), "the only offered port was taken");

    for s in &mut queued {
        assert_eq!(
            greeting(s),
            "new",
            "queued connections go to the new listener"
        );
    }
    assert_eq!(greeting(&mut connect(addr)), "new");
    established.write_all(b"still").unwrap();
    let mut buf = [0; 5];
    established.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"still", "the old connection goes on");
    eventually("the old listener stopped", || {
        observer.count("ListenerStopped") == 1
    });
    let left = on_reactor(&server.handle, |r| r.listening_ports().len());
    assert_eq!(left, 1);
    assert_eq!(observer.count("ListenerStarted"), 2);
    assert_eq!(
        observer.count("Refused") + observer.count("reason: Reset"),
        0,
        "{:?}",
        observer.events()
    );
}

#[test]
fn a_handover_dropped_without_a_commit_changes_nothing() {
    let (port, other) = (free_port(), free_port());
    let endpoint = format!("tcp:{port}:interface=127.0.0.1");
    let first = endpoint.clone();
    let server = spawn_reactor(move |r| {
        r.listen_as("svc", &first, factory(|| Tagged("old")))
            .unwrap();
    });
    on_reactor(&server.handle, move |r| {
        let handover = r.handover(ports_of(r, "svc"));
        r.listen_as("svc", &endpoint, factory(|| Tagged("new")))
            .unwrap();
        r.listen_as(
            "svc",
            &format!("tcp:{other}:interface=127.0.0.1"),
            factory(|| Tagged("new")),
        )
        .unwrap();
        drop(handover);
    });
    let mut s = connect(([127, 0, 0, 1], port).into());
    assert_eq!(greeting(&mut s), "old");
    eventually("the socket bound for the handover is closed", || {
        TcpStream::connect(("127.0.0.1", other))
            .is_err_and(|e| e.kind() == ErrorKind::ConnectionRefused)
    });
    eventually("only the old port is listed", || {
        on_reactor(&server.handle, |r| r.listening_ports().len()) == 1
    });
}

#[test]
fn a_udp_port_is_handed_over_too() {
    let port = free_port();
    let endpoint = format!("udp:{port}:interface=127.0.0.1");
    let first = endpoint.clone();
    let server = spawn_reactor(move |r| {
        r.listen_udp("svc", &first, TaggedUdp("old")).unwrap();
    });
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let ask = || {
        client.send_to(b"?", ("127.0.0.1", port)).unwrap();
        let mut buf = [0; 3];
        let (n, _) = client.recv_from(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(ask(), "old");
    let kept = on_reactor(&server.handle, move |r| {
        let handover = r.handover(ports_of(r, "svc"));
        r.listen_udp("svc", &endpoint, TaggedUdp("new"))
            .expect("takes the socket instead of binding");
        handover.commit().len()
    });
    assert_eq!(kept, 0);
    assert_eq!(ask(), "new");
}

/// A unix socket's mode follows the endpoint of the listener that takes it over: a new
/// `mode=` is applied, and dropping the `mode=` gives the mode a fresh socket has; a
/// handover rolled back changes nothing.
#[test]
fn a_unix_socket_taken_over_gets_the_mode_its_new_endpoint_asks_for() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let mode = || std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    let plain = format!("unix:{}", path.display());
    let first = plain.clone();
    let server = spawn_reactor(move |r| {
        r.listen_as("svc", &first, factory(|| Tagged("one")))
            .unwrap();
    });
    let fresh = mode();
    // A mode other than the fresh one, whatever the umask.
    let set = if fresh == 0o600 { 0o700 } else { 0o600 };
    let switch = |endpoint: String, tag: &'static str| {
        on_reactor(&server.handle, move |r| {
            let handover = r.handover(ports_of(r, "svc"));
            r.listen_as("svc", &endpoint, factory(move || Tagged(tag)))
                .expect("takes the socket instead of binding");
            handover.commit().len()
        })
    };
    let greet = || {
        let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let mut buf = [0; 3];
        s.read_exact(&mut buf).unwrap();
        String::from_utf8_lossy(&buf).into_owned()
    };
    assert_eq!(switch(format!("{plain}:mode={set:o}"), "two"), 0);
    assert_eq!(greet(), "two");
    assert_eq!(mode(), set);
    assert_eq!(switch(plain.clone(), "thr"), 0);
    assert_eq!(greet(), "thr");
    assert_eq!(
        mode(),
        fresh,
        "the mode a fresh socket has, not the one set before"
    );
    // A mode no endpoint set is left as it is.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660)).unwrap();
    assert_eq!(switch(plain.clone(), "fou"), 0);
    assert_eq!(mode(), 0o660);
    // A handover rolled back (a reload that failed) leaves the mode as it was.
    let asked = format!("{plain}:mode=666");
    on_reactor(&server.handle, move |r| {
        let handover = r.handover(ports_of(r, "svc"));
        r.listen_as("svc", &asked, factory(|| Tagged("fiv")))
            .expect("takes the socket instead of binding");
        drop(handover);
    });
    assert_eq!(greet(), "fou");
    assert_eq!(mode(), 0o660, "a rolled-back handover changed the mode");
}

/// A unix socket is one socket however its path is spelled: a listener asking for it
/// through a symlinked directory takes it over.
#[test]
fn a_unix_socket_spelled_another_way_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("real")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link")).unwrap();
    let path = dir.path().join("real/s.sock");
    let first = format!("unix:{}", path.display());
    let server = spawn_reactor(move |r| {
        r.listen_as("svc", &first, factory(|| Tagged("one")))
            .unwrap();
    });
    let respelled = format!("unix:{}", dir.path().join("link/../link/s.sock").display());
    let kept = on_reactor(&server.handle, move |r| {
        let handover = r.handover(ports_of(r, "svc"));
        r.listen_as("svc", &respelled, factory(|| Tagged("two")))
            .expect("takes the socket instead of binding");
        handover.commit().len()
    });
    assert_eq!(kept, 0);
    let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let mut buf = [0; 3];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"two");
}

#[test]
fn a_socket_file_removed_outside_weft_is_bound_again_and_the_old_port_leaves_the_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let endpoint = format!("unix:{}", path.display());
    let first = endpoint.clone();
    let server = spawn_reactor(move |r| {
        r.listen_as("svc", &first, factory(|| Tagged("one")))
            .unwrap();
    });
    std::fs::remove_file(&path).unwrap();
    let kept = on_reactor(&server.handle, move |r| {
        let handover = r.handover(ports_of(r, "svc"));
        r.listen_as("svc", &endpoint, factory(|| Tagged("two")))
            .expect("binds afresh: the old socket has no file to be reached by");
        // Not taken: stopped, as a reload stops the ports of a service it replaced.
        let kept = handover.commit();
        for port in &kept {
            port.stop_listening();
        }
        kept.len()
    });
    assert_eq!(kept, 1);
    eventually("the old port closed", || {
        on_reactor(&server.handle, |r| ports_of(r, "svc").len()) == 1
    });
    let mut s = std::os::unix::net::UnixStream::connect(&path)
        .expect("the old port's close left the new socket's file");
    let mut buf = [0; 3];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"two");
}

#[test]
fn draining_a_service_closes_its_connections_aborts_the_stuck_at_the_deadline_and_spares_others() {
    /// Writes more than the socket buffers hold, so a close cannot finish while the peer
    /// does not read.
    struct Flood;
    impl Protocol for Flood {
        fn connection_made(&mut self, transport: &Transport) {
            transport.write(&vec![0; 16 << 20]);
        }
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
    }
    let observer = RecordingObserver::new();
    let obs = observer.clone();
    let server = spawn_reactor(move |r| {
        r.set_observer(obs);
        let gone = r
            .listen_as(
                "gone",
                "tcp:0:interface=127.0.0.1",
                factory(|| Tagged("bye")),
            )
            .unwrap();
        let stuck = r
            .listen_as("stuck", "tcp:0:interface=127.0.0.1", factory(|| Flood))
            .unwrap();
        let kept = r
            .listen_as(
                "kept",
                "tcp:0:interface=127.0.0.1",
                factory(|| Tagged("hi!")),
            )
            .unwrap();
        [gone, stuck, kept].map(|p| p.local_addr().unwrap())
    });
    let [gone, stuck, kept] = server.value;
    let mut g = connect(gone);
    assert_eq!(greeting(&mut g), "bye");
    let mut k = connect(kept);
    assert_eq!(greeting(&mut k), "hi!");
    let s = connect(stuck);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    eventually("three open", || {
        support::open_ids(&server.handle).len() == 3
    });

    let asked = on_reactor(&server.handle, |r| {
        r.drain_connections("gone", Duration::from_secs(5), CloseReason::ServiceStopped)
            + r.drain_connections(
                "stuck",
                Duration::from_millis(300),
                CloseReason::ServiceStopped,
            )
    });
    assert_eq!(asked, 2);
    let mut rest = Vec::new();
    g.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "closed cleanly");
    // The flood never drains: at the deadline the connection is aborted.
    eventually("the stuck connection is aborted at the deadline", || {
        support::open_ids(&server.handle).len() == 1
    });
    k.write_all(b"yes").unwrap();
    let mut buf = [0; 3];
    k.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"yes", "another service's connection goes on");
    assert_eq!(
        observer.count("ServiceStopped"),
        2,
        "{:?}",
        observer.events()
    );
}
