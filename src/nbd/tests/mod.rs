//! Server tests over real sockets: `raw` drives the wire by hand (edge
//! cases real clients never send), `clients` drives the real tools
//! (`nbdinfo`, `qemu-io`, `nbdcopy`) and skips loudly when one is missing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::option::{self as opt, InfoRequest, MetaContextRequest, OptionHeader};
use super::proto::{self, Command, RequestHeader};
use super::{serve_tcp, Export, ServerConfig};
use crate::blockdev::MemDevice;

mod bench;
mod clients;
mod hostile;
mod raw;

/// A server on 127.0.0.1:<ephemeral> serving in-memory devices.
pub(super) struct TestServer {
    pub addr: SocketAddr,
    pub devices: Vec<Arc<MemDevice>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    /// Exports `(name, size, read_only)`; tweak the config with `f`.
    pub async fn start(
        exports: &[(&str, usize, bool)],
        f: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        let devices: Vec<Arc<MemDevice>> = exports
            .iter()
            .map(|&(_, size, ro)| Arc::new(MemDevice::new(size, ro)))
            .collect();
        let mut cfg = ServerConfig::new(
            exports
                .iter()
                .zip(&devices)
                .map(|(&(name, _, _), d)| Export {
                    name: name.to_owned(),
                    description: format!("test export {name}"),
                    device: d.clone(),
                })
                .collect(),
        );
        f(&mut cfg);
        Self::serve(cfg, devices).await
    }

    /// Serves `cfg` as it is; `devices` are only kept for the test to inspect.
    pub async fn serve(cfg: ServerConfig, devices: Vec<Arc<MemDevice>>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(serve_tcp(listener, Arc::new(cfg), rx));
        TestServer {
            addr,
            devices,
            stop,
            task,
        }
    }

    pub fn uri(&self, export: &str) -> String {
        format!("nbd://{}/{export}", self.addr)
    }

    /// Signals shutdown and waits for the server to return.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let r = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        assert!(
            matches!(r, Ok(Ok(Ok(())))),
            "server did not stop cleanly: {r:?}"
        );
    }
}

/// One structured reply chunk as received.
#[derive(Debug)]
pub(super) struct Chunk {
    pub flags: u16,
    pub kind: u16,
    pub cookie: u64,
    pub payload: Vec<u8>,
}

impl Chunk {
    /// (errno, message) of an error chunk.
    pub fn error(&self) -> (u32, String) {
        assert_eq!(
            self.kind,
            proto::REPLY_TYPE_ERROR,
            "not an error chunk: {self:?}"
        );
        let errno = u32::from_be_bytes(self.payload[..4].try_into().expect("4 bytes"));
        let len = u16::from_be_bytes([self.payload[4], self.payload[5]]) as usize;
        (
            errno,
            String::from_utf8_lossy(&self.payload[6..6 + len]).into_owned(),
        )
    }
}

/// A hand-driven NBD client.
pub(super) struct Raw {
    pub s: TcpStream,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        Raw {
            s: TcpStream::connect(addr).await.expect("connect"),
        }
    }

    /// Reads the greeting and sends client flags; returns the handshake flags.
    pub async fn greet(&mut self, client_flags: u32) -> u16 {
        self.try_greet(client_flags).await.expect("greeting")
    }

    /// Like `greet`, but `None` when the server closed without a greeting
    /// (what a server at its connection limit does).
    pub async fn try_greet(&mut self, client_flags: u32) -> Option<u16> {
        let mut g = [0u8; 18];
        self.s.read_exact(&mut g).await.ok()?;
        assert_eq!(&g[..8], b"NBDMAGIC");
        assert_eq!(&g[8..16], b"IHAVEOPT");
        self.s
            .write_all(&client_flags.to_be_bytes())
            .await
            .expect("client flags");
        Some(u16::from_be_bytes([g[16], g[17]]))
    }

    /// Connects until the server admits the connection (greets it) or
    /// `limit` passes; `None` on timeout.
    pub async fn admitted(addr: SocketAddr, limit: Duration) -> Option<Raw> {
        tokio::time::timeout(limit, async {
            loop {
                let mut c = Raw::connect(addr).await;
                if c.try_greet(proto::FLAG_C_FIXED_NEWSTYLE | proto::FLAG_C_NO_ZEROES)
                    .await
                    .is_some()
                {
                    return c;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .ok()
    }

    pub async fn send_option(&mut self, option: u32, data: &[u8]) {
        let h = OptionHeader {
            option,
            length: data.len() as u32,
        };
        self.s.write_all(&h.encode()).await.expect("option header");
        self.s.write_all(data).await.expect("option data");
    }

    /// One option reply: (option, reply type, data).
    pub async fn option_reply(&mut self) -> (u32, u32, Vec<u8>) {
        let mut h = [0u8; 20];
        self.s
            .read_exact(&mut h)
            .await
            .expect("option reply header");
        assert_eq!(
            u64::from_be_bytes(h[..8].try_into().expect("8")),
            proto::OPTION_REPLY_MAGIC
        );
        let option = u32::from_be_bytes(h[8..12].try_into().expect("4"));
        let kind = u32::from_be_bytes(h[12..16].try_into().expect("4"));
        let len = u32::from_be_bytes(h[16..20].try_into().expect("4"));
        let mut data = vec![0u8; len as usize];
        self.s
            .read_exact(&mut data)
            .await
            .expect("option reply data");
        (option, kind, data)
    }

    /// Greets, optionally negotiates structured replies and base:allocation,
    /// then NBD_OPT_GO; returns (size, transmission flags).
    pub async fn open(
        addr: SocketAddr,
        name: &str,
        structured: bool,
        meta: bool,
    ) -> (Raw, u64, u16) {
        let mut c = Raw::connect(addr).await;
        c.greet(proto::FLAG_C_FIXED_NEWSTYLE | proto::FLAG_C_NO_ZEROES)
            .await;
        c.go(name, structured, meta).await
    }

    /// The rest of `open` after the greeting: options, then NBD_OPT_GO.
    pub async fn go(mut self, name: &str, structured: bool, meta: bool) -> (Raw, u64, u16) {
        let c = &mut self;
        if structured {
            c.send_option(opt::OPT_STRUCTURED_REPLY, &[]).await;
            assert_eq!(c.option_reply().await.1, opt::REP_ACK);
        }
        if meta {
            let mut data = Vec::new();
            MetaContextRequest {
                name: name.into(),
                queries: vec!["base:allocation".into()],
            }
            .encode(&mut data);
            c.send_option(opt::OPT_SET_META_CONTEXT, &data).await;
            let (_, kind, ctx) = c.option_reply().await;
            assert_eq!(kind, opt::REP_META_CONTEXT);
            assert_eq!(&ctx[4..], b"base:allocation");
            assert_eq!(c.option_reply().await.1, opt::REP_ACK);
        }
        let mut data = Vec::new();
        InfoRequest {
            name: name.into(),
            requests: vec![opt::INFO_BLOCK_SIZE],
        }
        .encode(&mut data);
        c.send_option(opt::OPT_GO, &data).await;
        let (mut size, mut flags) = (None, None);
        loop {
            let (_, kind, d) = c.option_reply().await;
            match kind {
                opt::REP_INFO if d[..2] == [0, 0] => {
                    size = Some(u64::from_be_bytes(d[2..10].try_into().expect("8")));
                    flags = Some(u16::from_be_bytes([d[10], d[11]]));
                }
                opt::REP_INFO => {}
                opt::REP_ACK => break,
                other => panic!(
                    "NBD_OPT_GO failed with {other:#x}: {}",
                    String::from_utf8_lossy(&d)
                ),
            }
        }
        (self, size.expect("NBD_INFO_EXPORT"), flags.expect("flags"))
    }

    pub async fn request(
        &mut self,
        command: Command,
        flags: u16,
        cookie: u64,
        offset: u64,
        length: u32,
        payload: &[u8],
    ) {
        let h = RequestHeader {
            flags,
            command,
            cookie,
            offset,
            length,
        };
        let mut b = h.encode().to_vec();
        b.extend_from_slice(payload);
        self.s.write_all(&b).await.expect("request");
    }

    /// A simple reply header: (errno, cookie).
    pub async fn simple_reply(&mut self) -> (u32, u64) {
        let mut h = [0u8; 16];
        self.s.read_exact(&mut h).await.expect("simple reply");
        assert_eq!(
            u32::from_be_bytes(h[..4].try_into().expect("4")),
            proto::SIMPLE_REPLY_MAGIC,
            "{h:?}"
        );
        (
            u32::from_be_bytes(h[4..8].try_into().expect("4")),
            u64::from_be_bytes(h[8..].try_into().expect("8")),
        )
    }

    pub async fn chunk(&mut self) -> Chunk {
        let mut h = [0u8; 20];
        self.s.read_exact(&mut h).await.expect("chunk header");
        assert_eq!(
            u32::from_be_bytes(h[..4].try_into().expect("4")),
            proto::STRUCTURED_REPLY_MAGIC,
            "{h:?}"
        );
        let len = u32::from_be_bytes(h[16..20].try_into().expect("4"));
        let mut payload = vec![0u8; len as usize];
        self.s
            .read_exact(&mut payload)
            .await
            .expect("chunk payload");
        Chunk {
            flags: u16::from_be_bytes([h[4], h[5]]),
            kind: u16::from_be_bytes([h[6], h[7]]),
            cookie: u64::from_be_bytes(h[8..16].try_into().expect("8")),
            payload,
        }
    }

    /// True if the server closes the connection within 5 s.
    pub async fn closed_by_server(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.s.read(&mut b)).await,
            Ok(Ok(0) | Err(_))
        )
    }
}
