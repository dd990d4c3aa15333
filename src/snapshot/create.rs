//! Taking a snapshot of an attached volume, point in time, incrementally.
//!
//! The volume's change tracker fixes the instant and says which chunks
//! changed since the base snapshot (see `volume::cbt`). Those chunks are
//! read as stored — ciphertext for encrypted volumes, so nothing is
//! decrypted or re-encrypted on this path — hashed, and put in the chunk
//! store (which skips chunks it already has). The new manifest is the base
//! snapshot's chunk list with the changed chunks replaced, written
//! atomically last.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::Engine as _;

use super::chunks::{chunk_hash, ChunkStore, LocalChunkStore};
use super::manifest::{Manifest, State};
use super::{new_snapshot_id, now_rfc3339, Error, PendingMarker, SnapshotInfo, SnapshotStore};
use crate::fsutil::FileLock;
use crate::progress::Progress;
use crate::volume::cbt::CHUNK_SIZE;
use crate::volume::file::is_zero;
use crate::volume::header::Cipher;
use crate::volume::reencrypt::parallel_io;
use crate::volume::Volume;

/// Snapshots `volume` (attached by this process) into `store`, telling
/// `progress` about the chunks it reads.
pub fn create(
    store: &SnapshotStore,
    volume: &Volume,
    description: &str,
    progress: &dyn Progress,
) -> Result<SnapshotInfo, Error> {
    let h = volume.header();
    let id = new_snapshot_id();
    let _gc = store.gc_lock(false)?;
    store.ensure_dirs()?;
    // What is stored may have changed since this store was opened (a
    // serving process snapshots many times); dedupe against the present.
    store.chunks().refresh()?;

    // The pending marker, locked for as long as we work: if this process
    // dies, the lock goes with it and the snapshot lists as interrupted.
    let marker = PendingMarker {
        snapshot_id: id.clone(),
        volume_id: h.volume_id.clone(),
        volume_name: h.name.clone(),
        description: description.to_string(),
        start_time: now_rfc3339(),
        size: h.size,
        encrypted: h.cipher != Cipher::None,
        copy_of: None,
        kms_key_arn: None,
        wrapped_data_key: None,
        encryption_context: None,
    };
    let pending = store.pending_path(&id);
    crate::fsutil::write_atomic(
        &pending,
        &serde_json::to_vec(&marker).expect("BUG: marker serializes"),
    )?;
    let _live = FileLock::exclusive(&pending)?;

    let result = capture_and_write(store, volume, &id, &marker, progress);
    let _ = std::fs::remove_file(&pending);
    result
}

fn capture_and_write(
    store: &SnapshotStore,
    volume: &Volume,
    id: &str,
    marker: &PendingMarker,
    progress: &dyn Progress,
) -> Result<SnapshotInfo, Error> {
    let h = volume.header();
    let key = volume.snapshot_mac_key();
    let tracker = volume.tracker();

    // Incremental only against a base we can still read and trust.
    let parent = tracker.base().and_then(|b| {
        let (m, bytes) = store.load(&b).ok()?;
        let ok = m.volume_id == h.volume_id && m.size == h.size && m.chunk_size == CHUNK_SIZE;
        (ok && Manifest::verify(&bytes, key).is_ok()).then_some(m)
    });

    let chunks = LocalChunkStore::clone_of(store);
    let sealer = chunks.clone();
    let added = Arc::new(AtomicU64::new(0));
    let added2 = added.clone();
    let sink = Box::new(
        move |_idx: u64, data: &[u8]| -> Result<Option<String>, String> {
            if is_zero(data) {
                return Ok(None);
            }
            let hash = chunk_hash(data);
            // Writers run this too (copy-on-write): they must not wait for a
            // pack to be synced; the snapshot's own threads seal below.
            if chunks
                .put_deferred(&hash, data)
                .map_err(|e| e.to_string())?
            {
                added2.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            Ok(Some(hash))
        },
    );
    let (cap, pause) = tracker.start_capture(parent.is_none(), sink);

    // Save every needed chunk not already saved by a writer (copy-on-write).
    let todo = cap.chunks();
    let chunk_len = |c: u64| CHUNK_SIZE.min(h.size - c * CHUNK_SIZE);
    progress.start(todo.iter().map(|&c| chunk_len(c)).sum());
    let sealed = parallel_io(todo.len(), |i| -> Result<(), String> {
        cap.save(todo[i], |c, buf| volume.read_raw_chunk(c, buf));
        progress.advance(chunk_len(todo[i]));
        sealer.seal_full().map_err(|e| e.to_string())
    });
    let saved = match sealed
        .and_then(|()| cap.finish())
        .and_then(|r| store.chunks().sync().map(|_| r).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(reason) => {
            tracker.end_capture(&cap, None);
            return Err(Error::Capture {
                volume: h.name.clone(),
                reason,
            });
        }
    };

    let mut map: std::collections::BTreeMap<u64, String> = parent
        .as_ref()
        .map(|p| p.chunks.iter().cloned().collect())
        .unwrap_or_default();
    for (c, r) in saved {
        match r {
            Some(hash) => map.insert(c, hash),
            None => map.remove(&c),
        };
    }
    let data_bytes = map.keys().map(|&c| chunk_len(c)).sum();
    let encrypted = h.cipher != Cipher::None;
    let m = Manifest {
        snapshot_id: id.to_string(),
        volume_id: h.volume_id.clone(),
        volume_name: h.name.clone(),
        description: marker.description.clone(),
        state: State::Completed,
        size: h.size,
        sector_size: h.sector_size,
        cipher: h.cipher.name().to_string(),
        encrypted,
        kms_key_arn: encrypted.then(|| h.kms_key_arn.clone()),
        region: h.region.clone(),
        wrapped_data_key: encrypted
            .then(|| base64::engine::general_purpose::STANDARD.encode(&h.wrapped_data_key)),
        encryption_context: h.encryption_context.clone(),
        parent_snapshot: parent.as_ref().map(|p| p.snapshot_id.clone()),
        start_time: marker.start_time.clone(),
        completion_time: now_rfc3339(),
        chunk_size: CHUNK_SIZE,
        chunks: map.into_iter().collect(),
        bytes_added: added.load(Ordering::Relaxed),
        data_bytes,
        write_pause_us: pause.as_micros() as u64,
    };
    if let Err(e) = crate::fsutil::write_atomic(&store.manifest_path(id), &m.encode(key)) {
        tracker.end_capture(&cap, None);
        return Err(e.into());
    }
    tracker.end_capture(&cap, Some(id));
    // Record the new base; if this fails the tracker stays conservative.
    if !volume.is_read_only_attach() {
        let _ = tracker.persist(false);
    }
    tracing::info!(snapshot = id, volume = %h.name, bytes_added = m.bytes_added, pause_us = m.write_pause_us, "snapshot completed");
    Ok(SnapshotInfo::from_manifest(&m))
}
