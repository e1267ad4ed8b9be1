//! The dns keys of EDNS and abuse resistance: `nsid`, `cookies` and `rate_limit`.

use serde::Deserialize;
use toml::Spanned;
use weft_names::edns::MAX_NSID;
use weft_names::{EdnsConfig, RateLimit};

use crate::config::ConfigError;
use crate::config::validate::ServiceCtx;

/// The default `rate_limit.responses_per_second` (and `burst`).
const DEFAULT_RATE: u32 = 20;
/// The largest `rate_limit.responses_per_second` and `burst`.
const MAX_RATE: i64 = 1_000_000;
/// The largest `rate_limit.slip` (BIND's bound).
const MAX_SLIP: i64 = 10;

/// `rate_limit = { ... }` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimit {
    responses_per_second: Option<Spanned<i64>>,
    burst: Option<Spanned<i64>>,
    slip: Option<Spanned<i64>>,
    ipv4_prefix: Option<Spanned<i64>>,
    ipv6_prefix: Option<Spanned<i64>>,
}

/// `nsid` and `cookies`.
pub(crate) fn edns(ctx: &ServiceCtx<'_>) -> Result<EdnsConfig, ConfigError> {
    let nsid = match &ctx.raw.nsid {
        Some(n) if n.get_ref().is_empty() || n.get_ref().len() > MAX_NSID => {
            return Err(ctx.error(
                n.span(),
                "nsid",
                format!("must be 1 to {MAX_NSID} bytes, got {}", n.get_ref().len()),
            ));
        }
        Some(n) => Some(n.get_ref().clone()),
        None => None,
    };
    Ok(EdnsConfig {
        nsid,
        cookies: ctx.raw.cookies.as_ref().is_some_and(|c| *c.get_ref()),
    })
}

/// The shortest client prefixes the rate limit groups by: a `/8` of IPv4, a `/16` of IPv6.
const MIN_IPV4_PREFIX: i64 = 8;
const MIN_IPV6_PREFIX: i64 = 16;

/// `rate_limit`: off when absent; a table turns it on, every key with a default.
pub(crate) fn rate_limit(ctx: &ServiceCtx<'_>) -> Result<Option<RateLimit>, ConfigError> {
    let Some(raw) = &ctx.raw.rate_limit else {
        return Ok(None);
    };
    let raw = raw.get_ref();
    let number =
        |field: &str, value: &Option<Spanned<i64>>, min: i64, max: i64, default: i64| match value {
            Some(v) if !(min..=max).contains(v.get_ref()) => Err(ctx.error(
                v.span(),
                &format!("rate_limit.{field}"),
                format!("must be between {min} and {max}, got {}", v.get_ref()),
            )),
            Some(v) => Ok(*v.get_ref()),
            None => Ok(default),
        };
    let rate = number(
        "responses_per_second",
        &raw.responses_per_second,
        1,
        MAX_RATE,
        DEFAULT_RATE.into(),
    )?;
    let burst = number("burst", &raw.burst, 1, MAX_RATE, rate)?;
    let slip = number(
        "slip",
        &raw.slip,
        0,
        MAX_SLIP,
        RateLimit::DEFAULT_SLIP.into(),
    )?;
    // A shorter prefix puts so many clients in one group that one flooder spends the
    // budget of all of them: the harm the limit is there to stop.
    let v4 = number(
        "ipv4_prefix",
        &raw.ipv4_prefix,
        MIN_IPV4_PREFIX,
        32,
        RateLimit::DEFAULT_IPV4_PREFIX.into(),
    )?;
    let v6 = number(
        "ipv6_prefix",
        &raw.ipv6_prefix,
        MIN_IPV6_PREFIX,
        128,
        RateLimit::DEFAULT_IPV6_PREFIX.into(),
    )?;
    let int = |n: i64| u32::try_from(n).expect("checked range");
    Ok(Some(RateLimit {
        responses_per_second: int(rate),
        burst: int(burst),
        slip: int(slip),
        ipv4_prefix: u8::try_from(v4).expect("checked range"),
        ipv6_prefix: u8::try_from(v6).expect("checked range"),
    }))
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::services::ServiceKind;

    fn config(keys: &str) -> Result<Config, String> {
        let text = format!(
            "[[service]]\nname = \"dns\"\nkind = \"dns\"\nlisten = [\"udp:5353\"]\nforward = \"127.0.0.1\"\n{keys}\n"
        );
        Config::parse("weft.toml", &text).map_err(|e| e.to_string())
    }

    fn dns(keys: &str) -> weft_names::DnsConfig {
        match &config(keys).unwrap().services[0].kind {
            ServiceKind::Dns(d) => d.config.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nsid_cookies_and_rate_limit_default_off_and_take_their_keys() {
        let d = dns("");
        assert_eq!(
            (d.edns.nsid, d.edns.cookies, d.rate_limit),
            (None, false, None)
        );
        let d = dns("nsid = \"ns1.example\"\ncookies = true\nrate_limit = {}");
        assert_eq!(d.edns.nsid.as_deref(), Some("ns1.example"));
        assert!(d.edns.cookies);
        let r = d.rate_limit.unwrap();
        assert_eq!(
            (
                r.responses_per_second,
                r.burst,
                r.slip,
                r.ipv4_prefix,
                r.ipv6_prefix
            ),
            (20, 20, 2, 24, 56)
        );
        let d = dns(
            "rate_limit = { responses_per_second = 5, burst = 50, slip = 0, ipv4_prefix = 32, ipv6_prefix = 64 }",
        );
        let r = d.rate_limit.unwrap();
        assert_eq!(
            (
                r.responses_per_second,
                r.burst,
                r.slip,
                r.ipv4_prefix,
                r.ipv6_prefix
            ),
            (5, 50, 0, 32, 64)
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = |keys: &str| config(keys).unwrap_err();
        let e = err("nsid = \"\"");
        assert!(e.contains("service[0].nsid: must be 1 to 128 bytes"), "{e}");
        assert!(err(&format!("nsid = \"{}\"", "x".repeat(129))).contains("service[0].nsid:"));
        assert!(err("cookies = \"yes\"").contains("cookies"));
        for (keys, key) in [
            ("responses_per_second = 0", "responses_per_second"),
            ("burst = 0", "burst"),
            ("slip = 11", "slip"),
            ("ipv4_prefix = 33", "ipv4_prefix"),
            ("ipv6_prefix = -1", "ipv6_prefix"),
            // Every client, or most of the Internet, in one group.
            ("ipv4_prefix = 0", "ipv4_prefix"),
            ("ipv4_prefix = 7", "ipv4_prefix"),
            ("ipv6_prefix = 15", "ipv6_prefix"),
        ] {
            let e = err(&format!("rate_limit = {{ {keys} }}"));
            assert!(
                e.contains(&format!("service[0].rate_limit.{key}: must be between")),
                "{e}"
            );
        }
        assert!(err("rate_limit = { rate = 1 }").contains("rate"));
        let e = config(
            "[[service]]\nname = \"e\"\nkind = \"echo\"\nlisten = \"tcp:7\"\ncookies = true",
        )
        .unwrap_err();
        assert!(
            e.contains("`cookies` is not a setting of kind \"echo\""),
            "{e}"
        );
    }
}
