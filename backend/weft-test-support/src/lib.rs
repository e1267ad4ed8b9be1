//! What weft's test suites share, written once: a reactor on its own thread, waiting for
//! a condition instead of sleeping, free loopback ports, and echo protocols.
//!
//! Every crate takes this as a dev-dependency only; nothing that ships depends on it.
//!
//! # Layout
//!
//! - [`wait`]: [`eventually`] polls a condition (a `bool`, or an `Option` whose value it
//!   hands back) until it holds or a deadline passes; [`eventually_async`] does the same
//!   inside a tokio runtime, and [`assert_eventually!`] takes a message with format
//!   arguments; [`wait_for`] polls slowly, for conditions that run a process each time.
//! - [`reactor`]: [`spawn_reactor`] runs a reactor on a background thread for a test on
//!   the main one; [`run_with_client`] runs it on this thread while a client runs on
//!   another; [`open_ids`] asks a running reactor which connections it holds.
//! - [`net`]: [`free_port`] and a blocking [`connect`] with a read timeout.
//! - [`protocols`]: [`Echo`] and [`UdpEcho`], the servers most tests talk to.
//! - [`logs`]: [`Logs`], what a test's code logged, as text.

pub mod logs;
pub mod net;
pub mod postgres;
pub mod protocols;
pub mod reactor;
pub mod wait;

pub use logs::Logs;
pub use net::{connect, free_port};
pub use protocols::{Echo, UdpEcho};
pub use reactor::{Running, open_ids, run_with_client, spawn_reactor, spawn_reactor_with};
pub use wait::{Ready, eventually, eventually_async, poll_until, wait_for};
