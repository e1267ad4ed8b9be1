//! The EDNS options this server answers: NSID (RFC 5001) when `nsid` is set, and DNS
//! cookies (RFC 7873) when `cookies` is on, with server cookies in the interoperable
//! format of RFC 9018. Every other option is ignored and never echoed (RFC 6891 section
//! 6.1.2). An answer that refuses, fails or is stale says why in an Extended DNS Error
//! ([`ExtendedError`], RFC 8914), to a query with an OPT only.
//!
//! A server cookie is version 1, three reserved bytes, the time it was made (seconds
//! since the epoch, serial arithmetic) and SipHash-2-4 over the client cookie, those
//! eight bytes and the client's address, keyed with a secret made at start. The secret
//! changes every hour and the previous one is still accepted for the next hour, which
//! is as long as a cookie lives (RFC 9018 section 4.3), so no cookie a client holds is
//! refused before its time.

use std::cell::RefCell;
use std::hash::Hasher;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::Edns;
use hickory_proto::rr::rdata::opt::{EdnsOption, NSIDPayload};
use siphasher::sip::SipHasher24;

/// The NSID option code (RFC 5001).
const NSID: u16 = 3;
/// The Client Subnet option code (RFC 7871).
const SUBNET: u16 = 8;
/// The COOKIE option code (RFC 7873).
const COOKIE: u16 = 10;
/// A client cookie's length (RFC 7873 section 4).
const CLIENT_COOKIE: usize = 8;
/// A server cookie's bounds (RFC 7873 section 4).
const SERVER_COOKIE: std::ops::RangeInclusive<usize> = 8..=32;
/// The server cookies this server makes: version, reserved, timestamp, hash.
const OUR_SERVER_COOKIE: usize = 16;
/// The RFC 9018 server cookie version.
const VERSION: u8 = 1;
/// How long a server cookie is accepted, and how often the secret changes (RFC 9018
/// section 4.3: an hour).
const LIFETIME: u32 = 3600;
/// How far ahead of this server's clock a cookie's time may be (RFC 9018 section 4.3:
/// five minutes).
const SKEW: u32 = 300;
/// The Extended DNS Error option code (RFC 8914).
const EDE: u16 = 15;
/// The longest `nsid` accepted, in bytes.
pub const MAX_NSID: usize = 128;

/// A service's EDNS options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdnsConfig {
    /// The server identifier sent to queries that ask with an NSID option (RFC 5001);
    /// `None`: the option is ignored.
    pub nsid: Option<String>,
    /// Answer DNS cookies (RFC 7873): a server cookie in every answer to a query with a
    /// client cookie, FORMERR for a malformed one.
    pub cookies: bool,
}

/// The COOKIE option of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cookie {
    client: [u8; CLIENT_COOKIE],
    server: [u8; 32],
    server_len: u8,
}

impl Cookie {
    /// RFC 7873 section 5.2.2: a client cookie alone (8 bytes) or with a server cookie
    /// of 8 to 32 bytes; anything else is malformed.
    fn read(data: &[u8]) -> Result<Self, String> {
        let server_len = data.len().wrapping_sub(CLIENT_COOKIE);
        if data.len() != CLIENT_COOKIE && !SERVER_COOKIE.contains(&server_len) {
            return Err(format!(
                "a COOKIE option of {} bytes; it has 8, or 16 to 40",
                data.len()
            ));
        }
        let mut cookie = Self {
            client: [0; CLIENT_COOKIE],
            server: [0; 32],
            server_len: 0,
        };
        cookie.client.copy_from_slice(&data[..CLIENT_COOKIE]);
        let server = &data[CLIENT_COOKIE..];
        cookie.server[..server.len()].copy_from_slice(server);
        cookie.server_len = server.len() as u8;
        Ok(cookie)
    }

    fn server(&self) -> &[u8] {
        &self.server[..usize::from(self.server_len)]
    }
}

/// The options of a client's OPT record that this server acts on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OptionsAsked {
    /// It carried an NSID option.
    pub(crate) nsid: bool,
    /// Its COOKIE option, if well-formed.
    pub(crate) cookie: Option<Cookie>,
}

impl OptionsAsked {
    /// Reads `edns`'s options, with why its COOKIE option is malformed, if it is (RFC
    /// 7873 section 5.2.2: FORMERR); without `cookies`, the COOKIE option is not read.
    pub(crate) fn read(edns: &Edns, cookies: bool) -> (Self, Option<String>) {
        // hickory reads a COOKIE option as an unknown one, its bytes as they came.
        let options = edns.options().as_ref().iter().map(|(code, option)| {
            let data = match option {
                EdnsOption::Unknown(_, data) => data.as_slice(),
                _ => &[],
            };
            (u16::from(*code), data)
        });
        Self::read_each(options, cookies)
    }

    /// [`OptionsAsked::read`] of the options as sent, `rdata` the OPT record's data; an
    /// option that runs past the end ends them (the caller has checked their lengths).
    pub(crate) fn read_wire(rdata: &[u8], cookies: bool) -> (Self, Option<String>) {
        Self::read_each(WireOptions(rdata), cookies)
    }

    fn read_each<'a>(
        options: impl Iterator<Item = (u16, &'a [u8])>,
        cookies: bool,
    ) -> (Self, Option<String>) {
        let mut asked = Self::default();
        let mut malformed = None;
        for (code, data) in options {
            match code {
                NSID => asked.nsid = true,
                COOKIE if cookies && asked.cookie.is_none() => match Cookie::read(data) {
                    Ok(cookie) => asked.cookie = Some(cookie),
                    Err(why) => malformed = Some(why),
                },
                _ => {}
            }
        }
        (asked, malformed)
    }
}

/// The options of an OPT record's data as sent: code, data.
pub(crate) struct WireOptions<'a>(pub(crate) &'a [u8]);

impl<'a> Iterator for WireOptions<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let [c0, c1, l0, l1, rest @ ..] = self.0 else {
            return None;
        };
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        let data = rest.get(..len)?;
        self.0 = &rest[len..];
        Some((u16::from_be_bytes([*c0, *c1]), data))
    }
}

/// Appends the option `code` with `data` as sent: code, length, data.
pub(crate) fn write_option(out: &mut Vec<u8>, code: u16, data: &[u8]) {
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

/// Whether a query's option with `code` may be answered from an answer kept for the
/// query without it: NSID and COOKIE, whose answers [`OptionsAnswered::write_to`] adds
/// to each copy, and every option this server ignores, but the Client Subnet, whose
/// data hickory reads and may refuse (FORMERR, which the full path answers).
pub(crate) fn keeps_answer(code: u16) -> bool {
    code != SUBNET
}

/// Whether an answer's option with `code` is one [`OptionsAnswered`] makes for each
/// query, not part of the answer kept.
pub(crate) fn made_per_query(code: u16) -> bool {
    matches!(code, NSID | COOKIE)
}

/// The options an answer carries besides size, version and DO.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OptionsAnswered {
    nsid: Option<Rc<[u8]>>,
    /// The client cookie and this server's cookie for it.
    cookie: Option<[u8; CLIENT_COOKIE + OUR_SERVER_COOKIE]>,
}

impl OptionsAnswered {
    /// These options without the NSID: the cookie alone.
    pub(crate) fn cookie_only(&self) -> Self {
        Self {
            nsid: None,
            cookie: self.cookie,
        }
    }

    /// The options as sent, appended to `out`, in the order of
    /// [`OptionsAnswered::add_to`].
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        if let Some(nsid) = &self.nsid {
            write_option(out, NSID, nsid);
        }
        if let Some(cookie) = &self.cookie {
            write_option(out, COOKIE, cookie);
        }
    }

    /// The length of [`OptionsAnswered::write_to`]'s bytes.
    pub(crate) fn wire_len(&self) -> usize {
        self.nsid.as_ref().map_or(0, |n| 4 + n.len())
            + self.cookie.as_ref().map_or(0, |c| 4 + c.len())
    }

    /// Adds the options to a response's OPT record.
    pub(crate) fn add_to(&self, edns: &mut Edns) {
        if let Some(nsid) = &self.nsid
            && let Ok(payload) = NSIDPayload::new(nsid.to_vec())
        {
            edns.options_mut().insert(EdnsOption::NSID(payload));
        }
        if let Some(cookie) = &self.cookie {
            edns.options_mut()
                .insert(EdnsOption::Unknown(COOKIE, cookie.to_vec()));
        }
    }
}

/// Why an answer refuses, fails or is stale: the INFO-CODE of an Extended DNS Error
/// (RFC 8914 section 4), as NSD, Knot and BIND send them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExtendedError {
    /// 3: served from an expired cache entry (`serve_stale`, RFC 8767).
    StaleAnswer = 3,
    /// 14: a secondary zone with no copy to answer from yet, or one that expired (the
    /// server "was not fully functional when the query was received").
    NotReady = 14,
    /// 18: the client is not allowed this (a zone transfer outside `allow_transfer`).
    Prohibited = 18,
    /// 20: the name is in none of the zones, and nothing is forwarded, or the question
    /// did not ask for recursion (RD clear; RFC 8914 section 4.21).
    NotAuthoritative = 20,
    /// 22: no upstream gave an answer.
    NoReachableAuthority = 22,
}

impl ExtendedError {
    /// Adds the option to `message`'s OPT; a response without one (to a query without
    /// EDNS) gets nothing: RFC 8914 section 3 puts it in the OPT record only.
    pub(crate) fn add_to(self, message: &mut hickory_proto::op::Message) {
        if let Some(edns) = message.edns.as_mut() {
            let info = (self as u16).to_be_bytes().to_vec();
            edns.options_mut().insert(EdnsOption::Unknown(EDE, info));
        }
    }
}

/// What a query's COOKIE option proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CookieState {
    /// No COOKIE option, or cookies are off.
    Absent,
    /// A client cookie alone (RFC 7873 section 5.2.3).
    ClientOnly,
    /// A server cookie this server made for this client, within its lifetime: the client
    /// has received from this address before.
    Valid,
    /// A server cookie that is not (or no longer) this server's for this client; treated
    /// as a client cookie alone (RFC 7873 section 5.2.4).
    Invalid,
}

/// A service's EDNS answers: its NSID and its cookie secrets.
pub(crate) struct Options {
    nsid: Option<Rc<[u8]>>,
    /// `None` when cookies are off; shared with the server this one succeeds (see
    /// [`Options::keep_secrets_of`]).
    secrets: Option<Rc<RefCell<Secrets>>>,
}

impl Options {
    pub(crate) fn new(config: &EdnsConfig) -> Self {
        Self {
            nsid: config.nsid.as_deref().map(|s| Rc::from(s.as_bytes())),
            secrets: config
                .cookies
                .then(|| Rc::new(RefCell::new(Secrets::new(unix_now())))),
        }
    }

    /// Takes `previous`'s cookie secrets when both answer cookies, so the server cookies
    /// it handed out stay valid.
    pub(crate) fn keep_secrets_of(&mut self, previous: &Options) {
        if let (Some(secrets), Some(kept)) = (&mut self.secrets, &previous.secrets) {
            *secrets = kept.clone();
        }
    }

    /// Whether COOKIE options are read.
    pub(crate) fn cookies(&self) -> bool {
        self.secrets.is_some()
    }

    /// The options of the answer to `asked` from `client`, now; and what its cookie proved.
    pub(crate) fn answer(
        &self,
        asked: &OptionsAsked,
        client: IpAddr,
    ) -> (OptionsAnswered, CookieState) {
        self.answer_at(asked, client, unix_now())
    }

    fn answer_at(
        &self,
        asked: &OptionsAsked,
        client: IpAddr,
        now: u32,
    ) -> (OptionsAnswered, CookieState) {
        let mut answered = OptionsAnswered {
            nsid: asked.nsid.then(|| self.nsid.clone()).flatten(),
            cookie: None,
        };
        let (Some(secrets), Some(cookie)) = (&self.secrets, &asked.cookie) else {
            return (answered, CookieState::Absent);
        };
        let client = client.to_canonical();
        let mut secrets = secrets.borrow_mut();
        secrets.rotate(now);
        let state = if cookie.server_len == 0 {
            CookieState::ClientOnly
        } else if secrets.accepts(cookie, client, now) {
            CookieState::Valid
        } else {
            CookieState::Invalid
        };
        let mut option = [0; CLIENT_COOKIE + OUR_SERVER_COOKIE];
        option[..CLIENT_COOKIE].copy_from_slice(&cookie.client);
        option[CLIENT_COOKIE..].copy_from_slice(&server_cookie(
            &secrets.current,
            &cookie.client,
            client,
            now,
        ));
        answered.cookie = Some(option);
        (answered, state)
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("nsid", &self.nsid)
            .field("cookies", &self.secrets.is_some())
            .finish()
    }
}

/// The keys of server cookies: the current one signs, it and the previous one verify.
struct Secrets {
    current: [u8; 16],
    previous: Option<[u8; 16]>,
    /// When `current` was made (seconds since the epoch).
    since: u32,
}

impl Secrets {
    fn new(now: u32) -> Self {
        Self {
            current: fresh_secret(),
            previous: None,
            since: now,
        }
    }

    fn rotate(&mut self, now: u32) {
        // Serial arithmetic: a clock stepped back does not count as time passing.
        if (LIFETIME..1 << 31).contains(&now.wrapping_sub(self.since)) {
            self.previous = Some(std::mem::replace(&mut self.current, fresh_secret()));
            self.since = now;
        }
    }

    /// RFC 9018 section 4.3: our version, made no more than an hour ago nor more than
    /// five minutes ahead, with the hash of one of our secrets.
    fn accepts(&self, cookie: &Cookie, client: IpAddr, now: u32) -> bool {
        let server = cookie.server();
        if server.len() != OUR_SERVER_COOKIE || server[0] != VERSION {
            return false;
        }
        let made = u32::from_be_bytes([server[4], server[5], server[6], server[7]]);
        let age = now.wrapping_sub(made);
        if age > LIFETIME && made.wrapping_sub(now) > SKEW {
            return false;
        }
        [Some(self.current), self.previous]
            .into_iter()
            .flatten()
            .any(|secret| {
                same(
                    &server_cookie(&secret, &cookie.client, client, made),
                    server,
                )
            })
    }
}

/// Whether `a` and `b` are equal, in a time that does not depend on where they differ
/// (a cookie guessed byte by byte learns nothing from how fast it is refused).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A server cookie for `client_cookie` from `client`, made at `made`. RFC 9018 section
/// 4.4: Hash = SipHash-2-4(Client Cookie | Version | Reserved |
/// Timestamp | Client-IP, Server Secret), sent as the reference implementation writes
/// it (little-endian).
fn server_cookie(
    secret: &[u8; 16],
    client_cookie: &[u8; CLIENT_COOKIE],
    client: IpAddr,
    made: u32,
) -> [u8; OUR_SERVER_COOKIE] {
    let mut cookie = [0; OUR_SERVER_COOKIE];
    cookie[0] = VERSION;
    cookie[4..8].copy_from_slice(&made.to_be_bytes());
    let mut hasher = SipHasher24::new_with_key(secret);
    hasher.write(client_cookie);
    hasher.write(&cookie[..8]);
    match client {
        IpAddr::V4(v4) => hasher.write(&v4.octets()),
        IpAddr::V6(v6) => hasher.write(&v6.octets()),
    }
    cookie[8..].copy_from_slice(&hasher.finish().to_le_bytes());
    cookie
}

/// A secret from the system's random source.
fn fresh_secret() -> [u8; 16] {
    let mut secret = [0; 16];
    crate::random::fill(&mut secret);
    secret
}

/// Seconds since the epoch, modulo 2^32 (RFC 9018 compares them as serial numbers).
fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

#[cfg(test)]
mod tests;
