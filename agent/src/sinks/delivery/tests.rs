//! The delivery loop against a scripted transport and a real queue: partial
//! acknowledgements resume where they stopped, and a refused batch is isolated so only
//! its culprit is dead-lettered.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use outpost_pdk::Message;

use super::*;
use crate::config::QueueConfig;
use crate::sinks::Failure;

/// A transport that answers from a script and records what it was given.
struct Scripted {
    batch_len: usize,
    answers: Mutex<VecDeque<Result<(), (usize, bool)>>>,
    calls: Arc<Mutex<Vec<Vec<String>>>>,
}

impl Transport for Scripted {
    fn batch_len(&self, head: &[StoredMessage]) -> usize {
        head.len().min(self.batch_len)
    }

    async fn deliver(&self, batch: &[StoredMessage]) -> Result<(), Partial> {
        let payloads = batch
            .iter()
            .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
            .collect();
        self.calls.lock().unwrap().push(payloads);
        let failure =
            || Failure::ConnectionLost(Arc::new(crate::mqtt::SessionError::ProtocolMismatch));
        match self.answers.lock().unwrap().pop_front().unwrap_or(Ok(())) {
            Ok(()) => Ok(()),
            Err((acked, true)) => Err(Partial {
                acked,
                error: DeliveryError::Permanent(failure()),
            }),
            Err((acked, false)) => Err(Partial {
                acked,
                error: DeliveryError::Transient(failure()),
            }),
        }
    }
}

/// Queues `payloads` for sink `s`, runs the loop with `transport` until the FIFO is
/// empty, and returns the calls made and the dead-lettered payloads.
async fn drive(
    payloads: &[&str],
    batch_len: usize,
    answers: Vec<Result<(), (usize, bool)>>,
) -> (Vec<Vec<String>>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let queue = Arc::new(Queue::open(dir.path(), &QueueConfig::default(), ["s"]).unwrap());
    let messages: Vec<Message> = payloads.iter().map(|p| Message::text("s", *p)).collect();
    let inserted = queue.insert(&messages).unwrap();
    queue.commit(inserted).await.unwrap();

    let (stop, shutdown) = watch::channel(false);
    let fifo = Arc::clone(queue.sink("s").unwrap());
    let calls = Arc::new(Mutex::new(Vec::new()));
    let looper = DeliveryLoop {
        queue: Arc::clone(&queue),
        fifo: Arc::clone(&fifo),
        state: Arc::new(SinkState::new("s", "test")),
        retry: RetryConfig {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(2),
        },
        peek: BATCH,
        shutdown,
    };
    let transport = Scripted {
        batch_len,
        answers: Mutex::new(answers.into()),
        calls: Arc::clone(&calls),
    };
    let task = tokio::spawn(looper.run(transport));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while fifo.depth() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the FIFO never drained"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap();
    let dead = queue
        .dead_letters(&fifo, 10)
        .unwrap()
        .into_iter()
        .map(|d| String::from_utf8_lossy(&d.record.payload).into_owned())
        .collect();
    let calls = calls.lock().unwrap().clone();
    (calls, dead)
}

fn strs(calls: &[&[&str]]) -> Vec<Vec<String>> {
    calls
        .iter()
        .map(|c| c.iter().map(|s| s.to_string()).collect())
        .collect()
}

#[tokio::test]
async fn a_partial_ack_resumes_after_the_acknowledged_prefix() {
    let (calls, dead) = drive(&["a", "b", "c", "d"], 4, vec![Err((2, false))]).await;
    assert_eq!(calls, strs(&[&["a", "b", "c", "d"], &["c", "d"]]));
    assert!(dead.is_empty());
}

#[tokio::test]
async fn a_refused_batch_is_sent_one_by_one_and_only_the_culprit_is_dead_lettered() {
    let answers = vec![Err((0, true)), Ok(()), Err((0, true)), Ok(())];
    let (calls, dead) = drive(&["a", "b", "c", "d"], 3, answers).await;
    assert_eq!(
        calls,
        strs(&[&["a", "b", "c"], &["a"], &["b"], &["c"], &["d"]])
    );
    assert_eq!(dead, ["b"]);
}

#[tokio::test]
async fn a_refusal_after_an_acknowledged_prefix_isolates_the_rest() {
    let answers = vec![Err((1, true)), Err((0, true))];
    let (calls, dead) = drive(&["a", "b", "c"], 3, answers).await;
    assert_eq!(calls, strs(&[&["a", "b", "c"], &["b"], &["c"]]));
    assert_eq!(dead, ["b"]);
}

#[tokio::test]
async fn a_single_refused_message_is_dead_lettered_and_the_fifo_moves_on() {
    let (calls, dead) = drive(&["a", "b"], 1, vec![Err((0, true))]).await;
    assert_eq!(calls, strs(&[&["a"], &["b"]]));
    assert_eq!(dead, ["a"]);
}
