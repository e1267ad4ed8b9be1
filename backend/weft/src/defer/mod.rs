//! Deferred callback chains (twisted.internet.defer).

/// Something that happened to a Deferred, reported to the observer.
#[derive(Debug)]
#[non_exhaustive]
pub enum DeferredEvent {}
