//! Request decoding as etcd 3.4's grpc-gateway does it (golang/protobuf 1.3 `jsonpb.Unmarshaler` with
//! unknown fields allowed, on top of Go's `encoding/json`), driven by the proto descriptors.
//!
//! [`Schema::canonical`] walks a request body along the message descriptor and either fails with the
//! exact message Go would print, or returns the same request in canonical proto3 JSON (proto field
//! names, 64-bit integers as strings, enums as numbers, bytes as standard base64, nulls and unknown
//! fields dropped), which the pbjson-generated `Deserialize` impls then turn into the prost type.
//! What Go accepts and how it resolves ambiguity is reproduced here:
//! * field names: the proto name or its lowerCamel JSON name; when both are present the camel one wins;
//!   a repeated key: the last one wins; unknown keys are ignored;
//! * integers: JSON numbers or strings holding one (the quotes are stripped, the rest parsed by Go's
//!   `json.Unmarshal`, so `"1e2"` and `" 1"` behave as Go's do);
//! * enums: names (not unescaped, as jsonpb does not) or numbers;
//! * bytes: standard base64 (with Go's `\r`/`\n` skipping and error offsets) or an array of numbers;
//! * regular fields in declaration order, then oneof members, so the first error is Go's.

use std::collections::HashMap;

use base64::Engine as _;
use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use serde_json::{Map, Value};

use super::gojson::{self, Kind};

/// The deepest message nesting decoded. Only a txn nests without bound (a `TxnRequest` holds
/// `RequestOp`s that hold `TxnRequest`s: two levels per txn); this lets every txn the server accepts
/// (`proto::MAX_TXN_DEPTH` levels) through, and a level more, and stops the recursion on the rest.
const MAX_MESSAGE_DEPTH: usize = 2 * (crate::proto::MAX_TXN_DEPTH + 2);
/// What a txn nested deeper than [`MAX_MESSAGE_DEPTH`] gets: etcd decodes it and then refuses it for
/// exhausting its op budget with this message.
const TOO_DEEP: &str = "etcdserver: too many operations in txn request";

#[derive(Clone, Debug)]
enum Ty {
    Int64,
    Uint64,
    Int32,
    Uint32,
    Float,
    Double,
    Bool,
    String,
    Bytes,
    Enum(String),
    Message(String),
}

#[derive(Clone, Debug)]
struct Field {
    name: String,
    json_name: String,
    ty: Ty,
    repeated: bool,
    /// Index of the oneof this field belongs to.
    oneof: Option<usize>,
}

#[derive(Debug, Default)]
struct MessageInfo {
    fields: Vec<Field>,
    /// Go's name of each oneof's interface type (`isCompare_TargetUnion`), by oneof index.
    oneofs: Vec<(String, String)>,
}

#[derive(Debug)]
struct EnumInfo {
    go_name: String,
    values: HashMap<String, i32>,
}

/// Message and enum descriptors by full name (`.etcdserverpb.RangeRequest`).
#[derive(Debug, Default)]
pub struct Schema {
    messages: HashMap<String, MessageInfo>,
    enums: HashMap<String, EnumInfo>,
}

/// protoc's `ToJsonName`: drop underscores, upper-case the letter after each.
fn json_name(name: &str) -> String {
    camel(name, false)
}

/// Go's `CamelCase` of a proto identifier, as protoc-gen-go names oneof wrappers.
fn go_camel(name: &str) -> String {
    camel(name, true)
}

/// Drops underscores and upper-cases the letter after each (and the first one with `upper_first`).
fn camel(name: &str, upper_first: bool) -> String {
    let mut out = String::new();
    let mut upper = upper_first;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

impl Schema {
    /// Loads every message and enum of an encoded `FileDescriptorSet`.
    pub fn from_descriptor_set(bytes: &[u8]) -> Result<Schema, prost::DecodeError> {
        let fds = prost_types::FileDescriptorSet::decode(bytes)?;
        let mut schema = Schema::default();
        for file in &fds.file {
            let pkg = file.package().to_string();
            for e in &file.enum_type {
                schema.add_enum(&pkg, &[], e);
            }
            for m in &file.message_type {
                schema.add_message(&pkg, &[], m);
            }
        }
        Ok(schema)
    }

    fn add_enum(&mut self, pkg: &str, outer: &[&str], e: &prost_types::EnumDescriptorProto) {
        let mut path: Vec<&str> = outer.to_vec();
        path.push(e.name());
        let full = format!(".{pkg}.{}", path.join("."));
        let go_name = format!("{pkg}.{}", path.join("_"));
        let values = e.value.iter().map(|v| (v.name().to_string(), v.number())).collect();
        self.enums.insert(full, EnumInfo { go_name, values });
    }

    fn add_message(&mut self, pkg: &str, outer: &[&str], m: &prost_types::DescriptorProto) {
        let mut path: Vec<&str> = outer.to_vec();
        path.push(m.name());
        for e in &m.enum_type {
            self.add_enum(pkg, &path, e);
        }
        for n in &m.nested_type {
            self.add_message(pkg, &path, n);
        }
        let go_type = path.join("_");
        let oneofs = m
            .oneof_decl
            .iter()
            .map(|o| (o.name().to_string(), format!("{pkg}.is{go_type}_{}", go_camel(o.name()))))
            .collect();
        let fields = m
            .field
            .iter()
            .map(|f| {
                let ty = match f.r#type() {
                    Type::Int64 | Type::Sint64 | Type::Sfixed64 => Ty::Int64,
                    Type::Uint64 | Type::Fixed64 => Ty::Uint64,
                    Type::Int32 | Type::Sint32 | Type::Sfixed32 => Ty::Int32,
                    Type::Uint32 | Type::Fixed32 => Ty::Uint32,
                    Type::Float => Ty::Float,
                    Type::Double => Ty::Double,
                    Type::Bool => Ty::Bool,
                    Type::String => Ty::String,
                    Type::Bytes => Ty::Bytes,
                    Type::Enum => Ty::Enum(f.type_name().to_string()),
                    Type::Message | Type::Group => Ty::Message(f.type_name().to_string()),
                };
                Field {
                    name: f.name().to_string(),
                    json_name: json_name(f.name()),
                    ty,
                    repeated: f.label() == Label::Repeated,
                    oneof: f.oneof_index.map(|i| i as usize),
                }
            })
            .collect();
        self.messages.insert(format!(".{pkg}.{}", path.join(".")), MessageInfo { fields, oneofs });
    }

    /// Decodes a request body for message `full_name` as etcd's gateway does; `Ok` holds the
    /// canonical JSON of the request (`{}` for an empty body), `Err` Go's error text.
    pub fn canonical(&self, full_name: &str, body: &[u8]) -> Result<Value, String> {
        match gojson::decode_first(body)? {
            None => Ok(Value::Object(Map::new())),
            Some(raw) => self.message(full_name, raw, 1),
        }
    }

    /// One JSON value (a whole value, as [`gojson::Splitter`] finds them) decoded as [`Schema::canonical`]
    /// decodes a body.
    pub fn canonical_value(&self, full_name: &str, raw: &[u8]) -> Result<Value, String> {
        self.message(full_name, raw, 1)
    }

    fn message(&self, full_name: &str, raw: &[u8], depth: usize) -> Result<Value, String> {
        if depth > MAX_MESSAGE_DEPTH {
            return Err(TOO_DEEP.to_string());
        }
        let k = gojson::kind(raw);
        if k == Kind::Null {
            return Ok(Value::Object(Map::new()));
        }
        if k != Kind::Object {
            return Err(type_error(k.go_name(), "map[string]json.RawMessage"));
        }
        let Some(info) = self.messages.get(full_name) else {
            return Err(format!("modkv: no descriptor for {full_name}"));
        };
        let mut json: HashMap<String, &[u8]> = gojson::object_members(raw).into_iter().collect();
        let mut out = Map::new();
        fn consume<'a>(json: &mut HashMap<String, &'a [u8]>, f: &Field) -> Option<&'a [u8]> {
            let orig = json.remove(&f.name);
            let camel = json.remove(&f.json_name);
            camel.or(orig)
        }
        // Go struct order: regular fields in declaration order, each oneof as one interface field at
        // the place of its first member; oneof members themselves after all of them.
        let mut seen_oneof = vec![false; info.oneofs.len()];
        let mut members = Vec::new();
        for f in &info.fields {
            if let Some(o) = f.oneof {
                members.push(f);
                if !seen_oneof[o] {
                    seen_oneof[o] = true;
                    let (name, go_iface) = &info.oneofs[o];
                    if let Some(v) = json.remove(name) {
                        let k = gojson::kind(v);
                        if k != Kind::Null {
                            return Err(type_error(k.go_name(), go_iface));
                        }
                    }
                }
                continue;
            }
            if let Some(v) = consume(&mut json, f) {
                if let Some(val) = self.field(f, v, depth)? {
                    out.insert(f.name.clone(), val);
                }
            }
        }
        for f in members {
            if let Some(v) = consume(&mut json, f) {
                match self.single(f, v, depth)? {
                    Some(val) => {
                        out.insert(f.name.clone(), val);
                    }
                    // A null member still selects the oneof (with an empty value on the wire, which
                    // is no member at all).
                    None => continue,
                }
            }
        }
        Ok(Value::Object(out))
    }

    fn field(&self, f: &Field, raw: &[u8], depth: usize) -> Result<Option<Value>, String> {
        if !f.repeated {
            return self.single(f, raw, depth);
        }
        // jsonpb checks a quoted enum name before it looks at the target's type.
        if let (Ty::Enum(e), Some(b'"')) = (&f.ty, raw.first()) {
            let info = &self.enums[e];
            let name = &raw[1..raw.len() - 1];
            if !info.values.contains_key(String::from_utf8_lossy(name).as_ref()) {
                return Err(format!("unknown value {} for enum {}", gojson::go_quote(name), info.go_name));
            }
            return Err(format!("invalid target \"slice\" for enum {}", info.go_name));
        }
        match gojson::kind(raw) {
            Kind::Null => Ok(None),
            Kind::Array => {
                let mut items = Vec::new();
                for el in gojson::array_elements(raw) {
                    match self.single(f, el, depth)? {
                        Some(v) => items.push(v),
                        // A null message element (Go leaves a nil pointer): an empty message.
                        None if matches!(f.ty, Ty::Message(_)) => items.push(Value::Object(Map::new())),
                        None => items.push(zero(&f.ty)),
                    }
                }
                Ok(Some(Value::Array(items)))
            }
            k => Err(type_error(k.go_name(), "[]json.RawMessage")),
        }
    }

    /// One value of field `f`; `None` when it leaves the field unset.
    fn single(&self, f: &Field, raw: &[u8], depth: usize) -> Result<Option<Value>, String> {
        let k = gojson::kind(raw);
        match &f.ty {
            Ty::Message(m) => {
                if k == Kind::Null {
                    return Ok(None);
                }
                self.message(m, raw, depth + 1).map(Some)
            }
            Ty::Enum(e) => {
                let info = &self.enums[e];
                if k == Kind::String {
                    let name = &raw[1..raw.len() - 1];
                    return match info.values.get(String::from_utf8_lossy(name).as_ref()) {
                        Some(n) if std::str::from_utf8(name).is_ok() => Ok(Some(Value::from(*n))),
                        _ => Err(format!("unknown value {} for enum {}", gojson::go_quote(name), info.go_name)),
                    };
                }
                match k {
                    Kind::Null => Ok(None),
                    Kind::Number => {
                        let lit = std::str::from_utf8(raw).unwrap_or_default();
                        let n: i32 = lit.parse().map_err(|_| number_error(lit, &info.go_name))?;
                        // pbjson only takes known values; Go keeps any number (an unknown one then
                        // behaves as no value for etcd's enums), so unknown numbers are dropped.
                        Ok(info.values.values().any(|v| *v == n).then(|| Value::from(n)))
                    }
                    k => Err(type_error(k.go_name(), &info.go_name)),
                }
            }
            Ty::Bytes => match k {
                Kind::Null => Ok(None),
                Kind::String => {
                    let s = gojson::unquote(raw);
                    let b = gojson::base64_decode(&s)?;
                    Ok(Some(Value::String(base64::engine::general_purpose::STANDARD.encode(b))))
                }
                Kind::Array => {
                    let mut b = Vec::new();
                    for el in gojson::array_elements(raw) {
                        match gojson::kind(el) {
                            Kind::Null => b.push(0),
                            Kind::Number => {
                                let lit = std::str::from_utf8(el).unwrap_or_default();
                                b.push(lit.parse::<u8>().map_err(|_| number_error(lit, "uint8"))?);
                            }
                            k => return Err(type_error(k.go_name(), "uint8")),
                        }
                    }
                    Ok(Some(Value::String(base64::engine::general_purpose::STANDARD.encode(b))))
                }
                k => Err(type_error(k.go_name(), "[]uint8")),
            },
            Ty::Bool => match k {
                Kind::Null => Ok(None),
                Kind::Bool => Ok(Some(Value::Bool(raw[0] == b't'))),
                k => Err(type_error(k.go_name(), "bool")),
            },
            Ty::String => match k {
                Kind::Null => Ok(None),
                Kind::String => Ok(Some(Value::String(String::from_utf8_lossy(&gojson::unquote(raw)).into_owned()))),
                k => Err(type_error(k.go_name(), "string")),
            },
            Ty::Int64 | Ty::Uint64 | Ty::Int32 | Ty::Uint32 | Ty::Float | Ty::Double => {
                // Quoted numbers: jsonpb strips the quotes and hands the rest to json.Unmarshal.
                let inner = if k == Kind::String { &raw[1..raw.len() - 1] } else { raw };
                if k == Kind::String {
                    gojson::check_valid(inner)?;
                }
                let inner = trim(inner);
                let go = match f.ty {
                    Ty::Int64 => "int64",
                    Ty::Uint64 => "uint64",
                    Ty::Int32 => "int32",
                    Ty::Uint32 => "uint32",
                    Ty::Float => "float32",
                    _ => "float64",
                };
                match gojson::kind(inner) {
                    Kind::Null => Ok(None),
                    Kind::Number => {
                        let lit = std::str::from_utf8(inner).unwrap_or_default();
                        let err = || number_error(lit, go);
                        Ok(Some(match f.ty {
                            Ty::Int64 => Value::String(lit.parse::<i64>().map_err(|_| err())?.to_string()),
                            Ty::Uint64 => Value::String(lit.parse::<u64>().map_err(|_| err())?.to_string()),
                            Ty::Int32 => Value::from(lit.parse::<i32>().map_err(|_| err())?),
                            Ty::Uint32 => Value::from(lit.parse::<u32>().map_err(|_| err())?),
                            _ => Value::from(lit.parse::<f64>().map_err(|_| err())?),
                        }))
                    }
                    k => Err(type_error(k.go_name(), go)),
                }
            }
        }
    }
}

fn zero(ty: &Ty) -> Value {
    match ty {
        Ty::Int64 | Ty::Uint64 => Value::String("0".into()),
        Ty::Bool => Value::Bool(false),
        Ty::String | Ty::Bytes => Value::String(String::new()),
        _ => Value::from(0),
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &b[start..end]
}

fn type_error(what: &str, go_type: &str) -> String {
    format!("json: cannot unmarshal {what} into Go value of type {go_type}")
}

fn number_error(lit: &str, go_type: &str) -> String {
    type_error(&format!("number {lit}"), go_type)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::FILE_DESCRIPTOR_SET;

    fn canon(msg: &str, body: &str) -> Result<Value, String> {
        let s = Schema::from_descriptor_set(FILE_DESCRIPTOR_SET).unwrap();
        s.canonical(&format!(".etcdserverpb.{msg}"), body.as_bytes())
    }

    #[test]
    fn accepts_what_etcd_accepts() {
        let v = canon(
            "RangeRequest",
            r#"{"key":"YQ==","rangeEnd":"eg==","range_end":"AA==","limit":"2","sort_order":"DESCEND","sortTarget":2,"serializable":null,"foo":1}"#,
        )
        .unwrap();
        assert_eq!(v, serde_json::json!({"key":"YQ==","range_end":"eg==","limit":"2","sort_order":2,"sort_target":2}));
        assert_eq!(canon("RangeRequest", "").unwrap(), serde_json::json!({}));
        assert_eq!(canon("RangeRequest", "null").unwrap(), serde_json::json!({}));
        assert_eq!(canon("PutRequest", r#"{"value":[104,105]}"#).unwrap(), serde_json::json!({"value":"aGk="}));
        let t = canon(
            "TxnRequest",
            r#"{"compare":[{"key":"YQ==","target":"MOD","mod_revision":"100","result":"GREATER"}],"success":[{"requestPut":{"key":"Yw=="}}]}"#,
        )
        .unwrap();
        assert_eq!(
            t,
            serde_json::json!({"compare":[{"key":"YQ==","target":2,"mod_revision":"100","result":1}],"success":[{"request_put":{"key":"Yw=="}}]})
        );
    }

    #[test]
    fn rejects_with_gos_messages() {
        let e = |m: &str, b: &str| canon(m, b).unwrap_err();
        assert_eq!(e("RangeRequest", r#"{"key":"YQ=""#), "unexpected EOF");
        assert_eq!(e("RangeRequest", r#"{"key":"YQ="}"#), "illegal base64 data at input byte 3");
        assert_eq!(e("RangeRequest", r#"{"key":123}"#), "json: cannot unmarshal number into Go value of type []uint8");
        assert_eq!(
            e("RangeRequest", "[]"),
            "json: cannot unmarshal array into Go value of type map[string]json.RawMessage"
        );
        assert_eq!(
            e("RangeRequest", r#"{"limit":1.5}"#),
            "json: cannot unmarshal number 1.5 into Go value of type int64"
        );
        assert_eq!(e("RangeRequest", r#"{"limit":"abc"}"#), "invalid character 'a' looking for beginning of value");
        assert_eq!(
            e("RangeRequest", r#"{"sort_order":"descend"}"#),
            "unknown value \"descend\" for enum etcdserverpb.RangeRequest_SortOrder"
        );
        assert_eq!(
            e("RangeRequest", r#"{"sort_order":true}"#),
            "json: cannot unmarshal bool into Go value of type etcdserverpb.RangeRequest_SortOrder"
        );
        assert_eq!(
            e("RangeRequest", r#"{"serializable":"true"}"#),
            "json: cannot unmarshal string into Go value of type bool"
        );
        assert_eq!(
            e("TxnRequest", r#"{"compare":{}}"#),
            "json: cannot unmarshal object into Go value of type []json.RawMessage"
        );
        assert_eq!(
            e("TxnRequest", r#"{"compare":[{"target":"FOO"}]}"#),
            "unknown value \"FOO\" for enum etcdserverpb.Compare_CompareTarget"
        );
        assert_eq!(
            e("PutRequest", r#"{"value":[300]}"#),
            "json: cannot unmarshal number 300 into Go value of type uint8"
        );
        assert_eq!(
            e("AlarmRequest", r#"{"memberID":-1}"#),
            "json: cannot unmarshal number -1 into Go value of type uint64"
        );
    }
}
