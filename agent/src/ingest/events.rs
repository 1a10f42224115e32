//! `POST /v1/events`: parse, check, hand to the pipeline, answer 202 once durable.

use std::time::SystemTime;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use outpost_pdk::{Event, SendingEvent};
use serde::{Deserialize, Serialize};

use super::validate::check_event;
use crate::api::{json, read_body, Api, ApiError, Body};
use crate::config::IngestLimits;
use crate::pipeline::{Job, Target};

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
    api: &Api,
    request: Request<Incoming>,
    request_id: &str,
) -> Result<Response<Body>, ApiError> {
    let arrived = SystemTime::now();
    let bytes = read_body(request, &api.limits()).await?;
    let body = parse(&bytes, &api.limits())?;
    let event = SendingEvent {
        handler_id: body.handler_id,
        account_id: body.account_id,
        request_id: request_id.to_owned(),
        event_create_time: body
            .event_create_time
            .unwrap_or_else(|| crate::clock::rfc3339(arrived)),
        event_end_time: crate::clock::rfc3339(SystemTime::now()),
        events: body.events,
    };
    let job = Job::Sending {
        event,
        target: Target::All,
    };
    let accepted = api.pipeline.run(job).await.map_err(ApiError::from)?;
    api.counters.events_accepted(accepted.events as u64);
    Ok(json(
        StatusCode::ACCEPTED,
        &Answer {
            accepted: accepted.events,
            request_id,
        },
    ))
}

/// The 202's body (fields in alphabetical order, as it always came).
#[derive(Serialize)]
struct Answer<'a> {
    accepted: usize,
    request_id: &'a str,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", message)
}

/// Parses and checks the body, with an error that says where the problem is.
fn parse(bytes: &[u8], limits: &IngestLimits) -> Result<IngestBody, ApiError> {
    // Straight serde_json first; tracking the path costs on every request, so only a
    // body that fails is parsed again for the error message.
    let body: IngestBody = serde_json::from_slice(bytes).map_err(|_| explain(bytes))?;
    for (field, value) in [
        ("handler_id", &body.handler_id),
        ("account_id", &body.account_id),
    ] {
        if value.trim().is_empty() {
            return Err(invalid(format!("field `{field}`: must not be empty")));
        }
    }
    if body.events.is_empty() {
        return Err(invalid("field `events`: must not be empty"));
    }
    for (i, event) in body.events.iter().enumerate() {
        check_event(event, limits.max_json_depth)
            .map_err(|problem| invalid(format!("field `events[{i}]`: {problem}")))?;
    }
    Ok(body)
}

/// Why `bytes` is not a body of the contract, saying where.
fn explain(bytes: &[u8]) -> ApiError {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed: Result<IngestBody, ApiError> =
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_json",
                    format!("body is not valid JSON: {inner}"),
                )
            } else if path == "." {
                invalid(inner.to_string())
            } else {
                invalid(format!("field `{path}`: {inner}"))
            }
        });
    match (parsed, de.end()) {
        (Err(e), _) => e,
        (Ok(_), Err(e)) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("trailing data after the JSON body: {e}"),
        ),
        // serde_json refused it, so one of the two did too; should they ever disagree,
        // still an answer that says what is wrong.
        (Ok(_), Ok(())) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "body is not a valid ingest request",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> ApiError {
        match parse(body.as_bytes(), &IngestLimits::default()) {
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
    fn hostile_bodies_are_refused_naming_the_field() {
        let e = err(r#"{"handler_id": "", "account_id": "a", "events": [{}]}"#);
        assert!(
            e.message.contains("`handler_id`: must not be empty"),
            "{}",
            e.message
        );
        let e = err(r#"{"handler_id": "h", "account_id": " ", "events": [{}]}"#);
        assert!(e.message.contains("`account_id`"), "{}", e.message);
        let e = err(r#"{"handler_id": "h", "account_id": "a", "events": [{}, 1, "x", null]}"#);
        assert!(
            e.message
                .contains("`events[1]`: an event must be a JSON object"),
            "{}",
            e.message
        );
        let deep = format!(
            r#"{{"handler_id": "h", "account_id": "a", "events": [{{}}, {{"x": {}{}}}]}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let e = err(&deep);
        assert!(
            e.message.contains("`events[1]`: nested deeper than 64"),
            "{}",
            e.message
        );
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn trailing_data_is_malformed_json() {
        let e = err(r#"{"handler_id": "h", "account_id": "a", "events": [{}]} x"#);
        assert_eq!(e.code, "malformed_json");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = err(r#"{"handler_id": "h", "account_id": "a", "events": [{}]}{}"#);
        assert_eq!(e.code, "malformed_json");
    }

    /// The 202's body is the contract's, byte for byte (it was a JSON map, whose keys
    /// serde_json sorts).
    #[test]
    fn the_answer_has_the_bytes_it_always_had() {
        let body = serde_json::to_vec(&Answer {
            accepted: 3,
            request_id: "r-1",
        })
        .unwrap();
        let map =
            serde_json::to_vec(&serde_json::json!({"request_id": "r-1", "accepted": 3})).unwrap();
        assert_eq!(body, map);
        assert_eq!(body, br#"{"accepted":3,"request_id":"r-1"}"#);
    }

    #[test]
    fn events_are_kept_raw() {
        let body = parse(
            br#"{"handler_id":"h","account_id":"a","events":[{"b": 1,  "a":[2]}]}"#,
            &IngestLimits::default(),
        )
        .unwrap();
        assert_eq!(body.events[0].raw(), r#"{"b": 1,  "a":[2]}"#);
    }
}
