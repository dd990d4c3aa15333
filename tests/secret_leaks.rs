//! Data keys never reach logs, error messages or files: a known plaintext
//! data key (from `kms generate-data-key`, and a volume's own data key,
//! unwrapped with `kms decrypt`) is searched for — raw, hex, base64 and as
//! Rust `Debug` prints bytes — in the stderr of every command run at
//! `RUST_LOG=trace`, in `serve`'s stderr while it serves and snapshots, and
//! in every file of the data dir (audit log, key store, volume header).

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use common::*;

/// Kills the child when dropped (a failed assertion must not leave it).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every spelling of `key` a leak could take.
fn spellings(key: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let debug = key[..8]
        .iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    vec![
        ("raw bytes", key.to_vec()),
        ("hex", hex::encode(key).into_bytes()),
        ("HEX", hex::encode_upper(key).into_bytes()),
        ("base64", b64.encode(key).into_bytes()),
        ("base64url", b64url.encode(key).into_bytes()),
        ("Debug bytes", format!("[{debug}").into_bytes()),
    ]
}

/// The spellings of `key` found in `haystack`.
fn leaks(key: &[u8], haystack: &[u8]) -> Vec<&'static str> {
    spellings(key)
        .into_iter()
        .filter(|(_, s)| haystack.windows(s.len()).any(|w| w == s.as_slice()))
        .map(|(name, _)| name)
        .collect()
}

/// `cryptvol --data-dir D ARGS…` with every log level on.
fn traced(data: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn b64d(v: &serde_json::Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
}

#[test]
fn data_keys_never_reach_logs_errors_or_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut stderr_all: Vec<u8> = Vec::new();
    let mut keep = |o: &Output| stderr_all.extend_from_slice(&o.stderr);

    let o = traced(&data, &["--output", "json", "kms", "create-key"]);
    keep(&o);
    let key_id = json(&o)["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let o = traced(
        &data,
        &[
            "--output",
            "json",
            "kms",
            "generate-data-key",
            "--key-id",
            &key_id,
            "--key-spec",
            "AES_256",
            "--encryption-context",
            "app=leaktest",
        ],
    );
    keep(&o);
    let dk = json(&o);
    let plain = b64d(&dk["Plaintext"]);
    assert_eq!(plain.len(), 32);
    // The check can fail: stdout, where the key belongs, is found.
    assert!(leaks(&plain, &o.stdout).contains(&"base64"));
    let blob = dir.path().join("dk.blob");
    std::fs::write(&blob, b64d(&dk["CiphertextBlob"])).unwrap();
    let blob_arg = format!("fileb://{}", blob.display());
    let o = traced(
        &data,
        &[
            "--output",
            "json",
            "kms",
            "decrypt",
            "--ciphertext-blob",
            &blob_arg,
            "--encryption-context",
            "app=leaktest",
        ],
    );
    keep(&o);
    assert_eq!(b64d(&json(&o)["Plaintext"]), plain);
    // Failures carry no key bytes either: wrong context, re-encrypt to a
    // missing key.
    for args in [
        &[
            "kms",
            "decrypt",
            "--ciphertext-blob",
            &blob_arg,
            "--encryption-context",
            "app=other",
        ][..],
        &[
            "kms",
            "re-encrypt",
            "--ciphertext-blob",
            &blob_arg,
            "--source-encryption-context",
            "app=leaktest",
            "--destination-key-id",
            "alias/missing",
        ][..],
    ] {
        let o = traced(&data, args);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(leaks(&plain, &o.stdout).is_empty());
        keep(&o);
    }

    // A volume's own data key, unwrapped by hand from its header.
    let o = traced(
        &data,
        &[
            "volume",
            "create",
            "v",
            "--size",
            "4M",
            "--kms-key-id",
            &key_id,
        ],
    );
    keep(&o);
    let desc = json(&traced(
        &data,
        &["--output", "json", "volume", "describe", "v"],
    ));
    let wrapped = dir.path().join("vol.blob");
    std::fs::write(&wrapped, b64d(&desc["wrapped_data_key"])).unwrap();
    let vol_id = desc["volume_id"].as_str().unwrap();
    let o = traced(
        &data,
        &[
            "--output",
            "json",
            "kms",
            "decrypt",
            "--ciphertext-blob",
            &format!("fileb://{}", wrapped.display()),
            "--encryption-context",
            &format!("aws:ebs:id={vol_id}"),
        ],
    );
    keep(&o);
    let vol_key = b64d(&json(&o)["Plaintext"]);
    assert_eq!(vol_key.len(), 64);

    // Serve it, write through NBD, snapshot while attached, stop.
    let log = dir.path().join("serve.log");
    let mut serve = KillOnDrop(
        Command::new(BIN)
            .arg("--data-dir")
            .arg(&data)
            .args(["-vv", "serve", "v", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "trace")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(serve.0.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let uri = line
        .split(" at ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap_or_else(|| panic!("no uri in {line:?}"))
        .trim()
        .to_owned();
    if have("nbdcopy", "libnbd-bin") {
        let src = dir.path().join("src.bin");
        std::fs::write(&src, random_bytes(4 << 20, 3)).unwrap();
        run_ok(Command::new("nbdcopy").args(["--flush", src.to_str().unwrap(), &uri]));
    }
    let o = traced(&data, &["snapshot", "create", "v"]);
    keep(&o);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let _ = Command::new("kill")
        .args(["-TERM", &serve.0.id().to_string()])
        .status();
    serve.0.wait().unwrap();
    let serve_log = std::fs::read(&log).unwrap();
    assert!(
        serve_log.len() > 200,
        "serve logged next to nothing at trace level; the check would prove little"
    );

    for (what, key) in [
        ("generated data key", &plain),
        ("volume data key", &vol_key),
    ] {
        let found = leaks(key, &stderr_all);
        assert!(found.is_empty(), "{what} in command stderr as {found:?}");
        let found = leaks(key, &serve_log);
        assert!(found.is_empty(), "{what} in serve's log as {found:?}");
        for f in files_under(&data) {
            let found = leaks(key, &std::fs::read(&f).unwrap());
            assert!(found.is_empty(), "{what} in {} as {found:?}", f.display());
        }
    }
    // The audit log saw every one of those calls, and verifies.
    let text = cryptvol_ok(&data, &["audit", "verify"]);
    assert!(text.starts_with("audit log ok"), "{text}");
}
