//! The `allow` and `deny` lists of a service and of its routes on one reactor. The lists
//! in force are one cell that every generation of the service there reads (a reload
//! makes a new generation, whose lists it puts in the cell when the reload commits), so
//! a client a reload denies is denied on the keep-alive connections it already holds,
//! and a reload that fails changes nothing.
//!
//! A request on a connection an older generation accepted is routed again by the
//! configuration in force, so a route a reload adds with lists of its own (`/api/admin/`
//! under `/api/`) judges it too; a route the reload removed keeps its old lists for the
//! requests that older generation still routes to it.

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::{Rc, Weak};

use crate::config::{Route, WebConfig};

/// One generation's lists: the configuration they came with (its routes, to route a
/// request by), and whether it sets any.
pub(super) struct Lists {
    config: WebConfig,
    any: bool,
}

impl Lists {
    fn of(config: &WebConfig) -> Rc<Self> {
        Rc::new(Self {
            any: !config.access.is_open() || config.routes.iter().any(|r| !r.access.is_open()),
            config: config.clone(),
        })
    }

    /// Whether this configuration's service lists and `route`'s (one of its routes)
    /// let `peer` in.
    fn admit(&self, route: Option<&Route>, peer: Option<IpAddr>) -> bool {
        self.config.access.admits(peer) && route.is_none_or(|r| r.access.admits(peer))
    }
}

/// The lists in force for a service on one reactor, shared by its generations.
pub(super) type InForce = Rc<RefCell<Rc<Lists>>>;

/// A generation's view of the lists: its own, and the cell of those in force.
pub(super) struct AccessLists {
    own: Rc<Lists>,
    in_force: InForce,
}

impl AccessLists {
    pub(super) fn new(config: &WebConfig) -> Self {
        let own = Lists::of(config);
        Self {
            in_force: Rc::new(RefCell::new(own.clone())),
            own,
        }
    }

    /// A generation of `config` that reads the lists in force from `cell`, the one the
    /// service's earlier generations read, rather than a cell of its own.
    pub(super) fn joining(config: &WebConfig, cell: &InForce) -> Self {
        Self {
            own: Lists::of(config),
            in_force: cell.clone(),
        }
    }

    /// Puts this generation's lists in force for every generation (at the reload's
    /// commit).
    pub(super) fn put_in_force(&self) {
        *self.in_force.borrow_mut() = self.own.clone();
    }

    /// The cell of the lists in force.
    pub(super) fn cell(&self) -> InForce {
        self.in_force.clone()
    }

    /// Whether `peer` may make a request for `path` (in normal form), which this
    /// generation routed to `route` (none for the files).
    pub(super) fn admits(&self, route: Option<&Route>, path: &str, peer: Option<IpAddr>) -> bool {
        let newest = self.in_force.borrow();
        if Rc::ptr_eq(&newest, &self.own) {
            return !self.own.any || self.own.admit(route, peer);
        }
        // A reload since: route by the configuration in force, with its rule against a
        // path whose other readings (an encoded slash decoded) would lead elsewhere: a
        // route it added with lists must not be stepped around by `/admin%2Fx` on a
        // connection an older generation accepted. A route it no longer has keeps this
        // generation's lists for it.
        let config = &newest.config;
        let kept = route.filter(|r| !config.routes.iter().any(|n| n.prefix == r.prefix));
        let kept_admits = kept.is_none_or(|r| r.access.admits(peer));
        if !newest.any {
            return kept_admits;
        }
        let Ok((_, routed)) = config.route_path(path) else {
            return false;
        };
        newest.admit(routed, peer) && kept_admits
    }
}

/// What an [`HttpService`](super::HttpService) hands to the service that replaces it on
/// the same reactor ([`handover`](super::HttpService::handover)): its `rate_limit`
/// budgets (held weakly: nothing is kept alive once the service is gone) and the cell of
/// the `allow` and `deny` lists in force.
#[derive(Clone)]
pub struct Handover {
    pub(super) rates: Weak<super::rates::Rates>,
    pub(super) access: InForce,
}

impl std::fmt::Debug for Handover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handover")
            .field("alive", &(self.rates.strong_count() > 0))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Access, Route};

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

    #[test]
    fn an_older_generation_is_judged_by_the_lists_in_force_routed_anew() {
        let office = Some("10.0.0.1".parse().unwrap());
        let stranger = Some("192.0.2.1".parse().unwrap());
        // The first generation: one open catch-all route.
        let old_config = config(vec![route("/", &[])]);
        let old = AccessLists::new(&old_config);
        let catch_all = old_config.route_for("/admin/x");
        assert!(old.admits(catch_all, "/admin/x", stranger));
        // A reload adds /admin/ for the office alone.
        let new_config = config(vec![route("/", &[]), route("/admin/", &["10.0.0.0/8"])]);
        let new = AccessLists::joining(&new_config, &old.cell());
        new.put_in_force();
        // The old generation routes /admin/x to its catch-all; the lists in force route
        // it to /admin/ and judge it there, however the slash is spelled.
        assert!(!old.admits(catch_all, "/admin/x", stranger));
        assert!(old.admits(catch_all, "/admin/x", office));
        assert!(
            !old.admits(catch_all, "/admin%2Fx", stranger),
            "an encoded slash"
        );
        assert!(old.admits(catch_all, "/other", stranger));
        // The new generation, its own lists.
        let admin = new_config.route_for("/admin/x");
        assert!(!new.admits(admin, "/admin/x", stranger));

        // A later reload removes /admin/ and the catch-all: the requests the second
        // generation still routes to /admin/ keep its lists.
        let last_config = config(vec![route("/public/", &[])]);
        let last = AccessLists::joining(&last_config, &new.cell());
        last.put_in_force();
        assert!(!new.admits(admin, "/admin/x", stranger));
        assert!(new.admits(admin, "/admin/x", office));
    }

    #[test]
    fn a_service_without_lists_refuses_no_one_after_a_reload() {
        let stranger = Some("192.0.2.1".parse().unwrap());
        let old_config = config(vec![route("/", &[])]);
        let old = AccessLists::new(&old_config);
        let new_config = config(vec![route("/", &[]), route("/admin/", &[])]);
        let new = AccessLists::joining(&new_config, &old.cell());
        new.put_in_force();
        // Ambiguous under the new routes, but no list to judge it by: not forbidden (the
        // path rules, not the access lists, are what refuse such a path).
        let catch_all = old_config.route_for("/admin%2Fx");
        assert!(old.admits(catch_all, "/admin%2Fx", stranger));
    }
}
