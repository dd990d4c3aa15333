//! Encryption by default: a per-region setting, as in EBS. When enabled,
//! new volumes and snapshot copies are encrypted with the configured key
//! (or `alias/aws/ebs`), and requests for unencrypted volumes are refused.
//! Stored in `<data_dir>/regions/<region>/ebs-defaults.json`.

use std::path::{Path, PathBuf};

use super::DEFAULT_KEY_ALIAS;
use crate::fsutil::FsError;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EncryptionDefaults {
    pub enabled: bool,
    /// The default key; `None` means `alias/aws/ebs`.
    pub kms_key_id: Option<String>,
}

fn path(data_dir: &Path, region: &str) -> PathBuf {
    data_dir
        .join("regions")
        .join(region)
        .join("ebs-defaults.json")
}

impl EncryptionDefaults {
    /// The region's setting (disabled when never set).
    pub fn load(data_dir: &Path, region: &str) -> Result<Self, FsError> {
        let p = path(data_dir, region);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| FsError::new("parse", &p, std::io::Error::other(e))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(FsError::new("read", &p, e)),
        }
    }

    pub fn save(&self, data_dir: &Path, region: &str) -> Result<(), FsError> {
        let p = path(data_dir, region);
        if let Some(dir) = p.parent() {
            crate::fsutil::create_private_dir_all(dir)?;
        }
        crate::fsutil::write_atomic(
            &p,
            &serde_json::to_vec_pretty(self).expect("BUG: defaults serialize"),
        )
    }

    /// The key new encrypted volumes use when none is given.
    pub fn key(&self) -> String {
        self.kms_key_id
            .clone()
            .unwrap_or_else(|| DEFAULT_KEY_ALIAS.to_string())
    }

    /// Applies the setting to a request: `(encrypted, key)` in,
    /// what to actually do out; refuses unencrypted while enabled.
    pub fn apply(
        &self,
        region: &str,
        encrypted: bool,
        key: Option<String>,
    ) -> Result<(bool, Option<String>), super::Error> {
        if !self.enabled {
            return Ok((encrypted, key));
        }
        if !encrypted {
            return Err(super::Error::EncryptionRequired(region.to_string()));
        }
        Ok((true, Some(key.unwrap_or_else(|| self.key()))))
    }
}
