//! Grants: the model (AWS field names), which operations a grant may carry
//! on which kind of key, grant ids, and the checks the
//! authorize step runs — does this grant allow this request, may this
//! grantee create that grant, may this principal retire it. Sans-I/O: the
//! operations table stores grants and calls these functions.
//!
//! Rules, from the AWS KMS developer guide ("Grants in AWS KMS", "Grant
//! constraints", "Granting CreateGrant permission", "Retiring and revoking
//! grants"):
//! - a grant lets its grantee principal call its operations on its one key;
//! - `EncryptionContextEquals` allows a request only when its encryption
//!   context is exactly the constraint's; `EncryptionContextSubset` when it
//!   contains the constraint's pairs (and maybe more). In a constraint the
//!   *keys* compare case-insensitively, the values case-sensitively. A grant
//!   has at most one of the two. Constraints apply only to operations that
//!   take an encryption context, and only symmetric encryption keys take one;
//! - a grantee whose grant includes `CreateGrant` may create only grants
//!   whose operations are a subset of its own and whose constraints are at
//!   least as strict;
//! - a grant is retired by its retiring principal, by its grantee if it
//!   includes `RetireGrant`, or by the account; it is revoked by whoever the
//!   key policy allows `kms:RevokeGrant` ([`can_revoke`]).
//!
//! As in [`super::policy_eval`], a grantee or retiring principal that is an
//! account root (`arn:aws:iam::<account>:root`) stands for every principal of
//! that account: cryptvol has no IAM policies to delegate to.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::arn;
use super::error::KmsError;
pub use super::model::{GrantConstraints, GrantOperation};
use super::model::{GrantRecord, KeySpec, KeyUsage};
use super::policy_eval::{evaluate, Policy, RequestContext};
use super::service::EncryptionContext;

/// AWS: a grant name is 1 to 256 of `[a-zA-Z0-9:/_-]`.
pub const MAX_GRANT_NAME_LEN: usize = 256;
/// AWS: principal ids (grantee, retiring) are at most 256 characters.
pub const MAX_PRINCIPAL_LEN: usize = 256;
/// AWS: "Each constraint value can include up to 8 encryption context pairs."
pub const MAX_CONSTRAINT_PAIRS: usize = 8;
/// AWS: the encryption context values of a constraint are at most 384
/// characters (applied here to each key and each value).
pub const MAX_CONSTRAINT_CHARS: usize = 384;
/// AWS: at most 10 grant tokens per request.
pub const MAX_GRANT_TOKENS: usize = 10;

use GrantOperation as Op;

/// Valid on every key.
const COMMON: &[Op] = &[Op::CreateGrant, Op::RetireGrant, Op::DescribeKey];
/// Symmetric encryption keys; also exactly the operations that take an
/// encryption context.
const SYMMETRIC: &[Op] = &[
    Op::Decrypt,
    Op::Encrypt,
    Op::GenerateDataKey,
    Op::GenerateDataKeyWithoutPlaintext,
    Op::GenerateDataKeyPair,
    Op::GenerateDataKeyPairWithoutPlaintext,
    Op::ReEncryptFrom,
    Op::ReEncryptTo,
];
const HMAC: &[Op] = &[Op::GenerateMac, Op::VerifyMac];
const ASYMMETRIC_ENCRYPT: &[Op] = &[
    Op::Encrypt,
    Op::Decrypt,
    Op::ReEncryptFrom,
    Op::ReEncryptTo,
    Op::GetPublicKey,
];
const ASYMMETRIC_SIGN: &[Op] = &[Op::Sign, Op::Verify, Op::GetPublicKey];
const KEY_AGREEMENT: &[Op] = &[Op::DeriveSharedSecret, Op::GetPublicKey];

/// Operations whose requests carry an encryption context, so that grant
/// constraints apply to them.
pub fn takes_encryption_context(op: GrantOperation) -> bool {
    SYMMETRIC.contains(&op)
}

/// The grant operations AWS accepts on a key of this spec and usage.
pub fn valid_operations(spec: KeySpec, usage: KeyUsage) -> Vec<GrantOperation> {
    let specific: &[Op] = match (spec, usage) {
        (KeySpec::SymmetricDefault, KeyUsage::EncryptDecrypt) => SYMMETRIC,
        (s, KeyUsage::GenerateVerifyMac) if is_hmac(s) => HMAC,
        (s, KeyUsage::EncryptDecrypt) if is_asymmetric(s) => ASYMMETRIC_ENCRYPT,
        (s, KeyUsage::SignVerify) if is_asymmetric(s) => ASYMMETRIC_SIGN,
        (s, KeyUsage::KeyAgreement) if is_asymmetric(s) => KEY_AGREEMENT,
        _ => &[],
    };
    specific.iter().chain(COMMON).copied().collect()
}

fn is_hmac(spec: KeySpec) -> bool {
    matches!(
        spec,
        KeySpec::Hmac224 | KeySpec::Hmac256 | KeySpec::Hmac384 | KeySpec::Hmac512
    )
}

fn is_asymmetric(spec: KeySpec) -> bool {
    spec != KeySpec::SymmetricDefault && !is_hmac(spec)
}

/// Drops empty constraint maps (AWS treats an empty map as no constraint);
/// `None` when no constraint is left.
pub fn normalize_constraints(c: GrantConstraints) -> Option<GrantConstraints> {
    let keep = |m: Option<EncryptionContext>| m.filter(|m| !m.is_empty());
    let c = GrantConstraints {
        encryption_context_subset: keep(c.encryption_context_subset),
        encryption_context_equals: keep(c.encryption_context_equals),
    };
    (c.encryption_context_subset.is_some() || c.encryption_context_equals.is_some()).then_some(c)
}

/// (equals, subset), each `None` when absent or empty.
fn constraint_parts(
    c: Option<&GrantConstraints>,
) -> (Option<&EncryptionContext>, Option<&EncryptionContext>) {
    fn nonempty(m: &Option<EncryptionContext>) -> Option<&EncryptionContext> {
        m.as_ref().filter(|m| !m.is_empty())
    }
    c.map_or((None, None), |c| {
        (
            nonempty(&c.encryption_context_equals),
            nonempty(&c.encryption_context_subset),
        )
    })
}

/// Whether a request with `context` meets the constraints (both of them,
/// should a stored grant have both).
pub fn constraints_allow(c: Option<&GrantConstraints>, context: &EncryptionContext) -> bool {
    let (equals, subset) = constraint_parts(c);
    equals.is_none_or(|e| same_pairs(e, context)) && subset.is_none_or(|s| pairs_within(s, context))
}

/// What the checks below read of a grant: implemented by the stored
/// [`GrantRecord`] and by the ListGrants view [`Grant`].
pub trait GrantTerms {
    fn grantee_principal(&self) -> &str;
    fn retiring_principal(&self) -> Option<&str>;
    /// `arn:aws:iam::<account>:root` of the account that issued the grant.
    fn issuing_account(&self) -> &str;
    fn operations(&self) -> &[GrantOperation];
    fn constraints(&self) -> Option<&GrantConstraints>;
}

/// A grant, as ListGrants returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Grant {
    /// The key's ARN.
    pub key_id: String,
    pub grant_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Seconds since the Unix epoch.
    pub creation_date: u64,
    pub grantee_principal: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retiring_principal: Option<String>,
    /// The root ARN of the account the grant was created in.
    pub issuing_account: String,
    pub operations: Vec<GrantOperation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<GrantConstraints>,
}

impl Grant {
    /// The ListGrants entry of a stored grant on the key `key_arn`.
    pub fn from_record(key_arn: &str, r: &GrantRecord) -> Grant {
        Grant {
            key_id: key_arn.to_owned(),
            grant_id: r.grant_id.clone(),
            name: r.name.clone(),
            creation_date: r.creation_date,
            grantee_principal: r.grantee_principal.clone(),
            retiring_principal: r.retiring_principal.clone(),
            issuing_account: r.issuing_account.clone(),
            operations: r.operations.clone(),
            constraints: r.constraints.clone(),
        }
    }
}

macro_rules! grant_terms {
    ($t:ty) => {
        impl GrantTerms for $t {
            fn grantee_principal(&self) -> &str {
                &self.grantee_principal
            }
            fn retiring_principal(&self) -> Option<&str> {
                self.retiring_principal.as_deref()
            }
            fn issuing_account(&self) -> &str {
                &self.issuing_account
            }
            fn operations(&self) -> &[GrantOperation] {
                &self.operations
            }
            fn constraints(&self) -> Option<&GrantConstraints> {
                self.constraints.as_ref()
            }
        }
    };
}

grant_terms!(Grant);
grant_terms!(GrantRecord);

fn invalid(msg: String) -> KmsError {
    KmsError::Validation(msg)
}

fn names(ops: &[GrantOperation]) -> String {
    ops.iter()
        .map(|o| o.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses CreateGrant's `Operations` (AWS spellings; duplicates dropped).
pub fn parse_operations<S: AsRef<str>>(names_in: &[S]) -> Result<Vec<GrantOperation>, KmsError> {
    let mut out = Vec::new();
    for name in names_in {
        let name = name.as_ref();
        let op = GrantOperation::parse(name).ok_or_else(|| {
            invalid(format!(
                "'{name}' is not a grant operation; use one or more of {}",
                names(GrantOperation::ALL)
            ))
        })?;
        if !out.contains(&op) {
            out.push(op);
        }
    }
    Ok(out)
}

/// The checks of CreateGrant on a key of `spec` and `usage`: at least one
/// operation, each valid for the key; constraints only on symmetric
/// encryption keys, not both kinds at once, at most 8 pairs, keys unique
/// ignoring case.
pub fn validate_grant(
    spec: KeySpec,
    usage: KeyUsage,
    operations: &[GrantOperation],
    constraints: Option<&GrantConstraints>,
) -> Result<(), KmsError> {
    let valid = valid_operations(spec, usage);
    if operations.is_empty() {
        return Err(invalid(format!(
            "a grant needs at least one operation; on this key choose from {}",
            names(&valid)
        )));
    }
    if let Some(op) = operations.iter().find(|op| !valid.contains(op)) {
        return Err(invalid(format!(
            "grant operation {op} is not valid for a {spec} key with key usage {usage}; \
             valid operations are {}",
            names(&valid)
        )));
    }
    let (equals, subset) = constraint_parts(constraints);
    if equals.is_some() && subset.is_some() {
        return Err(invalid(
            "a grant can have an EncryptionContextEquals or an EncryptionContextSubset \
             constraint, not both"
                .into(),
        ));
    }
    let Some((kind, pairs)) = equals
        .map(|m| ("EncryptionContextEquals", m))
        .or(subset.map(|m| ("EncryptionContextSubset", m)))
    else {
        return Ok(());
    };
    if spec != KeySpec::SymmetricDefault {
        return Err(invalid(format!(
            "encryption context constraints are allowed only on symmetric encryption keys; \
             operations with a {spec} key take no encryption context: remove {kind}"
        )));
    }
    if pairs.len() > MAX_CONSTRAINT_PAIRS {
        return Err(invalid(format!(
            "{kind} has {} pairs; a grant constraint may have at most {MAX_CONSTRAINT_PAIRS}",
            pairs.len()
        )));
    }
    for (k, v) in pairs {
        if k.is_empty()
            || k.chars().count() > MAX_CONSTRAINT_CHARS
            || v.chars().count() > MAX_CONSTRAINT_CHARS
        {
            return Err(invalid(format!(
                "{kind} pair '{k}' is not valid: keys must be 1 to {MAX_CONSTRAINT_CHARS} \
                 characters and values at most {MAX_CONSTRAINT_CHARS}"
            )));
        }
    }
    if fold_keys(pairs).is_none() {
        return Err(invalid(format!(
            "{kind} has keys that differ only by case; grant constraint keys are not case \
             sensitive, so give each key once"
        )));
    }
    Ok(())
}

/// `Name`: 1 to 256 of `[a-zA-Z0-9:/_-]`.
pub fn validate_grant_name(name: &str) -> Result<(), KmsError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_GRANT_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":/_-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "grant name '{name}' is not valid: use 1 to {MAX_GRANT_NAME_LEN} of the characters \
             A-Z a-z 0-9 : / _ -"
        )))
    }
}

/// `GranteePrincipal` / `RetiringPrincipal` (`what` names which): an ARN
/// such as `arn:aws:iam::111122223333:user/name`, at most 256 characters.
pub fn validate_principal(what: &str, principal: &str) -> Result<(), KmsError> {
    let ok = principal.len() <= MAX_PRINCIPAL_LEN
        && principal.starts_with("arn:")
        && principal.splitn(6, ':').count() == 6
        && principal
            .chars()
            .all(|c| c.is_alphanumeric() || "_+=,.@:/-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} '{principal}' is not a principal ARN; use an ARN such as \
             arn:aws:iam::111122223333:user/name or arn:aws:iam::111122223333:root"
        )))
    }
}

/// A new grant id: 64 lowercase hex digits, as AWS's.
pub fn new_grant_id() -> String {
    let mut b = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    hex::encode(b)
}

/// Checks a `GrantId` parameter (64 hex digits).
pub fn validate_grant_id(grant_id: &str) -> Result<(), KmsError> {
    if grant_id.len() == 64 && grant_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(KmsError::InvalidGrantId(format!(
            "'{grant_id}' is not a grant id (64 hex digits); list grant ids with \
             `cryptvol kms list-grants --key-id <key>`"
        )))
    }
}

/// Whether a grant's `named` principal (grantee or retiring) is the caller:
/// the same ARN, or the root of the caller's account.
fn names_principal(named: &str, principal_arn: &str) -> bool {
    named == principal_arn
        || arn::principal_account(principal_arn).is_some_and(|a| named == arn::root_principal(a))
}

/// Whether `grant` lets `principal_arn` call `operation` (`Decrypt` or
/// `kms:Decrypt`; case-insensitive) with `context`.
///
/// `ReEncrypt` needs both `ReEncryptFrom` and `ReEncryptTo` (re-encrypting
/// under the same key); across two keys, check `ReEncryptFrom` on the
/// source key's grants and `ReEncryptTo` on the destination's. Always false
/// for `CreateGrant`: use [`grant_allows_create_grant`], which also checks
/// the new grant.
pub fn grant_allows(
    grant: &impl GrantTerms,
    principal_arn: &str,
    operation: &str,
    context: &EncryptionContext,
) -> bool {
    let name = match operation.get(..4) {
        Some(p) if p.eq_ignore_ascii_case("kms:") => &operation[4..],
        _ => operation,
    };
    let needed: Vec<Op> = if name.eq_ignore_ascii_case("ReEncrypt") {
        vec![Op::ReEncryptFrom, Op::ReEncryptTo]
    } else {
        match Op::ALL
            .iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(name))
        {
            Some(&op) => vec![op],
            None => return false,
        }
    };
    if needed.contains(&Op::CreateGrant)
        || !names_principal(grant.grantee_principal(), principal_arn)
    {
        return false;
    }
    needed.iter().all(|op| grant.operations().contains(op))
        && (!needed.iter().any(|op| takes_encryption_context(*op))
            || constraints_allow(grant.constraints(), context))
}

/// Whether `parent` lets `principal_arn` create a grant with
/// `new_operations` and `new_constraints`: `parent` must include
/// `CreateGrant` for that grantee, every new operation must be one of the
/// parent's, and the new constraints must be at least as strict (the
/// parent's `Equals` exactly; the parent's `Subset` pairs within the new
/// `Subset` or `Equals`).
pub fn grant_allows_create_grant(
    parent: &impl GrantTerms,
    principal_arn: &str,
    new_operations: &[GrantOperation],
    new_constraints: Option<&GrantConstraints>,
) -> bool {
    if !names_principal(parent.grantee_principal(), principal_arn)
        || !parent.operations().contains(&Op::CreateGrant)
        || !new_operations
            .iter()
            .all(|op| parent.operations().contains(op))
    {
        return false;
    }
    let (p_equals, p_subset) = constraint_parts(parent.constraints());
    let (c_equals, c_subset) = constraint_parts(new_constraints);
    let equals_ok = p_equals.is_none_or(|pe| c_equals.is_some_and(|ce| same_pairs(pe, ce)));
    let subset_ok = p_subset.is_none_or(|ps| {
        c_equals.is_some_and(|ce| pairs_within(ps, ce))
            || c_subset.is_some_and(|cs| pairs_within(ps, cs))
    });
    equals_ok && subset_ok
}

/// Whether `principal_arn` may retire `grant` on a key of `key_account`:
/// the retiring principal, the grantee if the grant includes `RetireGrant`,
/// or the account (its root principal) in which the grant was issued.
pub fn can_retire(grant: &impl GrantTerms, principal_arn: &str, key_account: &str) -> bool {
    grant
        .retiring_principal()
        .is_some_and(|r| names_principal(r, principal_arn))
        || (grant.operations().contains(&Op::RetireGrant)
            && names_principal(grant.grantee_principal(), principal_arn))
        || principal_arn == grant.issuing_account()
        || principal_arn == arn::root_principal(key_account)
}

/// Whether the key policy lets the caller revoke grants: RevokeGrant is
/// authorized by the key policy alone (action `kms:RevokeGrant`, whatever
/// `ctx.action` says); no grant can give it.
pub fn can_revoke(policy: &Policy, ctx: &RequestContext<'_>) -> bool {
    let ctx = RequestContext {
        action: "kms:RevokeGrant",
        ..*ctx
    };
    evaluate(policy, &ctx).is_allow()
}

/// Keys lowercased (constraint keys are case-insensitive); `None` when two
/// keys differ only by case, which makes the map ambiguous.
fn fold_keys(m: &EncryptionContext) -> Option<BTreeMap<String, &str>> {
    let mut out = BTreeMap::new();
    for (k, v) in m {
        if out.insert(k.to_lowercase(), v.as_str()).is_some() {
            return None;
        }
    }
    Some(out)
}

/// `EncryptionContextEquals`: the same pairs, keys ignoring case. An
/// ambiguous map (case-variant keys) never matches.
fn same_pairs(constraint: &EncryptionContext, context: &EncryptionContext) -> bool {
    match (fold_keys(constraint), fold_keys(context)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// `EncryptionContextSubset`: every constraint pair is in the context (key
/// ignoring case, value exactly).
fn pairs_within(constraint: &EncryptionContext, context: &EncryptionContext) -> bool {
    constraint.iter().all(|(k, v)| {
        let k = k.to_lowercase();
        context
            .iter()
            .any(|(ck, cv)| cv == v && ck.to_lowercase() == k)
    })
}
