//! Multi-region keys: replicas with the same id and material in another
//! region's store, blobs that decrypt across them, rotation that follows.
#![allow(clippy::unwrap_used)]

use crate::kms::ops::testutil::*;

#[test]
fn replicate_and_decrypt_across_regions() {
    let f = Fixture::new();
    let id = f.key(json!({"MultiRegion": true, "Description": "primary"}));
    let md = f.describe(&id);
    assert_eq!(md["MultiRegion"], true);
    assert_eq!(
        md["MultiRegionConfiguration"]["MultiRegionKeyType"],
        "PRIMARY"
    );
    assert_eq!(md["MultiRegionConfiguration"]["ReplicaKeys"], json!([]));
    let out = f.ok(
        "ReplicateKey",
        json!({"KeyId": id, "ReplicaRegion": OTHER_REGION, "Description": "replica",
        "Tags": [{"TagKey": "k", "TagValue": "v"}]}),
    );
    let rmd = &out["ReplicaKeyMetadata"];
    assert_eq!(rmd["KeyId"], id.as_str());
    assert_eq!(
        rmd["Arn"],
        format!("arn:aws:kms:{OTHER_REGION}:{}:key/{id}", f.kms.account_id())
    );
    assert_eq!(
        rmd["MultiRegionConfiguration"]["MultiRegionKeyType"],
        "REPLICA"
    );
    assert_eq!(
        out["ReplicaTags"],
        json!([{"TagKey": "k", "TagValue": "v"}])
    );
    assert!(out["ReplicaPolicy"].as_str().unwrap().contains("kms:*"));
    let cfg = &f.describe(&id)["MultiRegionConfiguration"];
    assert_eq!(cfg["ReplicaKeys"][0]["Region"], OTHER_REGION);

    let west = f.region(OTHER_REGION);
    let wroot = west.root_caller();
    let wmd = west
        .call(&wroot, "DescribeKey", json!({"KeyId": id}))
        .unwrap()["KeyMetadata"]
        .clone();
    assert_eq!(wmd["Description"], "replica");
    assert_eq!(
        wmd["MultiRegionConfiguration"]["PrimaryKey"]["Region"],
        REGION
    );
    let blob = f.ok(
        "Encrypt",
        json!({"KeyId": id, "Plaintext": b64(b"east"), "EncryptionContext": {"a": "b"}}),
    )["CiphertextBlob"]
        .clone();
    let dec = west
        .call(
            &wroot,
            "Decrypt",
            json!({"CiphertextBlob": blob, "EncryptionContext": {"a": "b"}}),
        )
        .unwrap();
    assert_eq!(unb64(&dec["Plaintext"]), b"east");
    assert_eq!(dec["KeyId"], wmd["Arn"]);
    let wblob = west
        .call(
            &wroot,
            "Encrypt",
            json!({"KeyId": id, "Plaintext": b64(b"west")}),
        )
        .unwrap()["CiphertextBlob"]
        .clone();
    assert_eq!(
        unb64(&f.ok("Decrypt", json!({"CiphertextBlob": wblob}))["Plaintext"]),
        b"west"
    );

    // Rotation on the primary reaches the replica.
    f.ok("RotateKeyOnDemand", json!({"KeyId": id}));
    let rotated =
        f.ok("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"v2")}))["CiphertextBlob"].clone();
    let dec = west
        .call(&wroot, "Decrypt", json!({"CiphertextBlob": rotated}))
        .unwrap();
    assert_eq!(unb64(&dec["Plaintext"]), b"v2");
    let e = west
        .call(&wroot, "RotateKeyOnDemand", json!({"KeyId": id}))
        .unwrap_err();
    assert_eq!(e.aws_type(), "UnsupportedOperationException");

    // Enabled state is per region.
    west.call(&wroot, "DisableKey", json!({"KeyId": id}))
        .unwrap();
    f.ok("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"x")}));
}

#[test]
fn replicate_key_errors() {
    let f = Fixture::new();
    let single = f.symmetric_key();
    let mrk = f.key(json!({"MultiRegion": true}));
    let req = |k: &str, r: &str| json!({"KeyId": k, "ReplicaRegion": r});
    assert_eq!(
        f.err("ReplicateKey", req(&single, OTHER_REGION)).0,
        "UnsupportedOperationException"
    );
    assert_eq!(
        f.err("ReplicateKey", req(&mrk, REGION)).0,
        "ValidationException"
    );
    assert_eq!(
        f.err("ReplicateKey", req(&mrk, "Not_A_Region")).0,
        "ValidationException"
    );
    f.ok("ReplicateKey", req(&mrk, OTHER_REGION));
    assert_eq!(
        f.err("ReplicateKey", req(&mrk, OTHER_REGION)).0,
        "AlreadyExistsException"
    );
    let (t, m) = f.err("ScheduleKeyDeletion", json!({"KeyId": mrk}));
    assert_eq!(t, "UnsupportedOperationException");
    assert!(m.contains(OTHER_REGION), "{m}");
    let west = f.region(OTHER_REGION);
    let e = west
        .call(&west.root_caller(), "ReplicateKey", req(&mrk, "ap-south-1"))
        .unwrap_err();
    assert_eq!(
        e.aws_type(),
        "UnsupportedOperationException",
        "a replica cannot be replicated"
    );
    west.call(
        &west.root_caller(),
        "ScheduleKeyDeletion",
        json!({"KeyId": mrk, "PendingWindowInDays": 7}),
    )
    .unwrap();
}
