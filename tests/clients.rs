//! Real NBD clients nobody here wrote (libnbd's nbdinfo/nbdcopy, qemu-img,
//! qemu-io, fio) against the real `cryptvol serve`.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod common;

use std::process::Command;

use common::*;

fn new_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[test]
fn nbdinfo_sees_size_block_sizes_and_capabilities() {
    if !have("nbdinfo", "libnbd-bin") {
        return;
    }
    let dir = new_dir();
    let srv = Server::start(dir.path(), &["demo", "--create", "--size", "64M"]);
    let out = run_ok(Command::new("nbdinfo").args(["--json", srv.uri()]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nbdinfo json");
    let e = &v["exports"][0];
    assert_eq!(e["export-name"], "demo");
    assert_eq!(e["export-size"], 64 << 20);
    assert_eq!(e["block_size_minimum"], 512);
    assert_eq!(e["block_size_preferred"], 4096);
    assert_eq!(e["block_size_maximum"], 32 << 20);
    for cap in [
        "can_flush",
        "can_fua",
        "can_trim",
        "can_zero",
        "can_multi_conn",
    ] {
        assert_eq!(e[cap], true, "{cap} in {e}");
    }
    assert_eq!(e["is_read_only"], false);
    assert!(e["contexts"]
        .as_array()
        .expect("contexts")
        .iter()
        .any(|c| c == "base:allocation"));
}

#[test]
fn nbdcopy_round_trip_keeps_bytes_and_unwritten_ranges_stay_holes() {
    if !have("nbdcopy", "libnbd-bin") || !have("nbdinfo", "libnbd-bin") {
        return;
    }
    let dir = new_dir();
    let srv = Server::start(dir.path(), &["rt", "--create", "--size", "64M"]);
    // 24 MiB of random data, then 40 MiB of zeros (sparse in the source).
    let src = dir.path().join("src.img");
    let f = std::fs::File::create(&src).unwrap();
    f.set_len(64 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    let data = random_bytes(24 << 20, 1);
    f.write_all_at(&data, 0).unwrap();
    run_ok(Command::new("nbdcopy").args(["--flush", src.to_str().unwrap(), srv.uri()]));

    let back = dir.path().join("back.img");
    run_ok(Command::new("nbdcopy").args([srv.uri(), back.to_str().unwrap()]));
    let got = std::fs::read(&back).unwrap();
    assert_eq!(got.len(), 64 << 20);
    assert!(got[..24 << 20] == data[..], "written data differs");
    assert!(
        got[24 << 20..].iter().all(|&b| b == 0),
        "unwritten tail is not zero"
    );

    // The tail was never written: the server reports it as a hole, which is
    // what lets nbdcopy and qemu-img skip it.
    let map = run_ok(Command::new("nbdinfo").args(["--map", "--json", srv.uri()]));
    let m: serde_json::Value = serde_json::from_slice(&map.stdout).unwrap();
    let holes: u64 = m
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"].as_u64().unwrap() & 1 == 1)
        .map(|e| e["length"].as_u64().unwrap())
        .sum();
    assert!(holes >= 40 << 20, "expected >= 40 MiB of holes, map: {m}");
}

#[test]
fn qemu_io_unaligned_writes_match_the_same_writes_on_a_plain_file() {
    if !have("qemu-io", "qemu-utils") || !have("qemu-img", "qemu-utils") {
        return;
    }
    let dir = new_dir();
    let srv = Server::start(dir.path(), &["q", "--create", "--size", "16M"]);
    let plain = dir.path().join("plain.raw");
    run_ok(Command::new("qemu-img").args(["create", "-f", "raw", plain.to_str().unwrap(), "16M"]));
    // Unaligned, overlapping, straddling sectors, at the very end, zeroing
    // and discarding: the same script against both, then compare.
    let script = [
        "write -P 0x11 0 1M",
        "write -P 0x22 1000 3000",
        "write -P 0x33 4095 2",
        "write -P 0x44 8191 20000",
        "write -P 0x55 16777000 216",
        "write -z 100000 50000",
        "write -P 0x66 200001 7",
        "discard 1048576 1048576",
        "write -z 3000000 8192",
    ];
    for target in [srv.uri(), plain.to_str().unwrap()] {
        let mut cmd = Command::new("qemu-io");
        cmd.args(["-f", "raw"]);
        for c in &script {
            cmd.args(["-c", c]);
        }
        cmd.arg(target);
        let out = run_ok(&mut cmd);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains("error") && !text.contains("failed"),
            "{target}: {text}"
        );
    }
    // qemu-img compare reads both through qemu's own block layer.
    run_ok(Command::new("qemu-img").args([
        "compare",
        "-f",
        "raw",
        "-F",
        "raw",
        srv.uri(),
        plain.to_str().unwrap(),
    ]));
    let out = run_ok(Command::new("qemu-io").args([
        "-f",
        "raw",
        "-c",
        "read -P 0x33 4095 2",
        "-c",
        "read -P 0 100000 50000",
        srv.uri(),
    ]));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Pattern verification failed"));
    let info = run_ok(Command::new("qemu-img").args(["info", "--output=json", srv.uri()]));
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(v["virtual-size"], 16 << 20);
}

/// fio writes with checksummed blocks at queue depth 16 and reads them back,
/// with block sizes from 512 bytes (read-modify-write of 4096-byte sectors,
/// concurrently) to 64 KiB.
#[test]
fn fio_verify_at_queue_depth_with_unaligned_block_sizes() {
    if !have("fio", "fio") {
        return;
    }
    let enghelp = Command::new("fio").arg("--enghelp=nbd").output().unwrap();
    if !enghelp.status.success() {
        eprintln!("SKIPPED: this fio has no nbd engine");
        return;
    }
    let dir = new_dir();
    let srv = Server::start(dir.path(), &["f", "--create", "--size", "64M"]);
    for (rw, bs) in [
        ("randwrite", "--bsrange=512-64k"),
        ("write", "--bs=1M"),
        ("randwrite", "--bs=4k"),
    ] {
        let out = run_ok(Command::new("fio").args([
            "--name=verify",
            "--ioengine=nbd",
            &format!("--uri={}", srv.uri()),
            &format!("--rw={rw}"),
            bs,
            "--iodepth=16",
            "--size=32M",
            "--verify=crc32c",
            "--do_verify=1",
            "--verify_fatal=1",
            "--verify_state_save=0",
            "--output-format=json",
        ]));
        // fio may print notes before its JSON document.
        let text = String::from_utf8_lossy(&out.stdout);
        let json = &text[text.find('{').expect("fio printed no JSON")..];
        let v: serde_json::Value = serde_json::from_str(json).expect("fio json");
        assert_eq!(v["jobs"][0]["error"], 0, "fio {rw} {bs}: {v}");
        assert!(
            v["jobs"][0]["read"]["io_bytes"].as_u64().unwrap() > 0,
            "fio did not verify anything"
        );
    }
}

#[test]
fn read_only_export_refuses_writes_with_eperm() {
    if !have("qemu-io", "qemu-utils") {
        return;
    }
    let dir = new_dir();
    cryptvol_ok(dir.path(), &["volume", "create", "ro", "--size", "8M"]);
    let srv = Server::start(dir.path(), &["ro", "--read-only"]);
    let out = Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write -P 1 0 4096", srv.uri()])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // qemu sees the READ_ONLY transmission flag and refuses to open for
    // writing ("Permission denied"); the protocol tests check the EPERM
    // reply to a write that is sent anyway.
    assert!(
        !out.status.success() || text.contains("Operation not permitted"),
        "write to a read-only export succeeded: {text}"
    );
    assert!(
        text.contains("Permission denied") || text.contains("Operation not permitted"),
        "{text}"
    );
    // Reads still work.
    run_ok(Command::new("qemu-io").args(["-f", "raw", "-r", "-c", "read -P 0 0 4096", srv.uri()]));
}

#[test]
fn several_exports_listed_and_many_clients_at_once() {
    if !have("nbdinfo", "libnbd-bin") || !have("nbdcopy", "libnbd-bin") {
        return;
    }
    let dir = new_dir();
    let srv = Server::start(dir.path(), &["alpha", "beta", "--create", "--size", "8M"]);
    assert_eq!(srv.uris.len(), 2);
    let list = run_ok(Command::new("nbdinfo").args(["--list", "--json", srv.uri()]));
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let names: Vec<_> = v["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["export-name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["alpha", "beta"]);

    // 24 clients at once, each writing and reading back its own 256 KiB slice.
    let children: Vec<_> = (0..24u64)
        .map(|i| {
            let uri = srv.uris[(i % 2) as usize].clone();
            let d = dir.path().to_path_buf();
            std::thread::spawn(move || {
                let data = random_bytes(256 << 10, 100 + i);
                let f = d.join(format!("c{i}.bin"));
                std::fs::write(&f, &data).unwrap();
                let off = (i / 2) * (256 << 10);
                run_ok(Command::new("qemu-io").args([
                    "-f",
                    "raw",
                    "-c",
                    &format!("write -s {} {off} {}", f.display(), 256 << 10),
                    &uri,
                ]));
                (i, data)
            })
        })
        .collect();
    let written: Vec<_> = children.into_iter().map(|c| c.join().unwrap()).collect();
    for (idx, uri) in srv.uris.iter().enumerate() {
        let back = dir.path().join(format!("back{idx}.img"));
        run_ok(Command::new("nbdcopy").args([uri.as_str(), back.to_str().unwrap()]));
        let all = std::fs::read(&back).unwrap();
        for (i, data) in written.iter().filter(|(i, _)| (*i % 2) as usize == idx) {
            let off = ((i / 2) * (256 << 10)) as usize;
            assert!(
                all[off..off + data.len()] == data[..],
                "client {i}'s data differs on {uri}"
            );
        }
    }
}

/// What was written in plaintext through NBD appears nowhere in the data
/// dir; the same check finds it on an unencrypted volume, so it can fail.
#[test]
fn no_plaintext_anywhere_in_the_data_dir() {
    if !have("nbdcopy", "libnbd-bin") {
        return;
    }
    let marker = b"CRYPTVOL-PLAINTEXT-MARKER-7f3a9c";
    let dir = new_dir();
    let src = dir.path().join("plain.bin");
    std::fs::write(&src, marker.repeat((4 << 20) / marker.len())).unwrap();
    let data = dir.path().join("data");
    cryptvol_ok(
        &data,
        &["volume", "create", "plain", "--size", "4M", "--unencrypted"],
    );
    {
        let srv = Server::start(&data, &["secret", "plain", "--create", "--size", "4M"]);
        for uri in &srv.uris {
            run_ok(Command::new("nbdcopy").args(["--flush", src.to_str().unwrap(), uri]));
        }
    }
    let mut found_in = Vec::new();
    for f in files_under(&data) {
        let bytes = std::fs::read(&f).unwrap();
        if bytes.windows(marker.len()).any(|w| w == marker) {
            found_in.push(f);
        }
    }
    let plain_vol = cryptvol_ok(&data, &["--output", "json", "volume", "describe", "plain"]);
    let plain_path: serde_json::Value = serde_json::from_str(&plain_vol).unwrap();
    let plain_path = std::path::PathBuf::from(plain_path["path"].as_str().unwrap());
    assert_eq!(
        found_in,
        vec![plain_path],
        "plaintext must be only in the unencrypted volume"
    );
}
