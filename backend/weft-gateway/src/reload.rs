//! Reloading the configuration while the gateway runs: SIGHUP and `POST /api/reload`.
//!
//! # Design
//!
//! Both re-read the file the process was started with and validate it exactly as
//! `weft check` does ([`Config::read`] then [`Config::parse`], the one path
//! [`Config::load`] takes), on a blocking thread so a large zone file never stalls the
//! reactor; there too each zone read is compared with the one in service and, unchanged,
//! replaced by it, so the reactor thread compares zones by identity, never record by
//! record (see `services::dns_zones::InService`); then [`Running::apply`] applies the
//! difference on the reactor thread: new services start, removed ones stop accepting and
//! drain, changed ones are replaced while their open connections finish under the old
//! settings (but an HTTP service's and a DNS service's, which are served by the new ones
//! from their next request or question on), unchanged ones are not touched.
//! A changed service keeps the sockets of the endpoints it still lists (they are handed to
//! the new instance, never closed), so a reload racing with traffic loses no connection the
//! kernel accepted; endpoints that moved are bound before the old ones stop, so an address
//! in use leaves the old service serving.
//!
//! Every reload ends in one of three results, logged with its reason, counted in
//! `weft_config_reloads_total{result}`, kept as the dashboard banner's last reload and
//! published as a `config_reloaded` event:
//!
//! - `ok`: applied (possibly nothing: the file did not change); a zone file that no
//!   longer loads keeps its zone in service and is named, with its line, in the message;
//! - `invalid`: the file does not validate; nothing changed;
//! - `failed`: the file cannot be read, or the new services cannot all start (an address in
//!   use); nothing changed.
//!
//! The same task puts in service the secondary zones transferred (`crate::secondaries`),
//! and after each reload starts and stops the tasks that keep them.
//!
//! One task on the reactor thread serves both sources, one reload at a time, so reloads
//! never interleave; the dashboard's requests wait in a bounded queue
//! ([`weft_dashboard::Reloader`]) and each gets its own outcome. The task ends when the
//! reactor begins to shut down.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weft::{Phase, Reactor};
use weft_dashboard::ReloadRequest;
use weft_telemetry::{ReloadOutcome, ReloadResult};

use crate::config::Config;
use crate::notify::Notifier;
use crate::running::{Applied, Running};
use crate::secondaries::Keepers;
use crate::services::dns_zones::InService;

/// Requests the dashboard may queue while a reload runs.
pub const QUEUE: usize = 8;

/// Where the configuration comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The file the process was started with.
    File(PathBuf),
    /// The built-in demo configuration: nothing to re-read.
    Demo,
}

/// SIGHUP, caught from the moment the reactor runs.
///
/// SIGHUP ends a process that does not catch it. [`Hangups::catch`] must be called before
/// anything else asks to run when the reactor starts (the inspector marks the process
/// ready then), so a hangup sent to a process `/readyz` calls ready reloads it.
#[derive(Debug, Clone, Default)]
pub struct Hangups(std::rc::Rc<std::cell::RefCell<Option<tokio::signal::unix::Signal>>>);

impl Hangups {
    /// Catches SIGHUP on `reactor` as soon as it runs.
    pub fn catch(reactor: &Reactor) -> Self {
        let hangups = Self::default();
        let cell = hangups.0.clone();
        reactor.call_when_running(move || {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(signal) => *cell.borrow_mut() = Some(signal),
                Err(error) => {
                    tracing::warn!(%error, "cannot catch SIGHUP; reload through POST /api/reload")
                }
            }
        });
        hangups
    }
}

/// Serves reloads on `reactor` until it shuts down: on each SIGHUP and each request from
/// the dashboard (the receiving end of its [`weft_dashboard::Reloader`]).
pub fn serve(
    reactor: &Reactor,
    mut running: Running,
    source: Source,
    hangups: Hangups,
    mut requests: Option<mpsc::Receiver<ReloadRequest>>,
    notifier: Notifier,
) {
    let stop = CancellationToken::new();
    let stopping = stop.clone();
    reactor.add_shutdown_hook(Phase::Before, move || stopping.cancel());
    // It waits for SIGHUP or a request for as long as the gateway runs: not a stall.
    let (mut keepers, mut installs) = Keepers::new();
    let keeping = reactor.clone();
    reactor.spawn(weft::tasks::awaiting_outside_events(async move {
        let mut signal = hangups.0.borrow_mut().take();
        keepers.reconcile(&keeping, &running);
        loop {
            let hangup = async {
                match signal.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            let request = async {
                match requests.as_mut() {
                    Some(r) => r.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => {
                    keepers.stop();
                    return;
                }
                Some(()) = hangup => {
                    tracing::info!("SIGHUP received");
                    reload(&mut running, &source, &notifier).await;
                }
                request = request => match request {
                    Some(reply) => {
                        let outcome = reload(&mut running, &source, &notifier).await;
                        let _ = reply.send(outcome);
                    }
                    // The dashboard is gone; SIGHUP still works.
                    None => requests = None,
                },
                Some(zone) = installs.recv() => {
                    crate::secondaries::install(&mut running, zone).await;
                    keepers.installed(&running);
                    continue;
                }
            }
            keepers.reconcile(&keeping, &running);
        }
    }));
}

/// Re-reads and applies the configuration once; logs, counts and returns the outcome.
/// A service manager that started the process (`NOTIFY_SOCKET`) is told `RELOADING=1` at
/// the start and `READY=1` once every service of the result listens again.
pub async fn reload(running: &mut Running, source: &Source, notifier: &Notifier) -> ReloadOutcome {
    tracing::info!(source = %describe(source), "reloading the configuration");
    notifier.reloading();
    let in_service = InService::of(running.services());
    let history = running.history_file();
    let outcome = match read(source, in_service, history).await {
        Err((ReloadResult::Failed, message)) => {
            ReloadOutcome::new(ReloadResult::Failed, format!("{message}; nothing changed"))
        }
        // Said in the answer as in the log: the operator reading either knows the running
        // configuration is untouched.
        Err((result, message)) => ReloadOutcome::new(result, format!("{message}; nothing changed")),
        Ok(config) => match running.apply(config) {
            Ok(mut applied) => {
                applied.notes.extend(running.follow().await);
                ok(&applied)
            }
            Err(e) => ReloadOutcome::new(
                ReloadResult::Failed,
                format!(
                    "{}: {}; nothing changed",
                    describe(source),
                    failed_start(&e)
                ),
            ),
        },
    };
    match outcome.result {
        ReloadResult::Ok => tracing::info!("configuration reloaded: {}", outcome.message),
        ReloadResult::Invalid => {
            // The message ends in "nothing changed".
            tracing::warn!("configuration reload refused: {}", outcome.message);
        }
        ReloadResult::Failed => {
            // The message ends in "nothing changed".
            tracing::error!("configuration reload failed: {}", outcome.message);
        }
    }
    running.hub().record_reload(outcome.clone());
    notifier.ready_once_serving(running.hub());
    outcome
}

/// Why a service of the new configuration did not start, naming who holds a port (or
/// socket) in use, as `weft check` does: the system's "Address already in use" alone
/// leaves the operator to find out.
fn failed_start(e: &crate::running::StartError) -> String {
    use crate::services::ServiceError;
    use weft::net::ListenError;
    if let ServiceError::Listen(ListenError::Bind { endpoint, source }) = &e.source
        && source.kind() == std::io::ErrorKind::AddrInUse
        && let Some(held) = crate::config::in_use_by(endpoint)
    {
        return format!(
            "service {:?}: cannot listen on {endpoint}: {held}",
            e.service
        );
    }
    e.to_string()
}

fn describe(source: &Source) -> String {
    match source {
        Source::File(path) => path.display().to_string(),
        Source::Demo => "the built-in demo configuration".into(),
    }
}

/// Reads and validates the configuration on a blocking thread, where it also makes each
/// zone read that is unchanged the one `in_service`, so the reactor thread never compares
/// a zone's records.
async fn read(
    source: &Source,
    in_service: InService,
    history: Option<PathBuf>,
) -> Result<Config, (ReloadResult, String)> {
    let path = match source {
        Source::File(path) => path.clone(),
        Source::Demo => {
            // The built-in zone is small: read again here, it is shared as a file's is.
            let mut config = Config::demo();
            in_service.share(&mut config.services);
            return Ok(config);
        }
    };
    let checked = tokio::task::spawn_blocking(move || {
        let mut config = read_settled(&path, history.as_deref(), SETTLE, SETTLE_AT_MOST)?;
        // As the running one was at start: a `[store]` that still leads to the file
        // written is no change, one whose link was re-pointed is (a restart moves it).
        config.pin_history_file();
        in_service.share(&mut config.services);
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        Ok(config)
    })
    .await;
    checked.unwrap_or_else(|e| {
        Err((
            ReloadResult::Failed,
            format!("the configuration could not be checked: {e}"),
        ))
    })
}

/// How long the configuration and its zone files must have been left alone before a
/// reload takes them: a file an editor or a tool is rewriting in place (truncated, then
/// written) can be caught half written, and a half that parses (a file cut after a
/// `[[service]]`, a zone with its SOA and not yet its names) would be applied.
const SETTLE: Duration = Duration::from_millis(200);
/// How long a reload waits for the files to settle before it gives up, changing nothing.
const SETTLE_AT_MOST: Duration = Duration::from_secs(3);

/// The configuration at `path`, read and checked once it and its zone files have not
/// changed for `settle`: if any of them was modified that recently, or while it was
/// read, it is read again once they are quiet. Files that keep changing for `at_most`
/// are an invalid configuration for this reload (the one serving goes on).
fn read_settled(
    path: &Path,
    history: Option<&Path>,
    settle: Duration,
    at_most: Duration,
) -> Result<Config, (ReloadResult, String)> {
    let file = path.display().to_string();
    let read = || Config::read(path).map_err(|e| (ReloadResult::Failed, e.to_string()));
    let check = |text: String| {
        Config::parse_for_reload(&file, &text, history)
            .and_then(|config| config.serves_something(&file).map(|()| config))
            .map_err(|e| (ReloadResult::Invalid, e.to_string()))
            .and_then(|config| {
                // As `check` refuses it: more listeners than the open-files limit leaves
                // room for would be bound part way, reactor by reactor.
                config
                    .check_open_files()
                    .map(|()| config)
                    .map_err(|e| (ReloadResult::Invalid, format!("{file}: {e}")))
            })
    };
    // Time spent waiting for the files, not reading them (a large zone takes seconds).
    let mut waited = Duration::ZERO;
    loop {
        // The files it names, found without checking it, quiet before the read, so the
        // read is likely whole. A file missing for a moment (an editor that deletes and
        // writes anew) is waited for as one being written.
        let mut files = vec![path.to_path_buf()];
        if let Ok(text) = read() {
            files.extend(declared_zone_files(&text));
        }
        let missing = files.iter().any(|f| !f.exists());
        if let Some(wait) = unsettled(&files, settle).or(missing.then_some(settle)) {
            if waited + wait > at_most {
                // A file missing for good is the check's to report (a zone that no longer
                // loads keeps serving what it served).
                return match missing {
                    true => read().and_then(check),
                    false => Err(still_changing(&file, at_most)),
                };
            }
            std::thread::sleep(wait);
            waited += wait;
            continue;
        }
        // And the same after: nothing was written, replaced or renamed into place while
        // it was read, zones included, whatever the read made of it (a half that does
        // not parse is no more the file than one that does).
        let before = stamps(&files);
        let checked = read().and_then(check);
        if stamps(&files) == before {
            return checked;
        }
        if waited + settle > at_most {
            return Err(still_changing(&file, at_most));
        }
        std::thread::sleep(settle);
        waited += settle;
    }
}

/// What can be seen of each of `files` without reading it: which file it is (device and
/// inode: one renamed into place is another), its length, and when it and its inode
/// were last changed, to the nanosecond where the filesystem keeps them (`None`: absent).
fn stamps(files: &[PathBuf]) -> Vec<Option<[i64; 7]>> {
    use std::os::unix::fs::MetadataExt;
    files
        .iter()
        .map(|f| {
            let m = std::fs::metadata(f).ok()?;
            let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            Some([
                n(m.dev()),
                n(m.ino()),
                n(m.len()),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            ])
        })
        .collect()
}

/// The zone files the configuration `text` names (`zones` of a `[[service]]`), read as
/// TOML and nothing more; none if it does not read.
fn declared_zone_files(text: &str) -> Vec<PathBuf> {
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        return Vec::new();
    };
    let services = table.get("service").and_then(toml::Value::as_array);
    services
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("zones"))
        .flat_map(|zones| match zones {
            toml::Value::String(one) => vec![PathBuf::from(one)],
            toml::Value::Array(many) => many
                .iter()
                .filter_map(toml::Value::as_str)
                .map(PathBuf::from)
                .collect(),
            _ => Vec::new(),
        })
        .collect()
}

fn still_changing(file: &str, at_most: Duration) -> (ReloadResult, String) {
    (
        ReloadResult::Invalid,
        format!(
            "{file}: it or one of its zone files kept changing for {at_most:?}, so it may be \
             half written; not applied (write a file whole, then rename it into place)"
        ),
    )
}

/// How much longer to wait for the most recently modified of `files` to have been left
/// alone for `settle`; `None` when all have been (or cannot be looked at: reading them
/// says why).
fn unsettled(files: &[PathBuf], settle: Duration) -> Option<Duration> {
    let now = SystemTime::now();
    files
        .iter()
        .filter_map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        // A date ahead of the clock (a file unpacked from elsewhere) is not a write now.
        .filter_map(|modified| now.duration_since(modified).ok())
        .filter(|age| *age < settle)
        .map(|age| settle - age)
        .max()
}

fn ok(applied: &Applied) -> ReloadOutcome {
    let mut parts = Vec::new();
    for (what, names) in [
        ("added", &applied.added),
        ("removed", &applied.removed),
        ("changed", &applied.changed),
    ] {
        if !names.is_empty() {
            parts.push(format!("{what} {}", names.join(", ")));
        }
    }
    parts.push(format!("{} unchanged", applied.unchanged));
    parts.extend(applied.notes.iter().cloned());
    for section in &applied.need_restart {
        parts.push(format!("{section} changed: restart to apply it"));
    }
    ReloadOutcome {
        added: applied.added.clone(),
        removed: applied.removed.clone(),
        changed: applied.changed.clone(),
        ..ReloadOutcome::new(ReloadResult::Ok, parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`read_settled`] of a process whose history is in no file.
    fn settled(
        path: &Path,
        settle: Duration,
        at_most: Duration,
    ) -> Result<Config, (ReloadResult, String)> {
        read_settled(path, None, settle, at_most)
    }

    fn echo(name: &str, port: u16) -> String {
        format!(
            "[[service]]\nname = \"{name}\"\nkind = \"echo\"\nlisten = \"tcp:{port}:interface=127.0.0.1\"\n"
        )
    }

    /// A file rewritten in place, caught with its first half written (which parses: one
    /// service of two), is read once it has been left alone: whole.
    #[test]
    fn a_file_being_rewritten_is_read_once_it_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weft.toml");
        let half = echo("a", 1);
        let whole = format!("{half}{}", echo("b", 2));
        std::fs::write(&path, &half).unwrap();
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                std::fs::write(&path, whole).unwrap();
            })
        };
        let config = settled(&path, Duration::from_millis(300), Duration::from_secs(5))
            .map_err(|(_, e)| e)
            .unwrap();
        writer.join().unwrap();
        let names: Vec<_> = config.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    /// A file missing for a moment (deleted and written anew) is waited for, not a failed
    /// reload.
    #[test]
    fn a_file_missing_for_a_moment_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weft.toml");
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                std::fs::write(&path, echo("a", 1)).unwrap();
            })
        };
        let config = settled(&path, Duration::from_millis(200), Duration::from_secs(5))
            .map_err(|(_, e)| e)
            .unwrap();
        writer.join().unwrap();
        assert_eq!(config.services.len(), 1);
        // Missing for good: the read's own error, once the wait is over.
        let gone = dir.path().join("gone.toml");
        let Err((result, message)) =
            settled(&gone, Duration::from_millis(50), Duration::from_millis(200))
        else {
            panic!("read a file that is not there");
        };
        assert_eq!(result, ReloadResult::Failed);
        assert!(message.contains("cannot read"), "{message}");
    }

    /// A zone file missing for a moment is waited for as the configuration is: the new
    /// zone is read, not reported failed.
    #[test]
    fn a_zone_file_missing_for_a_moment_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let zone = dir.path().join("a.test.zone");
        let path = dir.path().join("weft.toml");
        std::fs::write(
            &path,
            format!(
                "[[service]]\nname = \"dns\"\nkind = \"dns\"\nlisten = \"udp:1:interface=127.0.0.1\"\n\
                 zones = [{:?}]\n",
                zone.display()
            ),
        )
        .unwrap();
        // The configuration is old; only the zone is away, and back 100 ms later.
        std::thread::sleep(Duration::from_millis(250));
        let writer = {
            let zone = zone.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                std::fs::write(
                    &zone,
                    "$ORIGIN a.test.\n$TTL 300\n@ IN SOA ns1 hostmaster 4 3600 600 86400 300\n\
                     @ IN NS ns1\nns1 IN A 192.0.2.1\n",
                )
                .unwrap();
            })
        };
        let config = settled(&path, Duration::from_millis(200), Duration::from_secs(5))
            .map_err(|(_, e)| e)
            .unwrap();
        writer.join().unwrap();
        let crate::services::ServiceKind::Dns(dns) = &config.services[0].kind else {
            panic!("a dns service");
        };
        assert!(dns.failed.is_empty(), "{:?}", dns.failed);
    }

    /// Files that never settle are not applied: the configuration serving goes on.
    #[test]
    fn a_file_that_keeps_changing_is_not_applied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weft.toml");
        std::fs::write(&path, echo("a", 1)).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (path, stop) = (path.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::fs::write(&path, echo("a", 1)).unwrap();
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        let refused = settled(
            &path,
            Duration::from_millis(200),
            Duration::from_millis(600),
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
        let Err((result, message)) = refused else {
            panic!("applied");
        };
        assert_eq!(result, ReloadResult::Invalid);
        assert!(message.contains("kept changing"), "{message}");
    }
}
