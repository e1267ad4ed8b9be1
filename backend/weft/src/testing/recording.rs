//! [`RecordingObserver`]: every event the reactor reports, kept as text.

use std::sync::Arc;

use crate::observe::{Event, Observer};

/// An observer that collects every event as text; handy in tests and examples.
#[derive(Default)]
pub struct RecordingObserver {
    /// A `Mutex` because observers are `Send + Sync`; only tests and examples read it.
    events: std::sync::Mutex<Vec<String>>,
}

impl RecordingObserver {
    /// A new, empty recorder.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// The events recorded so far, each rendered with `Debug`.
    pub fn events(&self) -> Vec<String> {
        self.events.lock().expect("recorder lock").clone()
    }

    /// The first recorded event that contains `needle`.
    pub fn first(&self, needle: &str) -> Option<String> {
        self.events().into_iter().find(|e| e.contains(needle))
    }

    /// How many recorded events contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.events().iter().filter(|e| e.contains(needle)).count()
    }
}

impl Observer for RecordingObserver {
    fn on_event(&self, event: &Event<'_>) {
        self.events
            .lock()
            .expect("recorder lock")
            .push(format!("{event:?}"));
    }
}
