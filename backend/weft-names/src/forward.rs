//! Forwarding: questions outside the zones go to the upstream resolvers, answers come
//! back through the cache.
//!
//! Each outstanding question is one Deferred labelled `dns upstream query`, created here
//! with the overall timeout, so an upstream that does not answer shows in the inspector
//! as a pending (then stalled) Deferred created at this file's line, and its clients get
//! SERVFAIL when the timeout fires. Clients asking the same question while it is out
//! wait on the same query. Its named steps (`cache lookup`, then `upstream` naming the
//! addresses it may wait on, `upstream over TCP` naming one) make the stall report say
//! whom it waits on.
//!
//! Each upstream query (a "try") has its own random id and leaves from a random local
//! port (RFC 5452 section 9.2; the link picks the port). An answer is taken only from
//! the upstream the try went to, on the port it left from, with its id and the same
//! question; anything else is dropped and counted by reason. `Upstreams` decides the
//! order: one upstream after another by smoothed round-trip time, or all at once.
//!
//! An upstream answer truncated over UDP (TC) is not an answer: the same query goes to
//! that upstream again over TCP (RFC 1035 section 4.2.1, RFC 7766 section 5), within the
//! same Deferred and timeout. Only whole answers are cached and replayed, so a client
//! over TCP gets the whole answer and one over UDP gets it truncated to its own size by
//! `wire::encode`; when no whole answer comes, clients get SERVFAIL, or a stale answer
//! when `serve_stale` allows one (RFC 8767).
//!
//! Nor is a failure (SERVFAIL, REFUSED, NOTIMP, FORMERR) an answer: it settles its try
//! as a timeout would, the next upstream is asked at once (sequential) or the others
//! still awaited (parallel), and only when none is left do the clients get SERVFAIL,
//! whichever failure the last one sent: the upstreams' refusal is not the client's.

use std::any::Any;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::LowerName;
use weft::defer::{Deferred, DeferredId, Failure, Resolver, StepDetail, Steps, WaitsOn};
use weft::observe::exemplar::SpanRef;
use weft::observe::trace;
use weft::policies::PeerKey;
use weft::time::DelayedCall;

use crate::cache::{Cache, Key, Policy};
pub use crate::link::{TcpAnswer, TcpExchange, UdpLease, UpstreamLink};
use crate::metrics::{Busy, ServiceMetrics};
use crate::server::{Outcome, Reply, Via, send};
use crate::upstream::{ForwardOptions, Selection, Upstreams};
use crate::view::Source;
use crate::wire::{EDNS_UDP_SIZE, Request};
use crate::zone::Catalog;

mod finish;
mod received;
mod scrub;

use finish::response;

/// The inspector's label of an upstream query's Deferred.
pub const UPSTREAM_LABEL: &str = "dns upstream query";
/// The named step a query's chain starts with: the cache did not have the answer.
pub const STEP_CACHE: &str = "cache lookup";
/// The named step of a query waiting on upstreams; its detail names them.
pub const STEP_UPSTREAM: &str = "upstream";
/// The named step of a query asked again over TCP; its detail names the upstream.
pub const STEP_UPSTREAM_TCP: &str = "upstream over TCP";
/// The detail of [`STEP_CACHE`]: the cache did not have it.
const CACHE_MISS: StepDetail = StepDetail::from_static("miss");
/// Distinct questions out at once; more are answered SERVFAIL at once.
pub(crate) const MAX_IN_FLIGHT: usize = 4096;
/// Clients waiting on one question; more are answered SERVFAIL at once.
const MAX_WAITERS: usize = 256;
/// Clients waiting on upstream answers at once, all questions together (each holds its
/// request and reply until the answer or the timeout); more are answered SERVFAIL at once
/// and counted as `waiters`. Without it the two bounds above would allow about a million.
pub(crate) const MAX_WAITING: usize = 16_384;
/// Clients of one address (an IPv6 one's /64) waiting on upstream answers at once, over
/// every question out; more are answered SERVFAIL at once and counted as `client`. A
/// client starting questions no upstream answers (names under a dead domain) holds
/// them for the `timeout`: without this share one address could take the whole of
/// `MAX_IN_FLIGHT` or `MAX_WAITING`, and every other client's forwarded question would
/// fail at once.
pub(crate) const MAX_WAITING_PER_CLIENT: u32 = 512;
/// Questions asked again over TCP at once (each holds a connection to an upstream for up
/// to the timeout); a truncated answer beyond them is answered SERVFAIL.
pub(crate) const MAX_OVER_TCP: usize = 64;
/// Ids of finished tries remembered, so an answer arriving after its question was
/// settled (the slower upstreams' in `parallel`) is counted as late, not as a wrong id.
const RECENT_IDS: usize = 4096;
/// Random ids drawn before a try gives up on finding one not in use.
const ID_ATTEMPTS: usize = 64;

/// Whether an upstream answering `rcode` failed the try rather than answered it.
fn upstream_failure(rcode: ResponseCode) -> bool {
    matches!(
        rcode,
        ResponseCode::ServFail
            | ResponseCode::Refused
            | ResponseCode::NotImp
            | ResponseCode::FormErr
    )
}

/// A client waiting for an upstream answer.
struct Waiter {
    request: Request,
    via: Via,
    /// Sends the answer back the way the question came.
    reply: Reply,
}

/// One query sent to one upstream.
struct Try {
    /// The id it was sent with.
    id: u16,
    /// Its upstream, by index.
    upstream: usize,
    /// The local port it left from; dropping it lets the link close the port.
    lease: UdpLease,
    /// When it was sent, for the upstream's round-trip time.
    sent: Duration,
    /// Answered, or its upstream already penalised for letting it time out.
    settled: bool,
    /// Its wait was cut to the share of the question's time left (`try_share`), shorter
    /// than its upstream's own: expiring, it says nothing against the upstream.
    cut: bool,
}

struct InFlight {
    /// The question, to remove it from `by_question` when it ends.
    key: Key,
    /// The question as asked, to check an upstream answer is for it and to name it in logs.
    query: Query,
    /// The query as encoded; each try writes its own id into the first two bytes.
    packet: Vec<u8>,
    /// Taken when the first whole answer arrives.
    resolver: Option<Resolver<Message>>,
    /// The upstream query's span, while spans are exported: each waiter's answer latency
    /// names it as its exemplar.
    span: Option<SpanRef>,
    /// Everyone who asked this question while it was out (at most `MAX_WAITERS`).
    waiters: Vec<Waiter>,
    /// The upstreams still to ask, the next one last.
    pending: Vec<usize>,
    /// The queries sent so far.
    tries: Vec<Try>,
    /// Asks the next upstream when the current try's timeout passes (sequential).
    next_try: Option<DelayedCall>,
    /// Asking again over TCP: after the first truncated answer, it stays true (later
    /// truncated answers are ignored) and the exchange is kept here, so finishing the
    /// query abandons it and closes its connection.
    over_tcp: bool,
    /// The TCP exchange asking it again; dropping it closes the connection.
    tcp: Option<TcpExchange>,
    /// The upstream whose whole answer fired it.
    answered_by: Option<SocketAddr>,
    /// Marks its chain's named steps.
    steps: Steps,
    /// Asked with checking disabled (CD): its answer may be data a validating upstream
    /// would have refused, so it is neither cached nor shared with clients that did not
    /// ask for that (RFC 4035 §3.2.2, RFC 6840 §5.9).
    unchecked: bool,
}

/// What keeps a forwarder with questions out going: the server it answers for, which
/// its listeners and connections may no longer hold (at shutdown, or once a reload has
/// removed the service, a question from a UDP client is held by nothing else), and a
/// hold on shutdown, so the drain waits for the answers owed. Taken once no question
/// is out. It makes a cycle (server, forwarder, keeper) while questions are out, which
/// each question's timeout ends while the reactor runs; a reactor stopped first (its drain
/// deadline shorter than `timeout`) leaves the server behind, as at a process's exit.
struct Keeper {
    _owner: Box<dyn Any>,
    _hold: weft::ShutdownHold,
}

#[derive(Default)]
struct State {
    /// Questions out, by number (at most `MAX_IN_FLIGHT`).
    in_flight: HashMap<u64, InFlight>,
    /// The number of each question out, so a second client asking it joins the first.
    by_question: HashMap<Key, u64>,
    /// The question of each try out, by the id it was sent with.
    by_id: HashMap<u16, u64>,
    /// Ids of the latest finished tries (at most `RECENT_IDS`).
    recent: VecDeque<u16>,
    /// Questions in flight that are asked again over TCP (each holds a connection).
    over_tcp: usize,
    /// Clients waiting, over every question out (at most `MAX_WAITING`).
    waiting: usize,
    /// Clients waiting, by peer (an address, or an IPv6 /64: `PeerKey`, as every per-peer
    /// cap counts; at most `MAX_WAITING_PER_CLIENT` each); a peer with none waiting is
    /// removed.
    waiting_by_client: HashMap<PeerKey, u32>,
    /// The next question's number.
    next: u64,
}

pub(crate) struct Forwarder {
    /// The upstreams' addresses, in configuration order.
    addrs: Vec<SocketAddr>,
    /// Their round-trip times, which order them.
    upstreams: RefCell<Upstreams>,
    selection: Selection,
    /// How long a question may take, over every try, UDP and TCP together.
    timeout: Duration,
    /// How queries reach upstreams: real sockets, or a test double.
    link: Rc<dyn UpstreamLink>,
    metrics: ServiceMetrics,
    /// Upstream answers, served until their TTL runs out (at most `cache_size` of them,
    /// and `cache_bytes`);
    /// shared with the server this one succeeds when its settings are the same.
    cache: Rc<RefCell<Cache>>,
    /// The questions out; in a `RefCell` because the service's listeners and its timers
    /// share the forwarder.
    state: RefCell<State>,
    /// The upstreams as a query's named step names them, made once.
    upstreams_detail: StepDetail,
    /// Set while questions are out.
    keeper: RefCell<Option<Keeper>>,
    /// The service's own zones: nothing an upstream says of a name in them is kept
    /// ([`scrub`]), and a CNAME chain the upstream leads into one is completed from it.
    zones: Rc<Catalog>,
}

impl State {
    /// One more client waits, of `share` when its address is known.
    fn wait(&mut self, share: Option<PeerKey>) {
        self.waiting += 1;
        if let Some(share) = share {
            *self.waiting_by_client.entry(share).or_default() += 1;
        }
    }

    /// The clients of `waiters` wait no more.
    fn answered(&mut self, waiters: &[Waiter]) {
        self.waiting -= waiters.len();
        for share in waiters
            .iter()
            .filter_map(|w| w.request.asked.client.map(peer_of))
        {
            if let Some(n) = self.waiting_by_client.get_mut(&share) {
                *n -= 1;
                if *n == 0 {
                    self.waiting_by_client.remove(&share);
                }
            }
        }
    }
}

/// The peer a client's questions are counted under.
fn peer_of(client: SocketAddr) -> PeerKey {
    PeerKey::of_ip(client.ip())
}

/// How long a try waits before the next upstream is asked: its upstream's own try timeout,
/// but at most an even share of what is `left` of the question's time among it and the
/// `after` upstreams still to ask. An upstream whose estimate a flood of unanswerable
/// questions has pushed past the whole timeout must not take it all, or the next is
/// never asked (a late answer from it is still taken).
fn try_share(own: Duration, left: Duration, after: usize) -> Duration {
    own.min(left / (u32::try_from(after).unwrap_or(u32::MAX).saturating_add(1)))
}

fn now() -> Duration {
    weft::time::current_clock().now()
}

/// An id no try out uses, if one is found in a few draws.
fn fresh_id(by_id: &HashMap<u16, u64>) -> Option<u16> {
    (0..ID_ATTEMPTS)
        .map(|_| crate::random::u16())
        .find(|id| !by_id.contains_key(id))
}

impl Forwarder {
    pub(crate) fn new(
        upstreams: Vec<SocketAddr>,
        timeout: Duration,
        (cache_size, cache_bytes): (usize, usize),
        options: ForwardOptions,
        link: Rc<dyn UpstreamLink>,
        metrics: ServiceMetrics,
        zones: Rc<Catalog>,
    ) -> Rc<Self> {
        let forwarding = metrics.forwarding();
        let ranked = Upstreams::new(&upstreams, |a| forwarding.upstream(a));
        let policy = Policy {
            min_ttl: options.min_ttl,
            max_ttl: options.max_ttl,
            serve_stale: options.serve_stale,
        };
        let names: Vec<String> = upstreams.iter().map(SocketAddr::to_string).collect();
        Rc::new(Self {
            upstreams_detail: StepDetail::new(&names.join(", ")),
            addrs: upstreams,
            upstreams: RefCell::new(ranked),
            selection: options.selection,
            timeout,
            link,
            metrics,
            cache: Rc::new(RefCell::new(
                Cache::new(cache_size, policy).with_max_bytes(cache_bytes),
            )),
            state: RefCell::default(),
            keeper: RefCell::default(),
            zones,
        })
    }

    /// While questions are out, keeps the server this forwarder answers for alive (made
    /// by `owner` when none is kept yet) and shutdown waiting: their answers are owed
    /// whether or not the service still listens. Called after each question asked.
    pub(crate) fn keep_while_asking(&self, owner: impl FnOnce() -> Box<dyn Any>) {
        if self.keeper.borrow().is_some() || self.state.borrow().in_flight.is_empty() {
            return;
        }
        // Without a reactor no timeout would end the questions, nor the cycle.
        let Some(reactor) = weft::Reactor::try_current() else {
            return;
        };
        *self.keeper.borrow_mut() = Some(Keeper {
            _owner: owner(),
            _hold: reactor.hold_shutdown(),
        });
    }

    /// No question is out: the server is let go, on the next turn (it may be the last
    /// reference, and this forwarder is in the middle of answering).
    fn let_go(&self) {
        if let Some(keeper) = self.keeper.borrow_mut().take() {
            weft::call_later(Duration::ZERO, move || drop(keeper));
        }
    }

    /// Takes over `previous`'s cache, when the upstreams and the cache's settings are
    /// the same, less what it holds for names inside the zones `changed` or leading into
    /// them; and each upstream's round-trip time, by address.
    pub(crate) fn take_over(&mut self, previous: &Forwarder, changed: &[LowerName]) {
        let upstreams = self.upstreams.get_mut();
        let before = previous.upstreams.borrow();
        for (i, addr) in self.addrs.iter().enumerate() {
            if let Some(j) = previous.addrs.iter().position(|a| a == addr) {
                upstreams.measured_as(i, before.get(j));
            }
        }
        let same = self.addrs == previous.addrs
            && self.cache.borrow().same_settings(&previous.cache.borrow());
        if same {
            previous.cache.borrow_mut().forget_under(changed);
            self.cache = previous.cache.clone();
        }
    }

    pub(crate) fn upstreams(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Upstream queries out now.
    pub(crate) fn in_flight(&self) -> usize {
        self.state.borrow().in_flight.len()
    }

    /// Questions in the cache.
    pub(crate) fn cached(&self) -> usize {
        self.cache.borrow().len()
    }

    /// The cached answer to `request` encoded for UDP, with its code and whether it was
    /// shrunk to fit, if the cache has one (counted as a hit); else nothing is counted.
    pub(crate) fn cached_udp(&self, request: &Request) -> Option<(Vec<u8>, ResponseCode, bool)> {
        let q = &request.query;
        let key: Key = (LowerName::new(q.name()), q.query_type(), q.query_class());
        let answer = self.cache.borrow_mut().get(&key, now())?;
        self.metrics.cache_hit();
        // Its code as sent: a chain completed from a zone of the service's has the zone's.
        let message = response(request, &answer, &self.zones);
        let rcode = message.metadata.response_code;
        let (encoded, shrunk) = crate::server::encode_udp(message, request.udp_limit());
        Some((encoded, rcode, shrunk))
    }

    /// Answers `request` from the cache, or sends it upstream (or joins the same
    /// question already out).
    pub(crate) fn ask(self: &Rc<Self>, request: Request, via: Via, reply: Reply) -> Outcome {
        let q = &request.query;
        let key: Key = (LowerName::new(q.name()), q.query_type(), q.query_class());
        let cached = self.cache.borrow_mut().get(&key, now());
        if let Some(answer) = cached {
            self.metrics.cache_hit();
            send(
                &self.metrics,
                &request,
                via,
                response(&request, &answer, &self.zones),
                reply,
                Source::Cache,
            );
            return Outcome::FromCache;
        }
        // RFC 8767 section 5: its refresh failed a moment ago; the stale answer now,
        // not after the upstreams' timeout once more.
        let stale = self.cache.borrow_mut().stale_after_failure(&key, now());
        if let Some(answer) = stale {
            self.metrics.forwarding().stale().inc();
            let mut m = response(&request, &answer, &self.zones);
            crate::edns::ExtendedError::StaleAnswer.add_to(&mut m);
            send(&self.metrics, &request, via, m, reply, Source::Cache);
            return Outcome::FromCache;
        }
        self.metrics.cache_miss();
        let unchecked = request.checking_disabled;
        let share = request.asked.client.map(peer_of);
        let mut state = self.state.borrow_mut();
        let client_full = share.is_some_and(|share| {
            state.waiting_by_client.get(&share).copied().unwrap_or(0) >= MAX_WAITING_PER_CLIENT
        });
        // A question asked with CD goes out on its own: no one joins it, and it joins no one.
        let joined = (!unchecked).then(|| state.by_question.get(&key).copied());
        let room = state.waiting < MAX_WAITING && !client_full;
        if let (Some(Some(seq)), true) = (joined, room) {
            let entry = state.in_flight.get_mut(&seq).expect("indexes agree");
            if entry.waiters.len() < MAX_WAITERS {
                entry.waiters.push(Waiter {
                    request,
                    via,
                    reply,
                });
                state.wait(share);
                return Outcome::Forwarded;
            }
        }
        let full = if client_full {
            Some(Busy::Client)
        } else if !room || (!unchecked && state.by_question.contains_key(&key)) {
            Some(Busy::Waiters)
        } else {
            (state.in_flight.len() >= MAX_IN_FLIGHT).then_some(Busy::InFlight)
        };
        if let Some(reason) = full {
            drop(state);
            self.metrics.forward_refused(reason);
            if let Some(suppressed) = self.metrics.log_line("forward refused") {
                let name = crate::wire::NameText(request.query.name());
                let client = request
                    .asked
                    .client
                    .map(|c| c.to_string())
                    .unwrap_or_default();
                tracing::warn!(%name, %client, reason = reason.as_str(), suppressed, "a question not forwarded: too many out already ({}); answering SERVFAIL", reason.says());
            }
            let busy = request.response(ResponseCode::ServFail, true);
            send(&self.metrics, &request, via, busy, reply, Source::Busy);
            return Outcome::Answered;
        }
        // The id is written by each try.
        let mut upstream = Message::new(0, MessageType::Query, OpCode::Query);
        upstream.metadata.recursion_desired = true;
        upstream.metadata.checking_disabled = request.checking_disabled;
        upstream.queries.push(request.query.clone());
        // DO always: the answer is cached for clients that set it too; the others get it
        // without the DNSSEC records they did not ask for (`response`).
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_UDP_SIZE).set_dnssec_ok(true);
        upstream.edns = Some(edns);
        let packet = match upstream.to_vec() {
            Ok(p) => p,
            Err(e) => {
                drop(state);
                tracing::warn!(error = %e, "an upstream query could not be encoded");
                let fail = request.response(ResponseCode::ServFail, true);
                let source = Source::UpstreamFailed;
                send(&self.metrics, &request, via, fail, reply, source);
                return Outcome::Answered;
            }
        };

        let seq = state.next;
        state.next += 1;
        let (resolver, answered) = Deferred::<Message>::labeled(UPSTREAM_LABEL);
        // The chain names where it is: past the cache (which missed), then at the
        // upstreams, so a stall report says whom it waits on.
        let steps = answered.steps();
        let answered_id = answered.id();
        steps.step_with(STEP_CACHE, None, Some(&CACHE_MISS));
        let weak: Weak<Self> = Rc::downgrade(self);
        // Nothing holds the end of the chain: the resolver in `in_flight` and the timer
        // keep it alive, and its last step answers the waiters whatever happens. A
        // question no upstream answered (SERVFAIL) ends it failed, as its record says,
        // and is not an unhandled failure: it was answered.
        answered
            .add_timeout(self.timeout)
            .add_both(move |result| match weak.upgrade() {
                Some(forwarder) => forwarder.finish(seq, result),
                None => Ok(()),
            })
            .end_handled();
        let mut pending = self.upstreams.borrow_mut().order();
        pending.reverse();
        if !unchecked {
            state.by_question.insert(key.clone(), seq);
        }
        state.wait(share);
        state.in_flight.insert(
            seq,
            InFlight {
                key,
                query: request.query.clone(),
                packet,
                resolver: Some(resolver),
                span: trace::enabled().then(|| span_of(answered_id)),
                waiters: vec![Waiter {
                    request,
                    via,
                    reply,
                }],
                pending,
                tries: Vec::new(),
                next_try: None,
                over_tcp: false,
                tcp: None,
                answered_by: None,
                steps: steps.clone(),
                unchecked,
            },
        );
        drop(state);
        steps.step_with(STEP_UPSTREAM, None, Some(&self.upstreams_detail));
        self.send_tries(seq);
        Outcome::Forwarded
    }

    /// Sends question `seq` to its next upstream (to all of them, in parallel), each with
    /// a new random id; sequentially, arms the timer that asks the one after.
    fn send_tries(self: &Rc<Self>, seq: u64) {
        loop {
            let (upstream, id, packet) = {
                let mut state = self.state.borrow_mut();
                let State {
                    in_flight, by_id, ..
                } = &mut *state;
                let Some(entry) = in_flight.get_mut(&seq) else {
                    return;
                };
                if entry.resolver.is_none() || entry.over_tcp {
                    return;
                }
                let Some(upstream) = entry.pending.pop() else {
                    return;
                };
                let Some(id) = fresh_id(by_id) else {
                    tracing::warn!("every upstream id drawn is in use; skipping an upstream");
                    continue;
                };
                entry.packet[..2].copy_from_slice(&id.to_be_bytes());
                by_id.insert(id, seq);
                (upstream, id, entry.packet.clone())
            };
            let lease = self.link.send(&packet, self.addrs[upstream]);
            let try_timeout = {
                let upstreams = self.upstreams.borrow();
                if lease.is_some() {
                    upstreams.get(upstream).sent();
                }
                upstreams.get(upstream).try_timeout()
            };
            let mut state = self.state.borrow_mut();
            let State {
                in_flight, by_id, ..
            } = &mut *state;
            let entry = in_flight.get_mut(&seq).expect("sending does not finish it");
            let started = entry.tries.first().map_or_else(now, |t| t.sent);
            let left = (started + self.timeout).saturating_sub(now());
            let own = try_timeout;
            let try_timeout = try_share(own, left, entry.pending.len());
            let Some(lease) = lease else {
                by_id.remove(&id);
                continue;
            };
            // The port it last left from is what the question waits on, as the
            // inspector shows it (the upstreams it may wait on are the step's detail).
            if let Some(connection) = lease.connection() {
                entry.steps.waits_on(WaitsOn::Connection(connection));
            }
            entry.tries.push(Try {
                id,
                upstream,
                lease,
                sent: now(),
                settled: false,
                cut: try_timeout < own,
            });
            if self.selection == Selection::Parallel {
                continue;
            }
            if !entry.pending.is_empty() {
                let weak = Rc::downgrade(self);
                entry.next_try = Some(weft::time::call_later(try_timeout, move || {
                    if let Some(forwarder) = weak.upgrade() {
                        forwarder.try_expired(seq, id);
                    }
                }));
            }
            return;
        }
    }

    /// Try `id` of question `seq` got no answer in its time: its upstream is penalised
    /// and the next one asked. A late answer to it is still taken.
    fn try_expired(self: &Rc<Self>, seq: u64, id: u16) {
        let upstream = {
            let mut state = self.state.borrow_mut();
            let Some(entry) = state.in_flight.get_mut(&seq) else {
                return;
            };
            entry.next_try = None;
            let Some(t) = entry.tries.iter_mut().find(|t| t.id == id && !t.settled) else {
                return;
            };
            t.settled = true;
            (t.upstream, t.cut)
        };
        let (upstream, cut) = upstream;
        self.upstreams.borrow_mut().timed_out(upstream, !cut);
        self.send_tries(seq);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        // Fail what is still out rather than leak it: the service is going away (with
        // questions out the keeper holds the server, so this is a forwarder without a
        // reactor; the waiters' chains end here unanswered).
        let state = std::mem::take(self.state.get_mut());
        for (_, entry) in state.in_flight {
            if let Some(resolver) = entry.resolver {
                resolver.errback(Failure::msg("the DNS service stopped"));
            }
        }
    }
}

impl InFlight {
    /// Whether `message` (a response: queries are dropped as malformed before) answers
    /// this query's question.
    fn check(&self, message: &Message) -> Result<(), String> {
        let same = message.queries.len() == 1 && {
            let q = &message.queries[0];
            LowerName::new(q.name()) == self.key.0
                && q.query_type() == self.query.query_type()
                && q.query_class() == self.query.query_class()
        };
        if !same {
            return Err("an answer to another question".into());
        }
        Ok(())
    }
}

/// The span of the upstream query chain `id`, which roots its own trace (it is created
/// on a packet, not in another chain's callback).
fn span_of(id: DeferredId) -> SpanRef {
    SpanRef {
        trace_id: trace::trace_id(id),
        span_id: trace::span_id(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn a_try_leaves_the_upstreams_after_it_their_share_of_the_time_left() {
        // An estimate pushed to 30 s against a 2 s timeout with one more upstream: that
        // one is asked after a second.
        assert_eq!(try_share(S(30), S(2), 1), S(1));
        assert_eq!(try_share(S(30), S(2), 3), MS(500));
        // The last upstream may take what is left; a quick one its own time.
        assert_eq!(try_share(S(30), MS(700), 0), MS(700));
        assert_eq!(try_share(MS(120), S(2), 1), MS(120));
        assert_eq!(try_share(S(1), Duration::ZERO, 1), Duration::ZERO);
    }
}
