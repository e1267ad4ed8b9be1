//! A route's upstreams: which one a request goes to (round robin or least connections,
//! skipping ejected ones), passive health (failures in a row eject an upstream for a
//! while), optional active checks, and the state each upstream shares with other threads
//! ([`UpstreamsView`]) for a dashboard to read.

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use weft::Reactor;

use super::UpstreamError;
use super::body::BodyRoom;
use super::pool::Pool;
use crate::config::{Balance, Health, Limits, PoolConfig, Route, Upstream};
use crate::metrics::{BrokeOff, Recorder};

/// Errors each upstream keeps for the dashboard; older ones are dropped.
const RECENT_ERRORS: usize = 8;

/// One upstream of one route: its pool, and its state as other threads see it.
pub(crate) struct Target {
    pub(crate) upstream: Upstream,
    pub(crate) pool: Pool,
    pub(crate) state: Arc<UpstreamState>,
}

/// A route's upstreams and how requests are spread over them.
pub(crate) struct RouteUpstreams {
    pub(crate) targets: Vec<Target>,
    /// The route's `ca`: an upstream's state is taken over by a reload only where it
    /// and the health settings are unchanged (a new CA, or new health settings, are a
    /// reason to try an upstream afresh).
    ca: Option<std::path::PathBuf>,
    balance: Balance,
    health: Health,
    /// Where the next round robin (or least-connections tie) starts.
    next: Cell<usize>,
    /// Connect and answer timeouts of health checks: the service's.
    timeouts: (Duration, Duration),
    /// The route's `request_headers`, which its health checks carry too (an upstream that
    /// serves several sites answers only for the `Host` the route names).
    check_headers: Vec<(http::HeaderName, Option<http::HeaderValue>)>,
    /// The service's room for request bodies read ahead, shared by its routes.
    pub(crate) bodies: Rc<BodyRoom>,
    /// A later generation of the service (a reload's) is in force: the route serves only
    /// the requests already under way, and its active checks end.
    retired: Cell<bool>,
}

/// The upstreams of a route a request has tried, by position: a word, not a list a
/// request would allocate (a route has at most
/// [`MAX_UPSTREAMS`](crate::config::MAX_UPSTREAMS) of them).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Tried(u64);

const _: () = assert!(crate::config::MAX_UPSTREAMS <= u64::BITS as usize);

impl Tried {
    pub(crate) fn insert(&mut self, i: usize) {
        self.0 |= 1 << i;
    }

    fn contains(self, i: usize) -> bool {
        self.0 & (1 << i) != 0
    }
}

impl RouteUpstreams {
    /// `route`'s upstreams, each with an empty pool whose connections are reported under
    /// `service`; starts the active checks, which end when the route is dropped. Each
    /// upstream's state (health, counts, recent errors) is `before`'s for the same
    /// upstream, when the generation a reload replaces has it (see [`Self::state_of`]).
    pub(crate) fn start(
        service: &Arc<str>,
        route: &Route,
        pool: &PoolConfig,
        limits: &Limits,
        recorder: &Rc<dyn Recorder>,
        bodies: &Rc<BodyRoom>,
        before: &[Rc<RouteUpstreams>],
    ) -> Rc<Self> {
        let series = recorder.route(&route.prefix);
        let mut adopted: Vec<Arc<UpstreamState>> = Vec::new();
        let targets = route
            .upstreams
            .iter()
            .map(|upstream| {
                // Each taken over once: a URL listed twice keeps two states.
                let kept = before
                    .iter()
                    .flat_map(|r| r.states_for(route, &upstream.url))
                    .find(|s| !adopted.iter().any(|a| Arc::ptr_eq(a, s)))
                    .cloned();
                adopted.extend(kept.clone());
                let state = kept.unwrap_or_else(|| {
                    Arc::new(UpstreamState::new(
                        &route.prefix,
                        &upstream.url,
                        recorder
                            .upstream_broke_off(&upstream.url)
                            .on_route(series.clone()),
                    ))
                });
                Target {
                    pool: Pool::new(
                        service.clone(),
                        upstream,
                        route.ca.as_deref(),
                        pool,
                        state.clone(),
                        recorder.upstream_connections(&upstream.url),
                    ),
                    upstream: upstream.clone(),
                    state,
                }
            })
            .collect();
        let upstreams = Rc::new(Self {
            targets,
            ca: route.ca.clone(),
            balance: route.balance,
            health: route.health.clone(),
            next: Cell::new(0),
            timeouts: (limits.upstream_connect_timeout, limits.upstream_timeout),
            check_headers: route.request_headers.clone(),
            bodies: bodies.clone(),
            retired: Cell::new(false),
        });
        if let Some(check) = &route.health.check {
            for i in 0..upstreams.targets.len() {
                schedule_check(
                    Rc::downgrade(&upstreams),
                    i,
                    check.interval,
                    recorder.clone(),
                );
            }
        }
        upstreams
    }

    /// The upstream for the next attempt: not ejected, not in `tried`; `None` when no
    /// such upstream is left.
    pub(crate) fn pick(&self, tried: Tried) -> Option<usize> {
        // Read only when an upstream is ejected.
        let mut now = None;
        let n = self.targets.len();
        let start = self.next.get() % n;
        let candidates = (0..n)
            .map(|k| (start + k) % n)
            .filter(|i| !tried.contains(*i) && !self.targets[*i].state.is_ejected(&mut now));
        let chosen = match self.balance {
            Balance::RoundRobin => candidates.into_iter().next(),
            // `min_by_key` keeps the first of equals: ties go in turn.
            Balance::LeastConn => {
                candidates.min_by_key(|i| self.targets[*i].state.in_flight.load(Relaxed))
            }
        }?;
        self.next.set(chosen + 1);
        Some(chosen)
    }

    /// How long until the first of its ejected upstreams gets requests again, in whole
    /// seconds (at least one): what a client told none is available may wait.
    pub(crate) fn back_in(&self) -> Duration {
        let now = Instant::now();
        let first = self
            .targets
            .iter()
            .filter_map(|t| {
                lock(&t.state.ejected_until).map(|(at, _)| at.saturating_duration_since(now))
            })
            .min()
            .unwrap_or_default();
        Duration::from_secs(first.as_secs_f64().ceil().max(1.0) as u64)
    }

    /// Records that target `i` answered a request sent to it when its ejections stood at
    /// `since` ([`UpstreamState::ejections`]).
    pub(crate) fn succeeded(&self, i: usize, since: u32) {
        self.targets[i].state.succeeded(since, false);
    }

    /// Records that target `i` failed with `err`; ejects it after `max_fails` in a row.
    pub(crate) fn failed(&self, i: usize, err: &UpstreamError, recorder: &dyn Recorder) {
        self.count_failure(i, err, recorder, false);
    }

    /// Records that target `i`'s health check failed with `err`: a failure in a row as
    /// any other, which also keeps an ejected upstream out until a check passes.
    fn check_failed(&self, i: usize, err: &UpstreamError, recorder: &dyn Recorder) {
        self.count_failure(i, err, recorder, true);
    }

    fn count_failure(&self, i: usize, err: &UpstreamError, recorder: &dyn Recorder, check: bool) {
        let target = &self.targets[i];
        if let Some(reason) = err.failure() {
            recorder.upstream_failed(&target.upstream.url, reason);
        }
        // A lone upstream is never ejected (nginx ignores `max_fails` for one server):
        // there is no other to send its requests to, and ejecting it would answer every
        // request 503, one slow URL making the whole route fail.
        let may_eject = self.targets.len() > 1;
        if target.state.failed(err, &self.health, check, may_eject) {
            recorder.upstream_ejected(&target.upstream.url);
            tracing::warn!(
                upstream = %target.upstream.url,
                for_ = ?self.health.eject_for,
                "upstream ejected after {} failures in a row",
                self.health.max_fails
            );
        }
    }

    /// The states of its upstreams `url` (one, unless the URL is listed twice) for the
    /// same upstream of `route` in the generation that replaces this one: the same route
    /// (prefix), URL, CA and health settings. Shared, not copied: the requests this
    /// generation still has in flight count in it as they end, and an upstream ejected
    /// before a reload stays out for the rest of its time rather than taking clients'
    /// requests again at once.
    fn states_for<'a>(
        &'a self,
        route: &'a Route,
        url: &'a str,
    ) -> impl Iterator<Item = &'a Arc<UpstreamState>> + 'a {
        let same = self.ca == route.ca && self.health == route.health;
        self.targets
            .iter()
            .filter(move |t| same && t.upstream.url == url && t.state.route == route.prefix)
            .map(|t| &t.state)
    }

    /// Ends its active checks: a later generation of the service is in force.
    pub(crate) fn retire(&self) {
        self.retired.set(true);
    }

    /// Each upstream's state, for [`UpstreamsView`].
    pub(crate) fn states(&self) -> impl Iterator<Item = Arc<UpstreamState>> + '_ {
        self.targets.iter().map(|t| t.state.clone())
    }
}

/// Checks target `i` of `upstreams` every `interval`, for as long as the route exists and
/// is not retired.
fn schedule_check(
    upstreams: Weak<RouteUpstreams>,
    i: usize,
    interval: Duration,
    recorder: Rc<dyn Recorder>,
) {
    let reactor = Reactor::current();
    reactor.call_later(interval, move || {
        let Some(route) = upstreams.upgrade().filter(|r| !r.retired.get()) else {
            return;
        };
        Reactor::current().spawn(async move {
            let check = route.health.check.as_ref().map(|c| c.path.clone());
            if let Some(path) = check {
                let since = route.targets[i].state.ejections();
                let checked = route.targets[i].pool.check(&path, route.timeouts, &route.check_headers);
                match checked.await {
                    Ok(()) => route.targets[i].state.succeeded(since, true),
                    Err(err) => {
                        tracing::info!(upstream = %route.targets[i].upstream.url, %err, "health check failed");
                        route.check_failed(i, &err, &*recorder);
                    }
                }
            }
            let weak = Rc::downgrade(&route);
            drop(route);
            schedule_check(weak, i, interval, recorder);
        });
    });
}

/// An upstream's state, shared with other threads through [`UpstreamsView`].
#[derive(Debug)]
pub(crate) struct UpstreamState {
    /// What a response body that breaks off counts.
    broke_off: BrokeOff,
    route: String,
    url: String,
    failures: AtomicU32,
    /// Failures since the service started, for the dashboard.
    failures_total: AtomicU64,
    /// Until when it gets no requests, by the monotonic clock and by the wall clock (for
    /// display).
    ejected_until: Mutex<Option<(Instant, SystemTime)>>,
    /// Whether `ejected_until` is set: a request to a healthy upstream reads this, not
    /// the lock and the clock.
    ejected: AtomicBool,
    /// Whether the latest failure counted, and so the ejection under way if any, was a
    /// health check's: a passing check undoes what checks did, not what requests did (a
    /// check can pass while every real request fails).
    by_check: AtomicBool,
    /// Times it was ejected: a request sent before the latest ejection that succeeds
    /// after it says nothing of the upstream now (a slow answer to a request of before
    /// the failures), and ends neither the ejection nor the failures' count.
    ejections: AtomicU32,
    pub(crate) idle: AtomicUsize,
    pub(crate) busy: AtomicUsize,
    /// Requests sent to it whose answers have not ended ([`InFlight`]), counting those
    /// still connecting.
    pub(crate) in_flight: AtomicUsize,
    pub(crate) requests: AtomicU64,
    errors: Mutex<VecDeque<RecentError>>,
}

/// A request counted in flight to an upstream while it lives, what `least_conn` compares:
/// from its connect to the end of its response's body (a download read slowly is load
/// still), or, switched, to the end of its tunnel.
pub(crate) struct InFlight(Arc<UpstreamState>);

impl InFlight {
    pub(crate) fn enter(state: &Arc<UpstreamState>) -> Self {
        state.in_flight.fetch_add(1, Relaxed);
        Self(state.clone())
    }
}

impl std::ops::Deref for InFlight {
    type Target = UpstreamState;

    fn deref(&self) -> &UpstreamState {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl UpstreamState {
    fn new(route: &str, url: &str, broke_off: BrokeOff) -> Self {
        Self {
            broke_off,
            route: route.to_owned(),
            url: url.to_owned(),
            failures: AtomicU32::new(0),
            failures_total: AtomicU64::new(0),
            ejected_until: Mutex::new(None),
            ejected: AtomicBool::new(false),
            by_check: AtomicBool::new(false),
            ejections: AtomicU32::new(0),
            idle: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            errors: Mutex::new(VecDeque::with_capacity(RECENT_ERRORS)),
        }
    }

    /// Whether it is ejected at `now` (read once, when first needed).
    fn is_ejected(&self, now: &mut Option<Instant>) -> bool {
        if !self.ejected.load(Relaxed) {
            return false;
        }
        let now = *now.get_or_insert_with(Instant::now);
        lock(&self.ejected_until).is_some_and(|(until, _)| now < until)
    }

    /// Times it was ejected so far: what a request sent now is to be judged against.
    pub(crate) fn ejections(&self) -> u32 {
        self.ejections.load(Relaxed)
    }

    /// A request sent when its ejections stood at `since` was answered, or (`check`) a
    /// health check passed: which clears the failures and ends the ejection only when
    /// checks counted them, a request's failures standing until a request succeeds or
    /// `eject_for` is over (nginx's passive health knows no checks to undo it).
    fn succeeded(&self, since: u32, check: bool) {
        if self.ejections.load(Relaxed) != since {
            return;
        }
        // A check passing after requests' failures: their ejection lasts its time; once
        // it is over (the flag stays set until something succeeds), the upstream answers
        // its checks and starts afresh, rather than keeping a count past `max_fails` that
        // one more failure, without a request sent, would eject it for. Short of an
        // ejection, their count stands (checks passing between them would otherwise keep
        // a failing upstream from ever being ejected).
        if check && !self.by_check.load(Relaxed) {
            let over = self.ejected.load(Relaxed)
                && !lock(&self.ejected_until).is_some_and(|(at, _)| Instant::now() < at);
            if !over {
                return;
            }
        }
        if self.failures.load(Relaxed) != 0 {
            self.failures.store(0, Relaxed);
        }
        if self.ejected.swap(false, Relaxed) {
            *lock(&self.ejected_until) = None;
        }
    }

    /// Counts a failure; `true` if it ejects the upstream (only when `may_eject`).
    /// `check`: a health check failed, which renews an ejection under way.
    fn failed(&self, err: &UpstreamError, health: &Health, check: bool, may_eject: bool) -> bool {
        self.note_failure(err.to_string());
        let failures = self.failures.fetch_add(1, Relaxed).saturating_add(1);
        let now = Instant::now();
        let mut until = lock(&self.ejected_until);
        let out_now = until.is_some_and(|(at, _)| now < at);
        // What made the latest failure, out of an ejection, says what may end the one it
        // leads to. While it is out, the ejection is left whose it is: a request in
        // flight when it was ejected fails now without ejecting it again, and a failed
        // check renews it for whoever made it.
        if !out_now {
            self.by_check.store(check, Relaxed);
        }
        if failures < health.max_fails || !may_eject {
            return false;
        }
        let renewed = Some((now + health.eject_for, SystemTime::now() + health.eject_for));
        if out_now {
            // Ejected already: the requests that were in flight when it was fail now, and
            // are neither another ejection nor a longer one; a failed health check says
            // it is still down, and keeps it out.
            if check {
                *until = renewed;
            }
            return false;
        }
        *until = renewed;
        self.ejections.fetch_add(1, Relaxed);
        self.ejected.store(true, Relaxed);
        true
    }

    /// Keeps `message` among the recent errors, and counts it in the failures shown.
    fn note_failure(&self, message: String) {
        {
            let mut errors = lock(&self.errors);
            if errors.len() == RECENT_ERRORS {
                errors.pop_front();
            }
            errors.push_back(RecentError {
                at: SystemTime::now(),
                message,
            });
        }
        self.failures_total.fetch_add(1, Relaxed);
    }

    /// A response body that broke off after its head came: counted and shown like a
    /// failed exchange, and logged, but not a failure in a row toward ejection (the
    /// upstream answered).
    pub(crate) fn body_broke_off(&self, err: &dyn std::fmt::Display) {
        let message = format!("{}: the response body broke off: {err}", self.url);
        tracing::warn!(upstream = %self.url, %err, "an upstream's response body broke off");
        self.broke_off.count(&message);
        self.note_failure(message);
    }

    fn snapshot(&self) -> UpstreamSnapshot {
        let now = Instant::now();
        let ejected_until = lock(&self.ejected_until)
            .filter(|(until, _)| now < *until)
            .map(|(_, wall)| wall);
        UpstreamSnapshot {
            route: self.route.clone(),
            url: self.url.clone(),
            healthy: ejected_until.is_none(),
            ejected_until,
            consecutive_failures: self.failures.load(Relaxed),
            idle_connections: self.idle.load(Relaxed),
            busy_connections: self.busy.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
            requests: self.requests.load(Relaxed),
            failures: self.failures_total.load(Relaxed),
            recent_errors: lock(&self.errors).iter().cloned().collect(),
        }
    }
}

/// A handle on the state of every upstream of an HTTP service, readable from any thread
/// ([`HttpService::upstreams`](crate::HttpService::upstreams)): the service updates it
/// as it proxies, with atomics and short locks, and a reader takes a [`snapshot`].
///
/// [`snapshot`]: Self::snapshot
#[derive(Debug, Clone, Default)]
pub struct UpstreamsView(pub(crate) Arc<Vec<Arc<UpstreamState>>>);

impl UpstreamsView {
    /// Every upstream of every route, in configuration order.
    pub fn snapshot(&self) -> Vec<UpstreamSnapshot> {
        self.0.iter().map(|s| s.snapshot()).collect()
    }
}

/// One upstream of one route, as it was when the snapshot was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpstreamSnapshot {
    /// The route's prefix.
    pub route: String,
    /// The upstream's URL as configured.
    pub url: String,
    /// Whether it gets requests (not ejected).
    pub healthy: bool,
    /// Until when it is ejected, when it is.
    pub ejected_until: Option<SystemTime>,
    /// Failures since its last success.
    pub consecutive_failures: u32,
    /// Pooled connections waiting for a request.
    pub idle_connections: usize,
    /// Connections carrying a request or its response.
    pub busy_connections: usize,
    /// Requests sent and not yet answered, including those still connecting.
    pub in_flight: usize,
    /// Requests sent to it (retries and health checks included).
    pub requests: u64,
    /// Its failures since the service started (requests and health checks).
    pub failures: u64,
    /// Its last few failures, oldest first (at most 8).
    pub recent_errors: Vec<RecentError>,
}

/// A failure an upstream had, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentError {
    /// When.
    pub at: SystemTime,
    /// What happened (names the upstream and the cause).
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_in_flight_failing_after_an_ejection_do_not_eject_again() {
        let state = UpstreamState::new("/", "http://192.0.2.1", BrokeOff::detached());
        let health = Health {
            max_fails: 2,
            eject_for: Duration::from_secs(30),
            check: None,
        };
        let err = || UpstreamError::Timeout("http://192.0.2.1".into(), Duration::from_secs(1));
        let ejections: Vec<bool> = (0..12)
            .map(|_| state.failed(&err(), &health, false, true))
            .collect();
        assert_eq!(ejections.iter().filter(|e| **e).count(), 1, "{ejections:?}");
        assert!(ejections[1], "the second failure in a row ejects");
        assert!(state.is_ejected(&mut None));
        // A failed health check keeps it out, without counting another ejection.
        let until = |s: &UpstreamState| lock(&s.ejected_until).map(|(at, _)| at);
        let before = until(&state);
        std::thread::sleep(Duration::from_millis(2));
        assert!(!state.failed(&err(), &health, true, true));
        assert!(until(&state) > before, "renewed");
        // Once the ejection is over, the next failure (the trial request's) ejects anew.
        *lock(&state.ejected_until) = Some((Instant::now(), SystemTime::now()));
        assert!(state.failed(&err(), &health, false, true));
        // A request sent before that ejection and answered after it says nothing of the
        // upstream now: it neither ends the ejection nor clears the failures.
        let before = state.ejections() - 1;
        state.succeeded(before, false);
        assert!(state.is_ejected(&mut None));
        assert!(state.failures.load(Relaxed) > 0);
        // One sent since does.
        state.succeeded(state.ejections(), false);
        assert!(!state.is_ejected(&mut None));
        assert_eq!(state.failures.load(Relaxed), 0);
        // Requests' failures eject it: a passing health check neither ends that ejection
        // nor clears their count (the check's path answers while real requests fail).
        assert!(!state.failed(&err(), &health, false, true));
        assert!(state.failed(&err(), &health, false, true));
        state.succeeded(state.ejections(), true);
        assert!(state.is_ejected(&mut None), "still out");
        assert_eq!(state.failures.load(Relaxed), 2);
        // A failed check renewing it leaves it the requests'.
        assert!(!state.failed(&err(), &health, true, true));
        state.succeeded(state.ejections(), true);
        assert!(state.is_ejected(&mut None));
        // Checks' failures eject it, and a passing check brings it back at once, though a
        // request in flight when it was ejected failed since.
        let checked = UpstreamState::new("/", "http://192.0.2.1", BrokeOff::detached());
        assert!(!checked.failed(&err(), &health, true, true));
        assert!(checked.failed(&err(), &health, true, true));
        assert!(!checked.failed(&err(), &health, false, true));
        checked.succeeded(checked.ejections(), true);
        assert!(!checked.is_ejected(&mut None));
        assert_eq!(checked.failures.load(Relaxed), 0);
        // Ejected by requests, that over, a passing check starts it afresh: no count left
        // that one more failure would eject it for.
        assert!(!checked.failed(&err(), &health, false, true));
        assert!(checked.failed(&err(), &health, false, true));
        checked.succeeded(checked.ejections(), true);
        assert!(checked.is_ejected(&mut None), "not while it lasts");
        *lock(&checked.ejected_until) = Some((Instant::now(), SystemTime::now()));
        checked.succeeded(checked.ejections(), true);
        assert_eq!(checked.failures.load(Relaxed), 0);
        assert!(
            !checked.failed(&err(), &health, false, true),
            "one failure is one"
        );
        checked.succeeded(checked.ejections(), false);
        // Ejected by requests; that over, a failing check ejects it anew, and it is then
        // the checks' to end.
        assert!(!checked.failed(&err(), &health, false, true));
        assert!(checked.failed(&err(), &health, false, true));
        *lock(&checked.ejected_until) = Some((Instant::now(), SystemTime::now()));
        assert!(checked.failed(&err(), &health, true, true));
        checked.succeeded(checked.ejections(), true);
        assert!(!checked.is_ejected(&mut None));
        // One that may not be ejected (a route's lone upstream) counts its failures only.
        let lone = UpstreamState::new("/", "http://192.0.2.1", BrokeOff::detached());
        assert!((0..5).all(|_| !lone.failed(&err(), &health, false, false)));
        assert!(!lone.is_ejected(&mut None));
        assert_eq!(lone.failures.load(Relaxed), 5);
    }
}
