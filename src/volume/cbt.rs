//! Changed-block tracking and point-in-time capture for snapshots.
//!
//! The data area is divided into chunks of [`CHUNK_SIZE`] bytes (EBS's
//! 512 KiB). The tracker keeps one bit per chunk: "changed since the base
//! snapshot". A snapshot then reads only those chunks.
//!
//! **Point in time while writes continue.** Every write holds a shared
//! *barrier* for its whole duration. Starting a snapshot takes the barrier
//! exclusively for an instant (it waits only for writes already in flight):
//! it swaps out the dirty bitmap and installs a [`Capture`] listing the
//! chunks to save. After that, a writer about to modify a chunk the capture
//! still needs first saves that chunk's current bytes (copy-on-write, once
//! per chunk); the snapshot reads the others at its own pace. So the
//! snapshot holds exactly the writes acknowledged before the barrier.
//!
//! **Persistence.** `<volume>.cbt` records the base snapshot, the bitmap and
//! a `clean` flag. It is written with `clean: false` at attach and
//! `clean: true` at a clean detach. A crash leaves `clean: false`, and the
//! next attach then marks every chunk changed: conservative, never wrong.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use base64::Engine as _;

/// Snapshot chunk size: 512 KiB, as EBS.
pub const CHUNK_SIZE: u64 = 512 * 1024;
/// Format version of the `.cbt` file.
const CBT_FORMAT: u32 = 1;
/// Lock stripes serializing copy-on-write of one chunk.
const CAPTURE_STRIPES: usize = 64;

/// A bitmap of chunks with lock-free set and swap-out.
#[derive(Debug)]
pub struct Bitmap {
    words: Vec<AtomicU64>,
    len: u64,
}

impl Bitmap {
    pub fn new(len: u64, all: bool) -> Self {
        let n = len.div_ceil(64) as usize;
        let b = Bitmap {
            words: (0..n).map(|_| AtomicU64::new(0)).collect(),
            len,
        };
        if all {
            for i in 0..len {
                b.set(i);
            }
        }
        b
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn set(&self, i: u64) {
        if i < self.len {
            self.words[(i / 64) as usize].fetch_or(1 << (i % 64), Ordering::Relaxed);
        }
    }

    pub fn get(&self, i: u64) -> bool {
        i < self.len && self.words[(i / 64) as usize].load(Ordering::Relaxed) & (1 << (i % 64)) != 0
    }

    /// Indices of set bits, in order.
    pub fn ones(&self) -> Vec<u64> {
        (0..self.len).filter(|&i| self.get(i)).collect()
    }

    /// Moves every bit out into a new bitmap, leaving this one empty.
    fn take(&self) -> Bitmap {
        Bitmap {
            words: self
                .words
                .iter()
                .map(|w| AtomicU64::new(w.swap(0, Ordering::Relaxed)))
                .collect(),
            len: self.len,
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        self.words
            .iter()
            .flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes())
            .collect()
    }

    fn from_bytes(len: u64, bytes: &[u8]) -> Option<Bitmap> {
        let n = len.div_ceil(64) as usize;
        if bytes.len() != n * 8 {
            return None;
        }
        let words = bytes
            .chunks_exact(8)
            .map(|c| AtomicU64::new(u64::from_le_bytes(c.try_into().expect("BUG: 8-byte chunk"))))
            .collect();
        Some(Bitmap { words, len })
    }
}

/// What a capture does with a chunk's bytes: store them and say how to
/// refer to them (`None` for a chunk that is all zeros and is not stored).
pub type ChunkSink = dyn Fn(u64, &[u8]) -> Result<Option<String>, String> + Send + Sync;

const NOT_NEEDED: u8 = 0;
const NEEDED: u8 = 1;
const DONE: u8 = 2;

/// An in-progress point-in-time capture of some chunks.
pub struct Capture {
    state: Vec<AtomicU8>,
    stripes: Vec<Mutex<()>>,
    results: Mutex<Vec<(u64, Option<String>)>>,
    error: Mutex<Option<String>>,
    sink: Box<ChunkSink>,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("chunks", &self.state.len())
            .finish()
    }
}

impl Capture {
    fn needed(&self, chunk: u64) -> bool {
        self.state
            .get(chunk as usize)
            .is_some_and(|s| s.load(Ordering::Acquire) == NEEDED)
    }

    /// Saves `chunk` if it is still needed; `read` reads its current raw
    /// bytes. Safe to call from writers and the snapshot thread at once.
    pub fn save(&self, chunk: u64, read: impl FnOnce(u64, &mut Vec<u8>) -> std::io::Result<()>) {
        if !self.needed(chunk) {
            return;
        }
        let _g = self.stripes[(chunk % CAPTURE_STRIPES as u64) as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !self.needed(chunk) {
            return;
        }
        let mut buf = Vec::new();
        let outcome = read(chunk, &mut buf)
            .map_err(|e| format!("reading chunk {chunk}: {e}"))
            .and_then(|_| (self.sink)(chunk, &buf));
        match outcome {
            Ok(r) => self
                .results
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((chunk, r)),
            Err(e) => {
                self.error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(e);
            }
        }
        self.state[chunk as usize].store(DONE, Ordering::Release);
    }

    /// Chunks the capture must save, in order.
    pub fn chunks(&self) -> Vec<u64> {
        (0..self.state.len() as u64)
            .filter(|&i| self.state[i as usize].load(Ordering::Relaxed) != NOT_NEEDED)
            .collect()
    }

    /// The saved chunks (index, reference), sorted; or the first error.
    pub fn finish(&self) -> Result<Vec<(u64, Option<String>)>, String> {
        if let Some(e) = self.error.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Err(e);
        }
        let mut r = std::mem::take(&mut *self.results.lock().unwrap_or_else(|e| e.into_inner()));
        r.sort_by_key(|(i, _)| *i);
        Ok(r)
    }
}

/// The `.cbt` file.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct CbtFile {
    format: u32,
    chunk_size: u64,
    chunks: u64,
    /// The snapshot the bitmap is relative to; `None` before the first.
    base_snapshot: Option<String>,
    /// False while a process has the volume attached (or after it crashed).
    clean: bool,
    /// Base64 of the little-endian bitmap words.
    bitmap: String,
}

/// Change tracking for one attached volume.
#[derive(Debug)]
pub struct Tracker {
    path: PathBuf,
    chunks: u64,
    barrier: RwLock<()>,
    dirty: Bitmap,
    base: Mutex<Option<String>>,
    capture: RwLock<Option<Arc<Capture>>>,
}

/// Held by a write for its whole duration (see the module docs).
#[derive(Debug)]
pub struct WriteGuard<'a> {
    _barrier: RwLockReadGuard<'a, ()>,
}

impl Tracker {
    /// Loads (or starts) tracking for a volume of `size` bytes. A missing,
    /// unreadable, mismatched or unclean file means "everything changed".
    pub fn open(
        path: &Path,
        size: u64,
        read_only: bool,
    ) -> Result<Tracker, crate::fsutil::FsError> {
        let chunks = size.div_ceil(CHUNK_SIZE);
        let loaded = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<CbtFile>(&b).ok())
            .and_then(|f| {
                let bits = base64::engine::general_purpose::STANDARD
                    .decode(&f.bitmap)
                    .ok()?;
                let ok = f.format == CBT_FORMAT
                    && f.chunk_size == CHUNK_SIZE
                    && f.chunks == chunks
                    && f.clean;
                ok.then_some(())?;
                Some((f.base_snapshot, Bitmap::from_bytes(chunks, &bits)?))
            });
        let (base, dirty) = match loaded {
            Some((base, bits)) => (base, bits),
            None => (None, Bitmap::new(chunks, true)),
        };
        let t = Tracker {
            path: path.to_path_buf(),
            chunks,
            barrier: RwLock::new(()),
            dirty,
            base: Mutex::new(base),
            capture: RwLock::new(None),
        };
        if !read_only {
            if let Err(e) = t.persist(false) {
                // A full (or failing) disk must not keep a volume from
                // attaching: that is how its owner reads the data back or
                // frees space. No file means "everything changed", as
                // conservative as `clean: false`, and removing one needs
                // no space.
                match std::fs::remove_file(path) {
                    Ok(()) => {}
                    Err(r) if r.kind() == std::io::ErrorKind::NotFound => {}
                    Err(_) => return Err(e),
                }
                if let Some(dir) = path.parent() {
                    crate::fsutil::sync_dir(dir)?;
                }
                tracing::warn!(
                    "{e}; the next snapshot of this volume will read every chunk (its change \
                     map could not be saved)"
                );
            }
        }
        Ok(t)
    }

    pub fn chunks(&self) -> u64 {
        self.chunks
    }

    /// The snapshot the tracked changes are relative to.
    pub fn base(&self) -> Option<String> {
        self.base.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Writes the `.cbt` file (atomically).
    pub fn persist(&self, clean: bool) -> Result<(), crate::fsutil::FsError> {
        let f = CbtFile {
            format: CBT_FORMAT,
            chunk_size: CHUNK_SIZE,
            chunks: self.chunks,
            base_snapshot: self.base(),
            clean,
            bitmap: base64::engine::general_purpose::STANDARD.encode(self.dirty.to_bytes()),
        };
        let bytes = serde_json::to_vec(&f).expect("BUG: CbtFile serializes");
        crate::fsutil::write_atomic(&self.path, &bytes)
    }

    /// Called by every write covering `offset..offset+len` of the data
    /// area, before it modifies anything: marks the chunks changed and
    /// saves any the running capture still needs. `read` reads a chunk's
    /// raw stored bytes.
    pub fn begin_write(
        &self,
        offset: u64,
        len: u64,
        read: impl Fn(u64, &mut Vec<u8>) -> std::io::Result<()>,
    ) -> WriteGuard<'_> {
        let g = self.barrier.read().unwrap_or_else(|e| e.into_inner());
        if len > 0 {
            let (first, last) = (offset / CHUNK_SIZE, (offset + len - 1) / CHUNK_SIZE);
            let cap = self
                .capture
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            for c in first..=last {
                self.dirty.set(c);
                if let Some(cap) = &cap {
                    cap.save(c, &read);
                }
            }
        }
        WriteGuard { _barrier: g }
    }

    /// Starts a point-in-time capture. Waits for writes in flight, then,
    /// atomically with respect to writes: takes the changed-chunk set
    /// (every chunk if `full`), and installs the capture. Returns it and how
    /// long writers were paused.
    pub fn start_capture(
        &self,
        full: bool,
        sink: Box<ChunkSink>,
    ) -> (Arc<Capture>, std::time::Duration) {
        let t0 = std::time::Instant::now();
        let _g = self.barrier.write().unwrap_or_else(|e| e.into_inner());
        let changed = self.dirty.take();
        let state = (0..self.chunks)
            .map(|i| {
                AtomicU8::new(if full || changed.get(i) {
                    NEEDED
                } else {
                    NOT_NEEDED
                })
            })
            .collect();
        let cap = Arc::new(Capture {
            state,
            stripes: (0..CAPTURE_STRIPES).map(|_| Mutex::new(())).collect(),
            results: Mutex::new(Vec::new()),
            error: Mutex::new(None),
            sink,
        });
        *self.capture.write().unwrap_or_else(|e| e.into_inner()) = Some(cap.clone());
        (cap, t0.elapsed())
    }

    /// Ends the capture. On success the new snapshot becomes the base; on
    /// failure the captured chunks are marked changed again so the next
    /// snapshot includes them.
    pub fn end_capture(&self, cap: &Capture, new_base: Option<&str>) {
        *self.capture.write().unwrap_or_else(|e| e.into_inner()) = None;
        match new_base {
            Some(b) => *self.base.lock().unwrap_or_else(|e| e.into_inner()) = Some(b.to_string()),
            None => {
                for c in cap.chunks() {
                    self.dirty.set(c);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unclean_or_missing_file_marks_everything_changed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("v.cbt");
        let t = Tracker::open(&p, 10 * CHUNK_SIZE, false).unwrap();
        assert_eq!(t.dirty.ones().len(), 10);
        // Still attached (clean=false on disk): a crash now must not be trusted.
        drop(t);
        let t = Tracker::open(&p, 10 * CHUNK_SIZE, false).unwrap();
        assert_eq!(t.dirty.ones().len(), 10);
    }

    #[test]
    fn clean_detach_keeps_only_changed_chunks() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("v.cbt");
        let t = Tracker::open(&p, 10 * CHUNK_SIZE, false).unwrap();
        let (cap, _) = t.start_capture(false, Box::new(|_, _| Ok(None)));
        t.end_capture(&cap, Some("snap-1"));
        drop(t.begin_write(3 * CHUNK_SIZE + 5, 10, |_, _| Ok(())));
        t.persist(true).unwrap();
        let t2 = Tracker::open(&p, 10 * CHUNK_SIZE, false).unwrap();
        assert_eq!(t2.dirty.ones(), vec![3]);
        assert_eq!(t2.base().as_deref(), Some("snap-1"));
    }

    #[test]
    fn writer_saves_old_bytes_before_overwriting_a_needed_chunk() {
        let d = tempfile::tempdir().unwrap();
        let t = Tracker::open(&d.path().join("v.cbt"), 4 * CHUNK_SIZE, false).unwrap();
        let saved = Arc::new(Mutex::new(Vec::new()));
        let s2 = saved.clone();
        let (cap, _) = t.start_capture(
            true,
            Box::new(move |i, b| {
                s2.lock().unwrap().push((i, b[0]));
                Ok(Some(format!("c{i}")))
            }),
        );
        // A write to chunk 2 saves the old contents (byte 7) first.
        drop(t.begin_write(2 * CHUNK_SIZE, 1, |_, b| {
            b.push(7);
            Ok(())
        }));
        for c in cap.chunks() {
            cap.save(c, |_, b| {
                b.push(9);
                Ok(())
            });
        }
        t.end_capture(&cap, Some("s"));
        let got = cap.finish().unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(
            saved
                .lock()
                .unwrap()
                .iter()
                .find(|(i, _)| *i == 2)
                .unwrap()
                .1,
            7,
            "chunk 2 saved once, before the write"
        );
        assert_eq!(saved.lock().unwrap().len(), 4);
        // The write after the barrier is tracked for the next snapshot.
        assert_eq!(t.dirty.ones(), vec![2]);
    }
}
