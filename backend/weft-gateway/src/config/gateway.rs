//! `[gateway]`: how the process runs its services.

use toml::Spanned;

use super::ConfigError;
use super::error::Locator;
use super::raw::RawConfig;

/// `[gateway]`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// How many reactors run the services (`reactors`: a number, or `"auto"` for one per
    /// core this process may use), each on its own thread with its own listening sockets
    /// on the same addresses.
    pub reactors: u16,
    /// The name this gateway's history rows carry (`instance`; default: the host name), by
    /// which the dashboard filters a history a fleet shares.
    pub instance: String,
    /// The connections every service may accept together (`max_connections`); `None`
    /// (`"auto"`, the default): what the open-files limit leaves room for.
    pub max_connections: Option<usize>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            reactors: 1,
            instance: weft_store::default_instance(),
            max_connections: None,
        }
    }
}

/// The most `[gateway] max_connections` may say.
const MAX_CONNECTIONS: i64 = 100_000_000;

/// Reads `[gateway]`.
pub(super) fn gateway(at: &Locator<'_>, raw: &RawConfig) -> Result<GatewayConfig, ConfigError> {
    let reactors = match &raw.gateway.reactors {
        None => 1,
        Some(value) => reactors(at, value)?,
    };
    let instance = super::fleet::instance(at, raw)?;
    let max_connections = match &raw.gateway.max_connections {
        None => None,
        Some(value) => max_connections(at, value)?,
    };
    Ok(GatewayConfig {
        reactors,
        instance,
        max_connections,
    })
}

fn max_connections(
    at: &Locator<'_>,
    value: &Spanned<toml::Value>,
) -> Result<Option<usize>, ConfigError> {
    let wrong = |message: String| {
        at.error(
            Some(value.span()),
            Some("gateway.max_connections".into()),
            message,
        )
    };
    let expected = format!("a number of connections (1 to {MAX_CONNECTIONS}) or \"auto\"");
    match value.get_ref() {
        toml::Value::String(s) if s == "auto" => Ok(None),
        toml::Value::Integer(n) if (1..=MAX_CONNECTIONS).contains(n) => {
            Ok(Some(usize::try_from(*n).expect("bounded above")))
        }
        toml::Value::Integer(n) => Err(wrong(format!("must be {expected}; got {n}"))),
        toml::Value::String(s) => Err(wrong(format!("must be {expected}; got {s:?}"))),
        other => Err(wrong(format!(
            "must be {expected}; got a {}",
            other.type_str()
        ))),
    }
}

fn reactors(at: &Locator<'_>, value: &Spanned<toml::Value>) -> Result<u16, ConfigError> {
    let max = weft::ReactorPool::MAX;
    let wrong =
        |message: String| at.error(Some(value.span()), Some("gateway.reactors".into()), message);
    match value.get_ref() {
        toml::Value::String(s) if s == "auto" => Ok(weft::ReactorPool::available()),
        toml::Value::Integer(n) => u16::try_from(*n)
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| wrong(format!("must be between 1 and {max}, or \"auto\"; got {n}"))),
        toml::Value::String(s) => Err(wrong(format!(
            "must be a number of reactors (1 to {max}) or \"auto\"; got {s:?}"
        ))),
        other => Err(wrong(format!(
            "must be a number of reactors (1 to {max}) or \"auto\"; got a {}",
            other.type_str()
        ))),
    }
}
