//! NOTIFY out (RFC 1996): telling the `notify` peers that a zone changed.
//!
//! Each peer gets its own UDP port and a NOTIFY query (opcode NOTIFY, AA, the zone's SOA
//! question, the new SOA in the answer section as section 3.7 allows), sent again every
//! [`RETRY_AFTER`] until the peer answers with the same id, [`ATTEMPTS`] times at most
//! (section 3.6 leaves the interval and the count to the operator). The port closes once
//! the peer answered or the last attempt timed out; either way the result is counted in
//! `weft_dns_notifies_total`.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Record, RecordType};
use weft::endpoint::ServerEndpoint;
use weft::observe::{self, ErrorKind};
use weft::{DatagramProtocol, DatagramTransport, Reactor};

use super::{NotifyPeer, NotifyResult};
use crate::error::NamesError;
use crate::metrics::ServiceMetrics;

/// How many times a NOTIFY is sent to a peer that does not answer.
pub const ATTEMPTS: u32 = 5;
/// How long to wait for an answer before sending again.
pub const RETRY_AFTER: Duration = Duration::from_secs(2);

/// Sends a NOTIFY for the zone whose SOA is `soa` to every peer of `peers` (signed with
/// its key, when it names one), from service `service`'s ports; answers and give-ups are
/// counted in `metrics`.
pub fn announce(
    reactor: &Reactor,
    service: &str,
    soa: &Record,
    peers: &[NotifyPeer],
    metrics: &ServiceMetrics,
) -> Result<(), NamesError> {
    for NotifyPeer { addr: peer, key } in peers {
        let peer = *peer;
        let id = crate::random::u16();
        let mut message = Message::new(id, MessageType::Query, OpCode::Notify);
        message.metadata.authoritative = true;
        let mut question = Query::query(soa.name.clone(), RecordType::SOA);
        question.set_query_class(DNSClass::IN);
        message.queries.push(question);
        message.answers.push(soa.clone());
        let mut packet = crate::wire::encode(&message, None);
        let signed = key.as_ref().map(|key| {
            let mac = crate::tsig::sign_query(key, &mut packet);
            (key.clone(), mac)
        });
        let pending = Rc::new(Pending {
            id,
            peer,
            done: Cell::new(false),
            metrics: metrics.clone(),
            signed,
        });
        let endpoint = ServerEndpoint::Udp {
            addr: SocketAddr::new(crate::transport::local_for(peer.ip()), 0),
        }
        .to_string();
        let port = reactor.open_udp(service, &endpoint, Answers(pending.clone()))?;
        attempt(pending, port.transport().clone(), packet, 1);
    }
    Ok(())
}

/// One NOTIFY waiting for its peer's answer.
struct Pending {
    id: u16,
    peer: SocketAddr,
    /// Answered, or given up on.
    done: Cell<bool>,
    metrics: ServiceMetrics,
    /// The key it was signed with and its MAC: its answer counts only signed with that
    /// key over that MAC (RFC 8945 section 5.4).
    signed: Option<(crate::TsigKey, Vec<u8>)>,
}

/// Sends attempt `n`, and schedules the next or the give-up.
fn attempt(pending: Rc<Pending>, port: DatagramTransport, packet: Vec<u8>, n: u32) {
    if pending.done.get() {
        return;
    }
    port.write(&packet, pending.peer);
    weft::call_later(RETRY_AFTER, move || {
        if pending.done.get() {
            return;
        }
        if n >= ATTEMPTS {
            pending.done.set(true);
            pending.metrics.transfer().notify(NotifyResult::Unanswered);
            tracing::warn!(peer = %pending.peer, attempts = n, "NOTIFY unanswered; giving up");
            port.stop_listening();
            return;
        }
        attempt(pending, port, packet, n + 1);
    });
}

/// Reads the peer's answer on the NOTIFY's port.
struct Answers(Rc<Pending>);

impl DatagramProtocol for Answers {
    fn datagram_received(&mut self, transport: &DatagramTransport, data: &[u8], from: SocketAddr) {
        let pending = &self.0;
        let answer = Message::from_vec(data).ok().filter(|m| {
            from == pending.peer
                && m.metadata.message_type == MessageType::Response
                && m.metadata.id == pending.id
                && pending.signed.as_ref().is_none_or(|(key, mac)| {
                    crate::tsig::answer_verifies(key, mac, data, crate::tsig::unix_now())
                })
        });
        let Some(answer) = answer else {
            pending.metrics.dropped();
            observe::report_error(
                transport.info(),
                ErrorKind::BadFrame,
                format!(
                    "a datagram from {from} that does not answer the NOTIFY to {}",
                    pending.peer
                ),
            );
            return;
        };
        if pending.done.replace(true) {
            return;
        }
        let result = if answer.metadata.response_code == ResponseCode::NoError {
            NotifyResult::Acknowledged
        } else {
            NotifyResult::Rejected
        };
        pending.metrics.transfer().notify(result);
        transport.stop_listening();
    }
}
