//! `rate_limit = { ... }`, read for the kinds that take it: a dns service's budget of
//! UDP answers (`responses_per_second`, `slip`) and an http service's or route's budget
//! of requests (`requests_per_second`), each by client prefix with a `burst`.

use serde::Deserialize;
use toml::Spanned;

use crate::config::ConfigError;
use crate::config::validate::ServiceCtx;

/// The largest rate and `burst`.
const MAX_RATE: i64 = 1_000_000;
/// The largest `slip` (BIND's bound).
const MAX_SLIP: i64 = 10;
/// The shortest client prefixes a budget groups by: a `/8` of IPv4, a `/16` of IPv6. A
/// shorter one puts so many clients in one group that one flooder spends the budget of
/// all of them: the harm the limit is there to stop.
const MIN_IPV4_PREFIX: i64 = 8;
const MIN_IPV6_PREFIX: i64 = 16;

/// `rate_limit = { ... }` as written; which keys a kind takes is checked as it is read.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimit {
    responses_per_second: Option<Spanned<i64>>,
    requests_per_second: Option<Spanned<i64>>,
    burst: Option<Spanned<i64>>,
    slip: Option<Spanned<i64>>,
    ipv4_prefix: Option<Spanned<i64>>,
    ipv6_prefix: Option<Spanned<i64>>,
}

/// What a budget counts, and so which keys it takes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Counted {
    /// A dns service's UDP answers: `responses_per_second` (default `rate`) and `slip`.
    Responses { rate: u32, slip: u32 },
    /// HTTP requests: `requests_per_second`, required.
    Requests,
}

/// A `rate_limit` as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Read {
    pub(crate) per_second: u32,
    pub(crate) burst: u32,
    /// `slip`, for [`Counted::Responses`]; 0 otherwise.
    pub(crate) slip: u32,
    pub(crate) ipv4_prefix: u8,
    pub(crate) ipv6_prefix: u8,
}

/// Reads `raw`, written at `key` (`rate_limit`, `route[1].rate_limit`), for a budget of
/// `counted`; prefixes default to `prefixes` (IPv4, IPv6). Every error names its key.
pub(crate) fn read(
    ctx: &ServiceCtx<'_>,
    key: &str,
    raw: &Spanned<RawRateLimit>,
    counted: Counted,
    prefixes: (u8, u8),
) -> Result<Read, ConfigError> {
    let span = raw.span();
    let raw = raw.get_ref();
    let number =
        |field: &str, value: &Option<Spanned<i64>>, min: i64, max: i64, default: i64| match value {
            Some(v) if !(min..=max).contains(v.get_ref()) => Err(ctx.error(
                v.span(),
                &format!("{key}.{field}"),
                format!("must be between {min} and {max}, got {}", v.get_ref()),
            )),
            Some(v) => Ok(*v.get_ref()),
            None => Ok(default),
        };
    let not_here = |field: &str, value: &Option<Spanned<i64>>, why: &str| match value {
        Some(v) => Err(ctx.error(v.span(), &format!("{key}.{field}"), why)),
        None => Ok(()),
    };
    let (rate, slip) = match counted {
        Counted::Responses { rate, slip } => {
            not_here(
                "requests_per_second",
                &raw.requests_per_second,
                "is an http service's; a dns service's budget is responses_per_second",
            )?;
            let rate = number(
                "responses_per_second",
                &raw.responses_per_second,
                1,
                MAX_RATE,
                rate.into(),
            )?;
            (rate, number("slip", &raw.slip, 0, MAX_SLIP, slip.into())?)
        }
        Counted::Requests => {
            not_here(
                "responses_per_second",
                &raw.responses_per_second,
                "is a dns service's; an http budget is requests_per_second",
            )?;
            not_here(
                "slip",
                &raw.slip,
                "is a dns service's: a request over its budget is answered 429",
            )?;
            if raw.requests_per_second.is_none() {
                return Err(ctx.error(
                    span,
                    &format!("{key}.requests_per_second"),
                    "is required: the requests a client may make a second, such as 10",
                ));
            }
            let rate = number(
                "requests_per_second",
                &raw.requests_per_second,
                1,
                MAX_RATE,
                0,
            )?;
            (rate, 0)
        }
    };
    let burst = number("burst", &raw.burst, 1, MAX_RATE, rate)?;
    let v4 = number(
        "ipv4_prefix",
        &raw.ipv4_prefix,
        MIN_IPV4_PREFIX,
        32,
        prefixes.0.into(),
    )?;
    let v6 = number(
        "ipv6_prefix",
        &raw.ipv6_prefix,
        MIN_IPV6_PREFIX,
        128,
        prefixes.1.into(),
    )?;
    let int = |n: i64| u32::try_from(n).expect("checked range");
    Ok(Read {
        per_second: int(rate),
        burst: int(burst),
        slip: int(slip),
        ipv4_prefix: u8::try_from(v4).expect("checked range"),
        ipv6_prefix: u8::try_from(v6).expect("checked range"),
    })
}

/// `raw`, written at `key`, as an http service's or route's budget of requests.
pub(crate) fn read_requests(
    ctx: &ServiceCtx<'_>,
    key: &str,
    raw: &Spanned<RawRateLimit>,
) -> Result<weft_web::RateLimit, ConfigError> {
    let prefixes = (
        weft_web::RateLimit::DEFAULT_IPV4_PREFIX,
        weft_web::RateLimit::DEFAULT_IPV6_PREFIX,
    );
    Ok(read(ctx, key, raw, Counted::Requests, prefixes)?.requests())
}

impl Read {
    /// As an http service's or route's `rate_limit`.
    pub(crate) fn requests(self) -> weft_web::RateLimit {
        weft_web::RateLimit {
            requests_per_second: self.per_second,
            burst: self.burst,
            ipv4_prefix: self.ipv4_prefix,
            ipv6_prefix: self.ipv6_prefix,
        }
    }
}
