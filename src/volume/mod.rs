//! Volumes: one file each, a two-copy checksummed header then the encrypted
//! sparse data area.
//!
//! - [`header`]: the on-disk header format (byte map, encode/decode).
//! - [`file`]: the attached [`Volume`], a [`crate::blockdev::BlockDevice`].
//! - this module: the per-region volume directory (create, list, find,
//!   delete, attach), which is where the KMS comes in: a volume's data key is
//!   generated under a KMS key with the encryption context
//!   `{"aws:ebs:id": "<volume id>"}` and only its wrapped form is stored.

pub mod cbt;
pub mod defaults;
pub mod file;
pub mod header;
pub mod reencrypt;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use base64::Engine as _;

pub use file::Volume;
use header::{Cipher, Header, HeaderError, DATA_OFFSET};

use crate::crypto::xts::SectorCipher;
use crate::crypto::{DataKey, DATA_KEY_LEN};
use crate::kms::error::KmsError;
use crate::kms::service::{Caller, EncryptionContext, KeyService};

/// The encryption context key EBS binds a volume's data key to.
pub const CONTEXT_KEY: &str = "aws:ebs:id";
/// Key used when none is given, created on first use like AWS's.
pub const DEFAULT_KEY_ALIAS: &str = "alias/aws/ebs";
/// Default sector size: 4096, as LUKS2 uses (fewer, cheaper tweak setups).
pub const DEFAULT_SECTOR_SIZE: u32 = 4096;
/// File name suffix of volume files.
const VOLUME_EXT: &str = "vol";

/// Everything that can go wrong managing or attaching a volume.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no volume named or with id {0:?} in region {1}; `cryptvol volume list` shows what exists"
    )]
    NotFound(String, String),
    #[error("a volume named {0:?} already exists ({1}); pick another name or delete it first")]
    AlreadyExists(String, String),
    #[error("invalid volume name {0:?}: use 1-64 characters from A-Z a-z 0-9 . _ -, not starting with `vol-` or `-`")]
    InvalidName(String),
    #[error(
        "invalid size {size}: it must be a positive multiple of the {sector_size}-byte sector size"
    )]
    InvalidSize { size: u64, sector_size: u32 },
    #[error("encryption by default is enabled in region {0}: unencrypted volumes are refused (`cryptvol encryption-by-default disable` to allow them)")]
    EncryptionRequired(String),
    #[error("volume {0} is not encrypted: there is no data key to re-wrap (copy it with --kms-key-id to encrypt it)")]
    NotEncrypted(String),
    #[error("invalid sector size {0}: use 512 or 4096")]
    InvalidSectorSize(u32),
    #[error("volume {path}: {source}")]
    BadHeader { path: PathBuf, source: HeaderError },
    #[error(transparent)]
    Header(HeaderError),
    #[error("volume {volume}: the KMS refused to {action}: {source}")]
    Kms {
        volume: String,
        action: &'static str,
        source: KmsError,
    },
    #[error("volume {0}: the KMS returned a data key of {1} bytes, expected {DATA_KEY_LEN}")]
    BadDataKey(String, usize),
    #[error("volume {0} is attached by another process; stop that `cryptvol serve` first")]
    Busy(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Fs(#[from] crate::fsutil::FsError),
}

impl Error {
    /// Builds a closure mapping an `io::Error` to [`Error::Io`] with context.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

/// Options for [`VolumeStore::create`].
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub size: u64,
    pub sector_size: u32,
    /// `None` with `encrypted` uses [`DEFAULT_KEY_ALIAS`].
    pub kms_key_id: Option<String>,
    pub encrypted: bool,
}

/// Where a new volume's data key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A fresh data key from the KMS under this key (default `alias/aws/ebs`).
    New(Option<String>),
    /// An existing wrapped data key (a restore that keeps the snapshot's key).
    Existing {
        kms_key_arn: String,
        wrapped_data_key: Vec<u8>,
        encryption_context: EncryptionContext,
    },
    Unencrypted,
}

/// A volume file being created, handed to the `fill` step of
/// [`VolumeStore::create_with`].
#[derive(Debug)]
pub struct NewVolume<'a> {
    pub file: &'a File,
    pub header: &'a Header,
    /// The cipher of a freshly generated data key, if one was generated.
    pub cipher: Option<&'a SectorCipher>,
    /// Taken around each write of the fill; see [`NewVolume::write_stored`].
    writes: std::sync::Mutex<()>,
}

impl NewVolume<'_> {
    /// Writes stored (already encrypted) bytes at `offset` of the data area.
    /// Fill threads write one at a time: ext4 serializes buffered writes to
    /// one file on its inode lock anyway, and threads spinning on that lock
    /// took a fifth of a 1 GiB restore's CPU (perf); parked on this mutex
    /// they leave the cores to the threads hashing and transcoding.
    pub fn write_stored(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let _turn = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        file::write_data_at(self.file, data, self.header.data_offset + offset)
    }
}

/// A volume as `list` and `describe` show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VolumeInfo {
    pub volume_id: String,
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    pub sector_size: u32,
    pub encrypted: bool,
    pub cipher: &'static str,
    pub data_offset: u64,
    pub kms_key_arn: Option<String>,
    pub region: String,
    pub encryption_context: EncryptionContext,
    /// Base64 of the KMS ciphertext blob.
    pub wrapped_data_key: Option<String>,
    pub origin_snapshot: Option<String>,
    /// RFC 3339, UTC.
    pub created: String,
    pub header_sequence: u64,
}

impl VolumeInfo {
    fn new(h: &Header, path: PathBuf) -> Self {
        let created = std::time::UNIX_EPOCH + std::time::Duration::from_secs(h.created);
        let encrypted = h.cipher != Cipher::None;
        VolumeInfo {
            volume_id: h.volume_id.clone(),
            name: h.name.clone(),
            path,
            size: h.size,
            sector_size: h.sector_size,
            encrypted,
            cipher: h.cipher.name(),
            data_offset: h.data_offset,
            kms_key_arn: encrypted.then(|| h.kms_key_arn.clone()),
            region: h.region.clone(),
            encryption_context: h.encryption_context.clone(),
            wrapped_data_key: encrypted
                .then(|| base64::engine::general_purpose::STANDARD.encode(&h.wrapped_data_key)),
            origin_snapshot: (!h.origin_snapshot.is_empty()).then(|| h.origin_snapshot.clone()),
            created: humantime::format_rfc3339_seconds(created).to_string(),
            header_sequence: h.sequence,
        }
    }
}

/// The volumes of one region: `<data_dir>/regions/<region>/volumes/<id>.vol`.
#[derive(Debug, Clone)]
pub struct VolumeStore {
    dir: PathBuf,
    region: String,
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with("vol-")
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn new_volume_id() -> String {
    let mut b = [0u8; 9];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    let h = hex::encode(b);
    format!("vol-{}", &h[..17])
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl VolumeStore {
    pub fn new(data_dir: &Path, region: &str) -> Self {
        VolumeStore {
            dir: data_dir.join("regions").join(region).join("volumes"),
            region: region.to_string(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.{VOLUME_EXT}"))
    }

    /// The volume's changed-block-tracking file.
    fn cbt_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.cbt"))
    }

    /// The control socket of the process serving a volume (snapshots of an
    /// attached volume are taken by that process).
    pub fn control_socket(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.sock"))
    }

    /// Every volume in the region, sorted by name. Files whose header cannot
    /// be read are reported as errors rather than skipped silently.
    pub fn list(&self) -> Result<Vec<VolumeInfo>, Error> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("listing {}", self.dir.display()))(e)),
        };
        let mut out = Vec::new();
        for entry in rd {
            let path = entry
                .map_err(Error::io(format!("listing {}", self.dir.display())))?
                .path();
            if path.extension().and_then(|e| e.to_str()) != Some(VOLUME_EXT) {
                continue;
            }
            let h = Self::read_header_at(&path)?;
            out.push(VolumeInfo::new(&h, path));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.volume_id.cmp(&b.volume_id)));
        Ok(out)
    }

    fn read_header_at(path: &Path) -> Result<Header, Error> {
        let f = File::open(path).map_err(Error::io(format!("opening {}", path.display())))?;
        file::read_header(&f)
            .map_err(Error::io(format!("reading {}", path.display())))?
            .map_err(|source| Error::BadHeader {
                path: path.to_path_buf(),
                source,
            })
    }

    /// Finds a volume by name or id.
    pub fn find(&self, name_or_id: &str) -> Result<VolumeInfo, Error> {
        if header::is_volume_id(name_or_id) {
            let path = self.path_of(name_or_id);
            if path.exists() {
                let h = Self::read_header_at(&path)?;
                return Ok(VolumeInfo::new(&h, path));
            }
        }
        self.list()?
            .into_iter()
            .find(|v| v.name == name_or_id || v.volume_id == name_or_id)
            .ok_or_else(|| Error::NotFound(name_or_id.to_string(), self.region.clone()))
    }

    /// Creates a volume: a fresh data key from the KMS (unless unencrypted),
    /// the header in both slots, a sparse data area. The file appears under
    /// its final name only when complete (temp file, fsync, rename).
    pub fn create(
        &self,
        kms: &dyn KeyService,
        caller: &Caller,
        name: &str,
        opts: &CreateOptions,
    ) -> Result<VolumeInfo, Error> {
        let key = if opts.encrypted {
            KeySource::New(opts.kms_key_id.clone())
        } else {
            KeySource::Unencrypted
        };
        self.create_with(
            kms,
            caller,
            name,
            opts.size,
            opts.sector_size,
            key,
            "",
            |_| Ok(()),
        )
    }

    /// The general form of [`VolumeStore::create`]: `key` says where the
    /// data key comes from, and `fill` writes the data area of the new file
    /// before it appears under its final name (a restore or copy killed
    /// half-way leaves no volume behind). `fill` gets the sector cipher of
    /// a newly generated data key (`None` for an existing or no key).
    #[allow(clippy::too_many_arguments)]
    pub fn create_with(
        &self,
        kms: &dyn KeyService,
        caller: &Caller,
        name: &str,
        size: u64,
        sector_size: u32,
        key: KeySource,
        origin_snapshot: &str,
        fill: impl FnOnce(&NewVolume<'_>) -> Result<(), Error>,
    ) -> Result<VolumeInfo, Error> {
        if !valid_name(name) {
            return Err(Error::InvalidName(name.to_string()));
        }
        if !crate::crypto::xts::SECTOR_SIZES.contains(&sector_size) {
            return Err(Error::InvalidSectorSize(sector_size));
        }
        if size == 0 || !size.is_multiple_of(sector_size as u64) || size > u64::MAX / 2 {
            return Err(Error::InvalidSize { size, sector_size });
        }
        if let Some(v) = self.list()?.into_iter().find(|v| v.name == name) {
            return Err(Error::AlreadyExists(name.to_string(), v.volume_id));
        }
        let volume_id = new_volume_id();
        let context: EncryptionContext = [(CONTEXT_KEY.to_string(), volume_id.clone())].into();
        let mut new_cipher = None;
        let (cipher, kms_key_arn, wrapped, encryption_context) = match key {
            KeySource::New(key_id) => {
                let key_id = key_id.as_deref().unwrap_or(DEFAULT_KEY_ALIAS);
                let dk = kms
                    .generate_data_key(caller, key_id, DATA_KEY_LEN, &context)
                    .map_err(|source| Error::Kms {
                        volume: name.to_string(),
                        action: "generate a data key",
                        source,
                    })?;
                let n = dk.plaintext.len();
                let data_key = DataKey::from_secret(&dk.plaintext)
                    .ok_or_else(|| Error::BadDataKey(name.to_string(), n))?;
                new_cipher = Some(
                    SectorCipher::new(&data_key, sector_size)
                        .map_err(|_| Error::InvalidSectorSize(sector_size))?,
                );
                (
                    Cipher::AesXtsPlain64,
                    dk.key_id,
                    dk.ciphertext_blob,
                    context,
                )
            }
            KeySource::Existing {
                kms_key_arn,
                wrapped_data_key,
                encryption_context,
            } => (
                Cipher::AesXtsPlain64,
                kms_key_arn,
                wrapped_data_key,
                encryption_context,
            ),
            KeySource::Unencrypted => (
                Cipher::None,
                String::new(),
                Vec::new(),
                EncryptionContext::new(),
            ),
        };
        let mut h = Header {
            sequence: 0,
            volume_id: volume_id.clone(),
            name: name.to_string(),
            size,
            sector_size,
            data_offset: DATA_OFFSET,
            cipher,
            kms_key_arn,
            region: self.region.clone(),
            wrapped_data_key: wrapped,
            encryption_context,
            origin_snapshot: origin_snapshot.to_string(),
            created: now_secs(),
        };
        let path = self.path_of(&volume_id);
        self.write_new_file(&path, &mut h, new_cipher.as_ref(), fill)?;
        Ok(VolumeInfo::new(&h, path))
    }

    /// Writes a new volume file with `h` in both slots (sequences 0 and 1)
    /// and a sparse data area filled by `fill`, atomically under `path`.
    fn write_new_file(
        &self,
        path: &Path,
        h: &mut Header,
        cipher: Option<&SectorCipher>,
        fill: impl FnOnce(&NewVolume<'_>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        crate::fsutil::create_private_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!(".{}.tmp", h.volume_id));
        let result = (|| {
            let f = private_file(&tmp, true)
                .map_err(Error::io(format!("creating {}", tmp.display())))?;
            f.set_len(h.data_offset + h.size)
                .map_err(Error::io(format!("sizing {}", tmp.display())))?;
            let flushed = while_flushing(&f, || {
                fill(&NewVolume {
                    file: &f,
                    header: h,
                    cipher,
                    writes: std::sync::Mutex::new(()),
                })
            });
            flushed.map_err(Error::io(format!("flushing {}", tmp.display())))??;
            use std::os::unix::fs::FileExt;
            h.sequence = 0;
            let a = h.encode().map_err(Error::Header)?;
            h.sequence = 1;
            let b = h.encode().map_err(Error::Header)?;
            f.write_all_at(&a, 0)
                .and_then(|_| f.write_all_at(&b, header::SLOT_SIZE as u64))
                .and_then(|_| f.sync_all())
                .map_err(Error::io(format!("writing {}", tmp.display())))?;
            std::fs::rename(&tmp, path)
                .map_err(Error::io(format!("renaming {}", tmp.display())))?;
            Ok(crate::fsutil::sync_dir(&self.dir)?)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Deletes a volume file. Refuses while another process has it attached.
    pub fn delete(&self, name_or_id: &str) -> Result<VolumeInfo, Error> {
        let info = self.find(name_or_id)?;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&info.path)
            .map_err(Error::io(format!("opening {}", info.path.display())))?;
        lock_exclusive(&f, &info.name)?;
        std::fs::remove_file(&info.path)
            .map_err(Error::io(format!("deleting {}", info.path.display())))?;
        crate::fsutil::sync_dir(&self.dir)?;
        Ok(info)
    }

    /// Attaches a volume: opens its file (locked against a second attach),
    /// asks the KMS to unwrap the data key with the volume's encryption
    /// context, and builds the sector cipher. The plaintext data key exists
    /// only inside the cipher's zeroizing key schedule afterwards.
    pub fn attach(
        &self,
        kms: &dyn KeyService,
        caller: &Caller,
        name_or_id: &str,
        read_only: bool,
    ) -> Result<Volume, Error> {
        let info = self.find(name_or_id)?;
        let f = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(&info.path)
            .map_err(Error::io(format!("opening {}", info.path.display())))?;
        if !read_only {
            lock_exclusive(&f, &info.name)?;
        }
        let h = file::read_header(&f)
            .map_err(Error::io(format!("reading {}", info.path.display())))?
            .map_err(|source| Error::BadHeader {
                path: info.path.clone(),
                source,
            })?;
        let len = f
            .metadata()
            .map_err(Error::io(format!("examining {}", info.path.display())))?
            .len();
        if len < h.data_offset + h.size {
            // A truncated file would turn reads past its end into errors;
            // restore the sparse length (the missing part reads as zeros).
            if read_only {
                return Err(Error::BadHeader {
                    path: info.path.clone(),
                    source: HeaderError::Corrupt(format!(
                        "file is {len} bytes, shorter than its header says"
                    )),
                });
            }
            f.set_len(h.data_offset + h.size)
                .map_err(Error::io(format!("extending {}", info.path.display())))?;
        }
        let mut mac_key = None;
        let cipher = match h.cipher {
            Cipher::None => None,
            Cipher::AesXtsPlain64 => {
                let resp = kms
                    .decrypt(caller, &h.wrapped_data_key, &h.encryption_context, None)
                    .map_err(|source| Error::Kms {
                        volume: h.name.clone(),
                        action: "unwrap the data key",
                        source,
                    })?;
                let n = resp.plaintext.len();
                let key = DataKey::from_secret(&resp.plaintext)
                    .ok_or_else(|| Error::BadDataKey(h.name.clone(), n))?;
                mac_key = Some(crate::crypto::kdf::snapshot_mac_key(key.expose()));
                Some(
                    SectorCipher::new(&key, h.sector_size).map_err(|e| Error::BadHeader {
                        path: info.path.clone(),
                        source: HeaderError::Corrupt(e.to_string()),
                    })?,
                )
            }
        };
        let tracker = cbt::Tracker::open(&self.cbt_path(&h.volume_id), h.size, read_only)?;
        Ok(Volume::new(f, h, cipher, read_only, tracker, mac_key))
    }
}

impl VolumeStore {
    /// `volume copy`: a new volume with the same contents under a new data
    /// key (from `key`), every written chunk decrypted and re-encrypted.
    /// The source must be detached (it is locked for the duration).
    pub fn copy(
        &self,
        kms: &dyn KeyService,
        caller: &Caller,
        source: &str,
        name: &str,
        key: KeySource,
        progress: &dyn crate::progress::Progress,
    ) -> Result<(VolumeInfo, u64), Error> {
        let src = self.attach(kms, caller, source, false)?;
        let h = src.header().clone();
        let mut copied = 0;
        let info = self.create_with(
            kms,
            caller,
            name,
            h.size,
            h.sector_size,
            key,
            &h.origin_snapshot,
            |nv| {
                copied = reencrypt::copy_into(&src, nv, progress)?;
                Ok(())
            },
        )?;
        src.detach().map_err(|e| Error::Io {
            what: format!("detaching {source}"),
            source: std::io::Error::other(e),
        })?;
        Ok((info, copied))
    }

    /// `volume rewrap`: re-wraps the data key under another KMS key with
    /// ReEncrypt (the plaintext key never leaves the KMS); the data is
    /// untouched. The header update is crash-safe (two copies).
    pub fn rewrap(
        &self,
        kms: &dyn KeyService,
        caller: &Caller,
        name_or_id: &str,
        key_id: &str,
    ) -> Result<VolumeInfo, Error> {
        let info = self.find(name_or_id)?;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&info.path)
            .map_err(Error::io(format!("opening {}", info.path.display())))?;
        lock_exclusive(&f, &info.name)?;
        let cur = file::read_header(&f)
            .map_err(Error::io(format!("reading {}", info.path.display())))?
            .map_err(|source| Error::BadHeader {
                path: info.path.clone(),
                source,
            })?;
        if cur.cipher == Cipher::None {
            return Err(Error::NotEncrypted(info.name.clone()));
        }
        let (blob, arn) = kms
            .re_encrypt(
                caller,
                &cur.wrapped_data_key,
                &cur.encryption_context,
                key_id,
                &cur.encryption_context,
            )
            .map_err(|source| Error::Kms {
                volume: info.name.clone(),
                action: "re-wrap the data key",
                source,
            })?;
        let mut new = cur.clone();
        new.wrapped_data_key = blob;
        new.kms_key_arn = if arn.is_empty() {
            kms.describe_key(caller, key_id)
                .map(|m| m.arn)
                .unwrap_or_default()
        } else {
            arn
        };
        file::write_header(&f, &cur, &mut new)?;
        Ok(VolumeInfo::new(&new, info.path))
    }
}

/// How often a file being filled is pushed to disk (see [`while_flushing`]).
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Runs `work` while another thread flushes `f` every [`FLUSH_EVERY`], so
/// writeback overlaps the filling of a new volume and the final fsync finds
/// little left: a restore or copy then takes about as long as the disk
/// needs, not fill time plus flush time. A flush error is returned (not
/// dropped: Linux reports a writeback error to one fsync only).
fn while_flushing<T>(f: &File, work: impl FnOnce() -> T) -> std::io::Result<T> {
    let stop = (std::sync::Mutex::new(false), std::sync::Condvar::new());
    std::thread::scope(|s| {
        let flusher = s.spawn(|| -> std::io::Result<()> {
            let (lock, cv) = &stop;
            let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
            while !*stopped {
                stopped = cv
                    .wait_timeout(stopped, FLUSH_EVERY)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                if *stopped {
                    break;
                }
                drop(stopped);
                f.sync_data()?;
                stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
            }
            Ok(())
        });
        let out = work();
        *stop.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        stop.1.notify_all();
        let flushed = flusher
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the flushing thread panicked")));
        flushed.map(|()| out)
    })
}

/// Opens a (new) file readable only by its owner.
fn private_file(path: &Path, create_new: bool) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(create_new)
        .mode(0o600)
        .open(path)
}

fn lock_exclusive(f: &File, name: &str) -> Result<(), Error> {
    match f.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Busy(name.to_string())),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(format!("locking volume {name}"))(e)),
    }
}

#[cfg(test)]
mod tests;
