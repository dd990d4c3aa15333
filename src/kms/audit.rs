//! The audit log: one CloudTrail-like JSON record per KMS call, per region,
//! hash-chained and periodically signed.
//!
//! On disk, beside the key store:
//!
//! ```text
//! <data_dir>/regions/<region>/kms/audit.log              JSON lines (record.rs)
//! <data_dir>/regions/<region>/kms/audit.lock             flock target for appenders
//! <data_dir>/regions/<region>/kms/audit-public-key.pem   Ed25519 public key (signing.rs)
//! ```
//!
//! Why it is built this way:
//!
//! - **Chained.** Each record carries the SHA-256 of the one before it
//!   (`prevHash`) and of itself (`hash`), so editing, deleting, inserting or
//!   reordering a record breaks the chain at a point [`verify`] names.
//! - **Signed.** Every [`DIGEST_INTERVAL`] records, and on demand
//!   ([`AuditLog::write_digest`]), a digest record signs the chain head with
//!   the region's audit signing key, so rewriting the chain with recomputed
//!   hashes is caught too. The public key is published beside the log.
//! - **One writer at a time, whole lines only.** An append takes an
//!   exclusive `flock` on `audit.lock`, reads the last record from the end
//!   of the file, writes the new line with a single `O_APPEND` write and
//!   `fsync`s it; so concurrent processes (a server and a CLI call) never
//!   interleave lines or fork the chain.
//! - **Crash repair.** A crash mid-write can leave an incomplete last line.
//!   [`verify`] reports it; the next writer (under the lock) truncates it,
//!   logs a warning and appends an `AuditLogRepaired` record saying how many
//!   bytes went.
//! - **No secrets.** Entries are built through [`AuditEntry`]'s
//!   constructors, which keep only non-secret request parameters.

mod record;
mod signing;
mod verify;

#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{Map, Value};

pub use record::{
    digest_message, redact_request, AuditEntry, AuditRecord, DigestInfo, EventType, Outcome,
    DIGEST_EVENT_NAME, GENESIS_HASH, KMS_SERVICE_PRINCIPAL, OUTCOME_SUCCESS, REPAIR_EVENT_NAME,
};
pub use signing::{load_public_key, parse_public_key, public_key_pem, AuditSigningKey};
pub use verify::{list, verify, AuditError, AuditFilter, RecordProblem, VerifyReport};

use super::arn;
use super::error::KmsError;
use super::keystore::region_dir;
use crate::fsutil::{self, FileLock, FsError, PRIVATE_FILE_MODE};

pub const AUDIT_LOG_FILE_NAME: &str = "audit.log";
pub const AUDIT_LOCK_FILE_NAME: &str = "audit.lock";
pub const PUBLIC_KEY_FILE_NAME: &str = "audit-public-key.pem";
/// Records between automatic digests. CloudTrail signs hourly; a count
/// bounds the unsigned tail however busy the KMS is, and 100 keeps the
/// signing cost (one Ed25519 signature) negligible per call.
pub const DIGEST_INTERVAL: u64 = 100;
/// First read from the end of the log when looking for the last record;
/// grows ×4 until a whole line fits (policies make some records long).
const TAIL_WINDOW: u64 = 16 * 1024;

/// `<data_dir>/regions/<region>/kms/audit.log`.
pub fn log_path(data_dir: &Path, region: &str) -> PathBuf {
    region_dir(data_dir, region).join(AUDIT_LOG_FILE_NAME)
}

/// `<data_dir>/regions/<region>/kms/audit-public-key.pem`.
pub fn public_key_path(data_dir: &Path, region: &str) -> PathBuf {
    region_dir(data_dir, region).join(PUBLIC_KEY_FILE_NAME)
}

/// One region's audit log, open for appending. `Send + Sync`; any number of
/// `AuditLog`s, in one process or several, may append to the same log.
#[derive(Debug)]
pub struct AuditLog {
    region: String,
    path: PathBuf,
    lock_path: PathBuf,
    public_key_path: PathBuf,
    signing_key: AuditSigningKey,
    digest_interval: u64,
}

/// What an append needs to know about the last complete record.
#[derive(Debug, Clone)]
struct Tail {
    sequence: u64,
    hash: String,
    is_digest: bool,
}

impl AuditLog {
    /// Opens (creating on first use) the audit log of `region` in
    /// `data_dir`: publishes the public key of `signing_key` beside it (or
    /// checks that the one there matches), removes a torn last line left by
    /// a crash, and signs a digest that a crash may have skipped.
    pub fn open(
        data_dir: &Path,
        region: &str,
        signing_key: AuditSigningKey,
    ) -> Result<AuditLog, KmsError> {
        arn::validate_region(region)?;
        let dir = region_dir(data_dir, region);
        fsutil::create_private_dir_all(&dir)?;
        let log = AuditLog {
            region: region.to_owned(),
            path: dir.join(AUDIT_LOG_FILE_NAME),
            lock_path: dir.join(AUDIT_LOCK_FILE_NAME),
            public_key_path: dir.join(PUBLIC_KEY_FILE_NAME),
            signing_key,
            digest_interval: DIGEST_INTERVAL,
        };
        log.publish_public_key()?;
        let _lock = FileLock::exclusive(&log.lock_path)?;
        if !log.path.exists() {
            open_append(&log.path)?;
            fsutil::sync_dir(&dir)?;
        }
        let tail = log.locked_tail()?;
        if log.digest_due(&tail) {
            log.write_digest_locked(&tail)?;
        }
        Ok(log)
    }

    /// Changes how many records pass between automatic digests (tests use
    /// small numbers). 0 turns automatic digests off.
    pub fn set_digest_interval(&mut self, records: u64) {
        self.digest_interval = records;
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn public_key_path(&self) -> &Path {
        &self.public_key_path
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Appends one record for `entry` (the log assigns sequence, time, id
    /// and hashes), durably, followed by a digest when one is due.
    pub fn append(&self, entry: AuditEntry) -> Result<(), KmsError> {
        let _lock = FileLock::exclusive(&self.lock_path)?;
        let tail = self.locked_tail()?;
        let tail = self.write_record(&tail, entry)?;
        if self.digest_due(&tail) {
            self.write_digest_locked(&tail)?;
        }
        Ok(())
    }

    /// Signs the chain now (unless the last record already is a digest) and
    /// returns the digest's sequence number.
    pub fn write_digest(&self) -> Result<u64, KmsError> {
        let _lock = FileLock::exclusive(&self.lock_path)?;
        let tail = self.locked_tail()?;
        if tail.is_digest {
            return Ok(tail.sequence);
        }
        Ok(self.write_digest_locked(&tail)?.sequence)
    }

    /// Verifies this log against its signing key (see [`verify`]).
    pub fn verify(&self) -> Result<VerifyReport, AuditError> {
        verify(&self.path, &self.signing_key.verifying_key())
    }

    /// The records matching `filter` (see [`list`]).
    pub fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, KmsError> {
        Ok(list(&self.path, filter)?)
    }

    fn digest_due(&self, tail: &Tail) -> bool {
        self.digest_interval != 0
            && !tail.is_digest
            && tail.sequence != 0
            && tail.sequence.is_multiple_of(self.digest_interval)
    }

    /// Writes the public key file, or checks the existing one.
    fn publish_public_key(&self) -> Result<(), KmsError> {
        let ours = self.signing_key.verifying_key();
        if fsutil::create_new_atomic(&self.public_key_path, public_key_pem(&ours).as_bytes())? {
            return Ok(());
        }
        let theirs = load_public_key(&self.public_key_path)?;
        if theirs != ours {
            return Err(KmsError::Internal(format!(
                "audit public key {} does not match this KMS's audit signing key for region {}: \
                 the root key changed (check CRYPTVOL_ROOT_KEY_FILE) or the file was replaced. \
                 Restore the original file; `cryptvol audit verify` checks the log against it",
                self.public_key_path.display(),
                self.region
            )));
        }
        Ok(())
    }

    /// The last complete record, after removing (and recording) a torn
    /// last line. Call with the lock held.
    fn locked_tail(&self) -> Result<Tail, KmsError> {
        let scan = scan_tail(&self.path)?;
        let tail = match &scan.last_line {
            None => Tail {
                sequence: 0,
                hash: GENESIS_HASH.to_owned(),
                is_digest: false,
            },
            Some(line) => {
                let r: AuditRecord = serde_json::from_slice(line).map_err(|e| {
                    KmsError::Internal(format!(
                        "the last record of audit log {} is unreadable ({e}), so the KMS cannot \
                         extend its chain; run `cryptvol audit verify --region {}` to see what \
                         happened, then move the log aside to start a new one",
                        self.path.display(),
                        self.region
                    ))
                })?;
                Tail {
                    sequence: r.sequence,
                    is_digest: r.is_digest(),
                    hash: r.hash,
                }
            }
        };
        let torn = scan.file_len - scan.complete_len;
        if torn == 0 {
            return Ok(tail);
        }
        let file = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(|e| FsError::new("open", &self.path, e))?;
        file.set_len(scan.complete_len)
            .and_then(|()| file.sync_all())
            .map_err(|e| FsError::new("truncate the torn last line of", &self.path, e))?;
        tracing::warn!(
            path = %self.path.display(),
            bytes = torn,
            "removed an incomplete last line from the audit log (a crash during an append)"
        );
        self.write_record(&tail, AuditEntry::repair(torn))
    }

    fn write_record(&self, tail: &Tail, entry: AuditEntry) -> Result<Tail, KmsError> {
        let (outcome, error_message) = match entry.outcome {
            Outcome::Success => (OUTCOME_SUCCESS.to_owned(), None),
            Outcome::Failure { code, message } => (code, Some(message)),
        };
        let record = AuditRecord {
            sequence: tail.sequence + 1,
            event_time: now_rfc3339(),
            event_id: uuid::Uuid::new_v4().hyphenated().to_string(),
            event_type: entry.event_type,
            event_name: entry.event_name,
            region: self.region.clone(),
            caller: entry.caller,
            key_arn: entry.key_arn,
            encryption_context: entry.encryption_context,
            request_parameters: entry.request_parameters,
            outcome,
            error_message,
            digest: None,
            prev_hash: tail.hash.clone(),
            hash: String::new(),
        };
        self.append_record(record)
    }

    fn write_digest_locked(&self, tail: &Tail) -> Result<Tail, KmsError> {
        let sequence = tail.sequence + 1;
        let event_time = now_rfc3339();
        let message = digest_message(&self.region, sequence, &event_time, &tail.hash);
        let record = AuditRecord {
            sequence,
            event_time,
            event_id: uuid::Uuid::new_v4().hyphenated().to_string(),
            event_type: EventType::Digest,
            event_name: DIGEST_EVENT_NAME.to_owned(),
            region: self.region.clone(),
            caller: KMS_SERVICE_PRINCIPAL.to_owned(),
            key_arn: None,
            encryption_context: None,
            request_parameters: Value::Object(Map::new()),
            outcome: OUTCOME_SUCCESS.to_owned(),
            error_message: None,
            digest: Some(DigestInfo {
                last_sequence: tail.sequence,
                signature: self.signing_key.sign_hex(&message),
            }),
            prev_hash: tail.hash.clone(),
            hash: String::new(),
        };
        self.append_record(record)
    }

    /// One `write` of the whole line to the `O_APPEND` file, then `fsync`.
    fn append_record(&self, mut record: AuditRecord) -> Result<Tail, KmsError> {
        let line = record.seal_line()?;
        let mut file = open_append(&self.path)?;
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| FsError::new("append to", &self.path, e))?;
        Ok(Tail {
            sequence: record.sequence,
            is_digest: record.is_digest(),
            hash: record.hash,
        })
    }
}

fn open_append(path: &Path) -> Result<File, FsError> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(PRIVATE_FILE_MODE)
        .open(path)
        .map_err(|e| FsError::new("open", path, e))
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Where the complete lines of the log end, and the last complete line.
#[derive(Debug)]
struct TailScan {
    file_len: u64,
    /// Length of the log up to and including its last `\n`.
    complete_len: u64,
    /// The last complete line, without its `\n`.
    last_line: Option<Vec<u8>>,
}

/// Reads backwards from the end of the log until it has seen the last
/// complete line. A missing file scans as empty.
fn scan_tail(path: &Path) -> Result<TailScan, FsError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(TailScan {
                file_len: 0,
                complete_len: 0,
                last_line: None,
            })
        }
        Err(e) => return Err(FsError::new("open", path, e)),
    };
    let file_len = file
        .metadata()
        .map_err(|e| FsError::new("inspect", path, e))?
        .len();
    let mut window = TAIL_WINDOW;
    loop {
        let start = file_len.saturating_sub(window);
        let mut buf = vec![0u8; usize::try_from(file_len - start).unwrap_or(usize::MAX)];
        file.read_exact_at(&mut buf, start)
            .map_err(|e| FsError::new("read", path, e))?;
        let at_start = start == 0;
        // End of the complete lines: just after the last newline.
        let complete = match buf.iter().rposition(|b| *b == b'\n') {
            Some(p) => p + 1,
            None if at_start => 0,
            None => {
                window = window.saturating_mul(4);
                continue;
            }
        };
        if complete == 0 {
            return Ok(TailScan {
                file_len,
                complete_len: 0,
                last_line: None,
            });
        }
        let line_end = complete - 1;
        let line_start = match buf[..line_end].iter().rposition(|b| *b == b'\n') {
            Some(p) => p + 1,
            None if at_start => 0,
            None => {
                window = window.saturating_mul(4);
                continue;
            }
        };
        return Ok(TailScan {
            file_len,
            complete_len: start + complete as u64,
            last_line: Some(buf[line_start..line_end].to_vec()),
        });
    }
}
