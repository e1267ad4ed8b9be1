//! `[otlp]`: where chains are exported as OpenTelemetry spans (`endpoint`, the
//! collector's OTLP/HTTP base URL), under which `service_name`, and how many spans may
//! wait (`queue`). Without the section nothing is exported and no span is built.

use weft_inspector::OtlpConfig;

use super::ConfigError;
use super::error::Locator;
use super::raw::RawOtlp;
use super::validate::key;

/// The export settings, `None` without an `[otlp]` section.
pub(super) fn otlp(
    at: &Locator<'_>,
    raw: Option<&toml::Spanned<RawOtlp>>,
) -> Result<Option<OtlpConfig>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let section = raw.get_ref();
    let Some(endpoint) = &section.endpoint else {
        return Err(at.error(
            Some(raw.span()),
            key("otlp.endpoint"),
            "missing: the collector's OTLP/HTTP URL, such as \"http://127.0.0.1:4318\"",
        ));
    };
    let mut config = OtlpConfig::new(endpoint.get_ref())
        .map_err(|e| at.error(Some(endpoint.span()), key("otlp.endpoint"), e.to_string()))?;
    if let Some(name) = &section.service_name {
        config = config
            .with_service_name(name.get_ref())
            .map_err(|e| at.error(Some(name.span()), key("otlp.service_name"), e.to_string()))?;
    }
    if let Some(queue) = &section.queue {
        let n = u64::try_from(*queue.get_ref()).unwrap_or(0);
        config = config.with_queue(n).map_err(|e| {
            at.error(
                Some(queue.span()),
                key("otlp.queue"),
                format!("{e}, got {}", queue.get_ref()),
            )
        })?;
    }
    Ok(Some(config))
}

#[cfg(test)]
mod tests {
    use super::super::validate::parse;

    const SERVICE: &str = "[[service]]\nname = \"e\"\nkind = \"echo\"\nlisten = \"tcp:7\"\n";

    fn otlp(keys: &str) -> Result<super::super::Config, String> {
        parse("weft.toml", &format!("[otlp]\n{keys}\n{SERVICE}")).map_err(|e| e.to_string())
    }

    #[test]
    fn an_endpoint_with_its_name_and_queue_is_taken() {
        let config =
            otlp("endpoint = \"http://127.0.0.1:4318\"\nservice_name = \"edge\"\nqueue = 10")
                .unwrap();
        let o = config.otlp.unwrap();
        assert_eq!(o.traces_url.to_string(), "http://127.0.0.1:4318/v1/traces");
        assert_eq!((o.service_name.as_str(), o.queue), ("edge", 10));
        let none = parse("weft.toml", SERVICE).unwrap();
        assert!(none.otlp.is_none());
    }

    #[test]
    fn bad_keys_are_named_with_their_line() {
        let err = otlp("endpoint = \"grpc://x:4317\"").unwrap_err();
        assert!(
            err.contains("weft.toml:2:") && err.contains("otlp.endpoint"),
            "{err}"
        );
        let err = otlp("service_name = \"x\"").unwrap_err();
        assert!(
            err.contains("otlp.endpoint") && err.contains("missing"),
            "{err}"
        );
        let err = otlp("endpoint = \"http://x\"\nqueue = 0").unwrap_err();
        assert!(err.contains("otlp.queue"), "{err}");
        let err = otlp("endpoint = \"http://x\"\nsample = 1.0").unwrap_err();
        assert!(err.contains("sample"), "{err}");
    }
}
