//! The single authorization step of every operation.
//!
//! A request on a key is allowed when the key policy allows it (see
//! [`crate::kms::policy_eval`]) or, failing that, a grant on the key does
//! ([`super::grants::grant_allows`]) — unless the policy denies it
//! explicitly, which nothing overrides. Requests that name no key
//! (CreateKey, ListKeys, ListAliases, GenerateRandom, ListRetirableGrants)
//! are IAM-only in AWS; cryptvol has no IAM policies, so every principal of
//! the account may make them and no other account may (the same reading of
//! "the account root" as the policy evaluator's).

use super::OpCtx;
use crate::kms::arn;
use crate::kms::error::KmsError;
use crate::kms::local::LocalKms;
use crate::kms::model::{GrantConstraints, KeyManager, KeyRecord};
use crate::kms::policy_eval::{self, Decision, Policy, RequestContext};
use crate::kms::service::EncryptionContext;

/// The request details beyond caller, action and key that policies and
/// grants may look at.
#[derive(Debug, Default, Clone, Copy)]
pub struct Extra<'a> {
    pub encryption_context: Option<&'a EncryptionContext>,
    /// CreateGrant: the operations of the new grant (`kms:GrantOperations`).
    pub grant_operations: Option<&'a [String]>,
    /// CreateGrant: the new grant's constraints (a grantee creating a grant
    /// must pass on constraints at least as strict as its own).
    pub new_grant_constraints: Option<&'a GrantConstraints>,
    pub grantee_principal: Option<&'a str>,
    pub retiring_principal: Option<&'a str>,
    /// The alias the caller named the key by (`kms:RequestAlias`).
    pub request_alias: Option<&'a str>,
}

/// The service that AWS managed keys are used through (`alias/aws/ebs`).
const MANAGED_KEY_SERVICE: &str = "ebs";

/// The key policy text of `key`: its own, or the default one.
pub fn policy_text(kms: &LocalKms, key: &KeyRecord) -> String {
    match (&key.policy, key.key_manager) {
        (Some(p), _) => p.clone(),
        (None, KeyManager::Customer) => policy_eval::default_policy(kms.account_id()),
        (None, KeyManager::Aws) => {
            policy_eval::aws_managed_policy(kms.account_id(), kms.region(), MANAGED_KEY_SERVICE)
        }
    }
}

/// Authorizes `action` (`kms:Decrypt`, …) on `key` for the caller of
/// `ctx`, and records the key as the call's resource.
pub fn key_action(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    key: &KeyRecord,
    action: &str,
    extra: Extra<'_>,
) -> Result<(), KmsError> {
    ctx.set_key(kms, key);
    let key_arn = kms.arn_of(key);
    let principal = ctx.caller.principal_arn.as_str();
    let caller_account = ctx.caller.account_id().unwrap_or("");
    let no_context = EncryptionContext::new();
    let ec = extra.encryption_context.unwrap_or(&no_context);
    let rc = RequestContext {
        via_service: ctx.via_service.as_deref(),
        grant_operations: extra.grant_operations,
        grantee_principal: extra.grantee_principal,
        retiring_principal: extra.retiring_principal,
        request_alias: extra.request_alias,
        grant_is_for_aws_resource: extra.grant_operations.map(|_| ctx.via_service.is_some()),
        key_spec: Some(key.key_spec.as_str()),
        key_usage: Some(key.key_usage.as_str()),
        key_origin: Some(key.origin.as_str()),
        ..RequestContext::new(
            principal,
            caller_account,
            action,
            &key_arn,
            kms.account_id(),
            ec,
        )
    };
    let policy = Policy::parse(&policy_text(kms, key)).map_err(|e| {
        KmsError::Internal(format!(
            "the stored key policy of key {} cannot be parsed ({e}); replace it with \
             `cryptvol kms put-key-policy --key-id {}`",
            key.key_id, key.key_id
        ))
    })?;
    match policy_eval::evaluate(&policy, &rc) {
        Decision::Allow => Ok(()),
        Decision::ExplicitDeny => Err(policy_eval::access_denied(&rc, Decision::ExplicitDeny)),
        Decision::ImplicitDeny => {
            if super::grants::grant_allows(ctx, key, action, extra) {
                Ok(())
            } else {
                Err(policy_eval::access_denied(&rc, Decision::ImplicitDeny))
            }
        }
    }
}

/// Authorizes an action that names no key (resource `*`).
pub fn account_action(kms: &LocalKms, ctx: &OpCtx<'_>, action: &str) -> Result<(), KmsError> {
    if ctx.caller.account_id() == Some(kms.account_id()) {
        return Ok(());
    }
    Err(KmsError::AccessDenied(format!(
        "User: {} is not authorized to perform: {action} on resource: * because only principals \
         of account {} ({}) may use this KMS",
        ctx.caller.principal_arn,
        kms.account_id(),
        arn::root_principal(kms.account_id())
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::kms::ops::testutil::*;

    #[test]
    fn other_accounts_are_denied_and_same_account_users_allowed() {
        let f = Fixture::new();
        let id = f.symmetric_key();
        let stranger = f.caller("arn:aws:iam::999999999999:user/eve");
        let (t, m) = f.err_as(&stranger, "DescribeKey", json!({"KeyId": id}));
        assert_eq!(t, "AccessDeniedException");
        assert!(m.contains("kms:DescribeKey") && m.contains("eve"), "{m}");
        let (t, _) = f.err_as(&stranger, "CreateKey", json!({}));
        assert_eq!(t, "AccessDeniedException");
        let bob = f.user("bob");
        f.ok_as(&bob, "DescribeKey", json!({"KeyId": id}));
    }

    #[test]
    fn an_explicit_deny_in_the_key_policy_wins() {
        let f = Fixture::new();
        let id = f.symmetric_key();
        let bob = f.user("bob");
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": f.root.principal_arn}, "Action": "kms:*", "Resource": "*"},
                {"Effect": "Deny", "Principal": {"AWS": bob.principal_arn}, "Action": "kms:Encrypt", "Resource": "*"}
            ]
        });
        f.ok(
            "PutKeyPolicy",
            json!({"KeyId": id, "Policy": policy.to_string()}),
        );
        let (t, m) = f.err_as(
            &bob,
            "Encrypt",
            json!({"KeyId": id, "Plaintext": b64(b"x")}),
        );
        assert_eq!(t, "AccessDeniedException");
        assert!(m.contains("explicit deny"), "{m}");
        f.ok_as(&bob, "DescribeKey", json!({"KeyId": id}));
        f.ok("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"x")}));
    }
}
