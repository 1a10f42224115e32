//! The queue against a real database in a temporary directory.

mod dead;
mod storage;

use outpost_pdk::Message;

use super::*;
use crate::config::{QueueConfig, WhenFull};

pub(super) fn config(max_bytes: u64, when_full: WhenFull) -> QueueConfig {
    QueueConfig {
        max_bytes,
        when_full,
        cache_mb: 4,
        min_free_bytes: Some(0),
    }
}

pub(super) fn message(sink: &str, body: &str) -> Message {
    Message::text(sink, body)
}

pub(super) fn bodies(queue: &Queue, sink: &str) -> Vec<String> {
    let sink = queue.sink(sink).unwrap();
    queue
        .peek(&sink, &[], 1000, usize::MAX)
        .unwrap()
        .messages
        .iter()
        .map(|m| String::from_utf8(m.payload.to_vec()).unwrap())
        .collect()
}

#[tokio::test]
async fn fifo_per_sink_and_ack_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), &config(1 << 20, WhenFull::Reject), ["a", "b"]).unwrap();
    let ins = q
        .insert(&[message("a", "1"), message("b", "x"), message("a", "2")])
        .unwrap();
    q.commit(ins).await.unwrap();
    let ins = q.insert(&[message("a", "3")]).unwrap();
    q.commit(ins).await.unwrap();
    assert_eq!(bodies(&q, "a"), ["1", "2", "3"]);
    assert_eq!(bodies(&q, "b"), ["x"]);
    assert_eq!(q.stats().depth, 4);

    let a = &q.sink("a").unwrap();
    let head = q.peek(a, &[], 1, usize::MAX).unwrap().messages.remove(0);
    q.ack(a, &head).unwrap();
    q.ack(a, &head).unwrap(); // a second ack is harmless
    assert_eq!(bodies(&q, "a"), ["2", "3"]);
    assert_eq!(a.depth(), 2);
    assert_eq!(q.stats().depth, 3);
}

#[tokio::test]
async fn a_peek_leaves_out_the_messages_held_and_still_reads_older_ones() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), &config(1 << 20, WhenFull::Reject), ["a"]).unwrap();
    let all = ["1", "2", "3", "4", "5"].map(|b| message("a", b));
    let ins = q.insert(&all).unwrap();
    q.commit(ins).await.unwrap();
    let a = &q.sink("a").unwrap();
    let held = q.peek(a, &[], 10, usize::MAX).unwrap().messages;
    // Held (in flight): 2 and 3. "1" stands for a message committed late, behind
    // them: it is read all the same.
    let next = q.peek(a, &held[1..3], 2, usize::MAX).unwrap().messages;
    let next: Vec<_> = next.iter().map(|m| &m.payload[..]).collect();
    assert_eq!(next, [&b"1"[..], b"4"]);
}

#[tokio::test]
async fn unknown_sink_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), &config(1 << 20, WhenFull::Reject), ["a"]).unwrap();
    assert!(matches!(
        q.insert(&[message("zzz", "1")]),
        Err(QueueError::UnknownSink(s)) if s == "zzz"
    ));
}

#[tokio::test]
async fn survives_reopen_with_counters() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, ids) = {
        let q = Queue::open(dir.path(), &config(1 << 20, WhenFull::Reject), ["a"]).unwrap();
        let ins = q.insert(&[message("a", "1"), message("a", "2")]).unwrap();
        q.commit(ins).await.unwrap();
        let ids: Vec<_> = q
            .peek(&q.sink("a").unwrap(), &[], 10, usize::MAX)
            .unwrap()
            .messages
            .iter()
            .map(|m| m.id)
            .collect();
        (q.stats().bytes, ids)
    };
    let q = Queue::open(dir.path(), &config(1 << 20, WhenFull::Reject), ["a"]).unwrap();
    assert_eq!(bodies(&q, "a"), ["1", "2"]);
    assert_eq!(q.stats().depth, 2);
    assert_eq!(q.stats().bytes, bytes);
    let again: Vec<_> = q
        .peek(&q.sink("a").unwrap(), &[], 10, usize::MAX)
        .unwrap()
        .messages
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, again, "message ids are stable across restarts");
    // New messages sort after the old ones.
    let ins = q.insert(&[message("a", "3")]).unwrap();
    q.commit(ins).await.unwrap();
    assert_eq!(bodies(&q, "a"), ["1", "2", "3"]);
}

#[tokio::test]
async fn reject_when_full() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), &config(4096, WhenFull::Reject), ["a"]).unwrap();
    let big = "x".repeat(1500);
    let ins = q.insert(&[message("a", &big), message("a", &big)]).unwrap();
    q.commit(ins).await.unwrap();
    let err = q.insert(&[message("a", &big)]).err().expect("full");
    assert!(matches!(err, QueueError::Full { .. }), "{err}");
    assert_eq!(q.stats().depth, 2, "nothing dropped");
    assert_eq!(q.sink("a").unwrap().dropped_full(), 0);
}

#[tokio::test]
async fn drop_oldest_when_full_counts_drops() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), &config(4096, WhenFull::DropOldest), ["a", "b"]).unwrap();
    let body = |n: usize| format!("{n}{}", "x".repeat(1000));
    for (sink, n) in [("a", 1), ("b", 2), ("a", 3)] {
        let ins = q.insert(&[message(sink, &body(n))]).unwrap();
        q.commit(ins).await.unwrap();
    }
    let ins = q.insert(&[message("b", &body(4))]).unwrap();
    q.commit(ins).await.unwrap();
    // The oldest message (a:1) went to make room.
    assert_eq!(q.sink("a").unwrap().dropped_full(), 1);
    assert_eq!(bodies(&q, "a"), [body(3)]);
    assert_eq!(bodies(&q, "b"), [body(2), body(4)]);
    assert!(q.stats().bytes <= 4096);
    // A batch larger than the whole queue is refused, not allowed to empty it.
    assert!(q.insert(&[message("a", &"y".repeat(5000))]).is_err());
    assert_eq!(q.stats().depth, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_share_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let q = Arc::new(Queue::open(dir.path(), &config(64 << 20, WhenFull::Reject), ["a"]).unwrap());
    let before = q.stats().flushes;
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let q = Arc::clone(&q);
            tokio::spawn(async move {
                let ins = q.insert(&[message("a", &i.to_string())]).unwrap();
                q.commit(ins).await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let flushes = q.stats().flushes - before;
    assert_eq!(q.stats().depth, 100);
    assert!(
        flushes < 100,
        "100 commits took {flushes} flushes: no grouping"
    );
}

#[tokio::test]
async fn large_payloads_live_in_segments_and_go_once_acked() {
    let dir = tempfile::tempdir().unwrap();
    let big = |n: usize| format!("{n}{}", "z".repeat(5000));
    let expected = [big(1), big(2), "small".to_owned()];
    {
        let q = Queue::open(dir.path(), &config(1 << 20, WhenFull::Reject), ["a"]).unwrap();
        let ins = q
            .insert(&[
                message("a", &big(1)),
                message("a", &big(2)),
                message("a", "small"),
            ])
            .unwrap();
        q.commit(ins).await.unwrap();
        assert_eq!(bodies(&q, "a"), expected);
        assert!(
            q.stats().bytes > 10_000,
            "payload bytes count against max_bytes"
        );
        assert_eq!(q.segment_files(), 1);
    }
    let q = Queue::open(dir.path(), &config(1 << 20, WhenFull::Reject), ["a"]).unwrap();
    assert_eq!(bodies(&q, "a"), expected, "payloads survive a restart");
    assert!(q.stats().bytes > 10_000, "and are counted again");
    assert_eq!(q.segment_files(), 1, "the old segment, no new one yet");
    let a = &q.sink("a").unwrap();
    for m in q.peek(a, &[], 10, usize::MAX).unwrap().messages {
        q.ack(a, &m).unwrap();
    }
    assert_eq!(q.stats().bytes, 0);
    assert_eq!(q.segment_files(), 1, "kept until the removals are durable");
    q.flush_blocking().unwrap();
    assert_eq!(
        q.segment_files(),
        0,
        "the emptied segment is gone after the flush"
    );
}

#[tokio::test]
async fn refused_batch_releases_its_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), &config(8192, WhenFull::Reject), ["a"]).unwrap();
    let big = "q".repeat(3000);
    let ins = q.insert(&[message("a", &big), message("a", &big)]).unwrap();
    q.commit(ins).await.unwrap();
    assert!(q.insert(&[message("a", &big), message("a", &big)]).is_err());
    assert_eq!(q.stats().depth, 2);
    let a = &q.sink("a").unwrap();
    for m in q.peek(a, &[], 10, usize::MAX).unwrap().messages {
        q.ack(a, &m).unwrap();
    }
    q.flush_blocking().unwrap();
    drop(q);
    let q = Queue::open(dir.path(), &config(8192, WhenFull::Reject), ["a"]).unwrap();
    assert_eq!(q.stats().depth, 0);
    assert_eq!(q.segment_files(), 0, "nothing left behind");
}

#[tokio::test]
async fn commits_gather_announced_writers_and_never_wait_for_one_that_gave_up() {
    let dir = tempfile::tempdir().unwrap();
    let q = Arc::new(Queue::open(dir.path(), &config(1 << 20, WhenFull::Reject), ["a"]).unwrap());
    // A lone writer is flushed without waiting for anybody.
    let ins = q.insert(&[message("a", "alone")]).unwrap();
    q.commit(ins).await.unwrap();

    // Two writers announced; the first commits while the second is still "in its plugin
    // call", then the second gives up: the first commit still completes.
    let first = q.writer();
    let second = q.writer();
    let ins = q.insert(&[message("a", "1")]).unwrap();
    let waiter = {
        let q = Arc::clone(&q);
        tokio::spawn(async move { q.commit_as(ins, first).await })
    };
    drop(second);
    waiter.await.unwrap().unwrap();

    // Both commit: each is answered, whether they shared a flush or not.
    let (a, b) = (q.writer(), q.writer());
    let (ia, ib) = (
        q.insert(&[message("a", "2")]).unwrap(),
        q.insert(&[message("a", "3")]).unwrap(),
    );
    let before = q.stats().flushes;
    let (ra, rb) = tokio::join!(q.commit_as(ia, a), q.commit_as(ib, b));
    ra.unwrap();
    rb.unwrap();
    assert!((1..=2).contains(&(q.stats().flushes - before)));
    assert_eq!(bodies(&q, "a"), ["alone", "1", "2", "3"]);
}
