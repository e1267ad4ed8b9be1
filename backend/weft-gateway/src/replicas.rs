//! The services of reactors 1 to N-1 (`[gateway] reactors`): each reactor serves every
//! service of the configuration on the same addresses as reactor 0, with a [`Running`]
//! of its own kept on its thread. Reactor 0 owns the reloads: once it has applied a
//! configuration, it sends what it applied to the others, one after the other, and waits
//! for each.

use std::cell::RefCell;
use std::sync::Arc;

use weft::{Phase, Reactor, ReactorHandle};
use weft_inspector::QuerySpans;
use weft_store::Store;
use weft_telemetry::Hub;

use crate::config::Config;
use crate::running::{Running, StartError};

thread_local! {
    /// This reactor's services, when it is not reactor 0.
    static RUNNING: RefCell<Option<Running>> = const { RefCell::new(None) };
}

/// Serves every service of `config` on `reactor` (not reactor 0), reporting to `hub`;
/// DNS query logs go to `store` and `query_spans`.
pub fn start(
    reactor: &Reactor,
    hub: Arc<Hub>,
    store: Option<Store>,
    query_spans: Option<QuerySpans>,
    config: &Config,
    access_logs: weft_web::AccessLogFiles,
) -> Result<(), StartError> {
    hub.install(reactor);
    let running = Running::start_replica(reactor, hub, store, query_spans, config, access_logs)?;
    RUNNING.with(|r| *r.borrow_mut() = Some(running));
    // Let the services go with the reactor, not with the thread's last destructors.
    reactor.add_shutdown_hook(Phase::After, || {
        RUNNING.with(|r| r.borrow_mut().take());
    });
    Ok(())
}

/// The other reactors, for reactor 0's reloads.
#[derive(Debug, Clone, Default)]
pub struct Replicas(Vec<ReactorHandle>);

impl Replicas {
    /// The reactors of `handles` other than reactor 0 (the first).
    pub fn new(handles: Vec<ReactorHandle>) -> Self {
        Self(handles.into_iter().skip(1).collect())
    }

    /// Applies `config` (what reactor 0 applied) on every other reactor; returns what
    /// failed, by reactor.
    pub async fn apply(&self, config: &Config) -> Vec<String> {
        let mut failures = Vec::new();
        for (i, handle) in self.0.iter().enumerate() {
            let index = i + 1;
            let (tx, rx) = tokio::sync::oneshot::channel();
            let config = config.clone();
            let queued = handle.try_call_from_thread(move || {
                let result = RUNNING.with(|r| match r.borrow_mut().as_mut() {
                    Some(running) => running.apply(config).map(drop).map_err(|e| e.to_string()),
                    None => Err("its services have stopped".into()),
                });
                let _ = tx.send(result);
            });
            let result = match (queued, rx.await) {
                (Err(refused), _) => Err(refused.to_string()),
                (Ok(()), Ok(result)) => result,
                (Ok(()), Err(_)) => Err("the reactor has stopped".into()),
            };
            if let Err(error) = result {
                tracing::error!(reactor = index, %error, "reactor {index} did not apply the reload");
                failures.push(format!("reactor {index} did not apply it: {error}"));
            }
        }
        failures
    }
}
