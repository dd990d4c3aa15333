//! Who else on the host can reach the keys: key-store files and directories
//! others could read are refused; a real other user (uid 65534) cannot read
//! key files, volume files or the control socket; `serve` and `kms serve`
//! are non-dumpable; and an exhausted `RLIMIT_MEMLOCK` only warns, once.
//! The tests that switch users need root (`setpriv`); they skip loudly
//! without it.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The unprivileged user the tests act as.
const NOBODY: u32 = 65534;

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn key_store_files_others_can_read_are_refused_naming_path_mode_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    cryptvol_ok(&data, &["kms", "create-key", "--description", "p"]);
    cryptvol_ok(&data, &["iam", "create-user", "someone"]);
    let kms_dir = data.join("regions/us-east-1/kms");
    let cases: [(PathBuf, u32, &str, &[&str]); 6] = [
        (
            data.join("root.key"),
            0o644,
            "chmod 600",
            &["kms", "list-keys"],
        ),
        (
            data.join("account.json"),
            0o640,
            "chmod 600",
            &["kms", "list-keys"],
        ),
        (
            kms_dir.join("keys.json"),
            0o604,
            "chmod 600",
            &["kms", "list-keys"],
        ),
        (kms_dir.clone(), 0o755, "chmod 700", &["kms", "list-keys"]),
        (
            data.join("iam.json"),
            0o660,
            "chmod 600",
            &["iam", "list-users"],
        ),
        (data.clone(), 0o777, "chmod go-w", &["kms", "list-keys"]),
    ];
    for (path, mode, fix, cmd) in cases {
        let good = std::fs::metadata(&path).unwrap().mode() & 0o7777;
        chmod(&path, mode);
        let out = cryptvol(&data, cmd);
        let msg = stderr(&out);
        assert!(
            !out.status.success(),
            "{cmd:?} used {} at {mode:04o}",
            path.display()
        );
        assert!(
            msg.contains(&format!("{mode:04o}"))
                && msg.contains(&format!("{fix} {}", path.display())),
            "{cmd:?} with {} at {mode:04o}: {msg}",
            path.display()
        );
        chmod(&path, good);
        cryptvol_ok(&data, cmd);
    }
}

/// Runs `cmd` as uid/gid 65534 with no supplementary groups.
fn as_nobody(cmd: &[&str]) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        &format!("--reuid={NOBODY}"),
        &format!("--regid={NOBODY}"),
        "--clear-groups",
        "--",
    ])
    .args(cmd);
    c
}

fn can_switch_users(test: &str) -> bool {
    if !is_root() {
        eprintln!("SKIPPED {test}: needs root to act as uid {NOBODY} (setpriv)");
        return false;
    }
    have("setpriv", "util-linux")
}

/// A directory every user can traverse (tempdirs are 0700, which would
/// protect everything in them whatever cryptvol does).
fn open_parent() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    dir
}

#[test]
fn a_local_unprivileged_user_cannot_read_keys_volumes_or_either_socket() {
    if !can_switch_users("a_local_unprivileged_user_cannot_read_keys_volumes_or_either_socket") {
        return;
    }
    let parent = open_parent();
    let data = parent.path().join("data");
    let srv = Server::start(&data, &["v", "--create", "--size", "4M"]);
    cryptvol_ok(&data, &["kms", "create-key"]);
    // Even if the owner opens the data dir up for listing, every file in it
    // that holds or protects a key stays private on its own.
    chmod(&data, 0o755);
    let files = files_under(&data);
    let find = |suffix: &str| -> PathBuf {
        files
            .iter()
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .unwrap_or_else(|| panic!("no *{suffix} in {files:?}"))
            .clone()
    };
    let targets = [
        data.join("root.key"),
        data.join("account.json"),
        find("/keys.json"),
        find(".vol"),
    ];
    for t in &targets {
        // Root reads it, so the path is right and only permissions stop nobody.
        run_ok(Command::new("cat").arg(t).stdout(Stdio::null()));
        let out = as_nobody(&["cat", t.to_str().unwrap()]).output().unwrap();
        assert!(
            !out.status.success() && stderr(&out).contains("Permission denied"),
            "uid {NOBODY} could read {}: {}",
            t.display(),
            stderr(&out)
        );
    }
    let sock = find(".sock");
    let connect = "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])";
    // The system python (a per-user install such as pyenv may be out of
    // nobody's reach, which would make the check pass for the wrong reason).
    let py = "/usr/bin/python3";
    run_ok(Command::new(py).args(["-c", connect, sock.to_str().unwrap()]));
    let out = as_nobody(&[py, "-c", connect, sock.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        !out.status.success() && stderr(&out).contains("PermissionError"),
        "uid {NOBODY} reached the control socket: {}",
        stderr(&out)
    );
    // The NBD socket itself (here in a directory anyone can enter): only
    // its owner can connect, so only its owner reads the plaintext.
    let nbd_sock = parent.path().join("nbd.sock");
    let _nbd = Server::start(
        &data,
        &[
            "v2",
            "--create",
            "--size",
            "1M",
            "--socket",
            nbd_sock.to_str().unwrap(),
        ],
    );
    run_ok(Command::new(py).args(["-c", connect, nbd_sock.to_str().unwrap()]));
    let out = as_nobody(&[py, "-c", connect, nbd_sock.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        !out.status.success() && stderr(&out).contains("PermissionError"),
        "uid {NOBODY} reached the NBD socket: {}",
        stderr(&out)
    );
    // And the tool itself, run by them on this data dir, gets nothing.
    let out = as_nobody(&[
        BIN,
        "--data-dir",
        data.to_str().unwrap(),
        "kms",
        "list-keys",
    ])
    .output()
    .unwrap();
    assert!(!out.status.success(), "uid {NOBODY} listed the keys");
    drop(srv);
}

/// A child process stopped (SIGTERM, then SIGKILL) when dropped, so a
/// failed assertion does not leave it running.
struct Running(Option<Child>);

impl Running {
    fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            stop(c);
        }
    }
}

/// Starts `cryptvol ARGS…` as uid 65534 and waits for a line containing
/// `ready`; returns the child (the cryptvol process itself: setpriv execs).
fn spawn_as_nobody(data: &Path, args: &[&str], ready: &str) -> Running {
    let mut cmd = vec![BIN, "--data-dir", data.to_str().unwrap()];
    cmd.extend_from_slice(args);
    let mut child = as_nobody(&cmd)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "{args:?} did not start");
        let mut line = String::new();
        if lines.read_line(&mut line).unwrap() == 0 {
            panic!("{args:?} exited early: {:?}", child.wait());
        }
        if line.contains(ready) {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines.lines() {});
    Running(Some(child))
}

/// Who owns `/proc/PID/environ`: the process's user while it is dumpable,
/// root once it is not (the kernel's rule for /proc of non-dumpable tasks).
fn proc_owner(pid: u32) -> u32 {
    std::fs::metadata(format!("/proc/{pid}/environ"))
        .unwrap()
        .uid()
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.wait();
}

#[test]
fn serve_and_kms_serve_are_not_dumpable() {
    if !can_switch_users("serve_and_kms_serve_are_not_dumpable") {
        return;
    }
    let parent = open_parent();
    let data = parent.path().join("data");
    std::fs::create_dir(&data).unwrap();
    chmod(&data, 0o700);
    std::os::unix::fs::chown(&data, Some(NOBODY), Some(NOBODY)).unwrap();

    // The yardstick: an ordinary process of the same user is dumpable, its
    // /proc files are its own and it can read them.
    let mut sleeper = as_nobody(&["sleep", "30"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(proc_owner(sleeper.id()), NOBODY);
    let _ = sleeper.kill();
    let _ = sleeper.wait();

    let serve = spawn_as_nobody(
        &data,
        &[
            "serve",
            "v",
            "--create",
            "--size",
            "1M",
            "--listen",
            "127.0.0.1:0",
        ],
        "serving ",
    );
    let kms = spawn_as_nobody(
        &data,
        &["kms", "serve", "--listen", "127.0.0.1:0"],
        "serving at",
    );
    for (name, child) in [("serve", &serve), ("kms serve", &kms)] {
        assert_eq!(
            proc_owner(child.id()),
            0,
            "`cryptvol {name}` is still dumpable (PR_SET_DUMPABLE not cleared)"
        );
        let environ = format!("/proc/{}/environ", child.id());
        let out = as_nobody(&["cat", &environ]).output().unwrap();
        assert!(
            !out.status.success(),
            "another process of the same user read {environ} of `cryptvol {name}`"
        );
    }
    drop(serve);
    drop(kms);
}

#[test]
fn an_exhausted_mlock_limit_warns_once_and_the_command_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap().to_owned();
    // Root has CAP_IPC_LOCK, which ignores RLIMIT_MEMLOCK: run as nobody then.
    let run = |args: &[&str]| -> Output {
        let mut cmd: Vec<&str> = vec!["prlimit", "--memlock=0:0", BIN, "--data-dir", &data_s];
        cmd.extend_from_slice(args);
        if is_root() {
            as_nobody(&cmd).output().unwrap()
        } else {
            Command::new(cmd[0]).args(&cmd[1..]).output().unwrap()
        }
    };
    if !have("prlimit", "util-linux") || (is_root() && !have("setpriv", "util-linux")) {
        return;
    }
    if is_root() {
        chmod(dir.path(), 0o755);
        std::fs::create_dir(&data).unwrap();
        chmod(&data, 0o700);
        std::os::unix::fs::chown(&data, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let out = run(&["--output", "json", "kms", "create-key"]);
    assert!(out.status.success(), "create-key failed: {}", stderr(&out));
    let key: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key_id = key["KeyMetadata"]["KeyId"].as_str().unwrap();
    // Many secrets in one process (root key, derived keys, key material,
    // the data key): one warning, and the data key still comes out.
    let out = run(&[
        "--output",
        "json",
        "kms",
        "generate-data-key",
        "--key-id",
        key_id,
        "--number-of-bytes",
        "64",
    ]);
    let err = stderr(&out);
    assert!(out.status.success(), "generate-data-key failed: {err}");
    let dk: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(dk["Plaintext"].as_str().unwrap().len() > 80);
    assert_eq!(
        err.matches("cannot lock key memory out of swap").count(),
        1,
        "expected exactly one mlock warning: {err}"
    );
    assert!(
        err.contains("ulimit -l"),
        "the warning names the fix: {err}"
    );
}
