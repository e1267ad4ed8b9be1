//! Forwarding: questions outside the zones go to the upstream resolvers, answers come
//! back through the cache.
//!
//! Each outstanding upstream query is one Deferred labelled `dns upstream query`, created
//! here with a timeout, so an upstream that does not answer shows in the inspector as a
//! pending (then stalled) Deferred created at this file's line, and its clients get
//! SERVFAIL when the timeout fires. Its named steps (`cache lookup`, then `upstream`
//! naming the addresses it waits on, `upstream over TCP` naming one) make the stall
//! report say whom it waits on. Clients asking the same question while it is out
//! wait on the same query. The upstream query has its own random id; an answer is taken
//! only from a configured upstream, with a known id and the same question.
//!
//! An upstream answer truncated over UDP (TC) is not an answer: the same query goes to
//! that upstream again over TCP (RFC 1035 section 4.2.1, RFC 7766 section 5), within the
//! same Deferred and timeout. Only whole answers are cached and replayed, so a client
//! over TCP gets the whole answer and one over UDP gets it truncated to its own size by
//! `wire::encode`; when no whole answer comes, clients get SERVFAIL.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::LowerName;
use weft::defer::{Deferred, Failure, Resolver, StepDetail, Steps, TimeoutError};

use crate::cache::{Answer, Cache, Key};
use crate::metrics::{Busy, ServiceMetrics};
use crate::server::{Outcome, Reply, Via, send};
use crate::view::Source;
use crate::wire::{EDNS_UDP_SIZE, Request};

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
/// Questions asked again over TCP at once (each holds a connection to an upstream for up
/// to the timeout); a truncated answer beyond them is answered SERVFAIL.
pub(crate) const MAX_OVER_TCP: usize = 64;

/// Sends queries to upstream resolvers: sockets on the reactor, or a recorder in tests.
pub trait UpstreamLink {
    /// Sends `packet` to `to` over UDP; answers come back through
    /// [`DnsServer::upstream_received`](crate::DnsServer::upstream_received).
    fn send(&self, packet: &[u8], to: SocketAddr);

    /// Sends `packet` to `to` over TCP (RFC 1035 section 4.2.2 framing) and calls
    /// `answer` once, with the first message back or why none came. Dropping the
    /// returned exchange abandons it: `answer` is not called and the connection closes.
    fn exchange_tcp(&self, packet: &[u8], to: SocketAddr, answer: TcpAnswer) -> TcpExchange;
}

/// What an upstream TCP exchange came to: the answer's bytes, or why there is none.
pub type TcpAnswer = Box<dyn FnOnce(Result<Vec<u8>, String>)>;

/// An upstream TCP exchange in progress; dropping it abandons the exchange.
#[must_use = "dropping the exchange abandons it"]
pub struct TcpExchange(Option<Box<dyn FnOnce()>>);

impl TcpExchange {
    /// An exchange that `abandon` ends (closing its connection) when dropped.
    pub fn new(abandon: impl FnOnce() + 'static) -> Self {
        Self(Some(Box::new(abandon)))
    }
}

impl Drop for TcpExchange {
    fn drop(&mut self) {
        if let Some(abandon) = self.0.take() {
            abandon();
        }
    }
}

impl std::fmt::Debug for TcpExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TcpExchange")
    }
}

/// A client waiting for an upstream answer.
struct Waiter {
    request: Request,
    via: Via,
    /// Sends the answer back the way the question came.
    reply: Reply,
}

struct InFlight {
    /// The question, to remove it from `by_question` when it ends.
    key: Key,
    /// The question as asked, to check an upstream answer is for it and to name it in logs.
    query: Query,
    /// The query as sent, to send again over TCP.
    packet: Rc<[u8]>,
    /// Taken when the first whole answer arrives.
    resolver: Option<Resolver<Message>>,
    /// Everyone who asked this question while it was out (at most `MAX_WAITERS`).
    waiters: Vec<Waiter>,
    /// Asking again over TCP: after the first truncated answer, it stays true (later
    /// truncated answers are ignored) and the exchange is kept here, so finishing the
    /// query abandons it and closes its connection.
    over_tcp: bool,
    /// The TCP exchange asking it again; dropping it closes the connection.
    tcp: Option<TcpExchange>,
    /// When it went upstream, for each upstream's round-trip time.
    sent_at: Instant,
    /// The upstream whose whole answer fired it.
    answered_by: Option<SocketAddr>,
    /// Marks its chain's named steps.
    steps: Steps,
}

#[derive(Default)]
struct State {
    /// Questions out, by the message id sent upstream (at most `MAX_IN_FLIGHT`).
    in_flight: HashMap<u16, InFlight>,
    /// The id of each question out, so a second client asking it joins the first.
    by_question: HashMap<Key, u16>,
    /// Questions in flight that are asked again over TCP (each holds a connection).
    over_tcp: usize,
}

/// What an upstream datagram leads to, decided under the state's borrow.
enum Next {
    /// A whole answer: fire the query's Deferred.
    Answer(Resolver<Message>, Message),
    /// A truncated answer: send the query again over TCP.
    AskOverTcp(Rc<[u8]>),
    /// A truncated answer, but [`MAX_OVER_TCP`] questions already hold a TCP connection.
    Busy(Resolver<Message>),
}

pub(crate) struct Forwarder {
    upstreams: Vec<SocketAddr>,
    /// How long an upstream has to answer, over UDP and TCP together.
    timeout: Duration,
    /// How queries reach upstreams: real sockets, or a test double.
    link: Rc<dyn UpstreamLink>,
    metrics: ServiceMetrics,
    /// Upstream answers, served until their TTL runs out (at most `cache_size` of them).
    cache: RefCell<Cache>,
    /// The questions out; in a `RefCell` because the service's listeners and its timers
    /// share the forwarder.
    state: RefCell<State>,
    /// The upstreams as a query's named step names them, made once.
    upstreams_detail: StepDetail,
}

fn now() -> Duration {
    weft::time::current_clock().now()
}

impl Forwarder {
    pub(crate) fn new(
        upstreams: Vec<SocketAddr>,
        timeout: Duration,
        cache_size: usize,
        link: Rc<dyn UpstreamLink>,
        metrics: ServiceMetrics,
    ) -> Rc<Self> {
        let names: Vec<String> = upstreams.iter().map(SocketAddr::to_string).collect();
        Rc::new(Self {
            upstreams_detail: StepDetail::new(&names.join(", ")),
            upstreams,
            timeout,
            link,
            metrics,
            cache: RefCell::new(Cache::new(cache_size)),
            state: RefCell::default(),
        })
    }

    pub(crate) fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Upstream queries out now.
    pub(crate) fn in_flight(&self) -> usize {
        self.state.borrow().in_flight.len()
    }

    /// Questions in the cache.
    pub(crate) fn cached(&self) -> usize {
        self.cache.borrow().len()
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
                response(&request, &answer),
                reply,
                Source::Cache,
            );
            return Outcome::FromCache;
        }
        self.metrics.cache_miss();
        let mut state = self.state.borrow_mut();
        if let Some(id) = state.by_question.get(&key).copied() {
            let entry = state.in_flight.get_mut(&id).expect("indexes agree");
            if entry.waiters.len() < MAX_WAITERS {
                entry.waiters.push(Waiter {
                    request,
                    via,
                    reply,
                });
                return Outcome::Forwarded;
            }
        }
        let full = if state.by_question.contains_key(&key) {
            Some(Busy::Waiters)
        } else {
            (state.in_flight.len() >= MAX_IN_FLIGHT).then_some(Busy::InFlight)
        };
        if let Some(reason) = full {
            drop(state);
            self.metrics.forward_refused(reason);
            let busy = request.response(ResponseCode::ServFail, true);
            send(&self.metrics, &request, via, busy, reply, Source::Busy);
            return Outcome::Answered;
        }
        let id = loop {
            let id = fastrand::u16(..);
            if !state.in_flight.contains_key(&id) {
                break id;
            }
        };
        let mut upstream = Message::new(id, MessageType::Query, OpCode::Query);
        upstream.metadata.recursion_desired = true;
        upstream.metadata.checking_disabled = request.checking_disabled;
        upstream.queries.push(request.query.clone());
        // DO always: the answer is cached for clients that set it too; the others get it
        // without the DNSSEC records they did not ask for (`response`).
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_UDP_SIZE).set_dnssec_ok(true);
        upstream.edns = Some(edns);
        let packet: Rc<[u8]> = match upstream.to_vec() {
            Ok(p) => p.into(),
            Err(e) => {
                drop(state);
                tracing::warn!(error = %e, "an upstream query could not be encoded");
                let fail = request.response(ResponseCode::ServFail, true);
                send(
                    &self.metrics,
                    &request,
                    via,
                    fail,
                    reply,
                    Source::UpstreamFailed,
                );
                return Outcome::Answered;
            }
        };

        let (resolver, answered) = Deferred::<Message>::labeled(UPSTREAM_LABEL);
        // The chain names where it is: past the cache (which missed), then at the
        // upstreams, so a stall report says whom it waits on.
        let steps = answered.steps();
        steps.step_with(STEP_CACHE, None, Some(&CACHE_MISS));
        let weak: Weak<Self> = Rc::downgrade(self);
        // Nothing holds the end of the chain: the resolver in `in_flight` and the timer
        // keep it alive, and its last step answers the waiters whatever happens.
        drop(answered.add_timeout(self.timeout).add_both(move |result| {
            if let Some(forwarder) = weak.upgrade() {
                forwarder.finish(id, result);
            }
            Ok::<(), Failure>(())
        }));
        state.by_question.insert(key.clone(), id);
        state.in_flight.insert(
            id,
            InFlight {
                key,
                query: request.query.clone(),
                packet: packet.clone(),
                resolver: Some(resolver),
                waiters: vec![Waiter {
                    request,
                    via,
                    reply,
                }],
                over_tcp: false,
                tcp: None,
                sent_at: Instant::now(),
                answered_by: None,
                steps: steps.clone(),
            },
        );
        drop(state);
        steps.step_with(STEP_UPSTREAM, None, Some(&self.upstreams_detail));
        for upstream in &self.upstreams {
            self.link.send(&packet, *upstream);
        }
        Outcome::Forwarded
    }

    /// A datagram from an upstream port: fires the matching query's Deferred, or asks
    /// again over TCP when the answer is truncated. Returns why it was ignored, if it was.
    pub(crate) fn received(self: &Rc<Self>, packet: &[u8], from: SocketAddr) -> Result<(), String> {
        if !self.upstreams.contains(&from) {
            return Err(format!("a datagram from {from}, which is not an upstream"));
        }
        let message = Message::from_vec(packet)
            .map_err(|e| format!("an undecodable answer from {from}: {e}"))?;
        let id = message.metadata.id;
        let next = {
            let mut state = self.state.borrow_mut();
            let State {
                in_flight,
                over_tcp,
                ..
            } = &mut *state;
            let Some(entry) = in_flight.get_mut(&id) else {
                return Err(format!(
                    "an answer from {from} to no query out (late, or a duplicate)"
                ));
            };
            entry
                .check(&message)
                .map_err(|why| format!("{why} from {from}"))?;
            if !message.metadata.truncation {
                let resolver = entry.resolver.take();
                if resolver.is_some() {
                    entry.answered_by = Some(from);
                    let rtt = entry.sent_at.elapsed();
                    self.metrics.figures().upstream_answered(from, rtt);
                }
                resolver.map(|r| Next::Answer(r, message))
            } else if entry.over_tcp {
                None
            } else if *over_tcp >= MAX_OVER_TCP {
                entry.resolver.take().map(Next::Busy)
            } else {
                entry.over_tcp = true;
                *over_tcp += 1;
                let detail = StepDetail::new(&from.to_string());
                entry
                    .steps
                    .step_with(STEP_UPSTREAM_TCP, None, Some(&detail));
                Some(Next::AskOverTcp(entry.packet.clone()))
            }
        };
        // Fired outside the borrow: the chain's last step takes it again.
        match next {
            None => {}
            Some(Next::Answer(resolver, message)) => resolver.callback(message),
            Some(Next::Busy(resolver)) => {
                self.metrics.forward_refused(Busy::Tcp);
                resolver.errback(Failure::msg(format!(
                    "{from} truncated its answer and {MAX_OVER_TCP} questions are already \
                     asked again over TCP, the most at once"
                )));
            }
            Some(Next::AskOverTcp(packet)) => {
                self.metrics.upstream_truncated();
                let weak = Rc::downgrade(self);
                let answer: TcpAnswer = Box::new(move |result| {
                    if let Some(forwarder) = weak.upgrade() {
                        forwarder.received_tcp(id, from, result);
                    }
                });
                let exchange = self.link.exchange_tcp(&packet, from, answer);
                // Kept while the query is out; if it finished meanwhile, dropped: abandoned.
                if let Some(entry) = self.state.borrow_mut().in_flight.get_mut(&id) {
                    entry.tcp = Some(exchange);
                }
            }
        }
        Ok(())
    }

    /// What the TCP exchange with `from` for query `id` came to: a whole answer fires the
    /// query's Deferred; anything else fails it (SERVFAIL), since a truncated answer is
    /// never replayed.
    fn received_tcp(&self, id: u16, from: SocketAddr, result: Result<Vec<u8>, String>) {
        let checked = {
            let state = self.state.borrow();
            let Some(entry) = state.in_flight.get(&id) else {
                return;
            };
            result.and_then(|bytes| {
                let message =
                    Message::from_vec(&bytes).map_err(|e| format!("an undecodable answer: {e}"))?;
                entry.check(&message)?;
                if message.metadata.id != id {
                    return Err("an answer to another query".into());
                }
                if message.metadata.truncation {
                    return Err("an answer truncated over TCP too".into());
                }
                Ok(message)
            })
        };
        let Some(resolver) = self
            .state
            .borrow_mut()
            .in_flight
            .get_mut(&id)
            .and_then(|e| {
                let resolver = e.resolver.take()?;
                if checked.is_ok() {
                    e.answered_by = Some(from);
                    let rtt = e.sent_at.elapsed();
                    self.metrics.figures().upstream_answered(from, rtt);
                }
                Some(resolver)
            })
        else {
            return;
        };
        match checked {
            Ok(message) => resolver.callback(message),
            Err(why) => resolver.errback(Failure::msg(format!(
                "asking upstream {from} over TCP for the answer it truncated over UDP: {why}"
            ))),
        }
    }

    /// The query's Deferred fired: cache the answer and answer every waiter, or tell
    /// them SERVFAIL.
    fn finish(&self, id: u16, result: Result<Message, Failure>) {
        let Some(entry) = ({
            let mut state = self.state.borrow_mut();
            let entry = state.in_flight.remove(&id);
            if let Some(e) = &entry {
                if state.by_question.get(&e.key) == Some(&id) {
                    state.by_question.remove(&e.key);
                }
                if e.over_tcp {
                    state.over_tcp -= 1;
                }
            }
            entry
        }) else {
            return;
        };
        match result {
            Ok(message) => {
                // Only whole answers fire the Deferred: truncated ones go to TCP instead.
                debug_assert!(!message.metadata.truncation);
                let answer = Answer::from_message(&message);
                self.cache
                    .borrow_mut()
                    .insert(entry.key, answer.clone(), now());
                let source = entry
                    .answered_by
                    .map_or(Source::UpstreamFailed, Source::Upstream);
                for w in entry.waiters {
                    let m = response(&w.request, &answer);
                    send(&self.metrics, &w.request, w.via, m, w.reply, source);
                }
            }
            Err(failure) => {
                let name = entry.query.name().to_string();
                let qtype = entry.query.query_type();
                let mut source = Source::UpstreamFailed;
                if failure.check::<TimeoutError>() {
                    source = Source::Timeout;
                    self.metrics.upstream_timeout();
                    for upstream in &self.upstreams {
                        self.metrics.figures().upstream_timed_out(*upstream);
                    }
                    tracing::info!(
                        name = ?name,
                        %qtype,
                        after = ?self.timeout,
                        "no upstream answered in time; answering SERVFAIL"
                    );
                } else {
                    tracing::info!(name = ?name, %qtype, error = %failure, "answering SERVFAIL");
                }
                for w in entry.waiters {
                    let m = w.request.response(ResponseCode::ServFail, true);
                    send(&self.metrics, &w.request, w.via, m, w.reply, source);
                }
            }
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        // Fail what is still out rather than leak it: the service is going away.
        let state = std::mem::take(self.state.get_mut());
        for (_, entry) in state.in_flight {
            if let Some(resolver) = entry.resolver {
                resolver.errback(Failure::msg("the DNS service stopped"));
            }
        }
    }
}

impl InFlight {
    /// Whether `message` is a response to this query's question.
    fn check(&self, message: &Message) -> Result<(), String> {
        if message.metadata.message_type != MessageType::Response {
            return Err("a query, not an answer,".into());
        }
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

/// A response to `request` replaying `answer` (not authoritative; recursion available),
/// without DNSSEC records other than of the type asked unless the client set DO (RFC
/// 4035 section 3.2.1).
fn response(request: &Request, answer: &Answer) -> Message {
    let mut message = request.response(answer.rcode, true);
    message.answers = answer.answers.clone();
    message.authorities = answer.authorities.clone();
    message.additionals = answer.additionals.clone();
    let dnssec_ok = request.edns.as_ref().is_some_and(|e| e.dnssec_ok);
    message.maybe_strip_dnssec_records(dnssec_ok)
}
