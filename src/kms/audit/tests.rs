#![allow(clippy::unwrap_used)]

use std::fs;
use std::sync::{Arc, Barrier};

use serde_json::json;

use super::*;
use crate::kms::service::Caller;

const REGION: &str = "us-east-1";
const KEY_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn key() -> AuditSigningKey {
    AuditSigningKey::from_seed(&[7u8; 32])
}

fn caller() -> Caller {
    Caller::account_root("111122223333")
}

fn entry(i: usize) -> AuditEntry {
    let req = json!({"KeyId": KEY_ARN, "Plaintext": "c2VjcmV0", "EncryptionContext": {"n": i.to_string()}});
    AuditEntry::api_call(&caller(), "Encrypt", &req).with_key_arn(KEY_ARN)
}

/// A log in a temp dir with `n` events and a digest every `interval`.
fn log_with(n: usize, interval: u64) -> (tempfile::TempDir, AuditLog) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = AuditLog::open(dir.path(), REGION, key()).unwrap();
    log.set_digest_interval(interval);
    for i in 0..n {
        log.append(entry(i)).unwrap();
    }
    (dir, log)
}

fn lines(log: &AuditLog) -> Vec<String> {
    fs::read_to_string(log.path())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(log: &AuditLog, lines: &[String]) {
    let mut s = lines.join("\n");
    s.push('\n');
    fs::write(log.path(), s).unwrap();
}

/// Verification fails and names `line` / `sequence`; returns the problem.
fn bad_at(log: &AuditLog, line: u64, sequence: Option<u64>) -> RecordProblem {
    match log.verify().unwrap_err() {
        AuditError::BadRecord {
            line: l,
            sequence: s,
            problem,
            ..
        } => {
            assert_eq!((l, s), (line, sequence), "{problem}");
            problem
        }
        other => panic!("expected a bad record, got {other}"),
    }
}

#[test]
fn chain_and_digest_signatures_verify() {
    let (_d, log) = log_with(25, 10);
    let report = log.verify().unwrap();
    // Digests follow the records with sequence 10 and 20 (as 11 and 21).
    assert_eq!(report.digests, 2);
    assert_eq!(report.records, 27);
    assert_eq!(report.last_sequence, 27);
    assert_eq!(report.unsigned_records, 6);
    assert_eq!(report.torn_tail_bytes, None);
    assert_eq!(log.write_digest().unwrap(), 28);
    assert_eq!(log.write_digest().unwrap(), 28, "no digest of a digest");
    let report = verify(log.path(), &key().verifying_key()).unwrap();
    assert_eq!((report.digests, report.unsigned_records), (3, 0));
    let records = log.list(&AuditFilter::default()).unwrap();
    assert_eq!(records.len(), 28);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.sequence, i as u64 + 1);
        assert_eq!(r.region, REGION);
    }
    assert_eq!(records[0].prev_hash, GENESIS_HASH);
    assert!(records[10].is_digest() && records[10].digest.as_ref().unwrap().last_sequence == 10);
}

#[test]
fn default_interval_signs_every_hundred_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), REGION, key()).unwrap();
    for i in 0..(DIGEST_INTERVAL as usize) {
        log.append(entry(i)).unwrap();
    }
    let r = log.verify().unwrap();
    assert_eq!((r.records, r.digests), (DIGEST_INTERVAL + 1, 1));
}

#[test]
fn records_hold_what_cloudtrail_shows() {
    let (_d, log) = log_with(0, 0);
    let err = crate::kms::KmsError::key_disabled("1234abcd");
    log.append(entry(1).failed(&err)).unwrap();
    let r = &log.list(&AuditFilter::default()).unwrap()[0];
    assert_eq!(r.event_name, "Encrypt");
    assert_eq!(r.event_type, EventType::AwsApiCall);
    assert_eq!(r.caller, "arn:aws:iam::111122223333:root");
    assert_eq!(r.key_arn.as_deref(), Some(KEY_ARN));
    assert_eq!(r.outcome, "DisabledException");
    assert!(r.error_message.as_deref().unwrap().contains("enable-key"));
    assert_eq!(r.encryption_context.as_ref().unwrap()["n"], "1");
    assert!(
        humantime::parse_rfc3339(&r.event_time).is_ok(),
        "{}",
        r.event_time
    );
    assert_eq!(
        uuid::Uuid::parse_str(&r.event_id)
            .unwrap()
            .get_version_num(),
        4
    );
    let line = &lines(&log)[0];
    assert!(line.contains("\"eventID\"") && line.contains("\"awsRegion\":\"us-east-1\""));
}

#[test]
fn no_secrets_reach_the_log() {
    let (_d, log) = log_with(0, 0);
    let secret_b64 = "U1VQRVItU0VDUkVULVBMQUlOVEVYVA==";
    let req = json!({
        "KeyId": "alias/app",
        "Plaintext": secret_b64,
        "CiphertextBlob": "QkxPQi1CWVRFUw==",
        "Message": "TUVTU0FHRQ==",
        "Signature": "U0lH",
        "Mac": "TUFD",
        "EncryptedKeyMaterial": "S0VZTUFU",
        "ImportToken": "VE9LRU4=",
        "SomethingNew": "unknown-maybe-secret",
        "GrantTokens": ["AQpAM2RhZTk1MGMwMmQ0YzQ1ZWE5YjQ4ODI0MGNiMTdiZTk0"],
        "EncryptionContext": {"purpose": "test"},
        "NumberOfBytes": 32,
    });
    let e = AuditEntry::api_call(&caller(), "GenerateDataKey", &req);
    assert!(!format!("{e:?}").contains(secret_b64));
    log.append(e).unwrap();
    let text = fs::read_to_string(log.path()).unwrap();
    for secret in [
        secret_b64,
        "QkxPQi1CWVRFUw==",
        "TUVTU0FHRQ==",
        "U0lH",
        "TUFD",
        "S0VZTUFU",
        "VE9LRU4=",
        "unknown-maybe-secret",
        "Plaintext",
        "CiphertextBlob",
        "M2RhZTk1MGMwMmQ0YzQ1ZWE5YjQ4ODI0MGNiMTdiZTk0",
    ] {
        assert!(!text.contains(secret), "{secret} leaked into {text}");
    }
    let r = &log.list(&AuditFilter::default()).unwrap()[0];
    assert_eq!(r.request_parameters["KeyId"], "alias/app");
    assert_eq!(r.request_parameters["NumberOfBytes"], 32);
    assert_eq!(r.request_parameters["GrantTokens"][0], "AQpAM2RhZTk1…");
    assert_eq!(r.request_parameters["EncryptionContext"]["purpose"], "test");
}

#[test]
fn edited_record_is_named() {
    let (_d, log) = log_with(30, 10);
    let mut l = lines(&log);
    l[14] = l[14].replace("\"n\":\"", "\"n\":\"9");
    write_lines(&log, &l);
    let p = bad_at(&log, 15, Some(15));
    assert!(matches!(p, RecordProblem::HashMismatch { .. }), "{p}");
    assert!(log
        .verify()
        .unwrap_err()
        .to_string()
        .contains("line 15 (record 15)"));
}

#[test]
fn edited_record_with_recomputed_hash_breaks_the_chain() {
    let (_d, log) = log_with(30, 10);
    let mut l = lines(&log);
    let mut r: AuditRecord = serde_json::from_str(&l[14]).unwrap();
    r.outcome = "AccessDeniedException".into();
    l[14] = r.seal_line().unwrap().trim_end().to_owned();
    write_lines(&log, &l);
    let p = bad_at(&log, 16, Some(16));
    assert!(matches!(p, RecordProblem::BrokenChain { .. }), "{p}");
}

#[test]
fn rewritten_chain_fails_the_digest_signature() {
    let (_d, log) = log_with(15, 10);
    // Rewrite record 3 and re-chain everything after it, as an attacker
    // without the signing key would.
    let mut records = log.list(&AuditFilter::default()).unwrap();
    records[2].outcome = "AccessDeniedException".into();
    let mut prev = records[1].hash.clone();
    let mut out = Vec::new();
    for r in &mut records[..2] {
        out.push(r.clone().seal_line().unwrap().trim_end().to_owned());
    }
    for r in &mut records[2..] {
        r.prev_hash = prev.clone();
        out.push(r.seal_line().unwrap().trim_end().to_owned());
        prev = r.hash.clone();
    }
    write_lines(&log, &out);
    let p = bad_at(&log, 11, Some(11));
    assert!(matches!(p, RecordProblem::BadSignature(_)), "{p}");
}

#[test]
fn deleted_record_is_named() {
    let (_d, log) = log_with(30, 10);
    let mut l = lines(&log);
    l.remove(19);
    write_lines(&log, &l);
    let p = bad_at(&log, 20, Some(21));
    assert_eq!(
        p,
        RecordProblem::OutOfSequence {
            expected: 20,
            found: 21
        }
    );
}

#[test]
fn reordered_records_are_named() {
    let (_d, log) = log_with(30, 10);
    let mut l = lines(&log);
    l.swap(4, 5);
    write_lines(&log, &l);
    let p = bad_at(&log, 5, Some(6));
    assert!(matches!(
        p,
        RecordProblem::OutOfSequence {
            expected: 5,
            found: 6
        }
    ));
}

#[test]
fn inserted_record_is_named() {
    let (_d, log) = log_with(30, 10);
    let mut l = lines(&log);
    // A forged record with a valid hash of its own, claiming the next
    // sequence number and chaining to its predecessor.
    let mut forged: AuditRecord = serde_json::from_str(&l[7]).unwrap();
    forged.sequence = 9;
    forged.prev_hash = forged.hash.clone();
    forged.event_name = "Decrypt".into();
    l.insert(8, forged.seal_line().unwrap().trim_end().to_owned());
    write_lines(&log, &l);
    // The forgery itself passes; the genuine record 9 after it does not.
    let p = bad_at(&log, 10, Some(9));
    assert!(matches!(
        p,
        RecordProblem::OutOfSequence {
            expected: 10,
            found: 9
        }
    ));
}

#[test]
fn malformed_line_is_named() {
    let (_d, log) = log_with(5, 0);
    let mut l = lines(&log);
    l[2] = "not json at all".into();
    write_lines(&log, &l);
    let p = bad_at(&log, 3, None);
    assert!(matches!(p, RecordProblem::Malformed(_)));
}

#[test]
fn torn_tail_is_reported_then_repaired_on_open() {
    let (d, log) = log_with(5, 0);
    let mut text = fs::read_to_string(log.path()).unwrap();
    let good_len = text.len();
    text.push_str("{\"sequence\":6,\"eventTime\":\"2024-");
    fs::write(log.path(), &text).unwrap();
    let r = log.verify().unwrap();
    assert_eq!((r.records, r.torn_tail_bytes), (5, Some(32)));
    assert_eq!(log.list(&AuditFilter::default()).unwrap().len(), 5);
    drop(log);
    let log = AuditLog::open(d.path(), REGION, key()).unwrap();
    let after = fs::read_to_string(log.path()).unwrap();
    assert_eq!(&after[..good_len], &text[..good_len]);
    let r = log.verify().unwrap();
    assert_eq!((r.records, r.torn_tail_bytes), (6, None));
    let repair = log.list(&AuditFilter::default()).unwrap().pop().unwrap();
    assert_eq!(repair.event_name, REPAIR_EVENT_NAME);
    assert_eq!(repair.request_parameters["truncatedBytes"], 32);
    log.append(entry(0)).unwrap();
    assert_eq!(log.verify().unwrap().records, 7);
}

#[test]
fn torn_tail_is_repaired_by_the_next_append_too() {
    let (_d, log) = log_with(3, 0);
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(log.path())
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"seq").unwrap();
    log.append(entry(9)).unwrap();
    let r = log.verify().unwrap();
    assert_eq!((r.records, r.torn_tail_bytes), (5, None));
}

#[test]
fn wrong_public_key_fails_and_replaced_key_file_is_refused() {
    let (d, log) = log_with(12, 10);
    let other = AuditSigningKey::from_seed(&[8u8; 32]).verifying_key();
    assert!(matches!(
        verify(log.path(), &other).unwrap_err().bad_record(),
        Some((11, Some(11)))
    ));
    drop(log);
    let err = AuditLog::open(d.path(), REGION, AuditSigningKey::from_seed(&[8u8; 32]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not match"), "{err}");
}

#[test]
fn public_key_file_round_trips_and_openssl_verifies_a_digest() {
    let (d, log) = log_with(10, 10);
    let pk = load_public_key(&public_key_path(d.path(), REGION)).unwrap();
    assert_eq!(pk, key().verifying_key());
    assert_eq!(parse_public_key(&hex::encode(pk.as_bytes())).unwrap(), pk);
    assert!(
        parse_public_key("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err()
    );
    let have_openssl = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_openssl {
        eprintln!("SKIPPED: openssl is not installed (Debian package openssl)");
        return;
    }
    let digest = log.list(&AuditFilter::default()).unwrap().pop().unwrap();
    let info = digest.digest.clone().unwrap();
    let msg = digest_message(
        REGION,
        digest.sequence,
        &digest.event_time,
        &digest.prev_hash,
    );
    fs::write(d.path().join("msg"), msg).unwrap();
    fs::write(d.path().join("sig"), hex::decode(info.signature).unwrap()).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-rawin", "-inkey"])
        .arg(public_key_path(d.path(), REGION))
        .arg("-in")
        .arg(d.path().join("msg"))
        .arg("-sigfile")
        .arg(d.path().join("sig"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn concurrent_appenders_never_fork_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let threads = 8;
    let per_thread = 40;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (path, barrier) = (dir.path().to_path_buf(), barrier.clone());
            std::thread::spawn(move || {
                // One AuditLog per thread, as separate processes would have.
                let mut log = AuditLog::open(&path, REGION, key()).unwrap();
                log.set_digest_interval(25);
                barrier.wait();
                for i in 0..per_thread {
                    log.append(entry(t * 1000 + i)).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let log = AuditLog::open(dir.path(), REGION, key()).unwrap();
    let r = log.verify().unwrap();
    let events = (threads * per_thread) as u64;
    assert_eq!(r.records - r.digests, events);
    assert!(r.digests >= 1);
    let mut seen: Vec<String> = log
        .list(&AuditFilter::default())
        .unwrap()
        .into_iter()
        .filter_map(|r| r.encryption_context.map(|c| c["n"].clone()))
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen.len() as u64,
        events,
        "every append landed exactly once"
    );
}

#[test]
fn list_filters_by_key_operation_caller_and_time() {
    let (_d, log) = log_with(3, 0);
    let other = Caller {
        principal_arn: "arn:aws:iam::111122223333:user/host-a".into(),
    };
    log.append(AuditEntry::api_call(&other, "Decrypt", &json!({})))
        .unwrap();
    let count = |f: AuditFilter| log.list(&f).unwrap().len();
    assert_eq!(count(AuditFilter::default()), 4);
    let by_key = |k: &str| AuditFilter {
        key: Some(k.into()),
        ..Default::default()
    };
    assert_eq!(count(by_key(KEY_ARN)), 3);
    assert_eq!(count(by_key("1234abcd-12ab-34cd-56ef-1234567890ab")), 3);
    assert_eq!(count(by_key("1234abcd")), 0);
    let op = AuditFilter {
        operation: Some("decrypt".into()),
        ..Default::default()
    };
    assert_eq!(count(op), 1);
    let who = AuditFilter {
        caller: Some(other.principal_arn.clone()),
        ..Default::default()
    };
    assert_eq!(count(who), 1);
    let hour = std::time::Duration::from_secs(3600);
    let now = SystemTime::now();
    let since = |t| AuditFilter {
        since: Some(t),
        ..Default::default()
    };
    assert_eq!(count(since(now - hour)), 4);
    assert_eq!(count(since(now + hour)), 0);
    let until = AuditFilter {
        until: Some(now - hour),
        ..Default::default()
    };
    assert_eq!(count(until), 0);
}

#[test]
fn missing_log_verifies_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    let r = verify(&dir.path().join("nope.log"), &key().verifying_key()).unwrap();
    assert_eq!((r.records, r.digests, r.last_sequence), (0, 0, 0));
}

#[test]
fn signing_key_debug_hides_the_secret() {
    let k = key();
    let dbg = format!("{k:?}");
    assert!(dbg.contains("[redacted]"));
    assert!(!dbg.contains(&hex::encode([7u8; 32])));
}
