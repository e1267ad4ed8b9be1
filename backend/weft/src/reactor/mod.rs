//! The reactor: one thread, one event loop, everything observable.
//!
//! Like Twisted's reactor, weft runs every protocol callback, timer and Deferred
//! callback on one thread, so protocol code needs no locks and may keep `Rc`s. Under
//! the hood it is a tokio current-thread runtime with a `LocalSet`. Other threads talk
//! to it through a [`ReactorHandle`].
//!
//! `run` blocks until `stop` (or SIGINT/SIGTERM), then shuts down in Twisted's three
//! phases (before, during, after), each bounded by a deadline so a stuck hook cannot
//! hang exit.

mod handle;
mod lag;
mod pool;
pub mod profile;
mod shutdown;
mod sweep;

pub use handle::{CALL_QUEUE, CallError, ReactorHandle};
pub use lag::LagStats;
pub use pool::{PoolError, ReactorPool};
pub use shutdown::{Phase, ShutdownHold};

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::panic::Location;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::LocalSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::observe::{self, ConnectionId, Observer};
use crate::tasks::TaskKind;
use crate::time::{Clock, ClockGuard, DelayedCall};
use crate::transport::Transport;

/// How a reactor behaves; `Default` is what most programs want.
///
/// The reactor owns the detector thresholds of its thread (`slow_callback`, `stall_after`):
/// it applies them when it starts, and [`Reactor::set_thresholds`] is the one way to change
/// them later (the telemetry hub does, with its `[inspect]` settings).
#[derive(Debug, Clone, Copy)]
pub struct ReactorConfig {
    /// How long each shutdown phase may take before it is abandoned.
    pub shutdown_deadline: Duration,
    /// A callback running longer than this blocked the reactor and is reported.
    pub slow_callback: Duration,
    /// How often reactor lag is measured.
    pub lag_interval: Duration,
    /// A Deferred pending or paused longer than this is reported as stalled.
    pub stall_after: Duration,
    /// Whether `run` stops on SIGINT and SIGTERM.
    pub handle_signals: bool,
    /// A connection asked to close whose output is blocked on the peer with no progress for
    /// this long (its peer stopped reading) is aborted, as
    /// [`CloseReason::SendTimeout`](crate::CloseReason::SendTimeout), so it cannot be held
    /// open forever.
    pub close_timeout: Duration,
}

impl ReactorConfig {
    /// The default `shutdown_deadline`.
    pub const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);
    /// The default `slow_callback` (the gateway's `[inspect] slow_callback`).
    pub const DEFAULT_SLOW_CALLBACK: Duration = Duration::from_millis(100);
    /// The default `lag_interval`.
    pub const DEFAULT_LAG_INTERVAL: Duration = Duration::from_millis(100);
    /// The default `stall_after` (the gateway's `[inspect] stall_after`).
    pub const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(5);
    /// The default `close_timeout`.
    pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
}

impl Default for ReactorConfig {
    fn default() -> Self {
        Self {
            shutdown_deadline: Self::DEFAULT_SHUTDOWN_DEADLINE,
            slow_callback: Self::DEFAULT_SLOW_CALLBACK,
            lag_interval: Self::DEFAULT_LAG_INTERVAL,
            stall_after: Self::DEFAULT_STALL_AFTER,
            handle_signals: true,
            close_timeout: Self::DEFAULT_CLOSE_TIMEOUT,
        }
    }
}

/// Makes `config`'s detector thresholds the ones of this thread; only the reactor calls it.
fn apply_thresholds(config: &ReactorConfig) {
    observe::set_slow_threshold(config.slow_callback);
    crate::defer::set_stall_threshold(config.stall_after);
}

/// The index of this thread's reactor in its [`ReactorPool`] (0 for a reactor of its own,
/// and on a thread without one). Connections, chains and tasks record it.
#[inline]
pub fn current_index() -> u16 {
    crate::context::try_with(|cx| cx.reactor_index.get()).unwrap_or(0)
}

/// Sets this thread's reactor index; the pool calls it before building the reactor.
fn set_current_index(index: u16) {
    crate::context::with(|cx| cx.reactor_index.set(index));
}

/// Why the reactor could not start or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReactorError {
    /// The tokio runtime could not be built.
    #[error("cannot start the reactor's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// `run` was called a second time (Twisted's `ReactorNotRestartable`).
    #[error("the reactor already ran; a reactor runs once")]
    NotRestartable,
    /// Another reactor is alive on this thread.
    #[error("a reactor already exists on this thread")]
    AlreadyExists,
}

pub(crate) struct Inner {
    /// Taken by `run`, so a second `run` fails with `NotRestartable` instead of reusing a shut-down
    /// runtime.
    runtime: RefCell<Option<tokio::runtime::Runtime>>,
    /// Lets sockets be registered with tokio before `run` starts.
    runtime_handle: tokio::runtime::Handle,
    /// Runs the `!Send` connection and protocol tasks on the reactor thread.
    local: LocalSet,
    clock: Clock,
    /// Keeps this reactor's clock installed as the thread's current one for as long as the reactor
    /// lives.
    _clock_guard: ClockGuard,
    handle: ReactorHandle,
    /// Work sent from other threads through the handle; taken once when `run` starts draining it.
    jobs: RefCell<Option<mpsc::Receiver<handle::Job>>>,
    /// A `Cell` because the thresholds in it may change after start ([`Reactor::set_thresholds`]);
    /// it always says what is in effect.
    config: Cell<ReactorConfig>,
    /// Decides whether `call_when_running` runs `f` soon or queues it in `when_running`.
    running: Cell<bool>,
    /// Callbacks queued before `run` started; run once it does.
    when_running: RefCell<Vec<Box<dyn FnOnce()>>>,
    /// Shutdown hooks per phase (before, during, after), run in order with the shutdown deadline.
    hooks: shutdown::Hooks,
    /// Every connection task; shutdown waits on it.
    tracker: TaskTracker,
    /// Cancelled when listeners must stop accepting.
    listening: CancellationToken,
    /// Cancelled once connections drained at shutdown: stops the client ports
    /// ([`Reactor::open_udp`]), which the drain may need for upstream answers.
    clients: CancellationToken,
    pub(crate) connections: RefCell<HashMap<ConnectionId, Transport>>,
    /// Every listening port, and the handover open now.
    pub(crate) ports: crate::net::ports::Ports,
    /// How often connection deadlines are checked: a quarter of the shortest one.
    sweep_every: Cell<Duration>,
    /// Wakes the sweep when a shorter deadline shortens its interval.
    sweep_sooner: Rc<tokio::sync::Notify>,
}

/// The event loop (Twisted's `reactor`). Cheap to clone; lives on one thread.
#[derive(Clone)]
pub struct Reactor {
    pub(crate) inner: Rc<Inner>,
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("running", &self.inner.running.get())
            .field("connections", &self.inner.connections.borrow().len())
            .finish()
    }
}

impl Reactor {
    /// A reactor with the default configuration, installed as this thread's reactor.
    pub fn new() -> Result<Self, ReactorError> {
        Self::with_config(ReactorConfig::default())
    }

    /// A reactor with `config`, installed as this thread's reactor.
    pub fn with_config(config: ReactorConfig) -> Result<Self, ReactorError> {
        if Self::try_current().is_some() {
            return Err(ReactorError::AlreadyExists);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ReactorError::Runtime)?;
        // The real clock reads tokio's time, which needs the runtime's context.
        let clock = {
            let _enter = runtime.enter();
            Clock::real()
        };
        let (handle, jobs_rx) = ReactorHandle::new(CancellationToken::new());
        apply_thresholds(&config);
        profile::install();
        let sweep_every = sweep::interval_for(config.close_timeout);
        let inner = Rc::new(Inner {
            runtime_handle: runtime.handle().clone(),
            runtime: RefCell::new(Some(runtime)),
            local: LocalSet::new(),
            _clock_guard: clock.install(),
            clock,
            handle,
            jobs: RefCell::new(Some(jobs_rx)),
            config: Cell::new(config),
            running: Cell::new(false),
            when_running: RefCell::default(),
            hooks: shutdown::Hooks::default(),
            tracker: TaskTracker::new(),
            listening: CancellationToken::new(),
            clients: CancellationToken::new(),
            connections: RefCell::default(),
            ports: crate::net::ports::Ports::default(),
            sweep_every: Cell::new(sweep_every),
            sweep_sooner: Rc::default(),
        });
        crate::context::with(|cx| *cx.reactor.borrow_mut() = Rc::downgrade(&inner));
        Ok(Self { inner })
    }

    /// The reactor of this thread, if one exists.
    pub fn try_current() -> Option<Self> {
        crate::context::with(|cx| cx.reactor.borrow().upgrade()).map(|inner| Self { inner })
    }

    /// The reactor of this thread, for code running inside callbacks.
    ///
    /// # Panics
    /// When no reactor exists on this thread.
    pub fn current() -> Self {
        Self::try_current().expect("no weft reactor on this thread: create one with Reactor::new()")
    }

    /// Its index in its [`ReactorPool`] (0 for a reactor of its own).
    pub fn index(&self) -> u16 {
        current_index()
    }

    /// A `Send + Sync` handle for other threads.
    pub fn handle(&self) -> ReactorHandle {
        self.inner.handle.clone()
    }

    /// The reactor's clock.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// The reactor's configuration, with the thresholds in effect now.
    pub fn config(&self) -> ReactorConfig {
        self.inner.config.get()
    }

    /// Changes how long a callback may run before it is reported as slow and how long a
    /// Deferred may stay pending or paused before it is reported as stalled, on this
    /// reactor's thread. Call it on the reactor's thread.
    pub fn set_thresholds(&self, slow_callback: Duration, stall_after: Duration) {
        let mut config = self.inner.config.get();
        config.slow_callback = slow_callback;
        config.stall_after = stall_after;
        apply_thresholds(&config);
        self.inner.config.set(config);
    }

    /// Installs the observer that receives every event of this reactor's thread.
    pub fn set_observer(&self, observer: Arc<dyn Observer>) {
        observe::set_observer(Some(observer));
    }

    /// Runs `f` once, `delay` from now (Twisted's `callLater`).
    #[track_caller]
    pub fn call_later(&self, delay: Duration, f: impl FnOnce() + 'static) -> DelayedCall {
        self.inner.clock.call_later(delay, f)
    }

    /// Runs `f` when the reactor starts running, or soon if it already is.
    pub fn call_when_running(&self, f: impl FnOnce() + 'static) {
        if self.inner.running.get() {
            self.call_later(Duration::ZERO, f);
        } else {
            self.inner.when_running.borrow_mut().push(Box::new(f));
        }
    }

    /// Whether `run` is in progress.
    pub fn is_running(&self) -> bool {
        self.inner.running.get()
    }

    /// Asks the reactor to stop; `run` returns once shutdown completes.
    pub fn stop(&self) {
        self.inner.handle.stop();
    }

    /// Spawns a task on the reactor thread; shutdown waits for it (up to the deadline).
    ///
    /// The task is inspected ([`crate::tasks`]) with this call's line as its spawn site.
    #[track_caller]
    pub fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + 'static,
    {
        self.spawn_task(TaskKind::Spawned, None, Location::caller(), future);
    }

    /// [`spawn`](Self::spawn) with a label: the inspector shows it, and
    /// [`set_stall_threshold_for`](crate::defer::set_stall_threshold_for) the label sets
    /// when the task counts as stalled.
    #[track_caller]
    pub fn spawn_labeled<F>(&self, label: &'static str, future: F)
    where
        F: Future<Output = ()> + 'static,
    {
        self.spawn_task(TaskKind::Spawned, Some(label), Location::caller(), future);
    }

    /// Spawns an inspected, tracked task of `kind`.
    pub(crate) fn spawn_task<F>(
        &self,
        kind: TaskKind,
        label: Option<&'static str>,
        site: &'static Location<'static>,
        future: F,
    ) where
        F: Future<Output = ()> + 'static,
    {
        let task = crate::tasks::instrument(future, kind, label, site, None);
        self.inner
            .local
            .spawn_local(self.inner.tracker.track_future(task));
    }

    /// Spawns an inspected task of `kind` that shutdown does not wait for (it ends by
    /// other means, such as a client port at the end of the drain).
    pub(crate) fn spawn_task_untracked<F>(
        &self,
        kind: TaskKind,
        site: &'static Location<'static>,
        future: F,
    ) where
        F: Future<Output = ()> + 'static,
    {
        let task = crate::tasks::instrument(future, kind, None, site, None);
        self.inner.local.spawn_local(task);
    }

    /// Spawns a task the reactor does not wait for at shutdown (a background loop).
    pub(crate) fn spawn_untracked<F>(&self, future: F)
    where
        F: Future<Output = ()> + 'static,
    {
        self.inner.local.spawn_local(future);
    }

    /// Enters the runtime's context, so tokio sockets can be created before `run`.
    pub(crate) fn runtime_context(&self) -> tokio::runtime::EnterGuard<'_> {
        self.inner.runtime_handle.enter()
    }

    /// Whether shutdown has begun: the listeners stopped and connections are draining
    /// (or done). A connection opened now, for work owed to a client, never hears
    /// [`Protocol::drain`](crate::Protocol::drain): it ends once that work is done.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.listening.is_cancelled()
    }

    /// Cancelled when the reactor stops listening, at shutdown.
    pub(crate) fn listening_token(&self) -> CancellationToken {
        self.inner.listening.clone()
    }

    /// Cancelled when client ports stop, at shutdown once connections drained.
    pub(crate) fn clients_token(&self) -> CancellationToken {
        self.inner.clients.clone()
    }

    /// Makes the deadline sweep run often enough for a deadline of `timeout`.
    pub(crate) fn sweep_at_least_every(&self, timeout: Duration) {
        let every = sweep::interval_for(timeout);
        if every < self.inner.sweep_every.get() {
            self.inner.sweep_every.set(every);
            self.inner.sweep_sooner.notify_one();
        }
    }

    /// The open connections, by id.
    pub fn connections(&self) -> Vec<Transport> {
        self.inner.connections.borrow().values().cloned().collect()
    }

    /// The open connections of `service`.
    pub fn service_connections(&self, service: &str) -> Vec<Transport> {
        self.inner
            .connections
            .borrow()
            .values()
            .filter(|t| &*t.info().service == service)
            .cloned()
            .collect()
    }

    /// Aborts the connection `id`; `false` if it is not open.
    pub fn close_connection(&self, id: ConnectionId) -> bool {
        let transport = self.inner.connections.borrow().get(&id).cloned();
        transport.map(|t| t.abort_by_request()).is_some()
    }

    /// Registers a shutdown hook (Twisted's `addSystemEventTrigger`).
    pub fn add_shutdown_hook(&self, phase: Phase, f: impl FnOnce() + 'static) {
        self.inner.hooks.add(
            phase,
            Box::new(move || {
                f();
                None
            }),
        );
    }

    /// Registers a shutdown hook that returns something to wait on, such as a Deferred.
    ///
    /// Shutdown waits for it, but never past the phase's deadline.
    pub fn add_shutdown_hook_wait<F, Fut>(&self, phase: Phase, f: F)
    where
        F: FnOnce() -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self.inner.hooks.add(
            phase,
            Box::new(move || Some(Box::pin(f()) as shutdown::HookFuture)),
        );
    }

    /// Runs the event loop until stopped; then shuts down and returns.
    pub fn run(&self) -> Result<(), ReactorError> {
        let runtime = self
            .inner
            .runtime
            .borrow_mut()
            .take()
            .ok_or(ReactorError::NotRestartable)?;
        runtime.block_on(self.inner.local.run_until(self.main()));
        self.inner.running.set(false);
        // Dropping a runtime waits forever for blocking-pool work (a stuck
        // `defer_to_thread`); bound that wait like every other shutdown step.
        runtime.shutdown_timeout(self.inner.config.get().shutdown_deadline);
        Ok(())
    }

    async fn main(&self) {
        self.spawn_untracked(self.inner.clock.clone().drive());
        crate::defer::start_detectors(self);
        self.spawn_untracked(sweep::run(Rc::downgrade(&self.inner)));
        self.spawn_untracked(lag::probe(
            self.inner.handle.lag.clone(),
            self.inner.config.get().lag_interval,
        ));
        if let Some(mut jobs) = self.inner.jobs.borrow_mut().take() {
            self.spawn_untracked(async move {
                while let Some(job) = jobs.recv().await {
                    // A panicking job must not stop the queue other threads rely on.
                    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
                    {
                        let message = crate::time::panic_message(&panic);
                        tracing::error!("a call from another thread panicked: {message}");
                    }
                }
            });
        }
        self.inner.running.set(true);
        let starters = std::mem::take(&mut *self.inner.when_running.borrow_mut());
        for f in starters {
            f();
        }
        self.wait_for_stop().await;
        shutdown::run(self).await;
    }

    async fn wait_for_stop(&self) {
        let stop = self.inner.handle.stop.clone();
        if !self.inner.config.get().handle_signals {
            return stop.cancelled().await;
        }
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let sigterm = async {
            match term.as_mut() {
                Some(term) => {
                    term.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, stopping"),
            _ = sigterm => tracing::info!("SIGTERM received, stopping"),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // `try_with`: a reactor kept until the thread exits finds the context gone.
        let _ = crate::context::try_with(|cx| {
            let mut current = cx.reactor.borrow_mut();
            if current.upgrade().is_none() {
                *current = Weak::new();
            }
        });
    }
}
