//! Keeping what a transfer brought: the zone made of it on a blocking thread, its copy
//! written, in that order, before the task hands it over to be served.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::SystemTime;

use weft_names::Zone;
use weft_names::transfer::inbound;
use weft_names::transfer::{Secondary, ixfr, journal};

use super::copy_file::{append_journal, remove_journal, write_whole};

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
///
/// An IXFR's changes are appended to the copy's journal (`journal_changes`) rather than
/// the copy written whole, while the journal stays small beside it: a change of one
/// record in a zone of 200,000 is then a few lines written, not the zone.
pub(super) async fn keep(
    zone: &Secondary,
    making: Making,
    primary: &str,
    turn: &Turn,
) -> Result<Arc<Zone>, Unstored> {
    // Written before the changes go into the zone, which takes them.
    let entry = match &making {
        Making::Changed(held, changes) => journal::entry(held.serial(), changes)
            .ok()
            .map(|entry| (held.serial(), entry)),
        Making::Whole(_) => None,
    };
    let new = Arc::new(store(zone, making, primary, turn.clone()).await?);
    if let Some((held, entry)) = entry
        && journal_changes(zone, held, entry, turn.clone()).await
    {
        return Ok(new);
    }
    write_copy(zone, new.clone(), primary, turn.clone())
        .await
        .map_err(Unstored::Refused)?;
    Ok(new)
}

/// How long a journal goes without a change before a check that finds the copy current
/// writes the copy whole with it (and removes it): the copy alone is then current again,
/// as NSD writes its zone files on a timer and Knot after `zonefile-sync`. Changes
/// coming often keep their journal; the checks are the SOA's refresh apart.
const FOLD_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// Whether a check that found the copy current now writes it whole with its journal,
/// last changed at `journal` (`None`: there is none).
pub(super) fn fold_due(journal: Option<SystemTime>, now: SystemTime) -> bool {
    journal.is_some_and(|at| {
        now.duration_since(at)
            .is_ok_and(|quiet| quiet >= FOLD_AFTER)
    })
}

/// Writes `copy`, the zone served, whole to `zone`'s file, its journal removed, when the
/// journal has gone [`FOLD_AFTER`] without a change (see [`fold_due`]); a failure is
/// logged, the copy and journal left as they were.
pub(super) async fn fold(zone: &Secondary, copy: Arc<Zone>, primary: &str, turn: &Turn) {
    let journal = super::copy_file::modified(&journal::path_of(&zone.file));
    if !fold_due(journal, SystemTime::now()) {
        return;
    }
    match write_copy(zone, copy, primary, turn.clone()).await {
        Ok(()) => tracing::debug!(zone = %zone.origin, "the copy written whole with its journal"),
        Err(why) => tracing::warn!(zone = %zone.origin, "{why}; the journal kept"),
    }
}

/// Runs `write`, a write of `file`'s copy or journal by a task of `generation`, under
/// the file's lock, unless a task started later wrote it already (an error).
fn as_latest<T>(
    file: &std::path::Path,
    generation: u64,
    write: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    let poisoned = || format!("cannot write {}: a write of it panicked", file.display());
    let last = WRITTEN
        .lock()
        .map_err(|_| poisoned())?
        .entry(file.to_owned())
        .or_default()
        .clone();
    let mut last = last.lock().map_err(|_| poisoned())?;
    if *last > generation {
        return Err(format!(
            "{} was written by a task started after this one: left as it is",
            file.display()
        ));
    }
    let written = write()?;
    *last = generation;
    Ok(written)
}

/// Appends `entry`, an IXFR's changes from serial `held`, to the journal of `zone`'s
/// copy, and marks the copy confirmed: whether it did (when not, the copy is written
/// whole, and the journal removed).
async fn journal_changes(zone: &Secondary, held: u32, entry: String, turn: Turn) -> bool {
    let (file, origin) = (zone.file.clone(), zone.origin.clone());
    let appended = tokio::task::spawn_blocking(move || {
        as_latest(&file, turn.generation, || {
            let appended = append_journal(&file, &origin, held, &entry)
                .map_err(|e| format!("cannot append to the journal of {}: {e}", file.display()))?;
            if appended {
                super::copy_file::touch(&file);
            }
            Ok(appended)
        })
    });
    match appended.await {
        Ok(Ok(appended)) => appended,
        // The copy's write, which comes next, says what matters (a later task's write,
        // a disk that fails it too); this one failing alone costs the whole write.
        Ok(Err(why)) => {
            tracing::debug!(zone = %zone.origin, "{why}; writing the copy whole");
            false
        }
        Err(_) => false,
    }
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
    let origin = zone.origin.clone();
    let written = tokio::task::spawn_blocking(move || {
        as_latest(&file, turn.generation, || {
            let text = inbound::zone_text(copy.records(), &comment)?;
            write_whole(&file, text.as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
            // The copy holds every change the journal did.
            remove_journal(&file, &origin);
            Ok(())
        })
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
        let zone = example_test(&dir, 10);
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

    /// The secondary zone `example.test.`, kept in `dir`, of `max_records` at most.
    fn example_test(dir: &tempfile::TempDir, max_records: usize) -> Secondary {
        Secondary {
            origin: Name::from_ascii("example.test.").unwrap(),
            file: dir.path().join("example.test.zone"),
            primaries: Vec::new(),
            max_records,
            request_ixfr: true,
        }
    }

    /// `example.test.` at serial 7 with 200 hosts, its copy written in `dir`.
    async fn hosts_copy(dir: &tempfile::TempDir) -> (Secondary, Arc<Zone>) {
        let zone = example_test(dir, 10_000);
        let mut text = String::from(
            "example.test. 60 IN SOA ns.example.test. h.example.test. 7 60 60 600 60\n\
             example.test. 60 IN NS ns.example.test.\n",
        );
        for i in 0..200 {
            text.push_str(&format!("h{i}.example.test. 60 IN A 10.0.0.{}\n", i % 250));
        }
        let held = Arc::new(Zone::parse(&zone.file, &text).unwrap());
        write_copy(&zone, held.clone(), "p", turn(1).await)
            .await
            .unwrap();
        (zone, held)
    }

    #[tokio::test]
    async fn changes_go_to_the_journal_until_it_would_pass_a_quarter_of_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let name = |n: &str| Name::from_ascii(n).unwrap();
        let (zone, held) = hosts_copy(&dir).await;
        let journal = journal::path_of(&zone.file);
        let copy = std::fs::read_to_string(&zone.file).unwrap();
        let soa = |serial: u32| {
            let data = SOA::new(
                name("ns.example.test."),
                name("h.example.test."),
                serial,
                60,
                60,
                600,
                60,
            );
            Record::from_rdata(name("example.test."), 60, RData::SOA(data))
        };
        let changes = |from: u32, added: Vec<Record>| {
            let step = ixfr::Change {
                from,
                to: from + 1,
                deleted: Vec::new(),
                added,
            };
            Box::new(ixfr::Changes {
                soa: soa(from + 1),
                steps: vec![step],
            })
        };
        let host = |i: u32| {
            Record::from_rdata(
                name(&format!("new{i}.example.test.")),
                60,
                RData::A(A::new(192, 0, 2, (i % 250) as u8)),
            )
        };

        // One record: a few lines of the journal, the copy left as it was.
        let making = Making::Changed(held.clone(), changes(7, vec![host(1)]));
        let eight = keep(&zone, making, "p", &turn(1).await)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(eight.serial(), 8);
        assert_eq!(std::fs::read_to_string(&zone.file).unwrap(), copy);
        let written = std::fs::read_to_string(&journal).unwrap();
        assert!(
            written.contains(";; ixfr 7 8\n")
                && written.contains("new1.example.test. 60 IN A 192.0.2.1\n"),
            "{written}"
        );

        // Another: appended after it.
        let making = Making::Changed(eight.clone(), changes(8, vec![host(2)]));
        let nine = keep(&zone, making, "p", &turn(1).await)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let written = std::fs::read_to_string(&journal).unwrap();
        assert!(
            written.contains(";; ixfr 8 9\n") && written.ends_with(";; end 9\n"),
            "{written}"
        );
        assert_eq!(std::fs::read_to_string(&zone.file).unwrap(), copy);

        // Many more than a quarter of the copy's size: the copy written whole, holding
        // every change, and the journal gone.
        let making = Making::Changed(nine, changes(9, (10..200).map(host).collect()));
        let ten = keep(&zone, making, "p", &turn(1).await)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!journal.exists());
        let again = Zone::load(&zone.file).unwrap();
        assert_eq!(again, *ten);
        assert_eq!(again.serial(), 10);
    }

    /// A journal's entry of an IXFR from `from` to the next serial, changing nothing but
    /// the SOA.
    fn entry(from: u32) -> String {
        format!(
            ";; ixfr {from} {0}\n;; soa\nexample.test. 60 IN SOA a. b. {0} 1 1 1 1\n;; end {0}\n",
            from + 1
        )
    }

    /// A directory with the copy of `example.test.`'s file and journal paths in it.
    fn journal_dir() -> (
        tempfile::TempDir,
        Name,
        std::path::PathBuf,
        std::path::PathBuf,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let origin = Name::from_ascii("example.test.").unwrap();
        let file = dir.path().join("example.test.zone");
        let journal = journal::path_of(&file);
        (dir, origin, file, journal)
    }

    #[test]
    fn a_journal_is_appended_only_where_it_ends_at_the_zone_held_and_never_over_another_file() {
        let (_dir, origin, file, journal) = journal_dir();
        // No copy: nothing to follow.
        assert!(!append_journal(&file, &origin, 7, &entry(7)).unwrap());
        let copy = format!(
            "; zone example.test. transferred from p at 1 (unix seconds)\n\
             example.test. 60 IN SOA a. b. 7 1 1 1 1\n{}",
            "; filler\n".repeat(450)
        );
        std::fs::write(&file, &copy).unwrap();
        // The copy at 7 and the zone served at 8 with no journal: written whole.
        assert!(!append_journal(&file, &origin, 8, &entry(8)).unwrap());
        assert!(append_journal(&file, &origin, 7, &entry(7)).unwrap());
        // Not from the serial it ends at.
        assert!(!append_journal(&file, &origin, 7, &entry(7)).unwrap());
        // An entry a kill cut short is cut off before the next.
        let before = std::fs::read_to_string(&journal).unwrap();
        std::fs::write(&journal, format!("{before};; ixfr 8 9\n;; soa\nexam")).unwrap();
        assert!(append_journal(&file, &origin, 8, &entry(8)).unwrap());
        assert_eq!(
            std::fs::read_to_string(&journal).unwrap(),
            format!("{before}{}", entry(8))
        );
        // Past a quarter of the copy's 4,000 bytes: written whole instead.
        assert!(!append_journal(&file, &origin, 9, &entry(9).repeat(20)).unwrap());
        // A journal that ends at the zone served but follows another serial of the copy
        // (a power cut before its removal, the copy written whole at 9 since): not
        // appended to, whatever its end.
        let stale = std::fs::read_to_string(&journal).unwrap();
        std::fs::write(&file, copy.replace(" 7 1 1 1 1", " 9 1 1 1 1")).unwrap();
        assert!(!append_journal(&file, &origin, 9, &entry(9)).unwrap());
        assert_eq!(std::fs::read_to_string(&journal).unwrap(), stale);
        // Another zone's, or a file that is no journal: never written over nor removed.
        for other in [
            "; journal of zone other.test. after serial 9 of its copy\n",
            "keep me\n",
        ] {
            std::fs::write(&journal, other).unwrap();
            assert!(!append_journal(&file, &origin, 9, &entry(9)).unwrap());
            remove_journal(&file, &origin);
            assert_eq!(std::fs::read_to_string(&journal).unwrap(), other);
        }
        std::fs::write(&journal, journal::header(&origin, 9)).unwrap();
        remove_journal(&file, &origin);
        assert!(!journal.exists());
    }

    /// A journal unchanged for ten minutes goes into the copy at a check that finds it
    /// current; a younger one stays, as does the copy.
    #[tokio::test]
    async fn a_quiet_journal_is_written_into_the_copy_and_a_busy_one_kept() {
        let now = SystemTime::now();
        let minutes = |m: u64| now - std::time::Duration::from_secs(60 * m);
        assert!(fold_due(Some(minutes(10)), now));
        assert!(!fold_due(Some(minutes(9)), now));
        assert!(!fold_due(None, now));

        let dir = tempfile::tempdir().unwrap();
        let name = |n: &str| Name::from_ascii(n).unwrap();
        let (zone, held) = hosts_copy(&dir).await;
        let soa = SOA::new(
            name("ns.example.test."),
            name("h.example.test."),
            8,
            60,
            60,
            600,
            60,
        );
        let changes = Box::new(ixfr::Changes {
            soa: Record::from_rdata(name("example.test."), 60, RData::SOA(soa)),
            steps: vec![ixfr::Change {
                from: 7,
                to: 8,
                deleted: Vec::new(),
                added: vec![Record::from_rdata(
                    name("new.example.test."),
                    60,
                    RData::A(A::new(192, 0, 2, 1)),
                )],
            }],
        });
        let eight = keep(&zone, Making::Changed(held, changes), "p", &turn(1).await)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let journal = journal::path_of(&zone.file);
        assert!(journal.exists());
        // Changed a minute ago: kept.
        fold(&zone, eight.clone(), "p", &turn(1).await).await;
        assert!(journal.exists());
        assert_eq!(Zone::load(&zone.file).unwrap().serial(), 7);
        // Eleven minutes ago: the copy holds it, the journal gone.
        std::fs::File::options()
            .append(true)
            .open(&journal)
            .unwrap()
            .set_modified(minutes(11))
            .unwrap();
        fold(&zone, eight.clone(), "p", &turn(1).await).await;
        assert!(!journal.exists());
        assert_eq!(Zone::load(&zone.file).unwrap(), *eight);
    }

    /// From a tester: an empty journal (made, then the process killed) is begun again; a
    /// symlink is never written through; what is not text after whole entries is cut off.
    #[test]
    fn an_empty_journal_is_begun_a_symlink_never_followed_and_damage_cut_off() {
        let (dir, origin, file, journal) = journal_dir();
        let copy = format!(
            "; zone example.test. transferred\nexample.test. 60 IN SOA a. b. 7 1 1 1 1\n{}",
            "; filler\n".repeat(450)
        );
        std::fs::write(&file, &copy).unwrap();

        std::fs::write(&journal, "").unwrap();
        assert!(append_journal(&file, &origin, 7, &entry(7)).unwrap());
        let begun = format!("{}{}", journal::header(&origin, 7), entry(7));
        assert_eq!(std::fs::read_to_string(&journal).unwrap(), begun);

        let mut damaged = begun.clone().into_bytes();
        damaged.extend_from_slice(b";; ixfr 8 9\nhost1.exa\xff\xfe");
        std::fs::write(&journal, &damaged).unwrap();
        assert!(append_journal(&file, &origin, 8, &entry(8)).unwrap());
        assert_eq!(
            std::fs::read_to_string(&journal).unwrap(),
            format!("{begun}{}", entry(8))
        );

        let elsewhere = dir.path().join("elsewhere.journal");
        std::fs::write(&elsewhere, journal::header(&origin, 7)).unwrap();
        std::fs::remove_file(&journal).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &journal).unwrap();
        assert!(!append_journal(&file, &origin, 7, &entry(7)).unwrap());
        assert_eq!(
            std::fs::read_to_string(&elsewhere).unwrap(),
            journal::header(&origin, 7)
        );
    }

    #[tokio::test]
    async fn a_zone_refused_names_its_record_by_its_place_not_by_a_line_of_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let name = |n: &str| Name::from_ascii(n).unwrap();
        let origin = name("example.test.");
        let zone = example_test(&dir, 10);
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
