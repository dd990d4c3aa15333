//! Disk faults reach the NBD client as errors, never as success, and data
//! acknowledged before them stays intact. Real faults from real parts:
//!
//! - ENOSPC: the volumes directory is a small tmpfs; a python3-libnbd
//!   client fills it with FUA writes until one fails.
//! - EIO: the volumes directory is an ext4 on a loop device over nbdfuse
//!   over `nbdkit memory` with its `error` filter, which fails every read
//!   and write while a trigger file exists. (This kernel has no
//!   device-mapper, so dm-error/dm-flakey is not an option here; the filter
//!   gives the same EIO at the block layer, switchable at will.)
//!
//! Both need root (mount, losetup); the EIO test also FUSE and nbdkit. They
//! skip loudly without them.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The system python with libnbd's bindings (Debian python3-libnbd).
const PY: &str = "/usr/bin/python3";

fn have_python_nbd() -> bool {
    let ok = Command::new(PY)
        .args(["-c", "import nbd"])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIPPED: python3 cannot import nbd (Debian package python3-libnbd)");
    }
    ok
}

/// Runs a python3-libnbd script with `args`, returning its last stdout
/// line parsed as JSON.
fn py(script: &str, args: &[&str]) -> serde_json::Value {
    let out = run_ok(Command::new(PY).arg("-c").arg(script).args(args));
    let text = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(text.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("bad output from the client script ({e}): {text}"))
}

/// Helpers every client script starts with: a deterministic pattern per
/// (seed, length), and `attempt(f)` turning an NBD error into its errno name (0: success).
const PY_PRELUDE: &str = r#"
import json, os, sys, nbd
def pattern(seed, n):
    b = bytes(((seed * 131 + i * 7) & 0xff) for i in range(251))
    return (b * (n // 251 + 1))[:n]
def attempt(f):
    try:
        f()
        return 0
    except nbd.Error as e:
        return e.errno or 'unknown'
h = nbd.NBD()
h.connect_uri(sys.argv[1])
"#;

/// Undoes set-up steps in reverse order, even when the test fails.
#[derive(Default)]
struct Undo(Vec<Box<dyn FnOnce()>>);

impl Undo {
    fn push(&mut self, f: impl FnOnce() + 'static) {
        self.0.push(Box::new(f));
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        while let Some(f) = self.0.pop() {
            f();
        }
    }
}

fn root_tools(test: &str, tools: &[(&str, &str)]) -> bool {
    if !is_root() {
        eprintln!("SKIPPED {test}: needs root (mount, losetup)");
        return false;
    }
    tools.iter().all(|(t, p)| have(t, p)) && have_python_nbd()
}

/// A data dir whose KMS is set up, and the (empty) volumes directory of
/// region us-east-1 where the test mounts its faulty file system.
fn data_dir_with_volumes_dir(work: &Path) -> (PathBuf, PathBuf) {
    let data = work.join("data");
    cryptvol_ok(&data, &["kms", "create-key"]);
    let vols = data.join("regions/us-east-1/volumes");
    std::fs::create_dir_all(&vols).unwrap();
    (data, vols)
}

fn umount_on_undo(undo: &mut Undo, mnt: &Path) {
    let mnt = mnt.to_path_buf();
    undo.push(move || {
        let _ = Command::new("umount").arg(&mnt).status();
    });
}

#[test]
fn enospc_reaches_the_client_and_acknowledged_writes_survive_a_restart() {
    if !root_tools("enospc_reaches_the_client", &[("mount", "mount")]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (data, vols) = data_dir_with_volumes_dir(work.path());
    let mut undo = Undo::default();
    run_ok(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=6M,mode=0700", "tmpfs"])
            .arg(&vols),
    );
    umount_on_undo(&mut undo, &vols);

    let mut srv = Server::start(&data, &["v", "--create", "--size", "64M"]);
    // 1 MiB flushed, then 512 KiB FUA writes until the file system is full.
    let fill = format!(
        "{PY_PRELUDE}
h.pwrite(pattern(1, 1 << 20), 0)
h.flush()
acked, err, off, seed = [], 0, 2 << 20, 2
while off < (64 << 20) and not err:
    err = attempt(lambda: h.pwrite(pattern(seed, 512 << 10), off, nbd.CMD_FLAG_FUA))
    if not err:
        acked.append([off, seed])
    off += 512 << 10
    seed += 1
print(json.dumps({{'acked': acked, 'errno': err}}))
"
    );
    let r = py(&fill, &[srv.uri()]);
    assert_eq!(
        r["errno"], "ENOSPC",
        "the write that did not fit must fail with ENOSPC: {r}"
    );
    let acked = r["acked"].as_array().unwrap();
    assert!(
        acked.len() >= 2,
        "some writes should have fitted before the disk filled: {r}"
    );

    // kill -9, restart on the still-full disk, and read everything back.
    srv.kill9();
    srv.restart();
    let verify = format!(
        "{PY_PRELUDE}
bad = []
if h.pread(1 << 20, 0) != pattern(1, 1 << 20):
    bad.append(0)
for off, seed in json.loads(sys.argv[2]):
    if h.pread(512 << 10, off) != pattern(seed, 512 << 10):
        bad.append(off)
print(json.dumps({{'bad': bad}}))
"
    );
    let r = py(
        &verify,
        &[srv.uri(), &serde_json::to_string(acked).unwrap()],
    );
    assert_eq!(
        r["bad"],
        serde_json::json!([]),
        "acknowledged data lost or changed after ENOSPC and kill -9"
    );
    drop(srv);
}

/// nbdkit's `memory` plugin behind its `error` filter on a unix socket:
/// every read and write fails with EIO while `trigger` exists.
fn faulty_nbdkit(work: &Path, undo: &mut Undo) -> (PathBuf, PathBuf) {
    let sock = work.join("nbdkit.sock");
    let trigger = work.join("fail-now");
    let pidfile = work.join("nbdkit.pid");
    let mut child = Command::new("nbdkit")
        .args(["-f", "-U"])
        .arg(&sock)
        .arg("-P")
        .arg(&pidfile)
        .args([
            "--filter=error",
            "memory",
            "64M",
            "error=EIO",
            "error-pwrite-rate=100%",
            "error-pread-rate=100%",
            "error-trim-rate=100%",
            "error-zero-rate=100%",
        ])
        .arg(format!("error-file={}", trigger.display()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pidfile.exists() {
        assert!(Instant::now() < deadline, "nbdkit did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    undo.push(move || {
        let _ = child.kill();
        let _ = child.wait();
    });
    (sock, trigger)
}

/// nbdfuse → loop device (direct I/O, so the loop adds no cache) → ext4,
/// mounted at `mnt`.
fn ext4_over_nbd(work: &Path, sock: &Path, mnt: &Path, undo: &mut Undo) {
    let fuse_dir = work.join("fuse");
    std::fs::create_dir_all(&fuse_dir).unwrap();
    let disk = fuse_dir.join("disk");
    let fuse: Child = Command::new("nbdfuse")
        .arg(&disk)
        .arg("--unix")
        .arg(sock)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        let fuse_dir = fuse_dir.clone();
        let mut fuse = fuse;
        undo.push(move || {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg(&fuse_dir)
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while fuse.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = fuse.kill();
            let _ = fuse.wait();
        });
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !disk.exists() {
        assert!(Instant::now() < deadline, "nbdfuse did not expose the disk");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = run_ok(
        Command::new("losetup")
            .args(["-f", "--show", "--direct-io=on"])
            .arg(&disk),
    );
    let dev = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    {
        let dev = dev.clone();
        undo.push(move || {
            let _ = Command::new("losetup").args(["-d", &dev]).status();
        });
    }
    run_ok(Command::new("mkfs.ext4").args(["-q", &dev]));
    run_ok(Command::new("mount").arg(&dev).arg(mnt));
    umount_on_undo(undo, mnt);
}

#[test]
fn eio_reaches_the_client_and_a_failed_flush_is_never_forgotten() {
    let tools = [
        ("nbdkit", "nbdkit"),
        ("nbdfuse", "libnbd-bin"),
        ("losetup", "mount"),
        ("mkfs.ext4", "e2fsprogs"),
    ];
    if !root_tools("eio_reaches_the_client", &tools) {
        return;
    }
    if !Path::new("/dev/fuse").exists() {
        eprintln!("SKIPPED eio_reaches_the_client: no /dev/fuse");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (data, vols) = data_dir_with_volumes_dir(work.path());
    let mut undo = Undo::default();
    let (sock, trigger) = faulty_nbdkit(work.path(), &mut undo);
    ext4_over_nbd(work.path(), &sock, &vols, &mut undo);

    let mut srv = Server::start(&data, &["v", "--create", "--size", "16M"]);
    let vol_file = files_under(&vols)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "vol"))
        .unwrap();
    // The page cache of the volume file would answer reads without the
    // disk: drop it (fadvise) before the read that must hit the fault.
    let script = format!(
        "{PY_PRELUDE}
trigger, vol = sys.argv[2], sys.argv[3]
def drop_cache():
    fd = os.open(vol, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
r = {{}}
h.pwrite(pattern(1, 1 << 20), 0)
h.flush()
open(trigger, 'w').close()
r['write_into_cache'] = attempt(lambda: h.pwrite(pattern(2, 1 << 20), 4 << 20))
r['flush_while_failing'] = attempt(lambda: h.flush())
r['fua_while_failing'] = attempt(lambda: h.pwrite(pattern(3, 4096), 8 << 20, nbd.CMD_FLAG_FUA))
drop_cache()
r['read_while_failing'] = attempt(lambda: h.pread(1 << 20, 0))
os.unlink(trigger)
r['flush_after_the_disk_recovered'] = attempt(lambda: h.flush())
r['fua_after_the_disk_recovered'] = attempt(lambda: h.pwrite(pattern(4, 4096), 12 << 20, nbd.CMD_FLAG_FUA))
drop_cache()
r['flushed_data_reads_back'] = h.pread(1 << 20, 0) == pattern(1, 1 << 20)
print(json.dumps(r))
"
    );
    let r = py(
        &script,
        &[
            srv.uri(),
            trigger.to_str().unwrap(),
            vol_file.to_str().unwrap(),
        ],
    );
    let eio = serde_json::json!("EIO");
    // A buffered write may land in the page cache (0) or fail at once; it
    // must never be reported durable afterwards.
    assert!(
        r["write_into_cache"] == 0 || r["write_into_cache"] == eio,
        "{r}"
    );
    for step in [
        "flush_while_failing",
        "fua_while_failing",
        "read_while_failing",
        // Linux reports a write-back error to one fsync only; a server that
        // just calls fsync again would now report success for lost data.
        "flush_after_the_disk_recovered",
        "fua_after_the_disk_recovered",
    ] {
        assert_eq!(r[step], eio, "{step} must fail with EIO: {r}");
    }
    assert_eq!(
        r["flushed_data_reads_back"], true,
        "data flushed before the fault changed: {r}"
    );
    srv.kill9();
}
