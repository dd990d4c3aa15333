//! Key policies: PutKeyPolicy, GetKeyPolicy, ListKeyPolicies, and the checks
//! every new policy passes (CreateKey, ReplicateKey too): it must parse
//! ([`crate::kms::policy_eval::Policy`]), and unless the request sets
//! `BypassPolicyLockoutSafetyCheck`, it must still let the caller change it.

use serde::{Deserialize, Serialize};

use super::authorize::{self, policy_text, Extra};
use super::json::{self, Empty};
use super::keys::modify_key;
use super::OpCtx;
use crate::kms::error::KmsError;
use crate::kms::local::{key_in, LocalKms};
use crate::kms::policy_eval::{self, Policy};

/// Every key has exactly one policy, named `default` (AWS).
pub const POLICY_NAME: &str = "default";

/// Parses `text` and runs the lockout safety check for the caller.
pub fn check_new_policy(
    kms: &LocalKms,
    ctx: &OpCtx<'_>,
    text: &str,
    bypass: bool,
    key_arn: Option<&str>,
) -> Result<(), KmsError> {
    let policy = Policy::parse_document(text)
        .map_err(|e| KmsError::MalformedPolicyDocument(e.to_string()))?;
    if !bypass {
        policy_eval::lockout_check_for_key(
            &policy,
            &ctx.caller.principal_arn,
            kms.account_id(),
            key_arn.unwrap_or(""),
        )
        .map_err(|e| KmsError::MalformedPolicyDocument(e.to_string()))?;
    }
    Ok(())
}

fn check_name(name: Option<&str>) -> Result<(), KmsError> {
    match name {
        None | Some(POLICY_NAME) => Ok(()),
        Some(other) => Err(KmsError::NotFound(format!(
            "key policy '{other}' does not exist; every key has one policy, named '{POLICY_NAME}'"
        ))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutKeyPolicyRequest {
    pub key_id: String,
    pub policy_name: Option<String>,
    pub policy: String,
    pub bypass_policy_lockout_safety_check: Option<bool>,
}

pub fn put_key_policy(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: PutKeyPolicyRequest,
) -> Result<Empty, KmsError> {
    check_name(req.policy_name.as_deref())?;
    let (state, id) = kms.resolve(&req.key_id)?;
    let key = key_in(&state, &id)?;
    authorize::key_action(kms, ctx, key, "kms:PutKeyPolicy", Extra::default())?;
    ctx.check_state(kms, key)?;
    let bypass = req.bypass_policy_lockout_safety_check.unwrap_or(false);
    check_new_policy(kms, ctx, &req.policy, bypass, Some(&kms.arn_of(key)))?;
    modify_key(kms, ctx, &req.key_id, "kms:PutKeyPolicy", |key, _| {
        key.policy = Some(req.policy.clone());
        Ok(Empty {})
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetKeyPolicyRequest {
    pub key_id: String,
    pub policy_name: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetKeyPolicyResponse {
    pub policy: String,
    pub policy_name: &'static str,
}

pub fn get_key_policy(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: GetKeyPolicyRequest,
) -> Result<GetKeyPolicyResponse, KmsError> {
    check_name(req.policy_name.as_deref())?;
    let (state, id) = kms.resolve(&req.key_id)?;
    let key = key_in(&state, &id)?;
    authorize::key_action(kms, ctx, key, "kms:GetKeyPolicy", Extra::default())?;
    Ok(GetKeyPolicyResponse {
        policy: policy_text(kms, key),
        policy_name: POLICY_NAME,
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListKeyPoliciesRequest {
    pub key_id: String,
    pub limit: Option<i64>,
    pub marker: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListKeyPoliciesResponse {
    pub policy_names: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
    pub truncated: bool,
}

pub fn list_key_policies(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: ListKeyPoliciesRequest,
) -> Result<ListKeyPoliciesResponse, KmsError> {
    let limit = json::limit(req.limit, 1000, 100)?;
    let (state, id) = kms.resolve(&req.key_id)?;
    let key = key_in(&state, &id)?;
    authorize::key_action(kms, ctx, key, "kms:ListKeyPolicies", Extra::default())?;
    let page = json::paginate(
        vec![(POLICY_NAME.to_owned(), POLICY_NAME)],
        limit,
        req.marker.as_deref(),
    )?;
    Ok(ListKeyPoliciesResponse {
        truncated: page.truncated(),
        next_marker: page.next_marker,
        policy_names: page.items,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::kms::ops::testutil::*;
    use crate::kms::policy_eval;

    #[test]
    fn default_policy_is_the_account_root_policy() {
        let f = Fixture::new();
        let id = f.symmetric_key();
        let out = f.ok("GetKeyPolicy", json!({"KeyId": id}));
        assert_eq!(out["PolicyName"], "default");
        assert_eq!(
            out["Policy"],
            policy_eval::default_policy(f.kms.account_id())
        );
        let out = f.ok("ListKeyPolicies", json!({"KeyId": id}));
        assert_eq!(out, json!({"PolicyNames": ["default"], "Truncated": false}));
        let (t, _) = f.err("GetKeyPolicy", json!({"KeyId": id, "PolicyName": "other"}));
        assert_eq!(t, "NotFoundException");
    }

    #[test]
    fn put_key_policy_validates_and_runs_the_lockout_check() {
        let f = Fixture::new();
        let id = f.symmetric_key();
        let (t, _) = f.err("PutKeyPolicy", json!({"KeyId": id, "Policy": "{not json"}));
        assert_eq!(t, "MalformedPolicyDocumentException");
        let locks_out = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::111122223333:user/x"}, "Action": "kms:*", "Resource": "*"}]})
        .to_string();
        let (t, m) = f.err("PutKeyPolicy", json!({"KeyId": id, "Policy": locks_out}));
        assert_eq!(t, "MalformedPolicyDocumentException");
        assert!(m.contains("kms:PutKeyPolicy"), "{m}");
        f.ok(
            "PutKeyPolicy",
            json!({"KeyId": id, "Policy": locks_out, "BypassPolicyLockoutSafetyCheck": true}),
        );
        let stored = f.kms.store().load().unwrap().keys[&id].policy.clone();
        assert_eq!(stored.as_deref(), Some(locks_out.as_str()));
        // Now even the root is locked out, as AWS warns.
        for op in ["DisableKey", "GetKeyPolicy", "PutKeyPolicy"] {
            let (t, _) = f.err(op, json!({"KeyId": id, "Policy": locks_out}));
            assert_eq!(t, "AccessDeniedException", "{op}");
        }
        // CreateKey runs the same checks.
        let (t, _) = f.err("CreateKey", json!({"Policy": locks_out}));
        assert_eq!(t, "MalformedPolicyDocumentException");
    }

    #[test]
    fn aws_managed_keys_show_their_policy_but_refuse_a_new_one() {
        let f = Fixture::new();
        let md = f.describe("alias/aws/ebs");
        let id = md["KeyId"].as_str().unwrap();
        let p = f.ok("GetKeyPolicy", json!({"KeyId": id}))["Policy"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(p.contains("kms:ViaService"), "{p}");
        let (t, _) = f.err(
            "PutKeyPolicy",
            json!({"KeyId": id, "Policy": policy_eval::default_policy(f.kms.account_id())}),
        );
        assert_eq!(t, "AccessDeniedException");
    }
}
