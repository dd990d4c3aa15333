//! `serve --max-connections N --handshake-timeout D`: the flags reach the
//! server. (The behaviour itself is tested in depth in-process, in
//! src/nbd/tests/hostile.rs.)

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Connects to the announced `nbd://127.0.0.1:PORT/…`; true if greeted.
fn greeted(uri: &str) -> (TcpStream, bool) {
    let addr = uri.trim_start_matches("nbd://").split('/').next().unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut g = [0u8; 18];
    let ok = s.read_exact(&mut g).is_ok();
    (s, ok)
}

#[test]
fn max_connections_and_handshake_timeout_flags_take_effect() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(
        dir.path(),
        &[
            "disk",
            "--create",
            "--size",
            "1M",
            "--max-connections",
            "2",
            "--handshake-timeout",
            "1s",
        ],
    );
    let uri = srv.uri().to_owned();
    // Two clients stall in the handshake and fill both slots.
    let (mut a, ok_a) = greeted(&uri);
    let (mut b, ok_b) = greeted(&uri);
    assert!(ok_a && ok_b);
    let t0 = Instant::now();
    let (_, ok_c) = greeted(&uri);
    assert!(
        !ok_c,
        "a third connection was served with --max-connections 2"
    );
    // Both are cut off after about a second, which frees the slots.
    let mut buf = [0u8; 1];
    assert!(matches!(a.read(&mut buf), Ok(0) | Err(_)));
    assert!(matches!(b.read(&mut buf), Ok(0) | Err(_)));
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
    let _ = a.write_all(b"late");
    if have("nbdinfo", "libnbd-bin") {
        run_ok(Command::new("nbdinfo").arg(&uri));
    } else {
        let (_, ok) = greeted(&uri);
        assert!(ok, "slot not freed after the handshake timeout");
    }
}
