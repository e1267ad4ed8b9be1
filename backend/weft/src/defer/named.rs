//! Named steps: async code saying where its chain is ("connect upstream", "response
//! head") and what it waits on there, so the inspector can explain a chain that has no
//! callbacks to show.
//!
//! A [`Steps`] handle, taken from the chain's [`Deferred`](super::Deferred) or
//! [`Resolver`](super::Resolver), marks steps; each one ends the previous. A mark writes
//! a few cells of the chain (its name, what it waits on, its detail, the clock) and, only
//! when an observer listens, emits [`DeferredEvent::Named`](super::DeferredEvent::Named):
//! no allocation, whether anyone watches or not, but for a chain the observer has not
//! heard of yet, which keeps the steps it passed (in one small vector) to report them if
//! it is ever announced. Names are `&'static str`, so they are a
//! bounded set; the detail is a [`StepDetail`], at most [`StepDetail::MAX`] bytes, built
//! once (from configuration, say) and shared by reference count.

use std::fmt;
use std::rc::Weak;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::core::Core;
use super::events::{self, DeferredEvent, DeferredId, StepNamed};
use super::registry;
use crate::observe::ConnectionId;

/// What a named step waits on: a connection the chain's work goes through, or another
/// Deferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WaitsOn {
    /// A connection (an upstream the request was sent on, say).
    Connection(ConnectionId),
    /// Another Deferred.
    Deferred(DeferredId),
}

impl WaitsOn {
    /// The connection, if it waits on one.
    pub fn connection(self) -> Option<ConnectionId> {
        match self {
            Self::Connection(c) => Some(c),
            Self::Deferred(_) => None,
        }
    }

    /// The Deferred, if it waits on one.
    pub fn deferred(self) -> Option<DeferredId> {
        match self {
            Self::Deferred(d) => Some(d),
            Self::Connection(_) => None,
        }
    }
}

/// A short free text about a named step (an upstream's name, a route's prefix): at most
/// [`MAX`](Self::MAX) bytes, cut at a character boundary. Cloning it shares the text.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct StepDetail(Text);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Text {
    Static(&'static str),
    Shared(Arc<str>),
}

impl StepDetail {
    /// The longest detail, in bytes; longer text is cut.
    pub const MAX: usize = 128;

    /// `text`, cut to [`MAX`](Self::MAX) bytes; allocates once.
    pub fn new(text: &str) -> Self {
        Self(Text::Shared(Arc::from(cut(text))))
    }

    /// A fixed text, cut to [`MAX`](Self::MAX) bytes; allocates nothing.
    pub const fn from_static(text: &'static str) -> Self {
        Self(Text::Static(text))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Text::Static(s) => cut(s),
            Text::Shared(s) => s,
        }
    }
}

/// `text` up to [`StepDetail::MAX`] bytes, ending on a character boundary.
fn cut(text: &str) -> &str {
    if text.len() <= StepDetail::MAX {
        return text;
    }
    let mut end = StepDetail::MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl fmt::Debug for StepDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for StepDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The named step a chain is at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedStep {
    /// Its position among the chain's named steps, from 0.
    pub index: u32,
    /// Its name.
    pub name: &'static str,
    /// What it waits on, once known.
    pub waits_on: Option<WaitsOn>,
    /// What it is about (which upstream, which route).
    pub detail: Option<StepDetail>,
}

/// The most steps before the current one an unannounced chain keeps: a chain that
/// marks steps in a loop must not grow without bound before anyone hears of it. The hub
/// keeps the first 31 and the current one; the steps in between are not reported.
const KEPT_PASSED: usize = 31;

/// The named step a chain is at, kept in its core.
#[derive(Default)]
pub(crate) struct Current {
    /// How many named steps were marked; the current one is `count - 1`.
    count: u32,
    name: Option<&'static str>,
    waits_on: Option<WaitsOn>,
    detail: Option<StepDetail>,
    /// When it began, on the thread clock's timeline.
    since: Duration,
    /// The steps before it, with when each began, while the chain is unannounced: they
    /// are reported when it is announced.
    passed: Vec<(NamedStep, Duration)>,
}

impl Current {
    /// The step, if one was marked.
    pub(crate) fn step(&self) -> Option<NamedStep> {
        Some(NamedStep {
            index: self.count.checked_sub(1)?,
            name: self.name?,
            waits_on: self.waits_on,
            detail: self.detail.clone(),
        })
    }

    /// When the current step began, on the thread clock's timeline.
    pub(crate) fn since(&self) -> Duration {
        self.since
    }

    /// Every step marked so far, oldest first, with when each began; empties the record
    /// of those before the current one.
    pub(crate) fn take_all(&mut self) -> impl Iterator<Item = (NamedStep, Duration)> {
        let current = self.step().map(|s| (s, self.since));
        std::mem::take(&mut self.passed).into_iter().chain(current)
    }
}

/// Marks the named steps of one chain from async code: each mark ends the previous one,
/// writes a few cells of the chain and, only when an observer listens, emits
/// [`DeferredEvent::Named`](super::DeferredEvent::Named).
///
/// It does not keep the chain alive: once the chain is gone, marks do nothing. A mark
/// after the chain fired is still reported (the work behind a fired chain may go on),
/// but the chain is no longer listed as pending.
#[derive(Clone)]
pub struct Steps {
    core: Weak<Core>,
}

impl fmt::Debug for Steps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Steps")
            .field("deferred", &self.core.upgrade().map(|c| c.id))
            .finish()
    }
}

impl Steps {
    pub(crate) fn of(core: &std::rc::Rc<Core>) -> Self {
        Self {
            core: std::rc::Rc::downgrade(core),
        }
    }

    /// A handle that marks nothing (for code that runs outside any traced chain).
    pub fn none() -> Self {
        Self { core: Weak::new() }
    }

    /// Ends the current named step and starts `name`.
    pub fn step(&self, name: &'static str) {
        self.mark(name, None, None);
    }

    /// Ends the current named step and starts `name`, about `detail` (which upstream,
    /// which route) and waiting on `waits_on` when that is known already.
    pub fn step_with(
        &self,
        name: &'static str,
        waits_on: Option<WaitsOn>,
        detail: Option<&StepDetail>,
    ) {
        self.mark(name, waits_on, detail);
    }

    /// The current step now waits on `on` (a connection just opened for it, say); the
    /// step goes on. Does nothing before the first step.
    pub fn waits_on(&self, on: WaitsOn) {
        let Some(core) = self.core.upgrade() else {
            return;
        };
        let mut current = core.named.borrow_mut();
        if current.name.is_none() {
            return;
        }
        current.waits_on = Some(on);
        report(&core, &current);
    }

    fn mark(&self, name: &'static str, waits_on: Option<WaitsOn>, detail: Option<&StepDetail>) {
        let Some(core) = self.core.upgrade() else {
            return;
        };
        let mut current = core.named.borrow_mut();
        // An unannounced chain keeps the steps it went through, to report them if it is
        // announced: the first ones, as many as an observer keeps.
        if !core.announced() && current.passed.len() < KEPT_PASSED {
            // The step ends here: its detail moves into the list rather than being
            // counted once more and once less.
            let detail = current.detail.take();
            if let Some(step) = current.step() {
                let since = current.since;
                current.passed.push((NamedStep { detail, ..step }, since));
            }
        }
        current.count = current.count.saturating_add(1);
        current.name = Some(name);
        current.waits_on = waits_on;
        current.detail = detail.cloned();
        current.since = registry::clock_now();
        report(&core, &current);
    }
}

/// Emits `current` as `core`'s named step, when an observer listens.
fn report(core: &Core, current: &Current) {
    // An unannounced chain reports its step when it is announced, if it ever is.
    if !core.announced() || !crate::observe::enabled() {
        return;
    }
    if let Some(step) = current.step() {
        events::emit_if(true, || {
            DeferredEvent::Named(StepNamed {
                id: core.id,
                step,
                at: SystemTime::now(),
            })
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::defer::{Deferred, pending, set_stall_threshold, watch_stalls};
    use crate::observe;
    use crate::testing::{Clock, RecordingObserver};

    fn listed(id: DeferredId) -> crate::defer::PendingDeferred {
        pending().into_iter().find(|p| p.id == id).expect("listed")
    }

    #[test]
    fn each_step_ends_the_last_and_the_listing_names_it_with_what_it_waits_on() {
        let clock = Clock::fake();
        let _g = clock.install();
        let (resolver, d) = Deferred::<()>::traced(Some("request"), None);
        assert_eq!(listed(d.id()).named, None);
        let steps = resolver.steps();
        let upstream = StepDetail::new("backend-a");
        steps.step_with("connect upstream", None, Some(&upstream));
        clock.advance(Duration::from_secs(2));
        steps.waits_on(WaitsOn::Connection(ConnectionId(42)));
        let at = listed(d.id());
        let named = at.named.expect("a named step");
        assert_eq!(
            (named.index, named.name),
            (0, "connect upstream"),
            "waiting on something does not start a step"
        );
        assert_eq!(named.waits_on, Some(WaitsOn::Connection(ConnectionId(42))));
        assert_eq!(
            named.detail.as_ref().map(StepDetail::as_str),
            Some("backend-a")
        );
        assert_eq!(at.named_for, Duration::from_secs(2));

        steps.step("response head");
        clock.advance(Duration::from_secs(1));
        let at = listed(d.id());
        let named = at.named.expect("a named step");
        assert_eq!((named.index, named.name), (1, "response head"));
        assert_eq!((named.waits_on, named.detail), (None, None));
        assert_eq!(at.named_for, Duration::from_secs(1));
        resolver.callback(());
        drop(d);
    }

    #[test]
    fn marks_are_reported_as_events_and_the_stall_report_names_the_step() {
        let rec = RecordingObserver::new();
        observe::set_observer(Some(rec.clone()));
        let clock = Clock::fake();
        let _g = clock.install();
        set_stall_threshold(Duration::from_secs(5));
        let _watch = watch_stalls();
        let (resolver, d) = Deferred::<()>::traced(Some("request"), None);
        let steps = d.steps();
        steps.step("route");
        steps.step_with(
            "response head",
            Some(WaitsOn::Connection(ConnectionId(7))),
            Some(&StepDetail::from_static("http://up")),
        );
        let named: Vec<String> = rec
            .events()
            .into_iter()
            .filter(|e| e.contains("Named"))
            .collect();
        assert_eq!(named.len(), 2, "{named:?}");
        assert!(named[0].contains("\"route\""), "{}", named[0]);
        assert!(
            named[1].contains("\"response head\"") && named[1].contains("ConnectionId(7)"),
            "{}",
            named[1]
        );
        for _ in 0..12 {
            clock.advance(Duration::from_millis(500));
        }
        let stalled: Vec<String> = rec
            .events()
            .into_iter()
            .filter(|e| e.contains("Stalled"))
            .collect();
        assert_eq!(stalled.len(), 1, "{stalled:?}");
        assert!(
            stalled[0].contains("\"response head\"") && stalled[0].contains("\"http://up\""),
            "{}",
            stalled[0]
        );
        resolver.callback(());
        drop(d);
        observe::set_observer(None);
    }

    #[test]
    fn a_detail_is_cut_at_a_character_boundary() {
        let long = "é".repeat(100);
        let cut = StepDetail::new(&long);
        assert_eq!(cut.as_str().len(), StepDetail::MAX);
        assert!(long.starts_with(cut.as_str()));
        let odd = format!("x{long}");
        assert_eq!(StepDetail::new(&odd).as_str().len(), StepDetail::MAX - 1);
        assert_eq!(StepDetail::from_static("files").as_str(), "files");
    }

    #[test]
    fn steps_do_not_keep_a_chain_alive_and_mark_nothing_once_it_is_gone() {
        let (resolver, d) = Deferred::<()>::new();
        let steps = d.steps();
        let id = d.id();
        resolver.callback(());
        drop(d);
        steps.step("after the end");
        steps.waits_on(WaitsOn::Deferred(id));
        Steps::none().step("outside any chain");
        assert!(pending().iter().all(|p| p.id != id));
    }
}
