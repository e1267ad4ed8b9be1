//! A service's series are on `/metrics` from the moment it listens, at zero, so `rate()`
//! sees its first connection and an alert on their absence can be written.

use weft::{Reactor, factory};
use weft_telemetry::{Hub, HubConfig};
use weft_test_support::{Echo, UdpEcho};

#[test]
fn a_listening_service_has_its_connection_series_at_zero() {
    let reactor = Reactor::new().unwrap();
    let hub = Hub::new(HubConfig::default()).unwrap();
    hub.install(&reactor);
    reactor
        .listen_as("echo", "tcp:0:interface=127.0.0.1", factory(|| Echo))
        .unwrap();
    reactor
        .listen_udp("echo", "udp:0:interface=127.0.0.1", UdpEcho)
        .unwrap();
    let text = hub.encode_metrics();
    let has = |line: &str| {
        assert!(text.lines().any(|l| l == line), "{line} missing\n{text}");
    };
    let tcp = r#"service="echo",transport="tcp""#;
    has(&format!("weft_connections_opened_total{{{tcp}}} 0"));
    has(&format!("weft_connections_active{{{tcp}}} 0"));
    has(&format!("weft_received_bytes_total{{{tcp}}} 0"));
    has(&format!("weft_sent_bytes_total{{{tcp}}} 0"));
    for reason in weft::CloseKind::ALL {
        has(&format!(
            "weft_connections_closed_total{{reason=\"{reason}\",{tcp}}} 0"
        ));
    }
    has(r#"weft_slow_callbacks_total{service="echo"} 0"#);
    // The UDP endpoint is itself open; it closes only with the reactor.
    let udp = r#"service="echo",transport="udp""#;
    has(&format!("weft_connections_opened_total{{{udp}}} 1"));
    has(&format!("weft_received_bytes_total{{{udp}}} 0"));
    assert!(
        !text.contains(&format!("reason=\"reset\",{udp}")),
        "no close reasons for a UDP endpoint\n{text}"
    );
}
