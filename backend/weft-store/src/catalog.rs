//! The services the writer was given, kept in memory for as long as the store is open.
//!
//! A service is described when it starts (and again when a reload changes it), not
//! continually: a history file deleted and recreated at run time would otherwise have an
//! empty `services` table for good. The writer rewrites every kept service into a file it
//! recreates, and [`Store::services`] lists them before their first commit, so the
//! dashboard shows what is configured from the moment it is. A service removed
//! ([`Store::remove_service`]) is left out of the listing at once and deleted from the file
//! with the writer's next batch. Whatever the file may not hold yet (a removal, a service
//! record that was dropped or whose batch failed, say while another process held the file
//! locked) marks the catalog unsynced, and the writer writes the catalog whole with its next
//! batch, retrying until a commit succeeds. The set is as large as the configurations
//! given: one entry per service name.
//!
//! [`Store::services`]: crate::Store::services
//! [`Store::remove_service`]: crate::Store::remove_service

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use crate::records::ServiceRecord;

#[derive(Debug, Default)]
struct Services {
    /// Every service the writer was given, by name, so a recreated file gets them back.
    kept: BTreeMap<String, ServiceRecord>,
    /// Names removed since: left out of listings, and deleted from the file.
    removed: BTreeSet<String>,
    /// The file may not hold `kept` and `removed` yet.
    unsynced: bool,
}

/// What the writer writes when the catalog is unsynced: every kept service, and the
/// names to delete.
#[derive(Debug, Clone, Default)]
pub(crate) struct CatalogSync {
    pub(crate) services: Vec<ServiceRecord>,
    pub(crate) removed: Vec<String>,
}

/// The latest record of each service, by name, and the names removed.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    /// A std mutex: taken once per service change, per listing and per batch, never across
    /// an await.
    services: Mutex<Services>,
}

impl Catalog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Services> {
        self.services.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `service`, replacing an earlier record of the same name.
    pub(crate) fn keep(&self, service: &ServiceRecord) {
        let mut s = self.lock();
        s.removed.remove(&service.name);
        s.kept.insert(service.name.clone(), service.clone());
    }

    /// Forgets the service `name`: it is no longer listed, and the next batch deletes it.
    pub(crate) fn forget(&self, name: &str) {
        let mut s = self.lock();
        s.kept.remove(name);
        s.removed.insert(name.to_owned());
        s.unsynced = true;
    }

    /// Notes that the file may not hold the catalog (a service record was dropped, or a
    /// batch carrying one failed).
    pub(crate) fn mark_unsynced(&self) {
        self.lock().unsynced = true;
    }

    /// Whether the file may not hold the catalog.
    pub(crate) fn is_unsynced(&self) -> bool {
        self.lock().unsynced
    }

    /// What to write for the file to hold the catalog, if it may not; the catalog counts
    /// as synced from then on (the writer marks it again if the write fails).
    pub(crate) fn take_unsynced(&self) -> Option<CatalogSync> {
        let mut s = self.lock();
        if !std::mem::take(&mut s.unsynced) {
            return None;
        }
        Some(CatalogSync {
            services: s.kept.values().cloned().collect(),
            removed: s.removed.iter().cloned().collect(),
        })
    }

    /// Every kept service, by name.
    pub(crate) fn all(&self) -> Vec<ServiceRecord> {
        self.lock().kept.values().cloned().collect()
    }

    /// `stored` (the file's rows, by name) without the removed services and with the kept
    /// records in place of theirs.
    pub(crate) fn overlay(&self, stored: Vec<ServiceRecord>) -> Vec<ServiceRecord> {
        let s = self.lock();
        let mut by_name: BTreeMap<String, ServiceRecord> = stored
            .into_iter()
            .filter(|r| !s.removed.contains(&r.name))
            .map(|r| (r.name.clone(), r))
            .collect();
        by_name.extend(s.kept.iter().map(|(k, v)| (k.clone(), v.clone())));
        by_name.into_values().collect()
    }
}
