//! Which key states allow which operations, and with which exception they
//! refuse — the table of AWS's "Key states of AWS KMS keys" page, one rule
//! per operation (the `states` column of [`super::OPERATIONS`]) — plus the
//! customer-managed-only rule for AWS managed keys.

use super::Operation;
use crate::kms::error::KmsError;
use crate::kms::model::{KeyManager, KeyRecord, KeyState};

/// A column pattern of AWS's key-state table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateRule {
    /// The operation names no key (CreateKey, ListKeys, GenerateRandom…).
    NoKey,
    /// Every state (DescribeKey, GetKeyPolicy, List*, RevokeGrant…).
    Any,
    /// Cryptographic use and grant/rotation changes: Enabled only.
    /// Disabled → `DisabledException`; anything else →
    /// `KMSInvalidStateException`.
    Usable,
    /// Management: any state but PendingDeletion (→
    /// `KMSInvalidStateException`).
    NotPendingDeletion,
    /// EnableKey/DisableKey: Enabled or Disabled; PendingDeletion and
    /// PendingImport → `KMSInvalidStateException`.
    EnabledOrDisabled,
    /// CancelKeyDeletion: only PendingDeletion.
    PendingDeletion,
}

/// Checks `op`'s rules against `key` (whose store serves `region`).
pub fn check(op: &Operation, key: &KeyRecord, region: &str) -> Result<(), KmsError> {
    if op.customer_managed_only && key.key_manager == KeyManager::Aws {
        return Err(KmsError::AccessDenied(format!(
            "key {} is an AWS managed key: it can be viewed and used, but {} is not allowed on \
             it (AWS managed keys cannot be changed, disabled, deleted or rotated by hand); use a \
             customer managed key created with `cryptvol kms create-key`",
            key.key_id, op.name
        )));
    }
    check_rule(op.states, op.name, key, region)
}

/// Checks one rule (also used for the second key of ReEncrypt and
/// UpdateAlias).
pub fn check_rule(
    rule: StateRule,
    op_name: &str,
    key: &KeyRecord,
    region: &str,
) -> Result<(), KmsError> {
    let id = key.key_id.as_str();
    let state = key.key_state;
    let refuse = || match state {
        KeyState::Disabled => KmsError::key_disabled(id),
        KeyState::PendingDeletion => KmsError::key_pending_deletion(id),
        KeyState::PendingImport => KmsError::key_pending_import(id),
        other => KmsError::key_in_state(id, other.as_str(), op_name),
    };
    let invalid = || match state {
        KeyState::PendingDeletion => KmsError::key_pending_deletion(id),
        KeyState::PendingImport => KmsError::key_pending_import(id),
        other => KmsError::key_in_state(id, other.as_str(), op_name),
    };
    if state == KeyState::Unavailable && rule != StateRule::Any {
        return Err(KmsError::KeyUnavailable(format!(
            "key {id} in region {region} is unavailable; retry later"
        )));
    }
    match rule {
        StateRule::NoKey | StateRule::Any => Ok(()),
        StateRule::Usable => match state {
            KeyState::Enabled => Ok(()),
            _ => Err(refuse()),
        },
        StateRule::NotPendingDeletion => match state {
            KeyState::PendingDeletion | KeyState::PendingReplicaDeletion => Err(invalid()),
            _ => Ok(()),
        },
        StateRule::EnabledOrDisabled => match state {
            KeyState::Enabled | KeyState::Disabled => Ok(()),
            _ => Err(invalid()),
        },
        StateRule::PendingDeletion => match state {
            KeyState::PendingDeletion => Ok(()),
            other => Err(KmsError::InvalidState(format!(
                "key {id} is {other}, not pending deletion, so there is no deletion to cancel"
            ))),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::kms::model::{KeySpec, KeyUsage, Origin};
    use crate::kms::ops::operation;

    fn key(state: KeyState, manager: KeyManager) -> KeyRecord {
        KeyRecord {
            key_state: state,
            ..KeyRecord::new(
                "k".into(),
                0,
                KeySpec::SymmetricDefault,
                KeyUsage::EncryptDecrypt,
                Origin::AwsKms,
                manager,
            )
        }
    }

    fn outcome(op: &str, state: KeyState) -> &'static str {
        match check(
            operation(op).unwrap(),
            &key(state, KeyManager::Customer),
            "r",
        ) {
            Ok(()) => "ok",
            Err(e) => e.aws_type(),
        }
    }

    /// Spot checks of AWS's key-state table, row by row.
    #[test]
    fn follows_the_aws_key_state_table() {
        use KeyState::*;
        let inv = "KMSInvalidStateException";
        let rows: &[(&str, [&str; 4])] = &[
            // op                 Enabled  Disabled              PendingDeletion PendingImport
            ("Encrypt", ["ok", "DisabledException", inv, inv]),
            ("Decrypt", ["ok", "DisabledException", inv, inv]),
            ("CreateGrant", ["ok", "DisabledException", inv, inv]),
            ("DescribeKey", ["ok", "ok", "ok", "ok"]),
            ("GetKeyPolicy", ["ok", "ok", "ok", "ok"]),
            ("CreateAlias", ["ok", "ok", inv, "ok"]),
            ("ScheduleKeyDeletion", ["ok", "ok", inv, "ok"]),
            ("CancelKeyDeletion", [inv, inv, "ok", inv]),
            ("EnableKey", ["ok", "ok", inv, inv]),
            ("DisableKey", ["ok", "ok", inv, inv]),
            ("TagResource", ["ok", "ok", inv, "ok"]),
            ("ImportKeyMaterial", ["ok", "ok", inv, "ok"]),
            ("RevokeGrant", ["ok", "ok", "ok", "ok"]),
        ];
        for (op, want) in rows {
            let got: Vec<&str> = [Enabled, Disabled, PendingDeletion, PendingImport]
                .into_iter()
                .map(|s| outcome(op, s))
                .collect();
            assert_eq!(got, want.to_vec(), "{op}");
        }
    }

    #[test]
    fn aws_managed_keys_refuse_management_but_not_use() {
        let aws = key(KeyState::Enabled, KeyManager::Aws);
        for op in [
            "DisableKey",
            "ScheduleKeyDeletion",
            "PutKeyPolicy",
            "RotateKeyOnDemand",
        ] {
            let e = check(operation(op).unwrap(), &aws, "r").unwrap_err();
            assert_eq!(e.aws_type(), "AccessDeniedException", "{op}");
            assert!(e.to_string().contains("AWS managed"), "{e}");
        }
        for op in [
            "Encrypt",
            "DescribeKey",
            "GetKeyPolicy",
            "GetKeyRotationStatus",
        ] {
            assert!(check(operation(op).unwrap(), &aws, "r").is_ok(), "{op}");
        }
    }

    #[test]
    fn unavailable_keys_are_key_unavailable() {
        assert_eq!(
            outcome("Encrypt", KeyState::Unavailable),
            "KeyUnavailableException"
        );
        assert_eq!(outcome("DescribeKey", KeyState::Unavailable), "ok");
    }
}
