//! What sharing one hub between reactors costs: the hub's work per connection opened and
//! closed (its metric handle caches, the live registry, the bus: each behind a short
//! lock), with one thread calling it and with two at once, as two reactors do.
//!
//! `cargo bench -p weft-telemetry --bench hub_contention`
//!
//! Prints ns per connection (open + close) per thread; the difference between the two
//! runs is what the threads wait on each other, the figure to project from: with N
//! reactors each at R connections/s, the hub is busy about R × N × (one-thread ns) per
//! second, and waits grow as that share of a second nears one.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use weft::observe::{
    CloseReason, ConnectionClosed, ConnectionInfo, Event, Observer, TransportKind,
};
use weft_telemetry::{Hub, HubConfig};

const PER_THREAD: u32 = 200_000;

fn run(hub: &Arc<Hub>, threads: usize) -> f64 {
    let start = Arc::new(Barrier::new(threads));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (hub, start) = (hub.clone(), start.clone());
            std::thread::spawn(move || {
                let service: Arc<str> = format!("svc{t}").into();
                let peer = weft::Address::Ip("127.0.0.1:5000".parse().unwrap());
                let local = weft::Address::Ip("127.0.0.1:8000".parse().unwrap());
                start.wait();
                let began = Instant::now();
                for _ in 0..PER_THREAD {
                    let info = ConnectionInfo::new(
                        service.clone(),
                        TransportKind::Tcp,
                        peer.clone(),
                        local.clone(),
                    );
                    hub.on_event(&Event::ConnectionOpened(&info));
                    hub.on_event(&Event::ConnectionClosed(ConnectionClosed {
                        info,
                        reason: CloseReason::PeerClosed,
                        duration: Duration::ZERO,
                    }));
                }
                began.elapsed()
            })
        })
        .collect();
    let total: Duration = workers.into_iter().map(|w| w.join().unwrap()).sum();
    total.as_nanos() as f64 / f64::from(PER_THREAD) / threads as f64
}

fn main() {
    let hub = Hub::new(HubConfig::default()).unwrap();
    // A reader, as the store's history pipeline is: publishing is part of the cost.
    let _feed = hub.subscribe("bench");
    run(&hub, 1);
    let mut one: Vec<f64> = (0..5).map(|_| run(&hub, 1)).collect();
    let mut two: Vec<f64> = (0..5).map(|_| run(&hub, 2)).collect();
    one.sort_by(f64::total_cmp);
    two.sort_by(f64::total_cmp);
    println!(
        "hub per connection (open + close): 1 thread {:.0} ns, 2 threads at once {:.0} ns each (median of 5)",
        one[2], two[2]
    );
}
