//! `cryptvol kms …` driven as a user of `aws kms …` would: same commands,
//! same options (`fileb://`, `k=v` contexts, `TagKey=…,TagValue=…`), same
//! JSON response fields and exception names. The envelope-encryption test
//! follows the AWS KMS developer guide and uses OpenSSL for the local data
//! encryption, as the guide does.

#![allow(clippy::unwrap_used)] // tests: a panic is a failure report

mod common;

use std::path::Path;
use std::process::Command;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::{cryptvol, cryptvol_ok, have, run_ok};
use serde_json::Value;

/// `cryptvol --output json kms ARGS…`, parsed (an empty response is `{}`).
fn kms(dir: &Path, args: &[&str]) -> Value {
    let mut full = vec!["--output", "json", "kms"];
    full.extend_from_slice(args);
    let out = cryptvol_ok(dir, &full);
    if out.trim().is_empty() {
        return Value::Object(Default::default());
    }
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

/// `cryptvol kms ARGS…` must fail; returns stderr.
fn kms_fails(dir: &Path, args: &[&str]) -> String {
    let mut full = vec!["kms"];
    full.extend_from_slice(args);
    let out = cryptvol(dir, &full);
    assert!(!out.status.success(), "kms {args:?} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn b64(v: &Value) -> Vec<u8> {
    STANDARD
        .decode(v.as_str().expect("a base64 string"))
        .expect("valid base64")
}

fn create_key(dir: &Path, description: &str) -> String {
    let r = kms(dir, &["create-key", "--description", description]);
    assert_eq!(r["KeyMetadata"]["Description"], description);
    assert_eq!(r["KeyMetadata"]["KeyState"], "Enabled");
    r["KeyMetadata"]["KeyId"]
        .as_str()
        .expect("KeyMetadata.KeyId")
        .to_owned()
}

fn fileb(p: &Path) -> String {
    format!("fileb://{}", p.display())
}

#[test]
fn envelope_encryption_flow_from_the_kms_guide() {
    if !have("openssl", "openssl") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let key = create_key(dir, "envelope");
    // 1. GenerateDataKey: a plaintext data key and its encrypted copy.
    let dk = kms(
        dir,
        &[
            "generate-data-key",
            "--key-id",
            &key,
            "--key-spec",
            "AES_256",
        ],
    );
    assert!(dk["KeyId"].as_str().unwrap().ends_with(&key));
    let data_key = b64(&dk["Plaintext"]);
    assert_eq!(data_key.len(), 32);
    let blob_path = dir.join("data_key.enc");
    std::fs::write(&blob_path, b64(&dk["CiphertextBlob"])).unwrap();
    // 2. Encrypt a file locally with the plaintext data key, then forget it.
    let secret = common::random_bytes(100_000, 42);
    std::fs::write(dir.join("file.txt"), &secret).unwrap();
    let iv = "000102030405060708090a0b0c0d0e0f";
    let openssl = |args: &[&str]| {
        run_ok(Command::new("openssl").current_dir(dir).args(args));
    };
    let key_hex = hex::encode(&data_key);
    openssl(&[
        "enc",
        "-aes-256-ctr",
        "-K",
        &key_hex,
        "-iv",
        iv,
        "-in",
        "file.txt",
        "-out",
        "file.enc",
    ]);
    std::fs::remove_file(dir.join("file.txt")).unwrap();
    // 3. Decrypt the stored data key with KMS (no key id needed).
    let dec = kms(dir, &["decrypt", "--ciphertext-blob", &fileb(&blob_path)]);
    assert_eq!(b64(&dec["Plaintext"]), data_key);
    assert_eq!(dec["KeyId"], dk["KeyId"]);
    assert_eq!(dec["EncryptionAlgorithm"], "SYMMETRIC_DEFAULT");
    // 4. Decrypt the file with it.
    let recovered_hex = hex::encode(b64(&dec["Plaintext"]));
    openssl(&[
        "enc",
        "-d",
        "-aes-256-ctr",
        "-K",
        &recovered_hex,
        "-iv",
        iv,
        "-in",
        "file.enc",
        "-out",
        "file.out",
    ]);
    assert_eq!(std::fs::read(dir.join("file.out")).unwrap(), secret);
}

#[test]
fn encrypt_decrypt_round_trip_binds_the_encryption_context() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let key = create_key(dir, "ctx");
    let pt = dir.join("plain.bin");
    std::fs::write(&pt, b"attack at dawn\x00\xff").unwrap();
    let enc = kms(
        dir,
        &[
            "encrypt",
            "--key-id",
            &key,
            "--plaintext",
            &fileb(&pt),
            "--encryption-context",
            "purpose=test,team=db",
        ],
    );
    assert_eq!(enc["EncryptionAlgorithm"], "SYMMETRIC_DEFAULT");
    let blob = dir.join("blob");
    std::fs::write(&blob, b64(&enc["CiphertextBlob"])).unwrap();
    // Same context, as JSON this time, and the key named explicitly.
    let dec = kms(
        dir,
        &[
            "decrypt",
            "--ciphertext-blob",
            &fileb(&blob),
            "--key-id",
            &key,
            "--encryption-context",
            r#"{"team":"db","purpose":"test"}"#,
        ],
    );
    assert_eq!(b64(&dec["Plaintext"]), std::fs::read(&pt).unwrap());
    // The blob given as base64 text, as the AWS CLI v2 takes it.
    let blob_b64 = enc["CiphertextBlob"].as_str().unwrap();
    let dec = kms(
        dir,
        &[
            "decrypt",
            "--ciphertext-blob",
            blob_b64,
            "--encryption-context",
            "purpose=test,team=db",
        ],
    );
    assert_eq!(b64(&dec["Plaintext"]), std::fs::read(&pt).unwrap());
    for wrong in ["purpose=other,team=db", "purpose=test", ""] {
        let mut args = vec!["decrypt", "--ciphertext-blob", blob_b64];
        if !wrong.is_empty() {
            args.extend(["--encryption-context", wrong]);
        }
        let err = kms_fails(dir, &args);
        assert!(
            err.contains("(InvalidCiphertextException) when calling the Decrypt operation"),
            "{wrong}: {err}"
        );
    }
    // Plain --plaintext values are base64, as in the AWS CLI v2.
    let err = kms_fails(
        dir,
        &["encrypt", "--key-id", &key, "--plaintext", "not base64!"],
    );
    assert!(
        err.contains("--plaintext") && err.contains("fileb://"),
        "{err}"
    );
}

#[test]
fn aliases_create_list_use_delete() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let key = create_key(dir, "aliased");
    let none = kms(
        dir,
        &[
            "create-alias",
            "--alias-name",
            "alias/app",
            "--target-key-id",
            &key,
        ],
    );
    assert_eq!(none, serde_json::json!({}), "CreateAlias returns nothing");
    let list = kms(dir, &["list-aliases"]);
    let app = list["Aliases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["AliasName"] == "alias/app")
        .expect("alias/app listed")
        .clone();
    assert_eq!(app["TargetKeyId"], key.as_str());
    assert!(app["AliasArn"].as_str().unwrap().ends_with(":alias/app"));
    let by_key = kms(dir, &["list-aliases", "--key-id", &key]);
    assert_eq!(by_key["Aliases"].as_array().unwrap().len(), 1);
    let text = cryptvol_ok(dir, &["kms", "list-aliases"]);
    assert!(
        text.starts_with("ALIAS NAME") && text.contains("alias/app"),
        "{text}"
    );
    let enc = kms(
        dir,
        &[
            "encrypt",
            "--key-id",
            "alias/app",
            "--plaintext",
            "aGVsbG8=",
        ],
    );
    assert!(enc["KeyId"].as_str().unwrap().ends_with(&key));
    let err = kms_fails(
        dir,
        &[
            "create-alias",
            "--alias-name",
            "alias/app",
            "--target-key-id",
            &key,
        ],
    );
    assert!(err.contains("AlreadyExistsException"), "{err}");
    kms(dir, &["delete-alias", "--alias-name", "alias/app"]);
    let list = kms(dir, &["list-aliases"]);
    assert!(!list.to_string().contains("alias/app"));
    let err = kms_fails(
        dir,
        &[
            "encrypt",
            "--key-id",
            "alias/app",
            "--plaintext",
            "aGVsbG8=",
        ],
    );
    assert!(err.contains("NotFoundException"), "{err}");
}

#[test]
fn disabled_key_refuses_encrypt_until_enabled() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let key = create_key(dir, "toggle");
    kms(dir, &["disable-key", "--key-id", &key]);
    let desc = kms(dir, &["describe-key", "--key-id", &key]);
    assert_eq!(desc["KeyMetadata"]["KeyState"], "Disabled");
    assert_eq!(desc["KeyMetadata"]["Enabled"], false);
    let err = kms_fails(
        dir,
        &["encrypt", "--key-id", &key, "--plaintext", "aGVsbG8="],
    );
    assert!(
        err.contains("An error occurred (DisabledException) when calling the Encrypt operation"),
        "{err}"
    );
    assert!(
        err.contains("enable-key"),
        "the message names the fix: {err}"
    );
    let text = cryptvol_ok(dir, &["kms", "enable-key", "--key-id", &key]);
    assert!(text.contains("enabled key"), "{text}");
    kms(
        dir,
        &["encrypt", "--key-id", &key, "--plaintext", "aGVsbG8="],
    );
}

#[test]
fn schedule_and_cancel_key_deletion() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let key = create_key(dir, "doomed");
    let err = kms_fails(
        dir,
        &[
            "schedule-key-deletion",
            "--key-id",
            &key,
            "--pending-window-in-days",
            "6",
        ],
    );
    assert!(err.contains("ValidationException"), "{err}");
    let r = kms(
        dir,
        &[
            "schedule-key-deletion",
            "--key-id",
            &key,
            "--pending-window-in-days",
            "7",
        ],
    );
    assert_eq!(r["KeyState"], "PendingDeletion");
    assert_eq!(r["PendingWindowInDays"], 7);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let when = r["DeletionDate"]
        .as_u64()
        .expect("DeletionDate in epoch seconds");
    assert!(when.abs_diff(now + 7 * 86400) < 120, "{when} vs {now}");
    let err = kms_fails(
        dir,
        &["encrypt", "--key-id", &key, "--plaintext", "aGVsbG8="],
    );
    assert!(err.contains("KMSInvalidStateException"), "{err}");
    let r = kms(dir, &["cancel-key-deletion", "--key-id", &key]);
    assert!(r["KeyId"].as_str().unwrap().ends_with(&key));
    let desc = kms(dir, &["describe-key", "--key-id", &key]);
    assert_eq!(desc["KeyMetadata"]["KeyState"], "Disabled");
    kms(dir, &["enable-key", "--key-id", &key]);
    kms(
        dir,
        &["encrypt", "--key-id", &key, "--plaintext", "aGVsbG8="],
    );
}

#[test]
fn options_use_aws_cli_shorthand_and_list_commands_print_tables() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let r = kms(
        dir,
        &[
            "create-key",
            "--description",
            "tagged",
            "--tags",
            "TagKey=team,TagValue=storage",
            "TagKey=env,TagValue=test",
        ],
    );
    let key = r["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let tags = kms(dir, &["list-resource-tags", "--key-id", &key]);
    let mut got: Vec<String> = tags["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            format!(
                "{}={}",
                t["TagKey"].as_str().unwrap(),
                t["TagValue"].as_str().unwrap()
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, ["env=test", "team=storage"]);
    let text = cryptvol_ok(dir, &["kms", "list-resource-tags", "--key-id", &key]);
    assert!(
        text.starts_with("TAG KEY") && text.contains("storage"),
        "{text}"
    );
    let text = cryptvol_ok(dir, &["kms", "list-keys"]);
    assert!(text.starts_with("KEY ID") && text.contains(&key), "{text}");
    let rnd = kms(dir, &["generate-random", "--number-of-bytes", "48"]);
    assert_eq!(b64(&rnd["Plaintext"]).len(), 48);
    let policy = kms(
        dir,
        &[
            "get-key-policy",
            "--key-id",
            &key,
            "--policy-name",
            "default",
        ],
    );
    let doc: Value = serde_json::from_str(policy["Policy"].as_str().unwrap()).unwrap();
    assert_eq!(doc["Statement"][0]["Action"], "kms:*");
    let policy_file = dir.join("policy.json");
    std::fs::write(&policy_file, policy["Policy"].as_str().unwrap()).unwrap();
    kms(
        dir,
        &[
            "put-key-policy",
            "--key-id",
            &key,
            "--policy-name",
            "default",
            "--policy",
            &format!("file://{}", policy_file.display()),
        ],
    );
    let err = kms_fails(dir, &["encrypt", "--plaintext", "aGVsbG8="]);
    assert!(
        err.contains("--key-id"),
        "clap names the missing option: {err}"
    );
}
