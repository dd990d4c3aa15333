//! Chunk stores: where snapshot data lives, addressed by content.
//!
//! A chunk is the stored (for encrypted volumes: encrypted) bytes of one
//! 512 KiB piece of a volume, named by its SHA-256. Equal chunks are stored
//! once, whichever snapshot made them. The store is a trait so an object
//! store can replace the local directory later.
//!
//! The local store keeps chunks in pack files rather than one file per
//! chunk: a 1 GiB snapshot is a few sequential 64 MiB writes instead of
//! 2048 file creations, which is what lets snapshot create and restore run
//! at disk-copy speed (inode allocation dominated the per-file layout).
//!
//! ```text
//! chunks/packs/<id>.pack   chunk bytes, back to back
//! chunks/packs/<id>.idx    "cryptvol-pack-index 1\n" then "<sha256> <offset> <length>\n"
//!                          per chunk; written atomically when the pack is sealed
//! ```
//!
//! A chunk exists once an index names it; a pack without an index is an
//! interrupted write, removed by the next collection. Every read checks the
//! chunk's bytes against its name, so a damaged pack or index is reported
//! as an altered chunk, never returned as data.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use sha2::{Digest, Sha256};

/// First line of every pack index.
const INDEX_MAGIC: &str = "cryptvol-pack-index 1";
/// A pack is sealed (made durable and indexed) once it holds this much, so
/// an interrupted copy keeps most of its work and syncs are spread out.
const PACK_SEAL_BYTES: u64 = 64 << 20;
/// Collection rewrites a pack once less than this share of it is live.
const COMPACT_BELOW_LIVE: f64 = 0.5;

/// A chunk store failure, naming the chunk.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk {0} is missing from the snapshot store")]
    Missing(String),
    #[error("chunk {0} was altered: its contents no longer match its hash")]
    Corrupt(String),
    #[error("chunk store I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pack index {path} is damaged at line {line}: {what}; run `cryptvol snapshot gc` after checking the disk")]
    BadIndex {
        path: PathBuf,
        line: usize,
        what: &'static str,
    },
}

/// BLAKE3 of `data`, lowercase hex: a chunk's name (manifest format 2).
/// BLAKE3 rather than SHA-256 because every byte of a snapshot and of a
/// restore is hashed: 4.1 GB/s per core here against 1.6 GB/s for SHA-256
/// with SHA-NI, which kept full snapshots and restores below disk-copy speed.
pub fn chunk_hash(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

/// True if `name` names `data`: its BLAKE3, or its SHA-256 for chunks
/// stored by format-1 builds (still referenced by their manifests, and by
/// later incremental snapshots that kept those chunks). Either way the
/// name is a preimage-resistant digest bound by the authenticated manifest.
pub fn names(name: &str, data: &[u8]) -> bool {
    chunk_hash(data) == name || hex::encode(Sha256::digest(data)) == name
}

/// What a collection of unreferenced chunks did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retained {
    /// Chunks dropped (no longer stored anywhere).
    pub chunks_removed: u64,
    /// Bytes of storage given back.
    pub bytes_freed: u64,
}

/// Storage of immutable, content-addressed chunks.
pub trait ChunkStore: Send + Sync + std::fmt::Debug {
    /// Re-reads what is stored. Writers call it after taking the snapshot
    /// store's gc lock, so chunks a collection removed since are not
    /// mistaken for present.
    fn refresh(&self) -> Result<(), ChunkError>;
    /// Stores `data` under `hash` unless present. Returns whether it was new.
    /// Not durable until [`ChunkStore::sync`].
    fn put(&self, hash: &str, data: &[u8]) -> Result<bool, ChunkError>;
    /// Reads a chunk and checks it against its hash.
    fn get(&self, hash: &str) -> Result<Vec<u8>, ChunkError>;
    /// Like [`ChunkStore::put`], but never waits on the disk: a pack this
    /// fills is left for [`ChunkStore::seal_full`] or `sync` to make durable.
    /// For copy-on-write in a client's write path, whose latency the client
    /// sees (sealing syncs 64 MiB: a stall of hundreds of milliseconds).
    fn put_deferred(&self, hash: &str, data: &[u8]) -> Result<bool, ChunkError>;
    /// Makes the packs `put_deferred` filled durable.
    fn seal_full(&self) -> Result<(), ChunkError>;
    /// Makes every `put` and `put_deferred` so far durable.
    fn sync(&self) -> Result<(), ChunkError>;
    /// Drops every chunk not in `live`, and the leftovers of interrupted
    /// writes. Only while no writer runs (the caller holds the gc lock).
    fn retain(&self, live: &HashSet<String>) -> Result<Retained, ChunkError>;
}

/// Where a stored chunk is.
#[derive(Debug, Clone)]
struct Loc {
    pack: Arc<str>,
    offset: u64,
    len: u64,
}

/// One line of a pack index: a chunk and where it is in its pack.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    hash: String,
    offset: u64,
    len: u64,
}

/// A pack's id and what its index lists.
type PackIndex = (Arc<str>, Vec<Entry>);

/// A pack being written by one worker at a time.
#[derive(Debug)]
struct OpenPack {
    id: Arc<str>,
    file: File,
    len: u64,
    entries: Vec<Entry>,
}

#[derive(Debug, Default)]
struct State {
    /// Chunks in sealed packs (what the indexes say).
    sealed: HashMap<String, Loc>,
    /// Chunks written (or being written) into packs not sealed yet.
    unsealed: HashMap<String, Loc>,
    loaded: bool,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    state: RwLock<State>,
    /// Open packs not in use by a worker; a worker takes one (or opens a
    /// new one), so parallel workers append to different files.
    idle: Mutex<Vec<OpenPack>>,
    /// Packs that `put_deferred` filled, waiting to be sealed.
    full: Mutex<Vec<OpenPack>>,
}

/// Chunks in pack files under one directory (see the module docs). Clones
/// share their state.
#[derive(Debug, Clone)]
pub struct LocalChunkStore {
    inner: Arc<Inner>,
}

impl LocalChunkStore {
    pub fn new(dir: &Path) -> Self {
        LocalChunkStore {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                state: RwLock::new(State::default()),
                idle: Mutex::new(Vec::new()),
                full: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The chunk store of a snapshot store, as an owned value (for closures
    /// that outlive a borrow); it shares the store's state.
    pub fn clone_of(store: &super::SnapshotStore) -> Self {
        store.local_chunks().clone()
    }

    fn packs_dir(&self) -> PathBuf {
        self.inner.dir.join("packs")
    }

    fn pack_path(&self, id: &str) -> PathBuf {
        self.packs_dir().join(format!("{id}.pack"))
    }

    fn index_path(&self, id: &str) -> PathBuf {
        self.packs_dir().join(format!("{id}.idx"))
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ChunkError + '_ {
        move |source| ChunkError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.inner.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Every sealed pack: its id and index entries, in id order.
    fn read_indexes(&self) -> Result<Vec<PackIndex>, ChunkError> {
        let dir = self.packs_dir();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(ChunkError::Io {
                    path: dir,
                    source: e,
                })
            }
        };
        let mut ids: Vec<String> = rd
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".idx").map(str::to_string)
            })
            .collect();
        ids.sort();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let path = self.index_path(&id);
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                // Removed by a collection since the listing: not stored.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ChunkError::Io { path, source: e }),
            };
            let entries = parse_index(&text).map_err(|(line, what)| ChunkError::BadIndex {
                path: path.clone(),
                line,
                what,
            })?;
            out.push((Arc::from(id.as_str()), entries));
        }
        Ok(out)
    }

    fn ensure_loaded(&self) -> Result<(), ChunkError> {
        if self.read_state().loaded {
            return Ok(());
        }
        self.refresh()
    }

    /// Takes an idle open pack, or starts a new one.
    fn take_pack(&self) -> Result<OpenPack, ChunkError> {
        if let Some(p) = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
        {
            return Ok(p);
        }
        let dir = self.packs_dir();
        crate::fsutil::create_private_dir_all(&dir).map_err(|e| ChunkError::Io {
            path: e.path.clone(),
            source: e.io,
        })?;
        let id: Arc<str> = Arc::from(uuid::Uuid::new_v4().simple().to_string().as_str());
        let path = self.pack_path(&id);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(Self::io(&path))?;
        Ok(OpenPack {
            id,
            file,
            len: 0,
            entries: Vec::new(),
        })
    }

    /// Makes `pack` durable and indexed: its chunks now exist.
    fn seal(&self, pack: OpenPack) -> Result<(), ChunkError> {
        if pack.entries.is_empty() {
            // Nothing in it (every put failed); leave no file behind.
            drop(pack.file);
            let _ = std::fs::remove_file(self.pack_path(&pack.id));
            return Ok(());
        }
        let path = self.pack_path(&pack.id);
        pack.file.sync_data().map_err(Self::io(&path))?;
        let idx = self.index_path(&pack.id);
        crate::fsutil::write_atomic(&idx, encode_index(&pack.entries).as_bytes()).map_err(|e| {
            ChunkError::Io {
                path: e.path.clone(),
                source: e.io,
            }
        })?;
        let mut st = self.write_state();
        for Entry { hash, offset, len } in pack.entries {
            st.unsealed.remove(&hash);
            let loc = Loc {
                pack: pack.id.clone(),
                offset,
                len,
            };
            st.sealed.insert(hash, loc);
        }
        Ok(())
    }

    /// Seals `packs`, all of them even after a failure; the first error.
    fn seal_all(&self, packs: Vec<OpenPack>) -> Result<(), ChunkError> {
        let mut first_err = None;
        for p in packs {
            if let Err(e) = self.seal(p) {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// `put`, sealing a pack it fills now or (`defer`) later.
    fn put_inner(&self, hash: &str, data: &[u8], defer: bool) -> Result<bool, ChunkError> {
        self.ensure_loaded()?;
        {
            // Reserve the name, so two workers with equal chunks write once.
            let mut st = self.write_state();
            if st.sealed.contains_key(hash) || st.unsealed.contains_key(hash) {
                return Ok(false);
            }
            let placeholder = Loc {
                pack: Arc::from(""),
                offset: 0,
                len: 0,
            };
            st.unsealed.insert(hash.to_string(), placeholder);
        }
        if let Err(e) = self.append(hash, data, defer) {
            self.write_state().unsealed.remove(hash);
            return Err(e);
        }
        Ok(true)
    }

    /// Appends `data` to a pack as chunk `hash` (already reserved). A pack
    /// this fills is sealed now, or queued for `seal_full` with `defer`.
    fn append(&self, hash: &str, data: &[u8], defer: bool) -> Result<(), ChunkError> {
        let mut pack = self.take_pack()?;
        let offset = pack.len;
        if let Err(e) = pack.file.write_all(data) {
            let path = self.pack_path(&pack.id);
            // The pack's tail is unknown now: seal what it had, drop the rest.
            let _ = pack.file.set_len(offset);
            let _ = self.seal(pack);
            return Err(ChunkError::Io { path, source: e });
        }
        let len = data.len() as u64;
        pack.len += len;
        pack.entries.push(Entry {
            hash: hash.to_string(),
            offset,
            len,
        });
        self.write_state().unsealed.insert(
            hash.to_string(),
            Loc {
                pack: pack.id.clone(),
                offset,
                len,
            },
        );
        if pack.len >= PACK_SEAL_BYTES && defer {
            self.inner
                .full
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(pack);
            Ok(())
        } else if pack.len >= PACK_SEAL_BYTES {
            self.seal(pack)
        } else {
            self.inner
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(pack);
            Ok(())
        }
    }

    fn read_at(&self, hash: &str, loc: &Loc) -> Result<Vec<u8>, ChunkError> {
        let path = self.pack_path(&loc.pack);
        let f = File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ChunkError::Missing(hash.to_string()),
            _ => ChunkError::Io {
                path: path.clone(),
                source: e,
            },
        })?;
        let len = usize::try_from(loc.len).map_err(|_| ChunkError::Corrupt(hash.to_string()))?;
        let mut data = vec![0u8; len];
        match f.read_exact_at(&mut data, loc.offset) {
            Ok(()) => Ok(data),
            // The index points past the end of its pack.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(ChunkError::Corrupt(hash.to_string()))
            }
            Err(e) => Err(ChunkError::Io { path, source: e }),
        }
    }

    fn lookup(&self, hash: &str) -> Option<Loc> {
        let st = self.read_state();
        st.sealed
            .get(hash)
            .or_else(|| st.unsealed.get(hash))
            .cloned()
    }

    /// Rewrites the live chunks of pack `id` into new packs.
    fn compact(&self, id: &str, live: &[Entry]) -> Result<(), ChunkError> {
        for Entry { hash, offset, len } in live {
            let loc = Loc {
                pack: Arc::from(id),
                offset: *offset,
                len: *len,
            };
            let data = self.read_at(hash, &loc)?;
            if !names(hash, &data) {
                // Keep a damaged chunk where it is; restores report it.
                return Err(ChunkError::Corrupt(hash.clone()));
            }
            self.append(hash, &data, false)?;
        }
        self.sync()
    }

    fn remove_pack(&self, id: &str) -> Result<(), ChunkError> {
        // Index first: a crash in between leaves an unindexed pack, which
        // is garbage the next collection removes.
        for path in [self.index_path(id), self.pack_path(id)] {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(ChunkError::Io { path, source: e })
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl ChunkStore for LocalChunkStore {
    fn refresh(&self) -> Result<(), ChunkError> {
        let indexes = self.read_indexes()?;
        let mut st = self.write_state();
        st.sealed.clear();
        for (id, entries) in indexes {
            for Entry { hash, offset, len } in entries {
                st.sealed.entry(hash).or_insert(Loc {
                    pack: id.clone(),
                    offset,
                    len,
                });
            }
        }
        st.loaded = true;
        Ok(())
    }

    fn put(&self, hash: &str, data: &[u8]) -> Result<bool, ChunkError> {
        self.put_inner(hash, data, false)
    }

    fn put_deferred(&self, hash: &str, data: &[u8]) -> Result<bool, ChunkError> {
        self.put_inner(hash, data, true)
    }

    fn seal_full(&self) -> Result<(), ChunkError> {
        let packs = std::mem::take(&mut *self.inner.full.lock().unwrap_or_else(|e| e.into_inner()));
        self.seal_all(packs)
    }

    fn get(&self, hash: &str) -> Result<Vec<u8>, ChunkError> {
        self.ensure_loaded()?;
        let first = match self.lookup(hash) {
            Some(loc) if !loc.pack.is_empty() => self.read_at(hash, &loc),
            _ => Err(ChunkError::Missing(hash.to_string())),
        };
        let data = match first {
            Ok(d) => d,
            // A collection may have moved it since we looked: look again.
            Err(ChunkError::Missing(_)) => {
                self.refresh()?;
                match self.lookup(hash) {
                    Some(loc) if !loc.pack.is_empty() => self.read_at(hash, &loc)?,
                    _ => return Err(ChunkError::Missing(hash.to_string())),
                }
            }
            Err(e) => return Err(e),
        };
        if !names(hash, &data) {
            return Err(ChunkError::Corrupt(hash.to_string()));
        }
        Ok(data)
    }

    fn sync(&self) -> Result<(), ChunkError> {
        let mut packs =
            std::mem::take(&mut *self.inner.full.lock().unwrap_or_else(|e| e.into_inner()));
        packs.append(&mut std::mem::take(
            &mut *self.inner.idle.lock().unwrap_or_else(|e| e.into_inner()),
        ));
        self.seal_all(packs)
    }

    fn retain(&self, live: &HashSet<String>) -> Result<Retained, ChunkError> {
        let mut done = Retained::default();
        let indexes = self.read_indexes()?;
        let indexed: HashSet<&str> = indexes.iter().map(|(id, _)| &**id).collect();
        // Packs without an index: interrupted writes (no writer runs now).
        let dir = self.packs_dir();
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let orphan = match name.strip_suffix(".pack") {
                    Some(id) => !indexed.contains(id),
                    None => name.starts_with('.'), // a temporary index
                };
                if orphan {
                    done.bytes_freed += e.metadata().map(|m| m.len()).unwrap_or(0);
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        // A chunk counts once: in the first pack (by id) that has it.
        let mut kept: HashSet<&str> = HashSet::new();
        let mut compacted = Vec::new();
        for (id, entries) in &indexes {
            let total: u64 = entries.iter().map(|e| e.len).sum();
            let keep: Vec<Entry> = entries
                .iter()
                .filter(|e| live.contains(&e.hash) && kept.insert(e.hash.as_str()))
                .cloned()
                .collect();
            let live_bytes: u64 = keep.iter().map(|e| e.len).sum();
            let dropped = (entries.len() - keep.len()) as u64;
            if keep.is_empty() {
                self.remove_pack(id)?;
            } else if (live_bytes as f64) < COMPACT_BELOW_LIVE * total as f64 {
                compacted.push((id.clone(), keep));
            } else {
                continue; // mostly live: leave it, dead bytes and all
            }
            done.chunks_removed += dropped;
            done.bytes_freed += total - live_bytes.min(total);
        }
        // Rewrite live chunks first (durably), then drop the old packs.
        for (id, keep) in &compacted {
            self.compact(id, keep)?;
            self.remove_pack(id)?;
        }
        if done.chunks_removed > 0 || !compacted.is_empty() {
            crate::fsutil::sync_dir(&dir).map_err(|e| ChunkError::Io {
                path: e.path.clone(),
                source: e.io,
            })?;
        }
        self.refresh()?;
        Ok(done)
    }
}

/// The text of a pack index.
fn encode_index(entries: &[Entry]) -> String {
    let mut s = String::with_capacity(INDEX_MAGIC.len() + 1 + entries.len() * 90);
    s.push_str(INDEX_MAGIC);
    s.push('\n');
    for Entry { hash, offset, len } in entries {
        s.push_str(&format!("{hash} {offset} {len}\n"));
    }
    s
}

/// Parses a pack index; an error names the 1-based line and what is wrong.
fn parse_index(text: &str) -> Result<Vec<Entry>, (usize, &'static str)> {
    let mut lines = text.split_terminator('\n');
    if lines.next() != Some(INDEX_MAGIC) {
        return Err((1, "not a cryptvol pack index (version 1)"));
    }
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let n = i + 2;
        let mut f = line.split(' ');
        let (Some(hash), Some(offset), Some(len), None) = (f.next(), f.next(), f.next(), f.next())
        else {
            return Err((n, "expected three fields: hash offset length"));
        };
        let hex_ok = hash.len() == 64
            && hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex_ok {
            return Err((n, "the hash is not 64 lowercase hex digits"));
        }
        let (Ok(offset), Ok(len)) = (offset.parse::<u64>(), len.parse::<u64>()) else {
            return Err((n, "offset or length is not a number"));
        };
        if offset.checked_add(len).is_none() {
            return Err((n, "offset + length overflows"));
        }
        out.push(Entry {
            hash: hash.to_string(),
            offset,
            len,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(seed: u8, len: usize) -> (String, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
        (chunk_hash(&data), data)
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.join("packs"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn put_dedupes_get_verifies_and_survives_reopen() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalChunkStore::new(d.path());
        let (h, data) = chunk(3, 1000);
        assert!(s.put(&h, &data).unwrap());
        assert!(!s.put(&h, &data).unwrap());
        // Readable before and after sealing, and from a fresh store.
        assert_eq!(s.get(&h).unwrap(), data);
        s.sync().unwrap();
        let again = LocalChunkStore::new(d.path());
        assert_eq!(again.get(&h).unwrap(), data);
        assert!(!again.put(&h, &data).unwrap());
        let (missing, _) = chunk(5, 10);
        assert!(matches!(again.get(&missing), Err(ChunkError::Missing(_))));
        assert_eq!(files(d.path()).len(), 2, "one pack and its index");
    }

    #[test]
    fn chunks_are_named_by_blake3_and_sha256_names_still_verify() {
        // BLAKE3 test vector for "abc".
        assert_eq!(
            chunk_hash(b"abc"),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        let sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert!(names(sha, b"abc") && names(&chunk_hash(b"abc"), b"abc"));
        assert!(!names(sha, b"abd"));
        // A chunk a format-1 build stored under its SHA-256 name.
        let d = tempfile::tempdir().unwrap();
        let s = LocalChunkStore::new(d.path());
        let data = vec![5u8; 4096];
        let old_name = hex::encode(Sha256::digest(&data));
        s.put(&old_name, &data).unwrap();
        s.sync().unwrap();
        assert_eq!(LocalChunkStore::new(d.path()).get(&old_name).unwrap(), data);
    }

    #[test]
    fn an_altered_pack_is_reported_as_an_altered_chunk() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalChunkStore::new(d.path());
        let (h, data) = chunk(7, 4096);
        s.put(&h, &data).unwrap();
        s.sync().unwrap();
        let pack = files(d.path())
            .into_iter()
            .find(|f| f.ends_with(".pack"))
            .unwrap();
        let path = d.path().join("packs").join(pack);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[100] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let fresh = LocalChunkStore::new(d.path());
        assert!(matches!(fresh.get(&h), Err(ChunkError::Corrupt(_))));
        // Truncated: the index points past the end.
        std::fs::write(&path, &bytes[..10]).unwrap();
        assert!(matches!(fresh.get(&h), Err(ChunkError::Corrupt(_))));
    }

    #[test]
    fn unsealed_packs_do_not_exist_and_are_collected() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalChunkStore::new(d.path());
        let (h, data) = chunk(9, 2048);
        s.put(&h, &data).unwrap();
        // Not synced: a crash now means the chunk was never stored.
        let other = LocalChunkStore::new(d.path());
        assert!(matches!(other.get(&h), Err(ChunkError::Missing(_))));
        let r = other.retain(&HashSet::new()).unwrap();
        assert_eq!(r.bytes_freed, 2048);
        assert!(files(d.path()).is_empty(), "{:?}", files(d.path()));
    }

    #[test]
    fn retain_drops_dead_packs_and_compacts_mostly_dead_ones() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalChunkStore::new(d.path());
        let chunks: Vec<_> = (1..=4).map(|i| chunk(i, 10_000)).collect();
        for (h, data) in &chunks {
            s.put(h, data).unwrap();
        }
        s.sync().unwrap();
        // One of four live: the pack is rewritten around it.
        let live: HashSet<String> = [chunks[2].0.clone()].into();
        let r = s.retain(&live).unwrap();
        assert_eq!(r.chunks_removed, 3);
        let fresh = LocalChunkStore::new(d.path());
        assert_eq!(fresh.get(&chunks[2].0).unwrap(), chunks[2].1);
        assert!(matches!(
            fresh.get(&chunks[0].0),
            Err(ChunkError::Missing(_))
        ));
        let pack = files(d.path())
            .into_iter()
            .find(|f| f.ends_with(".pack"))
            .unwrap();
        let len = std::fs::metadata(d.path().join("packs").join(pack))
            .unwrap()
            .len();
        assert_eq!(len, 10_000, "only the live chunk is left");
        // Nothing live: nothing left.
        let r = fresh.retain(&HashSet::new()).unwrap();
        assert_eq!(r.chunks_removed, 1);
        assert!(files(d.path()).is_empty());
    }

    #[test]
    fn index_golden_and_damage() {
        let h = "ab".repeat(32);
        let e = |offset, len| Entry {
            hash: h.clone(),
            offset,
            len,
        };
        let text = encode_index(&[e(0, 524288), e(524288, 4096)]);
        assert_eq!(
            text,
            format!("cryptvol-pack-index 1\n{h} 0 524288\n{h} 524288 4096\n")
        );
        assert_eq!(parse_index(&text).unwrap().len(), 2);
        assert_eq!(parse_index("").unwrap_err().0, 1);
        let bad = format!("{INDEX_MAGIC}\n{h} 0\n");
        assert_eq!(parse_index(&bad).unwrap_err().0, 2);
        let bad = format!("{INDEX_MAGIC}\n{} 0 1\n", "AB".repeat(32));
        assert_eq!(parse_index(&bad).unwrap_err().0, 2);
        let bad = format!("{INDEX_MAGIC}\n{h} {} 2\n", u64::MAX);
        assert_eq!(
            parse_index(&bad).unwrap_err().1,
            "offset + length overflows"
        );
    }

    /// Snapshot-sized chunks.
    const CHUNK: u64 = 512 * 1024;

    /// `n` different chunks of [`CHUNK`] bytes, with their names.
    fn distinct_chunks(n: usize) -> Vec<(String, Vec<u8>)> {
        (0..n)
            .map(|i| {
                let mut data = vec![0u8; CHUNK as usize];
                data[..8].copy_from_slice(&(i as u64).to_le_bytes());
                (chunk_hash(&data), data)
            })
            .collect()
    }

    #[test]
    fn parallel_puts_fill_separate_packs_and_seal_at_the_threshold() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalChunkStore::new(d.path());
        let n = (PACK_SEAL_BYTES / CHUNK) as usize * 2 + 3;
        let chunks = distinct_chunks(n);
        std::thread::scope(|sc| {
            for part in chunks.chunks(n / 2 + 1) {
                let s = &s;
                sc.spawn(move || {
                    for (h, data) in part {
                        assert!(s.put(h, data).unwrap());
                    }
                });
            }
        });
        s.sync().unwrap();
        let fresh = LocalChunkStore::new(d.path());
        for (h, data) in &chunks {
            assert_eq!(&fresh.get(h).unwrap(), data);
        }
        let packs = files(d.path())
            .iter()
            .filter(|f| f.ends_with(".pack"))
            .count();
        assert!(packs >= 3, "{packs} packs for {n} chunks");
    }

    #[test]
    fn deferred_puts_leave_full_packs_for_seal_full() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalChunkStore::new(d.path());
        let n = (PACK_SEAL_BYTES / CHUNK) as usize + 1;
        let chunks = distinct_chunks(n);
        let indexes = || {
            files(d.path())
                .iter()
                .filter(|f| f.ends_with(".idx"))
                .count()
        };
        for (h, data) in &chunks {
            assert!(s.put_deferred(h, data).unwrap());
        }
        // The first pack is full, but nothing was synced in the put path.
        assert_eq!(indexes(), 0);
        assert_eq!(s.inner.full.lock().unwrap().len(), 1);
        // Still readable before it is sealed.
        assert_eq!(s.get(&chunks[0].0).unwrap(), chunks[0].1);
        s.seal_full().unwrap();
        assert_eq!(indexes(), 1, "the full pack is sealed");
        s.sync().unwrap();
        assert_eq!(indexes(), 2, "and the partial one at sync");
        let fresh = LocalChunkStore::new(d.path());
        for (h, data) in &chunks {
            assert_eq!(&fresh.get(h).unwrap(), data);
        }
    }
}
