//! From the file as written to a [`Config`]: defaults, durations, endpoints, the rule
//! that a dashboard off loopback needs a token, and whatever else would stop `weft run`
//! before it serves (overlapping listeners, missing directories, TLS files that do not
//! load), so `weft check` and `weft run` refuse the same files for the same reasons.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;
use weft::endpoint::{ClientEndpoint, ServerEndpoint};

use super::error::Locator;
use super::preflight::{self, Listeners};
use super::raw::{RawConfig, RawService};
use super::{
    Config, ConfigError, DemoConfig, InspectConfig, LogConfig, LogFormat, MAX_DURATION,
    ServiceConfig, StoreConfig, keypath, wording,
};
use crate::services;

pub(super) fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
    parse_beside(file, text, None)
}

/// [`parse`], for a reload beside a process writing history to `running_history`: a
/// reload does not move history (`[store]` waits for a restart), so no new root may serve
/// that file either.
pub(super) fn parse_beside(
    file: &str,
    text: &str,
    running_history: Option<&std::path::Path>,
) -> Result<Config, ConfigError> {
    let at = Locator { file, text };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let message = e.message().trim();
        let key = e
            .span()
            .filter(|_| wording::names_a_key(message))
            .and_then(|span| keypath::at(text, &span));
        let mut said = wording::plain(message, key.as_deref(), text);
        if let Some(span) = e.span() {
            said = wording::table_twice(&said, text, span.start).unwrap_or(said);
        }
        at.error(e.span(), key.clone(), said)
    })?;
    let dashboard = super::dashboard::dashboard(&at, &raw.dashboard)?;
    let store = store(&at, &raw)?;
    let inspect = inspect(&at, &raw)?;
    let log = log(&at, &raw)?;
    let gateway = super::gateway::gateway(&at, &raw)?;
    let mut bound = Listeners::default();
    let parsed: ServerEndpoint = dashboard.listen.parse().expect("checked by `dashboard`");
    bound
        .claim(&dashboard.listen, &parsed, "dashboard.listen".into())
        .expect("the first listener claimed");
    let warnings = std::cell::RefCell::new(Vec::new());
    let services = services(&at, &raw, &mut bound, &warnings)?;
    super::loops::check(&at, &raw, &services)?;
    let stores: Vec<&std::path::Path> = store
        .url
        .is_none()
        .then_some(&*store.path)
        .into_iter()
        .chain(running_history)
        .collect();
    let private_files = files_apart(&at, &raw, &stores, &services)?;
    let demo = demo(&at, &raw, &mut bound)?;
    let otlp = super::otlp::otlp(&at, raw.otlp.as_ref())?;
    Ok(Config {
        dashboard,
        store,
        inspect,
        log,
        demo,
        gateway,
        otlp,
        services,
        private_files,
        warnings: warnings.into_inner(),
    })
}

/// `[store]`.
fn store(at: &Locator<'_>, raw: &RawConfig) -> Result<StoreConfig, ConfigError> {
    let url = super::fleet::store_url(at, raw)?;
    Ok(StoreConfig {
        // With a URL the file is not used, nor checked.
        path: match url {
            Some(_) => "weft.db".into(),
            None => store_path(at, raw.store.path.as_ref())?,
        },
        url,
        retention: duration(
            at,
            "store.retention",
            raw.store.retention.as_ref(),
            Duration::from_secs(24 * 3600),
        )?,
        connections_per_second: raw
            .store
            .connections_per_second
            .unwrap_or(weft_inspector::DEFAULT_HISTORY_CONNECTIONS_PER_S),
        queries_per_second: raw
            .store
            .queries_per_second
            .unwrap_or(StoreConfig::DEFAULT_QUERIES_PER_SECOND),
    })
}

/// `[inspect]`.
fn inspect(at: &Locator<'_>, raw: &RawConfig) -> Result<InspectConfig, ConfigError> {
    Ok(InspectConfig {
        stall_after: duration(
            at,
            "inspect.stall_after",
            raw.inspect.stall_after.as_ref(),
            weft::ReactorConfig::DEFAULT_STALL_AFTER,
        )?,
        slow_callback: duration(
            at,
            "inspect.slow_callback",
            raw.inspect.slow_callback.as_ref(),
            weft::ReactorConfig::DEFAULT_SLOW_CALLBACK,
        )?,
        sample: match &raw.inspect.sample {
            Some(s) if !(0.0..=1.0).contains(s.get_ref()) => {
                return Err(at.error(
                    Some(s.span()),
                    key("inspect.sample"),
                    format!("must be between 0.0 and 1.0, got {}", s.get_ref()),
                ));
            }
            Some(s) => *s.get_ref(),
            None => 0.1,
        },
        sample_per_second: per_second(
            at,
            raw.inspect.sample_per_second.as_ref(),
            "inspect.sample_per_second",
            weft_telemetry::HubConfig::DEFAULT_SAMPLE_PER_SECOND,
        )?,
        failed_per_second: per_second(
            at,
            raw.inspect.failed_per_second.as_ref(),
            "inspect.failed_per_second",
            weft_telemetry::HubConfig::DEFAULT_FAILED_PER_SECOND,
        )?,
        notify: super::notify::notify(at, &raw.inspect)?,
    })
}

/// The highest `[inspect]` budget a second short of no cap.
const MAX_PER_SECOND: u32 = 1_000_000;

/// An `[inspect]` budget a second: 0 (no cap) to [`MAX_PER_SECOND`], `default` unset.
fn per_second(
    at: &Locator<'_>,
    raw: Option<&Spanned<i64>>,
    name: &'static str,
    default: u32,
) -> Result<u32, ConfigError> {
    let Some(n) = raw else {
        return Ok(default);
    };
    u32::try_from(*n.get_ref())
        .ok()
        .filter(|n| *n <= MAX_PER_SECOND)
        .ok_or_else(|| {
            at.error(
                Some(n.span()),
                key(name),
                format!(
                    "must be between 0 and {MAX_PER_SECOND} (0: no cap), got {}",
                    n.get_ref()
                ),
            )
        })
}

/// `[log]`.
fn log(at: &Locator<'_>, raw: &RawConfig) -> Result<LogConfig, ConfigError> {
    Ok(LogConfig {
        format: match &raw.log.format {
            Some(f) => f
                .get_ref()
                .parse()
                .map_err(|message: String| at.error(Some(f.span()), key("log.format"), message))?,
            None => LogFormat::default(),
        },
    })
}

/// Refuses an access log that is a file weft writes or reads besides (the history file,
/// its journal or the lock beside it; the configuration file; what a service reads,
/// [`ServiceConfig::files`]; a unix socket a service listens on) or would be served from
/// an HTTP service's `root` (inside it and not hidden, or a hard link of a file that is),
/// and a unix socket on the history file's path: log lines would be written into a file
/// the next start, check or reload reads, a socket would be where a file must be made (or
/// the other way round), and a log under a root would be served to anyone who asks for
/// it. So is a secondary zone's copy on any of those, or another copy: weft writes it.
/// A path is compared as written (resolved), and an existing file also as the file it
/// is, so a symlink or a hard link to one of them is refused too. And no root may serve
/// a file of weft's that is private ([`unserved`]), the history files of `stores` (the
/// configuration's, and at a reload the one the process writes) among them. Returns those
/// private files (and the access logs), which no request may reach however they come to
/// be named inside a root later (`weft_web::keep_private`).
fn files_apart(
    at: &Locator<'_>,
    raw: &RawConfig,
    stores: &[&std::path::Path],
    services: &[ServiceConfig],
) -> Result<Vec<PathBuf>, ConfigError> {
    let mut history: Vec<PathBuf> = Vec::new();
    for store in stores {
        // By the name written and by the file it leads to through symlinks, which SQLite
        // opens and names its journal after, even before it exists.
        for store in [
            preflight::resolved(store),
            preflight::through_symlinks(store),
        ] {
            for suffix in ["", "-wal", "-shm", "-journal", ".lock"] {
                let mut name = store.as_os_str().to_owned();
                name.push(suffix);
                history.push(PathBuf::from(name));
            }
        }
    }
    let mut taken: Vec<(PathBuf, String)> = history
        .iter()
        .map(|path| (path.clone(), "the history store's file".to_owned()))
        .collect();
    taken.push((
        preflight::resolved(std::path::Path::new(at.file)),
        "the configuration file".to_owned(),
    ));
    // Those of `taken` a root may serve (by their place in it): certificates and CAs,
    // which are public, and sockets, which no request is served.
    let mut servable = Vec::new();
    for (i, service) in services.iter().enumerate() {
        for (path, what) in service.files() {
            if ServiceConfig::may_be_served(what) {
                servable.push(taken.len());
            }
            taken.push((path, format!("service[{i}]'s {what}")));
        }
        for socket in service.unix_sockets() {
            servable.push(taken.len());
            taken.push((socket, format!("service[{i}]'s unix socket")));
        }
    }
    let taken: Vec<_> = taken
        .into_iter()
        .map(|(path, what)| {
            let path = preflight::through_symlinks(&path);
            (file_identity(&path), path, what)
        })
        .collect();
    let mut taken = taken;
    // The copies of secondary zones, which weft writes: none may be another file of the
    // configuration, nor another copy (however its path is written).
    for (i, service) in services.iter().enumerate() {
        let crate::services::ServiceKind::Dns(dns) = &service.kind else {
            continue;
        };
        for zone in &dns.config.transfer.secondaries {
            let Among {
                written,
                path,
                identity,
                clash,
            } = among(&taken, &zone.file);
            if let Some((file, what)) = clash {
                let span = raw.service[i]
                    .get_ref()
                    .secondary
                    .as_ref()
                    .map(|s| s.span());
                return Err(at.error(
                    span,
                    key(&format!("service[{i}].secondary")),
                    format!(
                        "{} (where the copy of {} is kept) is {what}{}: weft would write \
                         over it; name another file",
                        written.display(),
                        zone.origin,
                        same_file(&file, &written),
                    ),
                ));
            }
            let what = format!("service[{i}]'s copy of the zone {}", zone.origin);
            taken.push((identity, path, what));
        }
    }
    let roots: Vec<(usize, PathBuf)> = services
        .iter()
        .enumerate()
        .filter_map(|(i, service)| match &service.kind {
            crate::services::ServiceKind::Http(http) => http
                .web
                .root
                .as_deref()
                // The directory it is, as the server resolves it (`public/..` too).
                .map(|root| {
                    (
                        i,
                        root.canonicalize()
                            .unwrap_or_else(|_| preflight::through_symlinks(root)),
                    )
                }),
            _ => None,
        })
        .collect();
    let mut logs = Vec::new();
    for (i, svc) in raw.service.iter().enumerate() {
        let Some(log) = &svc.get_ref().access_log else {
            continue;
        };
        let refused = |message: String| {
            at.error(
                Some(log.span()),
                key(&format!("service[{i}].access_log")),
                message,
            )
        };
        let Among {
            written,
            path,
            clash,
            ..
        } = among(&taken, std::path::Path::new(log.get_ref()));
        logs.push(path.clone());
        if let Some((file, what)) = clash {
            return Err(refused(format!(
                "{} is {what}{}; name another file, such as \"access.log\"",
                file.display(),
                same_file(&written, &file)
            )));
        }
        if let Some((j, root)) = served_from(&path, &roots) {
            return Err(refused(format!(
                "{} is inside service[{j}]'s root {}: the log would be served to anyone who \
                 asks for it; keep it outside every root",
                written.display(),
                root.display()
            )));
        }
        // Another name of the file (a hard link) may lie inside a root, where a path
        // cannot show it: the roots on its filesystem are looked through for it.
        match linked_into(&path, &roots) {
            Ok(None) => {}
            Ok(Some((j, found))) => {
                return Err(refused(format!(
                    "{} is also {}, inside service[{j}]'s root (a hard link): the log would \
                     be served to anyone who asks for it; give the log a file of its own",
                    written.display(),
                    found.display()
                )));
            }
            Err(()) => {
                return Err(refused(format!(
                    "{} has several names (hard links), and the roots are too large to look \
                     through for one inside them ({LINK_SEARCH_ENTRIES} entries at most): \
                     give the log a file of its own",
                    written.display()
                )));
            }
        }
    }
    let private = taken
        .iter()
        .enumerate()
        .filter(|(n, _)| !servable.contains(n))
        .map(|(_, t)| t);
    let private_files = private
        .clone()
        .map(|(_, path, _)| path.clone())
        .chain(logs)
        .collect();
    // An error page is read once and kept: one that is a private file under another name
    // (a bind mount onto the page's path, which no hard-link search finds) would go to
    // every client answered with its status.
    for (i, service) in services.iter().enumerate() {
        let crate::services::ServiceKind::Http(http) = &service.kind else {
            continue;
        };
        for page in &http.web.error_pages {
            if let Some((_, path, what)) = private.clone().find(|(id, ..)| *id == Some(page.file)) {
                let span = raw.service[i]
                    .get_ref()
                    .error_pages
                    .as_ref()
                    .map(|p| p.span());
                return Err(at.error(
                    span,
                    key(&format!("service[{i}].error_pages")),
                    format!(
                        "the page for {} is {} ({what}) under another name (a mount or a \
                         link): it would be sent to every client answered {}; give the page \
                         a file of its own",
                        page.status.as_u16(),
                        path.display(),
                        page.status.as_u16()
                    ),
                ));
            }
        }
    }
    unserved(at, raw, private, &roots)?;
    if history.is_empty() {
        return Ok(private_files);
    }
    for (i, service) in services.iter().enumerate() {
        for socket in service.unix_sockets() {
            let socket = preflight::resolved(&socket);
            if history.contains(&socket) {
                return Err(at.error(
                    Some(raw.service[i].get_ref().listen.span()),
                    key(&format!("service[{i}].listen")),
                    format!(
                        "unix:{}: is the history store's file (or one SQLite keeps beside \
                         it); listen on another path, or move history ([store] path)",
                        socket.display()
                    ),
                ));
            }
        }
    }
    Ok(private_files)
}

/// The root among `roots` that would serve the file at `path` (inside it, by no hidden
/// name), with its service.
fn served_from<'r>(
    path: &std::path::Path,
    roots: &'r [(usize, PathBuf)],
) -> Option<&'r (usize, PathBuf)> {
    roots.iter().find(|(_, root)| {
        path.strip_prefix(root).is_ok_and(|below| {
            !below
                .components()
                .any(|c| weft_web::path::hidden(&c.as_os_str().to_string_lossy()))
        })
    })
}

/// Refuses a root that would serve a file of weft's that is no one else's to read: the
/// configuration (a dashboard token, TSIG secrets), the history store (every peer's
/// address, every question) and the files SQLite keeps beside it, a TLS key, a zone file
/// or a secondary zone's copy (a zone whose transfer is refused would be one request
/// away). By its path, or by another name of it (a hard link) inside the root.
/// Certificates and CAs are public, and may be served.
fn unserved<'t>(
    at: &Locator<'_>,
    raw: &RawConfig,
    private: impl Iterator<Item = &'t Taken>,
    roots: &[(usize, PathBuf)],
) -> Result<(), ConfigError> {
    let refused = |j: usize, message: String| {
        let span = raw.service[j].get_ref().root.as_ref().map(|r| r.span());
        at.error(span, key(&format!("service[{j}].root")), message)
    };
    for (_, path, what) in private {
        let found = match served_from(path, roots) {
            Some((j, root)) => Some((*j, root_relative(path, root))),
            None => match linked_into(path, roots) {
                Ok(found) => found.map(|(j, link)| {
                    let root = roots.iter().find(|(k, _)| *k == j).map(|(_, r)| r);
                    let link = root.map_or_else(
                        || link.display().to_string(),
                        |root| root_relative(&link, root),
                    );
                    (j, format!("{link}, a hard link of {}", path.display()))
                }),
                // Too large to look through for a link: refused, as an access log is.
                Err(()) => {
                    return Err(refused(
                        roots[0].0,
                        format!(
                            "{} ({what}) has several names (hard links), and the roots are \
                             too large to look through for one inside them \
                             ({LINK_SEARCH_ENTRIES} entries at most): give it a file of its own",
                            path.display()
                        ),
                    ));
                }
            },
        };
        if let Some((j, found)) = found {
            return Err(refused(
                j,
                format!(
                    "would serve {found} ({what}) to anyone who asks for it; keep it outside \
                     every root (or in a directory whose name begins with a dot, other than \
                     .well-known: those are never served)"
                ),
            ));
        }
    }
    Ok(())
}

/// `path` as a request would name it below `root`.
fn root_relative(path: &std::path::Path, root: &std::path::Path) -> String {
    path.strip_prefix(root).map_or_else(
        |_| path.display().to_string(),
        |p| format!("/{}", p.display()),
    )
}

/// How many entries of the roots are looked through for another name of an access log.
const LINK_SEARCH_ENTRIES: usize = 100_000;

/// Another name of the file at `path`, a hard link inside one of `roots` where it would
/// be served (hidden names are never served, nor looked through), with that root's
/// service: looked for only when the file has several names. Past
/// [`LINK_SEARCH_ENTRIES`] entries in all, the search cannot say: `Err`.
fn linked_into(
    path: &std::path::Path,
    roots: &[(usize, PathBuf)],
) -> Result<Option<(usize, PathBuf)>, ()> {
    use std::os::unix::fs::MetadataExt;
    let Some(log) = std::fs::metadata(path).ok().filter(|m| m.nlink() > 1) else {
        return Ok(None);
    };
    let mut seen = 0;
    for (j, root) in roots {
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                seen += 1;
                if seen > LINK_SEARCH_ENTRIES {
                    return Err(());
                }
                if weft_web::path::hidden(&entry.file_name().to_string_lossy()) {
                    continue;
                }
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                if meta.is_dir() {
                    dirs.push(entry.path());
                } else if meta.ino() == log.ino() && meta.dev() == log.dev() && entry.path() != path
                {
                    return Ok(Some((*j, entry.path())));
                }
            }
        }
    }
    Ok(None)
}

/// The device and inode of the file at `path`, through symlinks; `None` when there is
/// none yet.
/// A file of the configuration: which file it is (device and inode, when it exists),
/// the path it leads to, and what it is ("the configuration file").
type Taken = (Option<(u64, u64)>, PathBuf, String);

/// `file` looked up among `taken`.
struct Among {
    /// As written, resolved.
    written: PathBuf,
    /// The path it leads to through symlinks, and its identity.
    path: PathBuf,
    identity: Option<(u64, u64)>,
    /// The one of `taken` it is, if one: its path and what it is.
    clash: Option<(PathBuf, String)>,
}

fn among(taken: &[Taken], file: &std::path::Path) -> Among {
    let written = preflight::resolved(file);
    let path = preflight::through_symlinks(&written);
    let identity = file_identity(&path);
    let clash = taken
        .iter()
        .find(|(id, t, _)| *t == path || (identity.is_some() && *id == identity))
        .map(|(_, t, what)| (t.clone(), what.clone()));
    Among {
        written,
        path,
        identity,
        clash,
    }
}

/// ` (OTHER is the same file)` when `other` is not `named`, else nothing.
fn same_file(other: &std::path::Path, named: &std::path::Path) -> String {
    match other == named {
        true => String::new(),
        false => format!(" ({} is the same file)", other.display()),
    }
}

fn file_identity(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Every `[[service]]`, in file order: unique names, endpoints that parse and do not
/// overlap any listener claimed before (in `bound`), and each kind's keys.
fn services(
    at: &Locator<'_>,
    raw: &RawConfig,
    bound: &mut Listeners,
    warnings: &std::cell::RefCell<Vec<ConfigError>>,
) -> Result<Vec<ServiceConfig>, ConfigError> {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut services = Vec::with_capacity(raw.service.len());
    for (i, svc) in raw.service.iter().enumerate() {
        let svc = svc.get_ref();
        let prefix = format!("service[{i}]");
        let name = svc.name.get_ref();
        // A name is a metric label, a log field, a key of the store and a part of the
        // dashboard's addresses: one short line (what it holds besides is escaped wherever
        // it is shown).
        if let Err(message) = service_name(name) {
            return Err(at.error(
                Some(svc.name.span()),
                key(&format!("{prefix}.name")),
                message,
            ));
        }
        let demo_traffic = raw.demo.traffic.as_ref().is_some_and(|t| *t.get_ref());
        if demo_traffic && crate::demo::SERVICES.contains(&name.as_str()) {
            return Err(at.error(
                Some(svc.name.span()),
                key(&format!("{prefix}.name")),
                format!(
                    "service name {name:?} is the demo's (demo.traffic = true runs it): \
                     their metrics and logs would mix; choose another"
                ),
            ));
        }
        if name == weft_telemetry::NO_SERVICE {
            return Err(at.error(
                Some(svc.name.span()),
                key(&format!("{prefix}.name")),
                format!("service name {name:?} is reserved: metrics label work outside any service with it"),
            ));
        }
        if let Some(first) = names.insert(name, i) {
            return Err(at.error(
                Some(svc.name.span()),
                key(&format!("{prefix}.name")),
                format!("service name {name:?} is already used by service[{first}]; names must be unique"),
            ));
        }
        services.push(service(at, &prefix, svc, bound, warnings)?);
    }
    Ok(services)
}

/// One `[[service]]` whose name is checked, `prefix` (`service[N]`) naming its keys.
fn service(
    at: &Locator<'_>,
    prefix: &str,
    svc: &RawService,
    bound: &mut Listeners,
    warnings: &std::cell::RefCell<Vec<ConfigError>>,
) -> Result<ServiceConfig, ConfigError> {
    let name = svc.name.get_ref();
    let listen = endpoints(at, prefix, &svc.listen)?;
    let ctx = ServiceCtx {
        at,
        prefix,
        raw: svc,
        listen: &listen,
        warnings,
    };
    let kind = services::validate(&ctx)?;
    let limits = services::limits::validate(&ctx, &kind)?;
    let mut tls_files = weft::net::FilesDigest::default();
    let mut certificates = Vec::new();
    for (endpoint, span) in &listen {
        let parsed: ServerEndpoint = endpoint.parse().expect("checked by `endpoints`");
        let files = preflight::server_files(endpoint, &parsed)
            .and_then(|files| {
                bound.claim(endpoint, &parsed, format!("{prefix} ({name})"))?;
                Ok(files)
            })
            .map_err(|message| {
                at.error(
                    Some(span.clone()),
                    key(&format!("{prefix}.listen")),
                    message,
                )
            })?;
        tls_files = tls_files.and(files);
        if let ServerEndpoint::Ssl { cert, .. } = &parsed
            && let Ok(facts) = weft::net::CertificateFacts::read(cert)
        {
            let now = std::time::SystemTime::now();
            if let Some(warning) = services::tls_certificates::validity_warning(cert, &facts, now) {
                ctx.warn(span.clone(), "listen", format!("{endpoint:?}: {warning}"));
            }
            certificates.push((cert.display().to_string(), facts.not_after));
        }
    }
    for sni in services::sni_certificates(&kind) {
        if let Ok(facts) = weft::net::CertificateFacts::read(&sni.cert) {
            certificates.push((sni.cert.display().to_string(), facts.not_after));
        }
    }
    certificates.sort();
    certificates.dedup();
    // The roots its upstreams are verified against, read as connecting reads them: a CA
    // bundle rotated in place changes the service too.
    for ca in services::ca_files(&kind) {
        if let Ok(files) = weft::net::check_ca_certs(&ca) {
            tls_files = tls_files.and(files);
        }
    }
    Ok(ServiceConfig {
        name: name.clone(),
        listen: listen.into_iter().map(|(e, _)| e).collect(),
        kind,
        limits,
        tls_files,
        certificates,
    })
}

/// The longest service name, in bytes: a label on every metric and history row of it.
const MAX_SERVICE_NAME_LEN: usize = 64;

/// Whether `name` can name a service: 1 to [`MAX_SERVICE_NAME_LEN`] bytes of printable text, not
/// all spaces (a line break would split the log lines that carry it).
fn service_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_SERVICE_NAME_LEN {
        return Err(format!(
            "must be at most {MAX_SERVICE_NAME_LEN} bytes, got {}",
            name.len()
        ));
    }
    if name.trim() != name {
        return Err(format!(
            "{name:?} starts or ends with a space: a service name is written as it looks"
        ));
    }
    match name.chars().find(|&c| c.is_control() || invisible(c)) {
        Some(bad) => Err(format!(
            "{bad:?} is not allowed: a service name is one line of printable text, shown in \
             metrics, logs and pages as written (no invisible or direction-changing \
             characters, no spaces but ' ')"
        )),
        None => Ok(()),
    }
}

/// A character that shows as nothing, or as a space that is not one, or that reorders
/// the text around it: Unicode's format characters (zero-width ones, direction marks,
/// overrides and isolates, the byte-order mark, tags) and other default-ignorable code
/// points (fillers, variation selectors, the combining grapheme joiner), and every white
/// space but U+0020.
/// Two names would look alike, or one unlike what it is, in every place it is shown.
fn invisible(c: char) -> bool {
    (c.is_whitespace() && c != ' ')
        || matches!(
            c,
            '\u{ad}'
                | '\u{600}'..='\u{605}'
                | '\u{61c}'
                | '\u{6dd}'
                | '\u{70f}'
                | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{890}'..='\u{891}'
                | '\u{8e2}'
                | '\u{110bd}'
                | '\u{110cd}'
                | '\u{13430}'..='\u{1343f}'
                | '\u{feff}'
                | '\u{fff0}'..='\u{fffb}'
                | '\u{e0000}'..='\u{e0fff}'
                // The rest of Unicode's default-ignorable code points (shown as nothing
                // where not understood), and the blank braille pattern.
                | '\u{34f}'
                | '\u{115f}'..='\u{1160}'
                | '\u{17b4}'..='\u{17b5}'
                | '\u{180b}'..='\u{180f}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{fe00}'..='\u{fe0f}'
                | '\u{ffa0}'
                | '\u{1bca0}'..='\u{1bca3}'
                | '\u{1d173}'..='\u{1d17a}'
        )
}

/// `[demo]`: `traffic = true` also claims the demo upstreams' listeners.
fn demo(
    at: &Locator<'_>,
    raw: &RawConfig,
    bound: &mut Listeners,
) -> Result<DemoConfig, ConfigError> {
    let demo = DemoConfig {
        traffic: raw.demo.traffic.as_ref().is_some_and(|t| *t.get_ref()),
    };
    if demo.traffic {
        let span = raw.demo.traffic.as_ref().map(Spanned::span);
        for (endpoint, what) in crate::demo::LISTENERS {
            let parsed: ServerEndpoint = endpoint.parse().expect("the demo's endpoints parse");
            bound
                .claim(endpoint, &parsed, format!("the demo's {what}"))
                .map_err(|message| {
                    at.error(
                        span.clone(),
                        key("demo.traffic"),
                        format!("the demo's {what} cannot listen: {message}"),
                    )
                })?;
        }
    }
    Ok(demo)
}

/// What a service module needs to validate its kind's keys.
pub(crate) struct ServiceCtx<'a> {
    /// The file and its text, to turn a key's span into a line and column.
    pub(crate) at: &'a Locator<'a>,
    /// `service[N]`, for error keys.
    pub(crate) prefix: &'a str,
    /// The table as written, every key with its span.
    pub(crate) raw: &'a RawService,
    /// The endpoints, parsed as server endpoints, with their spans.
    pub(crate) listen: &'a [(String, Range<usize>)],
    /// Where settings that take no effect are said ([`Config::warnings`]).
    pub(crate) warnings: &'a std::cell::RefCell<Vec<ConfigError>>,
}

impl ServiceCtx<'_> {
    /// An error about `field` of this service, at `span`.
    pub(crate) fn error(
        &self,
        span: Range<usize>,
        field: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        self.at.error(
            Some(span),
            key(&format!("{}.{field}", self.prefix)),
            message,
        )
    }

    /// Says that `field`, at `span`, takes no effect as written, and why.
    pub(crate) fn warn(&self, span: Range<usize>, field: &str, message: impl Into<String>) {
        let warning = self.error(span, field, message);
        self.warnings.borrow_mut().push(warning);
    }

    /// Whether any of its listeners is `ssl:`.
    pub(crate) fn has_tls(&self) -> bool {
        self.listen
            .iter()
            .any(|(endpoint, _)| endpoint.starts_with("ssl:"))
    }

    /// Rejects kind-specific keys other than `allowed`.
    pub(crate) fn only_keys(&self, allowed: &[&str]) -> Result<(), ConfigError> {
        let kind = self.raw.kind.get_ref();
        match self
            .raw
            .extra_keys()
            .into_iter()
            .find(|(k, _)| !allowed.contains(k))
        {
            Some((k, span)) => {
                Err(self.error(span, k, format!("`{k}` is not a setting of kind {kind:?}")))
            }
            None => Ok(()),
        }
    }

    /// Refuses UDP endpoints in `listen`: `what` (such as "a tcp-proxy") serves streams.
    pub(crate) fn stream_only(&self, what: &str) -> Result<(), ConfigError> {
        match self
            .listen
            .iter()
            .find(|(endpoint, _)| Self::is_udp(endpoint))
        {
            Some((endpoint, span)) => Err(self.error(
                span.clone(),
                "listen",
                format!("{endpoint:?}: {what} listens on stream endpoints (tcp:, unix:, ssl:)"),
            )),
            None => Ok(()),
        }
    }

    /// A duration key of this service, `default` when absent; see [`duration`].
    pub(crate) fn duration(
        &self,
        field: &str,
        value: Option<&Spanned<String>>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        duration(self.at, &format!("{}.{field}", self.prefix), value, default)
    }

    /// A client endpoint string of this service (`upstream`), checked as connecting
    /// would check it: it parses, and the TLS files it names load.
    pub(crate) fn client_endpoint(
        &self,
        field: &str,
        value: &Spanned<String>,
    ) -> Result<ClientEndpoint, ConfigError> {
        let endpoint = value.get_ref();
        let parsed: ClientEndpoint =
            endpoint
                .parse()
                .map_err(|e: weft::endpoint::EndpointError| {
                    let hint = written_as_listener(endpoint).unwrap_or_default();
                    self.error(value.span(), field, format!("{e}{hint}"))
                })?;
        preflight::check_client(endpoint, &parsed)
            .map_err(|message| self.error(value.span(), field, message))?;
        Ok(parsed)
    }

    /// The service's own listener that a connection to (or datagram for) `target` would
    /// reach ([`loops::reaches`](super::loops::reaches)).
    pub(crate) fn own_listener(&self, target: &super::loops::Target) -> Option<&str> {
        self.listen
            .iter()
            .map(|(endpoint, _)| endpoint.as_str())
            .find(|endpoint| super::loops::reaches(target, endpoint))
    }

    /// Whether an endpoint is UDP.
    pub(crate) fn is_udp(endpoint: &str) -> bool {
        matches!(
            endpoint.parse::<ServerEndpoint>(),
            Ok(ServerEndpoint::Udp { .. })
        )
    }
}

/// For a client endpoint written as a listener is (`tcp:5432:interface=10.0.0.5`), how to
/// write it: a client names the host to connect to (`tcp:10.0.0.5:5432`).
fn written_as_listener(endpoint: &str) -> Option<String> {
    let (scheme, addr) = match endpoint.parse::<ServerEndpoint>().ok()? {
        ServerEndpoint::Tcp { addr, .. } => ("tcp", addr),
        ServerEndpoint::Ssl { addr, .. } => ("ssl", addr),
        _ => return None,
    };
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
        ip if ip.is_unspecified() => r"\:\:1".to_owned(),
        std::net::IpAddr::V6(v6) => v6.to_string().replace(':', r"\:"),
        ip => ip.to_string(),
    };
    let suggested = format!("{scheme}:{host}:{}", addr.port());
    Some(format!(
        "; that is how a listener is written: a client endpoint names the host to connect \
         to, as {suggested:?}"
    ))
}

pub(super) fn key(k: &str) -> Option<String> {
    Some(k.to_owned())
}

/// `[store] path`: a file (created if absent) in a directory that exists; the default,
/// `weft.db` in the working directory, is checked the same way (`run` opens it alike).
fn store_path(at: &Locator<'_>, value: Option<&Spanned<String>>) -> Result<PathBuf, ConfigError> {
    let (text, span) = match value {
        Some(value) => (value.get_ref().as_str(), Some(value.span())),
        None => ("weft.db", None),
    };
    let err = |message: String| {
        let message = match value {
            Some(_) => message,
            None => format!(
                "{message} (the default history file; `[store] path` names another, or `url` \
                 a database)"
            ),
        };
        at.error(span.clone(), key("store.path"), message)
    };
    let path = PathBuf::from(text);
    if text.trim().is_empty() {
        return Err(err("must not be empty".into()));
    }
    let dir = preflight::directory_of(&path);
    if !dir.is_dir() {
        return Err(err(format!(
            "the directory {} does not exist (the history file is created, its directory is \
             not; relative paths start at the working directory)",
            dir.display()
        )));
    }
    if path.is_dir() {
        return Err(err(format!(
            "{} is a directory; name the history file, such as \"weft.db\"",
            path.display()
        )));
    }
    // The history file and its lock beside it (`PATH.lock`) are created there, and a
    // file that is there must be one: a FIFO would hang whoever opens it to read.
    for file in [path.clone(), weft_store::Store::lock_path(&path)] {
        if let Ok(meta) = std::fs::metadata(&file)
            && !meta.is_file()
        {
            return Err(err(format!("{} is not a regular file", file.display())));
        }
    }
    let lock = weft_store::Store::lock_path(&path);
    if let Err(e) = preflight::can_make_in_unless(dir, &[&path, &lock]) {
        return Err(err(format!(
            "cannot write in {} ({e}): the history file and its lock are made there",
            dir.display(),
        )));
    }
    preflight::link_target(&path, "the history file").map_err(err)?;
    weft_store::Store::check_one_name(&path).map_err(|e| err(e.to_string()))?;
    // An existing file is opened for writing at run, and must be a SQLite database.
    if path.exists() {
        use std::io::Read;
        let mut header = Vec::with_capacity(16);
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .and_then(|file| file.take(16).read_to_end(&mut header))
            .map_err(|e| err(format!("cannot open {}: {e}", path.display())))?;
        if !header.is_empty() && header != b"SQLite format 3\0" {
            return Err(err(format!(
                "{} exists and is not a SQLite database; name another file",
                path.display()
            )));
        }
    }
    Ok(path)
}

/// Every duration key: `default` when absent; otherwise longer than zero and at most
/// [`MAX_DURATION`], so that adding it to the clock cannot overflow.
pub(crate) fn duration(
    at: &Locator<'_>,
    name: &str,
    value: Option<&Spanned<String>>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    let (text, span) = (value.get_ref().as_str(), Some(value.span()));
    let (floor, because) = floor(name);
    match parse_duration(text) {
        Ok(d) if d.is_zero() => Err(at.error(span, key(name), "must be longer than zero")),
        Ok(d) if d < floor => Err(at.error(
            span,
            key(name),
            format!(
                "{text:?} is too short: at least {}{because}",
                humantime::format_duration(floor)
            ),
        )),
        Ok(d) if d > MAX_DURATION => Err(at.error(
            span,
            key(name),
            format!(
                "{text:?} is too long: at most {:?}",
                humantime::format_duration(MAX_DURATION).to_string()
            ),
        )),
        Ok(d) => Ok(d),
        Err(e) => Err(at.error(
            span,
            key(name),
            format!("{text:?} is not a duration ({e}); write it like \"5s\", \"100ms\" or \"24h\""),
        )),
    }
}

/// A duration as the configuration writes one: humantime's (`"5s"`, `"1h 30m"`,
/// `"100ms"`), without spaces around it, and each unit once: `"1h1h"`, which humantime
/// reads as two hours, is more likely a slip than a sum.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.trim() != text {
        return Err("spaces around it".into());
    }
    // Each number with its unit: humantime reads "3 500ms" as 3500 ms and "5 s" as 5 s,
    // where a number alone, its unit left off or split away, says nothing of what it
    // counts.
    let unit_less = |w: &&str| {
        !w.starts_with(|c: char| c.is_ascii_digit()) || w.ends_with(|c: char| c.is_ascii_digit())
    };
    if text.contains(char::is_whitespace)
        && let Some(word) = text.split_whitespace().find(unit_less)
    {
        return Err(format!("{word:?} is not a number with its unit"));
    }
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    // Each unit by what one of it lasts, so that "1h 2hours" repeats one too.
    let mut seen: Vec<Duration> = Vec::new();
    for unit in text
        .split(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
        .filter(|u| !u.is_empty())
    {
        let one = humantime::parse_duration(&format!("1{unit}")).map_err(|e| e.to_string())?;
        if seen.contains(&one) {
            return Err(format!("the unit {unit:?} comes twice"));
        }
        seen.push(one);
    }
    // humantime reads a bare "0" as no time; every other number needs a unit, and so
    // does this one (`0s`): a number alone says nothing of what it counts.
    if seen.is_empty() {
        return Err(format!(
            "{text:?} has no unit; write it with one, such as \"{text}s\""
        ));
    }
    Ok(duration)
}

/// The shortest value the duration key `name` takes (by its last part: `idle_timeout`,
/// `store.retention`), with why: below it the setting would leave what it times useless
/// (every connection cut before its client could speak, every callback reported as slow,
/// history pruned as it is written), so such a value is taken for a slip of the unit.
fn floor(name: &str) -> (Duration, &'static str) {
    const MS: Duration = Duration::from_millis(1);
    let leaf = name.rsplit('.').next().unwrap_or(name);
    match leaf {
        "idle_timeout" | "request_timeout" => (
            100 * MS,
            ": a client would be cut off before it could be served",
        ),
        "stall_after" => (10 * MS, ": every chain would be reported as stalled"),
        // A forwarding DNS service's, and a proxy route's, wait on an upstream.
        "timeout" | "upstream_timeout" | "upstream_connect_timeout" => (
            10 * MS,
            ": an upstream's answer would be given up before it could come",
        ),
        "retention" => (
            Duration::from_secs(60),
            ": history would be pruned as it is written",
        ),
        // `max-age` counts whole seconds: less would be 0, which turns HSTS off.
        "hsts_max_age" => (Duration::from_secs(1), ": max-age counts whole seconds"),
        _ => (MS, ""),
    }
}

/// `listen` as a list of endpoint strings that parse, each with its span.
/// An endpoint error as the file needs it: an endpoint string's escaped colons (`\:`, in
/// an IPv6 address) are written `\\:` inside a TOML string in double quotes.
fn in_toml(message: String) -> String {
    match message.contains("\\:") {
        true => format!(
            "{message} (inside double quotes each backslash is written twice, \\\\:, or \
             the string goes in single quotes)"
        ),
        false => message,
    }
}

fn endpoints(
    at: &Locator<'_>,
    prefix: &str,
    listen: &Spanned<toml::Value>,
) -> Result<Vec<(String, Range<usize>)>, ConfigError> {
    let k = key(&format!("{prefix}.listen"));
    let list = at.strings(
        &format!("{prefix}.listen"),
        listen,
        ("an endpoint string", "a list of them"),
    )?;
    if list.is_empty() {
        return Err(at.error(Some(listen.span()), k, "needs at least one endpoint"));
    }
    list.into_iter()
        .map(|(e, span)| {
            match e.parse::<ServerEndpoint>() {
                Ok(_) => Ok((e, span)),
                Err(err) => {
                    // In single quotes a backslash is itself already.
                    let literal = at
                        .text
                        .get(span.clone())
                        .is_some_and(|t| t.starts_with('\''));
                    let message = match literal {
                        true => err.to_string(),
                        false => in_toml(err.to_string()),
                    };
                    Err(at.error(Some(span), k.clone(), message))
                }
            }
        })
        .collect()
}
