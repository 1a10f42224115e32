//! Out of space, failures and compaction.

use super::{bodies, config, message};
use crate::config::WhenFull;
use crate::queue::*;

#[tokio::test]
async fn a_failed_database_refuses_writes_as_out_of_space_and_recovers_by_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), &config(1 << 20, WhenFull::Reject), ["a"]).unwrap();
    let big = "b".repeat(1000);
    q.submit(&[message("a", "kept"), message("a", &big)])
        .unwrap()
        .durable()
        .await
        .unwrap();
    let head = q
        .peek(&q.sink("a").unwrap(), &[], 1, usize::MAX)
        .unwrap()
        .messages
        .remove(0);

    q.simulate_disk_failure();
    let e = q.submit(&[message("a", "refused")]).err().expect("refused");
    assert!(e.is_out_of_space(), "{e}");
    assert!(
        q.ack(&q.sink("a").unwrap(), &head).is_err(),
        "deletes wait too"
    );
    assert_eq!(q.storage().state, StorageState::Failed);

    q.core.maintain(&mut maintain::Maintenance::default());
    assert_eq!(q.storage().state, StorageState::Ok);
    assert_eq!(q.storage().reopens, 1);
    assert_eq!(
        bodies(&q, "a"),
        ["kept", big.as_str()],
        "everything committed is there"
    );
    assert_eq!(q.stats().depth, 2, "counters rebuilt");
    q.submit(&[message("a", "after")])
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
    assert!(ids[2] > ids[1], "ids keep growing across the reopen");
}

#[tokio::test]
async fn compaction_keeps_every_record_and_gives_space_back() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), &config(256 << 20, WhenFull::Reject), ["a"]).unwrap();
    let a = &q.sink("a").unwrap();
    for chunk in 0..40 {
        let messages: Vec<_> = (0..500)
            .map(|i| message("a", &format!("{chunk}-{i}-{}", "p".repeat(100))))
            .collect();
        q.submit(&messages).unwrap().durable().await.unwrap();
    }
    let head: Vec<_> = q.peek(a, &[], 19_990, usize::MAX).unwrap().messages;
    for m in &head {
        q.ack(a, m).unwrap();
    }
    let bad = q.peek(a, &[], 1, usize::MAX).unwrap().messages.remove(0);
    q.dead_letter(a, &bad, "refused", Some(400)).unwrap();
    let kv = q.kv_stores().open("plugin", 1 << 20).unwrap();
    kv.set("state", b"kept").unwrap();
    q.flush_blocking().unwrap();
    let db = || {
        std::fs::metadata(dir.path().join("queue/db"))
            .unwrap()
            .len()
    };
    let (before, remaining) = (db(), bodies(&q, "a"));
    assert_eq!(remaining.len(), 9);

    q.core.compact(before).unwrap();
    assert!(db() * 4 < before, "{} -> {}", before, db());
    assert_eq!(bodies(&q, "a"), remaining);
    assert_eq!(a.depth(), 9);
    assert_eq!(a.dead_letters(), 1);
    assert_eq!(kv.get("state").unwrap().as_deref(), Some(&b"kept"[..]));
    q.submit(&[message("a", "new")])
        .unwrap()
        .durable()
        .await
        .unwrap();
    let ids: Vec<_> = q
        .peek(a, &[], 20, usize::MAX)
        .unwrap()
        .messages
        .iter()
        .map(|m| m.id)
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "order and ids survive: {ids:?}"
    );
    drop((kv, q));
    let q = Queue::open(dir.path(), &config(256 << 20, WhenFull::Reject), ["a"]).unwrap();
    assert_eq!(q.stats().depth, 10, "and a restart");
}

#[tokio::test]
async fn the_disk_reserve_refuses_new_work() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(1 << 20, WhenFull::Reject);
    c.min_free_bytes = Some(u64::MAX / 2);
    let q = Queue::open(dir.path(), &c, ["a"]).unwrap();
    let e = q.submit(&[message("a", "x")]).err().expect("refused");
    assert!(
        matches!(e, QueueError::DiskFull { .. }) && e.is_out_of_space(),
        "{e}"
    );
    assert_eq!(q.storage().state, StorageState::Full);
    assert_eq!(q.stats().depth, 0);
}
