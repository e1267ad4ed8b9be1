//! Packets to requests and responses to packets: the checks every query passes, the
//! header bits of answers, and truncation to what a UDP client can take.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::DNSClass;

use crate::edns::{OptionsAnswered, OptionsAsked};
use crate::tsig;

/// What classic DNS over UDP allows without EDNS (RFC 1035 section 4.2.1).
pub const CLASSIC_UDP_SIZE: usize = 512;
/// The largest UDP payload this server advertises and sends (the DNS flag day 2020
/// figure, which avoids IP fragmentation on common paths).
pub const EDNS_UDP_SIZE: u16 = 1232;
/// The one EDNS version this server speaks.
const EDNS_VERSION: u8 = 0;

/// What a client's OPT record asks of the response (RFC 6891).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientEdns {
    /// The largest UDP payload the client takes.
    pub(crate) max_payload: u16,
    /// DNSSEC OK, which RFC 3225 section 3 has the response copy.
    pub(crate) dnssec_ok: bool,
    /// The options this server acts on (NSID, COOKIE).
    pub(crate) asked: OptionsAsked,
    /// The options the answer carries, filled in by the server.
    pub(crate) answered: OptionsAnswered,
}

impl ClientEdns {
    /// The client's OPT, with why its COOKIE option is malformed, if it is and `cookies`
    /// are on.
    fn of(edns: &Edns, cookies: bool) -> (Self, Option<String>) {
        let (asked, malformed) = OptionsAsked::read(edns, cookies);
        let client = Self {
            max_payload: edns.max_payload(),
            dnssec_ok: edns.flags().dnssec_ok,
            asked,
            answered: OptionsAnswered::default(),
        };
        (client, malformed)
    }

    /// The OPT record of a response to it. RFC 6891 section 6.1.1: a query with an OPT
    /// gets a response with one; section 6.1.3: its version is the one this server speaks;
    /// section 6.1.2: the options are this server's (NSID, COOKIE), never echoed ones.
    fn response_opt(&self) -> Edns {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_UDP_SIZE)
            .set_version(EDNS_VERSION)
            .set_dnssec_ok(self.dnssec_ok);
        self.answered.add_to(&mut edns);
        edns
    }
}

/// A query that passed the checks: one question, a standard opcode.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) id: u16,
    pub(crate) recursion_desired: bool,
    pub(crate) checking_disabled: bool,
    pub(crate) query: Query,
    /// What the client's OPT record asked, if it sent one.
    pub(crate) edns: Option<ClientEdns>,
    /// Who asked and when, for the answer's latency and the query log.
    pub(crate) asked: Asked,
}

/// Who asked a query and when it arrived.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asked {
    /// The client, when the transport says.
    pub(crate) client: Option<std::net::SocketAddr>,
    /// When the packet arrived.
    pub(crate) received: std::time::Instant,
    /// The span its answer belongs to (a forwarded question's upstream query, while spans
    /// are exported): the exemplar of its latency.
    pub(crate) span: Option<weft::observe::exemplar::SpanRef>,
}

/// What to do with a packet.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// A query to answer.
    Query(Request),
    /// A packet that only gets an error response (FORMERR, NOTIMP, BADVERS, NOTAUTH,
    /// REFUSED), with an OPT when the query had one; the server adds the options it
    /// answers from `asked`.
    Error {
        response: Box<Message>,
        asked: Option<OptionsAsked>,
        rcode: ResponseCode,
        why: String,
    },
    /// Not answerable: shorter than a header, or a response rather than a query.
    Drop(String),
}

/// [`parse_received`] of a packet that arrived now.
#[cfg(test)]
pub(crate) fn parse(packet: &[u8], cookies: bool) -> Parsed {
    parse_received(packet, cookies, std::time::Instant::now())
}

/// Checks `packet`, which arrived at `received`, and turns it into a request, an error
/// response or nothing; with `cookies`, a malformed COOKIE option is an error (elsewhere
/// options are not read).
pub(crate) fn parse_received(packet: &[u8], cookies: bool, received: std::time::Instant) -> Parsed {
    if packet.len() < 12 {
        return Parsed::Drop(format!("{} bytes: shorter than a DNS header", packet.len()));
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    if packet[2] & 0x80 != 0 {
        return Parsed::Drop("a response, not a query".into());
    }
    let op_code = OpCode::from_u8((packet[2] >> 3) & 0x0f);
    if op_code != OpCode::Query {
        // RFC 1035 section 4.1.1 copies RD from a query into its response, but past the
        // opcode another opcode may lay the message out differently (RFC 2136 section 2.2
        // makes RD's bit part of Z in UPDATE), so nothing after the opcode is read or
        // echoed: the header alone (ID, QR, OPCODE, NOTIMP), without RD, question or OPT.
        // NSD too checks the opcode before reading the rest and answers with no sections.
        let response = Message::error_msg(id, op_code, ResponseCode::NotImp);
        return Parsed::Error {
            response: Box::new(response),
            asked: None,
            rcode: ResponseCode::NotImp,
            why: format!("opcode {op_code:?} is not served"),
        };
    }
    let recursion_desired = packet[2] & 0x01 != 0;
    let message = match Message::from_vec(packet) {
        Ok(m) => m,
        Err(e) => {
            let response = error_response(id, recursion_desired, ResponseCode::FormErr, None, None);
            return Parsed::Error {
                response: Box::new(response),
                asked: None,
                rcode: ResponseCode::FormErr,
                why: format!("undecodable: {e}"),
            };
        }
    };
    let (edns, malformed) = match message.edns.as_ref().map(|e| ClientEdns::of(e, cookies)) {
        Some((edns, malformed)) => (Some(edns), malformed),
        None => (None, None),
    };
    let question = (message.queries.len() == 1).then(|| message.queries[0].clone());
    let error = |rcode: ResponseCode, why: String, question: Option<Query>| {
        let response = error_response(id, recursion_desired, rcode, question, edns.as_ref());
        Parsed::Error {
            response: Box::new(response),
            asked: edns.as_ref().map(|e| e.asked),
            rcode,
            why,
        }
    };
    if let Some(version) = message.edns.as_ref().map(Edns::version)
        && version > EDNS_VERSION
    {
        // RFC 6891 section 6.1.3: a version the responder does not implement gets BADVERS.
        let why = format!("EDNS version {version}; this server speaks version {EDNS_VERSION}");
        return error(ResponseCode::BADVERS, why, question);
    }
    if let Some(why) = malformed {
        // RFC 7873 section 5.2.2.
        return error(ResponseCode::FormErr, why, question);
    }
    match tsig::of_query(&message, packet) {
        Ok(None) => {}
        Ok(Some(signed)) => {
            let mut response = error_response(
                id,
                recursion_desired,
                ResponseCode::NotAuth,
                question,
                edns.as_ref(),
            );
            response.signature = Some(Box::new(signed.unknown_key_response()));
            return Parsed::Error {
                response: Box::new(response),
                asked: edns.as_ref().map(|e| e.asked),
                rcode: ResponseCode::NotAuth,
                why: format!(
                    "signed with TSIG key {}, which this server does not know",
                    signed.key
                ),
            };
        }
        Err(why) => return error(ResponseCode::FormErr, why, question),
    }
    let Some(query) = question else {
        let why = format!("{} questions; a query has one", message.queries.len());
        return error(ResponseCode::FormErr, why, None);
    };
    if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
        let why = format!("class {:?} is not served", query.query_class());
        return error(ResponseCode::Refused, why, Some(query));
    }
    Parsed::Query(Request {
        id,
        recursion_desired: message.metadata.recursion_desired,
        checking_disabled: message.metadata.checking_disabled,
        query,
        edns,
        asked: Asked {
            client: None,
            received,
            span: None,
        },
    })
}

/// An empty response to query `id` with `rcode`: RD copied, the question if there was
/// one, an OPT if the query had one.
fn error_response(
    id: u16,
    recursion_desired: bool,
    rcode: ResponseCode,
    question: Option<Query>,
    edns: Option<&ClientEdns>,
) -> Message {
    let mut message = Message::error_msg(id, OpCode::Query, rcode);
    message.metadata.recursion_desired = recursion_desired;
    message.queries.extend(question);
    message.edns = edns.map(ClientEdns::response_opt);
    message
}

impl Request {
    /// The largest UDP response the client takes.
    pub(crate) fn udp_limit(&self) -> usize {
        match &self.edns {
            Some(edns) => usize::from(
                edns.max_payload
                    .clamp(CLASSIC_UDP_SIZE as u16, EDNS_UDP_SIZE),
            ),
            None => CLASSIC_UDP_SIZE,
        }
    }

    /// An empty response to this request with `rcode`; `recursion_available` says
    /// whether the service forwards.
    pub(crate) fn response(&self, rcode: ResponseCode, recursion_available: bool) -> Message {
        let mut message = Message::new(self.id, MessageType::Response, OpCode::Query);
        let meta = &mut message.metadata;
        meta.response_code = rcode;
        meta.recursion_desired = self.recursion_desired;
        meta.checking_disabled = self.checking_disabled;
        meta.recursion_available = recursion_available;
        message.queries.push(self.query.clone());
        message.edns = self.edns.as_ref().map(ClientEdns::response_opt);
        message
    }
}

/// Encodes `message`; with a `limit`, a response that does not fit is sent as its
/// header and question with the TC bit set, so the client retries over TCP.
pub(crate) fn encode(message: &Message, limit: Option<usize>) -> Vec<u8> {
    let bytes = match message.to_vec() {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!(error = %e, "a response could not be encoded; sending SERVFAIL");
            let mut fail = Message::error_msg(
                message.metadata.id,
                message.metadata.op_code,
                ResponseCode::ServFail,
            );
            fail.queries = message.queries.clone();
            fail.edns = message.edns.clone();
            return fail.to_vec().unwrap_or_default();
        }
    };
    match limit {
        Some(limit) if bytes.len() > limit => {
            let mut truncated = message.truncate();
            truncated.metadata.id = message.metadata.id;
            truncated.to_vec().unwrap_or_default()
        }
        _ => bytes,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hickory_proto::rr::{Name, RecordType};

    /// A query packet for `name`/`qtype`, recursion desired.
    pub(crate) fn query(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
        let mut message = Message::new(id, MessageType::Query, OpCode::Query);
        message.metadata.recursion_desired = true;
        message
            .queries
            .push(Query::query(Name::from_ascii(name).unwrap(), qtype));
        message.to_vec().unwrap()
    }

    #[test]
    fn malformed_packets_get_formerr_when_the_header_is_readable_else_nothing() {
        assert!(matches!(parse(&[0; 5], false), Parsed::Drop(_)));
        let mut response = query(7, "a.test.", RecordType::A);
        response[2] |= 0x80;
        assert!(
            matches!(parse(&response, false), Parsed::Drop(_)),
            "never answer answers"
        );

        let mut garbage = query(0x1234, "a.test.", RecordType::A);
        garbage.truncate(15);
        let Parsed::Error {
            response, rcode, ..
        } = parse(&garbage, false)
        else {
            panic!("FORMERR")
        };
        assert_eq!(rcode, ResponseCode::FormErr);
        let decoded = Message::from_vec(&encode(&response, None)).unwrap();
        assert_eq!(decoded.metadata.id, 0x1234);
        assert_eq!(decoded.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(decoded.metadata.message_type, MessageType::Response);

        let mut two = Message::new(9, MessageType::Query, OpCode::Query);
        two.queries.push(Query::query(
            Name::from_ascii("a.test.").unwrap(),
            RecordType::A,
        ));
        two.queries.push(Query::query(
            Name::from_ascii("b.test.").unwrap(),
            RecordType::A,
        ));
        assert!(matches!(
            parse(&two.to_vec().unwrap(), false),
            Parsed::Error {
                rcode: ResponseCode::FormErr,
                ..
            }
        ));

        let mut notify = query(3, "a.test.", RecordType::SOA);
        notify[2] |= 4 << 3;
        assert!(matches!(
            parse(&notify, false),
            Parsed::Error {
                rcode: ResponseCode::NotImp,
                ..
            }
        ));
    }

    #[test]
    fn udp_limit_follows_edns_within_bounds() {
        let Parsed::Query(mut req) = parse(&query(1, "a.test.", RecordType::A), false) else {
            panic!()
        };
        assert_eq!(req.udp_limit(), 512);
        let edns = |max_payload| {
            Some(ClientEdns {
                max_payload,
                dnssec_ok: false,
                asked: OptionsAsked::default(),
                answered: OptionsAnswered::default(),
            })
        };
        req.edns = edns(100);
        assert_eq!(req.udp_limit(), 512);
        req.edns = edns(4096);
        assert_eq!(req.udp_limit(), 1232);
    }
}
