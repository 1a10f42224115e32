//! Dead letters an operator can act on: list them (`GET /v1/dead-letters?sink=&limit=
//! &payload=true`), put them back into their sink's FIFO (`POST
//! /v1/dead-letters/replay` with `{"sink"?, "ids"?}`), or delete them (`DELETE
//! /v1/dead-letters?sink=&ids=`). Without a sink or ids, an operation takes them all.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;

use crate::api::{json, read_body, Api, ApiError, Body};
use crate::queue::record::MessageId;
use crate::queue::{DeadLetter, DeadSelection, Queue, QueueError};

/// Most dead letters one listing returns.
const LIST_MAX: usize = 10_000;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
}

/// `GET /v1/dead-letters`
pub async fn list_dead_letters(
    api: &Api,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let query = Query::parse(request.uri().query())?;
    let limit = query.limit.unwrap_or(100).min(LIST_MAX);
    let (selection, with_payload) = (query.selection, query.payload);
    let letters = blocking(&api.status.queue, move |q| {
        q.dead_letters(&selection, limit, with_payload)
    })
    .await?;
    let list: Vec<serde_json::Value> = letters.iter().map(view).collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"count": list.len(), "dead_letters": list}),
    ))
}

/// `POST /v1/dead-letters/replay`
pub async fn replay_dead_letters(
    api: &Api,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body = read_body(request, &api.limits()).await?;
    let selection = if body.iter().all(u8::is_ascii_whitespace) {
        DeadSelection::default()
    } else {
        let wanted: Wanted =
            serde_json::from_slice(&body).map_err(|e| bad(format!("body: {e}")))?;
        wanted.selection()?
    };
    let replayed = blocking(&api.status.queue, move |q| q.replay_dead(&selection)).await?;
    api.status
        .replayed
        .fetch_add(replayed as u64, Ordering::Relaxed);
    tracing::info!(replayed, "dead letters replayed by an operator");
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"replayed": replayed}),
    ))
}

/// `DELETE /v1/dead-letters`
pub async fn purge_dead_letters(
    api: &Api,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let selection = Query::parse(request.uri().query())?.selection;
    let purged = blocking(&api.status.queue, move |q| q.purge_dead(&selection)).await?;
    api.status
        .purged
        .fetch_add(purged as u64, Ordering::Relaxed);
    tracing::warn!(purged, "dead letters purged by an operator");
    Ok(json(StatusCode::OK, &serde_json::json!({"purged": purged})))
}

/// Runs a queue operation off the reactor.
async fn blocking<T: Send + 'static>(
    queue: &Arc<Queue>,
    f: impl FnOnce(&Queue) -> Result<T, QueueError> + Send + 'static,
) -> Result<T, ApiError> {
    let queue = Arc::clone(queue);
    let result = tokio::task::spawn_blocking(move || f(&queue))
        .await
        .map_err(QueueError::from)
        .and_then(|r| r);
    result.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            e.to_string(),
        )
    })
}

/// The query of a listing or a purge.
struct Query {
    selection: DeadSelection,
    limit: Option<usize>,
    payload: bool,
}

impl Query {
    fn parse(query: Option<&str>) -> Result<Query, ApiError> {
        let mut q = Query {
            selection: DeadSelection::default(),
            limit: None,
            payload: false,
        };
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match k.as_ref() {
                "sink" => q.selection.sink = Some(v.into_owned()),
                "ids" | "id" => {
                    let ids = q.selection.ids.get_or_insert_with(BTreeSet::new);
                    for id in v.split(',').filter(|s| !s.is_empty()) {
                        ids.insert(parse_id(id)?);
                    }
                }
                "limit" => {
                    q.limit = Some(
                        v.parse()
                            .map_err(|_| bad(format!("limit: `{v}` is not a number")))?,
                    )
                }
                "payload" => q.payload = matches!(v.as_ref(), "true" | "1" | "yes"),
                other => return Err(bad(format!("unknown parameter `{other}`"))),
            }
        }
        Ok(q)
    }
}

/// The body of a replay.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wanted {
    #[serde(default)]
    sink: Option<String>,
    #[serde(default)]
    ids: Option<Vec<String>>,
}

impl Wanted {
    fn selection(self) -> Result<DeadSelection, ApiError> {
        let ids = match self.ids {
            Some(ids) => Some(
                ids.iter()
                    .map(|id| parse_id(id))
                    .collect::<Result<_, _>>()?,
            ),
            None => None,
        };
        Ok(DeadSelection {
            sink: self.sink,
            ids,
        })
    }
}

fn parse_id(id: &str) -> Result<MessageId, ApiError> {
    id.parse().map_err(bad)
}

fn view(d: &DeadLetter) -> serde_json::Value {
    let mut v = serde_json::json!({
        "id": d.id.to_string(),
        "sink": d.sink,
        "enqueued_ms": d.enqueued_ms,
        "failed_ms": d.failed_ms,
        "reason": d.reason,
        "status": d.status,
        "content_type": d.content_type,
        "size": d.size,
    });
    if let Some(p) = &d.payload {
        v["payload"] = serde_json::Value::String(String::from_utf8_lossy(p).into_owned());
    }
    v
}
