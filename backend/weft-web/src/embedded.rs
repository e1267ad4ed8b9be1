//! [`EmbeddedFiles`]: static files held in memory (a site built into a program with
//! `include_bytes!`), served like a root directory: the same path rules, index files,
//! redirects, content types, conditional requests and ranges, with nothing on disk.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::config::ConfigError;
use crate::files::Facts;

/// A set of files by path (`index.html`, `css/site.css`), all modified when the set was
/// made. Cheap to clone: the files are shared.
#[derive(Clone)]
pub struct EmbeddedFiles {
    inner: Arc<Inner>,
}

struct Inner {
    files: BTreeMap<String, File>,
    /// `Last-Modified` of every file: a program's files change only when it is rebuilt,
    /// and a new process is a new build as far as a browser's cache can tell.
    modified: SystemTime,
}

/// One file of the set: its contents, and the fields of its answer, made once.
pub(crate) struct File {
    pub(crate) bytes: Bytes,
    pub(crate) facts: Arc<Facts>,
}

/// What a path names in the set.
pub(crate) enum Entry<'a> {
    /// A directory: a prefix of some file's path, or the root.
    Dir,
    /// A file.
    File(&'a File),
}

impl EmbeddedFiles {
    /// The set of `files`, each a path relative to the site's root and its contents.
    ///
    /// A path that no request could reach is refused: empty segments, `.` or `..`, a
    /// leading `/`, hidden names (a leading `.`; `.well-known` is allowed, as on disk),
    /// and a name that is both a file and a directory.
    pub fn new<N, B>(files: impl IntoIterator<Item = (N, B)>) -> Result<Self, ConfigError>
    where
        N: Into<String>,
        B: Into<Bytes>,
    {
        let modified = SystemTime::now();
        let mut map = BTreeMap::new();
        for (name, contents) in files {
            let name: String = name.into();
            check_name(&name)?;
            let bytes: Bytes = contents.into();
            let facts = Arc::new(Facts::of_embedded(&name, bytes.len() as u64, modified));
            map.insert(name, File { bytes, facts });
        }
        for name in map.keys() {
            let dir = format!("{name}/");
            if map
                .range(dir.clone()..)
                .next()
                .is_some_and(|(k, _)| k.starts_with(&dir))
            {
                return Err(ConfigError::Embedded {
                    name: name.clone(),
                    reason: "is both a file and a directory",
                });
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                files: map,
                modified,
            }),
        })
    }

    /// How many files it holds.
    pub fn len(&self) -> usize {
        self.inner.files.len()
    }

    /// Whether it holds no file.
    pub fn is_empty(&self) -> bool {
        self.inner.files.is_empty()
    }

    /// The files' paths, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.inner.files.keys().map(String::as_str)
    }

    /// When the files were last modified, as `Last-Modified` says.
    pub fn modified(&self) -> SystemTime {
        self.inner.modified
    }

    /// What the decoded, checked `segments` of a request path name.
    pub(crate) fn lookup(&self, segments: &[String]) -> Option<Entry<'_>> {
        if segments.is_empty() {
            return Some(Entry::Dir);
        }
        let key = segments.join("/");
        if let Some(file) = self.inner.files.get(&key) {
            return Some(Entry::File(file));
        }
        let dir = key + "/";
        self.inner
            .files
            .range(dir.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&dir))
            .then_some(Entry::Dir)
    }
}

fn check_name(name: &str) -> Result<(), ConfigError> {
    let refuse = |reason| {
        Err(ConfigError::Embedded {
            name: name.to_owned(),
            reason,
        })
    };
    if name.starts_with('/') {
        return refuse("must be relative to the site's root, without a leading '/'");
    }
    for segment in name.split('/') {
        match segment {
            "" => return refuse("has an empty path segment"),
            "." | ".." => return refuse("has a '.' or '..' segment"),
            s if s.contains(['\0', '\\']) => return refuse("has a NUL or a backslash"),
            s if s.starts_with('.') && s != ".well-known" => {
                return refuse("is hidden (a leading '.'), and hidden files are never served");
            }
            _ => {}
        }
    }
    Ok(())
}

impl PartialEq for EmbeddedFiles {
    fn eq(&self, other: &Self) -> bool {
        let same =
            |(a, x): (&String, &File), (b, y): (&String, &File)| a == b && x.bytes == y.bytes;
        Arc::ptr_eq(&self.inner, &other.inner)
            || (self.inner.files.len() == other.inner.files.len()
                && self
                    .inner
                    .files
                    .iter()
                    .zip(&other.inner.files)
                    .all(|(l, r)| same(l, r)))
    }
}

impl Eq for EmbeddedFiles {}

impl std::fmt::Debug for EmbeddedFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedFiles")
            .field("files", &self.inner.files.keys().collect::<Vec<_>>())
            .finish()
    }
}
