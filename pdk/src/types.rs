//! Data exchanged between the agent and plugins. Every type serialises to the JSON of
//! the guest ABI (see [`crate::abi`]); unknown fields are ignored and new fields get
//! defaults, so host and plugins of different minor versions keep working together.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{Error, Result};

/// Name of a sink in the agent's `[sinks.<name>]` config. Messages are addressed to
/// sinks by name; the agent owns the connection.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SinkName(pub String);

impl SinkName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SinkName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for SinkName {
    fn from(s: &str) -> Self {
        SinkName(s.to_owned())
    }
}

/// The on-event types a plugin can subscribe to (the seed's `eventName`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// The events of one ingest request, to forward to a third party.
    SendingEvent,
    /// Batches of monitoring points (series, tags, fields).
    MonitoringEvent,
}

impl EventType {
    /// The name used in config, the ABI and `/v1/plugins`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::SendingEvent => "sending_event",
            EventType::MonitoringEvent => "monitoring_event",
        }
    }
}

/// One producer event, kept as the raw JSON it arrived as: the agent never re-parses
/// or re-encodes events it only forwards. Use [`Event::parse`] to look inside.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Event(pub Box<RawValue>);

impl Event {
    /// The event's JSON text, exactly as the producer sent it.
    pub fn raw(&self) -> &str {
        self.0.get()
    }

    /// Deserialises the event into `T` (a struct of the fields a plugin cares about, or
    /// `serde_json::Value`).
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T> {
        Ok(serde_json::from_str(self.0.get())?)
    }
}

/// `sending_event`: the events produced by one ingest request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendingEvent {
    pub handler_id: String,
    pub account_id: String,
    pub request_id: String,
    /// RFC 3339 time the events were created (from the request, or its arrival).
    pub event_create_time: String,
    /// RFC 3339 time the agent finished accepting the request.
    pub event_end_time: String,
    pub events: Vec<Event>,
}

/// The message shape of the seed's event sending plugin (and the built-in `forward`
/// plugin). Borrowed, so building it copies nothing.
#[derive(Debug, Serialize)]
pub struct SeedMessage<'a> {
    pub handler_id: &'a str,
    pub account_id: &'a str,
    #[serde(rename = "Luna-Request-Id")]
    pub request_id: &'a str,
    pub events: &'a [Event],
    pub event_create_time: &'a str,
    pub event_end_time: &'a str,
}

impl<'a> From<&'a SendingEvent> for SeedMessage<'a> {
    fn from(e: &'a SendingEvent) -> Self {
        SeedMessage {
            handler_id: &e.handler_id,
            account_id: &e.account_id,
            request_id: &e.request_id,
            events: &e.events,
            event_create_time: &e.event_create_time,
            event_end_time: &e.event_end_time,
        }
    }
}

/// A field value of a monitoring point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl From<bool> for FieldValue {
    fn from(v: bool) -> Self {
        FieldValue::Bool(v)
    }
}
impl From<i64> for FieldValue {
    fn from(v: i64) -> Self {
        FieldValue::Int(v)
    }
}
impl From<u64> for FieldValue {
    fn from(v: u64) -> Self {
        FieldValue::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<f64> for FieldValue {
    fn from(v: f64) -> Self {
        FieldValue::Float(v)
    }
}
impl From<&str> for FieldValue {
    fn from(v: &str) -> Self {
        FieldValue::Str(v.to_owned())
    }
}
impl From<String> for FieldValue {
    fn from(v: String) -> Self {
        FieldValue::Str(v)
    }
}

/// A monitoring point: a series name, a time, indexed string tags and typed fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub series: String,
    /// Unix time in nanoseconds.
    pub time: i64,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub fields: BTreeMap<String, FieldValue>,
}

impl Point {
    /// A point of `series` at `time` (Unix nanoseconds), without tags or fields.
    pub fn new(series: impl Into<String>, time: i64) -> Self {
        Point {
            series: series.into(),
            time,
            tags: BTreeMap::new(),
            fields: BTreeMap::new(),
        }
    }

    /// Adds a tag.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Adds a field.
    pub fn field(mut self, key: impl Into<String>, value: impl Into<FieldValue>) -> Self {
        self.fields.insert(key.into(), value.into());
        self
    }
}

/// A message body. JSON bodies are embedded in the ABI as JSON (not as an escaped
/// string), so the agent stores the plugin's bytes as they are.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    Json(Box<RawValue>),
    Text(String),
}

/// A message a plugin hands to the agent for delivery to a sink. Plugins never do
/// network I/O: the agent queues the message durably and delivers it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    pub sink: SinkName,
    pub body: Body,
    /// Defaults to `application/json` for JSON bodies and `text/plain` for text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// MQTT topic for this message (overrides the sink's topic template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// A routing/partition key, for sinks that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Extra headers (HTTP) or user properties (MQTT v5).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The idempotency key receivers de-duplicate by (`Idempotency-Key`, the MQTT 5
    /// `idempotency-key` property, the AMQP `message_id`, a Redis field). Default: the
    /// agent's id of the message. A message from a source gets the source's id of it
    /// (a stream entry's id, an AMQP `message_id`), so a redelivery keeps its key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl Message {
    /// A JSON message: `value` is serialised once, here.
    pub fn json(sink: impl Into<SinkName>, value: &impl Serialize) -> Result<Self> {
        Ok(Self::with_body(
            sink.into(),
            Body::Json(serde_json::value::to_raw_value(value)?),
        ))
    }

    /// A text message.
    pub fn text(sink: impl Into<SinkName>, text: impl Into<String>) -> Self {
        Self::with_body(sink.into(), Body::Text(text.into()))
    }

    fn with_body(sink: SinkName, body: Body) -> Self {
        Message {
            sink,
            body,
            content_type: None,
            topic: None,
            key: None,
            headers: BTreeMap::new(),
            id: None,
        }
    }

    /// Sets the content type.
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// Sets the MQTT topic.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }

    /// The bytes to deliver.
    pub fn payload(&self) -> &[u8] {
        match &self.body {
            Body::Json(raw) => raw.get().as_bytes(),
            Body::Text(text) => text.as_bytes(),
        }
    }

    /// The effective content type.
    pub fn effective_content_type(&self) -> &str {
        match (&self.content_type, &self.body) {
            (Some(ct), _) => ct,
            (None, Body::Json(_)) => "application/json",
            (None, Body::Text(_)) => "text/plain; charset=utf-8",
        }
    }
}

impl From<String> for SinkName {
    fn from(s: String) -> Self {
        SinkName(s)
    }
}

/// What a plugin call returns: messages for sinks, and monitoring points that the agent
/// hands on to the `monitoring_event` plugins.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Output {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub points: Vec<Point>,
}

impl Output {
    /// Nothing to send.
    pub fn none() -> Self {
        Output::default()
    }

    /// One message.
    pub fn message(message: Message) -> Self {
        Output {
            messages: vec![message],
            points: Vec::new(),
        }
    }

    /// Several messages.
    pub fn messages(messages: Vec<Message>) -> Self {
        Output {
            messages,
            points: Vec::new(),
        }
    }
}

/// A custom HTTP route of a background plugin, served under `/v1/plugins/{name}/{path}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSpec {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path below the plugin's prefix, e.g. `teapot/version`.
    pub path: String,
}

/// A request to a plugin route.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RouteRequest {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub query: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
}

/// A plugin route's response.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RouteResponse {
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
}

/// A message from a data source (e.g. an MQTT subscription) handed to a background
/// plugin's `on_message`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SourceMessage {
    /// The `[sources.<name>]` it came from.
    pub source: String,
    /// Topic (MQTT) or other address within the source.
    #[serde(default)]
    pub topic: String,
    /// The payload, as text (lossy for binary payloads).
    #[serde(default)]
    pub payload: String,
}

/// Figures about the agent that plugins may report (device monitoring).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentStats {
    pub device_id: String,
    /// The agent's data directory (whose filesystem a monitor should watch).
    pub data_dir: String,
    pub queue_depth: u64,
    pub queue_bytes: u64,
}

/// What `initialize` tells the agent back: settings may refine the declaration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Initialized {
    /// Timer interval chosen by the settings (overrides `PluginInfo::timer_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timer_ms: Option<u64>,
}

impl RouteResponse {
    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        let mut headers = BTreeMap::new();
        headers.insert("content-type".to_owned(), "text/plain".to_owned());
        RouteResponse {
            status,
            headers,
            body: body.into(),
        }
    }
}

/// What a plugin says about itself; the agent reads it once, at load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub event_types: Vec<EventType>,
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// Interval of the `tick` export, for timer plugins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timer_ms: Option<u64>,
    /// Whether the plugin takes messages from data sources (`on_message`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_message: bool,
    /// Whether the plugin reads `sending_event` input framed (see [`crate::abi`]) rather
    /// than as plain JSON. The Outpost PDK sets it; other PDKs leave it out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub framed_input: bool,
}

impl PluginInfo {
    /// A plugin with no event types, routes or timer yet.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        PluginInfo {
            name: name.into(),
            version: version.into(),
            event_types: Vec::new(),
            routes: Vec::new(),
            timer_ms: None,
            on_message: false,
            framed_input: false,
        }
    }

    /// Subscribes to an on-event type.
    pub fn on(mut self, event_type: EventType) -> Self {
        self.event_types.push(event_type);
        self
    }

    /// Declares a custom route.
    pub fn route(mut self, method: &str, path: &str) -> Self {
        self.routes.push(RouteSpec {
            method: method.to_owned(),
            path: path.to_owned(),
        });
        self
    }

    /// Declares a timer.
    pub fn every_ms(mut self, interval_ms: u64) -> Self {
        self.timer_ms = Some(interval_ms);
        self
    }

    /// Declares that the plugin takes messages from data sources.
    pub fn takes_messages(mut self) -> Self {
        self.on_message = true;
        self
    }
}

/// The plugin's `[plugins.settings.<name>]` table, as JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Config(pub serde_json::Map<String, serde_json::Value>);

impl Config {
    /// A raw setting.
    pub fn get(&self, key: &str) -> Option<&serde_json::Value> {
        self.0.get(key)
    }

    /// A required string setting.
    pub fn str(&self, key: &str) -> Result<&str> {
        match self.0.get(key) {
            Some(serde_json::Value::String(s)) => Ok(s),
            Some(other) => Err(Error::msg(format!(
                "setting `{key}` must be a string, got {other}"
            ))),
            None => Err(Error::msg(format!("missing setting `{key}`"))),
        }
    }

    /// An optional setting, deserialised; `default` if absent.
    pub fn get_or<T: serde::de::DeserializeOwned>(&self, key: &str, default: T) -> Result<T> {
        match self.0.get(key) {
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| Error::msg(format!("setting `{key}`: {e}"))),
            None => Ok(default),
        }
    }

    /// A required setting naming a sink.
    pub fn sink(&self, key: &str) -> Result<SinkName> {
        self.str(key).map(SinkName::from)
    }

    /// The whole table as a typed struct.
    pub fn deserialize<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_value(serde_json::Value::Object(
            self.0.clone(),
        ))?)
    }
}
