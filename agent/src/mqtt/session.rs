//! One MQTT session API over rumqttc's v3.1.1 and v5 clients.

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5 as v5p;

use super::{ConnectRefusal, PublishRefusal};
use crate::config::{MqttConnection, MqttProtocol, QoS};
use crate::tls::{self, TlsError};

/// Why the session failed or a request could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The broker answered the CONNECT with a refusal (bad credentials, not
    /// authorised, …): a configuration problem, not a network one.
    #[error("broker refused the connection: {0}")]
    Refused(ConnectRefusal),
    #[error(transparent)]
    V4(Box<rumqttc::ConnectionError>),
    #[error(transparent)]
    V5(Box<rumqttc::v5::ConnectionError>),
    #[error("request not queued: {0}")]
    ClientV4(Box<rumqttc::ClientError>),
    #[error("request not queued: {0}")]
    ClientV5(Box<rumqttc::v5::ClientError>),
    #[error("message from another protocol version")]
    ProtocolMismatch,
    /// A publish was not acknowledged in time: the connection is dropped so that a late
    /// acknowledgement can never match a reused packet id.
    #[error("acknowledgement overdue")]
    AckOverdue,
}

impl From<rumqttc::ConnectionError> for SessionError {
    fn from(e: rumqttc::ConnectionError) -> Self {
        match e {
            rumqttc::ConnectionError::ConnectionRefused(code) => {
                SessionError::Refused(ConnectRefusal::of_v4(code))
            }
            e => SessionError::V4(Box::new(e)),
        }
    }
}

impl From<rumqttc::ClientError> for SessionError {
    fn from(e: rumqttc::ClientError) -> Self {
        SessionError::ClientV4(Box::new(e))
    }
}

impl From<rumqttc::v5::ClientError> for SessionError {
    fn from(e: rumqttc::v5::ClientError) -> Self {
        SessionError::ClientV5(Box::new(e))
    }
}

impl From<rumqttc::v5::ConnectionError> for SessionError {
    fn from(e: rumqttc::v5::ConnectionError) -> Self {
        match e {
            rumqttc::v5::ConnectionError::ConnectionRefused(code) => {
                SessionError::Refused(ConnectRefusal::of_v5(code))
            }
            e => SessionError::V5(Box::new(e)),
        }
    }
}

/// Capacity of rumqttc's request channel: a sink's whole in-flight window fits. Publishes
/// are enqueued with `try_publish`, so a full channel is an immediate, retryable error
/// rather than a stall.
const REQUEST_CHANNEL: usize = crate::config::MQTT_MAX_IN_FLIGHT;

/// TCP_NODELAY: with several publishes in flight, Nagle's algorithm holds each one's
/// last segment until the previous one is ACKed (rumqttc leaves it on by default; the
/// window ran 17× slower than one publish at a time).
fn network_options() -> rumqttc::NetworkOptions {
    let mut options = rumqttc::NetworkOptions::new();
    options.set_tcp_nodelay(true);
    options
}

/// What the event loop reports, the same for both protocol versions.
#[derive(Debug)]
pub enum SessionEvent {
    /// Connected (CONNACK).
    Connected,
    /// A publish went out with this packet id (0 for QoS 0).
    Sent(u16),
    /// The broker acknowledged this packet id (PUBACK for QoS 1, PUBCOMP for QoS 2).
    Acked(u16),
    /// The broker refused this packet id (MQTT 5 PUBACK or PUBCOMP reason code).
    Refused(u16, PublishRefusal),
    /// An incoming message (subscriptions).
    Message(Box<Received>),
    /// The broker acknowledged a subscription (SUBACK).
    Subscribed,
    /// Anything else (pings, subscription acks, …).
    Other,
}

/// An incoming message, kept whole so it can be acknowledged after it is durable.
#[derive(Debug)]
pub struct Received {
    pub topic: String,
    pub payload: Bytes,
    packet: Packet,
}

impl Received {
    /// The broker says it sent this message before (the DUP flag): a session resumed
    /// with messages that were not acknowledged.
    pub fn redelivered(&self) -> bool {
        match &self.packet {
            Packet::V4(p) => p.dup,
            Packet::V5(p) => p.dup,
        }
    }
}

#[derive(Debug)]
enum Packet {
    V4(rumqttc::Publish),
    V5(v5p::Publish),
}

/// The client half: publish, subscribe, acknowledge.
#[derive(Clone)]
pub enum Client {
    V4(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// The event loop half: must be polled for anything to happen.
pub enum EventLoop {
    V4(Box<rumqttc::EventLoop>),
    V5(Box<rumqttc::v5::EventLoop>),
}

fn qos4(q: QoS) -> rumqttc::QoS {
    match q {
        QoS::AtMostOnce => rumqttc::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
        QoS::ExactlyOnce => rumqttc::QoS::ExactlyOnce,
    }
}

fn qos5(q: QoS) -> rumqttc::v5::mqttbytes::QoS {
    match q {
        QoS::AtMostOnce => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
    }
}

/// Builds the client and event loop for `config` (nothing connects until polled).
/// `manual_acks`: incoming messages are acknowledged by [`Client::ack`] only.
pub fn connect(
    config: &MqttConnection,
    client_id: &str,
    clean_session: bool,
    manual_acks: bool,
) -> Result<(Client, EventLoop), TlsError> {
    let (host, port) = (config.broker.host.clone(), config.broker.port);
    let password = config.password.clone();
    let transport = if config.broker.tls {
        Some(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls::client_config(&config.tls)?),
        ))
    } else {
        None
    };
    let keep_alive = config.keep_alive;
    let max_packet = config.max_packet_bytes;

    Ok(match config.protocol {
        MqttProtocol::V311 => {
            let mut o = rumqttc::MqttOptions::new(client_id, host, port);
            o.set_keep_alive(keep_alive)
                .set_clean_session(clean_session)
                .set_manual_acks(manual_acks)
                .set_max_packet_size(max_packet, max_packet)
                .set_request_channel_capacity(REQUEST_CHANNEL);
            if let Some(user) = &config.username {
                o.set_credentials(user.clone(), password.unwrap_or_default());
            }
            if let Some(t) = transport {
                o.set_transport(t);
            }
            let (client, mut eventloop) = rumqttc::AsyncClient::new(o, REQUEST_CHANNEL);
            eventloop.set_network_options(network_options());
            (Client::V4(client), EventLoop::V4(Box::new(eventloop)))
        }
        MqttProtocol::V5 => {
            let mut o = rumqttc::v5::MqttOptions::new(client_id, host, port);
            o.set_keep_alive(keep_alive)
                .set_clean_start(clean_session)
                .set_manual_acks(manual_acks)
                .set_max_packet_size(Some(max_packet as u32))
                .set_request_channel_capacity(REQUEST_CHANNEL);
            if !clean_session {
                // Keep the session (and its queued messages) across reconnects.
                o.set_session_expiry_interval(Some(u32::MAX));
            }
            if let Some(user) = &config.username {
                o.set_credentials(user.clone(), password.unwrap_or_default());
            }
            if let Some(t) = transport {
                o.set_transport(t);
            }
            o.set_network_options(network_options());
            let (client, eventloop) = rumqttc::v5::AsyncClient::new(o, REQUEST_CHANNEL);
            (Client::V5(client), EventLoop::V5(Box::new(eventloop)))
        }
    })
}

impl Client {
    /// Enqueues a publish without waiting (the event loop sends it). `id` becomes the
    /// `idempotency-key` user property under MQTT 5.
    pub fn try_publish(
        &self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: Bytes,
        id: &str,
        content_type: &str,
    ) -> Result<(), SessionError> {
        match self {
            Client::V4(c) => Ok(c.try_publish(topic, qos4(qos), retain, payload.to_vec())?),
            Client::V5(c) => {
                let properties = v5p::PublishProperties {
                    user_properties: vec![("idempotency-key".to_owned(), id.to_owned())],
                    content_type: Some(content_type.to_owned()),
                    ..Default::default()
                };
                Ok(c.try_publish_with_properties(topic, qos5(qos), retain, payload, properties)?)
            }
        }
    }

    pub async fn subscribe(&self, topic: &str, qos: QoS) -> Result<(), SessionError> {
        match self {
            Client::V4(c) => Ok(c.subscribe(topic, qos4(qos)).await?),
            Client::V5(c) => Ok(c.subscribe(topic, qos5(qos)).await?),
        }
    }

    /// Queues the acknowledgement of an incoming message without waiting; an error when
    /// the request channel is full (poll the event loop) or closed.
    pub fn try_ack(&self, message: &Received) -> Result<(), SessionError> {
        match (self, &message.packet) {
            (Client::V4(c), Packet::V4(p)) => Ok(c.try_ack(p)?),
            (Client::V5(c), Packet::V5(p)) => Ok(c.try_ack(p)?),
            _ => Err(SessionError::ProtocolMismatch),
        }
    }

    /// Acknowledges an incoming message (manual acks).
    pub async fn ack(&self, message: &Received) -> Result<(), SessionError> {
        match (self, &message.packet) {
            (Client::V4(c), Packet::V4(p)) => Ok(c.ack(p).await?),
            (Client::V5(c), Packet::V5(p)) => Ok(c.ack(p).await?),
            _ => Err(SessionError::ProtocolMismatch),
        }
    }

    pub async fn disconnect(&self) {
        // Best effort: the connection may already be gone.
        let _ = match self {
            Client::V4(c) => c.disconnect().await.map_err(SessionError::from),
            Client::V5(c) => c.disconnect().await.map_err(SessionError::from),
        };
    }
}

impl EventLoop {
    /// The next event; `Err` when the connection failed (polling again reconnects).
    pub async fn poll(&mut self) -> Result<SessionEvent, SessionError> {
        use rumqttc::Outgoing;
        match self {
            EventLoop::V4(el) => {
                use rumqttc::{Event, Packet as P};
                Ok(match el.poll().await? {
                    Event::Incoming(P::ConnAck(_)) => SessionEvent::Connected,
                    Event::Incoming(P::SubAck(_)) => SessionEvent::Subscribed,
                    Event::Incoming(P::PubAck(a)) => SessionEvent::Acked(a.pkid),
                    Event::Incoming(P::PubComp(a)) => SessionEvent::Acked(a.pkid),
                    Event::Incoming(P::Publish(p)) => SessionEvent::Message(Box::new(Received {
                        topic: p.topic.clone(),
                        payload: p.payload.clone(),
                        packet: Packet::V4(p),
                    })),
                    Event::Outgoing(Outgoing::Publish(pkid)) => SessionEvent::Sent(pkid),
                    _ => SessionEvent::Other,
                })
            }
            EventLoop::V5(el) => {
                use rumqttc::v5::Event;
                use v5p::Packet as P;
                Ok(match el.poll().await? {
                    Event::Incoming(P::ConnAck(_)) => SessionEvent::Connected,
                    Event::Incoming(P::SubAck(_)) => SessionEvent::Subscribed,
                    Event::Incoming(P::PubAck(a)) => match PublishRefusal::of_puback(a.reason) {
                        None => SessionEvent::Acked(a.pkid),
                        Some(refusal) => SessionEvent::Refused(a.pkid, refusal),
                    },
                    Event::Incoming(P::PubComp(a)) => match PublishRefusal::of_pubcomp(a.reason) {
                        None => SessionEvent::Acked(a.pkid),
                        Some(refusal) => SessionEvent::Refused(a.pkid, refusal),
                    },
                    Event::Incoming(P::Publish(p)) => SessionEvent::Message(Box::new(Received {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: p.payload.clone(),
                        packet: Packet::V5(p),
                    })),
                    Event::Outgoing(Outgoing::Publish(pkid)) => SessionEvent::Sent(pkid),
                    _ => SessionEvent::Other,
                })
            }
        }
    }

    /// Drops the connection and everything rumqttc would resend on its own (its
    /// in-flight state, its pending list, requests still in its channel): after a
    /// disconnect, Outpost resends from its queue, so nothing may be sent twice behind
    /// its back or matched to the wrong packet id.
    pub fn reset(&mut self) {
        match self {
            EventLoop::V4(el) => {
                el.clean();
                el.pending.clear();
            }
            EventLoop::V5(el) => {
                el.clean();
                el.pending.clear();
            }
        }
    }
}
