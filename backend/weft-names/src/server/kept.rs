//! The UDP fast paths of [`DnsServer`]: a plain query (see [`crate::answers`]) answered
//! from the answers kept, by copying bytes; and a forwarding cache hit encoded once and
//! kept for the next time.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

use crate::answers::{self, Aging, Kept};
use crate::edns::{CookieState, OptionsAnswered, OptionsAsked};
use crate::forward::Forwarder;
use crate::rrl::{Kind, Verdict};
use crate::view::Source;
use crate::wire::{self, Parsed, Request};

use super::{DnsServer, Outcome, Reply, Via, deliver, send, slipped};

impl DnsServer {
    /// Answers a plain UDP query (see [`crate::answers`]) from the answers kept, or gives
    /// `reply` back; an answer kept is rate limited and counted as one from the zone, or
    /// from the forwarding cache, and carries the NSID and cookie asked for.
    pub(super) fn answer_kept<R: FnOnce(Vec<u8>) + 'static>(
        &self,
        packet: &[u8],
        client: Option<SocketAddr>,
        ip: IpAddr,
        received: std::time::Instant,
        reply: R,
    ) -> Result<Outcome, R> {
        let mut answers = self.inner.answers.borrow_mut();
        let Some(plain) = answers.prepare(packet) else {
            return Err(reply);
        };
        // The clock is read for a forwarded answer only, whose TTLs count down.
        let mut now = None;
        let clock = || *now.get_or_insert_with(|| weft::time::current_clock().now());
        let Some(kept) = answers.get(clock) else {
            return Err(reply);
        };
        // A malformed cookie gets FORMERR, and an answer too large with the options the
        // query asked is shrunk: both from the full path.
        let Some((options, cookie)) = self.options_of(&packet[plain.options], ip) else {
            return Err(reply);
        };
        if kept.bytes.len() + options.wire_len() > plain.limit {
            return Err(reply);
        }
        let metrics = &self.inner.metrics;
        metrics.query(kept.query.query_type());
        metrics.cookie(cookie);
        // A forwarded answer is an answer, though not authoritative.
        let forwarded = kept.aging.is_some();
        let authoritative = forwarded || kept.bytes[2] & 0x04 != 0;
        // A valid server cookie lifts the limit, as on the full path.
        let verdict = match cookie {
            CookieState::Valid => Verdict::Send,
            _ => self.rate_limit(ip, Kind::of(kept.rcode, authoritative)),
        };
        match verdict {
            Verdict::Send => {
                let source = if forwarded {
                    metrics.cache_hit();
                    Source::Cache
                } else {
                    Source::Zone
                };
                let now = now.unwrap_or_default();
                let bytes = answers::patched(kept, packet, now, &options);
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
                self.slip_kept(packet, client, received, (options, cookie), reply);
                Ok(Outcome::RateLimited)
            }
        }
    }

    /// The options of the answer to a query with the OPT options `rdata` from `ip`, and
    /// what its cookie proved; `None` when its cookie is malformed.
    fn options_of(&self, rdata: &[u8], ip: IpAddr) -> Option<(OptionsAnswered, CookieState)> {
        if rdata.is_empty() {
            return Some((OptionsAnswered::default(), CookieState::Absent));
        }
        let edns = &self.inner.edns;
        let (asked, malformed) = OptionsAsked::read_wire(rdata, edns.cookies());
        match malformed {
            Some(_) => None,
            None => Some(edns.answer(&asked, ip)),
        }
    }

    /// Sends what a rate-limited plain query `packet` slips (see [`slipped`]), given
    /// the options of its answer and what its cookie proved.
    fn slip_kept<R: FnOnce(Vec<u8>) + 'static>(
        &self,
        packet: &[u8],
        client: Option<SocketAddr>,
        received: std::time::Instant,
        (options, cookie): (OptionsAnswered, CookieState),
        reply: R,
    ) {
        let cookies = self.inner.edns.cookies();
        let Parsed::Query(mut request) = wire::parse_received(packet, cookies, &[], received)
        else {
            return;
        };
        request.asked.client = client;
        if let Some(edns) = request.edns.as_mut() {
            edns.answered = options;
        }
        let recursion = self.inner.forwarder.is_some();
        let slipped = slipped(&mut request, cookie, recursion);
        let metrics = &self.inner.metrics;
        send(
            metrics,
            &request,
            Via::Udp,
            slipped,
            Box::new(reply),
            Source::RateLimited,
        );
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
        if !self.inner.answers.borrow().prepared() || request.signer.is_some() {
            return Err(reply);
        }
        let Some((encoded, rcode, shrunk)) = forwarder.cached_udp(request) else {
            return Err(reply);
        };
        let now = weft::time::current_clock().now();
        // A truncated answer ages not: it is never kept.
        if let Some(aging) = Aging::of(&encoded, now)
            && let Some(kept) =
                Kept::new(&encoded, request.query.clone(), rcode, Some(aging), shrunk)
        {
            self.inner.answers.borrow_mut().keep(kept);
        }
        let metrics = &self.inner.metrics;
        deliver(metrics, request, rcode, encoded, reply, Source::Cache);
        Ok(Outcome::FromCache)
    }
}
