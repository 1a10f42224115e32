//! The delivery loop against a scripted transport and a real queue: partial
//! acknowledgements resume where they stopped, and a refused batch is isolated so only
//! its culprit is dead-lettered.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::sinks::harness::{quick_policy, Harness};
use crate::sinks::Failure;

/// What the scripted transport answers to a call.
#[derive(Clone, Copy)]
enum Answer {
    /// [`Delivered::All`].
    Acked,
    /// [`Delivered::InFlight`] with this many acknowledged.
    InFlight(usize),
    /// A [`Partial`] with this many acknowledged; permanent or not.
    Fail(usize, bool),
}
use Answer::*;

/// A transport that answers from a script and records what it was given.
struct Scripted {
    batch_len: usize,
    /// A permanent failure names the message after the acknowledged prefix alone.
    pinpoints: bool,
    answers: Mutex<VecDeque<Answer>>,
    calls: Arc<Mutex<Vec<Vec<String>>>>,
    /// Run on every call (e.g. to break the queue's storage meanwhile).
    on_call: Option<Box<dyn Fn() + Send + Sync>>,
}

impl Transport for Scripted {
    fn batch_len(&self, head: &[StoredMessage]) -> usize {
        head.len().min(self.batch_len)
    }

    fn pinpoints_refusals(&self) -> bool {
        self.pinpoints
    }

    async fn deliver(&self, batch: &[StoredMessage]) -> Result<Delivered, Partial> {
        let payloads = batch
            .iter()
            .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
            .collect();
        self.calls.lock().unwrap().push(payloads);
        if let Some(f) = &self.on_call {
            f();
        }
        let failure =
            || Failure::ConnectionLost(Arc::new(crate::mqtt::SessionError::ProtocolMismatch));
        match self.answers.lock().unwrap().pop_front().unwrap_or(Acked) {
            Acked => Ok(Delivered::All),
            InFlight(acked) => Ok(Delivered::InFlight { acked }),
            Fail(acked, true) => Err(Partial {
                acked,
                error: DeliveryError::Permanent(failure()),
            }),
            Fail(acked, false) => Err(Partial {
                acked,
                error: DeliveryError::Transient(failure()),
            }),
        }
    }
}

/// What a run of the loop saw: the calls made, the dead-lettered payloads, the sink.
struct Run {
    calls: Vec<Vec<String>>,
    dead: Vec<String>,
    state: Arc<SinkState>,
}

/// Queues `payloads` for sink `s`, runs the loop with a scripted transport until the
/// FIFO is empty, and returns what happened. `setup` may change the policy, set the
/// loop's clock and hook the transport (given the harness).
async fn drive_with(
    payloads: &[&str],
    (batch_len, pinpoints): (usize, bool),
    answers: Vec<Answer>,
    setup: impl FnOnce(&mut DeliveryConfig, &Harness) -> Option<Box<dyn Fn() + Send + Sync>>,
) -> Run {
    let mut h = Harness::with(payloads).await;
    let mut policy = quick_policy();
    let on_call = setup(&mut policy, &h);
    let calls = Arc::new(Mutex::new(Vec::new()));
    let transport = Scripted {
        batch_len,
        pinpoints,
        answers: Mutex::new(answers.into()),
        calls: Arc::clone(&calls),
        on_call,
    };
    h.start_default(transport, policy);
    h.drained().await;
    let dead = h.stop().await;
    let calls = calls.lock().unwrap().clone();
    Run {
        calls,
        dead,
        state: Arc::clone(&h.state),
    }
}

async fn drive(
    payloads: &[&str],
    batch_len: usize,
    answers: Vec<Answer>,
) -> (Vec<Vec<String>>, Vec<String>) {
    let run = drive_with(payloads, (batch_len, false), answers, |_, _| None).await;
    (run.calls, run.dead)
}

fn strs(calls: &[&[&str]]) -> Vec<Vec<String>> {
    calls
        .iter()
        .map(|c| c.iter().map(|s| s.to_string()).collect())
        .collect()
}

#[tokio::test]
async fn a_partial_ack_resumes_after_the_acknowledged_prefix() {
    let (calls, dead) = drive(&["a", "b", "c", "d"], 4, vec![Fail(2, false)]).await;
    assert_eq!(calls, strs(&[&["a", "b", "c", "d"], &["c", "d"]]));
    assert!(dead.is_empty());
}

#[tokio::test]
async fn a_refused_batch_is_sent_one_by_one_and_only_the_culprit_is_dead_lettered() {
    let answers = vec![Fail(0, true), Acked, Fail(0, true), Acked];
    let (calls, dead) = drive(&["a", "b", "c", "d"], 3, answers).await;
    assert_eq!(
        calls,
        strs(&[&["a", "b", "c"], &["a"], &["b"], &["c"], &["d"]])
    );
    assert_eq!(dead, ["b"]);
}

#[tokio::test]
async fn a_refusal_after_an_acknowledged_prefix_isolates_the_rest() {
    let answers = vec![Fail(1, true), Fail(0, true)];
    let (calls, dead) = drive(&["a", "b", "c"], 3, answers).await;
    assert_eq!(calls, strs(&[&["a", "b", "c"], &["b"], &["c"]]));
    assert_eq!(dead, ["b"]);
}

#[tokio::test]
async fn a_single_refused_message_is_dead_lettered_and_the_fifo_moves_on() {
    let (calls, dead) = drive(&["a", "b"], 1, vec![Fail(0, true)]).await;
    assert_eq!(calls, strs(&[&["a"], &["b"]]));
    assert_eq!(dead, ["a"]);
}

#[tokio::test]
async fn a_message_failing_max_attempts_times_is_dead_lettered_and_the_fifo_moves_on() {
    let answers = vec![Fail(0, false), Fail(0, false), Fail(0, false)];
    let run = drive_with(&["poison", "next"], (1, false), answers, |policy, _| {
        policy.max_attempts = std::num::NonZeroU32::new(3);
        None
    })
    .await;
    assert_eq!(
        run.calls,
        strs(&[&["poison"], &["poison"], &["poison"], &["next"]])
    );
    assert_eq!(run.dead, ["poison"]);
}

#[tokio::test]
async fn messages_older_than_max_age_are_dropped_and_counted() {
    let run = drive_with(&["old", "older"], (1, false), vec![], |policy, h| {
        policy.max_age = Some(Duration::from_millis(1));
        let queued = h.head()[1].enqueued_ms;
        h.set_now(queued + 5); // both queued 5 ms ago
        None
    })
    .await;
    assert!(
        run.calls.is_empty(),
        "expired messages are not sent: {:?}",
        run.calls
    );
    assert_eq!(run.state.expired_total(), 2);
    assert!(run.dead.is_empty());
}

#[tokio::test]
async fn deletes_that_fail_are_retried_without_sending_the_messages_again() {
    let run = drive_with(&["a", "b"], (2, false), vec![], |_, h| {
        let queue = Arc::clone(&h.queue);
        // The storage fails while the batch is out; the committer's maintenance
        // reopens the database a moment later, and the deletes go through.
        Some(Box::new(move || queue.simulate_disk_failure()))
    })
    .await;
    assert_eq!(
        run.calls,
        strs(&[&["a", "b"]]),
        "delivered once, never resent"
    );
    assert_eq!(run.state.status(), crate::sinks::SinkStatus::Connected);
    assert!(run.state.last_error().unwrap().contains("failed"));
}

#[tokio::test]
async fn messages_in_flight_start_the_next_batch_followed_by_the_rest_of_the_head() {
    let payloads: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
    let payloads: Vec<&str> = payloads.iter().map(String::as_str).collect();
    // 64 read (BATCH); 60 acknowledged, 4 still in flight: they lead the next batch,
    // followed by the 36 messages after them.
    let (calls, dead) = drive(&payloads, 100, vec![InFlight(60), Acked]).await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0], payloads[..64]);
    assert_eq!(calls[1], payloads[60..]);
    assert!(dead.is_empty());
}

#[tokio::test]
async fn messages_in_flight_are_handed_back_at_once_when_nothing_newer_is_queued() {
    // Nothing follows the carried messages: the next call gets them without waiting
    // for new ones (the transport then awaits their acknowledgements).
    let (calls, dead) = drive(&["a", "b", "c", "d"], 4, vec![InFlight(1), Acked]).await;
    assert_eq!(calls, strs(&[&["a", "b", "c", "d"], &["b", "c", "d"]]));
    assert!(dead.is_empty());
}

#[tokio::test]
async fn a_refusal_the_transport_pinpoints_dead_letters_that_message_alone() {
    // Per-message acknowledgements (MQTT): no need to send the rest one by one.
    let run = drive_with(&["a", "b", "c"], (3, true), vec![Fail(0, true)], |_, _| {
        None
    })
    .await;
    assert_eq!(run.calls, strs(&[&["a", "b", "c"], &["b", "c"]]));
    assert_eq!(run.dead, ["a"]);
}

#[tokio::test]
async fn max_attempts_counts_across_passes_that_end_with_messages_in_flight() {
    // Each retry sends the head again and ends its pass with it still in flight: the
    // failed attempts at "poison" still add up to max_attempts.
    let answers = vec![
        Fail(0, false),
        InFlight(0),
        Fail(0, false),
        InFlight(0),
        Fail(0, false),
    ];
    let run = drive_with(&["poison", "next"], (2, true), answers, |policy, _| {
        policy.max_attempts = std::num::NonZeroU32::new(3);
        None
    })
    .await;
    assert_eq!(run.dead, ["poison"]);
    assert_eq!(run.calls.last().unwrap(), &["next"]);
}
