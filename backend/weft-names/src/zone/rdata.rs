//! The RDATA of a record from its fields. The types of RFC 1035 and SRV are read here;
//! the other types hickory-proto reads from text (CAA, CERT, CSYNC, HINFO, HTTPS, NAPTR,
//! OPENPGPKEY, SMIMEA, SSHFP, SVCB, TLSA) go through its parser; the DNSSEC types, which
//! it does not read, are built in `dnssec`; and any type may be written in the
//! generic form of RFC 3597 (`TYPE65534 \# 2 abcd`).

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, NULL, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinDecoder, Restrict};

use super::dnssec;
use super::lex::Word;
use super::parse::{name, parse_ttl};

/// The record types a zone file may hold, named in errors.
const SUPPORTED: &str = "SOA, NS, A, AAAA, CNAME, DNAME, MX, TXT, PTR, SRV, CAA, CERT, CSYNC, \
     HINFO, HTTPS, NAPTR, OPENPGPKEY, SMIMEA, SSHFP, SVCB, TLSA, DS, CDS, DNSKEY, CDNSKEY, \
     RRSIG, NSEC, NSEC3, NSEC3PARAM";

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

/// The RDATA of a record of type `rtype` (as written, upper-cased) from its fields.
pub(super) fn rdata(rtype: &str, args: &[&Word], origin: Option<&Name>) -> Result<RData, String> {
    if args.first().is_some_and(|w| w.text == "\\#" && !w.quoted) {
        let code = record_type(rtype)?;
        return match u16::from(code) {
            // Its target is a name the answers read: it must be one, uncompressed.
            39 => generic(code, &args[1..]).and_then(|data| match super::dname_target(&data) {
                Some(_) => Ok(data),
                None => Err(format!(
                    "{rtype} \\# data is not a domain name (uncompressed, as RFC 6672 \
                     section 2.5 writes it)"
                )),
            }),
            // Meta and question types (RFC 6895 section 3.1): never zone data.
            41 | 128..=255 => Err(format!(
                "{rtype} is a meta or question type, not data a zone can hold"
            )),
            _ => generic(code, &args[1..]),
        };
    }
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
        // Kept as its wire form (hickory-proto has no DNAME type): the target's labels,
        // never compressed (RFC 6672 section 2.5).
        "DNAME" => {
            f.want(1, "a target name")?;
            let mut wire = Vec::new();
            dnssec::put_name(&mut wire, &f.target(0)?);
            RData::Unknown {
                code: RecordType::DNAME,
                rdata: NULL::with(wire),
            }
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
        other => return extended(other, args, origin),
    })
}

/// TXT: one or more strings of at most 255 bytes each.
fn txt(args: &[&Word]) -> Result<TXT, String> {
    if args.is_empty() {
        return Err("TXT needs at least one string".into());
    }
    let strings = args
        .iter()
        .map(|w| super::lex::unescape(&w.text))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(long) = strings.iter().find(|s| s.len() > 255) {
        return Err(format!(
            "a TXT string is at most 255 bytes; one has {}: split it into several quoted strings",
            long.len()
        ));
    }
    Ok(TXT::from_bytes(strings.iter().map(Vec::as_slice).collect()))
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

/// A record type by its mnemonic or as `TYPEnnn` (RFC 3597 section 5).
pub(super) fn record_type(text: &str) -> Result<RecordType, String> {
    let upper = text.to_ascii_uppercase();
    if let Some(number) = upper.strip_prefix("TYPE")
        && let Ok(code) = number.parse::<u16>()
    {
        return Ok(RecordType::from(code));
    }
    match upper.parse::<RecordType>() {
        Ok(RecordType::Unknown(_)) | Err(_) => {
            Err(format!("{text:?} is not a record type, TTL or class"))
        }
        Ok(t) => Ok(t),
    }
}

/// The types whose text hickory-proto reads, or that are built here, beyond RFC 1035's.
fn extended(rtype: &str, args: &[&Word], origin: Option<&Name>) -> Result<RData, String> {
    let code = record_type(rtype)?;
    match code {
        RecordType::CAA
        | RecordType::CERT
        | RecordType::CSYNC
        | RecordType::HINFO
        | RecordType::HTTPS
        | RecordType::NAPTR
        | RecordType::OPENPGPKEY
        | RecordType::SMIMEA
        | RecordType::SSHFP
        | RecordType::SVCB
        | RecordType::TLSA => hickory_text(code, args, origin),
        RecordType::DS
        | RecordType::CDS
        | RecordType::DNSKEY
        | RecordType::CDNSKEY
        | RecordType::RRSIG
        | RecordType::NSEC
        | RecordType::NSEC3
        | RecordType::NSEC3PARAM => dnssec::rdata(code, args, origin),
        _ => Err(format!(
            "record type {rtype} is not supported in its text form; supported: {SUPPORTED}; \
             any type can be written as `{rtype} \\# LENGTH HEX` (RFC 3597)"
        )),
    }
}

/// The fields of `code` as text for hickory-proto's parser: quoted strings quoted
/// again, relative target names made absolute (it would keep them relative), and the
/// hex or base64 data that zone files split over several words joined into one.
fn hickory_text(code: RecordType, args: &[&Word], origin: Option<&Name>) -> Result<RData, String> {
    let (target, data_from) = match code {
        RecordType::NAPTR => (Some(5), None),
        RecordType::SVCB | RecordType::HTTPS => (Some(1), None),
        RecordType::SSHFP => (None, Some(2)),
        RecordType::TLSA | RecordType::SMIMEA | RecordType::CERT => (None, Some(3)),
        RecordType::OPENPGPKEY => (None, Some(0)),
        _ => (None, None),
    };
    let mut text = String::new();
    for (i, word) in args.iter().enumerate() {
        if data_from.is_some_and(|from| i > from) {
            text.push_str(&word.text);
            continue;
        }
        if !text.is_empty() {
            text.push(' ');
        }
        if target == Some(i) {
            text.push_str(&name(&word.text, origin)?.to_string());
        } else if word.quoted {
            // Its escapes as written: hickory-proto reads them.
            text.push('"');
            text.push_str(&word.text);
            text.push('"');
        } else {
            text.push_str(&word.text);
        }
    }
    RData::try_from_str(code, &text).map_err(|e| format!("{code} {text:?}: {e}"))
}

/// The generic form of RFC 3597 section 5: `\# LENGTH HEX...`, read as the wire form
/// of `code` (so a known type is the same record as in its own form).
fn generic(code: RecordType, args: &[&Word]) -> Result<RData, String> {
    let Some((length, hex)) = args.split_first() else {
        return Err(format!("{code} \\# needs the RDATA length and its hex"));
    };
    let length: u16 = length
        .text
        .parse()
        .map_err(|_| format!("{code} \\# length {:?} is not a number", length.text))?;
    let joined: String = hex.iter().map(|w| w.text.as_str()).collect();
    let bytes = data_encoding::HEXLOWER_PERMISSIVE
        .decode(joined.as_bytes())
        .map_err(|e| format!("{code} \\# data is not hex: {e}"))?;
    if bytes.len() != usize::from(length) {
        return Err(format!(
            "{code} \\# says {length} bytes but its hex holds {}",
            bytes.len()
        ));
    }
    let mut decoder = BinDecoder::new(&bytes);
    RData::read(&mut decoder, code, Restrict::new(length))
        .map_err(|e| format!("{code} \\# data is not a valid {code}: {e}"))
}
