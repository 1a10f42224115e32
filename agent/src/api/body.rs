//! Reading a request body, the one way every route does it: the declared length is
//! checked before anything is read, the size is capped while reading, and a body that
//! stops arriving is cut off (a stalled upload must not hold a connection and its
//! memory for ever).

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::{Request, StatusCode};

use super::ApiError;
use crate::config::IngestLimits;

/// The whole body of `request`, within `limits`.
pub async fn read_body(
    request: Request<Incoming>,
    limits: &IngestLimits,
) -> Result<Bytes, ApiError> {
    let max = limits.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body exceeds {max} bytes"),
        )
    };
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut body = request.into_body();
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    loop {
        let frame = tokio::time::timeout(limits.body_read_timeout, body.frame())
            .await
            .map_err(|_| ApiError::body_timeout(limits.body_read_timeout))?;
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "body_read_failed",
                format!("cannot read request body: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            total += data.len();
            if total > max {
                return Err(too_large());
            }
            chunks.push(data);
        }
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => {
            let mut joined = BytesMut::with_capacity(total);
            for c in chunks {
                joined.extend_from_slice(&c);
            }
            joined.freeze()
        }
    })
}
