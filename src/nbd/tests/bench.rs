//! A manual benchmark target, not a test: serves a plain (unencrypted) file
//! so the server's protocol overhead can be compared with `nbdkit file`
//! using fio's nbd engine, e.g.
//!
//! ```text
//! CRYPTVOL_BENCH_FILE=/tmp/b.img CRYPTVOL_BENCH_PORT=10901 CRYPTVOL_BENCH_SECS=60 \
//!   cargo test --release --lib nbd::tests::bench -- --ignored --nocapture
//! fio --ioengine=nbd --uri=nbd://127.0.0.1:10901/bench --rw=randread --bs=4k --iodepth=16 ...
//! ```

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::blockdev::{BlockDevice, DeviceError, Extent};
use crate::nbd::{serve_tcp, Export, ServerConfig};

/// Positional I/O on a file, no encryption: the same work `nbdkit file` does.
#[derive(Debug)]
struct FileDevice {
    file: File,
    size: u64,
}

impl BlockDevice for FileDevice {
    fn size(&self) -> u64 {
        self.size
    }
    fn sector_size(&self) -> u32 {
        4096
    }
    fn is_read_only(&self) -> bool {
        false
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        Ok(self.file.read_exact_at(buf, offset)?)
    }
    fn write_at(&self, offset: u64, data: &mut [u8], fua: bool) -> Result<(), DeviceError> {
        self.file.write_all_at(data, offset)?;
        if fua {
            self.file.sync_data()?;
        }
        Ok(())
    }
    fn flush(&self) -> Result<(), DeviceError> {
        Ok(self.file.sync_data()?)
    }
    fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<(), DeviceError> {
        self.write_zeroes(offset, len, true, fua)
    }
    fn write_zeroes(
        &self,
        offset: u64,
        len: u64,
        _may_trim: bool,
        fua: bool,
    ) -> Result<(), DeviceError> {
        let zeros = vec![0u8; 1 << 20];
        let mut pos = offset;
        while pos < offset + len {
            let n = (offset + len - pos).min(zeros.len() as u64) as usize;
            self.file.write_all_at(&zeros[..n], pos)?;
            pos += n as u64;
        }
        if fua {
            self.file.sync_data()?;
        }
        Ok(())
    }
    fn block_status(&self, _offset: u64, len: u64) -> Result<Vec<Extent>, DeviceError> {
        Ok(vec![Extent {
            length: len,
            hole: false,
            zero: false,
        }])
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "manual benchmark target; see the module docs"]
async fn bench_serve_plain_file() {
    let path =
        std::env::var("CRYPTVOL_BENCH_FILE").unwrap_or_else(|_| "/tmp/cryptvol-bench.img".into());
    let port: u16 = std::env::var("CRYPTVOL_BENCH_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(10901);
    let secs: u64 = std::env::var("CRYPTVOL_BENCH_SECS")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(60);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open bench file");
    let size = file.metadata().expect("metadata").len();
    let dev: Arc<dyn BlockDevice> = Arc::new(FileDevice { file, size });
    let cfg = Arc::new(ServerConfig::new(vec![Export::new("bench", dev)]));
    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(serve_tcp(listener, cfg, rx));
    eprintln!("serving {path} ({size} bytes) at nbd://127.0.0.1:{port}/bench for {secs} s");
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let _ = stop.send(true);
    let _ = task.await;
}
