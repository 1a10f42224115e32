//! HTTP transport: POSTs over a pooled keep-alive connection (plain or TLS, direct or
//! through a forward proxy), one message per request or, with
//! `batch_max_messages > 1`, a JSON array of consecutive JSON messages; the body
//! optionally compressed.
//!
//! * [`request`]: the POST for a batch (body, id headers);
//! * [`compress`]: gzip/zstd bodies;
//! * [`connector`]: TCP, proxy tunnel and TLS;
//! * [`failure`]: what an answer (or its absence) means for the messages.

mod body;
mod compress;
mod connector;
mod failure;
mod request;

use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::header::PROXY_AUTHORIZATION;
use hyper::{HeaderMap, Request, Uri};

use super::{Delivered, DeliveryError, Failure, Partial, Transport};
use crate::config::{Compression, HttpSinkConfig};
use crate::queue::StoredMessage;
use body::Chunks;
use connector::SinkClient;

/// Header carrying the message id, so the receiver can drop duplicates.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Header listing the ids of a batch's messages, comma-separated, in body order.
pub const MESSAGE_IDS: &str = "outpost-message-ids";

/// How much of an error response body is kept for the dead-letter reason.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

pub(super) struct HttpTransport {
    client: SinkClient,
    uri: Uri,
    timeout: Duration,
    /// The configured headers, plus `Proxy-Authorization` for `http://` through an
    /// authenticating proxy (an `https://` tunnel sends it with its `CONNECT` only).
    headers: HeaderMap,
    batch_max_messages: usize,
    batch_max_bytes: usize,
    compression: Compression,
}

impl HttpTransport {
    pub fn new(config: &HttpSinkConfig) -> Result<Self, crate::tls::TlsError> {
        let client = SinkClient::new(config)?;
        let mut headers = config.headers.clone();
        if let Some(proxy) = &config.proxy {
            tracing::info!(url = %config.url, %proxy, "HTTP sink goes through a proxy");
            if let (Some(auth), Some("http")) = (&proxy.auth, config.url.scheme_str()) {
                headers.insert(PROXY_AUTHORIZATION, auth.clone());
            }
        }
        Ok(HttpTransport {
            client,
            uri: config.url.clone(),
            timeout: config.timeout,
            headers,
            batch_max_messages: config.batch_max_messages,
            batch_max_bytes: config.batch_max_bytes,
            compression: config.compression,
        })
    }

    /// The request for `batch`, its body compressed if configured.
    async fn request(&self, batch: &[StoredMessage]) -> Result<Request<Chunks>, DeliveryError> {
        let parts = compress::encode(self.compression, request::body_parts(batch))
            .await
            .map_err(|e| {
                DeliveryError::Transient(Failure::Io(std::io::Error::other(format!(
                    "compressing the body: {e}"
                ))))
            })?;
        request::build(
            &self.uri,
            &self.headers,
            batch,
            self.compression.content_encoding(),
            Chunks::from(parts),
        )
    }

    /// POSTs `batch` and classifies the answer.
    async fn post(&self, batch: &[StoredMessage]) -> Result<(), DeliveryError> {
        let request = self.request(batch).await?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| failure::no_answer(&self.uri, &e))?;
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
        failure::classify(status, &body, self.compression)
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

    async fn deliver(&self, batch: &[StoredMessage]) -> Result<Delivered, Partial> {
        self.post(batch).await?;
        Ok(Delivered::All)
    }
}
