//! Where each secondary zone's refresh stands, for the DNS page: a process-wide table
//! of each task's `RefreshSnapshot`, held weakly, which the service's view reads at each
//! snapshot.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, SystemTime};

use hickory_proto::rr::{LowerName, Name};
use weft_telemetry::live::unix_ms;
use weft_telemetry::views::RefreshSnapshot;

/// Where each task's refresh stands, by service and zone, while it runs.
type Statuses = HashMap<(String, LowerName), Weak<Mutex<RefreshSnapshot>>>;

/// The tasks' refreshes, for the DNS page ([`status`]).
static STATUSES: LazyLock<Mutex<Statuses>> = LazyLock::new(Mutex::default);

/// Where the refresh of zone `origin` of `service` stands, if a task keeps it.
pub(crate) fn status(service: &str, origin: &Name) -> Option<RefreshSnapshot> {
    let key = (service.to_owned(), LowerName::new(origin));
    let shown = STATUSES.lock().ok()?.get(&key)?.upgrade()?;
    let snapshot = shown.lock().ok()?.clone();
    Some(snapshot)
}

/// A task's refresh as [`status`] gives it, until the task ends.
pub(super) struct Shown(Arc<Mutex<RefreshSnapshot>>);

impl Shown {
    pub(super) fn register(service: &str, origin: &Name) -> Self {
        let shown = Arc::new(Mutex::new(RefreshSnapshot::default()));
        if let Ok(mut statuses) = STATUSES.lock() {
            statuses.retain(|_, s| s.strong_count() > 0);
            let key = (service.to_owned(), LowerName::new(origin));
            statuses.insert(key, Arc::downgrade(&shown));
        }
        Self(shown)
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
