//! Request paths: their normal form, and from a path to a file under the root.
//!
//! Every request path is put in normal form once, before routing ([`normalize`], RFC 3986
//! §6.2.2): percent-encoded unreserved characters are decoded (so `%2e` is a dot and
//! `%7E` a tilde), other percent-encodings are kept with upper-case hex, characters a
//! path may not hold as they are (§3.3: `"`, `[`, `\`, `{`, a byte that is not ASCII)
//! are percent-encoded, and dot segments are removed (§5.2.4). Routing, forwarding and
//! files all see that one form. A path whose `..` climbs above `/` is refused rather than
//! clamped. [`read`] gives the other ways a path can be taken (encoded dots kept literal,
//! as a matcher that does not decode would; encoded slashes decoded, as some upstreams
//! do), so a caller can refuse a path whose meaning depends on the reader.
//!
//! Files are then looked up defensively on their own terms ([`resolve`]): the path is
//! percent-decoded in full and split, so an encoded `%2f` is judged like a slash. `.` and
//! empty segments are dropped; `..` is refused (never resolved), as are NUL bytes and
//! hidden names (a leading `.`, which would serve `.git` or `.env`; `.well-known` is
//! allowed). The joined path is then canonicalized and must still lie under the canonical
//! root, so a symlink cannot lead out of it.

use std::borrow::Cow;
use std::fs::Metadata;
use std::io;
use std::path::{Path, PathBuf};

/// Why a request path cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// `..`, a NUL byte, or percent-encoding that is broken or not UTF-8: a bad request.
    Malformed,
    /// A `..` segment climbs above `/`: a bad request.
    AboveRoot,
    /// Encoded dots or slashes, or a run of slashes, would send the request elsewhere
    /// depending on who decodes or merges them: a bad request.
    Ambiguous,
    /// Nothing servable there (missing, hidden, or outside the root through a symlink).
    NotFound,
}

impl PathError {
    /// What the client is told (it never echoes the path).
    pub fn message(self) -> &'static str {
        match self {
            Self::Malformed => "the path is not acceptable",
            Self::AboveRoot => "the path climbs above the root",
            Self::Ambiguous => {
                "encoded dots or slashes, or a run of slashes, in the path change where it leads"
            }
            Self::NotFound => "no such file",
        }
    }
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// A file or directory under the root.
#[derive(Debug)]
pub struct Resolved {
    /// Its canonical path.
    pub path: PathBuf,
    /// Its metadata (size, modification time, kind).
    pub meta: Metadata,
}

/// How a request path is read: in normal form, or as a reader that decodes differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reading {
    /// Unreserved characters decoded, other percent-encodings kept, dot segments removed.
    Normal,
    /// Like `Normal`, but `%2E` stays an encoded character, never part of a dot segment.
    EncodedDotsKept,
    /// Like `Normal`, but `%2F`, `%5C` and `\` separate segments too, as an upstream
    /// that decodes the whole path (or takes a backslash for a slash) would read it.
    EncodedSlashesDecoded,
    /// Like `EncodedSlashesDecoded`, with runs of slashes then taken as one, before dot
    /// segments are removed, as nginx does by default (`merge_slashes`): `/api/%2F../x`
    /// is `/api//../x` and so `/x` to it, where the empty segment keeps it under `/api`
    /// otherwise.
    EncodedSlashesMerged,
}

impl Reading {
    /// The readings that may differ from the normal form.
    pub const OTHERS: [Self; 3] = [
        Self::EncodedDotsKept,
        Self::EncodedSlashesDecoded,
        Self::EncodedSlashesMerged,
    ];

    /// Whether `raw` could read differently this way than in normal form.
    pub fn may_differ(self, raw: &str) -> bool {
        // Every other reading differs only in what it makes of `%` and `\`, and the merged
        // one of a run of slashes too (`//api/x` is `/api/x` to it).
        let merges = self == Self::EncodedSlashesMerged && raw.contains("//");
        if !merges && !raw.bytes().any(|b| b == b'%' || b == b'\\') {
            return false;
        }
        match self {
            Self::Normal => false,
            Self::EncodedDotsKept => raw.contains("%2e") || raw.contains("%2E"),
            Self::EncodedSlashesDecoded | Self::EncodedSlashesMerged => {
                merges
                    || raw.contains('\\')
                    || ["%2f", "%2F", "%5c", "%5C"].iter().any(|e| raw.contains(e))
            }
        }
    }
}

/// `raw` (the path of a request target) in normal form (RFC 3986 §6.2.2): `raw` itself
/// when it is in that form already, as most paths are.
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, PathError> {
    read(raw, Reading::Normal)
}

/// `raw` read the `reading` way, with dot segments removed (RFC 3986 §5.2.4). The
/// asterisk-form `*` (for `OPTIONS`) is kept; any other path must start with `/`.
pub fn read(raw: &str, reading: Reading) -> Result<Cow<'_, str>, PathError> {
    if raw == "*" {
        return Ok(Cow::Borrowed(raw));
    }
    if !raw.starts_with('/') {
        return Err(PathError::Malformed);
    }
    let slashes = matches!(
        reading,
        Reading::EncodedSlashesDecoded | Reading::EncodedSlashesMerged
    );
    let merge = reading == Reading::EncodedSlashesMerged;
    // Most paths have nothing to decode and no segment starting with a dot: they are
    // already in normal form, and every reading of them is the same but the merged one
    // of a path with a run of slashes.
    if is_plain(raw) && !(merge && raw.contains("//")) {
        return Ok(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let slash = |out: &mut Vec<u8>| {
        if !(merge && out.last() == Some(&b'/')) {
            out.push(b'/');
        }
    };
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let byte = bytes
                    .get(i + 1..i + 3)
                    .and_then(|hex| Some(hex_value(hex[0])? << 4 | hex_value(hex[1])?))
                    .ok_or(PathError::Malformed)?;
                match byte {
                    b'.' if reading == Reading::EncodedDotsKept => out.extend_from_slice(b"%2E"),
                    b'/' | b'\\' if slashes => slash(&mut out),
                    b if is_unreserved(b) => out.push(b),
                    b => percent_encode(b, &mut out),
                }
                i += 3;
            }
            b'/' | b'\\' if slashes && (merge || bytes[i] == b'\\') => {
                slash(&mut out);
                i += 1;
            }
            // What a path may not hold as it is is percent-encoded (RFC 3986 section 2.1,
            // RFC 3987 section 3.1): the UTF-8 an HTTP/2 client sent raw, and ASCII such as
            // `"`, `{`, `[` or `\` that the `http` crate lets through (a space or a control
            // it refuses before a request is made). An upstream is sent a valid target, and
            // both spellings of a path lead to the same route and file.
            b if !is_path_char(b) => {
                percent_encode(b, &mut out);
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    // Only ASCII was written.
    let decoded = String::from_utf8(out).map_err(|_| PathError::Malformed)?;
    remove_dot_segments(&decoded).map(Cow::Owned)
}

/// Whether `raw` has no `%`, no segment starting with a dot and nothing but what a path
/// holds as it is: one pass over its bytes, as every request's path is checked.
fn is_plain(raw: &str) -> bool {
    let mut after_slash = false;
    raw.bytes().all(|b| {
        let plain = is_path_char(b) && !(after_slash && b == b'.');
        after_slash = b == b'/';
        plain
    })
}

/// Whether a path holds `b` as it is (RFC 3986 §3.3: `/`, unreserved characters,
/// sub-delimiters, `:` and `@`); every other byte is percent-encoded, and `%` begins an
/// encoding.
fn is_path_char(b: u8) -> bool {
    PATH_CHARS[usize::from(b)]
}

const PATH_CHARS: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        // Unreserved, sub-delimiters, `:`, `@`, and the separator.
        table[b] = is_unreserved(c)
            || matches!(
                c,
                b'!' | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'/'
            );
        b += 1;
    }
    table
};

/// Appends `%XX` for `b`, in capitals (RFC 3986 section 6.2.2.1).
fn percent_encode(b: u8, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
}

/// `query` with every byte a query may not hold as it is percent-encoded (RFC 3986 §3.4:
/// what a path holds, `?` and `%`, which begins an encoding kept as it is): `query` itself
/// when there is none, as there mostly is not.
pub fn encode_query(query: &str) -> Cow<'_, str> {
    let plain = |b: u8| is_path_char(b) || b == b'?' || b == b'%';
    if query.bytes().all(plain) {
        return Cow::Borrowed(query);
    }
    let mut out = Vec::with_capacity(query.len() + 16);
    for b in query.bytes() {
        if plain(b) {
            out.push(b);
        } else {
            percent_encode(b, &mut out);
        }
    }
    Cow::Owned(String::from_utf8(out).expect("only ASCII was written"))
}

/// RFC 3986 §3: `ALPHA / DIGIT / "-" / "." / "_" / "~"`, which §6.2.2.2 says should be
/// decoded when percent-encoded.
const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// RFC 3986 §5.2.4 on an absolute path, except that a `..` with nothing left to remove is
/// an error instead of being dropped: no legitimate link climbs above the root.
fn remove_dot_segments(path: &str) -> Result<String, PathError> {
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." => {}
            ".." => {
                out.pop().ok_or(PathError::AboveRoot)?;
            }
            // A dot segment with a path parameter (`..;x`, RFC 3986 §3.3) is a dot segment
            // to servers that strip parameters first (Tomcat, Jetty), and a name to us:
            // whichever reading is right, the route would not be the same.
            s if is_dot_with_parameter(s) => return Err(PathError::Ambiguous),
            s => out.push(s),
        }
        // A final `.` or `..` leaves the path ending in `/`.
        if i == last && matches!(*segment, "." | "..") {
            out.push("");
        }
    }
    let mut normal = String::with_capacity(path.len());
    for segment in out {
        normal.push('/');
        normal.push_str(segment);
    }
    if normal.is_empty() {
        normal.push('/');
    }
    Ok(normal)
}

fn is_dot_with_parameter(segment: &str) -> bool {
    let dots = segment
        .strip_prefix("..")
        .or_else(|| segment.strip_prefix('.'));
    dots.is_some_and(|rest| rest.starts_with(';') || rest.starts_with("%3B"))
}

/// Where a directory redirect points: the path with a trailing `/`, runs of slashes
/// collapsed and backslashes (which browsers read as slashes) encoded, so it can never
/// begin with `//` and become a protocol-relative link to another host.
pub fn directory_location(path: &str) -> String {
    let mut location = String::with_capacity(path.len() + 1);
    for c in path.chars() {
        match c {
            '\\' => location.push_str("%5C"),
            '/' if location.ends_with('/') => {}
            c => location.push(c),
        }
    }
    if !location.ends_with('/') {
        location.push('/');
    }
    location
}

/// The decoded, checked segments of `raw` (the path part of a request target), each
/// decoded on its own: an escaped slash (`%2F`) is part of its segment, and no file's
/// name holds one (`/a.txt%2F` names nothing, as `/a.txt/` does not).
pub fn segments(raw: &str) -> Result<Vec<String>, PathError> {
    let mut out = Vec::new();
    for segment in raw.split('/') {
        let decoded = percent_encoding::percent_decode_str(segment)
            .decode_utf8()
            .map_err(|_| PathError::Malformed)?;
        match &*decoded {
            "" | "." => {}
            ".." => return Err(PathError::Malformed),
            s if s.contains('\0') => return Err(PathError::Malformed),
            // A traversal spelled with escaped slashes is refused as one.
            s if s.split('/').any(|part| part == "..") => return Err(PathError::Malformed),
            s if s.contains('/') => return Err(PathError::NotFound),
            s if hidden(s) => return Err(PathError::NotFound),
            s => out.push(s.to_owned()),
        }
    }
    Ok(out)
}

/// Whether a name is hidden, never served: it starts with a dot (`.git`, `.env`), but
/// for `.well-known`.
pub fn hidden(name: &str) -> bool {
    name.starts_with('.') && name != ".well-known"
}

/// Resolves `raw` under `root`, which must already be canonical.
pub fn resolve(root: &Path, raw: &str) -> Result<Resolved, PathError> {
    let mut path = root.to_path_buf();
    path.extend(segments(raw)?);
    let path = path.canonicalize().map_err(not_found)?;
    let Ok(under) = path.strip_prefix(root) else {
        tracing::debug!(path = %path.display(), "refused a path that leads out of the root");
        return Err(PathError::NotFound);
    };
    // A symlink inside the root may lead to a hidden name (`env` to `.env`): what it leads
    // to is hidden all the same.
    if under
        .components()
        .any(|c| c.as_os_str().to_str().is_none_or(hidden))
    {
        return Err(PathError::NotFound);
    }
    let meta = std::fs::metadata(&path).map_err(not_found)?;
    // A file of the process's own, reached by a name a hard link or a mount gave it
    // inside the root after the configuration was checked: not served, by any method.
    if crate::private::is_private_file(&meta) {
        if let Some(suppressed) = crate::private::log_budget() {
            tracing::warn!(path = %path.display(), suppressed, "a request reached a file of weft's own (the configuration, history, a key, a zone or a log) inside the root, by a hard link or a mount; not served");
        }
        return Err(PathError::NotFound);
    }
    // A file this process may not read is nothing servable, as one under a directory it
    // may not enter is: a HEAD, a conditional GET and a GET answer it alike (a HEAD said
    // 200 with its size and a GET 500). Looked up again at each request, as any path
    // that leads nowhere is (only what resolves is kept): said at debug, as each 404 is,
    // so requests for it cannot flood the log.
    if meta.is_file()
        && std::fs::File::open(&path).is_err_and(|e| e.kind() == io::ErrorKind::PermissionDenied)
    {
        tracing::debug!(path = %path.display(), "a static file this process may not read is not served");
        return Err(PathError::NotFound);
    }
    Ok(Resolved { path, meta })
}

fn not_found(_: io::Error) -> PathError {
    PathError::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub dir")).unwrap();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        std::fs::write(root.join("sub dir/b.txt"), "b").unwrap();
        std::fs::write(root.join(".env"), "secret").unwrap();
        std::fs::write(dir.path().join("outside.txt"), "secret").unwrap();
        let root = root.canonicalize().unwrap();
        (dir, root)
    }

    /// A file that cannot be opened for reading, even by root: `/proc/sys/vm/compact_memory`
    /// is write-only. Not found, whatever asks for it.
    #[test]
    fn a_file_this_process_may_not_read_is_not_found() {
        let root = Path::new("/proc/sys/vm");
        let unreadable = root.join("compact_memory");
        let denied = std::fs::File::open(&unreadable)
            .is_err_and(|e| e.kind() == io::ErrorKind::PermissionDenied);
        if !std::fs::metadata(&unreadable).is_ok_and(|m| m.is_file()) || !denied {
            eprintln!(
                "skipped: {} is not a write-only file here",
                unreadable.display()
            );
            return;
        }
        assert!(matches!(
            resolve(root, "/compact_memory"),
            Err(PathError::NotFound)
        ));
        assert!(
            resolve(root, "/swappiness").is_ok(),
            "a readable one is served"
        );
    }

    #[test]
    fn dot_segments_are_removed_as_rfc3986_5_2_4_says() {
        for (raw, normal) in [
            ("/a/b/c/./../../g", "/a/g"),
            ("/mid/content=5/../6", "/mid/6"),
            ("/a/b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/a/..", "/"),
            ("/a//..", "/a/"),
            ("/./a", "/a"),
            ("/", "/"),
            ("/a//b/", "/a//b/"),
            ("/a/.b/..c", "/a/.b/..c"),
        ] {
            assert_eq!(normalize(raw).as_deref(), Ok(normal), "{raw}");
        }
        for raw in ["/..", "/a/../..", "/../a", "/%2e%2e/a"] {
            assert_eq!(normalize(raw), Err(PathError::AboveRoot), "{raw}");
        }
    }

    #[test]
    fn only_unreserved_characters_are_decoded_rfc3986_6_2_2() {
        assert_eq!(normalize("/%61%2D%5f%7e%2e%39").unwrap(), "/a-_~.9");
        assert_eq!(
            normalize("/a%2fb%3f%25%c3%a9").unwrap(),
            "/a%2Fb%3F%25%C3%A9"
        );
        // Raw UTF-8 (an HTTP/2 client may send it) is encoded: both spellings are one path,
        // and an upstream gets a request line of ASCII.
        assert_eq!(normalize("/caf\u{e9}").unwrap(), "/caf%C3%A9");
        assert_eq!(normalize("/caf%c3%a9").unwrap(), "/caf%C3%A9");
        // So is ASCII a path does not hold as it is (RFC 3986 §3.3), which hyper lets
        // through raw: `"` and `%22` are one path, as a space and `%20` are.
        assert_eq!(
            normalize("/c\"d/{e}|f^g`h").unwrap(),
            "/c%22d/%7Be%7D%7Cf%5Eg%60h"
        );
        assert_eq!(normalize("/c%22d/").unwrap(), "/c%22d/");
        assert_eq!(normalize("/a b\\c<d>").unwrap(), "/a%20b%5Cc%3Cd%3E");
        assert!(matches!(
            normalize("/v1/a:b@c!$&'()*+,;=~"),
            Ok(Cow::Borrowed(_))
        ));
        assert_eq!(encode_query("q=caf\u{e9}&x=1"), "q=caf%C3%A9&x=1");
        assert_eq!(
            encode_query("q={\"a\":1}|b&r=/x?y%20"),
            "q=%7B%22a%22:1%7D%7Cb&r=/x?y%20"
        );
        assert!(matches!(
            encode_query("q=1&r=%20"),
            Cow::Borrowed("q=1&r=%20")
        ));
        assert_eq!(normalize("/a/%2e/b/%2E%2e/c").unwrap(), "/a/c");
        for raw in ["/%", "/%2", "/%zz", "/%+f", "api", ""] {
            assert_eq!(normalize(raw), Err(PathError::Malformed), "{raw:?}");
        }
        assert_eq!(normalize("*").unwrap(), "*");
    }

    #[test]
    fn other_readings_keep_encoded_dots_or_split_at_encoded_slashes() {
        let dots = |raw| read(raw, Reading::EncodedDotsKept);
        let slashes = |raw| read(raw, Reading::EncodedSlashesDecoded);
        assert_eq!(dots("/api/%2e%2e/x").unwrap(), "/api/%2E%2E/x");
        assert_eq!(dots("/api/../x").unwrap(), "/x");
        assert_eq!(slashes("/api/..%2fx").unwrap(), "/x");
        assert_eq!(slashes("/api/a%5C..%5Cb\\c").unwrap(), "/api/b/c");
        assert_eq!(slashes("/api/..%2f..%2fx"), Err(PathError::AboveRoot));
        assert!(Reading::EncodedDotsKept.may_differ("/a/%2E"));
        assert!(!Reading::EncodedDotsKept.may_differ("/a/./b"));
        assert!(Reading::EncodedSlashesDecoded.may_differ("/a\\b"));
        assert!(!Reading::EncodedSlashesDecoded.may_differ("/a/%41"));
        // An empty segment made of an encoded slash keeps a `..` from climbing out of
        // `/api` only to a reader that does not merge slashes.
        let merged = |raw| read(raw, Reading::EncodedSlashesMerged);
        assert_eq!(slashes("/api/%2F../admin/x").unwrap(), "/api/admin/x");
        assert_eq!(merged("/api/%2F../admin/x").unwrap(), "/admin/x");
        assert_eq!(merged("/api//..%2Fadmin/x").unwrap(), "/admin/x");
        assert_eq!(merged("/api/%5C%5c\\a").unwrap(), "/api/a");
        assert!(Reading::EncodedSlashesMerged.may_differ("/api/%2F../x"));
    }

    #[test]
    fn a_directory_location_is_never_protocol_relative() {
        assert_eq!(directory_location("/docs"), "/docs/");
        assert_eq!(directory_location("//evil.example"), "/evil.example/");
        assert_eq!(directory_location("/a///b"), "/a/b/");
        assert_eq!(directory_location("/\\evil.example"), "/%5Cevil.example/");
    }

    #[test]
    fn plain_and_encoded_paths_resolve_inside_the_root() {
        let (_dir, root) = tree();
        assert_eq!(resolve(&root, "/a.txt").unwrap().path, root.join("a.txt"));
        let b = resolve(&root, "/sub%20dir/./b.txt").unwrap();
        assert_eq!(b.path, root.join("sub dir/b.txt"));
        assert!(resolve(&root, "/").unwrap().meta.is_dir());
        assert!(resolve(&root, "//sub%20dir//").unwrap().meta.is_dir());
    }

    #[test]
    fn traversal_is_refused_plain_or_encoded() {
        let (_dir, root) = tree();
        for attempt in [
            "/../outside.txt",
            "/sub%20dir/../../outside.txt",
            "/%2e%2e/outside.txt",
            "/%2E%2E%2Foutside.txt",
            "/sub%20dir%2f%2e%2e%2f%2e%2e%2foutside.txt",
            "/..%2foutside.txt",
        ] {
            assert_eq!(
                resolve(&root, attempt).unwrap_err(),
                PathError::Malformed,
                "{attempt}"
            );
        }
        assert_eq!(
            resolve(&root, "/a%00.txt").unwrap_err(),
            PathError::Malformed
        );
        assert_eq!(resolve(&root, "/%ff").unwrap_err(), PathError::Malformed);
    }

    #[test]
    fn hidden_and_missing_files_are_not_found() {
        let (_dir, root) = tree();
        assert_eq!(resolve(&root, "/.env").unwrap_err(), PathError::NotFound);
        assert_eq!(resolve(&root, "/%2eenv").unwrap_err(), PathError::NotFound);
        assert_eq!(
            resolve(&root, "/nope.txt").unwrap_err(),
            PathError::NotFound
        );
        assert!(segments("/.well-known/acme").is_ok());
        // Nor through a symlink inside the root leading to one.
        std::os::unix::fs::symlink(root.join(".env"), root.join("env")).unwrap();
        std::fs::create_dir(root.join(".hidden")).unwrap();
        std::fs::write(root.join(".hidden/secret"), "secret").unwrap();
        std::os::unix::fs::symlink(root.join(".hidden"), root.join("hid")).unwrap();
        assert_eq!(resolve(&root, "/env").unwrap_err(), PathError::NotFound);
        assert_eq!(
            resolve(&root, "/hid/secret").unwrap_err(),
            PathError::NotFound
        );
        // An escaped slash is part of its segment: no file is named with one.
        for raw in ["/a.txt%2f", "/a.txt%2F%2e", "/sub%20dir%2fb.txt"] {
            assert_eq!(
                resolve(&root, raw).unwrap_err(),
                PathError::NotFound,
                "{raw}"
            );
        }
        assert!(resolve(&root, "/sub%20dir/b.txt").is_ok());
    }

    #[test]
    fn a_symlink_out_of_the_root_is_not_followed() {
        let (dir, root) = tree();
        std::os::unix::fs::symlink(dir.path().join("outside.txt"), root.join("leak")).unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("up")).unwrap();
        std::os::unix::fs::symlink(root.join("a.txt"), root.join("alias")).unwrap();
        assert_eq!(resolve(&root, "/leak").unwrap_err(), PathError::NotFound);
        assert_eq!(
            resolve(&root, "/up/outside.txt").unwrap_err(),
            PathError::NotFound
        );
        assert_eq!(resolve(&root, "/alias").unwrap().path, root.join("a.txt"));
    }
}
