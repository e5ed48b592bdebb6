//! Repairs the `:authority` of HTTP/2 requests before they reach the HTTP/2 server.
//!
//! etcd's Go clients dial some calls (`etcdctl endpoint status`, `endpoint hashkv`, `move-leader`) with
//! the endpoint URL as the gRPC target, so they send `:authority: http://127.0.0.1:2379`. Go's server
//! accepts that; the `h2` crate rejects it with `PROTOCOL_ERROR`. [`FixAuthority`] wraps the client
//! connection and decodes its first request header block. If the authority is fine (the common case), the
//! connection is passed through untouched from then on. Otherwise it replaces the malformed authority by
//! its `host:port` and re-encodes that block and every later one of the connection (HPACK keeps
//! per-connection state, so once one block is re-encoded all must be). Other frames pass through
//! untouched; a connection that does not open with the HTTP/2 preface is passed through as it is.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use loona_hpack::{Decoder, Encoder};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The largest frame the server accepts (HTTP/2's default SETTINGS_MAX_FRAME_SIZE).
const MAX_FRAME: usize = 16_384;

struct Pending {
    stream: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
    /// The frames as received, for passing them on unchanged.
    raw: Vec<u8>,
}

pub struct FixAuthority<S> {
    inner: S,
    preface_seen: usize,
    passthrough: bool,
    inbuf: BytesMut,
    outbuf: BytesMut,
    decoder: Decoder<'static>,
    encoder: Encoder<'static>,
    pending: Option<Pending>,
    /// Whether header blocks are being re-encoded (after a first repair).
    rewriting: bool,
}

impl<S> FixAuthority<S> {
    pub fn new(inner: S) -> FixAuthority<S> {
        FixAuthority {
            inner,
            preface_seen: 0,
            passthrough: false,
            inbuf: BytesMut::new(),
            outbuf: BytesMut::new(),
            decoder: Decoder::new(),
            encoder: Encoder::new(),
            pending: None,
            rewriting: false,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn give_up(&mut self) {
        self.passthrough = true;
        let rest = self.inbuf.split();
        self.outbuf.extend_from_slice(&rest);
    }

    /// Moves every complete frame from `inbuf` to `outbuf`, rewriting header blocks.
    fn process(&mut self) -> std::io::Result<()> {
        while self.preface_seen < PREFACE.len() && !self.inbuf.is_empty() {
            if self.inbuf[0] != PREFACE[self.preface_seen] {
                self.give_up();
                return Ok(());
            }
            self.preface_seen += 1;
            let b = self.inbuf.split_to(1);
            self.outbuf.extend_from_slice(&b);
        }
        if self.preface_seen < PREFACE.len() {
            return Ok(());
        }
        while self.inbuf.len() >= FRAME_HEADER {
            let len = u32::from_be_bytes([0, self.inbuf[0], self.inbuf[1], self.inbuf[2]]) as usize;
            if self.inbuf.len() < FRAME_HEADER + len {
                break;
            }
            let frame = self.inbuf.split_to(FRAME_HEADER + len);
            let (kind, flags) = (frame[3], frame[4]);
            let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
            let payload = &frame[FRAME_HEADER..];
            match kind {
                HEADERS => {
                    let mut pos = 0;
                    let mut pad = 0;
                    if flags & PADDED != 0 {
                        pad = *payload.first().unwrap_or(&0) as usize;
                        pos = 1;
                    }
                    let mut priority = None;
                    if flags & PRIORITY != 0 {
                        priority = payload.get(pos..pos + 5).and_then(|p| p.try_into().ok());
                        pos += 5;
                    }
                    if pos + pad > payload.len() || (flags & PRIORITY != 0 && priority.is_none()) {
                        // Malformed: let the HTTP/2 server see it and answer as the protocol says.
                        self.outbuf.extend_from_slice(&frame);
                        self.give_up();
                        return Ok(());
                    }
                    let block = payload[pos..payload.len() - pad].to_vec();
                    self.pending = Some(Pending { stream, flags, priority, block, raw: frame.to_vec() });
                    if flags & END_HEADERS != 0 {
                        self.emit()?;
                    }
                }
                CONTINUATION if self.pending.as_ref().is_some_and(|p| p.stream == stream) => {
                    if let Some(p) = self.pending.as_mut() {
                        p.block.extend_from_slice(payload);
                        p.raw.extend_from_slice(&frame);
                    }
                    if flags & END_HEADERS != 0 {
                        self.emit()?;
                    }
                }
                _ => self.outbuf.extend_from_slice(&frame),
            }
        }
        Ok(())
    }

    fn emit(&mut self) -> std::io::Result<()> {
        let Some(p) = self.pending.take() else { return Ok(()) };
        let mut headers = self
            .decoder
            .decode(&p.block)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("HPACK: {e:?}")))?;
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
            self.outbuf.extend_from_slice(&p.raw);
            self.give_up();
            return Ok(());
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
        self.frame_header(prio_len + first.len(), HEADERS, flags, p.stream);
        if let Some(prio) = p.priority {
            self.outbuf.extend_from_slice(&prio);
        }
        self.outbuf.extend_from_slice(first);
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME));
            rest = tail;
            let flags = if rest.is_empty() { END_HEADERS } else { 0 };
            self.frame_header(chunk.len(), CONTINUATION, flags, p.stream);
            self.outbuf.extend_from_slice(chunk);
        }
        Ok(())
    }

    fn frame_header(&mut self, len: usize, kind: u8, flags: u8, stream: u32) {
        let l = (len as u32).to_be_bytes();
        self.outbuf.extend_from_slice(&[l[1], l[2], l[3], kind, flags]);
        self.outbuf.extend_from_slice(&stream.to_be_bytes());
    }
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
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.outbuf.is_empty() {
                let n = this.outbuf.len().min(buf.remaining());
                buf.put_slice(&this.outbuf[..n]);
                this.outbuf.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.passthrough {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut tmp = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut tmp);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                // End of stream: hand over whatever incomplete bytes are left, then EOF.
                if this.inbuf.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                this.give_up();
                continue;
            }
            this.inbuf.extend_from_slice(rb.filled());
            this.process()?;
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
    use tokio::io::AsyncReadExt;

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

    #[test]
    fn repairs_only_malformed_authorities() {
        assert_eq!(repair_authority(b"127.0.0.1:2379"), None);
        assert_eq!(repair_authority(b"http://127.0.0.1:2379"), Some(b"127.0.0.1:2379".to_vec()));
        assert_eq!(repair_authority(b"https://[::1]:2379/"), Some(b"[::1]:2379".to_vec()));
        assert_eq!(repair_authority(b"/var/run/etcd.sock"), Some(b"localhost".to_vec()));
    }
}
