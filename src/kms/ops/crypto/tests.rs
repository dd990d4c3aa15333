//! Encrypt, Decrypt, ReEncrypt, GenerateDataKey(+WithoutPlaintext),
//! GenerateRandom through the JSON operation table.
#![allow(clippy::unwrap_used)]

use crate::kms::ops::testutil::*;

fn encrypt(f: &Fixture, key: &str, pt: &[u8], ctx: Value) -> Value {
    f.ok(
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(pt), "EncryptionContext": ctx}),
    )
}

#[test]
fn encrypt_decrypt_round_trip_binds_the_context() {
    let f = Fixture::new();
    let id = f.symmetric_key();
    f.ok(
        "CreateAlias",
        json!({"AliasName": "alias/app", "TargetKeyId": id}),
    );
    let ctx = json!({"purpose": "test", "aws:ebs:id": "vol-1"});
    let out = encrypt(&f, "alias/app", b"secret", ctx.clone());
    assert_eq!(out["EncryptionAlgorithm"], "SYMMETRIC_DEFAULT");
    assert_eq!(out["KeyId"], f.describe(&id)["Arn"]);
    let blob = out["CiphertextBlob"].clone();
    let dec = f.ok(
        "Decrypt",
        json!({"CiphertextBlob": blob, "EncryptionContext": ctx}),
    );
    assert_eq!(unb64(&dec["Plaintext"]), b"secret");
    assert_eq!(dec["KeyId"], out["KeyId"]);
    assert_eq!(dec["EncryptionAlgorithm"], "SYMMETRIC_DEFAULT");
    f.ok(
        "Decrypt",
        json!({"CiphertextBlob": blob, "EncryptionContext": ctx, "KeyId": "alias/app"}),
    );
    for wrong in [
        json!({}),
        json!({"purpose": "test"}),
        json!({"purpose": "Test", "aws:ebs:id": "vol-1"}),
    ] {
        let (t, _) = f.err(
            "Decrypt",
            json!({"CiphertextBlob": blob, "EncryptionContext": wrong}),
        );
        assert_eq!(t, "InvalidCiphertextException", "{wrong}");
    }
    let other = f.symmetric_key();
    let (t, _) = f.err(
        "Decrypt",
        json!({"CiphertextBlob": blob, "EncryptionContext": ctx, "KeyId": other}),
    );
    assert_eq!(t, "IncorrectKeyException");
}

#[test]
fn encrypt_limits_and_bad_input() {
    let f = Fixture::new();
    let id = f.symmetric_key();
    encrypt(&f, &id, &[1; 4096], json!({}));
    for bad in [vec![], vec![1; 4097]] {
        let (t, _) = f.err("Encrypt", json!({"KeyId": id, "Plaintext": b64(&bad)}));
        assert_eq!(t, "ValidationException", "{}", bad.len());
    }
    let (t, _) = f.err("Encrypt", json!({"KeyId": id, "Plaintext": "not base64!"}));
    assert_eq!(t, "SerializationException");
    let (t, _) = f.err(
        "Encrypt",
        json!({"KeyId": id, "Plaintext": b64(b"x"), "EncryptionContext": {"a": 1}}),
    );
    assert_eq!(t, "SerializationException");
    let (t, _) = f.err(
        "Encrypt",
        json!({"KeyId": id, "Plaintext": b64(b"x"), "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}),
    );
    assert_eq!(t, "InvalidKeyUsageException");
    let (t, _) = f.err(
        "Encrypt",
        json!({"KeyId": id, "Plaintext": b64(b"x"), "EncryptionAlgorithm": "ROT13"}),
    );
    assert_eq!(t, "ValidationException");
    let hmac = f.key(json!({"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}));
    assert_eq!(
        f.err("Encrypt", json!({"KeyId": hmac, "Plaintext": b64(b"x")}))
            .0,
        "InvalidKeyUsageException"
    );
    let (t, _) = f.err("Decrypt", json!({"CiphertextBlob": b64(&[0; 6145])}));
    assert_eq!(t, "ValidationException");
    let (t, _) = f.err("Decrypt", json!({"CiphertextBlob": b64(b"garbage")}));
    assert_eq!(t, "InvalidCiphertextException");
}

#[test]
fn re_encrypt_moves_a_blob_to_another_key_and_context() {
    let f = Fixture::new();
    let (a, b) = (f.symmetric_key(), f.symmetric_key());
    let blob = encrypt(&f, &a, b"dek", json!({"v": "1"}))["CiphertextBlob"].clone();
    let out = f.ok(
        "ReEncrypt",
        json!({
        "CiphertextBlob": blob, "SourceEncryptionContext": {"v": "1"},
        "DestinationKeyId": b, "DestinationEncryptionContext": {"v": "2"}}),
    );
    assert_eq!(out["SourceKeyId"], f.describe(&a)["Arn"]);
    assert_eq!(out["KeyId"], f.describe(&b)["Arn"]);
    assert_eq!(out["SourceEncryptionAlgorithm"], "SYMMETRIC_DEFAULT");
    assert_eq!(out["DestinationEncryptionAlgorithm"], "SYMMETRIC_DEFAULT");
    let dec = f.ok(
        "Decrypt",
        json!({"CiphertextBlob": out["CiphertextBlob"], "EncryptionContext": {"v": "2"}}),
    );
    assert_eq!(unb64(&dec["Plaintext"]), b"dek");
    assert_eq!(dec["KeyId"], out["KeyId"]);
    let req = |src_ctx: Value, src_key: &str| {
        json!({
        "CiphertextBlob": blob, "SourceEncryptionContext": src_ctx, "SourceKeyId": src_key, "DestinationKeyId": b})
    };
    assert_eq!(
        f.err("ReEncrypt", req(json!({}), &a)).0,
        "InvalidCiphertextException"
    );
    assert_eq!(
        f.err("ReEncrypt", req(json!({"v": "1"}), &b)).0,
        "IncorrectKeyException"
    );
    f.ok("DisableKey", json!({"KeyId": b}));
    assert_eq!(
        f.err("ReEncrypt", req(json!({"v": "1"}), &a)).0,
        "DisabledException"
    );
    let (t, _) = f.err("ReEncrypt", json!({"CiphertextBlob": blob}));
    assert_eq!(t, "ValidationException", "DestinationKeyId is required");
}

#[test]
fn generate_data_key_by_spec_or_length() {
    let f = Fixture::new();
    let id = f.symmetric_key();
    for (req, len) in [
        (json!({"KeyId": id, "KeySpec": "AES_256"}), 32),
        (json!({"KeyId": id, "KeySpec": "AES_128"}), 16),
        (json!({"KeyId": id, "NumberOfBytes": 64}), 64),
    ] {
        let out = f.ok("GenerateDataKey", req);
        let pt = unb64(&out["Plaintext"]);
        assert_eq!(pt.len(), len);
        let dec = f.ok("Decrypt", json!({"CiphertextBlob": out["CiphertextBlob"]}));
        assert_eq!(unb64(&dec["Plaintext"]), pt);
    }
    let out = f.ok(
        "GenerateDataKeyWithoutPlaintext",
        json!({"KeyId": id, "KeySpec": "AES_256", "EncryptionContext": {"k": "v"}}),
    );
    assert!(out.get("Plaintext").is_none());
    let dec = f.ok(
        "Decrypt",
        json!({"CiphertextBlob": out["CiphertextBlob"], "EncryptionContext": {"k": "v"}}),
    );
    assert_eq!(unb64(&dec["Plaintext"]).len(), 32);
    for bad in [
        json!({"KeyId": id}),
        json!({"KeyId": id, "KeySpec": "AES_256", "NumberOfBytes": 32}),
        json!({"KeyId": id, "KeySpec": "AES_512"}),
        json!({"KeyId": id, "NumberOfBytes": 0}),
        json!({"KeyId": id, "NumberOfBytes": 1025}),
    ] {
        assert_eq!(
            f.err("GenerateDataKey", bad.clone()).0,
            "ValidationException",
            "{bad}"
        );
    }
    let ecc = f.key(json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"}));
    assert_eq!(
        f.err(
            "GenerateDataKey",
            json!({"KeyId": ecc, "KeySpec": "AES_256"})
        )
        .0,
        "InvalidKeyUsageException"
    );
}

#[test]
fn generate_random_lengths() {
    let f = Fixture::new();
    assert_eq!(
        unb64(&f.ok("GenerateRandom", json!({"NumberOfBytes": 1024}))["Plaintext"]).len(),
        1024
    );
    assert_eq!(
        unb64(&f.ok("GenerateRandom", json!({"NumberOfBytes": 1}))["Plaintext"]).len(),
        1
    );
    for bad in [
        json!({"NumberOfBytes": 0}),
        json!({"NumberOfBytes": 1025}),
        json!({}),
    ] {
        assert_eq!(
            f.err("GenerateRandom", bad.clone()).0,
            "ValidationException",
            "{bad}"
        );
    }
}

/// One RSA key (slow to make) covers RSA encryption end to end.
#[test]
fn rsa_encrypt_decrypt_needs_key_id_and_algorithm() {
    let f = Fixture::new();
    let id = f.key(json!({"KeySpec": "RSA_2048", "KeyUsage": "ENCRYPT_DECRYPT"}));
    assert_eq!(
        f.describe(&id)["EncryptionAlgorithms"],
        json!(["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"])
    );
    let alg = "RSAES_OAEP_SHA_256";
    let out = f.ok(
        "Encrypt",
        json!({"KeyId": id, "Plaintext": b64(b"hi"), "EncryptionAlgorithm": alg}),
    );
    assert_eq!(unb64(&out["CiphertextBlob"]).len(), 256);
    let ct = out["CiphertextBlob"].clone();
    let dec = f.ok(
        "Decrypt",
        json!({"CiphertextBlob": ct, "KeyId": id, "EncryptionAlgorithm": alg}),
    );
    assert_eq!(unb64(&dec["Plaintext"]), b"hi");
    assert_eq!(
        f.err(
            "Decrypt",
            json!({"CiphertextBlob": ct, "EncryptionAlgorithm": alg})
        )
        .0,
        "ValidationException"
    );
    assert_eq!(
        f.err("Decrypt", json!({"CiphertextBlob": ct, "KeyId": id}))
            .0,
        "InvalidKeyUsageException"
    );
    let (t, _) = f.err(
        "Decrypt",
        json!({"CiphertextBlob": ct, "KeyId": id, "EncryptionAlgorithm": "RSAES_OAEP_SHA_1"}),
    );
    assert_eq!(t, "InvalidCiphertextException");
    assert_eq!(
        f.err("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"x")}))
            .0,
        "InvalidKeyUsageException"
    );
    let (t, _) = f.err(
        "Encrypt",
        json!({"KeyId": id, "Plaintext": b64(&[0; 191]), "EncryptionAlgorithm": alg}),
    );
    assert_eq!(t, "ValidationException");
    let (t, _) = f.err("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"x"), "EncryptionAlgorithm": alg, "EncryptionContext": {"a": "b"}}));
    assert_eq!(t, "ValidationException");
    let pk = f.ok("GetPublicKey", json!({"KeyId": id}));
    assert_eq!(pk["KeyUsage"], "ENCRYPT_DECRYPT");
    // Anyone with the public key can encrypt for the KMS (AWS's use case).
    let local = crate::kms::asym::rsa_encrypt(
        crate::kms::model::KeySpec::Rsa2048,
        &unb64(&pk["PublicKey"]),
        crate::kms::asym::EncryptionAlgorithm::RsaesOaepSha1,
        b"offline",
    )
    .unwrap();
    let dec = f.ok("Decrypt", json!({"CiphertextBlob": b64(&local), "KeyId": id, "EncryptionAlgorithm": "RSAES_OAEP_SHA_1"}));
    assert_eq!(unb64(&dec["Plaintext"]), b"offline");
}
