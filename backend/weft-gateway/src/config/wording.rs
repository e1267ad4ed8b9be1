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

/// `message`, the TOML reader's about `key` (a path such as `service[0].listne`) in the
/// file `text`, said plainly, with the key or value probably meant.
pub(super) fn plain(message: &str, key: Option<&str>, text: &str) -> String {
    let last = key.map(|k| k.rsplit('.').next().unwrap_or(k));
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let kind_keys = key.and_then(|k| service_keys(k, text));
        return unknown("key", rest, key, kind_keys);
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        return unknown("value", rest, None, None);
    }
    if key == Some("service") && message.starts_with("invalid type: map, expected a sequence") {
        return "`[service]` is a single table: each service is written `[[service]]` (two \
                brackets), once a service"
            .into();
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        return format!("missing key {rest}");
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
    if let Some((found, expected)) = message
        .strip_prefix("invalid value: ")
        .and_then(|m| m.split_once(", expected "))
    {
        if let Some(range) = range_of(expected)
            && let Some(n) = found.strip_prefix("integer ")
        {
            return format!("{} is out of range ({range})", n.trim_matches('`'));
        }
        return format!("expected {}, found {}", words(expected), words(found));
    }
    message.to_owned()
}

/// "duplicate key" for a table header (`[dashboard]` a second time, at `at` of `text`):
/// the table declared twice, and the line of the first.
pub(super) fn table_twice(message: &str, text: &str, at: usize) -> Option<String> {
    if message != "duplicate key" {
        return None;
    }
    // A header as the reader takes it: without a comment, spaces or quotes.
    let plain = |line: &str| -> String {
        let line = line.split('#').next().unwrap_or(line);
        line.chars()
            .filter(|c| !c.is_whitespace() && *c != '"')
            .collect()
    };
    let line_start = text[..at.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let header = plain(text[line_start..].lines().next()?);
    if !header.starts_with('[') || header.starts_with("[[") {
        return None;
    }
    let first = text[..line_start]
        .lines()
        .position(|l| plain(l) == header)
        .map(|i| i + 1)?;
    Some(format!(
        "the table {header} is declared a second time (first on line {first}); its keys go \
         under one header"
    ))
}

/// The key path to name with a message of the TOML reader's: none for a syntax error,
/// where the place found is not a key (`[[service]` unclosed is no `name[0]`).
pub(super) fn names_a_key(message: &str) -> bool {
    !(message.starts_with("unclosed")
        || message.starts_with("invalid table header")
        || message.starts_with("invalid array table header"))
}

/// "unknown key `X`" with the key meant, or the tables it belongs in, and what is
/// allowed: `rest` is serde's "`X`, expected one of `a`, `b`" (or "expected `a` or `b`",
/// or "there are no fields"); `only`, the keys allowed where serde's list is wider (a
/// service's: serde's are those of every kind).
fn unknown(what: &str, rest: &str, key: Option<&str>, only: Option<Vec<&str>>) -> String {
    let mut quoted = rest.split('`').skip(1).step_by(2);
    let Some(word) = quoted.next() else {
        return format!("unknown {what} {rest}");
    };
    let allowed: Vec<&str> = only.unwrap_or_else(|| quoted.collect());
    let mut said = format!("unknown {what} `{word}`");
    let tables = key.map(|k| elsewhere(word, k)).unwrap_or_default();
    if let Some(meant) = closest(word, &allowed) {
        said.push_str(&format!("; did you mean `{meant}`?"));
    } else if !tables.is_empty() {
        let tables: Vec<String> = tables.iter().map(|t| format!("[{t}]")).collect();
        said.push_str(&format!("; `{word}` is a key of {}", tables.join(" and ")));
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

/// The keys a service takes, for a key written at `path` if that is one of a service's
/// own (`service[N].KEY`): every kind's and its kind's, the kind read from `text`.
fn service_keys(path: &str, text: &str) -> Option<Vec<&'static str>> {
    let (index, key) = path.strip_prefix("service[")?.split_once("].")?;
    if key.contains(['.', '[']) {
        return None;
    }
    let index: usize = index.parse().ok()?;
    let table: toml::Table = toml::from_str(text).ok()?;
    let kind = table.get("service")?.get(index)?.get("kind")?.as_str()?;
    let own = crate::services::keys_of(kind)?;
    Some(
        crate::services::EVERY_KIND
            .iter()
            .chain(own)
            .copied()
            .collect(),
    )
}

/// The other top-level tables that take `word` as a key, for a key written at `path` in
/// one (`inspect.retention`); none for a key elsewhere (a service's, a route's).
fn elsewhere(word: &str, path: &str) -> Vec<&'static str> {
    let Some((here, key)) = path.split_once('.') else {
        return Vec::new();
    };
    if here.contains('[') || key.contains(['.', '[']) {
        return Vec::new();
    }
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
        .filter(|(table, keys)| *table != here && keys.contains(&word))
        .map(|(table, _)| table)
        .collect()
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
        "serve_stale",
    ]
    .iter()
    .any(|part| key.ends_with(part))
}

/// The range of the whole-number type serde's "expected" names.
fn range_of(expected: &str) -> Option<String> {
    let (low, high): (i128, i128) = match expected {
        "u8" => (0, u8::MAX.into()),
        "u16" => (0, u16::MAX.into()),
        "u32" => (0, u32::MAX.into()),
        "u64" | "usize" => (0, u64::MAX.into()),
        "i8" => (i8::MIN.into(), i8::MAX.into()),
        "i16" => (i16::MIN.into(), i16::MAX.into()),
        "i32" => (i32::MIN.into(), i32::MAX.into()),
        "i64" => (i64::MIN.into(), i64::MAX.into()),
        _ => return None,
    };
    Some(format!("{low} to {high}"))
}

/// Whether serde's "expected" names a number type.
fn is_number(expected: &str) -> bool {
    range_of(expected).is_some() || matches!(expected, "f32" | "f64")
}

/// serde's names of types and values in the words of a TOML file.
fn words(serde: &str) -> String {
    match serde {
        whole if range_of(whole).is_some() => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "map" | "a map" => "a table".into(),
        "sequence" | "a sequence" => "a list `[...]`".into(),
        "a boolean" | "boolean" => "true or false".into(),
        // A table of keys, as a struct is written in the file.
        other if other.starts_with("struct ") => "a table".into(),
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

    const ECHO: &str = "[[service]]\nname = \"e\"\nkind = \"echo\"\nlisten = \"tcp:1\"\n";
    const PROXY: &str = "[[service]]\nname = \"p\"\nkind = \"tcp-proxy\"\nlisten = \"tcp:1\"\n";

    #[test]
    fn a_key_misspelt_is_named_with_the_key_meant_among_its_kinds_keys() {
        let serde = "unknown field `listne`, expected one of `name`, `kind`, `listen`, \
                     `idle_timeout`, `upstream`, `upstream_pool`, `zones`";
        let said = plain(serde, Some("service[0].listne"), ECHO);
        assert_eq!(
            said,
            "unknown key `listne`; did you mean `listen`? (expected one of: name, kind, \
             listen, idle_timeout, max_connections_per_peer, max_connections, send_buffer, \
             receive_buffer)"
        );
        // A tcp-proxy takes `upstream`, not the http service's `upstream_pool`.
        let serde = "unknown field `upstream_pol`, expected one of `upstream`, `upstream_pool`";
        let said = plain(serde, Some("service[0].upstream_pol"), PROXY);
        assert!(said.contains("did you mean `upstream`?"), "{said}");
        let said = plain(
            "unknown field `inspct`, expected one of `dashboard`, `store`, `inspect`",
            Some("inspct"),
            "",
        );
        assert!(said.contains("did you mean `inspect`?"), "{said}");
        // Nothing alike: no guess.
        let said = plain(
            "unknown field `zzz`, expected `name` or `kind`",
            Some("zzz"),
            "",
        );
        assert_eq!(said, "unknown key `zzz` (expected one of: name, kind)");
    }

    #[test]
    fn a_key_in_the_wrong_table_is_sent_to_the_tables_that_take_it() {
        let said = plain(
            "unknown field `retention`, expected one of `stall_after`, `sample`",
            Some("inspect.retention"),
            "",
        );
        assert!(said.contains("`retention` is a key of [store] ("), "{said}");
        let said = plain(
            "unknown field `max_connections`, expected one of `path`",
            Some("store.max_connections"),
            "",
        );
        assert!(
            said.contains("is a key of [dashboard] and [gateway]"),
            "{said}"
        );
        // A service's or a route's key is not sent to a top-level table.
        for at in ["service[0].path", "service[0].route[0].path"] {
            let said = plain("unknown field `path`, expected `root`", Some(at), "");
            assert!(!said.contains("[store]"), "{at}: {said}");
        }
    }

    #[test]
    fn types_and_ranges_are_named_as_the_file_writes_them() {
        let cases = [
            (
                "invalid type: integer `5`, expected a string",
                "service[0].idle_timeout",
                "expected a duration in quotes, such as \"5s\", found the number 5",
            ),
            (
                "invalid type: string \"100\", expected i64",
                "service[0].max_connections",
                "expected a whole number, found the string \"100\" (write it without quotes)",
            ),
            (
                "invalid type: integer `99999999999999999999` as i128, expected i64",
                "service[0].max_connections",
                "99999999999999999999 is too large a number",
            ),
            (
                "invalid type: string \"big\", expected u64",
                "a.b",
                "expected a whole number, found the string \"big\"",
            ),
            (
                "invalid value: integer `-1`, expected u32",
                "a.b",
                "-1 is out of range (0 to 4294967295)",
            ),
            (
                "invalid type: string \"x\", expected struct RawLimits",
                "service[0].limits",
                "expected a table, found the string \"x\"",
            ),
            ("missing field `name`", "service[0]", "missing key `name`"),
            (
                "invalid type: sequence, expected a boolean",
                "service[0].listing",
                "expected true or false, found a list `[...]`",
            ),
        ];
        for (serde, key, said) in cases {
            assert_eq!(plain(serde, Some(key), ""), said, "{serde}");
        }
    }

    #[test]
    fn a_service_written_as_one_table_is_told_of_the_double_brackets() {
        // The TOML reader's own message for it, through `Config::parse`.
        let e =
            crate::config::Config::parse("weft.toml", &ECHO.replace("[[service]]", "[service]"))
                .unwrap_err();
        assert!(
            e.message.contains("each service is written `[[service]]`"),
            "{e}"
        );
    }

    #[test]
    fn a_table_declared_twice_names_its_first_line() {
        let text = "[dashboard]\nlisten = \"tcp:1\"\n\n[dashboard]\ntoken = \"x\"\n";
        let second = text.rfind("[dashboard]").unwrap() + 1;
        assert_eq!(
            table_twice("duplicate key", text, second).as_deref(),
            Some(
                "the table [dashboard] is declared a second time (first on line 1); its keys \
                 go under one header"
            )
        );
        // Spelt otherwise, with a comment: the same table.
        let commented = "[dashboard]   # the UI\nlisten = \"tcp:1\"\n[ \"dashboard\" ] # again\n";
        let second = commented.rfind("[ ").unwrap() + 1;
        let said = table_twice("duplicate key", commented, second).unwrap_or_default();
        assert!(
            said.contains("the table [dashboard] is declared a second time (first on line 1)"),
            "{said}"
        );
        // A key given twice is left to the reader's words.
        let keys = "[inspect]\nsample = 0.5\nsample = 0.2\n";
        assert_eq!(
            table_twice("duplicate key", keys, keys.rfind("sample").unwrap()),
            None
        );
    }

    #[test]
    fn the_tables_keys_are_read_from_their_definitions() {
        assert!(fields::<RawStore>().contains(&"retention"));
        assert!(fields::<RawInspect>().contains(&"stall_after"));
    }
}
