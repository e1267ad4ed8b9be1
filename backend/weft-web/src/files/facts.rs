//! What a file's response headers say of one version of it: its name (for the content
//! type), modification time and entity tag, and the header fields of its answer, made
//! once.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderValue};

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
    /// `modified` as a header value, which `If-Range` compares with.
    pub(super) last_modified: Option<HeaderValue>,
    /// The file's time when it was in the future as these facts were made (so they have
    /// no `modified`): once it has passed, they are made again, with it.
    pub(crate) dated_ahead: Option<SystemTime>,
    /// The length of the whole representation; `None` for a coding made on the fly,
    /// whose length is known only once it is made.
    pub(super) length: Option<u64>,
    /// Its content type, by its name.
    pub(super) content_type: &'static str,
    /// Whether that type is worth compressing.
    pub(super) compressible: bool,
    /// The fields of a whole answer with it, as it would be sent with compression on:
    /// `Content-Type`, `Last-Modified`, `ETag`, `Vary: Accept-Encoding` for a
    /// compressible type, and, when its length is known, `Accept-Ranges` and
    /// `Content-Length`. A response starts as a copy: cloning a map of shared values
    /// costs a fraction of hashing each field in, which every request for a small file
    /// would do.
    pub(super) head: HeaderMap,
}

impl Facts {
    pub(super) fn new(
        name: String,
        modified: Option<SystemTime>,
        tag: Tag,
        len: Option<u64>,
    ) -> Self {
        // RFC 9110 §8.8.2.1: never later than the response's Date. A file dated in the
        // future (a clock set wrong where it was made) has no date that can be reasonably
        // and consistently determined: sent as modified now, every version of it written
        // within a second would share that date, and a client holding one would be sent a
        // range of another (`If-Range`) or told it has not changed. It gets none, and the
        // dates of its requests' conditions are not compared with anything: its `ETag`,
        // which tells its versions apart, serves instead.
        let now = whole_seconds(SystemTime::now());
        let (modified, dated_ahead) = match modified.map(whole_seconds) {
            Some(at) if at > now => (None, Some(at)),
            at => (at, None),
        };
        let content_type = crate::mime::content_type(&name);
        let compressible = crate::mime::compressible(content_type);
        let last_modified =
            modified.and_then(|m| HeaderValue::from_str(&httpdate::fmt_http_date(m)).ok());
        let mut head = HeaderMap::with_capacity(6);
        head.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if len.is_some() {
            head.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        }
        if let Some(value) = &last_modified {
            head.insert(header::LAST_MODIFIED, value.clone());
        }
        if let Ok(value) = HeaderValue::from_str(&tag) {
            head.insert(header::ETAG, value);
        }
        if compressible {
            head.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        if let Some(len) = len {
            head.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        Self {
            length: len,
            last_modified,
            dated_ahead,
            content_type,
            compressible,
            head,
            name,
            modified,
            tag,
        }
    }

    /// Bytes held, about: what a cache counts against its bound.
    pub(crate) fn size(&self) -> usize {
        // Each field of the head: its value and the map's entry and index for it.
        const FIELD: usize = 80;
        let fields: usize = self.head.values().map(|v| v.len() + FIELD).sum();
        self.name.len() + self.tag.len() + fields
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

    /// The facts of the embedded file at `path` (relative to its set's root), of `len`
    /// bytes, in a set made at `modified`.
    pub(crate) fn of_embedded(path: &str, len: u64, modified: SystemTime) -> Self {
        let name = path.rsplit('/').next().unwrap_or(path).to_owned();
        Self::new(
            name,
            Some(modified),
            conditional::memory_tag(len, modified),
            Some(len),
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
