use super::*;

#[test]
fn append_read_release_collect_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::open(dir.path(), 1 << 20).unwrap();
    let a = store.append("s", b"alpha").unwrap();
    let b = store.append("s", &vec![7u8; 1000]).unwrap();
    store.sync().unwrap();
    assert_eq!(store.read(&a).unwrap(), b"alpha");
    assert_eq!(store.read(&b).unwrap(), vec![7u8; 1000]);
    assert_eq!(b.offset, 5);
    assert_eq!(store.charged_bytes(), 1005);

    // Reopen: the old segment is kept while referenced, counted whole.
    drop(store);
    let store = SegmentStore::open(dir.path(), 1 << 20).unwrap();
    store.rebuild([a, b], &Default::default()).unwrap();
    assert_eq!(store.files(), 1);
    assert_eq!(store.charged_bytes(), 1005);
    store.release(&a);
    assert!(store.emptied().is_empty(), "one payload still lives");
    store.release(&b);
    let emptied = store.emptied();
    assert_eq!(emptied, [a.segment]);
    store.collect(emptied, |_| None);
    assert_eq!(store.files(), 0, "the emptied old segment is gone");
    assert_eq!(store.charged_bytes(), 0);

    // Unreferenced segments are deleted at start-up.
    let c = store.append("s", b"orphan").unwrap();
    store.sync().unwrap();
    drop(store);
    let store = SegmentStore::open(dir.path(), 1 << 20).unwrap();
    store.rebuild([], &Default::default()).unwrap();
    assert!(store.read(&c).is_err());
    assert_eq!(store.files(), 0);
}

#[test]
fn streams_rotate_on_their_own_and_release_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::open(dir.path(), 100).unwrap();
    let slow: Vec<_> = (0..3)
        .map(|_| store.append("slow", &[1; 60]).unwrap())
        .collect();
    let fast: Vec<_> = (0..3)
        .map(|_| store.append("fast", &[2; 60]).unwrap())
        .collect();
    assert!(slow
        .iter()
        .all(|r| !fast.iter().any(|f| f.segment == r.segment)));
    assert_eq!(store.files(), 6, "one payload per 100-byte segment");
    // The fast stream drains: its rotated segments go; the slow one pins nothing of it.
    for r in &fast {
        store.release(r);
    }
    store.collect(store.emptied(), |_| None);
    assert_eq!(store.files(), 4, "fast keeps its active segment only");
    // Charged: slow's two rotated files, its active live payload, nothing of fast.
    assert_eq!(store.charged_bytes(), 180);
}
