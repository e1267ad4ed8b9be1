//! [`ReactorPool`]: several reactors, one per thread, each a whole single-threaded reactor
//! with its own listening sockets on the same addresses (`SO_REUSEPORT`), so a program
//! uses more than one core while its protocol code stays single-threaded.
//!
//! Reactor 0 is built on the calling thread and set up there (it may hold what is not
//! `Send`); the others are built on threads of their own and set up one after the other
//! by the same `setup`, after reactor 0, so an endpoint asking for port 0 is given one
//! port that every reactor shares. Nothing runs until every reactor is set up: a setup
//! that fails stops the pool before anything serves.
//!
//! Stopping any reactor (SIGINT and SIGTERM are caught by reactor 0) stops them all; each
//! shuts down in its three phases with its own deadline, and reactor 0's `During` phase
//! waits (up to its deadline) for the others to drain, so what reactor 0 runs in its
//! `After` phase (flushing history) sees every connection closed.
//!
//! Ids stay unique across reactors (one process-wide sequence); every connection, chain
//! and task carries the index of its reactor ([`current_index`](super::current_index)).

use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use tokio_util::sync::CancellationToken;

use super::{Phase, Reactor, ReactorConfig, ReactorError, ReactorHandle};
use crate::net::group::{self, PortGroup};

/// Why a pool could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError<E: std::error::Error + 'static> {
    /// A reactor could not be built.
    #[error("reactor {index}: {source}")]
    Reactor {
        /// Its index.
        index: u16,
        /// Why.
        #[source]
        source: ReactorError,
    },
    /// The program's setup of a reactor failed.
    #[error("reactor {index}: {source}")]
    Setup {
        /// The reactor's index.
        index: u16,
        /// What the setup returned.
        #[source]
        source: E,
    },
    /// A reactor's thread could not start, or ended during its setup.
    #[error("reactor {index}: cannot start its thread: {source}")]
    Thread {
        /// Its index.
        index: u16,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What a reactor thread tells the pool once its setup is done.
type SetupResult<E> = Result<ReactorHandle, PoolError<E>>;

/// What the pool sends each reactor thread when every reactor is set up: the handles of
/// all of them to run, or nothing to end without running.
type Go = Option<Started>;

struct Started {
    all: Vec<ReactorHandle>,
    /// Cancelled by this reactor once its connections drained.
    drained: CancellationToken,
}

struct Worker {
    handle: ReactorHandle,
    go: std_mpsc::Sender<Go>,
    thread: JoinHandle<()>,
    drained: CancellationToken,
}

/// Several reactors, each on its own thread (reactor 0 on the caller's), each with its own
/// listening sockets on the same addresses (`SO_REUSEPORT`). Nothing serves until every
/// reactor is set up; stopping any stops them all, and reactor 0's shutdown waits for the
/// others to drain before its last phase.
///
/// ```no_run
/// use weft::reactor::{ReactorPool, ReactorConfig};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut pool = ReactorPool::new(ReactorPool::available(), ReactorConfig::default())?;
/// let listen = |reactor: &weft::Reactor| {
///     reactor
///         .listen_as("echo", "tcp:8000", weft::factory(|| MyEcho))
///         .map(|_| ())
/// };
/// listen(pool.first())?;
/// pool.start_others(listen)?;
/// pool.run()?;
/// # Ok(()) }
/// # struct MyEcho;
/// # impl weft::Protocol for MyEcho {
/// #     fn data_received(&mut self, transport: &weft::Transport, data: &[u8]) {
/// #         transport.write(data);
/// #     }
/// # }
/// ```
pub struct ReactorPool {
    first: Reactor,
    size: u16,
    config: ReactorConfig,
    group: Option<Arc<PortGroup>>,
    workers: Vec<Worker>,
}

impl std::fmt::Debug for ReactorPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReactorPool")
            .field("size", &self.size)
            .field("started", &self.workers.len())
            .finish_non_exhaustive()
    }
}

impl ReactorPool {
    /// The most reactors a pool runs.
    pub const MAX: u16 = 256;

    /// How many reactors use every core this process may run on.
    pub fn available() -> u16 {
        std::thread::available_parallelism()
            .map_or(1, |n| u16::try_from(n.get()).unwrap_or(Self::MAX))
            .clamp(1, Self::MAX)
    }

    /// A pool of `size` reactors (1 to [`MAX`](Self::MAX)) configured by `config`; builds
    /// reactor 0 on this thread. Only reactor 0 handles signals, if `config` says so.
    pub fn new(size: u16, config: ReactorConfig) -> Result<Self, ReactorError> {
        let size = size.clamp(1, Self::MAX);
        let group = (size > 1).then(Arc::default);
        super::set_current_index(0);
        group::install(group.clone());
        let first = Reactor::with_config(config)?;
        Ok(Self {
            first,
            size,
            config,
            group,
            workers: Vec::new(),
        })
    }

    /// How many reactors the pool runs.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Reactor 0, on this thread: set it up before [`start_others`](Self::start_others).
    pub fn first(&self) -> &Reactor {
        &self.first
    }

    /// The handles of the reactors built so far, by index.
    pub fn handles(&self) -> Vec<ReactorHandle> {
        std::iter::once(self.first.handle())
            .chain(self.workers.iter().map(|w| w.handle.clone()))
            .collect()
    }

    /// Builds reactors 1 to `size - 1`, each on its own thread, and runs `setup` on each,
    /// one after the other. On an error the reactors built so far end without running
    /// and the error names the reactor.
    pub fn start_others<S, E>(&mut self, setup: S) -> Result<(), PoolError<E>>
    where
        S: Fn(&Reactor) -> Result<(), E> + Send + Sync + 'static,
        E: std::error::Error + Send + 'static,
    {
        let setup = Arc::new(setup);
        for index in 1..self.size {
            match self.start_one(index, setup.clone()) {
                Ok(worker) => self.workers.push(worker),
                Err(e) => {
                    self.abandon();
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn start_one<S, E>(&self, index: u16, setup: Arc<S>) -> Result<Worker, PoolError<E>>
    where
        S: Fn(&Reactor) -> Result<(), E> + Send + Sync + 'static,
        E: std::error::Error + Send + 'static,
    {
        let (ready_tx, ready_rx) = std_mpsc::channel::<SetupResult<E>>();
        let (go_tx, go_rx) = std_mpsc::channel::<Go>();
        let config = ReactorConfig {
            handle_signals: false,
            ..self.config
        };
        let group = self.group.clone();
        let thread = std::thread::Builder::new()
            .name(format!("weft-reactor-{index}"))
            .spawn(move || {
                super::set_current_index(index);
                group::install(group);
                let reactor = match Reactor::with_config(config) {
                    Ok(r) => r,
                    Err(source) => {
                        let _ = ready_tx.send(Err(PoolError::Reactor { index, source }));
                        return;
                    }
                };
                if let Err(source) = setup(&reactor) {
                    let _ = ready_tx.send(Err(PoolError::Setup { index, source }));
                    return;
                }
                let _ = ready_tx.send(Ok(reactor.handle()));
                drop(setup);
                let Ok(Some(started)) = go_rx.recv() else {
                    return;
                };
                link(&reactor, started.all);
                let drained = started.drained;
                reactor.add_shutdown_hook(Phase::After, move || drained.cancel());
                if let Err(error) = reactor.run() {
                    tracing::error!(reactor = index, %error, "a reactor could not run");
                }
            })
            .map_err(|source| PoolError::Thread { index, source })?;
        match ready_rx.recv() {
            Ok(Ok(handle)) => Ok(Worker {
                handle,
                go: go_tx,
                thread,
                drained: CancellationToken::new(),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(PoolError::Thread {
                    index,
                    source: std::io::Error::other("the reactor's thread ended during its setup"),
                })
            }
        }
    }

    /// Ends the reactors set up so far without running them.
    fn abandon(&mut self) {
        for worker in self.workers.drain(..) {
            let _ = worker.go.send(None);
            let _ = worker.thread.join();
        }
    }

    /// Runs every reactor until one stops (reactor 0 on this thread), then waits for all
    /// of them to shut down.
    pub fn run(mut self) -> Result<(), ReactorError> {
        let all = self.handles();
        for worker in &self.workers {
            let _ = worker.go.send(Some(Started {
                all: all.clone(),
                drained: worker.drained.clone(),
            }));
        }
        link(&self.first, all);
        let drained: Vec<_> = self.workers.iter().map(|w| w.drained.clone()).collect();
        if !drained.is_empty() {
            self.first
                .add_shutdown_hook_wait(Phase::During, move || async move {
                    for d in drained {
                        d.cancelled().await;
                    }
                });
        }
        let result = self.first.run();
        for worker in self.workers.drain(..) {
            if worker.thread.join().is_err() {
                tracing::error!("a reactor's thread panicked");
            }
        }
        result
    }
}

/// Makes `reactor`'s stop stop every reactor of `all` (a stop already asked is a no-op).
fn link(reactor: &Reactor, all: Vec<ReactorHandle>) {
    if all.len() > 1 {
        reactor.add_shutdown_hook(Phase::Before, move || {
            for handle in &all {
                handle.stop();
            }
        });
    }
}

impl Drop for ReactorPool {
    fn drop(&mut self) {
        self.abandon();
        // A reactor made later on this thread is one of its own again.
        group::install(None);
    }
}
