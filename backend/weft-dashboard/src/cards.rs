//! The overview's service cards: each figure with its sparkline drawn on the server, so the
//! page reads complete without JavaScript; `frontend/static/overview.js` then redraws them
//! from `/ws` with the same geometry and adds a marker that reads out the value under the
//! pointer.

use crate::data::ServiceView;
use crate::fmt;
use crate::series::ProcessStats;

/// The sparkline's box, in SVG user units (stretched to the card's width).
pub const WIDTH: f64 = 120.0;
/// The sparkline's height.
pub const HEIGHT: f64 = 28.0;

/// A sparkline: its polyline and the text that reads it out (its SVG `<title>`).
#[derive(Debug, Clone, PartialEq)]
pub struct Spark {
    /// The polyline's `points`, `x,y` pairs in a [`WIDTH`] × [`HEIGHT`] box.
    pub points: String,
    /// `conn/s: latest 1.5, min 0.0, max 3.2 over the last 4m 59s`.
    pub title: String,
}

impl Spark {
    /// Draws `values` (oldest first) scaled to their maximum, flat at the bottom when all
    /// are zero; `span_ms` is the time they cover and `show` how one value reads.
    pub fn new(label: &str, values: &[f64], span_ms: u64, show: impl Fn(f64) -> String) -> Self {
        Self {
            points: points(values),
            title: title(label, values, span_ms, show),
        }
    }
}

/// The same geometry as `spark()` in `overview.js`.
fn points(values: &[f64]) -> String {
    let y = |v: f64, max: f64| HEIGHT - 2.0 - (v / max) * (HEIGHT - 4.0);
    match values {
        [] => format!("0,{:.1} {WIDTH},{:.1}", HEIGHT - 2.0, HEIGHT - 2.0),
        [only] => {
            let y = y(*only, only.max(1e-9));
            format!("0,{y:.1} {WIDTH},{y:.1}")
        }
        _ => {
            let max = values.iter().copied().fold(1e-9, f64::max);
            let step = WIDTH / (values.len() - 1) as f64;
            values
                .iter()
                .enumerate()
                .map(|(i, v)| format!("{:.1},{:.1}", i as f64 * step, y(*v, max)))
                .collect::<Vec<_>>()
                .join(" ")
        }
    }
}

fn title(label: &str, values: &[f64], span_ms: u64, show: impl Fn(f64) -> String) -> String {
    let Some(&latest) = values.last() else {
        return format!("{label}: no samples yet");
    };
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut t = format!(
        "{label}: latest {}, min {}, max {}",
        show(latest),
        show(min),
        show(max)
    );
    if span_ms > 0 {
        t.push_str(&format!(" over the last {}", fmt::age(&span_ms)));
    }
    t
}

/// One figure of a card: its current value and, for the series, a sparkline.
#[derive(Debug, Clone)]
pub struct Figure {
    /// The `data-k` the script updates it by.
    pub key: &'static str,
    /// What it is called on the card.
    pub label: &'static str,
    /// The value now, formatted.
    pub value: String,
    /// The last minutes, for the figures that have a series.
    pub spark: Option<Spark>,
    /// Drawn in the warning colour.
    pub warn: bool,
}

/// A service's card on the overview.
#[derive(Debug, Clone)]
pub struct Card {
    /// The service.
    pub service: ServiceView,
    /// Its figures, in the order the card shows them.
    pub figures: Vec<Figure>,
}

impl Card {
    /// The card for `service`, with its sparklines drawn.
    pub fn new(service: ServiceView) -> Self {
        let s = &service.stats;
        let span_ms = u64::try_from(s.now.at_ms - s.since_ms).unwrap_or(0);
        let rate = |v: f64| fmt::rate(&v);
        let per_second = |v: f64| format!("{}/s", fmt::bytes(&(v.max(0.0) as u64)));
        let count = |v: f64| format!("{v:.0}");
        let counts = |v: &[i64]| v.iter().map(|&n| n as f64).collect::<Vec<_>>();
        let last = |v: &[f64]| v.last().copied().unwrap_or(0.0);
        let series =
            |key, label, value: String, values: &[f64], show: &dyn Fn(f64) -> String| Figure {
                key,
                label,
                value,
                spark: Some(Spark::new(label, values, span_ms, show)),
                warn: key == "stalled",
            };
        let figures = vec![
            Figure {
                key: "active",
                label: "open",
                value: s.now.active.to_string(),
                spark: None,
                warn: false,
            },
            series(
                "conn_rate",
                "conn/s",
                rate(last(&s.conn_rate)),
                &s.conn_rate,
                &rate,
            ),
            series(
                "in_rate",
                "in/s",
                per_second(last(&s.in_rate)),
                &s.in_rate,
                &per_second,
            ),
            series(
                "out_rate",
                "out/s",
                per_second(last(&s.out_rate)),
                &s.out_rate,
                &per_second,
            ),
            series(
                "pending",
                "pending",
                s.now.pending.to_string(),
                &counts(&s.pending),
                &count,
            ),
            series(
                "stalled",
                "stalled",
                s.now.stalled.to_string(),
                &counts(&s.stalled),
                &count,
            ),
        ];
        Self { service, figures }
    }

    /// Whether a Deferred of the service is stalled now (the card is outlined).
    pub fn alert(&self) -> bool {
        self.service.stats.now.stalled > 0
    }
}

/// Past this share of a limit, a figure of the process card is drawn in the warning
/// colour and the card outlined: open files near the open-files limit, connections near
/// the process cap, where accepting stops.
pub const NEAR_LIMIT: f64 = 0.9;

/// `n of limit`, or `n` alone without a limit; and whether it is near the limit.
pub fn of_limit(n: u64, limit: Option<u64>) -> (String, bool) {
    match limit {
        Some(limit) if limit > 0 => (
            format!("{n} of {limit}"),
            n as f64 >= NEAR_LIMIT * limit as f64,
        ),
        _ => (n.to_string(), false),
    }
}

/// The overview's card of the process itself: CPU and memory with their last minutes,
/// open files and connections against their limits, and how long it has run.
#[derive(Debug, Clone)]
pub struct ProcessCard {
    /// Its figures, in the order the card shows them.
    pub figures: Vec<Figure>,
    /// The last samples could not read `/proc` (out of descriptors, say): the figures are
    /// older than the page.
    pub stale: bool,
}

/// Figures older than this are marked stale (the sampler reads once a second).
pub const STALE_MS: i64 = 5_000;

impl ProcessCard {
    /// The card for `p`, as of `now_ms`.
    pub fn new(p: &ProcessStats, now_ms: i64) -> Self {
        let span_ms = u64::try_from(p.now.at_ms - p.since_ms).unwrap_or(0);
        let cores = |v: f64| format!("{:.0}%", v.max(0.0) * 100.0);
        let memory = |v: f64| fmt::bytes(&(v.max(0.0) as u64));
        let resident: Vec<f64> = p.resident.iter().map(|&b| b as f64).collect();
        let mut figures = vec![
            Figure {
                key: "cpu",
                label: "CPU",
                value: cores(p.cpu.last().copied().unwrap_or(0.0)),
                spark: Some(Spark::new("CPU", &p.cpu, span_ms, cores)),
                warn: false,
            },
            Figure {
                key: "memory",
                label: "memory",
                value: memory(p.now.resident_bytes as f64),
                spark: Some(Spark::new("memory", &resident, span_ms, memory)),
                warn: false,
            },
        ];
        // Kept when the count cannot be read (a kernel before 6.2 lists the descriptors to
        // count them, which fails once they have run out): that is when it matters.
        let (value, warn) = match p.now.open_fds {
            Some(open) => of_limit(open, p.now.max_fds),
            None => ("–".to_owned(), false),
        };
        figures.push(Figure {
            key: "files",
            label: "open files",
            value,
            spark: None,
            warn,
        });
        let (value, warn) = of_limit(p.now.connections, p.now.connections_limit);
        figures.push(Figure {
            key: "connections",
            label: "connections",
            value,
            spark: None,
            warn,
        });
        if let Some(start) = p.now.start_time_s {
            let up_ms = (now_ms as f64 - start * 1e3).max(0.0) as u64;
            figures.push(Figure {
                key: "up",
                label: "up",
                value: fmt::age(&up_ms),
                spark: None,
                warn: false,
            });
        }
        Self {
            figures,
            stale: now_ms - p.now.at_ms > STALE_MS,
        }
    }

    /// Whether a figure is near its limit (the card is outlined).
    pub fn alert(&self) -> bool {
        self.figures.iter().any(|f| f.warn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparkline_spans_the_box_scaled_to_its_maximum() {
        assert_eq!(points(&[0.0, 2.0, 1.0]), "0.0,26.0 60.0,2.0 120.0,14.0");
        assert_eq!(points(&[]), "0,26.0 120,26.0", "flat at the bottom");
        assert_eq!(points(&[0.0, 0.0]), "0.0,26.0 120.0,26.0");
        assert_eq!(points(&[5.0]), "0,2.0 120,2.0", "one value: a level line");
    }

    #[test]
    fn the_process_card_reads_its_limits_and_warns_near_them() {
        use crate::series::ProcessPoint;
        let mut p = ProcessStats {
            now: ProcessPoint {
                at_ms: 10_000,
                cpu_seconds: 3.0,
                resident_bytes: 3 << 20,
                open_fds: Some(50),
                max_fds: Some(1024),
                connections: 449,
                connections_limit: Some(500),
                start_time_s: Some(7.0),
            },
            since_ms: 9_000,
            cpu: vec![0.25],
            resident: vec![3 << 20, 3 << 20],
        };
        let card = ProcessCard::new(&p, 10_000);
        let read: Vec<_> = card
            .figures
            .iter()
            .map(|f| (f.key, f.value.as_str(), f.warn))
            .collect();
        assert_eq!(
            read,
            [
                ("cpu", "25%", false),
                ("memory", "3.0 MiB", false),
                ("files", "50 of 1024", false),
                ("connections", "449 of 500", false),
                ("up", "3.0s", false),
            ]
        );
        assert!(!card.alert());
        p.now.connections = 450;
        let card = ProcessCard::new(&p, 10_000);
        assert!(card.alert(), "at nine tenths of the cap");
        p.now.connections_limit = None;
        p.now.open_fds = None;
        p.now.start_time_s = None;
        let card = ProcessCard::new(&p, 16_000);
        let keys: Vec<_> = card
            .figures
            .iter()
            .map(|f| (f.key, f.value.as_str()))
            .collect();
        assert_eq!(
            keys[2..],
            [("files", "–"), ("connections", "450")],
            "no count read, the figure kept; no cap, no `of`; no start, no uptime"
        );
        assert!(card.stale, "a sample six seconds old");
        assert!(!ProcessCard::new(&p, 10_000).stale);
    }

    #[test]
    fn its_title_reads_out_latest_min_max_and_span() {
        let t = title("conn/s", &[1.0, 3.24, 0.5, 2.0], 83_000, |v| {
            format!("{v:.1}")
        });
        assert_eq!(
            t,
            "conn/s: latest 2.0, min 0.5, max 3.2 over the last 1m 23s"
        );
        assert_eq!(
            title("pending", &[], 0, |v| v.to_string()),
            "pending: no samples yet"
        );
        assert_eq!(
            title("pending", &[4.0], 0, |v| v.to_string()),
            "pending: latest 4, min 4, max 4"
        );
    }
}
