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
//! service   KeyService trait + AWS-shaped types           ◀── volume, snapshot, cli
//! local     LocalKms: one region's store + audit log; resolve, AWS managed keys, clock
//!   └─ ops        LocalKms::call(caller, "Operation", AWS JSON) → AWS JSON: ONE table,
//!                 one handler per operation, each authorize → act → audit
//!        ├─ keys, tags, aliases, crypto, asymmetric, rotation, import, policy,
//!        │  grants, multiregion          one file per operation group, tests beside it
//!        ├─ authorize   key policy (policy_eval) or grant (grant_eval); deny wins
//!        ├─ states      AWS key-state table: which states allow which operation
//!        └─ maintenance deletion after the window, material expiry, automatic rotation
//!   ├─ keystore   keys.json per region: load/verify, locked atomic update, sealing
//!   │    ├─ model     KeyRecord, MaterialVersion, GrantRecord, AWS enums
//!   │    └─ rootkey   root key file (0600, CRYPTVOL_ROOT_KEY_FILE), HKDF subkeys
//!   ├─ asym       RSA / ECDSA / HMAC primitives (pure)
//!   ├─ account    12-digit account id of the data dir
//!   ├─ blob       ciphertext blob format (sans-I/O)
//!   ├─ context    canonical encryption-context encoding, CLI syntax
//!   └─ arn        key ids, ARNs, alias names, regions
//! policy_eval, grant_eval   pure evaluation of key policies and grants
//! audit     hash-chained, signed per-region audit log
//! api, remote, iam          the HTTP service, its client, its principals
//! error     KmsError: one variant per AWS exception
//! ```
//!
//! On disk, in the data dir:
//!
//! ```text
//! <data_dir>/root.key                         32 random bytes, 0600 (unless CRYPTVOL_ROOT_KEY_FILE)
//! <data_dir>/account.json                     {"AccountId": "123456789012", …}
//! <data_dir>/regions/<region>/kms/keys.json   keys, sealed material, aliases, grants, policies;
//!                                             HMAC-authenticated
//! <data_dir>/regions/<region>/kms/keys.lock   flock target for writers
//! <data_dir>/regions/<region>/kms/audit.log   the audit log (see audit)
//! ```

pub mod account;
pub mod arn;
pub mod asym;
pub mod blob;
pub mod context;
pub mod error;
pub mod keystore;
pub mod local;
pub mod model;
pub mod ops;
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
pub mod api;
pub mod audit;
pub mod grant_eval;
pub mod iam;
pub mod policy_eval;
pub mod remote;
