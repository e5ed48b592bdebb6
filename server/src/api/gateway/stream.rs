//! The request side of the gateway's bidirectional calls (`/v3/watch`, `/v3/lease/keepalive`): JSON
//! values read from the body as they arrive, as grpc-gateway forwards each one to the gRPC stream
//! while the client is still sending. Memory is bounded by the largest request, not the body; each
//! byte is scanned once.

use axum::body::Body;
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use tonic::Status;

use super::gojson::Splitter;
use super::jsonpb::Schema;

/// Reads one bidirectional call's requests from its body.
pub(super) struct BodyRequests {
    body: axum::body::BodyDataStream,
    buf: Vec<u8>,
    split: Splitter,
    ended: bool,
    schema: &'static Schema,
    input: String,
    max_recv: usize,
    /// The most bytes one request may take in JSON before it is refused as too large.
    max_json: usize,
}

impl BodyRequests {
    pub(super) fn new(body: Body, schema: &'static Schema, input: String, max_recv: usize, max_json: usize) -> Self {
        BodyRequests {
            body: body.into_data_stream(),
            buf: Vec::new(),
            split: Splitter::default(),
            ended: false,
            schema,
            input,
            max_recv,
            max_json,
        }
    }

    /// The next request: `None` at the end of the body, an error for a bad value (which ends the call's
    /// requests), waiting for more of the body as long as a value is incomplete.
    pub(super) async fn next<Req>(&mut self) -> Option<Result<Req, Status>>
    where
        Req: prost::Message + DeserializeOwned,
    {
        let (start, end) = loop {
            let found = if self.ended { self.split.finish(&self.buf) } else { self.split.feed(&self.buf) };
            match found {
                Err(e) => return Some(Err(Status::unknown(e))),
                Ok(Some(span)) => break span,
                Ok(None) if self.ended => return None,
                Ok(None) => {}
            }
            if self.buf.len() > self.max_json {
                return Some(Err(super::too_large(self.buf.len(), self.max_recv)));
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                // A broken body ends the requests as the end of the body does.
                Some(Err(_)) | None => self.ended = true,
            }
        };
        let req = self
            .schema
            .canonical_value(&self.input, &self.buf[start..end])
            .map_err(Status::unknown)
            .and_then(|v| serde_json::from_value::<Req>(v).map_err(|e| Status::unknown(e.to_string())))
            .and_then(|r| {
                let len = r.encoded_len();
                if len > self.max_recv {
                    Err(super::too_large(len, self.max_recv))
                } else {
                    Ok(r)
                }
            });
        self.buf.drain(..end);
        self.split.reset();
        Some(req)
    }

    /// Every request until the end of the body or the first bad one.
    pub(super) fn into_stream<Req>(self) -> impl Stream<Item = Req> + Send + 'static
    where
        Req: prost::Message + DeserializeOwned + Send + 'static,
    {
        futures::stream::unfold(Some(self), |reader| async move {
            let mut reader = reader?;
            match reader.next::<Req>().await {
                Some(Ok(r)) => Some((r, Some(reader))),
                _ => None,
            }
        })
    }
}
