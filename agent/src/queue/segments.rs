//! Payload segments: large message payloads live in append-only files beside the sled
//! database, and the queue records in sled only point at them.
//!
//! Why: sled 0.34 keeps written values resident in its in-memory nodes whatever its
//! `cache_capacity` (a 1 GB backlog held ~700 MB of RSS). With payloads here, sled holds
//! only small records, and a payload is read from disk when its sink needs it.
//!
//! One *stream* of segment files per sink (and one for dead letters): a sink's FIFO
//! releases its payloads in order, so its segments are deleted as it drains, and a slow
//! sink never pins files full of other sinks' delivered messages. The disk use of the
//! segments is therefore their live payloads plus at most about two segments per
//! stream ([`SegmentStore::charged_bytes`]).
//!
//! Durability: [`SegmentStore::sync`] runs in the group commit *before* sled's flush, so
//! a durable record never points at a payload that is not. A segment file is deleted
//! only after a flush made the removal of its last record durable
//! ([`SegmentStore::collect`]). A failed append (a full disk) is cut off again, so the
//! offsets of later payloads stay right.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::sync::lock;
use serde::{Deserialize, Serialize};

/// Where a payload is: segment file, offset, length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRef {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
}

/// The file a stream appends to.
struct Active {
    id: u64,
    file: Arc<File>,
    len: u64,
    synced: u64,
}

/// What is known of one segment file.
#[derive(Debug, Default, Clone, Copy)]
struct Seg {
    /// Payloads still referenced.
    live: u64,
    /// Their bytes.
    live_bytes: u64,
    /// The file's length.
    bytes: u64,
    /// Still appended to by a stream.
    active: bool,
}

impl Seg {
    /// What the segment counts against the queue's cap: a stream's active segment its
    /// live payloads (its delivered prefix is bounded by the segment size), any other
    /// segment its whole file, until it is deleted.
    fn charge(&self) -> u64 {
        if self.active {
            self.live_bytes
        } else {
            self.bytes
        }
    }
}

#[derive(Default)]
struct Books {
    segments: HashMap<u64, Seg>,
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
    segment_bytes: u64,
    next_id: AtomicU64,
    active: Mutex<HashMap<String, Active>>,
    books: Mutex<Books>,
    charged: AtomicU64,
}

impl SegmentStore {
    /// Opens `dir`; segments are rotated at `segment_bytes`. Existing segments are only
    /// read, and deleted once empty ([`SegmentStore::rebuild`] counts them).
    pub fn open(dir: &Path, segment_bytes: u64) -> std::io::Result<SegmentStore> {
        std::fs::create_dir_all(dir)?;
        let next = existing(dir)?.into_iter().max().map_or(0, |m| m + 1);
        Ok(SegmentStore {
            dir: dir.to_owned(),
            segment_bytes,
            next_id: AtomicU64::new(next),
            active: Mutex::new(HashMap::new()),
            books: Mutex::new(Books::default()),
            charged: AtomicU64::new(0),
        })
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:016x}.seg"))
    }

    /// Appends `data` to `stream` (not yet durable: see [`SegmentStore::sync`]).
    pub fn append(&self, stream: &str, data: &[u8]) -> std::io::Result<SegmentRef> {
        let mut actives = lock(&self.active);
        let rotate = actives
            .get(stream)
            .is_none_or(|a| a.len > 0 && a.len + data.len() as u64 > self.segment_bytes);
        if rotate {
            self.start_segment(&mut actives, stream)?;
        }
        let Some(active) = actives.get_mut(stream) else {
            return Err(std::io::Error::other("segment stream vanished"));
        };
        if let Err(e) = active.file.write_all_at(data, active.len) {
            // Cut a partial write off, so the next payload lands where its ref says.
            let _ = active.file.set_len(active.len);
            return Err(e);
        }
        let r = SegmentRef {
            segment: active.id,
            offset: active.len,
            len: data.len() as u32,
        };
        active.len += data.len() as u64;
        let mut books = lock(&self.books);
        let seg = books.segments.entry(r.segment).or_default();
        seg.live += 1;
        seg.live_bytes += u64::from(r.len);
        seg.bytes = active.len;
        self.charged.fetch_add(u64::from(r.len), Ordering::Relaxed);
        Ok(r)
    }

    /// Starts a new segment for `stream`; the previous one (if any) is rotated out.
    fn start_segment(
        &self,
        actives: &mut HashMap<String, Active>,
        stream: &str,
    ) -> std::io::Result<()> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let file = Arc::new(create(&self.dir, id)?);
        let new = Active {
            id,
            file,
            len: 0,
            synced: 0,
        };
        let old = actives.insert(stream.to_owned(), new);
        let mut books = lock(&self.books);
        books.segments.insert(
            id,
            Seg {
                active: true,
                ..Seg::default()
            },
        );
        if let Some(old) = old {
            if old.len > old.synced {
                books.unsynced.push(Arc::clone(&old.file));
            }
            if let Some(seg) = books.segments.get_mut(&old.id) {
                // From now on the whole file counts, until it is deleted.
                self.charged
                    .fetch_add(seg.bytes - seg.live_bytes, Ordering::Relaxed);
                seg.active = false;
                if seg.live == 0 {
                    books.emptied.push(old.id);
                }
            }
        }
        Ok(())
    }

    /// Makes every append so far durable (fdatasync of the files written to).
    pub fn sync(&self) -> std::io::Result<()> {
        let rotated = std::mem::take(&mut lock(&self.books).unsynced);
        for f in rotated {
            f.sync_data()?;
        }
        let dirty: Vec<(String, Arc<File>, u64)> = lock(&self.active)
            .iter()
            .filter(|(_, a)| a.len > a.synced)
            .map(|(s, a)| (s.clone(), Arc::clone(&a.file), a.len))
            .collect();
        for (stream, file, len) in dirty {
            file.sync_data()?;
            if let Some(a) = lock(&self.active).get_mut(&stream) {
                a.synced = a.synced.max(len).min(a.len);
            }
        }
        Ok(())
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

    /// The record pointing at `r` was removed (not yet durably). Returns the bytes that
    /// still count against the cap until the segment file is deleted (those of a
    /// rotated segment).
    pub fn release(&self, r: &SegmentRef) -> u64 {
        let mut books = lock(&self.books);
        let Some(seg) = books.segments.get_mut(&r.segment) else {
            return 0;
        };
        seg.live = seg.live.saturating_sub(1);
        seg.live_bytes = seg.live_bytes.saturating_sub(u64::from(r.len));
        let deferred = if seg.active {
            self.charged.fetch_sub(u64::from(r.len), Ordering::Relaxed);
            0
        } else {
            u64::from(r.len)
        };
        if seg.live == 0 && !seg.active {
            books.emptied.push(r.segment);
        }
        deferred
    }

    /// Segments emptied so far; pass them to [`SegmentStore::collect`] after the next
    /// flush.
    pub fn emptied(&self) -> Vec<u64> {
        std::mem::take(&mut lock(&self.books).emptied)
    }

    /// Puts `emptied` back for the next [`SegmentStore::emptied`] (the flush failed).
    pub fn collect_later(&self, emptied: Vec<u64>) {
        lock(&self.books).emptied.extend(emptied);
    }

    /// Deletes the `emptied` segments that are still empty and not active. Call only
    /// after a flush that followed their emptying.
    pub fn collect(&self, emptied: Vec<u64>) {
        let mut books = lock(&self.books);
        for id in emptied {
            let Some(seg) = books.segments.get(&id).copied() else {
                continue;
            };
            if seg.active || seg.live > 0 {
                continue;
            }
            match std::fs::remove_file(self.path(id)) {
                Ok(()) => {
                    books.segments.remove(&id);
                    books.readers.remove(&id);
                    self.charged.fetch_sub(seg.bytes, Ordering::Relaxed);
                }
                // Tried again after the next flush.
                Err(e) => {
                    tracing::warn!(segment = id, error = %e, "cannot delete an empty payload segment");
                    books.emptied.push(id);
                }
            }
        }
    }

    /// At start-up (or after reopening the database): counts the payloads that durable
    /// records point at, and deletes segments none point at (left over from removals
    /// made durable before a crash, or from appends whose records never were).
    pub fn rebuild(&self, refs: impl IntoIterator<Item = SegmentRef>) -> std::io::Result<()> {
        let mut actives = lock(&self.active);
        actives.clear();
        let mut books = lock(&self.books);
        *books = Books::default();
        for r in refs {
            let seg = books.segments.entry(r.segment).or_default();
            seg.live += 1;
            seg.live_bytes += u64::from(r.len);
        }
        for id in existing(&self.dir)? {
            match books.segments.get_mut(&id) {
                Some(seg) => seg.bytes = std::fs::metadata(self.path(id))?.len(),
                None => std::fs::remove_file(self.path(id))?,
            }
        }
        books.segments.retain(|_, s| s.bytes > 0 || s.live > 0);
        let charged = books.segments.values().map(Seg::charge).sum();
        self.charged.store(charged, Ordering::Relaxed);
        Ok(())
    }

    /// Bytes the segments count against the queue's cap (see [`Seg::charge`]).
    pub fn charged_bytes(&self) -> u64 {
        self.charged.load(Ordering::Relaxed)
    }

    /// Bytes of all segment files on disk.
    pub fn disk_bytes(&self) -> u64 {
        lock(&self.books).segments.values().map(|s| s.bytes).sum()
    }

    /// Number of segment files (for tests and health).
    pub fn files(&self) -> usize {
        lock(&self.books).segments.len()
    }
}

fn create(dir: &Path, id: u64) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
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
mod tests;
