//! The in-memory test doubles, and policies tested through them without sockets.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use weft::testing::{Clock, StringTransport, loopback};
use weft::{
    ClientFactory, CloseReason, ConnectError, Protocol, PushProducer, Reactor,
    ReconnectingClientFactory, Transport, factory,
};
use weft_test_support::Echo;

/// Says hello, collects the answer, hangs up after three bytes.
#[derive(Default)]
struct Greeter {
    got: Vec<u8>,
    lost: Option<CloseReason>,
}

impl Protocol for Greeter {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write(b"hey");
    }
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        self.got.extend_from_slice(data);
        if self.got.len() >= 3 {
            transport.lose_connection();
        }
    }
    fn connection_lost(&mut self, reason: &CloseReason) {
        self.lost = Some(reason.clone());
    }
}

#[test]
fn loopback_connects_two_protocols_in_memory() {
    let mut pair = loopback(Greeter::default(), Echo);
    assert!(pair.pump());
    assert_eq!(pair.client.got, b"hey");
    assert!(pair.is_closed());
    assert_eq!(pair.client.lost, Some(CloseReason::Done));
    assert!(!pair.pump());
}

#[derive(Default)]
struct Producer {
    paused: Cell<bool>,
    pauses: Cell<u32>,
}

impl PushProducer for Producer {
    fn pause_producing(&self) {
        self.paused.set(true);
        self.pauses.set(self.pauses.get() + 1);
    }
    fn resume_producing(&self) {
        self.paused.set(false);
    }
    fn stop_producing(&self) {}
}

#[test]
fn back_pressure_pauses_the_producer_above_high_water_and_resumes_below_low() {
    let mut wire = StringTransport::new();
    let transport = wire.transport().clone();
    transport.set_water_marks(100, 10);
    let producer = Rc::new(Producer::default());
    transport.register_producer(producer.clone()).unwrap();
    assert!(
        transport.register_producer(producer.clone()).is_err(),
        "a second producer is refused, as in Twisted"
    );
    transport.write(&[0; 60]);
    assert!(!producer.paused.get());
    transport.write(&[0; 60]);
    assert!(producer.paused.get());
    transport.write(&[0; 60]);
    assert_eq!(producer.pauses.get(), 1, "paused once, not per write");
    assert_eq!(wire.value().len(), 180);
    assert!(
        !producer.paused.get(),
        "draining the buffer resumes the producer"
    );
}

#[test]
fn without_a_producer_the_transport_pauses_its_own_reading() {
    let mut wire = StringTransport::new();
    let transport = wire.transport().clone();
    transport.set_water_marks(100, 10);
    let mut echo = Echo;
    wire.receive(&mut echo, &[1; 150]);
    assert!(transport.is_reading_paused());
    wire.clear();
    assert!(!transport.is_reading_paused());
}

#[test]
fn write_sequence_takes_slices_vectors_and_strings() {
    let mut wire = StringTransport::new();
    let t = wire.transport().clone();
    t.write_sequence([&b"a"[..], b"bc"]);
    t.write_sequence(vec![b"d".to_vec(), b"ef".to_vec()]);
    t.write_sequence(["g", "h"]);
    assert_eq!(wire.value(), b"abcdefgh");
}

#[test]
fn writes_after_lose_connection_are_kept_until_the_close_as_twisted_s_are() {
    let mut wire = StringTransport::new();
    let t = wire.transport().clone();
    t.write(b"a");
    t.lose_connection();
    t.write(b"b");
    assert_eq!(wire.value(), b"ab");
    assert!(wire.disconnecting());
    wire.lose(&mut Echo, CloseReason::Done);
    t.write(b"c");
    assert_eq!(wire.value(), b"ab");
}

#[test]
fn reconnecting_factory_backs_off_and_resets_on_success() {
    // The reactor never runs: connection attempts are queued, never made; the fake
    // clock decides when retries are scheduled.
    let reactor = Reactor::new().unwrap();
    let clock = Clock::fake();
    let _g = clock.install();
    let policy = Rc::new(
        ReconnectingClientFactory::new(factory(|| Echo))
            .initial_delay(Duration::from_secs(1))
            .policy(2.0, 0.0, Duration::from_secs(5), Some(4)),
    );
    let connector = reactor
        .connect_with("tcp:127.0.0.1:9", policy.clone())
        .unwrap();
    let failed = ConnectError::Refused {
        endpoint: "tcp:127.0.0.1:9".into(),
    };
    let mut waits = Vec::new();
    for _ in 0..6 {
        policy.client_connection_failed(&connector, &failed);
        if let Some(call) = clock.pending_calls().first() {
            waits.push(call.time() - clock.now());
            call.cancel().unwrap();
        }
    }
    let secs: Vec<u64> = waits.iter().map(Duration::as_secs).collect();
    assert_eq!(
        secs,
        [1, 2, 4, 5],
        "doubling, capped at 5s, four retries then give up"
    );
    assert_eq!(policy.retries(), 5);

    // A connection made resets the back-off.
    policy.client_connection_made(&connector);
    assert_eq!(policy.retries(), 0);
    assert_eq!(policy.current_delay(), Duration::from_secs(1));
}

#[test]
fn reconnecting_factory_waits_the_initial_delay_set_on_its_field() {
    let reactor = Reactor::new().unwrap();
    let clock = Clock::fake();
    let _g = clock.install();
    let mut policy = ReconnectingClientFactory::new(factory(|| Echo)).policy(
        2.0,
        0.0,
        Duration::from_secs(60),
        None,
    );
    policy.initial_delay = Duration::from_millis(250);
    let policy = Rc::new(policy);
    let connector = reactor
        .connect_with("tcp:127.0.0.1:9", policy.clone())
        .unwrap();
    let failed = ConnectError::Refused {
        endpoint: "tcp:127.0.0.1:9".into(),
    };
    let mut waits = Vec::new();
    for _ in 0..3 {
        policy.client_connection_failed(&connector, &failed);
        let call = clock.pending_calls().first().cloned().unwrap();
        waits.push(call.time() - clock.now());
        call.cancel().unwrap();
    }
    let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
    assert_eq!(ms, [250, 500, 1000]);
}

#[test]
fn call_later_and_stop_run_on_a_real_reactor() {
    let reactor = Reactor::with_config(weft::ReactorConfig {
        handle_signals: false,
        ..Default::default()
    })
    .unwrap();
    let fired = Rc::new(Cell::new(0));
    let f = fired.clone();
    let cancelled = reactor.call_later(Duration::from_millis(5), || panic!("cancelled call ran"));
    cancelled.cancel().unwrap();
    reactor.call_later(Duration::from_millis(10), move || {
        f.set(f.get() + 1);
        Reactor::current().stop();
    });
    let started = std::time::Instant::now();
    reactor.run().unwrap();
    assert_eq!(fired.get(), 1);
    assert!(started.elapsed() >= Duration::from_millis(10));
    assert!(matches!(
        reactor.run(),
        Err(weft::ReactorError::NotRestartable)
    ));
}

#[test]
fn call_from_thread_runs_on_the_reactor_thread() {
    let reactor = Reactor::with_config(weft::ReactorConfig {
        handle_signals: false,
        ..Default::default()
    })
    .unwrap();
    let handle = reactor.handle();
    let reactor_thread = std::thread::current().id();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let s = seen.clone();
    std::thread::spawn(move || {
        handle.call_from_thread(move || {
            *s.lock().unwrap() = Some(std::thread::current().id());
            Reactor::current().stop();
        });
    });
    reactor.run().unwrap();
    assert_eq!(*seen.lock().unwrap(), Some(reactor_thread));
}

/// Sends its file and asks to close at once; the close waits for the file.
struct Sends(Vec<u8>);

impl Protocol for Sends {
    fn connection_made(&mut self, transport: &Transport) {
        let file = std::io::Cursor::new(std::mem::take(&mut self.0));
        let _sent = weft::framing::FileSender::begin_file_transfer(file, transport);
        transport.lose_connection();
    }
    fn data_received(&mut self, _transport: &Transport, _data: &[u8]) {}
}

#[derive(Default)]
struct Collects(Rc<std::cell::RefCell<Vec<u8>>>);

impl Protocol for Collects {
    fn data_received(&mut self, _transport: &Transport, data: &[u8]) {
        self.0.borrow_mut().extend_from_slice(data);
    }
}

#[test]
fn loopback_pumps_a_pull_producer_and_a_close_waits_for_it() {
    let file: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let got = Rc::new(std::cell::RefCell::new(Vec::new()));
    let mut wire = loopback(Collects(got.clone()), Sends(file.clone()));
    wire.pump();
    assert!(wire.is_closed());
    assert!(
        *got.borrow() == file,
        "{} of {} bytes",
        got.borrow().len(),
        file.len()
    );

    // And by hand: StringTransport asks again once what was written is taken.
    let mut one = StringTransport::new();
    let mut sends = Sends(vec![7; 40_000]);
    one.connect(&mut sends);
    let chunk = weft::framing::FileSender::CHUNK_SIZE;
    assert!(!one.produce(), "its first chunk not taken yet: not asked");
    assert_eq!(one.value().len(), chunk, "the first chunk, at once");
    assert!(one.produce(), "asked again once the chunk was taken");
    assert_eq!(one.value().len(), 2 * chunk);
    assert!(one.produce());
    assert_eq!(one.value().len(), 40_000, "the rest");
    assert!(one.produce(), "asked: finds the end and unregisters");
    assert!(!one.produce());
}

/// A connection the shutdown's drain closes is not retried: the factory counts no retry
/// and schedules none (it scheduled one, and logged an attempt cancelled, as the reactor
/// stopped).
#[test]
fn reconnecting_factory_does_not_retry_what_the_shutdown_closes() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let reactor = Reactor::with_config(weft::ReactorConfig {
        handle_signals: false,
        shutdown_deadline: Duration::from_secs(2),
        ..Default::default()
    })
    .unwrap();
    let policy = Rc::new(ReconnectingClientFactory::new(factory(|| Echo)));
    let connector = reactor
        .connect_with(&format!("tcp:{addr}"), policy.clone())
        .unwrap();
    // Accepted on a thread of its own: the attempt is made once the reactor runs.
    let accepting = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    reactor.call_later(Duration::from_millis(300), || Reactor::current().stop());
    reactor.run().unwrap();
    drop(accepting.join().unwrap());
    drop(connector);
    assert_eq!(policy.retries(), 0, "nothing retried at shutdown");
}
