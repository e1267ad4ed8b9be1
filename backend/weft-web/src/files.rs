//! Static files: GET and HEAD, index files, `Last-Modified` / `If-Modified-Since`, and
//! single byte ranges.
//!
//! Small files are read whole on the reactor thread: from the page cache that costs
//! microseconds, less than a round trip to a blocking pool. Larger ones are streamed in
//! chunks through tokio's file API, so a big download never blocks the reactor.

use std::io::SeekFrom;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode, Uri};
use tokio::io::AsyncSeekExt;

use crate::body::{self, Body, FileBody};
use crate::path::{PathError, Resolved, directory_location, resolve};
use crate::response::{error_page, with_status};

/// Files up to this size are read in one go.
const READ_WHOLE: u64 = 256 * 1024;

/// Serves `uri`'s path from `root` (canonical), with `index` for directories.
pub(crate) async fn serve(
    root: &Path,
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
    let mut found = match resolve(root, path) {
        Ok(found) => found,
        Err(PathError::NotFound) => return error_page(StatusCode::NOT_FOUND, "not found"),
        Err(_) => return error_page(StatusCode::BAD_REQUEST, "bad path"),
    };
    if found.meta.is_dir() {
        if !path.ends_with('/') {
            let mut location = directory_location(path);
            if let Some(query) = uri.query() {
                location.push('?');
                location.push_str(query);
            }
            return redirect(&location);
        }
        found = match resolve(root, &format!("{path}{index}")) {
            Ok(index) if index.meta.is_file() => index,
            _ => return error_page(StatusCode::NOT_FOUND, "not found"),
        };
    }
    if !found.meta.is_file() {
        return error_page(StatusCode::NOT_FOUND, "not found");
    }
    match file(&found, method, headers).await {
        Ok(response) => response,
        Err(err) => {
            tracing::warn!(path = %found.path.display(), %err, "cannot read a static file");
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

async fn file(
    found: &Resolved,
    method: &Method,
    headers: &HeaderMap,
) -> std::io::Result<Response<Body>> {
    let len = found.meta.len();
    let modified = found.meta.modified().ok().map(whole_seconds);
    let last_modified = modified.map(httpdate::fmt_http_date);
    let mut response = Response::new(body::empty());
    let h = response.headers_mut();
    let name = found
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::mime::content_type(name)),
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
    *response.body_mut() = if len <= READ_WHOLE {
        let bytes = bytes::Bytes::from(std::fs::read(&found.path)?);
        let (s, e) = (to_usize(start), to_usize(end).min(bytes.len()));
        body::full(bytes.slice(s.min(e)..e))
    } else {
        let mut file = tokio::fs::File::open(&found.path).await?;
        file.seek(SeekFrom::Start(start)).await?;
        FileBody::body(file, count)
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
