//! Sign/Verify, GenerateMac/VerifyMac, GetPublicKey, GenerateDataKeyPair.
#![allow(clippy::unwrap_used)]

use crate::kms::asym::{self, MessageType, SigningAlgorithm};
use crate::kms::model::KeySpec;
use crate::kms::ops::testutil::*;

#[test]
fn ecdsa_sign_verify_and_public_key() {
    let f = Fixture::new();
    let id = f.key(json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"}));
    let alg = "ECDSA_SHA_256";
    let msg = b64(b"release v1");
    let out = f.ok(
        "Sign",
        json!({"KeyId": id, "Message": msg, "SigningAlgorithm": alg}),
    );
    assert_eq!(out["SigningAlgorithm"], alg);
    let sig = out["Signature"].clone();
    let ok = f.ok(
        "Verify",
        json!({"KeyId": id, "Message": msg, "Signature": sig, "SigningAlgorithm": alg}),
    );
    assert_eq!(ok["SignatureValid"], true);
    let (t, _) = f.err("Verify", json!({"KeyId": id, "Message": b64(b"release v2"), "Signature": sig, "SigningAlgorithm": alg}));
    assert_eq!(t, "KMSInvalidSignatureException");
    // The public key verifies outside the KMS.
    let pk = f.ok("GetPublicKey", json!({"KeyId": id}));
    assert_eq!(pk["KeySpec"], "ECC_NIST_P256");
    assert_eq!(pk["SigningAlgorithms"], json!([alg]));
    let spki = unb64(&pk["PublicKey"]);
    assert!(asym::verify(
        KeySpec::EccNistP256,
        &spki,
        SigningAlgorithm::EcdsaSha256,
        b"release v1",
        MessageType::Raw,
        &unb64(&sig)
    )
    .unwrap());
    // DIGEST messages must be digests of the right length.
    let digest = b64(&[7u8; 32]);
    f.ok(
        "Sign",
        json!({"KeyId": id, "Message": digest, "MessageType": "DIGEST", "SigningAlgorithm": alg}),
    );
    let (t, _) = f.err("Sign", json!({"KeyId": id, "Message": b64(&[7u8; 31]), "MessageType": "DIGEST", "SigningAlgorithm": alg}));
    assert_eq!(t, "ValidationException");
    let (t, _) = f.err(
        "Sign",
        json!({"KeyId": id, "Message": msg, "SigningAlgorithm": "ECDSA_SHA_384"}),
    );
    assert_eq!(t, "InvalidKeyUsageException");
    let (t, _) = f.err(
        "Sign",
        json!({"KeyId": id, "Message": b64(&[0; 4097]), "SigningAlgorithm": alg}),
    );
    assert_eq!(t, "ValidationException");
    assert_eq!(
        f.err("Sign", json!({"KeyId": id, "Message": msg})).0,
        "ValidationException"
    );
    assert_eq!(
        f.err("Encrypt", json!({"KeyId": id, "Plaintext": msg})).0,
        "InvalidKeyUsageException"
    );
    f.ok("DisableKey", json!({"KeyId": id}));
    assert_eq!(
        f.err(
            "Sign",
            json!({"KeyId": id, "Message": msg, "SigningAlgorithm": alg})
        )
        .0,
        "DisabledException"
    );
    assert_eq!(
        f.err("GetPublicKey", json!({"KeyId": id})).0,
        "DisabledException"
    );
    let sym = f.symmetric_key();
    assert_eq!(
        f.err("GetPublicKey", json!({"KeyId": sym})).0,
        "UnsupportedOperationException"
    );
    assert_eq!(
        f.err(
            "Sign",
            json!({"KeyId": sym, "Message": msg, "SigningAlgorithm": alg})
        )
        .0,
        "InvalidKeyUsageException"
    );
}

#[test]
fn hmac_generate_and_verify() {
    let f = Fixture::new();
    let id = f.key(json!({"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}));
    let msg = b64(b"token");
    let out = f.ok(
        "GenerateMac",
        json!({"KeyId": id, "Message": msg, "MacAlgorithm": "HMAC_SHA_256"}),
    );
    assert_eq!(unb64(&out["Mac"]).len(), 32);
    let again = f.ok(
        "GenerateMac",
        json!({"KeyId": id, "Message": msg, "MacAlgorithm": "HMAC_SHA_256"}),
    );
    assert_eq!(out["Mac"], again["Mac"], "HMAC is deterministic");
    let ok = f.ok(
        "VerifyMac",
        json!({"KeyId": id, "Message": msg, "MacAlgorithm": "HMAC_SHA_256", "Mac": out["Mac"]}),
    );
    assert_eq!(ok["MacValid"], true);
    let mut bad = unb64(&out["Mac"]);
    bad[0] ^= 1;
    let (t, _) = f.err(
        "VerifyMac",
        json!({"KeyId": id, "Message": msg, "MacAlgorithm": "HMAC_SHA_256", "Mac": b64(&bad)}),
    );
    assert_eq!(t, "KMSInvalidMacException");
    let (t, _) = f.err(
        "GenerateMac",
        json!({"KeyId": id, "Message": msg, "MacAlgorithm": "HMAC_SHA_512"}),
    );
    assert_eq!(t, "InvalidKeyUsageException");
    let (t, _) = f.err(
        "GenerateMac",
        json!({"KeyId": id, "Message": "", "MacAlgorithm": "HMAC_SHA_256"}),
    );
    assert_eq!(t, "ValidationException");
    let sym = f.symmetric_key();
    let (t, _) = f.err(
        "GenerateMac",
        json!({"KeyId": sym, "Message": msg, "MacAlgorithm": "HMAC_SHA_256"}),
    );
    assert_eq!(t, "InvalidKeyUsageException");
}

#[test]
fn generate_data_key_pair_with_and_without_plaintext() {
    let f = Fixture::new();
    let id = f.symmetric_key();
    let ctx = json!({"app": "signer"});
    let out = f.ok(
        "GenerateDataKeyPair",
        json!({"KeyId": id, "KeyPairSpec": "ECC_NIST_P384", "EncryptionContext": ctx}),
    );
    assert_eq!(out["KeyPairSpec"], "ECC_NIST_P384");
    let private = crate::crypto::SecretBytes::new(unb64(&out["PrivateKeyPlaintext"]));
    assert_eq!(
        asym::public_key_der(KeySpec::EccNistP384, &private).unwrap(),
        unb64(&out["PublicKey"])
    );
    let dec = f.ok(
        "Decrypt",
        json!({"CiphertextBlob": out["PrivateKeyCiphertextBlob"], "EncryptionContext": ctx}),
    );
    assert_eq!(unb64(&dec["Plaintext"]), private.expose());
    let out = f.ok(
        "GenerateDataKeyPairWithoutPlaintext",
        json!({"KeyId": id, "KeyPairSpec": "ECC_NIST_P256"}),
    );
    assert!(out.get("PrivateKeyPlaintext").is_none() && out["PublicKey"].is_string());
    assert_eq!(
        f.err(
            "GenerateDataKeyPair",
            json!({"KeyId": id, "KeyPairSpec": "SM2"})
        )
        .0,
        "UnsupportedOperationException"
    );
    assert_eq!(
        f.err(
            "GenerateDataKeyPair",
            json!({"KeyId": id, "KeyPairSpec": "SYMMETRIC_DEFAULT"})
        )
        .0,
        "ValidationException"
    );
    let hmac = f.key(json!({"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}));
    assert_eq!(
        f.err(
            "GenerateDataKeyPair",
            json!({"KeyId": hmac, "KeyPairSpec": "ECC_NIST_P256"})
        )
        .0,
        "InvalidKeyUsageException"
    );
}
