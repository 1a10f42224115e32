//! Why a delivery failed, which decides what happens to the message: retried later
//! ([`DeliveryError::Transient`]) or moved to the dead letters
//! ([`DeliveryError::Permanent`]).

use std::time::Duration;

use crate::mqtt::{PublishRefusal, SessionError};

/// A failed delivery and what it means for the message.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The remote side is unreachable or overloaded: keep the message, back off, retry.
    #[error("{0}")]
    Transient(Failure),
    /// The remote side refused this message and will refuse it again: dead-letter it,
    /// so it neither blocks the sink nor vanishes.
    #[error("{0}")]
    Permanent(Failure),
}

impl DeliveryError {
    /// What happened.
    pub fn failure(&self) -> &Failure {
        match self {
            DeliveryError::Transient(f) | DeliveryError::Permanent(f) => f,
        }
    }
}

/// What went wrong, whatever the transport.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The receiver answered with a non-2xx status.
    #[error("HTTP {status}: {excerpt}")]
    Status {
        status: hyper::StatusCode,
        excerpt: String,
    },
    /// No connection, or it broke during the exchange.
    #[error("{target}: {message}")]
    Connection { target: String, message: String },
    /// The TLS handshake failed: the certificate is not trusted or not for this name,
    /// the receiver wants a client certificate, … (rustls's reason in `message`).
    #[error("{target}: TLS: {message}")]
    Tls { target: String, message: String },
    /// The forward proxy could not be reached or refused the tunnel (`proxy` never
    /// shows credentials).
    #[error("proxy {proxy}: {message}")]
    Proxy { proxy: String, message: String },
    #[error("{target}: no answer within {after:?}")]
    Timeout { target: String, after: Duration },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("message of {size} bytes exceeds max_packet_bytes {max}")]
    TooLarge { size: usize, max: usize },
    #[error("invalid header `{0}` from the plugin")]
    InvalidHeader(String),
    #[error("not connected to the broker")]
    NotConnected,
    /// The server refused one message (a Redis error reply, an AMQP return).
    #[error("{target} refused the message: {message}")]
    Refused { target: String, message: String },
    /// The broker refused one publish (an MQTT 5 reason code).
    #[error("broker refused: {0}")]
    BrokerRefused(PublishRefusal),
    #[error("publish: {0}")]
    Publish(#[source] Box<SessionError>),
    #[error("connection lost: {0}")]
    ConnectionLost(std::sync::Arc<SessionError>),
    #[error("the sink is shutting down")]
    ShuttingDown,
    #[error("no acknowledgement within {0:?}; reconnecting")]
    AckTimeout(Duration),
    /// `max_attempts` failed attempts: the message is given up (dead-lettered).
    #[error("gave up after {attempts} attempts (max_attempts); last error: {last}")]
    GaveUp { attempts: u32, last: Box<Failure> },
}

impl Failure {
    /// The HTTP status, for failures that had one (dead letters keep it).
    pub fn status_code(&self) -> Option<u16> {
        match self {
            Failure::Status { status, .. } => Some(status.as_u16()),
            Failure::GaveUp { last, .. } => last.status_code(),
            _ => None,
        }
    }
}

/// A batch the remote side did not wholly acknowledge.
#[derive(Debug)]
pub struct Partial {
    /// How many messages at the head of the batch were acknowledged.
    pub acked: usize,
    /// Why the next one was not.
    pub error: DeliveryError,
}

impl From<DeliveryError> for Partial {
    fn from(error: DeliveryError) -> Self {
        Partial { acked: 0, error }
    }
}
