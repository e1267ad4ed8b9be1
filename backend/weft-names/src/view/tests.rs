use hickory_proto::rr::Name;

use super::*;

fn answered(q: &Query, rcode: ResponseCode) -> Answered<'_> {
    Answered {
        at: Instant::now(),
        client: Some("127.0.0.1:5000".parse().unwrap()),
        query: Some(q),
        rcode,
        latency: Duration::from_micros(30),
        source: Source::Zone,
        span: None,
    }
}

fn q(name: &str) -> Query {
    Query::query(Name::from_ascii(name).unwrap(), RecordType::A)
}

#[test]
fn the_ring_keeps_the_last_queries_newest_first() {
    let figures = QueryFigures::default();
    for i in 0..(RECENT + 5) {
        figures.record(&answered(&q(&format!("n{i}.test.")), ResponseCode::NoError));
    }
    let read = figures.read();
    assert_eq!(read.recent.len(), RECENT);
    assert_eq!(read.recent[0].name, format!("n{}.test.", RECENT + 4));
    assert_eq!(read.recent[RECENT - 1].name, "n5.test.");
}

#[test]
fn the_top_list_is_bounded_and_keeps_the_heavy_names_whatever_else_comes() {
    let mut top = TopNames::default();
    for i in 0..(TOP_NAMES * 5) {
        top.count("heavy.test.", 1);
        top.count(&format!("once{i}.test."), 1);
        if i % 2 == 0 {
            top.count("medium.test.", 1);
        }
    }
    assert_eq!(top.tracked.len(), TOP_NAMES, "bounded");
    assert_eq!(top.index.len(), TOP_NAMES, "the index follows");
    let list = top.top();
    assert_eq!(list[0], ("heavy.test.".to_owned(), (TOP_NAMES * 5) as u64));
    assert_eq!(list[1].0, "medium.test.");
    assert!(list[1].1 >= (TOP_NAMES * 5 / 2) as u64, "{:?}", list[1]);
}

#[test]
fn the_log_keeps_failures_and_samples_past_its_budget_counting_the_rest() {
    let figures = QueryFigures::default();
    let logged = Arc::new(Mutex::new(Vec::new()));
    let sink = logged.clone();
    let skipped = IntCounter::new("skipped", "skipped").unwrap();
    let failures_skipped = IntCounter::new("failures_skipped", "skipped").unwrap();
    figures.set_log(
        Arc::new(move |q| sink.lock().unwrap().push(q)),
        10,
        [skipped.clone(), failures_skipped.clone()],
    );
    let query = q("Www.Example.test.");
    for _ in 0..210 {
        figures.record(&answered(&query, ResponseCode::NoError));
    }
    for _ in 0..50 {
        figures.record(&answered(&query, ResponseCode::ServFail));
    }
    let log = logged.clone();
    let logged = logged.lock().unwrap();
    let routine = logged.iter().filter(|q| !q.failed).count();
    let failed = logged.iter().filter(|q| q.failed).count();
    // All within one second: 10 within the budget, then 1 in 100 of the other 200.
    assert_eq!((routine, failed), (12, 50), "every failure is kept");
    assert_eq!(skipped.get(), 198);
    let sampled: Vec<_> = logged.iter().filter(|q| q.weight > 1).collect();
    assert_eq!(sampled.len(), 2);
    assert_eq!(sampled[0].weight, LOG_SAMPLE_EVERY as u32);
    assert_eq!(logged[0].name, "Www.Example.test.");
    assert_eq!(
        (logged[0].qtype.as_str(), logged[0].rcode.as_str()),
        ("A", "NOERROR")
    );
    assert_eq!(failures_skipped.get(), 0);
    drop(logged);

    // A flood of failures: its own budget of 100 a second, then 1 in 100.
    for _ in 0..1050 {
        figures.record(&answered(&query, ResponseCode::Refused));
    }
    let failed = log.lock().unwrap().iter().filter(|q| q.failed).count();
    // 50 before and 50 more within the budget, then 10 of the other 1000 sampled.
    assert_eq!((failed, failures_skipped.get()), (50 + 50 + 10, 990));
    assert_eq!(skipped.get(), 198, "routine answers are counted apart");
}

#[test]
fn past_the_full_rate_answers_are_sampled_and_weighted() {
    let figures = QueryFigures::default();
    let query = q("a.test.");
    let n = FULL_PER_SECOND + 10 * SAMPLE_EVERY;
    for _ in 0..n {
        figures.record(&answered(&query, ResponseCode::NoError));
    }
    let read = figures.read();
    assert_eq!(read.seen, n);
    assert_eq!(read.sampled, FULL_PER_SECOND + 10);
    assert_eq!(read.top[0].1, n, "weights make up for the sampling");
}

#[test]
fn logged_entries_are_held_until_the_hold_passes_or_enough_of_them_wait() {
    let clock = weft::time::Clock::fake();
    let _installed = clock.install();
    let figures = QueryFigures::default();
    let logged = Arc::new(Mutex::new(Vec::new()));
    let sink = logged.clone();
    let skipped = || IntCounter::new("skipped", "skipped").unwrap();
    figures.set_log(
        Arc::new(move |q: LoggedQuery| sink.lock().unwrap().push(q)),
        0,
        [skipped(), skipped()],
    );
    let query = q("www.example.test.");
    let count = || logged.lock().unwrap().len();
    figures.record(&answered(&query, ResponseCode::NoError));
    figures.record(&answered(&query, ResponseCode::ServFail));
    assert_eq!(count(), 0, "held");
    clock.advance(HOLD / 2);
    assert_eq!(count(), 0, "held until the hold passes");
    clock.advance(HOLD / 2);
    assert_eq!(count(), 2, "handed over together");
    assert!(logged.lock().unwrap()[1].failed, "in the order they came");

    // Many at once go without waiting; what is left waits for its own hold.
    for _ in 0..HELD_AT_MOST + 1 {
        figures.record(&answered(&query, ResponseCode::NoError));
    }
    assert_eq!(count(), 2 + HELD_AT_MOST);
    clock.advance(HOLD);
    assert_eq!(count(), 3 + HELD_AT_MOST);

    // What is held when the figures go is handed over then.
    figures.record(&answered(&query, ResponseCode::NoError));
    drop(figures);
    clock.advance(HOLD);
    assert_eq!(count(), 4 + HELD_AT_MOST);
}
