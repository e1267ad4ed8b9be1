//! The file as written: every key optional, every value with its place in the file.
//!
//! Unknown keys are rejected here by serde; meaning (defaults, ranges, endpoints, which
//! keys a service kind takes) is checked in `validate`, which still has the spans.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) dashboard: RawDashboard,
    #[serde(default)]
    pub(crate) gateway: RawGateway,
    #[serde(default)]
    pub(crate) store: RawStore,
    #[serde(default)]
    pub(crate) inspect: RawInspect,
    #[serde(default)]
    pub(crate) log: RawLog,
    #[serde(default)]
    pub(crate) demo: RawDemo,
    pub(crate) otlp: Option<Spanned<RawOtlp>>,
    #[serde(default)]
    pub(crate) service: Vec<Spanned<RawService>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGateway {
    /// A number, or `"auto"`.
    pub(crate) reactors: Option<Spanned<toml::Value>>,
    pub(crate) instance: Option<Spanned<String>>,
    /// A number, or `"auto"`.
    pub(crate) max_connections: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDemo {
    pub(crate) traffic: Option<Spanned<bool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDashboard {
    pub(crate) listen: Option<Spanned<String>>,
    pub(crate) token: Option<Spanned<String>>,
    pub(crate) token_env: Option<Spanned<String>>,
    pub(crate) allowed_hosts: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) max_live_clients: Option<Spanned<i64>>,
    pub(crate) max_connections: Option<Spanned<i64>>,
    pub(crate) max_connections_per_peer: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStore {
    pub(crate) path: Option<Spanned<String>>,
    pub(crate) url: Option<Spanned<String>>,
    pub(crate) retention: Option<Spanned<String>>,
    pub(crate) connections_per_second: Option<u32>,
    pub(crate) queries_per_second: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInspect {
    pub(crate) stall_after: Option<Spanned<String>>,
    pub(crate) slow_callback: Option<Spanned<String>>,
    pub(crate) sample: Option<Spanned<f64>>,
    pub(crate) sample_per_second: Option<Spanned<i64>>,
    pub(crate) failed_per_second: Option<Spanned<i64>>,
    pub(crate) notify: Option<Spanned<String>>,
    pub(crate) notify_per_minute: Option<Spanned<i64>>,
    pub(crate) notify_queue: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOtlp {
    pub(crate) endpoint: Option<Spanned<String>>,
    pub(crate) service_name: Option<Spanned<String>>,
    pub(crate) queue: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    pub(crate) format: Option<Spanned<String>>,
}

/// One `[[service]]`: the keys of every kind, so a key of the wrong kind gets a precise
/// message rather than "unknown field".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub(crate) name: Spanned<String>,
    pub(crate) kind: Spanned<String>,
    pub(crate) listen: Spanned<toml::Value>,
    /// Every kind: close connections idle this long (`"0s"`: never).
    pub(crate) idle_timeout: Option<Spanned<String>>,
    /// Every kind: connections one peer may hold at once (0: no cap).
    pub(crate) max_connections_per_peer: Option<Spanned<i64>>,
    /// Every kind: connections the service holds at once (1 to 1,000,000).
    pub(crate) max_connections: Option<Spanned<i64>>,
    /// Every kind: the kernel's send buffer of each accepted connection, in bytes.
    pub(crate) send_buffer: Option<Spanned<i64>>,
    /// Every kind: the kernel's receive buffer of each accepted connection, in bytes.
    pub(crate) receive_buffer: Option<Spanned<i64>>,
    /// tcp-proxy: where to forward.
    pub(crate) upstream: Option<Spanned<String>>,
    /// http: static files.
    pub(crate) root: Option<Spanned<toml::Value>>,
    /// http: reverse-proxy routes (`[[service.route]]`).
    pub(crate) route: Option<Spanned<Vec<Spanned<crate::services::http_routes::RawRoute>>>>,
    /// http: upstream connections kept for reuse.
    pub(crate) upstream_pool: Option<Spanned<crate::services::http_routes::RawPool>>,
    /// http: the file served for a directory.
    pub(crate) index: Option<Spanned<String>>,
    /// http: request limits and timeouts.
    pub(crate) limits: Option<Spanned<crate::services::http::RawLimits>>,
    /// http: a file for the access log.
    pub(crate) access_log: Option<Spanned<String>>,
    /// http: list directories that have no index file.
    pub(crate) listing: Option<Spanned<bool>>,
    /// http: the `Cache-Control` sent with static files.
    pub(crate) cache_control: Option<Spanned<String>>,
    /// http: precompressed siblings and compression on the fly.
    pub(crate) compression: Option<Spanned<crate::services::http::RawCompression>>,
    /// http: HSTS max-age for responses over TLS.
    pub(crate) hsts_max_age: Option<Spanned<String>>,
    /// http: requests over plain HTTP are sent to HTTPS (`true`, or the port).
    pub(crate) https_redirect: Option<Spanned<toml::Value>>,
    /// http: the file answered for a path no file is found at (a single-page app's).
    pub(crate) fallback: Option<Spanned<String>>,
    /// http: the clients that may use the service, and those that may not.
    pub(crate) allow: Option<crate::services::http::RawBlocks>,
    pub(crate) deny: Option<crate::services::http::RawBlocks>,
    /// http: pages answered in place of the service's own error responses, by status.
    pub(crate) error_pages:
        Option<Spanned<std::collections::BTreeMap<Spanned<String>, Spanned<String>>>>,
    /// http: the proxies in front whose word on the client and its scheme is taken.
    pub(crate) trusted_proxies: Option<crate::services::http::RawBlocks>,
    /// http: header fields added to every response (a table of strings).
    pub(crate) response_headers: Option<Spanned<crate::services::http::RawHeaders>>,
    /// http: where request bodies too long for a buffer are written.
    pub(crate) body_file_dir: Option<Spanned<String>>,
    /// http: further certificates of its `ssl:` listeners, chosen by SNI.
    pub(crate) tls_certificates:
        Option<Spanned<Vec<Spanned<crate::services::tls_certificates::RawTlsCertificate>>>>,
    /// dns: zone files.
    pub(crate) zones: Option<Spanned<toml::Value>>,
    /// dns: upstream resolvers.
    pub(crate) forward: Option<Spanned<toml::Value>>,
    /// dns: forwarded answers cached at most.
    pub(crate) cache_size: Option<Spanned<i64>>,
    /// dns: bytes of forwarded answers cached at most.
    pub(crate) cache_bytes: Option<Spanned<i64>>,
    /// dns: how long an upstream query may take.
    pub(crate) timeout: Option<Spanned<String>>,
    /// dns: `sequential` or `parallel`.
    pub(crate) upstream_selection: Option<Spanned<String>>,
    /// dns: the least TTL of a cached answer.
    pub(crate) min_ttl: Option<Spanned<String>>,
    /// dns: the most TTL of a cached answer.
    pub(crate) max_ttl: Option<Spanned<String>>,
    /// dns: how long an expired answer may be served when no upstream answers.
    pub(crate) serve_stale: Option<Spanned<String>>,
    /// dns: the ports upstream queries leave from, `"LEAST-MOST"`.
    pub(crate) forward_ports: Option<Spanned<String>>,
    /// dns: the peers that may transfer the zones.
    pub(crate) allow_transfer: Option<Spanned<toml::Value>>,
    /// dns: the peers told of a changed zone.
    pub(crate) notify: Option<Spanned<toml::Value>>,
    /// dns: the server identifier answered to NSID.
    pub(crate) nsid: Option<Spanned<String>>,
    /// dns: answer DNS cookies.
    pub(crate) cookies: Option<Spanned<bool>>,
    /// dns: response rate limiting over UDP; http: requests a client may make.
    pub(crate) rate_limit: Option<Spanned<crate::services::rate_limit::RawRateLimit>>,
    /// dns: the keys a query may be signed with (TSIG).
    /// Read as a value, not through serde's derive: its type errors would quote the
    /// value, secret and all.
    pub(crate) tsig_keys: Option<Spanned<toml::Value>>,
    /// dns: the zones transferred from primaries.
    pub(crate) secondary: Option<Spanned<toml::Value>>,
}

impl RawService {
    /// The kind-specific keys present, with their spans, in declaration order.
    pub(crate) fn extra_keys(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        let mut keys = Vec::new();
        if let Some(v) = &self.upstream {
            keys.push(("upstream", v.span()));
        }
        if let Some(v) = &self.route {
            keys.push(("route", v.span()));
        }
        if let Some(v) = &self.upstream_pool {
            keys.push(("upstream_pool", v.span()));
        }
        if let Some(v) = &self.index {
            keys.push(("index", v.span()));
        }
        if let Some(v) = &self.limits {
            keys.push(("limits", v.span()));
        }
        if let Some(v) = &self.access_log {
            keys.push(("access_log", v.span()));
        }
        if let Some(v) = &self.tls_certificates {
            keys.push(("tls_certificates", v.span()));
        }
        if let Some(v) = &self.listing {
            keys.push(("listing", v.span()));
        }
        if let Some(v) = &self.cache_control {
            keys.push(("cache_control", v.span()));
        }
        if let Some(v) = &self.compression {
            keys.push(("compression", v.span()));
        }
        if let Some(v) = &self.https_redirect {
            keys.push(("https_redirect", v.span()));
        }
        if let Some(v) = &self.response_headers {
            keys.push(("response_headers", v.span()));
        }
        if let Some(v) = &self.allow {
            keys.push(("allow", v.span()));
        }
        if let Some(v) = &self.fallback {
            keys.push(("fallback", v.span()));
        }
        if let Some(v) = &self.deny {
            keys.push(("deny", v.span()));
        }
        for (name, value) in [
            ("root", &self.root),
            ("zones", &self.zones),
            ("forward", &self.forward),
            ("allow_transfer", &self.allow_transfer),
            ("notify", &self.notify),
        ] {
            if let Some(v) = value {
                keys.push((name, v.span()));
            }
        }
        if let Some(v) = &self.cache_size {
            keys.push(("cache_size", v.span()));
        }
        if let Some(v) = &self.cache_bytes {
            keys.push(("cache_bytes", v.span()));
        }
        for (name, value) in [
            ("hsts_max_age", &self.hsts_max_age),
            ("body_file_dir", &self.body_file_dir),
            ("timeout", &self.timeout),
            ("upstream_selection", &self.upstream_selection),
            ("min_ttl", &self.min_ttl),
            ("max_ttl", &self.max_ttl),
            ("serve_stale", &self.serve_stale),
            ("forward_ports", &self.forward_ports),
        ] {
            if let Some(v) = value {
                keys.push((name, v.span()));
            }
        }
        if let Some(v) = &self.nsid {
            keys.push(("nsid", v.span()));
        }
        if let Some(v) = &self.cookies {
            keys.push(("cookies", v.span()));
        }
        if let Some(v) = &self.rate_limit {
            keys.push(("rate_limit", v.span()));
        }
        if let Some(v) = &self.tsig_keys {
            keys.push(("tsig_keys", v.span()));
        }
        if let Some(v) = &self.secondary {
            keys.push(("secondary", v.span()));
        }
        keys
    }
}
