//! Imported key material: the whole AWS flow, the token rules, re-import of
//! the same material only, and expiry. Each GetParametersForImport makes an
//! RSA key, so tests reuse their tokens.
#![allow(clippy::unwrap_used)]

use crate::crypto::SecretBytes;
use crate::kms::asym::{self, EncryptionAlgorithm};
use crate::kms::model::KeySpec;
use crate::kms::ops::keys::DAY;
use crate::kms::ops::testutil::*;

struct Params {
    token: Value,
    public_key: Vec<u8>,
}

fn params(f: &Fixture, key: &str) -> Params {
    let out = f.ok(
        "GetParametersForImport",
        json!({
        "KeyId": key, "WrappingAlgorithm": "RSAES_OAEP_SHA_256", "WrappingKeySpec": "RSA_2048"}),
    );
    let valid_to = out["ParametersValidTo"].as_u64().unwrap();
    assert!(valid_to.abs_diff(crate::kms::now() + DAY) < 10);
    Params {
        token: out["ImportToken"].clone(),
        public_key: unb64(&out["PublicKey"]),
    }
}

fn wrap(p: &Params, material: &[u8]) -> String {
    b64(&asym::rsa_encrypt(
        KeySpec::Rsa2048,
        &p.public_key,
        EncryptionAlgorithm::RsaesOaepSha256,
        material,
    )
    .unwrap())
}

fn import(
    f: &Fixture,
    key: &str,
    p: &Params,
    material: &[u8],
    extra: Value,
) -> Result<Value, (&'static str, String)> {
    let mut req =
        json!({"KeyId": key, "ImportToken": p.token, "EncryptedKeyMaterial": wrap(p, material)});
    if let (Value::Object(r), Value::Object(e)) = (&mut req, extra) {
        r.extend(e);
    }
    f.kms
        .call(&f.root, "ImportKeyMaterial", req)
        .map_err(|e| (e.aws_type(), e.to_string()))
}

#[test]
fn import_delete_and_reimport_the_same_material() {
    let f = Fixture::new();
    let id = f.key(json!({"Origin": "EXTERNAL"}));
    assert_eq!(
        f.err("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"x")}))
            .0,
        "KMSInvalidStateException"
    );
    let p = params(&f, &id);
    let material = SecretBytes::random(32);
    import(&f, &id, &p, material.expose(), json!({})).unwrap();
    let md = f.describe(&id);
    assert_eq!(
        (md["KeyState"].as_str(), md["Origin"].as_str()),
        (Some("Enabled"), Some("EXTERNAL"))
    );
    assert_eq!(md["ExpirationModel"], "KEY_MATERIAL_DOES_NOT_EXPIRE");
    let blob = f.ok(
        "Encrypt",
        json!({"KeyId": id, "Plaintext": b64(b"imported")}),
    )["CiphertextBlob"]
        .clone();
    f.ok("DeleteImportedKeyMaterial", json!({"KeyId": id}));
    assert_eq!(f.state(&id), "PendingImport");
    assert_eq!(
        f.err("Decrypt", json!({"CiphertextBlob": blob})).0,
        "KMSInvalidStateException"
    );
    let (t, _) = import(&f, &id, &p, &[9; 32], json!({})).unwrap_err();
    assert_eq!(t, "IncorrectKeyMaterialException");
    import(&f, &id, &p, material.expose(), json!({})).unwrap();
    assert_eq!(
        unb64(&f.ok("Decrypt", json!({"CiphertextBlob": blob}))["Plaintext"]),
        b"imported"
    );
    let (t, _) = import(&f, &id, &p, &[1; 16], json!({})).unwrap_err();
    assert_eq!(t, "IncorrectKeyMaterialException");
}

#[test]
fn import_tokens_are_bound_to_their_key_and_expire() {
    let f = Fixture::new();
    let (a, b) = (
        f.key(json!({"Origin": "EXTERNAL"})),
        f.key(json!({"Origin": "EXTERNAL"})),
    );
    let p = params(&f, &a);
    let (t, _) = import(&f, &b, &p, &[1; 32], json!({})).unwrap_err();
    assert_eq!(t, "InvalidImportTokenException");
    let mut tampered = unb64(&p.token);
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let bad = Params {
        token: json!(b64(&tampered)),
        public_key: p.public_key.clone(),
    };
    assert_eq!(
        import(&f, &a, &bad, &[1; 32], json!({})).unwrap_err().0,
        "InvalidImportTokenException"
    );
    let req = json!({"KeyId": a, "ImportToken": p.token, "EncryptedKeyMaterial": b64(&[0; 256])});
    assert_eq!(
        f.err("ImportKeyMaterial", req).0,
        "InvalidCiphertextException"
    );
    f.advance(DAY + 60);
    assert_eq!(
        import(&f, &a, &p, &[1; 32], json!({})).unwrap_err().0,
        "ExpiredImportTokenException"
    );
}

#[test]
fn material_with_valid_to_expires_back_to_pending_import() {
    let f = Fixture::new();
    let id = f.key(
        json!({"Origin": "EXTERNAL", "KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}),
    );
    let p = params(&f, &id);
    let now = crate::kms::now();
    for (extra, want) in [
        (json!({"ValidTo": now - 10}), "ValidationException"),
        (json!({"ValidTo": now + 400 * DAY}), "ValidationException"),
        (
            json!({"ExpirationModel": "KEY_MATERIAL_EXPIRES"}),
            "ValidationException",
        ),
        (
            json!({"ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE", "ValidTo": now + 3600}),
            "ValidationException",
        ),
    ] {
        assert_eq!(
            import(&f, &id, &p, &[5; 32], extra.clone()).unwrap_err().0,
            want,
            "{extra}"
        );
    }
    import(
        &f,
        &id,
        &p,
        &[5; 32],
        json!({"ValidTo": now + 3600, "ExpirationModel": "KEY_MATERIAL_EXPIRES"}),
    )
    .unwrap();
    let md = f.describe(&id);
    assert_eq!(md["ValidTo"], now + 3600);
    assert_eq!(md["ExpirationModel"], "KEY_MATERIAL_EXPIRES");
    f.ok(
        "GenerateMac",
        json!({"KeyId": id, "Message": b64(b"m"), "MacAlgorithm": "HMAC_SHA_256"}),
    );
    f.advance(7200);
    assert_eq!(f.state(&id), "PendingImport");
    let names: Vec<String> = f
        .audit_records()
        .into_iter()
        .map(|r| r.event_name)
        .collect();
    assert!(
        names.iter().any(|n| n == "DeleteExpiredKeyMaterial"),
        "{names:?}"
    );
}

#[test]
fn import_parameters_need_an_external_key_and_valid_options() {
    let f = Fixture::new();
    let kms_key = f.symmetric_key();
    let ext = f.key(json!({"Origin": "EXTERNAL"}));
    let req = |k: &str, alg: &str, spec: &str| json!({"KeyId": k, "WrappingAlgorithm": alg, "WrappingKeySpec": spec});
    assert_eq!(
        f.err(
            "GetParametersForImport",
            req(&kms_key, "RSAES_OAEP_SHA_256", "RSA_2048")
        )
        .0,
        "UnsupportedOperationException"
    );
    assert_eq!(
        f.err(
            "GetParametersForImport",
            req(&ext, "RSA_AES_KEY_WRAP_SHA_256", "RSA_2048")
        )
        .0,
        "UnsupportedOperationException"
    );
    assert_eq!(
        f.err("GetParametersForImport", req(&ext, "XOR", "RSA_2048"))
            .0,
        "ValidationException"
    );
    assert_eq!(
        f.err(
            "GetParametersForImport",
            req(&ext, "RSAES_OAEP_SHA_1", "RSA_1024")
        )
        .0,
        "ValidationException"
    );
    assert_eq!(
        f.err("DeleteImportedKeyMaterial", json!({"KeyId": kms_key}))
            .0,
        "UnsupportedOperationException"
    );
}
