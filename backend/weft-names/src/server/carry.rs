//! What a reload must not lose: a service whose settings changed is started again as a
//! new [`DnsServer`](super::DnsServer), which takes over from the one it replaces
//!
//! - the cookie secrets, when both answer cookies: a server cookie handed out before
//!   stays valid (else every client's next query would be BADCOOKIE or rate limited);
//! - the rate limiter, when `rate_limit` is the same: a flood gets no fresh budget;
//! - the forwarding cache, when the upstreams and the cache's settings are the same, and
//!   each upstream's round-trip time, by address;
//! - the answers kept from the zones, when the RA flag they carry is the same.
//!
//! Nothing of a zone that changed survives: its kept answers are dropped, and so are
//! cached forwarded answers for names inside it or whose chain led into it (of a zone
//! added or removed too), so no answer after the reload comes from the zone as it was.

use std::sync::Arc;

use hickory_proto::op::Query;
use hickory_proto::rr::LowerName;

use super::Inner;
use crate::zone::Catalog;

/// Gives `new`, not serving yet, what `old` holds that must survive (see the module).
pub(super) fn take_over(new: &mut Inner, old: &Inner) {
    new.edns.keep_secrets_of(&old.edns);
    if let (Some(limiter), Some(previous)) = (&mut new.limiter, &old.limiter)
        && limiter.borrow().config() == previous.borrow().config()
    {
        *limiter = previous.clone();
    }
    let changed = changed_origins(&old.catalog, &new.catalog);
    if let (Some(forwarder), Some(previous)) = (&mut new.forwarder, &old.forwarder) {
        let forwarder = std::rc::Rc::get_mut(forwarder).expect("not serving yet");
        forwarder.take_over(previous, &changed);
    }
    if new.forwarder.is_some() == old.forwarder.is_some() {
        let kept = old.answers.borrow_mut().take();
        // A zone added is a zone a kept answer's CNAME may lead into now, where it ended
        // before (its target someone else's, or a referral): none is kept then.
        let added = new.catalog.zones().iter().any(|zone| {
            !old.catalog
                .zones()
                .iter()
                .any(|o| o.origin() == zone.origin())
        });
        // Otherwise an answer is kept when the zone that gave it answers the question
        // still, the running one (shared: a zone read again and found unchanged is the
        // running one; a changed one is another); a DS at a child's apex is its parent's
        // to answer.
        let unchanged = |query: &Query| {
            let (name, qtype) = (query.name(), query.query_type());
            match (
                old.catalog.find_for(name, qtype),
                new.catalog.find_for(name, qtype),
            ) {
                (Some(then), Some(now)) => !added && std::ptr::eq(then, now),
                _ => false,
            }
        };
        new.answers.borrow_mut().adopt(kept, unchanged);
    }
}

/// The origins of the zones that are not in both catalogs alike: changed, added or
/// removed. A zone the reload found unchanged is the running one, shared (see
/// [`Catalog::share_unchanged`]), so zones are told apart by identity: comparing records
/// here, on the reactor thread, would stall it for a large zone.
fn changed_origins(old: &Catalog, new: &Catalog) -> Vec<LowerName> {
    let differs = |zones: &Catalog, others: &Catalog| -> Vec<LowerName> {
        zones
            .zones()
            .iter()
            .filter(|z| !others.zones().iter().any(|o| Arc::ptr_eq(o, z)))
            .map(|z| LowerName::new(z.origin()))
            .collect()
    };
    let mut origins = differs(old, new);
    for origin in differs(new, old) {
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    origins
}
