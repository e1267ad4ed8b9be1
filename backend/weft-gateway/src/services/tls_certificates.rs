//! The `tls_certificates` key of http services: further certificates for the service's
//! `ssl:` listeners, each served to clients that ask for one of its names by SNI
//! ([`weft::net::SniCertificate`]).
//!
//! ```toml
//! listen = "ssl:8443:privateKey=default.key:certKey=default.pem"
//! tls_certificates = [
//!     { names = ["a.example", "www.a.example"], cert = "a.pem", key = "a.key" },
//! ]
//! ```
//!
//! The `ssl:` endpoint's own certificate stays the default, for clients that send no name
//! or one no entry lists. Every file is loaded when the configuration is checked, as
//! listening loads it, so `weft check` refuses what `weft run` would.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use toml::Spanned;
use weft::net::{CertificateFacts, SniCertificate, TlsError};

use crate::config::ConfigError;
use crate::config::validate::ServiceCtx;

/// Entries a service may list.
pub(crate) const MAX_CERTIFICATES: usize = 64;

/// One entry of `tls_certificates` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTlsCertificate {
    names: Spanned<Vec<Spanned<String>>>,
    cert: Spanned<String>,
    key: Spanned<String>,
}

/// The `tls_certificates` of a service, loaded once to check them; empty if absent.
pub(crate) fn validate(ctx: &ServiceCtx<'_>) -> Result<Vec<SniCertificate>, ConfigError> {
    let Some(list) = &ctx.raw.tls_certificates else {
        return Ok(Vec::new());
    };
    if !ctx.listen.iter().any(|(e, _)| e.starts_with("ssl:")) {
        return Err(ctx.error(
            list.span(),
            "tls_certificates",
            "is served on ssl: listeners, and this service has none",
        ));
    }
    if list.get_ref().len() > MAX_CERTIFICATES {
        return Err(ctx.error(
            list.span(),
            "tls_certificates",
            format!(
                "at most {MAX_CERTIFICATES} entries, got {}",
                list.get_ref().len()
            ),
        ));
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut certificates = Vec::with_capacity(list.get_ref().len());
    for (i, entry) in list.get_ref().iter().enumerate() {
        let entry = entry.get_ref();
        let at = format!("tls_certificates[{i}]");
        if entry.names.get_ref().is_empty() {
            return Err(ctx.error(
                entry.names.span(),
                &format!("{at}.names"),
                "must list at least one name, such as names = [\"a.example\"]",
            ));
        }
        let mut names = Vec::with_capacity(entry.names.get_ref().len());
        for (j, name) in entry.names.get_ref().iter().enumerate() {
            let key = format!("{at}.names[{j}]");
            let lower = name.get_ref().to_ascii_lowercase();
            if let Err(why) = check_name(&lower) {
                return Err(ctx.error(name.span(), &key, format!("{:?} {why}", name.get_ref())));
            }
            if let Some(first) = seen.insert(lower.clone(), i) {
                return Err(ctx.error(
                    name.span(),
                    &key,
                    format!("{lower:?} is already listed by tls_certificates[{first}]"),
                ));
            }
            names.push(lower);
        }
        let (cert, key) = (
            PathBuf::from(entry.cert.get_ref()),
            PathBuf::from(entry.key.get_ref()),
        );
        let contents = weft::net::check_server_files(&cert, &key).map_err(|e| {
            let (span, field) = match &e {
                TlsError::Pem { path, .. } if *path == key => (entry.key.span(), "key"),
                TlsError::Pem { .. } => (entry.cert.span(), "cert"),
                _ => (entry.key.span(), "key"),
            };
            ctx.error(
                span,
                &format!("{at}.{field}"),
                format!("cannot load it: {e}"),
            )
        })?;
        // Valid files clients will refuse are said, not refused: a renewal may be on its way.
        if let Ok(facts) = CertificateFacts::read(&cert) {
            if let Some(warning) = validity_warning(&cert, &facts, SystemTime::now()) {
                ctx.warn(entry.cert.span(), &format!("{at}.cert"), warning);
            }
            for (j, name) in entry.names.get_ref().iter().enumerate() {
                if !facts.covers(name.get_ref()) {
                    ctx.warn(
                        name.span(),
                        &format!("{at}.names[{j}]"),
                        format!(
                            "{:?} is not a name of the certificate in {} ({}): clients asking \
                             for it will refuse the handshake",
                            name.get_ref(),
                            cert.display(),
                            carried(&facts),
                        ),
                    );
                }
            }
        }
        certificates.push(SniCertificate {
            names,
            cert,
            key,
            contents,
        });
    }
    Ok(certificates)
}

/// Whether `name` (lowercased) is a DNS name a client can send by SNI: dot-separated
/// labels of letters, digits and inner hyphens, no wildcard, no IP address.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 253 {
        return Err("must be a DNS name of 1 to 253 characters");
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err("is an IP address; clients send only DNS names by SNI");
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !name.split('.').all(label_ok) {
        return Err("must be a DNS name: labels of letters, digits and inner hyphens, no wildcard");
    }
    Ok(())
}

/// A certificate this near its end is warned of.
const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// What is wrong with when `cert` is valid, at `now`: expired, not valid yet, or expiring
/// within [`EXPIRY_WARNING`]; `None` when nothing is.
pub(crate) fn validity_warning(
    cert: &Path,
    facts: &CertificateFacts,
    now: SystemTime,
) -> Option<String> {
    let date = |at: SystemTime| humantime::format_rfc3339_seconds(at).to_string();
    let cert = cert.display();
    if now > facts.not_after {
        Some(format!(
            "the certificate in {cert} expired at {}: clients refuse it",
            date(facts.not_after)
        ))
    } else if now < facts.not_before {
        Some(format!(
            "the certificate in {cert} is not valid before {}: clients refuse it until then",
            date(facts.not_before)
        ))
    } else if let Ok(left) = facts.not_after.duration_since(now)
        && left < EXPIRY_WARNING
    {
        let in_days = match left.as_secs() / 86_400 {
            0 => "in less than a day".to_owned(),
            1 => "in 1 day".to_owned(),
            days => format!("in {days} days"),
        };
        Some(format!(
            "the certificate in {cert} expires at {}, {in_days}",
            date(facts.not_after)
        ))
    } else {
        None
    }
}

/// The names a certificate carries, for a message.
fn carried(facts: &CertificateFacts) -> String {
    if facts.dns_names.is_empty() {
        "it carries no DNS name".to_owned()
    } else {
        format!("it carries {}", facts.dns_names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn names_are_dns_names() {
        assert!(check_name("a.example").is_ok());
        assert!(check_name("localhost").is_ok());
        for bad in [
            "",
            "*.example",
            "a..example",
            "-a.example",
            "127.0.0.1",
            "a_b.example",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
