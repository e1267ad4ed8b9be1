//! The services the writer was given, kept in memory for as long as the store is open.
//!
//! A service is described once, when it starts, and never again: a history file deleted
//! and recreated at run time would otherwise have an empty `services` table for good. The
//! writer rewrites every kept service into a file it recreates, and [`Store::services`]
//! lists them before their first commit, so the dashboard shows what is configured from
//! the moment it is. The set is as large as the configuration: one entry per service name.
//!
//! [`Store::services`]: crate::Store::services

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::records::ServiceRecord;

/// The latest record of each service, by name.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    /// A std mutex: taken once per service record and per listing, never across an await.
    services: Mutex<BTreeMap<String, ServiceRecord>>,
}

impl Catalog {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ServiceRecord>> {
        self.services.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `service`, replacing an earlier record of the same name.
    pub(crate) fn keep(&self, service: &ServiceRecord) {
        self.lock().insert(service.name.clone(), service.clone());
    }

    /// Every kept service, by name.
    pub(crate) fn all(&self) -> Vec<ServiceRecord> {
        self.lock().values().cloned().collect()
    }

    /// `stored` (the file's rows, by name) with the kept records in place of theirs.
    pub(crate) fn overlay(&self, stored: Vec<ServiceRecord>) -> Vec<ServiceRecord> {
        let mut by_name: BTreeMap<String, ServiceRecord> =
            stored.into_iter().map(|s| (s.name.clone(), s)).collect();
        by_name.extend(self.lock().iter().map(|(k, v)| (k.clone(), v.clone())));
        by_name.into_values().collect()
    }
}
