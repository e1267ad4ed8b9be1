//! Reconnecting with back-off: Twisted's `ReconnectingClientFactory`.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use super::client::{ClientFactory, Connector};
use super::connect::ConnectError;
use crate::address::Address;
use crate::observe::CloseReason;
use crate::protocol::{Factory, Protocol};
use crate::time::{DelayedCall, call_later};

/// Reconnects with exponential back-off (Twisted's `ReconnectingClientFactory`).
///
/// Each failure or loss multiplies the delay by `factor` (with random `jitter`), up to
/// `max_delay`; a successful connection resets it. Gives up after `max_retries`. Unlike
/// Twisted's, a connection made resets the back-off by itself (Twisted's protocol calls
/// `resetDelay` once satisfied), the first retry waits `initial_delay` (Twisted's
/// `initialDelay` times `factor`), and nothing is retried once the reactor is shutting
/// down.
pub struct ReconnectingClientFactory<F> {
    inner: F,
    /// First retry delay.
    pub initial_delay: Duration,
    /// Multiplier per retry (Twisted: e).
    pub factor: f64,
    /// Relative random spread of each delay (Twisted: 0.1196…).
    pub jitter: f64,
    /// Upper bound on the delay.
    pub max_delay: Duration,
    /// Give up after this many consecutive retries.
    pub max_retries: Option<u32>,
    /// The wait before the next retry: grows by `factor` per retry, back to `initial_delay` on
    /// success.
    delay: Cell<Duration>,
    /// Consecutive retries since the last success, checked against `max_retries`.
    retries: Cell<u32>,
    /// Cleared by `stop_trying` or when `max_retries` is exceeded: no more retries are scheduled.
    trying: Cell<bool>,
    /// The scheduled retry, kept so `stop_trying` can cancel it.
    pending: RefCell<Option<DelayedCall>>,
}

impl<F: Factory> ReconnectingClientFactory<F> {
    /// Wraps a protocol factory with Twisted's default policy.
    pub fn new(inner: F) -> Self {
        Self {
            inner,
            initial_delay: Duration::from_secs(1),
            factor: std::f64::consts::E,
            jitter: 0.119_626_565_582,
            max_delay: Duration::from_secs(3600),
            max_retries: None,
            delay: Cell::new(Duration::from_secs(1)),
            retries: Cell::new(0),
            trying: Cell::new(true),
            pending: RefCell::new(None),
        }
    }

    /// Sets the first delay.
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self.delay.set(delay);
        self
    }

    /// Sets the growth factor, jitter, cap and retry limit.
    pub fn policy(
        mut self,
        factor: f64,
        jitter: f64,
        max_delay: Duration,
        max_retries: Option<u32>,
    ) -> Self {
        self.factor = factor;
        self.jitter = jitter;
        self.max_delay = max_delay;
        self.max_retries = max_retries;
        self
    }

    /// Retries so far since the last success.
    pub fn retries(&self) -> u32 {
        self.retries.get()
    }

    /// The delay the next retry scheduled will wait: read in `client_connection_failed`
    /// (or `_lost`) before handing the event on, the wait of the retry that event
    /// schedules; read after, the wait of the one after it. `initial_delay` after a
    /// success.
    pub fn current_delay(&self) -> Duration {
        self.delay.get()
    }

    /// Resets the back-off, as after a successful connection.
    pub fn reset_delay(&self) {
        self.delay.set(self.initial_delay);
        self.retries.set(0);
    }

    /// Stops retrying and cancels a scheduled retry.
    pub fn stop_trying(&self) {
        self.trying.set(false);
        if let Some(call) = self.pending.borrow_mut().take() {
            let _ = call.cancel();
        }
    }

    fn retry(&self, connector: &Connector) {
        // At shutdown the drain closes the connection, or cancels the attempt under way:
        // nothing to come back to.
        let stopping = crate::Reactor::try_current().is_some_and(|r| r.is_shutting_down());
        if !self.trying.get() || stopping {
            return;
        }
        let retries = self.retries.get() + 1;
        self.retries.set(retries);
        if self.max_retries.is_some_and(|max| retries > max) {
            tracing::info!(destination = ?connector.destination(), retries = retries - 1, "giving up reconnecting");
            self.trying.set(false);
            return;
        }
        // The first retry since a success waits `initial_delay` as it is now: a program may
        // have set the field after `new`.
        let current = if retries == 1 {
            self.initial_delay
        } else {
            self.delay.get()
        };
        let grown = current.as_secs_f64() * self.factor;
        let capped = grown.min(self.max_delay.as_secs_f64());
        let spread = capped * self.jitter * (fastrand::f64() * 2.0 - 1.0);
        let delay =
            Duration::from_secs_f64((capped + spread).clamp(0.0, self.max_delay.as_secs_f64()));
        self.delay.set(delay);
        let wait = current;
        let connector = connector.clone();
        *self.pending.borrow_mut() = Some(call_later(wait, move || connector.connect()));
    }
}

impl<F: Factory> Factory for ReconnectingClientFactory<F> {
    fn build_protocol(&self, peer: &Address) -> Option<Box<dyn Protocol>> {
        self.inner.build_protocol(peer)
    }
}

impl<F: Factory> ClientFactory for ReconnectingClientFactory<F> {
    fn client_connection_failed(&self, connector: &Connector, _reason: &ConnectError) {
        self.retry(connector);
    }
    /// A connection made, its TLS handshake done, is a success: the next loss retries
    /// from `initial_delay` (a server that accepts and then fails every handshake is
    /// retried with growing delays, and `max_retries` counts those attempts).
    fn client_connection_made(&self, _connector: &Connector) {
        self.reset_delay();
    }
    fn client_connection_lost(&self, connector: &Connector, _reason: &CloseReason) {
        self.retry(connector);
    }
}
