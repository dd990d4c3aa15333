//! Shared by the NBD targets: run the real server on one in-memory
//! connection and feed it a client byte stream.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cryptvol::blockdev::{BlockDevice, MemDevice};
use cryptvol::nbd::{serve_connection, Export, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Size of the writable export "fuzz" (the default export).
pub const EXPORT_SIZE: usize = 256 << 10;
/// Size of the read-only export "ro".
pub const RO_SIZE: usize = 64 << 10;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .max_blocking_threads(2)
            .build()
            .expect("tokio runtime")
    })
}

/// Serves `client` (everything the client sends, then EOF) on a fresh pair
/// of exports and returns everything the server sent back. Server errors
/// (bad magic, early EOF, …) are expected; panics and hangs are the bugs.
pub fn run_connection(client: &[u8]) -> Vec<u8> {
    let exports = vec![
        Export::new(
            "fuzz",
            Arc::new(MemDevice::new(EXPORT_SIZE, false)) as Arc<dyn BlockDevice>,
        ),
        Export::new("ro", Arc::new(MemDevice::new(RO_SIZE, true))),
    ];
    let mut cfg = ServerConfig::new(exports);
    // Every byte is there at once: a handshake that outlives this is a hang.
    cfg.handshake_timeout = Duration::from_secs(20);
    let cfg = Arc::new(cfg);
    runtime().block_on(async move {
        let (server_end, mut client_end) = tokio::io::duplex(64 << 10);
        let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let server = async move {
            let _ = serve_connection(server_end, cfg, stop_rx).await;
        };
        let client = async move {
            let (mut rd, mut wr) = tokio::io::split(&mut client_end);
            let send = async {
                // The server may close early; the rest is then unread.
                let _ = wr.write_all(client).await;
                let _ = wr.shutdown().await;
            };
            let mut out = Vec::new();
            let recv = rd.read_to_end(&mut out);
            let (_, r) = tokio::join!(send, recv);
            let _ = r;
            out
        };
        let ((), out) = tokio::join!(server, client);
        out
    })
}
