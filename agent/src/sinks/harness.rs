//! Test harness of the delivery loop: a real queue in a temp dir, the loop under test
//! with a transport of the test's choosing (scripted, or a transport over a fake
//! broker link), a clock the test sets, and waits for what the test asserts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use outpost_pdk::Message;
use tokio::task::JoinHandle;

use super::delivery::{DeliveryLoop, BATCH};
use super::{SinkState, SinkStatus, Transport};
use crate::clock::Clock;
use crate::config::{DeliveryConfig, QueueConfig, RetryConfig};
use crate::queue::{DeadSelection, Queue, SinkQueue, StoredMessage};
use crate::shutdown::Stopper;

/// A queue with one sink, `s`, and its delivery loop once started.
pub(super) struct Harness {
    _dir: tempfile::TempDir,
    pub queue: Arc<Queue>,
    pub fifo: Arc<SinkQueue>,
    pub state: Arc<SinkState>,
    /// The loop's clock in Unix ms; 0: the system's.
    now_ms: Arc<AtomicU64>,
    running: Option<(Stopper, JoinHandle<()>)>,
}

/// A delivery policy with quick retries.
pub(super) fn quick_policy() -> DeliveryConfig {
    DeliveryConfig {
        retry: RetryConfig {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(2),
        },
        ..DeliveryConfig::default()
    }
}

impl Harness {
    /// A fresh queue holding `payloads` for sink `s`, committed.
    pub async fn with(payloads: &[&str]) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let config = QueueConfig {
            min_free_bytes: Some(0),
            ..QueueConfig::default()
        };
        let queue = Arc::new(Queue::open(dir.path(), &config, ["s"]).unwrap());
        let harness = Harness {
            fifo: queue.sink("s").unwrap(),
            queue,
            _dir: dir,
            state: Arc::new(SinkState::new("s", "test")),
            now_ms: Arc::default(),
            running: None,
        };
        harness.queue_more(payloads).await;
        harness
    }

    /// Queues `payloads` (one request) for sink `s`.
    pub async fn queue_more(&self, payloads: &[&str]) {
        let messages: Vec<Message> = payloads.iter().map(|p| Message::text("s", *p)).collect();
        self.queue
            .submit(&messages)
            .unwrap()
            .durable()
            .await
            .unwrap();
    }

    /// The messages queued, as the loop reads them.
    pub fn head(&self) -> Vec<StoredMessage> {
        self.queue
            .peek(&self.fifo, &[], usize::MAX, usize::MAX)
            .unwrap()
            .messages
    }

    /// Sets the loop's clock (Unix ms).
    pub fn set_now(&self, ms: u64) {
        self.now_ms.store(ms, Ordering::SeqCst);
    }

    /// Starts the loop over `transport`, reading `peek` messages per pass.
    pub fn start<T: Transport>(&mut self, transport: T, policy: DeliveryConfig, peek: usize) {
        let (stop, shutdown) = Stopper::new();
        let now = Arc::clone(&self.now_ms);
        let looper = DeliveryLoop {
            queue: Arc::clone(&self.queue),
            fifo: Arc::clone(&self.fifo),
            state: Arc::clone(&self.state),
            policy,
            peek,
            shutdown,
            clock: Clock::from_fn(move || match now.load(Ordering::SeqCst) {
                0 => crate::clock::now_ms(),
                ms => ms,
            }),
            carry: Vec::new(),
        };
        self.running = Some((stop, tokio::spawn(looper.run(transport))));
    }

    /// [`Harness::start`] with the loop's usual batch.
    pub fn start_default<T: Transport>(&mut self, transport: T, policy: DeliveryConfig) {
        self.start(transport, policy, BATCH);
    }

    /// Waits until nothing is queued and deletes work (a reopen of the storage zeroes
    /// the depth for a moment while the loop is still stalled on its deletes).
    pub async fn drained(&self) {
        self.until("the FIFO to drain", || {
            self.fifo.depth() == 0 && self.state.status() != SinkStatus::Stalled
        })
        .await;
    }

    /// Waits until `done` holds, or panics naming `what` after 20 s.
    pub async fn until(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Stops the loop (it must stop) and returns the dead-lettered payloads.
    pub async fn stop(&mut self) -> Vec<String> {
        if let Some((stop, task)) = self.running.take() {
            stop.stop();
            task.await.unwrap();
        }
        self.queue
            .dead_letters(&DeadSelection::default(), 100, true)
            .unwrap()
            .into_iter()
            .map(|d| String::from_utf8_lossy(&d.payload.unwrap()).into_owned())
            .collect()
    }
}

/// A message's payload as text.
pub(super) fn text(m: &StoredMessage) -> String {
    String::from_utf8_lossy(&m.payload).into_owned()
}
