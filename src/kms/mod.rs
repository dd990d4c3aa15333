//! The key management service: an AWS-KMS-like service whose keys wrap the
//! volume data keys.
//!
//! Why an AWS look-alike: users and tools already know AWS KMS (`aws kms
//! …`, boto3, the envelope-encryption pattern), and the EBS behaviours
//! cryptvol copies (default `alias/aws/ebs` key, encryption context
//! `aws:ebs:id`, re-encrypting copies) are defined in its terms. So the
//! operations, names, limits and exception types are AWS's; the storage
//! is a directory.
//!
//! # Map of the module
//!
//! ```text
//! service   KeyService trait + AWS-shaped request/response types  ◀── volume, cli, (HTTP API)
//! local     LocalKms: the embedded KeyService (resolve → authorize → act)
//!   ├─ keystore   keys.json per region: load/verify, locked atomic update, sealing
//!   │    ├─ model     KeyRecord, MaterialVersion, AliasRecord, AWS enums
//!   │    └─ rootkey   root key file (0600, CRYPTVOL_ROOT_KEY_FILE), HKDF subkeys
//!   ├─ account    12-digit account id of the data dir
//!   ├─ blob       ciphertext blob format (sans-I/O)
//!   ├─ context    canonical encryption-context encoding, CLI syntax
//!   └─ arn        key ids, ARNs, alias names, regions
//! error     KmsError: one variant per AWS exception
//! ```
//!
//! On disk, in the data dir:
//!
//! ```text
//! <data_dir>/root.key                         32 random bytes, 0600 (unless CRYPTVOL_ROOT_KEY_FILE)
//! <data_dir>/account.json                     {"AccountId": "123456789012", …}
//! <data_dir>/regions/<region>/kms/keys.json   keys, sealed material, aliases; HMAC-authenticated
//! <data_dir>/regions/<region>/kms/keys.lock   flock target for writers
//! ```
//!
//! # What this minimum does not do yet
//!
//! Key policies and grants (every principal of the account is allowed),
//! key states other than Enabled reachable through the API, rotation,
//! Encrypt/ReEncrypt, asymmetric and HMAC keys, the audit log, and the
//! remote (HTTP) client. The types above already carry what those need:
//! versioned material, AWS key states, a caller on every call.

pub mod account;
pub mod arn;
pub mod asym;
pub mod blob;
pub mod context;
pub mod error;
pub mod keystore;
pub mod local;
pub mod model;
pub mod rootkey;
pub mod service;

pub use context::{canonical_encoding, parse_cli as parse_encryption_context};
pub use error::KmsError;
pub use local::LocalKms;
pub use service::{
    AliasListEntry, Caller, CreateKeyRequest, DecryptResponse, EncryptionContext,
    GenerateDataKeyResponse, KeyMetadata, KeyService,
};

/// Seconds since the Unix epoch (AWS timestamps are epoch seconds). A clock
/// before 1970 reads as 0 rather than failing.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
pub mod audit;
pub mod grant_eval;
pub mod policy_eval;
