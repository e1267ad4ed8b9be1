//! A reactor beside the test: on a background thread ([`spawn_reactor`]) or on this one
//! with the client on another ([`run_with_client`]).

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use weft::observe::ConnectionId;
use weft::{Reactor, ReactorConfig, ReactorHandle};

/// A reactor running on a background thread; stopped and joined on drop.
pub struct Running<T> {
    /// The reactor's thread-safe handle.
    pub handle: ReactorHandle,
    /// What the setup closure returned.
    pub value: T,
    /// Taken by [`Running::stop`] so that drop does not join twice.
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

/// The configuration [`spawn_reactor`] uses: no signal handlers (the test runner owns
/// them) and a short shutdown deadline.
pub fn test_config() -> ReactorConfig {
    ReactorConfig {
        handle_signals: false,
        shutdown_deadline: Duration::from_secs(2),
        ..ReactorConfig::default()
    }
}

/// Starts a reactor on a new thread, runs `setup` on it before `run`, and hands back
/// what `setup` returned.
pub fn spawn_reactor<T, F>(setup: F) -> Running<T>
where
    T: Send + 'static,
    F: FnOnce(&Reactor) -> T + Send + 'static,
{
    spawn_reactor_with(test_config(), setup)
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

/// Runs the reactor here and `client` on a thread; stops when the client is done, and
/// fails with the client's panic if it panicked.
pub fn run_with_client(reactor: &Reactor, client: impl FnOnce() + Send + 'static) {
    let handle = reactor.handle();
    let thread = std::thread::spawn(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(client));
        handle.stop();
        result
    });
    reactor.run().unwrap();
    if let Err(panic) = thread.join().unwrap() {
        std::panic::resume_unwind(panic);
    }
}

/// The ids of the connections the reactor has open now.
pub fn open_ids(handle: &ReactorHandle) -> Vec<ConnectionId> {
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
