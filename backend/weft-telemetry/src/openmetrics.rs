//! The OpenMetrics text exposition (OpenMetrics 1.0): what `/metrics` answers a scraper
//! that asks for `application/openmetrics-text`, with each latency bucket's exemplar (the
//! trace of a request that landed in it).
//!
//! The metrics library writes only the Prometheus text format, so this writes the same
//! gathered families the OpenMetrics way: a counter's family is named without `_total` and
//! its sample with it, `HELP` escapes quotes too, bucket bounds are canonical numbers
//! (`1.0`), an exemplar follows its bucket's value as
//! `# {trace_id="…",span_id="…"} value timestamp`, and `# EOF` ends the exposition.

use std::fmt::Write;

use prometheus::proto::{LabelPair, Metric, MetricFamily, MetricType};
use weft::observe::exemplar::{Exemplar, ExemplarIndex};

/// The content type of what [`encode`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `families` in the OpenMetrics text format, each histogram series' buckets with the
/// exemplars `exemplars` lists for it, ended by `# EOF`. Families without series are left
/// out, as the Prometheus text encoder leaves them, and so are untyped ones, which the
/// metrics library never makes (and its text encoder refuses).
pub fn encode(families: &[MetricFamily], exemplars: &ExemplarIndex) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let written = families
        .iter()
        .filter(|f| !f.get_metric().is_empty() && f.get_field_type() != MetricType::UNTYPED);
    for family in written {
        let kind = family.get_field_type();
        let name = match kind {
            MetricType::COUNTER => family
                .name()
                .strip_suffix("_total")
                .unwrap_or(family.name()),
            _ => family.name(),
        };
        if !family.help().is_empty() {
            let _ = writeln!(out, "# HELP {name} {}", escape(family.help()));
        }
        let _ = writeln!(out, "# TYPE {name} {}", type_name(kind));
        let traced = kind == MetricType::HISTOGRAM && exemplars.has_family(name);
        for metric in family.get_metric() {
            match kind {
                MetricType::COUNTER => {
                    let value = metric.get_counter().get_value();
                    sample(&mut out, name, "_total", metric, None, value);
                }
                MetricType::GAUGE => {
                    sample(
                        &mut out,
                        name,
                        "",
                        metric,
                        None,
                        metric.get_gauge().get_value(),
                    );
                }
                MetricType::HISTOGRAM => {
                    let kept = traced
                        .then(|| exemplars.find(name, pairs(metric.get_label())))
                        .flatten();
                    histogram(&mut out, name, metric, kept.as_deref().unwrap_or(&[]));
                }
                MetricType::SUMMARY => summary(&mut out, name, metric),
                MetricType::UNTYPED => {}
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

fn type_name(kind: MetricType) -> &'static str {
    match kind {
        MetricType::COUNTER => "counter",
        MetricType::GAUGE => "gauge",
        MetricType::HISTOGRAM => "histogram",
        MetricType::SUMMARY => "summary",
        MetricType::UNTYPED => "unknown",
    }
}

fn pairs(labels: &[LabelPair]) -> impl Iterator<Item = (&str, &str)> + Clone {
    labels.iter().map(|l| (l.name(), l.value()))
}

/// A histogram's buckets (each with its exemplar, by bucket index, if any), `+Inf` last,
/// then its sum and count.
fn histogram(out: &mut String, name: &str, metric: &Metric, exemplars: &[Option<Exemplar>]) {
    let h = metric.get_histogram();
    let buckets = h.get_bucket();
    let mut inf_seen = false;
    for (i, bucket) in buckets.iter().enumerate() {
        let bound = bucket.upper_bound();
        inf_seen |= bound == f64::INFINITY;
        let le = number(bound);
        let count = bucket.cumulative_count() as f64;
        sample(out, name, "_bucket", metric, Some(("le", &le)), count);
        exemplar(out, exemplars.get(i).copied().flatten());
    }
    if !inf_seen {
        let count = h.get_sample_count() as f64;
        sample(out, name, "_bucket", metric, Some(("le", "+Inf")), count);
        exemplar(out, exemplars.get(buckets.len()).copied().flatten());
    }
    sample(out, name, "_sum", metric, None, h.get_sample_sum());
    sample(
        out,
        name,
        "_count",
        metric,
        None,
        h.get_sample_count() as f64,
    );
}

fn summary(out: &mut String, name: &str, metric: &Metric) {
    let s = metric.get_summary();
    for q in s.get_quantile() {
        let quantile = number(q.quantile());
        sample(
            out,
            name,
            "",
            metric,
            Some(("quantile", &quantile)),
            q.value(),
        );
    }
    sample(out, name, "_sum", metric, None, s.sample_sum());
    sample(out, name, "_count", metric, None, s.sample_count() as f64);
}

/// One sample line, without its end when `suffix` is `_bucket` (an exemplar may follow).
fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    metric: &Metric,
    extra: Option<(&str, &str)>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    labels(out, pairs(metric.get_label()).chain(extra));
    out.push(' ');
    out.push_str(&number(value));
    let ms = metric.timestamp_ms();
    if ms != 0 {
        // OpenMetrics timestamps are in seconds.
        let _ = write!(out, " {}", number(ms as f64 / 1000.0));
    }
    if suffix != "_bucket" {
        out.push('\n');
    }
}

/// Ends a bucket's line, with ` # {trace_id="…",span_id="…"} value timestamp` if it has
/// an exemplar.
fn exemplar(out: &mut String, exemplar: Option<Exemplar>) {
    if let Some(e) = exemplar {
        out.push_str(" # {trace_id=\"");
        hex(out, &e.span.trace_id);
        out.push_str("\",span_id=\"");
        hex(out, &e.span.span_id);
        let _ = write!(out, "\"}} {} {:.3}", number(e.value), e.at);
    }
    out.push('\n');
}

fn hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

fn labels<'a>(out: &mut String, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
    let mut separator = '{';
    for (name, value) in pairs {
        out.push(separator);
        out.push_str(name);
        out.push_str("=\"");
        out.push_str(&escape(value));
        out.push('"');
        separator = ',';
    }
    if separator == ',' {
        out.push('}');
    }
}

/// A label value or help text as OpenMetrics escapes it: backslash, double quote and
/// line feed.
fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(['\\', '"', '\n']) {
        return text.into();
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped.into()
}

/// A number as OpenMetrics writes it: `+Inf`, `-Inf`, `NaN`, and whole numbers with a
/// `.0` (the canonical form the spec asks of `le` and `quantile`).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        v.to_string()
    }
}

#[cfg(test)]
#[path = "openmetrics_tests.rs"]
mod tests;
