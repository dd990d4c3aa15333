//! `cryptvol audit verify|list|digest` over a log written by real
//! `cryptvol kms` calls: the log holds one record per call (failures
//! included) and no secrets; tampering is caught and the bad record named.

#![allow(clippy::unwrap_used)] // tests: a panic is a failure report

mod common;

use std::path::{Path, PathBuf};

use common::{cryptvol, cryptvol_ok};
use serde_json::Value;

fn log_path(dir: &Path) -> PathBuf {
    dir.join("regions/us-east-1/kms/audit.log")
}

fn json(dir: &Path, args: &[&str]) -> Value {
    let mut full = vec!["--output", "json"];
    full.extend_from_slice(args);
    serde_json::from_str(&cryptvol_ok(dir, &full)).expect("JSON output")
}

/// A data dir with a key, an encrypt and a failed decrypt in its log.
/// Returns the key id and the base64 plaintext that was encrypted.
fn busy_dir(dir: &Path) -> (String, String) {
    let key = json(dir, &["kms", "create-key", "--description", "audited"])["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret = "VE9QLVNFQ1JFVC1QTEFJTlRFWFQtMTIzNDU=";
    let enc = json(
        dir,
        &[
            "kms",
            "encrypt",
            "--key-id",
            &key,
            "--plaintext",
            secret,
            "--encryption-context",
            "app=db",
        ],
    );
    let blob = enc["CiphertextBlob"].as_str().unwrap().to_owned();
    let out = cryptvol(
        dir,
        &[
            "kms",
            "decrypt",
            "--ciphertext-blob",
            &blob,
            "--encryption-context",
            "app=web",
        ],
    );
    assert!(!out.status.success());
    (key, secret.to_owned())
}

#[test]
fn every_call_is_logged_without_secrets_and_the_log_verifies() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let (key, secret) = busy_dir(dir);
    let text = cryptvol_ok(dir, &["audit", "verify"]);
    assert!(text.starts_with("audit log ok: "), "{text}");
    let all = json(dir, &["audit", "list"]);
    let records = all["Records"].as_array().unwrap();
    let names: Vec<&str> = records
        .iter()
        .map(|r| r["eventName"].as_str().unwrap())
        .collect();
    for op in ["CreateKey", "Encrypt", "Decrypt"] {
        assert!(names.contains(&op), "{op} missing from {names:?}");
    }
    let dec = json(dir, &["audit", "list", "--operation", "Decrypt"]);
    let dec = &dec["Records"][0];
    assert_eq!(dec["outcome"], "InvalidCiphertextException");
    assert!(dec["caller"].as_str().unwrap().ends_with(":root"));
    let enc = json(
        dir,
        &["audit", "list", "--operation", "Encrypt", "--key-id", &key],
    );
    let enc = &enc["Records"][0];
    assert_eq!(enc["outcome"], "success");
    assert_eq!(enc["encryptionContext"]["app"], "db");
    assert!(enc["keyArn"].as_str().unwrap().ends_with(&key));
    let none = json(dir, &["audit", "list", "--since", "2099-01-01T00:00:00Z"]);
    assert_eq!(none["Records"].as_array().unwrap().len(), 0);
    let table = cryptvol_ok(
        dir,
        &["audit", "list", "--caller", dec["caller"].as_str().unwrap()],
    );
    assert!(
        table.starts_with("SEQ") && table.contains("Decrypt"),
        "{table}"
    );
    let raw = std::fs::read_to_string(log_path(dir)).unwrap();
    assert!(
        !raw.contains(&secret),
        "plaintext leaked into the audit log"
    );
    assert!(!raw.contains("CiphertextBlob") && !raw.contains("Plaintext"));
    let signed = cryptvol_ok(dir, &["audit", "digest"]);
    assert!(signed.contains("digest record"), "{signed}");
    let report = json(dir, &["audit", "verify"]);
    assert_eq!(report["Valid"], true);
    assert!(report["Report"]["digests"].as_u64().unwrap() >= 1);
    assert_eq!(report["Report"]["unsignedRecords"], 0);
}

#[test]
fn tampering_is_caught_and_the_record_named() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    busy_dir(dir);
    let path = log_path(dir);
    let original = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = original.lines().map(str::to_owned).collect();
    assert!(lines.len() >= 3);
    // Edit: a failed call made to look like a success.
    let edited = lines[2].replace("InvalidCiphertextException", "success");
    let edited = if edited == lines[2] {
        lines[2].replacen("\"eventName\":\"", "\"eventName\":\"X", 1)
    } else {
        edited
    };
    lines[2] = edited;
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let out = cryptvol(dir, &["audit", "verify"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 3 (record 3)") && err.contains("hash mismatch"),
        "{err}"
    );
    // Delete: the record after the gap is named.
    let mut lines: Vec<&str> = original.lines().collect();
    lines.remove(1);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let out = cryptvol(dir, &["audit", "verify"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2 (record 3)") && err.contains("out of sequence"),
        "{err}"
    );
    // A log and public key replaced together are caught by the root key.
    std::fs::write(&path, &original).unwrap();
    let pk = dir.join("regions/us-east-1/kms/audit-public-key.pem");
    let other = tempfile::tempdir().unwrap();
    cryptvol_ok(other.path(), &["kms", "list-keys"]);
    cryptvol_ok(other.path(), &["audit", "digest"]);
    let other_pk = other
        .path()
        .join("regions/us-east-1/kms/audit-public-key.pem");
    std::fs::copy(other_pk, &pk).unwrap();
    let out = cryptvol(dir, &["audit", "verify"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not this KMS's audit signing key"), "{err}");
}
