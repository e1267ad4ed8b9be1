//! A service's client policy on one reactor: its `allow` and `deny` lists and its
//! `rate_limit` budgets, judging each request after the message rules took it.
//!
//! Every request is served by the service's generation in force when it arrives
//! (`State::newest`), keep-alive connections an older generation accepted included, so a
//! client a reload denies, or a budget a reload adds or tightens, judges the connections
//! already open as it judges new ones. A budget that counts as before keeps its buckets
//! across the reload ([`Rates::adopting`]): a reload is no fresh burst.

use std::net::IpAddr;
use std::time::Duration;

use http::StatusCode;

use super::rates::{self, Rates};
use super::route_index;
use crate::config::{Route, WebConfig};
use crate::metrics::{Recorder, Refusal};
use crate::rules::Refused;

/// One generation's client policy: whether it sets any list, and its budgets.
pub(super) struct ClientPolicy {
    lists: bool,
    rates: Rates,
}

impl ClientPolicy {
    /// The policy of `config`, its budgets starting afresh.
    pub(super) fn new(config: &WebConfig) -> Self {
        Self::with_rates(config, Rates::new(config))
    }

    /// The policy of `config` for a generation that replaces the one whose policy is
    /// `previous`: it takes over the buckets of `previous`'s budgets that count as its own
    /// do (a budget whose settings changed, or a route that is new, starts afresh).
    pub(super) fn succeeding(config: &WebConfig, previous: &Self) -> Self {
        Self::with_rates(config, Rates::new(config).adopting(&previous.rates))
    }

    fn with_rates(config: &WebConfig, rates: Rates) -> Self {
        Self {
            lists: !config.access.is_open() || config.routes.iter().any(|r| !r.access.is_open()),
            rates,
        }
    }

    /// Judges a request from `peer` that `config` (this generation's configuration)
    /// routed to `route`, one of its routes, or none for the files: the lists, then the
    /// budgets, which it spends.
    pub(super) fn check(
        &self,
        (config, route): (&WebConfig, Option<&Route>),
        peer: Option<IpAddr>,
        recorder: &dyn Recorder,
    ) -> Result<(), Refused> {
        if self.lists
            && !(config.access.admits(peer) && route.is_none_or(|r| r.access.admits(peer)))
        {
            return Err(Refused {
                status: StatusCode::FORBIDDEN,
                reason: Refusal::Forbidden,
                detail: "this client may not use this service",
            });
        }
        if !self.rates.any() {
            return Ok(());
        }
        rates::spend(
            self.rates.tables(route_index(config, route)),
            peer,
            recorder,
        )
    }

    /// How long until `peer` may make a request to `route` again, by the budgets it
    /// spends.
    pub(super) fn wait(
        &self,
        (config, route): (&WebConfig, Option<&Route>),
        peer: Option<IpAddr>,
    ) -> Duration {
        rates::wait(self.rates.tables(route_index(config, route)), peer)
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

    /// `policy`'s judgement of a request for `path` from `peer`, routed by `config`: its
    /// refusal's reason, if any.
    fn judged(
        policy: &ClientPolicy,
        config: &WebConfig,
        path: &str,
        peer: Option<IpAddr>,
    ) -> Option<Refusal> {
        policy
            .check((config, config.route_for(path)), peer, &NoRecorder)
            .err()
            .map(|r| r.reason)
    }

    #[test]
    fn a_route_s_list_judges_its_requests_and_the_service_s_all() {
        let office = Some("10.0.0.1".parse().unwrap());
        let stranger = Some("192.0.2.1".parse().unwrap());
        let mut c = config(vec![route("/", &[]), route("/admin/", &["10.0.0.0/8"])]);
        let policy = ClientPolicy::new(&c);
        let forbidden = Some(Refusal::Forbidden);
        assert_eq!(judged(&policy, &c, "/admin/x", stranger), forbidden);
        assert_eq!(judged(&policy, &c, "/admin/x", office), None);
        assert_eq!(judged(&policy, &c, "/other", stranger), None);
        c.access.deny = vec!["10.0.0.0/8".parse().unwrap()];
        let policy = ClientPolicy::new(&c);
        assert_eq!(judged(&policy, &c, "/other", office), forbidden);
        assert_eq!(judged(&policy, &c, "/other", stranger), None);
    }

    #[test]
    fn a_successor_keeps_the_buckets_of_the_budgets_that_count_as_before() {
        let clock = weft::testing::Clock::fake();
        let _installed = clock.install();
        let client = Some("192.0.2.1".parse().unwrap());
        let other = Some("192.0.2.2".parse().unwrap());
        let mut old_config = config(vec![route("/", &[]), route("/login/", &[])]);
        old_config.rate_limit = Some(RateLimit {
            burst: 2,
            ..RateLimit::per_second(1)
        });
        old_config.routes[1].rate_limit = Some(RateLimit::per_second(1));
        let old = ClientPolicy::new(&old_config);
        let limited = Some(Refusal::RateLimited);
        assert_eq!(judged(&old, &old_config, "/login/a", client), None);
        // A reload that keeps both budgets as they were: no fresh burst.
        let kept = ClientPolicy::succeeding(&old_config, &old);
        assert_eq!(judged(&kept, &old_config, "/login/a", client), limited);
        assert_eq!(judged(&kept, &old_config, "/x", client), None);
        assert_eq!(judged(&kept, &old_config, "/x", client), limited);
        let routed = (&old_config, old_config.route_for("/x"));
        assert!(kept.wait(routed, client) > Duration::ZERO);
        // Another client has its own.
        assert_eq!(judged(&kept, &old_config, "/x", other), None);
        // A reload that changes the route's budget starts it afresh, and keeps the
        // service's spent.
        let mut new_config = old_config.clone();
        new_config.routes[1].rate_limit = Some(RateLimit::per_second(2));
        let changed = ClientPolicy::succeeding(&new_config, &kept);
        assert_eq!(judged(&changed, &new_config, "/login/a", other), None);
        assert_eq!(judged(&changed, &new_config, "/login/a", client), limited);
        let mut open = new_config.clone();
        open.rate_limit = None;
        let unlimited = ClientPolicy::succeeding(&open, &changed);
        assert_eq!(judged(&unlimited, &open, "/login/a", client), None);
    }
}
