//! A message from a source, and the job it makes for its plugin.

use std::time::SystemTime;

use bytes::Bytes;
use outpost_pdk::{Event, SendingEvent, SourceMessage};
use serde_json::value::RawValue;

use crate::config::SourceDelivery;
use crate::ingest::validate::check_event;
use crate::pipeline::{Job, Target};

/// A message taken from a source, with what its source needs to acknowledge it.
#[derive(Debug)]
pub struct Incoming<H> {
    /// How the source acknowledges or hands back this message.
    pub handle: H,
    /// The source's own id of the message (a stream entry's id, an AMQP
    /// `message_id`): its messages' idempotency key, so a redelivery keeps it.
    pub id: Option<String>,
    /// Where in the source it came from: the topic, channel, key or queue.
    pub subject: String,
    pub payload: Bytes,
    /// The source says it delivered this message before.
    pub redelivered: bool,
    /// Why the message cannot be read (a stream entry without the configured field):
    /// it is refused like a plugin's refusal.
    pub unreadable: Option<String>,
}

impl<H> Incoming<H> {
    /// A readable message.
    pub fn new(handle: H, subject: String, payload: Bytes) -> Incoming<H> {
        Incoming {
            handle,
            id: None,
            subject,
            payload,
            redelivered: false,
            unreadable: None,
        }
    }
}

/// Why a message is not an event (refused like a plugin's refusal).
#[derive(Debug, Clone, thiserror::Error)]
pub enum NotAnEvent {
    #[error("the payload is not JSON: {0}")]
    NotJson(String),
    #[error("event {index}: {problem}")]
    Bad {
        index: usize,
        problem: crate::ingest::validate::EventProblem,
    },
    #[error("an empty list of events")]
    Empty,
    #[error("{0}")]
    Unreadable(String),
}

/// How deep an event from a source may nest (as `agent.max_json_depth`' default).
const MAX_DEPTH: usize = 64;

impl<H> Incoming<H> {
    /// The job for `plugin`, delivered as configured: to its `on_message`, or as the
    /// events of one `sending_event` (a JSON object is one event, an array a list).
    pub fn job(
        &self,
        source: &str,
        plugin: &str,
        deliver: &SourceDelivery,
    ) -> Result<Job, NotAnEvent> {
        if let Some(problem) = &self.unreadable {
            return Err(NotAnEvent::Unreadable(problem.clone()));
        }
        Ok(match deliver {
            SourceDelivery::OnMessage => Job::SourceMessage {
                plugin: plugin.to_owned(),
                message: SourceMessage {
                    source: source.to_owned(),
                    topic: self.subject.clone(),
                    payload: String::from_utf8_lossy(&self.payload).into_owned(),
                },
            },
            SourceDelivery::SendingEvent {
                handler_id,
                account_id,
            } => {
                let now = crate::clock::rfc3339(SystemTime::now());
                Job::Sending {
                    event: SendingEvent {
                        handler_id: handler_id.clone(),
                        account_id: account_id.clone(),
                        request_id: self
                            .id
                            .clone()
                            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                        event_create_time: now.clone(),
                        event_end_time: now,
                        events: events(&self.payload)?,
                    },
                    target: Target::Plugin(plugin.to_owned()),
                }
            }
        })
    }
}

/// A payload as events: a JSON object is one, a JSON array of objects a list.
pub fn events(payload: &[u8]) -> Result<Vec<Event>, NotAnEvent> {
    let text = std::str::from_utf8(payload).map_err(|e| NotAnEvent::NotJson(e.to_string()))?;
    let text = text.trim();
    let events = if text.starts_with('[') {
        let list: Vec<Event> =
            serde_json::from_str(text).map_err(|e| NotAnEvent::NotJson(e.to_string()))?;
        if list.is_empty() {
            return Err(NotAnEvent::Empty);
        }
        list
    } else {
        let raw = RawValue::from_string(text.to_owned())
            .map_err(|e| NotAnEvent::NotJson(e.to_string()))?;
        vec![Event(raw)]
    };
    for (index, event) in events.iter().enumerate() {
        check_event(event, MAX_DEPTH).map_err(|problem| NotAnEvent::Bad { index, problem })?;
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_is_one_event_an_array_a_list_and_the_rest_is_refused() {
        assert_eq!(events(br#" {"a": 1} "#).unwrap().len(), 1);
        assert_eq!(events(br#"[{"a": 1}, {"b": 2}]"#).unwrap().len(), 2);
        for bad in [
            &b"not json"[..],
            b"[]",
            b"[1, 2]",
            b"\"text\"",
            b"{\"a\":",
            b"\xff",
        ] {
            assert!(events(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
