//! Validators and preconditions over real sockets (RFC 9110 §8.8, §13): a strong `ETag`
//! that changes with the file, and `If-Match`, `If-None-Match`, `If-Unmodified-Since`,
//! `If-Modified-Since` and `If-Range` evaluated in the §13.2.2 order.

mod support;

use support::Server;
use weft_web::WebConfig;

fn site() -> (tempfile::TempDir, std::path::PathBuf, Server) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("public");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("digits.txt"), "0123456789").unwrap();
    let server = Server::start(WebConfig {
        root: Some(root.clone()),
        ..WebConfig::default()
    });
    (dir, root, server)
}

fn get(server: &Server, path: &str, extra: &str) -> support::Reply {
    server
        .connect()
        .request(&format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n"))
}

fn etag(server: &Server) -> String {
    let reply = server.get("/digits.txt");
    let tag = reply.header("etag").expect("an ETag").to_owned();
    assert!(
        tag.starts_with('"') && tag.ends_with('"') && tag.len() > 2,
        "a strong entity tag: {tag}"
    );
    tag
}

#[test]
fn a_file_has_a_strong_etag_that_changes_when_the_file_does() {
    let (_dir, root, server) = site();
    let first = etag(&server);
    assert_eq!(etag(&server), first, "stable while the file is unchanged");
    // Same size, rewritten in place: only the modification time tells.
    std::fs::write(root.join("digits.txt"), "9876543210").unwrap();
    let second = etag(&server);
    assert_ne!(second, first);
    // Replaced by rename with the same size and time: the inode tells.
    let mtime = std::fs::metadata(root.join("digits.txt"))
        .unwrap()
        .modified()
        .unwrap();
    std::fs::write(root.join("next.tmp"), "abcdefghij").unwrap();
    std::fs::File::options()
        .write(true)
        .open(root.join("next.tmp"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    std::fs::rename(root.join("next.tmp"), root.join("digits.txt")).unwrap();
    let third = etag(&server);
    assert_ne!(third, second);
    // Rewritten in place with the same size, its time put back (`cp -p`): the change
    // time, which no one can set, tells.
    let file = root.join("digits.txt");
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::fs::write(&file, "klmnopqrst").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_ne!(etag(&server), third);
}

#[test]
fn if_none_match_gets_304_with_the_validators_and_star_matches_any_file() {
    let (_dir, _root, server) = site();
    let tag = etag(&server);
    let hit = get(
        &server,
        "/digits.txt",
        &format!("If-None-Match: \"x\", {tag}\r\n"),
    );
    assert_eq!(hit.status, 304);
    assert_eq!(hit.header("etag"), Some(tag.as_str()));
    assert!(hit.header("last-modified").is_some());
    // Nothing else of the representation (RFC 9110 §15.4.5: SHOULD NOT).
    for name in ["content-type", "content-length", "accept-ranges"] {
        assert_eq!(hit.header(name), None, "{name}");
    }
    // Weak comparison for GET and HEAD (§13.1.2): W/ on the client's tag still matches.
    let weak = get(
        &server,
        "/digits.txt",
        &format!("If-None-Match: W/{tag}\r\n"),
    );
    assert_eq!(weak.status, 304);
    let star = get(&server, "/digits.txt", "If-None-Match: *\r\n");
    assert_eq!(star.status, 304);
    let miss = get(&server, "/digits.txt", "If-None-Match: \"other\"\r\n");
    assert_eq!((miss.status, miss.text().as_str()), (200, "0123456789"));
}

#[test]
fn if_none_match_wins_over_if_modified_since() {
    let (_dir, _root, server) = site();
    let lm = server
        .get("/digits.txt")
        .header("last-modified")
        .unwrap()
        .to_owned();
    // §13.2.2 step 4: If-Modified-Since is evaluated only without If-None-Match.
    let reply = get(
        &server,
        "/digits.txt",
        &format!("If-None-Match: \"other\"\r\nIf-Modified-Since: {lm}\r\n"),
    );
    assert_eq!(reply.status, 200);
}

#[test]
fn if_match_compares_strongly_and_fails_with_412() {
    let (_dir, _root, server) = site();
    let tag = etag(&server);
    let ok = get(
        &server,
        "/digits.txt",
        &format!("If-Match: \"a\", {tag}\r\n"),
    );
    assert_eq!(ok.status, 200);
    assert_eq!(get(&server, "/digits.txt", "If-Match: *\r\n").status, 200);
    let weak = get(&server, "/digits.txt", &format!("If-Match: W/{tag}\r\n"));
    assert_eq!(weak.status, 412, "a weak tag never matches strongly");
    let other = get(&server, "/digits.txt", "If-Match: \"other\"\r\n");
    assert_eq!(other.status, 412);
    // If-Match comes first: a failing one is 412 even when If-None-Match would say 304.
    let both = get(
        &server,
        "/digits.txt",
        &format!("If-Match: \"other\"\r\nIf-None-Match: {tag}\r\n"),
    );
    assert_eq!(both.status, 412);
    assert_eq!(server.get("/missing").status, 404);
    let absent = get(&server, "/missing.txt", "If-Match: *\r\n");
    assert_eq!(absent.status, 404);
}

#[test]
fn if_unmodified_since_fails_with_412_when_the_file_is_newer() {
    let (_dir, _root, server) = site();
    let lm = server
        .get("/digits.txt")
        .header("last-modified")
        .unwrap()
        .to_owned();
    let old = "If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n";
    assert_eq!(get(&server, "/digits.txt", old).status, 412);
    let same = get(
        &server,
        "/digits.txt",
        &format!("If-Unmodified-Since: {lm}\r\n"),
    );
    assert_eq!(same.status, 200);
    // Ignored when If-Match is present (§13.1.4), and a bad date is ignored.
    let tag = etag(&server);
    let with_match = get(&server, "/digits.txt", &format!("If-Match: {tag}\r\n{old}"));
    assert_eq!(with_match.status, 200);
    let junk = get(&server, "/digits.txt", "If-Unmodified-Since: yesterday\r\n");
    assert_eq!(junk.status, 200);
}

#[test]
fn if_range_with_the_current_etag_gets_the_range_and_a_stale_one_the_whole_file() {
    let (_dir, _root, server) = site();
    let tag = etag(&server);
    let fresh = get(
        &server,
        "/digits.txt",
        &format!("Range: bytes=2-4\r\nIf-Range: {tag}\r\n"),
    );
    assert_eq!((fresh.status, fresh.text().as_str()), (206, "234"));
    let stale = get(
        &server,
        "/digits.txt",
        "Range: bytes=2-4\r\nIf-Range: \"old\"\r\n",
    );
    assert_eq!((stale.status, stale.text().as_str()), (200, "0123456789"));
    let weak = get(
        &server,
        "/digits.txt",
        &format!("Range: bytes=2-4\r\nIf-Range: W/{tag}\r\n"),
    );
    assert_eq!(weak.status, 200, "If-Range compares strongly");
    // Two validators are no condition that holds (the first matched, and was used).
    let two = get(
        &server,
        "/digits.txt",
        &format!("Range: bytes=2-4\r\nIf-Range: {tag}\r\nIf-Range: \"old\"\r\n"),
    );
    assert_eq!((two.status, two.text().as_str()), (200, "0123456789"));
}

/// Sets the modification time of `path`.
fn touch(path: &std::path::Path, at: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(at)
        .unwrap();
}

/// A date in `If-Range` is a validator only when it is strong (RFC 9110 §13.1.5, §8.8.2.2):
/// a file whose time is an hour past gets its range for its `Last-Modified`. One dated in
/// the future (a clock set wrong where it was made, or a deploy copying times from a
/// host ahead) has no date that can be reasonably and consistently determined (§8.8.2.1):
/// sent as modified now, every version written within a second would share it, and a
/// client holding one version would get a range of another, or keep it as not modified.
/// It gets no `Last-Modified`, and dates in its requests' conditions are not compared
/// with anything: its `ETag` serves instead.
#[test]
fn if_range_with_a_date_holds_only_for_a_strong_one() {
    use std::time::{Duration, SystemTime};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("public");
    std::fs::create_dir_all(&root).unwrap();
    let past = root.join("past.txt");
    let future = root.join("future.txt");
    for file in [&past, &future] {
        std::fs::write(file, "0123456789").unwrap();
    }
    touch(&past, SystemTime::now() - Duration::from_secs(3600));
    touch(&future, SystemTime::now() + Duration::from_secs(3600));
    let server = Server::start(WebConfig {
        root: Some(root),
        ..WebConfig::default()
    });

    let whole = server.get("/past.txt");
    let lm = whole.header("last-modified").unwrap().to_owned();
    let ranged = get(
        &server,
        "/past.txt",
        &format!("Range: bytes=2-4\r\nIf-Range: {lm}\r\n"),
    );
    assert_eq!((ranged.status, ranged.text().as_str()), (206, "234"));
    // The same instant in the obsolete forms a recipient MUST read (RFC 9110 §5.6.7):
    // RFC 850 and asctime; another instant is no match.
    let when = httpdate::parse_http_date(&lm).unwrap();
    let (_, day, month, year, time) = {
        let p: Vec<&str> = lm.split(' ').collect();
        (p[0], p[1], p[2], p[3], p[4])
    };
    let weekday = httpdate::fmt_http_date(when)[..3].to_owned();
    let long_day = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ]
    .into_iter()
    .find(|d| d.starts_with(&weekday))
    .unwrap();
    let rfc850 = format!("{long_day}, {day}-{month}-{} {time} GMT", &year[2..]);
    let asctime = format!(
        "{weekday} {month} {:>2} {time} {year}",
        day.trim_start_matches('0')
    );
    for date in [rfc850, asctime] {
        assert_eq!(httpdate::parse_http_date(&date).unwrap(), when, "{date}");
        let ranged = get(
            &server,
            "/past.txt",
            &format!("Range: bytes=2-4\r\nIf-Range: {date}\r\n"),
        );
        assert_eq!(
            (ranged.status, ranged.text().as_str()),
            (206, "234"),
            "{date}"
        );
    }
    let other = httpdate::fmt_http_date(when - Duration::from_secs(1));
    let whole_again = get(
        &server,
        "/past.txt",
        &format!("Range: bytes=2-4\r\nIf-Range: {other}\r\n"),
    );
    assert_eq!(whole_again.status, 200);

    let whole = server.get("/future.txt");
    assert_eq!(whole.header("last-modified"), None, "no date to trust");
    let date = whole.header("date").expect("Date").to_owned();
    for condition in [
        format!("Range: bytes=2-4\r\nIf-Range: {date}\r\n"),
        format!("If-Modified-Since: {date}\r\n"),
        "If-Modified-Since: Fri, 31 Dec 9999 23:59:59 GMT\r\n".to_owned(),
    ] {
        let reply = get(&server, "/future.txt", &condition);
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (200, "0123456789"),
            "{condition}"
        );
    }
    let tag = whole.header("etag").unwrap();
    let ranged = get(
        &server,
        "/future.txt",
        &format!("Range: bytes=2-4\r\nIf-Range: {tag}\r\n"),
    );
    assert_eq!((ranged.status, ranged.text().as_str()), (206, "234"));
}

/// A file dated a moment ahead gets its `Last-Modified` once that moment has passed, from
/// the same cached lookup: its facts were made once, without a date, and kept so until
/// the file changed or left the cache.
#[test]
fn a_file_dated_ahead_gets_its_last_modified_once_its_date_has_passed() {
    use std::time::{Duration, SystemTime};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("public");
    std::fs::create_dir_all(&root).unwrap();
    let soon = root.join("soon.txt");
    std::fs::write(&soon, "0123456789").unwrap();
    touch(&soon, SystemTime::now() + Duration::from_secs(2));
    let server = Server::start(WebConfig {
        root: Some(root),
        ..WebConfig::default()
    });
    assert_eq!(server.get("/soon.txt").header("last-modified"), None);
    std::thread::sleep(Duration::from_millis(3100));
    let later = server.get("/soon.txt");
    assert!(
        later.header("last-modified").is_some(),
        "{:?}",
        later.headers
    );
}
