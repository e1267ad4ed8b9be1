//! Readiness: whether every listener the program expects is up and the reactor serves.
//!
//! The program names the endpoints it is about to listen on ([`Hub::expect_listener`]);
//! the reactor's `ListenerStarted`/`ListenerStopped` events tick them off; the reactor
//! running marks the start of serving and its shutdown the end. Ready means all three:
//! serving, not stopping, and nothing expected missing. `/healthz` says the process is
//! alive; this is what `/readyz` reports.
//!
//! [`Hub::expect_listener`]: crate::Hub::expect_listener

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

use serde::Serialize;

/// Where the reactor is in its life.
const STARTING: u8 = 0;
const SERVING: u8 = 1;
const STOPPING: u8 = 2;

/// A listener: its service and the endpoint string it was asked for.
type Key = (String, String);

/// The expected listeners, those up now, and the reactor's phase.
#[derive(Debug, Default)]
pub(crate) struct Readiness {
    /// Starting, serving or stopping: `/readyz` is ready only while serving, whatever listens.
    phase: AtomicU8,
    listeners: Mutex<Listeners>,
}

#[derive(Debug, Default)]
struct Listeners {
    /// The listeners the program declared (`expect_listener`); ready once each is up.
    expected: BTreeSet<Key>,
    /// How many are up per key: with several reactors, each binds its own.
    up: HashMap<Key, usize>,
}

/// What `/readyz` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadinessReport {
    /// Whether the program serves everything it expects to.
    pub ready: bool,
    /// `starting` (the reactor has not run yet, or a listener is not up), `ready`, or
    /// `stopping` (shutting down).
    pub status: &'static str,
    /// Each expected listener not up, as `service endpoint`.
    pub missing: Vec<String>,
}

impl Readiness {
    fn lock(&self) -> std::sync::MutexGuard<'_, Listeners> {
        self.listeners.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn expect(&self, service: &str, endpoint: &str) {
        self.lock()
            .expected
            .insert((service.to_owned(), endpoint.to_owned()));
    }

    /// Expects exactly `listeners` from now on; returns the services that had an expected
    /// listener and have none now.
    pub(crate) fn expect_only(&self, listeners: impl IntoIterator<Item = Key>) -> Vec<String> {
        let mut state = self.lock();
        let expected: BTreeSet<Key> = listeners.into_iter().collect();
        let services = |set: &BTreeSet<Key>| -> BTreeSet<String> {
            set.iter().map(|(service, _)| service.clone()).collect()
        };
        let gone = services(&state.expected)
            .difference(&services(&expected))
            .cloned()
            .collect();
        state.expected = expected;
        gone
    }

    pub(crate) fn listener(&self, service: &str, endpoint: &str, up: bool) {
        let key = (service.to_owned(), endpoint.to_owned());
        let mut listeners = self.lock();
        if up {
            *listeners.up.entry(key).or_default() += 1;
        } else if let Some(n) = listeners.up.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                listeners.up.remove(&key);
            }
        }
    }

    pub(crate) fn serving(&self) {
        // A shutdown that began first stays the last word.
        let _ = self
            .phase
            .compare_exchange(STARTING, SERVING, Ordering::AcqRel, Ordering::Acquire);
    }

    pub(crate) fn stopping(&self) {
        self.phase.store(STOPPING, Ordering::Release);
    }

    pub(crate) fn report(&self) -> ReadinessReport {
        let missing: Vec<String> = {
            let listeners = self.lock();
            listeners
                .expected
                .iter()
                .filter(|key| !listeners.up.contains_key(*key))
                .map(|(service, endpoint)| format!("{service} {endpoint}"))
                .collect()
        };
        let status = match self.phase.load(Ordering::Acquire) {
            STOPPING => "stopping",
            SERVING if missing.is_empty() => "ready",
            _ => "starting",
        };
        ReadinessReport {
            ready: status == "ready",
            status,
            missing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_serving_with_every_expected_listener_up_and_not_after_stopping() {
        let r = Readiness::default();
        r.expect("echo", "tcp:8000");
        r.expect("echo", "udp:8000");
        r.listener("echo", "tcp:8000", true);
        let report = r.report();
        assert_eq!((report.ready, report.status), (false, "starting"));
        assert_eq!(report.missing, ["echo udp:8000"]);

        r.listener("echo", "udp:8000", true);
        assert_eq!(r.report().status, "starting", "the reactor has not run yet");
        r.serving();
        assert!(r.report().ready);

        r.listener("echo", "tcp:8000", false);
        assert_eq!(r.report().missing, ["echo tcp:8000"]);
        r.listener("echo", "tcp:8000", true);
        assert!(r.report().ready);
        r.stopping();
        r.serving();
        assert_eq!(r.report().status, "stopping");
    }

    #[test]
    fn a_new_set_of_expected_listeners_replaces_the_old_and_names_the_services_gone() {
        let r = Readiness::default();
        r.serving();
        r.expect("echo", "tcp:8000");
        r.expect("old", "tcp:8001");
        r.listener("echo", "tcp:8000", true);
        r.listener("old", "tcp:8001", true);
        let key = |s: &str, e: &str| (s.to_owned(), e.to_owned());
        let gone = r.expect_only([key("echo", "tcp:8000"), key("new", "tcp:8002")]);
        assert_eq!(gone, ["old"]);
        assert_eq!(r.report().missing, ["new tcp:8002"]);
        r.listener("old", "tcp:8001", false);
        r.listener("new", "tcp:8002", true);
        assert!(r.report().ready);
    }
}
