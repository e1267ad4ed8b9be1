//! The DNS metric families, registered once on a registry passed in, and per-service
//! handles resolved once and kept.
//!
//! Labels are bounded: `qtype` and `rcode` take a fixed set of values (anything else is
//! `other`), so a client sending random types cannot grow the series.

use std::sync::Arc;
use std::time::Instant;

use weft::observe::exemplar::{ExemplarIndex, Exemplars, SpanRef};

use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::RecordType;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

use crate::view::{Answered, LATENCY_BUCKETS, QueryFigures, Source};

use crate::edns::CookieState;
pub use crate::metrics_forward::Mismatch;
use crate::metrics_forward::{ForwardFamilies, ForwardMetrics};

/// The query types with their own `qtype` label value, in label order.
const QTYPES: [(RecordType, &str); 16] = [
    (RecordType::A, "A"),
    (RecordType::AAAA, "AAAA"),
    (RecordType::ANY, "ANY"),
    (RecordType::CAA, "CAA"),
    (RecordType::CNAME, "CNAME"),
    (RecordType::DNSKEY, "DNSKEY"),
    (RecordType::DS, "DS"),
    (RecordType::HTTPS, "HTTPS"),
    (RecordType::MX, "MX"),
    (RecordType::NS, "NS"),
    (RecordType::PTR, "PTR"),
    (RecordType::SOA, "SOA"),
    (RecordType::SRV, "SRV"),
    (RecordType::SVCB, "SVCB"),
    (RecordType::TXT, "TXT"),
    (RecordType::AXFR, "AXFR"),
];

/// The response codes with their own `rcode` label value.
const RCODES: [(ResponseCode, &str); 10] = [
    (ResponseCode::NoError, "NOERROR"),
    (ResponseCode::FormErr, "FORMERR"),
    (ResponseCode::ServFail, "SERVFAIL"),
    (ResponseCode::NXDomain, "NXDOMAIN"),
    (ResponseCode::NotImp, "NOTIMP"),
    (ResponseCode::Refused, "REFUSED"),
    // A DNAME substitution too long for a name (RFC 6672 §2.2).
    (ResponseCode::YXDomain, "YXDOMAIN"),
    (ResponseCode::NotAuth, "NOTAUTH"),
    (ResponseCode::BADVERS, "BADVERS"),
    (ResponseCode::BADCOOKIE, "BADCOOKIE"),
];

/// Why a forwarded question was answered SERVFAIL at once: a bound was reached. The
/// `reason` label of `weft_dns_forward_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Busy {
    /// As many distinct questions as allowed are out upstream.
    InFlight,
    /// As many clients as allowed wait on the same question.
    Waiters,
    /// An answer came truncated, and as many questions as allowed are already asked
    /// again over TCP.
    Tcp,
    /// As many of the client's questions as one address may have wait are waiting.
    Client,
}

impl Busy {
    const ALL: [Self; 4] = [Self::InFlight, Self::Waiters, Self::Tcp, Self::Client];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InFlight => "in_flight",
            Self::Waiters => "waiters",
            Self::Tcp => "tcp",
            Self::Client => "client",
        }
    }

    /// What a log line says it is.
    pub fn says(self) -> &'static str {
        match self {
            Self::InFlight => "distinct questions upstream",
            Self::Waiters => "clients waiting on this question",
            Self::Tcp => "questions asked again over TCP",
            Self::Client => "this client's questions waiting",
        }
    }
}

use crate::rrl::Kind;
pub use crate::rrl::Limited;

/// The `result` label values of `weft_dns_cookies_total`.
const COOKIE_RESULTS: [&str; 3] = ["client", "valid", "invalid"];

/// The DNS families on one registry. Register once per registry and derive a
/// [`ServiceMetrics`] per service with [`service`](Self::service).
#[derive(Clone, Debug)]
pub struct DnsMetrics {
    queries: IntCounterVec,
    responses: IntCounterVec,
    cache_hits: IntCounterVec,
    cache_misses: IntCounterVec,
    upstream_timeouts: IntCounterVec,
    upstream_truncated: IntCounterVec,
    forward_refused: IntCounterVec,
    dropped: IntCounterVec,
    reused: IntCounterVec,
    forwarding: ForwardFamilies,
    /// Zone transfers, NOTIFY and zone reloads.
    transfer: crate::transfer::metrics::TransferFamilies,
    rate_limited: IntCounterVec,
    rate_limited_kinds: IntCounterVec,
    rate_limit_evictions: IntCounterVec,
    cookies: IntCounterVec,
    duration: HistogramVec,
    log_skipped: IntCounterVec,
    log_failures_skipped: IntCounterVec,
    /// Where each service's latency exemplars are listed.
    exemplars: ExemplarIndex,
}

/// The latency histogram's name, under which its exemplars are listed.
const DURATION: &str = "weft_dns_request_duration_seconds";

impl DnsMetrics {
    /// Creates the families and registers them on `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        Self::register_with_exemplars(registry, &ExemplarIndex::default())
    }

    /// Creates the families and registers them on `registry`; each service's latency
    /// exemplars (forwarded answers, while spans are exported) are listed in `exemplars`.
    pub fn register_with_exemplars(
        registry: &Registry,
        exemplars: &ExemplarIndex,
    ) -> Result<Self, prometheus::Error> {
        let mut metrics = Self::unregistered()?;
        metrics.exemplars = exemplars.clone();
        for family in [
            &metrics.queries,
            &metrics.responses,
            &metrics.cache_hits,
            &metrics.cache_misses,
            &metrics.upstream_timeouts,
            &metrics.upstream_truncated,
            &metrics.forward_refused,
            &metrics.dropped,
            &metrics.reused,
            &metrics.rate_limited,
            &metrics.rate_limited_kinds,
            &metrics.rate_limit_evictions,
            &metrics.cookies,
            &metrics.log_skipped,
            &metrics.log_failures_skipped,
        ] {
            registry.register(Box::new(family.clone()))?;
        }
        metrics.forwarding.register(registry)?;
        metrics.transfer.register(registry)?;
        registry.register(Box::new(metrics.duration.clone()))?;
        Ok(metrics)
    }

    /// The families on no registry (for tests and programs without `/metrics`).
    pub fn unregistered() -> Result<Self, prometheus::Error> {
        let vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        Ok(Self {
            queries: vec(
                "weft_dns_queries_total",
                "DNS queries read as a question served, by query type (a malformed query, \
                 an opcode not served or a class other than IN is answered and counted in \
                 weft_dns_responses_total only).",
                &["service", "qtype"],
            )?,
            responses: vec(
                "weft_dns_responses_total",
                "DNS responses sent, by response code.",
                &["service", "rcode"],
            )?,
            cache_hits: vec(
                "weft_dns_cache_hits_total",
                "Forwarded questions answered from the cache.",
                &["service"],
            )?,
            cache_misses: vec(
                "weft_dns_cache_misses_total",
                "Forwarded questions not in the cache.",
                &["service"],
            )?,
            upstream_timeouts: vec(
                "weft_dns_upstream_timeouts_total",
                "Upstream queries that got no answer in time (answered SERVFAIL).",
                &["service"],
            )?,
            upstream_truncated: vec(
                "weft_dns_upstream_truncated_total",
                "Upstream answers truncated over UDP (TC), asked again over TCP.",
                &["service"],
            )?,
            forward_refused: vec(
                "weft_dns_forward_refused_total",
                "Forwarded questions answered SERVFAIL at once because a bound was reached, by reason.",
                &["service", "reason"],
            )?,
            dropped: vec(
                "weft_dns_dropped_total",
                "Packets dropped unanswered: too short to answer, responses, or stray upstream answers.",
                &["service"],
            )?,
            reused: vec(
                "weft_dns_answers_reused_total",
                "UDP answers from the zones sent as encoded for an earlier identical question, with its id set.",
                &["service"],
            )?,
            forwarding: ForwardFamilies::new()?,
            transfer: crate::transfer::metrics::TransferFamilies::new()?,
            rate_limited: vec(
                "weft_dns_rate_limited_total",
                "UDP answers over their client prefix's rate_limit, by action: dropped, or slipped (sent truncated or BADCOOKIE).",
                &["service", "action"],
            )?,
            rate_limited_kinds: vec(
                "weft_dns_rate_limited_kinds_total",
                "UDP answers over their client prefix's rate, dropped or slipped, by the kind of answer each was (each kind has its own budget).",
                &["service", "kind"],
            )?,
            rate_limit_evictions: vec(
                "weft_dns_rate_limit_evictions_total",
                "Client prefixes still over their rate forgotten to make room in the full rate-limit table.",
                &["service"],
            )?,
            cookies: vec(
                "weft_dns_cookies_total",
                "Queries with a DNS cookie, by what it proved: client (a client cookie alone), valid (this server's cookie for the client), invalid (another, or an expired, server cookie).",
                &["service", "result"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    DURATION,
                    "Time from a query's arrival to its answer, whatever answered it.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["service"],
            )?,
            log_skipped: vec(
                "weft_dns_query_log_skipped_total",
                "Routine answers left out of the query log past its per-second budget.",
                &["service"],
            )?,
            log_failures_skipped: vec(
                "weft_dns_query_log_failures_skipped_total",
                "Failed answers left out of the query log past its per-second budget of failures.",
                &["service"],
            )?,
            exemplars: ExemplarIndex::default(),
        })
    }

    /// The handles of service `name`, resolved now.
    pub fn service(&self, name: &str) -> ServiceMetrics {
        let qtypes = QTYPES
            .iter()
            .map(|(_, label)| self.queries.with_label_values(&[name, label]))
            .collect();
        let rcodes = RCODES
            .iter()
            .map(|(_, label)| self.responses.with_label_values(&[name, label]))
            .collect();
        ServiceMetrics(Arc::new(Handles {
            service: name.into(),
            qtypes,
            qtype_other: self.queries.with_label_values(&[name, "other"]),
            rcodes,
            rcode_other: self.responses.with_label_values(&[name, "other"]),
            cache_hits: self.cache_hits.with_label_values(&[name]),
            cache_misses: self.cache_misses.with_label_values(&[name]),
            upstream_timeouts: self.upstream_timeouts.with_label_values(&[name]),
            upstream_truncated: self.upstream_truncated.with_label_values(&[name]),
            forward_refused: Busy::ALL
                .iter()
                .map(|b| self.forward_refused.with_label_values(&[name, b.as_str()]))
                .collect(),
            dropped: self.dropped.with_label_values(&[name]),
            reused: self.reused.with_label_values(&[name]),
            forwarding: self.forwarding.service(name),
            transfer: self.transfer.service(name),
            rate_limited: Limited::ALL
                .iter()
                .map(|l| self.rate_limited.with_label_values(&[name, l.as_str()]))
                .collect(),
            rate_limited_kinds: Kind::ALL
                .iter()
                .map(|k| {
                    self.rate_limited_kinds
                        .with_label_values(&[name, k.as_str()])
                })
                .collect(),
            rate_limit_evictions: self.rate_limit_evictions.with_label_values(&[name]),
            cookies: COOKIE_RESULTS
                .iter()
                .map(|r| self.cookies.with_label_values(&[name, r]))
                .collect(),
            duration: self.duration.with_label_values(&[name]),
            exemplars: self
                .exemplars
                .series(DURATION, [("service", name)], &LATENCY_BUCKETS),
            log_skipped: [
                self.log_skipped.with_label_values(&[name]),
                self.log_failures_skipped.with_label_values(&[name]),
            ],
            figures: Arc::default(),
        }))
    }
}

/// A record type's name as zone files and `dig` write it: its mnemonic, or `TYPE65535` for
/// one without (RFC 3597 section 5), never hickory's bare `Unknown`.
pub fn type_name(qtype: hickory_proto::rr::RecordType) -> String {
    match qtype {
        hickory_proto::rr::RecordType::Unknown(code) => format!("TYPE{code}"),
        known => known.to_string(),
    }
}

/// The text of `rcode`: its label value (`NOERROR`), or its number for the uncommon ones.
pub fn rcode_name(rcode: ResponseCode) -> String {
    match RCODES.iter().find(|(c, _)| *c == rcode) {
        Some((_, label)) => (*label).to_owned(),
        None => format!("RCODE{}", u16::from(rcode)),
    }
}

#[derive(Debug)]
struct Handles {
    /// The service's name, which its budgeted log lines are counted under.
    service: Arc<str>,
    /// In the order of [`QTYPES`].
    qtypes: Vec<IntCounter>,
    qtype_other: IntCounter,
    /// In the order of [`RCODES`].
    rcodes: Vec<IntCounter>,
    rcode_other: IntCounter,
    cache_hits: IntCounter,
    cache_misses: IntCounter,
    upstream_timeouts: IntCounter,
    upstream_truncated: IntCounter,
    /// In the order of [`Busy::ALL`].
    forward_refused: Vec<IntCounter>,
    dropped: IntCounter,
    reused: IntCounter,
    forwarding: ForwardMetrics,
    transfer: crate::transfer::TransferCounters,
    /// In the order of [`Limited::ALL`].
    rate_limited: Vec<IntCounter>,
    /// In the order of [`Kind::ALL`].
    rate_limited_kinds: Vec<IntCounter>,
    rate_limit_evictions: IntCounter,
    /// In the order of [`COOKIE_RESULTS`].
    cookies: Vec<IntCounter>,
    duration: Histogram,
    /// The latest traced answer of each `duration` bucket.
    exemplars: Arc<Exemplars>,
    /// Routine answers, then failures, left out of the query log.
    log_skipped: [IntCounter; 2],
    /// The recent queries, top names and upstream figures the dashboard shows.
    figures: Arc<QueryFigures>,
}

/// One service's counters. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ServiceMetrics(Arc<Handles>);

impl ServiceMetrics {
    /// The service's name.
    pub fn name(&self) -> &str {
        &self.0.service
    }

    /// Counters on no registry.
    pub fn detached(name: &str) -> Self {
        DnsMetrics::unregistered()
            .expect("the DNS metric options are valid")
            .service(name)
    }

    /// Whether a line about `what` is logged now, for a line each query could make: at
    /// most [`weft::observe::LOG_BURST`] a second, `Some` with the number left out since
    /// the last one (see [`weft::observe::log_line_budget`]).
    pub(crate) fn log_line(&self, what: &'static str) -> Option<Option<u64>> {
        weft::observe::log_line_budget(&self.0.service, what)
    }

    /// A query of type `qtype` arrived.
    pub fn query(&self, qtype: RecordType) {
        match QTYPES.iter().position(|(t, _)| *t == qtype) {
            Some(i) => self.0.qtypes[i].inc(),
            None => self.0.qtype_other.inc(),
        }
    }

    /// An answer with `rcode` from `source` to `query` (`None`: no readable question)
    /// from `client`, which arrived at `received`, is being sent: counted by code, timed,
    /// and recorded for the dashboard and the query log. An answer that belongs to `span`
    /// (a forwarded question's upstream query, while spans are exported) leaves its
    /// latency as its bucket's exemplar.
    pub(crate) fn answered(
        &self,
        query: Option<&Query>,
        client: Option<std::net::SocketAddr>,
        received: Instant,
        rcode: ResponseCode,
        source: Source,
        span: Option<SpanRef>,
    ) {
        self.response(rcode);
        let latency = received.elapsed();
        let seconds = latency.as_secs_f64();
        self.0.duration.observe(seconds);
        if let Some(span) = span {
            self.0.exemplars.record(seconds, span);
        }
        self.0.figures.record(&Answered {
            at: received + latency,
            client,
            query,
            rcode,
            latency,
            source,
            span,
        });
    }

    /// What the dashboard shows of this service's queries, shared with the recording.
    pub fn figures(&self) -> &Arc<QueryFigures> {
        &self.0.figures
    }

    /// Sends logged queries to `sink` under a budget of `per_second` routine answers a
    /// second (0: every answer), counting those left out in
    /// `weft_dns_query_log_skipped_total`, and one of failures (see [`crate::view`]),
    /// counting those left out in `weft_dns_query_log_failures_skipped_total`. Set once.
    pub fn log_queries(&self, sink: crate::view::QueryLog, per_second: u32) {
        self.0
            .figures
            .set_log(sink, per_second, self.0.log_skipped.clone());
    }

    /// A response with `rcode` was sent.
    pub fn response(&self, rcode: ResponseCode) {
        match RCODES.iter().position(|(c, _)| *c == rcode) {
            Some(i) => self.0.rcodes[i].inc(),
            None => self.0.rcode_other.inc(),
        }
    }

    /// Queries so far by type, as labelled on `/metrics`.
    pub fn qtype_counts(&self) -> Vec<(String, u64)> {
        QTYPES
            .iter()
            .zip(&self.0.qtypes)
            .map(|((_, label), c)| ((*label).to_owned(), c.get()))
            .chain([("other".to_owned(), self.0.qtype_other.get())])
            .collect()
    }

    /// Responses so far by code, as labelled on `/metrics`.
    pub fn rcode_counts(&self) -> Vec<(String, u64)> {
        RCODES
            .iter()
            .zip(&self.0.rcodes)
            .map(|((_, label), c)| ((*label).to_owned(), c.get()))
            .chain([("other".to_owned(), self.0.rcode_other.get())])
            .collect()
    }

    /// The time-to-answer histogram so far: `(upper bound, cumulative count)` per
    /// bucket, the count and the sum in seconds.
    pub fn duration(&self) -> (Vec<(f64, u64)>, u64, f64) {
        use prometheus::core::Metric as _;
        let m = self.0.duration.metric();
        let h = m.get_histogram();
        let buckets = h
            .get_bucket()
            .iter()
            .map(|b| (b.upper_bound(), b.cumulative_count()))
            .collect();
        (buckets, h.get_sample_count(), h.get_sample_sum())
    }

    /// The responses sent with `rcode` so far.
    pub fn responses(&self, rcode: ResponseCode) -> u64 {
        match RCODES.iter().position(|(c, _)| *c == rcode) {
            Some(i) => self.0.rcodes[i].get(),
            None => self.0.rcode_other.get(),
        }
    }

    /// A forwarded question was answered from the cache.
    pub fn cache_hit(&self) {
        self.0.cache_hits.inc();
    }

    /// A forwarded question was not in the cache.
    pub fn cache_miss(&self) {
        self.0.cache_misses.inc();
    }

    /// An upstream query timed out.
    pub fn upstream_timeout(&self) {
        self.0.upstream_timeouts.inc();
    }

    /// An upstream answer came truncated over UDP; the query goes again over TCP.
    pub fn upstream_truncated(&self) {
        self.0.upstream_truncated.inc();
    }

    /// A forwarded question was answered SERVFAIL at once: `reason` was at its bound.
    pub fn forward_refused(&self, reason: Busy) {
        self.0.forward_refused[reason as usize].inc();
    }

    /// The forwarded questions refused for `reason` so far.
    pub fn forward_refusals(&self, reason: Busy) -> u64 {
        self.0.forward_refused[reason as usize].get()
    }

    /// A packet was dropped unanswered.
    pub fn dropped(&self) {
        self.0.dropped.inc();
    }

    /// An answer kept from an earlier identical question was sent.
    pub(crate) fn reused(&self) {
        self.0.reused.inc();
    }

    /// Answers sent from the answers kept so far.
    #[cfg(test)]
    pub(crate) fn reuses(&self) -> u64 {
        self.0.reused.get()
    }

    /// The forwarding handles.
    pub(crate) fn forwarding(&self) -> &ForwardMetrics {
        &self.0.forwarding
    }

    /// Upstream datagrams dropped for `why` so far.
    pub fn mismatched(&self, why: Mismatch) -> u64 {
        self.0.forwarding.mismatched(why).get()
    }

    /// Answers served stale so far.
    pub fn stale_answers(&self) -> u64 {
        self.0.forwarding.stale().get()
    }

    /// Upstream TCP exchanges on a reused connection so far.
    pub fn tcp_reused(&self) -> u64 {
        self.0.forwarding.tcp_reused().get()
    }

    /// Its zone transfer, NOTIFY and zone reload counters.
    pub fn transfer(&self) -> &crate::transfer::TransferCounters {
        &self.0.transfer
    }

    /// A UDP answer was over its client prefix's rate.
    pub fn rate_limited(&self, action: Limited, kind: Kind) {
        self.0.rate_limited[action as usize].inc();
        self.0.rate_limited_kinds[kind as usize].inc();
    }

    /// The UDP answers over their rate so far that met `action`.
    pub fn rate_limits(&self, action: Limited) -> u64 {
        self.0.rate_limited[action as usize].get()
    }

    /// A prefix still over its rate was forgotten to make room in the table.
    pub fn rate_limit_evicted(&self) {
        self.0.rate_limit_evictions.inc();
    }

    /// A query carried a DNS cookie that proved `state`.
    pub(crate) fn cookie(&self, state: CookieState) {
        let i = match state {
            CookieState::Absent => return,
            CookieState::ClientOnly => 0,
            CookieState::Valid => 1,
            CookieState::Invalid => 2,
        };
        self.0.cookies[i].inc();
    }

    /// Cache hits, misses, upstream timeouts and truncated answers, and dropped packets
    /// so far.
    pub fn counts(&self) -> Counts {
        Counts {
            cache_hits: self.0.cache_hits.get(),
            cache_misses: self.0.cache_misses.get(),
            upstream_timeouts: self.0.upstream_timeouts.get(),
            upstream_truncated: self.0.upstream_truncated.get(),
            dropped: self.0.dropped.get(),
        }
    }
}

/// A snapshot of a service's counters (for tests and status pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Counts {
    /// Forwarded questions answered from the cache.
    pub cache_hits: u64,
    /// Forwarded questions not in the cache.
    pub cache_misses: u64,
    /// Upstream queries that timed out.
    pub upstream_timeouts: u64,
    /// Upstream answers truncated over UDP, asked again over TCP.
    pub upstream_truncated: u64,
    /// Packets dropped unanswered.
    pub dropped: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A type without a mnemonic is written as RFC 3597 writes it, as `dig` shows it.
    #[test]
    fn types_are_named_as_zone_files_write_them() {
        assert_eq!(type_name(RecordType::AAAA), "AAAA");
        assert_eq!(type_name(RecordType::Unknown(65_535)), "TYPE65535");
        assert_eq!(rcode_name(ResponseCode::Unknown(3_000)), "RCODE3000");
    }

    #[test]
    fn unknown_types_and_codes_share_the_other_label_and_families_register_once() {
        let registry = Registry::new();
        let metrics = DnsMetrics::register(&registry).unwrap();
        let svc = metrics.service("dns");
        svc.query(RecordType::A);
        svc.query(RecordType::Unknown(65_000));
        svc.query(RecordType::NULL);
        svc.response(ResponseCode::YXRRSet);
        svc.response(ResponseCode::YXDomain);
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(text.contains(r#"weft_dns_queries_total{qtype="A",service="dns"} 1"#));
        assert!(text.contains(r#"weft_dns_queries_total{qtype="other",service="dns"} 2"#));
        assert!(text.contains(r#"weft_dns_responses_total{rcode="other",service="dns"} 1"#));
        assert!(text.contains(r#"weft_dns_responses_total{rcode="YXDOMAIN",service="dns"} 1"#));
        assert!(
            DnsMetrics::register(&registry).is_err(),
            "once per registry"
        );
    }
}
