//! Entries to records: `$ORIGIN`, `$TTL`, owners, TTLs, classes and the RDATA of the
//! common types (SOA, NS, A, AAAA, CNAME, MX, TXT, PTR, SRV).

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::lex::{Entry, Word};

/// A parse error: the line and what is wrong.
pub(crate) type ParseError = (usize, String);

/// The record types a zone file may hold.
const SUPPORTED: &str = "SOA, NS, A, AAAA, CNAME, MX, TXT, PTR, SRV";

/// Records of `entries`, in file order, each with its line.
pub(crate) fn records(
    entries: &[Entry],
    origin: Option<Name>,
) -> Result<Vec<(usize, Record)>, ParseError> {
    let mut state = State {
        origin,
        ..State::default()
    };
    let mut out = Vec::new();
    for entry in entries {
        let err = |message: String| (entry.line, message);
        if state.directive(&entry.words).map_err(err)? {
            continue;
        }
        let record = state.record(entry).map_err(err)?;
        out.push((entry.line, record));
    }
    Ok(out)
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
    /// Applies a `$` directive; `false` when the entry is a record.
    fn directive(&mut self, words: &[Word]) -> Result<bool, String> {
        let Some((first, args)) = words.split_first() else {
            return Ok(false);
        };
        let mut args = args.iter();
        match first.text.to_ascii_uppercase().as_str() {
            "$ORIGIN" => {
                let name = one_arg(&mut args, "$ORIGIN", "a domain name")?;
                let name = Name::parse(name, self.origin.as_ref())
                    .map_err(|e| format!("$ORIGIN {name:?}: {e}"))?;
                if !name.is_fqdn() {
                    return Err(format!(
                        "$ORIGIN {name} must be absolute: end it with a dot"
                    ));
                }
                self.origin = Some(name);
            }
            "$TTL" => {
                let ttl = one_arg(&mut args, "$TTL", "a TTL")?;
                self.default_ttl = Some(parse_ttl(ttl)?);
            }
            "$INCLUDE" => {
                return Err("$INCLUDE is not supported; list each zone file in `zones`".into());
            }
            d if d.starts_with('$') => {
                return Err(format!("unknown directive {:?}", first.text));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The record of one entry: its owner (or the previous one's), TTL and class in
    /// either order, the type, and the type's fields.
    fn record(&mut self, entry: &Entry) -> Result<Record, String> {
        let mut words = entry.words.iter();
        if !entry.inherits_owner {
            let word = words.next().expect("an entry has a word");
            self.owner = Some(self.owner_name(&word.text)?);
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

    /// An owner name as written at the start of an entry.
    fn owner_name(&self, text: &str) -> Result<Name, String> {
        let named = name(text, self.origin.as_ref())?;
        if named.is_wildcard() {
            // Served as written, `*` would be a literal name that matches nothing a
            // client asks (RFC 4592 synthesis is not implemented): refuse it.
            return Err(format!(
                "{named} is a wildcard: wildcards are not supported yet; \
                 list the names it should answer for one by one"
            ));
        }
        Ok(named)
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
fn name(text: &str, origin: Option<&Name>) -> Result<Name, String> {
    if text == "@" {
        return origin
            .cloned()
            .ok_or_else(|| "`@` needs an $ORIGIN first".to_owned());
    }
    let name =
        Name::parse(text, origin).map_err(|e| format!("{text:?} is not a domain name: {e}"))?;
    if !name.is_fqdn() {
        return Err(format!(
            "{text:?} is relative and there is no $ORIGIN; add `$ORIGIN example.test.` at the top"
        ));
    }
    Ok(name)
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

/// The fields after the record type, with the checks every type shares.
struct Fields<'a> {
    rtype: &'a str,
    args: &'a [&'a Word],
    /// What relative target names are relative to.
    origin: Option<&'a Name>,
}

impl Fields<'_> {
    /// Fails unless there are exactly `n` fields, naming their `shape`.
    fn want(&self, n: usize, shape: &str) -> Result<(), String> {
        if self.args.len() == n {
            Ok(())
        } else {
            Err(format!(
                "{} takes {n} field{}: {shape}; found {}",
                self.rtype,
                if n == 1 { "" } else { "s" },
                self.args.len()
            ))
        }
    }

    fn text(&self, i: usize) -> &str {
        self.args[i].text.as_str()
    }

    fn number(&self, i: usize, what: &str) -> Result<u16, String> {
        self.text(i).parse::<u16>().map_err(|_| {
            format!(
                "{} {what} {:?} is not a number from 0 to 65535",
                self.rtype,
                self.text(i)
            )
        })
    }

    fn target(&self, i: usize) -> Result<Name, String> {
        name(self.text(i), self.origin)
    }

    /// The one field, an address of `family` (`IPv4`, `IPv6`).
    fn address<T: std::str::FromStr>(&self, family: &str) -> Result<T, String> {
        self.want(1, &format!("an {family} address"))?;
        self.text(0)
            .parse()
            .map_err(|_| format!("{:?} is not an {family} address", self.text(0)))
    }
}

fn rdata(rtype: &str, args: &[&Word], origin: Option<&Name>) -> Result<RData, String> {
    let f = Fields {
        rtype,
        args,
        origin,
    };
    Ok(match rtype {
        "A" => RData::A(A(f.address::<Ipv4Addr>("IPv4")?)),
        "AAAA" => RData::AAAA(AAAA(f.address::<Ipv6Addr>("IPv6")?)),
        "NS" => {
            f.want(1, "a name server")?;
            RData::NS(NS(f.target(0)?))
        }
        "CNAME" => {
            f.want(1, "a target name")?;
            RData::CNAME(CNAME(f.target(0)?))
        }
        "PTR" => {
            f.want(1, "a target name")?;
            RData::PTR(PTR(f.target(0)?))
        }
        "MX" => {
            f.want(2, "a preference and a mail exchanger")?;
            RData::MX(MX::new(f.number(0, "preference")?, f.target(1)?))
        }
        "SRV" => {
            f.want(4, "priority, weight, port and target")?;
            RData::SRV(SRV::new(
                f.number(0, "priority")?,
                f.number(1, "weight")?,
                f.number(2, "port")?,
                f.target(3)?,
            ))
        }
        "TXT" => RData::TXT(txt(args)?),
        "SOA" => RData::SOA(soa(&f)?),
        other => {
            return Err(match other.parse::<RecordType>() {
                Ok(_) => format!("record type {other} is not supported; supported: {SUPPORTED}"),
                Err(_) => format!("{other:?} is not a record type, TTL or class"),
            });
        }
    })
}

/// TXT: one or more strings of at most 255 bytes each.
fn txt(args: &[&Word]) -> Result<TXT, String> {
    if args.is_empty() {
        return Err("TXT needs at least one string".into());
    }
    if let Some(long) = args.iter().find(|w| w.text.len() > 255) {
        return Err(format!(
            "a TXT string is at most 255 bytes; one has {}: split it into several quoted strings",
            long.text.len()
        ));
    }
    Ok(TXT::new(args.iter().map(|w| w.text.clone()).collect()))
}

/// SOA: two names, a serial, and four times (which may have units).
fn soa(f: &Fields<'_>) -> Result<SOA, String> {
    f.want(7, "mname rname serial refresh retry expire minimum")?;
    let serial = f
        .text(2)
        .parse::<u32>()
        .map_err(|_| format!("SOA serial {:?} is not a number", f.text(2)))?;
    let time = |i: usize| parse_ttl(f.text(i));
    let signed = |i: usize| time(i).map(|t| i32::try_from(t).unwrap_or(i32::MAX));
    Ok(SOA::new(
        f.target(0)?,
        f.target(1)?,
        serial,
        signed(3)?,
        signed(4)?,
        signed(5)?,
        time(6)?,
    ))
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
