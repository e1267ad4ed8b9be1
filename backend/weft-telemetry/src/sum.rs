//! Summing the families of several registries into one exposition: a service kind's
//! families made once per reactor render as one series per label set, as with a single
//! reactor, so nothing on `/metrics` changes shape with the number of reactors.

use prometheus::proto::{Metric, MetricFamily, MetricType};

/// Adds `more` into `families`: a series whose family and labels are there already has
/// its values added (counters, gauges, histograms with the same buckets); anything else is
/// appended. `families` stays sorted by name.
pub(crate) fn add_families(families: &mut Vec<MetricFamily>, more: Vec<MetricFamily>) {
    for family in more {
        match families.iter_mut().find(|f| f.name() == family.name()) {
            Some(into) => {
                for metric in family.get_metric() {
                    add_metric(into, metric);
                }
            }
            None => families.push(family),
        }
    }
    families.sort_by(|a, b| a.name().cmp(b.name()));
}

fn same_labels(a: &Metric, b: &Metric) -> bool {
    let (a, b) = (a.get_label(), b.get_label());
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.name() == y.name() && x.value() == y.value())
}

fn add_metric(family: &mut MetricFamily, metric: &Metric) {
    let kind = family.get_field_type();
    let Some(into) = family
        .mut_metric()
        .iter_mut()
        .find(|m| same_labels(m, metric))
    else {
        family.mut_metric().push(metric.clone());
        return;
    };
    match kind {
        MetricType::COUNTER => {
            let mut counter = into.get_counter().clone();
            counter.set_value(counter.get_value() + metric.get_counter().get_value());
            into.set_counter(counter);
        }
        MetricType::GAUGE => {
            let mut gauge = into.get_gauge().clone();
            gauge.set_value(gauge.get_value() + metric.get_gauge().get_value());
            into.set_gauge(gauge);
        }
        MetricType::HISTOGRAM => {
            let (mut h, add) = (into.get_histogram().clone(), metric.get_histogram());
            h.set_sample_count(h.get_sample_count() + add.get_sample_count());
            h.set_sample_sum(h.get_sample_sum() + add.get_sample_sum());
            let buckets = h
                .get_bucket()
                .iter()
                .zip(add.get_bucket())
                .map(|(b, more)| {
                    let mut b = b.clone();
                    b.set_cumulative_count(b.cumulative_count() + more.cumulative_count());
                    b
                })
                .collect();
            h.set_bucket(buckets);
            into.set_histogram(h);
        }
        _ => family.mut_metric().push(metric.clone()),
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{IntCounterVec, Opts, Registry};

    use super::*;

    #[test]
    fn series_with_the_same_labels_are_added_and_others_kept() {
        let (a, b) = (Registry::new(), Registry::new());
        for (registry, n) in [(&a, 2), (&b, 3)] {
            let vec = IntCounterVec::new(Opts::new("x_total", "x"), &["service"]).unwrap();
            registry.register(Box::new(vec.clone())).unwrap();
            vec.with_label_values(&["web"]).inc_by(n);
            if n == 3 {
                vec.with_label_values(&["dns"]).inc();
            }
        }
        let mut families = a.gather();
        add_families(&mut families, b.gather());
        assert_eq!(families.len(), 1);
        let values: Vec<_> = families[0]
            .get_metric()
            .iter()
            .map(|m| {
                (
                    m.get_label()[0].value().to_owned(),
                    m.get_counter().get_value(),
                )
            })
            .collect();
        assert_eq!(values, [("web".to_owned(), 5.0), ("dns".to_owned(), 1.0)]);
    }
}
