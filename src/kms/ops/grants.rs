//! Grants: CreateGrant, ListGrants, ListRetirableGrants, RetireGrant,
//! RevokeGrant, grant tokens, and the grant half of authorization.
//!
//! Grant ids are 64 random hex digits, as AWS's are. A grant token is
//! self-authenticating (it names region, key and grant, under an HMAC keyed
//! from the root key), so RetireGrant can find a grant from its token alone
//! and forged tokens are `InvalidGrantTokenException`. Grants take effect at
//! once (the key store is consistent), so a token needs no waiting; tokens
//! passed as `GrantTokens` are checked and then need nothing more.
//!
//! The rules themselves (which operations a key's grants may carry,
//! constraints, who may retire, what a CreateGrant grantee may pass on) are
//! [`crate::kms::grant_eval`]'s; this file stores grants and applies them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};

use super::authorize::{self, Extra};
use super::json::{self, Empty};
use super::OpCtx;
use crate::kms::arn;
use crate::kms::error::KmsError;
use crate::kms::grant_eval;
use crate::kms::local::{key_in, key_mut, LocalKms};
use crate::kms::model::{GrantConstraints, GrantOperation, GrantRecord, KeyRecord};
use crate::kms::service::EncryptionContext;

/// Grants per key (AWS quota).
pub const MAX_GRANTS_PER_KEY: usize = 50_000;
const TOKEN_VERSION: u8 = 1;
const TOKEN_MAC_PURPOSE: &[u8] = b"cryptvol/kms/grant-token/v1";
const GRANT_ID_BYTES: usize = 32;
const TAG_BYTES: usize = 32;
const TOKEN_BYTES: usize = 1 + 16 + GRANT_ID_BYTES + TAG_BYTES;

fn token_tag(kms: &LocalKms, body: &[u8]) -> Vec<u8> {
    let key = kms.store().derive(TOKEN_MAC_PURPOSE);
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key.expose())
        .expect("BUG: HMAC accepts any key length");
    mac.update(kms.region().as_bytes());
    mac.update(&[0]);
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// The token of grant `grant_id` on `key_id`.
pub fn make_token(kms: &LocalKms, key_id: &str, grant_id: &str) -> Result<String, KmsError> {
    let bug = || {
        KmsError::Internal(format!(
            "BUG: grant {grant_id} of key {key_id} has no token form"
        ))
    };
    let mut body = vec![TOKEN_VERSION];
    body.extend_from_slice(&arn::key_id_to_bytes(key_id).ok_or_else(bug)?);
    body.extend_from_slice(&hex::decode(grant_id).map_err(|_| bug())?);
    let tag = token_tag(kms, &body);
    body.extend_from_slice(&tag);
    Ok(URL_SAFE_NO_PAD.encode(body))
}

/// Checks a grant token; returns the key id spellings and the grant id.
pub fn parse_token(kms: &LocalKms, token: &str) -> Result<([String; 2], String), KmsError> {
    let bad = || {
        KmsError::InvalidGrantToken(format!(
            "the grant token is not a valid grant token of region {}; use the GrantToken that \
             CreateGrant returned, unchanged",
            kms.region()
        ))
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(token.as_bytes())
        .map_err(|_| bad())?;
    if bytes.len() != TOKEN_BYTES || bytes[0] != TOKEN_VERSION {
        return Err(bad());
    }
    let (body, tag) = bytes.split_at(TOKEN_BYTES - TAG_BYTES);
    let want = token_tag(kms, body);
    if !subtle_eq(&want, tag) {
        return Err(bad());
    }
    let key_bytes: [u8; 16] = body[1..17].try_into().map_err(|_| bad())?;
    Ok((arn::key_id_from_bytes(&key_bytes), hex::encode(&body[17..])))
}

/// Constant-time equality of two MAC tags.
fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a grant on `key` allows the caller of `ctx` to do `action`
/// (for `kms:CreateGrant`: to create the grant described by `extra`).
pub fn grant_allows(ctx: &OpCtx<'_>, key: &KeyRecord, action: &str, extra: Extra<'_>) -> bool {
    let caller = ctx.caller.principal_arn.as_str();
    if action == "kms:CreateGrant" {
        let Some(ops) = extra
            .grant_operations
            .and_then(|o| grant_eval::parse_operations(o).ok())
        else {
            return false;
        };
        return key.grants.iter().any(|g| {
            grant_eval::grant_allows_create_grant(g, caller, &ops, extra.new_grant_constraints)
        });
    }
    let no_context = EncryptionContext::new();
    let ec = extra.encryption_context.unwrap_or(&no_context);
    key.grants
        .iter()
        .any(|g| grant_eval::grant_allows(g, caller, action, ec))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateGrantRequest {
    pub key_id: String,
    pub grantee_principal: String,
    pub retiring_principal: Option<String>,
    pub operations: Vec<String>,
    pub constraints: Option<GrantConstraints>,
    pub name: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateGrantResponse {
    pub grant_token: String,
    pub grant_id: String,
}

pub fn create_grant(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: CreateGrantRequest,
) -> Result<CreateGrantResponse, KmsError> {
    grant_eval::validate_principal("GranteePrincipal", &req.grantee_principal)?;
    if let Some(r) = &req.retiring_principal {
        grant_eval::validate_principal("RetiringPrincipal", r)?;
    }
    if let Some(n) = &req.name {
        grant_eval::validate_grant_name(n)?;
    }
    let ops = grant_eval::parse_operations(&req.operations)?;
    let constraints = req
        .constraints
        .clone()
        .and_then(grant_eval::normalize_constraints);
    let (state, id) = kms.resolve(&req.key_id)?;
    let key = key_in(&state, &id)?;
    let extra = Extra {
        grant_operations: Some(&req.operations),
        grantee_principal: Some(&req.grantee_principal),
        retiring_principal: req.retiring_principal.as_deref(),
        new_grant_constraints: constraints.as_ref(),
        ..Extra::default()
    };
    authorize::key_action(kms, ctx, key, "kms:CreateGrant", extra)?;
    ctx.check_state(kms, key)?;
    grant_eval::validate_grant(key.key_spec, key.key_usage, &ops, constraints.as_ref())?;
    ctx.dry_run_stop()?;
    let fresh = GrantRecord {
        grant_id: grant_eval::new_grant_id(),
        name: req.name.clone(),
        creation_date: ctx.now,
        grantee_principal: req.grantee_principal.clone(),
        retiring_principal: req.retiring_principal.clone(),
        issuing_account: arn::root_principal(kms.account_id()),
        operations: ops,
        constraints,
    };
    let region = kms.region();
    let grant_id = kms.update(|s| {
        let key = key_mut(s, &id, region)?;
        let same = |g: &&GrantRecord| {
            g.name.is_some()
                && g.name == fresh.name
                && g.grantee_principal == fresh.grantee_principal
                && g.retiring_principal == fresh.retiring_principal
                && g.operations == fresh.operations
                && g.constraints == fresh.constraints
        };
        if let Some(existing) = key.grants.iter().find(same) {
            return Ok(existing.grant_id.clone());
        }
        if key.grants.len() >= MAX_GRANTS_PER_KEY {
            return Err(KmsError::LimitExceeded(format!(
                "key {id} already has {MAX_GRANTS_PER_KEY} grants, the most a key may have; \
                 retire or revoke some first"
            )));
        }
        key.grants.push(fresh.clone());
        Ok(fresh.grant_id.clone())
    })?;
    Ok(CreateGrantResponse {
        grant_token: make_token(kms, &id, &grant_id)?,
        grant_id,
    })
}

/// AWS `GrantListEntry`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GrantListEntry {
    pub key_id: String,
    pub grant_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub creation_date: u64,
    pub grantee_principal: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retiring_principal: Option<String>,
    pub issuing_account: String,
    pub operations: Vec<GrantOperation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraints: Option<GrantConstraints>,
}

fn entry(kms: &LocalKms, key: &KeyRecord, g: &GrantRecord) -> (String, GrantListEntry) {
    let sort = format!("{:020}/{}/{}", g.creation_date, key.key_id, g.grant_id);
    let e = GrantListEntry {
        key_id: kms.arn_of(key),
        grant_id: g.grant_id.clone(),
        name: g.name.clone(),
        creation_date: g.creation_date,
        grantee_principal: g.grantee_principal.clone(),
        retiring_principal: g.retiring_principal.clone(),
        issuing_account: g.issuing_account.clone(),
        operations: g.operations.clone(),
        constraints: g.constraints.clone(),
    };
    (sort, e)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListGrantsResponse {
    pub grants: Vec<GrantListEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
    pub truncated: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListGrantsRequest {
    pub key_id: String,
    pub limit: Option<i64>,
    pub marker: Option<String>,
    pub grant_id: Option<String>,
    pub grantee_principal: Option<String>,
}

pub fn list_grants(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: ListGrantsRequest,
) -> Result<ListGrantsResponse, KmsError> {
    let limit = json::limit(req.limit, 100, 50)?;
    if let Some(g) = &req.grant_id {
        grant_eval::validate_grant_id(g)?;
    }
    let (state, id) = kms.resolve(&req.key_id)?;
    let key = key_in(&state, &id)?;
    authorize::key_action(kms, ctx, key, "kms:ListGrants", Extra::default())?;
    let items = key
        .grants
        .iter()
        .filter(|g| req.grant_id.as_ref().is_none_or(|w| *w == g.grant_id))
        .filter(|g| {
            req.grantee_principal
                .as_ref()
                .is_none_or(|w| *w == g.grantee_principal)
        })
        .map(|g| entry(kms, key, g))
        .collect();
    let page = json::paginate(items, limit, req.marker.as_deref())?;
    Ok(ListGrantsResponse {
        truncated: page.truncated(),
        next_marker: page.next_marker,
        grants: page.items,
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListRetirableGrantsRequest {
    pub retiring_principal: String,
    pub limit: Option<i64>,
    pub marker: Option<String>,
}

pub fn list_retirable_grants(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: ListRetirableGrantsRequest,
) -> Result<ListGrantsResponse, KmsError> {
    let limit = json::limit(req.limit, 100, 50)?;
    authorize::account_action(kms, ctx, "kms:ListRetirableGrants")?;
    let state = kms.load()?;
    let items = state
        .keys
        .values()
        .flat_map(|k| k.grants.iter().map(move |g| (k, g)))
        .filter(|(_, g)| g.retiring_principal.as_deref() == Some(req.retiring_principal.as_str()))
        .map(|(k, g)| entry(kms, k, g))
        .collect();
    let page = json::paginate(items, limit, req.marker.as_deref())?;
    Ok(ListGrantsResponse {
        truncated: page.truncated(),
        next_marker: page.next_marker,
        grants: page.items,
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RetireGrantRequest {
    pub grant_token: Option<String>,
    pub key_id: Option<String>,
    pub grant_id: Option<String>,
}

fn grant_not_found(grant_id: &str, key_id: &str) -> KmsError {
    KmsError::NotFound(format!(
        "grant {grant_id} does not exist on key {key_id}; list them with \
         `cryptvol kms list-grants --key-id {key_id}`"
    ))
}

pub fn retire_grant(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: RetireGrantRequest,
) -> Result<Empty, KmsError> {
    let (state, key_id, grant_id) = match (&req.grant_token, &req.key_id, &req.grant_id) {
        (Some(token), _, _) => {
            let (spellings, grant_id) = parse_token(kms, token)?;
            let state = kms.load()?;
            let key_id = spellings
                .iter()
                .find(|s| state.keys.contains_key(*s))
                .cloned()
                .ok_or_else(|| grant_not_found(&grant_id, &spellings[0]))?;
            (state, key_id, grant_id)
        }
        (None, Some(k), Some(g)) => {
            grant_eval::validate_grant_id(g)?;
            let (state, id) = kms.resolve(k)?;
            (state, id, g.clone())
        }
        _ => {
            return Err(KmsError::Validation(
                "RetireGrant needs GrantToken, or KeyId and GrantId".into(),
            ))
        }
    };
    let key = key_in(&state, &key_id)?;
    ctx.set_key(kms, key);
    let grant = key
        .grants
        .iter()
        .find(|g| g.grant_id == grant_id)
        .ok_or_else(|| grant_not_found(&grant_id, &key_id))?;
    let caller = ctx.caller.principal_arn.as_str();
    let may = grant_eval::can_retire(grant, caller, kms.account_id());
    if !may {
        return Err(KmsError::AccessDenied(format!(
            "User: {caller} is not authorized to perform: kms:RetireGrant on grant {grant_id}: \
             only its retiring principal, its grantee (if the grant allows RetireGrant) or the \
             account that created it may retire it; others can revoke it with RevokeGrant"
        )));
    }
    ctx.dry_run_stop()?;
    remove_grant(kms, &key_id, &grant_id)
}

fn remove_grant(kms: &LocalKms, key_id: &str, grant_id: &str) -> Result<Empty, KmsError> {
    kms.update(|s| {
        let key = key_mut(s, key_id, kms.region())?;
        let before = key.grants.len();
        key.grants.retain(|g| g.grant_id != grant_id);
        if key.grants.len() == before {
            return Err(grant_not_found(grant_id, key_id));
        }
        Ok(Empty {})
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RevokeGrantRequest {
    pub key_id: String,
    pub grant_id: String,
}

pub fn revoke_grant(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: RevokeGrantRequest,
) -> Result<Empty, KmsError> {
    grant_eval::validate_grant_id(&req.grant_id)?;
    let (state, id) = kms.resolve(&req.key_id)?;
    let key = key_in(&state, &id)?;
    authorize::key_action(kms, ctx, key, "kms:RevokeGrant", Extra::default())?;
    if !key.grants.iter().any(|g| g.grant_id == req.grant_id) {
        return Err(grant_not_found(&req.grant_id, &id));
    }
    ctx.dry_run_stop()?;
    remove_grant(kms, &id, &req.grant_id)
}

#[cfg(test)]
mod tests;
