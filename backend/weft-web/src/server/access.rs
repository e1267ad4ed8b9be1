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
    in_force: RefCell<InForce>,
}

impl AccessLists {
    pub(super) fn new(config: &WebConfig) -> Self {
        let own = Lists::of(config);
        Self {
            in_force: RefCell::new(Rc::new(RefCell::new(own.clone()))),
            own,
        }
    }

    /// Reads the lists in force from `cell`, the one the service's earlier generations
    /// read, rather than a cell of its own.
    pub(super) fn join(&self, cell: &InForce) {
        *self.in_force.borrow_mut() = cell.clone();
    }

    /// Puts this generation's lists in force for every generation (at the reload's
    /// commit).
    pub(super) fn put_in_force(&self) {
        *self.in_force.borrow().borrow_mut() = self.own.clone();
    }

    /// The cell of the lists in force.
    pub(super) fn cell(&self) -> InForce {
        self.in_force.borrow().clone()
    }

    /// Whether `peer` may make a request for `path` (in normal form), which this
    /// generation routed to `route` (none for the files).
    pub(super) fn admits(&self, route: Option<&Route>, path: &str, peer: Option<IpAddr>) -> bool {
        let cell = self.in_force.borrow();
        let newest = cell.borrow();
        if Rc::ptr_eq(&newest, &self.own) {
            return !self.own.any || self.own.admit(route, peer);
        }
        // A reload since: route by the configuration in force. A route it no longer has
        // keeps this generation's lists for it.
        let config = &newest.config;
        let kept = route.filter(|r| !config.routes.iter().any(|n| n.prefix == r.prefix));
        let routed = config.route_for(path);
        (!newest.any || newest.admit(routed, peer)) && kept.is_none_or(|r| r.access.admits(peer))
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
