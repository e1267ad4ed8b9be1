//! [`ConfigError`]: what is wrong, in which file, on which line, under which key.

use std::fmt;
use std::ops::Range;

/// A configuration the gateway cannot run, located in its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file (or `built-in demo configuration`).
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// The key at fault, such as `service[2].upstream`, when known.
    pub key: Option<String>,
    /// What is wrong and, where it helps, what to do.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Turns byte spans of one source text into located errors.
pub(crate) struct Locator<'a> {
    pub(crate) file: &'a str,
    pub(crate) text: &'a str,
}

impl Locator<'_> {
    /// An error at `span` (or nowhere in particular) about `key`.
    pub(crate) fn error(
        &self,
        span: Option<Range<usize>>,
        key: Option<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = match span {
            Some(span) => {
                let (l, c) = self.line_col(span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            key,
            message: message.into(),
        }
    }

    /// The string, or each string of the list, `value` of `key` holds, with its place: an
    /// error about one item names that item's line. `one` says what an item is ("a
    /// string"), `many` what a list of them is.
    pub(crate) fn strings(
        &self,
        key: &str,
        value: &toml::Spanned<toml::Value>,
        (one, many): (&str, &str),
    ) -> Result<Vec<(String, Range<usize>)>, ConfigError> {
        match value.get_ref() {
            toml::Value::String(s) => Ok(vec![(s.clone(), value.span())]),
            toml::Value::Array(items) => {
                let places = super::keypath::items(self.text, &value.span());
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let span = places.get(i).cloned().unwrap_or_else(|| value.span());
                        match v.as_str() {
                            Some(s) => Ok((s.to_owned(), span)),
                            None => Err(self.error(
                                Some(span),
                                Some(format!("{key}[{i}]")),
                                format!("must be {one}, in quotes"),
                            )),
                        }
                    })
                    .collect()
            }
            _ => Err(self.error(
                Some(value.span()),
                Some(key.to_owned()),
                format!("must be {one} or {many}"),
            )),
        }
    }

    /// 1-based line and column of byte `offset`.
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before
            .rfind('\n')
            .map_or(before.len(), |nl| before.len() - nl - 1)
            + 1;
        (line, column)
    }
}
