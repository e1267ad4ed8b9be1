//! Waiting for something another thread or a server does, with a deadline, so a test
//! never sleeps a guessed time and a broken server fails it instead of hanging it.

use std::time::{Duration, Instant};

/// How long a condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// How often a condition is checked again.
const POLL: Duration = Duration::from_millis(5);

/// What a condition gives: whether it holds and, for an `Option`, the value it found.
pub trait Ready {
    /// What [`eventually`] hands back once the condition holds.
    type Output;

    /// `Some` once the condition holds.
    fn ready(self) -> Option<Self::Output>;
}

impl Ready for bool {
    type Output = ();

    fn ready(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Ready for Option<T> {
    type Output = T;

    fn ready(self) -> Option<T> {
        self
    }
}

/// Polls `cond` until it holds (`true`, or `Some` whose value is returned), failing with
/// `what` after [`DEADLINE`].
#[track_caller]
pub fn eventually<R: Ready>(what: &str, cond: impl FnMut() -> R) -> R::Output {
    poll_until(DEADLINE, POLL, cond, || {
        format!("timed out waiting for {what}")
    })
}

/// Polls `f` every 100 ms until it gives a value, for up to `secs` seconds; the failure
/// names `what` and what `context` says then (a log, a process's output). For conditions
/// that run a process or a query each time.
#[track_caller]
pub fn wait_for<T>(
    secs: u64,
    what: &str,
    f: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    poll_until(
        Duration::from_secs(secs),
        Duration::from_millis(100),
        f,
        || format!("not true after {secs} s: {what}\n{}", context()),
    )
}

/// Checks `cond` every `every` until it holds; after `within`, fails with `message()`
/// (built only then).
#[track_caller]
pub fn poll_until<R: Ready>(
    within: Duration,
    every: Duration,
    mut cond: impl FnMut() -> R,
    message: impl FnOnce() -> String,
) -> R::Output {
    let start = Instant::now();
    loop {
        if let Some(value) = cond().ready() {
            return value;
        }
        if start.elapsed() > within {
            panic!("{}", message());
        }
        std::thread::sleep(every);
    }
}

/// [`eventually`] inside a tokio runtime: waits with the runtime's timer, so the tasks
/// that make `cond` true keep running on this thread.
pub async fn eventually_async<R: Ready>(what: &str, mut cond: impl FnMut() -> R) -> R::Output {
    let start = Instant::now();
    loop {
        if let Some(value) = cond().ready() {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Retries `$cond` every 20 ms until it holds, failing after [`DEADLINE`] with the
/// formatted message.
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr, $($msg:tt)+) => {
        $crate::wait::poll_until(
            $crate::wait::DEADLINE,
            ::std::time::Duration::from_millis(20),
            || $cond,
            || {
                format!(
                    "not true after {} s: {}",
                    $crate::wait::DEADLINE.as_secs(),
                    format!($($msg)+)
                )
            },
        )
    };
}
