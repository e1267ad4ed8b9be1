//! Static files: GET and HEAD, index files, from a root directory or from
//! [`EmbeddedFiles`] in memory; both go through the same lookup rules and the same
//! response code.
//!
//! A response is made in the order RFC 9110 gives: the representation is selected first
//! (the file, a precompressed sibling, or the file compressed on the fly: `encoding`),
//! its validators are compared with the preconditions (`conditional`), and only then is
//! the body read, whole or in ranges (`ranges`). A directory without its index file is
//! listed when the service says so (`listing`).
//!
//! Small files are read whole on the reactor thread: from the page cache that costs
//! microseconds, less than a round trip to a blocking pool. Larger ones are streamed in
//! chunks through tokio's file API, so a big download never blocks the reactor, or, up
//! to [`cache::HOLD_MAX`], read whole on the blocking pool. What a path led to, and a
//! file's bytes up to that size, are kept (`cache`) and revalidated with one `stat` per
//! request, or once per [`REVALIDATE_EVERY`] for a path that is hot. Compression is CPU work proportional to the file and runs on the blocking
//! pool.

mod cache;
mod conditional;
mod encoding;
mod facts;
mod listing;
mod ranges;

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use weft::defer::Steps;

use crate::body::{self, Body, FileBody, FileParts};
use crate::config::{Compression, FileOptions};
use crate::embedded::{EmbeddedFiles, Entry};
use crate::metrics::{Recorder, Refusal};
use crate::path::{PathError, directory_location, segments};
use crate::response::{error_page, with_status};
pub use cache::{HOT_REQUESTS, REVALIDATE_EVERY};
use conditional::Verdict;
use encoding::Coding;
pub(crate) use facts::Facts;
use ranges::{Multipart, Ranges, to_usize};

/// The named step of a request whose file is being read (or compressed).
const READ_FILE: &str = "read file";

/// Files up to this size are read in one go.
const READ_WHOLE: u64 = 256 * 1024;

/// Where a service's static files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// A directory.
    Dir(Root),
    /// Files held in memory.
    Memory(EmbeddedFiles),
}

/// A directory of files, canonicalized once, so per-request checks compare canonical
/// paths; with what its paths led to lately.
#[derive(Debug, Clone)]
pub(crate) struct Root {
    path: PathBuf,
    cache: Arc<cache::Cache>,
}

impl Root {
    /// `path`, which must be canonical.
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            cache: Arc::default(),
        }
    }
}

/// Two roots are the same when their directory is: what they keep is only an
/// acceleration.
impl PartialEq for Root {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
    }
}

impl Eq for Root {}

/// What a request path leads to.
#[expect(
    clippy::large_enum_variant,
    reason = "made and taken apart within one request's answer, never stored: boxing the file would cost every request an allocation"
)]
enum Found {
    /// A directory, with its path on disk when it has one (for a listing).
    Dir(Option<Arc<Path>>),
    File(File),
}

/// A file to answer with.
struct File {
    facts: Arc<Facts>,
    len: u64,
    content: Content,
}

impl File {
    /// Whether its bytes are at hand: the answer is made without reading anything.
    fn in_memory(&self) -> bool {
        matches!(
            self.content,
            Content::Memory(_) | Content::Disk { held: Some(_), .. }
        )
    }
}

enum Content {
    /// A file on disk, with its bytes when the cache holds them, and where to keep
    /// them once read.
    Disk {
        path: Arc<Path>,
        /// The version its facts describe: what is read must be that file, still.
        stamp: cache::Stamp,
        held: Option<Bytes>,
        keep: Option<Keep>,
    },
    Memory(Bytes),
}

/// Where the bytes of a file read whole are kept: the cache, under the request path
/// that led to it, for the version that was looked up.
struct Keep {
    cache: Arc<cache::Cache>,
    raw: String,
    stamp: cache::Stamp,
}

/// An error that names the file that could not be read.
type ReadError = (Arc<Path>, std::io::Error);

impl Source {
    /// Whether `raw` leads to a file.
    pub(crate) fn has_file(&self, raw: &str) -> bool {
        matches!(self.find(raw), Ok(Found::File(_)))
    }

    fn find(&self, raw: &str) -> Result<Found, PathError> {
        match self {
            Self::Dir(root) => {
                let found = root.cache.lookup(&root.path, raw)?;
                if found.stamp.is_dir() {
                    return Ok(Found::Dir(Some(found.path)));
                }
                // A file is not a directory: `/a.txt/` names nothing.
                if raw.ends_with('/') {
                    return Err(PathError::NotFound);
                }
                // Facts are made for regular files only.
                let Some(facts) = found.facts else {
                    return Err(PathError::NotFound);
                };
                let len = found.stamp.len();
                let keep = (found.held.is_none() && len <= cache::HOLD_MAX).then(|| Keep {
                    cache: root.cache.clone(),
                    raw: raw.to_owned(),
                    stamp: found.stamp,
                });
                Ok(Found::File(File {
                    facts,
                    len,
                    content: Content::Disk {
                        path: found.path,
                        stamp: found.stamp,
                        held: found.held,
                        keep,
                    },
                }))
            }
            Self::Memory(files) => {
                let segments = segments(raw)?;
                match files.lookup(&segments).ok_or(PathError::NotFound)? {
                    Entry::Dir => Ok(Found::Dir(None)),
                    Entry::File(_) if raw.ends_with('/') => Err(PathError::NotFound),
                    Entry::File(file) => Ok(Found::File(File {
                        facts: file.facts.clone(),
                        len: file.bytes.len() as u64,
                        content: Content::Memory(file.bytes.clone()),
                    })),
                }
            }
        }
    }
}

/// What a request for a file is served with, beside the file.
pub(crate) struct Serving<'a> {
    /// The file a directory is answered with.
    pub(crate) index: &'a str,
    pub(crate) options: &'a FileOptions,
    pub(crate) recorder: &'a dyn Recorder,
    /// The request's named steps: `read file` is marked when the answer has to be read
    /// (from disk, or compressed on the blocking pool) and may wait; a file whose bytes
    /// are in memory is answered at once, with no step to show.
    pub(crate) steps: &'a Steps,
}

/// Serves the request's path from `source`, with `to.index` for directories.
///
/// The answer is made at once when the file's bytes are at hand (or small enough to read
/// in place); only one that must wait, in a future of its own, does: a large file read
/// from disk as it streams (whole or in ranges), a kept file over [`READ_WHOLE`] read
/// whole on tokio's blocking pool, or a compression on that pool. So this future holds
/// nothing across its one await but that future's box: a request for a hot file moves a
/// few words, not the kilobyte of state every path of the answer would otherwise reserve.
pub(crate) async fn serve(source: &Source, to: &Serving<'_>, request: &Parts) -> Response<Body> {
    let reading = match answer(source, to, request) {
        Ok(Answer::Now(response)) => return response,
        Ok(Answer::Later(reading)) => reading,
        Err(failed) => return read_failed(failed),
    };
    reading.await.unwrap_or_else(read_failed)
}

/// The answer to a request whose file could not be read; the log names the file.
fn read_failed((path, err): ReadError) -> Response<Body> {
    if err.get_ref().is_some_and(|e| e.is::<Changed>()) {
        // Rewritten as it was asked for: the next request finds the new version.
        tracing::info!(path = %path.display(), "a static file changed as it was read");
        let mut response = error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "the file changed as it was read; ask again",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("0"));
        return response;
    }
    if err.kind() == io::ErrorKind::PermissionDenied {
        // Its permissions changed since it was looked up: not served, as a file this
        // process may not read never is.
        tracing::warn!(path = %path.display(), %err, "a static file this process may not read is not served");
        return error_page(StatusCode::NOT_FOUND, "not found");
    }
    if err.kind() == io::ErrorKind::NotFound {
        // Gone, or moved where the root does not reach, since it was looked up.
        tracing::info!(path = %path.display(), %err, "a static file was gone when it was read");
        return error_page(StatusCode::NOT_FOUND, "not found");
    }
    tracing::warn!(path = %path.display(), %err, "cannot read a static file");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the file could not be read",
    )
}

/// A file's answer: made, or to be made once the file is read or compressed.
enum Answer {
    Now(Response<Body>),
    Later(Reading),
}

/// An answer that waits for the disk or the blocking pool.
type Reading = Pin<Box<dyn Future<Output = Result<Response<Body>, ReadError>>>>;

/// What [`serve`] answers, without waiting.
fn answer(source: &Source, to: &Serving<'_>, request: &Parts) -> Result<Answer, ReadError> {
    let Serving {
        index,
        options,
        recorder,
        steps,
    } = *to;
    let (method, uri) = (&request.method, &request.uri);
    if method != Method::GET && method != Method::HEAD {
        // RFC 9110 §9.3.7: OPTIONS (of a path, or `*`, of the server) is told what is
        // allowed, with no content; any other method is not allowed (§15.5.6).
        let mut response = match *method {
            Method::OPTIONS => {
                let mut response = Response::new(body::empty());
                response
                    .headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
                response
            }
            _ => error_page(
                StatusCode::METHOD_NOT_ALLOWED,
                "static files answer GET, HEAD and OPTIONS",
            ),
        };
        response.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        );
        return Ok(Answer::Now(response));
    }
    let path = uri.path();
    // The file asked for, or `None` when there is none (nor an index).
    let found = match source.find(path) {
        Ok(Found::File(file)) => Some(file),
        Ok(Found::Dir(dir)) => {
            let slashed = path.ends_with('/');
            let to_slashed = || {
                let mut location = directory_location(path);
                if let Some(query) = uri.query() {
                    location.push('?');
                    location.push_str(query);
                }
                Ok(Answer::Now(redirect(&location)))
            };
            if !slashed && options.fallback.is_none() {
                return to_slashed();
            }
            let index = match slashed {
                true => source.find(&format!("{path}{index}")),
                false => source.find(&format!("{path}/{index}")),
            };
            let index = match index {
                Ok(Found::File(index)) => Some(index),
                _ => None,
            };
            let listed = dir.is_some() && options.listing;
            // With a fallback, the slash is added where it leads somewhere (an index or a
            // listing): a directory that has neither is one of the app's own routes.
            if !slashed && (index.is_some() || listed) {
                return to_slashed();
            }
            match (index, dir) {
                (Some(index), _) => Some(index),
                (None, Some(dir)) if options.listing => {
                    steps.step(READ_FILE);
                    return Ok(Answer::Later(listing(source, dir, path, request, options)));
                }
                (None, _) => None,
            }
        }
        Err(PathError::NotFound) => None,
        Err(e) => {
            // Refused as the admission rules refuse a path, and counted with them.
            recorder.refused(Refusal::Path);
            return Ok(Answer::Now(error_page(
                StatusCode::BAD_REQUEST,
                e.message(),
            )));
        }
    };
    let found = match found {
        Some(file) => file,
        // Nothing here: the fallback, sent with `no-cache` rather than the files'
        // `cache_control`, so a cache keeps no page under a URL that may be a file
        // tomorrow (an asset of the next deploy).
        None => match fallback(source, options) {
            Some(page) => {
                let options = FileOptions {
                    cache_control: Some(HeaderValue::from_static("no-cache")),
                    ..options.clone()
                };
                return file(page, &options, (recorder, steps), method, &request.headers);
            }
            None => return Ok(Answer::Now(error_page(StatusCode::NOT_FOUND, "not found"))),
        },
    };
    file(found, options, (recorder, steps), method, &request.headers)
}

/// The `fallback` file, for a path no file is found at; `None` without one, or when it
/// is missing itself (then the request is 404, as it would be without).
fn fallback(source: &Source, options: &FileOptions) -> Option<File> {
    let path = options.fallback.as_deref()?;
    match source.find(path) {
        Ok(Found::File(file)) => Some(file),
        _ => None,
    }
}

fn redirect(location: &str) -> Response<Body> {
    let mut response = error_page(StatusCode::MOVED_PERMANENTLY, "moved");
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Directory listings made at once in the process: each reads its whole directory on a
/// blocking thread (182 ms for 200,000 names), so a client asking for a large one again
/// and again takes four of the blocking pool's threads at most, its other requests
/// waiting their turn, and never the reactor.
static LISTINGS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// A directory's listing, made on the blocking pool (see [`LISTINGS`]), with a strong
/// entity tag made from the page itself (the preconditions hold for it as for a file:
/// RFC 9110 §13.1 says MUST evaluate); no `Last-Modified`, as a directory's time does
/// not move when a file in it grows.
fn listing(
    source: &Source,
    dir: std::sync::Arc<Path>,
    path: &str,
    request: &Parts,
    options: &FileOptions,
) -> Reading {
    let root = match source {
        Source::Dir(root) => root.path.clone(),
        Source::Memory(_) => dir.to_path_buf(),
    };
    let path = path.to_owned();
    let (method, headers) = (request.method.clone(), request.headers.clone());
    let cache_control = options.cache_control.clone();
    Box::pin(async move {
        let made = async {
            let turn = LISTINGS.acquire().await.map_err(io::Error::other)?;
            let (dir, path) = (dir.clone(), path.clone());
            tokio::task::spawn_blocking(move || {
                let _turn = turn;
                listing::page(&dir, &path, &root)
            })
            .await
            .map_err(io::Error::other)?
        };
        let page = match made.await {
            Ok(page) => page,
            Err(err) => {
                tracing::warn!(path = %dir.display(), %err, "cannot list a directory");
                return Ok(error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the directory could not be listed",
                ));
            }
        };
        Ok(listing_response(
            page,
            (&method, &headers),
            cache_control.as_ref(),
        ))
    })
}

/// The answer of a listing's `page`.
fn listing_response(
    page: String,
    (method, headers): (&Method, &HeaderMap),
    cache_control: Option<&HeaderValue>,
) -> Response<Body> {
    let tag = conditional::page_tag(page.as_bytes());
    let verdict = conditional::evaluate(headers, &tag, None);
    if verdict == Verdict::Failed {
        return error_page(
            StatusCode::PRECONDITION_FAILED,
            "a precondition did not hold",
        );
    }
    let len = page.len();
    let body = if method == Method::HEAD || verdict == Verdict::NotModified {
        body::empty()
    } else {
        body::full(page)
    };
    let mut response = Response::new(body);
    let h = response.headers_mut();
    if let Ok(tag) = HeaderValue::try_from(tag) {
        h.insert(header::ETAG, tag);
    }
    if let Some(cc) = cache_control {
        h.insert(header::CACHE_CONTROL, cc.clone());
    }
    if verdict == Verdict::NotModified {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        return response;
    }
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}

/// Which representation of a file is sent.
enum Selected {
    /// The file as it is.
    Identity(File),
    /// A precompressed sibling in `Coding`, standing in for the file.
    Sibling(Coding, File),
    /// The file, compressed now, in the slot that bounds compressions running at once.
    OnTheFly(Coding, File, encoding::Slot),
}

/// The representation the client prefers among those there are (RFC 9110 §12.5.3).
fn select(found: File, compression: &Compression, headers: &HeaderMap) -> Selected {
    let preferred = encoding::preferred(headers);
    // A precompressed sibling in any coding the client takes first: the operator made it,
    // and it costs nothing to send; then a coding made on the fly.
    if compression.precompressed
        && let Content::Disk { path, .. } = &found.content
    {
        for &coding in &preferred {
            let mut sibling = path.as_os_str().to_owned();
            sibling.push(".");
            sibling.push(coding.extension());
            let sibling = PathBuf::from(sibling);
            // Beside a file under the (canonical) root, a regular file is under the root
            // too; a symlink might lead anywhere, so it is not followed.
            if let Ok(meta) = std::fs::symlink_metadata(&sibling)
                && meta.is_file()
                && !crate::private::is_private_file(&meta)
            {
                let tag = conditional::coded(&conditional::disk_tag(&meta), coding.extension());
                return Selected::Sibling(
                    coding,
                    File {
                        facts: Arc::new(Facts::new(
                            found.facts.name.clone(),
                            meta.modified().ok(),
                            tag,
                            Some(meta.len()),
                        )),
                        len: meta.len(),
                        content: Content::Disk {
                            path: sibling.into(),
                            stamp: cache::Stamp::of(&meta),
                            held: None,
                            keep: None,
                        },
                    },
                );
            }
        }
    }
    if let Some(&coding) = preferred.first()
        && compression.on_the_fly
        && (compression.min_bytes..=compression.max_bytes).contains(&found.len)
    {
        let Some(slot) = encoding::Slot::take() else {
            tracing::debug!(file = %found.facts.name, "compressions busy: sending the file as it is");
            return Selected::Identity(found);
        };
        let facts = &found.facts;
        let tag = conditional::coded(&facts.tag, coding.extension());
        let facts = Arc::new(Facts::new(facts.name.clone(), facts.modified, tag, None));
        return Selected::OnTheFly(coding, File { facts, ..found }, slot);
    }
    Selected::Identity(found)
}

/// Which of the fields a file's answer depends on (beside its path) a request carries,
/// found in one pass over its field names: most requests carry none of them, and looking
/// each up costs a hash and a probe.
#[derive(Default)]
struct Asks {
    range: bool,
    coding: bool,
    preconditions: bool,
}

impl Asks {
    fn of(headers: &HeaderMap) -> Self {
        let mut asks = Self::default();
        for name in headers.keys() {
            if name == header::RANGE {
                asks.range = true;
            } else if name == header::ACCEPT_ENCODING {
                asks.coding = true;
            } else if name == header::IF_MATCH
                || name == header::IF_NONE_MATCH
                || name == header::IF_MODIFIED_SINCE
                || name == header::IF_UNMODIFIED_SINCE
            {
                asks.preconditions = true;
            }
        }
        asks
    }
}

/// The response for `found`.
fn file(
    found: File,
    options: &FileOptions,
    (recorder, steps): (&dyn Recorder, &Steps),
    method: &Method,
    headers: &HeaderMap,
) -> Result<Answer, ReadError> {
    let content_type = found.facts.content_type;
    let compression = &options.compression;
    let codable = found.facts.compressible && (compression.precompressed || compression.on_the_fly);
    let asks = Asks::of(headers);
    // Ranges apply to GET only (RFC 9110 §14.2), and to the file as it is: a coding made
    // on the fly has no stable bytes to take ranges of.
    let range = match asks.range && method == Method::GET {
        true => headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        false => None,
    };
    let selected = if codable && asks.coding && range.is_none() {
        select(found, compression, headers)
    } else {
        Selected::Identity(found)
    };
    let (file, coding, slot) = match selected {
        Selected::Identity(f) => (f, None, None),
        Selected::Sibling(c, f) => (f, Some(c), None),
        Selected::OnTheFly(c, f, slot) => (f, Some(c), Some(slot)),
    };
    let head = method == Method::HEAD;
    let on_the_fly = slot.is_some();
    if (on_the_fly && !head) || !file.in_memory() {
        // Read from disk, or compressed on the blocking pool: the request may wait.
        steps.step(READ_FILE);
    }

    let facts = file.facts.clone();
    // The representation's own fields, made with its facts: a sibling's and a coding's
    // facts carry the original's name, so its type, and a coding's no length.
    let mut response = Response::new(body::empty());
    *response.headers_mut() = facts.head.clone();
    let h = response.headers_mut();
    if !codable && facts.compressible {
        // Compression is off: the answer does not vary with `Accept-Encoding`.
        h.remove(header::VARY);
    }
    if let Some(coding) = coding {
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(coding.token()),
        );
    }
    if let Some(cc) = &options.cache_control {
        h.insert(header::CACHE_CONTROL, cc.clone());
    }
    let verdict = match asks.preconditions {
        true => conditional::evaluate(headers, &facts.tag, facts.modified),
        false => Verdict::Proceed,
    };
    match verdict {
        Verdict::Proceed => {}
        Verdict::NotModified => {
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            // RFC 9110 §15.4.5: the validators, `Vary` and `Cache-Control` go (a cache
            // updates what it holds with them); the representation's other metadata
            // SHOULD NOT, as nginx leaves it out. `Last-Modified` stays beside the tag,
            // for caches that validate by date.
            let h = response.headers_mut();
            for name in [
                header::CONTENT_LENGTH,
                header::CONTENT_TYPE,
                header::CONTENT_ENCODING,
                header::ACCEPT_RANGES,
            ] {
                h.remove(name);
            }
            return Ok(Answer::Now(response));
        }
        Verdict::Failed => {
            return Ok(Answer::Now(error_page(
                StatusCode::PRECONDITION_FAILED,
                "a precondition did not hold",
            )));
        }
    }
    if let (Some(slot), Some(coding)) = (slot, coding) {
        if head {
            // A HEAD answer says how the body would be coded, not how long it would be:
            // making it only to count its bytes would cost what a GET costs (nginx
            // leaves the length out too).
            return Ok(Answer::Now(response));
        }
        let name = facts.name.clone();
        return Ok(Answer::Later(Box::pin(async move {
            let coded = compress(file.content, name, coding, slot).await?;
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(coded.len()));
            *response.body_mut() = body::full(coded);
            Ok(response)
        })));
    }

    let len = file.len;
    let ranges = match range {
        Some(spec)
            if conditional::if_range_holds(
                headers,
                &facts.tag,
                facts.last_modified.as_ref().and_then(|v| v.to_str().ok()),
                facts.modified,
            ) =>
        {
            ranges::parse(spec, len)
        }
        _ => Ranges::Ignored,
    };
    let parts = match ranges {
        Ranges::Ignored => None,
        Ranges::Refused => {
            recorder.refused(Refusal::Ranges);
            None
        }
        Ranges::Unsatisfiable => {
            let mut response = with_status(StatusCode::RANGE_NOT_SATISFIABLE, body::empty());
            let value = format!("bytes */{len}");
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&value).expect("digits and ASCII"),
            );
            // Said as HTTP/1.1 says it; hyper's h2 leaves an empty body's length out.
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            return Ok(Answer::Now(response));
        }
        Ranges::Parts(parts) => Some(parts),
    };
    match parts {
        Some(parts) if parts.len() > 1 => multipart(response, file, content_type, parts, head),
        Some(parts) => {
            let (start, end) = parts[0];
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            let value = format!("bytes {start}-{end}/{len}");
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&value).expect("digits and ASCII"),
            );
            let slice = (start, end + 1);
            whole_or_slice(response, file.content, (len, &facts), slice, head)
        }
        None => whole_or_slice(response, file.content, (len, &facts), (0, len), head),
    }
}

/// `response` with the bytes `start..end` of a file of `len` bytes, which `facts`
/// describe: at once when they are in memory or small enough to read in place.
fn whole_or_slice(
    mut response: Response<Body>,
    content: Content,
    (len, facts): (u64, &Facts),
    (start, end): (u64, u64),
    head: bool,
) -> Result<Answer, ReadError> {
    let count = end - start;
    // The whole file, most often: its length came with its facts' fields.
    if facts.length != Some(count) {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    }
    if head || count == 0 {
        return Ok(Answer::Now(response));
    }
    // Cut in place: the bytes are this answer's own handle, so no second one is made.
    let slice = move |mut bytes: Bytes| {
        let end = to_usize(end).min(bytes.len());
        bytes.truncate(end);
        bytes.advance(to_usize(start).min(end));
        body::full(bytes)
    };
    let body = match content {
        Content::Memory(bytes)
        | Content::Disk {
            held: Some(bytes), ..
        } => slice(bytes),
        Content::Disk {
            path, stamp, keep, ..
        } if len <= READ_WHOLE => {
            let bytes = Bytes::from(read_checked(&path, stamp).map_err(|e| (path, e))?);
            if let Some(keep) = keep {
                keep.cache.hold(&keep.raw, keep.stamp, &bytes);
            }
            slice(bytes)
        }
        Content::Disk {
            path,
            stamp,
            keep: Some(keep),
            ..
        } => {
            return Ok(Answer::Later(Box::pin(async move {
                let read = blocking(&path, move |path| read_checked(&path, stamp)).await;
                let bytes = Bytes::from(read.map_err(|e| (path, e))?);
                keep.cache.hold(&keep.raw, keep.stamp, &bytes);
                *response.body_mut() = slice(bytes);
                Ok(response)
            })));
        }
        Content::Disk { path, stamp, .. } => {
            return Ok(Answer::Later(Box::pin(async move {
                let file = open(&path, stamp).await.map_err(|e| (path, e))?;
                *response.body_mut() = FileBody::body(file, start, count);
                Ok(response)
            })));
        }
    };
    *response.body_mut() = body;
    Ok(Answer::Now(response))
}

/// A 206 of several ranges as `multipart/byteranges` (RFC 9110 §14.6).
fn multipart(
    mut response: Response<Body>,
    file: File,
    content_type: &str,
    parts: Vec<(u64, u64)>,
    head: bool,
) -> Result<Answer, ReadError> {
    let framing = Multipart::new(&parts, file.len, content_type);
    *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    let h = response.headers_mut();
    let ct = format!("multipart/byteranges; boundary={}", framing.boundary);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&ct).expect("ASCII"),
    );
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(framing.len(&parts)),
    );
    if head {
        return Ok(Answer::Now(response));
    }
    *response.body_mut() = match file.content {
        Content::Memory(bytes)
        | Content::Disk {
            held: Some(bytes), ..
        } => body::full(framing.assemble(&parts, &bytes)),
        Content::Disk { path, stamp, .. } if file.len <= READ_WHOLE => {
            match read_checked(&path, stamp) {
                Ok(bytes) => body::full(framing.assemble(&parts, &Bytes::from(bytes))),
                Err(e) => return Err((path, e)),
            }
        }
        Content::Disk { path, stamp, .. } => {
            return Ok(Answer::Later(Box::pin(async move {
                // One open file for every part, each streamed in chunks from its start.
                let file = match open(&path, stamp).await {
                    Ok(f) => f,
                    Err(e) => return Err((path, e)),
                };
                let Multipart { heads, tail, .. } = framing;
                let parts = heads
                    .into_iter()
                    .zip(parts)
                    .map(|(head, (start, end))| (head, start, end - start + 1));
                *response.body_mut() = FileParts::body(file, parts, tail);
                Ok(response)
            })));
        }
    };
    Ok(Answer::Now(response))
}

/// The file at `path` as `stamp` describes it ([`open_checked`]), opened on the blocking
/// pool.
async fn open(path: &Arc<Path>, stamp: cache::Stamp) -> io::Result<std::fs::File> {
    blocking(path, move |path| open_checked(&path, stamp)).await
}

/// Runs `work` on `path` on tokio's blocking pool: opening or reading a file may wait on
/// the disk.
async fn blocking<T: Send + 'static>(
    path: &Arc<Path>,
    work: impl FnOnce(Arc<Path>) -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let path = path.clone();
    tokio::task::spawn_blocking(move || work(path))
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)))
}

/// The file at `path`, opened as it was when it was looked up: the canonical path it
/// led to, under the root, and the version `stamp` describes, whose length, `ETag` and
/// `Last-Modified` the answer carries. Between the lookup and the open a directory on the
/// way may have been replaced by a symlink (leading out of the root, perhaps), or the file
/// rewritten: where the open led is read back (`/proc/self/fd`) and must be that path, and
/// the file opened must be that version, or nothing is read. Opened without waiting, so a
/// named pipe put in its place does not hold the thread (it is no longer the file).
fn open_checked(path: &Path, stamp: cache::Stamp) -> io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    if let Ok(led_to) = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        && led_to != path
    {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("it now leads to {}", led_to.display()),
        ));
    }
    if cache::Stamp::of(&file.metadata()?) != stamp {
        return Err(io::Error::other(Changed));
    }
    Ok(file)
}

/// The bytes of the file at `path` as `stamp` describes it ([`open_checked`]): no more
/// than its length then, and all of them.
fn read_checked(path: &Path, stamp: cache::Stamp) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let file = open_checked(path, stamp)?;
    let len = stamp.len();
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(len).read_to_end(&mut bytes)?;
    if bytes.len() as u64 != len {
        return Err(io::Error::other(Changed));
    }
    Ok(bytes)
}

/// A file changed between its lookup and its reading: the answer's length and validators
/// would not be of the bytes sent.
#[derive(Debug)]
struct Changed;

impl std::fmt::Display for Changed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("it changed as it was read")
    }
}

impl std::error::Error for Changed {}

/// The file's bytes in `coding`, read and compressed on the blocking pool, which holds
/// `slot` until it is done.
async fn compress(
    content: Content,
    name: String,
    coding: Coding,
    slot: encoding::Slot,
) -> Result<Bytes, ReadError> {
    let (path, work) = match content {
        Content::Disk { path, stamp, .. } => {
            let read = path.clone();
            (
                path,
                tokio::task::spawn_blocking(move || {
                    let _slot = slot;
                    coding.compress(&read_checked(&read, stamp)?)
                }),
            )
        }
        Content::Memory(bytes) => (
            Path::new(&name).into(),
            tokio::task::spawn_blocking(move || {
                let _slot = slot;
                coding.compress(&bytes)
            }),
        ),
    };
    match work.await {
        Ok(Ok(coded)) => Ok(Bytes::from(coded)),
        Ok(Err(e)) => Err((path, e)),
        Err(e) => Err((path, std::io::Error::other(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is read is the file a lookup found, where it found it: not the file a
    /// directory on the way, replaced by a symlink since, leads to (out of the root), nor
    /// a version rewritten since, whose bytes would not match the answer's length and
    /// `ETag`; nor a named pipe put in its place, which is not waited on.
    #[test]
    fn a_file_is_read_only_as_and_where_it_was_looked_up() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::create_dir_all(dir.path().join("outside")).unwrap();
        let inside = root.join("d/f.txt");
        std::fs::write(&inside, "inside").unwrap();
        let path = inside.canonicalize().unwrap();
        let stamp = |p: &Path| cache::Stamp::of(&std::fs::metadata(p).unwrap());
        let looked_up = stamp(&path);
        assert_eq!(read_checked(&path, looked_up).unwrap(), b"inside");

        // The directory moved out of the root and a symlink put in its place: the same
        // file, now outside.
        let moved = dir.path().join("outside/d");
        std::fs::rename(root.join("d"), &moved).unwrap();
        std::os::unix::fs::symlink(&moved, root.join("d")).unwrap();
        let err = read_checked(&path, looked_up).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        std::fs::remove_file(root.join("d")).unwrap();
        std::fs::rename(&moved, root.join("d")).unwrap();

        // Rewritten, longer, since the lookup.
        std::fs::write(&inside, "inside, and much more since").unwrap();
        let err = read_checked(&path, looked_up).unwrap_err();
        assert!(err.get_ref().is_some_and(|e| e.is::<Changed>()), "{err}");
        assert!(open_checked(&path, stamp(&path)).is_ok());

        // A named pipe in its place: refused at once, not waited on.
        std::fs::remove_file(&inside).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &inside,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let err = read_checked(&path, looked_up).unwrap_err();
        assert!(err.get_ref().is_some_and(|e| e.is::<Changed>()), "{err}");
    }

    #[test]
    fn an_embedded_files_answer_fields_are_made_once_with_its_set() {
        let set = EmbeddedFiles::new([("css/site.css", &b"body {}"[..])]).unwrap();
        let source = Source::Memory(set.clone());
        let facts = |raw: &str| match source.find(raw) {
            Ok(Found::File(file)) => file.facts,
            _ => panic!("{raw} is a file"),
        };
        let (first, again) = (facts("/css/site.css"), facts("/css/site.css"));
        assert!(Arc::ptr_eq(&first, &again), "shared, not made per request");
        assert_eq!(first.name, "site.css");
        assert_eq!(first.content_type, crate::mime::content_type("site.css"));
        assert_eq!(first.length, Some(7));
        assert_eq!(
            first.tag,
            conditional::memory_tag(7, set.modified()),
            "tagged as before"
        );
    }
}
