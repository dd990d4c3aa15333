//! The root key: 32 random bytes that seal every region's key material (and
//! authenticate the key store) at rest.
//!
//! Why a file: the embedded KMS has no HSM. The key material in
//! `keys.json` is only as safe as this file, so it lives apart from it:
//! `<data_dir>/root.key` by default (generated `0600` on first use), or
//! wherever `CRYPTVOL_ROOT_KEY_FILE` points — e.g. a tmpfs, a removable
//! disk, or a file a secrets manager drops in place — so that a copy of the
//! data dir alone reveals nothing.
//!
//! A root key file that group or others may read or write is refused: that
//! is almost always a mistake (a `cp` without `-p`, a permissive umask), and
//! silently using such a key would hide it. A file named by the environment
//! variable that does not exist is an error, not a reason to make a new key:
//! a typo there must not quietly orphan every existing key.
//!
//! A file another user owns is refused too (that user could replace it),
//! and so is a data dir others may write (they could swap the file).

use std::path::{Path, PathBuf};

use super::error::KmsError;
use crate::crypto::aead::{self, OpenError, Sealed, KEY_LEN, NONCE_LEN};
use crate::crypto::SecretBytes;
use crate::fsutil;

/// Environment variable naming a root key file to use instead of
/// `<data_dir>/root.key`.
pub const ROOT_KEY_ENV: &str = "CRYPTVOL_ROOT_KEY_FILE";
/// File name of the default root key inside the data dir.
pub const ROOT_KEY_FILE_NAME: &str = "root.key";
/// An AES-256 key.
pub const ROOT_KEY_LEN: usize = KEY_LEN;

/// The loaded root key and where it came from. `Debug` shows the path only.
/// Cloning copies the key into another zeroizing buffer (each region's key
/// store holds one).
#[derive(Debug, Clone)]
pub struct RootKey {
    key: SecretBytes,
    path: PathBuf,
}

impl RootKey {
    /// The root key for `data_dir`: the file named by `explicit_file` if
    /// given (it must exist), else `<data_dir>/root.key`, generated on first
    /// use. `LocalKms::open` passes the value of [`ROOT_KEY_ENV`] here.
    pub fn load_or_create(
        data_dir: &Path,
        explicit_file: Option<&Path>,
    ) -> Result<RootKey, KmsError> {
        if let Some(path) = explicit_file {
            if !path.exists() {
                return Err(KmsError::Internal(format!(
                    "root key file {} (from {ROOT_KEY_ENV}) does not exist; point {ROOT_KEY_ENV} \
                     at the root key this data dir was created with, or create a new one with \
                     `head -c 32 /dev/urandom > {0} && chmod 600 {0}` (a new root key cannot open \
                     keys sealed under another)",
                    path.display()
                )));
            }
            return RootKey::load(path);
        }
        fsutil::create_private_dir_all(data_dir)?;
        fsutil::ensure_private(data_dir, fsutil::Private::DirNotWritable)?;
        let path = data_dir.join(ROOT_KEY_FILE_NAME);
        if !path.exists() {
            let fresh = SecretBytes::random(ROOT_KEY_LEN);
            // Loses gracefully to a concurrent creator: both then load its key.
            fsutil::create_new_atomic(&path, fresh.expose())?;
        }
        RootKey::load(&path)
    }

    /// Loads a root key file: exactly 32 bytes, mode without group/other
    /// bits.
    pub fn load(path: &Path) -> Result<RootKey, KmsError> {
        let meta = std::fs::metadata(path)
            .map_err(|e| fsutil::FsError::new("inspect root key file", path, e))?;
        if !meta.is_file() {
            return Err(KmsError::Internal(format!(
                "root key file {} is not a regular file",
                path.display()
            )));
        }
        fsutil::ensure_private(path, fsutil::Private::File)?;
        let key = SecretBytes::new(fsutil::read(path)?);
        if key.len() != ROOT_KEY_LEN {
            return Err(KmsError::Internal(format!(
                "root key file {} holds {} bytes; a root key is exactly {ROOT_KEY_LEN} raw bytes",
                path.display(),
                key.len()
            )));
        }
        Ok(RootKey {
            key,
            path: path.to_path_buf(),
        })
    }

    /// Where the key was loaded from (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// AES-256-GCM seal under the root key.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Sealed {
        aead::seal(&self.key, plaintext, aad)
    }

    /// AES-256-GCM open under the root key.
    pub fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes, OpenError> {
        aead::open(&self.key, nonce, ciphertext, aad)
    }

    /// A 32-byte subkey for `purpose` (HKDF-SHA256), so that each use of
    /// the root key other than GCM sealing gets an independent key.
    pub fn derive(&self, purpose: &[u8]) -> SecretBytes {
        let mut out = vec![0u8; 32];
        hkdf::Hkdf::<sha2::Sha256>::new(None, self.key.expose())
            .expand(purpose, &mut out)
            .expect("BUG: 32 bytes is a valid HKDF-SHA256 output length");
        SecretBytes::new(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generates_a_private_key_once_and_reuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let a = RootKey::load_or_create(&data, None).unwrap();
        let path = data.join(ROOT_KEY_FILE_NAME);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(&data).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let b = RootKey::load_or_create(&data, None).unwrap();
        assert_eq!(a.key, b.key);
        assert_eq!(a.path(), path);
        assert!(!format!("{a:?}").contains(&format!("{:?}", a.key.expose())));
    }

    #[test]
    fn refuses_group_or_other_accessible_key_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rk");
        fs::write(&path, [7u8; 32]).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let msg = RootKey::load(&path).unwrap_err().to_string();
            assert!(
                msg.contains("chmod 600") && msg.contains(&format!("{mode:04o}")),
                "{msg}"
            );
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(RootKey::load(&path).is_ok());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(RootKey::load(&path).is_ok());
    }

    #[test]
    fn explicit_file_must_exist_and_be_32_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.key");
        let msg = RootKey::load_or_create(dir.path(), Some(&missing))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("does not exist") && msg.contains(ROOT_KEY_ENV),
            "{msg}"
        );
        assert!(
            !dir.path().join(ROOT_KEY_FILE_NAME).exists(),
            "no silent fallback key"
        );
        let short = dir.path().join("short.key");
        fs::write(&short, [1u8; 16]).unwrap();
        fs::set_permissions(&short, fs::Permissions::from_mode(0o600)).unwrap();
        let msg = RootKey::load_or_create(dir.path(), Some(&short))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("16 bytes"), "{msg}");
    }

    #[test]
    fn derived_keys_differ_by_purpose() {
        let dir = tempfile::tempdir().unwrap();
        let k = RootKey::load_or_create(dir.path(), None).unwrap();
        assert_ne!(k.derive(b"a").expose(), k.derive(b"b").expose());
        assert_eq!(k.derive(b"a").expose(), k.derive(b"a").expose());
    }
}
