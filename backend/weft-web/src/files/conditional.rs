//! Validators and preconditions (RFC 9110 §8.8, §13).
//!
//! The entity tag of a file on disk is made from what the one `stat` of the request
//! already returned: inode, size and change time to the nanosecond. Hashing the content
//! would cost a read of the whole file per request (or a cache to keep in step with the
//! disk); the stat costs nothing more, and every way a file changes moves at least one of
//! the three: a write moves the change time (which, unlike the modification time, no
//! program can set back), a replace by rename moves the inode. The tag is strong
//! (§8.8.1): two files with the same three are the same bytes, as far as a filesystem can
//! tell, as nginx and Apache rely on with the modification time.

use std::time::SystemTime;

use http::header::{self, HeaderMap, HeaderName};

/// A strong entity tag, quotes included.
pub(super) type Tag = String;

/// The tag of a file on disk, from its metadata: its inode (a file replaced by a rename
/// is another), its size and its change time. The change time rather than the
/// modification time: a program may set the latter back (`cp -p`, `rsync -t`, `tar`) over
/// other bytes of the same size; the former moves with every write and no one can set it.
pub(super) fn disk_tag(meta: &std::fs::Metadata) -> Tag {
    use std::os::unix::fs::MetadataExt;
    format!(
        "\"{:x}-{:x}-{:x}.{:x}\"",
        meta.ino(),
        meta.len(),
        meta.ctime(),
        meta.ctime_nsec()
    )
}

/// The tag of a file held in memory: its set's time of creation and its length (the
/// contents of a set never change while it exists).
pub(super) fn memory_tag(len: u64, made: SystemTime) -> Tag {
    let since = made
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "\"m{:x}-{:x}.{:x}\"",
        len,
        since.as_secs(),
        since.subsec_nanos()
    )
}

/// The tag of a page made here (a directory's listing): a hash of its bytes, so the same
/// page has the same tag while its directory does not change, and another page another.
pub(super) fn page_tag(page: &[u8]) -> Tag {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    // The standard hasher with its fixed keys: the same bytes give the same tag from one
    // run, and one build, to the next.
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(page);
    format!("\"l{:x}-{hash:x}\"", page.len())
}

/// `tag` with `suffix` inside the quotes: the tag of the same file in a content coding,
/// which is other bytes and so needs another strong tag (§8.8.3.3).
pub(super) fn coded(tag: &str, suffix: &str) -> Tag {
    let bare = tag.strip_suffix('"').unwrap_or(tag);
    format!("{bare}-{suffix}\"")
}

/// What the preconditions say to do with a GET or HEAD.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Answer normally.
    Proceed,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// Evaluates the preconditions of a GET or HEAD in the order of RFC 9110 §13.2.2
/// against the selected representation's `tag` and modification time.
pub(super) fn evaluate(headers: &HeaderMap, tag: &str, modified: Option<SystemTime>) -> Verdict {
    // Step 1; step 2 only without If-Match (§13.1.4: a recipient MUST ignore
    // If-Unmodified-Since when If-Match is present).
    if let Some(matched) = list_matches(headers, &header::IF_MATCH, tag, Comparison::Strong) {
        if !matched {
            return Verdict::Failed;
        }
    } else if let (Some(since), Some(modified)) =
        (date(headers, &header::IF_UNMODIFIED_SINCE), modified)
        && modified > since
    {
        return Verdict::Failed;
    }
    // Step 3 with the weak comparison GET and HEAD use (§13.1.2); step 4 only without
    // If-None-Match.
    if let Some(matched) = list_matches(headers, &header::IF_NONE_MATCH, tag, Comparison::Weak) {
        if matched {
            return Verdict::NotModified;
        }
    } else if let (Some(since), Some(modified)) =
        (date(headers, &header::IF_MODIFIED_SINCE), modified)
        && modified <= since
    {
        return Verdict::NotModified;
    }
    Verdict::Proceed
}

/// Whether a `Range` applies under `If-Range` (§13.1.5): without one, always; with an
/// entity tag, if it matches strongly; with a date, if it is exactly `last_modified` and
/// a strong validator: the file's time (`modified`, whole seconds) lies in a second that
/// is over, so it cannot change again within the second the date names (§8.8.2.2).
pub(super) fn if_range_holds(
    headers: &HeaderMap,
    tag: &str,
    last_modified: Option<&str>,
    modified: Option<std::time::SystemTime>,
) -> bool {
    let mut values = headers.get_all(header::IF_RANGE).iter();
    let Some(value) = values.next() else {
        return true;
    };
    // One validator or none (§13.1.5 defines no list): two fields are not a condition
    // that holds, and the whole file is sent, as for a validator that does not match.
    if values.next().is_some() {
        return false;
    }
    let Ok(value) = value.to_str() else {
        return false;
    };
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        return value == tag;
    }
    let strong = modified
        .is_some_and(|m| m + std::time::Duration::from_secs(1) <= std::time::SystemTime::now());
    // The same instant in any of the three forms of an HTTP-date, which a recipient MUST
    // read (§5.6.7): an exact match of the `Last-Modified` sent, as §13.1.5 asks.
    let same = |lm: &str| {
        value == lm
            || matches!(
                (http_date(value), http_date(lm)),
                (Some(a), Some(b)) if a == b
            )
    };
    strong && last_modified.is_some_and(same)
}

#[derive(Clone, Copy)]
enum Comparison {
    Strong,
    Weak,
}

/// Whether `tag` is in the entity-tag lists of `name` (`*` matches any current file);
/// `None` when the field is absent.
fn list_matches(
    headers: &HeaderMap,
    name: &HeaderName,
    tag: &str,
    how: Comparison,
) -> Option<bool> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    Some(values.any(|value| {
        let Ok(value) = value.to_str() else {
            return false;
        };
        if value.trim() == "*" {
            return true;
        }
        entity_tags(value).any(|(weak, opaque)| match how {
            Comparison::Strong => !weak && opaque == tag,
            Comparison::Weak => opaque == tag,
        })
    }))
}

/// The entity tags of a list (`W/"a", "b"`), as (weak, opaque tag with quotes). A tag may
/// hold a comma, so the list is read tag by tag rather than split; reading stops at the
/// first thing that is not a tag.
fn entity_tags(list: &str) -> impl Iterator<Item = (bool, &str)> {
    let mut rest = list;
    std::iter::from_fn(move || {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        let (weak, after) = match rest.strip_prefix("W/") {
            Some(after) => (true, after),
            None => (false, rest),
        };
        let inner = after.strip_prefix('"')?;
        let end = inner.find('"')?;
        let opaque = &after[..end + 2];
        rest = &inner[end + 1..];
        Some((weak, opaque))
    })
}

/// An HTTP date from `name`, ignored (`None`) when invalid (§13.1.3, §13.1.4).
/// The date of field `name`; `None` when it is missing, not an HTTP-date, or sent more
/// than once (RFC 9110 §13.1.3, §13.1.4: a recipient MUST ignore the field when its value
/// has more than one member).
fn date(headers: &HeaderMap, name: &HeaderName) -> Option<SystemTime> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?.to_str().ok()?;
    if values.next().is_some() {
        return None;
    }
    http_date(value)
}

/// An HTTP-date in any of its three forms (RFC 9110 §5.6.7). The obsolete RFC 850 form
/// writes two digits of the year, which a recipient MUST read as the most recent year
/// with those digits that is not more than 50 years ahead (`06-Nov-75` is 2075 in 2026;
/// the date parser's fixed pivot made it 1975).
fn http_date(value: &str) -> Option<SystemTime> {
    rfc850_date(value).or_else(|| httpdate::parse_http_date(value).ok())
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`, read by §5.6.7's rule for its year; `None` for any
/// other form.
fn rfc850_date(value: &str) -> Option<SystemTime> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (weekday, rest) = value.split_once(", ")?;
    if weekday.len() <= 3 || !weekday.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let (date, rest) = rest.split_once(' ')?;
    let time = rest.strip_suffix(" GMT")?;
    let two = |s: &str| {
        (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<i64>().ok())
            .flatten()
    };
    let mut parts = date.split('-');
    let (day, month, yy) = (parts.next()?, parts.next()?, parts.next()?);
    let (day, yy) = (two(day)?, two(yy)?);
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let mut clock = time.split(':');
    let (h, m, sec) = (
        two(clock.next()?)?,
        two(clock.next()?)?,
        two(clock.next()?)?,
    );
    if parts.next().is_some() || clock.next().is_some() || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let now = httpdate::HttpDate::from(SystemTime::now()).to_string();
    let this_year: i64 = now.get(12..16)?.parse().ok()?;
    let mut year = this_year - this_year % 100 + yy;
    if year > this_year + 50 {
        year -= 100;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if day < 1 || day > days_in[month as usize - 1] {
        return None;
    }
    // Days from 1970-01-01 to the date (the civil calendar's count, by March years).
    let (y, mo) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let of_era = y - era * 400;
    let of_year = (153 * mo + 2) / 5 + day - 1;
    let of_cycle = of_era * 365 + of_era / 4 - of_era / 100 + of_year;
    let days = era * 146_097 + of_cycle - 719_468;
    let secs = days * 86_400 + h * 3600 + m * 60 + sec.min(59);
    let since = std::time::Duration::from_secs(secs.unsigned_abs());
    match secs >= 0 {
        true => SystemTime::UNIX_EPOCH.checked_add(since),
        false => SystemTime::UNIX_EPOCH.checked_sub(since),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9110 §5.6.7: two digits of a year are the most recent year with them that is
    /// not more than 50 years ahead; the three forms of one instant agree.
    #[test]
    fn an_rfc_850_year_is_the_latest_not_more_than_fifty_years_ahead() {
        let this_year: i64 = httpdate::HttpDate::from(SystemTime::now()).to_string()[12..16]
            .parse()
            .unwrap();
        let year_of = |t: SystemTime| -> i64 {
            httpdate::HttpDate::from(t).to_string()[12..16]
                .parse()
                .unwrap()
        };
        for ahead in [0, 1, 49, 50, 51, 99] {
            let year = this_year + ahead;
            let yy = year % 100;
            let expected = if ahead > 50 { year - 100 } else { year };
            let said = format!("Thursday, 06-Nov-{yy:02} 08:49:37 GMT");
            assert_eq!(year_of(http_date(&said).unwrap()), expected, "{said}");
        }
        assert_eq!(
            http_date("Sunday, 06-Nov-94 08:49:37 GMT"),
            http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(
            http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            http_date("Sun Nov  6 08:49:37 1994"),
        );
        for bad in [
            "Sunday, 31-Feb-94 08:49:37 GMT",
            "Sunday, 06-Nov-94 24:49:37 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 UTC",
        ] {
            assert_eq!(http_date(bad), None, "{bad}");
        }
    }
    use http::HeaderValue;

    #[test]
    fn entity_tag_lists_are_read_tag_by_tag() {
        let tags: Vec<_> = entity_tags(r#"W/"a", "b,c" ,"d""#).collect();
        assert_eq!(
            tags,
            [(true, "\"a\""), (false, "\"b,c\""), (false, "\"d\"")]
        );
        assert_eq!(entity_tags("junk").count(), 0);
        assert_eq!(entity_tags(r#""open"#).count(), 0);
    }

    #[test]
    fn a_date_sent_twice_is_ignored() {
        let mut headers = HeaderMap::new();
        let (old, new) = (
            "Tue, 05 Dec 2000 10:00:00 GMT",
            "Sat, 05 Dec 2026 10:00:00 GMT",
        );
        headers.append(header::IF_UNMODIFIED_SINCE, HeaderValue::from_static(old));
        let modified = httpdate::parse_http_date("Wed, 01 Jan 2020 00:00:00 GMT").ok();
        assert_eq!(evaluate(&headers, "\"t\"", modified), Verdict::Failed);
        headers.append(header::IF_UNMODIFIED_SINCE, HeaderValue::from_static(new));
        assert_eq!(evaluate(&headers, "\"t\"", modified), Verdict::Proceed);
        let mut headers = HeaderMap::new();
        headers.append(header::IF_MODIFIED_SINCE, HeaderValue::from_static(new));
        assert_eq!(evaluate(&headers, "\"t\"", modified), Verdict::NotModified);
        headers.append(header::IF_MODIFIED_SINCE, HeaderValue::from_static(new));
        assert_eq!(evaluate(&headers, "\"t\"", modified), Verdict::Proceed);
    }

    #[test]
    fn a_coded_tag_keeps_its_quotes() {
        assert_eq!(coded("\"1-2\"", "br"), "\"1-2-br\"");
    }
}
