//! The dns keys of EDNS and abuse resistance: `nsid`, `cookies` and `rate_limit`.

use weft_names::edns::MAX_NSID;
use weft_names::{EdnsConfig, RateLimit};

use super::rate_limit::Counted;
use crate::config::ConfigError;
use crate::config::validate::ServiceCtx;

/// The default `rate_limit.responses_per_second` (and `burst`).
const DEFAULT_RATE: u32 = 20;

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

/// `rate_limit`: off when absent; a table turns it on, every key with a default.
pub(crate) fn rate_limit(ctx: &ServiceCtx<'_>) -> Result<Option<RateLimit>, ConfigError> {
    let Some(raw) = &ctx.raw.rate_limit else {
        return Ok(None);
    };
    let counted = Counted::Responses {
        rate: DEFAULT_RATE,
        slip: RateLimit::DEFAULT_SLIP,
    };
    let prefixes = (
        RateLimit::DEFAULT_IPV4_PREFIX,
        RateLimit::DEFAULT_IPV6_PREFIX,
    );
    let r = super::rate_limit::read(ctx, "rate_limit", raw, counted, prefixes)?;
    Ok(Some(RateLimit {
        responses_per_second: r.per_second,
        burst: r.burst,
        slip: r.slip,
        ipv4_prefix: r.ipv4_prefix,
        ipv6_prefix: r.ipv6_prefix,
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
        let e = err("rate_limit = { requests_per_second = 5 }");
        assert!(
            e.contains("service[0].rate_limit.requests_per_second: is an http service's"),
            "{e}"
        );
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
