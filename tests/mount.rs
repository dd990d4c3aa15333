//! A real ext4 filesystem on an encrypted volume, mounted the way this
//! machine can (no kernel NBD driver): nbdfuse exposes the export as a
//! file, losetup makes it a block device, mkfs.ext4 and mount do the rest.
//! Needs root, /dev/fuse and loop devices; skips loudly without them.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Undoes each step of the mount stack in reverse, even when the test fails.
struct Stack {
    fuse: Option<Child>,
    fuse_dir: PathBuf,
    loop_dev: Option<String>,
    mnt: Option<PathBuf>,
}

impl Stack {
    fn unmount(&mut self) {
        if let Some(m) = self.mnt.take() {
            let _ = Command::new("umount").arg(&m).status();
        }
        if let Some(l) = self.loop_dev.take() {
            let _ = Command::new("losetup").args(["-d", &l]).status();
        }
        if let Some(mut f) = self.fuse.take() {
            let _ = Command::new("fusermount3")
                .args(["-u"])
                .arg(&self.fuse_dir)
                .status();
            let _ = Command::new("umount")
                .arg(&self.fuse_dir)
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while f.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = f.kill();
            let _ = f.wait();
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.unmount();
    }
}

fn mount_stack(uri: &str, work: &Path, mkfs: bool) -> Result<Stack, String> {
    let fuse_dir = work.join("fuse");
    std::fs::create_dir_all(&fuse_dir).unwrap();
    let disk = fuse_dir.join("disk");
    let mut stack = Stack {
        fuse: None,
        fuse_dir: fuse_dir.clone(),
        loop_dev: None,
        mnt: None,
    };
    let child = Command::new("nbdfuse")
        .arg(&disk)
        .arg(uri)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("nbdfuse: {e}"))?;
    stack.fuse = Some(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !disk.exists() {
        if Instant::now() > deadline {
            return Err("nbdfuse did not expose the disk (is FUSE usable here?)".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = Command::new("losetup")
        .args(["-f", "--show"])
        .arg(&disk)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("losetup: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
    stack.loop_dev = Some(dev.clone());
    if mkfs {
        run_ok(Command::new("mkfs.ext4").args(["-q", "-F", &dev]));
    }
    let mnt = work.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    run_ok(Command::new("mount").arg(&dev).arg(&mnt));
    stack.mnt = Some(mnt);
    Ok(stack)
}

#[test]
fn ext4_on_an_encrypted_volume_survives_unmount_and_server_restart() {
    if !is_root() {
        eprintln!("SKIPPED: mounting needs root");
        return;
    }
    if !Path::new("/dev/fuse").exists() {
        eprintln!("SKIPPED: /dev/fuse does not exist (FUSE unavailable)");
        return;
    }
    if !(have("nbdfuse", "libnbd-bin")
        && have("losetup", "util-linux")
        && have("mkfs.ext4", "e2fsprogs"))
    {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let mut srv = Server::start(&data, &["fs", "--create", "--size", "256M"]);
    let payload = random_bytes(3 << 20, 42);
    {
        let mut stack = match mount_stack(srv.uri(), work.path(), true) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("SKIPPED: cannot build the FUSE/loop mount stack here: {e}");
                return;
            }
        };
        let mnt = stack.mnt.clone().unwrap();
        std::fs::create_dir(mnt.join("dir")).unwrap();
        std::fs::write(mnt.join("dir/payload.bin"), &payload).unwrap();
        std::fs::write(mnt.join("hello.txt"), b"hello, encrypted world\n").unwrap();
        run_ok(&mut Command::new("sync"));
        stack.unmount();
    }
    srv.stop();
    srv.restart();
    let mut stack = mount_stack(srv.uri(), work.path(), false).expect("remount");
    let mnt = stack.mnt.clone().unwrap();
    assert_eq!(
        std::fs::read(mnt.join("hello.txt")).unwrap(),
        b"hello, encrypted world\n"
    );
    assert!(
        std::fs::read(mnt.join("dir/payload.bin")).unwrap() == payload,
        "file contents changed"
    );
    stack.unmount();
    // fsck through the whole stack again: the filesystem is consistent.
    let mut stack = mount_stack(srv.uri(), work.path(), false).expect("remount for fsck");
    let dev = stack.loop_dev.clone().unwrap();
    if let Some(m) = stack.mnt.take() {
        run_ok(Command::new("umount").arg(&m));
    }
    run_ok(Command::new("e2fsck").args(["-f", "-n", &dev]));
    stack.unmount();
}
