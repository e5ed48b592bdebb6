//! The plugin's `[config]` table from `<name>.toml` beside its `.wasm`.
//!
//! ```toml
//! [config]
//! prefix = "json/"
//! required = ["id", "name"]   # or "id,name"
//! max_bytes = 4096
//! ```
//!
//! ```no_run
//! use modkv_plugin_sdk::config;
//!
//! let prefix = config::get_or("prefix", "json/");
//! let required: Vec<String> = config::list("required");
//! let max: usize = config::parse("max_bytes").unwrap_or(1 << 20);
//! ```
use crate::bindings::modkv::plugin::host;

use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    /// Values already asked for. A plugin's config is fixed for the life of an instance (a change
    /// reloads the plugin), so an instance that answers many calls asks the host once per key.
    static CACHE: RefCell<HashMap<String, Option<String>>> = RefCell::new(HashMap::new());
}

/// The value of `key` as the host gives it: a TOML string as is, any other TOML value as JSON text
/// (`3`, `true`, `["a","b"]`).
pub fn get(key: &str) -> Option<String> {
    if let Some(v) = CACHE.with(|c| c.borrow().get(key).cloned()) {
        return v;
    }
    let v = host::config(key);
    CACHE.with(|c| c.borrow_mut().insert(key.to_string(), v.clone()));
    v
}

/// The value of `key`, or `default`.
pub fn get_or(key: &str, default: &str) -> String {
    get(key).unwrap_or_else(|| default.to_string())
}

/// The value of `key` parsed with [`str::parse`]; `None` if it is missing or does not parse.
pub fn parse<T: std::str::FromStr>(key: &str) -> Option<T> {
    get(key)?.trim().parse().ok()
}

/// The value of `key` as a boolean (`true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`).
pub fn flag(key: &str) -> Option<bool> {
    parse_flag(&get(key)?)
}

/// The value of `key` as a list of strings: a TOML/JSON array of strings, or a comma-separated
/// string. Missing: empty.
pub fn list(key: &str) -> Vec<String> {
    get(key).map(|v| parse_list(&v)).unwrap_or_default()
}

/// The parsing behind [`flag`].
pub fn parse_flag(value: &str) -> Option<bool> {
    match value.trim().trim_matches('"').to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// The parsing behind [`list`]: `["a", "b"]` (JSON or TOML, `'` quotes too), or `a, b`; empty items
/// are dropped.
pub fn parse_list(value: &str) -> Vec<String> {
    let v = value.trim();
    if let Some(inner) = v.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        if let Ok(items) = serde_json::from_str::<Vec<String>>(v) {
            return items.into_iter().filter(|s| !s.is_empty()).collect();
        }
        return inner
            .split(',')
            .map(|s| s.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
            .filter(|s| !s.is_empty())
            .collect();
    }
    v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parsing() {
        assert_eq!(parse_list("[\"id\", \"name\"]"), vec!["id", "name"]);
        assert_eq!(parse_list("['id', 'name',]"), vec!["id", "name"]);
        assert_eq!(parse_list("id, name,"), vec!["id", "name"]);
        assert_eq!(parse_list(""), Vec::<String>::new());
        assert_eq!(parse_flag(" Yes"), Some(true));
        assert_eq!(parse_flag("\"false\""), Some(false));
        assert_eq!(parse_flag("maybe"), None);
    }
}
