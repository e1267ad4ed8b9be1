//! The `allow` and `deny` lists of a service and of its routes on one reactor: the
//! newest generation's lists (a reload makes a new one) judge every request, on the
//! connections an older generation accepted too, so a client denied by a reload is
//! denied on the keep-alive connections it already holds.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::rc::{Rc, Weak};

use crate::config::{Access, Route, WebConfig};

/// One generation's lists.
struct Lists {
    service: Access,
    /// By route prefix; a route without lists is not here.
    routes: HashMap<String, Access>,
    /// Every route's prefix, with lists or without.
    prefixes: HashSet<String>,
    /// Whether any list is set: without one a request looks no further.
    any: bool,
}

/// See the module docs. Each generation of the service has its own lists and a weak
/// link to its successor's: while the successor lives, its lists are the ones in force.
/// A reload that fails drops the new generation, and with it the link, so nothing of a
/// configuration that was not applied takes effect.
pub(super) struct AccessLists {
    lists: Lists,
    successor: RefCell<Weak<AccessLists>>,
}

impl AccessLists {
    pub(super) fn new(config: &WebConfig) -> Self {
        let routes: HashMap<_, _> = config
            .routes
            .iter()
            .filter(|r| !r.access.is_open())
            .map(|r| (r.prefix.clone(), r.access.clone()))
            .collect();
        Self {
            lists: Lists {
                any: !config.access.is_open() || !routes.is_empty(),
                service: config.access.clone(),
                routes,
                prefixes: config.routes.iter().map(|r| r.prefix.clone()).collect(),
            },
            successor: RefCell::new(Weak::new()),
        }
    }

    /// Makes `next` (the lists of the service that replaces this one) the ones in force
    /// for as long as it lives.
    pub(super) fn succeeded_by(&self, next: &Rc<AccessLists>) {
        *self.successor.borrow_mut() = Rc::downgrade(next);
    }

    /// Whether `peer` may make a request of `route` (none for the files): the service's
    /// lists and the route's both let it in, those of the newest live generation; a
    /// route that generation no longer has keeps the lists it had here (requests on
    /// connections accepted before may still be routed to it, and must not find it
    /// open).
    pub(super) fn admits(&self, route: Option<&Route>, peer: Option<IpAddr>) -> bool {
        let successor = self.successor.borrow().upgrade();
        if let Some(next) = successor {
            let kept = route.is_some_and(|r| !next.lists.prefixes.contains(&r.prefix));
            if !kept {
                return next.admits(route, peer);
            }
            return next.admits(None, peer) && self.lists.admits_route(route, peer);
        }
        let lists = &self.lists;
        if !lists.any {
            return true;
        }
        lists.service.admits(peer) && lists.admits_route(route, peer)
    }
}

impl Lists {
    /// Whether `route`'s own lists let `peer` in.
    fn admits_route(&self, route: Option<&Route>, peer: Option<IpAddr>) -> bool {
        route
            .and_then(|r| self.routes.get(&r.prefix))
            .is_none_or(|access| access.admits(peer))
    }
}

/// What an [`HttpService`](super::HttpService) hands to the service that replaces it on
/// the same reactor ([`handover`](super::HttpService::handover)): its `rate_limit`
/// budgets and its `allow` and `deny` lists. Held weakly: it keeps nothing alive once the
/// service is gone.
#[derive(Clone)]
pub struct Handover {
    pub(super) rates: Weak<super::rates::Rates>,
    pub(super) access: Weak<AccessLists>,
}

impl std::fmt::Debug for Handover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handover")
            .field("alive", &(self.rates.strong_count() > 0))
            .finish()
    }
}

impl Handover {
    /// The lists of the service handed over, in force for it and its successor.
    pub(super) fn access(&self) -> Option<Rc<AccessLists>> {
        self.access.upgrade()
    }
}
