//! The process log on stderr: text for people, or one JSON object per line for log
//! shippers (`[log] format`, `--log-format`). `RUST_LOG` chooses what is logged either
//! way (default `info`).
//!
//! In JSON an event's fields are keys of its object beside `timestamp`, `level`, `target`
//! and `message`, so `{"level":"INFO","target":"weft_web::access","status":200,...}` can be
//! filtered on without parsing a message.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// The crates whose own warnings are about what a peer sent, one line per connection or
/// datagram a flood makes, and the target of those warnings: h2's about a peer's frames
/// (too many resets, say), anywhere in the crate; hickory-proto's about a message's EDNS
/// options (its other warnings, about what weft encodes, stay). The services report and
/// count each such peer themselves, with a log budget.
const PEER_NOISE: [(&str, &str); 2] = [
    ("h2", "h2"),
    ("hickory_proto", "hickory_proto::rr::rdata::opt"),
];

/// The filter of `rust_log` (`info` without one), with the warnings of the targets in
/// [`PEER_NOISE`] left out unless it names their crate.
fn filter(rust_log: Option<&str>) -> EnvFilter {
    let text = rust_log.unwrap_or("info");
    let mut filter = EnvFilter::try_new(text).unwrap_or_else(|_| EnvFilter::new("info"));
    for (krate, target) in PEER_NOISE {
        let named = text
            .split(',')
            .any(|d| d.trim().split(['=', '[', ':']).next() == Some(krate));
        if !named {
            let directive = format!("{target}=error")
                .parse()
                .expect("a valid directive");
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// How [`init`] set the process log up, once it has.
static INSTALLED: std::sync::OnceLock<Installed> = std::sync::OnceLock::new();

/// How the process log was set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Installed {
    /// The format lines are written in.
    pub format: LogFormat,
    /// `--log-format` chose it: the file's `[log]` has no say until the flag is dropped.
    pub by_flag: bool,
}

/// Says why the process cannot go on, as the last thing it logs: in a JSON log as a JSON
/// line (level `ERROR`, target `weft`) like every other, so a log shipper parses it too;
/// otherwise as a plain `weft: ...` line. `requested` is the format asked for on the
/// command line, used when the failure came before the log was set up (reading the
/// configuration that says how to log).
pub fn fatal(message: &str, requested: Option<LogFormat>) {
    let format = match INSTALLED.get() {
        Some(installed) => installed.format,
        None if requested == Some(LogFormat::Json) => {
            init(requested, LogFormat::Json);
            LogFormat::Json
        }
        None => LogFormat::Text,
    };
    match format {
        LogFormat::Json => tracing::error!(target: "weft", "{message}"),
        LogFormat::Text => {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "weft: {message}");
        }
    }
}

/// Why `error` happened, in one line: its message, then each cause the messages before
/// it do not already give (`weft::defer::append_causes`).
pub fn reason(error: &anyhow::Error) -> String {
    let mut out = error.to_string();
    weft::defer::append_causes(&mut out, error.source(), ": ");
    out
}

/// How the process log was set up, once [`init`] has: the configuration's `[log]
/// format`, or `--log-format`, which overrides it.
pub fn installed() -> Option<Installed> {
    INSTALLED.get().copied()
}

/// Installs the process's log subscriber, in the format `flag` (`--log-format`) asks
/// for, or else `file`'s. Call it once, before anything logs.
pub fn init(flag: Option<LogFormat>, file: LogFormat) {
    let format = flag.unwrap_or(file);
    let installed = Installed {
        format,
        by_flag: flag.is_some(),
    };
    if INSTALLED.set(installed).is_err() {
        return;
    }
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A log that cannot be written (stderr on a full disk) loses its lines, never the
        // process: tracing's own report of the failure would panic on the same stderr.
        .log_internal_errors(false);
    match format {
        // Colours only for a terminal: a file or journald would get escape codes.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().flatten_event(true).with_ansi(false).init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_gives_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot listen on {endpoint}: {source}")]
        struct Bind {
            endpoint: &'static str,
            source: std::io::Error,
        }
        let bind = Bind {
            endpoint: "tcp:80",
            source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
        };
        let error = anyhow::Error::new(bind).context("service \"web\"");
        assert_eq!(
            reason(&error),
            "service \"web\": cannot listen on tcp:80: address in use"
        );
        // A cause no message names is given after them.
        let error = anyhow::Error::new(std::io::Error::other("disk full")).context("saving");
        assert_eq!(reason(&error), "saving: disk full");
    }

    #[test]
    fn peer_noise_crates_warnings_are_left_out_unless_rust_log_names_them() {
        let quiet = |s: &str| filter(Some(s)).to_string();
        assert_eq!(
            filter(None).to_string(),
            "hickory_proto::rr::rdata::opt=error,h2=error,info"
        );
        assert_eq!(
            quiet("debug"),
            "hickory_proto::rr::rdata::opt=error,h2=error,debug"
        );
        assert_eq!(
            quiet("info,h2=debug"),
            "hickory_proto::rr::rdata::opt=error,h2=debug,info"
        );
        assert_eq!(
            quiet("warn,h2::proto=trace,hickory_proto::rr=warn"),
            "hickory_proto::rr=warn,h2::proto=trace,warn"
        );
        // Another crate whose name starts the same is no reason to let h2's through.
        assert_eq!(
            quiet("h2load=info"),
            "hickory_proto::rr::rdata::opt=error,h2load=info,h2=error"
        );
    }
}
