//! Reading the audit log: checking the chain and the digest signatures
//! ([`verify`]), and filtering records ([`list`]).
//!
//! Verification needs only the log and the public key, so anyone can run
//! it. It walks the lines in order and stops at the first one that fails,
//! naming it by line number and sequence:
//!
//! | check | catches |
//! | --- | --- |
//! | line ends in a `"hash"` member, parses as a record | garbage, hand edits that broke the JSON |
//! | SHA-256 of the body equals `hash` | a field edited in place |
//! | `sequence` is the previous one + 1 | records deleted, inserted, reordered |
//! | `prevHash` equals the previous `hash` | a record replaced by one with a recomputed hash |
//! | digest: names the record before it, Ed25519 signature valid | a whole tail rewritten with recomputed hashes |
//!
//! What it cannot catch: records after the last digest can be removed from
//! the end, or rewritten by someone who recomputes their hashes, without a
//! trace — as with CloudTrail between digests. The report says how many
//! records are not yet covered by a signed digest.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use super::record::{digest_message, line_hashes, AuditRecord, DIGEST_EVENT_NAME, GENESIS_HASH};
use super::signing::verify_hex;
use crate::fsutil::{self, FsError};
use crate::kms::error::KmsError;

/// Reading or checking the audit log failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The log or key file could not be read.
    #[error(transparent)]
    Read(#[from] FsError),
    /// The first record that fails verification.
    #[error(
        "audit log {} is not intact: line {line}{}: {problem}",
        path.display(),
        sequence.map(|s| format!(" (record {s})")).unwrap_or_default()
    )]
    BadRecord {
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The record's own sequence number, if the line parsed that far.
        sequence: Option<u64>,
        problem: RecordProblem,
    },
    /// The public key file is unusable.
    #[error("audit public key {}: {reason}", path.display())]
    PublicKey { path: PathBuf, reason: String },
}

impl AuditError {
    /// `(line, sequence)` of the bad record, if this is a verification
    /// failure.
    pub fn bad_record(&self) -> Option<(u64, Option<u64>)> {
        match self {
            AuditError::BadRecord { line, sequence, .. } => Some((*line, *sequence)),
            _ => None,
        }
    }
}

impl From<AuditError> for KmsError {
    fn from(e: AuditError) -> KmsError {
        match e {
            AuditError::Read(fs) => KmsError::Storage(fs),
            other => KmsError::Internal(other.to_string()),
        }
    }
}

/// Why a record fails verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordProblem {
    #[error("malformed line ({0}); the line was damaged or edited by hand")]
    Malformed(String),
    #[error(
        "hash mismatch: the record's contents hash to {computed}, but it says {stored}; \
         the record was edited"
    )]
    HashMismatch { stored: String, computed: String },
    #[error(
        "out of sequence: expected record {expected}, found record {found}; records were \
         deleted, inserted or reordered here"
    )]
    OutOfSequence { expected: u64, found: u64 },
    #[error(
        "broken chain: prevHash is {found}, but the previous record's hash is {expected}; \
         the record before it was replaced or removed"
    )]
    BrokenChain { expected: String, found: String },
    #[error("bad digest signature: {0}")]
    BadSignature(String),
    #[error("bad digest: {0}")]
    BadDigest(String),
}

/// The result of a successful verification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// All complete records, digests included.
    pub records: u64,
    /// Digest records, all with valid signatures.
    pub digests: u64,
    /// Sequence of the last record (0 for an empty log).
    pub last_sequence: u64,
    /// Records after the last digest: chained, not yet signed.
    pub unsigned_records: u64,
    /// Bytes of an incomplete last line (a crash during an append), which
    /// the KMS removes the next time it opens the log.
    pub torn_tail_bytes: Option<u64>,
}

/// Checks the chain and digest signatures of the log at `path` against
/// `public_key`. A missing file is an empty, intact log.
pub fn verify(path: &Path, public_key: &VerifyingKey) -> Result<VerifyReport, AuditError> {
    let data = read_log(path)?;
    let (lines, torn) = split_lines(&data);
    let mut report = VerifyReport {
        records: 0,
        digests: 0,
        last_sequence: 0,
        unsigned_records: 0,
        torn_tail_bytes: torn.map(|t| t.len() as u64),
    };
    let mut prev_hash = GENESIS_HASH.to_owned();
    let mut last_digest = 0u64;
    for (i, line) in lines.iter().enumerate() {
        let line_no = i as u64 + 1;
        let fail = |sequence: Option<u64>, problem: RecordProblem| AuditError::BadRecord {
            path: path.to_path_buf(),
            line: line_no,
            sequence,
            problem,
        };
        let record = parse_line(line).map_err(|p| fail(None, p))?;
        let (stored, computed) = line_hashes(line)
            .ok_or_else(|| fail(None, RecordProblem::Malformed("no hash".into())))?;
        let seq = Some(record.sequence);
        if stored != computed {
            return Err(fail(seq, RecordProblem::HashMismatch { stored, computed }));
        }
        let expected = report.last_sequence + 1;
        if record.sequence != expected {
            let problem = RecordProblem::OutOfSequence {
                expected,
                found: record.sequence,
            };
            return Err(fail(seq, problem));
        }
        if record.prev_hash != prev_hash {
            let problem = RecordProblem::BrokenChain {
                expected: prev_hash,
                found: record.prev_hash,
            };
            return Err(fail(seq, problem));
        }
        if record.is_digest() {
            check_digest(&record, public_key).map_err(|p| fail(seq, p))?;
            last_digest = record.sequence;
            report.digests += 1;
        }
        report.records += 1;
        report.last_sequence = record.sequence;
        prev_hash = record.hash;
    }
    report.unsigned_records = report.last_sequence - last_digest;
    Ok(report)
}

fn check_digest(record: &AuditRecord, key: &VerifyingKey) -> Result<(), RecordProblem> {
    let d = record
        .digest
        .as_ref()
        .ok_or_else(|| RecordProblem::BadDigest("a digest record without a signature".into()))?;
    if record.event_name != DIGEST_EVENT_NAME {
        return Err(RecordProblem::BadDigest(format!(
            "eventName is {}, not {DIGEST_EVENT_NAME}",
            record.event_name
        )));
    }
    if d.last_sequence.checked_add(1) != Some(record.sequence) {
        return Err(RecordProblem::BadDigest(format!(
            "it claims to cover records up to {}, but it follows record {}",
            d.last_sequence,
            record.sequence - 1
        )));
    }
    let msg = digest_message(
        &record.region,
        record.sequence,
        &record.event_time,
        &record.prev_hash,
    );
    verify_hex(key, &msg, &d.signature).map_err(RecordProblem::BadSignature)
}

fn parse_line(line: &[u8]) -> Result<AuditRecord, RecordProblem> {
    if line.is_empty() {
        return Err(RecordProblem::Malformed("empty line".into()));
    }
    if line_hashes(line).is_none() {
        return Err(RecordProblem::Malformed(
            "it does not end with a \"hash\" member".into(),
        ));
    }
    serde_json::from_slice(line).map_err(|e| RecordProblem::Malformed(e.to_string()))
}

/// Reads the whole log; a missing file reads as empty.
fn read_log(path: &Path) -> Result<Vec<u8>, AuditError> {
    match fsutil::read(path) {
        Ok(d) => Ok(d),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// Complete lines (without `\n`) and the incomplete tail, if any.
fn split_lines(data: &[u8]) -> (Vec<&[u8]>, Option<&[u8]>) {
    let mut lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    // `split` yields a final piece after the last newline: empty if the
    // file ends with one, else the torn tail.
    let tail = lines.pop().filter(|t| !t.is_empty());
    (lines, tail)
}

/// Which records [`list`] returns. Every given field must match.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Key ARN, or key id (matches the ARN's last part).
    pub key: Option<String>,
    /// Event name, e.g. `Decrypt` (case-insensitive).
    pub operation: Option<String>,
    /// Caller principal ARN.
    pub caller: Option<String>,
    /// Records at or after this time.
    pub since: Option<SystemTime>,
    /// Records at or before this time.
    pub until: Option<SystemTime>,
}

impl AuditFilter {
    pub fn matches(&self, r: &AuditRecord) -> bool {
        if let Some(k) = &self.key {
            let Some(arn) = &r.key_arn else { return false };
            if arn != k && !arn.ends_with(&format!("/{k}")) {
                return false;
            }
        }
        if let Some(op) = &self.operation {
            if !r.event_name.eq_ignore_ascii_case(op) {
                return false;
            }
        }
        if let Some(c) = &self.caller {
            if &r.caller != c {
                return false;
            }
        }
        if self.since.is_some() || self.until.is_some() {
            let Ok(t) = humantime::parse_rfc3339_weak(&r.event_time) else {
                return false;
            };
            if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t > u) {
                return false;
            }
        }
        true
    }
}

/// The records of the log at `path` that match `filter`, in log order. An
/// incomplete last line is skipped; any other unreadable line is an error
/// (run [`verify`] to see why).
pub fn list(path: &Path, filter: &AuditFilter) -> Result<Vec<AuditRecord>, AuditError> {
    let data = read_log(path)?;
    let (lines, _torn) = split_lines(&data);
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let record = parse_line(line).map_err(|problem| AuditError::BadRecord {
            path: path.to_path_buf(),
            line: i as u64 + 1,
            sequence: None,
            problem,
        })?;
        if filter.matches(&record) {
            out.push(record);
        }
    }
    Ok(out)
}
