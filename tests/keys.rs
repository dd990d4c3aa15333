//! Key-change workflows (EBS): copy with re-encrypt to a new key, cross-region
//! copy, rewrap, unencrypted -> encrypted, encryption by default, and resume
//! after kill -9. Contents are checked through NBD with nbdcopy.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).expect("json")
}

fn create_key(data: &Path, region: &str) -> String {
    let out = cryptvol_ok(
        data,
        &[
            "--region",
            region,
            "--output",
            "json",
            "kms",
            "create-key",
            "--description",
            "test",
        ],
    );
    json(&out)["KeyMetadata"]["Arn"]
        .as_str()
        .unwrap()
        .to_string()
}

fn fill(data: &Path, vol: &str, size: &str, seed: u64, work: &Path) -> Vec<u8> {
    let srv = Server::start(data, &[vol, "--create", "--size", size]);
    let bytes = random_bytes(crate_size(size), seed);
    let f = work.join(format!("{vol}.src"));
    std::fs::write(&f, &bytes).unwrap();
    run_ok(Command::new("nbdcopy").args(["--flush", f.to_str().unwrap(), srv.uri()]));
    bytes
}

fn crate_size(s: &str) -> usize {
    s.trim_end_matches('M').parse::<usize>().unwrap() << 20
}

fn contents(data: &Path, region: &str, vol: &str, work: &Path) -> Vec<u8> {
    let mut args = vec![vol];
    let region_args = ["--region", region];
    let srv = Server::start_with(data, &region_args, &mut args);
    let out = work.join(format!("{vol}.{region}.out"));
    run_ok(Command::new("nbdcopy").arg(srv.uri()).arg(&out));
    std::fs::read(out).unwrap()
}

#[test]
fn snapshot_copy_with_new_key_is_independent_of_the_source_key() {
    if !have("nbdcopy", "libnbd-bin") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let key_a = create_key(&data, "us-east-1");
    let key_b = create_key(&data, "us-east-1");
    cryptvol_ok(
        &data,
        &[
            "volume",
            "create",
            "a",
            "--size",
            "32M",
            "--kms-key-id",
            &key_a,
        ],
    );
    let bytes = fill(&data, "a", "32M", 11, work.path());
    let snap = json(&cryptvol_ok(
        &data,
        &["--output", "json", "snapshot", "create", "a"],
    ));
    let sid = snap["snapshot_id"].as_str().unwrap();

    let copy = json(&cryptvol_ok(
        &data,
        &[
            "--output",
            "json",
            "snapshot",
            "copy",
            sid,
            "--kms-key-id",
            &key_b,
        ],
    ));
    assert_eq!(copy["kms_key_arn"], key_b.as_str());
    let cid = copy["snapshot_id"].as_str().unwrap();

    // Same key, same region: a cheap copy sharing chunks.
    let cheap = json(&cryptvol_ok(
        &data,
        &["--output", "json", "snapshot", "copy", sid],
    ));
    assert_eq!(cheap["bytes_added"], 0);
    assert_eq!(cheap["kms_key_arn"], key_a.as_str());

    // Disable key A: the original no longer restores (clear error), the copy does.
    cryptvol_ok(&data, &["kms", "disable-key", "--key-id", &key_a]);
    let out = cryptvol(&data, &["volume", "create", "ra", "--from-snapshot", sid]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("disabled"), "{err}");
    assert!(
        err.contains(key_a.rsplit('/').next().unwrap()),
        "error should name the key: {err}"
    );
    cryptvol_ok(&data, &["volume", "create", "rb", "--from-snapshot", cid]);
    assert!(
        contents(&data, "us-east-1", "rb", work.path()) == bytes,
        "re-encrypted copy differs"
    );
}

#[test]
fn cross_region_copy_reencrypts_with_the_destination_kms_and_refuses_foreign_keys() {
    if !have("nbdcopy", "libnbd-bin") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let bytes = fill(&data, "src", "16M", 12, work.path());
    let sid = json(&cryptvol_ok(
        &data,
        &["--output", "json", "snapshot", "create", "src"],
    ))["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let east_key = create_key(&data, "us-east-1");
    let west_key = create_key(&data, "us-west-2");

    // A key of the source region is refused for a copy into us-west-2.
    let out = cryptvol(
        &data,
        &[
            "--region",
            "us-west-2",
            "snapshot",
            "copy",
            &sid,
            "--source-region",
            "us-east-1",
            "--kms-key-id",
            &east_key,
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("us-east-1") && err.contains("us-west-2"),
        "{err}"
    );

    let copy = json(&cryptvol_ok(
        &data,
        &[
            "--region",
            "us-west-2",
            "--output",
            "json",
            "snapshot",
            "copy",
            &sid,
            "--source-region",
            "us-east-1",
            "--kms-key-id",
            &west_key,
        ],
    ));
    assert_eq!(copy["region"], "us-west-2");
    assert_eq!(copy["kms_key_arn"], west_key.as_str());
    let cid = copy["snapshot_id"].as_str().unwrap();
    cryptvol_ok(
        &data,
        &[
            "--region",
            "us-west-2",
            "volume",
            "create",
            "dst",
            "--from-snapshot",
            cid,
        ],
    );
    assert!(contents(&data, "us-west-2", "dst", work.path()) == bytes);
    // Without a key, the destination's default key is used.
    let dflt = json(&cryptvol_ok(
        &data,
        &[
            "--region",
            "eu-west-1",
            "--output",
            "json",
            "snapshot",
            "copy",
            &sid,
            "--source-region",
            "us-east-1",
        ],
    ));
    assert!(dflt["kms_key_arn"]
        .as_str()
        .unwrap()
        .contains(":eu-west-1:"));
}

#[test]
fn volume_copy_rewrap_unencrypted_to_encrypted_and_encryption_by_default() {
    if !have("nbdcopy", "libnbd-bin") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let key_b = create_key(&data, "us-east-1");
    let bytes = fill(&data, "v", "16M", 13, work.path());
    let before = json(&cryptvol_ok(
        &data,
        &["--output", "json", "volume", "describe", "v"],
    ));

    // volume copy: a new data key, same contents.
    let c = json(&cryptvol_ok(
        &data,
        &[
            "--output",
            "json",
            "volume",
            "copy",
            "v",
            "v2",
            "--kms-key-id",
            &key_b,
        ],
    ));
    assert_eq!(c["kms_key_arn"], key_b.as_str());
    assert_ne!(c["wrapped_data_key"], before["wrapped_data_key"]);
    assert!(contents(&data, "us-east-1", "v2", work.path()) == bytes);

    // rewrap: only the wrapping changes; the data reads the same.
    let r = json(&cryptvol_ok(
        &data,
        &[
            "--output",
            "json",
            "volume",
            "rewrap",
            "v",
            "--kms-key-id",
            &key_b,
        ],
    ));
    assert_eq!(r["kms_key_arn"], key_b.as_str());
    assert_eq!(r["volume_id"], before["volume_id"]);
    assert!(contents(&data, "us-east-1", "v", work.path()) == bytes);

    // An unencrypted snapshot copied with --encrypted becomes encrypted;
    // encrypted -> unencrypted is refused.
    cryptvol_ok(
        &data,
        &["volume", "create", "plain", "--size", "8M", "--unencrypted"],
    );
    let ps = json(&cryptvol_ok(
        &data,
        &["--output", "json", "snapshot", "create", "plain"],
    ));
    let enc = json(&cryptvol_ok(
        &data,
        &[
            "--output",
            "json",
            "snapshot",
            "copy",
            ps["snapshot_id"].as_str().unwrap(),
            "--encrypted",
        ],
    ));
    assert_eq!(enc["encrypted"], true);
    let vs = json(&cryptvol_ok(
        &data,
        &["--output", "json", "snapshot", "create", "v"],
    ));
    let out = cryptvol(
        &data,
        &[
            "snapshot",
            "copy",
            vs["snapshot_id"].as_str().unwrap(),
            "--unencrypted",
        ],
    );
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("cannot be unencrypted")
    );

    // Encryption by default: new volumes use the configured key; --unencrypted is refused.
    cryptvol_ok(
        &data,
        &["encryption-by-default", "enable", "--kms-key-id", &key_b],
    );
    let st = json(&cryptvol_ok(
        &data,
        &["--output", "json", "encryption-by-default", "status"],
    ));
    assert_eq!(st["EbsEncryptionByDefault"], true);
    let n = json(&cryptvol_ok(
        &data,
        &["--output", "json", "volume", "create", "n", "--size", "1M"],
    ));
    assert_eq!(n["kms_key_arn"], key_b.as_str());
    let out = cryptvol(
        &data,
        &["volume", "create", "u", "--size", "1M", "--unencrypted"],
    );
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("encryption by default")
    );
    cryptvol_ok(&data, &["encryption-by-default", "disable"]);
    cryptvol_ok(
        &data,
        &["volume", "create", "u", "--size", "1M", "--unencrypted"],
    );
}

#[test]
fn killed_reencrypting_copy_resumes_when_run_again() {
    if !have("nbdcopy", "libnbd-bin") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let key_b = create_key(&data, "us-east-1");
    let bytes = fill(&data, "big", "256M", 14, work.path());
    let sid = json(&cryptvol_ok(
        &data,
        &["--output", "json", "snapshot", "create", "big"],
    ))["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut child = Command::new(BIN)
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "snapshot",
            "copy",
            &sid,
            "--kms-key-id",
            &key_b,
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    let _ = child.kill();
    let killed = !child.wait().unwrap().success();
    let list = json(&cryptvol_ok(
        &data,
        &["--output", "json", "snapshot", "list"],
    ));
    let copies: Vec<_> = list["Snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["snapshot_id"] != sid.as_str())
        .cloned()
        .collect();
    if killed {
        assert!(
            copies.iter().all(|s| s["state"] != "completed"),
            "a killed copy lists as completed: {list}"
        );
    }
    // Run it again: it finishes (resuming the interrupted copy, if any).
    let copy = json(&cryptvol_ok(
        &data,
        &[
            "--output",
            "json",
            "snapshot",
            "copy",
            &sid,
            "--kms-key-id",
            &key_b,
        ],
    ));
    if killed && !copies.is_empty() {
        assert_eq!(
            copy["snapshot_id"], copies[0]["snapshot_id"],
            "the rerun should resume the interrupted copy"
        );
    }
    let list = json(&cryptvol_ok(
        &data,
        &["--output", "json", "snapshot", "list"],
    ));
    assert!(
        list["Snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "completed"),
        "{list}"
    );
    cryptvol_ok(
        &data,
        &[
            "volume",
            "create",
            "back",
            "--from-snapshot",
            copy["snapshot_id"].as_str().unwrap(),
        ],
    );
    assert!(contents(&data, "us-east-1", "back", work.path()) == bytes);
}
