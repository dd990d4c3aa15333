//! The per-region key store: `<data_dir>/regions/<region>/kms/keys.json`.
//!
//! Why it is built this way:
//!
//! - **Sealed material.** Each material version is AES-256-GCM-sealed under
//!   the root key with AAD = `"cryptvol/kms/key-material/v1"` ‖ key id
//!   (u32 LE length + bytes) ‖ version (u32 LE), so sealed material cannot
//!   be moved to another key or version.
//! - **Authenticated metadata.** Sealing the material does not stop someone
//!   with write access from re-enabling a disabled key or re-pointing an
//!   alias, so the whole state carries an HMAC-SHA256 under a key derived
//!   from the root key. Any edit outside cryptvol is detected on load.
//! - **Root key check.** A small value sealed under the root key tells "this
//!   is the wrong root key" apart from "this file was altered", so each gets
//!   its own message.
//! - **Atomic, durable, serialized writes.** Mutations run under an
//!   exclusive `flock` on `keys.lock` as load → change → check invariants →
//!   write-temp/fsync/rename/fsync-dir ([`crate::fsutil`]), so two processes
//!   (a server and a CLI call) never lose each other's updates. Reads take
//!   no lock: a rename is atomic, so a reader sees the old or the new file.
//! - **Versioned format.** A `format` number; files from a newer cryptvol
//!   are refused with a message rather than misread.
//!
//! File layout (pretty JSON):
//!
//! ```text
//! { "format": 1, "mac": "<base64 HMAC of the compact JSON of state>",
//!   "state": { "region", "account_id", "root_key_check",
//!              "keys": { "<key-id>": KeyRecord, … },
//!              "aliases": { "alias/<name>": AliasRecord, … } } }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};

use super::arn;
use super::error::KmsError;
use super::model::{b64, AliasRecord, KeyRecord, KeyState, MaterialVersion, SealedBytes};
use super::rootkey::{RootKey, ROOT_KEY_ENV};
use crate::crypto::SecretBytes;
use crate::fsutil::{self, FileLock};

/// The on-disk format this code reads and writes.
pub const STORE_FORMAT: u32 = 1;
pub const KEYS_FILE_NAME: &str = "keys.json";
pub const LOCK_FILE_NAME: &str = "keys.lock";
const MATERIAL_AAD_LABEL: &[u8] = b"cryptvol/kms/key-material/v1";
const ROOT_CHECK_AAD_LABEL: &[u8] = b"cryptvol/kms/root-key-check/v1";
const STORE_MAC_PURPOSE: &[u8] = b"cryptvol/kms/keystore-mac/v1";

/// `<data_dir>/regions/<region>/kms`: the region's KMS directory.
pub fn region_dir(data_dir: &Path, region: &str) -> PathBuf {
    data_dir.join("regions").join(region).join("kms")
}

/// Everything a region's KMS remembers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreState {
    pub region: String,
    pub account_id: String,
    /// An empty-plaintext seal under the root key (see module doc).
    pub root_key_check: SealedBytes,
    /// By key id.
    pub keys: BTreeMap<String, KeyRecord>,
    /// By alias name (`alias/…`).
    pub aliases: BTreeMap<String, AliasRecord>,
}

impl StoreState {
    /// Aliases that point at `key_id`, in name order.
    pub fn aliases_of<'a>(&'a self, key_id: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.aliases
            .iter()
            .filter(move |(_, a)| a.target_key_id == key_id)
            .map(|(n, _)| n.as_str())
    }
}

#[derive(Serialize, Deserialize)]
struct StoreFile {
    format: u32,
    #[serde(with = "b64")]
    mac: Vec<u8>,
    state: StoreState,
}

/// Reads only the format number, so newer files are refused before their
/// body is misparsed.
#[derive(Deserialize)]
struct FormatProbe {
    format: u32,
}

/// One region's key store in a data dir. Cheap to share: it holds paths and
/// the root key, never parsed state (every call reads the current file).
#[derive(Debug)]
pub struct KeyStore {
    data_dir: PathBuf,
    region: String,
    account_id: String,
    path: PathBuf,
    lock_path: PathBuf,
    root: RootKey,
    mac_key: SecretBytes,
}

impl KeyStore {
    /// Opens (creating on first use) the key store of `region` in
    /// `data_dir`, and checks that it loads.
    pub fn open(
        data_dir: &Path,
        region: &str,
        account_id: &str,
        root: RootKey,
    ) -> Result<KeyStore, KmsError> {
        arn::validate_region(region)?;
        let dir = region_dir(data_dir, region);
        fsutil::create_private_dir_all(&dir)?;
        fsutil::ensure_private(&dir, fsutil::Private::Dir)?;
        fsutil::ensure_private(&dir.join(KEYS_FILE_NAME), fsutil::Private::File)?;
        let mac_key = root.derive(STORE_MAC_PURPOSE);
        let store = KeyStore {
            data_dir: data_dir.to_path_buf(),
            region: region.to_owned(),
            account_id: account_id.to_owned(),
            path: dir.join(KEYS_FILE_NAME),
            lock_path: dir.join(LOCK_FILE_NAME),
            root,
            mac_key,
        };
        if !store.path.exists() {
            let _lock = FileLock::exclusive(&store.lock_path)?;
            if !store.path.exists() {
                let fresh = StoreState {
                    region: store.region.clone(),
                    account_id: store.account_id.clone(),
                    root_key_check: SealedBytes::from(
                        store.root.seal(b"", &store.root_check_aad()),
                    ),
                    keys: BTreeMap::new(),
                    aliases: BTreeMap::new(),
                };
                store.save(&fresh)?;
            }
        }
        store.load()?;
        Ok(store)
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Path of `keys.json`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root key this store is sealed under (the audit log derives its
    /// signing key from it).
    pub fn root(&self) -> &RootKey {
        &self.root
    }

    /// The key store of another region of the same data dir and account,
    /// under the same root key (created on first use). Multi-region keys
    /// use it to place and sync replicas.
    pub fn sibling(&self, region: &str) -> Result<KeyStore, KmsError> {
        KeyStore::open(&self.data_dir, region, &self.account_id, self.root.clone())
    }

    /// A 32-byte key derived from the root key for `purpose` (grant tokens,
    /// import tokens, material fingerprints).
    pub fn derive(&self, purpose: &[u8]) -> SecretBytes {
        self.root.derive(purpose)
    }

    /// Reads and verifies the current state (format, root key, MAC,
    /// invariants). Takes no lock.
    pub fn load(&self) -> Result<StoreState, KmsError> {
        let bytes = fsutil::read(&self.path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                KmsError::Internal(format!(
                    "key store {} has disappeared since cryptvol opened it; restore it from a backup",
                    self.path.display()
                ))
            } else {
                e.into()
            }
        })?;
        let probe: FormatProbe =
            serde_json::from_slice(&bytes).map_err(|e| self.corrupt(&e.to_string()))?;
        if probe.format != STORE_FORMAT {
            return Err(KmsError::Internal(format!(
                "key store {} has format {}, but this cryptvol reads format {STORE_FORMAT}; {}",
                self.path.display(),
                probe.format,
                if probe.format > STORE_FORMAT {
                    "upgrade cryptvol"
                } else {
                    "it is corrupt"
                }
            )));
        }
        let file: StoreFile =
            serde_json::from_slice(&bytes).map_err(|e| self.corrupt(&e.to_string()))?;
        let state = file.state;
        if state.region != self.region || state.account_id != self.account_id {
            return Err(self.corrupt(&format!(
                "it belongs to region {} of account {}, not region {} of account {}",
                state.region, state.account_id, self.region, self.account_id
            )));
        }
        let check = &state.root_key_check;
        if self
            .root
            .open(&check.nonce, &check.ciphertext, &self.root_check_aad())
            .is_err()
        {
            return Err(KmsError::Internal(format!(
                "key store {} was sealed under a different root key than {}; set {ROOT_KEY_ENV} to \
                 the root key file this data dir was created with",
                self.path.display(),
                self.root.path().display()
            )));
        }
        let mut mac = self.mac();
        mac.update(&canonical_json(&state));
        if mac.verify_slice(&file.mac).is_err() {
            return Err(KmsError::Internal(format!(
                "key store {} failed its integrity check: it was modified outside cryptvol. \
                 Restore it from a backup (keys.json must never be edited by hand)",
                self.path.display()
            )));
        }
        check_invariants(&state).map_err(|why| self.corrupt(&why))?;
        Ok(state)
    }

    /// Runs `f` on the current state under the store's exclusive lock and
    /// saves the result if `f` succeeded and changed something. `f` must not
    /// touch the store itself (that would deadlock on the lock).
    pub fn update<T>(
        &self,
        f: impl FnOnce(&mut StoreState) -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        let _lock = FileLock::exclusive(&self.lock_path)?;
        let mut state = self.load()?;
        let before = state.clone();
        let out = f(&mut state)?;
        if state != before {
            check_invariants(&state).map_err(|why| {
                KmsError::Internal(format!(
                    "BUG: refusing to save an inconsistent key store: {why}"
                ))
            })?;
            self.save(&state)?;
        }
        Ok(out)
    }

    /// Seals `material` as version `version` of key `key_id`.
    pub fn seal_material(&self, key_id: &str, version: u32, material: &SecretBytes) -> SealedBytes {
        SealedBytes::from(
            self.root
                .seal(material.expose(), &material_aad(key_id, version)),
        )
    }

    /// Opens version `m` of key `key_id`'s material.
    pub fn unseal_material(
        &self,
        key_id: &str,
        m: &MaterialVersion,
    ) -> Result<SecretBytes, KmsError> {
        self.root
            .open(
                &m.sealed.nonce,
                &m.sealed.ciphertext,
                &material_aad(key_id, m.version),
            )
            .map_err(|_| {
                KmsError::Internal(format!(
                    "key material version {} of key {key_id} in {} failed authentication: the key \
                     store was altered or copied from another data dir; restore it from a backup",
                    m.version,
                    self.path.display()
                ))
            })
    }

    fn save(&self, state: &StoreState) -> Result<(), KmsError> {
        let mut mac = self.mac();
        mac.update(&canonical_json(state));
        let file = StoreFile {
            format: STORE_FORMAT,
            mac: mac.finalize().into_bytes().to_vec(),
            state: state.clone(),
        };
        let mut json = serde_json::to_vec_pretty(&file).expect("BUG: the key store serializes");
        json.push(b'\n');
        fsutil::write_atomic(&self.path, &json)?;
        Ok(())
    }

    fn mac(&self) -> Hmac<sha2::Sha256> {
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(self.mac_key.expose())
            .expect("BUG: HMAC accepts any key length")
    }

    fn root_check_aad(&self) -> Vec<u8> {
        [ROOT_CHECK_AAD_LABEL, self.region.as_bytes()].concat()
    }

    fn corrupt(&self, why: &str) -> KmsError {
        KmsError::Internal(format!(
            "key store {} is corrupt ({why}); restore it from a backup",
            self.path.display()
        ))
    }
}

impl From<crate::crypto::aead::Sealed> for SealedBytes {
    fn from(s: crate::crypto::aead::Sealed) -> SealedBytes {
        SealedBytes {
            nonce: s.nonce,
            ciphertext: s.ciphertext,
        }
    }
}

/// The bytes the MAC covers: compact JSON of the state. serde_json writes
/// struct fields in declaration order and `BTreeMap`s sorted, so equal
/// states give equal bytes.
fn canonical_json(state: &StoreState) -> Vec<u8> {
    serde_json::to_vec(state).expect("BUG: the key store serializes")
}

fn material_aad(key_id: &str, version: u32) -> Vec<u8> {
    let id_len = u32::try_from(key_id.len()).expect("BUG: key ids are short");
    let mut aad = Vec::with_capacity(MATERIAL_AAD_LABEL.len() + 8 + key_id.len());
    aad.extend_from_slice(MATERIAL_AAD_LABEL);
    aad.extend_from_slice(&id_len.to_le_bytes());
    aad.extend_from_slice(key_id.as_bytes());
    aad.extend_from_slice(&version.to_le_bytes());
    aad
}

/// What must hold in every state that is loaded or saved.
fn check_invariants(state: &StoreState) -> Result<(), String> {
    for (id, key) in &state.keys {
        if arn::normalize_key_id(id).as_deref() != Some(id.as_str()) || key.key_id != *id {
            return Err(format!("key entry '{id}' has key id '{}'", key.key_id));
        }
        if !key.material.windows(2).all(|w| w[0].version < w[1].version) {
            return Err(format!("key {id} has material versions out of order"));
        }
        if key.material.first().is_some_and(|m| m.version == 0) {
            return Err(format!(
                "key {id} has material version 0 (versions start at 1)"
            ));
        }
        if (key.key_state == KeyState::PendingDeletion) != key.deletion_date.is_some() {
            return Err(format!(
                "key {id} is {} but {}",
                key.key_state,
                if key.deletion_date.is_some() {
                    "has a deletion date"
                } else {
                    "has no deletion date"
                }
            ));
        }
        let needs_material = matches!(key.key_state, KeyState::Enabled | KeyState::Disabled);
        if needs_material && key.material.is_empty() {
            return Err(format!(
                "key {id} is {} but has no key material",
                key.key_state
            ));
        }
    }
    for (name, alias) in &state.aliases {
        arn::validate_alias_name(name).map_err(|e| e.to_string())?;
        if !state.keys.contains_key(&alias.target_key_id) {
            return Err(format!(
                "alias {name} points at missing key {}",
                alias.target_key_id
            ));
        }
    }
    Ok(())
}

/// The regions of `data_dir` that have a key store, sorted.
pub fn regions(data_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(data_dir.join("regions")) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|r| arn::validate_region(r).is_ok())
        .filter(|r| region_dir(data_dir, r).join(KEYS_FILE_NAME).exists())
        .collect();
    out.sort();
    out
}

/// The region, other than `except`, whose key store in `data_dir` holds
/// `key_id`, if any. Only for error messages ("that blob belongs to
/// us-west-2"): it reads other regions' files without verifying them.
pub fn find_key_in_other_region(data_dir: &Path, key_id: &str, except: &str) -> Option<String> {
    let entries = std::fs::read_dir(data_dir.join("regions")).ok()?;
    entries.flatten().find_map(|entry| {
        let region = entry.file_name().into_string().ok()?;
        if region == except || arn::validate_region(&region).is_err() {
            return None;
        }
        let bytes = std::fs::read(region_dir(data_dir, &region).join(KEYS_FILE_NAME)).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        v.get("state")?.get("keys")?.get(key_id).map(|_| region)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::kms::model::{KeyManager, KeySpec, KeyUsage, Origin};

    const ACCOUNT: &str = "111122223333";
    const ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

    fn open(dir: &Path) -> KeyStore {
        let root = RootKey::load_or_create(dir, None).unwrap();
        KeyStore::open(dir, "us-east-1", ACCOUNT, root).unwrap()
    }

    fn add_key(store: &KeyStore) {
        let material = SecretBytes::random(32);
        let sealed = store.seal_material(ID, 1, &material);
        store
            .update(|s| {
                s.keys.insert(
                    ID.into(),
                    KeyRecord {
                        description: "d".into(),
                        material: vec![MaterialVersion {
                            version: 1,
                            creation_date: 1,
                            sealed,
                            rotation_type: None,
                        }],
                        ..KeyRecord::new(
                            ID.into(),
                            1,
                            KeySpec::SymmetricDefault,
                            KeyUsage::EncryptDecrypt,
                            Origin::AwsKms,
                            KeyManager::Customer,
                        )
                    },
                );
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn creates_private_store_and_round_trips_material() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let material = SecretBytes::random(32);
        let sealed = store.seal_material(ID, 3, &material);
        let mv = MaterialVersion {
            version: 3,
            creation_date: 0,
            sealed,
            rotation_type: None,
        };
        assert_eq!(store.unseal_material(ID, &mv).unwrap(), material);
        // Bound to key id and version.
        let other = "1234abcd-12ab-34cd-56ef-1234567890ac";
        assert!(store.unseal_material(other, &mv).is_err());
        let moved = MaterialVersion { version: 4, ..mv };
        assert!(store.unseal_material(ID, &moved).is_err());
    }

    #[test]
    fn any_edit_to_keys_json_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        add_key(&store);
        let text = std::fs::read_to_string(store.path()).unwrap();
        let edited = text.replace("\"Enabled\"", "\"Disabled\"");
        assert_ne!(text, edited);
        std::fs::write(store.path(), edited).unwrap();
        let msg = store.load().unwrap_err().to_string();
        assert!(
            msg.contains("integrity check") && msg.contains("keys.json"),
            "{msg}"
        );
    }

    #[test]
    fn wrong_root_key_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()));
        let other = dir.path().join("other.key");
        std::fs::write(&other, [9u8; 32]).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
        let root = RootKey::load(&other).unwrap();
        let msg = KeyStore::open(dir.path(), "us-east-1", ACCOUNT, root)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("different root key") && msg.contains(ROOT_KEY_ENV),
            "{msg}"
        );
    }

    #[test]
    fn newer_format_is_refused_with_upgrade_hint() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        std::fs::write(store.path(), br#"{"format": 2, "whatever": true}"#).unwrap();
        let msg = store.load().unwrap_err().to_string();
        assert!(
            msg.contains("format 2") && msg.contains("upgrade cryptvol"),
            "{msg}"
        );
        std::fs::write(store.path(), b"{not json").unwrap();
        assert!(store.load().unwrap_err().to_string().contains("corrupt"));
    }

    #[test]
    fn failed_update_changes_nothing_and_finds_other_regions() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        add_key(&store);
        let before = std::fs::read(store.path()).unwrap();
        let r: Result<(), _> = store.update(|s| {
            s.keys.clear();
            Err(KmsError::Validation("no".into()))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read(store.path()).unwrap(), before);
        // An invariant violation is refused, not saved.
        let r = store.update(|s| {
            s.aliases.insert(
                "alias/x".into(),
                AliasRecord {
                    target_key_id: "missing".into(),
                    creation_date: 0,
                    last_updated_date: None,
                },
            );
            Ok(())
        });
        assert!(r.unwrap_err().to_string().contains("BUG"));
        assert_eq!(
            find_key_in_other_region(dir.path(), ID, "eu-west-1").as_deref(),
            Some("us-east-1")
        );
        assert_eq!(find_key_in_other_region(dir.path(), ID, "us-east-1"), None);
    }
}
