//! Keeping secondary zones current (RFC 1034 section 4.3.5, RFC 1996): one task per zone
//! of a dns service's `secondary`, on reactor 0.
//!
//! A task asks the zone's primaries, in order, for the SOA and, when the primary's serial
//! is newer than the copy held, for the zone ([`weft_names::transfer::inbound::fetch`]);
//! then it waits the SOA's refresh time, or its retry time when no primary could be asked
//! or what came was refused, or until a NOTIFY from a primary wakes it. A zone
//! transferred is checked as a zone file is (the text is parsed before the file is
//! written, so a bad transfer never replaces a good copy), written to the zone's `file`
//! and sent to the reload task ([`Install`]), which puts it in service through
//! [`Running::apply`] as a reload would: connections finish under the zone they began
//! with, the serial gauge follows, the service's `notify` peers hear of the new serial.
//! A copy no primary confirmed for the SOA's expire time stops being served (section
//! 4.3.5: it "must" be thought obsolete), until a transfer succeeds again; the time of the
//! last confirmation is the file's modification time, so it holds across restarts.
//!
//! Every check is counted in `weft_dns_secondary_refreshes_total{service,result}` and
//! logged when it fails; each fetch is a Deferred the inspector shows with its step.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hickory_proto::rr::{LowerName, Name, RData};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weft::Reactor;
use weft_names::transfer::inbound::{self, Fetched};
use weft_names::transfer::{Refresh, Secondary};
use weft_names::{Catalog, ServiceMetrics, Zone};

use crate::config::ServiceConfig;
use crate::running::Running;
use crate::services::ServiceKind;

/// The shortest wait between two checks, whatever the SOA says (a refresh of 0 would
/// ask the primary without pause).
const SHORTEST_WAIT: Duration = Duration::from_secs(5);
/// The wait before asking again when no copy is held and the first attempt failed.
const RETRY_WITHOUT_COPY: Duration = Duration::from_secs(30);

/// A zone to put in service for `service` (or, `None`, to stop serving: expired).
#[derive(Debug)]
pub(crate) struct Install {
    pub(crate) service: String,
    pub(crate) origin: Name,
    pub(crate) zone: Option<Arc<Zone>>,
}

/// The tasks, by service and zone.
pub(crate) struct Keepers {
    tasks: HashMap<(String, LowerName), (Secondary, CancellationToken)>,
    installs: mpsc::UnboundedSender<Install>,
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
    /// none (or whose settings changed), and stops those of zones no longer configured.
    pub(crate) fn reconcile(&mut self, reactor: &Reactor, running: &Running) {
        let mut wanted = HashMap::new();
        for service in running.services() {
            let ServiceKind::Dns(settings) = &service.kind else {
                continue;
            };
            for zone in &settings.config.transfer.secondaries {
                let key = (service.name.clone(), LowerName::new(&zone.origin));
                wanted.insert(key, (service, zone));
            }
        }
        self.tasks.retain(|key, (zone, stop)| {
            let keep = wanted.get(key).is_some_and(|(_, z)| *z == zone);
            if !keep {
                stop.cancel();
            }
            keep
        });
        for (key, (service, zone)) in wanted {
            if self.tasks.contains_key(&key) {
                continue;
            }
            let stop = CancellationToken::new();
            let task = Task {
                service: service.name.clone(),
                zone: zone.clone(),
                held: held(service, &zone.origin),
                metrics: running.dns_metrics(&service.name),
                installs: self.installs.clone(),
            };
            reactor.spawn(weft::tasks::awaiting_outside_events(task.run(stop.clone())));
            self.tasks.insert(key, (zone.clone(), stop));
        }
    }

    /// Stops every task.
    pub(crate) fn stop(&mut self) {
        for (_, (_, stop)) in self.tasks.drain() {
            stop.cancel();
        }
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
        let seconds = |s: i32| Duration::from_secs(u64::try_from(s).unwrap_or(0));
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
            zone,
            held,
            metrics,
            installs,
        } = self;
        let wake = inbound::listen(&service, &zone.origin);
        // The copy held: its serial (`None` once expired, so the next check transfers),
        // its timers, and when a primary last confirmed it.
        let mut serial = held.as_ref().map(|z| z.serial());
        let mut timers = held.as_deref().and_then(Timers::of);
        let mut confirmed = held.as_ref().and_then(|_| modified(&zone.file));
        let counters = metrics.transfer();
        loop {
            let wait = match check(&service, &zone, serial).await {
                Ok((primary, Fetched::Current(theirs))) => {
                    counters.refresh(Refresh::Current);
                    confirmed = Some(SystemTime::now());
                    touch(&zone.file);
                    if serial.is_some_and(|ours| ours != theirs) {
                        tracing::warn!(service, zone = %zone.origin, %primary, ours = serial, theirs, "the primary's serial is behind the copy held; keeping the copy");
                    }
                    timers.map_or(RETRY_WITHOUT_COPY, |t| t.refresh)
                }
                Ok((primary, Fetched::Zone(records))) => {
                    match store(&zone, records, &primary).await {
                        Ok(copy) => {
                            counters.refresh(Refresh::Transferred);
                            tracing::info!(service, zone = %zone.origin, %primary, from = serial, to = copy.serial(), records = copy.len(), "zone transferred");
                            serial = Some(copy.serial());
                            timers = Timers::of(&copy);
                            confirmed = Some(SystemTime::now());
                            let install = Install {
                                service: service.clone(),
                                origin: zone.origin.clone(),
                                zone: Some(Arc::new(copy)),
                            };
                            if installs.send(install).is_err() {
                                return;
                            }
                            timers.map_or(RETRY_WITHOUT_COPY, |t| t.refresh)
                        }
                        Err(why) => {
                            counters.refresh(Refresh::Failed);
                            tracing::warn!(service, zone = %zone.origin, %primary, "the zone transferred is refused, the copy held serves on: {why}");
                            timers.map_or(RETRY_WITHOUT_COPY, |t| t.retry)
                        }
                    }
                }
                Err(why) => {
                    counters.refresh(Refresh::Failed);
                    tracing::warn!(service, zone = %zone.origin, "no primary could be asked: {why}");
                    let past = |t: Timers, at: SystemTime| {
                        at.elapsed().is_ok_and(|since| since >= t.expire)
                    };
                    if let (Some(t), Some(at), Some(_)) = (timers, confirmed, serial)
                        && past(t, at)
                    {
                        counters.refresh(Refresh::Expired);
                        tracing::error!(service, zone = %zone.origin, expire = t.expire.as_secs(), "no primary confirmed the zone within its expire time: it is no longer served");
                        serial = None;
                        let install = Install {
                            service: service.clone(),
                            origin: zone.origin.clone(),
                            zone: None,
                        };
                        if installs.send(install).is_err() {
                            return;
                        }
                    }
                    timers.map_or(RETRY_WITHOUT_COPY, |t| t.retry)
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = wake.notified() => {
                    tracing::debug!(service, zone = %zone.origin, "NOTIFY received; checking the zone");
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Asks the primaries of `zone` in order until one answers: which, and what it had.
async fn check(
    service: &str,
    zone: &Secondary,
    serial: Option<u32>,
) -> Result<(String, Fetched), String> {
    let mut failures = Vec::new();
    for primary in &zone.primaries {
        match inbound::fetch(service, &zone.origin, primary, serial).await {
            Ok(fetched) => return Ok((primary.to_string(), fetched)),
            Err(failure) => failures.push(format!("{primary}: {}", failure.error())),
        }
    }
    Err(failures.join("; "))
}

/// Checks `records`, the zone transferred from `primary`, as a zone file, and writes it
/// to the zone's file in place of the copy held (renamed into place, whole); the copy
/// as it is served.
async fn store(
    zone: &Secondary,
    records: Vec<hickory_proto::rr::Record>,
    primary: &str,
) -> Result<Zone, String> {
    let file = zone.file.clone();
    let comment = format!(
        "zone {} transferred from {primary} at {} (unix seconds)",
        zone.origin,
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    );
    let stored = tokio::task::spawn_blocking(move || {
        let text = inbound::zone_text(&records, &comment)?;
        drop(records);
        let copy = Zone::parse(&file, &text).map_err(|e| e.to_string())?;
        write_whole(&file, text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        Ok(copy)
    });
    stored.await.map_err(|e| e.to_string())?
}

/// Writes `bytes` to `file` through a file beside it renamed into place, so a reader
/// (a reload, a restart) sees the old copy or the new one, whole.
fn write_whole(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut partial = file.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, file)
}

/// When `file` was last modified: when a primary last confirmed the copy it holds.
fn modified(file: &Path) -> Option<SystemTime> {
    std::fs::metadata(file).and_then(|m| m.modified()).ok()
}

/// Marks `file` confirmed now (its modification time).
fn touch(file: &Path) {
    let touched = std::fs::File::options()
        .append(true)
        .open(file)
        .and_then(|f| f.set_modified(SystemTime::now()));
    if let Err(error) = touched {
        tracing::debug!(file = %file.display(), %error, "cannot mark the zone's copy confirmed");
    }
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
        if let Some(kept) = kept {
            let _ = zones.add(kept);
        }
    }
    if let Some(zone) = zone {
        let _ = zones.add(zone);
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
