//! Snapshots: point-in-time, incremental, content-addressed, authenticated.
//!
//! - [`manifest`]: the manifest format (what a snapshot holds, MACed).
//! - [`chunks`]: the chunk store trait and the local directory store.
//! - [`create`]: taking a snapshot of an attached volume (while it is served).
//! - [`restore`]: a new volume from a snapshot (same key, or re-encrypted).
//! - [`control`]: the control socket through which `snapshot create` asks
//!   the serving process to snapshot a volume it has attached.
//! - this module: the per-region store layout, listing, deletion and
//!   garbage collection.
//!
//! Layout: `<data_dir>/regions/<region>/snapshots/` holds `manifests/` (one
//! `<snap-id>.manifest` per completed snapshot, written atomically last;
//! `<snap-id>.pending` while one is being taken, locked by its creator),
//! `chunks/` (the chunk store) and `gc.lock` (creators hold it shared, the
//! garbage collector exclusively, so a chunk a running snapshot relies on is
//! never collected under it).

pub mod chunks;
pub mod control;
pub mod copy;
pub mod create;
pub mod manifest;
pub mod restore;

use std::path::{Path, PathBuf};

use chunks::{ChunkError, ChunkStore, LocalChunkStore};
use manifest::{Manifest, ManifestError, State};

use crate::fsutil::{FileLock, FsError};

/// `snap-` followed by 17 lowercase hex digits, as EBS snapshot ids.
pub fn is_snapshot_id(s: &str) -> bool {
    s.len() == 22
        && s.starts_with("snap-")
        && s[5..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub(crate) fn new_snapshot_id() -> String {
    let mut b = [0u8; 9];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    format!("snap-{}", &hex::encode(b)[..17])
}

pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Everything that can go wrong with snapshots.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no snapshot {0} in region {1}; `cryptvol snapshot list` shows what exists")]
    NotFound(String, String),
    #[error("snapshot {0} is {1}, not completed: it cannot be restored")]
    NotCompleted(String, String),
    #[error("snapshot {id}: {source}")]
    Manifest { id: String, source: ManifestError },
    #[error("snapshot {id}: {source}")]
    Chunk { id: String, source: ChunkError },
    #[error(transparent)]
    ChunkStore(#[from] ChunkError),
    #[error(transparent)]
    Volume(#[from] crate::volume::Error),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("snapshot {id}: the KMS refused to {action}: {source}")]
    Kms {
        id: String,
        action: &'static str,
        source: crate::kms::KmsError,
    },
    #[error("snapshot of {volume} failed: {reason}")]
    Capture { volume: String, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("talking to the process serving {volume}: {reason}")]
    Control { volume: String, reason: String },
}

/// A snapshot as `list` and `describe` show it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SnapshotInfo {
    pub snapshot_id: String,
    pub volume_id: String,
    pub volume_name: String,
    pub state: State,
    /// Why a snapshot is in the error state.
    pub state_message: Option<String>,
    pub description: String,
    pub size: u64,
    pub encrypted: bool,
    pub kms_key_arn: Option<String>,
    pub region: String,
    pub parent_snapshot: Option<String>,
    pub start_time: String,
    pub completion_time: Option<String>,
    pub chunks: usize,
    pub bytes_added: u64,
    pub data_bytes: u64,
    pub write_pause_us: u64,
}

impl SnapshotInfo {
    fn from_manifest(m: &Manifest) -> Self {
        SnapshotInfo {
            snapshot_id: m.snapshot_id.clone(),
            volume_id: m.volume_id.clone(),
            volume_name: m.volume_name.clone(),
            state: m.state,
            state_message: None,
            description: m.description.clone(),
            size: m.size,
            encrypted: m.encrypted,
            kms_key_arn: m.kms_key_arn.clone(),
            region: m.region.clone(),
            parent_snapshot: m.parent_snapshot.clone(),
            start_time: m.start_time.clone(),
            completion_time: Some(m.completion_time.clone()),
            chunks: m.chunks.len(),
            bytes_added: m.bytes_added,
            data_bytes: m.data_bytes,
            write_pause_us: m.write_pause_us,
        }
    }
}

/// The marker of a snapshot being taken (`<id>.pending`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct PendingMarker {
    pub snapshot_id: String,
    pub volume_id: String,
    pub volume_name: String,
    pub description: String,
    pub start_time: String,
    pub size: u64,
    pub encrypted: bool,
    /// For a re-encrypting copy: the source snapshot, the destination key
    /// and the new wrapped data key, so an interrupted copy can resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_of: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapped_data_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_context: Option<std::collections::BTreeMap<String, String>>,
}

/// The snapshots of one region.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
    region: String,
    chunks: LocalChunkStore,
}

impl SnapshotStore {
    pub fn new(data_dir: &Path, region: &str) -> Self {
        let dir = data_dir.join("regions").join(region).join("snapshots");
        let chunks = LocalChunkStore::new(&dir.join("chunks"));
        SnapshotStore {
            dir,
            region: region.to_string(),
            chunks,
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn chunks(&self) -> &dyn ChunkStore {
        &self.chunks
    }

    pub(crate) fn local_chunks(&self) -> &LocalChunkStore {
        &self.chunks
    }

    fn manifests_dir(&self) -> PathBuf {
        self.dir.join("manifests")
    }

    pub(crate) fn manifest_path(&self, id: &str) -> PathBuf {
        self.manifests_dir().join(format!("{id}.manifest"))
    }

    pub(crate) fn pending_path(&self, id: &str) -> PathBuf {
        self.manifests_dir().join(format!("{id}.pending"))
    }

    pub(crate) fn ensure_dirs(&self) -> Result<(), Error> {
        crate::fsutil::create_private_dir_all(&self.manifests_dir())?;
        crate::fsutil::create_private_dir_all(&self.dir.join("chunks"))?;
        Ok(())
    }

    /// Held shared by snapshot creators, exclusively by the collector.
    pub(crate) fn gc_lock(&self, exclusive: bool) -> Result<FileLock, Error> {
        self.ensure_dirs()?;
        let p = self.dir.join("gc.lock");
        Ok(if exclusive {
            FileLock::exclusive(&p)?
        } else {
            FileLock::shared(&p)?
        })
    }

    /// Reads a completed snapshot's manifest without authenticating it.
    pub fn load(&self, id: &str) -> Result<(Manifest, Vec<u8>), Error> {
        let p = self.manifest_path(id);
        let bytes = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.pending_path(id).exists() {
                    let state = if pending_is_live(&self.pending_path(id)) {
                        "pending"
                    } else {
                        "error (interrupted)"
                    };
                    return Err(Error::NotCompleted(id.to_string(), state.to_string()));
                }
                return Err(Error::NotFound(id.to_string(), self.region.clone()));
            }
            Err(e) => return Err(Error::Fs(FsError::new("read", &p, e))),
        };
        let m = Manifest::decode_unverified(&bytes).map_err(|source| Error::Manifest {
            id: id.to_string(),
            source,
        })?;
        if m.snapshot_id != id {
            return Err(Error::Manifest {
                id: id.to_string(),
                source: ManifestError::BadMac,
            });
        }
        Ok((m, bytes))
    }

    /// Every snapshot: completed ones, ones being taken, and interrupted ones
    /// (state error), sorted by start time.
    pub fn list(&self) -> Result<Vec<SnapshotInfo>, Error> {
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(self.manifests_dir()) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::Fs(FsError::new("list", &self.manifests_dir(), e))),
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(id) = name.strip_suffix(".manifest") {
                match self.load(id) {
                    Ok((m, _)) => out.push(SnapshotInfo::from_manifest(&m)),
                    Err(err) => {
                        tracing::warn!(snapshot = id, "skipping unreadable manifest: {err}")
                    }
                }
            } else if let Some(id) = name.strip_suffix(".pending") {
                if self.manifest_path(id).exists() {
                    continue; // completed; the marker is about to be removed
                }
                if let Some(m) = std::fs::read(&p)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<PendingMarker>(&b).ok())
                {
                    let live = pending_is_live(&p);
                    out.push(SnapshotInfo {
                        snapshot_id: m.snapshot_id,
                        volume_id: m.volume_id,
                        volume_name: m.volume_name,
                        state: if live { State::Pending } else { State::Error },
                        state_message: (!live).then(|| "interrupted before completion; delete it or run `cryptvol snapshot gc`".to_string()),
                        description: m.description,
                        size: m.size,
                        encrypted: m.encrypted,
                        kms_key_arn: None,
                        region: self.region.clone(),
                        parent_snapshot: None,
                        start_time: m.start_time,
                        completion_time: None,
                        chunks: 0,
                        bytes_added: 0,
                        data_bytes: 0,
                        write_pause_us: 0,
                    });
                }
            }
        }
        out.sort_by(|a, b| {
            a.start_time
                .cmp(&b.start_time)
                .then(a.snapshot_id.cmp(&b.snapshot_id))
        });
        Ok(out)
    }

    pub fn describe(&self, id: &str) -> Result<SnapshotInfo, Error> {
        self.list()?
            .into_iter()
            .find(|s| s.snapshot_id == id)
            .ok_or_else(|| Error::NotFound(id.to_string(), self.region.clone()))
    }

    /// Deletes a snapshot: the manifest goes first (atomically), then the
    /// chunks nothing else references. A crash in between leaves only
    /// unreferenced chunks, which the next delete or gc collects.
    pub fn delete(&self, id: &str) -> Result<GcReport, Error> {
        let m = self.manifest_path(id);
        let p = self.pending_path(id);
        if m.exists() {
            std::fs::remove_file(&m).map_err(|e| FsError::new("delete", &m, e))?;
        } else if p.exists() {
            if pending_is_live(&p) {
                return Err(Error::NotCompleted(
                    id.to_string(),
                    "still being taken".into(),
                ));
            }
        } else {
            return Err(Error::NotFound(id.to_string(), self.region.clone()));
        }
        let _ = std::fs::remove_file(&p);
        crate::fsutil::sync_dir(&self.manifests_dir())?;
        self.gc()
    }

    /// Collects chunks no completed snapshot references and markers of
    /// interrupted snapshots. Skips (and says so) while a snapshot is being
    /// taken, since its chunks are not yet in any manifest.
    pub fn gc(&self) -> Result<GcReport, Error> {
        self.ensure_dirs()?;
        let lock_path = self.dir.join("gc.lock");
        let _lock = match FileLock::try_exclusive(&lock_path)? {
            Some(l) => l,
            None => {
                return Ok(GcReport {
                    deferred: true,
                    ..GcReport::default()
                })
            }
        };
        let mut live = std::collections::HashSet::new();
        let mut report = GcReport::default();
        for e in std::fs::read_dir(self.manifests_dir())
            .map_err(|e| FsError::new("list", &self.manifests_dir(), e))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(id) = name.strip_suffix(".manifest") {
                let (m, _) = self.load(id)?;
                live.extend(m.chunks.into_iter().map(|(_, h)| h));
            } else if name.ends_with(".pending") && !pending_is_live(&e.path()) {
                let _ = std::fs::remove_file(e.path());
                report.interrupted_removed += 1;
            }
        }
        let r = self.chunks.retain(&live)?;
        report.chunks_removed = r.chunks_removed;
        report.bytes_freed = r.bytes_freed;
        Ok(report)
    }
}

/// What a garbage collection did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GcReport {
    pub chunks_removed: u64,
    /// Storage given back (dropped chunks and leftovers of interrupted writes).
    pub bytes_freed: u64,
    pub interrupted_removed: u64,
    /// A snapshot was being taken; collection was left for later.
    pub deferred: bool,
}

/// A pending marker is live while its creator holds its lock.
fn pending_is_live(path: &Path) -> bool {
    matches!(FileLock::try_exclusive_existing(path), Ok(None)) && path.exists()
}
