//! AES-256-GCM sealing: KMS ciphertext blobs and key material at rest.
//!
//! A random 96-bit nonce per message is safe here: a single key seals far
//! fewer than 2^32 messages (NIST SP 800-38D, 8.3).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use super::secret::SecretBytes;

/// GCM nonce length in bytes.
pub const NONCE_LEN: usize = 12;
/// GCM tag length in bytes.
pub const TAG_LEN: usize = 16;
/// AES-256 key length in bytes.
pub const KEY_LEN: usize = 32;

/// Opening failed: wrong key, wrong AAD, or altered bytes. Deliberately says
/// nothing more, as GCM cannot tell those apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed: wrong key, wrong associated data, or altered ciphertext")]
pub struct OpenError;

/// Output of [`seal`]: nonce and ciphertext-with-tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the 16-byte tag.
    pub ciphertext: Vec<u8>,
}

fn cipher(key: &SecretBytes) -> Aes256Gcm {
    // A key of the wrong length is a programming error: every caller builds
    // keys of KEY_LEN bytes.
    Aes256Gcm::new_from_slice(key.expose()).expect("BUG: AES-256-GCM key must be 32 bytes")
}

/// Encrypts `plaintext` under `key`, binding `aad`, with a fresh random nonce.
pub fn seal(key: &SecretBytes, plaintext: &[u8], aad: &[u8]) -> Sealed {
    let mut nonce = [0u8; NONCE_LEN];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
    let ciphertext = cipher(key)
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("BUG: GCM encryption cannot fail for inputs under 64 GiB");
    Sealed { nonce, ciphertext }
}

/// Decrypts and authenticates; the plaintext comes back as a secret.
pub fn open(
    key: &SecretBytes,
    nonce: &[u8; NONCE_LEN],
    ciphertext: &[u8],
    aad: &[u8],
) -> Result<SecretBytes, OpenError> {
    cipher(key)
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map(SecretBytes::new)
        .map_err(|_| OpenError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_bit_flip_is_rejected() {
        let key = SecretBytes::random(KEY_LEN);
        let s = seal(&key, b"hello world", b"aad");
        assert_eq!(
            open(&key, &s.nonce, &s.ciphertext, b"aad")
                .unwrap()
                .expose(),
            b"hello world"
        );
        for i in 0..s.ciphertext.len() {
            let mut c = s.ciphertext.clone();
            c[i] ^= 1;
            assert_eq!(open(&key, &s.nonce, &c, b"aad"), Err(OpenError));
        }
        assert_eq!(open(&key, &s.nonce, &s.ciphertext, b"aae"), Err(OpenError));
        let other = SecretBytes::random(KEY_LEN);
        assert_eq!(
            open(&other, &s.nonce, &s.ciphertext, b"aad"),
            Err(OpenError)
        );
    }

    /// NIST GCM test vector (gcmEncryptExtIV256.rsp, Count 0 with 128-bit tag,
    /// empty plaintext and AAD).
    #[test]
    fn nist_vector_empty_message() {
        let key = SecretBytes::new(vec![0u8; 32]);
        let nonce = [0u8; 12];
        // AES-256-GCM, K=0, IV=0, P="", A="": T = 530f8afbc74536b9a963b4f1c4cb738b
        let tag = hex::decode("530f8afbc74536b9a963b4f1c4cb738b").unwrap();
        assert!(open(&key, &nonce, &tag, b"").unwrap().is_empty());
    }
}
