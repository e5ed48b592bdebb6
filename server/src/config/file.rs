//! Reading the TOML config file into raw per-key strings.
//!
//! The file is a flat table whose keys are the flag names without the leading dashes. Numeric
//! keys take a TOML integer or a string; URL-list keys take a comma-separated string or an
//! array of strings; boolean keys (`client-cert-auth`, `auto-tls`, ...) a TOML boolean or a
//! string. Anything else (unknown keys, tables, other booleans, floats, dates) is an error
//! naming the file and the key.

use std::collections::BTreeMap;
use std::path::Path;

use super::cli::{BOOL_KEYS, LIST_KEYS};
use super::ConfigError;

/// Read and check the config file at `path`.
///
/// `known_keys` are the accepted keys (flag names without dashes). Returns each key's value
/// as the string the equivalent flag would have been given.
pub(super) fn load(path: &Path, known_keys: &[&str]) -> Result<BTreeMap<String, String>, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile { path: path.to_owned(), source })?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let (line, column) = e.span().map(|span| line_column(&text, span.start)).unwrap_or((1, 1));
        ConfigError::ParseFile { path: path.to_owned(), line, column, message: one_line(e.message()) }
    })?;

    let mut values = BTreeMap::new();
    for (key, value) in table {
        if !known_keys.contains(&key.as_str()) {
            let dashed = key.replace('_', "-");
            let suggestion = known_keys.contains(&dashed.as_str()).then_some(dashed);
            return Err(ConfigError::UnknownKey { path: path.to_owned(), key, suggestion });
        }
        let raw = value_to_raw(path, &key, value)?;
        values.insert(key, raw);
    }
    Ok(values)
}

/// Turn one TOML value into the string a flag would carry.
fn value_to_raw(path: &Path, key: &str, value: toml::Value) -> Result<String, ConfigError> {
    let is_list = LIST_KEYS.contains(&key);
    let is_bool = BOOL_KEYS.contains(&key);
    let type_error = |found: &'static str| ConfigError::FileValueType {
        path: path.to_owned(),
        key: key.to_owned(),
        expected: if is_list {
            "a string or an array of strings"
        } else if is_bool {
            "a boolean or a string"
        } else {
            "a string or an integer"
        },
        found,
    };
    match value {
        toml::Value::String(s) => Ok(s),
        toml::Value::Boolean(b) if is_bool => Ok(b.to_string()),
        toml::Value::Integer(_) if is_bool => Err(type_error("an integer")),
        toml::Value::Integer(i) if !is_list => Ok(i.to_string()),
        toml::Value::Array(items) if is_list => items
            .into_iter()
            .map(|item| match item {
                toml::Value::String(s) => Ok(s),
                other => Err(type_error(type_name(&other))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|items| items.join(",")),
        other => Err(type_error(type_name(&other))),
    }
}

fn type_name(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a datetime",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

/// toml's messages can span several lines ("invalid string\nexpected ..."); keep one.
fn one_line(message: &str) -> String {
    message.lines().map(str::trim).filter(|line| !line.is_empty()).collect::<Vec<_>>().join("; ")
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::line_column;

    #[test]
    fn line_column_counts_from_one() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 4), (1, 5));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(line_column(text, 9), (2, 3)); // after the two-byte 'é'
        assert_eq!(line_column(text, 999), (3, 1));
    }
}
