//! The volume commands as a user meets them: output, JSON fields, errors.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod common;

use common::*;

#[test]
fn volume_create_list_describe_delete() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let created = cryptvol_ok(
        d,
        &[
            "--output", "json", "volume", "create", "data", "--size", "16M",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&created).unwrap();
    for field in [
        "volume_id",
        "name",
        "path",
        "size",
        "sector_size",
        "encrypted",
        "cipher",
        "data_offset",
        "kms_key_arn",
        "region",
        "encryption_context",
        "wrapped_data_key",
        "created",
    ] {
        assert!(!v[field].is_null(), "describe lacks {field}: {v}");
    }
    let id = v["volume_id"].as_str().unwrap();
    assert!(id.starts_with("vol-") && id.len() == 21);
    assert_eq!(v["size"], 16 << 20);
    assert_eq!(v["sector_size"], 4096);
    assert_eq!(v["cipher"], "aes-xts-plain64");
    assert_eq!(v["region"], "us-east-1");
    assert_eq!(v["encryption_context"]["aws:ebs:id"], id);
    assert!(v["kms_key_arn"]
        .as_str()
        .unwrap()
        .starts_with("arn:aws:kms:us-east-1:"));

    cryptvol_ok(
        d,
        &[
            "volume",
            "create",
            "small",
            "--size",
            "1M",
            "--sector-size",
            "512",
            "--unencrypted",
        ],
    );
    let list = cryptvol_ok(d, &["volume", "list"]);
    assert!(
        list.contains("data") && list.contains("small") && list.contains(id),
        "{list}"
    );
    let by_id = cryptvol_ok(d, &["--output", "json", "volume", "describe", id]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&by_id).unwrap()["name"],
        "data"
    );
    let text = cryptvol_ok(d, &["volume", "describe", "small"]);
    assert!(text.contains("encrypted") && text.contains("no"), "{text}");

    cryptvol_ok(d, &["volume", "delete", "data"]);
    let out = cryptvol(d, &["volume", "describe", "data"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no volume named"));
}

#[test]
fn bad_input_gets_a_message_that_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: [(&[&str], &str); 6] = [
        (
            &["volume", "create", "x", "--size", "12Q"],
            "unknown size unit",
        ),
        (
            &["volume", "create", "x", "--size", "4097"],
            "multiple of the 4096-byte sector size",
        ),
        (&["volume", "create", "x"], "--size is required"),
        (
            &["volume", "create", "bad/name", "--size", "1M"],
            "invalid volume name",
        ),
        (
            &[
                "volume",
                "create",
                "x",
                "--size",
                "1M",
                "--sector-size",
                "1024",
            ],
            "512 or 4096",
        ),
        (&["serve", "missing"], "--create --size"),
    ];
    for (args, want) in cases {
        let out = cryptvol(d, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(err.contains(want), "{args:?}: expected {want:?} in {err:?}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
    cryptvol_ok(d, &["volume", "create", "x", "--size", "1M"]);
    let dup = cryptvol(d, &["volume", "create", "x", "--size", "1M"]);
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let bad_key = cryptvol(
        d,
        &[
            "volume",
            "create",
            "y",
            "--size",
            "1M",
            "--kms-key-id",
            "alias/nope",
        ],
    );
    assert!(!bad_key.status.success());
    assert!(
        String::from_utf8_lossy(&bad_key.stderr).contains("alias/nope"),
        "{}",
        String::from_utf8_lossy(&bad_key.stderr)
    );
}

#[test]
fn serve_announces_export_and_key_then_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = Server::start(dir.path(), &["demo", "--create", "--size", "1M"]);
    assert!(
        srv.uri().starts_with("nbd://127.0.0.1:") && srv.uri().ends_with("/demo"),
        "{}",
        srv.uri()
    );
    let st = srv.stop();
    assert!(st.success(), "serve should exit cleanly on SIGTERM: {st}");
    // The volume persists and is served again without --create.
    let srv2 = Server::start(dir.path(), &["demo"]);
    assert_eq!(srv2.uris.len(), 1);
}

/// `cryptvol … | head -1`: the reader goes away before the output is
/// written. The command ends quietly (as `cat` would, status 141), without
/// a panic message.
#[test]
fn a_closed_stdout_ends_quietly_without_a_panic() {
    let d = tempfile::tempdir().unwrap();
    cryptvol_ok(d.path(), &["volume", "create", "v", "--size", "1M"]);
    for args in [
        &["volume", "list"][..],
        &["--output", "json", "volume", "describe", "v"][..],
        &["kms", "list-keys"][..],
    ] {
        let mut child = std::process::Command::new(BIN)
            .arg("--data-dir")
            .arg(d.path())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Close the read end at once: the write that follows gets EPIPE.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            matches!(out.status.code(), Some(0) | Some(141)),
            "{args:?}: {:?} {err}",
            out.status
        );
    }
}
