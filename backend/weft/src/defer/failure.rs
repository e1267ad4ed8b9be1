//! [`Failure`]: an error on its way down a chain, with where it was created.

use std::backtrace::Backtrace;
use std::error::Error;
use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use super::events::Site;

static DEBUGGING: AtomicBool = AtomicBool::new(false);

/// Turns backtrace capture on or off for new failures (Twisted's `setDebugging`).
///
/// Off by default: a failure always knows the file and line that created it, which is
/// enough to find most problems; a backtrace costs microseconds per failure.
pub fn set_debugging(on: bool) {
    DEBUGGING.store(on, Relaxed);
}

/// Whether new failures capture a backtrace.
pub fn debugging() -> bool {
    DEBUGGING.load(Relaxed)
}

/// An error travelling down a Deferred's errback path (Twisted's `Failure`).
///
/// Wraps any `std::error::Error + 'static`, remembers its type name and the file and
/// line that created it (`#[track_caller]`, so `?` in a callback records the `?`), and
/// a backtrace when [`set_debugging`] is on. Any error converts into a `Failure` with
/// `?` or `.into()`.
///
/// ```
/// use weft::defer::{Failure, TimeoutError};
/// use std::time::Duration;
///
/// let failure = Failure::new(TimeoutError { after: Duration::from_secs(1) });
/// assert!(failure.check::<TimeoutError>());
/// assert_eq!(failure.type_name(), "TimeoutError");
/// assert!(failure.site().file().ends_with(".rs"));
/// let err: TimeoutError = failure.trap().unwrap();
/// assert_eq!(err.after, Duration::from_secs(1));
/// ```
pub struct Failure {
    /// One pointer wide: a failure travels through every step's result slot, and a
    /// small step keeps the chain's allocations in the allocator's fast bins.
    inner: Box<Inner>,
}

struct Inner {
    error: Box<dyn Error + 'static>,
    /// The error's short type name, taken when the failure is made because it cannot be recovered
    /// from the boxed error.
    type_name: &'static str,
    /// Where the failure was made, reported with an unhandled failure.
    site: &'static Location<'static>,
    /// Captured only while `set_debugging` is on, since a capture costs far more than the failure
    /// itself.
    backtrace: Option<Box<Backtrace>>,
}

impl Failure {
    /// Wraps `error`, recording the caller as the failure's site.
    #[track_caller]
    pub fn new<E: Error + 'static>(error: E) -> Self {
        Self::with_site(error, Location::caller())
    }

    /// Wraps `error` with an explicit site (for failures created on someone's behalf).
    pub fn with_site<E: Error + 'static>(error: E, site: &'static Location<'static>) -> Self {
        Self::from_parts(Box::new(error), short_type_name::<E>(), site)
    }

    /// Wraps an already boxed error.
    #[track_caller]
    pub fn from_boxed(error: Box<dyn Error + 'static>) -> Self {
        Self::from_parts(error, "dyn Error", Location::caller())
    }

    /// A failure carrying only a message.
    #[track_caller]
    pub fn msg(message: impl Into<String>) -> Self {
        Self::with_site(Message(message.into()), Location::caller())
    }

    fn from_parts(
        error: Box<dyn Error + 'static>,
        type_name: &'static str,
        site: &'static Location<'static>,
    ) -> Self {
        let backtrace = debugging().then(|| Box::new(Backtrace::force_capture()));
        Self {
            inner: Box::new(Inner {
                error,
                type_name,
                site,
                backtrace,
            }),
        }
    }

    /// The wrapped error's type, without its module path (`TimeoutError`).
    pub fn type_name(&self) -> &'static str {
        self.inner.type_name
    }

    /// Where the failure was created.
    pub fn site(&self) -> Site {
        Site(self.inner.site)
    }

    /// The backtrace captured when debugging was on.
    pub fn backtrace(&self) -> Option<&Backtrace> {
        self.inner.backtrace.as_deref()
    }

    /// The wrapped error.
    pub fn error(&self) -> &(dyn Error + 'static) {
        &*self.inner.error
    }

    /// Whether the wrapped error is an `E` (Twisted's `check`).
    pub fn check<E: Error + 'static>(&self) -> bool {
        self.inner.error.is::<E>()
    }

    /// The wrapped error as an `E`, if it is one.
    pub fn downcast_ref<E: Error + 'static>(&self) -> Option<&E> {
        self.inner.error.downcast_ref()
    }

    /// Takes the error out if it is an `E`; otherwise gives the failure back, so an
    /// errback can write `failure.trap::<E>()?` to pass every other error on
    /// (Twisted's `trap`).
    pub fn trap<E: Error + 'static>(self) -> Result<E, Failure> {
        let Inner {
            error,
            type_name,
            site,
            backtrace,
        } = *self.inner;
        match error.downcast::<E>() {
            Ok(error) => Ok(*error),
            Err(error) => Err(Self {
                inner: Box::new(Inner {
                    error,
                    type_name,
                    site,
                    backtrace,
                }),
            }),
        }
    }

    /// The wrapped error, boxed.
    pub fn into_error(self) -> Box<dyn Error + 'static> {
        self.inner.error
    }
}

impl<E: Error + 'static> From<E> for Failure {
    #[track_caller]
    fn from(error: E) -> Self {
        Self::new(error)
    }
}

/// A Failure leaves through `?` into a `Box<dyn Error>` (what `main` or a test may
/// return): said as the Failure is, with its type and site; its error's causes follow.
impl From<Failure> for Box<dyn Error + 'static> {
    fn from(failure: Failure) -> Self {
        Box::new(Escaped(failure))
    }
}

/// A [`Failure`] as a `dyn Error`.
struct Escaped(Failure);

impl fmt::Display for Escaped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Escaped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl Error for Escaped {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.inner.error.source()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (at {})",
            self.inner.type_name,
            self.inner.error,
            self.site()
        )
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut said = format!("Failure({self}");
        append_causes(&mut said, self.inner.error.source(), "; caused by: ");
        f.write_str(&said)?;
        f.write_str(")")?;
        if let Some(backtrace) = &self.inner.backtrace {
            write!(f, "\n{backtrace}")?;
        }
        Ok(())
    }
}

/// Appends to `said` the chain of causes from `cause` on, each after `separator`, but
/// for those whose text `said` holds already: many errors name their cause in their own
/// message and hand it on as their source too, and following the chain blindly would say
/// it twice ("cannot listen on tcp:80: Address already in use: Address already in use").
pub fn append_causes(
    said: &mut String,
    mut cause: Option<&(dyn Error + 'static)>,
    separator: &str,
) {
    while let Some(error) = cause {
        let text = error.to_string();
        if !said.contains(&text) {
            said.push_str(separator);
            said.push_str(&text);
        }
        cause = error.source();
    }
}

/// `my_crate::module::Type<Param>` → `Type<Param>`; computed per type, cached by the compiler.
fn short_type_name<E>() -> &'static str {
    let full = std::any::type_name::<E>();
    let end = full.find('<').unwrap_or(full.len());
    match full[..end].rfind("::") {
        Some(i) => &full[i + 2..],
        None => full,
    }
}

/// The error inside [`Failure::msg`].
#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for Message {}

/// The Deferred was cancelled before it had a result (Twisted's `CancelledError`).
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("the Deferred was cancelled")]
#[non_exhaustive]
pub struct CancelledError;

/// The Deferred did not fire within its timeout (`add_timeout`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the Deferred timed out after {after:?}")]
pub struct TimeoutError {
    /// The timeout that expired.
    pub after: std::time::Duration,
}

/// The Deferred already has a result (Twisted's `AlreadyCalledError`).
///
/// A [`Resolver`](super::Resolver) is consumed when it fires, so firing twice does not
/// compile; this is what [`Resolver::try_callback`](super::Resolver::try_callback) reports
/// when a cancellation or timeout fired the Deferred first.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("the Deferred already has a result")]
#[non_exhaustive]
pub struct AlreadyCalledError;

/// What awaiting a Deferred that can never fire gives: its firing side (a
/// [`Resolver`](super::Resolver)), or that of a Deferred its chain waits on, was dropped
/// unfired. The leak is reported where it happened, with the site that made it.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("the Deferred can never fire: a firing side it waits on was dropped unfired")]
#[non_exhaustive]
pub struct LeakedError;

/// A [`DeferredQueue`](super::DeferredQueue) is full; the item not taken is handed back
/// (Twisted's `QueueOverflow` drops it), as a full channel's send error does.
#[derive(Clone, PartialEq, Eq)]
pub struct QueueOverflow<T> {
    /// The queue's size limit.
    pub size: usize,
    /// The item that was not taken.
    pub item: T,
}

impl<T> QueueOverflow<T> {
    /// The item that was not taken.
    pub fn into_item(self) -> T {
        self.item
    }
}

impl<T> fmt::Debug for QueueOverflow<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueOverflow")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for QueueOverflow<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the queue is full ({} items)", self.size)
    }
}

impl<T> Error for QueueOverflow<T> {}

/// Too many `get`s are already waiting on a [`DeferredQueue`](super::DeferredQueue).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("too many pending gets ({backlog} waiting)")]
pub struct QueueUnderflow {
    /// The queue's backlog limit.
    pub backlog: usize,
}

/// A callback panicked; the panic became this failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("callback panicked: {message}")]
pub struct PanicError {
    /// The panic's message.
    pub message: String,
}

/// One Deferred of a list failed first (Twisted's `FirstError`).
#[derive(Debug, thiserror::Error)]
#[error("Deferred #{index} failed: {failure}")]
pub struct FirstError {
    /// Its position in the list.
    pub index: usize,
    /// Its failure.
    pub failure: Failure,
}

/// Every Deferred in a `race` failed (Twisted's `FailureGroup`).
#[derive(Debug, thiserror::Error)]
#[error("all {} Deferreds failed", failures.len())]
pub struct FailureGroup {
    /// Each one's failure, in list order.
    pub failures: Vec<Failure>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("disk on fire")]
    struct DiskError;

    fn read() -> Result<(), Failure> {
        Err(DiskError)?;
        Ok(())
    }

    #[test]
    fn its_debug_form_gives_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot save: {source}")]
        struct Named {
            source: DiskError,
        }
        #[derive(Debug, thiserror::Error)]
        #[error("cannot save")]
        struct Unnamed {
            #[source]
            cause: DiskError,
        }
        let named = format!("{:?}", Failure::new(Named { source: DiskError }));
        assert_eq!(named.matches("disk on fire").count(), 1, "{named}");
        let unnamed = format!("{:?}", Failure::new(Unnamed { cause: DiskError }));
        assert!(unnamed.contains("cannot save (at "), "{unnamed}");
        assert!(unnamed.contains("; caused by: disk on fire)"), "{unnamed}");
    }

    #[test]
    fn question_mark_records_the_line_of_the_question_mark() {
        let failure = read().unwrap_err();
        assert_eq!(failure.type_name(), "DiskError");
        assert!(failure.site().file().ends_with("failure.rs"));
        let line = failure.site().line();
        let source = include_str!("failure.rs");
        let text = source.lines().nth(line as usize - 1).unwrap();
        assert!(text.contains("Err(DiskError)?"), "site points at {text:?}");
        assert_eq!(
            failure.to_string(),
            format!("DiskError: disk on fire (at {})", failure.site())
        );
    }

    #[test]
    fn a_failure_leaves_through_question_mark_as_a_boxed_error() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot save")]
        struct Saving {
            #[source]
            cause: DiskError,
        }
        fn main_like() -> Result<(), Box<dyn Error>> {
            Err(Failure::new(Saving { cause: DiskError }))?;
            Ok(())
        }
        let error = main_like().unwrap_err();
        assert!(
            error.to_string().starts_with("Saving: cannot save (at "),
            "{error}"
        );
        assert_eq!(error.source().unwrap().to_string(), "disk on fire");
    }

    #[test]
    fn trap_returns_the_error_or_gives_the_failure_back() {
        let failure = Failure::new(DiskError);
        let failure = failure.trap::<CancelledError>().unwrap_err();
        assert!(failure.check::<DiskError>());
        assert!(!failure.check::<CancelledError>());
        assert!(failure.downcast_ref::<DiskError>().is_some());
        assert!(failure.trap::<DiskError>().is_ok());
    }

    #[test]
    fn backtraces_only_when_debugging() {
        assert!(Failure::msg("plain").backtrace().is_none());
        set_debugging(true);
        let f = Failure::msg("traced");
        set_debugging(false);
        assert!(f.backtrace().is_some());
        assert_eq!(f.type_name(), "Message");
    }
}
