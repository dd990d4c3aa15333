//! Multi-region keys: CreateKey with `MultiRegion` makes a primary key with
//! an `mrk-` id; ReplicateKey copies it into another region's key store
//! with the same key id, key spec, usage, origin, rotation settings and key
//! material, so a blob made in one region decrypts in the other. Policy,
//! description, tags, aliases, grants and enabled state stay per region.
//!
//! The list of replicas is not stored: it is read from the other regions'
//! stores when needed, so it cannot go stale. Rotation of a primary pushes
//! the new material to every replica ([`sync_replicas`]).
//!
//! Sealed material is copied as it is: its AAD binds key id and version,
//! and every region of a data dir shares the root key.

use serde::{Deserialize, Serialize};

use super::authorize::{self, Extra};
use super::keys;
use super::tags::{self, Tag};
use super::{policy, OpCtx};
use crate::kms::arn;
use crate::kms::error::KmsError;
use crate::kms::keystore::{self, KeyStore};
use crate::kms::local::{key_in, LocalKms};
use crate::kms::model::{KeyRecord, KeyState};
use crate::kms::service::{MultiRegionConfiguration, MultiRegionKey};

/// The stores of the other regions of this data dir that hold `key_id`.
fn stores_holding(kms: &LocalKms, key_id: &str) -> Vec<(String, KeyStore)> {
    keystore::regions(kms.data_dir())
        .into_iter()
        .filter(|r| r != kms.region())
        .filter_map(|r| {
            let store = kms.store().sibling(&r).ok()?;
            let has = store.load().ok()?.keys.contains_key(key_id);
            has.then_some((r, store))
        })
        .collect()
}

/// Regions other than the primary's that hold a replica of `key`.
pub fn replica_regions(kms: &LocalKms, key: &KeyRecord) -> Vec<String> {
    let Some(primary) = key.multi_region_primary.as_deref() else {
        return Vec::new();
    };
    let mut out: Vec<String> = stores_holding(kms, &key.key_id)
        .into_iter()
        .map(|(r, _)| r)
        .filter(|r| r != primary)
        .collect();
    if kms.region() != primary {
        out.push(kms.region().to_owned());
    }
    out.sort();
    out
}

/// `MultiRegionConfiguration` of a multi-region key.
pub fn configuration(kms: &LocalKms, key: &KeyRecord) -> Option<MultiRegionConfiguration> {
    let primary = key.multi_region_primary.as_deref()?;
    let mrk = |region: &str| MultiRegionKey {
        arn: arn::key_arn(region, kms.account_id(), &key.key_id),
        region: region.to_owned(),
    };
    Some(MultiRegionConfiguration {
        multi_region_key_type: if primary == kms.region() {
            "PRIMARY"
        } else {
            "REPLICA"
        }
        .to_owned(),
        primary_key: mrk(primary),
        replica_keys: replica_regions(kms, key).iter().map(|r| mrk(r)).collect(),
    })
}

/// Pushes the material and rotation settings of the primary `key_id` (in
/// this region) to its replicas. Best effort: a replica that cannot be
/// updated now is logged and catches up at the primary's next change.
pub fn sync_replicas(kms: &LocalKms, key_id: &str) {
    let Ok(state) = kms.load() else { return };
    let Some(primary) = state.keys.get(key_id) else {
        return;
    };
    if primary.multi_region_primary.as_deref() != Some(kms.region()) {
        return;
    }
    for (region, store) in stores_holding(kms, key_id) {
        let r = store.update(|s| {
            if let Some(replica) = s.keys.get_mut(key_id) {
                if replica.origin == primary.origin && !primary.material.is_empty() {
                    replica.material = primary.material.clone();
                }
                replica.rotation = primary.rotation.clone();
            }
            Ok(())
        });
        if let Err(e) = r {
            tracing::warn!(key_id, region, error = %e, "cannot sync a multi-region replica");
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReplicateKeyRequest {
    pub key_id: String,
    pub replica_region: String,
    pub policy: Option<String>,
    pub bypass_policy_lockout_safety_check: Option<bool>,
    pub description: Option<String>,
    pub tags: Option<Vec<Tag>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReplicateKeyResponse {
    pub replica_key_metadata: crate::kms::service::KeyMetadata,
    pub replica_policy: String,
    pub replica_tags: Vec<Tag>,
}

pub fn replicate_key(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: ReplicateKeyRequest,
) -> Result<ReplicateKeyResponse, KmsError> {
    arn::validate_region(&req.replica_region)?;
    let description = req.description.unwrap_or_default();
    if description.chars().count() > keys::MAX_DESCRIPTION_LEN {
        return Err(KmsError::Validation(format!(
            "Description is longer than {} characters",
            keys::MAX_DESCRIPTION_LEN
        )));
    }
    let tag_map = tags::validate(req.tags.unwrap_or_default())?;
    let (state, id) = kms.resolve(&req.key_id)?;
    let key = key_in(&state, &id)?;
    authorize::key_action(kms, ctx, key, "kms:ReplicateKey", Extra::default())?;
    ctx.check_state(kms, key)?;
    match key.multi_region_primary.as_deref() {
        None => {
            return Err(KmsError::UnsupportedOperation(format!(
                "key {id} is not a multi-region key; only keys created with MultiRegion (ids \
                 beginning mrk-) can be replicated"
            )))
        }
        Some(p) if p != kms.region() => {
            return Err(KmsError::UnsupportedOperation(format!(
                "key {id} is a replica; replicate its primary key in {p}"
            )))
        }
        Some(_) => {}
    }
    if req.replica_region == kms.region() {
        return Err(KmsError::Validation(format!(
            "ReplicaRegion {} is the primary key's own region; name another region",
            req.replica_region
        )));
    }
    let replica_arn = arn::key_arn(&req.replica_region, kms.account_id(), &id);
    let bypass = req.bypass_policy_lockout_safety_check.unwrap_or(false);
    if let Some(p) = &req.policy {
        policy::check_new_policy(kms, ctx, p, bypass, Some(&replica_arn))?;
    }
    let mut replica = KeyRecord::new(
        id.clone(),
        ctx.now,
        key.key_spec,
        key.key_usage,
        key.origin,
        key.key_manager,
    );
    replica.description = description;
    replica.policy = req.policy.clone();
    replica.tags = tag_map.clone();
    replica.rotation = key.rotation.clone();
    replica.public_key = key.public_key.clone();
    replica.multi_region_primary = Some(kms.region().to_owned());
    if key.origin == crate::kms::model::Origin::AwsKms {
        replica.material = key.material.clone();
    } else {
        // Imported material is imported into each replica separately.
        replica.key_state = KeyState::PendingImport;
    }
    let store = kms.store().sibling(&req.replica_region)?;
    store.update(|s| {
        if s.keys.contains_key(&id) {
            return Err(KmsError::AlreadyExists(format!(
                "key {id} already has a replica in {}",
                req.replica_region
            )));
        }
        s.keys.insert(id.clone(), replica.clone());
        Ok(())
    })?;
    let mut md = replica.metadata(&req.replica_region, kms.account_id());
    md.multi_region_configuration = configuration(kms, key).map(|mut c| {
        c.multi_region_key_type = "REPLICA".to_owned();
        c
    });
    let policy_text = replica
        .policy
        .clone()
        .unwrap_or_else(|| crate::kms::policy_eval::default_policy(kms.account_id()));
    Ok(ReplicateKeyResponse {
        replica_key_metadata: md,
        replica_policy: policy_text,
        replica_tags: tag_map
            .into_iter()
            .map(|(tag_key, tag_value)| Tag { tag_key, tag_value })
            .collect(),
    })
}

#[cfg(test)]
mod tests;
