//! A real RabbitMQ broker (Debian's rabbitmq-server, Erlang: 5–10 s to start) on free
//! 127.0.0.1 ports, with its node name, Erlang port mapper, data and logs of its own
//! in a temp dir; stopped with the epmd it started when dropped. Tests of one binary
//! share one broker ([`RabbitMq::shared`]); a test that restarts the broker starts
//! its own.
//!
//! The test side talks AMQP with lapin on a small tokio runtime of its own.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
    BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

const BIN: &str = "/usr/lib/rabbitmq/bin";

/// A running broker.
pub struct RabbitMq {
    child: Option<Child>,
    pub port: u16,
    dist_port: u16,
    epmd_port: u16,
    node: String,
    home: tempfile::TempDir,
}

impl RabbitMq {
    /// The broker this test binary's tests share (started by the first that asks,
    /// stopped when the last one is done with it).
    pub fn shared() -> Arc<RabbitMq> {
        static SHARED: Mutex<Weak<RabbitMq>> = Mutex::new(Weak::new());
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(broker) = shared.upgrade() {
            return broker;
        }
        let broker = Arc::new(RabbitMq::start());
        *shared = Arc::downgrade(&broker);
        broker
    }

    /// Starts a broker of its own.
    pub fn start() -> RabbitMq {
        let home = tempfile::tempdir().unwrap();
        let mut broker = RabbitMq {
            child: None,
            port: crate::free_port(),
            dist_port: crate::free_port(),
            epmd_port: crate::free_port(),
            node: format!("outpost-test-{}@localhost", crate::free_port()),
            home,
        };
        std::fs::write(broker.home.path().join("enabled_plugins"), "[].\n").unwrap();
        broker.spawn();
        broker
    }

    fn dir(&self) -> &Path {
        self.home.path()
    }

    fn env(&self, command: &mut Command) {
        let dir = self.dir();
        command
            .env("HOME", dir)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", dir.join("pid"));
    }

    fn spawn(&mut self) {
        let mut command = Command::new(format!("{BIN}/rabbitmq-server"));
        self.env(&mut command);
        let log = std::fs::File::create(self.dir().join("server.out")).unwrap();
        let child = command
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start rabbitmq-server (apt-get install rabbitmq-server)");
        self.child = Some(child);
        let port = self.port;
        // Each try is bounded: a broker still booting can take the TCP connection and
        // never answer the AMQP handshake (a try without a timeout hung a test run).
        crate::wait_for("rabbitmq to accept AMQP", Duration::from_secs(90), || {
            runtime().block_on(async {
                let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
                let connect = Connection::connect(&url, ConnectionProperties::default());
                let connection = tokio::time::timeout(TRY, connect).await.ok()?.ok()?;
                let _ = tokio::time::timeout(TRY, connection.close(200, "ok".into())).await;
                Some(())
            })
        });
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Stops the broker (gracefully: durable queues and persistent messages stay).
    pub fn stop(&mut self) {
        let _ = self.ctl(&["stop"]);
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again after [`stop`](Self::stop), on the same ports and data.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// Runs `rabbitmqctl` against this node; its output.
    pub fn ctl(&self, args: &[&str]) -> String {
        let mut command = Command::new(format!("{BIN}/rabbitmqctl"));
        self.env(&mut command);
        let out = command.arg("-q").args(args).output().expect("rabbitmqctl");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// (ready, unacknowledged) messages of `queue`, from the broker itself.
    pub fn queue_counts(&self, queue: &str) -> (u64, u64) {
        let out = self.ctl(&[
            "list_queues",
            "name",
            "messages_ready",
            "messages_unacknowledged",
        ]);
        out.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.len() == 3 && f[0] == queue)
            .map(|f| (f[1].parse().unwrap(), f[2].parse().unwrap()))
            .unwrap_or((0, 0))
    }

    /// The broker's log, for a failing test.
    pub fn log(&self) -> String {
        let dir = self.dir().join("log");
        std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect()
    }

    /// A client connection with one channel in confirm mode.
    pub fn client(&self) -> AmqpClient {
        AmqpClient::connect(&self.url())
    }
}

impl crate::fixture::Outage for RabbitMq {
    fn stop(&mut self) {
        RabbitMq::stop(self);
    }
    fn start_again(&mut self) {
        RabbitMq::start_again(self);
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        self.stop();
        let _ = Command::new("epmd")
            .args(["-port", &self.epmd_port.to_string(), "-kill"])
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// How long one connection attempt to a starting broker may take.
const TRY: Duration = Duration::from_secs(5);

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// The test side of AMQP, blocking.
pub struct AmqpClient {
    connection: Connection,
    channel: Channel,
}

impl AmqpClient {
    pub fn connect(url: &str) -> AmqpClient {
        runtime().block_on(async {
            let connect = Connection::connect(url, ConnectionProperties::default());
            let connection = tokio::time::timeout(Duration::from_secs(60), connect)
                .await
                .expect("rabbitmq answers the AMQP handshake within 60 s")
                .expect("connect to rabbitmq");
            let channel = connection.create_channel().await.unwrap();
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .unwrap();
            AmqpClient {
                connection,
                channel,
            }
        })
    }

    /// Declares a durable queue; `dead_letter_exchange` routes what a consumer rejects.
    pub fn queue(&self, name: &str, dead_letter_exchange: Option<&str>) {
        let mut args = FieldTable::default();
        if let Some(dlx) = dead_letter_exchange {
            args.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(dlx.into()),
            );
        }
        runtime()
            .block_on(self.channel.queue_declare(
                name.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                args,
            ))
            .unwrap();
    }

    /// Declares a durable fanout exchange bound to `queue`.
    pub fn fanout_to(&self, exchange: &str, queue: &str) {
        runtime().block_on(async {
            self.channel
                .exchange_declare(
                    exchange.into(),
                    ExchangeKind::Fanout,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .unwrap();
            self.channel
                .queue_bind(
                    queue.into(),
                    exchange.into(),
                    "".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .unwrap();
        });
    }

    /// Publishes persistent messages to `queue` (default exchange) and waits for the
    /// broker's confirms. `id(i)`: the `message_id` of the i-th, if any.
    pub fn publish_all(
        &self,
        queue: &str,
        payloads: &[Vec<u8>],
        id: impl Fn(usize) -> Option<String>,
    ) {
        runtime().block_on(async {
            let mut confirms = Vec::new();
            for (i, p) in payloads.iter().enumerate() {
                let mut props = BasicProperties::default().with_delivery_mode(2);
                if let Some(id) = id(i) {
                    props = props.with_message_id(id.into());
                }
                confirms.push(
                    self.channel
                        .basic_publish(
                            "".into(),
                            queue.into(),
                            BasicPublishOptions::default(),
                            p,
                            props,
                        )
                        .await
                        .unwrap(),
                );
            }
            for c in confirms {
                c.await.unwrap();
            }
        });
    }

    /// Takes one message off `queue` (acknowledged): its body and `message_id`.
    pub fn get(&self, queue: &str) -> Option<(Vec<u8>, Option<String>)> {
        runtime().block_on(async {
            let message = self
                .channel
                .basic_get(queue.into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()?;
            let id = message
                .delivery
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.as_str().to_owned());
            Some((message.delivery.data, id))
        })
    }

    /// Every message on `queue` now, taken off it.
    pub fn drain(&self, queue: &str) -> Vec<(Vec<u8>, Option<String>)> {
        std::iter::from_fn(|| self.get(queue)).collect()
    }

    /// A plain consumer: takes `n` messages off `queue` with `prefetch` unacknowledged
    /// at most and acknowledges each one, doing nothing else (the broker's ceiling).
    pub fn consume_and_ack(&self, queue: &str, n: usize, prefetch: u16) {
        use futures_util::StreamExt;
        runtime().block_on(async {
            self.channel
                .basic_qos(prefetch, BasicQosOptions::default())
                .await
                .unwrap();
            let mut consumer = self
                .channel
                .basic_consume(
                    queue.into(),
                    "plain-consumer".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .unwrap();
            for _ in 0..n {
                let delivery = consumer.next().await.expect("a delivery").unwrap();
                delivery.ack(BasicAckOptions::default()).await.unwrap();
            }
            self.channel
                .basic_cancel("plain-consumer".into(), BasicCancelOptions::default())
                .await
                .unwrap();
        });
    }

    pub fn purge(&self, queue: &str) {
        runtime()
            .block_on(
                self.channel
                    .queue_purge(queue.into(), QueuePurgeOptions::default()),
            )
            .unwrap();
    }
}

impl Drop for AmqpClient {
    fn drop(&mut self) {
        // Bounded: the broker may be gone.
        let close = self.connection.close(200, "done".into());
        let _ = runtime().block_on(async { tokio::time::timeout(TRY, close).await });
    }
}
