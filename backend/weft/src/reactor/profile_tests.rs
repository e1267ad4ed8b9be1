use std::panic::Location;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

/// A fixed wall clock: the start of a bucket, well after the epoch.
fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

#[track_caller]
fn here() -> &'static Location<'static> {
    Location::caller()
}

fn method(i: usize) -> Site {
    Site::Method {
        type_name: Box::leak(format!("Proto{i}").into_boxed_str()),
        method: "data_received",
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn a_site_counts_its_calls_and_time_in_the_current_bucket() {
    let table = Arc::new(Table::new(at(0)));
    let site = here();
    for _ in 0..3 {
        table.record(Site::Line(site), SiteKind::Callback, ms(2));
    }
    let snap = snapshot_of(&[table], at(5));
    assert_eq!(snap.sites.len(), 1);
    let p = &snap.sites[0];
    assert!(matches!(p.site, Site::Line(l) if std::ptr::eq(l, site)));
    assert_eq!((p.count, p.busy), (3, ms(6)));
    assert_eq!(p.series_nanos.len(), BUCKETS);
    assert_eq!(p.series_nanos[BUCKETS - 1], 6_000_000);
}

#[test]
fn buckets_roll_with_the_clock_and_leave_the_window() {
    let table = Arc::new(Table::new(at(0)));
    let site = Site::Line(here());
    table.record(site, SiteKind::Timer, ms(1));
    table.tick(at(BUCKET_SECS));
    table.record(site, SiteKind::Timer, ms(4));
    let snap = snapshot_of(std::slice::from_ref(&table), at(BUCKET_SECS));
    let series = &snap.sites[0].series_nanos;
    assert_eq!(series[BUCKETS - 2..], [1_000_000, 4_000_000]);
    assert_eq!(snap.last_bucket_start % BUCKET_SECS, 0);

    // A whole window later the ring slot of the first bucket is reused, not added to.
    let later = BUCKET_SECS * BUCKETS as u64;
    table.tick(at(later));
    table.record(site, SiteKind::Timer, ms(7));
    let snap = snapshot_of(std::slice::from_ref(&table), at(later));
    let p = &snap.sites[0];
    assert_eq!(
        (p.count, p.busy),
        (2, ms(11)),
        "the first bucket left the window"
    );
    assert_eq!(p.series_nanos[BUCKETS - 1], 7_000_000);

    // With nothing recorded for a whole window the site drops out.
    let snap = snapshot_of(&[table], at(later + BUCKET_SECS * BUCKETS as u64 + 1));
    assert!(snap.sites.is_empty());
}

#[test]
fn the_busiest_site_comes_first() {
    let table = Arc::new(Table::new(at(0)));
    let (a, b, c) = (method(1), method(2), Site::Line(here()));
    table.record(a, SiteKind::Protocol, ms(1));
    table.record(b, SiteKind::Protocol, ms(30));
    for _ in 0..5 {
        table.record(c, SiteKind::Callback, ms(2));
    }
    let snap = snapshot_of(&[table], at(1));
    let order: Vec<String> = snap.sites.iter().map(|p| p.site.to_string()).collect();
    assert_eq!(order[0], "Proto2::data_received");
    assert!(order[1].contains("profile_tests.rs"), "{order:?}");
    assert_eq!(order[2], "Proto1::data_received");
}

#[test]
fn a_flood_of_distinct_sites_is_capped_and_counted() {
    let table = Arc::new(Table::new(at(0)));
    let extra = 100;
    for i in 0..MAX_SITES + extra {
        table.record(method(i), SiteKind::Protocol, ms(1));
    }
    let snap = snapshot_of(&[table], at(1));
    assert!(snap.sites.len() <= MAX_SITES);
    let kept: u64 = snap.sites.iter().map(|p| p.count).sum();
    let overflow: u64 = snap.overflow_calls.iter().sum();
    assert!(
        overflow >= extra as u64,
        "{overflow} calls counted as overflow"
    );
    assert_eq!(
        kept + overflow,
        (MAX_SITES + extra) as u64,
        "no call is lost"
    );
}

#[test]
fn the_longest_call_since_the_last_look_is_named_once() {
    let table = Table::new(at(0));
    let slow = here();
    table.record(Site::Line(here()), SiteKind::Callback, ms(3));
    table.record(Site::Line(slow), SiteKind::Timer, ms(250));
    table.record(Site::Line(here()), SiteKind::Callback, ms(4));
    let longest = table.take_longest().expect("calls were recorded");
    assert!(matches!(longest.site, Site::Line(l) if std::ptr::eq(l, slow)));
    assert_eq!((longest.kind, longest.took), (SiteKind::Timer, ms(250)));
    assert!(table.take_longest().is_none(), "forgotten once taken");
}

#[test]
fn a_thread_without_a_reactor_keeps_no_profile() {
    std::thread::spawn(|| {
        record(Site::Line(here()), SiteKind::Callback, ms(1));
        assert!(take_longest().is_none());
    })
    .join()
    .unwrap();
}

#[test]
fn a_call_is_charged_its_own_time_not_that_of_the_calls_inside_it() {
    std::thread::spawn(|| {
        install();
        let (timer, callback) = (here(), here());
        let outer = enter();
        let inner = enter();
        inner.exit(Site::Line(callback), SiteKind::Callback, ms(300));
        outer.exit(Site::Line(timer), SiteKind::Timer, ms(302));
        let longest = take_longest().expect("calls were recorded");
        assert!(matches!(longest.site, Site::Line(l) if std::ptr::eq(l, callback)));
        assert_eq!(longest.took, ms(300));
        let snap = snapshot();
        let busy = |site: &'static Location<'static>| {
            snap.sites
                .iter()
                .find(|p| matches!(p.site, Site::Line(l) if std::ptr::eq(l, site)))
                .map(|p| p.busy)
        };
        assert_eq!(busy(callback), Some(ms(300)));
        assert_eq!(
            busy(timer),
            Some(ms(2)),
            "the timer is charged only its own time"
        );
    })
    .join()
    .unwrap();
}

#[test]
fn calls_timed_on_the_thread_profile_at_hand_nest_as_spans_do() {
    std::thread::spawn(|| {
        install();
        let (outer_site, inner_site) = (here(), here());
        with_thread(|thread| {
            let thread = thread.expect("the thread is running");
            let outer = thread.enter();
            // A call inside, timed the other way: both ways share the thread's state.
            let inner = enter();
            inner.exit(Site::Line(inner_site), SiteKind::Callback, ms(40));
            thread.exit(
                outer,
                Site::Line(outer_site),
                SiteKind::Callback,
                45_000_000,
            );
        });
        let snap = snapshot();
        let busy = |site: &'static Location<'static>| {
            snap.sites
                .iter()
                .find(|p| matches!(p.site, Site::Line(l) if std::ptr::eq(l, site)))
                .map(|p| p.busy)
        };
        assert_eq!(busy(inner_site), Some(ms(40)));
        assert_eq!(busy(outer_site), Some(ms(5)), "charged only its own time");
    })
    .join()
    .unwrap();
}
