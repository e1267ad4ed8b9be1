//! The errors a DNS service reports to whoever configures it.

use std::path::PathBuf;

/// A zone file that cannot be served, located in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
#[non_exhaustive]
pub struct ZoneError {
    /// The zone file, as configured.
    pub file: PathBuf,
    /// 1-based line of the entry at fault (0 when the file as a whole is at fault, such
    /// as a missing SOA or a file that cannot be read).
    pub line: usize,
    /// What is wrong and, where it helps, what to do.
    pub message: String,
}

/// Why a DNS service could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NamesError {
    /// A zone file is invalid.
    #[error(transparent)]
    Zone(#[from] ZoneError),
    /// Two zone files claim the same origin.
    #[error("zone {origin} is defined twice: in {} and in {}", first.display(), second.display())]
    DuplicateZone {
        /// The origin both files declare.
        origin: String,
        /// The first file.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },
    /// A listener or the upstream socket could not be opened.
    #[error(transparent)]
    Listen(#[from] weft::ListenError),
    /// A metric family could not be registered.
    #[error("registering the DNS metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}
