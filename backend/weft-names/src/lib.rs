//! DNS service for weft (twisted.names): authoritative zones, a forwarding cache, UDP and TCP.

pub mod cache;
pub mod error;
pub mod forward;
pub mod metrics;
pub mod server;
pub mod transport;
pub mod wire;
pub mod zone;

pub use error::{NamesError, ZoneError};
pub use forward::UpstreamLink;
pub use metrics::{DnsMetrics, ServiceMetrics};
pub use server::{DnsConfig, DnsServer, Outcome, Reply, Via};
pub use transport::{DnsTcp, DnsUdp, Int16StringReceiver, listen, send_int16_string};
pub use zone::{Catalog, Zone, ZoneAnswer};
