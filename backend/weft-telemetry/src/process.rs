//! The `process_*` series, read from `/proc/self` at scrape time, the process's
//! connections against its cap (`weft_process_connections`, `..._limit`), and
//! `weft_build_info`.
//!
//! The names, types and units are those every Prometheus client library exports, so
//! dashboards and alerts written for other programs work unchanged. A small reader here
//! rather than the prometheus crate's `process` feature: that collector counts CPU in
//! whole seconds (a gateway that used 0.4 s of CPU reads 0, and `rate()` over a minute
//! moves in steps of 1/60) and brings the procfs crate with it, and it lists
//! `/proc/self/fd` to count descriptors: 9 ms a scrape for 10,000 connections. This one
//! reads `/proc/self/stat`, takes the descriptor count from the size of `/proc/self/fd`
//! (Linux 6.2 and later; older kernels are listed) and asks `getrlimit`, with CPU time in
//! clock ticks: about 15 µs a scrape, however many connections are open.
//!
//! Where `/proc` cannot be read (not Linux, or a sandbox hiding it) the families it
//! needs are left out of the scrape rather than reported as zero.

use std::collections::HashMap;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{IntGauge, Opts, Registry};

/// weft's version, the `version` label of `weft_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

const CPU: (&str, &str) = (
    "process_cpu_seconds_total",
    "Total user and system CPU time spent in seconds.",
);
const RSS: (&str, &str) = (
    "process_resident_memory_bytes",
    "Resident memory size in bytes.",
);
const OPEN_FDS: (&str, &str) = ("process_open_fds", "Number of open file descriptors.");
const MAX_FDS: (&str, &str) = (
    "process_max_fds",
    "Maximum number of open file descriptors (the soft limit).",
);
const CONNECTIONS: (&str, &str) = (
    "weft_process_connections",
    "Connections every service together has accepted and holds now (TLS handshakes included): what the process cap counts.",
);
const CONNECTIONS_LIMIT: (&str, &str) = (
    "weft_process_connections_limit",
    "The process cap on accepted connections ([gateway] max_connections, or what the open files limit leaves room for); absent when there is none.",
);
const START: (&str, &str) = (
    "process_start_time_seconds",
    "Start time of the process since unix epoch in seconds.",
);

/// Registers the process collector and `weft_build_info` on `registry`.
pub(crate) fn register(registry: &Registry) -> Result<(), prometheus::Error> {
    registry.register(Box::new(ProcessCollector::new()?))?;
    let info = IntGauge::with_opts(
        Opts::new(
            "weft_build_info",
            "Always 1; the version of weft serving these metrics in its label.",
        )
        .const_label("version", VERSION),
    )?;
    info.set(1);
    registry.register(Box::new(info))
}

/// What one read of `/proc/self/stat` gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    /// User plus system time, in clock ticks.
    cpu_ticks: u64,
    /// Resident pages.
    rss_pages: u64,
    /// Clock ticks from boot to the process's start.
    start_ticks: u64,
}

/// Reads `/proc/self` at each scrape.
struct ProcessCollector {
    descs: Vec<Desc>,
    /// Read once from the system, to turn `/proc` clock ticks into seconds.
    ticks_per_second: f64,
    /// Read once from the system, to turn resident pages into bytes.
    page_size: f64,
    /// Fixed for the life of the process: computed once.
    start_time: Option<f64>,
}

impl ProcessCollector {
    fn new() -> Result<Self, prometheus::Error> {
        let descs = [
            CPU,
            RSS,
            OPEN_FDS,
            MAX_FDS,
            START,
            CONNECTIONS,
            CONNECTIONS_LIMIT,
        ]
        .into_iter()
        .map(|(name, help)| Desc::new(name.into(), help.into(), Vec::new(), HashMap::new()))
        .collect::<Result<_, _>>()?;
        let ticks_per_second = rustix::param::clock_ticks_per_second() as f64;
        let start_time = match (read_stat(), boot_time()) {
            (Some(stat), Some(boot)) => Some(boot + stat.start_ticks as f64 / ticks_per_second),
            _ => None,
        };
        Ok(Self {
            descs,
            ticks_per_second,
            page_size: rustix::param::page_size() as f64,
            start_time,
        })
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families = Vec::with_capacity(self.descs.len());
        if let Some(stat) = read_stat() {
            let cpu = stat.cpu_ticks as f64 / self.ticks_per_second;
            families.push(family(CPU, MetricType::COUNTER, cpu));
            let rss = stat.rss_pages as f64 * self.page_size;
            families.push(family(RSS, MetricType::GAUGE, rss));
        }
        if let Some(open) = open_fds() {
            families.push(family(OPEN_FDS, MetricType::GAUGE, open as f64));
        }
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        if let Some(max) = limit.current {
            families.push(family(MAX_FDS, MetricType::GAUGE, max as f64));
        }
        if let Some(start) = self.start_time {
            families.push(family(START, MetricType::GAUGE, start));
        }
        let open = weft::policies::process_connections_open();
        families.push(family(CONNECTIONS, MetricType::GAUGE, open as f64));
        if let Some(limit) = weft::policies::process_connection_limit() {
            families.push(family(CONNECTIONS_LIMIT, MetricType::GAUGE, limit as f64));
        }
        families
    }
}

/// A family of one unlabelled sample.
fn family((name, help): (&str, &str), kind: MetricType, value: f64) -> MetricFamily {
    let mut metric = proto::Metric::default();
    if kind == MetricType::COUNTER {
        let mut counter = proto::Counter::default();
        counter.set_value(value);
        metric.set_counter(counter);
    } else {
        let mut gauge = proto::Gauge::default();
        gauge.set_value(value);
        metric.set_gauge(gauge);
    }
    let mut family = MetricFamily::default();
    family.set_name(name.into());
    family.set_help(help.into());
    family.set_field_type(kind);
    family.set_metric(vec![metric]);
    family
}

/// Open descriptors. Linux 6.2 and later give their number as the size of
/// `/proc/self/fd`, in constant time; before, the size is 0 and the directory is listed
/// (about a millisecond per thousand descriptors).
fn open_fds() -> Option<u64> {
    match std::fs::metadata("/proc/self/fd").ok()?.len() {
        0 => Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64),
        n => Some(n),
    }
}

fn read_stat() -> Option<Stat> {
    parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// `/proc/PID/stat` (proc(5)): the command name is in parentheses and may itself hold
/// spaces and parentheses, so fields are counted from the last `)`. After it come field
/// 3 (state) onwards: utime is field 14, stime 15, starttime 22, rss 24.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        cpu_ticks: field(14)?.checked_add(field(15)?)?,
        start_ticks: field(22)?,
        rss_pages: field(24)?,
    })
}

/// The boot time, seconds since the epoch: `btime` in `/proc/stat`.
fn boot_time() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "4242 (we (ft) x) S 1 4242 4242 0 -1 4194560 1200 0 0 0 \
                    250 75 0 0 20 0 3 0 98765 123456789 2048 18446744073709551615 \
                    1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                cpu_ticks: 325,
                start_ticks: 98765,
                rss_pages: 2048,
            })
        );
        assert_eq!(parse_stat("4242 (cut short) S 1 2"), None);
    }

    #[test]
    fn this_process_reads_as_itself() {
        let registry = Registry::new();
        register(&registry).unwrap();
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        for family in [
            "# TYPE process_cpu_seconds_total counter",
            "# TYPE process_resident_memory_bytes gauge",
            "# TYPE process_open_fds gauge",
            "# TYPE process_max_fds gauge",
            "# TYPE process_start_time_seconds gauge",
            "# TYPE weft_process_connections gauge",
        ] {
            assert!(text.contains(family), "{family}\n{text}");
        }
        assert!(
            text.contains(&format!("weft_build_info{{version=\"{VERSION}\"}} 1\n")),
            "{text}"
        );
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("{name}\n{text}"))
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = value("process_start_time_seconds");
        assert!(
            start <= now + 1.0 && start > now - 3600.0,
            "{start} vs {now}"
        );
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_resident_memory_bytes") > 1e6);
    }
}
