//! From a request path to a file under the root, never outside it.
//!
//! The path is percent-decoded first and then split, so an encoded `%2e%2e` or `%2f` is
//! judged like the plain characters. `.` and empty segments are dropped; `..` is refused
//! (never resolved), as are NUL bytes and hidden names (a leading `.`, which would serve
//! `.git` or `.env`; `.well-known` is allowed). The joined path is then canonicalized and
//! must still lie under the canonical root, so a symlink cannot lead out of it.

use std::fs::Metadata;
use std::io;
use std::path::{Path, PathBuf};

/// Why a request path names no file to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// `..`, a NUL byte, or percent-encoding that is not UTF-8: a bad request.
    #[error("the path is not acceptable")]
    Malformed,
    /// Nothing servable there (missing, hidden, or outside the root through a symlink).
    #[error("no such file")]
    NotFound,
}

/// A file or directory under the root.
#[derive(Debug)]
pub struct Resolved {
    /// Its canonical path.
    pub path: PathBuf,
    /// Its metadata (size, modification time, kind).
    pub meta: Metadata,
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

/// The decoded, checked segments of `raw` (the path part of a request target).
pub fn segments(raw: &str) -> Result<Vec<String>, PathError> {
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| PathError::Malformed)?;
    let mut out = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err(PathError::Malformed),
            s if s.contains('\0') => return Err(PathError::Malformed),
            s if s.starts_with('.') && s != ".well-known" => return Err(PathError::NotFound),
            s => out.push(s.to_owned()),
        }
    }
    Ok(out)
}

/// Resolves `raw` under `root`, which must already be canonical.
pub fn resolve(root: &Path, raw: &str) -> Result<Resolved, PathError> {
    let mut path = root.to_path_buf();
    path.extend(segments(raw)?);
    let path = path.canonicalize().map_err(not_found)?;
    if !path.starts_with(root) {
        tracing::debug!(path = %path.display(), "refused a path that leads out of the root");
        return Err(PathError::NotFound);
    }
    let meta = std::fs::metadata(&path).map_err(not_found)?;
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
