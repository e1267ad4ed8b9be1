//! Where each secondary zone's refresh stands, for the DNS page: a process-wide table
//! of each task's `RefreshSnapshot`, held weakly, which the service's view reads at each
//! snapshot.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hickory_proto::rr::Name;
use weft_names::transfer::inbound::ByZone;
use weft_telemetry::live::unix_ms;
use weft_telemetry::views::RefreshSnapshot;

/// The tasks' refreshes, for the DNS page ([`status`]).
static STATUSES: ByZone<Mutex<RefreshSnapshot>> = ByZone::new();

/// Where the refresh of zone `origin` of `service` stands, if a task keeps it.
pub(crate) fn status(service: &str, origin: &Name) -> Option<RefreshSnapshot> {
    let shown = STATUSES.get(service, origin)?;
    let snapshot = shown.lock().ok()?.clone();
    Some(snapshot)
}

/// A task's refresh as [`status`] gives it, until the task ends.
pub(super) struct Shown(Arc<Mutex<RefreshSnapshot>>);

impl Shown {
    pub(super) fn register(service: &str, origin: &Name) -> Self {
        Self(STATUSES.insert(service, origin, Mutex::default()))
    }

    /// A check ended now with `outcome`.
    pub(super) fn checked(&self, outcome: String, failed: bool) {
        if let Ok(mut shown) = self.0.lock() {
            shown.checked_ms = Some(unix_ms(SystemTime::now()));
            shown.outcome = Some(outcome);
            shown.failed = failed;
        }
    }

    /// The next check comes in `wait` at the latest; the copy held expires at `expires`.
    pub(super) fn next(&self, wait: Duration, expires: Option<SystemTime>) {
        if let Ok(mut shown) = self.0.lock() {
            shown.next_check_ms = Some(unix_ms(SystemTime::now() + wait));
            shown.expires_ms = expires.map(unix_ms);
        }
    }
}
