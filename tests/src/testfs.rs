//! A small in-memory filesystem (FUSE), mounted by a test for the agent's data dir, to
//! provoke what real disks do and test machines rarely show:
//!
//! * **power cuts** ([`TestFs::power_cut`]): every write not yet made durable is lost.
//!   A file's data is durable once it was `fsync`ed or `fdatasync`ed; a name (a file
//!   created, renamed or removed in a directory) once that directory was `fsync`ed —
//!   POSIX's promise, stricter than ext4's habits. After the cut the filesystem holds
//!   exactly what was durable, as a disk would after the power came back.
//! * **a size**: writes past `capacity` bytes fail with `ENOSPC`, as a full disk;
//! * **no size** ([`Capacity::Unknown`]): `statvfs` answers all zeros, as FUSE,
//!   network and overlay filesystems may.
//!
//! Needs `/dev/fuse` and the right to mount (root here; `fusermount3` elsewhere).
//! Every open is direct I/O, so the kernel's page cache never answers for the
//! filesystem; [`TestFs::remount`] also starts the kernel's view afresh.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

/// What the filesystem says of its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    /// This many bytes of file data; writes past it fail with `ENOSPC`.
    Bytes(u64),
    /// `statvfs` reports zeros everywhere; writes never run out of room.
    Unknown,
}

/// One node: a file's data now and as last made durable, or a directory's names now
/// and as last made durable.
#[derive(Debug, Clone)]
enum Node {
    File {
        data: Vec<u8>,
        durable: Vec<u8>,
    },
    Dir {
        names: BTreeMap<String, u64>,
        durable: BTreeMap<String, u64>,
    },
}

#[derive(Debug)]
struct State {
    nodes: HashMap<u64, Node>,
    /// Open handles per node: an unlinked file lives on while open, as on a disk.
    open: HashMap<u64, usize>,
    next_ino: u64,
    capacity: Capacity,
    /// File data written since the last cut, and made durable, in bytes (for tests
    /// that check the model was exercised).
    synced_bytes: u64,
    /// When each file was synced, with its name: what was written to it before then
    /// is durable (for tests that check a sync policy, not just its effect).
    file_syncs: Vec<(Instant, String)>,
}

const ROOT: u64 = 1;
const BLOCK: u64 = 4096;

impl State {
    fn new(capacity: Capacity) -> State {
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT,
            Node::Dir {
                names: BTreeMap::new(),
                durable: BTreeMap::new(),
            },
        );
        State {
            nodes,
            open: HashMap::new(),
            next_ino: ROOT + 1,
            capacity,
            synced_bytes: 0,
            file_syncs: Vec::new(),
        }
    }

    /// The nodes names reach: by the names now (`durable` false), or also by the
    /// durable ones (what a power cut could bring back).
    fn reachable(&self, durable: bool) -> HashSet<u64> {
        let mut seen = HashSet::new();
        let mut pending = vec![ROOT];
        while let Some(ino) = pending.pop() {
            if !seen.insert(ino) {
                continue;
            }
            if let Some(Node::Dir { names, durable: d }) = self.nodes.get(&ino) {
                pending.extend(names.values().copied());
                if durable {
                    pending.extend(d.values().copied());
                }
            }
        }
        seen
    }

    /// File data the disk holds now: files that have a name, or are open.
    fn used(&self) -> u64 {
        let live = self.reachable(false);
        self.nodes
            .iter()
            .filter(|(ino, _)| live.contains(ino) || self.open.contains_key(ino))
            .map(|(_, n)| match n {
                Node::File { data, .. } => data.len() as u64,
                Node::Dir { .. } => 0,
            })
            .sum()
    }

    /// Forgets nodes nothing can reach any more: no name, durable or not, and not open.
    fn collect(&mut self) {
        let keep = self.reachable(true);
        let open = &self.open;
        self.nodes
            .retain(|ino, _| keep.contains(ino) || open.contains_key(ino));
    }

    fn opened(&mut self, ino: u64) {
        *self.open.entry(ino).or_default() += 1;
    }

    fn released(&mut self, ino: u64) {
        if let Some(n) = self.open.get_mut(&ino) {
            *n -= 1;
            if *n == 0 {
                self.open.remove(&ino);
                self.collect();
            }
        }
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let (kind, size, perm) = match self.nodes.get(&ino)? {
            Node::File { data, .. } => (FileType::RegularFile, data.len() as u64, 0o644),
            Node::Dir { names, .. } => (FileType::Directory, names.len() as u64, 0o755),
        };
        let now = SystemTime::now();
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            kind,
            perm,
            nlink: 1,
            // SAFETY: getuid/getgid cannot fail and touch no memory.
            uid: unsafe { libc::getuid() },
            gid: unsafe { libc::getgid() },
            rdev: 0,
            flags: 0,
            blksize: BLOCK as u32,
        })
    }

    fn names(&mut self, dir: u64) -> Result<&mut BTreeMap<String, u64>, Errno> {
        match self.nodes.get_mut(&dir) {
            Some(Node::Dir { names, .. }) => Ok(names),
            Some(Node::File { .. }) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn lookup(&mut self, dir: u64, name: &str) -> Result<u64, Errno> {
        self.names(dir)?.get(name).copied().ok_or(Errno::ENOENT)
    }

    /// Adds node `node` as `name` in `dir` (not durable until `dir` is synced).
    fn add(&mut self, dir: u64, name: &str, node: Node) -> Result<u64, Errno> {
        if self.names(dir)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        self.names(dir)?.insert(name.to_owned(), ino);
        Ok(ino)
    }

    fn write(&mut self, ino: u64, offset: u64, bytes: &[u8]) -> Result<(), Errno> {
        let end = offset as usize + bytes.len();
        let grows = match self.nodes.get(&ino) {
            Some(Node::File { data, .. }) => end.saturating_sub(data.len()) as u64,
            _ => return Err(Errno::EBADF),
        };
        if let Capacity::Bytes(max) = self.capacity {
            if self.used() + grows > max {
                return Err(Errno::ENOSPC);
            }
        }
        let Some(Node::File { data, .. }) = self.nodes.get_mut(&ino) else {
            return Err(Errno::EBADF);
        };
        if data.len() < end {
            data.resize(end, 0);
        }
        data[offset as usize..end].copy_from_slice(bytes);
        Ok(())
    }

    /// `fsync` of a file (its data) or a directory (its names).
    fn sync(&mut self, ino: u64) {
        match self.nodes.get_mut(&ino) {
            Some(Node::File { data, durable }) => {
                self.synced_bytes += data.len() as u64;
                *durable = data.clone();
                let name = self.nodes.values().find_map(|n| match n {
                    Node::Dir { names, .. } => names
                        .iter()
                        .find(|(_, i)| **i == ino)
                        .map(|(name, _)| name.clone()),
                    Node::File { .. } => None,
                });
                self.file_syncs
                    .push((Instant::now(), name.unwrap_or_default()));
            }
            Some(Node::Dir { names, durable }) => *durable = names.clone(),
            None => {}
        }
        self.collect();
    }

    /// The power comes back: only what was durable is there, and only what durable
    /// names reach.
    fn power_cut(&mut self) {
        let mut kept = HashMap::new();
        let mut pending = vec![ROOT];
        while let Some(ino) = pending.pop() {
            let Some(node) = self.nodes.get(&ino) else {
                continue;
            };
            let restored = match node {
                Node::File { durable, .. } => Node::File {
                    data: durable.clone(),
                    durable: durable.clone(),
                },
                Node::Dir { durable, .. } => {
                    pending.extend(durable.values().copied());
                    Node::Dir {
                        names: durable.clone(),
                        durable: durable.clone(),
                    }
                }
            };
            kept.insert(ino, restored);
        }
        self.nodes = kept;
        self.open.clear();
    }
}

/// The filesystem as FUSE sees it.
struct Fs(Arc<Mutex<State>>);

/// Attributes and names are never cached by the kernel: the test changes them behind
/// its back (a power cut).
const TTL: Duration = Duration::ZERO;

impl Fs {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn entry(&self, reply: ReplyEntry, found: Result<u64, Errno>) {
        let s = self.state();
        match found.and_then(|ino| s.attr(ino).ok_or(Errno::ENOENT)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }
}

fn name(n: &OsStr) -> Result<&str, Errno> {
    n.to_str().ok_or(Errno::EINVAL)
}

fn done(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for Fs {
    fn lookup(&self, _: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEntry) {
        let found = name(n).and_then(|n| self.state().lookup(parent.0, n));
        self.entry(reply, found);
    }

    fn getattr(&self, _: &Request, ino: INodeNo, _: Option<FileHandle>, reply: ReplyAttr) {
        match self.state().attr(ino.0) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut s = self.state();
        if let Some(size) = size {
            match s.nodes.get_mut(&ino.0) {
                Some(Node::File { data, .. }) => data.resize(size as usize, 0),
                Some(Node::Dir { .. }) => return reply.error(Errno::EISDIR),
                None => return reply.error(Errno::ENOENT),
            }
        }
        match s.attr(ino.0) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn mkdir(&self, _: &Request, parent: INodeNo, n: &OsStr, _: u32, _: u32, reply: ReplyEntry) {
        let dir = Node::Dir {
            names: BTreeMap::new(),
            durable: BTreeMap::new(),
        };
        let made = name(n).and_then(|n| self.state().add(parent.0, n, dir));
        self.entry(reply, made);
    }

    fn create(
        &self,
        _: &Request,
        parent: INodeNo,
        n: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let file = Node::File {
            data: Vec::new(),
            durable: Vec::new(),
        };
        let mut s = self.state();
        match name(n).and_then(|n| s.add(parent.0, n, file)) {
            Ok(ino) => {
                s.opened(ino);
                let attr = s.attr(ino).expect("just made");
                reply.created(
                    &TTL,
                    &attr,
                    Generation(0),
                    FileHandle(ino),
                    FopenFlags::FOPEN_DIRECT_IO,
                );
            }
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut s = self.state();
        match s.nodes.get_mut(&ino.0) {
            Some(Node::File { data, .. }) => {
                if flags.0 & libc::O_TRUNC != 0 {
                    data.clear();
                }
                s.opened(ino.0);
                reply.opened(FileHandle(ino.0), FopenFlags::FOPEN_DIRECT_IO);
            }
            Some(Node::Dir { .. }) => reply.opened(FileHandle(ino.0), FopenFlags::empty()),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn release(
        &self,
        _: &Request,
        ino: INodeNo,
        _: FileHandle,
        _: OpenFlags,
        _: Option<LockOwner>,
        _: bool,
        reply: ReplyEmpty,
    ) {
        self.state().released(ino.0);
        reply.ok();
    }

    fn read(
        &self,
        _: &Request,
        ino: INodeNo,
        _: FileHandle,
        offset: u64,
        size: u32,
        _: OpenFlags,
        _: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.state().nodes.get(&ino.0) {
            Some(Node::File { data, .. }) => {
                let start = (offset as usize).min(data.len());
                let end = (start + size as usize).min(data.len());
                reply.data(&data[start..end]);
            }
            _ => reply.error(Errno::EBADF),
        }
    }

    fn write(
        &self,
        _: &Request,
        ino: INodeNo,
        _: FileHandle,
        offset: u64,
        data: &[u8],
        _: WriteFlags,
        _: OpenFlags,
        _: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.state().write(ino.0, offset, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&self, _: &Request, _: INodeNo, _: FileHandle, _: LockOwner, reply: ReplyEmpty) {
        reply.ok(); // close(2) makes nothing durable
    }

    fn fsync(&self, _: &Request, ino: INodeNo, _: FileHandle, _: bool, reply: ReplyEmpty) {
        self.state().sync(ino.0);
        reply.ok();
    }

    fn fsyncdir(&self, _: &Request, ino: INodeNo, _: FileHandle, _: bool, reply: ReplyEmpty) {
        self.state().sync(ino.0);
        reply.ok();
    }

    fn unlink(&self, _: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let removed = name(n).and_then(|n| {
            let mut s = self.state();
            s.names(parent.0)?.remove(n).map(drop).ok_or(Errno::ENOENT)
        });
        done(reply, removed);
    }

    fn rmdir(&self, _: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let removed = name(n).and_then(|n| {
            let mut s = self.state();
            let ino = s.lookup(parent.0, n)?;
            if !s.names(ino)?.is_empty() {
                return Err(Errno::ENOTEMPTY);
            }
            s.names(parent.0)?.remove(n);
            Ok(())
        });
        done(reply, removed);
    }

    fn rename(
        &self,
        _: &Request,
        parent: INodeNo,
        n: &OsStr,
        new_parent: INodeNo,
        new_name: &OsStr,
        _: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let moved = name(n).and_then(|n| {
            let new_name = name(new_name)?;
            let mut s = self.state();
            let ino = s.lookup(parent.0, n)?;
            s.names(parent.0)?.remove(n);
            s.names(new_parent.0)?.insert(new_name.to_owned(), ino);
            Ok(())
        });
        done(reply, moved);
    }

    fn readdir(
        &self,
        _: &Request,
        ino: INodeNo,
        _: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut s = self.state();
        let names = match s.names(ino.0) {
            Ok(names) => names.clone(),
            Err(e) => return reply.error(e),
        };
        let mut entries = vec![
            (ino.0, FileType::Directory, ".".to_owned()),
            (ino.0, FileType::Directory, "..".to_owned()),
        ];
        for (n, child) in names {
            let kind = match s.nodes.get(&child) {
                Some(Node::Dir { .. }) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            entries.push((child, kind, n));
        }
        for (i, (child, kind, n)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), (i + 1) as u64, kind, n) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _: &Request, _: INodeNo, reply: ReplyStatfs) {
        let s = self.state();
        match s.capacity {
            Capacity::Unknown => reply.statfs(0, 0, 0, 0, 0, 0, 255, 0),
            Capacity::Bytes(max) => {
                let blocks = max / BLOCK;
                let free = max.saturating_sub(s.used()) / BLOCK;
                reply.statfs(
                    blocks,
                    free,
                    free,
                    1 << 20,
                    1 << 20,
                    BLOCK as u32,
                    255,
                    BLOCK as u32,
                );
            }
        }
    }
}

/// A mounted test filesystem. Unmounted when dropped.
pub struct TestFs {
    state: Arc<Mutex<State>>,
    path: PathBuf,
    session: Option<fuser::BackgroundSession>,
}

impl TestFs {
    /// Mounts a new, empty filesystem of `capacity` at `path` (created if missing).
    pub fn mount(path: &Path, capacity: Capacity) -> std::io::Result<TestFs> {
        std::fs::create_dir_all(path)?;
        let mut fs = TestFs {
            state: Arc::new(Mutex::new(State::new(capacity))),
            path: path.to_owned(),
            session: None,
        };
        fs.attach()?;
        Ok(fs)
    }

    fn attach(&mut self) -> std::io::Result<()> {
        let mut config = fuser::Config::default();
        config.mount_options = vec![MountOption::FSName("outpost-testfs".into())];
        config.n_threads = Some(2);
        let fs = Fs(Arc::clone(&self.state));
        self.session = Some(fuser::spawn_mount(fs, &self.path, &config)?);
        Ok(())
    }

    /// Loses every write not made durable, as a power cut would. Kill the processes
    /// using the filesystem first (their memory is gone too), then [`TestFs::remount`].
    pub fn power_cut(&self) {
        self.state.lock().unwrap().power_cut();
    }

    /// Unmounts and mounts again: the kernel forgets everything it knew of the files.
    pub fn remount(&mut self) -> std::io::Result<()> {
        if let Some(session) = self.session.take() {
            session.umount_and_join()?;
        }
        self.attach()
    }

    /// Bytes of file data made durable since the start (the model was exercised).
    pub fn synced_bytes(&self) -> u64 {
        self.state.lock().unwrap().synced_bytes
    }

    /// The last time before `before` that a file whose name ends with `suffix` was
    /// synced: anything written to such a file before then survives a power cut.
    pub fn last_sync(&self, suffix: &str, before: Instant) -> Option<Instant> {
        let state = self.state.lock().unwrap();
        state
            .file_syncs
            .iter()
            .filter(|(at, name)| *at <= before && name.ends_with(suffix))
            .map(|(at, _)| *at)
            .max()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TestFs {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = session.umount_and_join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::{File, OpenOptions};
    use std::io::Write;

    use super::*;

    fn sync_dir(path: &Path) {
        File::open(path).unwrap().sync_all().unwrap();
    }

    #[test]
    fn a_power_cut_keeps_what_was_made_durable_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let mut fs = TestFs::mount(&dir.path().join("m"), Capacity::Bytes(1 << 20)).unwrap();
        let root = fs.path().to_owned();
        std::fs::create_dir(root.join("d")).unwrap();
        sync_dir(&root);
        let mut kept = File::create(root.join("d/kept")).unwrap();
        kept.write_all(b"durable").unwrap();
        kept.sync_data().unwrap();
        kept.write_all(b" and lost").unwrap();
        sync_dir(&root.join("d"));
        drop(kept);
        let mut lost = File::create(root.join("d/unnamed")).unwrap();
        lost.write_all(b"synced, but its name is not").unwrap();
        lost.sync_all().unwrap();
        drop(lost);
        std::fs::rename(root.join("d/kept"), root.join("d/renamed")).unwrap();

        fs.power_cut();
        fs.remount().unwrap();
        assert_eq!(std::fs::read(root.join("d/kept")).unwrap(), b"durable");
        assert!(!root.join("d/unnamed").exists());
        assert!(
            !root.join("d/renamed").exists(),
            "the rename was not made durable"
        );
        assert!(fs.synced_bytes() > 0);
    }

    #[test]
    fn a_full_filesystem_refuses_writes_and_an_unknown_size_reports_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let small = TestFs::mount(&dir.path().join("small"), Capacity::Bytes(64 << 10)).unwrap();
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(small.path().join("f"))
            .unwrap();
        let e = f.write_all(&[0; 128 << 10]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        drop(f);
        std::fs::remove_file(small.path().join("f")).unwrap();
        std::fs::write(small.path().join("g"), [0; 32 << 10]).unwrap();

        let unknown = TestFs::mount(&dir.path().join("unknown"), Capacity::Unknown).unwrap();
        let c = std::ffi::CString::new(unknown.path().to_str().unwrap()).unwrap();
        // SAFETY: statvfs fills the zeroed struct it is given; `c` outlives the call.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
        assert_eq!((st.f_blocks, st.f_bavail), (0, 0));
        std::fs::write(unknown.path().join("big"), vec![1u8; 1 << 20]).unwrap();
    }
}
