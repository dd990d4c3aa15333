//! Rotation settings, on-demand and automatic rotation, and what rotation
//! must never break (old blobs).
#![allow(clippy::unwrap_used)]

use crate::kms::blob::Blob;
use crate::kms::ops::keys::DAY;
use crate::kms::ops::testutil::*;

fn blob_version(v: &Value) -> u32 {
    Blob::decode(&unb64(v)).unwrap().material_version()
}

#[test]
fn enable_rotation_and_status() {
    let f = Fixture::new();
    let id = f.symmetric_key();
    let st = f.ok("GetKeyRotationStatus", json!({"KeyId": id}));
    assert_eq!(st["KeyRotationEnabled"], false);
    assert!(st.get("NextRotationDate").is_none());
    for bad in [89, 2561] {
        let (t, _) = f.err(
            "EnableKeyRotation",
            json!({"KeyId": id, "RotationPeriodInDays": bad}),
        );
        assert_eq!(t, "ValidationException", "{bad}");
    }
    f.ok("EnableKeyRotation", json!({"KeyId": id}));
    let st = f.ok("GetKeyRotationStatus", json!({"KeyId": id}));
    assert_eq!(st["KeyRotationEnabled"], true);
    assert_eq!(st["RotationPeriodInDays"], 365);
    assert!(st["KeyId"].as_str().unwrap().starts_with("arn:"));
    let next = st["NextRotationDate"].as_u64().unwrap();
    assert!(next.abs_diff(crate::kms::now() + 365 * DAY) < 10);
    f.ok(
        "EnableKeyRotation",
        json!({"KeyId": id, "RotationPeriodInDays": 90}),
    );
    assert_eq!(
        f.ok("GetKeyRotationStatus", json!({"KeyId": id}))["RotationPeriodInDays"],
        90
    );
    f.ok("DisableKeyRotation", json!({"KeyId": id}));
    assert_eq!(
        f.ok("GetKeyRotationStatus", json!({"KeyId": id}))["KeyRotationEnabled"],
        false
    );
    f.ok("DisableKey", json!({"KeyId": id}));
    assert_eq!(
        f.err("EnableKeyRotation", json!({"KeyId": id})).0,
        "DisabledException"
    );
    f.ok("GetKeyRotationStatus", json!({"KeyId": id}));
}

#[test]
fn keys_that_cannot_rotate_say_so() {
    let f = Fixture::new();
    let hmac = f.key(json!({"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}));
    let ext = f.key(json!({"Origin": "EXTERNAL"}));
    assert_eq!(
        f.err("EnableKeyRotation", json!({"KeyId": hmac})).0,
        "UnsupportedOperationException"
    );
    assert_eq!(
        f.err("RotateKeyOnDemand", json!({"KeyId": hmac})).0,
        "UnsupportedOperationException"
    );
    assert_eq!(
        f.err("GetKeyRotationStatus", json!({"KeyId": hmac})).0,
        "UnsupportedOperationException"
    );
    assert_eq!(
        f.err("EnableKeyRotation", json!({"KeyId": ext})).0,
        "KMSInvalidStateException"
    );
    let ebs = f.describe("alias/aws/ebs")["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let st = f.ok("GetKeyRotationStatus", json!({"KeyId": ebs}));
    assert_eq!(
        (
            st["KeyRotationEnabled"].as_bool(),
            st["RotationPeriodInDays"].as_u64()
        ),
        (Some(true), Some(365))
    );
    for op in [
        "RotateKeyOnDemand",
        "EnableKeyRotation",
        "DisableKeyRotation",
    ] {
        assert_eq!(
            f.err(op, json!({"KeyId": ebs})).0,
            "AccessDeniedException",
            "{op}"
        );
    }
}

#[test]
fn on_demand_rotation_keeps_old_blobs_and_stops_at_25() {
    let f = Fixture::new();
    let id = f.symmetric_key();
    let old =
        f.ok("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"old")}))["CiphertextBlob"].clone();
    let out = f.ok("RotateKeyOnDemand", json!({"KeyId": id}));
    assert_eq!(out["KeyId"], id.as_str());
    let new =
        f.ok("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"new")}))["CiphertextBlob"].clone();
    assert_eq!((blob_version(&old), blob_version(&new)), (1, 2));
    assert_eq!(
        unb64(&f.ok("Decrypt", json!({"CiphertextBlob": old}))["Plaintext"]),
        b"old"
    );
    assert_eq!(
        unb64(&f.ok("Decrypt", json!({"CiphertextBlob": new}))["Plaintext"]),
        b"new"
    );
    let list = f.ok("ListKeyRotations", json!({"KeyId": id}));
    assert_eq!(list["Rotations"].as_array().unwrap().len(), 1);
    assert_eq!(list["Rotations"][0]["RotationType"], "ON_DEMAND");
    for _ in 1..25 {
        f.ok("RotateKeyOnDemand", json!({"KeyId": id}));
    }
    let (t, _) = f.err("RotateKeyOnDemand", json!({"KeyId": id}));
    assert_eq!(t, "LimitExceededException");
    let page = f.ok("ListKeyRotations", json!({"KeyId": id, "Limit": 10}));
    assert_eq!(page["Truncated"], true);
    let rest = f.ok(
        "ListKeyRotations",
        json!({"KeyId": id, "Marker": page["NextMarker"]}),
    );
    assert_eq!(rest["Rotations"].as_array().unwrap().len(), 15);
    assert_eq!(
        unb64(&f.ok("Decrypt", json!({"CiphertextBlob": old}))["Plaintext"]),
        b"old"
    );
}

#[test]
fn automatic_rotation_runs_when_due_and_only_for_enabled_keys() {
    let f = Fixture::new();
    let id = f.symmetric_key();
    let off = f.symmetric_key();
    f.ok(
        "EnableKeyRotation",
        json!({"KeyId": id, "RotationPeriodInDays": 90}),
    );
    f.ok(
        "EnableKeyRotation",
        json!({"KeyId": off, "RotationPeriodInDays": 90}),
    );
    f.ok("DisableKey", json!({"KeyId": off}));
    let old =
        f.ok("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"x")}))["CiphertextBlob"].clone();
    f.advance(89 * DAY);
    assert_eq!(
        f.ok("ListKeyRotations", json!({"KeyId": id}))["Rotations"],
        json!([])
    );
    f.advance(2 * DAY);
    let rotations = f.ok("ListKeyRotations", json!({"KeyId": id}))["Rotations"].clone();
    assert_eq!(rotations[0]["RotationType"], "AUTOMATIC");
    let next = f.ok("GetKeyRotationStatus", json!({"KeyId": id}))["NextRotationDate"]
        .as_u64()
        .unwrap();
    assert!(next.abs_diff(crate::kms::now() + 91 * DAY + 90 * DAY) < 10);
    let new =
        f.ok("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"y")}))["CiphertextBlob"].clone();
    assert_eq!(blob_version(&new), 2);
    f.ok("Decrypt", json!({"CiphertextBlob": old}));
    assert_eq!(
        f.ok("ListKeyRotations", json!({"KeyId": off}))["Rotations"],
        json!([])
    );
    let names: Vec<String> = f
        .audit_records()
        .into_iter()
        .map(|r| r.event_name)
        .collect();
    assert!(names.iter().any(|n| n == "RotateKey"), "{names:?}");
}
