//! A new volume from a completed snapshot.
//!
//! The manifest is authenticated first (MAC under a key derived from the
//! data key, which the KMS must unwrap — so restoring also requires access
//! to the snapshot's KMS key). Keeping the snapshot's key, chunks are
//! copied as stored: no decryption, disk-copy speed. With another KMS key,
//! each chunk is decrypted with the old data key and encrypted with a new
//! one (the re-encrypt path the copy commands share).

use base64::Engine as _;

use super::chunks::ChunkStore;
use super::manifest::{Manifest, State};
use super::{Error, SnapshotStore};
use crate::crypto::xts::SectorCipher;
use crate::crypto::DataKey;
use crate::kms::service::{Caller, KeyService};
use crate::volume::cbt::CHUNK_SIZE;
use crate::volume::{KeySource, NewVolume, VolumeInfo, VolumeStore};

/// A snapshot whose manifest has been authenticated, with its data key's
/// cipher (for encrypted snapshots).
#[derive(Debug)]
pub struct Opened {
    pub manifest: Manifest,
    pub cipher: Option<SectorCipher>,
    /// The manifest MAC key (`None` for unencrypted snapshots).
    pub mac_key: Option<crate::crypto::SecretBytes>,
}

/// Loads and authenticates a completed snapshot, unwrapping its data key
/// through `kms`.
pub fn open(
    store: &SnapshotStore,
    kms: &dyn KeyService,
    caller: &Caller,
    id: &str,
) -> Result<Opened, Error> {
    let (m, bytes) = store.load(id)?;
    if m.state != State::Completed {
        return Err(Error::NotCompleted(
            id.to_string(),
            format!("{:?}", m.state).to_lowercase(),
        ));
    }
    if !m.encrypted {
        let manifest = Manifest::verify(&bytes, None).map_err(|source| Error::Manifest {
            id: id.into(),
            source,
        })?;
        return Ok(Opened {
            manifest,
            cipher: None,
            mac_key: None,
        });
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(m.wrapped_data_key.as_deref().unwrap_or_default())
        .map_err(|_| Error::Invalid(format!("snapshot {id}: wrapped data key is not base64")))?;
    let dk = kms
        .decrypt(caller, &blob, &m.encryption_context, None)
        .map_err(|source| Error::Kms {
            id: id.to_string(),
            action: "unwrap the snapshot's data key",
            source,
        })?;
    let key = DataKey::from_secret(&dk.plaintext)
        .ok_or_else(|| Error::Invalid(format!("snapshot {id}: data key has the wrong length")))?;
    let mac = crate::crypto::kdf::snapshot_mac_key(key.expose());
    let manifest = Manifest::verify(&bytes, Some(&mac)).map_err(|source| Error::Manifest {
        id: id.into(),
        source,
    })?;
    let cipher = SectorCipher::new(&key, manifest.sector_size)
        .map_err(|e| Error::Invalid(format!("snapshot {id}: {e}")))?;
    Ok(Opened {
        manifest,
        cipher: Some(cipher),
        mac_key: Some(mac),
    })
}

pub use crate::volume::reencrypt::transcode;

/// Options for [`restore`].
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Larger size for the new volume (never smaller than the snapshot).
    pub size: Option<u64>,
    /// Re-encrypt under this KMS key instead of keeping the snapshot's.
    pub kms_key_id: Option<String>,
}

/// Creates volume `name` from snapshot `id`.
pub fn restore(
    src: super::copy::Side<'_>,
    volumes: &VolumeStore,
    id: &str,
    name: &str,
    opts: &RestoreOptions,
    progress: &dyn crate::progress::Progress,
) -> Result<VolumeInfo, Error> {
    let super::copy::Side { store, kms, caller } = src;
    let Opened {
        manifest: m,
        cipher: old,
        ..
    } = open(store, kms, caller, id)?;
    let size = opts.size.unwrap_or(m.size);
    if size < m.size {
        return Err(Error::Invalid(format!(
            "--size {size} is smaller than snapshot {id} ({} bytes); a restored volume can only grow",
            m.size
        )));
    }
    // Keep the snapshot's data key unless another key is asked for.
    let reencrypt = match (&opts.kms_key_id, &m.kms_key_arn) {
        (None, _) => false,
        (Some(k), Some(arn)) => {
            let target = kms.describe_key(caller, k).map_err(|source| Error::Kms {
                id: id.to_string(),
                action: "describe the target key",
                source,
            })?;
            &target.arn != arn
        }
        (Some(_), None) => true,
    };
    let key = if reencrypt {
        KeySource::New(opts.kms_key_id.clone())
    } else if m.encrypted {
        KeySource::Existing {
            kms_key_arn: m.kms_key_arn.clone().unwrap_or_default(),
            wrapped_data_key: base64::engine::general_purpose::STANDARD
                .decode(m.wrapped_data_key.as_deref().unwrap_or_default())
                .map_err(|_| {
                    Error::Invalid(format!("snapshot {id}: wrapped data key is not base64"))
                })?,
            encryption_context: m.encryption_context.clone(),
        }
    } else {
        KeySource::Unencrypted
    };
    let chunks = store.chunks();
    let info = volumes.create_with(
        kms,
        caller,
        name,
        size,
        m.sector_size,
        key,
        id,
        |nv: &NewVolume<'_>| {
            let chunk_len = |c: u64| CHUNK_SIZE.min(m.size.saturating_sub(c * CHUNK_SIZE));
            progress.start(m.chunks.iter().map(|(c, _)| chunk_len(*c)).sum());
            crate::volume::reencrypt::parallel_io(m.chunks.len(), |i| {
                let (c, hash) = &m.chunks[i];
                restore_chunk(chunks, nv, old.as_ref(), reencrypt, &m, *c, hash).map_err(|e| {
                    crate::volume::Error::Io {
                        what: format!("restoring from {id}"),
                        source: std::io::Error::other(e.to_string()),
                    }
                })?;
                progress.advance(chunk_len(*c));
                Ok(())
            })
        },
    );
    Ok(info?)
}

fn restore_chunk(
    chunks: &dyn ChunkStore,
    nv: &NewVolume<'_>,
    old: Option<&SectorCipher>,
    reencrypt: bool,
    m: &Manifest,
    c: u64,
    hash: &str,
) -> Result<(), Error> {
    let mut data = chunks.get(hash).map_err(|source| Error::Chunk {
        id: m.snapshot_id.clone(),
        source,
    })?;
    let ss = m.sector_size as usize;
    if data.len() % ss != 0 || c * CHUNK_SIZE + data.len() as u64 > m.size {
        return Err(Error::Invalid(format!(
            "snapshot {}: chunk {c} has an impossible length",
            m.snapshot_id
        )));
    }
    if reencrypt {
        transcode(old, nv.cipher, c * CHUNK_SIZE / ss as u64, ss, &mut data);
    }
    nv.write_stored(c * CHUNK_SIZE, &data).map_err(|e| {
        Error::Fs(crate::fsutil::FsError::new(
            "write",
            std::path::Path::new(&nv.header.volume_id),
            e,
        ))
    })
}
