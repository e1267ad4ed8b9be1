//! `[inspect] notify`, `notify_per_minute` and `notify_queue`: where detections worth a
//! page are posted, how many a minute at most and how many wait at most.

use toml::Spanned;
use weft_inspector::{NotifyConfig, NotifyError};

use super::ConfigError;
use super::error::Locator;
use super::raw::RawInspect;
use super::validate::key;

/// The notification settings, `None` without a URL; the limits only beside one.
pub(super) fn notify(
    at: &Locator<'_>,
    raw: &RawInspect,
) -> Result<Option<NotifyConfig>, ConfigError> {
    let per_minute = limit(at, "notify_per_minute", raw.notify_per_minute.as_ref())?;
    let queue = limit(at, "notify_queue", raw.notify_queue.as_ref())?;
    let Some(url) = &raw.notify else {
        let stray = [
            ("notify_per_minute", &raw.notify_per_minute),
            ("notify_queue", &raw.notify_queue),
        ];
        if let Some((name, Some(n))) = stray.iter().find(|(_, n)| n.is_some()) {
            return Err(at.error(
                Some(n.span()),
                key(&format!("inspect.{name}")),
                "set only beside `notify`, the URL detections are posted to",
            ));
        }
        return Ok(None);
    };
    let mut config = NotifyConfig::new(url.get_ref())
        .map_err(|e| at.error(Some(url.span()), key("inspect.notify"), e.to_string()))?;
    if let Some(n) = per_minute {
        config.per_minute = n;
    }
    if let Some(n) = queue {
        config.queue = n as usize;
    }
    Ok(Some(config))
}

/// A limit key, checked to be within 1 to [`weft_inspector::MAX_NOTIFY`].
fn limit(
    at: &Locator<'_>,
    name: &str,
    value: Option<&Spanned<i64>>,
) -> Result<Option<u32>, ConfigError> {
    let Some(n) = value else {
        return Ok(None);
    };
    let checked = u32::try_from(*n.get_ref())
        .map_err(|_| NotifyError::Range)
        .and_then(|v| NotifyConfig::check_limit(u64::from(v)).map(|()| v));
    checked.map(Some).map_err(|e| {
        at.error(
            Some(n.span()),
            key(&format!("inspect.{name}")),
            format!("{e}, got {}", n.get_ref()),
        )
    })
}
#[cfg(test)]
mod tests {
    use super::super::validate::parse;

    const SERVICE: &str = "[[service]]\nname = \"e\"\nkind = \"echo\"\nlisten = \"tcp:7\"\n";

    fn inspect(keys: &str) -> Result<super::super::Config, String> {
        parse("weft.toml", &format!("[inspect]\n{keys}\n\n{SERVICE}")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_url_alone_takes_the_default_limits() {
        let config = inspect("notify = \"http://127.0.0.1:9000/hook\"").unwrap();
        let notify = config.inspect.notify.unwrap();
        assert_eq!(notify.url.to_string(), "http://127.0.0.1:9000/hook");
        assert_eq!(
            (notify.per_minute, notify.queue),
            (
                weft_inspector::DEFAULT_NOTIFY_PER_MINUTE,
                weft_inspector::DEFAULT_NOTIFY_QUEUE
            )
        );
        assert!(inspect("").unwrap().inspect.notify.is_none());
    }

    #[test]
    fn a_bad_url_or_limit_is_refused_naming_its_key_and_line() {
        let err = inspect("notify = \"ftp://x/\"").unwrap_err();
        assert!(
            err.contains("weft.toml:2:") && err.contains("inspect.notify"),
            "{err}"
        );
        let err = inspect("notify = \"http://x/\"\nnotify_per_minute = -1").unwrap_err();
        assert!(err.contains("inspect.notify_per_minute"), "{err}");
        let err = inspect("notify_per_minute = 5").unwrap_err();
        assert!(
            err.contains("inspect.notify_per_minute") && err.contains("beside `notify`"),
            "{err}"
        );
    }
}
