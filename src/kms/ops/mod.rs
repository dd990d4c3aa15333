//! The KMS operations: one table, one handler per AWS KMS operation, each
//! shaped **authorize → act → audit**.
//!
//! [`LocalKms::call`] takes an operation name and its AWS JSON request
//! (PascalCase fields, blobs as base64 strings, timestamps as epoch
//! seconds) and returns the AWS JSON response. The HTTP API and the
//! `cryptvol kms` CLI both go through it; the [`super::KeyService`] trait
//! that the volume layer uses goes through the same typed handlers (without
//! a JSON detour, so data keys stay in zeroizing buffers).
//!
//! ```text
//! call(caller, "Encrypt", {...})
//!   └─ OPERATIONS["Encrypt"]           name, key-state rule, customer-managed-only flag
//!        └─ run: maintenance (deletions, expiries, rotations due)
//!             └─ handler: parse → resolve key → authorize (policy, grants)
//!                          → state/usage checks → act (key store update) → response
//!             └─ audit: one record per call, success or error code
//! ```
//!
//! Files, by operation group (each with its tests beside it):
//! `keys` (+`tags`), `aliases`, `crypto` (symmetric), `asymmetric` (RSA,
//! ECC, HMAC), `rotation`, `import`, `policy`, `grants`, `multiregion`;
//! `authorize` is the single authorization step, `states` the key-state
//! table, `maintenance` what happens by itself with time, `json` the wire
//! helpers.

pub(crate) mod aliases;
pub(crate) mod asymmetric;
pub(crate) mod authorize;
pub(crate) mod crypto;
pub(crate) mod grants;
pub(crate) mod import;
pub(crate) mod json;
pub(crate) mod keys;
pub(crate) mod maintenance;
pub(crate) mod multiregion;
pub(crate) mod policy;
pub(crate) mod rotation;
pub(crate) mod states;
pub(crate) mod tags;

#[cfg(test)]
pub(crate) mod testutil;

use serde_json::Value;

use super::audit::AuditEntry;
use super::error::KmsError;
use super::local::LocalKms;
use super::model::KeyRecord;
use super::service::{Caller, EncryptionContext};
pub use states::StateRule;

/// A handler: the JSON request in, the JSON response out.
type Handler = fn(&LocalKms, &mut OpCtx<'_>, Value) -> Result<Value, KmsError>;

/// One KMS operation.
pub struct Operation {
    /// The AWS operation name (`X-Amz-Target: TrentService.<name>`).
    pub name: &'static str,
    /// Which key states allow it (AWS "Key states of AWS KMS keys").
    pub states: StateRule,
    /// AWS managed keys (`alias/aws/…`) refuse it: they can be viewed and
    /// used, never changed, disabled, deleted or rotated by hand.
    pub customer_managed_only: bool,
    handler: Handler,
}

impl std::fmt::Debug for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operation")
            .field("name", &self.name)
            .field("states", &self.states)
            .field("customer_managed_only", &self.customer_managed_only)
            .finish()
    }
}

/// `op!(Name, StateRule, customer_managed_only, typed_handler)`.
macro_rules! op {
    ($name:literal, $states:ident, $customer_only:expr, $f:path) => {
        Operation {
            name: $name,
            states: StateRule::$states,
            customer_managed_only: $customer_only,
            handler: |kms, ctx, req| json::adapt(kms, ctx, req, $f),
        }
    };
}

/// Every operation this KMS serves, in AWS API reference order.
pub static OPERATIONS: &[Operation] = &[
    op!(
        "CancelKeyDeletion",
        PendingDeletion,
        true,
        keys::cancel_key_deletion
    ),
    op!(
        "CreateAlias",
        NotPendingDeletion,
        true,
        aliases::create_alias
    ),
    op!("CreateGrant", Usable, false, grants::create_grant),
    op!("CreateKey", NoKey, false, keys::create_key),
    op!("Decrypt", Usable, false, crypto::decrypt),
    op!("DeleteAlias", Any, true, aliases::delete_alias),
    op!(
        "DeleteImportedKeyMaterial",
        NotPendingDeletion,
        true,
        import::delete_imported_key_material
    ),
    op!("DescribeKey", Any, false, keys::describe_key),
    op!("DisableKey", EnabledOrDisabled, true, keys::disable_key),
    op!(
        "DisableKeyRotation",
        Usable,
        true,
        rotation::disable_key_rotation
    ),
    op!("EnableKey", EnabledOrDisabled, true, keys::enable_key),
    op!(
        "EnableKeyRotation",
        Usable,
        true,
        rotation::enable_key_rotation
    ),
    op!("Encrypt", Usable, false, crypto::encrypt),
    op!("GenerateDataKey", Usable, false, crypto::generate_data_key),
    op!(
        "GenerateDataKeyPair",
        Usable,
        false,
        asymmetric::generate_data_key_pair
    ),
    op!(
        "GenerateDataKeyPairWithoutPlaintext",
        Usable,
        false,
        asymmetric::generate_data_key_pair_without_plaintext
    ),
    op!(
        "GenerateDataKeyWithoutPlaintext",
        Usable,
        false,
        crypto::generate_data_key_without_plaintext
    ),
    op!("GenerateMac", Usable, false, asymmetric::generate_mac),
    op!("GenerateRandom", NoKey, false, crypto::generate_random),
    op!("GetKeyPolicy", Any, false, policy::get_key_policy),
    op!(
        "GetKeyRotationStatus",
        Any,
        false,
        rotation::get_key_rotation_status
    ),
    op!(
        "GetParametersForImport",
        NotPendingDeletion,
        true,
        import::get_parameters_for_import
    ),
    op!("GetPublicKey", Usable, false, asymmetric::get_public_key),
    op!(
        "ImportKeyMaterial",
        NotPendingDeletion,
        true,
        import::import_key_material
    ),
    op!("ListAliases", Any, false, aliases::list_aliases),
    op!("ListGrants", Any, false, grants::list_grants),
    op!("ListKeyPolicies", Any, false, policy::list_key_policies),
    op!("ListKeyRotations", Any, false, rotation::list_key_rotations),
    op!("ListKeys", NoKey, false, keys::list_keys),
    op!("ListResourceTags", Any, false, tags::list_resource_tags),
    op!(
        "ListRetirableGrants",
        NoKey,
        false,
        grants::list_retirable_grants
    ),
    op!("PutKeyPolicy", Any, true, policy::put_key_policy),
    op!("ReEncrypt", Usable, false, crypto::re_encrypt),
    op!(
        "ReplicateKey",
        NotPendingDeletion,
        true,
        multiregion::replicate_key
    ),
    op!("RetireGrant", Any, false, grants::retire_grant),
    op!("RevokeGrant", Any, false, grants::revoke_grant),
    op!(
        "RotateKeyOnDemand",
        Usable,
        true,
        rotation::rotate_key_on_demand
    ),
    op!(
        "ScheduleKeyDeletion",
        NotPendingDeletion,
        true,
        keys::schedule_key_deletion
    ),
    op!("Sign", Usable, false, asymmetric::sign),
    op!("TagResource", NotPendingDeletion, true, tags::tag_resource),
    op!(
        "UntagResource",
        NotPendingDeletion,
        true,
        tags::untag_resource
    ),
    op!(
        "UpdateAlias",
        NotPendingDeletion,
        true,
        aliases::update_alias
    ),
    op!(
        "UpdateKeyDescription",
        NotPendingDeletion,
        true,
        keys::update_key_description
    ),
    op!("Verify", Usable, false, asymmetric::verify),
    op!("VerifyMac", Usable, false, asymmetric::verify_mac),
];

/// The operation called `name` (exact, case-sensitive, as AWS is).
pub fn operation(name: &str) -> Option<&'static Operation> {
    OPERATIONS.iter().find(|o| o.name == name)
}

/// Everything one call carries from start to audit.
#[derive(Debug)]
pub struct OpCtx<'a> {
    pub caller: &'a Caller,
    pub op: &'static Operation,
    /// Seconds since the epoch, read once per call.
    pub now: u64,
    /// `kms:ViaService`: set when an AWS-style service (the volume layer,
    /// acting as EBS) calls on the caller's behalf.
    pub via_service: Option<String>,
    /// Validated `GrantTokens` of the request.
    pub grant_tokens: Vec<String>,
    /// `DryRun`: stop with DryRunOperationException once checks pass.
    pub dry_run: bool,
    /// For the audit record: the key acted on, and the encryption context.
    pub key_arn: Option<String>,
    pub encryption_context: Option<EncryptionContext>,
}

impl OpCtx<'_> {
    /// Checks the key state and manager rules of this operation for `key`.
    pub fn check_state(&self, kms: &LocalKms, key: &KeyRecord) -> Result<(), KmsError> {
        states::check(self.op, key, kms.region())
    }

    /// Remembers `key` as the resource of this call (for the audit record).
    pub fn set_key(&mut self, kms: &LocalKms, key: &KeyRecord) {
        if self.key_arn.is_none() {
            self.key_arn = Some(kms.arn_of(key));
        }
    }

    /// For `DryRun` requests: every check passed, so stop here.
    pub fn dry_run_stop(&self) -> Result<(), KmsError> {
        if self.dry_run {
            return Err(KmsError::DryRunOperation(format!(
                "The request would have succeeded, but the DryRun option is set: {} was not \
                 performed",
                self.op.name
            )));
        }
        Ok(())
    }
}

impl LocalKms {
    /// Runs the AWS KMS operation `operation` for `caller` on an AWS JSON
    /// request and returns the AWS JSON response. Every call, failed or not,
    /// is audited.
    pub fn call(
        &self,
        caller: &Caller,
        operation: &str,
        request: Value,
    ) -> Result<Value, KmsError> {
        self.call_via(caller, operation, request, None)
    }

    /// [`LocalKms::call`] made by a service on the caller's behalf
    /// (`kms:ViaService`), as the volume layer calls when acting as EBS.
    pub fn call_via(
        &self,
        caller: &Caller,
        operation: &str,
        request: Value,
        via_service: Option<String>,
    ) -> Result<Value, KmsError> {
        let Some(op) = self::operation(operation) else {
            return Err(KmsError::UnknownOperation(format!(
                "'{operation}' is not an AWS KMS operation this KMS serves; the operations are: {}",
                OPERATIONS
                    .iter()
                    .map(|o| o.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let request = match request {
            Value::Null => Value::Object(Default::default()),
            other => other,
        };
        // Secrets are dropped from the audit copy now, not after the call.
        let entry = AuditEntry::api_call(caller, op.name, &request);
        self.run_audited(caller, op, via_service, entry, |ctx| {
            json::prepare(self, ctx, &request)?;
            (op.handler)(self, ctx, request)
        })
    }

    /// The frame every operation runs in: time, maintenance, the handler,
    /// the audit record. `request` is what the audit record shows (secrets
    /// are dropped by the audit log).
    pub(crate) fn run<T>(
        &self,
        caller: &Caller,
        op: &'static Operation,
        via_service: Option<String>,
        request: &Value,
        f: impl FnOnce(&mut OpCtx<'_>) -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        let entry = AuditEntry::api_call(caller, op.name, request);
        self.run_audited(caller, op, via_service, entry, f)
    }

    fn run_audited<T>(
        &self,
        caller: &Caller,
        op: &'static Operation,
        via_service: Option<String>,
        mut entry: AuditEntry,
        f: impl FnOnce(&mut OpCtx<'_>) -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        let mut ctx = OpCtx {
            caller,
            op,
            now: self.now(),
            via_service,
            grant_tokens: Vec::new(),
            dry_run: false,
            key_arn: None,
            encryption_context: None,
        };
        let result = self.maintain().and_then(|()| f(&mut ctx));
        if let Some(arn) = ctx.key_arn.take() {
            entry = entry.with_key_arn(arn);
        }
        if let Some(ec) = ctx.encryption_context.take() {
            entry = entry.with_encryption_context(ec);
        }
        let entry = entry.with_result(&result);
        self.audit(entry)?;
        result
    }
}

/// Operation lookup that must succeed (names used by the typed paths).
pub(crate) fn known(name: &'static str) -> &'static Operation {
    operation(name).expect("BUG: the typed path names an operation missing from OPERATIONS")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn table_is_sorted_unique_and_complete() {
        let names: Vec<&str> = OPERATIONS.iter().map(|o| o.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted);
        for want in [
            "CreateKey",
            "Encrypt",
            "ReEncrypt",
            "ReplicateKey",
            "ImportKeyMaterial",
            "RotateKeyOnDemand",
            "ListRetirableGrants",
            "VerifyMac",
        ] {
            assert!(operation(want).is_some(), "{want}");
        }
    }

    #[test]
    fn unknown_operation_and_bad_bodies_use_aws_errors() {
        let f = Fixture::new();
        let e = f.kms.call(&f.root, "MakeCoffee", json!({})).unwrap_err();
        assert_eq!(e.aws_type(), "UnknownOperationException");
        let e = f.kms.call(&f.root, "DescribeKey", json!({})).unwrap_err();
        assert_eq!(e.aws_type(), "ValidationException");
        assert!(e.to_string().contains("KeyId"), "{e}");
        let e = f
            .kms
            .call(&f.root, "DescribeKey", json!({"KeyId": 5}))
            .unwrap_err();
        assert_eq!(e.aws_type(), "SerializationException");
        let e = f.kms.call(&f.root, "DescribeKey", json!([1])).unwrap_err();
        assert_eq!(e.aws_type(), "SerializationException");
    }

    #[test]
    fn every_call_is_audited_with_outcome() {
        let f = Fixture::new();
        let id = f.symmetric_key();
        f.ok("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"x")}));
        f.err("DisableKey", json!({"KeyId": "alias/nope"}));
        let records = f.audit_records();
        let names: Vec<(&str, &str)> = records
            .iter()
            .map(|r| (r.event_name.as_str(), r.outcome.as_str()))
            .collect();
        let ok = crate::kms::audit::OUTCOME_SUCCESS;
        assert!(names.contains(&("CreateKey", ok)), "{names:?}");
        assert!(names.contains(&("Encrypt", ok)), "{names:?}");
        assert!(
            names.contains(&("DisableKey", "NotFoundException")),
            "{names:?}"
        );
        let enc = records.iter().find(|r| r.event_name == "Encrypt").unwrap();
        assert!(enc.key_arn.as_deref().unwrap().ends_with(&id));
        let text = serde_json::to_string(&records).unwrap();
        assert!(
            !text.contains(&b64(b"x")),
            "plaintext must not reach the audit log"
        );
    }

    #[test]
    fn dry_run_stops_after_the_checks() {
        let f = Fixture::new();
        let id = f.symmetric_key();
        let (t, _) = f.err(
            "Encrypt",
            json!({"KeyId": id, "Plaintext": b64(b"x"), "DryRun": true}),
        );
        assert_eq!(t, "DryRunOperationException");
        f.ok("DisableKey", json!({"KeyId": id}));
        let (t, _) = f.err(
            "Encrypt",
            json!({"KeyId": id, "Plaintext": b64(b"x"), "DryRun": true}),
        );
        assert_eq!(t, "DisabledException");
    }
}
