//! Key lifecycle: CreateKey, DescribeKey, ListKeys, EnableKey, DisableKey,
//! ScheduleKeyDeletion, CancelKeyDeletion, UpdateKeyDescription.
//!
//! Key material is generated before the key store's lock is taken (RSA key
//! generation can take a second), then the record is inserted under it.

use serde::{Deserialize, Serialize};

use super::authorize::{self, Extra};
use super::json::{self, Empty, Page};
use super::tags::{self, Tag};
use super::{policy, OpCtx};
use crate::crypto::SecretBytes;
use crate::kms::asym;
use crate::kms::error::KmsError;
use crate::kms::local::{key_in, key_mut, LocalKms};
use crate::kms::model::{
    KeyManager, KeyRecord, KeySpec, KeyState, KeyUsage, MaterialVersion, Origin,
};
use crate::kms::service::KeyMetadata;

/// CreateKey `Description` limit (AWS).
pub const MAX_DESCRIPTION_LEN: usize = 8192;
/// ScheduleKeyDeletion `PendingWindowInDays` range and default (AWS).
pub const PENDING_WINDOW_DAYS: std::ops::RangeInclusive<i64> = 7..=30;
pub const DEFAULT_PENDING_WINDOW_DAYS: i64 = 30;
/// SYMMETRIC_DEFAULT material is an AES-256 key.
pub const SYMMETRIC_MATERIAL_LEN: usize = 32;
pub const DAY: u64 = 24 * 60 * 60;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateKeyRequest {
    pub policy: Option<String>,
    pub description: Option<String>,
    pub key_usage: Option<String>,
    pub customer_master_key_spec: Option<String>,
    pub key_spec: Option<String>,
    pub origin: Option<String>,
    pub custom_key_store_id: Option<String>,
    pub bypass_policy_lockout_safety_check: Option<bool>,
    pub tags: Option<Vec<Tag>>,
    pub multi_region: Option<bool>,
    pub xks_key_id: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyMetadataResponse {
    pub key_metadata: KeyMetadata,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyIdRequest {
    pub key_id: String,
}

/// Parses an AWS enum parameter, naming the valid values on failure.
pub fn parse_enum<T: Copy>(
    field: &str,
    value: &str,
    parse: fn(&str) -> Option<T>,
    all: &[T],
    name: fn(T) -> &'static str,
) -> Result<T, KmsError> {
    parse(value).ok_or_else(|| {
        let valid: Vec<&str> = all.iter().map(|v| name(*v)).collect();
        KmsError::Validation(format!(
            "{field} '{value}' is not valid; valid values: {}",
            valid.join(", ")
        ))
    })
}

pub fn parse_key_spec(field: &str, s: &str) -> Result<KeySpec, KmsError> {
    parse_enum(field, s, KeySpec::parse, KeySpec::ALL, KeySpec::as_str)
}

/// Fresh material for a key of `spec`: the secret, and the public key of
/// asymmetric specs.
pub fn fresh_material(spec: KeySpec) -> Result<(SecretBytes, Option<Vec<u8>>), KmsError> {
    if spec == KeySpec::SymmetricDefault {
        return Ok((SecretBytes::random(SYMMETRIC_MATERIAL_LEN), None));
    }
    if let Some(len) = asym::hmac_key_len(spec) {
        return Ok((SecretBytes::random(len), None));
    }
    let internal =
        |e: asym::AsymError| KmsError::Internal(format!("cannot create a {spec} key: {e}"));
    let private = asym::generate_private_key(spec).map_err(internal)?;
    let public = asym::public_key_der(spec, &private).map_err(internal)?;
    Ok((private, Some(public)))
}

/// Material version `version` of `key_id`, sealed.
pub fn sealed_version(
    kms: &LocalKms,
    key_id: &str,
    version: u32,
    material: &SecretBytes,
    now: u64,
) -> MaterialVersion {
    MaterialVersion {
        version,
        creation_date: now,
        sealed: kms.store().seal_material(key_id, version, material),
        rotation_type: None,
    }
}

/// The full AWS `KeyMetadata` of `key`, multi-region configuration included.
pub fn metadata(kms: &LocalKms, key: &KeyRecord) -> KeyMetadata {
    let mut md = key.metadata(kms.region(), kms.account_id());
    md.multi_region_configuration = super::multiregion::configuration(kms, key);
    md
}

pub fn create_key(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: CreateKeyRequest,
) -> Result<KeyMetadataResponse, KmsError> {
    authorize::account_action(kms, ctx, "kms:CreateKey")?;
    if req.custom_key_store_id.is_some() || req.xks_key_id.is_some() {
        return Err(KmsError::UnsupportedOperation(
            "custom key stores (CustomKeyStoreId, XksKeyId) are not supported by cryptvol's KMS; \
             omit them to create the key in the KMS itself"
                .into(),
        ));
    }
    let description = req.description.unwrap_or_default();
    let len = description.chars().count();
    if len > MAX_DESCRIPTION_LEN {
        return Err(KmsError::Validation(format!(
            "Description is {len} characters; at most {MAX_DESCRIPTION_LEN} are allowed"
        )));
    }
    let spec = match (&req.key_spec, &req.customer_master_key_spec) {
        (Some(a), Some(b)) if a != b => {
            return Err(KmsError::Validation(format!(
                "KeySpec {a} and CustomerMasterKeySpec {b} differ; give only KeySpec"
            )))
        }
        (Some(s), _) => parse_key_spec("KeySpec", s)?,
        (None, Some(s)) => parse_key_spec("CustomerMasterKeySpec", s)?,
        (None, None) => KeySpec::SymmetricDefault,
    };
    let usages = asym::valid_usages(spec);
    let Some(&default_usage) = usages.first() else {
        return Err(KmsError::UnsupportedOperation(format!(
            "KeySpec {spec} is not supported by cryptvol's KMS; supported: SYMMETRIC_DEFAULT, \
             HMAC_224, HMAC_256, HMAC_384, HMAC_512, RSA_2048, RSA_3072, RSA_4096, ECC_NIST_P256, \
             ECC_NIST_P384"
        )));
    };
    let usage = match &req.key_usage {
        None => default_usage,
        Some(u) => parse_enum(
            "KeyUsage",
            u,
            KeyUsage::parse,
            KeyUsage::ALL,
            KeyUsage::as_str,
        )?,
    };
    if !usages.contains(&usage) {
        let valid: Vec<&str> = usages.iter().map(|u| u.as_str()).collect();
        return Err(KmsError::Validation(format!(
            "KeyUsage {usage} is not valid for KeySpec {spec}; use {}",
            valid.join(" or ")
        )));
    }
    let origin = match &req.origin {
        None => Origin::AwsKms,
        Some(o) => parse_enum("Origin", o, Origin::parse, Origin::ALL, Origin::as_str)?,
    };
    match origin {
        Origin::AwsKms => {}
        Origin::External if !asym::is_asymmetric(spec) => {}
        Origin::External => {
            return Err(KmsError::UnsupportedOperation(format!(
                "importing {spec} key material is not supported by cryptvol's KMS; EXTERNAL \
                 keys may be SYMMETRIC_DEFAULT or HMAC"
            )))
        }
        other => {
            return Err(KmsError::UnsupportedOperation(format!(
                "Origin {other} needs a custom key store, which cryptvol's KMS does not have; \
                 use AWS_KMS or EXTERNAL"
            )))
        }
    }
    let tags = tags::validate(req.tags.unwrap_or_default())?;
    let multi_region = req.multi_region.unwrap_or(false);
    let bypass = req.bypass_policy_lockout_safety_check.unwrap_or(false);
    if let Some(p) = &req.policy {
        policy::check_new_policy(kms, ctx, p, bypass, None)?;
    }
    ctx.dry_run_stop()?;
    let material = match origin {
        Origin::AwsKms => Some(fresh_material(spec)?),
        _ => None,
    };
    let now = ctx.now;
    let key = kms.update(|s| {
        let key_id = kms.new_key_id(s, multi_region);
        let mut key = KeyRecord::new(
            key_id.clone(),
            now,
            spec,
            usage,
            origin,
            KeyManager::Customer,
        );
        key.description = description.clone();
        key.policy = req.policy.clone();
        key.tags = tags.clone();
        key.multi_region_primary = multi_region.then(|| kms.region().to_owned());
        match &material {
            Some((secret, public)) => {
                key.material = vec![sealed_version(kms, &key_id, 1, secret, now)];
                key.public_key = public.clone();
            }
            None => key.key_state = KeyState::PendingImport,
        }
        s.keys.insert(key_id.clone(), key);
        key_in(s, &key_id).cloned()
    })?;
    ctx.set_key(kms, &key);
    Ok(KeyMetadataResponse {
        key_metadata: metadata(kms, &key),
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeKeyRequest {
    pub key_id: String,
}

pub fn describe_key(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: DescribeKeyRequest,
) -> Result<KeyMetadataResponse, KmsError> {
    let (state, id) = kms.resolve(&req.key_id)?;
    let key = key_in(&state, &id)?;
    let alias = req
        .key_id
        .starts_with("alias/")
        .then_some(req.key_id.as_str());
    let extra = Extra {
        request_alias: alias,
        ..Extra::default()
    };
    authorize::key_action(kms, ctx, key, "kms:DescribeKey", extra)?;
    Ok(KeyMetadataResponse {
        key_metadata: metadata(kms, key),
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListKeysRequest {
    pub limit: Option<i64>,
    pub marker: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyListEntry {
    pub key_id: String,
    pub key_arn: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListKeysResponse {
    pub keys: Vec<KeyListEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
    pub truncated: bool,
}

pub fn list_keys(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: ListKeysRequest,
) -> Result<ListKeysResponse, KmsError> {
    authorize::account_action(kms, ctx, "kms:ListKeys")?;
    let limit = json::limit(req.limit, 1000, 100)?;
    let state = kms.load()?;
    let items = state
        .keys
        .values()
        .map(|k| {
            let sort = format!("{:020}/{}", k.creation_date, k.key_id);
            let entry = KeyListEntry {
                key_id: k.key_id.clone(),
                key_arn: kms.arn_of(k),
            };
            (sort, entry)
        })
        .collect();
    let page: Page<KeyListEntry> = json::paginate(items, limit, req.marker.as_deref())?;
    Ok(ListKeysResponse {
        truncated: page.truncated(),
        next_marker: page.next_marker,
        keys: page.items,
    })
}

/// Resolve → authorize → state check → change the record under the lock.
/// The shape of every simple management operation.
pub fn modify_key<T>(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    key_id: &str,
    action: &str,
    change: impl FnOnce(&mut KeyRecord, &OpCtx<'_>) -> Result<T, KmsError>,
) -> Result<T, KmsError> {
    let (state, id) = kms.resolve(key_id)?;
    authorize::key_action(kms, ctx, key_in(&state, &id)?, action, Extra::default())?;
    let ctx: &OpCtx<'_> = ctx;
    kms.update(|s| {
        let key = key_mut(s, &id, kms.region())?;
        ctx.check_state(kms, key)?;
        change(key, ctx)
    })
}

pub fn enable_key(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: KeyIdRequest,
) -> Result<Empty, KmsError> {
    modify_key(kms, ctx, &req.key_id, "kms:EnableKey", |key, _| {
        key.key_state = KeyState::Enabled;
        Ok(Empty {})
    })
}

pub fn disable_key(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: KeyIdRequest,
) -> Result<Empty, KmsError> {
    modify_key(kms, ctx, &req.key_id, "kms:DisableKey", |key, _| {
        key.key_state = KeyState::Disabled;
        Ok(Empty {})
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScheduleKeyDeletionRequest {
    pub key_id: String,
    pub pending_window_in_days: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScheduleKeyDeletionResponse {
    pub key_id: String,
    pub deletion_date: u64,
    pub key_state: KeyState,
    pub pending_window_in_days: i64,
}

pub fn schedule_key_deletion(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: ScheduleKeyDeletionRequest,
) -> Result<ScheduleKeyDeletionResponse, KmsError> {
    let days = req
        .pending_window_in_days
        .unwrap_or(DEFAULT_PENDING_WINDOW_DAYS);
    if !PENDING_WINDOW_DAYS.contains(&days) {
        return Err(KmsError::Validation(format!(
            "PendingWindowInDays is {days}; it must be between {} and {} (default {})",
            PENDING_WINDOW_DAYS.start(),
            PENDING_WINDOW_DAYS.end(),
            DEFAULT_PENDING_WINDOW_DAYS
        )));
    }
    let (state, id) = kms.resolve(&req.key_id)?;
    let key = key_in(&state, &id)?;
    if let Some(r) = super::multiregion::replica_regions(kms, key).first() {
        if !key.is_replica(kms.region()) {
            return Err(KmsError::UnsupportedOperation(format!(
                "key {id} is a multi-region primary key with a replica in {r}; schedule the \
                 deletion of its replicas first (`cryptvol --region {r} kms schedule-key-deletion \
                 --key-id {id}`)"
            )));
        }
    }
    let deletion_date = ctx.now + days as u64 * DAY;
    modify_key(
        kms,
        ctx,
        &req.key_id,
        "kms:ScheduleKeyDeletion",
        |key, _| {
            key.key_state = KeyState::PendingDeletion;
            key.deletion_date = Some(deletion_date);
            Ok(())
        },
    )?;
    Ok(ScheduleKeyDeletionResponse {
        key_id: kms.arn_of_id(&id),
        deletion_date,
        key_state: KeyState::PendingDeletion,
        pending_window_in_days: days,
    })
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyIdResponse {
    pub key_id: String,
}

pub fn cancel_key_deletion(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: KeyIdRequest,
) -> Result<KeyIdResponse, KmsError> {
    let id = modify_key(kms, ctx, &req.key_id, "kms:CancelKeyDeletion", |key, _| {
        key.deletion_date = None;
        key.key_state = if key.material.is_empty() {
            KeyState::PendingImport
        } else {
            KeyState::Disabled
        };
        Ok(key.key_id.clone())
    })?;
    Ok(KeyIdResponse {
        key_id: kms.arn_of_id(&id),
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateKeyDescriptionRequest {
    pub key_id: String,
    pub description: String,
}

pub fn update_key_description(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: UpdateKeyDescriptionRequest,
) -> Result<Empty, KmsError> {
    let len = req.description.chars().count();
    if len > MAX_DESCRIPTION_LEN {
        return Err(KmsError::Validation(format!(
            "Description is {len} characters; at most {MAX_DESCRIPTION_LEN} are allowed"
        )));
    }
    modify_key(
        kms,
        ctx,
        &req.key_id,
        "kms:UpdateKeyDescription",
        |key, _| {
            key.description = req.description.clone();
            Ok(Empty {})
        },
    )
}

#[cfg(test)]
mod tests;
