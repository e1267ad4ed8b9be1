//! A DNS load generator over UDP, lighter than dnsperf: queries leave in batches through
//! `sendmmsg` and answers come back in batches through `recvmmsg`, so that one core of
//! load keeps a server busier than one core of its own. It reads dnsperf's query file
//! (`NAME TYPE` a line), keeps `-q` queries outstanding from one socket for `-l` seconds
//! (a query unanswered after `-t` seconds is lost), and prints dnsperf's summary lines:
//! queries sent, completed and lost, the response codes, the run time and queries per
//! second.
//!
//! `cargo run --release -p weft-names --example dns_load -- -s 127.0.0.1 -p 5353 -d FILE`
//!
//! Options, as dnsperf's: `-s ADDR` (default 127.0.0.1), `-p PORT` (53), `-d FILE`,
//! `-q OUTSTANDING` (100), `-l SECONDS` (10), `-t TIMEOUT` (5), `-E CODE:HEX` (an EDNS
//! option, in an OPT of 4096 bytes), `-D` (DO set, in such an OPT). Every query has RD
//! set, as dnsperf's have.

use std::collections::BTreeMap;
use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{Name, RecordType};
use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
};

/// Datagrams at most in one system call.
const BATCH: usize = 64;
/// Bytes kept of an answer: its header says all that is counted.
const SLOT: usize = 512;

struct Options {
    server: SocketAddr,
    file: String,
    outstanding: usize,
    limit: Duration,
    timeout: Duration,
    option: Option<(u16, Vec<u8>)>,
    /// DO set in every query's OPT (dnsperf's `-D`).
    dnssec_ok: bool,
}

fn usage(why: &str) -> ! {
    eprintln!("dns_load: {why}");
    eprintln!(
        "usage: dns_load [-s ADDR] [-p PORT] -d FILE [-q OUTSTANDING] [-l SECS] [-t SECS] [-E CODE:HEX] [-D]"
    );
    std::process::exit(2);
}

fn options() -> Options {
    let mut args = std::env::args().skip(1);
    let (mut addr, mut port) = (IpAddr::from([127, 0, 0, 1]), 53u16);
    let mut options = Options {
        server: SocketAddr::new(addr, port),
        file: String::new(),
        outstanding: 100,
        limit: Duration::from_secs(10),
        timeout: Duration::from_secs(5),
        option: None,
        dnssec_ok: false,
    };
    while let Some(flag) = args.next() {
        if flag == "-D" {
            options.dnssec_ok = true;
            continue;
        }
        let value = args
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} wants a value")));
        let bad = || -> ! { usage(&format!("{flag} {value}: not understood")) };
        let seconds = |v: &str| v.parse::<f64>().map(Duration::from_secs_f64).ok();
        match flag.as_str() {
            "-s" => addr = value.parse().unwrap_or_else(|_| bad()),
            "-p" => port = value.parse().unwrap_or_else(|_| bad()),
            "-d" => options.file = value.clone(),
            "-q" => options.outstanding = value.parse().unwrap_or_else(|_| bad()),
            "-l" => options.limit = seconds(&value).unwrap_or_else(|| bad()),
            "-t" => options.timeout = seconds(&value).unwrap_or_else(|| bad()),
            "-E" => {
                let (code, hex) = value.split_once(':').unwrap_or_else(|| bad());
                let code = code.parse().unwrap_or_else(|_| bad());
                let bytes = (0..hex.len())
                    .step_by(2)
                    .map(|i| {
                        hex.get(i..i + 2)
                            .and_then(|b| u8::from_str_radix(b, 16).ok())
                    })
                    .collect::<Option<Vec<u8>>>()
                    .unwrap_or_else(|| bad());
                options.option = Some((code, bytes));
            }
            _ => usage(&format!("unknown option {flag}")),
        }
    }
    if options.file.is_empty() {
        usage("no query file (-d)");
    }
    if options.outstanding == 0 || options.outstanding > 0x8000 {
        usage("-q: from 1 to 32768");
    }
    options.server = SocketAddr::new(addr, port);
    options
}

/// `name type` encoded as a query with id 0 and RD set, with an OPT carrying `option`
/// and DO when `dnssec_ok`.
fn encode(
    name: &str,
    qtype: RecordType,
    option: Option<&(u16, Vec<u8>)>,
    dnssec_ok: bool,
) -> Option<Vec<u8>> {
    let mut m = Message::new(0, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.queries
        .push(Query::query(Name::from_ascii(name).ok()?, qtype));
    if option.is_some() || dnssec_ok {
        let mut edns = Edns::new();
        edns.set_max_payload(4096).set_dnssec_ok(dnssec_ok);
        if let Some((code, value)) = option {
            edns.options_mut()
                .insert(EdnsOption::Unknown(*code, value.clone()));
        }
        m.edns = Some(edns);
    }
    m.to_vec().ok()
}

fn read_queries(options: &Options) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(&options.file)
        .unwrap_or_else(|e| usage(&format!("{}: {e}", options.file)));
    let queries: Vec<Vec<u8>> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(';'))
        .map(|line| {
            let mut words = line.split_whitespace();
            let (Some(name), Some(qtype)) = (words.next(), words.next()) else {
                usage(&format!("{line:?}: not NAME TYPE"))
            };
            let qtype = RecordType::from_str(&qtype.to_ascii_uppercase())
                .unwrap_or_else(|_| usage(&format!("{line:?}: unknown type")));
            encode(name, qtype, options.option.as_ref(), options.dnssec_ok)
                .unwrap_or_else(|| usage(&format!("{line:?}: not a name")))
        })
        .collect();
    if queries.is_empty() {
        usage("no queries in the file");
    }
    queries
}

/// The queries out: slot `i` sends ids `i`, `i + outstanding`, ... (mod 65536 rounded
/// down to a multiple of `outstanding`), so a late answer to a lost query is told apart
/// from the answer to the query sent after it in the same slot.
struct Slots {
    sent: Vec<Option<Instant>>,
    ids: Vec<u16>,
    free: Vec<usize>,
    span: u32,
}

impl Slots {
    fn new(n: usize) -> Self {
        let span = (65536 / n as u32) * n as u32;
        Self {
            sent: vec![None; n],
            ids: (0..n).map(|i| i as u16).collect(),
            free: (0..n).rev().collect(),
            span,
        }
    }

    /// Takes a free slot for a query sent `now`; its id.
    fn take(&mut self, now: Instant) -> Option<u16> {
        let slot = self.free.pop()?;
        self.sent[slot] = Some(now);
        Some(self.ids[slot])
    }

    /// Frees `slot`, whose next query gets the next id.
    fn release(&mut self, slot: usize) {
        self.sent[slot] = None;
        let n = self.sent.len() as u32;
        self.ids[slot] = ((u32::from(self.ids[slot]) + n) % self.span) as u16;
        self.free.push(slot);
    }

    /// The query with `id` is done with (answered, or never sent): whether it was out.
    fn done(&mut self, id: u16) -> bool {
        let slot = usize::from(id) % self.sent.len();
        if self.ids[slot] != id || self.sent[slot].is_none() {
            return false;
        }
        self.release(slot);
        true
    }

    /// Frees the slots whose queries were sent before `before`; how many.
    fn expire(&mut self, before: Instant) -> u64 {
        let late: Vec<usize> = (0..self.sent.len())
            .filter(|&slot| self.sent[slot].is_some_and(|t| t < before))
            .collect();
        for &slot in &late {
            self.release(slot);
        }
        late.len() as u64
    }

    fn out(&self) -> usize {
        self.sent.len() - self.free.len()
    }
}

fn main() {
    let options = options();
    let queries = read_queries(&options);
    let local: SocketAddr = match options.server {
        SocketAddr::V4(_) => "0.0.0.0:0".parse().expect("an address"),
        SocketAddr::V6(_) => "[::]:0".parse().expect("an address"),
    };
    let socket = UdpSocket::bind(local).unwrap_or_else(|e| usage(&format!("bind: {e}")));
    socket
        .connect(options.server)
        .unwrap_or_else(|e| usage(&format!("connect {}: {e}", options.server)));
    // Woken now and then with nothing received, to expire queries and stop on time.
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("a receive timeout");
    let fd = socket.as_raw_fd();

    let mut slots = Slots::new(options.outstanding);
    let mut out_buf = vec![0u8; BATCH * SLOT];
    let mut out_len = [0usize; BATCH];
    let mut out_ids = [0u16; BATCH];
    let mut in_buf = vec![0u8; BATCH * SLOT];
    let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let to: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
    let mut rcodes: BTreeMap<u16, u64> = BTreeMap::new();
    let (mut sent, mut completed, mut lost) = (0u64, 0u64, 0u64);
    let mut next = 0usize;

    let started = Instant::now();
    let stop = started + options.limit;
    let mut last_answer = started;
    let mut next_expiry = started + Duration::from_millis(100);
    loop {
        let now = Instant::now();
        if now >= next_expiry {
            lost += slots.expire(now - options.timeout);
            next_expiry = now + Duration::from_millis(100);
        }
        let sending = now < stop;
        if !sending && (slots.out() == 0 || now >= stop + options.timeout) {
            break;
        }
        // Every free slot gets a query, a batch a call.
        while sending && slots.out() < options.outstanding {
            let mut count = 0;
            while count < BATCH {
                let Some(id) = slots.take(now) else { break };
                let query = &queries[next];
                next = (next + 1) % queries.len();
                let buf = &mut out_buf[count * SLOT..count * SLOT + query.len()];
                buf.copy_from_slice(query);
                buf[..2].copy_from_slice(&id.to_be_bytes());
                out_len[count] = query.len();
                out_ids[count] = id;
                count += 1;
            }
            let mut chunks = out_buf.chunks(SLOT);
            let slices: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|i| {
                let chunk = chunks.next().unwrap_or_default();
                [IoSlice::new(&chunk[..out_len[i].min(chunk.len())])]
            });
            let left = match sendmmsg(
                fd,
                &mut send_headers,
                slices[..count].iter(),
                to,
                [] as [ControlMessage<'_>; 0],
                MsgFlags::empty(),
            ) {
                Ok(results) => results.count(),
                Err(e) => {
                    eprintln!("dns_load: sendmmsg: {e}");
                    0
                }
            };
            sent += left as u64;
            // What did not leave is not out.
            for &id in &out_ids[left..count] {
                slots.done(id);
            }
            if left < count {
                break;
            }
        }
        // Blocks until one answer is there (or the timeout), then takes all there are.
        let mut chunks = in_buf.chunks_mut(SLOT);
        let mut slices: [[IoSliceMut<'_>; 1]; BATCH] =
            std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
        let lengths: Vec<usize> = match recvmmsg(
            fd,
            &mut recv_headers,
            slices.iter_mut(),
            MsgFlags::MSG_WAITFORONE,
            None,
        ) {
            Ok(results) => results.map(|r| r.bytes).collect(),
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::ECONNREFUSED) => continue,
            Err(e) => {
                eprintln!("dns_load: recvmmsg: {e}");
                continue;
            }
        };
        for (len, answer) in lengths.into_iter().zip(in_buf.chunks(SLOT)) {
            if len < 12 {
                continue;
            }
            if slots.done(u16::from_be_bytes([answer[0], answer[1]])) {
                completed += 1;
                *rcodes.entry(u16::from(answer[3] & 0x0f)).or_default() += 1;
            }
        }
        last_answer = Instant::now();
    }
    lost += slots.out() as u64;
    // Sending stops at `stop`; the answers still out then count too.
    let run = (last_answer.max(stop) - started).as_secs_f64();
    let pct = |n: u64| {
        if sent > 0 {
            n as f64 * 100.0 / sent as f64
        } else {
            0.0
        }
    };
    println!("Statistics:\n");
    println!("  Queries sent:         {sent}");
    println!(
        "  Queries completed:    {completed} ({:.2}%)",
        pct(completed)
    );
    println!("  Queries lost:         {lost} ({:.2}%)", pct(lost));
    println!();
    let codes: Vec<String> = rcodes
        .iter()
        .map(|(&code, &n)| {
            let name = match code {
                0 => "NOERROR".to_string(),
                1 => "FORMERR".to_string(),
                2 => "SERVFAIL".to_string(),
                3 => "NXDOMAIN".to_string(),
                4 => "NOTIMP".to_string(),
                5 => "REFUSED".to_string(),
                _ => format!("RCODE{code}"),
            };
            format!(
                "{name} {n} ({:.2}%)",
                n as f64 * 100.0 / completed.max(1) as f64
            )
        })
        .collect();
    println!("  Response codes:       {}", codes.join(", "));
    println!("  Run time (s):         {run:.6}");
    println!(
        "  Queries per second:   {:.6}",
        completed as f64 / run.max(1e-9)
    );
}
