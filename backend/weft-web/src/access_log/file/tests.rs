use std::io::Read;
use std::sync::atomic::AtomicU64;

use weft_test_support::eventually;

use super::*;

#[derive(Default)]
struct Counted {
    queue_full: AtomicU64,
    write: AtomicU64,
    closed: AtomicU64,
}

impl LossRecorder for Counted {
    fn lost(&self, reason: LogLoss, lines: u64) {
        let counter = match reason {
            LogLoss::QueueFull => &self.queue_full,
            LogLoss::Write => &self.write,
            LogLoss::Closed => &self.closed,
        };
        counter.fetch_add(lines, Ordering::Relaxed);
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn lines_are_written_within_a_second_and_the_rest_at_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let files = AccessLogFiles::default();
    let losses = Arc::new(Counted::default());
    let file = files.open(&path, losses.clone()).unwrap();
    let start = Instant::now();
    file.write_line("one".into());
    eventually("the first line is written", || lines(&path) == ["one"]);
    assert!(start.elapsed() < FLUSH_EVERY + Duration::from_millis(500));

    file.write_line("two".into());
    file.write_line("three".into());
    assert!(files.close(Duration::from_secs(5)), "the writer ends");
    assert_eq!(lines(&path), ["one", "two", "three"]);
    file.write_line("late".into());
    assert_eq!(losses.closed.load(Ordering::Relaxed), 1);
    assert_eq!(lines(&path).len(), 3);
}

#[test]
fn reopen_sends_earlier_lines_to_the_renamed_file_and_later_ones_to_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let files = AccessLogFiles::default();
    let file = files.open(&path, Arc::new(NoRecorder)).unwrap();
    file.write_line("a".into());
    file.write_line("b".into());
    std::fs::rename(&path, &rotated).unwrap();
    file.write_line("c".into());
    assert_eq!(files.reopen(), 1);
    file.write_line("d".into());
    assert!(files.close(Duration::from_secs(5)));
    assert_eq!(lines(&rotated), ["a", "b", "c"]);
    assert_eq!(lines(&path), ["d"]);
}

#[test]
fn a_failing_write_is_counted_and_nothing_stops() {
    let files = AccessLogFiles::default();
    let losses = Arc::new(Counted::default());
    let file = files.open("/dev/full", losses.clone()).unwrap();
    for _ in 0..3 {
        file.write_line("lost".into());
    }
    assert!(files.close(Duration::from_secs(5)));
    assert_eq!(losses.write.load(Ordering::Relaxed), 3);
}

#[test]
fn files_no_service_holds_are_let_go() {
    let dir = tempfile::tempdir().unwrap();
    let files = AccessLogFiles::default();
    let kept = files
        .open(dir.path().join("kept.log"), Arc::new(NoRecorder))
        .unwrap();
    let gone = files
        .open(dir.path().join("gone.log"), Arc::new(NoRecorder))
        .unwrap();
    gone.write_line("last".into());
    drop(gone);
    assert_eq!(files.reopen(), 1, "only the file in use is reopened");
    eventually("the unused writer wrote its line and ended", || {
        lines(&dir.path().join("gone.log")) == ["last"] && {
            files.reopen();
            lock(&files.files).len() == 1
        }
    });
    drop(kept);
}

/// Hands `total` lines of `len` bytes to a file whose reader reads nothing until all are
/// handed over, checking that no hand-over blocked and that every line was written or
/// counted; returns (lines dropped as `queue_full`, lines written).
fn fill_a_stuck_writer(len: usize, total: u64) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("slow.log");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // The reader opens at once (so the writer's open returns) and reads only when told.
    let (go, wait) = mpsc::channel::<()>();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut pipe = File::open(fifo).unwrap();
            wait.recv().unwrap();
            let mut all = String::new();
            pipe.read_to_string(&mut all).unwrap();
            all.lines().count() as u64
        })
    };
    let files = AccessLogFiles::default();
    let losses = Arc::new(Counted::default());
    let file = files.open(&fifo, losses.clone()).unwrap();
    let line = "x".repeat(len);
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    for _ in 0..total {
        let one = Instant::now();
        file.write_line(line.clone());
        slowest = slowest.max(one.elapsed());
    }
    let took = start.elapsed();
    let dropped = losses.queue_full.load(Ordering::Relaxed);
    assert!(
        slowest < Duration::from_millis(50) && took < Duration::from_secs(2),
        "handing lines over blocked: slowest {slowest:?}, all {took:?}"
    );

    go.send(()).unwrap();
    drop(file);
    assert!(files.close(Duration::from_secs(10)));
    let written = reader.join().unwrap();
    assert_eq!(written + dropped, total, "every line written or counted");
    assert_eq!(losses.write.load(Ordering::Relaxed), 0);
    (dropped, written)
}

#[test]
fn a_writer_that_cannot_keep_up_never_blocks_the_caller() {
    let (dropped, _) = fill_a_stuck_writer(100, 60_000);
    assert!(dropped > 0, "the queue filled up");
}

#[test]
fn what_waits_for_a_stuck_writer_is_bounded_in_bytes_however_long_the_lines() {
    // As long as a request head allows (a 16 KiB User-Agent): bounding the queue by a
    // count of lines would let a few clients park hundreds of MiB in it.
    let len = 16 * 1024;
    let total = (4 * QUEUE_BYTES / len) as u64;
    let (dropped, written) = fill_a_stuck_writer(len, total);
    assert!(dropped > 0, "the queue filled up");
    // Held while stuck: the queue, the writer's buffer (it writes once it holds 64 KiB,
    // so up to one line more) and the pipe (64 KiB).
    let held = QUEUE_BYTES + BUFFER_BYTES + len + 64 * 1024;
    assert!(
        written * (len as u64 + 1) <= held as u64,
        "{written} lines of {len} bytes waited, more than {held} bytes"
    );
}
