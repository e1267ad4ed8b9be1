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
    mut origin: Option<Name>,
) -> Result<Vec<(usize, Record)>, ParseError> {
    let mut default_ttl: Option<u32> = None;
    let mut last_ttl: Option<u32> = None;
    let mut owner: Option<Name> = None;
    let mut out = Vec::new();
    for entry in entries {
        let line = entry.line;
        let err = |message: String| (line, message);
        let mut words = entry.words.iter().peekable();
        let first = words.peek().map(|w| w.text.as_str()).unwrap_or_default();
        match first.to_ascii_uppercase().as_str() {
            "$ORIGIN" => {
                words.next();
                let name = one_arg(&mut words, "$ORIGIN", "a domain name").map_err(err)?;
                let name = Name::parse(name, origin.as_ref())
                    .map_err(|e| err(format!("$ORIGIN {name:?}: {e}")))?;
                if !name.is_fqdn() {
                    return Err(err(format!(
                        "$ORIGIN {name} must be absolute: end it with a dot"
                    )));
                }
                origin = Some(name);
                continue;
            }
            "$TTL" => {
                words.next();
                let ttl = one_arg(&mut words, "$TTL", "a TTL").map_err(err)?;
                default_ttl = Some(parse_ttl(ttl).map_err(err)?);
                continue;
            }
            "$INCLUDE" => {
                return Err(err(
                    "$INCLUDE is not supported; list each zone file in `zones`".into(),
                ));
            }
            d if d.starts_with('$') => {
                return Err(err(format!("unknown directive {first:?}")));
            }
            _ => {}
        }
        if !entry.inherits_owner {
            let word = words.next().expect("an entry has a word");
            let named = name(&word.text, origin.as_ref()).map_err(err)?;
            if named.is_wildcard() {
                // Served as written, `*` would be a literal name that matches nothing a
                // client asks (RFC 4592 synthesis is not implemented): refuse it.
                return Err(err(format!(
                    "{named} is a wildcard: wildcards are not supported yet; \
                     list the names it should answer for one by one"
                )));
            }
            owner = Some(named);
        }
        let Some(owner) = owner.clone() else {
            return Err(err("the first record has no owner name".into()));
        };
        let mut ttl = None;
        let rtype = loop {
            let Some(word) = words.next() else {
                return Err(err("missing the record type".into()));
            };
            let upper = word.text.to_ascii_uppercase();
            if ttl.is_none() && upper.starts_with(|c: char| c.is_ascii_digit()) {
                ttl = Some(parse_ttl(&word.text).map_err(err)?);
            } else if upper == "IN" {
                continue;
            } else if matches!(upper.as_str(), "CH" | "HS" | "CS" | "NONE" | "ANY") {
                return Err(err(format!("class {upper} is not supported; only IN")));
            } else {
                break upper;
            }
        };
        let rest: Vec<&Word> = words.collect();
        let rdata = rdata(&rtype, &rest, origin.as_ref()).map_err(err)?;
        let ttl = match (ttl, default_ttl, last_ttl, &rdata) {
            (Some(t), ..) | (None, Some(t), ..) | (None, None, Some(t), _) => t,
            (None, None, None, RData::SOA(soa)) => soa.minimum,
            _ => {
                return Err(err(
                    "no TTL: give one on the record or put `$TTL 3600` at the top".into(),
                ));
            }
        };
        last_ttl = Some(ttl);
        let mut record = Record::from_rdata(owner, ttl, rdata);
        record.dns_class = DNSClass::IN;
        out.push((line, record));
    }
    Ok(out)
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

fn rdata(rtype: &str, args: &[&Word], origin: Option<&Name>) -> Result<RData, String> {
    let want = |n: usize, shape: &str| {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!(
                "{rtype} takes {n} field{}: {shape}; found {}",
                if n == 1 { "" } else { "s" },
                args.len()
            ))
        }
    };
    let text = |i: usize| args[i].text.as_str();
    let number = |i: usize, what: &str| {
        text(i).parse::<u16>().map_err(|_| {
            format!(
                "{rtype} {what} {:?} is not a number from 0 to 65535",
                text(i)
            )
        })
    };
    let target = |i: usize| name(text(i), origin);
    Ok(match rtype {
        "A" => {
            want(1, "an IPv4 address")?;
            let ip: Ipv4Addr = text(0)
                .parse()
                .map_err(|_| format!("{:?} is not an IPv4 address", text(0)))?;
            RData::A(A(ip))
        }
        "AAAA" => {
            want(1, "an IPv6 address")?;
            let ip: Ipv6Addr = text(0)
                .parse()
                .map_err(|_| format!("{:?} is not an IPv6 address", text(0)))?;
            RData::AAAA(AAAA(ip))
        }
        "NS" => {
            want(1, "a name server")?;
            RData::NS(NS(target(0)?))
        }
        "CNAME" => {
            want(1, "a target name")?;
            RData::CNAME(CNAME(target(0)?))
        }
        "PTR" => {
            want(1, "a target name")?;
            RData::PTR(PTR(target(0)?))
        }
        "MX" => {
            want(2, "a preference and a mail exchanger")?;
            RData::MX(MX::new(number(0, "preference")?, target(1)?))
        }
        "SRV" => {
            want(4, "priority, weight, port and target")?;
            RData::SRV(SRV::new(
                number(0, "priority")?,
                number(1, "weight")?,
                number(2, "port")?,
                target(3)?,
            ))
        }
        "TXT" => {
            if args.is_empty() {
                return Err("TXT needs at least one string".into());
            }
            if let Some(long) = args.iter().find(|w| w.text.len() > 255) {
                return Err(format!(
                    "a TXT string is at most 255 bytes; one has {}: split it into several quoted strings",
                    long.text.len()
                ));
            }
            RData::TXT(TXT::new(args.iter().map(|w| w.text.clone()).collect()))
        }
        "SOA" => {
            want(7, "mname rname serial refresh retry expire minimum")?;
            let serial = text(2)
                .parse::<u32>()
                .map_err(|_| format!("SOA serial {:?} is not a number", text(2)))?;
            let time = |i: usize| parse_ttl(text(i));
            let signed = |i: usize| time(i).map(|t| i32::try_from(t).unwrap_or(i32::MAX));
            RData::SOA(SOA::new(
                target(0)?,
                target(1)?,
                serial,
                signed(3)?,
                signed(4)?,
                signed(5)?,
                time(6)?,
            ))
        }
        other => {
            return Err(match other.parse::<RecordType>() {
                Ok(_) => format!("record type {other} is not supported; supported: {SUPPORTED}"),
                Err(_) => format!("{other:?} is not a record type, TTL or class"),
            });
        }
    })
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
