//! A POSIX shared-memory segment mapped into this process: the one place of the shm
//! backend that touches raw memory.
//!
//! Everything else reaches the mapping through the accessors here: atomics at aligned
//! offsets, and byte copies into and out of ranges. The protocol that decides who may
//! write which range when lives in `exchange.rs`; the bounds and alignment checks that
//! make each access valid live here.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

use rustix::fd::OwnedFd;
use rustix::fs::{FallocateFlags, Mode};
use rustix::mm::{MapFlags, ProtFlags};
use rustix::shm;

/// Why a segment could not be created.
#[derive(Debug)]
pub(crate) enum CreateError {
    /// A segment of that name exists already.
    Exists,
    /// The file system holding the segments (`/dev/shm`) is too small.
    NoSpace(io::Error),
    /// Anything else.
    Other(io::Error),
}

/// A mapped segment; unmapped on drop (never unlinked implicitly).
#[derive(Debug)]
pub(crate) struct Segment {
    ptr: NonNull<u8>,
    len: usize,
    backing: Backing,
}

/// What holds a segment's memory.
#[derive(Debug)]
enum Backing {
    /// A shared mapping of a POSIX shared-memory object, made by `map`.
    Mapping,
    /// Memory of this process shared by the ranks of a test job run as threads (the
    /// tests that run the whole exchange protocol under Miri, which cannot map files).
    #[cfg(test)]
    Heap(std::sync::Arc<in_process::Memory>),
}

// SAFETY: the mapping is plain shared memory owned by this value; concurrent access goes
// through atomics or through byte copies whose exclusivity the exchange protocol ensures.
unsafe impl Send for Segment {}
// SAFETY: as above.
unsafe impl Sync for Segment {}

/// The only mode a segment of ours may have: read and write for its owner, nothing for
/// anyone else.
pub(crate) const SEGMENT_MODE: u32 = 0o600;

/// Checks that the segment open as `fd` belongs to this process's effective user and,
/// once it has a size (its creator sets the mode before the size), that its mode is 0600;
/// returns its length. A segment of another user, or one whose mode lets others read or
/// write it, is refused: its contents cannot be trusted.
fn check_ours(fd: &OwnedFd) -> io::Result<u64> {
    let stat = rustix::fs::fstat(fd)?;
    let me = rustix::process::geteuid().as_raw();
    let mode = stat.st_mode & 0o7777;
    let len = u64::try_from(stat.st_size).unwrap_or(0);
    if stat.st_uid != me || (len > 0 && mode != SEGMENT_MODE) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "it is owned by uid {} with mode {mode:04o}, expected owner uid {me} (the effective \
                 user of this process) and mode {SEGMENT_MODE:04o}: a segment of another user, or one \
                 that others may read or write, is never used",
                stat.st_uid
            ),
        ));
    }
    Ok(len)
}

/// Removes a segment's name when dropped, unless [`Unlink::keep`] was called: every
/// segment this process creates is covered by one until its name is meant to stay, so an
/// error or a panic on the way never leaves it in `/dev/shm`.
#[derive(Debug)]
pub(crate) struct Unlink {
    name: Option<String>,
}

impl Unlink {
    pub(crate) fn new(name: &str) -> Unlink {
        Unlink {
            name: Some(name.to_string()),
        }
    }

    /// Leaves the name in place.
    pub(crate) fn keep(mut self) {
        self.name = None;
    }
}

impl Drop for Unlink {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            let _ = shm::unlink(name.as_str());
        }
    }
}

impl Segment {
    /// Creates `name` exclusively (mode 0600, whatever the umask), reserves `len` bytes of
    /// backing store so that a full `/dev/shm` fails here and not later as SIGBUS, and
    /// maps it. On error the name is removed again. The caller owns the name: it stays
    /// until the caller removes it ([`Unlink`] is the usual way).
    pub(crate) fn create(name: &str, len: usize) -> Result<Segment, CreateError> {
        let fd = shm::open(
            name,
            shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR,
            Mode::from_raw_mode(SEGMENT_MODE),
        )
        .map_err(|e| {
            if e == rustix::io::Errno::EXIST {
                CreateError::Exists
            } else {
                CreateError::Other(e.into())
            }
        })?;
        let unlink = Unlink::new(name);
        // The umask may have removed bits from the mode asked for.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(SEGMENT_MODE))
            .map_err(|e| CreateError::Other(e.into()))?;
        check_ours(&fd).map_err(CreateError::Other)?;
        let reserve = rustix::fs::ftruncate(&fd, len as u64)
            .and_then(|()| rustix::fs::fallocate(&fd, FallocateFlags::empty(), 0, len as u64));
        if let Err(e) = reserve {
            return Err(
                if e == rustix::io::Errno::NOSPC || e == rustix::io::Errno::FBIG {
                    CreateError::NoSpace(e.into())
                } else {
                    CreateError::Other(e.into())
                },
            );
        }
        let seg = Self::map(&fd, len).map_err(CreateError::Other)?;
        unlink.keep();
        Ok(seg)
    }

    /// Opens an existing segment of ours and maps its whole current length; `Ok(None)`
    /// when it does not exist (yet) or has not been sized (yet). A segment that is not
    /// ours (owner, mode) is an error.
    pub(crate) fn open(name: &str) -> io::Result<Option<Segment>> {
        let fd = match shm::open(name, shm::OFlags::RDWR, Mode::empty()) {
            Ok(fd) => fd,
            Err(e) if e == rustix::io::Errno::NOENT => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let len = usize::try_from(check_ours(&fd)?).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "its length does not fit in this process's address space",
            )
        })?;
        if len == 0 {
            return Ok(None);
        }
        Self::map(&fd, len).map(Some)
    }

    /// The owner and mode of the existing segment `name`, for messages.
    pub(crate) fn describe(name: &str) -> String {
        use std::os::unix::fs::MetadataExt as _;
        let me = rustix::process::geteuid().as_raw();
        match std::fs::metadata(format!("/dev/shm{name}")) {
            Ok(m) if m.uid() == me => format!("yours, mode {:04o}", m.mode() & 0o7777),
            Ok(m) => format!(
                "owned by uid {}, not by this process's uid {me}, mode {:04o}",
                m.uid(),
                m.mode() & 0o7777
            ),
            Err(e) => format!("cannot stat it: {e}"),
        }
    }

    /// Removes the name; the memory lives on while mapped.
    pub(crate) fn unlink(name: &str) -> io::Result<()> {
        shm::unlink(name).map_err(Into::into)
    }

    fn map(fd: &OwnedFd, len: usize) -> io::Result<Segment> {
        // SAFETY: a fresh shared mapping of `len` bytes of `fd` at an address the kernel
        // picks; it aliases no Rust object. The file is at least `len` bytes long
        // (created with ftruncate, or measured with fstat).
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )?
        };
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Segment {
            ptr,
            len,
            backing: Backing::Mapping,
        })
    }

    /// The mapped length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn check(&self, offset: usize, len: usize, align: usize) {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len)
                && offset.is_multiple_of(align),
            "segment access [{offset}, +{len}) (align {align}) outside the {} mapped bytes",
            self.len
        );
    }

    /// The `AtomicU32` at `offset` (4-aligned, in bounds: checked).
    pub(crate) fn u32_at(&self, offset: usize) -> &AtomicU32 {
        self.check(offset, 4, 4);
        #[allow(clippy::cast_ptr_alignment)] // alignment checked above
        let word = self.ptr.as_ptr().wrapping_add(offset).cast::<u32>();
        // SAFETY: in bounds and aligned (checked); `AtomicU32` has the layout of `u32`, any
        // bit pattern is valid, and the mapping outlives `&self`. Other processes access
        // the word only atomically.
        unsafe { AtomicU32::from_ptr(word) }
    }

    /// The `AtomicU64` at `offset` (8-aligned, in bounds: checked).
    pub(crate) fn u64_at(&self, offset: usize) -> &AtomicU64 {
        self.check(offset, 8, 8);
        #[allow(clippy::cast_ptr_alignment)] // alignment checked above
        let word = self.ptr.as_ptr().wrapping_add(offset).cast::<u64>();
        // SAFETY: as for `u32_at`, for 8 bytes.
        unsafe { AtomicU64::from_ptr(word) }
    }

    /// Copies `data` to `offset`. The caller owns that range for writing under the
    /// exchange protocol (no other process reads or writes it meanwhile).
    pub(crate) fn write(&self, offset: usize, data: &[u8]) {
        self.check(offset, data.len(), 1);
        let target = self.ptr.as_ptr().wrapping_add(offset);
        // In blocks where one `memcpy` would take its slow path (see `copy.rs`).
        let block = crate::copy::block_len(target as usize, data.as_ptr() as usize, data.len());
        for (i, part) in data.chunks(block.max(1)).enumerate() {
            // SAFETY: in bounds (checked: `part` lies within `data`, whose whole range
            // fits at `offset`); `data` is ordinary memory of this process, so the ranges
            // cannot overlap; exclusivity of the target range is the protocol's.
            unsafe {
                std::ptr::copy_nonoverlapping(part.as_ptr(), target.add(i * block), part.len());
            }
        }
    }

    /// The bytes at `[offset, offset + len)`. The caller reads a range that its owner
    /// published and will not rewrite before this borrow ends (the exchange protocol).
    pub(crate) fn read(&self, offset: usize, len: usize) -> &[u8] {
        self.check(offset, len, 1);
        // SAFETY: in bounds (checked), valid for reads while the mapping lives (`&self`);
        // u8 has no invalid values; the protocol keeps writers out while it is borrowed.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset), len) }
    }

    /// The address of `offset`, for shared regions handed to the user.
    pub(crate) fn ptr_at(&self, offset: usize) -> NonNull<u8> {
        self.check(offset, 0, 1);
        // SAFETY: in bounds (checked), so the offset pointer stays inside the mapping.
        unsafe { self.ptr.add(offset) }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        match self.backing {
            Backing::Mapping => {
                // SAFETY: the mapping was created by `map` with this address and length,
                // and no borrow of it outlives `self`.
                let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
            }
            // Freed with its last segment (the `Arc`).
            #[cfg(test)]
            Backing::Heap(_) => {}
        }
    }
}

/// Segments over memory of this process, for jobs whose ranks are threads: the same
/// accessors and the same protocol, without a file to map.
#[cfg(test)]
pub(crate) mod in_process {
    use std::alloc::Layout;
    use std::ptr::NonNull;
    use std::sync::Arc;

    use super::{Backing, Segment};

    /// Zeroed, page-aligned memory, as a fresh mapping is.
    #[derive(Debug)]
    pub(crate) struct Memory {
        ptr: NonNull<u8>,
        layout: Layout,
    }

    // SAFETY: plain memory, accessed as the segment accesses a mapping (see `Segment`).
    unsafe impl Send for Memory {}
    // SAFETY: as above.
    unsafe impl Sync for Memory {}

    impl Drop for Memory {
        fn drop(&mut self) {
            // SAFETY: allocated in `segment` with this layout; the last segment that
            // pointed into it is gone (they hold the `Arc`).
            unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
        }
    }

    /// A zeroed segment of `len` bytes (at least one) in this process's memory.
    pub(crate) fn segment(len: usize) -> Segment {
        let layout = Layout::from_size_align(len.max(1), 4096).expect("segment layout");
        // SAFETY: the layout's size is not zero.
        let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })
            .unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        Segment {
            ptr,
            len,
            backing: Backing::Heap(Arc::new(Memory { ptr, layout })),
        }
    }

    /// Another rank's view of the same memory.
    pub(crate) fn share(seg: &Segment) -> Segment {
        match &seg.backing {
            Backing::Heap(memory) => Segment {
                ptr: seg.ptr,
                len: seg.len,
                backing: Backing::Heap(Arc::clone(memory)),
            },
            Backing::Mapping => panic!("only in-process segments are shared this way"),
        }
    }
}
