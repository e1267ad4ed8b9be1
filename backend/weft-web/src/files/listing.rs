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

/// The listing page of `dir`, which the request path `path` names.
pub(super) fn page(dir: &Path, path: &str) -> std::io::Result<String> {
    let mut names = Vec::new();
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
        if names.len() == MAX_ENTRIES {
            left_out += 1;
            continue;
        }
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        names.push((name, is_dir));
    }
    names.sort_unstable();
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
    use super::escape;

    #[test]
    fn html_characters_are_escaped() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
