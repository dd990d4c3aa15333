//! CreateKey, DescribeKey, ListKeys, Enable/DisableKey, Schedule/Cancel
//! deletion, UpdateKeyDescription: results and errors in AWS's shape.
#![allow(clippy::unwrap_used)]

use crate::kms::ops::keys::DAY;
use crate::kms::ops::testutil::*;

#[test]
fn create_key_returns_aws_key_metadata() {
    let f = Fixture::new();
    let md = f.ok("CreateKey", json!({"Description": "vols"}))["KeyMetadata"].clone();
    let id = md["KeyId"].as_str().unwrap();
    assert_eq!(
        md["Arn"],
        format!("arn:aws:kms:{REGION}:{}:key/{id}", f.kms.account_id())
    );
    assert_eq!(md["AWSAccountId"], f.kms.account_id());
    assert!(md["CreationDate"].is_u64());
    for (k, v) in [
        ("Description", json!("vols")),
        ("Enabled", json!(true)),
        ("KeyState", json!("Enabled")),
        ("KeyManager", json!("CUSTOMER")),
        ("KeySpec", json!("SYMMETRIC_DEFAULT")),
        ("CustomerMasterKeySpec", json!("SYMMETRIC_DEFAULT")),
        ("KeyUsage", json!("ENCRYPT_DECRYPT")),
        ("Origin", json!("AWS_KMS")),
        ("EncryptionAlgorithms", json!(["SYMMETRIC_DEFAULT"])),
        ("MultiRegion", json!(false)),
    ] {
        assert_eq!(md[k], v, "{k}");
    }
    assert!(md.get("DeletionDate").is_none() && md.get("SigningAlgorithms").is_none());
    assert_eq!(f.describe(id), md);
}

#[test]
fn create_key_specs_usages_and_origins() {
    let f = Fixture::new();
    let hmac = f.key(json!({"KeySpec": "HMAC_384", "KeyUsage": "GENERATE_VERIFY_MAC"}));
    assert_eq!(f.describe(&hmac)["MacAlgorithms"], json!(["HMAC_SHA_384"]));
    let ecc = f.key(json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"}));
    assert_eq!(
        f.describe(&ecc)["SigningAlgorithms"],
        json!(["ECDSA_SHA_256"])
    );
    let ext = f.key(json!({"Origin": "EXTERNAL"}));
    let md = f.describe(&ext);
    assert_eq!(
        (md["KeyState"].as_str(), md["Enabled"].as_bool()),
        (Some("PendingImport"), Some(false))
    );
    assert_eq!(md["ExpirationModel"], "KEY_MATERIAL_DOES_NOT_EXPIRE");
    let mrk = f.key(json!({"MultiRegion": true}));
    assert!(mrk.starts_with("mrk-") && mrk.len() == 36, "{mrk}");
    let cases = [
        (json!({"KeySpec": "AES_256"}), "ValidationException"),
        (json!({"KeySpec": "SM2"}), "UnsupportedOperationException"),
        (
            json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "ENCRYPT_DECRYPT"}),
            "ValidationException",
        ),
        (
            json!({"KeySpec": "HMAC_256", "KeyUsage": "ENCRYPT_DECRYPT"}),
            "ValidationException",
        ),
        (json!({"KeyUsage": "SIGN_VERIFY"}), "ValidationException"),
        (
            json!({"KeySpec": "HMAC_256", "CustomerMasterKeySpec": "HMAC_512"}),
            "ValidationException",
        ),
        (
            json!({"Origin": "AWS_CLOUDHSM"}),
            "UnsupportedOperationException",
        ),
        (
            json!({"Origin": "EXTERNAL", "KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"}),
            "UnsupportedOperationException",
        ),
        (
            json!({"CustomKeyStoreId": "cks-1"}),
            "UnsupportedOperationException",
        ),
        (
            json!({"Description": "x".repeat(8193)}),
            "ValidationException",
        ),
        (json!({"Description": 7}), "SerializationException"),
        (
            json!({"Tags": [{"TagKey": "aws:x", "TagValue": ""}]}),
            "TagException",
        ),
    ];
    for (req, want) in cases {
        assert_eq!(f.err("CreateKey", req.clone()).0, want, "{req}");
    }
}

#[test]
fn list_keys_pages_with_limit_and_marker() {
    let f = Fixture::new();
    let mut ids: Vec<String> = (0..3).map(|_| f.symmetric_key()).collect();
    let p1 = f.ok("ListKeys", json!({"Limit": 2}));
    assert_eq!(p1["Keys"].as_array().unwrap().len(), 2);
    assert_eq!(p1["Truncated"], true);
    let p2 = f.ok("ListKeys", json!({"Limit": 2, "Marker": p1["NextMarker"]}));
    assert_eq!(p2["Truncated"], false);
    assert!(p2.get("NextMarker").is_none());
    let mut got: Vec<String> = [p1, p2]
        .iter()
        .flat_map(|p| p["Keys"].as_array().unwrap().clone())
        .map(|k| {
            let id = k["KeyId"].as_str().unwrap().to_owned();
            assert!(k["KeyArn"].as_str().unwrap().ends_with(&id));
            id
        })
        .collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
    assert_eq!(
        f.err("ListKeys", json!({"Limit": 0})).0,
        "ValidationException"
    );
    assert_eq!(
        f.err("ListKeys", json!({"Limit": 1001})).0,
        "ValidationException"
    );
    assert_eq!(
        f.err("ListKeys", json!({"Marker": "%%%"})).0,
        "InvalidMarkerException"
    );
}

#[test]
fn disable_and_enable_key() {
    let f = Fixture::new();
    let id = f.symmetric_key();
    assert_eq!(f.ok("DisableKey", json!({"KeyId": id})), json!({}));
    let md = f.describe(&id);
    assert_eq!(
        (md["KeyState"].as_str(), md["Enabled"].as_bool()),
        (Some("Disabled"), Some(false))
    );
    let (t, m) = f.err("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"x")}));
    assert_eq!(t, "DisabledException");
    assert!(m.contains("enable-key"), "{m}");
    f.ok("DisableKey", json!({"KeyId": id}));
    f.ok("EnableKey", json!({"KeyId": id}));
    f.ok("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"x")}));
    assert_eq!(
        f.err("EnableKey", json!({"KeyId": "alias/none"})).0,
        "NotFoundException"
    );
    let ext = f.key(json!({"Origin": "EXTERNAL"}));
    assert_eq!(
        f.err("EnableKey", json!({"KeyId": ext})).0,
        "KMSInvalidStateException"
    );
}

#[test]
fn schedule_and_cancel_key_deletion() {
    let f = Fixture::new();
    let id = f.symmetric_key();
    for bad in [6, 31] {
        let (t, m) = f.err(
            "ScheduleKeyDeletion",
            json!({"KeyId": id, "PendingWindowInDays": bad}),
        );
        assert_eq!(t, "ValidationException");
        assert!(m.contains(&bad.to_string()), "{m}");
    }
    let out = f.ok("ScheduleKeyDeletion", json!({"KeyId": id}));
    assert_eq!(out["PendingWindowInDays"], 30);
    assert_eq!(out["KeyState"], "PendingDeletion");
    assert!(out["KeyId"].as_str().unwrap().starts_with("arn:aws:kms:"));
    let md = f.describe(&id);
    assert_eq!(md["DeletionDate"], out["DeletionDate"]);
    let when = out["DeletionDate"].as_u64().unwrap();
    let now = crate::kms::now();
    assert!(when >= now + 30 * DAY - 5 && when <= now + 30 * DAY + 5);
    let (t, m) = f.err("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"x")}));
    assert_eq!(t, "KMSInvalidStateException");
    assert!(m.contains("cancel-key-deletion"), "{m}");
    assert_eq!(
        f.err("ScheduleKeyDeletion", json!({"KeyId": id})).0,
        "KMSInvalidStateException"
    );
    assert_eq!(
        f.err("EnableKey", json!({"KeyId": id})).0,
        "KMSInvalidStateException"
    );
    f.ok("CancelKeyDeletion", json!({"KeyId": id}));
    let md = f.describe(&id);
    assert_eq!(md["KeyState"], "Disabled");
    assert!(md.get("DeletionDate").is_none());
    assert_eq!(
        f.err("CancelKeyDeletion", json!({"KeyId": id})).0,
        "KMSInvalidStateException"
    );
    f.ok("EnableKey", json!({"KeyId": id}));
    // A key without material goes back to PendingImport.
    let ext = f.key(json!({"Origin": "EXTERNAL"}));
    f.ok(
        "ScheduleKeyDeletion",
        json!({"KeyId": ext, "PendingWindowInDays": 7}),
    );
    f.ok("CancelKeyDeletion", json!({"KeyId": ext}));
    assert_eq!(f.state(&ext), "PendingImport");
}

#[test]
fn update_key_description() {
    let f = Fixture::new();
    let id = f.symmetric_key();
    f.ok(
        "UpdateKeyDescription",
        json!({"KeyId": id, "Description": "new"}),
    );
    assert_eq!(f.describe(&id)["Description"], "new");
    let long = "x".repeat(8193);
    assert_eq!(
        f.err(
            "UpdateKeyDescription",
            json!({"KeyId": id, "Description": long})
        )
        .0,
        "ValidationException"
    );
    assert_eq!(
        f.err("UpdateKeyDescription", json!({"KeyId": id})).0,
        "ValidationException"
    );
}

#[test]
fn aws_managed_keys_can_be_viewed_but_not_managed() {
    let f = Fixture::new();
    let md = f.describe("alias/aws/ebs");
    assert_eq!(md["KeyManager"], "AWS");
    let id = md["KeyId"].as_str().unwrap();
    for (op, req) in [
        ("DisableKey", json!({"KeyId": id})),
        ("ScheduleKeyDeletion", json!({"KeyId": id})),
        (
            "UpdateKeyDescription",
            json!({"KeyId": id, "Description": "mine"}),
        ),
        ("TagResource", json!({"KeyId": id, "Tags": []})),
    ] {
        assert_eq!(f.err(op, req).0, "AccessDeniedException", "{op}");
    }
    f.ok("ListResourceTags", json!({"KeyId": id}));
    f.ok("GetKeyRotationStatus", json!({"KeyId": id}));
    assert_eq!(f.state(id), "Enabled");
}

#[test]
fn aws_managed_keys_are_used_through_their_service_only() {
    let f = Fixture::new();
    let enc = json!({"KeyId": "alias/aws/ebs", "Plaintext": b64(b"x")});
    let (t, m) = f.err("Encrypt", enc.clone());
    assert_eq!(
        t, "AccessDeniedException",
        "as in AWS: direct use is denied"
    );
    assert!(m.contains("kms:Encrypt"), "{m}");
    let via = Some(crate::kms::policy_eval::via_service_for("ebs", REGION));
    let out = f.kms.call_via(&f.root, "Encrypt", enc, via).unwrap();
    assert!(out["CiphertextBlob"].is_string());
}
