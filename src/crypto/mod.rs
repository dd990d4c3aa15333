//! Cryptographic primitives, each behind a small, hard-to-misuse API.
//!
//! - [`xts`]: AES-256-XTS sector cipher (dm-crypt `aes-xts-plain64`), batched.
//! - [`aead`]: AES-256-GCM for KMS blobs and key material sealed at rest.
//! - [`secret`]: zeroizing, never-printed containers for keys.
//!
//! Nothing here does I/O or knows about volumes or KMS keys.

pub mod aead;
pub mod kdf;
pub mod secret;
pub mod xts;
#[cfg(target_arch = "x86_64")]
mod xts_x86;

pub use secret::{DataKey, SecretBytes, DATA_KEY_LEN};
