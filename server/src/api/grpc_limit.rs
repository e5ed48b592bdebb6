//! gRPC's receive limit as etcd's server applies it: a request message announcing more bytes than the
//! limit is refused with `ResourceExhausted` and `grpc: received message larger than max (N vs. M)` as soon
//! as its 5-byte prefix arrives (grpc-go reads the prefix, then checks, then reads the message), so the
//! message is neither waited for nor buffered.
//!
//! [`layer`] wraps the body of every gRPC request in a [`LimitedBody`], which follows the message
//! framing (1 byte compression flag, 4 bytes length, the message) and turns an oversized prefix into the
//! error; tonic passes a `Status` it finds in a body error on to the caller as it is.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::Request;
use http_body::Frame;

const PREFIX: usize = 5;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The refusal of a message of `len` bytes over the limit `max`, in grpc-go's words.
pub fn too_large(len: usize, max: usize) -> tonic::Status {
    tonic::Status::resource_exhausted(format!("grpc: received message larger than max ({len} vs. {max})"))
}

/// A layer limiting the messages of every request to `max` bytes.
pub fn layer(
    max: usize,
) -> tower::util::MapRequestLayer<impl FnMut(Request<Body>) -> Request<Body> + Clone + Send + Sync + 'static> {
    tower::util::MapRequestLayer::new(move |req: Request<Body>| req.map(|b| Body::new(LimitedBody::new(b, max))))
}

/// A gRPC request body whose messages may not be longer than `max` bytes.
pub struct LimitedBody<B> {
    inner: B,
    max: usize,
    /// The prefix of the next message, as far as it has come.
    prefix: [u8; PREFIX],
    prefix_len: usize,
    /// Bytes of the current message still to come.
    remaining: usize,
    /// The refusal, once the data before the oversized message has been passed on.
    refusal: Option<tonic::Status>,
    done: bool,
}

impl<B> LimitedBody<B> {
    pub fn new(inner: B, max: usize) -> LimitedBody<B> {
        LimitedBody { inner, max, prefix: [0; PREFIX], prefix_len: 0, remaining: 0, refusal: None, done: false }
    }

    /// Follows the framing through `data`; where a message over the limit starts (its offset in `data`,
    /// 0 when its prefix began in an earlier chunk) and its length.
    fn scan(&mut self, data: &[u8]) -> Option<(usize, usize)> {
        let mut start = 0;
        let mut i = 0;
        while i < data.len() {
            if self.remaining > 0 {
                let n = self.remaining.min(data.len() - i);
                self.remaining -= n;
                i += n;
                continue;
            }
            if self.prefix_len == 0 {
                start = i;
            }
            self.prefix[self.prefix_len] = data[i];
            self.prefix_len += 1;
            i += 1;
            if self.prefix_len == PREFIX {
                self.prefix_len = 0;
                let p = &self.prefix;
                let len = u32::from_be_bytes([p[1], p[2], p[3], p[4]]) as usize;
                if len > self.max {
                    return Some((start, len));
                }
                self.remaining = len;
            }
        }
        None
    }
}

impl<B> http_body::Body for LimitedBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(status) = this.refusal.take() {
            this.done = true;
            return Poll::Ready(Some(Err(Box::new(status))));
        }
        if this.done {
            return Poll::Ready(None);
        }
        let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            None => return Poll::Ready(None),
            Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            Some(Ok(frame)) => frame,
        };
        let Some(data) = frame.data_ref() else { return Poll::Ready(Some(Ok(frame))) };
        let Some((start, len)) = this.scan(data) else { return Poll::Ready(Some(Ok(frame))) };
        let status = too_large(len, this.max);
        if start == 0 {
            this.done = true;
            return Poll::Ready(Some(Err(Box::new(status))));
        }
        // The messages before the oversized one are passed on first, as grpc-go reads them first.
        let before = data.slice(..start);
        this.refusal = Some(status);
        Poll::Ready(Some(Ok(Frame::data(before))))
    }

    fn is_end_stream(&self) -> bool {
        self.done || (self.refusal.is_none() && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        if self.done {
            http_body::SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A body of the given chunks.
    struct Chunks(VecDeque<Bytes>);

    impl http_body::Body for Chunks {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.pop_front().map(|c| Ok(Frame::data(c))))
        }
    }

    fn message(len: usize) -> Vec<u8> {
        let mut m = vec![0];
        m.extend_from_slice(&(len as u32).to_be_bytes());
        m.extend(std::iter::repeat_n(b'm', len));
        m
    }

    /// The chunks and the error (as a `Status`) a body of `chunks` yields with limit `max`.
    async fn run(chunks: Vec<Vec<u8>>, max: usize) -> (Vec<Vec<u8>>, Option<tonic::Status>) {
        let mut body = LimitedBody::new(Chunks(chunks.into_iter().map(Bytes::from).collect()), max);
        let mut out = Vec::new();
        while let Some(f) = std::future::poll_fn(|cx| http_body::Body::poll_frame(Pin::new(&mut body), cx)).await {
            match f {
                Ok(f) => out.push(f.into_data().unwrap().to_vec()),
                Err(e) => return (out, Some(*e.downcast::<tonic::Status>().unwrap())),
            }
        }
        (out, None)
    }

    #[tokio::test]
    async fn messages_up_to_the_limit_pass_unchanged() {
        let mut two = message(10);
        two.extend(message(0));
        let chunks = vec![two[..3].to_vec(), two[3..].to_vec(), message(10)];
        let (out, err) = run(chunks.clone(), 10).await;
        assert_eq!(out, chunks);
        assert!(err.is_none(), "{err:?}");
    }

    #[tokio::test]
    async fn an_oversized_message_is_refused_on_its_prefix_after_the_messages_before_it() {
        let mut data = message(4);
        // Only the prefix of the big one and a few of its bytes have come.
        data.extend_from_slice(&message(3_000_000)[..100]);
        let (out, err) = run(vec![data.clone()], 2_097_152).await;
        assert_eq!(out, vec![message(4)]);
        let err = err.unwrap();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert_eq!(err.message(), "grpc: received message larger than max (3000000 vs. 2097152)");
        // Its prefix split over two chunks.
        let big = message(11);
        let (out, err) = run(vec![big[..2].to_vec(), big[2..].to_vec()], 10).await;
        assert_eq!(out, vec![big[..2].to_vec()]);
        assert_eq!(err.unwrap().message(), "grpc: received message larger than max (11 vs. 10)");
    }
}
