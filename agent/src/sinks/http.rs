//! HTTP transport: one POST per message over a pooled keep-alive connection.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{HeaderMap, Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::{DeliveryError, Transport};
use crate::config::HttpSinkConfig;
use crate::queue::StoredMessage;

/// Header carrying the message id, so the receiver can drop duplicates.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// How much of an error response body is kept for the dead-letter reason.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

pub(super) struct HttpTransport {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
    timeout: Duration,
    headers: HeaderMap,
}

impl HttpTransport {
    pub fn new(config: &HttpSinkConfig) -> anyhow::Result<Self> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_millis(config.timeout_ms)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes())?,
                HeaderValue::from_str(value)?,
            );
        }
        Ok(HttpTransport {
            client,
            uri: config.url.parse()?,
            timeout: Duration::from_millis(config.timeout_ms),
            headers,
        })
    }

    fn request(&self, message: &StoredMessage) -> Result<Request<Full<Bytes>>, DeliveryError> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(CONTENT_TYPE, message.content_type.as_str())
            .header(IDEMPOTENCY_KEY, message.id.to_string())
            .body(Full::new(message.payload.clone()))
            .map_err(|e| DeliveryError::Permanent(format!("cannot build request: {e}")))?;
        let headers = request.headers_mut();
        for (name, value) in &self.headers {
            headers.insert(name, value.clone());
        }
        for (name, value) in &message.headers {
            match (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                (Ok(name), Ok(value)) => {
                    headers.insert(name, value);
                }
                _ => {
                    return Err(DeliveryError::Permanent(format!(
                        "invalid header `{name}` from the plugin"
                    )))
                }
            }
        }
        Ok(request)
    }
}

impl Transport for HttpTransport {
    async fn deliver(&self, message: &StoredMessage) -> Result<(), DeliveryError> {
        let request = self.request(message)?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                DeliveryError::Transient(format!("{}: {}", self.uri, error_chain(&e)))
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
                DeliveryError::Transient(format!(
                    "{}: no answer within {:?}",
                    self.uri, self.timeout
                ))
            })??;
        classify(status, &body)
    }
}

/// 2xx is an acknowledgement; 408, 429 and 5xx mean "later"; any other answer means the
/// receiver will never take this message.
fn classify(status: StatusCode, body: &[u8]) -> Result<(), DeliveryError> {
    if status.is_success() {
        return Ok(());
    }
    let excerpt = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let reason = format!("HTTP {status}: {excerpt}");
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
        assert_eq!(classify(StatusCode::CREATED, b""), Ok(()));
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
