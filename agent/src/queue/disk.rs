//! The filesystem under the data dir: free space (statvfs) and the reserve kept free
//! so that acknowledgements, compaction and segment deletion always have room.

use std::path::Path;

/// Space on the filesystem holding a path.
///
/// FUSE, network and overlay filesystems may answer `statvfs` with zeros: a size of 0
/// means "unknown", never "full" ([`FsSpace::known`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsSpace {
    /// Size of the filesystem.
    pub total: u64,
    /// Bytes an unprivileged writer may still use (`f_bavail`): root may eat into the
    /// filesystem's own reserve beyond this, but the agent does not count on it.
    pub available: u64,
}

impl FsSpace {
    /// Whether the filesystem reports a size at all.
    pub fn known(&self) -> bool {
        self.total > 0
    }
}

/// Measures the filesystem holding `path`.
pub fn fs_space(path: &Path) -> std::io::Result<FsSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `statvfs` is plain old data, for which all-zero bytes are a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a NUL-terminated string alive for the call and `st` a valid,
    // exclusively borrowed struct the call fills in.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let block = st.f_frsize as u64;
    Ok(FsSpace {
        total: (st.f_blocks as u64).saturating_mul(block),
        available: (st.f_bavail as u64).saturating_mul(block),
    })
}

/// The default reserve: 5 % of the filesystem or 64 MiB, whichever is smaller (none
/// for a filesystem of unknown size).
pub fn default_reserve(space: FsSpace) -> u64 {
    (space.total / 20).min(64 << 20)
}

/// Whether an I/O error means the disk (or the user's quota) is full.
pub fn is_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || e.raw_os_error() == Some(libc::ENOSPC)
}

/// Makes the names in `dir` durable (files and directories created, renamed or removed
/// in it): without this, a power cut can take a new file away with its data, however
/// well the file itself was synced.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The apparent size of the files directly in `dir` whose names pass `take`.
pub fn files_bytes(dir: &Path, take: impl Fn(&str) -> bool) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(&take))
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_the_filesystem_and_sizes_the_reserve() {
        let dir = tempfile::tempdir().unwrap();
        let space = fs_space(dir.path()).unwrap();
        assert!(space.total > 0 && space.available <= space.total);
        let small = FsSpace {
            total: 16 << 20,
            available: 0,
        };
        assert_eq!(default_reserve(small), (16 << 20) / 20);
        let big = FsSpace {
            total: 100 << 30,
            available: 0,
        };
        assert_eq!(default_reserve(big), 64 << 20);
        std::fs::write(dir.path().join("a.seg"), [0u8; 10]).unwrap();
        std::fs::write(dir.path().join("b"), [0u8; 7]).unwrap();
        assert_eq!(files_bytes(dir.path(), |n| n.ends_with(".seg")), 10);
    }
}
