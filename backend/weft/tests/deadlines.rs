//! Deadlines on real sockets: idle timeouts, closes a peer never lets finish, and the
//! per-peer cap of a listener, for protocol and async-stream listeners alike.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use weft::testing::RecordingObserver;
use weft::{Factory, ListenOptions, Protocol, Reactor, ReactorConfig, Transport, factory};
use weft_test_support::{Echo, connect, eventually, spawn_reactor, spawn_reactor_with};

fn listen(reactor: &Reactor, options: &ListenOptions, factory: impl Factory) -> SocketAddr {
    reactor
        .listen_with("svc", "tcp:0:interface=127.0.0.1", options, factory)
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A reactor that gives up a close after `close_timeout`.
fn giving_up_after(close_timeout: Duration) -> ReactorConfig {
    ReactorConfig {
        handle_signals: false,
        close_timeout,
        ..ReactorConfig::default()
    }
}

/// A reactor serving `factory` with an idle timeout of 400 ms, and what it reports.
fn observed_with_idle_timeout(
    factory: impl Factory + Send + 'static,
) -> (
    std::sync::Arc<RecordingObserver>,
    weft_test_support::Running<SocketAddr>,
) {
    let observer = RecordingObserver::new();
    let obs = observer.clone();
    let server = spawn_reactor(move |r| {
        r.set_observer(obs);
        let options = ListenOptions::new().idle_timeout(Some(Duration::from_millis(400)));
        listen(r, &options, factory)
    });
    (observer, server)
}

/// Reads until the server closes; how long that took.
/// How long after `start` the peer closed `s`.
fn time_to_close(s: &mut std::net::TcpStream, start: Instant) -> Duration {
    let mut buf = [0; 64 << 10];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return start.elapsed(),
            Err(e) => panic!("not closed: {e}"),
        }
    }
}

/// Waits for the one connection to close, which it must within `limit` of `start`, as a
/// send timeout.
fn aborted_as_send_timeout_within(observer: &RecordingObserver, start: Instant, limit: Duration) {
    eventually("the stuck output is given up", || {
        observer.count("ConnectionClosed") == 1
    });
    assert!(
        start.elapsed() < limit,
        "closed after {:?}",
        start.elapsed()
    );
    let closed = closed_event(observer);
    assert!(closed.contains("SendTimeout"), "{closed}");
}

fn closed_event(observer: &RecordingObserver) -> String {
    observer.first("ConnectionClosed").unwrap_or_default()
}

#[test]
fn a_connection_idle_past_its_timeout_is_closed_as_timed_out() {
    let (observer, server) = observed_with_idle_timeout(factory(|| Echo));
    let mut client = connect(server.value);
    // Activity keeps it open past the timeout...
    let mut last = Instant::now();
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(150));
        // The server's last activity (reading this, echoing it) comes after it.
        last = Instant::now();
        client.write_all(b"x").unwrap();
        let mut one = [0; 1];
        client.read_exact(&mut one).unwrap();
    }
    // ... and silence closes it, not before the timeout.
    let took = time_to_close(&mut client, last);
    assert!(
        (Duration::from_millis(350)..Duration::from_secs(3)).contains(&took),
        "closed {took:?} after the last byte was sent"
    );
    eventually("close reported", || observer.count("ConnectionClosed") == 1);
    assert!(
        closed_event(&observer).contains("TimedOut"),
        "{}",
        closed_event(&observer)
    );
}

/// Says goodbye at its first idle timeout and keeps the connection; closes at its second
/// (Twisted's `timeoutConnection` overridden).
struct Farewell {
    timeouts: u32,
}

impl Protocol for Farewell {
    fn data_received(&mut self, _: &Transport, _: &[u8]) {}

    fn timeout_connection(&mut self, transport: &Transport) {
        self.timeouts += 1;
        if self.timeouts == 1 {
            transport.write(b"still there?\n");
        } else {
            transport.write(b"bye\n");
            transport.lose_connection_with(weft::CloseReason::TimedOut);
        }
    }
}

/// A protocol hears its idle timeout (`timeout_connection`) rather than being closed:
/// it may write and keep the connection, and hears it again after another whole timeout
/// with nothing moving, then closes it with its reason.
#[test]
fn a_protocol_hears_its_idle_timeout_and_may_keep_the_connection() {
    let (observer, server) = observed_with_idle_timeout(factory(|| Farewell { timeouts: 0 }));
    // Before the connect: the server's first timeout runs from its accept, after it.
    let start = Instant::now();
    let mut client = connect(server.value);
    let mut said = Vec::new();
    client.read_to_end(&mut said).unwrap();
    assert_eq!(String::from_utf8_lossy(&said), "still there?\nbye\n");
    // Two timeouts of 400 ms, the second counted from the first.
    assert!(
        (Duration::from_millis(750)..Duration::from_secs(4)).contains(&start.elapsed()),
        "{:?}",
        start.elapsed()
    );
    eventually("close reported", || observer.count("ConnectionClosed") == 1);
    assert!(
        closed_event(&observer).contains("TimedOut"),
        "{}",
        closed_event(&observer)
    );
}

/// The same through an `IdleTimeout` wrapper, with no idle timeout on the listener: its
/// timer is armed again when the protocol keeps the connection.
#[test]
fn a_protocol_under_idle_timeout_hears_it_again_after_keeping_the_connection() {
    let server = spawn_reactor(|r| {
        let wrapped = factory(|| {
            weft::policies::IdleTimeout::new(Farewell { timeouts: 0 }, Duration::from_millis(300))
        });
        listen(r, &ListenOptions::new(), wrapped)
    });
    let mut client = connect(server.value);
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut said = Vec::new();
    let read = client.read_to_end(&mut said);
    assert_eq!(
        String::from_utf8_lossy(&said),
        "still there?\nbye\n",
        "{read:?}"
    );
}

/// A peer that sends and never reads an echo's answers leaves its output stuck: when the
/// idle timeout finds nothing moved, the connection is aborted then as a send timeout (its
/// peer stopped reading), not asked to close and given up a close timeout later.
#[test]
fn an_idle_connection_whose_peer_never_reads_is_aborted_at_its_idle_timeout() {
    let (observer, server) = observed_with_idle_timeout(factory(|| Echo));
    let client = connect(server.value);
    client.set_nonblocking(true).unwrap();
    let chunk = vec![7u8; 64 << 10];
    let mut sent = 0usize;
    // Until both ways' buffers are full (the echo's output blocked, then its input): from
    // the first write that cannot go on, nothing moves.
    let mut blocked_since: Option<Instant> = None;
    let start = loop {
        match (&client).write(&chunk) {
            Ok(n) => {
                sent += n;
                blocked_since = None;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let since = *blocked_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(100) {
                    break since;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(sent > 256 << 10, "{sent}");
    // The idle timeout is 400 ms, the close timeout 10 s.
    aborted_as_send_timeout_within(&observer, start, Duration::from_secs(3));
}

/// Writes 16 MiB when connected, under a send timeout of 400 ms and no idle timeout.
struct Flooding;

impl Protocol for Flooding {
    fn connection_made(&mut self, transport: &Transport) {
        transport.set_send_timeout(Some(Duration::from_millis(400)));
        transport.write(&vec![3u8; 16 << 20]);
    }

    fn data_received(&mut self, _: &Transport, _: &[u8]) {}
}

/// Sets a send timeout of 400 ms and no idle timeout, and writes nothing.
struct Quiet;

impl Protocol for Quiet {
    fn connection_made(&mut self, transport: &Transport) {
        transport.set_send_timeout(Some(Duration::from_millis(400)));
    }

    fn data_received(&mut self, _: &Transport, _: &[u8]) {}
}

/// A send timeout without an idle timeout gives up output a peer stopped reading (as
/// `SendTimeout`), and nothing else: a quiet connection with nothing to send stays.
#[test]
fn a_send_timeout_gives_up_output_the_peer_does_not_read_and_leaves_a_quiet_connection() {
    let observer = RecordingObserver::new();
    let obs = observer.clone();
    let server = spawn_reactor(move |r| {
        r.set_observer(obs);
        let flood = listen(r, &ListenOptions::new(), factory(|| Flooding));
        let quiet = listen(r, &ListenOptions::new(), factory(|| Quiet));
        (flood, quiet)
    });
    let (flood, quiet) = server.value;
    let quiet_client = connect(quiet);
    let start = Instant::now();
    let _never_reads = connect(flood);
    aborted_as_send_timeout_within(&observer, start, Duration::from_secs(3));
    // Past three of its send timeouts, the quiet connection is open still.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        observer.count("ConnectionClosed"),
        1,
        "{}",
        closed_event(&observer)
    );
    quiet_client.set_nonblocking(true).unwrap();
    let read = (&quiet_client).read(&mut [0; 8]);
    assert!(
        matches!(&read, Err(e) if e.kind() == ErrorKind::WouldBlock),
        "{read:?}"
    );
}

/// Echoes each length-prefixed string.
struct Strings;

impl weft::framing::StringHandler for Strings {
    fn string_received(&mut self, transport: &Transport, data: &[u8]) {
        weft::framing::send_int16_string(transport, data);
    }
}

/// A length prefix that lies (announcing 500 bytes, then 4 and silence) leaves a string
/// unfinished when the idle timeout closes the connection: closed as timed out, and
/// counted as bad framing, as a string trickled past its time or cut by an end of stream
/// is.
#[test]
fn a_string_left_unfinished_at_the_idle_timeout_is_bad_framing() {
    let (observer, server) =
        observed_with_idle_timeout(factory(|| weft::framing::Int16StringReceiver::new(Strings)));
    let mut client = connect(server.value);
    client.write_all(b"\x00\x02hi").unwrap();
    let mut echoed = [0; 4];
    client.read_exact(&mut echoed).unwrap();
    client.write_all(b"\x01\xf4abcd").unwrap();
    time_to_close(&mut client, Instant::now());
    eventually("close reported", || observer.count("ConnectionClosed") == 1);
    assert!(closed_event(&observer).contains("TimedOut"));
    let errors: Vec<_> = observer
        .events()
        .into_iter()
        .filter(|e| e.contains("ProtocolError"))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("BadFrame") && errors[0].contains("4 bytes of a 500-byte string"),
        "{errors:?}"
    );
}

/// Echoes, and counts only `!` as activity for its idle timeout.
struct Marking;

impl Protocol for Marking {
    fn connection_made(&mut self, transport: &Transport) {
        transport.count_activity_by_marks();
    }
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        if data.contains(&b'!') {
            transport.mark_activity();
        }
        transport.write(data);
    }
}

#[test]
fn a_protocol_counting_activity_by_marks_is_idle_whatever_bytes_move_between_marks() {
    let server = spawn_reactor(|r| {
        let options = ListenOptions::new().idle_timeout(Some(Duration::from_millis(400)));
        listen(r, &options, factory(|| Marking))
    });
    let exchange = |client: &mut std::net::TcpStream, byte: u8| {
        client.write_all(&[byte])?;
        let mut one = [0; 1];
        client.read_exact(&mut one)
    };
    // Marks keep it open past the timeout...
    let mut marking = connect(server.value);
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(150));
        exchange(&mut marking, b'!').unwrap();
    }
    // ... and bytes that are not marked, both ways, do not.
    let mut chatty = connect(server.value);
    let start = Instant::now();
    let mut moved = 0;
    while exchange(&mut chatty, b'x').is_ok() && start.elapsed() < Duration::from_secs(5) {
        moved += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = start.elapsed();
    assert!(
        moved > 3 && took < Duration::from_secs(3),
        "closed after {took:?}, {moved} bytes echoed; the idle timeout is 400 ms"
    );
}

/// Writes 16 MiB as soon as it connects, then closes, or only shuts its write side (a
/// proxy passing on its upstream's end of stream), reading on.
struct Flood {
    half_close: bool,
}

impl Protocol for Flood {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write(&vec![0; 16 << 20]);
        if self.half_close {
            transport.lose_write_connection();
        } else {
            transport.lose_connection();
        }
    }
    fn data_received(&mut self, _: &Transport, _: &[u8]) {}
}

/// A [`Flood`] to a client that never reads is given up within 2 s with a close timeout of
/// 300 ms, and reported as a send timeout.
fn flood_is_given_up(half_close: bool) {
    let observer = RecordingObserver::new();
    let obs = observer.clone();
    let config = giving_up_after(Duration::from_millis(300));
    let server = spawn_reactor_with(config, move |r| {
        r.set_observer(obs);
        listen(
            r,
            &ListenOptions::new(),
            factory(move || Flood { half_close }),
        )
    });
    let client = connect(server.value);
    let start = Instant::now();
    aborted_as_send_timeout_within(&observer, start, Duration::from_secs(2));
    drop(client);
}

#[test]
fn a_close_whose_peer_never_reads_is_aborted_after_the_close_timeout() {
    flood_is_given_up(false);
}

#[test]
fn a_half_close_whose_peer_never_reads_is_aborted_after_the_close_timeout() {
    flood_is_given_up(true);
}

#[test]
fn a_close_that_waits_on_its_own_exchange_is_not_given_up() {
    let config = giving_up_after(Duration::from_millis(200));
    let server = spawn_reactor_with(config, |r| {
        r.listen_stream("svc", "tcp:0:interface=127.0.0.1", |mut s| async move {
            use tokio::io::AsyncWriteExt;
            // Asked to close, then busy well past the close timeout with nothing to send.
            s.keep_reading_when_closing();
            s.transport().lose_connection();
            tokio::time::sleep(Duration::from_millis(800)).await;
            let _ = s.write_all(b"late").await;
        })
        .unwrap()
        .local_addr()
        .unwrap()
    });
    let mut client = connect(server.value);
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, b"late");
}

#[test]
fn a_peer_over_the_cap_is_refused_by_protocol_and_stream_listeners_alike() {
    let observer = RecordingObserver::new();
    let obs = observer.clone();
    let server = spawn_reactor(move |r| {
        r.set_observer(obs);
        // One limit shared by both listeners: the peer's connections count across them.
        let options = ListenOptions::new().max_connections_per_peer(Some(2));
        let protocol = listen(r, &options, factory(|| Echo));
        let stream = r
            .listen_stream_with(
                "svc",
                "tcp:0:interface=127.0.0.1",
                &options,
                |mut s| async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0; 16];
                    while let Ok(n @ 1..) = s.read(&mut buf).await {
                        let _ = s.write_all(&buf[..n]).await;
                    }
                },
            )
            .unwrap()
            .local_addr()
            .unwrap();
        (protocol, stream)
    });
    let (protocol, stream) = server.value;
    let echoes = |addr| {
        let mut s = connect(addr);
        let mut one = [0; 1];
        let ok = s.write_all(b"1").is_ok() && s.read_exact(&mut one).is_ok();
        (s, ok)
    };
    let (first, ok) = echoes(protocol);
    assert!(ok);
    let (second, ok) = echoes(stream);
    assert!(ok);
    let (_, ok) = echoes(stream);
    assert!(!ok, "a third from the same peer is refused");
    let (_, ok) = echoes(protocol);
    assert!(!ok, "on either listener");
    eventually("refusals reported", || observer.count("Refused") == 2);
    assert!(
        observer
            .events()
            .iter()
            .filter(|e| e.contains("Refused"))
            .all(|e| e.contains("limit_peer")),
        "{:?}",
        observer.events()
    );
    drop((first, second));
    eventually("slots free as connections close", || echoes(stream).1);
}

/// Writes 16 MiB as soon as it connects, the kernel asked to hold little of it unsent
/// (a zone transfer's way).
struct Source;

impl Protocol for Source {
    fn connection_made(&mut self, transport: &Transport) {
        transport.set_tcp_notsent_lowat(weft::transport::NOTSENT_LOWAT);
        transport.write(&vec![7; 16 << 20]);
    }
    fn data_received(&mut self, _: &Transport, _: &[u8]) {}
}

#[test]
fn a_peer_reading_slowly_is_not_idle_while_the_kernel_holds_what_was_written() {
    // 600 KB/s: well under what frees a third of a grown send buffer within the idle
    // timeout, and well over what the kernel wants taken before it says the socket is
    // writable again with `NOTSENT_LOWAT` (the unsent bytes below half of it, from up to
    // the mark and a segment's worth over: 100 to 170 KB, measured with `strace`).
    const RATE: usize = 600_000;
    let observer = RecordingObserver::new();
    let obs = observer.clone();
    let config = giving_up_after(Duration::from_millis(300));
    let server = spawn_reactor_with(config, move |r| {
        r.set_observer(obs);
        let options = ListenOptions::new().idle_timeout(Some(Duration::from_millis(1000)));
        listen(r, &options, factory(|| Source))
    });
    // A receive buffer of its own size: one the kernel grows to megabytes opens the
    // window again only once a sixteenth of it is free, seconds at this rate.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(64 << 10).unwrap();
    socket.connect(&server.value.into()).unwrap();
    let mut client = std::net::TcpStream::from(socket);
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let start = Instant::now();
    let mut taken = 0;
    let mut buf = [0; 4096];
    // Five idle timeouts of steady reading: first the kernel's buffers fill, then they
    // drain only as fast as this reads.
    while start.elapsed() < Duration::from_secs(5) {
        let due = Duration::from_secs_f64(taken as f64 / RATE as f64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        match client.read(&mut buf) {
            Ok(0) => panic!("closed after {taken} bytes in {:?}", start.elapsed()),
            Ok(n) => taken += n,
            Err(e) => panic!(
                "{e} after {taken} bytes in {:?}: {}",
                start.elapsed(),
                closed_event(&observer)
            ),
        }
    }
    assert_eq!(
        observer.count("ConnectionClosed"),
        0,
        "{}",
        closed_event(&observer)
    );
    // A peer that stops reading is idle, and its connection given up.
    eventually("the stalled reader is cut off", || {
        observer.count("ConnectionClosed") == 1
    });
    let closed = closed_event(&observer);
    assert!(closed.contains("SendTimeout"), "{closed}");
}

/// Writes 16 MiB as soon as it connects, and waits.
struct Hose;

impl Protocol for Hose {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write(&vec![0; 16 << 20]);
    }
    fn data_received(&mut self, _: &Transport, _: &[u8]) {}
}

#[test]
fn a_connection_waiting_for_its_peer_to_read_is_not_stalled() {
    let observer = RecordingObserver::new();
    let obs = observer.clone();
    let config = ReactorConfig {
        handle_signals: false,
        stall_after: Duration::from_millis(200),
        ..ReactorConfig::default()
    };
    let server = spawn_reactor_with(config, move |r| {
        r.set_observer(obs);
        listen(r, &ListenOptions::new(), factory(|| Hose))
    });
    // Never read: the output blocks at once, for seven stall thresholds.
    let client = connect(server.value);
    std::thread::sleep(Duration::from_millis(1500));
    let stalls: Vec<_> = observer
        .events()
        .into_iter()
        .filter(|e| e.contains("Stalled"))
        .collect();
    assert!(stalls.is_empty(), "{stalls:?}");
    drop(client);
}

/// Writes 16 KiB to every other connection of the room for each byte it reads: a
/// broadcast, which back-pressure does not slow (it comes from elsewhere than the
/// reader's own callbacks).
struct Broadcaster {
    room: std::rc::Rc<std::cell::RefCell<Vec<Transport>>>,
}

impl Protocol for Broadcaster {
    fn connection_made(&mut self, transport: &Transport) {
        // Below the high-water mark (64 KiB): the limit holds on its own.
        transport.set_max_buffered(Some(32 << 10));
        self.room.borrow_mut().push(transport.clone());
    }
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        let others: Vec<Transport> = self
            .room
            .borrow()
            .iter()
            .filter(|t| t.id() != transport.id())
            .cloned()
            .collect();
        for _ in data {
            for other in &others {
                other.write(&[1; 16 << 10]);
            }
        }
    }
}

/// A peer that never reads, written to from another connection's callbacks, is cut off
/// once more than its buffer's limit is unsent (`send_buffer_full`), and the writer goes
/// on: back-pressure alone would have let its buffer grow for as long as the other
/// connection sent.
#[test]
fn a_peer_written_to_from_elsewhere_is_cut_off_at_its_buffer_limit() {
    let observer = RecordingObserver::new();
    let obs = observer.clone();
    let server = spawn_reactor(move |r| {
        r.set_observer(obs);
        let room = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        listen(
            r,
            &ListenOptions::new(),
            factory(move || Broadcaster { room: room.clone() }),
        )
    });
    let silent = connect(server.value);
    let mut talker = connect(server.value);
    eventually("both in the room", || {
        observer.count("ConnectionOpened") == 2
    });
    // 32 MiB for the silent one, far past what the kernel holds for it; each write
    // below the limit, which only writes piling up pass.
    for _ in 0..8 {
        talker.write_all(&[b'x'; 256]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    eventually("the silent peer is cut off", || {
        observer.count("ConnectionClosed") == 1
    });
    let closed = closed_event(&observer);
    assert!(closed.contains("SendBufferFull"), "{closed}");
    // The talker is still served.
    talker.write_all(b"y").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(observer.count("ConnectionClosed"), 1);
    drop(silent);
}
