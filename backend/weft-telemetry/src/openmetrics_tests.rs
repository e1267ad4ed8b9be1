use std::sync::Arc;

use prometheus::core::{Collector, Metric as _};
use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};
use weft::observe::exemplar::{Exemplars, SpanRef};

use super::*;

fn registry() -> Registry {
    Registry::new()
}

fn span(n: u8) -> SpanRef {
    SpanRef {
        trace_id: [n; 16],
        span_id: [n + 1; 8],
    }
}

/// `histogram`'s exemplars, listed in `index` as the services list theirs.
fn traced(histogram: &Histogram, index: &ExemplarIndex, bounds: &[f64]) -> Arc<Exemplars> {
    let metric = histogram.metric();
    let labels = metric.get_label().iter().map(|l| (l.name(), l.value()));
    index.series(&histogram.desc()[0].fq_name, labels, bounds)
}

#[test]
fn a_counter_is_typed_without_total_and_sampled_with_it() {
    let r = registry();
    let c = IntCounterVec::new(Opts::new("weft_x_total", "Things done."), &["kind"]).unwrap();
    r.register(Box::new(c.clone())).unwrap();
    c.with_label_values(&["a"]).inc_by(3);
    let plain = IntCounter::new("weft_plain", "A counter named without _total.").unwrap();
    r.register(Box::new(plain.clone())).unwrap();
    plain.inc();
    let text = encode(&r.gather(), &ExemplarIndex::default());
    assert_eq!(
        text,
        "# HELP weft_plain A counter named without _total.\n\
         # TYPE weft_plain counter\n\
         weft_plain_total 1.0\n\
         # HELP weft_x Things done.\n\
         # TYPE weft_x counter\n\
         weft_x_total{kind=\"a\"} 3.0\n\
         # EOF\n"
    );
}

#[test]
fn a_gauge_keeps_its_name_and_fractions() {
    let r = registry();
    let g = Gauge::with_opts(Opts::new("weft_ratio", "A ratio.").const_label("s", "web")).unwrap();
    let i = IntGauge::new("weft_open", "Open now.").unwrap();
    r.register(Box::new(g.clone())).unwrap();
    r.register(Box::new(i.clone())).unwrap();
    g.set(0.25);
    i.set(-2);
    let text = encode(&r.gather(), &ExemplarIndex::default());
    assert!(
        text.contains("# TYPE weft_open gauge\nweft_open -2.0\n"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE weft_ratio gauge\nweft_ratio{s=\"web\"} 0.25\n"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert_eq!(text.matches("# EOF").count(), 1);
}

#[test]
fn a_histogram_without_exemplars_has_canonical_bounds_sum_and_count() {
    let r = registry();
    let h = Histogram::with_opts(
        HistogramOpts::new("weft_d_seconds", "Durations.").buckets(vec![0.5, 1.0]),
    )
    .unwrap();
    r.register(Box::new(h.clone())).unwrap();
    h.observe(0.25);
    h.observe(3.0);
    let text = encode(&r.gather(), &ExemplarIndex::default());
    assert_eq!(
        text,
        "# HELP weft_d_seconds Durations.\n\
         # TYPE weft_d_seconds histogram\n\
         weft_d_seconds_bucket{le=\"0.5\"} 1.0\n\
         weft_d_seconds_bucket{le=\"1.0\"} 1.0\n\
         weft_d_seconds_bucket{le=\"+Inf\"} 2.0\n\
         weft_d_seconds_sum 3.25\n\
         weft_d_seconds_count 2.0\n\
         # EOF\n"
    );
}

#[test]
fn a_histogram_carries_each_buckets_latest_exemplar_on_its_line() {
    let (r, index) = (registry(), ExemplarIndex::default());
    let opts = |service| {
        HistogramOpts::new("weft_d_seconds", "Durations.")
            .const_label("service", service)
            .buckets(vec![0.5, 1.0])
    };
    let web = Histogram::with_opts(opts("web")).unwrap();
    let api = Histogram::with_opts(opts("api")).unwrap();
    r.register(Box::new(web.clone())).unwrap();
    r.register(Box::new(api.clone())).unwrap();
    let exemplars = traced(&web, &index, &[0.5, 1.0]);
    web.observe(0.25);
    exemplars.record(0.25, span(1));
    web.observe(3.0);
    exemplars.record(3.0, span(3));
    api.observe(0.25);
    let text = encode(&r.gather(), &index);
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix}\n{text}"))
            .to_owned()
    };
    let first = line(r#"weft_d_seconds_bucket{service="web",le="0.5"} 1.0 # {trace_id=""#);
    let (_, tail) = first.split_once(" # ").unwrap();
    let (labels, rest) = tail.split_once("} ").unwrap();
    assert_eq!(
        labels,
        format!(
            "{{trace_id=\"{}\",span_id=\"{}\"",
            "01".repeat(16),
            "02".repeat(8)
        )
    );
    let (value, at) = rest.split_once(' ').unwrap();
    assert_eq!(value, "0.25");
    let at: f64 = at.parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - at).abs() < 60.0, "a timestamp in seconds: {at}");
    assert_eq!(
        line(r#"weft_d_seconds_bucket{service="web",le="1.0"}"#),
        r#"weft_d_seconds_bucket{service="web",le="1.0"} 1.0"#
    );
    assert!(
        line(r#"weft_d_seconds_bucket{service="web",le="+Inf"}"#)
            .contains(&format!("# {{trace_id=\"{}\"", "03".repeat(16))),
        "{text}"
    );
    for l in text.lines().filter(|l| l.contains(r#"service="api""#)) {
        assert!(!l.contains('#'), "an untraced series has none: {l}");
    }
}

#[test]
fn label_values_and_help_are_escaped() {
    let r = registry();
    let g = IntGauge::with_opts(
        Opts::new("weft_g", "Say \"hi\" \\ then\nmore.").const_label("path", "a\"b\\c\nd"),
    )
    .unwrap();
    r.register(Box::new(g.clone())).unwrap();
    let text = encode(&r.gather(), &ExemplarIndex::default());
    assert!(
        text.contains("# HELP weft_g Say \\\"hi\\\" \\\\ then\\nmore.\n"),
        "{text}"
    );
    assert!(
        text.contains("weft_g{path=\"a\\\"b\\\\c\\nd\"} 0.0\n"),
        "{text}"
    );
}

#[test]
fn numbers_are_written_as_openmetrics_reads_them() {
    assert_eq!(number(1.0), "1.0");
    assert_eq!(number(0.0005), "0.0005");
    assert_eq!(number(f64::INFINITY), "+Inf");
    assert_eq!(number(f64::NEG_INFINITY), "-Inf");
    assert_eq!(number(f64::NAN), "NaN");
    assert_eq!(number(1e20), "100000000000000000000");
}
