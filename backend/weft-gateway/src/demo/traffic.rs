//! The traffic generator: a few connections, requests and questions a second to the
//! services of the configuration, scheduled the Twisted way, one `LoopingCall` per
//! activity started by a `call_later`. Its HTTP requests and DNS questions are Deferred
//! chains created on the lines below, so the inspector names these lines:
//!
//! - `/api/slow` from the demo's upstream comes later than `stall_after`: the chain
//!   waiting on it (and the gateway's own request chain) shows **stalled**.
//! - `/api/flaky` answers 503, which the chain turns into a failure: **failed**.
//! - a report built from a DNS answer sleeps on the reactor thread for longer than
//!   `slow_callback`: **slow**.
//!
//! The first of each comes within seconds of the start, then every half minute or so.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use weft::defer::{Deferred, Failure};
use weft::task::LoopingCall;
use weft::{DelayedCall, Reactor, call_later};

use super::Targets;
use super::clients::{self, Answer, Chat, DnsClient, Ping, QType, UdpPinger};
use crate::app::GatewayError;

/// Long-lived chats kept open on each echo listener, and through each proxy.
const CHATS: [usize; 2] = [2, 1];

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// What the generator keeps running; [`stop`](Self::stop) ends it.
pub(crate) struct Traffic {
    /// Every activity, kept to stop them all.
    loops: RefCell<Vec<LoopingCall>>,
    /// Each loop's Deferred, which fires when it stops; kept so nothing is reported as
    /// unhandled at shutdown.
    done: Rc<RefCell<Vec<Deferred<()>>>>,
    /// Each activity's first run, staggered; cancelled when the demo stops before it.
    starts: RefCell<Vec<DelayedCall>>,
}

impl Traffic {
    /// Stops every activity; exchanges in flight finish (or are closed by the shutdown).
    pub(crate) fn stop(&self) {
        for start in self.starts.borrow_mut().drain(..) {
            let _ = start.cancel();
        }
        for lc in self.loops.borrow_mut().drain(..) {
            lc.stop();
        }
        for mut done in self.done.borrow_mut().drain(..) {
            let _ = done.try_take();
        }
    }

    /// Calls `f` every `interval`, the first time after `first`.
    fn every(&self, first: Duration, interval: Duration, mut f: impl FnMut() + 'static) {
        let lc = LoopingCall::new(move || {
            f();
            Ok::<(), Failure>(())
        });
        let (starting, done) = (lc.clone(), self.done.clone());
        self.starts.borrow_mut().push(call_later(first, move || {
            if let Ok(d) = starting.start(interval, true) {
                done.borrow_mut().push(d);
            }
        }));
        self.loops.borrow_mut().push(lc);
    }
}

/// The generator's state shared by its activities.
struct Generator {
    targets: Targets,
    /// One UDP port for every DNS question; `None` when the configuration has no DNS service.
    dns: Option<DnsClient>,
    /// One UDP port for the echo datagrams; `None` without a UDP echo.
    udp: Option<UdpPinger>,
    /// Chats alive per echo listener, then per proxy.
    chats: Vec<Rc<Cell<usize>>>,
    /// How long the report callback blocks the reactor; `None` when `slow_callback` is
    /// too long to reach without harm.
    block: Option<Duration>,
}

/// Starts every activity the targets allow.
pub(crate) fn start(
    reactor: &Reactor,
    targets: Targets,
    block: Option<Duration>,
) -> Result<Traffic, GatewayError> {
    let listen_error = |source: weft::ListenError| GatewayError::Start {
        service: super::TRAFFIC_SERVICE.into(),
        source: source.into(),
    };
    let dns = match targets.dns.is_empty() {
        true => None,
        false => Some(DnsClient::listen(reactor).map_err(listen_error)?),
    };
    let udp = match targets.echo_udp.is_empty() {
        true => None,
        false => Some(UdpPinger::listen(reactor).map_err(listen_error)?),
    };
    let chats = (0..targets.echo.len() + targets.proxy.len())
        .map(|_| Rc::default())
        .collect();
    let g = Rc::new(Generator {
        targets,
        dns,
        udp,
        chats,
        block,
    });
    let traffic = Traffic {
        loops: RefCell::default(),
        done: Rc::default(),
        starts: RefCell::default(),
    };
    // Each activity gets its turn number, to go round its targets and names.
    let on = |first, every, f: fn(&Generator, usize)| {
        let (g, mut turn) = (g.clone(), 0);
        traffic.every(secs(first), secs(every), move || {
            f(&g, turn);
            turn = turn.wrapping_add(1);
        });
    };
    on(0.2, 1.0, ping);
    on(0.3, 1.0, keep_chatting);
    on(0.4, 2.0, ping_udp);
    on(0.5, 5.0, stream);
    on(0.6, 2.0, browse);
    on(0.7, 3.0, call_api);
    on(1.0, 30.0, slow_api);
    on(2.0, 20.0, flaky_api);
    on(0.8, 1.0, resolve);
    on(0.9, 4.0, resolve_forwarded);
    on(3.0, 30.0, slow_report);
    Ok(traffic)
}

/// Lets a chain run to its end and takes its result, so a failure ends the chain
/// `failed` (and is logged) rather than reported as unhandled. The task that waits on it
/// is labelled `demo client`: one waiting on a stalled chain is listed stalled beside it.
fn finish<T: 'static>(what: &'static str, chain: Deferred<T>) {
    Reactor::current().spawn_labeled("demo client", async move {
        if let Err(failure) = chain.await {
            tracing::debug!(%failure, "demo traffic: {what}");
        }
    });
}

/// Fails the chain on a 5xx answer, as a client that needs the answer would.
fn expect_success(answer: Answer) -> Result<Answer, Failure> {
    if answer.status >= 500 {
        return Err(Failure::msg(format!(
            "the server answered {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        )));
    }
    Ok(answer)
}

fn pick<T: Copy>(list: &[T], turn: usize) -> Option<T> {
    (!list.is_empty()).then(|| list[turn % list.len()])
}

/// A short connection through echo or the proxy.
fn ping(g: &Generator, turn: usize) {
    let all: Vec<SocketAddr> = g
        .targets
        .echo
        .iter()
        .chain(&g.targets.proxy)
        .copied()
        .collect();
    if let Some(addr) = pick(&all, turn) {
        clients::connect(addr, Ping::new(format!("ping {turn}\n")), |_| {});
    }
}

/// Keeps [`CHATS`] long-lived connections on each echo listener and proxy, each living
/// 20 to 35 s so new ones keep arriving.
fn keep_chatting(g: &Generator, turn: usize) {
    let echo = g.targets.echo.iter().map(|a| (*a, CHATS[0]));
    let proxy = g.targets.proxy.iter().map(|a| (*a, CHATS[1]));
    for ((addr, wanted), alive) in echo.chain(proxy).zip(&g.chats) {
        if alive.get() >= wanted {
            continue;
        }
        alive.set(alive.get() + 1);
        let lifetime = secs(20.0 + 5.0 * (turn % 4) as f64);
        let chat = Chat::new(
            &b"the quick brown fox jumps over the lazy dog\n"[..],
            secs(2.0),
            lifetime,
            alive.clone(),
        );
        let failed = alive.clone();
        clients::connect(addr, chat, move |_| {
            failed.set(failed.get().saturating_sub(1))
        });
    }
}

fn ping_udp(g: &Generator, turn: usize) {
    if let (Some(udp), Some(addr)) = (&g.udp, pick(&g.targets.echo_udp, turn)) {
        udp.ping(addr, b"datagram from the demo's traffic\n");
    }
}

/// A few kilobytes a tick into discard, for three seconds.
fn stream(g: &Generator, turn: usize) {
    if let Some(addr) = pick(&g.targets.discard, turn) {
        clients::connect(addr, clients::stream(secs(0.25), secs(3.0)), |_| {});
    }
}

/// The site's pages, in turn.
fn browse(g: &Generator, turn: usize) {
    let Some(site) = g.targets.http.iter().find(|h| !h.pages.is_empty()) else {
        return;
    };
    let page = &site.pages[turn % site.pages.len()];
    finish("GET a page", clients::get(site.addr, page, "demo GET page"));
}

/// The API routes to the demo's upstream: a quick one, a slow one, a flaky one.
fn api(g: &Generator, path: &str) -> Option<(SocketAddr, String)> {
    g.targets
        .http
        .iter()
        .find_map(|h| Some((h.addr, format!("{}{path}", h.api.as_ref()?))))
}

fn call_api(g: &Generator, _turn: usize) {
    if let Some((addr, path)) = api(g, "hello") {
        let chain = clients::get(addr, &path, "demo GET /api/hello").and_then(expect_success);
        finish("GET /api/hello", chain);
    }
}

fn slow_api(g: &Generator, _turn: usize) {
    if let Some((addr, path)) = api(g, "slow") {
        // Stalls: the upstream answers later than `stall_after`.
        let chain = clients::get(addr, &path, "demo GET /api/slow")
            .and_then(expect_success)
            .add_callback(|answer| answer.body.len());
        finish("GET /api/slow", chain);
    }
}

fn flaky_api(g: &Generator, _turn: usize) {
    if let Some((addr, path)) = api(g, "flaky") {
        // Fails: the upstream answers 503, which `expect_success` turns into a failure.
        let chain = clients::get(addr, &path, "demo GET /api/flaky")
            .and_then(expect_success)
            .add_callback(|answer| answer.body.len());
        finish("GET /api/flaky", chain);
    }
}

/// A name of a zone the DNS service answers for, in turn.
fn resolve(g: &Generator, turn: usize) {
    let (Some(dns), Some(target)) = (&g.dns, pick_dns(g, turn)) else {
        return;
    };
    if let Some((name, qtype)) = target.names.get(turn % target.names.len().max(1)) {
        let chain = dns.query(target.addr, name, *qtype, "demo DNS question");
        finish("a DNS question", chain);
    }
}

/// A name the DNS service forwards to the demo's upstream.
fn resolve_forwarded(g: &Generator, turn: usize) {
    let Some(dns) = &g.dns else { return };
    let Some(target) = g.targets.dns.iter().find(|t| !t.forwarded.is_empty()) else {
        return;
    };
    let name = &target.forwarded[turn % target.forwarded.len()];
    let chain = dns
        .query(target.addr, name, QType::A, "demo DNS question, forwarded")
        .and_then(|answer| match answer.rcode {
            // SERVFAIL: the service's upstream did not answer.
            2 => Err(Failure::msg("the DNS service answered SERVFAIL")),
            _ => Ok(answer),
        });
    finish("a forwarded DNS question", chain);
}

/// A report of the zone's TXT record, built in a callback that blocks the reactor.
fn slow_report(g: &Generator, _turn: usize) {
    let (Some(dns), Some(block), Some(target)) = (&g.dns, g.block, pick_dns(g, 0)) else {
        return;
    };
    let Some((apex, _)) = target.names.iter().find(|(_, q)| *q == QType::Txt) else {
        return;
    };
    let chain = dns
        .query(target.addr, apex, QType::Txt, "demo DNS report")
        .add_callback(move |answer| {
            // Blocking work on the reactor thread, as a careless parser or a synchronous
            // file write would do; every service waits meanwhile, and the slow-callback
            // detector names this line.
            std::thread::sleep(block);
            answer.answers
        });
    finish("the DNS report", chain);
}

fn pick_dns(g: &Generator, turn: usize) -> Option<&super::DnsTarget> {
    let with_names: Vec<_> = g
        .targets
        .dns
        .iter()
        .filter(|t| !t.names.is_empty())
        .collect();
    (!with_names.is_empty()).then(|| with_names[turn % with_names.len()])
}
