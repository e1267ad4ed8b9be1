//! A transferred zone written as a zone file ([`zone_text`]), which reads back exactly
//! what came.

use std::fmt::Write as _;

use hickory_proto::rr::rdata::{CNAME, NS, PTR};
use hickory_proto::rr::{Name, RData, Record};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

/// A zone file of `records` (a transfer's, its SOA first), `comment` on its first line.
/// A, AAAA, NS, CNAME, PTR, MX, SOA, TXT and SRV are written as text, every name written here with
/// decimal escapes (hickory writes `xn--` labels as Unicode and escapes in octal, which a
/// zone file reads as other names); the other types in the generic form of RFC 3597
/// (`TYPE46 \# 23 0001...`). So the file reads back exactly what came; an error for RDATA that does not
/// encode. A TTL with its top bit set is written as 0 (RFC 2181 section 8). A record of
/// the same owner as the one before it is written without it, on a line that starts
/// with a blank.
pub fn zone_text<'a>(
    records: impl IntoIterator<Item = &'a Record>,
    comment: &str,
) -> Result<String, String> {
    let records = records.into_iter();
    let mut text = String::with_capacity(96 * records.size_hint().0 + 128);
    for line in comment.lines() {
        let _ = writeln!(text, "; {line}");
    }
    let mut bytes = Vec::new();
    let mut owner: Option<&Name> = None;
    for record in records {
        // A record of the owner before goes on a line that starts with a blank, as a zone
        // file has it (RFC 1035 section 5.1): the name is written once per owner.
        match owner {
            Some(before) if before.eq_case(&record.name) => {}
            _ => put_name(&mut text, &record.name),
        }
        owner = Some(&record.name);
        let ttl = if record.ttl > i32::MAX.cast_unsigned() {
            0
        } else {
            record.ttl
        };
        let _ = write!(text, " {ttl} {} ", record.dns_class);
        let rtype = record.record_type();
        let as_text = matches!(
            record.data,
            RData::A(_)
                | RData::AAAA(_)
                | RData::NS(_)
                | RData::CNAME(_)
                | RData::PTR(_)
                | RData::MX(_)
                | RData::SOA(_)
                | RData::TXT(_)
                | RData::SRV(_)
        );
        // The generic form names the type by its number: it reads any type.
        let _ = match as_text {
            true => write!(text, "{rtype} "),
            false => write!(text, "TYPE{} ", u16::from(rtype)),
        };
        match &record.data {
            RData::A(a) => {
                let _ = write!(text, "{a}");
            }
            RData::AAAA(aaaa) => {
                let _ = write!(text, "{aaaa}");
            }
            RData::NS(NS(name)) | RData::CNAME(CNAME(name)) | RData::PTR(PTR(name)) => {
                put_name(&mut text, name);
            }
            RData::MX(mx) => {
                let _ = write!(text, "{} ", mx.preference);
                put_name(&mut text, &mx.exchange);
            }
            RData::TXT(txt) => {
                for (i, string) in txt.txt_data.iter().enumerate() {
                    if i > 0 {
                        text.push(' ');
                    }
                    put_string(&mut text, string);
                }
            }
            RData::SRV(srv) => {
                let _ = write!(text, "{} {} {} ", srv.priority, srv.weight, srv.port);
                put_name(&mut text, &srv.target);
            }
            RData::SOA(soa) => {
                put_name(&mut text, &soa.mname);
                text.push(' ');
                put_name(&mut text, &soa.rname);
                // RFC 1035 section 3.3.13: unsigned, where hickory keeps three as i32.
                let _ = write!(
                    text,
                    " {} {} {} {} {}",
                    soa.serial,
                    soa.refresh.cast_unsigned(),
                    soa.retry.cast_unsigned(),
                    soa.expire.cast_unsigned(),
                    soa.minimum
                );
            }
            data => {
                bytes.clear();
                let mut encoder = BinEncoder::new(&mut bytes);
                encoder.set_name_encoding(NameEncoding::Uncompressed);
                if let Err(e) = data.emit(&mut encoder) {
                    return Err(format!("{} {rtype}: {e}", record.name));
                }
                let _ = write!(
                    text,
                    "\\# {} {}",
                    bytes.len(),
                    data_encoding::HEXLOWER.encode(&bytes)
                );
            }
        }
        text.push('\n');
    }
    Ok(text)
}

/// Whether `byte` is written as itself in a name of a zone file.
fn plain(byte: u8) -> bool {
    byte.is_ascii_graphic() && !b".;()\"\\$@".contains(&byte)
}

/// Writes `string` (a TXT record's character-string) quoted, as a zone file reads it: a
/// printable ASCII octet as itself (`"` and `\` escaped with a backslash), any other as
/// `\DDD`, in decimal (RFC 1035 section 5.1).
fn put_string(text: &mut String, string: &[u8]) {
    text.push('"');
    for &byte in string {
        match byte {
            b'"' | b'\\' => {
                text.push('\\');
                text.push(char::from(byte));
            }
            b' '..=b'~' => text.push(char::from(byte)),
            _ => {
                let _ = write!(text, "\\{byte:03}");
            }
        }
    }
    text.push('"');
}

/// Writes `name`, absolute, as a zone file reads it: an octet that is not [`plain`] as
/// `\DDD`, in decimal (RFC 1035 section 5.1).
fn put_name(text: &mut String, name: &Name) {
    for label in name.iter() {
        // Most labels are written as they are, in one piece.
        if label.iter().all(|&b| plain(b))
            && let Ok(label) = std::str::from_utf8(label)
        {
            text.push_str(label);
            text.push('.');
            continue;
        }
        for &byte in label {
            match plain(byte) {
                true => text.push(char::from(byte)),
                false => {
                    let _ = write!(text, "\\{byte:03}");
                }
            }
        }
        text.push('.');
    }
    if name.is_root() {
        text.push('.');
    }
}
