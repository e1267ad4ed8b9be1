//! The forwarding families: answers dropped as spoofed or stray (by reason), the
//! outgoing port pool, per-upstream queries, per-try timeouts and smoothed round-trip
//! times, failure answers by code, upstream TCP connection reuse and stale answers, and
//! the forwarding cache's
//! bytes and evictions.
//!
//! The `upstream` label is an upstream address from the configuration, so it is bounded.

use std::net::SocketAddr;

use hickory_proto::op::ResponseCode;

use prometheus::{
    Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Why an upstream datagram was dropped: the `reason` label of
/// `weft_dns_upstream_mismatched_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mismatch {
    /// Not an upstream's address and port.
    Source,
    /// An id of no query out to that upstream (late, duplicate, or guessed).
    Id,
    /// The right id, but it arrived on another local port than the query left from.
    Port,
    /// The right id and port, but another question (or not a response).
    Question,
    /// Not a DNS message.
    Malformed,
    /// An id of a query already settled: the slower upstreams' answers in `parallel`,
    /// or answers after the timeout. Not a sign of spoofing.
    Late,
}

impl Mismatch {
    const ALL: [Self; 6] = [
        Self::Source,
        Self::Id,
        Self::Port,
        Self::Question,
        Self::Malformed,
        Self::Late,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Id => "id",
            Self::Port => "port",
            Self::Question => "question",
            Self::Malformed => "malformed",
            Self::Late => "late",
        }
    }
}

/// The forwarding families on one registry.
#[derive(Clone, Debug)]
pub(crate) struct ForwardFamilies {
    mismatched: IntCounterVec,
    ports_exhausted: IntCounterVec,
    tcp_reused: IntCounterVec,
    stale: IntCounterVec,
    queries: IntCounterVec,
    try_timeouts: IntCounterVec,
    srtt: GaugeVec,
    try_timeout: GaugeVec,
    cache_evictions: IntCounterVec,
    cache_bytes: IntGaugeVec,
    failures: IntCounterVec,
    scrubbed: IntCounterVec,
}

impl ForwardFamilies {
    pub(crate) fn new() -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let gauge =
            |name: &str, help: &str| GaugeVec::new(Opts::new(name, help), &["service", "upstream"]);
        Ok(Self {
            mismatched: counter(
                "weft_dns_upstream_mismatched_total",
                "Upstream datagrams dropped: not from an upstream, or not matching a query's id, local port and question, by reason.",
                &["service", "reason"],
            )?,
            ports_exhausted: counter(
                "weft_dns_upstream_ports_exhausted_total",
                "Upstream queries sent from a port already used up, because the most ports were open.",
                &["service"],
            )?,
            tcp_reused: counter(
                "weft_dns_upstream_tcp_reused_total",
                "Upstream TCP exchanges on a connection kept open from an earlier one.",
                &["service"],
            )?,
            stale: counter(
                "weft_dns_stale_answers_total",
                "Answers served from expired cache entries because no upstream answered (serve_stale).",
                &["service"],
            )?,
            queries: counter(
                "weft_dns_upstream_queries_total",
                "Queries sent to an upstream over UDP.",
                &["service", "upstream"],
            )?,
            try_timeouts: counter(
                "weft_dns_upstream_try_timeouts_total",
                "Upstream queries not answered within their try's timeout (the next upstream is asked).",
                &["service", "upstream"],
            )?,
            srtt: gauge(
                "weft_dns_upstream_srtt_seconds",
                "Smoothed round-trip time of an upstream, raised when it does not answer.",
            )?,
            try_timeout: gauge(
                "weft_dns_upstream_try_timeout_seconds",
                "How long the next query to an upstream waits before the next upstream is asked.",
            )?,
            failures: counter(
                "weft_dns_upstream_failures_total",
                "Upstream answers that failed their query (SERVFAIL, REFUSED, NOTIMP, FORMERR), by upstream and code.",
                &["service", "upstream", "rcode"],
            )?,
            cache_evictions: counter(
                "weft_dns_cache_evictions_total",
                "Forwarded answers evicted from the cache before their TTL ran out, to make room (cache_size, cache_bytes).",
                &["service"],
            )?,
            scrubbed: counter(
                "weft_dns_upstream_records_scrubbed_total",
                "Records of upstream answers left out: they do not answer the question asked (RFC 2181 section 5.4.1), or are of a name in the service's own zones.",
                &["service"],
            )?,
            cache_bytes: IntGaugeVec::new(
                Opts::new(
                    "weft_dns_cache_bytes",
                    "Bytes the forwarding cache holds, as counted against cache_bytes.",
                ),
                &["service"],
            )?,
        })
    }

    pub(crate) fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        for family in [
            &self.mismatched,
            &self.ports_exhausted,
            &self.tcp_reused,
            &self.stale,
            &self.queries,
            &self.try_timeouts,
            &self.cache_evictions,
            &self.failures,
            &self.scrubbed,
        ] {
            registry.register(Box::new(family.clone()))?;
        }
        registry.register(Box::new(self.srtt.clone()))?;
        registry.register(Box::new(self.cache_bytes.clone()))?;
        registry.register(Box::new(self.try_timeout.clone()))
    }

    pub(crate) fn service(&self, name: &str) -> ForwardMetrics {
        ForwardMetrics {
            service: name.into(),
            mismatched: Mismatch::ALL
                .iter()
                .map(|m| self.mismatched.with_label_values(&[name, m.as_str()]))
                .collect(),
            ports_exhausted: self.ports_exhausted.with_label_values(&[name]),
            tcp_reused: self.tcp_reused.with_label_values(&[name]),
            stale: self.stale.with_label_values(&[name]),
            cache_evictions: self.cache_evictions.with_label_values(&[name]),
            cache_bytes: self.cache_bytes.with_label_values(&[name]),
            scrubbed: self.scrubbed.with_label_values(&[name]),
            families: self.clone(),
        }
    }
}

/// One service's forwarding counters.
#[derive(Debug)]
pub(crate) struct ForwardMetrics {
    service: Box<str>,
    /// In the order of [`Mismatch::ALL`].
    mismatched: Vec<IntCounter>,
    ports_exhausted: IntCounter,
    tcp_reused: IntCounter,
    stale: IntCounter,
    cache_evictions: IntCounter,
    cache_bytes: IntGauge,
    scrubbed: IntCounter,
    /// To resolve the per-upstream handles when a forwarder starts.
    families: ForwardFamilies,
}

impl ForwardMetrics {
    pub(crate) fn mismatched(&self, why: Mismatch) -> &IntCounter {
        &self.mismatched[why as usize]
    }

    pub(crate) fn ports_exhausted(&self) -> &IntCounter {
        &self.ports_exhausted
    }

    pub(crate) fn tcp_reused(&self) -> &IntCounter {
        &self.tcp_reused
    }

    pub(crate) fn stale(&self) -> &IntCounter {
        &self.stale
    }

    pub(crate) fn scrubbed(&self) -> &IntCounter {
        &self.scrubbed
    }

    /// The cache now holds `bytes`, having evicted `evicted` more entries.
    pub(crate) fn cache_changed(&self, bytes: usize, evicted: u64) {
        self.cache_evictions.inc_by(evicted);
        self.cache_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// The handles of one configured upstream.
    pub(crate) fn upstream(&self, addr: SocketAddr) -> UpstreamMetrics {
        let labels = [&*self.service, &addr.to_string()];
        let f = &self.families;
        UpstreamMetrics {
            queries: f.queries.with_label_values(&labels),
            try_timeouts: f.try_timeouts.with_label_values(&labels),
            srtt: f.srtt.with_label_values(&labels),
            try_timeout: f.try_timeout.with_label_values(&labels),
            failures: FAILURES
                .map(|(_, rcode)| f.failures.with_label_values(&[labels[0], labels[1], rcode])),
        }
    }
}

/// One upstream's handles, resolved once.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamMetrics {
    pub(crate) queries: IntCounter,
    pub(crate) try_timeouts: IntCounter,
    pub(crate) srtt: Gauge,
    pub(crate) try_timeout: Gauge,
    /// In the order of [`FAILURES`].
    failures: [IntCounter; 4],
}

/// The failure codes an upstream may answer, with their label values.
const FAILURES: [(ResponseCode, &str); 4] = [
    (ResponseCode::ServFail, "SERVFAIL"),
    (ResponseCode::Refused, "REFUSED"),
    (ResponseCode::NotImp, "NOTIMP"),
    (ResponseCode::FormErr, "FORMERR"),
];

impl UpstreamMetrics {
    /// The upstream answered a query with `rcode`, a failure.
    pub(crate) fn failure_answered(&self, rcode: ResponseCode) {
        if let Some(i) = FAILURES.iter().position(|(code, _)| *code == rcode) {
            self.failures[i].inc();
        }
    }
}
