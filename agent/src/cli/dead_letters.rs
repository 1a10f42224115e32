//! `outpost dead-letters list|replay|purge`: the operator's side of the dead-letter
//! API of the running agent.

use super::table::{bytes, cell, Table};
use super::{AgentClient, ClientError};

/// What to do with dead letters.
#[derive(Debug, Clone)]
pub enum DeadLettersCommand {
    /// Show them (with payloads, or as JSON, on request).
    List {
        sink: Option<String>,
        limit: usize,
        payload: bool,
        json: bool,
    },
    /// Put them back into their sink's FIFO.
    Replay {
        sink: Option<String>,
        ids: Vec<String>,
    },
    /// Delete them; with neither sink nor ids only if `all`.
    Purge {
        sink: Option<String>,
        ids: Vec<String>,
        all: bool,
    },
}

/// Runs `command` against the agent; returns what to print.
pub fn dead_letters(
    client: &AgentClient,
    command: &DeadLettersCommand,
) -> Result<String, ClientError> {
    match command {
        DeadLettersCommand::List {
            sink,
            limit,
            payload,
            json,
        } => {
            let mut path = format!("/v1/dead-letters?limit={limit}&payload={payload}");
            if let Some(sink) = sink {
                path.push_str(&format!("&sink={}", encode(sink)));
            }
            let answer = client.request("GET", &path, None)?;
            Ok(if *json {
                format!(
                    "{}\n",
                    serde_json::to_string_pretty(&answer).unwrap_or_default()
                )
            } else {
                render(&answer, *payload)
            })
        }
        DeadLettersCommand::Replay { sink, ids } => {
            let mut body = serde_json::json!({});
            if let Some(sink) = sink {
                body["sink"] = sink.clone().into();
            }
            if !ids.is_empty() {
                body["ids"] = ids.clone().into();
            }
            let answer = client.request("POST", "/v1/dead-letters/replay", Some(&body))?;
            Ok(format!("replayed {}\n", cell(&answer["replayed"])))
        }
        DeadLettersCommand::Purge { sink, ids, all } => {
            if sink.is_none() && ids.is_empty() && !all {
                return Err(ClientError::Refused {
                    status: 0,
                    message: "purge needs --sink, --id or --all".into(),
                });
            }
            let mut query = Vec::new();
            if let Some(sink) = sink {
                query.push(format!("sink={}", encode(sink)));
            }
            if !ids.is_empty() {
                query.push(format!("ids={}", ids.join(",")));
            }
            let answer = client.request(
                "DELETE",
                &format!("/v1/dead-letters?{}", query.join("&")),
                None,
            )?;
            Ok(format!("purged {}\n", cell(&answer["purged"])))
        }
    }
}

fn render(answer: &serde_json::Value, payload: bool) -> String {
    let mut t = Table::new(&["ID", "SINK", "FAILED", "STATUS", "SIZE", "REASON"]);
    let letters = answer["dead_letters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for d in &letters {
        let failed = d["failed_ms"]
            .as_u64()
            .map(|ms| {
                crate::clock::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
            })
            .unwrap_or_default();
        t.row(vec![
            cell(&d["id"]),
            cell(&d["sink"]),
            failed,
            cell(&d["status"]),
            bytes(d["size"].as_u64().unwrap_or(0)),
            cell(&d["reason"]),
        ]);
    }
    let mut out = t.render();
    if payload {
        for d in &letters {
            out.push_str(&format!("\n{}:\n{}\n", cell(&d["id"]), cell(&d["payload"])));
        }
    }
    out.push_str(&format!("{} dead letter(s)\n", letters.len()));
    out
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
