//! TSIG on queries (RFC 8945). This server holds no keys, so a signed query is never
//! answered as if it were unsigned: its key is unknown, and it gets NOTAUTH with a TSIG
//! record whose error is BADKEY.

use hickory_proto::op::{Header, Message, Query};
use hickory_proto::rr::rdata::TSIG;
use hickory_proto::rr::rdata::tsig::{TsigError, make_tsig_record};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

/// The TSIG record that signs a query.
#[derive(Debug, Clone)]
pub(crate) struct Signed {
    /// The key's name (the record's owner).
    pub(crate) key: Name,
    /// The query's record: a BADKEY answer repeats its algorithm, fudge and original ID.
    tsig: TSIG,
}

/// The TSIG record of `message` (decoded from `packet`), if it is signed; an error when
/// the TSIG records break RFC 8945 section 5.2 (FORMERR).
pub(crate) fn of_query(message: &Message, packet: &[u8]) -> Result<Option<Signed>, String> {
    // Without hickory's DNSSEC support a TSIG record stays among the additionals; with
    // it, it is lifted into `signature`. Either way its position is read from the packet.
    let found = message
        .signature
        .as_deref()
        .map(|r| (&r.name, &r.data))
        .or_else(|| {
            message.additionals.iter().find_map(|r| match &r.data {
                RData::TSIG(t) => Some((&r.name, t)),
                _ => None,
            })
        });
    let Some((key, tsig)) = found else {
        return Ok(None);
    };
    // RFC 8945 section 5.2: one TSIG record, the last of the additional section, or
    // FORMERR. hickory takes the OPT record out of the section, so count on the wire.
    let types = additional_types(packet).map_err(|e| format!("undecodable: {e}"))?;
    let tsigs = types.iter().filter(|t| **t == RecordType::TSIG).count();
    if tsigs > 1 {
        return Err(format!("{tsigs} TSIG records; a message has at most one"));
    }
    if types.last() != Some(&RecordType::TSIG) {
        return Err("a TSIG record that is not the last of the additional section".into());
    }
    Ok(Some(Signed {
        key: key.clone(),
        tsig: tsig.clone(),
    }))
}

/// The record types of `packet`'s additional section, in wire order.
fn additional_types(packet: &[u8]) -> Result<Vec<RecordType>, String> {
    let mut decoder = BinDecoder::new(packet);
    let header = Header::read(&mut decoder).map_err(|e| e.to_string())?;
    for _ in 0..header.counts.queries {
        Query::read(&mut decoder).map_err(|e| e.to_string())?;
    }
    for _ in 0..u32::from(header.counts.answers) + u32::from(header.counts.authorities) {
        Record::read(&mut decoder).map_err(|e| e.to_string())?;
    }
    (0..header.counts.additionals)
        .map(|_| {
            Record::read(&mut decoder)
                .map(|r| r.record_type())
                .map_err(|e| e.to_string())
        })
        .collect()
}

impl Signed {
    /// The TSIG record of the response to a query signed with this unknown key.
    ///
    /// RFC 8945 section 5.2: a key the server does not know gets RCODE NOTAUTH and TSIG
    /// error BADKEY; section 5.3.2: that response is unsigned (an empty MAC). The record
    /// keeps the query's key name, algorithm and original ID so the client can tell which
    /// of its keys was refused; Time Signed is the server's clock, as in any response.
    pub(crate) fn unknown_key_response(&self) -> Record<TSIG> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        make_tsig_record(
            self.key.clone(),
            TSIG::new(
                self.tsig.algorithm.clone(),
                now,
                self.tsig.fudge,
                Vec::new(),
                self.tsig.oid,
                Some(TsigError::BadKey),
                Vec::new(),
            ),
        )
    }
}
