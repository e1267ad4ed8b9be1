//! [`Held`]: a traced chain that is made only if its work has to wait.

use std::fmt;
use std::marker::PhantomData;
use std::panic::Location;
use std::rc::Rc;

use super::core::Core;
use super::deferred::pair_from;
use super::events::DeferredId;
use super::{Deferred, Resolver, Steps};
use crate::observe::{self, ConnectionId};

/// A traced chain for work that most often ends within the poll it began in (an HTTP
/// request answered from memory): until [`make`](Self::make) it is listed nowhere and
/// reported to no one, and dropping it costs nothing more.
///
/// Listing, reporting and firing a chain cost more than such work does, and nobody
/// could have seen it: a chain the observer passes over is reported only once it has
/// been pending for a while, and another thread's listing waits for the poll to end.
/// Once made, the chain is what [`Deferred::traced`] would have made when the `Held`
/// was: same id, site and connection, dated then, with the [`Steps`] marked meanwhile.
/// The observer's sampler is asked at once; a chain it wants kept, or any chain while
/// spans are exported, is [`wanted`](Self::wanted), and its maker should make it now.
///
/// ```
/// use weft::defer::Held;
///
/// let held = Held::<()>::new(Some("request"), None);
/// held.steps().step("route");
/// // The work has to wait: from here on the chain is listed, dated when it was held.
/// let (resolver, d) = held.make();
/// assert_eq!(weft::defer::pending()[0].named.as_ref().map(|s| s.name), Some("route"));
/// resolver.callback(());
/// # drop(d);
/// ```
pub struct Held<T: 'static> {
    core: Rc<Core>,
    /// The sampler's answer, when an observer listens.
    sampled: Option<bool>,
    /// Spans are exported: every chain is reported.
    spans: bool,
    _type: PhantomData<fn() -> T>,
}

impl<T: 'static> Held<T> {
    /// A chain held back, with `label` and `connection` as [`Deferred::traced`] takes
    /// them; the caller's line is its site.
    #[track_caller]
    pub fn new(label: Option<&'static str>, connection: Option<ConnectionId>) -> Self {
        let core = Core::unregistered(Location::caller(), label, connection);
        Self {
            core,
            sampled: observe::current().map(|observer| observer.sample_chain()),
            spans: observe::trace::enabled(),
            _type: PhantomData,
        }
    }

    /// Whether the chain should be made now: the observer's sampler keeps it whatever
    /// happens, or spans are exported.
    pub fn wanted(&self) -> bool {
        self.sampled == Some(true) || self.spans
    }

    /// The chain's id, the same once made.
    pub fn id(&self) -> DeferredId {
        self.core.id
    }

    /// A handle that marks the chain's named steps, held or made.
    pub fn steps(&self) -> Steps {
        Steps::of(&self.core)
    }

    /// Makes the chain: listed, and reported as a chain made when this was held.
    pub fn make(self) -> (Resolver<T>, Deferred<T>) {
        self.core.register(self.sampled);
        pair_from(self.core)
    }
}

impl<T: 'static> fmt::Debug for Held<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Held")
            .field("id", &self.core.id)
            .field("site", &self.core.site)
            .finish_non_exhaustive()
    }
}
