//! A gRPC client that stops reading: [`StalledCall::start`] opens an HTTP/2 connection by hand, starts
//! one call with the messages given, and then never reads the socket and never grants flow-control
//! window. The server may send at most the initial 65,535 bytes of DATA on the connection (HTTP/2's
//! default connection window, which only WINDOW_UPDATE frames can raise); everything else it wants to
//! send must wait, and what it keeps meanwhile is what the hostile-input tests measure.
//!
//! Only as much HTTP/2 as that needs: the connection preface and SETTINGS exchange, one HEADERS frame
//! (HPACK literals without indexing, no Huffman coding), DATA frames carrying gRPC length-prefixed
//! messages.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::h2frame::{frame, ACK, DATA, END_HEADERS, END_STREAM, HEADERS, MAX_FRAME, PREFACE, SETTINGS};

/// One call on a connection of its own whose client has stopped reading. Dropping it closes the
/// connection.
pub struct StalledCall {
    sock: TcpStream,
}

impl StalledCall {
    /// Connects to `127.0.0.1:port`, answers the server's SETTINGS, starts `path`
    /// (`/package.Service/Method`) on stream 1 with the protobuf-encoded `messages`, half-closing the
    /// request side if `end_stream`, and from then on reads nothing.
    #[track_caller]
    pub fn start(port: u16, path: &str, messages: &[Vec<u8>], end_stream: bool) -> StalledCall {
        let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connect :{port}: {e}"));
        sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        sock.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        sock.set_nodelay(true).unwrap();
        let mut out = PREFACE.to_vec();
        out.extend(frame(SETTINGS, 0, 0, &[]));
        sock.write_all(&out).expect("send the connection preface");
        await_server_settings(&mut sock);
        let mut out = frame(SETTINGS, ACK, 0, &[]);
        let authority = format!("127.0.0.1:{port}");
        let headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", authority.as_str()),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ];
        let block: Vec<u8> = headers.iter().flat_map(|(n, v)| hpack_literal(n, v)).collect();
        let no_data = messages.is_empty() && end_stream;
        out.extend(frame(HEADERS, END_HEADERS | if no_data { END_STREAM } else { 0 }, 1, &block));
        let mut body = Vec::new();
        for m in messages {
            body.push(0); // not compressed
            body.extend((m.len() as u32).to_be_bytes());
            body.extend(m);
        }
        let chunks: Vec<&[u8]> = body.chunks(MAX_FRAME).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            out.extend(frame(DATA, if last && end_stream { END_STREAM } else { 0 }, 1, chunk));
        }
        sock.write_all(&out).expect("start the call");
        StalledCall { sock }
    }

    /// The connection's socket (e.g. to check that the server has not closed it).
    pub fn socket(&self) -> &TcpStream {
        &self.sock
    }
}

/// Reads frames until the server's own (non-ACK) SETTINGS frame, which every HTTP/2 server sends first.
#[track_caller]
fn await_server_settings(sock: &mut TcpStream) {
    loop {
        let mut head = [0u8; 9];
        sock.read_exact(&mut head).expect("the server's first frames");
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        sock.read_exact(&mut payload).expect("a frame payload");
        if head[3] == SETTINGS && head[4] & ACK == 0 {
            return;
        }
    }
}

/// HPACK "literal header field without indexing, new name" with both strings as raw octets.
fn hpack_literal(name: &str, value: &str) -> Vec<u8> {
    let mut out = vec![0u8];
    for s in [name, value] {
        hpack_int(&mut out, 0, 7, s.len());
        out.extend(s.as_bytes());
    }
    out
}

/// HPACK's integer representation with an `n`-bit prefix (RFC 7541, 5.1), after the `high` bits.
fn hpack_int(out: &mut Vec<u8>, high: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(high | v as u8);
        return;
    }
    out.push(high | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpack_integers_and_frames() {
        // RFC 7541 C.1.1 and C.1.2: 10 and 1337 with a 5-bit prefix.
        let mut out = Vec::new();
        hpack_int(&mut out, 0, 5, 10);
        hpack_int(&mut out, 0, 5, 1337);
        assert_eq!(out, vec![10, 31, 154, 10]);
        assert_eq!(hpack_literal("te", "trailers"), b"\x00\x02te\x08trailers".to_vec());
        assert_eq!(frame(DATA, END_STREAM, 1, b"ab"), vec![0, 0, 2, 0, 1, 0, 0, 0, 1, b'a', b'b']);
    }
}
