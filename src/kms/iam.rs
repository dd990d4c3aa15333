//! IAM identities: the users of the data dir's account and the access keys
//! that authenticate them (and the account root) to `cryptvol kms serve`.
//!
//! Why secrets are sealed, not hashed: AWS Signature Version 4 proves
//! possession of the secret by an HMAC keyed with it, so the verifier needs
//! the secret itself. Each secret is sealed with AES-256-GCM under a key
//! derived from the root key (`RootKey::derive("iam")`), with the access
//! key id and its owner's ARN as associated data: a copy of `iam.json`
//! alone reveals no secret, and moving a sealed secret to another key id or
//! user makes it unopenable.
//!
//! On disk:
//!
//! ```text
//! <data_dir>/iam.json   {"Version": 1, "Users": {...}, "AccessKeys": [...]}, 0600, atomic replace
//! <data_dir>/iam.lock   flock target for read-modify-write (CLI and server processes)
//! ```
//!
//! AWS rules kept: user names are 1–64 characters of `[A-Za-z0-9+=,.@_-]`
//! and unique regardless of case; at most two access keys per user (and per
//! root); a user with access keys cannot be deleted (`DeleteConflict`);
//! access key ids are `AKIA` + 16 base-32 characters, secrets 40 characters,
//! shown only when created.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::Rng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::account;
use super::arn;
use super::error::KmsError;
use super::rootkey::{RootKey, ROOT_KEY_ENV};
use crate::crypto::aead::{self, NONCE_LEN};
use crate::crypto::SecretBytes;
use crate::fsutil::{self, FileLock, FsError};

/// File name of the identity store inside the data dir.
pub const IAM_FILE_NAME: &str = "iam.json";
/// File name of its lock file.
pub const IAM_LOCK_NAME: &str = "iam.lock";
/// Format version of `iam.json`.
const FORMAT_VERSION: u32 = 1;
/// AWS quota: access keys per user (and for the root).
pub const MAX_ACCESS_KEYS: usize = 2;
/// AWS limit on user name length.
pub const MAX_USER_NAME_LEN: usize = 64;
/// `AKIA` + 16 characters, as AWS long-term access key ids.
pub const ACCESS_KEY_ID_LEN: usize = 20;
/// AWS secret access keys are 40 characters.
pub const SECRET_LEN: usize = 40;
/// HKDF purpose of the sealing key.
const SEAL_PURPOSE: &[u8] = b"iam";
/// Domain separation of the associated data.
const AAD_PREFIX: &str = "cryptvol-iam-secret-v1";
/// Characters of access key ids after the prefix (base-32, as AWS's).
const KEY_ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Characters of secrets (AWS's secrets are base-64 characters).
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// An IAM failure, named after the IAM error code it corresponds to.
#[derive(Debug, thiserror::Error)]
pub enum IamError {
    /// `NoSuchEntity`.
    #[error("{0}")]
    NoSuchEntity(String),
    /// `EntityAlreadyExists`.
    #[error("{0}")]
    EntityAlreadyExists(String),
    /// `DeleteConflict`: the user still has access keys.
    #[error("{0}")]
    DeleteConflict(String),
    /// `LimitExceeded`: already two access keys.
    #[error("{0}")]
    LimitExceeded(String),
    /// `ValidationError`: a malformed name or id.
    #[error("{0}")]
    Validation(String),
    /// The store is unreadable or was tampered with.
    #[error("{0}")]
    Corrupt(String),
    /// Opening the root key or account failed.
    #[error(transparent)]
    Kms(#[from] KmsError),
    #[error(transparent)]
    Storage(#[from] FsError),
}

impl IamError {
    /// The IAM error code (`NoSuchEntity`, …), for `--output json` callers.
    pub fn code(&self) -> &'static str {
        match self {
            IamError::NoSuchEntity(_) => "NoSuchEntity",
            IamError::EntityAlreadyExists(_) => "EntityAlreadyExists",
            IamError::DeleteConflict(_) => "DeleteConflict",
            IamError::LimitExceeded(_) => "LimitExceeded",
            IamError::Validation(_) => "ValidationError",
            IamError::Corrupt(_) | IamError::Kms(_) | IamError::Storage(_) => "ServiceFailure",
        }
    }
}

/// An IAM user, as AWS `User` (the fields cryptvol has).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct User {
    pub user_name: String,
    /// `AIDA` + 17 characters.
    pub user_id: String,
    pub arn: String,
    pub path: String,
    /// Seconds since the epoch.
    pub create_date: u64,
}

/// AWS `AccessKeyMetadata`. `user_name` is `None` for the root's keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccessKeyMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    pub access_key_id: String,
    /// `Active` or `Inactive`.
    pub status: String,
    pub create_date: u64,
}

/// A new access key with its secret: the only time the secret is shown.
/// `Debug` redacts the secret.
pub struct NewAccessKey {
    pub metadata: AccessKeyMetadata,
    pub secret_access_key: Zeroizing<String>,
}

impl std::fmt::Debug for NewAccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAccessKey")
            .field("metadata", &self.metadata)
            .field("secret_access_key", &"[redacted]")
            .finish()
    }
}

/// What a verifier needs for one access key: whose it is and its secret.
#[derive(Debug)]
pub struct Credential {
    pub access_key_id: String,
    /// `arn:aws:iam::<account>:root` or `…:user/<name>`.
    pub principal_arn: String,
    /// The unique id of the principal (`AIDA…` for users, the account id
    /// for the root), as STS GetCallerIdentity reports it.
    pub user_id: String,
    pub active: bool,
    /// The secret access key (zeroized on drop, redacted in `Debug`).
    pub secret: SecretBytes,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StoredKey {
    #[serde(flatten)]
    meta: AccessKeyMetadata,
    /// Base64 of the GCM nonce.
    nonce: String,
    /// Base64 of the sealed secret (ciphertext and tag).
    sealed_secret: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct IamFile {
    version: u32,
    /// Keyed by user name.
    users: BTreeMap<String, User>,
    access_keys: Vec<StoredKey>,
}

/// The identity store of one data dir. Each call reads the current file,
/// so a CLI process and a running server see each other's changes.
pub struct Iam {
    path: PathBuf,
    lock_path: PathBuf,
    account_id: String,
    seal_key: SecretBytes,
}

impl std::fmt::Debug for Iam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iam")
            .field("path", &self.path)
            .field("account_id", &self.account_id)
            .finish_non_exhaustive()
    }
}

impl Iam {
    /// Opens the identity store of `data_dir`, creating the data dir, root
    /// key (unless `CRYPTVOL_ROOT_KEY_FILE` names one) and account on first
    /// use, as `LocalKms::open` does. The file itself appears on first write.
    pub fn open(data_dir: &Path) -> Result<Iam, IamError> {
        let from_env = std::env::var_os(ROOT_KEY_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let root = RootKey::load_or_create(data_dir, from_env.as_deref())?;
        let account_id = account::load_or_create(data_dir)?;
        let path = data_dir.join(IAM_FILE_NAME);
        fsutil::ensure_private(&path, fsutil::Private::File)?;
        Ok(Iam {
            path,
            lock_path: data_dir.join(IAM_LOCK_NAME),
            account_id,
            seal_key: root.derive(SEAL_PURPOSE),
        })
    }

    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    /// `arn:aws:iam::<account>:user/<name>`.
    pub fn user_arn(&self, name: &str) -> String {
        format!(
            "arn:{}:iam::{}:user/{name}",
            arn::PARTITION,
            self.account_id
        )
    }

    fn load(&self) -> Result<IamFile, IamError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(IamFile {
                    version: FORMAT_VERSION,
                    ..IamFile::default()
                })
            }
            Err(e) => return Err(FsError::new("read", &self.path, e).into()),
        };
        let file: IamFile = serde_json::from_slice(&bytes).map_err(|e| {
            IamError::Corrupt(format!(
                "identity store {} is not valid ({e}); restore it from a backup",
                self.path.display()
            ))
        })?;
        if file.version != FORMAT_VERSION {
            return Err(IamError::Corrupt(format!(
                "identity store {} has format version {}; this cryptvol reads version \
                 {FORMAT_VERSION} (use the cryptvol release that wrote it)",
                self.path.display(),
                file.version
            )));
        }
        Ok(file)
    }

    /// Runs `f` on the current store under the lock and writes the result
    /// atomically.
    fn update<T>(
        &self,
        f: impl FnOnce(&mut IamFile) -> Result<T, IamError>,
    ) -> Result<T, IamError> {
        if let Some(dir) = self.path.parent() {
            fsutil::create_private_dir_all(dir)?;
        }
        let _lock = FileLock::exclusive(&self.lock_path)?;
        let mut file = self.load()?;
        let out = f(&mut file)?;
        let json = serde_json::to_vec_pretty(&file).expect("BUG: IamFile serializes");
        fsutil::write_atomic(&self.path, &json)?;
        Ok(out)
    }

    /// CreateUser.
    pub fn create_user(&self, name: &str) -> Result<User, IamError> {
        validate_user_name(name)?;
        let user = User {
            user_name: name.to_owned(),
            user_id: random_id("AIDA", 17),
            arn: self.user_arn(name),
            path: "/".to_owned(),
            create_date: super::now(),
        };
        self.update(|f| {
            if let Some(existing) = find_user(f, name) {
                return Err(IamError::EntityAlreadyExists(format!(
                    "user {existing} already exists (user names are not case-sensitive); \
                     choose another name or list users with `cryptvol iam list-users`"
                )));
            }
            f.users.insert(name.to_owned(), user.clone());
            Ok(user)
        })
    }

    /// DeleteUser. Refused while the user has access keys, as AWS does.
    pub fn delete_user(&self, name: &str) -> Result<User, IamError> {
        self.update(|f| {
            let user = self.existing_user(f, name)?;
            let keys: Vec<&str> = f
                .access_keys
                .iter()
                .filter(|k| k.meta.user_name.as_deref() == Some(user.as_str()))
                .map(|k| k.meta.access_key_id.as_str())
                .collect();
            if !keys.is_empty() {
                return Err(IamError::DeleteConflict(format!(
                    "user {user} still has access keys ({}); delete them first with \
                     `cryptvol iam delete-access-key --user-name {user} --access-key-id <id>`",
                    keys.join(", ")
                )));
            }
            f.users
                .remove(&user)
                .ok_or_else(|| IamError::NoSuchEntity(no_user(name)))
        })
    }

    /// ListUsers, in name order.
    pub fn list_users(&self) -> Result<Vec<User>, IamError> {
        Ok(self.load()?.users.into_values().collect())
    }

    /// GetUser.
    pub fn get_user(&self, name: &str) -> Result<User, IamError> {
        let f = self.load()?;
        let stored = self.existing_user(&f, name)?;
        f.users
            .get(&stored)
            .cloned()
            .ok_or_else(|| IamError::NoSuchEntity(no_user(name)))
    }

    /// CreateAccessKey for `user` (`None`: the account root).
    pub fn create_access_key(&self, user: Option<&str>) -> Result<NewAccessKey, IamError> {
        let secret = random_secret();
        self.update(|f| {
            let owner = match user {
                Some(u) => Some(self.existing_user(f, u)?),
                None => None,
            };
            let count = f
                .access_keys
                .iter()
                .filter(|k| k.meta.user_name == owner)
                .count();
            if count >= MAX_ACCESS_KEYS {
                return Err(IamError::LimitExceeded(format!(
                    "{} already has {count} access keys, the most allowed; delete one with \
                     `cryptvol iam delete-access-key --access-key-id <id>{}`",
                    owner_label(owner.as_deref()),
                    owner
                        .as_deref()
                        .map(|u| format!(" --user-name {u}"))
                        .unwrap_or_default()
                )));
            }
            let access_key_id = loop {
                let id = random_id("AKIA", ACCESS_KEY_ID_LEN - 4);
                if !f.access_keys.iter().any(|k| k.meta.access_key_id == id) {
                    break id;
                }
            };
            let meta = AccessKeyMetadata {
                user_name: owner.clone(),
                access_key_id,
                status: "Active".to_owned(),
                create_date: super::now(),
            };
            let aad = self.aad(&meta.access_key_id, owner.as_deref());
            let sealed = aead::seal(&self.seal_key, secret.as_bytes(), aad.as_bytes());
            f.access_keys.push(StoredKey {
                meta: meta.clone(),
                nonce: STANDARD.encode(sealed.nonce),
                sealed_secret: STANDARD.encode(&sealed.ciphertext),
            });
            Ok(meta)
        })
        .map(|metadata| NewAccessKey {
            metadata,
            secret_access_key: secret,
        })
    }

    /// DeleteAccessKey. With `user`, the key must belong to that user;
    /// without, to the root (as AWS infers the user from the caller).
    pub fn delete_access_key(
        &self,
        access_key_id: &str,
        user: Option<&str>,
    ) -> Result<AccessKeyMetadata, IamError> {
        validate_access_key_id(access_key_id)?;
        self.update(|f| {
            let owner = match user {
                Some(u) => Some(self.existing_user(f, u)?),
                None => None,
            };
            let pos = f
                .access_keys
                .iter()
                .position(|k| k.meta.access_key_id == access_key_id && k.meta.user_name == owner)
                .ok_or_else(|| {
                    IamError::NoSuchEntity(format!(
                        "{} has no access key {access_key_id}; list its keys with \
                         `cryptvol iam list-access-keys{}`",
                        owner_label(owner.as_deref()),
                        owner
                            .as_deref()
                            .map(|u| format!(" --user-name {u}"))
                            .unwrap_or_default()
                    ))
                })?;
            Ok(f.access_keys.remove(pos).meta)
        })
    }

    /// ListAccessKeys of `user` (`None`: the root's).
    pub fn list_access_keys(&self, user: Option<&str>) -> Result<Vec<AccessKeyMetadata>, IamError> {
        let f = self.load()?;
        let owner = match user {
            Some(u) => Some(self.existing_user(&f, u)?),
            None => None,
        };
        Ok(f.access_keys
            .into_iter()
            .filter(|k| k.meta.user_name == owner)
            .map(|k| k.meta)
            .collect())
    }

    /// The credential behind `access_key_id`, with its secret unsealed, or
    /// `None` if no such key exists. A key whose owner was removed behind
    /// our back, or whose sealed secret does not open, is an error.
    pub fn credential(&self, access_key_id: &str) -> Result<Option<Credential>, IamError> {
        if validate_access_key_id(access_key_id).is_err() {
            return Ok(None);
        }
        let f = self.load()?;
        let Some(k) = f
            .access_keys
            .iter()
            .find(|k| k.meta.access_key_id == access_key_id)
        else {
            return Ok(None);
        };
        let (principal_arn, user_id) = match &k.meta.user_name {
            Some(u) => match f.users.get(u) {
                Some(user) => (self.user_arn(u), user.user_id.clone()),
                None => {
                    return Err(IamError::Corrupt(format!(
                        "access key {access_key_id} belongs to user {u}, who is missing from {}",
                        self.path.display()
                    )))
                }
            },
            None => (
                arn::root_principal(&self.account_id),
                self.account_id.clone(),
            ),
        };
        let tampered = || {
            IamError::Corrupt(format!(
                "the sealed secret of access key {access_key_id} in {} does not open under this \
                 data dir's root key: the file was altered or belongs to another root key",
                self.path.display()
            ))
        };
        let nonce: [u8; NONCE_LEN] = STANDARD
            .decode(&k.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(tampered)?;
        let sealed = STANDARD.decode(&k.sealed_secret).map_err(|_| tampered())?;
        let aad = self.aad(access_key_id, k.meta.user_name.as_deref());
        let secret =
            aead::open(&self.seal_key, &nonce, &sealed, aad.as_bytes()).map_err(|_| tampered())?;
        Ok(Some(Credential {
            access_key_id: access_key_id.to_owned(),
            principal_arn,
            user_id,
            active: k.meta.status == "Active",
            secret,
        }))
    }

    /// The stored spelling of user `name` (looked up regardless of case).
    fn existing_user(&self, f: &IamFile, name: &str) -> Result<String, IamError> {
        find_user(f, name).ok_or_else(|| IamError::NoSuchEntity(no_user(name)))
    }

    fn aad(&self, access_key_id: &str, user: Option<&str>) -> String {
        let owner = match user {
            Some(u) => self.user_arn(u),
            None => arn::root_principal(&self.account_id),
        };
        format!("{AAD_PREFIX}\0{access_key_id}\0{owner}")
    }
}

fn find_user(f: &IamFile, name: &str) -> Option<String> {
    f.users
        .keys()
        .find(|u| u.eq_ignore_ascii_case(name))
        .cloned()
}

fn no_user(name: &str) -> String {
    format!(
        "the user with name {name} cannot be found; create it with `cryptvol iam create-user {name}` \
         or list users with `cryptvol iam list-users`"
    )
}

fn owner_label(user: Option<&str>) -> String {
    match user {
        Some(u) => format!("user {u}"),
        None => "the account root".to_owned(),
    }
}

/// AWS user names: 1–64 characters of `[A-Za-z0-9+=,.@_-]`.
pub fn validate_user_name(name: &str) -> Result<(), IamError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c);
    if name.is_empty() || name.len() > MAX_USER_NAME_LEN || !name.chars().all(ok_char) {
        return Err(IamError::Validation(format!(
            "user name {name:?} is not valid: use 1 to {MAX_USER_NAME_LEN} letters, digits or \
             the characters + = , . @ _ -"
        )));
    }
    Ok(())
}

/// `AKIA` + 16 base-32 characters.
pub fn validate_access_key_id(id: &str) -> Result<(), IamError> {
    let ok = id.len() == ACCESS_KEY_ID_LEN
        && id.starts_with("AKIA")
        && id.bytes().skip(4).all(|b| KEY_ID_ALPHABET.contains(&b));
    if !ok {
        return Err(IamError::Validation(format!(
            "access key id {id:?} is not valid: access key ids are 20 characters starting with AKIA"
        )));
    }
    Ok(())
}

fn random_from(alphabet: &[u8], len: usize) -> Zeroizing<String> {
    let mut rng = rand::rngs::OsRng;
    Zeroizing::new(
        (0..len)
            .map(|_| char::from(alphabet[rng.gen_range(0..alphabet.len())]))
            .collect(),
    )
}

fn random_id(prefix: &str, len: usize) -> String {
    format!("{prefix}{}", random_from(KEY_ID_ALPHABET, len).as_str())
}

fn random_secret() -> Zeroizing<String> {
    random_from(SECRET_ALPHABET, SECRET_LEN)
}

#[cfg(test)]
mod tests;
