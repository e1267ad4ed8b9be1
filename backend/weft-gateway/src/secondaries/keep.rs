//! Keeping what a transfer brought: the zone made of it on a blocking thread, its copy
//! written, in that order, before the task hands it over to be served.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::SystemTime;

use weft_names::Zone;
use weft_names::transfer::inbound;
use weft_names::transfer::{Secondary, ixfr};

use super::copy_file::write_whole;

/// A check's turn among the checks at once (`TURNS`), and the generation of the task it
/// is the check of: held by the blocking work of keeping a transfer until that work
/// ends, which goes on when the task is stopped meanwhile.
#[derive(Clone)]
pub(super) struct Turn {
    pub(super) _permit: Arc<tokio::sync::SemaphorePermit<'static>>,
    /// Tasks started later have larger ones.
    pub(super) generation: u64,
}

/// The generation of the task that last wrote each copy file, and the lock its writes
/// take: a stopped task's write that goes on never renames its file over the copy a
/// task started after it wrote.
static WRITTEN: LazyLock<Mutex<HashMap<PathBuf, Arc<Mutex<u64>>>>> = LazyLock::new(Mutex::default);

/// What a transfer brought, to make the zone of.
pub(super) enum Making {
    /// The zone whole.
    Whole(Vec<hickory_proto::rr::Record>),
    /// The changes to the copy held.
    Changed(Arc<Zone>, Box<ixfr::Changes>),
}

/// Why a transfer is not kept.
pub(super) enum Unstored {
    /// Its changes do not apply to the copy held.
    NotApplied(String),
    /// The zone is refused (it breaks a check of the zone loader, or cannot be written).
    Refused(String),
}

impl std::fmt::Display for Unstored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotApplied(why) | Self::Refused(why) => f.write_str(why),
        }
    }
}

/// Makes the zone of what came from `primary` on a blocking thread (built from the
/// records of a whole transfer, or the copy held changed by an IXFR's: see
/// `ixfr::make`), checked as its zone file would be; the copy as it is served.
async fn store(
    zone: &Secondary,
    making: Making,
    primary: &str,
    turn: Turn,
) -> Result<Zone, Unstored> {
    let file = zone.file.clone();
    let most = zone.max_records;
    // The records numbered as the copy would have them, after its comment (see
    // `write_copy`); they are not in a file yet (and never will be, refused): an error
    // names a record by its place among them.
    let first_line = comment(zone, primary).lines().count() + 1;
    let made = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        let refused = |e: weft_names::ZoneError| {
            Unstored::Refused(match e.line {
                0 => e.message,
                line => format!(
                    "record {} of the zone: {}",
                    line + 1 - first_line,
                    e.message
                ),
            })
        };
        let copy = match making {
            Making::Whole(records) => {
                Zone::from_transfer(&file, records, first_line).map_err(refused)?
            }
            Making::Changed(held, changes) => ixfr::make(&held, *changes, &file, first_line)
                .map_err(|e| match e {
                    ixfr::Unmade::NotApplied(why) => Unstored::NotApplied(why.0),
                    ixfr::Unmade::Refused(e) => refused(e),
                })?,
        };
        // An IXFR's changes could grow the zone past what an AXFR may bring.
        if copy.len() > most {
            return Err(Unstored::Refused(format!(
                "a zone of {} records, more than `max_records` ({most})",
                copy.len()
            )));
        }
        Ok(copy)
    });
    made.await.map_err(|e| Unstored::Refused(e.to_string()))?
}

/// The first line of a copy of `zone` from `primary`, now: what marks the file as one a
/// transfer wrote (`dns_secondary::not_a_copy`).
fn comment(zone: &Secondary, primary: &str) -> String {
    format!(
        "zone {} transferred from {primary} at {} (unix seconds)",
        zone.origin,
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    )
}

/// Makes the zone of what came from `primary` (`store`) and writes its copy
/// (`write_copy`) before it is served: the file is never behind what is served, so a
/// reload that reads it, a restart, or the file's time marking a confirmation never
/// brings back an older copy.
pub(super) async fn keep(
    zone: &Secondary,
    making: Making,
    primary: &str,
    turn: &Turn,
) -> Result<Arc<Zone>, Unstored> {
    let new = Arc::new(store(zone, making, primary, turn.clone()).await?);
    write_copy(zone, new.clone(), primary, turn.clone())
        .await
        .map_err(Unstored::Refused)?;
    Ok(new)
}

/// Writes `copy`, the zone to serve, to `zone`'s file as a zone file of its records (on a
/// blocking thread; renamed into place, whole).
async fn write_copy(
    zone: &Secondary,
    copy: Arc<Zone>,
    primary: &str,
    turn: Turn,
) -> Result<(), String> {
    let file = zone.file.clone();
    let comment = comment(zone, primary);
    let written = tokio::task::spawn_blocking(move || {
        let poisoned = || format!("cannot write {}: a write of it panicked", file.display());
        let last = WRITTEN
            .lock()
            .map_err(|_| poisoned())?
            .entry(file.clone())
            .or_default()
            .clone();
        let mut last = last.lock().map_err(|_| poisoned())?;
        if *last > turn.generation {
            return Err(format!(
                "{} was written by a task started after this one: left as it is",
                file.display()
            ));
        }
        let text = inbound::zone_text(copy.records(), &comment)?;
        write_whole(&file, text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        *last = turn.generation;
        Ok(())
    });
    written.await.map_err(|e| e.to_string())?
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::rdata::{A, CNAME, NS, SOA};
    use hickory_proto::rr::{Name, RData, Record};

    use super::*;

    /// A turn of a task of `generation`.
    async fn turn(generation: u64) -> Turn {
        static TESTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(100);
        Turn {
            _permit: Arc::new(TESTS.acquire().await.unwrap()),
            generation,
        }
    }

    #[tokio::test]
    async fn a_stopped_task_s_write_never_goes_over_the_copy_a_later_task_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let zone = Secondary {
            origin: Name::from_ascii("example.test.").unwrap(),
            file: dir.path().join("example.test.zone"),
            primaries: Vec::new(),
            max_records: 10,
            request_ixfr: true,
        };
        let copy = |serial: u32| {
            let text = format!(
                "example.test. 60 IN SOA ns.example.test. h.example.test. {serial} 60 60 600 60\n\
                 example.test. 60 IN NS ns.example.test.\n"
            );
            Arc::new(Zone::parse(&zone.file, &text).unwrap())
        };
        // The task started later (6) writes serial 9; the stopped one's (5) write of
        // serial 8, which went on, comes after: refused, the file keeps 9.
        write_copy(&zone, copy(9), "p", turn(6).await)
            .await
            .unwrap();
        let late = write_copy(&zone, copy(8), "p", turn(5).await).await;
        assert!(
            late.unwrap_err()
                .contains("written by a task started after this one")
        );
        let kept = std::fs::read_to_string(&zone.file).unwrap();
        assert!(kept.contains(" 9 60 60 600 60\n"), "{kept}");
        // The same task writes again as it likes.
        write_copy(&zone, copy(10), "p", turn(6).await)
            .await
            .unwrap();
        assert!(
            std::fs::read_to_string(&zone.file)
                .unwrap()
                .contains(" 10 60 60 600 60\n")
        );
    }

    #[tokio::test]
    async fn a_zone_refused_names_its_record_by_its_place_not_by_a_line_of_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let name = |n: &str| Name::from_ascii(n).unwrap();
        let origin = name("example.test.");
        let zone = Secondary {
            origin: origin.clone(),
            file: dir.path().join("example.test.zone"),
            primaries: Vec::new(),
            max_records: 10,
            request_ixfr: true,
        };
        let soa = SOA::new(name("ns.example.test."), origin.clone(), 9, 60, 60, 600, 60);
        let records = vec![
            Record::from_rdata(origin.clone(), 60, RData::SOA(soa)),
            Record::from_rdata(origin.clone(), 60, RData::NS(NS(name("ns.example.test.")))),
            Record::from_rdata(name("ns.example.test."), 60, RData::A(A::new(192, 0, 2, 1))),
            Record::from_rdata(name("ns.example.test."), 60, RData::CNAME(CNAME(origin))),
        ];
        let why = store(&zone, Making::Whole(records), "192.0.2.9:53", turn(1).await)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            why.starts_with("record 4 of the zone: ns.example.test. has a CNAME and other records"),
            "{why}"
        );
        assert!(!zone.file.exists(), "nothing written");
    }
}
