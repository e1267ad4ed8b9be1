//! Shared helpers for the socket tests: a reactor on its own thread.

#![allow(dead_code, unreachable_pub)]

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use weft::{Reactor, ReactorConfig, ReactorHandle};

/// A reactor running on a background thread; stopped and joined on drop.
pub struct Running<T> {
    /// The reactor's thread-safe handle.
    pub handle: ReactorHandle,
    /// What the setup closure returned.
    pub value: T,
    thread: Option<JoinHandle<()>>,
}

impl<T> Running<T> {
    /// Stops the reactor and waits for its thread.
    pub fn stop(mut self) {
        self.handle.stop();
        if let Some(t) = self.thread.take() {
            t.join().expect("reactor thread panicked");
        }
    }
}

impl<T> Drop for Running<T> {
    fn drop(&mut self) {
        self.handle.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts a reactor on a new thread, runs `setup` on it before `run`, and hands back
/// what `setup` returned.
pub fn spawn_reactor<T, F>(setup: F) -> Running<T>
where
    T: Send + 'static,
    F: FnOnce(&Reactor) -> T + Send + 'static,
{
    spawn_reactor_with(
        ReactorConfig {
            handle_signals: false,
            shutdown_deadline: Duration::from_secs(2),
            ..ReactorConfig::default()
        },
        setup,
    )
}

/// [`spawn_reactor`] with a configuration of the test's own.
pub fn spawn_reactor_with<T, F>(config: ReactorConfig, setup: F) -> Running<T>
where
    T: Send + 'static,
    F: FnOnce(&Reactor) -> T + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let reactor = Reactor::with_config(config).expect("reactor");
        let value = setup(&reactor);
        tx.send((reactor.handle(), value)).expect("send setup");
        reactor.run().expect("run");
    });
    let (handle, value) = rx.recv().expect("reactor setup");
    Running {
        handle,
        value,
        thread: Some(thread),
    }
}

/// Waits until `cond` holds, failing with `what` after five seconds.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A blocking client with a read timeout, so a broken server fails the test instead of
/// hanging it.
pub fn connect(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// The ids of the connections the reactor has open now.
pub fn open_ids(handle: &ReactorHandle) -> Vec<weft::observe::ConnectionId> {
    let (tx, rx) = mpsc::channel();
    handle.call_from_thread(move || {
        let ids = Reactor::current()
            .connections()
            .iter()
            .map(|t| t.id())
            .collect();
        tx.send(ids).unwrap();
    });
    rx.recv().unwrap()
}
