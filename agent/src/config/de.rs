//! Typed deserialisation of config sections, with errors that name the dotted key.
//!
//! Sections are deserialised from `toml::Value`s with `serde_path_to_error`, so a bad
//! value anywhere is reported as `key sinks.cloud.qos: …` with the file. Sections made
//! of two parts (keys shared by several sink types, or by MQTT sinks and sources, plus
//! the keys of one role) are split by the field names serde derived for the shared part
//! ([`split`]): each part refuses its own unknown keys, so no hand-written key list can
//! drift from the structs.

use std::time::Duration;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::Deserialize;

use super::env::Expanded;
use super::ConfigError;

/// Where a config value comes from: the file, and the `${VAR}` expansions to hide in
/// error messages.
pub(super) struct Ctx<'a> {
    pub file: &'a std::path::Path,
    pub expanded: &'a Expanded,
}

impl Ctx<'_> {
    /// An error for `key`; expanded secrets in `message` are replaced by their `${VAR}`.
    pub fn error(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        let key = key.into();
        ConfigError::Key {
            file: self.file.to_owned(),
            message: self.expanded.redact(&key, message.into()),
            key,
        }
    }

    /// Deserialises `value`, found at `prefix`, into `T`.
    pub fn typed<T: DeserializeOwned>(
        &self,
        prefix: &str,
        value: toml::Value,
    ) -> Result<T, ConfigError> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let message = e.into_inner().message().trim_end().to_owned();
            let mut key = join(prefix, if path == "." { "" } else { &path });
            // serde reports an unknown key at its parent (at the top level, at the key
            // itself); name the key once.
            let message = match unknown_field(&message) {
                Some((field, rest)) => {
                    if key.rsplit('.').next() != Some(field) {
                        key = join(&key, field);
                    }
                    format!("unknown key{rest}")
                }
                None => message,
            };
            self.error(key, message)
        })
    }
}

/// `a.b`, or whichever of the two is not empty.
pub(super) fn join(prefix: &str, key: &str) -> String {
    match (prefix.is_empty(), key.is_empty()) {
        (true, _) => key.to_owned(),
        (_, true) => prefix.to_owned(),
        _ => format!("{prefix}.{key}"),
    }
}

/// `("x", ", expected one of …")` from serde's "unknown field `x`, expected one of …".
fn unknown_field(message: &str) -> Option<(&str, &str)> {
    let rest = message.strip_prefix("unknown field `")?;
    let end = rest.find('`')?;
    Some((&rest[..end], &rest[end + 1..]))
}

/// Moves the keys that `T` has fields for out of `table` into a table of their own.
pub(super) fn split<T: DeserializeOwned>(table: &mut toml::Table) -> toml::Table {
    let fields = field_names::<T>();
    let keys: Vec<String> = table
        .keys()
        .filter(|k| fields.contains(&k.as_str()))
        .cloned()
        .collect();
    keys.into_iter()
        .filter_map(|k| table.remove(&k).map(|v| (k, v)))
        .collect()
}

/// The field names serde derived for struct `T` (what it passes to `deserialize_struct`).
fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Recorder<'a>(&'a mut &'static [&'static str]);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("field names recorded")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> Deserializer<'de> for Recorder<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = fields;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Recorder(&mut fields));
    fields
}

/// `*_ms` keys: a positive number of milliseconds.
pub(super) fn positive_millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match u64::deserialize(d)? {
        0 => Err(de::Error::custom("must be positive")),
        ms => Ok(Duration::from_millis(ms)),
    }
}

/// A human duration such as `"7d"`, `"12h"` or `"90s"`.
pub(super) fn duration_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    match humantime::parse_duration(&text) {
        Ok(d) if !d.is_zero() => Ok(Some(d)),
        Ok(_) => Err(de::Error::custom("must be positive")),
        Err(e) => Err(de::Error::custom(format!(
            "`{text}`: {e} (e.g. \"7d\", \"12h\")"
        ))),
    }
}

/// A positive size or count.
pub(super) fn positive<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    match usize::deserialize(d)? {
        0 => Err(de::Error::custom("must be positive")),
        n => Ok(n),
    }
}

/// Names used as keys on disk and in URLs: ASCII letters, digits, `_`, `-`.
pub fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What [`is_identifier`] allows, for error messages.
pub const IDENT_RULE: &str = "names may only use letters, digits, `_` and `-`";

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Shared {
        url: String,
        #[serde(default)]
        qos: u8,
    }

    #[test]
    fn split_takes_the_fields_serde_knows() {
        let mut table: toml::Table = toml::from_str("url = 'u'\nqos = 1\ntopic = 't'").unwrap();
        let shared = split::<Shared>(&mut table);
        assert_eq!(shared.keys().collect::<Vec<_>>(), ["qos", "url"]);
        assert_eq!(table.keys().collect::<Vec<_>>(), ["topic"]);
    }
}
