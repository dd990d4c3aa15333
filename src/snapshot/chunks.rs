//! Chunk stores: where snapshot data lives, addressed by content.
//!
//! A chunk is the stored (for encrypted volumes: encrypted) bytes of one
//! 512 KiB piece of a volume, named by its SHA-256. Equal chunks are stored
//! once, whichever snapshot made them. The store is a trait so an object
//! store can replace the local directory later.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

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
}

/// SHA-256 of `data`, lowercase hex: a chunk's name.
pub fn chunk_hash(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Storage of immutable, content-addressed chunks.
pub trait ChunkStore: Send + Sync + std::fmt::Debug {
    /// Stores `data` under `hash` unless present. Returns whether it was new.
    /// Not durable until [`ChunkStore::sync`].
    fn put(&self, hash: &str, data: &[u8]) -> Result<bool, ChunkError>;
    /// Reads a chunk and checks it against its hash.
    fn get(&self, hash: &str) -> Result<Vec<u8>, ChunkError>;
    fn delete(&self, hash: &str) -> Result<(), ChunkError>;
    /// Every stored chunk's hash.
    fn list(&self) -> Result<Vec<String>, ChunkError>;
    /// Makes every `put` so far durable.
    fn sync(&self) -> Result<(), ChunkError>;
}

/// Chunks as files `DIR/ab/abcdef…` (256 fan-out directories).
#[derive(Debug, Clone)]
pub struct LocalChunkStore {
    dir: PathBuf,
}

impl LocalChunkStore {
    pub fn new(dir: &Path) -> Self {
        LocalChunkStore {
            dir: dir.to_path_buf(),
        }
    }

    /// The chunk store of a snapshot store, as an owned value (for closures
    /// that outlive a borrow).
    pub fn clone_of(store: &super::SnapshotStore) -> Self {
        store.local_chunks().clone()
    }

    fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(&hash[..2.min(hash.len())]).join(hash)
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ChunkError + '_ {
        move |source| ChunkError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl ChunkStore for LocalChunkStore {
    fn put(&self, hash: &str, data: &[u8]) -> Result<bool, ChunkError> {
        let path = self.path(hash);
        if path.exists() {
            return Ok(false);
        }
        let parent = path.parent().unwrap_or(&self.dir);
        crate::fsutil::create_private_dir_all(parent).map_err(|e| ChunkError::Io {
            path: e.path.clone(),
            source: e.io,
        })?;
        // Write under a unique temporary name, then rename: a reader never
        // sees a partial chunk, and two writers of the same chunk both win.
        let tmp = parent.join(format!(".{hash}.{}.tmp", uuid::Uuid::new_v4().simple()));
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(Self::io(&tmp))?;
            std::io::Write::write_all(&mut f, data).map_err(Self::io(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(Self::io(&path))?;
        Ok(true)
    }

    fn get(&self, hash: &str) -> Result<Vec<u8>, ChunkError> {
        let path = self.path(hash);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ChunkError::Missing(hash.to_string()))
            }
            Err(e) => return Err(ChunkError::Io { path, source: e }),
        };
        if chunk_hash(&data) != hash {
            return Err(ChunkError::Corrupt(hash.to_string()));
        }
        Ok(data)
    }

    fn delete(&self, hash: &str) -> Result<(), ChunkError> {
        let path = self.path(hash);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(ChunkError::Io { path, source: e })
            }
            _ => Ok(()),
        }
    }

    fn list(&self) -> Result<Vec<String>, ChunkError> {
        let mut out = Vec::new();
        let top = match std::fs::read_dir(&self.dir) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => {
                return Err(ChunkError::Io {
                    path: self.dir.clone(),
                    source: e,
                })
            }
        };
        for d in top.flatten() {
            let sub = d.path();
            if !sub.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(&sub).map_err(Self::io(&sub))?.flatten() {
                let name = f.file_name().to_string_lossy().to_string();
                if name.starts_with('.') {
                    // A temporary left by a crash: not a chunk, remove it.
                    let _ = std::fs::remove_file(f.path());
                    continue;
                }
                out.push(name);
            }
        }
        Ok(out)
    }

    fn sync(&self) -> Result<(), ChunkError> {
        if !self.dir.exists() {
            return Ok(());
        }
        let d = std::fs::File::open(&self.dir).map_err(Self::io(&self.dir))?;
        // One syncfs instead of an fsync per chunk file and directory.
        rustix::fs::syncfs(&d).map_err(|e| ChunkError::Io {
            path: self.dir.clone(),
            source: e.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_dedupes_get_verifies_list_and_delete() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalChunkStore::new(d.path());
        let data = vec![42u8; 1000];
        let h = chunk_hash(&data);
        assert!(s.put(&h, &data).unwrap());
        assert!(!s.put(&h, &data).unwrap());
        assert_eq!(s.get(&h).unwrap(), data);
        assert_eq!(s.list().unwrap(), vec![h.clone()]);
        std::fs::write(s.path(&h), b"evil").unwrap();
        assert!(matches!(s.get(&h), Err(ChunkError::Corrupt(_))));
        s.delete(&h).unwrap();
        assert!(matches!(s.get(&h), Err(ChunkError::Missing(_))));
        s.sync().unwrap();
    }
}
