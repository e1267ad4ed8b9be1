//! `weft` with no arguments: the built-in demo serves every kind on its fixed loopback
//! ports, prints where to look, and keeps the dashboard busy with its own traffic; a
//! configuration without `[demo]` never makes traffic of its own.
//!
//! The bare demo's ports are fixed, so the tests that bind them hold [`demo_ports`] and
//! never run at the same time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::dns::dig;
use crate::support::{demo_ports, spawn_app_with, weft_bin};
pub(crate) use weft_test_support::wait_for;

/// The built-in demo's dashboard.
pub(crate) const DASHBOARD: &str = "127.0.0.1:9180";

/// `weft` run with no arguments in a fresh working directory.
pub(crate) struct BareDemo {
    pub(crate) child: Child,
    pub(crate) dir: tempfile::TempDir,
}

impl BareDemo {
    /// Starts it and waits for `/readyz`: every service listens, and so the demo's
    /// upstreams are up and its start message is out.
    pub(crate) fn spawn() -> BareDemo {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(weft_bin())
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("stdout")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("weft.log")).unwrap())
            .spawn()
            .expect("weft starts");
        let mut demo = BareDemo { child, dir };
        let start = Instant::now();
        while curl(&format!("http://{DASHBOARD}/readyz")).is_none() {
            if let Ok(Some(status)) = demo.child.try_wait() {
                panic!(
                    "weft exited ({status}); are the demo's ports taken?\n{}",
                    demo.log()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the bare demo does not answer /readyz\n{}",
                demo.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        demo
    }

    pub(crate) fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    pub(crate) fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("weft.log")).unwrap_or_default();
        format!("--- stdout\n{}--- log\n{log}", self.stdout())
    }

    /// The CPU time the process has used, user and system.
    pub(crate) fn cpu_time(&self) -> Duration {
        cpu_time(self.child.id())
    }

    /// Sends the process `signal` (`TERM`, `HUP`).
    pub(crate) fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} failed");
    }

    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        wait_for(
            20,
            "the demo exits after SIGTERM",
            || self.child.try_wait().unwrap(),
            String::new,
        )
    }
}

impl Drop for BareDemo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User and system CPU time of process `pid`, from `/proc/PID/stat`.
pub(crate) fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name may hold spaces; the fields after it are plain.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    let per_s: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    Duration::from_secs_f64(ticks as f64 / per_s as f64)
}

/// `curl -sf URL`: the body of a 2xx answer.
pub(crate) fn curl(url: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "5", url])
        .output()
        .expect("curl must be installed (scripts/test installs it)");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn api(path: &str) -> Value {
    let body = curl(&format!("http://{DASHBOARD}{path}")).unwrap_or_default();
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

fn items(value: &Value) -> Vec<Value> {
    value["items"].as_array().cloned().unwrap_or_default()
}

fn echo_tcp(addr: &str, payload: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(payload).unwrap();
    let mut buf = vec![0; payload.len()];
    s.read_exact(&mut buf).unwrap();
    buf
}

/// The one test of the bare demo: its ports are fixed, and starting it is the slow part.
#[test]
fn with_no_arguments_weft_runs_a_living_demo_of_every_kind() {
    let _ports = demo_ports();
    let mut demo = BareDemo::spawn();

    // Where to look: the dashboard, one curl line and one dig line, each of which works.
    let out = demo.stdout();
    assert!(out.contains(&format!("http://{DASHBOARD}/")), "{out}");
    let line = |tool: &str| {
        out.lines()
            .map(str::trim)
            .find_map(|l| l.find(&format!("{tool} ")).map(|i| l[i..].to_owned()))
            .unwrap_or_else(|| panic!("no {tool} line in the start message:\n{out}"))
    };
    let (curl_line, dig_line) = (line("curl"), line("dig"));
    let run = |line: &str| {
        let out = Command::new("sh").arg("-c").arg(line).output().unwrap();
        assert!(out.status.success(), "{line}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(!run(&curl_line).is_empty(), "{curl_line}");
    let answer = run(&format!("{dig_line} +time=3 +tries=1"));
    assert!(answer.contains("status: NOERROR"), "{dig_line}\n{answer}");

    // Every kind, on its port.
    assert_eq!(echo_tcp("127.0.0.1:8000", b"hello\n"), b"hello\n");
    assert_eq!(echo_tcp("127.0.0.1:8001", b"proxied\n"), b"proxied\n");
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    udp.send_to(b"datagram", "127.0.0.1:8000").unwrap();
    let mut buf = [0; 64];
    let (n, _) = udp.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"datagram");
    let mut discard = TcpStream::connect("127.0.0.1:8009").unwrap();
    discard.write_all(b"into the void").unwrap();
    discard
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        discard.read(&mut buf).is_err(),
        "discard answers nothing and keeps the connection"
    );
    let site = curl("http://127.0.0.1:8080/").expect("the site's front page");
    assert!(site.contains("<title>weft demo</title>"), "{site}");
    let api_answer = curl("http://127.0.0.1:8080/api/hello").expect("the proxied route");
    let api_answer: Value = serde_json::from_str(&api_answer).unwrap();
    assert_eq!(api_answer["path"], "/api/hello", "{api_answer}");
    let short = |args: &[&str]| -> Vec<String> {
        let mut all = args.to_vec();
        all.push("+short");
        dig(5353, &all).lines().map(str::to_owned).collect()
    };
    assert_eq!(short(&["www.weft.test", "A"]), ["192.0.2.80"]);
    assert_eq!(short(&["www.weft.test", "A", "+tcp"]), ["192.0.2.80"]);
    assert_eq!(
        short(&["www.upstream.test", "A"]),
        ["198.51.100.7"],
        "a name outside the zone, forwarded to the demo's upstream"
    );

    // Within seconds, with nobody else doing anything: every Deferreds tab has rows, and
    // the connections table shows the traffic.
    for state in ["pending", "stalled", "failed", "slow"] {
        wait_for(
            20,
            &format!("/api/deferreds?state={state} lists a chain"),
            || (!items(&api(&format!("/api/deferreds?state={state}"))).is_empty()).then_some(()),
            || demo.log(),
        );
    }
    let stalled = items(&api("/api/deferreds?state=stalled"));
    assert!(
        stalled
            .iter()
            .any(|d| d["site"].as_str().unwrap_or("").contains("demo/")),
        "a chain of the demo's traffic stalled: {stalled:?}"
    );
    // The README's tour names what the slow request leaves stalled, each by its label.
    let tour = [
        "demo GET /api/slow",
        "HTTP answer",
        "http request",
        "demo client",
    ];
    wait_for(
        20,
        "the slow request's chains and task are stalled, as the tour says",
        || {
            let stalled = items(&api("/api/deferreds?state=stalled"));
            let labelled = |label: &str| stalled.iter().any(|d| d["label"] == label);
            tour.iter().all(|l| labelled(l)).then_some(())
        },
        || api("/api/deferreds?state=stalled").to_string(),
    );
    wait_for(
        10,
        "the generator's connections are open, and its echo connections carried bytes",
        || {
            let open = items(&api("/api/connections?state=open"));
            let client = open
                .iter()
                .any(|c| c["service"] == "traffic" && c["bytes_out"].as_u64() > Some(0));
            let served = open
                .iter()
                .any(|c| c["service"] == "echo" && c["bytes_in"].as_u64() > Some(0));
            (client && served).then_some(())
        },
        || format!("{}\n{}", api("/api/connections"), demo.log()),
    );
    for service in ["echo", "proxy", "discard", "web", "dns"] {
        wait_for(
            10,
            &format!("the generator's traffic reached {service}"),
            || {
                let rows = items(&api(&format!(
                    "/api/connections?state=closed&service={service}"
                )));
                rows.iter()
                    .any(|c| c["bytes_in"].as_u64() > Some(0))
                    .then_some(())
            },
            || demo.log(),
        );
    }

    // It stays light: measured over 5 s once running, a guard against a busy loop (a
    // whole core). A debug build is several times slower than the release build the
    // README's command runs, whose figure (well under 5% of one core) the README gives
    // with its method; on a slower machine its fixed traffic takes a larger share, so
    // the bound is half a core.
    let (cpu0, t0) = (demo.cpu_time(), Instant::now());
    std::thread::sleep(Duration::from_secs(5));
    let share = (demo.cpu_time() - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64();
    println!("demo: {:.1}% of one core over 5 s", share * 100.0);
    assert!(share < 0.5, "the demo used {:.1}% of a core", share * 100.0);

    // Reloading the built-in configuration changes nothing: no service starts again.
    demo.signal("HUP");
    let reloaded = wait_for(
        10,
        "the reload is logged",
        || {
            let log = demo.log();
            let at = log.find("configuration reloaded: ")?;
            Some(log[at..].lines().next().unwrap_or_default().to_owned())
        },
        || demo.log(),
    );
    assert_eq!(
        short(&["www.weft.test", "A"]),
        ["192.0.2.80"],
        "the built-in zone is still served after the reload"
    );
    let parts: Vec<&str> = reloaded["configuration reloaded: ".len()..]
        .split("; ")
        .collect();
    assert!(
        parts.iter().all(|p| ["changed", "added", "removed"]
            .iter()
            .all(|s| !p.starts_with(s))),
        "{reloaded}"
    );

    let status = demo.terminate();
    assert_eq!(status.code(), Some(0), "{}", demo.log());
}

/// A demo port another program holds stops the demo before it binds anything, naming the
/// program and what to do, as `run FILE` does (it said the system's `Address already in
/// use`, after the dashboard had started).
#[test]
fn a_demo_port_another_program_holds_is_named_before_anything_binds() {
    let _ports = demo_ports();
    let holder = std::net::TcpListener::bind("127.0.0.1:8080").expect("the demo's port is free");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(weft_bin())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("weft runs");
    drop(holder);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the built-in demo cannot start: service[3] (web)")
            && stderr.contains(&format!(
                "TCP port 8080 on 127.0.0.1 is in use by process {}",
                std::process::id()
            ))
            && stderr.contains("weft run FILE"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("Address already in use"),
        "said once, in check's words: {stderr}"
    );
    assert!(
        std::net::TcpStream::connect(DASHBOARD).is_err(),
        "nothing was bound"
    );
}

#[test]
fn help_still_prints_help() {
    let out = Command::new(weft_bin()).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Usage:"), "{text}");
    for word in ["run", "check", "demo"] {
        assert!(text.contains(word), "{word}: {text}");
    }
}

/// Connections on the echo service the process reports, open or closed.
fn echo_connections(dashboard: SocketAddr) -> usize {
    ["open", "closed"]
        .iter()
        .map(|state| {
            let body = curl(&format!(
                "http://{dashboard}/api/connections?state={state}&service=echo"
            ))
            .unwrap_or_default();
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            items(&v).iter().filter(|c| c["transport"] == "tcp").count()
        })
        .sum()
}

/// The demo's traffic ends its chains when the gateway stops: the next start finds
/// nothing left open. Each tick of its clients' loops fires a chain and extends it at
/// once; the end of that extension went unreported, so the live view listed such chains
/// as running for ever and the history kept them open.
#[test]
fn a_gateway_stopped_with_demo_traffic_leaves_no_chain_open() {
    let _ports = demo_ports();
    let mut app = spawn_app_with(|_| "[demo]\ntraffic = true\n".into());
    wait_for(
        10,
        "[demo] traffic = true connects to the file's echo service",
        || (echo_connections(app.dashboard) > 0).then_some(()),
        || app.log(),
    );
    // Until the loops' first chains are old enough to tell a chain that runs for ever
    // from one caught in its callback.
    std::thread::sleep(Duration::from_secs(2));
    // Pending chains, as the live view lists them: none of them runs for long.
    let running: Vec<Value> = {
        let body = app.curl("/api/deferreds?state=pending").unwrap_or_default();
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let pending = items(&v);
        assert!(!pending.is_empty(), "the demo's loops wait: {v:#}");
        pending
            .into_iter()
            // One caught in its callback this instant would be younger; a task (a port's
            // receive loop, woken by the traffic) caught in a poll this instant was woken
            // just now, however old it is.
            .filter(|c| {
                let running_for = match c["task"]["since_wake_ms"].as_u64() {
                    Some(since_wake) => Some(since_wake),
                    None => c["age_ms"].as_u64(),
                };
                c["state"] == "running" && running_for >= Some(1000)
            })
            .collect()
    };
    assert!(running.is_empty(), "chains listed running: {running:#?}");
    assert!(app.signal_and_wait("TERM").success(), "{}", app.log());
    app.restart();
    assert!(!app.log().contains("did not stop cleanly"), "{}", app.log());
}

#[test]
fn only_demo_traffic_true_makes_traffic_of_its_own() {
    // `[demo] traffic = true` runs the demo's upstreams on their fixed ports.
    let _ports = demo_ports();
    let with = spawn_app_with(|_| "[demo]\ntraffic = true\n".into());
    let started = Instant::now();
    wait_for(
        10,
        "[demo] traffic = true connects to the file's echo service",
        || (echo_connections(with.dashboard) > 0).then_some(()),
        || with.log(),
    );
    let took = started.elapsed();
    drop(with);

    let without = spawn_app_with(|_| String::new());
    std::thread::sleep((took * 3).max(Duration::from_secs(3)));
    assert_eq!(
        echo_connections(without.dashboard),
        0,
        "nobody connected, and nothing did on its own\n{}",
        without.log()
    );
}
