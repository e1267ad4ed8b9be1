//! Header rules for proxying: hop-by-hop headers stay on their hop, and the upstream
//! learns who the client was (`X-Forwarded-*` and RFC 7239 `Forwarded`).

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};

/// The headers always removed: those that describe one connection, not the message
/// (RFC 9110 §7.6.1), and `Upgrade`. `Connection` comes first.
const STRIPPED: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// `Connection`'s bit in a mask of [`STRIPPED`] names.
const CONNECTION_BIT: u16 = 1;
/// `Trailer`'s bit in a mask of [`STRIPPED`] names.
const TRAILER_BIT: u16 = 1 << 6;
/// `Transfer-Encoding`'s bit in a mask of [`STRIPPED`] names.
const TRANSFER_ENCODING_BIT: u16 = 1 << 7;

/// The members of a list-valued header (RFC 9110 §5.6.1) over all its lines, trimmed,
/// empty ones left out; a line that is not text is skipped.
pub(crate) fn list_members(headers: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|m| !m.is_empty())
}

/// Removes hop-by-hop headers, including those the `Connection` header names, and
/// `Upgrade` (an exchange that really switches protocols sets it again for its next hop:
/// `proxy::upgrade`). `Connection` cannot name `Host` away:
/// the target's host is part of the request, not of the hop (RFC 9110 §7.6.1 forbids a
/// sender to list such a field, and the upstream needs it). A message that came with
/// both `Transfer-Encoding` and `Content-Length` was framed by the former, and loses the
/// latter too: its next hop is framed anew (RFC 9112 §6.3 says a sender MUST remove it).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip_hop_by_hop_but(headers, 0);
}

/// [`strip_hop_by_hop`] for a response, which keeps `Trailer`: the field is end-to-end
/// (RFC 9110 §6.6.2; weft passes on a response's trailers), and hyper's HTTP/1.1 server
/// sends only the trailer fields it names. A request's goes: weft never passes on a
/// request's trailers.
pub(crate) fn strip_hop_by_hop_from_response(headers: &mut HeaderMap) {
    strip_hop_by_hop_but(headers, TRAILER_BIT);
}

/// [`strip_hop_by_hop`], leaving the [`STRIPPED`] fields in the mask `kept`.
fn strip_hop_by_hop_but(headers: &mut HeaderMap, kept: u16) {
    // One pass over the message's few fields finds which of the always-removed ones it
    // has (most have `Connection` at most, saying `keep-alive` or `close`): only those
    // cost a removal, and only a `Connection` that names other fields costs parsing.
    let mut present = 0u16;
    let mut names_others = false;
    for (name, value) in headers.iter() {
        let bit = stripped_bit(name);
        present |= bit;
        if bit == CONNECTION_BIT {
            let v = value.as_bytes();
            names_others |=
                !(v.eq_ignore_ascii_case(b"keep-alive") || v.eq_ignore_ascii_case(b"close"));
        }
    }
    if present == 0 {
        return;
    }
    // `Connection` names something else than `close`, `keep-alive` and the like (which
    // go anyway): those names are parsed and removed too.
    let tokens = || list_members(headers, header::CONNECTION);
    // A field `kept` goes too when `Connection` names it (RFC 9110 §7.6.1).
    let stripped_anyway = |token: &str| {
        token.eq_ignore_ascii_case("close")
            || STRIPPED
                .iter()
                .enumerate()
                .any(|(i, h)| kept & (1 << i) == 0 && token.eq_ignore_ascii_case(h.as_str()))
    };
    if names_others && !tokens().all(stripped_anyway) {
        let named: Vec<HeaderName> = tokens()
            .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
            .filter(|name| name != header::HOST)
            .collect();
        for name in &named {
            headers.remove(name);
        }
    }
    let present = present & !kept;
    for (i, name) in STRIPPED.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if present & TRANSFER_ENCODING_BIT != 0 {
        headers.remove(header::CONTENT_LENGTH);
    }
}

/// Fields that are not passed on in a message's trailers. The hop-by-hop ones
/// ([`strip_hop_by_hop`]): HTTP/2 forbids them anywhere (RFC 9113 §8.2.2, so the stream
/// would be reset after a whole body), and over HTTP/1.1 they would describe a hop the
/// trailers no longer travel. And those a recipient needs before the content, which RFC
/// 9110 §6.5.1 keeps out of trailers (a sender MUST NOT generate a trailer field whose
/// definition does not allow it): framing, routing, request modifiers, authentication,
/// response controls and content format. After the body they could only contradict the
/// header section, or be taken for it by a recipient that merges the two.
const NOT_TRAILERS: [HeaderName; 28] = [
    // Framing and routing.
    header::CONTENT_LENGTH,
    header::HOST,
    // Request modifiers: controls and conditionals.
    header::CACHE_CONTROL,
    header::EXPECT,
    header::MAX_FORWARDS,
    header::PRAGMA,
    header::RANGE,
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
    // Authentication and state.
    header::AUTHORIZATION,
    header::WWW_AUTHENTICATE,
    header::COOKIE,
    header::SET_COOKIE,
    HeaderName::from_static("authentication-info"),
    HeaderName::from_static("proxy-authentication-info"),
    // Response controls.
    header::AGE,
    header::EXPIRES,
    header::LOCATION,
    header::RETRY_AFTER,
    header::VARY,
    // Content format.
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::CONTENT_RANGE,
    header::CONTENT_LANGUAGE,
    header::CONTENT_LOCATION,
];

/// Removes from `trailers` the fields that do not travel in trailers ([`NOT_TRAILERS`]
/// and the hop-by-hop ones).
pub(crate) fn strip_from_trailers(trailers: &mut HeaderMap) {
    strip_hop_by_hop(trailers);
    for name in &NOT_TRAILERS {
        trailers.remove(name);
    }
}

/// Passes on a `Content-Length` that came as a list of one repeated length (`5, 5`, or
/// the same length on several lines, which a recipient may take as that length: RFC
/// 9110 §8.6) as that one length: a sender MUST NOT forward anything but digits. Lengths
/// that differ (a parser refuses those) leave no `Content-Length` at all. Leading zeros
/// are dropped (`010` goes on as `10`), as nginx writes it: a next hop that read `010`
/// as octal would frame the message differently.
pub(crate) fn one_content_length(headers: &mut HeaderMap) {
    let mut lines = headers.get_all(header::CONTENT_LENGTH).iter();
    let Some(first) = lines.next() else {
        return;
    };
    if lines.next().is_none() && canonical(first.as_bytes()) {
        return;
    }
    match content_length(headers) {
        Ok(Some(n)) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        _ => {
            headers.remove(header::CONTENT_LENGTH);
        }
    }
}

/// Whether `v` is a length as it goes on: digits, without leading zeros.
fn canonical(v: &[u8]) -> bool {
    !v.is_empty() && v.iter().all(u8::is_ascii_digit) && (v[0] != b'0' || v.len() == 1)
}

/// The length a message's `Content-Length` says, `None` when it has none; `Err` when its
/// lines are not one decimal length, repeated or not (RFC 9110 §8.6): a message whose
/// framing cannot be trusted (RFC 9112 §6.3).
pub(crate) fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ()> {
    let mut length = None;
    for member in list_members(headers, header::CONTENT_LENGTH) {
        let digits = member.bytes().all(|b| b.is_ascii_digit());
        match member.parse::<u64>() {
            Ok(n) if digits && length.is_none_or(|l| l == n) => length = Some(n),
            _ => return Err(()),
        }
    }
    // Lines that are all empty, or not text, say no length either.
    if length.is_none() && headers.contains_key(header::CONTENT_LENGTH) {
        return Err(());
    }
    Ok(length)
}

/// The transfer coding a message says it carries, when that is anything but `chunked`
/// alone (`gzip, chunked`, say): hyper undoes only `chunked`, so such a body cannot be
/// passed on with its framing removed (RFC 9112 §6.1).
pub(crate) fn other_transfer_coding(headers: &HeaderMap) -> Option<String> {
    let mut lines = headers.get_all(header::TRANSFER_ENCODING).iter();
    let first = lines.next()?;
    if lines.next().is_none() && first.as_bytes().eq_ignore_ascii_case(b"chunked") {
        return None;
    }
    // Empty members are allowed (RFC 9110 §5.6.1): `, chunked` is `chunked`.
    let named: Vec<&str> = list_members(headers, header::TRANSFER_ENCODING).collect();
    match named.as_slice() {
        [only] if only.eq_ignore_ascii_case("chunked") => None,
        _ => Some(named.join(", ")),
    }
}

/// Whether `chunked` is applied more than once (RFC 9112 §6.1: a sender MUST NOT): the
/// body's framing is then not what either reading of it says, a malformed message.
pub(crate) fn chunked_twice(headers: &HeaderMap) -> bool {
    list_members(headers, header::TRANSFER_ENCODING)
        .filter(|m| m.eq_ignore_ascii_case("chunked"))
        .nth(1)
        .is_some()
}

/// Joins several `Cookie` lines into one, with `; ` between them: an HTTP/2 client may
/// send each cookie as a line of its own, for compression, and they MUST be joined before
/// they go on over HTTP/1.1 (RFC 9113 §8.2.3).
pub(crate) fn join_cookies(headers: &mut HeaderMap) {
    let Entry::Occupied(mut lines) = headers.entry(header::COOKIE) else {
        return;
    };
    if lines.iter().nth(1).is_none() {
        return;
    }
    let mut joined = Vec::new();
    for line in lines.iter() {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(line.as_bytes());
    }
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        lines.insert(value);
    }
}

/// Removes the fields whose names have an underscore, as nginx does by default
/// (`underscores_in_headers off`): CGI-style upstreams read `X_Forwarded_For` and
/// `X-Forwarded-For` as one variable, so a client could pass its own off as what this
/// proxy says. Returns how many names went.
pub fn drop_underscored(headers: &mut HeaderMap) -> usize {
    if !headers.keys().any(|n| n.as_str().contains('_')) {
        return 0;
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().contains('_'))
        .cloned()
        .collect();
    for name in &names {
        headers.remove(name);
    }
    names.len()
}

/// `name`'s bit in a mask of [`STRIPPED`] names, or 0. Most of the fields a response
/// carries (`date`, `server`, `content-type`, `content-length`, `etag`,
/// `last-modified`) have names of a length no stripped name has, which one comparison
/// settles.
#[inline]
fn stripped_bit(name: &HeaderName) -> u16 {
    if !matches!(name.as_str().len(), 2 | 7 | 10 | 16..=19) {
        return 0;
    }
    STRIPPED
        .iter()
        .position(|h| h == name)
        .map_or(0, |i| 1 << i)
}

/// Adds the client's address to `X-Forwarded-For` and `Forwarded`, and says which host
/// and scheme it asked for: `https` when it came over TLS (`secure`), else `http`.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    client: Option<IpAddr>,
    host: Option<&HeaderValue>,
    secure: bool,
) {
    headers.reserve(Forwarding::FIELDS);
    Forwarding::new(client, secure).add(headers, host);
}

/// How one HTTP service names itself in `Via`, which a gateway MUST extend in each request
/// it forwards (RFC 9110 §7.6.3): with the protocol the request came in (`1.1`, or `2` for
/// HTTP/2) and a pseudonym rather than the host's name, `weft-` and eight hex digits drawn
/// from a key the process makes when it starts and the service's name. So a request that
/// comes back to the same service has its name in `Via` already ([`came_through`]): a
/// forwarding loop, which would otherwise go round until a limit broke it. Another service
/// of the same process, every reactor of this one, and another gateway each have a name of
/// their own, so chains of services and gateways go through.
///
/// [`came_through`]: Self::came_through
#[derive(Debug, Clone)]
pub struct Via {
    /// `weft-3f0c9a1e`.
    name: Arc<str>,
    /// What is added for a request that came in over HTTP/1.0, HTTP/1.1 and HTTP/2.
    members: [HeaderValue; 3],
}

impl Via {
    /// The name of the service called `service` in this process.
    pub fn of_service(service: &str) -> Self {
        use std::hash::BuildHasher;
        // Seeded from the system's randomness once per process.
        static KEY: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
        let drawn = KEY
            .get_or_init(std::collections::hash_map::RandomState::new)
            .hash_one(service);
        let name = format!("weft-{:08x}", drawn as u32);
        let members = ["1.0", "1.1", "2"]
            .map(|protocol| HeaderValue::from_str(&format!("{protocol} {name}")).expect("ASCII"));
        Self {
            name: name.into(),
            members,
        }
    }

    /// The pseudonym: `weft-` and eight hex digits.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds this service to `Via`, after any an earlier proxy put there.
    pub fn add(&self, headers: &mut HeaderMap, received: http::Version) {
        let [v10, v11, v2] = &self.members;
        let member = match received {
            http::Version::HTTP_2 => v2,
            http::Version::HTTP_10 => v10,
            _ => v11,
        };
        append_member(headers, header::VIA, member.clone());
    }

    /// Whether `Via` names this service as a proxy the request already went through: it
    /// has come round a loop.
    pub fn came_through(&self, headers: &HeaderMap) -> bool {
        let me = self.name.as_bytes();
        headers.get_all(header::VIA).iter().any(|line| {
            line.as_bytes().split(|&b| b == b',').any(|member| {
                // `received-protocol received-by [comment]`.
                member
                    .split(u8::is_ascii_whitespace)
                    .filter(|word| !word.is_empty())
                    .nth(1)
                    == Some(me)
            })
        })
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// What one client connection's requests tell upstreams of their client, made once per
/// connection rather than per request: its `X-Forwarded-For` entry, its `Forwarded`
/// element, and the element made last with the host it named (the requests of one
/// connection nearly always name the same host).
#[derive(Debug)]
pub struct Forwarding {
    /// The client's address (`unknown` without one): an `X-Forwarded-For` entry.
    ip: HeaderValue,
    /// `for=192.0.2.7`, `for="[::1]"` or `for=unknown`.
    for_param: String,
    /// `http`, or `https` when the client came over TLS.
    proto: &'static str,
    /// The element made last, and the host it named.
    last: RefCell<Option<LastElement>>,
}

impl Forwarding {
    /// The fields [`add`](Self::add) puts in at most: a caller reserves room for them in
    /// the map with whatever else it adds, since a map from the parser has none to spare
    /// and each growth moves every field.
    pub const FIELDS: usize = 5;

    /// The forwarding values of a client at `client` (over TLS when `secure`).
    pub fn new(client: Option<IpAddr>, secure: bool) -> Self {
        let ip = client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        let for_param = match client {
            Some(IpAddr::V6(v6)) => format!("for=\"[{v6}]\""),
            Some(IpAddr::V4(v4)) => format!("for={v4}"),
            None => "for=unknown".to_owned(),
        };
        Self {
            ip: HeaderValue::from_str(&ip).expect("an address is a header value"),
            for_param,
            proto: if secure { "https" } else { "http" },
            last: RefCell::default(),
        }
    }

    /// Adds the client to `X-Forwarded-For` and `Forwarded` (after what an earlier proxy
    /// put there), and sets `X-Real-IP`, `X-Forwarded-Host` and `X-Forwarded-Proto`, for
    /// a request that named `host`.
    pub fn add(&self, headers: &mut HeaderMap, host: Option<&HeaderValue>) {
        append_member(headers, X_FORWARDED_FOR, self.ip.clone());
        // `X-Real-IP` is one address, the client's as a proxy in front of the app saw it
        // (nginx's `proxy_set_header X-Real-IP $remote_addr`, which apps behind one
        // read): one a client sent never reaches the upstream as if this proxy had said it.
        headers.insert(X_REAL_IP, self.ip.clone());
        let (host, element) = self.element(host);
        // What the client sent as `X-Forwarded-Host` never reaches the upstream as if
        // this proxy had said it: the field is this request's host or absent.
        match host {
            Some(host) => headers.insert(X_FORWARDED_HOST, host.clone()),
            None => headers.remove(X_FORWARDED_HOST),
        };
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(self.proto));
        // A client's `Forwarded` that does not parse (an unbalanced quote, say) would
        // swallow this element into its own and so speak for this proxy: it is dropped,
        // and the upstream hears this proxy's element alone.
        extend_list(headers, header::FORWARDED, element, is_forwarded);
    }

    /// This client's `Forwarded` element for a request that named `host`, and `host` if
    /// it may be forwarded: only a host made of plain authority characters (RFC 3986
    /// `reg-name` unreserved characters, a port, an IPv6 literal) goes into the
    /// element's quoted string, or into `X-Forwarded-Host`. A request naming the host the
    /// last one named reuses what was made and checked for that one.
    fn element<'h>(&self, host: Option<&'h HeaderValue>) -> (Option<&'h HeaderValue>, HeaderValue) {
        let named = host.map_or(&[][..], HeaderValue::as_bytes);
        if let Some(last) = &*self.last.borrow()
            && *last.host == *named
        {
            return (host.filter(|_| last.plain), last.element.clone());
        }
        let host = host.filter(|h| {
            !h.is_empty()
                && h.as_bytes()
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b".-_~:[]".contains(b))
        });
        let mut text = self.for_param.clone();
        if let Some(host) = host.and_then(|h| h.to_str().ok()) {
            text.push_str(";host=\"");
            text.push_str(host);
            text.push('"');
        }
        text.push_str(";proto=");
        text.push_str(self.proto);
        let element = HeaderValue::from_str(&text).expect("checked characters");
        *self.last.borrow_mut() = Some(LastElement {
            host: named.into(),
            plain: host.is_some(),
            element: element.clone(),
        });
        (host, element)
    }
}

/// The `Forwarded` element made last, for the host it was made for.
#[derive(Debug)]
struct LastElement {
    /// The host the request named, as it named it (copied: a slice of the request would
    /// keep hyper's read buffer from being reused); empty for none.
    host: Box<[u8]>,
    /// Whether that host was plain authority characters, so forwarded.
    plain: bool,
    element: HeaderValue,
}

/// Adds `member` at the end of the list-valued field `name`: after every line an earlier
/// proxy set (their bytes as they came), as one line.
fn append_member(headers: &mut HeaderMap, name: HeaderName, member: HeaderValue) {
    extend_list(headers, name, member, |_| true);
}

/// [`append_member`], but lines of `name` whose bytes, joined, are not `valid` are
/// replaced rather than extended. What an earlier hop sent is kept as it came, bytes
/// that are not text included (as nginx's `$proxy_add_x_forwarded_for` keeps them): the
/// address a proxy appended after a client's junk still reaches the upstream.
fn extend_list(
    headers: &mut HeaderMap,
    name: HeaderName,
    member: HeaderValue,
    valid: impl Fn(&[u8]) -> bool,
) {
    match headers.entry(name) {
        Entry::Occupied(mut prior) => match joined_bytes(prior.iter()).filter(|b| valid(b)) {
            // Empty elements at either end are left out: a sender MUST NOT make them
            // (RFC 9110 §5.6.1), and appending would turn `a,` into `a,, ours`.
            Some(bytes) => match trim_list(&bytes) {
                [] => {
                    prior.insert(member);
                }
                kept => {
                    let mut line = Vec::with_capacity(kept.len() + 2 + member.len());
                    line.extend_from_slice(kept);
                    line.extend_from_slice(b", ");
                    line.extend_from_slice(member.as_bytes());
                    if let Ok(v) = HeaderValue::from_bytes(&line) {
                        prior.insert(v);
                    }
                }
            },
            // Not valid: nothing to add to.
            None => {
                prior.insert(member);
            }
        },
        Entry::Vacant(none) => {
            none.insert(member);
        }
    }
}

/// Whether `text` is a `Forwarded` field value (RFC 7239 §4): elements separated by
/// commas (with optional whitespace), each pairs `token=value` separated by semicolons,
/// no parameter twice in an element, a value a token or a quoted string. An element of
/// more than 8 parameters is refused too (RFC 7239 defines 4; a bound on the checking).
fn is_forwarded(text: &[u8]) -> bool {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    let ows = |i: &mut usize| {
        while text.get(*i).is_some_and(|&b| b == b' ' || b == b'\t') {
            *i += 1;
        }
    };
    let token = |i: &mut usize| {
        let start = *i;
        while text.get(*i).copied().is_some_and(tchar) {
            *i += 1;
        }
        *i > start
    };
    let quoted = |i: &mut usize| {
        *i += 1;
        while let Some(&b) = text.get(*i) {
            *i += 1;
            match b {
                b'"' => return true,
                b'\\' => match text.get(*i) {
                    Some(&next) if next == b'\t' || next >= b' ' && next != 0x7f => *i += 1,
                    _ => return false,
                },
                b'\t' | b' '..=b'~' | 0x80.. => {}
                _ => return false,
            }
        }
        false
    };
    let mut i = 0;
    loop {
        ows(&mut i);
        // An element: pairs, any of them empty, separated by semicolons, no parameter
        // twice (§4: MUST NOT; the four defined ones and a few extensions at most).
        let mut named: [&[u8]; 8] = [&[]; 8];
        let mut pairs = 0;
        loop {
            let start = i;
            if token(&mut i) {
                let name = &text[start..i];
                if named[..pairs].iter().any(|n| n.eq_ignore_ascii_case(name)) || pairs == 8 {
                    return false;
                }
                named[pairs] = name;
                pairs += 1;
                if text.get(i) != Some(&b'=') {
                    return false;
                }
                i += 1;
                let value = if text.get(i) == Some(&b'"') {
                    quoted(&mut i)
                } else {
                    token(&mut i)
                };
                if !value {
                    return false;
                }
            }
            if text.get(i) != Some(&b';') {
                break;
            }
            i += 1;
        }
        ows(&mut i);
        match text.get(i) {
            None => return true,
            Some(b',') => i += 1,
            Some(_) => return false,
        }
    }
}

/// The lines of a list-valued field as one list (RFC 9110 §5.3), their bytes joined with
/// `, `; `None` without a line.
fn joined_bytes<'a>(mut lines: impl Iterator<Item = &'a HeaderValue>) -> Option<Vec<u8>> {
    let mut bytes = lines.next()?.as_bytes().to_vec();
    for line in lines {
        bytes.extend_from_slice(b", ");
        bytes.extend_from_slice(line.as_bytes());
    }
    Some(bytes)
}

/// `list` without empty elements or whitespace at either end.
fn trim_list(list: &[u8]) -> &[u8] {
    let edge = |b: &u8| matches!(b, b',' | b' ' | b'\t');
    let start = list.iter().position(|b| !edge(b)).unwrap_or(list.len());
    let end = list.iter().rposition(|b| !edge(b)).map_or(start, |i| i + 1);
    &list[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_content_length_goes_on_as_one_rfc9110_8_6() {
        let length = |lines: &[&str]| {
            let mut h = HeaderMap::new();
            for line in lines {
                h.append(header::CONTENT_LENGTH, HeaderValue::from_str(line).unwrap());
            }
            one_content_length(&mut h);
            let all: Vec<_> = h.get_all(header::CONTENT_LENGTH).iter().cloned().collect();
            all.iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(length(&["5"]), ["5"]);
        assert_eq!(length(&["5, 5"]), ["5"]);
        assert_eq!(length(&["5", "5"]), ["5"]);
        assert_eq!(length(&["5,5, 5"]), ["5"]);
        assert!(length(&["5, 6"]).is_empty());
        assert!(length(&["+5"]).is_empty());
        assert!(length(&[]).is_empty());
        assert_eq!(length(&["010"]), ["10"]);
        assert_eq!(length(&["0"]), ["0"]);
        assert_eq!(length(&["000"]), ["0"]);
        assert_eq!(length(&["010", "10"]), ["10"]);
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret, Host"),
            ("host", "site.test"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
            ("accept", "*/*"),
            ("content-length", "3"),
        ]);
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        // Framed by its `Transfer-Encoding`, the message's `Content-Length` is void.
        assert_eq!(left, ["accept", "host"]);
    }

    #[test]
    fn a_connection_header_naming_only_hop_by_hop_headers_removes_just_those_present() {
        let mut h = map(&[
            ("server", "up"),
            ("connection", "Keep-Alive, close"),
            ("keep-alive", "timeout=5"),
            ("content-length", "3"),
        ]);
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-length", "server"]);

        let mut h = map(&[("te", "trailers"), ("upgrade", "h2c"), ("date", "now")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["date"]);
    }

    #[test]
    fn trailers_keep_only_the_fields_that_may_travel_in_them() {
        let mut t = map(&[
            ("x-checksum", "abc"),
            ("server-timing", "db;dur=5"),
            ("content-language", "de"),
            ("content-location", "/x"),
            ("authentication-info", "nextnonce=1"),
            ("proxy-authentication-info", "nextnonce=2"),
            ("set-cookie", "a=b"),
            ("content-length", "3"),
            ("connection", "close"),
            ("te", "trailers"),
        ]);
        strip_from_trailers(&mut t);
        let mut left: Vec<_> = t.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["server-timing", "x-checksum"]);
    }

    #[test]
    fn a_response_keeps_trailer_unless_its_connection_names_it() {
        let left = |pairs: &[(&str, &str)]| {
            let mut h = map(pairs);
            strip_hop_by_hop_from_response(&mut h);
            let mut left: Vec<_> = h.keys().map(|k| k.as_str().to_owned()).collect();
            left.sort_unstable();
            left
        };
        assert_eq!(
            left(&[("trailer", "x-sum"), ("connection", "keep-alive")]),
            ["trailer"]
        );
        // RFC 9110 §7.6.1: a field the `Connection` names goes, end-to-end or not.
        assert_eq!(
            left(&[
                ("trailer", "x-sum"),
                ("connection", "Trailer"),
                ("date", "now")
            ]),
            ["date"]
        );
        assert_eq!(
            left(&[("trailer", "x-sum"), ("connection", "close, te, trailer")]),
            Vec::<String>::new()
        );
        let mut request = map(&[("trailer", "x-sum")]);
        strip_hop_by_hop(&mut request);
        assert!(request.is_empty(), "a request's goes anyway");
    }

    #[test]
    fn every_always_removed_name_is_found_whatever_its_length() {
        for (i, name) in STRIPPED.iter().enumerate() {
            assert_eq!(stripped_bit(name), 1 << i, "{name}");
        }
        assert_eq!(
            stripped_bit(&header::TRANSFER_ENCODING),
            TRANSFER_ENCODING_BIT
        );
        for name in [
            header::HOST,
            header::USER_AGENT,
            header::EXPIRES,
            header::SERVER,
        ] {
            assert_eq!(stripped_bit(&name), 0, "{name}");
        }
    }

    #[test]
    fn a_connection_line_naming_a_field_is_read_beside_one_saying_close() {
        let mut h = map(&[
            ("connection", "close"),
            ("connection", "x-secret"),
            ("x-secret", "1"),
            ("date", "now"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["date"]);
    }

    #[test]
    fn forwarding_headers_extend_what_an_earlier_proxy_set() {
        let mut h = map(&[("x-forwarded-for", "10.0.0.1")]);
        let host = HeaderValue::from_static("example.test:8080");
        add_forwarded(
            &mut h,
            Some("192.0.2.7".parse().unwrap()),
            Some(&host),
            false,
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(h["x-forwarded-host"], "example.test:8080");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(
            h["forwarded"],
            "for=192.0.2.7;host=\"example.test:8080\";proto=http"
        );

        let mut h = map(&[("x-forwarded-host", "victim.example")]);
        let odd = HeaderValue::from_static("evil\";for=1.2.3.4");
        add_forwarded(&mut h, Some("::1".parse().unwrap()), Some(&odd), true);
        assert_eq!(h["forwarded"], "for=\"[::1]\";proto=https");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert!(h.get("x-forwarded-host").is_none());
    }

    #[test]
    fn a_connection_names_each_request_s_own_host() {
        let forwarding = Forwarding::new(Some("192.0.2.7".parse().unwrap()), false);
        for host in ["a.test", "b.test", "b.test", "app_1.internal", "a.test"] {
            let mut h = HeaderMap::new();
            forwarding.add(&mut h, Some(&HeaderValue::from_static(host)));
            assert_eq!(
                h["forwarded"],
                format!("for=192.0.2.7;host=\"{host}\";proto=http")
            );
            assert_eq!(h["x-forwarded-host"], host);
        }
        // A host that is not plain authority characters is left out each time, the
        // element made for it reused or not.
        for _ in 0..2 {
            let mut h = HeaderMap::new();
            forwarding.add(&mut h, Some(&HeaderValue::from_static("a\";for=1.2.3.4")));
            assert_eq!(h["forwarded"], "for=192.0.2.7;proto=http");
            assert!(h.get("x-forwarded-host").is_none());
        }
        let mut h = map(&[
            ("forwarded", "for=10.0.0.1"),
            ("x-forwarded-host", "victim.example"),
        ]);
        forwarding.add(&mut h, None);
        assert!(h.get("x-forwarded-host").is_none());
        assert_eq!(h["forwarded"], "for=10.0.0.1, for=192.0.2.7;proto=http");
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
    }

    #[test]
    fn a_forwarded_that_does_not_parse_is_dropped_so_it_cannot_swallow_this_proxy_s_element() {
        let forwarding = Forwarding::new(Some("192.0.2.7".parse().unwrap()), false);
        let ours = "for=192.0.2.7;proto=http";
        for bad in [
            "for=\"evil",
            "for=\"a\\",
            "for=1.2.3.4;by",
            "for=1.2.3.4 x",
            "for=a=b",
            "=x",
            "for=\"a\"b",
            "for=a;For=b",
            "for=a;by=b;host=c;proto=d;x1=1;x2=2;x3=3;x4=4;x5=5",
        ] {
            let mut h = map(&[("forwarded", bad)]);
            forwarding.add(&mut h, None);
            assert_eq!(h["forwarded"], ours, "{bad}");
        }
        for good in [
            "for=10.0.0.1",
            "For=\"[2001:db8::1]:4711\";proto=https;by=\"_hidden\"",
            "for=a,for=b , for=c",
            "for=\"quoted \\\" pair\"",
            ";;for=x;",
            "for=\"a, b\"",
            "for=a;by=b, for=c;by=d",
        ] {
            let mut h = map(&[("forwarded", good)]);
            forwarding.add(&mut h, None);
            assert_eq!(h["forwarded"], format!("{good}, {ours}"), "{good}");
        }
        assert!(!is_forwarded(b"for=\"a\x01\""));
    }

    #[test]
    fn no_empty_list_element_is_made_where_this_proxy_s_member_is_added() {
        let forwarding = Forwarding::new(Some("192.0.2.7".parse().unwrap()), false);
        for (prior, forwarded, xff) in [
            (",", "for=192.0.2.7;proto=http", "192.0.2.7"),
            (
                "for=a, ",
                "for=a, for=192.0.2.7;proto=http",
                "for=a, 192.0.2.7",
            ),
            (
                " ,for=a,",
                "for=a, for=192.0.2.7;proto=http",
                "for=a, 192.0.2.7",
            ),
        ] {
            let mut h = map(&[("forwarded", prior), ("x-forwarded-for", prior)]);
            forwarding.add(&mut h, None);
            assert_eq!(h["forwarded"], forwarded, "{prior:?}");
            assert_eq!(h["x-forwarded-for"], xff, "{prior:?}");
        }
    }

    #[test]
    fn every_line_an_earlier_proxy_set_is_kept_and_a_forwarded_that_is_none_is_replaced() {
        let forwarding = Forwarding::new(Some("192.0.2.7".parse().unwrap()), false);
        let mut h = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2"),
            ("forwarded", "for=10.0.0.1"),
            ("forwarded", "for=10.0.0.2"),
        ]);
        forwarding.add(&mut h, None);
        let all = |name| h.get_all(name).iter().collect::<Vec<_>>();
        assert_eq!(all("x-forwarded-for"), ["10.0.0.1, 10.0.0.2, 192.0.2.7"]);
        assert_eq!(
            all("forwarded"),
            ["for=10.0.0.1, for=10.0.0.2, for=192.0.2.7;proto=http"]
        );

        // Bytes that are not text: kept before this proxy's address in `X-Forwarded-For`
        // (an address after them is what a proxy in front appended); a `Forwarded` that
        // is not one is replaced.
        let mut h = HeaderMap::new();
        let binary = HeaderValue::from_bytes(b"\xff, 198.51.100.1").unwrap();
        h.insert(X_FORWARDED_FOR, binary.clone());
        h.insert(header::FORWARDED, binary);
        forwarding.add(&mut h, None);
        assert_eq!(
            h["x-forwarded-for"].as_bytes(),
            b"\xff, 198.51.100.1, 192.0.2.7"
        );
        assert_eq!(h["forwarded"], "for=192.0.2.7;proto=http");
    }

    #[test]
    fn cookie_lines_are_joined_with_a_semicolon_rfc9113_8_2_3() {
        let mut headers = map(&[("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")]);
        join_cookies(&mut headers);
        let lines: Vec<_> = headers.get_all("cookie").iter().collect();
        assert_eq!(lines, ["a=1; b=2; c=3"]);
        let mut one = map(&[("cookie", "a=1; b=2")]);
        join_cookies(&mut one);
        assert_eq!(
            one.get_all("cookie").iter().collect::<Vec<_>>(),
            ["a=1; b=2"]
        );
    }

    #[test]
    fn via_names_this_proxy_after_an_earlier_one_rfc9110_7_6_3() {
        let via = Via::of_service("web");
        let me = via.name();
        assert!(
            me.len() == 13
                && me.starts_with("weft-")
                && me[5..].bytes().all(|b| b.is_ascii_hexdigit()),
            "{me}"
        );
        assert_eq!(Via::of_service("web").name(), me, "one name per service");
        assert_ne!(Via::of_service("api").name(), me, "another service's");
        let mut headers = map(&[]);
        via.add(&mut headers, http::Version::HTTP_11);
        assert_eq!(
            headers.get_all("via").iter().collect::<Vec<_>>(),
            [format!("1.1 {me}").as_str()]
        );
        let mut headers = map(&[("via", "1.0 fred"), ("via", "1.1 p.example.net")]);
        via.add(&mut headers, http::Version::HTTP_2);
        assert_eq!(
            headers.get_all("via").iter().collect::<Vec<_>>(),
            [format!("1.0 fred, 1.1 p.example.net, 2 {me}").as_str()]
        );
    }

    #[test]
    fn a_request_that_went_through_this_service_before_is_known_by_its_via() {
        let via = Via::of_service("web");
        let me = via.name();
        let other = Via::of_service("inner");
        for (line, looped) in [
            ("1.1 p.example.net".to_owned(), false),
            ("1.1 weft-00000000".to_owned(), false),
            ("1.1 weft".to_owned(), false),
            (format!("1.1 {}", other.name()), false),
            (format!("1.1 {me}"), true),
            (format!("1.0 fred, 2 {me} (weft)"), true),
            (format!("1.0 fred,1.1   {me}"), true),
            (format!("1.1 x (via {me})"), false),
        ] {
            let headers = map(&[("via", line.as_str())]);
            assert_eq!(via.came_through(&headers), looped, "{line}");
        }
        let mut headers = map(&[("via", "1.0 fred")]);
        other.add(&mut headers, http::Version::HTTP_11);
        assert!(
            !via.came_through(&headers),
            "through another service: no loop"
        );
        via.add(&mut headers, http::Version::HTTP_11);
        assert!(via.came_through(&headers));
    }

    #[test]
    fn a_transfer_coding_other_than_chunked_alone_is_named() {
        let coding = |pairs: &[(&str, &str)]| other_transfer_coding(&map(pairs));
        assert_eq!(coding(&[]), None);
        assert_eq!(coding(&[("transfer-encoding", "chunked")]), None);
        assert_eq!(coding(&[("transfer-encoding", "Chunked")]), None);
        assert_eq!(coding(&[("transfer-encoding", ", chunked")]), None);
        assert_eq!(
            coding(&[("transfer-encoding", "gzip, chunked")]).as_deref(),
            Some("gzip, chunked")
        );
        assert_eq!(
            coding(&[("transfer-encoding", "gzip")]).as_deref(),
            Some("gzip")
        );
        assert_eq!(
            coding(&[
                ("transfer-encoding", "gzip"),
                ("transfer-encoding", "chunked")
            ])
            .as_deref(),
            Some("gzip, chunked")
        );
    }

    #[test]
    fn fields_with_underscored_names_are_dropped_and_counted() {
        let mut h = map(&[
            ("x_forwarded_for", "6.6.6.6"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x_real_ip", "6.6.6.6"),
            ("accept", "*/*"),
        ]);
        assert_eq!(drop_underscored(&mut h), 2);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "x-forwarded-for"]);
        assert_eq!(drop_underscored(&mut h), 0);
    }
}
