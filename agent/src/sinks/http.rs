//! HTTP transport: POSTs over a pooled keep-alive connection, one message per request
//! or, with `batch_max_messages > 1`, a JSON array of consecutive JSON messages.
//!
//! A single message is posted as it is, with its id as `Idempotency-Key`. A batch body
//! is `[m1,m2,…]` (the messages' bytes, never re-encoded), with `Idempotency-Key:
//! <first id>-<last id>` and every id, in order, in `Outpost-Message-Ids`: a retry
//! may cut the FIFO into different batches, so receivers de-duplicate per message.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{HeaderMap, Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::{DeliveryError, Failure, Partial, Transport};
use crate::config::HttpSinkConfig;
use crate::queue::StoredMessage;

/// Header carrying the message id, so the receiver can drop duplicates.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Header listing the ids of a batch's messages, comma-separated, in body order.
pub const MESSAGE_IDS: &str = "outpost-message-ids";

/// How much of an error response body is kept for the dead-letter reason.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

pub(super) struct HttpTransport {
    client: Client<HttpConnector, Chunks>,
    uri: Uri,
    timeout: Duration,
    headers: HeaderMap,
    batch_max_messages: usize,
    batch_max_bytes: usize,
}

impl HttpTransport {
    pub fn new(config: &HttpSinkConfig) -> anyhow::Result<Self> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(HttpTransport {
            client,
            uri: config.url.clone(),
            timeout: config.timeout,
            headers: config.headers.clone(),
            batch_max_messages: config.batch_max_messages,
            batch_max_bytes: config.batch_max_bytes,
        })
    }

    /// The request for `batch`: the message itself if alone, else a JSON array.
    fn request(&self, batch: &[StoredMessage]) -> Result<Request<Chunks>, DeliveryError> {
        let (first, last) = match batch {
            [first, .., last] => (first, last),
            [message] => (message, message),
            [] => unreachable!("the delivery loop never sends an empty batch"),
        };
        let builder = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(CONTENT_TYPE, first.content_type.as_str());
        let (builder, body) = if batch.len() == 1 {
            let body = Chunks::from(vec![first.payload.clone()]);
            (builder.header(IDEMPOTENCY_KEY, first.id.to_string()), body)
        } else {
            let mut ids = String::with_capacity(batch.len() * 33);
            let mut chunks = Vec::with_capacity(batch.len() * 2 + 1);
            for m in batch {
                let separator = if chunks.is_empty() { "[" } else { "," };
                chunks.push(Bytes::from_static(separator.as_bytes()));
                chunks.push(m.payload.clone());
                if !ids.is_empty() {
                    ids.push(',');
                }
                write!(ids, "{}", m.id).expect("writing to a String cannot fail");
            }
            chunks.push(Bytes::from_static(b"]"));
            let builder = builder
                .header(IDEMPOTENCY_KEY, format!("{}-{}", first.id, last.id))
                .header(MESSAGE_IDS, ids);
            (builder, Chunks::from(chunks))
        };
        let mut request = builder
            .body(body)
            .map_err(|e| DeliveryError::Permanent(Failure::InvalidHeader(e.to_string())))?;
        let headers = request.headers_mut();
        for (name, value) in &self.headers {
            headers.insert(name, value.clone());
        }
        for (name, value) in &first.headers {
            match (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                (Ok(name), Ok(value)) => {
                    headers.insert(name, value);
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

    /// POSTs `batch` and classifies the answer.
    async fn post(&self, batch: &[StoredMessage]) -> Result<(), DeliveryError> {
        let request = self.request(batch)?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                DeliveryError::Transient(Failure::Connection {
                    target: self.uri.to_string(),
                    message: error_chain(&e),
                })
            })?;
            let status = response.status();
            // Read the body to the end so the connection goes back to the pool.
            let body = Limited::new(response.into_body(), ERROR_BODY_LIMIT)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, DeliveryError>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                DeliveryError::Transient(Failure::Timeout {
                    target: self.uri.to_string(),
                    after: self.timeout,
                })
            })??;
        classify(status, &body)
    }
}

/// Whether `m` may join a batch that starts with `first`: a JSON body (so the array is
/// valid JSON) with the same content type and plugin headers.
fn batchable(first: &StoredMessage, m: &StoredMessage) -> bool {
    m.content_type.starts_with("application/json")
        && m.content_type == first.content_type
        && m.headers == first.headers
}

impl Transport for HttpTransport {
    fn batch_len(&self, head: &[StoredMessage]) -> usize {
        let first = &head[0];
        if self.batch_max_messages == 1 || !batchable(first, first) {
            return 1;
        }
        let mut bytes = 2 + first.payload.len();
        let mut n = 1;
        for m in &head[1..head.len().min(self.batch_max_messages)] {
            bytes += 1 + m.payload.len();
            if bytes > self.batch_max_bytes || !batchable(first, m) {
                break;
            }
            n += 1;
        }
        n
    }

    async fn deliver(&self, batch: &[StoredMessage]) -> Result<(), Partial> {
        Ok(self.post(batch).await?)
    }
}

/// A request body of several buffers, written without joining them (hyper writes them
/// with one vectored write).
pub(super) struct Chunks {
    chunks: VecDeque<Bytes>,
    remaining: u64,
}

impl From<Vec<Bytes>> for Chunks {
    fn from(chunks: Vec<Bytes>) -> Self {
        let remaining = chunks.iter().map(|c| c.len() as u64).sum();
        Chunks {
            chunks: chunks.into(),
            remaining,
        }
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let next = self.chunks.pop_front();
        if let Some(chunk) = &next {
            self.remaining -= chunk.len() as u64;
        }
        Poll::Ready(next.map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// 2xx is an acknowledgement; 408, 429 and 5xx mean "later"; any other answer means the
/// receiver will never take this message.
fn classify(status: StatusCode, body: &[u8]) -> Result<(), DeliveryError> {
    if status.is_success() {
        return Ok(());
    }
    let excerpt = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    let reason = Failure::Status { status, excerpt };
    if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        Err(DeliveryError::Transient(reason))
    } else {
        Err(DeliveryError::Permanent(reason))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert!(classify(StatusCode::CREATED, b"").is_ok());
        for s in [500, 502, 503, 408, 429] {
            let s = StatusCode::from_u16(s).unwrap();
            assert!(
                matches!(classify(s, b""), Err(DeliveryError::Transient(_))),
                "{s}"
            );
        }
        for s in [400, 401, 404, 409, 413, 301] {
            let s = StatusCode::from_u16(s).unwrap();
            assert!(
                matches!(classify(s, b"no"), Err(DeliveryError::Permanent(_))),
                "{s}"
            );
        }
    }
}
