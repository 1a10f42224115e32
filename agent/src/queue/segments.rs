//! Payload segments: large message payloads live in append-only files beside the sled
//! database, and the queue records in sled only point at them.
//!
//! Why: sled 0.34 keeps written values resident in its in-memory nodes whatever its
//! `cache_capacity` (a 1 GB backlog held ~700 MB of RSS). With payloads here, sled holds
//! only small records, and a payload is read from disk when its sink needs it.
//!
//! Durability: [`SegmentStore::sync`] runs in the group commit *before* sled's flush, so
//! a durable record never points at a payload that is not. A segment file is deleted
//! only after a flush made the removal of its last record durable
//! ([`SegmentStore::collect`]).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// Where a payload is: segment file, offset, length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRef {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
}

/// Segments are rotated at this size.
const SEGMENT_BYTES: u64 = 64 << 20;

struct Active {
    id: u64,
    file: File,
    len: u64,
}

#[derive(Default)]
struct Books {
    /// Live payloads per segment.
    live: HashMap<u64, u64>,
    /// Segments whose last payload was released since the last flush.
    emptied: Vec<u64>,
    /// Rotated segments not yet fsynced.
    unsynced: Vec<Arc<File>>,
    /// Open files for reading.
    readers: HashMap<u64, Arc<File>>,
}

/// The payload files of one queue.
pub struct SegmentStore {
    dir: PathBuf,
    active: Mutex<Active>,
    books: Mutex<Books>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SegmentStore {
    /// Opens `dir` and starts a new segment (old segments are only read, and deleted
    /// once empty).
    pub fn open(dir: &Path) -> std::io::Result<SegmentStore> {
        std::fs::create_dir_all(dir)?;
        let next = existing(dir)?.into_iter().max().map_or(0, |m| m + 1);
        let file = create(dir, next)?;
        Ok(SegmentStore {
            dir: dir.to_owned(),
            active: Mutex::new(Active {
                id: next,
                file,
                len: 0,
            }),
            books: Mutex::new(Books::default()),
        })
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:016x}.seg"))
    }

    /// Appends `data` (not yet durable: see [`SegmentStore::sync`]).
    pub fn append(&self, data: &[u8]) -> std::io::Result<SegmentRef> {
        let mut active = lock(&self.active);
        if active.len > 0 && active.len + data.len() as u64 > SEGMENT_BYTES {
            let id = active.id + 1;
            let file = create(&self.dir, id)?;
            let old = std::mem::replace(&mut *active, Active { id, file, len: 0 });
            lock(&self.books).unsynced.push(Arc::new(old.file));
        }
        active.file.write_all(data)?;
        let r = SegmentRef {
            segment: active.id,
            offset: active.len,
            len: data.len() as u32,
        };
        active.len += data.len() as u64;
        *lock(&self.books).live.entry(r.segment).or_default() += 1;
        Ok(r)
    }

    /// Makes every append so far durable (fdatasync).
    pub fn sync(&self) -> std::io::Result<()> {
        let rotated = std::mem::take(&mut lock(&self.books).unsynced);
        for f in rotated {
            f.sync_data()?;
        }
        lock(&self.active).file.sync_data()
    }

    /// Reads a payload.
    pub fn read(&self, r: &SegmentRef) -> std::io::Result<Vec<u8>> {
        let file = {
            let mut books = lock(&self.books);
            match books.readers.get(&r.segment) {
                Some(f) => Arc::clone(f),
                None => {
                    let f = Arc::new(File::open(self.path(r.segment))?);
                    books.readers.insert(r.segment, Arc::clone(&f));
                    f
                }
            }
        };
        let mut data = vec![0; r.len as usize];
        file.read_exact_at(&mut data, r.offset)?;
        Ok(data)
    }

    /// The record pointing at `r` was removed (not yet durably).
    pub fn release(&self, r: &SegmentRef) {
        let mut books = lock(&self.books);
        if let Some(n) = books.live.get_mut(&r.segment) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                books.emptied.push(r.segment);
            }
        }
    }

    /// Segments emptied so far; pass them to [`SegmentStore::collect`] after the next
    /// flush.
    pub fn emptied(&self) -> Vec<u64> {
        std::mem::take(&mut lock(&self.books).emptied)
    }

    /// Deletes the `emptied` segments that are still empty and not active. Call only
    /// after a flush that followed their emptying.
    pub fn collect(&self, emptied: Vec<u64>) {
        let active = lock(&self.active).id;
        let mut books = lock(&self.books);
        for id in emptied {
            if id != active && books.live.get(&id).copied().unwrap_or(0) == 0 {
                books.live.remove(&id);
                books.readers.remove(&id);
                if let Err(e) = std::fs::remove_file(self.path(id)) {
                    tracing::warn!(segment = id, error = %e, "cannot delete an empty payload segment");
                }
            }
        }
    }

    /// At start-up: counts the payloads that durable records point at, and deletes
    /// segments none point at (left over from removals made durable before a crash).
    pub fn rebuild(&self, refs: impl IntoIterator<Item = SegmentRef>) -> std::io::Result<()> {
        let active = lock(&self.active).id;
        let mut books = lock(&self.books);
        for r in refs {
            *books.live.entry(r.segment).or_default() += 1;
        }
        for id in existing(&self.dir)? {
            if id != active && !books.live.contains_key(&id) {
                std::fs::remove_file(self.path(id))?;
            }
        }
        Ok(())
    }

    /// Number of segment files (for tests and health).
    pub fn files(&self) -> usize {
        existing(&self.dir).map_or(0, |v| v.len())
    }
}

fn create(dir: &Path, id: u64) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(dir.join(format!("{id:016x}.seg")))?;
    // Make the new file's directory entry durable too.
    File::open(dir)?.sync_all()?;
    Ok(file)
}

fn existing(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".seg")) {
            if let Ok(id) = u64::from_str_radix(hex, 16) {
                ids.push(id);
            }
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_read_release_collect_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let store = SegmentStore::open(dir.path()).unwrap();
        let a = store.append(b"alpha").unwrap();
        let b = store.append(&vec![7u8; 1000]).unwrap();
        store.sync().unwrap();
        assert_eq!(store.read(&a).unwrap(), b"alpha");
        assert_eq!(store.read(&b).unwrap(), vec![7u8; 1000]);
        assert_eq!(b.offset, 5);

        // Reopen: a new active segment; the old one is kept while referenced.
        drop(store);
        let store = SegmentStore::open(dir.path()).unwrap();
        store.rebuild([a, b]).unwrap();
        assert_eq!(store.files(), 2);
        store.release(&a);
        store.release(&b);
        let emptied = store.emptied();
        assert_eq!(emptied, [a.segment]);
        store.collect(emptied);
        assert_eq!(store.files(), 1, "the emptied old segment is deleted");

        // Unreferenced segments are deleted at start-up.
        let c = store.append(b"orphan").unwrap();
        store.sync().unwrap();
        drop(store);
        let store = SegmentStore::open(dir.path()).unwrap();
        store.rebuild([]).unwrap();
        assert!(store.read(&c).is_err());
        assert_eq!(store.files(), 1);
    }
}
