//! The TOML reader's complaints in the configuration's own words.
//!
//! serde speaks of Rust: `i64`, `map`, `sequence`, "unknown field" followed by every key
//! the table takes. An operator wrote a table, a list, a number; a key misspelt wants the
//! key meant named, and a key written in the wrong table wants the table it belongs in.

use serde::Deserialize;
use serde::de::{self, Visitor};

use super::raw::{RawDashboard, RawDemo, RawGateway, RawInspect, RawLog, RawOtlp, RawStore};

/// How alike (Jaro-Winkler, 0 to 1) a word must be to a key to be suggested for it:
/// `listne` is 0.97 like `listen`, `max_conections` 0.99 like `max_connections`.
const ALIKE: f64 = 0.85;

/// `message`, the TOML reader's about `key` (a path such as `service[0].listne`), said
/// plainly, with the key or value probably meant.
pub(super) fn plain(message: &str, key: Option<&str>) -> String {
    let last = key.map(|k| k.rsplit('.').next().unwrap_or(k));
    if let Some(rest) = message.strip_prefix("unknown field ") {
        return unknown("key", rest, key);
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        return unknown("value", rest, None);
    }
    if key == Some("service") && message.starts_with("invalid type: map, expected a sequence") {
        return "`[service]` is a single table: each service is written `[[service]]` (two \
                brackets), once a service"
            .into();
    }
    if let Some(found) = message
        .strip_prefix("invalid type: ")
        .and_then(|m| m.strip_suffix(", expected a string"))
    {
        let hint = match last.is_some_and(is_duration) {
            true => "a duration in quotes, such as \"5s\"",
            false => "a string, in quotes",
        };
        return format!("expected {hint}, found {}", words(found));
    }
    if let Some((found, expected)) = message
        .strip_prefix("invalid type: ")
        .and_then(|m| m.split_once(", expected "))
    {
        if found.contains(" as i128") {
            let number = found
                .trim_start_matches("integer ")
                .trim_end_matches(" as i128");
            return format!("{} is too large a number", number.trim_matches('`'));
        }
        let quoted_number = found
            .strip_prefix("string ")
            .is_some_and(|s| s.trim_matches('"').parse::<f64>().is_ok());
        let unquote = match quoted_number && is_number(expected) {
            true => " (write it without quotes)",
            false => "",
        };
        return format!(
            "expected {}, found {}{unquote}",
            words(expected),
            words(found)
        );
    }
    if message.starts_with("invalid value: ")
        && let Some((found, expected)) =
            message["invalid value: ".len()..].split_once(", expected ")
    {
        return format!("expected {}, found {}", words(expected), words(found));
    }
    message.to_owned()
}

/// The key path to name with a message of the TOML reader's: none for a syntax error,
/// where the place found is not a key (`[[service]` unclosed is no `name[0]`).
pub(super) fn names_a_key(message: &str) -> bool {
    !(message.starts_with("unclosed")
        || message.starts_with("invalid table header")
        || message.starts_with("invalid array table header"))
}

/// "unknown key `X`" with the key meant, or the table it belongs in, and what is allowed:
/// `rest` is serde's "`X`, expected one of `a`, `b`" (or "expected `a` or `b`", or
/// "there are no fields").
fn unknown(what: &str, rest: &str, key: Option<&str>) -> String {
    let mut quoted = rest.split('`').skip(1).step_by(2);
    let Some(word) = quoted.next() else {
        return format!("unknown {what} {rest}");
    };
    let allowed: Vec<&str> = quoted.collect();
    let mut said = format!("unknown {what} `{word}`");
    if let Some(meant) = closest(word, &allowed) {
        said.push_str(&format!("; did you mean `{meant}`?"));
    } else if let Some(table) = key.and_then(|k| elsewhere(word, k)) {
        said.push_str(&format!("; `{word}` is a key of [{table}]"));
    }
    if !allowed.is_empty() {
        said.push_str(&format!(" (expected one of: {})", allowed.join(", ")));
    }
    said
}

/// The candidate most like `word`, if any is alike enough to be the one meant.
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word = word.to_ascii_lowercase().replace('_', "-");
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(&word, &c.replace('_', "-")), *c))
        .filter(|(alike, _)| *alike >= ALIKE)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// The other top-level table that takes `word` as a key, for a key written at `path`.
fn elsewhere(word: &str, path: &str) -> Option<&'static str> {
    let here = path.split(['.', '[']).next().unwrap_or(path);
    let tables: [(&str, &[&str]); 7] = [
        ("dashboard", fields::<RawDashboard>()),
        ("gateway", fields::<RawGateway>()),
        ("store", fields::<RawStore>()),
        ("inspect", fields::<RawInspect>()),
        ("log", fields::<RawLog>()),
        ("demo", fields::<RawDemo>()),
        ("otlp", fields::<RawOtlp>()),
    ];
    tables
        .into_iter()
        .find(|(table, keys)| *table != here && keys.contains(&word))
        .map(|(table, _)| table)
}

/// Whether a key holds a duration (`idle_timeout`, `stall_after`, `retention`...).
fn is_duration(key: &str) -> bool {
    [
        "timeout",
        "_after",
        "interval",
        "retention",
        "eject_for",
        "max_age",
        "_ttl",
        "slow_callback",
    ]
    .iter()
    .any(|part| key.ends_with(part))
}

/// Whether serde's "expected" names a number type.
fn is_number(expected: &str) -> bool {
    matches!(
        expected,
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "usize" | "f32" | "f64"
    )
}

/// serde's names of types and values in the words of a TOML file.
fn words(serde: &str) -> String {
    match serde {
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "usize" => {
            "a whole number".into()
        }
        "f32" | "f64" => "a number".into(),
        "map" | "a map" => "a table".into(),
        "sequence" | "a sequence" => "a list `[...]`".into(),
        "a boolean" | "boolean" => "true or false".into(),
        other => match other.split_once(' ') {
            Some(("integer", n)) => format!("the number {}", n.trim_matches('`')),
            Some(("floating", n)) => format!(
                "the number {}",
                n.trim_start_matches("point ").trim_matches('`')
            ),
            Some(("string", s)) => format!("the string {s}"),
            Some(("boolean", b)) => b.trim_matches('`').to_owned(),
            _ => other.to_owned(),
        },
    }
}

/// The keys a table of `T` takes, as its `Deserialize` names them.
fn fields<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    let mut names = Names(&[]);
    let _ = T::deserialize(&mut names);
    names.0
}

/// A deserializer that reads nothing: it keeps the field names a struct asks for.
struct Names(&'static [&'static str]);

impl<'de> de::Deserializer<'de> for &mut Names {
    type Error = de::value::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0 = fields;
        Err(de::Error::custom("names only"))
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("names only"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_misspelt_is_named_with_the_key_meant() {
        let said = plain(
            "unknown field `listne`, expected one of `name`, `kind`, `listen`, `idle_timeout`",
            Some("service[0].listne"),
        );
        assert!(
            said.starts_with("unknown key `listne`; did you mean `listen`?"),
            "{said}"
        );
        let said = plain(
            "unknown field `max_conections`, expected `max_connections` or `listen`",
            Some("service[0].max_conections"),
        );
        assert!(said.contains("did you mean `max_connections`?"), "{said}");
        let said = plain(
            "unknown field `inspct`, expected one of `dashboard`, `store`, `inspect`",
            Some("inspct"),
        );
        assert!(said.contains("did you mean `inspect`?"), "{said}");
        // Nothing alike: no guess.
        let said = plain(
            "unknown field `zzz`, expected `name` or `kind`",
            Some("zzz"),
        );
        assert_eq!(said, "unknown key `zzz` (expected one of: name, kind)");
    }

    #[test]
    fn a_key_in_the_wrong_table_is_sent_to_its_own() {
        let said = plain(
            "unknown field `retention`, expected one of `stall_after`, `sample`",
            Some("inspect.retention"),
        );
        assert!(said.contains("`retention` is a key of [store]"), "{said}");
    }

    #[test]
    fn types_are_named_as_the_file_writes_them() {
        let duration = plain(
            "invalid type: integer `5`, expected a string",
            Some("service[0].idle_timeout"),
        );
        assert_eq!(
            duration,
            "expected a duration in quotes, such as \"5s\", found the number 5"
        );
        let quoted = plain(
            "invalid type: string \"100\", expected i64",
            Some("service[0].max_connections"),
        );
        assert_eq!(
            quoted,
            "expected a whole number, found the string \"100\" (write it without quotes)"
        );
        let large = plain(
            "invalid type: integer `99999999999999999999` as i128, expected i64",
            Some("service[0].max_connections"),
        );
        assert_eq!(large, "99999999999999999999 is too large a number");
        let word = plain("invalid type: string \"big\", expected u64", Some("a.b"));
        assert_eq!(word, "expected a whole number, found the string \"big\"");
        let table = plain("invalid type: map, expected a sequence", Some("service"));
        assert!(table.contains("`[[service]]`"), "{table}");
        let list = plain(
            "invalid type: sequence, expected a boolean",
            Some("service[0].listing"),
        );
        assert_eq!(list, "expected true or false, found a list `[...]`");
    }

    #[test]
    fn the_tables_keys_are_read_from_their_definitions() {
        assert!(fields::<RawStore>().contains(&"retention"));
        assert!(fields::<RawInspect>().contains(&"stall_after"));
    }
}
