//! DNS service for weft (twisted.names): authoritative zones, a forwarding cache, UDP and TCP.
//!
//! A [`DnsServer`] answers questions about names in its BIND zone files with the AA flag
//! (NXDOMAIN or NODATA with the zone's SOA, CNAMEs followed inside the zone and on into
//! the service's other zones, each once, wildcards, referrals without it below a zone
//! cut),
//! forwards other names to upstream resolvers through a TTL cache, and REFUSES them when
//! it has no upstream. Each upstream query is a labelled [`weft::defer::Deferred`] with a
//! timeout, so a silent upstream is visible in the inspector and its clients get SERVFAIL.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let reactor = weft::Reactor::new()?;
//! let mut config = weft_names::DnsConfig::with_zones(&["zones/example.test.zone".into()])?;
//! config.forward = vec!["127.0.0.1:53".parse()?];
//! let metrics = weft_names::ServiceMetrics::detached("dns");
//! let endpoints = ["udp:5353".to_owned(), "tcp:5353".to_owned()];
//! weft_names::listen(&reactor, "dns", &endpoints, &Default::default(), config, metrics)?;
//! reactor.run()?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`zone`]: zone file text to [`Zone`]s (`lex` splits entries, `parse` builds records
//!   and reads `$INCLUDE`d files, `rdata` and `dnssec` read each type's fields, with
//!   [`ZoneError`]s naming the file and line), [`Catalog`] picks the zone of a name, and
//!   [`Zone::lookup`] (`answer`) gives the authoritative answer: wildcards, referrals at
//!   zone cuts, the additional section, `ANY` as one RRset; [`Zone::lookup_dnssec`] the
//!   same to a DO query, with a signed zone's RRSIGs and the NSEC or NSEC3 records that
//!   prove its denials (`proof`, from the chain read with the zone).
//! - [`wire`]: packet to request (FORMERR, NOTIMP, BADVERS for an EDNS version above 0,
//!   NOTAUTH for a TSIG-signed query that does not verify, or nothing for what is not a
//!   query), response headers and OPT (version 0, the DO bit copied), encoding with
//!   truncation (TC) to the client's UDP size; `tsig` verifies a signed query with the
//!   service's keys and signs its answers (RFC 8945).
//! - [`server`]: [`DnsServer::handle`], one packet in, one answer out through a
//!   [`Reply`] callback: from a zone, from the cache, later from upstream, or REFUSED;
//!   over UDP past the client prefix's rate limit for that kind of answer ([`rrl`]);
//!   `server/kept` answers plain UDP questions asked again from the encoded answers
//!   kept (`answers`: the zones', and the forwarding cache's with their TTLs counted
//!   down), `server/carry` hands what must survive a reload to the next server.
//! - [`edns`]: the OPT options answered, NSID and DNS cookies (a server secret that
//!   changes hourly), Extended DNS Errors; every other option is ignored.
//! - [`forward`]: questions out upstream (coalesced by question, a Deferred with a
//!   timeout each, its named steps saying the cache missed and which upstreams it may
//!   wait on), each upstream query with its own random id; `forward/received`
//!   matches answers to the upstream, local port, id and question they answer (the rest
//!   dropped and counted by reason), `forward/finish` caches and replays the answer;
//!   an answer truncated over UDP is asked again over
//!   TCP, and only whole answers are replayed.
//! - [`transfer`]: zone transfers out (AXFR, IXFR answered in full) to the peers of
//!   `allow_transfer`, streamed under back-pressure over TCP; NOTIFY to the `notify`
//!   peers when a reload changes a zone's serial, and REFUSED for a NOTIFY received.
//! - [`upstream`]: the forwarding options, and each upstream's smoothed round-trip time,
//!   which orders them (`sequential`) and sets each try's timeout.
//! - [`cache`]: forwarded answers by question for their TTL (within `min_ttl` and
//!   `max_ttl`) on the thread's clock, negative answers per RFC 2308 (NXDOMAIN for the
//!   whole name), expired ones kept for `serve_stale`, bounded.
//! - [`transport`]: [`DnsUdp`], [`DnsTcp`] under an [`weft::framing::Int16StringReceiver`]
//!   (the 2-byte length framing of DNS over TCP), and [`listen`] which wires them on a
//!   reactor; `link` is the [`UpstreamLink`] the forwarder sends through, `outgoing` its
//!   implementation on the reactor: random UDP ports, re-randomised as they are used,
//!   and kept TCP connections to upstreams; `random` draws ids and ports from the
//!   system's generator.
//! - [`metrics`]: the `weft_dns_*` families (the forwarding ones in `metrics_forward`),
//!   registered on a registry passed in, and per-service handles resolved once; every
//!   answer goes through `ServiceMetrics::answered`, which counts, times and records it.
//! - [`view`]: what the dashboard shows of the queries (recent ones, top names, each
//!   upstream's latency and timeouts), sampled under load and bounded, and the query log
//!   handed to history under a per-second budget, failures under one of their own.
//!
//! Data flows `transport` -> `server` (-> `wire`, `zone` | `forward` -> `cache`) ->
//! `Reply` -> `transport`; nothing blocks the reactor and nothing waits on a lock.

mod answers;
pub mod cache;
pub mod edns;
pub mod error;
pub mod forward;
mod link;
pub mod metrics;
mod metrics_forward;
mod outgoing;
mod random;
pub mod rrl;
pub mod server;
pub mod transfer;
pub mod transport;
mod tsig;
pub mod upstream;
pub mod view;
pub mod wire;
pub mod zone;

pub use edns::EdnsConfig;
pub use error::{NamesError, ZoneError};
pub use link::{TcpAnswer, TcpExchange, UdpLease, UpstreamLink};
pub use metrics::{Busy, DnsMetrics, Limited, Mismatch, ServiceMetrics};
pub use rrl::RateLimit;
pub use server::{DnsConfig, DnsServer, Outcome, Reply, Via, WeakServer};
pub use transfer::{NotifyPeer, Prefix, TransferConfig, TransferPeer};
pub use transport::{DnsTcp, DnsUdp, listen, listen_after};
pub use tsig::TsigKey;
pub use upstream::{ForwardOptions, Selection};
pub use view::{LoggedQuery, QueryFigures, QueryLog, Source};
pub use zone::{Catalog, Zone, ZoneAnswer};
