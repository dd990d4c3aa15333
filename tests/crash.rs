//! Durability: what a client flushed (or wrote with FUA) survives `kill -9`
//! of the server.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod common;

use std::process::Command;

use common::*;

#[test]
fn flushed_writes_survive_kill_9() {
    if !have("nbdcopy", "libnbd-bin") || !have("qemu-io", "qemu-utils") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut srv = Server::start(dir.path(), &["d", "--create", "--size", "32M"]);
    let src = dir.path().join("src.bin");
    let data = random_bytes(32 << 20, 9);
    std::fs::write(&src, &data).unwrap();
    run_ok(Command::new("nbdcopy").args(["--flush", src.to_str().unwrap(), srv.uri()]));
    // A FUA write after the flush: durable on its own.
    run_ok(Command::new("qemu-io").args([
        "-f",
        "raw",
        "-c",
        "write -f -P 0xab 5000 10000",
        srv.uri(),
    ]));
    srv.kill9();
    srv.restart();
    let back = dir.path().join("back.bin");
    run_ok(Command::new("nbdcopy").args([srv.uri(), back.to_str().unwrap()]));
    let got = std::fs::read(&back).unwrap();
    assert!(got[..5000] == data[..5000]);
    assert!(
        got[5000..15000].iter().all(|&b| b == 0xab),
        "FUA write lost"
    );
    assert!(
        got[15000..] == data[15000..],
        "flushed data lost after kill -9"
    );
}
