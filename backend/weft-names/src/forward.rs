//! Forwarding: questions outside the zones go to the upstream resolvers, answers come
//! back through the cache.
//!
//! Each outstanding upstream query is one Deferred labelled `dns upstream query`, created
//! here with a timeout, so an upstream that does not answer shows in the inspector as a
//! pending (then stalled) Deferred created at this file's line, and its clients get
//! SERVFAIL when the timeout fires. Clients asking the same question while it is out
//! wait on the same query. The upstream query has its own random id; an answer is taken
//! only from a configured upstream, with a known id and the same question.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::LowerName;
use weft::defer::{Deferred, Failure, Resolver, TimeoutError};

use crate::cache::{Answer, Cache, Key};
use crate::metrics::ServiceMetrics;
use crate::server::{Outcome, Reply, Via, send};
use crate::wire::{EDNS_UDP_SIZE, Request};

/// The inspector's label of an upstream query's Deferred.
pub const UPSTREAM_LABEL: &str = "dns upstream query";
/// Distinct questions out at once; more are answered SERVFAIL at once.
const MAX_IN_FLIGHT: usize = 4096;
/// Clients waiting on one question; more are answered SERVFAIL at once.
const MAX_WAITERS: usize = 256;

/// Sends datagrams to upstream resolvers: a UDP port on the reactor, or a recorder in
/// tests.
pub trait UpstreamLink {
    /// Sends `packet` to `to`.
    fn send(&self, packet: &[u8], to: SocketAddr);
}

/// A client waiting for an upstream answer.
struct Waiter {
    request: Request,
    via: Via,
    reply: Reply,
}

struct InFlight {
    key: Key,
    query: Query,
    /// Taken when the first valid answer arrives.
    resolver: Option<Resolver<Message>>,
    waiters: Vec<Waiter>,
}

#[derive(Default)]
struct State {
    in_flight: HashMap<u16, InFlight>,
    by_question: HashMap<Key, u16>,
}

pub(crate) struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
    link: Rc<dyn UpstreamLink>,
    metrics: ServiceMetrics,
    cache: RefCell<Cache>,
    state: RefCell<State>,
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
        Rc::new(Self {
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
                response(&request, &answer, false),
                reply,
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
        if state.in_flight.len() >= MAX_IN_FLIGHT || state.by_question.contains_key(&key) {
            drop(state);
            let busy = request.response(ResponseCode::ServFail, true);
            send(&self.metrics, &request, via, busy, reply);
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
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_UDP_SIZE);
        upstream.edns = Some(edns);
        let packet = match upstream.to_vec() {
            Ok(p) => p,
            Err(e) => {
                drop(state);
                tracing::warn!(error = %e, "an upstream query could not be encoded");
                let fail = request.response(ResponseCode::ServFail, true);
                send(&self.metrics, &request, via, fail, reply);
                return Outcome::Answered;
            }
        };

        let (resolver, answered) = Deferred::<Message>::labeled(UPSTREAM_LABEL);
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
                resolver: Some(resolver),
                waiters: vec![Waiter {
                    request,
                    via,
                    reply,
                }],
            },
        );
        drop(state);
        for upstream in &self.upstreams {
            self.link.send(&packet, *upstream);
        }
        Outcome::Forwarded
    }

    /// A datagram from an upstream port: fires the matching query's Deferred. Returns
    /// why it was ignored, if it was.
    pub(crate) fn received(&self, packet: &[u8], from: SocketAddr) -> Result<(), String> {
        if !self.upstreams.contains(&from) {
            return Err(format!("a datagram from {from}, which is not an upstream"));
        }
        let message = Message::from_vec(packet)
            .map_err(|e| format!("an undecodable answer from {from}: {e}"))?;
        if message.metadata.message_type != MessageType::Response {
            return Err(format!("a query from upstream {from}"));
        }
        let resolver = {
            let mut state = self.state.borrow_mut();
            let Some(entry) = state.in_flight.get_mut(&message.metadata.id) else {
                return Err(format!(
                    "an answer from {from} to no query out (late, or a duplicate)"
                ));
            };
            let same = message.queries.len() == 1 && {
                let q = &message.queries[0];
                LowerName::new(q.name()) == entry.key.0
                    && q.query_type() == entry.query.query_type()
                    && q.query_class() == entry.query.query_class()
            };
            if !same {
                return Err(format!("an answer from {from} to another question"));
            }
            entry.resolver.take()
        };
        // Fired outside the borrow: the chain's last step takes it again.
        if let Some(resolver) = resolver {
            resolver.callback(message);
        }
        Ok(())
    }

    /// The query's Deferred fired: cache the answer and answer every waiter, or tell
    /// them SERVFAIL.
    fn finish(&self, id: u16, result: Result<Message, Failure>) {
        let Some(entry) = ({
            let mut state = self.state.borrow_mut();
            let entry = state.in_flight.remove(&id);
            if let Some(e) = &entry
                && state.by_question.get(&e.key) == Some(&id)
            {
                state.by_question.remove(&e.key);
            }
            entry
        }) else {
            return;
        };
        match result {
            Ok(message) => {
                let answer = Answer::from_message(&message);
                let truncated = message.metadata.truncation;
                self.cache
                    .borrow_mut()
                    .insert(entry.key, answer.clone(), truncated, now());
                for w in entry.waiters {
                    let m = response(&w.request, &answer, truncated);
                    send(&self.metrics, &w.request, w.via, m, w.reply);
                }
            }
            Err(failure) => {
                if failure.check::<TimeoutError>() {
                    self.metrics.upstream_timeout();
                    tracing::info!(
                        name = ?entry.query.name().to_string(),
                        qtype = %entry.query.query_type(),
                        after = ?self.timeout,
                        "no upstream answered in time; answering SERVFAIL"
                    );
                }
                for w in entry.waiters {
                    let m = w.request.response(ResponseCode::ServFail, true);
                    send(&self.metrics, &w.request, w.via, m, w.reply);
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

/// A response to `request` replaying `answer` (not authoritative; recursion available).
fn response(request: &Request, answer: &Answer, truncated: bool) -> Message {
    let mut message = request.response(answer.rcode, true);
    message.answers = answer.answers.clone();
    message.authorities = answer.authorities.clone();
    message.additionals = answer.additionals.clone();
    message.metadata.truncation = truncated;
    message
}
