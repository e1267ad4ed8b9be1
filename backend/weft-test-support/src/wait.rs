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
    eventually_or(DEADLINE, cond, || format!("timed out waiting for {what}"))
}

/// [`eventually`] with its own deadline and a failure message built only on failure.
#[track_caller]
pub fn eventually_or<R: Ready>(
    deadline: Duration,
    mut cond: impl FnMut() -> R,
    message: impl FnOnce() -> String,
) -> R::Output {
    let start = Instant::now();
    loop {
        if let Some(value) = cond().ready() {
            return value;
        }
        if start.elapsed() > deadline {
            panic!("{}", message());
        }
        std::thread::sleep(POLL);
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

/// Retries `$cond` until it holds, failing after [`DEADLINE`] with the formatted message.
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr, $($msg:tt)+) => {
        $crate::wait::eventually_or($crate::wait::DEADLINE, || $cond, || {
            format!("not true after {} s: {}", $crate::wait::DEADLINE.as_secs(), format!($($msg)+))
        })
    };
}
