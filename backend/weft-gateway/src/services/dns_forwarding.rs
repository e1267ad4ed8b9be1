//! The forwarding keys of `kind = "dns"`: `upstream_selection` (`"sequential"`, the
//! default: fastest upstream first by smoothed round-trip time, the next on its try's
//! timeout; or `"parallel"`: all at once), `min_ttl` and `max_ttl` (the TTLs of cached
//! answers are raised and lowered to them; defaults `"0s"` and `"1d"`) and `serve_stale`
//! (how long past its TTL an answer may still be served when no upstream answers; off
//! when absent) and `forward_ports` (`"LEAST-MOST"`: the ports upstream queries leave
//! from, drawn at random; `"1024-65535"` by default).

use std::time::Duration;

use toml::Spanned;
use weft_names::{ForwardOptions, Selection};

use crate::config::ConfigError;
use crate::config::validate::ServiceCtx;

/// The longest `max_ttl` or `serve_stale` accepted: a week (RFC 8767 section 5
/// suggests one to three days of staleness).
const MAX_TTL: Duration = Duration::from_secs(7 * 86_400);

/// The fewest ports `forward_ports` may offer: the randomness of the port is half of
/// what an off-path attacker must guess (RFC 5452 section 9.2).
const MIN_FORWARD_PORTS: u32 = 1024;

/// The forwarding options of the service `ctx` describes.
pub(crate) fn validate(ctx: &ServiceCtx<'_>) -> Result<ForwardOptions, ConfigError> {
    let raw = ctx.raw;
    let mut options = ForwardOptions::default();
    if let Some(v) = &raw.upstream_selection {
        options.selection = match v.get_ref().as_str() {
            "sequential" => Selection::Sequential,
            "parallel" => Selection::Parallel,
            other => {
                return Err(ctx.error(
                    v.span(),
                    "upstream_selection",
                    format!("{other:?} is not a selection: write \"sequential\" or \"parallel\""),
                ));
            }
        };
    }
    let default_max = Duration::from_secs(u64::from(ForwardOptions::DEFAULT_MAX_TTL));
    let max = ttl(ctx, "max_ttl", raw.max_ttl.as_ref(), default_max, false)?;
    let min = ttl(ctx, "min_ttl", raw.min_ttl.as_ref(), Duration::ZERO, true)?;
    if min > max {
        let span = raw.min_ttl.as_ref().map(Spanned::span).unwrap_or_default();
        return Err(ctx.error(
            span,
            "min_ttl",
            format!("{}s is above max_ttl ({}s)", min.as_secs(), max.as_secs()),
        ));
    }
    options.min_ttl = u32::try_from(min.as_secs()).expect("at most a week");
    options.max_ttl = u32::try_from(max.as_secs()).expect("at most a week");
    if raw.serve_stale.is_some() {
        let stale = ttl(ctx, "serve_stale", raw.serve_stale.as_ref(), MAX_TTL, false)?;
        options.serve_stale = Some(stale);
    }
    if let Some(v) = &raw.forward_ports {
        options.ports = port_range(v.get_ref())
            .map_err(|message| ctx.error(v.span(), "forward_ports", message))?;
    }
    Ok(options)
}

/// `"LEAST-MOST"`: ports above the well-known ones, at least [`MIN_FORWARD_PORTS`] of
/// them.
fn port_range(text: &str) -> Result<(u16, u16), String> {
    let shape = || format!("{text:?} is not a range of ports: write it like \"32768-60999\"");
    let (least, most) = text.split_once('-').ok_or_else(shape)?;
    let least: u16 = least.trim().parse().map_err(|_| shape())?;
    let most: u16 = most.trim().parse().map_err(|_| shape())?;
    if least < 1024 || least > most {
        return Err(format!(
            "{text:?}: the least port must be 1024 or more, and not above the most"
        ));
    }
    let count = u32::from(most) - u32::from(least) + 1;
    if count < MIN_FORWARD_PORTS {
        return Err(format!(
            "{text:?} is {count} ports: at least {MIN_FORWARD_PORTS}, as the port is half of \
             what a forged answer must guess"
        ));
    }
    Ok((least, most))
}

/// A TTL key: a duration in whole seconds, at most [`MAX_TTL`], zero only if `zero_ok`.
fn ttl(
    ctx: &ServiceCtx<'_>,
    field: &str,
    value: Option<&Spanned<String>>,
    default: Duration,
    zero_ok: bool,
) -> Result<Duration, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    let text = value.get_ref();
    let error = |message: String| ctx.error(value.span(), field, message);
    let d = crate::config::validate::parse_duration(text).map_err(|e| {
        error(format!(
            "{text:?} is not a duration ({e}); write it like \"30s\", \"1h\" or \"1d\""
        ))
    })?;
    if d.subsec_nanos() != 0 {
        return Err(error(format!("{text:?}: TTLs are whole seconds")));
    }
    if d.is_zero() && !zero_ok {
        return Err(error("must be longer than zero".into()));
    }
    if d > MAX_TTL {
        return Err(error(format!("{text:?} is too long: at most \"7days\"")));
    }
    Ok(d)
}

/// The options as `/api/config` shows them.
pub(crate) fn describe(o: &ForwardOptions) -> serde_json::Value {
    serde_json::json!({
        "upstream_selection": match o.selection {
            Selection::Parallel => "parallel",
            _ => "sequential",
        },
        "min_ttl_s": o.min_ttl,
        "max_ttl_s": o.max_ttl,
        "serve_stale_s": o.serve_stale.map(|d| d.as_secs()),
        "forward_ports": format!("{}-{}", o.ports.0, o.ports.1),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use weft_names::Selection;

    use crate::config::Config;
    use crate::services::ServiceKind;

    fn config(keys: &str) -> Result<Config, String> {
        let text = format!(
            "[[service]]\nname = \"dns\"\nkind = \"dns\"\nlisten = \"udp:5353\"\nforward = \"127.0.0.1\"\n{keys}\n"
        );
        Config::parse("weft.toml", &text).map_err(|e| e.to_string())
    }

    fn options(keys: &str) -> weft_names::ForwardOptions {
        match config(keys).unwrap().services[0].kind.clone() {
            ServiceKind::Dns(d) => d.config.forwarding,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_and_every_forwarding_key() {
        let o = options("");
        assert_eq!(o.selection, Selection::Sequential);
        assert_eq!((o.min_ttl, o.max_ttl, o.serve_stale), (0, 86_400, None));
        let o = options(
            "upstream_selection = \"parallel\"\nmin_ttl = \"1m\"\nmax_ttl = \"1h\"\nserve_stale = \"1d\"",
        );
        assert_eq!(o.selection, Selection::Parallel);
        assert_eq!((o.min_ttl, o.max_ttl), (60, 3600));
        assert_eq!(o.serve_stale, Some(Duration::from_secs(86_400)));
        assert_eq!(options("").ports, (1024, 65535));
        assert_eq!(
            options("forward_ports = \"32768-60999\"").ports,
            (32768, 60999)
        );
    }

    #[test]
    fn a_port_range_too_narrow_or_not_one_is_refused() {
        for (range, why) in [
            ("1-65535", "1024 or more"),
            ("40000-30000", "not above the most"),
            ("30000-30100", "101 ports: at least 1024"),
            ("30000", "not a range of ports"),
            ("a-b", "not a range of ports"),
            ("30000-70000", "not a range of ports"),
        ] {
            let e = config(&format!("forward_ports = \"{range}\"")).unwrap_err();
            assert!(e.contains("service[0].forward_ports"), "{range}: {e}");
            assert!(e.contains(why), "{range}: {e}");
        }
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        let err = |keys: &str| config(keys).unwrap_err();
        let e = err("upstream_selection = \"random\"");
        assert!(
            e.starts_with(
                "weft.toml:6:22: service[0].upstream_selection: \"random\" is not a selection"
            ),
            "{e}"
        );
        assert!(
            err("min_ttl = \"2h\"\nmax_ttl = \"1h\"")
                .contains("service[0].min_ttl: 7200s is above max_ttl (3600s)")
        );
        assert!(err("max_ttl = \"0s\"").contains("service[0].max_ttl: must be longer than zero"));
        assert!(err("max_ttl = \"30days\"").contains("service[0].max_ttl: \"30days\" is too long"));
        assert!(
            err("serve_stale = \"soon\"")
                .contains("service[0].serve_stale: \"soon\" is not a duration")
        );
        assert!(
            err("min_ttl = \"1.5s\"")
                .contains("service[0].min_ttl: \"1.5s\": TTLs are whole seconds")
        );
        let e = config("upstream_selection = \"parallel\"")
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(e.is_ok());
        let echo = Config::parse(
            "weft.toml",
            "[[service]]\nname = \"e\"\nkind = \"echo\"\nlisten = \"tcp:1\"\nserve_stale = \"1d\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            echo.contains("`serve_stale` is not a setting of kind \"echo\""),
            "{echo}"
        );
    }
}
