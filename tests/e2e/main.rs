//! End-to-end: the real `weft` binary on free loopback ports, driven by real clients
//! (std sockets, curl, SQLite), stopped with real signals.

mod support;

mod browser;
mod chrome;

mod check;
mod dashboard;
mod dns;
mod faults;
mod gateway;
mod http;
mod live;
mod load;
