//! Group commit: the requests admitted while a commit is under way share the next one.
//!
//! A producer's thread admits its request ([`Queue::enqueue`]) and queues it here. If
//! no commit is under way, that thread *leads*: it takes every group waiting, writes
//! their frames (one write per sink's journal), makes them durable with one
//! `fdatasync` per journal written (`queue.sync = "always"`; `"interval"` leaves that
//! to the queue's background thread), puts them into their sinks' FIFOs (the sled
//! index), answers every group, and goes on while groups keep arriving. The others
//! just queue theirs and return: a request crosses to one other thread at most (its
//! answer), and under load a sync covers every request that arrived during the last
//! one — no timer, no wait to gather.
//!
//! A leader answers its own producer through the commit like any other ([`Reply`]),
//! so a busy leader never delays its own answer.
//!
//! [`Queue::enqueue`]: super::Queue::enqueue

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::journal::{self, Position};
use super::recover::checkpoint_entry;
use super::segments::SegmentRef;
use super::write::Size;
use super::{Core, QueueError, SinkQueue};
use crate::config::SyncMode;
use crate::sync::lock;

/// One message of a group, encoded.
pub(super) struct Prepared {
    pub sink: Arc<SinkQueue>,
    pub seq: u64,
    pub key: Vec<u8>,
    /// The record with the payload inline: the frame's content.
    pub record: Vec<u8>,
    pub payload_len: usize,
    /// Whether the index keeps the payload inline (else it points into the journal).
    pub inline: bool,
    /// Its size as admitted (estimated).
    pub size: Size,
}

/// One request's messages, admitted: committed whole, or not at all.
pub(super) struct Group {
    pub messages: Vec<Prepared>,
    /// The group's id in its frames: its first sequence number.
    pub first_seq: u64,
    /// Bytes reserved against `max_bytes` at admission.
    pub reserved: u64,
}

/// Told once a group is durable and in its sinks' FIFOs, or why it is not: a
/// callback, so that a producer waiting on its own channel is woken once, by the
/// commit, not first by the admission and then by the commit.
pub(super) type Reply = Box<dyn FnOnce(Result<(), QueueError>) + Send>;

/// Resolves once a group is durable and in its sinks' FIFOs.
#[must_use = "messages are durable only once the ticket resolves"]
pub struct Ticket(Option<oneshot::Receiver<Result<(), QueueError>>>);

impl Ticket {
    /// For nothing to commit.
    pub(super) fn done() -> Ticket {
        Ticket(None)
    }

    /// Waits for the group commit.
    pub async fn durable(self) -> Result<(), QueueError> {
        let Some(rx) = self.0 else {
            return Ok(());
        };
        match rx.await {
            Ok(result) => result,
            Err(_) => Err(QueueError::Io(std::io::Error::other(
                "the group commit stopped",
            ))),
        }
    }

    /// A ticket, and the reply that resolves it.
    pub(super) fn new() -> (Ticket, Reply) {
        let (tx, rx) = oneshot::channel();
        let reply: Reply = Box::new(move |result| {
            let _ = tx.send(result);
        });
        (Ticket(Some(rx)), reply)
    }
}

/// The duty to commit what is waiting, for the thread that got it.
#[must_use = "the groups waiting are committed only when the lead is run"]
pub struct Lead(Arc<Core>);

impl Lead {
    /// Commits every group waiting, until none is. Blocking.
    pub fn run(self) {
        self.0.lead();
    }
}

/// Groups waiting, and whether a thread is committing.
#[derive(Default)]
struct Waiting {
    groups: Vec<(Group, Reply)>,
    leading: bool,
}

/// The group commit of one queue.
pub(super) struct Committer {
    waiting: Mutex<Waiting>,
    mode: SyncMode,
    /// Where each sink's journal is indexed up to (everything before it is in sled).
    indexed: Mutex<HashMap<String, Position>>,
    /// Group commits, and journal syncs, so far.
    commits: AtomicU64,
    syncs: AtomicU64,
}

impl Committer {
    pub fn new(mode: SyncMode, indexed: HashMap<String, Position>) -> Committer {
        Committer {
            waiting: Mutex::default(),
            mode,
            indexed: Mutex::new(indexed),
            commits: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
        }
    }

    /// Queues `group`, to be answered through `reply`; the lead if no thread is
    /// committing.
    pub fn enqueue(&self, core: &Arc<Core>, group: Group, reply: Reply) -> Option<Lead> {
        let mut waiting = lock(&self.waiting);
        waiting.groups.push((group, reply));
        let lead = !std::mem::replace(&mut waiting.leading, true);
        lead.then(|| Lead(Arc::clone(core)))
    }

    /// Where each journal is indexed up to, now (for a checkpoint).
    pub fn indexed(&self) -> HashMap<String, Position> {
        lock(&self.indexed).clone()
    }

    /// After a replay: where each journal is indexed up to.
    pub fn set_indexed(&self, indexed: HashMap<String, Position>) {
        *lock(&self.indexed) = indexed;
    }

    pub fn mode(&self) -> SyncMode {
        self.mode
    }

    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Counts a sync of the journals (the background thread's, in interval mode).
    pub fn synced(&self) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
    }
}

/// The frames of one round for one journal, and what they are.
#[derive(Default)]
struct Block {
    bytes: Vec<u8>,
    /// (group, message, offset in `bytes`, frame length), in order.
    frames: Vec<(usize, usize, usize, usize)>,
    /// Where the block was written.
    at: Option<Position>,
}

impl Core {
    /// Commits rounds of waiting groups until none is left.
    fn lead(&self) {
        loop {
            let round = {
                let mut waiting = lock(&self.commit.waiting);
                if waiting.groups.is_empty() {
                    waiting.leading = false;
                    return;
                }
                std::mem::take(&mut waiting.groups)
            };
            self.commit_round(round);
        }
    }

    /// One group commit: write, sync, index, answer.
    fn commit_round(&self, round: Vec<(Group, Reply)>) {
        let (groups, replies): (Vec<Group>, Vec<Reply>) = round.into_iter().unzip();
        let mut failed: Vec<Option<Arc<QueueError>>> = vec![None; groups.len()];
        let mut blocks = frame(&groups);
        self.write(&mut blocks, &mut failed);
        if self.commit.mode == SyncMode::Always {
            self.sync(&mut blocks, &mut failed);
        }
        self.index(&groups, &blocks, &failed);
        self.commit.commits.fetch_add(1, Ordering::Relaxed);
        for ((group, reply), failure) in groups.iter().zip(replies).zip(failed) {
            self.reserved.fetch_sub(group.reserved, Ordering::Relaxed);
            reply(failure.map_or(Ok(()), |e| Err(QueueError::Commit(e))));
        }
        let mut touched: Vec<&Arc<SinkQueue>> = Vec::new();
        for m in groups.iter().flat_map(|g| &g.messages) {
            if !touched.iter().any(|s| Arc::ptr_eq(s, &m.sink)) {
                touched.push(&m.sink);
            }
        }
        touched.into_iter().for_each(|s| s.notify());
    }

    /// Appends each journal's block; a failed write fails the groups in it.
    fn write(&self, blocks: &mut BTreeMap<&str, Block>, failed: &mut [Option<Arc<QueueError>>]) {
        for (stream, block) in blocks.iter_mut() {
            match self.segments.append_frames(stream, &block.bytes) {
                Ok(at) => block.at = Some(at),
                Err(e) => fail(block, failed, QueueError::Segment(e)),
            }
        }
    }

    /// Makes the blocks written durable; a failed sync fails the groups in them (and
    /// cuts the block off, so that a restart does not bring them back).
    fn sync(&self, blocks: &mut BTreeMap<&str, Block>, failed: &mut [Option<Arc<QueueError>>]) {
        let written = blocks.iter().filter(|(_, b)| b.at.is_some());
        let synced = self.segments.sync_streams(written.map(|(s, _)| *s));
        self.commit.syncs.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = synced {
            let e = Arc::new(QueueError::Segment(e));
            for block in blocks.values_mut().filter(|b| b.at.is_some()) {
                self.segments.cut(block.at.take().expect("written"));
                for &(g, ..) in &block.frames {
                    failed[g].get_or_insert_with(|| Arc::clone(&e));
                }
            }
        }
    }

    /// Puts the groups that were written (and synced) into their sinks' FIFOs: the
    /// records, then each journal's checkpoint after them. Single inserts, not one
    /// `apply_batch`: sled seals and writes its current log buffer on every batch (a
    /// write and a `sync_file_range` on its I/O threads, per group commit: a fifth of
    /// the agent's CPU with small requests), and the order is all recovery needs —
    /// sled recovers a prefix of its writes, so a checkpoint it recovers comes with
    /// every record before it, and records recovered without their checkpoint are the
    /// journal's frames past it, which the replay indexes again under the same keys.
    /// If sled fails, they are durable all the same: the reopen that follows indexes
    /// them again from the journal (see `recover.rs`).
    fn index(
        &self,
        groups: &[Group],
        blocks: &BTreeMap<&str, Block>,
        failed: &[Option<Arc<QueueError>>],
    ) {
        let frames: usize = blocks.values().map(|b| b.frames.len()).sum();
        let mut records: Vec<(&[u8], Vec<u8>)> = Vec::with_capacity(frames);
        let mut checkpoints: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(blocks.len());
        let mut added: Vec<(&Prepared, Size, Option<SegmentRef>)> = Vec::with_capacity(frames);
        let mut positions: Vec<(&str, Position)> = Vec::with_capacity(blocks.len());
        for (&stream, block) in blocks {
            let Some(at) = block.at else { continue };
            for &(g, m, offset, len) in &block.frames {
                if failed[g].is_some() {
                    continue;
                }
                let message = &groups[g].messages[m];
                let start = Position {
                    segment: at.segment,
                    offset: at.offset + offset as u64,
                };
                let value = journal::index_value(
                    &message.record,
                    message.payload_len,
                    message.inline,
                    start,
                    len,
                );
                let external = (!message.inline).then(|| SegmentRef {
                    segment: at.segment,
                    offset: start.offset + (len - message.payload_len) as u64,
                    len: message.payload_len as u32,
                });
                let size = Size::of(
                    message.key.len(),
                    value.len(),
                    external.map_or(0, |r| u64::from(r.len)),
                );
                records.push((message.key.as_slice(), value));
                added.push((message, size, external));
            }
            let end = Position {
                segment: at.segment,
                offset: at.offset + block.bytes.len() as u64,
            };
            checkpoints.push(checkpoint_entry(stream, end));
            positions.push((stream, end));
        }
        if positions.is_empty() {
            return;
        }
        let applied = self.store.trees().and_then(|trees| {
            let checkpoints = checkpoints.into_iter().map(|(k, v)| (k.into(), v));
            for (key, value) in records
                .into_iter()
                .map(|(k, v)| (k.into(), v))
                .chain(checkpoints)
            {
                self.store
                    .check(trees.pending.insert::<sled::IVec, Vec<u8>>(key, value))?;
            }
            Ok(())
        });
        if let Err(e) = applied {
            tracing::error!(error = %e, "the queue index failed: the messages are durable in \
                the journal and are indexed again once the database is reopened");
            return;
        }
        for (message, size, external) in added {
            if let Some(r) = external {
                self.segments.retain(&r);
            }
            self.account(&message.sink, size, true);
        }
        self.dirty.store(true, Ordering::Relaxed);
        let mut indexed = lock(&self.commit.indexed);
        for (stream, end) in positions {
            indexed.insert(stream.to_owned(), end);
        }
    }
}

/// The frames of a round, by journal; each block's buffer sized for its frames up
/// front (grown from empty, it copied the round's payloads again at each doubling).
fn frame(groups: &[Group]) -> BTreeMap<&str, Block> {
    let mut blocks: BTreeMap<&str, Block> = BTreeMap::new();
    let mut sizes: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for message in groups.iter().flat_map(|g| &g.messages) {
        let size = sizes.entry(message.sink.name.as_str()).or_default();
        size.0 += journal::frame_len(&message.key, &message.record);
        size.1 += 1;
    }
    for (stream, (bytes, frames)) in sizes {
        let block = Block {
            bytes: Vec::with_capacity(bytes),
            frames: Vec::with_capacity(frames),
            at: None,
        };
        blocks.insert(stream, block);
    }
    for (g, group) in groups.iter().enumerate() {
        let parts = group.messages.len() as u32;
        for (m, message) in group.messages.iter().enumerate() {
            let block = blocks.entry(message.sink.name.as_str()).or_default();
            let offset = block.bytes.len();
            let len = journal::encode(
                &mut block.bytes,
                group.first_seq,
                parts,
                &message.key,
                &message.record,
            );
            block.frames.push((g, m, offset, len));
        }
    }
    blocks
}

/// Fails every group with a frame in `block`.
fn fail(block: &Block, failed: &mut [Option<Arc<QueueError>>], e: QueueError) {
    let e = Arc::new(e);
    for &(g, ..) in &block.frames {
        failed[g].get_or_insert_with(|| Arc::clone(&e));
    }
}
