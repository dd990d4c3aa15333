//! Rotation: EnableKeyRotation, DisableKeyRotation, GetKeyRotationStatus,
//! RotateKeyOnDemand, ListKeyRotations, and the automatic rotation that
//! [`super::maintenance`] runs when it falls due.
//!
//! Rotation appends a material version; blobs name their version, so every
//! old blob keeps decrypting and new ones use the newest material. Only
//! SYMMETRIC_DEFAULT keys with KMS-made material rotate (as in AWS);
//! multi-region keys rotate on their primary, which pushes the new material
//! to its replicas. AWS managed keys rotate every year, always, and refuse
//! manual changes.

use serde::{Deserialize, Serialize};

use super::json::{self, Empty};
use super::keys::{modify_key, DAY, SYMMETRIC_MATERIAL_LEN};
use super::{authorize, OpCtx};
use crate::crypto::SecretBytes;
use crate::kms::error::KmsError;
use crate::kms::local::{key_in, LocalKms, AWS_MANAGED_ROTATION_DAYS};
use crate::kms::model::{
    KeyManager, KeyRecord, KeySpec, MaterialVersion, Origin, RotationConfig, RotationType,
};

/// `RotationPeriodInDays` range and default (AWS).
pub const ROTATION_PERIOD_DAYS: std::ops::RangeInclusive<i64> = 90..=2560;
pub const DEFAULT_ROTATION_PERIOD_DAYS: u32 = 365;
/// On-demand rotations per key (AWS quota).
pub const MAX_ON_DEMAND_ROTATIONS: usize = 25;

/// The rotation settings in force: AWS managed keys rotate yearly even if
/// their record (from an older cryptvol) has none.
pub fn effective(key: &KeyRecord) -> Option<RotationConfig> {
    match (&key.rotation, key.key_manager) {
        (Some(r), _) => Some(r.clone()),
        (None, KeyManager::Aws) => Some(RotationConfig {
            enabled: true,
            period_days: AWS_MANAGED_ROTATION_DAYS,
            next_rotation: Some(key.creation_date + u64::from(AWS_MANAGED_ROTATION_DAYS) * DAY),
        }),
        (None, KeyManager::Customer) => None,
    }
}

/// Whether this key can rotate at all, and if not, why.
fn check_rotatable(kms: &LocalKms, key: &KeyRecord, what: &str) -> Result<(), KmsError> {
    let why = if key.key_spec != KeySpec::SymmetricDefault {
        format!(
            "it is a {} key; only SYMMETRIC_DEFAULT keys rotate",
            key.key_spec
        )
    } else if key.origin != Origin::AwsKms {
        "its key material is imported (origin EXTERNAL); rotate it by hand: import into a new key \
         and move the alias"
            .to_owned()
    } else if key.is_replica(kms.region()) {
        format!(
            "it is a replica of a multi-region key; {what} on its primary key in {}",
            key.multi_region_primary
                .as_deref()
                .unwrap_or("its primary region")
        )
    } else {
        return Ok(());
    };
    Err(KmsError::UnsupportedOperation(format!(
        "key {} cannot use {what}: {why}",
        key.key_id
    )))
}

/// Appends a new material version made by `how`.
pub fn add_version(
    kms: &LocalKms,
    key: &mut KeyRecord,
    how: RotationType,
    now: u64,
) -> Result<u32, KmsError> {
    let version = key
        .material
        .last()
        .map(|m| m.version)
        .ok_or_else(|| KmsError::key_pending_import(&key.key_id))?
        .checked_add(1)
        .ok_or_else(|| KmsError::Internal(format!("key {} has too many versions", key.key_id)))?;
    let material = SecretBytes::random(SYMMETRIC_MATERIAL_LEN);
    key.material.push(MaterialVersion {
        version,
        creation_date: now,
        sealed: kms.store().seal_material(&key.key_id, version, &material),
        rotation_type: Some(how),
    });
    Ok(version)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnableKeyRotationRequest {
    pub key_id: String,
    pub rotation_period_in_days: Option<i64>,
}

pub fn enable_key_rotation(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: EnableKeyRotationRequest,
) -> Result<Empty, KmsError> {
    let days = req
        .rotation_period_in_days
        .unwrap_or(i64::from(DEFAULT_ROTATION_PERIOD_DAYS));
    if !ROTATION_PERIOD_DAYS.contains(&days) {
        return Err(KmsError::Validation(format!(
            "RotationPeriodInDays is {days}; it must be between {} and {} (default {})",
            ROTATION_PERIOD_DAYS.start(),
            ROTATION_PERIOD_DAYS.end(),
            DEFAULT_ROTATION_PERIOD_DAYS
        )));
    }
    let id = modify_key(
        kms,
        ctx,
        &req.key_id,
        "kms:EnableKeyRotation",
        |key, ctx| {
            check_rotatable(kms, key, "EnableKeyRotation")?;
            key.rotation = Some(RotationConfig {
                enabled: true,
                period_days: days as u32,
                next_rotation: Some(ctx.now + days as u64 * DAY),
            });
            Ok(key.key_id.clone())
        },
    )?;
    super::multiregion::sync_replicas(kms, &id);
    Ok(Empty {})
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyIdRequest {
    pub key_id: String,
}

pub fn disable_key_rotation(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: KeyIdRequest,
) -> Result<Empty, KmsError> {
    let id = modify_key(kms, ctx, &req.key_id, "kms:DisableKeyRotation", |key, _| {
        check_rotatable(kms, key, "DisableKeyRotation")?;
        let period = key
            .rotation
            .as_ref()
            .map_or(DEFAULT_ROTATION_PERIOD_DAYS, |r| r.period_days);
        key.rotation = Some(RotationConfig {
            enabled: false,
            period_days: period,
            next_rotation: None,
        });
        Ok(key.key_id.clone())
    })?;
    super::multiregion::sync_replicas(kms, &id);
    Ok(Empty {})
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetKeyRotationStatusResponse {
    pub key_rotation_enabled: bool,
    pub key_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_period_in_days: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_rotation_date: Option<u64>,
}

pub fn get_key_rotation_status(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: KeyIdRequest,
) -> Result<GetKeyRotationStatusResponse, KmsError> {
    let (state, id) = kms.resolve(&req.key_id)?;
    let key = key_in(&state, &id)?;
    authorize::key_action(
        kms,
        ctx,
        key,
        "kms:GetKeyRotationStatus",
        Default::default(),
    )?;
    if key.key_spec != KeySpec::SymmetricDefault {
        return Err(KmsError::UnsupportedOperation(format!(
            "key {id} is a {} key; only SYMMETRIC_DEFAULT keys rotate",
            key.key_spec
        )));
    }
    let r = effective(key).filter(|r| r.enabled);
    Ok(GetKeyRotationStatusResponse {
        key_rotation_enabled: r.is_some(),
        key_id: kms.arn_of(key),
        rotation_period_in_days: r.as_ref().map(|r| r.period_days),
        next_rotation_date: r.and_then(|r| r.next_rotation),
    })
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RotateKeyOnDemandResponse {
    pub key_id: String,
}

pub fn rotate_key_on_demand(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: KeyIdRequest,
) -> Result<RotateKeyOnDemandResponse, KmsError> {
    let id = modify_key(
        kms,
        ctx,
        &req.key_id,
        "kms:RotateKeyOnDemand",
        |key, ctx| {
            check_rotatable(kms, key, "RotateKeyOnDemand")?;
            let done = key
                .material
                .iter()
                .filter(|m| m.rotation_type == Some(RotationType::OnDemand))
                .count();
            if done >= MAX_ON_DEMAND_ROTATIONS {
                return Err(KmsError::LimitExceeded(format!(
                    "key {} has been rotated on demand {done} times, the most AWS allows; enable \
                 automatic rotation instead",
                    key.key_id
                )));
            }
            add_version(kms, key, RotationType::OnDemand, ctx.now)?;
            Ok(key.key_id.clone())
        },
    )?;
    super::multiregion::sync_replicas(kms, &id);
    Ok(RotateKeyOnDemandResponse { key_id: id })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListKeyRotationsRequest {
    pub key_id: String,
    pub limit: Option<i64>,
    pub marker: Option<String>,
}

/// AWS `RotationsListEntry`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RotationsListEntry {
    pub key_id: String,
    pub rotation_date: u64,
    pub rotation_type: RotationType,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListKeyRotationsResponse {
    pub rotations: Vec<RotationsListEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
    pub truncated: bool,
}

pub fn list_key_rotations(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: ListKeyRotationsRequest,
) -> Result<ListKeyRotationsResponse, KmsError> {
    let limit = json::limit(req.limit, 1000, 100)?;
    let (state, id) = kms.resolve(&req.key_id)?;
    let key = key_in(&state, &id)?;
    authorize::key_action(kms, ctx, key, "kms:ListKeyRotations", Default::default())?;
    if key.key_spec != KeySpec::SymmetricDefault {
        return Err(KmsError::UnsupportedOperation(format!(
            "key {id} is a {} key; only SYMMETRIC_DEFAULT keys rotate",
            key.key_spec
        )));
    }
    let items = key
        .material
        .iter()
        .filter_map(|m| {
            let e = RotationsListEntry {
                key_id: key.key_id.clone(),
                rotation_date: m.creation_date,
                rotation_type: m.rotation_type?,
            };
            Some((format!("{:010}", m.version), e))
        })
        .collect();
    let page = json::paginate(items, limit, req.marker.as_deref())?;
    Ok(ListKeyRotationsResponse {
        truncated: page.truncated(),
        next_marker: page.next_marker,
        rotations: page.items,
    })
}

#[cfg(test)]
mod tests;
