//! `LocalKms`: the embedded KMS of one region of a data dir — its key
//! store, its audit log, and the plumbing every operation shares: resolving
//! the four spellings of a key, the AWS managed keys made on first use, the
//! clock, maintenance and the audit record.
//!
//! The operations themselves live in [`super::ops`] (one table, one handler
//! each, reached through [`LocalKms::call`]); the [`KeyService`] methods the
//! volume layer uses run the same typed handlers.
//!
//! Secrets: unsealed key material and generated data keys live only in
//! [`SecretBytes`] (zeroized on drop) for the length of one call; errors
//! name keys, versions, regions and contexts, never bytes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;
use uuid::Uuid;

use super::account;
use super::arn::{self, KeyRef};
use super::audit::{AuditEntry, AuditLog, AuditSigningKey};
use super::context::EncryptionContext;
use super::error::KmsError;
use super::keystore::{self, KeyStore, StoreState};
use super::model::{AliasRecord, KeyManager, KeyRecord, KeySpec, KeyUsage, Origin, RotationConfig};
use super::ops::{self, aliases, crypto, keys};
use super::policy_eval;
use super::rootkey::{RootKey, ROOT_KEY_ENV};
use super::service::{
    AliasListEntry, Caller, CreateKeyRequest, DecryptResponse, GenerateDataKeyResponse,
    KeyMetadata, KeyService,
};
use crate::crypto::SecretBytes;

pub use super::ops::keys::MAX_DESCRIPTION_LEN;
/// GenerateDataKey `NumberOfBytes` range (AWS).
pub const DATA_KEY_BYTES: std::ops::RangeInclusive<usize> = 1..=1024;
/// Aliases per key (AWS quota).
pub const MAX_ALIASES_PER_KEY: usize = 50;
/// AWS managed keys rotate every year, always.
pub const AWS_MANAGED_ROTATION_DAYS: u32 = 365;

/// An AWS managed key that exists once a service first asks for it.
#[derive(Debug)]
pub struct ManagedKey {
    pub alias: &'static str,
    pub service: &'static str,
    pub description: &'static str,
}

/// The AWS managed keys cryptvol knows. EBS is the one volumes use when no
/// `--kms-key-id` is given.
pub const AWS_MANAGED_KEYS: &[ManagedKey] = &[ManagedKey {
    alias: "alias/aws/ebs",
    service: "ebs",
    description: "Default key that protects my EBS volumes when no other key is defined",
}];

/// The embedded KMS of one region of a data dir. `Send + Sync`; each call
/// reads the current key store, so several `LocalKms` (in one process or
/// several) share one data dir safely.
#[derive(Debug)]
pub struct LocalKms {
    store: KeyStore,
    audit: AuditLog,
    /// Seconds added to the system clock (tests of deletion windows,
    /// expiries and rotation schedules).
    clock_offset: AtomicU64,
}

/// A key id a name resolved to, or an AWS managed key still to be made.
pub(crate) enum Resolved {
    Key(String),
    MissingManaged(&'static ManagedKey),
}

impl LocalKms {
    /// Opens the KMS of `region` in `data_dir`, creating on first use the
    /// data dir, root key (unless `CRYPTVOL_ROOT_KEY_FILE` names one),
    /// account id, key store and audit log.
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
        let signing = AuditSigningKey::from_root_key(store.root(), region);
        let audit = AuditLog::open(data_dir, region, signing)?;
        let kms = LocalKms {
            store,
            audit,
            clock_offset: AtomicU64::new(0),
        };
        // Deletions, expiries and rotations that fell due while nobody
        // used the store happen now.
        kms.maintain()?;
        Ok(kms)
    }

    /// The account root, `arn:aws:iam::<account>:root`: who the local CLI
    /// acts as.
    pub fn root_caller(&self) -> Caller {
        Caller::account_root(self.account_id())
    }

    pub fn account_id(&self) -> &str {
        self.store.account_id()
    }

    /// The region this KMS serves.
    pub fn region(&self) -> &str {
        self.store.region()
    }

    pub fn data_dir(&self) -> &Path {
        self.store.data_dir()
    }

    /// This region's audit log.
    pub fn audit_log(&self) -> &AuditLog {
        &self.audit
    }

    /// Moves this instance's clock forward by `secs` (only for tests of
    /// deletion windows, material expiry and rotation schedules; the key
    /// store keeps absolute times, so other instances are unaffected).
    #[doc(hidden)]
    pub fn advance_clock(&self, secs: u64) {
        self.clock_offset.fetch_add(secs, Ordering::SeqCst);
    }

    /// Seconds since the epoch, as this KMS sees them.
    pub(crate) fn now(&self) -> u64 {
        super::now().saturating_add(self.clock_offset.load(Ordering::SeqCst))
    }

    pub(crate) fn store(&self) -> &KeyStore {
        &self.store
    }

    /// The current key store state (no lock).
    pub(crate) fn load(&self) -> Result<StoreState, KmsError> {
        self.store.load()
    }

    /// A locked read-modify-write of the key store.
    pub(crate) fn update<T>(
        &self,
        f: impl FnOnce(&mut StoreState) -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        self.store.update(f)
    }

    /// Applies whatever time has made due: deletions after the waiting
    /// period, expiry of imported material, automatic rotations.
    pub(crate) fn maintain(&self) -> Result<(), KmsError> {
        ops::maintenance::run(self)
    }

    /// Appends one audit record. A KMS that cannot record a call fails it:
    /// an unaudited use of a key is worse than a refused one.
    pub(crate) fn audit(&self, entry: AuditEntry) -> Result<(), KmsError> {
        self.audit.append(entry).map_err(|e| {
            KmsError::Internal(format!(
                "the call was not recorded in the audit log {} ({e}); fix the log's storage and \
                 retry (the operation itself may have taken effect)",
                self.audit.path().display()
            ))
        })
    }

    /// Resolves any key spelling to a key id present in the returned state,
    /// creating an AWS managed key on first use.
    pub(crate) fn resolve(&self, key: &str) -> Result<(StoreState, String), KmsError> {
        let key_ref = KeyRef::parse(key)?;
        let state = self.load()?;
        match self.resolve_in(&state, &key_ref, key)? {
            Resolved::Key(id) => Ok((state, id)),
            Resolved::MissingManaged(m) => self.create_managed(m),
        }
    }

    pub(crate) fn resolve_in(
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
    /// process) just did: SYMMETRIC_DEFAULT, the AWS managed key policy of
    /// its service, rotated yearly.
    fn create_managed(&self, m: &'static ManagedKey) -> Result<(StoreState, String), KmsError> {
        let now = self.now();
        let material = SecretBytes::random(keys::SYMMETRIC_MATERIAL_LEN);
        self.update(|s| {
            let id = match s.aliases.get(m.alias) {
                Some(a) => a.target_key_id.clone(),
                None => {
                    let id = self.new_key_id(s, false);
                    let mut key = KeyRecord::new(
                        id.clone(),
                        now,
                        KeySpec::SymmetricDefault,
                        KeyUsage::EncryptDecrypt,
                        Origin::AwsKms,
                        KeyManager::Aws,
                    );
                    key.description = m.description.to_owned();
                    key.material = vec![keys::sealed_version(self, &id, 1, &material, now)];
                    key.policy = Some(policy_eval::aws_managed_policy(
                        self.account_id(),
                        self.region(),
                        m.service,
                    ));
                    key.rotation = Some(RotationConfig {
                        enabled: true,
                        period_days: AWS_MANAGED_ROTATION_DAYS,
                        next_rotation: Some(now + u64::from(AWS_MANAGED_ROTATION_DAYS) * keys::DAY),
                    });
                    s.keys.insert(id.clone(), key);
                    s.aliases.insert(
                        m.alias.to_owned(),
                        AliasRecord {
                            target_key_id: id.clone(),
                            creation_date: now,
                            last_updated_date: None,
                        },
                    );
                    tracing::info!(alias = m.alias, key_id = %id, region = self.region(), "created AWS managed key");
                    id
                }
            };
            Ok((s.clone(), id))
        })
    }

    /// A key id not yet in `s`: a UUID, or `mrk-` + 32 hex digits for a
    /// multi-region key.
    pub(crate) fn new_key_id(&self, s: &StoreState, multi_region: bool) -> String {
        loop {
            let u = Uuid::new_v4();
            let id = if multi_region {
                format!("{}{}", arn::MRK_PREFIX, u.simple())
            } else {
                u.hyphenated().to_string()
            };
            if !s.keys.contains_key(&id) {
                return id;
            }
        }
    }

    pub(crate) fn arn_of(&self, key: &KeyRecord) -> String {
        key.arn(self.region(), self.account_id())
    }

    pub(crate) fn arn_of_id(&self, key_id: &str) -> String {
        arn::key_arn(self.region(), self.account_id(), key_id)
    }

    /// `kms:ViaService` of the volume layer, which calls as EBS does.
    fn ebs(&self) -> Option<String> {
        Some(policy_eval::via_service_for("ebs", self.region()))
    }
}

/// The record of a key id that resolution found in `state`.
pub(crate) fn key_in<'a>(state: &'a StoreState, key_id: &str) -> Result<&'a KeyRecord, KmsError> {
    state.keys.get(key_id).ok_or_else(|| {
        KmsError::Internal(format!(
            "BUG: resolved key {key_id} is missing from the key store"
        ))
    })
}

/// The record of `key_id` inside an update (it may have been deleted by
/// another process since it was resolved).
pub(crate) fn key_mut<'a>(
    state: &'a mut StoreState,
    key_id: &str,
    region: &str,
) -> Result<&'a mut KeyRecord, KmsError> {
    state
        .keys
        .get_mut(key_id)
        .ok_or_else(|| KmsError::key_not_found(key_id, region))
}

fn ec_json(ctx: &EncryptionContext) -> serde_json::Value {
    serde_json::to_value(ctx).unwrap_or_default()
}

impl KeyService for LocalKms {
    fn region(&self) -> &str {
        self.store.region()
    }

    fn call_json(
        &self,
        caller: &Caller,
        operation: &str,
        request: serde_json::Value,
    ) -> Result<serde_json::Value, KmsError> {
        // Through this trait the volume layer calls, acting as EBS.
        self.call_via(caller, operation, request, self.ebs())
    }

    fn create_key(&self, caller: &Caller, req: CreateKeyRequest) -> Result<KeyMetadata, KmsError> {
        let params = json!({"Description": req.description, "KeySpec": req.key_spec});
        let typed = keys::CreateKeyRequest {
            description: Some(req.description),
            key_spec: req.key_spec,
            ..Default::default()
        };
        self.run(caller, ops::known("CreateKey"), None, &params, |ctx| {
            keys::create_key(self, ctx, typed)
        })
        .map(|r| r.key_metadata)
    }

    fn describe_key(&self, caller: &Caller, key_id: &str) -> Result<KeyMetadata, KmsError> {
        let params = json!({ "KeyId": key_id });
        let typed = keys::DescribeKeyRequest {
            key_id: key_id.to_owned(),
        };
        self.run(
            caller,
            ops::known("DescribeKey"),
            self.ebs(),
            &params,
            |ctx| keys::describe_key(self, ctx, typed),
        )
        .map(|r| r.key_metadata)
    }

    fn list_keys(&self, caller: &Caller) -> Result<Vec<KeyMetadata>, KmsError> {
        let params = json!({});
        self.run(caller, ops::known("ListKeys"), None, &params, |ctx| {
            super::ops::authorize::account_action(self, ctx, "kms:ListKeys")?;
            let state = self.load()?;
            let mut keys: Vec<&KeyRecord> = state.keys.values().collect();
            keys.sort_by(|a, b| (a.creation_date, &a.key_id).cmp(&(b.creation_date, &b.key_id)));
            Ok(keys
                .into_iter()
                .map(|k| ops::keys::metadata(self, k))
                .collect())
        })
    }

    fn create_alias(
        &self,
        caller: &Caller,
        alias_name: &str,
        target_key_id: &str,
    ) -> Result<(), KmsError> {
        let params = json!({"AliasName": alias_name, "TargetKeyId": target_key_id});
        let typed = aliases::AliasRequest {
            alias_name: alias_name.to_owned(),
            target_key_id: target_key_id.to_owned(),
        };
        self.run(caller, ops::known("CreateAlias"), None, &params, |ctx| {
            aliases::create_alias(self, ctx, typed)
        })
        .map(|_| ())
    }

    fn list_aliases(&self, caller: &Caller) -> Result<Vec<AliasListEntry>, KmsError> {
        let params = json!({});
        self.run(caller, ops::known("ListAliases"), None, &params, |ctx| {
            aliases::all_aliases(self, ctx)
        })
    }

    fn generate_data_key(
        &self,
        caller: &Caller,
        key_id: &str,
        number_of_bytes: usize,
        context: &EncryptionContext,
    ) -> Result<GenerateDataKeyResponse, KmsError> {
        let params = json!({
            "KeyId": key_id,
            "NumberOfBytes": number_of_bytes,
            "EncryptionContext": ec_json(context),
        });
        let typed = crypto::GenerateDataKeyRequest {
            key_id: key_id.to_owned(),
            number_of_bytes: Some(i64::try_from(number_of_bytes).unwrap_or(i64::MAX)),
            encryption_context: Some(context.clone()),
            ..Default::default()
        };
        let out = self.run(
            caller,
            ops::known("GenerateDataKey"),
            self.ebs(),
            &params,
            |ctx| crypto::generate_data_key(self, ctx, typed),
        )?;
        Ok(GenerateDataKeyResponse {
            key_id: out.key_id,
            plaintext: out.plaintext,
            ciphertext_blob: out.ciphertext_blob,
        })
    }

    fn decrypt(
        &self,
        caller: &Caller,
        ciphertext_blob: &[u8],
        context: &EncryptionContext,
        key_id: Option<&str>,
    ) -> Result<DecryptResponse, KmsError> {
        let params = json!({"KeyId": key_id, "EncryptionContext": ec_json(context)});
        let typed = crypto::DecryptRequest {
            ciphertext_blob: ciphertext_blob.to_vec(),
            encryption_context: Some(context.clone()),
            key_id: key_id.map(str::to_owned),
            ..Default::default()
        };
        let out = self.run(caller, ops::known("Decrypt"), self.ebs(), &params, |ctx| {
            crypto::decrypt(self, ctx, typed)
        })?;
        Ok(DecryptResponse {
            key_id: out.key_id,
            plaintext: out.plaintext,
        })
    }
}

#[cfg(test)]
mod tests;
