//! The key path at a place in the file (`service[1].limits.request_timeout`), for errors
//! that come with a byte span but no key: TOML syntax and type errors, unknown fields,
//! missing fields and duplicate keys.
//!
//! The document is parsed again, recovering from errors, into its spanned tree; the path
//! is that of the smallest key or value whose span holds the error. A key the tree lacks
//! (the second of two duplicates) is named after the table around it.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One step of a key path.
#[derive(Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// What holds the error.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Held {
    /// A key as written, or a value that is not a table.
    Entry,
    /// A `[table]` or `[[table]]` header.
    Header,
    /// An inline `{ ... }` table.
    Inline,
}

struct Search<'a> {
    text: &'a str,
    offset: usize,
    /// The smallest span found holding `offset`: its path, length and kind.
    best: Option<(Vec<Step>, usize, Held)>,
    /// The headers starting at or before `offset`, the last one last.
    header: Option<(usize, Vec<Step>)>,
}

/// The key path of what `text` has at `span`, if the span lies in a key, a value or a
/// table of the document.
pub(crate) fn at(text: &str, span: &Range<usize>) -> Option<String> {
    let (root, _errors) = DeTable::parse_recoverable(text);
    let mut search = Search {
        text,
        offset: span.start,
        best: None,
        header: None,
    };
    search.table(root.get_ref(), &mut Vec::new());
    let path = match search.best {
        Some((path, _, Held::Entry | Held::Header)) => path,
        // Inside a table but on nothing the tree holds: a duplicate key, named after the
        // table it was written in.
        Some((mut path, _, Held::Inline)) => {
            path.extend(key_text(text, span));
            path
        }
        None => {
            let mut path = search.header.map(|(_, path)| path).unwrap_or_default();
            path.extend(key_text(text, span));
            path
        }
    };
    (!path.is_empty()).then(|| render(&path))
}

impl Search<'_> {
    fn table(&mut self, table: &DeTable<'_>, path: &mut Vec<Step>) {
        for (key, value) in table.iter() {
            path.push(Step::Key(key.get_ref().to_string()));
            self.consider(key.span(), path, Held::Entry);
            self.value(value, path);
            path.pop();
        }
    }

    fn value(&mut self, value: &Spanned<DeValue<'_>>, path: &mut Vec<Step>) {
        let span = value.span();
        match value.get_ref() {
            DeValue::Table(table) => {
                let is_header = self
                    .text
                    .get(span.clone())
                    .is_some_and(|t| t.starts_with('['));
                if is_header && span.start <= self.offset {
                    match &self.header {
                        Some((start, _)) if *start > span.start => {}
                        _ => self.header = Some((span.start, path.clone())),
                    }
                }
                let held = if is_header {
                    Held::Header
                } else {
                    Held::Inline
                };
                self.consider(span, path, held);
                self.table(table, path);
            }
            DeValue::Array(items) => {
                self.consider(span, path, Held::Entry);
                for (i, item) in items.iter().enumerate() {
                    path.push(Step::Index(i));
                    self.value(item, path);
                    path.pop();
                }
            }
            _ => self.consider(span, path, Held::Entry),
        }
    }

    /// Keeps `path` if `span` holds the offset more tightly than what was found so far.
    /// On a tie the later, deeper one wins, except that a dotted key's implicit table
    /// (spanning the key) never displaces the key itself.
    fn consider(&mut self, span: Range<usize>, path: &[Step], held: Held) {
        let holds = span.start <= self.offset && self.offset < span.end.max(span.start + 1);
        let len = span.end - span.start;
        let tighter = match &self.best {
            None => true,
            Some((_, best, _)) => len < *best || (len == *best && held != Held::Inline),
        };
        if holds && tighter {
            self.best = Some((path.to_vec(), len, held));
        }
    }
}

/// The places of the items of the array written at `span` of `text`, in order: an error
/// about one names its own line, not the list's first. Empty if no array is there.
pub(crate) fn items(text: &str, span: &Range<usize>) -> Vec<Range<usize>> {
    let Some(written) = text.get(span.clone()) else {
        return Vec::new();
    };
    match DeValue::parse(written).as_ref().map(Spanned::get_ref) {
        Ok(DeValue::Array(items)) => items
            .iter()
            .map(|item| {
                let at = item.span();
                at.start + span.start..at.end + span.start
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The key written at `span`, if what is there reads as one.
fn key_text(text: &str, span: &Range<usize>) -> Option<Step> {
    let written = text.get(span.clone())?.trim();
    let key = written
        .strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .or_else(|| {
            written
                .strip_prefix('\'')
                .and_then(|k| k.strip_suffix('\''))
        })
        .unwrap_or(written);
    let bare = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    (bare(written) || key.len() + 2 == written.len()).then(|| Step::Key(key.to_owned()))
}

/// `service[1].limits.request_timeout`; keys that are not bare are quoted.
fn render(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Index(i) => out.push_str(&format!("[{i}]")),
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                if !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    out.push_str(k);
                } else {
                    out.push_str(&format!("{k:?}"));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::at;

    /// The key path at the first occurrence of `needle` in `text`.
    fn path(text: &str, needle: &str) -> Option<String> {
        let start = text.find(needle).expect("needle in text");
        at(text, &(start..start + needle.len()))
    }

    #[test]
    fn keys_values_and_array_elements_are_named() {
        let text = "[store]\nretention = 24\n\n[[service]]\nname = \"a\"\n[[service]]\nname = \"b\"\n\
                    limits = { request_timeout = 5 }\nlisten = [\"tcp:1\", 2]\n\
                    [[service.route]]\nprefix = 7\n";
        assert_eq!(path(text, "24").as_deref(), Some("store.retention"));
        assert_eq!(path(text, "retention").as_deref(), Some("store.retention"));
        assert_eq!(path(text, "\"b\"").as_deref(), Some("service[1].name"));
        assert_eq!(
            path(text, "5 }").as_deref(),
            Some("service[1].limits.request_timeout")
        );
        assert_eq!(path(text, "2]").as_deref(), Some("service[1].listen[1]"));
        assert_eq!(
            path(text, "7").as_deref(),
            Some("service[1].route[0].prefix")
        );
        assert_eq!(
            path(text, "[[service]]\nname = \"b\"").as_deref(),
            Some("service[1]"),
            "a table's own span (a missing field) names the table"
        );
    }

    #[test]
    fn a_duplicate_key_is_named_after_its_table() {
        let text = "[inspect]\nsample = 0.5\nsample = 0.2\n";
        let second = text.rfind("sample").unwrap();
        assert_eq!(
            at(text, &(second..second + 6)).as_deref(),
            Some("inspect.sample")
        );
        let text = "[[service]]\nlimits = { a = 1, a = 2 }\n";
        let second = text.rfind("a =").unwrap();
        assert_eq!(
            at(text, &(second..second + 1)).as_deref(),
            Some("service[0].limits.a")
        );
        let text = "top = 1\ntop = 2\n";
        let second = text.rfind("top").unwrap();
        assert_eq!(at(text, &(second..second + 3)).as_deref(), Some("top"));
    }

    #[test]
    fn odd_keys_are_quoted() {
        let text = "[\"my table\"]\n\"a.b\" = true\n";
        assert_eq!(path(text, "true").as_deref(), Some("\"my table\".\"a.b\""));
    }
}
