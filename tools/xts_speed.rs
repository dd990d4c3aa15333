//! Prints the single-core throughput of cryptvol's AES-256-XTS sector cipher,
//! encrypting and decrypting, in the units `openssl speed` uses, for
//! scripts/bench.sh. Compare with
//! `openssl speed -evp aes-256-xts -bytes SECTOR_SIZE -seconds SECONDS`
//! (and `-decrypt`).
//!
//! Usage: `cryptvol-xts-speed [SECONDS] [SECTOR_SIZE] [ENGINE]`
//!
//! ENGINE is `portable`, `aes-ni`, `vaes` or `all`; by default the engine
//! `SectorCipher::new` picks on this CPU.
//!
//! Like `openssl speed` (without `-elapsed`), the rate divides the bytes by
//! the CPU time the thread ran, not by wall-clock time, so a busy machine
//! skews both the same way; the wall-clock rate is printed beside it.

use std::time::{Duration, Instant};

use cryptvol::crypto::xts::{SectorCipher, XtsEngine};
use cryptvol::crypto::DataKey;

/// Sectors per call: a 256 KiB request of 4096-byte sectors.
const SECTORS_PER_CALL: usize = 64;

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let sector: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(4096);
    let engines = match args.next().as_deref() {
        None => vec![XtsEngine::detect()],
        Some("all") => XtsEngine::ALL
            .into_iter()
            .filter(|e| e.is_available())
            .collect(),
        Some(name) => match XtsEngine::ALL.into_iter().find(|e| e.to_string() == name) {
            Some(e) => vec![e],
            None => fail(&format!(
                "unknown engine {name:?}; use portable, aes-ni, vaes or all"
            )),
        },
    };
    let key = DataKey::random();
    for engine in engines {
        let cipher = match SectorCipher::with_engine(&key, sector, engine) {
            Ok(c) => c,
            Err(e) => fail(&e.to_string()),
        };
        for decrypt in [false, true] {
            let (cpu, wall) = measure(&cipher, decrypt, secs);
            println!(
                "{} {sector}-byte sectors: {:.0} bytes/s ({:.2} GB/s) [{engine}; wall clock {:.2} GB/s]",
                if decrypt { "decrypt" } else { "encrypt" },
                cpu,
                cpu / 1e9,
                wall / 1e9,
            );
        }
    }
}

/// Bytes per CPU second and per wall-clock second over `secs` seconds of
/// calls on one 256 KiB buffer. Without a CPU clock both are wall clock.
fn measure(cipher: &SectorCipher, decrypt: bool, secs: f64) -> (f64, f64) {
    let cpu_start = thread_cpu_time();
    let mut buf = vec![0x5au8; cipher.sector_size() as usize * SECTORS_PER_CALL];
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut bytes = 0u64;
    let mut n = 0u64;
    while Instant::now() < deadline {
        for _ in 0..16 {
            let done = if decrypt {
                cipher.decrypt_sectors(n, &mut buf)
            } else {
                cipher.encrypt_sectors(n, &mut buf)
            };
            if let Err(e) = done {
                fail(&e.to_string());
            }
            n += SECTORS_PER_CALL as u64;
            bytes += buf.len() as u64;
        }
    }
    let wall = start.elapsed();
    let cpu = match (cpu_start, thread_cpu_time()) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => wall,
    };
    (
        bytes as f64 / cpu.as_secs_f64(),
        bytes as f64 / wall.as_secs_f64(),
    )
}

/// CPU time this thread has run (Linux `/proc/thread-self/schedstat`, in
/// nanoseconds), or `None` where that file does not exist.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn fail(msg: &str) -> ! {
    eprintln!("cryptvol-xts-speed: {msg}");
    std::process::exit(2);
}
