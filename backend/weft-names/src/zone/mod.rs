//! Authoritative data: BIND zone files parsed into [`Zone`]s, and the answers they give.
//!
//! A [`Catalog`] holds the zones of a service; [`Catalog::find`] picks the zone with the
//! longest origin that contains a name, and [`Zone::lookup`] answers from it: the
//! records asked for, CNAMEs followed while they stay inside the zone (each once, at most
//! eight), NXDOMAIN or NODATA with the SOA in the authority section (RFC 2308).
//! Delegations are not served (zone transfers are, by [`crate::transfer`]), and a zone file with a wildcard owner
//! (`*`) is refused until wildcards are.

mod lex;
mod parse;
mod walk;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use crate::error::{NamesError, ZoneError};

/// How many CNAMEs an answer follows at most.
const MAX_CNAME_CHAIN: usize = 8;

/// One zone: its origin, its SOA and its records by owner name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    origin: Name,
    soa: Record,
    /// Every record of each owner name, in file order.
    records: HashMap<LowerName, Vec<Record>>,
    /// Owner names and every ancestor up to the origin, so an empty non-terminal
    /// (`b.example.test` when only `a.b.example.test` has records) is NODATA, not NXDOMAIN.
    names: HashSet<LowerName>,
    /// Where it was read from, for errors that name the file (two zones for one origin).
    file: PathBuf,
}

/// What a zone says about a question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneAnswer {
    /// NOERROR (with answers, or NODATA) or NXDOMAIN.
    pub rcode: ResponseCode,
    /// The answer section: the records asked for, after the CNAMEs leading to them.
    pub answers: Vec<Record>,
    /// The authority section: the SOA for a negative answer.
    pub authorities: Vec<Record>,
}

impl Zone {
    /// Reads and parses the zone file at `path`.
    pub fn load(path: &Path) -> Result<Self, ZoneError> {
        let text = std::fs::read_to_string(path).map_err(|e| ZoneError {
            file: path.to_owned(),
            line: 0,
            message: format!("cannot read the zone file: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses zone file `text`, naming `file` in errors. Names are relative to the
    /// `$ORIGIN` in force; the zone's origin is the owner of its one SOA record.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ZoneError> {
        let err = |line: usize, message: String| ZoneError {
            file: file.to_owned(),
            line,
            message,
        };
        let entries = lex::entries(text).map_err(|(l, m)| err(l, m))?;
        let records = parse::records(&entries, None).map_err(|(l, m)| err(l, m))?;
        let mut soa: Option<(usize, Record)> = None;
        for (line, record) in &records {
            if record.record_type() == RecordType::SOA {
                if let Some((first, _)) = &soa {
                    return Err(err(
                        *line,
                        format!(
                            "a second SOA record; a zone has one (the first is on line {first})"
                        ),
                    ));
                }
                soa = Some((*line, record.clone()));
            }
        }
        let Some((soa_line, soa)) = soa else {
            return Err(err(0, "no SOA record; a zone starts with one, such as `@ IN SOA ns1 hostmaster 1 3600 600 86400 300`".into()));
        };
        let origin = soa.name.clone();
        let lower_origin = LowerName::new(&origin);
        let mut zone = Self {
            origin,
            soa,
            records: HashMap::new(),
            names: HashSet::new(),
            file: file.to_owned(),
        };
        if let Some((line, first)) = records.first()
            && first.record_type() != RecordType::SOA
        {
            return Err(err(
                *line,
                format!("the SOA record (line {soa_line}) must come first"),
            ));
        }
        for (line, record) in records {
            let owner = LowerName::new(&record.name);
            if !lower_origin.zone_of(&owner) {
                return Err(err(
                    line,
                    format!("{} is outside the zone {}", record.name, zone.origin),
                ));
            }
            let at_owner = zone.records.entry(owner.clone()).or_default();
            let is_cname = record.record_type() == RecordType::CNAME;
            if at_owner
                .iter()
                .any(|r| (r.record_type() == RecordType::CNAME) != is_cname)
                || (is_cname && !at_owner.is_empty())
            {
                return Err(err(
                    line,
                    format!(
                        "{} has a CNAME and other records; a CNAME must be alone at its name",
                        record.name
                    ),
                ));
            }
            if !at_owner.contains(&record) {
                at_owner.push(record);
            }
            let mut name = owner;
            while zone.names.insert(name.clone()) && name != lower_origin {
                name = name.base_name();
            }
        }
        Ok(zone)
    }

    /// The zone's origin.
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// The file it was read from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.records.values().map(Vec::len).sum()
    }

    /// Whether it holds no records (never true for a parsed zone: it has its SOA).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The answer to `qname`/`qtype`, which must be inside the zone.
    pub fn lookup(&self, qname: &Name, qtype: RecordType) -> ZoneAnswer {
        let origin = LowerName::new(&self.origin);
        let mut answers = Vec::new();
        let mut name = LowerName::new(qname);
        // The names whose CNAMEs are in the answer: a loop ends when it comes back to one,
        // so each record is in the answer once.
        let mut followed = HashSet::new();
        loop {
            let Some(records) = self.records.get(&name) else {
                let rcode = if self.names.contains(&name) {
                    ResponseCode::NoError
                } else {
                    ResponseCode::NXDomain
                };
                return self.negative(rcode, answers);
            };
            let matching: Vec<Record> = records
                .iter()
                .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
                .cloned()
                .collect();
            if !matching.is_empty() {
                answers.extend(matching);
                return self.positive(answers);
            }
            let Some(RData::CNAME(target)) = records
                .iter()
                .find(|r| r.record_type() == RecordType::CNAME)
                .map(|r| &r.data)
            else {
                return self.negative(ResponseCode::NoError, answers);
            };
            answers.extend(records.iter().cloned());
            followed.insert(name);
            let next = LowerName::new(&target.0);
            if !origin.zone_of(&next)
                || followed.contains(&next)
                || followed.len() >= MAX_CNAME_CHAIN
            {
                // Someone else's target (the client's resolver follows it), a loop, or a
                // chain too long to follow: the CNAMEs so far are the answer.
                return self.positive(answers);
            }
            name = next;
        }
    }

    fn positive(&self, answers: Vec<Record>) -> ZoneAnswer {
        ZoneAnswer {
            rcode: ResponseCode::NoError,
            answers,
            authorities: Vec::new(),
        }
    }

    /// NXDOMAIN or NODATA, with the SOA whose TTL is the negative-caching time.
    fn negative(&self, rcode: ResponseCode, answers: Vec<Record>) -> ZoneAnswer {
        let mut soa = self.soa.clone();
        if let RData::SOA(data) = &soa.data {
            soa.ttl = soa.ttl.min(data.minimum);
        }
        ZoneAnswer {
            rcode,
            answers,
            authorities: vec![soa],
        }
    }
}

/// The zones of one service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    zones: Vec<Zone>,
}

impl Catalog {
    /// Loads every file of `paths`; two files with the same origin are an error.
    pub fn load(paths: &[PathBuf]) -> Result<Self, NamesError> {
        let mut catalog = Self::default();
        for path in paths {
            catalog.add(Zone::load(path)?)?;
        }
        Ok(catalog)
    }

    /// Adds `zone`.
    pub fn add(&mut self, zone: Zone) -> Result<(), NamesError> {
        if let Some(other) = self.zones.iter().find(|z| z.origin == zone.origin) {
            return Err(NamesError::DuplicateZone {
                origin: zone.origin.to_string(),
                first: other.file.clone(),
                second: zone.file,
            });
        }
        self.zones.push(zone);
        Ok(())
    }

    /// The zones, in the order added.
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// The zone with the longest origin containing `name`.
    pub fn find(&self, name: &Name) -> Option<&Zone> {
        self.zones
            .iter()
            .filter(|z| z.origin.zone_of(name))
            .max_by_key(|z| z.origin.num_labels())
    }
}

#[cfg(test)]
mod tests;
