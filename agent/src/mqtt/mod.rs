//! MQTT plumbing shared by the MQTT sink and the MQTT source: connection options from
//! config (URL, credentials, TLS), and one session type over rumqttc's MQTT 3.1.1 and 5
//! clients, so the sink and source are written once.

mod reason;
mod session;

pub use reason::{ConnectRefusal, PublishRefusal};
pub use session::{connect, Client, EventLoop, Received, SessionError, SessionEvent};
