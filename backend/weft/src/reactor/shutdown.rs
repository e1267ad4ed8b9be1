//! Shutdown in Twisted's three phases, each with a deadline.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::observe::CloseReason;

use super::Reactor;

/// Work in flight shutdown waits for ([`Reactor::hold_shutdown`]); dropping it says the
/// work is done.
#[derive(Debug)]
#[must_use = "shutdown waits only while the hold lives"]
pub struct ShutdownHold {
    _token: tokio_util::task::task_tracker::TaskTrackerToken,
}

/// When a shutdown hook runs (Twisted's system event trigger phases).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before listeners stop: the service is still reachable.
    Before,
    /// After listeners stop, while connections drain.
    During,
    /// After connections closed; last chance to flush.
    After,
}

pub(super) type HookFuture = Pin<Box<dyn Future<Output = ()>>>;
pub(super) type Hook = Box<dyn FnOnce() -> Option<HookFuture>>;

#[derive(Default)]
pub(super) struct Hooks {
    /// One list per `Phase`, indexed by the phase, so each phase's hooks run before the next phase
    /// starts.
    phases: RefCell<[Vec<Hook>; 3]>,
}

impl Hooks {
    pub(super) fn add(&self, phase: Phase, hook: Hook) {
        self.phases.borrow_mut()[phase as usize].push(hook);
    }

    fn take(&self, phase: Phase) -> Vec<Hook> {
        std::mem::take(&mut self.phases.borrow_mut()[phase as usize])
    }
}

/// Runs one phase's hooks and waits for what they return, up to `deadline`.
async fn run_phase(reactor: &Reactor, phase: Phase, extra: Option<HookFuture>) {
    let mut waits: Vec<HookFuture> = reactor
        .inner
        .hooks
        .take(phase)
        .into_iter()
        .filter_map(|hook| {
            // A panicking hook is logged and skipped; shutdown goes on.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(hook)).unwrap_or_else(|panic| {
                let message = crate::time::panic_message(&panic);
                tracing::error!(?phase, "a shutdown hook panicked: {message}");
                None
            })
        })
        .collect();
    let extra_waited = extra.is_some();
    waits.extend(extra);
    if waits.is_empty() {
        return;
    }
    let pending = waits.len();
    let deadline = reactor.inner.config.get().shutdown_deadline;
    let all = async {
        for wait in waits {
            wait.await;
        }
    };
    if tokio::time::timeout(deadline, all).await.is_err() {
        // What it waited on, by name: the drain waits for every task spawned on the
        // reactor too (one awaiting a Deferred that never fires holds it to the deadline).
        // Only the drain's phase waits on tasks; connections' own tasks are the
        // connections the drain aborts next (said then), and a task waiting on a peer (a
        // client port) is listed after those waiting on something of the program's.
        let mut tasks: Vec<_> = match extra_waited {
            true => crate::tasks::pending_tasks(),
            false => Vec::new(),
        };
        tasks.retain(|t| t.kind != crate::tasks::TaskKind::Connection);
        tasks.sort_by_key(|t| t.figures.waiting_on_peer);
        let named: Vec<String> = tasks
            .iter()
            .take(5)
            .map(|t| match t.label {
                Some(label) => format!("task {} ({label}) spawned at {}", t.id, t.site),
                None => format!("task {} spawned at {}", t.id, t.site),
            })
            .collect();
        tracing::warn!(
            ?phase,
            waited = ?deadline,
            waits = pending,
            tasks = tasks.len(),
            running = %named.join("; "),
            "shutdown phase did not finish before its deadline; going on without it"
        );
    }
}

/// The next SIGTERM or SIGINT.
pub(super) async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

pub(super) async fn run(reactor: &Reactor) {
    run_phase(reactor, Phase::Before, None).await;
    reactor.inner.listening.cancel();
    // Every connection ends gracefully: its protocol sends what it owes (answers waiting on
    // an upstream), then it closes, buffered data flushed first.
    for transport in reactor.connections() {
        transport.drain_with(CloseReason::Shutdown);
    }
    let tracker = reactor.inner.tracker.clone();
    tracker.close();
    let drained: HookFuture = Box::pin(async move { tracker.wait().await });
    let during = run_phase(reactor, Phase::During, Some(drained));
    if reactor.inner.config.get().handle_signals {
        // A second SIGTERM or SIGINT is the operator's "now": the drain is not waited for,
        // and what is still open is aborted as at its deadline.
        tokio::select! {
            () = during => {}
            () = stop_signal() => tracing::warn!(
                "a second stop signal: not waiting for the drain; aborting what is still open"
            ),
        }
    } else {
        during.await;
    }
    // Client ports (where upstream answers come back) outlive the drain.
    reactor.inner.clients.cancel();
    tokio::time::sleep(Duration::ZERO).await;
    let stuck = reactor.connections();
    if !stuck.is_empty() {
        tracing::warn!(
            connections = stuck.len(),
            "aborting connections that did not drain in time"
        );
        for transport in stuck {
            transport.abort_with(CloseReason::Shutdown);
        }
        tokio::time::sleep(Duration::ZERO).await;
    }
    run_phase(reactor, Phase::After, None).await;
}

impl Reactor {
    /// Makes shutdown wait, as for a task, until the hold is dropped (never past the
    /// drain's deadline): for work in flight that no connection stands for, such as a
    /// question out to an upstream whose answer is owed to a UDP client.
    pub fn hold_shutdown(&self) -> ShutdownHold {
        ShutdownHold {
            _token: self.inner.tracker.token(),
        }
    }

    /// Drains every open connection of `service`: its protocol sends what it owes, then it
    /// closes cleanly (what is buffered is sent first, and a close that makes no progress
    /// is aborted after the close timeout, as at shutdown), and aborts those still open
    /// `deadline` from now; returns how many it asked to close. It returns at once:
    /// nothing waits on the connections. Connections opened later, even under the same
    /// name, are not affected.
    pub fn drain_connections(
        &self,
        service: &str,
        deadline: Duration,
        reason: CloseReason,
    ) -> usize {
        self.drain(self.service_connections(service), deadline, reason)
    }

    /// Drains `connections` as [`drain_connections`](Self::drain_connections) drains a
    /// service's: for connections listed earlier (before another service took the name).
    pub fn drain(
        &self,
        connections: Vec<crate::Transport>,
        deadline: Duration,
        reason: CloseReason,
    ) -> usize {
        for transport in &connections {
            transport.drain_with(reason.clone());
        }
        let n = connections.len();
        if n > 0 {
            self.call_later(deadline, move || {
                let stuck: Vec<_> = connections.into_iter().filter(|t| !t.is_closed()).collect();
                if !stuck.is_empty() {
                    let service = stuck[0].info().service.clone();
                    tracing::warn!(
                        %service,
                        connections = stuck.len(),
                        "aborting connections that did not drain in time"
                    );
                }
                for transport in stuck {
                    transport.abort_with(reason.clone());
                }
            });
        }
        n
    }
}
