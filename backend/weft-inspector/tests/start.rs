//! What `Inspector::start` refuses before anything runs.

use weft::Reactor;
use weft_inspector::{Inspector, InspectorConfig, InspectorError};

fn config(dashboard: &str, token: Option<&str>) -> InspectorConfig {
    let mut config = InspectorConfig::default();
    config.store = None;
    config.dashboard = Some(dashboard.to_owned());
    config.token = token.map(str::to_owned);
    config
}

#[test]
fn a_dashboard_reachable_from_other_machines_needs_a_token() {
    let reactor = Reactor::new().unwrap();
    let err = Inspector::start(&reactor, config("tcp:0", None)).unwrap_err();
    assert!(
        matches!(&err, InspectorError::NeedsToken(endpoint) if endpoint == "tcp:0"),
        "{err:?}"
    );
    assert!(err.to_string().contains("token"), "{err}");
    let err = Inspector::start(&reactor, config("tcp:0:interface=0.0.0.0", Some(" "))).unwrap_err();
    assert!(matches!(err, InspectorError::NeedsToken(_)), "{err:?}");
    let err =
        Inspector::start(&reactor, config("tcp:0:interface=127.0.0.1", Some("short"))).unwrap_err();
    assert!(matches!(err, InspectorError::BadToken(_)), "{err:?}");
    assert!(err.to_string().contains("5 characters long"), "{err}");

    let inspector =
        Inspector::start(&reactor, config("tcp:0", Some("t0k-0123456789abcdef"))).unwrap();
    let addr = inspector.dashboard_addr().expect("the dashboard serves");
    assert!(addr.ip().is_unspecified() && addr.port() != 0, "{addr}");
    inspector.join();
}

#[test]
fn on_loopback_a_dashboard_needs_no_token() {
    let reactor = Reactor::new().unwrap();
    let inspector = Inspector::start(&reactor, config("tcp:0:interface=127.0.0.1", None)).unwrap();
    let addr = inspector.dashboard_addr().expect("the dashboard serves");
    assert!(addr.ip().is_loopback(), "{addr}");
    inspector.join();
}
