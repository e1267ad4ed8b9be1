//! The `rate_limit` budgets of a service and of each of its routes on one reactor:
//! token buckets by client prefix ([`PrefixRates`]), a request spending a token of each
//! budget it falls under, or of none.

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use weft::policies::PrefixRates;

use crate::config::{RateLimit, WebConfig};
use crate::metrics::{Recorder, Refusal};
use crate::rules::Refused;

/// Client prefixes a `rate_limit` follows at once on each reactor (48 bytes each): a
/// prefix idle long enough to have its burst again gives its place up without being
/// counted; past that the one seen longest ago is forgotten, counted in
/// `weft_http_rate_limit_evictions_total`.
const CLIENTS: usize = 16_384;

/// One budget: its settings and its buckets, shared with the service that replaces this
/// one while the settings stay the same.
struct Budget {
    limit: RateLimit,
    table: Rc<RefCell<PrefixRates>>,
}

impl Budget {
    fn new(limit: &Option<RateLimit>) -> Option<Self> {
        limit.map(|limit| Self {
            table: Rc::new(RefCell::new(PrefixRates::new(limit.settings(), CLIENTS))),
            limit,
        })
    }

    /// This budget, with `previous`'s buckets when it counts the same way.
    fn adopting(self, previous: Option<&Budget>) -> Self {
        match previous {
            Some(p) if p.limit == self.limit => Self {
                limit: self.limit,
                table: p.table.clone(),
            },
            _ => self,
        }
    }
}

/// The budgets of a service and of each of its routes, on one reactor.
pub(super) struct Rates {
    service: Option<Budget>,
    /// In the order of the configuration's routes, with their prefixes.
    routes: Box<[(String, Option<Budget>)]>,
    /// Whether there is any budget: without one a request looks no further.
    any: bool,
}

impl Rates {
    pub(super) fn new(config: &WebConfig) -> Self {
        let routes: Box<[_]> = config
            .routes
            .iter()
            .map(|r| (r.prefix.clone(), Budget::new(&r.rate_limit)))
            .collect();
        let service = Budget::new(&config.rate_limit);
        Self {
            any: service.is_some() || routes.iter().any(|(_, b)| b.is_some()),
            service,
            routes,
        }
    }

    /// These budgets, taking over the buckets of those of `previous` (the service this one
    /// replaces) that count the same way: the service's, and each route's by its prefix.
    /// A client spends on where it left off, on the old service's connections and the
    /// new one's alike.
    pub(super) fn adopting(self, previous: &Self) -> Self {
        let service = self.service.map(|b| b.adopting(previous.service.as_ref()));
        let routes = self
            .routes
            .into_vec()
            .into_iter()
            .map(|(prefix, budget)| {
                let before = previous
                    .routes
                    .iter()
                    .find(|(p, _)| *p == prefix)
                    .and_then(|(_, b)| b.as_ref());
                let budget = budget.map(|b| b.adopting(before));
                (prefix, budget)
            })
            .collect();
        Self {
            service,
            routes,
            any: self.any,
        }
    }

    /// Whether there is any budget.
    pub(super) fn any(&self) -> bool {
        self.any
    }

    /// The budgets a request to the route number `route` (none for the files) spends:
    /// the service's and the route's, if there are any.
    pub(super) fn tables(&self, route: Option<usize>) -> Tables<'_> {
        if !self.any {
            return [None, None];
        }
        let route = route
            .and_then(|i| self.routes.get(i))
            .and_then(|(_, b)| b.as_ref());
        [self.service.as_ref(), route].map(|b| b.map(|b| &*b.table))
    }
}

/// The budgets one request spends: a service's and a route's, either or both absent.
pub(super) type Tables<'r> = [Option<&'r RefCell<PrefixRates>>; 2];

/// Spends a request of `peer`'s `budgets`, refusing it when either is spent already:
/// then it spends neither, as nginx charges its zones only for a request they all let
/// through. A peer that is no address (a unix socket) is not limited.
pub(super) fn spend(
    budgets: Tables<'_>,
    peer: Option<IpAddr>,
    recorder: &dyn Recorder,
) -> Result<(), Refused> {
    let (Some(peer), [first, second]) = (peer, budgets) else {
        return Ok(());
    };
    if first.is_none() && second.is_none() {
        return Ok(());
    }
    let now = weft::time::current_clock().now();
    let take = |table: &RefCell<PrefixRates>| {
        let taken = table.borrow_mut().take(peer, 0, now);
        if taken.evicted {
            recorder.rate_limit_evicted();
        }
        taken.allowed
    };
    let refused = Refused {
        status: http::StatusCode::TOO_MANY_REQUESTS,
        reason: Refusal::RateLimited,
        detail: "too many requests from this client",
    };
    if let Some(first) = first
        && !take(first)
    {
        return Err(refused);
    }
    if let Some(second) = second
        && !take(second)
    {
        if let Some(first) = first {
            first.borrow_mut().give_back(peer, 0);
        }
        return Err(refused);
    }
    Ok(())
}

/// How long until `peer` may make a request spending `budgets` again.
pub(super) fn wait(budgets: Tables<'_>, peer: Option<IpAddr>) -> Duration {
    let Some(peer) = peer else {
        return Duration::ZERO;
    };
    let now = weft::time::current_clock().now();
    budgets
        .into_iter()
        .flatten()
        .map(|table| table.borrow().wait(peer, 0, now))
        .max()
        .unwrap_or_default()
}
