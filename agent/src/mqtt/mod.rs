//! MQTT plumbing shared by the MQTT sink and the MQTT source: connection options from
//! config (URL, credentials, TLS), and one session type over rumqttc's MQTT 3.1.1 and 5
//! clients, so the sink and source are written once.

mod session;
mod tls;

pub use session::{connect, Client, EventLoop, Received, SessionEvent};

/// Why an MQTT connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("bad MQTT url `{0}`")]
    Url(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("credentials: {0}")]
    Credentials(String),
}
