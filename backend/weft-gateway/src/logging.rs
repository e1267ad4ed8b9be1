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

/// Installs the process's log subscriber. Call it once, before anything logs.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Colours only for a terminal: a file or journald would get escape codes.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().flatten_event(true).with_ansi(false).init(),
    }
}
