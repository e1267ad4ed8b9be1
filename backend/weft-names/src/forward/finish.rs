//! The end of a forwarded question: its Deferred fired with an upstream's whole answer,
//! which is cached and replayed to every client waiting on it, or with a failure, which
//! gets them a stale answer (`serve_stale`) or SERVFAIL.

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use weft::defer::{Failure, TimeoutError};

use super::scrub::{complete, scrub};
use super::{Forwarder, RECENT_IDS, now, upstream_failure};
use crate::cache::Answer;
use crate::edns::ExtendedError;
use crate::server::send;
use crate::view::Source;
use crate::wire::Request;
use crate::zone::Catalog;

impl Forwarder {
    /// The query's Deferred fired: cache the answer and answer every waiter, or tell
    /// them SERVFAIL (or serve them a stale answer).
    pub(super) fn finish(&self, seq: u64, result: Result<Message, Failure>) -> Result<(), Failure> {
        let Some(mut entry) = ({
            let mut state = self.state.borrow_mut();
            let entry = state.in_flight.remove(&seq);
            if let Some(e) = &entry {
                state.answered(&e.waiters);
                if state.by_question.get(&e.key) == Some(&seq) {
                    state.by_question.remove(&e.key);
                }
                if e.over_tcp {
                    state.over_tcp -= 1;
                }
                for t in &e.tries {
                    state.by_id.remove(&t.id);
                    if state.recent.len() == RECENT_IDS {
                        state.recent.pop_front();
                    }
                    state.recent.push_back(t.id);
                }
            }
            if state.in_flight.is_empty() {
                self.let_go();
            }
            entry
        }) else {
            return Ok(());
        };
        if let Some(timer) = &entry.next_try {
            let _ = timer.cancel();
        }
        for w in &mut entry.waiters {
            w.request.asked.span = entry.span;
        }
        // Only a timeout says the upstreams still out were slow; a TCP failure, too many
        // retries or the service stopping says nothing of them.
        if result
            .as_ref()
            .is_err_and(|failure| failure.check::<TimeoutError>())
        {
            let mut upstreams = self.upstreams.borrow_mut();
            for t in entry.tries.iter().filter(|t| !t.settled) {
                upstreams.timed_out(t.upstream, !t.cut);
                self.metrics
                    .figures()
                    .upstream_timed_out(self.addrs[t.upstream]);
            }
        }
        // A failure fires the Deferred only over TCP, where no other upstream is asked.
        let result = match result {
            Ok(m) if upstream_failure(m.metadata.response_code) => {
                let by = entry.answered_by.map(|a| a.to_string()).unwrap_or_default();
                let rcode = m.metadata.response_code;
                Err(Failure::msg(format!("upstream {by} answered {rcode}")))
            }
            Ok(m) => match opaque_names(&m, &entry.query) {
                Some(rtype) => {
                    let by = entry.answered_by.map(|a| a.to_string()).unwrap_or_default();
                    Err(Failure::msg(format!(
                        "upstream {by} answered {rtype} records, whose names this service \
                         cannot pass on"
                    )))
                }
                None => Ok(m),
            },
            result => result,
        };
        // RFC 8767 section 4: when no upstream gives a usable answer, a stale one will do.
        if result.is_err() {
            let stale = self.cache.borrow_mut().stale(&entry.key, now());
            if let Some(answer) = stale {
                self.metrics.forwarding().stale().inc();
                if let Some(suppressed) = self.metrics.log_line("stale answer") {
                    tracing::info!(name = %crate::wire::NameText(entry.query.name()), suppressed, "no upstream answered; serving a stale answer");
                }
                for w in entry.waiters {
                    let mut m = response(&w.request, &answer, &self.zones);
                    ExtendedError::StaleAnswer.add_to(&mut m);
                    send(&self.metrics, &w.request, w.via, m, w.reply, Source::Cache);
                }
                return Ok(());
            }
        }
        match result {
            Ok(message) => {
                // Only whole answers fire the Deferred: truncated ones go to TCP instead.
                debug_assert!(!message.metadata.truncation);
                let mut answer = Answer::from_message(&message);
                let scrubbed = scrub(&mut answer, &entry.query, &self.zones);
                if scrubbed > 0 {
                    self.metrics.forwarding().scrubbed().inc_by(scrubbed as u64);
                    if let Some(suppressed) = self.metrics.log_line("records scrubbed") {
                        let by = entry.answered_by.map(|a| a.to_string()).unwrap_or_default();
                        tracing::info!(name = %crate::wire::NameText(entry.query.name()), upstream = %by, records = scrubbed, suppressed, "an upstream answer carried records that do not answer the question, or of the service's own zones; left out");
                    }
                }
                let mut cache = self.cache.borrow_mut();
                cache.policy().clamp(&mut answer);
                if !entry.unchecked {
                    let evicted = cache.evicted();
                    cache.insert(entry.key, answer.clone(), now());
                    let forwarding = self.metrics.forwarding();
                    forwarding.cache_changed(cache.bytes(), cache.evicted() - evicted);
                }
                drop(cache);
                let source = entry
                    .answered_by
                    .map_or(Source::UpstreamFailed, Source::Upstream);
                for w in entry.waiters {
                    let m = response(&w.request, &answer, &self.zones);
                    send(&self.metrics, &w.request, w.via, m, w.reply, source);
                }
                Ok(())
            }
            Err(failure) => {
                // In presentation form (RFC 1035 section 5.1), once: as the API and
                // history show it, not quoted and escaped again.
                let name = crate::wire::NameText(entry.query.name());
                let qtype = entry.query.query_type();
                let mut source = Source::UpstreamFailed;
                // A client can make one of these a question (names under a dead domain):
                // the lines are budgeted, the answers counted by code and the timeouts
                // in `weft_dns_upstream_timeouts_total`.
                if failure.check::<TimeoutError>() {
                    source = Source::Timeout;
                    self.metrics.upstream_timeout();
                    if let Some(suppressed) = self.metrics.log_line("upstream timeout") {
                        tracing::info!(
                            %name,
                            %qtype,
                            after = ?self.timeout,
                            suppressed,
                            "no upstream answered in time; answering SERVFAIL"
                        );
                    }
                } else if let Some(suppressed) = self.metrics.log_line("upstream failed") {
                    tracing::info!(%name, %qtype, error = %failure, suppressed, "answering SERVFAIL");
                }
                for w in entry.waiters {
                    let mut m = w.request.response(ResponseCode::ServFail, true);
                    ExtendedError::NoReachableAuthority.add_to(&mut m);
                    send(&self.metrics, &w.request, w.via, m, w.reply, source);
                }
                // Answered; the chain ends with the failure, so its record says it.
                Err(failure)
            }
        }
    }
}

/// Writes the owner names that are the asked name, or a name it is under (the SOA of a
/// negative answer), as this client spelled them: an answer is cached as the upstream
/// wrote it for the client that filled the cache, whose random-case spelling (0x20) no
/// later client is to see, nor have its own check of the case fail on. Zone answers are
/// owned by the name as asked too.
fn as_asked(message: &mut Message, asked: &Name) {
    let labels = asked.num_labels();
    let records = message
        .answers
        .iter_mut()
        .chain(message.authorities.iter_mut())
        .chain(message.additionals.iter_mut());
    for record in records {
        let depth = record.name.num_labels();
        if depth > labels {
            continue;
        }
        let spelled = asked.trim_to(usize::from(depth));
        if spelled == record.name && !spelled.eq_case(&record.name) {
            record.name = spelled;
        }
    }
}

/// A response to `request` replaying `answer` (not authoritative; recursion available),
/// its CNAME chain completed from `zones` when it leads into one of them (done here, not
/// in the cache, so a reload that changes the zone changes every answer after it),
/// without DNSSEC records other than of the type asked unless the client set DO (RFC
/// 4035 section 3.2.1).
pub(super) fn response(request: &Request, answer: &Answer, zones: &Catalog) -> Message {
    let mut message = request.response(answer.rcode, true);
    message.answers = answer.answers.clone();
    message.authorities = answer.authorities.clone();
    message.additionals = answer.additionals.clone();
    as_asked(&mut message, request.query.name());
    complete(&mut message, &request.query, zones);
    let dnssec_ok = request.edns.as_ref().is_some_and(|e| e.dnssec_ok);
    message.maybe_strip_dnssec_records(dnssec_ok)
}

/// The type of the first record of `answer` that answers `query` and whose RDATA holds
/// names this service keeps opaque although an upstream may compress them: RFC 1035's
/// MD, MF, MB, MG, MR and MINFO, which hickory-proto does not decode (RFC 3597 section 4
/// lets a server compress the names of RFC 1035's types). Written back as they came,
/// their pointers would point into another message: such an answer is a failure.
fn opaque_names(answer: &Message, query: &hickory_proto::op::Query) -> Option<RecordType> {
    const NAMED: [u16; 6] = [3, 4, 7, 8, 9, 14];
    let qtype = query.query_type();
    answer
        .answers
        .iter()
        .map(hickory_proto::rr::Record::record_type)
        .find(|&t| NAMED.contains(&u16::from(t)) && (t == qtype || qtype == RecordType::ANY))
}
