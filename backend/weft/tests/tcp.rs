//! TCP on real loopback sockets: echo, chat-style writes from elsewhere, half-close,
//! back-pressure with a slow reader, bad input, and what the observer sees.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use weft::testing::RecordingObserver;
use weft::{CloseReason, HalfClose, ListenError, Protocol, Reactor, Transport, factory};
use weft_test_support::{Echo, connect, eventually, open_ids, spawn_reactor};

fn listen_echo(reactor: &Reactor) -> SocketAddr {
    reactor
        .listen_as("echo", "tcp:0:interface=127.0.0.1", factory(|| Echo))
        .expect("listen")
        .local_addr()
        .expect("ip listener")
}

#[test]
fn echo_round_trip_and_observer_sees_the_connection() {
    let observer = RecordingObserver::new();
    let obs = observer.clone();
    let server = spawn_reactor(move |r| {
        r.set_observer(obs);
        listen_echo(r)
    });
    let mut client = connect(server.value);
    client.write_all(b"hello weft").unwrap();
    let mut buf = [0u8; 10];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello weft");
    drop(client);
    eventually("close event", || observer.count("ConnectionClosed") == 1);
    let events = observer.events();
    let closed = events
        .iter()
        .find(|e| e.contains("ConnectionClosed"))
        .unwrap();
    assert!(closed.contains("PeerClosed"), "{closed}");
    assert!(closed.contains("bytes_in: 10"), "{closed}");
    assert!(closed.contains("bytes_out: 10"), "{closed}");
    assert_eq!(observer.count("ListenerStarted"), 1);
    assert_eq!(observer.count("ConnectionOpened"), 1);
    server.stop();
    assert_eq!(observer.count("ListenerStopped"), 1);
}

#[test]
fn a_port_already_in_use_names_the_endpoint() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let endpoint = format!("tcp:{port}:interface=127.0.0.1");
    let server = spawn_reactor(move |r| {
        r.listen(&endpoint, factory(|| Echo))
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    let err = server.value.clone().unwrap_err();
    assert!(
        err.contains(&format!("tcp:{port}:interface=127.0.0.1")),
        "{err}"
    );
    assert!(err.to_lowercase().contains("in use"), "{err}");
    assert!(matches!(
        Reactor::new().unwrap().listen("tcp:80x", factory(|| Echo)),
        Err(ListenError::Endpoint(_))
    ));
}

/// Keeps every client's transport and relays each line to the others.
#[derive(Default)]
struct Room {
    members: std::cell::RefCell<Vec<Transport>>,
}

struct Member {
    room: std::rc::Rc<Room>,
}

impl Protocol for Member {
    fn connection_made(&mut self, transport: &Transport) {
        self.room.members.borrow_mut().push(transport.clone());
    }
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        for other in self.room.members.borrow().iter() {
            if other.id() != transport.id() {
                other.write(data);
            }
        }
    }
    fn connection_lost(&mut self, _reason: &CloseReason) {
        self.room.members.borrow_mut().retain(|t| !t.is_closed());
    }
}

#[test]
fn a_protocol_writes_to_another_connection_and_from_a_timer() {
    let server = spawn_reactor(|r| {
        let room = std::rc::Rc::new(Room::default());
        r.listen(
            "tcp:0:interface=127.0.0.1",
            factory(move || Member { room: room.clone() }),
        )
        .unwrap()
        .local_addr()
        .unwrap()
    });
    let mut alice = connect(server.value);
    let mut bob = connect(server.value);
    eventually("both joined", || open_ids(&server.handle).len() == 2);
    alice.write_all(b"hi bob").unwrap();
    let mut buf = [0u8; 6];
    bob.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hi bob");

    // A timer on the reactor writes to every open connection.
    server.handle.call_from_thread(|| {
        let reactor = Reactor::current();
        reactor.call_later(Duration::from_millis(10), move || {
            for t in Reactor::current().connections() {
                t.write(b"tick");
            }
        });
    });
    let mut tick = [0u8; 4];
    alice.read_exact(&mut tick).unwrap();
    assert_eq!(&tick, b"tick");
    bob.read_exact(&mut tick).unwrap();
    assert_eq!(&tick, b"tick");
}

struct Greeter;

impl Protocol for Greeter {
    fn data_received(&mut self, _transport: &Transport, _data: &[u8]) {}
    fn read_connection_lost(&mut self, transport: &Transport) -> HalfClose {
        transport.write(b"bye");
        transport.lose_write_connection();
        HalfClose::KeepWriting
    }
}

#[test]
fn half_close_lets_the_protocol_answer_after_the_peer_is_done() {
    let server = spawn_reactor(|r| {
        r.listen("tcp:0:interface=127.0.0.1", factory(|| Greeter))
            .unwrap()
            .local_addr()
            .unwrap()
    });
    let mut client = connect(server.value);
    client.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"bye");
}

/// Asks to close, then goes on writing, as a Twisted protocol may: its last words, and
/// (`half`) after shutting down only its side, a word after the peer's end.
struct LastWords {
    half: bool,
}

impl Protocol for LastWords {
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        if self.half {
            return;
        }
        transport.write(b"you said ");
        transport.lose_connection();
        transport.write(data);
        transport.write_sequence([&b", "[..], b"bye"]);
    }
    fn read_connection_lost(&mut self, transport: &Transport) -> HalfClose {
        transport.write(b"bye");
        transport.lose_write_connection();
        transport.write(b"!");
        HalfClose::KeepWriting
    }
    fn connection_lost(&mut self, _reason: &CloseReason) {}
}

#[test]
fn what_is_written_after_a_close_is_asked_for_goes_out_before_it() {
    let server = spawn_reactor(|r| {
        let at = |half| {
            r.listen(
                "tcp:0:interface=127.0.0.1",
                factory(move || LastWords { half }),
            )
            .unwrap()
            .local_addr()
            .unwrap()
        };
        (at(false), at(true))
    });
    let (whole, half) = server.value;
    let mut client = connect(whole);
    client.write_all(b"hello").unwrap();
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"you said hello, bye");

    let mut client = connect(half);
    client.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"bye!");
    eventually("both closed", || open_ids(&server.handle).is_empty());
}

struct Firehose;

impl Protocol for Firehose {
    fn connection_made(&mut self, transport: &Transport) {
        // Write far more than the peer will read; back-pressure must bound the buffer.
        let chunk = vec![b'x'; 16 * 1024];
        let t = transport.clone();
        fn pump(t: Transport, chunk: Vec<u8>) {
            if t.is_closed() {
                return;
            }
            for _ in 0..8 {
                if t.buffered() < 256 * 1024 {
                    t.write(&chunk);
                }
            }
            weft::call_later(Duration::from_millis(1), move || pump(t, chunk));
        }
        pump(t, chunk);
    }
    fn data_received(&mut self, _transport: &Transport, _data: &[u8]) {}
}

#[test]
fn a_slow_reader_keeps_the_echo_buffer_bounded() {
    // The client sends up to 64 MiB and reads nothing: the echo server's write buffer fills,
    // it stops reading, and memory stays bounded by the high-water mark.
    let server = spawn_reactor(listen_echo);
    let client = connect(server.value);
    client
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut writer = client.try_clone().unwrap();
    let sent = std::thread::spawn(move || {
        let chunk = vec![b'y'; 64 * 1024];
        let mut sent = 0usize;
        while sent < 64 << 20 {
            match writer.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => break, // the server stopped reading: the write timed out
            }
        }
        sent
    })
    .join()
    .unwrap();
    assert!(
        sent < 64 << 20,
        "the server kept reading everything ({sent} bytes)"
    );
    let (tx, rx) = std::sync::mpsc::channel();
    server.handle.call_from_thread(move || {
        let buffered: Vec<usize> = Reactor::current()
            .connections()
            .iter()
            .map(Transport::buffered)
            .collect();
        tx.send(buffered).unwrap();
    });
    let buffered = rx.recv().unwrap();
    assert_eq!(buffered.len(), 1);
    // High-water mark (64 KiB) plus at most one read (64 KiB).
    assert!(buffered[0] <= 128 * 1024, "buffered {} bytes", buffered[0]);
    drop(client);
}

#[test]
fn a_peer_that_resets_mid_write_is_handled_and_others_keep_working() {
    let observer = RecordingObserver::new();
    let obs = observer.clone();
    let server = spawn_reactor(move |r| {
        r.set_observer(obs);
        listen_echo(r)
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = server.handle.clone();
    handle.call_from_thread(move || {
        let reactor = Reactor::current();
        let addr = reactor
            .listen("tcp:0:interface=127.0.0.1", factory(|| Firehose))
            .unwrap()
            .local_addr()
            .unwrap();
        tx.send(addr).unwrap();
    });
    let firehose = rx.recv().unwrap();
    let victim = connect(firehose);
    let mut buf = [0u8; 1024];
    (&victim).read_exact(&mut buf).unwrap();
    // SO_LINGER 0 makes close send RST while the server is still writing.
    socket2::SockRef::from(&victim)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(victim);
    eventually("reset reported", || {
        observer
            .events()
            .iter()
            .any(|e| e.contains("ConnectionClosed") && e.contains("Reset"))
    });
    let mut client = connect(server.value);
    client.write_all(b"still here").unwrap();
    let mut buf = [0u8; 10];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"still here");
}

struct Panicky;

impl Protocol for Panicky {
    fn data_received(&mut self, _transport: &Transport, data: &[u8]) {
        assert!(data != b"boom", "protocol bug triggered by input");
    }
}

#[test]
fn a_panicking_callback_aborts_only_its_connection() {
    let observer = RecordingObserver::new();
    let obs = observer.clone();
    let server = spawn_reactor(move |r| {
        r.set_observer(obs);
        let bad = r
            .listen("tcp:0:interface=127.0.0.1", factory(|| Panicky))
            .unwrap()
            .local_addr()
            .unwrap();
        (bad, listen_echo(r))
    });
    let (bad, good) = server.value;
    let mut victim = connect(bad);
    victim.write_all(b"boom").unwrap();
    let mut rest = Vec::new();
    let _ = victim.read_to_end(&mut rest);
    eventually("panic reported", || observer.count("CallbackPanicked") == 1);
    let mut client = connect(good);
    client.write_all(b"ok").unwrap();
    let mut buf = [0u8; 2];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ok");
}

struct Sleepy;

impl Protocol for Sleepy {
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        std::thread::sleep(Duration::from_millis(150));
        transport.write(data);
    }
}

#[test]
fn a_blocking_callback_is_reported_by_name() {
    let observer = RecordingObserver::new();
    let obs = observer.clone();
    let server = spawn_reactor(move |r| {
        r.set_observer(obs);
        r.listen_as("sleepy", "tcp:0:interface=127.0.0.1", factory(|| Sleepy))
            .unwrap()
            .local_addr()
            .unwrap()
    });
    let mut client = connect(server.value);
    client.write_all(b"z").unwrap();
    let mut buf = [0u8; 1];
    client.read_exact(&mut buf).unwrap();
    // Another callback a busy machine kept past the threshold may be reported too.
    let sleepy = || {
        observer
            .events()
            .into_iter()
            .find(|e| e.contains("SlowCallback") && e.contains("Sleepy::data_received"))
    };
    eventually("slow callback", || sleepy().is_some());
    let slow = sleepy().unwrap();
    assert!(slow.contains("sleepy"), "{slow}");
    // The lag probe saw the reactor stall too.
    eventually("lag measured", || {
        server.handle.lag().max() >= Duration::from_millis(40)
    });
}

#[test]
fn close_connection_from_another_thread() {
    let server = spawn_reactor(listen_echo);
    let mut client = connect(server.value);
    client.write_all(b"x").unwrap();
    let mut buf = [0u8; 1];
    client.read_exact(&mut buf).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    server.handle.call_from_thread(move || {
        tx.send(Reactor::current().connections()[0].id()).unwrap();
    });
    let id = rx.recv().unwrap();
    let asked = std::time::Instant::now();
    assert!(server.handle.close_connection(id));
    let mut rest = [0u8; 16];
    match client.read(&mut rest) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the connection to be closed, got {other:?}"),
    }
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "closed only after {:?}",
        asked.elapsed()
    );
}

#[test]
fn shutdown_flushes_and_closes_connections_and_runs_hooks() {
    let hooks = Arc::new(std::sync::Mutex::new(Vec::new()));
    let h = hooks.clone();
    let server = spawn_reactor(move |r| {
        for (phase, name) in [
            (weft::Phase::Before, "before"),
            (weft::Phase::During, "during"),
            (weft::Phase::After, "after"),
        ] {
            let h = h.clone();
            r.add_shutdown_hook(phase, move || h.lock().unwrap().push(name));
        }
        // A hook that never finishes must not hang shutdown past its deadline.
        r.add_shutdown_hook_wait(weft::Phase::Before, std::future::pending::<()>);
        r.listen("tcp:0:interface=127.0.0.1", factory(|| Burst))
            .unwrap()
            .local_addr()
            .unwrap()
    });
    // The server has far more buffered than the kernel holds when the stop comes; a
    // reader that starts late must still get every byte, then a clean end.
    let client = connect(server.value);
    let reader = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut all = Vec::new();
        (&client).read_to_end(&mut all).map(|_| all.len())
    });
    std::thread::sleep(Duration::from_millis(100));
    let started = std::time::Instant::now();
    server.stop();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(*hooks.lock().unwrap(), ["before", "during", "after"]);
    assert_eq!(reader.join().unwrap().unwrap(), BURST);
}

#[test]
fn shutdown_lets_a_protocol_send_what_it_owes_before_closing() {
    let server = spawn_reactor(|r| {
        r.listen("tcp:0:interface=127.0.0.1", factory(|| Owing))
            .unwrap()
            .local_addr()
            .unwrap()
    });
    let mut client = connect(server.value);
    client.write_all(b"ask").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        client.read_to_end(&mut all).map(|_| all)
    });
    server.stop();
    assert_eq!(
        reader.join().unwrap().unwrap(),
        b"answer after the drain began"
    );
}

/// Owes an answer to what it reads; asked to drain, it sends it 200 ms later, then closes.
struct Owing;

impl Protocol for Owing {
    fn data_received(&mut self, _transport: &Transport, _data: &[u8]) {}
    fn drain(&mut self, transport: &Transport) {
        transport.pause_reading();
        let transport = transport.clone();
        weft::call_later(Duration::from_millis(200), move || {
            transport.write(b"answer after the drain began");
            transport.lose_connection();
        });
    }
}

const BURST: usize = 32 << 20;

/// Writes 32 MiB as soon as a client connects.
struct Burst;

impl Protocol for Burst {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write(&vec![b'b'; BURST]);
    }
    fn data_received(&mut self, _transport: &Transport, _data: &[u8]) {}
}

struct Shout;

impl weft::framing::LineHandler for Shout {
    fn line_received(&mut self, ctx: &mut weft::framing::LineContext<'_>, line: &[u8]) {
        ctx.send_line(&line.to_ascii_uppercase());
    }
}

#[test]
fn a_line_over_max_length_drops_only_that_connection_and_is_counted() {
    let observer = RecordingObserver::new();
    let obs = observer.clone();
    let server = spawn_reactor(move |r| {
        r.set_observer(obs);
        r.listen_as(
            "shout",
            "tcp:0:interface=127.0.0.1",
            factory(|| weft::framing::LineReceiver::new(Shout).max_length(1024)),
        )
        .unwrap()
        .local_addr()
        .unwrap()
    });
    let mut good = connect(server.value);
    let mut bad = connect(server.value);
    bad.write_all(&vec![b'a'; 4096]).unwrap();
    let mut rest = Vec::new();
    let _ = bad.read_to_end(&mut rest);
    assert!(rest.is_empty());
    eventually("frame error reported", || {
        observer.count("FrameTooLong") == 1
    });
    eventually("close reported", || observer.count("ConnectionClosed") == 1);
    let closed = observer.first("ConnectionClosed").unwrap();
    assert!(
        closed.contains("exceeds the limit of 1024 bytes"),
        "{closed}"
    );
    good.write_all(b"fine\r\n").unwrap();
    let mut buf = [0u8; 6];
    good.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"FINE\r\n");
}

#[test]
fn a_connection_over_the_limit_is_refused_with_the_limit_as_reason() {
    let observer = RecordingObserver::new();
    let obs = observer.clone();
    let server = spawn_reactor(move |r| {
        r.set_observer(obs);
        let limited = weft::policies::ConnectionLimits::new(factory(|| Echo)).max_total(1);
        r.listen("tcp:0:interface=127.0.0.1", limited)
            .unwrap()
            .local_addr()
            .unwrap()
    });
    let mut first = connect(server.value);
    first.write_all(b"1").unwrap();
    let mut one = [0u8; 1];
    first.read_exact(&mut one).unwrap();
    let mut second = connect(server.value);
    let mut rest = Vec::new();
    let _ = second.read_to_end(&mut rest);
    eventually("refusal reported", || observer.count("Refused") == 1);
    let refused = observer.first("Refused").unwrap();
    assert!(refused.contains("limit_total"), "{refused}");
    // The first connection is unaffected.
    first.write_all(b"2").unwrap();
    first.read_exact(&mut one).unwrap();
    assert_eq!(&one, b"2");
}

/// Aborts its connection on the first bytes it gets.
struct Aborter;

impl Protocol for Aborter {
    fn data_received(&mut self, transport: &Transport, _: &[u8]) {
        transport.write(b"never sent");
        transport.abort_connection();
    }
}

#[test]
fn an_aborted_connection_is_reset_not_closed_in_order() {
    let server = spawn_reactor(|r| {
        r.listen("tcp:0:interface=127.0.0.1", factory(|| Aborter))
            .unwrap()
            .local_addr()
            .unwrap()
    });
    let mut client = connect(server.value);
    client.write_all(b"go").unwrap();
    let mut got = Vec::new();
    let error = client
        .read_to_end(&mut got)
        .expect_err("a reset, not the end of the stream");
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}");
    assert!(got.is_empty(), "what was buffered is dropped: {got:?}");
}

/// Twisted's way to yield between chunks of work, `callLater(0, more)` from `more`: each
/// call runs in the reactor's next pass over its timers, so connections are served in
/// between; it must not run in the pass that scheduled it, or the loop never yields.
#[test]
fn a_call_later_zero_that_schedules_itself_again_leaves_the_reactor_to_its_connections() {
    fn more(count: std::rc::Rc<std::cell::Cell<u64>>, seen: Arc<std::sync::atomic::AtomicU64>) {
        count.set(count.get() + 1);
        seen.store(count.get(), std::sync::atomic::Ordering::Relaxed);
        weft::call_later(Duration::ZERO, move || more(count, seen));
    }
    let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = seen.clone();
    let server = spawn_reactor(move |r| {
        let addr = listen_echo(r);
        weft::call_later(Duration::ZERO, move || more(Default::default(), counter));
        addr
    });
    let mut client = connect(server.value);
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.write_all(b"still served").unwrap();
    let mut buf = [0u8; 12];
    client
        .read_exact(&mut buf)
        .expect("echoed while the loop runs");
    assert_eq!(&buf, b"still served");
    let before = seen.load(std::sync::atomic::Ordering::Relaxed);
    eventually("the loop goes on", || {
        seen.load(std::sync::atomic::Ordering::Relaxed) > before
    });
}

/// The task a connect runs as is listed with the caller's line as its spawn site, and
/// belongs to the connection it made: the inspector names the code that connected, not
/// the library's.
#[test]
fn a_connects_task_names_the_callers_line_and_its_connection() {
    let server = spawn_reactor(listen_echo);
    let echo = server.value;
    let (tx, rx) = std::sync::mpsc::channel();
    server.handle.call_from_thread(move || {
        let reactor = Reactor::current();
        let connecting = reactor.connect_as("client", &format!("tcp:{echo}"), Echo);
        let line = line!() - 1;
        reactor.clone().spawn(async move {
            let transport = connecting.await.expect("connected");
            let id = transport.info().id;
            let tasks: Vec<_> = weft::tasks::pending_tasks()
                .iter()
                .filter(|t| t.kind == weft::tasks::TaskKind::Connection)
                .filter(|t| t.figures.connection == Some(id))
                .map(|t| (t.site.0.file().to_owned(), t.site.0.line()))
                .collect();
            tx.send((tasks, line)).unwrap();
        });
    });
    let (tasks, line) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(tasks, [(file!().to_owned(), line)]);
}
