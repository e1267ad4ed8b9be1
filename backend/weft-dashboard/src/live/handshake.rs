//! The opening handshake of RFC 6455 §4.2: the client's request is checked before anything
//! is upgraded, and each way it can be wrong gets the answer the RFC names.

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::error::ApiError;

/// The one version of the protocol there is (RFC 6455 §4.1).
const VERSION: &str = "13";

/// Why a handshake was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not an HTTP/1.1 (or later) GET (§4.2.1, item 1).
    NotGet,
    /// No `Upgrade: websocket` and `Connection: Upgrade` (§4.2.1, items 3 and 4).
    NotUpgrade,
    /// `Sec-WebSocket-Version` is missing or not 13 (§4.2.1 item 6, §4.4).
    Version,
    /// `Sec-WebSocket-Key` is missing, repeated, or not the base64 of 16 bytes (§4.2.1,
    /// item 5).
    Key,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let mut response = match self {
            Self::NotGet => {
                ApiError::BadRequest("the WebSocket handshake is an HTTP/1.1 GET".into())
                    .into_response()
            }
            Self::NotUpgrade => ApiError::UpgradeRequired(
                "/ws is a WebSocket: send `Upgrade: websocket` and `Connection: Upgrade`",
            )
            .into_response(),
            Self::Version => {
                ApiError::UpgradeRequired("this feed speaks WebSocket version 13 only")
                    .into_response()
            }
            Self::Key => ApiError::BadRequest(
                "Sec-WebSocket-Key must be the base64 encoding of 16 bytes".into(),
            )
            .into_response(),
        };
        if response.status() == StatusCode::UPGRADE_REQUIRED {
            // RFC 9110 §15.5.22 wants the protocol to upgrade to; §4.4 the versions served.
            let h = response.headers_mut();
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            h.insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static(VERSION),
            );
        }
        response
    }
}

/// Whether the comma-separated values of header `name` include `token`, in any case.
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The one value of header `name`, if it appears exactly once.
fn only<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => Some(v),
        _ => None,
    }
}

/// A nonce of 16 bytes in base64 is 22 characters of the alphabet and `==`.
fn is_nonce(key: &[u8]) -> bool {
    key.len() == 24
        && key[22..] == *b"=="
        && key[..22]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

/// Checks a client's opening handshake; the `Sec-WebSocket-Accept` to answer it with.
pub(crate) fn check(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Result<HeaderValue, Refused> {
    if !matches!(*method, Method::GET | Method::HEAD) || version < Version::HTTP_11 {
        return Err(Refused::NotGet);
    }
    // HEAD is answered as GET would be, without the body (RFC 9110 §9.3.2); it never
    // upgrades, so as a GET that did not ask to: 426.
    if method == Method::HEAD {
        return Err(Refused::NotUpgrade);
    }
    if !has_token(headers, header::UPGRADE, "websocket")
        || !has_token(headers, header::CONNECTION, "upgrade")
    {
        return Err(Refused::NotUpgrade);
    }
    if only(headers, &header::SEC_WEBSOCKET_VERSION).is_none_or(|v| v != VERSION) {
        return Err(Refused::Version);
    }
    let key = only(headers, &header::SEC_WEBSOCKET_KEY)
        .map(HeaderValue::as_bytes)
        .filter(|k| is_nonce(k))
        .ok_or(Refused::Key)?;
    HeaderValue::from_str(&derive_accept_key(key)).map_err(|_| Refused::Key)
}

/// The `101 Switching Protocols` that completes the handshake (§4.2.2, item 5).
pub(crate) fn switching(accept: HeaderValue) -> Response {
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::UPGRADE, HeaderValue::from_static("websocket")),
            (header::CONNECTION, HeaderValue::from_static("Upgrade")),
            (header::SEC_WEBSOCKET_ACCEPT, accept),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), v.parse().unwrap());
        }
        h
    }

    fn valid() -> Vec<(HeaderName, &'static str)> {
        vec![
            (header::UPGRADE, "WebSocket"),
            (header::CONNECTION, "keep-alive, Upgrade"),
            (header::SEC_WEBSOCKET_VERSION, "13"),
            (header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ=="),
        ]
    }

    #[test]
    fn the_rfcs_example_is_accepted_with_its_accept_value() {
        let accept = check(&Method::GET, Version::HTTP_11, &headers(&valid())).unwrap();
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn a_key_that_is_not_16_bytes_of_base64_is_refused() {
        for key in [
            "",
            "abc",
            "dGhlIHNhbXBsZSBub25jZQ",
            "dGhlIHNhbXBsZSBub25jZSE=",
            "dGhlIHNhbXBsZSBub25jZQ==dGhl",
            "dGhlIHNhbXBsZSBub25j*Q==",
        ] {
            let mut h = valid();
            h[3].1 = key;
            let got = check(&Method::GET, Version::HTTP_11, &headers(&h));
            assert_eq!(got, Err(Refused::Key), "{key:?}");
        }
        let mut twice = valid();
        twice.push((header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(
            check(&Method::GET, Version::HTTP_11, &headers(&twice)),
            Err(Refused::Key)
        );
    }

    #[test]
    fn another_version_gets_426_naming_13() {
        let mut h = valid();
        h[2].1 = "8";
        let refused = check(&Method::GET, Version::HTTP_11, &headers(&h)).unwrap_err();
        assert_eq!(refused, Refused::Version);
        let r = refused.into_response();
        assert_eq!(r.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(r.headers()[header::SEC_WEBSOCKET_VERSION], "13");
    }

    #[test]
    fn a_plain_request_or_http_1_0_is_not_a_handshake() {
        let h = headers(&valid()[2..]);
        assert_eq!(
            check(&Method::GET, Version::HTTP_11, &h),
            Err(Refused::NotUpgrade)
        );
        let all = headers(&valid());
        assert_eq!(
            check(&Method::GET, Version::HTTP_10, &all),
            Err(Refused::NotGet)
        );
        assert_eq!(
            check(&Method::POST, Version::HTTP_11, &all),
            Err(Refused::NotGet)
        );
        // HEAD as GET would be answered without upgrading: 426, never 101.
        assert_eq!(
            check(&Method::HEAD, Version::HTTP_11, &all),
            Err(Refused::NotUpgrade)
        );
    }
}
