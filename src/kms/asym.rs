//! The pure cryptography of asymmetric and HMAC KMS keys: RSA (OAEP
//! encryption, PSS and PKCS #1 v1.5 signatures), ECDSA on NIST P-256/P-384,
//! and HMAC-SHA-2. No I/O, no key store: key material in, bytes out.
//!
//! Formats are the ones AWS KMS uses on the wire, so that anything AWS's
//! documentation says works with OpenSSL works here too:
//!
//! - private keys: PKCS #8 DER (what GenerateDataKeyPair returns and what
//!   the key store seals);
//! - public keys: X.509 SubjectPublicKeyInfo DER (GetPublicKey);
//! - ECDSA signatures: ASN.1 DER `Ecdsa-Sig-Value`; RSA signatures and
//!   ciphertexts: raw big-endian integers of the modulus length;
//! - RSA-PSS uses MGF1 with the message digest and a salt as long as the
//!   digest; RSAES-OAEP uses the same hash for OAEP and MGF1.
//!
//! `MessageType` `RAW` means "hash the message with the algorithm's hash";
//! `DIGEST` means the message already is that digest (its length is
//! checked).
//!
//! XXX: the `rsa` crate's private-key operations are not constant time
//! (RUSTSEC-2023-0071, the Marvin attack); blinding is used for every
//! private-key operation here, which is the mitigation it offers. Key
//! generation and signing with RSA are slow in debug builds of this crate
//! only because dependencies are optimized (see Cargo.toml) — tests keep
//! RSA to a minimum all the same.

use hmac::{Hmac, Mac};
use pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rand::rngs::OsRng;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};
use spki::{DecodePublicKey, EncodePublicKey};

use super::model::{aws_enum, KeySpec, KeyUsage};
use crate::crypto::SecretBytes;

aws_enum! {
    /// `EncryptionAlgorithmSpec`.
    EncryptionAlgorithm {
        SymmetricDefault = "SYMMETRIC_DEFAULT",
        RsaesOaepSha1 = "RSAES_OAEP_SHA_1",
        RsaesOaepSha256 = "RSAES_OAEP_SHA_256",
        Sm2Pke = "SM2PKE",
    }
}

aws_enum! {
    /// `SigningAlgorithmSpec`.
    SigningAlgorithm {
        RsassaPssSha256 = "RSASSA_PSS_SHA_256",
        RsassaPssSha384 = "RSASSA_PSS_SHA_384",
        RsassaPssSha512 = "RSASSA_PSS_SHA_512",
        RsassaPkcs1V15Sha256 = "RSASSA_PKCS1_V1_5_SHA_256",
        RsassaPkcs1V15Sha384 = "RSASSA_PKCS1_V1_5_SHA_384",
        RsassaPkcs1V15Sha512 = "RSASSA_PKCS1_V1_5_SHA_512",
        EcdsaSha256 = "ECDSA_SHA_256",
        EcdsaSha384 = "ECDSA_SHA_384",
        EcdsaSha512 = "ECDSA_SHA_512",
    }
}

aws_enum! {
    /// `MacAlgorithmSpec`.
    MacAlgorithm {
        HmacSha224 = "HMAC_SHA_224",
        HmacSha256 = "HMAC_SHA_256",
        HmacSha384 = "HMAC_SHA_384",
        HmacSha512 = "HMAC_SHA_512",
    }
}

aws_enum! {
    /// `MessageType` of Sign and Verify.
    MessageType {
        Raw = "RAW",
        Digest = "DIGEST",
    }
}

/// Why an asymmetric or HMAC operation failed. Never carries key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AsymError {
    #[error("key spec {0} is not supported by cryptvol's KMS")]
    UnsupportedKeySpec(KeySpec),
    #[error("the stored {0} private key cannot be parsed")]
    BadPrivateKey(KeySpec),
    #[error("the {0} public key cannot be parsed")]
    BadPublicKey(KeySpec),
    #[error("{alg} is not an algorithm for {spec} keys")]
    WrongAlgorithm { alg: &'static str, spec: KeySpec },
    #[error("plaintext is {len} bytes; {alg} with a {spec} key takes at most {max}")]
    PlaintextTooLong {
        len: usize,
        max: usize,
        alg: EncryptionAlgorithm,
        spec: KeySpec,
    },
    #[error("the ciphertext cannot be decrypted with this key and {0}")]
    DecryptFailed(EncryptionAlgorithm),
    #[error("the message is a {len}-byte digest, but {alg} takes a {want}-byte digest")]
    BadDigestLen {
        len: usize,
        want: usize,
        alg: SigningAlgorithm,
    },
    #[error("{0} failed")]
    Failed(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    fn digest(self, m: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(m).to_vec(),
            Hash::Sha384 => Sha384::digest(m).to_vec(),
            Hash::Sha512 => Sha512::digest(m).to_vec(),
        }
    }
}

impl SigningAlgorithm {
    fn hash(self) -> Hash {
        use SigningAlgorithm::*;
        match self {
            RsassaPssSha256 | RsassaPkcs1V15Sha256 | EcdsaSha256 => Hash::Sha256,
            RsassaPssSha384 | RsassaPkcs1V15Sha384 | EcdsaSha384 => Hash::Sha384,
            RsassaPssSha512 | RsassaPkcs1V15Sha512 | EcdsaSha512 => Hash::Sha512,
        }
    }
}

/// The key usages a key spec may be created with (AWS; unsupported specs
/// have none).
pub fn valid_usages(spec: KeySpec) -> &'static [KeyUsage] {
    use KeySpec::*;
    match spec {
        SymmetricDefault => &[KeyUsage::EncryptDecrypt],
        Hmac224 | Hmac256 | Hmac384 | Hmac512 => &[KeyUsage::GenerateVerifyMac],
        Rsa2048 | Rsa3072 | Rsa4096 => &[KeyUsage::EncryptDecrypt, KeyUsage::SignVerify],
        EccNistP256 | EccNistP384 => &[KeyUsage::SignVerify],
        EccNistP521 | EccSecgP256k1 | Sm2 => &[],
    }
}

/// True for the RSA and ECC specs (keys with a public key).
pub fn is_asymmetric(spec: KeySpec) -> bool {
    matches!(
        spec,
        KeySpec::Rsa2048
            | KeySpec::Rsa3072
            | KeySpec::Rsa4096
            | KeySpec::EccNistP256
            | KeySpec::EccNistP384
            | KeySpec::EccNistP521
            | KeySpec::EccSecgP256k1
            | KeySpec::Sm2
    )
}

/// Raw key length of an HMAC key spec.
pub fn hmac_key_len(spec: KeySpec) -> Option<usize> {
    match spec {
        KeySpec::Hmac224 => Some(28),
        KeySpec::Hmac256 => Some(32),
        KeySpec::Hmac384 => Some(48),
        KeySpec::Hmac512 => Some(64),
        _ => None,
    }
}

/// Encryption algorithms of a key (empty unless its usage is ENCRYPT_DECRYPT).
pub fn encryption_algorithms(spec: KeySpec, usage: KeyUsage) -> &'static [EncryptionAlgorithm] {
    if usage != KeyUsage::EncryptDecrypt {
        return &[];
    }
    match spec {
        KeySpec::SymmetricDefault => &[EncryptionAlgorithm::SymmetricDefault],
        KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => &[
            EncryptionAlgorithm::RsaesOaepSha1,
            EncryptionAlgorithm::RsaesOaepSha256,
        ],
        _ => &[],
    }
}

/// Signing algorithms of a key (empty unless its usage is SIGN_VERIFY).
pub fn signing_algorithms(spec: KeySpec, usage: KeyUsage) -> &'static [SigningAlgorithm] {
    use SigningAlgorithm::*;
    if usage != KeyUsage::SignVerify {
        return &[];
    }
    match spec {
        KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => &[
            RsassaPssSha256,
            RsassaPssSha384,
            RsassaPssSha512,
            RsassaPkcs1V15Sha256,
            RsassaPkcs1V15Sha384,
            RsassaPkcs1V15Sha512,
        ],
        KeySpec::EccNistP256 => &[EcdsaSha256],
        KeySpec::EccNistP384 => &[EcdsaSha384],
        _ => &[],
    }
}

/// MAC algorithms of a key (one per HMAC spec).
pub fn mac_algorithms(spec: KeySpec, usage: KeyUsage) -> &'static [MacAlgorithm] {
    if usage != KeyUsage::GenerateVerifyMac {
        return &[];
    }
    match spec {
        KeySpec::Hmac224 => &[MacAlgorithm::HmacSha224],
        KeySpec::Hmac256 => &[MacAlgorithm::HmacSha256],
        KeySpec::Hmac384 => &[MacAlgorithm::HmacSha384],
        KeySpec::Hmac512 => &[MacAlgorithm::HmacSha512],
        _ => &[],
    }
}

/// The three algorithm lists of `KeyMetadata`, as AWS spellings.
pub fn algorithms_for(
    spec: KeySpec,
    usage: KeyUsage,
) -> (Vec<&'static str>, Vec<&'static str>, Vec<&'static str>) {
    (
        encryption_algorithms(spec, usage)
            .iter()
            .map(|a| a.as_str())
            .collect(),
        signing_algorithms(spec, usage)
            .iter()
            .map(|a| a.as_str())
            .collect(),
        mac_algorithms(spec, usage)
            .iter()
            .map(|a| a.as_str())
            .collect(),
    )
}

fn rsa_bits(spec: KeySpec) -> Option<usize> {
    match spec {
        KeySpec::Rsa2048 => Some(2048),
        KeySpec::Rsa3072 => Some(3072),
        KeySpec::Rsa4096 => Some(4096),
        _ => None,
    }
}

/// Generates a private key of `spec`, as PKCS #8 DER.
pub fn generate_private_key(spec: KeySpec) -> Result<SecretBytes, AsymError> {
    let doc = match spec {
        KeySpec::EccNistP256 => p256::SecretKey::random(&mut OsRng).to_pkcs8_der(),
        KeySpec::EccNistP384 => p384::SecretKey::random(&mut OsRng).to_pkcs8_der(),
        _ => {
            let bits = rsa_bits(spec).ok_or(AsymError::UnsupportedKeySpec(spec))?;
            rsa::RsaPrivateKey::new(&mut OsRng, bits)
                .map_err(|_| AsymError::Failed("RSA key generation"))?
                .to_pkcs8_der()
        }
    }
    .map_err(|_| AsymError::Failed("PKCS #8 encoding"))?;
    Ok(SecretBytes::from_slice(doc.as_bytes()))
}

/// The SubjectPublicKeyInfo DER of a PKCS #8 private key of `spec`.
pub fn public_key_der(spec: KeySpec, private: &SecretBytes) -> Result<Vec<u8>, AsymError> {
    let bad = || AsymError::BadPrivateKey(spec);
    let der = match spec {
        KeySpec::EccNistP256 => p256::SecretKey::from_pkcs8_der(private.expose())
            .map_err(|_| bad())?
            .public_key()
            .to_public_key_der(),
        KeySpec::EccNistP384 => p384::SecretKey::from_pkcs8_der(private.expose())
            .map_err(|_| bad())?
            .public_key()
            .to_public_key_der(),
        _ => rsa_private(spec, private)?
            .to_public_key()
            .to_public_key_der(),
    }
    .map_err(|_| AsymError::Failed("public key encoding"))?;
    Ok(der.into_vec())
}

fn rsa_private(spec: KeySpec, private: &SecretBytes) -> Result<rsa::RsaPrivateKey, AsymError> {
    use rsa::traits::PublicKeyParts;
    let bits = rsa_bits(spec).ok_or(AsymError::UnsupportedKeySpec(spec))?;
    let key = rsa::RsaPrivateKey::from_pkcs8_der(private.expose())
        .map_err(|_| AsymError::BadPrivateKey(spec))?;
    if key.size() * 8 != bits {
        return Err(AsymError::BadPrivateKey(spec));
    }
    Ok(key)
}

fn rsa_public(spec: KeySpec, public_der: &[u8]) -> Result<rsa::RsaPublicKey, AsymError> {
    use rsa::traits::PublicKeyParts;
    let bits = rsa_bits(spec).ok_or(AsymError::UnsupportedKeySpec(spec))?;
    let key = rsa::RsaPublicKey::from_public_key_der(public_der)
        .map_err(|_| AsymError::BadPublicKey(spec))?;
    if key.size() * 8 != bits {
        return Err(AsymError::BadPublicKey(spec));
    }
    Ok(key)
}

/// Largest plaintext RSAES-OAEP takes with this key size and hash:
/// k − 2·hLen − 2 (RFC 8017 §7.1.1).
pub fn rsa_max_plaintext(spec: KeySpec, alg: EncryptionAlgorithm) -> Option<usize> {
    let k = rsa_bits(spec)? / 8;
    let h_len = match alg {
        EncryptionAlgorithm::RsaesOaepSha1 => 20,
        EncryptionAlgorithm::RsaesOaepSha256 => 32,
        _ => return None,
    };
    Some(k - 2 * h_len - 2)
}

fn oaep(alg: EncryptionAlgorithm, spec: KeySpec) -> Result<rsa::Oaep, AsymError> {
    match alg {
        EncryptionAlgorithm::RsaesOaepSha1 => Ok(rsa::Oaep::new::<sha1::Sha1>()),
        EncryptionAlgorithm::RsaesOaepSha256 => Ok(rsa::Oaep::new::<Sha256>()),
        _ => Err(AsymError::WrongAlgorithm {
            alg: alg.as_str(),
            spec,
        }),
    }
}

/// RSAES-OAEP encryption with the public key.
pub fn rsa_encrypt(
    spec: KeySpec,
    public_der: &[u8],
    alg: EncryptionAlgorithm,
    plaintext: &[u8],
) -> Result<Vec<u8>, AsymError> {
    let padding = oaep(alg, spec)?;
    let max = rsa_max_plaintext(spec, alg).ok_or(AsymError::UnsupportedKeySpec(spec))?;
    if plaintext.len() > max {
        return Err(AsymError::PlaintextTooLong {
            len: plaintext.len(),
            max,
            alg,
            spec,
        });
    }
    rsa_public(spec, public_der)?
        .encrypt(&mut OsRng, padding, plaintext)
        .map_err(|_| AsymError::Failed("RSA encryption"))
}

/// RSAES-OAEP decryption with the (blinded) private key.
pub fn rsa_decrypt(
    spec: KeySpec,
    private: &SecretBytes,
    alg: EncryptionAlgorithm,
    ciphertext: &[u8],
) -> Result<SecretBytes, AsymError> {
    let padding = oaep(alg, spec)?;
    rsa_private(spec, private)?
        .decrypt_blinded(&mut OsRng, padding, ciphertext)
        .map(SecretBytes::new)
        .map_err(|_| AsymError::DecryptFailed(alg))
}

fn check_signing_alg(spec: KeySpec, alg: SigningAlgorithm) -> Result<(), AsymError> {
    if signing_algorithms(spec, KeyUsage::SignVerify).contains(&alg) {
        Ok(())
    } else {
        Err(AsymError::WrongAlgorithm {
            alg: alg.as_str(),
            spec,
        })
    }
}

/// The digest Sign/Verify work on: the hash of a RAW message, or a DIGEST
/// message itself after its length is checked.
fn message_digest(
    alg: SigningAlgorithm,
    message: &[u8],
    message_type: MessageType,
) -> Result<Vec<u8>, AsymError> {
    let hash = alg.hash();
    match message_type {
        MessageType::Raw => Ok(hash.digest(message)),
        MessageType::Digest if message.len() == hash.len() => Ok(message.to_vec()),
        MessageType::Digest => Err(AsymError::BadDigestLen {
            len: message.len(),
            want: hash.len(),
            alg,
        }),
    }
}

fn rsa_sign_scheme(alg: SigningAlgorithm) -> Result<RsaScheme, AsymError> {
    use SigningAlgorithm::*;
    Ok(match alg {
        RsassaPssSha256 => RsaScheme::Pss(rsa::Pss::new::<Sha256>()),
        RsassaPssSha384 => RsaScheme::Pss(rsa::Pss::new::<Sha384>()),
        RsassaPssSha512 => RsaScheme::Pss(rsa::Pss::new::<Sha512>()),
        RsassaPkcs1V15Sha256 => RsaScheme::Pkcs1(rsa::Pkcs1v15Sign::new::<Sha256>()),
        RsassaPkcs1V15Sha384 => RsaScheme::Pkcs1(rsa::Pkcs1v15Sign::new::<Sha384>()),
        RsassaPkcs1V15Sha512 => RsaScheme::Pkcs1(rsa::Pkcs1v15Sign::new::<Sha512>()),
        EcdsaSha256 | EcdsaSha384 | EcdsaSha512 => return Err(AsymError::Failed("RSA signing")),
    })
}

enum RsaScheme {
    Pss(rsa::Pss),
    Pkcs1(rsa::Pkcs1v15Sign),
}

/// Signs `message` (RAW or DIGEST) with a PKCS #8 private key of `spec`.
pub fn sign(
    spec: KeySpec,
    private: &SecretBytes,
    alg: SigningAlgorithm,
    message: &[u8],
    message_type: MessageType,
) -> Result<Vec<u8>, AsymError> {
    use ecdsa::signature::hazmat::PrehashSigner;
    check_signing_alg(spec, alg)?;
    let digest = message_digest(alg, message, message_type)?;
    let bad = || AsymError::BadPrivateKey(spec);
    let failed = |_| AsymError::Failed("signing");
    match spec {
        KeySpec::EccNistP256 => {
            let sk = p256::SecretKey::from_pkcs8_der(private.expose()).map_err(|_| bad())?;
            let sig: p256::ecdsa::Signature = p256::ecdsa::SigningKey::from(sk)
                .sign_prehash(&digest)
                .map_err(failed)?;
            Ok(sig.to_der().as_bytes().to_vec())
        }
        KeySpec::EccNistP384 => {
            let sk = p384::SecretKey::from_pkcs8_der(private.expose()).map_err(|_| bad())?;
            let sig: p384::ecdsa::Signature = p384::ecdsa::SigningKey::from(sk)
                .sign_prehash(&digest)
                .map_err(failed)?;
            Ok(sig.to_der().as_bytes().to_vec())
        }
        _ => {
            let key = rsa_private(spec, private)?;
            match rsa_sign_scheme(alg)? {
                RsaScheme::Pss(p) => key.sign_with_rng(&mut OsRng, p, &digest),
                RsaScheme::Pkcs1(p) => key.sign_with_rng(&mut OsRng, p, &digest),
            }
            .map_err(|_| AsymError::Failed("RSA signing"))
        }
    }
}

/// Verifies a signature made by [`sign`] (or by any standard implementation)
/// with the SPKI DER public key. `Ok(false)`: well-formed request, wrong
/// signature.
pub fn verify(
    spec: KeySpec,
    public_der: &[u8],
    alg: SigningAlgorithm,
    message: &[u8],
    message_type: MessageType,
    signature: &[u8],
) -> Result<bool, AsymError> {
    use ecdsa::signature::hazmat::PrehashVerifier;
    check_signing_alg(spec, alg)?;
    let digest = message_digest(alg, message, message_type)?;
    let bad = || AsymError::BadPublicKey(spec);
    Ok(match spec {
        KeySpec::EccNistP256 => {
            let vk =
                p256::ecdsa::VerifyingKey::from_public_key_der(public_der).map_err(|_| bad())?;
            p256::ecdsa::Signature::from_der(signature)
                .is_ok_and(|sig| vk.verify_prehash(&digest, &sig).is_ok())
        }
        KeySpec::EccNistP384 => {
            let vk =
                p384::ecdsa::VerifyingKey::from_public_key_der(public_der).map_err(|_| bad())?;
            p384::ecdsa::Signature::from_der(signature)
                .is_ok_and(|sig| vk.verify_prehash(&digest, &sig).is_ok())
        }
        _ => {
            let key = rsa_public(spec, public_der)?;
            match rsa_sign_scheme(alg)? {
                RsaScheme::Pss(p) => key.verify(p, &digest, signature).is_ok(),
                RsaScheme::Pkcs1(p) => key.verify(p, &digest, signature).is_ok(),
            }
        }
    })
}

fn mac_of<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> M {
    let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key)
        .expect("BUG: HMAC accepts keys of any length");
    m.update(message);
    m
}

/// HMAC of `message` under `key`.
pub fn hmac(alg: MacAlgorithm, key: &SecretBytes, message: &[u8]) -> Vec<u8> {
    let k = key.expose();
    match alg {
        MacAlgorithm::HmacSha224 => mac_of::<Hmac<Sha224>>(k, message)
            .finalize()
            .into_bytes()
            .to_vec(),
        MacAlgorithm::HmacSha256 => mac_of::<Hmac<Sha256>>(k, message)
            .finalize()
            .into_bytes()
            .to_vec(),
        MacAlgorithm::HmacSha384 => mac_of::<Hmac<Sha384>>(k, message)
            .finalize()
            .into_bytes()
            .to_vec(),
        MacAlgorithm::HmacSha512 => mac_of::<Hmac<Sha512>>(k, message)
            .finalize()
            .into_bytes()
            .to_vec(),
    }
}

/// Checks an HMAC in constant time.
pub fn hmac_verify(alg: MacAlgorithm, key: &SecretBytes, message: &[u8], mac: &[u8]) -> bool {
    let k = key.expose();
    match alg {
        MacAlgorithm::HmacSha224 => mac_of::<Hmac<Sha224>>(k, message).verify_slice(mac),
        MacAlgorithm::HmacSha256 => mac_of::<Hmac<Sha256>>(k, message).verify_slice(mac),
        MacAlgorithm::HmacSha384 => mac_of::<Hmac<Sha384>>(k, message).verify_slice(mac),
        MacAlgorithm::HmacSha512 => mac_of::<Hmac<Sha512>>(k, message).verify_slice(mac),
    }
    .is_ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
