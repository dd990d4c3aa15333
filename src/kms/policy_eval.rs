//! Key policies: parse an IAM-style key policy, decide whether a request is
//! allowed, build the default and AWS managed key policies, and run the
//! policy lockout safety check. Sans-I/O: no files, no clock, no keys — the
//! operations table calls [`evaluate`] from its authorize step.
//!
//! ```text
//! policy_eval            RequestContext, Decision, evaluate, default policies, lockout check
//!   ├─ document          Policy::parse: JSON (duplicate names rejected) → checked statements;
//!   │                    principal / action / resource matching, wildcards
//!   └─ condition         condition operators, ForAnyValue/ForAllValues, IfExists,
//!                        and the condition keys a request supplies
//! ```
//!
//! # Evaluation, as the AWS KMS developer guide describes it
//!
//! A statement *applies* to a request when its `Principal` (or
//! `NotPrincipal`), `Action` (or `NotAction`), `Resource` (or `NotResource`)
//! and every `Condition` match. Then: an applying `Deny` is an explicit deny
//! and wins over everything; otherwise an applying `Allow` allows; otherwise
//! the request is implicitly denied. Grants are a separate mechanism
//! ([`super::grant_eval`]); the authorize step allows a request if the policy
//! allows it *or* a grant does, unless the policy denies it explicitly.
//!
//! # Where cryptvol differs from AWS: the account root principal
//!
//! In AWS, a statement whose principal is the account
//! (`arn:aws:iam::111122223333:root`, or the bare `111122223333`) does not by
//! itself let the account's users do anything: it delegates to the account's
//! IAM policies, which must also allow the request. cryptvol has no IAM
//! policies — its users are principals without policies — so here such a
//! statement applies to **every principal of that account** (the account
//! root user and all its users and roles), as if each had an IAM policy
//! allowing everything. That is what makes the default key policy give the
//! account's users access. A key administrator who wants less writes
//! statements naming the users, or `Deny` statements.
//!
//! Condition keys that a request does not supply (`aws:SourceIp`, …) are
//! absent, as in AWS. Operators cryptvol does not implement (`Date…`,
//! `IpAddress`, `BinaryEquals`) are rejected when the policy is parsed, so a
//! `Deny` can never be silently skipped because its operator is unknown.

mod condition;
mod document;
#[cfg(test)]
mod tests;

pub use document::{Effect, Policy, Statement};

use super::arn;
use super::error::KmsError;
use super::service::EncryptionContext;

/// AWS's limit on the size of a key policy document (32 KiB).
pub const MAX_POLICY_BYTES: usize = 32 * 1024;

/// The action PutKeyPolicy is authorized by, and that the lockout check
/// requires the caller to keep.
pub const PUT_KEY_POLICY_ACTION: &str = "kms:PutKeyPolicy";

/// A key policy that cannot be accepted. Every variant becomes AWS's
/// `MalformedPolicyDocumentException`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The document exceeds [`MAX_POLICY_BYTES`].
    #[error(
        "the key policy is {size} bytes; a key policy may be at most {MAX_POLICY_BYTES} bytes \
         (32 KiB): remove statements or combine them"
    )]
    TooLarge { size: usize },
    /// Not JSON, or JSON with a repeated member name.
    #[error("the key policy is not a valid JSON policy document: {0}")]
    Json(String),
    /// One element is missing, of the wrong type or has a bad value; `at`
    /// names it (`Statement[2].Action`).
    #[error("the key policy is malformed at {at}: {reason}")]
    Element { at: String, reason: String },
    /// The lockout safety check failed (AWS's message, then what to do).
    #[error(
        "The new key policy will not allow you to update the key policy in the future: it does \
         not allow {caller} to call kms:PutKeyPolicy on this key. Add a statement that allows \
         kms:PutKeyPolicy (or kms:*) to {caller} or to the account root \
         arn:aws:iam::{account}:root, or set BypassPolicyLockoutSafetyCheck if you mean to give \
         up managing this key"
    )]
    Lockout { caller: String, account: String },
}

impl From<PolicyError> for KmsError {
    fn from(e: PolicyError) -> KmsError {
        KmsError::MalformedPolicyDocument(e.to_string())
    }
}

/// The outcome of evaluating a key policy for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// An `Allow` statement applies and no `Deny` statement does.
    Allow,
    /// A `Deny` statement applies: nothing (not even a grant) can allow it.
    ExplicitDeny,
    /// No statement applies: denied unless a grant allows the request.
    ImplicitDeny,
}

impl Decision {
    pub fn is_allow(self) -> bool {
        self == Decision::Allow
    }
}

/// Everything about a request that a key policy can look at.
///
/// The optional fields are condition keys that only some operations have;
/// `None` means the key is absent from the request (so `Null` sees it as
/// null, `…IfExists` skips it, and a plain operator does not match).
#[derive(Debug, Clone, Copy)]
pub struct RequestContext<'a> {
    /// The authenticated caller (`aws:PrincipalArn`).
    pub principal_arn: &'a str,
    /// The caller's account (`kms:CallerAccount`, `aws:PrincipalAccount`);
    /// also decides which account-root statements apply to the caller.
    pub caller_account: &'a str,
    /// The IAM action, `kms:<Operation>` (`kms:Decrypt`; ReEncrypt is
    /// `kms:ReEncryptFrom` on the source key and `kms:ReEncryptTo` on the
    /// destination key). Compared case-insensitively.
    pub action: &'a str,
    /// The key's ARN: the resource `Resource` patterns are matched against.
    pub key_arn: &'a str,
    /// The key's account (`aws:ResourceAccount`).
    pub key_account: &'a str,
    /// `kms:EncryptionContext:<key>` and `kms:EncryptionContextKeys`. An
    /// empty context means both keys are absent, as in AWS.
    pub encryption_context: &'a EncryptionContext,
    /// `kms:ViaService`, e.g. `ec2.us-east-1.amazonaws.com` when the volume
    /// layer calls on the caller's behalf (see [`via_service_for`]).
    pub via_service: Option<&'a str>,
    /// `kms:GrantOperations` (CreateGrant): the new grant's operations.
    pub grant_operations: Option<&'a [String]>,
    /// `kms:GrantIsForAWSResource` (CreateGrant, ListGrants, RevokeGrant).
    pub grant_is_for_aws_resource: Option<bool>,
    /// `kms:GranteePrincipal` (CreateGrant).
    pub grantee_principal: Option<&'a str>,
    /// `kms:RetiringPrincipal` (CreateGrant).
    pub retiring_principal: Option<&'a str>,
    /// `kms:RequestAlias`: the alias the caller named the key by.
    pub request_alias: Option<&'a str>,
    /// `kms:KeySpec`, `kms:KeyUsage`, `kms:KeyOrigin` of the key.
    pub key_spec: Option<&'a str>,
    pub key_usage: Option<&'a str>,
    pub key_origin: Option<&'a str>,
    /// `aws:SecureTransport`: whether the request came over TLS.
    pub secure_transport: Option<bool>,
}

impl<'a> RequestContext<'a> {
    /// A context with the always-present fields set and every optional
    /// condition key absent; set the others with struct update syntax.
    pub fn new(
        principal_arn: &'a str,
        caller_account: &'a str,
        action: &'a str,
        key_arn: &'a str,
        key_account: &'a str,
        encryption_context: &'a EncryptionContext,
    ) -> RequestContext<'a> {
        RequestContext {
            principal_arn,
            caller_account,
            action,
            key_arn,
            key_account,
            encryption_context,
            via_service: None,
            grant_operations: None,
            grant_is_for_aws_resource: None,
            grantee_principal: None,
            retiring_principal: None,
            request_alias: None,
            key_spec: None,
            key_usage: None,
            key_origin: None,
            secure_transport: None,
        }
    }
}

/// Evaluates `policy` for one request: explicit `Deny` wins, an applying
/// `Allow` allows, anything else is an implicit deny. See the module doc for
/// how account-root principals are treated.
pub fn evaluate(policy: &Policy, ctx: &RequestContext<'_>) -> Decision {
    let mut decision = Decision::ImplicitDeny;
    for statement in policy.statements() {
        if statement.applies(ctx) {
            match statement.effect() {
                Effect::Deny => return Decision::ExplicitDeny,
                Effect::Allow => decision = Decision::Allow,
            }
        }
    }
    decision
}

/// The `AccessDeniedException` for a request the policy (and no grant)
/// allowed, worded as AWS words it, then what to do.
pub fn access_denied(ctx: &RequestContext<'_>, decision: Decision) -> KmsError {
    let (who, action, key) = (ctx.principal_arn, ctx.action, ctx.key_arn);
    let why = match decision {
        Decision::ExplicitDeny => "with an explicit deny in a resource-based policy".to_owned(),
        Decision::Allow | Decision::ImplicitDeny => {
            format!("because no resource-based policy allows the {action} action")
        }
    };
    KmsError::AccessDenied(format!(
        "User: {who} is not authorized to perform: {action} on resource: {key} {why}; \
         ask a key administrator to allow {action} to {who} in the key policy \
         (`cryptvol kms put-key-policy`) or to create a grant for it (`cryptvol kms create-grant`)"
    ))
}

/// The key policy AWS gives a key created through the API without one: the
/// account may do everything (`kms:*` to `arn:aws:iam::<account>:root`).
pub fn default_policy(account_id: &str) -> String {
    let root = json_str(&arn::root_principal(account_id));
    format!(
        r#"{{
  "Version": "2012-10-17",
  "Id": "key-default-1",
  "Statement": [
    {{
      "Sid": "Enable IAM User Permissions",
      "Effect": "Allow",
      "Principal": {{
        "AWS": {root}
      }},
      "Action": "kms:*",
      "Resource": "*"
    }}
  ]
}}"#
    )
}

/// The `kms:ViaService` value of a service acting in `region`. EBS calls KMS
/// as EC2 (`ec2.<region>.amazonaws.com`), so `"ebs"` maps to `ec2`.
pub fn via_service_for(service: &str, region: &str) -> String {
    let service = if service == "ebs" { "ec2" } else { service };
    format!("{service}.{region}.amazonaws.com")
}

/// The key policy of the AWS managed key `alias/aws/<service>`, shaped like
/// the one AWS gives `aws/ebs` (`auto-ebs-2`): principals of the account may
/// use the key only through the service (`kms:ViaService` and
/// `kms:CallerAccount`), and the account may read its metadata and revoke
/// its grants directly — but not use it directly, change, disable or delete
/// it.
pub fn aws_managed_policy(account_id: &str, region: &str, service: &str) -> String {
    let name = service.to_ascii_uppercase();
    let id = json_str(&format!("auto-{service}-2"));
    let sid = json_str(&format!(
        "Allow access through {name} for all principals in the account that are authorized to \
         use {name}"
    ));
    let account = json_str(account_id);
    let via = json_str(&via_service_for(service, region));
    let root = json_str(&arn::root_principal(account_id));
    format!(
        r#"{{
  "Version": "2012-10-17",
  "Id": {id},
  "Statement": [
    {{
      "Sid": {sid},
      "Effect": "Allow",
      "Principal": {{
        "AWS": "*"
      }},
      "Action": [
        "kms:Encrypt",
        "kms:Decrypt",
        "kms:ReEncrypt*",
        "kms:GenerateDataKey*",
        "kms:CreateGrant",
        "kms:DescribeKey"
      ],
      "Resource": "*",
      "Condition": {{
        "StringEquals": {{
          "kms:CallerAccount": {account},
          "kms:ViaService": {via}
        }}
      }}
    }},
    {{
      "Sid": "Allow direct access to key metadata to the account",
      "Effect": "Allow",
      "Principal": {{
        "AWS": {root}
      }},
      "Action": [
        "kms:Describe*",
        "kms:Get*",
        "kms:List*",
        "kms:RevokeGrant"
      ],
      "Resource": "*"
    }}
  ]
}}"#
    )
}

/// The policy lockout safety check of CreateKey and PutKeyPolicy (skipped
/// when the request sets `BypassPolicyLockoutSafetyCheck`): the principal
/// making the request must still be allowed `kms:PutKeyPolicy` by the new
/// policy, called directly (no `kms:ViaService`, no encryption context).
///
/// Without the key's ARN only `Resource: "*"` statements can match; use
/// [`lockout_check_for_key`] when the policy may name the key's ARN.
pub fn lockout_check(policy: &Policy, caller: &str, account_id: &str) -> Result<(), KmsError> {
    lockout_check_for_key(policy, caller, account_id, "")
}

/// [`lockout_check`] for the key `key_arn` (of account `account_id`).
pub fn lockout_check_for_key(
    policy: &Policy,
    caller: &str,
    account_id: &str,
    key_arn: &str,
) -> Result<(), KmsError> {
    let caller_account = arn::principal_account(caller).unwrap_or(account_id);
    let no_context = EncryptionContext::new();
    let ctx = RequestContext::new(
        caller,
        caller_account,
        PUT_KEY_POLICY_ACTION,
        key_arn,
        account_id,
        &no_context,
    );
    match evaluate(policy, &ctx) {
        Decision::Allow => Ok(()),
        Decision::ExplicitDeny | Decision::ImplicitDeny => Err(PolicyError::Lockout {
            caller: caller.to_owned(),
            account: account_id.to_owned(),
        }
        .into()),
    }
}

/// `s` as a JSON string literal (quotes and escapes included), so that no
/// argument can change the structure of a generated policy.
fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}
