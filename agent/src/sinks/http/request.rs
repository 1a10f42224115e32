//! The POST for a batch: body parts, id headers and the plugin's headers.
//!
//! A single message is posted as it is, with its id as `Idempotency-Key`. A batch body
//! is `[m1,m2,…]` (the messages' bytes, never re-encoded), with `Idempotency-Key:
//! <first id>-<last id>` and every id, in order, in `Outpost-Message-Ids`: a retry
//! may cut the FIFO into different batches, so receivers de-duplicate per message.

use std::fmt::Write as _;

use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use hyper::{HeaderMap, Method, Request, Uri};

use super::body::Chunks;
use super::{IDEMPOTENCY_KEY, MESSAGE_IDS};
use crate::queue::StoredMessage;
use crate::sinks::{DeliveryError, Failure};

/// The body of `batch` (never empty): the message itself if alone, else a JSON array,
/// as buffers to be written one after the other.
pub(super) fn body_parts(batch: &[StoredMessage]) -> Vec<Bytes> {
    if let [message] = batch {
        return vec![message.payload.clone()];
    }
    let mut parts = Vec::with_capacity(batch.len() * 2 + 1);
    for m in batch {
        let separator = if parts.is_empty() { "[" } else { "," };
        parts.push(Bytes::from_static(separator.as_bytes()));
        parts.push(m.payload.clone());
    }
    parts.push(Bytes::from_static(b"]"));
    parts
}

/// The POST of `body` for `batch`: the sink's `headers` (which may carry
/// `Proxy-Authorization`), the ids, `Content-Encoding` if the body is compressed, then
/// the first message's plugin headers.
pub(super) fn build(
    uri: &Uri,
    headers: &HeaderMap,
    batch: &[StoredMessage],
    encoding: Option<&'static str>,
    body: Chunks,
) -> Result<Request<Chunks>, DeliveryError> {
    let (first, last) = match batch {
        [first, .., last] => (first, last),
        [message] => (message, message),
        [] => unreachable!("the delivery loop never sends an empty batch"),
    };
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(uri.clone())
        .header(CONTENT_TYPE, first.content_type.as_str());
    if batch.len() == 1 {
        builder = builder.header(IDEMPOTENCY_KEY, first.idempotency_key().as_ref());
    } else {
        let mut ids = String::with_capacity(batch.len() * 33);
        for m in batch {
            if !ids.is_empty() {
                ids.push(',');
            }
            write!(ids, "{}", m.idempotency_key()).expect("writing to a String cannot fail");
        }
        let (a, b) = (first.idempotency_key(), last.idempotency_key());
        builder = builder
            .header(IDEMPOTENCY_KEY, format!("{a}-{b}"))
            .header(MESSAGE_IDS, ids);
    }
    if let Some(encoding) = encoding {
        builder = builder.header(CONTENT_ENCODING, encoding);
    }
    let mut request = builder
        .body(body)
        .map_err(|e| DeliveryError::Permanent(Failure::InvalidHeader(e.to_string())))?;
    let request_headers = request.headers_mut();
    for (name, value) in headers {
        request_headers.insert(name, value.clone());
    }
    for (name, value) in &first.headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                request_headers.insert(name, value);
            }
            _ => {
                return Err(DeliveryError::Permanent(Failure::InvalidHeader(
                    name.clone(),
                )))
            }
        }
    }
    Ok(request)
}
