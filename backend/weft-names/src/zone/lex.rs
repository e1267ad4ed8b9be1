//! Zone file text to entries: one entry per logical line, with its line number.
//!
//! Handles what RFC 1035 section 5.1 asks of the common subset: `;` comments, quoted
//! strings, escapes (`\X` is X itself, so `\ `, `\;` or `\"` neither end a word nor
//! start anything; `\DDD` is the octet of decimal value DDD), parentheses that continue
//! an entry over several lines, and a leading blank meaning "the same owner as the
//! previous entry". Escapes are kept in a word's text and resolved where it is read:
//! names by `parse::name` (where `\.` is a dot inside a label), character-strings by
//! [`unescape`].

/// One word of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    /// The text, without quotes, its escapes (`\X`, `\DDD`) as written.
    pub(crate) text: String,
    /// Whether it was written in double quotes (only TXT cares).
    pub(crate) quoted: bool,
}

/// One logical line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// 1-based line where the entry starts.
    pub(crate) line: usize,
    /// It started with a blank: its owner is the previous entry's.
    pub(crate) inherits_owner: bool,
    /// Its words, in order.
    pub(crate) words: Vec<Word>,
}

/// A lexical error: the line and what is wrong.
pub(crate) type LexError = (usize, String);

/// Splits `text` into entries, skipping blank and comment-only lines.
pub(crate) fn entries(text: &str) -> Result<Vec<Entry>, LexError> {
    let mut out = Vec::new();
    let mut line = 1;
    // A byte order mark, as some editors write one, is not part of the first entry.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut chars = text.chars().peekable();
    let mut current: Option<Entry> = None;
    let mut at_line_start = true;
    // The line of the open parenthesis, while inside one.
    let mut paren: Option<usize> = None;
    let mut word: Option<Word> = None;

    while let Some(c) = chars.next() {
        if at_line_start && paren.is_none() {
            at_line_start = false;
            start_entry(&mut out, &mut current, line, c);
        }
        let entry = current.get_or_insert_with(|| Entry {
            line,
            inherits_owner: false,
            words: Vec::new(),
        });
        match c {
            '\n' => {
                flush_word(&mut word, &mut current);
                line += 1;
                at_line_start = true;
            }
            ';' => {
                flush_word(&mut word, &mut current);
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            ' ' | '\t' | '\r' => flush_word(&mut word, &mut current),
            '(' => {
                flush_word(&mut word, &mut current);
                if paren.is_some() {
                    return Err((line, "nested parentheses".into()));
                }
                paren = Some(line);
            }
            ')' => {
                flush_word(&mut word, &mut current);
                if paren.take().is_none() {
                    return Err((line, "`)` without a matching `(`".into()));
                }
            }
            '"' => {
                if word.is_some() {
                    return Err((line, "a quote in the middle of a word".into()));
                }
                let text = quoted(&mut chars, &mut line)?;
                entry.words.push(Word { text, quoted: true });
            }
            c => {
                let text = &mut word
                    .get_or_insert_with(|| Word {
                        text: String::new(),
                        quoted: false,
                    })
                    .text;
                text.push(c);
                // What follows a backslash is part of the word, whatever it is.
                if c == '\\' {
                    match chars.next() {
                        Some('\n') | None => {
                            return Err((line, "a backslash at the end of a line".into()));
                        }
                        Some(escaped) => text.push(escaped),
                    }
                }
            }
        }
    }
    if let Some(open) = paren {
        return Err((open, "`(` is never closed".into()));
    }
    flush_word(&mut word, &mut current);
    if let Some(entry) = current.filter(|e| !e.words.is_empty()) {
        out.push(entry);
    }
    Ok(out)
}

/// Ends the word being read, if any, adding it to its entry.
fn flush_word(word: &mut Option<Word>, current: &mut Option<Entry>) {
    if let Some(w) = word.take() {
        current
            .as_mut()
            .expect("a word belongs to an entry")
            .words
            .push(w);
    }
}

/// At the first character of a line outside parentheses: the previous entry is complete
/// (kept if it has words), and a new one starts, with the previous owner when the line
/// starts with a blank.
fn start_entry(out: &mut Vec<Entry>, current: &mut Option<Entry>, line: usize, first: char) {
    if current.as_ref().is_some_and(|e| !e.words.is_empty()) {
        out.push(current.take().expect("checked"));
    }
    *current = Some(Entry {
        line,
        inherits_owner: first == ' ' || first == '\t',
        words: Vec::new(),
    });
}

/// The rest of a quoted string whose opening quote was just read, its escapes kept (an
/// escaped quote does not end it); counts the lines it spans.
fn quoted(chars: &mut impl Iterator<Item = char>, line: &mut usize) -> Result<String, LexError> {
    let start = *line;
    let mut text = String::new();
    loop {
        match chars.next() {
            None => return Err((start, "unterminated quoted string".into())),
            Some('"') => return Ok(text),
            Some('\\') => match chars.next() {
                Some(c) => {
                    if c == '\n' {
                        *line += 1;
                    }
                    text.push('\\');
                    text.push(c);
                }
                None => return Err((start, "unterminated quoted string".into())),
            },
            Some('\n') => {
                *line += 1;
                text.push('\n');
            }
            Some(c) => text.push(c),
        }
    }
}

/// `text` with its escapes resolved (RFC 1035 section 5.1): `\DDD` is the octet of
/// decimal value DDD (at most 255), `\X` is X; the rest is its UTF-8 bytes.
pub(crate) fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut utf8 = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            continue;
        }
        match chars.next() {
            Some(d) if d.is_ascii_digit() => {
                let digits: String = std::iter::once(d).chain(chars.by_ref().take(2)).collect();
                let octet = (digits.len() == 3 && digits.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| digits.parse::<u8>().ok())
                    .flatten()
                    .ok_or_else(|| {
                        format!(
                            "\\{digits} in {text:?} is not an escaped octet: write three \
                             decimal digits, 000 to 255"
                        )
                    })?;
                out.push(octet);
            }
            Some(x) => {
                let mut utf8 = [0; 4];
                out.extend_from_slice(x.encode_utf8(&mut utf8).as_bytes());
            }
            None => return Err(format!("{text:?} ends with a lone backslash")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(e: &Entry) -> Vec<&str> {
        e.words.iter().map(|w| w.text.as_str()).collect()
    }

    #[test]
    fn comments_parentheses_quotes_and_inherited_owners() {
        let text = "; header\n\
                    @ IN SOA ns admin (\n  1 ; serial\n  2 3 4 5 )\n\
                    \tIN TXT \"a \\\"b\\\"; c\" d\n\n\
                    www A 192.0.2.1";
        let e = entries(text).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(
            (e[0].line, words(&e[0])),
            (
                2,
                vec!["@", "IN", "SOA", "ns", "admin", "1", "2", "3", "4", "5"]
            )
        );
        assert!(e[1].inherits_owner);
        assert_eq!(words(&e[1]), vec!["IN", "TXT", "a \\\"b\\\"; c", "d"]);
        assert!(e[1].words[2].quoted && !e[1].words[3].quoted);
        assert_eq!((e[2].line, e[2].inherits_owner), (7, false));
    }

    #[test]
    fn escapes_keep_blanks_semicolons_and_quotes_in_their_word_and_resolve_as_rfc1035_says() {
        let e = entries("\u{feff}a\\ b\\;c \"x\\\" y\" \\065\\(\n").unwrap();
        assert_eq!(words(&e[0]), vec!["a\\ b\\;c", "x\\\" y", "\\065\\("]);
        assert_eq!(unescape("c\\065d").unwrap(), b"cAd");
        assert_eq!(unescape("v=DKIM1\\059 k").unwrap(), b"v=DKIM1; k");
        assert_eq!(unescape("a\\ b\\\\\\\"").unwrap(), b"a b\\\"");
        assert_eq!(unescape("\\000\\255").unwrap(), [0, 255]);
        assert!(unescape("\\256").is_err());
        assert!(unescape("\\06").is_err());
        assert!(unescape("end\\").is_err());
    }

    #[test]
    fn unbalanced_parentheses_and_quotes_name_their_line() {
        assert_eq!(entries("a\nb ( c\n").unwrap_err().0, 2);
        assert_eq!(entries("a )\n").unwrap_err().0, 1);
        assert_eq!(entries("\n\nx TXT \"open\n").unwrap_err().0, 3);
    }
}
