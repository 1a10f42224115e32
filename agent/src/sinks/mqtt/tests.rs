//! The MQTT window driven by the real delivery loop and queue, against a fake broker
//! link whose answers each test scripts: what the end-to-end tests against mosquitto
//! can only provoke by chance (acknowledgements out of order, a refusal in the middle
//! of the window, a drop with a window carried across batches, a message expiring in
//! flight, max_attempts across passes) happens here on purpose.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::window::{Ack, Epoch, Link, Window};
use super::MqttTransport;
use crate::mqtt::{PublishRefusal, SessionError};
use crate::queue::StoredMessage;
use crate::sinks::harness::{quick_policy, text, Harness};
use crate::sinks::{DeliveryError, Failure};
use crate::sync::lock;

/// What the fake broker does with a publish when it arrives.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Policy {
    /// Acknowledges it at once.
    Ack,
    /// Holds it: the test answers later.
    Hold,
}

#[derive(Default)]
struct State {
    connected: bool,
    epoch: Epoch,
    /// Every publish made, in order (payloads).
    published: Vec<String>,
    /// Publishes not answered yet, oldest first.
    waiting: VecDeque<(String, oneshot::Sender<Result<(), DeliveryError>>)>,
    /// Per payload, what to do with it (else `default`).
    rules: Vec<(String, Rule)>,
    default: Option<Policy>,
}

/// What to do with a given message's publish.
#[derive(Clone, Copy)]
enum Rule {
    Refuse(PublishRefusal),
    /// Drop the connection as it arrives.
    DropConnection,
}

/// A broker link the test scripts. Cheap to clone (the test keeps one, the window one).
#[derive(Clone, Default)]
struct Fake(Arc<Mutex<State>>);

impl Fake {
    fn new(policy: Policy) -> Fake {
        let fake = Fake::default();
        {
            let mut s = lock(&fake.0);
            s.connected = true;
            s.epoch = 1;
            s.default = Some(policy);
        }
        fake
    }

    fn rule(&self, payload: &str, rule: Rule) {
        lock(&self.0).rules.push((payload.to_owned(), rule));
    }

    fn published(&self) -> Vec<String> {
        lock(&self.0).published.clone()
    }

    fn waiting(&self) -> Vec<String> {
        lock(&self.0)
            .waiting
            .iter()
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Answers the held publish of `payload`.
    fn answer(&self, payload: &str, result: Result<(), DeliveryError>) {
        let mut s = lock(&self.0);
        let i = s
            .waiting
            .iter()
            .position(|(p, _)| p == payload)
            .unwrap_or_else(|| panic!("{payload} is not in flight"));
        let (_, tx) = s.waiting.remove(i).unwrap();
        let _ = tx.send(result);
    }

    /// The connection drops (every publish in flight fails) and comes back.
    fn drop_connection(s: &mut State) {
        for (_, tx) in s.waiting.drain(..) {
            let _ = tx.send(Err(DeliveryError::Transient(Failure::ConnectionLost(
                Arc::new(SessionError::AckOverdue),
            ))));
        }
        s.epoch += 1;
    }
}

impl Link for Fake {
    fn publish(&self, message: &StoredMessage) -> Result<(Ack, Epoch), DeliveryError> {
        let mut s = lock(&self.0);
        if !s.connected {
            return Err(DeliveryError::Transient(Failure::NotConnected));
        }
        let payload = text(message);
        s.published.push(payload.clone());
        let (tx, rx) = oneshot::channel();
        let rule = s.rules.iter().find(|(p, _)| *p == payload).map(|(_, r)| *r);
        match (rule, s.default) {
            (Some(Rule::Refuse(r)), _) => {
                let _ = tx.send(Err(DeliveryError::Permanent(Failure::BrokerRefused(r))));
            }
            (Some(Rule::DropConnection), _) => {
                s.waiting.push_back((payload, tx));
                Fake::drop_connection(&mut s);
            }
            (None, Some(Policy::Ack)) => {
                let _ = tx.send(Ok(()));
            }
            (None, _) => s.waiting.push_back((payload, tx)),
        }
        Ok((rx, s.epoch))
    }

    fn epoch(&self) -> Epoch {
        lock(&self.0).epoch
    }

    fn overdue(&self, _after: Duration) {
        Fake::drop_connection(&mut lock(&self.0));
    }
}

/// The sink's transport over `fake`, with a window of `window`.
fn transport(h: &Harness, fake: &Fake, window: usize) -> MqttTransport<Fake> {
    MqttTransport {
        window: Window::new(
            fake.clone(),
            Arc::clone(&h.fifo),
            window,
            Duration::from_secs(30),
        ),
    }
}

fn payloads(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn acknowledgements_out_of_order_settle_the_window_in_order() {
    let m = payloads("m", 4);
    let mut h = Harness::with(&strs(&m)).await;
    let fake = Fake::new(Policy::Hold);
    h.start_default(transport(&h, &fake, 4), quick_policy());
    h.until("the window to fill", || fake.waiting().len() == 4)
        .await;
    for i in [2, 3, 0, 1] {
        fake.answer(&m[i], Ok(()));
    }
    h.drained().await;
    assert!(h.stop().await.is_empty());
    assert_eq!(fake.published(), m, "each published once, in order");
    assert_eq!(h.state.delivered_total(), 4);
}

#[tokio::test]
async fn a_refusal_in_the_middle_of_the_window_dead_letters_that_message_alone() {
    let m = payloads("m", 6);
    let mut h = Harness::with(&strs(&m)).await;
    let fake = Fake::new(Policy::Ack);
    fake.rule(&m[2], Rule::Refuse(PublishRefusal::NotAuthorized));
    h.start_default(transport(&h, &fake, 4), quick_policy());
    h.drained().await;
    assert_eq!(h.stop().await, ["m2"]);
    assert_eq!(fake.published(), m, "the others went out once, in order");
    assert_eq!(h.state.delivered_total(), 5);
    assert!(h
        .state
        .last_error()
        .unwrap()
        .contains("not authorized (reason code 0x87)"));
}

#[tokio::test]
async fn a_window_carried_across_batches_is_published_again_in_order_after_a_drop() {
    let m = payloads("m", 10);
    let mut h = Harness::with(&strs(&m)).await;
    let fake = Fake::new(Policy::Hold);
    // Batches of 4, window of 4: the first batch goes out whole and its window is
    // carried into the next pass, where the connection drops under it.
    h.start(transport(&h, &fake, 4), quick_policy(), 4);
    h.until("the first window", || fake.waiting().len() == 4)
        .await;
    fake.answer(&m[0], Ok(()));
    h.until("m0 to be deleted", || h.fifo.depth() == 9).await;
    {
        let mut s = lock(&fake.0);
        Fake::drop_connection(&mut s);
        s.default = Some(Policy::Ack);
    }
    h.drained().await;
    assert!(h.stop().await.is_empty());
    // m0..m3 went out, then m4 as m0's acknowledgement made room; the drop failed
    // m1..m4, and everything from m1 on went out again, in order.
    let mut expected = m[..5].to_vec();
    expected.extend_from_slice(&m[1..]);
    assert_eq!(fake.published(), expected);
}

#[tokio::test]
async fn a_message_that_expires_in_flight_is_dropped_without_resending_the_rest() {
    let m = payloads("m", 3);
    let mut h = Harness::with(&strs(&m)).await;
    let fake = Fake::new(Policy::Hold);
    let mut policy = quick_policy();
    let max_age = Duration::from_secs(60);
    policy.max_age = Some(max_age);
    h.start_default(transport(&h, &fake, 4), policy);
    h.until("the window", || fake.waiting().len() == 3).await;
    // By the loop's clock the three are now just too old; a later message arrives
    // (queued at least 1 ms after them, so not too old) and ends the wait.
    let first = h.head()[0].enqueued_ms;
    h.set_now(first + max_age.as_millis() as u64 + 1);
    lock(&fake.0).default = Some(Policy::Ack);
    while crate::clock::now_ms() <= first {
        tokio::task::yield_now().await;
    }
    h.queue_more(&["late"]).await;
    h.drained().await;
    // The broker's late answers for the expired ones change nothing.
    for p in &m {
        fake.answer(p, Ok(()));
    }
    assert!(h.stop().await.is_empty());
    assert_eq!(h.state.expired_total(), 3);
    assert_eq!(h.state.delivered_total(), 1);
    assert_eq!(
        fake.published(),
        ["m0", "m1", "m2", "late"],
        "nothing resent"
    );
}

#[tokio::test]
async fn max_attempts_counts_the_failures_of_one_message_across_passes() {
    let m = payloads("m", 3);
    let mut h = Harness::with(&strs(&m)).await;
    let fake = Fake::new(Policy::Ack);
    // Every publish of m0 takes the connection down with it (and the window's others).
    fake.rule("m0", Rule::DropConnection);
    let mut policy = quick_policy();
    policy.max_attempts = std::num::NonZeroU32::new(3);
    h.start_default(transport(&h, &fake, 2), policy);
    h.drained().await;
    assert_eq!(h.stop().await, ["m0"]);
    let tries = fake.published().iter().filter(|p| *p == "m0").count();
    assert_eq!(tries, 3, "{:?}", fake.published());
    assert_eq!(h.state.delivered_total(), 2);
    assert!(h.state.last_error().unwrap().contains("after 3 attempts"));
}
