//! What `weft check` says of a signed zone a DNS service serves: what would make
//! validating resolvers find its answers bogus (weft serves a zone's signatures and
//! proofs; it does not make them).

use std::ops::Range;
use std::path::Path;
use std::time::{Duration, SystemTime};

use weft_names::Zone;

use crate::config::validate::ServiceCtx;

/// What `check` says of a signed zone that validators would find bogus: one with no NSEC
/// or NSEC3 chain (its denials cannot be proved), an NSEC3 chain with a salt or extra
/// iterations (RFC 9276), signatures not valid yet, or signatures that have expired or
/// expire within three days (weft serves a zone's signatures; it does not make them). The
/// three days are the dashboard's too (`weft-dashboard/src/dns.rs`, `EXPIRING`).
pub(crate) fn warnings(ctx: &ServiceCtx<'_>, span: &Range<usize>, path: &Path, zone: &Zone) {
    const SOON: Duration = Duration::from_secs(3 * 24 * 3600);
    const SKEW: Duration = Duration::from_secs(5 * 60);
    let file = path.display();
    let origin = zone.origin();
    if let Some(lacks) = zone.denial_missing() {
        ctx.warn(
            span.clone(),
            "zones",
            format!(
                "{file}: zone {origin} is signed (it holds RRSIG records), and its negative \
                 answers cannot be proved, so validating resolvers find them bogus: it {lacks}"
            ),
        );
    }
    // RFC 9276 section 3.1: no extra iterations and no salt, which buy nothing against an
    // attacker and cost every resolver; section 3.2 lets a validator treat a zone with
    // more iterations as insecure.
    if let Some((iterations, salt)) = zone.nsec3_parameters()
        && (iterations > 0 || !salt.is_empty())
    {
        let has = match (iterations, salt.len()) {
            (0, bytes) => format!("a salt of {bytes} bytes"),
            (n, 0) => format!("{n} extra iterations"),
            (n, bytes) => format!("{n} extra iterations and a salt of {bytes} bytes"),
        };
        ctx.warn(
            span.clone(),
            "zones",
            format!(
                "{file}: zone {origin}: its NSEC3 chain has {has}: RFC 9276 section 3.1 asks \
                 for no extra iterations and no salt (validators may treat iterations above 0 \
                 as insecure, section 3.2); sign it again so (dnssec-signzone: `-3 - -H 0`)"
            ),
        );
    }
    let now = SystemTime::now();
    // A signer's clock a little behind this one's is no fault: validators allow some skew
    // (Unbound's val-sig-skew-min, 3 minutes).
    if let Some((at, owner, rtype)) = zone
        .last_inception(now)
        .filter(|(at, _, _)| at.duration_since(now).is_ok_and(|ahead| ahead > SKEW))
    {
        let when = humantime::format_rfc3339_seconds(at);
        ctx.warn(
            span.clone(),
            "zones",
            format!(
                "{file}: zone {origin}: the signature of {owner} {rtype} is not valid until \
                 {when} (the last of the zone's to become valid): validating resolvers find an \
                 answer bogus until its signature is valid; check the signer's clock, or wait"
            ),
        );
    }
    if let Some((at, owner, rtype)) = zone.first_expiry() {
        let when = humantime::format_rfc3339_seconds(at);
        let said = match at.duration_since(now) {
            Err(_) => format!("expired at {when}"),
            Ok(left) if left < SOON => format!("expires at {when}, in less than three days"),
            Ok(_) => return,
        };
        ctx.warn(
            span.clone(),
            "zones",
            format!(
                "{file}: zone {origin}: the signature of {owner} {rtype} {said} (the first of \
                 the zone's to expire): validating resolvers find an answer bogus once its \
                 signature has expired; sign the zone again (weft serves a zone's signatures, it \
                 does not make them)"
            ),
        );
    }
}
