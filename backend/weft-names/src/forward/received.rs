//! Upstream answers: a datagram is matched to the try it answers (the upstream it went
//! to, the local port it left from, its id and question) or dropped and counted by
//! reason; a truncated one is asked again over TCP, and what TCP brings is checked the
//! same way. A failure (SERVFAIL, REFUSED, NOTIMP, FORMERR) settles its try and the
//! question goes on with the other upstreams.

use std::net::SocketAddr;
use std::rc::Rc;

use hickory_proto::op::{Message, MessageType};
use weft::defer::{Failure, Resolver, StepDetail};

use super::{Forwarder, MAX_OVER_TCP, STEP_UPSTREAM_TCP, State, TcpAnswer, now, upstream_failure};
use crate::metrics::{Busy, Mismatch};

/// What an upstream datagram leads to, decided under the state's borrow.
enum Next {
    /// A whole answer: fire the query's Deferred.
    Answer(Resolver<Message>, Message),
    /// A truncated answer: send the query (with this try's id) again over TCP.
    AskOverTcp(Vec<u8>),
    /// A truncated answer, but [`MAX_OVER_TCP`] questions already hold a TCP connection.
    Busy(Resolver<Message>),
    /// A failure: ask the next upstream, or give up if none is left or awaited.
    Failed(u64),
}

impl Forwarder {
    /// Counts a dropped upstream datagram and says why it was dropped.
    fn mismatch(&self, why: Mismatch, detail: String) -> Result<(), String> {
        self.metrics.forwarding().mismatched(why).inc();
        Err(detail)
    }

    /// A datagram from an upstream that arrived on local port `port`: fires the matching
    /// query's Deferred, or asks again over TCP when the answer is truncated. Returns why
    /// it was ignored, if it was.
    pub(crate) fn received(
        self: &Rc<Self>,
        packet: &[u8],
        from: SocketAddr,
        port: u16,
    ) -> Result<(), String> {
        if !self.addrs.contains(&from) {
            let why = format!("a datagram from {from}, which is not an upstream");
            return self.mismatch(Mismatch::Source, why);
        }
        let message = match Message::from_vec(packet) {
            Ok(m) => m,
            Err(e) => {
                let why = format!("an undecodable answer from {from}: {e}");
                return self.mismatch(Mismatch::Malformed, why);
            }
        };
        if message.metadata.message_type != MessageType::Response {
            let why = format!("a query, not an answer, from {from}");
            return self.mismatch(Mismatch::Malformed, why);
        }
        let id = message.metadata.id;
        let rcode = message.metadata.response_code;
        let failure = !message.metadata.truncation && upstream_failure(rcode);
        let (next, rtt, penalise) = {
            let mut state = self.state.borrow_mut();
            let State {
                in_flight,
                by_id,
                recent,
                over_tcp,
                ..
            } = &mut *state;
            let Some(entry) = by_id.get(&id).and_then(|seq| in_flight.get_mut(seq)) else {
                let late = recent.contains(&id);
                drop(state);
                let (reason, why) = match late {
                    true => (
                        Mismatch::Late,
                        format!("an answer from {from} after its query was given up (id {id})"),
                    ),
                    false => (
                        Mismatch::Id,
                        format!("an answer from {from} to no query out (id {id})"),
                    ),
                };
                return self.mismatch(reason, why);
            };
            let at = entry
                .tries
                .iter()
                .position(|t| t.id == id)
                .expect("indexes agree");
            let t = &entry.tries[at];
            if self.addrs[t.upstream] != from {
                let why = format!(
                    "an answer from {from} to a query sent to {}",
                    self.addrs[t.upstream]
                );
                drop(state);
                return self.mismatch(Mismatch::Source, why);
            }
            if t.lease.port() != port {
                let why = format!(
                    "an answer from {from} on local port {port}, not {} where its query left",
                    t.lease.port()
                );
                drop(state);
                return self.mismatch(Mismatch::Port, why);
            }
            if let Err(why) = entry.check(&message) {
                drop(state);
                return self.mismatch(Mismatch::Question, format!("{why} from {from}"));
            }
            let t = &mut entry.tries[at];
            // A try that already timed out was penalised then, and the next one asked.
            let penalise = failure && !std::mem::replace(&mut t.settled, true);
            let rtt = (t.upstream, now().saturating_sub(t.sent));
            let next = if failure {
                // Over TCP the question waits on that exchange alone.
                let out = penalise && entry.resolver.is_some() && !entry.over_tcp;
                if out && let Some(timer) = entry.next_try.take() {
                    let _ = timer.cancel();
                }
                out.then(|| Next::Failed(by_id[&id]))
            } else if !message.metadata.truncation {
                let resolver = entry.resolver.take();
                if resolver.is_some() {
                    entry.answered_by = Some(from);
                    self.metrics.figures().upstream_answered(from, rtt.1);
                }
                resolver.map(|r| Next::Answer(r, message))
            } else if entry.over_tcp {
                None
            } else if *over_tcp >= MAX_OVER_TCP {
                entry.resolver.take().map(Next::Busy)
            } else {
                entry.over_tcp = true;
                entry.next_try = None;
                let detail = StepDetail::new(&from.to_string());
                entry
                    .steps
                    .step_with(STEP_UPSTREAM_TCP, None, Some(&detail));
                *over_tcp += 1;
                let mut packet = entry.packet.clone();
                packet[..2].copy_from_slice(&id.to_be_bytes());
                Some(Next::AskOverTcp(packet))
            };
            (next, rtt, penalise)
        };
        if failure {
            self.upstreams.borrow().get(rtt.0).failure_answered(rcode);
        }
        if penalise {
            self.upstreams.borrow_mut().failed(rtt.0);
        } else if !failure {
            self.upstreams.borrow_mut().answered(rtt.0, rtt.1);
        }
        // Fired outside the borrow: the chain's last step takes it again.
        match next {
            None => {}
            Some(Next::Answer(resolver, message)) => resolver.callback(message),
            Some(Next::Failed(seq)) => {
                tracing::debug!(%from, %rcode, "an upstream failed a query; asking the next");
                self.send_tries(seq);
                self.give_up_if_exhausted(seq, format!("the last, {from}, answered {rcode}"));
            }
            Some(Next::Busy(resolver)) => {
                self.metrics.forward_refused(Busy::Tcp);
                resolver.errback(Failure::msg(format!(
                    "{from} truncated its answer and {MAX_OVER_TCP} questions are already \
                     asked again over TCP, the most at once"
                )));
            }
            Some(Next::AskOverTcp(packet)) => {
                self.metrics.upstream_truncated();
                let seq = *self.state.borrow().by_id.get(&id).expect("still out");
                let weak = Rc::downgrade(self);
                let answer: TcpAnswer = Box::new(move |result| {
                    if let Some(forwarder) = weak.upgrade() {
                        forwarder.received_tcp(seq, id, from, result);
                    }
                });
                let exchange = self.link.exchange_tcp(&packet, from, answer);
                // Kept while the query is out; if it finished meanwhile, dropped: abandoned.
                if let Some(entry) = self.state.borrow_mut().in_flight.get_mut(&seq) {
                    entry.tcp = Some(exchange);
                }
            }
        }
        Ok(())
    }

    /// Fails question `seq` when no upstream is left to ask and none is awaited: every
    /// one failed, the last with `why`.
    fn give_up_if_exhausted(&self, seq: u64, why: String) {
        let resolver = {
            let mut state = self.state.borrow_mut();
            let Some(entry) = state.in_flight.get_mut(&seq) else {
                return;
            };
            let awaited = entry.over_tcp
                || !entry.pending.is_empty()
                || entry.tries.iter().any(|t| !t.settled);
            if awaited {
                return;
            }
            entry.resolver.take()
        };
        if let Some(resolver) = resolver {
            resolver.errback(Failure::msg(format!("no upstream is left to ask: {why}")));
        }
    }

    /// What the TCP exchange with `from` for try `id` of question `seq` came to: a whole
    /// answer fires the query's Deferred; anything else fails it (SERVFAIL), since a
    /// truncated answer is never replayed.
    fn received_tcp(&self, seq: u64, id: u16, from: SocketAddr, result: Result<Vec<u8>, String>) {
        let checked = {
            let state = self.state.borrow();
            let Some(entry) = state.in_flight.get(&seq) else {
                return;
            };
            result.and_then(|bytes| {
                // Over TCP as over UDP, what is no answer to the question is counted by
                // why: undecodable, or a query where the answer should be (an echo
                // service, or a stream that looped back), is `malformed`.
                let counted = |why: Mismatch, text: String| {
                    self.metrics.forwarding().mismatched(why).inc();
                    text
                };
                let message = Message::from_vec(&bytes).map_err(|e| {
                    counted(Mismatch::Malformed, format!("an undecodable answer: {e}"))
                })?;
                if message.metadata.message_type != MessageType::Response {
                    return Err(counted(
                        Mismatch::Malformed,
                        "a query, not an answer".into(),
                    ));
                }
                entry
                    .check(&message)
                    .map_err(|text| counted(Mismatch::Question, text))?;
                if message.metadata.id != id {
                    return Err(counted(Mismatch::Id, "an answer to another query".into()));
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
            .get_mut(&seq)
            .and_then(|e| {
                let resolver = e.resolver.take()?;
                if checked.is_ok() {
                    e.answered_by = Some(from);
                }
                if let Ok(m) = &checked
                    && upstream_failure(m.metadata.response_code)
                    && let Some(t) = e.tries.iter().find(|t| t.id == id)
                {
                    let upstreams = self.upstreams.borrow();
                    upstreams
                        .get(t.upstream)
                        .failure_answered(m.metadata.response_code);
                }
                if checked
                    .as_ref()
                    .is_ok_and(|m| !upstream_failure(m.metadata.response_code))
                {
                    let sent = e.tries.iter().find(|t| t.id == id).map(|t| t.sent);
                    let rtt = now().saturating_sub(sent.unwrap_or_default());
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
}
