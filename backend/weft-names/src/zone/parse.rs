//! Entries to records: `$ORIGIN`, `$TTL`, `$INCLUDE`, `$GENERATE`, owners, TTLs and
//! classes; the RDATA of each type is read in `rdata`.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use hickory_proto::rr::{DNSClass, Name, RData, Record};

use super::generate;
use super::lex::{self, Entry, Word};
use super::rdata::rdata;
use crate::error::ZoneError;

/// How deep `$INCLUDE`s nest at most: deeper is a mistake, such as a file that includes
/// itself through others.
pub(crate) const MAX_INCLUDE_DEPTH: usize = 8;

/// The most a zone's files (the zone file and every file it includes, together) are read:
/// 256 MiB, a few million records, far more than memory holds for a service answering
/// from them.
pub(crate) const MAX_FILE_BYTES: u64 = 256 << 20;

/// The text of the zone file (or included file) at `path`: a regular file, read no
/// further than [`MAX_FILE_BYTES`] (the callers bound a zone's files together). A device such as `/dev/zero` would be read until memory ran out,
/// and a named pipe would hold the load (and a reload, and shutdown) until something
/// wrote to it.
pub(crate) fn read_text(path: &Path) -> Result<String, String> {
    weft::files::read_regular_text(path, MAX_FILE_BYTES).map_err(|e| e.to_string())
}

/// A record and where it was written.
#[derive(Debug)]
pub(crate) struct Located {
    /// The file: the zone file, or one it includes.
    pub(crate) file: Rc<Path>,
    /// 1-based line of its entry.
    pub(crate) line: usize,
    /// The record.
    pub(crate) record: Record,
}

/// Records of the zone file `file` whose text is `text`, and of the files it includes,
/// in file order; and the files it includes, resolved, in the order first read.
pub(crate) fn records(file: &Path, text: &str) -> Result<(Vec<Located>, Vec<PathBuf>), ZoneError> {
    let mut out = Vec::new();
    let top = file.canonicalize().unwrap_or_else(|_| file.to_owned());
    // Absolute, so that a zone file named without a directory (`example.zone`) confines
    // its includes to the working directory rather than to nothing.
    let dir = std::path::absolute(file)
        .ok()
        .and_then(|f| f.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let dir = dir.canonicalize().unwrap_or(dir);
    let mut reader = Reader {
        out: &mut out,
        open: vec![top],
        dir,
        generated: 0,
        bytes: text.len() as u64,
        included: Vec::new(),
    };
    reader.read(Rc::from(file), text, State::default())?;
    let included = reader.included;
    Ok((out, included))
}

/// Reads a file and the files it includes.
struct Reader<'a> {
    out: &'a mut Vec<Located>,
    /// The files being read, outermost first, to refuse an include loop.
    open: Vec<PathBuf>,
    /// The zone file's directory: every file it includes is inside it.
    dir: PathBuf,
    /// Records `$GENERATE` made so far, over every file of the zone.
    generated: usize,
    /// Bytes read so far, over every file of the zone.
    bytes: u64,
    /// The files included, resolved, each once (with records or not).
    included: Vec<PathBuf>,
}

impl Reader<'_> {
    fn read(&mut self, file: Rc<Path>, text: &str, mut state: State) -> Result<(), ZoneError> {
        let err = |line: usize, message: String| ZoneError {
            file: file.to_path_buf(),
            line,
            message,
        };
        let entries = lex::entries(text).map_err(|(l, m)| err(l, m))?;
        for entry in &entries {
            if entry
                .words
                .first()
                .is_some_and(|w| w.text.eq_ignore_ascii_case("$GENERATE"))
            {
                let generated = generate::entries(entry.line, &entry.words[1..])
                    .map_err(|m| err(entry.line, m))?;
                // Each line is bounded; so are all of a zone's together, since a line
                // of a few bytes makes tens of thousands of records in memory.
                self.generated += generated.len();
                if self.generated > generate::MAX_GENERATED_PER_ZONE {
                    return Err(err(
                        entry.line,
                        format!(
                            "$GENERATE lines make more than {} records in this zone",
                            generate::MAX_GENERATED_PER_ZONE
                        ),
                    ));
                }
                for made in &generated {
                    let record = state.record(made).map_err(|m| err(entry.line, m))?;
                    self.out.push(Located {
                        file: file.clone(),
                        line: entry.line,
                        record,
                    });
                }
                continue;
            }
            let included = state
                .directive(&entry.words)
                .map_err(|m| err(entry.line, m))?;
            match included {
                Directive::None => {}
                Directive::Applied => continue,
                Directive::Include { path, origin } => {
                    self.include(&file, entry.line, &path, origin, &state)?;
                    continue;
                }
            }
            let record = state.record(entry).map_err(|m| err(entry.line, m))?;
            self.out.push(Located {
                file: file.clone(),
                line: entry.line,
                record,
            });
        }
        Ok(())
    }

    /// `$INCLUDE path [origin]` on `line` of `from`: the path is relative to the
    /// directory of `from`; the included file starts with `origin` (else the origin in
    /// force) and the current `$TTL`, and what it sets stays in it (RFC 1035 section 5.1).
    fn include(
        &mut self,
        from: &Path,
        line: usize,
        path: &str,
        origin: Option<Name>,
        state: &State,
    ) -> Result<(), ZoneError> {
        let err = |message: String| ZoneError {
            file: from.to_owned(),
            line,
            message,
        };
        let target = from.parent().unwrap_or(Path::new("")).join(path);
        if self.open.len() > MAX_INCLUDE_DEPTH {
            return Err(err(format!(
                "$INCLUDE {path}: includes nest deeper than {MAX_INCLUDE_DEPTH} files"
            )));
        }
        let canonical = target
            .canonicalize()
            .or_else(|_| std::path::absolute(&target))
            .unwrap_or_else(|_| target.clone());
        // Only the zone's own files: an error quotes what it could not read, and the
        // reload's errors reach the log and the dashboard, so a file the gateway may read
        // and the zone's editor may not (`/etc/shadow`) must not be included.
        if !canonical.starts_with(&self.dir) || self.dir.as_os_str().is_empty() {
            return Err(err(format!(
                "$INCLUDE {path}: {} is outside {}, the zone file's directory, where \
                 included files must be",
                target.display(),
                self.dir.display()
            )));
        }
        if self.open.contains(&canonical) {
            return Err(err(format!(
                "$INCLUDE {path}: {} is already being read (an include loop)",
                target.display()
            )));
        }
        if !self.included.contains(&canonical) {
            self.included.push(canonical.clone());
        }
        // The path checked is the path read, resolved, not the one written.
        let text = read_text(&canonical).map_err(|e| {
            err(format!(
                "$INCLUDE {path}: cannot read {}: {e}",
                target.display()
            ))
        })?;
        // The same file included on many lines is no loop, but is read each time.
        self.bytes += text.len() as u64;
        if self.bytes > MAX_FILE_BYTES {
            return Err(err(format!(
                "$INCLUDE {path}: the zone's files come to more than {} MiB",
                MAX_FILE_BYTES >> 20
            )));
        }
        let inner = State {
            origin: origin.or_else(|| state.origin.clone()),
            default_ttl: state.default_ttl,
            last_ttl: state.last_ttl,
            owner: None,
        };
        self.open.push(canonical);
        let result = self.read(Rc::from(target.as_path()), &text, inner);
        self.open.pop();
        result
    }
}

/// What a `$` directive asks.
enum Directive {
    /// Not a directive: a record.
    None,
    /// `$ORIGIN` or `$TTL`, applied.
    Applied,
    /// `$INCLUDE`: read that file here.
    Include { path: String, origin: Option<Name> },
}

/// What earlier entries set for the ones after them.
#[derive(Default)]
struct State {
    /// What relative names and `@` stand for: the zone's name, or the last `$ORIGIN`.
    origin: Option<Name>,
    /// The last `$TTL`, for records without a TTL of their own.
    default_ttl: Option<u32>,
    /// The TTL of the previous record: without a `$TTL`, the next record without one
    /// takes it (RFC 1035 section 5.1).
    last_ttl: Option<u32>,
    /// The previous record's owner, for an entry that starts with a blank.
    owner: Option<Name>,
}

impl State {
    /// Applies a `$` directive, or says the entry is a record.
    fn directive(&mut self, words: &[Word]) -> Result<Directive, String> {
        let Some((first, args)) = words.split_first() else {
            return Ok(Directive::None);
        };
        let mut args = args.iter();
        match first.text.to_ascii_uppercase().as_str() {
            "$ORIGIN" => {
                let name = one_arg(&mut args, "$ORIGIN", "a domain name")?;
                if self.origin.is_none() && matches!(labels(name), Ok((_, false))) {
                    return Err(format!(
                        "$ORIGIN {name} must be absolute: end it with a dot"
                    ));
                }
                let name =
                    self::name(name, self.origin.as_ref()).map_err(|e| format!("$ORIGIN: {e}"))?;
                self.origin = Some(name);
            }
            "$TTL" => {
                let ttl = one_arg(&mut args, "$TTL", "a TTL")?;
                self.default_ttl = Some(parse_ttl(ttl)?);
            }
            "$INCLUDE" => {
                let (Some(path), origin, None) = (args.next(), args.next(), args.next()) else {
                    return Err("$INCLUDE takes a file name and an optional origin".into());
                };
                let origin = origin
                    .map(|o| name(&o.text, self.origin.as_ref()))
                    .transpose()?;
                return Ok(Directive::Include {
                    path: path.text.clone(),
                    origin,
                });
            }
            d if d.starts_with('$') => {
                return Err(format!("unknown directive {:?}", first.text));
            }
            _ => return Ok(Directive::None),
        }
        Ok(Directive::Applied)
    }

    /// The record of one entry: its owner (or the previous one's), TTL and class in
    /// either order, the type, and the type's fields.
    fn record(&mut self, entry: &Entry) -> Result<Record, String> {
        let mut words = entry.words.iter();
        if !entry.inherits_owner {
            let word = words.next().expect("an entry has a word");
            self.owner = Some(name(&word.text, self.origin.as_ref())?);
        }
        let Some(owner) = self.owner.clone() else {
            return Err("the first record has no owner name".into());
        };
        let (ttl, rtype) = ttl_and_type(&mut words)?;
        let rest: Vec<&Word> = words.collect();
        let rdata = rdata(&rtype, &rest, self.origin.as_ref())?;
        let ttl = self.ttl(ttl, &rdata)?;
        let mut record = Record::from_rdata(owner, ttl, rdata);
        record.dns_class = DNSClass::IN;
        Ok(record)
    }

    /// The record's TTL: its own, else `$TTL`, else the previous record's, else (for the
    /// SOA only) its minimum.
    fn ttl(&mut self, own: Option<u32>, rdata: &RData) -> Result<u32, String> {
        let ttl = match (own, self.default_ttl, self.last_ttl, rdata) {
            (Some(t), ..) | (None, Some(t), ..) | (None, None, Some(t), _) => t,
            (None, None, None, RData::SOA(soa)) => soa.minimum,
            _ => {
                return Err("no TTL: give one on the record or put `$TTL 3600` at the top".into());
            }
        };
        self.last_ttl = Some(ttl);
        Ok(ttl)
    }
}

/// The optional TTL and class before the record type, and the type, upper-cased.
fn ttl_and_type<'a>(
    words: &mut impl Iterator<Item = &'a Word>,
) -> Result<(Option<u32>, String), String> {
    let mut ttl = None;
    loop {
        let Some(word) = words.next() else {
            return Err("missing the record type".into());
        };
        let upper = word.text.to_ascii_uppercase();
        if ttl.is_none() && upper.starts_with(|c: char| c.is_ascii_digit()) {
            ttl = Some(parse_ttl(&word.text)?);
        } else if upper == "IN" {
            continue;
        } else if matches!(upper.as_str(), "CH" | "HS" | "CS" | "NONE" | "ANY") {
            return Err(format!("class {upper} is not supported; only IN"));
        } else {
            return Ok((ttl, upper));
        }
    }
}

fn one_arg<'a>(
    words: &mut impl Iterator<Item = &'a Word>,
    directive: &str,
    what: &str,
) -> Result<&'a str, String> {
    match (words.next(), words.next()) {
        (Some(w), None) => Ok(&w.text),
        (None, _) => Err(format!("{directive} needs {what}")),
        (Some(_), Some(extra)) => Err(format!(
            "{directive} takes one argument; unexpected {:?}",
            extra.text
        )),
    }
}

/// A domain name: `@` is the origin, a name without a final dot is relative to it.
pub(super) fn name(text: &str, origin: Option<&Name>) -> Result<Name, String> {
    if text == "@" {
        return origin
            .cloned()
            .ok_or_else(|| "`@` needs an $ORIGIN first".to_owned());
    }
    let bad = |e: String| format!("{text:?} is not a domain name: {e}");
    let (labels, absolute) = labels(text).map_err(bad)?;
    let origin = match (absolute, origin) {
        (true, _) => None,
        (false, Some(origin)) => Some(origin),
        (false, None) => {
            return Err(format!(
                "{text:?} is relative and there is no $ORIGIN; add `$ORIGIN example.test.` at the top"
            ));
        }
    };
    let all = labels
        .iter()
        .map(Vec::as_slice)
        .chain(origin.into_iter().flat_map(Name::iter));
    Name::from_labels(all).map_err(|e| bad(e.to_string()))
}

/// The labels of a name as written in a zone file, each as its octets (RFC 1035 section
/// 5.1: a dot separates labels unless escaped, `\X` is X and `\DDD` the octet DDD, and
/// any other octet stands for itself, as NSD and BIND read it), and whether it ends
/// with a dot (absolute). `.` alone is the root.
fn labels(text: &str) -> Result<(Vec<Vec<u8>>, bool), String> {
    if text == "." {
        return Ok((Vec::new(), true));
    }
    let mut labels = Vec::new();
    let mut label = String::new();
    let mut chars = text.chars();
    let mut absolute = false;
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                if label.is_empty() {
                    return Err("an empty label (two dots, or a dot first)".into());
                }
                labels.push(super::lex::unescape(&label)?);
                label.clear();
                absolute = true;
            }
            '\\' => {
                label.push(c);
                label.extend(chars.next());
                absolute = false;
            }
            c => {
                label.push(c);
                absolute = false;
            }
        }
    }
    if !label.is_empty() {
        labels.push(super::lex::unescape(&label)?);
    }
    if let Some(long) = labels.iter().find(|l| l.len() > 63) {
        return Err(format!(
            "a label is at most 63 octets; one has {}",
            long.len()
        ));
    }
    Ok((labels, absolute))
}

/// A TTL in seconds, or with units (`1h30m`, `2d`, `1w`).
pub(crate) fn parse_ttl(text: &str) -> Result<u32, String> {
    let bad = || format!("{text:?} is not a TTL (seconds, or units like 1h30m)");
    if text.is_empty() {
        return Err(bad());
    }
    let (mut total, mut number) = (0u64, None::<u64>);
    for c in text.chars() {
        if let Some(d) = c.to_digit(10) {
            number = Some(
                number
                    .unwrap_or(0)
                    .saturating_mul(10)
                    .saturating_add(d.into()),
            );
            continue;
        }
        let unit = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(bad()),
        };
        total = total.saturating_add(number.take().ok_or_else(bad)?.saturating_mul(unit));
    }
    total = total.saturating_add(number.unwrap_or(0));
    u32::try_from(total)
        .ok()
        .filter(|t| *t <= i32::MAX as u32)
        .ok_or_else(|| format!("{text:?} is longer than the largest TTL (2^31 - 1 seconds)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_take_seconds_and_units() {
        assert_eq!(parse_ttl("3600"), Ok(3600));
        assert_eq!(parse_ttl("1h30m"), Ok(5400));
        assert_eq!(parse_ttl("1W"), Ok(604_800));
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("12x").is_err());
        assert!(parse_ttl("99999999999").is_err());
    }
}
