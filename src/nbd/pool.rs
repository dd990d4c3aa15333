//! Reuse of large I/O buffers within one connection.
//!
//! A fresh 1 MiB `Vec` comes from `mmap` and is handed back with `munmap`,
//! so every large request paid 256 page faults plus zeroing; profiling 1 MiB
//! writes showed that at ~15% of the server's CPU. Reusing the buffers of
//! completed requests avoids both. nbdkit gets the same effect from a
//! per-thread buffer.
//!
//! A reused buffer still holds bytes of an earlier request of the same
//! connection. That is safe because every user overwrites all of it before
//! it is sent (`read_at` fills a read buffer, the socket fills a write
//! payload), and a buffer whose fill failed is never sent.

use std::sync::Mutex;

/// Smaller buffers are cheap to allocate (malloc serves them from its
/// arenas without faults); pooling them would only add locking.
const POOLED_MIN: usize = 64 << 10;
/// Buffers larger than this are rare (above the usual 1-4 MiB client
/// request sizes) and would pin a lot of memory: let them go. The extra
/// 4 KiB leaves room for a reply header in front of 4 MiB of data.
const POOLED_MAX: usize = (4 << 20) + 4096;
/// Most bytes one connection keeps pooled: a QD8 of 1 MiB requests in both
/// directions, with room to spare.
const POOL_MAX_BYTES: usize = 16 << 20;

#[derive(Debug, Default)]
pub(crate) struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// A buffer of exactly `len` initialised bytes whose contents are
    /// unspecified: the caller must overwrite all of it.
    pub fn take(&self, len: usize) -> Vec<u8> {
        if (POOLED_MIN..=POOLED_MAX).contains(&len) {
            let reused = {
                let mut free = self.lock();
                let pos = free.iter().rposition(|b| b.capacity() >= len);
                pos.map(|i| free.swap_remove(i))
            };
            if let Some(mut buf) = reused {
                // Growing within capacity only zeroes the new tail.
                buf.resize(len, 0);
                return buf;
            }
        }
        vec![0u8; len]
    }

    /// Returns a buffer for reuse, if it is worth keeping and there is room.
    pub fn give(&self, buf: Vec<u8>) {
        let cap = buf.capacity();
        if !(POOLED_MIN..=POOLED_MAX).contains(&cap) {
            return;
        }
        let mut free = self.lock();
        let held: usize = free.iter().map(Vec::capacity).sum();
        if held + cap <= POOL_MAX_BYTES {
            free.push(buf);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        // The list stays valid even if a holder panicked: it is only pushed and popped.
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_are_reused_at_the_requested_length() {
        let pool = BufferPool::default();
        let a = pool.take(1 << 20);
        let ptr = a.as_ptr();
        pool.give(a);
        let b = pool.take((1 << 20) - 100);
        assert_eq!(b.len(), (1 << 20) - 100);
        assert_eq!(b.as_ptr(), ptr, "same allocation");
        pool.give(b);
        // Growing back within capacity works too.
        assert_eq!(pool.take(1 << 20).len(), 1 << 20);
    }

    #[test]
    fn small_and_huge_buffers_are_not_kept_and_the_pool_is_bounded() {
        let pool = BufferPool::default();
        pool.give(vec![0; 100]);
        pool.give(vec![0; 32 << 20]);
        assert!(pool.lock().is_empty());
        for _ in 0..64 {
            pool.give(vec![0; 1 << 20]);
        }
        let held: usize = pool.lock().iter().map(Vec::capacity).sum();
        assert!(held <= POOL_MAX_BYTES);
    }
}
