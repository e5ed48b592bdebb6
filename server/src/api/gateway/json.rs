//! Response encoding as etcd 3.4's grpc-gateway writes it: the pbjson-generated `Serialize` impls
//! (proto field names, 64-bit integers as strings, zero values omitted) through a formatter that
//! escapes strings as Go's `encoding/json` does, plus the error bodies and the gRPC → HTTP status
//! table of grpc-gateway v1.

use std::io;

use axum::http::StatusCode;
use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter};
use tonic::Code;

/// Escapes strings as Go's `json.Marshal`: `<`, `>`, `&`, U+2028 and U+2029 as `\u` escapes, and
/// control characters other than `\n`, `\r`, `\t` as `\u00XX` (Go 1.19 has no `\b` / `\f`).
pub struct GoFormatter;

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, w: &mut W, fragment: &str) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let esc = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            w.write_all(&fragment.as_bytes()[start..i])?;
            w.write_all(esc.as_bytes())?;
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }

    fn write_char_escape<W: ?Sized + io::Write>(&mut self, w: &mut W, escape: CharEscape) -> io::Result<()> {
        let s: String = match escape {
            CharEscape::Quote => "\\\"".into(),
            CharEscape::ReverseSolidus => "\\\\".into(),
            CharEscape::LineFeed => "\\n".into(),
            CharEscape::CarriageReturn => "\\r".into(),
            CharEscape::Tab => "\\t".into(),
            CharEscape::Solidus => "/".into(),
            CharEscape::Backspace => "\\u0008".into(),
            CharEscape::FormFeed => "\\u000c".into(),
            CharEscape::AsciiControl(b) => format!("\\u{b:04x}"),
        };
        w.write_all(s.as_bytes())
    }
}

/// `value` as Go's jsonpb (`OrigName: true`, `EmitDefaults: false`) writes it.
pub fn to_go_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    value.serialize(&mut ser)?;
    Ok(out)
}

/// grpc-gateway v1's `HTTPStatusFromCode`.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Aborted => StatusCode::CONFLICT,
        Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// grpc-gateway's `errorBody` (`error`, `message`, `code`; empty ones omitted as jsonpb does).
#[derive(Serialize)]
struct ErrorBody<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    error: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    #[serde(skip_serializing_if = "is_zero")]
    code: i32,
}

fn is_zero(c: &i32) -> bool {
    *c == 0
}

/// The body of a unary call's error: `{"error":…,"message":…,"code":N}`.
pub fn error_body(code: Code, message: &str) -> Vec<u8> {
    to_go_json(&ErrorBody { error: message, message, code: code as i32 }).unwrap_or_default()
}

/// grpc-gateway's `StreamError`, as a streaming call reports a failure.
#[derive(Serialize)]
struct StreamError<'a> {
    #[serde(skip_serializing_if = "is_zero")]
    grpc_code: i32,
    #[serde(skip_serializing_if = "is_zero")]
    http_code: i32,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    http_status: &'a str,
}

/// The body of a streaming call's error: `{"error":{"grpc_code":…,"http_code":…,"message":…,"http_status":…}}`.
pub fn stream_error_body(code: Code, message: &str) -> Vec<u8> {
    let status = http_status(code);
    let e = StreamError {
        grpc_code: code as i32,
        http_code: i32::from(status.as_u16()),
        message,
        http_status: status.canonical_reason().unwrap_or_default(),
    };
    to_go_json(&ErrorChunk { error: e }).unwrap_or_default()
}

#[derive(Serialize)]
struct ErrorChunk<'a> {
    error: StreamError<'a>,
}

#[derive(Serialize)]
struct ResultChunk<'a, T> {
    result: &'a T,
}

/// One message of a streaming response: `{"result":…}` and grpc-gateway's newline delimiter.
pub fn result_chunk<T: Serialize>(message: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut b = to_go_json(&ResultChunk { result: message })?;
    b.push(b'\n');
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::{RangeResponse, ResponseHeader};
    use crate::proto::mvccpb::KeyValue;

    #[test]
    fn writes_what_etcds_gateway_writes() {
        let r = RangeResponse {
            header: Some(ResponseHeader { cluster_id: 1, member_id: 2, revision: 3, raft_term: 0 }),
            kvs: vec![KeyValue {
                key: b"a".to_vec(),
                create_revision: 2,
                mod_revision: 2,
                version: 1,
                ..Default::default()
            }],
            more: false,
            count: 1,
        };
        assert_eq!(
            String::from_utf8(to_go_json(&r).unwrap()).unwrap(),
            r#"{"header":{"cluster_id":"1","member_id":"2","revision":"3"},"kvs":[{"key":"YQ==","create_revision":"2","mod_revision":"2","version":"1"}],"count":"1"}"#
        );
        assert_eq!(
            String::from_utf8(error_body(Code::OutOfRange, "a <b> & \u{8}")).unwrap(),
            r#"{"error":"a \u003cb\u003e \u0026 \u0008","message":"a \u003cb\u003e \u0026 \u0008","code":11}"#
        );
        assert_eq!(
            String::from_utf8(stream_error_body(Code::Unimplemented, "x")).unwrap(),
            r#"{"error":{"grpc_code":12,"http_code":501,"message":"x","http_status":"Not Implemented"}}"#
        );
    }
}
