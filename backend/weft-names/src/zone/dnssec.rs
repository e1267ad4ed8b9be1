//! The DNSSEC record types from their text (RFC 4034, RFC 5155, RFC 7344), served as
//! data: hickory-proto reads them from the wire but not from zone text, so their wire
//! form is built here and kept as opaque RDATA of their type.

use hickory_proto::rr::rdata::NULL;
use hickory_proto::rr::{Name, RData, RecordType};

use super::lex::Word;
use super::parse::{name, parse_ttl};
use super::rdata::record_type;

/// The wire RDATA of `code` (one of DS, CDS, DNSKEY, CDNSKEY, RRSIG, NSEC, NSEC3,
/// NSEC3PARAM) from its fields.
pub(super) fn rdata(
    code: RecordType,
    args: &[&Word],
    origin: Option<&Name>,
) -> Result<RData, String> {
    let mut f = Fields {
        code,
        args,
        next: 0,
        wire: Vec::new(),
    };
    match code {
        RecordType::DS | RecordType::CDS => {
            f.u16("key tag")?;
            f.u8("algorithm")?;
            f.u8("digest type")?;
            f.rest_hex("digest")?;
        }
        RecordType::DNSKEY | RecordType::CDNSKEY => {
            f.u16("flags")?;
            f.u8("protocol")?;
            f.u8("algorithm")?;
            f.rest_base64("public key")?;
        }
        RecordType::RRSIG => {
            let covered = record_type(f.word("type covered")?)?;
            f.wire.extend(u16::from(covered).to_be_bytes());
            f.u8("algorithm")?;
            f.u8("labels")?;
            let ttl = parse_ttl(f.word("original TTL")?)?;
            f.wire.extend(ttl.to_be_bytes());
            for what in ["expiration", "inception"] {
                let time = signature_time(f.word(what)?)?;
                f.wire.extend(time.to_be_bytes());
            }
            f.u16("key tag")?;
            let signer = name(f.word("signer's name")?, origin)?;
            put_name(&mut f.wire, &signer);
            f.rest_base64("signature")?;
        }
        RecordType::NSEC => {
            let next = name(f.word("next domain name")?, origin)?;
            put_name(&mut f.wire, &next);
            f.type_bitmap()?;
        }
        RecordType::NSEC3 | RecordType::NSEC3PARAM => {
            f.u8("hash algorithm")?;
            f.u8("flags")?;
            f.u16("iterations")?;
            let salt = f.word("salt")?;
            let salt = if salt == "-" {
                Vec::new()
            } else {
                hex(code, "salt", salt)?
            };
            f.length_prefixed("salt", &salt)?;
            if code == RecordType::NSEC3 {
                let next = f.word("next hashed owner name")?.to_ascii_uppercase();
                let next = data_encoding::BASE32HEX_NOPAD
                    .decode(next.as_bytes())
                    .map_err(|e| format!("NSEC3 next hashed owner name is not base32hex: {e}"))?;
                f.length_prefixed("next hashed owner name", &next)?;
                f.type_bitmap()?;
            } else if f.next < args.len() {
                return Err(format!("NSEC3PARAM takes 4 fields; found {}", args.len()));
            }
        }
        other => return Err(format!("{other} is not a DNSSEC type")),
    }
    Ok(RData::Unknown {
        code,
        rdata: NULL::with(f.wire),
    })
}

/// The fields of one record, read in order into its wire form.
struct Fields<'a> {
    code: RecordType,
    args: &'a [&'a Word],
    next: usize,
    wire: Vec<u8>,
}

impl Fields<'_> {
    fn word(&mut self, what: &str) -> Result<&str, String> {
        let word = self
            .args
            .get(self.next)
            .ok_or_else(|| format!("{} is missing its {what}", self.code))?;
        self.next += 1;
        Ok(&word.text)
    }

    fn number<T: std::str::FromStr>(&mut self, what: &str, range: &str) -> Result<T, String> {
        let code = self.code;
        let text = self.word(what)?;
        text.parse()
            .map_err(|_| format!("{code} {what} {text:?} is not a number from {range}"))
    }

    fn u8(&mut self, what: &str) -> Result<(), String> {
        let n: u8 = self.number(what, "0 to 255")?;
        self.wire.push(n);
        Ok(())
    }

    fn u16(&mut self, what: &str) -> Result<(), String> {
        let n: u16 = self.number(what, "0 to 65535")?;
        self.wire.extend(n.to_be_bytes());
        Ok(())
    }

    /// The remaining words, joined (zone files split long data), all of it.
    fn rest(&mut self, what: &str) -> Result<String, String> {
        let rest: String = self.args[self.next.min(self.args.len())..]
            .iter()
            .map(|w| w.text.as_str())
            .collect();
        self.next = self.args.len();
        if rest.is_empty() {
            return Err(format!("{} is missing its {what}", self.code));
        }
        Ok(rest)
    }

    fn rest_hex(&mut self, what: &str) -> Result<(), String> {
        let text = self.rest(what)?;
        let bytes = hex(self.code, what, &text)?;
        self.wire.extend(bytes);
        Ok(())
    }

    fn rest_base64(&mut self, what: &str) -> Result<(), String> {
        let text = self.rest(what)?;
        let bytes = data_encoding::BASE64
            .decode(text.as_bytes())
            .map_err(|e| format!("{} {what} is not base64: {e}", self.code))?;
        self.wire.extend(bytes);
        Ok(())
    }

    fn length_prefixed(&mut self, what: &str, bytes: &[u8]) -> Result<(), String> {
        let len = u8::try_from(bytes.len())
            .map_err(|_| format!("{} {what} is longer than 255 bytes", self.code))?;
        self.wire.push(len);
        self.wire.extend(bytes);
        Ok(())
    }

    /// The remaining words as the type bitmap of RFC 4034 section 4.1.2: windows of 256
    /// types, each with the bytes up to its highest type.
    fn type_bitmap(&mut self) -> Result<(), String> {
        let mut types = Vec::new();
        while self.next < self.args.len() {
            let text = self.word("types")?;
            types.push(u16::from(record_type(text)?));
        }
        types.sort_unstable();
        types.dedup();
        let mut i = 0;
        while i < types.len() {
            let window = types[i] >> 8;
            let mut bits = [0u8; 32];
            let mut len = 0;
            while i < types.len() && types[i] >> 8 == window {
                let low = usize::from(types[i] as u8);
                bits[low / 8] |= 0x80 >> (low % 8);
                len = low / 8 + 1;
                i += 1;
            }
            self.wire.push(window as u8);
            self.wire.push(len as u8);
            self.wire.extend(&bits[..len]);
        }
        Ok(())
    }
}

fn hex(code: RecordType, what: &str, text: &str) -> Result<Vec<u8>, String> {
    data_encoding::HEXLOWER_PERMISSIVE
        .decode(text.as_bytes())
        .map_err(|e| format!("{code} {what} is not hex: {e}"))
}

/// A name in wire form, uncompressed (RFC 4034 section 3.1.7 and 4.1.1).
pub(super) fn put_name(wire: &mut Vec<u8>, name: &Name) {
    for label in name.iter() {
        wire.push(label.len() as u8);
        wire.extend(label);
    }
    wire.push(0);
}

/// An RRSIG time: `YYYYMMDDHHmmSS` in UTC, or seconds since 1970 (RFC 4034 section 3.2).
fn signature_time(text: &str) -> Result<u32, String> {
    let bad = || format!("RRSIG time {text:?} is not YYYYMMDDHHmmSS or a number of seconds");
    if text.len() != 14 {
        return text.parse().map_err(|_| bad());
    }
    let field = |range: std::ops::Range<usize>| -> Result<i64, String> {
        text.get(range).and_then(|t| t.parse().ok()).ok_or_else(bad)
    };
    let (year, month, day) = (field(0..4)?, field(4..6)?, field(6..8)?);
    let (hour, minute, second) = (field(8..10)?, field(10..12)?, field(12..14)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second;
    // Serial number arithmetic (RFC 1982): the time modulo 2^32.
    Ok(seconds.rem_euclid(1 << 32) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_times_are_utc_seconds() {
        assert_eq!(signature_time("19700101000000"), Ok(0));
        assert_eq!(signature_time("20240101000000"), Ok(1_704_067_200));
        assert_eq!(signature_time("1704067200"), Ok(1_704_067_200));
        assert!(signature_time("20241301000000").is_err());
    }
}
