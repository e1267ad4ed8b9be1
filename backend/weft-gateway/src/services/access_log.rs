//! The `access_log` key of http services: the access log in Combined Log Format appended
//! to a file, off the reactor thread, reopened on SIGUSR1 for logrotate
//! ([`weft_web::AccessLogFile`]).
//!
//! Checked before anything runs, like every key: its directory exists and takes a new file
//! (and, for a link to a file not there yet, the directory the link leads into), it is not
//! a directory, and an existing file opens for appending. Lines the file could not take
//! are counted in `weft_http_access_log_dropped_total{service,reason}` (reason
//! `queue_full`, `write` or `closed`), at zero from the start
//! ([`weft_web::AccessLogLosses`]).

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use weft::{Phase, Reactor};
use weft_web::AccessLogFiles;

use crate::config::ConfigError;
use crate::config::preflight::directory_of;
use crate::config::validate::ServiceCtx;

/// The `access_log` path of a service, if it has one.
pub(crate) fn validate(ctx: &ServiceCtx<'_>) -> Result<Option<PathBuf>, ConfigError> {
    let Some(value) = &ctx.raw.access_log else {
        return Ok(None);
    };
    let err = |message: String| ctx.error(value.span(), "access_log", message);
    if value.get_ref().trim().is_empty() {
        return Err(err(
            "must not be empty; remove it to log requests through the process log".into(),
        ));
    }
    let path = PathBuf::from(value.get_ref());
    let dir = directory_of(&path);
    if !dir.is_dir() {
        return Err(err(format!(
            "the directory {} does not exist (the log file is created, its directory is not; \
             relative paths start at the working directory)",
            dir.display()
        )));
    }
    if path.is_dir() {
        return Err(err(format!(
            "{} is a directory; name the log file, such as \"access.log\"",
            path.display()
        )));
    }
    crate::config::preflight::link_target(&path, "the log file").map_err(err)?;
    let link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
    if !path.exists() && !link {
        // Made at start: the directory must take a new file.
        crate::config::preflight::can_make_in(dir).map_err(|e| {
            err(format!(
                "cannot create {} in {}: {e}",
                path.display(),
                dir.display()
            ))
        })?;
    }
    if path.exists() {
        // Non-blocking, so a FIFO nobody reads fails here rather than hanging the check.
        OpenOptions::new()
            .append(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(&path)
            .map_err(|e| err(format!("cannot open {} for appending: {e}", path.display())))?;
    }
    Ok(Some(path))
}

/// Reopens every access log file on SIGUSR1 (what logrotate's `postrotate` sends), until
/// the reactor shuts down. SIGUSR1 no longer ends the process from here on, with or
/// without files.
pub(crate) fn reopen_on_sigusr1(reactor: &Reactor, files: AccessLogFiles) {
    let stop = CancellationToken::new();
    let stopping = stop.clone();
    reactor.add_shutdown_hook(Phase::Before, move || stopping.cancel());
    // It waits for SIGUSR1 for as long as the gateway runs: not a stall.
    reactor.spawn(weft::tasks::awaiting_outside_events(async move {
        let mut usr1 = match signal(SignalKind::user_defined1()) {
            Ok(usr1) => usr1,
            Err(error) => {
                tracing::warn!(%error, "cannot handle SIGUSR1: access logs are not reopened");
                return;
            }
        };
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                got = usr1.recv() => {
                    if got.is_none() {
                        return;
                    }
                    let n = files.reopen();
                    tracing::info!(files = n, "SIGUSR1: reopening {n} access log file(s)");
                }
            }
        }
    }));
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};
    use crate::services::ServiceKind;

    /// A service whose root is `dir`'s `site` (the log is not served from it).
    fn parse(dir: &std::path::Path, value: &str) -> Result<Config, ConfigError> {
        let site = dir.join("site");
        std::fs::create_dir_all(&site).unwrap();
        let text = format!(
            "[[service]]\nname = \"web\"\nkind = \"http\"\nlisten = \"tcp:8080\"\nroot = {:?}\n\
             access_log = {value:?}\n",
            site.display().to_string()
        );
        Config::parse("weft.toml", &text)
    }

    #[test]
    fn the_access_log_is_checked_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let c = parse(dir.path(), log.to_str().unwrap()).unwrap();
        match &c.services[0].kind {
            ServiceKind::Http(h) => assert_eq!(h.access_log.as_deref(), Some(log.as_path())),
            other => panic!("{other:?}"),
        }
        assert!(!log.exists(), "checking creates nothing");

        for (value, says) in [
            ("", "must not be empty"),
            ("/surely/not/a/dir/access.log", "does not exist"),
            (dir.path().to_str().unwrap(), "is a directory"),
        ] {
            let e = parse(dir.path(), value).unwrap_err();
            assert_eq!(
                (e.line, e.key.as_deref()),
                (Some(6), Some("service[0].access_log")),
                "{e}"
            );
            assert!(e.message.contains(says), "{value}: {e}");
        }

        let e = Config::parse(
            "weft.toml",
            "[[service]]\nname = \"e\"\nkind = \"echo\"\nlisten = \"tcp:1\"\naccess_log = \"a.log\"\n",
        )
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("service[0].access_log"), "{e}");
        assert!(e.message.contains("not a setting of kind"), "{e}");
    }

    #[test]
    fn an_existing_file_must_open_for_appending() {
        let dir = tempfile::tempdir().unwrap();
        // A FIFO nobody reads cannot be opened for writing, by root either.
        let fifo = dir.path().join("access.log");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let e = parse(dir.path(), fifo.to_str().unwrap()).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("service[0].access_log"), "{e}");
        let says = format!("cannot open {} for appending", fifo.display());
        assert!(e.message.contains(&says), "{e}");
    }
}
