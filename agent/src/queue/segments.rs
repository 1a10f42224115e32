//! The files beside the sled database: one *stream* of append-only files per sink —
//! its journal, of framed messages ([`super::journal`]) — and one for dead letters'
//! payloads (raw bytes, as were the sinks' payload files of earlier versions, which
//! are read and deleted as before).
//!
//! Why files: a group commit makes a group durable with one `fdatasync` per stream
//! written, and sled 0.34 keeps written values resident in memory whatever its
//! `cache_capacity` (a 1 GB backlog held ~700 MB of RSS): the index in sled holds
//! small records only, and a large payload is read from its file when its sink needs
//! it. One stream per sink: a sink's FIFO releases its messages in order, so its files
//! are deleted as it drains, and a slow sink never pins files full of other sinks'
//! delivered messages.
//!
//! A file is deleted once no index record points into it (its large payloads were all
//! delivered), it is no longer appended to, and — a journal file — a durable
//! checkpoint covers it (its frames will never be replayed): see
//! [`SegmentStore::collect`]. Disk use is therefore the live payloads plus about two
//! files per stream ([`SegmentStore::charged_bytes`]).
//!
//! A write that fails (a full disk) is cut off again and the stream moves to a new
//! file at its next append, so a frame is never written after a torn one.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::journal::Position;
use crate::sync::lock;

/// Where a payload is: segment file, offset, length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRef {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
}

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Framed messages of one sink (`<id>.jrn`, starting with [`JOURNAL_MAGIC`] and
    /// the stream's name).
    Journal,
    /// Payload bytes (`<id>.seg`): dead letters', and every payload of earlier
    /// versions.
    Raw,
}

impl Kind {
    fn extension(self) -> &'static str {
        match self {
            Kind::Journal => "jrn",
            Kind::Raw => "seg",
        }
    }
}

/// The first bytes of a journal file, followed by the stream's name (u16 LE length,
/// bytes).
const JOURNAL_MAGIC: &[u8; 4] = b"OPJ1";

/// The file a stream appends to.
struct Active {
    id: u64,
    kind: Kind,
    file: Arc<File>,
    len: u64,
    synced: u64,
    /// A write failed: the next append starts a new file.
    broken: bool,
}

/// What is known of one file.
#[derive(Debug, Clone)]
struct Seg {
    kind: Kind,
    /// The stream (sink) of a journal file.
    stream: Option<String>,
    /// Payloads still referenced by index records.
    live: u64,
    /// Their bytes.
    live_bytes: u64,
    /// The file's length.
    bytes: u64,
    /// Still appended to by a stream.
    active: bool,
}

impl Seg {
    fn new(kind: Kind, stream: Option<String>) -> Seg {
        Seg {
            kind,
            stream,
            live: 0,
            live_bytes: 0,
            bytes: 0,
            active: false,
        }
    }

    /// What the file counts against the queue's cap: a stream's active file its live
    /// payloads (its delivered prefix is bounded by the file size), any other file its
    /// whole length, until it is deleted.
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
    /// Files that may have become deletable since the last collection.
    emptied: Vec<u64>,
    /// Rotated files not yet fsynced.
    unsynced: Vec<Arc<File>>,
    /// Open files for reading.
    readers: HashMap<u64, Arc<File>>,
}

/// A journal file to replay: its id, its stream, where its frames to replay start,
/// and its bytes.
pub(super) struct JournalFile {
    pub id: u64,
    pub stream: String,
    pub frames_from: u64,
    pub bytes: Vec<u8>,
}

/// The files of one queue.
pub struct SegmentStore {
    dir: PathBuf,
    segment_bytes: u64,
    next_id: AtomicU64,
    active: Mutex<HashMap<String, Active>>,
    books: Mutex<Books>,
    charged: AtomicU64,
}

impl SegmentStore {
    /// Opens `dir`; files are rotated at `segment_bytes`. Existing files are only
    /// read, and deleted once nothing needs them ([`SegmentStore::rebuild`]).
    pub fn open(dir: &Path, segment_bytes: u64) -> std::io::Result<SegmentStore> {
        std::fs::create_dir_all(dir)?;
        let next = existing(dir)?
            .into_iter()
            .map(|(id, _)| id)
            .max()
            .map_or(0, |m| m + 1);
        Ok(SegmentStore {
            dir: dir.to_owned(),
            segment_bytes,
            next_id: AtomicU64::new(next),
            active: Mutex::new(HashMap::new()),
            books: Mutex::new(Books::default()),
            charged: AtomicU64::new(0),
        })
    }

    fn path(&self, id: u64, kind: Kind) -> PathBuf {
        self.dir.join(format!("{id:016x}.{}", kind.extension()))
    }

    /// Appends a payload to raw stream `stream` (not yet durable: see
    /// [`SegmentStore::sync`]); it counts as referenced.
    pub fn append(&self, stream: &str, data: &[u8]) -> std::io::Result<SegmentRef> {
        let at = self.append_to(stream, Kind::Raw, data)?;
        let r = SegmentRef {
            segment: at.segment,
            offset: at.offset,
            len: data.len() as u32,
        };
        self.retain(&r);
        Ok(r)
    }

    /// Appends a block of frames to journal stream `stream` (not yet durable: see
    /// [`SegmentStore::sync_streams`]); returns where the block starts. The frames'
    /// large payloads count as referenced once [`SegmentStore::retain`]ed.
    pub fn append_frames(&self, stream: &str, frames: &[u8]) -> std::io::Result<Position> {
        self.append_to(stream, Kind::Journal, frames)
    }

    fn append_to(&self, stream: &str, kind: Kind, data: &[u8]) -> std::io::Result<Position> {
        let mut actives = lock(&self.active);
        let rotate = actives.get(stream).is_none_or(|a| {
            a.broken
                || a.kind != kind
                || (a.len > 0 && a.len + data.len() as u64 > self.segment_bytes)
        });
        if rotate {
            self.start_segment(&mut actives, stream, kind)?;
        }
        let Some(active) = actives.get_mut(stream) else {
            return Err(std::io::Error::other("segment stream vanished"));
        };
        if let Err(e) = active.file.write_all_at(data, active.len) {
            // Cut a partial write off; the next append starts a new file anyway.
            let _ = active.file.set_len(active.len);
            active.broken = true;
            return Err(e);
        }
        let at = Position {
            segment: active.id,
            offset: active.len,
        };
        active.len += data.len() as u64;
        let len = active.len;
        if let Some(seg) = lock(&self.books).segments.get_mut(&at.segment) {
            seg.bytes = len;
        }
        Ok(at)
    }

    /// A payload in a file is referenced by an index record.
    pub fn retain(&self, r: &SegmentRef) {
        let mut books = lock(&self.books);
        let seg = books
            .segments
            .entry(r.segment)
            .or_insert_with(|| Seg::new(Kind::Raw, None));
        seg.live += 1;
        seg.live_bytes += u64::from(r.len);
        if seg.active {
            self.charged.fetch_add(u64::from(r.len), Ordering::Relaxed);
        }
    }

    /// Starts a new file for `stream`; the previous one (if any) is rotated out.
    fn start_segment(
        &self,
        actives: &mut HashMap<String, Active>,
        stream: &str,
        kind: Kind,
    ) -> std::io::Result<()> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let file = Arc::new(create(&self.dir, id, kind)?);
        let mut len = 0;
        if kind == Kind::Journal {
            let mut header = JOURNAL_MAGIC.to_vec();
            header.extend_from_slice(&(stream.len() as u16).to_le_bytes());
            header.extend_from_slice(stream.as_bytes());
            file.write_all_at(&header, 0)?;
            len = header.len() as u64;
        }
        let new = Active {
            id,
            kind,
            file,
            len,
            synced: 0,
            broken: false,
        };
        let old = actives.insert(stream.to_owned(), new);
        let mut books = lock(&self.books);
        let stream_name = (kind == Kind::Journal).then(|| stream.to_owned());
        books.segments.insert(
            id,
            Seg {
                active: true,
                bytes: len,
                ..Seg::new(kind, stream_name)
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
        let streams: Vec<String> = lock(&self.active).keys().cloned().collect();
        self.sync_streams(streams.iter().map(String::as_str))
    }

    /// Makes the appends to `streams` durable, and those to files rotated out since
    /// the last sync. A stream whose sync failed moves to a new file (after a failed
    /// `fdatasync` the kernel may have dropped the dirty pages).
    pub fn sync_streams<'a>(
        &self,
        streams: impl IntoIterator<Item = &'a str>,
    ) -> std::io::Result<()> {
        let rotated = std::mem::take(&mut lock(&self.books).unsynced);
        for f in rotated {
            f.sync_data()?;
        }
        let dirty: Vec<(String, Arc<File>, u64)> = {
            let actives = lock(&self.active);
            streams
                .into_iter()
                .filter_map(|s| actives.get_key_value(s))
                .filter(|(_, a)| a.len > a.synced)
                .map(|(s, a)| (s.clone(), Arc::clone(&a.file), a.len))
                .collect()
        };
        for (stream, file, len) in dirty {
            let synced = file.sync_data();
            if let Some(a) = lock(&self.active).get_mut(&stream) {
                match &synced {
                    Ok(()) => a.synced = a.synced.max(len).min(a.len),
                    Err(_) => a.broken = true,
                }
            }
            synced?;
        }
        Ok(())
    }

    /// Cuts the file at `at` off again (a block whose sync failed: it must not come
    /// back after a restart), if it is still its stream's file. Best effort.
    pub fn cut(&self, at: Position) {
        let actives = lock(&self.active);
        if let Some(active) = actives.values().find(|a| a.id == at.segment) {
            let _ = active.file.set_len(at.offset);
        }
    }

    /// Reads a payload.
    pub fn read(&self, r: &SegmentRef) -> std::io::Result<Vec<u8>> {
        let file = self.reader(r.segment)?;
        let mut data = vec![0; r.len as usize];
        file.read_exact_at(&mut data, r.offset)?;
        Ok(data)
    }

    fn reader(&self, id: u64) -> std::io::Result<Arc<File>> {
        let mut books = lock(&self.books);
        if let Some(f) = books.readers.get(&id) {
            return Ok(Arc::clone(f));
        }
        let kind = books.segments.get(&id).map_or(Kind::Raw, |s| s.kind);
        let f = Arc::new(File::open(self.path(id, kind))?);
        books.readers.insert(id, Arc::clone(&f));
        Ok(f)
    }

    /// The record pointing at `r` was removed (not yet durably). Returns the bytes that
    /// still count against the cap until the file is deleted (those of a rotated file).
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

    /// Files that may have become deletable; pass them to [`SegmentStore::collect`]
    /// after the next flush.
    pub fn emptied(&self) -> Vec<u64> {
        std::mem::take(&mut lock(&self.books).emptied)
    }

    /// Puts `emptied` back for the next [`SegmentStore::emptied`] (the flush failed).
    pub fn collect_later(&self, emptied: Vec<u64>) {
        lock(&self.books).emptied.extend(emptied);
    }

    /// Deletes the `emptied` files that nothing needs any more: no live payload, not
    /// appended to, and — a journal file — covered by its stream's durable checkpoint
    /// (`covered(stream)`: where its replay would start). Call only after a flush
    /// that followed their emptying. Those not covered yet are kept for later.
    pub fn collect(&self, emptied: Vec<u64>, covered: impl Fn(&str) -> Option<Position>) {
        let mut books = lock(&self.books);
        for id in emptied {
            let Some(seg) = books.segments.get(&id).cloned() else {
                continue;
            };
            if seg.active || seg.live > 0 {
                continue;
            }
            if let Some(stream) = &seg.stream {
                let end = Position {
                    segment: id,
                    offset: seg.bytes,
                };
                if covered(stream).is_none_or(|checkpoint| checkpoint < end) {
                    books.emptied.push(id);
                    continue;
                }
            }
            match std::fs::remove_file(self.path(id, seg.kind)) {
                Ok(()) => {
                    books.segments.remove(&id);
                    books.readers.remove(&id);
                    self.charged.fetch_sub(seg.bytes, Ordering::Relaxed);
                }
                // Tried again after the next flush.
                Err(e) => {
                    tracing::warn!(segment = id, error = %e, "cannot delete a payload file");
                    books.emptied.push(id);
                }
            }
        }
    }

    /// At start-up (or after reopening the database): hands `replay` each journal file
    /// to replay from `checkpoints`, oldest first, one at a time (a stream's replay
    /// starts at its checkpoint; a stream without one, at its first file).
    pub(super) fn replay_journals(
        &self,
        checkpoints: &HashMap<String, Position>,
        mut replay: impl FnMut(JournalFile),
    ) -> std::io::Result<()> {
        let mut files = existing(&self.dir)?;
        files.sort_unstable_by_key(|(id, _)| *id);
        for (id, kind) in files {
            if kind != Kind::Journal {
                continue;
            }
            let path = self.path(id, kind);
            let Some((stream, header)) = read_journal_header(&path) else {
                continue; // a file cut short before its header: nothing in it
            };
            let from = match checkpoints.get(&stream) {
                Some(c) if c.segment > id => continue,
                Some(c) if c.segment == id => c.offset.max(header),
                _ => header,
            };
            replay(JournalFile {
                id,
                stream,
                frames_from: from,
                bytes: std::fs::read(&path)?,
            });
        }
        Ok(())
    }

    /// At start-up (or after reopening the database): counts the payloads that index
    /// records point at, and deletes the files nothing needs (raw files none points at,
    /// journal files covered by their stream's checkpoint); the others wait for
    /// [`SegmentStore::collect`]. No file is appended to any more: streams start new
    /// ones.
    pub fn rebuild(
        &self,
        refs: impl IntoIterator<Item = SegmentRef>,
        checkpoints: &HashMap<String, Position>,
    ) -> std::io::Result<()> {
        let mut actives = lock(&self.active);
        actives.clear();
        let mut books = lock(&self.books);
        *books = Books::default();
        let mut counted: HashMap<u64, (u64, u64)> = HashMap::new();
        for r in refs {
            let c = counted.entry(r.segment).or_default();
            c.0 += 1;
            c.1 += u64::from(r.len);
        }
        for (id, kind) in existing(&self.dir)? {
            let path = self.path(id, kind);
            let bytes = std::fs::metadata(&path)?.len();
            let stream = match kind {
                Kind::Journal => read_journal_header(&path).map(|(s, _)| s),
                Kind::Raw => None,
            };
            let (live, live_bytes) = counted.get(&id).copied().unwrap_or_default();
            let covered = match &stream {
                None => true,
                Some(s) => checkpoints.get(s).is_some_and(|c| {
                    *c >= Position {
                        segment: id,
                        offset: bytes,
                    }
                }),
            };
            if live == 0 && covered {
                std::fs::remove_file(&path)?;
                continue;
            }
            if live == 0 {
                books.emptied.push(id);
            }
            books.segments.insert(
                id,
                Seg {
                    live,
                    live_bytes,
                    bytes,
                    ..Seg::new(kind, stream)
                },
            );
        }
        let charged = books.segments.values().map(Seg::charge).sum();
        self.charged.store(charged, Ordering::Relaxed);
        Ok(())
    }

    /// Bytes the files count against the queue's cap (see [`Seg::charge`]).
    pub fn charged_bytes(&self) -> u64 {
        self.charged.load(Ordering::Relaxed)
    }

    /// Bytes of all files on disk.
    pub fn disk_bytes(&self) -> u64 {
        lock(&self.books).segments.values().map(|s| s.bytes).sum()
    }

    /// Number of files (for tests and health).
    pub fn files(&self) -> usize {
        lock(&self.books).segments.len()
    }
}

/// The stream and the length of a journal file's header, from its first bytes.
fn journal_header(bytes: &[u8]) -> Option<(String, u64)> {
    let rest = bytes.strip_prefix(JOURNAL_MAGIC)?;
    let len = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?) as usize;
    let name = std::str::from_utf8(rest.get(2..2 + len)?).ok()?;
    Some((name.to_owned(), (JOURNAL_MAGIC.len() + 2 + len) as u64))
}

fn read_journal_header(path: &Path) -> Option<(String, u64)> {
    let file = File::open(path).ok()?;
    let mut head = vec![0u8; JOURNAL_MAGIC.len() + 2 + 256];
    let n = file.read_at(&mut head, 0).ok()?;
    journal_header(&head[..n])
}

fn create(dir: &Path, id: u64, kind: Kind) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(dir.join(format!("{id:016x}.{}", kind.extension())))?;
    // Make the new file's directory entry durable too.
    File::open(dir)?.sync_all()?;
    Ok(file)
}

fn existing(dir: &Path) -> std::io::Result<Vec<(u64, Kind)>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let (hex, kind) = if let Some(hex) = name.strip_suffix(".seg") {
            (hex, Kind::Raw)
        } else if let Some(hex) = name.strip_suffix(".jrn") {
            (hex, Kind::Journal)
        } else {
            continue;
        };
        if let Ok(id) = u64::from_str_radix(hex, 16) {
            ids.push((id, kind));
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests;
