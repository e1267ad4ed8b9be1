//! `$GENERATE start-stop[/step] lhs [ttl] [class] type rhs` (BIND's extension): one
//! record per number of the range, `$` in the owner and the RDATA replaced by it, or
//! `${offset[,width[,base]]}` by it plus an offset, zero-padded to a width, in decimal,
//! octal or hex (`d`, `o`, `x`, `X`); `\$` is a literal `$`.

use super::lex::{Entry, Word};

/// How many records one `$GENERATE` makes at most (BIND's bound too).
pub(crate) const MAX_GENERATED: u64 = 65_536;
/// How many records the `$GENERATE` lines of one zone make at most, together.
pub(crate) const MAX_GENERATED_PER_ZONE: usize = 4 * MAX_GENERATED as usize;

/// The entries `$GENERATE` with `args` on `line` stands for, in order.
pub(crate) fn entries(line: usize, args: &[Word]) -> Result<Vec<Entry>, String> {
    let usage = "$GENERATE takes a range (1-100 or 1-100/2), an owner, an optional TTL and \
                 class, a type and its data";
    let (range, rest) = args.split_first().ok_or(usage)?;
    if rest.len() < 3 {
        return Err(usage.into());
    }
    let (bounds, step) = match range.text.split_once('/') {
        Some((bounds, step)) => (bounds, step),
        None => (range.text.as_str(), "1"),
    };
    let number = |t: &str| {
        t.parse::<u64>()
            .map_err(|_| format!("$GENERATE range {:?}: {t:?} is not a number", range.text))
    };
    let (start, stop) = bounds
        .split_once('-')
        .ok_or_else(|| format!("$GENERATE range {:?} is not start-stop", range.text))?;
    let (start, stop, step) = (number(start)?, number(stop)?, number(step)?);
    if start > stop || step == 0 {
        return Err(format!(
            "$GENERATE range {:?} must go up, by at least 1",
            range.text
        ));
    }
    if (stop - start) / step >= MAX_GENERATED {
        return Err(format!(
            "$GENERATE range {:?} makes more than {MAX_GENERATED} records",
            range.text
        ));
    }
    let mut out = Vec::new();
    let mut i = start;
    while i <= stop {
        let words = rest
            .iter()
            .map(|w| {
                Ok(Word {
                    text: substitute(&w.text, i)?,
                    quoted: w.quoted,
                })
            })
            .collect::<Result<_, String>>()?;
        out.push(Entry {
            line,
            inherits_owner: false,
            words,
        });
        // A range ending at the top of u64 ends here rather than wrapping round.
        let Some(next) = i.checked_add(step) else {
            break;
        };
        i = next;
    }
    Ok(out)
}

/// `text` with each `$` or `${offset,width,base}` replaced for number `i`.
fn substitute(text: &str, i: u64) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'$') => {
                chars.next();
                out.push('$');
            }
            '$' if chars.peek() == Some(&'{') => {
                chars.next();
                let spec: String = chars.by_ref().take_while(|&c| c != '}').collect();
                out.push_str(&modified(&spec, i)?);
            }
            '$' => out.push_str(&i.to_string()),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// The number `i` as `${offset,width,base}` asks.
fn modified(spec: &str, i: u64) -> Result<String, String> {
    let bad = || format!("$GENERATE modifier ${{{spec}}} is not ${{offset,width,base}}");
    let mut parts = spec.split(',');
    let offset: i64 = parts.next().unwrap_or("0").parse().map_err(|_| bad())?;
    let width: usize = parts.next().unwrap_or("0").parse().map_err(|_| bad())?;
    let base = parts.next().unwrap_or("d");
    if parts.next().is_some() || width > 255 {
        return Err(bad());
    }
    let value = i64::try_from(i)
        .ok()
        .and_then(|i| i.checked_add(offset))
        .ok_or_else(bad)?;
    if value < 0 {
        return Err(format!("$GENERATE modifier ${{{spec}}} makes {i} negative"));
    }
    Ok(match base {
        "d" => format!("{value:0width$}"),
        "o" => format!("{value:0width$o}"),
        "x" => format!("{value:0width$x}"),
        "X" => format!("{value:0width$X}"),
        _ => return Err(bad()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_become_the_number_with_offset_width_and_base() {
        assert_eq!(substitute("host-$", 7).unwrap(), "host-7");
        assert_eq!(substitute("h${10,3,d}", 7).unwrap(), "h017");
        assert_eq!(substitute("${0,2,x}.${-1}", 26).unwrap(), "1a.25");
        assert_eq!(substitute("a\\$b", 1).unwrap(), "a$b");
        assert!(substitute("${x}", 1).is_err());
        assert!(substitute("${-5}", 1).is_err());
    }

    #[test]
    fn a_range_at_the_top_of_u64_ends_there_and_an_offset_past_it_is_an_error() {
        let word = |t: &str| Word {
            text: t.into(),
            quoted: false,
        };
        let top = u64::MAX;
        let args = [
            word(&format!("{}-{top}", top - 1)),
            word("h$"),
            word("A"),
            word("192.0.2.1"),
        ];
        let made = entries(1, &args).expect("two records");
        assert_eq!(made.len(), 2);
        assert!(substitute("${1}", u64::try_from(i64::MAX).unwrap()).is_err());
    }
}
