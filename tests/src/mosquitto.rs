//! A real mosquitto broker on free 127.0.0.1 ports, with a temp config, and a test
//! subscriber (rumqttc, MQTT 5) that records what it receives.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{Client, Event, MqttOptions};

/// A running broker. Killed on drop.
pub struct Mosquitto {
    child: Option<Child>,
    pub port: u16,
    conf: PathBuf,
    log: PathBuf,
}

fn binary() -> &'static str {
    if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

impl Mosquitto {
    /// Starts a broker with persistence in `dir` and `extra` config lines (`{PORT}` in
    /// them becomes the plain listener's port).
    pub fn start(dir: &Path, extra: &str) -> Mosquitto {
        let port = crate::free_port();
        let conf = dir.join("mosquitto.conf");
        // Started as root, mosquitto switches to the `mosquitto` user, which could not
        // read the test's keys or write its persistence into the 0700 temp dir.
        let user = if is_root() { "user root\n" } else { "" };
        std::fs::write(
            &conf,
            format!(
                "{user}listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                 persistence_location {}/\nautosave_interval 1\nlog_type all\n{}\n",
                dir.display(),
                extra.replace("{PORT}", &port.to_string())
            ),
        )
        .unwrap();
        let mut broker = Mosquitto {
            child: None,
            port,
            conf,
            log: dir.join("mosquitto.log"),
        };
        broker.spawn();
        broker
    }

    fn spawn(&mut self) {
        let child = Command::new(binary())
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.log)
                    .unwrap(),
            )
            .spawn()
            .expect("start mosquitto (apt-get install mosquitto)");
        self.child = Some(child);
        let port = self.port;
        crate::wait_for("mosquitto to listen", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
    }

    /// `mqtt://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Stops the broker (SIGTERM: it saves its sessions).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and config.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(150).collect();
            eprintln!("--- mosquitto's log, last {} lines:", tail.len());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One received message.
#[derive(Debug, Clone)]
pub struct MqttMessage {
    pub topic: String,
    pub payload: Vec<u8>,
    pub user_properties: Vec<(String, String)>,
}

impl MqttMessage {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).expect("payload is JSON")
    }
    pub fn property(&self, name: &str) -> Option<&str> {
        self.user_properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A subscriber with a persistent session (QoS 1), so the broker keeps messages for it
/// while either side is away.
pub struct Subscriber {
    messages: Arc<Mutex<Vec<MqttMessage>>>,
    client: Client,
}

impl Subscriber {
    pub fn start(port: u16, filter: &str) -> Subscriber {
        let id = format!("test-sub-{}", crate::free_port());
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_clean_start(false);
        options.set_session_expiry_interval(Some(3600));
        options.set_keep_alive(Duration::from_secs(5));
        options.set_max_packet_size(Some(1 << 20));
        let (client, mut connection) = Client::new(options, 100);
        let messages = Arc::new(Mutex::new(Vec::new()));
        let (sink, sub, filter) = (Arc::clone(&messages), client.clone(), filter.to_owned());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = sub.subscribe(filter.clone(), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let user_properties = p
                            .properties
                            .as_ref()
                            .map(|props| props.user_properties.clone())
                            .unwrap_or_default();
                        sink.lock().unwrap().push(MqttMessage {
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            payload: p.payload.to_vec(),
                            user_properties,
                        });
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("test subscriber subscribed");
        Subscriber { messages, client }
    }

    pub fn messages(&self) -> Vec<MqttMessage> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits until at least `n` messages arrived.
    pub fn wait(&self, n: usize, timeout: Duration) -> Vec<MqttMessage> {
        crate::wait_for(&format!("{n} MQTT messages"), timeout, || {
            let got = self.messages();
            (got.len() >= n).then_some(got)
        })
    }

    /// Publishes a message (QoS 1) as a producer would.
    pub fn publish(&self, topic: &str, payload: &[u8]) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
            .unwrap();
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
    }
}
