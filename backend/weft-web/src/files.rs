//! Static files: GET and HEAD, index files, `Last-Modified` / `If-Modified-Since`, and
//! single byte ranges, from a root directory or from [`EmbeddedFiles`] in memory; both
//! go through the same lookup rules and the same response code.
//!
//! Small files are read whole on the reactor thread: from the page cache that costs
//! microseconds, less than a round trip to a blocking pool. Larger ones are streamed in
//! chunks through tokio's file API, so a big download never blocks the reactor.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode, Uri};
use tokio::io::AsyncSeekExt;

use crate::body::{self, Body, FileBody};
use crate::embedded::{EmbeddedFiles, Entry};
use crate::path::{PathError, directory_location, resolve, segments};
use crate::response::{error_page, with_status};

/// Files up to this size are read in one go.
const READ_WHOLE: u64 = 256 * 1024;

/// Where a service's static files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// A directory, canonicalized once, so per-request checks compare canonical paths.
    Dir(PathBuf),
    /// Files held in memory.
    Memory(EmbeddedFiles),
}

/// What a request path leads to.
enum Found {
    Dir,
    File(File),
}

/// A file to answer with.
struct File {
    /// Its last path segment, for the content type.
    name: String,
    len: u64,
    /// `Last-Modified`, and what conditional requests compare with.
    modified: Option<SystemTime>,
    content: Content,
}

enum Content {
    Disk(PathBuf),
    Memory(Bytes),
}

impl Source {
    fn find(&self, raw: &str) -> Result<Found, PathError> {
        match self {
            Self::Dir(root) => {
                let found = resolve(root, raw)?;
                if found.meta.is_dir() {
                    return Ok(Found::Dir);
                }
                if !found.meta.is_file() {
                    return Err(PathError::NotFound);
                }
                Ok(Found::File(File {
                    name: file_name(&found.path),
                    len: found.meta.len(),
                    modified: found.meta.modified().ok(),
                    content: Content::Disk(found.path),
                }))
            }
            Self::Memory(files) => {
                let segments = segments(raw)?;
                match files.lookup(&segments).ok_or(PathError::NotFound)? {
                    Entry::Dir => Ok(Found::Dir),
                    Entry::File(bytes) => Ok(Found::File(File {
                        name: segments.last().cloned().unwrap_or_default(),
                        len: bytes.len() as u64,
                        modified: Some(files.modified()),
                        content: Content::Memory(bytes.clone()),
                    })),
                }
            }
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_owned()
}

/// Serves `uri`'s path from `source`, with `index` for directories.
pub(crate) async fn serve(
    source: &Source,
    index: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        let mut response = error_page(
            StatusCode::METHOD_NOT_ALLOWED,
            "static files answer GET and HEAD",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let path = uri.path();
    let found = match source.find(path) {
        Ok(Found::File(file)) => file,
        Ok(Found::Dir) => {
            if !path.ends_with('/') {
                let mut location = directory_location(path);
                if let Some(query) = uri.query() {
                    location.push('?');
                    location.push_str(query);
                }
                return redirect(&location);
            }
            match source.find(&format!("{path}{index}")) {
                Ok(Found::File(index)) => index,
                _ => return error_page(StatusCode::NOT_FOUND, "not found"),
            }
        }
        Err(PathError::NotFound) => return error_page(StatusCode::NOT_FOUND, "not found"),
        Err(_) => return error_page(StatusCode::BAD_REQUEST, "bad path"),
    };
    match file(found, method, headers).await {
        Ok(response) => response,
        Err((path, err)) => {
            tracing::warn!(path = %path.display(), %err, "cannot read a static file");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the file could not be read",
            )
        }
    }
}

fn redirect(location: &str) -> Response<Body> {
    let mut response = error_page(StatusCode::MOVED_PERMANENTLY, "moved");
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// The response for `found`; an error names the file on disk that could not be read.
async fn file(
    found: File,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response<Body>, (PathBuf, std::io::Error)> {
    let len = found.len;
    let modified = found.modified.map(whole_seconds);
    let last_modified = modified.map(httpdate::fmt_http_date);
    let mut response = Response::new(body::empty());
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::mime::content_type(&found.name)),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(lm) = &last_modified
        && let Ok(value) = HeaderValue::from_str(lm)
    {
        h.insert(header::LAST_MODIFIED, value);
    }
    if let (Some(modified), Some(since)) =
        (modified, header_date(headers, header::IF_MODIFIED_SINCE))
        && modified <= since
    {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        return Ok(response);
    }

    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(spec) if if_range_holds(headers, last_modified.as_deref()) => parse_range(spec, len),
        _ => Ok(None),
    };
    let (start, end) = match range {
        Ok(Some((start, end))) => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            let value = format!("bytes {start}-{end}/{len}");
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&value).expect("digits and ASCII"),
            );
            (start, end + 1)
        }
        Ok(None) => (0, len),
        Err(()) => {
            let mut response = with_status(StatusCode::RANGE_NOT_SATISFIABLE, body::empty());
            let value = format!("bytes */{len}");
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&value).expect("digits and ASCII"),
            );
            return Ok(response);
        }
    };
    let count = end - start;
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if method == Method::HEAD || count == 0 {
        return Ok(response);
    }
    let slice = |bytes: Bytes| {
        let (s, e) = (to_usize(start), to_usize(end).min(bytes.len()));
        body::full(bytes.slice(s.min(e)..e))
    };
    *response.body_mut() = match found.content {
        Content::Memory(bytes) => slice(bytes),
        Content::Disk(path) if len <= READ_WHOLE => match std::fs::read(&path) {
            Ok(bytes) => slice(Bytes::from(bytes)),
            Err(e) => return Err((path, e)),
        },
        Content::Disk(path) => {
            let opened = async {
                let mut file = tokio::fs::File::open(&path).await?;
                file.seek(SeekFrom::Start(start)).await?;
                Ok::<_, std::io::Error>(file)
            };
            match opened.await {
                Ok(file) => FileBody::body(file, count),
                Err(e) => return Err((path, e)),
            }
        }
    };
    Ok(response)
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// HTTP dates have whole seconds; compare and send modification times the same way.
fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn header_date(headers: &HeaderMap, name: header::HeaderName) -> Option<SystemTime> {
    let value = headers.get(name)?.to_str().ok()?;
    httpdate::parse_http_date(value).ok()
}

/// `If-Range` with a date: the range applies only if the file is unchanged.
fn if_range_holds(headers: &HeaderMap, last_modified: Option<&str>) -> bool {
    match headers.get(header::IF_RANGE) {
        None => true,
        Some(v) => last_modified.is_some_and(|lm| v.as_bytes() == lm.as_bytes()),
    }
}

/// One `bytes=` range as inclusive offsets; `Ok(None)` to ignore the header (several
/// ranges, another unit, bad syntax), `Err` when it cannot be satisfied.
fn parse_range(spec: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(set) = spec.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if set.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = set.trim().split_once('-') else {
        return Ok(None);
    };
    let (first, last) = (first.trim(), last.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    let range = match (first.is_empty(), last.is_empty()) {
        (true, false) => match parse(last) {
            Some(0) => return Err(()),
            Some(n) => (len.saturating_sub(n), len.checked_sub(1).ok_or(())?),
            None => return Ok(None),
        },
        (false, _) => match (
            parse(first),
            if last.is_empty() {
                Some(u64::MAX)
            } else {
                parse(last)
            },
        ) {
            (Some(a), Some(b)) if a <= b => {
                if a >= len {
                    return Err(());
                }
                (a, b.min(len - 1))
            }
            _ => return Ok(None),
        },
        (true, true) => return Ok(None),
    };
    Ok(Some(range))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn byte_ranges_cover_the_three_forms() {
        assert_eq!(parse_range("bytes=0-4", 10), Ok(Some((0, 4))));
        assert_eq!(parse_range("bytes=5-", 10), Ok(Some((5, 9))));
        assert_eq!(parse_range("bytes=-3", 10), Ok(Some((7, 9))));
        assert_eq!(parse_range("bytes=-30", 10), Ok(Some((0, 9))));
        assert_eq!(parse_range("bytes=8-100", 10), Ok(Some((8, 9))));
    }

    #[test]
    fn unsatisfiable_and_unsupported_ranges_differ() {
        assert_eq!(parse_range("bytes=10-", 10), Err(()));
        assert_eq!(parse_range("bytes=-0", 10), Err(()));
        assert_eq!(parse_range("bytes=0-1,3-4", 10), Ok(None));
        assert_eq!(parse_range("items=0-1", 10), Ok(None));
        assert_eq!(parse_range("bytes=5-2", 10), Ok(None));
        assert_eq!(parse_range("bytes=x-", 10), Ok(None));
    }
}
