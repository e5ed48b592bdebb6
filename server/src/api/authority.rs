//! Repairs the `:authority` of HTTP/2 requests before they reach the HTTP/2 server, and bounds what a
//! connection may send before the server sees it.
//!
//! etcd's Go clients dial some calls (`etcdctl endpoint status`, `endpoint hashkv`, `move-leader`) with
//! the endpoint URL as the gRPC target, so they send `:authority: http://127.0.0.1:2379`. Go's server
//! accepts that; the `h2` crate rejects it with `PROTOCOL_ERROR`. [`FixAuthority`] wraps the client
//! connection and decodes its first request header block. If the authority is fine (the common case), the
//! connection is passed through untouched from then on. Otherwise it replaces the malformed authority by
//! its `host:port` and re-encodes that block and every later one of the connection (HPACK keeps
//! per-connection state, so once one block is re-encoded all must be). Other frames pass through
//! untouched; a connection that does not open with the HTTP/2 preface is passed through as it is.
//!
//! Limits (this reader sees a connection's bytes before any server does, so it must not be the weak spot):
//! - [`PROTOCOL_TIMEOUT`]: a connection that has neither sent the HTTP/2 preface nor shown itself to be
//!   something else (HTTP/1.1) by then is closed.
//! - [`MAX_FRAME`]: a frame announcing more is not waited for; it is handed to the HTTP/2 server at once,
//!   which refuses it (`FRAME_SIZE_ERROR`) on seeing its header, as Go's does.
//! - [`MAX_HEADER_LIST`]: the HTTP/2 server's header list limit. A header block (HEADERS + CONTINUATION)
//!   is collected up to that many encoded bytes and decoded up to that many header bytes; a bigger one,
//!   or a frame of another kind in the middle of one, is handed to the HTTP/2 server as received, which
//!   answers it as the protocol says. The HPACK table is held to the 4096 bytes HTTP/2 allows by default.
//!
//! So a connection costs at most about two header lists and one frame here, however it misbehaves. Once
//! blocks are being re-encoded, nothing can be handed over any more (the server's HPACK state follows
//! this reader's encoder); a misbehaving connection is then closed instead.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use loona_hpack::{Decoder, Encoder};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// How long a new connection has to send the HTTP/2 preface, or a first byte that shows it is not HTTP/2
/// (HTTP/1.1 then has the HTTP/1.1 server's header timeout). Clients send it right after connecting.
pub const PROTOCOL_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest frame payload the server accepts: HTTP/2's default SETTINGS_MAX_FRAME_SIZE, as Go's
/// servers keep it; the HTTP/2 server is configured with the same.
pub const MAX_FRAME: usize = 16_384;
/// The largest header list the server accepts (SETTINGS_MAX_HEADER_LIST_SIZE: names and values plus 32
/// bytes per field); the HTTP/2 server is configured with the same.
pub const MAX_HEADER_LIST: usize = 16_384;
/// HTTP/2's default SETTINGS_HEADER_TABLE_SIZE, which the server does not raise: a client's HPACK table
/// may not be bigger.
const HPACK_TABLE: usize = 4_096;
/// What a header field counts in a header list besides its name and value (RFC 7540, 6.5.2).
const FIELD_OVERHEAD: usize = 32;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Bytes read from the connection at a time while frames are looked at.
const READ_CHUNK: usize = 16 * 1024;

/// A header block being collected (HEADERS, then CONTINUATION until END_HEADERS).
struct Pending {
    stream: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
    /// The frames as received, for passing them on unchanged.
    raw: Vec<u8>,
}

/// What the reader does next with the connection.
enum Next {
    /// Look at more frames.
    More,
    /// Pass everything on untouched from here on.
    PassThrough,
}

/// The state of a connection still being looked at.
struct Reader {
    preface_seen: usize,
    /// Until the preface is complete: when the connection is closed if it is not.
    deadline: Option<Pin<Box<Sleep>>>,
    inbuf: BytesMut,
    decoder: Decoder<'static>,
    encoder: Encoder<'static>,
    pending: Option<Pending>,
    /// Whether header blocks are being re-encoded (after a first repair).
    rewriting: bool,
}

pub struct FixAuthority<S> {
    inner: S,
    /// `None` once the connection is passed through untouched (the reader's buffers and HPACK tables are
    /// then freed).
    reader: Option<Box<Reader>>,
    outbuf: BytesMut,
}

impl<S> FixAuthority<S> {
    /// Wraps a freshly accepted connection; needs a tokio runtime (for [`PROTOCOL_TIMEOUT`]).
    pub fn new(inner: S) -> FixAuthority<S> {
        FixAuthority::with_protocol_timeout(inner, PROTOCOL_TIMEOUT)
    }

    pub fn with_protocol_timeout(inner: S, timeout: Duration) -> FixAuthority<S> {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(HPACK_TABLE);
        let reader = Reader {
            preface_seen: 0,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            inbuf: BytesMut::new(),
            decoder,
            encoder: Encoder::new(),
            pending: None,
            rewriting: false,
        };
        FixAuthority { inner, reader: Some(Box::new(reader)), outbuf: BytesMut::new() }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl Reader {
    /// Moves every complete frame from `inbuf` to `out`, rewriting header blocks.
    fn process(&mut self, out: &mut BytesMut) -> io::Result<Next> {
        while self.preface_seen < PREFACE.len() && !self.inbuf.is_empty() {
            if self.inbuf[0] != PREFACE[self.preface_seen] {
                return Ok(Next::PassThrough);
            }
            self.preface_seen += 1;
            out.extend_from_slice(&self.inbuf.split_to(1));
        }
        if self.preface_seen < PREFACE.len() {
            return Ok(Next::More);
        }
        self.deadline = None;
        while self.inbuf.len() >= FRAME_HEADER {
            let len = u32::from_be_bytes([0, self.inbuf[0], self.inbuf[1], self.inbuf[2]]) as usize;
            if len > MAX_FRAME {
                // Not waited for: the HTTP/2 server refuses it as soon as it sees this header.
                return self.hand_over(out, &[]);
            }
            if self.inbuf.len() < FRAME_HEADER + len {
                break;
            }
            let frame = self.inbuf.split_to(FRAME_HEADER + len);
            let (kind, flags) = (frame[3], frame[4]);
            let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
            match (kind, self.pending.as_mut()) {
                (CONTINUATION, Some(p)) if p.stream == stream => {
                    p.block.extend_from_slice(&frame[FRAME_HEADER..]);
                    p.raw.extend_from_slice(&frame);
                    if p.block.len() > MAX_HEADER_LIST {
                        return self.hand_over(out, &[]);
                    }
                }
                // Only CONTINUATION may follow a HEADERS frame without END_HEADERS: the server answers
                // anything else as the protocol error it is.
                (_, Some(_)) => return self.hand_over(out, &frame),
                (HEADERS, None) => match headers_frame(stream, flags, &frame) {
                    Some(p) => self.pending = Some(p),
                    // Malformed: let the HTTP/2 server see it and answer as the protocol says.
                    None => return self.hand_over(out, &frame),
                },
                (_, None) => out.extend_from_slice(&frame),
            }
            if flags & END_HEADERS != 0 && self.pending.is_some() {
                if let Next::PassThrough = self.emit(out)? {
                    return Ok(Next::PassThrough);
                }
            }
        }
        Ok(Next::More)
    }

    /// Gives up on the connection: the pending header block (as received) and `then` go to `out`, and
    /// everything after passes through. Not possible once blocks are re-encoded: then an error that
    /// closes the connection.
    fn hand_over(&mut self, out: &mut BytesMut, then: &[u8]) -> io::Result<Next> {
        if self.rewriting {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "HTTP/2 frames the authority repair cannot pass on: an oversized frame or header block, or an \
                 interrupted one",
            ));
        }
        if let Some(p) = self.pending.take() {
            out.extend_from_slice(&p.raw);
        }
        out.extend_from_slice(then);
        Ok(Next::PassThrough)
    }

    /// Decodes the complete pending header block and passes it on, repaired and re-encoded if needed.
    fn emit(&mut self, out: &mut BytesMut) -> io::Result<Next> {
        let Some(p) = self.pending.take() else { return Ok(Next::More) };
        let mut headers = Vec::new();
        let mut size = 0usize;
        let decoded = self.decoder.decode_with_cb(&p.block, |name, value| {
            // Header fields taken from the HPACK table cost nothing to decode here; only what fits in a
            // header list is copied.
            size = size.saturating_add(name.len() + value.len() + FIELD_OVERHEAD);
            if size <= MAX_HEADER_LIST {
                headers.push((name.into_owned(), value.into_owned()));
            }
        });
        if decoded.is_err() || size > MAX_HEADER_LIST {
            // The HTTP/2 server answers it: a compression error, or a header list over its limit.
            self.pending = Some(p);
            return self.hand_over(out, &[]);
        }
        let mut repaired = false;
        for (name, value) in headers.iter_mut() {
            if name.as_slice() == b":authority" {
                if let Some(fixed) = repair_authority(value) {
                    *value = fixed;
                    repaired = true;
                }
            }
        }
        if !repaired && !self.rewriting {
            // A client sends one authority per connection: when its first request needs no repair, the
            // connection is passed through untouched from here on (the server's HPACK state then follows
            // the client's own encoding, as it must, since nothing was re-encoded).
            out.extend_from_slice(&p.raw);
            return Ok(Next::PassThrough);
        }
        // From the first repair on, every block of the connection is re-encoded by `encoder`.
        self.rewriting = true;
        let block = self.encoder.encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        let prio_len = if p.priority.is_some() { 5 } else { 0 };
        let first_room = MAX_FRAME - prio_len;
        let (first, mut rest) = block.split_at(block.len().min(first_room));
        let mut flags = p.flags & (END_STREAM | PRIORITY);
        if rest.is_empty() {
            flags |= END_HEADERS;
        }
        put_frame_header(out, prio_len + first.len(), HEADERS, flags, p.stream);
        if let Some(prio) = p.priority {
            out.extend_from_slice(&prio);
        }
        out.extend_from_slice(first);
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME));
            rest = tail;
            let flags = if rest.is_empty() { END_HEADERS } else { 0 };
            put_frame_header(out, chunk.len(), CONTINUATION, flags, p.stream);
            out.extend_from_slice(chunk);
        }
        Ok(Next::More)
    }
}

/// The header block fragment of a HEADERS frame (`frame` with its header), `None` if it is malformed.
fn headers_frame(stream: u32, flags: u8, frame: &[u8]) -> Option<Pending> {
    let payload = &frame[FRAME_HEADER..];
    let mut pos = 0;
    let mut pad = 0;
    if flags & PADDED != 0 {
        pad = *payload.first()? as usize;
        pos = 1;
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        priority = Some(payload.get(pos..pos + 5)?.try_into().ok()?);
        pos += 5;
    }
    if pos + pad > payload.len() {
        return None;
    }
    let block = payload[pos..payload.len() - pad].to_vec();
    Some(Pending { stream, flags, priority, block, raw: frame.to_vec() })
}

fn put_frame_header(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream: u32) {
    let l = (len as u32).to_be_bytes();
    out.extend_from_slice(&[l[1], l[2], l[3], kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
}

/// `host:port` for an authority that is not one (e.g. a URL); `None` when it is fine as it is.
fn repair_authority(v: &[u8]) -> Option<Vec<u8>> {
    let s = std::str::from_utf8(v).ok()?;
    if http::uri::Authority::try_from(s).is_ok() {
        return None;
    }
    let rest = s.split_once("://").map(|(_, r)| r).unwrap_or(s);
    let host = rest.split('/').next().unwrap_or_default();
    if http::uri::Authority::try_from(host).is_ok() && !host.is_empty() {
        Some(host.as_bytes().to_vec())
    } else {
        Some(b"localhost".to_vec())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FixAuthority<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.outbuf.is_empty() {
                let n = this.outbuf.len().min(buf.remaining());
                buf.put_slice(&this.outbuf[..n]);
                this.outbuf.advance(n);
                return Poll::Ready(Ok(()));
            }
            let Some(reader) = this.reader.as_mut() else {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            };
            let mut tmp = [0u8; READ_CHUNK];
            let mut rb = ReadBuf::new(&mut tmp);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if reader.deadline.as_mut().is_some_and(|d| d.as_mut().poll(cx).is_ready()) {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "no HTTP/2 preface nor HTTP/1.1 request in time",
                        )));
                    }
                    return Poll::Pending;
                }
            }
            let next = if rb.filled().is_empty() {
                // End of stream: hand over whatever is left, then EOF.
                if let Some(p) = reader.pending.take() {
                    this.outbuf.extend_from_slice(&p.raw);
                }
                Next::PassThrough
            } else {
                reader.inbuf.extend_from_slice(rb.filled());
                reader.process(&mut this.outbuf)?
            };
            if let Next::PassThrough = next {
                this.outbuf.extend_from_slice(&reader.inbuf);
                this.reader = None;
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FixAuthority<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for FixAuthority<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let l = (payload.len() as u32).to_be_bytes();
        let mut f = vec![l[1], l[2], l[3], kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// Reads everything the wrapper yields for `input` and decodes its header blocks.
    async fn run(input: Vec<u8>) -> (Vec<u8>, Vec<Vec<(Vec<u8>, Vec<u8>)>>) {
        let mut w = FixAuthority::new(std::io::Cursor::new(input));
        let mut out = Vec::new();
        w.read_to_end(&mut out).await.unwrap();
        let mut dec = Decoder::new();
        let mut blocks = Vec::new();
        let mut pos = PREFACE.len();
        let mut block = Vec::new();
        while out.starts_with(PREFACE) && pos + FRAME_HEADER <= out.len() {
            let len = u32::from_be_bytes([0, out[pos], out[pos + 1], out[pos + 2]]) as usize;
            let (kind, flags) = (out[pos + 3], out[pos + 4]);
            let payload = &out[pos + FRAME_HEADER..pos + FRAME_HEADER + len];
            if kind == HEADERS || kind == CONTINUATION {
                let skip = if kind == HEADERS && flags & PRIORITY != 0 { 5 } else { 0 };
                block.extend_from_slice(&payload[skip..]);
                if flags & END_HEADERS != 0 {
                    blocks.push(dec.decode(&block).unwrap());
                    block.clear();
                }
            }
            pos += FRAME_HEADER + len;
        }
        (out, blocks)
    }

    #[tokio::test]
    async fn rewrites_url_authorities_across_padding_continuations_and_dynamic_table() {
        let mut enc = Encoder::new();
        let req = |auth: &'static [u8]| {
            vec![
                (&b":method"[..], &b"POST"[..]),
                (b":authority", auth),
                (b":path", b"/etcdserverpb.Maintenance/Status"),
            ]
        };
        let b1 = enc.encode(req(b"http://127.0.0.1:2379"));
        // The second block refers to the first through the client's dynamic table.
        let b2 = enc.encode(req(b"http://127.0.0.1:2379"));
        let b3 = enc.encode(req(b"127.0.0.1:2379"));
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        let mut padded = vec![3u8];
        padded.extend_from_slice(&b1);
        padded.extend_from_slice(&[0, 0, 0]);
        input.extend(frame(HEADERS, END_HEADERS | PADDED, 1, &padded));
        input.extend(frame(0x0, END_STREAM, 1, b"data"));
        let (a, b) = b2.split_at(2);
        input.extend(frame(HEADERS, 0, 3, a));
        input.extend(frame(CONTINUATION, END_HEADERS, 3, b));
        input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 5, &b3));
        let (out, blocks) = run(input).await;
        assert!(out.starts_with(PREFACE));
        assert_eq!(blocks.len(), 3);
        for b in &blocks {
            assert_eq!(b[1], (b":authority".to_vec(), b"127.0.0.1:2379".to_vec()));
            assert_eq!(b[2].1, b"/etcdserverpb.Maintenance/Status".to_vec());
        }
        assert!(out.windows(4).any(|w| w == b"data"), "DATA frames pass through");
    }

    #[tokio::test]
    async fn a_connection_whose_authority_is_fine_passes_through_unchanged() {
        let mut enc = Encoder::new();
        let req = vec![
            (&b":method"[..], &b"POST"[..]),
            (b":authority", b"127.0.0.1:2379"),
            (b":path", b"/etcdserverpb.KV/Put"),
        ];
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[]));
        input.extend(frame(HEADERS, END_HEADERS, 1, &enc.encode(req.clone())));
        input.extend(frame(0x0, END_STREAM, 1, b"data"));
        // Refers to the client's dynamic table: only right if the first block reached the server as sent.
        input.extend(frame(HEADERS, END_HEADERS, 3, &enc.encode(req)));
        let (out, blocks) = run(input.clone()).await;
        assert_eq!(out, input);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[1][1].1, b"127.0.0.1:2379".to_vec());
    }

    #[tokio::test]
    async fn passes_through_what_is_not_http2() {
        let input = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        let (out, _) = run(input.clone()).await;
        assert_eq!(out, input);
    }

    /// Writes `input` into a connection that stays open and returns what the wrapper yields within a
    /// second: what it holds back (waiting for more) is missing.
    async fn yielded_while_open(input: Vec<u8>) -> io::Result<Vec<u8>> {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        client.write_all(&input).await.unwrap();
        let mut w = FixAuthority::new(server);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_secs(1), w.read(&mut buf)).await {
                Err(_) => return Ok(out),
                Ok(Ok(0)) => return Ok(out),
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    fn settings() -> Vec<u8> {
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[]));
        input
    }

    #[tokio::test]
    async fn an_oversized_frame_is_handed_on_at_once_not_waited_for() {
        let mut input = settings();
        // Announces 1 MiB; only its first bytes are sent.
        input.extend_from_slice(&[0x10, 0, 0, 0x0, 0, 0, 0, 0, 1]);
        input.extend_from_slice(&[7; 100]);
        assert_eq!(yielded_while_open(input.clone()).await.unwrap(), input);
    }

    #[tokio::test]
    async fn a_continuation_flood_is_handed_on_once_over_the_header_list_limit() {
        let mut input = settings();
        input.extend(frame(HEADERS, 0, 1, &[0x82]));
        for _ in 0..(2 * MAX_HEADER_LIST / 1000) {
            input.extend(frame(CONTINUATION, 0, 1, &[0x40; 1000]));
        }
        // Nothing is held back: the HTTP/2 server sees the flood and ends it.
        assert_eq!(yielded_while_open(input.clone()).await.unwrap(), input);
    }

    #[tokio::test]
    async fn a_header_block_that_decodes_to_megabytes_is_handed_on_undecoded() {
        // A 4000-byte value put in the HPACK table, then referred to 12000 times: 48 MB of headers.
        let mut block = vec![0x40, 1, b'x', 0x7f, 0xa1, 0x1e]; // literal, indexed: name "x", value 4000 bytes
        block.extend_from_slice(&[b'v'; 4000]);
        block.extend_from_slice(&[0xbe; 12_000]); // indexed field 62: the entry just added
        let mut input = settings();
        input.extend(frame(HEADERS, END_HEADERS, 1, &block));
        input.extend(frame(0x0, END_STREAM, 1, b"data"));
        assert_eq!(yielded_while_open(input.clone()).await.unwrap(), input);
    }

    #[tokio::test]
    async fn a_frame_inside_a_header_block_is_handed_on_in_order() {
        let mut enc = Encoder::new();
        let block = enc.encode(vec![(&b":authority"[..], &b"http://127.0.0.1:2379"[..])]);
        let mut input = settings();
        input.extend(frame(HEADERS, 0, 1, &block));
        input.extend(frame(0x6, 0, 0, &[0; 8])); // PING
        input.extend(frame(CONTINUATION, END_HEADERS, 1, &[]));
        assert_eq!(yielded_while_open(input.clone()).await.unwrap(), input);
    }

    #[tokio::test]
    async fn once_rewriting_a_connection_that_misbehaves_is_closed() {
        let mut enc = Encoder::new();
        let block = enc.encode(vec![(&b":authority"[..], &b"http://127.0.0.1:2379"[..])]);
        let mut input = settings();
        input.extend(frame(HEADERS, END_HEADERS, 1, &block));
        input.extend_from_slice(&[0x10, 0, 0, 0x0, 0, 0, 0, 0, 1]);
        let e = yielded_while_open(input).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn a_connection_without_a_protocol_is_closed_after_the_timeout() {
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(&PREFACE[..10]).await.unwrap();
        let mut w = FixAuthority::with_protocol_timeout(server, Duration::from_millis(100));
        let mut buf = [0u8; 64];
        // The partial preface is passed on as it comes, then the wait ends.
        assert_eq!(w.read(&mut buf).await.unwrap(), 10);
        let e = tokio::time::timeout(Duration::from_secs(5), w.read(&mut buf)).await.unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        // HTTP/1.1 is known from its first byte: no timeout from here.
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(b"GET").await.unwrap();
        let mut w = FixAuthority::with_protocol_timeout(server, Duration::from_millis(100));
        assert_eq!(w.read(&mut buf).await.unwrap(), 3);
        assert!(tokio::time::timeout(Duration::from_millis(300), w.read(&mut buf)).await.is_err());
    }

    #[test]
    fn repairs_only_malformed_authorities() {
        assert_eq!(repair_authority(b"127.0.0.1:2379"), None);
        assert_eq!(repair_authority(b"http://127.0.0.1:2379"), Some(b"127.0.0.1:2379".to_vec()));
        assert_eq!(repair_authority(b"https://[::1]:2379/"), Some(b"[::1]:2379".to_vec()));
        assert_eq!(repair_authority(b"/var/run/etcd.sock"), Some(b"localhost".to_vec()));
    }
}
