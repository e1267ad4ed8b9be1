//! End-to-end: the real `weft` binary on free loopback ports, driven by real clients
//! (std sockets, curl, SQLite), stopped with real signals.

mod support;

pub(crate) use weft_test_support::assert_eventually;

mod browser;
mod chrome;

mod check;
mod dashboard;
mod dashboard_conns;
mod deadlock;
mod demo;
mod deploy;
mod dns;
mod dns_abuse;
mod dns_answers;
mod dns_auth;
mod dns_dnssec;
mod dns_ede;
mod dns_edns;
mod dns_floods;
mod dns_forward;
mod dns_kinds;
mod dns_nsd;
mod dns_reload;
mod dns_rules;
mod dns_transfer;
mod dns_tsig;
mod dns_view;
mod exemplars;
mod faults;
mod fleet;
mod gateway;
mod history;
mod http;
mod http2;
mod http2_bodies;
mod http2_progress;
mod http_abuse;
mod http_chains;
mod http_files;
mod http_framing;
mod http_peers;
mod http_request_bodies;
mod http_route_cache;
mod http_rules;
mod http_shutdown;
mod http_tls;
mod http_upgrade;
mod http_upstreams;
mod http_view;
mod limits;
mod live;
mod load;
mod logs;
mod metrics;
mod notify;
mod otlp;
mod proxy;
mod proxy_steps;
mod reactors;
mod ready;
mod reload;
mod reload_storm;
mod systemd;
mod tour;
