//! Aliases: CreateAlias, UpdateAlias, DeleteAlias, ListAliases.
//!
//! An alias names one customer managed key of its region; `alias/aws/…`
//! names belong to AWS managed keys (listed before their key exists, never
//! created, repointed or deleted by customers). Resolution of aliases
//! wherever a key id is accepted lives in [`LocalKms::resolve`].

use serde::{Deserialize, Serialize};

use super::authorize::{self, Extra};
use super::json::{self, Empty};
use super::states::{self, StateRule};
use super::OpCtx;
use crate::kms::arn::{self, KeyRef};
use crate::kms::asym;
use crate::kms::error::KmsError;
use crate::kms::keystore::StoreState;
use crate::kms::local::{key_in, LocalKms, Resolved, AWS_MANAGED_KEYS, MAX_ALIASES_PER_KEY};
use crate::kms::model::{AliasRecord, KeyRecord};
use crate::kms::service::AliasListEntry;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AliasRequest {
    pub alias_name: String,
    pub target_key_id: String,
}

fn reserved(alias_name: &str, what: &str) -> KmsError {
    KmsError::NotAuthorized(format!(
        "alias name {alias_name} is reserved: names beginning with {} belong to AWS managed \
         keys, which customers cannot {what}; choose another name, such as alias/my-key",
        arn::AWS_ALIAS_PREFIX
    ))
}

/// Resolves an alias target, which must be a key id or key ARN.
fn target_key(kms: &LocalKms, state: &StoreState, target: &str) -> Result<String, KmsError> {
    let key_ref = KeyRef::parse(target)?;
    if key_ref.is_alias() {
        return Err(KmsError::Validation(format!(
            "TargetKeyId '{target}' is an alias; an alias must point at a key id or key ARN"
        )));
    }
    match kms.resolve_in(state, &key_ref, target)? {
        Resolved::Key(id) => Ok(id),
        Resolved::MissingManaged(_) => Err(KmsError::Internal(
            "BUG: a key id resolved to a managed alias".into(),
        )),
    }
}

pub fn create_alias(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: AliasRequest,
) -> Result<Empty, KmsError> {
    let name = req.alias_name.as_str();
    arn::validate_alias_name(name)?;
    if arn::is_aws_alias(name) {
        return Err(reserved(name, "create"));
    }
    let state = kms.load()?;
    let key_id = target_key(kms, &state, &req.target_key_id)?;
    authorize::key_action(
        kms,
        ctx,
        key_in(&state, &key_id)?,
        "kms:CreateAlias",
        Extra::default(),
    )?;
    let now = ctx.now;
    let ctx: &OpCtx<'_> = ctx;
    kms.update(|s| {
        if let Some(existing) = s.aliases.get(name) {
            return Err(KmsError::AlreadyExists(format!(
                "alias {} already exists (it points at key {}); choose another name, or repoint \
                 it with `cryptvol kms update-alias --alias-name {name} --target-key-id {key_id}`",
                arn::alias_arn(kms.region(), kms.account_id(), name),
                existing.target_key_id
            )));
        }
        let key = s
            .keys
            .get(&key_id)
            .ok_or_else(|| KmsError::key_not_found(&req.target_key_id, kms.region()))?;
        ctx.check_state(kms, key)?;
        let count = s.aliases_of(&key_id).count();
        if count >= MAX_ALIASES_PER_KEY {
            return Err(KmsError::LimitExceeded(format!(
                "key {key_id} already has {count} aliases, the most a key may have; delete one \
                 first"
            )));
        }
        s.aliases.insert(
            name.to_owned(),
            AliasRecord {
                target_key_id: key_id.clone(),
                creation_date: now,
                last_updated_date: None,
            },
        );
        Ok(Empty {})
    })
}

/// "Same type" for UpdateAlias: symmetric, asymmetric or HMAC.
fn key_class(key: &KeyRecord) -> &'static str {
    if asym::hmac_key_len(key.key_spec).is_some() {
        "HMAC"
    } else if asym::is_asymmetric(key.key_spec) {
        "asymmetric"
    } else {
        "symmetric"
    }
}

pub fn update_alias(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: AliasRequest,
) -> Result<Empty, KmsError> {
    let name = req.alias_name.as_str();
    arn::validate_alias_name(name)?;
    if arn::is_aws_alias(name) {
        return Err(reserved(name, "repoint"));
    }
    let state = kms.load()?;
    let old_id = state
        .aliases
        .get(name)
        .map(|a| a.target_key_id.clone())
        .ok_or_else(|| KmsError::alias_not_found(name, kms.region()))?;
    let new_id = target_key(kms, &state, &req.target_key_id)?;
    let (old, new) = (key_in(&state, &old_id)?, key_in(&state, &new_id)?);
    authorize::key_action(kms, ctx, old, "kms:UpdateAlias", Extra::default())?;
    authorize::key_action(kms, ctx, new, "kms:UpdateAlias", Extra::default())?;
    if key_class(old) != key_class(new) || old.key_usage != new.key_usage {
        return Err(KmsError::Validation(format!(
            "alias {name} points at a {} {} key; its new target {new_id} is a {} {} key. An \
             alias can only move to a key of the same type and key usage",
            key_class(old),
            old.key_usage,
            key_class(new),
            new.key_usage
        )));
    }
    let now = ctx.now;
    let ctx: &OpCtx<'_> = ctx;
    kms.update(|s| {
        let key = s
            .keys
            .get(&new_id)
            .ok_or_else(|| KmsError::key_not_found(&req.target_key_id, kms.region()))?;
        ctx.check_state(kms, key)?;
        if s.aliases_of(&new_id).count() >= MAX_ALIASES_PER_KEY {
            return Err(KmsError::LimitExceeded(format!(
                "key {new_id} already has {MAX_ALIASES_PER_KEY} aliases; delete one first"
            )));
        }
        let alias = s
            .aliases
            .get_mut(name)
            .ok_or_else(|| KmsError::alias_not_found(name, kms.region()))?;
        alias.target_key_id = new_id.clone();
        alias.last_updated_date = Some(now);
        Ok(Empty {})
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteAliasRequest {
    pub alias_name: String,
}

pub fn delete_alias(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: DeleteAliasRequest,
) -> Result<Empty, KmsError> {
    let name = req.alias_name.as_str();
    arn::validate_alias_name(name)?;
    if arn::is_aws_alias(name) {
        return Err(reserved(name, "delete"));
    }
    let state = kms.load()?;
    let target = state
        .aliases
        .get(name)
        .map(|a| a.target_key_id.clone())
        .ok_or_else(|| KmsError::alias_not_found(name, kms.region()))?;
    let key = key_in(&state, &target)?;
    authorize::key_action(kms, ctx, key, "kms:DeleteAlias", Extra::default())?;
    states::check_rule(StateRule::Any, ctx.op.name, key, kms.region())?;
    kms.update(|s| {
        s.aliases
            .remove(name)
            .ok_or_else(|| KmsError::alias_not_found(name, kms.region()))?;
        Ok(Empty {})
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListAliasesRequest {
    pub key_id: Option<String>,
    pub limit: Option<i64>,
    pub marker: Option<String>,
}

/// AWS `AliasListEntry`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AliasEntry {
    pub alias_name: String,
    pub alias_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creation_date: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_updated_date: Option<u64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListAliasesResponse {
    pub aliases: Vec<AliasEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
    pub truncated: bool,
}

/// Every alias of the region (with the predefined AWS ones not yet
/// created), sorted by name; only those of `key_id` if given.
fn entries(kms: &LocalKms, state: &StoreState, key_id: Option<&str>) -> Vec<AliasEntry> {
    let arn_of = |n: &str| arn::alias_arn(kms.region(), kms.account_id(), n);
    let mut out: Vec<AliasEntry> = state
        .aliases
        .iter()
        .filter(|(_, a)| key_id.is_none_or(|k| a.target_key_id == k))
        .map(|(name, a)| AliasEntry {
            alias_name: name.clone(),
            alias_arn: arn_of(name),
            target_key_id: Some(a.target_key_id.clone()),
            creation_date: Some(a.creation_date),
            last_updated_date: Some(a.last_updated_date.unwrap_or(a.creation_date)),
        })
        .collect();
    if key_id.is_none() {
        for m in AWS_MANAGED_KEYS
            .iter()
            .filter(|m| !state.aliases.contains_key(m.alias))
        {
            out.push(AliasEntry {
                alias_name: m.alias.to_owned(),
                alias_arn: arn_of(m.alias),
                target_key_id: None,
                creation_date: None,
                last_updated_date: None,
            });
        }
    }
    out.sort_by(|a, b| a.alias_name.cmp(&b.alias_name));
    out
}

pub fn list_aliases(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: ListAliasesRequest,
) -> Result<ListAliasesResponse, KmsError> {
    authorize::account_action(kms, ctx, "kms:ListAliases")?;
    let limit = json::limit(req.limit, 100, 50)?;
    let (state, key_id) = match &req.key_id {
        Some(k) => {
            let (state, id) = kms.resolve(k)?;
            (state, Some(id))
        }
        None => (kms.load()?, None),
    };
    let items = entries(kms, &state, key_id.as_deref())
        .into_iter()
        .map(|e| (e.alias_name.clone(), e))
        .collect();
    let page = json::paginate(items, limit, req.marker.as_deref())?;
    Ok(ListAliasesResponse {
        truncated: page.truncated(),
        next_marker: page.next_marker,
        aliases: page.items,
    })
}

/// Every alias, for the [`crate::kms::KeyService`] trait.
pub fn all_aliases(kms: &LocalKms, ctx: &mut OpCtx<'_>) -> Result<Vec<AliasListEntry>, KmsError> {
    authorize::account_action(kms, ctx, "kms:ListAliases")?;
    let state = kms.load()?;
    Ok(entries(kms, &state, None)
        .into_iter()
        .map(|e| AliasListEntry {
            alias_name: e.alias_name,
            alias_arn: e.alias_arn,
            target_key_id: e.target_key_id,
        })
        .collect())
}

#[cfg(test)]
mod tests;
