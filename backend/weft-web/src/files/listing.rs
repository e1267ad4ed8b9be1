//! Directory listings, when a service turns them on: an HTML page of the names in a
//! directory, every name escaped for HTML and percent-encoded in its link, hidden names
//! left out (they are not served either), at most [`MAX_ENTRIES`] names.

use std::fmt::Write;
use std::path::Path;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Names listed at most; a larger directory says how many it left out.
pub(super) const MAX_ENTRIES: usize = 5000;

/// What a link keeps as it is: the unreserved characters and sub-delims that cannot
/// change how the link is read.
const LINK: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'(')
    .remove(b')')
    .remove(b'!')
    .remove(b'*');

/// Whether `target`, a canonical path, is one the service serves: under `root`, with no
/// hidden name on the way.
fn served(target: &Path, root: &Path) -> bool {
    target.strip_prefix(root).is_ok_and(|inside| {
        inside
            .components()
            .all(|c| !c.as_os_str().as_encoded_bytes().starts_with(b"."))
    })
}

/// The listing page of `dir`, which the request path `path` names, under `root`: a
/// symlink is listed only when it leads to something under the root (nothing else is
/// served, and its name should not say what lies outside).
pub(super) fn page(dir: &Path, path: &str, root: &Path) -> std::io::Result<String> {
    // The first names in order, whatever order the directory gives them in: the largest
    // kept goes once there are more.
    let mut kept = std::collections::BinaryHeap::new();
    let mut left_out = 0usize;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        // A name that is not UTF-8 could not be linked faithfully; it is left out.
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        // A symlink is listed when what it leads to is served: under the root, and not
        // hidden there (`env` leading to `.env` answers 404).
        // Only what a request is answered with: a file or a directory, not a FIFO, a
        // socket or a device (those answer 404).
        let (is_dir, is_file) = if kind.is_symlink() {
            match entry.path().canonicalize() {
                Ok(target) if served(&target, root) => (target.is_dir(), target.is_file()),
                _ => continue,
            }
        } else {
            (kind.is_dir(), kind.is_file())
        };
        if !is_dir && !is_file {
            continue;
        }
        kept.push((name, is_dir));
        if kept.len() > MAX_ENTRIES {
            kept.pop();
            left_out += 1;
        }
    }
    let names = kept.into_sorted_vec();
    let title = escape(path);
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n<body><h1>Index of {title}</h1>\n<ul>\n"
    );
    if path != "/" {
        html.push_str("<li><a href=\"../\">../</a></li>\n");
    }
    for (name, is_dir) in &names {
        let slash = if *is_dir { "/" } else { "" };
        let _ = writeln!(
            html,
            "<li><a href=\"{}{slash}\">{}{slash}</a></li>",
            utf8_percent_encode(name, LINK),
            escape(name)
        );
    }
    html.push_str("</ul>\n");
    if left_out > 0 {
        let _ = writeln!(html, "<p>{left_out} more not listed.</p>");
    }
    html.push_str("</body></html>\n");
    Ok(html)
}

/// `text` with the characters HTML gives a meaning replaced by references.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{escape, page};

    #[test]
    fn html_characters_are_escaped() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }

    #[test]
    fn symlinks_are_listed_only_when_they_lead_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        let link = |target: &std::path::Path, name: &str| {
            std::os::unix::fs::symlink(target, root.join(name)).unwrap();
        };
        link(&root.join("a.txt"), "to-a");
        link(&root.join("sub"), "to-sub");
        link(&outside, "to-outside");
        link(&root.join("missing"), "to-nothing");
        // A FIFO answers 404: not listed, nor a link to one.
        let fifo = root.join("pipe");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        link(&fifo, "to-pipe");
        let root = root.canonicalize().unwrap();
        let html = page(&root, "/", &root).unwrap();
        for listed in ["a.txt\"", "sub/\"", "to-a\"", "to-sub/\""] {
            assert!(html.contains(listed), "{listed} in {html}");
        }
        for hidden in ["to-outside", "to-nothing", "pipe", "to-pipe"] {
            assert!(!html.contains(hidden), "{hidden} in {html}");
        }
    }
}
