//! History that cannot be read right now (another process holds the file locked, the disk
//! failed): a view that also has live data answers with it, says what is missing
//! (`history_error` in the JSON, a note on the page) and counts it; the cause goes to the
//! log at most once a minute. Live data comes from the hub and never waits on the store.

use std::time::{Duration, Instant};

use weft_store::StoreError;

use crate::metrics::HistoryFailure;
use crate::state::DashboardState;

/// How often at most a failed read of history is logged: every view a browser polls
/// fails the same way while it lasts.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Logs (at most once every [`WARN_EVERY`] for each dashboard, with the store writer's own
/// last error, which names the cause when the reads failed because the file could not be
/// opened again) and counts `e`, and returns the note a view shows in place of its history.
pub(crate) fn unavailable(state: &DashboardState, e: &StoreError) -> String {
    let mut warned = state
        .history_warned
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    if warned
        .0
        .is_none_or(|at| now.duration_since(at) >= WARN_EVERY)
    {
        // The writer's last error (it names what reads fail on too, when the file could
        // not be opened again); it may be an old one.
        let writer = state.store.as_ref().and_then(|s| s.stats().last_error());
        tracing::warn!(
            error = %e,
            writer_last_error = writer.as_deref().unwrap_or("none"),
            not_logged = warned.1,
            "history unavailable to the dashboard (said at most once a minute)"
        );
        *warned = (Some(now), 0);
    } else {
        warned.1 += 1;
    }
    drop(warned);
    let failure = if e.is_busy() {
        HistoryFailure::Busy
    } else {
        HistoryFailure::Failed
    };
    state.metrics.history_failed(failure);
    if let StoreError::SearchBusy(_) = e {
        return "history is not searched: other searches of it were still running; showing \
                live matches only (try again)"
            .to_owned();
    }
    if failure == HistoryFailure::Busy && shared(state) {
        if e.is_lock_wait() {
            return "history is unavailable: another session of the history database holds \
                    a table locked (LOCK TABLE, a migration, VACUUM FULL); showing live data \
                    only"
                .to_owned();
        }
        // No reader within the wait is a server that is down or out of reach.
        return "history is unavailable: the history database did not answer in time (down or \
                out of reach?); showing live data only"
            .to_owned();
    }
    note(failure).to_owned()
}

/// What a reader is told.
pub(crate) fn note(failure: HistoryFailure) -> &'static str {
    match failure {
        HistoryFailure::Busy => {
            "history is unavailable: the history database is locked by another process \
             (or busy); showing live data only"
        }
        HistoryFailure::Failed => {
            "history is unavailable: the history database could not be read (the cause is in \
             weft's log); showing live data only"
        }
    }
}

/// `Ok(value)`, or `fallback` and the note when the store failed.
pub(crate) fn or_note<T>(
    state: &DashboardState,
    result: Result<T, StoreError>,
    fallback: T,
) -> (T, Option<String>) {
    match result {
        Ok(value) => (value, behind(state)),
        Err(e) => (fallback, Some(unavailable(state, &e))),
    }
}

/// What a view read from history is told while the writer fails: it reads, but what
/// happened since the failures began is not there (a corrupt, full or locked file).
pub(crate) fn behind(state: &DashboardState) -> Option<String> {
    let since = state.store.as_ref()?.stats().failing_since_ms()?;
    let now = u64::try_from(crate::data::now_ms()).unwrap_or(0);
    let ago = crate::fmt::age(&now.saturating_sub(since));
    Some(format!(
        "history is behind: writing it has failed for {ago} (the cause is in weft's log and \
         weft_store_write_errors_total); what happened since is not in these rows"
    ))
}

/// The instance this gateway writes history as (`[gateway] instance`); empty without a store.
pub(crate) fn own_instance(state: &DashboardState) -> &str {
    state.store.as_ref().map_or("", |s| s.instance())
}

/// A live record, marked as this gateway's.
pub(crate) fn own_record(
    mut record: weft_store::DeferredRecord,
    own: &str,
) -> weft_store::DeferredRecord {
    own.clone_into(&mut record.instance);
    record
}

/// Whether history is a database a fleet of gateways shares (rather than this one's file).
pub(crate) fn shared(state: &DashboardState) -> bool {
    state.store.as_ref().is_some_and(|s| s.pg_pool().is_some())
}
