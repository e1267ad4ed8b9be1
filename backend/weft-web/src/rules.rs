//! The request rules of RFC 9112 and RFC 9110 that hyper leaves to the server, checked
//! once for every request before it is routed, whichever way it then goes.

use std::cell::RefCell;
use std::net::Ipv6Addr;

use http::HeaderMap;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, StatusCode, Version};

use crate::headers::{chunked_twice, other_transfer_coding};
use crate::metrics::Refusal;

/// A request answered with an error before it was routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) status: StatusCode,
    pub(crate) reason: Refusal,
    /// What the client is told; never echoes what it sent.
    pub(crate) detail: &'static str,
}

impl Refused {
    fn bad_host(detail: &'static str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            reason: Refusal::Host,
            detail,
        }
    }
}

/// The most header lines a request may have: hyper's HTTP/1.1 parser's default bound,
/// which it answers with 431 itself (setting it would move its parse buffer to the heap).
const MAX_FIELD_LINES: usize = 100;

/// The header lines of an HTTP/2 request as HTTP/1.1 would carry them: its `Cookie`
/// crumbs (RFC 9113 §8.2.3: a client may send each cookie as a line of its own, for
/// compression) are the one line they are joined into.
fn field_lines(headers: &HeaderMap) -> usize {
    let crumbs = headers.get_all(header::COOKIE).iter().count();
    headers.len() - crumbs.saturating_sub(1)
}

/// The size of an HTTP/2 request's header list as RFC 9113 §6.5.2 counts it (each field's
/// name and value and 32 bytes more), its pseudo-header fields included, as the h2 crate
/// counts it against `SETTINGS_MAX_HEADER_LIST_SIZE`.
fn header_list_size(head: &Parts) -> usize {
    let field = |name: usize, value: usize| name + value + 32;
    let uri = &head.uri;
    let pseudo = field(":method".len(), head.method.as_str().len())
        + field(
            ":path".len(),
            uri.path_and_query().map_or(0, |p| p.as_str().len()),
        )
        + uri
            .scheme_str()
            .map_or(0, |s| field(":scheme".len(), s.len()))
        + uri
            .authority()
            .map_or(0, |a| field(":authority".len(), a.as_str().len()));
    pseudo
        + head
            .headers
            .iter()
            .map(|(name, value)| field(name.as_str().len(), value.len()))
            .sum::<usize>()
}

/// Checks a request's head against the message rules, and makes its `Host` the one the
/// target names when the two differ. An HTTP/2 header list over `max_header_bytes` is
/// refused here (the h2 crate, which would answer it unseen and uncounted, is given a
/// larger bound: [`crate::protocol::h2_builder`]).
pub(crate) fn check(
    head: &mut Parts,
    last_host: &LastHost,
    max_header_bytes: usize,
) -> Result<(), Refused> {
    // RFC 9110 §9.3.6: CONNECT asks for a tunnel, which only a forward proxy makes. This
    // service is an origin (and a reverse proxy) for every path, so it never forwards it.
    if head.method == Method::CONNECT {
        return Err(Refused {
            status: StatusCode::NOT_IMPLEMENTED,
            reason: Refusal::Method,
            detail: "CONNECT is not served: this is not a forward proxy",
        });
    }
    // RFC 9110 §9.3.8: TRACE echoes the request back, credentials and all, from whichever
    // upstream it reaches (cross-site tracing); nginx does not serve it either.
    if head.method == Method::TRACE {
        return Err(Refused {
            status: StatusCode::NOT_IMPLEMENTED,
            reason: Refusal::Method,
            detail: "TRACE is not served",
        });
    }
    // RFC 9112 §3.2.4, RFC 9113 §8.3.1: the asterisk form asks about the server as a
    // whole, for OPTIONS alone; with another method it names no resource (nginx: 400).
    if head.uri.path() == "*" && head.method != Method::OPTIONS {
        return Err(Refused {
            status: StatusCode::BAD_REQUEST,
            reason: Refusal::Malformed,
            detail: "the target * is for OPTIONS only",
        });
    }
    if head.version < Version::HTTP_2 {
        // One look for the field on the common path, where a request has none.
        if head.headers.contains_key(header::TRANSFER_ENCODING) {
            transfer_coding(&head.headers)?;
        }
    } else if field_lines(&head.headers) > MAX_FIELD_LINES {
        // HTTP/1.1's parser takes at most this many (and answers 431 itself); HTTP/2 bounds
        // a head by its bytes only (SETTINGS_MAX_HEADER_LIST_SIZE), so it is counted here.
        return Err(Refused {
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            reason: Refusal::HeadTooLarge,
            detail: "more than 100 header lines",
        });
    } else if header_list_size(head) > max_header_bytes {
        return Err(Refused {
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            reason: Refusal::HeadTooLarge,
            detail: "the header list is larger than max_header_bytes",
        });
    } else if head
        .headers
        .values()
        .any(|v| has_edge_whitespace(v.as_bytes()))
    {
        // RFC 9113 §8.2.1: a field value MUST NOT start or end with whitespace (HTTP/1.1
        // parsing trims it); such a request is malformed and MUST NOT be forwarded.
        return Err(Refused {
            status: StatusCode::BAD_REQUEST,
            reason: Refusal::Malformed,
            detail: "a header field value starts or ends with whitespace",
        });
    } else if head.headers.keys().any(|name| name.as_str().contains('"')) {
        // RFC 9110 §5.1: a field name is a token. The h2 crate refuses every other
        // delimiter in one, but lets `"` through (the http crate's names allow it), which
        // would go to an HTTP/1.1 upstream as a line its parser refuses, as HTTP/1.1's
        // here does.
        return Err(Refused {
            status: StatusCode::BAD_REQUEST,
            reason: Refusal::Malformed,
            detail: "a header field name is not a token (it holds a double quote)",
        });
    }
    let mut hosts = head.headers.get_all(header::HOST).iter();
    let host = hosts.next();
    // RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host, and
    // to any request with more than one Host line or an invalid Host value.
    if hosts.next().is_some() {
        return Err(Refused::bad_host("more than one Host header"));
    }
    match host {
        None if head.version == Version::HTTP_11 => {
            return Err(Refused::bad_host("an HTTP/1.1 request needs a Host header"));
        }
        // RFC 9113 §8.3.1: HTTP/2 names the host in `:authority` (the target's
        // authority), or else in Host.
        None if head.version >= Version::HTTP_2 && head.uri.authority().is_none() => {
            return Err(Refused::bad_host(
                "an HTTP/2 request needs :authority or a Host header",
            ));
        }
        // RFC 9110 §4.2.1: an http(s) URI never has an empty host, and the target URI is
        // rebuilt from Host, so an empty Host is an invalid value here too.
        Some(value) if value.is_empty() => {
            return Err(Refused::bad_host("the Host header is empty"));
        }
        Some(value) if !last_host.holds(value.as_bytes()) => {
            return Err(Refused::bad_host("the Host header is not a host[:port]"));
        }
        _ => {}
    }
    // RFC 9112 §3.2.2: with an absolute-form target, the host is the target's authority
    // and Host is ignored; replace it, so what is forwarded names the same host.
    // Over HTTP/1.1 only an http or https target is served (RFC 9112 §3.2.2), without
    // credentials (RFC 9110 §4.2.4: userinfo in an http URI is an error) and with a port
    // that is one.
    if let Some(authority) = head.uri.authority() {
        // RFC 9113 §8.3.1: a server SHOULD treat an HTTP/2 request whose Host names another
        // host than its `:authority` as malformed: the two would route it differently.
        if head.version >= Version::HTTP_2
            && let Some(host) = host
            && !same_host(authority.as_str(), host.as_bytes(), head.uri.scheme_str())
        {
            return Err(Refused::bad_host(
                "the Host header names another host than :authority",
            ));
        }
        if head.version < Version::HTTP_2
            && !matches!(head.uri.scheme_str(), Some("http" | "https"))
        {
            return Err(Refused::bad_host(
                "the target's scheme is not http or https",
            ));
        }
        let named = authority.as_str();
        if named.contains('@') {
            return Err(Refused::bad_host(
                "the target's authority carries credentials",
            ));
        }
        let value = HeaderValue::from_str(named)
            .ok()
            .filter(|v| is_valid_host(v.as_bytes()))
            .ok_or(Refused::bad_host(
                "the target's authority is not a host[:port]",
            ))?;
        head.headers.insert(header::HOST, value);
    }
    Ok(())
}

/// An HTTP/1.1 body's transfer coding, refused unless it is `chunked` alone.
fn transfer_coding(headers: &HeaderMap) -> Result<(), Refused> {
    if chunked_twice(headers) {
        return Err(Refused {
            status: StatusCode::BAD_REQUEST,
            reason: Refusal::Malformed,
            detail: "chunked is applied more than once (RFC 9112 §6.1)",
        });
    }
    // RFC 9112 §6.1: hyper undoes `chunked` only; a body in any other coding could be
    // neither served nor passed on as it is, its framing gone. nginx answers 501 too.
    if other_transfer_coding(headers).is_some() {
        return Err(Refused {
            status: StatusCode::NOT_IMPLEMENTED,
            reason: Refusal::TransferCoding,
            detail: "a transfer coding other than chunked is not served",
        });
    }
    Ok(())
}

/// Whether `authority` and the Host value `host` name one host and port, ignoring case
/// and the scheme's default port (`example.test` and `EXAMPLE.test:443` over https).
fn same_host(authority: &str, host: &[u8], scheme: Option<&str>) -> bool {
    let default = match scheme {
        Some("https") => ":443",
        _ => ":80",
    };
    let a = authority.as_bytes();
    let a = a.strip_suffix(default.as_bytes()).unwrap_or(a);
    let h = host.strip_suffix(default.as_bytes()).unwrap_or(host);
    a.eq_ignore_ascii_case(h)
}

/// Whether a field value begins or ends with a space or a tab.
fn has_edge_whitespace(value: &[u8]) -> bool {
    matches!(value.first(), Some(b' ' | b'\t')) || matches!(value.last(), Some(b' ' | b'\t'))
}

/// The last `Host` value one connection's requests carried that held: the requests of a
/// connection nearly always name the same host, and comparing its bytes costs less than
/// checking each character again. Copied, not shared (a slice of the request would keep
/// hyper's read buffer from being reused), and only up to [`LastHost::MAX`] bytes.
#[derive(Debug, Default)]
pub(crate) struct LastHost(RefCell<Option<Box<[u8]>>>);

impl LastHost {
    /// The longest value kept.
    const MAX: usize = 255;

    /// Whether `value` is a valid Host value: the last one that was, or checked now.
    fn holds(&self, value: &[u8]) -> bool {
        if self.0.borrow().as_deref() == Some(value) {
            return true;
        }
        let valid = is_valid_host(value);
        if valid && value.len() <= Self::MAX {
            *self.0.borrow_mut() = Some(value.into());
        }
        valid
    }
}

/// `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2): an IP literal in brackets,
/// or a name of unreserved, percent-encoded and sub-delim characters.
pub(crate) fn is_valid_host(value: &[u8]) -> bool {
    let (host_ok, port) = match value.strip_prefix(b"[") {
        Some(rest) => match rest.iter().position(|&b| b == b']') {
            Some(end) => {
                let literal = std::str::from_utf8(&rest[..end]).ok();
                let ok = literal.is_some_and(|l| l.parse::<Ipv6Addr>().is_ok());
                (ok, &rest[end + 1..])
            }
            None => (false, &[][..]),
        },
        None => {
            let end = value.iter().position(|&b| b == b':').unwrap_or(value.len());
            (is_reg_name(&value[..end]), &value[end..])
        }
    };
    // Digits that make a port: at most 65535 (an empty port is allowed, RFC 3986 §3.2.3).
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', [])) => true,
        Some((b':', digits)) => {
            digits.iter().all(u8::is_ascii_digit)
                && std::str::from_utf8(digits).is_ok_and(|d| d.parse::<u16>().is_ok())
        }
        Some(_) => false,
    };
    host_ok && port_ok
}

/// The bytes a reg-name may hold as they are (RFC 3986 §3.2.2): unreserved and
/// sub-delims; `%` starts an escape and is checked apart.
const REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = matches!(b as u8,
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
            | b'-' | b'.' | b'_' | b'~'
            | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=');
        b += 1;
    }
    table
};

fn is_reg_name(name: &[u8]) -> bool {
    let mut i = 0;
    while i < name.len() {
        match name[i] {
            b'%' => {
                let hex = name.get(i + 1..i + 3);
                if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
            }
            b if REG_NAME[usize::from(b)] => i += 1,
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    use http::Request;

    fn request(raw_target: &str, version: Version, hosts: &[&str]) -> Parts {
        let mut builder = Request::get(raw_target).version(version);
        for host in hosts {
            builder = builder.header(header::HOST, *host);
        }
        builder.body(()).unwrap().into_parts().0
    }

    /// `max_header_bytes` as configured by default.
    const LIMIT: usize = 16 * 1024;

    fn reason(r: &mut Parts) -> Option<Refusal> {
        check(r, &LastHost::default(), LIMIT)
            .err()
            .map(|e| e.reason)
    }

    #[test]
    fn an_http2_host_naming_another_host_than_its_authority_is_malformed_rfc9113_8_3_1() {
        let h2 = |target: &str, host: &str| {
            let mut r = request(target, Version::HTTP_2, &[host]);
            reason(&mut r)
        };
        assert_eq!(h2("https://a.test/", "evil.test"), Some(Refusal::Host));
        assert_eq!(h2("https://a.test/", "a.test:8443"), Some(Refusal::Host));
        for same in ["a.test", "A.Test", "a.test:443"] {
            assert_eq!(h2("https://a.test/", same), None, "{same}");
        }
        assert_eq!(h2("http://a.test:80/", "a.test"), None);
        // HTTP/1.1's absolute form: Host is ignored, and replaced (RFC 9112 §3.2.2).
        let mut r = request("http://a.test/", Version::HTTP_11, &["other.test"]);
        assert_eq!(reason(&mut r), None);
        assert_eq!(r.headers[header::HOST], "a.test");
    }

    #[test]
    fn the_asterisk_form_is_for_options_only_rfc9112_3_2_4() {
        for version in [Version::HTTP_11, Version::HTTP_2] {
            let mut get = request("*", version, &["a"]);
            assert_eq!(reason(&mut get), Some(Refusal::Malformed), "{version:?}");
            let mut options = request("*", version, &["a"]);
            options.method = Method::OPTIONS;
            assert_eq!(reason(&mut options), None, "{version:?}");
        }
    }

    #[test]
    fn a_transfer_coding_other_than_chunked_is_not_implemented_rfc9112_6_1() {
        let with_coding = |coding: &str| {
            let mut r = request("/", Version::HTTP_11, &["a"]);
            r.headers
                .insert(header::TRANSFER_ENCODING, coding.parse().unwrap());
            check(&mut r, &LastHost::default(), LIMIT).err()
        };
        assert_eq!(with_coding("chunked"), None);
        for other in ["gzip, chunked", "deflate,chunked"] {
            let refused = with_coding(other).expect(other);
            assert_eq!(
                (refused.status, refused.reason),
                (StatusCode::NOT_IMPLEMENTED, Refusal::TransferCoding),
                "{other}"
            );
        }
    }

    /// RFC 9112 §6.1: chunked MUST NOT be applied twice; such a body's length is what
    /// neither reading says, so the request is malformed, whether in one line or two.
    #[test]
    fn a_body_chunked_twice_is_malformed() {
        for lines in [&["chunked, chunked"][..], &["chunked", "Chunked"]] {
            let mut r = request("/", Version::HTTP_11, &["a"]);
            for line in lines {
                r.headers
                    .append(header::TRANSFER_ENCODING, line.parse().unwrap());
            }
            let refused = check(&mut r, &LastHost::default(), LIMIT).expect_err("refused");
            assert_eq!(
                (refused.status, refused.reason),
                (StatusCode::BAD_REQUEST, Refusal::Malformed),
                "{lines:?}"
            );
        }
    }

    #[test]
    fn an_http2_head_of_more_than_100_lines_is_too_large_as_over_http1_cookie_crumbs_as_one() {
        let with_lines = |fields: usize, cookies: usize| {
            let mut r = request("http://a/", Version::HTTP_2, &[]);
            for i in 0..fields {
                let name = header::HeaderName::try_from(format!("x-{i}")).unwrap();
                r.headers.insert(name, HeaderValue::from_static("v"));
            }
            for i in 0..cookies {
                let crumb = HeaderValue::try_from(format!("c{i}=v")).unwrap();
                r.headers.append(header::COOKIE, crumb);
            }
            reason(&mut r)
        };
        assert_eq!(with_lines(100, 0), None);
        assert_eq!(with_lines(101, 0), Some(Refusal::HeadTooLarge));
        // 99 fields and 200 cookies, one `Cookie` line once joined.
        assert_eq!(with_lines(99, 200), None);
        assert_eq!(with_lines(100, 2), Some(Refusal::HeadTooLarge));
    }

    /// An HTTP/2 header list over `max_header_bytes`, counted as RFC 9113 §6.5.2 counts
    /// it, is refused here, where it is counted (the h2 crate answered it unseen).
    #[test]
    fn an_http2_header_list_over_max_header_bytes_is_too_large() {
        let with_value = |version: Version, len: usize| {
            let host: &[&str] = if version == Version::HTTP_2 {
                &[]
            } else {
                &["a"]
            };
            let mut r = request("http://a/", version, host);
            let value = HeaderValue::try_from("v".repeat(len)).unwrap();
            r.headers.insert("x-big", value);
            reason(&mut r)
        };
        // :method GET, :path /, :scheme http, :authority a: 42 + 38 + 43 + 43 bytes.
        let pseudo = 42 + 38 + 43 + 43;
        let fits = LIMIT - pseudo - ("x-big".len() + 32);
        assert_eq!(with_value(Version::HTTP_2, fits), None);
        assert_eq!(
            with_value(Version::HTTP_2, fits + 1),
            Some(Refusal::HeadTooLarge)
        );
        // HTTP/1.1's head is bounded by hyper's parser, before the rules.
        assert_eq!(with_value(Version::HTTP_11, fits + 1), None);
    }

    #[test]
    fn an_http2_field_value_with_whitespace_at_an_edge_is_malformed_rfc9113_8_2_1() {
        let with_value = |value: &str| {
            let mut r = request("http://a/", Version::HTTP_2, &[]);
            r.headers.insert("x-thing", value.parse().unwrap());
            reason(&mut r)
        };
        assert_eq!(with_value("a b"), None);
        for bad in [" a", "a ", "\ta", "a\t"] {
            assert_eq!(with_value(bad), Some(Refusal::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn an_http2_field_name_with_a_double_quote_is_malformed_rfc9110_5_1() {
        let with_name = |name: &str| {
            let mut r = request("http://a/", Version::HTTP_2, &[]);
            let name = http::header::HeaderName::from_lowercase(name.as_bytes()).unwrap();
            r.headers.insert(name, "v".parse().unwrap());
            reason(&mut r)
        };
        assert_eq!(with_name("x-a!#$%&'*+.^_`|~9"), None);
        assert_eq!(with_name("x\""), Some(Refusal::Malformed));
    }

    #[test]
    fn host_is_required_once_in_http_1_1_rfc9112_3_2() {
        let v11 = Version::HTTP_11;
        assert_eq!(reason(&mut request("/", v11, &[])), Some(Refusal::Host));
        assert_eq!(
            reason(&mut request("/", v11, &["a", "b"])),
            Some(Refusal::Host)
        );
        assert_eq!(reason(&mut request("/", v11, &["a"])), None);
        assert_eq!(reason(&mut request("/", Version::HTTP_10, &[])), None);
        assert_eq!(
            reason(&mut request("/", Version::HTTP_10, &["a", "a"])),
            Some(Refusal::Host)
        );
    }

    #[test]
    fn a_host_value_is_a_host_and_an_optional_port() {
        for good in [
            "example.test",
            "example.test:8080",
            "127.0.0.1:80",
            "[::1]:8080",
            "[2001:db8::1]",
            "xn--caf-dma.test",
            "a%2Db",
            "-._~!$&'()*+,;=",
            "",
            "h:",
        ] {
            assert!(is_valid_host(good.as_bytes()), "{good:?}");
        }
        for bad in [
            "user@example.test",
            "a b",
            "a.test, b.test",
            "a:80:80",
            "a:x",
            "[::1",
            "[nope]",
            "[::1]x",
            "a/b",
            "a%zz",
            "a%4",
            "caf\u{e9}.test",
            "a\\b",
            "a\tb",
            "a:99999",
            "a:65536",
        ] {
            assert!(!is_valid_host(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn an_absolute_form_target_sets_the_host_rfc9112_3_2_2() {
        let mut r = request("http://site.test:81/x", Version::HTTP_11, &["other"]);
        assert_eq!(reason(&mut r), None);
        assert_eq!(r.headers[header::HOST], "site.test:81");
        // Only http and https targets, without credentials, with a port that is one.
        for bad in [
            "ftp://site.test/x",
            "http://user:pw@site.test/x",
            "http://site.test:99999/x",
        ] {
            let mut r = request(bad, Version::HTTP_11, &["site.test"]);
            assert_eq!(reason(&mut r), Some(Refusal::Host), "{bad}");
        }
    }

    #[test]
    fn connect_is_not_implemented_rfc9110_9_3_6() {
        let (mut r, ()) = Request::connect("example.test:443")
            .header(header::HOST, "example.test:443")
            .body(())
            .unwrap()
            .into_parts();
        let refused = check(&mut r, &LastHost::default(), LIMIT).unwrap_err();
        assert_eq!(
            (refused.status, refused.reason),
            (StatusCode::NOT_IMPLEMENTED, Refusal::Method)
        );
    }

    #[test]
    fn a_connection_keeps_its_last_valid_host_and_checks_any_other_value() {
        let last = LastHost::default();
        assert!(last.holds(b"example.test:8080"));
        assert!(last.holds(b"example.test:8080"), "the same value again");
        for bad in [&b"example.test:80:80"[..], b"a b", b"example.test:8080 "] {
            assert!(!last.holds(bad), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(last.holds(b"other.test"));
        // Refused after a valid one, in a request as alone.
        let v11 = Version::HTTP_11;
        let mut good = request("/", v11, &["example.test"]);
        let mut bad = request("/", v11, &["exa mple.test"]);
        assert_eq!(check(&mut good, &last, LIMIT), Ok(()));
        assert_eq!(
            check(&mut bad, &last, LIMIT).err().map(|e| e.reason),
            Some(Refusal::Host)
        );
        // A value too long to keep is still checked each time.
        let long = "a".repeat(LastHost::MAX + 1);
        assert!(last.holds(long.as_bytes()));
        assert_eq!(last.0.borrow().as_deref(), Some(&b"example.test"[..]));
    }
}
