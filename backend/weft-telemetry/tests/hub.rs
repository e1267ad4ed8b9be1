//! The hub against a real reactor on real loopback sockets: what an operator scraping
//! `/metrics` sees after real traffic.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use weft::defer::{DeferredState, Detector};
use weft::observe::CloseKind;
use weft::{Protocol, Reactor, ReactorConfig, Transport, factory};
use weft_telemetry::{EventKind, Feed, Hub, HubConfig, TelemetryEvent};
use weft_test_support::{Echo, UdpEcho, eventually as wait_until, run_with_client};

/// Blocks the reactor in `data_received` for longer than the slow threshold.
struct Sleepy;

impl Protocol for Sleepy {
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        std::thread::sleep(Duration::from_millis(300));
        transport.write(data);
    }
}

/// The value of the sample `name` whose labels are exactly `labels`, from the text format.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<&str, &str> = labels.iter().copied().collect();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, got) = match series.split_once('{') {
                Some((m, rest)) => {
                    let body = rest.strip_suffix('}')?;
                    let got: BTreeMap<&str, &str> = body
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .filter_map(|p| {
                            let (k, v) = p.split_once('=')?;
                            Some((k, v.trim_matches('"')))
                        })
                        .collect();
                    (m, got)
                }
                None => (series, BTreeMap::new()),
            };
            (metric == name && got == want).then(|| value.parse().ok())?
        })
}

/// A hub on `reactor`, whose callbacks are slow past 100 ms (`Sleepy` takes 300): a
/// callback of the tests' own, delayed by a busy machine, must not read as slow.
fn hub_on(reactor: &Reactor) -> Arc<Hub> {
    reactor.set_thresholds(
        Duration::from_millis(100),
        ReactorConfig::DEFAULT_STALL_AFTER,
    );
    let hub = Hub::new(HubConfig::default()).unwrap();
    hub.install(reactor);
    hub
}

#[test]
fn tcp_traffic_is_counted_by_service_transport_and_reason() {
    let reactor = Reactor::new().unwrap();
    let hub = hub_on(&reactor);
    let port = reactor
        .listen_as("echo", "tcp:0:interface=127.0.0.1", factory(|| Echo))
        .unwrap();
    let addr = port.local_addr().unwrap();
    let h = hub.clone();
    run_with_client(&reactor, move || {
        for _ in 0..3 {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"hello world\n").unwrap();
            let mut buf = [0; 12];
            s.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"hello world\n");
        }
        // One connection stays open so its bytes come from the live registry.
        let mut open = TcpStream::connect(addr).unwrap();
        open.write_all(b"abcd").unwrap();
        let mut buf = [0; 4];
        open.read_exact(&mut buf).unwrap();
        let tcp = [("service", "echo"), ("transport", "tcp")];
        // A reply can arrive before the reactor thread has counted sending it.
        wait_until("three closes, one open, every send counted", || {
            h.open_connections() == 1
                && sample(&h.encode_metrics(), "weft_sent_bytes_total", &tcp) == Some(40.0)
        });
        let text = h.encode_metrics();
        assert_eq!(
            sample(&text, "weft_connections_opened_total", &tcp),
            Some(4.0)
        );
        assert_eq!(sample(&text, "weft_connections_active", &tcp), Some(1.0));
        assert_eq!(
            sample(
                &text,
                "weft_connections_closed_total",
                &[
                    ("service", "echo"),
                    ("transport", "tcp"),
                    ("reason", "peer_closed")
                ]
            ),
            Some(3.0),
            "{text}"
        );
        assert_eq!(sample(&text, "weft_received_bytes_total", &tcp), Some(40.0));
        assert_eq!(sample(&text, "weft_sent_bytes_total", &tcp), Some(40.0));
        let live = h.connections();
        assert_eq!(live.len(), 1);
        assert_eq!(
            (live[0].bytes_in, live[0].bytes_out, live[0].reads),
            (4, 4, 1)
        );
        assert_eq!(&*live[0].service, "echo");
        assert_eq!(live[0].peer, open.local_addr().unwrap().into());
        drop(open);
    });
    // Shutdown drained the last one: counters only ever grew.
    let text = hub.encode_metrics();
    let tcp = [("service", "echo"), ("transport", "tcp")];
    assert_eq!(sample(&text, "weft_connections_active", &tcp), Some(0.0));
    assert_eq!(sample(&text, "weft_received_bytes_total", &tcp), Some(40.0));
    assert!(hub.connections().is_empty());
}

#[test]
fn udp_datagrams_are_counted_on_the_endpoint() {
    let reactor = Reactor::new().unwrap();
    let hub = hub_on(&reactor);
    let port = reactor
        .listen_udp("echo", "udp:0:interface=127.0.0.1", UdpEcho)
        .unwrap();
    let addr = port.local_addr().unwrap();
    let h = hub.clone();
    run_with_client(&reactor, move || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        for _ in 0..5 {
            s.send_to(b"ping!", addr).unwrap();
            let mut buf = [0; 16];
            let (n, _) = s.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"ping!");
        }
        let udp = [("service", "echo"), ("transport", "udp")];
        // The reply can arrive before the reactor thread has counted sending it.
        wait_until("the fifth send counted", || {
            sample(&h.encode_metrics(), "weft_sent_bytes_total", &udp) == Some(25.0)
        });
        let text = h.encode_metrics();
        assert_eq!(sample(&text, "weft_connections_active", &udp), Some(1.0));
        assert_eq!(sample(&text, "weft_received_bytes_total", &udp), Some(25.0));
        let live = h.connections();
        assert_eq!((live[0].reads, live[0].writes), (5, 5));
    });
}

#[test]
fn refusals_errors_and_slow_callbacks_are_counted() {
    let reactor = Reactor::new().unwrap();
    let hub = hub_on(&reactor);
    struct Refuse;
    impl weft::Factory for Refuse {
        fn build_protocol(&self, _: &weft::Address) -> Option<Box<dyn Protocol>> {
            None
        }
    }
    let refuse = reactor
        .listen_as("closed", "tcp:0:interface=127.0.0.1", Refuse)
        .unwrap();
    let sleepy = reactor
        .listen_as("sleepy", "tcp:0:interface=127.0.0.1", factory(|| Sleepy))
        .unwrap();
    let small = reactor
        .listen_udp_with("tiny", "udp:0:interface=127.0.0.1", UdpEcho, 8)
        .unwrap();
    let (refuse, sleepy, small) = (
        refuse.local_addr().unwrap(),
        sleepy.local_addr().unwrap(),
        small.local_addr().unwrap(),
    );
    let h = hub.clone();
    run_with_client(&reactor, move || {
        let mut s = TcpStream::connect(refuse).unwrap();
        let mut buf = [0; 1];
        assert_eq!(
            s.read(&mut buf).unwrap_or(0),
            0,
            "refused connections are closed"
        );
        let mut s = TcpStream::connect(sleepy).unwrap();
        s.write_all(b"z").unwrap();
        s.read_exact(&mut buf).unwrap();
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        u.send_to(&[0; 100], small).unwrap();
        wait_until("all three counted", || {
            let text = h.encode_metrics();
            sample(
                &text,
                "weft_refused_total",
                &[("service", "closed"), ("reason", "factory")],
            ) == Some(1.0)
                && sample(&text, "weft_slow_callbacks_total", &[("service", "sleepy")]) >= Some(1.0)
                && sample(
                    &text,
                    "weft_errors_total",
                    &[("service", "tiny"), ("kind", "datagram_truncated")],
                ) == Some(1.0)
                && sample(&text, "weft_reactor_lag_seconds_count", &[("reactor", "0")]) >= Some(1.0)
        });
    });
}

/// Everything `feed` holds now.
fn drain(feed: &mut Feed) -> Vec<Arc<TelemetryEvent>> {
    let mut out = Vec::new();
    while feed.try_recv_many(&mut out, usize::MAX).unwrap() > 0 {}
    out
}

#[test]
fn feeds_get_every_event_in_order_without_drops() {
    let reactor = Reactor::new().unwrap();
    let hub = hub_on(&reactor).with_first_seq(1000);
    let mut feed = hub.subscribe("recorder");
    let port = reactor
        .listen_as("echo", "tcp:0:interface=127.0.0.1", factory(|| Echo))
        .unwrap();
    let addr = port.local_addr().unwrap();
    let h = hub.clone();
    run_with_client(&reactor, move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"x").unwrap();
        let mut buf = [0; 1];
        s.read_exact(&mut buf).unwrap();
        drop(s);
        wait_until("the close", || h.open_connections() == 0);
    });
    let all = drain(&mut feed);
    // Every event, numbered without a gap.
    let seqs: Vec<_> = all.iter().map(|e| e.seq).collect();
    let numbered: Vec<_> = (1000..).take(all.len()).collect();
    assert_eq!(seqs, numbered);
    // A detector's report (a callback a busy machine made slow) may come between.
    let events: Vec<_> = all
        .iter()
        .filter(|e| {
            e.kind.name().starts_with("listener_") || e.kind.name().starts_with("connection_")
        })
        .collect();
    let kinds: Vec<_> = events.iter().map(|e| e.kind.name()).collect();
    // The listener's stop may or may not be reported before `run` returns.
    assert_eq!(
        kinds[..3],
        ["listener_started", "connection_opened", "connection_closed"]
    );
    match &events[2].kind {
        EventKind::ConnectionClosed {
            connection, reason, ..
        } => {
            assert_eq!((connection.bytes_in, connection.bytes_out), (1, 1));
            assert_eq!(*reason, CloseKind::PeerClosed);
        }
        other => panic!("expected a close, got {other:?}"),
    }
    let json = serde_json::to_value(&**events[1]).unwrap();
    assert_eq!(json["type"], "connection_opened");
    assert_eq!(json["connection"]["service"], "echo");
    assert_eq!(
        sample(
            &hub.encode_metrics(),
            "weft_events_dropped_total",
            &[("consumer", "recorder")]
        ),
        Some(0.0)
    );
}

#[test]
fn a_lagging_reader_is_told_what_it_missed_and_it_is_counted() {
    let reactor = Reactor::new().unwrap();
    let mut config = HubConfig::default();
    config.bus_capacity = 2;
    let hub = Hub::new(config).unwrap();
    hub.install(&reactor);
    let mut feed = hub.subscribe("live");
    let port = reactor
        .listen_as("echo", "tcp:0:interface=127.0.0.1", factory(|| Echo))
        .unwrap();
    let addr = port.local_addr().unwrap();
    let h = hub.clone();
    run_with_client(&reactor, move || {
        for _ in 0..3 {
            drop(TcpStream::connect(addr).unwrap());
        }
        wait_until("six events", || {
            sample(
                &h.encode_metrics(),
                "weft_connections_closed_total",
                &[
                    ("service", "echo"),
                    ("transport", "tcp"),
                    ("reason", "peer_closed"),
                ],
            ) == Some(3.0)
        });
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        // A listener start, 3 opens, 3 closes (and perhaps a listener stop); room for 2.
        let Err(weft_telemetry::Missed(missed)) = feed.recv().await else {
            panic!("the reader should have fallen behind");
        };
        assert!(missed >= 5, "missed {missed}");
        assert!(feed.recv().await.unwrap().is_some());
        assert!(feed.recv().await.unwrap().is_some());
        let text = hub.encode_metrics();
        assert_eq!(
            sample(&text, "weft_events_dropped_total", &[("consumer", "live")]),
            Some(missed as f64)
        );
    });
}

#[test]
fn a_waiting_reader_wakes_for_events_from_the_reactor_thread() {
    let reactor = Reactor::new().unwrap();
    let hub = hub_on(&reactor);
    let mut feed = hub.subscribe("waiting");
    let port = reactor
        .listen_as("echo", "tcp:0:interface=127.0.0.1", factory(|| Echo))
        .unwrap();
    let addr = port.local_addr().unwrap();
    let reader = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut kinds = Vec::new();
            let mut batch = Vec::new();
            while kinds.len() < 3 {
                batch.clear();
                assert!(feed.recv_many(&mut batch, usize::MAX).await.unwrap() > 0);
                kinds.extend(batch.iter().map(|e| e.kind.name()));
            }
            (kinds, feed)
        })
    });
    run_with_client(&reactor, move || {
        drop(TcpStream::connect(addr).unwrap());
        wait_until("the reader to see the opening and the closing", || {
            reader.is_finished()
        });
        let (kinds, mut feed) = reader.join().unwrap();
        assert_eq!(
            kinds[..3],
            ["listener_started", "connection_opened", "connection_closed"]
        );
        // Taken: nothing more is kept for a reader that is up to date.
        assert_eq!(feed.try_recv_many(&mut Vec::new(), usize::MAX), Ok(0));
    });
}

#[test]
fn a_waiting_feed_ends_when_the_hub_is_gone() {
    let hub = Hub::new(HubConfig::default()).unwrap();
    let mut feed = hub.subscribe("orphan");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let ended = rt.block_on(async {
        let waiting = tokio::spawn(async move { feed.recv_many(&mut Vec::new(), 1).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(hub);
        tokio::time::timeout(Duration::from_secs(5), waiting).await
    });
    assert_eq!(ended.expect("the feed should end").unwrap(), Ok(0));
}

/// `promtool check metrics` on real output. Fails (never skips) without promtool:
/// `scripts/test` installs it (Debian package `prometheus`).
#[test]
fn metrics_after_traffic_pass_promtool() {
    let reactor = Reactor::new().unwrap();
    let hub = hub_on(&reactor);
    let tcp = reactor
        .listen_as("echo", "tcp:0:interface=127.0.0.1", factory(|| Echo))
        .unwrap();
    let udp = reactor
        .listen_udp("echo", "udp:0:interface=127.0.0.1", UdpEcho)
        .unwrap();
    let (tcp, udp) = (tcp.local_addr().unwrap(), udp.local_addr().unwrap());
    let h = hub.clone();
    run_with_client(&reactor, move || {
        let mut s = TcpStream::connect(tcp).unwrap();
        s.write_all(b"hi").unwrap();
        let mut buf = [0; 2];
        s.read_exact(&mut buf).unwrap();
        drop(s);
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        u.send_to(b"hi", udp).unwrap();
        wait_until("the close", || h.open_connections() == 1);
    });
    let text = hub.encode_metrics();
    for family in [
        "weft_connections_opened_total",
        "weft_connections_closed_total",
        "weft_connections_active",
        "weft_received_bytes_total",
        "weft_sent_bytes_total",
        "weft_reactor_lag_seconds",
        "weft_deferred_callback_duration_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{text}"
        );
    }
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool must be installed to run this test (apt-get install prometheus; scripts/test does it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool: {report}\n{text}"
    );
}

#[test]
fn deferred_chains_are_tracked_flagged_and_kept_when_they_end() {
    let reactor = Reactor::with_config(ReactorConfig {
        stall_after: Duration::from_secs(5),
        ..ReactorConfig::default()
    })
    .unwrap();
    let mut config = HubConfig::default();
    config.sample = 0.0;
    let hub = Hub::new(config).unwrap();
    hub.install(&reactor);
    let mut feed = hub.subscribe("recorder");
    let clock = weft::testing::Clock::fake();
    let _clock = clock.install();

    // A chain nobody fires: pending, then stalled once the threshold passes.
    let (resolver, waiting) = weft::defer::Deferred::<u32>::labeled("waits-for-upstream");
    let waiting = waiting.add_callback(|n| n + 1);
    let pending = hub.pending_deferreds();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].label.as_deref(), Some("waits-for-upstream"));
    assert!(
        pending[0].site.contains("tests/hub.rs"),
        "{}",
        pending[0].site
    );
    let text = hub.encode_metrics();
    assert_eq!(
        sample(&text, "weft_deferreds_pending", &[("service", "reactor")]),
        Some(1.0)
    );

    clock.advance(Duration::from_secs(6));
    weft::defer::scan_for_stalls();
    let text = hub.encode_metrics();
    assert_eq!(
        sample(&text, "weft_deferreds_stalled", &[("service", "reactor")]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "weft_deferred_detections_total",
            &[("service", "reactor"), ("detector", "stalled")]
        ),
        Some(1.0)
    );
    assert!(hub.pending_deferreds()[0].stalled);

    // Firing it ends the chain; flagged, so it is kept although sampling keeps nothing.
    resolver.callback(41);
    drop(waiting);
    let text = hub.encode_metrics();
    assert_eq!(
        sample(&text, "weft_deferreds_pending", &[("service", "reactor")]),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "weft_deferreds_stalled", &[("service", "reactor")]),
        Some(0.0)
    );

    // A successful chain nobody flagged is not kept at sample = 0.
    let ok = weft::defer::Deferred::succeed(1u8).add_callback(|n| n * 2);
    drop(ok);

    // A failure nobody handles is reported when the last handle goes.
    let failed = weft::defer::Deferred::<u8>::fail(weft::defer::Failure::msg("upstream refused"));
    drop(failed);

    let events = drain(&mut feed);
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.name()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "deferred_detected").count(),
        2,
        "stalled and unhandled: {kinds:?}"
    );
    let ended: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::DeferredEnded { deferred } => Some(deferred.clone()),
            _ => None,
        })
        .collect();
    assert!(
        ended
            .iter()
            .any(|d| d.label.as_deref() == Some("waits-for-upstream")
                && d.stalled
                && d.state == DeferredState::Succeeded
                && d.steps.len() == 1)
    );
    assert!(
        ended
            .iter()
            .all(|d| d.flagged() || d.state != DeferredState::Succeeded),
        "{ended:?}"
    );
    let unhandled = events.iter().find_map(|e| match &e.kind {
        EventKind::DeferredDetected {
            detector: Detector::Unhandled,
            deferred,
            detail,
        } => Some((deferred.clone(), detail.clone())),
        _ => None,
    });
    let (deferred, detail) = unhandled.expect("unhandled failure reported");
    assert!(detail.contains("upstream refused"), "{detail}");
    assert!(deferred.site.contains("tests/hub.rs"), "{}", deferred.site);
}

#[test]
fn a_chain_reported_late_is_as_old_as_its_creation_says() {
    use weft::defer::{Created, DeferredEvent, DeferredId, Site};
    use weft::observe::{Event, Observer};

    let hub = Hub::new(HubConfig::default()).unwrap();
    // Announced now, made two seconds ago (a chain the sampler passed over, held).
    let created = Created {
        id: DeferredId(7),
        label: Some("held"),
        site: Site(std::panic::Location::caller()),
        connection: None,
        parent: None,
        at: std::time::SystemTime::now() - Duration::from_secs(2),
        sampled: false,
    };
    hub.on_event(&Event::Deferred(&DeferredEvent::Created(created)));
    let listed = hub.deferred(7).expect("tracked");
    assert!(listed.age_ms >= 2_000, "age {} ms", listed.age_ms);
    assert!(listed.age_ms < 60_000, "age {} ms", listed.age_ms);
}

/// Pauses its own reading as it connects and never resumes: its connection's task waits
/// on nothing that will come (a stall of the protocol's own making).
struct Paused;

impl Protocol for Paused {
    fn connection_made(&mut self, transport: &Transport) {
        transport.pause_reading();
    }
    fn data_received(&mut self, _: &Transport, _: &[u8]) {}
}

#[test]
fn a_stalled_connection_task_is_counted_under_its_service() {
    let reactor = Reactor::new().unwrap();
    let hub = Hub::new(HubConfig::default()).unwrap();
    hub.install(&reactor);
    reactor.set_thresholds(Duration::from_millis(30), Duration::from_millis(200));
    let port = reactor
        .listen_as("paused", "tcp:0:interface=127.0.0.1", factory(|| Paused))
        .unwrap();
    let addr = port.local_addr().unwrap();
    let h = hub.clone();
    run_with_client(&reactor, move || {
        let client = TcpStream::connect(addr).unwrap();
        let stalled = [("service", "paused"), ("detector", "stalled")];
        wait_until("the connection's task is flagged stalled", || {
            sample(
                &h.encode_metrics(),
                "weft_deferred_detections_total",
                &stalled,
            ) == Some(1.0)
        });
        let text = h.encode_metrics();
        assert_eq!(
            sample(&text, "weft_deferreds_stalled", &[("service", "paused")]),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                "weft_deferred_detections_total",
                &[("service", "reactor"), ("detector", "stalled")]
            )
            .unwrap_or(0.0),
            0.0,
            "{text}"
        );
        let flagged = h.pending_deferreds();
        let task = flagged
            .iter()
            .find(|d| d.stalled)
            .expect("the stalled task");
        assert_eq!(task.service.as_deref(), Some("paused"));
        drop(client);
    });
}

/// A chain history wrote a row of while it was pending has its end published however it
/// ends, sampled or not: a chain pending past a history snapshot and then ending well
/// stayed `pending` in history for ever (until the next start called it cancelled).
#[test]
fn a_chain_written_to_history_while_pending_has_its_end_published_unsampled() {
    let reactor = Reactor::with_config(ReactorConfig::default()).unwrap();
    let mut config = HubConfig::default();
    config.sample = 0.0;
    let hub = Hub::new(config).unwrap();
    hub.install(&reactor);
    let mut feed = hub.subscribe("recorder");

    let (written, written_chain) = weft::defer::Deferred::<u8>::labeled("written");
    let (also, also_chain) = weft::defer::Deferred::<u8>::labeled("also written");
    std::thread::sleep(weft_telemetry::chains::HISTORY_PENDING_AFTER);
    let kept = hub.deferreds().pending_for_history();
    assert_eq!(
        kept.len(),
        2,
        "both pending chains go into history's snapshot"
    );
    // A chain that began after the snapshot is not in history: its good end is not kept.
    let (later, later_chain) = weft::defer::Deferred::<u8>::labeled("later");
    for (resolver, chain) in [
        (written, written_chain),
        (also, also_chain),
        (later, later_chain),
    ] {
        resolver.callback(1);
        drop(chain);
    }
    let ended: Vec<_> = drain(&mut feed)
        .into_iter()
        .filter_map(|e| match &e.kind {
            EventKind::DeferredEnded { deferred } => {
                Some((deferred.label.clone().unwrap_or_default(), deferred.state))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        ended,
        [
            ("written".to_owned(), DeferredState::Succeeded),
            ("also written".to_owned(), DeferredState::Succeeded)
        ]
    );
}
