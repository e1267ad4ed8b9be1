//! Zone file text to entries: one entry per logical line, with its line number.
//!
//! Handles what RFC 1035 section 5.1 asks of the common subset: `;` comments, quoted
//! strings (with `\"` and `\\`), parentheses that continue an entry over several lines,
//! and a leading blank meaning "the same owner as the previous entry".

/// One word of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    /// The text, without quotes and with escapes of quoted strings resolved.
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
            c => word
                .get_or_insert_with(|| Word {
                    text: String::new(),
                    quoted: false,
                })
                .text
                .push(c),
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

/// The rest of a quoted string whose opening quote was just read, with `\"` and `\\`
/// resolved; counts the lines it spans.
fn quoted(chars: &mut impl Iterator<Item = char>, line: &mut usize) -> Result<String, LexError> {
    let start = *line;
    let mut text = String::new();
    loop {
        match chars.next() {
            None => return Err((start, "unterminated quoted string".into())),
            Some('"') => return Ok(text),
            Some('\\') => match chars.next() {
                Some(c) => text.push(c),
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
        assert_eq!(words(&e[1]), vec!["IN", "TXT", "a \"b\"; c", "d"]);
        assert!(e[1].words[2].quoted && !e[1].words[3].quoted);
        assert_eq!((e[2].line, e[2].inherits_owner), (7, false));
    }

    #[test]
    fn unbalanced_parentheses_and_quotes_name_their_line() {
        assert_eq!(entries("a\nb ( c\n").unwrap_err().0, 2);
        assert_eq!(entries("a )\n").unwrap_err().0, 1);
        assert_eq!(entries("\n\nx TXT \"open\n").unwrap_err().0, 3);
    }
}
