//! The README's threat model, for the attackers no other test file covers
//! end to end: someone who walks off with a volume file or with the
//! snapshot store, and tries to use it with a KMS of their own.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const MARKER: &[u8] = b"THREAT-MODEL-PLAINTEXT-MARKER-41c7";

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A data dir with volume `v` holding MARKER over and over, flushed, and
/// one completed snapshot of it.
fn victim(work: &Path) -> std::path::PathBuf {
    let data = work.join("victim");
    let srv = Server::start(&data, &["v", "--create", "--size", "4M"]);
    let src = work.join("plain.bin");
    let mut plain = MARKER.repeat((4 << 20) / MARKER.len() + 1);
    plain.truncate(4 << 20);
    std::fs::write(&src, plain).unwrap();
    run_ok(Command::new("nbdcopy").args(["--flush", src.to_str().unwrap(), srv.uri()]));
    cryptvol_ok(&data, &["snapshot", "create", "v"]);
    drop(srv);
    data
}

fn copy_tree(from: &Path, to: &Path) {
    run_ok(Command::new("cp").arg("-a").arg(from).arg(to));
}

#[test]
fn a_stolen_volume_file_or_snapshot_store_is_ciphertext_and_useless_without_the_kms() {
    if !have("nbdcopy", "libnbd-bin") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let data = victim(work.path());
    let region = data.join("regions/us-east-1");

    // What the thief takes: the volumes and snapshots directories (not the
    // key store, not root.key). No plaintext in any of it.
    for dir in ["volumes", "snapshots"] {
        for f in files_under(&region.join(dir)) {
            assert!(
                !contains(&std::fs::read(&f).unwrap(), MARKER),
                "plaintext in {}",
                f.display()
            );
        }
    }

    // The thief's own cryptvol, with its own KMS, given the stolen files.
    let thief = work.path().join("thief");
    cryptvol_ok(&thief, &["kms", "create-key"]);
    let thief_region = thief.join("regions/us-east-1");
    copy_tree(&region.join("volumes"), &thief_region.join("volumes"));
    copy_tree(&region.join("snapshots"), &thief_region.join("snapshots"));

    // The volume is listed (its header is not secret) but cannot be attached.
    let out = cryptvol(&thief, &["serve", "v", "--listen", "127.0.0.1:0"]);
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a stolen volume was served");
    assert!(
        msg.contains("refused to unwrap the data key") && msg.contains("another KMS"),
        "the refusal names the key problem: {msg}"
    );
    // The snapshot cannot be restored either.
    let list: serde_json::Value = serde_json::from_str(&cryptvol_ok(
        &thief,
        &["--output", "json", "snapshot", "list"],
    ))
    .unwrap();
    let snap = list["Snapshots"][0]["snapshot_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = cryptvol(&thief, &["volume", "create", "r", "--from-snapshot", &snap]);
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && msg.contains("refused to unwrap the snapshot's data key"),
        "a stolen snapshot was restored without its KMS: {msg}"
    );
    // Nothing the attempts left behind holds plaintext.
    for f in files_under(&thief) {
        assert!(
            !contains(&std::fs::read(&f).unwrap(), MARKER),
            "plaintext in {}",
            f.display()
        );
    }

    // The control: with the victim's KMS the same files do open (so the
    // refusals above are about the keys, not broken copies).
    let srv = Server::start(&data, &["v"]);
    let back = work.path().join("back.bin");
    run_ok(Command::new("nbdcopy").args([srv.uri(), back.to_str().unwrap()]));
    assert!(contains(&std::fs::read(&back).unwrap(), MARKER));
}

#[test]
fn a_stolen_data_dir_without_its_root_key_opens_no_key() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("victim");
    // The root key kept apart from the data dir, as the README advises.
    let root_key = work.path().join("root.key");
    std::fs::write(&root_key, random_bytes(32, 5)).unwrap();
    std::fs::set_permissions(
        &root_key,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let with_root = |dir: &Path, args: &[&str]| {
        Command::new(BIN)
            .arg("--data-dir")
            .arg(dir)
            .args(args)
            .env("CRYPTVOL_ROOT_KEY_FILE", &root_key)
            .output()
            .unwrap()
    };
    let out = with_root(&data, &["--output", "json", "kms", "create-key"]);
    assert!(out.status.success());
    let key: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key_id = key["KeyMetadata"]["KeyId"].as_str().unwrap();
    let out = with_root(
        &data,
        &["kms", "encrypt", "--key-id", key_id, "--plaintext", "aGk="],
    );
    assert!(out.status.success());

    // The whole data dir, copied: without the root key the key store does
    // not open (a new root key made on first use opens nothing).
    let stolen = work.path().join("stolen");
    copy_tree(&data, &stolen);
    let out = cryptvol(
        &stolen,
        &["kms", "encrypt", "--key-id", key_id, "--plaintext", "aGk="],
    );
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the stolen key store was usable");
    assert!(msg.contains("root key"), "{msg}");
}
