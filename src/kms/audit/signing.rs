//! The audit signing key: an Ed25519 key held by the KMS that signs digest
//! records, and its public half, published beside the log.
//!
//! Why Ed25519 derived from the root key: the signing key must be as hard
//! to get as the keys the log is about, and must not need a second secret
//! file; deriving its 32-byte seed from the root key (HKDF, purpose
//! `cryptvol/kms/audit-signing/v1/<region>`) gives one independent key per
//! region, recreated identically whenever the KMS opens. Ed25519 public
//! keys are tiny and every toolkit verifies them (`openssl pkeyutl -verify
//! -rawin`), so a third party needs only the public key file.
//!
//! The public key is stored as a standard SubjectPublicKeyInfo PEM
//! (RFC 8410): the 12-byte DER prefix below followed by the 32 key bytes.

use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use zeroize::Zeroizing;

use super::verify::AuditError;
use crate::fsutil;
use crate::kms::rootkey::RootKey;

/// DER of `SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING (33 bytes) }`
/// up to the key bytes (RFC 8410 §4).
const SPKI_ED25519_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
const PEM_BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
const PEM_END: &str = "-----END PUBLIC KEY-----";

/// The KMS's audit signing key for one region. `Debug` shows the public
/// key only; the secret half is zeroized on drop.
pub struct AuditSigningKey {
    key: SigningKey,
}

impl AuditSigningKey {
    /// The signing key of `region`, derived from the root key.
    pub fn from_root_key(root: &RootKey, region: &str) -> AuditSigningKey {
        let purpose = format!("cryptvol/kms/audit-signing/v1/{region}");
        AuditSigningKey::from_seed(root.derive(purpose.as_bytes()).expose())
    }

    /// A key from a 32-byte seed (tests, or a caller with its own secret).
    /// Only the first 32 bytes are used; a shorter seed is zero-padded.
    pub fn from_seed(seed: &[u8]) -> AuditSigningKey {
        let mut bytes = Zeroizing::new([0u8; 32]);
        for (d, s) in bytes.iter_mut().zip(seed) {
            *d = *s;
        }
        AuditSigningKey {
            key: SigningKey::from_bytes(&bytes),
        }
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Hex Ed25519 signature of `message`.
    pub(crate) fn sign_hex(&self, message: &[u8]) -> String {
        hex::encode(self.key.sign(message).to_bytes())
    }
}

impl fmt::Debug for AuditSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AuditSigningKey {{ public: {}, secret: [redacted] }}",
            hex::encode(self.verifying_key().as_bytes())
        )
    }
}

/// Checks a hex signature over `message`; `Err` says why it fails.
pub(crate) fn verify_hex(
    key: &VerifyingKey,
    message: &[u8],
    signature_hex: &str,
) -> Result<(), String> {
    let raw = hex::decode(signature_hex).map_err(|e| format!("signature is not hex: {e}"))?;
    let sig = Signature::from_slice(&raw)
        .map_err(|_| format!("signature is {} bytes, not 64", raw.len()))?;
    key.verify(message, &sig)
        .map_err(|_| "the signature does not verify under the audit public key".to_owned())
}

/// The public key as an SPKI PEM document (with trailing newline).
pub fn public_key_pem(key: &VerifyingKey) -> String {
    let mut der = SPKI_ED25519_PREFIX.to_vec();
    der.extend_from_slice(key.as_bytes());
    format!("{PEM_BEGIN}\n{}\n{PEM_END}\n", STANDARD.encode(der))
}

/// Parses an Ed25519 public key: SPKI PEM (as written by
/// [`public_key_pem`] or `openssl pkey -pubout`) or 64 hex digits.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let text = text.trim();
    let raw: Vec<u8> = if let Some(rest) = text.strip_prefix(PEM_BEGIN) {
        let b64 = rest
            .strip_suffix(PEM_END)
            .ok_or("the PEM document has no END PUBLIC KEY line")?;
        let b64: String = b64.split_whitespace().collect();
        let der = STANDARD
            .decode(b64)
            .map_err(|e| format!("the PEM body is not base64: {e}"))?;
        der.strip_prefix(&SPKI_ED25519_PREFIX[..])
            .ok_or("the PEM document is not an Ed25519 public key")?
            .to_vec()
    } else {
        hex::decode(text).map_err(|_| "neither a PEM public key nor 64 hex digits".to_owned())?
    };
    let bytes: [u8; 32] = raw
        .as_slice()
        .try_into()
        .map_err(|_| format!("an Ed25519 public key is 32 bytes, found {}", raw.len()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "not a valid Ed25519 point".to_owned())
}

/// Reads a public key file (see [`parse_public_key`]).
pub fn load_public_key(path: &Path) -> Result<VerifyingKey, AuditError> {
    let bytes = fsutil::read(path)?;
    let text = String::from_utf8_lossy(&bytes);
    parse_public_key(&text).map_err(|reason| AuditError::PublicKey {
        path: path.to_path_buf(),
        reason,
    })
}
