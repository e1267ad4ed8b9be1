//! [`DnsServer`]: one service's answers, whatever transport a query came by.
//!
//! A packet is checked ([`crate::wire`]), counted, then answered from the zone that
//! contains its name, or forwarded ([`crate::forward`]) when no zone does and upstreams
//! are configured, or REFUSED. The answer goes to a [`Reply`] callback, at once or when
//! the upstream answers. A zone transfer request (AXFR, IXFR) goes back to the transport
//! as [`Outcome::Transfer`], to be answered through [`DnsServer::transfer`] with the peer's
//! address; a NOTIFY received is answered NOERROR and wakes the task keeping the zone
//! when it comes from a primary of a secondary zone, REFUSED otherwise, or FORMERR
//! without a question ([`crate::transfer`]).

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};

use crate::answers::{Answers, Kept};
use crate::edns::{self, CookieState, EdnsConfig, ExtendedError};
use crate::forward::{Forwarder, UpstreamLink};
use crate::metrics::{Limited, ServiceMetrics};
use crate::rrl::{Kind, Limiter, RateLimit, Verdict};
use crate::transfer::{NotifyResult, Plan, Transfer, TransferConfig, TsigResult};
use crate::tsig::TsigKey;
use crate::upstream::ForwardOptions;
use crate::view::Source;
use crate::wire::{self, Parsed, Request};
use crate::zone::Catalog;

/// Where an encoded response goes.
pub type Reply = Box<dyn FnOnce(Vec<u8>)>;

/// The transport a query came by; it decides how large an answer may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// UDP: 512 bytes, or the client's EDNS size; larger answers are truncated (TC).
    Udp,
    /// TCP: up to 65535 bytes.
    Tcp,
}

/// What became of a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Answered now from a zone, or with an error code for a well-formed query.
    Answered,
    /// Answered REFUSED: outside the zones, and nowhere to forward it.
    Refused,
    /// Answered now from the forwarding cache.
    FromCache,
    /// Sent upstream (or joined the same question already out); answered later.
    Forwarded,
    /// Answered with an error code (FORMERR, NOTIMP) because the packet was not a
    /// query this server takes; says why.
    Malformed(String),
    /// Not answered: too short to answer, or a response; says why.
    Dropped(String),
    /// A zone transfer request (AXFR, IXFR), not answered yet: the transport answers it
    /// through [`DnsServer::transfer`], knowing the peer and able to send many messages.
    Transfer(Box<Transfer>),
    /// Over the client prefix's `rate_limit`: dropped, or answered truncated or
    /// BADCOOKIE (`slip`).
    RateLimited,
}

/// A DNS service's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// The zones it is authoritative for.
    pub zones: Catalog,
    /// Upstream resolvers for names outside the zones, asked as `forwarding.selection`
    /// says. Empty: such queries are REFUSED.
    pub forward: Vec<SocketAddr>,
    /// How upstreams are picked and answers cached.
    pub forwarding: ForwardOptions,
    /// Forwarded answers kept at most (questions).
    pub cache_size: usize,
    /// Forwarded answers kept at most, in bytes (see [`crate::cache`]).
    pub cache_bytes: usize,
    /// How long an upstream query may take before its clients get SERVFAIL.
    pub timeout: Duration,
    /// Who may transfer the zones (`allow_transfer`) and whom a changed zone is
    /// announced to (`notify`).
    pub transfer: TransferConfig,
    /// NSID and DNS cookies.
    pub edns: EdnsConfig,
    /// Response rate limiting over UDP; `None`: off.
    pub rate_limit: Option<RateLimit>,
    /// The keys a query may be signed with (TSIG, RFC 8945: see [`TsigKey`]).
    pub tsig_keys: Vec<TsigKey>,
}

impl DnsConfig {
    /// The default `cache_size`.
    pub const DEFAULT_CACHE_SIZE: usize = 10_000;
    /// The default `cache_bytes`: 16 MiB.
    pub const DEFAULT_CACHE_BYTES: usize = 16 << 20;
    /// The default `timeout`.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

    /// The zone files loaded, nothing forwarded, default cache and timeout.
    pub fn with_zones(zones: &[PathBuf]) -> Result<Self, crate::NamesError> {
        Ok(Self {
            zones: Catalog::load(zones)?,
            ..Self::default()
        })
    }
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            zones: Catalog::default(),
            forward: Vec::new(),
            forwarding: ForwardOptions::default(),
            cache_size: Self::DEFAULT_CACHE_SIZE,
            cache_bytes: Self::DEFAULT_CACHE_BYTES,
            timeout: Self::DEFAULT_TIMEOUT,
            transfer: TransferConfig::default(),
            edns: EdnsConfig::default(),
            rate_limit: None,
            tsig_keys: Vec::new(),
        }
    }
}

struct Inner {
    /// Shared with the zone transfers under way, which may outlive this server.
    catalog: Rc<Catalog>,
    transfer: TransferConfig,
    /// `None` without `forward` upstreams: a name outside the zones is REFUSED.
    forwarder: Option<Rc<Forwarder>>,
    metrics: ServiceMetrics,
    edns: edns::Options,
    /// `None` without `rate_limit`; shared with the server it succeeds when the setting
    /// is the same, so a flood gets no fresh budget from a reload.
    limiter: Option<Rc<RefCell<Limiter>>>,
    /// Encoded answers from the zones to plain UDP queries, by question.
    answers: RefCell<Answers>,
    tsig_keys: Vec<TsigKey>,
    /// The service's server in force, shared by each server a reload or a transfer
    /// starts in its place: a TCP connection accepted by one of them asks it before each
    /// question, so that its questions are answered by the zones, keys and transfer
    /// rules in force, not those of the server that accepted it.
    in_force: Rc<RefCell<WeakServer>>,
}

/// One DNS service's answering logic, shared by its UDP and TCP listeners. Cheap to
/// clone; lives on the reactor's thread.
#[derive(Clone)]
pub struct DnsServer {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("zones", &self.inner.catalog.zones().len())
            .field(
                "forward",
                &self.inner.forwarder.as_ref().map(|f| f.upstreams()),
            )
            .finish()
    }
}

impl DnsServer {
    /// A server for `config`; upstream queries go out through `link`.
    pub fn new(config: DnsConfig, metrics: ServiceMetrics, link: Rc<dyn UpstreamLink>) -> Self {
        Self::succeeding(config, metrics, link, None)
    }

    /// [`DnsServer::new`], taking over from `previous` (the same service before a reload)
    /// what must survive it (see `server/carry`). `previous`'s TCP connections move to it
    /// only once [`put_in_force`](Self::put_in_force) is called (when the reload
    /// commits). A zone of `config` is taken for
    /// unchanged only when it is `previous`'s own (the same `Arc`): share the zones read
    /// again first ([`Catalog::share_unchanged`](crate::Catalog::share_unchanged)), or
    /// every zone counts as changed and what was kept of them is dropped.
    pub fn succeeding(
        config: DnsConfig,
        metrics: ServiceMetrics,
        link: Rc<dyn UpstreamLink>,
        previous: Option<&DnsServer>,
    ) -> Self {
        metrics.figures().set_upstreams(&config.forward);
        let catalog = Rc::new(config.zones);
        let forwarder = (!config.forward.is_empty()).then(|| {
            Forwarder::new(
                config.forward,
                config.timeout,
                (config.cache_size, config.cache_bytes),
                config.forwarding,
                link,
                metrics.clone(),
                catalog.clone(),
            )
        });
        let mut inner = Inner {
            catalog,
            transfer: config.transfer,
            forwarder,
            metrics,
            edns: edns::Options::new(&config.edns),
            limiter: config
                .rate_limit
                .map(|r| Rc::new(RefCell::new(Limiter::new(r)))),
            answers: RefCell::default(),
            tsig_keys: config.tsig_keys,
            in_force: Rc::default(),
        };
        if let Some(previous) = previous {
            carry::take_over(&mut inner, &previous.inner);
            inner.in_force = previous.inner.in_force.clone();
        }
        Self {
            inner: Rc::new(inner),
        }
    }

    /// Makes this server the one in force for the service it was started for: the TCP
    /// connections its predecessors accepted have their next questions answered by it
    /// (a reload or a transfer calls this when it commits; a server started on its own
    /// is in force for its own connections without it).
    pub fn put_in_force(&self) {
        *self.inner.in_force.borrow_mut() = self.downgrade();
    }

    /// The server in force for this one's service, when another is.
    pub(crate) fn succeeded_by(&self) -> Option<DnsServer> {
        let current = self.inner.in_force.borrow().upgrade()?;
        (!Rc::ptr_eq(&current.inner, &self.inner)).then_some(current)
    }

    /// A handle that does not keep the server alive (for the upstream ports, which the
    /// server's own link opens, and for the service's successor after a reload).
    pub fn downgrade(&self) -> WeakServer {
        WeakServer(Rc::downgrade(&self.inner))
    }

    /// Its counters.
    pub fn metrics(&self) -> &ServiceMetrics {
        &self.inner.metrics
    }

    /// The upstreams it forwards to.
    pub(crate) fn upstreams(&self) -> Vec<SocketAddr> {
        self.inner
            .forwarder
            .as_ref()
            .map_or_else(Vec::new, |f| f.upstreams().to_vec())
    }

    /// Upstream queries out now.
    pub fn upstream_in_flight(&self) -> usize {
        self.inner.forwarder.as_ref().map_or(0, |f| f.in_flight())
    }

    /// Questions in the forwarding cache.
    pub fn cached(&self) -> usize {
        self.inner.forwarder.as_ref().map_or(0, |f| f.cached())
    }

    /// Answers one query packet from `client` (when the transport says) through `reply`,
    /// now or later. The address keys its server cookie and, over UDP, its rate limit
    /// (without one, both take 0.0.0.0).
    pub fn handle(
        &self,
        packet: &[u8],
        via: Via,
        client: Option<SocketAddr>,
        reply: impl FnOnce(Vec<u8>) + 'static,
    ) -> Outcome {
        let metrics = &self.inner.metrics;
        let received = std::time::Instant::now();
        let ip = client.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        if via == Via::Udp
            && let Some(from) = client
            && weft::net::answered_back(from)
        {
            // Any datagram gets an answer (NOTIMP, FORMERR, REFUSED at the least): one
            // forged to come from a daytime or chargen port would loop between the two.
            metrics.dropped();
            return Outcome::Dropped(format!(
                "not answered: the service at port {} answers any datagram back (a loop)",
                from.port()
            ));
        }
        // Boxed only past the kept answers: a question asked again costs no allocation
        // but its answer's bytes.
        let reply: Reply = match via {
            Via::Udp => match self.answer_kept(packet, client, ip, received, reply) {
                Ok(outcome) => return outcome,
                Err(reply) => Box::new(reply),
            },
            Via::Tcp => Box::new(reply),
        };
        // Verified once, when a NOTIFY asks (its MAC is an HMAC over the whole message).
        let signer = std::cell::OnceCell::new();
        let signer_of =
            || signer.get_or_init(|| crate::tsig::signer_of(&self.inner.tsig_keys, packet));
        let secondaries = &self.inner.transfer.secondaries;
        let notified =
            crate::transfer::notify_received(packet, secondaries, client.map(|c| c.ip()), || {
                signer_of().as_ref().map(|s| s.key().clone())
            });
        if let Some((mut answer, rcode, zone)) = notified {
            // RA says what the server offers (RFC 1035 section 4.1.1), on every answer of
            // a server that forwards; set before the answer is signed.
            if self.inner.forwarder.is_some() {
                answer[3] |= 0x80;
            }
            // Signed by a peer with a key of the service, the answer is signed too.
            if let Some(signer) = signer_of() {
                metrics.transfer().tsig(TsigResult::Verified);
                signer.sign(&mut answer);
            }
            // The answer is the header and question: a slipped one goes out as it is.
            if via == Via::Udp && self.rate_limit(ip, Kind::Error) == Verdict::Drop {
                return Outcome::RateLimited;
            }
            let (source, outcome) = if let Some(zone) = zone {
                metrics.transfer().notify(NotifyResult::Accepted);
                if !crate::transfer::inbound::wake(metrics.name(), &zone) {
                    tracing::debug!(%zone, "a NOTIFY for a zone no task keeps yet");
                }
                (Source::Zone, Outcome::Answered)
            } else if rcode == ResponseCode::Refused {
                metrics.transfer().notify(NotifyResult::Received);
                // RFC 1996 section 3.10: a NOTIFY from no known primary is worth a line.
                if !secondaries.is_empty()
                    && let Some(suppressed) = metrics.log_line("NOTIFY refused")
                {
                    let from = client.map(|c| c.to_string()).unwrap_or_default();
                    let key = signer_of().as_ref().map(|s| s.key().clone());
                    let why = crate::transfer::notify_refusal(
                        packet,
                        secondaries,
                        client.map(|c| c.ip()),
                        key.as_ref(),
                    );
                    tracing::warn!(%from, suppressed, "a NOTIFY {why}: refused");
                }
                (Source::Refused, Outcome::Refused)
            } else {
                let why = "a NOTIFY without a question, or that does not decode";
                (Source::Malformed, Outcome::Malformed(why.into()))
            };
            metrics.answered(None, client, received, rcode, source, None);
            reply(answer);
            return outcome;
        }
        let cookies = self.inner.edns.cookies();
        let keys = &self.inner.tsig_keys;
        let mut request = match wire::parse_received(packet, cookies, keys, received) {
            Parsed::Query(request) => request,
            Parsed::Error {
                mut response,
                asked,
                rcode,
                why,
                seal,
            } => {
                // An error answer has no records: a slipped one goes out as it is, with a
                // bare OPT so that it is no larger than the query.
                let verdict = match via {
                    Via::Udp => self.rate_limit(ip, Kind::Error),
                    Via::Tcp => Verdict::Send,
                };
                if verdict == Verdict::Drop {
                    return Outcome::RateLimited;
                }
                if let (Verdict::Send, Some(asked), Some(opt)) =
                    (verdict, asked, response.edns.as_mut())
                {
                    self.inner.edns.answer(&asked, ip).0.add_to(opt);
                }
                // RA says what the server offers, whatever the question (RFC 1035
                // section 4.1.1): set on every answer of a server that forwards.
                response.metadata.recursion_available = self.inner.forwarder.is_some();
                // A question that decoded (of a class not served, say) names the row; a
                // refusal of what it asks is no malformed packet.
                let source = match rcode {
                    ResponseCode::FormErr => Source::Malformed,
                    ResponseCode::NoError => Source::Cookie,
                    _ => Source::Refused,
                };
                metrics.answered(
                    response.queries.first(),
                    client,
                    received,
                    rcode,
                    source,
                    None,
                );
                let mut encoded = wire::encode(&response, None);
                if let Some(seal) = seal {
                    metrics.transfer().tsig(seal.result());
                    seal.apply(&mut encoded);
                    // A TSIG record that would take the answer past what any client
                    // takes over UDP (a long key name after a long question) is left
                    // out, with TC set, for the client to ask again over TCP (RFC 8945
                    // section 5.3; RFC 1035 section 4.2.1).
                    if via == Via::Udp && encoded.len() > wire::CLASSIC_UDP_SIZE {
                        response.metadata.truncation = true;
                        encoded = wire::encode(&response, None);
                    }
                }
                reply(encoded);
                match rcode {
                    // Only a cookie was asked for, and it was given.
                    ResponseCode::NoError => return Outcome::Answered,
                    // A class, an opcode or an EDNS version not served: a query, refused,
                    // not bad input.
                    ResponseCode::Refused | ResponseCode::NotImp | ResponseCode::BADVERS => {
                        return Outcome::Refused;
                    }
                    // A packet that does not decode, or a signature that does not verify
                    // (NOTAUTH): bad input, reported with why.
                    _ => return Outcome::Malformed(why),
                }
            }
            Parsed::Drop(why) => {
                metrics.dropped();
                return Outcome::Dropped(why);
            }
        };
        request.asked.client = client;
        if request.signer.is_some() {
            metrics.transfer().tsig(TsigResult::Verified);
        }
        let qtype = request.query.query_type();
        metrics.query(qtype);
        let recursion = self.inner.forwarder.is_some();
        let cookie = match request.edns.as_mut() {
            Some(edns) => {
                let (answered, cookie) = self.inner.edns.answer(&edns.asked, ip);
                edns.answered = answered;
                cookie
            }
            None => CookieState::Absent,
        };
        metrics.cookie(cookie);
        // A valid server cookie proves the client receives at its address, so its
        // answers reflect at no one: it is not limited.
        let limited = via == Via::Udp && cookie != CookieState::Valid;
        // Each answer is limited by its kind; a question sent upstream counts as an
        // answer when it is asked, so a flood gets no more upstream queries than answers.
        let limit = |request: &mut Request, kind, reply: Reply| -> Result<Reply, Outcome> {
            if !limited {
                return Ok(reply);
            }
            match self.rate_limit(ip, kind) {
                Verdict::Send => Ok(reply),
                Verdict::Drop => Err(Outcome::RateLimited),
                Verdict::Slip => {
                    let slipped = slipped(request, cookie, recursion);
                    send(metrics, request, via, slipped, reply, Source::RateLimited);
                    Err(Outcome::RateLimited)
                }
            }
        };
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            if let Err(outcome) = limit(&mut request, Kind::Error, reply) {
                return outcome;
            }
            return Outcome::Transfer(Box::new(Transfer::new(request, packet)));
        }
        let dnssec_ok = request.edns.as_ref().is_some_and(|edns| edns.dnssec_ok);
        let name = request.query.name();
        if let Some((answer, alone)) = self.inner.catalog.lookup(name, qtype, dnssec_ok) {
            let kind = Kind::of(answer.rcode, answer.authoritative);
            let reply = match limit(&mut request, kind, reply) {
                Ok(reply) => reply,
                Err(outcome) => return outcome,
            };
            let mut message = request.response(answer.rcode, recursion);
            // Only IN is served: knowing no other class, an answer to a question of
            // class ANY is not the whole answer, so it is not authoritative (RFC 6895
            // section 3.2; NSD clears AA too).
            message.metadata.authoritative =
                answer.authoritative && request.query.query_class() != DNSClass::ANY;
            message.answers = answer.answers;
            message.authorities = answer.authorities;
            message.additionals = answer.additionals;
            let rcode = message.metadata.response_code;
            let encoded = match via {
                Via::Udp => {
                    let (encoded, shrunk) = encode_udp(message, request.udp_limit());
                    let mut answers = self.inner.answers.borrow_mut();
                    let query = request.query.clone();
                    // An answer through two zones is not kept: a reload of the second
                    // would leave it stale, and reloads tell kept answers apart by the
                    // zone that answers their question.
                    // A signed query's answer is never kept (nor is one looked up for it:
                    // `answers::key_of` takes no TSIG record), as its signature is its own.
                    if answers.prepared()
                        && alone
                        && request.signer.is_none()
                        && let Some(kept) = Kept::new(&encoded, query, rcode, None, shrunk)
                    {
                        answers.keep(kept);
                    }
                    encoded
                }
                Via::Tcp => wire::encode_tcp(&message, request.tcp_limit()),
            };
            deliver(metrics, &request, rcode, encoded, reply, Source::Zone);
            return Outcome::Answered;
        }
        // A name of a secondary zone with no copy to answer from (not transferred yet, or
        // expired): this service is its authority and has nothing to say; SERVFAIL with
        // the Extended DNS Error Not Ready (as NSD and BIND answer SERVFAIL), never
        // forwarded. A resolver then asks another of the zone's servers.
        let asked = request.query.name();
        if self
            .inner
            .transfer
            .secondaries
            .iter()
            .any(|s| s.origin.zone_of(asked))
        {
            let reply = match limit(&mut request, Kind::Error, reply) {
                Ok(reply) => reply,
                Err(outcome) => return outcome,
            };
            let mut failed = request.response(ResponseCode::ServFail, recursion);
            ExtendedError::NotReady.add_to(&mut failed);
            send(metrics, &request, via, failed, reply, Source::NotReady);
            return Outcome::Answered;
        }
        // A zone answers a meta type (OPT, TSIG, ...) with no data, as NSD does; no
        // upstream is asked for one (RFC 6895 section 3.1: they are not data to look up;
        // RFC 6891 section 6.1.1: an OPT is never forwarded).
        let meta = is_meta(qtype);
        // A question outside the zones without RD is refused, cached or not, as Unbound
        // refuses one by default: answering it from the cache would tell anyone which
        // names this service's clients looked up (cache snooping), and forwarding it is
        // the recursion it did not ask for (RFC 1034 section 4.3.1 leaves the answer to
        // local data and a referral, which a forwarder has none of).
        let unasked = !request.recursion_desired;
        let kind = match self.inner.forwarder {
            Some(_) if !meta && !unasked => Kind::Answer,
            _ => Kind::Error,
        };
        let reply = match limit(&mut request, kind, reply) {
            Ok(reply) => reply,
            Err(outcome) => return outcome,
        };
        match &self.inner.forwarder {
            Some(_) if meta => {
                let refused = request.response(ResponseCode::Refused, recursion);
                send(metrics, &request, via, refused, reply, Source::Refused);
                Outcome::Refused
            }
            Some(_) if unasked => {
                let mut refused = request.response(ResponseCode::Refused, recursion);
                ExtendedError::NotAuthoritative.add_to(&mut refused);
                send(metrics, &request, via, refused, reply, Source::Refused);
                Outcome::Refused
            }
            Some(forwarder) => {
                let reply = if via == Via::Udp {
                    match self.answer_cached(forwarder, &request, reply) {
                        Ok(outcome) => return outcome,
                        Err(reply) => reply,
                    }
                } else {
                    reply
                };
                let outcome = forwarder.ask(request, via, reply);
                forwarder.keep_while_asking(|| Box::new(self.clone()));
                outcome
            }
            None => {
                let mut refused = request.response(ResponseCode::Refused, false);
                ExtendedError::NotAuthoritative.add_to(&mut refused);
                send(metrics, &request, via, refused, reply, Source::Refused);
                Outcome::Refused
            }
        }
    }

    /// What the zone transfer request `asked`, from `peer` over `via`, gets (see
    /// [`crate::transfer`]); what is answered at once is counted.
    pub fn transfer(&self, asked: Transfer, peer: Option<IpAddr>, via: Via) -> Plan {
        let inner = &self.inner;
        let recursion = inner.forwarder.is_some();
        crate::transfer::plan(
            asked,
            peer,
            via,
            &inner.catalog,
            &inner.transfer,
            recursion,
            &inner.metrics,
        )
    }

    /// What `rate_limit` says of one more UDP answer of `kind` to `client`, counted.
    fn rate_limit(&self, client: IpAddr, kind: Kind) -> Verdict {
        let Some(limiter) = &self.inner.limiter else {
            return Verdict::Send;
        };
        let now = weft::time::current_clock().now();
        let (verdict, evicted) = limiter.borrow_mut().check(client, kind, now);
        let metrics = &self.inner.metrics;
        if evicted {
            metrics.rate_limit_evicted();
        }
        match verdict {
            Verdict::Send => {}
            Verdict::Drop => metrics.rate_limited(Limited::Dropped, kind),
            Verdict::Slip => metrics.rate_limited(Limited::Slipped, kind),
        }
        verdict
    }

    /// A datagram from `from` arrived on local port `port`, one upstream queries leave
    /// from. Returns why it was ignored, if it was (the caller reports it; the server
    /// counts it as dropped, and by reason as mismatched).
    pub fn upstream_received(
        &self,
        packet: &[u8],
        from: SocketAddr,
        port: u16,
    ) -> Result<(), String> {
        let result = match &self.inner.forwarder {
            Some(forwarder) => forwarder.received(packet, from, port),
            None => Err(format!("a datagram from {from}, but nothing is forwarded")),
        };
        if result.is_err() {
            self.inner.metrics.dropped();
        }
        result
    }
}

/// A [`DnsServer`] that may be gone: what a service keeps of the server it ran last, to
/// hand it to its successor after a reload without keeping it alive.
#[derive(Clone, Default)]
pub struct WeakServer(std::rc::Weak<Inner>);

impl std::fmt::Debug for WeakServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeakServer")
            .field("alive", &(self.0.strong_count() > 0))
            .finish()
    }
}

impl WeakServer {
    /// The server, if something still holds it (a listener, an open connection).
    pub fn upgrade(&self) -> Option<DnsServer> {
        self.0.upgrade().map(|inner| DnsServer { inner })
    }
}

/// The answer a rate-limited `request` slips, with no options but the cookie, so that a
/// forged source gains next to nothing by it: truncated, or, to a query with a cookie,
/// BADCOOKIE (RFC 7873 section 5.2.3, choice 2: the client learns a server cookie, which
/// lifts the limit from its next query), at most the server cookie's 16 bytes larger.
/// A type that names no data to look up (RFC 6895 section 3.1): OPT, and the question
/// and meta types of 128 to 255 but for zone transfers (answered apart) and ANY.
fn is_meta(qtype: RecordType) -> bool {
    let code = u16::from(qtype);
    qtype == RecordType::OPT || ((128..=254).contains(&code) && !matches!(code, 251 | 252))
}

fn slipped(request: &mut Request, cookie: CookieState, recursion: bool) -> Message {
    if let Some(edns) = request.edns.as_mut() {
        edns.answered = edns.answered.cookie_only();
    }
    if cookie != CookieState::Absent {
        return request.response(ResponseCode::BADCOOKIE, recursion);
    }
    let mut truncated = request.response(ResponseCode::NoError, recursion);
    truncated.metadata.truncation = true;
    truncated
}

/// Encodes an answer for a UDP client that takes `limit` bytes. What only adds to it is
/// left out before TC is set (RFC 2181 section 9 sets TC only when the answer itself
/// does not fit): the additional section of an authoritative answer, and the additional
/// section and NS set (with its RRSIGs) of a forwarded positive one. A referral from a
/// zone, alone or after CNAMEs, keeps its NS set and glue, or is truncated (RFC 9471); an
/// SOA (a CNAME chain ending in NODATA) and a proof (a signed wildcard's NSEC, RFC 4035
/// section 3.1.1) stay. Says whether it was shrunk so (or could not be encoded).
pub(crate) fn encode_udp(mut message: Message, limit: usize) -> (Vec<u8>, bool) {
    match wire::to_wire(&message) {
        Ok(bytes) if bytes.len() <= limit => return (bytes, false),
        Ok(_) => {}
        Err(_) => return (wire::encode(&message, Some(limit)), true),
    }
    let authoritative = message.metadata.authoritative;
    let positive =
        message.metadata.response_code == ResponseCode::NoError && !message.answers.is_empty();
    // A zone's positive answers carry no NS of their own (minimal responses): NS there
    // is a delegation the answer's CNAMEs led to.
    let referral = message
        .authorities
        .iter()
        .any(|r| r.record_type() == RecordType::NS);
    if authoritative && !referral {
        message.additionals.clear();
    } else if positive && !authoritative {
        message.additionals.clear();
        message.authorities.retain(|r| {
            r.record_type() != RecordType::NS && crate::zone::covered(r) != Some(RecordType::NS)
        });
    }
    (wire::encode(&message, Some(limit)), true)
}

/// Encodes `message` for `via`, counts, times and records it as coming from `source`,
/// and hands it to `reply`.
pub(crate) fn send(
    metrics: &ServiceMetrics,
    request: &Request,
    via: Via,
    message: Message,
    reply: Reply,
    source: Source,
) {
    let rcode = message.metadata.response_code;
    let encoded = match via {
        Via::Udp => encode_udp(message, request.udp_limit()).0,
        Via::Tcp => wire::encode_tcp(&message, request.tcp_limit()),
    };
    deliver(metrics, request, rcode, encoded, reply, source);
}

/// Counts, times and records the answer `encoded` to `request` as coming from `source`,
/// and hands it to `reply`.
fn deliver(
    metrics: &ServiceMetrics,
    request: &Request,
    rcode: ResponseCode,
    mut encoded: Vec<u8>,
    reply: Reply,
    source: Source,
) {
    if let Some(signer) = &request.signer {
        signer.sign(&mut encoded);
    }
    let asked = request.asked;
    metrics.answered(
        Some(&request.query),
        asked.client,
        asked.received,
        rcode,
        source,
        asked.span,
    );
    reply(encoded);
}

mod carry;
#[cfg(test)]
mod forward_tests;
mod kept;
#[cfg(test)]
mod kept_tests;
#[cfg(test)]
mod slip_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod upstream_tests;
#[cfg(test)]
mod view_tests;
