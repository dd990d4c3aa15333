//! One audit record: its fields, the line it is stored as, the hash that
//! chains it, and the redaction that keeps secrets out of it.
//!
//! # Line format
//!
//! A record is one line of compact JSON whose last member is `"hash"`:
//!
//! ```text
//! {"sequence":7,"eventTime":"…",…,"prevHash":"<64 hex>","hash":"<64 hex>"}\n
//! └──────────────────────── body ────────────────────────┘
//! ```
//!
//! `hash` = hex SHA-256 of the *body*: the line's bytes with the final
//! `,"hash":"<64 hex>"` member removed (so the body ends `…"prevHash":"…"}`).
//! The verifier recomputes it from the stored bytes, never from a
//! re-serialization, so JSON number or escape spellings cannot make a valid
//! record look altered (or the reverse). `prevHash` is the previous record's
//! `hash` (64 zeros for the first record), which chains every record to all
//! before it.
//!
//! # What a record never holds
//!
//! Like CloudTrail's KMS events, `requestParameters` keep only parameters
//! known to be non-secret (key ids, contexts, specs, algorithms, grant
//! fields, policy, tags, …): plaintext, ciphertext blobs, messages,
//! signatures, MACs and imported key material are dropped, and so is any
//! parameter this code does not know. Grant tokens are cut to a short
//! prefix.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::kms::error::KmsError;
use crate::kms::service::Caller;

/// `prevHash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The principal named as caller of records the KMS writes on its own
/// (digests, repairs, automatic rotation), as CloudTrail names the service.
pub const KMS_SERVICE_PRINCIPAL: &str = "kms.amazonaws.com";
/// `outcome` of a call that succeeded.
pub const OUTCOME_SUCCESS: &str = "success";
/// `eventName` of digest records.
pub const DIGEST_EVENT_NAME: &str = "AuditDigest";
/// `eventName` of the record written after a torn last line was removed.
pub const REPAIR_EVENT_NAME: &str = "AuditLogRepaired";
/// Characters of a grant token kept in a record (CloudTrail-style
/// truncation: enough to tell tokens apart, not enough to use one).
pub const GRANT_TOKEN_PREFIX_CHARS: usize = 12;

/// What produced a record (CloudTrail's `eventType`, plus digests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    /// A KMS API call by a principal.
    AwsApiCall,
    /// Something the KMS did on its own (rotation, deletion, repair).
    AwsServiceEvent,
    /// A signed digest of the chain so far.
    Digest,
}

/// The signature part of a digest record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DigestInfo {
    /// The last record it covers: always `sequence - 1`, whose hash (this
    /// record's `prevHash`) chains every record before it, so one signature
    /// covers the whole log up to here.
    pub last_sequence: u64,
    /// Hex Ed25519 signature over [`digest_message`].
    pub signature: String,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// 1 for the first record, then +1 per record.
    pub sequence: u64,
    /// RFC 3339, UTC, seconds (as CloudTrail).
    pub event_time: String,
    /// A random UUID.
    #[serde(rename = "eventID")]
    pub event_id: String,
    pub event_type: EventType,
    /// The KMS operation (`Encrypt`, `CreateKey`, …), or [`DIGEST_EVENT_NAME`].
    pub event_name: String,
    #[serde(rename = "awsRegion")]
    pub region: String,
    /// Principal ARN of the caller, or [`KMS_SERVICE_PRINCIPAL`].
    pub caller: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_context: Option<BTreeMap<String, String>>,
    /// The request without secrets (see the module doc).
    pub request_parameters: Value,
    /// [`OUTCOME_SUCCESS`] or the AWS error code (`__type`).
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<DigestInfo>,
    pub prev_hash: String,
    /// Must stay the last field: the line format depends on it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
}

/// Length of `,"hash":"` + 64 hex digits + `"}`.
const HASH_SUFFIX_LEN: usize = 9 + 64 + 2;

impl AuditRecord {
    /// Fills in `hash` and returns the record's line (with its newline).
    pub(crate) fn seal_line(&mut self) -> Result<String, KmsError> {
        self.hash.clear();
        let body = serde_json::to_string(self)
            .map_err(|e| KmsError::Internal(format!("BUG: cannot serialize audit record: {e}")))?;
        self.hash = hex::encode(Sha256::digest(body.as_bytes()));
        let mut line = serde_json::to_string(self)
            .map_err(|e| KmsError::Internal(format!("BUG: cannot serialize audit record: {e}")))?;
        line.push('\n');
        Ok(line)
    }

    /// True for digest records.
    pub fn is_digest(&self) -> bool {
        self.event_type == EventType::Digest
    }
}

/// Splits a stored line (without its newline) into the hash it claims and
/// the hash its body really has: `(stored, computed)`. `None` if the line
/// does not end in a well-formed `"hash"` member.
pub(crate) fn line_hashes(line: &[u8]) -> Option<(String, String)> {
    let split = line.len().checked_sub(HASH_SUFFIX_LEN)?;
    let (head, suffix) = line.split_at(split);
    let hex_part = suffix.strip_prefix(b",\"hash\":\"")?.strip_suffix(b"\"}")?;
    if hex_part.len() != 64
        || !hex_part
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    let mut hasher = Sha256::new();
    hasher.update(head);
    hasher.update(b"}");
    let stored = String::from_utf8_lossy(hex_part).into_owned();
    Some((stored, hex::encode(hasher.finalize())))
}

/// The bytes a digest signature covers, one field per line so a third
/// party can rebuild them with `printf`:
/// `cryptvol-audit-digest-v1\n<region>\n<sequence>\n<eventTime>\n<prevHash>\n`.
pub fn digest_message(region: &str, sequence: u64, event_time: &str, prev_hash: &str) -> Vec<u8> {
    format!("cryptvol-audit-digest-v1\n{region}\n{sequence}\n{event_time}\n{prev_hash}\n")
        .into_bytes()
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure { code: String, message: String },
}

/// What the KMS hands the log for one event; the log adds sequence, time,
/// id and hashes. Built only through the constructors, which drop secrets
/// from the request at once, so an entry is safe to keep or print.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub(crate) event_type: EventType,
    pub(crate) event_name: String,
    pub(crate) caller: String,
    pub(crate) key_arn: Option<String>,
    pub(crate) encryption_context: Option<BTreeMap<String, String>>,
    pub(crate) request_parameters: Value,
    pub(crate) outcome: Outcome,
}

impl AuditEntry {
    /// A successful API call `operation` by `caller` with the AWS JSON
    /// `request` (secrets are dropped here). The encryption context is
    /// taken from the request's `EncryptionContext`, if any.
    pub fn api_call(caller: &Caller, operation: &str, request: &Value) -> AuditEntry {
        AuditEntry {
            event_type: EventType::AwsApiCall,
            event_name: operation.to_owned(),
            caller: caller.principal_arn.clone(),
            key_arn: None,
            encryption_context: context_of(request),
            request_parameters: redact_request(request),
            outcome: Outcome::Success,
        }
    }

    /// Something the KMS did by itself (automatic rotation, deletion at the
    /// end of the waiting period, …) to `key_arn`.
    pub fn service_event(event_name: &str, key_arn: Option<&str>) -> AuditEntry {
        AuditEntry {
            event_type: EventType::AwsServiceEvent,
            event_name: event_name.to_owned(),
            caller: KMS_SERVICE_PRINCIPAL.to_owned(),
            key_arn: key_arn.map(str::to_owned),
            encryption_context: None,
            request_parameters: Value::Object(Map::new()),
            outcome: Outcome::Success,
        }
    }

    /// The ARN of the key the call acted on.
    pub fn with_key_arn(mut self, key_arn: impl Into<String>) -> AuditEntry {
        self.key_arn = Some(key_arn.into());
        self
    }

    /// Overrides the encryption context taken from the request.
    pub fn with_encryption_context(mut self, ctx: BTreeMap<String, String>) -> AuditEntry {
        self.encryption_context = Some(ctx);
        self
    }

    /// Marks the call as failed with `error` (its `__type` and message;
    /// KMS messages never hold secrets).
    pub fn failed(mut self, error: &KmsError) -> AuditEntry {
        self.outcome = Outcome::Failure {
            code: error.aws_type().to_owned(),
            message: error.to_string(),
        };
        self
    }

    /// Records the outcome of `result`: success, or its error.
    pub fn with_result<T>(self, result: &Result<T, KmsError>) -> AuditEntry {
        match result {
            Ok(_) => self,
            Err(e) => self.failed(e),
        }
    }

    /// The record written after the log removed a torn last line.
    pub(crate) fn repair(truncated_bytes: u64) -> AuditEntry {
        let mut e = AuditEntry::service_event(REPAIR_EVENT_NAME, None);
        e.request_parameters = serde_json::json!({
            "truncatedBytes": truncated_bytes,
            "reason": "the last line was incomplete (a crash during an append); it was removed",
        });
        e
    }
}

/// Request parameters that are never secret, as AWS KMS names them.
/// Everything else is dropped (fail safe).
const KEPT_PARAMETERS: &[&str] = &[
    "AliasName",
    "BypassPolicyLockoutSafetyCheck",
    "Constraints",
    "CustomKeyStoreId",
    "CustomerMasterKeySpec",
    "Description",
    "DestinationEncryptionAlgorithm",
    "DestinationEncryptionContext",
    "DestinationKeyId",
    "DryRun",
    "EncryptionAlgorithm",
    "EncryptionContext",
    "ExpirationModel",
    "GrantId",
    "GranteePrincipal",
    "KeyId",
    "KeyPairSpec",
    "KeySpec",
    "KeyUsage",
    "Limit",
    "MacAlgorithm",
    "Marker",
    "MessageType",
    "MultiRegion",
    "Name",
    "NumberOfBytes",
    "Operations",
    "Origin",
    "PendingWindowInDays",
    "Policy",
    "PolicyName",
    "ReplicaRegion",
    "RetiringPrincipal",
    "RotationPeriodInDays",
    "SigningAlgorithm",
    "SourceEncryptionAlgorithm",
    "SourceEncryptionContext",
    "SourceKeyId",
    "TagKeys",
    "Tags",
    "TargetKeyId",
    "ValidTo",
    "WrappingAlgorithm",
    "WrappingKeySpec",
];

/// Grant token parameters: kept, but cut to a prefix.
const TOKEN_PARAMETERS: &[&str] = &["GrantToken", "GrantTokens"];

/// The request without secrets: known non-secret parameters, grant tokens
/// shortened, everything else (Plaintext, CiphertextBlob, Message,
/// Signature, Mac, ImportToken, EncryptedKeyMaterial, unknown names)
/// dropped. A request that is not a JSON object becomes `{}`.
pub fn redact_request(request: &Value) -> Value {
    let mut out = Map::new();
    if let Value::Object(fields) = request {
        for (name, value) in fields {
            if KEPT_PARAMETERS.contains(&name.as_str()) {
                out.insert(name.clone(), value.clone());
            } else if TOKEN_PARAMETERS.contains(&name.as_str()) {
                out.insert(name.clone(), shorten_tokens(value));
            }
        }
    }
    Value::Object(out)
}

fn shorten_tokens(v: &Value) -> Value {
    match v {
        Value::String(s) => {
            let prefix: String = s.chars().take(GRANT_TOKEN_PREFIX_CHARS).collect();
            if prefix.len() < s.len() {
                Value::String(format!("{prefix}…"))
            } else {
                Value::String(prefix)
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(shorten_tokens).collect()),
        _ => Value::Null,
    }
}

/// The request's `EncryptionContext`, if it is an object of strings.
fn context_of(request: &Value) -> Option<BTreeMap<String, String>> {
    let obj = request.get("EncryptionContext")?.as_object()?;
    obj.iter()
        .map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
        .collect()
}
