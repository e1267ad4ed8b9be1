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
//! 4.3.1), and each message of a zone transfer after the first signed over the MAC of the
//! one before and the message alone with its timers (section 4.4: every message is
//! signed, which section 5.3.1 allows).
//!
//! The MAC is HMAC (RFC 2104) with SHA-1, SHA-256, SHA-384 or SHA-512 (the algorithms
//! RFC 8945 section 6 lists as mandatory or recommended, but HMAC-MD5, which it
//! deprecates, and the truncated forms), from ring, which rustls already links.

use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Header, Message, Query};
use hickory_proto::rr::rdata::TSIG;
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError, make_tsig_record};
use hickory_proto::rr::{Name, RData, Record, RecordType};
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
        if parsed.is_root() {
            return Err(
                "a key's name is a domain name such as \"xfr.example.\", not the root".into(),
            );
        }
        let mut fqdn = parsed.to_lowercase();
        fqdn.set_fqdn(true);
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

    /// Its algorithm's name.
    pub fn algorithm(&self) -> &'static str {
        self.algorithm.text()
    }

    /// The bytes of its secret (for tests that sign as a peer would).
    #[cfg(test)]
    pub(crate) fn secret(&self) -> &[u8] {
        &self.secret
    }

    fn mac(&self, data: &[u8]) -> Vec<u8> {
        let key = hmac::Key::new(self.algorithm.hmac(), &self.secret);
        hmac::sign(&key, data).as_ref().to_vec()
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
        .map(|r| (&r.name, &r.data))
        .or_else(|| {
            message.additionals.iter().find_map(|r| match &r.data {
                RData::TSIG(t) => Some((&r.name, t)),
                _ => None,
            })
        });
    let Some((key, tsig)) = found else {
        return Ok(None);
    };
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
    /// The answer signed with the query's key and MAC, with this error.
    Signed(Signer, TsigError),
    /// FORMERR (a MAC longer than the algorithm's, or too short to be one).
    Malformed,
}

impl Refusal {
    /// Whether the query gets FORMERR rather than NOTAUTH.
    pub(crate) fn malformed(&self) -> bool {
        matches!(self.answer, Answer::Malformed)
    }

    /// Adds the TSIG record of the error to `encoded`, the NOTAUTH answer.
    pub(crate) fn seal(&self, encoded: &mut Vec<u8>) {
        match &self.answer {
            Answer::Unsigned(signed, error) => {
                let tsig = TSIG::new(
                    signed.tsig.algorithm.clone(),
                    unix_now(),
                    signed.tsig.fudge,
                    Vec::new(),
                    signed.tsig.oid,
                    Some(*error),
                    Vec::new(),
                );
                append(encoded, &signed.key, tsig);
            }
            Answer::Signed(signer, error) => {
                let now = unix_now();
                let other = match error {
                    // Section 5.2.3: the server's time, for the client to see the skew.
                    TsigError::BadTime => now.to_be_bytes()[2..].to_vec(),
                    _ => Vec::new(),
                };
                signer.sign_at(encoded, Some(*error), other, now);
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
    /// Whether a message has been signed: the ones after the first cover less.
    first: bool,
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
    // Section 5.2.2.1: longer than the algorithm's, or shorter than both 10 bytes and
    // half of it, is malformed.
    if len > full || len < 10.max(full / 2) {
        return Err(Box::new(Refusal {
            answer: Answer::Malformed,
            why: format!(
                "a MAC of {len} bytes for {} (of {full})",
                key.algorithm.text()
            ),
        }));
    }
    let expected = key.mac(&request_data(packet, &signed));
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
        first: true,
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
            answer: Answer::Signed(signer, TsigError::BadTime),
            why,
        }));
    }
    if len < full {
        let why = format!("a MAC cut to {len} bytes; this service takes the full {full}");
        return Err(Box::new(Refusal {
            answer: Answer::Signed(signer, TsigError::BadTrunc),
            why,
        }));
    }
    Ok(signer)
}

/// What a query's MAC covers (section 4.3.3): the message without its TSIG record, its
/// header's ID the original one and ARCOUNT one less, then the TSIG variables.
fn request_data(packet: &[u8], signed: &Signed) -> Vec<u8> {
    let mut data = packet[..signed.at].to_vec();
    data[..2].copy_from_slice(&signed.tsig.oid.to_be_bytes());
    let arcount = u16::from_be_bytes([data[10], data[11]]).saturating_sub(1);
    data[10..12].copy_from_slice(&arcount.to_be_bytes());
    push_variables(&mut data, &signed.tsig, &signed.key);
    data
}

/// Appends the TSIG variables of `tsig`, owned by `key`, to `data` (section 4.3.3).
fn push_variables(data: &mut Vec<u8>, tsig: &TSIG, key: &Name) {
    let mut encoder = BinEncoder::new(data);
    let end = encoder.len();
    encoder.set_offset(end);
    // Writing to a vector fails only past 64 KiB, which these are not.
    let _ = tsig.emit_tsig_for_mac(&mut encoder, key);
}

impl Signer {
    /// The bytes the TSIG record adds to an answer, at most: so much less of a UDP
    /// answer's room is left for records.
    pub(crate) fn room(&self) -> usize {
        // Owner, then type, class, TTL and RDLENGTH; the algorithm's name, Time Signed,
        // Fudge, MAC Size, the MAC, Original ID, Error, Other Len and 6 bytes of Other
        // Data (BADTIME's).
        self.key.name.len() + 1 + 10 + self.algorithm.to_name().len() + 1 + 16 + self.mac_len() + 6
    }

    fn mac_len(&self) -> usize {
        self.key.algorithm.mac_len()
    }

    /// Signs `encoded`, an answer: its TSIG record is added to the end.
    pub(crate) fn sign(&self, encoded: &mut Vec<u8>) {
        self.sign_at(encoded, None, Vec::new(), unix_now());
    }

    fn sign_at(&self, encoded: &mut Vec<u8>, error: Option<TsigError>, other: Vec<u8>, now: u64) {
        let tsig = unsigned(self.algorithm.clone(), encoded, now, error, other);
        let mac = self.key.mac(&self.covered(encoded, &tsig, true));
        append(encoded, &self.key.name, tsig.set_mac(mac));
    }

    /// Signs `encoded`, the next message of a zone transfer: the first as an answer, each
    /// after it over the MAC of the one before, the message and its timers (section
    /// 4.4).
    pub(crate) fn sign_next(&mut self, encoded: &mut Vec<u8>) {
        let tsig = unsigned(
            self.algorithm.clone(),
            encoded,
            unix_now(),
            None,
            Vec::new(),
        );
        let mac = self.key.mac(&self.covered(encoded, &tsig, self.first));
        self.mac.clone_from(&mac);
        self.first = false;
        append(encoded, &self.key.name, tsig.set_mac(mac));
    }

    /// What the MAC of `encoded`, signed by `tsig`, covers: the MAC before it (the
    /// query's, or the last message's), the message, and `tsig`'s variables, or only its
    /// timers when not `whole` (a transfer's later messages).
    fn covered(&self, encoded: &[u8], tsig: &TSIG, whole: bool) -> Vec<u8> {
        let mut data = Vec::with_capacity(self.mac.len() + encoded.len() + 64);
        data.extend(
            u16::try_from(self.mac.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        data.extend(&self.mac);
        data.extend(encoded);
        if whole {
            push_variables(&mut data, tsig, &self.key.name);
        } else {
            data.extend(&tsig.time.to_be_bytes()[2..]);
            data.extend(tsig.fudge.to_be_bytes());
        }
        data
    }

    /// The key's name.
    pub(crate) fn key(&self) -> &Name {
        &self.key.name
    }
}

/// Signs `encoded`, a query this server sends (a NOTIFY), with `key`: the MAC covers the
/// message and the TSIG variables (section 4.3.3).
pub(crate) fn sign_query(key: &TsigKey, encoded: &mut Vec<u8>) {
    let algorithm =
        TsigAlgorithm::from_name(Name::from_ascii(key.algorithm.text()).unwrap_or_default());
    let tsig = unsigned(algorithm, encoded, unix_now(), None, Vec::new());
    let mut data = encoded.clone();
    push_variables(&mut data, &tsig, &key.name);
    let mac = key.mac(&data);
    append(encoded, &key.name, tsig.set_mac(mac));
}

/// The TSIG record data that signs `encoded` at `now`, its MAC not made yet: this
/// server's fudge, and the message's ID as the original.
fn unsigned(
    algorithm: TsigAlgorithm,
    encoded: &[u8],
    now: u64,
    error: Option<TsigError>,
    other: Vec<u8>,
) -> TSIG {
    let id = u16::from_be_bytes([encoded[0], encoded[1]]);
    TSIG::new(algorithm, now, FUDGE, Vec::new(), id, error, other)
}

/// Appends the TSIG record `tsig` owned by `key` to `encoded` and counts it in ARCOUNT.
fn append(encoded: &mut Vec<u8>, key: &Name, tsig: TSIG) {
    let record = make_tsig_record(key.clone(), tsig);
    let mut bytes = Vec::with_capacity(128);
    let mut encoder = BinEncoder::new(&mut bytes);
    if record.emit(&mut encoder).is_err() || encoded.len() < 12 {
        return;
    }
    let arcount = u16::from_be_bytes([encoded[10], encoded[11]]).saturating_add(1);
    encoded[10..12].copy_from_slice(&arcount.to_be_bytes());
    encoded.extend(bytes);
}

/// Whether `a` and `b` are equal, in time that does not depend on where they differ.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
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
