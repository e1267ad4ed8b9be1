//! `kind = "dns"`: authoritative answers from BIND zone files and a forwarding cache for
//! other names (Twisted's `twistd dns`), over UDP and TCP; see the `weft-names` crate.
//!
//! Keys: `zones` (zone files, relative to the working directory unless absolute),
//! `forward` (upstream resolvers, `IP` or `IP:PORT`), `cache_size` (forwarded answers
//! kept, default 10000; 0 turns the cache off), `cache_bytes` (the bytes they may take,
//! default 16 MiB) and `timeout` (how long an upstream may
//! take before the client gets SERVFAIL, default `"2s"`), `tsig_keys` (the keys a query
//! may be signed with, RFC 8945: `{ name, algorithm, secret }` each, as `tsig-keygen`
//! writes them), `allow_transfer` (the peers that may AXFR and IXFR the zones: addresses
//! and CIDR blocks, each followed by the name of the key its requests must be signed with
//! if it names one, as NSD's `provide-xfr`; default none) and `notify`
//! (where a NOTIFY goes when a reload changes a zone's serial: `IP` or `IP:PORT`, port 53
//! by default); `nsid`, `cookies` and `rate_limit` are read in `dns_edns`, the forwarding keys in
//! `dns_forwarding`. Zone files are
//! read and checked here, so `weft check` reports a bad record by the zone file's name and
//! line; a reload keeps the running zone of a file that no longer loads (see `dns_zones`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;
use weft_names::{
    Catalog, DnsConfig, DnsMetrics, DnsServer, NamesError, Prefix, ServiceMetrics, TransferConfig,
    NotifyPeer, TransferPeer, TsigKey, WeakServer, Zone,
};

use crate::config::ConfigError;
use crate::config::loops::Target;
use crate::config::validate::ServiceCtx;

/// The largest `cache_size` accepted.
const MAX_CACHE_SIZE: i64 = 10_000_000;
/// The largest `cache_bytes` accepted: 4 GiB.
const MAX_CACHE_BYTES: i64 = 4 << 30;

/// The settings of a dns service.
#[derive(Debug, Clone, Eq)]
pub struct DnsSettings {
    /// The zone files, as configured.
    pub zone_files: Vec<PathBuf>,
    /// The zones loaded from them, and the forwarding settings.
    pub config: DnsConfig,
    /// The zone files that did not load, in file order, each with the error `weft check`
    /// reports: [`crate::config::Config::parse`] refuses the configuration for the first,
    /// and a reload keeps the zone each had in service.
    pub failed: Vec<FailedZone>,
}

/// Two settings are the same when they serve the same: which zone files did not load
/// (each keeping the zone it gave in service) is what a reload reports, not a change to
/// start the service again for.
impl PartialEq for DnsSettings {
    fn eq(&self, other: &Self) -> bool {
        self.zone_files == other.zone_files && self.config == other.config
    }
}

/// A zone file that did not load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedZone {
    /// The file, as configured.
    pub file: PathBuf,
    /// Why, naming the file and its line.
    pub error: ConfigError,
}

/// `kind = "dns"`.
pub(crate) struct DnsKind;

/// What the dns services of a gateway share, made once and kept across reloads.
#[derive(Debug, Default)]
pub(crate) struct DnsShared {
    /// The DNS families; `None` keeps DNS counters off `/metrics`.
    pub(crate) families: Option<DnsMetrics>,
    /// Each service's server in force, by name, set when the start that made it commits:
    /// a service started again by a reload takes over what must survive from it (a
    /// reload that fails, or several, leave it as it was). Weak, so a removed service's
    /// server is freed once it has drained.
    servers: RefCell<HashMap<String, WeakServer>>,
}

impl DnsShared {
    /// The server service `name` runs now, if any.
    fn running(&self, name: &str) -> Option<DnsServer> {
        self.servers.borrow().get(name)?.upgrade()
    }

    /// `server` is service `name`'s in force, its start committed: the TCP connections
    /// of the server it replaces ask it from their next question on.
    fn put_in_force(&self, name: &str, server: &DnsServer) {
        server.put_in_force();
        self.servers
            .borrow_mut()
            .insert(name.to_owned(), server.downgrade());
    }
}

impl super::Kind for DnsKind {
    const NAME: &'static str = "dns";
    const KEYS: &'static [&'static str] = &[
        "zones",
        "forward",
        "cache_size",
        "cache_bytes",
        "timeout",
        "allow_transfer",
        "tsig_keys",
        "notify",
        "secondary",
        "nsid",
        "cookies",
        "rate_limit",
        // Forwarding's (`dns_forwarding`).
        "upstream_selection",
        "min_ttl",
        "max_ttl",
        "serve_stale",
        "forward_ports",
    ];
    /// RFC 7766 §6.2.3 suggests an idle DNS-over-TCP connection be closed after seconds.
    const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
    type Settings = Box<DnsSettings>;
    /// The DNS families, and the servers running.
    type Metrics = DnsShared;

    fn validate(ctx: &ServiceCtx<'_>) -> Result<Box<DnsSettings>, ConfigError> {
        validate(ctx).map(Box::new)
    }

    fn metrics(
        registry: Option<&prometheus::Registry>,
        exemplars: &weft::observe::exemplar::ExemplarIndex,
    ) -> DnsShared {
        let families =
            registry.and_then(
                |r| match DnsMetrics::register_with_exemplars(r, exemplars) {
                    Ok(m) => Some(m),
                    Err(error) => {
                        tracing::warn!(%error, "DNS metrics are not on /metrics");
                        None
                    }
                },
            );
        DnsShared {
            families,
            ..DnsShared::default()
        }
    }

    fn start(
        on: &super::Listeners<'_>,
        settings: &Self::Settings,
        env: &super::ServiceEnv,
    ) -> Result<Vec<weft::Address>, super::ServiceError> {
        let (name, endpoints) = (on.name, on.endpoints);
        let shared = env.metrics::<Self>();
        let metrics = match &shared.families {
            Some(m) => m.service(name),
            None => ServiceMetrics::detached(name),
        };
        if let Some(to) = &env.query_log {
            metrics.log_queries(super::dns_view::query_log(name, to), to.per_second);
        }
        let config = &settings.config;
        let view = super::dns_view::DnsView::of(&metrics, &config.zones, &config.transfer.secondaries);
        let config = settings.config.clone();
        // After a reload, the server that still runs hands over what must survive it.
        let previous = shared.running(name);
        let (reactor, options) = (on.reactor, &on.options);
        let listening = weft_names::listen_after(
            reactor,
            name,
            endpoints,
            options,
            config,
            metrics,
            previous.as_ref(),
        );
        let (server, bound) = listening?;
        // In force once the reload (or the transfer) commits; never, if it fails.
        let (in_force, service) = (server.downgrade(), name.to_owned());
        reactor.at_commit(move || {
            if let Some(server) = in_force.upgrade() {
                shared.put_in_force(&service, &server);
            }
        });
        env.views.set(name, Self::NAME, std::sync::Arc::new(view));
        Ok(bound)
    }

    fn describe(d: &Self::Settings) -> serde_json::Value {
        serde_json::json!({
            "zones": d.zone_files,
            "forward": d.config.forward,
            "cache_size": d.config.cache_size,
            "cache_bytes": d.config.cache_bytes,
            "timeout_ms": d.config.timeout.as_millis() as u64,
            "forwarding": super::dns_forwarding::describe(&d.config.forwarding),
            "allow_transfer": d.config.transfer.allow.iter().map(ToString::to_string).collect::<Vec<_>>(),
            // Names and algorithms; a secret is never shown.
            "tsig_keys": d.config.tsig_keys.iter().map(|k| serde_json::json!({
                "name": k.name().to_string(),
                "algorithm": k.algorithm(),
            })).collect::<Vec<_>>(),
            "notify": d.config.transfer.notify.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "secondary": d.config.transfer.secondaries.iter().map(|s| serde_json::json!({
                "zone": s.origin.to_string(),
                "file": s.file,
                "primaries": s.primaries.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "nsid": d.config.edns.nsid,
            "cookies": d.config.edns.cookies,
            "rate_limit": d.config.rate_limit.map(|r| serde_json::json!({
                "responses_per_second": r.responses_per_second,
                "burst": r.burst,
                "slip": r.slip,
                "ipv4_prefix": r.ipv4_prefix,
                "ipv6_prefix": r.ipv6_prefix,
            })),
        })
    }
}

fn validate(ctx: &ServiceCtx<'_>) -> Result<DnsSettings, ConfigError> {
    ctx.only_keys(<DnsKind as super::Kind>::KEYS)?;
    let raw = ctx.raw;
    let mut zones = Catalog::default();
    let mut zone_files = Vec::new();
    let mut failed = Vec::new();
    for (file, span) in strings(ctx, "zones", &raw.zones)? {
        let path = PathBuf::from(&file);
        let loaded = Zone::load(&path).map_err(|e| ConfigError {
            file: e.file.display().to_string(),
            line: (e.line > 0).then_some(e.line),
            column: None,
            key: Some(format!("{}.zones", ctx.prefix)),
            // Where the zone is named, as nginx -t says "in FILE:LINE" of an include.
            message: {
                let (line, _) = ctx.at.line_col(span.start);
                format!("{} (named on line {line} of {})", e.message, ctx.at.file)
            },
        });
        let zone = match loaded {
            Ok(zone) => {
                super::dns_signed::warnings(ctx, &span, &path, &zone);
                zone
            }
            Err(error) => {
                failed.push(FailedZone {
                    file: path.clone(),
                    error,
                });
                zone_files.push(path);
                continue;
            }
        };
        zones.add(zone).map_err(|e| match e {
            NamesError::DuplicateZone { .. } => ctx.error(span.clone(), "zones", e.to_string()),
            other => ctx.error(span.clone(), "zones", other.to_string()),
        })?;
        zone_files.push(path);
    }
    let mut forward = Vec::new();
    for (text, span) in strings(ctx, "forward", &raw.forward)? {
        let addr = text
            .parse::<SocketAddr>()
            .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
            .map_err(|_| {
                format!("{text:?} is not an upstream address; write it like \"127.0.0.1:53\" or \"[::1]:53\"")
            })
            .and_then(|addr| one_peer(addr, "an upstream"))
            .and_then(|addr| not_itself(ctx, addr))
            .map_err(|message| ctx.error(span, "forward", message))?;
        forward.push(addr);
    }
    let tsig_keys = tsig_keys(ctx)?;
    let mut transfer = transfer(ctx, &tsig_keys)?;
    transfer.secondaries =
        super::dns_secondary::secondaries(ctx, &tsig_keys, &mut zones, &zone_files)?;
    if zone_files.is_empty() && forward.is_empty() && transfer.secondaries.is_empty() {
        return Err(ctx.error(
            raw.kind.span(),
            "zones",
            "a dns service needs `zones` (zone files), `secondary` (zones transferred from \
             primaries), `forward` (upstream resolvers), or some of them",
        ));
    }
    let cache_size = match &raw.cache_size {
        Some(n) if !(0..=MAX_CACHE_SIZE).contains(n.get_ref()) => {
            return Err(ctx.error(
                n.span(),
                "cache_size",
                format!(
                    "must be between 0 (no cache) and {MAX_CACHE_SIZE}, got {}",
                    n.get_ref()
                ),
            ));
        }
        Some(n) => usize::try_from(*n.get_ref()).expect("checked range"),
        None => DnsConfig::DEFAULT_CACHE_SIZE,
    };
    let cache_bytes = match &raw.cache_bytes {
        Some(n) if !(0..=MAX_CACHE_BYTES).contains(n.get_ref()) => {
            return Err(ctx.error(
                n.span(),
                "cache_bytes",
                format!(
                    "must be between 0 (no cache) and {MAX_CACHE_BYTES} (4 GiB), got {}",
                    n.get_ref()
                ),
            ));
        }
        Some(n) => usize::try_from(*n.get_ref()).expect("checked range"),
        None => DnsConfig::DEFAULT_CACHE_BYTES,
    };
    let timeout = ctx.duration("timeout", raw.timeout.as_ref(), DnsConfig::DEFAULT_TIMEOUT)?;
    let forwarding = super::dns_forwarding::validate(ctx)?;
    if !transfer.allow.is_empty() {
        zones.prepare_transfers();
    }
    Ok(DnsSettings {
        zone_files,
        config: DnsConfig {
            zones,
            forward,
            forwarding,
            cache_size,
            cache_bytes,
            timeout,
            transfer,
            edns: super::dns_edns::edns(ctx)?,
            rate_limit: super::dns_edns::rate_limit(ctx)?,
            tsig_keys,
        },
        failed,
    })
}

/// `tsig_keys`: a list of `{ name, algorithm, secret }` tables, each key once. No error
/// quotes what was written: it may hold a secret.
fn tsig_keys(ctx: &ServiceCtx<'_>) -> Result<Vec<TsigKey>, ConfigError> {
    let Some(value) = &ctx.raw.tsig_keys else {
        return Ok(Vec::new());
    };
    let error = |why: String| ctx.error(value.span(), "tsig_keys", why);
    let Some(entries) = value.get_ref().as_array() else {
        return Err(error(
            "is a list of tables such as [{ name = \"xfr.example.\", algorithm = \"hmac-sha256\", \
             secret = \"...\" }]"
                .into(),
        ));
    };
    let mut keys: Vec<TsigKey> = Vec::new();
    for (n, entry) in entries.iter().enumerate() {
        let Some(table) = entry.as_table() else {
            return Err(error(format!(
                "entry {n} is not a table {{ name, algorithm, secret }}"
            )));
        };
        if let Some(other) = table
            .keys()
            .find(|k| !["name", "algorithm", "secret"].contains(&k.as_str()))
        {
            return Err(error(format!(
                "entry {n} has the key {other:?}; a key has name, algorithm and secret"
            )));
        }
        let field = |field: &str| {
            table
                .get(field)
                .and_then(toml::Value::as_str)
                .ok_or_else(|| error(format!("entry {n} has no {field} (a string)")))
        };
        let name = field("name")?;
        let key = TsigKey::new(name, field("algorithm")?, field("secret")?)
            .map_err(|e| error(format!("key {name:?}: {e}")))?;
        if keys.iter().any(|k| k.name() == key.name()) {
            return Err(error(format!("key {} is defined twice", key.name())));
        }
        if let Some((secret, mac)) = key.short_secret() {
            ctx.warn(
                value.span(),
                "tsig_keys",
                format!(
                    "key {}'s secret is {secret} bytes, shorter than the {mac} of its \
                     algorithm's MAC, which RFC 8945 section 6 asks at the least; make one \
                     with `tsig-keygen -a {} NAME`",
                    key.name(),
                    key.algorithm()
                ),
            );
        }
        keys.push(key);
    }
    Ok(keys)
}

/// `allow_transfer` and `notify` (their keys among `keys`).
fn transfer(ctx: &ServiceCtx<'_>, keys: &[TsigKey]) -> Result<TransferConfig, ConfigError> {
    let raw = ctx.raw;
    let mut allow = Vec::new();
    for (text, span) in strings(ctx, "allow_transfer", &raw.allow_transfer)? {
        let written = ("an address or CIDR block", "\"192.0.2.0/24\" or \"192.0.2.7 xfr.example.\"");
        let (addresses, key) = keyed(ctx, ("allow_transfer", &text, &span), written, keys)?;
        let prefix: Prefix = addresses
            .parse()
            .map_err(|e: weft_names::transfer::PrefixError| {
                ctx.error(span.clone(), "allow_transfer", e.to_string())
            })?;
        let key = key.map(|k| k.name().clone());
        allow.push(TransferPeer { prefix, key });
    }
    // An entry without a key admits its addresses unsigned: a keyed entry it covers asks
    // for a key that is not needed.
    for keyed in allow.iter().filter(|p| p.key.is_some()) {
        if let Some(open) = allow
            .iter()
            .find(|p| p.key.is_none() && p.prefix.covers(&keyed.prefix))
        {
            ctx.warn(
                raw.allow_transfer.as_ref().map_or(0..0, Spanned::span),
                "allow_transfer",
                format!(
                    "\"{keyed}\" asks for a key, but \"{open}\" admits the same addresses \
                     without one, so their transfers need none"
                ),
            );
        }
    }
    let mut notify = Vec::new();
    for (entry, span) in strings(ctx, "notify", &raw.notify)? {
        let written = ("a peer address", "\"192.0.2.2\" or \"192.0.2.2:5353 xfr.example.\"");
        let (text, key) = keyed(ctx, ("notify", &entry, &span), written, keys)?;
        let key = key.cloned();
        let addr = peer_address(text, "a secondary")
            .map_err(|message| ctx.error(span, "notify", message))?;
        notify.push(NotifyPeer { addr, key });
    }
    Ok(TransferConfig {
        allow,
        notify,
        secondaries: Vec::new(),
    })
}

/// `text`, the address of `what` (a secondary, a primary): `IP` or `IP:PORT`, port 53 by
/// default, one host.
pub(super) fn peer_address(text: &str, what: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| {
            format!("{text:?} is not a peer address; write it like \"192.0.2.2\" or \"192.0.2.2:5353\"")
        })
        .and_then(|addr| one_peer(addr, what))
}

/// The words of `entry`, an entry of `field` at `span`: the first (`written`'s first, in
/// errors) and the key of `keys` the second names, if there is one (`written`'s second
/// shows both).
pub(super) fn keyed<'e, 'k>(
    ctx: &ServiceCtx<'_>,
    (field, entry, span): (&str, &'e str, &Range<usize>),
    (what, examples): (&str, &str),
    keys: &'k [TsigKey],
) -> Result<(&'e str, Option<&'k TsigKey>), ConfigError> {
    let mut words = entry.split_whitespace();
    let (Some(first), key, None) = (words.next(), words.next(), words.next()) else {
        let why =
            format!("{entry:?} is not {what} and at most a key's name, such as {examples}");
        return Err(ctx.error(span.clone(), field, why));
    };
    match key {
        None => Ok((first, None)),
        Some(key) => match keys.iter().find(|k| k.is_named(key)) {
            Some(found) => Ok((first, Some(found))),
            None => {
                let why = format!("{entry:?} names key {key:?}, which tsig_keys does not define");
                Err(ctx.error(span.clone(), field, why))
            }
        },
    }
}

/// `addr` if a question can be sent to it and answered: one host (not "any address", a
/// broadcast or a multicast group) on a port that is one (not 0).
fn one_peer(addr: SocketAddr, what: &str) -> Result<SocketAddr, String> {
    let ip = addr.ip();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if ip.is_unspecified() || ip.is_multicast() || broadcast {
        return Err(format!(
            "{addr} is not {what}'s address: {ip} is no one host (write the address it answers on)"
        ));
    }
    if addr.port() == 0 {
        return Err(format!(
            "{addr}: port 0 is no port to ask on (the DNS port is 53: write {})",
            SocketAddr::new(ip, 53)
        ));
    }
    Ok(addr)
}

/// `addr` unless it is one of this service's own UDP listeners: it would ask itself
/// each question it cannot answer, which it forwards again, until the timeout.
fn not_itself(ctx: &ServiceCtx<'_>, addr: SocketAddr) -> Result<SocketAddr, String> {
    match ctx.own_listener(&Target::Datagram(addr)) {
        Some(endpoint) => Err(format!(
            "{addr} is this service's own listener {endpoint:?}: it would forward each question \
             to itself"
        )),
        None => Ok(addr),
    }
}

/// A key holding a string or a list of strings, each with the key's span.
fn strings(
    ctx: &ServiceCtx<'_>,
    field: &str,
    value: &Option<Spanned<toml::Value>>,
) -> Result<Vec<(String, Range<usize>)>, ConfigError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let key = format!("{}.{field}", ctx.prefix);
    ctx.at
        .strings(&key, value, ("a string", "a list of strings"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::Config;
    use crate::services::ServiceKind;

    const ZONE: &str =
        "$ORIGIN example.test.\n$TTL 60\n@ SOA ns hostmaster 1 2 3 4 5\n@ NS ns\nwww A 192.0.2.1\n";

    fn config(keys: &str) -> Result<Config, String> {
        let text = format!(
            "[[service]]\nname = \"dns\"\nkind = \"dns\"\nlisten = [\"udp:5353\", \"tcp:5353\"]\n{keys}\n"
        );
        Config::parse("weft.toml", &text).map_err(|e| e.to_string())
    }

    fn settings(c: &Config) -> &super::DnsSettings {
        match &c.services[0].kind {
            ServiceKind::Dns(d) => d,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_and_every_key() {
        let dir = tempfile::tempdir().unwrap();
        let zone = dir.path().join("example.test.zone");
        std::fs::write(&zone, ZONE).unwrap();
        let c = config(&format!("zones = [{:?}]", zone.display())).unwrap();
        let d = settings(&c);
        assert_eq!(d.config.zones.zones().len(), 1);
        assert!(d.config.forward.is_empty());
        assert_eq!(d.config.cache_size, 10_000);
        assert_eq!(d.config.cache_bytes, 16 << 20);
        assert_eq!(d.config.timeout, Duration::from_secs(2));

        let c =
            config("forward = [\"127.0.0.1:5300\", \"::1\"]\ncache_size = 0\ntimeout = \"500ms\"")
                .unwrap();
        let d = settings(&c);
        assert_eq!(
            d.config.forward,
            [
                "127.0.0.1:5300".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        assert_eq!(
            (d.config.cache_size, d.config.timeout),
            (0, Duration::from_millis(500))
        );
        assert!(
            c.services[0]
                .kind
                .settings_json()
                .contains("\"timeout_ms\":500")
        );
        let c = config(
            "forward = \"127.0.0.1\"\nallow_transfer = [\"192.0.2.7\", \"2001:db8::/32\"]\nnotify = [\"192.0.2.8\", \"192.0.2.9:5300\"]",
        )
        .unwrap();
        let transfer = &settings(&c).config.transfer;
        let allowed: Vec<String> = transfer.allow.iter().map(ToString::to_string).collect();
        assert_eq!(allowed, ["192.0.2.7/32", "2001:db8::/32"]);
        assert!(transfer.allow.iter().all(|p| p.key.is_none()));
        let notified: Vec<String> = transfer.notify.iter().map(ToString::to_string).collect();
        assert_eq!(notified, ["192.0.2.8:53", "192.0.2.9:5300"]);
        let json = c.services[0].kind.settings_json();
        assert!(
            json.contains("\"allow_transfer\":[\"192.0.2.7/32\",\"2001:db8::/32\"]"),
            "{json}"
        );
        assert!(
            settings(&config("forward = \"127.0.0.1\"").unwrap())
                .config
                .transfer
                .allow
                .is_empty(),
            "nobody by default"
        );
    }

    #[test]
    fn tsig_keys_are_read_as_tsig_keygen_writes_them_and_named_by_allow_transfer() {
        const SECRET: &str = "bWFkZSBmb3IgdGhlIHRlc3Qgb2YgVFNJRyBpbiB3ZWZ0";
        // 64 bytes, as tsig-keygen makes an HMAC-SHA512 key.
        let long = format!("{}==", "A".repeat(86));

        let keys = |entries: &str, allow: &str| {
            config(&format!(
                "forward = \"127.0.0.1\"\ntsig_keys = [{entries}]\nallow_transfer = {allow}"
            ))
        };
        let key = |name: &str, algorithm: &str, secret: &str| {
            format!("{{ name = {name:?}, algorithm = {algorithm:?}, secret = {secret:?} }}")
        };
        let c = keys(
            &format!(
                "{}, {}",
                key("xfr.example.", "hmac-sha256", SECRET),
                key("Other.Example", "HMAC-SHA512", &long)
            ),
            r#"["192.0.2.7 XFR.example", "198.51.100.0/24 other.example.", "203.0.113.9"]
               notify = ["192.0.2.7:5300 xfr.example.", "192.0.2.8"]"#,
        )
        .unwrap();
        let d = settings(&c);
        let allowed: Vec<String> = d.config.transfer.allow.iter().map(ToString::to_string).collect();
        assert_eq!(
            allowed,
            ["192.0.2.7/32 xfr.example.", "198.51.100.0/24 other.example.", "203.0.113.9/32"]
        );
        let notified: Vec<String> = d.config.transfer.notify.iter().map(ToString::to_string).collect();
        assert_eq!(notified, ["192.0.2.7:5300 xfr.example.", "192.0.2.8:53"]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        // What the dashboard shows: names and algorithms, never a secret.
        let json = c.services[0].kind.settings_json();
        assert!(json.contains(r#"{"algorithm":"hmac-sha512","name":"other.example."}"#), "{json}");
        assert!(!json.contains(SECRET), "{json}");
        // A secret shorter than the MAC, and a key an open entry makes needless, are
        // warned of.
        let w = keys(
            &key("short.", "hmac-sha256", "AAAAAAAAAAAAAAAAAAAAAA=="),
            r#"["127.0.0.1 short.", "127.0.0.0/8"]"#,
        )
        .unwrap();
        let warned: Vec<String> = w.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(warned.len(), 2, "{warned:?}");
        assert!(warned[0].contains("key short.'s secret is 16 bytes, shorter than the 32"));
        assert!(
            warned[1].contains(r#""127.0.0.1/32 short." asks for a key, but "127.0.0.0/8""#),
            "{warned:?}"
        );

        for (entries, allow, says) in [
            (key("x.", "hmac-md5", SECRET), "[]", r#"tsig_keys: key "x.": algorithm "hmac-md5" is deprecated"#),
            (key("x.", "hmac-sha256", "not base64"), "[]", r#"tsig_keys: key "x.": the secret is not base64"#),
            (
                format!("{0}, {0}", key("x.", "hmac-sha256", SECRET)),
                "[]",
                "tsig_keys: key x. is defined twice",
            ),
            (
                key("x.", "hmac-sha256", SECRET),
                r#""192.0.2.7 y.""#,
                r#"allow_transfer: "192.0.2.7 y." names key "y.", which tsig_keys does not define"#,
            ),
            (
                key("x.", "hmac-sha256", SECRET),
                r#""192.0.2.7 x. more""#,
                "is not an address or CIDR block and at most a key's name",
            ),
            (
                key("x.", "hmac-sha256", SECRET),
                "[]\nnotify = \"192.0.2.7 z.\"",
                r#"notify: "192.0.2.7 z." names key "z.", which tsig_keys does not define"#,
            ),
        ] {
            let e = keys(&entries, allow).unwrap_err();
            assert!(e.contains(says), "{e}");
            assert!(!e.contains(SECRET), "{e}");
        }
        // Written other than as tables: the error names what is wrong, and quotes none of
        // it, as the value may hold a secret.
        for (written, says) in [
            (format!("[{{ name = \"x.\", secret = \"{SECRET}\" }}]"), "entry 0 has no algorithm"),
            (format!("[\"x. hmac-sha256 {SECRET}\"]"), "entry 0 is not a table"),
            (format!("\"{SECRET}\""), "is a list of tables"),
            (
                format!("[{{ name = \"x.\", algorithm = \"hmac-sha256\", secret = \"{SECRET}\", note = 1 }}]"),
                "entry 0 has the key \"note\"",
            ),
        ] {
            let e = config(&format!("forward = \"127.0.0.1\"\ntsig_keys = {written}")).unwrap_err();
            assert!(e.contains(says), "{e}");
            assert!(!e.contains(SECRET), "{e}");
        }
    }

    #[test]
    fn a_bad_transfer_peer_is_named_by_its_key_and_a_bad_zone_is_refused_but_kept_for_a_reload() {
        let e = config("forward = \"127.0.0.1\"\nallow_transfer = [\"10.0.0.0/40\"]").unwrap_err();
        assert!(
            e.contains(
                "service[0].allow_transfer: \"10.0.0.0/40\" is not an IP address or a CIDR block"
            ),
            "{e}"
        );
        let e = config("forward = \"127.0.0.1\"\nnotify = \"secondary\"").unwrap_err();
        assert!(
            e.contains("service[0].notify: \"secondary\" is not a peer address"),
            "{e}"
        );
        // Addresses no question can be sent to, or that would come back to this service.
        for (keys, key, says) in [
            ("forward = \"127.0.0.1:0\"", "forward", "port 0 is no port"),
            ("forward = \"255.255.255.255\"", "forward", "is no one host"),
            ("forward = \"0.0.0.0:53\"", "forward", "is no one host"),
            ("forward = \"[ff02::1]:53\"", "forward", "is no one host"),
            ("forward = \"127.0.0.1:5353\"", "forward", "this service's own listener \"udp:5353\""),
            ("forward = \"127.0.0.1\"\nnotify = \"127.0.0.1:0\"", "notify", "port 0 is no port"),
        ] {
            let e = config(keys).unwrap_err();
            assert!(e.contains(&format!("service[0].{key}: ")), "{e}");
            assert!(e.contains(says), "{keys}: {e}");
        }
        assert!(config("forward = \"127.0.0.1:5300\"").is_ok());

        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.zone");
        std::fs::write(&good, ZONE).unwrap();
        let bad = dir.path().join("bad.zone");
        std::fs::write(
            &bad,
            ZONE.replace("example.test.", "bad.test.") + "mail MX ten mail\n",
        )
        .unwrap();
        let keys = format!("zones = [{:?}, {:?}]", good.display(), bad.display());
        let e = config(&keys).unwrap_err();
        assert!(
            e.starts_with(&format!("{}:6: service[0].zones:", bad.display())),
            "{e}"
        );
        let text =
            format!("[[service]]\nname = \"dns\"\nkind = \"dns\"\nlisten = \"udp:5353\"\n{keys}\n");
        let reloaded = Config::parse_for_reload("weft.toml", &text, None).unwrap();
        let d = settings(&reloaded);
        assert_eq!(d.config.zones.zones().len(), 1, "the zone that loads");
        assert_eq!(d.failed.len(), 1);
        assert_eq!(d.failed[0].file, bad);
        assert_eq!(d.failed[0].error.line, Some(6));
    }

    #[test]
    fn errors_name_the_line_and_key_and_zone_errors_the_zone_file_and_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let err = |keys: &str| config(keys).unwrap_err();
        assert!(err("").contains("service[0].zones: a dns service needs `zones`"));
        let e = err("forward = \"nowhere\"");
        assert!(e.starts_with("weft.toml:5:11: service[0].forward:"), "{e}");
        assert!(
            err("forward = \"127.0.0.1\"\ncache_size = -1")
                .contains("service[0].cache_size: must be between")
        );
        let e = err("forward = \"127.0.0.1\"\ncache_bytes = 5000000000");
        assert!(
            e.starts_with("weft.toml:6:15: service[0].cache_bytes: must be between 0"),
            "{e}"
        );
        assert!(err("forward = \"127.0.0.1\"\ntimeout = \"soon\"").contains("service[0].timeout:"));
        assert!(
            err("forward = \"127.0.0.1\"\nupstream = \"x\"")
                .contains("`upstream` is not a setting of kind \"dns\"")
        );
        let e = err("zones = \"/nonexistent/x.zone\"");
        assert!(
            e.starts_with("/nonexistent/x.zone: service[0].zones: cannot read the zone file"),
            "{e}"
        );
        assert!(e.contains("named on line 5 of weft.toml"), "{e}");

        let included = dir.path().join("hosts.inc");
        std::fs::write(&included, "www A 192.0.2.8\nmail A 300.0.0.1\n").unwrap();
        let including = dir.path().join("including.zone");
        std::fs::write(&including, format!("{ZONE}$INCLUDE hosts.inc\n")).unwrap();
        let e = err(&format!("zones = [{:?}]", including.display()));
        assert!(
            e.starts_with(&format!(
                "{}:2: service[0].zones: \"300.0.0.1\" is not an IPv4 address",
                included.display()
            )),
            "{e}"
        );

        let bad = dir.path().join("bad.zone");
        std::fs::write(&bad, format!("{ZONE}mail MX ten mail\n")).unwrap();
        let e = err(&format!("zones = [{:?}]", bad.display()));
        assert_eq!(
            e,
            format!(
                "{}:6: service[0].zones: MX preference \"ten\" is not a number from 0 to 65535 \
                 (named on line 5 of weft.toml)",
                bad.display()
            )
        );
    }

    #[test]
    fn secondary_zones_are_read_with_their_primaries_and_copies_and_every_mistake_named() {
        const SECRET: &str = "bWFkZSBmb3IgdGhlIHRlc3Qgb2YgVFNJRyBpbiB3ZWZ0";
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("example.test.zone");
        let keys = format!(
            "tsig_keys = [{{ name = \"xfr.example.\", algorithm = \"hmac-sha256\", secret = \"{SECRET}\" }}]"
        );
        let with = |entries: &str| config(&format!("{keys}\nsecondary = [{entries}]"));
        let entry = |zone: &str, file: &std::path::Path, primaries: &str| {
            format!("{{ zone = {zone:?}, file = {:?}, primaries = {primaries} }}", file.display().to_string())
        };

        // No copy yet: nothing served until the first transfer, and no warning.
        let c = with(&entry("Example.Test", &copy, r#"["192.0.2.1", "[2001:db8::1]:5300 XFR.example."]"#)).unwrap();
        let d = settings(&c);
        assert!(d.config.zones.zones().is_empty());
        let zone = &d.config.transfer.secondaries[0];
        assert_eq!(zone.origin.to_string(), "Example.Test.");
        let primaries: Vec<String> = zone.primaries.iter().map(ToString::to_string).collect();
        assert_eq!(primaries, ["192.0.2.1:53", "[2001:db8::1]:5300 xfr.example."]);
        assert!(zone.request_ixfr, "IXFR by default");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let axfr = entry("example.test.", &copy, r#"["192.0.2.1"]"#).replace(" }", ", request_ixfr = false }");
        assert!(!settings(&with(&axfr).unwrap()).config.transfer.secondaries[0].request_ixfr);
        let json = c.services[0].kind.settings_json();
        assert!(json.contains(r#""primaries":["192.0.2.1:53","[2001:db8::1]:5300 xfr.example."]"#), "{json}");

        // A copy kept: served from the start.
        let header = "; zone example.test. transferred from 192.0.2.1:53 at 0 (unix seconds)\n";
        std::fs::write(&copy, format!("{header}{ZONE}")).unwrap();
        let c = with(&entry("example.test.", &copy, r#"["192.0.2.1"]"#)).unwrap();
        assert_eq!(settings(&c).config.zones.zones().len(), 1);
        // One no primary confirmed within its SOA's expire time (4 s): not served.
        let long_ago = std::time::SystemTime::now() - Duration::from_secs(60);
        let opened = std::fs::File::options().append(true).open(&copy).unwrap();
        opened.set_modified(long_ago).unwrap();
        let c = with(&entry("example.test.", &copy, r#"["192.0.2.1"]"#)).unwrap();
        assert!(settings(&c).config.zones.zones().is_empty());
        assert!(c.warnings[0].to_string().contains("past its SOA's expire time of 4 s"), "{:?}", c.warnings);
        // A copy that does not load: a warning, transferred anew; one of another zone
        // is an error (it would be written over).
        let other = dir.path().join("other.zone");
        std::fs::write(&other, format!("{header}{ZONE}").replace("example.test.", "other.test.")).unwrap();
        let error = with(&entry("example.test.", &other, r#"["192.0.2.1"]"#)).unwrap_err();
        assert!(error.contains("holds a copy of the zone other.test., not example.test.: weft would write over it"), "{error}");
        // Nor a file a transfer did not write: a zone file, the history database.
        let hand = dir.path().join("hand.zone");
        std::fs::write(&hand, ZONE).unwrap();
        let error = with(&entry("example.test.", &hand, r#"["192.0.2.1"]"#)).unwrap_err();
        assert!(error.contains("is not a copy of example.test. a transfer wrote"), "{error}");
        let broken = dir.path().join("broken.zone");
        std::fs::write(&broken, format!("{header}@ A 192.0.2.1\n")).unwrap();
        let c = with(&entry("example.test.", &broken, r#"["192.0.2.1"]"#)).unwrap();
        assert!(c.warnings[0].to_string().contains("the zone example.test. is transferred anew"), "{:?}", c.warnings);

        let served = format!("zones = [{:?}]\n", copy.display().to_string());
        let none = dir.path().join("none.zone");
        for (written, says) in [
            ("{ zone = \"example.test.\" }".to_owned(), "entry 0 has no file"),
            (entry("example.test.", &none, "[]"), "zone example.test. names no primary"),
            (entry("example.test.", &none, r#"["192.0.2.1 nokey."]"#), "names key \"nokey.\", which tsig_keys does not define"),
            (entry("example.test.", &none, r#"["0.0.0.0"]"#), "is no one host"),
            (entry("example.test.", &none, r#""192.0.2.1""#), "primaries is a list"),
            (entry("a..b", &none, r#"["192.0.2.1"]"#), "\"a..b\" is not a zone's name"),
            (entry("a.", std::path::Path::new(""), r#"["192.0.2.1"]"#), "names no file"),
            (
                "{ zone = \"a.\", file = \"f\", primaries = [\"192.0.2.1\"], max_records = 0 }".to_owned(),
                "max_records is a number of records from 1",
            ),
            (format!("{0}, {0}", entry("a.test.", &none, r#"["192.0.2.1"]"#)), "zone a.test. is a secondary twice"),
            (
                format!("{}, {}", entry("a.test.", &none, r#"["192.0.2.1"]"#), entry("b.test.", &none, r#"["192.0.2.1"]"#)),
                "are both kept in",
            ),
            ("{ zone = \"a.\", file = \"f\", primaries = [], extra = 1 }".to_owned(), "has the key \"extra\""),
            (
                "{ zone = \"a.\", file = \"f\", primaries = [\"192.0.2.1\"], request_ixfr = \"yes\" }".to_owned(),
                "request_ixfr is true",
            ),
        ] {
            let error = with(&written).unwrap_err();
            assert!(error.contains(says), "{written}: {error}");
            assert!(error.contains("secondary"), "{error}");
        }
        // A zone served from a file cannot be a secondary too, nor kept in that file.
        let error = config(&format!("{served}{keys}\nsecondary = [{}]", entry("other.test.", &copy, r#"["192.0.2.1"]"#))).unwrap_err();
        assert!(error.contains("a file of `zones`: weft would write over it"), "{error}");
        let error = config(&format!("{served}{keys}\nsecondary = [{}]", entry("example.test.", &dir.path().join("x"), r#"["192.0.2.1"]"#))).unwrap_err();
        assert!(error.contains("is also served from"), "{error}");
    }

    #[test]
    fn a_secondary_zone_s_copy_is_no_other_file_of_the_configuration_nor_another_copy() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let service = |name: &str, port: u16, file: &str| {
            format!(
                "[[service]]\nname = {name:?}\nkind = \"dns\"\nlisten = [\"udp:{port}\"]\n\
                 secondary = [{{ zone = \"{name}.test.\", file = {file:?}, primaries = [\"192.0.2.1\"] }}]\n"
            )
        };
        let parse = |text: String| Config::parse("weft.toml", &format!("[store]\npath = \"{d}/weft.db\"\n{text}"));
        let error = parse(service("a", 5301, &format!("{d}/weft.db"))).unwrap_err().to_string();
        assert!(error.contains("is the history store's file: weft would write over it"), "{error}");
        let error = parse(service("a", 5301, "weft.toml")).unwrap_err().to_string();
        assert!(error.contains("is the configuration file"), "{error}");
        std::fs::create_dir(dir.path().join("x")).unwrap();
        let two = service("a", 5301, &format!("{d}/copy.zone")) + &service("b", 5302, &format!("{d}/x/../copy.zone"));
        let error = parse(two).unwrap_err().to_string();
        assert!(error.contains("is service[0]'s copy of the zone a.test."), "{error}");
        assert!(error.contains("service[1].secondary"), "{error}");
        parse(service("a", 5301, &format!("{d}/a.zone")) + &service("b", 5302, &format!("{d}/b.zone"))).unwrap();
    }
}
