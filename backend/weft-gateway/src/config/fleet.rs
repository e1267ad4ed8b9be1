//! What a gateway of a fleet says about itself: `[gateway] instance`, the name its history
//! rows carry, and `[store] url`, the PostgreSQL database the fleet's history shares.

use toml::Spanned;

use super::ConfigError;
use super::error::Locator;
use super::raw::RawConfig;
use super::validate::key;

/// The longest `[gateway] instance`, in bytes: a label on every history row.
pub const MAX_INSTANCE_LEN: usize = 64;

/// `[gateway] instance`, or the host name.
pub(super) fn instance(at: &Locator<'_>, raw: &RawConfig) -> Result<String, ConfigError> {
    Ok(match &raw.gateway.instance {
        Some(name) => {
            let err =
                |message: String| at.error(Some(name.span()), key("gateway.instance"), message);
            let text = name.get_ref();
            if text.is_empty() || text.len() > MAX_INSTANCE_LEN {
                return Err(err(format!(
                    "must be 1 to {MAX_INSTANCE_LEN} bytes, got {}",
                    text.len()
                )));
            }
            if let Some(bad) = text
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
            {
                return Err(err(format!(
                    "{bad:?} is not allowed: an instance name takes letters, digits, '.', '-' \
                     and '_'"
                )));
            }
            text.clone()
        }
        None => weft_store::default_instance(),
    })
}

/// `[store] url`: a `postgres://` URL the driver reads; `path` then has no meaning, and
/// a file giving both is refused.
pub(super) fn store_url(at: &Locator<'_>, raw: &RawConfig) -> Result<Option<String>, ConfigError> {
    let Some(url) = &raw.store.url else {
        return Ok(None);
    };
    let err = |message: String| at.error(Some(url.span()), key("store.url"), message);
    let text: &Spanned<String> = url;
    let text = text.get_ref();
    if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
        return Err(err(
            "must be a postgres:// URL (history in a file is `path`)".to_owned(),
        ));
    }
    if raw.store.path.is_some() {
        return Err(err(
            "give either `path` (a SQLite file) or `url` (a shared PostgreSQL database), \
             not both"
                .to_owned(),
        ));
    }
    weft_store::StoreOptions::check_url(text).map_err(|e| err(e.to_string()))?;
    Ok(Some(text.clone()))
}
