//! What happens by itself with time, applied whenever the store is opened
//! or used (before every operation): keys whose deletion waiting period has
//! passed are destroyed (record, material, aliases, grants), imported
//! material past its `ValidTo` is deleted (the key becomes PendingImport),
//! and automatic rotations that are due run. Each is audited as an AWS
//! service event (`DeleteKey`, `DeleteExpiredKeyMaterial`, `RotateKey`), as
//! CloudTrail records them.
//!
//! The common case (nothing due) costs one unlocked read of the store.

use super::rotation;
use crate::kms::audit::AuditEntry;
use crate::kms::error::KmsError;
use crate::kms::keystore::StoreState;
use crate::kms::local::LocalKms;
use crate::kms::model::{ExpirationModel, KeyRecord, KeyState, RotationType};

/// One thing maintenance did.
#[derive(Debug)]
struct Event {
    name: &'static str,
    key_id: String,
    /// A multi-region primary whose replicas need the new material.
    sync: bool,
}

fn deletion_due(k: &KeyRecord, now: u64) -> bool {
    k.key_state == KeyState::PendingDeletion && k.deletion_date.is_some_and(|d| d <= now)
}

fn expiry_due(k: &KeyRecord, now: u64) -> bool {
    !k.material.is_empty()
        && k.import.as_ref().is_some_and(|i| {
            i.expiration_model == Some(ExpirationModel::KeyMaterialExpires)
                && i.valid_to.is_some_and(|t| t <= now)
        })
}

fn rotation_due(kms: &LocalKms, k: &KeyRecord, now: u64) -> bool {
    k.key_state == KeyState::Enabled
        && k.key_spec == crate::kms::model::KeySpec::SymmetricDefault
        && k.origin == crate::kms::model::Origin::AwsKms
        && !k.is_replica(kms.region())
        && rotation::effective(k)
            .is_some_and(|r| r.enabled && r.next_rotation.is_some_and(|t| t <= now))
}

fn anything_due(kms: &LocalKms, s: &StoreState, now: u64) -> bool {
    s.keys
        .values()
        .any(|k| deletion_due(k, now) || expiry_due(k, now) || rotation_due(kms, k, now))
}

fn apply(kms: &LocalKms, s: &mut StoreState, now: u64) -> Result<Vec<Event>, KmsError> {
    let mut events = Vec::new();
    let doomed: Vec<String> = s
        .keys
        .values()
        .filter(|k| deletion_due(k, now))
        .map(|k| k.key_id.clone())
        .collect();
    for id in doomed {
        s.keys.remove(&id);
        s.aliases.retain(|_, a| a.target_key_id != id);
        events.push(Event {
            name: "DeleteKey",
            key_id: id,
            sync: false,
        });
    }
    for k in s.keys.values_mut() {
        if expiry_due(k, now) {
            k.material.clear();
            if let Some(i) = k.import.as_mut() {
                i.valid_to = None;
            }
            if matches!(k.key_state, KeyState::Enabled | KeyState::Disabled) {
                k.key_state = KeyState::PendingImport;
            }
            events.push(Event {
                name: "DeleteExpiredKeyMaterial",
                key_id: k.key_id.clone(),
                sync: false,
            });
        }
        if rotation_due(kms, k, now) {
            rotation::add_version(kms, k, RotationType::Automatic, now)?;
            let mut r = rotation::effective(k).ok_or_else(|| {
                KmsError::Internal("BUG: a rotation fell due on a key without rotation".into())
            })?;
            r.next_rotation = Some(now + u64::from(r.period_days) * super::keys::DAY);
            k.rotation = Some(r);
            events.push(Event {
                name: "RotateKey",
                key_id: k.key_id.clone(),
                sync: k.multi_region_primary.is_some(),
            });
        }
    }
    Ok(events)
}

/// Applies what is due; see the module doc.
pub fn run(kms: &LocalKms) -> Result<(), KmsError> {
    let now = kms.now();
    if !anything_due(kms, &kms.load()?, now) {
        return Ok(());
    }
    let events = kms.update(|s| apply(kms, s, now))?;
    for e in &events {
        tracing::info!(event = e.name, key_id = %e.key_id, region = kms.region(), "KMS maintenance");
        if e.sync {
            super::multiregion::sync_replicas(kms, &e.key_id);
        }
        let arn = kms.arn_of_id(&e.key_id);
        kms.audit(AuditEntry::service_event(e.name, Some(&arn)))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::kms::ops::keys::DAY;
    use crate::kms::ops::testutil::*;

    #[test]
    fn deletion_happens_when_the_window_passes_and_not_before() {
        let f = Fixture::new();
        let id = f.symmetric_key();
        f.ok(
            "CreateAlias",
            json!({"AliasName": "alias/doomed", "TargetKeyId": id}),
        );
        let blob =
            f.ok("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"x")}))["CiphertextBlob"].clone();
        let out = f.ok(
            "ScheduleKeyDeletion",
            json!({"KeyId": id, "PendingWindowInDays": 7}),
        );
        assert_eq!(out["PendingWindowInDays"], 7);
        f.advance(7 * DAY - 60);
        assert_eq!(f.state(&id), "PendingDeletion");
        f.advance(120);
        let (t, _) = f.err("DescribeKey", json!({"KeyId": id}));
        assert_eq!(t, "NotFoundException");
        let (t, _) = f.err("DescribeKey", json!({"KeyId": "alias/doomed"}));
        assert_eq!(t, "NotFoundException");
        let (t, _) = f.err("Decrypt", json!({"CiphertextBlob": blob}));
        assert_eq!(t, "InvalidCiphertextException");
        let names: Vec<String> = f
            .audit_records()
            .into_iter()
            .map(|r| r.event_name)
            .collect();
        assert!(names.contains(&"DeleteKey".to_owned()), "{names:?}");
    }

    #[test]
    fn deletion_is_applied_when_the_store_is_opened() {
        let f = Fixture::new();
        let id = f.symmetric_key();
        f.ok(
            "ScheduleKeyDeletion",
            json!({"KeyId": id, "PendingWindowInDays": 7}),
        );
        // Another instance whose clock is past the window opens the store.
        let later = f.region(REGION);
        later.advance_clock(8 * DAY);
        later.maintain().unwrap();
        let (t, _) = f.err("DescribeKey", json!({"KeyId": id}));
        assert_eq!(t, "NotFoundException");
    }
}
