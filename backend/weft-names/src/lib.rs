//! DNS service for weft (twisted.names): authoritative zones, a forwarding cache, UDP and TCP.

pub mod error;
pub mod zone;

pub use error::{NamesError, ZoneError};
pub use zone::{Catalog, Zone, ZoneAnswer};
