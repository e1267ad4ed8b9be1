//! The zone transfer, NOTIFY, zone reload, TSIG and secondary zone families:
//! `weft_dns_transfers_total`, `weft_dns_notifies_total`, `weft_dns_zone_reloads_total`,
//! `weft_dns_tsig_total` and `weft_dns_secondary_refreshes_total`, each with a bounded
//! `result` label, and `weft_dns_secondary_transfers_total` with a bounded `how`.

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
    /// A NOTIFY came to us for no zone it is a secondary for, or not from one of the
    /// zone's primaries: REFUSED.
    Received,
    /// A NOTIFY came to us from a primary of a zone it is a secondary for: NOERROR, and
    /// the zone is checked at once.
    Accepted,
}

impl NotifyResult {
    const ALL: [Self; 5] = [
        Self::Acknowledged,
        Self::Rejected,
        Self::Unanswered,
        Self::Received,
        Self::Accepted,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Acknowledged => "acknowledged",
            Self::Rejected => "rejected",
            Self::Unanswered => "unanswered",
            Self::Received => "received_refused",
            Self::Accepted => "received_accepted",
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

/// How a secondary zone's check with its primaries ended: the `result` label of
/// `weft_dns_secondary_refreshes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refresh {
    /// A primary's serial is not newer than the copy held.
    Current,
    /// A newer zone was transferred and is served.
    Transferred,
    /// No primary could be asked, or what came was refused (the copy held serves on).
    Failed,
    /// No primary was reached for the SOA's expire time: the copy is no longer served.
    Expired,
}

impl Refresh {
    const ALL: [Self; 4] = [
        Self::Current,
        Self::Transferred,
        Self::Failed,
        Self::Expired,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Transferred => "transferred",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }
}

/// How a secondary zone's newer version came, once kept: the `how` label of
/// `weft_dns_secondary_transfers_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecondaryTransfer {
    /// By IXFR: the changes since the copy held, made into it.
    Ixfr,
    /// Whole, asked so (no copy held, or `request_ixfr = false`).
    Axfr,
    /// Whole, where an IXFR was asked: the primary answered with the zone, did not
    /// serve IXFR, or its changes failed or did not apply to the copy.
    AxfrAfterIxfr,
}

impl SecondaryTransfer {
    const ALL: [Self; 3] = [Self::Ixfr, Self::Axfr, Self::AxfrAfterIxfr];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ixfr => "ixfr",
            Self::Axfr => "axfr",
            Self::AxfrAfterIxfr => "axfr_after_ixfr",
        }
    }
}

/// What the check of a signed message found: the `result` label of
/// `weft_dns_tsig_total` (RFC 8945 section 5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TsigResult {
    /// Signed with a key of the service, and verified: its answer is signed.
    Verified,
    /// A key the service does not hold (or another algorithm): BADKEY.
    BadKey,
    /// A MAC that does not verify: BADSIG.
    BadSig,
    /// Signed further from the service's clock than its fudge: BADTIME.
    BadTime,
    /// A MAC cut short: BADTRUNC.
    BadTrunc,
    /// A MAC of impossible length: FORMERR.
    Malformed,
}

impl TsigResult {
    const ALL: [Self; 6] = [
        Self::Verified,
        Self::BadKey,
        Self::BadSig,
        Self::BadTime,
        Self::BadTrunc,
        Self::Malformed,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::BadKey => "badkey",
            Self::BadSig => "badsig",
            Self::BadTime => "badtime",
            Self::BadTrunc => "badtrunc",
            Self::Malformed => "malformed",
        }
    }
}

/// The four families on one registry.
#[derive(Clone, Debug)]
pub(crate) struct TransferFamilies {
    transfers: IntCounterVec,
    notifies: IntCounterVec,
    zone_reloads: IntCounterVec,
    tsig: IntCounterVec,
    refreshes: IntCounterVec,
    secondary_transfers: IntCounterVec,
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
            tsig: vec(
                "weft_dns_tsig_total",
                "Messages signed with TSIG, by what their check found (verified, or the error answered).",
            )?,
            refreshes: vec(
                "weft_dns_secondary_refreshes_total",
                "Checks of secondary zones with their primaries, by result.",
            )?,
            secondary_transfers: IntCounterVec::new(
                Opts::new(
                    "weft_dns_secondary_transfers_total",
                    "Newer versions of secondary zones kept, by how they came (ixfr, axfr, axfr_after_ixfr).",
                ),
                &["service", "how"],
            )?,
        })
    }

    pub(crate) fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        for family in [
            &self.transfers,
            &self.notifies,
            &self.zone_reloads,
            &self.tsig,
            &self.refreshes,
            &self.secondary_transfers,
        ] {
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
            tsig: of(&self.tsig, &TsigResult::ALL.map(TsigResult::as_str)),
            refreshes: of(&self.refreshes, &Refresh::ALL.map(Refresh::as_str)),
            secondary_transfers: of(
                &self.secondary_transfers,
                &SecondaryTransfer::ALL.map(SecondaryTransfer::as_str),
            ),
        }
    }
}

/// One service's transfer, NOTIFY, reload and TSIG counters, each in its enum's order.
#[derive(Debug)]
pub struct TransferCounters {
    transfers: Vec<IntCounter>,
    notifies: Vec<IntCounter>,
    zone_reloads: Vec<IntCounter>,
    tsig: Vec<IntCounter>,
    refreshes: Vec<IntCounter>,
    secondary_transfers: Vec<IntCounter>,
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

    /// A signed message was checked, with this result.
    pub fn tsig(&self, result: TsigResult) {
        self.tsig[result as usize].inc();
    }

    /// A secondary zone was checked with its primaries, with this result.
    pub fn refresh(&self, result: Refresh) {
        self.refreshes[result as usize].inc();
    }

    /// The checks of secondary zones that ended so.
    pub fn refreshes(&self, result: Refresh) -> u64 {
        self.refreshes[result as usize].get()
    }

    /// A secondary zone's newer version was kept, having come so.
    pub fn secondary_transfer(&self, how: SecondaryTransfer) {
        self.secondary_transfers[how as usize].inc();
    }
}
