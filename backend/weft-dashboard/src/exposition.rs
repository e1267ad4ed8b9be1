//! `/metrics`: every family on the hub's registry, in the format the scraper asks for. A
//! request whose `Accept` prefers `application/openmetrics-text` (version 1.0.0 or 0.0.1)
//! gets OpenMetrics, latency buckets with their exemplars; anything else gets Prometheus'
//! text format (0.0.4), as `promtool check metrics` reads it.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::DashboardState;

/// The Prometheus text exposition format's content type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenMetrics, as a scraper that asked for its first version is answered.
const OPENMETRICS_0_0_1: &str = "application/openmetrics-text; version=0.0.1; charset=utf-8";

pub(crate) async fn metrics(State(state): State<DashboardState>, headers: HeaderMap) -> Response {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let (kind, body) = match negotiate(&accept) {
        Some(kind) => (kind, state.hub.encode_openmetrics()),
        None => (TEXT_FORMAT, state.hub.encode_metrics()),
    };
    let mut response = ([(header::CONTENT_TYPE, kind)], body).into_response();
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept"));
    response
}

/// The OpenMetrics content type to answer `accept` with, if it ranks OpenMetrics at
/// least as high as the text format (RFC 9110 §12.5.1: the highest `q` wins; `*/*` and
/// `text/*` count for the text format, which is the default); `None` for the text format.
fn negotiate(accept: &str) -> Option<&'static str> {
    let (mut openmetrics, mut text) = (None::<(f32, &'static str)>, 0.0_f32);
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let (mut q, mut version) = (1.0_f32, None);
        for param in parts {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "q" => q = value.parse().unwrap_or(0.0),
                "version" => version = Some(value.to_owned()),
                _ => {}
            }
        }
        match media.as_str() {
            "application/openmetrics-text" => {
                let kind = match version.as_deref() {
                    None | Some("1.0.0") => weft_telemetry::openmetrics::CONTENT_TYPE,
                    Some("0.0.1") => OPENMETRICS_0_0_1,
                    Some(_) => continue,
                };
                if openmetrics.is_none_or(|(best, _)| q > best) {
                    openmetrics = Some((q, kind));
                }
            }
            "text/plain" | "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    openmetrics
        .filter(|(q, _)| *q > 0.0 && *q >= text)
        .map(|(_, kind)| kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OM: &str = weft_telemetry::openmetrics::CONTENT_TYPE;

    #[test]
    fn openmetrics_when_the_scraper_prefers_it() {
        // What Prometheus 2 sends.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(prometheus), Some(OM));
        assert_eq!(negotiate("application/openmetrics-text"), Some(OM));
        assert_eq!(
            negotiate("application/openmetrics-text; version=0.0.1"),
            Some(OPENMETRICS_0_0_1)
        );
        assert_eq!(
            negotiate("text/plain;q=0.5, Application/OpenMetrics-Text;version=\"1.0.0\";q=0.6"),
            Some(OM)
        );
    }

    #[test]
    fn the_text_format_otherwise() {
        for accept in [
            "",
            "*/*",
            "text/plain",
            "text/plain;version=0.0.4",
            "application/json",
            "application/openmetrics-text;version=2.0.0",
            "application/openmetrics-text;q=0",
            "application/openmetrics-text;q=0.4, text/plain;q=0.5",
            "application/openmetrics-text;q=0.1, */*",
        ] {
            assert_eq!(negotiate(accept), None, "{accept}");
        }
    }
}
