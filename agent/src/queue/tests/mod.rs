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
        ..QueueConfig::default()
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
    q.submit(&[message("a", "1"), message("b", "x"), message("a", "2")])
        .unwrap()
        .durable()
        .await
        .unwrap();
    q.submit(&[message("a", "3")])
        .unwrap()
        .durable()
        .await
        .unwrap();
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
    q.submit(&all).unwrap().durable().await.unwrap();
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
        q.submit(&[message("zzz", "1")]),
        Err(QueueError::UnknownSink(s)) if s == "zzz"
    ));
}

#[tokio::test]
async fn survives_reopen_with_counters() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, ids) = {
        let q = Queue::open(dir.path(), &config(1 << 20, WhenFull::Reject), ["a"]).unwrap();
        q.submit(&[message("a", "1"), message("a", "2")])
            .unwrap()
            .durable()
            .await
            .unwrap();
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
    q.submit(&[message("a", "3")])
        .unwrap()
        .durable()
        .await
        .unwrap();
    assert_eq!(bodies(&q, "a"), ["1", "2", "3"]);
}

#[tokio::test]
async fn reject_when_full() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), &config(4096, WhenFull::Reject), ["a"]).unwrap();
    let big = "x".repeat(1500);
    q.submit(&[message("a", &big), message("a", &big)])
        .unwrap()
        .durable()
        .await
        .unwrap();
    let err = q.submit(&[message("a", &big)]).err().expect("full");
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
        q.submit(&[message(sink, &body(n))])
            .unwrap()
            .durable()
            .await
            .unwrap();
    }
    q.submit(&[message("b", &body(4))])
        .unwrap()
        .durable()
        .await
        .unwrap();
    // The oldest message (a:1) went to make room.
    assert_eq!(q.sink("a").unwrap().dropped_full(), 1);
    assert_eq!(bodies(&q, "a"), [body(3)]);
    assert_eq!(bodies(&q, "b"), [body(2), body(4)]);
    assert!(q.stats().bytes <= 4096);
    // A batch larger than the whole queue is refused, not allowed to empty it.
    assert!(q.submit(&[message("a", &"y".repeat(5000))]).is_err());
    assert_eq!(q.stats().depth, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_group_commits() {
    let dir = tempfile::tempdir().unwrap();
    let q = Arc::new(Queue::open(dir.path(), &config(64 << 20, WhenFull::Reject), ["a"]).unwrap());
    let before = q.stats().commits;
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let q = Arc::clone(&q);
            tokio::spawn(async move {
                let ticket = tokio::task::spawn_blocking(move || {
                    q.submit(&[message("a", &i.to_string())]).unwrap()
                })
                .await
                .unwrap();
                ticket.durable().await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let commits = q.stats().commits - before;
    assert_eq!(q.stats().depth, 100);
    assert!(
        commits < 100,
        "100 requests took {commits} commits: no grouping"
    );
    assert_eq!(q.stats().syncs, q.stats().commits, "one sync per commit");
}

#[tokio::test]
async fn large_payloads_live_in_segments_and_go_once_acked() {
    let dir = tempfile::tempdir().unwrap();
    let big = |n: usize| format!("{n}{}", "z".repeat(5000));
    let expected = [big(1), big(2), "small".to_owned()];
    {
        let q = Queue::open(dir.path(), &config(1 << 20, WhenFull::Reject), ["a"]).unwrap();
        q.submit(&[
            message("a", &big(1)),
            message("a", &big(2)),
            message("a", "small"),
        ])
        .unwrap()
        .durable()
        .await
        .unwrap();
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
    q.submit(&[message("a", &big), message("a", &big)])
        .unwrap()
        .durable()
        .await
        .unwrap();
    assert!(q.submit(&[message("a", &big), message("a", &big)]).is_err());
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
async fn requests_queued_while_a_commit_is_led_share_it_and_each_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), &config(1 << 20, WhenFull::Reject), ["a"]).unwrap();
    // The first request finds no commit under way: its thread is to lead one.
    let (first, lead) = q.enqueue(&[message("a", "1")]).unwrap();
    let lead = lead.expect("the first one leads");
    // Meanwhile two more arrive: they only queue.
    let (second, none) = q.enqueue(&[message("a", "2"), message("a", "3")]).unwrap();
    assert!(none.is_none(), "a commit is under way: no second leader");
    let (third, none) = q.enqueue(&[message("a", "4")]).unwrap();
    assert!(none.is_none());
    let before = q.stats().commits;
    lead.run();
    assert_eq!(q.stats().commits - before, 1, "one commit for the three");
    for ticket in [first, second, third] {
        ticket.durable().await.unwrap();
    }
    assert_eq!(bodies(&q, "a"), ["1", "2", "3", "4"]);
    // Nothing waiting: the next request leads again, and nothing is left to wait for.
    assert!(q.enqueue(&[message("a", "5")]).unwrap().1.is_some());
    assert!(q.enqueue(&[]).unwrap().1.is_none(), "nothing to commit");
}

/// The index is flushed off the producers' path: after a crash, what the journals hold
/// past the last checkpoint is indexed again — whole requests only.
#[tokio::test]
async fn journal_frames_past_the_checkpoint_are_indexed_again_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_quiet(dir.path(), &config(1 << 20, WhenFull::Reject), ["a", "b"]).unwrap();
    let big = "b".repeat(1000);
    q.submit(&[message("a", "1")])
        .unwrap()
        .durable()
        .await
        .unwrap();
    q.flush_blocking().unwrap(); // checkpointed: "1" is not replayed again
    let checkpointed: Vec<(sled::IVec, sled::IVec)> = {
        let trees = q.core.store.trees().unwrap();
        let found = trees.pending.scan_prefix(recover::CHECKPOINT_PREFIX);
        found.map(Result::unwrap).collect()
    };
    q.submit(&[message("a", "2"), message("b", &big)])
        .unwrap()
        .durable()
        .await
        .unwrap();
    q.submit(&[message("a", "3")])
        .unwrap()
        .durable()
        .await
        .unwrap();
    // The crash: the index loses what was written to it after the checkpoint — the
    // records and the journals' checkpoints — as a sled that was not flushed would;
    // the journals are durable.
    let core = &q.core;
    let trees = core.store.trees().unwrap();
    let messages = trees.pending.iter().keys().map(Result::unwrap);
    let later: Vec<_> = messages
        .filter(|k| !recover::is_checkpoint(k))
        .skip(1)
        .collect();
    for key in later {
        trees.pending.remove(key).unwrap();
    }
    for (key, value) in checkpointed {
        trees.pending.insert(key, value).unwrap();
    }
    assert_eq!(bodies(&q, "a"), ["1"]);
    core.reindex(&trees).unwrap();
    drop(trees);
    assert_eq!(bodies(&q, "a"), ["1", "2", "3"]);
    assert_eq!(
        bodies(&q, "b"),
        [big],
        "a large payload, read from its frame"
    );
    assert_eq!(q.stats().depth, 4, "counted again");
}

/// A request whose frames did not all reach the disk was never answered: it is not
/// indexed after a crash, while those around it are.
#[tokio::test]
async fn a_request_cut_short_by_a_crash_is_left_out_whole() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open_quiet(dir.path(), &config(1 << 20, WhenFull::Reject), ["a"]).unwrap();
        for batch in [&["1"][..], &["2", "3"], &["4"]] {
            let messages: Vec<_> = batch.iter().map(|b| message("a", b)).collect();
            q.submit(&messages).unwrap().durable().await.unwrap();
        }
        // Nothing indexed reached the disk, and no checkpoint.
        let trees = q.core.store.trees().unwrap();
        for key in trees.pending.iter().keys() {
            trees.pending.remove(key.unwrap()).unwrap();
        }
        q.core.store.flush().unwrap();
    }
    // Cut the journal inside the frame of "3": the request "2", "3" is incomplete.
    let payloads = dir.path().join("queue").join("payloads");
    let journal = std::fs::read_dir(&payloads)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jrn"))
        .unwrap();
    let bytes = std::fs::read(&journal).unwrap();
    let three = bytes.windows(2).rposition(|w| w == b"\x013").unwrap();
    std::fs::write(&journal, &bytes[..three]).unwrap();
    let q = Queue::open(dir.path(), &config(1 << 20, WhenFull::Reject), ["a"]).unwrap();
    assert_eq!(
        bodies(&q, "a"),
        ["1"],
        "2 and 3 left out together; 4 after the cut"
    );
}
