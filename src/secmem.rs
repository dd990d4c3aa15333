//! Memory for secrets, and the process settings that keep them private:
//! the one module that calls the C library for that.
//!
//! - [`Locked`] and [`LockedBytes`] put a secret on pages of its own (an
//!   anonymous `mmap`), locked out of swap (`mlock`) and left out of core
//!   dumps (`MADV_DONTDUMP`); dropping one zeroizes the pages, unlocks and
//!   unmaps them. Pages of their own, because both calls act on whole pages:
//!   locking a heap page would lock whatever else shares it, and unlocking
//!   it would unlock a neighbouring secret.
//! - [`disable_core_dumps`] marks the whole process non-dumpable
//!   (`PR_SET_DUMPABLE` 0): no core file, and `/proc/PID/mem`, `environ`
//!   and ptrace are closed to other processes of the same user. `serve` and
//!   `kms serve`, which hold keys for hours, call it at start.
//! - [`effective_uid`] lets key-store checks compare file owners with us.
//!
//! `mlock` is limited by `RLIMIT_MEMLOCK` (often 8 MiB, sometimes 64 KiB,
//! for unprivileged users). Running out of it must not stop the tool: the
//! secret is still zeroized and left out of dumps, and one warning per
//! process says that swap is no longer excluded and how to raise the limit.
//!
//! XXX: values are built on the stack and moved in (`Locked::new`), so a
//! copy may linger in a stack frame until overwritten; callers that can
//! start from zeros and fill in place do so (the x86 XTS key schedules).
//! Secrets that other crates hold in their own types (parsed RSA/ECC keys,
//! `Zeroizing<String>` IAM secrets, JSON bodies) are zeroized but not here.

#![allow(unsafe_code)]

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use zeroize::Zeroize;

/// The system page size (`mlock` and `madvise` work in whole pages).
fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions; it only reads a constant.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

static MLOCK_WARNING: Once = Once::new();
static DONTDUMP_WARNING: Once = Once::new();
/// Set once an `mlock` has failed in this process.
static MLOCK_FAILED: AtomicBool = AtomicBool::new(false);

/// Whether every secret so far was locked out of swap (false once `mlock`
/// has failed, e.g. at `RLIMIT_MEMLOCK`).
pub fn mlock_ok() -> bool {
    !MLOCK_FAILED.load(Ordering::Relaxed)
}

/// Whole pages of private, zero-initialized memory that no other value
/// shares, locked and excluded from core dumps where the OS allows.
struct Pages {
    ptr: NonNull<u8>,
    len: usize,
    locked: bool,
}

impl Pages {
    /// At least `bytes` bytes (rounded up to whole pages, at least one).
    fn new(bytes: usize) -> Pages {
        let page = page_size();
        let len = bytes.max(1).div_ceil(page).saturating_mul(page);
        // SAFETY: an anonymous private mapping at an address the kernel
        // picks; no file descriptor, no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        let ptr = match NonNull::new(p.cast::<u8>()) {
            Some(ptr) if p != libc::MAP_FAILED => ptr,
            // Out of address space: what `Vec` does when it cannot allocate.
            _ => std::alloc::handle_alloc_error(
                std::alloc::Layout::from_size_align(len, page)
                    .unwrap_or(std::alloc::Layout::new::<u8>()),
            ),
        };
        // SAFETY: [ptr, ptr + len) is the mapping made above, ours alone.
        if unsafe { libc::madvise(p, len, libc::MADV_DONTDUMP) } != 0 {
            let e = std::io::Error::last_os_error();
            DONTDUMP_WARNING.call_once(|| {
                tracing::warn!("cannot exclude key memory from core dumps (madvise: {e})");
            });
        }
        // SAFETY: as above; mlock only pins pages of our own mapping.
        let locked = unsafe { libc::mlock(p, len) } == 0;
        if !locked {
            let e = std::io::Error::last_os_error();
            MLOCK_FAILED.store(true, Ordering::Relaxed);
            MLOCK_WARNING.call_once(|| {
                tracing::warn!(
                    "cannot lock key memory out of swap (mlock: {e}); keys may be written to \
                     swap. Raise the limit (`ulimit -l`, LimitMEMLOCK= in a systemd unit) or \
                     use encrypted swap"
                );
            });
        }
        Pages { ptr, len, locked }
    }

    fn as_mut_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        // SAFETY: the mapping is live and `len` bytes long, and nothing else
        // refers to it any more (its owner is being dropped).
        let bytes = unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) };
        bytes.zeroize();
        let p = self.ptr.as_ptr().cast::<libc::c_void>();
        // SAFETY: unlocking and unmapping our own mapping, which no
        // reference outlives (see above). Failures leave only a mapping
        // behind, never unsoundness, so their results are ignored.
        unsafe {
            if self.locked {
                libc::munlock(p, self.len);
            }
            libc::munmap(p, self.len);
        }
    }
}

// SAFETY: `Pages` owns its mapping exclusively, like a `Box<[u8]>`.
unsafe impl Send for Pages {}
// SAFETY: shared access only reads through `&self` methods of the owners.
unsafe impl Sync for Pages {}

/// A value on locked, never-dumped pages of its own; the pages are
/// zeroized when it drops (after the value's own `Drop`).
pub struct Locked<T> {
    pages: Pages,
    _owns: PhantomData<T>,
}

impl<T> Locked<T> {
    /// Moves `value` onto fresh locked pages.
    pub fn new(value: T) -> Locked<T> {
        let pages = Pages::new(std::mem::size_of::<T>());
        assert!(
            std::mem::align_of::<T>() <= page_size(),
            "BUG: a secret type aligned beyond a page"
        );
        // SAFETY: the pages are page-aligned (so aligned for `T`, checked
        // just above), at least `size_of::<T>()` bytes, writable, and hold
        // no `T` yet, so writing one leaks nothing.
        unsafe { pages.as_mut_ptr().cast::<T>().write(value) };
        Locked {
            pages,
            _owns: PhantomData,
        }
    }

    /// Where the value lives (tests look its pages up in `/proc/self/smaps`).
    pub fn addr(&self) -> usize {
        self.pages.as_mut_ptr() as usize
    }
}

impl<T> Deref for Locked<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `new` wrote a valid `T` there and only `drop` removes it.
        unsafe { &*self.pages.as_mut_ptr().cast::<T>() }
    }
}

impl<T> DerefMut for Locked<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes the borrow unique.
        unsafe { &mut *self.pages.as_mut_ptr().cast::<T>() }
    }
}

impl<T> Drop for Locked<T> {
    fn drop(&mut self) {
        // SAFETY: the `T` written by `new` is dropped exactly once, here;
        // the pages (dropped next) are zeroized without reading it again.
        unsafe { std::ptr::drop_in_place(self.pages.as_mut_ptr().cast::<T>()) };
    }
}

impl<T: Clone> Clone for Locked<T> {
    fn clone(&self) -> Self {
        Locked::new((**self).clone())
    }
}

impl<T> std::fmt::Debug for Locked<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Locked([redacted])")
    }
}

// SAFETY: `Locked<T>` owns its `T` as a `Box<T>` would.
unsafe impl<T: Send> Send for Locked<T> {}
// SAFETY: `&Locked<T>` hands out only `&T`.
unsafe impl<T: Sync> Sync for Locked<T> {}

/// A byte string of fixed length on locked, never-dumped pages of its
/// own, zeroized on drop. Empty strings take no pages.
pub struct LockedBytes {
    pages: Option<Pages>,
    len: usize,
}

impl LockedBytes {
    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> LockedBytes {
        LockedBytes {
            pages: (len > 0).then(|| Pages::new(len)),
            len,
        }
    }

    /// A locked copy of `bytes`.
    pub fn copy_of(bytes: &[u8]) -> LockedBytes {
        let mut out = LockedBytes::zeroed(bytes.len());
        out.as_mut_slice().copy_from_slice(bytes);
        out
    }

    pub fn as_slice(&self) -> &[u8] {
        match &self.pages {
            // SAFETY: the mapping holds at least `len` initialized bytes
            // (zeroed by mmap) and lives as long as `self`.
            Some(p) => unsafe { std::slice::from_raw_parts(p.as_mut_ptr(), self.len) },
            None => &[],
        }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        match &self.pages {
            // SAFETY: as in `as_slice`; `&mut self` makes the borrow unique.
            Some(p) => unsafe { std::slice::from_raw_parts_mut(p.as_mut_ptr(), self.len) },
            None => &mut [],
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Clone for LockedBytes {
    fn clone(&self) -> Self {
        LockedBytes::copy_of(self.as_slice())
    }
}

impl std::fmt::Debug for LockedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LockedBytes([redacted; {} bytes])", self.len)
    }
}

/// Marks this process non-dumpable: no core dump, and other processes of
/// the same user can no longer read its memory through `/proc` or ptrace.
pub fn disable_core_dumps() -> std::io::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes one integer argument and touches no
    // memory of ours.
    let r = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong, 0, 0, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether this process may dump core (`PR_GET_DUMPABLE`).
pub fn dumpable() -> bool {
    // SAFETY: PR_GET_DUMPABLE takes no arguments and touches no memory.
    let r = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
    r != 0
}

/// The effective user id of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid cannot fail and has no preconditions.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    /// The `VmFlags` of the mapping holding `addr`, from `/proc/self/smaps`.
    pub(crate) fn vm_flags(addr: usize) -> Vec<String> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if let Some((lo, hi)) = first.split_once('-') {
                if let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                {
                    inside = (lo..hi).contains(&addr);
                    continue;
                }
            }
            if inside {
                if let Some(flags) = line.strip_prefix("VmFlags:") {
                    return flags.split_whitespace().map(str::to_owned).collect();
                }
            }
        }
        panic!("no mapping holds {addr:#x}");
    }

    /// Asserts the pages at `addr` are excluded from dumps (`dd`) and, unless
    /// this process ran out of `RLIMIT_MEMLOCK`, locked (`lo`).
    pub(crate) fn assert_protected(addr: usize, what: &str) {
        let flags = vm_flags(addr);
        assert!(
            flags.iter().any(|f| f == "dd"),
            "{what} is not excluded from core dumps: {flags:?}"
        );
        if mlock_ok() {
            assert!(
                flags.iter().any(|f| f == "lo"),
                "{what} is not locked: {flags:?}"
            );
        } else {
            eprintln!("SKIPPED the mlock check for {what}: RLIMIT_MEMLOCK is exhausted here");
        }
    }

    #[test]
    fn locked_values_sit_on_locked_undumped_pages_and_drop_cleanly() {
        let v = Locked::new([7u8; 64]);
        assert_eq!(*v, [7u8; 64]);
        assert_eq!(v.addr() % page_size(), 0);
        assert_protected(v.addr(), "Locked<[u8; 64]>");
        let w = v.clone();
        assert_ne!(w.addr(), v.addr());
        assert_protected(w.addr(), "a clone");
        drop(v);
        assert_eq!(*w, [7u8; 64], "dropping one copy leaves the other intact");
        assert_eq!(format!("{w:?}"), "Locked([redacted])");
    }

    #[test]
    fn locked_bytes_round_trip_and_empty_takes_no_pages() {
        let b = LockedBytes::copy_of(b"secret");
        assert_eq!(b.as_slice(), b"secret");
        assert_protected(b.as_slice().as_ptr() as usize, "LockedBytes");
        let e = LockedBytes::zeroed(0);
        assert!(e.is_empty() && e.pages.is_none());
        assert_eq!(e.as_slice(), b"");
        let big = LockedBytes::zeroed(3 * page_size() + 1);
        assert_eq!(big.len(), 3 * page_size() + 1);
        assert!(big.as_slice().iter().all(|&x| x == 0));
        assert!(!format!("{b:?}").contains("secret"));
    }

    #[test]
    fn locked_runs_the_values_drop() {
        use std::sync::atomic::AtomicUsize;
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        struct D;
        impl Drop for D {
            fn drop(&mut self) {
                DROPS.fetch_add(1, Ordering::SeqCst);
            }
        }
        drop(Locked::new(D));
        assert_eq!(DROPS.load(Ordering::SeqCst), 1);
    }
}
