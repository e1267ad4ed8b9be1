//! Byte ranges (RFC 9110 §14): one range as a plain 206, several as
//! `multipart/byteranges` (§14.6). A peer controls how many ranges it asks for, so at
//! most [`MAX_RANGES`] are served; more, or ranges that overlap (§14.2 lets a server
//! ignore them: they serve only to make it send the same bytes many times), get the
//! whole file instead.

use std::hash::{BuildHasher, Hasher};

use bytes::{BufMut, Bytes, BytesMut};

/// Most ranges served in one response.
pub(super) const MAX_RANGES: usize = 16;

/// What a `Range` header asks for, against a file of a given length.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ranges {
    /// Not a byte range set, or not well formed: the header is ignored (§14.2).
    Ignored,
    /// More than [`MAX_RANGES`], or overlapping: the whole file, and counted.
    Refused,
    /// None of the ranges lies in the file: 416.
    Unsatisfiable,
    /// The satisfiable ranges, inclusive, in the order asked for.
    Parts(Vec<(u64, u64)>),
}

/// Reads a `Range` header value for a file of `len` bytes.
pub(super) fn parse(spec: &str, len: u64) -> Ranges {
    let spec = spec.trim();
    let Some(set) = spec
        .get(..6)
        .filter(|unit| unit.eq_ignore_ascii_case("bytes="))
        .map(|_| &spec[6..])
    else {
        return Ranges::Ignored;
    };
    let mut parts = Vec::new();
    let mut asked = 0;
    for element in set.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        asked += 1;
        if asked > MAX_RANGES {
            return Ranges::Refused;
        }
        match one(element, len) {
            Ok(Some(range)) => parts.push(range),
            Ok(None) => {}
            Err(()) => return Ranges::Ignored,
        }
    }
    if asked == 0 {
        return Ranges::Ignored;
    }
    if parts.is_empty() {
        return Ranges::Unsatisfiable;
    }
    let mut sorted = parts.clone();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[1].0 <= w[0].1) {
        return Ranges::Refused;
    }
    Ranges::Parts(parts)
}

/// One range spec as inclusive offsets; `Ok(None)` when it lies outside the file, `Err`
/// when it is not a range spec, or one no 206 can answer: either way the header is
/// ignored.
fn one(element: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let (first, last) = element.split_once('-').ok_or(())?;
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
        // Digits too many for u64 are past any file's end.
        Ok(s.parse::<u64>().unwrap_or(u64::MAX))
    };
    if first.is_empty() {
        // A suffix: the last n bytes; `-0` has none (§14.1.1: unsatisfiable).
        let n = number(last)?;
        if n == 0 {
            return Ok(None);
        }
        // Satisfiable in an empty file too (§14.1.1: the whole representation is used),
        // yet no `Content-Range` can name its bytes: the header is ignored and the empty
        // file goes whole with 200, as nginx answers.
        if len == 0 {
            return Err(());
        }
        return Ok(Some((len.saturating_sub(n), len - 1)));
    }
    let start = number(first)?;
    let end = if last.is_empty() {
        u64::MAX
    } else {
        number(last)?
    };
    if end < start {
        return Err(());
    }
    if start >= len {
        return Ok(None);
    }
    Ok(Some((start, end.min(len - 1))))
}

/// The framing of a `multipart/byteranges` body: what goes before each part and after
/// the last, with a boundary no file is likely to contain.
pub(super) struct Multipart {
    /// The boundary, for the `Content-Type`.
    pub(super) boundary: String,
    /// Before each part: its delimiter and headers.
    pub(super) heads: Vec<Bytes>,
    /// After the last part: the close delimiter.
    pub(super) tail: Bytes,
}

impl Multipart {
    pub(super) fn new(parts: &[(u64, u64)], len: u64, content_type: &str) -> Self {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let boundary = format!("weft-{random:016x}");
        let heads = parts
            .iter()
            .enumerate()
            .map(|(i, (start, end))| {
                let crlf = if i == 0 { "" } else { "\r\n" };
                Bytes::from(format!(
                    "{crlf}--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {start}-{end}/{len}\r\n\r\n"
                ))
            })
            .collect();
        let tail = Bytes::from(format!("\r\n--{boundary}--\r\n"));
        Self {
            boundary,
            heads,
            tail,
        }
    }

    /// The whole body's length, for `Content-Length`.
    pub(super) fn len(&self, parts: &[(u64, u64)]) -> u64 {
        let framing: usize = self.heads.iter().map(Bytes::len).sum::<usize>() + self.tail.len();
        let data: u64 = parts.iter().map(|(s, e)| e - s + 1).sum();
        framing as u64 + data
    }

    /// The body, from the whole file in memory.
    pub(super) fn assemble(&self, parts: &[(u64, u64)], file: &Bytes) -> Bytes {
        let mut out = BytesMut::with_capacity(usize::try_from(self.len(parts)).unwrap_or(0));
        for (head, (start, end)) in self.heads.iter().zip(parts) {
            out.put_slice(head);
            let (s, e) = (to_usize(*start), to_usize(*end).saturating_add(1));
            out.put_slice(&file[s.min(file.len())..e.min(file.len())]);
        }
        out.put_slice(&self.tail);
        out.freeze()
    }
}

pub(super) fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(spec: &str, len: u64) -> Ranges {
        parse(spec, len)
    }

    #[test]
    fn byte_ranges_cover_the_three_forms() {
        assert_eq!(parts("bytes=0-4", 10), Ranges::Parts(vec![(0, 4)]));
        assert_eq!(parts("bytes=5-", 10), Ranges::Parts(vec![(5, 9)]));
        assert_eq!(parts("bytes=-3", 10), Ranges::Parts(vec![(7, 9)]));
        assert_eq!(parts("bytes=-30", 10), Ranges::Parts(vec![(0, 9)]));
        assert_eq!(parts("bytes=8-100", 10), Ranges::Parts(vec![(8, 9)]));
        assert_eq!(
            parts("Bytes=1-1, 3-3", 10),
            Ranges::Parts(vec![(1, 1), (3, 3)])
        );
        let huge = "bytes=0-99999999999999999999999";
        assert_eq!(parts(huge, 10), Ranges::Parts(vec![(0, 9)]));
    }

    #[test]
    fn unsatisfiable_ignored_and_refused_ranges_differ() {
        assert_eq!(parts("bytes=10-", 10), Ranges::Unsatisfiable);
        assert_eq!(parts("bytes=-0", 10), Ranges::Unsatisfiable);
        assert_eq!(parts("bytes=0-", 0), Ranges::Unsatisfiable);
        assert_eq!(parts("bytes=-1", 0), Ranges::Ignored);
        assert_eq!(parts("bytes=-0", 0), Ranges::Unsatisfiable);
        assert_eq!(parts("items=0-1", 10), Ranges::Ignored);
        assert_eq!(parts("bytes=5-2", 10), Ranges::Ignored);
        assert_eq!(parts("bytes=x-", 10), Ranges::Ignored);
        assert_eq!(parts("bytes=,", 10), Ranges::Ignored);
        assert_eq!(parts("bytes=0-5,5-6", 10), Ranges::Refused);
        let many = (0..=MAX_RANGES)
            .map(|i| format!("{i}-{i}"))
            .collect::<Vec<_>>();
        assert_eq!(
            parts(&format!("bytes={}", many.join(",")), 100),
            Ranges::Refused
        );
    }

    #[test]
    fn a_multipart_body_is_as_long_as_it_says() {
        let parts = [(0, 1), (4, 5)];
        let m = Multipart::new(&parts, 10, "text/plain");
        let body = m.assemble(&parts, &Bytes::from_static(b"0123456789"));
        assert_eq!(body.len() as u64, m.len(&parts));
        assert!(body.starts_with(format!("--{}\r\n", m.boundary).as_bytes()));
    }
}
