//! TSIG (RFC 8945): messages signed with a secret shared with a peer, which is how a
//! secondary proves to its primary that it may transfer a zone, and the primary proves
//! that the zone came from it.
//!
//! A signed query is verified against the service's `tsig_keys` before anything else
//! reads it (section 5.2): a key the service does not hold gets NOTAUTH with the TSIG
//! error BADKEY, a MAC that does not verify BADSIG (both unsigned, section 5.3.2: the
//! server cannot sign with a key it could not use), a time outside the fudge BADTIME
//! (signed, with the server's time in Other Data), a MAC cut short BADTRUNC (signed:
//! this server takes full-length MACs only). A query that verifies has its answer signed
//! with the same key, the query's MAC the first thing the answer's covers (section
//! 4.3.2), and each message of a zone transfer after the first signed over the MAC of the
//! one before and the message alone with its timers (section 5.3.1: every message is
//! signed, which it allows). Every answer to a query that verified is signed, errors
//! found after the check included; a NOTIFY this server sends is signed, and its answer
//! taken only when it verifies; so is a query a secondary zone's transfer sends, and each
//! message of the primary's answer is verified ([`Verifier`]), unsigned ones between
//! signed ones as section 5.3.1 allows.
//!
//! Left out: the cache of the last Time Signed per key that section 5.2.3 suggests
//! (SHOULD) against a request replayed within its fudge (a replayed transfer request gets
//! the zone its sender could have asked for); and section 5.5's forwarding of a message
//! signed with an unknown key unchanged, which concerns servers that relay queries: this
//! one asks upstreams its own.
//!
//! The MAC is HMAC (RFC 2104) with SHA-1, SHA-256, SHA-384 or SHA-512 (the algorithms
//! RFC 8945 section 6 lists as mandatory or recommended, but HMAC-MD5, which it
//! deprecates, and the truncated forms), from ring, which rustls already links.

use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Header, Message, Query};
use hickory_proto::rr::rdata::TSIG;
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError, make_tsig_record};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use ring::hmac;

/// The fudge this server puts in what it signs: the seconds either side of its Time
/// Signed the peer accepts (section 10 recommends 300).
const FUDGE: u16 = 300;

/// A key shared with peers: its name, algorithm and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    /// Its name, lower-cased (the name in the TSIG record's owner).
    name: Name,
    algorithm: Algorithm,
    secret: Vec<u8>,
}

/// The secret is left out: a key is shown (in `check`'s output, in logs) by name.
impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name.to_ascii())
            .field("algorithm", &self.algorithm.text())
            .finish_non_exhaustive()
    }
}

/// The HMAC algorithms a key may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    HmacSha1,
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl Algorithm {
    const ALL: [Algorithm; 4] = [
        Self::HmacSha1,
        Self::HmacSha256,
        Self::HmacSha384,
        Self::HmacSha512,
    ];

    /// Its name, as in a TSIG record and in the configuration (BIND's and NSD's).
    fn text(self) -> &'static str {
        match self {
            Self::HmacSha1 => "hmac-sha1",
            Self::HmacSha256 => "hmac-sha256",
            Self::HmacSha384 => "hmac-sha384",
            Self::HmacSha512 => "hmac-sha512",
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Self::HmacSha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Self::HmacSha256 => hmac::HMAC_SHA256,
            Self::HmacSha384 => hmac::HMAC_SHA384,
            Self::HmacSha512 => hmac::HMAC_SHA512,
        }
    }

    /// Its MAC's length in bytes.
    fn mac_len(self) -> usize {
        self.hmac().digest_algorithm().output_len()
    }

    /// It, as a TSIG record names it.
    fn record(self) -> TsigAlgorithm {
        match self {
            Self::HmacSha1 => TsigAlgorithm::HmacSha1,
            Self::HmacSha256 => TsigAlgorithm::HmacSha256,
            Self::HmacSha384 => TsigAlgorithm::HmacSha384,
            Self::HmacSha512 => TsigAlgorithm::HmacSha512,
        }
    }

    /// The algorithm named `name` in a TSIG record (ignoring case), if it is one of these.
    fn of_record(name: &TsigAlgorithm) -> Option<Self> {
        let name = name.to_name().to_ascii();
        let name = name.trim_end_matches('.');
        Self::ALL
            .into_iter()
            .find(|a| a.text().eq_ignore_ascii_case(name))
    }
}

impl TsigKey {
    /// The key `name` of `algorithm` (`hmac-sha256`, say) with the secret `base64`, as
    /// `tsig-keygen` (BIND) and `nsd-control-setup`'s keys write it; an error says what
    /// is wrong, and never repeats the secret.
    pub fn new(name: &str, algorithm: &str, base64: &str) -> Result<Self, String> {
        let parsed = Name::from_ascii(name)
            .map_err(|e| format!("key name {name:?} is not a domain name: {e}"))?;
        let mut fqdn = parsed.to_lowercase();
        fqdn.set_fqdn(true);
        // `""` reads as the root too, once absolute.
        if fqdn.is_root() {
            return Err(
                "a key's name is a domain name such as \"xfr.example.\", not the root".into(),
            );
        }
        let algorithm = Algorithm::ALL
            .into_iter()
            .find(|a| a.text().eq_ignore_ascii_case(algorithm))
            .ok_or_else(|| {
                let known: Vec<_> = Algorithm::ALL.iter().map(|a| a.text()).collect();
                match algorithm.to_ascii_lowercase().as_str() {
                    "hmac-md5" | "hmac-md5.sig-alg.reg.int" => format!(
                        "algorithm {algorithm:?} is deprecated (RFC 8945 section 6) and not \
                         served; make a new key with one of {}",
                        known.join(", ")
                    ),
                    _ => format!("algorithm {algorithm:?} is not one of {}", known.join(", ")),
                }
            })?;
        let secret = data_encoding::BASE64
            .decode(base64.trim().as_bytes())
            .map_err(|_| "the secret is not base64 (tsig-keygen writes it so)".to_owned())?;
        if secret.is_empty() {
            return Err("the secret is empty".into());
        }
        Ok(Self {
            name: fqdn,
            algorithm,
            secret,
        })
    }

    /// Its name, lower-cased, absolute.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// Whether `name`, as written (`xfr.example`, `XFR.example.`), is its name.
    pub fn is_named(&self, name: &str) -> bool {
        Name::from_ascii(name).is_ok_and(|mut n| {
            n.set_fqdn(true);
            n == self.name
        })
    }

    /// The length of its secret and of its algorithm's MAC when the secret is shorter:
    /// RFC 8945 section 6 asks a key at least as long as the MAC it makes.
    pub fn short_secret(&self) -> Option<(usize, usize)> {
        let mac = self.algorithm.mac_len();
        (self.secret.len() < mac).then_some((self.secret.len(), mac))
    }

    /// Its algorithm's name.
    pub fn algorithm(&self) -> &'static str {
        self.algorithm.text()
    }

    /// The bytes of its secret (for tests that sign as a peer would).
    #[cfg(test)]
    pub(crate) fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// The MAC of `pieces`, one after the other (fed to the HMAC piece by piece: a
    /// message and what goes with it may be larger than a buffer of hickory's encoder).
    fn mac(&self, pieces: &[&[u8]]) -> Vec<u8> {
        let key = hmac::Key::new(self.algorithm.hmac(), &self.secret);
        let mut context = hmac::Context::with_key(&key);
        for piece in pieces {
            context.update(piece);
        }
        context.sign().as_ref().to_vec()
    }
}

/// The TSIG record that signs a query, and where it starts in the packet.
#[derive(Debug, Clone)]
pub(crate) struct Signed {
    /// The key's name (the record's owner).
    pub(crate) key: Name,
    tsig: TSIG,
    /// The offset of the TSIG record: what comes before it is what its MAC covers.
    at: usize,
}

/// The TSIG record of `message` (decoded from `packet`), if it is signed; an error when
/// the TSIG records break RFC 8945 section 5.2 (FORMERR).
pub(crate) fn of_query(message: &Message, packet: &[u8]) -> Result<Option<Signed>, String> {
    // Without hickory's DNSSEC support a TSIG record stays among the additionals; with
    // it, it is lifted into `signature`. Either way its position is read from the packet.
    let found = message
        .signature
        .as_deref()
        .map(|r| (&r.name, &r.data, r.dns_class))
        .or_else(|| {
            message.additionals.iter().find_map(|r| match &r.data {
                RData::TSIG(t) => Some((&r.name, t, r.dns_class)),
                _ => None,
            })
        });
    let Some((key, tsig, class)) = found else {
        return Ok(None);
    };
    // Section 4.2: its class is ANY (as BIND, which answers FORMERR otherwise).
    if class != DNSClass::ANY {
        return Err(format!("a TSIG record of class {class}; its class is ANY"));
    }
    // RFC 8945 section 5.2: one TSIG record, the last of the additional section, or
    // FORMERR. hickory takes the OPT record out of the section, so count on the wire.
    let additionals = additionals(packet).map_err(|e| format!("undecodable: {e}"))?;
    let tsigs = additionals
        .iter()
        .filter(|(t, _)| *t == RecordType::TSIG)
        .count();
    if tsigs > 1 {
        return Err(format!("{tsigs} TSIG records; a message has at most one"));
    }
    let Some(&(RecordType::TSIG, at)) = additionals.last() else {
        return Err("a TSIG record that is not the last of the additional section".into());
    };
    Ok(Some(Signed {
        key: key.clone(),
        tsig: tsig.clone(),
        at,
    }))
}

/// The type and offset of each record of `packet`'s additional section, in wire order.
fn additionals(packet: &[u8]) -> Result<Vec<(RecordType, usize)>, String> {
    let mut decoder = BinDecoder::new(packet);
    let header = Header::read(&mut decoder).map_err(|e| e.to_string())?;
    for _ in 0..header.counts.queries {
        Query::read(&mut decoder).map_err(|e| e.to_string())?;
    }
    for _ in 0..u32::from(header.counts.answers) + u32::from(header.counts.authorities) {
        Record::read(&mut decoder).map_err(|e| e.to_string())?;
    }
    (0..header.counts.additionals)
        .map(|_| {
            let at = decoder.index();
            Record::read(&mut decoder)
                .map(|r| (r.record_type(), at))
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// Why a signed query is not answered as asked (RFC 8945 section 5.2).
#[derive(Debug)]
pub(crate) struct Refusal {
    /// The TSIG record of the NOTAUTH answer: signed (BADTIME, BADTRUNC) or not.
    answer: Answer,
    /// What the log and the query view say.
    pub(crate) why: String,
}

#[derive(Debug)]
enum Answer {
    /// An unsigned record with this error (BADKEY, BADSIG).
    Unsigned(Signed, TsigError),
    /// The answer signed with the query's key and MAC, with this error, at this Time
    /// Signed (BADTIME's is the query's, section 5.2.3, so the client can check it).
    Signed(Signer, TsigError, u64),
    /// FORMERR (a MAC longer than the algorithm's, or too short to be one).
    Malformed,
}

/// What closes an answer given before the query was answered as asked: the TSIG record
/// of a refusal, or the signature of a query that verified (an error found after the
/// check: BADVERS, FORMERR, REFUSED for a class not served).
#[derive(Debug)]
pub(crate) enum Seal {
    Refused(Box<Refusal>),
    Signed(Box<Signer>),
}

impl Seal {
    /// What the check of the message found.
    pub(crate) fn result(&self) -> crate::transfer::TsigResult {
        match self {
            Self::Refused(refusal) => refusal.result(),
            Self::Signed(_) => crate::transfer::TsigResult::Verified,
        }
    }

    /// Adds its record to `encoded`.
    pub(crate) fn apply(&self, encoded: &mut Vec<u8>) {
        match self {
            Self::Refused(refusal) => refusal.seal(encoded),
            Self::Signed(signer) => signer.sign(encoded),
        }
    }
}

impl Refusal {
    /// What the check found, as `weft_dns_tsig_total` counts it.
    pub(crate) fn result(&self) -> crate::transfer::TsigResult {
        use crate::transfer::TsigResult;
        match &self.answer {
            Answer::Unsigned(_, TsigError::BadKey) => TsigResult::BadKey,
            Answer::Unsigned(..) => TsigResult::BadSig,
            Answer::Signed(_, TsigError::BadTime, _) => TsigResult::BadTime,
            Answer::Signed(..) => TsigResult::BadTrunc,
            Answer::Malformed => TsigResult::Malformed,
        }
    }

    /// Whether the query gets FORMERR rather than NOTAUTH.
    pub(crate) fn malformed(&self) -> bool {
        matches!(self.answer, Answer::Malformed)
    }

    /// Adds the TSIG record of the error to `encoded`, the NOTAUTH answer.
    pub(crate) fn seal(&self, encoded: &mut Vec<u8>) {
        match &self.answer {
            Answer::Unsigned(signed, error) => {
                let algorithm = signed.tsig.algorithm.clone();
                if let Some(mut tsig) =
                    unsigned(algorithm, encoded, unix_now(), Some(*error), Vec::new())
                {
                    // The query's, which the client's own check compares.
                    tsig.oid = signed.tsig.oid;
                    append(encoded, &signed.key, tsig);
                }
            }
            Answer::Signed(signer, error, time) => {
                let other = match error {
                    // Section 5.2.3: the server's time, for the client to see the skew.
                    TsigError::BadTime => unix_now().to_be_bytes()[2..].to_vec(),
                    _ => Vec::new(),
                };
                signer.sign_at(encoded, Some(*error), other, *time);
            }
            Answer::Malformed => {}
        }
    }
}

/// What signs the answers to a verified query: its key, and the MAC the next message's
/// covers first (the query's, then, in a zone transfer, each message's own).
#[derive(Debug, Clone)]
pub(crate) struct Signer {
    key: TsigKey,
    /// The algorithm's name as the query wrote it, echoed.
    algorithm: TsigAlgorithm,
    mac: Vec<u8>,
    /// Whether a message of a transfer has been signed: those after the first cover
    /// less.
    signed_one: bool,
}

/// Verifies the query `packet`, whose TSIG record is `signed`, with `keys` at `now`
/// (seconds since the epoch): the signer of its answers, or why it is refused.
pub(crate) fn verify(
    keys: &[TsigKey],
    signed: Signed,
    packet: &[u8],
    now: u64,
) -> Result<Signer, Box<Refusal>> {
    let tsig = &signed.tsig;
    let algorithm = Algorithm::of_record(&tsig.algorithm);
    let Some(key) = keys
        .iter()
        .find(|k| Some(k.algorithm) == algorithm && k.name == signed.key)
    else {
        let why = format!(
            "signed with TSIG key {} ({}), which this service does not hold",
            signed.key,
            tsig.algorithm.to_name()
        );
        return Err(Box::new(Refusal {
            answer: Answer::Unsigned(signed, TsigError::BadKey),
            why,
        }));
    };
    let full = key.algorithm.mac_len();
    let len = tsig.mac.len();
    // Section 5.2.2.1: longer than the algorithm's, or shorter than the larger of 10
    // bytes and half of it, is malformed.
    if len > full || len < 10.max(full / 2) {
        return Err(Box::new(Refusal {
            answer: Answer::Malformed,
            why: format!(
                "a MAC of {len} bytes for {} (of {full})",
                key.algorithm.text()
            ),
        }));
    }
    let expected = request_mac(key, packet, &signed);
    if !same_bytes(&expected[..len], &tsig.mac) {
        let why = format!("a MAC that does not verify with TSIG key {}", key.name);
        return Err(Box::new(Refusal {
            answer: Answer::Unsigned(signed, TsigError::BadSig),
            why,
        }));
    }
    let signer = Signer {
        key: key.clone(),
        algorithm: tsig.algorithm.clone(),
        mac: tsig.mac.clone(),
        signed_one: false,
    };
    // Section 5.2.3: the time is checked after the MAC, so that a forged query cannot
    // make the server say its time.
    let skew = now.abs_diff(tsig.time);
    if skew > u64::from(tsig.fudge) {
        let why = format!(
            "signed {skew} s away from this server's clock, beyond the fudge of {} s",
            tsig.fudge
        );
        return Err(Box::new(Refusal {
            answer: Answer::Signed(signer, TsigError::BadTime, tsig.time),
            why,
        }));
    }
    if len < full {
        let why = format!("a MAC cut to {len} bytes; this service takes the full {full}");
        return Err(Box::new(Refusal {
            answer: Answer::Signed(signer, TsigError::BadTrunc, now),
            why,
        }));
    }
    Ok(signer)
}

/// The signer of the answer to `packet` when it is signed with one of `keys` and
/// verifies: for a message answered outside the query path (a NOTIFY, an opcode not
/// served), which one that does not verify gets as it would unsigned.
pub(crate) fn signer_of(keys: &[TsigKey], packet: &[u8]) -> Option<Signer> {
    if keys.is_empty() {
        return None;
    }
    let message = Message::from_vec(packet).ok()?;
    let signed = of_query(&message, packet).ok()??;
    verify(keys, signed, packet, unix_now()).ok()
}

/// The MAC of a query (section 4.3.1): over the message without its TSIG record, its
/// header's ID the original one and ARCOUNT one less, then the TSIG variables.
fn request_mac(key: &TsigKey, packet: &[u8], signed: &Signed) -> Vec<u8> {
    let header = header_without_tsig(packet, signed.tsig.oid);
    let variables = variables(&signed.tsig, &signed.key);
    key.mac(&[&header, &packet[12..signed.at], &variables])
}

/// The header of `packet` as its MAC covers it: `oid` for its ID, ARCOUNT one less.
fn header_without_tsig(packet: &[u8], oid: u16) -> [u8; 12] {
    let mut header = [0; 12];
    header.copy_from_slice(&packet[..12]);
    header[..2].copy_from_slice(&oid.to_be_bytes());
    let arcount = u16::from_be_bytes([header[10], header[11]]).saturating_sub(1);
    header[10..12].copy_from_slice(&arcount.to_be_bytes());
    header
}

/// The TSIG variables of `tsig`, owned by `key` (section 4.3.3): the key's and the
/// algorithm's names lower-cased, class ANY, TTL 0, the times, the error, Other Data.
fn variables(tsig: &TSIG, key: &Name) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(64);
    // Past 64 KiB (an Other Data that long) it stops short, and the MAC does not verify.
    let _ = tsig.emit_tsig_for_mac(&mut BinEncoder::new(&mut bytes), key);
    bytes
}

impl Signer {
    /// The bytes the TSIG record adds to an answer, at most: so much less of a UDP
    /// answer's room is left for records.
    pub(crate) fn room(&self) -> usize {
        // Owner, then type, class, TTL and RDLENGTH; the algorithm's name, Time Signed,
        // Fudge, MAC Size, the MAC, Original ID, Error and Other Len (an answer has no
        // Other Data; BADTIME's error answer, which has 6 bytes, holds no records).
        self.key.name.len() + 1 + 10 + self.algorithm.to_name().len() + 1 + 16 + self.mac_len()
    }

    fn mac_len(&self) -> usize {
        self.key.algorithm.mac_len()
    }

    /// Signs `encoded`, an answer: its TSIG record is added to the end.
    pub(crate) fn sign(&self, encoded: &mut Vec<u8>) {
        self.sign_at(encoded, None, Vec::new(), unix_now());
    }

    fn sign_at(&self, encoded: &mut Vec<u8>, error: Option<TsigError>, other: Vec<u8>, time: u64) {
        let Some(tsig) = unsigned(self.algorithm.clone(), encoded, time, error, other) else {
            return;
        };
        let mac = self.mac_of(encoded, &tsig, true);
        append(encoded, &self.key.name, tsig.set_mac(mac));
    }

    /// Signs `encoded`, the next message of a zone transfer: the first as an answer, each
    /// after it over the MAC of the one before, the message and its timers (section
    /// 5.3.1).
    pub(crate) fn sign_next(&mut self, encoded: &mut Vec<u8>) {
        let algorithm = self.algorithm.clone();
        let Some(tsig) = unsigned(algorithm, encoded, unix_now(), None, Vec::new()) else {
            return;
        };
        let mac = self.mac_of(encoded, &tsig, !self.signed_one);
        self.mac.clone_from(&mac);
        self.signed_one = true;
        append(encoded, &self.key.name, tsig.set_mac(mac));
    }

    /// The MAC of `encoded`, signed by `tsig`: over the MAC before it (the query's, or
    /// the last message's), the message, and `tsig`'s variables, or only its timers when
    /// not `whole` (a transfer's later messages).
    fn mac_of(&self, encoded: &[u8], tsig: &TSIG, whole: bool) -> Vec<u8> {
        let last: Vec<u8> = match whole {
            true => variables(tsig, &self.key.name),
            false => timers(tsig),
        };
        mac_after(&self.key, &self.mac, &[encoded, &last])
    }

    /// The key's name.
    pub(crate) fn key(&self) -> &Name {
        &self.key.name
    }
}

/// The MAC under `key` of a message that answers or follows another whose MAC was
/// `before` (section 4.3.2): that MAC with its length first, then `pieces`.
fn mac_after(key: &TsigKey, before: &[u8], pieces: &[&[u8]]) -> Vec<u8> {
    let length = u16::try_from(before.len())
        .unwrap_or(u16::MAX)
        .to_be_bytes();
    let mut all: Vec<&[u8]> = vec![&length, before];
    all.extend_from_slice(pieces);
    key.mac(&all)
}

/// Time Signed and Fudge, as a transfer's later messages' MACs cover them.
fn timers(tsig: &TSIG) -> Vec<u8> {
    let mut bytes = tsig.time.to_be_bytes()[2..].to_vec();
    bytes.extend(tsig.fudge.to_be_bytes());
    bytes
}

/// Signs `encoded`, a query this server sends (a NOTIFY), with `key` (section 4.3.1):
/// the MAC, which the answer's covers first ([`answer_verifies`]).
pub(crate) fn sign_query(key: &TsigKey, encoded: &mut Vec<u8>) -> Vec<u8> {
    let algorithm = key.algorithm.record();
    let Some(tsig) = unsigned(algorithm, encoded, unix_now(), None, Vec::new()) else {
        return Vec::new();
    };
    let mac = key.mac(&[encoded, &variables(&tsig, &key.name)]);
    append(encoded, &key.name, tsig.set_mac(mac.clone()));
    mac
}

/// Whether `packet`, the answer to a query this server signed with `key` (its MAC
/// `mac`), is signed by the peer with that key, in full, within the fudge of `now`,
/// without a TSIG error (section 5.4).
pub(crate) fn answer_verifies(key: &TsigKey, mac: &[u8], packet: &[u8], now: u64) -> bool {
    Verifier::new(key.clone(), mac.to_vec()).next(packet, now) == Ok(true)
}

/// The answers to a query this server signed, checked one message after another: one
/// answer, or each message of a zone transfer. The first must be signed over the query's
/// MAC and all its variables; each later one may come unsigned, up to
/// [`UNSIGNED_IN_A_ROW`] in a row, and the next signed one covers them, over the MAC
/// before them and its timers (section 5.3.1); the last must be signed
/// ([`complete`](Self::complete)).
pub(crate) struct Verifier {
    key: TsigKey,
    /// The MAC the next signed message covers first: the query's, then the last one's.
    mac: Vec<u8>,
    signed_one: bool,
    /// The messages since the last signed one, whole, as received.
    unsigned: Vec<u8>,
    unsigned_count: usize,
}

/// Messages a transfer may send unsigned between two signed ones (section 5.3.1: the
/// client must accept up to 99; NSD signs one in 96).
const UNSIGNED_IN_A_ROW: usize = 99;

impl Verifier {
    pub(crate) fn new(key: TsigKey, mac: Vec<u8>) -> Self {
        Self {
            key,
            mac,
            signed_one: false,
            unsigned: Vec::new(),
            unsigned_count: 0,
        }
    }

    /// Takes `packet`, the next message: `Ok(true)` signed and verified, `Ok(false)`
    /// unsigned where that is allowed; otherwise why it is not to be trusted.
    pub(crate) fn next(&mut self, packet: &[u8], now: u64) -> Result<bool, String> {
        let message = Message::from_vec(packet).map_err(|e| format!("undecodable: {e}"))?;
        let Some(signed) = of_query(&message, packet)? else {
            if !self.signed_one {
                return Err("unsigned; the first answer to a signed query is signed".into());
            }
            if self.unsigned_count == UNSIGNED_IN_A_ROW {
                return Err(format!(
                    "more than {UNSIGNED_IN_A_ROW} messages in a row unsigned"
                ));
            }
            self.unsigned.extend_from_slice(packet);
            self.unsigned_count += 1;
            return Ok(false);
        };
        let tsig = &signed.tsig;
        if signed.key != self.key.name
            || Algorithm::of_record(&tsig.algorithm) != Some(self.key.algorithm)
        {
            return Err(format!("signed with another key ({})", signed.key));
        }
        if let Some(error) = &tsig.error {
            return Err(format!("the peer answered the TSIG error {error:?}"));
        }
        let header = header_without_tsig(packet, tsig.oid);
        let last = match self.signed_one {
            false => variables(tsig, &signed.key),
            true => timers(tsig),
        };
        let expected = mac_after(
            &self.key,
            &self.mac,
            &[&self.unsigned, &header, &packet[12..signed.at], &last],
        );
        if !same_bytes(&expected, &tsig.mac) {
            return Err("its MAC does not verify (BADSIG)".into());
        }
        if now.abs_diff(tsig.time) > u64::from(tsig.fudge) {
            return Err(format!(
                "signed at {}, {} s from this server's clock, past its fudge of {} s (BADTIME)",
                tsig.time,
                now.abs_diff(tsig.time),
                tsig.fudge
            ));
        }
        self.mac.clone_from(&tsig.mac);
        self.signed_one = true;
        self.unsigned.clear();
        self.unsigned_count = 0;
        Ok(true)
    }

    /// Whether the messages taken end with a signed one.
    pub(crate) fn complete(&self) -> bool {
        self.signed_one && self.unsigned_count == 0
    }
}

/// The TSIG record data that signs `encoded` at `time`, its MAC not made yet: this
/// server's fudge, and the message's ID as the original; `None` for what is not a
/// message (an encoding that failed).
fn unsigned(
    algorithm: TsigAlgorithm,
    encoded: &[u8],
    time: u64,
    error: Option<TsigError>,
    other: Vec<u8>,
) -> Option<TSIG> {
    let id = u16::from_be_bytes([*encoded.first()?, *encoded.get(1)?]);
    Some(TSIG::new(
        algorithm,
        time,
        FUDGE,
        Vec::new(),
        id,
        error,
        other,
    ))
}

/// Appends the TSIG record `tsig` owned by `key` to `encoded` and counts it in ARCOUNT;
/// nothing when the message would pass the 65,535 bytes a message holds (the answers
/// keep room for it: see `Request::udp_limit` and `tcp_limit`) or is not one. An answer
/// left unsigned is one its client discards.
fn append(encoded: &mut Vec<u8>, key: &Name, tsig: TSIG) {
    let record = make_tsig_record(key.clone(), tsig);
    let mut bytes = Vec::with_capacity(128);
    let mut encoder = BinEncoder::new(&mut bytes);
    if record.emit(&mut encoder).is_err()
        || encoded.len() < 12
        || encoded.len() + bytes.len() > usize::from(u16::MAX)
    {
        return;
    }
    let arcount = u16::from_be_bytes([encoded[10], encoded[11]]).saturating_add(1);
    encoded[10..12].copy_from_slice(&arcount.to_be_bytes());
    encoded.extend(bytes);
}

/// Whether `a` and `b` are equal, in time that does not depend on where they differ
/// (the fold kept from being cut short by `black_box`).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let differ = a
        .iter()
        .zip(b)
        .fold(0, |acc, (x, y)| std::hint::black_box(acc | (x ^ y)));
    a.len() == b.len() && differ == 0
}

/// Seconds since the epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
#[path = "tsig_tests.rs"]
mod tests;
