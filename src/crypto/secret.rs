//! Secret byte buffers: zeroized on drop, never printed, never swapped or
//! dumped.
//!
//! Every data key and every piece of key material in cryptvol lives in one of
//! these types. `Debug` prints `[redacted]` so a stray `{:?}` in a log line or
//! an error cannot leak key bytes. The bytes sit on pages of their own,
//! locked out of swap and excluded from core dumps ([`crate::secmem`]).

use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::secmem::{Locked, LockedBytes};

/// A variable-length secret (KMS plaintext, key material, derived keys).
#[derive(Clone)]
pub struct SecretBytes(LockedBytes);

impl SecretBytes {
    /// Moves `bytes` into locked memory and zeroizes the caller's vector
    /// (its spare capacity included).
    pub fn new(mut bytes: Vec<u8>) -> Self {
        let s = SecretBytes(LockedBytes::copy_of(&bytes));
        bytes.zeroize();
        s
    }

    /// Copies `bytes` into a new secret. The caller remains responsible for
    /// zeroizing its own copy.
    pub fn from_slice(bytes: &[u8]) -> Self {
        SecretBytes(LockedBytes::copy_of(bytes))
    }

    /// `len` bytes from the operating system's CSPRNG, generated in place.
    pub fn random(len: usize) -> Self {
        let mut b = LockedBytes::zeroed(len);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, b.as_mut_slice());
        SecretBytes(b)
    }

    /// `len` zero bytes, to be filled in place through [`Self::expose_mut`]
    /// (so the secret never exists outside locked memory).
    pub fn zeroed(len: usize) -> Self {
        SecretBytes(LockedBytes::zeroed(len))
    }

    pub fn expose(&self) -> &[u8] {
        self.0.as_slice()
    }

    pub fn expose_mut(&mut self) -> &mut [u8] {
        self.0.as_mut_slice()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Default for SecretBytes {
    fn default() -> Self {
        SecretBytes(LockedBytes::zeroed(0))
    }
}

impl PartialEq for SecretBytes {
    /// Constant-time in the contents (lengths are not secret).
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.expose(), other.expose());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl Eq for SecretBytes {}

impl Zeroize for SecretBytes {
    fn zeroize(&mut self) {
        self.0.as_mut_slice().zeroize();
    }
}

/// The locked pages are zeroized when they are unmapped.
impl ZeroizeOnDrop for SecretBytes {}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([redacted; {} bytes])", self.0.len())
    }
}

/// Length of a volume data key: two AES-256 keys for XTS (data key, tweak key).
pub const DATA_KEY_LEN: usize = 64;

/// A 64-byte AES-256-XTS data key (DEK), in locked memory.
#[derive(Clone)]
pub struct DataKey(Locked<[u8; DATA_KEY_LEN]>);

impl DataKey {
    pub fn random() -> Self {
        let mut k = Locked::new([0u8; DATA_KEY_LEN]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut k[..]);
        DataKey(k)
    }

    /// Builds a data key from a KMS plaintext; `None` unless it is exactly
    /// [`DATA_KEY_LEN`] bytes.
    pub fn from_secret(s: &SecretBytes) -> Option<Self> {
        if s.len() != DATA_KEY_LEN {
            return None;
        }
        let mut k = Locked::new([0u8; DATA_KEY_LEN]);
        k.copy_from_slice(s.expose());
        Some(DataKey(k))
    }

    pub fn expose(&self) -> &[u8; DATA_KEY_LEN] {
        &self.0
    }
}

/// The locked pages are zeroized when they are unmapped.
impl ZeroizeOnDrop for DataKey {}

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
    fn secrets_live_on_locked_pages_left_out_of_core_dumps() {
        use crate::secmem::tests::assert_protected;
        let s = SecretBytes::random(32);
        assert_protected(s.expose().as_ptr() as usize, "SecretBytes");
        let c = SecretBytes::new(vec![5; 48]);
        assert_protected(c.expose().as_ptr() as usize, "SecretBytes::new");
        assert_eq!(c.expose(), &[5; 48][..]);
        let k = DataKey::random();
        assert_protected(k.expose().as_ptr() as usize, "DataKey");
        let k2 = DataKey::from_secret(&SecretBytes::random(64)).unwrap();
        assert_protected(k2.expose().as_ptr() as usize, "DataKey::from_secret");
    }

    #[test]
    fn equality_compares_contents() {
        assert_eq!(
            SecretBytes::from_slice(b"ab"),
            SecretBytes::from_slice(b"ab")
        );
        assert_ne!(
            SecretBytes::from_slice(b"ab"),
            SecretBytes::from_slice(b"ac")
        );
        assert_ne!(
            SecretBytes::from_slice(b"ab"),
            SecretBytes::from_slice(b"abc")
        );
        assert_eq!(SecretBytes::default(), SecretBytes::from_slice(b""));
    }

    #[test]
    fn data_key_requires_exactly_64_bytes() {
        assert!(DataKey::from_secret(&SecretBytes::new(vec![1; 32])).is_none());
        assert!(DataKey::from_secret(&SecretBytes::new(vec![1; 64])).is_some());
    }
}
