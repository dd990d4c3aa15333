//! cryptvol: EBS-style encrypted block volumes served over NBD.
//!
//! # Map of the crate
//!
//! ```text
//! cli ──▶ nbd ──▶ blockdev (trait) ◀── volume ──▶ kms (KeyService trait) ──▶ crypto
//!   └──────────────────────────────────▶ volume, kms
//! ```
//!
//! - [`crypto`]: AES-256-XTS sector cipher, AES-256-GCM sealing, secret types.
//! - [`kms`]: an AWS-KMS-like key service (embedded today): keys, aliases,
//!   data keys wrapped in self-describing blobs bound to an encryption context.
//! - [`volume`]: the volume file (two-copy checksummed header, encrypted
//!   sparse data area) and its [`blockdev::BlockDevice`] implementation.
//! - [`blockdev`]: the seam between the NBD server and what it serves.
//! - [`nbd`]: the NBD protocol and server (fixed newstyle, structured
//!   replies, block status, concurrent requests).
//! - [`fsutil`]: durable atomic file writes and private permissions.
//! - [`secmem`]: locked, never-dumped memory for keys; non-dumpable
//!   processes (the one module that calls libc for secrets).
//! - [`tlsconf`]: TLS server configurations from PEM files (NBD and KMS servers).
//! - [`cli`]: the `cryptvol` command line.
//!
//! # Threat model, in brief
//!
//! The volume file holds only ciphertext and a header whose data key is
//! wrapped by a KMS key; without the KMS a stolen file reveals nothing but
//! which sectors were ever written (see README). The serving process holds
//! the unwrapped data key in memory for as long as the volume is attached.

#![deny(unsafe_code)]
// Tests may unwrap: a panic there is a failed test, which is the point.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod blockdev;
pub mod cli;
pub mod crypto;
pub mod fsutil;
pub mod kms;
pub mod nbd;
pub mod progress;
pub mod secmem;
pub mod snapshot;
pub mod tlsconf;
pub mod volume;
