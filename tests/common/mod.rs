//! Shared harness for the integration tests: start the real `cryptvol`
//! binary, wait until it serves, find real client tools (skipping loudly
//! when one is missing), and make test data.

#![allow(dead_code)] // each test binary uses a different part of this file

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_cryptvol");

/// True if `tool` is on PATH; otherwise prints a loud SKIPPED line naming
/// the Debian package, so a skip is never mistaken for a pass.
pub fn have(tool: &str, package: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        eprintln!(
            "SKIPPED: `{tool}` is not installed (Debian package {package}); .ci/run installs it"
        );
    }
    found
}

pub fn is_root() -> bool {
    // SAFETY-free check: root's `id -u` prints 0.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

/// Runs `cryptvol --data-dir DIR ARGS…` to completion.
pub fn cryptvol(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("CRYPTVOL_REGION")
        .output()
        .expect("run cryptvol")
}

/// Runs `cryptvol` and returns stdout, panicking with stderr on failure.
pub fn cryptvol_ok(data_dir: &Path, args: &[&str]) -> String {
    let out = cryptvol(data_dir, args);
    assert!(
        out.status.success(),
        "cryptvol {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// A running `cryptvol serve`, stopped (SIGTERM) when dropped.
pub struct Server {
    child: Option<Child>,
    pub data_dir: PathBuf,
    /// NBD URIs in export order, as the server announced them.
    pub uris: Vec<String>,
    args: Vec<String>,
    global: Vec<String>,
}

impl Server {
    /// Starts `cryptvol serve ARGS… --listen 127.0.0.1:0` and waits for one
    /// "serving" line per export.
    pub fn start(data_dir: &Path, args: &[&str]) -> Server {
        Self::start_with(data_dir, &[], &mut args.to_vec())
    }

    /// Like [`Server::start`], with global options (e.g. `--region R`)
    /// before the `serve` subcommand.
    pub fn start_with(data_dir: &Path, global: &[&str], args: &mut Vec<&str>) -> Server {
        let mut s = Server {
            child: None,
            data_dir: data_dir.to_path_buf(),
            uris: Vec::new(),
            args: args.iter().map(|a| a.to_string()).collect(),
            global: global.iter().map(|a| a.to_string()).collect(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(BIN);
        cmd.arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.global)
            .arg("serve")
            .args(&self.args);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "cryptvol=warn");
        }
        if !self.args.iter().any(|a| a == "--listen" || a == "--socket") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start cryptvol serve");
        let exports = self
            .args
            .iter()
            .take_while(|a| !a.starts_with("--"))
            .count();
        let mut lines = BufReader::new(child.stdout.take().expect("stdout"));
        let deadline = Instant::now() + Duration::from_secs(60);
        self.uris.clear();
        while self.uris.len() < exports {
            assert!(
                Instant::now() < deadline,
                "cryptvol serve did not announce its exports"
            );
            let mut line = String::new();
            if lines.read_line(&mut line).expect("read serve output") == 0 {
                let status = child.wait().expect("wait");
                panic!("cryptvol serve exited early ({status})");
            }
            if let Some(rest) = line.strip_prefix("serving ") {
                let uri = rest
                    .split(" at ")
                    .nth(1)
                    .and_then(|r| r.split(';').next())
                    .expect("uri in serving line");
                self.uris.push(uri.trim().to_string());
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.lines() {});
        self.child = Some(child);
    }

    pub fn uri(&self) -> &str {
        &self.uris[0]
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `kill -9`: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: the graceful stop.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = c.try_wait().expect("wait") {
                return st;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return c.wait().expect("wait");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the same command again (after a kill or stop).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the server first");
        self.spawn();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Runs a command, panicking with its stderr if it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every file under `dir`, recursively. A directory that vanishes while
/// it is walked (a running server's short-lived staging directory) is
/// skipped; `dir` itself must exist.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && d != dir => continue,
            Err(e) => panic!("read dir {}: {e}", d.display()),
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
