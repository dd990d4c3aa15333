//! Re-encryption: moving stored sectors from one data key to another.
//!
//! Shared by `volume copy` (a detached volume under a new data key),
//! restoring a snapshot under another KMS key, and `snapshot copy` with a
//! new key or into another region. Work is split by 512 KiB chunk across
//! threads, each holding one chunk at a time: memory stays bounded
//! whatever the volume size, and never-written chunks are skipped.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::cbt::CHUNK_SIZE;
use super::file::is_zero;
use super::{Error, NewVolume, Volume};
use crate::blockdev::BlockDevice;
use crate::crypto::xts::SectorCipher;
use crate::progress::Progress;

/// Reports a chunk's bytes as done when dropped, on every way out.
struct Advance<'a>(&'a dyn Progress, u64);

impl Drop for Advance<'_> {
    fn drop(&mut self) {
        self.0.advance(self.1);
    }
}

/// Re-encrypts whole sectors in place from `old` to `new` (either may be
/// `None`: plaintext). All-zero sectors stay zero: they are holes, not data.
pub fn transcode(
    old: Option<&SectorCipher>,
    new: Option<&SectorCipher>,
    first_sector: u64,
    sector_size: usize,
    buf: &mut [u8],
) {
    for (i, s) in buf.chunks_exact_mut(sector_size).enumerate() {
        if is_zero(s) {
            continue;
        }
        let n = first_sector + i as u64;
        if let Some(o) = old {
            o.decrypt_one(n, s);
        }
        if let Some(w) = new {
            // `s` is exactly one sector, so this cannot be misaligned.
            let _ = w.encrypt_sectors(n, s);
        }
    }
}

/// Worker threads for CPU-bound re-encryption: every core.
pub fn workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

/// Runs `job(i)` for every `i < n` on [`workers`] threads; stops at the
/// first error and returns it.
pub fn parallel<E: Send>(n: usize, job: impl Fn(usize) -> Result<(), E> + Sync) -> Result<(), E> {
    parallel_on(workers(), n, job)
}

/// [`parallel`] for work that also waits on the disk (fsyncs of sealed
/// snapshot packs): twice as many threads, so the cores stay busy while
/// some threads wait.
pub fn parallel_io<E: Send>(
    n: usize,
    job: impl Fn(usize) -> Result<(), E> + Sync,
) -> Result<(), E> {
    parallel_on(2 * workers(), n, job)
}

fn parallel_on<E: Send>(
    threads: usize,
    n: usize,
    job: impl Fn(usize) -> Result<(), E> + Sync,
) -> Result<(), E> {
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<E>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.min(n.max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                if let Err(e) = job(i) {
                    failed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(e);
                    next.store(n, Ordering::Relaxed);
                    break;
                }
            });
        }
    });
    match failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Copies the data area of `src` into a new volume, re-encrypting every
/// written chunk under the new volume's cipher. Returns bytes re-encrypted.
pub fn copy_into(src: &Volume, dst: &NewVolume<'_>, progress: &dyn Progress) -> Result<u64, Error> {
    let size = src.header().size;
    let ss = src.header().sector_size as usize;
    let chunks = size.div_ceil(CHUNK_SIZE) as usize;
    let done = AtomicU64::new(0);
    progress.start(size);
    parallel(chunks, |i| -> Result<(), Error> {
        let c = i as u64;
        // Skip chunks with no storage behind them at all.
        let len = CHUNK_SIZE.min(size - c * CHUNK_SIZE);
        let _done_when_returning = Advance(progress, len);
        let map = src
            .block_status(c * CHUNK_SIZE, len)
            .map_err(|e| Error::Io {
                what: "mapping the source".into(),
                source: std::io::Error::other(e),
            })?;
        if map.iter().all(|e| e.hole) && map.iter().map(|e| e.length).sum::<u64>() == len {
            return Ok(());
        }
        let mut buf = Vec::new();
        src.read_raw_chunk(c, &mut buf)
            .map_err(Error::io(format!("reading chunk {c} of the source")))?;
        if is_zero(&buf) {
            return Ok(());
        }
        transcode(
            src.cipher(),
            dst.cipher,
            c * CHUNK_SIZE / ss as u64,
            ss,
            &mut buf,
        );
        dst.write_stored(c * CHUNK_SIZE, &buf)
            .map_err(Error::io(format!("writing chunk {c} of the copy")))?;
        done.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(())
    })?;
    Ok(done.load(Ordering::Relaxed))
}
