//! What a file's response headers say of one version of it: its name (for the content
//! type), modification time and entity tag, and those two as header values, made once.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;

use super::conditional::{self, Tag};

/// What a file's headers say of one version of it, made once: for a file on disk, once
/// per version while the cache keeps it.
pub(crate) struct Facts {
    /// Its last path segment, for the content type.
    pub(super) name: String,
    /// Its modification time in whole seconds: `Last-Modified`, and what conditional
    /// requests compare with.
    pub(super) modified: Option<SystemTime>,
    /// Its strong entity tag.
    pub(super) tag: Tag,
    /// `tag` and `modified` as header values.
    pub(super) etag: Option<HeaderValue>,
    pub(super) last_modified: Option<HeaderValue>,
    /// The length of the whole representation and its `Content-Length` value; `None` for
    /// a coding made on the fly, whose length is known only once it is made.
    pub(super) length: Option<(u64, HeaderValue)>,
}

impl Facts {
    pub(super) fn new(
        name: String,
        modified: Option<SystemTime>,
        tag: Tag,
        len: Option<u64>,
    ) -> Self {
        let modified = modified.map(whole_seconds);
        Self {
            length: len.map(|len| (len, HeaderValue::from(len))),
            etag: HeaderValue::from_str(&tag).ok(),
            last_modified: modified
                .and_then(|m| HeaderValue::from_str(&httpdate::fmt_http_date(m)).ok()),
            name,
            modified,
            tag,
        }
    }

    /// Bytes held, about: what a cache counts against its bound.
    pub(crate) fn size(&self) -> usize {
        let value = |v: &Option<HeaderValue>| v.as_ref().map_or(0, HeaderValue::len);
        let length = self.length.as_ref().map_or(0, |(_, v)| v.len());
        self.name.len() + self.tag.len() + value(&self.etag) + value(&self.last_modified) + length
    }

    /// The facts of the file at `path` (canonical) as `meta` describes it.
    pub(crate) fn of_disk(path: &Path, meta: &std::fs::Metadata) -> Self {
        Self::new(
            file_name(path),
            meta.modified().ok(),
            conditional::disk_tag(meta),
            Some(meta.len()),
        )
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_owned()
}

/// HTTP dates have whole seconds; compare and send modification times the same way.
fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(secs)
}
