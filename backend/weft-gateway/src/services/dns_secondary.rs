//! `secondary` of a dns service: the zones it takes from primaries and keeps current
//! (`weft_names::transfer::inbound`; the task that keeps each is `crate::secondaries`).
//!
//! ```toml
//! secondary = [
//!   { zone = "example.org.", file = "var/example.org.zone", primaries = ["192.0.2.1", "192.0.2.2:5300 xfr.example."] },
//! ]
//! ```
//!
//! `primaries` are asked in order, each `IP` or `IP:PORT` (port 53 by default) followed by
//! the name of a key of `tsig_keys` when its transfers are signed (as NSD's
//! `request-xfr`); a NOTIFY for the zone is taken from their addresses (with that key,
//! where one is named), as NSD's `allow-notify`. `file` is where the copy is kept: written
//! after each transfer, and served from the start when it is there, as a zone file is
//! (one that does not load is a warning: the zone is transferred anew). A copy held is
//! brought up to date by IXFR, the changes since it, unless `request_ixfr = false`: then
//! by AXFR, the whole zone, each time (a primary that does not serve IXFR is asked the
//! AXFR in any case).

use std::path::PathBuf;

use weft_names::transfer::{Secondary, inbound};
use weft_names::{Catalog, NotifyPeer, TsigKey, Zone};

use crate::config::ConfigError;
use crate::config::validate::ServiceCtx;

/// The keys of an entry.
const KEYS: [&str; 5] = ["zone", "file", "primaries", "max_records", "request_ixfr"];

/// `secondary`: each zone, its file and its primaries (their keys among `keys`). The
/// copy each file holds is added to `zones`; a file of `zone_files` (the service's own
/// zones) is refused, as weft would write over it.
pub(super) fn secondaries(
    ctx: &ServiceCtx<'_>,
    keys: &[TsigKey],
    zones: &mut Catalog,
    zone_files: &[PathBuf],
) -> Result<Vec<Secondary>, ConfigError> {
    let Some(value) = &ctx.raw.secondary else {
        return Ok(Vec::new());
    };
    let span = value.span();
    let error = |why: String| ctx.error(span.clone(), "secondary", why);
    let shape = "is a list of tables such as [{ zone = \"example.org.\", file = \
                 \"var/example.org.zone\", primaries = [\"192.0.2.1\"] }]";
    let Some(entries) = value.get_ref().as_array() else {
        return Err(error(shape.into()));
    };
    let mut secondaries: Vec<Secondary> = Vec::new();
    for (n, entry) in entries.iter().enumerate() {
        let Some(table) = entry.as_table() else {
            return Err(error(format!("entry {n} {shape}")));
        };
        if let Some(other) = table.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(error(format!(
                "entry {n} has the key {other:?}; a secondary zone has zone, file, primaries, \
                 max_records and request_ixfr"
            )));
        }
        let text = |field: &str, what: &str| {
            table
                .get(field)
                .and_then(toml::Value::as_str)
                .ok_or_else(|| error(format!("entry {n} has no {field} ({what})")))
        };
        let zone = text("zone", "the zone's name, such as \"example.org.\"")?;
        let origin = hickory_proto::rr::Name::from_ascii(zone)
            .ok()
            .filter(|_| !zone.is_empty())
            .map(|mut name| {
                name.set_fqdn(true);
                name
            })
            .ok_or_else(|| error(format!("entry {n}: {zone:?} is not a zone's name")))?;
        let file = PathBuf::from(text(
            "file",
            "where the copy is kept, such as \"var/example.org.zone\"",
        )?);
        if file.as_os_str().is_empty() || file.ends_with("..") || file.file_name().is_none() {
            return Err(error(format!(
                "zone {origin}: file {:?} names no file",
                file.display()
            )));
        }
        let max_records = match table.get("max_records") {
            None => inbound::MAX_RECORDS,
            Some(value) => value
                .as_integer()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| (1..=100_000_000).contains(n))
                .ok_or_else(|| {
                    error(format!(
                        "zone {origin}: max_records is a number of records from 1 to 100000000"
                    ))
                })?,
        };
        let request_ixfr = match table.get("request_ixfr") {
            None => true,
            Some(value) => value.as_bool().ok_or_else(|| {
                error(format!(
                    "zone {origin}: request_ixfr is true (the changes since the copy held, \
                     the default) or false (the whole zone each time)"
                ))
            })?,
        };
        let Some(list) = table.get("primaries").and_then(toml::Value::as_array) else {
            return Err(error(format!(
                "zone {origin}: primaries is a list such as [\"192.0.2.1\", \"192.0.2.2:5300 xfr.example.\"]"
            )));
        };
        let mut primaries = Vec::new();
        for primary in list {
            let Some(entry) = primary.as_str() else {
                return Err(error(format!("zone {origin}: a primary is a string")));
            };
            let written = (
                "a primary's address",
                "\"192.0.2.1\" or \"192.0.2.1:5300 xfr.example.\"",
            );
            let (address, key) =
                super::dns::keyed(ctx, ("secondary", entry, &span), written, keys)?;
            let addr = super::dns::peer_address(address, "a primary")
                .map_err(|why| error(format!("zone {origin}: {why}")))?;
            primaries.push(NotifyPeer {
                addr,
                key: key.cloned(),
            });
        }
        if primaries.is_empty() {
            return Err(error(format!(
                "zone {origin} names no primary to transfer it from"
            )));
        }
        if let Some(zone) = zones.zones().iter().find(|z| *z.origin() == origin) {
            return Err(error(format!(
                "zone {origin} is also served from {}: a zone is a file's or a secondary's",
                zone.file().display()
            )));
        }
        if secondaries.iter().any(|s| s.origin == origin) {
            return Err(error(format!("zone {origin} is a secondary twice")));
        }
        if zone_files.contains(&file) {
            return Err(error(format!(
                "zone {origin} would be kept in {}, a file of `zones`: weft would write over it",
                file.display()
            )));
        }
        if let Some(other) = secondaries.iter().find(|s| s.file == file) {
            return Err(error(format!(
                "zones {} and {origin} are both kept in {}",
                other.origin,
                file.display()
            )));
        }
        if file.exists() {
            // Only a copy a transfer wrote is written over: a path mistyped onto another
            // file (a zone file, the history database, this configuration) is refused.
            if let Some(why) = not_a_copy(&file, &origin) {
                return Err(error(why));
            }
            // The journal opened before the copy is read: a copy written whole meanwhile
            // (its journal then removed) is read with the journal it replaced, which
            // names the older copy and is left out; never an older copy without its
            // journal, behind what is served.
            let journal = open_journal(&file);
            match Zone::load(&file) {
                Ok(copy) if *copy.origin() == origin => {
                    let copy = with_journal(copy, journal, |why| {
                        ctx.warn(span.clone(), "secondary", why);
                    });
                    match expired(&file, &copy) {
                        None => zones.add(copy).map_err(|e| error(e.to_string()))?,
                        Some(why) => ctx.warn(span.clone(), "secondary", why),
                    }
                }
                Ok(copy) => {
                    return Err(error(format!(
                        "{} holds the zone {}, not {origin}: weft would write over it; name \
                         another file, or remove this one",
                        file.display(),
                        copy.origin()
                    )));
                }
                Err(e) => ctx.warn(
                    span.clone(),
                    "secondary",
                    format!("{e}; the zone {origin} is transferred anew"),
                ),
            }
        }
        secondaries.push(Secondary {
            origin,
            file,
            primaries,
            max_records,
            request_ixfr,
        });
    }
    Ok(secondaries)
}

/// The journal of the copy in `file`, opened (`None` when there is none), with its path.
fn open_journal(file: &std::path::Path) -> (std::path::PathBuf, std::io::Result<std::fs::File>) {
    let path = weft_names::transfer::journal::path_of(file);
    let opened = std::fs::File::open(&path);
    (path, opened)
}

/// The copy `copy` with the changes of its journal (opened before the copy was read)
/// made into it (`weft_names::transfer::journal`): the zone served when they were
/// written; `warn` is told what of the journal was left out, and why.
fn with_journal(
    copy: Zone,
    (path, opened): (std::path::PathBuf, std::io::Result<std::fs::File>),
    mut warn: impl FnMut(String),
) -> Zone {
    use std::io::Read as _;
    use weft_names::transfer::journal;
    let read = opened.and_then(|f| {
        if !f.metadata()?.is_file() {
            return Err(std::io::Error::other("not a regular file"));
        }
        let mut bytes = Vec::new();
        f.take(256 << 20).read_to_end(&mut bytes)?;
        Ok(bytes)
    });
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return copy,
        Err(e) => {
            warn(format!(
                "{}: {e}; the copy is served without it",
                path.display()
            ));
            return copy;
        }
    };
    // The entries before what is not text (a disk's damage) are read.
    let (text, damaged) = journal::text_of(&bytes);
    if let Some(at) = damaged {
        warn(format!(
            "{}: not text from byte {at}: what follows is left out",
            path.display()
        ));
    }
    let (zone, note) = journal::replay(copy, &path, text);
    if let Some(note) = note {
        warn(note);
    }
    zone
}

/// Why the copy `zone` in `file` is not to be served, if it has expired: no primary
/// confirmed it (the file's modification time, which the task keeping the zone sets at
/// each confirmation) within its SOA's expire time (RFC 1034 section 4.3.5).
fn expired(file: &std::path::Path, zone: &Zone) -> Option<String> {
    let hickory_proto::rr::RData::SOA(soa) = &zone.soa().data else {
        return None;
    };
    let expire = std::time::Duration::from_secs(u64::from(soa.expire.cast_unsigned()));
    let since = std::fs::metadata(file)
        .and_then(|m| m.modified())
        .ok()?
        .elapsed()
        .ok()?;
    (since > expire).then(|| {
        format!(
            "the copy of {} in {} was last confirmed by a primary {} s ago, past its SOA's \
             expire time of {} s: it is not served until a primary is reached",
            zone.origin(),
            file.display(),
            since.as_secs(),
            expire.as_secs()
        )
    })
}

/// Why `file`, which exists, is not a copy of zone `origin` a transfer wrote (its first
/// line says so: see `inbound::zone_text`'s comment, written by `crate::secondaries`).
fn not_a_copy(file: &std::path::Path, origin: &hickory_proto::rr::Name) -> Option<String> {
    use std::io::BufRead as _;
    let first = std::fs::File::open(file)
        .map(std::io::BufReader::new)
        .and_then(|mut f| {
            let mut line = String::new();
            f.read_line(&mut line).map(|_| line)
        });
    let line = match first {
        Ok(line) => line,
        Err(e) => return Some(format!("{} cannot be read: {e}", file.display())),
    };
    let names = line
        .strip_prefix("; zone ")
        .and_then(|rest| rest.split_once(" transferred from "))
        .map(|(zone, _)| zone);
    match names {
        Some(zone) if zone.eq_ignore_ascii_case(&origin.to_string()) => None,
        Some(zone) => Some(format!(
            "{} holds a copy of the zone {zone}, not {origin}: weft would write over it; name \
             another file, or remove this one",
            file.display()
        )),
        None => Some(format!(
            "{} is not a copy of {origin} a transfer wrote (its first line would say so): \
             weft would write over it; name another file, or remove this one",
            file.display()
        )),
    }
}
