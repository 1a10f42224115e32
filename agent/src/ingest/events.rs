//! `POST /v1/events`: parse, hand to the pipeline, answer 202 once durable.

use std::time::SystemTime;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::{Request, Response, StatusCode};
use outpost_pdk::{Event, SendingEvent};
use serde::Deserialize;

use super::response::{json, ApiError, Body};
use super::State;
use crate::pipeline::PipelineError;
use crate::plugin::CallError;
use crate::queue::QueueError;

/// The request body of the contract.
#[derive(Deserialize)]
struct IngestBody {
    handler_id: String,
    account_id: String,
    events: Vec<Event>,
    /// When the producer created the events; defaults to the request's arrival.
    #[serde(default)]
    event_create_time: Option<String>,
}

pub async fn post_events(
    state: &State,
    request: Request<Incoming>,
    request_id: &str,
) -> Result<Response<Body>, ApiError> {
    let arrived = SystemTime::now();
    let bytes = read_body(request, state.max_body_bytes).await?;
    let body = parse(&bytes)?;
    let event = SendingEvent {
        handler_id: body.handler_id,
        account_id: body.account_id,
        request_id: request_id.to_owned(),
        event_create_time: body.event_create_time.unwrap_or_else(|| rfc3339(arrived)),
        event_end_time: rfc3339(SystemTime::now()),
        events: body.events,
    };
    let accepted = state.pipeline.ingest(event).await.map_err(pipeline_error)?;
    state.metrics.events_accepted(accepted.events as u64);
    Ok(json(
        StatusCode::ACCEPTED,
        &serde_json::json!({"request_id": request_id, "accepted": accepted.events}),
    ))
}

async fn read_body(request: Request<Incoming>, limit: usize) -> Result<bytes::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body exceeds {limit} bytes"),
        )
    };
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "body_read_failed",
            format!("cannot read request body: {e}"),
        )),
    }
}

/// Parses the body, with an error that says where the problem is.
fn parse(bytes: &[u8]) -> Result<IngestBody, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let body: IngestBody = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let (code, message) = if inner.is_syntax() || inner.is_eof() {
            ("malformed_json", format!("body is not valid JSON: {inner}"))
        } else if path == "." {
            ("invalid_body", inner.to_string())
        } else {
            ("invalid_body", format!("field `{path}`: {inner}"))
        };
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    })?;
    de.end().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("trailing data after the JSON body: {e}"),
        )
    })?;
    if body.events.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "field `events`: must not be empty",
        ));
    }
    Ok(body)
}

fn pipeline_error(e: PipelineError) -> ApiError {
    match e {
        PipelineError::Plugin(e) => {
            let code = match e.error {
                CallError::Failed(_) => "plugin_failed",
                CallError::Fault(..) => "plugin_fault",
            };
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, code, e.to_string())
        }
        PipelineError::Queue(e @ QueueError::Full { .. }) => ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "queue_full",
            e.to_string(),
        ),
        PipelineError::Queue(e) => {
            tracing::error!(error = %e, "queue write failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage_error",
                e.to_string(),
            )
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> ApiError {
        match parse(body.as_bytes()) {
            Err(e) => e,
            Ok(_) => panic!("accepted {body}"),
        }
    }

    #[test]
    fn errors_point_at_the_problem() {
        let e = err("{\"handler_id\": 5, \"account_id\": \"a\", \"events\": [{}]}");
        assert_eq!(e.code, "invalid_body");
        assert!(e.message.contains("handler_id"), "{}", e.message);

        let e = err("{\"handler_id\": \"h\", \"account_id\": \"a\", \"events\": [{}], ");
        assert_eq!(e.code, "malformed_json");
        assert!(e.message.contains("line 1"), "{}", e.message);

        let e = err("{\"handler_id\": \"h\", \"account_id\": \"a\"}");
        assert!(e.message.contains("events"), "{}", e.message);

        let e = err("{\"handler_id\": \"h\", \"account_id\": \"a\", \"events\": []}");
        assert!(e.message.contains("empty"), "{}", e.message);

        let e = err("{\"handler_id\": \"h\", \"account_id\": \"a\", \"events\": 3}");
        assert!(e.message.contains("events"), "{}", e.message);
    }

    #[test]
    fn events_are_kept_raw() {
        let body =
            parse(br#"{"handler_id":"h","account_id":"a","events":[{"b": 1,  "a":[2]}]}"#).unwrap();
        assert_eq!(body.events[0].raw(), r#"{"b": 1,  "a":[2]}"#);
    }
}
