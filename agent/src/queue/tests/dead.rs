//! Dead letters: moved, counted, listed, replayed, purged.

use super::{bodies, config, message};
use crate::config::WhenFull;
use crate::queue::*;

#[tokio::test]
async fn dead_letter_moves_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), &config(1 << 20, WhenFull::Reject), ["a"]).unwrap();
    q.submit(&[message("a", "bad"), message("a", "good")])
        .unwrap()
        .durable()
        .await
        .unwrap();
    let a = &q.sink("a").unwrap();
    let head = q.peek(a, &[], 1, usize::MAX).unwrap().messages.remove(0);
    q.dead_letter(a, &head, "400 Bad Request", Some(400))
        .unwrap();
    assert_eq!(bodies(&q, "a"), ["good"]);
    assert_eq!(a.dead_letters(), 1);
    let dead = q.dead_letters(&DeadSelection::default(), 10, true).unwrap();
    assert_eq!(dead[0].reason, "400 Bad Request");
    assert_eq!(dead[0].status, Some(400));
    assert_eq!(dead[0].sink, "a");
    assert_eq!(dead[0].id, head.id);
    assert_eq!(dead[0].payload.as_deref(), Some(&b"bad"[..]));
    drop(q);
    let q = Queue::open(dir.path(), &config(1 << 20, WhenFull::Reject), ["a"]).unwrap();
    assert_eq!(q.sink("a").unwrap().dead_letters(), 1, "rebuilt at start");
}

#[tokio::test]
async fn dead_letters_are_replayed_into_their_fifo_or_purged() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), &config(1 << 20, WhenFull::Reject), ["a", "b"]).unwrap();
    let big = "z".repeat(2000);
    q.submit(&[
        message("a", "one"),
        message("a", &big),
        message("b", "three"),
        message("a", "tail"),
    ])
    .unwrap()
    .durable()
    .await
    .unwrap();
    let (a, b) = (&q.sink("a").unwrap(), &q.sink("b").unwrap());
    let refuse = |sink: &SinkQueue| {
        let m = q.peek(sink, &[], 1, usize::MAX).unwrap().messages.remove(0);
        q.dead_letter(sink, &m, "no", None).unwrap();
        m.id
    };
    let (one, two, three) = (refuse(a), refuse(a), refuse(b));
    assert_eq!((a.dead_letters(), b.dead_letters()), (2, 1));
    assert_eq!(q.stats().depth, 1);

    let just_two = DeadSelection {
        ids: Some([two].into()),
        ..DeadSelection::default()
    };
    assert_eq!(q.replay_dead(&just_two).unwrap(), 1);
    assert_eq!(
        bodies(&q, "a"),
        ["tail", big.as_str()],
        "back at the tail of its FIFO"
    );
    let replayed = q.peek(a, &[], 2, usize::MAX).unwrap().messages;
    assert_eq!(replayed[1].id, two, "with its id");
    assert_eq!(a.dead_letters(), 1);

    let only_b = DeadSelection {
        sink: Some("b".into()),
        ..DeadSelection::default()
    };
    let listed = q.dead_letters(&only_b, 10, false).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].id, listed[0].size, listed[0].payload.is_none()),
        (three, 5, true)
    );
    assert_eq!(q.purge_dead(&only_b).unwrap(), 1);
    assert_eq!(b.dead_letters(), 0);
    let left = q.dead_letters(&DeadSelection::default(), 10, true).unwrap();
    assert_eq!(left.iter().map(|d| d.id).collect::<Vec<_>>(), [one]);
    drop(q);
    let q = Queue::open(dir.path(), &config(1 << 20, WhenFull::Reject), ["a", "b"]).unwrap();
    assert_eq!(
        q.sink("a").unwrap().dead_letters(),
        1,
        "counted again after a restart"
    );
    assert_eq!(q.stats().depth, 2);
}
