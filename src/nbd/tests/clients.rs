//! The server driven by real NBD clients: libnbd's `nbdinfo` and `nbdcopy`,
//! qemu's `qemu-io`. A missing tool skips its test loudly, never silently.

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use tokio::net::UnixListener;
use tokio::sync::watch;

use super::TestServer;
use crate::blockdev::{BlockDevice, MemDevice};
use crate::nbd::{serve_unix, Export, ServerConfig};

const MIB: usize = 1 << 20;

/// True if `tool` is on PATH; otherwise says so loudly on stderr.
pub(super) fn have(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    if !found {
        eprintln!("SKIPPED: {tool} not installed (apt-get install libnbd-bin qemu-utils)");
    }
    found
}

/// Runs a client off the runtime threads (the server needs them) with a
/// generous timeout.
pub(super) async fn run(tool: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(tool);
    cmd.args(args);
    let shown = format!("{tool} {}", args.join(" "));
    let job = tokio::task::spawn_blocking(move || cmd.output());
    match tokio::time::timeout(Duration::from_secs(120), job).await {
        Ok(Ok(Ok(out))) => out,
        other => panic!("{shown}: did not run: {other:?}"),
    }
}

pub(super) fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub(super) async fn run_ok(tool: &str, args: &[&str]) -> String {
    let out = run(tool, args).await;
    assert!(
        out.status.success(),
        "{tool} {args:?} failed:\n{}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbdinfo_reports_size_flags_block_sizes_and_contexts() {
    if !have("nbdinfo") {
        return;
    }
    let srv = TestServer::start(&[("disk", 64 * MIB, false), ("ro", MIB, true)], |_| {}).await;
    let json = run_ok("nbdinfo", &["--json", &srv.uri("disk")]).await;
    let v: serde_json::Value = serde_json::from_str(&json).expect("nbdinfo --json output");
    assert_eq!(v["protocol"], "newstyle-fixed");
    assert_eq!(v["structured"], true);
    let e = &v["exports"][0];
    assert_eq!(e["export-name"], "disk");
    assert_eq!(e["export-size"], 64 * MIB);
    assert_eq!(e["description"], "test export disk");
    for (flag, want) in [
        ("is_read_only", false),
        ("can_flush", true),
        ("can_fua", true),
        ("can_trim", true),
        ("can_zero", true),
        ("can_multi_conn", true),
        ("can_df", true),
        ("can_cache", true),
        ("can_fast_zero", false),
        ("is_rotational", false),
    ] {
        assert_eq!(e[flag], want, "{flag} in {e}");
    }
    assert_eq!(e["block_size_minimum"], 512);
    assert_eq!(e["block_size_preferred"], 4096);
    assert_eq!(e["block_size_maximum"], 32 * MIB);
    assert_eq!(e["contexts"], serde_json::json!(["base:allocation"]));

    let ro: serde_json::Value =
        serde_json::from_str(&run_ok("nbdinfo", &["--json", &srv.uri("ro")]).await).expect("json");
    assert_eq!(ro["exports"][0]["is_read_only"], true);
    assert_eq!(ro["exports"][0]["can_trim"], false);

    // The default export (empty name) is the first one.
    let def: serde_json::Value =
        serde_json::from_str(&run_ok("nbdinfo", &["--json", &format!("nbd://{}", srv.addr)]).await)
            .expect("json");
    assert_eq!(def["exports"][0]["export-size"], 64 * MIB);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbdinfo_list_shows_every_export_and_unknown_names_fail_helpfully() {
    if !have("nbdinfo") {
        return;
    }
    let srv = TestServer::start(&[("alpha", MIB, false), ("beta", 2 * MIB, true)], |_| {}).await;
    let list = run_ok("nbdinfo", &["--list", &srv.uri("")]).await;
    assert!(
        list.contains("export=\"alpha\"") && list.contains("export=\"beta\""),
        "{list}"
    );
    assert!(list.contains("test export beta"), "{list}");

    let out = run("nbdinfo", &[&srv.uri("gamma")]).await;
    assert!(!out.status.success());
    // libnbd 1.14 does not show the server's message (it lists the exports;
    // `raw::option_errors_keep_the_handshake_going` checks it), only the name.
    let msg = text(&out);
    assert!(msg.contains("gamma"), "{msg}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_io_writes_and_verifies_patterns_including_unaligned() {
    if !have("qemu-io") {
        return;
    }
    let srv = TestServer::start(&[("disk", 16 * MIB, false)], |_| {}).await;
    let uri = srv.uri("disk");
    let cmds = [
        "write -P 0xab 0 1M",
        "write -P 0xcd 1000 3000",
        "write -z 2M 1M",
        "write -P 0x11 8M 4M",
        "aio_write -P 0x22 12M 64k",
        "aio_write -P 0x33 13M 64k",
        "aio_flush",
        "flush",
        "read -P 0xab 0 1000",
        "read -P 0xcd 1000 3000",
        "read -P 0xab 4000 1044576",
        "read -P 0 2M 1M",
        "read -P 0x11 8M 4M",
        "read -P 0x22 12M 64k",
        "read -P 0x33 13M 64k",
        "discard 8M 1M",
        "read -P 0 8M 1M",
    ];
    let mut args = vec!["-f", "raw", uri.as_str()];
    for c in &cmds {
        args.extend(["-c", c]);
    }
    let out = run("qemu-io", &args).await;
    let t = text(&out);
    assert!(
        out.status.success() && !t.contains("fail") && !t.contains("error"),
        "qemu-io:\n{t}"
    );

    // Check the bytes independently of qemu: straight from the device.
    let dev = &srv.devices[0];
    let mut b = vec![0u8; 4096];
    dev.read_at(0, &mut b).expect("read");
    assert!(b[..1000].iter().all(|&x| x == 0xab));
    assert!(b[1000..4000].iter().all(|&x| x == 0xcd));
    assert!(b[4000..].iter().all(|&x| x == 0xab));
    dev.read_at(9 * MIB as u64, &mut b).expect("read");
    assert!(b.iter().all(|&x| x == 0x11));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbdcopy_round_trip_preserves_data_and_map_shows_holes() {
    if !have("nbdcopy") || !have("nbdinfo") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src.img");
    let back = dir.path().join("back.img");
    // 8 MiB: random data with a 2 MiB zero region in the middle.
    let mut data = vec![0u8; 8 * MIB];
    rand::thread_rng().fill_bytes(&mut data);
    data[3 * MIB..5 * MIB].fill(0);
    std::fs::write(&src, &data).expect("write src");

    let srv = TestServer::start(&[("disk", 8 * MIB, false)], |_| {}).await;
    let uri = srv.uri("disk");
    run_ok("nbdcopy", &[src.to_str().expect("utf8"), &uri]).await;
    let mut on_dev = vec![0u8; 8 * MIB];
    srv.devices[0].read_at(0, &mut on_dev).expect("read");
    assert!(on_dev == data, "device content differs from the source");

    run_ok("nbdcopy", &[&uri, back.to_str().expect("utf8")]).await;
    assert!(
        std::fs::read(&back).expect("read back") == data,
        "copy back differs"
    );

    // --map: data, hole+zero for the zero region, data.
    let map = run_ok("nbdinfo", &["--map", &uri]).await;
    let rows: Vec<(u64, u64, u32)> = map
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].parse().expect("offset"),
                f[1].parse().expect("length"),
                f[2].parse().expect("type"),
            )
        })
        .collect();
    let m = MIB as u64;
    assert_eq!(
        rows,
        [(0, 3 * m, 0), (3 * m, 2 * m, 3), (5 * m, 3 * m, 0)],
        "{map}"
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbdinfo_over_a_unix_socket() {
    if !have("nbdinfo") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nbd.sock");
    let listener = UnixListener::bind(&path).expect("bind unix");
    let dev: Arc<dyn BlockDevice> = Arc::new(MemDevice::new(2 * MIB, false));
    let cfg = Arc::new(ServerConfig::new(vec![Export::new("u", dev)]));
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(serve_unix(listener, cfg, rx));
    let uri = format!("nbd+unix:///u?socket={}", path.display());
    let size = run_ok("nbdinfo", &["--size", &uri]).await;
    assert_eq!(size.trim(), (2 * MIB).to_string());
    let _ = stop.send(true);
    let r = tokio::time::timeout(Duration::from_secs(10), task).await;
    assert!(matches!(r, Ok(Ok(Ok(())))), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_img_map_sees_holes_and_convert_copies_exactly() {
    if !have("qemu-img") {
        return;
    }
    let srv = TestServer::start(&[("disk", 8 * MIB, false)], |_| {}).await;
    let mut data = vec![0u8; MIB];
    rand::thread_rng().fill_bytes(&mut data);
    srv.devices[0]
        .write_at(2 * MIB as u64, &mut data.clone(), false)
        .expect("write");
    let uri = srv.uri("disk");

    let map = run_ok("qemu-img", &["map", "--output=json", "-f", "raw", &uri]).await;
    let v: serde_json::Value = serde_json::from_str(&map).expect("qemu-img map json");
    let spans: Vec<(u64, u64, bool)> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|e| {
            let n = |k: &str| e[k].as_u64().expect("number");
            (n("start"), n("length"), e["data"].as_bool().expect("data"))
        })
        .collect();
    let m = MIB as u64;
    assert_eq!(
        spans,
        [(0, 2 * m, false), (2 * m, m, true), (3 * m, 5 * m, false)],
        "{map}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.raw");
    let out_s = out.to_str().expect("utf8");
    run_ok(
        "qemu-img",
        &["convert", "-f", "raw", "-O", "raw", &uri, out_s],
    )
    .await;
    let copy = std::fs::read(&out).expect("read copy");
    assert_eq!(copy.len(), 8 * MIB);
    assert!(copy[2 * MIB..3 * MIB] == data[..], "data region differs");
    assert!(copy[..2 * MIB]
        .iter()
        .chain(&copy[3 * MIB..])
        .all(|&b| b == 0));
    srv.stop().await;
}
