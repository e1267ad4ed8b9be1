//! A secondary zone's journal: the changes IXFR brought since its copy was last written
//! whole, kept beside the copy (`FILE.journal`) so a change of a few records costs a few
//! lines written rather than the whole zone.
//!
//! The journal is text: a first line naming the zone and the serial of the copy it
//! follows, then one entry for each transfer, the records of each of its steps written
//! as the copy's are ([`zone_text`]) under comment lines that say what they are:
//!
//! ```text
//! ; journal of zone example.org. after serial 7 of its copy
//! ;; ixfr 7 9
//! ;; deleted 7 8
//! www.example.org. 300 IN A 192.0.2.1
//! ;; added 7 8
//! www.example.org. 300 IN A 192.0.2.2
//! ;; deleted 8 9
//! ;; added 8 9
//! ;; soa
//! example.org. 3600 IN SOA ns1.example.org. hostmaster.example.org. 9 3600 600 86400 300
//! ;; end 9
//! ```
//!
//! An entry is appended and synced before its zone is served; one cut short (the process
//! killed as it wrote) has no `;; end` line and is left out, with anything after it.
//! Read back ([`replay`]), each entry is made into the zone as the IXFR that brought it
//! was ([`super::ixfr::make`]), so the zone read is the one served.

use std::path::{Path, PathBuf};

use hickory_proto::rr::{RData, Record, RecordType};

use super::ixfr::{self, Change, Changes};
use super::zone_text::zone_text;
use crate::zone::Zone;

/// The journal of the copy in `copy`: `COPY.journal`.
pub fn path_of(copy: &Path) -> PathBuf {
    let mut path = copy.as_os_str().to_owned();
    path.push(".journal");
    PathBuf::from(path)
}

/// The journal's first line: of zone `origin`, after serial `base` of its copy.
pub fn header(origin: &hickory_proto::rr::Name, base: u32) -> String {
    format!("; journal of zone {origin} after serial {base} of its copy\n")
}

/// The serial of the copy whose text begins with `head` (its comment lines, then its
/// SOA, as [`zone_text`] writes a copy), if the SOA is within it.
pub fn copy_serial(head: &str) -> Option<u32> {
    let soa = head.lines().find(|l| !l.starts_with(';'))?;
    let words: Vec<&str> = soa.split_ascii_whitespace().collect();
    let at = words.iter().position(|w| *w == "SOA")?;
    words.get(at + 3)?.parse().ok()
}

/// The text of a journal read as `bytes`: up to what is not UTF-8, if anything is (weft
/// writes ASCII, so that is a disk's damage, and what follows it is left out), with
/// where that begins.
pub fn text_of(bytes: &[u8]) -> (&str, Option<usize>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (text, None),
        Err(e) => {
            let at = e.valid_up_to();
            (
                std::str::from_utf8(&bytes[..at]).unwrap_or_default(),
                Some(at),
            )
        }
    }
}

/// The zone and the copy's serial a journal's first line names, if it is one.
fn read_header(text: &str) -> Option<(&str, u32)> {
    let line = text.lines().next()?;
    let rest = line.strip_prefix("; journal of zone ")?;
    let (origin, rest) = rest.split_once(" after serial ")?;
    let serial = rest.strip_suffix(" of its copy")?.parse().ok()?;
    Some((origin, serial))
}

/// The entry of `changes`, an IXFR's from serial `from`: text to append to the journal.
/// An error for a record whose RDATA does not encode.
pub fn entry(from: u32, changes: &Changes) -> Result<String, String> {
    let to = serial_of(&changes.soa);
    let mut text = format!(";; ixfr {from} {to}\n");
    for step in &changes.steps {
        let (a, b) = (step.from, step.to);
        text.push_str(&format!(";; deleted {a} {b}\n"));
        text.push_str(&zone_text(&step.deleted, "")?);
        text.push_str(&format!(";; added {a} {b}\n"));
        text.push_str(&zone_text(&step.added, "")?);
    }
    text.push_str(";; soa\n");
    text.push_str(&zone_text([&changes.soa], "")?);
    text.push_str(&format!(";; end {to}\n"));
    Ok(text)
}

fn serial_of(soa: &Record) -> u32 {
    match &soa.data {
        RData::SOA(soa) => soa.serial,
        _ => 0,
    }
}

/// Where a journal stands: what [`state`] finds of one.
#[derive(Debug, PartialEq, Eq)]
pub enum State {
    /// A journal of the zone.
    Journal {
        /// The serial of the copy it follows.
        base: u32,
        /// The serial its last whole entry ends at (`base` with none).
        last: u32,
        /// Where its whole entries end: what follows is an entry cut short.
        len: usize,
    },
    /// A file that is not a journal of the zone (its first line says otherwise): never
    /// written over.
    Foreign,
}

/// What the journal text `text` of zone `origin` holds: its whole entries, in order, up
/// to the first that is not one (see `chunks`).
pub fn state(text: &str, origin: &hickory_proto::rr::Name) -> State {
    let Some((named, base)) = read_header(text) else {
        return State::Foreign;
    };
    if named != origin.to_string() {
        return State::Foreign;
    }
    let header = text.find('\n').map_or(text.len(), |n| n + 1);
    let (chunks, _) = chunks(text);
    match chunks.last() {
        Some(last) => State::Journal {
            base,
            last: last.serial,
            len: last.end,
        },
        None => State::Journal {
            base,
            last: base,
            len: header,
        },
    }
}

/// What one comment line of an entry says.
enum Marker {
    Ixfr,
    Deleted(u32, u32),
    Added(u32, u32),
    Soa,
    End,
}

fn marker(line: &str) -> Option<Marker> {
    let rest = line.strip_prefix(";; ")?.trim_end();
    let mut words = rest.split(' ');
    let kind = words.next()?;
    let mut serial = || words.next()?.parse::<u32>().ok();
    Some(match kind {
        "ixfr" => Marker::Ixfr,
        "deleted" => Marker::Deleted(serial()?, serial()?),
        "added" => Marker::Added(serial()?, serial()?),
        "soa" => Marker::Soa,
        "end" => Marker::End,
        _ => return None,
    })
}

/// A whole entry of a journal: the line it starts at, where its text starts and ends in
/// the journal, and the serial it ends at.
struct Chunk {
    first: usize,
    start: usize,
    end: usize,
    serial: u32,
}

/// The whole entries of the journal `text` (its first line left out), each from its
/// `;; ixfr` line to its `;; end` line, in order, up to the first thing that is not one
/// (an end without a start, a start within an entry, text outside an entry); with why
/// reading stopped before the end, if it did (an entry cut short, the last, included).
fn chunks(text: &str) -> (Vec<Chunk>, Option<String>) {
    let mut out = Vec::new();
    let (mut at, mut open) = (0, None);
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let (starts, line_no) = (at, n + 1);
        at += line.len();
        if n == 0 {
            continue;
        }
        let stop = |why: &str| Some(format!("line {line_no}: {why}; what follows is left out"));
        if !line.ends_with('\n') {
            // The last line, cut short as it was written.
            let first = open.map_or(line_no, |(first, _)| first);
            return (
                out,
                Some(format!("line {first}: an entry cut short, left out")),
            );
        }
        if line.starts_with(";; ixfr ") {
            if open.is_some() {
                return (out, stop("an entry within an entry"));
            }
            open = Some((line_no, starts));
        } else if let Some(serial) = line.strip_prefix(";; end ") {
            let Some((first, start)) = open.take() else {
                return (out, stop("an entry's end without its start"));
            };
            let Ok(serial) = serial.trim_end().parse() else {
                return (out, stop("an entry's end without its serial"));
            };
            out.push(Chunk {
                first,
                start,
                end: at,
                serial,
            });
        } else if open.is_none() && !line.trim().is_empty() {
            return (out, stop("text outside an entry"));
        }
    }
    let note = open.map(|(first, _)| format!("line {first}: an entry cut short, left out"));
    (out, note)
}

/// The entries of journal `text` (whole entries only), read as zone-file text of `path`.
fn entries(path: &Path, text: &str) -> Result<Vec<Changes>, String> {
    let (located, _) = crate::zone::parse::records(path, text).map_err(|e| e.to_string())?;
    // Each record goes under the last marker before its line.
    let markers: Vec<(usize, Marker)> = text
        .lines()
        .enumerate()
        .filter_map(|(n, line)| Some((n + 1, marker(line)?)))
        .collect();
    let mut records = located.into_iter().peekable();
    let mut out = Vec::new();
    // The steps of the entry being read, and its SOA once read.
    let mut current: Option<(Vec<Change>, Option<Record>)> = None;
    for (i, (line, m)) in markers.iter().enumerate() {
        let until = markers.get(i + 1).map_or(usize::MAX, |(l, _)| *l);
        let mut taken = Vec::new();
        while let Some(r) = records.next_if(|r| r.line > *line && r.line < until) {
            taken.push(r.record);
        }
        let broken = || format!("{}: line {line}: an entry out of order", path.display());
        match (m, current.as_mut()) {
            (Marker::Ixfr, None) => current = Some((Vec::new(), None)),
            (Marker::Deleted(from, to), Some((steps, None))) => {
                let mut step = Change::starting_at(*from);
                step.to = *to;
                step.deleted = taken;
                steps.push(step);
            }
            (Marker::Added(from, to), Some((steps, None))) => {
                let step = steps
                    .last_mut()
                    .filter(|s| s.from == *from && s.to == *to && s.added.is_empty())
                    .ok_or_else(broken)?;
                step.added = taken;
            }
            (Marker::Soa, Some((_, soa @ None))) => {
                let record = taken
                    .into_iter()
                    .next()
                    .filter(|r| r.record_type() == RecordType::SOA)
                    .ok_or_else(broken)?;
                *soa = Some(record);
            }
            (Marker::End, Some((_, Some(_)))) => {
                let Some((steps, Some(soa))) = current.take() else {
                    unreachable!("matched above")
                };
                out.push(Changes { soa, steps });
            }
            _ => return Err(broken()),
        }
    }
    Ok(out)
}

/// The zone `copy` read from its file with the changes of its journal (`text`, of the
/// file `path`) made into it; with a note when the journal was not all read: one of
/// another copy, or changes that do not make a zone (the zone as far as they did).
pub fn replay(copy: Zone, path: &Path, text: &str) -> (Zone, Option<String>) {
    let shown = path.display();
    if text.is_empty() {
        // Made and not yet written when the process was killed.
        return (copy, None);
    }
    let base = match state(text, copy.origin()) {
        State::Foreign => {
            let note = format!(
                "{shown} is not a journal of zone {}: left out",
                copy.origin()
            );
            return (copy, Some(note));
        }
        State::Journal { base, .. } => base,
    };
    if base != copy.serial() {
        // The copy was written whole after it (the journal's removal came too late).
        let note = format!(
            "{shown} follows serial {base} of the copy, which is at {}: left out",
            copy.serial()
        );
        return (copy, Some(note));
    }
    let (chunks, stopped) = chunks(text);
    let stopped = stopped.map(|why| format!("{shown}: {why}"));
    // Made as the copy's own zone (its file the copy's, as the zone served names it),
    // whether in place or built again; each entry read on its own, so one that does not
    // read (a disk that kept its end line but not all of it) leaves those before it.
    let file = copy.file().to_owned();
    let mut zone = copy;
    for chunk in chunks {
        let at = zone.serial();
        // Read where it lies in the journal, so an error names the journal's own line.
        let mut lines = "\n".repeat(chunk.first - 1);
        lines.push_str(&text[chunk.start..chunk.end]);
        let changes = match entries(path, &lines).map(|mut e| e.pop()) {
            Ok(Some(changes)) => changes,
            Ok(None) => continue,
            Err(why) => {
                let note = format!(
                    "{shown}: the entry at line {} does not read ({why}); served at serial {at}",
                    chunk.first
                );
                return (zone, Some(note));
            }
        };
        let to = serial_of(&changes.soa);
        match ixfr::make(&zone, changes, &file, 1) {
            Ok(next) => zone = next,
            Err(e) => {
                let why = match e {
                    ixfr::Unmade::NotApplied(why) => why.0,
                    ixfr::Unmade::Refused(e) => e.to_string(),
                };
                return (
                    zone,
                    Some(format!(
                        "{shown}: the change to serial {to} does not make the zone ({why}); \
                         served at serial {at}"
                    )),
                );
            }
        }
    }
    (zone, stopped)
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
