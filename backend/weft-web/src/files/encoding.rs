//! Content codings (RFC 9110 §8.4, §12.5.3): which one a client prefers, a precompressed
//! sibling (`app.js.br`, `app.js.gz`) when there is one, and gzip or brotli made on the
//! fly otherwise.
//!
//! `Accept-Encoding` is read up to [`MAX_CODINGS`] list members: a client needs a handful,
//! and a peer must not make every request walk a header-sized list.

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};

use http::header::{self, HeaderMap};

use crate::headers::list_members;

/// List members of `Accept-Encoding` read at most, over all its lines.
pub(super) const MAX_CODINGS: usize = 16;

/// Brotli quality for compression on the fly: the fast end, about gzip's speed with a
/// smaller result; precompressed siblings are where the best quality belongs.
const BROTLI_QUALITY: u32 = 5;
/// Brotli window (log2 bytes).
const BROTLI_WINDOW: u32 = 22;

/// On-the-fly compressions running at once in the process. Each holds up to the service's
/// `max_bytes` of input and its output on a blocking thread, so a burst of requests for
/// large compressible files must not take the whole blocking pool and its memory: over
/// the bound a file goes out as it is (still correct: `Vary` is sent either way).
pub(super) const MAX_COMPRESSIONS: usize = 8;

/// How many [`Slot`]s are held.
static COMPRESSING: AtomicUsize = AtomicUsize::new(0);

/// The right to run one compression on the fly, held until it is done (by the blocking
/// task itself, so a client that leaves does not free it early).
#[derive(Debug)]
pub(super) struct Slot(());

impl Slot {
    /// A free slot, or `None` when [`MAX_COMPRESSIONS`] are running.
    pub(super) fn take() -> Option<Self> {
        COMPRESSING
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_COMPRESSIONS).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        COMPRESSING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A content coding the service can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Coding {
    /// Brotli (RFC 7932).
    Br,
    /// gzip (RFC 1952).
    Gzip,
}

impl Coding {
    /// The `Content-Encoding` token.
    pub(super) fn token(self) -> &'static str {
        match self {
            Self::Br => "br",
            Self::Gzip => "gzip",
        }
    }

    /// The extension of a precompressed sibling, and the suffix of the coded tag.
    pub(super) fn extension(self) -> &'static str {
        match self {
            Self::Br => "br",
            Self::Gzip => "gz",
        }
    }

    /// `bytes` in this coding. Runs on the blocking pool: it is CPU work proportional to
    /// the file.
    pub(super) fn compress(self, bytes: &[u8]) -> io::Result<Vec<u8>> {
        let out = Vec::with_capacity(bytes.len() / 3);
        match self {
            Self::Gzip => {
                let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
                enc.write_all(bytes)?;
                enc.finish()
            }
            Self::Br => {
                let mut enc =
                    brotli::CompressorWriter::new(out, 4096, BROTLI_QUALITY, BROTLI_WINDOW);
                enc.write_all(bytes)?;
                enc.flush()?;
                Ok(enc.into_inner())
            }
        }
    }
}

/// The codings the client accepts, most preferred first (equal weights: brotli first,
/// it is smaller); empty when it accepts none or did not say.
pub(super) fn preferred(headers: &HeaderMap) -> Vec<Coding> {
    // Weights in thousandths (§12.4.2); `None` until named, then `*` fills in.
    let (mut br, mut gzip, mut star, mut identity) = (None, None, None, None);
    let members = list_members(headers, header::ACCEPT_ENCODING).take(MAX_CODINGS);
    for member in members {
        let mut params = member.split(';');
        let name = params.next().unwrap_or("").trim();
        let Some(q) = weight(params) else {
            continue;
        };
        if name.eq_ignore_ascii_case("br") {
            br = Some(q);
        } else if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(q);
        } else if name == "*" {
            star = Some(q);
        } else if name.eq_ignore_ascii_case("identity") {
            identity = Some(q);
        }
    }
    // A coding the client weighs below the file as it is (`identity`, named or through
    // `*`) is not its preference (§12.4.2); unnamed, `identity` is acceptable but not
    // preferred, and a coding it accepts wins, as ties do.
    let plain = identity.or(star).unwrap_or(0);
    let weigh = |named: Option<u16>| named.or(star).filter(|&q| q >= plain).unwrap_or(0);
    let br = weigh(br);
    let gzip = weigh(gzip);
    if br == 0 && gzip == 0 {
        // Most requests accept no coding (or send no Accept-Encoding): nothing allocated.
        return Vec::new();
    }
    let mut out = Vec::with_capacity(2);
    match (br > 0, gzip > 0) {
        (true, true) if gzip > br => out.extend([Coding::Gzip, Coding::Br]),
        (true, true) => out.extend([Coding::Br, Coding::Gzip]),
        (true, false) => out.push(Coding::Br),
        (false, true) => out.push(Coding::Gzip),
        (false, false) => {}
    }
    out
}

/// The `q` parameter in thousandths (1000 without one); `None` when it is malformed.
fn weight<'a>(params: impl Iterator<Item = &'a str>) -> Option<u16> {
    for param in params {
        let Some((key, value)) = param.split_once('=') else {
            continue;
        };
        if !key.trim().eq_ignore_ascii_case("q") {
            continue;
        }
        // qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
        let value = value.trim();
        let (whole, frac) = value.split_once('.').unwrap_or((value, ""));
        if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let thousandths = format!("{frac:0<3}").parse::<u16>().ok()?;
        return match whole {
            "0" => Some(thousandths),
            "1" if thousandths == 0 => Some(1000),
            _ => None,
        };
    }
    Some(1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn compressions_on_the_fly_are_bounded_and_a_finished_one_frees_its_slot() {
        let held: Vec<Slot> = std::iter::from_fn(Slot::take).take(100).collect();
        assert_eq!(held.len(), MAX_COMPRESSIONS);
        assert!(Slot::take().is_none());
        drop(held);
        assert!(Slot::take().is_some());
    }

    fn accept(value: &str) -> Vec<Coding> {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        preferred(&h)
    }

    #[test]
    fn weights_order_the_codings() {
        assert_eq!(accept("gzip, br"), [Coding::Br, Coding::Gzip]);
        assert_eq!(accept("br;q=0.5, gzip;q=0.8"), [Coding::Gzip, Coding::Br]);
        assert_eq!(accept("br;q=0, gzip"), [Coding::Gzip]);
        assert_eq!(accept("*;q=0.3, br;q=0"), [Coding::Gzip]);
        assert_eq!(accept("x-gzip"), [Coding::Gzip]);
        assert_eq!(accept("identity"), []);
        // The file as it is, when the client weighs it above a coding.
        assert_eq!(accept("identity, gzip;q=0.5"), []);
        assert_eq!(accept("*;q=0.5, identity"), []);
        assert_eq!(accept("gzip, identity;q=0.5"), [Coding::Gzip]);
        assert_eq!(accept("br;q=0.5, identity;q=0.5"), [Coding::Br]);
        assert_eq!(
            accept("identity;q=0.4, gzip;q=0.5, br;q=0.3"),
            [Coding::Gzip]
        );
        assert_eq!(accept("gzip;q=1.5, br;q=0.1234"), []);
        assert_eq!(accept("GZIP;Q=0.001"), [Coding::Gzip]);
        assert!(preferred(&HeaderMap::new()).is_empty());
    }

    #[test]
    fn codings_round_trip() {
        let text = b"hello hello hello hello hello".repeat(20);
        let gz = Coding::Gzip.compress(&text).unwrap();
        let mut back = Vec::new();
        io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut back).unwrap();
        assert_eq!(back, text);
        let br = Coding::Br.compress(&text).unwrap();
        let mut back = Vec::new();
        io::Read::read_to_end(&mut brotli::Decompressor::new(&br[..], 4096), &mut back).unwrap();
        assert_eq!(back, text);
    }
}
