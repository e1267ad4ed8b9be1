//! How figures read on a page: the same rules as `frontend/static/fmt.js`.

/// `1536` → `1.5 KiB`.
pub fn bytes(n: &u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = *n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `83_000` ms → `1m 23s`; under a second in milliseconds.
pub fn age(ms: &u64) -> String {
    let ms = *ms;
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match s {
        0..60 => format!("{}.{}s", s, (ms % 1000) / 100),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// A per-second rate: one decimal below 100, none from there.
pub fn rate(v: &f64) -> String {
    if *v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Microseconds → `12µs`, `3.4ms`, `1.20s`.
pub fn micros(us: &i64) -> String {
    let us = *us;
    if us < 1000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1e3)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

/// [`micros`] of an unsigned count (a task's busy and idle time).
pub fn micros_u64(us: &u64) -> String {
    micros(&i64::try_from(*us).unwrap_or(i64::MAX))
}

/// Unix milliseconds → `HH:MM:SS.mmm` UTC, the time of day a log line would show.
pub fn clock(ms: &i64) -> String {
    let ms = ms.rem_euclid(86_400_000);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        (ms / 60_000) % 60,
        (ms / 1000) % 60,
        ms % 1000
    )
}

/// Milliseconds with a precision that suits them (`0.42 ms`, `12.5 ms`, `1200 ms`), or
/// `–` for none.
pub fn millis(ms: &Option<f64>) -> String {
    match *ms {
        None => "–".into(),
        Some(ms) if ms < 1.0 => format!("{ms:.2} ms"),
        Some(ms) if ms < 100.0 => format!("{ms:.1} ms"),
        Some(ms) => format!("{ms:.0} ms"),
    }
}

/// Milliseconds measured → as [`millis`] writes them.
pub fn ms(v: &f64) -> String {
    millis(&Some(*v))
}

/// A share → `75%`, `–` for none.
pub fn percent(share: &Option<f64>) -> String {
    match *share {
        None => "–".into(),
        Some(s) => format!("{:.0}%", s * 100.0),
    }
}

/// A count the service may not track: `–` for none.
pub fn maybe(n: &Option<u64>) -> String {
    n.map_or_else(|| "–".into(), |n| n.to_string())
}

/// Percent-encodes `s` for a query string value.
pub fn url(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_like_an_operator_expects() {
        assert_eq!(bytes(&12), "12 B");
        assert_eq!(bytes(&1536), "1.5 KiB");
        assert_eq!(age(&250), "250ms");
        assert_eq!(age(&83_000), "1m 23s");
        assert_eq!(age(&7_200_000), "2h 0m");
        assert_eq!(micros(&1500), "1.5ms");
        assert_eq!(rate(&2.25), "2.2");
        assert_eq!(rate(&1234.5), "1234");
        assert_eq!(clock(&(3_600_000 + 61_001)), "01:01:01.001");
        assert_eq!(url("a b/é"), "a%20b%2F%C3%A9");
        assert_eq!(millis(&Some(0.4219)), "0.42 ms");
        assert_eq!(millis(&Some(12.54)), "12.5 ms");
        assert_eq!(millis(&Some(1234.0)), "1234 ms");
        assert_eq!(millis(&None), "–");
        assert_eq!(maybe(&None), "–");
    }
}
