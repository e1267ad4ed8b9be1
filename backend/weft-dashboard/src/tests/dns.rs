//! The DNS page and `/api/dns` over a DNS view whose every name is markup.

use std::sync::Arc;

use weft_telemetry::views::{
    Histogram, RecentRequest, RefreshSnapshot, ServiceSnapshot, ServiceView, Tally, TopKey,
    UpstreamSnapshot, ZoneSnapshot,
};

use super::*;

/// A DNS service whose query names, clients and upstream are markup.
struct Hostile;

impl ServiceView for Hostile {
    fn snapshot(&self) -> ServiceSnapshot {
        ServiceSnapshot {
            tallies: vec![
                Tally {
                    name: "qtype",
                    counts: vec![("A".into(), 2)],
                },
                Tally {
                    name: "rcode",
                    counts: vec![("NOERROR".into(), 2)],
                },
            ],
            counters: vec![("cache_hits", 1), ("cache_misses", 1)],
            latency: Some(Histogram {
                bounds: vec![0.001, 0.01],
                cumulative: vec![1, 2],
                count: 2,
                sum_seconds: 0.005,
            }),
            upstreams: vec![UpstreamSnapshot {
                name: format!("up {EVIL}"),
                url: "127.0.0.1:53".into(),
                requests: 1,
                timeouts: Some(0),
                ..UpstreamSnapshot::default()
            }],
            top: vec![TopKey {
                key: format!("{EVIL}.test."),
                count: 2,
            }],
            sampled: (2, 2),
            zones: vec![ZoneSnapshot {
                zone: format!("{EVIL}.test."),
                serial: 7,
                records: 3,
                signed: false,
                signatures_expire_ms: None,
                primaries: vec![format!("192.0.2.1:53 {EVIL}.")],
                served: false,
                refresh: Some(RefreshSnapshot {
                    checked_ms: Some(500),
                    outcome: Some(format!("failed: a record of {EVIL}.test. refused")),
                    failed: true,
                    next_check_ms: None,
                    expires_ms: None,
                }),
            }],
            recent: vec![RecentRequest {
                at_ms: 1000,
                client: "127.0.0.1:5000".into(),
                name: format!("{EVIL}.test."),
                kind: "A".into(),
                status: "NOERROR".into(),
                latency_ms: 0.05,
                source: "cache".into(),
            }],
            ..ServiceSnapshot::default()
        }
    }
}

fn with_views() -> DashboardState {
    let state = state();
    state
        .hub
        .views()
        .set(&format!("dns {EVIL}"), "dns", Arc::new(Hostile));
    state
}

#[tokio::test]
async fn the_dns_page_shows_each_service_with_every_name_escaped() {
    let a = get(router(with_views()), "/dns").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(!a.body.contains("<script>"), "{}", a.body);
    assert_eq!(
        a.body.matches("alert(").count(),
        8,
        "the service (attribute and heading), zone, its source and its last check, upstream, \
         top name and recent name, all shown as text: {}",
        a.body
    );
    assert!(a.body.contains(r#"href="/dns" aria-current="page""#));
    assert!(
        a.body.contains("not served (no copy yet, or it expired)"),
        "{}",
        a.body
    );
    assert!(a.body.contains("50%"), "the hit ratio: {}", a.body);
    assert!(
        a.body
            .contains(r#"<td class="refresh bad">failed: a record of"#),
        "a failed check flagged: {}",
        a.body
    );
    let empty = get(router(state()), "/dns").await;
    assert!(
        empty.body.contains("No DNS service runs."),
        "{}",
        empty.body
    );
}

#[tokio::test]
async fn api_dns_lists_rates_the_cache_upstreams_top_names_and_recent_queries() {
    let a = get(router(with_views()), "/api/dns").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let json = a.json();
    let dns = &json[0];
    assert_eq!(dns["service"], format!("dns {EVIL}"));
    assert_eq!(dns["queries"], 2);
    assert_eq!(dns["qtypes"][0]["name"], "A");
    assert_eq!(dns["cache"]["hit_ratio"], 0.5);
    assert!(dns["p99_ms"].as_f64().unwrap() <= 10.0, "{json:#}");
    assert_eq!(dns["upstreams"][0]["answers"], 1);
    assert_eq!(dns["top_names"][0]["key"], format!("{EVIL}.test."));
    assert_eq!(dns["recent"][0]["source"], "cache");
    assert_eq!(dns["recent"][0]["from_history"], false);
    assert_eq!(dns["zones"][0]["zone"], format!("{EVIL}.test."));
    assert_eq!(
        dns["zones"][0]["signatures_left_ms"],
        serde_json::Value::Null
    );
}

/// What the page says of a zone's signatures: none, how long they have, flagged within
/// three days (as `weft check` warns), or how long ago they expired.
#[test]
fn a_zone_s_signatures_are_said_from_now_and_flagged_near_their_end() {
    const DAY: i64 = 24 * 3600 * 1000;
    let now = 100 * DAY;
    let zone = |expire: Option<i64>| {
        crate::dns::ZoneFigures::of(
            ZoneSnapshot {
                zone: "example.test.".into(),
                serial: 1,
                records: 9,
                signed: expire.is_some(),
                signatures_expire_ms: expire,
                ..ZoneSnapshot::default()
            },
            now,
        )
    };
    let said = |z: &crate::dns::ZoneFigures| (z.signatures(), z.expiring);
    assert_eq!(said(&zone(None)), ("-".to_owned(), false));
    assert_eq!(
        said(&zone(Some(now + 30 * DAY))),
        ("in 30d 0h".to_owned(), false)
    );
    assert_eq!(
        said(&zone(Some(now + 3 * DAY))),
        ("in 3d 0h".to_owned(), false)
    );
    assert_eq!(
        said(&zone(Some(now + 3 * DAY - 1000))),
        ("in 2d 23h".to_owned(), true)
    );
    assert_eq!(
        said(&zone(Some(now - 2 * DAY))),
        ("expired 2d 0h ago".to_owned(), true)
    );
}

/// Where a zone comes from: a file, or its primaries, and a secondary zone not served
/// says so.
#[test]
fn a_zone_s_source_is_its_file_or_its_primaries_and_a_secondary_not_served_is_flagged() {
    let zone = |primaries: &[&str], served: bool| {
        let snapshot = ZoneSnapshot {
            zone: "example.test.".into(),
            primaries: primaries.iter().map(|p| (*p).to_owned()).collect(),
            served,
            ..ZoneSnapshot::default()
        };
        crate::dns::ZoneFigures::of(snapshot, 0).source()
    };
    assert_eq!(zone(&[], true), "file");
    assert_eq!(
        zone(&["192.0.2.1:53", "192.0.2.2:53 k."], true),
        "from 192.0.2.1:53, 192.0.2.2:53 k."
    );
    assert_eq!(
        zone(&["192.0.2.1:53"], false),
        "from 192.0.2.1:53: not served (no copy yet, or it expired)"
    );
}

/// A secondary zone's refresh: what its last check found and how long ago, when it is
/// checked next, and when its copy expires; a zone from a file has none.
#[test]
fn a_secondary_zone_s_refresh_says_its_last_check_the_next_and_its_expiry() {
    const S: i64 = 1000;
    let now = 1_000_000 * S;
    let zone = |primaries: &[&str], refresh: Option<RefreshSnapshot>| {
        let snapshot = ZoneSnapshot {
            zone: "example.test.".into(),
            primaries: primaries.iter().map(|p| (*p).to_owned()).collect(),
            served: true,
            refresh,
            ..ZoneSnapshot::default()
        };
        crate::dns::ZoneFigures::of(snapshot, now)
    };
    assert_eq!(zone(&[], None).refresh(), "-");
    let primary = ["192.0.2.1:53"];
    assert_eq!(
        zone(&primary, Some(RefreshSnapshot::default())).refresh(),
        "not checked yet"
    );
    let checked = zone(
        &primary,
        Some(RefreshSnapshot {
            checked_ms: Some(now - 12 * S),
            outcome: Some("IXFR from 192.0.2.1:53: 1 record changed".into()),
            failed: false,
            next_check_ms: Some(now + 7_140 * S),
            expires_ms: Some(now + 14 * 86_400 * S - 12 * S),
        }),
    );
    assert_eq!(
        checked.refresh(),
        "IXFR from 192.0.2.1:53: 1 record changed, 12.0s ago; next in 1h 59m; expires in 13d 23h"
    );
    assert!(!checked.check_failed);
    let failing = zone(
        &primary,
        Some(RefreshSnapshot {
            checked_ms: Some(now - 90 * S),
            outcome: Some("failed: 192.0.2.1:53: cannot connect".into()),
            failed: true,
            next_check_ms: Some(now - S),
            expires_ms: Some(now - 3_600 * S),
        }),
    );
    assert_eq!(
        failing.refresh(),
        "failed: 192.0.2.1:53: cannot connect, 1m 30s ago; checking now; expired 1h 0m ago"
    );
    assert!(failing.check_failed);
}
