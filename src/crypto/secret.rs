//! Secret byte buffers: zeroized on drop, never printed.
//!
//! Every data key and every piece of key material in cryptvol lives in one of
//! these types. `Debug` prints `[redacted]` so a stray `{:?}` in a log line or
//! an error cannot leak key bytes.
//!
//! XXX: the bytes are not yet locked out of swap (mlock) or excluded from core
//! dumps; the hardening issue adds that in one small `unsafe` module.

use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A variable-length secret (KMS plaintext, key material, derived keys).
#[derive(Clone, Default, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Takes ownership of `bytes`; the caller's vector is moved, not copied.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(bytes)
    }

    /// Copies `bytes` into a new secret. The caller remains responsible for
    /// zeroizing its own copy.
    pub fn from_slice(bytes: &[u8]) -> Self {
        SecretBytes(bytes.to_vec())
    }

    /// `len` bytes from the operating system's CSPRNG.
    pub fn random(len: usize) -> Self {
        let mut v = vec![0u8; len];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut v);
        SecretBytes(v)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([redacted; {} bytes])", self.0.len())
    }
}

/// Length of a volume data key: two AES-256 keys for XTS (data key, tweak key).
pub const DATA_KEY_LEN: usize = 64;

/// A 64-byte AES-256-XTS data key (DEK).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DataKey([u8; DATA_KEY_LEN]);

impl DataKey {
    pub fn random() -> Self {
        let mut k = [0u8; DATA_KEY_LEN];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut k);
        DataKey(k)
    }

    /// Builds a data key from a KMS plaintext; `None` unless it is exactly
    /// [`DATA_KEY_LEN`] bytes.
    pub fn from_secret(s: &SecretBytes) -> Option<Self> {
        let bytes: [u8; DATA_KEY_LEN] = s.expose().try_into().ok()?;
        Some(DataKey(bytes))
    }

    pub fn expose(&self) -> &[u8; DATA_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_key_bytes() {
        let s = SecretBytes::new(vec![0xAB; 32]);
        let d = format!("{s:?}");
        assert!(d.contains("redacted"));
        assert!(!d.to_lowercase().contains("ab, ") && !d.contains("171"));
        let k = DataKey::random();
        assert_eq!(format!("{k:?}"), "DataKey([redacted])");
    }

    #[test]
    fn data_key_requires_exactly_64_bytes() {
        assert!(DataKey::from_secret(&SecretBytes::new(vec![1; 32])).is_none());
        assert!(DataKey::from_secret(&SecretBytes::new(vec![1; 64])).is_some());
    }
}
