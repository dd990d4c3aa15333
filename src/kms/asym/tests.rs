//! Round trips, cross-checks against OpenSSL, and the failure cases of the
//! asymmetric and HMAC primitives. RSA keys are slow to make: one RSA_2048
//! key serves every RSA test.

use std::sync::OnceLock;

use super::*;

fn rsa_2048() -> &'static SecretBytes {
    static KEY: OnceLock<SecretBytes> = OnceLock::new();
    KEY.get_or_init(|| generate_private_key(KeySpec::Rsa2048).unwrap())
}

#[test]
fn hmac_matches_rfc_4231_test_case_2() {
    let key = SecretBytes::from_slice(b"Jefe");
    let msg = b"what do ya want for nothing?";
    let want_256 = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    let want_512 = concat!(
        "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554",
        "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
    );
    assert_eq!(
        hex::encode(hmac(MacAlgorithm::HmacSha256, &key, msg)),
        want_256
    );
    assert_eq!(
        hex::encode(hmac(MacAlgorithm::HmacSha512, &key, msg)),
        want_512
    );
    assert_eq!(
        hex::encode(hmac(MacAlgorithm::HmacSha224, &key, msg)),
        "a30e01098bc6dbbf45690f3a7e9e6d0f8bbea2a39e6148008fd05e44"
    );
    let mac = hmac(MacAlgorithm::HmacSha384, &key, msg);
    assert!(hmac_verify(MacAlgorithm::HmacSha384, &key, msg, &mac));
    let mut bad = mac.clone();
    bad[0] ^= 1;
    assert!(!hmac_verify(MacAlgorithm::HmacSha384, &key, msg, &bad));
    assert!(!hmac_verify(MacAlgorithm::HmacSha384, &key, b"other", &mac));
    assert!(!hmac_verify(
        MacAlgorithm::HmacSha384,
        &key,
        msg,
        &mac[..47]
    ));
}

#[test]
fn ecdsa_round_trip_raw_and_digest_on_both_curves() {
    for (spec, alg, hash) in [
        (
            KeySpec::EccNistP256,
            SigningAlgorithm::EcdsaSha256,
            Hash::Sha256,
        ),
        (
            KeySpec::EccNistP384,
            SigningAlgorithm::EcdsaSha384,
            Hash::Sha384,
        ),
    ] {
        let sk = generate_private_key(spec).unwrap();
        let pk = public_key_der(spec, &sk).unwrap();
        let sig = sign(spec, &sk, alg, b"hello", MessageType::Raw).unwrap();
        assert_eq!(sig[0], 0x30, "DER SEQUENCE");
        assert!(verify(spec, &pk, alg, b"hello", MessageType::Raw, &sig).unwrap());
        assert!(!verify(spec, &pk, alg, b"hellO", MessageType::Raw, &sig).unwrap());
        // A RAW signature is a signature over the digest.
        let d = hash.digest(b"hello");
        assert!(verify(spec, &pk, alg, &d, MessageType::Digest, &sig).unwrap());
        let sig2 = sign(spec, &sk, alg, &d, MessageType::Digest).unwrap();
        assert!(verify(spec, &pk, alg, b"hello", MessageType::Raw, &sig2).unwrap());
        assert!(!verify(spec, &pk, alg, b"hello", MessageType::Raw, b"garbage").unwrap());
        assert!(matches!(
            sign(spec, &sk, alg, &d[1..], MessageType::Digest),
            Err(AsymError::BadDigestLen { .. })
        ));
    }
}

#[test]
fn wrong_algorithm_for_the_curve_is_refused() {
    let sk = generate_private_key(KeySpec::EccNistP256).unwrap();
    assert!(matches!(
        sign(
            KeySpec::EccNistP256,
            &sk,
            SigningAlgorithm::EcdsaSha384,
            b"m",
            MessageType::Raw
        ),
        Err(AsymError::WrongAlgorithm { .. })
    ));
    assert!(matches!(
        sign(
            KeySpec::EccNistP256,
            &sk,
            SigningAlgorithm::RsassaPssSha256,
            b"m",
            MessageType::Raw
        ),
        Err(AsymError::WrongAlgorithm { .. })
    ));
    assert_eq!(
        public_key_der(KeySpec::EccNistP384, &sk),
        Err(AsymError::BadPrivateKey(KeySpec::EccNistP384))
    );
    assert_eq!(
        generate_private_key(KeySpec::Sm2),
        Err(AsymError::UnsupportedKeySpec(KeySpec::Sm2))
    );
}

#[test]
fn rsa_oaep_round_trip_limits_and_tamper() {
    let spec = KeySpec::Rsa2048;
    let sk = rsa_2048();
    let pk = public_key_der(spec, sk).unwrap();
    for alg in [
        EncryptionAlgorithm::RsaesOaepSha1,
        EncryptionAlgorithm::RsaesOaepSha256,
    ] {
        let max = rsa_max_plaintext(spec, alg).unwrap();
        assert_eq!(
            max,
            if alg == EncryptionAlgorithm::RsaesOaepSha1 {
                214
            } else {
                190
            }
        );
        let msg = vec![7u8; max];
        let ct = rsa_encrypt(spec, &pk, alg, &msg).unwrap();
        assert_eq!(ct.len(), 256);
        assert_eq!(rsa_decrypt(spec, sk, alg, &ct).unwrap().expose(), &msg[..]);
        let mut bad = ct.clone();
        bad[10] ^= 1;
        assert_eq!(
            rsa_decrypt(spec, sk, alg, &bad),
            Err(AsymError::DecryptFailed(alg))
        );
        assert!(matches!(
            rsa_encrypt(spec, &pk, alg, &vec![0; max + 1]),
            Err(AsymError::PlaintextTooLong { .. })
        ));
    }
    let ct = rsa_encrypt(spec, &pk, EncryptionAlgorithm::RsaesOaepSha1, b"x").unwrap();
    assert!(rsa_decrypt(spec, sk, EncryptionAlgorithm::RsaesOaepSha256, &ct).is_err());
    assert_eq!(
        rsa_max_plaintext(KeySpec::Rsa4096, EncryptionAlgorithm::RsaesOaepSha256),
        Some(446)
    );
}

#[test]
fn rsa_signatures_round_trip_for_every_algorithm() {
    let spec = KeySpec::Rsa2048;
    let sk = rsa_2048();
    let pk = public_key_der(spec, sk).unwrap();
    for &alg in signing_algorithms(spec, KeyUsage::SignVerify) {
        let sig = sign(spec, sk, alg, b"message", MessageType::Raw).unwrap();
        assert_eq!(sig.len(), 256, "{alg}");
        assert!(
            verify(spec, &pk, alg, b"message", MessageType::Raw, &sig).unwrap(),
            "{alg}"
        );
        assert!(
            !verify(spec, &pk, alg, b"massage", MessageType::Raw, &sig).unwrap(),
            "{alg}"
        );
    }
    assert!(matches!(
        public_key_der(KeySpec::Rsa3072, sk),
        Err(AsymError::BadPrivateKey(KeySpec::Rsa3072))
    ));
}

#[test]
fn tables_follow_aws() {
    assert_eq!(valid_usages(KeySpec::EccNistP256), &[KeyUsage::SignVerify]);
    assert!(valid_usages(KeySpec::EccSecgP256k1).is_empty());
    assert_eq!(hmac_key_len(KeySpec::Hmac384), Some(48));
    let (enc, sig, mac) = algorithms_for(KeySpec::Rsa3072, KeyUsage::EncryptDecrypt);
    assert_eq!(enc, vec!["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]);
    assert!(sig.is_empty() && mac.is_empty());
    let (_, _, mac) = algorithms_for(KeySpec::Hmac256, KeyUsage::GenerateVerifyMac);
    assert_eq!(mac, vec!["HMAC_SHA_256"]);
}

/// An independent implementation must accept our signatures and public key
/// encoding: OpenSSL verifies an ECDSA P-256 signature over SHA-256.
#[test]
fn openssl_verifies_our_ecdsa_signature() {
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED openssl_verifies_our_ecdsa_signature: no openssl binary");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spec = KeySpec::EccNistP256;
    let sk = generate_private_key(spec).unwrap();
    let pk = public_key_der(spec, &sk).unwrap();
    let sig = sign(
        spec,
        &sk,
        SigningAlgorithm::EcdsaSha256,
        b"cryptvol",
        MessageType::Raw,
    )
    .unwrap();
    let (pk_path, sig_path, msg_path) = (
        dir.path().join("pk.der"),
        dir.path().join("sig"),
        dir.path().join("msg"),
    );
    std::fs::write(&pk_path, &pk).unwrap();
    std::fs::write(&sig_path, &sig).unwrap();
    std::fs::write(&msg_path, b"cryptvol").unwrap();
    let out = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-keyform", "DER", "-verify"])
        .arg(&pk_path)
        .arg("-signature")
        .arg(&sig_path)
        .arg(&msg_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
