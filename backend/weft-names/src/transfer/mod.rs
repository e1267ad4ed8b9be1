//! Zone transfers out and NOTIFY: what a primary does for its secondaries.
//!
//! - AXFR (RFC 5936) over TCP to the peers of `allow_transfer` (from an address of the
//!   entry, and signed with its TSIG key when it names one): the zone's SOA first, every
//!   other record, the SOA last, over as many messages as it takes (each well under 64 KiB),
//!   written a few messages per reactor turn and paused while the connection's buffer is
//!   above its high-water mark (`stream`), so a big zone never blocks the reactor and a
//!   slow reader never makes more than about one buffer and one message wait in memory.
//!   Everyone else gets REFUSED, a name that is not the origin of a zone served here
//!   NOTAUTH (as NSD answers both), and AXFR over UDP, which RFC 5936 section 4.2 does not
//!   define, NOTIMP (as NSD answers it).
//! - IXFR (RFC 1995), from the same peers: no zone history is kept, so a client whose
//!   serial is current gets the SOA alone (section 2), and one behind gets the whole zone
//!   as AXFR would send it (section 4). Over UDP an answer is the SOA alone, with TC when
//!   the client is behind (section 2: "the query is responded to with a single SOA record
//!   of the server's current version to inform the client that a TCP query should be
//!   initiated"; NSD sets TC too).
//! - NOTIFY (RFC 1996) out ([`notify`]): when a reload changes a zone's serial, each peer
//!   of `notify` gets a NOTIFY with the new SOA over UDP (signed with the entry's TSIG
//!   key, if it names one), again until it answers, a few times.
//! - Transfers in ([`inbound`]): the zones of `secondary`, taken from their primaries by
//!   AXFR and kept current; a NOTIFY from a primary of one is answered NOERROR and has it
//!   checked at once; any other NOTIFY gets REFUSED (as NSD answers one without
//!   `allow-notify`).
//!
//! Every request is counted by how it ended in `weft_dns_transfers_total{result}`
//! ([`TransferResult`]), every NOTIFY in `weft_dns_notifies_total{result}`.

pub mod inbound;
pub mod ixfr;
pub mod journal;
pub(crate) mod metrics;
pub mod notify;
mod stream;
mod zone_text;

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;

pub use inbound::Secondary;
pub use metrics::{
    NotifyResult, Refresh, SecondaryTransfer, TransferCounters, TransferResult, TsigResult,
    ZoneReload,
};
pub(crate) use stream::Streamer;
pub use weft::policies::{Prefix, PrefixError};

use crate::metrics::ServiceMetrics;
use crate::server::Via;
use crate::view::Source;
use crate::wire::{self, Request};
use crate::zone::{Catalog, Zone};

/// Record bytes (uncompressed) packed into one transfer message at most: well under the
/// 65,535 bytes a TCP frame holds, and small enough that each message is quick to encode.
const MESSAGE_BUDGET: usize = 16 * 1024;

/// Who may transfer the zones, and whom to tell when they change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferConfig {
    /// `allow_transfer`: the peers that may AXFR or IXFR the zones. Empty: nobody.
    pub allow: Vec<TransferPeer>,
    /// `notify`: where a NOTIFY goes when a reload changes a zone's serial.
    pub notify: Vec<NotifyPeer>,
    /// `secondary`: the zones taken from primaries, whose NOTIFYs are accepted.
    pub secondaries: Vec<Secondary>,
}

/// An entry of `notify`: where a NOTIFY goes, and the TSIG key it is signed with, if it
/// names one (`"192.0.2.8:5300 xfr.example."`, as NSD's `notify` reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyPeer {
    /// The secondary's address.
    pub addr: SocketAddr,
    /// The key; `None`: unsigned.
    pub key: Option<crate::TsigKey>,
}

impl std::fmt::Display for NotifyPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{} {}", self.addr, key.name()),
            None => write!(f, "{}", self.addr),
        }
    }
}

/// An entry of `allow_transfer`: the addresses it admits, and the TSIG key their requests
/// must be signed with, if it names one (`"192.0.2.7 xfr.example."`, as NSD's
/// `provide-xfr` reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferPeer {
    /// The addresses.
    pub prefix: Prefix,
    /// The key's name, lower-cased; `None`: signed or not.
    pub key: Option<Name>,
}

impl std::fmt::Display for TransferPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{} {key}", self.prefix),
            None => write!(f, "{}", self.prefix),
        }
    }
}

impl TransferConfig {
    /// Whether `peer`, whose request was signed with the key named `key` (verified), may
    /// transfer a zone.
    pub fn allows(&self, peer: Option<IpAddr>, key: Option<&Name>) -> bool {
        peer.is_some_and(|ip| {
            self.allow.iter().any(|p| {
                p.prefix.contains(ip) && p.key.as_ref().is_none_or(|want| Some(want) == key)
            })
        })
    }
}

/// An AXFR or IXFR query, handed back by [`crate::DnsServer::handle`] to the transport it
/// came by, which knows the peer and can send more than one message.
#[derive(Debug, Clone)]
pub struct Transfer {
    request: Request,
    /// IXFR: the serial of the SOA in the query's authority section, the version the
    /// client has (RFC 1995 section 3).
    client_serial: Option<u32>,
}

impl PartialEq for Transfer {
    fn eq(&self, other: &Self) -> bool {
        self.request.id == other.request.id
            && self.request.query == other.request.query
            && self.client_serial == other.client_serial
    }
}

impl Eq for Transfer {}

impl Transfer {
    pub(crate) fn new(request: Request, packet: &[u8]) -> Self {
        // RFC 1995 section 3: the zone's SOA as the client holds it, owned by the zone's
        // name; a SOA of another owner says nothing of this zone (the request is then
        // malformed, as one without a SOA is).
        let client_serial = if request.query.query_type() == RecordType::IXFR {
            Message::from_vec(packet).ok().and_then(|m| {
                m.authorities
                    .iter()
                    .filter(|r| r.name == *request.query.name())
                    .find_map(|r| match &r.data {
                        RData::SOA(soa) => Some(soa.serial),
                        _ => None,
                    })
            })
        } else {
            None
        };
        Self {
            request,
            client_serial,
        }
    }

    /// AXFR or IXFR.
    pub fn qtype(&self) -> RecordType {
        self.request.query.query_type()
    }
}

/// What a transfer request gets.
#[derive(Debug)]
pub enum Plan {
    /// One message (an error, or the SOA alone), encoded.
    Answer(Vec<u8>),
    /// The whole zone, sent in pieces over the TCP connection (`stream`).
    Stream(Box<Job>),
}

/// A zone to send whole, in answer to one request.
#[derive(Debug)]
pub struct Job {
    catalog: Rc<Catalog>,
    /// Its index in `catalog`.
    zone: usize,
    request: Request,
    recursion_available: bool,
}

/// Serial `a` is `b` or newer, in RFC 1982 serial number arithmetic.
fn serial_at_least(a: u32, b: u32) -> bool {
    a == b || serial_newer(a, b)
}

/// Serial `a` is newer than `b` in RFC 1982 serial number arithmetic: neither is newer
/// than the other exactly half the space apart (section 3.2 leaves that undefined).
fn serial_newer(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// Decides what `asked` from `peer` over `via` gets, and counts the ones answered at once.
pub(crate) fn plan(
    asked: Transfer,
    peer: Option<IpAddr>,
    via: Via,
    catalog: &Rc<Catalog>,
    config: &TransferConfig,
    recursion_available: bool,
    metrics: &ServiceMetrics,
) -> Plan {
    let Transfer {
        request,
        client_serial,
    } = asked;
    let counters = metrics.transfer();
    let answer = |rcode: ResponseCode, result: TransferResult, records: Vec<Record>| {
        counters.transfer(result);
        let source = match rcode {
            ResponseCode::NoError => Source::Zone,
            ResponseCode::FormErr => Source::Malformed,
            // Not allowed, of no zone of this service, or AXFR over UDP.
            _ => Source::Refused,
        };
        let asked = request.asked;
        metrics.answered(
            Some(&request.query),
            asked.client,
            asked.received,
            rcode,
            source,
            None,
        );
        let mut message = request.response(rcode, recursion_available);
        message.metadata.authoritative = rcode == ResponseCode::NoError;
        message.metadata.truncation = result == TransferResult::Truncated;
        message.answers = records;
        if result == TransferResult::Refused {
            crate::edns::ExtendedError::Prohibited.add_to(&mut message);
        }
        let mut encoded = match via {
            Via::Udp => wire::encode(&message, Some(request.udp_limit())),
            Via::Tcp => wire::encode_tcp(&message, request.tcp_limit()),
        };
        if let Some(signer) = &request.signer {
            signer.sign(&mut encoded);
        }
        Plan::Answer(encoded)
    };
    let axfr = request.query.query_type() == RecordType::AXFR;
    if axfr && via == Via::Udp {
        return answer(ResponseCode::NotImp, TransferResult::Udp, Vec::new());
    }
    let qname = LowerName::new(request.query.name());
    let Some(zone) = catalog
        .zones()
        .iter()
        .position(|z| LowerName::new(z.origin()) == qname)
    else {
        return answer(ResponseCode::NotAuth, TransferResult::NotAuth, Vec::new());
    };
    if !config.allows(
        peer,
        request.signer.as_deref().map(crate::tsig::Signer::key),
    ) {
        // A peer can ask at will: the lines are budgeted, the refusals counted.
        if let Some(suppressed) = metrics.log_line("transfer refused") {
            let from = peer.map(|p| p.to_string()).unwrap_or_default();
            let zone = crate::wire::NameText(catalog.zones()[zone].origin());
            let key = request.signer.as_deref().map(|s| s.key());
            let key = key.map_or_else(
                || "none".to_owned(),
                |k| crate::wire::NameText(k).to_string(),
            );
            tracing::warn!(%zone, %from, %key, suppressed, "a zone transfer not allowed to this peer or key (allow_transfer): refused");
        }
        return answer(ResponseCode::Refused, TransferResult::Refused, Vec::new());
    }
    let current = &catalog.zones()[zone];
    if !axfr {
        let Some(serial) = client_serial else {
            return answer(ResponseCode::FormErr, TransferResult::Malformed, Vec::new());
        };
        if serial_at_least(serial, current.serial()) {
            let soa = vec![current.soa().clone()];
            return answer(ResponseCode::NoError, TransferResult::UpToDate, soa);
        }
        if via == Via::Udp {
            let soa = vec![current.soa().clone()];
            return answer(ResponseCode::NoError, TransferResult::Truncated, soa);
        }
    }
    Plan::Stream(Box::new(Job {
        catalog: catalog.clone(),
        zone,
        request,
        recursion_available,
    }))
}

/// A NOTIFY (RFC 1996) that came to us, answered: NOERROR with the question echoed when
/// it names a zone of `secondaries` and comes `from` one of its primaries, signed with
/// its key if it names one (`key`: the verified key's name, asked only then), and then the zone, to check at once;
/// REFUSED otherwise (as NSD answers a NOTIFY without `allow-notify`); FORMERR for one
/// without a question (section 3.7: QDCOUNT > 0) or that does not decode. `None` for a
/// packet that is not a NOTIFY request.
pub(crate) fn notify_received(
    packet: &[u8],
    secondaries: &[Secondary],
    from: Option<IpAddr>,
    key: impl FnOnce() -> Option<Name>,
) -> Option<(Vec<u8>, ResponseCode, Option<Name>)> {
    let flags = *packet.get(2)?;
    if packet.len() < 12
        || flags & 0x80 != 0
        || OpCode::from_u8((flags >> 3) & 0x0f) != OpCode::Notify
    {
        return None;
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    let message = Message::from_vec(packet).ok();
    let zone = message.as_ref().and_then(|m| {
        // Section 3.7: the zone's SOA, class IN here.
        let question = m.queries.first()?;
        if question.query_type() != RecordType::SOA || question.query_class() != DNSClass::IN {
            return None;
        }
        let zone = secondaries.iter().find(|s| s.origin == *question.name())?;
        from.filter(|ip| zone.is_primary(*ip, key().as_ref()))?;
        Some(zone.origin.clone())
    });
    let rcode = match (&message, &zone) {
        (Some(m), _) if m.queries.is_empty() => ResponseCode::FormErr,
        (Some(_), Some(_)) => ResponseCode::NoError,
        (Some(_), None) => ResponseCode::Refused,
        (None, _) => ResponseCode::FormErr,
    };
    let mut response = Message::error_msg(id, OpCode::Notify, rcode);
    response.metadata.authoritative = zone.is_some();
    if let Some(message) = message {
        response.queries = message.queries;
        response.edns = message.edns.as_ref().map(wire::bare_opt);
    }
    Some((wire::encode(&response, None), rcode, zone))
}

/// Why [`notify_received`] refused `packet` from `from` (signed with `key`), for its log
/// line: which of the zone, the address and the key did not fit.
pub(crate) fn notify_refusal(
    packet: &[u8],
    secondaries: &[Secondary],
    from: Option<IpAddr>,
    key: Option<&Name>,
) -> String {
    let question = Message::from_vec(packet)
        .ok()
        .and_then(|m| m.queries.into_iter().next());
    let Some(question) = question else {
        return "no question".into();
    };
    let name = question.name();
    if question.query_type() != RecordType::SOA || question.query_class() != DNSClass::IN {
        return format!("for {name} {}, not a zone's SOA", question.query_type());
    }
    let Some(zone) = secondaries.iter().find(|s| s.origin == *name) else {
        return format!("for {name}, no secondary zone of this service");
    };
    match from {
        Some(ip) if zone.is_primary(ip, key) => format!("for {name}"),
        Some(ip) if zone.primaries_at(ip) => format!(
            "for {name} from a primary's address, not signed with its key ({})",
            key.map_or_else(
                || "no valid signature".to_owned(),
                |k| format!("signed with {k}")
            )
        ),
        _ => format!("for {name}, not from an address of its primaries"),
    }
}

/// Where a transfer is in its zone: the next record to send, kept across messages.
struct Cursor {
    job: Job,
    /// What signs each message, when the request was signed (TSIG).
    signer: Option<crate::tsig::Signer>,
    /// Every owner name of the zone, the origin first (shared with the zone).
    owners: Arc<[LowerName]>,
    owner: usize,
    /// The next record of `owners[owner]`.
    record: usize,
    /// The opening SOA went out (with the question, in the first message).
    started: bool,
    /// The closing SOA went out.
    finished: bool,
}

impl Cursor {
    fn new(job: Job) -> Self {
        let owners = job.catalog.zones()[job.zone].owners();
        Self {
            signer: job.request.signer.as_deref().cloned(),
            job,
            owners,
            owner: 0,
            record: 0,
            started: false,
            finished: false,
        }
    }

    /// The next message of the transfer, encoded; `None` once the closing SOA is sent.
    fn next_message(&mut self) -> Option<Vec<u8>> {
        if self.finished {
            return None;
        }
        let catalog = self.job.catalog.clone();
        let zone: &Zone = &catalog.zones()[self.job.zone];
        let mut records = Vec::new();
        let mut size = 0;
        if !self.started {
            records.push(zone.soa().clone());
            size += encoded_len(zone.soa());
        }
        while let Some(owner) = self.owners.get(self.owner) {
            let Some(record) = zone.records_at(owner).get(self.record) else {
                self.owner += 1;
                self.record = 0;
                continue;
            };
            // The SOA opens and closes the transfer, and nowhere else (RFC 5936 section 2.2).
            if record.record_type() != RecordType::SOA {
                let len = encoded_len(record);
                if size + len > MESSAGE_BUDGET && !records.is_empty() {
                    break;
                }
                records.push(record.clone());
                size += len;
            }
            self.record += 1;
        }
        if self.owner >= self.owners.len()
            && (records.is_empty() || size + encoded_len(zone.soa()) <= MESSAGE_BUDGET)
        {
            records.push(zone.soa().clone());
            self.finished = true;
        }
        let mut message = self
            .job
            .request
            .response(ResponseCode::NoError, self.job.recursion_available);
        message.metadata.authoritative = true;
        if self.started {
            // RFC 5936 section 2.2.1: the question is in the first message; later ones
            // may leave it out.
            message.queries.clear();
        }
        self.started = true;
        message.answers = records;
        let mut encoded = wire::encode(&message, None);
        if let Some(signer) = &mut self.signer {
            signer.sign_next(&mut encoded);
        }
        Some(encoded)
    }
}

/// A record's size on the wire without name compression: an upper bound of what it takes
/// in a message.
fn encoded_len(record: &Record) -> usize {
    record.to_bytes().map_or(usize::from(u16::MAX), |b| b.len())
}

/// The messages of a whole transfer of `job`, for tests.
#[cfg(test)]
fn all_messages(job: Job) -> Vec<Vec<u8>> {
    let mut cursor = Cursor::new(job);
    std::iter::from_fn(|| cursor.next_message()).collect()
}

/// A query for `qtype` of `zone`, as a client sends it (IXFR with `serial` in authority).
#[cfg(test)]
pub(crate) fn transfer_query(
    id: u16,
    zone: &str,
    qtype: RecordType,
    serial: Option<u32>,
) -> Vec<u8> {
    use hickory_proto::op::{MessageType, Query};
    use hickory_proto::rr::Name;
    use hickory_proto::rr::rdata::SOA;
    let name = Name::from_ascii(zone).unwrap();
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.queries.push(Query::query(name.clone(), qtype));
    if let Some(serial) = serial {
        let soa = SOA::new(name.clone(), name.clone(), serial, 0, 0, 0, 0);
        message
            .authorities
            .push(Record::from_rdata(name, 0, RData::SOA(soa)));
    }
    message.to_vec().unwrap()
}

#[cfg(test)]
mod tests;
