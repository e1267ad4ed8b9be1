//! Keeping secondary zones current (RFC 1034 section 4.3.5, RFC 1996): one task per zone
//! of a dns service's `secondary`, on reactor 0.
//!
//! A task asks the zone's primaries, in order, for the SOA and, when the primary's serial
//! is newer than the copy held, for the changes since it by IXFR or for the whole zone
//! ([`weft_names::transfer::inbound::fetch`]; changes that do not apply to the copy are
//! logged and the whole zone asked, as RFC 1995 section 4 has it);
//! then it waits the SOA's refresh time, or its retry time when no primary could be asked
//! or what came was refused, or until a NOTIFY from a primary wakes it. A zone
//! transferred is checked as a zone file is (the text is parsed before the file is
//! written, so a bad transfer never replaces a good copy), written to the zone's `file`
//! and sent to the reload task ([`Install`]), which puts it in service through
//! [`Running::apply`] as a reload would: questions under way finish under the zone they
//! began with, and open TCP connections are answered by the new one from their next
//! question on; the serial gauge follows, the service's `notify` peers hear of the new serial.
//! A copy no primary confirmed for the SOA's expire time stops being served (section
//! 4.3.5: it "must" be thought obsolete), until a transfer succeeds again; the time of the
//! last confirmation is the file's modification time, so it holds across restarts.
//!
//! Every check is counted in `weft_dns_secondary_refreshes_total{service,result}` and
//! logged when it fails; each fetch is a Deferred the inspector shows with its step.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hickory_proto::rr::{LowerName, Name, RData};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weft::Reactor;
use weft_names::transfer::inbound::{self, Fetched};
use weft_names::transfer::{Refresh, Secondary, SecondaryTransfer};
use weft_names::{Catalog, ServiceMetrics, Zone};

use crate::config::ServiceConfig;
use crate::running::Running;
use crate::services::ServiceKind;

mod copy_file;
mod keep;
mod status;
use copy_file::{modified, touch};
use keep::{Making, Turn, Unstored, keep};
use status::Shown;
pub(crate) use status::status;

/// The shortest wait between two checks, whatever the SOA says (a refresh of 0 would
/// ask the primary without pause).
const SHORTEST_WAIT: Duration = Duration::from_secs(5);
/// The wait before asking again when no copy is held and the first attempt failed.
const RETRY_WITHOUT_COPY: Duration = Duration::from_secs(30);
/// The shortest time between the end of a check and one a NOTIFY asks for.
const NOTIFY_SPACING: Duration = Duration::from_secs(1);

/// A zone to put in service for `service` (or, `None`, to stop serving: expired).
#[derive(Debug)]
pub(crate) struct Install {
    pub(crate) service: String,
    pub(crate) origin: Name,
    pub(crate) zone: Option<Arc<Zone>>,
}

/// The tasks, by service and zone.
pub(crate) struct Keepers {
    tasks: HashMap<(String, LowerName), Keeper>,
    installs: mpsc::UnboundedSender<Install>,
}

/// One zone's task, as started.
struct Keeper {
    zone: Secondary,
    /// The copy its service served when it started, or the last one it put in service:
    /// another one in service (a reload read the file again and found it expired, or
    /// changed by hand) starts the task again from what is served.
    served: Option<Arc<Zone>>,
    stop: CancellationToken,
}

impl Keepers {
    /// No tasks yet; what they transfer comes out of the receiver.
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<Install>) {
        let (installs, received) = mpsc::unbounded_channel();
        let keepers = Self {
            tasks: HashMap::new(),
            installs,
        };
        (keepers, received)
    }

    /// Starts a task for each secondary zone of the services `running` runs that has
    /// none, or whose settings or copy in service changed, and stops those of zones no
    /// longer configured. A task stopped ends at its next step and never hands over a
    /// zone; a write of its file already on a blocking thread finishes, but never over
    /// the copy a task started after it wrote (see [`Task::run`], `keep::Turn`).
    pub(crate) fn reconcile(&mut self, reactor: &Reactor, running: &Running) {
        let mut wanted = HashMap::new();
        for service in running.services() {
            let ServiceKind::Dns(settings) = &service.kind else {
                continue;
            };
            for zone in &settings.config.transfer.secondaries {
                let key = (service.name.clone(), LowerName::new(&zone.origin));
                wanted.insert(key, (service, zone, held(service, &zone.origin)));
            }
        }
        self.tasks.retain(|key, keeper| {
            let keep = wanted.get(key).is_some_and(|(_, zone, served)| {
                *zone == &keeper.zone && same(served.as_ref(), keeper.served.as_ref())
            });
            if !keep {
                keeper.stop.cancel();
            }
            keep
        });
        for (key, (service, zone, served)) in wanted {
            if self.tasks.contains_key(&key) {
                continue;
            }
            let stop = CancellationToken::new();
            static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
            let task = Task {
                service: service.name.clone(),
                generation: GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                zone: zone.clone(),
                held: served.clone(),
                metrics: running.dns_metrics(&service.name),
                installs: self.installs.clone(),
            };
            reactor.spawn(weft::tasks::awaiting_outside_events(task.run(stop.clone())));
            let keeper = Keeper {
                zone: zone.clone(),
                served,
                stop,
            };
            self.tasks.insert(key, keeper);
        }
    }

    /// `running` serves what was just installed: the tasks that installed it go on.
    pub(crate) fn installed(&mut self, running: &Running) {
        for service in running.services() {
            for (key, keeper) in &mut self.tasks {
                if key.0 == service.name {
                    keeper.served = held(service, &keeper.zone.origin);
                }
            }
        }
    }

    /// Stops every task.
    pub(crate) fn stop(&mut self) {
        for (_, keeper) in self.tasks.drain() {
            keeper.stop.cancel();
        }
    }
}

/// Whether `a` and `b` are the same copy (or both none).
fn same(a: Option<&Arc<Zone>>, b: Option<&Arc<Zone>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (a, b) => a.is_none() && b.is_none(),
    }
}

/// The copy of zone `origin` that `service` serves now, if any.
fn held(service: &ServiceConfig, origin: &Name) -> Option<Arc<Zone>> {
    let ServiceKind::Dns(settings) = &service.kind else {
        return None;
    };
    let zones = settings.config.zones.zones();
    zones.iter().find(|z| z.origin() == origin).cloned()
}

/// One zone's task.
struct Task {
    service: String,
    /// Larger for a task started later (`keep::Turn`).
    generation: u64,
    zone: Secondary,
    /// The copy served when it started.
    held: Option<Arc<Zone>>,
    metrics: ServiceMetrics,
    installs: mpsc::UnboundedSender<Install>,
}

/// The SOA timers of a copy, in seconds.
#[derive(Debug, Clone, Copy)]
struct Timers {
    refresh: Duration,
    retry: Duration,
    expire: Duration,
}

impl Timers {
    fn of(zone: &Zone) -> Option<Self> {
        let RData::SOA(soa) = &zone.soa().data else {
            return None;
        };
        // RFC 1035 section 3.3.13: unsigned, where hickory keeps them as i32.
        let seconds = |s: i32| Duration::from_secs(u64::from(s.cast_unsigned()));
        Some(Self {
            refresh: seconds(soa.refresh).max(SHORTEST_WAIT),
            retry: seconds(soa.retry).max(SHORTEST_WAIT),
            expire: seconds(soa.expire),
        })
    }
}

impl Task {
    async fn run(self, stop: CancellationToken) {
        let Self {
            service,
            generation,
            zone,
            held,
            metrics,
            installs,
        } = self;
        let wake = inbound::listen(&service, &zone.origin);
        let shown = Shown::register(&service, &zone.origin);
        // The copy held (`None` once expired, so the next check transfers it whole), its
        // timers, and when a primary last confirmed it.
        let mut timers = held.as_deref().and_then(Timers::of);
        let mut confirmed = held.as_ref().and_then(|_| modified(&zone.file));
        let mut copy = held;
        let counters = metrics.transfer();
        loop {
            // Stopped (a reload changed the zone's settings, or its copy in service):
            // a check under way is dropped, never handed over; its blocking work (the
            // zone's build, the copy's write) finishes holding its turn, and a write of
            // it never goes over the copy a task started after this one wrote.
            let outcome = tokio::select! {
                biased;
                () = stop.cancelled() => return,
                outcome = refresh(&service, &zone, copy.clone(), generation) => outcome,
            };
            let serial = copy.as_ref().map(|z| z.serial());
            let failed = match outcome {
                Ok(Refreshed::Current(primary, theirs)) => {
                    counters.refresh(Refresh::Current);
                    confirmed = Some(SystemTime::now());
                    touch(&zone.file);
                    if serial.is_some_and(|ours| ours != theirs) {
                        tracing::warn!(service, zone = %zone.origin, %primary, ours = serial, theirs, "the primary's serial is not newer than the copy held; keeping the copy");
                    }
                    shown.checked(format!("current at {primary}"), false);
                    None
                }
                Ok(Refreshed::Transferred(primary, new, how)) => {
                    counters.refresh(Refresh::Transferred);
                    // An IXFR is asked where a copy is held, unless the zone says not to.
                    counters.secondary_transfer(match how {
                        Some(_) => SecondaryTransfer::Ixfr,
                        None if serial.is_some() && zone.request_ixfr => {
                            SecondaryTransfer::AxfrAfterIxfr
                        }
                        None => SecondaryTransfer::Axfr,
                    });
                    match how {
                        Some(changed) => {
                            tracing::info!(service, zone = %zone.origin, %primary, from = serial, to = new.serial(), records = new.len(), changed, "zone transferred by IXFR")
                        }
                        None => {
                            tracing::info!(service, zone = %zone.origin, %primary, from = serial, to = new.serial(), records = new.len(), "zone transferred")
                        }
                    }
                    shown.checked(
                        match how {
                            Some(1) => format!("IXFR from {primary}: 1 record changed"),
                            Some(n) => format!("IXFR from {primary}: {n} records changed"),
                            None => format!("AXFR from {primary}: {} records", new.len()),
                        },
                        false,
                    );
                    timers = Timers::of(&new);
                    confirmed = Some(SystemTime::now());
                    copy = Some(new.clone());
                    let install = Install {
                        service: service.clone(),
                        origin: zone.origin.clone(),
                        zone: Some(new),
                    };
                    if stop.is_cancelled() || installs.send(install).is_err() {
                        return;
                    }
                    None
                }
                Err(why) => Some(why),
            };
            if let Some(why) = &failed {
                tracing::warn!(service, zone = %zone.origin, "the zone was not refreshed: {why}");
                shown.checked(format!("failed: {why}"), true);
                // RFC 1034 section 4.3.5: a copy not refreshed within its expire time is
                // no longer to be served, whatever kept it from being refreshed.
                let past = |t: Timers, at: SystemTime| at.elapsed().is_ok_and(|e| e > t.expire);
                if let (Some(t), Some(at), Some(_)) = (timers, confirmed, serial)
                    && past(t, at)
                {
                    counters.refresh(Refresh::Expired);
                    tracing::error!(service, zone = %zone.origin, expire = t.expire.as_secs(), "no primary confirmed the zone within its expire time: it is no longer served");
                    shown.checked(format!("expired, not served: {why}"), true);
                    copy = None;
                    let install = Install {
                        service: service.clone(),
                        origin: zone.origin.clone(),
                        zone: None,
                    };
                    if installs.send(install).is_err() {
                        return;
                    }
                } else {
                    counters.refresh(Refresh::Failed);
                }
            }
            let expires = timers
                .zip(confirmed)
                .filter(|_| copy.is_some())
                .map(|(t, at)| at + t.expire);
            let wait = next_wait(
                timers,
                failed.is_some(),
                expires,
                SystemTime::now(),
                fastrand::f64(),
            );
            shown.next(wait, expires);
            let checked = std::time::Instant::now();
            tokio::select! {
                () = stop.cancelled() => return,
                () = wake.notified() => {
                    tracing::debug!(service, zone = %zone.origin, "NOTIFY received; checking the zone");
                    // A flood of NOTIFYs (UDP: anyone can forge the primary's address)
                    // asks the primary once a second at most.
                    let spaced = NOTIFY_SPACING.saturating_sub(checked.elapsed());
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(spaced) => {}
                    }
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// How long to wait before the next check: the SOA's refresh time after one that
/// succeeded, its retry time after one that failed (`RETRY_WITHOUT_COPY` without a copy's
/// timers), up to a tenth earlier by `random` (in [0, 1): zones with the same SOA timers,
/// a provider's say, do not ask their primaries all at once), `SHORTEST_WAIT` at the
/// least, and no later than a second past `expires`, when the copy held expires unless
/// confirmed (a retry time longer than the expire time would serve it past it).
fn next_wait(
    timers: Option<Timers>,
    failed: bool,
    expires: Option<SystemTime>,
    now: SystemTime,
    random: f64,
) -> Duration {
    let wait = match (timers, failed) {
        (None, _) => RETRY_WITHOUT_COPY,
        (Some(t), false) => t.refresh,
        (Some(t), true) => t.retry,
    };
    let wait = wait.mul_f64(1.0 - random / 10.0).max(SHORTEST_WAIT);
    match expires {
        Some(at) => wait.min(at.duration_since(now).unwrap_or_default() + Duration::from_secs(1)),
        None => wait,
    }
}

/// What a refresh found.
enum Refreshed {
    /// This primary's serial, not newer than the copy held.
    Current(String, u32),
    /// The zone this primary transferred, checked and written to its file, and the
    /// records its IXFR changed (`None`: it came whole).
    Transferred(String, Arc<Zone>, Option<usize>),
}

/// Asks the primaries of `zone`, and keeps what a newer one transferred: the changes
/// since `copy` when it is held, or the zone whole; the whole zone when the changes do
/// not apply to the copy.
async fn refresh(
    service: &str,
    zone: &Secondary,
    copy: Option<Arc<Zone>>,
    generation: u64,
) -> Result<Refreshed, String> {
    // Its turn is held until the zone transferred is built and written, by the blocking
    // work too (which goes on when the task is stopped meanwhile).
    let turn = Turn {
        _permit: Arc::new(TURNS.acquire().await.map_err(|e| e.to_string())?),
        generation,
    };
    let have = copy.as_ref().map(|z| z.soa().clone());
    let refused = |primary: &str, why: String| {
        format!("the zone {primary} transferred is refused, the copy held serves on: {why}")
    };
    let (primary, changes) = match check(service, zone, have.as_ref(), true).await? {
        (primary, Fetched::Current(theirs)) => {
            // A quiet moment: a journal unchanged for a while goes into the copy.
            if let Some(copy) = copy {
                keep::fold(zone, copy, &primary, &turn).await;
            }
            return Ok(Refreshed::Current(primary, theirs));
        }
        (primary, Fetched::Zone(records)) => {
            return keep(zone, Making::Whole(records), &primary, &turn)
                .await
                .map(|new| Refreshed::Transferred(primary.clone(), new, None))
                .map_err(|why| refused(&primary, why.to_string()));
        }
        (primary, Fetched::Changes(changes)) => (primary, changes),
    };
    let changed = changes.len();
    let Some(copy) = copy else {
        return Err(format!(
            "{primary} sent changes to a copy this service does not hold"
        ));
    };
    // The changes made into the copy on a blocking thread; ones that do not apply have
    // the zone asked whole.
    match keep(zone, Making::Changed(copy, changes), &primary, &turn).await {
        Ok(new) => {
            return Ok(Refreshed::Transferred(primary, new, Some(changed)));
        }
        Err(Unstored::Refused(why)) => return Err(refused(&primary, why)),
        Err(Unstored::NotApplied(why)) => {
            tracing::warn!(service, zone = %zone.origin, %primary, "the changes the IXFR brought are refused ({why}); asking the whole zone");
        }
    }
    match check(service, zone, have.as_ref(), false).await? {
        (primary, Fetched::Current(theirs)) => Ok(Refreshed::Current(primary, theirs)),
        (primary, Fetched::Zone(records)) => keep(zone, Making::Whole(records), &primary, &turn)
            .await
            .map(|new| Refreshed::Transferred(primary.clone(), new, None))
            .map_err(|why| refused(&primary, why.to_string())),
        (primary, Fetched::Changes(_)) => Err(format!("{primary} answered an AXFR with changes")),
    }
}

/// Checks under way at once, over every secondary zone of the process: a configuration
/// of many zones that come due together asks their primaries a few at a time (as NSD's
/// `xfrd-tcp-max` bounds its transfers), and holds a few transfers in memory at once.
const CHECKS_AT_ONCE: usize = 8;

/// What a check waits on for its turn.
static TURNS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(CHECKS_AT_ONCE);

/// Asks the primaries of `zone` in order until one answers: which, and what it had
/// (the changes since `have`, the SOA of the copy held, by IXFR when `ixfr` is set).
async fn check(
    service: &str,
    zone: &Secondary,
    have: Option<&hickory_proto::rr::Record>,
    ixfr: bool,
) -> Result<(String, Fetched), String> {
    let mut failures = Vec::new();
    for primary in &zone.primaries {
        let mut fetching = inbound::fetch(service, zone, primary, have, ixfr);
        match (&mut fetching).await {
            Ok(fetched) => return Ok((primary.to_string(), fetched)),
            Err(failure) => failures.push(format!("{primary}: {}", failure.error())),
        }
        if !fetching.failed_in_ixfr() {
            continue;
        }
        // RFC 1995 section 4: an IXFR that failed (not a connection that could not be
        // made) is asked again whole, on a connection of its own.
        drop(fetching);
        tracing::warn!(service, zone = %zone.origin, %primary, "the IXFR failed ({}); asking the whole zone", failures.last().map_or("", String::as_str));
        match inbound::fetch(service, zone, primary, have, false).await {
            Ok(fetched) => return Ok((primary.to_string(), fetched)),
            Err(failure) => failures.push(format!("{primary} (AXFR): {}", failure.error())),
        }
    }
    Err(failures.join("; "))
}

/// Puts `install` in service: the zone replaces the copy of its origin that its service
/// serves (or the copy stops being served), applied as a reload applies a change.
pub(crate) async fn install(running: &mut Running, install: Install) {
    let Install {
        service,
        origin,
        zone,
    } = install;
    let mut config = running.config().clone();
    let settings = config
        .services
        .iter_mut()
        .find(|s| s.name == service)
        .and_then(|s| match &mut s.kind {
            ServiceKind::Dns(settings) => Some(settings),
            _ => None,
        });
    // A reload removed the service, or the zone from it, meanwhile.
    let Some(settings) = settings.filter(|s| {
        let secondaries = &s.config.transfer.secondaries;
        secondaries.iter().any(|z| z.origin == origin)
    }) else {
        return;
    };
    let mut zones = Catalog::default();
    let mut zone = zone;
    for held in settings.config.zones.zones() {
        let kept = match held.origin() == &origin {
            true => zone.take(),
            false => Some(held.clone()),
        };
        if let Some(Err(error)) = kept.map(|z| zones.add(z)) {
            tracing::error!(service, %error, "a zone left out of the service");
        }
    }
    if let Some(Err(error)) = zone.map(|z| zones.add(z)) {
        tracing::error!(service, %error, "a zone left out of the service");
    }
    settings.config.zones = zones;
    match running.apply(config) {
        Ok(_) => {
            for note in running.follow().await {
                tracing::warn!(service, zone = %origin, "{note}");
            }
        }
        Err(error) => {
            tracing::error!(service, zone = %origin, %error, "the zone could not be put in service");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_check_comes_at_the_soa_s_refresh_or_retry_up_to_a_tenth_earlier_and_by_the_expiry()
    {
        let hour = Duration::from_secs(3600);
        let timers = Some(Timers {
            refresh: 2 * hour,
            retry: hour / 4,
            expire: 24 * hour,
        });
        let now = SystemTime::UNIX_EPOCH + 1000 * hour;
        let far = Some(now + 100 * hour);
        assert_eq!(next_wait(timers, false, far, now, 0.0), 2 * hour);
        assert_eq!(next_wait(timers, true, far, now, 0.0), hour / 4);
        assert_eq!(next_wait(None, true, None, now, 0.0), RETRY_WITHOUT_COPY);
        // A tenth earlier at most, however the draw falls.
        for random in [0.0, 0.25, 0.5, 0.999_999] {
            let wait = next_wait(timers, false, far, now, random);
            assert!(wait > 2 * hour * 9 / 10 && wait <= 2 * hour, "{wait:?}");
        }
        assert_eq!(next_wait(timers, false, far, now, 0.5), 2 * hour * 95 / 100);
        // Never sooner than SHORTEST_WAIT, nor later than a second past the expiry.
        let zero = Some(Timers {
            refresh: Duration::ZERO,
            retry: Duration::ZERO,
            expire: hour,
        });
        assert_eq!(next_wait(zero, false, far, now, 0.9), SHORTEST_WAIT);
        let soon = Some(now + Duration::from_secs(60));
        assert_eq!(
            next_wait(timers, false, soon, now, 0.0),
            Duration::from_secs(61)
        );
        let past = Some(now - hour);
        assert_eq!(
            next_wait(timers, true, past, now, 0.0),
            Duration::from_secs(1)
        );
    }
}
