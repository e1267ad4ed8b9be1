//! The UDP fast paths of [`DnsServer`]: a plain query (see [`crate::answers`]) answered
//! from the answers kept, by copying bytes; and a forwarding cache hit encoded once and
//! kept for the next time.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

use crate::answers::{self, Aging, Kept};
use crate::edns::CookieState;
use crate::forward::Forwarder;
use crate::rrl::{Kind, Verdict};
use crate::view::Source;
use crate::wire::{self, Parsed, Request};

use super::{DnsServer, Outcome, Reply, Via, deliver, send, slipped};

impl DnsServer {
    /// Answers a plain UDP query (see [`crate::answers`]) from the answers kept, or gives
    /// `reply` back; an answer kept is rate limited and counted as one from the zone, or
    /// from the forwarding cache.
    pub(super) fn answer_kept<R: FnOnce(Vec<u8>) + 'static>(
        &self,
        packet: &[u8],
        client: Option<SocketAddr>,
        ip: IpAddr,
        received: std::time::Instant,
        reply: R,
    ) -> Result<Outcome, R> {
        let mut answers = self.inner.answers.borrow_mut();
        if !answers.prepare(packet) {
            return Err(reply);
        }
        // The clock is read for a forwarded answer only, whose TTLs count down.
        let mut now = None;
        let clock = || *now.get_or_insert_with(|| weft::time::current_clock().now());
        let Some(kept) = answers.get(clock) else {
            return Err(reply);
        };
        let metrics = &self.inner.metrics;
        metrics.query(kept.query.query_type());
        // A forwarded answer is an answer, though not authoritative.
        let forwarded = kept.aging.is_some();
        let authoritative = forwarded || kept.bytes[2] & 0x04 != 0;
        match self.rate_limit(ip, Kind::of(kept.rcode, authoritative)) {
            Verdict::Send => {
                let source = if forwarded {
                    metrics.cache_hit();
                    Source::Cache
                } else {
                    Source::Zone
                };
                let now = now.unwrap_or_default();
                let bytes = answers::patched(kept, packet, now);
                metrics.answered(
                    Some(&kept.query),
                    client,
                    received,
                    kept.rcode,
                    source,
                    None,
                );
                metrics.reused();
                drop(answers);
                reply(bytes);
                Ok(Outcome::Answered)
            }
            Verdict::Drop => Ok(Outcome::RateLimited),
            Verdict::Slip => {
                drop(answers);
                let cookies = self.inner.edns.cookies();
                if let Parsed::Query(mut request) = wire::parse_received(packet, cookies, received)
                {
                    request.asked.client = client;
                    let recursion = self.inner.forwarder.is_some();
                    let slipped = slipped(&mut request, CookieState::Absent, recursion);
                    send(
                        metrics,
                        &request,
                        Via::Udp,
                        slipped,
                        Box::new(reply),
                        Source::RateLimited,
                    );
                }
                Ok(Outcome::RateLimited)
            }
        }
    }

    /// Answers a plain UDP `request` (one whose answer may be kept: the question
    /// [`answer_kept`](Self::answer_kept) prepared last, so over UDP only) from the
    /// forwarding cache, keeping the encoded answer for the next time, or gives `reply`
    /// back.
    pub(super) fn answer_cached(
        &self,
        forwarder: &Rc<Forwarder>,
        request: &Request,
        reply: Reply,
    ) -> Result<Outcome, Reply> {
        if !self.inner.answers.borrow().prepared() {
            return Err(reply);
        }
        let Some((encoded, rcode)) = forwarder.cached_udp(request) else {
            return Err(reply);
        };
        let now = weft::time::current_clock().now();
        if let Some(aging) = Aging::of(&encoded, now) {
            self.inner.answers.borrow_mut().keep(Kept {
                bytes: encoded.clone().into_boxed_slice(),
                query: request.query.clone(),
                rcode,
                aging: Some(aging),
            });
        }
        let metrics = &self.inner.metrics;
        deliver(metrics, request, rcode, encoded, reply, Source::Cache);
        Ok(Outcome::FromCache)
    }
}
