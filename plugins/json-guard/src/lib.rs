//! `json-guard`: every value put under a key prefix (`json/` by default) must be valid JSON, and, if
//! `required` fields are configured, a JSON object with those top-level fields. Anything else is
//! rejected before it reaches the raft log, for a plain Put and inside a Txn (failing the whole Txn).
//!
//! `json-guard.toml`:
//!
//! ```toml
//! [config]
//! prefix = "json/"            # the hooked key prefix ("" hooks every key)
//! required = ["id", "name"]   # optional: top-level fields every value must have
//! ```

use modkv_plugin_sdk::prelude::*;

struct JsonGuard;

const DEFAULT_PREFIX: &str = "json/";

impl Plugin for JsonGuard {
    fn manifest() -> Manifest {
        Manifest::new("json-guard", env!("CARGO_PKG_VERSION"))
            // Each value is judged on its own: one instance may check many puts in a row.
            .stateless()
            .hook_prefix(prefix())
            .metric(MetricDef::counter("rejected", "Puts rejected by json-guard, by reason").labels(&["reason"]))
    }

    fn pre_put(put: Put) -> Decision {
        // The host only calls us for the hooked prefix; check anyway, in case its TOML hooks more.
        if !put.key.starts_with(prefix().as_bytes()) {
            return Decision::Allow;
        }
        match check(&put.key_str(), &put.value, &config::list("required")) {
            Ok(()) => Decision::Allow,
            Err(rejection) => {
                metrics::counter("rejected").labels(&[rejection.reason()]).inc();
                Decision::reject(rejection.to_string())
            }
        }
    }
}

export!(JsonGuard);

fn prefix() -> String {
    config::get_or("prefix", DEFAULT_PREFIX)
}

/// Why a value was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rejection {
    InvalidJson { key: String, error: String },
    NotAnObject { key: String, required: Vec<String> },
    MissingField { key: String, field: String },
}

impl Rejection {
    /// The `reason` label of `rejected` (`modkv_plugin_json_guard_rejected_total`).
    fn reason(&self) -> &'static str {
        match self {
            Rejection::InvalidJson { .. } => "invalid_json",
            Rejection::NotAnObject { .. } => "not_an_object",
            Rejection::MissingField { .. } => "missing_field",
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::InvalidJson { key, error } => write!(f, "value of {key:?} is not valid JSON: {error}"),
            Rejection::NotAnObject { key, required } => {
                write!(f, "value of {key:?} must be a JSON object with the fields {}", required.join(", "))
            }
            Rejection::MissingField { key, field } => {
                write!(f, "value of {key:?} is missing the required field {field:?}")
            }
        }
    }
}

/// Checks one value: valid JSON, and an object with every `required` top-level field when there are
/// any.
fn check(key: &str, value: &[u8], required: &[String]) -> Result<(), Rejection> {
    let invalid = |e: serde_json::Error| Rejection::InvalidJson { key: key.to_string(), error: e.to_string() };
    if required.is_empty() {
        // Validate without building the document.
        return serde_json::from_slice::<modkv_plugin_sdk::serde::de::IgnoredAny>(value).map(|_| ()).map_err(invalid);
    }
    let doc: serde_json::Value = serde_json::from_slice(value).map_err(invalid)?;
    let Some(object) = doc.as_object() else {
        return Err(Rejection::NotAnObject { key: key.to_string(), required: required.to_vec() });
    };
    match required.iter().find(|field| !object.contains_key(field.as_str())) {
        Some(field) => Err(Rejection::MissingField { key: key.to_string(), field: field.clone() }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn accepts_any_json_without_required_fields() {
        for v in [&b"{}"[..], b"[1, 2]", b"\"s\"", b"3.5", b"null", b" {\"a\": {\"b\": [true]}} "] {
            assert_eq!(check("json/a", v, &[]), Ok(()), "{}", String::from_utf8_lossy(v));
        }
    }

    #[test]
    fn rejects_invalid_json_saying_so() {
        for v in [&b""[..], b"{", b"not json", b"{\"a\":1}x", b"\xff"] {
            let err = check("json/a", v, &[]).unwrap_err();
            assert_eq!(err.reason(), "invalid_json");
            let msg = err.to_string();
            assert!(msg.starts_with("value of \"json/a\" is not valid JSON: "), "{msg}");
        }
    }

    #[test]
    fn required_fields() {
        let required = fields(&["id", "name"]);
        assert_eq!(check("json/u", br#"{"id": 1, "name": "ada", "x": null}"#, &required), Ok(()));
        let err = check("json/u", br#"{"id": 1}"#, &required).unwrap_err();
        assert_eq!(err.to_string(), r#"value of "json/u" is missing the required field "name""#);
        let err = check("json/u", b"[1]", &required).unwrap_err();
        assert_eq!(err.to_string(), r#"value of "json/u" must be a JSON object with the fields id, name"#);
        let err = check("json/u", b"{", &required).unwrap_err();
        assert_eq!(err.reason(), "invalid_json");
    }
}
