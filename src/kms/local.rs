//! `LocalKms`: the embedded [`KeyService`], keeping its keys in the data
//! dir.
//!
//! Every operation has the same shape — validate the request, resolve the
//! key (any of the four spellings; `alias/aws/<service>` creates its AWS
//! managed key on first use, as AWS does), authorize the caller, check the
//! key's state and usage, act — so the full KMS can add policies, grants
//! and the audit record at one place each.
//!
//! Secrets: unsealed key material and generated data keys live only in
//! [`SecretBytes`] (zeroized on drop) for the length of one call; errors
//! name keys, versions, regions and contexts, never bytes.
//!
//! XXX: until key policies and grants land (issue 3), every principal of
//! this account may do everything and other accounts nothing.

use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::account;
use super::arn::{self, KeyRef};
use super::blob::{Blob, MAX_BLOB_LEN};
use super::context::{self, EncryptionContext};
use super::error::KmsError;
use super::keystore::{self, KeyStore, StoreState};
use super::model::{
    AliasRecord, KeyManager, KeyRecord, KeySpec, KeyState, KeyUsage, MaterialVersion, Origin,
};
use super::rootkey::{RootKey, ROOT_KEY_ENV};
use super::service::{
    AliasListEntry, Caller, CreateKeyRequest, DecryptResponse, GenerateDataKeyResponse,
    KeyMetadata, KeyService,
};
use crate::crypto::SecretBytes;

/// GenerateDataKey `NumberOfBytes` range (AWS).
pub const DATA_KEY_BYTES: std::ops::RangeInclusive<usize> = 1..=1024;
/// CreateKey `Description` limit (AWS).
pub const MAX_DESCRIPTION_LEN: usize = 8192;
/// Aliases per key (AWS quota).
pub const MAX_ALIASES_PER_KEY: usize = 50;
/// SYMMETRIC_DEFAULT material is an AES-256 key.
const SYMMETRIC_MATERIAL_LEN: usize = 32;

/// An AWS managed key that exists once a service first asks for it.
#[derive(Debug)]
pub struct ManagedKey {
    pub alias: &'static str,
    pub description: &'static str,
}

/// The AWS managed keys cryptvol knows. EBS is the one volumes use when no
/// `--kms-key-id` is given.
pub const AWS_MANAGED_KEYS: &[ManagedKey] = &[ManagedKey {
    alias: "alias/aws/ebs",
    description: "Default key that protects my EBS volumes when no other key is defined",
}];

/// The embedded KMS of one region of a data dir. `Send + Sync`; each call
/// reads the current key store, so several `LocalKms` (in one process or
/// several) share one data dir safely.
#[derive(Debug)]
pub struct LocalKms {
    store: KeyStore,
}

/// A key id a name resolved to, or an AWS managed key still to be made.
enum Resolved {
    Key(String),
    MissingManaged(&'static ManagedKey),
}

impl LocalKms {
    /// Opens the KMS of `region` in `data_dir`, creating on first use the
    /// data dir, root key (unless `CRYPTVOL_ROOT_KEY_FILE` names one),
    /// account id and key store.
    pub fn open(data_dir: &Path, region: &str) -> Result<LocalKms, KmsError> {
        let from_env = std::env::var_os(ROOT_KEY_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        LocalKms::open_with_root_key_file(data_dir, region, from_env.as_deref())
    }

    /// [`LocalKms::open`] with the root key file given explicitly instead of
    /// through the environment (`None`: `<data_dir>/root.key`).
    pub fn open_with_root_key_file(
        data_dir: &Path,
        region: &str,
        root_key_file: Option<&Path>,
    ) -> Result<LocalKms, KmsError> {
        arn::validate_region(region)?;
        let root = RootKey::load_or_create(data_dir, root_key_file)?;
        let account_id = account::load_or_create(data_dir)?;
        let store = KeyStore::open(data_dir, region, &account_id, root)?;
        Ok(LocalKms { store })
    }

    /// The account root, `arn:aws:iam::<account>:root`: who the local CLI
    /// acts as.
    pub fn root_caller(&self) -> Caller {
        Caller::account_root(self.account_id())
    }

    pub fn account_id(&self) -> &str {
        self.store.account_id()
    }

    pub fn data_dir(&self) -> &Path {
        self.store.data_dir()
    }

    /// Resolves any key spelling to a key id present in the returned state,
    /// creating an AWS managed key on first use.
    fn resolve(&self, key: &str) -> Result<(StoreState, String), KmsError> {
        let key_ref = KeyRef::parse(key)?;
        let state = self.store.load()?;
        match self.resolve_in(&state, &key_ref, key)? {
            Resolved::Key(id) => Ok((state, id)),
            Resolved::MissingManaged(m) => self.create_managed(m),
        }
    }

    fn resolve_in(
        &self,
        state: &StoreState,
        key_ref: &KeyRef,
        original: &str,
    ) -> Result<Resolved, KmsError> {
        let alias = match key_ref {
            KeyRef::KeyId(id) => return self.existing_key(state, id, original),
            KeyRef::KeyArn {
                region,
                account,
                key_id,
            } => {
                self.check_home(original, region, account)?;
                return self.existing_key(state, key_id, original);
            }
            KeyRef::AliasName(name) => name,
            KeyRef::AliasArn {
                region,
                account,
                alias_name,
            } => {
                self.check_home(original, region, account)?;
                alias_name
            }
        };
        if let Some(a) = state.aliases.get(alias) {
            return Ok(Resolved::Key(a.target_key_id.clone()));
        }
        match AWS_MANAGED_KEYS.iter().find(|m| m.alias == alias) {
            Some(m) => Ok(Resolved::MissingManaged(m)),
            None => Err(KmsError::alias_not_found(alias, self.region())),
        }
    }

    fn existing_key(
        &self,
        state: &StoreState,
        key_id: &str,
        original: &str,
    ) -> Result<Resolved, KmsError> {
        if state.keys.contains_key(key_id) {
            return Ok(Resolved::Key(key_id.to_owned()));
        }
        match keystore::find_key_in_other_region(self.data_dir(), key_id, self.region()) {
            Some(r) => Err(KmsError::wrong_region(original, &r, self.region())),
            None => Err(KmsError::key_not_found(original, self.region())),
        }
    }

    /// ARNs must name this region and account.
    fn check_home(&self, original: &str, region: &str, account: &str) -> Result<(), KmsError> {
        if region != self.region() {
            return Err(KmsError::wrong_region(original, region, self.region()));
        }
        if account != self.account_id() {
            return Err(KmsError::wrong_account(
                original,
                account,
                self.account_id(),
            ));
        }
        Ok(())
    }

    /// Creates the AWS managed key behind `m.alias` unless another call (or
    /// process) just did.
    fn create_managed(&self, m: &'static ManagedKey) -> Result<(StoreState, String), KmsError> {
        self.store.update(|s| {
            let id = match s.aliases.get(m.alias) {
                Some(a) => a.target_key_id.clone(),
                None => {
                    let id = self.insert_new_key(s, m.description, KeyManager::Aws);
                    s.aliases.insert(m.alias.to_owned(), AliasRecord { target_key_id: id.clone(), creation_date: super::now() });
                    tracing::info!(alias = m.alias, key_id = %id, region = self.region(), "created AWS managed key");
                    id
                }
            };
            Ok((s.clone(), id))
        })
    }

    /// Adds a new enabled SYMMETRIC_DEFAULT key with fresh material.
    fn insert_new_key(&self, s: &mut StoreState, description: &str, manager: KeyManager) -> String {
        let key_id = loop {
            let id = Uuid::new_v4().hyphenated().to_string();
            if !s.keys.contains_key(&id) {
                break id;
            }
        };
        let material = SecretBytes::random(SYMMETRIC_MATERIAL_LEN);
        let now = super::now();
        let sealed = self.store.seal_material(&key_id, 1, &material);
        s.keys.insert(
            key_id.clone(),
            KeyRecord {
                description: description.to_owned(),
                material: vec![MaterialVersion {
                    version: 1,
                    creation_date: now,
                    sealed,
                    rotation_type: None,
                }],
                ..KeyRecord::new(
                    key_id.clone(),
                    now,
                    KeySpec::SymmetricDefault,
                    KeyUsage::EncryptDecrypt,
                    Origin::AwsKms,
                    manager,
                )
            },
        );
        key_id
    }

    /// The single authorization point (key policies and grants plug in
    /// here). `resource` is a key ARN, or `*` for account-wide actions.
    fn authorize(&self, caller: &Caller, action: &str, resource: &str) -> Result<(), KmsError> {
        if caller.account_id() == Some(self.account_id()) {
            return Ok(());
        }
        Err(KmsError::AccessDenied(format!(
            "User: {} is not authorized to perform: {action} on resource: {resource} because no \
             key policy allows the {action} action (only principals of account {} may use this KMS)",
            caller.principal_arn,
            self.account_id()
        )))
    }

    fn arn_of(&self, key: &KeyRecord) -> String {
        key.arn(self.region(), self.account_id())
    }
}

/// The record of a key id that resolution found in `state`.
fn key_in<'a>(state: &'a StoreState, key_id: &str) -> Result<&'a KeyRecord, KmsError> {
    state.keys.get(key_id).ok_or_else(|| {
        KmsError::Internal(format!(
            "BUG: resolved key {key_id} is missing from the key store"
        ))
    })
}

/// Symmetric encryption operations need an enabled SYMMETRIC_DEFAULT
/// ENCRYPT_DECRYPT key.
fn check_usable_for(key: &KeyRecord, operation: &str) -> Result<(), KmsError> {
    match key.key_state {
        KeyState::Enabled => {}
        KeyState::Disabled => return Err(KmsError::key_disabled(&key.key_id)),
        KeyState::PendingDeletion => return Err(KmsError::key_pending_deletion(&key.key_id)),
        KeyState::PendingImport => return Err(KmsError::key_pending_import(&key.key_id)),
        other => {
            return Err(KmsError::key_in_state(
                &key.key_id,
                other.as_str(),
                operation,
            ))
        }
    }
    if key.key_spec != KeySpec::SymmetricDefault || key.key_usage != KeyUsage::EncryptDecrypt {
        return Err(KmsError::InvalidKeyUsage(format!(
            "key {} has key spec {} and usage {}; {operation} needs a {} key with usage {}",
            key.key_id,
            key.key_spec,
            key.key_usage,
            KeySpec::SymmetricDefault,
            KeyUsage::EncryptDecrypt
        )));
    }
    Ok(())
}

fn describe_context(ctx: &EncryptionContext) -> String {
    if ctx.is_empty() {
        "no encryption context".to_owned()
    } else {
        format!("encryption context {}", context::format_cli(ctx))
    }
}

impl KeyService for LocalKms {
    fn region(&self) -> &str {
        self.store.region()
    }

    fn create_key(&self, caller: &Caller, req: CreateKeyRequest) -> Result<KeyMetadata, KmsError> {
        let spec = match req.key_spec.as_deref() {
            None => KeySpec::SymmetricDefault,
            Some(s) => KeySpec::parse(s).ok_or_else(|| {
                let valid: Vec<&str> = KeySpec::ALL.iter().map(|k| k.as_str()).collect();
                KmsError::Validation(format!(
                    "KeySpec '{s}' is not valid; valid values: {}",
                    valid.join(", ")
                ))
            })?,
        };
        if spec != KeySpec::SymmetricDefault {
            return Err(KmsError::UnsupportedOperation(format!(
                "KeySpec {spec} is not supported by cryptvol's embedded KMS yet; create a {} key",
                KeySpec::SymmetricDefault
            )));
        }
        let len = req.description.chars().count();
        if len > MAX_DESCRIPTION_LEN {
            return Err(KmsError::Validation(format!(
                "Description is {len} characters; at most {MAX_DESCRIPTION_LEN} are allowed"
            )));
        }
        self.authorize(caller, "kms:CreateKey", "*")?;
        let key = self.store.update(|s| {
            let id = self.insert_new_key(s, &req.description, KeyManager::Customer);
            key_in(s, &id).cloned()
        })?;
        Ok(key.metadata(self.region(), self.account_id()))
    }

    fn describe_key(&self, caller: &Caller, key_id: &str) -> Result<KeyMetadata, KmsError> {
        let (state, id) = self.resolve(key_id)?;
        let key = key_in(&state, &id)?;
        self.authorize(caller, "kms:DescribeKey", &self.arn_of(key))?;
        Ok(key.metadata(self.region(), self.account_id()))
    }

    fn list_keys(&self, caller: &Caller) -> Result<Vec<KeyMetadata>, KmsError> {
        self.authorize(caller, "kms:ListKeys", "*")?;
        let state = self.store.load()?;
        let mut keys: Vec<&KeyRecord> = state.keys.values().collect();
        keys.sort_by(|a, b| (a.creation_date, &a.key_id).cmp(&(b.creation_date, &b.key_id)));
        Ok(keys
            .into_iter()
            .map(|k| k.metadata(self.region(), self.account_id()))
            .collect())
    }

    fn create_alias(
        &self,
        caller: &Caller,
        alias_name: &str,
        target_key_id: &str,
    ) -> Result<(), KmsError> {
        arn::validate_alias_name(alias_name)?;
        if arn::is_aws_alias(alias_name) {
            return Err(KmsError::NotAuthorized(format!(
                "alias name {alias_name} is reserved: names beginning with {} belong to AWS managed \
                 keys; choose another name, such as alias/my-key",
                arn::AWS_ALIAS_PREFIX
            )));
        }
        let target = KeyRef::parse(target_key_id)?;
        if target.is_alias() {
            return Err(KmsError::Validation(format!(
                "TargetKeyId '{target_key_id}' is an alias; an alias must point at a key id or key ARN"
            )));
        }
        let state = self.store.load()?;
        let Resolved::Key(key_id) = self.resolve_in(&state, &target, target_key_id)? else {
            return Err(KmsError::Internal(
                "BUG: a key id resolved to a managed alias".into(),
            ));
        };
        self.authorize(
            caller,
            "kms:CreateAlias",
            &self.arn_of(key_in(&state, &key_id)?),
        )?;
        self.store.update(|s| {
            if let Some(existing) = s.aliases.get(alias_name) {
                return Err(KmsError::AlreadyExists(format!(
                    "alias {} already exists (it points at key {}); choose another name, or repoint it \
                     with `cryptvol kms update-alias --alias-name {alias_name} --target-key-id {key_id}`",
                    arn::alias_arn(self.region(), self.account_id(), alias_name),
                    existing.target_key_id
                )));
            }
            let key = s.keys.get(&key_id).ok_or_else(|| KmsError::key_not_found(target_key_id, self.region()))?;
            if key.key_manager == KeyManager::Aws {
                return Err(KmsError::AccessDenied(format!(
                    "key {key_id} is an AWS managed key; aliases can only point at customer managed keys"
                )));
            }
            if key.key_state == KeyState::PendingDeletion {
                return Err(KmsError::key_pending_deletion(&key_id));
            }
            let count = s.aliases_of(&key_id).count();
            if count >= MAX_ALIASES_PER_KEY {
                return Err(KmsError::LimitExceeded(format!(
                    "key {key_id} already has {count} aliases, the most a key may have; delete one first"
                )));
            }
            s.aliases.insert(alias_name.to_owned(), AliasRecord { target_key_id: key_id.clone(), creation_date: super::now() });
            Ok(())
        })
    }

    fn list_aliases(&self, caller: &Caller) -> Result<Vec<AliasListEntry>, KmsError> {
        self.authorize(caller, "kms:ListAliases", "*")?;
        let state = self.store.load()?;
        let entry = |name: &str, target: Option<String>| AliasListEntry {
            alias_name: name.to_owned(),
            alias_arn: arn::alias_arn(self.region(), self.account_id(), name),
            target_key_id: target,
        };
        let mut out: Vec<AliasListEntry> = state
            .aliases
            .iter()
            .map(|(name, a)| entry(name, Some(a.target_key_id.clone())))
            .collect();
        // Like AWS, list predefined AWS aliases before their key exists,
        // without a target.
        for m in AWS_MANAGED_KEYS
            .iter()
            .filter(|m| !state.aliases.contains_key(m.alias))
        {
            out.push(entry(m.alias, None));
        }
        out.sort_by(|a, b| a.alias_name.cmp(&b.alias_name));
        Ok(out)
    }

    fn generate_data_key(
        &self,
        caller: &Caller,
        key_id: &str,
        number_of_bytes: usize,
        context: &EncryptionContext,
    ) -> Result<GenerateDataKeyResponse, KmsError> {
        if !DATA_KEY_BYTES.contains(&number_of_bytes) {
            return Err(KmsError::Validation(format!(
                "NumberOfBytes is {number_of_bytes}; it must be between {} and {} (an XTS volume key is 64)",
                DATA_KEY_BYTES.start(),
                DATA_KEY_BYTES.end()
            )));
        }
        let aad_context = context::canonical_encoding(context)?;
        let (state, id) = self.resolve(key_id)?;
        let key = key_in(&state, &id)?;
        let key_arn = self.arn_of(key);
        self.authorize(caller, "kms:GenerateDataKey", &key_arn)?;
        check_usable_for(key, "GenerateDataKey")?;
        let mv = key
            .current_material()
            .ok_or_else(|| KmsError::key_pending_import(&id))?;
        let material = self.store.unseal_material(&id, mv)?;
        let key_bytes = arn::key_id_to_bytes(&id).ok_or_else(|| {
            KmsError::Internal(format!("BUG: stored key id {id} has no blob form"))
        })?;
        let plaintext = SecretBytes::random(number_of_bytes);
        let blob = Blob::seal(
            key_bytes,
            mv.version,
            &material,
            plaintext.expose(),
            &aad_context,
        )
        .map_err(|e| KmsError::Internal(format!("BUG: sealing a data key failed: {e}")))?;
        Ok(GenerateDataKeyResponse {
            key_id: key_arn,
            plaintext,
            ciphertext_blob: blob.to_bytes(),
        })
    }

    fn decrypt(
        &self,
        caller: &Caller,
        ciphertext_blob: &[u8],
        context: &EncryptionContext,
        key_id: Option<&str>,
    ) -> Result<DecryptResponse, KmsError> {
        if ciphertext_blob.is_empty() || ciphertext_blob.len() > MAX_BLOB_LEN {
            return Err(KmsError::Validation(format!(
                "CiphertextBlob is {} bytes; it must be 1 to {MAX_BLOB_LEN} bytes",
                ciphertext_blob.len()
            )));
        }
        let aad_context = context::canonical_encoding(context)?;
        let blob = Blob::decode(ciphertext_blob)
            .map_err(|e| KmsError::InvalidCiphertext(e.to_string()))?;
        let (state, named) = match key_id {
            Some(k) => {
                let (state, id) = self.resolve(k)?;
                (state, Some(id))
            }
            None => (self.store.load()?, None),
        };
        let spellings = arn::key_id_from_bytes(&blob.key_id_bytes());
        let Some(blob_key) = spellings.iter().find_map(|id| state.keys.get(id)) else {
            let id = &spellings[0];
            return Err(match keystore::find_key_in_other_region(self.data_dir(), id, self.region()) {
                Some(r) => KmsError::wrong_region(&format!("key {id}, which made this ciphertext blob,"), &r, self.region()),
                None => KmsError::InvalidCiphertext(format!(
                    "the ciphertext blob names key {id}, which does not exist in region {}: the blob \
                     is corrupt, or was made by another KMS",
                    self.region()
                )),
            });
        };
        if let Some(named) = named.filter(|n| *n != blob_key.key_id) {
            return Err(KmsError::IncorrectKey(format!(
                "the ciphertext blob was encrypted under key {}, not under key {} given as KeyId; \
                 omit the key id or pass {}",
                blob_key.key_id, named, blob_key.key_id
            )));
        }
        let key_arn = self.arn_of(blob_key);
        self.authorize(caller, "kms:Decrypt", &key_arn)?;
        check_usable_for(blob_key, "Decrypt")?;
        let version = blob.material_version();
        let mv = blob_key.material_version(version).ok_or_else(|| {
            let have: Vec<String> = blob_key.material.iter().map(|m| m.version.to_string()).collect();
            KmsError::InvalidCiphertext(format!(
                "the ciphertext blob names material version {version} of key {}, which has versions [{}]; \
                 the blob is corrupt",
                blob_key.key_id,
                have.join(", ")
            ))
        })?;
        let material = self.store.unseal_material(&blob_key.key_id, mv)?;
        let plaintext = blob.open(&material, &aad_context).map_err(|_| {
            KmsError::InvalidCiphertext(format!(
                "cannot decrypt with key {}: the {} given differs from the one used to encrypt, or the \
                 ciphertext blob was altered",
                blob_key.key_id,
                describe_context(context)
            ))
        })?;
        Ok(DecryptResponse {
            key_id: key_arn,
            plaintext,
        })
    }
}

#[cfg(test)]
mod tests;
