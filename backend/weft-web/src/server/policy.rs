//! A service's client policy on one reactor: its `allow` and `deny` lists, its
//! `rate_limit` budgets and the proxies it trusts to name clients (`trusted_proxies`). The policy in force is one cell that every generation of the
//! service there reads (a reload makes a new generation, whose policy it puts in the cell
//! when the reload commits), so a client a reload denies, or a budget a reload adds or
//! tightens, judges the keep-alive connections already open too, and a reload that fails
//! changes nothing.
//!
//! A request on a connection an older generation accepted is routed again by the
//! configuration in force, so a route a reload adds with lists or a budget of its own
//! (`/api/admin/` under `/api/`) judges it too; a route the reload removed keeps its old
//! lists and budget for the requests that older generation still routes to it. A budget
//! that counts as before keeps its buckets across the reload
//! ([`Rates::adopting`](super::rates::Rates::adopting)): a reload is no fresh burst.

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::{Rc, Weak};
use std::time::Duration;

use http::StatusCode;

use super::rates::{self, Rates, Tables};
use super::route_index;
use crate::behind::Behind;
use crate::config::{Route, WebConfig};
use crate::metrics::{Recorder, Refusal};
use crate::path::PathError;
use crate::rules::Refused;

/// One generation's policy: the configuration it came with (its routes, to route a
/// request by), whether it sets any lists, and its budgets.
pub(super) struct Policy {
    config: WebConfig,
    lists: bool,
    rates: Rates,
}

impl Policy {
    fn new(config: &WebConfig, rates: Rates) -> Rc<Self> {
        Rc::new(Self {
            lists: !config.access.is_open() || config.routes.iter().any(|r| !r.access.is_open()),
            config: config.clone(),
            rates,
        })
    }

    /// Whether it sets any list or budget: without one a request is not routed again.
    fn any(&self) -> bool {
        self.lists || self.rates.any()
    }

    /// Whether its service lists and those of its route number `route` let `peer` in.
    fn admits(&self, route: Option<usize>, peer: Option<IpAddr>) -> bool {
        !self.lists
            || (self.config.access.admits(peer)
                && route
                    .and_then(|i| self.config.routes.get(i))
                    .is_none_or(|r| r.access.admits(peer)))
    }
}

/// The cell of the policy in force for a service on one reactor, shared by its
/// generations.
type InForce = Rc<RefCell<Rc<Policy>>>;

/// What judges one request: the lists it must pass and the budgets it spends.
struct Judges<'p> {
    /// The policy whose lists apply, and the request's route there.
    lists: (&'p Policy, Option<usize>),
    /// A route the policy in force no longer has, whose own lists apply besides.
    kept: Option<&'p Route>,
    budgets: Tables<'p>,
}

impl Judges<'_> {
    fn admit(&self, peer: Option<IpAddr>) -> bool {
        let (policy, route) = self.lists;
        policy.admits(route, peer) && self.kept.is_none_or(|r| r.access.admits(peer))
    }
}

/// A generation's view of the policy: its own, and the cell of the one in force.
pub(super) struct ClientPolicy {
    own: Rc<Policy>,
    in_force: InForce,
}

impl ClientPolicy {
    /// The policy of `config`, in force from the start (a service's first generation).
    pub(super) fn new(config: &WebConfig) -> Self {
        let own = Policy::new(config, Rates::new(config));
        Self {
            in_force: Rc::new(RefCell::new(own.clone())),
            own,
        }
    }

    /// The policy of `config` for a generation that replaces the one `previous` was
    /// handed over by: it reads the policy in force from the same cell as the earlier
    /// generations, and takes over the buckets of the budgets in force that count as its
    /// own do. Without an earlier generation still alive, a policy of its own.
    pub(super) fn joining(config: &WebConfig, previous: &Handover) -> Self {
        let Some(in_force) = previous.in_force.upgrade() else {
            return Self::new(config);
        };
        let rates = Rates::new(config).adopting(&in_force.borrow().rates);
        Self {
            own: Policy::new(config, rates),
            in_force,
        }
    }

    /// Puts this generation's policy in force for every generation (at the reload's
    /// commit).
    pub(super) fn put_in_force(&self) {
        *self.in_force.borrow_mut() = self.own.clone();
    }

    /// The client a trusted proxy in front names for a request with `headers` from
    /// `peer` (over TLS when `secure`), by the `trusted_proxies` in force: a reload that
    /// stops trusting a proxy stops it on the connections it holds too.
    pub(super) fn behind(
        &self,
        peer: Option<IpAddr>,
        secure: bool,
        headers: &http::HeaderMap,
    ) -> Option<Rc<Behind>> {
        let newest = self.in_force.borrow();
        let config = &newest.config;
        Behind::of(
            (&config.trusted_proxies, config.trust_unix_peers),
            peer,
            secure,
            headers,
        )
    }

    /// What this generation hands to the one that replaces it.
    pub(super) fn handover(&self) -> Handover {
        Handover {
            in_force: Rc::downgrade(&self.in_force),
        }
    }

    /// Judges a request for `path` (in normal form) from `peer`, which this generation
    /// routed to `route`, one of `config`'s (its configuration's) routes, or none for the
    /// files: the lists, then the budgets, which it spends. When the policy in force sets
    /// any list or budget, a path its configuration would refuse (encoded slashes that
    /// lead elsewhere under its routes) is refused as that configuration refuses it.
    pub(super) fn check(
        &self,
        (config, route): (&WebConfig, Option<&Route>),
        path: &str,
        peer: Option<IpAddr>,
        recorder: &dyn Recorder,
    ) -> Result<(), Refused> {
        let newest = self.in_force.borrow();
        let judges = match self.judges(&newest, (config, route), path) {
            Ok(Some(judges)) => judges,
            Ok(None) => return Ok(()),
            Err(e) => {
                return Err(Refused {
                    status: StatusCode::BAD_REQUEST,
                    reason: Refusal::Path,
                    detail: e.message(),
                });
            }
        };
        if !judges.admit(peer) {
            return Err(Refused {
                status: StatusCode::FORBIDDEN,
                reason: Refusal::Forbidden,
                detail: "this client may not use this service",
            });
        }
        rates::spend(judges.budgets, peer, recorder)
    }

    /// How long until `peer` may make the request [`check`](Self::check) judged again,
    /// by the budgets it spends.
    pub(super) fn wait(
        &self,
        routed: (&WebConfig, Option<&Route>),
        path: &str,
        peer: Option<IpAddr>,
    ) -> Duration {
        let newest = self.in_force.borrow();
        match self.judges(&newest, routed, path) {
            Ok(Some(judges)) => rates::wait(judges.budgets, peer),
            _ => Duration::ZERO,
        }
    }

    /// What judges a request this generation routed to `route` (one of `config`'s
    /// routes), with `newest` in force; `None` when nothing does.
    fn judges<'p>(
        &'p self,
        newest: &'p Rc<Policy>,
        (config, route): (&WebConfig, Option<&Route>),
        path: &str,
    ) -> Result<Option<Judges<'p>>, PathError> {
        if Rc::ptr_eq(newest, &self.own) {
            if !self.own.any() {
                return Ok(None);
            }
            let route = route_index(config, route);
            return Ok(Some(Judges {
                lists: (&self.own, route),
                kept: None,
                budgets: self.own.rates.tables(route),
            }));
        }
        let route = route_index(config, route);
        // A reload since: route by the configuration in force, with its rule against a
        // path whose other readings (an encoded slash decoded) would lead elsewhere: a
        // route it added must not be stepped around by `/admin%2Fx` on a connection an
        // older generation accepted. A route it no longer has keeps this generation's
        // lists and budget for it.
        let kept = route.filter(|&i| {
            let prefix = &self.own.config.routes[i].prefix;
            !newest.config.routes.iter().any(|n| n.prefix == *prefix)
        });
        let routed = if newest.any() {
            let (_, routed) = newest.config.route_path(path)?;
            route_index(&newest.config, routed)
        } else {
            None
        };
        // The route's budget: the one it had, if the reload removed it and it had one
        // (its requests still go where it sent them), else the one in force.
        let [service, in_force] = newest.rates.tables(routed);
        let kept_budget = kept.and_then(|i| self.own.rates.tables(Some(i))[1]);
        Ok(Some(Judges {
            lists: (newest, routed),
            kept: kept.map(|i| &self.own.config.routes[i]),
            budgets: [service, kept_budget.or(in_force)],
        }))
    }
}

/// What an [`HttpService`](super::HttpService) hands to the service that replaces it on
/// the same reactor ([`handover`](super::HttpService::handover)): the cell of its policy
/// in force, held weakly (nothing is kept alive once every generation is gone).
#[derive(Clone)]
pub struct Handover {
    in_force: Weak<RefCell<Rc<Policy>>>,
}

impl std::fmt::Debug for Handover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handover")
            .field("alive", &(self.in_force.strong_count() > 0))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Access, RateLimit, Route};
    use crate::metrics::NoRecorder;

    fn route(prefix: &str, allow: &[&str]) -> Route {
        let mut r = Route::new(prefix, "http://127.0.0.1:9").unwrap();
        r.access = Access {
            allow: allow.iter().map(|a| a.parse().unwrap()).collect(),
            deny: Vec::new(),
        };
        r
    }

    fn config(routes: Vec<Route>) -> WebConfig {
        WebConfig {
            routes,
            ..WebConfig::default()
        }
    }

    /// `policy`'s judgement of a request for `path` from `peer`, routed by `config` (the
    /// configuration of the generation that accepted its connection): its refusal's
    /// reason, if any.
    fn judged(
        policy: &ClientPolicy,
        config: &WebConfig,
        path: &str,
        peer: Option<IpAddr>,
    ) -> Option<Refusal> {
        policy
            .check((config, config.route_for(path)), path, peer, &NoRecorder)
            .err()
            .map(|r| r.reason)
    }

    /// A generation of `config` taking over from `previous`, put in force.
    fn reloaded(config: &WebConfig, previous: &ClientPolicy) -> ClientPolicy {
        let next = ClientPolicy::joining(config, &previous.handover());
        next.put_in_force();
        next
    }

    #[test]
    fn an_older_generation_is_judged_by_the_lists_in_force_routed_anew() {
        let office = Some("10.0.0.1".parse().unwrap());
        let stranger = Some("192.0.2.1".parse().unwrap());
        // The first generation: one open catch-all route.
        let old_config = config(vec![route("/", &[])]);
        let old = ClientPolicy::new(&old_config);
        assert_eq!(judged(&old, &old_config, "/admin/x", stranger), None);
        // A reload adds /admin/ for the office alone.
        let new_config = config(vec![route("/", &[]), route("/admin/", &["10.0.0.0/8"])]);
        let new = reloaded(&new_config, &old);
        // The old generation routes /admin/x to its catch-all; the policy in force routes
        // it to /admin/ and judges it there, however the slash is spelled (a path its
        // routes would read two ways is refused as the new generation refuses it).
        let forbidden = Some(Refusal::Forbidden);
        assert_eq!(judged(&old, &old_config, "/admin/x", stranger), forbidden);
        assert_eq!(judged(&old, &old_config, "/admin/x", office), None);
        assert_eq!(
            judged(&old, &old_config, "/admin%2Fx", office),
            Some(Refusal::Path),
            "an encoded slash"
        );
        assert_eq!(judged(&old, &old_config, "/other", stranger), None);
        // The new generation, its own lists.
        assert_eq!(judged(&new, &new_config, "/admin/x", stranger), forbidden);

        // A later reload removes /admin/ and the catch-all: the requests the second
        // generation still routes to /admin/ keep its lists.
        let last_config = config(vec![route("/public/", &[])]);
        let _last = reloaded(&last_config, &new);
        assert_eq!(judged(&new, &new_config, "/admin/x", stranger), forbidden);
        assert_eq!(judged(&new, &new_config, "/admin/x", office), None);
    }

    #[test]
    fn a_service_without_lists_or_budgets_refuses_no_one_after_a_reload() {
        let stranger = Some("192.0.2.1".parse().unwrap());
        let old_config = config(vec![route("/", &[])]);
        let old = ClientPolicy::new(&old_config);
        let new_config = config(vec![route("/", &[]), route("/admin/", &[])]);
        let _new = reloaded(&new_config, &old);
        // Ambiguous under the new routes, but nothing to judge it by: not refused here
        // (the path rules of the generation that routes it are what refuse such a path).
        assert_eq!(judged(&old, &old_config, "/admin%2Fx", stranger), None);
    }

    #[test]
    fn a_budget_a_reload_adds_limits_the_connections_already_open() {
        let clock = weft::testing::Clock::fake();
        let _installed = clock.install();
        let client = Some("192.0.2.1".parse().unwrap());
        let other = Some("192.0.2.2".parse().unwrap());
        let old_config = config(vec![route("/", &[])]);
        let old = ClientPolicy::new(&old_config);
        for _ in 0..5 {
            assert_eq!(judged(&old, &old_config, "/x", client), None);
        }
        // A reload adds a service budget of two and a route of one.
        let mut new_config = config(vec![route("/", &[]), route("/login/", &[])]);
        new_config.rate_limit = Some(RateLimit {
            burst: 2,
            ..RateLimit::per_second(1)
        });
        new_config.routes[1].rate_limit = Some(RateLimit::per_second(1));
        let new = reloaded(&new_config, &old);
        let limited = Some(Refusal::RateLimited);
        // The old generation's connection spends the budget in force, shared with the
        // new generation's: the route's one request, then the service's second.
        assert_eq!(judged(&old, &old_config, "/login/a", client), None);
        assert_eq!(judged(&new, &new_config, "/login/a", client), limited);
        assert_eq!(judged(&new, &new_config, "/x", client), None);
        assert_eq!(judged(&old, &old_config, "/x", client), limited);
        let routed = (&old_config, old_config.route_for("/x"));
        assert!(old.wait(routed, "/x", client) > Duration::ZERO);
        // Another client has its own.
        assert_eq!(judged(&old, &old_config, "/x", other), None);
        // A failed reload's generation, never put in force, changes nothing.
        let mut looser = new_config.clone();
        looser.rate_limit = None;
        let _failed = ClientPolicy::joining(&looser, &new.handover());
        assert_eq!(judged(&old, &old_config, "/x", client), limited);
    }

    #[test]
    fn a_route_a_reload_removes_keeps_its_budget_for_the_requests_still_routed_to_it() {
        let clock = weft::testing::Clock::fake();
        let _installed = clock.install();
        let client = Some("192.0.2.1".parse().unwrap());
        let mut old_config = config(vec![route("/", &[]), route("/login/", &[])]);
        old_config.routes[1].rate_limit = Some(RateLimit::per_second(1));
        let old = ClientPolicy::new(&old_config);
        let _new = reloaded(&config(vec![route("/", &[])]), &old);
        assert_eq!(judged(&old, &old_config, "/login/a", client), None);
        assert_eq!(
            judged(&old, &old_config, "/login/a", client),
            Some(Refusal::RateLimited)
        );
        assert_eq!(judged(&old, &old_config, "/x", client), None);
    }

    #[test]
    fn a_route_a_reload_removes_without_a_budget_spends_the_budget_in_force() {
        let clock = weft::testing::Clock::fake();
        let _installed = clock.install();
        let client = Some("192.0.2.1".parse().unwrap());
        // The reload drops /v1/ and puts a budget on the catch-all that now takes its
        // paths: the connections already open spend it for them too.
        let old_config = config(vec![route("/", &[]), route("/v1/", &[])]);
        let old = ClientPolicy::new(&old_config);
        let mut new_config = config(vec![route("/", &[])]);
        new_config.routes[0].rate_limit = Some(RateLimit::per_second(1));
        let _new = reloaded(&new_config, &old);
        assert_eq!(judged(&old, &old_config, "/v1/a", client), None);
        assert_eq!(
            judged(&old, &old_config, "/v1/a", client),
            Some(Refusal::RateLimited)
        );
    }

    #[test]
    fn a_handover_keeps_nothing_alive() {
        let first = ClientPolicy::new(&config(vec![]));
        let handover = first.handover();
        drop(first);
        let next = ClientPolicy::joining(&config(vec![]), &handover);
        assert!(Rc::ptr_eq(&next.in_force.borrow(), &next.own));
    }
}
