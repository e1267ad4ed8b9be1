//! Packets to requests and responses to packets: the checks every query passes, the
//! header bits of answers, and truncation to what a UDP client can take.

use hickory_proto::ProtoError;
use hickory_proto::op::{
    Edns, Header, HeaderCounts, Message, MessageType, OpCode, Query, ResponseCode,
};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordData};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

type ProtoResult<T> = Result<T, ProtoError>;

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

/// The OPT record of an error response to a request whose OPT is `asked`, when nothing
/// else of it is read (RFC 6891 section 6.1.1: a request with an OPT gets a response with
/// one): this server's size and version, DO copied, no options.
pub(crate) fn bare_opt(asked: &Edns) -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_UDP_SIZE)
        .set_version(EDNS_VERSION)
        .set_dnssec_ok(asked.flags().dnssec_ok);
    edns
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
    /// What signs its answers, when it was signed with a key of the service (TSIG).
    pub(crate) signer: Option<Box<tsig::Signer>>,
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
        /// A signed query's (TSIG): the record its answer ends with.
        seal: Option<tsig::Seal>,
    },
    /// Not answerable: shorter than a header, or a response rather than a query.
    Drop(String),
}

/// [`parse_received`] of a packet that arrived now, for a service without TSIG keys.
#[cfg(test)]
pub(crate) fn parse(packet: &[u8], cookies: bool) -> Parsed {
    parse_received(packet, cookies, &[], std::time::Instant::now())
}

/// Checks `packet`, which arrived at `received`, and turns it into a request, an error
/// response or nothing; with `cookies`, a malformed COOKIE option is an error (elsewhere
/// options are not read). A signed query is verified with `keys` (see [`tsig`]).
pub(crate) fn parse_received(
    packet: &[u8],
    cookies: bool,
    keys: &[tsig::TsigKey],
    received: std::time::Instant,
) -> Parsed {
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
        // makes RD's bit part of Z in UPDATE), so nothing of it is echoed: the header
        // (ID, QR, OPCODE, NOTIMP) without RD or question. One thing more: a request with
        // an OPT record gets one back (RFC 6891 section 6.1.1, a MUST), when the message
        // reads as one with the usual sections (IQUERY, STATUS and UPDATE have them).
        let mut response = Message::error_msg(id, op_code, ResponseCode::NotImp);
        response.edns = match Message::from_vec(packet) {
            Ok(message) => message
                .edns
                .as_ref()
                .map(|edns| ClientEdns::of(edns, false).0.response_opt()),
            Err(_) => undecodable_opt(packet),
        };
        return Parsed::Error {
            response: Box::new(response),
            asked: None,
            rcode: ResponseCode::NotImp,
            why: format!("opcode {op_code:?} is not served"),
            seal: tsig::signer_of(keys, packet).map(|s| tsig::Seal::Signed(Box::new(s))),
        };
    }
    let recursion_desired = packet[2] & 0x01 != 0;
    let why = match Message::from_vec(packet) {
        Ok(m) if !points_into_header(packet) => Ok(m),
        // hickory reads a pointer into the header as a name of the header's bytes: no
        // name occurs there (RFC 1035 section 4.1.4 points to a prior occurrence of one),
        // and the junk would go upstream, into the cache and the log (NSD: FORMERR).
        Ok(_) => Err("a name's compression pointer points into the header".to_owned()),
        Err(e) => Err(format!("undecodable: {e}")),
    };
    let message = match why {
        Ok(m) => m,
        Err(why) => {
            let mut response =
                error_response(id, recursion_desired, ResponseCode::FormErr, None, None);
            // RFC 6891 section 7: a FORMERR for a problem with the OPT record itself (an
            // option hickory cannot read) MUST carry an OPT record; one found in a message
            // that does not read is answered with one, whatever made it unreadable.
            response.edns = undecodable_opt(packet);
            return Parsed::Error {
                response: Box::new(response),
                asked: None,
                rcode: ResponseCode::FormErr,
                why,
                seal: None,
            };
        }
    };
    let (edns, malformed) = match message.edns.as_ref().map(|e| ClientEdns::of(e, cookies)) {
        Some((edns, malformed)) => (Some(edns), malformed),
        None => (None, None),
    };
    let question = (message.queries.len() == 1).then(|| message.queries[0].clone());
    let sealed = |rcode, why, question, seal| {
        let response = error_response(id, recursion_desired, rcode, question, edns.as_ref());
        Parsed::Error {
            response: Box::new(response),
            asked: edns.as_ref().map(|e| e.asked),
            rcode,
            why,
            seal,
        }
    };
    // The signature first (RFC 8945 section 5.2): a query that does not verify is refused
    // before anything else is said of it, and any answer to one that does is signed.
    let signer = match tsig::of_query(&message, packet) {
        Ok(None) => None,
        Ok(Some(signed)) => match tsig::verify(keys, signed, packet, tsig::unix_now()) {
            Ok(signer) => Some(Box::new(signer)),
            Err(refusal) => {
                let rcode = match refusal.malformed() {
                    true => ResponseCode::FormErr,
                    false => ResponseCode::NotAuth,
                };
                let why = refusal.why.clone();
                return sealed(rcode, why, question, Some(tsig::Seal::Refused(refusal)));
            }
        },
        Err(why) => return sealed(ResponseCode::FormErr, why, question, None),
    };
    let error = |rcode: ResponseCode, why: String, question: Option<Query>| {
        sealed(rcode, why, question, signer.clone().map(tsig::Seal::Signed))
    };
    if let Some(version) = message.edns.as_ref().map(Edns::version)
        && version > EDNS_VERSION
    {
        // RFC 6891 section 6.1.3: a version the responder does not implement gets BADVERS.
        let why = format!("EDNS version {version}; this server speaks version {EDNS_VERSION}");
        return error(ResponseCode::BADVERS, why, question);
    }
    // hickory drops an option that runs past its OPT record's data (with a log line of
    // its own) and reads on: the message as sent does not parse (RFC 1035 section
    // 4.1.1), whichever option it is, a malformed COOKIE (RFC 7873 section 5.2.2) too.
    let malformed = match &message.edns {
        Some(_) => options_overrun(packet).or(malformed),
        None => None,
    };
    if let Some(why) = malformed {
        return error(ResponseCode::FormErr, why, question);
    }
    let Some(query) = question else {
        if message.queries.is_empty() && edns.as_ref().is_some_and(|e| e.asked.cookie.is_some()) {
            // RFC 7873 §5.4: a client may ask for a server cookie alone; it gets one,
            // with NOERROR.
            let why = "a COOKIE option and no question".to_owned();
            return error(ResponseCode::NoError, why, None);
        }
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
        signer,
    })
}

/// Why the options of `packet`'s OPT record do not fill its data end to end (RFC 6891
/// section 6.1.2), if they do not; `packet` is a message hickory has read.
fn options_overrun(packet: &[u8]) -> Option<String> {
    let mut options = opt_data(packet)?;
    while let [c0, c1, l0, l1, rest @ ..] = options {
        let (code, len) = (
            u16::from_be_bytes([*c0, *c1]),
            u16::from_be_bytes([*l0, *l1]),
        );
        if rest.len() < usize::from(len) {
            let left = rest.len();
            return Some(format!(
                "EDNS option {code} says {len} bytes where its OPT record has {left} left"
            ));
        }
        options = &rest[usize::from(len)..];
    }
    (!options.is_empty()).then(|| {
        let left = options.len();
        format!("{left} bytes after the last EDNS option of the OPT record, too few for one")
    })
}

/// The data of the OPT record in `packet`'s additional section, when the message reads
/// that far.
fn opt_data(packet: &[u8]) -> Option<&[u8]> {
    let at = opt_at(packet)?;
    let len = usize::from(u16::from_be_bytes([packet[at + 8], packet[at + 9]]));
    packet.get(at + 10..at + 10 + len)
}

/// The OPT record of a response to `packet`, a query hickory cannot read, when its OPT
/// record's fixed fields can be found: this server's size and version, its DO bit copied
/// (RFC 3225 section 3), no options.
fn undecodable_opt(packet: &[u8]) -> Option<Edns> {
    let at = opt_at(packet)?;
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_UDP_SIZE)
        .set_version(EDNS_VERSION)
        .set_dnssec_ok(packet[at + 6] & 0x80 != 0);
    Some(edns)
}

/// Whether a name of `packet`'s question or of a record's owner (a message hickory has
/// read) is, or leads through its pointers to, a pointer into the 12-byte header.
fn points_into_header(packet: &[u8]) -> bool {
    // Follows the name at `at` through its pointers (hickory has refused loops and
    // forward pointers, and the hops are bounded besides).
    let into_header = |mut at: usize| {
        for _ in 0..128 {
            match packet.get(at..at + 2) {
                Some(&[high, low]) if high >= 0xC0 => {
                    let target = usize::from(u16::from_be_bytes([high & 0x3F, low]));
                    if target < 12 {
                        return true;
                    }
                    at = target;
                }
                _ => match packet.get(at) {
                    Some(&len @ 1..=63) => at += 1 + usize::from(len),
                    _ => return false,
                },
            }
        }
        false
    };
    walk_records(packet, |_, name, _| into_header(name).then_some(())).is_some()
}

/// Where the fixed fields (type to RDLENGTH, 10 bytes) of the OPT record in `packet`'s
/// additional section begin, when the message reads that far.
fn opt_at(packet: &[u8]) -> Option<usize> {
    let count = |i: usize| usize::from(u16::from_be_bytes([packet[i], packet[i + 1]]));
    let before_additional = count(4) + count(6) + count(8);
    walk_records(packet, |i, _, fixed| {
        let at = fixed?;
        (i >= before_additional && packet[at..at + 2] == [0, 41]).then_some(at)
    })
}

/// Walks `packet`'s questions and records in order (the counts of its header, `packet`
/// at least 12 bytes), calling `visit` with each one's index, where its name begins and,
/// for a record, where its fixed fields (type to RDLENGTH) begin, until `visit` returns
/// something or the message ends (or does not read that far).
fn walk_records<R>(
    packet: &[u8],
    mut visit: impl FnMut(usize, usize, Option<usize>) -> Option<R>,
) -> Option<R> {
    let count = |i: usize| usize::from(u16::from_be_bytes([packet[i], packet[i + 1]]));
    let questions = count(4);
    let records = count(6) + count(8) + count(10);
    // Where the name at `at` ends in the message: after its root label or first pointer.
    let name_end = |mut at: usize| -> Option<usize> {
        loop {
            let len = *packet.get(at)?;
            match len {
                0 => return Some(at + 1),
                1..=63 => at += 1 + usize::from(len),
                0xC0.. => return Some(at + 2),
                _ => return None,
            }
        }
    };
    let mut at = 12;
    for i in 0..questions + records {
        let name = at;
        at = name_end(name)?;
        if i < questions {
            if let Some(found) = visit(i, name, None) {
                return Some(found);
            }
            at += 4;
            continue;
        }
        let fixed = packet.get(at..at + 10)?;
        if let Some(found) = visit(i, name, Some(at)) {
            return Some(found);
        }
        at += 10 + usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
    }
    None
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
    /// The bytes of records a UDP answer may take: the largest response the client
    /// takes, less the room a signed query's answer keeps for its TSIG record.
    pub(crate) fn udp_limit(&self) -> usize {
        let limit = match &self.edns {
            Some(edns) => usize::from(
                edns.max_payload
                    .clamp(CLASSIC_UDP_SIZE as u16, EDNS_UDP_SIZE),
            ),
            None => CLASSIC_UDP_SIZE,
        };
        limit.saturating_sub(self.signer.as_deref().map_or(0, tsig::Signer::room))
    }

    /// The bytes of records a TCP answer may take: a message's 65,535, less the room a
    /// signed query's answer keeps for its TSIG record.
    pub(crate) fn tcp_limit(&self) -> usize {
        usize::from(u16::MAX) - self.signer.as_deref().map_or(0, tsig::Signer::room)
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
    encode_within(message, u16::MAX, limit)
}

/// Encodes `message` for TCP in at most `max` bytes (a signed answer keeps room for its
/// TSIG record): records that do not fit are left out whole, with TC set, as
/// [`to_wire`] leaves out those past 65,535 bytes.
pub(crate) fn encode_tcp(message: &Message, max: usize) -> Vec<u8> {
    encode_within(message, u16::try_from(max).unwrap_or(u16::MAX), None)
}

/// [`encode`] within `max` bytes.
fn encode_within(message: &Message, max: u16, limit: Option<usize>) -> Vec<u8> {
    let bytes = match to_wire_within(message, max) {
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

/// `message` in at most 65,535 bytes, every owner name after the first written as a
/// pointer to an earlier one (RFC 1035 §4.1.4). hickory's own encoding compresses only a
/// message's first 120 names, so a large answer (hundreds of records of one RRset)
/// would grow by its owner name's length per record, past what a TCP message can hold.
/// Records that do not fit are left out whole, counted out of the header, with TC set
/// (RFC 2181 §9); hickory's would leave the last one's bytes after the message.
pub(crate) fn to_wire(message: &Message) -> Result<Vec<u8>, ProtoError> {
    to_wire_within(message, u16::MAX)
}

/// [`to_wire`] in at most `max` bytes.
fn to_wire_within(message: &Message, max: u16) -> Result<Vec<u8>, ProtoError> {
    let mut buffer = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut buffer);
    encoder.set_max_size(max);
    let header = encoder.place::<Header>()?;
    let mut counts = HeaderCounts {
        queries: u16::try_from(message.queries.len())
            .map_err(|_| ProtoError::Message("too many questions"))?,
        ..HeaderCounts::default()
    };
    encoder.emit_all(message.queries.iter())?;
    // Room kept for the OPT and TSIG records, which close a message even when it is
    // truncated.
    if message.edns.is_some() || message.signature.is_some() {
        encoder.set_max_size(max.saturating_sub(TRAILER_ROOM));
    }
    let mut owners = Vec::new();
    let mut full = true;
    for (records, count) in [
        (&message.answers, &mut counts.answers),
        (&message.authorities, &mut counts.authorities),
        (&message.additionals, &mut counts.additionals),
    ] {
        if full {
            (*count, full) = emit_section(records, &mut owners, &mut encoder)?;
        }
    }
    encoder.set_max_size(max);
    let opt = message.edns.as_ref().map(|edns| {
        let mut edns = edns.clone();
        edns.set_rcode_high(message.metadata.response_code.high());
        Record::from(&edns)
    });
    let mut truncated = !full;
    let (count, fit) = emit_section(opt.as_slice(), &mut owners, &mut encoder)?;
    counts.additionals += count;
    truncated |= !fit;
    if let Some(signature) = &message.signature {
        match emit_whole(&mut encoder, |e| signature.emit(e))? {
            true => counts.additionals += 1,
            false => truncated = true,
        }
    }
    let mut metadata = message.metadata;
    metadata.truncation |= truncated;
    header.replace(&mut encoder, Header { metadata, counts })?;
    Ok(buffer)
}

/// Writes as many of `records` as fit, whole: how many, and whether all did.
fn emit_section<'m>(
    records: &'m [Record],
    owners: &mut Vec<(&'m Name, u16)>,
    encoder: &mut BinEncoder<'_>,
) -> ProtoResult<(u16, bool)> {
    for (count, record) in records.iter().enumerate() {
        let known = owners.len();
        if !emit_whole(encoder, |e| emit_record(record, owners, e))? {
            owners.truncate(known);
            return Ok((u16::try_from(count).unwrap_or(u16::MAX), false));
        }
    }
    let count =
        u16::try_from(records.len()).map_err(|_| ProtoError::Message("too many records"))?;
    Ok((count, true))
}

/// Runs `emit`; if what it writes does not fit, takes it all back: whether it fit.
fn emit_whole(
    encoder: &mut BinEncoder<'_>,
    emit: impl FnOnce(&mut BinEncoder<'_>) -> ProtoResult<()>,
) -> ProtoResult<bool> {
    let start = encoder.offset();
    match emit(encoder) {
        Ok(()) => Ok(true),
        Err(ProtoError::MaxBufferSizeExceeded(_)) => {
            encoder.set_offset(start);
            encoder.trim();
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Bytes a message's sections leave for its OPT and TSIG records.
pub(crate) const TRAILER_ROOM: u16 = 512;

/// The owner names written in full so far, and where: at most this many are looked up.
const OWNERS_KEPT: usize = 32;

/// Writes `record` as hickory does, its owner a pointer when an earlier record had it.
fn emit_record<'m>(
    record: &'m Record,
    owners: &mut Vec<(&'m Name, u16)>,
    encoder: &mut BinEncoder<'_>,
) -> ProtoResult<()> {
    match owners
        .iter()
        .find(|(name, _)| same_name(name, &record.name))
    {
        Some(&(_, at)) => encoder.emit_u16(0xC000 | at)?,
        None => {
            let at = encoder.offset();
            record.name.emit(encoder)?;
            // Where the name's labels are: hickory may have written it as a pointer.
            let written = encoder.slice_of(at, encoder.offset());
            let target = match written {
                [hi, lo] if hi & 0xC0 == 0xC0 => usize::from(u16::from_be_bytes([hi & 0x3F, *lo])),
                _ => at,
            };
            if owners.len() < OWNERS_KEPT
                && let Ok(target) = u16::try_from(target)
                && target <= 0x3FFF
            {
                owners.push((&record.name, target));
            }
        }
    }
    record.record_type().emit(encoder)?;
    record.dns_class.emit(encoder)?;
    encoder.emit_u32(record.ttl)?;
    let length = encoder.place::<u16>()?;
    match &record.data {
        // The RDATA kept as bytes (the DNSSEC types of a zone, see `zone::dnssec`), in
        // one piece: hickory writes it a byte at a time.
        RData::Unknown { rdata, .. } => encoder.emit_vec(&rdata.anything)?,
        data if !data.is_update() => data.emit(encoder)?,
        _ => {}
    }
    let len = encoder.len_since_place(&length);
    length.replace(encoder, u16::try_from(len).unwrap_or(u16::MAX))
}

/// Whether `a` and `b` are one name, ignoring ASCII case, comparing from the first label:
/// names of one zone share their last labels, and hickory's `==` compares from there.
pub(crate) fn same_name(a: &Name, b: &Name) -> bool {
    if a.is_fqdn() != b.is_fqdn() || a.len() != b.len() {
        return false;
    }
    let (mut a, mut b) = (a.iter(), b.iter());
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(y) => {}
            _ => return false,
        }
    }
}

/// A domain name in its presentation form (RFC 1035 section 5.1), as zone files, dig, NSD
/// and BIND write it: printable ASCII as is, `. ; \ ( ) " @ $` after a backslash, and any
/// other octet as `\DDD`, three *decimal* digits. hickory-proto's `Display` writes octal
/// there (a space as `\040`), which no tool reads back as the same name.
#[derive(Debug, Clone, Copy)]
pub struct NameText<'a>(pub &'a hickory_proto::rr::Name);

impl std::fmt::Display for NameText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write as _;
        let plain = |b: u8| b.is_ascii_graphic() && !b".;\\()\"@$".contains(&b);
        let mut labels = self.0.iter().peekable();
        if labels.peek().is_none() {
            return f.write_char('.');
        }
        while let Some(label) = labels.next() {
            if label.iter().all(|&b| plain(b)) {
                f.write_str(std::str::from_utf8(label).map_err(|_| std::fmt::Error)?)?;
            } else {
                for &b in label {
                    if plain(b) {
                        f.write_char(char::from(b))?;
                    } else if b.is_ascii_graphic() {
                        write!(f, "\\{}", char::from(b))?;
                    } else {
                        write!(f, "\\{b:03}")?;
                    }
                }
            }
            if labels.peek().is_some() || self.0.is_fqdn() {
                f.write_char('.')?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hickory_proto::rr::{Name, RecordType};

    #[test]
    fn a_name_is_written_with_decimal_escapes_as_rfc_1035_reads_them() {
        let labels: [&[u8]; 4] = [b"a b\xc8c", b"x.y", b"*", b"t"];
        let name = Name::from_labels(labels).unwrap();
        assert_eq!(NameText(&name).to_string(), "a\\032b\\200c.x\\.y.*.t.");
        assert_eq!(NameText(&Name::root()).to_string(), ".");
        let plain = Name::from_ascii("WWW.Example.test.").unwrap();
        assert_eq!(NameText(&plain).to_string(), "WWW.Example.test.");
    }

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
    fn a_compression_pointer_into_the_header_is_formerr() {
        // The question's name a pointer to offset 2 (the flags), with an OPT record.
        let mut packet = query(0x77, "a.test.", RecordType::A)[..12].to_vec();
        packet[11] = 1;
        packet.extend_from_slice(&[0xc0, 0x02, 0, 1, 0, 1]);
        packet.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        let Parsed::Error {
            rcode, response, ..
        } = parse(&packet, false)
        else {
            panic!("answered a name made of the header's bytes")
        };
        assert_eq!(rcode, ResponseCode::FormErr);
        let decoded = Message::from_vec(&encode(&response, None)).unwrap();
        assert!(decoded.queries.is_empty(), "no question echoed");
        assert!(decoded.edns.is_some(), "the OPT answered");
        // A pointer to the question's name, as a record's owner, is read.
        let mut fine = query(0x78, "a.test.", RecordType::A);
        fine[11] = 1;
        fine.extend_from_slice(&[0xc0, 12, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        assert!(!points_into_header(&fine));
    }

    #[test]
    fn an_edns_option_running_past_its_opt_record_is_formerr_whichever_option_it_is() {
        // The question, then an OPT record (root, type 41, size 1232, no flags) with `data`.
        let with_options = |data: &[u8]| {
            let mut packet = query(0x4242, "www.ex.test.", RecordType::A);
            packet[11] = 1;
            packet.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
            packet.extend_from_slice(&(data.len() as u16).to_be_bytes());
            packet.extend_from_slice(data);
            packet
        };
        let rcode = |packet: &[u8]| match parse(packet, false) {
            Parsed::Query(_) => ResponseCode::NoError,
            Parsed::Error { rcode, .. } => rcode,
            Parsed::Drop(why) => panic!("dropped: {why}"),
        };
        // hickory reads these and drops the option, or what follows the last (NOERROR
        // before): an unknown option and NSID each saying more bytes than are left, and
        // an empty NSID followed by two bytes, a part of an option's code and length.
        for data in [
            &b"\x12\x68\x00\x03ab"[..],
            b"\x00\x03\x00\x04ab",
            b"\x00\x03\x00\x00\x00\x0a",
        ] {
            let Parsed::Error { rcode, why, .. } = parse(&with_options(data), false) else {
                panic!("answered {data:?}")
            };
            assert_eq!(rcode, ResponseCode::FormErr, "{data:?}");
            assert!(
                why.contains("EDNS option") || why.contains("after the last"),
                "{data:?}: {why}"
            );
        }
        // These hickory refuses itself: COOKIE saying more bytes than the record has,
        // and three bytes of an option's head.
        // Their FORMERR carries an OPT record too (RFC 6891 section 7), DO copied.
        for data in [&b"\x00\x0a\x00\x08abc"[..], b"\x00\x0a\x00"] {
            let mut packet = with_options(data);
            assert_eq!(rcode(&packet), ResponseCode::FormErr, "{data:?}");
            let flags = packet.len() - data.len() - 4;
            packet[flags] = 0x80;
            let Parsed::Error { response, .. } = parse(&packet, false) else {
                panic!("answered {data:?}")
            };
            let decoded = Message::from_vec(&encode(&response, None)).unwrap();
            let edns = decoded.edns.expect("an OPT record in the FORMERR");
            assert!(edns.flags().dnssec_ok, "{data:?}");
            assert_eq!(edns.max_payload(), EDNS_UDP_SIZE);
        }
        // Options that fill the data exactly are read.
        assert_eq!(
            rcode(&with_options(b"\x00\x03\x00\x00\x12\x68\x00\x02ab")),
            ResponseCode::NoError
        );
        assert_eq!(rcode(&with_options(b"")), ResponseCode::NoError);
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

    /// An answer to `big.example.test./TXT` with `n` records of 60 bytes.
    fn txt_answer(n: usize) -> Message {
        use hickory_proto::rr::rdata::TXT;
        use hickory_proto::rr::{RData, Record};
        let name = Name::from_ascii("big.example.test.").unwrap();
        let mut m = Message::response(9, OpCode::Query);
        m.queries.push(Query::query(name.clone(), RecordType::TXT));
        for i in 0..n {
            let text = format!("{i:04} {}", "t".repeat(55));
            m.answers.push(Record::from_rdata(
                name.clone(),
                300,
                RData::TXT(TXT::new(vec![text])),
            ));
        }
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        m.edns = Some(edns);
        m
    }

    #[test]
    fn every_record_of_a_large_rrset_has_its_owner_compressed() {
        // 800 records of 73 bytes each: 58 KB, where hickory's encoding (which stops
        // compressing after 120 names) needs more than 65,535 bytes.
        let answer = txt_answer(800);
        let bytes = encode(&answer, Some(usize::from(u16::MAX)));
        assert!(bytes.len() < 60_000, "{} bytes", bytes.len());
        let decoded = Message::from_vec(&bytes).unwrap();
        assert_eq!(decoded.answers.len(), 800);
        assert!(!decoded.metadata.truncation);
        assert_eq!(decoded.answers, answer.answers);
        assert!(decoded.edns.is_some());
    }

    #[test]
    fn records_past_65535_bytes_are_left_out_whole_with_tc_set() {
        let answer = txt_answer(1000);
        let bytes = encode(&answer, Some(usize::from(u16::MAX)));
        assert!(bytes.len() <= usize::from(u16::MAX));
        let decoded = Message::from_vec(&bytes).unwrap();
        assert!(decoded.metadata.truncation);
        let fit = decoded.answers.len();
        assert!((800..1000).contains(&fit), "{fit} records");
        assert_eq!(decoded.answers[..], answer.answers[..fit]);
        assert!(decoded.edns.is_some(), "the OPT record closes it still");
        // Nothing of the record left out follows the message: encoding what was
        // decoded gives the same bytes.
        assert_eq!(to_wire(&decoded).unwrap(), bytes);
    }

    #[test]
    fn a_tcp_answer_within_less_than_65535_bytes_leaves_records_out_whole() {
        // What a signed query's TCP answer gets: room kept for its TSIG record.
        let answer = txt_answer(1000);
        let max = usize::from(u16::MAX) - 300;
        let bytes = encode_tcp(&answer, max);
        assert!(bytes.len() <= max, "{} bytes", bytes.len());
        let decoded = Message::from_vec(&bytes).unwrap();
        assert!(decoded.metadata.truncation);
        let fit = decoded.answers.len();
        assert!(
            (790..1000).contains(&fit),
            "{fit} records, not the question alone"
        );
        assert_eq!(decoded.answers[..], answer.answers[..fit]);
        assert!(decoded.edns.is_some());
        // Everything fits: the same bytes as without a bound.
        let small = txt_answer(10);
        assert_eq!(encode_tcp(&small, max), encode(&small, None));
    }

    #[test]
    fn opaque_rdata_is_written_as_hickory_writes_it_and_owners_match_without_case() {
        use hickory_proto::rr::rdata::NULL;
        use hickory_proto::rr::{RData, Record};
        let mut m = Message::response(3, OpCode::Query);
        let owner = Name::from_ascii("x.Example.test.").unwrap();
        m.queries.push(Query::query(owner.clone(), RecordType::A));
        // An RRSIG as the zone keeps it, opaque, twice.
        let rdata = RData::Unknown {
            code: RecordType::RRSIG,
            rdata: NULL::with((0..=255).collect()),
        };
        m.answers
            .push(Record::from_rdata(owner.clone(), 60, rdata.clone()));
        m.answers.push(Record::from_rdata(owner, 60, rdata));
        assert_eq!(to_wire(&m).unwrap(), m.to_vec().unwrap());

        let name = |n: &str| Name::from_ascii(n).unwrap();
        assert!(same_name(&name("a.B.c."), &name("A.b.C.")));
        assert!(
            !same_name(&name("ab.c."), &name("a.bc.")),
            "one length, other labels"
        );
        assert!(
            !same_name(&name("a.b.c."), &name("a.b.c")),
            "one absolute, one not"
        );
        assert!(!same_name(&name("a.b.c."), &name("a.b.d.")));
    }
}
