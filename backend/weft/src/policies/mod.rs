//! Policies (twisted.protocols.policies): idle timeouts, connection limits, throttling,
//! rates per client prefix, and address blocks for access lists.
//!
//! Each wraps a protocol or a factory, so a service opts in without changing its code.
//! All timing goes through the thread's clock, so tests drive them with a fake clock.

mod limits;
mod prefix;
mod process;
mod rate;
mod throttle;
mod timeout;

pub use limits::{
    ConnectionLimits, Limit, PeerKey, PeerLimit, PeerSlot, PerPeer, Slot, Tally, Total, TotalLimit,
    TotalSlot,
};
pub use prefix::{Prefix, PrefixError};
pub(crate) use process::ProcessSlot;
pub use process::{
    process_connection_limit, process_connections_open, set_process_connection_limit,
};
pub use rate::{PrefixRates, RateSettings, Taken};
pub use throttle::Throttled;
pub use timeout::IdleTimeout;
