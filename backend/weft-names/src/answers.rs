//! Encoded answers from the zones and from the forwarding cache, kept by question, so
//! that a question asked again over UDP is answered by copying the bytes and setting the
//! id; a forwarded answer's TTLs are lowered by the time it has been kept ([`Aging`]),
//! and it is served only until the first of them runs out (then the cache answers, or the
//! upstream).
//!
//! Only a plain query is looked up or kept: opcode QUERY, one question of class IN, no
//! other records but an OPT of version 0 whose options do not change the answer (all but
//! the Client Subnet: see [`crate::edns::keeps_answer`]). Such a query has no TSIG, so
//! its answer depends on the question (as sent: the case of the name is part of the key,
//! and the answer echoes it), RD, CD, DO and the size the client takes, and on nothing of
//! the client but the NSID and COOKIE options of its answer's OPT: those are left out of
//! the answer kept and written into each copy ([`patched`]), the server cookie made for
//! that client then. A reload hands the answers of the zones that did not change to the
//! new server (`server::carry`). Rate limiting is the caller's, for every answer, kept or
//! not.

use std::collections::HashMap;
use std::ops::Range;
use std::time::Duration;

use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::edns::{self, OptionsAnswered, WireOptions};
use crate::wire::{CLASSIC_UDP_SIZE, EDNS_UDP_SIZE};

/// Answers kept at most; when full, the cache starts again empty, which bounds it without
/// bookkeeping per hit.
pub(crate) const CAPACITY: usize = 4096;

/// A kept answer.
pub(crate) struct Kept {
    /// The encoded answer, with the id of the query that first asked, and no NSID or
    /// COOKIE option.
    pub(crate) bytes: Box<[u8]>,
    /// Where the OPT record's RDLENGTH is in `bytes`, its data running to their end;
    /// `None` without an OPT.
    opt: Option<u16>,
    /// The question, for the counters and the query log.
    pub(crate) query: Query,
    /// Its response code.
    pub(crate) rcode: ResponseCode,
    /// `None` for an answer from a zone; a forwarded one's TTLs count down.
    pub(crate) aging: Option<Aging>,
}

impl Kept {
    /// The answer `encoded` to `query` to keep, with `aging` when it is forwarded:
    /// without the NSID and COOKIE options of its OPT, which are made for each query.
    /// `None` when its records cannot be walked or its OPT is not the last of them, and
    /// when `shrunk` (truncated, or sections left out to fit) with options
    /// left out: without them, it might have fit.
    pub(crate) fn new(
        encoded: &[u8],
        query: Query,
        rcode: ResponseCode,
        aging: Option<Aging>,
        shrunk: bool,
    ) -> Option<Self> {
        let walked = walk(encoded)?;
        let mut bytes = encoded.to_vec();
        let opt = match walked.opt {
            Some(at) => {
                let kept = without_options_made_per_query(&encoded[at + 2..]);
                if shrunk && kept.len() + at + 2 != encoded.len() {
                    return None;
                }
                bytes.truncate(at);
                bytes.extend_from_slice(&(kept.len() as u16).to_be_bytes());
                bytes.extend_from_slice(&kept);
                Some(u16::try_from(at).ok()?)
            }
            None => None,
        };
        Some(Self {
            bytes: bytes.into_boxed_slice(),
            opt,
            query,
            rcode,
            aging,
        })
    }
}

/// The options of `rdata` (an answer's OPT data) but those made for each query.
fn without_options_made_per_query(rdata: &[u8]) -> Vec<u8> {
    let mut kept = Vec::new();
    for (code, data) in WireOptions(rdata) {
        if !edns::made_per_query(code) {
            edns::write_option(&mut kept, code, data);
        }
    }
    kept
}

/// How a kept forwarded answer ages.
pub(crate) struct Aging {
    /// When it was kept, on the thread's clock.
    kept: Duration,
    /// Seconds it may be served: its lowest TTL when kept.
    lifetime: u32,
    /// Where each record's TTL is in the bytes (OPT's is not a TTL).
    ttls: Box<[u16]>,
}

impl Aging {
    /// How `bytes`, an encoded forwarded answer, ages from `now`; `None` when it is
    /// truncated, has no record, or cannot be walked.
    pub(crate) fn of(bytes: &[u8], now: Duration) -> Option<Self> {
        if bytes.get(2)? & 0x02 != 0 {
            return None;
        }
        let ttls = walk(bytes)?.ttls;
        let lifetime = ttls.iter().map(|&at| ttl_at(bytes, at)).min()?;
        Some(Self {
            kept: now,
            lifetime,
            ttls: ttls.into_boxed_slice(),
        })
    }
}

fn ttl_at(bytes: &[u8], at: u16) -> u32 {
    let at = usize::from(at);
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Where the records of an encoded message are.
struct Walked {
    /// The offset of each record's TTL, but the OPT's.
    ttls: Vec<u16>,
    /// The offset of the OPT record's RDLENGTH, when it is the last record.
    opt: Option<usize>,
}

/// The records of the encoded message `bytes`, with one question; `None` when they run
/// past its end or short of it, or an OPT record is not the last.
fn walk(bytes: &[u8]) -> Option<Walked> {
    let count = |i: usize| usize::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
    if bytes.len() < 12 || count(4) != 1 {
        return None;
    }
    let records = count(6) + count(8) + count(10);
    let mut at = skip_name(bytes, 12)? + 4;
    let mut walked = Walked {
        ttls: Vec::with_capacity(records),
        opt: None,
    };
    for _ in 0..records {
        if walked.opt.is_some() {
            return None;
        }
        at = skip_name(bytes, at)?;
        let fixed = bytes.get(at..at + 10)?;
        if u16::from_be_bytes([fixed[0], fixed[1]]) == u16::from(RecordType::OPT) {
            walked.opt = Some(at + 8);
        } else {
            walked.ttls.push(u16::try_from(at + 4).ok()?);
        }
        at += 10 + usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
    }
    (at == bytes.len()).then_some(walked)
}

/// The offset past the (possibly compressed) name at `at`.
fn skip_name(bytes: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *bytes.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xC0 == 0xC0 => return Some(at + 2),
            l if l <= 63 => at += 1 + usize::from(l),
            _ => return None,
        }
    }
}

/// The cache, with the key of the query being answered.
#[derive(Default)]
pub(crate) struct Answers {
    kept: HashMap<Box<[u8]>, Kept>,
    /// The key of the last query [`Answers::prepare`]d; empty when it has none.
    key: Vec<u8>,
}

/// What a plain query asks beyond its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plain {
    /// Where its OPT's options are in the packet (empty without them).
    pub(crate) options: Range<usize>,
    /// The size its answer may take.
    pub(crate) limit: usize,
}

impl Answers {
    /// Takes the key of `packet`, if it is a plain query, and says what else it asks.
    pub(crate) fn prepare(&mut self, packet: &[u8]) -> Option<Plain> {
        self.key.clear();
        let plain = key_of(packet, &mut self.key);
        if plain.is_none() {
            self.key.clear();
        }
        plain
    }

    /// The answer kept for the query prepared last, at `now` (read only when a
    /// forwarded answer is found); `None` for a forwarded one whose TTL ran out. That one
    /// stays until the fresh answer from the cache takes its place (or the cache starts
    /// again empty): one lookup a query, not two.
    pub(crate) fn get(&self, now: impl FnOnce() -> Duration) -> Option<&Kept> {
        if self.key.is_empty() {
            return None;
        }
        let kept = self.kept.get(self.key.as_slice())?;
        match &kept.aging {
            Some(aging)
                if now().saturating_sub(aging.kept).as_secs() >= u64::from(aging.lifetime) =>
            {
                None
            }
            _ => Some(kept),
        }
    }

    /// Whether the last query prepared was a plain one (its answer may be kept).
    pub(crate) fn prepared(&self) -> bool {
        !self.key.is_empty()
    }

    /// Keeps `answer` for the query prepared last, if it was a plain one.
    pub(crate) fn keep(&mut self, answer: Kept) {
        if self.key.is_empty() {
            return;
        }
        if self.kept.len() >= CAPACITY {
            self.kept.clear();
        }
        let key = std::mem::take(&mut self.key).into_boxed_slice();
        self.kept.insert(key, answer);
    }
}

impl Answers {
    /// Every answer kept, leaving none.
    pub(crate) fn take(&mut self) -> HashMap<Box<[u8]>, Kept> {
        std::mem::take(&mut self.kept)
    }

    /// Keeps those of `answers` whose question `keep` accepts.
    pub(crate) fn adopt(
        &mut self,
        mut answers: HashMap<Box<[u8]>, Kept>,
        keep: impl Fn(&hickory_proto::op::Query) -> bool,
    ) {
        answers.retain(|_, kept| keep(&kept.query));
        self.kept = answers;
    }
}

/// `packet` answered from the kept `answer` at `now`: its bytes with the query's id, a
/// forwarded answer's TTLs lowered by the whole seconds it has been kept, and `options`
/// added to its OPT record (an answer to a query without one has none to add).
pub(crate) fn patched(
    answer: &Kept,
    packet: &[u8],
    now: Duration,
    options: &OptionsAnswered,
) -> Vec<u8> {
    let extra = options.wire_len();
    let mut bytes = Vec::with_capacity(answer.bytes.len() + extra);
    bytes.extend_from_slice(&answer.bytes);
    bytes[..2].copy_from_slice(&packet[..2]);
    if let (Some(opt), true) = (answer.opt, extra > 0) {
        let at = usize::from(opt);
        let len = u16::from_be_bytes([bytes[at], bytes[at + 1]]) as usize + extra;
        bytes[at..at + 2].copy_from_slice(&(len as u16).to_be_bytes());
        options.write_to(&mut bytes);
    }
    if let Some(aging) = &answer.aging {
        let age = now.saturating_sub(aging.kept).as_secs();
        let age = u32::try_from(age).unwrap_or(u32::MAX);
        for &at in &aging.ttls {
            let ttl = ttl_at(&bytes, at).saturating_sub(age);
            let at = usize::from(at);
            bytes[at..at + 4].copy_from_slice(&ttl.to_be_bytes());
        }
    }
    bytes
}

/// Writes the key of `packet` to `key` when it is a plain query (see the module): the
/// flags an answer copies (RD, CD), whether there is an OPT and then its DO bit and the
/// size the answer may take, and the question as sent.
fn key_of(packet: &[u8], key: &mut Vec<u8>) -> Option<Plain> {
    let header = packet.get(..12)?;
    let field = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    // QR, opcode, AA and TC clear; RD is copied; AD is not looked at; Z and the rcode clear.
    if header[2] & 0xFE != 0 || header[3] & 0xCF != 0 {
        return None;
    }
    let (questions, answers, authority, additional) = (field(4), field(6), field(8), field(10));
    if questions != 1 || answers != 0 || authority != 0 || additional > 1 {
        return None;
    }
    let mut at = 12;
    loop {
        let len = *packet.get(at)?;
        at += 1;
        if len == 0 {
            break;
        }
        // A pointer or an extended label type is left to the full parser.
        if len > 63 {
            return None;
        }
        at += usize::from(len);
        if at - 12 > 255 {
            return None;
        }
    }
    let tail = packet.get(at..at + 4)?;
    let qtype = RecordType::from(u16::from_be_bytes([tail[0], tail[1]]));
    let class = u16::from_be_bytes([tail[2], tail[3]]);
    if class != 1 || matches!(qtype, RecordType::AXFR | RecordType::IXFR | RecordType::OPT) {
        return None;
    }
    let question = &packet[12..at + 4];
    let rest = &packet[at + 4..];
    key.push(header[2] & 0x01);
    key.push(header[3] & 0x10);
    let plain = match (additional, rest) {
        (0, []) => {
            key.push(0);
            Plain {
                options: 0..0,
                limit: CLASSIC_UDP_SIZE,
            }
        }
        // The root name, OPT, the size, extended rcode 0, version 0, flags, options.
        (
            1,
            [
                0,
                0,
                41,
                size_hi,
                size_lo,
                0,
                0,
                flags_hi,
                flags_lo,
                len_hi,
                len_lo,
                options @ ..,
            ],
        ) => {
            if flags_hi & 0x7F != 0 || *flags_lo != 0 {
                return None;
            }
            if usize::from(u16::from_be_bytes([*len_hi, *len_lo])) != options.len()
                || !options_keep_answer(options)
            {
                return None;
            }
            let size = u16::from_be_bytes([*size_hi, *size_lo])
                .clamp(CLASSIC_UDP_SIZE as u16, EDNS_UDP_SIZE);
            key.push(1 | (flags_hi & 0x80));
            key.extend_from_slice(&size.to_be_bytes());
            Plain {
                options: packet.len() - options.len()..packet.len(),
                limit: usize::from(size),
            }
        }
        _ => return None,
    };
    key.extend_from_slice(question);
    Some(plain)
}

/// Whether the OPT data `rdata` is whole options, each one that leaves the answer as it
/// is ([`edns::keeps_answer`]).
fn options_keep_answer(mut rdata: &[u8]) -> bool {
    while let [c0, c1, l0, l1, rest @ ..] = rdata {
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        if rest.len() < len || !edns::keeps_answer(u16::from_be_bytes([*c0, *c1])) {
            return false;
        }
        rdata = &rest[len..];
    }
    rdata.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tests::query;

    fn key(packet: &[u8]) -> Option<Vec<u8>> {
        let mut k = Vec::new();
        key_of(packet, &mut k).map(|_| k)
    }

    #[test]
    fn only_plain_queries_have_a_key_and_it_follows_what_the_answer_copies() {
        let q = query(1, "www.example.test.", RecordType::A);
        let k = key(&q).expect("a plain query");
        assert_eq!(
            key(&query(2, "www.example.test.", RecordType::A)),
            Some(k.clone())
        );
        assert_ne!(
            key(&query(1, "WWW.example.test.", RecordType::A)),
            Some(k.clone())
        );
        assert_ne!(
            key(&query(1, "www.example.test.", RecordType::AAAA)),
            Some(k.clone())
        );
        let mut no_rd = q.clone();
        no_rd[2] &= !0x01;
        assert_ne!(key(&no_rd), Some(k.clone()));
        let mut response = q.clone();
        response[2] |= 0x80;
        assert_eq!(key(&response), None);
        let mut notify = q.clone();
        notify[2] |= 4 << 3;
        assert_eq!(key(&notify), None);
        assert_eq!(key(&query(1, "example.test.", RecordType::AXFR)), None);
        let mut trailing = q.clone();
        trailing.push(0);
        assert_eq!(key(&trailing), None);
        assert_eq!(key(&q[..q.len() - 1]), None);

        let mut opt = q.clone();
        opt[11] = 1;
        opt.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 0]);
        let with_do = key(&opt).expect("an OPT without options");
        assert_ne!(with_do, k);
        let mut big = opt.clone();
        big[q.len() + 3] = 0x20;
        assert_eq!(
            key(&big),
            Some(with_do.clone()),
            "4096 and 8192 take 1232 alike"
        );
        // Options leave the key as it is, but a Client Subnet, and they must be whole.
        let with_option = |code: u8, data: &[u8]| {
            let mut packet = opt.clone();
            let len = 4 + data.len();
            packet[q.len() + 9..q.len() + 11].copy_from_slice(&(len as u16).to_be_bytes());
            packet.extend_from_slice(&[0, code, 0, data.len() as u8]);
            packet.extend_from_slice(data);
            packet
        };
        assert_eq!(
            key(&with_option(10, &[1; 8])),
            Some(with_do.clone()),
            "a cookie"
        );
        assert_eq!(key(&with_option(3, &[])), Some(with_do.clone()), "NSID");
        assert_eq!(
            key(&with_option(12, &[0; 9])),
            Some(with_do.clone()),
            "padding"
        );
        assert_eq!(
            key(&with_option(8, &[0, 1, 24, 0, 192, 0, 2])),
            None,
            "a subnet"
        );
        let mut overrun = with_option(10, &[1; 8]);
        overrun.pop();
        overrun[q.len() + 10] -= 1;
        assert_eq!(key(&overrun), None, "an option longer than the OPT's data");
        let mut v1 = opt;
        v1[q.len() + 6] = 1;
        assert_eq!(key(&v1), None);
    }
}
