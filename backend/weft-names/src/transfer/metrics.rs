//! The zone transfer, NOTIFY and zone reload families: `weft_dns_transfers_total`,
//! `weft_dns_notifies_total` and `weft_dns_zone_reloads_total`, each with a bounded
//! `result` label.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// How a zone transfer request ended: the `result` label of `weft_dns_transfers_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransferResult {
    /// The whole zone was sent (AXFR, or IXFR answered in full).
    Complete,
    /// IXFR from a client whose serial is current: the SOA alone.
    UpToDate,
    /// IXFR over UDP from a client behind: the SOA alone with TC, so it asks over TCP.
    Truncated,
    /// The connection closed before the zone was sent.
    Aborted,
    /// The peer is not in `allow_transfer`: REFUSED.
    Refused,
    /// The name is not the origin of a zone served here: NOTAUTH.
    NotAuth,
    /// AXFR over UDP (RFC 5936 section 4.2 defines none): NOTIMP.
    Udp,
    /// IXFR without the client's SOA in the authority section: FORMERR.
    Malformed,
}

impl TransferResult {
    const ALL: [Self; 8] = [
        Self::Complete,
        Self::UpToDate,
        Self::Truncated,
        Self::Aborted,
        Self::Refused,
        Self::NotAuth,
        Self::Udp,
        Self::Malformed,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::UpToDate => "up_to_date",
            Self::Truncated => "truncated",
            Self::Aborted => "aborted",
            Self::Refused => "refused",
            Self::NotAuth => "not_authoritative",
            Self::Udp => "udp",
            Self::Malformed => "malformed",
        }
    }
}

/// What became of a NOTIFY: the `result` label of `weft_dns_notifies_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotifyResult {
    /// A `notify` peer acknowledged ours (NOERROR).
    Acknowledged,
    /// A `notify` peer answered ours with an error code.
    Rejected,
    /// A `notify` peer never answered ours, every retry included.
    Unanswered,
    /// A NOTIFY came to us: REFUSED, as this server is a primary only.
    Received,
}

impl NotifyResult {
    const ALL: [Self; 4] = [
        Self::Acknowledged,
        Self::Rejected,
        Self::Unanswered,
        Self::Received,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Acknowledged => "acknowledged",
            Self::Rejected => "rejected",
            Self::Unanswered => "unanswered",
            Self::Received => "received_refused",
        }
    }
}

/// What a reload did to one zone file: the `result` label of `weft_dns_zone_reloads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ZoneReload {
    /// Re-read with other contents, and served from now on.
    Changed,
    /// Re-read with the same contents.
    Unchanged,
    /// Could not be read or parsed: the zone's running version goes on serving.
    Failed,
}

impl ZoneReload {
    const ALL: [Self; 3] = [Self::Changed, Self::Unchanged, Self::Failed];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Changed => "changed",
            Self::Unchanged => "unchanged",
            Self::Failed => "failed",
        }
    }
}

/// The three families on one registry.
#[derive(Clone, Debug)]
pub(crate) struct TransferFamilies {
    transfers: IntCounterVec,
    notifies: IntCounterVec,
    zone_reloads: IntCounterVec,
}

impl TransferFamilies {
    pub(crate) fn new() -> Result<Self, prometheus::Error> {
        let vec = |name: &str, help: &str| {
            IntCounterVec::new(Opts::new(name, help), &["service", "result"])
        };
        Ok(Self {
            transfers: vec(
                "weft_dns_transfers_total",
                "Zone transfer requests (AXFR, IXFR), by how they ended.",
            )?,
            notifies: vec(
                "weft_dns_notifies_total",
                "NOTIFY messages: sent to notify peers, by their answer; received, refused.",
            )?,
            zone_reloads: vec(
                "weft_dns_zone_reloads_total",
                "Zone files re-read by a reload, by result (a failed one keeps serving its old zone).",
            )?,
        })
    }

    pub(crate) fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        for family in [&self.transfers, &self.notifies, &self.zone_reloads] {
            registry.register(Box::new(family.clone()))?;
        }
        Ok(())
    }

    pub(crate) fn service(&self, name: &str) -> TransferCounters {
        let of = |family: &IntCounterVec, labels: &[&str]| {
            labels
                .iter()
                .map(|l| family.with_label_values(&[name, l]))
                .collect()
        };
        TransferCounters {
            transfers: of(
                &self.transfers,
                &TransferResult::ALL.map(TransferResult::as_str),
            ),
            notifies: of(&self.notifies, &NotifyResult::ALL.map(NotifyResult::as_str)),
            zone_reloads: of(&self.zone_reloads, &ZoneReload::ALL.map(ZoneReload::as_str)),
        }
    }
}

/// One service's transfer, NOTIFY and reload counters, each in its enum's order.
#[derive(Debug)]
pub struct TransferCounters {
    transfers: Vec<IntCounter>,
    notifies: Vec<IntCounter>,
    zone_reloads: Vec<IntCounter>,
}

impl TransferCounters {
    /// A transfer request ended so.
    pub fn transfer(&self, result: TransferResult) {
        self.transfers[result as usize].inc();
    }

    /// The transfer requests that ended so.
    pub fn transfers(&self, result: TransferResult) -> u64 {
        self.transfers[result as usize].get()
    }

    /// A NOTIFY ended so.
    pub fn notify(&self, result: NotifyResult) {
        self.notifies[result as usize].inc();
    }

    /// The NOTIFYs that ended so.
    pub fn notifies(&self, result: NotifyResult) -> u64 {
        self.notifies[result as usize].get()
    }

    /// A reload re-read a zone file, with this result.
    pub fn zone_reload(&self, result: ZoneReload) {
        self.zone_reloads[result as usize].inc();
    }

    /// The zone files a reload re-read with this result.
    pub fn zone_reloads(&self, result: ZoneReload) -> u64 {
        self.zone_reloads[result as usize].get()
    }
}
